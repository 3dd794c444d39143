//! Unit tests of `health`.

use super::*;
use crate::domain::Platform;

#[test]
fn reconnect_deadlines() {
    // Not renewed: the access token's expiry.
    assert_eq!(reconnect_deadline(false, Some(10), Some(20), None, false), Some(10));
    // Renewed: the refresh token's expiry; the access token's only while refreshes fail.
    assert_eq!(reconnect_deadline(true, Some(10), Some(20), None, false), Some(20));
    assert_eq!(reconnect_deadline(true, Some(10), None, None, false), None);
    assert_eq!(reconnect_deadline(true, Some(10), None, None, true), Some(10));
    // Data access counts either way.
    assert_eq!(reconnect_deadline(false, None, None, Some(5), false), Some(5));
    assert_eq!(reconnect_deadline(true, Some(10), Some(20), Some(15), false), Some(15));
}
use crate::platforms::TransientKind;

pub(crate) const NOW: i64 = 1_800_000_000;

pub(crate) fn account() -> Account {
    Account {
        id: crate::domain::AccountRef(1),
        workspace_id: crate::domain::WorkspaceId(1),
        platform: Platform::Instagram,
        account_id: "1".into(),
        username: "u".into(),
        connected_at: NOW - DAY,
        custody: crate::domain::Custody::Socialsyncer,
        instagram_login: None,
        scopes: vec![],
        token_expires_at: None,
        refresh_expires_at: None,
        token_issued_at: NOW - DAY,
        state: HealthState {
            health: Health::Unknown,
            token_valid: None,
            needs_reconnect: false,
            permissions: None,
            missing_permissions: vec![],
            recommendations: vec![],
            data_access_expires_at: None,
            platform_user_id: None,
            last_error: None,
        },
        last_checked_at: None,
        last_success_at: None,
        consecutive_failures: 0,
        next_check_at: NOW,
        refresh_failures: 0,
        last_refresh_error: None,
        open_alerts: vec![],
        alert_episode: 0,
    }
}

pub(crate) fn policy() -> Policy {
    Policy {
        warn_before: 7 * DAY,
        required_permissions: vec!["instagram_basic".into(), "instagram_content_publish".into()],
        auto_refresh: false,
        stale_after: DAY,
    }
}

pub(crate) fn valid(expires: Option<Expiry>, perms: &[&str]) -> CheckOutcome {
    CheckOutcome::Valid(ValidToken {
        expires,
        permissions: Some(perms.iter().map(|s| (*s).to_owned()).collect()),
        user_id: Some("99".into()),
        ..ValidToken::default()
    })
}

pub(crate) const ALL: &[&str] = &["instagram_basic", "instagram_content_publish"];

#[test]
fn healthy_when_valid_with_all_permissions() {
    let a = assess(&valid(Some(Expiry::Never), ALL), &account(), &policy(), NOW, None);
    assert_eq!(a.state.health, Health::Healthy);
    assert_eq!(a.state.token_valid, Some(true));
    assert!(a.state.recommendations.is_empty());
    assert_eq!(a.token_expires_at, None);
    assert_eq!(a.state.platform_user_id.as_deref(), Some("99"));
    assert!(a.answered);
}

#[test]
fn warning_window_boundaries() {
    let p = policy();
    let at = |left: i64| assess(&valid(Some(Expiry::At(NOW + left)), ALL), &account(), &p, NOW, None);
    assert_eq!(at(7 * DAY + 1).state.health, Health::Healthy);
    let edge = at(7 * DAY);
    assert_eq!(edge.state.health, Health::Warning);
    assert_eq!(
        edge.state.recommendations,
        vec![format!(
            "Token expires in 7 days, on {}. Consider reconnecting.",
            minute(NOW + 7 * DAY)
        )]
    );
    // Whole units, never "1 day" for 47 hours, and the absolute time beside them.
    for (left, words) in [
        (3 * DAY + 5, "in 3 days"),
        (2 * DAY, "in 2 days"),
        (47 * HOUR + 59 * 60, "in 47 hours"),
        (DAY, "in 24 hours"),
        (5 * HOUR, "in 5 hours"),
        (119 * 60, "in 119 minutes"),
        (60, "within a minute or two"),
    ] {
        assert_eq!(
            at(left).state.recommendations,
            vec![format!(
                "Token expires {words}, on {}. Consider reconnecting.",
                minute(NOW + left)
            )]
        );
    }
    assert_eq!(minute(NOW + 3 * DAY), "2027-01-18 08:00 UTC");
    let gone = at(0);
    assert_eq!(gone.state.health, Health::Unhealthy);
    assert_eq!(gone.state.token_valid, Some(false));
    assert!(gone.state.needs_reconnect);
    assert!(gone.state.recommendations[0].starts_with("Token expired on"));
}

#[test]
fn stored_expiry_counts_for_platforms_without_introspection() {
    let mut acc = account();
    acc.token_expires_at = Some(NOW + 3 * DAY);
    let o = CheckOutcome::Valid(ValidToken::default());
    let a = assess(&o, &acc, &policy(), NOW, None);
    assert_eq!(a.state.health, Health::Warning);
    // A live answer beats a stale stored expiry.
    acc.token_expires_at = Some(NOW - 10);
    assert_eq!(assess(&o, &acc, &policy(), NOW, None).state.health, Health::Healthy);
    // Auto-refreshed tokens do not warn about their own expiry.
    acc.token_expires_at = Some(NOW + HOUR);
    let p = Policy {
        auto_refresh: true,
        ..policy()
    };
    assert_eq!(assess(&o, &acc, &p, NOW, None).state.health, Health::Healthy);
}

#[test]
fn missing_permissions_are_unhealthy() {
    let a = assess(
        &valid(Some(Expiry::Never), &["instagram_basic"]),
        &account(),
        &policy(),
        NOW,
        None,
    );
    assert_eq!(a.state.health, Health::Unhealthy);
    assert_eq!(a.state.token_valid, Some(true));
    assert!(a.state.needs_reconnect);
    assert_eq!(a.state.missing_permissions, vec!["instagram_content_publish"]);
    assert_eq!(
        a.state.recommendations,
        vec!["Missing permission instagram_content_publish: reconnect and grant it."]
    );
    // Stored scopes count when the platform cannot introspect; none stored means unknown.
    let mut acc = account();
    let o = CheckOutcome::Valid(ValidToken::default());
    assert_eq!(assess(&o, &acc, &policy(), NOW, None).state.health, Health::Healthy);
    acc.scopes = vec!["instagram_basic".into()];
    assert_eq!(
        assess(&o, &acc, &policy(), NOW, None).state.missing_permissions,
        vec!["instagram_content_publish"]
    );
}

#[test]
fn data_access_and_refresh_expiry() {
    let o = CheckOutcome::Valid(ValidToken {
        expires: Some(Expiry::Never),
        data_access_expires_at: Some(NOW + 2 * DAY),
        permissions: Some(ALL.iter().map(|s| (*s).to_owned()).collect()),
        ..ValidToken::default()
    });
    let a = assess(&o, &account(), &policy(), NOW, None);
    assert_eq!(a.state.health, Health::Warning);
    assert!(a.state.recommendations[0].starts_with("Data access expires in 2 days"));
    let o2 = CheckOutcome::Valid(ValidToken {
        data_access_expires_at: Some(NOW - 1),
        ..match o {
            CheckOutcome::Valid(v) => v,
            _ => unreachable!(),
        }
    });
    // Past its data-access expiry a Page token is still checked as it is: nothing documents
    // that it stops publishing then (issue 24 item 10): a warning, no reconnect.
    let a2 = assess(&o2, &account(), &policy(), NOW, None);
    assert_eq!((a2.state.health, a2.state.needs_reconnect), (Health::Warning, false));
    assert!(
        a2.state.recommendations[0].starts_with("Data access has expired"),
        "{:?}",
        a2.state.recommendations
    );
    let mut acc = account();
    acc.refresh_expires_at = Some(NOW + 2 * DAY);
    let a = assess(&CheckOutcome::Valid(ValidToken::default()), &acc, &policy(), NOW, None);
    assert_eq!(a.state.health, Health::Warning);
    assert!(a.state.recommendations[0].starts_with("Refresh token expires in 2 days"));
    acc.refresh_expires_at = Some(NOW);
    assert_eq!(
        assess(&CheckOutcome::Valid(ValidToken::default()), &acc, &policy(), NOW, None)
            .state
            .health,
        Health::Unhealthy
    );
}

#[test]
fn invalid_reasons_have_their_own_advice() {
    let cases = [
        (
            InvalidReason::Revoked,
            "Token was revoked by the user: reconnect the account.",
            true,
        ),
        (
            InvalidReason::PasswordChanged,
            "changed their password, or Facebook changed the session for security reasons",
            true,
        ),
        (
            InvalidReason::AppRemoved,
            "revoked by the user, who removed the app",
            true,
        ),
        (InvalidReason::Checkpointed, "checkpoint", false),
        (InvalidReason::UnconfirmedUser, "confirm", false),
        (InvalidReason::LostPageRole, "role on the Page", true),
        (InvalidReason::Expired, "Token has expired", true),
        (InvalidReason::Invalid, "no longer valid", true),
    ];
    for (reason, text, reconnect) in cases {
        let o = CheckOutcome::Invalid {
            reason,
            detail: "d".into(),
        };
        let a = assess(&o, &account(), &policy(), NOW, None);
        assert_eq!(a.state.health, Health::Unhealthy);
        assert_eq!(a.state.token_valid, Some(false));
        assert_eq!(a.state.needs_reconnect, reconnect, "{reason:?}");
        assert!(
            a.state.recommendations[0].contains(text),
            "{reason:?}: {:?}",
            a.state.recommendations
        );
        assert_eq!(a.state.last_error.as_deref(), Some("d"));
        // The words and needsReconnect agree.
        assert_eq!(
            a.state.recommendations[0].contains("reconnect the account"),
            reconnect,
            "{reason:?}: {:?}",
            a.state.recommendations
        );
    }
    // An unexplained rejection after the stored expiry is an expiry.
    let mut acc = account();
    acc.token_expires_at = Some(NOW - DAY);
    let o = CheckOutcome::Invalid {
        reason: InvalidReason::Invalid,
        detail: "401".into(),
    };
    assert!(assess(&o, &acc, &policy(), NOW, None).state.recommendations[0].starts_with("Token expired on"));
}

#[test]
fn permission_denied_is_unhealthy_but_valid() {
    let o = CheckOutcome::PermissionDenied { detail: "403".into() };
    let a = assess(&o, &account(), &policy(), NOW, None);
    assert_eq!(
        (a.state.health, a.state.token_valid, a.state.needs_reconnect),
        (Health::Unhealthy, Some(true), true)
    );
}

fn transient() -> CheckOutcome {
    CheckOutcome::Transient(Transient {
        kind: TransientKind::Timeout,
        retry_at: None,
        detail: "Instagram did not answer in time".into(),
        scope: crate::platforms::ThrottleScope::App,
    })
}

#[test]
fn transient_failures_keep_the_last_known_state() {
    let mut acc = account();
    acc.state.health = Health::Healthy;
    acc.state.token_valid = Some(true);
    acc.state.permissions = Some(ALL.iter().map(|s| (*s).to_owned()).collect());
    acc.last_success_at = Some(NOW - HOUR);
    let a = assess(&transient(), &acc, &policy(), NOW, None);
    assert_eq!(a.state.health, Health::Healthy);
    assert_eq!(a.state.token_valid, Some(true));
    assert!(!a.answered);
    assert_eq!(a.state.last_error.as_deref(), Some("Instagram did not answer in time"));
    // An unhealthy account stays unhealthy.
    acc.state.health = Health::Unhealthy;
    acc.state.token_valid = Some(false);
    acc.state.recommendations = vec!["Token was revoked by the user: reconnect the account.".into()];
    let a = assess(&transient(), &acc, &policy(), NOW, None);
    assert_eq!(a.state.health, Health::Unhealthy);
    assert_eq!(a.state.recommendations, acc.state.recommendations);
    // The countdown moves on even while the platform is silent.
    let mut acc = account();
    acc.state.token_valid = Some(true);
    acc.state.health = Health::Healthy;
    acc.last_success_at = Some(NOW - HOUR);
    acc.token_expires_at = Some(NOW + 2 * DAY);
    assert_eq!(
        assess(&transient(), &acc, &policy(), NOW, None).state.health,
        Health::Warning
    );
}

#[test]
fn staleness_turns_into_unknown() {
    let mut acc = account();
    acc.state.health = Health::Healthy;
    acc.state.token_valid = Some(true);
    acc.last_success_at = Some(NOW - 2 * DAY);
    let a = assess(&transient(), &acc, &policy(), NOW, None);
    assert_eq!(a.state.health, Health::Unknown);
    assert!(
        a.state.recommendations[0].starts_with("Instagram has not answered since"),
        "{:?}",
        a.state.recommendations
    );
    // Never answered at all.
    let a = assess(&transient(), &account(), &policy(), NOW, None);
    assert_eq!(a.state.health, Health::Unknown);
    assert_eq!(a.state.token_valid, None);
    let a = assess(
        &CheckOutcome::Misconfigured("bad app secret".into()),
        &account(),
        &policy(),
        NOW,
        None,
    );
    assert_eq!(a.state.health, Health::Unknown);
    assert!(a.state.recommendations[0].contains("configuration"));
}

fn timing(failures: i64) -> Timing {
    Timing {
        check_interval: 6 * HOUR,
        failures,
        refresh_failures: 0,
        refresh_at: None,
    }
}

#[test]
fn next_check_adapts() {
    let ok = assess(&valid(Some(Expiry::Never), ALL), &account(), &policy(), NOW, None);
    let interval = 6 * HOUR;
    let v = valid(None, ALL);
    assert_eq!(next_check_at(&v, &ok, timing(0), NOW, 0.5), NOW + interval);
    let lo = next_check_at(&v, &ok, timing(0), NOW, 0.0);
    let hi = next_check_at(&v, &ok, timing(0), NOW, 0.999);
    assert!(lo >= NOW + interval * 9 / 10 && hi <= NOW + interval * 11 / 10 && lo < hi);
    let mut soon = ok.clone();
    soon.token_expires_at = Some(NOW + 3 * HOUR);
    assert_eq!(next_check_at(&v, &soon, timing(0), NOW, 0.5), NOW + HOUR);
    soon.token_expires_at = Some(NOW + 3 * DAY);
    let t = Timing {
        check_interval: 2 * DAY,
        ..timing(0)
    };
    assert_eq!(next_check_at(&v, &soon, t, NOW, 0.5), NOW + DAY);
    // Backoff doubles and is capped by the interval; a retry time is honoured.
    let b = |n| next_check_at(&transient(), &ok, timing(n), NOW, 0.5) - NOW;
    assert_eq!((b(0), b(1), b(2)), (60, 120, 240));
    assert_eq!(b(30), interval);
    let limited = CheckOutcome::Transient(Transient {
        kind: TransientKind::RateLimited,
        retry_at: Some(NOW + 900),
        detail: String::new(),
        scope: crate::platforms::ThrottleScope::App,
    });
    assert_eq!(next_check_at(&limited, &ok, timing(0), NOW, 0.5), NOW + 900);
    // The refresh window pulls the next check in; failed refreshes back off.
    let t = Timing {
        refresh_at: Some(NOW + 600),
        ..timing(0)
    };
    assert_eq!(next_check_at(&v, &ok, t, NOW, 0.5), NOW + 600);
    let t = Timing {
        refresh_at: Some(NOW - 600),
        ..timing(0)
    };
    assert_eq!(next_check_at(&v, &ok, t, NOW, 0.5), NOW + 60);
    let t = Timing {
        refresh_failures: 3,
        ..timing(0)
    };
    assert_eq!(next_check_at(&v, &ok, t, NOW, 0.5), NOW + 240);
}

#[test]
fn failed_refreshes_warn_until_the_token_is_rejected() {
    let o = valid(Some(Expiry::Never), ALL);
    let a = assess(&o, &account(), &policy(), NOW, Some("X answered HTTP 503"));
    assert_eq!((a.state.health, a.state.needs_reconnect), (Health::Warning, false));
    assert!(a.state.recommendations[0].starts_with("Automatic token refresh failed (X answered HTTP 503)"));
    // A 401 from the identity endpoint after a failed refresh: reconnect.
    let rejected = CheckOutcome::Invalid {
        reason: InvalidReason::Invalid,
        detail: "401".into(),
    };
    let a = assess(&rejected, &account(), &policy(), NOW, Some("timeout"));
    assert_eq!(
        (a.state.health, a.state.needs_reconnect, a.state.token_valid),
        (Health::Unhealthy, true, Some(false))
    );
    assert!(a.state.recommendations[1].contains("will retry"));
}
