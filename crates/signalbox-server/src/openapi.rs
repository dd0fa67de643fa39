//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("sbx_…").build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Signalbox API",
        description = "Release management and orchestration. Errors are RFC 9457 problem details (application/problem+json). Mutable resources carry an ETag; updates take If-Match (412 when stale). POST accepts Idempotency-Key. Lists page with ?limit=&cursor=.",
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    paths(
        api::list_domains, api::create_domain, api::get_domain,
        api::list_teams, api::create_team, api::get_team,
        api::list_services, api::create_service, api::get_service, api::update_service,
        api::list_environments, api::create_environment, api::get_environment, api::update_environment,
        api::list_artifacts, api::register_artifact, api::get_artifact,
        api::list_changes, api::record_change, api::get_change,
        api::list_releases, api::create_release, api::get_release, api::update_release,
        api::add_component, api::preview_transitions, api::transition_release, api::record_review,
        api::list_tasks, api::add_task, api::update_task,
        api::list_templates, api::create_template, api::get_template,
        api::list_users, api::create_user, api::get_me, api::get_user,
        api::list_tokens, api::create_token, api::revoke_token, api::login,
        api::list_role_bindings, api::create_role_binding, api::delete_role_binding,
        api::list_audit, api::export_audit, api::verify_audit,
        api::add_evidence, api::list_evidence, api::get_evidence, api::get_evidence_file,
        api::put_policy, api::list_policies, api::release_gates, api::release_evidence_document, api::release_risk,
        api::approval_status, api::cast_vote, api::request_approval,
        api::request_break_glass, api::list_break_glass, api::confirm_break_glass, api::readiness,
    ),
    components(schemas(crate::problem::Problem)),
    tags(
        (name = "catalog", description = "Domains, teams, services, environments"),
        (name = "artifacts", description = "Immutable artifacts and changes"),
        (name = "releases", description = "Releases, lifecycle, tasks, templates"),
        (name = "access", description = "Users, tokens, role bindings"),
        (name = "audit", description = "The hash-chained audit trail"),
        (name = "governance", description = "Evidence, gate policies, approvals, risk, break-glass, readiness"),
    )
)]
pub struct ApiDoc;

pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::calendar_api::CalendarApiDoc::openapi());
    doc.merge(crate::ofrep::FlagsApiDoc::openapi());
    doc.merge(crate::promotion_api::PromotionApiDoc::openapi());
    doc.merge(crate::versioning_api::VersioningApiDoc::openapi());
    doc
}
