//! Alerts: which events a health change raises (pure), and their delivery by email.

pub mod channel;
pub mod deliver;
pub mod email;
pub mod limits;
pub mod webhook;

pub use deliver::{DeliveryReport, deliver};
pub use deliver::{run, test_message};
pub use limits::confirmation_hash;

use crate::domain::{Account, AlertKind, Health, PendingAlert, UnixTime};
use crate::health::Assessment;
use crate::platforms::{CheckOutcome, InvalidReason};
use std::sync::Arc;

/// What decides the alerts besides the assessment.
/// What delivering alerts needs, and nothing else. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Outbox {
    /// The database (the outbox, the delivery records, the receivers).
    pub store: crate::store::Store,
    /// Opens the workspaces' webhook secrets.
    pub sealer: crate::crypto::Sealer,
    /// The daemon's clock (delivery records, retry times).
    pub clock: crate::clock::Clock,
    /// The configuration (`email.*` and `notify.*` are read; `email.*` reloads).
    pub config: crate::live::Live<Arc<crate::config::Config>>,
    /// The SMTP sender in force (`email.smtp_url`; a reload replaces it).
    pub mailer: crate::live::Live<Option<Arc<email::Mailer>>>,
    /// Counts sent and failed alerts.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Where waiting workspaces and spent budgets are noted for `/healthz` and `/problems`.
    pub problems: Arc<crate::problems::Problems>,
    /// Names this daemon's claims on the outbox.
    pub instance: Arc<crate::cluster::Instance>,
    /// Wakes the delivery loop (after a sweep, a new recipient).
    pub alerts_due: Arc<tokio::sync::Notify>,
    /// Makes the reconnect links alerts carry (when connecting is on).
    pub links: Arc<dyn ReconnectLinks>,
}

/// Makes the reconnect link an alert about an account carries (implemented by the connect
/// links; `None` when connecting is off or the platform cannot connect).
pub trait ReconnectLinks: Send + Sync + std::fmt::Debug {
    /// A link pinned to the account.
    fn link<'a>(
        &'a self,
        workspace_id: crate::domain::WorkspaceId,
        platform: crate::domain::Platform,
        account_id: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send + 'a>>;
}

impl Outbox {
    /// The configuration in force now.
    pub fn config(&self) -> Arc<crate::config::Config> {
        self.config.get()
    }

    /// The SMTP sender in force now, when `email.smtp_url` is set.
    pub fn mailer(&self) -> Option<Arc<email::Mailer>> {
        self.mailer.get()
    }

    /// The senders of one round.
    pub(crate) fn senders(&self) -> channel::Senders {
        channel::Senders {
            mailer: self.mailer(),
            clients: Default::default(),
            notify: self.config().notify.clone(),
            host: crate::cluster::host_name(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AlertPolicy {
    /// Expiry thresholds in seconds, each with its label (`7days`), widest first.
    pub thresholds: std::sync::Arc<Vec<(i64, String)>>,
    /// Failed checks in a row before "platform unreachable" is sent.
    pub unreachable_after: i64,
    /// The access token is renewed automatically (its expiry raises no alert).
    pub auto_refresh: bool,
}

/// The configured expiry thresholds with their labels (`7days`), widest first.
pub fn thresholds(config: &crate::config::AlertsConfig) -> Vec<(i64, String)> {
    let mut t: Vec<(i64, String)> = config
        .expiry_thresholds
        .iter()
        .map(|d| (d.secs(), humantime::format_duration(d.0).to_string().replace(' ', "")))
        .collect();
    t.sort_by_key(|(secs, _)| std::cmp::Reverse(*secs));
    t
}

/// The tightest of `thresholds` that `left` seconds have crossed, if any. The wider ones
/// count as sent: their kinds (`kind(label)`) are marked open without an event, so that a
/// token first seen a day before expiry sends one alert, not three. The tightest one's kind
/// is left for the caller to raise (it is skipped there if already open).
fn crossed(
    thresholds: &[(i64, String)],
    left: i64,
    kind: fn(String) -> AlertKind,
    open: &mut Vec<AlertKind>,
) -> Option<AlertKind> {
    let (tightest, label) = thresholds.iter().filter(|(t, _)| left <= *t).min_by_key(|(t, _)| *t)?;
    for (t, l) in thresholds {
        let k = kind(l.clone());
        if left <= *t && t != tightest && !open.contains(&k) {
            open.push(k);
        }
    }
    Some(kind(label.clone()))
}

/// Every alert kind that can be raised with these thresholds (for counters that start at 0).
pub fn kinds(thresholds: &[(i64, String)]) -> Vec<AlertKind> {
    let mut k: Vec<AlertKind> = AlertKind::plain().collect();
    for (_, label) in thresholds {
        k.push(AlertKind::Expiring(label.clone()));
        k.push(AlertKind::DataAccessExpiring(label.clone()));
    }
    k
}

/// The events of one check and the account's alert state after it.
#[derive(Debug, Default)]
pub struct Derived {
    /// New events (deduplicated by key when stored).
    pub alerts: Vec<PendingAlert>,
    /// Problem kinds alerted in the current episode.
    pub open: Vec<AlertKind>,
    /// The episode number (a recovery starts the next one).
    pub episode: i64,
}

/// Derives the alert events raised by assessment `a` of `account` (as it was before).
/// Each problem fires once per account, token and episode; "recovered" closes the episode.
pub fn derive(
    account: &Account,
    outcome: &CheckOutcome,
    a: &Assessment,
    refresh_error: Option<&str>,
    policy: &AlertPolicy,
    now: UnixTime,
) -> Derived {
    let mut open = account.open_alerts.clone();
    let mut episode = account.alert_episode;
    let mut alerts = Vec::new();
    let first_rec = a.state.recommendations.first().cloned().unwrap_or_default();
    let mut raise = |kind: AlertKind, severity: Health, problem: String, action: String, open: &mut Vec<AlertKind>| {
        if open.contains(&kind) {
            return;
        }
        alerts.push(PendingAlert {
            reconnect_url: None,
            id: 0,
            workspace: String::new(),
            attempts: 0,
            reconnect_by: None,
            workspace_id: account.workspace_id,
            account_ref: account.id,
            dedup_key: format!("{}:{}:{}:{kind}", account.id, account.token_issued_at, episode),
            kind: kind.clone(),
            severity,
            platform: account.platform,
            account_id: account.account_id.clone(),
            username: account.username.clone(),
            problem,
            action,
            created_at: now,
        });
        open.push(kind);
    };

    if a.answered && a.state.health == Health::Healthy {
        if !open.is_empty() {
            raise(
                AlertKind::Recovered,
                Health::Healthy,
                "The account is healthy again.".into(),
                "Nothing to do.".into(),
                &mut Vec::new(),
            );
            open.clear();
            episode += 1;
        }
        return Derived { alerts, open, episode };
    }

    match outcome {
        CheckOutcome::Invalid { reason, .. } => {
            let expired = *reason == InvalidReason::Expired || account.token_expires_at.is_some_and(|t| t <= now);
            let kind = if expired {
                AlertKind::TokenExpired
            } else {
                AlertKind::TokenInvalid
            };
            let problem = if expired {
                "The token has expired."
            } else {
                "The token no longer works."
            };
            raise(kind, a.state.health, problem.into(), first_rec.clone(), &mut open);
        }
        CheckOutcome::PermissionDenied { .. } => {
            raise(
                AlertKind::PermissionsMissing,
                a.state.health,
                "The platform refused access for lack of permission.".into(),
                first_rec.clone(),
                &mut open,
            );
        }
        CheckOutcome::Valid(_) => {
            if !a.state.missing_permissions.is_empty() {
                raise(
                    AlertKind::PermissionsMissing,
                    a.state.health,
                    format!("Missing permissions: {}.", a.state.missing_permissions.join(", ")),
                    "Reconnect the account and grant them.".into(),
                    &mut open,
                );
            }
            if let Some(exp) = a.token_expires_at.filter(|_| !policy.auto_refresh) {
                let left = exp - now;
                if left <= 0 {
                    raise(
                        AlertKind::TokenExpired,
                        a.state.health,
                        "The token has expired.".into(),
                        "Reconnect the account.".into(),
                        &mut open,
                    );
                } else if let Some(kind) = crossed(&policy.thresholds, left, AlertKind::Expiring, &mut open) {
                    let rec = a
                        .state
                        .recommendations
                        .iter()
                        .find(|r| r.starts_with("Token expires"))
                        .cloned()
                        .unwrap_or_else(|| format!("Token expires {}.", crate::health::time_left_at(exp, now)));
                    raise(
                        kind,
                        a.state.health,
                        rec,
                        "Reconnect the account before it expires.".into(),
                        &mut open,
                    );
                }
            }
            // Facebook's data access (90 days after the person last used the app) ends
            // publishing as surely as an expired token, refreshed or not.
            if let Some(exp) = a.state.data_access_expires_at {
                let left = exp - now;
                if left <= 0 {
                    raise(
                        AlertKind::DataAccessExpired,
                        a.state.health,
                        "Data access for the app has expired.".into(),
                        "The account owner must log in to the app again (reconnect the account).".into(),
                        &mut open,
                    );
                } else if let Some(kind) = crossed(&policy.thresholds, left, AlertKind::DataAccessExpiring, &mut open) {
                    raise(
                        kind,
                        a.state.health,
                        format!(
                            "Data access for the app expires {}.",
                            crate::health::time_left_at(exp, now)
                        ),
                        "The account owner must log in to the app again before then (reconnect the account).".into(),
                        &mut open,
                    );
                }
            }
            if let Some(e) = refresh_error {
                raise(
                    AlertKind::RefreshFailed,
                    a.state.health,
                    format!("Automatic token refresh failed: {e}."),
                    "socialsyncer retries; reconnect the account if it keeps failing.".into(),
                    &mut open,
                );
            }
        }
        // The daemon's own configuration (or an account connected through another app) is
        // never a customer's alert: /healthz, the log and the metrics say it.
        CheckOutcome::Misconfigured(_) | CheckOutcome::OtherApp(_) => {}
        CheckOutcome::Transient(_) => {
            if a.state.health == Health::Unknown && account.consecutive_failures + 1 >= policy.unreachable_after {
                raise(
                    AlertKind::PlatformUnreachable,
                    Health::Unknown,
                    first_rec.clone(),
                    format!(
                        "Check {}'s status; socialsyncer keeps retrying.",
                        account.platform.display_name()
                    ),
                    &mut open,
                );
            }
        }
    }
    Derived { alerts, open, episode }
}

#[cfg(test)]
mod tests;
