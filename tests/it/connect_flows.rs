//! Connect links on every platform (issue 23): each documented flow walked over HTTP as a
//! browser would, Facebook's Page chooser, and the simulated platforms' refusals.

use serde_json::json;
use socialsyncer::domain::Platform;
use socialsyncer::simulator::{APP_ID, APP_SECRET, TokenSpec};

use crate::common::TestApp;
use crate::connect::{BACK, app, app_with, browser, consent, link, location, walk};

async fn account(app: &TestApp, key: &str, platform: &str, id: &str) -> serde_json::Value {
    let (s, v) = app.get(key, &format!("/v1/accounts/{platform}/{id}")).await;
    assert_eq!(s, 200, "{v}");
    v
}

async fn stored(app: &TestApp, key: &str) -> Vec<String> {
    let (_, list) = app.get(key, "/v1/accounts").await;
    list["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{}/{}",
                a["platform"].as_str().unwrap(),
                a["accountId"].as_str().unwrap()
            )
        })
        .collect()
}

fn connected(platform: &str, ids: &[&str]) -> String {
    let ids: String = ids.iter().map(|i| format!("&accountId={i}")).collect();
    format!("{BACK}?status=connected&platform={platform}{ids}")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_threads_and_a_tiktok_account_connect_through_their_flows_and_are_checked() {
    let (app, _) = app().await;
    let key = app.key("acme").await;
    // Threads: the code for a one-hour token, that for a 60-day one (th_exchange_token).
    let url = link(&app, &key, json!({"platform": "threads", "redirectUrl": BACK})).await;
    assert_eq!(
        walk(&url, "3000000000000077", "allow").await,
        connected("threads", &["3000000000000077"])
    );
    let v = account(&app, &key, "threads", "3000000000000077").await;
    assert_eq!(
        (v["health"].as_str(), v["custody"].as_str()),
        (Some("healthy"), Some("socialsyncer")),
        "{v}"
    );
    let expires = time::OffsetDateTime::parse(
        v["tokenExpiresAt"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let days = (expires - time::OffsetDateTime::now_utc()).whole_days();
    assert!((58..=60).contains(&days), "the long-lived token's 60 days: {v}");
    // TikTok: the code at /v2/oauth/token/ gives the tokens and the open_id.
    let open_id = "0a1b2c3d-aaaa-bbbb-cccc-123456789abc";
    let url = link(&app, &key, json!({"platform": "tiktok", "redirectUrl": BACK})).await;
    assert_eq!(walk(&url, open_id, "allow").await, connected("tiktok", &[open_id]));
    let v = account(&app, &key, "tiktok", open_id).await;
    assert_eq!(v["health"], "healthy", "{v}");
    let (sealed,): (Option<Vec<u8>>,) = sqlx::query_as(
        "SELECT c.refresh_token FROM credentials c JOIN accounts a ON a.id = c.account_ref WHERE a.account_id = $1",
    )
    .bind(open_id)
    .fetch_one(&app.db().await)
    .await
    .unwrap();
    assert!(
        sealed.is_some_and(|r| !r.is_empty()),
        "the refresh token was stored (sealed)"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instagram_login_account_connects_with_the_instagram_login_app() {
    let (app, _) = app_with(|c| c.platforms.instagram.login = socialsyncer::config::InstagramLogin::Instagram).await;
    let key = app.key("acme").await;
    let url = link(&app, &key, json!({"platform": "instagram", "redirectUrl": BACK})).await;
    let (consent_url, r) = consent(&url, &[("user_id", "17841400000000077")], "allow").await;
    assert!(
        consent_url.contains("client_id=5550001112223"),
        "the Instagram Login app: {consent_url}"
    );
    assert!(consent_url.contains("instagram_business_basic"), "{consent_url}");
    assert_eq!(location(&r), connected("instagram", &["17841400000000077"]));
    let v = account(&app, &key, "instagram", "17841400000000077").await;
    assert_eq!(
        (v["health"].as_str(), v["custody"].as_str()),
        (Some("healthy"), Some("socialsyncer")),
        "{v}"
    );
    app.stop().await;
}

/// Facebook: the Pages `/me/accounts` lists count only where `debug_token`'s
/// `granular_scopes` names them; when several remain the person chooses on socialsyncer's
/// page (no script, escaped names), and only the chosen are stored, once.
#[tokio::test(flavor = "multi_thread")]
async fn facebook_pages_the_person_granted_are_offered_and_only_the_chosen_are_stored() {
    let (app, public) = app().await;
    let key = app.key("acme").await;
    let url = link(&app, &key, json!({"platform": "facebook", "redirectUrl": BACK})).await;
    let pages = "2000000000000011:Bakery <b>One</b>,2000000000000012:Cafe Two,2000000000000013:Shop Three";
    let (_, r) = consent(
        &url,
        &[("pages", pages), ("granted", "2000000000000011,2000000000000012")],
        "allow",
    )
    .await;
    let chooser_url = location(&r);
    assert!(
        chooser_url.starts_with(&format!("{public}/connect/")) && chooser_url.ends_with("/choose"),
        "{chooser_url}"
    );
    let r = browser().get(&chooser_url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "the chooser");
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("style-src 'sha256-") && !csp.contains("script"), "{csp}");
    let html = r.text().await.unwrap();
    assert!(
        html.contains("2000000000000011") && html.contains("2000000000000012"),
        "{html}"
    );
    assert!(
        !html.contains("2000000000000013"),
        "a Page the person did not grant is not offered: {html}"
    );
    assert!(
        html.contains("Bakery &lt;b&gt;One") && !html.contains("<b>One"),
        "escaped: {html}"
    );
    assert!(
        !html.contains("<script") && !html.contains("EAAG"),
        "no script, no token: {html}"
    );
    let action = html
        .split("action=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        action.starts_with(&format!("{public}/connect/")) && action.ends_with("/choose"),
        "{action}"
    );
    assert!(stored(&app, &key).await.is_empty(), "nothing stored before the choice");
    let b = browser();
    let choose = [("account", "2000000000000012"), ("action", "connect")];
    let r = b.post(&action).form(&choose).send().await.unwrap();
    assert_eq!(location(&r), connected("facebook", &["2000000000000012"]));
    assert_eq!(stored(&app, &key).await, vec!["facebook/2000000000000012".to_owned()]);
    let v = account(&app, &key, "facebook", "2000000000000012").await;
    assert_eq!(
        (v["health"].as_str(), v["username"].as_str()),
        (Some("healthy"), Some("Cafe Two")),
        "{v}"
    );
    // The choice is made once.
    let again = b
        .post(&action)
        .form(&[("account", "2000000000000011")])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&again), format!("{BACK}?status=error&error=invalid_state"));
    assert_eq!(stored(&app, &key).await.len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chooser_connects_several_pages_and_cancelling_or_choosing_none_stores_nothing() {
    let (app, _) = app().await;
    let key = app.key("acme").await;
    let pages = [("pages", "2000000000000041:Forty One,2000000000000042:Forty Two")];
    let choice = |url: String| async move {
        let (_, r) = consent(&url, &pages, "allow").await;
        let html = browser().get(location(&r)).send().await.unwrap().text().await.unwrap();
        html.split("action=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_owned()
    };
    let body = json!({"platform": "facebook", "redirectUrl": BACK});
    let b = browser();
    let action = choice(link(&app, &key, body.clone()).await).await;
    let r = b.post(&action).form(&[("action", "cancel")]).send().await.unwrap();
    assert_eq!(location(&r), format!("{BACK}?status=error&error=access_denied"));
    let action = choice(link(&app, &key, body.clone()).await).await;
    let r = b.post(&action).form(&[("action", "connect")]).send().await.unwrap();
    assert_eq!(location(&r), format!("{BACK}?status=error&error=no_accounts"));
    assert!(stored(&app, &key).await.is_empty(), "nothing stored");
    let action = choice(link(&app, &key, body).await).await;
    let both = [
        ("account", "2000000000000041"),
        ("account", "2000000000000042"),
        ("action", "connect"),
    ];
    let r = b.post(&action).form(&both).send().await.unwrap();
    assert_eq!(
        location(&r),
        connected("facebook", &["2000000000000041", "2000000000000042"])
    );
    assert_eq!(stored(&app, &key).await.len(), 2);
    app.stop().await;
}

/// Instagram through Facebook Login: each granted Page's `instagram_business_account`; a
/// single one connects without a chooser. A pinned Facebook reconnect takes its own Page's
/// new token and nothing else the consent covered.
#[tokio::test(flavor = "multi_thread")]
async fn instagram_through_facebook_login_and_a_pinned_page_reconnect() {
    let (app, _) = app().await;
    let key = app.key("acme").await;
    let url = link(&app, &key, json!({"platform": "instagram", "redirectUrl": BACK})).await;
    let pages = "2000000000000021:No Instagram,2000000000000022:With Instagram:17841400000000022";
    let (consent_url, r) = consent(&url, &[("pages", pages)], "allow").await;
    assert!(
        consent_url.contains(&format!("client_id={APP_ID}")),
        "the Facebook app: {consent_url}"
    );
    assert_eq!(location(&r), connected("instagram", &["17841400000000022"]));
    assert_eq!(
        account(&app, &key, "instagram", "17841400000000022").await["health"],
        "healthy"
    );
    let (issued, _) = app
        .connect(
            &key,
            Platform::Facebook,
            "2000000000000031",
            TokenSpec {
                state: socialsyncer::simulator::TokenState::Revoked,
                ..TokenSpec::valid(Platform::Facebook, "2000000000000031")
            },
        )
        .await;
    let pinned = json!({"platform": "facebook", "redirectUrl": BACK, "accountId": "2000000000000031"});
    let url = link(&app, &key, pinned.clone()).await;
    let (_, r) = consent(&url, &[("pages", "2000000000000032:Other")], "allow").await;
    assert_eq!(location(&r), format!("{BACK}?status=error&error=wrong_account"));
    let url = link(&app, &key, pinned).await;
    let pages = "2000000000000031:Mine,2000000000000032:Other";
    let (_, r) = consent(&url, &[("pages", pages)], "allow").await;
    assert_eq!(location(&r), connected("facebook", &["2000000000000031"]));
    let (_, t) = app.get(&key, "/v1/accounts/facebook/2000000000000031/token").await;
    assert_ne!(t["accessToken"], issued.access_token.as_str(), "new tokens");
    assert_eq!(
        account(&app, &key, "facebook", "2000000000000031").await["health"],
        "healthy"
    );
    assert!(
        !stored(&app, &key)
            .await
            .contains(&"facebook/2000000000000032".to_owned()),
        "only the pinned Page"
    );
    app.stop().await;
}

/// The simulated platforms refuse what the real ones refuse: a code presented twice, or with
/// another `redirect_uri` (which uses it up), and a client whose secret is wrong.
#[tokio::test(flavor = "multi_thread")]
async fn the_simulated_exchanges_refuse_reused_codes_and_other_redirects() {
    let (app, _) = app().await;
    let b = browser();
    let redirect = "https://daemon.example/connect/callback/x";
    let code = |platform: Platform, path: &'static str, client: (&'static str, &'static str)| {
        let (b, base) = (b.clone(), app.sim.base_url(platform));
        async move {
            let r = b
                .post(format!("{base}{path}"))
                .form(&[
                    client,
                    ("redirect_uri", redirect),
                    ("state", "s"),
                    ("scope", "x"),
                    ("user_id", "3000000000000001"),
                    ("action", "allow"),
                ])
                .send()
                .await
                .unwrap();
            let to = reqwest::Url::parse(&location(&r)).unwrap();
            to.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned()
        }
    };
    // Facebook Login.
    let fb = app.sim.base_url(Platform::Facebook);
    let exchange = |code: String, redirect: &'static str, secret: &'static str| {
        let (b, fb) = (b.clone(), fb.clone());
        async move {
            b.get(format!("{fb}/v23.0/oauth/access_token"))
                .query(&[
                    ("client_id", APP_ID),
                    ("client_secret", secret),
                    ("redirect_uri", redirect),
                    ("code", &code),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let c = code(Platform::Facebook, "/dialog/oauth", ("client_id", APP_ID)).await;
    assert_eq!(exchange(c.clone(), "https://elsewhere.example/", APP_SECRET).await, 400);
    assert_eq!(exchange(c, redirect, APP_SECRET).await, 400, "used up by the first try");
    let c = code(Platform::Facebook, "/dialog/oauth", ("client_id", APP_ID)).await;
    assert_eq!(exchange(c.clone(), redirect, "wrong").await, 400);
    assert_eq!(exchange(c.clone(), redirect, APP_SECRET).await, 200);
    assert_eq!(exchange(c, redirect, APP_SECRET).await, 400, "a reused code");
    // Threads.
    let threads = app.sim.base_url(Platform::Threads);
    let c = code(
        Platform::Threads,
        "/oauth/authorize",
        ("client_id", socialsyncer::simulator::THREADS_APP_ID),
    )
    .await;
    let form = |code: &str| {
        [
            ("client_id", socialsyncer::simulator::THREADS_APP_ID.to_owned()),
            ("client_secret", socialsyncer::simulator::THREADS_APP_SECRET.to_owned()),
            ("grant_type", "authorization_code".to_owned()),
            ("redirect_uri", redirect.to_owned()),
            ("code", code.to_owned()),
        ]
    };
    let post = |code: String| {
        let (b, threads) = (b.clone(), threads.clone());
        async move {
            b.post(format!("{threads}/oauth/access_token"))
                .form(&form(&code))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(post(c.clone()).await, 200);
    assert_eq!(post(c).await, 400, "a reused code");
    app.stop().await;
}

/// Every way a callback can fail on a Meta flow stores nothing: a code the platform refuses,
/// and a consent that granted no account (no Page with an Instagram account).
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_exchange_or_a_consent_without_accounts_stores_nothing() {
    let (app, _) = app().await;
    let key = app.key("acme").await;
    let url = link(&app, &key, json!({"platform": "instagram", "redirectUrl": BACK})).await;
    let (_, r) = consent(&url, &[("pages", "2000000000000051:No Instagram")], "allow").await;
    assert_eq!(location(&r), format!("{BACK}?status=error&error=no_accounts"));
    let url = link(&app, &key, json!({"platform": "facebook", "redirectUrl": BACK})).await;
    let b = browser();
    let to = location(&b.get(&url).send().await.unwrap());
    let q: std::collections::HashMap<String, String> =
        reqwest::Url::parse(&to).unwrap().query_pairs().into_owned().collect();
    let forged = format!("{}?state={}&code=forged", q["redirect_uri"], q["state"]);
    assert_eq!(
        location(&b.get(&forged).send().await.unwrap()),
        format!("{BACK}?status=error&error=exchange_failed")
    );
    let url = link(&app, &key, json!({"platform": "threads", "redirectUrl": BACK})).await;
    assert_eq!(
        walk(&url, "3000000000000099", "cancel").await,
        format!("{BACK}?status=error&error=access_denied")
    );
    assert!(stored(&app, &key).await.is_empty(), "nothing stored");
    app.stop().await;
}

/// An alert email about a Facebook Page that needs a reconnect carries a button with the
/// Page's reconnect link; following it through Facebook's consent (which covers two Pages)
/// replaces that Page's token only, and raises `account.reconnected`.
#[tokio::test(flavor = "multi_thread")]
async fn an_alert_emails_reconnect_button_reconnects_its_page() {
    let smtp = crate::smtp::SmtpServer::start().await;
    let url = smtp.url();
    let (app, public) = app_with(move |c| {
        c.email.smtp_url = Some(url.clone());
        c.email.from = Some("socialsyncer <alerts@example.com>".into());
    })
    .await;
    let key = app.key("acme").await;
    let (s, v) = app
        .put(&key, "/v1/notifications", &json!({"emails": ["social@acme.example"]}))
        .await;
    assert_eq!(s, 200, "{v}");
    let (issued, _) = app
        .connect(
            &key,
            Platform::Facebook,
            "2000000000000061",
            TokenSpec {
                state: socialsyncer::simulator::TokenState::Revoked,
                ..TokenSpec::valid(Platform::Facebook, "2000000000000061")
            },
        )
        .await;
    socialsyncer::alerts::deliver(&app.state.outbox).await.unwrap();
    let mail = smtp.mails().into_iter().next().expect("an alert email");
    let text = mail.text();
    let start = text
        .find(&format!("{public}/connect/"))
        .expect("a reconnect link in the email");
    let link: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || ":/._-".contains(*c))
        .collect();
    assert!(
        text.contains(">Reconnect user_2000000000000061</a>"),
        "a button: {text}"
    );
    let pages = "2000000000000061:Sixty One,2000000000000062:Sixty Two";
    let (_, r) = consent(&link, &[("pages", pages)], "allow").await;
    assert_eq!(
        location(&r),
        format!("{public}/connect/done?status=connected&platform=facebook&accountId=2000000000000061")
    );
    let (_, t) = app.get(&key, "/v1/accounts/facebook/2000000000000061/token").await;
    assert_ne!(t["accessToken"], issued.access_token.as_str(), "new tokens");
    assert_eq!(
        account(&app, &key, "facebook", "2000000000000061").await["health"],
        "healthy"
    );
    assert_eq!(stored(&app, &key).await.len(), 1, "only the Page the link is pinned to");
    let kinds: Vec<(String,)> = sqlx::query_as("SELECT kind FROM alert_outbox ORDER BY id")
        .fetch_all(&app.db().await)
        .await
        .unwrap();
    assert!(kinds.iter().any(|(k,)| k == "reconnected"), "{kinds:?}");
    app.stop().await;
}

/// A hostile browser races one consent's callback: of two identical callbacks sent at once,
/// one connects and the other is refused; of two choices posted at once, one is taken.
#[tokio::test(flavor = "multi_thread")]
async fn racing_callbacks_and_choices_connect_once() {
    let (app, _) = app().await;
    let key = app.key("acme").await;
    let url = link(&app, &key, json!({"platform": "threads", "redirectUrl": BACK})).await;
    let b = browser();
    let consent_url = location(&b.get(&url).send().await.unwrap());
    let page = b.get(&consent_url).send().await.unwrap().text().await.unwrap();
    let mut form = crate::connect::hidden_fields(&page);
    form.push(("user_id".into(), "3000000000000081".into()));
    form.push(("action".into(), "allow".into()));
    let callback = location(&b.post(&consent_url).form(&form).send().await.unwrap());
    let (r1, r2) = tokio::join!(b.get(&callback).send(), b.get(&callback).send());
    let mut ends = [location(&r1.unwrap()), location(&r2.unwrap())];
    ends.sort();
    assert_eq!(
        ends,
        [
            format!("{BACK}?status=connected&platform=threads&accountId=3000000000000081"),
            format!("{BACK}?status=error&error=invalid_state"),
        ]
    );
    let url = link(&app, &key, json!({"platform": "facebook", "redirectUrl": BACK})).await;
    let (_, r) = consent(&url, &[("pages", "2000000000000071:A,2000000000000072:B")], "allow").await;
    let action = location(&r);
    let one = [("account", "2000000000000071"), ("action", "connect")];
    let two = [("account", "2000000000000072"), ("action", "connect")];
    let (r1, r2) = tokio::join!(b.post(&action).form(&one).send(), b.post(&action).form(&two).send());
    let ends = [location(&r1.unwrap()), location(&r2.unwrap())];
    assert_eq!(
        ends.iter().filter(|e| e.contains("status=connected")).count(),
        1,
        "one choice is taken: {ends:?}"
    );
    assert_eq!(stored(&app, &key).await.len(), 2, "the Threads account and one Page");
    app.stop().await;
}
