//! The shapes most commands share: show one resource, create one, change one.

use super::error::CliError;
use super::http::{Api, Reply};
use super::output::{detail, emit, resource, text_at, Col};
use serde_json::Value;

/// `get`: one resource as a detail view (with its ETag), or its JSON.
pub async fn show(api: &Api, segments: &[&str], rows: &[Col]) -> Result<(), CliError> {
    let reply = api.get(segments).send().await?;
    if reply.print_json(api)? {
        return Ok(());
    }
    emit(&detail(resource(&reply.body), rows, &etag_row(&reply)))
}

/// The `etag:` row of a detail view, when the server sent one.
pub fn etag_row(reply: &Reply) -> Vec<(&'static str, String)> {
    reply.etag.iter().map(|e| ("etag", e.clone())).collect()
}

/// `create`: POSTs `body` and confirms with the new resource's label and id.
pub async fn create(
    api: &Api,
    segments: &[&str],
    body: Value,
    idempotency_key: Option<&str>,
    noun: &str,
    label: &str,
) -> Result<Reply, CliError> {
    let reply = api.post(segments, body).idempotency_key(idempotency_key).send().await?;
    if !reply.print_json(api)? {
        confirm(&reply, "Created", noun, label)?;
    }
    Ok(reply)
}

/// `update`: PATCHes `body` (refusing an empty change) and confirms.
pub async fn update(api: &Api, segments: &[&str], body: Value, if_match: Option<&str>, noun: &str, label: &str) -> Result<Reply, CliError> {
    if body.as_object().is_some_and(|o| o.is_empty()) {
        return Err(CliError::input("update", "nothing to change; give at least one field (see --help)"));
    }
    let reply = api.patch(segments, body).if_match(if_match).send().await?;
    if !reply.print_json(api)? {
        confirm(&reply, "Updated", noun, label)?;
    }
    Ok(reply)
}

/// `Created service api (svc_…)`.
pub fn confirm(reply: &Reply, verb: &str, noun: &str, label: &str) -> Result<(), CliError> {
    let r = resource(&reply.body);
    let name = text_at(r, label);
    let id = text_at(r, "id");
    let mut line = if id == "-" || id == name { format!("{verb} {noun} {name}") } else { format!("{verb} {noun} {name} ({id})") };
    if let Some(etag) = &reply.etag {
        line.push_str(&format!(", etag {etag}"));
    }
    if reply.replayed {
        line.push_str(" (a repeat of an earlier request with this idempotency key: nothing changed)");
    }
    emit(&line)
}

/// Reads a resource for a read-modify-write update: its body and ETag.
pub async fn current(api: &Api, segments: &[&str]) -> Result<(Value, Option<String>), CliError> {
    let reply = api.get(segments).send().await?;
    Ok((resource(&reply.body).clone(), reply.etag))
}
