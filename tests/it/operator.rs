//! The operator's first hour (issue 25): what `config check` proves, what admin commands
//! refuse, and what they say.

use socialsyncer::domain::Platform;
use socialsyncer::simulator::{Behavior, TokenSpec};

use crate::cli::{Env, env_with, text};

/// Imports X account `id` with a live simulated token.
fn import_x(env: &Env, id: &str) {
    let issued = env
        .sim
        .issue(Platform::Twitter, TokenSpec::valid(Platform::Twitter, id));
    let out = env.run_with_stdin(
        &[
            "accounts",
            "import",
            "--workspace",
            "acme",
            "--platform",
            "twitter",
            "--account-id",
            id,
            "--username",
            "u",
        ],
        &issued.access_token,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// The config file without the line that sets `key` (a credential the operator forgot).
fn forget(env: &Env, key: &str) {
    let toml = std::fs::read_to_string(&env.config).unwrap();
    let kept: Vec<&str> = toml.lines().filter(|l| !l.starts_with(&format!("{key} ="))).collect();
    std::fs::write(&env.config, kept.join("\n")).unwrap();
}

/// Item 2: `config check` names its file, opens a stored token with the key, warns about
/// accounts on a platform without app credentials, and prints each platform's effective
/// settings (no `login` outside Instagram). A key that opens no stored token is a problem
/// there, and stops `check` before it writes anything; `check` exits 3 when no account
/// could be checked.
#[test]
fn config_check_proves_the_setup_and_a_wrong_key_writes_nothing() {
    let env = env_with("");
    let out = env.run(&["keys", "create", "--workspace", "acme"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    import_x(&env, "1234");
    forget(&env, "client_id");
    let out = env.run(&["config", "check"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("ok: config file {}", env.config.display())),
        "{stderr}"
    );
    assert!(stderr.contains("ok: the token key opens the stored tokens"), "{stderr}");
    assert!(
        stderr.contains("warning: 1 X (Twitter) account(s) are registered, but platforms.twitter.client_id is not set"),
        "{stderr}"
    );
    let tiktok = stdout
        .split("[platforms.tiktok]")
        .nth(1)
        .and_then(|t| t.split("\n[").next())
        .unwrap_or_default();
    for want in ["rate_limit = 8.0", "refresh_before = \"1h\"", "auto_refresh = true"] {
        assert!(tiktok.contains(want), "{want} in {tiktok}");
    }
    assert!(!tiktok.contains("login ="), "{tiktok}");
    assert!(
        stdout.contains("login = \"facebook\""),
        "Instagram's login stays: {stdout}"
    );

    // Another valid key in the key file's place.
    let key = env.dir.path().join("state/token.key");
    let saved = std::fs::read(&key).unwrap();
    let other = env.dir.path().join("other.key");
    socialsyncer::crypto::Sealer::load_or_create(&other).unwrap();
    std::fs::copy(&other, &key).unwrap();
    let out = env.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("does not open the stored tokens"),
        "{}",
        text(&out.stderr)
    );
    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("Nothing was written"),
        "{}",
        text(&out.stderr)
    );
    let db = env.dir.path().join("state/socialsyncer.db");
    let checked = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = socialsyncer::store::Store::open_sqlite(&db, std::time::Duration::from_secs(5), 1)
            .await
            .unwrap();
        store.all_accounts(None).await.unwrap()[0].last_checked_at
    });
    assert_eq!(checked, None, "nothing was written to the account's health");

    // The right key; X down: nothing could be checked (exit 3), then X back (exit 0).
    std::fs::write(&key, saved).unwrap();
    env.sim.set_platform_behavior(Platform::Twitter, Behavior::ServerError);
    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("none of the 1 account(s) could be checked"),
        "{}",
        text(&out.stderr)
    );
    env.sim.set_platform_behavior(Platform::Twitter, Behavior::Normal);
    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// Item 3: `x` names X wherever a platform is named: the API's bodies, paths and filters,
/// the command line, and the config's `[platforms.x]`. Answers keep saying `twitter`.
#[tokio::test]
async fn x_is_an_alias_of_twitter_wherever_a_platform_is_named() {
    let app = crate::common::spawn_app().await;
    let key = app.key("acme").await;
    let issued = app
        .sim
        .issue(Platform::Twitter, TokenSpec::valid(Platform::Twitter, "4242"));
    let body = serde_json::json!({"platform": "x", "accountId": "4242", "username": "u",
        "accessToken": issued.access_token, "scopes": ["tweet.read", "tweet.write", "users.read"]});
    let (s, v) = app.post(&key, "/v1/accounts", &body).await;
    assert_eq!((s, v["platform"].as_str()), (201, Some("twitter")), "{v}");
    let (s, v) = app.get(&key, "/v1/accounts/x/4242").await;
    assert_eq!((s, v["accountId"].as_str()), (200, Some("4242")), "{v}");
    let (s, v) = app.get(&key, "/v1/accounts/health?platform=x").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["accounts"].as_array().map(Vec::len), Some(1), "{v}");
    let c = socialsyncer::config::Config::from_toml("[platforms.x]\nclient_id = \"abc\"\nrate_limit = 3.0\n").unwrap();
    assert_eq!(c.platforms.twitter.client_id.as_deref(), Some("abc"));
    assert_eq!("x".parse::<Platform>().unwrap(), Platform::Twitter);
    app.stop().await;
}

/// Item 3: `x` on the command line.
#[test]
fn x_names_x_on_the_command_line() {
    let env = env_with("");
    env.run(&["keys", "create", "--workspace", "acme"]);
    import_x(&env, "77");
    let out = env.run(&["check", "--platform", "x"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("twitter    77"), "{}", text(&out.stdout));
}

/// Item 3: email recipients on a daemon without `email.smtp_url`: the `PUT` answer warns,
/// and `/healthz` says so (without naming the workspace).
#[tokio::test]
async fn email_recipients_without_smtp_are_warned_about() {
    let app = crate::common::spawn_app().await;
    assert!(app.state.config().email.smtp_url.is_none());
    let key = app.key("acme").await;
    let (s, v) = app
        .put(
            &key,
            "/v1/notifications",
            &serde_json::json!({"emails": ["ops@example.com"]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(
        v["warning"]
            .as_str()
            .unwrap_or_default()
            .contains("email.smtp_url is not set"),
        "{v}"
    );
    let (s, v) = app
        .put(&key, "/v1/notifications", &serde_json::json!({"emails": []}))
        .await;
    assert_eq!((s, v.get("warning")), (200, None), "{v}");
    app.put(
        &key,
        "/v1/notifications",
        &serde_json::json!({"emails": ["ops@example.com"]}),
    )
    .await;
    let health: serde_json::Value = app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = health.to_string();
    assert!(
        text.contains("1 workspace(s) have email recipients but email.smtp_url is not set") && !text.contains("acme"),
        "{health}"
    );
    app.stop().await;
}

/// Item 3: `migrate --from` refuses while a daemon holds the SQLite database's lock (the
/// copy would miss what it writes), before it connects anywhere; `demo --help` lists only
/// what the demo takes.
#[test]
fn migrate_from_refuses_a_database_a_daemon_runs_on_and_demo_help_lists_its_own_options() {
    let env = env_with("");
    env.run(&["keys", "create", "--workspace", "acme"]);
    let daemon = crate::cli::start_daemon(&env);
    let db = format!("sqlite://{}/state/socialsyncer.db", env.dir.path().display());
    let out = env.run(&["migrate", "--from", &db, "--to", "postgres://u@127.0.0.1:1/none"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("a socialsyncer daemon is running on this database") && stderr.contains("before copying"),
        "{stderr}"
    );
    drop(daemon);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_socialsyncer"))
        .args(["demo", "--help"])
        .output()
        .unwrap();
    let help = text(&out.stdout);
    assert!(help.contains("--listen") && !help.contains("--config"), "{help}");
}

/// Item 3: `accounts import` on a terminal asks for the token with hidden input (a real
/// pseudo-terminal, driven by Python's `pty`): the prompt shows, the typed token is not
/// echoed, and the account is registered.
#[test]
fn accounts_import_on_a_terminal_prompts_with_hidden_input() {
    let env = env_with("");
    env.run(&["keys", "create", "--workspace", "acme"]);
    let issued = env
        .sim
        .issue(Platform::Twitter, TokenSpec::valid(Platform::Twitter, "99"));
    let driver = r#"
import os, pty, signal, sys
signal.alarm(30)
argv, token = sys.argv[1:-1], sys.argv[-1]
pid, fd = pty.fork()
if pid == 0:
    os.execv(argv[0], argv)
out = b""
while b"input hidden" not in out:
    out += os.read(fd, 1024)
# Typed once the terminal's echo is off, as a person would (a prompt that never turns it
# off fails here, by the alarm).
import termios, time
while termios.tcgetattr(fd)[3] & termios.ECHO:
    time.sleep(0.01)
os.write(fd, token.encode() + b"\n")
while True:
    try:
        d = os.read(fd, 1024)
    except OSError:
        break
    if not d:
        break
    out += d
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    let bin = env!("CARGO_BIN_EXE_socialsyncer");
    let config = env.config.display().to_string();
    let out = std::process::Command::new("python3")
        .args(["-c", driver, bin, "--config", &config])
        .args(["accounts", "import", "--workspace", "acme", "--platform", "x"])
        .args(["--account-id", "99", "--username", "u", &issued.access_token])
        .output()
        .unwrap();
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{shown}{}", text(&out.stderr));
    assert!(shown.contains("access token (input hidden): "), "{shown}");
    assert!(!shown.contains(&issued.access_token), "the token was echoed: {shown}");
    let out = env.run(&["check", "--platform", "x"]);
    assert!(text(&out.stdout).contains("twitter    99"), "{}", text(&out.stdout));
}

/// Item 5: `serve` says where it stands when it starts, in one line: the config file, the
/// database, the accounts per platform, the platforms with accounts but no credentials, the
/// next sweep and where metrics are served.
#[test]
fn serve_says_where_it_stands_at_start() {
    let env = env_with("");
    env.run(&["keys", "create", "--workspace", "acme"]);
    import_x(&env, "1234");
    forget(&env, "client_id");
    let daemon = crate::cli::start_daemon(&env);
    let mut seen = Vec::new();
    let line = loop {
        let l = daemon
            .logs
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no 'where socialsyncer stands' line: {seen:#?}"));
        let v: serde_json::Value = serde_json::from_str(&l).unwrap_or_default();
        if v["message"] == "where socialsyncer stands" {
            break v;
        }
        seen.push(l);
    };
    assert_eq!(line["config"], env.config.display().to_string(), "{line}");
    assert!(
        line["database"].as_str().unwrap().ends_with("state/socialsyncer.db"),
        "{line}"
    );
    assert_eq!(line["accounts"], "twitter 1", "{line}");
    assert_eq!(line["without_credentials"], "twitter", "{line}");
    assert!(
        socialsyncer::domain::parse_rfc3339(line["next_sweep"].as_str().unwrap()).is_ok(),
        "{line}"
    );
    assert_eq!(line["metrics"], format!("http://{}/metrics", daemon.metrics), "{line}");
}

/// Item 6: `completions bash|zsh|fish` and `man` print what the package ships, with no
/// configuration; another shell is refused.
#[test]
fn completions_and_the_man_page_are_printed_without_a_configuration() {
    let bin = env!("CARGO_BIN_EXE_socialsyncer");
    let run = |args: &[&str]| {
        std::process::Command::new(bin)
            .args(args)
            .env("SOCIALSYNCER_CONFIG", "/nonexistent/socialsyncer.toml")
            .output()
            .unwrap()
    };
    for (shell, want) in [
        ("bash", "complete -F _socialsyncer"),
        ("zsh", "#compdef socialsyncer"),
        ("fish", "complete -c socialsyncer"),
    ] {
        let out = run(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(
            script.contains(want) && script.contains("accounts"),
            "{shell}: {script}"
        );
    }
    let out = run(&["man"]);
    assert!(out.status.success());
    let page = text(&out.stdout);
    assert!(page.contains(".TH socialsyncer 1") && page.contains("serve"), "{page}");
    assert_eq!(run(&["completions", "tcsh"]).status.code(), Some(2));
}

/// Item 7: `/docs` is the OpenAPI document rendered on the server (no script, the strict
/// policy, every operation and schema), and the document has examples for the three core
/// routes, enums on `platform` and `health`, and the 304, 403 and 429 answers with their
/// headers.
#[tokio::test]
async fn the_docs_page_renders_the_openapi_document() {
    let app = crate::common::spawn_app().await;
    let r = app.http.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(
        csp.starts_with("default-src 'none'") && !csp.contains("script"),
        "{csp}"
    );
    let page = r.text().await.unwrap();
    assert!(!page.to_lowercase().contains("<script"), "no script");
    let doc: serde_json::Value = app
        .http
        .get(app.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (_, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap();
            assert!(ids.insert(id.to_owned()), "{path}: operationId {id} is not unique");
            assert!(page.contains(&format!("id=\"op-{id}\"")), "{path} {id} on the page");
        }
    }
    for name in doc["components"]["schemas"].as_object().unwrap().keys() {
        assert!(
            page.contains(&format!("id=\"schema-{name}\"")),
            "schema {name} on the page"
        );
    }
    let list = &doc["paths"]["/v1/accounts"]["get"];
    assert!(list["responses"]["304"]["headers"]["ETag"].is_object(), "{list}");
    assert!(list["responses"]["429"]["headers"]["Retry-After"].is_object(), "{list}");
    assert!(list["responses"]["403"].is_object(), "{list}");
    let platform = list["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "platform")
        .unwrap();
    assert!(
        platform["schema"]["enum"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("x")),
        "{platform}"
    );
    let health = &doc["paths"]["/v1/accounts/health"]["get"];
    let h = health["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "health")
        .unwrap();
    assert_eq!(h["schema"]["enum"].as_array().map(Vec::len), Some(4), "{h}");
    for path in [
        "/v1/accounts",
        "/v1/accounts/health",
        "/v1/accounts/{platform}/{accountId}",
    ] {
        let example = &doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["example"];
        assert!(example.is_object(), "{path}: an example");
    }
    // The keyless routes get no 403 or 429.
    assert!(doc["paths"]["/healthz"]["get"]["responses"]["429"].is_null());
    app.stop().await;
}
