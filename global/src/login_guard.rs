//! The failed-login throttle: counts failed logins per login and per client
//! address within a window, and answers 429 once either is over its limit.

use std::net::IpAddr;
use std::time::Duration;

use axum::http::StatusCode;
use moka::sync::Cache;

use cellbank_shared::problem::Problem;

/// Counts failed logins per login and per client address within a window.
#[derive(Clone)]
pub struct LoginGuard {
    by_login: Cache<String, u32>,
    by_addr: Cache<IpAddr, u32>,
    max: u32,
    window: Duration,
}

impl LoginGuard {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            by_login: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(window)
                .build(),
            by_addr: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(window)
                .build(),
            max: max_failures,
            window,
        }
    }

    fn addr_max(&self) -> u32 {
        self.max.saturating_mul(10)
    }

    /// Refuses with 429 when the login or the address failed too often.
    pub fn check(&self, login: &str, addr: IpAddr) -> Result<(), Problem> {
        let login_failures = self.by_login.get(login).unwrap_or(0);
        let addr_failures = self.by_addr.get(&addr).unwrap_or(0);
        if login_failures >= self.max || addr_failures >= self.addr_max() {
            return Err(Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-requests",
                "too many failed logins",
            )
            .detail("too many failed logins; try again later")
            .retry_after(self.window.as_secs()));
        }
        Ok(())
    }

    /// Counts a failure against the login and the address.
    pub fn failed(&self, login: &str, addr: IpAddr) {
        let n = self.by_login.get(login).unwrap_or(0);
        self.by_login.insert(login.to_owned(), n.saturating_add(1));
        let n = self.by_addr.get(&addr).unwrap_or(0);
        self.by_addr.insert(addr, n.saturating_add(1));
    }

    /// Forgets the login's failures (not the address's).
    pub fn succeeded(&self, login: &str) {
        self.by_login.invalidate(login);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_limited_per_login_and_cleared_by_success() {
        let g = LoginGuard::new(2, Duration::from_secs(60));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(g.check("ana", ip).is_ok());
        g.failed("ana", ip);
        g.failed("ana", ip);
        let p = g.check("ana", ip).unwrap_err();
        assert_eq!(p.status, 429);
        assert_eq!(p.retry_after, Some(60));
        assert!(g.check("bia", ip).is_ok(), "other logins are not affected");
        g.succeeded("ana");
        assert!(g.check("ana", ip).is_ok());
        for _ in 0..20 {
            g.failed("spray", ip);
        }
        assert!(
            g.check("someone-else", ip).is_err(),
            "one address spraying logins is limited"
        );
    }
}
