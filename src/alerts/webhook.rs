//! Webhook receivers: the JSON event format, Slack, Discord and Teams messages, signatures,
//! and outbound requests that reach only the addresses a workspace may use.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::config::NotifyConfig;
use crate::domain::{AlertKind, WorkspaceId};

mod format;

pub use format::{chat_message, chat_test, json_event, test_event};

pub use crate::domain::WebhookFormat as Format;

/// The event types a receiver can ask for: those of every [`AlertKind`], and `test`.
pub fn event_types() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    let labelled = [
        AlertKind::Expiring(String::new()),
        AlertKind::DataAccessExpiring(String::new()),
    ];
    for kind in std::iter::once(labelled[0].clone())
        .chain(AlertKind::plain())
        .chain([labelled[1].clone()])
    {
        if !out.contains(&kind.event_type()) {
            out.push(kind.event_type());
        }
    }
    out.push("test");
    out
}

/// A receiver of alert events.
#[derive(Debug, Clone)]
pub struct Receiver {
    /// Its key in the delivery records: `webhook:<id>` or `hook:<digest of the URL>`.
    pub key: String,
    /// Where to POST.
    pub url: Url,
    /// Message shape.
    pub format: Format,
    /// Event types it wants; `None`: all.
    pub events: Option<Vec<String>>,
    /// Signing secret; `None`: unsigned (an operator receiver without `secret_file`).
    pub secret: Option<SecretString>,
}

impl Receiver {
    /// Whether it wants events of `kind`.
    pub fn wants(&self, kind: &AlertKind) -> bool {
        match &self.events {
            Some(e) => e.iter().any(|t| t == kind.event_type()),
            // Every type but the opt-in ones.
            None => !kind.opt_in(),
        }
    }

    /// The operator's (`hook:` keys) or a workspace's (`webhook:` keys).
    pub fn owner(&self) -> Owner {
        if self.key.starts_with("hook:") {
            Owner::Operator
        } else {
            Owner::Tenant
        }
    }

    /// The URL as it may be logged: scheme and host, never the path (a Slack or Discord URL
    /// holds its credential in the path).
    pub fn label(&self) -> String {
        redacted(&self.url)
    }
}

/// `scheme://host[:port]/…`: a URL without what could be a credential.
pub fn redacted(url: &Url) -> String {
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{}://{}{port}/…", url.scheme(), url.host_str().unwrap_or(""))
}

/// The key of an operator's receiver: a digest of its URL (which may hold a credential).
pub fn operator_key(url: &str) -> String {
    use sha2::Digest;
    format!("hook:{}", hex::encode(&Sha256::digest(url.as_bytes())[..8]))
}

/// Whose receiver a request goes to: the operator's (`[[notify.webhook]]`) or a
/// workspace's. `notify.allow_insecure_loopback` is the operator's alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The operator's receivers.
    Operator,
    /// A workspace's receivers.
    Tenant,
}

/// The one answer for any address a receiver may not use, whatever the reason, so that no
/// answer tells a private name from a missing one.
pub const NOT_ALLOWED: &str = "this address is not allowed";

/// The IPv4 address an IPv6 address carries, where it is one of the forms that route to it:
/// IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::/96` and the
/// local-use `64:ff9b:1::/48`, and 6to4 `2002::/16`.
fn embedded_v4(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    let s = v6.segments();
    let from = |hi: u16, lo: u16| std::net::Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    match s {
        // IPv4-compatible (:: and ::1 are not: they are the unspecified and loopback addresses).
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 => Some(from(hi, lo)),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(from(hi, lo)),
        [0x64, 0xff9b, 1, _, _, _, hi, lo] => Some(from(hi, lo)),
        [0x2002, hi, lo, ..] => Some(from(hi, lo)),
        _ => None,
    }
}

/// Whether an IPv4 address is one the public Internet routes to anyone (global unicast).
fn v4_global(v4: std::net::Ipv4Addr) -> bool {
    let o = v4.octets();
    !(v4.is_private()
        || v4.is_loopback()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (64..128).contains(&o[1])) // shared address space (CGNAT)
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 192 && o[1] == 88 && o[2] == 99) // 6to4 relay anycast
        || (o[0] == 198 && (o[1] == 18 || o[1] == 19)) // benchmarking
        || o[0] >= 240)
}

/// Whether an IPv6 address is global unicast: in `2000::/3`, and none of its special
/// blocks (Teredo `2001::/32`, documentation `2001:db8::/32`, ORCHIDs and the other IETF
/// assignments in `2001::/23`); one that carries an IPv4 address is judged by that.
fn v6_global(v6: std::net::Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(v6) {
        return v4_global(v4);
    }
    let s = v6.segments();
    (s[0] & 0xe000) == 0x2000 // global unicast 2000::/3 (so not fc00::/7, fe80::/10, fec0::/10, 100::/64, ::)
        && !(s[0] == 0x2001 && s[1] < 0x0200) // 2001::/23: Teredo, benchmarking, ORCHID, ...
        && !(s[0] == 0x2001 && s[1] == 0x0db8) // documentation
}

/// Whether the daemon may send to `ip` for a receiver of `owner`: global unicast always;
/// loopback with `allow_private_networks`, or for the operator's receivers with
/// `allow_insecure_loopback`; any other address only with `allow_private_networks`.
pub fn ip_allowed(ip: IpAddr, notify: &NotifyConfig, owner: Owner) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    if ip.is_loopback() {
        return notify.allow_private_networks || (owner == Owner::Operator && notify.allow_insecure_loopback);
    }
    let global = match ip {
        IpAddr::V4(v4) => v4_global(v4),
        IpAddr::V6(v6) => v6_global(v6),
    };
    global || notify.allow_private_networks
}

/// Checks a workspace's receiver URL when it is set: `https://` (or `http://` to a loopback
/// address when the operator lets workspaces reach it), a host, no credentials in the
/// authority, and an address literal the daemon may reach. Host names are checked again at
/// each send. An address refused for any reason answers [`NOT_ALLOWED`].
pub fn validate_url(raw: &str, notify: &NotifyConfig) -> Result<Url, String> {
    let shown = crate::domain::truncate_for_message(raw);
    let url = Url::parse(raw.trim()).map_err(|e| format!("'{shown}' is not a URL ({e})"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("a webhook URL must not carry a user name or password".into());
    }
    let Some(host) = url.host() else {
        return Err(format!("'{shown}' has no host"));
    };
    let literal: Option<IpAddr> = match host {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(d) if d.eq_ignore_ascii_case("localhost") => Some(IpAddr::from([127, 0, 0, 1])),
        url::Host::Domain(_) => None,
    };
    let loopback_ok = notify.allow_insecure_loopback && notify.allow_private_networks;
    match url.scheme() {
        "https" => {}
        "http" if loopback_ok && literal.is_some_and(|ip| ip.is_loopback()) => {}
        "http" => {
            return Err(format!("'{}' must use https://", redacted(&url)));
        }
        other => return Err(format!("'{other}://' is not a webhook scheme: use https://")),
    }
    if let Some(ip) = literal
        && !ip_allowed(ip, notify, Owner::Tenant)
    {
        return Err(format!("{}: {NOT_ALLOWED}", redacted(&url)));
    }
    Ok(url)
}

/// Resolves host names for webhook requests and refuses the addresses the daemon may not
/// reach, at connection time (so a name that changes its answer cannot slip past a check).
/// A name that does not resolve, or resolves only to refused addresses, gets one answer.
struct GuardedResolver {
    allow_loopback: bool,
    allow_private: bool,
    owner: Owner,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let owner = self.owner;
        let notify = NotifyConfig {
            allow_insecure_loopback: self.allow_loopback,
            allow_private_networks: self.allow_private,
            ..NotifyConfig::default()
        };
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host.as_str(), 0)).await {
                Ok(a) => a.collect(),
                Err(_) => Vec::new(),
            };
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| ip_allowed(a.ip(), &notify, owner))
                .collect();
            if allowed.is_empty() {
                return Err(NOT_ALLOWED.into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// The webhook client for receivers of `owner`: no proxy (a proxy would resolve the name
/// and the guard would see only the proxy), no redirects, a 5 s limit, and the address
/// guard.
pub fn client(notify: &NotifyConfig, owner: Owner) -> reqwest::Client {
    crate::crypto::install_tls_provider();
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("socialsyncer/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(GuardedResolver {
            allow_loopback: notify.allow_insecure_loopback,
            allow_private: notify.allow_private_networks,
            owner,
        }))
        .build()
        .unwrap_or_default()
}

/// The webhook clients of a delivery round, each built when first needed (a client holds
/// the TLS roots, about a megabyte).
#[derive(Debug, Default)]
pub struct Clients {
    operator: std::sync::OnceLock<reqwest::Client>,
    tenant: std::sync::OnceLock<reqwest::Client>,
}

impl Clients {
    /// The client for `r`.
    pub fn for_receiver(&self, r: &Receiver, notify: &NotifyConfig) -> &reqwest::Client {
        let owner = r.owner();
        let slot = match owner {
            Owner::Operator => &self.operator,
            Owner::Tenant => &self.tenant,
        };
        slot.get_or_init(|| client(notify, owner))
    }
}

/// The `socialsyncer-signature` header of `body` sent at `t` to the receiver at `url`:
/// `t=<unix>,v2=<hex HMAC-SHA256 of "t.url.body">`. The receiver's URL is signed with the
/// body, so that a secret used by two receivers cannot carry one's request to the other.
pub fn signature(secret: &SecretString, t: i64, url: &Url, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(url.as_str().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v2={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether a secret a caller chose holds at least 256 bits: its length times the bits of
/// the character classes it draws from (digits, lower case, upper case, punctuation), with
/// at least 16 different characters. A secret made by [`new_secret`] passes.
pub fn strong_enough(secret: &str) -> bool {
    let mut classes = 0u32;
    for (test, size) in [
        (char::is_ascii_digit as fn(&char) -> bool, 10),
        (char::is_ascii_lowercase, 26),
        (char::is_ascii_uppercase, 26),
        (char::is_ascii_punctuation, 32),
    ] {
        if secret.chars().any(|c| test(&c)) {
            classes += size;
        }
    }
    let distinct = secret.chars().collect::<std::collections::HashSet<_>>().len();
    let bits = secret.chars().count() as f64 * f64::from(classes.max(2)).log2();
    distinct >= 16 && bits >= 256.0
}

/// A new signing secret: `whsec_` and 32 random bytes in hex.
pub fn new_secret() -> SecretString {
    let mut b = [0u8; 32];
    rand::fill(&mut b);
    SecretString::from(format!("whsec_{}", hex::encode(b)))
}

/// What a receiver made of a POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// A 2xx.
    Delivered(u16),
    /// 410 Gone: the receiver is to be disabled.
    Gone,
    /// Anything else: try again later (429, 5xx, a timeout, a refused address, another status).
    Retry(String),
}

/// Answers are read only this far.
const ANSWER_CAP: usize = 16 * 1024;

/// POSTs `body` (JSON) to `r`, signed when it has a secret.
pub async fn post(client: &reqwest::Client, r: &Receiver, body: &[u8], now: i64) -> Sent {
    let mut req = client
        .post(r.url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_vec());
    if let Some(secret) = &r.secret {
        req = req.header("socialsyncer-signature", signature(secret, now, &r.url, body));
    }
    match req.send().await {
        Ok(mut resp) => {
            let status = resp.status();
            // Read a little of the answer, never more (some receivers say why in it).
            let mut read = 0;
            while read < ANSWER_CAP {
                match resp.chunk().await {
                    Ok(Some(c)) => read += c.len(),
                    _ => break,
                }
            }
            match status.as_u16() {
                s if status.is_success() => Sent::Delivered(s),
                410 => Sent::Gone,
                s => Sent::Retry(format!("answered {s}")),
            }
        }
        Err(e) if e.is_timeout() => Sent::Retry("did not answer within 5 s".into()),
        Err(e) if e.is_connect() => Sent::Retry(format!("could not be reached ({})", root_cause(&e))),
        Err(e) => Sent::Retry(format!("request failed ({})", root_cause(&e))),
    }
}

/// The innermost error text, without the URL reqwest puts in its own (it may hold a
/// credential).
fn root_cause(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(s) = source.source() {
        source = s;
    }
    crate::domain::truncate_for_message(&source.to_string())
}

/// The receivers of a workspace's alerts that are not disabled: its own webhooks (secrets
/// unsealed) and the operator's `[[notify.webhook]]`.
pub async fn receivers(
    state: &super::Outbox,
    workspace_id: WorkspaceId,
) -> Result<Vec<Receiver>, crate::store::StoreError> {
    let notify = &state.config().notify;
    let disabled: Vec<String> = state
        .store
        .receiver_statuses()
        .await?
        .into_iter()
        .filter(|s| s.disabled_at.is_some())
        .map(|s| s.receiver)
        .collect();
    let mut out = Vec::new();
    for w in state.store.webhooks(workspace_id).await? {
        let key = format!("webhook:{}", w.id);
        if disabled.contains(&key) {
            continue;
        }
        let format = w.format;
        let Ok(url) = Url::parse(&w.url) else {
            continue;
        };
        let secret = match state.sealer.open(&secret_context(workspace_id, &w.url), &w.secret) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(receiver = %redacted(&url), error = %e, "a webhook secret cannot be opened; the receiver is skipped");
                continue;
            }
        };
        out.push(Receiver {
            key,
            url,
            format,
            events: w.events.map(|e| e.0),
            secret: Some(secret),
        });
    }
    for (i, w) in notify.webhook.iter().enumerate() {
        let key = operator_key(&w.url);
        if disabled.contains(&key) {
            continue;
        }
        let (Ok(url), Ok(format)) = (Url::parse(&w.url), Format::parse(w.format.as_deref().unwrap_or("json"))) else {
            continue;
        };
        let secret = match &w.secret_file {
            Some(f) => match crate::config::read_secret_file(&format!("notify.webhook[{i}].secret_file"), f) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::error!(receiver = %redacted(&url), error = %e.0, "the operator's webhook is skipped");
                    continue;
                }
            },
            None => None,
        };
        out.push(Receiver {
            key,
            url,
            format,
            events: w.events.clone(),
            secret,
        });
    }
    Ok(out)
}

/// What a webhook secret is sealed to: its workspace and URL.
pub fn secret_context(workspace_id: WorkspaceId, url: &str) -> String {
    format!("webhook/{workspace_id}/{url}")
}

#[cfg(test)]
mod tests;
