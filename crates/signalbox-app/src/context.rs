//! Who is asking, and about which request.

use signalbox_domain::access::{self, Permission, ResourceScopes, RoleBinding};

use crate::error::{AppError, AppResult};

/// An authenticated caller with the role bindings it holds.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user_id: String,
    pub username: String,
    pub bindings: Vec<RoleBinding>,
}

impl Actor {
    /// The built-in actor for work the server does by itself (bootstrap, demo seeding).
    pub fn system() -> Actor {
        Actor {
            user_id: "system".into(),
            username: "system".into(),
            bindings: vec![RoleBinding {
                id: "system".into(),
                user_id: "system".into(),
                role: signalbox_domain::access::Role::Admin,
                scope: signalbox_domain::access::Scope::Organization,
                created_at: chrono::DateTime::UNIX_EPOCH,
            }],
        }
    }

    /// Refuses unless a binding grants `permission` on a resource in `scopes`.
    pub fn require(&self, permission: Permission, scopes: &ResourceScopes) -> AppResult<()> {
        if access::allows(&self.bindings, permission, scopes) {
            Ok(())
        } else {
            let innermost = scopes.0.last().map(|s| s.describe()).unwrap_or_else(|| "the organization".into());
            Err(AppError::Forbidden(format!(
                "{} lacks the {} permission on {}; ask an admin for a role that grants it at that scope",
                self.username,
                permission.as_str(),
                innermost
            )))
        }
    }

    /// Refuses unless the actor may deploy into `env`: an environment whose
    /// `protection.deployer_roles` is not empty accepts deployments only from those roles (or an
    /// admin), bound at the organization, the environment or one of `scopes`. This tightens the
    /// `deploy` permission, which is checked separately; it never widens it.
    pub fn require_deployer(&self, env: &signalbox_domain::model::Environment, scopes: &ResourceScopes) -> AppResult<()> {
        let allowed = &env.protection.deployer_roles;
        if allowed.is_empty() {
            return Ok(());
        }
        let env_scope = access::Scope::Environment(env.id.clone());
        let holds = self.bindings.iter().any(|b| {
            (b.role == access::Role::Admin || allowed.iter().any(|r| r == b.role.as_str()))
                && (b.scope == access::Scope::Organization || b.scope == env_scope || scopes.0.contains(&b.scope))
        });
        if holds {
            return Ok(());
        }
        let mut held: Vec<String> = self.bindings.iter().map(|b| format!("{} at {}", b.role.as_str(), b.scope.describe())).collect();
        held.sort();
        held.dedup();
        Err(AppError::Forbidden(format!(
            "environment {} accepts deployments only from the roles {} (its protection.deployer_roles); {} holds {}; \
             ask an admin for one of those roles, or change the environment's deployer_roles",
            env.name,
            allowed.join(", "),
            self.username,
            if held.is_empty() { "no role".to_string() } else { held.join(", ") }
        )))
    }

    pub fn is_admin(&self) -> bool {
        access::allows(&self.bindings, Permission::ManageAccess, &ResourceScopes::organization())
    }
}

#[derive(Debug, Clone)]
pub struct IdempotencyContext {
    pub key: String,
    /// Fingerprint of the request (method, path, body).
    pub request_hash: String,
}

#[derive(Debug, Clone)]
pub struct RequestContext {
    pub actor: Actor,
    pub request_id: Option<String>,
    /// Why, when the caller said (`X-Signalbox-Reason` or a `reason` field).
    pub reason: Option<String>,
    pub idempotency: Option<IdempotencyContext>,
}

impl RequestContext {
    pub fn new(actor: Actor) -> RequestContext {
        RequestContext { actor, request_id: None, reason: None, idempotency: None }
    }
    pub fn system() -> RequestContext {
        RequestContext::new(Actor::system())
    }
}
