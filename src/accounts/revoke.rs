//! Which grants a revocation may remove (issue 24 item 5). Revoking at a platform can reach
//! further than the account being deleted:
//!
//! - A Meta grant (Facebook, Instagram through Facebook Login) belongs to the person who
//!   granted it: `DELETE /{user-id}/permissions` removes the app from every Page and Instagram
//!   account they connected. It is revoked only with `platforms.facebook.revoke_grant`, and
//!   then only when no other stored account, in any workspace, shares that person. Siblings
//!   whose Meta user is not known yet are asked first (`debug_token`); one that cannot be
//!   asked counts as sharing.
//! - A TikTok revoke "disconnects your app from the user's TikTok account": it is made only
//!   when no other stored account, in any workspace, is that TikTok user (`open_id`, compared
//!   without dashes).

use super::*;

/// At most this many siblings of unknown Meta user are asked before a revocation; more
/// count as sharing.
const MAX_ASKED: i64 = 100;

/// Revokes the deleted account's grant when nothing else shares it; otherwise says why not.
pub(super) async fn revoke(
    state: &Checker,
    account: &Account,
    mut t: TokenContext<'_>,
) -> Result<RevokeOutcome, StoreError> {
    let platform = account.platform;
    if state.platforms.shares_meta_grant(platform, account.instagram_login) {
        if !state.config().platforms.facebook.revoke_grant.unwrap_or(false) {
            return Ok(RevokeOutcome::NotSupported(
                "Meta grants are not revoked (platforms.facebook.revoke_grant is off): revoking one removes the app \
                 from every Page and Instagram account the person connected. The person can remove the app \
                 themselves in Facebook: Settings & privacy > Settings > Business integrations."
                    .into(),
            ));
        }
        let user = match state.platforms.meta_user(platform, &t).await {
            Ok(u) => u,
            Err(outcome) => return Ok(outcome),
        };
        // Instagram accounts of either login: those of Instagram Login share no Meta grant
        // and are passed over below.
        let platforms = [Platform::Facebook, Platform::Instagram];
        let unknown = learn_meta_users(state, &platforms, account.id).await?;
        if unknown > 0 {
            return Ok(RevokeOutcome::NotSupported(format!(
                "the grant may be shared with {unknown} connected account{} whose Meta user could not be learned, \
                 so it was left in place",
                if unknown == 1 { "" } else { "s" }
            )));
        }
        let shared = state
            .store
            .accounts_sharing_user(&user, &platforms, account.id, account.workspace_id)
            .await?;
        if let Some(kept) = kept(shared) {
            return Ok(kept);
        }
        t.platform_user_id = Some(&user);
        return Ok(state.platforms.revoke(platform, &t).await);
    }
    if platform == Platform::Tiktok {
        let open_id = account
            .state
            .platform_user_id
            .clone()
            .unwrap_or_else(|| account.account_id.clone())
            .replace('-', "");
        let shared = state
            .store
            .accounts_sharing_open_id(&open_id, account.id, account.workspace_id)
            .await?;
        if let Some(kept) = kept(shared) {
            return Ok(kept);
        }
    }
    Ok(state.platforms.revoke(platform, &t).await)
}

/// Why a grant shared by (this workspace's, other workspaces') accounts was kept. Other
/// workspaces' accounts stop the revocation too, but are never counted in the answer (a
/// workspace learns nothing of another's).
fn kept((mine, others): (i64, i64)) -> Option<RevokeOutcome> {
    if mine > 0 {
        Some(RevokeOutcome::NotSupported(format!(
            "the grant is shared with {mine} other connected account{} of this workspace",
            if mine == 1 { "" } else { "s" }
        )))
    } else if others > 0 {
        Some(RevokeOutcome::NotSupported(
            "the grant may be shared with other connections, so it was left in place".into(),
        ))
    } else {
        None
    }
}

/// Asks `debug_token` for the Meta user of every stored account on `platforms` (but
/// `except`) whose user is not known yet, and records it. Returns how many could not be
/// learned (they count as sharing).
async fn learn_meta_users(state: &Checker, platforms: &[Platform], except: AccountRef) -> Result<i64, StoreError> {
    let refs = state
        .store
        .accounts_without_platform_user(platforms, except, MAX_ASKED + 1)
        .await?;
    let mut unknown = (refs.len() as i64 - MAX_ASKED).max(0);
    for r in refs.into_iter().take(MAX_ASKED as usize) {
        let Some(a) = state.store.account_by_ref(r).await? else {
            continue;
        };
        if !state.platforms.shares_meta_grant(a.platform, a.instagram_login) {
            continue;
        }
        let Some(access) = crate::checks::access_token_of(state, &a).await? else {
            unknown += 1;
            continue;
        };
        let t = TokenContext {
            account_id: &a.account_id,
            access_token: &access,
            refresh_token: None,
            platform_user_id: None,
            expires_at: a.token_expires_at,
            instagram_login: a.instagram_login,
        };
        match state.platforms.meta_user(a.platform, &t).await {
            Ok(user) => state.store.set_platform_user(r, &user).await?,
            // A grant already gone shares nothing.
            Err(RevokeOutcome::Revoked) => {}
            Err(_) => unknown += 1,
        }
    }
    Ok(unknown)
}
