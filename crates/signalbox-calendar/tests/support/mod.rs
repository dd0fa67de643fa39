//! Independent implementations the tests compare against: python-dateutil's rrule and the
//! `icalendar` package, installed from PyPI into a venv under the target directory.

#![allow(dead_code)] // each test binary uses part of this module
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

const PACKAGES: &[&str] = &["python-dateutil", "icalendar", "tzdata"];

/// The venv's python, created and filled on first use. Panics (fails the test) when Python or
/// PyPI cannot be reached: these comparisons are the point of the tests, never skipped.
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PYTHON.get_or_init(setup).clone().unwrap_or_else(|e| panic!("cannot set up the Python oracle: {e}"))
}

fn setup() -> Result<PathBuf, String> {
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("signalbox-calendar-pyenv");
    let python = venv.join("bin").join("python");
    let ready = |p: &PathBuf| {
        Command::new(p).args(["-c", "import dateutil, icalendar, zoneinfo"]).output().map(|o| o.status.success()).unwrap_or(false)
    };
    if python.exists() && ready(&python) {
        return Ok(python);
    }
    let created = Command::new("python3").args(["-m", "venv"]).arg(&venv).output().map_err(|e| format!("python3 -m venv: {e}"))?;
    if !created.status.success() {
        return Err(format!("python3 -m venv failed: {}", String::from_utf8_lossy(&created.stderr)));
    }
    let installed = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
        .args(PACKAGES)
        .output()
        .map_err(|e| format!("pip: {e}"))?;
    if !installed.status.success() {
        return Err(format!("pip install {PACKAGES:?} failed: {}", String::from_utf8_lossy(&installed.stderr)));
    }
    if !ready(&python) {
        return Err("the packages installed but do not import".into());
    }
    Ok(python)
}

/// Runs `script` once with `input` on stdin and returns stdout.
pub fn run_python(script: &str, input: &str) -> String {
    let mut child = Command::new(python())
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("python output");
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

/// A small deterministic generator (xorshift64*), so a failing case can be replayed by seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}
