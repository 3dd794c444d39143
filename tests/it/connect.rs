//! Connect links (issue 23, X so far): a browser follows socialsyncer's link to the platform's
//! consent, posts it, and comes back through the callback to the product's `redirectUrl`,
//! over real HTTP, redirect by redirect.

use serde_json::{Value, json};
use socialsyncer::domain::Platform;
use socialsyncer::simulator::TokenSpec;

use crate::common::{TestApp, code, spawn_app_cfg};

pub(crate) const BACK: &str = "https://product.example/connected";

pub(crate) async fn app() -> (TestApp, String) {
    app_with(|_| {}).await
}

/// The whole daemon with connect links on a port of their own, `tweak` applied; its public URL.
///
/// The connect port is picked free and bound by the daemon a moment later: in between, a
/// socket of the tests running beside this one (an outgoing connection's own port) may take
/// it, and the daemon then stops at once ("Failed to listen on ... (connect.listen)"). Such
/// a start is tried again on another port.
pub(crate) async fn app_with(
    tweak: impl Fn(&mut socialsyncer::config::Config) + Clone + Send + 'static,
) -> (TestApp, String) {
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let public = format!("http://127.0.0.1:{port}");
        let (p, tweak) = (public.clone(), tweak.clone());
        let app = spawn_app_cfg("", move |c| {
            c.schedule.cron = String::new();
            c.connect.public_url = p;
            c.connect.listen = format!("127.0.0.1:{port}");
            c.connect.allowed_redirects = vec!["https://product.example/".into()];
            tweak(c);
        })
        .await;
        // The API answers only once the connect listener is bound; a daemon that could not
        // bind it has dropped its API listener too.
        let up = app
            .http
            .get(format!("{}/healthz", app.base))
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await
            .is_ok();
        if up {
            return (app, public);
        }
    }
    panic!("the daemon could not listen for connect links on five free ports in a row");
}

/// A browser that does not follow redirects by itself: each hop is looked at.
pub(crate) fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub(crate) fn location(r: &reqwest::Response) -> String {
    assert_eq!(r.status().as_u16(), 302, "a redirect");
    r.headers()["location"].to_str().unwrap().to_owned()
}

/// The hidden fields of a form, as a browser posts them.
pub(crate) fn hidden_fields(html: &str) -> Vec<(String, String)> {
    html.split("<input type=\"hidden\" ")
        .skip(1)
        .filter_map(|rest| {
            let attr = |name: &str| {
                let start = rest.find(&format!("{name}=\""))? + name.len() + 2;
                let end = start + rest[start..].find('"')?;
                Some(
                    rest[start..end]
                        .replace("&quot;", "\"")
                        .replace("&lt;", "<")
                        .replace("&gt;", ">")
                        .replace("&amp;", "&"),
                )
            };
            Some((attr("name")?, attr("value")?))
        })
        .collect()
}

/// Follows a connect link to the platform's consent page (checking the link's answer has a
/// strict CSP), posts the form with `fields` and `action` as a person would, and follows the
/// platform's redirect to socialsyncer's callback. The consent page's URL, and the
/// callback's answer.
pub(crate) async fn consent(link: &str, fields: &[(&str, &str)], action: &str) -> (String, reqwest::Response) {
    let b = browser();
    let r = b.get(link).send().await.unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let consent = location(&r);
    let page = b.get(&consent).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200, "the consent page");
    let html = page.text().await.unwrap();
    assert!(html.contains("<form"), "{html}");
    let mut form = hidden_fields(&html);
    form.extend(fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    form.push(("action".into(), action.into()));
    let back = location(&b.post(&consent).form(&form).send().await.unwrap());
    // The platform sends the browser to socialsyncer's callback.
    assert!(back.contains("/connect/callback/"), "{back}");
    (consent, b.get(&back).send().await.unwrap())
}

/// Follows a connect link as a person at the platform's consent page who signs in as
/// `user_id` and presses `action`; returns where the browser lands at the end.
pub(crate) async fn walk(link: &str, user_id: &str, action: &str) -> String {
    let (consent_url, r) = consent(link, &[("user_id", user_id)], action).await;
    if consent_url.contains("/twitter/") {
        let q: std::collections::HashMap<String, String> = reqwest::Url::parse(&consent_url)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        assert_eq!(q["code_challenge_method"], "S256");
        assert!(q["scope"].contains("offline.access"), "{q:?}");
    }
    location(&r)
}

pub(crate) async fn link(app: &TestApp, key: &str, body: Value) -> String {
    let (s, v) = app.post(key, "/v1/connect", &body).await;
    assert_eq!(s, 200, "{v}");
    v["url"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_x_account_is_connected_through_a_link_and_checked() {
    let (app, public) = app().await;
    let key = app.key("acme").await;
    let url = link(&app, &key, json!({"platform": "twitter", "redirectUrl": BACK})).await;
    assert!(url.starts_with(&format!("{public}/connect/")), "{url}");
    let end = walk(&url, "777", "allow").await;
    assert_eq!(end, format!("{BACK}?status=connected&platform=twitter&accountId=777"));
    let (s, v) = app.get(&key, "/v1/accounts/twitter/777").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["health"].as_str(), v["custody"].as_str()),
        (Some("healthy"), Some("socialsyncer")),
        "{v}"
    );
    // The link was single-use.
    let r = browser().get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_failure_goes_back_with_an_error_and_stores_nothing() {
    let (app, _) = app().await;
    let key = app.key("acme").await;
    // A redirect the operator does not allow, an unknown platform to connect.
    let (s, v) = app
        .post(
            &key,
            "/v1/connect",
            &json!({"platform": "twitter", "redirectUrl": "https://evil.example/x"}),
        )
        .await;
    assert_eq!((s, code(&v)), (400, "invalid_redirect_url"));
    // Consent denied.
    let url = link(&app, &key, json!({"platform": "twitter", "redirectUrl": BACK})).await;
    assert_eq!(
        walk(&url, "778", "cancel").await,
        format!("{BACK}?status=error&error=access_denied")
    );
    // An unknown state: a plain page, no redirect.
    let r = browser()
        .get(format!(
            "{}/connect/callback/twitter?state=forged&code=x",
            url.split("/connect/").next().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("Nothing was connected"));
    // A replayed callback: the session was taken by the first.
    let url = link(&app, &key, json!({"platform": "twitter", "redirectUrl": BACK})).await;
    let b = browser();
    let consent = location(&b.get(&url).send().await.unwrap());
    let q: std::collections::HashMap<String, String> = reqwest::Url::parse(&consent)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let callback = format!("{}?state={}&code=not-a-code", q["redirect_uri"], q["state"]);
    assert_eq!(
        location(&b.get(&callback).send().await.unwrap()),
        format!("{BACK}?status=error&error=exchange_failed"),
        "a code X refuses"
    );
    assert_eq!(
        location(&b.get(&callback).send().await.unwrap()),
        format!("{BACK}?status=error&error=invalid_state"),
        "the session is single-use"
    );
    let (_, list) = app.get(&key, "/v1/accounts").await;
    assert_eq!(list["accounts"].as_array().unwrap().len(), 0, "nothing stored: {list}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pinned_reconnect_returning_another_account_is_refused_and_the_right_one_replaces_tokens() {
    let (app, _) = app().await;
    let key = app.key("acme").await;
    let (issued, _) = app
        .connect(
            &key,
            Platform::Twitter,
            "900",
            TokenSpec::valid(Platform::Twitter, "900"),
        )
        .await;
    let pinned = json!({"platform": "twitter", "redirectUrl": BACK, "accountId": "900"});
    let url = link(&app, &key, pinned.clone()).await;
    assert_eq!(
        walk(&url, "901", "allow").await,
        format!("{BACK}?status=error&error=wrong_account")
    );
    let (_, t) = app.get(&key, "/v1/accounts/twitter/900/token").await;
    assert_eq!(
        t["accessToken"],
        issued.access_token.as_str(),
        "the pinned account's tokens are unchanged"
    );
    let (_, list) = app.get(&key, "/v1/accounts").await;
    assert_eq!(
        list["accounts"].as_array().unwrap().len(),
        1,
        "the other account was not stored"
    );
    let url = link(&app, &key, pinned).await;
    assert_eq!(
        walk(&url, "900", "allow").await,
        format!("{BACK}?status=connected&platform=twitter&accountId=900")
    );
    let (_, t) = app.get(&key, "/v1/accounts/twitter/900/token").await;
    assert_ne!(t["accessToken"], issued.access_token.as_str(), "new tokens");
    let (_, h) = app.get(&key, "/v1/accounts/twitter/900/history").await;
    assert!(
        h["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "tokens_replaced"),
        "{h}"
    );
    app.stop().await;
}

/// An alert about an X account that needs a reconnect carries a link pinned to it (here in a
/// JSON webhook); a cancelled attempt leaves the link usable, a successful one replaces the
/// tokens, raises `account.reconnected` and `account.recovered`, and uses the link up.
#[tokio::test(flavor = "multi_thread")]
async fn an_alerts_reconnect_link_fixes_the_account_once() {
    let (app, public) = app_with(|c| {
        c.notify.allow_insecure_loopback = true;
        c.notify.allow_private_networks = true;
    })
    .await;
    let key = app.key("acme").await;
    let (hook, log) = crate::webhooks::receiver(&[], false).await;
    let (s, v) = app
        .put(
            &key,
            "/v1/notifications",
            &json!({"emails": [], "webhooks": [{"url": hook}]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    app.connect(
        &key,
        Platform::Twitter,
        "960",
        TokenSpec {
            state: socialsyncer::simulator::TokenState::Revoked,
            ..TokenSpec::valid(Platform::Twitter, "960")
        },
    )
    .await;
    socialsyncer::alerts::deliver(&app.state.outbox).await.unwrap();
    let mut event = Value::Null;
    for _ in 0..200 {
        if let Some((_, body)) = log.lock().unwrap().posts.first() {
            event = serde_json::from_slice(body).unwrap();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(event["type"], "account.needs_reconnect", "{event}");
    let link = event["reconnectUrl"].as_str().unwrap().to_owned();
    assert!(link.starts_with(&format!("{public}/connect/")), "{link}");
    let done = format!("{public}/connect/done");
    // The account's JSON gives the same link.
    let (_, v) = app.get(&key, "/v1/accounts/twitter/960").await;
    assert_eq!(v["reconnectUrl"], link.as_str(), "{v}");
    // Cancelled: the link still works.
    assert_eq!(
        walk(&link, "960", "cancel").await,
        format!("{done}?status=error&error=access_denied")
    );
    assert_eq!(
        walk(&link, "960", "allow").await,
        format!("{done}?status=connected&platform=twitter&accountId=960")
    );
    let (_, v) = app.get(&key, "/v1/accounts/twitter/960").await;
    assert_eq!(v["health"], "healthy", "{v}");
    assert!(v.get("reconnectUrl").is_none(), "no link once healthy: {v}");
    let kinds: Vec<(String,)> = sqlx::query_as("SELECT kind FROM alert_outbox ORDER BY id")
        .fetch_all(&app.db().await)
        .await
        .unwrap();
    let kinds: Vec<String> = kinds.into_iter().map(|(k,)| k).collect();
    assert!(
        kinds.contains(&"reconnected".to_owned()) && kinds.contains(&"recovered".to_owned()),
        "{kinds:?}"
    );
    // Used by the success: no second one.
    let r = browser().get(&link).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    app.stop().await;
}
