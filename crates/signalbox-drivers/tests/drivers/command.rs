use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use signalbox_drivers::{execute, ActionStatus, DriverAction, DriverError, DriverOutcome, DriverSpec, SimulatedFleets};

use crate::support::request;

/// Writes an executable script; the driver runs it directly (no shell of ours in between).
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

async fn run(path: &Path, timeout_seconds: u64, env: BTreeMap<String, String>, action: DriverAction) -> Result<DriverOutcome, DriverError> {
    let spec = DriverSpec::Command { argv: vec![path.display().to_string(), "--flag".into()], timeout_seconds, env };
    // Another test thread forking while the script was open for writing makes exec fail with
    // ETXTBSY for a moment; that is a property of tests writing scripts, not of the driver.
    for _ in 0..20 {
        match execute(&spec, &request(action, "dep-42/step-2/set_weight"), &SimulatedFleets::new()).await {
            Err(DriverError::Spawn(message)) if message.contains("busy") => tokio::time::sleep(Duration::from_millis(50)).await,
            other => return other,
        }
    }
    panic!("{} stayed busy", path.display());
}

#[tokio::test]
async fn passes_the_request_as_environment_and_reads_the_digest() {
    let dir = tempfile::tempdir().unwrap();
    let path = script(
        dir.path(),
        "deploy",
        r#"echo "args=$*"
echo "action=$SIGNALBOX_ACTION weight=$SIGNALBOX_WEIGHT key=$SIGNALBOX_IDEMPOTENCY_KEY"
echo "deployment=$SIGNALBOX_DEPLOYMENT_ID release=$SIGNALBOX_RELEASE service=$SIGNALBOX_SERVICE env=$SIGNALBOX_ENVIRONMENT"
echo "artifact=$SIGNALBOX_ARTIFACT version=$SIGNALBOX_VERSION previous=$SIGNALBOX_PREVIOUS_DIGEST custom=$CUSTOM"
echo "progress on stderr" >&2
echo "deployed_digest=$SIGNALBOX_DIGEST""#,
    );
    let env = BTreeMap::from([("CUSTOM".to_owned(), "from-spec".to_owned())]);

    let outcome = run(&path, 10, env, DriverAction::SetWeight { weight: 25 }).await.unwrap();

    assert_eq!(outcome.status, ActionStatus::Completed);
    let digest2 = format!("sha256:{}", "2".repeat(64));
    assert_eq!(outcome.deployed_digest.as_deref(), Some(digest2.as_str()));
    let output = outcome.output.unwrap();
    for expected in [
        "args=--flag",
        "action=set_weight weight=25 key=dep-42/step-2/set_weight",
        "deployment=dep-42 release=2026.05.1 service=api env=production",
        &format!("artifact=ghcr.io/acme/api version=1.4.0 previous=sha256:{} custom=from-spec", "1".repeat(64)),
        "--- stderr ---\nprogress on stderr",
    ] {
        assert!(output.contains(expected), "{expected:?} not in:\n{output}");
    }
}

#[tokio::test]
async fn a_failing_command_reports_exit_code_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let path = script(dir.path(), "fail", "echo 'kubectl: forbidden' >&2\nexit 3");
    let err = run(&path, 10, BTreeMap::new(), DriverAction::Deploy).await.unwrap_err();
    match &err {
        DriverError::CommandFailed { exit_code, output } => {
            assert_eq!(*exit_code, Some(3));
            assert!(output.contains("kubectl: forbidden"), "{output}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("exited with status 3"), "{err}");
}

#[tokio::test]
async fn a_command_running_too_long_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let path = script(dir.path(), "hang", &format!("echo $$ > {}\nexec sleep 30", pid_file.display()));
    let started = Instant::now();
    let err = run(&path, 1, BTreeMap::new(), DriverAction::Deploy).await.unwrap_err();
    assert_eq!(err, DriverError::Timeout { after_ms: 1000 });
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let proc_dir = PathBuf::from(format!("/proc/{}", pid.trim()));
    assert!(!proc_dir.exists(), "process {} still exists after the timeout", pid.trim());
}

#[tokio::test]
async fn a_missing_program_is_a_spawn_error() {
    let spec = DriverSpec::Command { argv: vec!["/nonexistent/deploy".into()], timeout_seconds: 5, env: BTreeMap::new() };
    let err = execute(&spec, &request(DriverAction::Deploy, "k"), &SimulatedFleets::new()).await.unwrap_err();
    assert!(matches!(&err, DriverError::Spawn(m) if m.contains("/nonexistent/deploy")), "{err}");
}
