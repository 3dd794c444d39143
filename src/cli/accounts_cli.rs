//! `keys` and `accounts import`: API keys with their scopes, and accounts registered or
//! given new tokens from the command line.

use std::io::Read;
use std::str::FromStr;

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};

use super::{AccountsCommand, KeysCommand, say_database};
use crate::accounts::{self, RegistrationInput};
use crate::app::{self, AppState};
use crate::config::Config;
use crate::domain::{self, Custody, InstagramLogin, KeyScope, WorkspaceName};
use crate::{checks, crypto};

/// `keys create`, `keys list`, `keys revoke`.
pub(super) async fn keys(cmd: KeysCommand, config: &Config) -> anyhow::Result<()> {
    say_database(config)?;
    // Only `keys create` may start a new installation's database.
    let create = if matches!(cmd, KeysCommand::Create { .. }) {
        app::Create::Yes
    } else {
        app::Create::No
    };
    let store = app::open_store(config, create).await?;
    match cmd {
        KeysCommand::Create { workspace, scope } => {
            let ws: WorkspaceName = workspace.parse()?;
            let scopes = KeyScope::parse_list(&scope).map_err(|e| anyhow::anyhow!("--scope: {e}"))?;
            let now = domain::now();
            let ws_id = store.ensure_workspace(ws.as_str(), now).await?;
            let key = crypto::generate_api_key();
            store
                .insert_api_key(ws_id, &key.prefix, &key.hash, now, &scopes)
                .await?;
            out!("{}", key.secret.expose_secret());
            eprintln!(
                "created key {} for workspace '{}' with scopes {}; it is shown only this once",
                key.prefix,
                ws.as_str(),
                KeyScope::join(&scopes)
            );
        }
        KeysCommand::List => {
            let keys = store.list_api_keys().await?;
            out!(
                "{:<12} {:<24} {:<21} {:<20} STATUS",
                "PREFIX",
                "WORKSPACE",
                "CREATED",
                "SCOPES"
            );
            for k in keys {
                let status = match k.revoked_at {
                    Some(t) => format!("revoked {}", domain::rfc3339(t)),
                    None => "active".into(),
                };
                out!(
                    "{:<12} {:<24} {:<21} {:<20} {status}",
                    k.prefix,
                    k.workspace,
                    domain::rfc3339(k.created_at),
                    k.scopes
                );
            }
        }
        KeysCommand::Revoke { prefix } => {
            let n = store.revoke_api_keys(prefix.trim(), domain::now()).await?;
            if n == 0 {
                bail!(
                    "no active key has the prefix '{}'; `socialsyncer keys list` shows the prefixes",
                    domain::truncate_for_message(&prefix)
                );
            }
            eprintln!("revoked {n} key(s) with prefix {}", prefix.trim());
        }
    }
    store.close().await;
    Ok(())
}

/// `accounts import`: registers an account, or with `--replace` gives a registered one new
/// tokens (checked at the platform first; nothing is revoked).
pub(super) async fn run(cmd: AccountsCommand, config: Config) -> anyhow::Result<()> {
    let AccountsCommand::Import {
        workspace,
        platform,
        account_id,
        username,
        refresh_token_file,
        expires_at,
        scopes,
        custody,
        instagram_login,
        replace,
    } = cmd;
    let ws: WorkspaceName = workspace.parse()?;
    let custody = custody
        .as_deref()
        .map(Custody::from_str)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--custody: {e}"))?;
    let instagram_login = instagram_login
        .as_deref()
        .map(InstagramLogin::from_str)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--instagram-login: {e}"))?;
    let access_token = read_token_from_stdin()?;
    let refresh_token = refresh_token_file
        .map(|p| {
            std::fs::read_to_string(&p)
                .with_context(|| format!("Failed to read --refresh-token-file {}", p.display()))
                .map(|s| SecretString::from(s.trim().to_owned()))
        })
        .transpose()?;
    let reg = RegistrationInput {
        platform,
        account_id,
        username,
        access_token,
        refresh_token,
        expires_at,
        scopes,
        custody,
        instagram_login,
    }
    .validate()?;
    say_database(&config)?;
    let store = app::open_store(&config, app::Create::No).await?;
    let Some(ws_id) = store.workspace_id(ws.as_str()).await? else {
        bail!(
            "workspace '{}' does not exist; create it with `socialsyncer keys create --workspace {}`",
            ws.as_str(),
            ws.as_str()
        );
    };
    let sealer = app::load_sealer(&config, &store).await?;
    let state = AppState::new(config, store, sealer)?;
    let result = if replace {
        replace_tokens(&state, ws_id, reg).await
    } else {
        let r = accounts::register(&state.checker, ws_id, &reg).await;
        audit(
            &state,
            ws_id,
            "account.register",
            &reg,
            if r.is_ok() { "ok" } else { "refused" },
        )
        .await;
        r.map(|_| {
            out!(
                "registered {} account {} ({})",
                reg.platform,
                reg.account_id,
                reg.username
            );
        })
        .map_err(Into::into)
    };
    state.store.close().await;
    result
}

async fn replace_tokens(
    state: &AppState,
    ws_id: domain::WorkspaceId,
    reg: accounts::Registration,
) -> anyhow::Result<()> {
    let Some(a) = state.store.get_account(ws_id, reg.platform, &reg.account_id).await? else {
        bail!(
            "no {} account {} in this workspace; import it without --replace to register it",
            reg.platform,
            reg.account_id
        );
    };
    let pushed = checks::PushedTokens {
        access_token: reg.access_token.clone(),
        refresh: match &reg.refresh_token {
            Some(r) => checks::RefreshChange::Set(r.clone()),
            None => checks::RefreshChange::Keep,
        },
        expires_at: reg.expires_at,
        refresh_expires_at: None,
        scopes: (!reg.scopes.is_empty()).then(|| reg.scopes.clone()),
    };
    let r = checks::push_tokens(&state.checker, &a, pushed).await;
    audit(
        state,
        ws_id,
        "tokens.replace",
        &reg,
        if r.is_ok() { "ok" } else { "refused" },
    )
    .await;
    let fresh = r?;
    out!(
        "replaced the tokens of {} account {}; health {}",
        reg.platform,
        reg.account_id,
        fresh.state.health
    );
    Ok(())
}

/// Records a command-line action in the audit trail (key prefix `cli`).
async fn audit(state: &AppState, ws_id: domain::WorkspaceId, action: &str, reg: &accounts::Registration, result: &str) {
    let e = crate::store::NewAuditEvent {
        workspace_id: ws_id,
        key_prefix: "cli",
        action,
        account: Some((reg.platform, reg.account_id.as_str())),
        result,
    };
    if let Err(err) = state.store.record_audit(&e, domain::now()).await {
        tracing::warn!(error = %err, "could not record the action in the audit trail");
    }
}

/// The access token: asked for with hidden input when standard input is a terminal,
/// else read from it (a pipe or a file).
fn read_token_from_stdin() -> anyhow::Result<SecretString> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        let token = rpassword::prompt_password("access token (input hidden): ")
            .context("Failed to read the access token from the terminal")?;
        let token = token.trim().to_owned();
        if token.is_empty() {
            bail!("no access token was typed");
        }
        return Ok(SecretString::from(token));
    }
    let mut buf = String::new();
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut buf)
        .context("Failed to read the access token from standard input")?;
    let token = buf.trim().to_owned();
    if token.is_empty() {
        bail!("no access token on standard input; pipe it in, e.g. `socialsyncer accounts import ... < token.txt`");
    }
    Ok(SecretString::from(token))
}
