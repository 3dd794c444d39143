//! Custody of the grant (issue 22): who refreshes, tokens handed out and pushed in, key
//! scopes, superseded refresh tokens and the audit trail, through the real HTTP path against
//! the simulator (whose TikTok and X refresh tokens are single-use, as documented: "the
//! previous refresh token stops working once a new one is issued", TikTok "Refresh an access
//! token").

use std::time::Duration;

use serde_json::{Value, json};
use socialsyncer::domain::{self, KeyScope, Platform};
use socialsyncer::simulator::TokenSpec;

use crate::common::{TestApp, code, make_due, spawn_app_cfg};

async fn app() -> TestApp {
    spawn_app_cfg("", |c| c.schedule.cron = String::new()).await
}

async fn kinds(app: &TestApp) -> Vec<String> {
    let rows: Vec<(String,)> = sqlx::query_as("SELECT kind FROM alert_outbox ORDER BY id")
        .fetch_all(&app.db().await)
        .await
        .unwrap();
    rows.into_iter().map(|(k,)| k).collect()
}

/// Registers a TikTok account (with a refresh token) in `custody`.
async fn tiktok(app: &TestApp, key: &str, id: &str, custody: &str) -> socialsyncer::simulator::Issued {
    let i = app.sim.issue(Platform::Tiktok, TokenSpec::valid(Platform::Tiktok, id));
    let body = json!({"platform": "tiktok", "accountId": id, "username": "u", "accessToken": i.access_token,
        "refreshToken": i.refresh_token, "expiresAt": domain::rfc3339(domain::now() + 20 * 3600),
        "scopes": crate::common::documented_scopes(Platform::Tiktok), "custody": custody});
    let (s, v) = app.post(key, "/v1/accounts", &body).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["custody"], custody);
    i
}

async fn set_expiry(app: &TestApp, id: &str, at: i64) {
    sqlx::query("UPDATE accounts SET token_expires_at = $1 WHERE account_id = $2")
        .bind(at)
        .bind(id)
        .execute(&app.db().await)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_readers_on_two_daemons_cause_one_refresh_and_get_the_same_new_token() {
    let app = app().await;
    let key = app.key("acme").await;
    let issued = tiktok(&app, &key, "tt1", "socialsyncer").await;
    // About to expire: within tokens.min_validity (5 minutes).
    set_expiry(&app, "tt1", domain::now() + 60).await;
    // A second daemon on the same database, serving HTTP too.
    let other = socialsyncer::app::AppState::build((*app.state.config()).clone())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other_url = format!("http://{}", listener.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(socialsyncer::server::serve_http(listener, other, stop.clone()));
    let before = app.sim.token_calls(Platform::Tiktok);
    // The platform takes its time, so that the readers overlap.
    app.sim.set_latency(Platform::Tiktok, Duration::from_millis(200));
    let mut readers = tokio::task::JoinSet::new();
    for n in 0..50 {
        let base = if n % 2 == 0 { app.url("") } else { other_url.clone() };
        let (http, key) = (app.http.clone(), key.clone());
        readers.spawn(async move {
            let r = http
                .get(format!("{base}/v1/accounts/tiktok/tt1/token"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            let cache = r.headers().get("cache-control").cloned();
            let (s, v) = crate::common::into_parts(r).await;
            (s, v, cache)
        });
    }
    let mut tokens = std::collections::BTreeSet::new();
    while let Some(r) = readers.join_next().await {
        let (s, v, cache) = r.unwrap();
        assert_eq!(s, 200, "{v}");
        assert_eq!(cache.unwrap(), "no-store");
        assert_eq!(v["tokenType"], "Bearer");
        tokens.insert(v["accessToken"].as_str().unwrap().to_owned());
    }
    // Every call to TikTok's token endpoint is counted, refused ones too.
    assert_eq!(
        app.sim.token_calls(Platform::Tiktok) - before,
        1,
        "exactly one refresh reached the platform"
    );
    assert_eq!(tokens.len(), 1, "every reader got the same token: {tokens:?}");
    assert_eq!(
        app.sim.refresh_token_uses(issued.refresh_token.as_deref().unwrap()),
        1,
        "the single-use refresh token was presented once"
    );
    let new = tokens.into_iter().next().unwrap();
    assert_ne!(new, issued.access_token, "the refreshed token");
    assert!(app.sim.token(&new).is_some(), "a token TikTok issued");
    // No token in the audit trail, but every read in it.
    let (s, audit) = app.get(&key, "/v1/audit?limit=1000").await;
    assert_eq!(s, 200, "{audit}");
    let reads = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "token.read" && e["result"] == "ok")
        .count();
    assert_eq!(reads, 50);
    assert!(!audit.to_string().contains(&new));
    stop.cancel();
    let _ = server.await;
    app.stop().await;
}

#[tokio::test]
async fn in_product_custody_a_week_of_sweeps_never_calls_a_token_endpoint() {
    let app = app().await;
    let key = app.key("acme").await;
    tiktok(&app, &key, "tt2", "product").await;
    let (s, v) = app.get(&key, "/v1/accounts/tiktok/tt2/token").await;
    assert_eq!((s, code(&v)), (409, "product_custody"), "{v}");
    let db = app.db().await;
    let before = app.sim.token_calls(Platform::Tiktok);
    let checks_before = app.sim.calls(Platform::Tiktok);
    // A week, an hour at a time, on the daemon's clock.
    for _ in 0..(7 * 24) {
        app.state.clock.advance(3_600);
        make_due(&db, None).await;
        socialsyncer::scheduler::sweep(&app.state.sweeper, &tokio_util::sync::CancellationToken::new())
            .await
            .unwrap();
    }
    assert_eq!(
        app.sim.token_calls(Platform::Tiktok),
        before,
        "no token endpoint call in product custody"
    );
    // The access token expired after 20 hours: from then on it is not sent to TikTok.
    let asked = app.sim.calls(Platform::Tiktok) - checks_before;
    assert!(
        (15..=21).contains(&asked),
        "checked while the token lived, not after: {asked}"
    );
    let (_, v) = app.get(&key, "/v1/accounts/tiktok/tt2").await;
    assert_eq!(v["health"], "unknown", "{v}");
    assert_eq!(v["needsReconnect"], false, "{v}");
    let e = v["lastError"].as_str().unwrap();
    assert!(
        e.contains("Waiting for new tokens") && e.contains("/credentials"),
        "{e}"
    );
    assert!(kinds(&app).await.is_empty(), "no alert: {:?}", kinds(&app).await);
    // The product pushes new tokens: checked and healthy again.
    let fresh = app
        .sim
        .issue(Platform::Tiktok, TokenSpec::valid(Platform::Tiktok, "tt2"));
    let body = json!({"accessToken": fresh.access_token, "refreshToken": fresh.refresh_token,
        "expiresAt": domain::rfc3339(app.state.clock.now() + 20 * 3600)});
    let (s, v) = app.put(&key, "/v1/accounts/tiktok/tt2/credentials", &body).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["health"], "healthy", "{v}");
    assert_eq!(app.sim.token_calls(Platform::Tiktok), before);
    app.stop().await;
}

#[tokio::test]
async fn a_pushed_token_of_another_account_changes_nothing_and_a_good_one_replaces_without_revoking() {
    let app = app().await;
    let key = app.key("acme").await;
    let first = tiktok(&app, &key, "tt3", "socialsyncer").await;
    let stored = |app: &TestApp| {
        let store = app.state.store.clone();
        async move {
            let a = store.all_accounts(Some(Platform::Tiktok)).await.unwrap().remove(0);
            store.credentials(a.id).await.unwrap()
        }
    };
    let before = stored(&app).await;
    let (_, history_before) = app.get(&key, "/v1/accounts/tiktok/tt3/history").await;
    let stranger = app
        .sim
        .issue(Platform::Tiktok, TokenSpec::valid(Platform::Tiktok, "someone-else"));
    let (s, v) = app
        .put(
            &key,
            "/v1/accounts/tiktok/tt3/credentials",
            &json!({"accessToken": stranger.access_token, "refreshToken": stranger.refresh_token}),
        )
        .await;
    assert_eq!((s, code(&v)), (409, "wrong_account"), "{v}");
    let after = stored(&app).await;
    assert_eq!(
        (after.access_token, after.refresh_token),
        (before.access_token.clone(), before.refresh_token.clone()),
        "nothing changed"
    );
    let (_, history) = app.get(&key, "/v1/accounts/tiktok/tt3/history").await;
    assert_eq!(history, history_before);
    // Bad bodies are 400s.
    for (body, want) in [
        (json!({"accessToken": "x", "refreshToken": ""}), "invalid_refresh_token"),
        (json!({"accessToken": ""}), "invalid_access_token"),
        (json!({"accessToken": "x", "expiresAt": "soon"}), "invalid_expires_at"),
    ] {
        let (s, v) = app.put(&key, "/v1/accounts/tiktok/tt3/credentials", &body).await;
        assert_eq!((s, code(&v)), (400, want), "{v}");
    }
    // POST of a registered account names the route that replaces its tokens.
    let (s, v) = app
        .post(
            &key,
            "/v1/accounts",
            &json!({"platform": "tiktok", "accountId": "tt3", "username": "u", "accessToken": "x"}),
        )
        .await;
    assert_eq!(s, 409);
    assert!(v["error"]["message"].as_str().unwrap().contains("/credentials"), "{v}");
    // The customer reconnected: the product pushes the new pair; nothing is revoked.
    let again = app
        .sim
        .issue(Platform::Tiktok, TokenSpec::valid(Platform::Tiktok, "tt3"));
    let (s, v) = app
        .put(
            &key,
            "/v1/accounts/tiktok/tt3/credentials",
            &json!({"accessToken": again.access_token, "refreshToken": again.refresh_token}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(
        app.sim.token(&first.access_token).is_some(),
        "the old token was not revoked"
    );
    let (_, t) = app.get(&key, "/v1/accounts/tiktok/tt3/token").await;
    assert_eq!(t["accessToken"], again.access_token.as_str());
    let (_, h) = app.get(&key, "/v1/accounts/tiktok/tt3/history").await;
    assert!(
        h["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "tokens_replaced"),
        "{h}"
    );
    // `null` removes the stored refresh token.
    let (s, _) = app
        .put(
            &key,
            "/v1/accounts/tiktok/tt3/credentials",
            &json!({"accessToken": again.access_token, "refreshToken": null}),
        )
        .await;
    assert_eq!(s, 200);
    assert!(stored(&app).await.refresh_token.is_none());
    app.stop().await;
}

#[tokio::test]
async fn a_push_racing_a_sweeps_refresh_loses_no_token() {
    let app = app().await;
    let key = app.key("acme").await;
    tiktok(&app, &key, "tt4", "socialsyncer").await;
    // In its refresh window; TikTok holds the refresh's answer a while.
    set_expiry(&app, "tt4", domain::now() + 60).await;
    make_due(&app.db().await, None).await;
    app.sim.set_tweaks(
        Platform::Tiktok,
        socialsyncer::simulator::Tweaks {
            answer_delay: Some(Duration::from_millis(500)),
            ..Default::default()
        },
    );
    let before = app.sim.token_calls(Platform::Tiktok);
    let state = app.state.clone();
    let sweep = tokio::spawn(async move {
        socialsyncer::scheduler::sweep(&state.sweeper, &tokio_util::sync::CancellationToken::new()).await
    });
    while app.sim.token_calls(Platform::Tiktok) == before {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // The refresh is at TikTok; the product pushes a pair it got from a reconnect.
    let pushed = app
        .sim
        .issue(Platform::Tiktok, TokenSpec::valid(Platform::Tiktok, "tt4"));
    let (s, v) = app
        .put(
            &key,
            "/v1/accounts/tiktok/tt4/credentials",
            &json!({"accessToken": pushed.access_token, "refreshToken": pushed.refresh_token}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    sweep.await.unwrap().unwrap();
    // The push waited for the refresh to commit, then replaced it: what is stored is the
    // pushed pair, alive at TikTok, and the account is healthy.
    let (_, t) = app.get(&key, "/v1/accounts/tiktok/tt4/token").await;
    assert_eq!(t["accessToken"], pushed.access_token.as_str(), "{t}");
    assert!(app.sim.refresh_token_live(pushed.refresh_token.as_deref().unwrap()));
    let (_, v) = app.get(&key, "/v1/accounts/tiktok/tt4").await;
    assert_eq!(v["health"], "healthy", "{v}");
    app.stop().await;
}

#[tokio::test]
async fn a_refresh_token_used_elsewhere_with_a_working_access_token_is_a_warning_with_a_deadline() {
    let app = app().await;
    let key = app.key("acme").await;
    let i = tiktok(&app, &key, "tt5", "socialsyncer").await;
    // The product refreshed on its own: socialsyncer's refresh token is dead, its access
    // token still works until it expires.
    app.sim.invalidate_refresh_token(i.refresh_token.as_deref().unwrap());
    let deadline = domain::now() + 600;
    set_expiry(&app, "tt5", deadline).await;
    let before = app.sim.token_calls(Platform::Tiktok);
    let (_, v) = app.post(&key, "/v1/accounts/tiktok/tt5/check", &Value::Null).await;
    assert_eq!(
        v["health"],
        "warning",
        "{v} token calls {}",
        app.sim.token_calls(Platform::Tiktok) - before
    );
    assert_eq!(v["needsReconnect"], false, "{v}");
    let e = v["lastError"].as_str().unwrap();
    assert!(
        e.contains("used elsewhere") && e.contains(&domain::rfc3339(deadline)),
        "{e}"
    );
    assert_eq!(kinds(&app).await, ["refresh_superseded"]);
    // Checked again: the used refresh token is not tried again, and no second alert.
    let (_, v) = app.post(&key, "/v1/accounts/tiktok/tt5/check", &Value::Null).await;
    assert_eq!(v["health"], "warning", "{v}");
    assert_eq!(app.sim.token_calls(Platform::Tiktok) - before, 1);
    assert_eq!(kinds(&app).await, ["refresh_superseded"]);
    // The deadline is the access token's expiry in the metrics too.
    let scrape = app.metrics().await;
    assert!(
        scrape.contains(&format!(
            "socialsyncer_reconnect_deadline_timestamp_seconds{{account_id=\"tt5\",platform=\"tiktok\",workspace=\"acme\"}} {deadline}"
        )),
        "{scrape}"
    );
    app.stop().await;
}

/// The scope each route needs, as the API page says: `tokens` for the token route, `read`
/// for the other GETs, `manage` for the rest.
fn needs(method: &str, path: &str) -> KeyScope {
    if path.ends_with("/token") {
        KeyScope::Tokens
    } else if method == "get" {
        KeyScope::Read
    } else {
        KeyScope::Manage
    }
}

#[tokio::test]
async fn every_route_answers_403_to_a_key_without_its_scope() {
    let app = app().await;
    let key = app.key("acme").await;
    tiktok(&app, &key, "tt6", "socialsyncer").await;
    let (_, doc) = app.get(&key, "/v1/openapi.json").await;
    let mut tried = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let secured = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("api_key").is_some()));
            if !secured {
                continue;
            }
            let need = needs(method, path);
            let others: Vec<KeyScope> = KeyScope::ALL.into_iter().filter(|s| *s != need).collect();
            let lacking = app.key_with("acme", &others).await;
            let url = app.url(&path.replace("{platform}", "tiktok").replace("{accountId}", "tt6"));
            let r = app
                .http
                .request(method.to_uppercase().parse().unwrap(), url)
                .bearer_auth(&lacking)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            let (s, v) = crate::common::into_parts(r).await;
            assert_eq!((s, code(&v)), (403, "insufficient_scope"), "{method} {path}: {v}");
            assert!(v["error"]["message"].as_str().unwrap().contains(need.as_str()));
            tried += 1;
        }
    }
    assert!(tried >= 15, "every secured route was tried: {tried}");
    // A key made before scopes existed keeps read and manage, not tokens.
    let old = app.key_with("acme", &[KeyScope::Read, KeyScope::Manage]).await;
    let (s, _) = app.get(&old, "/v1/accounts").await;
    assert_eq!(s, 200);
    let (s, v) = app.get(&old, "/v1/accounts/tiktok/tt6/token").await;
    assert_eq!((s, code(&v)), (403, "insufficient_scope"));
    app.stop().await;
}

#[tokio::test]
async fn custody_changes_with_patch_and_every_action_is_audited() {
    let app = app().await;
    let key = app.key("acme").await;
    tiktok(&app, &key, "tt7", "socialsyncer").await;
    let r = app
        .http
        .patch(app.url("/v1/accounts/tiktok/tt7"))
        .bearer_auth(&key)
        .json(&json!({"custody": "product"}))
        .send()
        .await
        .unwrap();
    let (s, v) = crate::common::into_parts(r).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["custody"], "product");
    let (s, v) = app.get(&key, "/v1/accounts/tiktok/tt7/token").await;
    assert_eq!((s, code(&v)), (409, "product_custody"));
    let r = app
        .http
        .patch(app.url("/v1/accounts/tiktok/tt7"))
        .bearer_auth(&key)
        .json(&json!({"custody": "nobody"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let (s, _) = app.delete(&key, "/v1/accounts/tiktok/tt7").await;
    assert_eq!(s, 200);
    let (_, a) = app.get(&key, "/v1/audit?limit=2").await;
    let first: Vec<&str> = a["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(first, ["account.delete", "token.read"], "{a}");
    let cursor = a["nextCursor"].as_str().unwrap();
    let (_, b) = app.get(&key, &format!("/v1/audit?limit=10&cursor={cursor}")).await;
    let rest: Vec<&str> = b["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(rest, ["custody.change", "account.register"], "{b}");
    assert_eq!(b["events"][0]["keyPrefix"], key[..11].to_string().as_str());
    // Another workspace sees none of it, and a forged cursor is refused.
    let other = app.key("other").await;
    let (_, o) = app.get(&other, "/v1/audit").await;
    assert_eq!(o["events"].as_array().unwrap().len(), 0);
    let (s, v) = app.get(&other, &format!("/v1/audit?cursor={cursor}")).await;
    assert_eq!((s, code(&v)), (400, "invalid_cursor"));
    app.stop().await;
}

/// `account.tokens_refreshed` goes to a receiver that lists it, with the account and the
/// new expiry and no token; a receiver that takes every type does not get it.
#[tokio::test]
async fn a_refresh_raises_tokens_refreshed_only_for_receivers_that_ask() {
    let app = crate::common::spawn_api_cfg("", |c| {
        c.notify.allow_insecure_loopback = true;
        c.notify.allow_private_networks = true;
        c.schedule.cron = String::new();
    })
    .await;
    let key = app.key("acme").await;
    let (asks, asks_log) = crate::webhooks::receiver(&[], false).await;
    let (all, all_log) = crate::webhooks::receiver(&[], false).await;
    let (s, v) = app
        .put(
            &key,
            "/v1/notifications",
            &json!({"emails": [], "webhooks": [
                {"url": asks, "events": ["account.tokens_refreshed"]},
                {"url": all},
            ]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    tiktok(&app, &key, "tt8", "socialsyncer").await;
    set_expiry(&app, "tt8", domain::now() + 60).await;
    let (s, t) = app.get(&key, "/v1/accounts/tiktok/tt8/token").await;
    assert_eq!(s, 200, "{t}");
    socialsyncer::alerts::deliver(&app.state.outbox).await.unwrap();
    let posts = std::mem::take(&mut asks_log.lock().unwrap().posts);
    assert_eq!(posts.len(), 1);
    let e: Value = serde_json::from_slice(&posts[0].1).unwrap();
    assert_eq!(e["type"], "account.tokens_refreshed", "{e}");
    assert_eq!(e["account"]["accountId"], "tt8");
    assert_eq!(e["expiresAt"], t["expiresAt"], "{e}");
    let text = String::from_utf8_lossy(&posts[0].1).into_owned();
    assert!(
        !text.contains(t["accessToken"].as_str().unwrap()),
        "no token in the event"
    );
    assert!(all_log.lock().unwrap().posts.is_empty(), "not without asking");
    let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM alert_outbox WHERE sent_at IS NULL")
        .fetch_one(&app.db().await)
        .await
        .unwrap();
    assert_eq!(pending, 0, "nothing waits for a receiver that does not want it");
    app.stop().await;
}

/// `accounts import --custody product` registers in the product's custody, and `--replace`
/// gives a registered account new tokens from another process, checked at the platform;
/// an unhealthy account pushed back to health sends `account.recovered`. (Multi-threaded:
/// the simulator answers the CLI while this test waits for it.)
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_registers_with_a_custody_and_replaces_tokens() {
    // The CLI drives the SQLite file (the PostgreSQL pass has its own database URL).
    if crate::common::postgres_pass() {
        return;
    }
    let app = app().await;
    let key = app.key("acme").await;
    let cfg = app.cli_config();
    let import = |extra: &[&str], token: &str| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_socialsyncer"))
            .arg("--config")
            .arg(&cfg)
            .args(["accounts", "import", "--workspace", "acme", "--platform", "tiktok"])
            .args(["--account-id", "tt9", "--username", "cli"])
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{token}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let revoked = app.sim.issue(
        Platform::Tiktok,
        TokenSpec {
            state: socialsyncer::simulator::TokenState::Revoked,
            ..TokenSpec::valid(Platform::Tiktok, "tt9")
        },
    );
    let out = import(&["--custody", "product"], &revoked.access_token);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, v) = app.post(&key, "/v1/accounts/tiktok/tt9/check", &Value::Null).await;
    assert_eq!(
        (v["custody"].as_str(), v["health"].as_str()),
        (Some("product"), Some("unhealthy")),
        "{v}"
    );
    // Another account's token: refused, nothing changes.
    let stranger = app
        .sim
        .issue(Platform::Tiktok, TokenSpec::valid(Platform::Tiktok, "not-tt9"));
    let out = import(&["--replace"], &stranger.access_token);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The customer reconnected: the new token goes in, the account recovers.
    let fresh = app
        .sim
        .issue(Platform::Tiktok, TokenSpec::valid(Platform::Tiktok, "tt9"));
    let out = import(&["--replace"], &fresh.access_token);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("health healthy"));
    let (_, v) = app.get(&key, "/v1/accounts/tiktok/tt9").await;
    assert_eq!(v["health"], "healthy", "{v}");
    assert!(
        kinds(&app).await.contains(&"recovered".to_owned()),
        "{:?}",
        kinds(&app).await
    );
    let (_, a) = app.get(&key, "/v1/audit").await;
    let cli: Vec<(&str, &str)> = a["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["keyPrefix"] == "cli")
        .map(|e| (e["action"].as_str().unwrap(), e["result"].as_str().unwrap()))
        .collect();
    assert_eq!(
        cli,
        [
            ("tokens.replace", "ok"),
            ("tokens.replace", "refused"),
            ("account.register", "ok")
        ]
    );
    app.stop().await;
}
