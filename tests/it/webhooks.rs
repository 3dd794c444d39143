//! Webhook receivers started inside the tests: signatures, retries, 410, isolation between
//! receivers, Slack's documented fields, URL rules and the test message.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use socialsyncer::alerts::deliver;
use socialsyncer::domain::Platform;
use socialsyncer::simulator::{TokenSpec, TokenState};

use crate::common::{TestApp, code, spawn_api_cfg, spawn_app_cfg};

/// What a receiver got, and the statuses it answers in turn (then 200).
#[derive(Default)]
pub(crate) struct Log {
    pub(crate) posts: Vec<(HeaderMap, Vec<u8>)>,
    script: Vec<u16>,
}

/// A receiver on 127.0.0.1: its URL and what it got. With `slack`, it answers 400 to a body
/// that breaks Slack's documented rules for incoming webhooks, as Slack does.
pub(crate) async fn receiver(script: &[u16], slack: bool) -> (String, Arc<Mutex<Log>>) {
    let log = Arc::new(Mutex::new(Log {
        posts: Vec::new(),
        script: script.iter().rev().copied().collect(),
    }));
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                move |State(log): State<Arc<Mutex<Log>>>, headers: HeaderMap, body: axum::body::Bytes| async move {
                    let mut l = log.lock().unwrap();
                    if slack && let Err(e) = slack_valid(&body) {
                        return (StatusCode::BAD_REQUEST, e);
                    }
                    l.posts.push((headers, body.to_vec()));
                    let status = l.script.pop().unwrap_or(200);
                    (StatusCode::from_u16(status).unwrap(), String::new())
                },
            ),
        )
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, log)
}

/// Slack's incoming-webhook rules (api.slack.com/messaging/webhooks, Block Kit reference):
/// a `text` fallback, at most 50 blocks, header text plain_text up to 150 characters,
/// section text up to 3,000, context elements, known block types.
fn slack_valid(body: &[u8]) -> Result<(), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid_payload: {e}"))?;
    let text = v["text"].as_str().ok_or("no_text")?;
    if text.is_empty() {
        return Err("no_text".into());
    }
    let blocks = v["blocks"].as_array().ok_or("invalid_blocks")?;
    if blocks.len() > 50 {
        return Err("invalid_blocks: more than 50".into());
    }
    for b in blocks {
        match b["type"].as_str() {
            Some("header") => {
                let t = &b["text"];
                if t["type"] != "plain_text" || t["text"].as_str().is_none_or(|s| s.chars().count() > 150) {
                    return Err(format!("invalid_blocks: header {b}"));
                }
            }
            Some("section") => {
                let t = &b["text"];
                if !matches!(t["type"].as_str(), Some("mrkdwn" | "plain_text"))
                    || t["text"]
                        .as_str()
                        .is_none_or(|s| s.is_empty() || s.chars().count() > 3000)
                {
                    return Err(format!("invalid_blocks: section {b}"));
                }
            }
            Some("context") => {
                let e = b["elements"].as_array().ok_or("invalid_blocks: context")?;
                if e.is_empty() || e.len() > 10 {
                    return Err("invalid_blocks: context elements".into());
                }
            }
            Some("divider") => {}
            other => return Err(format!("invalid_blocks: type {other:?}")),
        }
    }
    Ok(())
}

async fn app() -> TestApp {
    spawn_api_cfg("", |c| {
        // Workspaces' receivers on loopback: the operator lets them reach it.
        c.notify.allow_insecure_loopback = true;
        c.notify.allow_private_networks = true;
        c.schedule.cron = String::new();
    })
    .await
}

/// Sets the workspace's webhooks; returns the answer.
async fn set_hooks(app: &TestApp, key: &str, hooks: Value) -> (u16, Value) {
    app.put(key, "/v1/notifications", &json!({"emails": [], "webhooks": hooks}))
        .await
}

/// Registers an account whose token is revoked: one `account.needs_reconnect` event.
pub(crate) async fn revoked(app: &TestApp, key: &str, id: &str) {
    app.connect(
        key,
        Platform::Twitter,
        id,
        TokenSpec {
            state: TokenState::Revoked,
            with_refresh: false,
            expires_in: Some(60 * 86_400),
            ..TokenSpec::valid(Platform::Twitter, id)
        },
    )
    .await;
}

/// Makes every pending event due now (skips the retry backoff).
async fn due_now(app: &TestApp) {
    sqlx::query("UPDATE alert_outbox SET next_attempt_at = 0 WHERE sent_at IS NULL")
        .execute(&app.db().await)
        .await
        .unwrap();
}

/// Verifies a signature as the README says a receiver at `url` does.
fn verify(secret: &str, url: &str, header: &str, body: &[u8]) -> bool {
    use hmac::Mac;
    let (t, v2) = header.split_once(",v2=").unwrap();
    let t = t.strip_prefix("t=").unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{url}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&hex::decode(v2).unwrap()).is_ok()
}

#[tokio::test]
async fn json_events_are_signed_with_the_secret_shown_once() {
    let app = app().await;
    let key = app.key("acme").await;
    let (url, log) = receiver(&[], false).await;
    let (s, v) = set_hooks(&app, &key, json!([{"url": url}])).await;
    assert_eq!(s, 200, "{v}");
    let secret = v["webhooks"][0]["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{v}");
    let (_, shown) = app.get(&key, "/v1/notifications").await;
    assert!(
        shown["webhooks"][0].get("secret").is_none(),
        "never shown again: {shown}"
    );
    assert_eq!(shown["webhooks"][0]["format"], "json");

    revoked(&app, &key, "1").await;
    let r = deliver(&app.state.outbox).await.unwrap();
    assert_eq!((r.webhooks, r.events), (1, 1), "{r:?}");
    let posts = std::mem::take(&mut log.lock().unwrap().posts);
    assert_eq!(posts.len(), 1);
    let (headers, body) = &posts[0];
    let sig = headers["socialsyncer-signature"].to_str().unwrap();
    assert!(verify(&secret, &url, sig, body), "verifies with the secret");
    assert!(!verify("whsec_another", &url, sig, body), "fails with another");
    assert!(
        !verify(&secret, "https://another.example/hook", sig, body),
        "fails at another receiver with the same secret"
    );
    let t: i64 = sig[2..sig.find(',').unwrap()].parse().unwrap();
    assert!((socialsyncer::domain::now() - t).abs() < 60);
    let e: Value = serde_json::from_slice(body).unwrap();
    // The shape the OpenAPI document describes, field for field.
    let documented: socialsyncer::api::notifications::WebhookEvent = serde_json::from_slice(body).unwrap();
    assert_eq!(documented.event_type, "account.needs_reconnect");
    assert_eq!(e["type"], "account.needs_reconnect", "{e}");
    assert_eq!(e["account"]["platform"], "twitter", "{e}");
    assert_eq!(e["account"]["accountId"], "1", "{e}");
    assert!(e["account"]["username"].is_string(), "{e}");
    assert_eq!(e["workspace"], "acme");
    assert_eq!(e["health"], "unhealthy");
    assert!(e["id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(e["recommendations"].as_array().is_some_and(|r| !r.is_empty()));
    assert!(e["occurredAt"].as_str().unwrap().ends_with('Z'));

    // Nothing is sent twice.
    due_now(&app).await;
    deliver(&app.state.outbox).await.unwrap();
    assert!(log.lock().unwrap().posts.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_receiver_that_fails_three_times_gets_each_event_exactly_once_and_another_is_not_held_up() {
    let app = app().await;
    let key = app.key("acme").await;
    let (down, down_log) = receiver(&[500, 503, 429], false).await;
    let (up, up_log) = receiver(&[], false).await;
    let (s, v) = set_hooks(&app, &key, json!([{"url": down}, {"url": up}])).await;
    assert_eq!(s, 200, "{v}");
    revoked(&app, &key, "1").await;
    revoked(&app, &key, "2").await;

    let r = deliver(&app.state.outbox).await.unwrap();
    assert_eq!(
        up_log.lock().unwrap().posts.len(),
        2,
        "the healthy receiver has both at once"
    );
    assert_eq!(r.webhook_failures, 1, "{r:?}");
    assert_eq!(r.events, 0, "not done while a receiver misses them");
    for _ in 0..3 {
        due_now(&app).await;
        deliver(&app.state.outbox).await.unwrap();
    }
    let got: Vec<String> = down_log
        .lock()
        .unwrap()
        .posts
        .iter()
        .map(|(_, b)| {
            serde_json::from_slice::<Value>(b).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    // Three failed attempts at the first event, then both once each.
    assert_eq!(got.len(), 5, "{got:?}");
    assert_eq!(got[3..].iter().collect::<std::collections::HashSet<_>>().len(), 2);
    assert_eq!(
        up_log.lock().unwrap().posts.len(),
        2,
        "the healthy one got nothing twice"
    );
    let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM alert_outbox WHERE sent_at IS NULL")
        .fetch_one(&app.db().await)
        .await
        .unwrap();
    assert_eq!(pending, 0, "every event is done");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("socialsyncer_notification_failures_total{channel=\"json\"} 3"),
        "{metrics}"
    );

    // A restart (a new state on the same database and key) sends nobody anything again.
    let mut config = socialsyncer::config::Config::from_toml(&app.sim.config_toml(app.dir.path()).unwrap()).unwrap();
    app.same_database(&mut config);
    config.notify.allow_insecure_loopback = true;
    config.notify.allow_private_networks = true;
    let restarted = socialsyncer::app::AppState::build(config).await.unwrap();
    sqlx::query("UPDATE alert_outbox SET sent_at = NULL, next_attempt_at = 0")
        .execute(&app.db().await)
        .await
        .unwrap();
    let r = deliver(&restarted.outbox).await.unwrap();
    assert_eq!((r.webhooks, r.webhook_failures), (0, 0), "{r:?}");
    assert_eq!(down_log.lock().unwrap().posts.len(), 5);
    assert_eq!(up_log.lock().unwrap().posts.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn a_receiver_that_answers_410_is_disabled_and_says_so() {
    let app = app().await;
    let key = app.key("acme").await;
    let (gone, log) = receiver(&[410], false).await;
    set_hooks(&app, &key, json!([{"url": gone}])).await;
    revoked(&app, &key, "1").await;
    deliver(&app.state.outbox).await.unwrap();
    assert_eq!(log.lock().unwrap().posts.len(), 1);
    let (_, v) = app.get(&key, "/v1/notifications").await;
    assert_eq!(v["webhooks"][0]["disabled"], true, "{v}");
    assert!(v["webhooks"][0]["status"].as_str().unwrap().contains("410"), "{v}");
    let (_, health) = app.get("", "/healthz").await;
    assert!(health["problems"].to_string().contains("disabled"), "{health}");
    // Disabled: nothing more is sent to it. With no other receiver the events wait (as
    // with no recipient at all), and go out once it is set again, which enables it.
    revoked(&app, &key, "2").await;
    due_now(&app).await;
    deliver(&app.state.outbox).await.unwrap();
    assert_eq!(log.lock().unwrap().posts.len(), 1);
    set_hooks(&app, &key, json!([{"url": gone}])).await;
    let (_, v) = app.get(&key, "/v1/notifications").await;
    assert!(v["webhooks"][0].get("disabled").is_none(), "{v}");
    due_now(&app).await;
    let r = deliver(&app.state.outbox).await.unwrap();
    assert_eq!((r.webhooks, r.events), (2, 2), "{r:?}");
    let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM alert_outbox WHERE sent_at IS NULL")
        .fetch_one(&app.db().await)
        .await
        .unwrap();
    assert_eq!(pending, 0);
    app.stop().await;
}

#[tokio::test]
async fn slack_discord_and_teams_get_one_message_a_round_in_their_shapes() {
    let app = app().await;
    let key = app.key("acme").await;
    let (slack, slack_log) = receiver(&[], true).await;
    let (discord, discord_log) = receiver(&[], false).await;
    let (teams, teams_log) = receiver(&[], false).await;
    let (s, v) = set_hooks(
        &app,
        &key,
        json!([
            {"url": slack, "format": "slack"},
            {"url": discord, "format": "discord"},
            {"url": teams, "format": "teams", "events": ["account.recovered"]},
        ]),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    revoked(&app, &key, "1").await;
    revoked(&app, &key, "2").await;
    let r = deliver(&app.state.outbox).await.unwrap();
    assert_eq!(r.webhook_failures, 0, "the Slack receiver accepted the body: {r:?}");
    let posts = std::mem::take(&mut slack_log.lock().unwrap().posts);
    assert_eq!(posts.len(), 1, "one message for the round");
    let m: Value = serde_json::from_slice(&posts[0].1).unwrap();
    assert!(m["text"].as_str().unwrap().contains("acme"), "{m}");
    assert_eq!(
        m["blocks"].as_array().unwrap().len(),
        4,
        "header, two accounts, context: {m}"
    );
    let d: Value = serde_json::from_slice(&discord_log.lock().unwrap().posts[0].1).unwrap();
    assert_eq!(d["embeds"].as_array().unwrap().len(), 2, "{d}");
    assert!(d["content"].as_str().unwrap().contains("acme"));
    assert!(
        teams_log.lock().unwrap().posts.is_empty(),
        "teams wants recoveries only"
    );
    assert_eq!(r.events, 2, "events a receiver does not want are not held for it");
    app.stop().await;
}

/// The shape Microsoft documents for a Workflows webhook ("Create incoming webhooks with
/// Workflows for Microsoft Teams", learn.microsoft.com): a `message` whose one attachment is
/// an Adaptive Card (`application/vnd.microsoft.card.adaptive`); Teams renders card versions
/// up to 1.5 ("Cards reference", Adaptive Card support in Teams).
#[tokio::test]
async fn a_teams_receiver_gets_one_adaptive_card_in_the_workflows_shape() {
    let app = app().await;
    let key = app.key("acme").await;
    let (teams, teams_log) = receiver(&[], false).await;
    let (s, v) = set_hooks(&app, &key, json!([{"url": teams, "format": "teams"}])).await;
    assert_eq!(s, 200, "{v}");
    revoked(&app, &key, "1").await;
    revoked(&app, &key, "2").await;
    let r = deliver(&app.state.outbox).await.unwrap();
    assert_eq!((r.webhooks, r.webhook_failures), (1, 0), "{r:?}");
    let posts = std::mem::take(&mut teams_log.lock().unwrap().posts);
    assert_eq!(posts.len(), 1, "one card for the round");
    let m: Value = serde_json::from_slice(&posts[0].1).unwrap();
    assert_eq!(m["type"], "message", "{m}");
    let attachments = m["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 1, "{m}");
    assert_eq!(attachments[0]["contentType"], "application/vnd.microsoft.card.adaptive");
    let card = &attachments[0]["content"];
    assert_eq!(card["type"], "AdaptiveCard", "{card}");
    assert_eq!(card["$schema"], "http://adaptivecards.io/schemas/adaptive-card.json");
    let version: f64 = card["version"].as_str().unwrap().parse().unwrap();
    assert!((1.0..=1.5).contains(&version), "a version Teams renders: {version}");
    let body = card["body"].as_array().unwrap();
    assert_eq!(body.len(), 4, "a title, one line per account, a footer: {card}");
    assert!(
        body.iter().all(|b| b["type"] == "TextBlock" && b["wrap"] == true),
        "{card}"
    );
    assert_eq!(body[0]["weight"], "Bolder");
    assert!(body[0]["text"].as_str().unwrap().contains("acme"), "{card}");
    for (n, id) in [(1, "1"), (2, "2")] {
        assert!(body[n]["text"].as_str().unwrap().contains(id), "{card}");
    }
    assert_eq!(body[3]["isSubtle"], true);
    app.stop().await;
}

#[tokio::test]
async fn webhook_urls_are_checked_when_set() {
    let app = spawn_api_cfg("", |c| c.schedule.cron = String::new()).await;
    let key = app.key("acme").await;
    for (url, why) in [
        ("http://hooks.example.com/x", "https://"),
        ("http://127.0.0.1:9/x", "https://"),
        ("https://10.0.0.5/x", "this address is not allowed"),
        ("https://[::1]/x", "this address is not allowed"),
        ("https://169.254.169.254/latest", "this address is not allowed"),
        // IPv4 addresses inside IPv6 ones: NAT64, 6to4, IPv4-compatible; and Teredo,
        // site-local, the discard prefix and 192.0.0.0/24.
        ("https://[64:ff9b::a9fe:a9fe]/x", "this address is not allowed"),
        ("https://[64:ff9b:1::7f00:1]/x", "this address is not allowed"),
        ("https://[2002:a00:1::1]/x", "this address is not allowed"),
        ("https://[::a00:5]/x", "this address is not allowed"),
        ("https://[2001:0:4136:e378::1]/x", "this address is not allowed"),
        ("https://[fec0::1]/x", "this address is not allowed"),
        ("https://[100::1]/x", "this address is not allowed"),
        ("https://192.0.0.8/x", "this address is not allowed"),
        ("https://192.88.99.1/x", "this address is not allowed"),
        ("ftp://example.com/x", "scheme"),
        ("https://user:pw@example.com/x", "password"),
        ("not a url", "not a URL"),
    ] {
        let (s, v) = set_hooks(&app, &key, json!([{"url": url}])).await;
        assert_eq!((s, code(&v)), (400, "invalid_webhook"), "{url}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(why), "{url}: {v}");
    }
    let (s, v) = set_hooks(
        &app,
        &key,
        json!([{"url": "https://hooks.example.com/x", "format": "telex"}]),
    )
    .await;
    assert_eq!((s, code(&v)), (400, "invalid_webhook"), "{v}");
    let (s, v) = set_hooks(
        &app,
        &key,
        json!([{"url": "https://hooks.example.com/x", "events": ["sometimes"]}]),
    )
    .await;
    assert_eq!((s, code(&v)), (400, "invalid_webhook"), "{v}");
    // Secrets of less than 32 random bytes are refused.
    for weak in [
        "short",
        "a-caller-chosen-secret",
        &"ab".repeat(60),
        "0123456789abcdef0123456789abcdef",
    ] {
        let (s, v) = set_hooks(
            &app,
            &key,
            json!([{"url": "https://hooks.example.com/x", "secret": weak}]),
        )
        .await;
        assert_eq!((s, code(&v)), (400, "invalid_webhook"), "{weak}: {v}");
    }
    // A secret given by the caller is used; a body with emails only keeps the webhooks.
    let (s, v) = set_hooks(
        &app,
        &key,
        json!([{"url": "https://hooks.example.com/x", "secret": "caller-chosen-9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a"}]),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["webhooks"][0]["secret"],
        "caller-chosen-9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a"
    );
    let (s, v) = app
        .put(&key, "/v1/notifications", &json!({"emails": ["ops@acme.example"]}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["webhooks"].as_array().unwrap().len(), 1, "{v}");
    app.stop().await;
}

#[tokio::test]
async fn allow_insecure_loopback_is_the_operators_alone() {
    let app = spawn_api_cfg("", |c| c.notify.allow_insecure_loopback = true).await;
    let key = app.key("acme").await;
    for url in ["http://127.0.0.1:9/x", "https://127.0.0.1:9/x", "https://localhost:9/x"] {
        let (s, v) = set_hooks(&app, &key, json!([{"url": url}])).await;
        assert_eq!((s, code(&v)), (400, "invalid_webhook"), "{url}: {v}");
    }
    // A name that resolves to loopback is refused at send time for a workspace, with the
    // same answer as a name that does not resolve at all.
    let notify = socialsyncer::config::NotifyConfig {
        allow_insecure_loopback: true,
        ..Default::default()
    };
    use socialsyncer::alerts::webhook::{Format, Owner, Receiver, Sent, client, post};
    let tenant = client(&notify, Owner::Tenant);
    for host in ["localhost", "no-such-name.invalid"] {
        let r = Receiver {
            key: "webhook:1".into(),
            url: format!("https://{host}:1/x").parse().unwrap(),
            format: Format::Json,
            events: None,
            secret: None,
        };
        match post(&tenant, &r, b"{}", 0).await {
            Sent::Retry(why) => assert!(why.contains("this address is not allowed"), "{host}: {why}"),
            other => panic!("{other:?}"),
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn a_host_name_that_resolves_to_a_private_address_is_refused_when_sending() {
    let notify = socialsyncer::config::NotifyConfig::default();
    let client = socialsyncer::alerts::webhook::client(&notify, socialsyncer::alerts::webhook::Owner::Operator);
    let r = socialsyncer::alerts::webhook::Receiver {
        key: "hook:test".into(),
        url: "https://localhost:1/x".parse().unwrap(),
        format: socialsyncer::alerts::webhook::Format::Json,
        events: None,
        secret: None,
    };
    let sent = socialsyncer::alerts::webhook::post(&client, &r, b"{}", 0).await;
    match sent {
        socialsyncer::alerts::webhook::Sent::Retry(why) => assert!(why.contains("not allowed"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_test_message_reaches_every_receiver_and_says_what_each_answered() {
    let app = app().await;
    let key = app.key("acme").await;
    let (ok, ok_log) = receiver(&[], false).await;
    let (bad, _) = receiver(&[503], false).await;
    set_hooks(&app, &key, json!([{"url": ok}, {"url": bad, "format": "slack"}])).await;
    let (s, v) = app.post(&key, "/v1/notifications/test", &json!({})).await;
    assert_eq!(s, 200, "{v}");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{v}");
    assert!(results[0]["result"].as_str().unwrap().starts_with("delivered"), "{v}");
    assert!(results[1]["result"].as_str().unwrap().contains("503"), "{v}");
    assert!(
        !v.to_string().contains("/hook"),
        "receivers are shown without their path: {v}"
    );
    let body = ok_log.lock().unwrap().posts[0].1.clone();
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["type"], "test");
    app.stop().await;
}

#[tokio::test]
async fn the_whole_daemon_sweeps_on_its_cron_delivers_by_webhook_and_stops_from_outside() {
    let app = spawn_app_cfg("", |c| {
        c.notify.allow_insecure_loopback = true;
        c.notify.allow_private_networks = true;
        c.schedule.cron = "* * * * * *".into();
    })
    .await;
    let key = app.key("acme").await;
    let (url, log) = receiver(&[], false).await;
    set_hooks(&app, &key, json!([{"url": url}])).await;
    // A healthy account, then its token is revoked at the platform: only a sweep can see it.
    let (issued, v) = app
        .connect(&key, Platform::Twitter, "7", TokenSpec::valid(Platform::Twitter, "7"))
        .await;
    assert_eq!(v["health"], "healthy", "{v}");
    app.sim.update(&issued.access_token, |t| t.state = TokenState::Revoked);
    crate::common::make_due(&app.db().await, None).await;
    // The daemon's own cron sweeps, and its delivery loop posts the event.
    let mut got = Vec::new();
    for _ in 0..100 {
        got = log.lock().unwrap().posts.iter().map(|(_, b)| b.clone()).collect();
        if !got.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(got.len(), 1, "one event, posted by the running daemon");
    let e: Value = serde_json::from_slice(&got[0]).unwrap();
    assert_eq!(e["type"], "account.needs_reconnect", "{e}");
    // Stopped from outside: run_until returns Ok once everything has stopped.
    app.stop().await;
}
