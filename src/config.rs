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

/// The example configuration shipped in `config/socialsyncer.toml`, embedded in the binary.
pub const EXAMPLE_CONFIG: &str = include_str!("../config/socialsyncer.toml");

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
#[derive(Debug, Default, Deserialize, Serialize)]
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
    /// `[http]`: the outbound client used for platforms.
    pub http: HttpConfig,
    /// `[log]`
    pub log: LogConfig,
    /// `[metrics]`
    pub metrics: MetricsConfig,
    /// `[platforms.*]`
    pub platforms: PlatformsConfig,
}

/// `[server]`: the HTTP listener.
#[derive(Debug, Deserialize, Serialize)]
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
    /// Open connections at most (keep it below the file limit, `LimitNOFILE=` in the unit);
    /// further connections wait in the kernel's backlog until one closes.
    pub max_connections: usize,
    /// On shutdown, how long open connections may finish before they are dropped.
    pub shutdown_timeout: HumanDuration,
    /// Requests a second each API key may send on `/v1` (a token bucket); 0 turns it off.
    pub key_rate_limit: f64,
    /// Requests an API key may send at once before `key_rate_limit` applies.
    pub key_burst: f64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 64 * 1024,
            metrics_listen: "127.0.0.1:9464".into(),
            header_timeout: HumanDuration(Duration::from_secs(10)),
            request_timeout: HumanDuration(Duration::from_secs(30)),
            max_connections: 512,
            shutdown_timeout: HumanDuration(Duration::from_secs(10)),
            key_rate_limit: 20.0,
            key_burst: 40.0,
        }
    }
}

/// `[database]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (relative paths are relative to the working directory).
    pub url: String,
    /// How long a write waits for a lock held by another connection or process.
    pub busy_timeout: HumanDuration,
    /// Pool size.
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://state/socialsyncer.db".into(),
            busy_timeout: HumanDuration(Duration::from_secs(10)),
            max_connections: 8,
        }
    }
}

impl DatabaseConfig {
    /// The SQLite file path named by the URL.
    pub fn sqlite_path(&self) -> Result<PathBuf, ConfigError> {
        let rest = self
            .url
            .strip_prefix("sqlite://")
            .or_else(|| self.url.strip_prefix("sqlite:"))
            .ok_or_else(|| {
                ConfigError(format!(
                    "database.url: '{}' is not supported; use sqlite://PATH (PostgreSQL is not supported yet)",
                    self.url
                ))
            })?;
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() {
            return Err(ConfigError("database.url: the SQLite file path is empty".into()));
        }
        Ok(PathBuf::from(path))
    }
}

/// `[schedule]`
#[derive(Debug, Deserialize, Serialize)]
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
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            cron: "0 */10 * * * *".into(),
            concurrency: 64,
            batch_size: 1000,
            shutdown_timeout: HumanDuration(Duration::from_secs(30)),
        }
    }
}

/// `[health]`
#[derive(Debug, Deserialize, Serialize)]
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
    /// A "check now" within this long of the account's last check answers that check's
    /// result (with an `X-Check-Cooldown` header) instead of calling the platform again.
    pub check_now_cooldown: HumanDuration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            warn_before: HumanDuration(Duration::from_secs(7 * 86_400)),
            check_interval: HumanDuration(Duration::from_secs(6 * 3_600)),
            stale_after: HumanDuration(Duration::from_secs(24 * 3_600)),
            history_retention: HumanDuration(Duration::from_secs(30 * 86_400)),
            check_now_cooldown: HumanDuration(Duration::from_secs(10)),
        }
    }
}

/// `[security]`
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// File holding the 32-byte token sealing key; default `token.key` beside the database.
    pub token_key_file: Option<PathBuf>,
}

/// `[email]`
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// `smtp://host:port`, `smtp://host:port?tls=required` (STARTTLS) or `smtps://host:port`.
    pub smtp_url: Option<String>,
    /// File holding `user:password` for SMTP authentication.
    pub credentials_file: Option<PathBuf>,
    /// Sender address.
    pub from: Option<String>,
    /// Recipients of every alert.
    pub to: Vec<String>,
}

/// `[alerts]`: which events send email, and how often the outbox is delivered.
#[derive(Debug, Deserialize, Serialize)]
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
#[derive(Debug, Deserialize, Serialize)]
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
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve the per-account series (token expiry, reconnect deadline, needs reconnect,
    /// data-access expiry): about one series per account and metric, labelled with the
    /// account ID and workspace name. Turn off for many tenants or many accounts.
    pub per_account: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { per_account: true }
    }
}

/// `[log]`
#[derive(Debug, Deserialize, Serialize)]
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

/// `[platforms]`: one table per platform.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlatformsConfig {
    /// `[platforms.instagram]`
    pub instagram: PlatformConfig,
    /// `[platforms.facebook]`
    pub facebook: PlatformConfig,
    /// `[platforms.threads]`
    pub threads: PlatformConfig,
    /// `[platforms.tiktok]`
    pub tiktok: PlatformConfig,
    /// `[platforms.twitter]`
    pub twitter: PlatformConfig,
}

impl PlatformsConfig {
    /// The table of one platform.
    pub fn get(&self, p: Platform) -> &PlatformConfig {
        match p {
            Platform::Instagram => &self.instagram,
            Platform::Facebook => &self.facebook,
            Platform::Threads => &self.threads,
            Platform::Tiktok => &self.tiktok,
            Platform::Twitter => &self.twitter,
        }
    }
}

/// How Instagram accounts were connected, which decides the API used to check them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InstagramLogin {
    /// Facebook Login: Graph tokens, checked with `debug_token` on graph.facebook.com.
    #[default]
    Facebook,
    /// Instagram Login: graph.instagram.com tokens, refreshable.
    Instagram,
}

/// One platform's table. Keys a platform has no use for are ignored by its adapter.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlatformConfig {
    /// API host, e.g. `https://graph.facebook.com`; tests point it at loopback.
    pub base_url: Option<String>,
    /// Graph API version path segment (facebook, instagram), e.g. `v23.0`.
    pub api_version: Option<String>,
    /// Instagram only: `facebook` (default) or `instagram`.
    pub login: InstagramLogin,
    /// Facebook app ID (facebook; instagram with Facebook Login uses facebook's).
    pub app_id: Option<String>,
    /// File holding the Facebook app secret.
    pub app_secret_file: Option<PathBuf>,
    /// TikTok client key.
    pub client_key: Option<String>,
    /// X (Twitter) OAuth 2.0 client ID.
    pub client_id: Option<String>,
    /// File holding the TikTok or X client secret (or the Instagram app secret).
    pub client_secret_file: Option<PathBuf>,
    /// Permissions an account needs for publishing; a missing one makes it unhealthy.
    pub required_permissions: Option<Vec<String>>,
    /// Checks per second sent to this platform during sweeps; 0 means no limit.
    pub rate_limit: Option<f64>,
    /// Refresh tokens automatically where the platform allows it (default true).
    pub auto_refresh: Option<bool>,
    /// How long before the access token expires it is refreshed.
    pub refresh_before: Option<HumanDuration>,
    /// Graph platforms (facebook, instagram, threads): how long to stop calling the platform
    /// once `X-App-Usage` reports the app's shared quota above 90 % (default 10 minutes).
    pub app_usage_pause: Option<HumanDuration>,
}

impl PlatformConfig {
    /// The configured base URL or the platform's real host, without a trailing slash.
    pub fn base_url(&self, p: Platform, login: InstagramLogin) -> String {
        let default = match (p, login) {
            (Platform::Instagram, InstagramLogin::Instagram) => "https://graph.instagram.com",
            (Platform::Facebook | Platform::Instagram, _) => "https://graph.facebook.com",
            (Platform::Threads, _) => "https://graph.threads.net",
            (Platform::Tiktok, _) => "https://open.tiktokapis.com",
            (Platform::Twitter, _) => "https://api.x.com",
        };
        self.base_url
            .as_deref()
            .unwrap_or(default)
            .trim_end_matches('/')
            .to_owned()
    }

    /// Checks per second during sweeps, under each platform's published limits
    /// (TikTok's user info allows 600 a minute per app). `None`: unlimited.
    pub fn rate_limit(&self, p: Platform) -> Option<f64> {
        let r = self.rate_limit.unwrap_or(match p {
            Platform::Tiktok => 8.0,
            _ => 20.0,
        });
        (r > 0.0).then_some(r)
    }

    /// The pause after `X-App-Usage` above 90 %, in seconds.
    pub fn app_usage_pause(&self) -> i64 {
        self.app_usage_pause.map(HumanDuration::secs).unwrap_or(600)
    }

    /// Whether automatic refresh is on.
    pub fn auto_refresh(&self) -> bool {
        self.auto_refresh.unwrap_or(true)
    }

    /// The refresh window: 14 days for 60-day Instagram and Threads tokens, an hour for
    /// TikTok and 45 minutes for X, whose access tokens live 2 hours.
    pub fn refresh_before(&self, p: Platform) -> i64 {
        self.refresh_before.map(HumanDuration::secs).unwrap_or(match p {
            Platform::Tiktok => 3_600,
            Platform::Twitter => 45 * 60,
            _ => 14 * 86_400,
        })
    }

    /// The Graph API version, default `v23.0`.
    pub fn api_version(&self) -> &str {
        self.api_version.as_deref().unwrap_or("v23.0")
    }

    /// The permissions required for publishing, configured or the platform's defaults.
    pub fn required_permissions(&self, p: Platform, login: InstagramLogin) -> Vec<String> {
        if let Some(r) = &self.required_permissions {
            return r.clone();
        }
        let d: &[&str] = match (p, login) {
            (Platform::Facebook, _) => &["pages_manage_posts", "pages_read_engagement"],
            (Platform::Instagram, InstagramLogin::Facebook) => &["instagram_basic", "instagram_content_publish"],
            (Platform::Instagram, InstagramLogin::Instagram) => {
                &["instagram_business_basic", "instagram_business_content_publish"]
            }
            (Platform::Threads, _) => &["threads_basic", "threads_content_publish"],
            (Platform::Tiktok, _) => &["user.info.basic", "video.publish"],
            (Platform::Twitter, _) => &["tweet.read", "tweet.write", "users.read"],
        };
        d.iter().map(|s| (*s).to_owned()).collect()
    }
}

/// One configuration error as a sentence: the key (without figment's profile), what is
/// wrong, and where the value came from.
fn sentence(e: &figment::Error) -> String {
    use figment::error::Kind;
    let key = if e.path.is_empty() {
        "the configuration".to_owned()
    } else {
        e.path.join(".")
    };
    let list = |xs: &[&str]| xs.join(", ");
    let what = match &e.kind {
        Kind::UnknownField(field, expected) => {
            format!("unknown key '{field}' (the keys here are: {})", list(expected))
        }
        Kind::UnknownVariant(v, expected) => format!("'{v}' is not one of: {}", list(expected)),
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            let expected = match expected.as_str() {
                "usize" | "u8" | "u16" | "u32" | "u64" | "i32" | "i64" => "a whole number",
                "f32" | "f64" => "a number",
                other => other,
            };
            format!("expected {expected}, found {actual}")
        }
        Kind::MissingField(f) => format!("the key '{f}' is missing"),
        Kind::Message(m) => m.clone(),
        other => other.to_string().replace('`', "'"),
    };
    let from = match e.metadata.as_ref().and_then(|m| m.source.as_ref()) {
        Some(figment::Source::File(path)) => format!(" (in {})", path.display()),
        _ if e.metadata.as_ref().is_some_and(|m| m.name.contains("environment")) => {
            let var = format!("SOCIALSYNCER__{}", e.path.join("__").to_ascii_uppercase());
            format!(" (from the environment variable {var})")
        }
        _ => String::new(),
    };
    format!("{key}: {what}{from}").replace('\n', " ")
}

impl Config {
    /// Loads the config: `path` (which must exist when `explicit`), then environment overrides.
    /// A missing default file falls back to built-in defaults.
    pub fn load(path: &Path, explicit: bool) -> Result<Config, ConfigError> {
        let mut fig = Figment::new();
        if path.exists() {
            fig = fig.merge(Toml::file(path));
        } else if explicit {
            return Err(ConfigError(format!("config file {} does not exist", path.display())));
        }
        Self::extract(fig)
    }

    /// Parses config from TOML text, then environment overrides (used by tests and `demo`).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Self::extract(Figment::new().merge(Toml::string(text)))
    }

    fn extract(fig: Figment) -> Result<Config, ConfigError> {
        let fig = fig.merge(Env::prefixed("SOCIALSYNCER__").split("__"));
        let config: Config = fig
            .extract()
            .map_err(|e| ConfigError(e.into_iter().map(|e| sentence(&e)).collect::<Vec<_>>().join("; ")))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: addresses, URLs, cron, ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        tracing_subscriber::EnvFilter::try_new(&self.log.level).map_err(|e| {
            ConfigError(format!(
                "log.level: '{}' is not a level or filter ({e})",
                self.log.level
            ))
        })?;
        SocketAddr::from_str(&self.server.listen).map_err(|_| {
            ConfigError(format!(
                "server.listen: '{}' is not an address like 127.0.0.1:8080",
                self.server.listen
            ))
        })?;
        self.database.sqlite_path()?;
        if self.database.max_connections == 0 {
            return Err(ConfigError("database.max_connections: must be at least 1".into()));
        }
        if self.server.max_connections == 0 {
            return Err(ConfigError("server.max_connections: must be at least 1".into()));
        }
        for (key, d) in [
            ("server.header_timeout", self.server.header_timeout),
            ("server.request_timeout", self.server.request_timeout),
        ] {
            if d.0.is_zero() {
                return Err(ConfigError(format!("{key}: must be longer than 0s")));
            }
        }
        if self.schedule.concurrency == 0 {
            return Err(ConfigError("schedule.concurrency: must be at least 1".into()));
        }
        if !self.schedule.cron.trim().is_empty() {
            croner_check(&self.schedule.cron)
                .map_err(|e| ConfigError(format!("schedule.cron: '{}': {e}", self.schedule.cron)))?;
        }
        if self.alerts.unreachable_after < 1 {
            return Err(ConfigError("alerts.unreachable_after: must be at least 1".into()));
        }
        if self.alerts.delivery_interval.0 < Duration::from_secs(1) {
            return Err(ConfigError("alerts.delivery_interval: must be at least 1s".into()));
        }
        if let Some(url) = &self.email.smtp_url
            && !(url.starts_with("smtp://") || url.starts_with("smtps://"))
        {
            return Err(ConfigError(format!(
                "email.smtp_url: '{url}' must start with smtp:// (plain or STARTTLS with ?tls=required) or smtps://"
            )));
        }
        if self.health.check_interval.0 < Duration::from_secs(60) {
            return Err(ConfigError("health.check_interval: must be at least 1m".into()));
        }
        if self.http.request_timeout.0.is_zero() || self.http.connect_timeout.0.is_zero() {
            return Err(ConfigError("http: timeouts must be greater than zero".into()));
        }
        for p in Platform::ALL {
            let pc = self.platforms.get(p);
            if pc.rate_limit.is_some_and(|r| !r.is_finite() || r < 0.0) {
                return Err(ConfigError(format!(
                    "platforms.{p}.rate_limit: must be a number of checks per second, 0 for no limit"
                )));
            }
            if let Some(url) = &pc.base_url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(ConfigError(format!(
                    "platforms.{p}.base_url: '{url}' must start with http:// or https://"
                )));
            }
        }
        Ok(())
    }

    /// The token key file: configured, or `token.key` beside the database.
    pub fn token_key_path(&self) -> Result<PathBuf, ConfigError> {
        if let Some(p) = &self.security.token_key_file {
            return Ok(resolve_credential_path(p));
        }
        let db = self.database.sqlite_path()?;
        Ok(db
            .parent()
            .map(|d| d.join("token.key"))
            .unwrap_or_else(|| PathBuf::from("token.key")))
    }
}

/// Validates a cron expression the way tokio-cron-scheduler will parse it.
fn croner_check(expr: &str) -> Result<(), String> {
    tokio_cron_scheduler::Job::new_async(expr, |_, _| Box::pin(async {}))
        .map(|_| ())
        .map_err(|e| format!("not a valid cron expression with seconds ({e})"))
}

/// Resolves a secret file path: a relative path is looked up in `$CREDENTIALS_DIRECTORY`
/// (systemd `LoadCredential=`) when that is set.
pub fn resolve_credential_path(p: &Path) -> PathBuf {
    if p.is_relative()
        && let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY")
    {
        let candidate = Path::new(&dir).join(p);
        if candidate.exists() {
            return candidate;
        }
    }
    p.to_owned()
}

impl Config {
    /// The effective configuration as TOML, with anything secret redacted (the password in
    /// `email.smtp_url`); the secrets themselves live in files and are never part of it.
    pub fn redacted_toml(&self) -> String {
        let mut v = match toml::Value::try_from(self) {
            Ok(v) => v,
            Err(e) => return format!("# the configuration cannot be shown: {e}\n"),
        };
        if let Some(url) = v
            .get_mut("email")
            .and_then(|e| e.get_mut("smtp_url"))
            .and_then(|u| match u {
                toml::Value::String(s) => Some(s),
                _ => None,
            })
            && let Some((scheme, rest)) = url.split_once("://")
            && let Some((userinfo, host)) = rest.split_once('@')
        {
            let user = userinfo.split(':').next().unwrap_or_default();
            *url = format!("{scheme}://{user}:[redacted]@{host}");
        }
        toml::to_string_pretty(&v).unwrap_or_default()
    }

    /// Every file the config names with the key that names it: secrets and the token key.
    pub fn named_files(&self) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        for p in Platform::ALL {
            let c = self.platforms.get(p);
            if let Some(f) = &c.app_secret_file {
                out.push((format!("platforms.{p}.app_secret_file"), f.clone()));
            }
            if let Some(f) = &c.client_secret_file {
                out.push((format!("platforms.{p}.client_secret_file"), f.clone()));
            }
        }
        if let Some(f) = &self.email.credentials_file {
            out.push(("email.credentials_file".into(), f.clone()));
        }
        out
    }
}

/// Reads a secret from a file named in the config under `key` (trailing newline trimmed).
pub fn read_secret_file(key: &str, path: &Path) -> Result<SecretString, ConfigError> {
    let path = resolve_credential_path(path);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ConfigError(format!("{key}: cannot read {}: {e}", path.display())))?;
    let trimmed = text.trim_end_matches(['\n', '\r']);
    if trimmed.is_empty() {
        return Err(ConfigError(format!("{key}: {} is empty", path.display())));
    }
    Ok(SecretString::from(trimmed.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses() {
        let c = Config::from_toml(EXAMPLE_CONFIG).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8080");
        assert_eq!(c.health.warn_before.0, Duration::from_secs(7 * 86_400));
        assert_eq!(
            c.database.sqlite_path().unwrap(),
            PathBuf::from("state/socialsyncer.db")
        );
    }

    #[test]
    fn errors_name_the_key() {
        let e = Config::from_toml("[schedule]\nconcurrency = \"many\"").unwrap_err();
        assert!(e.to_string().contains("concurrency"), "{e}");
        let e = Config::from_toml("[server]\nlisten = \"nowhere\"").unwrap_err();
        assert!(e.to_string().contains("server.listen"), "{e}");
        let e = Config::from_toml("[health]\nwarn_before = \"soon\"").unwrap_err();
        assert!(e.to_string().contains("warn_before"), "{e}");
        let e = Config::from_toml("[server]\nlisten_on = \"x\"").unwrap_err();
        assert!(e.to_string().contains("listen_on"), "{e}");
        let e = Config::from_toml("[schedule]\ncron = \"every day\"").unwrap_err();
        assert!(e.to_string().contains("schedule.cron"), "{e}");
        let e = Config::from_toml("[database]\nurl = \"postgres://x\"").unwrap_err();
        assert!(e.to_string().contains("database.url"), "{e}");
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn platform_defaults() {
        let c = Config::default();
        assert_eq!(
            c.platforms
                .facebook
                .base_url(Platform::Facebook, InstagramLogin::Facebook),
            "https://graph.facebook.com"
        );
        assert!(
            c.platforms
                .instagram
                .required_permissions(Platform::Instagram, InstagramLogin::Facebook)
                .contains(&"instagram_content_publish".to_owned())
        );
    }
}
