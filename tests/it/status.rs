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

/// A status page or badge without a key: status, headers and body.
async fn page(
    app: &crate::common::TestApp,
    path: &str,
    etag: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut r = app.http.get(app.url(path));
    if let Some(e) = etag {
        r = r.header("if-none-match", e);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.headers().clone(), r.text().await.unwrap())
}

/// Item 3: the workspace's page lists every account worst first with a 90-cell bar, what to
/// do for the one that needs a person, the availability on the test clock (75 % since the
/// account was connected: half a day broken in two), the tenant's text escaped; it is cached
/// (same ETag, 304) until the workspace changes; the account's page has its band, incidents,
/// deadline and checks; another workspace's link never shows these accounts; a revoked link
/// answers 404; `?page` is checked; the operator's page counts every workspace.
#[tokio::test]
async fn status_pages_show_the_workspace_worst_first_and_follow_its_changes() {
    let app = spawn_app().await;
    let key = app.key("acme").await;
    let (good, _) = app
        .connect(
            &key,
            Platform::Facebook,
            "2000000000000091",
            TokenSpec::valid(Platform::Facebook, "0"),
        )
        .await;
    let issued = app.sim.issue(
        Platform::Facebook,
        TokenSpec {
            state: TokenState::Revoked,
            ..TokenSpec::valid(Platform::Facebook, "2000000000000092")
        },
    );
    let (s, v) = app
        .post(
            &key,
            "/v1/accounts",
            &serde_json::json!({"platform": "facebook", "accountId": "2000000000000092",
                "username": "<b>Acme</b> & \"Co\"", "accessToken": issued.access_token}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let check = |id: &'static str| {
        let (app, key) = (&app, &key);
        async move {
            let (s, v) = app
                .post(key, &format!("/v1/accounts/facebook/{id}/check"), &Value::Null)
                .await;
            assert_eq!(s, 200, "{v}");
        }
    };
    app.state.clock.advance(86_400);
    app.sim.update(&good.access_token, |t| t.state = TokenState::Revoked);
    check("2000000000000091").await;
    app.state.clock.advance(12 * 3_600);
    app.sim.update(&good.access_token, |t| t.state = TokenState::Valid);
    check("2000000000000091").await;
    app.state.clock.advance(12 * 3_600);
    check("2000000000000092").await;

    let (_, link) = app.post(&key, "/v1/status-links", &Value::Null).await;
    let token = link["token"].as_str().unwrap().to_owned();
    let (s, h, html) = page(&app, &format!("/status/{token}"), None).await;
    assert_eq!(s, 200, "{html}");
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none'; style-src 'sha256-"), "{csp}");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert!(
        !html.contains("<script") && !html.contains(" style=\""),
        "no script, no style attribute"
    );
    assert!(
        html.contains("&lt;b&gt;Acme&lt;/b&gt; &amp; &quot;Co&quot;") && !html.contains("<b>Acme"),
        "the tenant's text is escaped"
    );
    let (bad, ok) = (
        html.find("facebook/2000000000000092\"").unwrap(),
        html.find("facebook/2000000000000091\"").unwrap(),
    );
    assert!(bad < ok, "the account that needs a person comes first");
    assert!(html.contains("<b>1</b>need a person"), "the counts");
    assert!(html.contains("class=\"person-card\""), "what to do");
    let bars: Vec<&str> = html.split("<div class=\"bar\"").skip(1).collect();
    assert_eq!(bars.len(), 2);
    for b in &bars {
        let cells = b.split("</div>").next().unwrap().matches("</i>").count();
        assert_eq!(cells, 90, "{b}");
    }
    assert!(html.contains("75 % since"), "availability over the known time");
    assert!(
        html.contains("title=\"") && html.contains(": incident\""),
        "the day of the incident"
    );
    for secret in [good.access_token.as_str(), issued.access_token.as_str()] {
        assert!(!html.contains(secret), "never a token");
    }

    // Cached: the same ETag, a 304 for it, until the workspace changes.
    let etag = h["etag"].to_str().unwrap().to_owned();
    let (s, h2, _) = page(&app, &format!("/status/{token}"), None).await;
    assert_eq!((s, h2["etag"].to_str().unwrap()), (200, etag.as_str()));
    let (s, _, _) = page(&app, &format!("/status/{token}"), Some(&etag)).await;
    assert_eq!(s, 304);
    app.sim.update(&good.access_token, |t| t.state = TokenState::Revoked);
    check("2000000000000091").await;
    // A link looked up less than a second ago is not looked up again.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let (s, h3, html) = page(&app, &format!("/status/{token}"), Some(&etag)).await;
    assert_eq!(s, 200, "a change rebuilds the page");
    assert_ne!(h3["etag"], etag.as_str());
    assert!(html.contains("<b>2</b>need a person"), "{html}");

    // One account's page.
    let (s, _, acc) = page(&app, &format!("/status/{token}/facebook/2000000000000091"), None).await;
    assert_eq!(s, 200, "{acc}");
    assert!(
        acc.contains("<svg class=\"band\"") && acc.contains("<rect class=\"r\""),
        "the band"
    );
    assert!(acc.contains("<table class=\"incidents stack\""), "the incidents");
    assert!(acc.contains("Reconnect by</dt><dd>now"), "the deadline");
    assert!(acc.contains("Checks of the last day (2)"), "{acc}");
    assert!(acc.contains("href=\"../../"), "the way back");
    let (s, _, _) = page(&app, &format!("/status/{token}/facebook/2000000000000099"), None).await;
    assert_eq!(s, 404);

    // Paging is checked.
    let (s, _, _) = page(&app, &format!("/status/{token}?page=2"), None).await;
    assert_eq!(s, 404, "one page only");
    for q in ["page=0", "page=x", "limit=5"] {
        let (s, _, _) = page(&app, &format!("/status/{token}?{q}"), None).await;
        assert_eq!(s, 400, "{q}");
    }

    // Another workspace's link: its own (empty) page; these accounts are 404 there.
    let other = app.key("globex").await;
    let (_, theirs) = app.post(&other, "/v1/status-links", &Value::Null).await;
    let theirs = theirs["token"].as_str().unwrap().to_owned();
    let (s, _, html) = page(&app, &format!("/status/{theirs}"), None).await;
    assert_eq!(s, 200);
    assert!(
        html.contains("No accounts are connected yet") && !html.contains("2000000000000091"),
        "{html}"
    );
    let (s, _, _) = page(&app, &format!("/status/{theirs}/facebook/2000000000000091"), None).await;
    assert_eq!(s, 404, "another workspace's account");

    // The operator's page: every workspace's counts (the metrics listener is the API's here).
    let (s, h, op) = page(&app, "/status", None).await;
    assert_eq!(s, 200, "{op}");
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'")
    );
    assert!(
        op.contains("<td>acme</td><td>2</td>") && op.contains("<td>globex</td><td>0</td>"),
        "{op}"
    );

    // Revoked: 404 for the page and the account's.
    let prefix = link["prefix"].as_str().unwrap();
    let (s, _) = app.delete(&key, &format!("/v1/status-links/{prefix}")).await;
    assert_eq!(s, 204);
    for path in [
        format!("/status/{token}"),
        format!("/status/{token}/facebook/2000000000000091"),
    ] {
        let (s, _, html) = page(&app, &path, None).await;
        assert_eq!(s, 404, "{path}");
        assert!(!html.contains("2000000000000091"), "{html}");
    }
    app.stop().await;
}
