//! Unit tests of `graph`.

use super::*;
use crate::platforms::Expiry;
use serde_json::json;

#[test]
fn debug_token_valid_page_token() {
    let v = json!({"data":{"app_id":"1","type":"PAGE","application":"x","is_valid":true,"issued_at":1,
        "expires_at":0,"data_access_expires_at":1900000000,"scopes":["pages_manage_posts"],"user_id":"55"}});
    match parse_debug_token(Platform::Facebook, &v, 1_800_000_000, None) {
        CheckOutcome::Valid(t) => {
            assert_eq!(t.expires, Some(Expiry::Never));
            assert_eq!(t.data_access_expires_at, Some(1_900_000_000));
            assert_eq!(t.user_id.as_deref(), Some("55"));
            assert_eq!(t.permissions.unwrap(), vec!["pages_manage_posts"]);
        }
        o => panic!("{o:?}"),
    }
}

#[test]
fn debug_token_identity_follows_the_token_type() {
    let page = json!({"data":{"app_id":"1","type":"PAGE","is_valid":true,"expires_at":0,
        "scopes":[],"user_id":"55","profile_id":"777"}});
    match parse_debug_token(Platform::Facebook, &page, 0, Some("1")) {
        CheckOutcome::Valid(t) => {
            assert_eq!((t.user_id.as_deref(), t.owner_id.as_deref()), (Some("55"), Some("777")));
        }
        o => panic!("{o:?}"),
    }
    let user = json!({"data":{"app_id":"1","type":"USER","is_valid":true,"expires_at":0,"scopes":[],"user_id":"55"}});
    match parse_debug_token(Platform::Facebook, &user, 0, Some("1")) {
        CheckOutcome::Valid(t) => assert_eq!(t.owner_id.as_deref(), Some("55")),
        o => panic!("{o:?}"),
    }
    assert!(matches!(
        parse_debug_token(Platform::Facebook, &user, 0, Some("2")),
        CheckOutcome::OtherApp(_)
    ));
}

#[test]
fn debug_token_invalid_subcodes() {
    for (sub, reason) in [
        (460, InvalidReason::PasswordChanged),
        (458, InvalidReason::AppRemoved),
        (463, InvalidReason::Expired),
        (492, InvalidReason::LostPageRole),
        (459, InvalidReason::Checkpointed),
    ] {
        let v = json!({"data":{"is_valid":false,"error":{"code":190,"subcode":sub,"message":"m"}}});
        match parse_debug_token(Platform::Facebook, &v, 0, None) {
            CheckOutcome::Invalid { reason: r, .. } => assert_eq!(r, reason),
            o => panic!("{o:?}"),
        }
    }
    let v = json!({"data":{"is_valid":false,"expires_at":10}});
    assert!(matches!(
        parse_debug_token(Platform::Facebook, &v, 20, None),
        CheckOutcome::Invalid {
            reason: InvalidReason::Expired,
            ..
        }
    ));
    assert!(matches!(
        parse_debug_token(Platform::Facebook, &json!({"data":{}}), 0, None),
        CheckOutcome::Transient(_)
    ));
    assert!(matches!(
        parse_debug_token(Platform::Facebook, &json!([1]), 0, None),
        CheckOutcome::Transient(_)
    ));
}

fn reply(headers: &[(&str, &str)]) -> Reply {
    let mut h = reqwest::header::HeaderMap::new();
    for (k, v) in headers {
        h.insert(
            reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    Reply {
        status: 400,
        headers: h,
        body: vec![],
    }
}

#[test]
fn error_codes() {
    let e = |code, subcode| GraphError {
        code,
        subcode,
        message: String::new(),
    };
    let r = reply(&[]);
    assert!(matches!(
        classify(Platform::Facebook, &e(190, None), &r, 0, true),
        CheckOutcome::Misconfigured(_)
    ));
    assert!(matches!(
        classify(Platform::Threads, &e(190, Some(460)), &r, 0, false),
        CheckOutcome::Invalid {
            reason: InvalidReason::PasswordChanged,
            ..
        }
    ));
    assert!(matches!(
        classify(Platform::Threads, &e(200, None), &r, 0, false),
        CheckOutcome::PermissionDenied { .. }
    ));
    // Plain 100 (no subcode) says nothing about the token; 100/33 is a dead one on /me.
    assert!(matches!(
        classify(Platform::Threads, &e(100, Some(33)), &r, 0, false),
        CheckOutcome::Invalid {
            reason: InvalidReason::Invalid,
            ..
        }
    ));
    for code in [1, 2, 100, 368, 999] {
        assert!(matches!(
            classify(Platform::Threads, &e(code, None), &r, 0, false),
            CheckOutcome::Transient(Transient {
                kind: TransientKind::ServerError,
                ..
            })
        ));
    }
    let r = reply(&[(
        "x-business-use-case-usage",
        r#"{"123":[{"type":"pages","call_count":100,"estimated_time_to_regain_access":5}]}"#,
    )]);
    match classify(Platform::Facebook, &e(80001, None), &r, 1000, false) {
        CheckOutcome::Transient(t) => {
            assert_eq!(t.kind, TransientKind::RateLimited);
            assert_eq!(t.retry_at, Some(1300));
        }
        o => panic!("{o:?}"),
    }
    for (code, scope) in [
        (4, ThrottleScope::App),
        (17, ThrottleScope::Account),
        (32, ThrottleScope::Account),
        (613, ThrottleScope::App),
        (80_002, ThrottleScope::Account),
    ] {
        match classify(Platform::Instagram, &e(code, None), &reply(&[]), 0, false) {
            CheckOutcome::Transient(t) => {
                assert_eq!((t.kind, t.scope), (TransientKind::RateLimited, scope), "{code}");
            }
            o => panic!("{code}: {o:?}"),
        }
    }
    // An absurd estimated_time_to_regain_access waits a day at most.
    let r = reply(&[(
        "x-business-use-case-usage",
        r#"{"1":[{"type":"pages","estimated_time_to_regain_access":9223372036854775807}]}"#,
    )]);
    match classify(Platform::Facebook, &e(80001, None), &r, 1000, false) {
        CheckOutcome::Transient(t) => assert_eq!(t.retry_at, Some(1000 + super::super::MAX_WAIT)),
        o => panic!("{o:?}"),
    }
    // A debug_token error naming another app is that account's configuration.
    let other = GraphError {
        code: 100,
        subcode: None,
        message: "(#100) The App_id in the input_token did not match the Viewing App".into(),
    };
    assert!(matches!(
        classify(Platform::Facebook, &other, &reply(&[]), 0, true),
        CheckOutcome::OtherApp(_)
    ));
}
