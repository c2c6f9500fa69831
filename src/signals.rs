//! Signals a running `weir serve` acts on, each with a log line: SIGTERM,
//! SIGINT and SIGQUIT stop it (cleanly: see the README's Stopping); SIGHUP
//! and SIGUSR2 (Fluentd's graceful reload) reload the config; SIGUSR1,
//! SIGALRM, SIGIO and SIGPWR, which would end the process without a word,
//! are ignored and logged. SIGPIPE is ignored by Rust programs already.

use tokio::sync::{mpsc, oneshot};

/// Listens for signals (call inside the runtime): resolves the returned
/// receiver on the first stop signal, and sends one message per reload
/// signal.
pub fn listen() -> (oneshot::Receiver<()>, mpsc::Receiver<()>) {
    let (stop_tx, stop_rx) = oneshot::channel();
    let (reload_tx, reload_rx) = mpsc::channel(4);
    tokio::spawn(async move {
        run(stop_tx, reload_tx).await;
    });
    (stop_rx, reload_rx)
}

#[cfg(unix)]
async fn run(stop: oneshot::Sender<()>, reload: mpsc::Sender<()>) {
    use tokio::signal::unix::{signal, SignalKind};
    let kinds = [
        ("SIGTERM", SignalKind::terminate(), Action::Stop),
        ("SIGINT", SignalKind::interrupt(), Action::Stop),
        ("SIGQUIT", SignalKind::quit(), Action::Stop),
        ("SIGHUP", SignalKind::hangup(), Action::Reload),
        ("SIGUSR2", SignalKind::user_defined2(), Action::Reload),
        ("SIGUSR1", SignalKind::user_defined1(), Action::Ignore),
        ("SIGALRM", SignalKind::alarm(), Action::Ignore),
        ("SIGIO", SignalKind::io(), Action::Ignore),
        ("SIGPWR", SignalKind::from_raw(libc::SIGPWR), Action::Ignore),
    ];
    let (tx, mut rx) = mpsc::channel::<(&'static str, Action)>(16);
    for (name, kind, action) in kinds {
        match signal(kind) {
            Ok(mut s) => {
                let tx = tx.clone();
                tokio::spawn(async move {
                    while s.recv().await.is_some() {
                        if tx.send((name, action)).await.is_err() {
                            break;
                        }
                    }
                });
            }
            Err(e) => tracing::warn!(signal = name, error = %e, "cannot listen for a signal"),
        }
    }
    drop(tx);
    let mut stop = Some(stop);
    while let Some((name, action)) = rx.recv().await {
        match action {
            Action::Stop => {
                tracing::info!(signal = name, "stopping");
                if let Some(s) = stop.take() {
                    let _ = s.send(());
                }
            }
            Action::Reload => {
                tracing::info!(signal = name, "reloading the config");
                let _ = reload.try_send(());
            }
            Action::Ignore => tracing::info!(
                signal = name,
                "ignored: weir stops on SIGTERM/SIGINT/SIGQUIT and reloads its config on SIGHUP/SIGUSR2"
            ),
        }
    }
}

#[cfg(not(unix))]
async fn run(stop: oneshot::Sender<()>, _reload: mpsc::Sender<()>) {
    let _ = tokio::signal::ctrl_c().await;
    let _ = stop.send(());
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Stop,
    Reload,
    Ignore,
}
