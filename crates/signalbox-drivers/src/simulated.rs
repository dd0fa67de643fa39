//! An in-process fleet that obeys driver actions and produces synthetic traffic numbers.
//!
//! Why: the demo and end-to-end tests need a target whose health a test can steer ("the canary
//! now fails 20% of requests") without containers or a service mesh. Everything is in memory and
//! deterministic: each fleet's random numbers come from a small PRNG seeded from its name, so the
//! same actions and samples give the same numbers on every run.
//!
//! A fleet has a *stable* side and at most one *canary* side receiving `canary_weight` percent
//! of traffic. Actions move it:
//!
//! | Action | Effect | `deployed_digest` reported |
//! |---|---|---|
//! | deploy | the new artifact becomes the canary at weight 0 (replacing any canary) | the new digest |
//! | set_weight | the canary gets `weight` percent | the canary digest |
//! | switch | blue-green: the canary gets all traffic; the old side stays until finalize | the canary digest |
//! | rollback | canary removed, weight 0, stable serves; after a finalize, `previous` becomes stable again | the stable digest |
//! | finalize | the canary becomes stable | the new stable digest |
//!
//! An action naming a canary the fleet does not run is refused as
//! [`DriverError::Rejected`] with status 409 (so orchestration bugs show up in tests). A repeated
//! idempotency key replays the first outcome without changing anything.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{ActionStatus, ArtifactRef, DriverAction, DriverError, DriverOutcome, DriverRequest};

const MAX_LOG: usize = 1000;
const MAX_REMEMBERED_KEYS: usize = 1000;
const DEFAULT_REQUESTS_PER_SAMPLE: u32 = 1000;
const MAX_REQUESTS_PER_SAMPLE: u32 = 100_000;

/// Injected behaviour of one side: the share of failing requests and (about) its p99 latency.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub error_rate: f64,
    pub latency_ms: f64,
}

impl Health {
    /// Clamps into range; NaN becomes 0.
    fn new(error_rate: f64, latency_ms: f64) -> Self {
        let clean = |value: f64, max: f64| if value.is_nan() { 0.0 } else { value.clamp(0.0, max) };
        Health { error_rate: clean(error_rate, 1.0), latency_ms: clean(latency_ms, 3_600_000.0) }
    }
}

impl Default for Health {
    fn default() -> Self {
        Health { error_rate: 0.0, latency_ms: 50.0 }
    }
}

/// What a fleet runs now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetState {
    pub stable: Option<ArtifactRef>,
    pub canary: Option<ArtifactRef>,
    pub canary_weight: u8,
    pub stable_health: Health,
    pub canary_health: Health,
    pub requests_per_sample: u32,
}

/// Synthetic traffic of one side in one sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SideSample {
    pub requests: u64,
    pub errors: u64,
    /// `errors / requests`, 0 without requests.
    pub error_rate: f64,
    /// 0 without requests.
    pub p99_latency_ms: f64,
}

/// Synthetic traffic numbers for the whole fleet, and per side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetSample {
    pub at: DateTime<Utc>,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub p99_latency_ms: f64,
    pub canary_weight: u8,
    pub stable: SideSample,
    /// `None` when no canary runs.
    pub canary: Option<SideSample>,
}

/// One action as the fleet received it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceivedAction {
    pub at: DateTime<Utc>,
    pub action: DriverAction,
    pub idempotency_key: String,
    pub deployment_id: String,
    pub digest: String,
    /// The key had been seen before; nothing changed.
    pub replay: bool,
    /// Why the fleet refused it, if it did.
    pub refused: Option<String>,
}

/// Named simulated fleets; clones share the same fleets.
#[derive(Debug, Clone, Default)]
pub struct SimulatedFleets {
    fleets: Arc<Mutex<BTreeMap<String, Fleet>>>,
}

#[derive(Debug)]
struct Fleet {
    state: FleetState,
    rng: SplitMix64,
    log: VecDeque<ReceivedAction>,
    /// idempotency key -> deployed digest of the first successful outcome.
    outcomes: VecDeque<(String, Option<String>)>,
}

impl Fleet {
    fn new(name: &str, stable: Option<ArtifactRef>) -> Self {
        Fleet {
            state: FleetState {
                stable,
                canary: None,
                canary_weight: 0,
                stable_health: Health::default(),
                canary_health: Health::default(),
                requests_per_sample: DEFAULT_REQUESTS_PER_SAMPLE,
            },
            rng: SplitMix64(fnv1a(name.as_bytes())),
            log: VecDeque::new(),
            outcomes: VecDeque::new(),
        }
    }
}

impl SimulatedFleets {
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates `name` (or resets it) running `stable`, healthy, with no canary.
    pub fn add_fleet(&self, name: &str, stable: Option<ArtifactRef>) -> SimulatedFleet {
        self.lock().insert(name.to_owned(), Fleet::new(name, stable));
        self.fleet(name)
    }

    /// A handle to `name`; the fleet is created empty on first use.
    pub fn fleet(&self, name: &str) -> SimulatedFleet {
        SimulatedFleet { fleets: self.clone(), name: name.to_owned() }
    }

    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Injects the canary side's behaviour (kept across deployments).
    pub fn set_canary_health(&self, fleet: &str, error_rate: f64, latency_ms: f64) {
        self.with(fleet, |f| f.state.canary_health = Health::new(error_rate, latency_ms));
    }

    /// Injects the stable side's behaviour.
    pub fn set_stable_health(&self, fleet: &str, error_rate: f64, latency_ms: f64) {
        self.with(fleet, |f| f.state.stable_health = Health::new(error_rate, latency_ms));
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Fleet>> {
        // The state stays consistent even if a holder panicked: every update is a plain assignment.
        self.fleets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn with<T>(&self, name: &str, f: impl FnOnce(&mut Fleet) -> T) -> T {
        let mut fleets = self.lock();
        let fleet = fleets.entry(name.to_owned()).or_insert_with(|| Fleet::new(name, None));
        f(fleet)
    }

    /// Performs `req` on fleet `name` (created empty if needed).
    pub(crate) fn apply(&self, name: &str, req: &DriverRequest) -> Result<DriverOutcome, DriverError> {
        self.with(name, |fleet| {
            let mut entry = ReceivedAction {
                at: Utc::now(),
                action: req.action,
                idempotency_key: req.idempotency_key.clone(),
                deployment_id: req.deployment_id.clone(),
                digest: req.artifact.digest.clone(),
                replay: false,
                refused: None,
            };
            let remembered = fleet.outcomes.iter().find(|(key, _)| *key == req.idempotency_key).map(|(_, digest)| digest.clone());
            let result = match remembered {
                Some(digest) => {
                    entry.replay = true;
                    Ok(outcome(digest, format!("{} already performed (same idempotency key); nothing changed", req.action)))
                }
                None => transition(&mut fleet.state, req).map(|digest| {
                    fleet.outcomes.push_back((req.idempotency_key.clone(), digest.clone()));
                    if fleet.outcomes.len() > MAX_REMEMBERED_KEYS {
                        fleet.outcomes.pop_front();
                    }
                    outcome(digest, format!("simulated fleet {name}: {}", req.action))
                }),
            };
            if let Err(error) = &result {
                entry.refused = Some(error.to_string());
            }
            fleet.log.push_back(entry);
            if fleet.log.len() > MAX_LOG {
                fleet.log.pop_front();
            }
            result
        })
    }
}

fn outcome(deployed_digest: Option<String>, message: String) -> DriverOutcome {
    DriverOutcome { status: ActionStatus::Completed, deployed_digest, message: Some(message), output: None, duration_ms: 0 }
}

fn refuse(message: String) -> DriverError {
    DriverError::Rejected { status: 409, body: message }
}

/// Applies one action; returns the digest the fleet now runs for it.
fn transition(state: &mut FleetState, req: &DriverRequest) -> Result<Option<String>, DriverError> {
    let new = &req.artifact;
    let runs_as_canary = state.canary.as_ref().is_some_and(|c| c.digest == new.digest);
    let runs_as_stable = state.stable.as_ref().is_some_and(|s| s.digest == new.digest);
    let not_running = || {
        refuse(format!(
            "the simulated fleet does not run {} ({}) as canary; send deploy first (canary: {}, stable: {})",
            new.version,
            new.digest,
            describe(state.canary.as_ref()),
            describe(state.stable.as_ref())
        ))
    };
    match req.action {
        DriverAction::Deploy => {
            state.canary = Some(new.clone());
            state.canary_weight = 0;
            Ok(Some(new.digest.clone()))
        }
        DriverAction::SetWeight { .. } | DriverAction::Switch => {
            if runs_as_canary {
                state.canary_weight = req.action.target_weight();
                Ok(Some(new.digest.clone()))
            } else if runs_as_stable && state.canary.is_none() {
                Ok(Some(new.digest.clone()))
            } else {
                Err(not_running())
            }
        }
        DriverAction::Finalize => {
            if runs_as_canary {
                state.stable = state.canary.take();
                state.canary_weight = 0;
                Ok(Some(new.digest.clone()))
            } else if runs_as_stable && state.canary.is_none() {
                Ok(Some(new.digest.clone()))
            } else {
                Err(not_running())
            }
        }
        DriverAction::Rollback => {
            state.canary = None;
            state.canary_weight = 0;
            if runs_as_stable {
                // Rolled back after finalize: the previous artifact serves again (or nothing, if
                // this was the first deployment).
                state.stable = req.previous.clone();
            }
            Ok(state.stable.as_ref().map(|s| s.digest.clone()))
        }
    }
}

fn describe(artifact: Option<&ArtifactRef>) -> String {
    artifact.map(|a| format!("{} ({})", a.version, a.digest)).unwrap_or_else(|| "none".to_owned())
}

/// A handle to one fleet of a [`SimulatedFleets`].
#[derive(Debug, Clone)]
pub struct SimulatedFleet {
    fleets: SimulatedFleets,
    name: String,
}

impl SimulatedFleet {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn state(&self) -> FleetState {
        self.fleets.with(&self.name, |f| f.state.clone())
    }

    /// The actions received, oldest first (the last 1000).
    pub fn actions(&self) -> Vec<ReceivedAction> {
        self.fleets.with(&self.name, |f| f.log.iter().cloned().collect())
    }

    pub fn set_canary_health(&self, error_rate: f64, latency_ms: f64) {
        self.fleets.set_canary_health(&self.name, error_rate, latency_ms);
    }

    pub fn set_stable_health(&self, error_rate: f64, latency_ms: f64) {
        self.fleets.set_stable_health(&self.name, error_rate, latency_ms);
    }

    /// How many requests one sample simulates (1 to 100000; default 1000).
    pub fn set_requests_per_sample(&self, requests: u32) {
        self.fleets.with(&self.name, |f| f.state.requests_per_sample = requests.clamp(1, MAX_REQUESTS_PER_SAMPLE));
    }

    /// Simulates one batch of requests, split by the canary weight, each failing with its
    /// side's error rate. `now` stamps the sample; the numbers depend only on the fleet's history.
    pub fn sample(&self, now: DateTime<Utc>) -> FleetSample {
        self.fleets.with(&self.name, |fleet| {
            let state = &fleet.state;
            let rng = &mut fleet.rng;
            let canary_share = if state.canary.is_some() { f64::from(state.canary_weight.min(100)) / 100.0 } else { 0.0 };
            let mut stable = SideTally::default();
            let mut canary = SideTally::default();
            for _ in 0..state.requests_per_sample {
                let (tally, health) =
                    if rng.next_f64() < canary_share { (&mut canary, state.canary_health) } else { (&mut stable, state.stable_health) };
                let failed = rng.next_f64() < health.error_rate;
                // Uniform between a quarter of latency_ms and latency_ms, with the slowest 1% at
                // latency_ms: the side's p99 is about latency_ms.
                let latency = health.latency_ms * (0.25 + 0.75 * (rng.next_f64() / 0.99).min(1.0));
                tally.record(failed, latency);
            }
            let mut all = SideTally::default();
            all.latencies.extend(stable.latencies.iter().chain(canary.latencies.iter()));
            all.errors = stable.errors + canary.errors;
            let whole = all.finish();
            FleetSample {
                at: now,
                requests: whole.requests,
                errors: whole.errors,
                error_rate: whole.error_rate,
                p99_latency_ms: whole.p99_latency_ms,
                canary_weight: if state.canary.is_some() { state.canary_weight } else { 0 },
                stable: stable.finish(),
                canary: state.canary.as_ref().map(|_| canary.finish()),
            }
        })
    }
}

#[derive(Default)]
struct SideTally {
    errors: u64,
    latencies: Vec<f64>,
}

impl SideTally {
    fn record(&mut self, failed: bool, latency_ms: f64) {
        self.errors += u64::from(failed);
        self.latencies.push(latency_ms);
    }

    fn finish(mut self) -> SideSample {
        let requests = self.latencies.len() as u64;
        if requests == 0 {
            return SideSample { requests: 0, errors: 0, error_rate: 0.0, p99_latency_ms: 0.0 };
        }
        self.latencies.sort_by(f64::total_cmp);
        // Nearest rank: the smallest value with at least 99% of the samples at or below it.
        let rank = (self.latencies.len() * 99).div_ceil(100).saturating_sub(1);
        let p99 = self.latencies.get(rank).copied().unwrap_or(0.0);
        SideSample { requests, errors: self.errors, error_rate: self.errors as f64 / requests as f64, p99_latency_ms: p99 }
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, good enough for synthetic traffic.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prng_is_uniform_enough() {
        let mut rng = SplitMix64(1);
        let n = 100_000;
        let mean = (0..n).map(|_| rng.next_f64()).sum::<f64>() / f64::from(n);
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
    }

    #[test]
    fn p99_nearest_rank() {
        let tally = SideTally { errors: 0, latencies: (1..=100).map(f64::from).collect() };
        assert_eq!(tally.finish().p99_latency_ms, 99.0);
        let tally = SideTally { errors: 0, latencies: vec![5.0] };
        assert_eq!(tally.finish().p99_latency_ms, 5.0);
    }

    #[test]
    fn health_is_clamped() {
        assert_eq!(Health::new(f64::NAN, -1.0), Health { error_rate: 0.0, latency_ms: 0.0 });
        assert_eq!(Health::new(7.0, f64::INFINITY).error_rate, 1.0);
    }
}
