//! Cross-cutting request handling: authentication, the per-route permission gate,
//! idempotent POSTs and request metrics.

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest as _, Sha256};
use signalbox_app::{Actor, AppError, IdempotencyContext};
use signalbox_domain::access::{allows_somewhere, Permission};
use std::time::Instant;

use crate::problem::{bad_request, problem_for, ApiError, Problem};
use crate::AppState;

/// Resolves `Authorization: Bearer …` to an [`Actor`] in the request extensions. A request
/// without the header passes through unauthenticated; the route's gate decides. A header that
/// is present but wrong is refused here, so a typo never silently downgrades to anonymous.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if let Some(raw) = req.headers().get(header::AUTHORIZATION) {
        let Some(secret) = raw.to_str().ok().and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer "))) else {
            return Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Authentication required",
                "the Authorization header must be \"Bearer <token>\"",
            )
            .into_response();
        };
        match state.app.authenticate(secret.trim()).await {
            Ok(actor) => {
                req.extensions_mut().insert(actor);
            }
            Err(e) => return ApiError::from(e).into_response(),
        }
    }
    next.run(req).await
}

/// The gate every protected route has: authenticated, and holding `permission` at some scope.
/// Handlers then check the permission at the scope of the resource concerned.
pub async fn require_permission(permission: Permission, req: Request, next: Next) -> Response {
    let Some(actor) = req.extensions().get::<Actor>() else {
        let mut response = Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Authentication required",
            "send Authorization: Bearer <token>; `signalbox serve` printed an admin token at first start",
        )
        .into_response();
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    };
    if !allows_somewhere(&actor.bindings, permission) {
        return ApiError::from(AppError::Forbidden(format!(
            "{} holds no role with the {} permission; ask an admin for one",
            actor.username,
            permission.as_str()
        )))
        .into_response();
    }
    next.run(req).await
}

const MAX_IDEMPOTENCY_KEY: usize = 255;

/// `Idempotency-Key` on POST: the first response is stored with the mutation (same
/// transaction); a retry with the same key and request gets that response again and changes
/// nothing; the same key with a different request is refused.
pub async fn idempotency(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(raw_key) = req.headers().get("idempotency-key") else {
        return next.run(req).await;
    };
    let key = match raw_key.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY => k.to_string(),
        _ => {
            return bad_request(
                "invalid-header",
                "Idempotency-Key",
                format!("must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters, e.g. a UUID"),
            )
            .into_response()
        }
    };
    let Some(actor) = req.extensions().get::<Actor>().cloned() else {
        return next.run(req).await;
    };
    let (parts, body) = req.into_parts();
    // Evidence uploads may be larger than JSON bodies; each route's own limit still applies
    // when its extractor reads the buffered body.
    let buffer_limit = state.max_body_bytes.max(signalbox_app::evidence::MAX_UPLOAD_BYTES);
    let bytes = match axum::body::to_bytes(body, buffer_limit).await {
        Ok(b) => b,
        Err(_) => {
            return Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
                "the request body exceeds the server's limit (SIGNALBOX_MAX_BODY_BYTES)",
            )
            .into_response()
        }
    };
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str().as_bytes());
    hasher.update(b" ");
    hasher.update(parts.uri.path().as_bytes());
    hasher.update(b"\n");
    hasher.update(&bytes);
    let request_hash = hex::encode(hasher.finalize());

    match replay(&state, &actor, &key, &request_hash).await {
        Ok(Some(response)) => return response,
        Ok(None) => {}
        Err(e) => return e.into_response(),
    }
    let mut req = Request::from_parts(parts, Body::from(bytes));
    req.extensions_mut().insert(IdempotencyContext { key: key.clone(), request_hash: request_hash.clone() });
    let response = next.run(req).await;
    if matches!(response.status(), StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED) {
        // A concurrent request with the same key may have committed first, and its write is what
        // this one conflicted with (409) or what moved the resource past its If-Match (412):
        // answer with that request's response.
        if let Ok(Some(replayed)) = replay(&state, &actor, &key, &request_hash).await {
            return replayed;
        }
    }
    response
}

async fn replay(state: &AppState, actor: &Actor, key: &str, request_hash: &str) -> Result<Option<Response>, ApiError> {
    let Some(stored) = state.app.store.idempotency_get(&actor.user_id, key).await.map_err(|e| ApiError::from(AppError::from(e)))? else {
        return Ok(None);
    };
    if stored.request_hash != request_hash {
        return Err(problem_for(AppError::IdempotencyMismatch { key: key.to_string() }).into());
    }
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = (status, stored.body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert("idempotency-replayed", HeaderValue::from_static("true"));
    Ok(Some(response))
}

/// Request counts and latency histograms by route template (never by raw path, so ids do not
/// explode the label space).
pub async fn record_metrics(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let elapsed = start.elapsed().as_secs_f64();
    metrics::counter!("signalbox_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("signalbox_http_request_duration_seconds", "method" => method, "route" => route).record(elapsed);
    response
}
