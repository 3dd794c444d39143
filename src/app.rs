//! The composition root: the start-up steps, and [`AppState`], which builds each engine's
//! context and holds what a reload replaces.

use std::sync::Arc;

use anyhow::Context;

use crate::alerts::Outbox;
use crate::alerts::email::Mailer;
pub use crate::api::ApiState;
pub use crate::checks::Checker;
pub use crate::clock::Clock;
pub use crate::cluster::{Cluster, Instance};
use crate::config::{Config, DatabaseTarget};
use crate::crypto::Sealer;
use crate::live::Setter;
use crate::metrics::Metrics;
use crate::pacing::Gates;
use crate::platforms::{Http, Platforms};
pub use crate::problems::{Area, Problems};
pub use crate::scheduler::Sweeper;
use crate::store::Store;
pub use crate::tasks::Tasks;

/// The composition root: builds each engine's context from the shared pieces and holds
/// what a reload replaces. Only `server.rs`, the CLI, `demo` and the benchmarks take it;
/// every engine takes its own context ([`Checker`], [`Sweeper`], [`Outbox`], [`Cluster`],
/// [`ApiState`]). Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// Seals and opens platform tokens.
    pub sealer: Sealer,
    /// The platform adapters (sharing one HTTP client).
    pub platforms: Arc<Platforms>,
    /// Configuration problems seen at run time, shown by `/healthz`.
    pub problems: Arc<Problems>,
    /// Per-platform pacing.
    pub gates: Arc<Gates>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The time checks, sweeps and deliveries go by.
    pub clock: Clock,
    /// This daemon among the others sharing its database.
    pub instance: Arc<Instance>,
    /// Every background task (sweeps, refreshes, delivery, heartbeat, reload, watchdog).
    pub tasks: Tasks,
    /// Checks and refreshes one account; registration.
    pub checker: Checker,
    /// Runs sweeps.
    pub sweeper: Sweeper,
    /// Delivers alerts.
    pub outbox: Outbox,
    /// Heartbeats and shared budgets among the daemons on one database.
    pub cluster: Cluster,
    /// What the HTTP handlers take their pieces from.
    pub api: ApiState,
    /// What a reload replaces.
    live: Arc<Reloadable>,
}

/// What a reload can replace while the daemon runs: each engine holds a [`crate::live::Live`]
/// reader of these.
#[derive(Debug)]
struct Reloadable {
    config: Setter<Arc<Config>>,
    mailer: Setter<Option<Arc<Mailer>>>,
    /// The file the config was loaded from, and whether it was named explicitly (what a
    /// reload reads again); `None` when it did not come from a file.
    source: std::sync::RwLock<Option<(std::path::PathBuf, bool)>>,
}

/// A mistake in how a command was run (a missing database, a missing token key, the daemon
/// still running): the CLI prints it as one line and exits 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Whether a command may create the database when it does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// `serve`, `migrate`, `keys create`: a new installation starts here.
    Yes,
    /// Every other command: a missing database means a wrong `database.url` (for example a
    /// relative path run from another directory), never a reason for a new, empty one.
    No,
}

/// Opens the database named by the config and applies pending migrations.
pub async fn open_store(config: &Config, create: Create) -> anyhow::Result<Store> {
    let store = match config.database.target()? {
        DatabaseTarget::Sqlite(path) => {
            if create == Create::No && !path.exists() {
                return Err(UsageError(format!(
                    "no database at {} (is `database.url` right?)",
                    absolute(&path).display()
                ))
                .into());
            }
            private_folder(&path)?;
            // Processes starting together on a new file (serve, keys create) migrate one at a
            // time: the others wait for the lock, then find the migrations applied.
            let lock = migration_lock(&path).await?;
            let store = Store::open_sqlite_with(
                &path,
                config.database.busy_timeout.0,
                config.database.max_connections,
                config.database.sqlite_cache_mib,
                config.database.sqlite_memory_mib,
            )
            .await
            .with_context(|| format!("Failed to open the database {}", path.display()))?;
            store
                .migrate()
                .await
                .with_context(|| format!("Failed to migrate the database {}", database_label(config)))?;
            owner_only_files(&path);
            drop(lock);
            return Ok(store);
        }
        DatabaseTarget::Postgres(url) => open_postgres(config, &url).await?,
    };
    store
        .migrate()
        .await
        .with_context(|| format!("Failed to migrate the database {}", database_label(config)))?;
    Ok(store)
}

/// Creates the database's folder owner-only (0700) when it does not exist yet.
fn private_folder(db: &std::path::Path) -> anyhow::Result<()> {
    let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) else {
        return Ok(());
    };
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
        .with_context(|| format!("Failed to create the database folder {}", absolute(dir).display()))
}

/// An exclusive lock on `<database>.migrate.lock`, waited for.
async fn migration_lock(db: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".migrate.lock");
    let path = db.with_file_name(name);
    let shown = absolute(db).display().to_string();
    tokio::task::spawn_blocking(move || {
        let mut opts = std::fs::OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let what = || {
            format!(
                "Failed to open the database {shown}: its migration lock {}",
                path.display()
            )
        };
        let file = opts.open(&path).with_context(what)?;
        file.lock().with_context(what)?;
        anyhow::Ok(file)
    })
    .await?
}

/// The database file and its WAL and shared-memory files, owner-only (0600), whatever the
/// umask (outside systemd there is none of its own).
fn owner_only_files(db: &std::path::Path) {
    #[cfg(unix)]
    for suffix in ["", "-wal", "-shm", "-journal"] {
        use std::os::unix::fs::PermissionsExt;
        let mut name = db.as_os_str().to_os_string();
        name.push(suffix);
        let p = std::path::PathBuf::from(name);
        if p.exists()
            && let Err(e) = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
        {
            tracing::warn!(file = %p.display(), error = %e, "could not make the database file owner-only");
        }
    }
}

/// Connects to the PostgreSQL database of the config (its password from
/// `database.password_file` when set). Errors name the URL with its password redacted.
pub async fn open_postgres(config: &Config, url: &str) -> anyhow::Result<Store> {
    use secrecy::ExposeSecret;
    let password = config.database.password()?;
    Store::open_postgres(
        url,
        password.as_ref().map(|p| p.expose_secret()),
        config.database.busy_timeout.0,
        config.database.max_connections,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{}", crate::config::redact_url_in(&e.to_string(), url)))
    .with_context(|| format!("Failed to open the database {}", config.database.redacted_url()))
}

/// The database path as an absolute path, for messages.
pub fn absolute(path: &std::path::Path) -> std::path::PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// The database the config names, for the line every admin command prints: the SQLite
/// file as an absolute path, or the PostgreSQL URL without its password.
pub fn database_label(config: &Config) -> String {
    match config.database.target() {
        Ok(DatabaseTarget::Sqlite(p)) => absolute(&p).display().to_string(),
        _ => config.database.redacted_url(),
    }
}

/// Loads the token sealing key. Without `security.token_key_file`, `token.key` beside the
/// database is created on first use, but never while the database already holds sealed
/// tokens: a new key could not open them, so a missing key file is an error that names it.
pub async fn load_sealer(config: &Config, store: &Store) -> anyhow::Result<Sealer> {
    let path = config.token_key_path()?;
    if config.security.token_key_file.is_some() {
        let sealer = Sealer::load(&path).context("Failed to load security.token_key_file")?;
        bind_key(store, &sealer, &path).await?;
        return Ok(sealer);
    }
    if !path.exists() {
        let sealed = store.sealed_count().await?;
        if sealed > 0 {
            return Err(UsageError(format!(
                "the database holds the sealed tokens of {sealed} account(s) but there is no token key at {}; \
                 restore that file (or set security.token_key_file): a new key could not open them",
                absolute(&path).display()
            ))
            .into());
        }
    }
    let (sealer, created) = Sealer::load_or_create(&path).context("Failed to load or create the token key")?;
    if created {
        tracing::warn!(path = %path.display(), "created a new token sealing key; back it up with the database");
    }
    bind_key(store, &sealer, &path).await?;
    Ok(sealer)
}

/// Whether `sealer` opens the stored tokens, told by the first account's (`None`: no tokens
/// are stored).
pub async fn key_opens_tokens(store: &Store, sealer: &Sealer) -> anyhow::Result<Option<bool>> {
    let Some(row) = store.first_sealed().await? else {
        return Ok(None);
    };
    let ctx = crate::crypto::seal_context(row.workspace_id, row.platform, &row.account_id);
    Ok(Some(sealer.open(&ctx, &row.access_token).is_ok()))
}

/// Binds the store to `sealer`'s key: refused when the database names another key, or when
/// the key opens none of the stored tokens (before anything is written with it).
async fn bind_key(store: &Store, sealer: &Sealer, path: &std::path::Path) -> anyhow::Result<()> {
    if key_opens_tokens(store, sealer).await? == Some(false) {
        return Err(UsageError(format!(
            "the token key at {} does not open the stored tokens: it is not the key they were sealed with. \
             Nothing was written; set security.token_key_file to the key that sealed them",
            absolute(path).display()
        ))
        .into());
    }
    match store.bind_token_key(sealer.fingerprint()).await {
        Err(crate::store::StoreError::KeyChanged) => Err(UsageError(format!(
            "the token key at {} is not the key this database's tokens are sealed with (rotate-token-key \
             named another); set security.token_key_file to the key it made",
            absolute(path).display()
        ))
        .into()),
        other => Ok(other?),
    }
}

/// The daemon's liveness lock: an exclusive lock on `<database>.lock`, held for as long as
/// `serve` runs (the kernel releases it when the process dies, even by kill -9). Commands
/// that must not run beside the daemon (`rotate-token-key`) take the same lock.
#[derive(Debug)]
pub struct DaemonLock {
    _file: std::fs::File,
    path: std::path::PathBuf,
}

impl DaemonLock {
    /// The lock file of the configured database.
    pub fn path(config: &Config) -> anyhow::Result<std::path::PathBuf> {
        let db = config.database.sqlite_path()?;
        let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(".lock");
        Ok(absolute(&db.with_file_name(name)))
    }

    /// Takes the lock, or says who holds it: `what` names the command for the message.
    pub fn acquire(config: &Config, what: &str) -> anyhow::Result<DaemonLock> {
        let path = DaemonLock::path(config)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("Failed to create {}", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("Failed to open the lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(DaemonLock { _file: file, path }),
            Err(std::fs::TryLockError::WouldBlock) => Err(UsageError(format!(
                "a socialsyncer daemon is running on this database (it holds {}); {what}",
                path.display()
            ))
            .into()),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(anyhow::Error::new(e).context(format!("Failed to lock {}", path.display())))
            }
        }
    }

    /// Where the lock lives.
    pub fn file(&self) -> &std::path::Path {
        &self.path
    }
}

impl AppState {
    /// Assembles the state from an open store and sealer; builds the HTTP client, the
    /// adapters and each engine's context.
    pub fn new(config: Config, store: Store, sealer: Sealer) -> anyhow::Result<AppState> {
        let http = Http::new(&config)?;
        let apps = Arc::new(crate::platforms::connect::Apps::new(&config, http.clone())?);
        let platforms = Arc::new(Platforms::new(&config, http)?);
        let mailer = Mailer::from_config(&config)?.map(Arc::new);
        let alert_thresholds = Arc::new(crate::alerts::thresholds(&config.alerts));
        let metrics = Metrics::new();
        let instance = Arc::new(Instance::new());
        metrics.set_instance(&instance.id);
        metrics.init_alert_kinds(&crate::alerts::kinds(&alert_thresholds));
        let metrics = Arc::new(metrics);
        let list_cache = Arc::new(crate::api::cache::ListCache::new(config.server.list_cache_bytes));
        let gates = Arc::new(Gates::new(&config));
        let live = Arc::new(Reloadable {
            config: Setter::new(Arc::new(config)),
            mailer: Setter::new(mailer),
            source: std::sync::RwLock::new(None),
        });
        let (problems, clock, tasks) = (Arc::new(Problems::default()), Clock::default(), Tasks::new());
        let alerts_due = Arc::new(tokio::sync::Notify::new());
        let checker = Checker {
            store: store.clone(),
            sealer: sealer.clone(),
            platforms: platforms.clone(),
            problems: problems.clone(),
            gates: gates.clone(),
            metrics: metrics.clone(),
            clock: clock.clone(),
            alert_thresholds,
            tasks: tasks.clone(),
            config: live.config.live(),
        };
        let sweeper = Sweeper {
            checker: checker.clone(),
            store: store.clone(),
            clock: clock.clone(),
            config: live.config.live(),
            gates: gates.clone(),
            instance: instance.clone(),
            metrics: metrics.clone(),
            alerts_due: alerts_due.clone(),
            sweep_busy: Arc::default(),
            tasks: tasks.clone(),
        };
        let outbox = Outbox {
            store: store.clone(),
            sealer: sealer.clone(),
            clock: clock.clone(),
            config: live.config.live(),
            mailer: live.mailer.live(),
            metrics: metrics.clone(),
            problems: problems.clone(),
            instance: instance.clone(),
            alerts_due,
            links: Arc::new(crate::connect::Connector {
                checker: checker.clone(),
                config: live.config.live(),
                apps: apps.clone(),
            }),
        };
        let cluster = Cluster {
            store: store.clone(),
            clock: clock.clone(),
            gates: gates.clone(),
            instance: instance.clone(),
            metrics: metrics.clone(),
            problems: problems.clone(),
        };
        let api = ApiState {
            store: store.clone(),
            sealer: sealer.clone(),
            clock: clock.clone(),
            gates: gates.clone(),
            instance: instance.clone(),
            metrics: metrics.clone(),
            problems: problems.clone(),
            checker: checker.clone(),
            outbox: outbox.clone(),
            key_limiter: Arc::default(),
            list_cache,
            config: live.config.live(),
            connector: crate::connect::Connector {
                checker: checker.clone(),
                config: live.config.live(),
                apps,
            },
        };
        Ok(AppState {
            store,
            sealer,
            platforms,
            problems,
            gates,
            metrics,
            clock,
            instance,
            tasks,
            checker,
            sweeper,
            outbox,
            cluster,
            api,
            live,
        })
    }

    /// Remembers where the config came from, so that SIGHUP can read it again.
    pub fn set_config_source(&self, path: std::path::PathBuf, explicit: bool) {
        *self.live.source.write().unwrap_or_else(|e| e.into_inner()) = Some((path, explicit));
    }

    /// The config file and whether it was named, when the config came from one.
    pub fn config_source(&self) -> Option<(std::path::PathBuf, bool)> {
        self.live.source.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads the config file again and applies what can change live (see [`AppState::reload`]).
    pub fn reload_from_source(&self) -> anyhow::Result<Reloaded> {
        let source = self.live.source.read().unwrap_or_else(|e| e.into_inner()).clone();
        let Some((path, explicit)) = source else {
            anyhow::bail!("the configuration did not come from a file; nothing to reload");
        };
        let new = Config::load(&path, explicit).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.0))?;
        self.reload(new)
    }

    /// The configuration in force now.
    pub fn config(&self) -> Arc<Config> {
        self.live.config.get()
    }

    /// The SMTP sender in force now, when `email.smtp_url` is set.
    pub fn mailer(&self) -> Option<Arc<Mailer>> {
        self.live.mailer.get()
    }

    /// Applies a newly loaded configuration: what can change live is taken (see
    /// [`Config::with_reloadable`]: `email.*` and with it the recipients, `schedule.*`, each
    /// platform's `rate_limit`, `log.level`); everything else keeps its value until a
    /// restart. Returns what changed and what was left for a restart, as the config keys
    /// whose values differ.
    pub fn reload(&self, new: Config) -> anyhow::Result<Reloaded> {
        let old = self.config();
        let mailer = Mailer::from_config(&new)?.map(Arc::new);
        let effective = old.with_reloadable(&new);
        let changed = crate::config::differing_keys(&old, &effective);
        let restart = crate::config::differing_keys(&effective, &new);
        self.gates.set_rates(&effective);
        crate::telemetry::set_level(&effective.log.level);
        self.live.mailer.set(mailer);
        self.live.config.set(Arc::new(effective));
        Ok(Reloaded { changed, restart })
    }

    /// Opens the store (with migrations, creating the database if needed) and the sealer:
    /// everything `serve` needs.
    pub async fn build(config: Config) -> anyhow::Result<AppState> {
        AppState::build_with(config, Create::Yes).await
    }

    /// As [`AppState::build`]; `create` says whether a missing database may be created.
    pub async fn build_with(config: Config, create: Create) -> anyhow::Result<AppState> {
        let store = open_store(&config, create).await?;
        let sealer = load_sealer(&config, &store).await?;
        AppState::new(config, store, sealer)
    }
}

/// What a reload did, as config key names.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Keys whose new values are in force.
    pub changed: Vec<String>,
    /// Keys that changed in the file but keep their old values until a restart.
    pub restart: Vec<String>,
}

impl Reloaded {
    /// Whether `schedule.cron` changed (the sweep job must be replaced).
    pub fn cron_changed(&self) -> bool {
        self.changed.iter().any(|k| k == "schedule.cron")
    }
}
