//! The daemon's own configuration problems (an app secret a platform rejects, alerts that
//! wait for a recipient), never blamed on an account: `/healthz` counts them, `/problems` on
//! the metrics listener lists them, `socialsyncer_configuration_problems` counts each
//! platform's.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::domain::Platform;
use crate::platforms::CheckOutcome;

/// Where a configuration problem was seen: a platform's checks, or its token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Area {
    /// Checks (e.g. the app secret `debug_token` rejects, an X app refusal).
    Check,
    /// Refreshes (e.g. a TikTok or X client secret the token endpoint rejects).
    Refresh,
}

/// The daemon's own configuration problems, by platform and area (e.g. an app secret the
/// platform rejects). They are never blamed on an account: `/healthz` reports them, a log
/// line names them, and `socialsyncer_configuration_problems` counts them.
#[derive(Debug, Default)]
pub struct Problems {
    by_platform: Mutex<BTreeMap<(Platform, Area), String>>,
    /// Other problems by a key of their own (e.g. `email:<workspace>`).
    notes: Mutex<BTreeMap<String, String>>,
}

impl Problems {
    /// Records what a check says about the configuration of `platform`'s checks.
    pub fn observe(&self, platform: Platform, outcome: &CheckOutcome) {
        match outcome {
            CheckOutcome::Misconfigured(msg) => {
                self.set(platform, Area::Check, Some(msg.clone()));
            }
            CheckOutcome::Transient(_) | CheckOutcome::OtherApp(_) => {}
            _ => self.set(platform, Area::Check, None),
        }
    }

    /// Sets or clears the problem of one platform and area.
    pub fn set(&self, platform: Platform, area: Area, problem: Option<String>) {
        let mut m = self.by_platform.lock().unwrap_or_else(|e| e.into_inner());
        match problem {
            Some(p) => {
                m.insert((platform, area), p);
            }
            None => {
                m.remove(&(platform, area));
            }
        }
    }

    /// Sets or clears a problem that is not a platform's (e.g. alerts without a recipient).
    /// True when a problem is set that was not set before (what says to log it once).
    pub fn set_note(&self, key: &str, problem: Option<String>) -> bool {
        let mut m = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        match problem {
            Some(p) => m.insert(key.to_owned(), p).is_none(),
            None => {
                m.remove(key);
                false
            }
        }
    }

    /// Keeps only the other problems whose key `keep` accepts.
    pub fn retain_notes(&self, keep: impl Fn(&str) -> bool) {
        let mut m = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|k, _| keep(k));
    }

    /// The current problems, as `platform: message` lines, then the others (which may name
    /// workspaces: for the operator's metrics listener only).
    pub fn list(&self) -> Vec<String> {
        let mut out = self.platform_problems();
        let notes = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        out.extend(notes.values().cloned());
        out
    }

    /// The platforms' problems, as `platform: message` lines: the daemon's own configuration,
    /// never a tenant's.
    pub fn platform_problems(&self) -> Vec<String> {
        let m = self.by_platform.lock().unwrap_or_else(|e| e.into_inner());
        m.iter().map(|((p, _), msg)| format!("{p}: {msg}")).collect()
    }

    /// The other problems with one of these keys (e.g. one workspace's `email:<name>`).
    pub fn notes_for(&self, keys: &[&str]) -> Vec<String> {
        let notes = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter().filter_map(|k| notes.get(*k).cloned()).collect()
    }

    /// The other problems whose key starts with `prefix` (e.g. `cadence:`), in key order.
    pub fn notes_with_prefix(&self, prefix: &str) -> Vec<String> {
        let notes = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        notes
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Sets or clears each platform's cadence problem from its account count (see
    /// [`cadence`]); logs one that is new.
    pub fn set_cadence(&self, config: &crate::config::Config, counts: &[(Platform, i64)]) {
        for p in Platform::ALL {
            let n = counts.iter().filter(|(q, _)| *q == p).map(|(_, n)| n).sum();
            let problem = cadence(config, p, n);
            if self.set_note(&format!("cadence:{p}"), problem.clone())
                && let Some(msg) = problem
            {
                tracing::warn!(platform = %p, accounts = n, "{msg}");
            }
        }
    }

    /// How many other problems have a key starting with `prefix` (e.g. `email:`).
    pub fn notes_count(&self, prefix: &str) -> usize {
        let notes = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        notes.keys().filter(|k| k.starts_with(prefix)).count()
    }

    /// How many problems each platform has now (every platform listed).
    pub fn counts(&self) -> Vec<(Platform, usize)> {
        let m = self.by_platform.lock().unwrap_or_else(|e| e.into_inner());
        Platform::ALL
            .into_iter()
            .map(|p| (p, m.keys().filter(|(q, _)| *q == p).count()))
            .collect()
    }
}

/// Whether a sweep of `accounts` accounts of `platform` at its rate limit fits in
/// `health.check_interval` (the period the health policy re-checks each account): the words,
/// with the numbers, when it does not.
pub fn cadence(config: &crate::config::Config, platform: Platform, accounts: i64) -> Option<String> {
    let rate = config.platforms.get(platform).rate_limit(platform)?;
    let period = config.health.check_interval.secs();
    let needs = accounts as f64 / rate;
    (accounts > 0 && needs > period as f64).then(|| {
        format!(
            "{platform}: a sweep of its {accounts} accounts at {rate} checks/s (platforms.{platform}.rate_limit) takes \
             {:.1} h, longer than health.check_interval ({:.1} h): its accounts are checked less often than the \
             policy asks; raise the rate limit as far as the platform allows, or lengthen the interval",
            needs / 3_600.0,
            period as f64 / 3_600.0
        )
    })
}
