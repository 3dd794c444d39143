//! Instagram: with Facebook Login tokens are Graph tokens checked like Facebook's; with
//! Instagram Login they are checked with `/me` and refreshed with `ig_refresh_token`. Which
//! one is each account's own (`instagramLogin` at registration), the configured one else.

use super::graph::{AppCredentials, Graph};
use super::{CheckOutcome, PlatformApi, RefreshOutcome, RevokeOutcome, TokenContext, ValidToken, facebook};
use crate::domain::InstagramLogin;

/// The Instagram adapter. Each account's login (stored at registration, else the configured
/// one) picks the host its token is called on; a product may hold both kinds of accounts.
#[derive(Debug)]
pub struct Instagram {
    /// Facebook Login's host (graph.facebook.com), signed with the Facebook app.
    facebook: Graph,
    /// Instagram Login's host (graph.instagram.com), signed with the Instagram Login app.
    instagram: Graph,
    /// The login of accounts registered without one (`platforms.instagram.login`).
    default: InstagramLogin,
    app: AppCredentials,
}

impl Instagram {
    /// From both logins' Graph hosts, the configured login and the Facebook app's
    /// credentials (Facebook Login's `debug_token`).
    pub fn new(facebook: Graph, instagram: Graph, default: InstagramLogin, app: AppCredentials) -> Self {
        Instagram {
            facebook,
            instagram,
            default,
            app,
        }
    }

    /// The login of the account whose token `t` is.
    pub fn login_of(&self, t: &TokenContext<'_>) -> InstagramLogin {
        self.login(t.instagram_login)
    }

    /// An account's login: its own, else the configured one.
    pub fn login(&self, stored: Option<InstagramLogin>) -> InstagramLogin {
        stored.unwrap_or(self.default)
    }

    /// A check as `login`, on that login's host.
    async fn check_as(&self, login: InstagramLogin, t: &TokenContext<'_>) -> CheckOutcome {
        match login {
            // debug_token names the Page behind the token, not the Instagram account: the
            // Instagram permissions' targets are the one place it names Instagram accounts.
            InstagramLogin::Facebook => match self.facebook.debug_token(&self.app, t).await {
                CheckOutcome::Valid(mut v) => {
                    v.narrow_to(t.account_id, &["instagram_basic", "instagram_content_publish"]);
                    match self.facebook.read_object(t).await {
                        Some(failed) => failed,
                        None => CheckOutcome::Valid(ValidToken { owner_id: None, ..v }),
                    }
                }
                other => other,
            },
            InstagramLogin::Instagram => self.instagram.me(t, "id,user_id,username", "user_id").await,
        }
    }

    /// The Meta user whose grant a revocation would remove (Facebook Login only).
    pub async fn meta_user(&self, t: &TokenContext<'_>) -> Result<String, RevokeOutcome> {
        facebook::meta_user(&self.facebook, &self.app, t).await
    }
}

impl PlatformApi for Instagram {
    async fn check(&self, t: &TokenContext<'_>) -> CheckOutcome {
        let login = self.login_of(t);
        let first = self.check_as(login, t).await;
        // A token its login's host "cannot parse" may be the other login's (registered with
        // the wrong one, or none and the configured default is the other): never tell a user
        // to reconnect because the daemon asked the wrong host.
        if let CheckOutcome::Invalid { detail, .. } = &first
            && detail.contains("Cannot parse access token")
            && let CheckOutcome::Valid(mut v) = self.check_as(login.other(), t).await
        {
            tracing::warn!(
                account = %t.account_id,
                registered = login.as_str(),
                works_with = login.other().as_str(),
                "an Instagram token works only with the other login than the account's: it is checked there \
                 and the account's login is corrected"
            );
            v.instagram_login = Some(login.other());
            return CheckOutcome::Valid(v);
        }
        first
    }

    async fn refresh(&self, t: &TokenContext<'_>) -> RefreshOutcome {
        match self.login_of(t) {
            InstagramLogin::Facebook => RefreshOutcome::NotSupported(
                "Instagram accounts connected through Facebook Login use Facebook tokens, which cannot be refreshed"
                    .into(),
            ),
            InstagramLogin::Instagram => match self.instagram.refresh_long_lived("ig_refresh_token", t).await {
                // Not an Instagram Login token after all: not refreshed, and the check that
                // follows asks Facebook Login's host.
                RefreshOutcome::Fatal(d) if d.contains("Cannot parse access token") => RefreshOutcome::NotSupported(
                    "the token is not an Instagram Login token (graph.instagram.com cannot parse it)".into(),
                ),
                other => other,
            },
        }
    }

    async fn revoke(&self, t: &TokenContext<'_>) -> RevokeOutcome {
        match self.login_of(t) {
            InstagramLogin::Facebook => facebook::revoke_graph(&self.facebook, &self.app, t).await,
            InstagramLogin::Instagram => RevokeOutcome::NotSupported(
                "Instagram Login has no API to revoke a token; the account owner can remove the app in Instagram's settings"
                    .into(),
            ),
        }
    }
}
