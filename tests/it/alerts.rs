//! Alert emails over real SMTP (an SMTP server started by the test) and the Prometheus text.

use crate::common::{TestApp, make_due, spawn_api_cfg};
use crate::smtp::SmtpServer;
use socialsyncer::alerts::{DeliveryReport, deliver};
use socialsyncer::app::AppState;
use socialsyncer::domain::{self, Platform};
use socialsyncer::simulator::{Behavior, TokenSpec, TokenState};
use tokio_util::sync::CancellationToken;

const DAY: i64 = 86_400;

async fn app_with_smtp(smtp: &SmtpServer) -> TestApp {
    let url = smtp.url();
    spawn_api_cfg("", move |c| {
        c.email.smtp_url = Some(url);
        c.email.from = Some("socialsyncer <alerts@example.com>".into());
        c.email.to = vec!["ops@example.com".into()];
        c.schedule.cron = String::new();
    })
    .await
}

fn spec(p: Platform) -> TokenSpec {
    TokenSpec::valid(p, "0")
}

#[tokio::test]
async fn one_grouped_email_per_workspace_no_repeats_after_restart_and_a_recovery_email() {
    let smtp = SmtpServer::start().await;
    let app = app_with_smtp(&smtp).await;
    let db = app.db().await;
    let a = app.key("acme").await;
    let b = app.key("globex").await;
    let (s, v) = app
        .http
        .put(app.url("/v1/notifications"))
        .bearer_auth(&a)
        .json(&serde_json::json!({"emails": ["social-team@acme.example", "social-team@acme.example"]}))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map(|s| (s, ()))
        .unwrap();
    assert_eq!(s, 200, "{v:?}");
    let (s, v) = app.get(&a, "/v1/notifications").await;
    assert_eq!(
        (s, v),
        (
            200,
            serde_json::json!({"emails": ["social-team@acme.example"], "webhooks": []})
        )
    );

    let (tw, _) = app
        .connect(
            &a,
            Platform::Twitter,
            "1",
            TokenSpec {
                state: TokenState::Revoked,
                with_refresh: false,
                // Without a refresh token its expiry is a person's business: far away here.
                expires_in: Some(60 * 86_400),
                ..spec(Platform::Twitter)
            },
        )
        .await;
    app.connect(
        &a,
        Platform::Facebook,
        "2",
        TokenSpec {
            expires_in: Some(2 * DAY),
            ..spec(Platform::Facebook)
        },
    )
    .await;
    app.connect(&a, Platform::Instagram, "3", spec(Platform::Instagram))
        .await;
    app.connect(
        &b,
        Platform::Tiktok,
        "t4",
        TokenSpec {
            state: TokenState::Revoked,
            ..spec(Platform::Tiktok)
        },
    )
    .await;

    let r = deliver(&app.state.outbox).await.unwrap();
    assert_eq!(
        r,
        DeliveryReport {
            emails: 3,
            events: 3,
            ..Default::default()
        },
        "one message for the operator and one for acme's team; one for the operator about globex"
    );
    let mails = smtp.mails();
    let acme: Vec<_> = mails.iter().filter(|m| m.subject().contains("acme")).collect();
    assert_eq!(acme.len(), 2);
    let mut to: Vec<Vec<String>> = acme.iter().map(|m| m.to.clone()).collect();
    to.sort();
    assert_eq!(
        to,
        [
            vec!["ops@example.com".to_owned()],
            vec!["social-team@acme.example".to_owned()]
        ],
        "separate envelopes: nobody sees another recipient"
    );
    for m in &acme {
        let headers = m.data.split("\r\n\r\n").next().unwrap();
        assert!(
            !(headers.contains("ops@example.com") && headers.contains("social-team@acme.example")),
            "{headers}"
        );
        assert!(headers.contains("Message-ID: <"), "{headers}");
        assert!(headers.contains("\r\nDate: "), "{headers}");
    }
    let acme = acme[0];
    assert_eq!(
        acme.subject(),
        "[socialsyncer] acme: 2 accounts need attention (worst: unhealthy)"
    );
    let body = acme.text();
    assert!(
        body.contains("X (Twitter) user_1 (1) [unhealthy]: The token no longer works."),
        "{body}"
    );
    assert!(
        body.contains("Facebook user_2 (2) [warning]: Token expires in "),
        "{body}"
    );
    assert!(
        body.contains("text/plain") && body.contains("text/html"),
        "both text and HTML"
    );
    assert!(!body.contains("user_3"), "the healthy account is not mentioned");
    // Worst first, counts in the header line, the installation named.
    assert!(
        body.find("user_1 (1) [unhealthy]").unwrap() < body.find("user_2 (2) [warning]").unwrap(),
        "{body}"
    );
    assert!(body.contains("Workspace acme: 1 unhealthy, 1 warning."), "{body}");
    assert!(
        body.contains(&format!("Sent by socialsyncer {} on ", env!("CARGO_PKG_VERSION"))),
        "{body}"
    );
    assert!(
        body.contains(", on 20") && body.contains(" UTC"),
        "absolute dates: {body}"
    );
    let globex = mails.iter().find(|m| m.subject().contains("globex")).unwrap();
    assert_eq!(
        globex.subject(),
        "[socialsyncer] globex: TikTok user_t4 (t4) needs attention (worst: unhealthy)"
    );
    assert_eq!(globex.to, ["ops@example.com"]);

    // A restart (a new state on the same database) and another sweep send nothing again.
    let mut config = socialsyncer::config::Config::from_toml(&format!(
        "[email]\nsmtp_url = \"{}\"\nto = [\"ops@example.com\"]\n{}",
        smtp.url(),
        app.sim.config_toml(app.dir.path()).unwrap()
    ))
    .unwrap();
    app.same_database(&mut config);
    let restarted = AppState::build(config).await.unwrap();
    make_due(&db, None).await;
    let r = socialsyncer::scheduler::sweep(&restarted.sweeper, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(r.checked, 4);
    assert_eq!(deliver(&restarted.outbox).await.unwrap(), DeliveryReport::default());
    assert_eq!(smtp.mails().len(), 3);

    // The user reconnects X: the account is healthy again, and one recovery email says so.
    app.sim.update(&tw.access_token, |t| t.state = TokenState::Valid);
    let (s, v) = app
        .post(&a, "/v1/accounts/twitter/1/check", &serde_json::Value::Null)
        .await;
    assert_eq!((s, v["health"].as_str()), (200, Some("healthy")), "{v}");
    let r = deliver(&restarted.outbox).await.unwrap();
    assert_eq!((r.emails, r.events), (2, 1));
    let last = smtp.mails().pop().unwrap();
    assert_eq!(last.subject(), "[socialsyncer] acme: X (Twitter) user_1 (1) recovered");
    assert!(last.text().contains("healthy again"));
    // Checking again sends nothing more.
    app.post(&a, "/v1/accounts/twitter/1/check", &serde_json::Value::Null)
        .await;
    assert_eq!(deliver(&restarted.outbox).await.unwrap().emails, 0);
    app.stop().await;
}

#[tokio::test]
async fn an_smtp_outage_delays_alerts_without_losing_them() {
    let smtp = SmtpServer::start().await;
    smtp.set_up(false);
    let app = app_with_smtp(&smtp).await;
    let db = app.db().await;
    let key = app.key("acme").await;
    app.connect(
        &key,
        Platform::Threads,
        "1",
        TokenSpec {
            state: TokenState::PasswordChanged,
            ..spec(Platform::Threads)
        },
    )
    .await;
    app.connect(
        &key,
        Platform::Twitter,
        "2",
        TokenSpec {
            state: TokenState::Revoked,
            with_refresh: false,
            ..spec(Platform::Twitter)
        },
    )
    .await;
    for attempt in 1..=3 {
        let r = deliver(&app.state.outbox).await.unwrap();
        assert_eq!(
            r,
            DeliveryReport {
                failed: 1,
                ..Default::default()
            },
            "attempt {attempt}"
        );
        let (attempts, next): (i64, i64) =
            sqlx::query_as("SELECT MAX(attempts), MIN(next_attempt_at) FROM alert_outbox")
                .fetch_one(&db)
                .await
                .unwrap();
        assert_eq!(attempts, attempt);
        assert!(next > domain::now(), "backs off");
        // Skip the wait.
        sqlx::query("UPDATE alert_outbox SET next_attempt_at = 0")
            .execute(&db)
            .await
            .unwrap();
    }
    assert_eq!(app.state.store.undelivered_alerts().await.unwrap(), 2);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("socialsyncer_alert_failures_total{kind=\"token_invalid\"} 6"),
        "{metrics}"
    );

    smtp.set_up(true);
    let r = deliver(&app.state.outbox).await.unwrap();
    assert_eq!(
        r,
        DeliveryReport {
            emails: 1,
            events: 2,
            ..Default::default()
        }
    );
    assert_eq!(app.state.store.undelivered_alerts().await.unwrap(), 0);
    let mail = &smtp.mails()[0];
    assert!(mail.text().contains("user_1") && mail.text().contains("user_2"));
    assert_eq!(mail.from, "<alerts@example.com>");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("socialsyncer_alerts_sent_total{kind=\"token_invalid\"} 2"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn unreachable_alerts_wait_for_several_failures_and_thresholds_fire_once() {
    let smtp = SmtpServer::start().await;
    let app = app_with_smtp(&smtp).await;
    let db = app.db().await;
    let key = app.key("acme").await;
    app.connect(&key, Platform::Tiktok, "quiet", spec(Platform::Tiktok))
        .await;
    sqlx::query("UPDATE account_health SET last_success_at = $1")
        .bind(domain::now() - 2 * DAY)
        .execute(&db)
        .await
        .unwrap();
    app.sim.set_platform_behavior(Platform::Tiktok, Behavior::ServerError);
    let unreachable = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM alert_outbox WHERE kind = 'platform_unreachable'")
            .fetch_one(&db)
            .await
            .unwrap()
    };
    for sweep in 1..=4 {
        make_due(&db, None).await;
        socialsyncer::scheduler::sweep(&app.state.sweeper, &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(unreachable().await, i64::from(sweep >= 3), "after sweep {sweep}");
    }

    // Expiry thresholds: one alert per threshold crossed, the tightest one first.
    app.connect(
        &key,
        Platform::Facebook,
        "9",
        TokenSpec {
            expires_in: Some(5 * DAY),
            ..spec(Platform::Facebook)
        },
    )
    .await;
    let kinds = || async {
        sqlx::query_scalar::<_, String>("SELECT kind FROM alert_outbox WHERE account_id = '9' ORDER BY id")
            .fetch_all(&db)
            .await
            .unwrap()
    };
    assert_eq!(kinds().await, ["expiring_7days"]);
    make_due(&db, None).await;
    socialsyncer::scheduler::sweep(&app.state.sweeper, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(kinds().await, ["expiring_7days"], "no repeat");
    app.stop().await;
}

/// Prometheus' `humanizeDuration` (template function) for whole seconds.
fn humanize_duration(v: i64) -> String {
    let (sign, v) = if v < 0 { ("-", -v) } else { ("", v) };
    let (d, h, m, s) = (v / 86_400, v / 3_600 % 24, v / 60 % 60, v % 60);
    if d != 0 {
        format!("{sign}{d}d {h}h {m}m {s}s")
    } else if h != 0 {
        format!("{sign}{h}h {m}m {s}s")
    } else if m != 0 {
        format!("{sign}{m}m {s}s")
    } else {
        format!("{sign}{s}s")
    }
}

/// The promtool binary; a missing one fails the test saying how to get it, unless
/// `SOCIALSYNCER_SKIP_PROMTOOL=1` skips it on purpose.
fn promtool() -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("promtool"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("SOCIALSYNCER_SKIP_PROMTOOL").as_deref() == Ok("1"),
            "promtool is missing: install Debian's prometheus package (`apt-get install prometheus`; \
             .ci/run does), or set SOCIALSYNCER_SKIP_PROMTOOL=1 to skip the rule tests on purpose"
        );
        eprintln!("promtool tests skipped on purpose: SOCIALSYNCER_SKIP_PROMTOOL=1");
    }
    found
}

/// Issue 25 item 9: every query of the Grafana dashboard (`config/grafana/socialsyncer.json`)
/// names only series in `names` (what a daemon with accounts in every state emits), groups
/// only by labels those series carry, and parses as PromQL (promtool checks them as
/// recording rules).
fn dashboard_uses_only_emitted_series(names: &std::collections::BTreeSet<String>, scrape: &str) {
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("config/grafana/socialsyncer.json").unwrap()).unwrap();
    let mut exprs = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().unwrap().to_owned());
        }
    }
    assert!(exprs.len() >= 15, "the dashboard has its queries: {}", exprs.len());
    let series = ["socialsyncer_", "process_"];
    for e in &exprs {
        let words: Vec<&str> = e
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| series.iter().any(|s| w.starts_with(s)))
            .collect();
        assert!(!words.is_empty(), "{e}: names no series");
        for used in words {
            assert!(
                names.contains(used),
                "the dashboard uses {used}, which the daemon never emits: {e}"
            );
        }
        // Each `by (...)` label is on some series of the scrape (or added by Prometheus).
        for clause in e.split("by (").skip(1) {
            for label in clause.split(')').next().unwrap().split(',').map(str::trim) {
                assert!(
                    matches!(label, "le" | "instance" | "job") || scrape.contains(&format!("{label}=\"")),
                    "the dashboard groups by '{label}', which no series carries: {e}"
                );
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let rules: String = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| {
            format!(
                "      - record: dashboard:query_{i}\n        expr: '{}'\n",
                e.replace('\'', "''")
            )
        })
        .collect();
    let file = dir.path().join("dashboard.yml");
    std::fs::write(&file, format!("groups:\n  - name: dashboard\n    rules:\n{rules}")).unwrap();
    if let Some(promtool) = promtool() {
        let out = std::process::Command::new(promtool)
            .arg("check")
            .arg("rules")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the dashboard's queries do not parse: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The alert rules, evaluated by promtool on series scraped from a running daemon (as two
/// daemons sharing its database would export them: every series twice, once per target) whose
/// accounts are in every state: each rule fires exactly for the accounts the API says need
/// a person, never for a healthy one, and every series the rules and their hand-written
/// tests use is one the daemon really emits.
#[tokio::test]
async fn alert_rules_on_a_real_scrape() {
    let app = spawn_api_cfg("", |c| c.schedule.cron = String::new()).await;
    let key = app.key("acme").await;
    let no_refresh = |p, expires_in| TokenSpec {
        with_refresh: false,
        expires_in,
        ..spec(p)
    };
    // Healthy, renewed automatically: short-lived X and TikTok tokens, a Threads token in its
    // refresh window. A healthy Page that never expires.
    app.connect(&key, Platform::Twitter, "101", spec(Platform::Twitter))
        .await;
    app.connect(&key, Platform::Tiktok, "tt102", spec(Platform::Tiktok))
        .await;
    app.connect(
        &key,
        Platform::Threads,
        "103",
        TokenSpec {
            expires_in: Some(3 * DAY),
            ..spec(Platform::Threads)
        },
    )
    .await;
    app.connect(
        &key,
        Platform::Facebook,
        "104",
        TokenSpec {
            expires_in: None,
            admin_id: Some("9001".into()),
            ..spec(Platform::Facebook)
        },
    )
    .await;
    // Nothing renews this X token: it must be reconnected within 3 days.
    app.connect(
        &key,
        Platform::Twitter,
        "105",
        no_refresh(Platform::Twitter, Some(3 * DAY)),
    )
    .await;
    // Expired and not renewable.
    app.connect(
        &key,
        Platform::Twitter,
        "106",
        no_refresh(Platform::Twitter, Some(-3_600)),
    )
    .await;
    // Facebook data access ends in 12 hours.
    app.connect(
        &key,
        Platform::Facebook,
        "107",
        TokenSpec {
            expires_in: None,
            data_access_expires_in: Some(12 * 3_600),
            admin_id: Some("9002".into()),
            ..spec(Platform::Facebook)
        },
    )
    .await;
    // Revoked.
    app.connect(
        &key,
        Platform::Tiktok,
        "tt108",
        TokenSpec {
            state: TokenState::Revoked,
            ..spec(Platform::Tiktok)
        },
    )
    .await;

    let scrape = app.metrics().await;
    let now = domain::now();
    let (_, list) = app.get(&key, "/v1/accounts/health").await;
    let truth: std::collections::HashMap<String, (String, bool)> = list["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["accountId"].as_str().unwrap().to_owned(),
                (
                    a["health"].as_str().unwrap().to_owned(),
                    a["needsReconnect"].as_bool().unwrap(),
                ),
            )
        })
        .collect();

    // Every series of the scrape becomes an input series; timestamps are shifted so that
    // promtool's time 0 is the scrape.
    let mut series = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    let mut deadlines = std::collections::BTreeMap::new();
    for line in scrape.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (name_labels, value) = line.rsplit_once(' ').unwrap();
        let name = name_labels.split('{').next().unwrap();
        names.insert(name.to_owned());
        if !name.starts_with("socialsyncer_") {
            continue;
        }
        let mut v: f64 = value.parse().unwrap();
        if name.ends_with("_timestamp_seconds") {
            v -= now as f64;
        }
        if name == "socialsyncer_reconnect_deadline_timestamp_seconds" {
            let id = name_labels
                .split("account_id=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            deadlines.insert(id.to_owned(), v as i64);
        }
        // Two daemons on one database export the same accounts; Prometheus adds each
        // target's `job` and `instance`. Each alert must still fire once.
        for instance in ["daemon-a:9464", "daemon-b:9464"] {
            let target = format!("job=\"socialsyncer\",instance=\"{instance}\"");
            let labels = match name_labels.split_once('{') {
                Some((n, rest)) => format!("{n}{{{target},{rest}"),
                None => format!("{name_labels}{{{target}}}"),
            };
            let labels = labels.replace('\'', "\\'");
            series.push(format!("      - series: '{labels}'\n        values: '{v}x40'\n"));
        }
    }
    // The rules and the hand-written rule tests name only series the daemon emits.
    let rules = std::fs::read_to_string("config/prometheus/alerts.yml").unwrap();
    let hand = std::fs::read_to_string("config/prometheus/alerts_test.yml").unwrap();
    for text in [&rules, &hand] {
        for used in text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("socialsyncer_"))
        {
            assert!(
                names.contains(used),
                "{used} is used by the rules but the daemon never emits it"
            );
        }
    }

    dashboard_uses_only_emitted_series(&names, &scrape);

    let eval = 20 * 60;
    let mut expected: std::collections::BTreeMap<&str, Vec<(String, String)>> = Default::default();
    for (id, (health, needs)) in &truth {
        if *needs {
            expected.entry("SocialAccountNeedsReconnect").or_default().push((
                id.clone(),
                "Posts to this account fail until someone reconnects it. GET /v1/accounts/{p}/{id} says why.".into(),
            ));
        }
        if let Some(d) = deadlines.get(id) {
            let left = d - eval;
            let (rule, description) = if left <= 0 {
                (
                    "SocialReconnectDeadlinePassed",
                    format!(
                        "Its token (or Facebook data access) expired {} ago; reconnect the account.",
                        humanize_duration(-left)
                    ),
                )
            } else if left < DAY {
                (
                    "SocialReconnectDeadlineWithin1Day",
                    format!(
                        "Reconnect it in the next {}, or posts stop going out.",
                        humanize_duration(left)
                    ),
                )
            } else if left < 7 * DAY {
                (
                    "SocialReconnectDeadlineWithin7Days",
                    format!(
                        "Reconnect it in the next {}, or posts stop going out.",
                        humanize_duration(left)
                    ),
                )
            } else {
                continue;
            };
            assert_ne!(health, "healthy", "{id} is healthy but would fire {rule}");
            expected.entry(rule).or_default().push((id.clone(), description));
        }
    }
    // The scenario's own expectations, so that the derivation above cannot hide a gap.
    let ids = |rule: &str| -> Vec<&str> {
        let mut v: Vec<&str> = expected
            .get(rule)
            .map(|v| v.iter().map(|(id, _)| id.as_str()).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    assert_eq!(ids("SocialAccountNeedsReconnect"), ["106", "tt108"]);
    assert_eq!(ids("SocialReconnectDeadlinePassed"), ["106"]);
    assert_eq!(ids("SocialReconnectDeadlineWithin1Day"), ["107"]);
    assert_eq!(ids("SocialReconnectDeadlineWithin7Days"), ["105"]);

    let platform_of = |id: &str| -> &str {
        list["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["accountId"] == id)
            .and_then(|a| a["platform"].as_str())
            .unwrap()
    };
    let mut tests = String::new();
    for (rule, summary_tail) in [
        ("SocialAccountNeedsReconnect", "must be reconnected"),
        ("SocialReconnectDeadlinePassed", "has expired"),
        ("SocialReconnectDeadlineWithin1Day", "must be reconnected within a day"),
        (
            "SocialReconnectDeadlineWithin7Days",
            "must be reconnected within 7 days",
        ),
    ] {
        let severity = if rule.ends_with("7Days") { "warning" } else { "critical" };
        tests.push_str(&format!(
            "      - eval_time: {eval}s\n        alertname: {rule}\n        exp_alerts:\n"
        ));
        let fired = expected.get(rule).cloned().unwrap_or_default();
        if fired.is_empty() {
            tests.push_str("          []\n");
        }
        for (id, description) in fired {
            let p = platform_of(&id);
            let description = description.replace("{p}", p).replace("{id}", &id);
            tests.push_str(&format!(
                "          - exp_labels:\n              severity: {severity}\n              platform: {p}\n              \
                 account_id: \"{id}\"\n              workspace: acme\n            exp_annotations:\n              \
                 summary: \"{p} account {id} (acme) {summary_tail}\"\n              description: \"{description}\"\n"
            ));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy("config/prometheus/alerts.yml", dir.path().join("alerts.yml")).unwrap();
    let file = dir.path().join("scrape_test.yml");
    std::fs::write(
        &file,
        format!(
            "rule_files:\n  - alerts.yml\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{}    alert_rule_test:\n{tests}",
            series.concat()
        ),
    )
    .unwrap();
    if let Some(promtool) = promtool() {
        let out = std::process::Command::new(promtool)
            .args(["test", "rules"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&file).unwrap()
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn alerts_wait_for_a_recipient_and_a_refused_address_costs_nobody_else() {
    let smtp = SmtpServer::start().await;
    let url = smtp.url();
    // No operator address: only the workspace's own list, which is empty at first.
    let app = spawn_api_cfg("", move |c| {
        c.email.smtp_url = Some(url);
        c.email.to = Vec::new();
        c.schedule.cron = String::new();
    })
    .await;
    let key = app.key("acme").await;
    let db = app.db().await;
    let revoked = |id: &str| TokenSpec {
        state: TokenState::Revoked,
        with_refresh: false,
        user_id: id.into(),
        ..spec(Platform::Twitter)
    };
    app.connect(&key, Platform::Twitter, "1", revoked("1")).await;
    let r = deliver(&app.state.outbox).await.unwrap();
    assert_eq!(r, DeliveryReport::default());
    assert_eq!(
        app.state.store.undelivered_alerts().await.unwrap(),
        1,
        "kept, not dropped"
    );
    let h: serde_json::Value = app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(h["problems"].to_string().contains("wait for a recipient"), "{h}");
    assert!(app.metrics().await.contains("socialsyncer_alerts_pending 1"));

    // Two recipients; the server refuses one of them for good.
    let (s, _) = app
        .put(
            &key,
            "/v1/notifications",
            &serde_json::json!({"emails": ["ok@acme.example", "gone@acme.example"]}),
        )
        .await;
    assert_eq!(s, 200);
    smtp.refuse("gone@acme.example", "550 5.1.1 No such user");
    let r = deliver(&app.state.outbox).await.unwrap();
    assert_eq!(
        r,
        DeliveryReport {
            emails: 1,
            events: 1,
            refused: 1,
            ..Default::default()
        }
    );
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, ["ok@acme.example"]);
    assert_eq!(app.state.store.undelivered_alerts().await.unwrap(), 0);
    let h: serde_json::Value = app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["status"], "ok", "{h}");
    let note: (String,) = sqlx::query_as("SELECT note FROM alert_deliveries WHERE recipient = 'gone@acme.example'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(note.0.contains("550"), "{note:?}");

    // A transient refusal (450) is retried, and only the missing copy is sent again.
    smtp.refuse("ok@acme.example", "450 4.2.1 Mailbox busy, try later");
    app.connect(&key, Platform::Twitter, "2", revoked("2")).await;
    let r = deliver(&app.state.outbox).await.unwrap();
    assert_eq!((r.emails, r.failed, r.refused, r.events), (0, 1, 1, 0), "{r:?}");
    assert_eq!(app.state.store.undelivered_alerts().await.unwrap(), 1);
    smtp.refuse.lock().unwrap().remove("ok@acme.example");
    sqlx::query("UPDATE alert_outbox SET next_attempt_at = 0")
        .execute(&db)
        .await
        .unwrap();
    let r = deliver(&app.state.outbox).await.unwrap();
    assert_eq!(
        (r.emails, r.refused, r.events),
        (1, 0, 1),
        "gone@ is not tried again: {r:?}"
    );
    let mails = smtp.mails();
    assert_eq!(mails.len(), 2);
    assert!(mails[1].text().contains("user_2") && !mails[1].text().contains("user_1 (1)"));
    app.stop().await;
}

/// One alert (a revoked X token) mailed to `smtp_url` by an app whose email settings `tweak`
/// completes; returns what the delivery round did.
async fn mail_one_alert(smtp_url: String, tweak: impl FnOnce(&mut socialsyncer::config::Config)) -> DeliveryReport {
    let app = spawn_api_cfg("", move |c| {
        c.email.smtp_url = Some(smtp_url);
        c.email.from = Some("alerts@example.com".into());
        c.email.to = vec!["ops@example.com".into()];
        c.schedule.cron = String::new();
        tweak(c);
    })
    .await;
    let key = app.key("acme").await;
    app.connect(
        &key,
        Platform::Twitter,
        "1",
        TokenSpec {
            state: TokenState::Revoked,
            with_refresh: false,
            expires_in: Some(60 * DAY),
            ..spec(Platform::Twitter)
        },
    )
    .await;
    let r = deliver(&app.state.outbox).await.unwrap();
    app.stop().await;
    r
}

#[tokio::test]
async fn smtp_credentials_from_the_credentials_file_are_presented() {
    let smtp = SmtpServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("smtp_credentials");
    std::fs::write(&creds, "alerts@example.com:s3cret-pass\n").unwrap();
    let r = mail_one_alert(smtp.url(), |c| c.email.credentials_file = Some(creds)).await;
    assert_eq!(r.emails, 1, "{r:?}");
    assert_eq!(*smtp.auths.lock().unwrap(), ["alerts@example.com:s3cret-pass"]);
}

/// One alert mailed through `smtp_url` to a TLS server that presents a certificate from the
/// test's own CA (`email.ca_file`); returns the mails it received.
async fn mail_over_tls(
    mode: crate::smtp::TlsMode,
    smtp_url: impl FnOnce(u16) -> String,
) -> (Vec<crate::smtp::Mail>, DeliveryReport) {
    let smtp = SmtpServer::start_with(mode).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("smtp-ca.pem");
    std::fs::write(&ca, smtp.cert_pem.clone().unwrap()).unwrap();
    let r = mail_one_alert(smtp_url(smtp.port), |c| c.email.ca_file = Some(ca)).await;
    (smtp.mails(), r)
}

#[tokio::test]
async fn alert_mail_goes_over_implicit_tls_and_starttls() {
    use crate::smtp::TlsMode;
    let (mails, r) = mail_over_tls(TlsMode::Implicit, |port| format!("smtps://localhost:{port}")).await;
    assert_eq!((r.emails, mails.len()), (1, 1), "smtps://: {r:?}");
    let (mails, r) = mail_over_tls(TlsMode::StartTls, |port| {
        format!("smtp://localhost:{port}?tls=required")
    })
    .await;
    assert_eq!((r.emails, mails.len()), (1, 1), "STARTTLS: {r:?}");
    // The server refuses MAIL before STARTTLS, so each success went through the upgrade;
    // opportunistic TLS upgrades too when the server offers it.
    let (mails, r) = mail_over_tls(TlsMode::StartTls, |port| {
        format!("smtp://localhost:{port}?tls=opportunistic")
    })
    .await;
    assert_eq!(
        (r.emails, mails.len()),
        (1, 1),
        "opportunistic TLS upgrades when offered: {r:?}"
    );
}

#[tokio::test]
async fn a_server_certificate_the_daemon_does_not_trust_delays_the_mail() {
    let smtp = SmtpServer::start_with(crate::smtp::TlsMode::Implicit).await;
    let r = mail_one_alert(format!("smtps://localhost:{}", smtp.port), |_| {}).await;
    assert_eq!((r.emails, r.failed), (0, 1), "{r:?}");
    assert!(smtp.mails().is_empty());
}
