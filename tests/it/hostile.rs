//! What a hostile run found (issue 20), each attack run again against the real daemon: forged
//! cursors, cancelled refreshes, and the smaller input checks.

use std::time::Duration;

use serde_json::{Value, json};
use socialsyncer::domain::Platform;
use socialsyncer::simulator::{TokenSpec, Tweaks};

use crate::common::{TestApp, code, spawn_app, spawn_app_cfg};

/// `n` Threads accounts of workspace `name` straight into the store; its key.
async fn workspace_with(app: &TestApp, name: &str, n: usize, first_id: usize) -> String {
    let key = app.key(name).await;
    let ws = app.state.store.workspace_id(name).await.unwrap().unwrap();
    let accounts: Vec<_> = (0..n)
        .map(|i| {
            crate::common::new_account(
                &app.state,
                &app.sim,
                ws,
                Platform::Threads,
                &format!("{}", first_id + i),
                TokenSpec::valid(Platform::Threads, "0"),
            )
            .0
        })
        .collect();
    app.state.store.insert_accounts(&accounts).await.unwrap();
    key
}

#[tokio::test]
async fn forged_cursors_are_refused_and_one_workspace_cannot_evict_anothers_cached_list() {
    use base64::Engine;
    let app = spawn_app_cfg("", |c| c.server.list_cache_bytes = 400_000).await;
    let victim = workspace_with(&app, "victim", 20, 1000).await;
    let attacker = workspace_with(&app, "attacker", 300, 5000).await;

    // The victim's list, cached.
    let (s, _) = app.get(&victim, "/v1/accounts/health").await;
    assert_eq!(s, 200);
    let builds = app.state.api.list_cache.builds();
    app.get(&victim, "/v1/accounts/health").await;
    assert_eq!(app.state.api.list_cache.builds(), builds, "the victim's list is cached");

    // Cursors in the old format (base64url of "a<row id>"), other garbage, and a real cursor
    // of the victim's: each answers 400 invalid_cursor and builds nothing.
    let (_, page) = app.get(&victim, "/v1/accounts/health?limit=5").await;
    let victims_cursor = page["nextCursor"].as_str().unwrap().to_owned();
    assert!(
        !String::from_utf8_lossy(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&victims_cursor)
                .unwrap()
        )
        .contains("100"),
        "a cursor shows no row ID"
    );
    let builds = app.state.api.list_cache.builds();
    for i in 0..300 {
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("a{}", i * 7));
        let (s, b) = app
            .get(&attacker, &format!("/v1/accounts/health?cursor={forged}"))
            .await;
        assert_eq!((s, code(&b)), (400, "invalid_cursor"), "{b}");
    }
    for c in [victims_cursor.as_str(), "x".repeat(4000).as_str(), "%00"] {
        let (s, b) = app.get(&attacker, &format!("/v1/accounts/health?cursor={c}")).await;
        assert_eq!((s, code(&b)), (400, "invalid_cursor"), "{b}");
    }
    assert_eq!(
        app.state.api.list_cache.builds(),
        builds,
        "a refused cursor builds nothing"
    );

    // Real, distinct pages (every limit from 1 to 300): the attacker's share of the cache
    // is a quarter of it, whatever it asks for.
    let attacker_ws = app.state.store.workspace_id("attacker").await.unwrap().unwrap();
    for limit in 1..=300 {
        let (s, _) = app.get(&attacker, &format!("/v1/accounts/health?limit={limit}")).await;
        assert_eq!(s, 200);
        let (total, mine) = app.state.api.list_cache.held_bytes(attacker_ws.0);
        assert!(mine <= 100_000, "the attacker holds {mine} bytes");
        assert!(total <= 400_000, "the cache holds {total} bytes");
    }
    let builds = app.state.api.list_cache.builds();
    let (s, list) = app.get(&victim, "/v1/accounts/health").await;
    assert_eq!(s, 200);
    assert_eq!(list["summary"]["total"], 20);
    assert_eq!(
        app.state.api.list_cache.builds(),
        builds,
        "the victim's cached list survived the attacker's thousand answers"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_account_can_list_at_most_fifty_scopes_of_a_hundred_characters() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let token = app
        .sim
        .issue(Platform::Twitter, TokenSpec::valid(Platform::Twitter, "7"))
        .access_token;
    let body = |scopes: Vec<String>| json!({"platform":"twitter","accountId":"7","username":"a","accessToken":token,"scopes":scopes});
    for scopes in [
        (0..51).map(|i| format!("s{i}")).collect::<Vec<_>>(),
        vec!["s".repeat(101)],
    ] {
        let (s, b) = app.post(&key, "/v1/accounts", &body(scopes)).await;
        assert_eq!((s, code(&b)), (400, "invalid_scopes"), "{b}");
    }
    let (s, b) = app
        .post(
            &key,
            "/v1/accounts",
            &body((0..50).map(|i| format!("{i:0>100}")).collect()),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    app.stop().await;
}

/// A TikTok account whose token is inside its refresh window, and its sealed refresh token.
async fn tiktok_due_for_refresh(app: &TestApp, key: &str, id: &str) -> Vec<u8> {
    app.connect(
        key,
        Platform::Tiktok,
        id,
        TokenSpec {
            expires_in: Some(20 * 60),
            ..TokenSpec::valid(Platform::Tiktok, "0")
        },
    )
    .await;
    let db = app.db().await;
    // Registration refreshed it already: move it back into its window.
    sqlx::query("UPDATE accounts SET token_expires_at = $1 WHERE account_id = $2")
        .bind(socialsyncer::domain::now() + 600)
        .bind(id)
        .execute(&db)
        .await
        .unwrap();
    sealed_refresh_token(app, id).await
}

async fn sealed_refresh_token(app: &TestApp, id: &str) -> Vec<u8> {
    let db = app.db().await;
    sqlx::query_scalar(
        "SELECT c.refresh_token FROM credentials c JOIN accounts a ON a.id = c.account_ref WHERE a.account_id = $1",
    )
    .bind(id)
    .fetch_one(&db)
    .await
    .unwrap()
}

async fn leases_held(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM refresh_leases")
        .fetch_one(&app.db().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_refresh_whose_request_timed_out_still_commits_the_rotated_tokens() {
    // The request times out after 300 ms; the platform rotates at once but its answer
    // takes 1 s to come back.
    let app = spawn_app_cfg("", |c| {
        c.server.request_timeout = socialsyncer::config::HumanDuration(Duration::from_millis(300));
    })
    .await;
    let key = app.key("acme").await;
    let before = tiktok_due_for_refresh(&app, &key, "cancel-me").await;
    let refreshes = app.sim.refreshes(Platform::Tiktok);
    app.sim.set_tweaks(
        Platform::Tiktok,
        Tweaks {
            answer_delay: Some(Duration::from_secs(1)),
            ..Tweaks::default()
        },
    );
    let (s, b) = app
        .post(&key, "/v1/accounts/tiktok/cancel-me/check", &Value::Null)
        .await;
    assert_eq!(
        (s, code(&b)),
        (408, "request_timeout"),
        "a 408 in the API's format: {b}"
    );
    assert_eq!(
        app.sim.refreshes(Platform::Tiktok),
        refreshes + 1,
        "the platform rotated"
    );
    // The refresh goes on without its caller and commits what the platform issued.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sealed_refresh_token(&app, "cancel-me").await == before {
        assert!(
            std::time::Instant::now() < deadline,
            "the rotated tokens were never committed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The lease goes right after the commit.
    while leases_held(&app).await > 0 {
        assert!(std::time::Instant::now() < deadline, "the lease was never released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The committed refresh token is the live one: the next refresh works.
    app.sim.set_tweaks(Platform::Tiktok, Tweaks::default());
    sqlx::query("UPDATE accounts SET token_expires_at = $1 WHERE account_id = 'cancel-me'")
        .bind(socialsyncer::domain::now() + 600)
        .execute(&app.db().await)
        .await
        .unwrap();
    let (s, v) = app
        .post(&key, "/v1/accounts/tiktok/cancel-me/check", &Value::Null)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(app.sim.refreshes(Platform::Tiktok), refreshes + 2);
    assert_eq!(v["health"], "healthy", "{v}");
    app.stop().await;
}

#[tokio::test]
async fn shutdown_waits_for_a_refresh_in_flight_to_commit() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let before = tiktok_due_for_refresh(&app, &key, "stop-me").await;
    app.sim.set_tweaks(
        Platform::Tiktok,
        Tweaks {
            answer_delay: Some(Duration::from_millis(800)),
            ..Tweaks::default()
        },
    );
    let (http, url, k) = (
        app.http.clone(),
        app.url("/v1/accounts/tiktok/stop-me/check"),
        key.clone(),
    );
    // The caller hangs up after 200 ms; the daemon is stopped while the refresh is running.
    let call = tokio::spawn(async move {
        http.post(url)
            .bearer_auth(k)
            .timeout(Duration::from_millis(200))
            .send()
            .await
    });
    assert!(call.await.unwrap().is_err(), "the client gave up");
    let refreshes_in_flight = app.state.tasks.running("refresh");
    assert_eq!(refreshes_in_flight, 1, "the refresh outlived its caller");
    let db_url = app.db_url.clone();
    let _dir = app.stop_keeping_files().await;
    let db = crate::common::any_pool(&db_url).await;
    let after: Vec<u8> = sqlx::query_scalar("SELECT c.refresh_token FROM credentials c JOIN accounts a ON a.id = c.account_ref WHERE a.account_id = 'stop-me'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_ne!(
        after, before,
        "the rotated tokens were committed before the daemon stopped"
    );
    let leases: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM refresh_leases")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(leases, 0);
}

#[tokio::test]
async fn small_input_checks() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    // The authorization scheme is case-insensitive.
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let r = app
            .http
            .get(app.url("/v1/accounts"))
            .header("authorization", format!("{scheme} {key}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    // Numeric account IDs with a leading zero name no account a platform has.
    let token = app
        .sim
        .issue(Platform::Twitter, TokenSpec::valid(Platform::Twitter, "7"))
        .access_token;
    let (s, b) = app
        .post(
            &key,
            "/v1/accounts",
            &json!({"platform":"twitter","accountId":"07","username":"a","accessToken":token}),
        )
        .await;
    assert_eq!((s, code(&b)), (400, "invalid_account_id"), "{b}");
    let (s, b) = app.get(&key, "/v1/accounts/twitter/007").await;
    assert_eq!((s, code(&b)), (400, "invalid_account_id"), "{b}");
    let (s, b) = app
        .post(
            &key,
            "/v1/accounts",
            &json!({"platform":"twitter","accountId":"7","username":"a","accessToken":token}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    // Unknown query parameters are refused, not ignored.
    for path in [
        "/v1/accounts?limt=5",
        "/v1/accounts/health?status=healthy",
        "/v1/accounts/twitter/7/history?count=3",
    ] {
        let (s, b) = app.get(&key, path).await;
        assert_eq!((s, code(&b)), (400, "invalid_query"), "{path}: {b}");
    }
    app.stop().await;
}

/// Registers a revoked X token under `username`: its check raises a needs-reconnect alert.
async fn revoked_named(app: &TestApp, key: &str, id: &str, username: &str) {
    use socialsyncer::simulator::TokenState;
    let issued = app.sim.issue(
        Platform::Twitter,
        TokenSpec {
            state: TokenState::Revoked,
            with_refresh: false,
            expires_in: Some(60 * 86_400),
            ..TokenSpec::valid(Platform::Twitter, id)
        },
    );
    let (s, b) = app
        .post(
            key,
            "/v1/accounts",
            &json!({"platform": "twitter", "accountId": id, "username": username, "accessToken": issued.access_token}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
}

/// What `/problems` says (served on the API listener in tests: `metrics_listen` is empty).
async fn problems(app: &TestApp) -> String {
    let r = app.http.get(app.url("/problems")).send().await.unwrap();
    r.text().await.unwrap()
}

#[tokio::test]
async fn healthz_names_no_workspace_and_the_metrics_listener_has_the_details() {
    let app = crate::common::spawn_api_cfg("", |c| c.schedule.cron = String::new()).await;
    let key = app.key("tenant-by-a-secret-name").await;
    revoked_named(&app, &key, "1", "someone").await;
    socialsyncer::alerts::deliver(&app.state.outbox).await.unwrap();
    let (_, h) = app.get("", "/healthz").await;
    assert_eq!(h["status"], "degraded", "{h}");
    let text = h.to_string();
    assert!(text.contains("1 workspace(s)"), "an aggregate count: {h}");
    assert!(!text.contains("tenant-by-a-secret-name"), "{h}");
    // The details, with the name, are the operator's (the metrics listener; here the API
    // listener, as metrics_listen is empty in tests).
    let problems = problems(&app).await;
    assert!(problems.contains("tenant-by-a-secret-name"), "{problems}");
    app.stop().await;
}

#[tokio::test]
async fn markdown_in_a_username_reaches_teams_and_slack_as_text() {
    let app = crate::common::spawn_api_cfg("", |c| {
        c.schedule.cron = String::new();
        c.notify.allow_insecure_loopback = true;
        c.notify.allow_private_networks = true;
    })
    .await;
    let key = app.key("acme").await;
    let (teams, teams_log) = crate::webhooks::receiver(&[], false).await;
    let (slack, slack_log) = crate::webhooks::receiver(&[], true).await;
    let (s, v) = app
        .put(
            &key,
            "/v1/notifications",
            &json!({"emails": [], "webhooks": [{"url": teams, "format": "teams"}, {"url": slack, "format": "slack"}]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    revoked_named(&app, &key, "1", "[Click me](https://evil.example/login) *urgent*").await;
    socialsyncer::alerts::deliver(&app.state.outbox).await.unwrap();
    let post = |log: &std::sync::Arc<std::sync::Mutex<crate::webhooks::Log>>| -> Value {
        serde_json::from_slice(&log.lock().unwrap().posts[0].1).unwrap()
    };
    let card = post(&teams_log);
    let line = card["attachments"][0]["content"]["body"][1]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        line.contains("\\[Click me\\]\\(https:\u{200B}//evil\\.example/login\\)"),
        "{line}"
    );
    assert!(!line.contains("](") && !line.contains("*urgent*"), "{line}");
    let msg = post(&slack_log);
    let section = &msg["blocks"][1]["text"];
    assert_eq!(section["verbatim"], true, "{msg}");
    assert!(!section["text"].as_str().unwrap().contains("*urgent*"), "{msg}");
    app.stop().await;
}

#[tokio::test]
async fn the_test_route_and_a_workspaces_emails_are_capped_and_new_addresses_confirmed() {
    use crate::smtp::SmtpServer;
    let smtp = SmtpServer::start().await;
    let url = smtp.url();
    let app = crate::common::spawn_api_cfg("", move |c| {
        c.email.smtp_url = Some(url);
        c.schedule.cron = String::new();
        c.notify.max_emails_per_hour = 5;
        c.notify.confirm_addresses = true;
    })
    .await;
    let key = app.key("acme").await;
    let emails: Vec<String> = (0..3).map(|i| format!("victim{i}@example.com")).collect();
    let (s, v) = app.put(&key, "/v1/notifications", &json!({"emails": emails})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["unconfirmed"].as_array().unwrap().len(), 3, "{v}");

    // The test route: once a minute per workspace; unconfirmed addresses get nothing.
    let (s, v) = app.post(&key, "/v1/notifications/test", &json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert!(
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["result"].as_str().unwrap().contains("waits for confirmation")),
        "{v}"
    );
    assert!(smtp.mails().is_empty(), "no test message to an unconfirmed address");
    let r = app
        .http
        .post(app.url("/v1/notifications/test"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "60");

    // A delivery round sends each new address its confirmation code, and nothing else.
    revoked_named(&app, &key, "1", "someone").await;
    socialsyncer::alerts::deliver(&app.state.outbox).await.unwrap();
    let mails = smtp.mails();
    assert_eq!(mails.len(), 3, "{mails:?}");
    assert!(mails.iter().all(|m| m.subject().contains("confirm")), "{mails:?}");
    let code_of = |m: &crate::smtp::Mail| {
        let t = m.text();
        let at = t.find("give them this code: ").unwrap() + "give them this code: ".len();
        t[at..at + 10].to_owned()
    };
    let to0 = mails.iter().find(|m| m.to[0].contains("victim0")).unwrap();
    let (s, b) = app
        .post(
            &key,
            "/v1/notifications/confirm",
            &json!({"email": "victim0@example.com", "code": "WRONGCODE2"}),
        )
        .await;
    assert_eq!((s, code(&b)), (400, "invalid_confirmation"), "{b}");
    let (s, v) = app
        .post(
            &key,
            "/v1/notifications/confirm",
            &json!({"email": "victim0@example.com", "code": code_of(to0)}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["unconfirmed"].as_array().unwrap().len(), 2, "{v}");

    // The confirmed address gets the alert; the budget (5 an hour: 3 codes, 1 alert) then
    // holds the next ones back without dropping them.
    let db = app.db().await;
    let due = || async {
        sqlx::query("UPDATE alert_outbox SET next_attempt_at = 0 WHERE sent_at IS NULL")
            .execute(&db)
            .await
            .unwrap();
    };
    due().await;
    socialsyncer::alerts::deliver(&app.state.outbox).await.unwrap();
    let mails = smtp.mails();
    assert_eq!(mails.len(), 4, "{mails:?}");
    assert!(mails[3].to[0].contains("victim0") && !mails[3].subject().contains("confirm"));
    for id in ["2", "3"] {
        revoked_named(&app, &key, id, "someone").await;
        due().await;
        socialsyncer::alerts::deliver(&app.state.outbox).await.unwrap();
    }
    assert_eq!(smtp.mails().len(), 5, "the fifth email of the hour, then nothing");
    assert!(
        app.state.store.undelivered_alerts().await.unwrap() >= 1,
        "the alerts beyond the budget wait in the outbox"
    );
    let problems = problems(&app).await;
    assert!(problems.contains("max_emails_per_hour"), "{problems}");
    app.stop().await;
}

#[tokio::test]
async fn check_now_keeps_to_its_share_gives_back_a_cancelled_turn_and_registration_is_paced() {
    let app = spawn_app_cfg("", |c| {
        // 4 TikTok calls a second; a quarter of that for checks on request.
        c.platforms.tiktok.rate_limit = Some(4.0);
        c.health.check_now_share = 0.25;
    })
    .await;
    let key = app.key("acme").await;
    let ws = app.state.store.workspace_id("acme").await.unwrap().unwrap();
    let accounts: Vec<_> = (0..12)
        .map(|i| {
            crate::common::new_account(
                &app.state,
                &app.sim,
                ws,
                Platform::Tiktok,
                &format!("tt-{i}"),
                TokenSpec::valid(Platform::Tiktok, "0"),
            )
            .0
        })
        .collect();
    app.state.store.insert_accounts(&accounts).await.unwrap();
    let check = |id: String, timeout: Option<Duration>| {
        let (http, url, key) = (
            app.http.clone(),
            app.url(&format!("/v1/accounts/tiktok/{id}/check")),
            key.clone(),
        );
        async move {
            let mut r = http.post(url).bearer_auth(key);
            if let Some(t) = timeout {
                r = r.timeout(t);
            }
            r.send().await.map(|r| {
                let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
                (r.status().as_u16(), retry)
            })
        }
    };
    // Turns at 0, 1 and 2 s are given; a fourth would be 3 s away: 429, not a queue.
    let calls = app.sim.calls(Platform::Tiktok);
    let first = tokio::spawn(check("tt-0".into(), None));
    let second = tokio::spawn(check("tt-1".into(), None));
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The third's caller gives up while it waits for its turn at 2 s...
    assert!(check("tt-2".into(), Some(Duration::from_millis(300))).await.is_err());
    // ...so the next request gets that turn instead of a 429.
    let third = tokio::spawn(check("tt-3".into(), None));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (s, retry) = check("tt-4".into(), None).await.unwrap();
    assert_eq!(s, 429, "the next turn is more than 2 s away");
    assert!(retry.is_some_and(|r| r.parse::<u64>().unwrap() >= 1));
    assert_eq!(
        third.await.unwrap().unwrap().0,
        200,
        "the cancelled request's turn was given back"
    );
    assert_eq!(first.await.unwrap().unwrap().0, 200);
    assert_eq!(second.await.unwrap().unwrap().0, 200);
    assert_eq!(
        app.sim.calls(Platform::Tiktok) - calls,
        3,
        "three checks reached TikTok"
    );

    // Registrations go through the same gate: a burst of them checks within the share, and
    // the rest stand with their health unknown until the next sweep.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls = app.sim.calls(Platform::Tiktok);
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..8 {
        let issued = app.sim.issue(
            Platform::Tiktok,
            TokenSpec::valid(Platform::Tiktok, &format!("reg-{i}")),
        );
        let (http, url, key) = (app.http.clone(), app.url("/v1/accounts"), key.clone());
        burst.spawn(async move {
            let body = json!({"platform": "tiktok", "accountId": format!("reg-{i}"), "username": "u",
                "accessToken": issued.access_token, "refreshToken": issued.refresh_token});
            let r = http.post(url).bearer_auth(key).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 201);
            r.json::<Value>().await.unwrap()
        });
    }
    let mut unknown = 0;
    while let Some(v) = burst.join_next().await {
        if v.unwrap()["health"] == "unknown" {
            unknown += 1;
        }
    }
    let checked = app.sim.calls(Platform::Tiktok) - calls;
    assert_eq!(checked, 3, "registration checks at 0, 1 and 2 s reached TikTok");
    assert_eq!(unknown, 5, "the other registrations stand unchecked");
    app.stop().await;
}

/// Opens a TCP connection to the app and writes `bytes` (kept open by the caller).
async fn raw(app: &TestApp, bytes: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let addr = app.base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    if !bytes.is_empty() {
        s.write_all(bytes).await.unwrap();
    }
    s
}

#[tokio::test]
async fn connections_that_say_nothing_idle_or_never_read_keep_no_real_request_out() {
    use socialsyncer::config::HumanDuration;
    // Scaled down from the shipped defaults (16,384 in all, 4,096 per address): 120 in all,
    // 100 per address, and timers long enough that nothing times out during the test.
    let app = spawn_app_cfg("", |c| {
        c.server.max_connections = 120;
        c.server.max_connections_per_address = 100;
        c.server.header_timeout = HumanDuration(Duration::from_secs(60));
        c.server.write_timeout = HumanDuration(Duration::from_secs(60));
    })
    .await;
    let mut held = Vec::new();
    // Connections that send nothing, half a request line, or an HTTP/2 preface (served
    // HTTP/1 only: refused), and connections that pipeline requests and never read.
    for _ in 0..150 {
        held.push(raw(&app, b"").await);
    }
    for _ in 0..50 {
        held.push(raw(&app, b"GET /healthz HT").await);
    }
    for _ in 0..20 {
        held.push(raw(&app, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await);
    }
    let pipelined = b"GET /v1/openapi.json HTTP/1.1\r\nhost: x\r\n\r\n".repeat(2_000);
    for _ in 0..20 {
        held.push(raw(&app, &pipelined).await);
    }
    // A real client from the same address is answered.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for _ in 0..5 {
        let r = client.get(app.url("/healthz")).send().await;
        assert!(
            r.as_ref().is_ok_and(|r| r.status() == 200),
            "a real request was kept out: {r:?}"
        );
    }
    // HTTP/2 is not served unless configured.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let r = h2.get(app.url("/healthz")).send().await;
    assert!(r.is_err(), "{:?}", r.map(|r| r.version()));
    drop(held);
    app.stop().await;
}

#[tokio::test]
async fn a_client_that_never_reads_its_answer_is_cut_off_after_the_write_timeout() {
    use socialsyncer::config::HumanDuration;
    use tokio::io::AsyncReadExt;
    let app = spawn_app_cfg("", |c| {
        c.server.write_timeout = HumanDuration(Duration::from_millis(500));
        c.server.header_timeout = HumanDuration(Duration::from_secs(60));
    })
    .await;
    // Enough pipelined requests that the answers fill the socket buffers.
    let pipelined = b"GET /v1/openapi.json HTTP/1.1\r\nhost: x\r\n\r\n".repeat(3_000);
    let mut s = raw(&app, &pipelined).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The server gave up on it: after what the buffers held, the stream ends.
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection was still open");
    let one = app
        .http
        .get(app.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .len();
    assert!(got < one * 3_000, "it was cut off ({got} of {} bytes)", one * 3_000);
    app.stop().await;
}

#[tokio::test]
async fn requests_without_a_valid_key_are_limited_per_client_address() {
    let app = spawn_app_cfg("", |c| c.server.address_rate_limit = 2.0).await;
    let key = app.key("acme").await;
    // A burst of twice the rate, then 429 with Retry-After: guessing keys...
    let mut statuses = Vec::new();
    for i in 0..8 {
        let (s, _) = app.get(&format!("sk_{:0>48}", i), "/v1/accounts").await;
        statuses.push(s);
    }
    assert_eq!(&statuses[..4], &[401; 4], "{statuses:?}");
    assert!(statuses[4..].iter().all(|s| *s == 429), "{statuses:?}");
    // ...and the routes that need no key share the address's bucket.
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(code(&body), "rate_limited");
    // A valid key is limited by its own bucket, not the address's.
    for _ in 0..10 {
        let (s, _) = app.get(&key, "/v1/accounts").await;
        assert_eq!(s, 200);
    }
    app.stop().await;
}

/// A receiver that takes every request and never answers; how many it took.
async fn silent_receiver() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::future::pending::<()>()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

#[tokio::test]
async fn one_workspaces_slow_receivers_do_not_hold_up_anothers_alerts() {
    let app = crate::common::spawn_api_cfg("", |c| {
        c.schedule.cron = String::new();
        c.notify.allow_insecure_loopback = true;
        c.notify.allow_private_networks = true;
    })
    .await;
    let slow_key = app.key("slow").await;
    let fast_key = app.key("fast").await;
    // Ten receivers that never answer, and one JSON receiver of 30 events.
    let mut silent = Vec::new();
    for _ in 0..10 {
        silent.push(silent_receiver().await);
    }
    let hooks: Vec<Value> = silent.iter().map(|(u, _)| json!({"url": u})).collect();
    let (s, v) = app
        .put(
            &slow_key,
            "/v1/notifications",
            &json!({"emails": [], "webhooks": hooks}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (fast, fast_log) = crate::webhooks::receiver(&[], false).await;
    let (s, v) = app
        .put(
            &fast_key,
            "/v1/notifications",
            &json!({"emails": [], "webhooks": [{"url": fast}]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    revoked_named(&app, &slow_key, "1", "slow").await;
    for i in 0..30 {
        revoked_named(&app, &fast_key, &format!("{}", 100 + i), "fast").await;
    }
    let r = socialsyncer::alerts::deliver(&app.state.outbox).await.unwrap();
    // The round ended at the slow workspace's budget; the other workspace's receiver got its
    // events meanwhile, a JSON receiver at most 20 requests a round.
    let posts = fast_log.lock().unwrap().posts.len();
    assert_eq!(posts, socialsyncer::alerts::channel::POSTS_PER_ROUND, "{r:?}");
    assert_eq!(r.webhooks, posts);
    for (_, seen) in &silent {
        assert_eq!(
            seen.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "every slow receiver was tried at once, side by side"
        );
    }
    // The slow workspace's event waits for the next round; the fast one's last 10 go then.
    let db = app.db().await;
    sqlx::query("UPDATE alert_outbox SET next_attempt_at = 0 WHERE sent_at IS NULL")
        .execute(&db)
        .await
        .unwrap();
    let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM alert_outbox WHERE sent_at IS NULL")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(pending, 11);
    let r = socialsyncer::alerts::deliver(&app.state.outbox).await.unwrap();
    assert!(r.webhooks >= 10, "{r:?}");
    assert_eq!(fast_log.lock().unwrap().posts.len(), 30);
    app.stop().await;
}

#[tokio::test]
async fn a_registration_that_a_delete_overtakes_answers_409() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    // The registration's first check waits 600 ms for the platform; the DELETE lands then.
    app.sim.set_latency(Platform::Threads, Duration::from_millis(600));
    let token = app
        .sim
        .issue(Platform::Threads, TokenSpec::valid(Platform::Threads, "42"))
        .access_token;
    let (http, url, k) = (app.http.clone(), app.url("/v1/accounts"), key.clone());
    let register = tokio::spawn(async move {
        let body = json!({"platform": "threads", "accountId": "42", "username": "u", "accessToken": token});
        let r = http.post(url).bearer_auth(k).json(&body).send().await.unwrap();
        crate::common::into_parts(r).await
    });
    // The DELETE goes once Threads has the registration's first check (and holds its answer).
    while app.sim.calls(Platform::Threads) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (s, v) = app.delete(&key, "/v1/accounts/threads/42").await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = register.await.unwrap();
    assert_eq!((s, code(&v)), (409, "account_deleted"), "{v}");
    app.stop().await;
}

#[tokio::test]
async fn a_refresh_lease_whose_holder_died_expires_and_a_replacement_without_a_refresh_token_keeps_the_stored_one() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let before = tiktok_due_for_refresh(&app, &key, "held").await;
    let account_ref: socialsyncer::domain::AccountRef =
        sqlx::query_scalar("SELECT id FROM accounts WHERE account_id = 'held'")
            .fetch_one(&app.db().await)
            .await
            .unwrap();
    // A holder that took the lease for 1 s and died: nobody else gets it until it expires
    // (on the database's clock, whole seconds), then the next one does.
    assert!(app.state.store.try_refresh_lease(account_ref, "dead", 1).await.unwrap());
    assert!(
        !app.state
            .store
            .try_refresh_lease(account_ref, "next", 60)
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert!(
        app.state
            .store
            .try_refresh_lease(account_ref, "next", 60)
            .await
            .unwrap()
    );
    app.state
        .store
        .release_refresh_lease(account_ref, "next")
        .await
        .unwrap();
    // A replacement without a refresh token (a platform that did not rotate it) keeps the
    // stored refresh token.
    let a = app.state.store.account_by_ref(account_ref).await.unwrap().unwrap();
    crate::common::replace_access_token(&app.state, &a, "act.new", socialsyncer::domain::now() + 86_400).await;
    assert_eq!(
        sealed_refresh_token(&app, "held").await,
        before,
        "the stored refresh token stays"
    );
    app.stop().await;
}
