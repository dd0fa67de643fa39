//! Identity and access: users, API tokens, role bindings, logging in.

use super::args::{object, parse_scope, parse_time, read_password, time_text, Idempotency, PageArgs};
use super::catalog::role_parser;
use super::common::{create, etag_row};
use super::error::CliError;
use super::http::{Api, Reply};
use super::output::{cell, col, colf, detail, emit, lookup, resource, table, text_at, Col, Fmt};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

const USER_COLS: &[Col] = &[
    col("id", "id"),
    col("username", "username"),
    col("name", "display_name"),
    col("email", "email"),
    colf("disabled", "disabled", Fmt::YesNo),
    colf("created", "created_at", Fmt::Time),
];

const TOKEN_COLS: &[Col] = &[
    col("id", "id"),
    col("name", "name"),
    col("prefix", "prefix"),
    col("user", "user_id"),
    colf("created", "created_at", Fmt::Time),
    colf("expires", "expires_at", Fmt::Time),
    colf("last used", "last_used_at", Fmt::Time),
    colf("revoked", "revoked_at", Fmt::Time),
];

const BINDING_COLS: &[Col] = &[
    col("id", "id"),
    col("user", "user_id"),
    col("role", "role"),
    colf("scope", "scope", Fmt::Scope),
    colf("created", "created_at", Fmt::Time),
];

#[derive(clap::Subcommand, Debug)]
pub enum UsersCmd {
    /// List users
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one user (by id or username)
    Get { id: String },
    /// Show the user the token belongs to
    Me,
    /// Create a user
    Create {
        /// Login name
        #[arg(long)]
        username: String,
        /// Name shown to people
        #[arg(long, default_value = "")]
        display_name: String,
        /// E-mail address
        #[arg(long)]
        email: Option<String>,
        /// Read a password (at least 12 characters) from standard input, to allow `login`
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        idempotency: Idempotency,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum TokensCmd {
    /// List API tokens (yours, or another user's for admins)
    List {
        /// Another user's tokens (id or username; admins only)
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Create an API token; its secret is printed once
    Create {
        /// Name of the token, to recognise it in lists
        #[arg(long)]
        name: String,
        /// For another user (id or username; admins only)
        #[arg(long)]
        user: Option<String>,
        /// When the token stops working (RFC 3339 or YYYY-MM-DD)
        #[arg(long, value_parser = parse_time)]
        expires_at: Option<DateTime<Utc>>,
        #[command(flatten)]
        idempotency: Idempotency,
    },
    /// Revoke an API token
    Revoke { id: String },
}

#[derive(clap::Subcommand, Debug)]
pub enum RoleBindingsCmd {
    /// List role bindings
    List {
        /// Only this user's bindings (id or username)
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Grant a role to a user in a scope
    Create {
        /// User id or username
        #[arg(long)]
        user: String,
        /// Role to grant
        #[arg(long, value_parser = role_parser())]
        role: String,
        /// organization, or domain:ID, team:ID, service:ID, environment:ID
        #[arg(long, value_parser = parse_scope)]
        scope: Value,
        #[command(flatten)]
        idempotency: Idempotency,
    },
    /// Remove a role binding
    Delete { id: String },
}

pub async fn users(api: &Api, cmd: UsersCmd) -> Result<(), CliError> {
    match cmd {
        UsersCmd::List { page } => {
            let list = api.list(&["users"], &[], &page).await?;
            list.print(api, "users", |items| table(items, USER_COLS))
        }
        UsersCmd::Get { id } => show_user(api, &["users", &id]).await,
        UsersCmd::Me => show_user(api, &["users", "me"]).await,
        UsersCmd::Create { username, display_name, email, password_stdin, idempotency } => {
            let password = if password_stdin { Some(read_password("--password-stdin")?) } else { None };
            let body = object(vec![
                ("username", Some(json!(username))),
                ("display_name", Some(json!(display_name))),
                ("email", email.map(|e| json!(e))),
                ("password", password.map(|p| json!(p))),
            ]);
            let key = idempotency.idempotency_key.as_deref();
            create(api, &["users"], body, key, "user", "username").await?;
            Ok(())
        }
    }
}

async fn show_user(api: &Api, segments: &[&str]) -> Result<(), CliError> {
    let reply = api.get(segments).send().await?;
    if reply.print_json(api)? {
        return Ok(());
    }
    let body = resource(&reply.body);
    // `me` may carry the user beside its role bindings.
    let user = lookup(body, "user").filter(|u| u.is_object()).unwrap_or(body);
    let mut out = detail(user, USER_COLS, &etag_row(&reply));
    let bindings = lookup(body, "role_bindings").or_else(|| lookup(body, "bindings"));
    if let Some(bindings) = bindings.and_then(Value::as_array).filter(|b| !b.is_empty()) {
        out.push_str("\n\nRole bindings:\n");
        out.push_str(&table(bindings, BINDING_COLS));
    }
    emit(&out)
}

pub async fn tokens(api: &Api, cmd: TokensCmd) -> Result<(), CliError> {
    match cmd {
        TokensCmd::List { user, page } => {
            let list = api.list(&["tokens"], &[("user", user)], &page).await?;
            list.print(api, "tokens", |items| table(items, TOKEN_COLS))
        }
        TokensCmd::Create { name, user, expires_at, idempotency } => {
            let body = object(vec![
                ("name", Some(json!(name))),
                ("user", user.map(|u| json!(u))),
                ("expires_at", expires_at.map(|t| json!(time_text(&t)))),
            ]);
            let reply = api.post(&["tokens"], body).idempotency_key(idempotency.idempotency_key.as_deref()).send().await?;
            print_issued(api, &reply, "Created token")
        }
        TokensCmd::Revoke { id } => {
            let reply = api.delete(&["tokens", &id]).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            emit(&format!("Revoked token {id}"))
        }
    }
}

pub async fn role_bindings(api: &Api, cmd: RoleBindingsCmd) -> Result<(), CliError> {
    match cmd {
        RoleBindingsCmd::List { user, page } => {
            let list = api.list(&["role-bindings"], &[("user", user)], &page).await?;
            list.print(api, "role bindings", |items| table(items, BINDING_COLS))
        }
        RoleBindingsCmd::Create { user, role, scope, idempotency } => {
            let body = json!({ "user": user, "role": role, "scope": scope });
            let reply = api.post(&["role-bindings"], body).idempotency_key(idempotency.idempotency_key.as_deref()).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            let b = resource(&reply.body);
            emit(&format!(
                "Granted {} to {} in {} ({})",
                text_at(b, "role"),
                text_at(b, "user_id"),
                cell(lookup(b, "scope"), Fmt::Scope),
                text_at(b, "id")
            ))
        }
        RoleBindingsCmd::Delete { id } => {
            let reply = api.delete(&["role-bindings", &id]).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            emit(&format!("Deleted role binding {id}"))
        }
    }
}

/// `login`: exchanges a username and a password (from standard input) for a token.
pub async fn login(api: &Api, username: String, token_name: Option<String>) -> Result<(), CliError> {
    let password = read_password("--password-stdin")?;
    let body = object(vec![
        ("username", Some(json!(username))),
        ("password", Some(json!(password))),
        ("token_name", token_name.map(|n| json!(n))),
    ]);
    let reply = api.post(&["auth", "login"], body).send().await?;
    print_issued(api, &reply, &format!("Logged in as {username}; created token"))
}

/// Prints a newly issued token: its secret prominently, once.
fn print_issued(api: &Api, reply: &Reply, headline: &str) -> Result<(), CliError> {
    if reply.print_json(api)? {
        return Ok(());
    }
    let token = lookup(&reply.body, "token").unwrap_or(&Value::Null);
    let secret = lookup(&reply.body, "secret").and_then(Value::as_str);
    let Some(secret) = secret.map(|s| cell(Some(&json!(s)), Fmt::Text)) else {
        return Err(CliError::other("the server's answer carries no token secret"));
    };
    emit(&format!(
        "{headline} {} ({}).\n\n\
         The secret is shown only this once; store it now:\n\n    {secret}\n\n\
         To use it:\n\n    export SIGNALBOX_TOKEN={secret}",
        text_at(token, "name"),
        text_at(token, "id"),
    ))
}
