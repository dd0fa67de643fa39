//! RFC 9457 problem details. Every error the API returns is one of these, with a stable `type`
//! URI per kind of problem; the mapping from [`AppError`] lives here and nowhere else.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use signalbox_app::AppError;
use signalbox_domain::FieldError;
use utoipa::ToSchema;

pub const PROBLEM_BASE: &str = "https://signalbox.dev/problems/";

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// Stable URI naming the kind of problem, e.g. `https://signalbox.dev/problems/validation-failed`.
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Per-field errors for invalid input.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Every unmet precondition, for refused lifecycle transitions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Problem {
        Problem {
            problem_type: format!("{PROBLEM_BASE}{slug}"),
            title: title.to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: vec![],
            reasons: vec![],
            request_id: None,
        }
    }
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Problem {
        self.errors = errors;
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        response
    }
}

/// The error type handlers return.
#[derive(Debug)]
pub struct ApiError(pub Box<Problem>);

pub type ApiResult<T> = Result<T, ApiError>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        ApiError(Box::new(p))
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        ApiError::from(problem_for(e))
    }
}

pub fn problem_for(e: AppError) -> Problem {
    let detail = e.to_string();
    match e {
        AppError::Invalid(errors) => {
            let summary = match errors.as_slice() {
                [one] => format!("{}: {}", one.field, one.message),
                many => format!("{} fields are invalid; see errors", many.len()),
            };
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed", "Invalid input", summary).with_errors(errors)
        }
        AppError::NotFound { .. } => Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail),
        AppError::Conflict { code, detail } => Problem::new(StatusCode::CONFLICT, code, "Conflict", detail),
        AppError::Refused { code, detail, reasons } => {
            let mut p = Problem::new(StatusCode::CONFLICT, code, "Refused", detail);
            p.reasons = reasons;
            p
        }
        AppError::TransitionRefused(refusal) => {
            let mut p = Problem::new(StatusCode::CONFLICT, "transition-refused", "Transition refused", refusal.to_string());
            p.reasons = refusal.reasons;
            p
        }
        AppError::PreconditionFailed { .. } => {
            Problem::new(StatusCode::PRECONDITION_FAILED, "precondition-failed", "Precondition failed", detail)
        }
        AppError::Unauthenticated(m) => Problem::new(StatusCode::UNAUTHORIZED, "unauthenticated", "Authentication required", m),
        AppError::Forbidden(m) => Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", m),
        AppError::ForbiddenCode { code, detail } => Problem::new(StatusCode::FORBIDDEN, code, "Forbidden", detail),
        AppError::IdempotencyMismatch { .. } => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused", "Idempotency key reused", detail)
        }
        AppError::Unavailable(m) => {
            tracing::error!(error = %m, "database unavailable");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
                "the database is unavailable; retry shortly",
            )
        }
        AppError::Internal(m) => {
            tracing::error!(error = %m, "internal error");
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
                "an internal error occurred; the server log has details under this request id",
            )
        }
    }
}

/// Shorthand for a 400 about a header or parameter.
pub fn bad_request(slug: &str, field: &str, message: impl Into<String>) -> ApiError {
    let message = message.into();
    ApiError::from(
        Problem::new(StatusCode::BAD_REQUEST, slug, "Bad request", format!("{field}: {message}"))
            .with_errors(vec![FieldError::new(field, message)]),
    )
}
