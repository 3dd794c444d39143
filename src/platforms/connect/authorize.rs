//! Which platforms can connect, with which app, and where their authorization pages are:
//! the first step of each documented flow.

use std::path::Path;

use crate::config::{Config, InstagramLogin};
use crate::domain::Platform;

/// The app ID of `platform`'s connect flow, the file of its secret and the keys that name
/// them.
pub(super) fn credentials(config: &Config, platform: Platform) -> (Option<&str>, Option<&Path>, &'static str) {
    let p = &config.platforms;
    match platform {
        Platform::Facebook => (
            p.facebook.app_id.as_deref(),
            p.facebook.app_secret_file.as_deref(),
            "platforms.facebook.app_id and app_secret_file",
        ),
        Platform::Instagram => match p.instagram.login {
            // The Facebook app, unless Instagram names its own (as its checks do).
            InstagramLogin::Facebook if p.instagram.app_id.is_some() => (
                p.instagram.app_id.as_deref(),
                p.instagram.app_secret_file.as_deref(),
                "platforms.instagram.app_id and app_secret_file",
            ),
            InstagramLogin::Facebook => (
                p.facebook.app_id.as_deref(),
                p.facebook.app_secret_file.as_deref(),
                "platforms.facebook.app_id and app_secret_file",
            ),
            InstagramLogin::Instagram => (
                p.instagram.login_app_id.as_deref(),
                p.instagram.login_app_secret_file.as_deref(),
                "platforms.instagram.login_app_id and login_app_secret_file",
            ),
        },
        Platform::Threads => (
            p.threads.app_id.as_deref(),
            p.threads.app_secret_file.as_deref(),
            "platforms.threads.app_id and app_secret_file",
        ),
        Platform::Tiktok => (
            p.tiktok.client_key.as_deref(),
            p.tiktok.client_secret_file.as_deref(),
            "platforms.tiktok.client_key and client_secret_file",
        ),
        Platform::Twitter => (
            p.twitter.client_id.as_deref(),
            p.twitter.client_secret_file.as_deref(),
            "platforms.twitter.client_id",
        ),
    }
}

/// The keys to set before accounts of `platform` can be connected with `config`; `None`
/// when it can.
pub fn missing_keys(config: &Config, platform: Platform) -> Option<&'static str> {
    let (id, secret, keys) = credentials(config, platform);
    // X's public clients have no secret; every other flow needs one.
    let ok = id.is_some_and(|i| !i.trim().is_empty()) && (secret.is_some() || platform == Platform::Twitter);
    (!ok).then_some(keys)
}

/// Whether accounts of `platform` can be connected with `config`: `Err` names the keys to set.
pub fn connectable(config: &Config, platform: Platform) -> Result<(), String> {
    match missing_keys(config, platform) {
        None => Ok(()),
        Some(keys) => Err(format!("connecting {} accounts needs {keys}", platform.display_name())),
    }
}

/// The scopes a connect link asks for: `platforms.P.connect_scopes`, or the account's
/// required permissions plus what checks and refreshes need.
pub fn scopes(config: &Config, platform: Platform) -> Vec<String> {
    let pc = config.platforms.get(platform);
    if let Some(s) = &pc.connect_scopes {
        return s.clone();
    }
    let login = config.platforms.instagram.login;
    let mut s = pc.required_permissions(platform, login);
    let extra: &[&str] = match (platform, login) {
        // `/me/accounts` lists the Pages only with pages_show_list.
        (Platform::Facebook, _) => &["pages_show_list"],
        // ...and a Page's instagram_business_account needs pages_read_engagement too.
        (Platform::Instagram, InstagramLogin::Facebook) => &["pages_show_list", "pages_read_engagement"],
        // X issues a refresh token only with offline.access.
        (Platform::Twitter, _) => &["offline.access"],
        _ => &[],
    };
    for e in extra {
        if !s.iter().any(|x| x == e) {
            s.push((*e).to_owned());
        }
    }
    s
}

/// The platform's documented authorization page.
fn default_authorize_url(config: &Config, platform: Platform) -> String {
    match (platform, config.platforms.instagram.login) {
        (Platform::Facebook, _) | (Platform::Instagram, InstagramLogin::Facebook) => format!(
            "https://www.facebook.com/{}/dialog/oauth",
            config.platforms.get(platform).api_version()
        ),
        (Platform::Instagram, InstagramLogin::Instagram) => "https://www.instagram.com/oauth/authorize".into(),
        (Platform::Threads, _) => "https://threads.net/oauth/authorize".into(),
        (Platform::Tiktok, _) => "https://www.tiktok.com/v2/auth/authorize/".into(),
        (Platform::Twitter, _) => "https://x.com/i/oauth2/authorize".into(),
    }
}

/// The platform's authorization page for one session: `state` is the session, `challenge`
/// its PKCE S256 challenge (sent where the platform takes PKCE: X). `Err` when the
/// configured `authorize_url` is not a URL or the platform cannot connect.
pub fn authorize_url(
    config: &Config,
    platform: Platform,
    redirect_uri: &str,
    state: &str,
    challenge: &str,
) -> Result<String, String> {
    connectable(config, platform)?;
    let (id, _, _) = credentials(config, platform);
    let base = config
        .platforms
        .get(platform)
        .authorize_url
        .clone()
        .unwrap_or_else(|| default_authorize_url(config, platform));
    let mut url = reqwest::Url::parse(&base).map_err(|_| format!("platforms.{platform}.authorize_url is not a URL"))?;
    // X separates scopes with spaces; Meta and TikTok with commas.
    let sep = if platform == Platform::Twitter { " " } else { "," };
    {
        let mut q = url.query_pairs_mut();
        q.append_pair(
            if platform == Platform::Tiktok {
                "client_key"
            } else {
                "client_id"
            },
            id.unwrap_or_default(),
        )
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("response_type", "code")
        .append_pair("scope", &scopes(config, platform).join(sep))
        .append_pair("state", state);
        if platform == Platform::Twitter {
            q.append_pair("code_challenge", challenge)
                .append_pair("code_challenge_method", "S256");
        }
    }
    Ok(url.to_string())
}
