//! What receivers get: socialsyncer's JSON event, and Slack, Discord and Teams messages with
//! the email's wording.

use serde_json::{Value, json};

use super::Format;
use crate::domain::PendingAlert;
use crate::domain::{Health, rfc3339};

/// One event in socialsyncer's JSON format.
pub fn json_event(e: &PendingAlert) -> Value {
    let mut v = json!({
        "id": e.dedup_key,
        "type": e.kind.event_type(),
        "kind": e.kind.to_string(),
        "occurredAt": rfc3339(e.created_at),
        "workspace": e.workspace,
        "account": {
            "platform": e.platform.as_str(),
            "accountId": e.account_id,
            "username": e.username,
        },
        "health": e.severity.as_str(),
        "problem": e.problem,
        "recommendations": [e.action],
    });
    if let Some(u) = &e.reconnect_url {
        v["reconnectUrl"] = json!(u);
    }
    match (e.reconnect_by, &e.kind) {
        // New tokens: their expiry, not a deadline (and never a token).
        (Some(t), crate::domain::AlertKind::TokensRefreshed) => v["expiresAt"] = json!(rfc3339(t)),
        (Some(t), _) => v["reconnectBy"] = json!(rfc3339(t)),
        (None, _) => {}
    }
    v
}

/// The test message's JSON event.
pub fn test_event(workspace: &str, now: i64) -> Value {
    json!({
        "id": format!("test:{workspace}:{now}"),
        "type": "test",
        "occurredAt": rfc3339(now),
        "workspace": workspace,
        "message": "A test message from socialsyncer: this receiver is set up.",
    })
}

pub(super) fn headline(workspace: &str, events: &[&PendingAlert]) -> String {
    let (subject, _, _) =
        crate::alerts::email::compose(workspace, &events.iter().map(|e| (*e).clone()).collect::<Vec<_>>(), "");
    subject
}

/// One event's line: the account (username and ID), its state, the problem, what to do.
pub(super) fn line(e: &PendingAlert) -> String {
    format!("{} [{}]: {} {}", e.who(), e.severity, e.problem, e.action)
}

pub(super) fn colour(h: Health) -> u32 {
    match h {
        Health::Unhealthy => 0xb4_2318,
        Health::Unknown => 0x47_5467,
        Health::Warning => 0xb5_4708,
        Health::Healthy => 0x06_7647,
    }
}

/// One workspace's events of a round as one chat message (the email's subject and lines).
/// The events are sorted worst first, as in the email.
pub fn chat_message(format: Format, workspace: &str, events: &[&PendingAlert], host: &str) -> Value {
    let owned: Vec<PendingAlert> = events.iter().map(|e| (*e).clone()).collect();
    let sorted = crate::alerts::email::worst_first(&owned);
    let events = sorted.as_slice();
    let title = headline(workspace, events);
    let footer = format!("Sent by socialsyncer on {host}");
    match format {
        Format::Slack | Format::Json => {
            let mut blocks =
                vec![json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&title, 150)}})];
            for e in events.iter().take(45) {
                let mut section = slack_section(&line(e));
                if let Some(u) = &e.reconnect_url {
                    section["accessory"] = json!({"type": "button", "text": {"type": "plain_text", "text": truncate(&format!("Reconnect {}", e.username), 75)}, "url": u});
                }
                blocks.push(section);
            }
            blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": slack_escape(&footer), "verbatim": true}]}));
            json!({"text": slack_escape(&title), "blocks": blocks})
        }
        Format::Discord => {
            let embeds: Vec<Value> = events
                .iter()
                .take(10)
                .map(|e| {
                    let mut embed = json!({
                        "title": truncate(&markdown_escape(&format!("{} [{}]", e.who(), e.severity)), 256),
                        "description": truncate(&markdown_escape(&format!("{} {}", e.problem, e.action)), 4096),
                        "color": colour(e.severity),
                    });
                    // The embed's title links to the reconnect link.
                    if let Some(u) = &e.reconnect_url {
                        embed["url"] = json!(u);
                    }
                    embed
                })
                .collect();
            json!({"content": truncate(&markdown_escape(&title), 2000), "embeds": embeds, "allowed_mentions": {"parse": []}})
        }
        Format::Teams => {
            let mut body = vec![
                json!({"type": "TextBlock", "text": markdown_escape(&title), "weight": "Bolder", "size": "Medium", "wrap": true}),
            ];
            for e in events {
                body.push(json!({"type": "TextBlock", "text": markdown_escape(&line(e)), "wrap": true}));
            }
            body.push(json!({"type": "TextBlock", "text": markdown_escape(&footer), "isSubtle": true, "size": "Small", "wrap": true}));
            let mut card = teams_card(body);
            let actions: Vec<Value> = events
                .iter()
                .filter_map(|e| {
                    e.reconnect_url.as_ref().map(|u| {
                        json!({"type": "Action.OpenUrl", "title": truncate(&format!("Reconnect {} ({})", e.username, e.account_id), 40), "url": u})
                    })
                })
                .take(5)
                .collect();
            if !actions.is_empty() {
                card["attachments"][0]["content"]["actions"] = json!(actions);
            }
            card
        }
    }
}

/// The test message in a chat format.
pub fn chat_test(format: Format, about: &str) -> Value {
    let text = format!("socialsyncer test message for {about}: this receiver is set up.");
    match format {
        Format::Slack | Format::Json => {
            json!({"text": slack_escape(&text), "blocks": [slack_section(&text)]})
        }
        Format::Discord => json!({"content": markdown_escape(&text), "allowed_mentions": {"parse": []}}),
        Format::Teams => teams_card(vec![
            json!({"type": "TextBlock", "text": markdown_escape(&text), "wrap": true}),
        ]),
    }
}

/// A Teams Workflows message holding one Adaptive Card with `body`.
pub(super) fn teams_card(body: Vec<Value>) -> Value {
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
            },
        }],
    })
}

/// A Slack section of `text` shown as written: escaped, and `verbatim` (Slack turns no URL,
/// channel name or mention in it into a link).
fn slack_section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&slack_escape(text), 3000), "verbatim": true}})
}

/// Text for Slack's mrkdwn, shown as written: its three HTML escapes (`&`, `<`, `>`: no
/// `<url|label>` link, mention or quote forms), and each formatting character (`*`, `_`,
/// `~`, `` ` ``) set between zero-width spaces, which mrkdwn has no escape for and which keep
/// it from pairing into bold, italics, strike-through or code.
pub(super) fn slack_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '*' | '_' | '~' | '`' => {
                out.push('\u{200B}');
                out.push(c);
                out.push('\u{200B}');
            }
            c => out.push(c),
        }
    }
    out
}

/// Text for the Markdown of Teams' Adaptive Cards and Discord, shown as written: every ASCII
/// punctuation character Markdown gives a meaning (links, emphasis, lists, headings, code,
/// HTML) escaped with a backslash (CommonMark's escapes), and bare addresses broken with a
/// zero-width space so that no client turns them into links.
pub(super) fn markdown_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if matches!(
            c,
            '\\' | '`'
                | '*'
                | '_'
                | '{'
                | '}'
                | '['
                | ']'
                | '('
                | ')'
                | '#'
                | '+'
                | '-'
                | '.'
                | '!'
                | '|'
                | '<'
                | '>'
                | '~'
                | '&'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out.replace("://", ":\u{200B}//").replace("www\\.", "www\u{200B}\\.")
}

pub(super) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_in_a_username_is_shown_as_written_in_every_chat() {
        let link = "[click](https://evil.example/x) *bold* _it_ ~s~ `c` <@U123> www.evil.example";
        let md = markdown_escape(link);
        assert!(
            md.starts_with("\\[click\\]\\(https:\u{200B}//evil\\.example/x\\)"),
            "{md}"
        );
        for raw in ["[click]", "](", "*bold*", "_it_", "~s~", "`c`", "://", "www."] {
            assert!(!md.contains(raw), "{raw} in {md}");
        }
        assert!(md.contains("\\<@U123\\>"), "{md}");
        let slack = slack_escape(link);
        for raw in ["*bold*", "_it_", "~s~", "`c`", "<@U123>"] {
            assert!(!slack.contains(raw), "{raw} in {slack}");
        }
        assert!(slack.contains("&lt;@U123&gt;"), "{slack}");
        let section = slack_section(link);
        assert_eq!(section["text"]["verbatim"], true, "Slack links nothing in it");
    }
}
