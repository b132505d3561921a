//! Load shedding that follows what the service can do now: a limit on the
//! requests in flight that shrinks when answers get slow and grows back when
//! they are fast again (additive increase, multiplicative decrease, as TCP
//! and Netflix's concurrency-limits do). Past the limit a request is
//! answered at once with 503 and `Retry-After`, so under overload the
//! admitted ones keep a bounded latency and nothing queues without end.
//!
//! A static bound alone does not do it: 1,024 requests in flight on a
//! service that finishes 165 a second wait six seconds each, past every
//! client's timeout (measured by the chaos run's overload phase).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Decreases are at most this often: one slow burst of answers is one
/// signal, not hundreds.
const DECREASE_EVERY: Duration = Duration::from_millis(100);
/// How fast the limit grows back (see [`Admission::finished`]).
const GROWTH: f64 = 10.0;
/// The limit never goes under this, so a service always serves some.
const FLOOR: usize = 8;

/// A response extension: this answer's time was spent waiting on a
/// dependency that failed (a cell that is down or paused), not on this
/// service's own capacity. Its latency is not fed back, so one faulted
/// cell does not shrink the admission of every other cell's requests
/// (found by the chaos run: 6.15 % of the other cells' requests shed while
/// one cell was faulted).
#[derive(Clone, Copy, Debug)]
pub struct WaitedOnAFailure;

/// The shared admission state of one listener.
#[derive(Debug)]
pub struct Admission {
    in_flight: AtomicUsize,
    state: Mutex<Limit>,
    max: usize,
    min: usize,
    slow: Duration,
}

#[derive(Debug)]
struct Limit {
    value: f64,
    last_decrease: Option<Instant>,
}

/// One admitted request. Leaving frees its place and feeds back how long
/// it took, also when it is dropped unanswered (a deadline that cut it
/// short is the slowest answer of all).
pub struct Ticket {
    admission: Arc<Admission>,
    entered: Instant,
    /// Whether its time says something about this service's capacity.
    counts: bool,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let now = Instant::now();
        if self.counts {
            self.admission
                .finished(now.duration_since(self.entered), now);
        }
        self.admission.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    /// At most `max` in flight; an answer slower than `slow` is a sign of
    /// queueing and lowers the limit.
    pub fn new(max: usize, slow: Duration) -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            state: Mutex::new(Limit {
                value: max as f64,
                last_decrease: None,
            }),
            max,
            min: FLOOR.min(max),
            slow,
        })
    }

    /// The current limit, rounded down.
    pub fn limit(&self) -> usize {
        self.state.lock().expect("admission lock").value as usize
    }

    /// A place, or `None` when the limit is reached.
    pub fn try_enter(self: &Arc<Self>) -> Option<Ticket> {
        let limit = self.limit().max(self.min);
        let admitted = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok();
        admitted.then(|| Ticket {
            admission: self.clone(),
            entered: Instant::now(),
            counts: true,
        })
    }

    /// Feeds back how long an admitted request took, at `now`.
    fn finished(&self, took: Duration, now: Instant) {
        let mut s = self.state.lock().expect("admission lock");
        if took > self.slow {
            let due = s
                .last_decrease
                .is_none_or(|t| now.duration_since(t) >= DECREASE_EVERY);
            if due {
                s.value = (s.value * 0.9).max(self.min as f64);
                s.last_decrease = Some(now);
            }
        } else {
            // +10 per limit's worth of fast answers: from the floor back to
            // 165 in about 1,400 fast answers
            s.value = (s.value + GROWTH / s.value.max(1.0)).min(self.max as f64);
        }
    }
}

/// The middleware: admits (the ticket feeds back the answer's time when
/// it is dropped) or sheds.
pub async fn admit(State(a): State<Arc<Admission>>, req: Request, next: Next) -> Response {
    let Some(mut ticket) = a.try_enter() else {
        crate::metrics::shed();
        return crate::problem::Problem::unavailable("at capacity; retry", 1).into_response();
    };
    let resp = next.run(req).await;
    ticket.counts = resp.extensions().get::<WaitedOnAFailure>().is_none();
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLOW: Duration = Duration::from_millis(500);

    #[test]
    fn the_limit_bounds_what_is_in_flight_and_a_leaving_request_frees_its_place() {
        let a = Admission::new(2, SLOW);
        let one = a.try_enter().expect("first");
        let two = a.try_enter().expect("second");
        assert!(a.try_enter().is_none(), "a third is shed");
        drop(one);
        let _three = a.try_enter().expect("a freed place is taken again");
        drop(two);
    }

    #[test]
    fn slow_answers_shrink_the_limit_to_the_floor_and_fast_ones_grow_it_back() {
        let a = Admission::new(1024, SLOW);
        let t0 = Instant::now();
        for i in 0..200u64 {
            a.finished(Duration::from_secs(2), t0 + DECREASE_EVERY * i as u32);
        }
        assert_eq!(a.limit(), FLOOR, "shrunk to the floor, not below");
        for _ in 0..5_000 {
            a.finished(Duration::from_millis(5), t0);
        }
        assert!(a.limit() > 300, "grew back: {}", a.limit());
        for _ in 0..200_000 {
            a.finished(Duration::from_millis(5), t0);
        }
        assert_eq!(a.limit(), 1024, "never past the configured bound");
    }

    #[test]
    fn a_request_dropped_unanswered_counts_as_slow() {
        let a = Admission::new(100, Duration::from_millis(10));
        let cut_short = a.try_enter().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        drop(cut_short);
        assert_eq!(a.limit(), 90);
        assert_eq!(a.in_flight.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_slow_answer_spent_waiting_on_a_failed_dependency_does_not_count() {
        let a = Admission::new(100, Duration::from_millis(10));
        let mut waited = a.try_enter().unwrap();
        waited.counts = false;
        std::thread::sleep(Duration::from_millis(20));
        drop(waited);
        assert_eq!(a.limit(), 100);
    }

    #[test]
    fn a_burst_of_slow_answers_at_once_is_one_decrease() {
        let a = Admission::new(1000, SLOW);
        let now = Instant::now();
        for _ in 0..500 {
            a.finished(Duration::from_secs(3), now);
        }
        assert_eq!(a.limit(), 900);
        a.finished(Duration::from_secs(3), now + DECREASE_EVERY);
        assert_eq!(a.limit(), 810);
    }
}
