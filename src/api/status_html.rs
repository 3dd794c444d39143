//! The status pages' HTML, from what `status_page` read: pure, every text a tenant or a
//! platform wrote escaped, no script, no style attribute (the policy allows only the
//! built-in stylesheet), nothing fetched from anywhere.

use std::fmt::Write;

use super::html::{esc, html_page};
use crate::domain::{Account, Health, UnixTime};
use crate::health::timeline::{Availability, Day, Incident};
use crate::store::{HistoryEntry, StatusOverview};

/// Days a bar and a band cover.
pub const DAYS: usize = 90;

/// One account on a workspace's page.
pub struct Line {
    /// The account, as read now.
    pub account: Account,
    /// Its last 90 days, oldest first.
    pub cells: Vec<Day>,
    /// Its availability over 90 days.
    pub availability: Availability,
    /// Its reconnect link, when it needs one and connecting is on.
    pub reconnect_url: Option<String>,
}

/// A workspace's page.
pub struct WorkspacePage<'a> {
    /// Counts, last sweep.
    pub overview: &'a StatusOverview,
    /// The accounts that need a person (first ones), page 1 only.
    pub people: &'a [Line],
    /// This page's accounts, worst first.
    pub lines: &'a [Line],
    /// 1-based page, and how many.
    pub page: i64,
    /// Pages in all.
    pub pages: i64,
    /// Accounts a page.
    pub per_page: i64,
    /// The daemon's problems this workspace should know of.
    pub problems: &'a [String],
    /// The share token (links to the account pages are relative to the page).
    pub token: &'a str,
    /// When it was made.
    pub now: UnixTime,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn parts(t: UnixTime) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(t).ok()
}

/// `2 Dec`.
pub fn day(t: UnixTime) -> String {
    parts(t).map_or_else(String::new, |d| {
        format!("{} {}", d.day(), MONTHS[usize::from(u8::from(d.month())) - 1])
    })
}

/// `2 Dec 2026, 16:40 UTC`.
pub fn when(t: UnixTime) -> String {
    parts(t).map_or_else(String::new, |d| {
        format!("{} {}, {:02}:{:02} UTC", day(t), d.year(), d.hour(), d.minute())
    })
}

/// A span in words: `3 d 4 h`, `2 h 5 min`, `40 s`.
pub fn span(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3_600 => format!("{} min", s / 60),
        3_600..86_400 => format!("{} h {} min", s / 3_600, s % 3_600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3_600),
    }
}

/// `in 3 d 4 h` or `2 h 5 min ago`.
fn relative(t: UnixTime, now: UnixTime) -> String {
    if t >= now {
        format!("in {}", span(t - now))
    } else {
        format!("{} ago", span(now - t))
    }
}

fn cell_class(d: Day) -> &'static str {
    match d {
        Day::Before => "b",
        Day::NoData => "n",
        Day::Healthy => "g",
        Day::Warning => "w",
        Day::Incident => "r",
    }
}

fn health_pill(a: &Account) -> String {
    let h = a.state.health;
    let mut out = format!("<span class=\"pill {h}\">{h}</span>");
    if a.state.needs_reconnect {
        out.push_str(" <span class=\"pill person\">needs a person</span>");
    }
    out
}

/// The availability in words: `99.52 % over 90 days`, `100 % since 12 Nov`, `no answer yet`.
pub fn availability_words(a: &Availability) -> String {
    match (a.percent, a.since) {
        (None, _) => "no answer yet".into(),
        (Some(p), None) => format!("{} % over {} days", percent(p), a.days),
        (Some(p), Some(s)) => format!("{} % since {}", percent(p), day(s)),
    }
}

fn percent(p: f64) -> String {
    let s = format!("{p:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The 90 cells of a bar (the last 30 only on a phone), with the date and state of each day
/// that was not simply healthy.
fn bar(cells: &[Day], now: UnixTime) -> String {
    let count = |d: Day| cells.iter().filter(|c| **c == d).count();
    let mut out = format!(
        "<div class=\"bar\" role=\"img\" aria-label=\"{} days: {} healthy, {} warning, {} with an incident, {} without an answer\">",
        cells.len(),
        count(Day::Healthy),
        count(Day::Warning),
        count(Day::Incident),
        count(Day::NoData)
    );
    let first = now - (cells.len() as i64 - 1) * 86_400;
    for (i, c) in cells.iter().enumerate() {
        // A healthy day is a bare cell (most are: the page stays small).
        match c {
            Day::Healthy => out.push_str("<i></i>"),
            Day::Before => out.push_str("<i class=\"b\"></i>"),
            _ => {
                let _ = write!(
                    out,
                    "<i class=\"{}\" title=\"{}: {}\"></i>",
                    cell_class(*c),
                    day(first + i as i64 * 86_400),
                    c.word()
                );
            }
        }
    }
    out.push_str(
        "</div><div class=\"scale\"><span class=\"d\">90 days ago</span><span class=\"p\">30 days ago</span>\
         <span>today</span></div>",
    );
    out
}

/// What the account's problem is, in words safe to show.
fn problem(a: &Account) -> String {
    a.state
        .last_error
        .clone()
        .or_else(|| a.state.recommendations.first().cloned())
        .unwrap_or_else(|| format!("The account is {}.", a.state.health))
}

fn account_href(token: &str, a: &Account) -> String {
    format!("{}/{}/{}", esc(token), a.platform, esc(&a.account_id))
}

fn person_card(l: &Line, token: &str) -> String {
    let a = &l.account;
    let mut out = format!(
        "<div class=\"person-card\"><div class=\"head\"><a href=\"{}\">{}</a><span class=\"muted\">{}</span>{}</div>\
         <p>{}</p>",
        account_href(token, a),
        esc(&a.username),
        a.platform.display_name(),
        health_pill(a),
        esc(&problem(a))
    );
    for r in a.state.recommendations.iter().filter(|r| **r != problem(a)) {
        let _ = write!(out, "<p><strong>What to do:</strong> {}</p>", esc(r));
    }
    if let Some(url) = &l.reconnect_url {
        let _ = write!(
            out,
            "<a class=\"button\" href=\"{}\" rel=\"noreferrer\">Reconnect {}</a>",
            esc(url),
            esc(&a.username)
        );
    }
    out.push_str("</div>");
    out
}

fn count_of(counts: &[(Health, i64)], h: Health) -> i64 {
    counts.iter().filter(|(c, _)| *c == h).map(|(_, n)| n).sum()
}

fn tiles(items: &[(&str, &str, i64)]) -> String {
    let mut out = String::from("<div class=\"tiles\">");
    for (class, label, n) in items {
        let _ = write!(out, "<div class=\"tile {class}\"><b>{n}</b>{label}</div>");
    }
    out.push_str("</div>");
    out
}

/// The headline and its card class for a workspace's counts.
fn headline(total: i64, counts: &[(Health, i64)], needs_person: i64) -> (String, &'static str) {
    let n = |h| count_of(counts, h);
    match (total, needs_person, n(Health::Unhealthy), n(Health::Warning)) {
        (0, ..) => ("No accounts are connected yet".into(), ""),
        (_, p, _, _) if p > 0 => (
            format!(
                "{p} account{} need{} a person",
                plural(p),
                if p == 1 { "s" } else { "" }
            ),
            "bad",
        ),
        (_, _, u, _) if u > 0 => (format!("{u} account{} unhealthy", plural(u)), "bad"),
        (_, _, _, w) if w > 0 => (format!("{w} account{} with a warning", plural(w)), ""),
        (t, ..) if n(Health::Healthy) == t => (format!("All {t} accounts are healthy"), "ok"),
        (t, ..) => (format!("{} of {t} accounts are healthy", n(Health::Healthy)), ""),
    }
}

fn plural(n: i64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A workspace's status page.
pub fn workspace(p: &WorkspacePage) -> String {
    let o = p.overview;
    let total: i64 = o.counts.iter().map(|(_, n)| n).sum();
    let (title, class) = headline(total, &o.counts, o.needs_person);
    let mut body = format!(
        "<p class=\"muted\">Workspace <strong>{}</strong> · {total} accounts</p>",
        esc(&o.name)
    );
    body.push_str(&tiles(&[
        ("healthy", "healthy", count_of(&o.counts, Health::Healthy)),
        ("warning", "warning", count_of(&o.counts, Health::Warning)),
        ("unhealthy", "unhealthy", count_of(&o.counts, Health::Unhealthy)),
        ("unknown", "unknown", count_of(&o.counts, Health::Unknown)),
        ("person", "need a person", o.needs_person),
    ]));
    let _ = write!(
        body,
        "<p class=\"sweep\">Last check: {}. Next check due: {}.</p>",
        o.last_checked_at.map_or_else(
            || "none yet".into(),
            |t| format!("{} ({})", when(t), relative(t, p.now))
        ),
        o.next_check_at
            .map_or_else(|| "none".into(), |t| format!("{} ({})", when(t), relative(t, p.now))),
    );
    body.push_str("<h2>socialsyncer itself</h2>");
    if p.problems.is_empty() {
        body.push_str("<p class=\"problems healthy\">No problems: the daemon checks on schedule.</p>");
    } else {
        body.push_str("<ul class=\"problems\">");
        for pr in p.problems {
            let _ = write!(body, "<li class=\"warning\">{}</li>", esc(pr));
        }
        body.push_str("</ul>");
    }
    if !p.people.is_empty() {
        let _ = write!(body, "<h2 class=\"person\">Needs a person ({})</h2>", o.needs_person);
        body.push_str("<section class=\"people\">");
        for l in p.people {
            body.push_str(&person_card(l, p.token));
        }
        body.push_str("</section>");
        if o.needs_person > p.people.len() as i64 {
            let _ = write!(
                body,
                "<p class=\"muted\">And {} more, first in the list below.</p>",
                o.needs_person - p.people.len() as i64
            );
        }
    }
    let first = (p.page - 1) * p.per_page;
    let _ = write!(
        body,
        "<h2>Accounts{}</h2><ul class=\"accounts\">",
        if p.pages > 1 {
            format!(" {}–{} of {total}", first + 1, first + p.lines.len() as i64)
        } else {
            String::new()
        }
    );
    for l in p.lines {
        let a = &l.account;
        let _ = write!(
            body,
            "<li class=\"account\" data-health=\"{}\" data-person=\"{}\"><div class=\"head\"><a href=\"{}\">{}</a>\
             <span class=\"muted\">{}</span>{}<span class=\"avail\">{}</span></div>{}",
            a.state.health,
            a.state.needs_reconnect || a.state.health == Health::Unhealthy,
            account_href(p.token, a),
            esc(&a.username),
            a.platform.display_name(),
            health_pill(a),
            availability_words(&l.availability),
            bar(&l.cells, p.now)
        );
        if a.state.health != Health::Healthy
            && !p.people.iter().any(|l| l.account.id == a.id)
            && let Some(r) = a.state.recommendations.first()
        {
            let _ = write!(body, "<p class=\"muted\">{}</p>", esc(r));
        }
        body.push_str("</li>");
    }
    body.push_str("</ul>");
    if p.pages > 1 {
        let link = |n: i64, label: &str| format!("<a href=\"{}?page={n}\">{label}</a>", esc(p.token));
        let _ = write!(
            body,
            "<nav class=\"pages\"><span>{}</span><span>page {} of {}</span><span>{}</span></nav>",
            if p.page > 1 {
                link(p.page - 1, "← previous")
            } else {
                String::new()
            },
            p.page,
            p.pages,
            if p.page < p.pages {
                link(p.page + 1, "next →")
            } else {
                String::new()
            },
        );
    }
    let _ = write!(
        body,
        "<p class=\"muted\"><small>As of {}. Each bar is a day (UTC): green healthy, amber a warning, red an incident \
         (unhealthy or needing a person), grey no answer.</small></p>",
        when(p.now)
    );
    html_page(&title, class, "wide", &body)
}

/// One account's page.
pub struct AccountPage<'a> {
    /// The account, as read now.
    pub account: &'a Account,
    /// Its state over the last 90 days: spans of one state, oldest first.
    pub spans: &'a [(UnixTime, UnixTime, Day)],
    /// Its incidents in the last 90 days, oldest first.
    pub incidents: &'a [Incident],
    /// Availability over 7, 30 and 90 days.
    pub availability: &'a [Availability],
    /// Its checks of the last day, newest first.
    pub checks: &'a [HistoryEntry],
    /// When it must be reconnected by, if anything makes it.
    pub reconnect_by: Option<UnixTime>,
    /// Its reconnect link, when it needs one and connecting is on.
    pub reconnect_url: Option<String>,
    /// The share token (the link back is relative).
    pub token: &'a str,
    /// When it was made.
    pub now: UnixTime,
}

/// The SVG band of an account's last 90 days: one rectangle a span of one state.
fn band(spans: &[(UnixTime, UnixTime, Day)], now: UnixTime) -> String {
    let start = now - DAYS as i64 * 86_400;
    let x = |t: UnixTime| (t.max(start) - start) as f64 * 900.0 / (DAYS as f64 * 86_400.0);
    let mut out = String::from(
        "<svg class=\"band\" viewBox=\"0 0 900 24\" preserveAspectRatio=\"none\" role=\"img\" \
         aria-label=\"The account's health over the last 90 days\" xmlns=\"http://www.w3.org/2000/svg\">",
    );
    let _ = write!(out, "<rect class=\"b\" x=\"0\" y=\"0\" width=\"900\" height=\"24\"/>");
    for (s, e, d) in spans {
        // A span of minutes still shows (3 of 900 units), kept inside the band.
        let w = (x(*e) - x(*s)).max(3.0);
        let x0 = x(*s).min(900.0 - w);
        let _ = write!(
            out,
            "<rect class=\"{}\" x=\"{x0:.2}\" y=\"0\" width=\"{w:.2}\" height=\"24\"><title>{}: {} to {}</title></rect>",
            cell_class(*d),
            d.word(),
            when(*s),
            when(*e)
        );
    }
    out.push_str("</svg><div class=\"scale\"><span>");
    out.push_str(&day(start));
    out.push_str("</span><span>today</span></div>");
    out
}

fn expiry(t: Option<UnixTime>, now: UnixTime, none: &str) -> String {
    t.map_or_else(|| none.to_owned(), |t| format!("{} ({})", when(t), relative(t, now)))
}

/// One account's status page.
pub fn account(p: &AccountPage) -> String {
    let a = p.account;
    let title = format!("{} · {}", a.username, a.platform.display_name());
    let class = match a.state.health {
        Health::Unhealthy => "bad",
        _ if a.state.needs_reconnect => "bad",
        Health::Healthy => "ok",
        _ => "",
    };
    let mut body = format!(
        "<p><a href=\"../../{}\">← all accounts</a></p><p>{} <span class=\"muted\">{}</span></p>",
        esc(p.token),
        health_pill(a),
        esc(&a.account_id)
    );
    if a.state.health != Health::Healthy || a.state.needs_reconnect {
        let _ = write!(body, "<p>{}</p>", esc(&problem(a)));
    }
    for r in a.state.recommendations.iter().filter(|r| **r != problem(a)) {
        let _ = write!(body, "<p><strong>What to do:</strong> {}</p>", esc(r));
    }
    if let Some(url) = &p.reconnect_url {
        let _ = write!(
            body,
            "<p><a class=\"button\" href=\"{}\" rel=\"noreferrer\">Reconnect this account</a></p>",
            esc(url)
        );
    }
    body.push_str("<h2>Availability</h2><div class=\"tiles\">");
    for av in p.availability {
        let figure = av
            .percent
            .map_or_else(|| "–".to_owned(), |v| format!("{} %", percent(v)));
        let note = match av.since {
            Some(s) => format!("{} days: since {}", av.days, day(s)),
            None => format!("{} days", av.days),
        };
        let _ = write!(body, "<div class=\"tile\"><b>{figure}</b>{note}</div>");
    }
    body.push_str("</div><h2>The last 90 days</h2>");
    body.push_str(&band(p.spans, p.now));
    body.push_str("<h2>Incidents</h2>");
    if p.incidents.is_empty() {
        body.push_str("<p class=\"muted\">None in the last 90 days.</p>");
    } else {
        body.push_str(
            "<table class=\"incidents stack\"><thead><tr><th>Began</th><th>Ended</th><th>Lasted</th><th class=\"wide\">Cause</th></tr></thead><tbody>",
        );
        for i in p.incidents.iter().rev() {
            let _ = write!(
                body,
                "<tr><td data-label=\"Began\">{}</td><td data-label=\"Ended\">{}</td><td data-label=\"Lasted\">{}</td>\
                 <td data-label=\"Cause\">{}</td></tr>",
                when(i.start),
                i.end.map_or_else(|| "ongoing".into(), when),
                span(i.end.unwrap_or(p.now) - i.start),
                esc(&i.cause)
            );
        }
        body.push_str("</tbody></table>");
    }
    let _ = write!(
        body,
        "<h2>Tokens</h2><dl class=\"facts\"><dt>Access token expires</dt><dd>{}</dd>\
         <dt>Refresh token expires</dt><dd>{}</dd>",
        expiry(a.token_expires_at, p.now, "never, or not said by the platform"),
        expiry(a.refresh_expires_at, p.now, "no expiry known"),
    );
    if let Some(t) = a.state.data_access_expires_at {
        let _ = write!(
            body,
            "<dt>Data access expires</dt><dd>{}</dd>",
            expiry(Some(t), p.now, "")
        );
    }
    let _ = write!(
        body,
        "<dt>Reconnect by</dt><dd>{}</dd><dt>Connected</dt><dd>{}</dd><dt>Next check</dt><dd>{}</dd></dl>",
        if a.state.needs_reconnect {
            "now: its token no longer works".to_owned()
        } else {
            expiry(p.reconnect_by, p.now, "no deadline: its token is renewed automatically")
        },
        when(a.connected_at),
        expiry(Some(a.next_check_at), p.now, ""),
    );
    let _ = write!(body, "<h2>Checks of the last day ({})</h2>", p.checks.len());
    if p.checks.is_empty() {
        body.push_str("<p class=\"muted\">None in the last day.</p>");
    } else {
        body.push_str(
            "<table class=\"checks stack\"><thead><tr><th>At</th><th>What</th><th>Health</th><th class=\"wide\">Detail</th>\
             </tr></thead><tbody>",
        );
        for c in p.checks {
            let what = match &c.outcome {
                Some(o) => format!("{} ({})", c.event.as_str(), o.as_str()),
                None => c.event.as_str().to_owned(),
            };
            let _ = write!(
                body,
                "<tr><td data-label=\"At\">{}</td><td data-label=\"What\">{}</td>\
                 <td data-label=\"Health\" class=\"{}\">{}</td><td data-label=\"Detail\">{}</td></tr>",
                when(c.at),
                esc(&what),
                c.health,
                c.health,
                esc(c.detail.as_deref().unwrap_or(""))
            );
        }
        body.push_str("</tbody></table>");
    }
    let _ = write!(body, "<p class=\"muted\"><small>As of {}.</small></p>", when(p.now));
    html_page(&title, class, "wide", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_for_times_spans_and_availability() {
        assert_eq!(when(1_796_228_400), "2 Dec 2026, 16:20 UTC");
        assert_eq!(day(1_796_228_400), "2 Dec");
        assert_eq!(span(59), "59 s");
        assert_eq!(span(3 * 86_400 + 4 * 3_600 + 5), "3 d 4 h");
        let a = Availability {
            days: 90,
            percent: Some(99.5),
            since: None,
        };
        assert_eq!(availability_words(&a), "99.5 % over 90 days");
        let young = Availability {
            since: Some(1_796_228_400),
            percent: Some(100.0),
            ..a
        };
        assert_eq!(availability_words(&young), "100 % since 2 Dec");
        assert_eq!(
            availability_words(&Availability {
                days: 7,
                percent: None,
                since: None
            }),
            "no answer yet"
        );
    }
}
