//! Seeing health (issue 26): transitions written with the checks that cause them, one
//! account's timeline with its incidents and availability, on the test clock.

use serde_json::Value;
use socialsyncer::domain::{self, Platform};
use socialsyncer::simulator::{TokenSpec, TokenState};

use crate::common::spawn_app;

/// Item 1: one transition per change (none for a check that changes nothing), with the
/// reason that caused it; the incident it opened and closed; availability over the known
/// time, saying "since" for an account younger than the window.
#[tokio::test]
async fn transitions_make_a_timeline_with_incidents_and_availability() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let (issued, v) = app
        .connect(
            &key,
            Platform::Facebook,
            "2000000000000071",
            TokenSpec::valid(Platform::Facebook, "0"),
        )
        .await;
    assert_eq!(v["health"], "healthy", "{v}");
    let connected = domain::parse_rfc3339(v["connectedAt"].as_str().unwrap()).unwrap();
    let check = || async {
        let (s, v) = app
            .post(&key, "/v1/accounts/facebook/2000000000000071/check", &Value::Null)
            .await;
        assert_eq!(s, 200, "{v}");
        v
    };
    app.state.clock.advance(86_400);
    app.sim.update(&issued.access_token, |t| t.state = TokenState::Revoked);
    assert_eq!(check().await["health"], "unhealthy");
    app.state.clock.advance(3_600);
    assert_eq!(check().await["health"], "unhealthy", "no change: no transition");
    app.state.clock.advance(11 * 3_600);
    app.sim.update(&issued.access_token, |t| t.state = TokenState::Valid);
    assert_eq!(check().await["health"], "healthy");
    app.state.clock.advance(12 * 3_600);

    let (s, t) = app.get(&key, "/v1/accounts/facebook/2000000000000071/timeline").await;
    assert_eq!(s, 200, "{t}");
    let moves: Vec<(&str, &str)> = t["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["from"].as_str().unwrap(), x["to"].as_str().unwrap()))
        .collect();
    assert_eq!(
        moves,
        [
            ("unknown", "healthy"),
            ("healthy", "unhealthy"),
            ("unhealthy", "healthy")
        ],
        "{t}"
    );
    let broke = &t["transitions"][1];
    assert_eq!(broke["needsPerson"], true, "{t}");
    assert!(!broke["reason"].as_str().unwrap().is_empty(), "the cause: {t}");
    let incidents = t["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1, "{t}");
    let (start, end) = (
        domain::parse_rfc3339(incidents[0]["start"].as_str().unwrap()).unwrap(),
        domain::parse_rfc3339(incidents[0]["end"].as_str().unwrap()).unwrap(),
    );
    // The daemon's clock runs on between the checks (seconds at most).
    let near = |got: i64, want: i64| (want..want + 5).contains(&got);
    assert!(
        near(start - connected, 86_400) && near(end - connected, 86_400 + 12 * 3_600),
        "{t}"
    );
    assert_eq!(incidents[0]["cause"], broke["reason"]);
    // Two days known, half a day of them unhealthy: 75 %, since the account was connected.
    for a in t["availability"].as_array().unwrap() {
        assert!((a["percent"].as_f64().unwrap() - 75.0).abs() < 0.01, "{a}");
        assert_eq!(a["since"].as_str(), Some(domain::rfc3339(connected).as_str()), "{a}");
    }

    // Item 2: the workspace's events, newest first, in the webhooks' event types, paged.
    let (s, all) = app.get(&key, "/v1/events").await;
    assert_eq!(s, 200, "{all}");
    let events = all["events"].as_array().unwrap().clone();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types.iter().filter(|t| **t == "account.health_changed").count(),
        3,
        "{all}"
    );
    assert!(
        types.contains(&"account.needs_reconnect") && types.contains(&"account.recovered"),
        "{all}"
    );
    let times: Vec<i64> = events
        .iter()
        .map(|e| domain::parse_rfc3339(e["occurredAt"].as_str().unwrap()).unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {all}");
    let mut walked = Vec::new();
    let mut path = "/v1/events?limit=2".to_owned();
    loop {
        let (s, page) = app.get(&key, &path).await;
        assert_eq!(s, 200, "{page}");
        walked.extend(page["events"].as_array().unwrap().iter().map(|e| e["id"].clone()));
        match page["nextCursor"].as_str() {
            Some(c) => path = format!("/v1/events?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(
        walked,
        events.iter().map(|e| e["id"].clone()).collect::<Vec<_>>(),
        "pages walk it all once"
    );
    let (_, first) = app.get(&key, "/v1/events?limit=1").await;
    let c = first["nextCursor"].as_str().unwrap();
    let (s, v) = app
        .get(&key, &format!("/v1/events?limit=1&platform=twitter&cursor={c}"))
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_cursor")),
        "a cursor of another query: {v}"
    );
    let (_, v) = app
        .get(&key, "/v1/events?platform=facebook&account=2000000000000071")
        .await;
    assert_eq!(v["events"].as_array().unwrap().len(), events.len(), "{v}");
    let (_, v) = app.get(&key, "/v1/events?platform=twitter").await;
    assert!(v["events"].as_array().unwrap().is_empty(), "{v}");
    let since = domain::rfc3339(connected + 86_400);
    let (_, v) = app.get(&key, &format!("/v1/events?since={since}")).await;
    assert!(
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["occurredAt"].as_str().unwrap() >= since.as_str()),
        "{v}"
    );
    assert!(v["events"].as_array().unwrap().len() < events.len(), "{v}");
    let other = app.key("globex").await;
    let (_, v) = app.get(&other, "/v1/events").await;
    assert!(
        v["events"].as_array().unwrap().is_empty(),
        "another workspace's events never show: {v}"
    );
    let (s, _) = app.get(&key, "/v1/events?account=2000000000000071").await;
    assert_eq!(s, 400, "an account needs its platform");
    app.stop().await;
}

/// Items 3 and 4 (in part): a share link is made with a `manage` key, shown once, listed by
/// prefix only; it opens the workspace's badge (SVG and shields.io JSON) and one account's,
/// never another workspace's accounts; revoked or unknown, it answers 404.
#[tokio::test]
async fn share_links_open_badges_and_a_revoked_one_answers_404() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let spec = TokenSpec {
        state: TokenState::Revoked,
        ..TokenSpec::valid(Platform::Facebook, "0")
    };
    app.connect(&key, Platform::Facebook, "2000000000000081", spec).await;
    app.connect(
        &key,
        Platform::Facebook,
        "2000000000000082",
        TokenSpec::valid(Platform::Facebook, "0"),
    )
    .await;
    let reader = app.key_with("acme", &[socialsyncer::domain::KeyScope::Read]).await;
    let (s, _) = app.post(&reader, "/v1/status-links", &Value::Null).await;
    assert_eq!(s, 403, "a read-only key makes no share link");
    let (s, link) = app.post(&key, "/v1/status-links", &Value::Null).await;
    assert_eq!(s, 201, "{link}");
    let token = link["token"].as_str().unwrap().to_owned();
    let prefix = link["prefix"].as_str().unwrap().to_owned();
    assert!(token.starts_with(&prefix) && token.len() == 51, "{link}");
    let (_, listed) = app.get(&key, "/v1/status-links").await;
    assert_eq!(listed["links"][0]["prefix"], prefix.as_str());
    assert!(
        !listed.to_string().contains(&token),
        "the token is shown once: {listed}"
    );

    let get = |path: String| {
        let (http, url) = (app.http.clone(), app.url(&path));
        async move {
            let r = http.get(url).send().await.unwrap();
            let (status, ctype) = (
                r.status().as_u16(),
                r.headers()
                    .get("content-type")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default(),
            );
            (status, ctype, r.text().await.unwrap())
        }
    };
    let (s, ctype, svg) = get(format!("/status/{token}/badge.svg")).await;
    assert_eq!((s, ctype.as_str()), (200, "image/svg+xml"), "{svg}");
    assert!(
        svg.starts_with("<svg") && svg.contains(">1 unhealthy<") && !svg.contains("<script"),
        "{svg}"
    );
    let (_, _, json) = get(format!("/status/{token}/badge.svg?style=shields")).await;
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (v["message"].as_str(), v["color"].as_str()),
        (Some("1 unhealthy"), Some("red")),
        "{v}"
    );
    let (s, _, svg) = get(format!("/status/{token}/facebook/2000000000000082/badge.svg")).await;
    assert_eq!(s, 200);
    assert!(svg.contains(">healthy<"), "{svg}");

    // Another workspace's link shows its own accounts only.
    let other = app.key("globex").await;
    let (_, theirs) = app.post(&other, "/v1/status-links", &Value::Null).await;
    let theirs = theirs["token"].as_str().unwrap().to_owned();
    let (_, _, svg) = get(format!("/status/{theirs}/badge.svg")).await;
    assert!(svg.contains(">no accounts<"), "{svg}");
    let (s, _, _) = get(format!("/status/{theirs}/facebook/2000000000000082/badge.svg")).await;
    assert_eq!(s, 404, "another workspace's account never shows");

    let (s, _) = app.delete(&key, &format!("/v1/status-links/{prefix}")).await;
    assert_eq!(s, 204);
    let (s, _, _) = get(format!("/status/{token}/badge.svg")).await;
    assert_eq!(s, 404, "a revoked link");
    let (s, _) = app.delete(&key, &format!("/v1/status-links/{prefix}")).await;
    assert_eq!(s, 404);
    let (s, _, _) = get("/status/st_not-a-token/badge.svg".to_owned()).await;
    assert_eq!(s, 404);
    app.stop().await;
}
