//! Mirrors of services' remote repositories (docs/VERSIONING.md, "A service's repository"):
//! cloned the first time, fetched when a commit is missing or when the mirror is older than
//! `refresh_interval`, so a commit or tag pushed to the origin after the first mirror shows up;
//! over `file://` and over `https://` (git smart HTTP, `git http-backend` behind a TLS server
//! with a certificate made for the test). `ssh://` is not tested here: it needs an `sshd`.

use signalbox_app::repositories::{parse_location, RepositorySettings};
use signalbox_app::App;
use signalbox_versioning::ChangelogConfig;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "commit.gpgsign=false", "-c", "user.name=Ana Silva", "-c", "user.email=ana@example.org"])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A work tree whose `origin` is a bare repository at `<root>/app.git`, with one release.
struct Origin {
    work: PathBuf,
    bare: PathBuf,
}

impl Origin {
    fn new(root: &Path) -> Origin {
        let bare = root.join("app.git");
        let work = root.join("work");
        std::fs::create_dir_all(&work).unwrap();
        git(root, &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()]);
        git(&work, &["init", "-q", "-b", "main"]);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        let origin = Origin { work, bare };
        origin.commit("feat: first feature");
        git(&origin.work, &["tag", "v1.0.0"]);
        origin.push();
        origin
    }

    fn commit(&self, message: &str) -> String {
        git(&self.work, &["commit", "-q", "--allow-empty", "-m", message]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    fn push(&self) {
        git(&self.work, &["push", "-q", "--tags", "origin", "main"]);
    }
}

async fn app(data: &Path, settings: RepositorySettings) -> App {
    let store = signalbox_store_sqlite::SqliteStore::open(data).await.unwrap();
    let mut app = App::new(Arc::new(store));
    app.repositories = Arc::new(settings);
    app
}

fn settings(mirrors: &Path, refresh_interval: Duration) -> RepositorySettings {
    let mut s = RepositorySettings::new(mirrors.to_path_buf(), ChangelogConfig::default());
    s.refresh_interval = refresh_interval;
    s
}

/// The descriptions of the commits since the last release tag before `to`, read from `mirror`.
fn since_last_tag(mirror: &Path, to: &str) -> Vec<String> {
    signalbox_versioning::changes_between(mirror, &ChangelogConfig::default(), None, to)
        .unwrap()
        .entries
        .into_iter()
        .map(|e| e.description)
        .collect()
}

fn has_commit(mirror: &Path, id: &str) -> bool {
    signalbox_versioning::history::Repo::open(mirror).unwrap().resolve(id, "commit").is_ok()
}

#[tokio::test]
async fn a_stale_mirror_is_fetched_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::new(&dir.path().join("origin"));
    let url = format!("file://{}", origin.bare.display());
    let location = parse_location("url", &url).unwrap();
    let mirrors = dir.path().join("mirrors");

    // Fresh for an hour: a commit pushed after the first mirror is not fetched for a read that
    // does not need it, but is as soon as a read names it.
    let fresh = app(&dir.path().join("data-fresh"), settings(&mirrors, Duration::from_secs(3600))).await;
    let mirror = fresh.prepare_repository("url", &location, true, &[]).await.unwrap();
    let fix = origin.commit("fix: pushed after the first mirror");
    origin.push();
    let again = fresh.prepare_repository("repository", &location, false, &[]).await.unwrap();
    assert_eq!(again, mirror);
    assert!(!has_commit(&mirror, &fix), "a fresh mirror is read as it is");
    fresh.prepare_repository("repository", &location, false, std::slice::from_ref(&fix)).await.unwrap();
    assert!(has_commit(&mirror, &fix), "a missing commit is fetched");

    // Stale (interval zero): every read fetches first, so new commits and tags show up in the
    // ranges read without naming them.
    let stale = app(&dir.path().join("data-stale"), settings(&mirrors, Duration::ZERO)).await;
    let feature = origin.commit("feat: pushed later still");
    git(&origin.work, &["tag", "v1.1.0"]);
    let unreleased = origin.commit("fix: after v1.1.0");
    origin.push();
    stale.prepare_repository("repository", &location, false, &[]).await.unwrap();
    assert!(has_commit(&mirror, &feature) && has_commit(&mirror, &unreleased));
    assert_eq!(since_last_tag(&mirror, "main"), vec!["after v1.1.0".to_string()], "the pushed tag v1.1.0 is there");
    assert_eq!(since_last_tag(&mirror, "v1.1.0"), vec!["pushed after the first mirror", "pushed later still"]);

    // The origin gone: a refresh due only to age is skipped with a warning and the mirror read
    // as it is; a fetch the read needs (or an explicit refresh) is an error naming the field.
    std::fs::rename(&origin.bare, dir.path().join("moved.git")).unwrap();
    let path = stale.prepare_repository("repository", &location, false, std::slice::from_ref(&unreleased)).await.unwrap();
    assert_eq!(path, mirror);
    let err = stale.prepare_repository("url", &location, true, &[]).await.unwrap_err().to_string();
    assert!(err.contains("url") && err.contains("cannot fetch"), "{err}");
    let missing = "0123456789abcdef0123456789abcdef01234567".to_string();
    let err = stale.prepare_repository("components/0/source_commit", &location, false, &[missing]).await.unwrap_err().to_string();
    assert!(err.contains("components/0/source_commit") && err.contains("cannot fetch"), "{err}");
}

/// A TLS git server on 127.0.0.1 for the length of a test.
struct HttpsServer {
    child: Child,
    port: u16,
    cert: PathBuf,
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the server over the bare repositories in `root`, with a self-signed certificate for
/// `localhost` made by `openssl`; `None` (and the reason on stderr) when the tools are missing.
fn https_server(root: &Path, dir: &Path) -> Option<HttpsServer> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("skipped: openssl is needed to make the test certificate");
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/git_https_server.py");
    let mut child =
        Command::new("python3").arg(script).arg(root).arg(&cert).arg(&key).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().ok()?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line.trim().parse().unwrap_or_else(|_| panic!("the server printed {line:?}, not its port"));
    Some(HttpsServer { child, port, cert })
}

#[tokio::test]
async fn https_mirrors_clone_fetch_and_verify_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::new(&dir.path().join("origin"));
    let Some(server) = https_server(&dir.path().join("origin"), dir.path()) else { return };
    let url = format!("https://localhost:{}/app.git", server.port);
    let location = parse_location("url", &url).unwrap();

    // The certificate is checked: not trusted, the clone is refused with git's reason.
    let untrusted = app(&dir.path().join("data-untrusted"), settings(&dir.path().join("mirrors-untrusted"), Duration::ZERO)).await;
    let err = untrusted.prepare_repository("url", &location, true, &[]).await.unwrap_err().to_string();
    assert!(err.contains("url") && err.contains("cannot clone") && err.to_lowercase().contains("certificate"), "{err}");

    let mut trusted = settings(&dir.path().join("mirrors"), Duration::ZERO);
    trusted.git_env.push(("GIT_SSL_CAINFO".into(), server.cert.clone().into()));
    let app = app(&dir.path().join("data"), trusted).await;
    let mirror = app.prepare_repository("url", &location, true, &[]).await.unwrap();
    assert_eq!(since_last_tag(&mirror, "main"), vec!["first feature".to_string()]);
    let fix = origin.commit("fix: pushed over the origin after the first mirror");
    origin.push();
    app.prepare_repository("repository", &location, false, &[]).await.unwrap();
    assert!(has_commit(&mirror, &fix), "the stale mirror was fetched over https");
    assert_eq!(since_last_tag(&mirror, "main"), vec!["pushed over the origin after the first mirror".to_string()]);
}
