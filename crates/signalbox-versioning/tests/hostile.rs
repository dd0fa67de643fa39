//! Hostile histories (issue 5): invalid UTF-8, megabyte messages, 10,000 tags on one commit,
//! shallow clones, missing and corrupt objects, loose or packed. Each gives a correct result or
//! an error that names git and the object, never a panic; `changelog` and `version next` alike.

mod support;

use signalbox_versioning::{generate, next_version, render, ChangelogConfig, Selection};
use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;
use support::{git_command, Git};

/// Writes `raw` as a commit object (bypassing `git commit`, which would re-encode the bytes)
/// and points `main` at it.
fn raw_commit(g: &Git, body: &[u8]) -> String {
    let tree = g.run(&["rev-parse", "HEAD^{tree}"]);
    let parent = g.head();
    let mut raw = format!("tree {tree}\nparent {parent}\n").into_bytes();
    // The author's name ends in a lone UTF-8 lead byte.
    raw.extend_from_slice(b"author A \xc3 <a@example.org> 1700000000 +0000\n");
    raw.extend_from_slice(b"committer A <a@example.org> 1700000000 +0000\n\n");
    raw.extend_from_slice(body);
    let mut child = git_command(g.path())
        .args(["hash-object", "-t", "commit", "-w", "--literally", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.as_mut().unwrap().write_all(&raw).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    g.run(&["update-ref", "refs/heads/main", &id]);
    id
}

fn changelog(repo: &Path) -> Result<signalbox_versioning::Changelog, signalbox_versioning::Error> {
    generate(repo, &ChangelogConfig::default(), &Selection::default())
}

fn next(repo: &Path) -> Result<signalbox_versioning::NextVersion, signalbox_versioning::Error> {
    next_version(repo, &ChangelogConfig::default(), &Selection::default(), None)
}

#[test]
fn invalid_utf8_and_megabyte_messages_are_read() {
    let mut g = Git::new();
    g.commit("a", "feat: base");
    g.tag("v1.0.0");
    // Invalid bytes in the subject and the author, and a 1.2 MB body.
    let mut body = b"fix: bytes \xff\xfe here\n\n".to_vec();
    body.extend(std::iter::repeat_n(b'x', 1_200_000));
    let bytes = raw_commit(&g, &body);
    // A megabyte subject of two-byte characters: the 64 KiB cut falls inside one.
    let mut subject = b"feat(\xc3\xa9): ".to_vec();
    subject.extend("é".repeat(600_000).as_bytes());
    let long = raw_commit(&g, &subject);
    let c = changelog(g.path()).unwrap();
    let unreleased = &c.releases[0];
    assert_eq!(unreleased.version, None);
    let ids: Vec<&str> = unreleased.commits.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, [bytes.as_str(), long.as_str()]);
    assert_eq!(unreleased.commits[0].description, "bytes \u{fffd}\u{fffd} here");
    assert_eq!(unreleased.commits[0].author.name, "A \u{fffd}");
    assert_eq!(unreleased.commits[1].scope.as_deref(), Some("é"));
    assert!(unreleased.commits[1].description.len() < 64 * 1024, "only the first 64 KiB is read");
    assert!(render::markdown(&c, &ChangelogConfig::default(), true).contains("Bytes \u{fffd}\u{fffd} here"));
    assert_eq!(next(g.path()).unwrap().version, "1.1.0");
}

#[test]
fn ten_thousand_tags_on_one_commit_make_one_release() {
    let mut g = Git::new();
    g.commit("a", "feat: base");
    let refs: String = (0..10_000).map(|i| format!("create refs/tags/v0.{i}.0 HEAD\n")).collect();
    let mut child = git_command(g.path()).args(["update-ref", "--stdin"]).stdin(Stdio::piped()).spawn().unwrap();
    child.stdin.as_mut().unwrap().write_all(refs.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    g.run(&["pack-refs", "--all"]);
    g.commit("a", "fix: after them");
    let c = changelog(g.path()).unwrap();
    let versions: Vec<Option<&str>> = c.releases.iter().map(|r| r.version.as_deref()).collect();
    assert_eq!(versions, [None, Some("0.9999.0")], "the highest of the tags names the one release");
    assert_eq!(c.releases[1].commits.len(), 1);
    let n = next(g.path()).unwrap();
    assert_eq!((n.version.as_str(), n.base_tag.as_deref()), ("0.9999.1", Some("v0.9999.0")));
}

#[test]
fn a_shallow_clone_reads_to_its_boundary() {
    let mut g = Git::new();
    g.commit("a", "feat: one");
    g.tag("v1.0.0");
    g.commit("a", "feat: two");
    g.commit("a", "fix: three");
    let shallow = tempfile::tempdir().unwrap();
    let src = format!("file://{}", g.path().display());
    let out = git_command(g.path()).args(["clone", "-q", "--depth", "2", &src]).arg(shallow.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The shallow boundary's parent is not there: the walk stops at it, or it says so.
    match changelog(shallow.path()) {
        Ok(c) => {
            let listed: Vec<&str> = c.releases.iter().flat_map(|r| &r.commits).map(|e| e.description.as_str()).collect();
            assert_eq!(listed, ["two", "three"]);
        }
        Err(e) => assert!(e.to_string().starts_with("git: ") && e.to_string().contains("reading commit"), "{e}"),
    }
    match next(shallow.path()) {
        Ok(n) => assert_eq!(n.commits_since, 2),
        Err(e) => assert!(e.to_string().starts_with("git: "), "{e}"),
    }
}

/// The object of the first commit made unreadable.
fn corrupt_loose(g: &Git, id: &str, contents: Option<&[u8]>) {
    let obj = g.path().join(".git/objects").join(&id[..2]).join(&id[2..]);
    match contents {
        Some(bytes) => {
            let mut perms = std::fs::metadata(&obj).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&obj, perms).unwrap();
            std::fs::write(&obj, bytes).unwrap();
        }
        None => std::fs::remove_file(&obj).unwrap(),
    }
}

#[test]
fn a_corrupt_or_missing_loose_object_is_an_error_naming_it() {
    for contents in [Some(b"garbage that is not zlib".as_slice()), None] {
        let mut g = Git::new();
        let first = g.commit("a", "feat: one");
        g.commit("a", "feat: two");
        corrupt_loose(&g, &first, contents);
        let e = changelog(g.path()).unwrap_err().to_string();
        assert!(e.starts_with("git: ") && e.contains(&first), "{e}");
        let e = next(g.path()).unwrap_err().to_string();
        assert!(e.starts_with("git: ") && e.contains(&first), "{e}");
    }
}

#[test]
fn a_corrupt_pack_is_an_error_not_a_panic() {
    let mut g = Git::new();
    for i in 0..40 {
        g.commit(&format!("f{}", i % 5), &format!("feat: change {i}\n\n{}", "body text ".repeat(40)));
    }
    g.run(&["repack", "-a", "-d", "-q"]);
    let pack = std::fs::read_dir(g.path().join(".git/objects/pack"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "pack"))
        .unwrap();
    let mut perms = std::fs::metadata(&pack).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&pack, perms).unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    // Overwrite the middle of the pack (past the 12-byte header, before the trailing checksum).
    let (from, to) = (bytes.len() / 3, bytes.len() * 2 / 3);
    bytes[from..to].iter_mut().for_each(|b| *b = 0x5a);
    std::fs::write(&pack, &bytes).unwrap();
    let e = changelog(g.path()).unwrap_err().to_string();
    assert!(e.starts_with("git: "), "{e}");
    assert!(next(g.path()).is_err());
}
