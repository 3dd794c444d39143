//! The audit trail's one writer for the API: what a key did to an account, and what came of
//! it (never a token).

use super::ApiState;
use super::extract::KeyPrefix;
use crate::domain::Account;

/// Records an action on `a` in the audit trail; `result` gives `ok` or the error's code.
pub(super) async fn audit<T, E: std::fmt::Debug>(
    state: &ApiState,
    a: &Account,
    key: &KeyPrefix,
    action: &str,
    result: &Result<T, E>,
) {
    let outcome = match result {
        Ok(_) => "ok".to_owned(),
        Err(e) => format!("{e:?}")
            .split(['(', ' ', '{'])
            .next()
            .unwrap_or("error")
            .to_ascii_lowercase(),
    };
    let e = crate::store::NewAuditEvent {
        workspace_id: a.workspace_id,
        key_prefix: &key.0,
        action,
        account: Some((a.platform, a.account_id.as_str())),
        result: &outcome,
    };
    if let Err(err) = state.store.record_audit(&e, state.clock.now()).await {
        tracing::warn!(error = %err, "could not record the action in the audit trail");
    }
}
