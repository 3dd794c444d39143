//! Running the daemon: the HTTP listener and background jobs, with graceful shutdown.

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api;
use crate::app::AppState;

/// Serves the API on `listener` until `shutdown` is cancelled, then drains open requests.
pub async fn serve_http(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let app = api::router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("HTTP server failed")
}

/// Resolves when SIGTERM or SIGINT arrives.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Binds `server.listen`.
pub async fn bind(state: &AppState) -> anyhow::Result<TcpListener> {
    let addr = &state.config.server.listen;
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("Failed to listen on {addr} (server.listen)"))
}

/// `serve`: binds the listener (after migrations, done by [`AppState::build`]) and runs until
/// a signal arrives.
pub async fn run(state: AppState) -> anyhow::Result<()> {
    let listener = bind(&state).await?;
    run_on(listener, state).await
}

/// Serves on `listener` until SIGTERM or SIGINT, then stops cleanly.
pub async fn run_on(listener: TcpListener, state: AppState) -> anyhow::Result<()> {
    tracing::info!(listen = %listener.local_addr()?, "socialsyncer is serving");
    let shutdown = CancellationToken::new();
    let signal_token = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested; finishing open requests");
        signal_token.cancel();
    });
    let store = state.store.clone();
    serve_http(listener, state, shutdown).await?;
    store.close().await;
    tracing::info!("stopped cleanly");
    Ok(())
}
