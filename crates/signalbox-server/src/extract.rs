//! Extractors that turn every framework rejection into a problem response: malformed JSON is
//! a 400, JSON of the wrong shape (wrong types, unknown or missing fields) a 422 naming the
//! field, a body over the limit a 413, a wrong content type a 415.

use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use signalbox_app::{Actor, IdempotencyContext, RequestContext};
use signalbox_domain::FieldError;

use crate::problem::{bad_request, ApiError, Problem};

pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if mime != "application/json" && !(mime.starts_with("application/") && mime.ends_with("+json")) {
            return Err(ApiError::from(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                format!("send the body as JSON with Content-Type: application/json (got {:?})", content_type),
            )));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            ApiError::from(body_rejection(&rejection, "the request body exceeds the server's limit (SIGNALBOX_MAX_BODY_BYTES)"))
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// A raw upload body (evidence files). Over the limit is a 413 problem; an empty body is left
/// to the use case, which names the field.
pub struct ApiBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(ApiBytes)
            .map_err(|rejection| ApiError::from(body_rejection(&rejection, "the file exceeds the upload limit of 16 MiB")))
    }
}

/// The problem for a body that could not be read: over the size limit (413, with
/// `too_large_detail`), or unreadable (400), never the framework's plain-text rejection.
pub(crate) fn body_rejection(rejection: &BytesRejection, too_large_detail: &str) -> Problem {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "Payload too large", too_large_detail)
    } else {
        Problem::new(StatusCode::BAD_REQUEST, "unreadable-body", "Bad request", rejection.body_text())
    }
}

/// Parses a JSON body, locating the offending field on failure.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Syntax first, so malformed JSON is told apart from JSON of the wrong shape.
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::from(Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            "Malformed JSON",
            format!("the body is not valid JSON: {e}"),
        ))
    })?;
    if let Some(path) = find_nul(&value, String::new()) {
        let field = if path.is_empty() { "body".to_string() } else { path };
        let message = "must not contain the NUL character (\\u0000)".to_string();
        return Err(ApiError::from(
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed", "Invalid input", format!("{field}: {message}"))
                .with_errors(vec![FieldError::new(field, message)]),
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path.replace(['.', '['], "/").replace(']', "") };
        let message = e.inner().to_string();
        let message = message.split(" at line ").next().unwrap_or(&message).to_string();
        let field = if field.is_empty() { "body".to_string() } else { field };
        ApiError::from(
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed", "Invalid input", format!("{field}: {message}"))
                .with_errors(vec![FieldError::new(field, message)]),
        )
    })
}

/// Finds a string (or key) holding U+0000, which no database here can store, and names its path.
fn find_nul(value: &serde_json::Value, path: String) -> Option<String> {
    let join = |key: &str| if path.is_empty() { key.to_string() } else { format!("{path}/{key}") };
    match value {
        serde_json::Value::String(s) if s.contains('\0') => Some(path),
        serde_json::Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| find_nul(v, join(&i.to_string()))),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| if k.contains('\0') { Some(join(k)) } else { find_nul(v, join(k)) }),
        _ => None,
    }
}

/// The request context: the authenticated actor (set by the auth middleware), the request id,
/// the reason header and the idempotency context (set by the idempotency middleware).
pub struct Ctx(pub RequestContext);

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(actor) = parts.extensions.get::<Actor>().cloned() else {
            return Err(ApiError::from(Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Authentication required",
                "send Authorization: Bearer <token>",
            )));
        };
        let request_id = parts.headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(String::from);
        let reason = match parts.headers.get("x-signalbox-reason") {
            Some(v) => {
                Some(v.to_str().map_err(|_| bad_request("invalid-header", "X-Signalbox-Reason", "must be visible ASCII"))?.to_string())
            }
            None => None,
        };
        let idempotency = parts.extensions.get::<IdempotencyContext>().cloned();
        Ok(Ctx(RequestContext { actor, request_id, reason, idempotency }))
    }
}

/// `If-Match: "<version>"`, optional.
pub struct IfMatch(pub Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(raw) = parts.headers.get(header::IF_MATCH) else { return Ok(IfMatch(None)) };
        let text = raw.to_str().unwrap_or("").trim();
        if text == "*" {
            return Ok(IfMatch(None));
        }
        let inner = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
        inner.parse::<i64>().map(|v| IfMatch(Some(v))).map_err(|_| {
            bad_request(
                "invalid-header",
                "If-Match",
                format!("{text:?} is not an ETag this server issued; send the ETag of your last read, e.g. \"3\""),
            )
        })
    }
}

/// Query parameters, with bad values answered as a problem naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de).map(ApiQuery).map_err(|e| {
            let field = e.path().to_string();
            let field = if field == "." || field.is_empty() { "query".to_string() } else { field };
            let message = e.inner().to_string();
            ApiError::from(
                Problem::new(StatusCode::BAD_REQUEST, "invalid-parameter", "Invalid query parameter", format!("{field}: {message}"))
                    .with_errors(vec![FieldError::new(field, message)]),
            )
        })
    }
}

/// A resource with its `ETag`.
pub struct Resource<T>(pub StatusCode, pub signalbox_app::Versioned<T>);

impl<T: serde::Serialize> axum::response::IntoResponse for Resource<T> {
    fn into_response(self) -> axum::response::Response {
        let mut response = (self.0, axum::Json(&self.1.value)).into_response();
        if let Ok(v) = axum::http::HeaderValue::from_str(&format!("\"{}\"", self.1.version)) {
            response.headers_mut().insert(header::ETAG, v);
        }
        response
    }
}
