//! The HTTP API through real HTTP against the server on a random port with a fresh SQLite file.

use crate::common::{code, keys_of, spawn_app, spawn_app_cfg};
use serde_json::{Value, json};
use socialsyncer::domain::Platform;
use socialsyncer::simulator::Behavior;

#[tokio::test]
async fn list_shapes_filters_and_errors() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let (s, body) = app.get(&key, "/v1/accounts").await;
    assert_eq!((s, body), (200, json!({"accounts": []})));

    app.register(&key, "instagram", "17841400123456789", "ig-token").await;
    app.register(&key, "twitter", "1234567890", "tw-token").await;
    app.register(&key, "tiktok", "723f24d7-e717-40f8-a2b6-cb8464cd23b4", "tt-token")
        .await;

    let (s, body) = app.get(&key, "/v1/accounts").await;
    assert_eq!(s, 200);
    let accounts = body["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 3);
    for a in accounts {
        assert_eq!(
            keys_of(a),
            ["accountId", "connectedAt", "custody", "platform", "username"]
        );
        let at = a["connectedAt"].as_str().unwrap();
        assert!(at.ends_with('Z') && at.len() == 20, "{at}");
    }
    assert_eq!(accounts[0]["platform"], "instagram");
    assert_eq!(accounts[0]["accountId"], "17841400123456789");
    assert_eq!(accounts[0]["username"], "user_17841400123456789");

    let (s, body) = app.get(&key, "/v1/accounts?platform=twitter").await;
    assert_eq!(s, 200);
    assert_eq!(body["accounts"].as_array().unwrap().len(), 1);
    assert_eq!(body["accounts"][0]["accountId"], "1234567890");

    let (s, body) = app.get(&key, "/v1/accounts?platform=myspace").await;
    assert_eq!((s, code(&body)), (400, "unknown_platform"));
    assert!(body["error"]["message"].as_str().unwrap().contains("instagram"));
    app.stop().await;
}

#[tokio::test]
async fn health_of_unchecked_accounts_and_summary() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    // Platforms that are down at registration leave the accounts unchecked.
    app.sim.set_platform_behavior(Platform::Facebook, Behavior::ServerError);
    app.sim.set_platform_behavior(Platform::Twitter, Behavior::ServerError);
    app.register(&key, "facebook", "111222333444555", "fb-token").await;
    let (s, body) = app
        .post(
            &key,
            "/v1/accounts",
            &json!({"platform":"twitter","accountId":"42","username":"@mybusiness","accessToken":"t",
                    "expiresAt":"2030-01-01T01:00:00+01:00","scopes":["tweet.read","tweet.write"]}),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["tokenExpiresAt"], "2030-01-01T00:00:00Z");

    let (s, body) = app.get(&key, "/v1/accounts/health").await;
    assert_eq!(s, 200);
    assert_eq!(
        body["summary"],
        json!({"total":2,"healthy":0,"warning":0,"unhealthy":0,"unknown":2})
    );
    let tw = &body["accounts"][1];
    assert_eq!(
        keys_of(tw),
        [
            "accountId",
            "dataAccessExpiresAt",
            "health",
            "lastCheckedAt",
            "missingPermissions",
            "needsReconnect",
            "permissions",
            "platform",
            "recommendations",
            "tokenExpiresAt",
            "tokenValid",
            "username"
        ]
    );
    assert_eq!(tw["health"], "unknown");
    assert!(
        tw["recommendations"][0]
            .as_str()
            .unwrap()
            .contains("could not be reached"),
        "{tw}"
    );
    assert_eq!(tw["tokenValid"], Value::Null);
    assert!(tw["lastCheckedAt"].is_string(), "the failed attempt is recorded");
    assert_eq!(tw["permissions"], json!(["tweet.read", "tweet.write"]));
    assert_eq!(tw["needsReconnect"], false);

    let (_, body) = app
        .get(&key, "/v1/accounts/health?health=unknown&platform=facebook")
        .await;
    assert_eq!(body["summary"]["total"], 1);
    let (_, body) = app.get(&key, "/v1/accounts/health?health=healthy").await;
    assert_eq!(body["summary"]["total"], 0);
    let (s, body) = app.get(&key, "/v1/accounts/health?health=great").await;
    assert_eq!((s, code(&body)), (400, "unknown_health"));
    app.stop().await;
}

#[tokio::test]
async fn details_validation_and_not_found() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    app.register(&key, "threads", "778899", "th-token").await;
    let (s, body) = app.get(&key, "/v1/accounts/threads/778899").await;
    assert_eq!(s, 200);
    for k in [
        "connectedAt",
        "tokenExpiresAt",
        "lastCheckedAt",
        "missingPermissions",
        "lastError",
        "health",
        "tokenValid",
    ] {
        assert!(body.get(k).is_some(), "missing {k}: {body}");
    }
    let (s, body) = app.get(&key, "/v1/accounts/threads/12").await;
    assert_eq!((s, code(&body)), (404, "account_not_found"));
    let (s, body) = app.get(&key, "/v1/accounts/threads/abc").await;
    assert_eq!((s, code(&body)), (400, "invalid_account_id"));
    assert!(body["error"]["message"].as_str().unwrap().contains("digits only"));
    let (s, body) = app.get(&key, "/v1/accounts/tiktok/a%20b").await;
    assert_eq!((s, code(&body)), (400, "invalid_account_id"));
    let (s, body) = app.get(&key, "/v1/accounts/orkut/1").await;
    assert_eq!((s, code(&body)), (400, "unknown_platform"));
    app.stop().await;
}

#[tokio::test]
async fn registration_errors() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let good = json!({"platform":"instagram","accountId":"1","username":"a","accessToken":"tok"});
    let (s, _) = app.post(&key, "/v1/accounts", &good).await;
    assert_eq!(s, 201);
    let (s, body) = app.post(&key, "/v1/accounts", &good).await;
    assert_eq!((s, code(&body)), (409, "account_exists"));

    let cases = [
        (
            json!({"platform":"orkut","accountId":"1","username":"a","accessToken":"t"}),
            "unknown_platform",
        ),
        (
            json!({"platform":"twitter","accountId":"x1","username":"a","accessToken":"t"}),
            "invalid_account_id",
        ),
        (
            json!({"platform":"twitter","accountId":"2","username":"","accessToken":"t"}),
            "invalid_username",
        ),
        (
            json!({"platform":"twitter","accountId":"2","username":"a","accessToken":""}),
            "invalid_access_token",
        ),
        (
            json!({"platform":"twitter","accountId":"2","username":"a","accessToken":"t","expiresAt":"soon"}),
            "invalid_expires_at",
        ),
        (
            json!({"platform":"twitter","accountId":"2","username":"a","accessToken":"t","scopes":["a b"]}),
            "invalid_scopes",
        ),
        (
            json!({"platform":"twitter","accountId":"2","username":"a"}),
            "invalid_json",
        ),
        (
            json!({"platform":"twitter","accountId":2,"username":"a","accessToken":"t"}),
            "invalid_json",
        ),
        (
            json!({"platform":"twitter","accountId":"2","username":"a","accessToken":"t","extra":1}),
            "invalid_json",
        ),
    ];
    for (body, want) in cases {
        let (s, got) = app.post(&key, "/v1/accounts", &body).await;
        assert_eq!((s, code(&got)), (400, want), "{body} -> {got}");
    }

    // Malformed JSON, a missing content type, and a body over the limit.
    let r = app
        .http
        .post(app.url("/v1/accounts"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("{\"platform\":")
        .send()
        .await
        .unwrap();
    let (s, body) = crate::common::into_parts(r).await;
    assert_eq!((s, code(&body)), (400, "invalid_json"));
    let r = app
        .http
        .post(app.url("/v1/accounts"))
        .bearer_auth(&key)
        .body("{}")
        .send()
        .await
        .unwrap();
    let (s, body) = crate::common::into_parts(r).await;
    assert_eq!((s, code(&body)), (400, "invalid_json"));
    let huge = json!({"platform":"twitter","accountId":"3","username":"a","accessToken":"x".repeat(200_000)});
    let (s, body) = app.post(&key, "/v1/accounts", &huge).await;
    assert_eq!((s, code(&body)), (413, "body_too_large"));

    // A token with white space is refused without the token in the answer.
    let (s, body) = app
        .post(
            &key,
            "/v1/accounts",
            &json!({"platform":"twitter","accountId":"4","username":"a","accessToken":"SECRET tok"}),
        )
        .await;
    assert_eq!((s, code(&body)), (400, "invalid_access_token"));
    assert!(!body.to_string().contains("SECRET"));
    app.stop().await;
}

#[tokio::test]
async fn authentication() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let r = app.http.get(app.url("/v1/accounts")).send().await.unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let (s, body) = crate::common::into_parts(r).await;
    assert_eq!((s, code(&body)), (401, "missing_api_key"));
    let r = app
        .http
        .get(app.url("/v1/accounts"))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    let (s, body) = crate::common::into_parts(r).await;
    assert_eq!((s, code(&body)), (401, "invalid_authorization"));
    for bad in [
        "sk_nope",
        // The real key with its last digit changed.
        &format!(
            "{}{}",
            &key[..key.len() - 1],
            if key.ends_with('0') { '1' } else { '0' }
        ),
        &format!("sk_{}", "g".repeat(48)),
    ] {
        let (s, body) = app.get(bad, "/v1/accounts").await;
        assert_eq!((s, code(&body)), (401, "invalid_api_key"), "{bad}");
    }
    // Every route the OpenAPI document says needs the key does, whatever the method.
    let (_, doc) = app.get("", "/v1/openapi.json").await;
    let mut routes = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let open = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().all(|r| r.as_object().unwrap().is_empty()));
            if !open {
                routes.push((
                    method.to_uppercase(),
                    path.replace("{platform}", "twitter").replace("{accountId}", "1"),
                ));
            }
        }
    }
    assert!(routes.len() >= 8, "{routes:?}");
    for (method, path) in &routes {
        let r = app
            .http
            .request(method.parse().unwrap(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{method} {path}");
    }

    // A revoked key stops working at once.
    let (s, _) = app.get(&key, "/v1/accounts").await;
    assert_eq!(s, 200);
    let n = app
        .state
        .store
        .revoke_api_keys(&key[..11], socialsyncer::domain::now())
        .await
        .unwrap();
    assert_eq!(n, 1);
    let (s, body) = app.get(&key, "/v1/accounts").await;
    assert_eq!((s, code(&body)), (401, "invalid_api_key"));
    app.stop().await;
}

#[tokio::test]
async fn workspaces_are_isolated() {
    let app = spawn_app().await;
    let a = app.key("alpha").await;
    let b = app.key("beta").await;
    app.register(&a, "facebook", "111", "tok-a").await;
    // The same platform account may be registered in another workspace.
    app.register(&b, "facebook", "111", "tok-b").await;
    app.register(&b, "twitter", "222", "tok-b2").await;

    let (_, body) = app.get(&a, "/v1/accounts").await;
    assert_eq!(body["accounts"].as_array().unwrap().len(), 1);
    let (_, body) = app.get(&a, "/v1/accounts/health").await;
    assert_eq!(body["summary"]["total"], 1);

    let (s1, other) = app.get(&a, "/v1/accounts/twitter/222").await;
    let (s2, missing) = app.get(&a, "/v1/accounts/twitter/333").await;
    assert_eq!((s1, s2), (404, 404));
    assert_eq!(other, missing);
    let (s, del_other) = app.delete(&a, "/v1/accounts/twitter/222").await;
    assert_eq!(s, 404);
    assert_eq!(del_other, missing);
    let (s, _) = app.get(&b, "/v1/accounts/twitter/222").await;
    assert_eq!(s, 200, "beta's account survived alpha's delete");

    let (s, body) = app.delete(&a, "/v1/accounts/facebook/111").await;
    assert_eq!((s, body["deleted"].clone()), (200, json!(true)));
    let (s, _) = app.get(&a, "/v1/accounts/facebook/111").await;
    assert_eq!(s, 404);
    let (s, _) = app.get(&b, "/v1/accounts/facebook/111").await;
    assert_eq!(s, 200);
    app.stop().await;
}

#[tokio::test]
async fn tokens_are_sealed_in_the_database_file_and_deleted_with_the_account() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let token = "EAAGplaintext-access-token-0123456789";
    let refresh = "plaintext-refresh-token-9876543210";
    let (s, _) = app
        .post(
            &key,
            "/v1/accounts",
            &json!({"platform":"tiktok","accountId":"abc_1","username":"t","accessToken":token,"refreshToken":refresh}),
        )
        .await;
    assert_eq!(s, 201);

    // Read the file with a separate connection, as someone with the file would.
    let pool = app.db().await;
    let (access, refresh_blob): (Vec<u8>, Option<Vec<u8>>) =
        sqlx::query_as("SELECT access_token, refresh_token FROM credentials")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(access.len() > token.len(), "sealed value carries nonce and tag");
    let contains = |hay: &[u8], needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(!contains(&access, token));
    assert!(!contains(refresh_blob.as_deref().unwrap(), refresh));
    let keys: Vec<String> = sqlx::query_scalar("SELECT key_hash FROM api_keys")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(!keys.contains(&key), "the key itself is not stored");
    // Raw bytes of the database and its write-ahead log (SQLite).
    for f in ["socialsyncer.db", "socialsyncer.db-wal"] {
        if let Ok(bytes) = std::fs::read(app.dir.path().join(f)) {
            assert!(!contains(&bytes, token), "{f} holds the plaintext token");
            assert!(!contains(&bytes, refresh), "{f} holds the plaintext refresh token");
            assert!(!contains(&bytes, &key), "{f} holds the API key");
        }
    }

    let (s, _) = app.delete(&key, "/v1/accounts/tiktok/abc_1").await;
    assert_eq!(s, 200);
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM credentials")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
    pool.close().await;
    app.stop().await;
}

#[tokio::test]
async fn daemon_routes_and_unknown_routes() {
    let app = spawn_app().await;
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    let (s, body) = crate::common::into_parts(r).await;
    assert_eq!(s, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["database"], true);

    let r = app.http.get(app.url("/v1/openapi.json")).send().await.unwrap();
    let (s, doc) = crate::common::into_parts(r).await;
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/accounts",
        "/v1/accounts/health",
        "/v1/accounts/{platform}/{accountId}",
        "/healthz",
    ] {
        assert!(doc["paths"].get(path).is_some(), "openapi lacks {path}");
    }
    assert!(doc["paths"]["/v1/accounts"].get("post").is_some());
    assert!(
        doc["paths"]["/v1/accounts/{platform}/{accountId}"]
            .get("delete")
            .is_some()
    );
    assert!(doc["components"]["schemas"].get("HealthList").is_some());
    // Every parameter is where the route reads it: a path parameter appears in the path
    // template, every other one is in the query.
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            for p in op["parameters"].as_array().into_iter().flatten() {
                let (name, place) = (p["name"].as_str().unwrap(), p["in"].as_str().unwrap());
                let in_path = path.contains(&format!("{{{name}}}"));
                assert_eq!(place, if in_path { "path" } else { "query" }, "{method} {path} {name}");
            }
        }
    }

    let r = app.http.get(app.url("/v2/nothing")).send().await.unwrap();
    let (s, body) = crate::common::into_parts(r).await;
    assert_eq!((s, code(&body)), (404, "not_found"));
    let r = app.http.put(app.url("/v1/accounts")).send().await.unwrap();
    let (s, body) = crate::common::into_parts(r).await;
    assert_eq!((s, code(&body)), (405, "method_not_allowed"));
    app.stop().await;
}

#[tokio::test]
async fn a_delete_racing_anything_is_never_a_500_and_never_costs_other_accounts() {
    use socialsyncer::domain::Platform;
    use socialsyncer::simulator::TokenSpec;
    let app = spawn_app().await;
    let key = app.key("acme").await;

    // Ten concurrent DELETEs of one account: one revokes and answers deleted, nine find it gone.
    app.connect(&key, Platform::Tiktok, "tt1", TokenSpec::valid(Platform::Tiktok, "tt1"))
        .await;
    let before = app.sim.calls(Platform::Tiktok);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (http, url, key) = (app.http.clone(), app.url("/v1/accounts/tiktok/tt1"), key.clone());
        tasks.spawn(
            async move { crate::common::into_parts(http.delete(url).bearer_auth(key).send().await.unwrap()).await },
        );
    }
    let mut answers = Vec::new();
    while let Some(r) = tasks.join_next().await {
        answers.push(r.unwrap());
    }
    let ok: Vec<_> = answers.iter().filter(|(s, _)| *s == 200).collect();
    assert_eq!(ok.len(), 1, "{answers:?}");
    assert_eq!(ok[0].1["deleted"], true);
    assert!(
        answers
            .iter()
            .all(|(s, b)| *s == 200 || (*s == 404 && code(b) == "account_not_found")),
        "{answers:?}"
    );
    assert_eq!(app.sim.calls(Platform::Tiktok) - before, 1, "revoked once");

    // Checks racing deletes, one pair per account: 200 or 404, never 500.
    app.sim
        .set_latency(Platform::Twitter, std::time::Duration::from_millis(30));
    for i in 0..12 {
        app.connect(
            &key,
            Platform::Twitter,
            &format!("{}", 500 + i),
            TokenSpec::valid(Platform::Twitter, "0"),
        )
        .await;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..12 {
        for method in ["check", "delete"] {
            let (http, key) = (app.http.clone(), key.clone());
            let base = app.url(&format!("/v1/accounts/twitter/{}", 500 + i));
            tasks.spawn(async move {
                let r = match method {
                    "check" => http.post(format!("{base}/check")),
                    _ => http.delete(base),
                };
                r.bearer_auth(key).send().await.unwrap().status().as_u16()
            });
        }
    }
    while let Some(s) = tasks.join_next().await {
        let s = s.unwrap();
        assert!(s == 200 || s == 404, "answered {s}");
    }

    // A sweep whose accounts are deleted under it still writes the others' results.
    for i in 0..20 {
        app.connect(
            &key,
            Platform::Twitter,
            &format!("{}", 600 + i),
            TokenSpec::valid(Platform::Twitter, "0"),
        )
        .await;
    }
    let db = app.db().await;
    crate::common::make_due(&db, Some(Platform::Twitter)).await;
    // The platform holds its answers, and the accounts are deleted once it has the sweep's
    // first request: the deletes land while the checks are in flight, every run.
    app.sim
        .set_latency(Platform::Twitter, std::time::Duration::from_millis(300));
    let asked = app.sim.calls(Platform::Twitter);
    let state = app.state.clone();
    let sweep = tokio::spawn(async move {
        socialsyncer::scheduler::sweep(&state.sweeper, &tokio_util::sync::CancellationToken::new()).await
    });
    while app.sim.calls(Platform::Twitter) == asked {
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    for i in 0..5 {
        let (s, _) = app.delete(&key, &format!("/v1/accounts/twitter/{}", 600 + i)).await;
        assert!(s == 200 || s == 404);
    }
    sweep
        .await
        .unwrap()
        .expect("the sweep is not failed by deleted accounts");
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM account_health h JOIN accounts a ON a.id = h.account_ref \
         WHERE a.account_id >= '605' AND a.account_id < '620' AND h.next_check_at > $1",
    )
    .bind(socialsyncer::domain::now())
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(n, 15, "every remaining account's result was written");
    app.stop().await;
}

#[tokio::test]
async fn tokens_a_refresh_minted_for_a_deleted_account_are_revoked() {
    use socialsyncer::domain::Platform;
    use socialsyncer::simulator::TokenSpec;
    let app = spawn_app().await;
    let key = app.key("acme").await;
    app.connect(
        &key,
        Platform::Tiktok,
        "gone",
        TokenSpec::valid(Platform::Tiktok, "gone"),
    )
    .await;
    let db = app.db().await;
    sqlx::query("UPDATE accounts SET token_expires_at = $1")
        .bind(socialsyncer::domain::now() + 600)
        .execute(&db)
        .await
        .unwrap();
    // The refresh takes a while; the account is deleted meanwhile.
    app.sim
        .set_latency(Platform::Tiktok, std::time::Duration::from_millis(400));
    let (http, url, k) = (app.http.clone(), app.url("/v1/accounts/tiktok/gone/check"), key.clone());
    let asked = app.sim.token_calls(Platform::Tiktok);
    let check = tokio::spawn(async move { http.post(url).bearer_auth(k).send().await.unwrap().status().as_u16() });
    // The DELETE goes once TikTok has the refresh request (and holds its answer).
    while app.sim.token_calls(Platform::Tiktok) == asked {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let (s, v) = app.delete(&key, "/v1/accounts/tiktok/gone").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(check.await.unwrap(), 404);
    assert_eq!(app.sim.refreshes(Platform::Tiktok), 1, "the refresh did happen");
    assert_eq!(
        app.sim.live_tokens(Platform::Tiktok, "gone"),
        0,
        "neither the old token nor the one minted meanwhile is left alive"
    );
    app.stop().await;
}

#[tokio::test]
async fn silence_reads_unknown_without_any_check() {
    use socialsyncer::domain::Platform;
    use socialsyncer::simulator::TokenSpec;
    let app = spawn_app_cfg("", |c| c.schedule.cron = String::new()).await;
    let key = app.key("acme").await;
    app.connect(&key, Platform::Threads, "31", TokenSpec::valid(Platform::Threads, "31"))
        .await;
    app.connect(&key, Platform::Threads, "32", TokenSpec::valid(Platform::Threads, "32"))
        .await;
    // No check runs: sweeps are off and the next check is far away. Only time passes.
    let db = app.db().await;
    sqlx::query("UPDATE account_health SET last_success_at = $1, next_check_at = $2 WHERE account_ref = (SELECT id FROM accounts WHERE account_id = '31')")
        .bind(socialsyncer::domain::now() - 3 * 86_400)
        .bind(socialsyncer::domain::now() + 365 * 86_400)
        .execute(&db)
        .await
        .unwrap();
    let (_, v) = app.get(&key, "/v1/accounts/threads/31").await;
    assert_eq!(v["health"], "unknown", "{v}");
    assert!(
        v["recommendations"][0]
            .as_str()
            .unwrap()
            .contains("has not answered since"),
        "{v}"
    );
    // Another workspace's accounts count only there.
    let other = app.key("other").await;
    app.connect(
        &other,
        Platform::Threads,
        "33",
        TokenSpec::valid(Platform::Threads, "33"),
    )
    .await;
    let (_, v) = app.get(&key, "/v1/accounts/health").await;
    assert_eq!(v["summary"]["unknown"], 1, "{v}");
    assert_eq!(v["summary"]["healthy"], 1, "{v}");
    assert_eq!(v["summary"]["total"], 2, "{v}");
    let (_, v) = app.get(&key, "/v1/accounts/health?health=unknown").await;
    assert_eq!(v["accounts"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["accounts"][0]["accountId"], "31");
    assert_eq!(
        (
            &v["summary"]["unknown"],
            &v["summary"]["healthy"],
            &v["summary"]["total"]
        ),
        (&serde_json::json!(1), &serde_json::json!(0), &serde_json::json!(1)),
        "{v}"
    );
    let (_, v) = app.get(&key, "/v1/accounts/health?platform=tiktok").await;
    assert_eq!(v["summary"]["total"], 0, "{v}");
    let (_, v) = app.get(&key, "/v1/accounts/health?health=healthy").await;
    assert_eq!(v["accounts"][0]["accountId"], "32", "{v}");
    let m = app.metrics().await;
    assert!(
        m.contains("socialsyncer_accounts{health=\"unknown\",platform=\"threads\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("socialsyncer_accounts{health=\"healthy\",platform=\"threads\"} 2"),
        "{m}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_key_is_rate_limited_and_check_now_is_paced_and_cooled_down() {
    use socialsyncer::domain::Platform;
    use socialsyncer::simulator::TokenSpec;
    let app = spawn_app_cfg("", |c| {
        c.server.key_rate_limit = 5.0;
        c.server.key_burst = 10.0;
        c.health.check_now_cooldown = socialsyncer::config::HumanDuration(std::time::Duration::from_secs(10));
        c.schedule.cron = String::new();
    })
    .await;
    let key = app.key("acme").await;
    let other = app.key("other").await;
    app.connect(&key, Platform::Tiktok, "tt9", TokenSpec::valid(Platform::Tiktok, "tt9"))
        .await;
    // The registration used one request of the burst; 300 check-nows follow at once.
    let before = app.sim.calls(Platform::Tiktok);
    let mut limited = 0;
    let mut cooled = 0;
    for _ in 0..300 {
        let r = app
            .http
            .post(app.url("/v1/accounts/tiktok/tt9/check"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            429 => {
                let secs: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=2).contains(&secs), "{secs}");
                let (_, body) = crate::common::into_parts(r).await;
                assert_eq!(code(&body), "rate_limited");
                limited += 1;
            }
            200 => {
                if r.headers().contains_key("x-check-cooldown") {
                    cooled += 1;
                }
            }
            s => panic!("answered {s}"),
        }
    }
    assert!(limited >= 280, "{limited} of 300 were limited");
    assert_eq!(cooled, 300 - limited, "the ones let through answered the last check");
    assert_eq!(app.sim.calls(Platform::Tiktok) - before, 0, "no call reached TikTok");
    // Another key has its own bucket.
    let (s, _) = app.get(&other, "/v1/accounts").await;
    assert_eq!(s, 200);
    app.stop().await;
}

#[tokio::test]
async fn lists_page_by_keyset_and_return_everything_without_a_limit() {
    use socialsyncer::domain::Platform;
    use socialsyncer::simulator::TokenSpec;
    let app = spawn_app().await;
    let key = app.key("acme").await;
    for i in 0..25 {
        app.connect(
            &key,
            Platform::Threads,
            &format!("{}", 100 + i),
            TokenSpec::valid(Platform::Threads, "0"),
        )
        .await;
    }
    // Without limit: everything, as before.
    let (s, all) = app.get(&key, "/v1/accounts/health").await;
    assert_eq!(s, 200);
    assert_eq!(all["accounts"].as_array().unwrap().len(), 25);
    assert_eq!(all["summary"]["total"], 25);
    assert!(all.get("nextCursor").is_none());
    let (_, plain) = app.get(&key, "/v1/accounts").await;
    assert_eq!(plain["accounts"].as_array().unwrap().len(), 25);

    // Pages of 10, with an insert and a delete between them: nothing is skipped or repeated.
    let (_, p1) = app.get(&key, "/v1/accounts/health?limit=10").await;
    assert_eq!(p1["accounts"].as_array().unwrap().len(), 10);
    assert_eq!(p1["summary"]["total"], 25, "the summary covers the whole filtered set");
    let c1 = p1["nextCursor"].as_str().unwrap().to_owned();
    app.delete(&key, "/v1/accounts/threads/101").await;
    app.connect(&key, Platform::Threads, "200", TokenSpec::valid(Platform::Threads, "0"))
        .await;
    let mut seen: Vec<String> = p1["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["accountId"].as_str().unwrap().to_owned())
        .collect();
    // A cursor continues the query it was given for, and only that one.
    let (s, b) = app.get(&key, &format!("/v1/accounts?limit=10&cursor={c1}")).await;
    assert_eq!((s, code(&b)), (400, "invalid_cursor"), "{b}");
    let (s, b) = app
        .get(
            &key,
            &format!("/v1/accounts/health?platform=threads&limit=10&cursor={c1}"),
        )
        .await;
    assert_eq!((s, code(&b)), (400, "invalid_cursor"), "{b}");
    let mut cursor = Some(c1);
    while let Some(c) = cursor {
        let (s, p) = app.get(&key, &format!("/v1/accounts/health?limit=10&cursor={c}")).await;
        assert_eq!(s, 200, "{p}");
        seen.extend(
            p["accounts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["accountId"].as_str().unwrap().to_owned()),
        );
        cursor = p["nextCursor"].as_str().map(str::to_owned);
    }
    let mut expected: Vec<String> = (0..25).map(|i| format!("{}", 100 + i)).collect();
    expected.push("200".into());
    assert_eq!(seen, expected, "every account once, in order, the new one at the end");

    for (q, code_) in [
        ("limit=0", "invalid_limit"),
        ("limit=1001", "invalid_limit"),
        ("cursor=bm9wZQ", "invalid_cursor"),
        ("limit=x", "invalid_query"),
    ] {
        let (s, b) = app.get(&key, &format!("/v1/accounts/health?{q}")).await;
        assert_eq!((s, code(&b)), (400, code_), "{q}");
    }
    app.stop().await;
}

#[tokio::test]
async fn concurrent_full_lists_share_one_build_and_another_workspace_is_not_held_up() {
    use secrecy::SecretString;
    use socialsyncer::accounts::seal_context;
    use socialsyncer::domain::{AccountId, Platform, now};
    use socialsyncer::simulator::TokenSpec;
    use socialsyncer::store::NewAccount;
    let app = spawn_app().await;
    let (big, small) = (app.key("big").await, app.key("small").await);
    app.connect(&small, Platform::Threads, "1", TokenSpec::valid(Platform::Threads, "0"))
        .await;
    // 1,234 accounts straight into the store (registering each would check it): more than
    // one read step of a full list, so its body is sent in several pieces.
    let ws = app.state.store.workspace_id("big").await.unwrap().unwrap();
    let accounts: Vec<NewAccount> = (0..1234)
        .map(|i| {
            let id = format!("{}", 5_000 + i);
            NewAccount {
                workspace_id: ws,
                platform: Platform::Threads,
                account_id: AccountId::parse(Platform::Threads, &id).unwrap(),
                username: format!("account{i}"),
                access_token: app.state.sealer.seal(
                    &seal_context(ws, Platform::Threads, &id),
                    &SecretString::from(format!("THQVlist{i}")),
                ),
                refresh_token: None,
                token_expires_at: Some(now() + 50 * 86_400),
                scopes: vec!["threads_basic".into()],
                connected_at: now(),
                custody: socialsyncer::domain::Custody::Socialsyncer,
                instagram_login: None,
            }
        })
        .collect();
    app.state.store.insert_accounts(&accounts).await.unwrap();

    let builds = app.state.api.list_cache.builds();
    let get = |key: String| {
        let (http, url) = (app.http.clone(), app.url("/v1/accounts/health"));
        async move {
            let r = http.get(url).bearer_auth(key).send().await.unwrap();
            let length: usize = r.headers()["content-length"].to_str().unwrap().parse().unwrap();
            (r.status().as_u16(), length, r.bytes().await.unwrap())
        }
    };
    let mut lists = tokio::task::JoinSet::new();
    for _ in 0..20 {
        lists.spawn(get(big.clone()));
    }
    let (s, _, body) = get(small.clone()).await;
    assert_eq!(s, 200);
    let small_list: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(keys_of(&small_list["accounts"][0]).len(), 12, "{small_list}");
    assert_eq!(
        small_list["summary"]["total"], 1,
        "the small workspace answers its own list"
    );
    let mut bodies = Vec::new();
    while let Some(r) = lists.join_next().await {
        let (s, length, body) = r.unwrap();
        assert_eq!(s, 200);
        assert_eq!(length, body.len(), "Content-Length is the body's");
        bodies.push(body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "every request got the same answer"
    );
    let list: Value = serde_json::from_slice(&bodies[0]).unwrap();
    let ids: Vec<i64> = list["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["accountId"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        ids,
        (5_000..6_234).collect::<Vec<i64>>(),
        "every account once, in order"
    );
    assert_eq!(list["summary"]["total"], 1234);
    // The big list and its counts once for 20 requests, and the small workspace's two.
    assert_eq!(app.state.api.list_cache.builds() - builds, 4);
    app.stop().await;
}

#[tokio::test]
async fn lists_are_cached_per_workspace_with_an_etag_and_every_write_invalidates_them() {
    use socialsyncer::domain::Platform;
    use socialsyncer::simulator::TokenSpec;
    let app = spawn_app_cfg("", |c| c.schedule.cron = String::new()).await;
    let key = app.key("acme").await;
    let other = app.key("other").await;
    app.connect(&key, Platform::Threads, "41", TokenSpec::valid(Platform::Threads, "41"))
        .await;
    let get = |path: &'static str, etag: Option<String>, k: String| {
        let (http, url) = (app.http.clone(), app.url(path));
        async move {
            let mut r = http.get(url).bearer_auth(k);
            if let Some(e) = etag {
                r = r.header("if-none-match", e);
            }
            let r = r.send().await.unwrap();
            let etag = r.headers().get("etag").map(|v| v.to_str().unwrap().to_owned());
            (r.status().as_u16(), etag, r.text().await.unwrap())
        }
    };
    let (s, e1, body1) = get("/v1/accounts/health", None, key.clone()).await;
    assert_eq!(s, 200);
    let e1 = e1.expect("an ETag");
    let (s, e, body) = get("/v1/accounts/health", Some(e1.clone()), key.clone()).await;
    assert_eq!((s, e.as_deref(), body.as_str()), (304, Some(e1.as_str()), ""));
    let (s, e, body) = get("/v1/accounts/health", None, key.clone()).await;
    assert_eq!(
        (s, e.as_deref(), &body),
        (200, Some(e1.as_str()), &body1),
        "the same bytes again"
    );

    // Another workspace's write leaves this one's answer alone.
    app.connect(
        &other,
        Platform::Threads,
        "42",
        TokenSpec::valid(Platform::Threads, "42"),
    )
    .await;
    let (s, _, _) = get("/v1/accounts/health", Some(e1.clone()), key.clone()).await;
    assert_eq!(s, 304);

    // Each kind of write to this workspace changes the answer: a check, a registration, a
    // deletion, and a write by another process on the same database (an admin command).
    // (A second later, so that the check's lastCheckedAt differs from the cached one.)
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let (_, v) = app
        .post(&key, "/v1/accounts/threads/41/check", &serde_json::Value::Null)
        .await;
    assert_eq!(v["health"], "healthy");
    let (s, e2, _) = get("/v1/accounts/health", Some(e1.clone()), key.clone()).await;
    assert_eq!(s, 200, "a check invalidates");
    let e2 = e2.unwrap();
    app.connect(&key, Platform::Threads, "43", TokenSpec::valid(Platform::Threads, "43"))
        .await;
    let (s, e3, body) = get("/v1/accounts/health", Some(e2), key.clone()).await;
    assert_eq!(s, 200, "a registration invalidates");
    assert!(body.contains("\"43\""));
    let other_process = app.other_store().await;
    let a = app
        .state
        .store
        .all_accounts(None)
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.account_id == "43")
        .unwrap();
    other_process.take_account(a.id).await.unwrap();
    other_process.close().await;
    let (s, _, body) = get("/v1/accounts/health", Some(e3.unwrap()), key.clone()).await;
    assert_eq!(s, 200, "a write by another process invalidates");
    assert!(!body.contains("\"43\""));

    // Time alone: the answer changes when an account turns stale, without any write. (The
    // UPDATE below bypasses the store, so no generation moves: it only sets the scene, and
    // the list is first read after it.)
    let db = app.db().await;
    sqlx::query("UPDATE account_health SET last_success_at = $1")
        .bind(socialsyncer::domain::now() - 86_400 + 2)
        .execute(&db)
        .await
        .unwrap();
    let (s, e4, body) = get("/v1/accounts/health?health=unknown", None, key.clone()).await;
    assert_eq!(s, 200);
    assert!(body.starts_with("{\"accounts\":[]"), "{body}");
    tokio::time::sleep(std::time::Duration::from_millis(3_100)).await;
    let (s, _, body) = get("/v1/accounts/health?health=unknown", e4, key.clone()).await;
    assert_eq!(s, 200, "the cached answer knew when its first account turns stale");
    assert!(body.contains("has not answered since"), "{body}");
    app.stop().await;
}

/// A registration invalidates a cached list by itself: here its first check is not made (the
/// platform's on-demand share has no turn for it), so nothing else writes.
#[tokio::test]
async fn a_cached_list_is_invalidated_by_a_registration_that_was_not_checked() {
    use socialsyncer::domain::Platform;
    use socialsyncer::simulator::TokenSpec;
    // One TikTok request every 1,000 s: the first registration takes the turn, the second
    // finds none and stands unchecked.
    let app = spawn_app_cfg("", |c| c.platforms.tiktok.rate_limit = Some(0.001)).await;
    let key = app.key("acme").await;
    app.connect(&key, Platform::Tiktok, "1", TokenSpec::valid(Platform::Tiktok, "1"))
        .await;
    let (_, first) = app.get(&key, "/v1/accounts").await;
    assert_eq!(first["accounts"].as_array().unwrap().len(), 1, "{first}");
    let calls = app.sim.calls(Platform::Tiktok);
    let (_, v) = app
        .connect(&key, Platform::Tiktok, "2", TokenSpec::valid(Platform::Tiktok, "2"))
        .await;
    assert_eq!(app.sim.calls(Platform::Tiktok), calls, "not checked: {v}");
    let (_, after) = app.get(&key, "/v1/accounts").await;
    assert_eq!(after["accounts"].as_array().unwrap().len(), 2, "{after}");
    // The store's bulk insert (benchmarks, fixtures) invalidates it too.
    let ws = app
        .state
        .store
        .ensure_workspace("acme", socialsyncer::domain::now())
        .await
        .unwrap();
    let (bulk, _) = crate::common::new_account(
        &app.state,
        &app.sim,
        ws,
        Platform::Tiktok,
        "3",
        TokenSpec::valid(Platform::Tiktok, "3"),
    );
    app.state.store.insert_accounts(&[bulk]).await.unwrap();
    let (_, after) = app.get(&key, "/v1/accounts").await;
    assert_eq!(after["accounts"].as_array().unwrap().len(), 3, "{after}");
    app.stop().await;
}

#[tokio::test]
async fn a_cached_list_is_invalidated_by_an_import_from_another_process_and_by_a_token_replacement() {
    use socialsyncer::domain::Platform;
    use socialsyncer::simulator::TokenSpec;
    // The CLI below drives the SQLite file (the PostgreSQL pass has its own database URL).
    if crate::common::postgres_pass() {
        return;
    }
    let app = spawn_app().await;
    let key = app.key("acme").await;
    app.connect(&key, Platform::Threads, "1", TokenSpec::valid(Platform::Threads, "0"))
        .await;
    let (_, first) = app.get(&key, "/v1/accounts").await;
    let builds = app.state.api.list_cache.builds();
    let (_, again) = app.get(&key, "/v1/accounts").await;
    assert_eq!((app.state.api.list_cache.builds(), &again), (builds, &first), "cached");

    // `accounts import` from another process, nothing else between.
    let cfg = app.cli_config();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_socialsyncer"))
        .arg("--config")
        .arg(&cfg)
        .args(["accounts", "import", "--workspace", "acme", "--platform", "threads"])
        .args(["--account-id", "2", "--username", "imported"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"THQVimported\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, after) = app.get(&key, "/v1/accounts").await;
    assert_eq!(after["accounts"].as_array().unwrap().len(), 2, "{after}");

    // A token replacement (a refresh's commit), nothing else between.
    let (_, before) = app.get(&key, "/v1/accounts/health").await;
    let a = app
        .state
        .store
        .all_accounts(Some(Platform::Threads))
        .await
        .unwrap()
        .remove(0);
    let later = socialsyncer::domain::now() + 99 * 86_400;
    crate::common::replace_access_token(&app.state, &a, "THQVnew", later).await;
    let (_, now_shown) = app.get(&key, "/v1/accounts/health").await;
    assert_ne!(
        before["accounts"][0]["tokenExpiresAt"], now_shown["accounts"][0]["tokenExpiresAt"],
        "the new expiry shows at once"
    );
    assert_eq!(
        now_shown["accounts"][0]["tokenExpiresAt"],
        socialsyncer::domain::rfc3339(later)
    );
    app.stop().await;
}
