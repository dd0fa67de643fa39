//! Reading history with gix: tags, one pass over the commits between refs, and path filters.
//!
//! Each commit object is read and decoded exactly once; releases are then cut from the parent
//! links in memory, so the whole job is linear in commits plus tags. Tree diffs are computed
//! only when a path filter asks for them, and prune every directory no glob can reach (the
//! lesson of git-cliff#640/#767 and convco#194 in the reference, section 4.1).

use gix::objs::{CommitRef, FindExt, TreeRefIter};
use gix::ObjectId;
use std::collections::HashMap;
use std::path::Path;

use crate::version::TagPattern;
use crate::Error;

/// One commit as the changelog needs it, kept small: a long history holds one per commit. The
/// author and the message live in the [`Graph`] (interned people, one message arena).
#[derive(Debug, Clone)]
pub struct CommitInfo {
    pub id: ObjectId,
    pub tree: ObjectId,
    pub parents: Parents,
    /// Index into [`Graph::people`].
    pub author: u32,
    /// Committer time, seconds since the epoch (UTC).
    pub time: i64,
    /// Byte range of the message in [`Graph`]'s message arena.
    message_start: usize,
    message_len: u32,
}

/// A commit's parents without a heap allocation for the usual zero or one.
#[derive(Debug, Clone)]
pub enum Parents {
    None,
    One(ObjectId),
    Many(Box<[ObjectId]>),
}

impl Parents {
    fn from_ids(mut ids: impl Iterator<Item = ObjectId>) -> Parents {
        let Some(first) = ids.next() else { return Parents::None };
        let Some(second) = ids.next() else { return Parents::One(first) };
        Parents::Many([first, second].into_iter().chain(ids).collect())
    }

    pub fn as_slice(&self) -> &[ObjectId] {
        match self {
            Parents::None => &[],
            Parents::One(id) => std::slice::from_ref(id),
            Parents::Many(ids) => ids,
        }
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    pub fn first(&self) -> Option<&ObjectId> {
        self.as_slice().first()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, ObjectId> {
        self.as_slice().iter()
    }
}

/// A commit read from the object database, before it is stored in a [`Graph`].
struct ReadCommit {
    tree: ObjectId,
    parents: Parents,
    time: i64,
}

/// A tag whose name matched a [`TagPattern`].
#[derive(Debug, Clone)]
pub struct ReleaseTag {
    pub name: String,
    pub version: semver::Version,
    pub commit: ObjectId,
}

/// An open repository.
pub struct Repo {
    repo: gix::Repository,
}

/// Commits loaded by a walk, in discovery order (each tip's first-parent chain first).
#[derive(Debug, Default)]
pub struct Graph {
    pub commits: Vec<CommitInfo>,
    pub index: HashMap<ObjectId, usize>,
    /// Distinct authors as (name, email); [`CommitInfo::author`] indexes this.
    pub people: Vec<(String, String)>,
    people_index: HashMap<String, u32>,
    /// Every message (decoded as UTF-8 with invalid bytes replaced, cut to
    /// [`crate::message::MAX_MESSAGE_BYTES`] as the parser would) back to back.
    messages: String,
}

impl Graph {
    pub fn get(&self, id: &ObjectId) -> Option<&CommitInfo> {
        self.index.get(id).map(|&i| &self.commits[i])
    }

    /// The message of commit `i`, cut to [`crate::message::MAX_MESSAGE_BYTES`] (all any reader parses).
    pub fn message(&self, i: usize) -> &str {
        let c = &self.commits[i];
        &self.messages[c.message_start..c.message_start + c.message_len as usize]
    }

    /// The author of commit `i` as (name, email).
    pub fn author(&self, i: usize) -> (&str, &str) {
        let (name, email) = &self.people[self.commits[i].author as usize];
        (name, email)
    }

    fn intern_person(&mut self, name: &str, email: &str, key: &mut String) -> u32 {
        key.clear();
        key.push_str(name);
        key.push('\0');
        key.push_str(email);
        if let Some(&i) = self.people_index.get(key.as_str()) {
            return i;
        }
        let i = u32::try_from(self.people.len()).expect("fewer than 2^32 authors");
        self.people.push((name.to_string(), email.to_string()));
        self.people_index.insert(key.clone(), i);
        i
    }

    /// Commits reachable from `tip` inside the graph, skipping `skip` ones and not walking past
    /// them; in discovery order (newest first along the first parent).
    pub fn reachable(&self, tip: usize, skip: &mut dyn FnMut(usize) -> bool) -> Vec<usize> {
        let mut out = Vec::new();
        let mut stack = vec![tip];
        while let Some(i) = stack.pop() {
            if skip(i) {
                continue;
            }
            out.push(i);
            for p in self.commits[i].parents.as_slice().iter().rev() {
                if let Some(&pi) = self.index.get(p) {
                    stack.push(pi);
                }
            }
        }
        out
    }
}

impl Repo {
    /// Open the repository containing `path` (a work tree, a subdirectory of one, or a bare repository).
    pub fn open(path: &Path) -> Result<Repo, Error> {
        if !path.exists() {
            return Err(Error::Invalid { field: "--repo".into(), message: format!("{}: no such directory", path.display()) });
        }
        let mut repo = gix::discover(path).map_err(|e| Error::Invalid {
            field: "--repo".into(),
            message: format!("{} is not inside a git repository ({e}); pass --repo with the path of a clone", path.display()),
        })?;
        // No object cache by default: every commit is read exactly once, so a cache would only
        // hold copies of objects never asked for again (16 MiB of peak memory on a long history).
        repo.object_cache_size(None);
        Ok(Repo { repo })
    }

    /// Keep recently read objects: trees are re-read across neighbouring commits when a path
    /// filter compares them.
    pub fn cache_trees(&mut self) {
        self.repo.object_cache_size(Some(16 * 1024 * 1024));
    }

    /// Resolve a revision (`HEAD`, a branch, a tag, a hash, `HEAD~3`, …) to a commit id.
    pub fn resolve(&self, spec: &str, flag: &str) -> Result<ObjectId, Error> {
        let id = self
            .repo
            .rev_parse_single(spec)
            .map_err(|e| Error::Invalid { field: flag.into(), message: format!("unknown revision `{spec}`: {e}") })?;
        let object = id.object().map_err(|e| Error::Invalid { field: flag.into(), message: format!("cannot read `{spec}`: {e}") })?;
        let commit = object
            .peel_to_commit()
            .map_err(|e| Error::Invalid { field: flag.into(), message: format!("`{spec}` does not name a commit: {e}") })?;
        Ok(commit.id)
    }

    /// Every tag whose name matches `pattern` and carries a valid SemVer version, with the
    /// commit it points to (annotated tags peeled). Tags on non-commits are ignored.
    pub fn release_tags(&self, pattern: &TagPattern) -> Result<Vec<ReleaseTag>, Error> {
        let platform = self.repo.references().map_err(|e| Error::Git(format!("reading references: {e}")))?;
        let tags = platform.tags().map_err(|e| Error::Git(format!("reading tags: {e}")))?;
        let mut out = Vec::new();
        for reference in tags {
            let mut reference = reference.map_err(|e| Error::Git(format!("reading a tag: {e}")))?;
            let name = reference.name().shorten().to_string();
            let Some(version) = pattern.version_of(&name) else { continue };
            let Ok(target) = reference.peel_to_id() else { continue };
            let target = target.detach();
            let is_commit = self.repo.find_header(target).map(|h| h.kind() == gix::objs::Kind::Commit).unwrap_or(false);
            if is_commit {
                out.push(ReleaseTag { name, version, commit: target });
            }
        }
        Ok(out)
    }

    /// Load the commits reachable from `tips`, not walking into commits for which `stop` holds
    /// (those are not loaded). One object read and decode per commit.
    pub fn walk(&self, tips: &[ObjectId], stop: &dyn Fn(&ObjectId) -> bool) -> Result<Graph, Error> {
        let mut graph = Graph::default();
        let mut buf = Vec::new();
        let mut key = String::new();
        let mut stack: Vec<ObjectId> = tips.iter().rev().copied().collect();
        while let Some(id) = stack.pop() {
            if graph.index.contains_key(&id) {
                continue;
            }
            let (commit, (name, email), message) = self.read_commit_with(id, &mut buf, |commit| {
                let author = commit.author().map_err(|e| Error::Git(format!("commit {id} has a corrupt author: {e}")))?;
                Ok((author.name.trim_ascii(), author.email.trim_ascii()))
            })?;
            let author = graph.intern_person(&String::from_utf8_lossy(name), &String::from_utf8_lossy(email), &mut key);
            let message = String::from_utf8_lossy(message);
            let message = crate::message::truncate_message(&message);
            let message_start = graph.messages.len();
            graph.messages.push_str(message);
            let message_len = u32::try_from(message.len()).expect("messages are cut to 64 KiB");
            for p in commit.parents.as_slice().iter().rev() {
                if !graph.index.contains_key(p) && !stop(p) {
                    stack.push(*p);
                }
            }
            graph.index.insert(id, graph.commits.len());
            graph.commits.push(CommitInfo {
                id,
                tree: commit.tree,
                parents: commit.parents,
                author,
                time: commit.time,
                message_start,
                message_len,
            });
        }
        Ok(graph)
    }

    /// Read commit `id` and hand its decoded form to `extra` for the borrowed fields the caller wants.
    fn read_commit_with<'b, T>(
        &self,
        id: ObjectId,
        buf: &'b mut Vec<u8>,
        extra: impl FnOnce(&CommitRef<'b>) -> Result<T, Error>,
    ) -> Result<(ReadCommit, T, &'b [u8]), Error> {
        let data = self.repo.objects.find(&id, buf).map_err(|e| Error::Git(format!("reading commit {id}: {e}")))?;
        if data.kind != gix::objs::Kind::Commit {
            return Err(Error::Git(format!("object {id} is a {}, expected a commit", data.kind)));
        }
        let commit =
            CommitRef::from_bytes(data.data, self.repo.object_hash()).map_err(|e| Error::Git(format!("commit {id} is corrupt: {e}")))?;
        let more = extra(&commit)?;
        let time = commit.committer().ok().and_then(|c| c.time().ok()).map_or(0, |t| t.seconds);
        Ok((ReadCommit { tree: commit.tree(), parents: Parents::from_ids(commit.parents()), time }, more, commit.message))
    }

    /// Whether `commit` changes a path matching `filter`, compared with its first parent (a root
    /// commit is compared with the empty tree). Merge commits are compared with their first
    /// parent only, like `git log --first-parent -- PATH` would show them.
    pub fn touches(&self, commit: &CommitInfo, parent_tree: Option<ObjectId>, filter: &PathFilter) -> Result<bool, Error> {
        let mut bufs = TreeBufs::default();
        self.diff_trees(parent_tree, Some(commit.tree), &mut String::new(), filter, &mut bufs, 0)
    }

    /// The tree of a loaded or unloaded commit.
    pub fn tree_of(&self, id: ObjectId) -> Result<ObjectId, Error> {
        let mut buf = Vec::new();
        Ok(self.read_commit_with(id, &mut buf, |_| Ok(()))?.0.tree)
    }

    fn tree_entries(&self, id: Option<ObjectId>, buf: &mut Vec<u8>) -> Result<Vec<(Vec<u8>, bool, ObjectId)>, Error> {
        let Some(id) = id else { return Ok(Vec::new()) };
        let data = self.repo.objects.find(&id, buf).map_err(|e| Error::Git(format!("reading tree {id}: {e}")))?;
        let mut out = Vec::new();
        for entry in TreeRefIter::from_bytes(data.data, self.repo.object_hash()) {
            let entry = entry.map_err(|e| Error::Git(format!("tree {id} is corrupt: {e}")))?;
            out.push((entry.filename.to_vec(), entry.mode.is_tree(), entry.oid.to_owned()));
        }
        Ok(out)
    }

    fn diff_trees(
        &self,
        old: Option<ObjectId>,
        new: Option<ObjectId>,
        prefix: &mut String,
        filter: &PathFilter,
        bufs: &mut TreeBufs,
        depth: usize,
    ) -> Result<bool, Error> {
        if old == new || depth > 256 {
            return Ok(false);
        }
        let old_entries = self.tree_entries(old, &mut bufs.old)?;
        let new_entries = self.tree_entries(new, &mut bufs.new)?;
        let mut by_name: HashMap<&[u8], (Option<TreeSide>, Option<TreeSide>)> = HashMap::new();
        for (name, is_tree, id) in &old_entries {
            by_name.entry(name.as_slice()).or_default().0 = Some((*is_tree, *id));
        }
        for (name, is_tree, id) in &new_entries {
            by_name.entry(name.as_slice()).or_default().1 = Some((*is_tree, *id));
        }
        for (name, (o, n)) in by_name {
            if o.map(|x| x.1) == n.map(|x| x.1) && o.map(|x| x.0) == n.map(|x| x.0) {
                continue;
            }
            let len = prefix.len();
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(&String::from_utf8_lossy(name));
            let old_tree = o.filter(|x| x.0).map(|x| x.1);
            let new_tree = n.filter(|x| x.0).map(|x| x.1);
            let old_blob = o.is_some_and(|x| !x.0);
            let new_blob = n.is_some_and(|x| !x.0);
            let hit = ((old_blob || new_blob) && filter.matches_file(prefix))
                || ((old_tree.is_some() || new_tree.is_some())
                    && filter.may_match_under(prefix)
                    && self.diff_trees(old_tree, new_tree, prefix, filter, bufs, depth + 1)?);
            prefix.truncate(len);
            if hit {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// (is a tree, object id) of one side of a tree entry.
type TreeSide = (bool, ObjectId);

#[derive(Default)]
struct TreeBufs {
    old: Vec<u8>,
    new: Vec<u8>,
}

/// `--include-path` globs (`*` stays within a path segment, `**` crosses segments), with the
/// literal directory prefix of each glob so whole subtrees are skipped without reading them.
#[derive(Debug, Clone)]
pub struct PathFilter {
    set: globset::GlobSet,
    prefixes: Vec<String>,
}

impl PathFilter {
    pub fn new(globs: &[String]) -> Result<PathFilter, Error> {
        let mut builder = globset::GlobSetBuilder::new();
        let mut prefixes = Vec::new();
        for g in globs {
            let glob = globset::GlobBuilder::new(g).literal_separator(true).build().map_err(|e| Error::Invalid {
                field: "--include-path".into(),
                message: format!("`{g}` is not a valid glob: {e}; use e.g. `crates/api/**`"),
            })?;
            builder.add(glob);
            // A bare directory name (`crates/api`) also covers everything below it.
            if !g.contains(['*', '?', '[', '{']) {
                let below = format!("{}/**", g.trim_end_matches('/'));
                builder.add(
                    globset::GlobBuilder::new(&below).literal_separator(true).build().map_err(|e| Error::Invalid {
                        field: "--include-path".into(),
                        message: format!("`{g}` is not a valid path: {e}"),
                    })?,
                );
            }
            let literal: Vec<&str> = g.split('/').take_while(|seg| !seg.contains(['*', '?', '[', '{'])).collect();
            prefixes.push(literal.join("/"));
        }
        let set = builder.build().map_err(|e| Error::Invalid { field: "--include-path".into(), message: e.to_string() })?;
        Ok(PathFilter { set, prefixes })
    }

    pub fn matches_file(&self, path: &str) -> bool {
        self.set.is_match(path)
    }

    /// Whether a glob could match something below directory `dir`.
    pub fn may_match_under(&self, dir: &str) -> bool {
        self.prefixes.iter().any(|p| {
            p.is_empty()
                || p == dir
                || p.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
                || dir.strip_prefix(p.as_str()).is_some_and(|rest| rest.starts_with('/'))
        })
    }
}
