//! Sweeps, scheduling, rate limits and automatic refresh, against the simulated platforms
//! and a real SQLite file.

use std::time::Duration;

use crate::common::{TestApp, make_due, spawn_app, spawn_app_cfg};
use secrecy::ExposeSecret;
use socialsyncer::accounts::seal_context;
use socialsyncer::domain::{self, Health, Platform};
use socialsyncer::scheduler;
use socialsyncer::simulator::{Behavior, Issued, TokenSpec};
use sqlx::AnyPool;
use tokio_util::sync::CancellationToken;

async fn last_checked(db: &AnyPool, id: &str) -> Option<i64> {
    sqlx::query_scalar(
        "SELECT h.last_checked_at FROM account_health h JOIN accounts a ON a.id = h.account_ref WHERE a.account_id = $1",
    )
    .bind(id)
    .fetch_one(db)
    .await
    .unwrap()
}

async fn sweep(app: &TestApp) -> scheduler::SweepReport {
    scheduler::sweep(&app.state.sweeper, &CancellationToken::new())
        .await
        .unwrap()
}

fn spec(p: Platform) -> TokenSpec {
    TokenSpec::valid(p, "0")
}

#[tokio::test]
async fn only_due_accounts_are_checked_and_results_are_batched() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let db = app.db().await;
    for i in 0..30 {
        app.connect(
            &key,
            Platform::Threads,
            &format!("{}", 1000 + i),
            spec(Platform::Threads),
        )
        .await;
    }
    app.connect(&key, Platform::Facebook, "42", spec(Platform::Facebook))
        .await;
    let fb_before = last_checked(&db, "42").await;
    let threads_before = last_checked(&db, "1000").await.unwrap();
    make_due(&db, Some(Platform::Threads)).await;
    let calls = app.sim.calls(Platform::Threads);
    // Two seconds pass (the daemon's clock; check times are whole seconds).
    app.state.clock.advance(2);

    let r = sweep(&app).await;
    assert_eq!((r.checked, r.ok, r.invalid, r.transient), (30, 30, 0, 0), "{r:?}");
    assert_eq!(app.sim.calls(Platform::Threads) - calls, 30);
    assert_eq!(
        last_checked(&db, "42").await,
        fb_before,
        "the account that was not due was left alone"
    );
    // The sweep's results repeat the registration's assessment: only the bookkeeping is
    // written (the unchanged fast path), and it is written.
    assert!(last_checked(&db, "1000").await.unwrap() > threads_before);
    let healthy: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM account_health WHERE health = 'healthy'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(healthy, 31);
    let history: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM health_history WHERE event = 'check'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(
        history,
        31 + 30,
        "one row per check: registration checks plus the sweep"
    );
    // Nothing is due any more: the next check is computed, hours ahead.
    let r = sweep(&app).await;
    assert_eq!(r.checked, 0);
    let soonest: i64 = sqlx::query_scalar("SELECT MIN(next_check_at) FROM account_health")
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(soonest > domain::now() + 3600);
    app.stop().await;
}

#[tokio::test]
async fn the_cron_job_runs_sweeps() {
    // The test starts the scheduler itself (the daemon's would tick beside it).
    let app = crate::common::spawn_api_cfg("", |c| c.schedule.cron = "* * * * * *".into()).await;
    let key = app.key("acme").await;
    let db = app.db().await;
    app.connect(&key, Platform::Twitter, "7", spec(Platform::Twitter)).await;
    let before = last_checked(&db, "7").await.unwrap();
    // Two seconds pass (the daemon's clock; check times are whole seconds).
    app.state.clock.advance(2);
    make_due(&db, None).await;
    let cancel = CancellationToken::new();
    let mut sched = scheduler::start(app.state.sweeper.clone(), cancel.clone())
        .await
        .unwrap()
        .unwrap();
    let mut checked = false;
    for _ in 0..100 {
        if last_checked(&db, "7").await.unwrap() > before {
            checked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(checked, "a tick checked the due account");
    cancel.cancel();
    sched.shutdown().await.unwrap();
    // The sweep runs as a task of the daemon's own: it ends and is counted out.
    while app.state.tasks.running("sweep") > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let metrics = app.metrics().await;
    // The sweep's end, within this test's run (not the 0 a registered gauge starts at).
    let last: f64 = sample(&metrics, "socialsyncer_last_sweep_timestamp_seconds ");
    assert!(
        last as i64 >= before && last as i64 <= app.state.clock.now(),
        "{last} vs {before}"
    );
    // Each check is counted and timed by platform and outcome.
    assert!(
        sample(
            &metrics,
            "socialsyncer_checks_total{outcome=\"ok\",platform=\"twitter\"} "
        ) >= 2.0
    );
    assert!(
        sample(
            &metrics,
            "socialsyncer_check_duration_seconds_count{platform=\"twitter\"} "
        ) >= 2.0
    );
    app.stop().await;
}

/// The value of the sample line of `metrics` that starts with `prefix`.
fn sample(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in {metrics}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_rate_limited_platform_slows_only_its_own_accounts() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let db = app.db().await;
    let mut tw = Vec::new();
    let mut fb = Vec::new();
    for i in 0..10 {
        app.connect(&key, Platform::Tiktok, &format!("tt{i}"), spec(Platform::Tiktok))
            .await;
        fb.push(
            app.connect(
                &key,
                Platform::Facebook,
                &format!("{}", 200 + i),
                spec(Platform::Facebook),
            )
            .await
            .0,
        );
        tw.push(
            app.connect(
                &key,
                Platform::Twitter,
                &format!("{}", 300 + i),
                spec(Platform::Twitter),
            )
            .await
            .0,
        );
    }
    make_due(&db, None).await;
    // TikTok's limits are per app: the whole lane waits. X's /2/users/me limit is per user
    // token: only that account waits.
    app.sim.set_platform_behavior(Platform::Tiktok, Behavior::RateLimited);
    app.sim
        .update(&tw[0].access_token, |t| t.behavior = Behavior::RateLimited);
    let tt_calls = app.sim.calls(Platform::Tiktok);
    let fb_calls = app.sim.calls(Platform::Facebook);
    let tw_calls = app.sim.calls(Platform::Twitter);

    let r = sweep(&app).await;
    assert_eq!(r.checked, 30);
    assert_eq!(
        r.ok, 19,
        "every Facebook account and 9 of 10 X accounts were checked: {r:?}"
    );
    // Two calls a Facebook check: debug_token and a read made with the token.
    assert_eq!(app.sim.calls(Platform::Facebook) - fb_calls, 20);
    assert_eq!(
        app.sim.calls(Platform::Twitter) - tw_calls,
        10,
        "one throttled X user does not hold up the other X accounts"
    );
    let tt = app.sim.calls(Platform::Tiktok) - tt_calls;
    assert!(
        tt < 10,
        "after TikTok said 429, the rest of its accounts waited ({tt} calls)"
    );
    assert_eq!(r.deferred, 11, "10 TikTok accounts and one X account wait: {r:?}");
    // Every throttled account keeps its health and failure count, and waits.
    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT a.account_id, h.health, h.consecutive_failures, h.next_check_at FROM account_health h \
         JOIN accounts a ON a.id = h.account_ref WHERE a.platform = 'tiktok' OR a.account_id = '300'",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(rows.len(), 11);
    for (id, health, failures, next) in rows {
        assert_eq!(
            (health.as_str(), failures),
            ("healthy", 0),
            "{id}: a deferral is not a failure"
        );
        assert!(next >= domain::now() + 50, "{id} waits");
    }
    assert_eq!(sweep(&app).await.checked, 0, "nothing is due again before the reset");
    app.stop().await;
}

/// The stored tokens of an account, opened.
async fn stored_tokens(app: &TestApp, platform: Platform, id: &str) -> (String, Option<String>) {
    let acc = app
        .state
        .store
        .all_accounts(Some(platform))
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.account_id == id)
        .unwrap();
    let sealed = app.state.store.credentials(acc.id).await.unwrap();
    let ctx = seal_context(acc.workspace_id, platform, id);
    let access = app
        .state
        .sealer
        .open(&ctx, &sealed.access_token)
        .unwrap()
        .expose_secret()
        .to_owned();
    let refresh = sealed
        .refresh_token
        .map(|r| app.state.sealer.open(&ctx, &r).unwrap().expose_secret().to_owned());
    (access, refresh)
}

async fn events(db: &AnyPool, event: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM health_history WHERE event = $1")
        .bind(event)
        .fetch_one(db)
        .await
        .unwrap()
}

#[tokio::test]
async fn tokens_in_their_refresh_window_are_rotated_and_the_old_ones_forgotten() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let db = app.db().await;
    let mut issued: Vec<(Platform, &str, Issued)> = Vec::new();
    // X and TikTok: within their window (45 min, 1 h). Threads: 10 days left, 2 days old.
    for (p, id, left) in [
        (Platform::Twitter, "1", 600),
        (Platform::Tiktok, "tt1", 1200),
        (Platform::Threads, "3", 10 * 86_400),
    ] {
        let (i, v) = app
            .connect(
                &key,
                p,
                id,
                TokenSpec {
                    expires_in: Some(left),
                    ..spec(p)
                },
            )
            .await;
        assert_eq!(
            v["health"], "healthy",
            "auto-refreshed tokens do not warn about their own expiry: {v}"
        );
        issued.push((p, id, i));
    }
    // Registration checked them once: X and TikTok were refreshed then. Threads tokens can
    // only be refreshed once a day old, and the daemon counts from registration.
    sqlx::query("UPDATE accounts SET token_issued_at = token_issued_at - 2 * 86400")
        .execute(&db)
        .await
        .unwrap();
    make_due(&db, Some(Platform::Threads)).await;
    let r = sweep(&app).await;
    assert_eq!((r.checked, r.ok), (1, 1));
    for (p, id, i) in &issued {
        let (access, refresh) = stored_tokens(&app, *p, id).await;
        assert_ne!(
            &access, &i.access_token,
            "{p}: registration's check refreshed in the window"
        );
        if let Some(old) = &i.refresh_token {
            let new = refresh.expect("refresh token kept");
            assert_ne!(&new, old, "{p}: rotated");
            assert!(
                !app.sim.refresh_token_live(old),
                "{p}: the old refresh token is dead at the platform"
            );
            assert!(app.sim.refresh_token_live(&new));
        }
        let (s, v) = app.get(&key, &format!("/v1/accounts/{p}/{id}")).await;
        assert_eq!(s, 200);
        assert_eq!(v["health"], "healthy", "{p}: {v}");
        let exp = domain::parse_rfc3339(v["tokenExpiresAt"].as_str().unwrap()).unwrap();
        assert!(exp > domain::now() + 3600, "{p}: the new expiry is stored");
        let (_, h) = app.get(&key, &format!("/v1/accounts/{p}/{id}/history")).await;
        assert!(
            h["history"].as_array().unwrap().iter().any(|e| e["event"] == "refresh"),
            "{p}: {h}"
        );
    }
    assert_eq!(events(&db, "refresh").await, 3);
    // The plaintext of the new tokens is not in the database file either.
    let (access, _) = stored_tokens(&app, Platform::Twitter, "1").await;
    if !crate::common::postgres_pass() {
        let bytes = std::fs::read(app.dir.path().join("socialsyncer.db")).unwrap();
        assert!(!bytes.windows(access.len()).any(|w| w == access.as_bytes()));
    }
    app.stop().await;
}

#[tokio::test]
async fn a_rejected_token_is_refreshed_before_anyone_is_told_to_reconnect() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let (i, v) = app.connect(&key, Platform::Twitter, "5", spec(Platform::Twitter)).await;
    assert_eq!(v["health"], "healthy");
    // X revokes the access token (2 h tokens simply expire); the refresh token still works.
    app.sim
        .update(&i.access_token, |t| t.expires_at = Some(domain::now() - 1));
    let (s, v) = app
        .post(&key, "/v1/accounts/twitter/5/check", &serde_json::Value::Null)
        .await;
    assert_eq!((s, v["health"].as_str()), (200, Some("healthy")), "{v}");
    let (access, _) = stored_tokens(&app, Platform::Twitter, "5").await;
    assert_ne!(access, i.access_token);
    app.stop().await;
}

#[tokio::test]
async fn failed_refreshes_back_off_and_only_fatal_answers_demand_a_reconnect() {
    let app = spawn_app_cfg("", |c| c.platforms.threads.auto_refresh = Some(false)).await;
    let key = app.key("acme").await;
    let db = app.db().await;
    // X's token endpoint fails (503): retried with backoff, never "reconnect" on its own.
    app.sim.set_tweaks(
        Platform::Twitter,
        socialsyncer::simulator::Tweaks {
            token_endpoint_down: true,
            ..Default::default()
        },
    );
    let tw = app.sim.issue(
        Platform::Twitter,
        TokenSpec {
            user_id: "8".into(),
            expires_in: Some(7200),
            ..spec(Platform::Twitter)
        },
    );
    // TikTok answers invalid_grant, and the access token no longer works either: final. (With
    // a working access token it would be a superseded refresh token: see custody.rs.)
    let tt = app.sim.issue(
        Platform::Tiktok,
        TokenSpec {
            user_id: "tt8".into(),
            expires_in: Some(7200),
            ..spec(Platform::Tiktok)
        },
    );
    app.sim.invalidate_refresh_token(tt.refresh_token.as_deref().unwrap());
    app.sim
        .update(&tt.access_token, |t| t.expires_at = Some(domain::now() - 1));
    for (p, id, i) in [(Platform::Twitter, "8", &tw), (Platform::Tiktok, "tt8", &tt)] {
        let body = serde_json::json!({"platform": p.as_str(), "accountId": id, "username": "u",
            "accessToken": i.access_token, "refreshToken": i.refresh_token,
            "expiresAt": domain::rfc3339(domain::now() + 600), "scopes": crate::common::documented_scopes(p)});
        let (s, _) = app.post(&key, "/v1/accounts", &body).await;
        assert_eq!(s, 201);
    }
    let (_, v) = app.get(&key, "/v1/accounts/twitter/8").await;
    assert_eq!(v["health"], "warning", "{v}");
    assert_eq!(v["needsReconnect"], false);
    assert!(
        v["recommendations"][0]
            .as_str()
            .unwrap()
            .starts_with("Automatic token refresh failed"),
        "{v}"
    );
    let (_, refresh) = stored_tokens(&app, Platform::Twitter, "8").await;
    assert_eq!(
        refresh.as_deref(),
        tw.refresh_token.as_deref(),
        "the stored refresh token is not overwritten"
    );
    let (failures, next): (i64, i64) = sqlx::query_as(
        "SELECT h.refresh_failures, h.next_check_at FROM account_health h JOIN accounts a ON a.id = h.account_ref \
         WHERE a.account_id = '8'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(failures, 1);
    assert!(
        next <= domain::now() + 120,
        "a failed refresh is retried soon, with backoff"
    );
    assert_eq!(events(&db, "refresh_failed").await, 1);

    let (_, v) = app.get(&key, "/v1/accounts/tiktok/tt8").await;
    assert_eq!(
        (v["health"].as_str(), v["needsReconnect"].as_bool()),
        (Some("unhealthy"), Some(true)),
        "{v}"
    );
    assert!(v["lastError"].as_str().unwrap().contains("invalid_grant"));
    assert!(
        v["recommendations"][0]
            .as_str()
            .unwrap()
            .contains("rejected the refresh token"),
        "{v}"
    );

    // X answers a dead refresh token with 400 invalid_request "Value passed for the token
    // was invalid": final too, once the stored tokens show nobody else refreshed.
    app.sim.set_tweaks(Platform::Twitter, Default::default());
    app.sim.invalidate_refresh_token(tw.refresh_token.as_deref().unwrap());
    app.sim
        .update(&tw.access_token, |t| t.expires_at = Some(domain::now() - 1));
    let (_, v) = app
        .post(&key, "/v1/accounts/twitter/8/check", &serde_json::Value::Null)
        .await;
    assert_eq!(
        (v["health"].as_str(), v["needsReconnect"].as_bool()),
        (Some("unhealthy"), Some(true)),
        "{v}"
    );
    app.stop().await;
}

#[tokio::test]
async fn new_tokens_are_committed_before_the_refresh_is_reported() {
    let app = spawn_app_cfg("", |c| {
        c.database.busy_timeout = socialsyncer::config::HumanDuration(Duration::from_millis(200));
    })
    .await;
    let key = app.key("acme").await;
    let db = app.db().await;
    let (i, _) = app
        .connect(
            &key,
            Platform::Tiktok,
            "lock1",
            TokenSpec {
                expires_in: Some(7 * 86_400),
                ..spec(Platform::Tiktok)
            },
        )
        .await;
    // Move the token into its refresh window, then hold the database's write lock.
    sqlx::query("UPDATE accounts SET token_expires_at = $1")
        .bind(domain::now() + 600)
        .execute(&db)
        .await
        .unwrap();
    let acc = app
        .state
        .store
        .all_accounts(Some(Platform::Tiktok))
        .await
        .unwrap()
        .remove(0);
    // The commit of the new tokens fails (as on a full disk) after the platform rotated.
    let triggers: &[&'static str] = if crate::common::postgres_pass() {
        &[
            "CREATE FUNCTION fail_commit() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER fail_commit BEFORE UPDATE ON credentials FOR EACH ROW EXECUTE FUNCTION fail_commit()",
        ]
    } else {
        &["CREATE TRIGGER fail_commit BEFORE UPDATE ON credentials BEGIN SELECT RAISE(ABORT, 'disk full'); END"]
    };
    for t in triggers {
        sqlx::query(*t).execute(&db).await.unwrap();
    }

    let result = socialsyncer::checks::check(&app.state.checker, acc).await;
    assert!(
        result.is_err(),
        "the commit failed, so the check does not report a refresh"
    );
    assert!(
        !app.sim.refresh_token_live(i.refresh_token.as_deref().unwrap()),
        "the platform did rotate"
    );
    let drop = if crate::common::postgres_pass() {
        "DROP TRIGGER fail_commit ON credentials"
    } else {
        "DROP TRIGGER fail_commit"
    };
    sqlx::query(drop).execute(&db).await.unwrap();
    assert_eq!(
        events(&db, "refresh").await,
        0,
        "no refresh is recorded that was not committed"
    );
    let (access, refresh) = stored_tokens(&app, Platform::Tiktok, "lock1").await;
    assert_eq!(
        (access.as_str(), refresh.as_deref()),
        (i.access_token.as_str(), i.refresh_token.as_deref())
    );
    app.stop().await;
}

/// Pruning deletes what is past the retention in many short statements, never one that
/// holds the writer for the whole backlog (issue 27), and keeps what is newer.
#[tokio::test]
async fn a_backlog_of_history_is_pruned_in_bounded_statements() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let db = app.db().await;
    app.connect(&key, Platform::Tiktok, "old", spec(Platform::Tiktok)).await;
    // 20,000 rows past the retention (at 1..=20,000) and 10 inside it.
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) \
         INSERT INTO health_history (account_ref, at, event, health, changed) \
         SELECT (SELECT id FROM accounts), i, 'check', 'healthy', FALSE FROM n",
    )
    .execute(&db)
    .await
    .unwrap();
    let now = domain::now();
    for i in 0..10 {
        sqlx::query(
            "INSERT INTO health_history (account_ref, at, event, health, changed) \
             SELECT id, $1, 'check', 'healthy', FALSE FROM accounts",
        )
        .bind(now - i)
        .execute(&db)
        .await
        .unwrap();
    }
    let before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM health_history")
        .fetch_one(&db)
        .await
        .unwrap();
    let pruned = app.state.store.prune_history(now - 86_400).await.unwrap();
    assert_eq!(pruned.rows, 20_000, "{pruned:?}");
    assert!(
        pruned.statements >= 5,
        "a 20,000-row backlog takes several statements, not one: {pruned:?}"
    );
    let after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM health_history")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(after, before - 20_000, "what is inside the retention stays");
    let oldest: i64 = sqlx::query_scalar("SELECT MIN(at) FROM health_history")
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(oldest >= now - 86_400);
    // Nothing left to prune: one statement that finds nothing.
    let again = app.state.store.prune_history(now - 86_400).await.unwrap();
    assert_eq!((again.rows, again.statements), (0, 1));
    app.stop().await;
}

#[tokio::test]
async fn silence_turns_into_unknown_after_the_staleness_limit_and_history_is_pruned() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let db = app.db().await;
    app.connect(&key, Platform::Tiktok, "quiet", spec(Platform::Tiktok))
        .await;
    sqlx::query("UPDATE account_health SET last_success_at = $1")
        .bind(domain::now() - 2 * 86_400)
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("INSERT INTO health_history (account_ref, at, event, health, changed) SELECT id, 1000, 'check', 'healthy', FALSE FROM accounts")
        .execute(&db)
        .await
        .unwrap();
    make_due(&db, None).await;
    app.sim.set_platform_behavior(Platform::Tiktok, Behavior::ServerError);
    let r = sweep(&app).await;
    assert_eq!((r.checked, r.transient), (1, 1));
    assert!(r.pruned.rows >= 1, "rows past the retention are pruned");
    let (_, v) = app.get(&key, "/v1/accounts/tiktok/quiet").await;
    assert_eq!(v["health"], "unknown");
    assert!(
        v["recommendations"][0]
            .as_str()
            .unwrap()
            .starts_with("TikTok has not answered since"),
        "{v}"
    );
    let (_, h) = app.get(&key, "/v1/accounts/tiktok/quiet/history?limit=1").await;
    let e = &h["history"][0];
    assert_eq!(
        (e["event"].as_str(), e["outcome"].as_str(), e["changed"].as_bool()),
        (Some("check"), Some("transient_error"), Some(true))
    );
    let (s, _) = app.get(&key, "/v1/accounts/tiktok/quiet/history?limit=0").await;
    assert_eq!(s, 400);
    assert_eq!(Health::Unknown.as_str(), "unknown");
    app.stop().await;
}

#[tokio::test]
async fn a_reload_takes_the_live_keys_and_keeps_the_rest() {
    let app = spawn_app().await;
    let before = app.state.config();
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:1\"\n[database]\nurl = \"sqlite:///elsewhere.db\"\n[schedule]\nconcurrency = 3\n\
         [email]\nto = [\"ops@example.com\"]\n[log]\nlevel = \"debug\"\n{}",
        app.sim.config_toml(app.dir.path()).unwrap()
    );
    text = text.replace("[platforms.tiktok]\n", "[platforms.tiktok]\nrate_limit = 2.5\n");
    let new = socialsyncer::config::Config::from_toml(&text).unwrap();
    let r = app.state.reload(new).unwrap();
    for key in [
        "schedule.concurrency",
        "email.to",
        "log.level",
        "platforms.tiktok.rate_limit",
    ] {
        assert!(r.changed.iter().any(|k| k == key), "{key} in {r:?}");
    }
    for key in ["server.listen", "database.url"] {
        assert!(r.restart.iter().any(|k| k == key), "{key} in {r:?}");
    }
    let after = app.state.config();
    assert_eq!(after.schedule.concurrency, 3);
    assert_eq!(after.email.to, ["ops@example.com"]);
    assert_eq!(after.server.listen, before.server.listen, "kept until a restart");
    assert_eq!(after.database.url, before.database.url);
    assert_eq!(app.state.gates.rate(Platform::Tiktok), Some(2.5));
    app.stop().await;
}

#[tokio::test]
async fn a_sweep_keeps_to_its_concurrency_and_a_paced_lane_holds_up_no_other() {
    // Threads paced at 4 requests a second; X unpaced; 3 checks at once in all.
    let app = spawn_app_cfg("", |c| {
        c.schedule.concurrency = 3;
        c.platforms.threads.rate_limit = Some(4.0);
        c.platforms.twitter.rate_limit = Some(0.0);
    })
    .await;
    let key = app.key("acme").await;
    let db = app.db().await;
    for i in 0..6 {
        app.connect(
            &key,
            Platform::Threads,
            &format!("{}", 100 + i),
            spec(Platform::Threads),
        )
        .await;
    }
    for i in 0..12 {
        app.connect(
            &key,
            Platform::Twitter,
            &format!("{}", 200 + i),
            spec(Platform::Twitter),
        )
        .await;
    }
    app.sim.set_latency(Platform::Twitter, Duration::from_millis(50));
    app.sim.set_latency(Platform::Threads, Duration::from_millis(50));
    make_due(&db, None).await;
    let before = app.sim.arrivals().len();
    let r = sweep(&app).await;
    assert_eq!(r.checked, 18, "{r:?}");
    assert!(
        app.sim.most_in_flight() <= 3,
        "never more than 3 checks at once: {}",
        app.sim.most_in_flight()
    );
    assert!(app.sim.most_in_flight() >= 2, "the checks did run side by side");
    // Threads' six requests take at least 1.25 s at four a second; X's twelve (four rounds
    // of 50 ms on the permits Threads does not hold) are all in before Threads' third.
    let arrivals = &app.sim.arrivals()[before..];
    let third_threads = arrivals
        .iter()
        .enumerate()
        .filter(|(_, p)| **p == Platform::Threads)
        .nth(2)
        .map(|(i, _)| i)
        .unwrap();
    let last_twitter = arrivals.iter().rposition(|p| *p == Platform::Twitter).unwrap();
    assert!(last_twitter < third_threads, "the paced lane held up X: {arrivals:?}");
    app.stop().await;
}

/// A sweep checks the most overdue accounts first: with one check at a time, the platform
/// sees the accounts in the order of their `next_check_at`, not of their registration, page
/// after page.
#[tokio::test]
async fn a_sweep_checks_the_most_overdue_accounts_first() {
    let app = spawn_app_cfg("", |c| {
        c.schedule.cron = String::new();
        c.schedule.concurrency = 1;
        // Pages of two: the database picks each page, not only its order.
        c.schedule.batch_size = 2;
    })
    .await;
    let key = app.key("acme").await;
    let db = app.db().await;
    // Registered in one order, overdue in another (seconds overdue by account).
    let overdue = [("41", 60), ("42", 3_600), ("43", 5), ("44", 86_400), ("45", 600)];
    let mut tokens = Vec::new();
    for (id, _) in overdue {
        let (issued, _) = app
            .connect(&key, Platform::Twitter, id, TokenSpec::valid(Platform::Twitter, id))
            .await;
        tokens.push((id, issued.access_token));
    }
    for (id, secs) in overdue {
        sqlx::query(
            "UPDATE account_health SET next_check_at = $1 WHERE account_ref = \
             (SELECT id FROM accounts WHERE account_id = $2)",
        )
        .bind(app.state.clock.now() - secs)
        .bind(id)
        .execute(&db)
        .await
        .unwrap();
    }
    let r = sweep(&app).await;
    assert_eq!(r.checked, 5);
    let mut seen: Vec<(u64, &str)> = tokens
        .iter()
        .map(|(id, t)| (app.sim.token(t).unwrap().last_call, *id))
        .collect();
    seen.sort();
    let order: Vec<&str> = seen.into_iter().map(|(_, id)| id).collect();
    assert_eq!(order, ["44", "42", "45", "41", "43"], "most overdue first");
    app.stop().await;
}

/// Log lines written by the thread's subscriber (INFO and above), kept for a test to read.
#[derive(Clone, Default)]
struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The README: "one line per sweep goes to the log". A cron sweep over twenty due accounts
/// writes one INFO line with its figures, and none per account. It runs on the sweep's own
/// threads (named `sweep`), not on the runtime that serves the API (issue 27: the API's
/// requests are not queued behind the checks).
#[tokio::test(flavor = "current_thread")]
async fn a_sweep_writes_one_log_line() {
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_thread_names(true)
        .without_time()
        .with_writer(move || writer.clone())
        .finish();
    let app = crate::common::spawn_api_cfg("", |c| c.schedule.cron = "* * * * * *".into()).await;
    let key = app.key("acme").await;
    for i in 0..20 {
        let id = format!("{}", 700 + i);
        app.connect(&key, Platform::Twitter, &id, TokenSpec::valid(Platform::Twitter, &id))
            .await;
    }
    let db = app.db().await;
    app.state.clock.advance(2);
    make_due(&db, None).await;
    let _guard = tracing::subscriber::set_default(subscriber);
    let cancel = CancellationToken::new();
    let mut sched = scheduler::start(app.state.sweeper.clone(), cancel.clone())
        .await
        .unwrap()
        .unwrap();
    let finished = |l: &Lines| {
        String::from_utf8_lossy(&l.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains("sweep finished"))
            .count()
    };
    for _ in 0..100 {
        if finished(&lines) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cancel.cancel();
    sched.shutdown().await.unwrap();
    while app.state.tasks.running("sweep") > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(_guard);
    let text = String::from_utf8_lossy(&lines.0.lock().unwrap()).into_owned();
    // (A tick that finds the sweep still running says so; that is the tick's line, not the
    // sweep's.)
    let sweep_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("socialsyncer::scheduler") && !l.contains("tick skipped"))
        .collect();
    assert_eq!(sweep_lines.len(), 1, "one line for the sweep:\n{text}");
    assert!(sweep_lines[0].contains("checked=20"), "{text}");
    assert!(
        sweep_lines[0].split_whitespace().nth(1) == Some("sweep"),
        "the sweep ran on its own runtime's threads: {}",
        sweep_lines[0]
    );
    // A per-check line names its account (`account=...`); the sweep's line names none.
    assert!(
        !text.lines().any(|l| l.contains("account=")
            || (700..720).any(|i| l.contains(&format!("=\"{i}\"")) || l.contains(&format!("={i} ")))),
        "no line per account:\n{text}"
    );
    app.stop().await;
}
