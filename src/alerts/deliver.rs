//! The delivery round: the claimed pending alerts, per workspace, to every recipient (email)
//! and receiver (webhooks). Workspaces are delivered concurrently, and within one workspace
//! its receivers are; a workspace's webhooks get a time budget per round
//! ([`WORKSPACE_BUDGET`]), a JSON receiver at most [`POSTS_PER_ROUND`] requests a round, and
//! the round's claims are renewed while it runs. So one workspace's slow receivers never
//! hold another's alerts back by more than the budget.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use tokio::task::JoinSet;

use super::email::{DeliveryReport, MailFailure, Mailer, host_name};
use super::webhook::{Clients, Receiver};
use crate::app::AppState;
use crate::domain::WorkspaceId;
use crate::store::{PendingAlert, StoreError};

/// How long one workspace's webhooks may take in a round; what is left goes next round.
pub const WORKSPACE_BUDGET: Duration = Duration::from_secs(5);
/// Workspaces delivered at once.
const WORKSPACES_AT_ONCE: usize = 32;
/// Receivers of one workspace posted to at once.
const RECEIVERS_AT_ONCE: usize = 16;
/// Requests a JSON receiver gets at most in one round (one per event); the rest wait.
pub const POSTS_PER_ROUND: usize = 20;

/// How long a delivery run's claim on its alerts holds if the daemon dies before it ends;
/// a running round renews it every [`RENEW_EVERY`].
const ALERT_CLAIM: i64 = 600;
const RENEW_EVERY: Duration = Duration::from_secs(60);

/// The recipients of a workspace's alerts: the operator's `email.to` and the workspace's
/// own confirmed addresses, each address once (compared without case); and which of them
/// are the workspace's own (counted against `notify.max_emails_per_hour`).
async fn recipients(state: &AppState, workspace_id: WorkspaceId) -> Result<(Vec<String>, Vec<String>), StoreError> {
    let mut to: Vec<String> = state.config().email.to.clone();
    let own = state.store.confirmed_recipients(workspace_id).await?;
    to.extend(own.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    to.retain(|t| seen.insert(t.trim().to_ascii_lowercase()));
    let operators: Vec<String> = state
        .config()
        .email
        .to
        .iter()
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    let own = own
        .into_iter()
        .filter(|o| !operators.contains(&o.trim().to_ascii_lowercase()))
        .collect();
    Ok((to, own))
}

/// How long events wait after a failed delivery: 30 s, doubling with each failed attempt,
/// at most an hour (email and webhooks alike).
pub(crate) fn retry_backoff(events: &[PendingAlert]) -> i64 {
    let attempts = events.iter().map(|e| e.attempts).max().unwrap_or(0);
    (30i64 << attempts.clamp(0, 7)).min(3_600)
}

/// Marks sent the events of `group` that every current recipient has: each email address,
/// and each webhook that wants the event's type.
async fn mark_done(
    state: &AppState,
    ids: &[i64],
    group: &[PendingAlert],
    to: &[String],
    hooks: &[Receiver],
    report: &mut DeliveryReport,
) -> Result<(), StoreError> {
    let have = state.store.alert_deliveries(ids).await?;
    let has = |id: i64, who: &str| have.iter().any(|(i, w)| *i == id && w == who);
    let done: Vec<i64> = group
        .iter()
        .filter(|e| {
            to.iter().all(|r| has(e.id, r)) && hooks.iter().filter(|h| h.wants(&e.kind)).all(|h| has(e.id, &h.key))
        })
        .map(|e| e.id)
        .collect();
    if !done.is_empty() {
        state.store.mark_alerts_sent(&done, state.clock.now(), None).await?;
        report.events += done.len();
    }
    Ok(())
}

/// Delivers every pending alert: per workspace, one message to each recipient (the
/// operator's copy apart from the workspace's, and nobody sees another recipient's address),
/// with the events that recipient does not have yet. A recipient the server refuses for
/// good is given up for those events (logged and counted); one refused for now is retried
/// with backoff. Webhooks get the same events (see [`super::webhook::deliver_to`]), each
/// receiver with its own delivery records. An event is marked sent once every recipient has
/// it. Alerts of a workspace without any recipient wait (and `/healthz` says so) until one
/// is added.
///
/// Of several daemons on one database, each event is delivered by the one that claimed it
/// (see [`crate::store::Store::pending_alerts`]); what a run leaves undelivered is released
/// for the next run of any daemon.
#[tracing::instrument(name = "deliver", skip_all)]
pub async fn deliver(state: &AppState) -> Result<DeliveryReport, StoreError> {
    let now = state.clock.now();
    let holder = state.instance.claimant("deliver");
    let claim = crate::store::Claim {
        holder: &holder,
        now,
        lease: ALERT_CLAIM,
    };
    let pending = state.store.pending_alerts(5_000, &claim).await?;
    let ids: Vec<i64> = pending.iter().map(|a| a.id).collect();
    // The claims outlive a long round: renewed while it runs.
    let renew = {
        let (store, holder) = (state.store.clone(), holder.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                if let Err(e) = store.renew_alert_claims(&holder, ALERT_CLAIM).await {
                    tracing::warn!(error = %e, "could not renew the claims of this delivery round");
                }
            }
        })
    };
    let result = deliver_claimed(state, pending).await;
    renew.abort();
    if !ids.is_empty()
        && let Err(e) = state.store.release_alerts(&ids, &holder).await
    {
        tracing::warn!(error = %e, "could not release the claims on undelivered alerts; they expire on their own");
    }
    result
}

async fn deliver_claimed(state: &AppState, pending: Vec<PendingAlert>) -> Result<DeliveryReport, StoreError> {
    let mailer = state.mailer();
    if mailer.is_none() && !pending.is_empty() {
        tracing::debug!(
            pending = pending.len(),
            "email.smtp_url is not set: alerts go to webhooks only"
        );
    }
    if let Some(m) = &mailer
        && state.config().notify.confirm_addresses
    {
        super::limits::send_confirmations(state, m).await?;
    }
    let host: Arc<str> = host_name().into();
    // Built only when a webhook is due: a client holds the TLS roots (about a megabyte).
    let clients = Arc::new(Clients::default());
    let slots = Arc::new(tokio::sync::Semaphore::new(WORKSPACES_AT_ONCE));
    let mut tasks = JoinSet::new();
    for group in pending.chunk_by(|a, b| a.workspace_id == b.workspace_id) {
        let permit = slots.clone().acquire_owned().await.ok();
        let (state, mailer, host, clients, group) = (
            state.clone(),
            mailer.clone(),
            host.clone(),
            clients.clone(),
            group.to_vec(),
        );
        tasks.spawn(async move {
            let _permit = permit;
            deliver_workspace(&state, mailer.as_deref(), &group, &host, &clients).await
        });
    }
    let mut report = DeliveryReport::default();
    let mut waiting = BTreeSet::new();
    let mut failed = None;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok((r, wait))) => {
                report.add(&r);
                waiting.extend(wait);
            }
            Ok(Err(e)) => failed = Some(e),
            Err(e) => tracing::error!(error = %e, "a workspace's delivery task failed"),
        }
    }
    // Workspaces that got a recipient (or whose alerts all went) no longer wait.
    state
        .problems
        .retain_notes(|key| key.strip_prefix("email:").is_none_or(|ws| waiting.contains(ws)));
    match failed {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// One workspace's events of a round (`group`): its webhooks concurrently within
/// [`WORKSPACE_BUDGET`], then its emails. Returns what it did, and the workspace's name when
/// its alerts wait for a recipient.
async fn deliver_workspace(
    state: &AppState,
    mailer: Option<&Mailer>,
    group: &[PendingAlert],
    host: &Arc<str>,
    clients: &Arc<Clients>,
) -> Result<(DeliveryReport, Option<String>), StoreError> {
    let mut report = DeliveryReport::default();
    let workspace = &group[0].workspace;
    let workspace_id = group[0].workspace_id;
    let ids: Vec<i64> = group.iter().map(|e| e.id).collect();
    let (to, own) = match mailer {
        Some(_) => recipients(state, workspace_id).await?,
        None => (Vec::new(), Vec::new()),
    };
    let hooks = super::webhook::receivers(state, workspace_id).await?;
    if to.is_empty() && hooks.is_empty() {
        let new = state.problems.set_note(
            &format!("email:{workspace}"),
            Some(format!(
                "notify: {} alert(s) of workspace {workspace} wait for a recipient (email.to, a webhook, or PUT /v1/notifications)",
                group.len()
            )),
        );
        // Said once while the workspace waits, not every round.
        if new {
            tracing::warn!(%workspace, events = group.len(), "alerts wait: the workspace has no recipient (email.to, a webhook, or PUT /v1/notifications)");
        }
        return Ok((report, Some(workspace.clone())));
    }
    state.problems.set_note(&format!("email:{workspace}"), None);
    let have = Arc::new(state.store.alert_deliveries(&ids).await?);
    if !hooks.is_empty() {
        webhooks(state, group, &hooks, &have, host, clients, &mut report).await?;
    }
    if let Some(mailer) = mailer {
        emails(state, mailer, group, &to, &own, &have, host, &mut report).await?;
    }
    mark_done(state, &ids, group, &to, &hooks, &mut report).await?;
    Ok((report, None))
}

/// The workspace's receivers, [`RECEIVERS_AT_ONCE`] at a time, for at most
/// [`WORKSPACE_BUDGET`]: a receiver cut off then gets its events next round.
async fn webhooks(
    state: &AppState,
    group: &[PendingAlert],
    hooks: &[Receiver],
    have: &Arc<Vec<(i64, String)>>,
    host: &Arc<str>,
    clients: &Arc<Clients>,
    report: &mut DeliveryReport,
) -> Result<(), StoreError> {
    let workspace = &group[0].workspace;
    let group: Arc<[PendingAlert]> = group.into();
    let slots = Arc::new(tokio::sync::Semaphore::new(RECEIVERS_AT_ONCE));
    let mut posts = JoinSet::new();
    for h in hooks {
        let (state, group, have, host, clients, slots, h) = (
            state.clone(),
            group.clone(),
            have.clone(),
            host.clone(),
            clients.clone(),
            slots.clone(),
            h.clone(),
        );
        posts.spawn(async move {
            let _permit = slots.acquire_owned().await.ok();
            let mut r = DeliveryReport::default();
            let client = clients.for_receiver(&h, &state.config().notify);
            super::webhook::deliver_to(&state, client, &h, &group, &have, &host, &mut r)
                .await
                .map(|()| r)
        });
    }
    let mut failed = None;
    let budget = tokio::time::sleep(WORKSPACE_BUDGET);
    tokio::pin!(budget);
    loop {
        tokio::select! {
            done = posts.join_next() => match done {
                None => break,
                Some(Ok(Ok(r))) => report.add(&r),
                Some(Ok(Err(e))) => failed = Some(e),
                Some(Err(e)) => tracing::error!(error = %e, "a webhook delivery task failed"),
            },
            () = &mut budget => {
                let left = posts.len();
                posts.abort_all();
                tracing::warn!(
                    %workspace,
                    receivers = left,
                    budget = ?WORKSPACE_BUDGET,
                    "the workspace's receivers took longer than a round allows; the rest is sent next round"
                );
                break;
            }
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// One email to each recipient with the events of `group` it does not have yet; the
/// workspace's own addresses within its hourly budget.
#[allow(clippy::too_many_arguments)]
async fn emails(
    state: &AppState,
    mailer: &Mailer,
    group: &[PendingAlert],
    to: &[String],
    own: &[String],
    have: &[(i64, String)],
    host: &str,
    report: &mut DeliveryReport,
) -> Result<(), StoreError> {
    let workspace = &group[0].workspace;
    for r in to {
        let missing: Vec<PendingAlert> = group
            .iter()
            .filter(|e| !have.iter().any(|(id, who)| *id == e.id && who == r))
            .cloned()
            .collect();
        if missing.is_empty() {
            continue;
        }
        // The workspace's own addresses within its hourly budget; beyond, its alerts wait.
        if own.contains(r) && !super::limits::may_email(state, group[0].workspace_id, workspace).await? {
            continue;
        }
        let missing_ids: Vec<i64> = missing.iter().map(|e| e.id).collect();
        let mailbox: Mailbox = match r.parse() {
            Ok(m) => m,
            Err(e) => {
                let note = format!("not an email address: {e}");
                tracing::warn!(%workspace, recipient = %r, problem = %note, "recipient given up");
                state
                    .store
                    .record_deliveries(&missing_ids, r, state.clock.now(), Some(&note))
                    .await?;
                report.refused += 1;
                continue;
            }
        };
        match mailer.send_alert(mailbox, workspace, &missing, host).await {
            Ok(()) => {
                state
                    .store
                    .record_deliveries(&missing_ids, r, state.clock.now(), None)
                    .await?;
                for e in &missing {
                    state.metrics.alert_sent(&e.kind);
                }
                report.emails += 1;
                tracing::info!(%workspace, recipient = %r, events = missing.len(), "alert email sent");
            }
            Err(MailFailure::Unbuildable(e)) => {
                tracing::error!(%workspace, error = %e, "could not build an alert email");
            }
            Err(MailFailure::Permanent(msg)) => {
                state
                    .store
                    .record_deliveries(&missing_ids, r, state.clock.now(), Some(&format!("refused: {msg}")))
                    .await?;
                for e in &missing {
                    state.metrics.alert_failed(&e.kind);
                }
                report.refused += 1;
                tracing::warn!(%workspace, recipient = %r, error = %msg, "the SMTP server refused this recipient for good; the others still get the alerts");
            }
            Err(MailFailure::Transient(msg)) => {
                for e in &missing {
                    state.metrics.alert_failed(&e.kind);
                }
                state.metrics.notification_failed("email");
                report.failed += 1;
                tracing::warn!(%workspace, recipient = %r, error = %msg, "alert email not accepted; will retry");
                state
                    .store
                    .mark_alerts_failed(&missing_ids, &msg, state.clock.now() + retry_backoff(&missing))
                    .await?;
            }
        }
    }
    Ok(())
}

/// Delivers pending alerts every `alerts.delivery_interval`, and at once when a sweep wakes
/// it, until `cancel` fires; then makes one last attempt so a clean stop leaves nothing
/// deliverable behind.
pub async fn run(state: AppState, cancel: tokio_util::sync::CancellationToken) {
    let every = state.config().alerts.delivery_interval.0;
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(every) => {}
            () = state.alerts_due.notified() => {}
        }
        if let Err(e) = deliver(&state).await {
            tracing::error!(error = %e, "alert delivery failed");
        }
    }
    match tokio::time::timeout(Duration::from_secs(10), deliver(&state)).await {
        Ok(Err(e)) => tracing::error!(error = %e, "final alert delivery failed"),
        Err(_) => tracing::warn!("final alert delivery timed out; pending alerts stay in the outbox"),
        Ok(Ok(_)) => {}
    }
}
