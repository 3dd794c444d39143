//! How often a check reads the identity endpoint (issue 24 item 6): a successful refresh
//! already proves the grant, and identity reads cost the product's quota (X bills each
//! `GET /2/users/me` as a user read).

use super::Checker;
use crate::domain::{Account, Platform, UnixTime};
use crate::platforms::CheckOutcome;

/// Whether a check after a successful refresh must still read the identity: an account not
/// healthy, never checked, or whose last check lies in an earlier identity period (periods of
/// `health.check_interval`, for X `platforms.twitter.identity_check`, offset per account so
/// that a fleet's reads spread out).
pub(super) fn identity_due(state: &Checker, a: &Account, now: UnixTime) -> bool {
    let config = state.config();
    let period = match (a.platform, config.platforms.twitter.identity_check.unwrap_or_default()) {
        (Platform::Twitter, crate::config::IdentityCheck::Daily) => 86_400,
        (Platform::Twitter, crate::config::IdentityCheck::Weekly) => 7 * 86_400,
        (Platform::Twitter, crate::config::IdentityCheck::Never) => {
            return a.state.health != crate::domain::Health::Healthy;
        }
        _ => config.health.check_interval.secs(),
    }
    .max(1);
    let Some(last) = a.last_checked_at else {
        return true;
    };
    let offset = a.id.0.rem_euclid(period);
    a.state.health != crate::domain::Health::Healthy || (now + offset) / period != (last + offset) / period
}

/// The outcome of a check whose refresh just succeeded and whose identity was read this
/// period: the token works; its expiry and scopes are the refresh's (stored by now).
pub(super) fn proven_by_refresh(a: &Account) -> CheckOutcome {
    CheckOutcome::Valid(crate::platforms::ValidToken {
        user_id: a.state.platform_user_id.clone(),
        ..Default::default()
    })
}
