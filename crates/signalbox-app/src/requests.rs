//! The shapes clients send. Unknown fields are refused (a typo must not be silently ignored),
//! and every field is checked with a message that names it and says what would be accepted.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use signalbox_domain::access::{Role, Scope};
use signalbox_domain::lifecycle::ReleaseState;
use signalbox_domain::model::{
    ChangeKind, Criticality, DataClassification, DocumentKind, Documents, EnvironmentOwner, PlannedWindow, Protection, Tier,
};
use signalbox_domain::tasks::{TaskKind, TaskStatus};
use signalbox_domain::templates::Phase;
use std::collections::BTreeMap;
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDomain {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTeam {
    pub name: String,
    /// Domain id or name.
    pub domain: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateService {
    pub name: String,
    /// Team id or name.
    pub team: String,
    #[serde(default)]
    pub repo_url: Option<String>,
    #[serde(default)]
    pub owners: Vec<String>,
    #[serde(default)]
    pub criticality: Criticality,
    #[serde(default)]
    pub data_classification: DataClassification,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateService {
    #[serde(default)]
    pub repo_url: Option<String>,
    #[serde(default)]
    pub owners: Option<Vec<String>>,
    #[serde(default)]
    pub criticality: Option<Criticality>,
    #[serde(default)]
    pub data_classification: Option<DataClassification>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEnvironment {
    pub name: String,
    pub tier: Tier,
    /// Position in the promotion path; lower goes first.
    pub position: i32,
    #[serde(default)]
    pub protection: Protection,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// `{"team": "<id or name>"}` or `{"user": "<id or username>"}`.
    #[serde(default)]
    pub owner: Option<EnvironmentOwner>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEnvironment {
    #[serde(default)]
    pub tier: Option<Tier>,
    #[serde(default)]
    pub position: Option<i32>,
    #[serde(default)]
    pub protection: Option<Protection>,
    #[serde(default)]
    pub config: Option<BTreeMap<String, String>>,
    /// A new owner (`{"team": …}` or `{"user": …}`), or `null` to clear it; absent leaves it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<EnvironmentOwner>)]
    pub owner: Option<Option<EnvironmentOwner>>,
}

/// A field that may be absent (outer `None`), `null` (`Some(None)`) or a value.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterArtifact {
    /// Service id or name.
    pub service: String,
    /// SemVer 2.0.0, without a leading `v`.
    pub version: String,
    /// `sha256:` followed by 64 hex digits.
    pub digest: String,
    #[serde(default)]
    pub source_commit: Option<String>,
    #[serde(default)]
    pub build_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordChange {
    pub kind: ChangeKind,
    pub reference: String,
    pub title: String,
    #[serde(default)]
    pub change_type: Option<String>,
    pub author: String,
    /// Service id or name.
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub authored_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub committed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub merged_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub links: Vec<String>,
    #[serde(default)]
    pub risk_flags: Vec<String>,
    /// When the change is a bug: its severity and whether it is still open.
    #[serde(default)]
    pub bug: Option<signalbox_domain::model::Bug>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRelease {
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
    /// Domain id or name.
    #[serde(default)]
    pub domain: Option<String>,
    /// Template id or name; `standard` when omitted.
    #[serde(default)]
    pub template: Option<String>,
    /// Username of the owner; the caller when omitted.
    #[serde(default)]
    pub owner: Option<String>,
    /// Artifact ids, or `service@version`.
    #[serde(default)]
    pub components: Vec<String>,
    #[serde(default)]
    pub changes: Vec<String>,
    /// Environment ids or names.
    #[serde(default)]
    pub target_environments: Vec<String>,
    #[serde(default)]
    pub planned_window: Option<PlannedWindow>,
    #[serde(default)]
    pub documents: Documents,
    /// Release ids or keys (`R-12`) this release depends on.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Flag keys to switch off in an environment when a rollout of this release rolls back
    /// there.
    #[serde(default)]
    pub kill_switch_flags: Vec<String>,
}

/// A partial update of a release; absent fields are left alone.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateRelease {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub components: Option<Vec<String>>,
    #[serde(default)]
    pub changes: Option<Vec<String>>,
    #[serde(default)]
    pub target_environments: Option<Vec<String>>,
    #[serde(default)]
    pub planned_window: Option<PlannedWindow>,
    #[serde(default)]
    pub documents: Option<Documents>,
    #[serde(default)]
    pub depends_on: Option<Vec<String>>,
    #[serde(default)]
    pub kill_switch_flags: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddComponent {
    /// Artifact id, or `service@version`.
    pub artifact: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionRequest {
    pub to: ReleaseState,
    #[serde(default)]
    pub reason: Option<String>,
    /// For `approved` and `deploying`: the environment whose gates and approvals decide.
    /// Without it, every target environment of the release must pass.
    #[serde(default)]
    pub environment: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionItemInput {
    pub description: String,
    pub owner: String,
    pub due: NaiveDate,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordReview {
    pub summary: String,
    #[serde(default)]
    pub incidents: Vec<String>,
    #[serde(default)]
    pub action_items: Vec<ActionItemInput>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddTask {
    pub key: String,
    pub name: String,
    pub kind: TaskKind,
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default)]
    pub assignee: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTask {
    #[serde(default)]
    pub status: Option<TaskStatus>,
    #[serde(default)]
    pub assignee: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTemplate {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub phases: Vec<Phase>,
    #[serde(default)]
    pub required_documents: Vec<DocumentKind>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub username: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub email: Option<String>,
    /// At least 12 characters; stored as an Argon2id hash.
    #[serde(default)]
    pub password: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub name: String,
    /// Another user's id or username (admins only); yourself when omitted.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub token_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoleBinding {
    /// User id or username.
    pub user: String,
    pub role: Role,
    /// Scope; `{"type":"organization"}` or e.g. `{"type":"domain","id":"payments"}` (id or name).
    pub scope: Scope,
}

/// A created token: the only time the secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IssuedToken {
    pub token: signalbox_domain::model::Token,
    pub secret: String,
}
