//! HTTP for promotion and progressive delivery (issue 6): promotion paths, promoting a
//! release, deployments and their rollouts (status, controls, driver reports, pushed metrics),
//! deployments recorded by external CI, the environment matrix and configuration parity. No
//! rule lives here: each handler is one call on [`signalbox_app::App`].

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::routing::{get, post, put};
use axum::Json;
use serde::Deserialize;
use signalbox_app::environments::{EnvironmentMatrix, ParityReport};
use signalbox_app::promotion::{
    ControlRequest, Deployment, DriverReport, MetricPushRecord, PromoteRequest, PromotionPath, PromotionResult, PushMetrics, PutPath,
    RecordDeployment,
};
use signalbox_domain::access::Permission;
use utoipa::IntoParams;

use crate::extract::{ApiJson, ApiQuery, Ctx};
use crate::problem::{ApiResult, Problem};
use crate::routes::RouteSpec;
use crate::AppState;

/// Promotion's routes, each with its permission. Promote-now additionally needs
/// `override_rollout`, checked by the application with the reason.
pub fn routes() -> Vec<RouteSpec> {
    use Permission::*;
    let r = |method: Method, path: &'static str, permission: Option<Permission>, handler| RouteSpec { method, path, permission, handler };
    vec![
        r(Method::GET, "/api/v1/promotion-paths", Some(Read), get(list_paths)),
        r(Method::PUT, "/api/v1/promotion-paths", Some(ManagePolicy), put(put_path)),
        r(Method::POST, "/api/v1/releases/{id}/promote", Some(Deploy), post(promote)),
        r(Method::GET, "/api/v1/deployments", Some(Read), get(list_deployments)),
        r(Method::POST, "/api/v1/deployments/record", Some(Deploy), post(record_deployment)),
        r(Method::GET, "/api/v1/deployments/{id}", Some(Read), get(get_deployment)),
        r(Method::POST, "/api/v1/deployments/{id}/control", Some(Deploy), post(control)),
        r(Method::POST, "/api/v1/deployments/{id}/report", Some(Deploy), post(report)),
        r(Method::POST, "/api/v1/deployments/{id}/metrics", Some(Deploy), post(push_metrics)),
        r(Method::GET, "/api/v1/environments/matrix", Some(Read), get(matrix)),
        r(Method::GET, "/api/v1/environments/parity", Some(Read), get(parity)),
    ]
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    list_paths,
    put_path,
    promote,
    list_deployments,
    record_deployment,
    get_deployment,
    control,
    report,
    push_metrics,
    matrix,
    parity
))]
pub struct PromotionApiDoc;

#[utoipa::path(get, path = "/api/v1/promotion-paths", tag = "promotion", responses((status = 200, body = Vec<PromotionPath>)))]
pub async fn list_paths(State(s): State<AppState>, ctx: Ctx) -> ApiResult<Json<Vec<PromotionPath>>> {
    Ok(Json(s.app.list_paths(&ctx.0).await?))
}

#[utoipa::path(put, path = "/api/v1/promotion-paths", tag = "promotion", request_body = PutPath, responses((status = 200, body = PromotionPath), (status = 422, body = Problem)))]
pub async fn put_path(State(s): State<AppState>, ctx: Ctx, ApiJson(req): ApiJson<PutPath>) -> ApiResult<Json<PromotionPath>> {
    Ok(Json(s.app.put_path(&ctx.0, req).await?.value))
}

#[utoipa::path(post, path = "/api/v1/releases/{id}/promote", tag = "promotion", params(("id" = String, Path)), request_body = PromoteRequest, responses((status = 201, body = PromotionResult), (status = 409, body = Problem, description = "refused: every reason in `reasons`")))]
pub async fn promote(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<PromoteRequest>,
) -> ApiResult<(StatusCode, Json<PromotionResult>)> {
    Ok((StatusCode::CREATED, Json(s.app.promote(&ctx.0, &id, req).await?)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeploymentListParams {
    /// Release id or key.
    pub release: Option<String>,
    /// Environment id or name.
    pub environment: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/deployments", tag = "promotion", params(DeploymentListParams), responses((status = 200, body = Vec<Deployment>)))]
pub async fn list_deployments(
    State(s): State<AppState>,
    ctx: Ctx,
    ApiQuery(q): ApiQuery<DeploymentListParams>,
) -> ApiResult<Json<Vec<Deployment>>> {
    Ok(Json(s.app.list_deployments(&ctx.0, q.release.as_deref(), q.environment.as_deref()).await?))
}

#[utoipa::path(post, path = "/api/v1/deployments/record", tag = "promotion", request_body = RecordDeployment, responses((status = 201, body = PromotionResult), (status = 409, body = Problem)))]
pub async fn record_deployment(
    State(s): State<AppState>,
    ctx: Ctx,
    ApiJson(req): ApiJson<RecordDeployment>,
) -> ApiResult<(StatusCode, Json<PromotionResult>)> {
    Ok((StatusCode::CREATED, Json(s.app.record_deployment(&ctx.0, req).await?)))
}

#[utoipa::path(get, path = "/api/v1/deployments/{id}", tag = "promotion", params(("id" = String, Path, description = "id or D-<n>")), responses((status = 200, body = Deployment)))]
pub async fn get_deployment(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult<Json<Deployment>> {
    Ok(Json(s.app.get_deployment(&ctx.0, &id).await?.value))
}

#[utoipa::path(post, path = "/api/v1/deployments/{id}/control", tag = "promotion", params(("id" = String, Path)), request_body = ControlRequest, responses((status = 200, body = Deployment), (status = 409, body = Problem)))]
pub async fn control(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ControlRequest>,
) -> ApiResult<Json<Deployment>> {
    Ok(Json(s.app.control_rollout(&ctx.0, &id, req).await?.value))
}

#[utoipa::path(post, path = "/api/v1/deployments/{id}/report", tag = "promotion", params(("id" = String, Path)), request_body = DriverReport, responses((status = 200, body = Deployment), (status = 409, body = Problem)))]
pub async fn report(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<DriverReport>,
) -> ApiResult<Json<Deployment>> {
    Ok(Json(s.app.report_deployment(&ctx.0, &id, req).await?.value))
}

#[utoipa::path(post, path = "/api/v1/deployments/{id}/metrics", tag = "promotion", params(("id" = String, Path)), request_body = PushMetrics, responses((status = 201, body = MetricPushRecord), (status = 422, body = Problem)))]
pub async fn push_metrics(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<PushMetrics>,
) -> ApiResult<(StatusCode, Json<MetricPushRecord>)> {
    Ok((StatusCode::CREATED, Json(s.app.push_metrics(&ctx.0, &id, req).await?)))
}

#[utoipa::path(get, path = "/api/v1/environments/matrix", tag = "promotion", responses((status = 200, body = EnvironmentMatrix)))]
pub async fn matrix(State(s): State<AppState>, ctx: Ctx) -> ApiResult<Json<EnvironmentMatrix>> {
    Ok(Json(s.app.environment_matrix(&ctx.0).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ParityParams {
    /// Environment id or name compared from (e.g. staging).
    pub from: String,
    /// Environment id or name compared to (e.g. production).
    pub to: String,
    /// Comma-separated keys expected to differ (compared for presence only).
    pub ignore: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/environments/parity", tag = "promotion", params(ParityParams), responses((status = 200, body = ParityReport)))]
pub async fn parity(State(s): State<AppState>, ctx: Ctx, ApiQuery(q): ApiQuery<ParityParams>) -> ApiResult<Json<ParityReport>> {
    let ignore: Vec<String> =
        q.ignore.as_deref().unwrap_or_default().split(',').map(str::trim).filter(|k| !k.is_empty()).map(String::from).collect();
    Ok(Json(s.app.environment_parity(&ctx.0, &q.from, &q.to, &ignore).await?))
}
