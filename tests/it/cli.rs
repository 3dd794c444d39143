//! The `socialsyncer` binary as a user runs it: config errors, keys, import, serve and SIGTERM.

use socialsyncer::domain::InstagramLogin;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use socialsyncer::domain::Platform;
use socialsyncer::simulator::{Simulator, TokenSpec};

const BIN: &str = env!("CARGO_BIN_EXE_socialsyncer");

/// A temp folder with a config whose database lives inside it, and simulated platforms
/// (so nothing ever reaches a real platform).
pub(crate) struct Env {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) config: PathBuf,
    pub(crate) sim: Simulator,
    rt: tokio::runtime::Runtime,
}

pub(crate) fn env_with(extra: &str) -> Env {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.block_on(Simulator::start()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("socialsyncer.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n[database]\nurl = \"sqlite://{}/state/socialsyncer.db\"\n[log]\nformat = \"json\"\n{}{extra}",
            dir.path().display(),
            sim.config_toml(dir.path()).unwrap()
        ),
    )
    .unwrap();
    Env { dir, config, sim, rt }
}

impl Env {
    pub(crate) fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--config").arg(&self.config).args(args);
        c.env_remove("SOCIALSYNCER_CONFIG").env_remove("RUST_LOG");
        c
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).stdin(Stdio::null()).output().unwrap()
    }

    pub(crate) fn run_with_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// `accounts import` into workspace acme with `token` on standard input.
    fn import(&self, platform: &str, id: &str, username: &str, token: &str) -> Output {
        self.run_with_stdin(
            &[
                "accounts",
                "import",
                "--workspace",
                "acme",
                "--platform",
                platform,
                "--account-id",
                id,
                "--username",
                username,
            ],
            token,
        )
    }

    fn create_key(&self, workspace: &str) -> String {
        let out = self.run(&["keys", "create", "--workspace", workspace]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).trim().to_owned()
    }
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn config_errors_are_one_line_with_exit_code_2() {
    let cases = [
        ("[schedule]\nconcurrency = \"lots\"", "concurrency"),
        ("[server]\nlisen = \"x\"", "lisen"),
        ("[health]\nwarn_before = \"a week\"", "warn_before"),
        ("this is not toml", "socialsyncer.toml"),
    ];
    for (body, needle) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("socialsyncer.toml");
        std::fs::write(&path, body).unwrap();
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&path)
            .arg("migrate")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{body}");
        let err = text(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{needle} not in {err}");
        assert!(
            !err.contains("default.") && !err.contains("``"),
            "reads as a sentence: {err}"
        );
    }
    let out = Command::new(BIN)
        .args(["--config", "/nonexistent/x.toml", "migrate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("does not exist"));
}

#[test]
fn environment_overrides_config_keys() {
    let env = env_with("");
    let out = env
        .cmd(&["migrate"])
        .env("SOCIALSYNCER__SERVER__LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("server.listen"), "{}", text(&out.stderr));

    let other = env.dir.path().join("other.db");
    let out = env
        .cmd(&["keys", "create", "--workspace", "w"])
        .env("SOCIALSYNCER__DATABASE__URL", format!("sqlite://{}", other.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(other.exists(), "the overridden database was used");
    assert!(!env.dir.path().join("state/socialsyncer.db").exists());

    // $SOCIALSYNCER_CONFIG names the file when --config is absent.
    let out = Command::new(BIN)
        .args(["keys", "create", "--workspace", "w"])
        .env("SOCIALSYNCER_CONFIG", &env.config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(env.dir.path().join("state/socialsyncer.db").exists());
}

#[test]
fn keys_create_list_revoke() {
    let env = env_with("");
    let key = env.create_key("acme");
    assert!(key.starts_with("sk_") && key.len() == 51, "{key}");
    let second = env.create_key("acme");
    assert_ne!(key, second);

    let out = env.run(&["keys", "list"]);
    assert!(out.status.success());
    let listing = text(&out.stdout);
    assert!(listing.contains(&key[..11]) && listing.contains("acme") && listing.contains("active"));
    assert!(!listing.contains(&key), "the key itself is never shown again");

    let out = env.run(&["keys", "revoke", &key[..11]]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&env.run(&["keys", "list"]).stdout);
    assert!(listing.contains("revoked"));
    let out = env.run(&["keys", "revoke", "sk_00000000"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("keys list"));

    let out = env.run(&["keys", "create", "--workspace", "bad name"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("workspace"));
}

#[test]
fn import_reads_the_token_from_stdin_and_creates_the_key_file() {
    let env = env_with("");
    let args = [
        "accounts",
        "import",
        "--workspace",
        "acme",
        "--platform",
        "instagram",
        "--account-id",
        "1784",
        "--username",
        "mybusiness",
        "--scopes",
        "instagram_basic,instagram_content_publish",
        "--expires-at",
        "2030-01-01T00:00:00Z",
    ];
    env.create_key("other");
    let out = env.run_with_stdin(&args, "tok\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("keys create"), "{}", text(&out.stderr));

    env.create_key("acme");
    let out = env.run_with_stdin(&args, "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("standard input"));

    let out = env.run_with_stdin(&args, "IGQVJplaintext-token\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key_file = env.dir.path().join("state/token.key");
    assert!(key_file.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert!(
        text(&out.stderr).contains("token sealing key"),
        "says it created the key"
    );
    let out = env.run_with_stdin(&args, "IGQVJplaintext-token\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("already registered"));

    let mut bad = args.to_vec();
    bad[7] = "17x";
    let out = env.run_with_stdin(&bad, "tok");
    assert!(text(&out.stderr).contains("digits only"));

    // Issue 24 item 4: the account's Instagram login, validated and stored.
    let mut other = args.to_vec();
    other[7] = "1785";
    for (login, fails) in [("tiktok", Some("not an Instagram login")), ("instagram", None)] {
        let with: Vec<&str> = other.iter().copied().chain(["--instagram-login", login]).collect();
        let out = env.run_with_stdin(&with, "IGQVJplaintext-token\n");
        match fails {
            Some(m) => assert!(
                !out.status.success() && text(&out.stderr).contains(m),
                "{}",
                text(&out.stderr)
            ),
            None => assert!(out.status.success(), "{}", text(&out.stderr)),
        }
    }
    let db = env.dir.path().join("state/socialsyncer.db");
    let logins: Vec<(String, Option<InstagramLogin>)> = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = socialsyncer::store::Store::open_sqlite(&db, std::time::Duration::from_secs(5), 1)
            .await
            .unwrap();
        let all = store.all_accounts(None).await.unwrap();
        all.into_iter().map(|a| (a.account_id, a.instagram_login)).collect()
    });
    assert_eq!(
        logins,
        vec![
            ("1784".to_owned(), None),
            ("1785".to_owned(), Some(InstagramLogin::Instagram))
        ]
    );
}

/// A running `serve` whose stderr is collected.
pub(crate) struct Daemon {
    child: Child,
    pub(crate) addr: String,
    /// The `server.metrics_listen` address, when metrics have a listener of their own.
    pub(crate) metrics: String,
    pub(crate) logs: mpsc::Receiver<String>,
}

pub(crate) fn start_daemon(env: &Env) -> Daemon {
    start_daemon_with(env.cmd(&["serve"]))
}

fn start_daemon_with(mut cmd: Command) -> Daemon {
    let mut child = cmd
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Owned by the guard from here on, so a failed start still reaps the process.
    let mut d = Daemon {
        child,
        addr: String::new(),
        metrics: String::new(),
        logs: rx,
    };
    let mut seen = Vec::new();
    while d.addr.is_empty() {
        let line = d
            .logs
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("daemon did not start: {seen:?}"));
        if let Ok(v) = serde_json::from_str::<Value>(&line) {
            if v["message"] == "socialsyncer is serving" {
                d.addr = v["listen"].as_str().unwrap().to_owned();
            }
            if let Some(m) = v["metrics_listen"].as_str() {
                d.metrics = m.to_owned();
            }
        }
        seen.push(line);
    }
    d
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    let t = text(&out.stdout);
    let (body, status) = t.rsplit_once('\n').unwrap();
    (status.parse().unwrap_or(0), body.to_owned())
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn serve_answers_curl_and_stops_on_sigterm_without_logging_secrets() {
    let env = env_with("");
    let key = env.create_key("acme");
    let out = env.import("twitter", "42", "@acme", "imported-secret-token");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let posted = env
        .sim
        .issue(Platform::Facebook, TokenSpec::valid(Platform::Facebook, "7"))
        .access_token;

    let mut d = start_daemon(&env);
    let auth = format!("Authorization: Bearer {key}");
    let (s, body) = curl(&["-H", &auth, &format!("http://{}/v1/accounts", d.addr)]);
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["accounts"][0]["username"], "@acme");

    let (s, body) = curl(&[
        "-H",
        &auth,
        "-H",
        "content-type: application/json",
        "-d",
        &format!(r#"{{"platform":"facebook","accountId":"7","username":"p","accessToken":"{posted}"}}"#),
        &format!("http://{}/v1/accounts", d.addr),
    ]);
    assert_eq!(s, 201, "{body}");
    let (s, _) = curl(&[
        "-H",
        "Authorization: Bearer sk_wrong",
        &format!("http://{}/v1/accounts", d.addr),
    ]);
    assert_eq!(s, 401);

    sigterm(&d.child);
    let status = d.child.wait().unwrap();
    assert!(status.success(), "exit {status:?}");
    // Every line up to the end of its stderr (the reader ends at EOF after the exit).
    let logs: Vec<String> = d.logs.iter().collect();
    let all = logs.join("\n");
    assert!(all.contains("stopped cleanly"), "{all}");
    for secret in [posted.as_str(), "imported-secret-token", key.as_str()] {
        assert!(!all.contains(secret), "a secret reached the logs");
    }
    // Each request is a span named by its route: its end is logged with status and latency.
    let requests: Vec<Value> = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["span"]["name"] == "request")
        .collect();
    assert!(
        requests.iter().any(|v| v["span"]["route"] == "/v1/accounts"
            && v["span"]["method"] == "POST"
            && v["status"] == 201
            && v["latency"].is_string()),
        "{requests:?}"
    );
    let _ = (Path::new(&env.config), &env.rt);
}

#[test]
fn metrics_have_their_own_listener_and_per_account_series_are_optional() {
    let env = env_with("");
    env.create_key("acme");
    let out = env.import("twitter", "42", "u", "tok");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let d = start_daemon(&env);
    assert!(!d.metrics.is_empty(), "the metrics listener is logged");
    let (s, _) = curl(&[&format!("http://{}/metrics", d.addr)]);
    assert_eq!(s, 404, "the API listener does not serve the metrics");
    let (s, m) = curl(&[&format!("http://{}/metrics", d.metrics)]);
    assert_eq!(s, 200);
    for line in [
        "socialsyncer_alerts_pending 0",
        "socialsyncer_oldest_pending_alert_age_seconds 0",
        "socialsyncer_alerts_sent_total{kind=\"token_invalid\"} 0",
        "socialsyncer_alert_failures_total{kind=\"expiring_1day\"} 0",
        "socialsyncer_account_needs_reconnect{account_id=\"42\",platform=\"twitter\",workspace=\"acme\"} 0",
    ] {
        assert!(m.contains(line), "{line} in {m}");
    }
    drop(d);

    let mut c = env.cmd(&["serve"]);
    c.env("SOCIALSYNCER__METRICS__PER_ACCOUNT", "false");
    let d = start_daemon_with(c);
    let (_, m) = curl(&[&format!("http://{}/metrics", d.metrics)]);
    assert!(m.contains("socialsyncer_accounts{"), "{m}");
    assert!(!m.contains("account_id="), "no per-account series: {m}");
    assert!(
        m.lines().any(|l| l == "socialsyncer_per_account_series_enabled 0"),
        "{m}"
    );
    drop(d);

    // Issue 27: above metrics.per_account_limit they turn off by themselves, and say so.
    let out = env.import("twitter", "43", "u", "tok2");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut c = env.cmd(&["serve"]);
    c.env("SOCIALSYNCER__METRICS__PER_ACCOUNT_LIMIT", "1");
    let d = start_daemon_with(c);
    let (_, m) = curl(&[&format!("http://{}/metrics", d.metrics)]);
    assert!(!m.contains("account_id="), "2 accounts over a limit of 1: {m}");
    assert!(
        m.lines().any(|l| l == "socialsyncer_per_account_series_enabled 0"),
        "{m}"
    );
    let said = std::iter::from_fn(|| d.logs.recv_timeout(Duration::from_secs(5)).ok())
        .any(|l| l.contains("the per-account metric series are off"));
    assert!(said, "a log line says so");
    let mut c = env.cmd(&["serve"]);
    c.env("SOCIALSYNCER__METRICS__PER_ACCOUNT_LIMIT", "2");
    drop(d);
    let d = start_daemon_with(c);
    let (_, m) = curl(&[&format!("http://{}/metrics", d.metrics)]);
    assert!(m.contains("account_id=\"43\""), "2 accounts within a limit of 2: {m}");
    assert!(
        m.lines().any(|l| l == "socialsyncer_per_account_series_enabled 1"),
        "{m}"
    );
}

/// Issue 27: a platform whose accounts cannot be swept within `health.check_interval` at its
/// rate limit: `config check` warns and `/healthz` says so, with the numbers; within the
/// interval, nothing is said.
#[test]
fn a_cadence_the_rate_limit_cannot_keep_is_said_by_config_check_and_healthz() {
    let env = env_with("");
    env.create_key("acme");
    for id in ["51", "52"] {
        let out = env.import("twitter", id, "u", "tok");
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    // 2 accounts at 0.0004 checks/s: 5,000 s, longer than an hour.
    let slow = [
        ("SOCIALSYNCER__PLATFORMS__TWITTER__RATE_LIMIT", "0.0004"),
        ("SOCIALSYNCER__HEALTH__CHECK_INTERVAL", "1h"),
    ];
    let said = "twitter: a sweep of its 2 accounts at 0.0004 checks/s (platforms.twitter.rate_limit) takes 1.4 h, \
                longer than health.check_interval (1.0 h)";
    let mut c = env.cmd(&["config", "check"]);
    c.envs(slow);
    let out = c.output().unwrap();
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("warning: {said}")), "{stderr}");
    let mut c = env.cmd(&["serve"]);
    c.envs(slow);
    let d = start_daemon_with(c);
    let (s, h) = curl(&[&format!("http://{}/healthz", d.addr)]);
    assert_eq!(s, 200, "{h}");
    let v: Value = serde_json::from_str(&h).unwrap();
    assert_eq!(v["status"], "degraded", "{h}");
    assert!(
        v["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().starts_with(said)),
        "{h}"
    );
    drop(d);
    let out = env.run(&["config", "check"]);
    assert!(!text(&out.stderr).contains("a sweep of its"), "{}", text(&out.stderr));
}

#[test]
fn check_prints_a_table_and_fails_on_unhealthy_accounts() {
    let env = env_with("");
    env.create_key("acme");
    let import = |p: Platform, id: &str, token: &str| {
        let out = env.import(p.as_str(), id, "u", token);
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    let good = env
        .sim
        .issue(Platform::Threads, TokenSpec::valid(Platform::Threads, "11"));
    import(Platform::Threads, "11", &good.access_token);
    let dead = env.sim.issue(
        Platform::Twitter,
        TokenSpec {
            state: socialsyncer::simulator::TokenState::Revoked,
            ..TokenSpec::valid(Platform::Twitter, "22")
        },
    );
    import(Platform::Twitter, "22", &dead.access_token);

    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.starts_with("PLATFORM"), "{table}");
    let threads = table.lines().find(|l| l.starts_with("threads")).unwrap();
    assert!(threads.contains(" healthy "), "{threads}");
    let twitter = table.lines().find(|l| l.starts_with("twitter")).unwrap();
    assert!(
        twitter.contains("unhealthy") && twitter.contains("reconnect"),
        "{twitter}"
    );
    assert!(text(&out.stderr).contains("2 account(s) checked"));

    let out = env.run(&["check", "--platform", "threads"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 2);
    let out = env.run(&["check", "--platform", "myspace"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("unknown platform"));
}

#[test]
fn demo_serves_sample_accounts() {
    let mut child = Command::new(BIN)
        .args(["demo", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut d = Daemon {
        child,
        addr: String::new(),
        metrics: String::new(),
        logs: mpsc::channel().1,
    };
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    let first = lines.next().expect("demo prints where it runs");
    d.addr = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .trim_start_matches("http://")
        .to_owned();
    let key = lines
        .find_map(|l| l.split_whitespace().find(|w| w.starts_with("sk_")).map(str::to_owned))
        .expect("demo prints a key");
    let (s, body) = curl(&[
        "-H",
        &format!("Authorization: Bearer {key}"),
        &format!("http://{}/v1/accounts/health", d.addr),
    ]);
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    let summary = &v["summary"];
    assert_eq!(summary["total"], 12, "{summary}");
    for h in ["healthy", "warning", "unhealthy", "unknown"] {
        assert!(
            summary[h].as_u64().unwrap() > 0,
            "the demo shows every state: {summary}"
        );
    }
    sigterm(&d.child);
    assert!(d.child.wait().unwrap().success());
}

#[test]
fn demo_survives_a_closed_stdout_removes_its_folder_and_refuses_config() {
    let env = env_with("");
    let out = env.run(&["demo"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--config does not apply"),
        "{}",
        text(&out.stderr)
    );

    // `demo | head -0`: standard output is closed before the demo prints anything.
    let tmp = tempfile::tempdir().unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = Command::new(BIN)
        .args(["demo", "--listen", "127.0.0.1:0"])
        .env("TMPDIR", tmp.path())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, logs) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("socialsyncer is serving")) {
        seen.push(
            logs.recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("the demo did not start: {seen:?}")),
        );
    }
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "the demo's folder exists while it runs"
    );
    sigterm(&child);
    let status = child.wait().unwrap();
    seen.extend(logs.try_iter());
    let all = seen.join("\n");
    assert!(status.success(), "{status:?}: {all}");
    assert!(!all.contains("panicked"), "{all}");
    assert!(
        !all.contains('\u{1b}'),
        "no colour codes when stderr is not a terminal: {all}"
    );
    assert!(
        !all.contains("Uninited") && !all.contains("Job creator created"),
        "{all}"
    );
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "the demo removed its folder and the secrets in it"
    );
}

#[test]
fn admin_commands_never_create_a_database_or_a_key_and_say_which_database() {
    // As an admin would run them from another directory with a config whose database path
    // is relative (the shipped one): the database is not where the config says.
    let env = env_with("");
    let db = env.dir.path().join("state/socialsyncer.db");
    let key_file = env.dir.path().join("state/token.key");
    let new_key = env.dir.path().join("new.key");
    std::fs::write(&new_key, [7u8; 32]).unwrap();
    crate::common::owner_only(&new_key);
    let new_key = new_key.display().to_string();
    for args in [
        vec!["keys", "list"],
        vec!["keys", "revoke", "sk_12345678"],
        vec!["check"],
        vec!["rotate-token-key", "--new-key-file", &new_key],
        vec![
            "accounts",
            "import",
            "--workspace",
            "acme",
            "--platform",
            "twitter",
            "--account-id",
            "1",
            "--username",
            "u",
        ],
    ] {
        let out = env.run_with_stdin(&args, "tok");
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(&format!("database: {}", db.display())), "{args:?}: {err}");
        assert!(
            err.contains(&format!("no database at {} (is `database.url` right?)", db.display())),
            "{args:?}: {err}"
        );
        assert!(!db.exists(), "{args:?} created a database");
        assert!(!key_file.exists(), "{args:?} created a token key");
    }

    // A database with sealed tokens and no key file: nothing creates a new key.
    env.create_key("acme");
    let import = |id: &str| env.import("twitter", id, "u", "tok");
    assert!(import("1").status.success());
    assert!(key_file.exists());
    let moved = env.dir.path().join("token.key.bak");
    std::fs::rename(&key_file, &moved).unwrap();
    for out in [
        import("2"),
        env.run(&["check"]),
        env.run(&["serve"]),
        env.run(&["rotate-token-key", "--new-key-file", &new_key]),
    ] {
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!("there is no token key at {}", key_file.display())),
            "{err}"
        );
        assert!(!key_file.exists(), "a new key was created: {err}");
    }
    std::fs::rename(&moved, &key_file).unwrap();

    // rotate-token-key refuses while the daemon runs, and the daemon cannot start during it.
    let d = start_daemon(&env);
    let out = env.run(&["rotate-token-key", "--new-key-file", &new_key]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("a socialsyncer daemon is running on this database"),
        "{err}"
    );
    let out = env.run(&["serve"]);
    assert_eq!(out.status.code(), Some(2), "a second daemon is refused");
    drop(d);
    let out = env.run(&["rotate-token-key", "--new-key-file", &new_key]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("re-sealed the tokens of 1 account(s)"));
}

#[test]
fn config_check_validates_the_named_files_and_redacts_secrets() {
    let env = env_with("[email]\nsmtp_url = \"smtp://alerts:hunter2@127.0.0.1:2525\"\n");
    let out = env.run(&["config", "check"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("[server]") && stdout.contains("metrics_listen"),
        "{stdout}"
    );
    assert!(stdout.contains("smtp://alerts:[redacted]@127.0.0.1:2525"), "{stdout}");
    assert!(!stdout.contains("hunter2") && !stderr.contains("hunter2"));
    for secret in [
        socialsyncer::simulator::APP_SECRET,
        socialsyncer::simulator::TIKTOK_CLIENT_SECRET,
    ] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "a secret was printed"
        );
    }
    assert!(stderr.contains("does not exist yet"), "{stderr}");
    assert!(stderr.contains("the configuration is usable"), "{stderr}");

    // A secret file gone, a token key of the wrong length: both named, exit 2.
    std::fs::remove_file(env.dir.path().join("tiktok_client_secret")).unwrap();
    let key = env.dir.path().join("short.key");
    std::fs::write(&key, [1u8; 16]).unwrap();
    crate::common::owner_only(&key);
    let out = env
        .cmd(&["config", "check"])
        .env("SOCIALSYNCER__SECURITY__TOKEN_KEY_FILE", &key)
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("problem: platforms.tiktok.client_secret_file: cannot read"),
        "{stderr}"
    );
    assert!(stderr.contains("problem: security.token_key_file:"), "{stderr}");
    assert!(stderr.contains("2 problem(s) found"), "{stderr}");
}

/// `config check` validates `[connect]` and says which platforms can connect.
#[test]
fn config_check_says_what_connect_links_can_do() {
    let env = env_with("");
    let out = env.run(&["config", "check"]);
    assert!(text(&out.stderr).contains("ok: connect: off"), "{}", text(&out.stderr));
    let env = env_with(
        "[connect]\npublic_url = \"https://connect.example.com\"\nlisten = \"127.0.0.1:0\"\n\
         allowed_redirects = [\"https://app.example.com/done\", \"not a url\"]\n",
    );
    let out = env.run(&["config", "check"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("problem: connect.allowed_redirects: 'not a url'"),
        "{stderr}"
    );
    assert!(
        stderr
            .contains("ok: connect: links at https://connect.example.com/connect/; can connect: Instagram, Facebook, Threads, TikTok, X (Twitter); cannot: none"),
        "{stderr}"
    );
}

#[test]
fn sighup_reloads_what_it_can_and_says_what_needs_a_restart() {
    let env = env_with("[schedule]\ncron = \"0 0 * * * *\"\n");
    env.create_key("acme");
    let mut d = start_daemon(&env);
    let original = std::fs::read_to_string(&env.config).unwrap();
    let hup = |d: &Daemon| {
        let ok = Command::new("kill")
            .args(["-HUP", &d.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    };
    let wait_for = |d: &Daemon, needle: &str| -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = d
                .logs
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no '{needle}' in {:?}", seen.iter().rev().take(20).collect::<Vec<_>>()));
            if line.contains(needle) {
                return line;
            }
            seen.push(line);
        }
    };
    // Live keys and a key that needs a restart.
    let changed = original
        .replace("cron = \"0 0 * * * *\"", "cron = \"0 */5 * * * *\"\nconcurrency = 7")
        .replace(
            "metrics_listen = \"127.0.0.1:0\"",
            "metrics_listen = \"127.0.0.1:0\"\nmax_body_bytes = 1000",
        )
        .replace("[platforms.tiktok]\n", "[platforms.tiktok]\nrate_limit = 2.5\n")
        + "[email]\nto = [\"ops@example.com\"]\n";
    std::fs::write(&env.config, changed).unwrap();
    hup(&d);
    let line = wait_for(&d, "configuration reloaded");
    for key in [
        "schedule.cron",
        "schedule.concurrency",
        "email.to",
        "platforms.tiktok.rate_limit",
    ] {
        assert!(line.contains(key), "{key} in {line}");
    }
    let line = wait_for(&d, "take effect only after a restart");
    assert!(line.contains("server.max_body_bytes"), "{line}");
    let (s, _) = curl(&[&format!("http://{}/healthz", d.addr)]);
    assert_eq!(s, 200, "the daemon lives on after SIGHUP");

    // A config that does not load is refused; the running one stays.
    std::fs::write(&env.config, "this is not toml").unwrap();
    hup(&d);
    wait_for(&d, "configuration not reloaded");
    let (s, _) = curl(&[&format!("http://{}/healthz", d.addr)]);
    assert_eq!(s, 200);
    std::fs::write(&env.config, original).unwrap();
    sigterm(&d.child);
    assert!(d.child.wait().unwrap().success());
}

#[test]
fn migrate_creates_and_upgrades_a_database_and_says_so() {
    let env = env_with("");
    let db = env.dir.path().join("state/socialsyncer.db");
    let out = env.cmd(&["migrate"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("migrations applied"),
        "{}",
        text(&out.stderr)
    );
    assert!(db.exists());
    // Every migration is recorded as applied, and a second run has nothing left to do.
    let applied = env.rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    });
    let files = std::fs::read_dir("migrations/sqlite").unwrap().count() as i64;
    assert_eq!(applied, files);
    let again = env.cmd(&["migrate"]).output().unwrap();
    assert!(again.status.success(), "{}", text(&again.stderr));
}

#[test]
fn import_stores_the_refresh_token_file_sealed_and_check_uses_it() {
    let env = env_with("");
    env.create_key("acme");
    // A TikTok token whose access part is about to expire: the check must refresh it.
    let issued = env.sim.issue(
        Platform::Tiktok,
        TokenSpec {
            expires_in: Some(60),
            ..TokenSpec::valid(Platform::Tiktok, "tt-1")
        },
    );
    let refresh = issued.refresh_token.clone().unwrap();
    let file = env.dir.path().join("refresh.txt");
    std::fs::write(&file, format!("{refresh}\n")).unwrap();
    let out = env.run_with_stdin(
        &[
            "accounts",
            "import",
            "--workspace",
            "acme",
            "--platform",
            "tiktok",
            "--account-id",
            "tt-1",
            "--username",
            "tt",
            "--refresh-token-file",
            file.to_str().unwrap(),
            "--expires-at",
            &socialsyncer::domain::rfc3339(socialsyncer::domain::now() + 60),
        ],
        &issued.access_token,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bytes = std::fs::read(env.dir.path().join("state/socialsyncer.db")).unwrap();
    assert!(
        !bytes.windows(refresh.len()).any(|w| w == refresh.as_bytes()),
        "the refresh token is sealed at rest"
    );
    let out = env.cmd(&["check"]).output().unwrap();
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(
        env.sim.refreshes(Platform::Tiktok),
        1,
        "the imported refresh token was used"
    );
}

#[test]
fn notify_test_sends_to_the_operators_receivers_and_says_what_each_answered() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (ok, log) = rt.block_on(crate::webhooks::receiver(&[], false));
    let (down, _) = rt.block_on(crate::webhooks::receiver(&[500], false));
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "whsec_operator_secret_0123456789\n").unwrap();
    let env = env_with(&format!(
        "[notify]\nallow_insecure_loopback = true\n\
         [[notify.webhook]]\nurl = \"{ok}\"\nsecret_file = \"{}\"\n\
         [[notify.webhook]]\nurl = \"{down}\"\nformat = \"discord\"\n",
        secret.path().display()
    ));
    env.create_key("acme");
    let out = env.run(&["notify", "test", "--workspace", "acme"]);
    assert_eq!(out.status.code(), Some(1), "one receiver failed: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[0].contains("receivers of workspace acme"), "{stdout}");
    assert!(lines[1].contains("delivered (200)"), "{stdout}");
    assert!(lines[2].contains("answered 500"), "{stdout}");
    assert!(!stdout.contains("/hook"), "no URL path is printed: {stdout}");
    let posts = &log.lock().unwrap().posts;
    assert_eq!(posts.len(), 1);
    assert!(
        posts[0].0.contains_key("socialsyncer-signature"),
        "the operator's secret signs it"
    );
    let out = env.run(&["notify", "test", "--workspace", "nobody"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // Issue 25 item 3: without --workspace, the operator's receivers, named as such.
    let out = env.run(&["notify", "test"]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("the operator's receivers (email.to and [[notify.webhook]], for every workspace):"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
}

#[test]
fn a_database_password_never_shows_in_config_check_errors_or_logs() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("token.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    crate::common::owner_only(&key);
    // Nothing listens on port 1: every command that connects fails, and says so.
    let url = "postgres://app:hunter2secret@127.0.0.1:1/socialsyncer?sslmode=disable&password=hunter3secret";
    let config = dir.path().join("socialsyncer.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{url}\"\nbusy_timeout = \"1s\"\n[security]\ntoken_key_file = \"{}\"\n[schedule]\ncron = \"\"\n",
            key.display()
        ),
    )
    .unwrap();
    for args in [&["config", "check"][..], &["migrate"], &["serve"], &["keys", "list"]] {
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("RUST_LOG", "debug")
            .output()
            .unwrap();
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(!out.status.success(), "{args:?}: {all}");
        assert!(
            !all.contains("hunter2secret") && !all.contains("hunter3secret"),
            "{args:?} shows the password: {all}"
        );
        assert!(all.contains("[redacted]"), "{args:?} names the database: {all}");
    }
    // The password can come from a file; a missing one is named.
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"postgres://app@127.0.0.1:1/socialsyncer\"\npassword_file = \"{}/db-password\"\n\
             [security]\ntoken_key_file = \"{}\"\n",
            dir.path().display(),
            key.display()
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .args(["config", "check"])
        .output()
        .unwrap();
    assert!(
        text(&out.stderr).contains("database.password_file: cannot read"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn processes_starting_together_on_a_new_file_migrate_one_at_a_time_and_leave_it_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    for round in 0..6 {
        let env = env_with("");
        // keys create and migrate, three each, all at once on a database that is not there.
        let children: Vec<Child> = (0..6)
            .map(|i| {
                let args: &[&str] = if i % 2 == 0 {
                    &["keys", "create", "--workspace", "w"]
                } else {
                    &["migrate"]
                };
                env.cmd(args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "round {round}: {}", text(&out.stderr));
        }
        let state = env.dir.path().join("state");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o700, "the database's folder");
        for f in ["socialsyncer.db", "socialsyncer.db-wal", "socialsyncer.db-shm"] {
            if state.join(f).exists() {
                assert_eq!(mode(&state.join(f)), 0o600, "{f}");
            }
        }
        assert_eq!(mode(&state.join("socialsyncer.db")), 0o600);
    }
}

#[test]
fn a_token_key_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let env = env_with("");
    env.create_key("acme");
    let key = env.dir.path().join("state/token.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = env.import("threads", "1", "u", "THQVtoken");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("chmod 600"), "{}", text(&out.stderr));
}

#[test]
fn serve_stops_cleanly_on_sigint_as_on_sigterm() {
    let env = env_with("");
    env.create_key("acme");
    let mut d = start_daemon(&env);
    let ok = Command::new("kill")
        .args(["-INT", &d.child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = d.child.wait().unwrap();
    assert!(status.success(), "exit {status:?}");
    let all: Vec<String> = d.logs.iter().collect();
    assert!(all.join("\n").contains("stopped cleanly"), "{all:?}");
}

/// `config check` warns 90 days before a configured Graph API version expires, and an
/// expired one is a problem (issue 24 item 12).
#[test]
fn config_check_warns_before_a_graph_version_expires() {
    let env = env_with("");
    let toml = std::fs::read_to_string(&env.config).unwrap();
    // 21 January 2027 (the Graph changelog's date for v21.0): within 90 days of today's
    // 2 December 2026, and it passes with the machine's clock only after that day.
    let soon = toml.replacen(
        "[platforms.facebook]\n",
        "[platforms.facebook]\napi_version = \"v21.0\"\n",
        1,
    );
    std::fs::write(&env.config, soon).unwrap();
    let out = env.run(&["config", "check"]);
    let stderr = text(&out.stderr);
    let now = socialsyncer::domain::now();
    let sunset = socialsyncer::domain::parse_rfc3339("2027-01-21T00:00:00Z").unwrap();
    if now < sunset - 90 * 86_400 {
        assert!(!stderr.contains("api_version"), "{stderr}");
    } else if now < sunset {
        assert!(
            stderr.contains("warning: platforms.facebook.api_version: Graph API v21.0 expires on 2027-01-21"),
            "{stderr}"
        );
    } else {
        assert!(stderr.contains("problem: platforms.facebook.api_version"), "{stderr}");
    }
    let expired = toml.replacen(
        "[platforms.facebook]\n",
        "[platforms.facebook]\napi_version = \"v19.0\"\n",
        1,
    );
    std::fs::write(&env.config, expired).unwrap();
    let out = env.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("problem: platforms.facebook.api_version: Graph API v19.0 expired on 2026-05-21"),
        "{}",
        text(&out.stderr)
    );
}
