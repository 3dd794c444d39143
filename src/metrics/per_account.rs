//! The per-account series (four an account at most: the token's expiry, Facebook's data
//! access expiry, the reconnect deadline, whether a person must reconnect it now), written
//! into the exposition text straight from the store's rows at each scrape. Kept as children
//! of the prometheus crate's vectors they were rebuilt at each scrape, copied again by its
//! `gather` and held until the next: at 10,000 accounts (34,000 series) a daemon re-checking
//! them every minute held 130 MiB, against 76 MiB without them (`bench soak`, 2-core VM).

use std::fmt::Write;

use crate::domain::{Custody, InstagramLogin, Platform};
use crate::store::ReconnectRow;

/// One family: its name (with the registry's prefix), its help, and its value for a row
/// (`None`: no sample for that account).
struct Family {
    name: &'static str,
    help: &'static str,
    value: fn(&ReconnectRow, Option<i64>) -> Option<i64>,
}

/// The families, in the order of their names (as the registry's own are written).
const FAMILIES: [Family; 4] = [
    Family {
        name: "socialsyncer_account_needs_reconnect",
        help: "1 when a person must reconnect the account now, else 0",
        value: |r, _| Some(i64::from(r.needs_reconnect)),
    },
    Family {
        name: "socialsyncer_data_access_expiry_timestamp_seconds",
        help: "When each Facebook account's data access expires (Unix time); the owner must log in to the app \
               before then",
        value: |r, _| r.data_access_expires_at,
    },
    Family {
        name: "socialsyncer_reconnect_deadline_timestamp_seconds",
        help: "When each account must be reconnected by a person (Unix time): the access token's expiry if \
               nothing renews it, the refresh token's if it is renewed automatically, Facebook's data-access \
               expiry; absent when there is no such deadline",
        value: |_, deadline| deadline,
    },
    Family {
        name: "socialsyncer_token_expiry_timestamp_seconds",
        help: "When each account's access token expires (Unix time)",
        value: |r, _| r.token_expires_at,
    },
];

/// A label value as the text format wants it: backslash, double quote and line feed escaped
/// (a workspace's name and an account's ID are a tenant's text).
fn escaped(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends the per-account families for `rows` to `out` in the text format (a family
/// without a sample is left out, as the registry leaves out an empty vector); `renewed` says
/// whether a platform's token is renewed automatically.
pub(super) fn write(
    out: &mut String,
    rows: &[ReconnectRow],
    renewed: impl Fn(Platform, Option<InstagramLogin>, bool, Custody) -> bool,
) {
    let deadlines: Vec<Option<i64>> = rows
        .iter()
        .map(|r| {
            crate::health::reconnect_deadline(
                renewed(r.platform, r.instagram_login, r.has_refresh_token, r.custody),
                r.token_expires_at,
                r.refresh_expires_at,
                r.data_access_expires_at,
                r.refresh_failing,
            )
        })
        .collect();
    for f in &FAMILIES {
        let mut header = false;
        for (r, deadline) in rows.iter().zip(&deadlines) {
            let Some(v) = (f.value)(r, *deadline) else { continue };
            if !header {
                let _ = write!(out, "# HELP {} {}\n# TYPE {} gauge\n", f.name, f.help, f.name);
                header = true;
            }
            out.push_str(f.name);
            out.push_str("{account_id=\"");
            escaped(&r.account_id, out);
            out.push_str("\",platform=\"");
            out.push_str(r.platform.as_str());
            out.push_str("\",workspace=\"");
            escaped(&r.workspace, out);
            let _ = writeln!(out, "\"}} {v}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(account_id: &str, workspace: &str) -> ReconnectRow {
        ReconnectRow {
            platform: Platform::Facebook,
            account_id: account_id.into(),
            workspace: workspace.into(),
            needs_reconnect: true,
            token_expires_at: Some(1_767_225_600),
            refresh_expires_at: None,
            data_access_expires_at: None,
            refresh_failing: false,
            has_refresh_token: false,
            custody: Custody::Socialsyncer,
            instagram_login: None,
        }
    }

    #[test]
    fn a_tenants_text_is_escaped_and_an_empty_family_is_left_out() {
        let mut out = String::new();
        write(&mut out, &[row("7", "a\"b\\c\nd")], |_, _, _, _| false);
        let labels = "{account_id=\"7\",platform=\"facebook\",workspace=\"a\\\"b\\\\c\\nd\"}";
        assert!(
            out.contains(&format!("socialsyncer_account_needs_reconnect{labels} 1\n")),
            "{out}"
        );
        assert!(out.contains(&format!(
            "socialsyncer_token_expiry_timestamp_seconds{labels} 1767225600\n"
        )));
        // Not renewed: the deadline is the token's expiry.
        assert!(out.contains(&format!(
            "socialsyncer_reconnect_deadline_timestamp_seconds{labels} 1767225600\n"
        )));
        assert!(!out.contains("data_access"), "no row has a data-access expiry: {out}");
        assert_eq!(out.lines().filter(|l| l.starts_with("# TYPE")).count(), 3);
    }
}
