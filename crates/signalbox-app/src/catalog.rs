//! Domains, teams, services and environments: the organization's map.

use serde::de::DeserializeOwned;
use signalbox_domain::access::{Permission, ResourceScopes, Scope};
use signalbox_domain::model::{Domain, Environment, EnvironmentOwner, Kind, Protection, Service, Team, Tier, User};
use signalbox_domain::validate::{parse_url, require_text, Name};
use signalbox_domain::Invalid;
use signalbox_store::ListQuery;

use crate::error::{AppError, AppResult};
use crate::mutation::{decode, Mutation, Placement};
use crate::requests::*;
use crate::{encode_cursor, new_id, App, PageRequest, Paged, RequestContext, Versioned};

impl App {
    /// Reads one resource by id or natural key, requiring `read`.
    pub async fn get_resource<T: DeserializeOwned>(&self, ctx: &RequestContext, kind: Kind, id_or_key: &str) -> AppResult<Versioned<T>> {
        ctx.actor.require(Permission::Read, &ResourceScopes::organization())?;
        let record = self.store.get(kind, id_or_key).await?.ok_or_else(|| AppError::not_found(kind, id_or_key))?;
        decode(&record)
    }

    /// Lists resources with cursor paging, requiring `read`.
    pub async fn list_resources<T: DeserializeOwned>(
        &self,
        ctx: &RequestContext,
        query: ListQuery,
        page: &PageRequest,
    ) -> AppResult<Paged<T>> {
        ctx.actor.require(Permission::Read, &ResourceScopes::organization())?;
        self.list_page(query, page).await
    }

    /// Lists without a permission check; callers have done theirs.
    pub(crate) async fn list_page<T: DeserializeOwned>(&self, mut query: ListQuery, page: &PageRequest) -> AppResult<Paged<T>> {
        let (limit, after) = page.resolve()?;
        query.limit = limit;
        query.after_seq = after;
        let page = self.store.list(&query).await?;
        let items = page.items.iter().map(|r| decode(r).map(|v| v.value)).collect::<AppResult<Vec<T>>>()?;
        Ok(Paged { items, next_cursor: page.next_after_seq.map(encode_cursor) })
    }

    /// Resolves an id-or-name reference given in a request field to the stored resource.
    pub(crate) async fn resolve_ref<T: DeserializeOwned>(
        m: &mut Mutation<'_>,
        kind: Kind,
        field: &str,
        reference: &str,
    ) -> AppResult<Versioned<T>> {
        m.find(kind, reference).await?.ok_or_else(|| AppError::invalid(field, format!("no {kind} with id or name {reference:?}")))
    }

    pub async fn create_domain(&self, ctx: &RequestContext, req: CreateDomain) -> AppResult<Versioned<Domain>> {
        ctx.actor.require(Permission::ManageCatalog, &ResourceScopes::organization())?;
        let name = Name::parse("name", &req.name)?;
        let mut m = Mutation::begin(self, ctx).await?;
        let domain = Domain { id: new_id(Kind::Domain), name: name.to_string(), description: req.description, created_at: m.now };
        let version = m
            .insert("domain.create", Kind::Domain, &domain.id, Placement { key: Some(domain.name.clone()), ..Default::default() }, &domain)
            .await?;
        let out = Versioned { version, value: domain };
        m.commit(201, &out.value).await?;
        Ok(out)
    }

    pub async fn create_team(&self, ctx: &RequestContext, req: CreateTeam) -> AppResult<Versioned<Team>> {
        let name = Name::parse("name", &req.name)?;
        let mut m = Mutation::begin(self, ctx).await?;
        let domain: Domain = App::resolve_ref(&mut m, Kind::Domain, "domain", &req.domain).await?.value;
        ctx.actor.require(Permission::ManageCatalog, &ResourceScopes::organization().with(Scope::Domain(domain.id.clone())))?;
        let team = Team {
            id: new_id(Kind::Team),
            name: name.to_string(),
            domain_id: domain.id.clone(),
            description: req.description,
            created_at: m.now,
        };
        let version = m
            .insert(
                "team.create",
                Kind::Team,
                &team.id,
                Placement { key: Some(team.name.clone()), parent: Some(domain.id), state: None },
                &team,
            )
            .await?;
        let out = Versioned { version, value: team };
        m.commit(201, &out.value).await?;
        Ok(out)
    }

    pub async fn create_service(&self, ctx: &RequestContext, req: CreateService) -> AppResult<Versioned<Service>> {
        let mut errors = Invalid::default();
        let name = errors.check(Name::parse("name", &req.name));
        let repo_url = match &req.repo_url {
            Some(u) => errors.check(parse_url("repo_url", u)),
            None => None,
        };
        for (i, owner) in req.owners.iter().enumerate() {
            errors.check(require_text(&format!("owners/{i}"), owner, 200));
        }
        errors.into_result()?;
        let name = name.expect("checked above");
        let mut m = Mutation::begin(self, ctx).await?;
        let team: Team = App::resolve_ref(&mut m, Kind::Team, "team", &req.team).await?.value;
        ctx.actor.require(
            Permission::ManageCatalog,
            &ResourceScopes::organization().with(Scope::Domain(team.domain_id.clone())).with(Scope::Team(team.id.clone())),
        )?;
        let service = Service {
            id: new_id(Kind::Service),
            name: name.to_string(),
            team_id: team.id.clone(),
            domain_id: team.domain_id.clone(),
            repo_url,
            repository: None,
            owners: req.owners,
            criticality: req.criticality,
            data_classification: req.data_classification,
            created_at: m.now,
        };
        let version = m
            .insert(
                "service.create",
                Kind::Service,
                &service.id,
                Placement { key: Some(service.name.clone()), parent: Some(team.id), state: None },
                &service,
            )
            .await?;
        let out = Versioned { version, value: service };
        m.commit(201, &out.value).await?;
        Ok(out)
    }

    pub async fn update_service(
        &self,
        ctx: &RequestContext,
        id: &str,
        if_match: Option<i64>,
        req: UpdateService,
    ) -> AppResult<Versioned<Service>> {
        let mut m = Mutation::begin(self, ctx).await?;
        let current: Versioned<Service> = m.get(Kind::Service, id).await?;
        ctx.actor.require(Permission::ManageCatalog, &service_scopes(&current.value))?;
        check_if_match(Kind::Service, &current.value.id, if_match, current.version)?;
        let mut next = current.value.clone();
        if let Some(url) = req.repo_url {
            next.repo_url = Some(parse_url("repo_url", &url)?);
        }
        if let Some(owners) = req.owners {
            next.owners = owners;
        }
        if let Some(c) = req.criticality {
            next.criticality = c;
        }
        if let Some(d) = req.data_classification {
            next.data_classification = d;
        }
        let place = Placement { key: Some(next.name.clone()), parent: Some(next.team_id.clone()), state: None };
        let version = m.update("service.update", Kind::Service, &next.id.clone(), place, &current, &next).await?;
        let out = Versioned { version, value: next };
        m.commit(200, &out.value).await?;
        Ok(out)
    }

    pub async fn create_environment(&self, ctx: &RequestContext, req: CreateEnvironment) -> AppResult<Versioned<Environment>> {
        ctx.actor.require(Permission::ManageCatalog, &ResourceScopes::organization())?;
        let mut errors = Invalid::default();
        let name = errors.check(Name::parse("name", &req.name));
        validate_tier(&mut errors, &req.tier);
        validate_config(&mut errors, &req.config);
        let mut m = Mutation::begin(self, ctx).await?;
        let owner = match &req.owner {
            Some(o) => resolve_owner(&mut m, &mut errors, o).await?,
            None => None,
        };
        check_booking_approval(&mut errors, &req.protection, req.owner.is_some());
        errors.into_result()?;
        let env = Environment {
            id: new_id(Kind::Environment),
            name: name.expect("checked").to_string(),
            tier: req.tier,
            position: req.position,
            protection: req.protection,
            config: req.config,
            owner,
            created_at: m.now,
        };
        let version = m
            .insert("environment.create", Kind::Environment, &env.id, Placement { key: Some(env.name.clone()), ..Default::default() }, &env)
            .await?;
        let out = Versioned { version, value: env };
        m.commit(201, &out.value).await?;
        Ok(out)
    }

    pub async fn update_environment(
        &self,
        ctx: &RequestContext,
        id: &str,
        if_match: Option<i64>,
        req: UpdateEnvironment,
    ) -> AppResult<Versioned<Environment>> {
        let mut m = Mutation::begin(self, ctx).await?;
        let current: Versioned<Environment> = m.get(Kind::Environment, id).await?;
        ctx.actor.require(Permission::ManageCatalog, &ResourceScopes::organization().with(Scope::Environment(current.value.id.clone())))?;
        check_if_match(Kind::Environment, &current.value.id, if_match, current.version)?;
        let mut next = current.value.clone();
        let mut errors = Invalid::default();
        if let Some(t) = req.tier {
            validate_tier(&mut errors, &t);
            next.tier = t;
        }
        if let Some(p) = req.position {
            next.position = p;
        }
        if let Some(p) = req.protection {
            next.protection = p;
        }
        if let Some(c) = req.config {
            validate_config(&mut errors, &c);
            next.config = c;
        }
        let mut has_owner = next.owner.is_some();
        match &req.owner {
            Some(Some(o)) => {
                next.owner = resolve_owner(&mut m, &mut errors, o).await?;
                has_owner = true;
            }
            Some(None) => {
                next.owner = None;
                has_owner = false;
            }
            None => {}
        }
        check_booking_approval(&mut errors, &next.protection, has_owner);
        errors.into_result()?;
        let place = Placement { key: Some(next.name.clone()), ..Default::default() };
        let version = m.update("environment.update", Kind::Environment, &next.id.clone(), place, &current, &next).await?;
        let out = Versioned { version, value: next };
        m.commit(200, &out.value).await?;
        Ok(out)
    }
}

/// An environment owner named by id or name, stored by id; an unknown one is an error on
/// `owner/team` or `owner/user`.
async fn resolve_owner(m: &mut Mutation<'_>, errors: &mut Invalid, owner: &EnvironmentOwner) -> AppResult<Option<EnvironmentOwner>> {
    Ok(match owner {
        EnvironmentOwner::Team(r) => match m.find::<Team>(Kind::Team, r).await? {
            Some(t) => Some(EnvironmentOwner::Team(t.value.id)),
            None => {
                errors.push("owner/team", format!("no team with id or name {r:?}; create it first or name an existing one"));
                None
            }
        },
        EnvironmentOwner::User(r) => match m.find::<User>(Kind::User, r).await? {
            Some(u) => Some(EnvironmentOwner::User(u.value.id)),
            None => {
                errors.push("owner/user", format!("no user with id or username {r:?}; name an existing user"));
                None
            }
        },
    })
}

/// Booking approval needs someone to approve: an owner (an unknown one is reported on its own).
fn check_booking_approval(errors: &mut Invalid, protection: &Protection, has_owner: bool) {
    if protection.booking_requires_approval && !has_owner {
        errors.push(
            "protection/booking_requires_approval",
            "bookings can only require approval when the environment has an owner to approve them: set \"owner\" to {\"team\": …} or {\"user\": …}",
        );
    }
}

fn validate_tier(errors: &mut Invalid, tier: &Tier) {
    if let Tier::Custom(name) = tier {
        errors.check(Name::parse("tier/custom", name));
    }
}

fn validate_config(errors: &mut Invalid, config: &std::collections::BTreeMap<String, String>) {
    for key in config.keys() {
        let ok = !key.is_empty() && key.len() <= 128 && key.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !ok {
            errors.push(format!("config/{key}"), "config keys use letters, digits, '_', '.' and '-' (at most 128 characters)");
        }
    }
}

/// The scopes a service sits in: organization, its domain, its team, itself.
pub fn service_scopes(service: &Service) -> ResourceScopes {
    ResourceScopes::organization()
        .with(Scope::Domain(service.domain_id.clone()))
        .with(Scope::Team(service.team_id.clone()))
        .with(Scope::Service(service.id.clone()))
}

/// Refuses when the client's `If-Match` names another version than the stored one.
pub fn check_if_match(kind: Kind, id: &str, if_match: Option<i64>, current: i64) -> AppResult<()> {
    match if_match {
        Some(expected) if expected != current => {
            Err(AppError::PreconditionFailed { kind, id: id.to_string(), expected, current: Some(current) })
        }
        _ => Ok(()),
    }
}
