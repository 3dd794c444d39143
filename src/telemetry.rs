//! Tracing setup: compact or JSON lines on stderr, the level from `RUST_LOG` or `log.level`
//! (reloadable on SIGHUP).

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

use crate::config::LogFormat;

/// Directives added to the configured level: the scheduler library's start-up chatter
/// ("Uninited", "Job creator created") stays at its debug level.
const QUIET: &str = "tokio_cron_scheduler=warn";

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Whether log lines get ANSI colours: only on a terminal, and never when `NO_COLOR` is set
/// to anything non-empty (no-color.org). The journal and pipes get plain text.
pub fn use_colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

fn filter(level: &str) -> EnvFilter {
    EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(format!("{level},{QUIET}")))
        .unwrap_or_else(|_| EnvFilter::new(format!("info,{QUIET}")))
}

/// Installs the global subscriber with `level` (`log.level`) unless `RUST_LOG` is set.
pub fn init(format: LogFormat, level: &str) {
    let (filter, handle) = reload::Layer::new(filter(level));
    let ansi = use_colour(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR").as_deref());
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Compact => fmt.compact().boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    };
    if Registry::default().with(filter).with(fmt).try_init().is_ok() {
        let _ = FILTER.set(handle);
    }
}

/// Applies a reloaded `log.level` (`RUST_LOG`, when set, still wins).
pub fn set_level(level: &str) {
    if let Some(h) = FILTER.get()
        && let Err(e) = h.reload(filter(level))
    {
        tracing::warn!(error = %e, "could not change the log level");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(std::ffi::OsStr::new(""))));
        assert!(!use_colour(true, Some(std::ffi::OsStr::new("1"))));
        assert!(!use_colour(false, None));
    }
}
