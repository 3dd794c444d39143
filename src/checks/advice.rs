//! Advice a check adds to what the platform said: why a token cannot be renewed, and what is
//! not known about it (issue 24).

use super::{Checker, auto_refresh};
use crate::domain::{Account, Custody, Health, Platform};
use crate::health::Assessment;
use crate::platforms::CheckOutcome;

/// Adds to `a` what the assessment alone does not say: a 60-day token whose expiry nobody
/// knows in the product's custody, and an X token that cannot be renewed because X issued
/// no refresh token. `refreshable`: someone renews the account's token.
pub(super) fn explain(
    state: &Checker,
    current: &Account,
    outcome: &CheckOutcome,
    refreshable: bool,
    a: &mut Assessment,
) {
    // In the product's custody a 60-day token with no known expiry may die unnoticed:
    // socialsyncer does not refresh it, so it says so.
    if matches!(current.platform, Platform::Instagram | Platform::Threads)
        && current.custody == Custody::Product
        && a.token_expires_at.is_none()
        && state.platforms.can_refresh(current.platform, current.instagram_login)
        && matches!(outcome, CheckOutcome::Valid(_))
    {
        a.state.recommendations.push(format!(
            "The token's expiry is unknown (it was registered without expiresAt). {} long-lived tokens expire \
             60 days after they were issued or last refreshed, and the product refreshes this one: push its \
             expiry with the tokens (PUT .../credentials), or give socialsyncer custody to refresh it.",
            current.platform.display_name()
        ));
        if a.state.health == Health::Healthy {
            a.state.health = Health::Warning;
        }
    }
    // An X token that socialsyncer would renew but cannot: X issued no refresh token, which
    // it does only when offline.access is granted. Say why.
    if current.platform == Platform::Twitter
        && !refreshable
        && current.custody == Custody::Socialsyncer
        && auto_refresh(state, Platform::Twitter, None)
    {
        for r in a
            .state
            .recommendations
            .iter_mut()
            .filter(|r| r.contains("Consider reconnecting"))
        {
            r.push_str(
                " X issued no refresh token for it (the offline.access scope was not granted), so socialsyncer \
                 cannot renew it: reconnect with offline.access.",
            );
        }
    }
}
