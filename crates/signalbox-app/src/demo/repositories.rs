//! Demo services backed by real git repositories (issue 5, part 5): each is created at demo
//! start with the `git` binary (a dozen commits: Conventional Commits, tags for the demo's
//! artifact versions, a revert, a breaking change, an unreleased commit), so release notes,
//! change import and `signalbox version next --repo …` show true content. Without a `git`
//! binary the demo goes on with made-up commit ids and says so in the log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Services whose demo artifacts come from a generated repository.
pub const REPOSITORY_SERVICES: [&str; 3] = ["checkout-api", "search-api", "fraud-scoring"];

/// A generated repository: where it is and the commit of each tagged demo version.
#[derive(Debug, Clone)]
pub struct DemoRepository {
    pub path: PathBuf,
    pub commits: BTreeMap<String, String>,
}

fn git(dir: &Path, args: &[&str], when: i64) -> Result<String, String> {
    let date = format!("{when} +0000");
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false", "-c", "core.hooksPath=/dev/null", "-c", "init.defaultBranch=main"])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_DATE", &date)
        .env("GIT_COMMITTER_DATE", &date)
        .env("GIT_COMMITTER_NAME", "Signalbox CI")
        .env("GIT_COMMITTER_EMAIL", "ci@example.com")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(format!("git {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// (author, message, tag) in commit order. `{revert}` is replaced by the id of the commit the
/// revert undoes (the one before it).
fn history(service: &str) -> Vec<(&'static str, String, Option<&'static str>)> {
    vec![
        ("Bruno Silva <bruno@example.com>", format!("chore: initial import of {service}"), None),
        ("Bruno Silva <bruno@example.com>", "feat(api): list and fetch endpoints".into(), None),
        ("Chen Wei <chen@example.com>", "fix(db): close connections on shutdown (#21)".into(), Some("v1.4.0")),
        ("Bruno Silva <bruno@example.com>", "fix(api): handle empty pages in list endpoints\n\nCloses #34".into(), Some("v1.4.1")),
        (
            "Bruno Silva <bruno@example.com>",
            "feat: add idempotent retries to outbound calls (#40)\n\nCo-authored-by: Dara Okafor <dara@example.com>".into(),
            None,
        ),
        ("Chen Wei <chen@example.com>", "perf(cache): cache price lookups for 30 s".into(), None),
        ("Emma Lindqvist <emma@example.com>", "feat(ui): experimental dark mode".into(), None),
        (
            "Emma Lindqvist <emma@example.com>",
            "Revert \"feat(ui): experimental dark mode\"\n\nThis reverts commit {revert}.".into(),
            None,
        ),
        ("Bruno Silva <bruno@example.com>", "docs: explain the retry settings".into(), Some("v1.5.0")),
        (
            "Chen Wei <chen@example.com>",
            "feat(api)!: drop the v1 endpoints\n\nThe v1 endpoints were deprecated in 1.4.\n\nBREAKING CHANGE: clients must call /v2; /v1 answers 410 Gone.\nRefs: #61".into(),
            None,
        ),
        ("Bruno Silva <bruno@example.com>", "fix(checkout): round totals half-even (#57)".into(), Some("v2.0.0-rc.1")),
        ("Farid Haddad <farid@example.com>", "fix(auth): reject expired tokens without a database read".into(), None),
    ]
}

fn history_len_revert(service: &str, index: usize) -> bool {
    history(service).get(index).is_some_and(|(_, m, _)| m.contains("{revert}"))
}

/// Creates one repository at `dir` (which must not exist).
pub fn create(dir: &Path, service: &str) -> Result<DemoRepository, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // Thirty days back, a commit every twelve hours.
    let start = chrono::Utc::now().timestamp() - 30 * 86_400;
    git(dir, &["init", "--quiet"], start)?;
    let mut commits = BTreeMap::new();
    let mut previous = String::new();
    for (i, (author, message, tag)) in history(service).into_iter().enumerate() {
        let when = start + i as i64 * 43_200;
        let message = message.replace("{revert}", &previous);
        let file = dir.join("CHANGES.txt");
        let mut text = std::fs::read_to_string(&file).unwrap_or_default();
        text.push_str(message.lines().next().unwrap_or_default());
        text.push('\n');
        std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
        if i == 0 {
            git(dir, &["add", "CHANGES.txt"], when)?;
        }
        // `-a`: the one file is tracked after the first commit (fewer processes, a faster demo start).
        git(dir, &["commit", "--quiet", "-a", "--author", author, "-m", &message], when)?;
        let next_is_revert = history_len_revert(service, i + 1);
        if tag.is_some() || next_is_revert {
            previous = git(dir, &["rev-parse", "HEAD"], when)?;
        }
        if let Some(t) = tag {
            git(dir, &["tag", "-a", t, "-m", &format!("{service} {t}")], when)?;
            commits.insert(t.trim_start_matches('v').to_string(), previous.clone());
        }
    }
    let path = dir.canonicalize().map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(DemoRepository { path, commits })
}

/// Creates the demo repositories under `root`; a failure (no `git`) is logged and leaves the
/// demo without them.
pub fn create_all(root: &Path) -> BTreeMap<String, DemoRepository> {
    let _ = std::fs::remove_dir_all(root);
    // One thread per repository: the demo start waits for the slowest, not for the sum.
    let results: Vec<(String, Result<DemoRepository, String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = REPOSITORY_SERVICES
            .iter()
            .map(|service| (service.to_string(), scope.spawn(move || create(&root.join(service), service))))
            .collect();
        handles.into_iter().map(|(s, h)| (s, h.join().unwrap_or_else(|_| Err("a git thread panicked".into())))).collect()
    });
    let mut out = BTreeMap::new();
    for (service, result) in results {
        match result {
            Ok(repo) => {
                out.insert(service, repo);
            }
            Err(e) => {
                tracing::warn!("demo repositories are not created ({e}); release notes will have no commits to show");
                return BTreeMap::new();
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_history_reads_as_conventional_commits() {
        let dir = tempfile::tempdir().unwrap();
        let repo = create(&dir.path().join("svc"), "svc").unwrap();
        assert_eq!(repo.commits.keys().collect::<Vec<_>>(), ["1.4.0", "1.4.1", "1.5.0", "2.0.0-rc.1"]);
        let config = signalbox_versioning::ChangelogConfig::default();
        let next = signalbox_versioning::next_version(&repo.path, &config, &Default::default(), None).unwrap();
        assert_eq!(next.base_version.as_deref(), Some("1.5.0"));
        assert_eq!(next.version, "2.0.0", "the breaking change since 1.5.0 asks for a major");
        // 1.4.1 → 1.5.0: the feature, the perf change and the docs; the reverted feature and its revert cancel.
        let range =
            signalbox_versioning::changes_between(&repo.path, &config, Some(&repo.commits["1.4.1"]), &repo.commits["1.5.0"]).unwrap();
        let descriptions: Vec<&str> = range.entries.iter().map(|e| e.description.as_str()).collect();
        assert_eq!(
            descriptions,
            ["add idempotent retries to outbound calls (#40)", "cache price lookups for 30 s", "explain the retry settings"]
        );
        // Nothing deployed: the pre-release's commits since the last final tag.
        let since = signalbox_versioning::changes_between(&repo.path, &config, None, &repo.commits["2.0.0-rc.1"]).unwrap();
        assert_eq!(since.since_tag.as_deref(), Some("v1.5.0"));
        assert!(since.entries.iter().any(|e| e.breaking), "{:?}", since.entries);
    }
}
