//! Facebook Pages: `debug_token` checks, no refresh, de-authorisation through `/permissions`.

use super::graph::{AppCredentials, Graph};
use super::{CheckOutcome, PlatformApi, RefreshOutcome, RevokeOutcome, TokenContext};

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
}

/// Revocation for Graph tokens checked by `debug_token`: `DELETE /{user_id}/permissions`, with
/// the user ID from an earlier check or from a fresh `debug_token`.
pub(super) async fn revoke_graph(graph: &Graph, app: &AppCredentials, t: &TokenContext<'_>) -> RevokeOutcome {
    let user_id = match t.platform_user_id {
        Some(u) => u.to_owned(),
        None => match graph.debug_token(app, t).await {
            CheckOutcome::Valid(v) => match v.user_id {
                Some(u) => u,
                None => {
                    return RevokeOutcome::Failed(format!(
                        "{} did not say which user the token belongs to",
                        graph.platform().display_name()
                    ));
                }
            },
            // A dead token has nothing left to revoke.
            CheckOutcome::Invalid { .. } => return RevokeOutcome::Revoked,
            CheckOutcome::Transient(tr) => return RevokeOutcome::Failed(tr.detail),
            CheckOutcome::PermissionDenied { detail } | CheckOutcome::Misconfigured(detail) => {
                return RevokeOutcome::Failed(detail);
            }
        },
    };
    graph.revoke_permissions(&user_id, t).await
}

impl PlatformApi for Facebook {
    async fn check(&self, t: &TokenContext<'_>) -> CheckOutcome {
        self.graph.debug_token(&self.app, t).await
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
