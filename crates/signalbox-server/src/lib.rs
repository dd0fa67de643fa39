//! Signalbox's HTTP server: the only crate that knows HTTP. It maps requests onto
//! `signalbox_app::App`, errors onto RFC 9457 problems, and serves the OpenAPI document,
//! interactive docs, health, readiness and Prometheus metrics.

pub mod api;
pub mod calendar_api;
pub mod extract;
pub mod middleware;
pub mod ofrep;
pub mod openapi;
pub mod problem;
pub mod promotion_api;
pub mod routes;
pub mod versioning_api;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderName, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use signalbox_app::App;
use std::net::SocketAddr;
use std::sync::OnceLock;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::problem::Problem;

#[derive(Clone)]
pub struct AppState {
    pub app: App,
    pub metrics: PrometheusHandle,
    pub max_body_bytes: usize,
}

/// The process-wide Prometheus recorder (installing a second one is an error, and tests build
/// many servers in one process).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
                .expect("static bucket list is valid");
            match builder.install_recorder() {
                Ok(handle) => handle,
                // Another recorder is installed (embedding applications): render ours anyway.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

pub fn router(app: App, max_body_bytes: usize) -> Router {
    let state = AppState { app, metrics: metrics_handle(), max_body_bytes };
    let mut api: Router<AppState> = Router::new();
    for spec in routes::api_routes() {
        let handler = match spec.permission {
            Some(permission) => {
                spec.handler.route_layer(axum::middleware::from_fn(move |req, next| middleware::require_permission(permission, req, next)))
            }
            None => spec.handler,
        };
        api = api.route(spec.path, handler);
    }
    let api = api
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), middleware::idempotency))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), middleware::authenticate));

    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .merge(api)
        .merge(ofrep::router(state.clone()))
        .route("/api/v1/openapi.json", get(openapi_json))
        .route("/api/docs", get(docs_page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(middleware::record_metrics))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
                "the server hit a bug handling this request; it has been logged",
            )
            .into_response()
        }))
        .with_state(state)
}

async fn openapi_json() -> Response {
    static DOC: OnceLock<String> = OnceLock::new();
    let body = DOC.get_or_init(|| openapi::document().to_json().unwrap_or_else(|_| "{}".into()));
    ([(header::CONTENT_TYPE, "application/json")], body.clone()).into_response()
}

async fn docs_page() -> Html<&'static str> {
    Html(include_str!("docs.html"))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

async fn readyz(State(s): State<AppState>) -> Response {
    let r = s.app.store.readiness().await;
    let body = serde_json::json!({
        "status": if r.is_ready() { "ready" } else { "not_ready" },
        "backend": s.app.store.backend(),
        "database_reachable": r.reachable,
        "applied_migration": r.applied_migration,
        "expected_migration": r.expected_migration,
    });
    let status = if r.is_ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    let pool = s.app.store.pool_stats();
    let backend = s.app.store.backend();
    metrics::gauge!("signalbox_db_pool_connections", "backend" => backend, "state" => "open").set(pool.size as f64);
    metrics::gauge!("signalbox_db_pool_connections", "backend" => backend, "state" => "idle").set(pool.idle as f64);
    metrics::gauge!("signalbox_db_pool_max_connections", "backend" => backend).set(pool.max as f64);
    if let Ok(Some((seq, _))) = s.app.store.audit_head().await {
        metrics::gauge!("signalbox_audit_sequence").set(seq as f64);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render()).into_response()
}

async fn not_found(uri: axum::http::Uri) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "Not found",
        format!("no route for {}; the API is under /api/v1 (see /api/docs)", uri.path()),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        format!("{method} is not supported on {}", uri.path()),
    )
}

/// Whether this process runs the background scheduler (and the rollout controller's loop),
/// and how often the scheduler ticks. The binary takes it from the `[scheduler]` section of
/// the configuration; [`serve`] reads the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerOptions {
    pub enabled: bool,
    pub interval: std::time::Duration,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions { enabled: true, interval: std::time::Duration::from_secs(15) }
    }
}

impl SchedulerOptions {
    /// `SIGNALBOX_SCHEDULER=off` and `SIGNALBOX_SCHEDULER_INTERVAL_SECS`, for embedders and
    /// tests that start the server without a configuration.
    pub fn from_env() -> SchedulerOptions {
        let secs = std::env::var("SIGNALBOX_SCHEDULER_INTERVAL_SECS").ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(15).max(1);
        SchedulerOptions {
            enabled: std::env::var("SIGNALBOX_SCHEDULER").as_deref() != Ok("off"),
            interval: std::time::Duration::from_secs(secs),
        }
    }
}

/// Serves until `shutdown` resolves, then drains in-flight requests; scheduler settings from
/// the environment ([`SchedulerOptions::from_env`]).
pub async fn serve(
    app: App,
    listener: tokio::net::TcpListener,
    max_body_bytes: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(app, listener, max_body_bytes, SchedulerOptions::from_env(), shutdown).await
}

/// [`serve`] with explicit scheduler settings.
pub async fn serve_with(
    app: App,
    listener: tokio::net::TcpListener,
    max_body_bytes: usize,
    scheduler_options: SchedulerOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The background scheduler (trains' departures and cut-offs; later controllers' jobs). It
    // runs on every replica: jobs fire exactly once whatever the count (see
    // `signalbox_app::scheduler`).
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_rx_rollouts = stop_rx.clone();
    let scheduler = match scheduler_options.enabled {
        false => None,
        true => Some(tokio::spawn(signalbox_app::scheduler::run(app.clone(), scheduler_options.interval, stop_rx))),
    };
    // The rollout controller: its own, faster loop over the same jobs table (issue 6), off
    // with the scheduler. `SIGNALBOX_ROLLOUT_INTERVAL_MS` sets its tick (default 250 ms).
    let rollouts = match scheduler_options.enabled {
        false => None,
        true => {
            let ms = std::env::var("SIGNALBOX_ROLLOUT_INTERVAL_MS").ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(250).max(10);
            let stop = stop_rx_rollouts;
            Some(tokio::spawn(signalbox_app::rollouts::run(app.clone(), std::time::Duration::from_millis(ms), 64, stop)))
        }
    };
    let flags = app.clone();
    let flags_at_exit = app.clone();
    let router = router(app, max_body_bytes);
    let shutdown = async move {
        shutdown.await;
        // Flag SSE streams never finish on their own: end them so the drain does not wait.
        flags.close_flag_streams();
        let _ = stop_tx.send(true);
    };
    let served = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(shutdown).await;
    if let Some(handle) = scheduler {
        let _ = handle.await;
    }
    if let Some(handle) = rollouts {
        let _ = handle.await;
    }
    // Flag evaluation counts gathered since the last periodic flush.
    if let Err(e) = flags_at_exit.flush_flag_stats().await {
        tracing::warn!(error = %e, "flag evaluation counters could not be written at shutdown");
    }
    served
}
