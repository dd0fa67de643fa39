//! HTTP for versions in the server (issue 5, part 4): a service's repository, importing a
//! release's changes from git, and release notes. No rule lives here: each handler is one call
//! on [`signalbox_app::App`].

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Json;
use serde::Deserialize;
use signalbox_app::release_notes::{NotesFormat, ReleaseNotes};
use signalbox_app::repositories::{ImportResult, SetRepository};
use signalbox_domain::access::Permission;
use signalbox_domain::model::Service;
use utoipa::IntoParams;

use crate::extract::{ApiJson, ApiQuery, Ctx, IfMatch, Resource};
use crate::problem::{ApiResult, Problem};
use crate::routes::RouteSpec;
use crate::AppState;

pub fn routes() -> Vec<RouteSpec> {
    use Permission::*;
    let r = |method: Method, path: &'static str, permission: Option<Permission>, handler| RouteSpec { method, path, permission, handler };
    vec![
        r(Method::PUT, "/api/v1/services/{id}/repository", Some(ManageCatalog), put(set_repository)),
        r(Method::DELETE, "/api/v1/services/{id}/repository", Some(ManageCatalog), delete(remove_repository)),
        r(Method::POST, "/api/v1/releases/{id}/changes/import", Some(EditRelease), post(import_changes)),
        r(Method::GET, "/api/v1/releases/{id}/notes", Some(Read), get(release_notes)),
    ]
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(set_repository, remove_repository, import_changes, release_notes), components(schemas(ReleaseNotes)))]
pub struct VersioningApiDoc;

#[utoipa::path(put, path = "/api/v1/services/{id}/repository", tag = "catalog", params(("id" = String, Path, description = "Id or name")), request_body = SetRepository,
    responses((status = 200, body = Service), (status = 422, body = Problem, description = "`url` is not an accepted location, or cannot be cloned or read; `tag_pattern` is not a valid template or regex; an `include_paths/<i>` glob is not valid"), (status = 412, body = Problem)))]
pub async fn set_repository(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    IfMatch(v): IfMatch,
    ApiJson(req): ApiJson<SetRepository>,
) -> ApiResult<Resource<Service>> {
    Ok(Resource(StatusCode::OK, s.app.set_service_repository(&ctx.0, &id, v, req).await?))
}

#[utoipa::path(delete, path = "/api/v1/services/{id}/repository", tag = "catalog", params(("id" = String, Path, description = "Id or name")),
    responses((status = 200, body = Service, description = "the service without a repository (also when it had none)"), (status = 412, body = Problem)))]
pub async fn remove_repository(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    IfMatch(v): IfMatch,
) -> ApiResult<Resource<Service>> {
    Ok(Resource(StatusCode::OK, s.app.remove_service_repository(&ctx.0, &id, v).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ImportParams {
    /// Environment id or name: changes are the commits since what runs there. Absent: since
    /// the previous release tag.
    pub environment: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/releases/{id}/changes/import", tag = "releases", params(("id" = String, Path, description = "Id or R-<n>"), ImportParams),
    responses((status = 200, body = ImportResult), (status = 409, body = Problem, description = "the release is locked after approval"), (status = 422, body = Problem, description = "an unknown commit or environment")))]
pub async fn import_changes(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ImportParams>,
) -> ApiResult<Json<ImportResult>> {
    Ok(Json(s.app.import_release_changes(&ctx.0, &id, q.environment.as_deref()).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct NotesParams {
    /// `markdown` (default), `html` or `json`.
    pub format: Option<String>,
    /// Environment id or name the live ranges are measured against (when nothing is imported).
    pub environment: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/releases/{id}/notes", tag = "releases", params(("id" = String, Path, description = "Id or R-<n>"), NotesParams),
    responses((status = 200, description = "The notes (text/markdown, text/html or application/json: ReleaseNotes); ETag over the body, X-Signalbox-Release-Revision", body = ReleaseNotes),
        (status = 304, description = "If-None-Match matched"), (status = 422, body = Problem)))]
pub async fn release_notes(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<NotesParams>,
) -> ApiResult<Response> {
    let format = NotesFormat::parse(q.format.as_deref())?;
    let notes = s.app.release_notes(&ctx.0, &id, format, q.environment.as_deref()).await?;
    let etag = HeaderValue::from_str(&notes.etag).ok();
    let revision = HeaderValue::from(notes.revision);
    let matched = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == notes.etag || t.trim() == "*"));
    let mut response = if matched {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = notes.body.into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(notes.content_type));
        r
    };
    if let Some(e) = etag {
        response.headers_mut().insert(header::ETAG, e);
    }
    response.headers_mut().insert("x-signalbox-release-revision", revision);
    Ok(response)
}
