//! The route table: every API route with the permission it requires. The router is built from
//! this table and the authorization-matrix test walks the same table, so a route cannot exist
//! without a declared permission.

use axum::http::Method;
use axum::routing::{delete, get, patch, post, put, MethodRouter};
use signalbox_domain::access::Permission;

use crate::api::*;
use crate::AppState;

pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    /// `None` for public routes (login).
    pub permission: Option<Permission>,
    pub handler: MethodRouter<AppState>,
}

fn route(method: Method, path: &'static str, permission: Option<Permission>, handler: MethodRouter<AppState>) -> RouteSpec {
    RouteSpec { method, path, permission, handler }
}

pub fn api_routes() -> Vec<RouteSpec> {
    use Permission::*;
    let (g, p, pa, pu, d) = (Method::GET, Method::POST, Method::PATCH, Method::PUT, Method::DELETE);
    let mut all = vec![
        route(g.clone(), "/api/v1/domains", Some(Read), get(list_domains)),
        route(p.clone(), "/api/v1/domains", Some(ManageCatalog), post(create_domain)),
        route(g.clone(), "/api/v1/domains/{id}", Some(Read), get(get_domain)),
        route(g.clone(), "/api/v1/teams", Some(Read), get(list_teams)),
        route(p.clone(), "/api/v1/teams", Some(ManageCatalog), post(create_team)),
        route(g.clone(), "/api/v1/teams/{id}", Some(Read), get(get_team)),
        route(g.clone(), "/api/v1/services", Some(Read), get(list_services)),
        route(p.clone(), "/api/v1/services", Some(ManageCatalog), post(create_service)),
        route(g.clone(), "/api/v1/services/{id}", Some(Read), get(get_service)),
        route(pa.clone(), "/api/v1/services/{id}", Some(ManageCatalog), patch(update_service)),
        route(g.clone(), "/api/v1/environments", Some(Read), get(list_environments)),
        route(p.clone(), "/api/v1/environments", Some(ManageCatalog), post(create_environment)),
        route(g.clone(), "/api/v1/environments/{id}", Some(Read), get(get_environment)),
        route(pa.clone(), "/api/v1/environments/{id}", Some(ManageCatalog), patch(update_environment)),
        route(g.clone(), "/api/v1/artifacts", Some(Read), get(list_artifacts)),
        route(p.clone(), "/api/v1/artifacts", Some(RegisterArtifact), post(register_artifact)),
        route(g.clone(), "/api/v1/artifacts/{id}", Some(Read), get(get_artifact)),
        route(g.clone(), "/api/v1/changes", Some(Read), get(list_changes)),
        route(p.clone(), "/api/v1/changes", Some(RecordChange), post(record_change)),
        route(g.clone(), "/api/v1/changes/{id}", Some(Read), get(get_change)),
        route(g.clone(), "/api/v1/releases", Some(Read), get(list_releases)),
        route(p.clone(), "/api/v1/releases", Some(EditRelease), post(create_release)),
        route(g.clone(), "/api/v1/releases/{id}", Some(Read), get(get_release)),
        route(pa.clone(), "/api/v1/releases/{id}", Some(EditRelease), patch(update_release)),
        route(p.clone(), "/api/v1/releases/{id}/components", Some(EditRelease), post(add_component)),
        route(g.clone(), "/api/v1/releases/{id}/transitions", Some(Read), get(preview_transitions)),
        route(p.clone(), "/api/v1/releases/{id}/transitions", Some(TransitionRelease), post(transition_release)),
        route(pu.clone(), "/api/v1/releases/{id}/review", Some(EditRelease), put(record_review)),
        route(g.clone(), "/api/v1/releases/{id}/tasks", Some(Read), get(list_tasks)),
        route(p.clone(), "/api/v1/releases/{id}/tasks", Some(EditRelease), post(add_task)),
        route(pa.clone(), "/api/v1/releases/{id}/tasks/{key}", Some(UpdateTask), patch(update_task)),
        route(g.clone(), "/api/v1/templates", Some(Read), get(list_templates)),
        route(p.clone(), "/api/v1/templates", Some(ManageTemplates), post(create_template)),
        route(g.clone(), "/api/v1/templates/{id}", Some(Read), get(get_template)),
        route(g.clone(), "/api/v1/users", Some(Read), get(list_users)),
        route(p.clone(), "/api/v1/users", Some(ManageAccess), post(create_user)),
        route(g.clone(), "/api/v1/users/me", Some(ManageOwnTokens), get(get_me)),
        route(g.clone(), "/api/v1/users/{id}", Some(Read), get(get_user)),
        route(g.clone(), "/api/v1/tokens", Some(ManageOwnTokens), get(list_tokens)),
        route(p.clone(), "/api/v1/tokens", Some(ManageOwnTokens), post(create_token)),
        route(d.clone(), "/api/v1/tokens/{id}", Some(ManageOwnTokens), delete(revoke_token)),
        route(p.clone(), "/api/v1/auth/login", None, post(login)),
        route(g.clone(), "/api/v1/role-bindings", Some(Read), get(list_role_bindings)),
        route(p.clone(), "/api/v1/role-bindings", Some(ManageAccess), post(create_role_binding)),
        route(d.clone(), "/api/v1/role-bindings/{id}", Some(ManageAccess), delete(delete_role_binding)),
        route(g.clone(), "/api/v1/audit", Some(ReadAudit), get(list_audit)),
        route(g.clone(), "/api/v1/audit/export", Some(ReadAudit), get(export_audit)),
        route(g.clone(), "/api/v1/audit/verify", Some(ReadAudit), get(verify_audit)),
        route(
            p.clone(),
            "/api/v1/evidence",
            Some(AddEvidence),
            post(add_evidence).layer(axum::extract::DefaultBodyLimit::max(signalbox_app::evidence::MAX_UPLOAD_BYTES)),
        ),
        route(g.clone(), "/api/v1/evidence", Some(Read), get(list_evidence)),
        route(g.clone(), "/api/v1/evidence/{id}", Some(Read), get(get_evidence)),
        route(g.clone(), "/api/v1/evidence/{id}/file", Some(Read), get(get_evidence_file)),
        route(g.clone(), "/api/v1/policies", Some(Read), get(list_policies)),
        route(pu.clone(), "/api/v1/policies", Some(ManagePolicy), put(put_policy)),
        route(g.clone(), "/api/v1/releases/{id}/gates", Some(Read), get(release_gates)),
        route(g.clone(), "/api/v1/releases/{id}/evidence-document", Some(Read), get(release_evidence_document)),
        route(g.clone(), "/api/v1/releases/{id}/risk", Some(Read), get(release_risk)),
        route(g.clone(), "/api/v1/releases/{id}/approvals", Some(Read), get(approval_status)),
        route(p.clone(), "/api/v1/releases/{id}/approvals", Some(Approve), post(cast_vote)),
        route(p.clone(), "/api/v1/releases/{id}/approval-requests", Some(EditRelease), post(request_approval)),
        route(g.clone(), "/api/v1/releases/{id}/break-glass", Some(Read), get(list_break_glass)),
        route(p.clone(), "/api/v1/releases/{id}/break-glass", Some(BreakGlass), post(request_break_glass)),
        route(p, "/api/v1/break-glass/{id}/confirm", Some(BreakGlass), post(confirm_break_glass)),
        route(g, "/api/v1/releases/{id}/readiness", Some(Read), get(readiness)),
    ];
    all.extend(crate::calendar_api::routes());
    all.extend(crate::promotion_api::routes());
    all.extend(crate::ofrep::routes());
    all.extend(crate::versioning_api::routes());
    all
}
