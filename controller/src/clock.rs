//! Time, injected. The calendar and the clock loop ask a [`Clock`] for "now"
//! and to wait until a time, so tests move time by hand instead of
//! sleeping, and a restarted controller simply reads the time again.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// The controller's clock: the system clock, or a manual one for tests.
#[derive(Clone, Debug)]
pub enum Clock {
    System,
    Manual(Arc<ManualClock>),
}

impl Clock {
    /// A manual clock starting at `start`, and the handle that moves it.
    pub fn manual(start: DateTime<Utc>) -> (Clock, Arc<ManualClock>) {
        let (tx, _) = watch::channel(start);
        let m = Arc::new(ManualClock { now: Mutex::new(start), changed: tx });
        (Clock::Manual(m.clone()), m)
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Manual(m) => m.now(),
        }
    }

    /// Waits until the clock reads `t` or later.
    pub async fn sleep_until(&self, t: DateTime<Utc>) {
        match self {
            Clock::System => {
                let wait = (t - Utc::now()).to_std().unwrap_or_default();
                tokio::time::sleep(wait).await;
            }
            Clock::Manual(m) => {
                let mut rx = m.changed.subscribe();
                while m.now() < t {
                    if rx.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
    changed: watch::Sender<DateTime<Utc>>,
}

impl ManualClock {
    pub fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the clock forward by `d` and wakes everything waiting on it.
    pub fn advance(&self, d: chrono::Duration) {
        let t = {
            let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
            *now += d;
            *now
        };
        self.changed.send_replace(t);
    }
}
