//! End-to-end tests of the `signalbox` binary: crash safety under SIGKILL, offline audit
//! verification, configuration and completions.

use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "sbx_cli_test_token_0123456789abcdef0123456789abcdef";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_signalbox"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_server(data: &std::path::Path, port: u16) -> Child {
    bin()
        .args(["serve", "--data"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--log-format", "json"])
        .env("SIGNALBOX_BOOTSTRAP_TOKEN", TOKEN)
        .env_remove("SIGNALBOX_DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start signalbox serve")
}

async fn wait_ready(port: u16) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("http://127.0.0.1:{port}/readyz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server on port {port} never became ready");
}

#[tokio::test]
async fn a_sigkill_mid_burst_loses_no_acknowledged_write_and_the_chain_stays_valid() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = start_server(dir.path(), port);
    wait_ready(port).await;

    // Eight writers create domains as fast as they can; each remembers what was acknowledged.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8 {
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut acknowledged = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let name = format!("w{w}-d{i}");
                i += 1;
                let sent = client
                    .post(format!("http://127.0.0.1:{port}/api/v1/domains"))
                    .bearer_auth(TOKEN)
                    .json(&json!({"name": name}))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().as_u16() == 201 => acknowledged.push(name),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            acknowledged
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill().expect("SIGKILL"); // std sends SIGKILL on Unix
    server.wait().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for w in writers {
        acknowledged.extend(w.await.unwrap());
    }
    assert!(acknowledged.len() > 20, "the burst wrote something ({} writes)", acknowledged.len());

    // The chain verifies offline, straight from the data directory.
    let verify = bin().args(["audit", "verify", "--data"]).arg(dir.path()).output().unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));

    // Every acknowledged write is there after a restart.
    let port = free_port();
    let mut server = start_server(dir.path(), port);
    wait_ready(port).await;
    let client = reqwest::Client::new();
    for name in &acknowledged {
        let r = client.get(format!("http://127.0.0.1:{port}/api/v1/domains/{name}")).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "acknowledged domain {name} was lost");
    }
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn config_default_prints_annotated_toml() {
    let out = bin().args(["config", "default"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("listen = \"127.0.0.1:8080\""));
    assert!(text.contains("SIGNALBOX_BOOTSTRAP_TOKEN"));
}

#[test]
fn scheduler_settings_come_from_the_config_file_and_the_environment_overrides_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.toml");
    let serve = |contents: &str, env: &[(&str, &str)]| {
        std::fs::write(&file, contents).unwrap();
        let mut cmd = bin();
        cmd.args(["serve", "--data"]).arg(dir.path().join("data")).arg("--config").arg(&file);
        cmd.env_remove("SIGNALBOX_SCHEDULER").env_remove("SIGNALBOX_SCHEDULER_INTERVAL_SECS");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "the configuration should have been refused");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    // The file is read…
    let err = serve("[scheduler]\ninterval_secs = 0\n", &[]);
    assert!(err.contains("scheduler.interval_secs"), "{err}");
    // …and the environment overrides it, for the interval and the mode.
    let err = serve("[scheduler]\ninterval_secs = 30\n", &[("SIGNALBOX_SCHEDULER_INTERVAL_SECS", "0")]);
    assert!(err.contains("scheduler.interval_secs") && err.contains(" 0 "), "{err}");
    let err = serve("[scheduler]\nmode = \"off\"\n", &[("SIGNALBOX_SCHEDULER", "sometimes")]);
    assert!(err.contains("sometimes"), "{err}");

    let out = bin().args(["config", "default"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("[scheduler]\nmode = \"on\"") && text.contains("interval_secs = 15"), "{text}");
}

#[test]
fn completions_are_generated() {
    let out = bin().args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout).unwrap().contains("signalbox"));
}

#[test]
fn verifying_a_missing_database_fails_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin().args(["audit", "verify", "--data"]).arg(dir.path().join("nope")).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--data"));
}

#[test]
fn a_bad_config_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.toml");
    std::fs::write(&file, "listen = 5\n").unwrap();
    let out = bin().args(["serve", "--config"]).arg(&file).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn tampering_with_an_export_is_detected_and_located() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = start_server(dir.path(), port);
    wait_ready(port).await;
    let client = reqwest::Client::new();
    for i in 0..10 {
        let r = client
            .post(format!("http://127.0.0.1:{port}/api/v1/domains"))
            .bearer_auth(TOKEN)
            .json(&json!({"name": format!("d{i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
    }
    let export =
        client.get(format!("http://127.0.0.1:{port}/api/v1/audit/export")).bearer_auth(TOKEN).send().await.unwrap().text().await.unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    let lines: Vec<String> = export.lines().map(String::from).collect();
    assert!(lines.len() > 10);

    let verify = |content: String| {
        let file = dir.path().join("export.jsonl");
        std::fs::write(&file, content).unwrap();
        let out = bin().args(["audit", "verify", "--file"]).arg(&file).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string())
    };
    let (ok, text) = verify(lines.join("\n"));
    assert!(ok, "untouched export verifies: {text}");

    // Edited: an actor rewritten.
    let mut edited = lines.clone();
    edited[6] = edited[6].replacen("\"actor\":\"admin\"", "\"actor\":\"mallory\"", 1);
    let (ok, text) = verify(edited.join("\n"));
    assert!(!ok && text.contains("entry 7 was edited"), "{text}");

    // Deleted: line 7 removed.
    let mut deleted = lines.clone();
    deleted.remove(6);
    let (ok, text) = verify(deleted.join("\n"));
    assert!(!ok && text.contains("entry 7 was deleted"), "{text}");

    // Inserted: a copy of entry 4 slipped in after entry 6.
    let mut inserted = lines.clone();
    inserted.insert(6, lines[3].clone());
    let (ok, text) = verify(inserted.join("\n"));
    assert!(!ok && text.contains("inserted"), "{text}");

    // Reordered: lines 7 and 8 swapped.
    let mut reordered = lines.clone();
    reordered.swap(6, 7);
    let (ok, text) = verify(reordered.join("\n"));
    assert!(!ok && text.contains("entries 7 and 8 were reordered"), "{text}");
}

#[tokio::test]
async fn sigterm_drains_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = start_server(dir.path(), port);
    wait_ready(port).await;
    let killed = Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = server.try_wait().unwrap() {
            assert!(status.success(), "exit status after SIGTERM: {status}");
            break;
        }
        assert!(Instant::now() < deadline, "the server did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
