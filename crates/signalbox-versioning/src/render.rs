//! Changelog renderings: Keep a Changelog 1.1.0 Markdown (<https://keepachangelog.com/en/1.1.0/>),
//! JSON, and user templates in minijinja.

use std::collections::BTreeSet;
use std::fmt::Write;

use crate::changelog::{Changelog, Entry, Release};
use crate::config::ChangelogConfig;
use crate::Error;

/// Markdown: the header, then each release newest first (`## [Unreleased]`, `## [1.2.0] -
/// 2024-05-01`), breaking changes called out first, then the groups in the configured order,
/// each entry with its scope, issue links and commit link, then the contributors.
pub fn markdown(changelog: &Changelog, config: &ChangelogConfig, with_header: bool) -> String {
    let mut out = String::new();
    if with_header {
        markdown_header(&mut out, config);
    }
    for release in &changelog.releases {
        markdown_release(&mut out, release, config);
    }
    out
}

/// The document header of [`markdown`] (nothing when `config.header` is empty).
pub fn markdown_header(out: &mut String, config: &ChangelogConfig) {
    if !config.header.is_empty() {
        out.push_str(config.header.trim_end());
        out.push_str("\n\n");
    }
}

/// One release as [`markdown`] writes it, so a caller can render releases one at a time
/// (see [`crate::changelog::generate_each`]).
pub fn markdown_release(out: &mut String, release: &Release, config: &ChangelogConfig) {
    match (&release.version, &release.date) {
        (Some(v), Some(d)) => {
            let _ = writeln!(out, "## [{v}] - {d}\n");
        }
        (Some(v), None) => {
            let _ = writeln!(out, "## [{v}]\n");
        }
        (None, _) => out.push_str("## [Unreleased]\n\n"),
    }
    let breaking: Vec<&Entry> = release.commits.iter().filter(|e| e.breaking).collect();
    if !breaking.is_empty() {
        out.push_str("### Breaking Changes\n\n");
        for e in &breaking {
            let text = e.breaking_description.as_deref().unwrap_or(&e.description);
            let scope = e.scope.as_deref().map(|s| format!("**{s}**: ")).unwrap_or_default();
            let _ = writeln!(out, "- {scope}{}{}", upper_first(&one_line(text)), commit_link(e, config));
        }
        out.push('\n');
    }
    for group in group_order(release, config) {
        let _ = writeln!(out, "### {group}\n");
        for e in release.commits.iter().filter(|e| e.group == group) {
            let scope = e.scope.as_deref().map(|s| format!("*({s})* ")).unwrap_or_default();
            let mark = if e.breaking { "[**breaking**] " } else { "" };
            let (description, issues) = with_issue_links(e, config);
            let _ = writeln!(out, "- {scope}{mark}{description}{issues}{}", commit_link(e, config));
        }
        out.push('\n');
    }
    if config.contributors && !release.commits.is_empty() {
        let mut people = BTreeSet::new();
        for e in &release.commits {
            people.insert(e.author.name.clone());
            for c in &e.co_authors {
                people.insert(c.name.clone());
            }
        }
        out.push_str("### Contributors\n\n");
        for p in people {
            let _ = writeln!(out, "- {p}");
        }
        out.push('\n');
    }
}

/// Groups present in the release: configured order first, the rest by name.
pub fn group_order(release: &Release, config: &ChangelogConfig) -> Vec<String> {
    let present: BTreeSet<&str> = release.commits.iter().map(|e| e.group.as_str()).collect();
    let mut order: Vec<String> = config.group_order.iter().filter(|g| present.contains(g.as_str())).cloned().collect();
    for g in present {
        if !order.iter().any(|o| o == g) {
            order.push(g.to_string());
        }
    }
    order
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn upper_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The description, and the issues it does not mention itself as ` (#12, #13)`. An issue the
/// description names (`fix: crash (#12)`) is not repeated; with `issue_url` set it is linked in
/// place.
fn with_issue_links(e: &Entry, config: &ChangelogConfig) -> (String, String) {
    let mut description = upper_first(&e.description);
    let mut rest = Vec::new();
    for issue in &e.issues {
        let token = format!("#{}", issue.id);
        let link = |id: &str| {
            if config.issue_url.is_empty() {
                format!("#{id}")
            } else {
                format!("[#{id}]({})", config.issue_url.replace("{id}", id))
            }
        };
        let at = mentions(&description, &token);
        if at.is_empty() {
            rest.push(link(&issue.id));
        } else if !config.issue_url.is_empty() {
            for i in at.into_iter().rev() {
                description.replace_range(i..i + token.len(), &link(&issue.id));
            }
        }
    }
    let rest = if rest.is_empty() { String::new() } else { format!(" ({})", rest.join(", ")) };
    (description, rest)
}

/// Byte offsets of `token` (`#12`) in `text` where it stands alone: not followed by another
/// digit and not already inside a link (`[#12]`).
fn mentions(text: &str, token: &str) -> Vec<usize> {
    text.match_indices(token)
        .filter(|(i, _)| {
            let after = text[i + token.len()..].chars().next();
            let before = text[..*i].chars().next_back();
            !after.is_some_and(|c| c.is_ascii_digit()) && before != Some('[')
        })
        .map(|(i, _)| i)
        .collect()
}

fn commit_link(e: &Entry, config: &ChangelogConfig) -> String {
    let short = e.id.get(..7).unwrap_or(&e.id);
    if config.commit_url.is_empty() {
        format!(" ({short})")
    } else {
        format!(" ([{short}]({}))", config.commit_url.replace("{id}", &e.id))
    }
}

/// `{"releases":[{"version":…,"date":…,"commits":[{"id":…,"type":…,…}]}]}`.
pub fn json(changelog: &Changelog) -> String {
    serde_json::to_string_pretty(changelog).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// [`json`] written one release at a time, byte for byte the same document: `release` for each
/// release in order (newest first, as [`crate::changelog::generate_each`] gives them), then
/// `finish`. Nothing is written before the first release or `finish`.
pub struct JsonWriter<W: std::io::Write> {
    out: W,
    started: bool,
    buf: Vec<u8>,
}

impl<W: std::io::Write> JsonWriter<W> {
    pub fn new(out: W) -> JsonWriter<W> {
        JsonWriter { out, started: false, buf: Vec::new() }
    }

    pub fn release(&mut self, release: &Release) -> std::io::Result<()> {
        self.out.write_all(if self.started { b",\n" } else { b"{\n  \"releases\": [\n" })?;
        self.started = true;
        self.buf.clear();
        serde_json::to_writer_pretty(&mut self.buf, release)?;
        // serde_json escapes line breaks inside strings, so every '\n' here is layout: indent
        // each line by the two levels the release sits at in the whole document.
        for (n, line) in self.buf.split(|&b| b == b'\n').enumerate() {
            if n > 0 {
                self.out.write_all(b"\n")?;
            }
            self.out.write_all(b"    ")?;
            self.out.write_all(line)?;
        }
        Ok(())
    }

    /// Close the document (no trailing newline, as [`json`]) and return the writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.write_all(if self.started { b"\n  ]\n}" } else { b"{\n  \"releases\": []\n}" })?;
        Ok(self.out)
    }
}

/// Render a user template. The context has `releases` (as in the JSON, each with a `groups`
/// list of `{name, commits}` in the configured order and a `breaking` list) and `config`.
pub fn template(changelog: &Changelog, config: &ChangelogConfig, source: &str) -> Result<String, Error> {
    let mut env = minijinja::Environment::new();
    env.set_fuel(Some(50_000_000));
    env.add_template("changelog", source)
        .map_err(|e| Error::Invalid { field: "--template".into(), message: format!("the template does not parse: {e:#}") })?;
    let releases: Vec<serde_json::Value> = changelog
        .releases
        .iter()
        .map(|r| {
            let groups: Vec<serde_json::Value> = group_order(r, config)
                .into_iter()
                .map(|g| {
                    let commits: Vec<&Entry> = r.commits.iter().filter(|e| e.group == g).collect();
                    serde_json::json!({"name": g, "commits": commits})
                })
                .collect();
            let breaking: Vec<&Entry> = r.commits.iter().filter(|e| e.breaking).collect();
            serde_json::json!({"version": r.version, "tag": r.tag, "date": r.date, "commits": r.commits, "groups": groups, "breaking": breaking})
        })
        .collect();
    let tmpl = env.get_template("changelog").map_err(|e| Error::Invalid { field: "--template".into(), message: e.to_string() })?;
    tmpl.render(minijinja::context! { releases => releases, config => config })
        .map_err(|e| Error::Invalid { field: "--template".into(), message: format!("rendering failed: {e:#}") })
}

/// Insert `new_sections` (releases without the document header) into an existing changelog
/// before its first `## ` heading, keeping the existing header; an empty file gets the header.
pub fn prepend(existing: &str, new_sections: &str, config: &ChangelogConfig) -> String {
    if existing.trim().is_empty() {
        return format!("{}\n\n{new_sections}", config.header.trim_end());
    }
    let at = existing.match_indices("## ").find(|(i, _)| *i == 0 || existing.as_bytes()[i - 1] == b'\n').map(|(i, _)| i);
    match at {
        Some(i) => format!("{}{new_sections}{}", &existing[..i], &existing[i..]),
        None => format!("{}\n\n{new_sections}", existing.trim_end()),
    }
}
