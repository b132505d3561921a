//! The one place Postgres error codes are read: a classifier every crate maps
//! its own errors from, and `on_constraint` to turn one named constraint's
//! violation into a domain error.

/// What kind of failure a Postgres error is, by SQLSTATE class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PgFailure {
    /// 23505: a unique key already holds this value (`constraint` names it).
    UniqueViolation { constraint: Option<String> },
    /// 23503: a referenced row does not exist.
    ForeignKeyViolation { constraint: Option<String> },
    /// Any other 23xxx: not null, check, exclusion.
    OtherIntegrity { constraint: Option<String> },
    /// 22xxx: a value the column cannot hold (overflow, bad text, ...).
    DataException,
    /// 40001 / 40P01: the transaction lost a race; running it again may work.
    Retryable,
    /// The database could not be reached or is shutting down (pool timeout,
    /// I/O, 08xxx, 57Pxx, 53xxx).
    Unavailable,
    /// Anything else: a bug or something not expected here.
    Other,
}

impl PgFailure {
    /// Whether running the same statement again cannot succeed: bad data or
    /// a broken rule other than a duplicate key (a duplicate is usually the
    /// sign of a redelivery, which the caller handles).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            PgFailure::DataException
                | PgFailure::ForeignKeyViolation { .. }
                | PgFailure::OtherIntegrity { .. }
        )
    }

    /// The constraint a violation names, if any.
    pub fn constraint(&self) -> Option<&str> {
        match self {
            PgFailure::UniqueViolation { constraint }
            | PgFailure::ForeignKeyViolation { constraint }
            | PgFailure::OtherIntegrity { constraint } => constraint.as_deref(),
            _ => None,
        }
    }
}

/// Classifies `e` by its SQLSTATE (or by the kind of client-side failure).
pub fn classify(e: &sqlx::Error) -> PgFailure {
    match e {
        sqlx::Error::Database(db) => {
            let constraint = db.constraint().map(str::to_owned);
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            match code {
                "23505" => PgFailure::UniqueViolation { constraint },
                "23503" => PgFailure::ForeignKeyViolation { constraint },
                c if c.starts_with("23") => PgFailure::OtherIntegrity { constraint },
                c if c.starts_with("22") => PgFailure::DataException,
                "40001" | "40P01" => PgFailure::Retryable,
                c if c.starts_with("08") || c.starts_with("57P") || c.starts_with("53") => {
                    PgFailure::Unavailable
                }
                _ => PgFailure::Other,
            }
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => PgFailure::Unavailable,
        _ => PgFailure::Other,
    }
}

/// Maps the violation of one named constraint to a domain error, in the
/// spirit of realworld-axum-sqlx's `on_constraint`; every other error goes
/// through the caller's `From<sqlx::Error>`.
pub trait ConstraintExt<T> {
    fn on_constraint<E: From<sqlx::Error>>(
        self,
        name: &str,
        map: impl FnOnce(PgFailure) -> E,
    ) -> Result<T, E>;
}

impl<T> ConstraintExt<T> for Result<T, sqlx::Error> {
    fn on_constraint<E: From<sqlx::Error>>(
        self,
        name: &str,
        map: impl FnOnce(PgFailure) -> E,
    ) -> Result<T, E> {
        self.map_err(|e| {
            let failure = classify(&e);
            if failure.constraint() == Some(name) {
                map(failure)
            } else {
                E::from(e)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_side_failures_are_unavailable_or_other() {
        assert_eq!(classify(&sqlx::Error::PoolTimedOut), PgFailure::Unavailable);
        assert_eq!(classify(&sqlx::Error::RowNotFound), PgFailure::Other);
        assert!(!PgFailure::UniqueViolation { constraint: None }.is_permanent());
        assert!(PgFailure::DataException.is_permanent());
    }
}
