//! Alert emails over real SMTP (an SMTP server started by the test) and the Prometheus text.

mod common;
#[path = "common/smtp.rs"]
mod smtp;

use common::{TestApp, make_due, spawn_app_cfg};
use smtp::SmtpServer;
use socialsyncer::alerts::email::{DeliveryReport, deliver};
use socialsyncer::app::AppState;
use socialsyncer::domain::{self, Platform};
use socialsyncer::simulator::{Behavior, TokenSpec, TokenState};
use tokio_util::sync::CancellationToken;

const DAY: i64 = 86_400;

async fn app_with_smtp(smtp: &SmtpServer) -> TestApp {
    let url = smtp.url();
    spawn_app_cfg("", move |c| {
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
        (200, serde_json::json!({"emails": ["social-team@acme.example"]}))
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

    let r = deliver(&app.state).await.unwrap();
    assert_eq!(
        r,
        DeliveryReport {
            emails: 2,
            events: 3,
            failed: 0
        }
    );
    let mails = smtp.mails();
    let acme = mails.iter().find(|m| m.subject().contains("acme")).unwrap();
    assert_eq!(
        acme.subject(),
        "[socialsyncer] acme: 2 accounts need attention (worst: unhealthy)"
    );
    let mut to = acme.to.clone();
    to.sort();
    assert_eq!(to, ["ops@example.com", "social-team@acme.example"]);
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
    let globex = mails.iter().find(|m| m.subject().contains("globex")).unwrap();
    assert_eq!(
        globex.subject(),
        "[socialsyncer] globex: 1 account needs attention (worst: unhealthy)"
    );
    assert_eq!(globex.to, ["ops@example.com"]);

    // A restart (a new state on the same database) and another sweep send nothing again.
    let config = socialsyncer::config::Config::from_toml(&format!(
        "[database]\nurl = \"sqlite://{}/socialsyncer.db\"\n[email]\nsmtp_url = \"{}\"\nto = [\"ops@example.com\"]\n{}",
        app.dir.path().display(),
        smtp.url(),
        app.sim.config_toml(app.dir.path()).unwrap()
    ))
    .unwrap();
    let restarted = AppState::build(config).await.unwrap();
    make_due(&db, None).await;
    let r = socialsyncer::scheduler::sweep(&restarted, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(r.checked, 4);
    assert_eq!(deliver(&restarted).await.unwrap(), DeliveryReport::default());
    assert_eq!(smtp.mails().len(), 2);

    // The user reconnects X: the account is healthy again, and one recovery email says so.
    app.sim.update(&tw.access_token, |t| t.state = TokenState::Valid);
    let (s, v) = app
        .post(&a, "/v1/accounts/twitter/1/check", &serde_json::Value::Null)
        .await;
    assert_eq!((s, v["health"].as_str()), (200, Some("healthy")), "{v}");
    let r = deliver(&restarted).await.unwrap();
    assert_eq!((r.emails, r.events), (1, 1));
    let last = smtp.mails().pop().unwrap();
    assert_eq!(last.subject(), "[socialsyncer] acme: 1 account recovered");
    assert!(last.text().contains("healthy again"));
    // Checking again sends nothing more.
    app.post(&a, "/v1/accounts/twitter/1/check", &serde_json::Value::Null)
        .await;
    assert_eq!(deliver(&restarted).await.unwrap().emails, 0);
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
        let r = deliver(&app.state).await.unwrap();
        assert_eq!(
            r,
            DeliveryReport {
                emails: 0,
                events: 0,
                failed: 1
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
    let r = deliver(&app.state).await.unwrap();
    assert_eq!(
        r,
        DeliveryReport {
            emails: 1,
            events: 2,
            failed: 0
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
        socialsyncer::scheduler::sweep(&app.state, &CancellationToken::new())
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
    socialsyncer::scheduler::sweep(&app.state, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(kinds().await, ["expiring_7days"], "no repeat");
    app.stop().await;
}
