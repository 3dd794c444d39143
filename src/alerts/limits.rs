//! What a workspace can make the daemon email (issue 20): at most
//! `notify.max_emails_per_hour` messages an hour to the addresses it set itself (alerts, test
//! messages and confirmations together; the operator's `email.to` is not counted), and, with
//! `notify.confirm_addresses`, a confirmation code to a new address before anything else.

use sha2::{Digest, Sha256};

use super::Outbox;
use super::email::Mailer;
use crate::domain::WorkspaceId;
use crate::store::StoreError;

/// What is stored of a confirmation code: its SHA-256, hex (the code itself is only mailed).
pub fn confirmation_hash(code: &str) -> String {
    hex::encode(Sha256::digest(format!("socialsyncer-confirm:{code}").as_bytes()))
}

/// A new confirmation code: 10 characters from an alphabet without look-alikes (about 50
/// bits; a guess also costs an API request under the key's rate limit).
fn new_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut b = [0u8; 10];
    rand::fill(&mut b);
    b.iter()
        .map(|x| ALPHABET[usize::from(*x) % ALPHABET.len()] as char)
        .collect()
}

/// Takes one email from the workspace's hourly budget. When it is spent, says so once per
/// hour (a log line and a problem note on the metrics listener) and answers false: the
/// email waits, nothing is dropped.
pub async fn may_email(state: &Outbox, workspace_id: WorkspaceId, workspace: &str) -> Result<bool, StoreError> {
    let cap = state.config().notify.max_emails_per_hour;
    if cap == 0 || state.store.take_email(workspace_id, cap).await? {
        state.problems.set_note(&format!("email-cap:{workspace}"), None);
        return Ok(true);
    }
    let new = state.problems.set_note(
        &format!("email-cap:{workspace}"),
        Some(format!(
            "notify: workspace {workspace} reached notify.max_emails_per_hour ({cap}); its emails wait for the next hour"
        )),
    );
    if new {
        tracing::warn!(%workspace, cap, "the workspace reached notify.max_emails_per_hour; its emails wait for the next hour");
    }
    Ok(false)
}

/// Mails a confirmation code to every address that waits for one, within each workspace's
/// budget. An address whose message fails is tried again next round. Returns how many went.
pub async fn send_confirmations(state: &Outbox, mailer: &Mailer) -> Result<usize, StoreError> {
    let mut sent = 0;
    for (workspace_id, workspace, email) in state.store.confirmations_to_send().await? {
        if !may_email(state, workspace_id, &workspace).await? {
            continue;
        }
        let code = new_code();
        let body = format!(
            "The socialsyncer workspace {workspace} asked to send its account alerts to this address.\n\n\
             To agree, give them this code: {code}\n\
             (they confirm it with POST /v1/notifications/confirm). Until then this address gets nothing else.\n\n\
             If you did not expect this, ignore this message.\n"
        );
        let subject = format!("[socialsyncer] confirm alerts for {workspace}");
        match mailer.send_text(&email, &subject, body).await {
            Ok(_) => {
                state
                    .store
                    .confirmation_sent(workspace_id, &email, &confirmation_hash(&code))
                    .await?;
                sent += 1;
                tracing::info!(%workspace, recipient = %email, "confirmation code sent");
            }
            Err(why) => {
                tracing::warn!(%workspace, recipient = %email, error = %why, "confirmation code not sent; will retry");
            }
        }
    }
    Ok(sent)
}
