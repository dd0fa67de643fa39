//! The `/api/v1` handlers. Each translates HTTP into one call on [`signalbox_app::App`] and back;
//! no rule lives here. The route table ([`crate::routes::api_routes`]) names each handler's
//! permission.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use signalbox_app::artifacts::Registered;
use signalbox_app::audit::AuditFilter;
use signalbox_app::releases::TransitionPreview;
use signalbox_app::requests::*;
use signalbox_app::{PageRequest, Paged, Versioned};
use signalbox_domain::access::RoleBinding;
use signalbox_domain::audit::AuditEntry;
use signalbox_domain::lifecycle::ReleaseState;
use signalbox_domain::model::*;
use signalbox_domain::templates::Template;
use signalbox_store::ListQuery;
use utoipa::IntoParams;

use crate::extract::{ApiBytes, ApiJson, ApiQuery, Ctx, IfMatch, Resource};
use crate::problem::{ApiResult, Problem};
use crate::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    /// Page size, 1–500 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageParams {
    fn page(&self) -> PageRequest {
        PageRequest { limit: self.limit, cursor: self.cursor.clone() }
    }
}

macro_rules! list_params {
    ($name:ident { $($field:ident : $doc:literal),* }) => {
        #[derive(Debug, Deserialize, IntoParams)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            pub limit: Option<u32>,
            pub cursor: Option<String>,
            $(#[doc = $doc] pub $field: Option<String>,)*
        }
        impl $name {
            fn page(&self) -> PageRequest { PageRequest { limit: self.limit, cursor: self.cursor.clone() } }
        }
    };
}

list_params!(TeamParams { domain: "Domain id or name." });
list_params!(ServiceParams { team: "Team id or name.", domain: "Domain id or name." });
list_params!(ArtifactParams { service: "Service id or name." });
list_params!(ReleaseParams { state: "Lifecycle state.", domain: "Domain id or name." });
list_params!(TokenParams { user: "User id or username (admins)." });
list_params!(BindingParams { user: "User id or username." });

async fn resolve_id(state: &AppState, ctx: &Ctx, kind: Kind, reference: &str) -> ApiResult<String> {
    match state.app.store.get(kind, reference).await.map_err(signalbox_app::AppError::from)? {
        Some(r) => Ok(r.id),
        None => {
            let _ = ctx;
            Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-parameter",
                "Invalid query parameter",
                format!("no {kind} with id or name {reference:?}"),
            )
            .into())
        }
    }
}

// ---- domains -------------------------------------------------------------------------------

#[utoipa::path(get, path = "/api/v1/domains", tag = "catalog", params(PageParams), responses((status = 200, body = inline(Paged<Domain>)), (status = 401, body = Problem)))]
pub async fn list_domains(State(s): State<AppState>, ctx: Ctx, ApiQuery(p): ApiQuery<PageParams>) -> ApiResult<Json<Paged<Domain>>> {
    Ok(Json(s.app.list_resources(&ctx.0, ListQuery::all(Kind::Domain), &p.page()).await?))
}

#[utoipa::path(post, path = "/api/v1/domains", tag = "catalog", request_body = CreateDomain, responses((status = 201, body = Domain), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_domain(State(s): State<AppState>, ctx: Ctx, ApiJson(req): ApiJson<CreateDomain>) -> ApiResult<Resource<Domain>> {
    Ok(Resource(StatusCode::CREATED, s.app.create_domain(&ctx.0, req).await?))
}

#[utoipa::path(get, path = "/api/v1/domains/{id}", tag = "catalog", params(("id" = String, Path, description = "Id or name")), responses((status = 200, body = Domain), (status = 404, body = Problem)))]
pub async fn get_domain(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult<Resource<Domain>> {
    Ok(Resource(StatusCode::OK, s.app.get_resource(&ctx.0, Kind::Domain, &id).await?))
}

// ---- teams ---------------------------------------------------------------------------------

#[utoipa::path(get, path = "/api/v1/teams", tag = "catalog", params(TeamParams), responses((status = 200, body = inline(Paged<Team>))))]
pub async fn list_teams(State(s): State<AppState>, ctx: Ctx, ApiQuery(p): ApiQuery<TeamParams>) -> ApiResult<Json<Paged<Team>>> {
    let mut q = ListQuery::all(Kind::Team);
    if let Some(d) = &p.domain {
        q.parent = Some(resolve_id(&s, &ctx, Kind::Domain, d).await?);
    }
    Ok(Json(s.app.list_resources(&ctx.0, q, &p.page()).await?))
}

#[utoipa::path(post, path = "/api/v1/teams", tag = "catalog", request_body = CreateTeam, responses((status = 201, body = Team), (status = 422, body = Problem)))]
pub async fn create_team(State(s): State<AppState>, ctx: Ctx, ApiJson(req): ApiJson<CreateTeam>) -> ApiResult<Resource<Team>> {
    Ok(Resource(StatusCode::CREATED, s.app.create_team(&ctx.0, req).await?))
}

#[utoipa::path(get, path = "/api/v1/teams/{id}", tag = "catalog", params(("id" = String, Path, description = "Id or name")), responses((status = 200, body = Team), (status = 404, body = Problem)))]
pub async fn get_team(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult<Resource<Team>> {
    Ok(Resource(StatusCode::OK, s.app.get_resource(&ctx.0, Kind::Team, &id).await?))
}

// ---- services ------------------------------------------------------------------------------

#[utoipa::path(get, path = "/api/v1/services", tag = "catalog", params(ServiceParams), responses((status = 200, body = inline(Paged<Service>))))]
pub async fn list_services(State(s): State<AppState>, ctx: Ctx, ApiQuery(p): ApiQuery<ServiceParams>) -> ApiResult<Json<Paged<Service>>> {
    let mut q = ListQuery::all(Kind::Service);
    if let Some(t) = &p.team {
        q.parent = Some(resolve_id(&s, &ctx, Kind::Team, t).await?);
    }
    if let Some(d) = &p.domain {
        let id = resolve_id(&s, &ctx, Kind::Domain, d).await?;
        q = q.with_field("domain_id", id);
    }
    Ok(Json(s.app.list_resources(&ctx.0, q, &p.page()).await?))
}

#[utoipa::path(post, path = "/api/v1/services", tag = "catalog", request_body = CreateService, responses((status = 201, body = Service), (status = 422, body = Problem)))]
pub async fn create_service(State(s): State<AppState>, ctx: Ctx, ApiJson(req): ApiJson<CreateService>) -> ApiResult<Resource<Service>> {
    Ok(Resource(StatusCode::CREATED, s.app.create_service(&ctx.0, req).await?))
}

#[utoipa::path(get, path = "/api/v1/services/{id}", tag = "catalog", params(("id" = String, Path, description = "Id or name")), responses((status = 200, body = Service), (status = 404, body = Problem)))]
pub async fn get_service(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult<Resource<Service>> {
    Ok(Resource(StatusCode::OK, s.app.get_resource(&ctx.0, Kind::Service, &id).await?))
}

#[utoipa::path(patch, path = "/api/v1/services/{id}", tag = "catalog", params(("id" = String, Path, description = "Id or name")), request_body = UpdateService, responses((status = 200, body = Service), (status = 412, body = Problem)))]
pub async fn update_service(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    IfMatch(v): IfMatch,
    ApiJson(req): ApiJson<UpdateService>,
) -> ApiResult<Resource<Service>> {
    Ok(Resource(StatusCode::OK, s.app.update_service(&ctx.0, &id, v, req).await?))
}

// ---- environments --------------------------------------------------------------------------

#[utoipa::path(get, path = "/api/v1/environments", tag = "catalog", params(PageParams), responses((status = 200, body = inline(Paged<Environment>))))]
pub async fn list_environments(
    State(s): State<AppState>,
    ctx: Ctx,
    ApiQuery(p): ApiQuery<PageParams>,
) -> ApiResult<Json<Paged<Environment>>> {
    let mut page = s.app.list_resources::<Environment>(&ctx.0, ListQuery::all(Kind::Environment), &p.page()).await?;
    page.items.sort_by_key(|e| e.position);
    Ok(Json(page))
}

#[utoipa::path(post, path = "/api/v1/environments", tag = "catalog", request_body = CreateEnvironment, responses((status = 201, body = Environment), (status = 422, body = Problem)))]
pub async fn create_environment(
    State(s): State<AppState>,
    ctx: Ctx,
    ApiJson(req): ApiJson<CreateEnvironment>,
) -> ApiResult<Resource<Environment>> {
    Ok(Resource(StatusCode::CREATED, s.app.create_environment(&ctx.0, req).await?))
}

#[utoipa::path(get, path = "/api/v1/environments/{id}", tag = "catalog", params(("id" = String, Path, description = "Id or name")), responses((status = 200, body = Environment), (status = 404, body = Problem)))]
pub async fn get_environment(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult<Resource<Environment>> {
    Ok(Resource(StatusCode::OK, s.app.get_resource(&ctx.0, Kind::Environment, &id).await?))
}

#[utoipa::path(patch, path = "/api/v1/environments/{id}", tag = "catalog", params(("id" = String, Path, description = "Id or name")), request_body = UpdateEnvironment, responses((status = 200, body = Environment), (status = 412, body = Problem)))]
pub async fn update_environment(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    IfMatch(v): IfMatch,
    ApiJson(req): ApiJson<UpdateEnvironment>,
) -> ApiResult<Resource<Environment>> {
    Ok(Resource(StatusCode::OK, s.app.update_environment(&ctx.0, &id, v, req).await?))
}

// ---- artifacts and changes -----------------------------------------------------------------

#[utoipa::path(get, path = "/api/v1/artifacts", tag = "artifacts", params(ArtifactParams), responses((status = 200, body = inline(Paged<Artifact>))))]
pub async fn list_artifacts(
    State(s): State<AppState>,
    ctx: Ctx,
    ApiQuery(p): ApiQuery<ArtifactParams>,
) -> ApiResult<Json<Paged<Artifact>>> {
    let mut q = ListQuery::all(Kind::Artifact);
    if let Some(svc) = &p.service {
        q.parent = Some(resolve_id(&s, &ctx, Kind::Service, svc).await?);
    }
    Ok(Json(s.app.list_resources(&ctx.0, q, &p.page()).await?))
}

/// Registers an artifact. The same service/version/digest again answers 200 with the stored
/// artifact; the same service/version with another digest is a 409.
#[utoipa::path(post, path = "/api/v1/artifacts", tag = "artifacts", request_body = RegisterArtifact, responses((status = 201, body = Artifact), (status = 200, body = Artifact, description = "Already registered with this digest"), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn register_artifact(
    State(s): State<AppState>,
    ctx: Ctx,
    ApiJson(req): ApiJson<RegisterArtifact>,
) -> ApiResult<Resource<Artifact>> {
    Ok(match s.app.register_artifact(&ctx.0, req).await? {
        Registered::Created(a) => Resource(StatusCode::CREATED, a),
        Registered::AlreadyRegistered(a) => Resource(StatusCode::OK, a),
    })
}

#[utoipa::path(get, path = "/api/v1/artifacts/{id}", tag = "artifacts", params(("id" = String, Path, description = "Artifact id or service_id@version")), responses((status = 200, body = Artifact), (status = 404, body = Problem)))]
pub async fn get_artifact(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult<Resource<Artifact>> {
    Ok(Resource(StatusCode::OK, s.app.get_resource(&ctx.0, Kind::Artifact, &id).await?))
}

#[utoipa::path(get, path = "/api/v1/changes", tag = "artifacts", params(ArtifactParams), responses((status = 200, body = inline(Paged<Change>))))]
pub async fn list_changes(State(s): State<AppState>, ctx: Ctx, ApiQuery(p): ApiQuery<ArtifactParams>) -> ApiResult<Json<Paged<Change>>> {
    let mut q = ListQuery::all(Kind::Change);
    if let Some(svc) = &p.service {
        q.parent = Some(resolve_id(&s, &ctx, Kind::Service, svc).await?);
    }
    Ok(Json(s.app.list_resources(&ctx.0, q, &p.page()).await?))
}

#[utoipa::path(post, path = "/api/v1/changes", tag = "artifacts", request_body = RecordChange, responses((status = 201, body = Change), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn record_change(State(s): State<AppState>, ctx: Ctx, ApiJson(req): ApiJson<RecordChange>) -> ApiResult<Resource<Change>> {
    Ok(Resource(StatusCode::CREATED, s.app.record_change(&ctx.0, req).await?))
}

#[utoipa::path(get, path = "/api/v1/changes/{id}", tag = "artifacts", params(("id" = String, Path)), responses((status = 200, body = Change), (status = 404, body = Problem)))]
pub async fn get_change(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult<Resource<Change>> {
    Ok(Resource(StatusCode::OK, s.app.get_resource(&ctx.0, Kind::Change, &id).await?))
}

// ---- releases ------------------------------------------------------------------------------

#[utoipa::path(get, path = "/api/v1/releases", tag = "releases", params(ReleaseParams), responses((status = 200, body = inline(Paged<Release>)), (status = 400, body = Problem)))]
pub async fn list_releases(State(s): State<AppState>, ctx: Ctx, ApiQuery(p): ApiQuery<ReleaseParams>) -> ApiResult<Json<Paged<Release>>> {
    let state = match &p.state {
        Some(raw) => Some(ReleaseState::parse(raw).ok_or_else(|| {
            let states: Vec<&str> = ReleaseState::ALL.iter().map(|s| s.as_str()).collect();
            crate::problem::bad_request(
                "invalid-parameter",
                "state",
                format!("{raw:?} is not a lifecycle state; use one of {}", states.join(", ")),
            )
        })?),
        None => None,
    };
    Ok(Json(s.app.list_releases(&ctx.0, state, p.domain.as_deref(), &p.page()).await?))
}

#[utoipa::path(post, path = "/api/v1/releases", tag = "releases", request_body = CreateRelease, responses((status = 201, body = Release), (status = 422, body = Problem)))]
pub async fn create_release(State(s): State<AppState>, ctx: Ctx, ApiJson(req): ApiJson<CreateRelease>) -> ApiResult<Resource<Release>> {
    Ok(Resource(StatusCode::CREATED, s.app.create_release(&ctx.0, req).await?))
}

#[utoipa::path(get, path = "/api/v1/releases/{id}", tag = "releases", params(("id" = String, Path, description = "Id or key (R-12)")), responses((status = 200, body = Release), (status = 404, body = Problem)))]
pub async fn get_release(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult<Resource<Release>> {
    Ok(Resource(StatusCode::OK, s.app.get_resource(&ctx.0, Kind::Release, &id).await?))
}

#[utoipa::path(patch, path = "/api/v1/releases/{id}", tag = "releases", params(("id" = String, Path, description = "Id or key (R-12)")), request_body = UpdateRelease, responses((status = 200, body = Release), (status = 409, body = Problem), (status = 412, body = Problem)))]
pub async fn update_release(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    IfMatch(v): IfMatch,
    ApiJson(req): ApiJson<UpdateRelease>,
) -> ApiResult<Resource<Release>> {
    Ok(Resource(StatusCode::OK, s.app.update_release(&ctx.0, &id, v, req).await?))
}

#[utoipa::path(post, path = "/api/v1/releases/{id}/components", tag = "releases", params(("id" = String, Path)), request_body = AddComponent, responses((status = 200, body = Release), (status = 409, body = Problem), (status = 412, body = Problem)))]
pub async fn add_component(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    IfMatch(v): IfMatch,
    ApiJson(req): ApiJson<AddComponent>,
) -> ApiResult<Resource<Release>> {
    Ok(Resource(StatusCode::OK, s.app.add_component(&ctx.0, &id, v, req).await?))
}

/// The states the release can move to from here, each with the reasons it is closed now.
#[utoipa::path(get, path = "/api/v1/releases/{id}/transitions", tag = "releases", params(("id" = String, Path)), responses((status = 200, body = TransitionPreview)))]
pub async fn preview_transitions(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult<Json<TransitionPreview>> {
    Ok(Json(s.app.transition_preview(&ctx.0, &id).await?))
}

/// Moves the release to another lifecycle state. Refusals (409) list every unmet precondition
/// in `reasons`; a stale `If-Match` is a 412.
#[utoipa::path(post, path = "/api/v1/releases/{id}/transitions", tag = "releases", params(("id" = String, Path)), request_body = TransitionRequest, responses((status = 200, body = Release), (status = 409, body = Problem), (status = 412, body = Problem)))]
pub async fn transition_release(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    IfMatch(v): IfMatch,
    ApiJson(req): ApiJson<TransitionRequest>,
) -> ApiResult<Resource<Release>> {
    Ok(Resource(StatusCode::OK, s.app.transition_release(&ctx.0, &id, v, req).await?))
}

#[utoipa::path(put, path = "/api/v1/releases/{id}/review", tag = "releases", params(("id" = String, Path)), request_body = RecordReview, responses((status = 200, body = Release), (status = 409, body = Problem)))]
pub async fn record_review(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    IfMatch(v): IfMatch,
    ApiJson(req): ApiJson<RecordReview>,
) -> ApiResult<Resource<Release>> {
    Ok(Resource(StatusCode::OK, s.app.record_review(&ctx.0, &id, v, req).await?))
}

#[utoipa::path(get, path = "/api/v1/releases/{id}/tasks", tag = "releases", params(("id" = String, Path)), responses((status = 200, body = Vec<signalbox_domain::tasks::Task>)))]
pub async fn list_tasks(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<signalbox_domain::tasks::Task>>> {
    let release: Versioned<Release> = s.app.get_resource(&ctx.0, Kind::Release, &id).await?;
    Ok(Json(release.value.tasks))
}

#[utoipa::path(post, path = "/api/v1/releases/{id}/tasks", tag = "releases", params(("id" = String, Path)), request_body = AddTask, responses((status = 200, body = Release), (status = 422, body = Problem)))]
pub async fn add_task(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    IfMatch(v): IfMatch,
    ApiJson(req): ApiJson<AddTask>,
) -> ApiResult<Resource<Release>> {
    Ok(Resource(StatusCode::OK, s.app.add_task(&ctx.0, &id, v, req).await?))
}

#[utoipa::path(patch, path = "/api/v1/releases/{id}/tasks/{key}", tag = "releases", params(("id" = String, Path), ("key" = String, Path)), request_body = UpdateTask, responses((status = 200, body = Release), (status = 409, body = Problem)))]
pub async fn update_task(
    State(s): State<AppState>,
    ctx: Ctx,
    Path((id, key)): Path<(String, String)>,
    IfMatch(v): IfMatch,
    ApiJson(req): ApiJson<UpdateTask>,
) -> ApiResult<Resource<Release>> {
    Ok(Resource(StatusCode::OK, s.app.update_task(&ctx.0, &id, &key, v, req).await?))
}

// ---- templates -----------------------------------------------------------------------------

#[utoipa::path(get, path = "/api/v1/templates", tag = "releases", params(PageParams), responses((status = 200, body = inline(Paged<Template>))))]
pub async fn list_templates(State(s): State<AppState>, ctx: Ctx, ApiQuery(p): ApiQuery<PageParams>) -> ApiResult<Json<Paged<Template>>> {
    Ok(Json(s.app.list_resources(&ctx.0, ListQuery::all(Kind::Template), &p.page()).await?))
}

#[utoipa::path(post, path = "/api/v1/templates", tag = "releases", request_body = CreateTemplate, responses((status = 201, body = Template), (status = 422, body = Problem)))]
pub async fn create_template(State(s): State<AppState>, ctx: Ctx, ApiJson(req): ApiJson<CreateTemplate>) -> ApiResult<Resource<Template>> {
    Ok(Resource(StatusCode::CREATED, s.app.create_template(&ctx.0, req).await?))
}

#[utoipa::path(get, path = "/api/v1/templates/{id}", tag = "releases", params(("id" = String, Path)), responses((status = 200, body = Template), (status = 404, body = Problem)))]
pub async fn get_template(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult<Resource<Template>> {
    Ok(Resource(StatusCode::OK, s.app.get_resource(&ctx.0, Kind::Template, &id).await?))
}

// ---- users, tokens, role bindings ----------------------------------------------------------

#[utoipa::path(get, path = "/api/v1/users", tag = "access", params(PageParams), responses((status = 200, body = inline(Paged<User>))))]
pub async fn list_users(State(s): State<AppState>, ctx: Ctx, ApiQuery(p): ApiQuery<PageParams>) -> ApiResult<Json<Paged<User>>> {
    Ok(Json(s.app.list_resources(&ctx.0, ListQuery::all(Kind::User), &p.page()).await?))
}

#[utoipa::path(post, path = "/api/v1/users", tag = "access", request_body = CreateUser, responses((status = 201, body = User), (status = 422, body = Problem)))]
pub async fn create_user(State(s): State<AppState>, ctx: Ctx, ApiJson(req): ApiJson<CreateUser>) -> ApiResult<Resource<User>> {
    Ok(Resource(StatusCode::CREATED, s.app.create_user(&ctx.0, req).await?))
}

#[utoipa::path(get, path = "/api/v1/users/me", tag = "access", responses((status = 200, body = User)))]
pub async fn get_me(State(s): State<AppState>, ctx: Ctx) -> ApiResult<Resource<User>> {
    let id = ctx.0.actor.user_id.clone();
    Ok(Resource(StatusCode::OK, s.app.get_resource(&ctx.0, Kind::User, &id).await?))
}

#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "access", params(("id" = String, Path, description = "Id or username")), responses((status = 200, body = User), (status = 404, body = Problem)))]
pub async fn get_user(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult<Resource<User>> {
    Ok(Resource(StatusCode::OK, s.app.get_resource(&ctx.0, Kind::User, &id).await?))
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "access", params(TokenParams), responses((status = 200, body = inline(Paged<Token>))))]
pub async fn list_tokens(State(s): State<AppState>, ctx: Ctx, ApiQuery(p): ApiQuery<TokenParams>) -> ApiResult<Json<Paged<Token>>> {
    Ok(Json(s.app.list_tokens(&ctx.0, p.user.as_deref(), &p.page()).await?))
}

/// Issues a token. The secret is in this response only.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "access", request_body = CreateToken, responses((status = 201, body = IssuedToken)))]
pub async fn create_token(
    State(s): State<AppState>,
    ctx: Ctx,
    ApiJson(req): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, Json<IssuedToken>)> {
    Ok((StatusCode::CREATED, Json(s.app.create_token(&ctx.0, req).await?)))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "access", params(("id" = String, Path)), responses((status = 200, body = Token), (status = 404, body = Problem)))]
pub async fn revoke_token(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult<Resource<Token>> {
    Ok(Resource(StatusCode::OK, s.app.revoke_token(&ctx.0, &id).await?))
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "access", request_body = Login, responses((status = 201, body = IssuedToken), (status = 401, body = Problem)))]
pub async fn login(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
    ApiJson(req): ApiJson<Login>,
) -> ApiResult<(StatusCode, Json<IssuedToken>)> {
    let request_id = headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(String::from);
    Ok((StatusCode::CREATED, Json(s.app.login(req, request_id).await?)))
}

#[utoipa::path(get, path = "/api/v1/role-bindings", tag = "access", params(BindingParams), responses((status = 200, body = inline(Paged<RoleBinding>))))]
pub async fn list_role_bindings(
    State(s): State<AppState>,
    ctx: Ctx,
    ApiQuery(p): ApiQuery<BindingParams>,
) -> ApiResult<Json<Paged<RoleBinding>>> {
    let mut q = ListQuery::all(Kind::RoleBinding);
    if let Some(u) = &p.user {
        q.parent = Some(resolve_id(&s, &ctx, Kind::User, u).await?);
    }
    Ok(Json(s.app.list_resources(&ctx.0, q, &p.page()).await?))
}

#[utoipa::path(post, path = "/api/v1/role-bindings", tag = "access", request_body = CreateRoleBinding, responses((status = 201, body = RoleBinding), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_role_binding(
    State(s): State<AppState>,
    ctx: Ctx,
    ApiJson(req): ApiJson<CreateRoleBinding>,
) -> ApiResult<Resource<RoleBinding>> {
    Ok(Resource(StatusCode::CREATED, s.app.create_role_binding(&ctx.0, req).await?))
}

#[utoipa::path(delete, path = "/api/v1/role-bindings/{id}", tag = "access", params(("id" = String, Path)), responses((status = 204), (status = 404, body = Problem)))]
pub async fn delete_role_binding(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.app.delete_role_binding(&ctx.0, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- audit ---------------------------------------------------------------------------------

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub subject_kind: Option<String>,
    pub subject_id: Option<String>,
    /// RFC 3339 lower bound (inclusive).
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// RFC 3339 upper bound (exclusive).
    pub until: Option<chrono::DateTime<chrono::Utc>>,
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditParams), responses((status = 200, body = inline(Paged<AuditEntry>))))]
pub async fn list_audit(State(s): State<AppState>, ctx: Ctx, ApiQuery(p): ApiQuery<AuditParams>) -> ApiResult<Json<Paged<AuditEntry>>> {
    let filter = AuditFilter {
        actor: p.actor,
        action: p.action,
        subject_kind: p.subject_kind,
        subject_id: p.subject_id,
        since: p.since,
        until: p.until,
    };
    Ok(Json(s.app.list_audit(&ctx.0, filter, &PageRequest { limit: p.limit, cursor: p.cursor }).await?))
}

/// The whole chain as JSON Lines, streamed in sequence order; `signalbox audit verify --file`
/// checks it offline.
#[utoipa::path(get, path = "/api/v1/audit/export", tag = "audit", responses((status = 200, content_type = "application/x-ndjson", body = String)))]
pub async fn export_audit(State(s): State<AppState>, ctx: Ctx) -> ApiResult<Response> {
    s.app.authorize_audit_export(&ctx.0)?;
    let store = s.app.store.clone();
    let stream = futures_stream(store);
    let mut response = Body::from_stream(stream).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/x-ndjson"));
    response
        .headers_mut()
        .insert(header::CONTENT_DISPOSITION, axum::http::HeaderValue::from_static("attachment; filename=\"signalbox-audit.jsonl\""));
    Ok(response)
}

fn futures_stream(
    store: std::sync::Arc<dyn signalbox_store::Store>,
) -> impl futures_core::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let mut after = 0;
        loop {
            match signalbox_app::audit::export_batch(store.as_ref(), after).await {
                Ok(batch) if batch.is_empty() => break,
                Ok(batch) => {
                    after = batch.last().map(|e| e.seq).unwrap_or(after);
                    let mut buf = Vec::with_capacity(batch.len() * 512);
                    for entry in &batch {
                        if serde_json::to_writer(&mut buf, entry).is_err() {
                            return;
                        }
                        buf.push(b'\n');
                    }
                    if tx.send(Ok(bytes::Bytes::from(buf))).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return;
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Verifies the chain in the database now.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit", responses((status = 200, description = "Chain report: entries, last_seq, problems")))]
pub async fn verify_audit(State(s): State<AppState>, ctx: Ctx) -> ApiResult<Json<serde_json::Value>> {
    s.app.authorize_audit_export(&ctx.0)?;
    let report = signalbox_app::audit::verify_store(s.app.store.as_ref()).await?;
    Ok(Json(serde_json::json!({
        "valid": report.is_valid(),
        "entries": report.entries,
        "last_seq": report.last_seq,
        "last_hash": report.last_hash,
        "problems": report.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
    })))
}

// ---- Governance: evidence, policies, gates, approvals, risk, break-glass, readiness ----

use signalbox_app::evidence::{AddEvidence, EvidenceRecord};
use signalbox_app::governance::{
    ApprovalView, BreakGlassView, CastVote, PolicyRecord, PutPolicy, Readiness, RequestApproval, RequestBreakGlass,
};
use signalbox_governance::gates::{GateDecision, ReleaseEvidence};
use signalbox_governance::risk::RiskAssessment;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentParam {
    /// Environment id or name.
    pub environment: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EvidenceListParams {
    /// Artifact id or service@version.
    pub artifact: Option<String>,
    /// Release id or key.
    pub release: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PolicyListParams {
    /// Environment id or name.
    pub environment: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/evidence", tag = "governance", params(AddEvidence),
    request_body(content = String, content_type = "application/octet-stream", description = "The evidence file as the tool wrote it"),
    responses((status = 201, body = EvidenceRecord), (status = 422, body = Problem), (status = 413, body = Problem)))]
pub async fn add_evidence(
    State(s): State<AppState>,
    ctx: Ctx,
    ApiQuery(q): ApiQuery<AddEvidence>,
    ApiBytes(body): ApiBytes,
) -> ApiResult<Resource<EvidenceRecord>> {
    Ok(Resource(StatusCode::CREATED, s.app.add_evidence(&ctx.0, q, &body).await?))
}

#[utoipa::path(get, path = "/api/v1/evidence", tag = "governance", params(EvidenceListParams), responses((status = 200, body = Vec<EvidenceRecord>)))]
pub async fn list_evidence(
    State(s): State<AppState>,
    ctx: Ctx,
    ApiQuery(q): ApiQuery<EvidenceListParams>,
) -> ApiResult<Json<Vec<EvidenceRecord>>> {
    Ok(Json(s.app.list_evidence(&ctx.0, q.artifact.as_deref(), q.release.as_deref()).await?))
}

#[utoipa::path(get, path = "/api/v1/evidence/{id}", tag = "governance", params(("id" = String, Path)), responses((status = 200, body = EvidenceRecord), (status = 404, body = Problem)))]
pub async fn get_evidence(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult<Resource<EvidenceRecord>> {
    Ok(Resource(StatusCode::OK, s.app.get_evidence(&ctx.0, &id).await?))
}

#[utoipa::path(get, path = "/api/v1/evidence/{id}/file", tag = "governance", params(("id" = String, Path)), responses((status = 200, description = "The raw file, byte for byte", content_type = "application/octet-stream")))]
pub async fn get_evidence_file(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    let (record, bytes) = s.app.evidence_file(&ctx.0, &id).await?;
    let mut response = Response::new(Body::from(bytes));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/octet-stream"));
    if let Ok(v) = header::HeaderValue::from_str(&format!("\"{}\"", record.file_digest)) {
        headers.insert(header::ETAG, v);
    }
    Ok(response)
}

#[utoipa::path(put, path = "/api/v1/policies", tag = "governance", request_body = PutPolicy, responses((status = 200, body = PolicyRecord), (status = 422, body = Problem)))]
pub async fn put_policy(State(s): State<AppState>, ctx: Ctx, ApiJson(req): ApiJson<PutPolicy>) -> ApiResult<Resource<PolicyRecord>> {
    Ok(Resource(StatusCode::OK, s.app.put_policy(&ctx.0, req).await?))
}

#[utoipa::path(get, path = "/api/v1/policies", tag = "governance", params(PolicyListParams), responses((status = 200, body = Vec<PolicyRecord>)))]
pub async fn list_policies(
    State(s): State<AppState>,
    ctx: Ctx,
    ApiQuery(q): ApiQuery<PolicyListParams>,
) -> ApiResult<Json<Vec<PolicyRecord>>> {
    Ok(Json(s.app.list_policies(&ctx.0, q.environment.as_deref()).await?))
}

#[utoipa::path(get, path = "/api/v1/releases/{id}/gates", tag = "governance", params(("id" = String, Path), EnvironmentParam), responses((status = 200, body = GateDecision)))]
pub async fn release_gates(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<EnvironmentParam>,
) -> ApiResult<Json<GateDecision>> {
    Ok(Json(s.app.release_gates(&ctx.0, &id, &q.environment).await?))
}

#[utoipa::path(get, path = "/api/v1/releases/{id}/evidence-document", tag = "governance", params(("id" = String, Path), EnvironmentParam), responses((status = 200, body = ReleaseEvidence)))]
pub async fn release_evidence_document(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<EnvironmentParam>,
) -> ApiResult<Json<ReleaseEvidence>> {
    Ok(Json(s.app.release_evidence_document(&ctx.0, &id, &q.environment).await?))
}

#[utoipa::path(get, path = "/api/v1/releases/{id}/risk", tag = "governance", params(("id" = String, Path)), responses((status = 200, body = RiskAssessment)))]
pub async fn release_risk(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult<Json<RiskAssessment>> {
    Ok(Json(s.app.release_risk(&ctx.0, &id).await?))
}

#[utoipa::path(get, path = "/api/v1/releases/{id}/approvals", tag = "governance", params(("id" = String, Path), EnvironmentParam), responses((status = 200, body = ApprovalView)))]
pub async fn approval_status(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<EnvironmentParam>,
) -> ApiResult<Json<ApprovalView>> {
    Ok(Json(s.app.approval_status_of(&ctx.0, &id, &q.environment).await?))
}

#[utoipa::path(post, path = "/api/v1/releases/{id}/approvals", tag = "governance", params(("id" = String, Path)), request_body = CastVote,
    responses((status = 200, body = ApprovalView), (status = 403, body = Problem, description = "segregation of duties"), (status = 409, body = Problem)))]
pub async fn cast_vote(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CastVote>,
) -> ApiResult<Json<ApprovalView>> {
    Ok(Json(s.app.cast_vote(&ctx.0, &id, req).await?))
}

#[utoipa::path(post, path = "/api/v1/releases/{id}/approval-requests", tag = "governance", params(("id" = String, Path)), request_body = RequestApproval, responses((status = 201, body = ApprovalView)))]
pub async fn request_approval(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RequestApproval>,
) -> ApiResult<(StatusCode, Json<ApprovalView>)> {
    Ok((StatusCode::CREATED, Json(s.app.request_approval(&ctx.0, &id, req).await?)))
}

#[utoipa::path(post, path = "/api/v1/releases/{id}/break-glass", tag = "governance", params(("id" = String, Path)), request_body = RequestBreakGlass, responses((status = 201, body = BreakGlassView), (status = 422, body = Problem)))]
pub async fn request_break_glass(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RequestBreakGlass>,
) -> ApiResult<(StatusCode, Json<BreakGlassView>)> {
    Ok((StatusCode::CREATED, Json(s.app.request_break_glass(&ctx.0, &id, req).await?)))
}

#[utoipa::path(get, path = "/api/v1/releases/{id}/break-glass", tag = "governance", params(("id" = String, Path)), responses((status = 200, body = Vec<BreakGlassView>)))]
pub async fn list_break_glass(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult<Json<Vec<BreakGlassView>>> {
    Ok(Json(s.app.list_break_glass(&ctx.0, &id).await?))
}

#[utoipa::path(post, path = "/api/v1/break-glass/{id}/confirm", tag = "governance", params(("id" = String, Path)), responses((status = 200, body = BreakGlassView), (status = 403, body = Problem)))]
pub async fn confirm_break_glass(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult<Json<BreakGlassView>> {
    Ok(Json(s.app.confirm_break_glass(&ctx.0, &id).await?))
}

#[utoipa::path(get, path = "/api/v1/releases/{id}/readiness", tag = "governance", params(("id" = String, Path), EnvironmentParam), responses((status = 200, body = Readiness)))]
pub async fn readiness(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<EnvironmentParam>,
) -> ApiResult<Json<Readiness>> {
    Ok(Json(s.app.readiness(&ctx.0, &id, &q.environment).await?))
}
