//! Services' git repositories in the server (issue 5, part 4; docs/VERSIONING.md "In the
//! server"): attaching a repository to a service, mirroring remote ones, and importing the
//! commits between the artifact running in an environment and the artifact a release pins as
//! [`Change`] records linked to the release. Release notes built from them are in
//! [`crate::release_notes`].
//!
//! **I/O outside transactions.** Cloning, fetching and reading history happen before the
//! request's one transaction begins; the transaction then only reads records and writes the
//! result. A concurrent change to the release between the two is harmless: the transaction
//! re-reads the release and merges (linking is idempotent by the change's natural key).
//!
//! **Why the `git` binary for mirroring.** Reading history uses gix (signalbox-versioning).
//! Cloning and fetching over `https://` with gix needs its blocking HTTP client (curl or
//! reqwest with their TLS stacks as extra features) and `ssh://` in gix runs the `ssh` binary
//! anyway; the `git` binary already handles credentials helpers, SSH agents, proxies and
//! `insteadOf` rules the way operators configure them. It is run with an argument vector (no
//! shell), `--` before the URL, `GIT_TERMINAL_PROMPT=0`, SSH in batch mode, a time limit, and
//! only the `file`, `https` and `ssh` protocols allowed.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use signalbox_domain::access::Permission;
use signalbox_domain::model::{Artifact, Change, ChangeKind, CommitDetails, Component, Kind, Release, Service, SourceRepository};
use signalbox_rollout::plan::RolloutPhase;
use signalbox_store::ListQuery;
use signalbox_versioning::{ChangelogConfig, Entry};
use utoipa::ToSchema;

use crate::catalog::{check_if_match, service_scopes};
use crate::error::{AppError, AppResult};
use crate::mutation::{decode, Mutation, Placement};
use crate::promotion::Deployment;
use crate::releases::release_scopes;
use crate::{new_id, App, RequestContext, Versioned};

/// The most commits one import links to a release; a larger range is refused with the fix.
pub const MAX_IMPORT_COMMITS: usize = 5_000;

/// Where mirrors live and how history is read.
#[derive(Debug)]
pub struct RepositorySettings {
    /// Mirrors of remote repositories (`<data_dir>/repositories` by default; configurable with
    /// `[repositories] mirror_dir`, required to be local to each replica on PostgreSQL).
    pub mirror_dir: PathBuf,
    /// Grouping and skip rules (the `[changelog]` section), shared with `signalbox changelog`.
    pub changelog: ChangelogConfig,
    /// Longest a clone or fetch may take.
    pub git_timeout: Duration,
    /// A mirror last fetched longer ago than this is fetched before its history is read (change
    /// import, live release notes), so tags and commits pushed since show up. `[repositories]
    /// refresh_interval_secs`, default 60 s; zero fetches before every read.
    pub refresh_interval: Duration,
    /// Extra environment for the `git` runs (e.g. `GIT_SSL_CAINFO` for a private CA in tests;
    /// a server takes its environment from its own process instead).
    pub git_env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    /// One mirror operation at a time per mirror in this process (two requests for one URL
    /// would race; different URLs do not wait for each other).
    locks: std::sync::Mutex<BTreeMap<PathBuf, std::sync::Arc<tokio::sync::Mutex<()>>>>,
}

impl RepositorySettings {
    pub fn new(mirror_dir: PathBuf, changelog: ChangelogConfig) -> RepositorySettings {
        RepositorySettings {
            mirror_dir,
            changelog,
            git_timeout: Duration::from_secs(300),
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            git_env: Vec::new(),
            locks: Default::default(),
        }
    }
}

/// How long a mirror is fresh enough to read without fetching first.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// The file in a mirror whose modification time is its last successful clone or fetch.
const FETCHED_MARKER: &str = "signalbox-fetched";

fn mark_fetched(mirror: &std::path::Path) {
    // Best effort: without the marker the mirror only looks stale, and is fetched again.
    let _ = std::fs::write(mirror.join(FETCHED_MARKER), Utc::now().to_rfc3339());
}

/// Whether `mirror` was last fetched longer than `interval` ago (or never, as far as we know).
fn is_stale(mirror: &std::path::Path, interval: Duration) -> bool {
    let fetched = std::fs::metadata(mirror.join(FETCHED_MARKER)).and_then(|m| m.modified());
    match fetched {
        // A modification time in the future (a clock step) also counts as stale.
        Ok(at) => !matches!(at.elapsed(), Ok(age) if age < interval),
        Err(_) => true,
    }
}

impl Default for RepositorySettings {
    /// A private directory under the system's temporary directory: only for embedded uses
    /// (tests); `serve` and `demo` always configure one.
    fn default() -> Self {
        let dir = std::env::temp_dir().join(format!("signalbox-mirrors-{}", uuid::Uuid::now_v7().simple()));
        RepositorySettings::new(dir, ChangelogConfig::default())
    }
}

/// A repository location after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An absolute path on the server, read in place.
    Local(PathBuf),
    /// `file://`, `https://` or `ssh://`: mirrored.
    Remote(String),
}

const ACCEPTED: &str =
    "give an absolute path on the server (/srv/git/app.git) or a file:///…, https://host/… or ssh://[user@]host[:port]/… URL";

/// Validates a repository location given in `field`.
pub fn parse_location(field: &str, raw: &str) -> AppResult<Location> {
    let bad = |msg: String| Err(AppError::invalid(field, msg));
    if raw.is_empty() {
        return bad(format!("is empty: {ACCEPTED}"));
    }
    if raw.len() > 2048 {
        return bad("is longer than 2048 characters".into());
    }
    if raw.chars().any(char::is_control) {
        return bad("contains control characters".into());
    }
    if raw.starts_with('/') {
        if raw.split('/').any(|part| part == "..") {
            return bad(format!("{raw:?} contains `..`: give the repository's absolute path without `..`"));
        }
        return Ok(Location::Local(PathBuf::from(raw)));
    }
    if raw.chars().any(char::is_whitespace) {
        return bad(format!("{raw:?} contains spaces: URLs must be percent-encoded; {ACCEPTED}"));
    }
    let lower = raw.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("file://") {
        if !rest.starts_with('/') || rest.len() < 2 {
            return bad(format!("{raw:?}: a file URL names an absolute path, as in file:///srv/git/app.git"));
        }
        return Ok(Location::Remote(raw.to_string()));
    }
    if lower.starts_with("https://") || lower.starts_with("ssh://") {
        let url = match reqwest::Url::parse(raw) {
            Ok(u) => u,
            Err(e) => return bad(format!("{raw:?} is not a URL ({e}); {ACCEPTED}")),
        };
        if url.host_str().is_none_or(str::is_empty) {
            return bad(format!("{raw:?} names no host; {ACCEPTED}"));
        }
        if url.password().is_some() || (url.scheme() == "https" && !url.username().is_empty()) {
            return bad(
                "must not contain credentials (they would be stored and shown): configure a git credential helper or SSH key for the server's user instead"
                    .into(),
            );
        }
        if url.path().len() <= 1 {
            return bad(format!("{raw:?} names no repository path"));
        }
        return Ok(Location::Remote(raw.to_string()));
    }
    if !raw.contains("://") && raw.contains(':') && raw.contains('@') {
        return bad(format!("{raw:?} is scp-like syntax: write it as ssh://{}", raw.replacen(':', "/", 1)));
    }
    if lower.starts_with("http://") {
        return bad(format!("{raw:?}: plain http is not accepted; use https://"));
    }
    bad(format!("{raw:?} is not an accepted repository location: {ACCEPTED}"))
}

/// The mirror directory of a remote URL: a hash of the URL, so two URLs never share one.
pub fn mirror_path(settings: &RepositorySettings, url: &str) -> PathBuf {
    let hash = hex::encode(sha2::Sha256::digest(url.as_bytes()));
    settings.mirror_dir.join(format!("{}.git", &hash[..24]))
}

/// Runs `git` with `args` (no shell), returning the last line of its error output on failure.
async fn run_git(settings: &RepositorySettings, args: &[&std::ffi::OsStr]) -> Result<(), String> {
    let timeout = settings.git_timeout;
    let mut cmd = tokio::process::Command::new("git");
    cmd.args(["-c", "protocol.allow=never", "-c", "protocol.file.allow=always", "-c", "protocol.https.allow=always"])
        .args(["-c", "protocol.ssh.allow=always", "-c", "credential.interactive=false"])
        .args(args)
        .envs(settings.git_env.iter().map(|(k, v)| (k, v)))
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    if std::env::var_os("GIT_SSH_COMMAND").is_none() {
        cmd.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
    }
    let child = cmd.spawn().map_err(|e| format!("cannot run git ({e}); install git on the server"))?;
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Err(format!("git failed: {e}")),
        Err(_) => return Err(format!("git did not finish within {} s", timeout.as_secs())),
    };
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no error output").trim().to_string();
    Err(line.chars().take(500).collect())
}

/// Whether every commit in `commits` is in the repository at `path`.
async fn has_commits(path: PathBuf, commits: Vec<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let Ok(repo) = signalbox_versioning::history::Repo::open(&path) else { return false };
        commits.iter().all(|c| repo.resolve(c, "commit").is_ok())
    })
    .await
    .unwrap_or(false)
}

impl App {
    /// Makes `location` readable and returns the path to read: a local repository as it is; a
    /// remote one mirrored: cloned the first time; fetched when `refresh`, when one of `wanted`
    /// is missing, or when the last fetch is older than [`RepositorySettings::refresh_interval`].
    /// A fetch that was only due to age and fails is logged and the mirror read as it is (the
    /// commits asked for are there); the other failures are errors naming `field`.
    pub async fn prepare_repository(&self, field: &str, location: &Location, refresh: bool, wanted: &[String]) -> AppResult<PathBuf> {
        let settings = &self.repositories;
        match location {
            Location::Local(path) => {
                let p = path.clone();
                let opened = tokio::task::spawn_blocking(move || signalbox_versioning::history::Repo::open(&p).map(|_| ()))
                    .await
                    .map_err(|e| AppError::Internal(format!("reading a repository: {e}")))?;
                opened.map_err(|_| {
                    AppError::invalid(
                        field,
                        format!(
                            "{} is not a git repository the server can read; give the path of a clone or bare repository on the server",
                            path.display()
                        ),
                    )
                })?;
                Ok(path.clone())
            }
            Location::Remote(url) => {
                let mirror = mirror_path(settings, url);
                let lock = {
                    let mut locks = settings.locks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    locks.entry(mirror.clone()).or_default().clone()
                };
                let _guard = lock.lock().await;
                if !mirror.join("HEAD").exists() {
                    std::fs::create_dir_all(&settings.mirror_dir).map_err(|e| {
                        AppError::Internal(format!("cannot create the mirror directory {}: {e}", settings.mirror_dir.display()))
                    })?;
                    let tmp = settings.mirror_dir.join(format!(".clone-{}", uuid::Uuid::now_v7().simple()));
                    let result = run_git(
                        settings,
                        &["clone".as_ref(), "--mirror".as_ref(), "--quiet".as_ref(), "--".as_ref(), url.as_ref(), tmp.as_os_str()],
                    )
                    .await;
                    if let Err(e) = result {
                        let _ = std::fs::remove_dir_all(&tmp);
                        return Err(AppError::invalid(
                            field,
                            format!("cannot clone {url}: {e}. Check the URL and the server's git credentials"),
                        ));
                    }
                    let _ = std::fs::remove_dir_all(&mirror);
                    std::fs::rename(&tmp, &mirror).map_err(|e| AppError::Internal(format!("cannot move the new mirror in place: {e}")))?;
                    mark_fetched(&mirror);
                    return Ok(mirror);
                }
                let required = refresh || !has_commits(mirror.clone(), wanted.to_vec()).await;
                if required || is_stale(&mirror, settings.refresh_interval) {
                    let result = run_git(
                        settings,
                        &[
                            "--git-dir".as_ref(),
                            mirror.as_os_str(),
                            "fetch".as_ref(),
                            "--prune".as_ref(),
                            "--quiet".as_ref(),
                            "origin".as_ref(),
                        ],
                    )
                    .await;
                    match result {
                        Ok(()) => mark_fetched(&mirror),
                        Err(e) if required => return Err(AppError::invalid(field, format!("cannot fetch {url}: {e}"))),
                        Err(e) => tracing::warn!(url = %url, error = %e, "refreshing a stale mirror failed; reading it as it is"),
                    }
                }
                Ok(mirror)
            }
        }
    }

    /// `PUT /api/v1/services/{id}/repository`: validates the location, makes it readable
    /// (clone or open, before the transaction), then stores it on the service.
    pub async fn set_service_repository(
        &self,
        ctx: &RequestContext,
        id: &str,
        if_match: Option<i64>,
        req: SetRepository,
    ) -> AppResult<Versioned<Service>> {
        let before: Versioned<Service> =
            decode(&self.store.get(Kind::Service, id).await?.ok_or_else(|| AppError::not_found(Kind::Service, id))?)?;
        ctx.actor.require(Permission::ManageCatalog, &service_scopes(&before.value))?;
        let url = req.url.trim().to_string();
        let location = parse_location("url", &url)?;
        let (tag_pattern, include_paths) = parse_package(&self.repositories.changelog, req.tag_pattern.as_deref(), &req.include_paths)?;
        self.prepare_repository("url", &location, true, &[]).await?;

        let mut m = Mutation::begin(self, ctx).await?;
        let current: Versioned<Service> = m.get(Kind::Service, id).await?;
        ctx.actor.require(Permission::ManageCatalog, &service_scopes(&current.value))?;
        check_if_match(Kind::Service, &current.value.id, if_match, current.version)?;
        let mut next = current.value.clone();
        next.repository =
            Some(SourceRepository { url, attached_by: ctx.actor.username.clone(), attached_at: m.now, tag_pattern, include_paths });
        let place = Placement { key: Some(next.name.clone()), parent: Some(next.team_id.clone()), state: None };
        let version = m.update("service.repository.set", Kind::Service, &next.id.clone(), place, &current, &next).await?;
        let out = Versioned { version, value: next };
        m.commit(200, &out.value).await?;
        Ok(out)
    }

    /// `DELETE /api/v1/services/{id}/repository`: the service no longer names a repository
    /// (changes already imported stay; its mirror stays on disk as a cache).
    pub async fn remove_service_repository(&self, ctx: &RequestContext, id: &str, if_match: Option<i64>) -> AppResult<Versioned<Service>> {
        let mut m = Mutation::begin(self, ctx).await?;
        let current: Versioned<Service> = m.get(Kind::Service, id).await?;
        ctx.actor.require(Permission::ManageCatalog, &service_scopes(&current.value))?;
        check_if_match(Kind::Service, &current.value.id, if_match, current.version)?;
        if current.value.repository.is_none() {
            return Ok(current);
        }
        let mut next = current.value.clone();
        next.repository = None;
        let place = Placement { key: Some(next.name.clone()), parent: Some(next.team_id.clone()), state: None };
        let version = m.update("service.repository.remove", Kind::Service, &next.id.clone(), place, &current, &next).await?;
        let out = Versioned { version, value: next };
        m.commit(200, &out.value).await?;
        Ok(out)
    }

    /// What each component of a release would bring into `environment`, read from the
    /// repositories (I/O; no transaction open). Used by the import and by notes.
    pub(crate) async fn read_ranges(
        &self,
        release: &Release,
        environment: Option<&str>,
    ) -> AppResult<(Option<String>, Vec<ComponentChanges>)> {
        let env = match environment {
            Some(e) => Some(
                decode::<signalbox_domain::model::Environment>(
                    &self
                        .store
                        .get(Kind::Environment, e)
                        .await?
                        .ok_or_else(|| AppError::invalid("environment", format!("no environment with id or name {e:?}")))?,
                )?
                .value,
            ),
            None => None,
        };
        let mut out = Vec::new();
        for (i, component) in release.components.iter().enumerate() {
            out.push(self.read_component(i, component, env.as_ref()).await?);
        }
        // Bounds an import's transaction and the notes' size alike.
        let total: usize = out.iter().map(|c| c.entries.len()).sum();
        if total > MAX_IMPORT_COMMITS {
            return Err(AppError::invalid(
                "environment",
                format!(
                    "the ranges hold {total} commits, more than {MAX_IMPORT_COMMITS}; measure against an environment closer to this release (or tag releases)"
                ),
            ));
        }
        Ok((env.map(|e| e.name), out))
    }

    async fn read_component(
        &self,
        index: usize,
        component: &Component,
        env: Option<&signalbox_domain::model::Environment>,
    ) -> AppResult<ComponentChanges> {
        let service: Service = match self.store.get(Kind::Service, &component.service_id).await? {
            Some(r) => decode(&r)?.value,
            None => return Err(AppError::Internal(format!("component service {} is missing", component.service_id))),
        };
        let artifact: Option<Artifact> = match self.store.get(Kind::Artifact, &component.artifact_id).await? {
            Some(r) => Some(decode(&r)?.value),
            None => None,
        };
        let mut range = ComponentRange {
            service: service.name.clone(),
            service_id: service.id.clone(),
            version: component.version.clone(),
            digest: component.digest.clone(),
            commit: artifact.as_ref().and_then(|a| a.source_commit.clone()),
            previous_version: None,
            previous_commit: None,
            basis: String::new(),
            commits: 0,
        };
        let Some(repo) = &service.repository else {
            range.basis = format!(
                "not read: {} names no repository (attach one: signalbox service set-repository {} URL)",
                service.name, service.name
            );
            return Ok(ComponentChanges { range, entries: Vec::new() });
        };
        let Some(to) = range.commit.clone() else {
            range.basis = format!(
                "not read: artifact {}@{} has no source_commit (register artifacts with --source-commit)",
                service.name, component.version
            );
            return Ok(ComponentChanges { range, entries: Vec::new() });
        };
        // What runs in the environment now: the last successful deployment, else what the
        // latest one replaced.
        let mut from: Option<String> = None;
        if let Some(env) = env {
            let q = ListQuery::all(Kind::Deployment).with_field("service_id", &service.id).with_field("environment_id", &env.id);
            let page = self.store.list(&q).await?;
            let mut deployments: Vec<Deployment> = page.items.iter().map(|r| decode(r).map(|v| v.value)).collect::<AppResult<_>>()?;
            deployments.sort_by(|a, b| (a.created_at, &a.key).cmp(&(b.created_at, &b.key)));
            let running = deployments
                .iter()
                .rev()
                .find(|d| d.rollout.phase == RolloutPhase::Succeeded)
                .map(|d| (d.artifact.clone(), format!("deployment {}", d.key)))
                .or_else(|| deployments.last().and_then(|d| d.previous.clone().map(|p| (p, format!("what {} replaced", d.key)))));
            match running {
                Some((deployed, how)) => {
                    range.previous_version = Some(deployed.version.clone());
                    let previous: Option<Artifact> = match self.store.get(Kind::Artifact, &deployed.artifact_id).await? {
                        Some(r) => Some(decode(&r)?.value),
                        None => None,
                    };
                    match previous.and_then(|a| a.source_commit) {
                        Some(c) => {
                            range.basis = format!("since {}@{} in {} ({how})", service.name, deployed.version, env.name);
                            range.previous_commit = Some(c.clone());
                            from = Some(c);
                        }
                        None => {
                            range.basis = format!(
                                "{}@{} runs in {} but has no source_commit: since the previous release tag",
                                service.name, deployed.version, env.name
                            );
                        }
                    }
                }
                None => range.basis = format!("nothing deployed in {} yet: since the previous release tag", env.name),
            }
        } else {
            range.basis = "no environment given: since the previous release tag".into();
        }
        let location = parse_location("repository", &repo.url)?;
        let field = format!("components/{index}/source_commit");
        let wanted: Vec<String> = std::iter::once(to.clone()).chain(from.clone()).collect();
        let path = self.prepare_repository(&field, &location, false, &wanted).await?;
        let config = self.repositories.changelog.clone();
        let (from2, to2) = (from.clone(), to.clone());
        let package = package_scope(repo);
        let read =
            tokio::task::spawn_blocking(move || signalbox_versioning::changes_between_in(&path, &config, &package, from2.as_deref(), &to2))
                .await
                .map_err(|e| AppError::Internal(format!("reading history: {e}")))?;
        let read = read.map_err(|e| match e {
            signalbox_versioning::Error::Invalid { field: f, .. } if f == "to" => AppError::invalid(
                &field,
                format!(
                    "artifact {}@{} names commit {to}, which is not in {} (even after fetching); register artifacts with the commit they were built from",
                    service.name, component.version, repo.url
                ),
            ),
            signalbox_versioning::Error::Invalid { field: f, .. } if f == "from" => AppError::invalid(
                "environment",
                format!(
                    "{} runs an artifact built from commit {}, which is not in {}; the service's repository may have changed (attach the right one)",
                    range.basis,
                    from.clone().unwrap_or_default(),
                    repo.url
                ),
            ),
            other => AppError::invalid(&field, format!("reading {}: {other}", repo.url)),
        })?;
        if from.is_none() {
            if let Some(tag) = &read.since_tag {
                range.basis.push_str(&format!(" ({tag})"));
            } else if !range.basis.starts_with("since") {
                range.basis.push_str(" (none: every commit)");
            }
        }
        range.commits = read.entries.len();
        Ok(ComponentChanges { range, entries: read.entries })
    }

    /// `POST /api/v1/releases/{id}/changes/import?environment=…`: links the commits each
    /// component brings over what runs in `environment` as changes of the release. Importing
    /// again links nothing twice; a change already recorded for the same service and commit is
    /// linked, not duplicated. The release's content changes (and with it the content digest
    /// approvals bind to), so it must still be editable.
    pub async fn import_release_changes(&self, ctx: &RequestContext, id: &str, environment: Option<&str>) -> AppResult<ImportResult> {
        let release: Versioned<Release> =
            decode(&self.store.get(Kind::Release, id).await?.ok_or_else(|| AppError::not_found(Kind::Release, id))?)?;
        ctx.actor.require(Permission::EditRelease, &release_scopes(&release.value))?;
        check_editable(&release.value)?;
        let (env, read) = self.read_ranges(&release.value, environment).await?;

        let mut m = Mutation::begin(self, ctx).await?;
        let current: Versioned<Release> = m.get(Kind::Release, id).await?;
        ctx.actor.require(Permission::EditRelease, &release_scopes(&current.value))?;
        check_editable(&current.value)?;
        if current.value.components != release.value.components {
            // The ranges were read for other components: the client retries.
            return Err(AppError::PreconditionFailed {
                kind: Kind::Release,
                id: current.value.id.clone(),
                expected: release.version,
                current: Some(current.version),
            });
        }
        let mut next = current.value.clone();
        let (mut created, mut linked, mut already) = (0usize, 0usize, 0usize);
        for component in &read {
            for entry in &component.entries {
                let key = format!("{}:{:?}:{}", component.range.service_id, ChangeKind::Commit, entry.id);
                let change_id = match m.find::<Change>(Kind::Change, &key).await? {
                    Some(existing) => existing.value.id,
                    None => {
                        let change = change_from_entry(&self.repositories.changelog, &component.range.service_id, entry, m.now);
                        let place = Placement { key: Some(key), parent: Some(component.range.service_id.clone()), state: None };
                        m.insert("change.import", Kind::Change, &change.id, place, &change).await?;
                        created += 1;
                        change.id
                    }
                };
                if next.change_ids.contains(&change_id) {
                    already += 1;
                } else {
                    next.change_ids.push(change_id);
                    linked += 1;
                }
            }
        }
        let mut result = ImportResult {
            release: current.value.key.clone(),
            environment: env,
            components: read.into_iter().map(|c| c.range).collect(),
            created,
            linked,
            already_linked: already,
            revision: current.version,
            content_digest: current.value.content_digest.clone(),
        };
        if linked == 0 {
            // Nothing to write: the transaction rolls back when dropped.
            return Ok(result);
        }
        next.content_digest = Release::compute_content_digest(&next.components, &next.change_ids);
        let place = Placement { key: Some(next.key.clone()), parent: next.domain_id.clone(), state: Some(next.state.as_str().to_string()) };
        m.set_reason(Some(format!("imported {linked} changes from git")));
        let version = m.update("release.changes.import", Kind::Release, &next.id.clone(), place, &current, &next).await?;
        result.revision = version;
        result.content_digest = next.content_digest.clone();
        m.commit(200, &result).await?;
        Ok(result)
    }
}

fn check_editable(release: &Release) -> AppResult<()> {
    if release.state.content_editable() {
        return Ok(());
    }
    Err(AppError::Conflict {
        code: "release-content-locked",
        detail: format!(
            "{} is {}; its changes are locked after approval, so nothing can be imported. Its notes are still generated from the repositories (GET /api/v1/releases/{}/notes)",
            release.key, release.state, release.key
        ),
    })
}

/// A bounded copy of `s` (at most `max` characters).
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The header as a one-line title: `type(scope)!: description`, or the subject.
pub(crate) fn entry_title(e: &Entry) -> String {
    match &e.r#type {
        Some(t) => format!(
            "{t}{}{}: {}",
            e.scope.as_ref().map(|s| format!("({s})")).unwrap_or_default(),
            if e.breaking { "!" } else { "" },
            e.description
        ),
        None => e.description.clone(),
    }
}

pub(crate) fn change_from_entry(config: &ChangelogConfig, service_id: &str, e: &Entry, now: DateTime<Utc>) -> Change {
    let committed_at = DateTime::from_timestamp(e.time, 0);
    let mut links = Vec::new();
    if !config.commit_url.is_empty() {
        links.push(config.commit_url.replace("{id}", &e.id));
    }
    if !config.issue_url.is_empty() {
        links.extend(e.issues.iter().map(|i| config.issue_url.replace("{id}", &i.id)));
    }
    Change {
        id: new_id(Kind::Change),
        kind: ChangeKind::Commit,
        reference: e.id.clone(),
        title: clip(&entry_title(e), 500),
        change_type: e.r#type.clone(),
        author: clip(&e.author.name, 200),
        service_id: Some(service_id.to_string()),
        authored_at: None,
        committed_at,
        merged_at: None,
        links,
        risk_flags: if e.breaking { vec!["breaking_change".to_string()] } else { Vec::new() },
        bug: None,
        commit: Some(CommitDetails {
            scope: e.scope.clone(),
            description: clip(&e.description, 2000),
            breaking: e.breaking,
            breaking_description: e.breaking_description.as_deref().map(|d| clip(d, 4000)),
            group: e.group.clone(),
            issues: e.issues.iter().map(|i| format!("#{}", i.id)).collect(),
            author_email: clip(&e.author.email, 200),
            co_authors: e.co_authors.iter().map(|p| clip(&format!("{} <{}>", p.name, p.email), 200)).collect(),
        }),
        created_at: now,
    }
}

/// `PUT /api/v1/services/{id}/repository`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRepository {
    /// An absolute path on the server, or a `file://`, `https://` or `ssh://` URL (mirrored).
    pub url: String,
    /// The service is one package of a monorepo with its own release tags: a template
    /// (`api@{version}`, `web-v{version}`; other characters literal) or a regex matched against
    /// the whole tag name (the version is its `version` group). Absent or empty: the server's
    /// `[changelog] tag_pattern` (`v1.2.3` or `1.2.3` by default).
    #[serde(default)]
    pub tag_pattern: Option<String>,
    /// The service is one package of a monorepo: only commits that change a path matching one
    /// of these globs (relative to the repository root; `*` stays within a directory, `**`
    /// crosses directories, a bare directory means everything below it) are its changes.
    /// Absent or empty: every path.
    #[serde(default)]
    pub include_paths: Vec<String>,
}

/// The most include paths a service may name.
pub const MAX_INCLUDE_PATHS: usize = 64;

/// Validates a service's package (`tag_pattern`, `include_paths`) exactly as `signalbox
/// changelog --tag-pattern … --include-path …` reads them (`signalbox_versioning::check_scope`),
/// naming the field at fault (`tag_pattern`, `include_paths/<i>`) and how to fix it. Blank
/// values mean "not set".
pub fn parse_package(
    config: &ChangelogConfig,
    tag_pattern: Option<&str>,
    include_paths: &[String],
) -> AppResult<(Option<String>, Vec<String>)> {
    let tag_pattern = tag_pattern.map(str::trim).filter(|p| !p.is_empty()).map(String::from);
    if let Some(p) = &tag_pattern {
        let bad = |msg: String| Err(AppError::invalid("tag_pattern", msg));
        if p.chars().count() > 500 {
            return bad("is longer than 500 characters".into());
        }
        if p.chars().any(char::is_control) {
            return bad("contains control characters".into());
        }
        let sel = signalbox_versioning::Selection { tag_pattern: Some(p.clone()), ..Default::default() };
        if let Err(e) = signalbox_versioning::check_scope(config, &sel) {
            return bad(format!(
                "{}; give a template such as `api@{{version}}` or `web-v{{version}}`, or a regex whose `version` group captures the SemVer version",
                versioning_message(e)
            ));
        }
    }
    if include_paths.len() > MAX_INCLUDE_PATHS {
        return Err(AppError::invalid("include_paths", format!("names {} globs, more than {MAX_INCLUDE_PATHS}", include_paths.len())));
    }
    let mut paths = Vec::with_capacity(include_paths.len());
    for (i, raw) in include_paths.iter().enumerate() {
        let field = format!("include_paths/{i}");
        let bad = |msg: String| Err(AppError::invalid(&field, msg));
        let glob = raw.trim();
        if glob.is_empty() {
            return bad("is empty: give a glob relative to the repository root, e.g. `services/api/**`".into());
        }
        if glob.chars().count() > 500 {
            return bad("is longer than 500 characters".into());
        }
        if glob.chars().any(char::is_control) {
            return bad("contains control characters".into());
        }
        if glob.starts_with('/') || glob.split('/').any(|part| part == "..") {
            return bad(format!(
                "`{glob}`: paths are relative to the repository root and cannot leave it; write e.g. `{}`",
                glob.trim_start_matches('/').replace("../", "")
            ));
        }
        let sel = signalbox_versioning::Selection { include_paths: vec![glob.to_string()], ..Default::default() };
        if let Err(e) = signalbox_versioning::check_scope(config, &sel) {
            return bad(versioning_message(e));
        }
        paths.push(glob.to_string());
    }
    Ok((tag_pattern, paths))
}

/// The message of a versioning error without the flag name it carries (the caller names the field).
fn versioning_message(e: signalbox_versioning::Error) -> String {
    match e {
        signalbox_versioning::Error::Invalid { message, .. } => message,
        other => other.to_string(),
    }
}

/// What a service's repository reads: its package's tags and paths, or the whole repository.
fn package_scope(repo: &SourceRepository) -> signalbox_versioning::Selection {
    signalbox_versioning::Selection {
        tag_pattern: repo.tag_pattern.clone(),
        include_paths: repo.include_paths.clone(),
        ..Default::default()
    }
}

/// What one component brings, and from where it was measured.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ComponentRange {
    pub service: String,
    pub service_id: String,
    pub version: String,
    pub digest: String,
    /// The artifact's source commit.
    pub commit: Option<String>,
    /// What runs in the environment now, when something does.
    pub previous_version: Option<String>,
    pub previous_commit: Option<String>,
    /// How the range was chosen, or why it was not read.
    pub basis: String,
    /// Commits listed (after the changelog's grouping and skip rules).
    pub commits: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct ComponentChanges {
    pub range: ComponentRange,
    pub entries: Vec<Entry>,
}

/// What an import did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImportResult {
    pub release: String,
    pub environment: Option<String>,
    pub components: Vec<ComponentRange>,
    /// Change records created.
    pub created: usize,
    /// Changes newly linked to the release (created or found).
    pub linked: usize,
    /// Changes that were linked already (a repeated import).
    pub already_linked: usize,
    /// The release's revision (its ETag) and content digest after the import.
    pub revision: i64,
    pub content_digest: String,
}

/// Groups of the configured order, then any other group names in first-seen order.
pub(crate) fn group_rank(config: &ChangelogConfig) -> BTreeMap<String, usize> {
    config.group_order.iter().enumerate().map(|(i, g)| (g.clone(), i)).collect()
}

/// Distinct values in first-seen order.
pub(crate) fn dedup(items: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut seen = HashSet::new();
    items.into_iter().filter(|i| seen.insert(i.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_validated_with_the_fix() {
        assert_eq!(parse_location("url", "/srv/git/app.git").unwrap(), Location::Local("/srv/git/app.git".into()));
        assert!(matches!(parse_location("url", "file:///srv/git/app.git").unwrap(), Location::Remote(_)));
        assert!(matches!(parse_location("url", "https://git.example.com/org/app.git").unwrap(), Location::Remote(_)));
        assert!(matches!(parse_location("url", "ssh://git@git.example.com:2222/org/app.git").unwrap(), Location::Remote(_)));
        for (bad, words) in [
            ("", "empty"),
            ("relative/path", "not an accepted"),
            ("/srv/../etc", ".."),
            ("git@github.com:org/app.git", "ssh://git@github.com/org/app.git"),
            ("http://git.example.com/app.git", "https"),
            ("https://user:secret@git.example.com/app.git", "credentials"),
            ("https://token@git.example.com/app.git", "credentials"),
            ("ext::sh -c touch% /tmp/pwned", "spaces"),
            ("ext::sh", "not an accepted"),
            ("file://relative", "absolute"),
            ("https://", "not a URL"),
            ("https://host", "no repository path"),
            ("-uhttps://x/y", "not an accepted"),
        ] {
            let err = parse_location("url", bad).unwrap_err().to_string();
            assert!(err.contains("url") && err.contains(words), "{bad}: {err}");
        }
    }
}
