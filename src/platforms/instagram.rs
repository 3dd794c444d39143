//! Instagram: with Facebook Login (default) tokens are Graph tokens checked like Facebook's;
//! with Instagram Login they are checked with `/me` and refreshed with `ig_refresh_token`.

use super::graph::{AppCredentials, Graph};
use super::{CheckOutcome, PlatformApi, RefreshOutcome, RevokeOutcome, TokenContext, ValidToken, facebook};
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

    /// The Meta user whose grant a revocation would remove (Facebook Login only).
    pub async fn meta_user(&self, t: &TokenContext<'_>) -> Result<String, RevokeOutcome> {
        facebook::meta_user(&self.graph, &self.app, t).await
    }

    /// Which login the accounts were connected with.
    pub fn login(&self) -> InstagramLogin {
        self.login
    }
}

impl PlatformApi for Instagram {
    async fn check(&self, t: &TokenContext<'_>) -> CheckOutcome {
        match self.login {
            // debug_token names the Page behind the token, not the Instagram account: there
            // is no ID in its answer to compare with the registered account.
            // The Instagram permissions' targets are the one place the answer names Instagram
            // accounts: granted for others only, they are missing for this one.
            InstagramLogin::Facebook => match self.graph.debug_token(&self.app, t).await {
                CheckOutcome::Valid(mut v) => {
                    v.narrow_to(t.account_id, &["instagram_basic", "instagram_content_publish"]);
                    match self.graph.read_object(t).await {
                        Some(failed) => failed,
                        None => CheckOutcome::Valid(ValidToken { owner_id: None, ..v }),
                    }
                }
                other => other,
            },
            InstagramLogin::Instagram => self.graph.me(t, "id,user_id,username", "user_id").await,
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
