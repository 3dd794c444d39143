//! Test support shared by the integration tests: a server on a random port with a fresh
//! database: a SQLite file, or, in the PostgreSQL pass (`SOCIALSYNCER_TEST_BACKEND=postgres`,
//! see `postgres::the_suite_passes_on_postgresql`), a new database on the test cluster.
#![allow(dead_code)]

use secrecy::ExposeSecret;
use serde_json::{Value, json};
use socialsyncer::app::AppState;
use socialsyncer::config::Config;
use socialsyncer::domain::Platform;
use socialsyncer::simulator::{Issued, Simulator, TokenSpec};
use socialsyncer::{crypto, domain, server};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running server and what it was started with.
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub state: AppState,
    pub sim: Simulator,
    pub dir: TempDir,
    /// The database URL the app runs on.
    pub db_url: String,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Starts the whole daemon in-process on 127.0.0.1:0 (HTTP, alert delivery, heartbeats;
/// sweeps only if the test sets `schedule.cron`), as `serve` runs it
/// (`server::run_until`), with a new database; stopped from outside by [`TestApp::stop`].
/// `extra` is appended to the generated TOML.
pub async fn spawn_app_with(extra: &str) -> TestApp {
    spawn_app_cfg(extra, |_| {}).await
}

/// As [`spawn_app_with`], then `tweak` edits the parsed config before the app starts.
pub async fn spawn_app_cfg(extra: &str, tweak: impl FnOnce(&mut Config)) -> TestApp {
    spawn(extra, tweak, true).await
}

/// The HTTP API alone: for tests that run the sweeps, the scheduler or the alert deliveries
/// themselves and assert what each call did (the daemon's own delivery would race them).
pub async fn spawn_api_cfg(extra: &str, tweak: impl FnOnce(&mut Config)) -> TestApp {
    spawn(extra, tweak, false).await
}

async fn spawn(extra: &str, tweak: impl FnOnce(&mut Config), whole: bool) -> TestApp {
    socialsyncer::crypto::install_tls_provider();
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start().await.unwrap();
    let db_url = match postgres_pass() {
        true => fresh_postgres_database().await,
        false => format!("sqlite://{}/socialsyncer.db", dir.path().display()),
    };
    let toml = format!(
        "[http]\nrequest_timeout = \"2s\"\n{}{extra}",
        sim.config_toml(dir.path()).unwrap()
    );
    let mut config = Config::from_toml(&toml).expect("test config");
    config.database.url = db_url.clone();
    if postgres_pass() {
        // Daemons on PostgreSQL name their key file (they share it).
        let key = dir.path().join("token.key");
        crypto::Sealer::load_or_create(&key).unwrap();
        config.security.token_key_file = Some(key);
    }
    // /metrics on the API listener, so that tests scrape what they serve.
    config.server.metrics_listen = String::new();
    // Tests check and call in quick succession: no cooldown, no per-key limit, unless a
    // test turns them on (their own tests do).
    config.health.check_now_cooldown = socialsyncer::config::HumanDuration(std::time::Duration::ZERO);
    config.server.key_rate_limit = 0.0;
    config.server.address_rate_limit = 0.0;
    // Checks on request may use the whole of a platform's budget (their share is tested
    // on its own).
    config.health.check_now_share = 1.0;
    // Sweeps run when a test calls them, unless it sets a cron of its own.
    config.schedule.cron = String::new();
    tweak(&mut config);
    let state = AppState::build(config).await.expect("app state");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let handle = if whole {
        tokio::spawn(server::run_until(listener, state.clone(), shutdown.clone()))
    } else {
        tokio::spawn(server::serve_http(listener, state.clone(), shutdown.clone()))
    };
    TestApp {
        base,
        http: reqwest::Client::new(),
        state,
        sim,
        dir,
        db_url,
        shutdown,
        handle: Some(handle),
    }
}

/// [`spawn_app_with`] and no extra config.
pub async fn spawn_app() -> TestApp {
    spawn_app_with("").await
}

impl TestApp {
    /// Creates a key with every scope for `workspace` (creating the workspace) and returns it.
    pub async fn key(&self, workspace: &str) -> String {
        self.key_with(workspace, &socialsyncer::domain::KeyScope::ALL).await
    }

    /// Creates a key with `scopes` for `workspace` and returns it.
    pub async fn key_with(&self, workspace: &str, scopes: &[socialsyncer::domain::KeyScope]) -> String {
        let ws = self
            .state
            .store
            .ensure_workspace(workspace, domain::now())
            .await
            .unwrap();
        let k = crypto::generate_api_key();
        self.state
            .store
            .insert_api_key(ws, &k.prefix, &k.hash, domain::now(), scopes)
            .await
            .unwrap();
        k.secret.expose_secret().to_owned()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, key: &str, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).bearer_auth(key).send().await.unwrap();
        into_parts(r).await
    }

    pub async fn delete(&self, key: &str, path: &str) -> (u16, Value) {
        let r = self.http.delete(self.url(path)).bearer_auth(key).send().await.unwrap();
        into_parts(r).await
    }

    pub async fn put(&self, key: &str, path: &str, body: &Value) -> (u16, Value) {
        self.send_json(reqwest::Method::PUT, key, path, body).await
    }

    pub async fn post(&self, key: &str, path: &str, body: &Value) -> (u16, Value) {
        self.send_json(reqwest::Method::POST, key, path, body).await
    }

    async fn send_json(&self, method: reqwest::Method, key: &str, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .request(method, self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap();
        into_parts(r).await
    }

    /// Registers an account through the API and asserts 201.
    pub async fn register(&self, key: &str, platform: &str, id: &str, token: &str) -> Value {
        let (status, body) = self
            .post(
                key,
                "/v1/accounts",
                &json!({"platform": platform, "accountId": id, "username": format!("user_{id}"), "accessToken": token}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }

    /// Issues a token at the simulated platform and registers it; returns the tokens and the
    /// 201 body.
    pub async fn connect(&self, key: &str, platform: Platform, id: &str, spec: TokenSpec) -> (Issued, Value) {
        self.register_as(
            key,
            platform,
            id,
            TokenSpec {
                user_id: id.to_owned(),
                ..spec
            },
        )
        .await
    }

    /// Registers `id` with a token the simulator issued for `spec`, whose user may be named
    /// otherwise (as products store IDs their own way); its expiry, refresh token and scopes.
    pub async fn register_as(&self, key: &str, platform: Platform, id: &str, spec: TokenSpec) -> (Issued, Value) {
        let issued = self.sim.issue(platform, spec);
        let mut body = json!({"platform": platform.as_str(), "accountId": id, "username": format!("user_{id}"),
            "accessToken": issued.access_token});
        if let Some(r) = &issued.refresh_token {
            body["refreshToken"] = json!(r);
        }
        if let Some(e) = issued.expires_at {
            body["expiresAt"] = json!(domain::rfc3339(e));
        }
        let scopes = self.sim.token(&issued.access_token).unwrap().scopes;
        body["scopes"] = json!(scopes);
        let (status, resp) = self.post(key, "/v1/accounts", &body).await;
        assert_eq!(status, 201, "{resp}");
        (issued, resp)
    }

    /// The Prometheus text the server serves.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Points `config` at this app's database (and, on PostgreSQL, its key file): a second
    /// process, or the daemon restarted.
    pub fn same_database(&self, config: &mut Config) {
        config.database.url = self.db_url.clone();
        if postgres_pass() {
            config.security.token_key_file = Some(self.dir.path().join("token.key"));
        }
    }

    /// A config file for a command-line process on this app's database and platforms.
    pub fn cli_config(&self) -> std::path::PathBuf {
        let cfg = self.dir.path().join("cli.toml");
        std::fs::write(
            &cfg,
            format!(
                "[server]\nmetrics_listen = \"\"\n[database]\nurl = \"{}\"\n{}",
                self.db_url,
                self.sim.config_toml(self.dir.path()).unwrap()
            ),
        )
        .unwrap();
        cfg
    }

    /// A second process's store on this app's database.
    pub async fn other_store(&self) -> socialsyncer::store::Store {
        let mut config = Config::default();
        self.same_database(&mut config);
        socialsyncer::app::open_store(&config, socialsyncer::app::Create::No)
            .await
            .unwrap()
    }

    /// A separate connection to the app's database (either backend).
    pub async fn db(&self) -> sqlx::AnyPool {
        any_pool(&self.db_url).await
    }

    /// Stops the server and waits for it.
    pub async fn stop(self) {
        self.stop_keeping_files().await;
    }

    /// Stops the server and waits for it; its folder (with the database file) stays until
    /// the returned value is dropped.
    pub async fn stop_keeping_files(mut self) -> TempDir {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
        self.state.store.close().await;
        self.dir
    }
}

pub async fn into_parts(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
    };
    (status, body)
}

/// The error code of an error body.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no code>")
}

/// The sorted keys of a JSON object.
pub fn keys_of(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
    k.sort();
    k
}

/// Makes accounts (of one platform, or all) due now: registration checks schedule them hours ahead.
pub async fn make_due(db: &sqlx::AnyPool, platform: Option<Platform>) {
    sqlx::query(
        "UPDATE account_health SET next_check_at = $1 WHERE account_ref IN \
         (SELECT id FROM accounts WHERE $2 IS NULL OR platform = $2)",
    )
    .bind(domain::now() - 1)
    .bind(platform.map(|p| p.as_str()))
    .execute(db)
    .await
    .unwrap();
}

/// Whether this run is the PostgreSQL pass of the suite.
pub fn postgres_pass() -> bool {
    std::env::var("SOCIALSYNCER_TEST_BACKEND").as_deref() == Ok("postgres")
}

/// The test cluster's URL: `SOCIALSYNCER_TEST_POSTGRES_URL` (`.ci/run` sets it), or else a
/// throwaway cluster this run starts with `.ci/postgres` (once per test process; it is stopped
/// and its folder removed when the process ends). `None` only with `SOCIALSYNCER_SKIP_POSTGRES=1`, which
/// skips the PostgreSQL tests on purpose; a cluster that cannot be started fails the tests
/// that need it, saying how to get one.
pub fn postgres_url() -> Option<String> {
    static STARTED: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    if let Some(u) = std::env::var("SOCIALSYNCER_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        return Some(u);
    }
    if std::env::var("SOCIALSYNCER_SKIP_POSTGRES").as_deref() == Ok("1") {
        return None;
    }
    let started = STARTED.get_or_init(|| {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/postgres");
        // The cluster lives as long as this test process: it is stopped and its folder
        // removed when the process ends.
        let out = std::process::Command::new("bash")
            .arg(&script)
            .args(["--owner", &std::process::id().to_string()])
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        let url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if out.status.success() && url.starts_with("postgres://") {
            Ok(url)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });
    match started {
        Ok(url) => Some(url.clone()),
        Err(why) => panic!(
            "the PostgreSQL tests need a server and `bash .ci/postgres` could not start one:\n{why}\n\
             Set SOCIALSYNCER_TEST_POSTGRES_URL to a server's URL (a superuser: each test creates a \
             database), or SOCIALSYNCER_SKIP_POSTGRES=1 to skip these tests on purpose."
        ),
    }
}

/// A new, empty database on the test cluster, for one test; its URL.
pub async fn fresh_postgres_database() -> String {
    use sqlx::Connection;
    let admin = postgres_url().expect("SOCIALSYNCER_TEST_POSTGRES_URL is set in the PostgreSQL pass");
    let mut b = [0u8; 6];
    rand::fill(&mut b);
    let name = format!("ss_test_{}", hex::encode(b));
    let mut conn = sqlx::PgConnection::connect(&admin).await.expect("test cluster answers");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.ok();
    let mut url = url::Url::parse(&admin).unwrap();
    url.set_path(&name);
    url.to_string()
}

/// A pool on `url` (SQLite or PostgreSQL) for the tests' own queries.
pub async fn any_pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(url).await.unwrap()
}

/// An account of `platform` for [`socialsyncer::store::Store::insert_accounts`], with a new
/// token of `spec` from `sim` sealed by `state`; and the plaintext access token.
pub fn new_account(
    state: &AppState,
    sim: &Simulator,
    workspace: socialsyncer::domain::WorkspaceId,
    platform: Platform,
    id: &str,
    spec: TokenSpec,
) -> (socialsyncer::store::NewAccount, String) {
    let issued = sim.issue(platform, spec);
    let sealed = state.sealer.seal(
        &socialsyncer::accounts::seal_context(workspace, platform, id),
        &secrecy::SecretString::from(issued.access_token.clone()),
    );
    let account = socialsyncer::store::NewAccount {
        workspace_id: workspace,
        platform,
        account_id: domain::AccountId::parse(platform, id).unwrap(),
        username: format!("u{id}"),
        access_token: sealed,
        refresh_token: None,
        token_expires_at: issued.expires_at,
        scopes: documented_scopes(platform),
        connected_at: domain::now() - 60,
        custody: socialsyncer::domain::Custody::Socialsyncer,
        instagram_login: None,
    };
    (account, issued.access_token)
}

/// The scopes a publishing app asks each platform for, as the platforms document them (the
/// tests' expectations come from here, never from the simulator):
/// - Facebook Pages: `pages_show_list`, `pages_manage_posts`, `pages_read_engagement`
///   (developers.facebook.com/docs/pages-api/posts, "Requirements");
/// - Instagram (Facebook Login): `instagram_basic`, `instagram_content_publish`,
///   `pages_show_list` (developers.facebook.com/docs/instagram-platform/content-publishing);
/// - Threads: `threads_basic`, `threads_content_publish`
///   (developers.facebook.com/docs/threads/posts, "Permissions");
/// - TikTok: `user.info.basic`, `video.publish` (developers.tiktok.com/doc/content-posting-api-get-started);
/// - X: `tweet.read`, `tweet.write`, `users.read`, `offline.access`
///   (docs.x.com/resources/fundamentals/authentication/oauth-2-0/authorization-code, scopes;
///   POST /2/tweets names the first three, offline.access gives the refresh token).
pub fn documented_scopes(platform: Platform) -> Vec<String> {
    let s: &[&str] = match platform {
        Platform::Facebook => &["pages_show_list", "pages_manage_posts", "pages_read_engagement"],
        Platform::Instagram => &["instagram_basic", "instagram_content_publish", "pages_show_list"],
        Platform::Threads => &["threads_basic", "threads_content_publish"],
        Platform::Tiktok => &["user.info.basic", "video.publish"],
        Platform::Twitter => &["tweet.read", "tweet.write", "users.read", "offline.access"],
    };
    s.iter().map(|x| (*x).to_owned()).collect()
}

/// Makes a file its owner's alone (mode 0600), as a key file must be.
pub fn owner_only(path: impl AsRef<std::path::Path>) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Commits a new access token for `a`, expiring at `expires_at`, as a refresh that did not
/// rotate the refresh token does (the stored refresh token stays).
pub async fn replace_access_token(state: &AppState, a: &socialsyncer::store::Account, token: &str, expires_at: i64) {
    state
        .store
        .replace_tokens(&socialsyncer::store::TokenReplacement {
            account_ref: a.id,
            workspace_id: a.workspace_id,
            access_token: state.sealer.seal(
                &socialsyncer::accounts::seal_context(a.workspace_id, a.platform, &a.account_id),
                &secrecy::SecretString::from(token.to_owned()),
            ),
            refresh_token: None,
            expires_at: Some(expires_at),
            refresh_expires_at: None,
            scopes: None,
            at: domain::now(),
            health: a.state.health,
            pushed: None,
        })
        .await
        .unwrap();
}
