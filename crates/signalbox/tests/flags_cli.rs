//! End-to-end: `signalbox flags stale` exits with 8 when stale flags exist (so CI can fail a
//! build) and 0 when there are none; `flags schedule`, `flags scheduled` and
//! `flags cancel-scheduled` against a real `signalbox serve`; SIGTERM with an open OFREP SSE
//! stream exits promptly and writes the evaluation counts gathered since the last flush.

use serde_json::json;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "sbx_flags_cli_token_0123456789abcdef0123456789abcdef";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_signalbox"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cli(port: u16, args: &[&str]) -> Output {
    bin().args(args).env("SIGNALBOX_URL", format!("http://127.0.0.1:{port}")).env("SIGNALBOX_TOKEN", TOKEN).output().expect("run signalbox")
}

#[tokio::test]
async fn flags_stale_exit_code_and_scheduled_changes() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = Server(
        bin()
            .args(["serve", "--data"])
            .arg(dir.path())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("SIGNALBOX_BOOTSTRAP_TOKEN", TOKEN)
            .env("SIGNALBOX_SCHEDULER", "off")
            .env_remove("SIGNALBOX_DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start signalbox serve"),
    );
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(Instant::now() < deadline, "server never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let env = client
        .post(format!("{base}/api/v1/environments"))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "prod", "tier": "prod", "position": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(env.status().as_u16(), 201);
    let flags = json!({"flags": {"new-checkout": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on",
        "metadata": {"type": "release", "owner": "payments"}}}});
    let put = client.put(format!("{base}/api/v1/flags/prod")).bearer_auth(TOKEN).json(&flags).send().await.unwrap();
    assert_eq!(put.status().as_u16(), 201);

    // Import a flagd file through the CLI and export it again: the same document, value for value
    // (`$schema`, `$evaluators` with a `$ref`, set and flag metadata, targeting).
    let file = dir.path().join("checkout.flagd.json");
    let document = json!({
        "$schema": "https://flagd.dev/schema/v0/flags.json",
        "metadata": {"flagSetId": "checkout", "version": "3"},
        "$evaluators": {"is-employee": {"ends_with": [{"var": "email"}, "@corp.example"]}},
        "flags": {
            "new-checkout": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on",
                "metadata": {"type": "release", "owner": "payments"}},
            "beta-banner": {"state": "ENABLED", "variants": {"shown": "yes", "hidden": "no"}, "defaultVariant": "hidden",
                "targeting": {"if": [{"$ref": "is-employee"}, "shown", {"fractional": [["shown", 5], ["hidden", 95]]}]}}
        }
    });
    std::fs::write(&file, serde_json::to_vec_pretty(&document).unwrap()).unwrap();
    let path = file.to_str().expect("a UTF-8 temporary path");
    let imported = cli(port, &["flags", "import", "--environment", "prod", "--reason", "bring our flagd file", path]);
    assert_eq!(imported.status.code(), Some(0), "{}", String::from_utf8_lossy(&imported.stderr));
    let exported = cli(port, &["flags", "export", "--environment", "prod"]);
    assert_eq!(exported.status.code(), Some(0), "{}", String::from_utf8_lossy(&exported.stderr));
    let round_trip: serde_json::Value = serde_json::from_slice(&exported.stdout).expect("export prints JSON");
    assert_eq!(round_trip, document);
    // A file that is not a valid flag set: exit 6, the JSON path of the problem named.
    std::fs::write(&file, br#"{"flags": {"broken": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "missing"}}}"#)
        .unwrap();
    let refused = cli(port, &["flags", "import", "--environment", "prod", path]);
    assert_eq!(refused.status.code(), Some(6), "{}", String::from_utf8_lossy(&refused.stdout));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("flags.broken.defaultVariant"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let unchanged = cli(port, &["flags", "export", "--environment", "prod"]);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&unchanged.stdout).unwrap(), document, "a refused import changes nothing");
    let put = client.put(format!("{base}/api/v1/flags/prod")).bearer_auth(TOKEN).json(&flags).send().await.unwrap();
    assert_eq!(put.status().as_u16(), 200);

    // Fresh flags: nothing stale, exit 0.
    let fresh = cli(port, &["flags", "stale", "--environment", "prod"]);
    assert_eq!(fresh.status.code(), Some(0), "{}", String::from_utf8_lossy(&fresh.stderr));
    assert!(String::from_utf8_lossy(&fresh.stdout).contains("1 flag(s) checked, 0 stale"));

    // With a threshold of 0 days everything unchanged is stale: exit 8 and the reasons.
    let stale = cli(port, &["flags", "stale", "--environment", "prod", "--unchanged-days", "0", "--rolled-out-days", "0"]);
    let out = String::from_utf8_lossy(&stale.stdout);
    assert_eq!(stale.status.code(), Some(8), "{out}");
    assert!(out.contains("new-checkout") && out.contains("fully_rolled_out") && out.contains("unchanged"), "{out}");
    assert!(String::from_utf8_lossy(&stale.stderr).contains("1 stale flag(s)"));
    let as_json = cli(port, &["--output", "json", "flags", "stale", "--unchanged-days", "0"]);
    assert_eq!(as_json.status.code(), Some(8));
    let report: serde_json::Value = serde_json::from_slice(&as_json.stdout).expect("JSON report");
    assert_eq!(report["stale"][0]["reasons"][0]["code"], "unchanged");

    // Schedule, list, cancel; a bad time is exit 6 naming the field; a second cancel is exit 5.
    let at = (std::time::SystemTime::now() + Duration::from_secs(86_400)).duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let at = chrono_like(at);
    let scheduled = cli(port, &["flags", "schedule", "--environment", "prod", "new-checkout", "--at", &at, "--state", "DISABLED"]);
    let out = String::from_utf8_lossy(&scheduled.stdout).to_string();
    assert_eq!(scheduled.status.code(), Some(0), "{out}{}", String::from_utf8_lossy(&scheduled.stderr));
    let id = out.split_whitespace().nth(1).unwrap().trim_end_matches(':').to_string();
    let bad = cli(port, &["flags", "schedule", "--environment", "prod", "new-checkout", "--at", "tomorrow", "--state", "DISABLED"]);
    assert_eq!(bad.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("at"), "{}", String::from_utf8_lossy(&bad.stderr));
    let listed = cli(port, &["flags", "scheduled", "--environment", "prod"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&id));
    assert_eq!(cli(port, &["flags", "cancel-scheduled", &id, "--reason", "not yet"]).status.code(), Some(0));
    assert_eq!(cli(port, &["flags", "cancel-scheduled", &id]).status.code(), Some(5));
}

fn start(dir: &std::path::Path, port: u16) -> Child {
    bin()
        .args(["serve", "--data"])
        .arg(dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("SIGNALBOX_BOOTSTRAP_TOKEN", TOKEN)
        .env("SIGNALBOX_SCHEDULER", "off")
        .env("SIGNALBOX_FLAG_STATS_FLUSH_SECONDS", "3600")
        .env_remove("SIGNALBOX_DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start signalbox serve")
}

async fn ready(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
        assert!(Instant::now() < deadline, "server never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sigterm_ends_sse_streams_and_flushes_counters() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut server = start(dir.path(), port);
    ready(&client, &base).await;
    client
        .post(format!("{base}/api/v1/environments"))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "prod", "tier": "prod", "position": 10}))
        .send()
        .await
        .unwrap();
    let flags = json!({"flags": {"f": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}}});
    client.put(format!("{base}/api/v1/flags/prod")).bearer_auth(TOKEN).json(&flags).send().await.unwrap();
    let issued: serde_json::Value = client
        .post(format!("{base}/api/v1/flags/sdk-keys"))
        .bearer_auth(TOKEN)
        .json(&json!({"environment": "prod", "name": "web"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = issued["secret"].as_str().unwrap().to_string();
    for user in ["a", "b", "c"] {
        let r = client
            .post(format!("{base}/ofrep/v1/evaluate/flags/f"))
            .header("x-api-key", &key)
            .json(&json!({"context": {"targetingKey": user}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    let mut stream = client.get(format!("{base}/ofrep/v1/events")).header("x-api-key", &key).send().await.unwrap();
    assert_eq!(stream.status().as_u16(), 200);

    let started = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap().success());
    let ended = tokio::time::timeout(Duration::from_secs(10), async { while let Ok(Some(_)) = stream.chunk().await {} }).await;
    assert!(ended.is_ok(), "the SSE stream ended at shutdown");
    loop {
        if let Some(status) = server.try_wait().unwrap() {
            assert!(status.success(), "exit status after SIGTERM: {status}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the server waited for the stream instead of exiting");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Restarted: the three evaluations were written at shutdown (the periodic flush is an hour away).
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _server = Server(start(dir.path(), port));
    ready(&client, &base).await;
    let stats: serde_json::Value =
        client.get(format!("{base}/api/v1/flags/prod/stats")).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats[0]["flags"]["f"]["evaluations"], 3, "{stats}");
    assert_eq!(stats[0]["flags"]["f"]["variants"]["on"], 3, "{stats}");
}

/// RFC 3339 in UTC for Unix seconds, without a date library.
fn chrono_like(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}
