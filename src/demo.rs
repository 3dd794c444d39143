//! `socialsyncer demo`: simulated platforms, a throwaway database with a dozen sample
//! accounts in varied states, and the daemon serving them.

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};

use crate::accounts::{self, RegistrationInput};
use crate::app::AppState;
use crate::config::Config;
use crate::domain::{self, Platform};
use crate::simulator::{Behavior, Simulator, TokenSpec, TokenState};
use crate::{checks, crypto, server};

const DAY: i64 = 86_400;

struct Sample {
    platform: Platform,
    id: &'static str,
    username: &'static str,
    tweak: fn(&mut TokenSpec),
}

fn samples() -> Vec<Sample> {
    let s = |platform, id, username, tweak| Sample {
        platform,
        id,
        username,
        tweak,
    };
    vec![
        s(Platform::Instagram, "17841400123456789", "mybusiness", |_| {}),
        s(Platform::Instagram, "17841400123456790", "mybusiness.eu", |t| {
            t.scopes = vec!["instagram_basic".into(), "pages_show_list".into()];
        }),
        s(Platform::Facebook, "111222333444555", "My Business Page", |t| {
            t.expires_in = None
        }),
        s(Platform::Facebook, "111222333444556", "My Other Page", |t| {
            t.state = TokenState::PasswordChanged;
        }),
        s(Platform::Facebook, "111222333444557", "Seasonal Page", |t| {
            t.expires_in = None;
            t.data_access_expires_in = Some(5 * DAY + 3_600);
        }),
        s(Platform::Threads, "25123456789012345", "mybusiness", |t| {
            t.expires_in = Some(3 * DAY + 3_600);
        }),
        s(Platform::Threads, "25123456789012346", "mybusiness.news", |_| {}),
        s(
            Platform::Tiktok,
            "723f24d7-e717-40f8-a2b6-cb8464cd23b4",
            "mybusiness",
            |_| {},
        ),
        s(
            Platform::Tiktok,
            "9b2e6c1a-40f8-4e71-a2b6-0c8464cd23b5",
            "mybusiness.shop",
            |t| {
                t.state = TokenState::Revoked;
            },
        ),
        s(Platform::Twitter, "1234567890", "@mybusiness", |t| {
            t.expires_in = Some(3 * DAY + 3_600);
            t.with_refresh = false;
        }),
        s(Platform::Twitter, "1234567891", "@mybusiness_help", |_| {}),
        s(Platform::Twitter, "1234567892", "@mybiz_promo", |t| {
            t.behavior = Behavior::RateLimited
        }),
    ]
}

/// Runs the demo until SIGINT/SIGTERM. `listen` overrides `server.listen`.
pub async fn run(listen: Option<String>) -> anyhow::Result<()> {
    let sim = Simulator::start()
        .await
        .context("Failed to start the simulated platforms")?;
    let dir = tempfile::Builder::new()
        .prefix("socialsyncer-demo-")
        .tempdir()
        .context("Failed to create a folder for the demo database")?;
    // Connect links on a port of their own, next to the API.
    let connect = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        format!("http://{}", l.local_addr()?)
    };
    let toml = format!(
        "[server]\nlisten = \"{}\"\nmetrics_listen = \"\"\n[database]\nurl = \"sqlite://{}/demo.db\"\n[schedule]\ncron = \"*/30 * * * * *\"\n\
         [connect]\npublic_url = \"{connect}\"\nlisten = \"{}\"\nallowed_redirects = [\"{connect}/connect/done\"]\n{}",
        listen.as_deref().unwrap_or("127.0.0.1:8080"),
        dir.path().display(),
        connect.trim_start_matches("http://"),
        sim.config_toml(dir.path())?
    );
    let config = Config::from_toml(&toml)?;
    let state = AppState::build(config).await?;

    let now = domain::now();
    let ws = state.store.ensure_workspace("demo", now).await?;
    let key = crypto::generate_api_key();
    state
        .store
        .insert_api_key(ws, &key.prefix, &key.hash, now, &crate::domain::KeyScope::ALL)
        .await?;
    for s in samples() {
        let mut spec = TokenSpec::valid(s.platform, s.id);
        spec.username = s.username.to_owned();
        (s.tweak)(&mut spec);
        let scopes = spec.scopes.clone();
        let issued = sim.issue(s.platform, spec);
        let reg = RegistrationInput {
            custody: None,
            instagram_login: None,
            platform: s.platform.as_str().to_owned(),
            account_id: s.id.to_owned(),
            username: s.username.to_owned(),
            access_token: SecretString::from(issued.access_token),
            refresh_token: issued.refresh_token.map(SecretString::from),
            expires_at: issued.expires_at.map(domain::rfc3339),
            scopes,
        }
        .validate()?;
        accounts::register(&state.checker, ws, &reg).await?;
    }
    let all = state.store.all_accounts(None).await?;
    let checked = checks::check_all(&state.checker, all, state.config().schedule.concurrency, |_| {}).await?;
    let updates: Vec<_> = checked.into_iter().map(|c| c.update).collect();
    state.store.record_checks(&updates).await?;

    let mut links = Vec::new();
    for platform in [crate::domain::Platform::Twitter, crate::domain::Platform::Facebook] {
        let link = crate::connect::start(
            &state.api.connector,
            ws,
            platform,
            &format!("{connect}/connect/done"),
            None,
        )
        .await?;
        links.push(link.url);
    }
    let share = crypto::generate_share_token();
    state
        .store
        .insert_status_link(ws, &share.prefix, &share.hash, now)
        .await?;
    let listener = server::bind(&state).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let k = key.secret.expose_secret();
    out!(
        "socialsyncer demo is running on {base} with simulated platforms and 12 sample accounts.\n\
         Database: {}/demo.db (deleted on exit). Stop with Ctrl-C.\n\n\
         API key (workspace \"demo\"): {k}\n\n\
         Try:\n\
         \x20 curl -H 'Authorization: Bearer {k}' {base}/v1/accounts\n\
         \x20 curl -H 'Authorization: Bearer {k}' {base}/v1/accounts/health\n\
         \x20 curl -H 'Authorization: Bearer {k}' '{base}/v1/accounts/health?health=unhealthy'\n\
         \x20 curl -H 'Authorization: Bearer {k}' {base}/v1/accounts/twitter/1234567890\n\
         \x20 curl -X POST -H 'Authorization: Bearer {k}' {base}/v1/accounts/instagram/17841400123456789/check\n\
         \x20 curl -X DELETE -H 'Authorization: Bearer {k}' {base}/v1/accounts/tiktok/723f24d7-e717-40f8-a2b6-cb8464cd23b4\n\
         \x20 curl {base}/healthz\n\
         \x20 curl {base}/metrics          (Prometheus metrics)\n\
         \x20 curl {base}/v1/openapi.json  (the API's OpenAPI document; {base}/docs in a browser)\n\n\
         The workspace's status page (read-only, no key; open it in a browser):\n\
         \x20 {base}/status/{}\n\n\
         Connect simulated accounts in a browser (each link single-use, for an hour):\n\
         \x20 an X account:        {}\n\
         \x20 Facebook Pages:      {} (you choose the Pages on socialsyncer's page)\n\
         More links (platform facebook, instagram, threads, tiktok or twitter):\n\
         \x20 curl -X POST -H 'Authorization: Bearer {k}' -H 'Content-Type: application/json' -d '{{\"platform\":\"threads\",\"redirectUrl\":\"{connect}/connect/done\"}}' {base}/v1/connect\n",
        dir.path().display(),
        share.secret.expose_secret(),
        links[0],
        links[1]
    );
    server::run_on(listener, state).await?;
    drop(sim);
    dir.close().context("Failed to remove the demo folder")?;
    Ok(())
}
