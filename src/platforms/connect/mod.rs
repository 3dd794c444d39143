//! Connect links, the platforms' side: each platform's authorization page and code exchange as
//! documented (the table "Connecting an account" in `src/platforms/README.md` cites each
//! step). The connect engine (`crate::connect`) keeps the sessions and stores what comes of
//! them; this module only talks to the platforms. It has a context of its own, [`Apps`]: the
//! HTTP client and the app credentials of each platform that can connect.

use std::collections::HashSet;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::{Http, NewTokens, expiry_in, oauth2, scope_list};
use crate::config::{Config, ConfigError, InstagramLogin, read_secret_file};
use crate::domain::{self, Platform};

mod authorize;

use authorize::credentials;
pub use authorize::{authorize_url, connectable, missing_keys, scopes};

/// Longest lifetime accepted for a long-lived Instagram Login or Threads token: 60 days
/// documented, times two.
const MAX_LONG_LIVED: i64 = 2 * 60 * 86_400;
/// At most this many pages of `/me/accounts` are read (100 Pages each).
const MAX_PAGE_PAGES: usize = 50;

/// One platform's app, as its connect flow uses it.
struct App {
    id: String,
    secret: Option<SecretString>,
    /// API calls and the long-lived exchanges (`platforms.P.base_url`).
    base: String,
    /// The code exchange: the same host, except Instagram Login's real one
    /// (api.instagram.com) when no `base_url` is configured.
    token_base: String,
    version: String,
}

/// The apps connect links use: the HTTP client and each connectable platform's app.
pub struct Apps {
    http: Http,
    login: InstagramLogin,
    apps: Vec<(Platform, App)>,
}

impl std::fmt::Debug for Apps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ps: Vec<Platform> = self.apps.iter().map(|(p, _)| *p).collect();
        f.debug_struct("Apps").field("platforms", &ps).finish_non_exhaustive()
    }
}

/// What a code exchange gave.
#[derive(Debug)]
pub enum Exchanged {
    /// One account's tokens. Whose they are is read with a check; `account_id` is set when the
    /// exchange's answer named the account (TikTok's `open_id`).
    One {
        /// The tokens.
        tokens: NewTokens,
        /// The account, when the answer named it.
        account_id: Option<String>,
    },
    /// The accounts one consent granted, each with its own token (Facebook Pages, Instagram
    /// accounts through Facebook Login); empty when the person granted none.
    Many(Vec<Granted>),
}

/// One account a consent granted.
#[derive(Debug)]
pub struct Granted {
    /// The platform's account ID (the Page, or the Instagram professional account).
    pub account_id: String,
    /// Its name.
    pub username: String,
    /// Its token.
    pub tokens: NewTokens,
}

/// Graph numbers and IDs arrive as numbers or strings.
fn id_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn str_of(v: &Value, k: &str) -> Option<String> {
    v.get(k)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// What a platform said when it refused: Graph's `error` object, OAuth's `error` and
/// `error_description`, X's problem `detail`; never a token.
fn refusal(platform: Platform, status: u16, v: &Value) -> String {
    let name = platform.display_name();
    if let Some(e) = v.get("error").filter(|e| e.is_object()) {
        let code = id_of(e.get("code")).unwrap_or_default();
        let msg = domain::truncate_for_message(e.get("message").and_then(Value::as_str).unwrap_or_default());
        return format!("{name} error {code}: {msg}");
    }
    let (code, desc) = oauth2::error(Some(v));
    if !code.is_empty() {
        return format!("{name} refused the code exchange: {code} {desc}");
    }
    match v.get("detail").and_then(Value::as_str) {
        Some(d) => format!("{name} answered HTTP {status}: {}", domain::truncate_for_message(d)),
        None => format!("{name} answered HTTP {status}"),
    }
}

impl Apps {
    /// The apps of every platform that can connect with `config`; reads their secret files.
    pub fn new(config: &Config, http: Http) -> Result<Apps, ConfigError> {
        let mut apps = Vec::new();
        let login = config.platforms.instagram.login;
        for platform in Platform::ALL {
            if connectable(config, platform).is_err() {
                continue;
            }
            let (id, secret, _) = credentials(config, platform);
            let secret = secret
                .map(|f| read_secret_file(&format!("the {} app secret", platform.display_name()), f))
                .transpose()?;
            let pc = config.platforms.get(platform);
            let base = pc.base_url(platform, login);
            let token_base = match (platform, login, &pc.base_url) {
                (Platform::Instagram, InstagramLogin::Instagram, None) => "https://api.instagram.com".to_owned(),
                _ => base.clone(),
            };
            let version = match platform {
                Platform::Threads => "v1.0".to_owned(),
                _ => pc.api_version().to_owned(),
            };
            apps.push((
                platform,
                App {
                    id: id.unwrap_or_default().to_owned(),
                    secret,
                    base,
                    token_base,
                    version,
                },
            ));
        }
        Ok(Apps { http, login, apps })
    }

    /// The login Instagram accounts connect with (`platforms.instagram.login`).
    pub fn instagram_login(&self) -> InstagramLogin {
        self.login
    }

    fn app(&self, platform: Platform) -> Result<&App, String> {
        self.apps
            .iter()
            .find(|(p, _)| *p == platform)
            .map(|(_, a)| a)
            .ok_or_else(|| {
                format!(
                    "{} cannot be connected with this configuration",
                    platform.display_name()
                )
            })
    }

    /// Sends a request to a platform's token or identity endpoint; its JSON on success.
    async fn call(&self, platform: Platform, req: reqwest::RequestBuilder) -> Result<Value, String> {
        let reply = self.http.send_token(platform, req).await.map_err(|t| t.detail)?;
        let v = reply.json(platform).map_err(|t| t.detail)?;
        let failed = reply.status != 200
            || match v.get("error") {
                Some(Value::String(s)) => !s.is_empty(),
                Some(Value::Object(e)) => e.get("code").and_then(Value::as_str) != Some("ok"),
                _ => false,
            };
        if failed {
            return Err(refusal(platform, reply.status, &v));
        }
        Ok(v)
    }

    /// Exchanges the code a consent gave (and what follows it on the platform) for tokens.
    pub async fn exchange(
        &self,
        platform: Platform,
        code: &str,
        redirect_uri: &str,
        verifier: &SecretString,
    ) -> Result<Exchanged, String> {
        let app = self.app(platform)?;
        match (platform, self.login) {
            (Platform::Facebook, _) | (Platform::Instagram, InstagramLogin::Facebook) => self
                .meta_pages(platform, app, code, redirect_uri)
                .await
                .map(Exchanged::Many),
            (Platform::Instagram, InstagramLogin::Instagram) => {
                self.short_then_long(platform, app, "ig_exchange_token", code, redirect_uri)
                    .await
            }
            (Platform::Threads, _) => {
                self.short_then_long(platform, app, "th_exchange_token", code, redirect_uri)
                    .await
            }
            (Platform::Tiktok, _) => self.tiktok(app, code, redirect_uri).await,
            (Platform::Twitter, _) => self.twitter(app, code, redirect_uri, verifier).await,
        }
    }

    fn secret(app: &App, platform: Platform) -> Result<&str, String> {
        app.secret
            .as_ref()
            .map(|s| s.expose_secret())
            .ok_or_else(|| format!("connecting {} accounts needs the app secret", platform.display_name()))
    }

    /// Facebook Login ("Manually Build a Login Flow"; "Long-Lived Access Tokens"): the code
    /// for a short-lived user token, that for a long-lived one, `debug_token` for the
    /// `granular_scopes` the person chose, and `/me/accounts` for the Pages with their Page
    /// tokens (which do not expire when they come from a long-lived user token). Instagram
    /// through Facebook Login takes each Page's `instagram_business_account`.
    async fn meta_pages(
        &self,
        platform: Platform,
        app: &App,
        code: &str,
        redirect_uri: &str,
    ) -> Result<Vec<Granted>, String> {
        let secret = Self::secret(app, platform)?;
        let client = self.http.client();
        let token_url = format!("{}/{}/oauth/access_token", app.token_base, app.version);
        let short = self
            .call(
                platform,
                client.get(&token_url).query(&[
                    ("client_id", app.id.as_str()),
                    ("redirect_uri", redirect_uri),
                    ("client_secret", secret),
                    ("code", code),
                ]),
            )
            .await?;
        let short = str_of(&short, "access_token").ok_or("the code exchange gave no access token")?;
        let long = self
            .call(
                platform,
                client.get(&token_url).query(&[
                    ("grant_type", "fb_exchange_token"),
                    ("client_id", app.id.as_str()),
                    ("client_secret", secret),
                    ("fb_exchange_token", short.as_str()),
                ]),
            )
            .await?;
        let user = str_of(&long, "access_token").ok_or("the long-lived exchange gave no access token")?;
        let app_token = format!("{}|{secret}", app.id);
        let debug = self
            .call(
                platform,
                client
                    .get(format!("{}/{}/debug_token", app.base, app.version))
                    .query(&[("input_token", user.as_str()), ("access_token", app_token.as_str())]),
            )
            .await?;
        let data = debug.get("data").cloned().unwrap_or_default();
        let scopes = data.get("scopes").and_then(scope_list).unwrap_or_default();
        // The Pages (and Instagram accounts) each permission was granted for, where the
        // person chose some ("granular_scopes": {scope, target_ids}).
        let targets: Vec<(String, HashSet<String>)> = data
            .get("granular_scopes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|g| {
                let ids = g.get("target_ids")?.as_array()?;
                let ids = ids.iter().filter_map(|i| id_of(Some(i))).collect();
                Some((str_of(g, "scope")?, ids))
            })
            .collect();
        let pages = self.pages(platform, app, &user).await?;
        let mut out: Vec<Granted> = Vec::new();
        for page in pages {
            let (Some(page_id), Some(token)) = (id_of(page.get("id")), str_of(&page, "access_token")) else {
                continue;
            };
            let (account_id, username) = if platform == Platform::Facebook {
                (page_id.clone(), str_of(&page, "name").unwrap_or_default())
            } else {
                let Some(ig) = page.get("instagram_business_account") else {
                    continue;
                };
                let Some(id) = id_of(ig.get("id")) else { continue };
                (id, str_of(ig, "username").unwrap_or_default())
            };
            let chosen = targets.iter().all(|(scope, ids)| {
                if scope.starts_with("instagram_") {
                    platform == Platform::Facebook || ids.contains(&account_id)
                } else {
                    ids.contains(&page_id)
                }
            });
            if chosen && !out.iter().any(|g| g.account_id == account_id) {
                out.push(Granted {
                    account_id,
                    username,
                    tokens: NewTokens {
                        access_token: SecretString::from(token),
                        refresh_token: None,
                        expires_at: None,
                        refresh_expires_at: None,
                        scopes: Some(scopes.clone()),
                    },
                });
            }
        }
        Ok(out)
    }

    /// `GET /me/accounts` with the user token, page by page (`paging.cursors.after`, only
    /// while `paging.next` says there is more).
    async fn pages(&self, platform: Platform, app: &App, user: &str) -> Result<Vec<Value>, String> {
        let url = format!("{}/{}/me/accounts", app.base, app.version);
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGE_PAGES {
            let mut q = vec![
                (
                    "fields",
                    "id,name,access_token,instagram_business_account{id,username}".to_owned(),
                ),
                ("limit", "100".to_owned()),
                ("access_token", user.to_owned()),
            ];
            if let Some(a) = &after {
                q.push(("after", a.clone()));
            }
            let v = self.call(platform, self.http.client().get(&url).query(&q)).await?;
            out.extend(v.get("data").and_then(Value::as_array).into_iter().flatten().cloned());
            let paging = v.get("paging");
            after = paging
                .filter(|p| p.get("next").is_some())
                .and_then(|p| p.get("cursors"))
                .and_then(|c| str_of(c, "after"));
            if after.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// Instagram Login ("Business Login for Instagram") and Threads ("Get Access Tokens";
    /// "Long-Lived Tokens"): `POST /oauth/access_token` for a one-hour token, then `GET
    /// /access_token?grant_type=G` for a 60-day one.
    async fn short_then_long(
        &self,
        platform: Platform,
        app: &App,
        grant_type: &str,
        code: &str,
        redirect_uri: &str,
    ) -> Result<Exchanged, String> {
        let secret = Self::secret(app, platform)?;
        let client = self.http.client();
        let v = self
            .call(
                platform,
                client.post(format!("{}/oauth/access_token", app.token_base)).form(&[
                    ("client_id", app.id.as_str()),
                    ("client_secret", secret),
                    ("grant_type", "authorization_code"),
                    ("redirect_uri", redirect_uri),
                    ("code", code),
                ]),
            )
            .await?;
        // Instagram's Business Login answers {"data": [{access_token, user_id, permissions}]};
        // Threads (and Instagram's older form) the object itself.
        let d = v.get("data").and_then(|d| d.get(0)).unwrap_or(&v);
        let short = str_of(d, "access_token").ok_or("the code exchange gave no access token")?;
        let permissions = d.get("permissions").or_else(|| d.get("scope")).and_then(scope_list);
        let now = domain::now();
        let long = self
            .call(
                platform,
                client.get(format!("{}/access_token", app.base)).query(&[
                    ("grant_type", grant_type),
                    ("client_secret", secret),
                    ("access_token", short.as_str()),
                ]),
            )
            .await?;
        let token = str_of(&long, "access_token").ok_or("the long-lived exchange gave no access token")?;
        Ok(Exchanged::One {
            tokens: NewTokens {
                access_token: SecretString::from(token),
                refresh_token: None,
                expires_at: long
                    .get("expires_in")
                    .and_then(Value::as_i64)
                    .map(|s| expiry_in(now, s, MAX_LONG_LIVED)),
                refresh_expires_at: None,
                scopes: permissions,
            },
            // Instagram's user_id here is not always the professional account ID that
            // `/me` names (and checks compare with): the check says whose token it is.
            account_id: None,
        })
    }

    /// TikTok ("Manage User Access Tokens with OAuth v2"): `POST /v2/oauth/token/` with the
    /// client key and secret. Login Kit for Web takes no PKCE (its desktop flow's challenge is
    /// hex, not RFC 7636's), so the session's `state` and the secret protect the code.
    async fn tiktok(&self, app: &App, code: &str, redirect_uri: &str) -> Result<Exchanged, String> {
        let p = Platform::Tiktok;
        let secret = Self::secret(app, p)?;
        let now = domain::now();
        let v = self
            .call(
                p,
                self.http
                    .client()
                    .post(format!("{}/v2/oauth/token/", app.token_base))
                    .form(&[
                        ("client_key", app.id.as_str()),
                        ("client_secret", secret),
                        ("code", code),
                        ("grant_type", "authorization_code"),
                        ("redirect_uri", redirect_uri),
                    ]),
            )
            .await?;
        let tokens =
            oauth2::tokens(&v, now, super::tiktok::LIFETIMES).ok_or("TikTok answered without an access token")?;
        Ok(Exchanged::One {
            tokens,
            account_id: str_of(&v, "open_id"),
        })
    }

    /// X ("OAuth 2.0 Authorization Code Flow with PKCE", step 3): `POST /2/oauth2/token` with
    /// the code and the verifier; a confidential client authenticates with HTTP Basic, a
    /// public one sends `client_id` in the body.
    async fn twitter(
        &self,
        app: &App,
        code: &str,
        redirect_uri: &str,
        verifier: &SecretString,
    ) -> Result<Exchanged, String> {
        let p = Platform::Twitter;
        let mut form = oauth2::code_form(&[], code, redirect_uri, verifier);
        let req = self.http.client().post(format!("{}/2/oauth2/token", app.token_base));
        let req = match &app.secret {
            Some(s) => req.basic_auth(&app.id, Some(s.expose_secret())),
            None => {
                form.push(("client_id", app.id.clone()));
                req
            }
        };
        let now = domain::now();
        let v = self.call(p, req.form(&form)).await?;
        let tokens = oauth2::tokens(&v, now, super::twitter::LIFETIMES)
            .ok_or("X answered the code exchange without an access token")?;
        Ok(Exchanged::One {
            tokens,
            account_id: None,
        })
    }
}
