//! Shutdown as a value passed to every task that must stop cleanly, rather
//! than a global flag.

use tokio::sync::watch;

/// Tells tasks that the process is stopping.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// The sending half, held by whoever decides to stop.
pub struct Trigger(watch::Sender<bool>);

/// A linked trigger and shutdown handle.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    /// Tells every holder of the matching [`Shutdown`] to stop.
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    /// Resolves once shutdown has been triggered (or the trigger dropped).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Whether shutdown has been triggered.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
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
