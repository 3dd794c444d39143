//! Instagram: with Facebook Login (default) tokens are Graph tokens checked like Facebook's;
//! with Instagram Login they are checked with `/me` and refreshed with `ig_refresh_token`.

use super::graph::{AppCredentials, Graph};
use super::{CheckOutcome, PlatformApi, RefreshOutcome, RevokeOutcome, TokenContext, facebook};
use crate::config::InstagramLogin;

/// The Instagram adapter.
#[derive(Debug)]
pub struct Instagram {
    graph: Graph,
    login: InstagramLogin,
    app: AppCredentials,
}

impl Instagram {
    /// From a Graph host, the login flavour and the app credentials (Facebook Login only).
    pub fn new(graph: Graph, login: InstagramLogin, app: AppCredentials) -> Self {
        Instagram { graph, login, app }
    }

    /// Which login the accounts were connected with.
    pub fn login(&self) -> InstagramLogin {
        self.login
    }
}

impl PlatformApi for Instagram {
    async fn check(&self, t: &TokenContext<'_>) -> CheckOutcome {
        match self.login {
            InstagramLogin::Facebook => self.graph.debug_token(&self.app, t).await,
            InstagramLogin::Instagram => self.graph.me(t, "user_id,username", "user_id").await,
        }
    }

    async fn refresh(&self, t: &TokenContext<'_>) -> RefreshOutcome {
        match self.login {
            InstagramLogin::Facebook => RefreshOutcome::NotSupported(
                "Instagram accounts connected through Facebook Login use Facebook tokens, which cannot be refreshed"
                    .into(),
            ),
            InstagramLogin::Instagram => self.graph.refresh_long_lived("ig_refresh_token", t).await,
        }
    }

    async fn revoke(&self, t: &TokenContext<'_>) -> RevokeOutcome {
        match self.login {
            InstagramLogin::Facebook => facebook::revoke_graph(&self.graph, &self.app, t).await,
            InstagramLogin::Instagram => RevokeOutcome::NotSupported(
                "Instagram Login has no API to revoke a token; the account owner can remove the app in Instagram's settings"
                    .into(),
            ),
        }
    }
}
