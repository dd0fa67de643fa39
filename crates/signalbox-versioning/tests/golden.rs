//! Golden changelogs: the whole rendered output (Keep a Changelog Markdown and JSON) of
//! repositories built at test time, compared with the snapshots in `tests/snapshots/` (insta).
//! Names, emails and dates are fixed, so commit ids and snapshots are the same everywhere.
//!
//! A changed snapshot is a changed changelog: read the diff (`cargo insta review`, or the
//! `.snap.new` file beside the old one) before accepting it with `INSTA_UPDATE=always`.

mod support;

use signalbox_versioning::config::PackageConfig;
use signalbox_versioning::{generate, next_version, render, ChangelogConfig, Selection};
use std::fmt::Write as _;
use std::path::Path;
use support::{generate_history, Git};

fn markdown(repo: &Path, config: &ChangelogConfig, sel: &Selection) -> String {
    render::markdown(&generate(repo, config, sel).unwrap(), config, true)
}

fn json(repo: &Path, config: &ChangelogConfig, sel: &Selection) -> String {
    render::json(&generate(repo, config, sel).unwrap())
}

fn package(name: &str) -> Selection {
    Selection { package: Some(name.into()), ..Selection::default() }
}

/// `version next` as one line: the version, the tag to create, and what it is based on.
fn next(repo: &Path, config: &ChangelogConfig, sel: &Selection, pre: Option<&str>) -> String {
    let n = next_version(repo, config, sel, pre).unwrap();
    format!(
        "{} (tag {}; since {}; commits: {}; asked {}, applied {})",
        n.version,
        n.tag.as_deref().unwrap_or("-"),
        n.base_tag.as_deref().unwrap_or("no tag"),
        n.commits_since,
        n.level.as_str(),
        n.applied.as_str()
    )
}

/// 300 commits of `make-history-repo.py` (seed 7, a release every 30 commits, some with an rc.1
/// tag on the same commit): every kind of message the generator writes, in ten releases.
#[test]
fn a_generated_history() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    generate_history(&repo, 300, 30, 7);
    let config = ChangelogConfig::default();
    insta::assert_snapshot!("generated_300_markdown", markdown(&repo, &config, &Selection::default()));
    insta::assert_snapshot!("generated_300_json", json(&repo, &config, &Selection::default()));
}

/// A topic branch merged after a maintenance release, a pull-request merge, and a merge commit
/// with a conventional header: the merged commits are listed in the first release whose tag
/// reaches them, the merge commits themselves only when asked.
#[test]
fn merges() {
    let mut g = Git::new();
    g.commit("README.md", "feat: initial layout");
    g.tag("v1.0.0");
    g.run(&["checkout", "-q", "-b", "search"]);
    g.commit("search.rs", "feat(search): fuzzy matching\n\nCloses: #21");
    g.commit("search.rs", "fix(search): an empty query returns nothing, not everything");
    g.run(&["checkout", "-q", "main"]);
    g.commit("page.rs", "fix: off-by-one in pagination (#19)");
    g.tag("v1.0.1");
    g.merge("search", "Merge pull request #22 from org/search");
    g.run(&["checkout", "-q", "-b", "export", "v1.0.0"]);
    g.commit_as("Bo Chen", "bo@example.org", "export.rs", "feat(export): CSV export");
    g.run(&["checkout", "-q", "main"]);
    g.merge("export", "feat(export): merge the CSV export branch (#23)");
    g.tag("v1.1.0");
    g.commit("docs.md", "docs: describe search");

    let config = ChangelogConfig::default();
    insta::assert_snapshot!("merges_markdown", markdown(g.path(), &config, &Selection::default()));
    insta::assert_snapshot!("merges_json", json(g.path(), &config, &Selection::default()));
    let with_merges = ChangelogConfig { include_merge_commits: true, ..ChangelogConfig::default() };
    insta::assert_snapshot!("merges_included_markdown", markdown(g.path(), &with_merges, &Selection::default()));
    let with_links = ChangelogConfig {
        issue_url: "https://git.example.com/org/app/issues/{id}".into(),
        commit_url: "https://git.example.com/org/app/commit/{id}".into(),
        ..ChangelogConfig::default()
    };
    insta::assert_snapshot!("merges_links_markdown", markdown(g.path(), &with_links, &Selection::default()));
}

/// A reverted commit does not appear: within a release the commit and its revert cancel (a
/// revert of a revert brings the original back); a commit published in an earlier release stays
/// there and its conventional `revert:` is listed in the later one. git's own `Revert "…"`
/// message is not a Conventional Commit, so with the default `filter_unconventional` it is left
/// out like any other (as git-cliff does); `filter_unconventional = false` lists it under Revert.
#[test]
fn reverts() {
    let mut g = Git::new();
    let export = g.commit("export.rs", "feat: export to CSV");
    let crash = g.commit("read.rs", "fix: crash on an empty file");
    let limits = g.commit("limits.rs", "feat(api): rate limiting");
    g.revert(&limits);
    g.tag("v1.0.0");
    let dark = g.commit("theme.rs", "feat(ui): dark mode");
    let revert = g.revert(&dark);
    g.revert(&revert);
    let import = g.commit("import.rs", "feat: import from JSON");
    g.commit("import.rs", &format!("revert: drop the JSON import again\n\nRefs: {}", &import[..7]));
    g.revert(&export);
    g.commit("read.rs", &format!("revert: the empty-file fix, it hid real errors\n\nRefs: {}", &crash[..10]));
    g.commit("export.rs", "fix: quote fields with commas");
    g.tag("v1.1.0");

    let config = ChangelogConfig::default();
    insta::assert_snapshot!("reverts_markdown", markdown(g.path(), &config, &Selection::default()));
    insta::assert_snapshot!("reverts_json", json(g.path(), &config, &Selection::default()));
    let unfiltered = ChangelogConfig { filter_unconventional: false, ..ChangelogConfig::default() };
    insta::assert_snapshot!("reverts_unfiltered_markdown", markdown(g.path(), &unfiltered, &Selection::default()));
}

/// Several tags on one commit: the highest version names the release, a tag that does not
/// match the pattern (`latest`) is ignored, annotated and lightweight tags count alike, and two
/// spellings of one version (`2.0.1`, `v2.0.1`) make one release.
#[test]
fn tags_on_the_same_commit() {
    let mut g = Git::new();
    g.commit("a.rs", "feat: one");
    g.tag("v1.0.0");
    g.commit("a.rs", "feat!: two\n\nBREAKING CHANGE: `one` is gone; call `two`.");
    g.tag("v1.1.0");
    g.annotated_tag("v2.0.0", "Release 2.0.0");
    g.tag("latest");
    g.commit("a.rs", "fix: three");
    g.annotated_tag("v2.0.1", "Release 2.0.1");
    g.tag("2.0.1");

    let config = ChangelogConfig::default();
    insta::assert_snapshot!("same_commit_tags_markdown", markdown(g.path(), &config, &Selection::default()));
    insta::assert_snapshot!("same_commit_tags_json", json(g.path(), &config, &Selection::default()));
}

/// v0.9.0, then v1.0.0-rc.1, v1.0.0-rc.2 and v1.0.0 on successive commits: by default the
/// release candidates fold into 1.0.0; with `include_prereleases` each is its own release. The
/// next versions along the way (with `breaking_always_bump_major`, so the break leaves 0.x)
/// show the channel counting up and the promotion to the final.
#[test]
fn a_pre_release_line() {
    let mut g = Git::new();
    let config = ChangelogConfig::default();
    let sel = Selection::default();
    let mut to_one = ChangelogConfig::default();
    to_one.bump.breaking_always_bump_major = true;
    let mut nexts = String::new();
    let mut step = |g: &Git, label: &str| {
        let _ = writeln!(nexts, "{label}:");
        let _ = writeln!(nexts, "  version next:          {}", next(g.path(), &to_one, &sel, None));
        let _ = writeln!(nexts, "  version next --pre rc: {}", next(g.path(), &to_one, &sel, Some("rc")));
    };
    g.commit("a.rs", "feat: base");
    g.tag("v0.9.0");
    g.commit("a.rs", "feat!: stable API\n\nBREAKING CHANGE: the 0.x endpoints are removed.");
    step(&g, "after the breaking feature");
    g.tag("v1.0.0-rc.1");
    g.commit("b.rs", "fix: found in rc.1");
    step(&g, "after v1.0.0-rc.1 and a fix");
    g.tag("v1.0.0-rc.2");
    g.commit("c.md", "docs: upgrade guide");
    g.tag("v1.0.0");
    g.commit("d.rs", "feat: after the final");
    step(&g, "after v1.0.0 and a feature");

    insta::assert_snapshot!("pre_release_markdown", markdown(g.path(), &config, &sel));
    let with_pre = ChangelogConfig { include_prereleases: true, ..ChangelogConfig::default() };
    insta::assert_snapshot!("pre_release_included_markdown", markdown(g.path(), &with_pre, &sel));
    insta::assert_snapshot!("pre_release_included_json", json(g.path(), &with_pre, &sel));
    insta::assert_snapshot!("pre_release_next_versions", nexts);
}

/// Two packages in one repository: `api` with the default `api@1.2.3` tags and `api/**`, `web`
/// with `web-v{version}` tags and the bare directory `web`. A commit touching both is in both
/// changelogs; a commit touching neither is in none; each package's releases are its own tags.
#[test]
fn a_monorepo() {
    let mut g = Git::new();
    g.commit("api/src/lib.rs", "feat(api): accounts endpoint");
    g.commit("web/app.js", "feat(web): login page");
    g.commit("docs/README.md", "docs: monorepo layout");
    g.tag("api@1.0.0");
    g.tag("web-v0.1.0");
    g.commit("api/src/lib.rs", "fix(api): validate email addresses\n\nRefs: #31");
    g.commit_files(
        &["api/src/auth.rs", "web/auth.js"],
        "feat!: shared auth tokens\n\nBREAKING CHANGE: sessions are JWTs; log in again after the upgrade.",
    );
    g.commit("web/style.css", "fix(web): visible focus ring");
    g.commit("README.md", "chore: tidy the root README");
    g.tag("api@2.0.0");
    g.tag("web-v0.2.0");
    g.commit("api/src/cache.rs", "perf(api): cache account lookups");
    g.commit("web/app.js", "feat(web): remember me");

    let mut config = ChangelogConfig::default();
    config.packages.insert("api".into(), PackageConfig { tag_pattern: String::new(), include_paths: vec!["api/**".into()] });
    config.packages.insert("web".into(), PackageConfig { tag_pattern: "web-v{version}".into(), include_paths: vec!["web".into()] });
    insta::assert_snapshot!("monorepo_api_markdown", markdown(g.path(), &config, &package("api")));
    insta::assert_snapshot!("monorepo_web_markdown", markdown(g.path(), &config, &package("web")));
    insta::assert_snapshot!("monorepo_api_json", json(g.path(), &config, &package("api")));
    let nexts =
        format!("api: {}\nweb: {}\n", next(g.path(), &config, &package("api"), None), next(g.path(), &config, &package("web"), None));
    insta::assert_snapshot!("monorepo_next_versions", nexts);
}
