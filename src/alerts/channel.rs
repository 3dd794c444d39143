//! The ways an alert reaches someone, behind one small type: an email address or a webhook
//! receiver (JSON, Slack, Discord, Teams). A [`Channel`] says which events it wants, how
//! they are cut into messages and how one is sent; what a send came to is one [`Outcome`],
//! which the delivery round records the same way for every channel (gatus's
//! `alerting/provider` is the model: the round decides, the channel sends).

use std::sync::Arc;

use lettre::message::Mailbox;

use super::email::{MailFailure, Mailer};
use super::webhook::{self, Clients, Format, Receiver, Sent};
use crate::config::NotifyConfig;
use crate::domain::AlertKind;
use crate::domain::PendingAlert;

/// Requests a JSON receiver gets at most in one round (one per event); the rest wait.
pub const POSTS_PER_ROUND: usize = 20;

/// One recipient of a workspace's alerts.
#[derive(Debug, Clone)]
pub enum Channel {
    /// An email address: the operator's (`email.to`) or the workspace's own (`own`, counted
    /// against `notify.max_emails_per_hour`).
    Email {
        /// The address.
        address: String,
        /// Whether it is the workspace's own.
        own: bool,
    },
    /// A webhook receiver.
    Webhook(Receiver),
}

/// What sending one message came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted (the server's code or the receiver's status).
    Delivered(String),
    /// Refused for good: these events are given up for this channel (the others still get
    /// them).
    Refused(String),
    /// The channel no longer exists (a webhook answered 410 Gone): it is disabled.
    Gone,
    /// Failed for now: these events (and the channel's later messages) wait for the retry.
    Retry(String),
    /// The message could not be built; nothing is recorded.
    Unsendable(String),
}

/// What sends: the SMTP transport (when `email.smtp_url` is set) and the webhook clients.
#[derive(Debug)]
pub struct Senders {
    /// The mailer in force for this round.
    pub mailer: Option<Arc<Mailer>>,
    /// The webhook clients of this round.
    pub clients: Clients,
    /// Where webhooks may go.
    pub notify: NotifyConfig,
    /// The machine's name, for the line that says which installation wrote.
    pub host: String,
}

impl Channel {
    /// The key the channel's deliveries are recorded under.
    pub fn key(&self) -> &str {
        match self {
            Channel::Email { address, .. } => address,
            Channel::Webhook(r) => &r.key,
        }
    }

    /// The `channel` label of the failure counter: `email`, `json`, `slack`, ...
    pub fn name(&self) -> &'static str {
        match self {
            Channel::Email { .. } => "email",
            Channel::Webhook(r) => r.format.as_str(),
        }
    }

    /// How the channel may be logged: an address, or a receiver's scheme and host.
    pub fn label(&self) -> String {
        match self {
            Channel::Email { address, .. } => address.clone(),
            Channel::Webhook(r) => r.label(),
        }
    }

    /// Whether it wants events of `kind` (email: every kind but the opt-in ones).
    pub fn wants(&self, kind: &AlertKind) -> bool {
        match self {
            Channel::Email { .. } => !kind.opt_in(),
            Channel::Webhook(r) => r.wants(kind),
        }
    }

    /// Whether its successes and failures are tracked (a webhook that fails for a day, or
    /// answered 410, is shown by `/healthz`).
    pub fn tracked(&self) -> bool {
        matches!(self, Channel::Webhook(_))
    }

    /// The note recorded with events that wait after a failure.
    pub fn failure_note(&self, why: &str) -> String {
        match self {
            Channel::Email { .. } => why.to_owned(),
            Channel::Webhook(r) => format!("webhook {}: {why}", r.label()),
        }
    }

    /// `missing` cut into messages: one for all of them (email, chat formats), or one per
    /// event, at most [`POSTS_PER_ROUND`] a round (JSON).
    pub fn messages<'a>(&self, missing: Vec<&'a PendingAlert>) -> Vec<Vec<&'a PendingAlert>> {
        match self {
            Channel::Webhook(r) if r.format == Format::Json => {
                missing.into_iter().take(POSTS_PER_ROUND).map(|e| vec![e]).collect()
            }
            _ if missing.is_empty() => Vec::new(),
            _ => vec![missing],
        }
    }

    /// Sends one message carrying `events` of `workspace`.
    pub async fn send(&self, senders: &Senders, workspace: &str, events: &[&PendingAlert]) -> Outcome {
        match self {
            Channel::Email { address, .. } => {
                let Some(mailer) = &senders.mailer else {
                    return Outcome::Retry("email.smtp_url is not set".into());
                };
                let mailbox: Mailbox = match address.parse() {
                    Ok(m) => m,
                    Err(e) => return Outcome::Refused(format!("not an email address: {e}")),
                };
                let owned: Vec<PendingAlert> = events.iter().map(|e| (*e).clone()).collect();
                match mailer.send_alert(mailbox, workspace, &owned, &senders.host).await {
                    Ok(()) => Outcome::Delivered("accepted".into()),
                    Err(MailFailure::Permanent(m)) => Outcome::Refused(format!("refused: {m}")),
                    Err(MailFailure::Transient(m)) => Outcome::Retry(m),
                    Err(MailFailure::Unbuildable(m)) => Outcome::Unsendable(m),
                }
            }
            Channel::Webhook(r) => {
                let body = match r.format {
                    Format::Json => webhook::json_event(events[0]),
                    f => webhook::chat_message(f, workspace, events, &senders.host),
                };
                post(senders, r, &serde_json::to_vec(&body).unwrap_or_default()).await
            }
        }
    }

    /// Sends a test message (no event); the outcome says what the channel answered.
    /// `about` says whose alerts the receiver gets ("workspace acme", or every workspace
    /// for the operator's receivers); JSON test events carry `workspace`, the name.
    pub async fn send_test(&self, senders: &Senders, workspace: &str, about: &str) -> Outcome {
        match self {
            Channel::Email { address, .. } => {
                let Some(mailer) = &senders.mailer else {
                    return Outcome::Refused("not sent: email.smtp_url is not set".into());
                };
                let body = format!(
                    "A test message from socialsyncer on {}: alerts of {about} reach this address.\n",
                    senders.host
                );
                let subject = format!("[socialsyncer] test message for {about}");
                match mailer.send_text(address, &subject, body).await {
                    Ok(code) => Outcome::Delivered(code),
                    Err(why) => Outcome::Retry(why),
                }
            }
            Channel::Webhook(r) => {
                let body = match r.format {
                    Format::Json => webhook::test_event(workspace, crate::domain::now()),
                    f => webhook::chat_test(f, about),
                };
                post(senders, r, &serde_json::to_vec(&body).unwrap_or_default()).await
            }
        }
    }
}

/// POSTs `body` to `r`, signed at the real time (the receiver checks the signature's time
/// against its own clock, not the daemon's).
async fn post(senders: &Senders, r: &Receiver, body: &[u8]) -> Outcome {
    let client = senders.clients.for_receiver(r, &senders.notify);
    match webhook::post(client, r, body, crate::domain::now()).await {
        Sent::Delivered(status) => Outcome::Delivered(status.to_string()),
        Sent::Gone => Outcome::Gone,
        Sent::Retry(why) => Outcome::Retry(why),
    }
}
