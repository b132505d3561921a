//! A circuit breaker: after consecutive failures it opens for a while, then
//! lets one trial through (half-open); a success closes it. Consumers pause
//! their partitions while it is open; the router uses one per shard.

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long it stays open before a trial.
    pub open_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_ms: 2_000,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
struct Inner {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    trial_in_flight: bool,
}

/// Thread-safe breaker; `subscribe` tells whether calls are held back.
#[derive(Debug)]
pub struct CircuitBreaker {
    cfg: BreakerConfig,
    inner: Mutex<Inner>,
    open_tx: watch::Sender<bool>,
}

impl CircuitBreaker {
    pub fn new(cfg: BreakerConfig) -> Self {
        let (open_tx, _) = watch::channel(false);
        Self {
            cfg,
            inner: Mutex::new(Inner {
                consecutive_failures: 0,
                open_until: None,
                trial_in_flight: false,
            }),
            open_tx,
        }
    }

    pub fn state(&self) -> BreakerState {
        let g = self.inner.lock().expect("breaker lock");
        match g.open_until {
            None => BreakerState::Closed,
            Some(t) if Instant::now() < t => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// Whether a call may go ahead now. In half-open state only one trial at a time.
    pub fn try_acquire(&self) -> bool {
        let mut g = self.inner.lock().expect("breaker lock");
        match g.open_until {
            None => true,
            Some(t) if Instant::now() < t => false,
            Some(_) if g.trial_in_flight => false,
            Some(_) => {
                g.trial_in_flight = true;
                true
            }
        }
    }

    /// When the breaker will next allow a trial (now if it is closed).
    pub fn retry_at(&self) -> Instant {
        let g = self.inner.lock().expect("breaker lock");
        g.open_until.unwrap_or_else(Instant::now)
    }

    pub fn record_success(&self) {
        let mut g = self.inner.lock().expect("breaker lock");
        g.consecutive_failures = 0;
        g.trial_in_flight = false;
        if g.open_until.take().is_some() {
            self.open_tx.send_replace(false);
        }
    }

    pub fn record_failure(&self) {
        let mut g = self.inner.lock().expect("breaker lock");
        g.consecutive_failures = g.consecutive_failures.saturating_add(1);
        let was_open = g.open_until.is_some();
        if was_open || g.consecutive_failures >= self.cfg.failure_threshold {
            g.open_until = Some(Instant::now() + Duration::from_millis(self.cfg.open_ms));
            g.trial_in_flight = false;
            if !was_open {
                self.open_tx.send_replace(true);
            }
        }
    }

    /// A receiver that is `true` while the breaker is open or half-open.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.open_tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_half_opens_and_closes() {
        let b = CircuitBreaker::new(BreakerConfig {
            failure_threshold: 3,
            open_ms: 1000,
        });
        let rx = b.subscribe();
        for _ in 0..2 {
            b.record_failure();
        }
        assert_eq!(b.state(), BreakerState::Closed);
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(*rx.borrow());
        assert!(!b.try_acquire());
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.try_acquire());
        assert!(!b.try_acquire(), "one trial at a time");
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Open, "failed trial reopens");
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert!(b.try_acquire());
        b.record_success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(!*rx.borrow());
    }
}
