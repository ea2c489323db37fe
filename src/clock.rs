//! Time, as the service reads it. Production reads the system clock; tests
//! hand the service a [`ManualClock`] and move it forward instead of
//! sleeping, so expiry, windows and session timeouts are tested in no time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// A source of unix time in seconds.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> i64;
}

/// A clock shared by the service, the store sweeper and the tests.
pub type SharedClock = Arc<dyn Clock>;

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

/// Current unix time in seconds from the system clock.
pub fn system_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        system_now()
    }
}

/// The system clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock for tests: the real time plus an offset that only grows. It
/// starts at the real time, keeps moving with it, and jumps forward on
/// [`ManualClock::advance`]; it never goes back.
#[derive(Debug, Default)]
pub struct ManualClock {
    offset: AtomicI64,
}

impl ManualClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Moves the clock forward by `secs` (negative values are ignored).
    pub fn advance(&self, secs: i64) {
        self.offset.fetch_add(secs.max(0), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        system_now() + self.offset.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_starts_now_and_only_moves_forward() {
        let c = ManualClock::new();
        let start = c.now();
        assert!((start - system_now()).abs() <= 1);
        c.advance(3600);
        assert!(c.now() >= start + 3600);
        c.advance(-7200);
        assert!(c.now() >= start + 3600);
    }
}
