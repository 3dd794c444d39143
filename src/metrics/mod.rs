//! Prometheus metrics in a private registry, with the names and labels fixed by the design.
//! Gauges are recomputed from the store before each scrape, so they are right after a restart.

use std::time::Duration;

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

mod per_account;

use crate::domain::{AlertKind, Health, Platform, UnixTime};
use crate::health::outcome_label;
use crate::platforms::CheckOutcome;
use crate::store::{Store, StoreError};

/// Every metric of the daemon.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    accounts: IntGaugeVec,
    alerts_pending: IntGauge,
    oldest_pending_alert_age: Gauge,
    configuration_problems: IntGaugeVec,
    checks: IntCounterVec,
    check_duration: HistogramVec,
    alerts_sent: IntCounterVec,
    alert_failures: IntCounterVec,
    notification_failures: IntCounterVec,
    last_sweep: Gauge,
    instance_info: IntGaugeVec,
    peers: IntGauge,
    claims_expired: prometheus::IntCounter,
    per_account_series: IntGauge,
    /// The per-account series were off for the limit at the last scrape (said once a change).
    over_limit: std::sync::atomic::AtomicBool,
}

impl Metrics {
    /// Registers every metric (and the process collector on Linux).
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("socialsyncer".into()), None).expect("valid prefix");
        let accounts = IntGaugeVec::new(
            Opts::new("accounts", "Connected accounts by platform and health"),
            &["platform", "health"],
        )
        .expect("valid metric");
        let alerts_pending = IntGauge::new("alerts_pending", "Alert events not delivered yet").expect("valid metric");
        let oldest_pending_alert_age = Gauge::new(
            "oldest_pending_alert_age_seconds",
            "Age of the oldest alert event not delivered yet (0 when none waits)",
        )
        .expect("valid metric");
        let configuration_problems = IntGaugeVec::new(
            Opts::new(
                "configuration_problems",
                "Problems with the daemon's own configuration seen at run time, by platform (see /healthz)",
            ),
            &["platform"],
        )
        .expect("valid metric");
        let checks = IntCounterVec::new(
            Opts::new("checks_total", "Token checks by platform and outcome"),
            &["platform", "outcome"],
        )
        .expect("valid metric");
        let check_duration = HistogramVec::new(
            HistogramOpts::new("check_duration_seconds", "Duration of one token check")
                .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["platform"],
        )
        .expect("valid metric");
        let alerts_sent = IntCounterVec::new(Opts::new("alerts_sent_total", "Alert emails sent, by kind"), &["kind"])
            .expect("valid metric");
        let alert_failures = IntCounterVec::new(
            Opts::new("alert_failures_total", "Failed alert delivery attempts, by kind"),
            &["kind"],
        )
        .expect("valid metric");
        let notification_failures = IntCounterVec::new(
            Opts::new(
                "notification_failures_total",
                "Failed deliveries to a notification receiver, by channel (email, json, slack, discord, teams)",
            ),
            &["channel"],
        )
        .expect("valid metric");
        for c in ["email", "json", "slack", "discord", "teams"] {
            notification_failures.with_label_values(&[c]);
        }
        let per_account_series = IntGauge::new(
            "per_account_series_enabled",
            "Whether the per-account series are served (1), or off (0) because metrics.per_account \
             is false or the accounts outnumber metrics.per_account_limit",
        )
        .expect("valid metric");
        let last_sweep = Gauge::new(
            "last_sweep_timestamp_seconds",
            "When the last sweep finished (Unix time)",
        )
        .expect("valid metric");
        let instance_info = IntGaugeVec::new(
            Opts::new(
                "instance_info",
                "Always 1; instance_id names this daemon among those sharing its database",
            ),
            &["instance_id"],
        )
        .expect("valid metric");
        let peers = IntGauge::new(
            "peers",
            "Live daemons sharing this daemon's database, itself included (1 on SQLite)",
        )
        .expect("valid metric");
        peers.set(1);
        let claims_expired = prometheus::IntCounter::new(
            "claims_expired_total",
            "Due accounts this daemon took over from a peer whose claim expired (the peer died mid-sweep)",
        )
        .expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new("build_info", "Always 1; the version label says which build"),
            &["version"],
        )
        .expect("valid metric");
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        for c in [
            Box::new(accounts.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(alerts_pending.clone()),
            Box::new(oldest_pending_alert_age.clone()),
            Box::new(configuration_problems.clone()),
            Box::new(checks.clone()),
            Box::new(check_duration.clone()),
            Box::new(alerts_sent.clone()),
            Box::new(alert_failures.clone()),
            Box::new(notification_failures.clone()),
            Box::new(last_sweep.clone()),
            Box::new(per_account_series.clone()),
            Box::new(build_info),
            Box::new(instance_info.clone()),
            Box::new(peers.clone()),
            Box::new(claims_expired.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        #[cfg(target_os = "linux")]
        {
            // Process metrics keep their standard names (process_*), outside our prefix.
            let _ = prometheus::default_registry()
                .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()));
        }
        for p in Platform::ALL {
            configuration_problems.with_label_values(&[p.as_str()]).set(0);
            for o in ["ok", "invalid", "transient_error"] {
                checks.with_label_values(&[p.as_str(), o]);
            }
            check_duration.with_label_values(&[p.as_str()]);
        }
        Metrics {
            registry,
            accounts,
            alerts_pending,
            oldest_pending_alert_age,
            configuration_problems,
            checks,
            check_duration,
            alerts_sent,
            alert_failures,
            notification_failures,
            last_sweep,
            per_account_series,
            over_limit: std::sync::atomic::AtomicBool::new(false),
            instance_info,
            peers,
            claims_expired,
        }
    }

    /// Names this daemon (`instance_info{instance_id}`).
    pub fn set_instance(&self, id: &str) {
        self.instance_info.reset();
        self.instance_info.with_label_values(&[id]).set(1);
    }

    /// The live daemons sharing the database.
    pub fn set_peers(&self, n: i64) {
        self.peers.set(n);
    }

    /// Counts accounts taken over from a peer whose claim expired.
    pub fn claims_expired(&self, n: u64) {
        self.claims_expired.inc_by(n);
    }

    /// Counts one check and its duration.
    pub fn observe_check(&self, platform: Platform, outcome: &CheckOutcome, took: Duration) {
        self.checks
            .with_label_values(&[platform.as_str(), outcome_label(outcome).as_str()])
            .inc();
        self.check_duration
            .with_label_values(&[platform.as_str()])
            .observe(took.as_secs_f64());
    }

    /// Checks timed so far and their total duration in seconds, over every platform.
    pub fn check_time_totals(&self) -> (u64, f64) {
        use prometheus::core::Collector;
        let mut totals = (0, 0.0);
        for family in self.check_duration.collect() {
            for m in family.get_metric() {
                let h = m.get_histogram();
                totals.0 += h.get_sample_count();
                totals.1 += h.get_sample_sum();
            }
        }
        totals
    }

    /// Records the end of a sweep.
    pub fn sweep_finished(&self, at: UnixTime) {
        self.last_sweep.set(at as f64);
    }

    /// Sets the sweep time read from the store at start-up.
    pub fn set_last_sweep(&self, at: Option<UnixTime>) {
        if let Some(t) = at {
            self.last_sweep.set(t as f64);
        }
    }

    /// Counts a failed delivery to a receiver of `channel`.
    pub fn notification_failed(&self, channel: &str) {
        self.notification_failures.with_label_values(&[channel]).inc();
    }

    /// Counts one alert event delivered.
    pub fn alert_sent(&self, kind: &AlertKind) {
        self.alerts_sent.with_label_values(&[kind.to_string()]).inc();
    }

    /// Sets the number of configuration problems per platform.
    pub fn set_configuration_problems(&self, counts: &[(Platform, usize)]) {
        for (p, n) in counts {
            self.configuration_problems
                .with_label_values(&[p.as_str()])
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
    }

    /// Counts a failed alert delivery attempt.
    pub fn alert_failed(&self, kind: &AlertKind) {
        self.alert_failures.with_label_values(&[kind.to_string()]).inc();
    }

    /// Starts the alert counters of every known kind at 0, so that a rule on their increase
    /// works before the first success or failure.
    pub fn init_alert_kinds(&self, kinds: &[AlertKind]) {
        for k in kinds {
            self.alerts_sent.with_label_values(&[k.to_string()]);
            self.alert_failures.with_label_values(&[k.to_string()]);
        }
    }

    /// Prometheus text exposition, with the gauges recomputed from the store. Per-account
    /// series (about one per account and metric) only with `per_account` and while the
    /// accounts do not outnumber `per_account_limit` (0: no limit); `renewed` says
    /// whether a platform's token is renewed automatically (given a stored refresh token).
    pub async fn render(
        &self,
        store: &Store,
        stale_after: i64,
        per_account: bool,
        per_account_limit: usize,
        now: crate::domain::UnixTime,
        renewed: impl Fn(Platform, Option<crate::domain::InstagramLogin>, bool, crate::domain::Custody) -> bool,
    ) -> Result<String, MetricsError> {
        let (pending, oldest) = store.pending_alert_stats().await?;
        self.alerts_pending.set(pending);
        self.oldest_pending_alert_age
            .set(oldest.map_or(0.0, |t| (now - t).max(0) as f64));
        let counts = store.health_counts(now - stale_after).await?;
        let total: i64 = counts.iter().map(|(_, _, n)| n).sum();
        let over = per_account_limit > 0 && total > per_account_limit as i64;
        if over != self.over_limit.swap(over, std::sync::atomic::Ordering::Relaxed) {
            if over {
                tracing::warn!(
                    accounts = total,
                    limit = per_account_limit,
                    "the per-account metric series are off: the accounts outnumber metrics.per_account_limit"
                );
            } else {
                tracing::info!(accounts = total, "the per-account metric series are on again");
            }
        }
        self.per_account_series.set(i64::from(per_account && !over));
        let per_account_rows = if per_account && !over {
            store.reconnect_rows(None).await?
        } else {
            Vec::new()
        };
        self.accounts.reset();
        for p in Platform::ALL {
            for h in Health::ALL {
                self.accounts.with_label_values(&[p.as_str(), h.as_str()]).set(0);
            }
        }
        for (p, h, n) in counts {
            self.accounts.with_label_values(&[p.as_str(), h.as_str()]).set(n);
        }
        let mut families = self.registry.gather();
        families.extend(prometheus::default_registry().gather());
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&families, &mut out)
            .map_err(MetricsError::Encode)?;
        let mut out = String::from_utf8_lossy(&out).into_owned();
        per_account::write(&mut out, &per_account_rows, renewed);
        Ok(out)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Why the metrics could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The text encoder failed.
    #[error("metrics could not be encoded: {0}")]
    Encode(prometheus::Error),
}
