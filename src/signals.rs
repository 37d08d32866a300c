//! Process signals: the ones that end the proxy and the one that reloads it.

/// Completes on the first shutdown signal.
pub async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        // SIGTERM — Kubernetes, ECS, systemd and docker stop send this to start a graceful shutdown.
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(err) => {
                tracing::warn!(cause = %err, "cannot listen for SIGTERM; only Ctrl-C stops the proxy gracefully");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            // SIGINT — Ctrl-C in a terminal.
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Yields once per SIGHUP — "reload your configuration", by convention (`kill -HUP`,
/// `systemctl reload`). Never yields where there is no SIGHUP.
pub fn reload() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        tracing::info!("SIGHUP received: reloading the configuration");
                        // A reload already queued covers this one too.
                        let _ = tx.try_send(());
                    }
                });
            }
            Err(err) => {
                tracing::warn!(cause = %err, "cannot listen for SIGHUP; reload needs a restart")
            }
        }
    }
    #[cfg(not(unix))]
    std::mem::forget(tx);
    rx
}
