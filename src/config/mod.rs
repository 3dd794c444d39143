//! Typed configuration: the TOML file, `SOCIALSYNCER__SECTION__KEY` overrides, secrets from files.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::domain::Platform;

mod connect;
mod custody;
pub use connect::ConnectConfig;
mod load;
pub use custody::{AccountsConfig, TokensConfig};
mod platforms;
mod reference;
mod reload;
pub use reload::differing_keys;

pub use crate::domain::InstagramLogin;
pub use load::{read_secret_file, resolve_credential_path};
pub use platforms::*;
pub use reference::{reference, reloads_live};

/// The example configuration shipped in `config/socialsyncer.toml`, embedded in the binary.
pub const EXAMPLE_CONFIG: &str = include_str!("../../config/socialsyncer.toml");

/// Where the config file is looked for when neither `--config` nor `$SOCIALSYNCER_CONFIG` names one.
pub const DEFAULT_CONFIG_PATH: &str = "config/socialsyncer.toml";

/// A configuration problem, worded as one line that names the key.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

/// A duration written as humantime text (`"7d"`, `"6h"`, `"30s"`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl fmt::Debug for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map(HumanDuration).map_err(|e| {
            serde::de::Error::custom(format!(
                "'{s}' is not a duration ({e}); write e.g. \"30s\", \"6h\" or \"7d\""
            ))
        })
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Whole days as days ("400days"), not as humantime's years of 365.25 days.
        let secs = self.0.as_secs();
        if secs >= 86_400 && secs.is_multiple_of(86_400) && self.0.subsec_nanos() == 0 {
            return s.serialize_str(&format!("{}days", secs / 86_400));
        }
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl HumanDuration {
    /// The duration in whole seconds, as stored timestamps use.
    pub fn secs(self) -> i64 {
        i64::try_from(self.0.as_secs()).unwrap_or(i64::MAX)
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[server]`
    pub server: ServerConfig,
    /// `[database]`
    pub database: DatabaseConfig,
    /// `[schedule]`
    pub schedule: ScheduleConfig,
    /// `[health]`
    pub health: HealthConfig,
    /// `[security]`
    pub security: SecurityConfig,
    /// `[email]`
    pub email: EmailConfig,
    /// `[alerts]`
    pub alerts: AlertsConfig,
    /// `[notify]`: webhook receivers and what outbound addresses they may use.
    pub notify: NotifyConfig,
    /// `[http]`: the outbound client used for platforms.
    pub http: HttpConfig,
    /// `[log]`
    pub log: LogConfig,
    /// `[metrics]`
    pub metrics: MetricsConfig,
    /// `[platforms.*]`
    pub platforms: PlatformsConfig,
    /// `[accounts]`: custody of new accounts.
    pub accounts: AccountsConfig,
    /// `[tokens]`: tokens handed out.
    pub tokens: TokensConfig,
    /// `[connect]`: connect links.
    pub connect: ConnectConfig,
}

/// `[server]`: the HTTP listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: String,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Address of the Prometheus `/metrics` listener, apart from the API (the per-account
    /// series name workspaces and accounts). Empty: `/metrics` is served on `listen`.
    pub metrics_listen: String,
    /// Longest a connection may take to send a request's headers, and longest it may sit
    /// idle between keep-alive requests; then it is closed.
    pub header_timeout: HumanDuration,
    /// Longest a request may take from its headers to the answer (then 408).
    pub request_timeout: HumanDuration,
    /// Open connections at most (keep it below the file limit, `LimitNOFILE=` in the unit).
    /// At the limit a new connection closes the one idle the longest; when every one has a
    /// request in flight, the new one is closed.
    pub max_connections: usize,
    /// Open connections at most from one client address; at the limit, a new one closes
    /// that address's connection idle the longest.
    pub max_connections_per_address: usize,
    /// Longest a write to a client may make no progress (a client that does not read its
    /// answers); then the connection is closed.
    pub write_timeout: HumanDuration,
    /// Serve HTTP/2 (prior knowledge) besides HTTP/1: at most 32 streams a connection,
    /// 16 KiB of headers, idle connections closed after `header_timeout`. Off by default.
    pub http2: bool,
    /// On shutdown, how long open connections may finish before they are dropped.
    pub shutdown_timeout: HumanDuration,
    /// Requests a second each API key may send on `/v1` (a token bucket); 0 turns it off.
    pub key_rate_limit: f64,
    /// Requests an API key may send at once before `key_rate_limit` applies.
    pub key_burst: f64,
    /// Requests a second a client address may send without a valid API key (`/healthz`,
    /// the OpenAPI document, requests with an unknown key), in bursts of twice as many; 0
    /// turns it off. IPv6 addresses count by their /64.
    pub address_rate_limit: f64,
    /// Bytes the cached list answers may hold in all; each workspace may hold a quarter of
    /// it and evicts only its own answers.
    pub list_cache_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 64 * 1024,
            metrics_listen: "127.0.0.1:9464".into(),
            header_timeout: HumanDuration(Duration::from_secs(10)),
            request_timeout: HumanDuration(Duration::from_secs(30)),
            max_connections: 16_384,
            max_connections_per_address: 4_096,
            write_timeout: HumanDuration(Duration::from_secs(10)),
            http2: false,
            shutdown_timeout: HumanDuration(Duration::from_secs(10)),
            key_rate_limit: 20.0,
            key_burst: 40.0,
            address_rate_limit: 20.0,
            list_cache_bytes: 64 << 20,
        }
    }
}

/// `[database]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (relative paths are relative to the working directory), or
    /// `postgres://USER@HOST[:PORT]/DB[?sslmode=...]` for several daemons sharing one
    /// database. A password may be in the URL, but is better in `password_file`.
    pub url: String,
    /// PostgreSQL: a file holding the password (a relative name is looked up in systemd's
    /// `$CREDENTIALS_DIRECTORY` first); it replaces any password in the URL.
    pub password_file: Option<PathBuf>,
    /// How long a write waits for a lock held by another connection or process (SQLite),
    /// or for a connection from the pool (PostgreSQL).
    pub busy_timeout: HumanDuration,
    /// Pool size.
    pub max_connections: u32,
    /// SQLite: the page cache of each pooled connection, in MiB (up to `max_connections`
    /// of them). The operating system's file cache holds the rest of the file either way;
    /// a larger cache saves reads from it at the cost of the daemon's own memory.
    pub sqlite_cache_mib: u32,
    /// SQLite: the memory of all its connections together (page caches, prepared
    /// statements), in MiB; 0 for no bound. Near it, a connection's cache reuses its own
    /// pages instead of growing (SQLite's soft heap limit, for the whole process): with a
    /// large database, `max_connections` caches would otherwise each fill to
    /// `sqlite_cache_mib`. A lower bound may cost the sweep some CPU (reads from the
    /// operating system's file cache); at a million accounts 16 against 32 took 26 MiB off
    /// the sweep's peak and no CPU a check measurable on a 2-core VM (`bench scale`).
    pub sqlite_memory_mib: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://state/socialsyncer.db".into(),
            password_file: None,
            busy_timeout: HumanDuration(Duration::from_secs(10)),
            max_connections: 8,
            sqlite_cache_mib: 8,
            sqlite_memory_mib: 16,
        }
    }
}

/// The database `database.url` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    /// A SQLite file (one daemon).
    Sqlite(PathBuf),
    /// A PostgreSQL database (one or more daemons); the URL as configured.
    Postgres(String),
}

impl DatabaseConfig {
    /// The database named by the URL. Errors never repeat the URL: it may hold a password.
    pub fn target(&self) -> Result<DatabaseTarget, ConfigError> {
        let scheme = self.url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("sqlite") => {
                let rest = self
                    .url
                    .strip_prefix("sqlite://")
                    .or_else(|| self.url.strip_prefix("sqlite:"))
                    .unwrap_or_default();
                let path = rest.split('?').next().unwrap_or_default();
                if path.is_empty() {
                    return Err(ConfigError("database.url: the SQLite file path is empty".into()));
                }
                if self.password_file.is_some() {
                    return Err(ConfigError(
                        "database.password_file: only a PostgreSQL database has a password".into(),
                    ));
                }
                Ok(DatabaseTarget::Sqlite(PathBuf::from(path)))
            }
            Some("postgres" | "postgresql") => {
                let u = url::Url::parse(&self.url).map_err(|e| {
                    ConfigError(format!(
                        "database.url: not a valid PostgreSQL URL ({e}); expected postgres://USER@HOST[:PORT]/DATABASE"
                    ))
                })?;
                if u.host_str().is_none_or(str::is_empty) && !u.query_pairs().any(|(k, _)| k == "host") {
                    return Err(ConfigError(
                        "database.url: the PostgreSQL URL names no host; expected postgres://USER@HOST[:PORT]/DATABASE"
                            .into(),
                    ));
                }
                Ok(DatabaseTarget::Postgres(self.url.clone()))
            }
            Some(other) if !other.is_empty() && other.chars().all(|c| c.is_ascii_alphanumeric() || c == '+') => {
                Err(ConfigError(format!(
                    "database.url: the scheme '{other}' is not supported; use sqlite://PATH or postgres://USER@HOST/DATABASE"
                )))
            }
            _ => Err(ConfigError(
                "database.url: not a database URL; use sqlite://PATH or postgres://USER@HOST/DATABASE".into(),
            )),
        }
    }

    /// The SQLite file path named by the URL (an error for PostgreSQL).
    pub fn sqlite_path(&self) -> Result<PathBuf, ConfigError> {
        match self.target()? {
            DatabaseTarget::Sqlite(p) => Ok(p),
            DatabaseTarget::Postgres(_) => Err(ConfigError(
                "database.url: this needs a SQLite database, and the URL names a PostgreSQL one".into(),
            )),
        }
    }

    /// The URL with any password replaced by `[redacted]` (in the user part or a
    /// `password=` parameter): what logs, errors and `config check` show.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// The PostgreSQL password from `password_file`, if one is configured.
    pub fn password(&self) -> Result<Option<SecretString>, ConfigError> {
        self.password_file
            .as_deref()
            .map(|p| read_secret_file("database.password_file", p))
            .transpose()
    }
}

/// `text` (an error message) with every appearance of `url`, and of its password, replaced
/// by the redacted URL or `[redacted]`.
pub fn redact_url_in(text: &str, url: &str) -> String {
    let mut out = text.replace(url, &redact_url(url));
    if let Ok(u) = url::Url::parse(url)
        && let Some(p) = u.password().filter(|p| p.len() >= 4)
    {
        out = out.replace(p, "[redacted]");
    }
    out
}

/// `url` with any password replaced by `[redacted]`; a URL that does not parse is shown as
/// its scheme alone.
pub fn redact_url(raw: &str) -> String {
    let Ok(mut u) = url::Url::parse(raw) else {
        return match raw.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://[redacted]"),
            None => "[redacted]".into(),
        };
    };
    if u.password().is_some() {
        let _ = u.set_password(Some("[redacted]"));
    }
    if u.query_pairs().any(|(k, _)| k.eq_ignore_ascii_case("password")) {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if k.eq_ignore_ascii_case("password") {
                    "[redacted]".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string().replace("%5Bredacted%5D", "[redacted]")
}

/// `[schedule]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// Six-field cron expression (with seconds) for the sweep tick; empty disables sweeps.
    pub cron: String,
    /// Checks in flight at once during a sweep.
    pub concurrency: usize,
    /// Due accounts read from the database at a time.
    pub batch_size: usize,
    /// On shutdown, how long in-flight checks may take to finish and be written.
    pub shutdown_timeout: HumanDuration,
    /// PostgreSQL, several daemons: how long a sweep's claim on a page of due accounts
    /// holds. A daemon that dies mid-sweep leaves its claims; a peer checks those accounts
    /// in its first round after its heartbeat is 10 s old, or after they expire, whichever
    /// comes first. Long enough for a page to be checked at the slowest platform pace.
    pub claim_lease: HumanDuration,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            cron: "0 */10 * * * *".into(),
            concurrency: 64,
            batch_size: 1000,
            shutdown_timeout: HumanDuration(Duration::from_secs(30)),
            claim_lease: HumanDuration(Duration::from_secs(15 * 60)),
        }
    }
}

/// `[health]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// A token expiring within this window is a warning.
    pub warn_before: HumanDuration,
    /// The normal re-check period.
    pub check_interval: HumanDuration,
    /// Without an answer from the platform for this long, an account's health is `unknown`.
    pub stale_after: HumanDuration,
    /// History rows older than this are pruned.
    pub history_retention: HumanDuration,
    /// Health transitions (the timeline, incidents and availability) older than this are
    /// pruned; longer than the raw check history.
    pub transitions_retention: HumanDuration,
    /// A "check now" within this long of the account's last check answers that check's
    /// result (with an `X-Check-Cooldown` header) instead of calling the platform again.
    pub check_now_cooldown: HumanDuration,
    /// The share of each platform's `rate_limit` that check-now requests and registration
    /// checks may use together (0 to 1); sweeps are never starved by them.
    pub check_now_share: f64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            warn_before: HumanDuration(Duration::from_secs(7 * 86_400)),
            check_interval: HumanDuration(Duration::from_secs(6 * 3_600)),
            stale_after: HumanDuration(Duration::from_secs(24 * 3_600)),
            history_retention: HumanDuration(Duration::from_secs(30 * 86_400)),
            transitions_retention: HumanDuration(Duration::from_secs(400 * 86_400)),
            check_now_cooldown: HumanDuration(Duration::from_secs(10)),
            check_now_share: 0.25,
        }
    }
}

/// `[security]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// File holding the 32-byte token sealing key; default `token.key` beside the database.
    pub token_key_file: Option<PathBuf>,
}

/// `[email]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// `smtp://host:port`, `smtp://host:port?tls=required` (STARTTLS) or `smtps://host:port`.
    pub smtp_url: Option<String>,
    /// File holding `user:password` for SMTP authentication.
    pub credentials_file: Option<PathBuf>,
    /// PEM file of a CA to trust for the SMTP server's certificate (a private CA), besides
    /// the usual roots; with `smtps://` or `?tls=required`.
    pub ca_file: Option<PathBuf>,
    /// Sender address.
    pub from: Option<String>,
    /// Recipients of every alert.
    pub to: Vec<String>,
}

/// `[notify]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Lets webhook URLs use `http://` to a loopback address (tests, a local relay).
    pub allow_insecure_loopback: bool,
    /// Lets webhooks reach private, loopback and link-local addresses. Off, a workspace cannot
    /// point the daemon at the operator's own network.
    pub allow_private_networks: bool,
    /// `[[notify.webhook]]`: the operator's receivers, sent every workspace's alerts.
    pub webhook: Vec<WebhookConfig>,
    /// Emails an hour at most to the addresses a workspace set (alerts, tests and
    /// confirmations together); beyond, its alerts wait for the next hour. 0: no cap.
    pub max_emails_per_hour: u32,
    /// A new address a workspace sets gets a confirmation code first, and nothing else until
    /// the workspace confirms it (`POST /v1/notifications/confirm`).
    pub confirm_addresses: bool,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            allow_insecure_loopback: false,
            allow_private_networks: false,
            webhook: Vec::new(),
            max_emails_per_hour: 200,
            confirm_addresses: false,
        }
    }
}

/// One `[[notify.webhook]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST (`https://`).
    pub url: String,
    /// `json` (default), `slack`, `discord` or `teams`.
    #[serde(default)]
    pub format: Option<String>,
    /// Event types to send (`account.needs_reconnect`, ...); absent: every type.
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// File holding the signing secret; without it, POSTs are not signed.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
}

/// `[alerts]`: which events send email, and how often the outbox is delivered.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// A token expiring within each of these raises one alert (per token).
    pub expiry_thresholds: Vec<HumanDuration>,
    /// Failed checks in a row (past the staleness limit) before "platform unreachable".
    pub unreachable_after: i64,
    /// How often pending alerts are delivered (and failed ones retried).
    pub delivery_interval: HumanDuration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            expiry_thresholds: [7, 3, 1]
                .into_iter()
                .map(|d| HumanDuration(Duration::from_secs(d * 86_400)))
                .collect(),
            unreachable_after: 3,
            delivery_interval: HumanDuration(Duration::from_secs(15)),
        }
    }
}

/// `[http]`: the one outbound HTTP client.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// TCP + TLS connect timeout.
    pub connect_timeout: HumanDuration,
    /// Whole-request timeout of a check (a check never takes longer).
    pub request_timeout: HumanDuration,
    /// Whole-request timeout of a token-endpoint call (refresh, revoke): longer, because a
    /// refresh answer lost after the platform rotated the refresh token is a lost token.
    pub token_request_timeout: HumanDuration,
    /// Largest platform response body read, in bytes.
    pub max_response_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            connect_timeout: HumanDuration(Duration::from_secs(5)),
            request_timeout: HumanDuration(Duration::from_secs(15)),
            token_request_timeout: HumanDuration(Duration::from_secs(60)),
            max_response_bytes: 1024 * 1024,
        }
    }
}

/// `[metrics]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve the per-account series (token expiry, reconnect deadline, needs reconnect,
    /// data-access expiry): about one series per account and metric, labelled with the
    /// account ID and workspace name. Turn off for many tenants or many accounts.
    pub per_account: bool,
    /// Above this many accounts the per-account series turn off by themselves (a log line and
    /// `socialsyncer_per_account_series_enabled` say so): a million accounts would be four
    /// million series. 0: no limit.
    pub per_account_limit: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            per_account: true,
            per_account_limit: 10_000,
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `compact` (default) or `json`.
    pub format: LogFormat,
    /// Level or filter directives (`info`, `debug`, `socialsyncer=debug,info`); `RUST_LOG`,
    /// when set, takes precedence. Reloaded on SIGHUP.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Compact,
            level: "info".into(),
        }
    }
}

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One compact human-readable line per event.
    Compact,
    /// One JSON object per line.
    Json,
}

#[cfg(test)]
mod tests;
