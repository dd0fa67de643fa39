//! Feature flags over HTTP (issue 7): the `/api/v1/flags` management API and the OpenFeature
//! Remote Evaluation Protocol under `/ofrep/v1`. (Being built.)

use axum::Router;

use crate::routes::RouteSpec;
use crate::AppState;

/// The flag management routes under `/api/v1`, each with its permission.
pub fn routes() -> Vec<RouteSpec> {
    vec![]
}

/// The OFREP routes, authenticated with SDK keys rather than user tokens.
pub fn router(_state: AppState) -> Router<AppState> {
    Router::new()
}

#[derive(utoipa::OpenApi)]
#[openapi()]
pub struct FlagsApiDoc;
