//! The nouns of release management (SPEC section 3). These are the stored shapes: the store
//! keeps each as a JSON body beside a few indexed columns, and the API returns them as they are.

use crate::lifecycle::ReleaseState;
use crate::tasks::Task;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every kind of stored resource. The string form is the stored `kind` column, the audit
/// subject kind and the word used in URLs and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Domain,
    Team,
    Service,
    Environment,
    Artifact,
    Change,
    Release,
    Template,
    User,
    RoleBinding,
    Token,
    /// A user's password hash, kept apart from the user so it never appears in user responses
    /// or in their audit entries.
    Credential,
    /// Parsed facts of one uploaded evidence file (test results, scans, SBOMs, coverage…).
    Evidence,
    /// The raw bytes of an evidence file, kept apart so listings and audit entries stay small.
    EvidenceFile,
    /// Gate and approval rules for one environment at one level (organization, domain, service).
    Policy,
    /// The approval rounds of one release for one environment.
    Approval,
    BreakGlass,
    /// A release window, freeze, maintenance window, booking, business event or vendor release (calendar).
    CalendarEntry,
    /// A release train: a cadence, a cut-off and target environments.
    Train,
    /// One departure of a train, materialized ahead of time.
    Departure,
    /// A reservation of a non-production environment.
    Booking,
    /// A read-only token for the iCalendar feed.
    FeedToken,
    /// A unit of work for the background scheduler, done exactly once.
    Job,
    /// The flags of one environment (optionally one service), in flagd format.
    FlagSet,
    /// A read-only key applications use to evaluate flags over OFREP.
    SdkKey,
    /// A scheduled change to a flag set.
    FlagSchedule,
    /// The ordered environments releases move through, with per-environment rules (promotion).
    PromotionPath,
    /// One component of a release promoted into one environment, with its rollout state.
    Deployment,
    /// Metric values pushed for a deployment's analysis.
    MetricPush,
}

impl Kind {
    pub const ALL: [Kind; 29] = [
        Kind::Domain,
        Kind::Team,
        Kind::Service,
        Kind::Environment,
        Kind::Artifact,
        Kind::Change,
        Kind::Release,
        Kind::Template,
        Kind::User,
        Kind::RoleBinding,
        Kind::Token,
        Kind::Credential,
        Kind::Evidence,
        Kind::EvidenceFile,
        Kind::Policy,
        Kind::Approval,
        Kind::BreakGlass,
        Kind::CalendarEntry,
        Kind::Train,
        Kind::Departure,
        Kind::Booking,
        Kind::FeedToken,
        Kind::Job,
        Kind::FlagSet,
        Kind::SdkKey,
        Kind::FlagSchedule,
        Kind::PromotionPath,
        Kind::Deployment,
        Kind::MetricPush,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Domain => "domain",
            Kind::Team => "team",
            Kind::Service => "service",
            Kind::Environment => "environment",
            Kind::Artifact => "artifact",
            Kind::Change => "change",
            Kind::Release => "release",
            Kind::Template => "template",
            Kind::User => "user",
            Kind::RoleBinding => "role_binding",
            Kind::Token => "token",
            Kind::Credential => "credential",
            Kind::Evidence => "evidence",
            Kind::EvidenceFile => "evidence_file",
            Kind::Policy => "policy",
            Kind::Approval => "approval",
            Kind::BreakGlass => "break_glass",
            Kind::CalendarEntry => "calendar_entry",
            Kind::Train => "train",
            Kind::Departure => "departure",
            Kind::Booking => "booking",
            Kind::FeedToken => "feed_token",
            Kind::Job => "job",
            Kind::FlagSet => "flag_set",
            Kind::SdkKey => "sdk_key",
            Kind::FlagSchedule => "flag_schedule",
            Kind::PromotionPath => "promotion_path",
            Kind::Deployment => "deployment",
            Kind::MetricPush => "metric_push",
        }
    }

    /// Prefix of generated identifiers, so an id says what it names (`rel_…`, `svc_…`).
    pub fn id_prefix(self) -> &'static str {
        match self {
            Kind::Domain => "dom",
            Kind::Team => "team",
            Kind::Service => "svc",
            Kind::Environment => "env",
            Kind::Artifact => "art",
            Kind::Change => "chg",
            Kind::Release => "rel",
            Kind::Template => "tpl",
            Kind::User => "usr",
            Kind::RoleBinding => "rb",
            Kind::Token => "tok",
            Kind::Credential => "cred",
            Kind::Evidence => "ev",
            Kind::EvidenceFile => "evf",
            Kind::Policy => "pol",
            Kind::Approval => "apr",
            Kind::BreakGlass => "bg",
            Kind::CalendarEntry => "cal",
            Kind::Train => "trn",
            Kind::Departure => "dep",
            Kind::Booking => "bkg",
            Kind::FeedToken => "feed",
            Kind::Job => "job",
            Kind::FlagSet => "fls",
            Kind::SdkKey => "sdk",
            Kind::FlagSchedule => "fsc",
            Kind::PromotionPath => "pth",
            Kind::Deployment => "dpl",
            Kind::MetricPush => "mtp",
        }
    }

    pub fn parse(raw: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == raw)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A business domain: owns teams, services and release trains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Domain {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Team {
    pub id: String,
    pub name: String,
    pub domain_id: String,
    #[serde(default)]
    pub description: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Criticality {
    CustomerFacing,
    #[default]
    Internal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum DataClassification {
    Public,
    #[default]
    Internal,
    Confidential,
    Restricted,
}

/// A deployable component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Service {
    pub id: String,
    pub name: String,
    pub team_id: String,
    /// Denormalised from the team so scope checks need one read.
    pub domain_id: String,
    #[serde(default)]
    pub repo_url: Option<String>,
    #[serde(default)]
    pub owners: Vec<String>,
    #[serde(default)]
    pub criticality: Criticality,
    #[serde(default)]
    pub data_classification: DataClassification,
    /// The git repository the service is built from, read for changes and release notes
    /// (docs/VERSIONING.md, "In the server"). Absent on services stored before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<SourceRepository>,
    pub created_at: DateTime<Utc>,
}

/// Where a service's history lives: an absolute local path read in place, or a `file://`,
/// `https://` or `ssh://` URL the server mirrors (bare clone, then fetch) into its mirror
/// directory. Credentials never appear here: the server's git credential helper or SSH agent
/// supplies them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SourceRepository {
    pub url: String,
    pub attached_by: String,
    pub attached_at: DateTime<Utc>,
    /// A package in a monorepo: its release tags (`api@{version}`, `web-v{version}` or a regex),
    /// as `signalbox changelog --tag-pattern`. Absent: the server's `[changelog] tag_pattern`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_pattern: Option<String>,
    /// A package in a monorepo: only commits touching these globs count (`services/api/**`), as
    /// `signalbox changelog --include-path`. Empty: every path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include_paths: Vec<String>,
}

/// Environment tier. Custom tiers keep their own name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Dev,
    Test,
    Staging,
    Prod,
    Custom(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
pub struct Protection {
    /// A protected environment only accepts deployments from releases that went through
    /// approval; later capabilities attach gates and approval rules to it.
    #[serde(default)]
    pub protected: bool,
    /// Roles allowed to deploy here; empty means release managers and admins.
    #[serde(default)]
    pub deployer_roles: Vec<String>,
    /// Bookings of this environment start `pending` and hold it only once its owner (or an
    /// admin other than the requester) approves them. Needs an `owner`.
    #[serde(default)]
    pub booking_requires_approval: bool,
}

/// Who owns an environment (and approves its bookings when that is required): a team (any
/// member, i.e. anyone with a role binding on the team) or one user. Stored by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EnvironmentOwner {
    /// `{"team": "<team id or name>"}`
    Team(String),
    /// `{"user": "<user id or username>"}`
    User(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Environment {
    pub id: String,
    pub name: String,
    pub tier: Tier,
    /// Position in the promotion path: lower goes first (dev=10, test=20, staging=30, prod=40).
    pub position: i32,
    #[serde(default)]
    pub protection: Protection,
    /// Configuration keys and values or secret references (`secret://…`), for parity reports.
    #[serde(default)]
    pub config: std::collections::BTreeMap<String, String>,
    /// The team or user who owns it; they approve bookings when `protection.booking_requires_approval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<EnvironmentOwner>,
    pub created_at: DateTime<Utc>,
}

/// An immutable build of a service, identified by its digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Artifact {
    pub id: String,
    pub service_id: String,
    pub version: String,
    pub digest: String,
    #[serde(default)]
    pub source_commit: Option<String>,
    #[serde(default)]
    pub build_url: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Commit,
    PullRequest,
    Ticket,
}

/// A unit of change going into a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Change {
    pub id: String,
    pub kind: ChangeKind,
    /// The commit sha, PR number or ticket key; unique per service.
    pub reference: String,
    pub title: String,
    /// Conventional Commit type (`feat`, `fix`, …) when known.
    #[serde(default)]
    pub change_type: Option<String>,
    pub author: String,
    #[serde(default)]
    pub service_id: Option<String>,
    #[serde(default)]
    pub authored_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub committed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub merged_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub links: Vec<String>,
    /// Risk flags such as `schema_migration` or `touches_payment_logic`.
    #[serde(default)]
    pub risk_flags: Vec<String>,
    /// Set when the change is (or links) a bug: gates refuse releases with open critical or
    /// high bugs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bug: Option<Bug>,
    /// What the commit message said, for changes imported from a service's repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<CommitDetails>,
    pub created_at: DateTime<Utc>,
}

/// A commit parsed as a Conventional Commit (changes imported from git).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
pub struct CommitDetails {
    #[serde(default)]
    pub scope: Option<String>,
    pub description: String,
    #[serde(default)]
    pub breaking: bool,
    /// The BREAKING CHANGE footer's text, when there is one.
    #[serde(default)]
    pub breaking_description: Option<String>,
    /// The changelog group (`Features`, `Bug Fixes`, …; `[changelog] commit_parsers`).
    pub group: String,
    /// Issue references (`#12`, `Refs:`, `Closes:`).
    #[serde(default)]
    pub issues: Vec<String>,
    #[serde(default)]
    pub author_email: String,
    #[serde(default)]
    pub co_authors: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BugSeverity {
    Low,
    Medium,
    High,
    Critical,
}

impl BugSeverity {
    pub fn as_str(self) -> &'static str {
        match self {
            BugSeverity::Low => "low",
            BugSeverity::Medium => "medium",
            BugSeverity::High => "high",
            BugSeverity::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Bug {
    pub severity: BugSeverity,
    pub open: bool,
}

/// A component of a release: one service pinned to one artifact digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Component {
    pub service_id: String,
    pub artifact_id: String,
    pub version: String,
    pub digest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
pub struct Documents {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_plan: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backout_criteria: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impact_assessment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_notes: Option<String>,
}

/// The documents a template can require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    RollbackPlan,
    BackoutCriteria,
    ImpactAssessment,
    ReleaseNotes,
}

impl DocumentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::RollbackPlan => "rollback_plan",
            DocumentKind::BackoutCriteria => "backout_criteria",
            DocumentKind::ImpactAssessment => "impact_assessment",
            DocumentKind::ReleaseNotes => "release_notes",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            DocumentKind::RollbackPlan => "rollback plan",
            DocumentKind::BackoutCriteria => "backout criteria",
            DocumentKind::ImpactAssessment => "impact assessment",
            DocumentKind::ReleaseNotes => "release notes",
        }
    }
}

impl Documents {
    pub fn get(&self, kind: DocumentKind) -> Option<&str> {
        let v = match kind {
            DocumentKind::RollbackPlan => &self.rollback_plan,
            DocumentKind::BackoutCriteria => &self.backout_criteria,
            DocumentKind::ImpactAssessment => &self.impact_assessment,
            DocumentKind::ReleaseNotes => &self.release_notes,
        };
        v.as_deref().filter(|s| !s.trim().is_empty())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlannedWindow {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ActionItem {
    pub description: String,
    pub owner: String,
    pub due: chrono::NaiveDate,
}

/// The post-release review that closing a release requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PostReleaseReview {
    pub summary: String,
    #[serde(default)]
    pub incidents: Vec<String>,
    #[serde(default)]
    pub action_items: Vec<ActionItem>,
    pub recorded_by: String,
    pub recorded_at: DateTime<Utc>,
}

/// One entry of a release's state history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StateChange {
    pub from: Option<ReleaseState>,
    pub to: ReleaseState,
    pub at: DateTime<Utc>,
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A versioned bundle of components and changes moving through the lifecycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Release {
    pub id: String,
    /// Human key, `R-<n>`, unique and never reused.
    pub key: String,
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub domain_id: Option<String>,
    pub owner: String,
    pub template_id: String,
    pub state: ReleaseState,
    #[serde(default)]
    pub components: Vec<Component>,
    #[serde(default)]
    pub change_ids: Vec<String>,
    #[serde(default)]
    pub target_environments: Vec<String>,
    #[serde(default)]
    pub planned_window: Option<PlannedWindow>,
    #[serde(default)]
    pub documents: Documents,
    #[serde(default)]
    pub required_documents: Vec<DocumentKind>,
    /// Ids of releases that must be released before this one may deploy.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Flag keys switched off in an environment when a rollout of this release rolls back
    /// there (on top of the path stage's). Operational, so not part of the content digest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kill_switch_flags: Vec<String>,
    #[serde(default)]
    pub tasks: Vec<Task>,
    #[serde(default)]
    pub review: Option<PostReleaseReview>,
    #[serde(default)]
    pub history: Vec<StateChange>,
    /// Digest over the components and changes; approvals bind to it (governance).
    pub content_digest: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

impl Release {
    /// Recomputes the content digest from the components and changes. Order-insensitive:
    /// the same set of digests and changes is the same content.
    pub fn compute_content_digest(components: &[Component], change_ids: &[String]) -> String {
        let mut pins: Vec<String> = components.iter().map(|c| format!("{}={}", c.service_id, c.digest)).collect();
        pins.sort();
        let mut changes = change_ids.to_vec();
        changes.sort();
        crate::canonical::digest_of(&serde_json::json!({"components": pins, "changes": changes}))
    }
}

/// A user. A password, when set, is a separate [`Credential`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: String,
    pub username: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

/// A user's password as an Argon2id PHC string. Stored under the user's id as its key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Credential {
    pub id: String,
    pub user_id: String,
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
}

/// An API token. Only the SHA-256 of the secret is stored; the secret is shown once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Token {
    pub id: String,
    pub user_id: String,
    pub name: String,
    /// First characters of the secret, to recognise a token in a list.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub revoked_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_used_at: Option<DateTime<Utc>>,
}
