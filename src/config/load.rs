//! Loading (file, environment, secret files) and validation, with errors as sentences.

use super::*;

/// One configuration error as a sentence: the key (without figment's profile), what is
/// wrong, and where the value came from.
pub(super) fn sentence(e: &figment::Error) -> String {
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
        if let super::DatabaseTarget::Postgres(_) = self.database.target()?
            && self.security.token_key_file.is_none()
        {
            return Err(ConfigError(
                "security.token_key_file: must be set with a PostgreSQL database: every daemon seals and opens \
                 tokens with the same key (copy the file to each host)"
                    .into(),
            ));
        }
        if self.database.sqlite_cache_mib == 0 {
            return Err(ConfigError("database.sqlite_cache_mib: must be at least 1".into()));
        }
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
        if !(self.health.check_now_share > 0.0 && self.health.check_now_share <= 1.0) {
            return Err(ConfigError(
                "health.check_now_share: must be a share of the rate limit above 0 and at most 1, e.g. 0.25".into(),
            ));
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
pub(super) fn croner_check(expr: &str) -> Result<(), String> {
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
        Self::redact(&mut v);
        toml::to_string_pretty(&v).unwrap_or_default()
    }

    /// Redacts the URLs that may carry a password.
    fn redact(v: &mut toml::Value) {
        for (section, key) in [("email", "smtp_url"), ("database", "url")] {
            if let Some(toml::Value::String(url)) = v.get_mut(section).and_then(|t| t.get_mut(key)) {
                *url = super::redact_url(url);
            }
        }
    }

    /// [`Config::redacted_toml`] with what each platform's table leaves to defaults filled in
    /// (its rate limit, `refresh_before`, `auto_refresh`, the Graph version), and without
    /// the keys that mean nothing on that platform (`login` is Instagram's): what `config
    /// check` prints.
    pub fn effective_toml(&self) -> String {
        let mut c = self.clone();
        for p in Platform::ALL {
            let t = c.platforms.get_mut(p);
            let rate = t.rate_limit(p).unwrap_or(0.0);
            t.rate_limit = Some(rate);
            t.refresh_before = Some(super::HumanDuration(std::time::Duration::from_secs(
                t.refresh_before(p).max(0) as u64,
            )));
            t.auto_refresh = Some(t.auto_refresh());
            if matches!(p, Platform::Facebook | Platform::Instagram) {
                t.api_version = Some(t.api_version().to_owned());
            }
        }
        let mut v = match toml::Value::try_from(&c) {
            Ok(v) => v,
            Err(e) => return format!("# the configuration cannot be shown: {e}\n"),
        };
        if let Some(toml::Value::Table(platforms)) = v.get_mut("platforms") {
            for (name, table) in platforms.iter_mut() {
                if name != "instagram"
                    && let toml::Value::Table(t) = table
                {
                    t.remove("login");
                }
            }
        }
        Self::redact(&mut v);
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
            if let Some(f) = &c.login_app_secret_file {
                out.push((format!("platforms.{p}.login_app_secret_file"), f.clone()));
            }
        }
        if let Some(f) = &self.email.credentials_file {
            out.push(("email.credentials_file".into(), f.clone()));
        }
        if let Some(f) = &self.email.ca_file {
            out.push(("email.ca_file".into(), f.clone()));
        }
        for (i, w) in self.notify.webhook.iter().enumerate() {
            if let Some(f) = &w.secret_file {
                out.push((format!("notify.webhook[{i}].secret_file"), f.clone()));
            }
        }
        if let Some(f) = &self.database.password_file {
            out.push(("database.password_file".into(), f.clone()));
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
