//! The rules for a customer's credentials: how logins are normalised and
//! validated, and how passwords are hashed and verified (argon2id) — a
//! bounded number at a time, so a burst of logins cannot exhaust memory.
//! Storing them is the directory's job (`directory::credentials`).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use tokio::sync::Semaphore;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use cellbank_shared::problem::Problem;

/// Runs password hashing and verification (each ~19 MiB and tens of ms of
/// a core) at most `permits` at once; a caller that cannot get a turn
/// within a short wait is answered 503 with `Retry-After`.
#[derive(Clone)]
pub struct PasswordWork {
    permits: Arc<Semaphore>,
    wait: Duration,
}

impl PasswordWork {
    pub fn new(permits: u32, wait: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(permits.max(1) as usize)),
            wait,
        }
    }

    /// Runs `work` on the blocking pool once a turn is free.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Problem> {
        let permit = tokio::time::timeout(self.wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| {
                crate::metrics::refused("password_work_busy");
                Problem::unavailable("too many logins at once; retry shortly", 1)
            })?
            .expect("the semaphore is never closed");
        tokio::task::spawn_blocking(move || {
            let _turn = permit;
            work()
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "password task failed");
            Problem::internal()
        })
    }
}

/// Logins are compared trimmed and lowercased.
pub fn normalise_login(login: &str) -> String {
    login.trim().to_lowercase()
}

/// Validates a normalised login.
pub fn validate_login(login: &str) -> Result<(), Problem> {
    let ok_chars = login
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._@+-".contains(c));
    if !(3..=64).contains(&login.len()) || !ok_chars {
        return Err(Problem::invalid(
            "login",
            "must be 3 to 64 characters: letters, digits and . _ @ + -",
        ));
    }
    Ok(())
}

/// Hashes a password with argon2id (CPU-heavy: call from a blocking task).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hash password: {e}"))
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Verified against when the login is unknown, so that unknown logins take as
/// long as wrong passwords.
static DECOY_HASH: LazyLock<String> =
    LazyLock::new(|| hash_password(&uuid::Uuid::new_v4().to_string()).unwrap_or_default());

/// Whether `password` matches the stored hash; with no stored hash (unknown
/// login) it spends the same time on a decoy and answers false.
/// CPU-heavy: call from a blocking task.
pub fn verify_stored(password: &str, stored: Option<&str>) -> bool {
    match stored {
        Some(hash) => verify_password(password, hash),
        None => {
            let _ = verify_password(password, &DECOY_HASH);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_are_normalised_and_checked() {
        assert_eq!(normalise_login("  Ana@Example.COM "), "ana@example.com");
        assert!(validate_login("ana@example.com").is_ok());
        for bad in ["ab", "a b c", "x".repeat(65).as_str(), "ana#1"] {
            assert!(validate_login(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn password_work_is_bounded_and_sheds_the_excess() {
        let work = PasswordWork::new(1, Duration::from_millis(50));
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let busy = {
            let work = work.clone();
            tokio::spawn(async move {
                work.run(move || {
                    started_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                })
                .await
            })
        };
        started_rx.recv().unwrap();
        let shed = work.run(|| ()).await.unwrap_err();
        assert_eq!(shed.status, 503);
        assert_eq!(shed.retry_after, Some(1));
        release_tx.send(()).unwrap();
        busy.await.unwrap().unwrap();
        work.run(|| ()).await.expect("a free turn is taken");
    }

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("correct horse", "not a hash"));
        assert!(verify_stored("correct horse", Some(&h)));
        assert!(!verify_stored("correct horse", None));
    }
}
