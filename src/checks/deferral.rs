//! Deferrals: a check the platform asked to wait for keeps the account's assessment and
//! says why it waits and until when (issue 24 item 13).

use super::Checked;
use crate::domain::{self, Account, Platform, UnixTime};
use crate::platforms::{CheckOutcome, ThrottleScope, Transient, TransientKind};
use crate::store::HealthUpdate;

/// The deferral of an account whose platform asked to wait until `until`.
pub(crate) fn gate_deferral(account: Account, until: UnixTime, now: UnixTime) -> Checked {
    let detail = format!(
        "{} asked to wait until {}",
        account.platform.display_name(),
        domain::rfc3339(until)
    );
    deferred(account, until, detail, now)
}

/// Why an account waits, and until when: "X is rate-limiting this account until 04:47 UTC
/// (…); socialsyncer checks it then." (the account's `lastError` while it waits).
pub(super) fn deferral_reason(platform: Platform, t: &Transient, until: UnixTime, now: UnixTime) -> String {
    let whom = match t.scope {
        ThrottleScope::Account => "this account",
        ThrottleScope::App => "socialsyncer's app",
    };
    let at = |fmt: &[time::format_description::BorrowedFormatItem<'_>]| {
        time::OffsetDateTime::from_unix_timestamp(until)
            .ok()
            .and_then(|d| d.format(fmt).ok())
            .unwrap_or_else(|| domain::rfc3339(until))
    };
    let when = if until - now < 20 * 3_600 {
        at(time::macros::format_description!("[hour]:[minute] UTC"))
    } else {
        at(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute] UTC"
        ))
    };
    format!(
        "{} is rate-limiting {whom} until {when} ({}){}",
        platform.display_name(),
        t.detail,
        domain::DEFERRED_SUFFIX
    )
}

/// The result of not asking the platform at all (it told us to wait until `retry_at`):
/// the account keeps everything but its next check time.
pub fn deferred(account: Account, retry_at: UnixTime, detail: String, now: UnixTime) -> Checked {
    let t = Transient {
        kind: TransientKind::RateLimited,
        retry_at: Some(retry_at),
        detail,
        scope: ThrottleScope::App,
    };
    let why = deferral_reason(account.platform, &t, retry_at, now);
    let outcome = CheckOutcome::Transient(t);
    Checked {
        update: HealthUpdate::deferral(&account, now, retry_at, why),
        account,
        outcome,
        deferred: true,
    }
}
