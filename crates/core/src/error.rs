//! The one error type of `roost-core`. Each variant carries a stable code that
//! clients can switch on; the HTTP status is chosen at the API edge.

use std::borrow::Cow;

/// The kinds of failure, each answered alike at every door (the API gives
/// each its HTTP status; the gateway and other nodes carry only the code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Input that breaks a rule.
    Validation,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    Gone,
    TooLarge,
    UnsupportedType,
    Unprocessable,
    BadRequest,
    /// The database or Redis is out of reach for now; retry later.
    Unavailable,
    /// Roost's own failure; details are logged, never shown.
    Internal,
}

/// A failure of a core operation.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// Input that breaks a rule (length, format, range). `field` names it.
    #[error("{field}: {message}")]
    Validation {
        field: Cow<'static, str>,
        message: Cow<'static, str>,
    },
    /// No credentials, or credentials that are expired, revoked or malformed.
    #[error("{message}")]
    Unauthorized {
        code: &'static str,
        message: Cow<'static, str>,
    },
    /// The caller is known but may not do this.
    #[error("{0}")]
    Forbidden(Cow<'static, str>),
    /// The thing does not exist, or the caller may not know that it does.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request clashes with the current state (taken email, last super_admin, ...).
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: Cow<'static, str>,
    },
    /// The thing existed but can no longer be used (an expired or used-up invite).
    #[error("{message}")]
    Gone {
        code: &'static str,
        message: Cow<'static, str>,
    },
    /// A body larger than a limit allows (`file_too_large`, `quota_exceeded`).
    #[error("{message}")]
    TooLarge {
        code: &'static str,
        message: Cow<'static, str>,
    },
    /// Content of a type not accepted, or not the type it claims to be.
    #[error("{message}")]
    UnsupportedType {
        code: &'static str,
        message: Cow<'static, str>,
    },
    /// Well-formed input that cannot be processed (an image too large to decode).
    #[error("{message}")]
    Unprocessable {
        code: &'static str,
        message: Cow<'static, str>,
    },
    /// A request that broke off or is malformed (an upload that ended early).
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: Cow<'static, str>,
    },
    /// File storage failed; details are logged, never shown.
    #[error("storage error: {0}")]
    Storage(#[from] object_store::Error),
    /// The database failed; details are logged, never shown.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed to apply.
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A service Roost depends on (Redis) is out of reach for now; retry later.
    #[error("{0}")]
    Unavailable(Cow<'static, str>),
    /// Anything else that is our fault, not the caller's.
    #[error("internal error: {0}")]
    Internal(Cow<'static, str>),
}

impl CoreError {
    pub fn validation(
        field: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        CoreError::Validation {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        CoreError::Conflict {
            code,
            message: message.into(),
        }
    }

    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        CoreError::Forbidden(message.into())
    }

    pub fn too_large(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        CoreError::TooLarge {
            code,
            message: message.into(),
        }
    }

    pub fn unsupported_type(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        CoreError::UnsupportedType {
            code,
            message: message.into(),
        }
    }

    pub fn unprocessable(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        CoreError::Unprocessable {
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        CoreError::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn unauthorized(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        CoreError::Unauthorized {
            code,
            message: message.into(),
        }
    }

    /// Whether the database or Redis is out of reach for now (the caller may retry).
    pub fn is_unavailable(&self) -> bool {
        match self {
            CoreError::Unavailable(_)
            | CoreError::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_),
            ) => true,
            CoreError::Database(sqlx::Error::Database(e)) => {
                e.code().is_some_and(|code| is_outage_sqlstate(&code))
            }
            _ => false,
        }
    }

    /// What kind of failure this is, whichever door it leaves by: an outage
    /// of the database is `Unavailable` here, not a database error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CoreError::Validation { .. } => ErrorKind::Validation,
            CoreError::Unauthorized { .. } => ErrorKind::Unauthorized,
            CoreError::Forbidden(_) => ErrorKind::Forbidden,
            CoreError::NotFound(_) => ErrorKind::NotFound,
            CoreError::Conflict { .. } => ErrorKind::Conflict,
            CoreError::Gone { .. } => ErrorKind::Gone,
            CoreError::TooLarge { .. } => ErrorKind::TooLarge,
            CoreError::UnsupportedType { .. } => ErrorKind::UnsupportedType,
            CoreError::Unprocessable { .. } => ErrorKind::Unprocessable,
            CoreError::BadRequest { .. } => ErrorKind::BadRequest,
            CoreError::Unavailable(_) => ErrorKind::Unavailable,
            e if e.is_unavailable() => ErrorKind::Unavailable,
            CoreError::Database(_)
            | CoreError::Migrate(_)
            | CoreError::Storage(_)
            | CoreError::Internal(_) => ErrorKind::Internal,
        }
    }

    /// The stable code a client sees.
    pub fn code(&self) -> &'static str {
        match self {
            CoreError::Unauthorized { code, .. }
            | CoreError::Conflict { code, .. }
            | CoreError::Gone { code, .. }
            | CoreError::TooLarge { code, .. }
            | CoreError::UnsupportedType { code, .. }
            | CoreError::Unprocessable { code, .. }
            | CoreError::BadRequest { code, .. } => code,
            e => match e.kind() {
                ErrorKind::Validation => "validation_failed",
                ErrorKind::Forbidden => "forbidden",
                ErrorKind::NotFound => "not_found",
                ErrorKind::Unavailable => "unavailable",
                _ => "internal",
            },
        }
    }

    /// The message a client sees with [`CoreError::code`]. For an outage or
    /// an internal failure the detail is logged here and the client gets a
    /// plain sentence, whichever door the request came in by.
    pub fn public_message(&self) -> Cow<'_, str> {
        match self {
            CoreError::Unavailable(message) => Cow::Borrowed(message),
            e if e.kind() == ErrorKind::Unavailable => {
                tracing::warn!(error = %e, "the database is out of reach");
                Cow::Borrowed("the server is busy; try again")
            }
            e if e.kind() == ErrorKind::Internal => {
                tracing::error!(error = %e, "internal error");
                Cow::Borrowed("something went wrong on the server")
            }
            e => Cow::Owned(e.to_string()),
        }
    }
}

/// Shorthand for results of core operations.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;

/// PostgreSQL's codes for a server going away or not taking connections
/// (its restart, failover, or an administrator ending the session): the
/// query may succeed when retried, so the client hears `unavailable`.
fn is_outage_sqlstate(code: &str) -> bool {
    // Class 08: connection exceptions. 57P01 admin_shutdown, 57P02
    // crash_shutdown, 57P03 cannot_connect_now. 53300 too_many_connections.
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

/// Whether a database error is a violated unique constraint.
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[cfg(all(test, feature = "test-support"))]
mod tests {
    use super::*;
    use sqlx::{Connection, PgConnection};

    #[tokio::test]
    async fn a_session_ended_by_the_database_server_is_unavailable_not_internal() {
        let url = crate::store::testing::fresh_postgres_url().await;
        let mut victim = PgConnection::connect(&url).await.unwrap();
        let mut admin = PgConnection::connect(&url).await.unwrap();
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut victim)
            .await
            .unwrap();
        let query = tokio::spawn(async move {
            sqlx::query("SELECT pg_sleep(30)")
                .execute(&mut victim)
                .await
                .map(|_| ())
        });
        // What a failover or a restart of the server does to a query in flight.
        loop {
            let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .fetch_one(&mut admin)
                .await
                .unwrap();
            if ended || query.is_finished() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let err = CoreError::from(query.await.unwrap().expect_err("the query was cut short"));
        assert!(err.is_unavailable(), "{err:?}");
    }

    #[test]
    fn only_outage_codes_are_unavailable() {
        for code in ["08006", "08001", "57P01", "57P02", "57P03", "53300"] {
            assert!(is_outage_sqlstate(code), "{code}");
        }
        for code in ["23505", "40001", "55000", "42P01"] {
            assert!(!is_outage_sqlstate(code), "{code}");
        }
    }
}

#[cfg(test)]
mod classification {
    use super::*;

    #[test]
    fn an_outage_is_unavailable_with_a_plain_message_at_every_door() {
        let outage = CoreError::Database(sqlx::Error::PoolTimedOut);
        assert_eq!(outage.kind(), ErrorKind::Unavailable);
        assert_eq!(outage.code(), "unavailable");
        let redis = CoreError::Unavailable("Redis is out of reach".into());
        assert_eq!(
            (redis.kind(), redis.code()),
            (ErrorKind::Unavailable, "unavailable")
        );
        assert_eq!(redis.public_message(), "Redis is out of reach");
        assert_eq!(outage.public_message(), "the server is busy; try again");
        let broken = CoreError::Database(sqlx::Error::RowNotFound);
        assert_eq!(broken.kind(), ErrorKind::Internal);
        assert_eq!(broken.code(), "internal");
        assert_eq!(
            broken.public_message(),
            "something went wrong on the server"
        );
        let refused = CoreError::validation("body", "must not be empty");
        assert_eq!(refused.kind(), ErrorKind::Validation);
        assert_eq!(refused.code(), "validation_failed");
        assert_eq!(refused.public_message(), refused.to_string());
        let taken = CoreError::conflict("email_taken", "this email is taken");
        assert_eq!(
            (taken.kind(), taken.code()),
            (ErrorKind::Conflict, "email_taken")
        );
    }
}
