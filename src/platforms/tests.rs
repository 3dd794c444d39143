//! Unit tests of `platforms`.

use super::*;

#[test]
fn retry_after_forms() {
    let mut headers = HeaderMap::new();
    headers.insert("retry-after", "120".parse().unwrap());
    let r = Reply {
        status: 429,
        headers,
        body: vec![],
    };
    assert_eq!(r.retry_at(1000), Some(1120));
    let mut headers = HeaderMap::new();
    headers.insert("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
    let r = Reply {
        status: 503,
        headers,
        body: vec![],
    };
    assert_eq!(r.retry_at(1_445_412_000), Some(1_445_412_480));
    let mut headers = HeaderMap::new();
    headers.insert("x-rate-limit-reset", "1700000000".parse().unwrap());
    let r = Reply {
        status: 429,
        headers,
        body: vec![],
    };
    assert_eq!(r.retry_at(1_699_999_000), Some(1_700_000_000));
}

#[test]
fn absurd_waits_and_lifetimes_are_clamped() {
    let now = 1_800_000_000;
    let reply = |name: &str, value: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
        Reply {
            status: 429,
            headers,
            body: vec![],
        }
    };
    assert_eq!(reply("retry-after", "99999999999").retry_at(now), Some(now + MAX_WAIT));
    assert_eq!(
        reply("retry-after", "9223372036854775807").retry_at(now),
        Some(now + MAX_WAIT)
    );
    assert_eq!(reply("retry-after", "-5").retry_at(now), Some(now));
    assert_eq!(
        reply("x-rate-limit-reset", "99999999999999").retry_at(now),
        Some(now + MAX_WAIT)
    );
    assert_eq!(reply("x-rate-limit-reset", "-99999999999999").retry_at(now), Some(now));
    assert_eq!(
        reply("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT").retry_at(now),
        Some(now + MAX_WAIT)
    );
    assert_eq!(expiry_in(now, i64::MAX, 7_200), now + 7_200);
    assert_eq!(expiry_in(now, -100, 7_200), now);
    assert_eq!(expiry_in(i64::MAX - 1, 100, 7_200), i64::MAX);
    assert_eq!(wait_until(now, i64::MIN), now);
    assert_eq!(clamp_timestamp(i64::MAX), MAX_TIMESTAMP);
    assert_eq!(clamp_timestamp(-1), 0);
}

#[test]
fn scopes_from_arrays_and_strings() {
    assert_eq!(
        scope_list(&serde_json::json!("user.info.basic,video.publish")).unwrap(),
        vec!["user.info.basic", "video.publish"]
    );
    assert_eq!(
        scope_list(&serde_json::json!("tweet.read users.read")).unwrap().len(),
        2
    );
    assert_eq!(scope_list(&serde_json::json!(["a"])).unwrap(), vec!["a"]);
}
