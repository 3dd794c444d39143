//! Email delivery of the alert outbox: one message per workspace per delivery round (so the
//! events of one sweep arrive together), text and HTML, retried with backoff while the SMTP
//! server is down, marked sent only once the server accepted the message.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use crate::app::AppState;
use crate::config::{Config, ConfigError, read_secret_file};
use crate::domain::{self, Health, Platform};
use crate::store::{PendingAlert, StoreError};

/// The SMTP transport and sender.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// From `[email]`; `None` when no `smtp_url` is configured.
    pub fn from_config(config: &Config) -> Result<Option<Mailer>, ConfigError> {
        let e = &config.email;
        let Some(url) = &e.smtp_url else { return Ok(None) };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|err| ConfigError(format!("email.smtp_url: {err}")))?
            .timeout(Some(Duration::from_secs(30)));
        if let Some(path) = &e.credentials_file {
            let secret = read_secret_file("email.credentials_file", path)?;
            let (user, pass) = secret
                .expose_secret()
                .split_once(':')
                .ok_or_else(|| ConfigError("email.credentials_file: expected user:password".into()))?;
            builder = builder.credentials(Credentials::new(user.to_owned(), pass.to_owned()));
        }
        let from = e
            .from
            .as_deref()
            .unwrap_or("socialsyncer <socialsyncer@localhost>")
            .parse::<Mailbox>()
            .map_err(|err| ConfigError(format!("email.from: {err}")))?;
        for to in &e.to {
            to.parse::<Mailbox>()
                .map_err(|err| ConfigError(format!("email.to: '{to}': {err}")))?;
        }
        Ok(Some(Mailer {
            transport: builder.build(),
            from,
        }))
    }
}

/// What one delivery round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Emails accepted by the server.
    pub emails: usize,
    /// Alert events in them.
    pub events: usize,
    /// Emails that failed (their events wait for the retry).
    pub failed: usize,
}

fn severity_rank(s: &str) -> u8 {
    match s {
        "unhealthy" => 3,
        "unknown" => 2,
        "warning" => 1,
        _ => 0,
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn platform_name(p: &str) -> String {
    p.parse::<Platform>()
        .map(|p| p.display_name().to_owned())
        .unwrap_or_else(|_| p.to_owned())
}

/// Subject, text and HTML of one workspace's email.
pub fn compose(workspace: &str, events: &[PendingAlert]) -> (String, String, String) {
    let mut accounts: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.platform.as_str(), e.account_id.as_str()))
        .collect();
    accounts.sort_unstable();
    accounts.dedup();
    let n = accounts.len();
    let plural = if n == 1 { "account" } else { "accounts" };
    let worst = events
        .iter()
        .map(|e| e.severity.as_str())
        .max_by_key(|s| severity_rank(s))
        .unwrap_or("healthy");
    let subject = if worst == Health::Healthy.as_str() {
        format!("[socialsyncer] {workspace}: {n} {plural} recovered")
    } else {
        let verb = if n == 1 { "needs" } else { "need" };
        format!("[socialsyncer] {workspace}: {n} {plural} {verb} attention (worst: {worst})")
    };
    let mut text = format!("socialsyncer found changes in workspace {workspace}:\n\n");
    let mut html = format!(
        "<p>socialsyncer found changes in workspace <b>{}</b>:</p>\n<table cellpadding=\"4\">\n\
         <tr><th align=\"left\">Account</th><th align=\"left\">State</th><th align=\"left\">Problem</th>\
         <th align=\"left\">What to do</th></tr>\n",
        escape(workspace)
    );
    for e in events {
        let who = format!("{} {} ({})", platform_name(&e.platform), e.username, e.account_id);
        text.push_str(&format!("- {who} [{}]: {} {}\n", e.severity, e.problem, e.action));
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(&who),
            escape(&e.severity),
            escape(&e.problem),
            escape(&e.action)
        ));
    }
    text.push_str("\nThe account health API shows the details: GET /v1/accounts/health\n");
    html.push_str("</table>\n<p>The account health API shows the details: <code>GET /v1/accounts/health</code></p>\n");
    (subject, text, html)
}

/// Delivers every pending alert: one email per workspace. Failed sends are retried later
/// with backoff; nothing is marked sent that the server did not accept.
pub async fn deliver(state: &AppState) -> Result<DeliveryReport, StoreError> {
    let mut report = DeliveryReport::default();
    let now = domain::now();
    let pending = state.store.pending_alerts(now, 5_000).await?;
    if pending.is_empty() {
        return Ok(report);
    }
    let Some(mailer) = state.mailer.as_deref() else {
        tracing::debug!(
            pending = pending.len(),
            "alerts wait in the outbox: email.smtp_url is not set"
        );
        return Ok(report);
    };
    for group in pending.chunk_by(|a, b| a.workspace_id == b.workspace_id) {
        let ids: Vec<i64> = group.iter().map(|e| e.id).collect();
        let mut to: Vec<String> = state.config.email.to.clone();
        to.extend(state.store.recipients(group[0].workspace_id).await?);
        to.sort();
        to.dedup();
        let mailboxes: Vec<Mailbox> = to.iter().filter_map(|t| t.parse().ok()).collect();
        if mailboxes.is_empty() {
            tracing::warn!(workspace = %group[0].workspace, "alerts dropped: no recipients (email.to or PUT /v1/notifications)");
            state.store.mark_alerts_sent(&ids, now, Some("no recipients")).await?;
            continue;
        }
        let (subject, text, html) = compose(&group[0].workspace, group);
        let mut builder = Message::builder().from(mailer.from.clone()).subject(subject);
        for m in mailboxes {
            builder = builder.to(m);
        }
        let message = match builder.multipart(MultiPart::alternative_plain_html(text, html)) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "could not build an alert email");
                continue;
            }
        };
        match mailer.transport.send(message).await {
            Ok(_) => {
                state.store.mark_alerts_sent(&ids, domain::now(), None).await?;
                for e in group {
                    state.metrics.alert_sent(&e.kind);
                }
                report.emails += 1;
                report.events += group.len();
                tracing::info!(workspace = %group[0].workspace, events = group.len(), "alert email sent");
            }
            Err(err) => {
                let attempts = group.iter().map(|e| e.attempts).max().unwrap_or(0);
                let backoff = (30i64 << attempts.clamp(0, 7)).min(3_600);
                let msg = domain::truncate_for_message(&err.to_string());
                state
                    .store
                    .mark_alerts_failed(&ids, &msg, domain::now() + backoff)
                    .await?;
                for e in group {
                    state.metrics.alert_failed(&e.kind);
                }
                report.failed += 1;
                tracing::warn!(workspace = %group[0].workspace, error = %msg, retry_in_s = backoff, "alert email not accepted; will retry");
            }
        }
    }
    Ok(report)
}

/// Delivers pending alerts every `alerts.delivery_interval`, and at once when a sweep wakes
/// it, until `cancel` fires; then makes one last attempt so a clean stop leaves nothing
/// deliverable behind.
pub async fn run(state: AppState, cancel: tokio_util::sync::CancellationToken) {
    let every = state.config.alerts.delivery_interval.0;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(platform: &str, id: &str, severity: &str) -> PendingAlert {
        PendingAlert {
            id: 1,
            workspace_id: 1,
            workspace: "acme".into(),
            kind: "token_invalid".into(),
            severity: severity.into(),
            platform: platform.into(),
            account_id: id.into(),
            username: "<b>me</b>".into(),
            problem: "The token is no longer valid.".into(),
            action: "Reconnect the account.".into(),
            attempts: 0,
        }
    }

    #[test]
    fn subject_counts_accounts_and_names_the_worst_state() {
        let events = [
            ev("twitter", "1", "warning"),
            ev("twitter", "1", "unhealthy"),
            ev("tiktok", "x", "warning"),
        ];
        let (subject, text, html) = compose("acme", &events);
        assert_eq!(
            subject,
            "[socialsyncer] acme: 2 accounts need attention (worst: unhealthy)"
        );
        assert!(text.contains("X (Twitter) <b>me</b> (1) [unhealthy]"));
        assert!(html.contains("&lt;b&gt;me&lt;/b&gt;") && !html.contains("<b>me</b>"));
        let (subject, ..) = compose("acme", &[ev("tiktok", "x", "healthy")]);
        assert_eq!(subject, "[socialsyncer] acme: 1 account recovered");
    }
}
