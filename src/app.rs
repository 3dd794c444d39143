//! The shared application state and the start-up steps that build it.

use std::sync::Arc;

use anyhow::Context;

use crate::config::Config;
use crate::crypto::Sealer;
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
}

/// Opens the database named by the config and applies pending migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let path = config.database.sqlite_path()?;
    let store = Store::open_sqlite(
        &path,
        config.database.busy_timeout.0,
        config.database.max_connections,
    )
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
    let (sealer, created) =
        Sealer::load_or_create(&path).context("Failed to load or create the token key")?;
    if created {
        tracing::warn!(path = %path.display(), "created a new token sealing key; back it up with the database");
    }
    Ok(sealer)
}

impl AppState {
    /// Opens the store (with migrations) and the sealer: everything `serve` needs.
    pub async fn build(config: Config) -> anyhow::Result<AppState> {
        let store = open_store(&config).await?;
        let sealer = load_sealer(&config)?;
        Ok(AppState {
            store,
            config: Arc::new(config),
            sealer,
        })
    }
}
