//! End-to-end tests of `signalbox changelog` and `signalbox version next` on real git
//! repositories created with `git` in temp directories.

use std::path::Path;
use std::process::{Command, Output};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_signalbox"));
    for (k, _) in std::env::vars() {
        if k.starts_with("SIGNALBOX_") {
            c.env_remove(k);
        }
    }
    c
}

struct Repo {
    dir: tempfile::TempDir,
    tick: u64,
}

impl Repo {
    fn new() -> Repo {
        let r = Repo { dir: tempfile::tempdir().unwrap(), tick: 0 };
        r.git(&["init", "-q", "-b", "main"]);
        r
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn git(&self, args: &[&str]) -> String {
        let date = format!("{} +0000", 1_704_067_200 + self.tick * 86_400);
        let out = Command::new("git")
            .args([
                "-c",
                "user.name=Ana Silva",
                "-c",
                "user.email=ana@example.org",
                "-c",
                "commit.gpgsign=false",
                "-c",
                "tag.gpgsign=false",
            ])
            .args(args)
            .current_dir(self.path())
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn commit(&mut self, file: &str, message: &str) -> String {
        self.tick += 1;
        let p = self.path().join(file);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("{}\n", self.tick)).unwrap();
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let Output { status, stdout, stderr } = cmd.output().unwrap();
    (status.success(), String::from_utf8_lossy(&stdout).into_owned(), String::from_utf8_lossy(&stderr).into_owned())
}

fn sample() -> (Repo, Vec<String>) {
    let mut r = Repo::new();
    let mut ids = vec![r.commit("api/a.rs", "feat(api): list releases")];
    ids.push(r.commit("web/b.js", "fix(web): render dates (#41)"));
    r.git(&["tag", "v1.0.0"]);
    ids.push(r.commit("api/a.rs", "feat(api)!: paginate everything\n\nBREAKING CHANGE: `page` is required"));
    ids.push(r.commit("web/b.js", "chore(deps): bump left-pad"));
    ids.push(r.commit("docs/x.md", "docs: how to page\n\nCo-authored-by: Bo Chen <bo@example.org>"));
    (r, ids)
}

#[test]
fn changelog_markdown_json_unreleased_and_paths() {
    let (r, ids) = sample();
    let repo = r.path().to_str().unwrap();
    let (ok, md, err) = run(bin().args(["changelog", "--repo", repo]));
    assert!(ok, "{err}");
    assert!(md.starts_with("# Changelog\n"), "{md}");
    let unreleased = md.find("## [Unreleased]").unwrap();
    let v1 = md.find("## [1.0.0] - 2024-01-03").unwrap();
    assert!(unreleased < v1, "newest first: {md}");
    assert!(md.contains("### Breaking Changes\n\n- **api**: `page` is required"), "{md}");
    assert!(md.contains("- *(web)* Render dates (#41)"), "{md}");
    assert!(!md.contains("left-pad"), "chore(deps) is skipped: {md}");
    assert!(md.contains("- Bo Chen"), "{md}");

    let (ok, json, err) = run(bin().args(["changelog", "--repo", repo, "--format", "json"]));
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let releases = v["releases"].as_array().unwrap();
    assert_eq!(releases.len(), 2);
    assert!(releases[0]["version"].is_null() && releases[0]["date"].is_null());
    assert_eq!(releases[1]["version"], "1.0.0");
    assert_eq!(releases[1]["date"], "2024-01-03");
    let c = &releases[0]["commits"][0];
    assert_eq!(c["id"], ids[2].as_str());
    assert_eq!(c["type"], "feat");
    assert_eq!(c["scope"], "api");
    assert_eq!(c["description"], "paginate everything");
    assert_eq!(c["breaking"], true);
    assert_eq!(c["group"], "Features");

    let (ok, json, _) = run(bin().args(["changelog", "--repo", repo, "--format", "json", "--unreleased", "--include-path", "api/**"]));
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let listed: Vec<&str> = v["releases"][0]["commits"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(listed, vec![ids[2].as_str()]);
}

#[test]
fn changelog_config_template_and_prepend() {
    let (r, _) = sample();
    let repo = r.path().to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("signalbox.toml");
    std::fs::write(
        &config,
        "[changelog]\nissue_url = \"https://example.org/issues/{id}\"\ncontributors = false\n\n[[changelog.commit_parsers]]\nmessage = \"^feat\"\ngroup = \"Added\"\n\n[[changelog.commit_parsers]]\nmessage = \".*\"\nskip = true\n",
    )
    .unwrap();
    let (ok, md, err) = run(bin().args(["changelog", "--repo", repo, "--config", config.to_str().unwrap()]));
    assert!(ok, "{err}");
    assert!(md.contains("### Added") && !md.contains("### Bug Fixes") && !md.contains("Contributors"), "{md}");
    // The environment overrides the file.
    let (ok, md, _) = run(bin()
        .args(["changelog", "--repo", repo, "--config", config.to_str().unwrap()])
        .env("SIGNALBOX_CHANGELOG_CONTRIBUTORS", "true"));
    assert!(ok && md.contains("### Contributors"), "{md}");
    let (ok, md, _) = run(bin().args(["changelog", "--repo", repo]).env("SIGNALBOX_CHANGELOG_ISSUE_URL", "https://x.test/{id}"));
    assert!(ok && md.contains("([#41](https://x.test/41))"), "{md}");

    let template = dir.path().join("notes.j2");
    std::fs::write(&template, "{% for r in releases %}{{ r.version or 'next' }}:{% for g in r.groups %}{{ g.name }}={{ g.commits|length }};{% endfor %}\n{% endfor %}").unwrap();
    let (ok, out, err) = run(bin().args(["changelog", "--repo", repo, "--template", template.to_str().unwrap()]));
    assert!(ok, "{err}");
    assert_eq!(out, "next:Features=1;Documentation=1;\n1.0.0:Features=1;Bug Fixes=1;\n");

    let file = dir.path().join("CHANGELOG.md");
    std::fs::write(&file, "# Changelog\n\nIntro.\n\n## [0.9.0] - 2023-01-01\n\n- old\n").unwrap();
    let (ok, out, err) = run(bin().args(["changelog", "--repo", repo, "--unreleased", "--prepend", file.to_str().unwrap()]));
    assert!(ok && out.is_empty(), "{err}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("# Changelog\n\nIntro.\n\n## [Unreleased]"), "{text}");
    assert!(text.find("Paginate everything").unwrap() < text.find("## [0.9.0]").unwrap(), "{text}");
    assert_eq!(text.matches("# Changelog").count(), 1);
}

#[test]
fn version_next_explain_pre_and_package() {
    let (mut r, ids) = sample();
    let repo = r.path().to_str().unwrap().to_string();
    let (ok, out, err) = run(bin().args(["version", "next", "--repo", &repo]));
    assert!(ok, "{err}");
    assert_eq!(out, "2.0.0\n");
    let (ok, out, _) = run(bin().args(["version", "next", "--repo", &repo, "--explain"]));
    assert!(ok);
    assert!(out.contains("base: v1.0.0; 3 commit(s) since; commits ask for major, applied major"), "{out}");
    assert!(out.contains(&format!("major  {}", &ids[2][..10])) && out.contains("`!` in the header"), "{out}");
    let (ok, out, _) = run(bin().args(["version", "next", "--repo", &repo, "--pre", "rc"]));
    assert!(ok);
    assert_eq!(out, "2.0.0-rc.1\n");
    r.git(&["tag", "v2.0.0-rc.1"]);
    r.commit("api/a.rs", "fix(api): after the rc");
    let (ok, out, _) = run(bin().args(["version", "next", "--repo", &repo, "--pre", "rc", "--json"]));
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["version"], "2.0.0-rc.2");
    assert_eq!(v["tag"], "v2.0.0-rc.2");
    assert_eq!(v["base_tag"], "v1.0.0");
    r.git(&["tag", "web@0.4.0"]);
    r.commit("web/b.js", "feat(web): dark mode");
    let (ok, out, _) = run(bin().args(["version", "next", "--repo", &repo, "--package", "web", "--include-path", "web"]));
    assert!(ok);
    assert_eq!(out, "0.4.1\n", "feat at 0.x bumps the patch by default");
}

#[test]
fn bad_input_names_the_flag_and_exits_non_zero() {
    let (r, _) = sample();
    let repo = r.path().to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bad_template = dir.path().join("bad.j2");
    std::fs::write(&bad_template, "{% for x in %}").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["changelog", "--repo", "/no/such/repo"], "--repo"),
        (vec!["changelog", "--repo", dir.path().to_str().unwrap()], "--repo"),
        (vec!["changelog", "--repo", repo, "--from", "v9.9.9"], "--from"),
        (vec!["changelog", "--repo", repo, "--to", "nope"], "--to"),
        (vec!["changelog", "--repo", repo, "--tag-pattern", "v(["], "--tag-pattern"),
        (vec!["changelog", "--repo", repo, "--template", bad_template.to_str().unwrap()], "--template"),
        (vec!["changelog", "--repo", repo, "--template", "/no/such/template"], "--template"),
        (vec!["changelog", "--repo", repo, "--include-path", "a/[b"], "--include-path"),
        (vec!["version", "next", "--repo", repo, "--pre", "r c"], "--pre"),
        (vec!["version", "next", "--repo", "/no/such/repo"], "--repo"),
    ];
    for (args, flag) in cases {
        let (ok, out, err) = run(bin().args(&args));
        assert!(!ok, "{args:?} must fail");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(err.starts_with("error: ") && err.contains(flag), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[changelog]\ntag_patern = \"v{version}\"\n").unwrap();
    let (ok, _, err) = run(bin().args(["changelog", "--repo", repo, "--config", config.to_str().unwrap()]));
    assert!(!ok && err.contains("tag_patern"), "{err}");
}
