//! HTTP for the calendar (issue 4): entries (freezes, windows, bookings, events), the
//! calendar view, the conflict engine, freeze previews, early release of bookings, feed tokens,
//! the iCalendar feed and `.ics` import. No rule lives here: each handler is one call on
//! [`signalbox_app::App`].

use axum::extract::{Path, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde::Deserialize;
use signalbox_app::calendar::{
    view_range, BoardRequest, BookingDecision, CalendarView, CheckInput, CheckResult, CreateFeedToken, CreateTrain, DepartureRecord,
    DryRun, FeedToken, FreezePreview, ImportRequest, ImportResult, IssuedFeedToken, MarkItem, ReleaseConflicts, Train, TrainView,
    UpdateTrain,
};
use signalbox_app::{PageRequest, Paged};
use signalbox_calendar::{EntryDraft, EntryKind, EntryRecord, ScopeFilter};
use signalbox_domain::access::Permission;
use signalbox_domain::model::Tier;
use utoipa::IntoParams;

use crate::extract::{ApiJson, ApiQuery, Ctx, IfMatch, Resource};
use crate::problem::{ApiResult, Problem};
use crate::routes::RouteSpec;
use crate::AppState;

/// The calendar's routes, each with its permission.
pub fn routes() -> Vec<RouteSpec> {
    use Permission::*;
    let r = |method: Method, path: &'static str, permission: Option<Permission>, handler| RouteSpec { method, path, permission, handler };
    vec![
        r(Method::GET, "/api/v1/calendar", Some(Read), get(view)),
        r(Method::GET, "/api/v1/calendar/entries", Some(Read), get(list_entries)),
        r(Method::POST, "/api/v1/calendar/entries", Some(EditRelease), post(create_entry)),
        r(Method::GET, "/api/v1/calendar/entries/{id}", Some(Read), get(get_entry)),
        r(Method::PUT, "/api/v1/calendar/entries/{id}", Some(EditRelease), axum::routing::put(replace_entry)),
        r(Method::DELETE, "/api/v1/calendar/entries/{id}", Some(EditRelease), axum::routing::delete(delete_entry)),
        r(Method::POST, "/api/v1/calendar/check", Some(Read), post(check)),
        r(Method::POST, "/api/v1/calendar/preview", Some(Read), post(preview)),
        r(Method::POST, "/api/v1/calendar/import", Some(EditRelease), post(import)),
        r(Method::POST, "/api/v1/calendar/feed-tokens", Some(ManageOwnTokens), post(create_feed_token)),
        r(Method::GET, "/api/v1/releases/{id}/conflicts", Some(Read), get(release_conflicts)),
        r(Method::POST, "/api/v1/bookings/{id}/release", Some(EditRelease), post(release_booking)),
        // The environment's owner (any role on the owning team, or the owning user) or an
        // admin decides; the application checks who, so the gate only asks for a role.
        r(Method::POST, "/api/v1/bookings/{id}/approve", Some(Read), post(approve_booking)),
        r(Method::POST, "/api/v1/bookings/{id}/reject", Some(Read), post(reject_booking)),
        r(Method::GET, "/api/v1/trains", Some(Read), get(list_trains)),
        r(Method::POST, "/api/v1/trains", Some(EditRelease), post(create_train)),
        r(Method::GET, "/api/v1/trains/{id}", Some(Read), get(show_train)),
        r(Method::PATCH, "/api/v1/trains/{id}", Some(EditRelease), axum::routing::patch(update_train)),
        r(Method::DELETE, "/api/v1/trains/{id}", Some(EditRelease), axum::routing::delete(delete_train)),
        r(Method::POST, "/api/v1/trains/{id}/board", Some(EditRelease), post(board)),
        r(Method::GET, "/api/v1/departures/{id}", Some(Read), get(get_departure)),
        r(Method::PUT, "/api/v1/departures/{id}/items/{key}", Some(EditRelease), axum::routing::put(mark_item)),
        r(Method::GET, "/calendar.ics", None, get(feed)),
    ]
}

fn tier_of(raw: &str) -> Tier {
    match raw {
        "dev" => Tier::Dev,
        "test" => Tier::Test,
        "staging" => Tier::Staging,
        "prod" => Tier::Prod,
        other => Tier::Custom(other.to_string()),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ViewParams {
    /// RFC 3339 start of the range (default: now).
    pub from: Option<String>,
    /// RFC 3339 end of the range, at most 400 days after `from` (default: 31 days after it).
    pub to: Option<String>,
    /// Only entries of this domain (name) besides wider scopes.
    pub domain: Option<String>,
    pub service: Option<String>,
    pub environment: Option<String>,
    /// Environment tier (`prod`, …).
    pub tier: Option<String>,
    /// Only this entry kind.
    pub kind: Option<EntryKind>,
}

fn filter_of(
    domain: &Option<String>,
    service: &Option<String>,
    environment: &Option<String>,
    tier: &Option<String>,
    kind: Option<EntryKind>,
) -> ScopeFilter {
    ScopeFilter {
        domain: domain.clone(),
        service: service.clone(),
        environment: environment.clone(),
        tier: tier.as_deref().map(tier_of),
        kinds: kind.into_iter().collect(),
    }
}

/// Expanded occurrences of every entry overlapping `[from, to)`, in UTC and in each entry's zone.
#[utoipa::path(get, path = "/api/v1/calendar", tag = "calendar", params(ViewParams), responses((status = 200, body = CalendarView), (status = 422, body = Problem)))]
pub async fn view(State(s): State<AppState>, ctx: Ctx, ApiQuery(p): ApiQuery<ViewParams>) -> ApiResult<Json<CalendarView>> {
    let (from, to) = view_range(p.from.as_deref(), p.to.as_deref(), chrono::Utc::now())?;
    let filter = filter_of(&p.domain, &p.service, &p.environment, &p.tier, p.kind);
    Ok(Json(s.app.calendar_view(&ctx.0, from, to, &filter).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EntryListParams {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    /// Only entries of this kind (`booking` lists the bookings).
    pub kind: Option<EntryKind>,
}

#[utoipa::path(get, path = "/api/v1/calendar/entries", tag = "calendar", params(EntryListParams), responses((status = 200, body = inline(Paged<EntryRecord>))))]
pub async fn list_entries(
    State(s): State<AppState>,
    ctx: Ctx,
    ApiQuery(p): ApiQuery<EntryListParams>,
) -> ApiResult<Json<Paged<EntryRecord>>> {
    let page = PageRequest { limit: p.limit, cursor: p.cursor.clone() };
    Ok(Json(s.app.list_entries(&ctx.0, p.kind, &page).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DryRunParam {
    /// Validate and show what the entry would block (freezes) or clash with (bookings); save nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// Creates a freeze, window, booking or event. A booking overlapping another booking of the
/// same environment is a 409. With `?dry_run=true` nothing is saved and the answer (200) lists
/// what a freeze would block and which bookings a booking would clash with.
#[utoipa::path(post, path = "/api/v1/calendar/entries", tag = "calendar", params(DryRunParam), request_body = EntryDraft,
    responses((status = 201, body = EntryRecord), (status = 200, description = "dry run", body = DryRun), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_entry(
    State(s): State<AppState>,
    ctx: Ctx,
    ApiQuery(p): ApiQuery<DryRunParam>,
    ApiJson(draft): ApiJson<EntryDraft>,
) -> ApiResult<Response> {
    Ok(match s.app.create_entry(&ctx.0, draft, p.dry_run).await? {
        Ok(created) => Resource(StatusCode::CREATED, created).into_response(),
        Err(dry) => (StatusCode::OK, Json(dry)).into_response(),
    })
}

#[utoipa::path(get, path = "/api/v1/calendar/entries/{id}", tag = "calendar", params(("id" = String, Path)), responses((status = 200, body = EntryRecord), (status = 404, body = Problem)))]
pub async fn get_entry(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult<Resource<EntryRecord>> {
    Ok(Resource(StatusCode::OK, s.app.get_entry(&ctx.0, &id).await?))
}

/// Replaces an entry (`If-Match` optional; a stale one is a 412). Its `version`, the
/// iCalendar SEQUENCE, goes up.
#[utoipa::path(put, path = "/api/v1/calendar/entries/{id}", tag = "calendar", params(("id" = String, Path)), request_body = EntryDraft,
    responses((status = 200, body = EntryRecord), (status = 409, body = Problem), (status = 412, body = Problem), (status = 422, body = Problem)))]
pub async fn replace_entry(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    IfMatch(v): IfMatch,
    ApiJson(draft): ApiJson<EntryDraft>,
) -> ApiResult<Resource<EntryRecord>> {
    Ok(Resource(StatusCode::OK, s.app.replace_entry(&ctx.0, &id, v, draft).await?))
}

#[utoipa::path(delete, path = "/api/v1/calendar/entries/{id}", tag = "calendar", params(("id" = String, Path)), responses((status = 204), (status = 404, body = Problem), (status = 412, body = Problem)))]
pub async fn delete_entry(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>, IfMatch(v): IfMatch) -> ApiResult<StatusCode> {
    s.app.delete_entry(&ctx.0, &id, v).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every conflict of deploying a service to an environment at a time: freezes (and the runway
/// into the next one), release windows, bookings, other deployments, dependencies, warnings.
#[utoipa::path(post, path = "/api/v1/calendar/check", tag = "calendar", request_body = CheckInput, responses((status = 200, body = CheckResult), (status = 422, body = Problem)))]
pub async fn check(State(s): State<AppState>, ctx: Ctx, ApiJson(input): ApiJson<CheckInput>) -> ApiResult<Json<CheckResult>> {
    Ok(Json(s.app.check_conflicts(&ctx.0, input).await?))
}

/// What a freeze (not saved) would block: scheduled deployments and bookings it hits.
#[utoipa::path(post, path = "/api/v1/calendar/preview", tag = "calendar", request_body = EntryDraft, responses((status = 200, body = FreezePreview), (status = 422, body = Problem)))]
pub async fn preview(State(s): State<AppState>, ctx: Ctx, ApiJson(draft): ApiJson<EntryDraft>) -> ApiResult<Json<FreezePreview>> {
    Ok(Json(s.app.preview_freeze(&ctx.0, draft).await?))
}

/// Imports the VEVENTs of an `.ics` file (e.g. public holidays) as entries of one kind and scope.
#[utoipa::path(post, path = "/api/v1/calendar/import", tag = "calendar", request_body = ImportRequest, responses((status = 201, body = ImportResult), (status = 422, body = Problem)))]
pub async fn import(
    State(s): State<AppState>,
    ctx: Ctx,
    ApiJson(req): ApiJson<ImportRequest>,
) -> ApiResult<(StatusCode, Json<ImportResult>)> {
    Ok((StatusCode::CREATED, Json(s.app.import_calendar(&ctx.0, req).await?)))
}

/// A read-only token for the iCalendar feed; the secret is shown once.
#[utoipa::path(post, path = "/api/v1/calendar/feed-tokens", tag = "calendar", request_body = CreateFeedToken, responses((status = 201, body = IssuedFeedToken), (status = 422, body = Problem)))]
pub async fn create_feed_token(
    State(s): State<AppState>,
    ctx: Ctx,
    ApiJson(req): ApiJson<CreateFeedToken>,
) -> ApiResult<(StatusCode, Json<IssuedFeedToken>)> {
    Ok((StatusCode::CREATED, Json(s.app.create_feed_token(&ctx.0, req).await?)))
}

/// The conflicts of a release's plan: each (service, environment) target over its planned window.
#[utoipa::path(get, path = "/api/v1/releases/{id}/conflicts", tag = "calendar", params(("id" = String, Path)), responses((status = 200, body = ReleaseConflicts), (status = 422, body = Problem)))]
pub async fn release_conflicts(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult<Json<ReleaseConflicts>> {
    Ok(Json(s.app.release_conflicts(&ctx.0, &id).await?))
}

/// Gives a booking back early: a running booking ends now, a future one is cancelled.
#[utoipa::path(post, path = "/api/v1/bookings/{id}/release", tag = "calendar", params(("id" = String, Path)), responses((status = 200, body = EntryRecord), (status = 409, body = Problem)))]
pub async fn release_booking(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult<Resource<EntryRecord>> {
    Ok(Resource(StatusCode::OK, s.app.release_booking(&ctx.0, &id).await?))
}

/// Approves a pending booking (environments with `booking_requires_approval`): only the
/// environment's owner or an admin, never the requester. 409 when it is not pending or now
/// overlaps a confirmed booking.
#[utoipa::path(post, path = "/api/v1/bookings/{id}/approve", tag = "calendar", params(("id" = String, Path)), request_body = BookingDecision,
    responses((status = 200, body = EntryRecord), (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn approve_booking(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiJson(decision): ApiJson<BookingDecision>,
) -> ApiResult<Resource<EntryRecord>> {
    Ok(Resource(StatusCode::OK, s.app.approve_booking(&ctx.0, &id, decision).await?))
}

/// Rejects a pending booking, with a required `reason`; the same people as approving.
#[utoipa::path(post, path = "/api/v1/bookings/{id}/reject", tag = "calendar", params(("id" = String, Path)), request_body = BookingDecision,
    responses((status = 200, body = EntryRecord), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn reject_booking(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiJson(decision): ApiJson<BookingDecision>,
) -> ApiResult<Resource<EntryRecord>> {
    Ok(Resource(StatusCode::OK, s.app.reject_booking(&ctx.0, &id, decision).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FeedParams {
    /// A feed token (`POST /api/v1/calendar/feed-tokens`).
    pub token: String,
    pub domain: Option<String>,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub tier: Option<String>,
    pub kind: Option<EntryKind>,
}

/// The calendar as RFC 5545 iCalendar, for Google Calendar, Outlook and Thunderbird to
/// subscribe to. Authenticated by the read-only feed token in the URL.
#[utoipa::path(get, path = "/calendar.ics", tag = "calendar", security(()), params(FeedParams),
    responses((status = 200, description = "text/calendar", content_type = "text/calendar"), (status = 403, body = Problem)))]
pub async fn feed(State(s): State<AppState>, ApiQuery(p): ApiQuery<FeedParams>) -> ApiResult<Response> {
    let filter = filter_of(&p.domain, &p.service, &p.environment, &p.tier, p.kind);
    let body = s.app.calendar_feed(&p.token, &filter).await?;
    Ok(([(header::CONTENT_TYPE, "text/calendar; charset=utf-8")], body).into_response())
}

// ---- trains ----------------------------------------------------------------------------------

#[utoipa::path(get, path = "/api/v1/trains", tag = "calendar", params(EntryPageParams), responses((status = 200, body = inline(Paged<Train>))))]
pub async fn list_trains(State(s): State<AppState>, ctx: Ctx, ApiQuery(p): ApiQuery<EntryPageParams>) -> ApiResult<Json<Paged<Train>>> {
    Ok(Json(s.app.list_trains(&ctx.0, &PageRequest { limit: p.limit, cursor: p.cursor }).await?))
}

/// A release train: a cadence (RRULE in a zone) with a cut-off before each departure. The
/// scheduler materializes departures ahead of time as releases.
#[utoipa::path(post, path = "/api/v1/trains", tag = "calendar", request_body = CreateTrain, responses((status = 201, body = Train), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_train(State(s): State<AppState>, ctx: Ctx, ApiJson(req): ApiJson<CreateTrain>) -> ApiResult<Resource<Train>> {
    Ok(Resource(StatusCode::CREATED, s.app.create_train(&ctx.0, req).await?))
}

/// A train, its next departures and its materialized departures; the `ETag` is the train's.
#[utoipa::path(get, path = "/api/v1/trains/{id}", tag = "calendar", params(("id" = String, Path, description = "Id or name")), responses((status = 200, body = TrainView), (status = 404, body = Problem)))]
pub async fn show_train(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult<Resource<TrainView>> {
    Ok(Resource(StatusCode::OK, s.app.train_view(&ctx.0, &id).await?))
}

/// Changes a train's name, cadence, target environments or template (`If-Match` optional; a
/// stale one is a 412). Departures already materialized keep their times and items; the new
/// settings govern departures materialized from now on.
#[utoipa::path(patch, path = "/api/v1/trains/{id}", tag = "calendar", params(("id" = String, Path, description = "Id or name")), request_body = UpdateTrain,
    responses((status = 200, body = Train), (status = 404, body = Problem), (status = 412, body = Problem), (status = 422, body = Problem)))]
pub async fn update_train(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    IfMatch(v): IfMatch,
    ApiJson(req): ApiJson<UpdateTrain>,
) -> ApiResult<Resource<Train>> {
    Ok(Resource(StatusCode::OK, s.app.update_train(&ctx.0, &id, v, req).await?))
}

/// Deletes a train. Refused with 409 `train-has-boarded-departures` (naming them) while a
/// departure that has not left has items on board; otherwise its empty future departures are
/// removed with their jobs and their releases cancelled. Departed departures stay.
#[utoipa::path(delete, path = "/api/v1/trains/{id}", tag = "calendar", params(("id" = String, Path, description = "Id or name")),
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem), (status = 412, body = Problem)))]
pub async fn delete_train(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>, IfMatch(v): IfMatch) -> ApiResult<StatusCode> {
    s.app.delete_train(&ctx.0, &id, v).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Boards an artifact or change on the next departure whose cut-off has not passed (at the
/// cut-off exactly, the following one).
#[utoipa::path(post, path = "/api/v1/trains/{id}/board", tag = "calendar", params(("id" = String, Path, description = "Id or name")), request_body = BoardRequest,
    responses((status = 200, body = DepartureRecord), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn board(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<BoardRequest>,
) -> ApiResult<Json<DepartureRecord>> {
    Ok(Json(s.app.board_train(&ctx.0, &id, req).await?))
}

#[utoipa::path(get, path = "/api/v1/departures/{id}", tag = "calendar", params(("id" = String, Path, description = "Id or key (<train id>@<UTC instant>)")), responses((status = 200, body = DepartureRecord), (status = 404, body = Problem)))]
pub async fn get_departure(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult<Resource<DepartureRecord>> {
    Ok(Resource(StatusCode::OK, s.app.get_departure(&ctx.0, &id).await?))
}

/// Marks an item on a departure ready, or not ready with the blocker recorded at carry-over.
#[utoipa::path(put, path = "/api/v1/departures/{id}/items/{key}", tag = "calendar", params(("id" = String, Path), ("key" = String, Path, description = "The item's artifact or change id")),
    request_body = MarkItem, responses((status = 200, body = DepartureRecord), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn mark_item(
    State(s): State<AppState>,
    ctx: Ctx,
    Path((id, key)): Path<(String, String)>,
    ApiJson(req): ApiJson<MarkItem>,
) -> ApiResult<Json<DepartureRecord>> {
    Ok(Json(s.app.mark_item(&ctx.0, &id, &key, req).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EntryPageParams {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        view, list_entries, create_entry, get_entry, replace_entry, delete_entry, check, preview, import, create_feed_token,
        release_conflicts, release_booking, approve_booking, reject_booking, feed, list_trains, create_train, show_train, update_train, delete_train, board, get_departure, mark_item,
    ),
    components(schemas(FeedToken)),
    tags((name = "calendar", description = "Freezes, windows, bookings, events, conflicts, the iCalendar feed"))
)]
pub struct CalendarApiDoc;
