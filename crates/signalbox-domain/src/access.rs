//! Identity and access (SPEC C3): built-in roles, the permissions they carry, scopes, and the
//! one function that decides whether a set of role bindings allows an action on a resource.
//! Deny by default: a permission nobody granted is refused.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Developer,
    ReleaseManager,
    TechLead,
    ProductOwner,
    Sre,
    Security,
    Compliance,
    IncidentCommander,
    Admin,
}

impl Role {
    pub const ALL: [Role; 10] = [
        Role::Viewer,
        Role::Developer,
        Role::ReleaseManager,
        Role::TechLead,
        Role::ProductOwner,
        Role::Sre,
        Role::Security,
        Role::Compliance,
        Role::IncidentCommander,
        Role::Admin,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Developer => "developer",
            Role::ReleaseManager => "release_manager",
            Role::TechLead => "tech_lead",
            Role::ProductOwner => "product_owner",
            Role::Sre => "sre",
            Role::Security => "security",
            Role::Compliance => "compliance",
            Role::IncidentCommander => "incident_commander",
            Role::Admin => "admin",
        }
    }
    pub fn parse(raw: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == raw)
    }

    /// The permission table. Kept as one match so the whole policy reads in one screen.
    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::Viewer => &[Read, ManageOwnTokens],
            Role::Developer => &[Read, RegisterArtifact, RecordChange, EditRelease, UpdateTask, AddEvidence, ManageFlags, ManageOwnTokens],
            Role::ReleaseManager => &[
                Read,
                ManageCatalog,
                RegisterArtifact,
                RecordChange,
                EditRelease,
                TransitionRelease,
                UpdateTask,
                ManageTemplates,
                ReadAudit,
                AddEvidence,
                Approve,
                ManagePolicy,
                BreakGlass,
                ManageFlags,
                Deploy,
                OverrideRollout,
                ManageOwnTokens,
            ],
            Role::TechLead => &[Read, UpdateTask, AddEvidence, Approve, ManageFlags, ManageOwnTokens],
            Role::ProductOwner => &[Read, UpdateTask, AddEvidence, Approve, ManageOwnTokens],
            Role::Sre => &[
                Read,
                RecordChange,
                UpdateTask,
                TransitionRelease,
                AddEvidence,
                Approve,
                BreakGlass,
                ManageFlags,
                Deploy,
                OverrideRollout,
                ManageOwnTokens,
            ],
            Role::Security | Role::Compliance => &[Read, UpdateTask, ReadAudit, AddEvidence, Approve, ManageOwnTokens],
            Role::IncidentCommander => &[Read, UpdateTask, TransitionRelease, Approve, BreakGlass, Deploy, ManageOwnTokens],
            Role::Admin => &Permission::ALL,
        }
    }
}

/// What an endpoint needs. Every route declares exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Read the catalog, artifacts, changes, releases and templates.
    Read,
    /// Create and edit domains, teams, services and environments.
    ManageCatalog,
    RegisterArtifact,
    RecordChange,
    /// Create releases and edit their content, documents and tasks.
    EditRelease,
    TransitionRelease,
    /// Update the status or assignee of a release task.
    UpdateTask,
    ManageTemplates,
    ReadAudit,
    /// Create, list and revoke one's own API tokens.
    ManageOwnTokens,
    /// Users, role bindings and everyone's tokens.
    ManageAccess,
    /// Upload evidence (test results, scans, SBOMs, coverage, sign-offs) for artifacts and releases.
    AddEvidence,
    /// Approve or reject a release for an environment (segregation of duties applies on top).
    Approve,
    /// Set gate and approval policies.
    ManagePolicy,
    /// Request or confirm an emergency bypass of gates.
    BreakGlass,
    /// Change feature flags (including the kill switch) in the environments a binding covers.
    ManageFlags,
    /// Promote releases into environments, pause, resume, abort and retry rollouts, record
    /// deployments made elsewhere and push rollout metrics.
    Deploy,
    /// Skip a rollout's remaining steps and analyses (promote now): a reason is required.
    OverrideRollout,
}

impl Permission {
    pub const ALL: [Permission; 18] = [
        Permission::Read,
        Permission::ManageCatalog,
        Permission::RegisterArtifact,
        Permission::RecordChange,
        Permission::EditRelease,
        Permission::TransitionRelease,
        Permission::UpdateTask,
        Permission::ManageTemplates,
        Permission::ReadAudit,
        Permission::ManageOwnTokens,
        Permission::ManageAccess,
        Permission::AddEvidence,
        Permission::Approve,
        Permission::ManagePolicy,
        Permission::BreakGlass,
        Permission::ManageFlags,
        Permission::Deploy,
        Permission::OverrideRollout,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::ManageCatalog => "manage_catalog",
            Permission::RegisterArtifact => "register_artifact",
            Permission::RecordChange => "record_change",
            Permission::EditRelease => "edit_release",
            Permission::TransitionRelease => "transition_release",
            Permission::UpdateTask => "update_task",
            Permission::ManageTemplates => "manage_templates",
            Permission::ReadAudit => "read_audit",
            Permission::ManageOwnTokens => "manage_own_tokens",
            Permission::ManageAccess => "manage_access",
            Permission::AddEvidence => "add_evidence",
            Permission::Approve => "approve",
            Permission::ManagePolicy => "manage_policy",
            Permission::BreakGlass => "break_glass",
            Permission::ManageFlags => "manage_flags",
            Permission::Deploy => "deploy",
            Permission::OverrideRollout => "override_rollout",
        }
    }
    /// Permissions that are organization-wide by nature: holding them at any scope is enough.
    /// Reading is org-wide so that cross-team dependencies and the calendar are visible to all.
    pub fn is_global(self) -> bool {
        matches!(self, Permission::Read | Permission::ManageOwnTokens)
    }
}

/// Where a role binding applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum Scope {
    Organization,
    Domain(String),
    Team(String),
    Service(String),
    Environment(String),
}

impl Scope {
    pub fn describe(&self) -> String {
        match self {
            Scope::Organization => "the organization".into(),
            Scope::Domain(id) => format!("domain {id}"),
            Scope::Team(id) => format!("team {id}"),
            Scope::Service(id) => format!("service {id}"),
            Scope::Environment(id) => format!("environment {id}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RoleBinding {
    pub id: String,
    pub user_id: String,
    pub role: Role,
    pub scope: Scope,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// The scopes a resource sits in, outermost first: a service is inside its team, its domain and
/// the organization. A binding at any of them applies.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResourceScopes(pub Vec<Scope>);

impl ResourceScopes {
    pub fn organization() -> Self {
        ResourceScopes(vec![Scope::Organization])
    }
    pub fn with(mut self, scope: Scope) -> Self {
        self.0.push(scope);
        self
    }
    /// Union of several resources' scopes (a release spanning services).
    pub fn merge(mut self, other: &ResourceScopes) -> Self {
        for s in &other.0 {
            if !self.0.contains(s) {
                self.0.push(s.clone());
            }
        }
        self
    }
}

/// Does any binding grant `permission` on a resource living in `scopes`?
pub fn allows(bindings: &[RoleBinding], permission: Permission, scopes: &ResourceScopes) -> bool {
    bindings.iter().any(|b| {
        b.role.permissions().contains(&permission)
            && (permission.is_global() || b.scope == Scope::Organization || scopes.0.contains(&b.scope))
    })
}

/// Does any binding grant `permission` anywhere? The coarse check routes do before the handler
/// knows which resource is concerned.
pub fn allows_somewhere(bindings: &[RoleBinding], permission: Permission) -> bool {
    bindings.iter().any(|b| b.role.permissions().contains(&permission))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(role: Role, scope: Scope) -> RoleBinding {
        RoleBinding { id: "rb".into(), user_id: "u".into(), role, scope, created_at: chrono::Utc::now() }
    }

    #[test]
    fn scoped_bindings_apply_inside_their_scope_only() {
        let dev_in_payments = vec![binding(Role::Developer, Scope::Domain("payments".into()))];
        let payments_service = ResourceScopes::organization().with(Scope::Domain("payments".into())).with(Scope::Service("api".into()));
        let search_service = ResourceScopes::organization().with(Scope::Domain("search".into()));
        assert!(allows(&dev_in_payments, Permission::RegisterArtifact, &payments_service));
        assert!(!allows(&dev_in_payments, Permission::RegisterArtifact, &search_service));
        assert!(allows(&dev_in_payments, Permission::Read, &search_service), "reading is org-wide");
        assert!(!allows(&dev_in_payments, Permission::ManageCatalog, &payments_service));
    }

    #[test]
    fn nobody_is_allowed_anything_without_a_binding() {
        for p in Permission::ALL {
            assert!(!allows(&[], p, &ResourceScopes::organization()));
        }
    }

    #[test]
    fn only_admins_manage_access() {
        for role in Role::ALL {
            let granted = role.permissions().contains(&Permission::ManageAccess);
            assert_eq!(granted, role == Role::Admin, "{role:?}");
        }
    }
}
