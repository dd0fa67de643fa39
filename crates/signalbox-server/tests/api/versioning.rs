//! Versions in the server over HTTP (issue 5, part 4): a service's repository (validated,
//! mirrored from a file:// URL), changes imported between the artifact running in an
//! environment and the one a release pins (idempotently), and release notes in Markdown, HTML
//! and JSON. Every backend; repositories are real, made with the `git` binary.

use crate::helpers::*;
use serde_json::{json, Value};
use signalbox_app::demo::repositories::{create, DemoRepository};
use std::path::Path;

const SERVICE: &str = "checkout-api";
const HOSTILE: &str = "fix(ui): show <script>alert('owned')</script> & \"quotes\" as text";

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "commit.gpgsign=false", "-c", "user.name=Mallory", "-c", "user.email=mallory@example.com"])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The demo history (tags v1.4.0, v1.4.1, v1.5.0, v2.0.0-rc.1; a revert; a breaking change),
/// plus a commit with a hostile message on top. Returns the repository and HEAD.
fn repository(dir: &Path) -> (DemoRepository, String) {
    let repo = create(&dir.join("checkout-api"), SERVICE).expect("git repository");
    git(&repo.path, &["commit", "--quiet", "--allow-empty", "-m", HOSTILE]);
    let head = git(&repo.path, &["rev-parse", "HEAD"]);
    (repo, head)
}

fn field(r: &Reply) -> String {
    r.problem(422)["errors"][0]["field"].as_str().unwrap_or_default().to_string()
}

async fn artifact(app: &TestApp, version: &str, commit: &str) {
    let digest = format!("sha256:{}", hex_of(&format!("{SERVICE}{version}")));
    app.post("/api/v1/artifacts", json!({"service": SERVICE, "version": version, "digest": digest, "source_commit": commit})).await.ok();
}

async fn release(app: &TestApp, version: &str) -> String {
    let r = app
        .post(
            "/api/v1/releases",
            json!({"name": format!("Checkout {version}"), "template": "emergency-hotfix", "components": [format!("{SERVICE}@{version}")],
                "target_environments": ["dev", "prod"],
                "documents": {"rollback_plan": "1. signalbox deploy checkout-api@1.4.1\n2. check <dashboards>", "impact_assessment": "Checkout answers /v2 only",
                    "backout_criteria": "error rate above 1%", "release_notes": "Retries and the v2 API"}}),
        )
        .await;
    r.ok()["key"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn repositories_are_validated_and_mirrored() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, _) = repository(dir.path());
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        let path = format!("/api/v1/services/{SERVICE}/repository");
        for bad in ["relative/path", "git@github.com:org/app.git", "http://git.example.com/a.git", "https://u:p@git.example.com/a.git"] {
            let r = app.put(&path, json!({"url": bad})).await;
            assert_eq!(field(&r), "url", "{bad}: {}", r.text);
        }
        let r = app.put(&path, json!({"url": "git@github.com:org/app.git"})).await;
        assert!(r.text.contains("ssh://git@github.com/org/app.git"), "the fix is in the message: {}", r.text);
        let r = app.put(&path, json!({"url": "file:///nonexistent/app.git"})).await;
        assert_eq!(field(&r), "url");
        assert!(r.text.contains("cannot clone"), "{}", r.text);
        let r = app.put(&path, json!({"url": "/nonexistent/app"})).await;
        assert_eq!(field(&r), "url");
        let r = app.put(&path, json!({"repository": "/x"})).await;
        assert_eq!(r.status.as_u16(), 422, "{}", r.text);
        app.put("/api/v1/services/nope/repository", json!({"url": "/x"})).await.problem(404);

        let url = format!("file://{}", repo.path.display());
        let r = app.put(&path, json!({"url": url})).await;
        assert_eq!(r.ok()["repository"]["url"], url);
        assert_eq!(r.body["repository"]["attached_by"], "admin");
        // Stored on the service, and services stored before (no field) still read.
        assert_eq!(app.get(&format!("/api/v1/services/{SERVICE}")).await.ok()["repository"]["url"], url);
        app.post("/api/v1/services", json!({"name": "plain", "team": "checkout-squad"})).await.ok();
        assert!(app.get("/api/v1/services/plain").await.ok().get("repository").is_none());
        // A second attach fetches into the existing mirror.
        app.put(&path, json!({"url": url})).await.ok();
        // Detached: gone from the service, audited; detaching again changes nothing.
        let r = app.request(reqwest::Method::DELETE, &path, Some(ADMIN_TOKEN), None, &[]).await;
        assert!(r.ok().get("repository").is_none(), "{}", r.text);
        let etag = r.etag();
        let r = app.request(reqwest::Method::DELETE, &path, Some(ADMIN_TOKEN), None, &[]).await;
        assert_eq!(r.etag(), etag);
        app.put(&path, json!({"url": url})).await.ok();
        assert!(app.verify_audit().await["valid"].as_bool().unwrap());
    }
}

#[tokio::test]
async fn changes_are_imported_between_artifacts_and_notes_render_in_three_formats() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, head) = repository(dir.path());
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        app.put(&format!("/api/v1/services/{SERVICE}/repository"), json!({"url": format!("file://{}", repo.path.display())})).await.ok();
        artifact(&app, "1.4.1", &repo.commits["1.4.1"]).await;
        artifact(&app, "1.5.0", &repo.commits["1.5.0"]).await;
        artifact(&app, "2.0.0", &head).await;
        // 1.4.1 runs in dev (recorded by CI).
        app.put(
            "/api/v1/promotion-paths",
            json!({"name": "checkout", "stages": [
                {"environment": "dev", "strategy": {"type": "all_at_once"}, "driver": {"type": "record"}},
                {"environment": "prod", "strategy": {"type": "all_at_once"}, "driver": {"type": "record"}}]}),
        )
        .await
        .ok();
        let running = release(&app, "1.4.1").await;
        let digest = format!("sha256:{}", hex_of(&format!("{SERVICE}1.4.1")));
        app.post("/api/v1/deployments/record", json!({"release": running, "environment": "dev", "digest": digest})).await.ok();

        // 1.5.0 over 1.4.1: the feature, the perf change and the docs; the reverted feature and its revert cancel.
        let key = release(&app, "1.5.0").await;
        let import = format!("/api/v1/releases/{key}/changes/import?environment=dev");
        let r = app.post(&import, json!({})).await;
        let body = r.ok().clone();
        assert_eq!(body["created"], 3, "{body:#}");
        assert_eq!(body["linked"], 3);
        assert_eq!(body["components"][0]["previous_version"], "1.4.1");
        assert_eq!(body["components"][0]["previous_commit"], repo.commits["1.4.1"]);
        assert!(body["components"][0]["basis"].as_str().unwrap().contains("dev"), "{body:#}");
        let rel = app.get(&format!("/api/v1/releases/{key}")).await;
        let ids = rel.ok()["change_ids"].as_array().unwrap().clone();
        assert_eq!(ids.len(), 3);
        assert_eq!(rel.etag().unwrap(), format!("\"{}\"", body["revision"]));
        assert_eq!(rel.body["content_digest"], body["content_digest"]);
        let change = app.get(&format!("/api/v1/changes/{}", ids[0].as_str().unwrap())).await;
        let change = change.ok();
        assert_eq!(change["kind"], "commit");
        assert_eq!(change["change_type"], "feat");
        assert_eq!(change["author"], "Bruno Silva");
        assert_eq!(change["commit"]["issues"], json!(["#40"]));
        assert_eq!(change["commit"]["co_authors"], json!(["Dara Okafor <dara@example.com>"]));
        assert_eq!(change["commit"]["group"], "Features");

        // Importing again duplicates nothing and writes nothing.
        let r = app.post(&import, json!({})).await;
        assert_eq!((r.ok()["created"].as_u64(), r.body["linked"].as_u64(), r.body["already_linked"].as_u64()), (Some(0), Some(0), Some(3)));
        assert_eq!(r.body["revision"], body["revision"]);
        assert_eq!(app.get(&format!("/api/v1/releases/{key}")).await.ok()["change_ids"].as_array().unwrap().len(), 3);
        // Another release of the same artifact links the same change records.
        let again = release(&app, "1.5.0").await;
        let r = app.post(&format!("/api/v1/releases/{again}/changes/import?environment=dev"), json!({})).await;
        assert_eq!((r.ok()["created"].as_u64(), r.body["linked"].as_u64()), (Some(0), Some(3)));

        // Notes of 2.0.0 over what runs in dev (read live: nothing imported).
        let major = release(&app, "2.0.0").await;
        let notes = format!("/api/v1/releases/{major}/notes");
        let r = app.get(&format!("{notes}?environment=dev&format=json")).await;
        let json = r.ok().clone();
        assert_eq!(json["source"], "repository", "{json:#}");
        assert_eq!(json["breaking_changes"].as_array().unwrap().len(), 1, "{json:#}");
        assert!(json["breaking_changes"][0]["breaking_description"].as_str().unwrap().contains("clients must call /v2"));
        assert_eq!(json["groups"][0]["name"], "Features");
        assert!(json["groups"].as_array().unwrap().iter().any(|g| g["name"] == "Bug Fixes"));
        assert_eq!(json["components"][0]["digest"], format!("sha256:{}", hex_of(&format!("{SERVICE}2.0.0"))));
        assert_eq!(json["components"][0]["previous_version"], "1.4.1");
        assert!(json["rollback_plan"].as_str().unwrap().contains("signalbox deploy checkout-api@1.4.1"));
        let rel = app.get(&format!("/api/v1/releases/{major}")).await;
        assert_eq!(format!("\"{}\"", json["release"]["revision"]), rel.etag().unwrap());
        assert_eq!(json["release"]["content_digest"], rel.body["content_digest"]);
        assert_eq!(r.headers["x-signalbox-release-revision"].to_str().unwrap(), json["release"]["revision"].to_string());

        let r = app.get(&format!("{notes}?environment=dev")).await;
        assert_eq!(r.status.as_u16(), 200);
        assert!(r.content_type().starts_with("text/markdown"), "{}", r.content_type());
        let md = &r.text;
        let (breaking, features, fixes) =
            (md.find("Breaking changes").unwrap(), md.find("## Features").unwrap(), md.find("## Bug Fixes").unwrap());
        assert!(breaking < features && features < fixes, "{md}");
        assert!(md.contains("## Rollback steps\n\n1. signalbox deploy checkout-api@1.4.1"), "{md}");
        assert!(md.contains("## Technical impact") && md.contains("Checkout answers /v2 only"), "{md}");
        assert!(!md.contains("<script>"), "raw HTML stays text in Markdown: {md}");
        assert!(!md.contains("experimental dark mode"), "the reverted feature is not listed: {md}");
        // A validator: the same notes again are 304.
        let etag = r.etag().unwrap();
        let r = app
            .request(reqwest::Method::GET, &format!("{notes}?environment=dev"), Some(ADMIN_TOKEN), None, &[("if-none-match", &etag)])
            .await;
        assert_eq!(r.status.as_u16(), 304);

        let r = app.get(&format!("{notes}?environment=dev&format=html")).await;
        assert!(r.content_type().starts_with("text/html"));
        let html = &r.text;
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(&#x27;owned&#x27;)&lt;&#x2f;script&gt; &amp; &quot;quotes&quot;"), "{html}");
        assert!(!html.contains("<dashboards>") && html.contains("&lt;dashboards&gt;"));
        assert!(html.find("Breaking changes").unwrap() < html.find("<h2>Features</h2>").unwrap());

        // Imported notes use the release's changes.
        let r = app.get(&format!("/api/v1/releases/{key}/notes?format=json")).await;
        assert_eq!(r.ok()["source"], "changes");
        assert_eq!(r.body["components"][0]["commit"], repo.commits["1.5.0"]);
        assert!(r.body["components"][0]["basis"].is_null());
        assert_eq!(r.body["groups"].as_array().unwrap().iter().map(|g| g["changes"].as_array().unwrap().len()).sum::<usize>(), 3);

        // Bad input.
        assert_eq!(field(&app.get(&format!("{notes}?format=pdf")).await), "format");
        assert_eq!(field(&app.get(&format!("{notes}?environment=mars")).await), "environment");
        app.get("/api/v1/releases/R-999/notes").await.problem(404);
        app.post("/api/v1/releases/R-999/changes/import", json!({})).await.problem(404);
        assert_eq!(app.get(&format!("{notes}?colour=red")).await.status.as_u16(), 400);
        artifact(&app, "3.0.0", &"d".repeat(40)).await;
        let unknown = release(&app, "3.0.0").await;
        let r = app.post(&format!("/api/v1/releases/{unknown}/changes/import"), json!({})).await;
        assert_eq!(field(&r), "components/0/source_commit");
        assert!(r.text.contains(&"d".repeat(40)), "{}", r.text);
        assert!(app.verify_audit().await["valid"].as_bool().unwrap());
    }
}

/// Locked releases refuse imports but still have notes.
#[tokio::test]
async fn approved_releases_refuse_imports() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, _) = repository(dir.path());
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        app.put(&format!("/api/v1/services/{SERVICE}/repository"), json!({"url": repo.path.display().to_string()})).await.ok();
        artifact(&app, "1.5.0", &repo.commits["1.5.0"]).await;
        let key = release(&app, "1.5.0").await;
        let path = format!("/api/v1/releases/{key}");
        for to in ["testing", "awaiting_approval", "approved"] {
            for t in app.get(&format!("{path}/tasks")).await.ok().as_array().unwrap().clone() {
                app.patch(&format!("{path}/tasks/{}", t["key"].as_str().unwrap()), json!({"status": "skipped"})).await;
            }
            app.post(&format!("{path}/transitions"), json!({"to": to})).await.ok();
        }
        let r = app.post(&format!("{path}/changes/import"), json!({})).await;
        assert_eq!(r.problem(409)["type"], "https://signalbox.dev/problems/release-content-locked", "{}", r.text);
        // Nothing deployed: the release of 1.5.0 itself (since v1.4.1).
        let notes: Value = app.get(&format!("{path}/notes?format=json")).await.ok().clone();
        assert_eq!(notes["source"], "repository");
        assert!(notes["components"][0]["basis"].as_str().unwrap().contains("v1.4.1"), "{notes:#}");
        assert_eq!(
            notes["groups"].as_array().unwrap().iter().map(|g| g["changes"].as_array().unwrap().len()).sum::<usize>(),
            3,
            "{notes:#}"
        );
    }
}

/// A monorepo with two packages: `api/` released as `api@…`, `web/` as `web-v…`, plus a
/// repository-wide `v9.0.0` tag that neither package may take as a release. Commits touch one
/// package each. Returns the repository and the commit of each step by name.
fn monorepo(dir: &Path) -> (std::path::PathBuf, std::collections::BTreeMap<&'static str, String>) {
    let repo = dir.join("monorepo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "--quiet", "--initial-branch=main"]);
    let mut commits = std::collections::BTreeMap::new();
    let steps: [(&str, &str, &str, &[&str]); 7] = [
        ("api-one", "api/orders.rs", "feat(api): list orders", &[]),
        ("web-one", "web/cart.ts", "feat(web): show the cart", &["web-v1.0.0"]),
        ("api-two", "api/orders.rs", "fix(api): paginate orders", &["api@1.0.0"]),
        ("web-two", "web/cart.ts", "feat(web): cart badge", &[]),
        ("api-three", "api/refunds.rs", "fix(api): refund rounding", &["v9.0.0"]),
        ("api-four", "api/refunds.rs", "feat(api): partial refunds", &["api@1.1.0"]),
        ("web-three", "web/cart.ts", "fix(web): empty cart message", &["web-v1.1.0"]),
    ];
    for (name, file, message, tags) in steps {
        let path = repo.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let before = std::fs::read_to_string(&path).unwrap_or_default();
        std::fs::write(&path, format!("{before}{name}\n")).unwrap();
        git(&repo, &["add", "--all"]);
        git(&repo, &["commit", "--quiet", "-m", message]);
        for tag in tags {
            git(&repo, &["tag", tag]);
        }
        commits.insert(name, git(&repo, &["rev-parse", "HEAD"]));
    }
    (repo, commits)
}

async fn package_release(app: &TestApp, name: &str, components: Value) -> String {
    let body = json!({"name": name, "template": "emergency-hotfix", "components": components, "target_environments": ["dev", "prod"]});
    app.post("/api/v1/releases", body).await.ok()["key"].as_str().unwrap().to_string()
}

/// Titles of the changes linked to a release, with the service each belongs to.
async fn linked_titles(app: &TestApp, key: &str) -> Vec<(String, String)> {
    let release = app.get(&format!("/api/v1/releases/{key}")).await.ok().clone();
    let mut out = Vec::new();
    for id in release["change_ids"].as_array().unwrap() {
        let change = app.get(&format!("/api/v1/changes/{}", id.as_str().unwrap())).await.ok().clone();
        out.push((change["service_id"].as_str().unwrap().to_string(), change["title"].as_str().unwrap().to_string()));
    }
    out
}

/// Titles in release notes (JSON), all groups.
fn note_titles(notes: &Value) -> Vec<String> {
    let mut out: Vec<String> = notes["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["changes"].as_array().unwrap().iter().map(|c| c["description"].as_str().unwrap().to_string()))
        .collect();
    out.sort();
    out
}

/// Two services in one monorepo: each names its package (tag pattern and include paths), and
/// its imported changes and live notes hold only its own commits, in ranges cut by its own tags.
#[tokio::test]
async fn monorepo_services_see_only_their_package() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, c) = monorepo(dir.path());
    let url = format!("file://{}", repo.display());
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        let mut ids = std::collections::BTreeMap::new();
        for (service, pattern, paths) in [("api", "api@{version}", json!(["api/**"])), ("web", "web-v{version}", json!(["web"]))] {
            let s = app.post("/api/v1/services", json!({"name": service, "team": "checkout-squad"})).await;
            ids.insert(service, s.ok()["id"].as_str().unwrap().to_string());
            let r = app
                .put(&format!("/api/v1/services/{service}/repository"), json!({"url": url, "tag_pattern": pattern, "include_paths": paths}))
                .await;
            assert_eq!(r.ok()["repository"]["tag_pattern"], pattern, "{}", r.text);
            assert_eq!(r.body["repository"]["include_paths"], paths);
            // Written through the one mutation path: audited with the package in the new image.
            let audit = app.get(&format!("/api/v1/audit?action=service.repository.set&subject_id={}", ids[service])).await;
            let entries = audit.ok()["items"].as_array().unwrap().clone();
            assert_eq!(entries.len(), 1, "{}", audit.text);
            assert_eq!(entries[0]["after"]["repository"]["tag_pattern"], pattern, "{}", entries[0]);
            assert_eq!(entries[0]["after"]["repository"]["include_paths"], paths, "{}", entries[0]);
        }
        for (service, version, commit) in
            [("api", "1.0.0", "api-two"), ("api", "1.1.0", "api-four"), ("web", "1.0.0", "web-one"), ("web", "1.1.0", "web-three")]
        {
            let digest = format!("sha256:{}", hex_of(&format!("{service}{version}")));
            app.post("/api/v1/artifacts", json!({"service": service, "version": version, "digest": digest, "source_commit": c[commit]}))
                .await
                .ok();
        }

        // Nothing deployed: each component's range is its own release, cut by its own tags:
        // api 1.1.0 (api@1.1.0) is everything since api@1.0.0 under api/ (v9.0.0 and the web
        // commits in between do not count); web 1.1.0 since web-v1.0.0 under web/.
        let both = package_release(&app, "Shop 1.1", json!(["api@1.1.0", "web@1.1.0"])).await;
        let r = app.post(&format!("/api/v1/releases/{both}/changes/import"), json!({})).await;
        let body = r.ok().clone();
        assert_eq!(body["components"][0]["service"], "api", "{body:#}");
        assert!(body["components"][0]["basis"].as_str().unwrap().contains("(api@1.0.0)"), "{body:#}");
        assert_eq!(body["components"][0]["commits"], 2, "{body:#}");
        assert!(body["components"][1]["basis"].as_str().unwrap().contains("(web-v1.0.0)"), "{body:#}");
        assert_eq!(body["components"][1]["commits"], 2, "{body:#}");
        let mut linked = linked_titles(&app, &both).await;
        linked.sort();
        let mut expected = vec![
            (ids["api"].clone(), "fix(api): refund rounding".to_string()),
            (ids["api"].clone(), "feat(api): partial refunds".to_string()),
            (ids["web"].clone(), "feat(web): cart badge".to_string()),
            (ids["web"].clone(), "fix(web): empty cart message".to_string()),
        ];
        expected.sort();
        assert_eq!(linked, expected);

        // Measured against an environment: api 1.0.0 runs in dev, so api 1.1.0 brings the api
        // commits after it (not web's, although they lie in the same range of history).
        app.put(
            "/api/v1/promotion-paths",
            json!({"name": "shop", "stages": [
                {"environment": "dev", "strategy": {"type": "all_at_once"}, "driver": {"type": "record"}},
                {"environment": "prod", "strategy": {"type": "all_at_once"}, "driver": {"type": "record"}}]}),
        )
        .await
        .ok();
        let running = package_release(&app, "API 1.0", json!(["api@1.0.0"])).await;
        let digest = format!("sha256:{}", hex_of("api1.0.0"));
        app.post("/api/v1/deployments/record", json!({"release": running, "environment": "dev", "digest": digest})).await.ok();
        let next = package_release(&app, "API 1.1", json!(["api@1.1.0"])).await;
        let r = app.post(&format!("/api/v1/releases/{next}/changes/import?environment=dev"), json!({})).await;
        assert_eq!(r.ok()["components"][0]["previous_commit"], c["api-two"], "{}", r.text);
        let titles: Vec<String> = linked_titles(&app, &next).await.into_iter().map(|(_, t)| t).collect();
        assert_eq!(titles, ["fix(api): refund rounding", "feat(api): partial refunds"]);

        // Live notes (nothing imported) read the same way, per package.
        let web = package_release(&app, "Web 1.1", json!(["web@1.1.0"])).await;
        let notes = app.get(&format!("/api/v1/releases/{web}/notes?format=json")).await.ok().clone();
        assert_eq!(notes["source"], "repository", "{notes:#}");
        assert_eq!(note_titles(&notes), ["cart badge", "empty cart message"], "{notes:#}");
        let api = package_release(&app, "API 1.1 again", json!(["api@1.1.0"])).await;
        let notes = app.get(&format!("/api/v1/releases/{api}/notes?format=json&environment=dev")).await.ok().clone();
        assert_eq!(note_titles(&notes), ["partial refunds", "refund rounding"], "{notes:#}");
        assert_eq!(notes["components"][0]["previous_version"], "1.0.0");

        // Without a package the whole repository is read with the server's tags: the range of
        // api's 1.1.0 commit is then since v9.0.0, and holds one commit.
        app.put("/api/v1/services/api/repository", json!({"url": url})).await.ok();
        let whole = package_release(&app, "API 1.1 whole", json!(["api@1.1.0"])).await;
        let notes = app.get(&format!("/api/v1/releases/{whole}/notes?format=json")).await.ok().clone();
        assert!(notes["components"][0]["basis"].as_str().unwrap().contains("v9.0.0"), "{notes:#}");
        assert_eq!(note_titles(&notes), ["partial refunds"], "{notes:#}");
        assert!(app.get("/api/v1/services/api").await.ok()["repository"].get("tag_pattern").is_none());
        assert!(app.verify_audit().await["valid"].as_bool().unwrap());
    }
}

/// A package that cannot be read is refused with 422 naming the field and the fix; nothing is stored.
#[tokio::test]
async fn monorepo_package_is_validated() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, _) = monorepo(dir.path());
    let url = repo.display().to_string();
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        let path = format!("/api/v1/services/{SERVICE}/repository");
        let cases = [
            (json!({"tag_pattern": "api@(\\d+"}), "tag_pattern", "api@{version}"),
            (json!({"tag_pattern": "a\u{7}"}), "tag_pattern", "control characters"),
            (json!({"include_paths": ["api/**", "web/[z-a]"]}), "include_paths/1", "not a valid glob"),
            (json!({"include_paths": ["/srv/api/**"]}), "include_paths/0", "`srv/api/**`"),
            (json!({"include_paths": ["../api"]}), "include_paths/0", "relative to the repository root"),
            (json!({"include_paths": ["api", " "]}), "include_paths/1", "services/api/**"),
            (json!({"include_paths": vec!["a/**"; 65]}), "include_paths", "more than 64"),
        ];
        for (package, want, words) in cases {
            let mut body = package.clone();
            body["url"] = json!(url);
            let r = app.put(&path, body).await;
            let problem = r.problem(422).clone();
            assert_eq!(problem["errors"][0]["field"], want, "{package}: {}", r.text);
            assert!(problem["errors"][0]["message"].as_str().unwrap_or_default().contains(words), "{package}: {}", r.text);
        }
        let r = app.put(&path, json!({"url": url, "package": "api"})).await;
        assert_eq!(r.status.as_u16(), 422, "unknown fields are refused: {}", r.text);
        assert!(app.get(&format!("/api/v1/services/{SERVICE}")).await.ok().get("repository").is_none(), "nothing was stored");
        // Blank values mean "not set".
        let r = app.put(&path, json!({"url": url, "tag_pattern": " ", "include_paths": []})).await;
        assert!(r.ok()["repository"].get("tag_pattern").is_none() && r.body["repository"].get("include_paths").is_none(), "{}", r.text);
    }
}
