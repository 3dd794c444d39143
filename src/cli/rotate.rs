//! `socialsyncer rotate-token-key`: every sealed token and webhook secret re-sealed under a
//! new key, in one transaction.

use anyhow::{Context, bail};

use crate::accounts;
use crate::app;
use crate::config::Config;
use crate::domain;

use super::say_database;

pub(super) async fn rotate_token_key(config: &Config, new_key_file: &std::path::Path) -> anyhow::Result<()> {
    say_database(config)?;
    // A relative name is looked up among the credentials first (socialsyncer-admin loads
    // every file of /etc/socialsyncer/credentials).
    let new_key_file = &crate::config::resolve_credential_path(new_key_file);
    let new = crate::crypto::Sealer::load(new_key_file).context("Failed to load --new-key-file")?;
    let old_path = config.token_key_path()?;
    if old_path.exists() && std::fs::canonicalize(&old_path).ok() == std::fs::canonicalize(new_key_file).ok() {
        bail!(
            "--new-key-file is the key in use ({}); create a new one first",
            old_path.display()
        );
    }
    let store = app::open_store(config, app::Create::No).await?;
    // The daemon would go on sealing and opening with the old key: it must be stopped, and
    // it cannot start while the lock is held here.
    let _lock = if store.is_shared() {
        // On the database's clock: a host whose clock is off cannot miss a live daemon.
        let running = store.live_instances(crate::cluster::LIVE_WITHIN, 86_400).await?;
        if running > 0 {
            return Err(app::UsageError(format!(
                "{running} socialsyncer daemon(s) are running on this database (heartbeats within {} s); \
                 stop every one first (systemctl stop socialsyncer on each host)",
                crate::cluster::LIVE_WITHIN
            ))
            .into());
        }
        None
    } else {
        Some(app::DaemonLock::acquire(
            config,
            "stop it first (systemctl stop socialsyncer)",
        )?)
    };
    let old = app::load_sealer(config, &store).await?;
    let count = store
        .reseal_all(domain::now(), new.fingerprint(), |rows, hooks| {
            let mut resealed = Vec::with_capacity(rows.len());
            for r in &rows {
                let platform = r.platform;
                let ctx = accounts::seal_context(r.workspace_id, platform, &r.account_id);
                let access = old.open(&ctx, &r.access_token).with_context(|| {
                    format!(
                        "{} account {} does not open with the current key",
                        r.platform, r.account_id
                    )
                })?;
                let refresh = r
                    .refresh_token
                    .as_deref()
                    .map(|t| old.open(&ctx, t))
                    .transpose()
                    .with_context(|| format!("{} account {}: refresh token", r.platform, r.account_id))?;
                resealed.push((r.id, new.seal(&ctx, &access), refresh.map(|t| new.seal(&ctx, &t))));
            }
            let mut secrets = Vec::with_capacity(hooks.len());
            for (id, workspace_id, url, sealed) in hooks {
                let ctx = crate::alerts::webhook::secret_context(crate::domain::WorkspaceId(workspace_id), &url);
                let secret = old
                    .open(&ctx, &sealed)
                    .with_context(|| format!("webhook {id} does not open with the current key"))?;
                secrets.push((id, new.seal(&ctx, &secret)));
            }
            anyhow::Ok((resealed, secrets))
        })
        .await??;
    store.close().await;
    eprintln!(
        "re-sealed the tokens of {count} account(s) under {}; now set security.token_key_file to it \
         (or put it in place of {}) before starting the daemon",
        new_key_file.display(),
        app::absolute(&old_path).display()
    );
    Ok(())
}
