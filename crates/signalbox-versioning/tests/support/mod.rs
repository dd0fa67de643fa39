//! Repositories for the integration tests, built with the `git` binary in temp directories with
//! fixed names, emails and dates (so commit ids, and with them snapshots, are the same on every
//! machine), and the generator of long histories, `shared/bench/make-history-repo.py`.
#![allow(dead_code)] // each test binary uses part of it

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The date of tick 0: 2023-11-14T22:13:20Z. Each commit is one hour after the previous one.
pub const EPOCH: u64 = 1_700_000_000;

pub struct Git {
    dir: tempfile::TempDir,
    pub tick: u64,
    /// The author of the next commits.
    pub author: (String, String),
}

impl Git {
    pub fn new() -> Git {
        let dir = tempfile::tempdir().unwrap();
        let g = Git { dir, tick: 0, author: ("Test Author".into(), "test@example.org".into()) };
        g.run(&["init", "-q", "-b", "main"]);
        g
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `git` with no user or system configuration (a user's `commit.template` or hooks
    /// path must not change the history), fixed identities and the current tick as the date.
    pub fn run(&self, args: &[&str]) -> String {
        let date = format!("{} +0000", EPOCH + self.tick * 3600);
        let out = git_command(self.path())
            .args(["-c", &format!("user.name={}", self.author.0), "-c", &format!("user.email={}", self.author.1)])
            .args(args)
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Commits a change to `file` with `message`; returns the full hash.
    pub fn commit(&mut self, file: &str, message: &str) -> String {
        self.commit_files(&[file], message)
    }

    /// Commits a change to each of `files` in one commit.
    pub fn commit_files(&mut self, files: &[&str], message: &str) -> String {
        self.tick += 1;
        for file in files {
            let path = self.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let old = std::fs::read_to_string(&path).unwrap_or_default();
            std::fs::write(&path, format!("{old}{}\n", self.tick)).unwrap();
        }
        self.run(&["add", "-A"]);
        self.run(&["commit", "-q", "-m", message]);
        self.head()
    }

    /// Commits as another author.
    pub fn commit_as(&mut self, name: &str, email: &str, file: &str, message: &str) -> String {
        let previous = std::mem::replace(&mut self.author, (name.into(), email.into()));
        let id = self.commit(file, message);
        self.author = previous;
        id
    }

    /// `git revert` of `id` (git's own message: `Revert "…"` / `This reverts commit <sha>.`).
    pub fn revert(&mut self, id: &str) -> String {
        self.tick += 1;
        self.run(&["revert", "--no-edit", id]);
        self.head()
    }

    /// A `--no-ff` merge of `branch` into the current branch.
    pub fn merge(&mut self, branch: &str, message: &str) -> String {
        self.tick += 1;
        self.run(&["merge", "-q", "--no-ff", "-m", message, branch]);
        self.head()
    }

    pub fn head(&self) -> String {
        self.run(&["rev-parse", "HEAD"])
    }

    pub fn tag(&self, name: &str) {
        self.run(&["tag", name]);
    }

    pub fn annotated_tag(&self, name: &str, message: &str) {
        self.run(&["tag", "-a", name, "-m", message]);
    }
}

/// `git` in `dir`, isolated from the machine's configuration.
pub fn git_command(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.args(["-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false", "-c", "init.defaultBranch=main"])
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::null());
    cmd
}

/// `shared/bench/make-history-repo.py`: beside the repository (`../shared`), at /work/shared,
/// or in `SIGNALBOX_SHARED_DIR`.
pub fn history_script() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut candidates =
        vec![manifest.join("../../../shared/bench/make-history-repo.py"), manifest.join("../../shared/bench/make-history-repo.py")];
    if let Ok(dir) = std::env::var("SIGNALBOX_SHARED_DIR") {
        candidates.push(Path::new(&dir).join("bench/make-history-repo.py"));
    }
    candidates.push(PathBuf::from("/work/shared/bench/make-history-repo.py"));
    candidates
        .into_iter()
        .find(|p| p.exists())
        .expect("shared/bench/make-history-repo.py beside the repository, at /work/shared, or in SIGNALBOX_SHARED_DIR")
}

/// Builds `dest` with the generator. Its output depends only on its arguments (a seeded PRNG,
/// dates computed from the commit number, `git fast-import`), so the commit ids are stable.
pub fn generate_history(dest: &Path, commits: u32, tag_every: u32, seed: u32) {
    let out = Command::new("python3")
        .arg(history_script())
        .arg(dest)
        .args(["--commits", &commits.to_string(), "--tag-every", &tag_every.to_string(), "--seed", &seed.to_string()])
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("python3 runs (the history generator is a Python script)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
