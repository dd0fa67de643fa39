//! The catalog: domains, teams, services, environments.

use super::args::{object, parse_key_value, parse_tier, some_list, Idempotency, IfMatch, PageArgs, CRITICALITIES, DATA_CLASSIFICATIONS};
use super::common::{create, current, show, update};
use super::error::CliError;
use super::http::Api;
use super::output::{col, colf, table, Col, Fmt};
use clap::builder::PossibleValuesParser;
use serde_json::{json, Value};
use signalbox_domain::access::Role;

const DOMAIN_COLS: &[Col] =
    &[col("id", "id"), col("name", "name"), col("description", "description"), colf("created", "created_at", Fmt::Time)];

const TEAM_COLS: &[Col] = &[
    col("id", "id"),
    col("name", "name"),
    col("domain", "domain_id"),
    col("description", "description"),
    colf("created", "created_at", Fmt::Time),
];

const SERVICE_COLS: &[Col] = &[
    col("id", "id"),
    col("name", "name"),
    col("team", "team_id"),
    col("domain", "domain_id"),
    col("criticality", "criticality"),
    col("data", "data_classification"),
];

const SERVICE_ROWS: &[Col] = &[
    col("id", "id"),
    col("name", "name"),
    col("team", "team_id"),
    col("domain", "domain_id"),
    col("repo", "repo_url"),
    col("git repository", "repository.url"),
    col("owners", "owners"),
    col("criticality", "criticality"),
    col("data classification", "data_classification"),
    colf("created", "created_at", Fmt::Time),
];

const ENVIRONMENT_COLS: &[Col] = &[
    col("id", "id"),
    col("name", "name"),
    colf("tier", "tier", Fmt::Tier),
    col("position", "position"),
    colf("protected", "protection.protected", Fmt::YesNo),
    col("deployers", "protection.deployer_roles"),
];

const ENVIRONMENT_ROWS: &[Col] = &[
    col("id", "id"),
    col("name", "name"),
    colf("tier", "tier", Fmt::Tier),
    col("position", "position"),
    colf("protected", "protection.protected", Fmt::YesNo),
    col("deployer roles", "protection.deployer_roles"),
    col("owner team", "owner.team"),
    col("owner user", "owner.user"),
    colf("bookings need approval", "protection.booking_requires_approval", Fmt::YesNo),
    colf("config keys", "config", Fmt::Count),
    colf("created", "created_at", Fmt::Time),
];

#[derive(clap::Subcommand, Debug)]
pub enum DomainsCmd {
    /// List domains
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one domain (by id or name)
    Get { id: String },
    /// Create a domain
    Create {
        /// Unique name, e.g. payments
        #[arg(long)]
        name: String,
        /// What the domain covers
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        idempotency: Idempotency,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum TeamsCmd {
    /// List teams
    List {
        /// Only teams of this domain (id or name)
        #[arg(long)]
        domain: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one team (by id or name)
    Get { id: String },
    /// Create a team in a domain
    Create {
        /// Unique name within the organization
        #[arg(long)]
        name: String,
        /// Domain id or name
        #[arg(long)]
        domain: String,
        /// What the team does
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        idempotency: Idempotency,
    },
}

#[derive(clap::Args, Debug)]
pub struct ServiceFields {
    /// Source repository URL
    #[arg(long)]
    repo_url: Option<String>,
    /// Owner (username); repeat for several. On update, replaces the owners
    #[arg(long = "owner", value_name = "USER")]
    owners: Vec<String>,
    /// How much customers feel an outage
    #[arg(long, value_parser = PossibleValuesParser::new(CRITICALITIES))]
    criticality: Option<String>,
    /// The most sensitive data the service handles
    #[arg(long, value_parser = PossibleValuesParser::new(DATA_CLASSIFICATIONS))]
    data_classification: Option<String>,
}

impl ServiceFields {
    fn to_json(&self) -> Vec<(&'static str, Option<Value>)> {
        vec![
            ("repo_url", self.repo_url.as_ref().map(|v| json!(v))),
            ("owners", some_list(&self.owners)),
            ("criticality", self.criticality.as_ref().map(|v| json!(v))),
            ("data_classification", self.data_classification.as_ref().map(|v| json!(v))),
        ]
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum ServicesCmd {
    /// List services
    List {
        /// Only services of this team (id or name)
        #[arg(long)]
        team: Option<String>,
        /// Only services of this domain (id or name)
        #[arg(long)]
        domain: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one service (by id or name)
    Get { id: String },
    /// Create a service owned by a team
    Create {
        /// Unique name
        #[arg(long)]
        name: String,
        /// Team id or name
        #[arg(long)]
        team: String,
        #[command(flatten)]
        fields: ServiceFields,
        #[command(flatten)]
        idempotency: Idempotency,
    },
    /// Change a service; fields not given are left alone
    Update {
        /// Service id or name
        id: String,
        #[command(flatten)]
        fields: ServiceFields,
        #[command(flatten)]
        if_match: IfMatch,
    },
    /// Stop reading the service's git repository (imported changes stay)
    RemoveRepository {
        /// Service id or name
        id: String,
        #[command(flatten)]
        if_match: IfMatch,
    },
    /// Name the git repository the service is built from (release notes, change import)
    SetRepository {
        /// Service id or name
        id: String,
        /// Absolute path on the server, or a file://, https:// or ssh:// URL the server mirrors
        // Not `url`: that id is the global `--url` (the server's address).
        #[arg(value_name = "URL")]
        location: String,
        /// Monorepo package: its release tags, e.g. `api@{version}`, `web-v{version}` or a regex
        /// (default: the server's `[changelog] tag_pattern`)
        #[arg(long, value_name = "PATTERN")]
        tag_pattern: Option<String>,
        /// Monorepo package: only commits changing these paths (repeatable), e.g. `services/api/**`
        #[arg(long = "include-path", value_name = "GLOB")]
        include_paths: Vec<String>,
        #[command(flatten)]
        if_match: IfMatch,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum EnvironmentsCmd {
    /// Services × environments: what runs where, by whom, and rollouts in progress
    Matrix,
    /// Configuration drift between two environments (missing, extra, different keys)
    Parity {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        /// A key expected to differ (compared for presence only); repeatable
        #[arg(long = "ignore", value_name = "KEY")]
        ignore: Vec<String>,
    },
    /// List environments in promotion order
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one environment (by id or name)
    Get { id: String },
    /// Create an environment
    Create {
        /// Unique name, e.g. staging
        #[arg(long)]
        name: String,
        /// dev, test, staging, prod, or the name of a custom tier
        #[arg(long, value_parser = parse_tier)]
        tier: Value,
        /// Position in the promotion path; lower goes first (dev=10, test=20, staging=30, prod=40)
        #[arg(long, allow_negative_numbers = true)]
        position: i32,
        /// Only accept deployments from releases that went through approval
        #[arg(long)]
        protected: bool,
        /// Role allowed to deploy here; repeat for several (default: release managers and admins)
        #[arg(long = "deployer-role", value_name = "ROLE", value_parser = role_parser())]
        deployer_roles: Vec<String>,
        /// Configuration entry KEY=VALUE (a value or a `secret://` reference); repeatable
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        config: Vec<(String, String)>,
        #[command(flatten)]
        owner: OwnerArgs,
        /// Bookings start pending until the owner (or an admin) approves them; needs an owner
        #[arg(long)]
        booking_requires_approval: bool,
        #[command(flatten)]
        idempotency: Idempotency,
    },
    /// Change an environment; fields not given are left alone
    Update {
        /// Environment id or name
        id: String,
        /// dev, test, staging, prod, or the name of a custom tier
        #[arg(long, value_parser = parse_tier)]
        tier: Option<Value>,
        /// Position in the promotion path; lower goes first
        #[arg(long, allow_negative_numbers = true)]
        position: Option<i32>,
        /// Set or clear protection
        #[arg(long, value_name = "true|false")]
        protected: Option<bool>,
        /// Replaces the roles allowed to deploy here; repeatable
        #[arg(long = "deployer-role", value_name = "ROLE", value_parser = role_parser())]
        deployer_roles: Vec<String>,
        /// Sets one configuration entry, keeping the others; repeatable
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        config: Vec<(String, String)>,
        /// Removes one configuration entry; repeatable
        #[arg(long = "unset-config", value_name = "KEY")]
        unset_config: Vec<String>,
        #[command(flatten)]
        owner: OwnerArgs,
        /// Removes the owner
        #[arg(long, conflicts_with_all = ["owner_team", "owner_user"])]
        clear_owner: bool,
        /// Whether bookings need the owner's approval
        #[arg(long, value_name = "true|false")]
        booking_requires_approval: Option<bool>,
        #[command(flatten)]
        if_match: IfMatch,
    },
}

/// An environment's owner: a team or a user.
#[derive(clap::Args, Debug)]
pub struct OwnerArgs {
    /// The owning team (id or name): its members approve bookings
    #[arg(long, conflicts_with = "owner_user")]
    owner_team: Option<String>,
    /// The owning user (id or username)
    #[arg(long)]
    owner_user: Option<String>,
}

impl OwnerArgs {
    fn json(&self) -> Option<Value> {
        match (&self.owner_team, &self.owner_user) {
            (Some(t), _) => Some(json!({"team": t})),
            (_, Some(u)) => Some(json!({"user": u})),
            _ => None,
        }
    }
}

pub fn role_parser() -> PossibleValuesParser {
    PossibleValuesParser::new(Role::ALL.map(Role::as_str))
}

pub async fn domains(api: &Api, cmd: DomainsCmd) -> Result<(), CliError> {
    match cmd {
        DomainsCmd::List { page } => {
            let list = api.list(&["domains"], &[], &page).await?;
            list.print(api, "domains", |items| table(items, DOMAIN_COLS))
        }
        DomainsCmd::Get { id } => show(api, &["domains", &id], DOMAIN_COLS).await,
        DomainsCmd::Create { name, description, idempotency } => {
            let body = json!({ "name": name, "description": description });
            create(api, &["domains"], body, idempotency.idempotency_key.as_deref(), "domain", "name").await?;
            Ok(())
        }
    }
}

pub async fn teams(api: &Api, cmd: TeamsCmd) -> Result<(), CliError> {
    match cmd {
        TeamsCmd::List { domain, page } => {
            let list = api.list(&["teams"], &[("domain", domain)], &page).await?;
            list.print(api, "teams", |items| table(items, TEAM_COLS))
        }
        TeamsCmd::Get { id } => show(api, &["teams", &id], TEAM_COLS).await,
        TeamsCmd::Create { name, domain, description, idempotency } => {
            let body = json!({ "name": name, "domain": domain, "description": description });
            create(api, &["teams"], body, idempotency.idempotency_key.as_deref(), "team", "name").await?;
            Ok(())
        }
    }
}

pub async fn services(api: &Api, cmd: ServicesCmd) -> Result<(), CliError> {
    match cmd {
        ServicesCmd::List { team, domain, page } => {
            let list = api.list(&["services"], &[("team", team), ("domain", domain)], &page).await?;
            list.print(api, "services", |items| table(items, SERVICE_COLS))
        }
        ServicesCmd::Get { id } => show(api, &["services", &id], SERVICE_ROWS).await,
        ServicesCmd::Create { name, team, fields, idempotency } => {
            let mut body = vec![("name", Some(json!(name))), ("team", Some(json!(team)))];
            body.extend(fields.to_json());
            let key = idempotency.idempotency_key.as_deref();
            create(api, &["services"], object(body), key, "service", "name").await?;
            Ok(())
        }
        ServicesCmd::Update { id, fields, if_match } => {
            let body = object(fields.to_json());
            update(api, &["services", &id], body, if_match.if_match.as_deref(), "service", "name").await?;
            Ok(())
        }
        ServicesCmd::RemoveRepository { id, if_match } => {
            let reply = api.delete(&["services", &id, "repository"]).if_match(if_match.if_match.as_deref()).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            super::output::emit(&format!("{id} no longer names a git repository"))
        }
        ServicesCmd::SetRepository { id, location, tag_pattern, include_paths, if_match } => {
            super::notes::set_repository(api, &id, &location, tag_pattern.as_deref(), &include_paths, if_match.if_match.as_deref()).await
        }
    }
}

pub async fn environments(api: &Api, cmd: EnvironmentsCmd) -> Result<(), CliError> {
    match cmd {
        EnvironmentsCmd::List { page } => {
            let list = api.list(&["environments"], &[], &page).await?;
            list.print(api, "environments", |items| table(items, ENVIRONMENT_COLS))
        }
        EnvironmentsCmd::Get { id } => show(api, &["environments", &id], ENVIRONMENT_ROWS).await,
        EnvironmentsCmd::Matrix => super::promotion::matrix(api).await,
        EnvironmentsCmd::Parity { from, to, ignore } => super::promotion::parity(api, from, to, ignore).await,
        EnvironmentsCmd::Create {
            name,
            tier,
            position,
            protected,
            deployer_roles,
            config,
            owner,
            booking_requires_approval,
            idempotency,
        } => {
            let config: serde_json::Map<String, Value> = config.into_iter().map(|(k, v)| (k, json!(v))).collect();
            let body = json!({
                "name": name,
                "tier": tier,
                "position": position,
                "protection": { "protected": protected, "deployer_roles": deployer_roles, "booking_requires_approval": booking_requires_approval },
                "config": config,
                "owner": owner.json(),
            });
            let key = idempotency.idempotency_key.as_deref();
            create(api, &["environments"], body, key, "environment", "name").await?;
            Ok(())
        }
        EnvironmentsCmd::Update {
            id,
            tier,
            position,
            protected,
            deployer_roles,
            config,
            unset_config,
            owner,
            clear_owner,
            booking_requires_approval,
            if_match,
        } => {
            let mut if_match = if_match.if_match;
            let touches_protection = protected.is_some() || !deployer_roles.is_empty() || booking_requires_approval.is_some();
            let touches_config = !config.is_empty() || !unset_config.is_empty();
            let mut protection = None;
            let mut new_config = None;
            if touches_protection || touches_config {
                // Protection and config are replaced whole by the server: read them, change
                // what was asked, and write back only if nobody changed them meanwhile.
                let (env, etag) = current(api, &["environments", &id]).await?;
                if if_match.is_none() {
                    if_match = etag;
                }
                if touches_protection {
                    let mut p = env.get("protection").cloned().unwrap_or_else(|| json!({}));
                    if !p.is_object() {
                        p = json!({});
                    }
                    if let Some(map) = p.as_object_mut() {
                        if let Some(flag) = protected {
                            map.insert("protected".into(), json!(flag));
                        }
                        if !deployer_roles.is_empty() {
                            map.insert("deployer_roles".into(), json!(deployer_roles));
                        }
                        if let Some(flag) = booking_requires_approval {
                            map.insert("booking_requires_approval".into(), json!(flag));
                        }
                    }
                    protection = Some(p);
                }
                if touches_config {
                    let mut map = env.get("config").and_then(Value::as_object).cloned().unwrap_or_default();
                    for key in &unset_config {
                        map.remove(key);
                    }
                    for (k, v) in config {
                        map.insert(k, json!(v));
                    }
                    new_config = Some(Value::Object(map));
                }
            }
            let mut body =
                object(vec![("tier", tier), ("position", position.map(|p| json!(p))), ("protection", protection), ("config", new_config)]);
            if let (Some(map), Some(o)) = (body.as_object_mut(), owner.json()) {
                map.insert("owner".into(), o);
            } else if let (Some(map), true) = (body.as_object_mut(), clear_owner) {
                map.insert("owner".into(), Value::Null);
            }
            update(api, &["environments", &id], body, if_match.as_deref(), "environment", "name").await?;
            Ok(())
        }
    }
}
