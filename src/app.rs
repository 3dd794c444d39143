//! The shared application state and the start-up steps that build it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::Context;

use crate::alerts::email::Mailer;
use crate::config::Config;
use crate::crypto::Sealer;
use crate::domain::Platform;
use crate::metrics::Metrics;
use crate::platforms::{CheckOutcome, Http, Platforms};
use crate::scheduler::Gates;
use crate::store::Store;

/// Everything the API handlers and background jobs share. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// The loaded configuration.
    pub config: Arc<Config>,
    /// Seals and opens platform tokens.
    pub sealer: Sealer,
    /// The platform adapters (sharing one HTTP client).
    pub platforms: Arc<Platforms>,
    /// Configuration problems seen at run time, shown by `/healthz`.
    pub problems: Arc<Problems>,
    /// Per-platform pacing for sweeps.
    pub gates: Arc<Gates>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The SMTP sender, when `email.smtp_url` is set.
    pub mailer: Option<Arc<Mailer>>,
    /// Wakes the alert delivery task (after a sweep).
    pub alerts_due: Arc<tokio::sync::Notify>,
    /// Expiry alert thresholds with their labels, computed once.
    pub alert_thresholds: Arc<Vec<(i64, String)>>,
}

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
}

impl Problems {
    /// Records what a check says about the configuration of `platform`'s checks.
    pub fn observe(&self, platform: Platform, outcome: &CheckOutcome) {
        match outcome {
            CheckOutcome::Misconfigured(msg) if !msg.starts_with("the token could not be refreshed") => {
                self.set(platform, Area::Check, Some(msg.clone()));
            }
            CheckOutcome::Misconfigured(_) | CheckOutcome::Transient(_) | CheckOutcome::OtherApp(_) => {}
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

    /// The current problems, as `platform: message` lines.
    pub fn list(&self) -> Vec<String> {
        let m = self.by_platform.lock().unwrap_or_else(|e| e.into_inner());
        m.iter().map(|((p, _), msg)| format!("{p}: {msg}")).collect()
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

/// Opens the database named by the config and applies pending migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let path = config.database.sqlite_path()?;
    let store = Store::open_sqlite(&path, config.database.busy_timeout.0, config.database.max_connections)
        .await
        .with_context(|| format!("Failed to open the database {}", path.display()))?;
    store
        .migrate()
        .await
        .with_context(|| format!("Failed to migrate the database {}", path.display()))?;
    Ok(store)
}

/// Loads the token sealing key, creating it beside the database when none is configured.
pub fn load_sealer(config: &Config) -> anyhow::Result<Sealer> {
    let path = config.token_key_path()?;
    if config.security.token_key_file.is_some() {
        return Sealer::load(&path).context("Failed to load security.token_key_file");
    }
    let (sealer, created) = Sealer::load_or_create(&path).context("Failed to load or create the token key")?;
    if created {
        tracing::warn!(path = %path.display(), "created a new token sealing key; back it up with the database");
    }
    Ok(sealer)
}

impl AppState {
    /// Assembles the state from an open store and sealer; builds the HTTP client and adapters.
    pub fn new(config: Config, store: Store, sealer: Sealer) -> anyhow::Result<AppState> {
        let http = Http::new(&config)?;
        let platforms = Platforms::new(&config, http)?;
        let mailer = Mailer::from_config(&config)?.map(Arc::new);
        let alert_thresholds = Arc::new(crate::alerts::thresholds(&config.alerts));
        Ok(AppState {
            store,
            gates: Arc::new(Gates::new(&config)),
            config: Arc::new(config),
            sealer,
            platforms: Arc::new(platforms),
            problems: Arc::new(Problems::default()),
            metrics: Arc::new(Metrics::new()),
            mailer,
            alerts_due: Arc::new(tokio::sync::Notify::new()),
            alert_thresholds,
        })
    }

    /// Opens the store (with migrations) and the sealer: everything `serve` needs.
    pub async fn build(config: Config) -> anyhow::Result<AppState> {
        let store = open_store(&config).await?;
        let sealer = load_sealer(&config)?;
        AppState::new(config, store, sealer)
    }
}
