//! Running the daemon: the HTTP listener and background jobs, with graceful shutdown.

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use std::time::Duration;

use crate::api;
use crate::app::AppState;

pub mod conns;
use crate::{alerts, scheduler, systemd};

/// Serves the API on `listener` until `shutdown` is cancelled, then lets open requests
/// finish for at most `server.shutdown_timeout` before dropping them.
pub async fn serve_http(listener: TcpListener, state: AppState, shutdown: CancellationToken) -> anyhow::Result<()> {
    let limits = Limits::from(&state.config().server);
    let timeout = limits.request_timeout;
    // A request that takes longer than server.request_timeout answers 408 in the API's
    // error format.
    let app = api::router(state.api.clone()).layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| async move {
            match tokio::time::timeout(timeout, next.run(req)).await {
                Ok(response) => response,
                Err(_) => axum::response::IntoResponse::into_response(api::ApiError::new(
                    axum::http::StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    "The request took longer than server.request_timeout; try again.",
                )),
            }
        },
    ));
    serve_limited(listener, app, limits, shutdown).await
}

/// No task may start any more; waits up to `timeout` for every running one (the sweep in
/// progress, refreshes committing what the platform issued, the last delivery). Returns the
/// tasks still running then, each logged: a refresh at ERROR, as the platform may have
/// rotated its tokens.
pub async fn finish_tasks(tasks: &crate::tasks::Tasks, timeout: std::time::Duration) -> Vec<(&'static str, usize)> {
    let left = tasks.finish(timeout).await;
    for (name, n) in &left {
        if *name == "refresh" {
            tracing::error!(
                refreshes = n,
                timeout = ?timeout,
                "refreshes still running at shutdown were abandoned; the platform may have rotated their tokens \
                 (the accounts may need a reconnect)"
            );
        } else {
            tracing::warn!(task = name, running = n, timeout = ?timeout, "a task did not finish in time; it is dropped");
        }
    }
    left
}

/// What bounds the HTTP server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Headers of a request, and idle time between keep-alive requests.
    pub header_timeout: std::time::Duration,
    /// A whole request.
    pub request_timeout: std::time::Duration,
    /// Open connections.
    pub max_connections: usize,
    /// Open connections from one client address.
    pub max_per_address: usize,
    /// Longest a write to a client may make no progress.
    pub write_timeout: std::time::Duration,
    /// Whether HTTP/2 is served besides HTTP/1.
    pub http2: bool,
    /// Draining on shutdown.
    pub shutdown_timeout: std::time::Duration,
}

impl From<&crate::config::ServerConfig> for Limits {
    fn from(c: &crate::config::ServerConfig) -> Self {
        Limits {
            header_timeout: c.header_timeout.0,
            request_timeout: c.request_timeout.0,
            max_connections: c.max_connections.max(1),
            max_per_address: c.max_connections_per_address.max(1),
            write_timeout: c.write_timeout.0,
            http2: c.http2,
            shutdown_timeout: c.shutdown_timeout.0,
        }
    }
}

/// The accept loop: at most `max_connections` open and `max_connections_per_address` from one
/// client address, making room by closing the oldest idle connection (see [`conns`]);
/// HTTP/1 only unless `server.http2`; connections closed when headers do not arrive in
/// `header_timeout` (which also bounds idle keep-alive, and idle HTTP/2), and when a write
/// makes no progress for `write_timeout`; a graceful stop bounded by `shutdown_timeout`. An
/// accept error (e.g. out of file descriptors) pauses accepting briefly instead of ending
/// the server.
pub async fn serve_limited(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let registry = conns::Registry::new(limits.max_connections, limits.max_per_address);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.header_timeout))
        .keep_alive_timeout(limits.header_timeout)
        .max_concurrent_streams(32)
        .max_header_list_size(16 * 1024)
        .max_pending_accept_reset_streams(16);
    let builder = if limits.http2 { builder } else { builder.http1_only() };
    // Idle HTTP/2 connections (a client may answer PINGs forever) are closed like HTTP/1's.
    let sweeper = {
        let (registry, idle, stop) = (registry.clone(), limits.header_timeout, shutdown.clone());
        tokio::spawn(async move {
            while tokio::time::timeout(Duration::from_secs(1), stop.cancelled())
                .await
                .is_err()
            {
                registry.close_idle(idle);
            }
        })
    };
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "could not accept a connection; pausing accepts briefly");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Room for it, by closing an idle connection if need be; none when every one in the
        // way has a request in flight.
        let Some(admitted) = registry.admit(peer.ip()) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (app, builder, watcher) = (app.clone(), builder.clone(), graceful.watcher());
        let (first_byte, write_timeout, http2) = (limits.header_timeout, limits.write_timeout, limits.http2);
        tokio::spawn(async move {
            let admitted = std::sync::Arc::new(admitted);
            let close = admitted.close.clone();
            // A connection that sends nothing is closed after header_timeout: the protocol
            // sniffing (HTTP/1 or HTTP/2) would otherwise wait for its first byte forever.
            // From then on hyper's header-read timer also bounds idle keep-alive.
            let mut byte = [0u8; 1];
            let first = tokio::select! {
                () = close.cancelled() => return,
                r = tokio::time::timeout(first_byte, stream.peek(&mut byte)) => r,
            };
            if !matches!(first, Ok(Ok(1..))) {
                return;
            }
            let inner = hyper_util::service::TowerToHyperService::new(app);
            let tracked = admitted.clone();
            let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(api::ClientAddr(peer.ip()));
                // In flight until its answer has been sent: the connection is not idle.
                let busy = tracked.request();
                let answer = hyper::service::Service::call(&inner, req);
                async move {
                    let response = answer.await?;
                    Ok::<_, std::convert::Infallible>(
                        response.map(|body| axum::body::Body::new(conns::HoldBody::new(body, busy))),
                    )
                }
            });
            let io = TokioIo::new(conns::DeadlineStream::new(
                stream,
                write_timeout,
                admitted.waiting.clone(),
            ));
            // (`serve_connection` is the one that keeps to HTTP/1 when HTTP/2 is off.)
            if http2 {
                let conn = builder.serve_connection_with_upgrades(io, service).into_owned();
                tokio::select! {
                    _ = watcher.watch(conn) => {}
                    () = close.cancelled() => {}
                }
            } else {
                let conn = builder.serve_connection(io, service).into_owned();
                tokio::select! {
                    _ = watcher.watch(conn) => {}
                    () = close.cancelled() => {}
                }
            }
        });
    }
    sweeper.abort();
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_timeout) => {
            tracing::warn!(
                timeout = ?limits.shutdown_timeout,
                "open connections did not finish in time; they are dropped"
            );
        }
    }
    Ok(())
}

/// Resolves when SIGTERM or SIGINT arrives. The handlers are installed when this is
/// called, not when the future is first polled, so a signal sent right after the daemon
/// says it is serving is never missed (and never kills it with the default action).
pub fn shutdown_signal() -> impl Future<Output = ()> + Send {
    #[cfg(unix)]
    let (term, int) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(term) => {},
                () = wait(int) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// On SIGHUP, reads the config file again and applies what can change without a restart
/// (`email.*`, `schedule.*`, rate limits, `log.level`); logs what changed and what needs a
/// restart. A config that does not load is refused and the running one kept.
fn spawn_reloader(
    state: AppState,
    sched: std::sync::Arc<tokio::sync::Mutex<Option<tokio_cron_scheduler::JobScheduler>>>,
    shutdown: CancellationToken,
) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reloading needs a restart");
            return;
        };
        let tasks = state.tasks.clone();
        tasks.spawn("reload", true, async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    got = hup.recv() => if got.is_none() { return },
                }
                systemd::reloading();
                match state.reload_from_source() {
                    Ok(r) => {
                        if r.cron_changed() {
                            let mut s = sched.lock().await;
                            if let Some(old) = s.as_mut() {
                                let _ = old.shutdown().await;
                            }
                            match scheduler::start(state.sweeper.clone(), shutdown.clone()).await {
                                Ok(new) => *s = new,
                                Err(e) => {
                                    tracing::error!(error = %e, "the new schedule could not start; no sweeps run until a restart")
                                }
                            }
                        }
                        tracing::info!(changed = ?r.changed, "configuration reloaded");
                        if !r.restart.is_empty() {
                            tracing::warn!(keys = ?r.restart, "these keys changed but take effect only after a restart");
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "configuration not reloaded; the running one stays")
                    }
                }
                systemd::ready();
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (state, sched, shutdown);
}

/// Binds `server.listen` with a deep accept backlog: a burst of new connections waits there
/// (holding no file descriptor of ours) until the accept loop takes them.
pub async fn bind(state: &AppState) -> anyhow::Result<TcpListener> {
    let addr = state.config().server.listen.clone();
    bind_addr(&addr)
        .await
        .with_context(|| format!("Failed to listen on {addr} (server.listen)"))
}

/// Binds `addr` (`host:port`) with a backlog of 4,096 (the kernel caps it at somaxconn).
pub async fn bind_addr(addr: &str) -> std::io::Result<TcpListener> {
    let addr: std::net::SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(_) => tokio::net::lookup_host(addr)
            .await?
            .next()
            .ok_or_else(|| std::io::Error::other("the address resolves to nothing"))?,
    };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// `serve`: binds the listener (after migrations, done by [`AppState::build`]) and runs until
/// a signal arrives.
pub async fn run(state: AppState) -> anyhow::Result<()> {
    let listener = bind(&state).await?;
    run_on(listener, state).await
}

/// Serves on `listener` and runs the sweeps until SIGTERM or SIGINT, then stops cleanly:
/// no new requests or sweeps, open requests drained, the sweep in progress finishes its
/// checks and writes (bounded by `schedule.shutdown_timeout`), the pool closes.
pub async fn run_on(listener: TcpListener, state: AppState) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    // The handlers are installed before READY=1, so no signal is missed.
    let signal = shutdown_signal();
    let signal_token = shutdown.clone();
    state.tasks.spawn("signals", true, async move {
        tokio::select! {
            () = signal => {
                tracing::info!("shutdown requested; finishing open requests and the sweep in progress");
                systemd::stopping();
                signal_token.cancel();
            }
            () = signal_token.cancelled() => {}
        }
    });
    run_until(listener, state, shutdown).await
}

/// One line at start that says where the daemon stands: its config file, its database
/// (redacted), the accounts on each platform, the platforms with accounts but no app
/// credentials, the next sweep and where metrics are served.
async fn say_where_it_stands(state: &AppState, metrics: String, next_sweep: Option<i64>) {
    let config = state.config();
    let source = state.config_source().map(|(p, explicit)| {
        let shown = crate::app::absolute(&p).display().to_string();
        if p.exists() {
            shown
        } else if explicit {
            format!("{shown} (missing)")
        } else {
            format!("{shown} (absent: defaults and SOCIALSYNCER_* variables)")
        }
    });
    let counts = state.store.health_counts(0).await.unwrap_or_default();
    let by_platform: Vec<_> = counts.iter().map(|(p, _, n)| (*p, *n)).collect();
    state.problems.set_cadence(&config, &by_platform);
    let mut accounts = Vec::new();
    let mut uncredentialed = Vec::new();
    for p in crate::domain::Platform::ALL {
        let n: i64 = counts.iter().filter(|(q, _, _)| *q == p).map(|(_, _, n)| n).sum();
        if n > 0 {
            accounts.push(format!("{p} {n}"));
            if let Some(missing) = crate::platforms::missing_app_credentials(&config, p) {
                uncredentialed.push(p.as_str().to_owned());
                tracing::warn!(platform = %p, accounts = n, "{missing}");
            }
        }
    }
    tracing::info!(
        config = source.as_deref().unwrap_or("none (built in)"),
        database = %crate::app::database_label(&config),
        accounts = if accounts.is_empty() { "none".to_owned() } else { accounts.join(", ") },
        without_credentials = if uncredentialed.is_empty() { "none".to_owned() } else { uncredentialed.join(", ") },
        next_sweep = next_sweep.map(crate::domain::rfc3339).as_deref().unwrap_or("none (schedule.cron is empty)"),
        metrics = %metrics,
        "where socialsyncer stands"
    );
}

/// The whole daemon on `listener` (HTTP, sweeps, alert delivery, watchdog, reload) until
/// `shutdown` fires, then the same clean stop as on SIGTERM. Tests start and stop the daemon
/// in-process with it.
pub async fn run_until(listener: TcpListener, state: AppState, shutdown: CancellationToken) -> anyhow::Result<()> {
    let tasks = state.tasks.clone();
    state.metrics.set_last_sweep(state.store.last_check_at().await?);
    let started = scheduler::start_with_next(state.sweeper.clone(), shutdown.clone()).await?;
    let next_sweep = started.as_ref().and_then(|(_, next)| *next);
    let sched = started.map(|(s, _)| s);
    tasks.spawn(
        "alert delivery",
        false,
        alerts::run(state.outbox.clone(), shutdown.clone()),
    );
    tasks.spawn(
        "heartbeat",
        false,
        crate::cluster::run(state.cluster.clone(), shutdown.clone()),
    );
    let metrics_at = match state.config().server.metrics_listen.trim() {
        "" => format!("http://{}/metrics", listener.local_addr()?),
        addr => {
            let l = bind_addr(addr)
                .await
                .with_context(|| format!("Failed to listen on {addr} (server.metrics_listen)"))?;
            tracing::info!(metrics_listen = %l.local_addr()?, "Prometheus metrics are served at /metrics");
            let at = format!("http://{}/metrics", l.local_addr()?);
            let (app, stop) = (api::metrics_router(state.api.clone()), shutdown.clone());
            let limits = Limits::from(&state.config().server);
            tasks.spawn("metrics listener", false, async move {
                if let Err(e) = serve_limited(l, app, limits, stop).await {
                    tracing::error!(error = %e, "the metrics listener stopped");
                }
            });
            at
        }
    };
    match state.config().connect.listen.trim() {
        "" => {}
        addr => {
            let l = bind_addr(addr)
                .await
                .with_context(|| format!("Failed to listen on {addr} (connect.listen)"))?;
            tracing::info!(connect_listen = %l.local_addr()?, "connect links are served at /connect/");
            let app = api::connect::router(state.api.connector.clone(), state.api.key_limiter.clone());
            let (limits, stop) = (Limits::from(&state.config().server), shutdown.clone());
            tasks.spawn("connect listener", false, async move {
                if let Err(e) = serve_limited(l, app, limits, stop).await {
                    tracing::error!(error = %e, "the connect listener stopped");
                }
            });
        }
    }
    if state.config().email.smtp_url.is_some() && state.config().email.to.is_empty() {
        tracing::warn!(
            "email.smtp_url is set but email.to is empty: alerts reach only the workspaces that set recipients \
             (PUT /v1/notifications); the others wait in the outbox until they do"
        );
    }
    let sched = std::sync::Arc::new(tokio::sync::Mutex::new(sched));
    // SIGHUP is handled before anyone is told the daemon is up: a reload sent right after
    // READY=1 (or the log line) must not meet the default action, which ends the process.
    spawn_reloader(state.clone(), sched.clone(), shutdown.clone());
    systemd::spawn_watchdog(&tasks, state.store.clone(), shutdown.clone());
    tracing::info!(listen = %listener.local_addr()?, "socialsyncer is serving");
    say_where_it_stands(&state, metrics_at, next_sweep).await;
    systemd::ready();
    let store = state.store.clone();
    // The sweep in progress finishes within schedule.shutdown_timeout, a refresh within the
    // token endpoint's timeout, the last delivery within 10 s: all of them, at once.
    let limit = state
        .config()
        .schedule
        .shutdown_timeout
        .0
        .max(state.config().http.token_request_timeout.0)
        .max(Duration::from_secs(10));
    serve_http(listener, state, shutdown.clone()).await?;
    if let Some(s) = sched.lock().await.as_mut()
        && let Err(e) = s.shutdown().await
    {
        tracing::warn!(error = %e, "scheduler did not shut down cleanly");
    }
    // Refreshes in flight commit what the platform issued before the store closes.
    let left = finish_tasks(&tasks, limit).await;
    store.close().await;
    if left.is_empty() {
        tracing::info!("stopped cleanly");
    } else {
        tracing::info!(unfinished = left.len(), "stopped; some tasks were abandoned");
    }
    Ok(())
}
