//! Platform truth, round 3 (issue 24): whose ID is compared, which consent covers what, and
//! what a check says, against the simulator taught each documented behaviour (sources in
//! `src/platforms/README.md`). Each test failed on the code before its fix.

use serde_json::{Value, json};
use socialsyncer::config::InstagramLogin;
use socialsyncer::domain::{self, Platform};
use socialsyncer::simulator::TokenSpec;

use crate::common::{TestApp, spawn_app, spawn_app_cfg};

/// An Instagram Login token (its `instagram_business_*` scopes) of `user_id`, which only
/// graph.instagram.com takes.
fn ig_login(user_id: &str) -> TokenSpec {
    TokenSpec {
        scopes: vec![
            "instagram_business_basic".into(),
            "instagram_business_content_publish".into(),
        ],
        instagram_login_only: true,
        admin_id: None,
        ..TokenSpec::valid(Platform::Instagram, user_id)
    }
}

async fn detail(app: &TestApp, key: &str, platform: Platform, id: &str) -> Value {
    let (s, v) = app.get(key, &format!("/v1/accounts/{platform}/{id}")).await;
    assert_eq!(s, 200, "{v}");
    v
}

/// Item 2: Instagram Login's `/me` names the account twice, `id` (app-scoped) and `user_id`
/// (the professional account); an account registered under either is the token's owner.
#[tokio::test]
async fn an_instagram_login_account_is_its_tokens_owner_under_either_id() {
    let app = spawn_app_cfg("", |c| c.platforms.instagram.login = InstagramLogin::Instagram).await;
    let key = app.key("acme").await;
    app.register_as(
        &key,
        Platform::Instagram,
        "17841400000000301",
        ig_login("17841400000000301"),
    )
    .await;
    // The simulator's app-scoped ID is the professional ID behind a 9.
    app.register_as(
        &key,
        Platform::Instagram,
        "917841400000000302",
        ig_login("17841400000000302"),
    )
    .await;
    for id in ["17841400000000301", "917841400000000302"] {
        let v = detail(&app, &key, Platform::Instagram, id).await;
        assert_eq!(v["health"], "healthy", "{v}");
    }
    // Another account's token is still refused.
    app.register_as(
        &key,
        Platform::Instagram,
        "17841400000000399",
        ig_login("17841400000000303"),
    )
    .await;
    let v = detail(&app, &key, Platform::Instagram, "17841400000000399").await;
    assert_eq!(v["health"], "unhealthy", "{v}");
    app.stop().await;
}

/// Item 3: TikTok's `open_id` is dashed; a product that stored it without dashes has the
/// right account, and the platform's form is what the daemon keeps as the user.
#[tokio::test]
async fn a_tiktok_open_id_stored_without_dashes_is_the_same_account() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let dashed = "723f24d7-e717-40f8-a2b6-cb8464cd2301";
    let plain = dashed.replace('-', "");
    app.register_as(
        &key,
        Platform::Tiktok,
        &plain,
        TokenSpec::valid(Platform::Tiktok, dashed),
    )
    .await;
    let v = detail(&app, &key, Platform::Tiktok, &plain).await;
    assert_eq!(v["health"], "healthy", "{v}");
    let (user,): (Option<String>,) = sqlx::query_as(
        "SELECT h.platform_user_id FROM account_health h JOIN accounts a ON a.id = h.account_ref \
         WHERE a.account_id = $1",
    )
    .bind(&plain)
    .fetch_one(&app.db().await)
    .await
    .unwrap();
    assert_eq!(user.as_deref(), Some(dashed), "the platform's form is kept");
    app.stop().await;
}

async fn healthz(app: &TestApp) -> Value {
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    crate::common::into_parts(r).await.1
}

/// Item 11: a top-level `debug_token` error is about the call, not the account: an app
/// token refused as not being one ("(#100) You must provide an app access token…") and a
/// development-mode app's `{"data":[]}` are the daemon's configuration problem; the
/// account keeps its health and `/healthz` says why.
#[tokio::test]
async fn top_level_debug_token_errors_are_the_daemons_configuration_not_the_account() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let (_, v) = app
        .connect(
            &key,
            Platform::Facebook,
            "2000000000000401",
            TokenSpec::valid(Platform::Facebook, "0"),
        )
        .await;
    assert_eq!(v["health"], "healthy", "{v}");
    for tweak in [
        socialsyncer::simulator::Tweaks {
            app_token_refused: true,
            ..Default::default()
        },
        socialsyncer::simulator::Tweaks {
            app_in_development: true,
            ..Default::default()
        },
    ] {
        app.sim.set_tweaks(Platform::Facebook, tweak);
        let (s, body) = app
            .post(&key, "/v1/accounts/facebook/2000000000000401/check", &Value::Null)
            .await;
        assert_eq!((s, crate::common::code(&body)), (503, "daemon_misconfigured"), "{body}");
        let v = detail(&app, &key, Platform::Facebook, "2000000000000401").await;
        assert_eq!(
            (v["health"].as_str(), v["needsReconnect"].as_bool()),
            (Some("healthy"), Some(false)),
            "{v}"
        );
        let h = healthz(&app).await;
        assert_eq!(h["status"], "degraded", "{h}");
        assert!(h["problems"][0].as_str().unwrap().contains("debug_token"), "{h}");
    }
    app.stop().await;
}

/// Item 12, X: an app-only bearer token registered for an account is refused by
/// `/2/users/me` with `unsupported-authentication`: that account's token is the wrong kind
/// (reconnect it), not the daemon's app; and a token X issued without a refresh token says
/// why socialsyncer cannot renew it.
#[tokio::test]
async fn x_answers_about_the_accounts_token_are_the_accounts() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let body = json!({"platform": "twitter", "accountId": "5001", "username": "u",
        "accessToken": "AAAAAAAAAAAAAAAAAAAAAMLheAAAAAAA0%2BuSeid%2BULvsea4JtiGRiSDSJSI"});
    let (s, v) = app.post(&key, "/v1/accounts", &body).await;
    assert_eq!(s, 201, "{v}");
    let v = detail(&app, &key, Platform::Twitter, "5001").await;
    assert_eq!(
        (v["health"].as_str(), v["needsReconnect"].as_bool()),
        (Some("unhealthy"), Some(true)),
        "{v}"
    );
    assert!(
        v["lastError"].as_str().unwrap().contains("not an OAuth 2.0 user token"),
        "{v}"
    );
    assert_eq!(healthz(&app).await["status"], "ok", "the daemon's app is fine");
    let (_, v) = app
        .connect(
            &key,
            Platform::Twitter,
            "5002",
            TokenSpec {
                with_refresh: false,
                expires_in: Some(3 * 86_400),
                ..TokenSpec::valid(Platform::Twitter, "0")
            },
        )
        .await;
    assert!(v["recommendations"].to_string().contains("offline.access"), "{v}");
    app.stop().await;
}

/// Item 1: a Threads token registered without `expiresAt` is refreshed once it is a day old
/// (in socialsyncer's custody), and the answer's `expires_in` sets its expiry; in the
/// product's custody the unknown expiry is a warning.
#[tokio::test]
async fn a_token_without_a_known_expiry_is_refreshed_once_a_day_old_or_warned_about() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let issued = app.sim.issue(
        Platform::Threads,
        TokenSpec::valid(Platform::Threads, "3000000000000501"),
    );
    let body = json!({"platform": "threads", "accountId": "3000000000000501", "username": "u",
        "accessToken": issued.access_token, "scopes": ["threads_basic", "threads_content_publish"]});
    let (s, v) = app.post(&key, "/v1/accounts", &body).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["tokenExpiresAt"], Value::Null, "{v}");
    let before = app.sim.refreshes(Platform::Threads);
    app.state.clock.advance(25 * 3_600);
    let (s, v) = app
        .post(&key, "/v1/accounts/threads/3000000000000501/check", &Value::Null)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        app.sim.refreshes(Platform::Threads),
        before + 1,
        "refreshed once a day old"
    );
    assert!(
        v["tokenExpiresAt"].as_str().is_some(),
        "the refresh answer's expiry: {v}"
    );
    assert_eq!(v["health"], "healthy", "{v}");
    // The product's custody: not refreshed by socialsyncer, and said so.
    let issued = app.sim.issue(
        Platform::Threads,
        TokenSpec::valid(Platform::Threads, "3000000000000502"),
    );
    let body = json!({"platform": "threads", "accountId": "3000000000000502", "username": "u",
        "accessToken": issued.access_token, "scopes": ["threads_basic", "threads_content_publish"],
        "custody": "product"});
    let (s, v) = app.post(&key, "/v1/accounts", &body).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["health"], "warning", "{v}");
    assert!(v["recommendations"].to_string().contains("expiry is unknown"), "{v}");
    app.stop().await;
}

/// Item 13: a throttled account says why it waits and until when (`lastError`, a
/// recommendation), when it is checked next (`nextCheckAt`), and writes one `deferred`
/// history row for the deferral, not one per postponed check; an account registered but not
/// checked yet says when its first check runs.
#[tokio::test]
async fn a_deferred_account_says_why_and_until_when() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let (issued, _) = app
        .connect(
            &key,
            Platform::Twitter,
            "7001",
            TokenSpec::valid(Platform::Twitter, "0"),
        )
        .await;
    app.sim.update(&issued.access_token, |t| {
        t.behavior = socialsyncer::simulator::Behavior::RateLimited
    });
    for _ in 0..2 {
        let (s, _) = app.post(&key, "/v1/accounts/twitter/7001/check", &Value::Null).await;
        assert_eq!(s, 503);
    }
    let v = detail(&app, &key, Platform::Twitter, "7001").await;
    let why = v["lastError"].as_str().unwrap_or_default().to_owned();
    assert!(
        why.starts_with("X (Twitter) is rate-limiting this account until ")
            && why.ends_with("socialsyncer checks it then."),
        "{v}"
    );
    assert!(
        v["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == why.as_str()),
        "{v}"
    );
    assert!(v["nextCheckAt"].as_str().is_some(), "{v}");
    assert_eq!(v["health"], "healthy", "a deferral keeps the assessment: {v}");
    let (_, h) = app.get(&key, "/v1/accounts/twitter/7001/history").await;
    let deferred = h["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "deferred")
        .count();
    assert_eq!(deferred, 1, "one row for the deferral: {h}");
    // Registered, not checked yet.
    let ws = app.state.store.ensure_workspace("acme", domain::now()).await.unwrap();
    let input = socialsyncer::accounts::RegistrationInput {
        platform: "threads".into(),
        account_id: "3000000000000701".into(),
        username: "u".into(),
        access_token: secrecy::SecretString::from("THQV-not-checked".to_owned()),
        refresh_token: None,
        expires_at: None,
        scopes: vec![],
        custody: None,
        instagram_login: None,
    };
    socialsyncer::accounts::register(&app.state.checker, ws, &input.validate().unwrap())
        .await
        .unwrap();
    let v = detail(&app, &key, Platform::Threads, "3000000000000701").await;
    assert!(
        v["recommendations"][0]
            .as_str()
            .unwrap()
            .starts_with("Not checked yet: its first check runs at "),
        "{v}"
    );
    app.stop().await;
}

/// Item 9: calls made with a Threads token carry `appsecret_proof` when the Threads app's
/// secret is configured, so an app that requires it works; a proof the platform refuses
/// (a wrong secret) is the daemon's configuration problem, and the account is untouched.
#[tokio::test]
async fn calls_made_with_a_token_carry_appsecret_proof() {
    let app = spawn_app().await;
    app.sim.set_tweaks(
        Platform::Threads,
        socialsyncer::simulator::Tweaks {
            require_appsecret_proof: true,
            ..Default::default()
        },
    );
    let key = app.key("acme").await;
    let (_, v) = app
        .connect(
            &key,
            Platform::Threads,
            "3000000000000901",
            TokenSpec::valid(Platform::Threads, "0"),
        )
        .await;
    assert_eq!(v["health"], "healthy", "{v}");
    app.stop().await;

    let wrong = tempfile::tempdir().unwrap();
    let file = wrong.path().join("threads_secret");
    std::fs::write(&file, "not-the-threads-secret").unwrap();
    let app = spawn_app_cfg("", move |c| c.platforms.threads.app_secret_file = Some(file)).await;
    let key = app.key("acme").await;
    let (_, v) = app
        .connect(
            &key,
            Platform::Threads,
            "3000000000000902",
            TokenSpec::valid(Platform::Threads, "0"),
        )
        .await;
    assert_eq!(
        (v["health"].as_str(), v["needsReconnect"].as_bool()),
        (Some("unknown"), Some(false)),
        "{v}"
    );
    let (s, body) = app
        .post(&key, "/v1/accounts/threads/3000000000000902/check", &Value::Null)
        .await;
    assert_eq!((s, crate::common::code(&body)), (503, "daemon_misconfigured"), "{body}");
    let h = healthz(&app).await;
    assert!(h["problems"].to_string().contains("appsecret_proof"), "{h}");
    drop(wrong);
    app.stop().await;
}

/// Item 7: when the person granted "current Pages only", `debug_token`'s `granular_scopes`
/// name the Pages (and Instagram accounts) each permission covers; a Page or Instagram
/// account outside them lacks the permission, though the token works.
#[tokio::test]
async fn a_permission_granted_for_other_pages_is_missing_for_this_one() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let pages = [
        ("2000000000000951", Some("17841400000000951")),
        ("2000000000000952", Some("17841400000000952")),
    ];
    // Facebook: the grant covers Page 952 only.
    for (id, expect) in [("2000000000000951", "unhealthy"), ("2000000000000952", "healthy")] {
        let (issued, _) = app
            .connect(&key, Platform::Facebook, id, TokenSpec::valid(Platform::Facebook, "0"))
            .await;
        app.sim.grant_only(&issued.access_token, &pages, &["2000000000000952"]);
        let (_, v) = app
            .post(&key, &format!("/v1/accounts/facebook/{id}/check"), &Value::Null)
            .await;
        assert_eq!(v["health"], expect, "{id}: {v}");
        if expect == "unhealthy" {
            assert_eq!(v["missingPermissions"], json!(["pages_manage_posts"]), "{v}");
            assert_eq!(v["tokenValid"], true, "{v}");
        }
    }
    // Instagram through Facebook Login: the Instagram permissions name the accounts.
    for (id, expect) in [("17841400000000951", "unhealthy"), ("17841400000000952", "healthy")] {
        let (issued, _) = app
            .connect(
                &key,
                Platform::Instagram,
                id,
                TokenSpec::valid(Platform::Instagram, "0"),
            )
            .await;
        app.sim.grant_only(&issued.access_token, &pages, &["2000000000000952"]);
        let (_, v) = app
            .post(&key, &format!("/v1/accounts/instagram/{id}/check"), &Value::Null)
            .await;
        assert_eq!(v["health"], expect, "{id}: {v}");
        if expect == "unhealthy" {
            assert_eq!(
                v["missingPermissions"],
                json!(["instagram_basic", "instagram_content_publish"]),
                "{v}"
            );
        }
    }
    app.stop().await;
}

async fn delete(app: &TestApp, key: &str, platform: Platform, id: &str) -> Value {
    let r = app
        .http
        .delete(app.url(&format!("/v1/accounts/{platform}/{id}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let (s, v) = crate::common::into_parts(r).await;
    assert_eq!(s, 200, "{v}");
    v
}

/// Item 5: a Meta grant is revoked only when the operator turns it on; then a sibling
/// account whose Meta user was never learned is asked first and counts; a TikTok revoke,
/// which disconnects the app from that TikTok user everywhere, is not made while another
/// workspace holds the same `open_id` (stored with or without dashes).
#[tokio::test]
async fn revocation_reaches_only_what_it_may() {
    // Off by default: the person removes the app themselves.
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let (issued, _) = app
        .connect(
            &key,
            Platform::Facebook,
            "2000000000001001",
            TokenSpec::valid(Platform::Facebook, "0"),
        )
        .await;
    let v = delete(&app, &key, Platform::Facebook, "2000000000001001").await;
    assert_eq!(v["revoked"], false, "{v}");
    assert!(v["reason"].as_str().unwrap().contains("revoke_grant"), "{v}");
    assert!(app.sim.token(&issued.access_token).unwrap().state == socialsyncer::simulator::TokenState::Valid);
    app.stop().await;

    let app = spawn_app_cfg("", |c| c.platforms.facebook.revoke_grant = Some(true)).await;
    let key = app.key("acme").await;
    app.connect(
        &key,
        Platform::Facebook,
        "2000000000001002",
        TokenSpec::valid(Platform::Facebook, "0"),
    )
    .await;
    // A sibling Page of the same person, registered in another workspace and never checked.
    let sibling = app.sim.issue(
        Platform::Facebook,
        TokenSpec::valid(Platform::Facebook, "2000000000001003"),
    );
    let ws = app.state.store.ensure_workspace("other", domain::now()).await.unwrap();
    let input = socialsyncer::accounts::RegistrationInput {
        platform: "facebook".into(),
        account_id: "2000000000001003".into(),
        username: "u".into(),
        access_token: secrecy::SecretString::from(sibling.access_token.clone()),
        refresh_token: None,
        expires_at: None,
        scopes: vec![],
        custody: None,
        instagram_login: None,
    };
    socialsyncer::accounts::register(&app.state.checker, ws, &input.validate().unwrap())
        .await
        .unwrap();
    let v = delete(&app, &key, Platform::Facebook, "2000000000001002").await;
    assert_eq!(v["revoked"], false, "the unchecked sibling counts: {v}");
    assert_eq!(
        app.sim.token(&sibling.access_token).unwrap().state,
        socialsyncer::simulator::TokenState::Valid,
        "the sibling's grant lives"
    );
    // TikTok: the same user in two workspaces, one stored without dashes.
    let dashed = "723f24d7-e717-40f8-a2b6-cb8464cd1001";
    app.connect(&key, Platform::Tiktok, dashed, TokenSpec::valid(Platform::Tiktok, "0"))
        .await;
    let plain = dashed.replace('-', "");
    let other_key = app.key("other").await;
    app.register_as(
        &other_key,
        Platform::Tiktok,
        &plain,
        TokenSpec::valid(Platform::Tiktok, dashed),
    )
    .await;
    let v = delete(&app, &key, Platform::Tiktok, dashed).await;
    assert_eq!(v["revoked"], false, "{v}");
    assert!(
        app.sim.live_tokens(Platform::Tiktok, dashed) >= 1,
        "the other workspace's grant lives"
    );
    let v = delete(&app, &other_key, Platform::Tiktok, &plain).await;
    assert_eq!(v["revoked"], true, "the last one revokes: {v}");
    app.stop().await;
}

/// Identity reads (calls that are not token-endpoint calls) of `p` during `f`.
fn identity_reads(app: &TestApp, p: Platform) -> u64 {
    app.sim.calls(p) - app.sim.token_calls(p)
}

/// Item 6: a check spends the product's quota, so it spends little. A day of an X account
/// in socialsyncer's custody, checked at every refresh (every 75 minutes), reads
/// `/2/users/me` once a day by default (not at every refresh), never with
/// `identity_check = "never"` while refreshes succeed; TikTok at most once a
/// `check_interval`. The figures are printed per account per day.
#[tokio::test]
async fn identity_reads_per_account_per_day_stay_within_their_period() {
    for (setting, most) in [(None, 2), (Some(socialsyncer::config::IdentityCheck::Never), 0)] {
        let app = spawn_app_cfg("", move |c| c.platforms.twitter.identity_check = setting).await;
        let key = app.key("acme").await;
        let mut reads = std::collections::BTreeMap::new();
        for (p, id) in [(Platform::Twitter, "8001"), (Platform::Tiktok, "tt-8001")] {
            app.connect(&key, p, id, TokenSpec::valid(p, "0")).await;
            let before = identity_reads(&app, p);
            let refreshes = app.sim.refreshes(p);
            // A day on the test clock, a check every 75 minutes (each in the refresh window).
            for _ in 0..(24 * 60 / 75) {
                app.state.clock.advance(75 * 60);
                let (s, v) = app
                    .post(&key, &format!("/v1/accounts/{p}/{id}/check"), &Value::Null)
                    .await;
                assert_eq!((s, v["health"].as_str()), (200, Some("healthy")), "{v}");
            }
            assert!(app.sim.refreshes(p) - refreshes >= 19, "refreshed at every check");
            reads.insert(p.as_str(), identity_reads(&app, p) - before);
        }
        eprintln!("identity reads per account per day (identity_check {setting:?}): {reads:?}");
        assert!(reads["twitter"] <= most, "X: {reads:?}");
        // TikTok: at most one per check_interval (6 hours by default) and one more for the
        // period the day started in.
        let per_day = 86_400 / app.state.checker.config().health.check_interval.secs().max(1) as u64;
        assert!(reads["tiktok"] <= per_day + 1, "TikTok: {reads:?}");
        app.stop().await;
    }
}

/// Item 12: `refreshExpiresAt` is accepted at registration, and a refresh token about to
/// expire is warned about; a wrong one is a clear 400.
#[tokio::test]
async fn refresh_expires_at_is_taken_at_registration() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let issued = app
        .sim
        .issue(Platform::Tiktok, TokenSpec::valid(Platform::Tiktok, "tt-9001"));
    let soon = domain::rfc3339(domain::now() + 2 * 86_400);
    let mut body = json!({"platform": "tiktok", "accountId": "tt-9001", "username": "u",
        "accessToken": issued.access_token, "refreshToken": issued.refresh_token,
        "scopes": ["user.info.basic", "video.publish"], "refreshExpiresAt": soon});
    let (s, v) = app.post(&key, "/v1/accounts", &body).await;
    assert_eq!(s, 201, "{v}");
    assert!(
        v["recommendations"].to_string().contains("Refresh token expires"),
        "{v}"
    );
    assert_eq!(v["health"], "warning", "{v}");
    body["accountId"] = json!("tt-9002");
    body["refreshExpiresAt"] = json!("next week");
    let (s, v) = app.post(&key, "/v1/accounts", &body).await;
    assert_eq!((s, crate::common::code(&v)), (400, "invalid_refresh_expires_at"), "{v}");
    app.stop().await;
}

/// Item 8: `debug_token` only introspects. A checkpoint that shows only on calls made with
/// the token is found by one cheap read of the Page (or Instagram account) with the token:
/// unhealthy, with the checkpoint's advice (log in at facebook.com, no reconnect).
#[tokio::test]
async fn a_checkpoint_that_only_calls_show_is_found_by_a_call_with_the_token() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    for (p, id) in [
        (Platform::Facebook, "2000000000001101"),
        (Platform::Instagram, "17841400000001101"),
    ] {
        let (issued, v) = app.connect(&key, p, id, TokenSpec::valid(p, "0")).await;
        assert_eq!(v["health"], "healthy", "{v}");
        app.sim.update(&issued.access_token, |t| {
            t.state = socialsyncer::simulator::TokenState::CheckpointedOnCalls
        });
        let (_, v) = app
            .post(&key, &format!("/v1/accounts/{p}/{id}/check"), &Value::Null)
            .await;
        assert_eq!(
            (v["health"].as_str(), v["needsReconnect"].as_bool()),
            (Some("unhealthy"), Some(false)),
            "{p}: {v}"
        );
        assert!(
            v["recommendations"][0]
                .as_str()
                .unwrap()
                .contains("log in at facebook.com"),
            "{v}"
        );
    }
    app.stop().await;
}

/// Item 12, TikTok: a refresh token issued to another client (another TikTok app) is the
/// configuration's problem, like Meta's "another app": the account is not told to
/// reconnect, and `/healthz` says which.
#[tokio::test]
async fn a_tiktok_refresh_token_of_another_client_is_not_a_dead_grant() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let issued = app.sim.issue(
        Platform::Tiktok,
        TokenSpec {
            expires_in: Some(600),
            ..TokenSpec::valid(Platform::Tiktok, "tt-9101")
        },
    );
    let body = json!({"platform": "tiktok", "accountId": "tt-9101", "username": "u",
        "accessToken": issued.access_token, "refreshToken": "rt-other-client-token",
        "expiresAt": domain::rfc3339(issued.expires_at.unwrap()),
        "scopes": ["user.info.basic", "video.publish"]});
    let (s, v) = app.post(&key, "/v1/accounts", &body).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["needsReconnect"], false, "{v}");
    let h = healthz(&app).await;
    assert!(h["problems"].to_string().contains("another TikTok app"), "{h}");
    app.stop().await;
}

/// Item 12, X: a revoke whose refresh-token step fails still revokes the access token, and
/// says the grant may live on.
#[tokio::test]
async fn an_x_revoke_revokes_the_access_token_when_the_refresh_token_step_fails() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let (issued, _) = app
        .connect(
            &key,
            Platform::Twitter,
            "9201",
            TokenSpec::valid(Platform::Twitter, "0"),
        )
        .await;
    app.sim.set_tweaks(
        Platform::Twitter,
        socialsyncer::simulator::Tweaks {
            refresh_revoke_down: true,
            ..Default::default()
        },
    );
    let v = delete(&app, &key, Platform::Twitter, "9201").await;
    assert_eq!(v["revoked"], false, "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("the access token was revoked but the refresh token could not be"),
        "{v}"
    );
    assert_eq!(
        app.sim.token(&issued.access_token).unwrap().state,
        socialsyncer::simulator::TokenState::Revoked,
        "the access token went"
    );
    app.stop().await;
}

/// Item 4: a product holds an Instagram Login account while socialsyncer is configured for
/// Facebook Login, and registered it without `instagramLogin`. graph.facebook.com "cannot
/// parse" its token; before calling it dead, the other login's host is asked once, the
/// account is healthy, not "reconnect", and its login is learned for the checks to come.
#[tokio::test]
async fn a_token_of_the_other_instagram_login_is_never_called_dead() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    app.register_as(
        &key,
        Platform::Instagram,
        "17841400000001201",
        ig_login("17841400000001201"),
    )
    .await;
    let v = detail(&app, &key, Platform::Instagram, "17841400000001201").await;
    assert_eq!(
        (v["health"].as_str(), v["needsReconnect"].as_bool()),
        (Some("healthy"), Some(false)),
        "{v}"
    );
    assert_eq!(v["instagramLogin"], "instagram", "learned: {v}");
    // A Facebook Login token registered as an Instagram Login one: the same, the other way.
    let issued = app.sim.issue(
        Platform::Instagram,
        TokenSpec::valid(Platform::Instagram, "17841400000001203"),
    );
    let body = json!({"platform": "instagram", "accountId": "17841400000001203", "username": "u",
        "accessToken": issued.access_token, "instagramLogin": "instagram",
        "scopes": ["instagram_basic", "instagram_content_publish"]});
    let (s, v) = app.post(&key, "/v1/accounts", &body).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        (v["health"].as_str(), v["instagramLogin"].as_str()),
        (Some("healthy"), Some("facebook")),
        "{v}"
    );
    // A token neither host can parse is still dead.
    let body = json!({"platform": "instagram", "accountId": "17841400000001202", "username": "u",
        "accessToken": "EAAGnot-a-token", "scopes": ["instagram_basic", "instagram_content_publish"]});
    let (s, v) = app.post(&key, "/v1/accounts", &body).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["health"], "unhealthy", "{v}");
    app.stop().await;
}

/// Item 4: one fleet with both Instagrams. The login is each account's own
/// (`instagramLogin` at registration, shown in its JSON, the configured one by default): an
/// Instagram Login account is checked on graph.instagram.com and refreshed there while the
/// configured login is Facebook's, and a Facebook Login account beside it is checked on
/// graph.facebook.com and never refreshed. The simulator's hosts each refuse the other's
/// tokens, so each assertion holds only if the right host was asked.
#[tokio::test]
async fn one_fleet_holds_both_instagrams_each_checked_and_refreshed_by_its_own_login() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let ig = app.sim.issue(
        Platform::Instagram,
        TokenSpec {
            expires_in: Some(5 * 86_400),
            ..ig_login("17841400000001301")
        },
    );
    let body = json!({"platform": "instagram", "accountId": "17841400000001301", "username": "ig",
        "accessToken": ig.access_token, "instagramLogin": "instagram",
        "expiresAt": domain::rfc3339(ig.expires_at.unwrap()),
        "scopes": ["instagram_business_basic", "instagram_business_content_publish"]});
    let (s, v) = app.post(&key, "/v1/accounts", &body).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        (v["health"].as_str(), v["instagramLogin"].as_str()),
        (Some("healthy"), Some("instagram")),
        "{v}"
    );
    let fb = app.sim.issue(
        Platform::Instagram,
        TokenSpec {
            expires_in: Some(5 * 86_400),
            ..TokenSpec::valid(Platform::Instagram, "17841400000001302")
        },
    );
    let body = json!({"platform": "instagram", "accountId": "17841400000001302", "username": "fb",
        "accessToken": fb.access_token, "expiresAt": domain::rfc3339(fb.expires_at.unwrap()),
        "scopes": ["instagram_basic", "instagram_content_publish"]});
    let (s, v) = app.post(&key, "/v1/accounts", &body).await;
    assert_eq!(s, 201, "{v}");
    // Its 5 days left are a warning: a Facebook Login token is not refreshed (the
    // Instagram Login one's 5 days are not, as it will be).
    assert_eq!(
        (v["health"].as_str(), v["instagramLogin"].as_str()),
        (Some("warning"), Some("facebook")),
        "the configured login by default: {v}"
    );
    // A day later both are in their refresh window: only the Instagram Login one refreshes.
    app.state.clock.advance(25 * 3_600);
    let before = app.sim.refreshes(Platform::Instagram);
    let (s, v) = app
        .post(&key, "/v1/accounts/instagram/17841400000001301/check", &Value::Null)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(app.sim.refreshes(Platform::Instagram), before + 1, "{v}");
    let expires = domain::parse_rfc3339(v["tokenExpiresAt"].as_str().unwrap()).unwrap();
    assert!(expires > ig.expires_at.unwrap() + 50 * 86_400, "{v}");
    assert_eq!(v["health"], "healthy", "{v}");
    let (s, v) = app
        .post(&key, "/v1/accounts/instagram/17841400000001302/check", &Value::Null)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(app.sim.refreshes(Platform::Instagram), before + 1, "{v}");
    assert_eq!(
        (v["health"].as_str(), v["tokenValid"].as_bool()),
        (Some("warning"), Some(true)),
        "{v}"
    );
    // The login is validated: a value it does not know, and a platform that has none.
    for (body, code) in [
        (
            json!({"platform": "instagram", "accountId": "17841400000001304", "username": "u",
                "accessToken": "tok", "instagramLogin": "tiktok"}),
            "",
        ),
        (
            json!({"platform": "threads", "accountId": "3000000000000509", "username": "u",
                "accessToken": "tok", "instagramLogin": "instagram"}),
            "invalid_instagram_login",
        ),
    ] {
        let (s, v) = app.post(&key, "/v1/accounts", &body).await;
        assert_eq!(s, 400, "{v}");
        assert!(
            v.to_string().contains(code) && v.to_string().contains("instagram"),
            "{v}"
        );
    }
    app.stop().await;
}
