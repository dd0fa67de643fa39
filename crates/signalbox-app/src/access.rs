//! Users, API tokens, role bindings, authentication and the first-start bootstrap.
//!
//! API tokens are 256-bit random secrets (`sbx_…`); only their SHA-256 is stored. A fast hash
//! is right for high-entropy secrets (nothing to brute-force) and keeps authentication to one
//! indexed lookup. Passwords, which people choose, are stored as Argon2id PHC strings.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sha2::{Digest as _, Sha256};
use signalbox_domain::access::{Permission, ResourceScopes, Role, RoleBinding, Scope};
use signalbox_domain::model::{Credential, Domain, Environment, Kind, Service, Team, Token, User};
use signalbox_domain::validate::Name;
use signalbox_domain::Invalid;
use signalbox_store::ListQuery;

use crate::error::{AppError, AppResult};
use crate::mutation::{decode, Mutation, Placement};
use crate::requests::*;
use crate::{new_id, Actor, App, PageRequest, Paged, RequestContext, Versioned};

pub const TOKEN_PREFIX: &str = "sbx_";
pub const MIN_PASSWORD_LENGTH: usize = 12;

pub fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn generate_secret() -> AppResult<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| AppError::Internal(format!("no randomness available: {e}")))?;
    Ok(format!("{TOKEN_PREFIX}{}", hex::encode(bytes)))
}

pub fn hash_password(password: &str) -> AppResult<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AppError::Internal(format!("cannot hash password: {e}")))
}

fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// How long an authenticated token is trusted without re-reading it. Changes made through this
/// process (revocations, role bindings, users) clear the cache at once; another replica's
/// changes are seen within this time.
pub const AUTH_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(2);

/// Actors by token hash: authentication is three reads, and every request needs it.
#[derive(Default)]
pub struct AuthCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, (Actor, std::time::Instant)>>,
}

impl AuthCache {
    fn get(&self, hash: &str) -> Option<Actor> {
        let entries = self.entries.lock().ok()?;
        entries.get(hash).filter(|(_, at)| at.elapsed() < AUTH_CACHE_TTL).map(|(actor, _)| actor.clone())
    }
    fn put(&self, hash: String, actor: Actor) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() > 10_000 {
                entries.retain(|_, (_, at)| at.elapsed() < AUTH_CACHE_TTL);
            }
            entries.insert(hash, (actor, std::time::Instant::now()));
        }
    }
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

/// What the first start printed or was given.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// The admin token secret, when one was created now (print it once).
    pub created_secret: Option<String>,
}

impl App {
    /// Resolves a bearer secret to an actor with its role bindings.
    pub async fn authenticate(&self, secret: &str) -> AppResult<Actor> {
        if !secret.starts_with(TOKEN_PREFIX) {
            return Err(AppError::Unauthenticated("the bearer token is not a Signalbox token (they start with sbx_)".into()));
        }
        let hash = hash_token(secret);
        if let Some(actor) = self.auth_cache.get(&hash) {
            return Ok(actor);
        }
        let record = self.store.get(Kind::Token, &hash).await?;
        let Some(record) = record else {
            return Err(AppError::Unauthenticated("the bearer token is unknown".into()));
        };
        let token: Token = decode(&record)?.value;
        if token.revoked_at.is_some() {
            return Err(AppError::Unauthenticated(format!("token {} was revoked", token.prefix)));
        }
        if token.expires_at.is_some_and(|at| at <= chrono::Utc::now()) {
            return Err(AppError::Unauthenticated(format!("token {} has expired", token.prefix)));
        }
        let user: User = match self.store.get(Kind::User, &token.user_id).await? {
            Some(r) => decode(&r)?.value,
            None => return Err(AppError::Unauthenticated("the token's user no longer exists".into())),
        };
        if user.disabled {
            return Err(AppError::Unauthenticated(format!("user {} is disabled", user.username)));
        }
        // Expiry is checked on every request, cached or not.
        let bindings = self.bindings_of(&user.id).await?;
        let actor = Actor { user_id: user.id, username: user.username, bindings };
        if token.expires_at.is_none_or(|at| at > chrono::Utc::now() + chrono::Duration::from_std(AUTH_CACHE_TTL).unwrap_or_default()) {
            self.auth_cache.put(hash, actor.clone());
        }
        Ok(actor)
    }

    async fn bindings_of(&self, user_id: &str) -> AppResult<Vec<RoleBinding>> {
        let page = self.store.list(&ListQuery::all(Kind::RoleBinding).with_parent(user_id)).await?;
        page.items.iter().map(|r| decode(r).map(|v| v.value)).collect()
    }

    /// On first start: the built-in templates, and an `admin` user with an organization-wide
    /// admin binding and a token. `preset_secret` (`SIGNALBOX_BOOTSTRAP_TOKEN`) makes the token
    /// known in advance; it is added if missing even when users already exist, so automation
    /// can rely on it.
    pub async fn bootstrap(&self, preset_secret: Option<&str>) -> AppResult<Bootstrap> {
        self.ensure_builtin_templates().await?;
        if let Some(secret) = preset_secret {
            if !secret.starts_with(TOKEN_PREFIX) || secret.len() < TOKEN_PREFIX.len() + 32 {
                return Err(AppError::invalid(
                    "SIGNALBOX_BOOTSTRAP_TOKEN",
                    format!(
                        "must start with {TOKEN_PREFIX} followed by at least 32 characters, e.g. {TOKEN_PREFIX}$(openssl rand -hex 32)"
                    ),
                ));
            }
            if self.store.get(Kind::Token, &hash_token(secret)).await?.is_some() {
                return Ok(Bootstrap { created_secret: None });
            }
        }
        let ctx = RequestContext::system();
        let mut m = Mutation::begin(self, &ctx).await?;
        let admin = match m.find::<User>(Kind::User, "admin").await? {
            Some(u) => u.value,
            None => {
                // Asked in the transaction: a pooled read here would take a second connection
                // while this one is held.
                if preset_secret.is_none() && !m.list_records(&ListQuery { limit: 1, ..ListQuery::all(Kind::User) }).await?.is_empty() {
                    // Someone already bootstrapped and renamed or removed admin: do nothing.
                    return Ok(Bootstrap { created_secret: None });
                }
                let user = User {
                    id: new_id(Kind::User),
                    username: "admin".into(),
                    display_name: "Administrator".into(),
                    email: None,
                    disabled: false,
                    created_at: m.now,
                };
                m.insert("user.create", Kind::User, &user.id, Placement { key: Some(user.username.clone()), ..Default::default() }, &user)
                    .await?;
                let binding = RoleBinding {
                    id: new_id(Kind::RoleBinding),
                    user_id: user.id.clone(),
                    role: Role::Admin,
                    scope: Scope::Organization,
                    created_at: m.now,
                };
                m.insert(
                    "role_binding.create",
                    Kind::RoleBinding,
                    &binding.id,
                    Placement { parent: Some(user.id.clone()), ..Default::default() },
                    &binding,
                )
                .await?;
                user
            }
        };
        let has_tokens = !m.list::<Token>(&ListQuery::all(Kind::Token).with_parent(&admin.id)).await?.is_empty();
        if has_tokens && preset_secret.is_none() {
            return Ok(Bootstrap { created_secret: None });
        }
        let secret = match preset_secret {
            Some(s) => s.to_string(),
            None => generate_secret()?,
        };
        let token = Token {
            id: new_id(Kind::Token),
            user_id: admin.id.clone(),
            name: "bootstrap".into(),
            prefix: secret.chars().take(12).collect(),
            created_at: m.now,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        };
        m.insert(
            "token.create",
            Kind::Token,
            &token.id,
            Placement { key: Some(hash_token(&secret)), parent: Some(admin.id), state: None },
            &token,
        )
        .await?;
        m.commit(201, &token).await?;
        Ok(Bootstrap { created_secret: preset_secret.is_none().then_some(secret) })
    }

    pub async fn create_user(&self, ctx: &RequestContext, req: CreateUser) -> AppResult<Versioned<User>> {
        ctx.actor.require(Permission::ManageAccess, &ResourceScopes::organization())?;
        let mut errors = Invalid::default();
        let username = errors.check(Name::parse("username", &req.username));
        if let Some(p) = &req.password {
            if p.chars().count() < MIN_PASSWORD_LENGTH {
                errors.push("password", format!("must be at least {MIN_PASSWORD_LENGTH} characters"));
            }
        }
        if let Some(e) = &req.email {
            if !e.contains('@') || e.len() > 320 {
                errors.push("email", "must be an e-mail address such as ana@example.com");
            }
        }
        errors.into_result()?;
        let password_hash = match &req.password {
            Some(p) => Some(hash_password(p)?),
            None => None,
        };
        let mut m = Mutation::begin(self, ctx).await?;
        let user = User {
            id: new_id(Kind::User),
            username: username.expect("checked").to_string(),
            display_name: req.display_name,
            email: req.email,
            disabled: false,
            created_at: m.now,
        };
        let version = m
            .insert("user.create", Kind::User, &user.id, Placement { key: Some(user.username.clone()), ..Default::default() }, &user)
            .await?;
        if let Some(password_hash) = password_hash {
            let credential = Credential { id: new_id(Kind::Credential), user_id: user.id.clone(), password_hash, created_at: m.now };
            let redacted = serde_json::json!({"id": credential.id, "user_id": user.id, "password_hash": "[redacted]"});
            m.insert_secret(
                "credential.set",
                Kind::Credential,
                &credential.id.clone(),
                Placement { key: Some(user.id.clone()), parent: Some(user.id.clone()), state: None },
                &credential,
                redacted,
            )
            .await?;
        }
        let out = Versioned { version, value: user };
        m.commit(201, &out.value).await?;
        Ok(out)
    }

    /// Issues a token for the caller, or (admins) for another user.
    pub async fn create_token(&self, ctx: &RequestContext, req: CreateToken) -> AppResult<IssuedToken> {
        ctx.actor.require(Permission::ManageOwnTokens, &ResourceScopes::organization())?;
        let name = signalbox_domain::validate::require_text("name", &req.name, 100)?;
        if req.expires_at.is_some_and(|at| at <= chrono::Utc::now()) {
            return Err(AppError::invalid("expires_at", "must be in the future"));
        }
        let mut m = Mutation::begin(self, ctx).await?;
        let user: User = match &req.user {
            Some(u) => {
                let user: User = App::resolve_ref(&mut m, Kind::User, "user", u).await?.value;
                if user.id != ctx.actor.user_id {
                    ctx.actor.require(Permission::ManageAccess, &ResourceScopes::organization())?;
                }
                user
            }
            None => m.get(Kind::User, &ctx.actor.user_id).await?.value,
        };
        let issued = issue_token(&mut m, &user, name, req.expires_at).await?;
        m.commit(201, &issued.token).await?;
        Ok(issued)
    }

    /// Exchanges a username and password for a new token.
    pub async fn login(&self, req: Login, request_id: Option<String>) -> AppResult<IssuedToken> {
        let invalid = || AppError::Unauthenticated("unknown username or wrong password".into());
        let record = self.store.get(Kind::User, &req.username).await?.ok_or_else(invalid)?;
        let user: User = decode(&record)?.value;
        let Some(credential) = self.store.get(Kind::Credential, &user.id).await? else { return Err(invalid()) };
        let credential: Credential = decode(&credential)?.value;
        if user.disabled || !verify_password(&req.password, &credential.password_hash) {
            return Err(invalid());
        }
        let mut ctx = RequestContext::new(Actor { user_id: user.id.clone(), username: user.username.clone(), bindings: vec![] });
        ctx.request_id = request_id;
        let mut m = Mutation::begin(self, &ctx).await?;
        let issued = issue_token(&mut m, &user, req.token_name.unwrap_or_else(|| "login".into()), None).await?;
        m.commit(201, &issued.token).await?;
        Ok(issued)
    }

    pub async fn list_tokens(&self, ctx: &RequestContext, user: Option<&str>, page: &PageRequest) -> AppResult<Paged<Token>> {
        ctx.actor.require(Permission::ManageOwnTokens, &ResourceScopes::organization())?;
        let user_id = match user {
            Some(u) => {
                ctx.actor.require(Permission::ManageAccess, &ResourceScopes::organization())?;
                let r = self.store.get(Kind::User, u).await?.ok_or_else(|| AppError::invalid("user", format!("no user {u:?}")))?;
                r.id
            }
            None => ctx.actor.user_id.clone(),
        };
        self.list_page(ListQuery::all(Kind::Token).with_parent(user_id), page).await
    }

    pub async fn revoke_token(&self, ctx: &RequestContext, id: &str) -> AppResult<Versioned<Token>> {
        ctx.actor.require(Permission::ManageOwnTokens, &ResourceScopes::organization())?;
        let mut m = Mutation::begin(self, ctx).await?;
        // Read as a record, in the transaction: its stored key (the secret's hash) is kept by
        // the update below.
        let stored = m.get_record(Kind::Token, id).await?.ok_or_else(|| AppError::not_found(Kind::Token, id))?;
        let record: Versioned<Token> = decode(&stored)?;
        if record.value.user_id != ctx.actor.user_id {
            ctx.actor
                .require(Permission::ManageAccess, &ResourceScopes::organization())
                .map_err(|_| AppError::not_found(Kind::Token, id))?;
        }
        let mut next = record.value.clone();
        if next.revoked_at.is_none() {
            next.revoked_at = Some(m.now);
        }
        let key = stored.key;
        let version = m
            .update(
                "token.revoke",
                Kind::Token,
                &next.id.clone(),
                Placement { key, parent: Some(next.user_id.clone()), state: Some("revoked".into()) },
                &record,
                &next,
            )
            .await?;
        let out = Versioned { version, value: next };
        m.commit(200, &out.value).await?;
        self.auth_cache.clear();
        Ok(out)
    }

    pub async fn create_role_binding(&self, ctx: &RequestContext, req: CreateRoleBinding) -> AppResult<Versioned<RoleBinding>> {
        ctx.actor.require(Permission::ManageAccess, &ResourceScopes::organization())?;
        let mut m = Mutation::begin(self, ctx).await?;
        let user: User = App::resolve_ref(&mut m, Kind::User, "user", &req.user).await?.value;
        // Scopes are stored by id, whatever the client named them by.
        let scope = match req.scope {
            Scope::Organization => Scope::Organization,
            Scope::Domain(r) => Scope::Domain(App::resolve_ref::<Domain>(&mut m, Kind::Domain, "scope/id", &r).await?.value.id),
            Scope::Team(r) => Scope::Team(App::resolve_ref::<Team>(&mut m, Kind::Team, "scope/id", &r).await?.value.id),
            Scope::Service(r) => Scope::Service(App::resolve_ref::<Service>(&mut m, Kind::Service, "scope/id", &r).await?.value.id),
            Scope::Environment(r) => {
                Scope::Environment(App::resolve_ref::<Environment>(&mut m, Kind::Environment, "scope/id", &r).await?.value.id)
            }
        };
        let existing: Vec<RoleBinding> = m.list(&ListQuery::all(Kind::RoleBinding).with_parent(&user.id)).await?;
        if let Some(same) = existing.iter().find(|b| b.role == req.role && b.scope == scope) {
            return Err(AppError::Conflict {
                code: "duplicate",
                detail: format!("{} already holds {} at {} (binding {})", user.username, req.role.as_str(), scope.describe(), same.id),
            });
        }
        let binding = RoleBinding { id: new_id(Kind::RoleBinding), user_id: user.id.clone(), role: req.role, scope, created_at: m.now };
        let version = m
            .insert(
                "role_binding.create",
                Kind::RoleBinding,
                &binding.id,
                Placement { parent: Some(user.id), ..Default::default() },
                &binding,
            )
            .await?;
        let out = Versioned { version, value: binding };
        m.commit(201, &out.value).await?;
        self.auth_cache.clear();
        Ok(out)
    }

    pub async fn delete_role_binding(&self, ctx: &RequestContext, id: &str) -> AppResult<()> {
        ctx.actor.require(Permission::ManageAccess, &ResourceScopes::organization())?;
        let mut m = Mutation::begin(self, ctx).await?;
        let binding: Versioned<RoleBinding> = m.get(Kind::RoleBinding, id).await?;
        m.delete("role_binding.delete", Kind::RoleBinding, id, binding.version, &binding.value).await?;
        m.commit(204, &serde_json::Value::Null).await?;
        self.auth_cache.clear();
        Ok(())
    }
}

async fn issue_token(
    m: &mut Mutation<'_>,
    user: &User,
    name: String,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
) -> AppResult<IssuedToken> {
    let secret = generate_secret()?;
    let token = Token {
        id: new_id(Kind::Token),
        user_id: user.id.clone(),
        name,
        prefix: secret.chars().take(12).collect(),
        created_at: m.now,
        expires_at,
        revoked_at: None,
        last_used_at: None,
    };
    m.insert(
        "token.create",
        Kind::Token,
        &token.id,
        Placement { key: Some(hash_token(&secret)), parent: Some(user.id.clone()), state: Some("active".into()) },
        &token,
    )
    .await?;
    Ok(IssuedToken { token, secret })
}
