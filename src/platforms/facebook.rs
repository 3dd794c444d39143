//! Facebook Pages: `debug_token` checks, no refresh, de-authorisation through `/permissions`.

use super::graph::{AppCredentials, Graph};
use super::{CheckOutcome, InvalidReason, PlatformApi, RefreshOutcome, RevokeOutcome, TokenContext};

/// The Facebook adapter.
#[derive(Debug)]
pub struct Facebook {
    graph: Graph,
    app: AppCredentials,
}

impl Facebook {
    /// From a Graph host and the app credentials.
    pub fn new(graph: Graph, app: AppCredentials) -> Self {
        Facebook { graph, app }
    }

    /// The Meta user whose grant a revocation would remove.
    pub async fn meta_user(&self, t: &TokenContext<'_>) -> Result<String, RevokeOutcome> {
        meta_user(&self.graph, &self.app, t).await
    }
}

/// The Meta user behind a Graph token: the one an earlier check stored, or a fresh
/// `debug_token`'s `user_id` (for a Page token, the person who granted it).
pub(super) async fn meta_user(
    graph: &Graph,
    app: &AppCredentials,
    t: &TokenContext<'_>,
) -> Result<String, RevokeOutcome> {
    if let Some(u) = t.platform_user_id {
        return Ok(u.to_owned());
    }
    match graph.debug_token(app, t).await {
        CheckOutcome::Valid(v) => v.user_id.ok_or_else(|| {
            RevokeOutcome::Failed(format!(
                "{} did not say which user the token belongs to",
                graph.platform().display_name()
            ))
        }),
        // The person removed the app: the grant is already gone.
        CheckOutcome::Invalid {
            reason: InvalidReason::AppRemoved,
            ..
        } => Err(RevokeOutcome::Revoked),
        CheckOutcome::Invalid { detail, .. } => Err(RevokeOutcome::Failed(format!(
            "the token no longer works and {} did not say whose grant it was ({detail})",
            graph.platform().display_name()
        ))),
        CheckOutcome::Transient(tr) => Err(RevokeOutcome::Failed(tr.detail)),
        CheckOutcome::PermissionDenied { detail }
        | CheckOutcome::Misconfigured(detail)
        | CheckOutcome::OtherApp(detail) => Err(RevokeOutcome::Failed(detail)),
    }
}

/// Revocation for Graph tokens checked by `debug_token`: `DELETE /{user_id}/permissions`
/// with the app token. The caller has made sure no other connected account shares the grant.
pub(super) async fn revoke_graph(graph: &Graph, app: &AppCredentials, t: &TokenContext<'_>) -> RevokeOutcome {
    match meta_user(graph, app, t).await {
        Ok(user_id) => graph.revoke_permissions(&user_id, app).await,
        Err(outcome) => outcome,
    }
}

impl PlatformApi for Facebook {
    async fn check(&self, t: &TokenContext<'_>) -> CheckOutcome {
        match self.graph.debug_token(&self.app, t).await {
            // A person who granted "current Pages only" names them: publishing to a Page
            // needs pages_manage_posts granted for that Page.
            CheckOutcome::Valid(mut v) => {
                v.narrow_to(t.account_id, &["pages_manage_posts"]);
                // debug_token only introspects: a call made with the token shows what it
                // does not (a checkpoint, a lost role). Another Page's token is the caller's
                // verdict (wrong account), not a failed read.
                if v.belongs_to(crate::domain::Platform::Facebook, t.account_id) == Some(false) {
                    return CheckOutcome::Valid(v);
                }
                match self.graph.read_object(t).await {
                    Some(failed) => failed,
                    None => CheckOutcome::Valid(v),
                }
            }
            other => other,
        }
    }

    async fn refresh(&self, _t: &TokenContext<'_>) -> RefreshOutcome {
        RefreshOutcome::NotSupported(
            "Facebook Page tokens from a long-lived user token do not expire and cannot be refreshed".into(),
        )
    }

    async fn revoke(&self, t: &TokenContext<'_>) -> RevokeOutcome {
        revoke_graph(&self.graph, &self.app, t).await
    }
}
