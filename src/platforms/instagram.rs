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
    /// The other login's host, asked once before a token it "cannot parse" is called dead
    /// (a product may hold both kinds of Instagram accounts).
    other: Graph,
}

impl Instagram {
    /// From the configured login's Graph host, the login flavour, the app credentials
    /// (Facebook Login's `debug_token`) and the other login's host.
    pub fn new(graph: Graph, login: InstagramLogin, app: AppCredentials, other: Graph) -> Self {
        Instagram {
            graph,
            login,
            app,
            other,
        }
    }

    /// A check as `login` on `graph`.
    async fn check_as(&self, login: InstagramLogin, graph: &Graph, t: &TokenContext<'_>) -> CheckOutcome {
        match login {
            // debug_token names the Page behind the token, not the Instagram account: the
            // Instagram permissions' targets are the one place it names Instagram accounts.
            InstagramLogin::Facebook => match graph.debug_token(&self.app, t).await {
                CheckOutcome::Valid(mut v) => {
                    v.narrow_to(t.account_id, &["instagram_basic", "instagram_content_publish"]);
                    match graph.read_object(t).await {
                        Some(failed) => failed,
                        None => CheckOutcome::Valid(ValidToken { owner_id: None, ..v }),
                    }
                }
                other => other,
            },
            InstagramLogin::Instagram => graph.me(t, "id,user_id,username", "user_id").await,
        }
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
        let first = self.check_as(self.login, &self.graph, t).await;
        // A token the configured host "cannot parse" may be the other login's: never tell a
        // user to reconnect because the daemon asked the wrong host.
        if let CheckOutcome::Invalid { detail, .. } = &first
            && detail.contains("Cannot parse access token")
        {
            let other = match self.login {
                InstagramLogin::Facebook => InstagramLogin::Instagram,
                InstagramLogin::Instagram => InstagramLogin::Facebook,
            };
            if let v @ CheckOutcome::Valid(_) = self.check_as(other, &self.other, t).await {
                tracing::warn!(
                    account = %t.account_id,
                    configured = ?self.login,
                    "an Instagram token works only with the other login than platforms.instagram.login: \
                     it is checked there, but not refreshed; connect it with the configured login"
                );
                return v;
            }
        }
        first
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
