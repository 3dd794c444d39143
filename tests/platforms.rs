//! Every platform and token state through real HTTP: the daemon's API in front, the simulated
//! platforms behind, asserting the health JSON the API serves.

mod common;

use std::time::{Duration, Instant};

use common::{TestApp, code, spawn_app, spawn_app_cfg};
use secrecy::SecretString;
use serde_json::Value;
use socialsyncer::config::InstagramLogin;
use socialsyncer::domain::Platform;
use socialsyncer::platforms::{RefreshOutcome, TokenContext};
use socialsyncer::simulator::{Behavior, TokenSpec, TokenState};

const DAY: i64 = 86_400;

fn spec(p: Platform) -> TokenSpec {
    TokenSpec::valid(p, "0")
}

async fn details(app: &TestApp, key: &str, p: Platform, id: &str) -> Value {
    let (s, body) = app.get(key, &format!("/v1/accounts/{p}/{id}")).await;
    assert_eq!(s, 200, "{body}");
    body
}

async fn check_now(app: &TestApp, key: &str, p: Platform, id: &str) -> (u16, Value) {
    app.post(key, &format!("/v1/accounts/{p}/{id}/check"), &Value::Null)
        .await
}

fn recs(v: &Value) -> String {
    v["recommendations"].to_string()
}

#[tokio::test]
async fn facebook_states() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let fb = Platform::Facebook;

    // A Page token that never expires, data access 90 days out.
    let (_, v) = app
        .connect(
            &key,
            fb,
            "100",
            TokenSpec {
                expires_in: None,
                ..spec(fb)
            },
        )
        .await;
    assert_eq!(v["health"], "healthy", "{v}");
    assert_eq!(v["tokenValid"], true);
    assert_eq!(v["tokenExpiresAt"], Value::Null);
    assert_eq!(v["permissions"].as_array().unwrap().len(), 3);
    assert_eq!(v["recommendations"], serde_json::json!([]));

    let (_, v) = app
        .connect(
            &key,
            fb,
            "101",
            TokenSpec {
                expires_in: Some(3 * DAY + 600),
                ..spec(fb)
            },
        )
        .await;
    assert_eq!(v["health"], "warning");
    assert_eq!(
        v["recommendations"][0],
        "Token expires in 3 days. Consider reconnecting."
    );
    assert!(v["tokenExpiresAt"].as_str().unwrap().ends_with('Z'));

    let (_, v) = app
        .connect(
            &key,
            fb,
            "102",
            TokenSpec {
                expires_in: Some(-DAY),
                ..spec(fb)
            },
        )
        .await;
    assert_eq!(
        (v["health"].as_str(), v["tokenValid"].as_bool()),
        (Some("unhealthy"), Some(false))
    );
    assert!(recs(&v).contains("Token expired on"), "{v}");
    assert_eq!(v["needsReconnect"], true);

    let (_, v) = app
        .connect(
            &key,
            fb,
            "103",
            TokenSpec {
                state: TokenState::Revoked,
                ..spec(fb)
            },
        )
        .await;
    assert_eq!(v["health"], "unhealthy");
    assert!(recs(&v).contains("revoked by the user"), "{v}");
    assert!(v["lastError"].as_str().unwrap().contains("190/458"));

    let (_, v) = app
        .connect(
            &key,
            fb,
            "104",
            TokenSpec {
                state: TokenState::PasswordChanged,
                ..spec(fb)
            },
        )
        .await;
    assert!(recs(&v).contains("changed their password"));

    let (_, v) = app
        .connect(
            &key,
            fb,
            "105",
            TokenSpec {
                state: TokenState::LostPageRole,
                ..spec(fb)
            },
        )
        .await;
    assert!(recs(&v).contains("role on the Page"));
    assert_eq!(v["needsReconnect"], false);

    let scopes = vec!["pages_show_list".to_owned(), "pages_read_engagement".to_owned()];
    let (_, v) = app.connect(&key, fb, "106", TokenSpec { scopes, ..spec(fb) }).await;
    assert_eq!(v["health"], "unhealthy");
    assert_eq!(v["tokenValid"], true);
    assert_eq!(v["missingPermissions"], serde_json::json!(["pages_manage_posts"]));
    assert_eq!(
        v["recommendations"][0],
        "Missing permission pages_manage_posts: reconnect and grant it."
    );

    let (_, v) = app
        .connect(
            &key,
            fb,
            "107",
            TokenSpec {
                data_access_expires_in: Some(2 * DAY + 60),
                ..spec(fb)
            },
        )
        .await;
    assert_eq!(v["health"], "warning");
    assert!(recs(&v).contains("Data access expires in 2 days"));

    let (_, body) = app.get(&key, "/v1/accounts/health?platform=facebook").await;
    assert_eq!(
        body["summary"],
        serde_json::json!({"total":8,"healthy":1,"warning":2,"unhealthy":5,"unknown":0})
    );
    app.stop().await;
}

#[tokio::test]
async fn instagram_with_facebook_login() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let ig = Platform::Instagram;
    let (_, v) = app.connect(&key, ig, "17841400123456789", spec(ig)).await;
    assert_eq!(v["health"], "healthy", "{v}");
    assert!(
        v["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "instagram_content_publish")
    );
    let (_, v) = app
        .connect(
            &key,
            ig,
            "17841400000000001",
            TokenSpec {
                scopes: vec!["instagram_basic".into()],
                ..spec(ig)
            },
        )
        .await;
    assert_eq!(v["health"], "unhealthy");
    assert_eq!(
        v["recommendations"][0],
        "Missing permission instagram_content_publish: reconnect and grant it."
    );
    let (_, v) = app
        .connect(
            &key,
            ig,
            "17841400000000002",
            TokenSpec {
                state: TokenState::Checkpointed,
                ..spec(ig)
            },
        )
        .await;
    assert!(recs(&v).contains("checkpoint"));
    app.stop().await;
}

#[tokio::test]
async fn instagram_login_threads_tiktok_twitter_states() {
    // Without automatic refresh, so expiries show as they are (refresh has its own tests).
    let app = spawn_app_cfg("", |c| {
        c.platforms.instagram.login = InstagramLogin::Instagram;
        for p in [
            &mut c.platforms.instagram,
            &mut c.platforms.threads,
            &mut c.platforms.tiktok,
            &mut c.platforms.twitter,
        ] {
            p.auto_refresh = Some(false);
        }
    })
    .await;
    let key = app.key("acme").await;
    for p in [
        Platform::Instagram,
        Platform::Threads,
        Platform::Tiktok,
        Platform::Twitter,
    ] {
        let id = |n: u32| {
            if p == Platform::Tiktok {
                format!("open-{n}")
            } else {
                format!("{n}")
            }
        };
        let spec = |p| {
            let mut s = spec(p);
            if p == Platform::Instagram {
                s.scopes = vec![
                    "instagram_business_basic".into(),
                    "instagram_business_content_publish".into(),
                ];
            }
            s
        };
        let (_, v) = app.connect(&key, p, &id(1), spec(p)).await;
        assert_eq!(v["health"], "healthy", "{p}: {v}");
        assert_eq!(v["tokenValid"], true);

        // Expiry comes from what was stored at registration.
        let (_, v) = app
            .connect(
                &key,
                p,
                &id(2),
                TokenSpec {
                    expires_in: Some(3 * DAY + 600),
                    ..spec(p)
                },
            )
            .await;
        assert_eq!(v["health"], "warning", "{p}: {v}");
        assert_eq!(
            v["recommendations"][0],
            "Token expires in 3 days. Consider reconnecting."
        );

        let (_, v) = app
            .connect(
                &key,
                p,
                &id(3),
                TokenSpec {
                    state: TokenState::Revoked,
                    ..spec(p)
                },
            )
            .await;
        assert_eq!(
            (v["health"].as_str(), v["tokenValid"].as_bool()),
            (Some("unhealthy"), Some(false)),
            "{p}: {v}"
        );
        assert_eq!(v["needsReconnect"], true);

        let (_, v) = app
            .connect(
                &key,
                p,
                &id(4),
                TokenSpec {
                    expires_in: Some(-60),
                    ..spec(p)
                },
            )
            .await;
        assert_eq!(v["health"], "unhealthy", "{p}: {v}");
        assert!(recs(&v).contains("expired"), "{p}: {v}");
    }
    // Scopes the platforms need for the check itself.
    let (_, v) = app
        .connect(
            &key,
            Platform::Tiktok,
            "open-5",
            TokenSpec {
                scopes: vec!["video.publish".into()],
                ..spec(Platform::Tiktok)
            },
        )
        .await;
    assert_eq!(
        (v["health"].as_str(), v["tokenValid"].as_bool()),
        (Some("unhealthy"), Some(true)),
        "{v}"
    );
    assert!(v["lastError"].as_str().unwrap().contains("scope_not_authorized"));
    let (_, v) = app
        .connect(
            &key,
            Platform::Twitter,
            "5",
            TokenSpec {
                scopes: vec!["tweet.read".into()],
                ..spec(Platform::Twitter)
            },
        )
        .await;
    assert_eq!(v["health"], "unhealthy");
    assert_eq!(
        v["missingPermissions"],
        serde_json::json!(["tweet.write", "users.read"])
    );
    app.stop().await;
}

#[tokio::test]
async fn transient_failures_never_flip_a_healthy_account() {
    // Threads' code 4 is the app's own limit: every Threads call pauses (here for a second).
    let app = spawn_app_cfg("", |c| {
        c.platforms.threads.app_usage_pause = Some(socialsyncer::config::HumanDuration(Duration::from_secs(1)))
    })
    .await;
    let key = app.key("acme").await;
    for (i, p) in Platform::ALL.into_iter().enumerate() {
        let id = if p == Platform::Tiktok {
            format!("t{i}")
        } else {
            format!("{i}")
        };
        let (issued, v) = app.connect(&key, p, &id, spec(p)).await;
        assert_eq!(v["health"], "healthy", "{p}: {v}");
        for (b, status, want_retry) in [
            // Graph BUC throttles and X say when to come back, Threads' code 4 pauses the app's
            // calls for a known time; TikTok names no time.
            (Behavior::RateLimited, 503, p != Platform::Tiktok),
            (Behavior::ServerError, 503, false),
            (Behavior::Malformed, 502, false),
            (Behavior::Huge, 502, false),
        ] {
            app.sim.update(&issued.access_token, |t| t.behavior = b);
            let r = app
                .http
                .post(app.url(&format!("/v1/accounts/{p}/{id}/check")))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), status, "{p} {b:?}");
            assert_eq!(r.headers().contains_key("retry-after"), want_retry, "{p} {b:?}");
            let (_, body) = common::into_parts(r).await;
            assert_eq!(code(&body), "platform_unavailable");
            let v = details(&app, &key, p, &id).await;
            assert_eq!(v["health"], "healthy", "{p} {b:?}: {v}");
            assert_eq!(v["tokenValid"], true);
            // A throttle is a deferral, not a failure: it leaves the account as it was.
            assert_eq!(v["lastError"].is_string(), b != Behavior::RateLimited, "{p} {b:?}: {v}");
            if p == Platform::Threads && b == Behavior::RateLimited {
                tokio::time::sleep(Duration::from_millis(2100)).await;
            }
        }
        app.sim.update(&issued.access_token, |t| t.behavior = Behavior::Normal);
        let (s, v) = check_now(&app, &key, p, &id).await;
        assert_eq!((s, v["lastError"].clone()), (200, Value::Null), "{p}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_hanging_platform_is_bounded_by_the_timeout() {
    let app = spawn_app_cfg("", |c| {
        c.http.request_timeout = socialsyncer::config::HumanDuration(Duration::from_secs(1));
    })
    .await;
    let key = app.key("acme").await;
    let (_, v) = app.connect(&key, Platform::Twitter, "9", spec(Platform::Twitter)).await;
    assert_eq!(v["health"], "healthy");
    app.sim.set_platform_behavior(Platform::Twitter, Behavior::Hang);
    let started = Instant::now();
    let (s, body) = check_now(&app, &key, Platform::Twitter, "9").await;
    assert_eq!((s, code(&body)), (503, "platform_unavailable"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did not answer in time")
    );
    // Bounded by the 1 s timeout, with a wide margin for a loaded machine.
    assert!(started.elapsed() < Duration::from_secs(10));
    // Registration still succeeds while the platform hangs; the account stays unknown.
    let (_, v) = app
        .connect(&key, Platform::Twitter, "10", spec(Platform::Twitter))
        .await;
    assert_eq!(v["health"], "unknown");
    assert_eq!(details(&app, &key, Platform::Twitter, "9").await["health"], "healthy");
    app.stop().await;
}

#[tokio::test]
async fn a_wrong_app_secret_is_a_configuration_error_not_a_dead_token() {
    let app = spawn_app_cfg("", |c| {
        c.platforms.facebook.app_secret_file = None;
    })
    .await;
    let key = app.key("acme").await;
    let (_, v) = app
        .connect(&key, Platform::Facebook, "1", spec(Platform::Facebook))
        .await;
    assert_eq!(v["health"], "unknown");
    assert_eq!(v["tokenValid"], Value::Null);
    let (s, body) = check_now(&app, &key, Platform::Facebook, "1").await;
    assert_eq!((s, code(&body)), (503, "daemon_misconfigured"));
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    let (_, h) = common::into_parts(r).await;
    assert_eq!(h["status"], "degraded");
    assert!(h["problems"][0].as_str().unwrap().starts_with("facebook:"), "{h}");
    app.stop().await;

    // A secret the platform rejects (Graph code 190 about the app token).
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let (_, v) = app
        .connect(&key, Platform::Facebook, "2", spec(Platform::Facebook))
        .await;
    assert_eq!(v["health"], "healthy");
    let other = tempfile::tempdir().unwrap();
    let toml = format!(
        "[database]\nurl = \"sqlite://{}/socialsyncer.db\"\n{}",
        app.dir.path().display(),
        app.sim.config_toml(other.path()).unwrap()
    );
    std::fs::write(other.path().join("facebook_app_secret"), "wrong-secret").unwrap();
    let config = socialsyncer::config::Config::from_toml(&toml).unwrap();
    let state = socialsyncer::app::AppState::new(config, app.state.store.clone(), app.state.sealer.clone()).unwrap();
    let acc = state
        .store
        .all_accounts(Some(Platform::Facebook))
        .await
        .unwrap()
        .remove(0);
    let (fresh, outcome) = socialsyncer::checks::check_and_record(&state, acc).await.unwrap();
    assert!(
        matches!(outcome, socialsyncer::platforms::CheckOutcome::Misconfigured(_)),
        "{outcome:?}"
    );
    assert_eq!(
        fresh.health,
        socialsyncer::domain::Health::Healthy,
        "the account keeps its health"
    );
    assert_eq!(fresh.token_valid, Some(true));
    assert!(state.problems.list()[0].contains("app_id"));
    app.stop().await;
}

#[tokio::test]
async fn delete_revokes_at_the_platform_first() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    for (p, id) in [
        (Platform::Facebook, "1"),
        (Platform::Tiktok, "abc"),
        (Platform::Twitter, "2"),
        (Platform::Instagram, "3"),
    ] {
        let (issued, _) = app.connect(&key, p, id, spec(p)).await;
        let (s, v) = app.delete(&key, &format!("/v1/accounts/{p}/{id}")).await;
        assert_eq!(s, 200);
        assert_eq!(
            (v["deleted"].as_bool(), v["revoked"].as_bool()),
            (Some(true), Some(true)),
            "{p}: {v}"
        );
        assert_eq!(
            app.sim.token(&issued.access_token).unwrap().state,
            TokenState::Revoked,
            "{p}"
        );
    }
    // Threads has no revoke API.
    app.connect(&key, Platform::Threads, "4", spec(Platform::Threads)).await;
    let (_, v) = app.delete(&key, "/v1/accounts/threads/4").await;
    assert_eq!(
        (v["deleted"].as_bool(), v["revoked"].as_bool()),
        (Some(true), Some(false))
    );
    assert!(v["reason"].as_str().unwrap().contains("no API to revoke"));
    // A platform that is down: credentials are deleted anyway, and the answer says so.
    app.connect(&key, Platform::Twitter, "5", spec(Platform::Twitter)).await;
    app.sim.set_platform_behavior(Platform::Twitter, Behavior::ServerError);
    let (_, v) = app.delete(&key, "/v1/accounts/twitter/5").await;
    assert_eq!(
        (v["deleted"].as_bool(), v["revoked"].as_bool()),
        (Some(true), Some(false))
    );
    assert!(v["reason"].as_str().unwrap().contains("503"), "{v}");
    let (s, _) = app.get(&key, "/v1/accounts/twitter/5").await;
    assert_eq!(s, 404);
    app.stop().await;
}

#[tokio::test]
async fn adapters_refresh_and_rotate() {
    let app = spawn_app_cfg("", |c| c.platforms.instagram.login = InstagramLogin::Instagram).await;
    let platforms = &app.state.platforms;
    for p in [
        Platform::Tiktok,
        Platform::Twitter,
        Platform::Threads,
        Platform::Instagram,
    ] {
        let issued = app.sim.issue(p, spec(p));
        let access = SecretString::from(issued.access_token.clone());
        let refresh = issued.refresh_token.clone().map(SecretString::from);
        let t = TokenContext {
            account_id: "0",
            access_token: &access,
            refresh_token: refresh.as_ref(),
            platform_user_id: None,
            expires_at: None,
        };
        match platforms.refresh(p, &t).await {
            RefreshOutcome::Refreshed(n) => {
                use secrecy::ExposeSecret;
                assert_ne!(n.access_token.expose_secret(), &issued.access_token);
                assert!(n.expires_at.unwrap() > socialsyncer::domain::now());
                if let Some(old) = &issued.refresh_token {
                    let new = n.refresh_token.expect("rotated");
                    assert_ne!(new.expose_secret(), old);
                    assert!(!app.sim.refresh_token_live(old), "{p}: the old refresh token is dead");
                    assert!(app.sim.refresh_token_live(new.expose_secret()));
                }
            }
            o => panic!("{p}: {o:?}"),
        }
        // Using the rotated-away refresh token again.
        if issued.refresh_token.is_some() {
            let o = platforms.refresh(p, &t).await;
            match p {
                Platform::Tiktok => assert!(matches!(o, RefreshOutcome::Fatal(_)), "{o:?}"),
                // X answers 400 invalid_request "Value passed for the token was invalid".
                _ => assert!(matches!(o, RefreshOutcome::Fatal(_)), "{o:?}"),
            }
        }
    }
    // Facebook tokens cannot be refreshed; Threads tokens under 24 h old are not refreshed yet.
    let issued = app.sim.issue(
        Platform::Threads,
        TokenSpec {
            issued_ago: 60,
            ..spec(Platform::Threads)
        },
    );
    let access = SecretString::from(issued.access_token);
    let t = TokenContext {
        account_id: "0",
        access_token: &access,
        refresh_token: None,
        platform_user_id: None,
        expires_at: None,
    };
    assert!(matches!(
        platforms.refresh(Platform::Threads, &t).await,
        RefreshOutcome::Transient(_)
    ));
    assert!(matches!(
        platforms.refresh(Platform::Facebook, &t).await,
        RefreshOutcome::NotSupported(_)
    ));
    app.stop().await;
}
