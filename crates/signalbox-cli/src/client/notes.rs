//! Versions in the server from the command line (issue 5, part 4): a service's repository,
//! `signalbox release import-changes` and `signalbox release notes`.

use super::error::CliError;
use super::http::Api;
use super::output::{col, emit, note, table, Col};
use serde_json::json;

const RANGE_COLS: &[Col] = &[
    col("service", "service"),
    col("version", "version"),
    col("was", "previous_version"),
    col("commits", "commits"),
    col("range", "basis"),
];

/// `signalbox services set-repository NAME URL [--tag-pattern P] [--include-path GLOB…]`.
pub async fn set_repository(
    api: &Api,
    service: &str,
    url: &str,
    tag_pattern: Option<&str>,
    include_paths: &[String],
    if_match: Option<&str>,
) -> Result<(), CliError> {
    let body = json!({"url": url, "tag_pattern": tag_pattern, "include_paths": include_paths});
    let reply = api.put(&["services", service, "repository"], body).if_match(if_match).send().await?;
    if reply.print_json(api)? {
        return Ok(());
    }
    let mut package = Vec::new();
    if let Some(p) = reply.body["repository"]["tag_pattern"].as_str() {
        package.push(format!("tags {p}"));
    }
    if let Some(paths) = reply.body["repository"]["include_paths"].as_array().filter(|a| !a.is_empty()) {
        package.push(format!("paths {}", paths.iter().filter_map(|p| p.as_str()).collect::<Vec<_>>().join(", ")));
    }
    let package = if package.is_empty() { String::new() } else { format!(" ({})", package.join("; ")) };
    emit(&format!("{} now reads its history from {}{}", service, url, package))
}

/// `signalbox release import-changes R-12 [--environment ENV]`.
pub async fn import_changes(api: &Api, release: &str, environment: Option<String>) -> Result<(), CliError> {
    let reply = api.post(&["releases", release, "changes", "import"], json!({})).query("environment", environment).send().await?;
    if reply.print_json(api)? {
        return Ok(());
    }
    let b = &reply.body;
    let components = b["components"].as_array().cloned().unwrap_or_default();
    emit(&table(&components, RANGE_COLS))?;
    note(&format!(
        "{}: {} changes linked ({} new records), {} already linked; revision {}",
        b["release"].as_str().unwrap_or(release),
        b["linked"],
        b["created"],
        b["already_linked"],
        b["revision"]
    ));
    Ok(())
}

/// `signalbox release notes R-12 [--format markdown|html|json] [--environment ENV]`.
pub async fn notes(api: &Api, release: &str, format: Option<String>, environment: Option<String>) -> Result<(), CliError> {
    let format = format.or_else(|| api.json().then(|| "json".to_string()));
    let response = api.get(&["releases", release, "notes"]).query("format", format).query("environment", environment).send_raw().await?;
    let text = response.text().await.map_err(|e| CliError::new(super::error::exit::FAILURE, format!("reading the notes: {e}")))?;
    emit(text.trim_end())
}
