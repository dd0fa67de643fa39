//! End to end (issue 5, part 4): `signalbox service set-repository`, `signalbox release
//! import-changes` and `signalbox release notes` against the real `signalbox serve`, over a
//! repository made with `git` and mirrored by the server from a file:// URL.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Output;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Ana Silva", "-c", "user.email=ana@example.org", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn cli(base: &str, args: &[&str]) -> Output {
    let mut cmd = bin();
    for (k, _) in std::env::vars() {
        if k.starts_with("SIGNALBOX_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(["--url", base, "--token", TOKEN]).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "exit {:?}: {}{}", o.status.code(), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[tokio::test]
async fn notes_and_change_import_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("checkout-api");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["commit", "-q", "--allow-empty", "-m", "feat: first endpoints"]);
    git(&repo, &["tag", "v1.0.0"]);
    git(&repo, &["commit", "-q", "--allow-empty", "-m", "feat(api): add idempotent retries (#40)"]);
    git(&repo, &["commit", "-q", "--allow-empty", "-m", "feat(api)!: drop v1\n\nBREAKING CHANGE: clients must call /v2"]);
    git(&repo, &["commit", "-q", "--allow-empty", "-m", "fix: handle <empty> pages"]);
    let head = git(&repo, &["rev-parse", "HEAD"]);

    let data = dir.path().join("data");
    let server = Server::start(&ServerOptions {
        name: "notes".into(),
        backend: Backend::Sqlite(data.clone()),
        config: None,
        env: vec![],
        log_dir: dir.path().to_path_buf(),
    })
    .await;
    let api = server.api();
    api.post("/api/v1/domains", json!({"name": "payments"})).await;
    api.post("/api/v1/teams", json!({"name": "checkout-squad", "domain": "payments"})).await;
    api.post("/api/v1/services", json!({"name": "checkout-api", "team": "checkout-squad"})).await;
    api.post("/api/v1/environments", json!({"name": "prod", "tier": "prod", "position": 40})).await;

    let base = server.base.as_str();
    let bad = cli(base, &["service", "set-repository", "checkout-api", "git@example.com:org/app.git"]);
    assert_eq!(bad.status.code(), Some(6), "{}", String::from_utf8_lossy(&bad.stderr));
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(said.contains("url") && said.contains("ssh://git@example.com/org/app.git"), "{said}");
    let url = format!("file://{}", repo.display());
    // A monorepo package that cannot be read: the server's message, exit 6, nothing stored.
    let bad = cli(base, &["service", "set-repository", "checkout-api", &url, "--include-path", "src/**", "--include-path", "web/[z-a]"]);
    assert_eq!(bad.status.code(), Some(6), "{}", String::from_utf8_lossy(&bad.stderr));
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(said.contains("include_paths/1") && said.contains("not a valid glob"), "{said}");
    let bad = cli(base, &["service", "set-repository", "checkout-api", &url, "--tag-pattern", "v(\\d+"]);
    assert_eq!(bad.status.code(), Some(6), "{}", String::from_utf8_lossy(&bad.stderr));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("tag_pattern"));
    // The whole repository as one package (its tags are `v…`): the same reading as without one.
    let out = stdout(&cli(base, &["service", "set-repository", "checkout-api", &url, "--tag-pattern", "v{version}"]));
    assert!(out.contains(&url) && out.contains("tags v{version}"), "{out}");
    let mirrors: Vec<_> = std::fs::read_dir(data.join("repositories")).unwrap().flatten().collect();
    assert_eq!(mirrors.len(), 1, "one mirror under <data>/repositories");

    let digest = format!("sha256:{}", "ab".repeat(32));
    api.post("/api/v1/artifacts", json!({"service": "checkout-api", "version": "2.0.0", "digest": digest, "source_commit": head})).await;
    let release = api
        .post(
            "/api/v1/releases",
            json!({"name": "Checkout 2.0", "components": ["checkout-api@2.0.0"], "documents": {"rollback_plan": "redeploy 1.0.0"}}),
        )
        .await;
    let key = release["key"].as_str().unwrap().to_string();

    // Nothing runs in prod: the commits since v1.0.0.
    let out = stdout(&cli(base, &["release", "import-changes", &key, "--environment", "prod"]));
    assert!(out.contains("checkout-api") && out.contains("v1.0.0"), "{out}");
    let again: Value = serde_json::from_str(&stdout(&cli(base, &["-o", "json", "release", "import-changes", &key]))).unwrap();
    assert_eq!((again["linked"].as_u64(), again["already_linked"].as_u64()), (Some(0), Some(3)), "{again:#}");

    let md = stdout(&cli(base, &["release", "notes", &key]));
    let breaking = md.find("Breaking changes").unwrap();
    assert!(breaking < md.find("## Features").unwrap(), "{md}");
    assert!(md.contains("clients must call /v2") && md.contains("add idempotent retries (#40)") && md.contains("redeploy 1.0.0"), "{md}");
    assert!(md.contains("handle \\<empty\\> pages"), "{md}");
    let html = stdout(&cli(base, &["release", "notes", &key, "--format", "html"]));
    assert!(html.contains("handle &lt;empty&gt; pages"), "{html}");
    let json: Value = serde_json::from_str(&stdout(&cli(base, &["release", "notes", &key, "--format", "json"]))).unwrap();
    assert_eq!(json["source"], "changes");
    assert_eq!(json["release"]["key"], key.as_str());
    let json2: Value = serde_json::from_str(&stdout(&cli(base, &["-o", "json", "release", "notes", &key]))).unwrap();
    assert_eq!(json, json2, "-o json asks for the JSON notes");

    assert_eq!(cli(base, &["release", "notes", &key, "--format", "pdf"]).status.code(), Some(2));
    assert_eq!(cli(base, &["release", "notes", "R-404"]).status.code(), Some(4));
    let out = stdout(&cli(base, &["service", "remove-repository", "checkout-api"]));
    assert!(out.contains("no longer names a git repository"), "{out}");
    assert!(api.get("/api/v1/services/checkout-api").await.get("repository").is_none());
}
