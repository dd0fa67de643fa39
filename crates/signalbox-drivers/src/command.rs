//! The command driver: run a program (never through a shell) once per action.
//!
//! Why no shell: argv comes from configuration and the request carries user-controlled strings
//! (release keys, versions); passing them as environment variables to an exec'd program means no
//! quoting bug can turn them into commands.
//!
//! The program inherits Signalbox's environment plus the spec's `env` and:
//!
//! | Variable | Value |
//! |---|---|
//! | `SIGNALBOX_ACTION` | `deploy`, `set_weight`, `switch`, `rollback`, `finalize` |
//! | `SIGNALBOX_WEIGHT` | percent of traffic for the new artifact after the action ([`DriverAction::target_weight`](crate::DriverAction::target_weight)) |
//! | `SIGNALBOX_DEPLOYMENT_ID`, `SIGNALBOX_IDEMPOTENCY_KEY`, `SIGNALBOX_RELEASE`, `SIGNALBOX_SERVICE`, `SIGNALBOX_ENVIRONMENT` | from the request |
//! | `SIGNALBOX_ARTIFACT`, `SIGNALBOX_VERSION`, `SIGNALBOX_DIGEST` | the new artifact's name, version, digest |
//! | `SIGNALBOX_PREVIOUS_ARTIFACT`, `SIGNALBOX_PREVIOUS_VERSION`, `SIGNALBOX_PREVIOUS_DIGEST` | what a rollback returns to; empty when nothing ran before |
//! | `SIGNALBOX_STRATEGY`, `SIGNALBOX_STEP` | the rollout strategy and step |
//!
//! Exit status 0 is [`ActionStatus::Completed`]; a stdout line `deployed_digest=<digest>` (the
//! last one wins) reports what now runs. Any other exit is [`DriverError::CommandFailed`] with the
//! output. stdin is closed; stdout and stderr are captured up to [`MAX_OUTPUT_BYTES`] and read to
//! the end so a chatty program never blocks on a full pipe.
//!
//! On timeout the program is killed (SIGKILL). Only the direct child is killed: a script that
//! starts long-running children should `exec` its last command or manage its own process group.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::{elapsed_ms, head_bytes, ActionStatus, DriverError, DriverOutcome, DriverRequest, MAX_OUTPUT_BYTES};

/// How long to keep reading output after the program exited.
const PIPE_GRACE: Duration = Duration::from_secs(2);
const DIGEST_PREFIX: &str = "deployed_digest=";
/// Longer stdout lines cannot be a digest line and are not kept for the scan.
const MAX_SCANNED_LINE: usize = 1024;

/// The `SIGNALBOX_*` variables for `req`, in a stable order.
pub fn request_env(req: &DriverRequest) -> Vec<(&'static str, String)> {
    let previous = req.previous.as_ref();
    vec![
        ("SIGNALBOX_ACTION", req.action.name().to_owned()),
        ("SIGNALBOX_WEIGHT", req.action.target_weight().to_string()),
        ("SIGNALBOX_DEPLOYMENT_ID", req.deployment_id.clone()),
        ("SIGNALBOX_IDEMPOTENCY_KEY", req.idempotency_key.clone()),
        ("SIGNALBOX_RELEASE", req.release_key.clone()),
        ("SIGNALBOX_SERVICE", req.service.clone()),
        ("SIGNALBOX_ENVIRONMENT", req.environment.clone()),
        ("SIGNALBOX_ARTIFACT", req.artifact.name.clone()),
        ("SIGNALBOX_VERSION", req.artifact.version.clone()),
        ("SIGNALBOX_DIGEST", req.artifact.digest.clone()),
        ("SIGNALBOX_PREVIOUS_ARTIFACT", previous.map(|p| p.name.clone()).unwrap_or_default()),
        ("SIGNALBOX_PREVIOUS_VERSION", previous.map(|p| p.version.clone()).unwrap_or_default()),
        ("SIGNALBOX_PREVIOUS_DIGEST", previous.map(|p| p.digest.clone()).unwrap_or_default()),
        ("SIGNALBOX_STRATEGY", req.strategy.clone()),
        ("SIGNALBOX_STEP", req.step.to_string()),
    ]
}

/// Runs `argv` for `req`, killing it after `timeout`.
pub async fn run(
    argv: &[String],
    env: &BTreeMap<String, String>,
    timeout: Duration,
    req: &DriverRequest,
) -> Result<DriverOutcome, DriverError> {
    let started = Instant::now();
    let Some((program, args)) = argv.split_first() else {
        return Err(DriverError::Spawn("argv is empty".to_owned()));
    };
    let values_with_nul = request_env(req).into_iter().find(|(_, value)| value.contains('\0'));
    if let Some((name, _)) = values_with_nul {
        return Err(DriverError::Spawn(format!("{name} would contain a NUL character")));
    }
    let mut child = Command::new(program)
        .args(args)
        .envs(env)
        .envs(request_env(req))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| DriverError::Spawn(format!("`{}`: {e}", head_bytes(program, 200))))?;
    let stdout = Arc::new(Mutex::new(Captured::default()));
    let stderr = Arc::new(Mutex::new(Captured::default()));
    let readers = [
        tokio::spawn(capture(child.stdout.take(), Arc::clone(&stdout), true)),
        tokio::spawn(capture(child.stderr.take(), Arc::clone(&stderr), false)),
    ];

    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            readers.iter().for_each(|reader| reader.abort());
            tracing::warn!(program = %program, timeout_ms = timeout.as_millis(), "deploy command timed out and was killed");
            return Err(DriverError::Timeout { after_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX) });
        }
    };
    // A background process the program left behind may hold the pipes open; do not wait for it.
    for reader in readers {
        let abort = reader.abort_handle();
        if tokio::time::timeout(PIPE_GRACE, reader).await.is_err() {
            abort.abort();
        }
    }
    let out = take(&stdout);
    let err = take(&stderr);
    let status = status.map_err(|e| DriverError::Spawn(format!("waiting for `{}` failed: {e}", head_bytes(program, 200))))?;
    let output = combine(&out, &err);
    if status.success() {
        Ok(DriverOutcome {
            status: ActionStatus::Completed,
            deployed_digest: out.digest,
            message: None,
            output: if output.is_empty() { None } else { Some(output) },
            duration_ms: elapsed_ms(started),
        })
    } else {
        Err(DriverError::CommandFailed { exit_code: status.code(), output })
    }
}

fn take(shared: &Mutex<Captured>) -> Captured {
    std::mem::take(&mut *shared.lock().unwrap_or_else(PoisonError::into_inner))
}

#[derive(Default)]
struct Captured {
    kept: Vec<u8>,
    dropped: u64,
    digest: Option<String>,
}

/// Reads `stream` to the end, keeping the first [`MAX_OUTPUT_BYTES`] and (for stdout) scanning
/// every line for `deployed_digest=`.
/// Shared so that what was read survives when the reader is abandoned.
async fn capture<R: AsyncRead + Unpin>(stream: Option<R>, shared: Arc<Mutex<Captured>>, scan_digest: bool) {
    let Some(mut stream) = stream else { return };
    let mut line: Vec<u8> = Vec::new();
    let mut line_too_long = false;
    let mut buffer = [0u8; 8192];
    loop {
        let read = match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let chunk = buffer.get(..read).unwrap_or_default();
        let mut captured = shared.lock().unwrap_or_else(PoisonError::into_inner);
        let room = MAX_OUTPUT_BYTES.saturating_sub(captured.kept.len());
        let keep = room.min(chunk.len());
        captured.kept.extend_from_slice(chunk.get(..keep).unwrap_or_default());
        captured.dropped += (chunk.len() - keep) as u64;
        if scan_digest {
            for &byte in chunk {
                if byte == b'\n' {
                    if !line_too_long {
                        note_digest_line(&line, &mut captured.digest);
                    }
                    line.clear();
                    line_too_long = false;
                } else if line.len() < MAX_SCANNED_LINE {
                    line.push(byte);
                } else {
                    line_too_long = true;
                }
            }
        }
    }
    if scan_digest && !line_too_long {
        note_digest_line(&line, &mut shared.lock().unwrap_or_else(PoisonError::into_inner).digest);
    }
}

fn note_digest_line(line: &[u8], digest: &mut Option<String>) {
    let Ok(text) = std::str::from_utf8(line) else { return };
    if let Some(value) = text.trim().strip_prefix(DIGEST_PREFIX) {
        let value = value.trim();
        if !value.is_empty() {
            *digest = Some(value.to_owned());
        }
    }
}

/// stdout, then stderr under a marker, within [`MAX_OUTPUT_BYTES`] overall.
fn combine(out: &Captured, err: &Captured) -> String {
    let mut text = String::from_utf8_lossy(&out.kept).into_owned();
    if out.dropped > 0 {
        text.push_str(&format!("\n[{} more bytes of stdout not kept]\n", out.dropped));
    }
    if !err.kept.is_empty() || err.dropped > 0 {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str("--- stderr ---\n");
        text.push_str(&String::from_utf8_lossy(&err.kept));
        if err.dropped > 0 {
            text.push_str(&format!("\n[{} more bytes of stderr not kept]\n", err.dropped));
        }
    }
    head_bytes(&text, MAX_OUTPUT_BYTES).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn digest_scan_keeps_the_last_line_and_ignores_long_ones() {
        let input = format!("hello\ndeployed_digest=sha256:aa\n{}\ndeployed_digest=sha256:bb", "x".repeat(5000));
        let shared = Arc::new(Mutex::new(Captured::default()));
        capture(Some(input.as_bytes()), Arc::clone(&shared), true).await;
        let captured = take(&shared);
        assert_eq!(captured.digest.as_deref(), Some("sha256:bb"));
        assert_eq!(captured.dropped, 0);

        let big = "y".repeat(MAX_OUTPUT_BYTES + 10);
        capture(Some(big.as_bytes()), Arc::clone(&shared), false).await;
        let captured = take(&shared);
        assert_eq!((captured.kept.len(), captured.dropped), (MAX_OUTPUT_BYTES, 10));
        assert!(combine(&captured, &Captured::default()).len() <= MAX_OUTPUT_BYTES);
    }
}
