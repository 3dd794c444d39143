//! Unit tests of the address guard and the secrets.

use super::*;

fn allowed(ip: &str, owner: Owner, loopback: bool, private: bool) -> bool {
    let notify = NotifyConfig {
        allow_insecure_loopback: loopback,
        allow_private_networks: private,
        ..NotifyConfig::default()
    };
    ip_allowed(ip.parse().unwrap(), &notify, owner)
}

#[test]
fn only_global_unicast_is_allowed_with_embedded_ipv4_decoded() {
    for ip in [
        "93.184.216.34",
        "2606:2800:220:1:248:1893:25c8:1946",
        // NAT64 and 6to4 of a public address.
        "64:ff9b::5db8:d822",
        "2002:5db8:d822::1",
    ] {
        assert!(allowed(ip, Owner::Tenant, false, false), "{ip}");
    }
    for ip in [
        "127.0.0.1",
        "10.1.2.3",
        "100.64.0.1",
        "169.254.169.254",
        "192.0.0.8",
        "192.88.99.1",
        "198.18.0.1",
        "::1",
        "::",
        "::ffff:10.0.0.1",
        "::a00:1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::7f00:1",
        "2002:a00:1::1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        "2001:db8::1",
        "fec0::1",
        "fc00::1",
        "fe80::1",
        "100::1",
        "ff02::1",
    ] {
        assert!(!allowed(ip, Owner::Tenant, false, false), "{ip}");
        assert!(!allowed(ip, Owner::Operator, false, false), "{ip}");
    }
    // Loopback: the operator's receivers with allow_insecure_loopback; a workspace's
    // only when the operator opens private networks.
    assert!(allowed("127.0.0.1", Owner::Operator, true, false));
    assert!(!allowed("127.0.0.1", Owner::Tenant, true, false));
    assert!(allowed("127.0.0.1", Owner::Tenant, false, true));
}

#[test]
fn made_secrets_are_strong_and_short_or_repetitive_ones_are_not() {
    use secrecy::ExposeSecret;
    assert!(strong_enough(new_secret().expose_secret()));
    assert!(strong_enough(&"0123456789abcdef".repeat(4)));
    for weak in [
        "short",
        "a-caller-chosen-secret",
        &"ab".repeat(100),
        "0123456789abcdef0123456789abcdef",
    ] {
        assert!(!strong_enough(weak), "{weak}");
    }
}

fn event(id: &str, severity: crate::domain::Health) -> crate::domain::PendingAlert {
    crate::domain::PendingAlert {
        id: 1,
        workspace_id: crate::domain::WorkspaceId(1),
        workspace: "acme".into(),
        account_ref: crate::domain::AccountRef(1),
        kind: crate::domain::AlertKind::TokenInvalid,
        severity,
        platform: crate::domain::Platform::Twitter,
        account_id: id.into(),
        username: format!("@shop{id}"),
        problem: "The token no longer works.".into(),
        action: "Reconnect the account.".into(),
        attempts: 0,
        dedup_key: id.into(),
        created_at: 1_800_000_000,
        reconnect_by: None,
        reconnect_url: None,
    }
}

/// Issue 25 item 4: chat messages list the accounts worst first, each line with its state
/// and the account's username beside its ID.
#[test]
fn chat_lines_are_worst_first_and_each_carries_its_state_and_username() {
    use crate::domain::Health;
    let events = [
        event("1", Health::Warning),
        event("2", Health::Unhealthy),
        event("3", Health::Healthy),
    ];
    let refs: Vec<&crate::domain::PendingAlert> = events.iter().collect();
    let want = ["@shop2 (2) [unhealthy]", "@shop1 (1) [warning]", "@shop3 (3) [healthy]"];
    let order = |text: &str| {
        want.iter()
            .map(|w| text.find(w).unwrap_or(usize::MAX))
            .collect::<Vec<_>>()
    };
    for f in [Format::Slack, Format::Discord, Format::Teams] {
        // Markdown escapes aside.
        let text = format::chat_message(f, "acme", &refs, "host")
            .to_string()
            .replace('\\', "");
        let at = order(&text);
        assert!(at.iter().all(|i| *i != usize::MAX) && at.is_sorted(), "{f:?}: {text}");
    }
}
