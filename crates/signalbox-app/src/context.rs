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
