//! Pure health assessment: from a check outcome, the account's last known state and the
//! policy, decide the health, recommendations and the next check time. No I/O.

use crate::domain::{Account, Health, HealthState, UnixTime, rfc3339};

pub mod timeline;
use crate::platforms::{CheckOutcome, Expiry, InvalidReason, Transient, ValidToken};

const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

/// What the assessment depends on besides the outcome.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Warn when a token expires within this many seconds.
    pub warn_before: i64,
    /// Permissions needed for publishing.
    pub required_permissions: Vec<String>,
    /// The access token is renewed automatically before it expires, so its own expiry is
    /// no reason to warn (the refresh token's is).
    pub auto_refresh: bool,
    /// After this many seconds without an answer from the platform, the health is `unknown`.
    pub stale_after: i64,
}

/// The new state of an account after a check.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// The state to store.
    pub state: HealthState,
    /// Access token expiry to store.
    pub token_expires_at: Option<UnixTime>,
    /// Whether the platform gave a usable answer.
    pub answered: bool,
}

/// "in 3 days", "in 47 hours", "in 90 minutes": whole units, never "1 day" for 47 hours
/// (below two of a unit the next smaller one is used). Always shown next to the date.
pub fn time_left(secs: i64) -> String {
    if secs >= 2 * DAY {
        format!("in {} days", secs / DAY)
    } else if secs >= 2 * HOUR {
        format!("in {} hours", secs / HOUR)
    } else if secs >= 120 {
        format!("in {} minutes", secs / 60)
    } else {
        "within a minute or two".to_owned()
    }
}

/// "in 2 days, on 2026-12-01 14:00 UTC": the relative time and the absolute one.
pub fn time_left_at(at: UnixTime, now: UnixTime) -> String {
    format!("{}, on {}", time_left(at - now), minute(at))
}

/// `2026-12-01 14:00 UTC`.
pub fn minute(t: UnixTime) -> String {
    let d = date(t);
    // `YYYY-MM-DD HH:MM:SS UTC` -> without the seconds.
    match (d.get(..16), d.get(19..)) {
        (Some(head), Some(tail)) => format!("{head}{tail}"),
        _ => d,
    }
}

fn date(t: UnixTime) -> String {
    rfc3339(t).replace('T', " ").replace('Z', " UTC")
}

/// Assesses `outcome` for `account` at `now`. `refresh_error` says why an automatic refresh
/// just failed (without the platform calling it final), if it did.
pub fn assess(
    outcome: &CheckOutcome,
    account: &Account,
    policy: &Policy,
    now: UnixTime,
    refresh_error: Option<&str>,
) -> Assessment {
    let mut a = assess_outcome(outcome, account, policy, now);
    if let Some(e) = refresh_error {
        let rec = format!("Automatic token refresh failed ({e}); socialsyncer will retry.");
        match outcome {
            // The token was rejected and could not be refreshed: the account needs a
            // reconnect, though the refresh keeps being retried in case it recovers.
            CheckOutcome::Invalid { .. } => a.state.recommendations.push(rec),
            _ if a.answered => {
                if a.state.health < Health::Warning {
                    a.state.health = Health::Warning;
                }
                a.state.recommendations.insert(0, rec);
            }
            _ => {}
        }
    }
    a
}

fn assess_outcome(outcome: &CheckOutcome, account: &Account, policy: &Policy, now: UnixTime) -> Assessment {
    match outcome {
        CheckOutcome::Valid(v) => assess_valid(v, account, policy, now),
        CheckOutcome::Invalid { reason, detail } => assess_invalid(*reason, detail, account, now),
        CheckOutcome::PermissionDenied { detail } => {
            let permissions = account
                .state
                .permissions
                .clone()
                .unwrap_or_else(|| account.scopes.clone());
            let missing = missing(&policy.required_permissions, &permissions);
            Assessment {
                state: HealthState {
                    health: Health::Unhealthy,
                    token_valid: Some(true),
                    needs_reconnect: true,
                    missing_permissions: missing,
                    permissions: Some(permissions),
                    recommendations: vec![format!(
                        "{} refused access for lack of permission: reconnect the account and grant the required permissions.",
                        account.platform.display_name()
                    )],
                    data_access_expires_at: account.state.data_access_expires_at,
                    platform_user_id: account.state.platform_user_id.clone(),
                    last_error: Some(detail.clone()),
                },
                token_expires_at: account.token_expires_at,
                answered: true,
            }
        }
        CheckOutcome::Transient(t) => assess_unanswered(&t.detail, Some(t), account, policy, now),
        CheckOutcome::Misconfigured(m) => assess_unanswered(m, None, account, policy, now),
        CheckOutcome::OtherApp(detail) => Assessment {
            state: HealthState {
                health: Health::Unknown,
                token_valid: None,
                needs_reconnect: false,
                permissions: account.state.permissions.clone(),
                missing_permissions: Vec::new(),
                recommendations: vec![format!(
                    "This account was connected through another Meta app than the one socialsyncer checks with \
                 (platforms.{}.app_id): reconnect it through the configured app, or configure socialsyncer with \
                 the app it was connected through.",
                    if account.platform == crate::domain::Platform::Instagram {
                        "instagram"
                    } else {
                        "facebook"
                    }
                )],
                data_access_expires_at: account.state.data_access_expires_at,
                platform_user_id: account.state.platform_user_id.clone(),
                last_error: Some(detail.clone()),
            },
            token_expires_at: account.token_expires_at,
            answered: true,
        },
    }
}

/// A permission name as one spelling: Instagram Login renamed its scopes in January 2025
/// (`business_basic` became `instagram_business_basic`, and so on); both are the same. And
/// the two logins name the same capabilities differently (`instagram_basic` and
/// `instagram_content_publish` through Facebook Login): a token of the other login than the
/// configured one (checked on its own host) is judged by what it can do.
fn canonical_permission(p: &str) -> std::borrow::Cow<'_, str> {
    match p {
        "instagram_basic" => return std::borrow::Cow::Borrowed("instagram_business_basic"),
        "instagram_content_publish" => return std::borrow::Cow::Borrowed("instagram_business_content_publish"),
        _ => {}
    }
    match p.strip_prefix("business_") {
        Some(rest) => std::borrow::Cow::Owned(format!("instagram_business_{rest}")),
        None => std::borrow::Cow::Borrowed(p),
    }
}

fn missing(required: &[String], granted: &[String]) -> Vec<String> {
    required
        .iter()
        .filter(|r| {
            let r = canonical_permission(r);
            !granted.iter().any(|g| canonical_permission(g) == r)
        })
        .cloned()
        .collect()
}

fn assess_valid(v: &ValidToken, account: &Account, policy: &Policy, now: UnixTime) -> Assessment {
    let introspected_expiry = v.expires.is_some();
    let token_expires_at = match v.expires {
        Some(Expiry::Never) => None,
        Some(Expiry::At(t)) => Some(t),
        None => account.token_expires_at,
    };
    let data_access_expires_at = v.data_access_expires_at.or(account.state.data_access_expires_at);
    let permissions = v.permissions.clone().unwrap_or_else(|| account.scopes.clone());
    // Without introspection and without stored scopes nothing can be said about permissions.
    let missing_permissions = if v.permissions.is_some() || !account.scopes.is_empty() {
        missing(&policy.required_permissions, &permissions)
    } else {
        Vec::new()
    };

    let mut health = Health::Healthy;
    let mut needs_reconnect = false;
    let mut token_valid = true;
    let mut recs = Vec::new();
    let worsen = |h: Health, health: &mut Health| {
        if h > *health {
            *health = h;
        }
    };

    for p in &missing_permissions {
        recs.push(format!("Missing permission {p}: reconnect and grant it."));
        worsen(Health::Unhealthy, &mut health);
        needs_reconnect = true;
    }

    if let Some(exp) = token_expires_at {
        let left = exp - now;
        if left <= 0 && introspected_expiry {
            // The platform itself reports the expiry: the token is dead.
            recs.push(format!("Token expired on {}: reconnect the account.", date(exp)));
            worsen(Health::Unhealthy, &mut health);
            needs_reconnect = true;
            token_valid = false;
        } else if left > 0 && left <= policy.warn_before && !policy.auto_refresh {
            recs.push(format!(
                "Token expires {}. Consider reconnecting.",
                time_left_at(exp, now)
            ));
            worsen(Health::Warning, &mut health);
        }
    }
    if let Some(exp) = account.refresh_expires_at {
        let left = exp - now;
        if left <= 0 {
            recs.push(format!(
                "Refresh token expired on {}: reconnect the account.",
                date(exp)
            ));
            worsen(Health::Unhealthy, &mut health);
            needs_reconnect = true;
        } else if left <= policy.warn_before {
            recs.push(format!(
                "Refresh token expires {}: reconnect the account before then.",
                time_left_at(exp, now)
            ));
            worsen(Health::Warning, &mut health);
        }
    }
    if let Some(exp) = data_access_expires_at {
        let left = exp - now;
        if left <= 0 {
            // Nothing documents that a Page token stops publishing when data access expires:
            // a warning until a call with the token fails.
            recs.push(
                "Data access has expired; Facebook does not document that the token stops publishing then, \
                 so it is checked as usual: have the account owner log in to the app again to renew it."
                    .into(),
            );
            worsen(Health::Warning, &mut health);
        } else if left <= policy.warn_before {
            recs.push(format!(
                "Data access expires {}: the account owner must log in to the app again before then.",
                time_left_at(exp, now)
            ));
            worsen(Health::Warning, &mut health);
        }
    }

    Assessment {
        state: HealthState {
            health,
            token_valid: Some(token_valid),
            needs_reconnect,
            permissions: Some(permissions),
            missing_permissions,
            recommendations: recs,
            data_access_expires_at,
            platform_user_id: v.user_id.clone().or_else(|| account.state.platform_user_id.clone()),
            last_error: None,
        },
        token_expires_at,
        answered: true,
    }
}

fn assess_invalid(reason: InvalidReason, detail: &str, account: &Account, now: UnixTime) -> Assessment {
    let reason = match reason {
        InvalidReason::Invalid if account.token_expires_at.is_some_and(|t| t <= now) => InvalidReason::Expired,
        r => r,
    };
    let (rec, needs_reconnect) = match reason {
        InvalidReason::Expired => (
            match account.token_expires_at.filter(|t| *t <= now) {
                Some(t) => format!("Token expired on {}: reconnect the account.", date(t)),
                None => "Token has expired: reconnect the account.".to_owned(),
            },
            true,
        ),
        InvalidReason::Revoked => ("Token was revoked by the user: reconnect the account.".to_owned(), true),
        InvalidReason::RefreshRejected => (
            "The platform rejected the refresh token, so the token cannot be renewed: reconnect the account."
                .to_owned(),
            true,
        ),
        InvalidReason::WrongAccount => (format!("{detail}: reconnect the right account."), true),
        InvalidReason::AppRemoved => (
            "Token was revoked by the user, who removed the app: reconnect the account.".to_owned(),
            true,
        ),
        InvalidReason::PasswordChanged => (
            "The user changed their password, or Facebook changed the session for security reasons, which \
             invalidated the token: reconnect the account."
                .to_owned(),
            true,
        ),
        // Graph 459 and 464 ask the person to act at facebook.com; the token works again
        // afterwards, so no reconnect is asked for.
        InvalidReason::Checkpointed => (
            "The user must log in at facebook.com and clear a security checkpoint; the token works again \
             afterwards (no reconnect needed)."
                .to_owned(),
            false,
        ),
        InvalidReason::UnconfirmedUser => (
            "The user must log in at facebook.com and confirm their account; the token works again afterwards \
             (no reconnect needed)."
                .to_owned(),
            false,
        ),
        InvalidReason::LostPageRole => (
            "The user lost their role on the Page: restore the role, then reconnect the account.".to_owned(),
            true,
        ),
        InvalidReason::Invalid => (
            "Token is no longer valid (expired or revoked): reconnect the account.".to_owned(),
            true,
        ),
    };
    Assessment {
        state: HealthState {
            health: Health::Unhealthy,
            token_valid: Some(false),
            needs_reconnect,
            permissions: account.state.permissions.clone(),
            missing_permissions: Vec::new(),
            recommendations: vec![rec],
            data_access_expires_at: account.state.data_access_expires_at,
            platform_user_id: account.state.platform_user_id.clone(),
            last_error: Some(detail.to_owned()),
        },
        token_expires_at: account.token_expires_at,
        answered: true,
    }
}

/// No usable answer: keep what is known (recomputing countdowns from stored expiries), or
/// fall back to `unknown` once the last answer is older than the staleness limit.
fn assess_unanswered(
    detail: &str,
    t: Option<&Transient>,
    account: &Account,
    policy: &Policy,
    now: UnixTime,
) -> Assessment {
    let name = account.platform.display_name();
    let mut a = if account.state.token_valid == Some(true) {
        assess_valid(&ValidToken::default(), account, policy, now)
    } else {
        Assessment {
            state: HealthState {
                health: account.state.health,
                token_valid: account.state.token_valid,
                needs_reconnect: account.state.needs_reconnect,
                permissions: account.state.permissions.clone(),
                missing_permissions: account.state.missing_permissions.clone(),
                recommendations: account.state.recommendations.clone(),
                data_access_expires_at: account.state.data_access_expires_at,
                platform_user_id: account.state.platform_user_id.clone(),
                last_error: None,
            },
            token_expires_at: account.token_expires_at,
            answered: false,
        }
    };
    // `assess_valid` re-derives permissions from stored scopes; keep the last introspected ones.
    a.state.permissions = account.state.permissions.clone().or(a.state.permissions);
    a.answered = false;
    a.state.last_error = Some(detail.to_owned());
    let stale = match account.last_success_at {
        Some(t) => now - t > policy.stale_after,
        None => true,
    };
    if stale {
        a.state.health = Health::Unknown;
        a.state.token_valid = account.state.token_valid.filter(|_| account.last_success_at.is_some());
        a.state.recommendations = vec![match (account.last_success_at, t) {
            (Some(since), _) => format!(
                "{name} has not answered since {}; socialsyncer keeps retrying ({detail}).",
                date(since)
            ),
            (None, Some(_)) => {
                format!("{name} could not be reached to check this account yet ({detail}); socialsyncer will retry.")
            }
            (None, None) => {
                format!("This account cannot be checked until the daemon's configuration is fixed: {detail}.")
            }
        }];
    }
    a
}

/// The time by which a person must reconnect an account, if any: the access token's expiry
/// for a token nobody renews; for one renewed automatically, the refresh token's expiry (and
/// the access token's while refreshes keep failing); Facebook's data-access expiry always.
pub fn reconnect_deadline(
    renewed: bool,
    token_expires_at: Option<UnixTime>,
    refresh_expires_at: Option<UnixTime>,
    data_access_expires_at: Option<UnixTime>,
    refresh_failing: bool,
) -> Option<UnixTime> {
    let token = if renewed {
        refresh_expires_at
            .into_iter()
            .chain(token_expires_at.filter(|_| refresh_failing))
            .min()
    } else {
        token_expires_at
    };
    token.into_iter().chain(data_access_expires_at).min()
}

/// The account as a reader must see it now: one whose last answer from its platform is older
/// than `stale_after` reads `unknown`, saying since when, even if no check has run to say so
/// (sweeps off, a far-away next check, failing writes). Time alone changes the answer.
pub fn read_view(mut a: Account, now: UnixTime, stale_after: i64) -> Account {
    if let Some(since) = a.last_success_at
        && now - since > stale_after
        && a.state.health != Health::Unknown
    {
        a.state.health = Health::Unknown;
        a.state.recommendations = vec![format!(
            "{} has not answered since {}; socialsyncer keeps retrying.",
            a.platform.display_name(),
            date(since)
        )];
    }
    a
}

/// The SQL expression of [`read_view`]'s health, for filters and counts (`$stale_before` is
/// bound as `now - stale_after`, `h` is `account_health`).
pub const READ_HEALTH_SQL: &str =
    "(CASE WHEN h.last_success_at IS NOT NULL AND h.last_success_at < $stale_before THEN 'unknown' ELSE h.health END)";

/// What decides when an account is checked next.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// The normal re-check period.
    pub check_interval: i64,
    /// Transient check failures in a row before this check.
    pub failures: i64,
    /// Failed refreshes in a row, including this check's (0: the refresh did not fail).
    pub refresh_failures: i64,
    /// When the access token enters its refresh window, if it is refreshed automatically.
    pub refresh_at: Option<UnixTime>,
}

fn backoff(failures: i64, cap: i64) -> i64 {
    let exp = failures.clamp(0, 16) as u32;
    60i64.saturating_mul(1i64 << exp).min(cap)
}

/// When to check an account next: the normal interval, shorter as an expiry nears, at the
/// start of the refresh window, exponential backoff after failures (honouring the
/// platform's retry time), with jitter (`jitter` in `[0, 1)`) so accounts spread out
/// instead of hitting a platform in the same second.
pub fn next_check_at(outcome: &CheckOutcome, a: &Assessment, t: Timing, now: UnixTime, jitter: f64) -> UnixTime {
    let spread = |secs: i64| -> i64 {
        // +-10% around the target, never below a minute.
        let j = (secs as f64 * 0.2 * (jitter - 0.5)) as i64;
        (secs + j).max(60)
    };
    if let CheckOutcome::Transient(_) | CheckOutcome::Misconfigured(_) = outcome {
        let retry_at = match outcome {
            CheckOutcome::Transient(Transient { retry_at, .. }) => *retry_at,
            _ => None,
        };
        let at = now + spread(backoff(t.failures, t.check_interval));
        return retry_at.map_or(at, |r| at.max(r));
    }
    if t.refresh_failures > 0 {
        return now + spread(backoff(t.refresh_failures - 1, t.check_interval));
    }
    let mut interval = t.check_interval;
    let nearest = [a.token_expires_at, a.state.data_access_expires_at]
        .into_iter()
        .flatten()
        .filter(|e| *e > now)
        .min();
    if a.state.health != Health::Unhealthy
        && let Some(exp) = nearest
    {
        let left = exp - now;
        if left <= HOUR {
            interval = interval.min(10 * 60);
        } else if left <= DAY {
            interval = interval.min(HOUR);
        } else if left <= 7 * DAY {
            interval = interval.min(DAY);
        }
    }
    let next = now + spread(interval);
    match t.refresh_at {
        // Refresh windows are not jittered later: a late refresh may be a lost token.
        Some(r) if a.state.health != Health::Unhealthy && r < next => r.max(now + 60),
        _ => next,
    }
}

/// The `outcome` label of `socialsyncer_checks_total`.
pub fn outcome_label(o: &CheckOutcome) -> crate::domain::CheckLabel {
    use crate::domain::CheckLabel;
    match o {
        CheckOutcome::Valid(_) => CheckLabel::Ok,
        CheckOutcome::Invalid { .. } | CheckOutcome::PermissionDenied { .. } => CheckLabel::Invalid,
        CheckOutcome::Transient(_) | CheckOutcome::Misconfigured(_) | CheckOutcome::OtherApp(_) => {
            CheckLabel::TransientError
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
