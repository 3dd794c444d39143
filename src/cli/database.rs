//! Admin commands about the database and the config that names it: `migrate --from --to`
//! (SQLite into PostgreSQL) and `config check`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::app;
use crate::config::{Config, ConfigError, DatabaseTarget};
use crate::store::Store;

/// `migrate --from sqlite://... --to postgres://...`: the whole SQLite database copied into
/// an empty PostgreSQL one (in one transaction), then a reminder of what else moves.
pub(super) async fn copy_database(config: &Config, from: &str, to: &str) -> anyhow::Result<()> {
    let mut source_cfg = Config::default();
    source_cfg.database.url = from.to_owned();
    let DatabaseTarget::Sqlite(_) = source_cfg
        .database
        .target()
        .map_err(|e| anyhow::anyhow!("--from: {}", e.0))?
    else {
        bail!("--from: give the SQLite database to copy (sqlite://PATH)");
    };
    let mut target_cfg = Config::default();
    target_cfg.database.url = to.to_owned();
    target_cfg.database.password_file = config.database.password_file.clone();
    let DatabaseTarget::Postgres(url) = target_cfg
        .database
        .target()
        .map_err(|e| anyhow::anyhow!("--to: {}", e.0))?
    else {
        bail!("--to: give the PostgreSQL database to copy into (postgres://USER@HOST/DATABASE)");
    };
    // A daemon writing the SQLite file meanwhile would leave its last writes behind.
    let _lock = app::DaemonLock::acquire(
        &source_cfg,
        "stop it (systemctl stop socialsyncer) before copying its database, or the copy would miss what it writes",
    )?;
    eprintln!(
        "copying {} into {}",
        app::database_label(&source_cfg),
        target_cfg.database.redacted_url()
    );
    let source = app::open_store(&source_cfg, app::Create::No).await?;
    let target = app::open_postgres(&target_cfg, &url).await?;
    target
        .migrate()
        .await
        .context("Failed to migrate the PostgreSQL database")?;
    let copied = source
        .copy_into(&target, |table, rows| eprintln!("  {table}: {rows} row(s)"))
        .await;
    source.close().await;
    target.close().await;
    let total = match copied {
        Ok(n) => n,
        Err(crate::store::StoreError::Conflict) => {
            return Err(app::UsageError(
                "--to: the PostgreSQL database already holds workspaces; copy into an empty database".into(),
            )
            .into());
        }
        Err(e) => return Err(anyhow::Error::new(e).context("Failed to copy the database (nothing was written)")),
    };
    eprintln!(
        "copied {total} row(s). Next: set database.url to the PostgreSQL URL, copy the token key ({}) to every \
         host and name it in security.token_key_file; the tokens open with that same key",
        app::absolute(&source_cfg.token_key_path()?).display()
    );
    Ok(())
}

/// `config check`: every problem on its own line on stderr, the effective config on stdout.
/// `source` is the config file and whether it was named.
pub(super) async fn config_check(config: &Config, source: Option<(PathBuf, bool)>) -> anyhow::Result<ExitCode> {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let mut warnings = Vec::new();
    match &source {
        Some((path, _)) if path.exists() => notes.push(format!("config file {}", app::absolute(path).display())),
        Some((path, _)) => notes.push(format!(
            "config file {} does not exist: the defaults and SOCIALSYNCER_* variables apply",
            app::absolute(path).display()
        )),
        None => {}
    }
    for (key, path) in config.named_files() {
        if let Err(ConfigError(e)) = crate::config::read_secret_file(&key, &path) {
            problems.push(e);
        }
    }
    if let Err(ConfigError(e)) = crate::alerts::email::Mailer::from_config(config) {
        problems.push(e);
    }
    let key_path = config.token_key_path()?;
    let store = open_database(config, &mut notes, &mut problems).await;
    let sealed = match &store {
        Some(s) => s.sealed_count().await.unwrap_or_default(),
        None => 0,
    };
    if key_path.exists() {
        match crate::crypto::Sealer::load(&key_path) {
            Ok(sealer) => {
                notes.push(format!(
                    "token key {} is a valid 32-byte key",
                    app::absolute(&key_path).display()
                ));
                if let Some(s) = &store {
                    match app::key_opens_tokens(s, &sealer).await {
                        Ok(Some(true)) => notes.push("the token key opens the stored tokens".into()),
                        Ok(Some(false)) => problems.push(format!(
                            "security.token_key_file: the key at {} does not open the stored tokens: it is not the \
                             key they were sealed with",
                            app::absolute(&key_path).display()
                        )),
                        Ok(None) => {}
                        Err(e) => problems.push(format!("the stored tokens cannot be read: {e:#}")),
                    }
                }
            }
            Err(e) => problems.push(format!("security.token_key_file: {e}")),
        }
    } else if config.security.token_key_file.is_some() {
        problems.push(format!(
            "security.token_key_file: {} does not exist",
            app::absolute(&key_path).display()
        ));
    } else if sealed > 0 {
        problems.push(format!(
            "the database holds sealed tokens but there is no token key at {}",
            app::absolute(&key_path).display()
        ));
    } else {
        notes.push(format!(
            "token key {} does not exist yet: it is created on first use",
            app::absolute(&key_path).display()
        ));
    }
    if let Some(s) = &store {
        // Registered accounts on a platform whose app is not configured.
        let counts = s.health_counts(0).await.unwrap_or_default();
        for p in crate::domain::Platform::ALL {
            let n: i64 = counts.iter().filter(|(q, _, _)| *q == p).map(|(_, _, n)| n).sum();
            if let Some(slow) = crate::problems::cadence(config, p, n) {
                warnings.push(slow);
            }
            if n > 0
                && let Some(missing) = crate::platforms::missing_app_credentials(config, p)
            {
                warnings.push(format!(
                    "{n} {} account(s) are registered, but {missing}",
                    p.display_name()
                ));
            }
        }
    }
    if let Some(s) = store {
        s.close().await;
    }
    crate::connect::check_config(config, &mut notes, &mut problems);
    let now = crate::domain::now();
    for p in [crate::domain::Platform::Facebook, crate::domain::Platform::Instagram] {
        let key = format!("platforms.{p}.api_version");
        match crate::config::graph_version_advice(&key, config.platforms.get(p).api_version(), now) {
            Ok(Some(w)) => warnings.push(w),
            Ok(None) => {}
            Err(e) => problems.push(e),
        }
    }
    out!("{}", config.effective_toml());
    for n in &notes {
        eprintln!("ok: {n}");
    }
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    for p in &problems {
        eprintln!("problem: {p}");
    }
    if problems.is_empty() {
        eprintln!("the configuration is usable");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{} problem(s) found", problems.len());
        Ok(ExitCode::from(2))
    }
}

/// Opens the configured database without creating or migrating it; says what it found.
async fn open_database(config: &Config, notes: &mut Vec<String>, problems: &mut Vec<String>) -> Option<Store> {
    let target = match config.database.target() {
        Ok(t) => t,
        Err(ConfigError(e)) => {
            problems.push(format!("database.url: {e}"));
            return None;
        }
    };
    let (store, label) = match target {
        DatabaseTarget::Sqlite(path) => {
            let db = app::absolute(&path);
            if !db.exists() {
                notes.push(format!(
                    "database {} does not exist yet: serve, migrate or keys create create it (is `database.url` right?)",
                    db.display()
                ));
                return None;
            }
            let opened = Store::open_sqlite(&db, config.database.busy_timeout.0, 1)
                .await
                .map_err(|e| format!("database.url: {} cannot be opened: {e}", db.display()));
            (opened, db.display().to_string())
        }
        DatabaseTarget::Postgres(url) => (
            app::open_postgres(config, &url)
                .await
                .map_err(|e| format!("database.url: {e:#}")),
            config.database.redacted_url(),
        ),
    };
    match store {
        Ok(s) => {
            // A database no migration has run on yet holds no tokens.
            let n = s.sealed_count().await.unwrap_or_default();
            notes.push(format!("database {label} opens; it holds the tokens of {n} account(s)"));
            Some(s)
        }
        Err(e) => {
            problems.push(e);
            None
        }
    }
}
