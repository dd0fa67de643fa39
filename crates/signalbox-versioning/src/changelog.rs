//! Releases cut from history, the next version, and the changelog renderings (Keep a Changelog
//! 1.1.0 Markdown, JSON, user minijinja templates).
//!
//! Assignment rule: a commit belongs to the lowest release (by SemVer precedence) whose tag can
//! reach it, so merged branches land in the first release that contains them, whatever the
//! walk order. Reverts cancel within one release only: a release already published keeps what
//! it shipped, and its revert shows up in the later release.

use gix::ObjectId;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::config::{ChangelogConfig, CompiledParser};
use crate::history::{Graph, PathFilter, ReleaseTag, Repo};
use crate::message::{self, IssueRef, ParsedMessage, Person};
use crate::version::{self, precedence, Bump, TagPattern};
use crate::Error;

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub from: Option<String>,
    pub to: Option<String>,
    pub unreleased_only: bool,
    pub tag_pattern: Option<String>,
    pub include_paths: Vec<String>,
    pub package: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Changelog {
    /// Newest first; an unreleased section has `version: null`.
    pub releases: Vec<Release>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Release {
    pub version: Option<String>,
    pub tag: Option<String>,
    /// `YYYY-MM-DD` (UTC) of the tagged commit.
    pub date: Option<String>,
    pub commits: Vec<Entry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub id: String,
    pub r#type: Option<String>,
    pub scope: Option<String>,
    pub description: String,
    pub breaking: bool,
    pub breaking_description: Option<String>,
    pub group: String,
    pub issues: Vec<IssueRef>,
    pub author: Person,
    pub co_authors: Vec<Person>,
    pub body: Option<String>,
    /// Committer time, seconds since the epoch (not part of the JSON changelog).
    #[serde(skip)]
    pub time: i64,
}

/// How a commit was classified.
#[derive(Debug, Clone)]
struct Classified {
    parsed: ParsedMessage,
    group: Option<String>,
}

fn classify(graph: &Graph, i: usize, parsers: &[CompiledParser], config: &ChangelogConfig) -> Classified {
    let text = graph.message(i);
    let parsed = message::parse(text);
    if graph.commits[i].parents.len() > 1 && !config.include_merge_commits {
        return Classified { parsed, group: None };
    }
    if parsed.conventional.is_none() && config.filter_unconventional {
        return Classified { parsed, group: None };
    }
    let body = parsed.body.as_deref().unwrap_or("");
    let raw = message::truncate_message(text);
    for p in parsers {
        let message_ok = p.message.as_ref().is_none_or(|r| r.is_match(raw));
        let body_ok = p.body.as_ref().is_none_or(|r| r.is_match(body));
        if message_ok && body_ok {
            if p.skip && !(config.protect_breaking_commits && parsed.breaking()) {
                return Classified { parsed, group: None };
            }
            if p.skip {
                continue;
            }
            return Classified { parsed, group: Some(p.group.clone()) };
        }
    }
    Classified { parsed, group: None }
}

/// Drop commits cancelled by a revert inside `members` (indices into `graph`, newest first):
/// a revert and the commit it reverts both go; a revert of a revert brings the original back.
fn cancel_reverts(graph: &Graph, members: &[usize], parsed: &HashMap<usize, &ParsedMessage>) -> HashSet<usize> {
    let mut removed = HashSet::new();
    if !parsed.values().any(|p| p.reverts_something()) {
        return removed;
    }
    let by_hex: HashMap<String, usize> = members.iter().map(|&i| (graph.commits[i].id.to_string(), i)).collect();
    for &i in members {
        if removed.contains(&i) {
            continue;
        }
        let Some(p) = parsed.get(&i) else { continue };
        for target in p.reverted_ids() {
            let hit = by_hex.get(&target).copied().or_else(|| {
                (target.len() < 40).then(|| by_hex.iter().find(|(hex, _)| hex.starts_with(&target)).map(|(_, &j)| j)).flatten()
            });
            if let Some(j) = hit {
                if j != i && !removed.contains(&j) {
                    removed.insert(j);
                    removed.insert(i);
                }
            }
        }
    }
    removed
}

fn date_of(seconds: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(seconds, 0).map(|d| d.format("%Y-%m-%d").to_string())
}

struct Context {
    repo: Repo,
    pattern: TagPattern,
    filter: Option<PathFilter>,
}

fn open(repo_path: &Path, config: &ChangelogConfig, sel: &Selection) -> Result<Context, Error> {
    let mut repo = Repo::open(repo_path)?;
    let (pattern, filter) = scope(config, sel)?;
    if filter.is_some() {
        repo.cache_trees();
    }
    Ok(Context { repo, pattern, filter })
}

/// The tag pattern and path filter `sel` names (`package`, `tag_pattern`, `include_paths` over
/// the configuration's defaults).
fn scope(config: &ChangelogConfig, sel: &Selection) -> Result<(TagPattern, Option<PathFilter>), Error> {
    if let Some(name) = &sel.package {
        if name.is_empty() || name.chars().any(|c| c.is_whitespace()) {
            return Err(Error::Invalid { field: "--package".into(), message: format!("`{name}` is not a package name") });
        }
    }
    let (pattern, mut paths) = config.scope_for(sel.package.as_deref(), sel.tag_pattern.as_deref())?;
    if !sel.include_paths.is_empty() {
        paths = sel.include_paths.clone();
    }
    let filter = if paths.is_empty() { None } else { Some(PathFilter::new(&paths)?) };
    Ok((pattern, filter))
}

/// Checks the package, tag pattern and include paths of `sel` without reading a repository, as
/// every read would: a bad one is [`Error::Invalid`] naming `--package`, `--tag-pattern` or
/// `--include-path` (or the configuration key it came from) and how to fix it.
pub fn check_scope(config: &ChangelogConfig, sel: &Selection) -> Result<(), Error> {
    scope(config, sel).map(|_| ())
}

/// The highest-precedence tag per commit.
fn tags_by_commit(tags: Vec<ReleaseTag>) -> HashMap<ObjectId, ReleaseTag> {
    let mut map: HashMap<ObjectId, ReleaseTag> = HashMap::new();
    for t in tags {
        match map.get(&t.commit) {
            Some(existing) if precedence(&existing.version, &t.version).is_ge() => {}
            _ => {
                map.insert(t.commit, t);
            }
        }
    }
    map
}

/// Keep commits that touch the path filter.
fn path_filtered(ctx: &Context, graph: &Graph, members: Vec<usize>) -> Result<Vec<usize>, Error> {
    let Some(filter) = &ctx.filter else { return Ok(members) };
    let mut out = Vec::with_capacity(members.len());
    for i in members {
        let c = &graph.commits[i];
        let parent_tree = match c.parents.first() {
            None => None,
            Some(p) => Some(match graph.get(p) {
                Some(pc) => pc.tree,
                None => ctx.repo.tree_of(*p)?,
            }),
        };
        if ctx.repo.touches(c, parent_tree, filter)? {
            out.push(i);
        }
    }
    Ok(out)
}

/// `members` oldest first, in topological order: every commit after its parents, the first
/// parent's line before the branch a merge brings in, that branch's commits just before the
/// merge (a depth-first post-order along the parents, first parent first). Reversing the walk's
/// discovery order is not enough: it lists a merged branch before the commits it was based on.
fn oldest_first(graph: &Graph, members: &[usize]) -> Vec<usize> {
    let wanted: HashSet<usize> = members.iter().copied().collect();
    let mut seen: HashSet<usize> = HashSet::with_capacity(members.len());
    let mut out = Vec::with_capacity(members.len());
    // (commit, index of the next parent to visit)
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for &root in members {
        if !seen.insert(root) {
            continue;
        }
        stack.push((root, 0));
        while let Some(top) = stack.last_mut() {
            let (i, next) = *top;
            match graph.commits[i].parents.as_slice().get(next) {
                Some(parent) => {
                    top.1 += 1;
                    if let Some(&p) = graph.index.get(parent) {
                        if wanted.contains(&p) && seen.insert(p) {
                            stack.push((p, 0));
                        }
                    }
                }
                None => {
                    out.push(i);
                    stack.pop();
                }
            }
        }
    }
    out
}

/// The entries of `members`, given in [`oldest_first`] order (computed before path filters
/// drop commits, which would break the parent links it follows) and listed in it, like
/// git-cliff's `sort_commits = "oldest"`.
fn entries(graph: &Graph, members: &[usize], config: &ChangelogConfig, parsers: &[CompiledParser]) -> Vec<Entry> {
    let classified: HashMap<usize, Classified> = members.iter().map(|&i| (i, classify(graph, i, parsers, config))).collect();
    let parsed: HashMap<usize, &ParsedMessage> = classified.iter().map(|(&i, c)| (i, &c.parsed)).collect();
    // Reverts are matched newest first, so a revert of a revert is seen before the revert it cancels.
    let newest_first: Vec<usize> = members.iter().rev().copied().collect();
    let removed = cancel_reverts(graph, &newest_first, &parsed);
    members
        .iter()
        .filter(|i| !removed.contains(i))
        .filter_map(|i| {
            let c = &classified[i];
            let group = c.group.clone()?;
            let info = &graph.commits[*i];
            let header = c.parsed.conventional.as_ref();
            Some(Entry {
                id: info.id.to_string(),
                r#type: header.map(|h| h.kind()),
                scope: header.and_then(|h| h.scope.clone()),
                description: header.map_or_else(|| c.parsed.subject.clone(), |h| h.description.clone()),
                breaking: c.parsed.breaking(),
                breaking_description: c.parsed.breaking_description(),
                group,
                issues: c.parsed.issues(),
                author: {
                    let (name, email) = graph.author(*i);
                    Person { name: name.to_string(), email: email.to_string() }
                },
                co_authors: c.parsed.co_authors(),
                body: c.parsed.body.clone(),
                time: info.time,
            })
        })
        .collect()
}

/// Build the changelog for `sel` in the repository at `repo_path`.
pub fn generate(repo_path: &Path, config: &ChangelogConfig, sel: &Selection) -> Result<Changelog, Error> {
    let mut releases = Vec::new();
    generate_each(repo_path, config, sel, |r| {
        releases.push(r);
        Ok::<(), Error>(())
    })?;
    Ok(Changelog { releases })
}

/// [`generate`] without holding the whole changelog: each release is handed to `each` as soon as
/// its entries are built, newest first (the order of [`Changelog::releases`]), so a caller that
/// renders and drops it keeps one release in memory at a time. All reading of the repository
/// (the walk, path filters) is done before the first call, so a git error leaves `each` uncalled.
pub fn generate_each<E: From<Error>>(
    repo_path: &Path,
    config: &ChangelogConfig,
    sel: &Selection,
    mut each: impl FnMut(Release) -> Result<(), E>,
) -> Result<(), E> {
    let parsers = config.compile_parsers()?;
    let ctx = open(repo_path, config, sel)?;
    let tags: Vec<ReleaseTag> =
        ctx.repo.release_tags(&ctx.pattern)?.into_iter().filter(|t| config.include_prereleases || t.version.pre.is_empty()).collect();
    let by_commit = tags_by_commit(tags);
    let to = ctx.repo.resolve(sel.to.as_deref().unwrap_or("HEAD"), "--to")?;
    let from = sel.from.as_deref().map(|f| ctx.repo.resolve(f, "--from")).transpose()?;

    if sel.unreleased_only {
        if !by_commit.contains_key(&to) {
            let graph = ctx.repo.walk(&[to], &|id| by_commit.contains_key(id) || Some(*id) == from)?;
            let all: Vec<usize> = (0..graph.commits.len()).collect();
            let members = path_filtered(&ctx, &graph, oldest_first(&graph, &all))?;
            return each(Release { version: None, tag: None, date: None, commits: entries(&graph, &members, config, &parsers) });
        }
        return each(Release { version: None, tag: None, date: None, commits: Vec::new() });
    }

    let tips: Vec<ObjectId> = std::iter::once(to).chain(from).collect();
    let graph = ctx.repo.walk(&tips, &|_| false)?;
    let to_idx = graph.index[&to];
    let mut assigned = vec![false; graph.commits.len()];
    if let Some(f) = from {
        let fi = graph.index[&f];
        for i in graph.reachable(fi, &mut |i| std::mem::replace(&mut assigned[i], true)) {
            assigned[i] = true;
        }
    }
    // Only releases reachable from `to` (and not hidden by `from`) count.
    let in_range: HashSet<usize> = {
        let mut seen = assigned.clone();
        graph.reachable(to_idx, &mut |i| std::mem::replace(&mut seen[i], true)).into_iter().collect()
    };
    let mut release_commits: Vec<(usize, &ReleaseTag)> =
        by_commit.iter().filter_map(|(id, t)| graph.index.get(id).filter(|i| in_range.contains(i)).map(|&i| (i, t))).collect();
    release_commits.sort_by(|a, b| precedence(&a.1.version, &b.1.version).then_with(|| a.1.name.cmp(&b.1.name)));

    // Cut the releases oldest first (the assignment rule needs that order), keeping only the
    // commit indices, then build and hand out the entries newest first.
    let mut cut: Vec<Vec<usize>> = Vec::with_capacity(release_commits.len());
    for (idx, _) in &release_commits {
        let members = graph.reachable(*idx, &mut |i| std::mem::replace(&mut assigned[i], true));
        cut.push(path_filtered(&ctx, &graph, oldest_first(&graph, &members))?);
    }
    let unreleased = graph.reachable(to_idx, &mut |i| std::mem::replace(&mut assigned[i], true));
    let unreleased = path_filtered(&ctx, &graph, oldest_first(&graph, &unreleased))?;
    let unreleased = entries(&graph, &unreleased, config, &parsers);
    if !unreleased.is_empty() {
        each(Release { version: None, tag: None, date: None, commits: unreleased })?;
    }
    for ((idx, tag), members) in release_commits.iter().zip(cut).rev() {
        each(Release {
            version: Some(tag.version.to_string()),
            tag: Some(tag.name.clone()),
            date: date_of(graph.commits[*idx].time),
            commits: entries(&graph, &members, config, &parsers),
        })?;
    }
    Ok(())
}

/// The commits one deployment brings, oldest first, and what they were measured against.
#[derive(Debug, Clone, Serialize)]
pub struct RangeChanges {
    pub entries: Vec<Entry>,
    /// The release tag the range starts after, when it was derived from tags (no `from`).
    pub since_tag: Option<String>,
}

/// The commits reachable from `to` but not from `from`, as changelog entries (grouping, skips,
/// revert cancellation within each release as in [`generate`]), oldest first. Without `from`
/// (nothing deployed yet): the commits of the release `to` belongs to: since the previous
/// final release tag when `to` is untagged, or the tagged release itself when `to` carries a
/// release tag; with no tag at all, every commit up to `to`.
///
/// Errors name `from` or `to` as the field when a commit is not in the repository.
pub fn changes_between(repo_path: &Path, config: &ChangelogConfig, from: Option<&str>, to: &str) -> Result<RangeChanges, Error> {
    changes_between_in(repo_path, config, &Selection::default(), from, to)
}

/// [`changes_between`] for one package of a monorepo: `scope`'s `package`, `tag_pattern` and
/// `include_paths` are read as `--package`, `--tag-pattern` and `--include-path` are, so only
/// commits touching the package's paths are listed and only its tags cut releases (the range
/// "since the previous release tag" uses them). Its `from`, `to` and `unreleased_only` are ignored.
pub fn changes_between_in(
    repo_path: &Path,
    config: &ChangelogConfig,
    scope: &Selection,
    from: Option<&str>,
    to: &str,
) -> Result<RangeChanges, Error> {
    let sel = Selection { from: from.map(String::from), to: Some(to.to_string()), unreleased_only: false, ..scope.clone() };
    let rename = |e: Error| match e {
        Error::Invalid { field, message } if field == "--from" => Error::Invalid { field: "from".into(), message },
        Error::Invalid { field, message } if field == "--to" => Error::Invalid { field: "to".into(), message },
        other => other,
    };
    let log = generate(repo_path, config, &sel).map_err(rename)?;
    if from.is_some() {
        // Oldest release first; each release's commits are already oldest first.
        let entries = log.releases.into_iter().rev().flat_map(|r| r.commits).collect();
        return Ok(RangeChanges { entries, since_tag: None });
    }
    let ctx = open(repo_path, config, &sel)?;
    let to_id = ctx.repo.resolve(to, "to")?;
    let tags_at_to: HashSet<String> = ctx
        .repo
        .release_tags(&ctx.pattern)?
        .into_iter()
        .filter(|t| t.commit == to_id && (config.include_prereleases || t.version.pre.is_empty()))
        .map(|t| t.name)
        .collect();
    let pick = log.releases.iter().position(|r| match &r.tag {
        Some(tag) => tags_at_to.contains(tag),
        None => tags_at_to.is_empty(),
    });
    let Some(i) = pick else {
        return Ok(RangeChanges { entries: Vec::new(), since_tag: log.releases.first().and_then(|r| r.tag.clone()) });
    };
    let since_tag = log.releases.get(i + 1).and_then(|r| r.tag.clone());
    let entries = log.releases.into_iter().nth(i).map(|r| r.commits).unwrap_or_default();
    Ok(RangeChanges { entries, since_tag })
}

/// Why one commit asks for a bump.
#[derive(Debug, Clone, Serialize)]
pub struct Reason {
    pub id: String,
    pub subject: String,
    pub level: Bump,
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct NextVersion {
    /// The last final release the bump starts from.
    pub base_tag: Option<String>,
    pub base_version: Option<String>,
    pub commits_since: usize,
    /// The highest level the commits ask for.
    pub level: Bump,
    /// The level applied after the 0.x rules.
    pub applied: Bump,
    pub version: String,
    /// The tag to create, when it can be derived from the last tag's name.
    pub tag: Option<String>,
    pub reasons: Vec<Reason>,
    pub notes: Vec<String>,
}

/// The next version after the last final release reachable from `sel.to` (default HEAD).
pub fn next_version(repo_path: &Path, config: &ChangelogConfig, sel: &Selection, pre: Option<&str>) -> Result<NextVersion, Error> {
    let ctx = open(repo_path, config, sel)?;
    let rules = &config.bump;
    let initial = semver::Version::parse(&rules.initial_version).map_err(|e| Error::Invalid {
        field: "changelog.bump.initial_version".into(),
        message: format!("`{}` is not a SemVer version: {e}", rules.initial_version),
    })?;
    let all_tags = ctx.repo.release_tags(&ctx.pattern)?;
    let prereleases: Vec<semver::Version> = all_tags.iter().filter(|t| !t.version.pre.is_empty()).map(|t| t.version.clone()).collect();
    let finals = tags_by_commit(all_tags.into_iter().filter(|t| t.version.pre.is_empty()).collect());
    let to = ctx.repo.resolve(sel.to.as_deref().unwrap_or("HEAD"), "--to")?;

    let (graph, base) = if let Some(t) = finals.get(&to) {
        (Graph::default(), Some(t.clone()))
    } else {
        let graph = ctx.repo.walk(&[to], &|id| finals.contains_key(id))?;
        let base = graph
            .commits
            .iter()
            .flat_map(|c| c.parents.iter())
            .filter_map(|p| finals.get(p))
            .max_by(|a, b| precedence(&a.version, &b.version))
            .cloned();
        (graph, base)
    };
    let members = path_filtered(&ctx, &graph, (0..graph.commits.len()).collect())?;
    let parsed: HashMap<usize, ParsedMessage> = members.iter().map(|&i| (i, message::parse(graph.message(i)))).collect();
    let removed = cancel_reverts(&graph, &members, &parsed.iter().map(|(&i, p)| (i, p)).collect());
    let mut reasons = Vec::new();
    let mut level = Bump::None;
    for i in members.iter().filter(|i| !removed.contains(i)) {
        let info = &graph.commits[*i];
        if info.parents.len() > 1 && !config.include_merge_commits {
            continue;
        }
        let p = &parsed[i];
        let kind = p.conventional.as_ref().map(|h| h.kind());
        let l = rules.level(kind.as_deref(), p.breaking());
        if l == Bump::None {
            continue;
        }
        let why = if p.breaking() {
            if p.conventional.as_ref().is_some_and(|h| h.bang) {
                "breaking change (`!` in the header)".to_string()
            } else {
                "breaking change (BREAKING CHANGE footer)".to_string()
            }
        } else {
            format!("type `{}`", kind.unwrap_or_default())
        };
        level = level.max(l);
        reasons.push(Reason { id: info.id.to_string(), subject: p.subject.clone(), level: l, why });
    }
    reasons.sort_by_key(|r| std::cmp::Reverse(r.level));
    let mut notes = Vec::new();
    let (target, applied) = match &base {
        None => {
            notes.push(format!(
                "no tag matches `{}`: starting at changelog.bump.initial_version = {}",
                ctx.pattern.as_str(),
                rules.initial_version
            ));
            (initial.clone(), level)
        }
        Some(b) => {
            let applied = rules.effective(&b.version, level);
            if b.version.major == 0 && applied != level {
                notes.push(format!(
                    "0.x rule: {} applied as {} (set changelog.bump.{} = true for the 1.x behaviour)",
                    level.as_str(),
                    applied.as_str(),
                    if level == Bump::Major { "breaking_always_bump_major" } else { "features_always_bump_minor" }
                ));
            }
            if level == Bump::None {
                notes.push("no commit since the last release asks for a bump: the version stays".into());
            }
            (rules.apply(&b.version, level), applied)
        }
    };
    let version = match pre {
        Some(channel) if base.is_none() || level != Bump::None => version::next_prerelease(&target, channel, &prereleases)?,
        _ => target,
    };
    let tag = match &base {
        Some(b) => Some(b.name.replacen(&b.version.to_string(), &version.to_string(), 1)),
        None if sel.package.is_some() => sel.package.as_ref().map(|p| format!("{p}@{version}")),
        None => Some(format!("v{version}")),
    };
    Ok(NextVersion {
        base_tag: base.as_ref().map(|b| b.name.clone()),
        base_version: base.as_ref().map(|b| b.version.to_string()),
        commits_since: members.len(),
        level,
        applied,
        version: version.to_string(),
        tag,
        reasons,
        notes,
    })
}
