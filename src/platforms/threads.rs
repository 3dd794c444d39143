//! Threads: `/v1.0/me` liveness, `th_refresh_token` refresh, no revoke API.

use super::graph::Graph;
use super::{CheckOutcome, PlatformApi, RefreshOutcome, RevokeOutcome, TokenContext};

/// The Threads adapter.
#[derive(Debug)]
pub struct Threads {
    graph: Graph,
}

impl Threads {
    /// From the Threads Graph host (version `v1.0`).
    pub fn new(graph: Graph) -> Self {
        Threads { graph }
    }
}

impl PlatformApi for Threads {
    async fn check(&self, t: &TokenContext<'_>) -> CheckOutcome {
        self.graph.me(t, "id,username", "id").await
    }

    async fn refresh(&self, t: &TokenContext<'_>) -> RefreshOutcome {
        self.graph.refresh_long_lived("th_refresh_token", t).await
    }

    async fn revoke(&self, _t: &TokenContext<'_>) -> RevokeOutcome {
        RevokeOutcome::NotSupported(
            "Threads has no API to revoke a token; the account owner can remove the app in Threads' settings".into(),
        )
    }
}
