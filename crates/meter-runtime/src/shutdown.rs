//! Shutdown on SIGINT / SIGTERM.

use tokio_util::sync::CancellationToken;

/// Cancels `token` at the first SIGINT or SIGTERM.
pub async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
            _ = token.cancelled() => return,
        }
    }
    #[cfg(not(unix))]
    tokio::select! {
        _ = ctrl_c => {}
        _ = token.cancelled() => return,
    }
    tracing::info!("runtime.shutdown_requested");
    token.cancel();
}

/// Runs `part` and cancels `token` when it ends, however it ends: a server
/// or loop whose failure must stop the rest of its role (which then
/// returns that failure, so meterd exits and is restarted) instead of
/// leaving the process alive with half of it.
pub async fn cancel_when_done<F: std::future::IntoFuture>(part: F, token: CancellationToken) -> F::Output {
    let out = part.await;
    token.cancel();
    out
}
