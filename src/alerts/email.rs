//! Email delivery of the alert outbox: one message per workspace per delivery round (so the
//! events of one sweep arrive together), text and HTML, retried with backoff while the SMTP
//! server is down, marked sent only once the server accepted the message.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use crate::config::{Config, ConfigError, read_secret_file};
use crate::domain::PendingAlert;
use crate::domain::{self, Health};

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
        if let Some(ca) = &e.ca_file {
            builder = builder.tls(tls_with_ca(url, ca)?);
        }
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

    /// A message from the configured sender to `to`, with its `Message-ID` and `Date`.
    fn message(&self, to: Mailbox, subject: &str) -> lettre::message::MessageBuilder {
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(None)
            .date_now()
    }

    /// Sends `events` of `workspace` to `to` as one alert email (text and HTML).
    pub async fn send_alert(
        &self,
        to: Mailbox,
        workspace: &str,
        events: &[PendingAlert],
        host: &str,
    ) -> Result<(), MailFailure> {
        let (subject, text, html) = compose(workspace, events, host);
        let message = self
            .message(to, &subject)
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| MailFailure::Unbuildable(e.to_string()))?;
        self.transport.send(message).await.map(|_| ()).map_err(|e| {
            let msg = domain::truncate_for_message(&e.to_string());
            if e.is_permanent() {
                MailFailure::Permanent(msg)
            } else {
                MailFailure::Transient(msg)
            }
        })
    }

    /// Sends a plain-text message to `to`; the server's answer code, or why it failed.
    pub async fn send_text(&self, to: &str, subject: &str, body: String) -> Result<String, String> {
        let to: Mailbox = to.parse().map_err(|e| format!("not an email address: {e}"))?;
        let message = self
            .message(to, subject)
            .body(body)
            .map_err(|e| format!("could not be built: {e}"))?;
        match self.transport.send(message).await {
            Ok(r) => Ok(r.code().to_string()),
            Err(e) => Err(domain::truncate_for_message(&e.to_string())),
        }
    }
}

/// The TLS mode of `url` (`smtps://` or `?tls=required`/`opportunistic`) trusting the CA in
/// `ca` besides the usual roots.
fn tls_with_ca(url: &str, ca: &std::path::Path) -> Result<Tls, ConfigError> {
    let err = |m: String| ConfigError(format!("email.ca_file: {m}"));
    let path = crate::config::resolve_credential_path(ca);
    let pem = std::fs::read(&path).map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
    let cert =
        Certificate::from_pem(&pem).map_err(|e| err(format!("{} is not a PEM certificate: {e}", path.display())))?;
    let parsed = url::Url::parse(url).map_err(|e| ConfigError(format!("email.smtp_url: {e}")))?;
    let host = parsed.host_str().unwrap_or_default().to_owned();
    let params = TlsParameters::builder(host)
        .add_root_certificate(cert)
        .build()
        .map_err(|e| err(e.to_string()))?;
    let mode = parsed
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    match (parsed.scheme(), mode.as_deref()) {
        ("smtps", _) => Ok(Tls::Wrapper(params)),
        ("smtp", Some("required")) => Ok(Tls::Required(params)),
        ("smtp", Some("opportunistic")) => Ok(Tls::Opportunistic(params)),
        _ => Err(err("applies only to smtps:// or smtp://...?tls=required".into())),
    }
}

/// Why an alert email did not go.
#[derive(Debug, Clone)]
pub enum MailFailure {
    /// The server refused the recipient for good.
    Permanent(String),
    /// The server or the connection failed for now: retry.
    Transient(String),
    /// The message could not be built (a header the builder refuses).
    Unbuildable(String),
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// "2 unhealthy, 1 warning": the events' accounts counted by state, worst first.
fn counts_line(events: &[&PendingAlert]) -> String {
    let mut counts: Vec<(Health, usize)> = Vec::new();
    for e in events {
        match counts.iter_mut().find(|(s, _)| *s == e.severity) {
            Some((_, n)) => *n += 1,
            None => counts.push((e.severity, 1)),
        }
    }
    counts.sort_by_key(|(s, _)| std::cmp::Reverse(s.severity()));
    counts
        .iter()
        .map(|(s, n)| {
            if *s == Health::Healthy {
                format!("{n} recovered")
            } else {
                format!("{n} {s}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn badge_colour(severity: Health) -> &'static str {
    match severity {
        Health::Unhealthy => "#b42318",
        Health::Unknown => "#475467",
        Health::Warning => "#b54708",
        Health::Healthy => "#067647",
    }
}

/// `events` worst first, then by account: the order of every channel's lines.
pub fn worst_first(events: &[PendingAlert]) -> Vec<&PendingAlert> {
    let mut sorted: Vec<&PendingAlert> = events.iter().collect();
    sorted.sort_by(|a, b| {
        b.severity
            .severity()
            .cmp(&a.severity.severity())
            .then_with(|| (&a.platform, &a.account_id, a.id).cmp(&(&b.platform, &b.account_id, b.id)))
    });
    sorted
}

/// Subject, text and HTML of one workspace's email, events worst first; `host` names the
/// installation that wrote it. The HTML is one column at most 600 px wide (a card an
/// event), with a viewport tag: it reads on a phone as on a desktop.
pub fn compose(workspace: &str, events: &[PendingAlert], host: &str) -> (String, String, String) {
    let sorted = worst_first(events);
    let mut accounts: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.platform.as_str(), e.account_id.as_str()))
        .collect();
    accounts.sort_unstable();
    accounts.dedup();
    let n = accounts.len();
    let plural = if n == 1 { "account" } else { "accounts" };
    let worst = sorted.first().map(|e| e.severity.as_str()).unwrap_or("healthy");
    // One account: the subject names it (username and ID).
    let who = match sorted.first() {
        Some(e) if n == 1 => e.who(),
        _ => format!("{n} {plural}"),
    };
    let subject = if worst == Health::Healthy.as_str() {
        format!("[socialsyncer] {workspace}: {who} recovered")
    } else {
        let verb = if n == 1 { "needs" } else { "need" };
        format!("[socialsyncer] {workspace}: {who} {verb} attention (worst: {worst})")
    };
    let counts = counts_line(&sorted);
    let footer = format!(
        "Sent by socialsyncer {} on {host}. The account health API shows the details: GET /v1/accounts/health",
        env!("CARGO_PKG_VERSION")
    );
    let mut text = format!("Workspace {workspace}: {counts}.\n\n");
    for e in &sorted {
        text.push_str(&format!("- {} [{}]: {} {}\n", e.who(), e.severity, e.problem, e.action));
        if let Some(u) = &e.reconnect_url {
            text.push_str(&format!("  Reconnect: {u}\n"));
        }
    }
    text.push_str(&format!("\n{footer}\n"));

    let mut html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title></head>\n\
         <body style=\"margin:0;padding:12px;background:#f9fafb;font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#101828\">\n\
         <div style=\"max-width:600px;margin:0 auto;background:#ffffff;border:1px solid #eaecf0;border-radius:8px;padding:16px\">\n\
         <h1 style=\"font-size:20px;margin:0 0 4px;overflow-wrap:anywhere\">Workspace {}</h1>\n\
         <p style=\"margin:0 0 16px;color:#475467;font-size:15px\">{}</p>\n",
        escape(&subject),
        escape(workspace),
        escape(&counts),
    );
    for e in &sorted {
        let reconnect = match &e.reconnect_url {
            Some(u) => format!(
                "<p style=\"margin:10px 0 0\"><a href=\"{}\" style=\"display:inline-block;padding:10px 16px;border-radius:6px;\
                 background:#1570ef;color:#ffffff;text-decoration:none;font-weight:600\">Reconnect {}</a></p>",
                escape(u),
                escape(&e.username)
            ),
            None => String::new(),
        };
        html.push_str(&format!(
            "<div style=\"border-top:1px solid #eaecf0;padding:12px 0;font-size:15px;line-height:1.45;overflow-wrap:anywhere\">\
             <p style=\"margin:0\"><span style=\"display:inline-block;padding:2px 8px;border-radius:10px;color:#fff;\
             background:{}\">{}</span> <b>{}</b></p>\
             <p style=\"margin:2px 0 8px;color:#475467;font-size:13px\">{} · {}</p>\
             <p style=\"margin:0\">{}</p>\
             <p style=\"margin:6px 0 0;color:#344054\"><b>What to do:</b> {}</p>{reconnect}</div>\n",
            badge_colour(e.severity),
            escape(e.severity.as_str()),
            escape(&e.username),
            escape(e.platform.display_name()),
            escape(&e.account_id),
            escape(&e.problem),
            escape(&e.action),
        ));
    }
    html.push_str(&format!(
        "<p style=\"margin:16px 0 0;color:#667085;font-size:12px\">{}</p>\n</div>\n</body></html>\n",
        escape(&footer)
    ));
    (subject, text, html)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(platform: &str, id: &str, severity: &str) -> PendingAlert {
        PendingAlert {
            reconnect_url: None,
            id: 1,
            workspace_id: domain::WorkspaceId(1),
            workspace: "acme".into(),
            account_ref: domain::AccountRef(1),
            kind: domain::AlertKind::TokenInvalid,
            severity: severity.parse().unwrap(),
            platform: platform.parse().unwrap(),
            account_id: id.into(),
            username: "<b>me</b>".into(),
            problem: "The token is no longer valid.".into(),
            action: "Reconnect the account.".into(),
            attempts: 0,
            dedup_key: format!("1/{id}/token_invalid"),
            created_at: 1_800_000_000,
            reconnect_by: None,
        }
    }

    #[test]
    fn subject_counts_accounts_and_names_the_worst_state() {
        let events = [
            ev("twitter", "1", "warning"),
            ev("twitter", "1", "unhealthy"),
            ev("tiktok", "x", "warning"),
        ];
        let (subject, text, html) = compose("acme", &events, "host1");
        assert_eq!(
            subject,
            "[socialsyncer] acme: 2 accounts need attention (worst: unhealthy)"
        );
        assert!(text.contains("X (Twitter) <b>me</b> (1) [unhealthy]"));
        assert!(html.contains("&lt;b&gt;me&lt;/b&gt;") && !html.contains("<b>me</b>"));
        let (subject, ..) = compose("acme", &[ev("tiktok", "x", "healthy")], "host1");
        assert_eq!(subject, "[socialsyncer] acme: TikTok <b>me</b> (x) recovered");
        assert!(html.contains("name=\"viewport\"") && html.contains("max-width:600px") && !html.contains("<table"));
    }
}
