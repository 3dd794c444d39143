//! Unit tests of `alerts::derive`: which events a check raises, and that each fires once.

use super::*;
use crate::health::tests::{ALL, NOW, account, policy, valid};
use crate::health::{self, Policy};
use crate::platforms::{Expiry, InvalidReason};

const DAY: i64 = 86_400;

fn alert_policy(auto_refresh: bool) -> AlertPolicy {
    AlertPolicy {
        thresholds: std::sync::Arc::new(vec![
            (7 * DAY, "7days".into()),
            (3 * DAY, "3days".into()),
            (DAY, "1day".into()),
        ]),
        unreachable_after: 3,
        auto_refresh,
    }
}

/// Checks `account` with `outcome` at `now` as a check does: assess, then derive; returns
/// the kinds raised and the account as stored afterwards.
fn check(account: &Account, outcome: &CheckOutcome, refresh_error: Option<&str>, now: i64) -> (Vec<String>, Account) {
    let p: Policy = policy();
    let a = health::assess(outcome, account, &p, now, refresh_error);
    let d = derive(account, outcome, &a, refresh_error, &alert_policy(false), now);
    let mut after = account.clone();
    after.state = a.state;
    after.token_expires_at = a.token_expires_at;
    after.open_alerts = d.open;
    after.alert_episode = d.episode;
    (d.alerts.into_iter().map(|e| e.kind.to_string()).collect(), after)
}

#[test]
fn each_expiry_threshold_fires_once_as_it_is_crossed() {
    let expiry = NOW + 10 * DAY;
    let outcome = valid(Some(Expiry::At(expiry)), ALL);
    let mut acc = account();
    let mut seen = Vec::new();
    // Checked every 12 hours from 10 days before the expiry to the day of it.
    for step in 0..20 {
        let (kinds, after) = check(&acc, &outcome, None, NOW + step * DAY / 2);
        seen.extend(kinds);
        acc = after;
    }
    assert_eq!(seen, ["expiring_7days", "expiring_3days", "expiring_1day"]);
}

#[test]
fn a_token_first_seen_a_day_before_expiry_raises_one_alert_not_three() {
    let outcome = valid(Some(Expiry::At(NOW + DAY / 2)), ALL);
    let (kinds, after) = check(&account(), &outcome, None, NOW);
    assert_eq!(kinds, ["expiring_1day"]);
    assert!(after.open_alerts.contains(&AlertKind::Expiring("7days".into())));
    assert!(after.open_alerts.contains(&AlertKind::Expiring("3days".into())));
}

#[test]
fn an_expired_token_a_missing_permission_and_a_failed_refresh_each_have_their_kind() {
    let expired = CheckOutcome::Invalid {
        reason: InvalidReason::Expired,
        detail: "Error validating access token: Session has expired".into(),
    };
    assert_eq!(check(&account(), &expired, None, NOW).0, ["token_expired"]);

    let revoked = CheckOutcome::Invalid {
        reason: InvalidReason::Revoked,
        detail: "The user has not authorized application".into(),
    };
    assert_eq!(check(&account(), &revoked, None, NOW).0, ["token_invalid"]);

    let lacking = valid(Some(Expiry::Never), &["instagram_basic"]);
    assert_eq!(check(&account(), &lacking, None, NOW).0, ["permissions_missing"]);

    let fine = valid(Some(Expiry::Never), ALL);
    assert_eq!(
        check(&account(), &fine, Some("invalid_grant"), NOW).0,
        ["refresh_failed"]
    );
}

#[test]
fn a_problem_fires_once_per_episode_and_recovery_closes_it() {
    let revoked = CheckOutcome::Invalid {
        reason: InvalidReason::Revoked,
        detail: "revoked".into(),
    };
    let (first, acc) = check(&account(), &revoked, None, NOW);
    assert_eq!(first, ["token_invalid"]);
    let (again, acc) = check(&acc, &revoked, None, NOW + 60);
    assert!(again.is_empty(), "the same problem again: {again:?}");
    let (recovered, acc) = check(&acc, &valid(Some(Expiry::Never), ALL), None, NOW + 120);
    assert_eq!(recovered, ["recovered"]);
    let (next, _) = check(&acc, &revoked, None, NOW + 180);
    assert_eq!(next, ["token_invalid"], "a new episode alerts again");
}
