//! Release notes (issue 5, part 4; docs/VERSIONING.md "In the server"): a release's changes
//! categorized with the changelog's groups, breaking changes first, the technical impact,
//! rollback steps and backout criteria from the release's documents, and its components with
//! versions and digests. Rendered as Markdown, HTML (minijinja with HTML auto-escaping) or JSON.
//!
//! **Where the changes come from.** The changes linked to the release (imported from git or
//! recorded). A release with none, which is not yet imported or is locked after approval, gets
//! its notes read live from the repositories (the same ranges an import would use), without
//! writing anything: `GET` stays a read. `source` says which.
//!
//! **Versioned with the release.** The notes carry the release's revision (its ETag) and
//! content digest, and the response's ETag is a digest of the rendered notes, so a consumer
//! can tell which revision it saw.

use serde::Serialize;
use signalbox_domain::access::{Permission, ResourceScopes};
use signalbox_domain::model::{Change, Kind, Release, Service};
use signalbox_versioning::ChangelogConfig;
use std::collections::BTreeMap;
use utoipa::ToSchema;

use crate::error::{AppError, AppResult};
use crate::mutation::decode;
use crate::repositories::{change_from_entry, dedup, group_rank, ComponentRange};
use crate::{App, RequestContext, Versioned};

/// The formats notes come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotesFormat {
    Markdown,
    Html,
    Json,
}

impl NotesFormat {
    pub fn parse(raw: Option<&str>) -> AppResult<NotesFormat> {
        match raw.unwrap_or("markdown") {
            "markdown" | "md" => Ok(NotesFormat::Markdown),
            "html" => Ok(NotesFormat::Html),
            "json" => Ok(NotesFormat::Json),
            other => Err(AppError::invalid("format", format!("{other:?} is not a notes format; use markdown, html or json"))),
        }
    }
    pub fn content_type(self) -> &'static str {
        match self {
            NotesFormat::Markdown => "text/markdown; charset=utf-8",
            NotesFormat::Html => "text/html; charset=utf-8",
            NotesFormat::Json => "application/json",
        }
    }
}

/// The notes as data (the JSON format).
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct ReleaseNotes {
    pub release: NotesRelease,
    /// The environment the ranges were measured against, when one was given.
    pub environment: Option<String>,
    /// `changes` (the release's linked changes), `repository` (read live: nothing linked yet)
    /// or `none` (no linked changes and no repository to read).
    pub source: String,
    pub components: Vec<NotesComponent>,
    /// Breaking changes, also listed in their group.
    pub breaking_changes: Vec<NotesChange>,
    /// In the `[changelog] group_order`, then other groups; empty groups are left out.
    pub groups: Vec<NotesGroup>,
    /// The release's `release_notes` document, as a summary.
    pub summary: Option<String>,
    pub impact_assessment: Option<String>,
    pub rollback_plan: Option<String>,
    pub backout_criteria: Option<String>,
    pub contributors: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct NotesRelease {
    pub id: String,
    pub key: String,
    pub name: String,
    pub version: Option<String>,
    pub state: String,
    /// The release record's version (its ETag): notes change with it.
    pub revision: i64,
    pub content_digest: String,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct NotesComponent {
    pub service: String,
    pub version: String,
    pub digest: String,
    pub commit: Option<String>,
    pub previous_version: Option<String>,
    /// How the commit range was chosen (live notes), or null.
    pub basis: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct NotesChange {
    pub service: Option<String>,
    /// The commit sha, PR number or ticket key.
    pub reference: String,
    pub r#type: Option<String>,
    pub scope: Option<String>,
    pub description: String,
    pub breaking: bool,
    /// What breaks (the BREAKING CHANGE footer, or the description of a `!` commit).
    pub breaking_description: Option<String>,
    pub issues: Vec<String>,
    pub author: String,
    pub links: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct NotesGroup {
    pub name: String,
    pub changes: Vec<NotesChange>,
}

/// Rendered notes and their validator.
#[derive(Debug, Clone)]
pub struct RenderedNotes {
    pub body: String,
    pub content_type: &'static str,
    /// A strong ETag over the rendered body (quoted).
    pub etag: String,
    pub revision: i64,
}

impl App {
    /// `GET /api/v1/releases/{id}/notes?format=&environment=`.
    pub async fn release_notes(
        &self,
        ctx: &RequestContext,
        id: &str,
        format: NotesFormat,
        environment: Option<&str>,
    ) -> AppResult<RenderedNotes> {
        ctx.actor.require(Permission::Read, &ResourceScopes::organization())?;
        let release: Versioned<Release> =
            decode(&self.store.get(Kind::Release, id).await?.ok_or_else(|| AppError::not_found(Kind::Release, id))?)?;
        let notes = self.build_notes(&release, environment).await?;
        let body = render(&notes, format)?;
        let etag = {
            use sha2::Digest as _;
            format!("\"{}\"", &hex::encode(sha2::Sha256::digest(body.as_bytes()))[..32])
        };
        Ok(RenderedNotes { body, content_type: format.content_type(), etag, revision: release.version })
    }

    async fn build_notes(&self, release: &Versioned<Release>, environment: Option<&str>) -> AppResult<ReleaseNotes> {
        let config = &self.repositories.changelog;
        let mut services: BTreeMap<String, String> = BTreeMap::new();
        for c in &release.value.components {
            if let Some(r) = self.store.get(Kind::Service, &c.service_id).await? {
                let s: Service = decode(&r)?.value;
                services.insert(s.id, s.name);
            }
        }
        let (source, changes, ranges, env): (&str, Vec<Change>, Vec<ComponentRange>, Option<String>) =
            if !release.value.change_ids.is_empty() {
                let records = self.store.get_many(Kind::Change, &release.value.change_ids).await?;
                let mut by_id: BTreeMap<String, Change> = BTreeMap::new();
                for r in &records {
                    let c: Change = decode(r)?.value;
                    by_id.insert(c.id.clone(), c);
                }
                for c in by_id.values() {
                    if let Some(sid) = &c.service_id {
                        if !services.contains_key(sid) {
                            if let Some(r) = self.store.get(Kind::Service, sid).await? {
                                let s: Service = decode(&r)?.value;
                                services.insert(s.id, s.name);
                            }
                        }
                    }
                }
                // The release's order (import order: oldest first per component).
                let ordered = release.value.change_ids.iter().filter_map(|id| by_id.remove(id)).collect();
                let env = match environment {
                    Some(e) => Some(self.environment_name(e).await?),
                    None => None,
                };
                // Components show their artifacts' commits; the ranges were chosen at import.
                let mut pinned = Vec::new();
                for c in &release.value.components {
                    let commit = match self.store.get(Kind::Artifact, &c.artifact_id).await? {
                        Some(r) => decode::<signalbox_domain::model::Artifact>(&r)?.value.source_commit,
                        None => None,
                    };
                    pinned.push(ComponentRange {
                        service: services.get(&c.service_id).cloned().unwrap_or_default(),
                        service_id: c.service_id.clone(),
                        version: c.version.clone(),
                        digest: c.digest.clone(),
                        commit,
                        previous_version: None,
                        previous_commit: None,
                        basis: String::new(),
                        commits: 0,
                    });
                }
                ("changes", ordered, pinned, env)
            } else {
                let (env, read) = self.read_ranges(&release.value, environment).await?;
                let now = chrono::Utc::now();
                let changes: Vec<Change> =
                    read.iter().flat_map(|c| c.entries.iter().map(|e| change_from_entry(config, &c.range.service_id, e, now))).collect();
                let has_repo = read.iter().any(|c| c.range.commit.is_some() && !c.range.basis.starts_with("not read"));
                let ranges = read.into_iter().map(|c| c.range).collect();
                (if has_repo { "repository" } else { "none" }, changes, ranges, env)
            };
        Ok(assemble(release, config, source, &changes, &services, &ranges, env))
    }

    async fn environment_name(&self, e: &str) -> AppResult<String> {
        let r = self
            .store
            .get(Kind::Environment, e)
            .await?
            .ok_or_else(|| AppError::invalid("environment", format!("no environment with id or name {e:?}")))?;
        Ok(decode::<signalbox_domain::model::Environment>(&r)?.value.name)
    }
}

/// Puts the notes together (no I/O).
pub fn assemble(
    release: &Versioned<Release>,
    config: &ChangelogConfig,
    source: &str,
    changes: &[Change],
    services: &BTreeMap<String, String>,
    ranges: &[ComponentRange],
    environment: Option<String>,
) -> ReleaseNotes {
    let parsers = config.compile_parsers().unwrap_or_default();
    let mut groups: Vec<NotesGroup> = Vec::new();
    let mut breaking = Vec::new();
    let mut contributors = Vec::new();
    for c in changes {
        let (group, scope, description, is_breaking, breaking_description, issues) = match &c.commit {
            Some(d) => {
                (d.group.clone(), d.scope.clone(), d.description.clone(), d.breaking, d.breaking_description.clone(), d.issues.clone())
            }
            None => {
                // A recorded change: group it as its type would be.
                let message = match &c.change_type {
                    Some(t) => format!("{t}: {}", c.title),
                    None => c.title.clone(),
                };
                let group = parsers
                    .iter()
                    .find(|p| p.message.as_ref().is_none_or(|r| r.is_match(&message)) && p.body.is_none())
                    .filter(|p| !p.skip)
                    .map(|p| p.group.clone())
                    .unwrap_or_else(|| "Other".to_string());
                let breaking = c.risk_flags.iter().any(|f| f == "breaking_change");
                // `feat: x` reads as `x` under Features.
                let title = match &c.change_type {
                    Some(t) => c.title.strip_prefix(&format!("{t}: ")).unwrap_or(&c.title).to_string(),
                    None => c.title.clone(),
                };
                (group, None, title, breaking, None, Vec::new())
            }
        };
        let item = NotesChange {
            service: c.service_id.as_ref().and_then(|s| services.get(s).cloned()),
            reference: c.reference.clone(),
            r#type: c.change_type.clone(),
            scope,
            description,
            breaking: is_breaking,
            breaking_description,
            issues,
            author: c.author.clone(),
            links: c.links.clone(),
        };
        contributors.push(c.author.clone());
        if let Some(d) = &c.commit {
            contributors.extend(d.co_authors.iter().map(|p| p.split(" <").next().unwrap_or(p).to_string()));
        }
        if item.breaking {
            breaking.push(item.clone());
        }
        match groups.iter_mut().find(|g| g.name == group) {
            Some(g) => g.changes.push(item),
            None => groups.push(NotesGroup { name: group, changes: vec![item] }),
        }
    }
    let rank = group_rank(config);
    groups.sort_by_key(|g| rank.get(&g.name).copied().unwrap_or(usize::MAX));
    let r = &release.value;
    let components = r
        .components
        .iter()
        .map(|c| {
            let range = ranges.iter().find(|x| x.service_id == c.service_id);
            NotesComponent {
                service: services.get(&c.service_id).cloned().unwrap_or_else(|| c.service_id.clone()),
                version: c.version.clone(),
                digest: c.digest.clone(),
                commit: range.and_then(|x| x.commit.clone()),
                previous_version: range.and_then(|x| x.previous_version.clone()),
                basis: range.map(|x| x.basis.clone()).filter(|b| !b.is_empty()),
            }
        })
        .collect();
    let doc = |s: &Option<String>| s.as_ref().filter(|t| !t.trim().is_empty()).cloned();
    ReleaseNotes {
        release: NotesRelease {
            id: r.id.clone(),
            key: r.key.clone(),
            name: r.name.clone(),
            version: r.version.clone(),
            state: r.state.as_str().to_string(),
            revision: release.version,
            content_digest: r.content_digest.clone(),
        },
        environment,
        source: source.to_string(),
        components,
        breaking_changes: breaking,
        groups,
        summary: doc(&r.documents.release_notes),
        impact_assessment: doc(&r.documents.impact_assessment),
        rollback_plan: doc(&r.documents.rollback_plan),
        backout_criteria: doc(&r.documents.backout_criteria),
        contributors: dedup(contributors),
    }
}

/// Markdown text that renders as itself: characters that would start HTML, links or escapes
/// are backslash-escaped (CommonMark), so a hostile commit message stays text.
fn md(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        if matches!(ch, '\\' | '<' | '>' | '[' | ']' | '&') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// A document as a Markdown block: each line escaped, kept as its own line.
fn md_block(text: &str) -> String {
    text.lines().map(md).collect::<Vec<_>>().join("  \n")
}

/// Issue references the description does not already show.
fn extra_issues(c: &NotesChange) -> Vec<String> {
    c.issues.iter().filter(|i| !c.description.contains(i.as_str())).cloned().collect()
}

fn md_change(c: &NotesChange) -> String {
    let mut line = String::from("- ");
    if let Some(s) = &c.service {
        line.push_str(&format!("**{}** ", md(s)));
    }
    if let Some(scope) = &c.scope {
        line.push_str(&format!("*({})* ", md(scope)));
    }
    if c.breaking {
        line.push_str("[**breaking**] ");
    }
    line.push_str(&md(&c.description));
    let issues = extra_issues(c);
    if !issues.is_empty() {
        line.push_str(&format!(" ({})", md(&issues.join(", "))));
    }
    let short: String = c.reference.chars().take(7).collect();
    line.push_str(&format!(" ({})", md(&short)));
    line
}

/// Renders notes in `format`.
pub fn render(notes: &ReleaseNotes, format: NotesFormat) -> AppResult<String> {
    match format {
        NotesFormat::Json => serde_json::to_string_pretty(notes).map_err(|e| AppError::Internal(format!("notes: {e}"))),
        NotesFormat::Markdown => Ok(render_markdown(notes)),
        NotesFormat::Html => render_html(notes),
    }
}

fn render_markdown(n: &ReleaseNotes) -> String {
    let mut out = String::new();
    let r = &n.release;
    let version = r.version.as_deref().map(|v| format!(" {}", md(v))).unwrap_or_default();
    out.push_str(&format!("# {} — {}{}\n\n", md(&r.key), md(&r.name), version));
    out.push_str(&format!(
        "State: {}. Revision {} (content digest `{}`){}.\n\n",
        r.state,
        r.revision,
        r.content_digest,
        n.environment.as_deref().map(|e| format!(", changes measured against {}", md(e))).unwrap_or_default()
    ));
    if let Some(s) = &n.summary {
        out.push_str(&format!("{}\n\n", md_block(s)));
    }
    if !n.breaking_changes.is_empty() {
        out.push_str("## ⚠ Breaking changes\n\n");
        for c in &n.breaking_changes {
            let what = c.breaking_description.as_deref().unwrap_or(&c.description);
            let svc = c.service.as_deref().map(|s| format!("**{}** ", md(s))).unwrap_or_default();
            out.push_str(&format!("- {svc}{}\n", md_block(what)));
        }
        out.push('\n');
    }
    if n.groups.is_empty() {
        out.push_str("## Changes\n\nNo changes recorded.\n\n");
    }
    for g in &n.groups {
        out.push_str(&format!("## {}\n\n", md(&g.name)));
        for c in &g.changes {
            out.push_str(&md_change(c));
            out.push('\n');
        }
        out.push('\n');
    }
    for (title, body) in
        [("Technical impact", &n.impact_assessment), ("Rollback steps", &n.rollback_plan), ("Backout criteria", &n.backout_criteria)]
    {
        out.push_str(&format!("## {title}\n\n"));
        match body {
            Some(b) => out.push_str(&format!("{}\n\n", md_block(b))),
            None => out.push_str("Not documented.\n\n"),
        }
    }
    out.push_str("## Components\n\n| service | version | digest | commit |\n|---|---|---|---|\n");
    for c in &n.components {
        let commit: String = c.commit.as_deref().unwrap_or("").chars().take(12).collect();
        out.push_str(&format!("| {} | {} | `{}` | {} |\n", md(&c.service), md(&c.version), c.digest, md(&commit)));
    }
    if !n.contributors.is_empty() {
        out.push_str(&format!("\n## Contributors\n\n{}\n", n.contributors.iter().map(|c| md(c)).collect::<Vec<_>>().join(", ")));
    }
    out
}

const HTML_TEMPLATE: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{{ n.release.key }} — {{ n.release.name }}</title></head>
<body>
<article class="release-notes" data-release="{{ n.release.key }}" data-revision="{{ n.release.revision }}" data-content-digest="{{ n.release.content_digest }}">
<h1>{{ n.release.key }} — {{ n.release.name }}{% if n.release.version %} {{ n.release.version }}{% endif %}</h1>
<p>State: {{ n.release.state }}. Revision {{ n.release.revision }} (content digest <code>{{ n.release.content_digest }}</code>){% if n.environment %}, changes measured against {{ n.environment }}{% endif %}.</p>
{% if n.summary %}<p class="summary">{{ n.summary }}</p>{% endif %}
{% if n.breaking_changes %}<section class="breaking"><h2>⚠ Breaking changes</h2><ul>
{% for c in n.breaking_changes %}<li>{% if c.service %}<strong>{{ c.service }}</strong> {% endif %}{{ c.breaking_description or c.description }}</li>
{% endfor %}</ul></section>{% endif %}
{% if not n.groups %}<section><h2>Changes</h2><p>No changes recorded.</p></section>{% endif %}
{% for g in n.groups %}<section class="group"><h2>{{ g.name }}</h2><ul>
{% for c in g.changes %}<li>{% if c.service %}<strong>{{ c.service }}</strong> {% endif %}{% if c.scope %}<em>({{ c.scope }})</em> {% endif %}{% if c.breaking %}<b>[breaking]</b> {% endif %}{{ c.description }}{% if c.extra_issues %} ({{ c.extra_issues | join(", ") }}){% endif %} (<code>{{ c.reference[:7] }}</code>)</li>
{% endfor %}</ul></section>
{% endfor %}
<section><h2>Technical impact</h2>{% if n.impact_assessment %}<pre>{{ n.impact_assessment }}</pre>{% else %}<p>Not documented.</p>{% endif %}</section>
<section><h2>Rollback steps</h2>{% if n.rollback_plan %}<pre>{{ n.rollback_plan }}</pre>{% else %}<p>Not documented.</p>{% endif %}</section>
<section><h2>Backout criteria</h2>{% if n.backout_criteria %}<pre>{{ n.backout_criteria }}</pre>{% else %}<p>Not documented.</p>{% endif %}</section>
<section><h2>Components</h2><table><thead><tr><th>service</th><th>version</th><th>digest</th><th>commit</th></tr></thead><tbody>
{% for c in n.components %}<tr><td>{{ c.service }}</td><td>{{ c.version }}</td><td><code>{{ c.digest }}</code></td><td>{% if c.commit %}<code>{{ c.commit[:12] }}</code>{% endif %}</td></tr>
{% endfor %}</tbody></table></section>
{% if n.contributors %}<section><h2>Contributors</h2><p>{{ n.contributors | join(", ") }}</p></section>{% endif %}
</article>
</body>
</html>
"#;

fn render_html(n: &ReleaseNotes) -> AppResult<String> {
    let mut env = minijinja::Environment::new();
    // The `.html` name turns on HTML auto-escaping for every value.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.add_template("notes.html", HTML_TEMPLATE).map_err(|e| AppError::Internal(format!("notes template: {e}")))?;
    let tpl = env.get_template("notes.html").map_err(|e| AppError::Internal(format!("notes template: {e}")))?;
    // Each change also gets `extra_issues`: the references its description does not show.
    let mut value = serde_json::to_value(n).map_err(|e| AppError::Internal(format!("notes: {e}")))?;
    if let Some(groups) = value.get_mut("groups").and_then(|g| g.as_array_mut()) {
        for change in groups.iter_mut().filter_map(|g| g.get_mut("changes").and_then(|c| c.as_array_mut())).flatten() {
            let description = change["description"].as_str().unwrap_or_default().to_string();
            let extra: Vec<serde_json::Value> = change["issues"]
                .as_array()
                .map(|a| a.iter().filter(|i| !i.as_str().is_some_and(|s| description.contains(s))).cloned().collect())
                .unwrap_or_default();
            change["extra_issues"] = serde_json::Value::Array(extra);
        }
    }
    tpl.render(minijinja::context! { n => value }).map_err(|e| AppError::Internal(format!("rendering notes: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use signalbox_domain::lifecycle::ReleaseState;
    use signalbox_domain::model::{ChangeKind, CommitDetails, Component, Documents};

    fn change(sha: &str, kind: &str, desc: &str, breaking: Option<&str>, group: &str) -> Change {
        Change {
            id: format!("chg_{sha}"),
            kind: ChangeKind::Commit,
            reference: sha.repeat(8),
            title: format!("{kind}: {desc}"),
            change_type: Some(kind.into()),
            author: "Ada <script>".into(),
            service_id: Some("svc_1".into()),
            authored_at: None,
            committed_at: None,
            merged_at: None,
            links: vec![],
            risk_flags: vec![],
            bug: None,
            commit: Some(CommitDetails {
                scope: Some("api".into()),
                description: desc.into(),
                breaking: breaking.is_some(),
                breaking_description: breaking.map(String::from),
                group: group.into(),
                issues: vec!["#12".into()],
                author_email: "ada@example.com".into(),
                co_authors: vec!["Bo <bo@example.com>".into()],
            }),
            created_at: chrono::Utc::now(),
        }
    }

    fn release() -> Versioned<Release> {
        Versioned {
            version: 7,
            value: Release {
                id: "rel_1".into(),
                key: "R-12".into(),
                name: "Checkout".into(),
                version: Some("2.0.0".into()),
                domain_id: None,
                owner: "alice".into(),
                template_id: "tpl".into(),
                state: ReleaseState::Planning,
                components: vec![Component {
                    service_id: "svc_1".into(),
                    artifact_id: "art_1".into(),
                    version: "2.0.0".into(),
                    digest: "sha256:ab".into(),
                }],
                change_ids: vec![],
                target_environments: vec![],
                planned_window: None,
                documents: Documents {
                    rollback_plan: Some("1. helm rollback checkout\n2. <verify>".into()),
                    backout_criteria: Some("error rate > 1%".into()),
                    impact_assessment: Some("API v1 removed".into()),
                    release_notes: None,
                },
                required_documents: vec![],
                depends_on: vec![],
                kill_switch_flags: vec![],
                tasks: vec![],
                review: None,
                history: vec![],
                content_digest: "sha256:cd".into(),
                created_by: "alice".into(),
                created_at: chrono::Utc::now(),
            },
        }
    }

    fn notes() -> ReleaseNotes {
        let changes = vec![
            change("a", "fix", "handle <img src=x onerror=alert(1)> in names", None, "Bug Fixes"),
            change("b", "feat", "new checkout flow", None, "Features"),
            change("c", "feat", "drop v1 endpoints", Some("clients must call /v2"), "Features"),
        ];
        let services = BTreeMap::from([("svc_1".to_string(), "checkout-api".to_string())]);
        assemble(&release(), &ChangelogConfig::default(), "changes", &changes, &services, &[], Some("prod".into()))
    }

    #[test]
    fn groups_follow_the_changelog_order_and_breaking_changes_come_first() {
        let n = notes();
        assert_eq!(n.groups.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(), ["Features", "Bug Fixes"]);
        assert_eq!(n.breaking_changes.len(), 1);
        assert_eq!(n.release.revision, 7);
        assert_eq!(n.contributors, ["Ada <script>", "Bo"]);
        let md = render(&n, NotesFormat::Markdown).unwrap();
        let breaking = md.find("Breaking changes").unwrap();
        assert!(breaking < md.find("## Features").unwrap() && md.find("## Features").unwrap() < md.find("## Bug Fixes").unwrap());
        assert!(md.contains("clients must call /v2"));
        assert!(md.contains("## Rollback steps\n\n1. helm rollback checkout  \n2. \\<verify\\>"), "{md}");
        assert!(md.contains("\\<img src=x onerror=alert(1)\\>"), "raw HTML stays text in Markdown: {md}");
        assert!(md.contains("| checkout-api | 2.0.0 | `sha256:ab` |"));
    }

    #[test]
    fn html_escapes_everything_from_commits_and_documents() {
        let html = render(&notes(), NotesFormat::Html).unwrap();
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<verify>"), "{html}");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"), "{html}");
        assert!(html.find("Breaking changes").unwrap() < html.find("<h2>Features</h2>").unwrap());
        assert!(html.contains("helm rollback checkout"));
    }

    #[test]
    fn json_carries_the_revision_and_digest() {
        let json: serde_json::Value = serde_json::from_str(&render(&notes(), NotesFormat::Json).unwrap()).unwrap();
        assert_eq!(json["release"]["revision"], 7);
        assert_eq!(json["release"]["content_digest"], "sha256:cd");
        assert_eq!(json["breaking_changes"][0]["breaking_description"], "clients must call /v2");
        assert_eq!(json["groups"][0]["name"], "Features");
        assert!(NotesFormat::parse(Some("pdf")).unwrap_err().to_string().contains("format"));
    }
}
