//! The delivery round: the claimed pending alerts, per workspace, to every channel (email
//! addresses and webhook receivers, see [`super::channel`]). Workspaces are delivered
//! concurrently, and within one workspace its receivers are; a workspace's webhooks get a
//! time budget per round ([`WORKSPACE_BUDGET`]), a JSON receiver at most
//! [`super::channel::POSTS_PER_ROUND`] requests a round, and the round's claims are renewed
//! while it runs. So one workspace's slow receivers never hold another's alerts back by more
//! than the budget. What a send came to is recorded here, the same way for every channel.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::Outbox;
use super::channel::{Channel, Outcome, Senders};
use crate::domain::PendingAlert;
use crate::domain::WorkspaceId;
use crate::store::StoreError;

/// How long one workspace's webhooks may take in a round; what is left goes next round.
pub const WORKSPACE_BUDGET: Duration = Duration::from_secs(5);
/// Workspaces delivered at once.
const WORKSPACES_AT_ONCE: usize = 32;
/// Receivers of one workspace posted to at once.
const RECEIVERS_AT_ONCE: usize = 16;

/// How long a delivery run's claim on its alerts holds if the daemon dies before it ends;
/// a running round renews it every [`RENEW_EVERY`].
const ALERT_CLAIM: i64 = 600;
const RENEW_EVERY: Duration = Duration::from_secs(60);

/// What one delivery round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Emails accepted by the server (one per recipient and workspace).
    pub emails: usize,
    /// Alert events that every recipient now has (marked sent).
    pub events: usize,
    /// Emails that failed for now (their events wait for the retry).
    pub failed: usize,
    /// Recipients the server refused for good (given up for these events).
    pub refused: usize,
    /// Webhook POSTs a receiver accepted.
    pub webhooks: usize,
    /// Webhook POSTs that failed for now (retried with the same backoff as email).
    pub webhook_failures: usize,
}

impl DeliveryReport {
    /// Adds what another part of the round did.
    pub fn add(&mut self, other: &DeliveryReport) {
        self.emails += other.emails;
        self.events += other.events;
        self.failed += other.failed;
        self.refused += other.refused;
        self.webhooks += other.webhooks;
        self.webhook_failures += other.webhook_failures;
    }
}

/// The email channels of a workspace's alerts: the operator's `email.to` and the
/// workspace's own confirmed addresses, each address once (compared without case); the
/// workspace's own are counted against `notify.max_emails_per_hour`.
async fn email_channels(state: &Outbox, workspace_id: WorkspaceId) -> Result<Vec<Channel>, StoreError> {
    let operators: Vec<String> = state.config().email.to.clone();
    let own = state.store.confirmed_recipients(workspace_id).await?;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (address, own) in operators
        .into_iter()
        .map(|a| (a, false))
        .chain(own.into_iter().map(|a| (a, true)))
    {
        if seen.insert(address.trim().to_ascii_lowercase()) {
            out.push(Channel::Email { address, own });
        }
    }
    Ok(out)
}

/// How long events wait after a failed delivery: 30 s, doubling with each failed attempt,
/// at most an hour (every channel alike).
pub(crate) fn retry_backoff(events: &[PendingAlert]) -> i64 {
    let attempts = events.iter().map(|e| e.attempts).max().unwrap_or(0);
    (30i64 << attempts.clamp(0, 7)).min(3_600)
}

/// Marks sent the events of `group` that every channel that wants them has.
async fn mark_done(
    state: &Outbox,
    ids: &[i64],
    group: &[PendingAlert],
    channels: &[Channel],
    report: &mut DeliveryReport,
) -> Result<(), StoreError> {
    let have = state.store.alert_deliveries(ids).await?;
    let has = |id: i64, who: &str| have.iter().any(|(i, w)| *i == id && w == who);
    let done: Vec<i64> = group
        .iter()
        .filter(|e| channels.iter().filter(|c| c.wants(&e.kind)).all(|c| has(e.id, c.key())))
        .map(|e| e.id)
        .collect();
    if !done.is_empty() {
        state.store.mark_alerts_sent(&done, state.clock.now(), None).await?;
        report.events += done.len();
    }
    Ok(())
}

/// Delivers every pending alert: per workspace, to each channel the events it wants and
/// does not have yet (an email address gets one message with them all, and nobody sees
/// another recipient's address; a JSON webhook one POST per event; a chat webhook one
/// message). A channel that refuses for good is given up for those events (logged and
/// counted); one that fails for now is retried with backoff; a webhook that answers 410 is
/// disabled. An event is marked sent once every channel that wants it has it. Alerts of a
/// workspace without any channel wait (and `/healthz` says so) until one is added.
///
/// Of several daemons on one database, each event is delivered by the one that claimed it
/// (see [`crate::store::Store::pending_alerts`]); what a run leaves undelivered is released
/// for the next run of any daemon.
#[tracing::instrument(name = "deliver", skip_all)]
pub async fn deliver(state: &Outbox) -> Result<DeliveryReport, StoreError> {
    let holder = state.instance.claimant("deliver");
    let claim = crate::store::Claim {
        holder: &holder,
        now: state.clock.now(),
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

async fn deliver_claimed(state: &Outbox, pending: Vec<PendingAlert>) -> Result<DeliveryReport, StoreError> {
    let senders = Arc::new(state.senders());
    if senders.mailer.is_none() && !pending.is_empty() {
        tracing::debug!(
            pending = pending.len(),
            "email.smtp_url is not set: alerts go to webhooks only"
        );
    }
    if let Some(m) = &senders.mailer
        && state.config().notify.confirm_addresses
    {
        super::limits::send_confirmations(state, m).await?;
    }
    let slots = Arc::new(tokio::sync::Semaphore::new(WORKSPACES_AT_ONCE));
    let mut tasks = JoinSet::new();
    for group in pending.chunk_by(|a, b| a.workspace_id == b.workspace_id) {
        let permit = slots.clone().acquire_owned().await.ok();
        let (state, senders, group) = (state.clone(), senders.clone(), group.to_vec());
        tasks.spawn(async move {
            let _permit = permit;
            deliver_workspace(&state, &senders, &group).await
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
/// [`WORKSPACE_BUDGET`], then its email addresses one by one (an SMTP conversation is never
/// cut off halfway). Returns what it did, and the workspace's name when its alerts wait for
/// a recipient.
async fn deliver_workspace(
    state: &Outbox,
    senders: &Arc<Senders>,
    group: &[PendingAlert],
) -> Result<(DeliveryReport, Option<String>), StoreError> {
    let mut report = DeliveryReport::default();
    let workspace = &group[0].workspace;
    let workspace_id = group[0].workspace_id;
    let ids: Vec<i64> = group.iter().map(|e| e.id).collect();
    let emails = match senders.mailer {
        Some(_) => email_channels(state, workspace_id).await?,
        None => Vec::new(),
    };
    let hooks: Vec<Channel> = super::webhook::receivers(state, workspace_id)
        .await?
        .into_iter()
        .map(Channel::Webhook)
        .collect();
    if emails.is_empty() && hooks.is_empty() {
        // Events only a receiver that asks for them gets (tokens refreshed) do not wait for
        // one: with nobody asking, they are done.
        let opt_in: Vec<i64> = group.iter().filter(|e| e.kind.opt_in()).map(|e| e.id).collect();
        if !opt_in.is_empty() {
            state.store.mark_alerts_sent(&opt_in, state.clock.now(), None).await?;
            report.events += opt_in.len();
        }
        if opt_in.len() == group.len() {
            return Ok((report, None));
        }
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
    // Events that ask a person to act carry a reconnect link pinned to their account (one
    // per account a round), when connecting is on.
    let mut group = group.to_vec();
    let mut links: std::collections::HashMap<(crate::domain::Platform, String), Option<String>> = Default::default();
    for e in group.iter_mut().filter(|e| e.kind.needs_person()) {
        let key = (e.platform, e.account_id.clone());
        if !links.contains_key(&key) {
            let link = state.links.link(e.workspace_id, e.platform, &e.account_id).await;
            links.insert(key.clone(), link);
        }
        e.reconnect_url = links.get(&key).cloned().flatten();
    }
    let group: Arc<[PendingAlert]> = group.into();
    if !hooks.is_empty() {
        webhooks(state, senders, &group, &hooks, &have, &mut report).await?;
    }
    for c in &emails {
        deliver_to(state, senders, c, &group, &have, &mut report).await?;
    }
    let channels: Vec<Channel> = hooks.into_iter().chain(emails).collect();
    mark_done(state, &ids, &group, &channels, &mut report).await?;
    Ok((report, None))
}

/// The workspace's webhooks, [`RECEIVERS_AT_ONCE`] at a time, for at most
/// [`WORKSPACE_BUDGET`]: a receiver cut off then gets its events next round.
async fn webhooks(
    state: &Outbox,
    senders: &Arc<Senders>,
    group: &Arc<[PendingAlert]>,
    hooks: &[Channel],
    have: &Arc<Vec<(i64, String)>>,
    report: &mut DeliveryReport,
) -> Result<(), StoreError> {
    let workspace = &group[0].workspace;
    let slots = Arc::new(tokio::sync::Semaphore::new(RECEIVERS_AT_ONCE));
    let mut posts = JoinSet::new();
    for h in hooks {
        let (state, senders, group, have, slots, h) = (
            state.clone(),
            senders.clone(),
            group.clone(),
            have.clone(),
            slots.clone(),
            h.clone(),
        );
        posts.spawn(async move {
            let _permit = slots.acquire_owned().await.ok();
            let mut r = DeliveryReport::default();
            deliver_to(&state, &senders, &h, &group, &have, &mut r)
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

/// Sends channel `c` the events of `group` (one workspace's) it wants and does not have,
/// message by message, and records each outcome: delivered events are recorded for `c`;
/// refused ones are given up for `c`; 410 disables `c` (it stops counting as a recipient);
/// a failure delays this message's events and the later ones with the backoff, without
/// holding up any other channel. The workspace's own email addresses send within its
/// hourly budget; beyond it, their events wait.
async fn deliver_to(
    state: &Outbox,
    senders: &Senders,
    c: &Channel,
    group: &[PendingAlert],
    have: &[(i64, String)],
    report: &mut DeliveryReport,
) -> Result<(), StoreError> {
    let missing: Vec<&PendingAlert> = group
        .iter()
        .filter(|e| c.wants(&e.kind) && !have.iter().any(|(i, w)| *i == e.id && w == c.key()))
        .collect();
    let workspace = &group[0].workspace;
    let messages = c.messages(missing);
    if messages.is_empty() {
        return Ok(());
    }
    if let Channel::Email { own: true, .. } = c
        && !super::limits::may_email(state, group[0].workspace_id, workspace).await?
    {
        return Ok(());
    }
    let (key, label, email) = (c.key(), c.label(), matches!(c, Channel::Email { .. }));
    for (n, events) in messages.iter().enumerate() {
        let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
        let outcome = c.send(senders, workspace, events).await;
        let now = state.clock.now();
        match outcome {
            Outcome::Delivered(status) => {
                state.store.record_deliveries(&ids, key, now, None).await?;
                if c.tracked() {
                    state.store.receiver_result(key, true, now).await?;
                }
                for e in events {
                    state.metrics.alert_sent(&e.kind);
                }
                if email {
                    report.emails += 1;
                    tracing::info!(%workspace, recipient = %label, events = events.len(), "alert email sent");
                } else {
                    report.webhooks += 1;
                    tracing::info!(%workspace, receiver = %label, %status, events = events.len(), "webhook delivered");
                }
            }
            Outcome::Refused(note) => {
                state.store.record_deliveries(&ids, key, now, Some(&note)).await?;
                for e in events {
                    state.metrics.alert_failed(&e.kind);
                }
                report.refused += 1;
                tracing::warn!(%workspace, recipient = %label, problem = %note, "the recipient refused for good; the others still get the alerts");
            }
            Outcome::Gone => {
                state.store.disable_receiver(key, "answered 410 Gone", now).await?;
                state.metrics.notification_failed(c.name());
                tracing::warn!(%workspace, receiver = %label, "the webhook answered 410 Gone: it is disabled (set it again to enable it)");
                return Ok(());
            }
            Outcome::Retry(why) => {
                if c.tracked() {
                    state.store.receiver_result(key, false, now).await?;
                }
                state.metrics.notification_failed(c.name());
                for e in events {
                    state.metrics.alert_failed(&e.kind);
                }
                if email {
                    report.failed += 1;
                } else {
                    report.webhook_failures += 1;
                }
                tracing::warn!(%workspace, channel = %label, problem = %why, "alert not delivered; will retry");
                // This message and the ones after it wait for the retry.
                let owned: Vec<PendingAlert> = messages[n..].iter().flatten().map(|e| (*e).clone()).collect();
                let ids: Vec<i64> = owned.iter().map(|e| e.id).collect();
                state
                    .store
                    .mark_alerts_failed(&ids, &c.failure_note(&why), now + retry_backoff(&owned))
                    .await?;
                return Ok(());
            }
            Outcome::Unsendable(e) => {
                tracing::error!(%workspace, error = %e, "could not build an alert message");
            }
        }
    }
    Ok(())
}

/// Delivers pending alerts every `alerts.delivery_interval`, and at once when a sweep wakes
/// it, until `cancel` fires; then makes one last attempt so a clean stop leaves nothing
/// deliverable behind.
pub async fn run(state: Outbox, cancel: tokio_util::sync::CancellationToken) {
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

/// Sends a test message to every receiver of workspace `workspace_id` (its own addresses
/// and webhooks; with `operator`, the operator's `email.to` and `[[notify.webhook]]` too)
/// and says what each answered, receiver by receiver.
pub async fn test_message(
    state: &Outbox,
    workspace_id: WorkspaceId,
    operator: bool,
) -> Result<Vec<(String, String)>, StoreError> {
    let name = state.store.workspace_name(workspace_id).await?;
    let about = match &name {
        Some(n) => format!("workspace {n}"),
        None => "every workspace (the operator's receivers)".to_owned(),
    };
    let workspace = name.unwrap_or_default();
    let mut out = Vec::new();
    // The workspace's own addresses (within its budget; unconfirmed ones get nothing), then
    // with `operator` the operator's; then the webhooks.
    let mut channels: Vec<Channel> = state
        .store
        .confirmed_recipients(workspace_id)
        .await?
        .into_iter()
        .map(|address| Channel::Email { address, own: true })
        .collect();
    for e in state.store.unconfirmed_recipients(workspace_id).await? {
        out.push((e, "not sent: the address waits for confirmation".to_owned()));
    }
    if operator {
        let to = state.config().email.to.clone();
        channels.extend(to.into_iter().map(|address| Channel::Email { address, own: false }));
    }
    for r in super::webhook::receivers(state, workspace_id).await? {
        if operator || !r.key.starts_with("hook:") {
            channels.push(Channel::Webhook(r));
        }
    }
    let senders = state.senders();
    for c in channels {
        if let Channel::Email { own: true, .. } = c
            && senders.mailer.is_some()
            && !super::limits::may_email(state, workspace_id, &workspace).await?
        {
            out.push((
                c.label(),
                "not sent: the workspace reached notify.max_emails_per_hour".to_owned(),
            ));
            continue;
        }
        let said = match c.send_test(&senders, &workspace, &about).await {
            Outcome::Delivered(code) => format!("delivered ({code})"),
            Outcome::Gone => "answered 410 Gone (it will be disabled at the next alert)".to_owned(),
            Outcome::Refused(why) | Outcome::Retry(why) | Outcome::Unsendable(why) => why,
        };
        out.push((c.label(), said));
    }
    Ok(out)
}
