//! The failed-login throttle. Each attempt is counted as a failure before
//! the password is even checked (atomically, so a parallel burst cannot slip
//! past the count) and un-counted when it succeeds. Limits are per client
//! address and login pair, with a back-off that doubles per failure past the
//! limit (a stranger can only lock out themselves, and a blocked client is
//! not kept blocked by its own retries during the back-off), and per client
//! address over a fixed window (spraying many logins from one address).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use ipnet::IpNet;
use moka::ops::compute::Op;
use moka::sync::Cache;

use cellbank_shared::problem::Problem;

/// The longest back-off a client and login pair can earn.
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// Failures of one client at one login.
#[derive(Clone, Copy, Debug)]
struct Pair {
    failures: u32,
    blocked_until: Option<Instant>,
}

/// Failures of one client address within a window that starts at its first.
#[derive(Clone, Copy, Debug)]
struct Window {
    started: Instant,
    failures: u32,
}

/// Counts failed logins per client and login, and per client.
#[derive(Clone)]
pub struct LoginGuard {
    pairs: Cache<(IpAddr, String), Pair>,
    addrs: Cache<IpAddr, Window>,
    max: u32,
    window: Duration,
    base_backoff: Duration,
}

/// An attempt counted as a failure until [`LoginGuard::succeeded`] says not.
#[derive(Debug)]
pub struct Attempt {
    addr: IpAddr,
    login: String,
}

fn too_many(wait: Duration) -> Problem {
    crate::metrics::refused("login_throttled");
    Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too-many-requests",
        "too many failed logins",
    )
    .detail("too many failed logins from this client; try again later")
    .retry_after(wait.as_secs().max(1))
}

impl LoginGuard {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            pairs: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_idle(MAX_BACKOFF.max(window))
                .build(),
            addrs: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(window)
                .build(),
            max: max_failures.max(1),
            window,
            base_backoff: Duration::from_secs(1),
        }
    }

    /// Counts an attempt as a failure up front, or refuses it with 429.
    pub fn begin(&self, login: &str, addr: IpAddr) -> Result<Attempt, Problem> {
        let now = Instant::now();
        self.count_addr(addr, now)?;
        let mut refused = None;
        let (max, base) = (self.max, self.base_backoff);
        self.pairs
            .entry((addr, login.to_owned()))
            .and_compute_with(|cached| {
                let pair = cached.map(|e| e.into_value()).unwrap_or(Pair {
                    failures: 0,
                    blocked_until: None,
                });
                if let Some(until) = pair.blocked_until.filter(|u| *u > now) {
                    refused = Some(until - now);
                    return Op::Nop;
                }
                let failures = pair.failures.saturating_add(1);
                let blocked_until = (failures >= max).then(|| {
                    let doublings = (failures - max).min(20);
                    now + (base * 2u32.pow(doublings)).min(MAX_BACKOFF)
                });
                Op::Put(Pair {
                    failures,
                    blocked_until,
                })
            });
        if let Some(wait) = refused {
            self.uncount_addr(addr);
            return Err(too_many(wait));
        }
        Ok(Attempt {
            addr,
            login: login.to_owned(),
        })
    }

    /// One more failure of `addr` in its window, or 429 when it is over.
    fn count_addr(&self, addr: IpAddr, now: Instant) -> Result<(), Problem> {
        let (limit, window) = (self.max.saturating_mul(10), self.window);
        let mut refused = None;
        self.addrs.entry(addr).and_compute_with(|cached| {
            let w = cached
                .map(|e| e.into_value())
                .filter(|w| now.duration_since(w.started) < window)
                .unwrap_or(Window {
                    started: now,
                    failures: 0,
                });
            if w.failures >= limit {
                refused = Some(window.saturating_sub(now.duration_since(w.started)));
                return Op::Nop;
            }
            Op::Put(Window {
                failures: w.failures + 1,
                ..w
            })
        });
        refused.map_or(Ok(()), |wait| Err(too_many(wait)))
    }

    fn uncount_addr(&self, addr: IpAddr) {
        self.addrs
            .entry(addr)
            .and_compute_with(|cached| match cached {
                Some(e) => {
                    let w = e.into_value();
                    Op::Put(Window {
                        failures: w.failures.saturating_sub(1),
                        ..w
                    })
                }
                None => Op::Nop,
            });
    }

    /// The attempt succeeded: its pair is forgotten and its address
    /// un-counted.
    pub fn succeeded(&self, attempt: Attempt) {
        self.pairs.invalidate(&(attempt.addr, attempt.login));
        self.uncount_addr(attempt.addr);
    }
}

/// The client's address. Behind the ingress every connection comes from a
/// proxy, so `X-Forwarded-For` is read, from the right, only when the peer
/// is a trusted proxy: the first hop that is not itself a trusted proxy is
/// the client. From any other peer the header is ignored.
pub fn client_addr(headers: &HeaderMap, peer: SocketAddr, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer.ip()) {
        return peer.ip();
    }
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if is_trusted(&ip) => continue,
            Ok(ip) => return ip,
            Err(_) => break,
        }
    }
    peer.ip()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_pair_backs_off_and_other_clients_are_not_locked_out() {
        let g = LoginGuard::new(3, Duration::from_secs(60));
        let (stranger, owner) = (ip("10.0.0.1"), ip("10.0.0.2"));
        for _ in 0..3 {
            let _failed = g.begin("ana", stranger).expect("within the limit");
        }
        let p = g.begin("ana", stranger).unwrap_err();
        assert_eq!(p.status, 429);
        assert!(p.retry_after.unwrap() >= 1);
        let ok = g
            .begin("ana", owner)
            .expect("the owner's own address is not locked");
        g.succeeded(ok);
        assert!(
            g.begin("bia", stranger).is_ok(),
            "other logins are not affected"
        );
    }

    #[test]
    fn an_address_spraying_logins_is_limited_within_a_fixed_window() {
        let g = LoginGuard::new(1, Duration::from_secs(60));
        let a = ip("10.0.0.9");
        for i in 0..10 {
            let _failed = g
                .begin(&format!("user{i}"), a)
                .expect("within the address limit");
        }
        assert_eq!(g.begin("someone-else", a).unwrap_err().status, 429);
    }

    #[test]
    fn success_uncounts_the_attempt() {
        let g = LoginGuard::new(1, Duration::from_secs(60));
        let a = ip("10.0.0.3");
        for _ in 0..5 {
            let attempt = g.begin("ana", a).expect("successes do not add up");
            g.succeeded(attempt);
        }
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.1.0.0/16".parse().unwrap()];
        let proxy: SocketAddr = "10.1.1.1:5000".parse().unwrap();
        let stranger: SocketAddr = "203.0.113.9:5000".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "1.2.3.4, 198.51.100.7, 10.1.2.2".parse().unwrap(),
        );
        assert_eq!(client_addr(&h, proxy, &trusted), ip("198.51.100.7"));
        assert_eq!(
            client_addr(&h, stranger, &trusted),
            stranger.ip(),
            "spoofed header ignored"
        );
        assert_eq!(
            client_addr(&h, proxy, &[]),
            proxy.ip(),
            "no trusted proxies configured"
        );
        h.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(client_addr(&h, proxy, &trusted), proxy.ip());
    }
}
