//! What a reload may change while the daemon runs, as a typed merge, and the keys whose
//! values differ between two configurations (for the reload's log line).

use super::Config;
use crate::domain::Platform;

impl Config {
    /// This configuration with the parts that reload taken from `new`: `[email]` (and with
    /// it the recipients), `[schedule]`, each platform's `rate_limit` and `log.level`.
    /// Everything else keeps this configuration's value until a restart.
    pub fn with_reloadable(&self, new: &Config) -> Config {
        let mut out = self.clone();
        out.email = new.email.clone();
        out.schedule = new.schedule.clone();
        out.log.level = new.log.level.clone();
        for p in Platform::ALL {
            out.platforms.get_mut(p).rate_limit = new.platforms.get(p).rate_limit;
        }
        out
    }
}

/// The dotted keys whose values differ between `old` and `new` (`email.to`,
/// `platforms.tiktok.rate_limit`, ...), compared as the values they serialize to.
pub fn differing_keys(old: &Config, new: &Config) -> Vec<String> {
    let table = |c: &Config| toml::Value::try_from(c).unwrap_or_else(|_| toml::Value::Table(Default::default()));
    let (old, new) = (table(old), table(new));
    let mut out = Vec::new();
    diff("", Some(&old), Some(&new), &mut out);
    out.sort();
    out
}

fn diff(prefix: &str, old: Option<&toml::Value>, new: Option<&toml::Value>, out: &mut Vec<String>) {
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match (old, new) {
        (Some(toml::Value::Table(o)), Some(toml::Value::Table(n))) => {
            for (k, v) in n {
                diff(&key(k), o.get(k), Some(v), out);
            }
            for (k, v) in o.iter().filter(|(k, _)| !n.contains_key(*k)) {
                diff(&key(k), Some(v), None, out);
            }
        }
        (Some(o), Some(n)) if o == n => {}
        (None, None) => {}
        _ => out.push(prefix.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reloadable_parts_are_taken_and_the_rest_is_named_for_a_restart() {
        let old = Config::from_toml("").unwrap();
        let new = Config::from_toml(
            "[email]\nto = [\"ops@example.com\"]\n[schedule]\ncron = \"0 * * * * *\"\n\
             [server]\nlisten = \"127.0.0.1:9999\"\n[platforms.tiktok]\nrate_limit = 2.5\n[log]\nlevel = \"debug\"\n",
        )
        .unwrap();
        let effective = old.with_reloadable(&new);
        assert_eq!(
            differing_keys(&old, &effective),
            ["email.to", "log.level", "platforms.tiktok.rate_limit", "schedule.cron"]
        );
        assert_eq!(differing_keys(&effective, &new), ["server.listen"]);
        assert!(differing_keys(&new, &new).is_empty());
    }
}
