//! systemd integration: READY=1 once migrations ran and the listener is up, WATCHDOG=1 while
//! the runtime and the database answer, STOPPING=1 on shutdown. No-ops outside systemd.

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

fn notify(state: NotifyState<'_>) {
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(e) = sd_notify::notify(&[state])
    {
        tracing::warn!(error = %e, "could not notify systemd");
    }
}

/// Tells systemd the service is ready.
pub fn ready() {
    notify(NotifyState::Ready);
}

/// Tells systemd a reload has started (READY=1 follows when it is done).
pub fn reloading() {
    notify(NotifyState::Reloading);
}

/// Tells systemd the service is stopping.
pub fn stopping() {
    notify(NotifyState::Stopping);
}

/// Pings the watchdog at half its interval while the database answers, so a hung runtime or
/// a dead database gets the service restarted. Does nothing without `WatchdogSec=`.
pub fn spawn_watchdog(tasks: &crate::tasks::Tasks, store: crate::store::Store, cancel: CancellationToken) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    tasks.spawn(
        "watchdog",
        false,
        watchdog(store, cancel, interval / 2, || notify(NotifyState::Watchdog)),
    );
}

/// Every `every`, calls `ping` if the database answers, and logs instead if it does not.
pub async fn watchdog(
    store: crate::store::Store,
    cancel: CancellationToken,
    every: std::time::Duration,
    ping: impl Fn(),
) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
        if store.ping().await {
            ping();
        } else {
            tracing::error!("database does not answer; withholding the watchdog ping");
        }
    }
}
