//! The application's one error type. The server maps each variant to an RFC 9457 problem
//! with a stable `type` in one place; the CLI prints the same words.

use signalbox_domain::lifecycle::Refusal;
use signalbox_domain::model::Kind;
use signalbox_domain::{FieldError, Invalid};
use signalbox_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Well-formed input that is not acceptable, field by field.
    #[error("invalid input: {}", .0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    #[error("{kind} {id:?} does not exist")]
    NotFound { kind: Kind, id: String },
    /// The request conflicts with what is stored (a duplicate, an immutable artifact).
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    /// Refused for several reasons at once (a promotion: gates, soak, freezes…), each a sentence.
    #[error("{detail}")]
    Refused { code: &'static str, detail: String, reasons: Vec<String> },
    /// A lifecycle transition whose preconditions are not met.
    #[error("{0}")]
    TransitionRefused(Refusal),
    /// The client's `If-Match` names a version that is no longer current, or a concurrent
    /// writer won the race.
    #[error("{kind} {id} has changed since version {expected}; fetch it again and retry")]
    PreconditionFailed { kind: Kind, id: String, expected: i64, current: Option<i64> },
    #[error("authentication required: {0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    /// Refused for a reason with its own problem type (segregation of duties, break-glass rules).
    #[error("{detail}")]
    ForbiddenCode { code: &'static str, detail: String },
    /// The same `Idempotency-Key` was used for a different request.
    #[error("idempotency key {key:?} was already used for a different request")]
    IdempotencyMismatch { key: String },
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> AppError {
        AppError::Invalid(vec![FieldError::new(field, message)])
    }
    pub fn not_found(kind: Kind, id: impl Into<String>) -> AppError {
        AppError::NotFound { kind, id: id.into() }
    }
}

impl From<Invalid> for AppError {
    fn from(e: Invalid) -> Self {
        AppError::Invalid(e.0)
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Duplicate { kind, key } => {
                AppError::Conflict { code: "duplicate", detail: format!("a {kind} named {key:?} already exists") }
            }
            StoreError::VersionConflict { kind, id, expected } => AppError::PreconditionFailed { kind, id, expected, current: None },
            StoreError::NotFound { kind, id } => AppError::NotFound { kind, id },
            StoreError::IdempotencyKeyTaken { key } => AppError::Conflict {
                code: "idempotency-key-in-use",
                detail: format!("a concurrent request with idempotency key {key:?} completed first; retry to get its response"),
            },
            StoreError::StaleRead { kind, id } => AppError::Conflict {
                code: crate::mutation::STALE_READ,
                detail: format!("{kind} {id} changed while this request was being processed; send it again"),
            },
            StoreError::Unavailable(m) => AppError::Unavailable(m),
            StoreError::Internal(m) => AppError::Internal(m),
        }
    }
}
