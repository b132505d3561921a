//! A circuit breaker: after consecutive failures it opens for a while, then
//! lets one trial through (half-open); a success closes it. Consumers pause
//! their partitions while it is open; the router uses one per shard, through
//! [`Permit`]s, so that a trial whose caller gave up never blocks the next.

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
    /// The half-open trial in flight, by number.
    trial: Option<u64>,
    trials: u64,
}

impl Inner {
    /// Leave for one call now: `Some(None)` while closed, `Some(Some(n))`
    /// for half-open trial `n`, `None` while open or a trial is in flight.
    fn admit(&mut self) -> Option<Option<u64>> {
        match self.open_until {
            None => Some(None),
            Some(t) if Instant::now() < t => None,
            Some(_) if self.trial.is_some() => None,
            Some(_) => {
                self.trials += 1;
                self.trial = Some(self.trials);
                Some(self.trial)
            }
        }
    }
}

/// Leave to make one call. Say how it went with [`Permit::succeeded`] or
/// [`Permit::failed`]; dropped without either (the caller was cancelled or
/// timed out, or [`Permit::neutral`]: the outcome says nothing about the
/// peer), it counts as neither, and a half-open trial passes to the next caller.
#[must_use = "a permit records the call's outcome"]
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    trial: Option<u64>,
}

impl Permit<'_> {
    pub fn succeeded(self) {
        self.breaker.record_success();
    }

    pub fn failed(self) {
        self.breaker.record_failure();
    }

    /// Counts as neither a success nor a failure.
    pub fn neutral(self) {}

    /// Whether this call is the half-open trial.
    pub fn is_trial(&self) -> bool {
        self.trial.is_some()
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let Some(n) = self.trial else { return };
        let mut g = self.breaker.inner.lock().expect("breaker lock");
        // Still this trial's turn (no outcome was recorded): hand it on.
        if g.trial == Some(n) {
            g.trial = None;
        }
    }
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
                trial: None,
                trials: 0,
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

    /// Leave for one call, or `None` while the breaker holds calls back. In
    /// half-open state only one trial at a time; see [`Permit`].
    pub fn acquire(&self) -> Option<Permit<'_>> {
        let trial = self.inner.lock().expect("breaker lock").admit()?;
        Some(Permit {
            breaker: self,
            trial,
        })
    }

    /// Whether a call may go ahead now (in half-open state only one trial at
    /// a time); the caller must then record its outcome, even if it is
    /// stopped. Callers that may be cancelled use [`Self::acquire`].
    pub fn try_acquire(&self) -> bool {
        self.inner.lock().expect("breaker lock").admit().is_some()
    }

    /// When the breaker will next allow a trial (now if it is closed).
    pub fn retry_at(&self) -> Instant {
        let g = self.inner.lock().expect("breaker lock");
        g.open_until.unwrap_or_else(Instant::now)
    }

    pub fn record_success(&self) {
        let mut g = self.inner.lock().expect("breaker lock");
        g.consecutive_failures = 0;
        g.trial = None;
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
            g.trial = None;
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

    fn opened(open_ms: u64) -> CircuitBreaker {
        let b = CircuitBreaker::new(BreakerConfig {
            failure_threshold: 1,
            open_ms,
        });
        b.acquire().expect("closed").failed();
        assert_eq!(b.state(), BreakerState::Open);
        b
    }

    /// A half-open probe whose caller is gone (its future dropped by a
    /// timeout) hands the trial to the next caller instead of keeping the
    /// breaker shut forever.
    #[tokio::test(start_paused = true)]
    async fn a_cancelled_trial_lets_the_next_caller_probe() {
        let b = opened(1000);
        assert!(b.acquire().is_none());
        tokio::time::advance(Duration::from_millis(1001)).await;
        let probe = async {
            let permit = b.acquire().expect("the trial");
            assert!(permit.is_trial());
            std::future::pending::<()>().await;
            permit.succeeded();
        };
        let cut = tokio::time::timeout(Duration::from_millis(50), probe).await;
        assert!(cut.is_err(), "the probe was cut off mid-flight");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let next = b.acquire().expect("the next caller probes");
        assert!(b.acquire().is_none(), "still one trial at a time");
        next.succeeded();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(!*b.subscribe().borrow());
    }

    #[tokio::test(start_paused = true)]
    async fn a_neutral_outcome_counts_as_neither() {
        let b = CircuitBreaker::new(BreakerConfig {
            failure_threshold: 2,
            open_ms: 1000,
        });
        b.acquire().unwrap().failed();
        b.acquire().unwrap().neutral();
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "a neutral call is no failure"
        );
        b.acquire().unwrap().failed();
        assert_eq!(b.state(), BreakerState::Open, "nor does it reset the count");
        tokio::time::advance(Duration::from_millis(1001)).await;
        b.acquire().expect("trial").neutral();
        b.acquire()
            .expect("a neutral trial hands the trial on")
            .failed();
        assert_eq!(b.state(), BreakerState::Open);
        // Dropping the trial unused hands it on as well.
        tokio::time::advance(Duration::from_millis(1001)).await;
        let trial = b.acquire().expect("trial");
        assert!(b.acquire().is_none());
        drop(trial);
        assert!(b.acquire().is_some());
    }
}
