//! Feature flags over HTTP (issue 7): the `/api/v1/flags` management API (user tokens, a
//! permission per route) and the OpenFeature Remote Evaluation Protocol under `/ofrep/v1`
//! (SDK keys, `X-API-Key` or `Authorization: Bearer`). The OFREP bodies, status codes and ETag
//! come from `signalbox_flags::ofrep`; evaluation runs against the compiled in-memory snapshot
//! of the key's environment, kept fresh by a background poller (see `signalbox_app::flags`).

use axum::body::Body;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value};
use signalbox_app::flag_lifecycle::{
    CancelFlagSchedule, FlagSchedule, FlagStatsRecord, ScheduleFlagChange, StaleReport, StaleThresholds, DEFAULT_STATS_FLUSH_SECONDS,
};
use signalbox_app::flags::{
    CreateSdkKey, FlagSetRef, FlagSetRevision, FlagSetView, FlagSnapshot, IssuedSdkKey, RevertFlagSet, SdkKey, POLL_INTERVAL,
};
use signalbox_domain::access::Permission;
use signalbox_flags::ofrep::{
    self, BulkEvaluationFailure, BulkEvaluationSuccess, EvaluationFailure, EvaluationRequest, EventStream, EventStreamEndpoint,
    RefetchEvaluationEvent, RequestPolicy,
};
use signalbox_flags::ErrorCode;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::wrappers::ReceiverStream;
use utoipa::IntoParams;

use crate::extract::{body_rejection, ApiJson, ApiQuery, Ctx, IfMatch, Resource};
use crate::problem::{ApiResult, Problem};
use crate::routes::RouteSpec;
use crate::AppState;

/// The flag management routes under `/api/v1`, each with its permission. Flag edits use
/// `manage_flags` (developers, tech leads, SREs and release managers; bind it per environment to
/// keep production flags to a few people), SDK keys `manage_catalog`.
pub fn routes() -> Vec<RouteSpec> {
    use axum::http::Method;
    use Permission::*;
    let spec = |method: Method, path: &'static str, permission: Permission, handler| RouteSpec {
        method,
        path,
        permission: Some(permission),
        handler,
    };
    vec![
        spec(Method::GET, "/api/v1/flags", Read, get(list_flag_sets)),
        spec(Method::GET, "/api/v1/flags/sdk-keys", Read, get(list_sdk_keys)),
        spec(Method::POST, "/api/v1/flags/sdk-keys", ManageCatalog, post(create_sdk_key)),
        spec(Method::DELETE, "/api/v1/flags/sdk-keys/{id}", ManageCatalog, delete(revoke_sdk_key)),
        spec(Method::GET, "/api/v1/flags/{id}", Read, get(get_flag_set)),
        spec(Method::PUT, "/api/v1/flags/{id}", ManageFlags, put(put_flag_set)),
        spec(Method::GET, "/api/v1/flags/{id}/export", Read, get(export_flag_set)),
        spec(Method::GET, "/api/v1/flags/{id}/revisions", Read, get(list_revisions)),
        spec(Method::POST, "/api/v1/flags/{id}/revert", ManageFlags, post(revert_flag_set)),
        spec(Method::PATCH, "/api/v1/flags/{id}/flags/{key}", ManageFlags, patch(patch_flag)),
        spec(Method::DELETE, "/api/v1/flags/{id}/flags/{key}", ManageFlags, delete(delete_flag)),
        spec(Method::POST, "/api/v1/flags/{id}/flags/{key}/schedule", ManageFlags, post(schedule_flag_change)),
        spec(Method::GET, "/api/v1/flags/{id}/stats", Read, get(flag_stats)),
        spec(Method::GET, "/api/v1/flags/scheduled", Read, get(list_flag_schedules)),
        spec(Method::GET, "/api/v1/flags/scheduled/{id}", Read, get(get_flag_schedule)),
        spec(Method::POST, "/api/v1/flags/scheduled/{id}/cancel", ManageFlags, post(cancel_flag_schedule)),
        spec(Method::GET, "/api/v1/flags/stale", Read, get(stale_flags)),
    ]
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ServiceParam {
    /// Service id or name, for a per-service flag set (default: the environment's own set).
    pub service: Option<String>,
    /// Why (recorded in the audit trail and the revision; `X-Signalbox-Reason` works too).
    pub reason: Option<String>,
}

fn with_reason(ctx: Ctx, q: &ServiceParam) -> signalbox_app::RequestContext {
    let mut ctx = ctx.0;
    if q.reason.is_some() {
        ctx.reason = q.reason.clone();
    }
    ctx
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SdkKeyListParams {
    /// Environment id or name.
    pub environment: Option<String>,
}

fn set_ref<'a>(environment: &'a str, q: &'a ServiceParam) -> FlagSetRef<'a> {
    FlagSetRef { environment, service: q.service.as_deref() }
}

#[utoipa::path(get, path = "/api/v1/flags", tag = "flags", responses((status = 200, body = Vec<FlagSetView>)))]
pub async fn list_flag_sets(State(s): State<AppState>, ctx: Ctx) -> ApiResult<Json<Vec<FlagSetView>>> {
    Ok(Json(s.app.list_flag_sets(&ctx.0).await?))
}

#[utoipa::path(get, path = "/api/v1/flags/{id}", tag = "flags", params(("id" = String, Path, description = "Environment id or name"), ServiceParam),
    responses((status = 200, body = FlagSetView), (status = 404, body = Problem)))]
pub async fn get_flag_set(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ServiceParam>,
) -> ApiResult<Resource<FlagSetView>> {
    Ok(Resource(StatusCode::OK, s.app.get_flag_set(&ctx.0, &set_ref(&id, &q)).await?))
}

#[utoipa::path(put, path = "/api/v1/flags/{id}", tag = "flags", params(("id" = String, Path, description = "Environment id or name"), ServiceParam),
    request_body(content = Object, description = "A flagd flag-set document (https://flagd.dev/schema/v0/flags.json)"),
    responses((status = 200, body = FlagSetView), (status = 201, body = FlagSetView), (status = 412, body = Problem), (status = 422, body = Problem, description = "errors name the JSON path, e.g. flags.f.defaultVariant")))]
pub async fn put_flag_set(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ServiceParam>,
    IfMatch(if_match): IfMatch,
    ApiJson(document): ApiJson<Value>,
) -> ApiResult<Resource<FlagSetView>> {
    let (created, out) = s.app.put_flag_set(&with_reason(ctx, &q), &set_ref(&id, &q), document, if_match).await?;
    Ok(Resource(if created { StatusCode::CREATED } else { StatusCode::OK }, out))
}

#[utoipa::path(get, path = "/api/v1/flags/{id}/export", tag = "flags", params(("id" = String, Path, description = "Environment id or name"), ServiceParam),
    responses((status = 200, body = Object, description = "The flagd document, exactly as imported")))]
pub async fn export_flag_set(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ServiceParam>,
) -> ApiResult<Resource<Value>> {
    Ok(Resource(StatusCode::OK, s.app.export_flag_set(&ctx.0, &set_ref(&id, &q)).await?))
}

#[utoipa::path(get, path = "/api/v1/flags/{id}/revisions", tag = "flags", params(("id" = String, Path, description = "Environment id or name"), ServiceParam),
    responses((status = 200, body = Vec<FlagSetRevision>, description = "Newest first, each with its per-flag diff")))]
pub async fn list_revisions(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ServiceParam>,
) -> ApiResult<Json<Vec<FlagSetRevision>>> {
    Ok(Json(s.app.list_flag_revisions(&ctx.0, &set_ref(&id, &q)).await?))
}

#[utoipa::path(post, path = "/api/v1/flags/{id}/revert", tag = "flags", params(("id" = String, Path, description = "Environment id or name"), ServiceParam),
    request_body = RevertFlagSet, responses((status = 200, body = FlagSetView), (status = 422, body = Problem)))]
pub async fn revert_flag_set(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ServiceParam>,
    IfMatch(if_match): IfMatch,
    ApiJson(req): ApiJson<RevertFlagSet>,
) -> ApiResult<Resource<FlagSetView>> {
    Ok(Resource(StatusCode::OK, s.app.revert_flag_set(&with_reason(ctx, &q), &set_ref(&id, &q), req, if_match).await?))
}

#[utoipa::path(patch, path = "/api/v1/flags/{id}/flags/{key}", tag = "flags",
    params(("id" = String, Path, description = "Environment id or name"), ("key" = String, Path, description = "Flag key"), ServiceParam),
    request_body(content = Object, description = "JSON merge patch (RFC 7386) of the flag's flagd definition, e.g. {\"state\": \"DISABLED\"}"),
    responses((status = 200, body = FlagSetView), (status = 422, body = Problem)))]
pub async fn patch_flag(
    State(s): State<AppState>,
    ctx: Ctx,
    Path((id, key)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<ServiceParam>,
    IfMatch(if_match): IfMatch,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Resource<FlagSetView>> {
    Ok(Resource(StatusCode::OK, s.app.patch_flag(&with_reason(ctx, &q), &set_ref(&id, &q), &key, body, if_match).await?))
}

#[utoipa::path(delete, path = "/api/v1/flags/{id}/flags/{key}", tag = "flags",
    params(("id" = String, Path, description = "Environment id or name"), ("key" = String, Path, description = "Flag key"), ServiceParam),
    responses((status = 200, body = FlagSetView), (status = 404, body = Problem)))]
pub async fn delete_flag(
    State(s): State<AppState>,
    ctx: Ctx,
    Path((id, key)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<ServiceParam>,
    IfMatch(if_match): IfMatch,
) -> ApiResult<Resource<FlagSetView>> {
    Ok(Resource(StatusCode::OK, s.app.delete_flag(&with_reason(ctx, &q), &set_ref(&id, &q), &key, if_match).await?))
}

#[utoipa::path(get, path = "/api/v1/flags/sdk-keys", tag = "flags", params(SdkKeyListParams), responses((status = 200, body = Vec<SdkKey>)))]
pub async fn list_sdk_keys(State(s): State<AppState>, ctx: Ctx, ApiQuery(q): ApiQuery<SdkKeyListParams>) -> ApiResult<Json<Vec<SdkKey>>> {
    Ok(Json(s.app.list_sdk_keys(&ctx.0, q.environment.as_deref()).await?))
}

#[utoipa::path(post, path = "/api/v1/flags/sdk-keys", tag = "flags", request_body = CreateSdkKey,
    responses((status = 201, body = IssuedSdkKey, description = "The secret is shown once"), (status = 422, body = Problem)))]
pub async fn create_sdk_key(
    State(s): State<AppState>,
    ctx: Ctx,
    ApiJson(req): ApiJson<CreateSdkKey>,
) -> ApiResult<(StatusCode, Json<IssuedSdkKey>)> {
    Ok((StatusCode::CREATED, Json(s.app.create_sdk_key(&ctx.0, req).await?)))
}

#[utoipa::path(delete, path = "/api/v1/flags/sdk-keys/{id}", tag = "flags", params(("id" = String, Path)),
    responses((status = 200, body = SdkKey), (status = 404, body = Problem)))]
pub async fn revoke_sdk_key(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult<Resource<SdkKey>> {
    Ok(Resource(StatusCode::OK, s.app.revoke_sdk_key(&ctx.0, &id).await?))
}

// ---- lifecycle: scheduled changes, counters, the stale report -------------------------------

#[utoipa::path(post, path = "/api/v1/flags/{id}/flags/{key}/schedule", tag = "flags",
    params(("id" = String, Path, description = "Environment id or name"), ("key" = String, Path, description = "Flag key"), ServiceParam),
    request_body = ScheduleFlagChange,
    responses((status = 201, body = FlagSchedule), (status = 422, body = Problem, description = "a bad patch (fields under `patch: …`), a time in the past or inside a freeze (field `at`)")))]
pub async fn schedule_flag_change(
    State(s): State<AppState>,
    ctx: Ctx,
    Path((id, key)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<ServiceParam>,
    ApiJson(req): ApiJson<ScheduleFlagChange>,
) -> ApiResult<(StatusCode, Json<FlagSchedule>)> {
    Ok((StatusCode::CREATED, Json(s.app.schedule_flag_change(&with_reason(ctx, &q), &set_ref(&id, &q), &key, req).await?)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ScheduleListParams {
    /// Environment id or name.
    pub environment: Option<String>,
    /// `pending`, `applied`, `skipped`, `failed` or `cancelled`.
    pub state: Option<String>,
    /// One flag's changes only.
    pub flag: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/flags/scheduled", tag = "flags", params(ScheduleListParams),
    responses((status = 200, body = Vec<FlagSchedule>, description = "Soonest first")))]
pub async fn list_flag_schedules(
    State(s): State<AppState>,
    ctx: Ctx,
    ApiQuery(q): ApiQuery<ScheduleListParams>,
) -> ApiResult<Json<Vec<FlagSchedule>>> {
    Ok(Json(s.app.list_flag_schedules(&ctx.0, q.environment.as_deref(), q.state.as_deref(), q.flag.as_deref()).await?))
}

#[utoipa::path(get, path = "/api/v1/flags/scheduled/{id}", tag = "flags", params(("id" = String, Path)),
    responses((status = 200, body = FlagSchedule), (status = 404, body = Problem)))]
pub async fn get_flag_schedule(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult<Resource<FlagSchedule>> {
    Ok(Resource(StatusCode::OK, s.app.get_flag_schedule(&ctx.0, &id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReasonParam {
    /// Why (recorded in the audit trail; `X-Signalbox-Reason` works too).
    pub reason: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/flags/scheduled/{id}/cancel", tag = "flags", params(("id" = String, Path), ReasonParam),
    responses((status = 200, body = FlagSchedule), (status = 409, body = Problem, description = "already applied, skipped, failed or cancelled")))]
pub async fn cancel_flag_schedule(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ReasonParam>,
) -> ApiResult<Resource<FlagSchedule>> {
    let req = CancelFlagSchedule { reason: q.reason.or_else(|| ctx.0.reason.clone()) };
    Ok(Resource(StatusCode::OK, s.app.cancel_flag_schedule(&ctx.0, &id, req).await?))
}

#[utoipa::path(get, path = "/api/v1/flags/{id}/stats", tag = "flags", params(("id" = String, Path, description = "Environment id or name")),
    responses((status = 200, body = Vec<FlagStatsRecord>, description = "Flushed evaluation counters of the environment's sets")))]
pub async fn flag_stats(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult<Json<Vec<FlagStatsRecord>>> {
    Ok(Json(s.app.flag_stats(&ctx.0, &id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StaleParams {
    /// Environment id or name (default: every environment).
    pub environment: Option<String>,
    /// Days without a change after which a flag is stale (default 30; permission flags are exempt).
    pub unchanged_days: Option<i64>,
    /// Days without an evaluation after which a flag is stale (default 30).
    pub not_evaluated_days: Option<i64>,
    /// Days a flag serving one variant to everyone may stay unchanged (default 30).
    pub rolled_out_days: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/flags/stale", tag = "flags", params(StaleParams),
    responses((status = 200, body = StaleReport), (status = 422, body = Problem)))]
pub async fn stale_flags(State(s): State<AppState>, ctx: Ctx, ApiQuery(q): ApiQuery<StaleParams>) -> ApiResult<Json<StaleReport>> {
    let defaults = StaleThresholds::default();
    let thresholds = StaleThresholds {
        unchanged_days: q.unchanged_days.unwrap_or(defaults.unchanged_days),
        not_evaluated_days: q.not_evaluated_days.unwrap_or(defaults.not_evaluated_days),
        rolled_out_days: q.rolled_out_days.unwrap_or(defaults.rolled_out_days),
    };
    Ok(Json(s.app.stale_flags(&ctx.0, q.environment.as_deref(), thresholds).await?))
}

// ---- OFREP ----------------------------------------------------------------------------------

/// The OFREP routes, authenticated with SDK keys rather than user tokens. Building the router
/// inside a Tokio runtime also starts the poller that keeps this process's flag snapshots in
/// step with the store (other replicas' changes are seen within about [`POLL_INTERVAL`]).
pub fn router(state: AppState) -> Router<AppState> {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let poller = state.app.flag_poller();
        runtime.spawn(async move {
            let mut interval = tokio::time::interval(POLL_INTERVAL);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                if !poller.tick().await {
                    break;
                }
            }
        });
    }
    state.app.set_flag_streams_enabled(!matches!(std::env::var("SIGNALBOX_FLAGS_SSE").as_deref(), Ok("off" | "0" | "false")));
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let flusher = state.app.flag_poller();
        let seconds = std::env::var("SIGNALBOX_FLAG_STATS_FLUSH_SECONDS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|s| *s >= 1)
            .unwrap_or(DEFAULT_STATS_FLUSH_SECONDS);
        runtime.spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(seconds));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval.tick().await;
            loop {
                interval.tick().await;
                if !flusher.flush().await {
                    break;
                }
            }
        });
    }
    Router::new()
        .route(EVENTS_PATH, get(ofrep_events))
        .route("/ofrep/v1/evaluate/flags", post(ofrep_bulk))
        .route("/ofrep/v1/evaluate/flags/", post(ofrep_bulk))
        .route("/ofrep/v1/evaluate/flags/{key}", post(ofrep_single))
}

fn empty(status: StatusCode) -> Response {
    (status, Body::empty()).into_response()
}

fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => bytes_response(status, bytes),
        Err(e) => {
            tracing::error!(error = %e, "OFREP response could not be written");
            let body = r#"{"errorDetails":"the response could not be written; retry shortly"}"#;
            bytes_response(StatusCode::INTERNAL_SERVER_ERROR, body.as_bytes().to_vec())
        }
    }
}

fn bytes_response(status: StatusCode, bytes: Vec<u8>) -> Response {
    let mut response = (status, bytes).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The body of a successful bulk evaluation, written item by item as the flags are evaluated
/// (one prepared context for the request, counted by the snapshot): exactly the bytes
/// `serde_json::to_vec(&BulkEvaluationSuccess { flags: bulk_item(..) for each flag, metadata: the
/// set's unless empty, event_streams })` gives, without building the owned items first.
pub fn bulk_body(snapshot: &FlagSnapshot, context: &Value, now: i64, event_streams: Option<&[EventStream]>) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(64 + 160 * snapshot.compiled.keys().len());
    out.extend_from_slice(b"{\"flags\":[");
    let mut written: serde_json::Result<()> = Ok(());
    let mut first = true;
    // Every flag is evaluated (and counted) even if writing failed, as before.
    snapshot.evaluate_each(context, now, |flag, resolution| {
        if written.is_err() {
            return;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        written = serde_json::to_writer(&mut out, &ofrep::bulk_item_ref(flag, resolution));
    });
    written?;
    out.push(b']');
    let metadata = snapshot.compiled.metadata();
    if !metadata.is_empty() {
        out.extend_from_slice(b",\"metadata\":");
        serde_json::to_writer(&mut out, metadata)?;
    }
    if let Some(streams) = event_streams {
        out.extend_from_slice(b",\"eventStreams\":");
        serde_json::to_writer(&mut out, streams)?;
    }
    out.push(b'}');
    Ok(out)
}

fn general_error(detail: &str) -> Response {
    json_response(StatusCode::INTERNAL_SERVER_ERROR, &ofrep::GeneralErrorResponse { error_details: detail.to_string() })
}

/// Authenticates the SDK key and applies its rate limit. `Err` is the response to send:
/// 401 without a key, 403 with a key that is unknown or revoked (no body, as OFREP says),
/// 429 with `Retry-After` over the limit.
async fn sdk_key(state: &AppState, headers: &HeaderMap) -> Result<Arc<SdkKey>, Response> {
    let from_api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim);
    let from_bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(secret) = from_api_key.or(from_bearer).filter(|s| !s.is_empty()) else {
        let mut response = empty(StatusCode::UNAUTHORIZED);
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return Err(response);
    };
    let key = match state.app.authenticate_sdk_key(secret).await {
        Ok(Some(key)) => key,
        Ok(None) => return Err(empty(StatusCode::FORBIDDEN)),
        Err(e) => {
            tracing::error!(error = %e, "SDK key lookup failed");
            return Err(general_error("the server could not check the SDK key; retry shortly"));
        }
    };
    if let Err(seconds) = state.app.sdk_rate_check(&key) {
        let mut response = empty(StatusCode::TOO_MANY_REQUESTS);
        if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Err(response);
    }
    Ok(key)
}

/// The SSE change stream's path (advertised in bulk responses as `eventStreams[0].endpoint.requestUri`).
pub const EVENTS_PATH: &str = "/ofrep/v1/events";
/// How long an SDK may stay inactive before closing the stream (OFREP `inactivityDelaySec`).
pub const INACTIVITY_DELAY_SECONDS: u32 = 120;
/// Keep-alive comments on the SSE stream.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

fn now(s: &AppState) -> i64 {
    s.app.flags_now().timestamp()
}

/// The request body, or the problem for one that could not be read (over the size limit: 413).
fn request_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Box<Problem>> {
    body.map_err(|rejection| {
        Box::new(body_rejection(
            &rejection,
            "the evaluation request exceeds the server's body limit (SIGNALBOX_MAX_BODY_BYTES); send a smaller context",
        ))
    })
}

pub async fn ofrep_single(
    State(s): State<AppState>,
    Path(flag_key): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let key = match sdk_key(&s, &headers).await {
        Ok(key) => key,
        Err(response) => return response,
    };
    let body = match request_body(body) {
        Ok(body) => body,
        Err(problem) => return (*problem).into_response(),
    };
    let context = match EvaluationRequest::parse(&body, RequestPolicy::default()) {
        Ok(context) => context,
        Err(e) => {
            let failure =
                EvaluationFailure { key: flag_key, error_code: e.error_code, error_details: Some(e.error_details), metadata: None };
            return json_response(StatusCode::BAD_REQUEST, &failure);
        }
    };
    let snapshot = match s.app.flag_snapshot(&key).await {
        Ok(snapshot) => snapshot,
        Err(e) => {
            tracing::error!(error = %e, "flag snapshot unavailable");
            return general_error("the flags could not be loaded; retry shortly");
        }
    };
    let Some(snapshot) = snapshot else {
        let failure = EvaluationFailure {
            error_details: Some(format!("flag {flag_key:?} was not found: environment {} has no flags yet", key.environment)),
            key: flag_key,
            error_code: ErrorCode::FlagNotFound,
            metadata: None,
        };
        return json_response(StatusCode::NOT_FOUND, &failure);
    };
    let resolution = snapshot.evaluate(&flag_key, &context, now(&s));
    // Written straight from the resolution: the same JSON as `single_response(..).to_json()`
    // without copying the value and metadata into an intermediate `serde_json::Value`.
    let status = StatusCode::from_u16(ofrep::single_status(&resolution)).unwrap_or(StatusCode::BAD_REQUEST);
    json_response(status, &ofrep::bulk_item_ref(&flag_key, &resolution))
}

pub async fn ofrep_bulk(State(s): State<AppState>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let key = match sdk_key(&s, &headers).await {
        Ok(key) => key,
        Err(response) => return response,
    };
    let body = match request_body(body) {
        Ok(body) => body,
        Err(problem) => return (*problem).into_response(),
    };
    let context = match EvaluationRequest::parse(&body, RequestPolicy::default()) {
        Ok(context) => context,
        Err(e) => {
            let failure = BulkEvaluationFailure { error_code: e.error_code.as_str().to_string(), error_details: Some(e.error_details) };
            return json_response(StatusCode::BAD_REQUEST, &failure);
        }
    };
    let snapshot = match s.app.flag_snapshot(&key).await {
        Ok(snapshot) => snapshot,
        Err(e) => {
            tracing::error!(error = %e, "flag snapshot unavailable");
            return general_error("the flags could not be loaded; retry shortly");
        }
    };
    let now = now(&s);
    let version = match &snapshot {
        // A rule reading `$flagd.timestamp` can answer differently from one second to the next
        // with the same set and context, so the time is part of what the ETag stands for.
        Some(snapshot) if snapshot.compiled.reads_clock() => format!("{}@{now}", snapshot.etag_version),
        Some(snapshot) => snapshot.etag_version.clone(),
        None => format!("empty:{}", key.environment_id),
    };
    let etag = ofrep::bulk_etag(&version, &context);
    if let Some(header) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        if ofrep::if_none_match_matches(header, &etag) {
            let mut response = empty(StatusCode::NOT_MODIFIED);
            if let Ok(v) = HeaderValue::from_str(&etag) {
                response.headers_mut().insert(header::ETAG, v);
            }
            return response;
        }
    }
    let mut response = match &snapshot {
        Some(snapshot) => match bulk_body(snapshot, &context, now, event_streams(&s).as_deref()) {
            Ok(bytes) => bytes_response(StatusCode::OK, bytes),
            Err(e) => {
                tracing::error!(error = %e, "bulk evaluation response could not be written");
                return general_error("the evaluation response could not be written; retry shortly");
            }
        },
        None => json_response(
            StatusCode::OK,
            &BulkEvaluationSuccess { flags: vec![], metadata: Some(Map::new()), event_streams: event_streams(&s) },
        ),
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

/// `eventStreams` of a bulk response: the SSE stream on this server (same origin), unless turned off.
fn event_streams(s: &AppState) -> Option<Vec<EventStream>> {
    s.app.flag_streams_enabled().then(|| {
        vec![EventStream {
            kind: "sse".into(),
            url: None,
            endpoint: Some(EventStreamEndpoint { origin: None, request_uri: EVENTS_PATH.into() }),
            inactivity_delay_sec: Some(INACTIVITY_DELAY_SECONDS),
        }]
    })
}

fn refetch_event(etag: Option<String>, last_modified: Option<i64>) -> Event {
    let id = etag.clone();
    let data = serde_json::to_string(&RefetchEvaluationEvent::new(etag, last_modified)).unwrap_or_default();
    let event = Event::default().event("message").retry(Duration::from_secs(5)).data(data);
    match id {
        Some(id) => event.id(id),
        None => event,
    }
}

/// `GET /ofrep/v1/events`: the OFREP change stream (Server-Sent Events). Authenticated with the
/// same SDK keys; sends `refetchEvaluation` (`etag` = the flag configuration version,
/// `lastModified` = Unix seconds) whenever the key's flag set gets a new revision, as this
/// process's snapshot swap sees it (a change on another replica arrives within the poll
/// interval). A reconnect whose `Last-Event-ID` is not the current version gets an event at once.
/// Each stream holds one broadcast receiver, a channel of 8 events and one task; at most
/// `MAX_EVENT_STREAMS` are open per process (503 with `Retry-After` beyond). Streams end when the
/// server shuts down (the SDK reconnects to another replica), so they never hold up the drain.
pub async fn ofrep_events(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let key = match sdk_key(&s, &headers).await {
        Ok(key) => key,
        Err(response) => return response,
    };
    let mut closing = s.app.flag_streams_closing();
    let guard = if *closing.borrow() { None } else { s.app.open_flag_stream() };
    let Some(guard) = guard else {
        let mut response = empty(StatusCode::SERVICE_UNAVAILABLE);
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return response;
    };
    let mut changes = s.app.flag_changes();
    let mut wanted = vec![key.environment_id.clone()];
    if let Some(service) = &key.service_id {
        wanted.push(format!("{}/{service}", key.environment_id));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(8);
    let last_id = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_string);
    if let Some(last_id) = last_id {
        if let Ok(Some(current)) = s.app.flag_snapshot(&key).await {
            if current.etag_version != last_id {
                let _ = tx.try_send(Ok(refetch_event(Some(current.etag_version.clone()), Some(current.updated_at.timestamp()))));
            }
        }
    }
    tokio::spawn(async move {
        let _guard = guard;
        loop {
            tokio::select! {
                _ = tx.closed() => break,
                _ = closing.changed() => break,
                message = changes.recv() => {
                    let event = match message {
                        Ok(change) if wanted.contains(&change.set_key) => refetch_event(Some(change.etag), Some(change.last_modified)),
                        Ok(_) => continue,
                        // Missed changes: one refetch covers them all.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => refetch_event(None, None),
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    };
                    if tx.send(Ok(event)).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response()
}

/// The `/api/v1/flags` routes. The OFREP endpoints are not in this document (it lists exactly
/// the `/api/v1` route table); their contract is OFREP's own OpenAPI document, see docs/FLAGS.md.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        list_flag_sets, get_flag_set, put_flag_set, export_flag_set, list_revisions, revert_flag_set, patch_flag, delete_flag,
        list_sdk_keys, create_sdk_key, revoke_sdk_key,
        schedule_flag_change, list_flag_schedules, get_flag_schedule, cancel_flag_schedule, flag_stats, stale_flags,
    ),
    components(schemas(
        signalbox_app::flags::FlagSetView, signalbox_app::flags::FlagInfo, signalbox_app::flags::FlagChange,
        signalbox_app::flags::FieldChange, signalbox_app::flags::FlagSetRevision, signalbox_app::flags::SdkKey,
        signalbox_app::flags::IssuedSdkKey, signalbox_app::flags::CreateSdkKey, signalbox_app::flags::RevertFlagSet,
        FlagSchedule, ScheduleFlagChange, FlagStatsRecord, signalbox_app::flag_lifecycle::FlagStat,
        StaleReport, signalbox_app::flag_lifecycle::StaleFlag, signalbox_app::flag_lifecycle::StaleReason, StaleThresholds,
    )),
    tags(
        (name = "flags", description = "Feature flag sets per environment in flagd format, revisions, SDK keys"),
    )
)]
pub struct FlagsApiDoc;
