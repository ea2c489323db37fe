//! Shutdown as a value passed to every task that must stop cleanly, rather
//! than a global flag.

use tokio::sync::watch;

/// The stages of stopping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Running,
    /// Still serving, but reporting NOT_SERVING so traffic moves away.
    Draining,
    Stopping,
}

/// Tells tasks that the process is stopping.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<Stage>);

/// The sending half, held by whoever decides to stop.
pub struct Trigger(watch::Sender<Stage>);

/// A linked trigger and shutdown handle.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(Stage::Running);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    /// Enters the drain period: tasks that report readiness stop doing so.
    pub fn draining(&self) {
        self.0.send_if_modified(|s| {
            let changed = *s < Stage::Draining;
            *s = (*s).max(Stage::Draining);
            changed
        });
    }

    /// Tells every holder of the matching [`Shutdown`] to stop.
    pub fn fire(&self) {
        let _ = self.0.send(Stage::Stopping);
    }
}

impl Shutdown {
    /// Resolves once shutdown has been triggered (or the trigger dropped).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|s| *s == Stage::Stopping).await;
    }

    /// Whether the drain period (or the stop itself) has begun.
    pub fn is_draining(&self) -> bool {
        *self.0.borrow() >= Stage::Draining
    }
}

/// Resolves on SIGTERM (Kubernetes) or SIGINT (Ctrl-C).
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
