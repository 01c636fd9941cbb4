//! The domain error and its one mapping to the public `extensions.code`.
//!
//! Services return `AppError`; resolvers turn it into a GraphQL error with `?`. Internal causes
//! are logged with their chain where they are converted and never reach the client.
use sea_orm::DbErr;

pub type AppResult<T> = Result<T, AppError>;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{} just taken: choose other seats", taken_phrase(.labels))]
    SeatsUnavailable {
        seat_ids: Vec<String>,
        labels: Vec<String>,
    },
    /// Best available found nothing acceptable free (the message says what was asked for).
    #[error("{0}")]
    NoSeatsFit(String),
    #[error(
        "the hold is not live: it expired, was released, was already checked out, or never existed"
    )]
    HoldExpired,
    #[error("{0}")]
    LimitExceeded(String),
    /// A client's read budget is spent (`LIMIT_EXCEEDED` with `retryAfterSeconds`).
    #[error("{message}")]
    ReadBudget {
        message: String,
        retry_after: std::time::Duration,
    },
    /// The show's sale runs through a waiting room and this user has no live session.
    #[error("this show's sale runs through a waiting room: join the queue (joinQueue) and wait for your turn; a session ends when it lapses or after a checkout")]
    NotAdmitted,
    #[error("{0}")]
    BadInput(String),
    /// An automatic persisted query (APQ) named by its hash alone that this server does not
    /// know: send it again with its text. The message is the one Apollo clients look for.
    #[error("PersistedQueryNotFound")]
    PersistedQueryNotFound,
    #[error("{0} is unavailable, retry later")]
    Unavailable(&'static str),
    /// A serialization failure or deadlock (`db::is_conflict`): the transaction rolled back whole,
    /// and running it again may succeed.
    #[error("the database (a conflicting transaction) is unavailable, retry later")]
    DbConflict,
    /// Too many checkouts or cancellations are waiting: refused before any money moved.
    #[error("too many purchases are in progress; retry in {} s", retry_after.as_secs().max(1))]
    Busy { retry_after: std::time::Duration },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl AppError {
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthenticated(_) => "UNAUTHENTICATED",
            AppError::Forbidden(_) => "FORBIDDEN",
            AppError::NotFound(_) => "NOT_FOUND",
            AppError::SeatsUnavailable { .. } | AppError::NoSeatsFit(_) => "SEATS_UNAVAILABLE",
            AppError::HoldExpired => "HOLD_EXPIRED",
            AppError::LimitExceeded(_) | AppError::ReadBudget { .. } => "LIMIT_EXCEEDED",
            AppError::NotAdmitted => "NOT_ADMITTED",
            AppError::BadInput(_) => "BAD_USER_INPUT",
            AppError::PersistedQueryNotFound => "PERSISTED_QUERY_NOT_FOUND",
            AppError::Unavailable(_) | AppError::DbConflict | AppError::Busy { .. } => {
                "SERVICE_UNAVAILABLE"
            }
            AppError::Internal(_) => "INTERNAL_SERVER_ERROR",
        }
    }

    pub fn bad_input(msg: impl Into<String>) -> Self {
        AppError::BadInput(msg.into())
    }
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        AppError::Internal(e.into())
    }
    pub fn unauthenticated() -> Self {
        AppError::Unauthenticated("sign in to do this".into())
    }
    /// Whether this is a database conflict: the transaction rolled back whole, and running it
    /// again may succeed.
    pub fn is_db_conflict(&self) -> bool {
        matches!(self, AppError::DbConflict)
    }
}

/// Database errors: connection trouble is a retryable `SERVICE_UNAVAILABLE`; anything else is a
/// bug or an unexpected state and is internal.
impl From<DbErr> for AppError {
    fn from(e: DbErr) -> Self {
        if crate::db::is_unavailable(&e) {
            tracing::warn!(error = %e, "database unavailable");
            AppError::Unavailable("the database")
        } else if crate::db::is_conflict(&e) {
            // A serialization failure or deadlock: the transaction rolled back whole; the
            // client's retry (same idempotency key for a checkout) is safe.
            tracing::warn!(error = %e, "database transaction conflict");
            metrics::counter!("db_conflicts_total").increment(1);
            AppError::DbConflict
        } else {
            AppError::Internal(anyhow::Error::new(e))
        }
    }
}

impl AppError {
    /// The seats named by `SEATS_UNAVAILABLE` (its `extensions.seatIds`).
    pub fn seat_ids(&self) -> Option<Vec<String>> {
        match self {
            AppError::SeatsUnavailable { seat_ids, .. } => Some(seat_ids.clone()),
            AppError::NoSeatsFit(_) => Some(Vec::new()),
            _ => None,
        }
    }
}

/// "A7 was", "A7 and A8 were", "A7, A8 and A9 were".
fn taken_phrase(labels: &[String]) -> String {
    match labels {
        [] => "some seats were".into(),
        [one] => format!("{one} was"),
        [init @ .., last] => format!("{} and {last} were", init.join(", ")),
    }
}
