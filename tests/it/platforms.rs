//! Every platform and token state through real HTTP: the daemon's API in front, the simulated
//! platforms behind, asserting the health JSON the API serves.

use std::time::{Duration, Instant};

use crate::common::{TestApp, code, spawn_app, spawn_app_cfg};
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
        format!(
            "Token expires in 3 days, on {}. Consider reconnecting.",
            socialsyncer::health::minute(
                socialsyncer::domain::parse_rfc3339(v["tokenExpiresAt"].as_str().unwrap()).unwrap()
            )
        )
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
    // "restore the role, then reconnect": the words and needsReconnect agree.
    assert_eq!(v["needsReconnect"], true);

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
            s.expires_in = Some(60 * DAY);
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
            format!(
                "Token expires in 3 days, on {}. Consider reconnecting.",
                socialsyncer::health::minute(
                    socialsyncer::domain::parse_rfc3339(v["tokenExpiresAt"].as_str().unwrap()).unwrap()
                )
            )
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
        app.sim.set_tweaks(
            Platform::Tiktok,
            socialsyncer::simulator::Tweaks {
                retry_after: Some("1".into()),
                ..Default::default()
            },
        );
        for (b, status, want_retry) in [
            // Graph BUC throttles, X and (here) TikTok say when to come back; Threads' code 4
            // pauses the app's calls for a known time.
            (Behavior::RateLimited, 503, true),
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
            let (_, body) = crate::common::into_parts(r).await;
            assert_eq!(code(&body), "platform_unavailable");
            let v = details(&app, &key, p, &id).await;
            assert_eq!(v["health"], "healthy", "{p} {b:?}: {v}");
            assert_eq!(v["tokenValid"], true);
            // A throttle is a deferral, not a failure: it leaves the account as it was, and
            // says why it waits and until when (issue 24 item 13).
            let e = v["lastError"].as_str().unwrap_or_default();
            assert_eq!(
                e.contains("is rate-limiting") && e.ends_with("socialsyncer checks it then."),
                b == Behavior::RateLimited,
                "{p} {b:?}: {v}"
            );
            // Ten megabytes are cut off at http.max_response_bytes, not read and parsed.
            if b == Behavior::Huge {
                let e = v["lastError"].as_str().unwrap();
                assert!(e.contains("larger than 1048576 bytes"), "{p}: {e}");
            }
            // App-wide throttles (Threads' code 4, TikTok) hold the platform for a moment.
            if matches!(p, Platform::Threads | Platform::Tiktok) && b == Behavior::RateLimited {
                // Real time: the Graph adapter's own pause (code 4) goes by the system clock.
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
    let (_, h) = crate::common::into_parts(r).await;
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
    let toml = app.sim.config_toml(other.path()).unwrap();
    std::fs::write(other.path().join("facebook_app_secret"), "wrong-secret").unwrap();
    let mut config = socialsyncer::config::Config::from_toml(&toml).unwrap();
    app.same_database(&mut config);
    let state = socialsyncer::app::AppState::new(config, app.state.store.clone(), app.state.sealer.clone()).unwrap();
    let acc = state
        .store
        .all_accounts(Some(Platform::Facebook))
        .await
        .unwrap()
        .remove(0);
    let (fresh, outcome) = socialsyncer::checks::check_and_record(&state.checker, acc)
        .await
        .unwrap();
    assert!(
        matches!(outcome, socialsyncer::platforms::CheckOutcome::Misconfigured(_)),
        "{outcome:?}"
    );
    assert_eq!(
        fresh.state.health,
        socialsyncer::domain::Health::Healthy,
        "the account keeps its health"
    );
    assert_eq!(fresh.state.token_valid, Some(true));
    assert!(state.problems.list()[0].contains("app_id"));
    app.stop().await;
}

#[tokio::test]
async fn delete_revokes_at_the_platform_first() {
    // Meta grants are revoked only when the operator turns it on (issue 24 item 5).
    let app = spawn_app_cfg("", |c| c.platforms.facebook.revoke_grant = Some(true)).await;
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
        let issued = app.sim.issue(
            p,
            TokenSpec {
                // An Instagram Login token: graph.instagram.com refreshes it.
                instagram_login_only: p == Platform::Instagram,
                ..spec(p)
            },
        );
        let access = SecretString::from(issued.access_token.clone());
        let refresh = issued.refresh_token.clone().map(SecretString::from);
        let t = TokenContext {
            account_id: "0",
            access_token: &access,
            refresh_token: refresh.as_ref(),
            platform_user_id: None,
            expires_at: None,
            instagram_login: None,
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
        instagram_login: None,
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

// ---- Issue 10: the real platforms' behaviour, each through the adapters and the API ----

/// Another daemon (or a `check` process) on the app's database file and simulated
/// platforms; `secrets` overwrite secret files (name, content) before it reads them.
async fn second_state(app: &TestApp, secrets: &[(&str, &str)]) -> socialsyncer::app::AppState {
    let dir = app.dir.path();
    let mut config = socialsyncer::config::Config::from_toml(&format!(
        "[http]\nrequest_timeout = \"5s\"\n{}",
        app.sim.config_toml(dir).unwrap()
    ))
    .unwrap();
    app.same_database(&mut config);
    for (name, content) in secrets {
        std::fs::write(dir.join(name), content).unwrap();
    }
    socialsyncer::app::AppState::build(config).await.unwrap()
}

async fn alert_kinds(app: &TestApp) -> Vec<String> {
    let db = app.db().await;
    let rows: Vec<(String,)> = sqlx::query_as("SELECT kind FROM alert_outbox ORDER BY id")
        .fetch_all(&db)
        .await
        .unwrap();
    rows.into_iter().map(|(k,)| k).collect()
}

async fn healthz(app: &TestApp) -> Value {
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    crate::common::into_parts(r).await.1
}

#[tokio::test]
async fn a_meta_revoke_never_removes_a_grant_other_accounts_share() {
    // Meta grants are revoked only when the operator turns it on (issue 24 item 5).
    let app = spawn_app_cfg("", |c| c.platforms.facebook.revoke_grant = Some(true)).await;
    let acme = app.key("acme").await;
    let other = app.key("other").await;
    let fb = Platform::Facebook;
    // Three Pages granted by the same person (the simulator's default admin), one of them in
    // another workspace, and one Instagram account through Facebook Login by that person.
    let (p1, v) = app.connect(&acme, fb, "500", spec(fb)).await;
    assert_eq!(v["health"], "healthy", "{v}");
    let (p2, _) = app.connect(&acme, fb, "501", spec(fb)).await;
    let (p3, _) = app.connect(&other, fb, "502", spec(fb)).await;
    let (ig, _) = app
        .connect(
            &acme,
            Platform::Instagram,
            "17841400000000500",
            spec(Platform::Instagram),
        )
        .await;
    // A Page whose admin is nobody else's.
    let (solo, _) = app
        .connect(
            &acme,
            fb,
            "503",
            TokenSpec {
                admin_id: Some("2000000000000002".into()),
                ..spec(fb)
            },
        )
        .await;

    let (s, v) = app.delete(&acme, "/v1/accounts/facebook/500").await;
    assert_eq!(s, 200);
    assert_eq!(v["deleted"], true);
    assert_eq!(v["revoked"], false, "{v}");
    // Only this workspace's accounts are counted (2: a Page and the Instagram account);
    // the other workspace's Page stops the revocation too, without being told of.
    assert_eq!(
        v["reason"],
        "the grant is shared with 2 other connected accounts of this workspace"
    );
    for t in [&p1, &p2, &p3, &ig] {
        assert_eq!(app.sim.token(&t.access_token).unwrap().state, TokenState::Valid);
    }
    let v = details(&app, &other, fb, "502").await;
    assert_eq!(v["health"], "healthy");

    // The one Page of its admin: revoked with the app token, not the Page token.
    let (s, v) = app.delete(&acme, "/v1/accounts/facebook/503").await;
    assert_eq!((s, &v["revoked"]), (200, &Value::Bool(true)), "{v}");
    assert_eq!(app.sim.token(&solo.access_token).unwrap().state, TokenState::Revoked);
    assert_eq!(app.sim.token(&p2.access_token).unwrap().state, TokenState::Valid);

    // Graph refuses DELETE /permissions with a Page token, as the simulator was taught.
    let r = app
        .http
        .delete(format!(
            "{}/v23.0/{}/permissions",
            app.sim.base_url(fb),
            socialsyncer::simulator::DEFAULT_PAGE_ADMIN
        ))
        .query(&[("access_token", &p2.access_token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], 200);

    // Once the others are gone, the last one revokes the person's grant.
    app.delete(&acme, "/v1/accounts/facebook/501").await;
    // Only another workspace's account shares it now: not revoked, and nothing counted.
    let (_, v) = app.delete(&acme, "/v1/accounts/instagram/17841400000000500").await;
    assert_eq!(v["revoked"], false, "{v}");
    assert!(!v["reason"].as_str().unwrap().contains('1'), "{v}");
    let (_, v) = app.delete(&other, "/v1/accounts/facebook/502").await;
    assert_eq!(v["revoked"], true, "{v}");
    assert_eq!(app.sim.token(&p3.access_token).unwrap().state, TokenState::Revoked);
    app.stop().await;
}

#[tokio::test]
async fn dead_meta_tokens_under_other_codes_are_dead_and_another_app_is_not_a_revocation() {
    let app = spawn_app_cfg("", |c| c.platforms.instagram.login = InstagramLogin::Instagram).await;
    let key = app.key("acme").await;
    // Threads and Instagram Login answer /me with a revoked token as 100/33.
    for p in [Platform::Threads, Platform::Instagram] {
        let mut s = spec(p);
        if p == Platform::Instagram {
            s.scopes = vec![
                "instagram_business_basic".into(),
                "instagram_business_content_publish".into(),
            ];
            s.admin_id = None;
            s.instagram_login_only = true;
        }
        let (i, v) = app.connect(&key, p, "900", s).await;
        assert_eq!(v["health"], "healthy", "{p}: {v}");
        app.sim.update(&i.access_token, |t| t.state = TokenState::Revoked);
        let (s, v) = check_now(&app, &key, p, "900").await;
        assert_eq!(s, 200);
        assert_eq!(
            (
                v["health"].as_str(),
                v["tokenValid"].as_bool(),
                v["needsReconnect"].as_bool()
            ),
            (Some("unhealthy"), Some(false), Some(true)),
            "{p}: {v}"
        );
        assert!(v["lastError"].as_str().unwrap().contains("100/33"), "{v}");
        assert!(!recs(&v).contains("revoked by the user"), "{p}: {v}");
    }
    app.stop().await;

    // A Facebook token issued to another Meta app: that account's configuration problem.
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let (_, v) = app
        .connect(
            &key,
            Platform::Facebook,
            "910",
            TokenSpec {
                app_id: Some("5550001".into()),
                ..spec(Platform::Facebook)
            },
        )
        .await;
    assert_eq!(v["health"], "unknown", "{v}");
    assert!(
        v["lastError"]
            .as_str()
            .unwrap()
            .contains("did not match the Viewing App"),
        "{v}"
    );
    assert!(recs(&v).contains("another Meta app"), "{v}");
    assert!(!recs(&v).contains("revoked"), "{v}");
    assert_eq!(alert_kinds(&app).await, Vec::<String>::new());
    assert_eq!(
        healthz(&app).await["status"],
        "ok",
        "one account's app is not the daemon's problem"
    );
    app.stop().await;
}

#[tokio::test]
async fn concurrent_refreshers_use_a_rotating_refresh_token_exactly_once() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    // A second daemon (or a `check` process) on the same database file.
    let other = second_state(&app, &[]).await;
    let mut issued = Vec::new();
    for (p, id) in [(Platform::Tiktok, "race-tt"), (Platform::Twitter, "4242")] {
        let (i, v) = app
            .connect(
                &key,
                p,
                id,
                TokenSpec {
                    // Inside the refresh window (an hour for TikTok, 45 minutes for X).
                    expires_in: Some(20 * 60),
                    ..spec(p)
                },
            )
            .await;
        // Registration refreshed it already: move it back into its window.
        let db = app.db().await;
        sqlx::query("UPDATE accounts SET token_expires_at = $1 WHERE account_id = $2")
            .bind(socialsyncer::domain::now() + 600)
            .bind(id)
            .execute(&db)
            .await
            .unwrap();
        crate::common::make_due(&db, Some(p)).await;
        issued.push((p, id, i, v));
    }
    let before: Vec<u64> = issued.iter().map(|(p, ..)| app.sim.token_calls(*p)).collect();
    // Slow answers so that every refresher overlaps.
    app.sim.set_latency(Platform::Tiktok, Duration::from_millis(150));
    app.sim.set_latency(Platform::Twitter, Duration::from_millis(150));
    let mut tasks = tokio::task::JoinSet::new();
    for (p, id, ..) in &issued {
        for _ in 0..6 {
            let (http, url, key) = (
                app.http.clone(),
                app.url(&format!("/v1/accounts/{p}/{id}/check")),
                key.clone(),
            );
            tasks.spawn(async move {
                let r = http.post(url).bearer_auth(key).send().await.unwrap();
                assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
            });
        }
        let (other, p) = (other.clone(), *p);
        tasks.spawn(async move {
            let acc = other.store.all_accounts(Some(p)).await.unwrap().remove(0);
            let c = socialsyncer::checks::check(&other.checker, acc).await.unwrap();
            other.store.record_checks(&[c.update]).await.unwrap();
        });
    }
    let state = app.state.clone();
    tasks.spawn(async move {
        socialsyncer::scheduler::sweep(&state.sweeper, &tokio_util::sync::CancellationToken::new())
            .await
            .unwrap();
    });
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    for ((p, id, ..), before) in issued.iter().zip(before) {
        // Every call to the token endpoint is counted, refused ones too: a second refresher
        // using the burnt refresh token would show here.
        assert_eq!(
            app.sim.token_calls(*p) - before,
            1,
            "{p}: exactly one refresh reached the platform"
        );
        let v = details(&app, &key, *p, id).await;
        assert_eq!(v["health"], "healthy", "{p}: {v}");
        assert_eq!(v["lastError"], Value::Null, "{p}: {v}");
    }
    assert_eq!(alert_kinds(&app).await, Vec::<String>::new(), "no alert fires");
    other.store.close().await;
    app.stop().await;
}

#[tokio::test]
async fn an_app_level_x_refusal_is_the_daemons_problem_and_leaves_accounts_alone() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    for id in ["71", "72", "73"] {
        app.connect(&key, Platform::Twitter, id, spec(Platform::Twitter)).await;
    }
    let db = app.db().await;
    for b in [
        Behavior::AppForbidden,
        Behavior::CreditsExhausted,
        Behavior::UsageCapped,
    ] {
        app.sim.set_platform_behavior(Platform::Twitter, b);
        crate::common::make_due(&db, Some(Platform::Twitter)).await;
        let r = socialsyncer::scheduler::sweep(&app.state.sweeper, &tokio_util::sync::CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(r.checked, 3, "{b:?}");
        let (_, body) = app.get(&key, "/v1/accounts/health?platform=twitter").await;
        assert_eq!(body["summary"]["healthy"], 3, "{b:?}: {body}");
        for a in body["accounts"].as_array().unwrap() {
            assert_eq!(a["needsReconnect"], false);
            assert_eq!(a["recommendations"], serde_json::json!([]), "{b:?}: {a}");
        }
        let h = healthz(&app).await;
        assert_eq!(h["status"], "degraded", "{b:?}: {h}");
        assert!(
            h["problems"][0]
                .as_str()
                .unwrap()
                .starts_with("twitter: X refused the app"),
            "{h}"
        );
        assert!(
            app.metrics()
                .await
                .contains("socialsyncer_configuration_problems{platform=\"twitter\"} 1")
        );
    }
    assert_eq!(alert_kinds(&app).await, Vec::<String>::new(), "no customer is emailed");
    // A 403 about this user's token (a missing scope) is the account's.
    app.sim.set_platform_behavior(Platform::Twitter, Behavior::Normal);
    let (i, _) = app
        .connect(&key, Platform::Twitter, "74", spec(Platform::Twitter))
        .await;
    app.sim
        .update(&i.access_token, |t| t.scopes.retain(|s| s != "users.read"));
    let (_, v) = check_now(&app, &key, Platform::Twitter, "74").await;
    assert_eq!(v["health"], "unhealthy", "{v}");
    let h = healthz(&app).await;
    assert_eq!(h["status"], "ok", "a working X answer clears the problem: {h}");
    app.stop().await;
}

#[tokio::test]
async fn revocation_removes_what_keeps_the_grant_alive() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    // X: the refresh token is revoked as well as the access token.
    let (x, _) = app
        .connect(&key, Platform::Twitter, "81", spec(Platform::Twitter))
        .await;
    let (_, v) = app.delete(&key, "/v1/accounts/twitter/81").await;
    assert_eq!(v["revoked"], true, "{v}");
    assert!(!app.sim.refresh_token_live(x.refresh_token.as_deref().unwrap()));
    assert_eq!(app.sim.token(&x.access_token).unwrap().state, TokenState::Revoked);

    // TikTok: an access token past its 2 hours is refreshed first, then revoked.
    let (t, _) = app
        .connect(&key, Platform::Tiktok, "tt81", spec(Platform::Tiktok))
        .await;
    app.sim.update(&t.access_token, |t| {
        t.expires_at = Some(socialsyncer::domain::now() - 60)
    });
    let db = app.db().await;
    sqlx::query("UPDATE accounts SET token_expires_at = $1 WHERE account_id = 'tt81'")
        .bind(socialsyncer::domain::now() - 60)
        .execute(&db)
        .await
        .unwrap();
    let before = app.sim.refreshes(Platform::Tiktok);
    let (_, v) = app.delete(&key, "/v1/accounts/tiktok/tt81").await;
    assert_eq!(v["revoked"], true, "{v}");
    assert_eq!(app.sim.refreshes(Platform::Tiktok) - before, 1);
    assert!(!app.sim.refresh_token_live(t.refresh_token.as_deref().unwrap()));

    // TikTok with a dead refresh token and an expired access token: revoked says false.
    let (t, _) = app
        .connect(&key, Platform::Tiktok, "tt82", spec(Platform::Tiktok))
        .await;
    app.sim.update(&t.access_token, |t| {
        t.expires_at = Some(socialsyncer::domain::now() - 60)
    });
    app.sim.invalidate_refresh_token(t.refresh_token.as_deref().unwrap());
    let (_, v) = app.delete(&key, "/v1/accounts/tiktok/tt82").await;
    assert_eq!(
        (v["deleted"].as_bool(), v["revoked"].as_bool()),
        (Some(true), Some(false)),
        "{v}"
    );
    assert!(
        v["reason"].as_str().unwrap().contains("refresh token was rejected"),
        "{v}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_graph_app_above_90_percent_of_its_quota_pauses_its_calls() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    app.connect(&key, Platform::Facebook, "600", spec(Platform::Facebook))
        .await;
    app.connect(
        &key,
        Platform::Instagram,
        "17841400000000600",
        spec(Platform::Instagram),
    )
    .await;
    app.sim.set_tweaks(
        Platform::Facebook,
        socialsyncer::simulator::Tweaks {
            app_usage: Some(95),
            ..Default::default()
        },
    );
    let (s, v) = check_now(&app, &key, Platform::Facebook, "600").await;
    assert_eq!(
        (s, &v["health"]),
        (200, &Value::from("healthy")),
        "the answer itself counts: {v}"
    );
    let (fb, ig) = (app.sim.calls(Platform::Facebook), app.sim.calls(Platform::Instagram));
    let r = app
        .http
        .post(app.url("/v1/accounts/facebook/600/check"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let wait: i64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((590..=600).contains(&wait), "paused for the default 10 minutes: {wait}");
    // Instagram through Facebook Login spends the same app's quota: paused too.
    let (s, _) = check_now(&app, &key, Platform::Instagram, "17841400000000600").await;
    assert_eq!(s, 503);
    // Sweeps defer the Graph lanes without a call.
    let db = app.db().await;
    crate::common::make_due(&db, None).await;
    let r = socialsyncer::scheduler::sweep(&app.state.sweeper, &tokio_util::sync::CancellationToken::new())
        .await
        .unwrap();
    assert_eq!((r.checked, r.deferred), (2, 2), "{r:?}");
    assert_eq!(
        (app.sim.calls(Platform::Facebook), app.sim.calls(Platform::Instagram)),
        (fb, ig)
    );
    let v = details(&app, &key, Platform::Facebook, "600").await;
    assert_eq!(v["health"].as_str(), Some("healthy"), "{v}");
    assert!(
        v["lastError"]
            .as_str()
            .is_some_and(|e| e.starts_with("Facebook is rate-limiting socialsyncer's app until")),
        "{v}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_token_of_another_account_is_unhealthy_and_alerts() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    for (p, registered, owner) in [
        (Platform::Twitter, "1001", "1002"),
        (Platform::Tiktok, "open-a", "open-b"),
        (Platform::Threads, "1003", "1004"),
        (Platform::Facebook, "1005", "1006"),
    ] {
        let i = app.sim.issue(
            p,
            TokenSpec {
                user_id: owner.into(),
                ..spec(p)
            },
        );
        let mut body = serde_json::json!({"platform": p.as_str(), "accountId": registered, "username": "u",
            "accessToken": i.access_token, "scopes": crate::common::documented_scopes(p)});
        if let Some(r) = &i.refresh_token {
            body["refreshToken"] = r.clone().into();
        }
        let (s, v) = app.post(&key, "/v1/accounts", &body).await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(
            (v["health"].as_str(), v["needsReconnect"].as_bool()),
            (Some("unhealthy"), Some(true)),
            "{p}: {v}"
        );
        assert_eq!(
            v["recommendations"][0],
            format!("This token belongs to another account (ID {owner}): reconnect the right account."),
            "{p}"
        );
    }
    assert_eq!(alert_kinds(&app).await, vec!["token_invalid"; 4]);
    app.stop().await;
}

#[tokio::test]
async fn todays_lifetimes_renamed_scopes_and_public_x_clients() {
    // X as a public client: client_id in the body, no secret.
    let app = spawn_app_cfg("", |c| {
        c.platforms.twitter.client_secret_file = None;
        c.platforms.instagram.login = InstagramLogin::Instagram;
    })
    .await;
    let key = app.key("acme").await;
    let (x, _) = app
        .connect(
            &key,
            Platform::Twitter,
            "91",
            TokenSpec {
                expires_in: Some(20 * 60),
                ..spec(Platform::Twitter)
            },
        )
        .await;
    assert!(
        !app.sim.refresh_token_live(x.refresh_token.as_deref().unwrap()),
        "refreshed as a public client"
    );
    let v = details(&app, &key, Platform::Twitter, "91").await;
    assert_eq!(v["health"], "healthy", "{v}");
    let (_, v) = app.delete(&key, "/v1/accounts/twitter/91").await;
    assert_eq!(v["revoked"], true, "{v}");

    // TikTok: 2-hour access tokens, 180-day refresh tokens.
    app.connect(
        &key,
        Platform::Tiktok,
        "tt91",
        TokenSpec {
            expires_in: Some(20 * 60),
            ..spec(Platform::Tiktok)
        },
    )
    .await;
    let db = app.db().await;
    let (exp, rexp): (i64, i64) =
        sqlx::query_as("SELECT token_expires_at, refresh_expires_at FROM accounts WHERE account_id = 'tt91'")
            .fetch_one(&db)
            .await
            .unwrap();
    let now = socialsyncer::domain::now();
    assert!((now + 7_100..=now + 7_200).contains(&exp), "{}", exp - now);
    assert!((now + 180 * DAY - 100..=now + 180 * DAY).contains(&rexp));
    let v = details(&app, &key, Platform::Tiktok, "tt91").await;
    assert_eq!(
        (v["health"].as_str(), recs(&v).as_str()),
        (Some("healthy"), "[]"),
        "refreshed automatically: {v}"
    );

    // Instagram Login scopes granted before January 2025 keep their old names.
    let (_, v) = app
        .connect(
            &key,
            Platform::Instagram,
            "17841400000000091",
            TokenSpec {
                scopes: vec!["business_basic".into(), "business_content_publish".into()],
                admin_id: None,
                ..spec(Platform::Instagram)
            },
        )
        .await;
    assert_eq!(
        (v["health"].as_str(), &v["missingPermissions"]),
        (Some("healthy"), &serde_json::json!([])),
        "{v}"
    );
    app.stop().await;
}

#[tokio::test]
async fn facebook_data_access_expiry_reaches_json_metrics_and_email() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let (_, v) = app
        .connect(
            &key,
            Platform::Facebook,
            "700",
            TokenSpec {
                expires_in: None,
                data_access_expires_in: Some(2 * DAY + 600),
                ..spec(Platform::Facebook)
            },
        )
        .await;
    assert_eq!(v["health"], "warning");
    let at = v["dataAccessExpiresAt"].as_str().expect("dataAccessExpiresAt");
    let t = socialsyncer::domain::parse_rfc3339(at).unwrap();
    assert!(t > socialsyncer::domain::now() + 2 * DAY);
    assert_eq!(alert_kinds(&app).await, vec!["data_access_expiring_3days"]);
    let m = app.metrics().await;
    assert!(
        m.contains(&format!(
            "socialsyncer_data_access_expiry_timestamp_seconds{{account_id=\"700\",platform=\"facebook\",workspace=\"acme\"}} {t}"
        )),
        "{m}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_rejected_client_secret_is_the_daemons_problem_not_the_accounts() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let mut tokens = Vec::new();
    for (p, id) in [(Platform::Tiktok, "tt95"), (Platform::Twitter, "95")] {
        let (i, v) = app.connect(&key, p, id, spec(p)).await;
        assert_eq!(v["health"], "healthy");
        tokens.push((p, id, i));
    }
    // Both apps' secrets are wrong on disk (as after a bad rotation) for a daemon started now.
    let state = second_state(
        &app,
        &[("tiktok_client_secret", "wrong"), ("twitter_client_secret", "wrong")],
    )
    .await;
    let db = app.db().await;
    for (p, id, i) in &tokens {
        // In the refresh window, then past the access token's expiry.
        for expired in [false, true] {
            let at = socialsyncer::domain::now() + if expired { -60 } else { 600 };
            sqlx::query("UPDATE accounts SET token_expires_at = $1 WHERE account_id = $2")
                .bind(at)
                .bind(id)
                .execute(&db)
                .await
                .unwrap();
            if expired {
                app.sim.update(&i.access_token, |t| t.expires_at = Some(at));
            }
            let acc = state.store.all_accounts(Some(*p)).await.unwrap().remove(0);
            let c = socialsyncer::checks::check(&state.checker, acc).await.unwrap();
            state.store.record_checks(&[c.update]).await.unwrap();
            let v = details(&app, &key, *p, id).await;
            assert_ne!(v["health"], "unhealthy", "{p} expired={expired}: {v}");
            assert_eq!(v["needsReconnect"], false, "{p}: {v}");
            assert!(!recs(&v).contains("refresh failed"), "{p}: {v}");
        }
        assert!(
            state
                .problems
                .list()
                .iter()
                .any(|l| l.starts_with(&format!("{p}: ")) && l.contains("client credentials")),
            "{:?}",
            state.problems.list()
        );
    }
    assert_eq!(
        alert_kinds(&app).await,
        Vec::<String>::new(),
        "no email to any workspace"
    );
    state.store.close().await;
    app.stop().await;
}

#[tokio::test]
async fn absurd_numbers_from_a_platform_are_bounded() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    app.connect(&key, Platform::Twitter, "97", spec(Platform::Twitter))
        .await;
    app.connect(&key, Platform::Tiktok, "tt97", spec(Platform::Tiktok))
        .await;
    app.connect(&key, Platform::Facebook, "97", spec(Platform::Facebook))
        .await;
    for (p, tweaks) in [
        (
            Platform::Tiktok,
            socialsyncer::simulator::Tweaks {
                retry_after: Some("99999999999".into()),
                ..Default::default()
            },
        ),
        (
            Platform::Twitter,
            socialsyncer::simulator::Tweaks {
                rate_limit_reset: Some("999999999999999".into()),
                ..Default::default()
            },
        ),
        (
            Platform::Facebook,
            socialsyncer::simulator::Tweaks {
                regain_minutes: Some(i64::MAX),
                ..Default::default()
            },
        ),
    ] {
        app.sim.set_tweaks(p, tweaks);
        app.sim.set_platform_behavior(p, Behavior::RateLimited);
    }
    let db = app.db().await;
    crate::common::make_due(&db, None).await;
    let r = socialsyncer::scheduler::sweep(&app.state.sweeper, &tokio_util::sync::CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(r.deferred, 3, "{r:?}");
    let nexts: Vec<(i64,)> = sqlx::query_as("SELECT next_check_at FROM account_health")
        .fetch_all(&db)
        .await
        .unwrap();
    let now = socialsyncer::domain::now();
    for (n,) in nexts {
        assert!(n > now && n <= now + 86_400 + 5, "a wait is at most a day: {}", n - now);
    }
    // Absurd and negative lifetimes in refresh answers.
    for (p, expires_in) in [(Platform::Twitter, i64::MAX), (Platform::Tiktok, -5)] {
        app.sim.set_platform_behavior(p, Behavior::Normal);
        app.sim.set_tweaks(
            p,
            socialsyncer::simulator::Tweaks {
                expires_in: Some(expires_in),
                refresh_expires_in: Some(i64::MAX),
                ..Default::default()
            },
        );
    }
    for (p, id) in [(Platform::Twitter, "98"), (Platform::Tiktok, "tt98")] {
        app.connect(
            &key,
            p,
            id,
            TokenSpec {
                expires_in: Some(20 * 60),
                ..spec(p)
            },
        )
        .await;
        let (exp, rexp): (i64, Option<i64>) =
            sqlx::query_as("SELECT token_expires_at, refresh_expires_at FROM accounts WHERE account_id = $1")
                .bind(id)
                .fetch_one(&db)
                .await
                .unwrap();
        let now = socialsyncer::domain::now();
        assert!(exp >= now - 5 && exp <= now + 2 * 86_400, "{p}: {}", exp - now);
        assert!(rexp.is_none_or(|r| r <= now + 2 * 365 * 86_400), "{p}");
    }
    app.stop().await;
}
