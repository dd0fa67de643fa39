//! The rollout state machine, driven the way the application drives it: a simulator plays the
//! `next` / perform / report loop with a fake clock, a fake driver and fake metric readings, and
//! round-trips the state through serde_json between every call (as the database does).

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use proptest::strategy::Strategy as Gen;
use signalbox_rollout::analysis::{MetricSpec, NoDataRule, Outcome, Phase, ProviderSpec, Reading};
use signalbox_rollout::plan::{
    compile, ActionKind, ActionResult, ActionState, CanaryStep, Next, PauseReason, Refused, Rollout, RolloutPhase, RolloutState, Step,
    Strategy, MAX_ACTION_ATTEMPTS, MAX_ROLLBACK_ATTEMPTS, REPORT_TIMEOUT_SECONDS,
};

// ---------------------------------------------------------------------------------------------
// Fixtures

const ID: &str = "dep-1";
const DIGEST: &str = "sha256:good";

fn t(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 5, 1, 12, 0, 0).unwrap() + Duration::seconds(seconds)
}

/// Seconds since `t(0)`.
fn s(at: DateTime<Utc>) -> i64 {
    (at - t(0)).num_seconds()
}

/// A pushed error-rate metric: successful below 1 %, failed from 1 %.
fn error_rate(interval: Option<u64>, count: Option<u32>, no_data: NoDataRule) -> MetricSpec {
    MetricSpec {
        name: "error-rate".into(),
        provider: ProviderSpec::Pushed { name: None },
        interval_seconds: interval,
        count,
        initial_delay_seconds: 0,
        success_condition: Some("result < 0.01".into()),
        failure_condition: Some("result >= 0.01".into()),
        failure_limit: 0,
        inconclusive_limit: 0,
        consecutive_error_limit: 4,
        no_data,
        dry_run: false,
        judge: None,
    }
}

fn named(name: &str, spec: MetricSpec) -> MetricSpec {
    MetricSpec { name: name.into(), ..spec }
}

/// An HTTP smoke check: a single measurement, successful when it answered as expected.
fn smoke_check() -> MetricSpec {
    MetricSpec {
        name: "smoke".into(),
        provider: ProviderSpec::Http {
            method: "GET".into(),
            url: "https://app.example/healthz".into(),
            expect_status: 200,
            body_contains: None,
            max_latency_ms: Some(500),
            timeout_seconds: 10,
        },
        interval_seconds: None,
        count: None,
        initial_delay_seconds: 0,
        success_condition: None,
        failure_condition: None,
        failure_limit: 0,
        inconclusive_limit: 0,
        consecutive_error_limit: 4,
        no_data: NoDataRule::Fail,
        dry_run: false,
        judge: None,
    }
}

fn value(v: f64) -> Reading {
    Reading::Values { values: vec![v], baseline: None, source: None }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|n| n.to_string()).collect()
}

/// The canary of the brief: set_weight 5, analysis, set_weight 50, pause 60 s, set_weight 100.
fn canary_strategy() -> Strategy {
    Strategy::Canary {
        steps: vec![
            CanaryStep::SetWeight(5),
            CanaryStep::Analysis { metrics: names(&["error-rate"]) },
            CanaryStep::SetWeight(50),
            CanaryStep::Pause { duration_seconds: Some(60) },
            CanaryStep::SetWeight(100),
        ],
    }
}

fn canary_metrics() -> Vec<MetricSpec> {
    vec![error_rate(Some(10), Some(3), NoDataRule::Fail)]
}

// ---------------------------------------------------------------------------------------------
// The simulator

/// What the fake driver does with one send.
#[derive(Debug, Clone)]
enum Reply {
    /// Completes after `took` seconds, reporting this digest.
    Done { took: i64, digest: Option<String> },
    /// Fails after `took` seconds.
    Fail { took: i64, message: String },
    /// Accepted at once; the report comes `after` seconds later (None: never).
    Async { after: Option<i64>, result: ActionResult },
    /// Nothing comes back (the process died mid-I/O, the request was lost).
    Silent,
}

fn done() -> Reply {
    Reply::Done { took: 1, digest: Some(DIGEST.into()) }
}

type DriverFn = Box<dyn FnMut(&ActionState) -> Reply>;
type ReadFn = Box<dyn FnMut(&str, DateTime<Utc>) -> Reading>;

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
enum Stop {
    Finished,
    /// `WaitUntil(None)`: a person must act.
    Person,
    /// The round budget ran out.
    Budget,
}

struct Sim {
    plan: Vec<Step>,
    metrics: Vec<MetricSpec>,
    /// The persisted state, as the database holds it.
    json: String,
    now: DateTime<Utc>,
    driver: DriverFn,
    read: ReadFn,
    /// Every action handed to the driver, in order.
    sent: Vec<ActionState>,
    /// Every `next` answer, with the time it was asked.
    nexts: Vec<(DateTime<Utc>, Next)>,
    /// Reports an asynchronous driver will deliver: (when, key, result).
    pending: Vec<(DateTime<Utc>, String, ActionResult)>,
    refusals: Vec<Refused>,
    rounds: usize,
}

impl Sim {
    fn new(plan: Vec<Step>, metrics: Vec<MetricSpec>) -> Sim {
        Sim {
            plan,
            metrics,
            json: serde_json::to_string(&RolloutState::new(t(0))).unwrap(),
            now: t(0),
            driver: Box::new(|_| done()),
            read: Box::new(|_, _| value(0.001)),
            sent: vec![],
            nexts: vec![],
            pending: vec![],
            refusals: vec![],
            rounds: 0,
        }
    }

    fn compiled(strategy: &Strategy, metrics: Vec<MetricSpec>, smoke: &[&str]) -> Sim {
        let plan = compile(strategy, &metrics, &names(smoke)).unwrap();
        Sim::new(plan, metrics)
    }

    fn driver(mut self, f: impl FnMut(&ActionState) -> Reply + 'static) -> Sim {
        self.driver = Box::new(f);
        self
    }

    fn readings(mut self, f: impl FnMut(&str, DateTime<Utc>) -> Reading + 'static) -> Sim {
        self.read = Box::new(f);
        self
    }

    fn state(&self) -> RolloutState {
        serde_json::from_str(&self.json).unwrap()
    }

    /// Loads the rollout from the stored JSON, applies `f` at the current time and stores the
    /// state again; checks that the JSON is stable across a load and a store.
    fn apply<R>(&mut self, f: impl FnOnce(&mut Rollout<'_>, DateTime<Utc>) -> R) -> R {
        let state: RolloutState = serde_json::from_str(&self.json).expect("the stored state loads");
        assert_eq!(serde_json::to_string(&state).unwrap(), self.json, "the stored state survives a load and a store unchanged");
        let mut rollout = Rollout { deployment_id: ID, plan: &self.plan, metrics: &self.metrics, expected_digest: DIGEST, state };
        let out = f(&mut rollout, self.now);
        let json = serde_json::to_string(&rollout.state).unwrap();
        self.json = json;
        out
    }

    fn report(&mut self, key: &str, result: ActionResult) -> Result<(), Refused> {
        let key = key.to_string();
        let out = self.apply(|r, now| r.action_finished(&key, result, now));
        if let Err(e) = &out {
            self.refusals.push(e.clone());
        }
        out
    }

    /// Moves the clock to `until`, delivering the first asynchronous report due by then.
    fn advance_to(&mut self, until: DateTime<Utc>) {
        self.pending.sort_by_key(|p| p.0);
        if let Some(i) = self.pending.iter().position(|p| p.0 <= until) {
            let (at, key, result) = self.pending.remove(i);
            self.now = self.now.max(at);
            let _ = self.report(&key, result);
            return;
        }
        self.now = self.now.max(until);
    }

    /// Sends an action to the fake driver and applies what it says.
    fn perform(&mut self, a: &ActionState) {
        self.sent.push(a.clone());
        match (self.driver)(a) {
            Reply::Done { took, digest } => {
                self.now += Duration::seconds(took);
                let _ = self.report(&a.key, ActionResult::Completed { deployed_digest: digest });
            }
            Reply::Fail { took, message } => {
                self.now += Duration::seconds(took);
                let _ = self.report(&a.key, ActionResult::Failed { message });
            }
            Reply::Async { after, result } => {
                self.report(&a.key, ActionResult::Accepted).expect("an in-flight action accepts `Accepted`");
                if let Some(after) = after {
                    self.pending.push((self.now + Duration::seconds(after), a.key.clone(), result));
                }
            }
            Reply::Silent => {}
        }
    }

    fn measure(&mut self, specs: &[MetricSpec]) {
        let now = self.now;
        let readings: Vec<(String, Reading)> = specs.iter().map(|m| (m.name.clone(), (self.read)(&m.name, now))).collect();
        self.apply(|r, now| r.record_measurements(readings, now));
    }

    /// Asks `next` and does what it says.
    fn step(&mut self) -> Next {
        self.rounds += 1;
        let next = self.apply(|r, now| r.next(now));
        self.check(&next);
        self.nexts.push((self.now, next.clone()));
        match &next {
            Next::Send(a) => self.perform(a),
            Next::Measure(specs) => self.measure(specs),
            Next::WaitUntil(Some(at)) | Next::AwaitReport(at) => {
                assert!(*at > self.now, "asked to wait until {at}, which is not after now ({}): the machine would spin", self.now);
                self.advance_to(*at);
            }
            Next::WaitUntil(None) | Next::Finished => {}
        }
        next
    }

    /// Invariants of every answer.
    fn check(&self, next: &Next) {
        let state = self.state();
        match next {
            Next::Finished => assert!(state.phase.is_finished() && state.finished_at.is_some(), "{state:?}"),
            _ => assert!(!state.phase.is_finished(), "a finished rollout answered {next:?}"),
        }
        if let Next::Send(a) = next {
            check_key(&self.plan, &state, a);
            assert_eq!(state.action.as_ref(), Some(a), "the action sent is the one recorded");
        }
        if let Next::Measure(specs) = next {
            assert!(!specs.is_empty());
            assert_eq!(state.analysis.as_ref().map(|a| a.step), Some(state.step));
        }
        if let Next::WaitUntil(None) = next {
            assert_eq!(state.phase, RolloutPhase::Paused, "only a paused rollout waits for a person");
        }
    }

    /// Runs until finished, until a person must act, or until the budget is spent.
    fn run(&mut self, budget: usize) -> Stop {
        for _ in 0..budget {
            match self.step() {
                Next::Finished => return Stop::Finished,
                Next::WaitUntil(None) => return Stop::Person,
                _ => {}
            }
        }
        Stop::Budget
    }

    fn run_to_end(&mut self) {
        assert_eq!(self.run(500), Stop::Finished, "state: {:#?}", self.state());
    }

    /// Distinct keys sent, in the order first sent.
    fn keys(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        self.sent.iter().filter(|a| seen.insert(a.key.clone())).map(|a| a.key.clone()).collect()
    }

    fn actions(&self) -> Vec<(ActionKind, u8)> {
        let mut seen = BTreeSet::new();
        self.sent.iter().filter(|a| seen.insert(a.key.clone())).map(|a| (a.action, a.weight)).collect()
    }

    fn control(&mut self, f: impl FnOnce(&mut Rollout<'_>, DateTime<Utc>) -> Result<(), Refused>) -> Result<(), Refused> {
        self.apply(f)
    }
}

/// A key is `<deployment>/<generation>/<step>/<action>` and names the step's own action.
fn check_key(plan: &[Step], state: &RolloutState, a: &ActionState) {
    let parts: Vec<&str> = a.key.split('/').collect();
    assert_eq!(parts.len(), 4, "{}", a.key);
    assert_eq!(parts[0], ID);
    assert_eq!(parts[1], state.generation.to_string());
    assert_eq!(parts[3], a.action.as_str());
    match a.step {
        Some(step) => {
            assert_eq!(parts[2], step.to_string());
            let expected = match &plan[step] {
                Step::Deploy { weight } => (ActionKind::Deploy, *weight),
                Step::SetWeight { weight } => (ActionKind::SetWeight, *weight),
                Step::Switch => (ActionKind::Switch, 100),
                Step::Finalize => (ActionKind::Finalize, 100),
                other => panic!("an action for step {step}, which is {other:?}"),
            };
            assert_eq!((a.action, a.weight), expected);
        }
        None => {
            assert_eq!(a.action, ActionKind::Rollback);
            assert_eq!(parts[2], "rollback");
        }
    }
}

fn key(generation: u32, step: usize, action: &str) -> String {
    format!("{ID}/{generation}/{step}/{action}")
}

// ---------------------------------------------------------------------------------------------
// 1. compile

#[test]
fn compile_all_at_once() {
    let metrics = vec![error_rate(None, None, NoDataRule::Fail), smoke_check()];
    let plan = compile(&Strategy::AllAtOnce { analysis: names(&["error-rate"]) }, &metrics, &names(&["smoke"])).unwrap();
    assert_eq!(
        plan,
        vec![
            Step::Deploy { weight: 100 },
            Step::Analysis { metrics: names(&["smoke"]), smoke: true },
            Step::Analysis { metrics: names(&["error-rate"]), smoke: false },
            Step::Finalize,
        ]
    );
    assert_eq!(compile(&Strategy::AllAtOnce { analysis: vec![] }, &[], &[]).unwrap(), vec![Step::Deploy { weight: 100 }, Step::Finalize]);
}

#[test]
fn compile_rolling_rounds_weights_up_and_pauses_between_batches() {
    let metrics = vec![error_rate(None, None, NoDataRule::Fail), smoke_check()];
    let strategy = Strategy::Rolling { batches: 3, pause_seconds: 30, analysis: names(&["error-rate"]) };
    let smoke = || Step::Analysis { metrics: names(&["smoke"]), smoke: true };
    let analysis = || Step::Analysis { metrics: names(&["error-rate"]), smoke: false };
    let pause = || Step::Pause { duration_seconds: Some(30) };
    assert_eq!(
        compile(&strategy, &metrics, &names(&["smoke"])).unwrap(),
        vec![
            Step::Deploy { weight: 34 },
            smoke(),
            analysis(),
            pause(),
            Step::SetWeight { weight: 67 },
            smoke(),
            analysis(),
            pause(),
            Step::SetWeight { weight: 100 },
            smoke(),
            analysis(),
            Step::Finalize,
        ]
    );
    // No pause, no analysis, one batch: deploy everything.
    let one = Strategy::Rolling { batches: 1, pause_seconds: 0, analysis: vec![] };
    assert_eq!(compile(&one, &[], &[]).unwrap(), vec![Step::Deploy { weight: 100 }, Step::Finalize]);
    // Every batch count: the weights are ceil(100 i / n), strictly increasing, ending at 100.
    for n in 1..=100u8 {
        let plan = compile(&Strategy::Rolling { batches: n, pause_seconds: 0, analysis: vec![] }, &[], &[]).unwrap();
        let weights: Vec<u32> = plan
            .iter()
            .filter_map(|s| match s {
                Step::Deploy { weight } | Step::SetWeight { weight } => Some(u32::from(*weight)),
                _ => None,
            })
            .collect();
        let expected: Vec<u32> = (1..=u32::from(n)).map(|i| (i * 100).div_ceil(u32::from(n))).collect();
        assert_eq!(weights, expected, "{n} batches");
        assert!(weights.windows(2).all(|w| w[0] < w[1]), "{n} batches: {weights:?}");
        assert_eq!(plan.len(), usize::from(n) + 1);
        assert!(matches!(plan[0], Step::Deploy { .. }));
    }
    let seven = compile(&Strategy::Rolling { batches: 7, pause_seconds: 0, analysis: vec![] }, &[], &[]).unwrap();
    assert_eq!(seven[0], Step::Deploy { weight: 15 });
    assert_eq!(seven[1], Step::SetWeight { weight: 29 });
}

#[test]
fn compile_canary_adds_full_weight_and_smoke_after_every_traffic_change() {
    let metrics = vec![error_rate(None, None, NoDataRule::Fail), smoke_check()];
    let strategy = Strategy::Canary {
        steps: vec![
            CanaryStep::SetWeight(5),
            CanaryStep::Pause { duration_seconds: None },
            CanaryStep::Analysis { metrics: names(&["error-rate"]) },
            CanaryStep::SetWeight(50),
        ],
    };
    let smoke = || Step::Analysis { metrics: names(&["smoke"]), smoke: true };
    assert_eq!(
        compile(&strategy, &metrics, &names(&["smoke"])).unwrap(),
        vec![
            Step::Deploy { weight: 0 },
            smoke(),
            Step::SetWeight { weight: 5 },
            smoke(),
            Step::Pause { duration_seconds: None },
            Step::Analysis { metrics: names(&["error-rate"]), smoke: false },
            Step::SetWeight { weight: 50 },
            smoke(),
            Step::SetWeight { weight: 100 },
            smoke(),
            Step::Finalize,
        ]
    );
    // Already ending at 100: nothing added; no smoke checks: none inserted.
    let plan = compile(&canary_strategy(), &metrics, &[]).unwrap();
    assert_eq!(
        plan,
        vec![
            Step::Deploy { weight: 0 },
            Step::SetWeight { weight: 5 },
            Step::Analysis { metrics: names(&["error-rate"]), smoke: false },
            Step::SetWeight { weight: 50 },
            Step::Pause { duration_seconds: Some(60) },
            Step::SetWeight { weight: 100 },
            Step::Finalize,
        ]
    );
    // The last weight decides, not the largest.
    let down = Strategy::Canary { steps: vec![CanaryStep::SetWeight(100), CanaryStep::SetWeight(20)] };
    assert_eq!(compile(&down, &[], &[]).unwrap()[3], Step::SetWeight { weight: 100 });
}

#[test]
fn compile_blue_green() {
    let metrics = vec![
        named("pre", error_rate(None, None, NoDataRule::Fail)),
        named("post", error_rate(None, None, NoDataRule::Fail)),
        smoke_check(),
    ];
    let auto = Strategy::BlueGreen {
        pre_promotion_analysis: names(&["pre"]),
        post_promotion_analysis: names(&["post"]),
        auto_promote: true,
        scale_down_delay_seconds: 30,
    };
    let smoke = || Step::Analysis { metrics: names(&["smoke"]), smoke: true };
    assert_eq!(
        compile(&auto, &metrics, &names(&["smoke"])).unwrap(),
        vec![
            Step::Deploy { weight: 0 },
            smoke(),
            Step::Analysis { metrics: names(&["pre"]), smoke: false },
            Step::Switch,
            smoke(),
            Step::Analysis { metrics: names(&["post"]), smoke: false },
            Step::ScaleDownDelay { seconds: 30 },
            Step::Finalize,
        ]
    );
    let manual = Strategy::BlueGreen {
        pre_promotion_analysis: vec![],
        post_promotion_analysis: vec![],
        auto_promote: false,
        scale_down_delay_seconds: 0,
    };
    assert_eq!(
        compile(&manual, &metrics, &[]).unwrap(),
        vec![Step::Deploy { weight: 0 }, Step::Pause { duration_seconds: None }, Step::Switch, Step::Finalize]
    );
    // Argo's defaults: auto promotion, 30 s scale-down delay.
    let parsed: Strategy = serde_json::from_str(r#"{"type": "blue_green"}"#).unwrap();
    assert_eq!(
        parsed,
        Strategy::BlueGreen {
            pre_promotion_analysis: vec![],
            post_promotion_analysis: vec![],
            auto_promote: true,
            scale_down_delay_seconds: 30
        }
    );
    let parsed: Strategy = serde_json::from_str(
        r#"{"type": "canary", "steps": [{"set_weight": 5}, {"pause": {}}, {"pause": {"duration_seconds": 60}}, {"analysis": {"metrics": ["x"]}}]}"#,
    )
    .unwrap();
    assert_eq!(
        parsed,
        Strategy::Canary {
            steps: vec![
                CanaryStep::SetWeight(5),
                CanaryStep::Pause { duration_seconds: None },
                CanaryStep::Pause { duration_seconds: Some(60) },
                CanaryStep::Analysis { metrics: names(&["x"]) }
            ]
        }
    );
}

#[test]
fn compile_errors_name_the_field() {
    let metrics = vec![error_rate(None, None, NoDataRule::Fail), smoke_check()];
    let unknown = names(&["latency"]);
    let cases: Vec<(Strategy, Vec<String>, &str, &str)> = vec![
        (Strategy::AllAtOnce { analysis: vec![] }, unknown.clone(), "smoke", "\"latency\""),
        (Strategy::AllAtOnce { analysis: unknown.clone() }, vec![], "strategy.analysis", "defined: error-rate, smoke"),
        (Strategy::Rolling { batches: 2, pause_seconds: 0, analysis: unknown.clone() }, vec![], "strategy.analysis", "\"latency\""),
        (Strategy::Rolling { batches: 0, pause_seconds: 0, analysis: vec![] }, vec![], "strategy.batches", "between 1 and 100"),
        (Strategy::Rolling { batches: 101, pause_seconds: 0, analysis: vec![] }, vec![], "strategy.batches", "between 1 and 100"),
        (Strategy::Canary { steps: vec![] }, vec![], "strategy.steps", "at least one step"),
        (
            Strategy::Canary { steps: vec![CanaryStep::SetWeight(5), CanaryStep::SetWeight(101)] },
            vec![],
            "strategy.steps[1].set_weight",
            "101 is not a percentage",
        ),
        (
            Strategy::Canary {
                steps: vec![
                    CanaryStep::SetWeight(5),
                    CanaryStep::Pause { duration_seconds: None },
                    CanaryStep::Analysis { metrics: unknown.clone() },
                ],
            },
            vec![],
            "strategy.steps[2].analysis.metrics",
            "\"latency\"",
        ),
        (
            Strategy::Canary { steps: vec![CanaryStep::Analysis { metrics: vec![] }] },
            vec![],
            "strategy.steps[0].analysis.metrics",
            "at least one metric",
        ),
        (
            Strategy::BlueGreen {
                pre_promotion_analysis: unknown.clone(),
                post_promotion_analysis: vec![],
                auto_promote: true,
                scale_down_delay_seconds: 0,
            },
            vec![],
            "strategy.pre_promotion_analysis",
            "\"latency\"",
        ),
        (
            Strategy::BlueGreen {
                pre_promotion_analysis: vec![],
                post_promotion_analysis: unknown.clone(),
                auto_promote: true,
                scale_down_delay_seconds: 0,
            },
            vec![],
            "strategy.post_promotion_analysis",
            "\"latency\"",
        ),
        // Durations a clock cannot add.
        (
            Strategy::Canary { steps: vec![CanaryStep::Pause { duration_seconds: Some(u64::MAX) }] },
            vec![],
            "strategy.steps[0].pause.duration_seconds",
            "at most",
        ),
        (Strategy::Rolling { batches: 2, pause_seconds: u64::MAX, analysis: vec![] }, vec![], "strategy.pause_seconds", "at most"),
        (
            Strategy::BlueGreen {
                pre_promotion_analysis: vec![],
                post_promotion_analysis: vec![],
                auto_promote: true,
                scale_down_delay_seconds: 40 * 24 * 3600,
            },
            vec![],
            "strategy.scale_down_delay_seconds",
            "at most",
        ),
    ];
    for (strategy, smoke, field, message) in cases {
        let err = compile(&strategy, &metrics, &smoke).expect_err(&format!("{strategy:?} compiles"));
        assert_eq!(err.field, field, "{err}");
        assert!(err.message.contains(message), "{err}");
    }
    // No metrics at all: the message says so.
    let err = compile(&Strategy::AllAtOnce { analysis: unknown }, &[], &[]).unwrap_err();
    assert!(err.message.contains("defined: none"), "{err}");
}

#[test]
fn describe_says_what_each_step_does() {
    assert_eq!(Step::Deploy { weight: 0 }.describe(), "deploy (0% traffic)");
    assert_eq!(Step::Pause { duration_seconds: Some(60) }.describe(), "pause 60s");
    assert_eq!(Step::Pause { duration_seconds: None }.describe(), "pause until resumed");
    assert_eq!(Step::Analysis { metrics: names(&["a", "b"]), smoke: true }.describe(), "smoke checks (a, b)");
    assert_eq!(Step::ScaleDownDelay { seconds: 30 }.describe(), "keep the old side 30s");
}

// ---------------------------------------------------------------------------------------------
// 2. A healthy canary

#[test]
fn a_healthy_canary_succeeds_step_by_step() {
    let mut sim = Sim::compiled(&canary_strategy(), canary_metrics(), &[]);
    sim.run_to_end();
    let state = sim.state();
    assert_eq!(state.phase, RolloutPhase::Succeeded);
    assert_eq!(
        sim.actions(),
        vec![
            (ActionKind::Deploy, 0),
            (ActionKind::SetWeight, 5),
            (ActionKind::SetWeight, 50),
            (ActionKind::SetWeight, 100),
            (ActionKind::Finalize, 100)
        ]
    );
    // Each sent once, each key unique and naming its step.
    assert_eq!(sim.sent.len(), 5);
    assert_eq!(
        sim.keys(),
        vec![key(1, 0, "deploy"), key(1, 1, "set_weight"), key(1, 3, "set_weight"), key(1, 5, "set_weight"), key(1, 6, "finalize")]
    );
    assert!(sim.sent.iter().all(|a| a.attempts == 1));
    // Each action takes a second: deploy 0-1, set_weight 5 1-2, analysis 2 / 12 / 22,
    // set_weight 50 22-23, pause 23-83, set_weight 100 83-84, finalize 84-85.
    let sent_at: Vec<i64> = sim.sent.iter().map(|a| s(a.decided_at)).collect();
    assert_eq!(sent_at, vec![0, 1, 22, 83, 84]);
    assert_eq!(state.weight, 100);
    assert_eq!(state.finished_at, Some(t(85)));
    assert!(!sim.nexts.iter().any(|(_, n)| matches!(n, Next::WaitUntil(None) | Next::AwaitReport(_))));
    // The history records every step, in order, with the analysis and its measurements.
    let h = &state.history;
    assert_eq!(h.iter().map(|r| r.step).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4, 5, 6]);
    assert!(h.iter().all(|r| r.generation == 1));
    let windows: Vec<(i64, i64)> = h.iter().map(|r| (s(r.started_at), s(r.finished_at))).collect();
    assert_eq!(windows, vec![(0, 1), (1, 2), (2, 22), (22, 23), (23, 83), (83, 84), (84, 85)]);
    assert_eq!(h[4].description, "pause 60s");
    assert_eq!(h[4].outcome, "waited");
    assert_eq!(s(h[4].finished_at) - s(h[4].started_at), 60, "the pause lasts 60 s of the clock");
    let analysis = h[2].analysis.as_ref().expect("the analysis step keeps its analysis");
    assert_eq!(analysis.phase, Some(Phase::Successful));
    assert_eq!(analysis.metrics.len(), 1);
    let run = &analysis.metrics[0];
    assert_eq!(run.name, "error-rate");
    assert_eq!(run.measurements.iter().map(|m| s(m.at)).collect::<Vec<_>>(), vec![2, 12, 22]);
    assert!(run.measurements.iter().all(|m| m.outcome == Outcome::Successful && m.values == vec![0.001]));
    assert_eq!(run.assessment.as_ref().map(|a| (a.phase, a.successful)), Some((Phase::Successful, 3)));
    assert!(h.iter().enumerate().all(|(i, r)| (i == 2) == r.analysis.is_some()));
    // The measurements were asked for at exactly those times.
    let measured: Vec<i64> = sim.nexts.iter().filter(|(_, n)| matches!(n, Next::Measure(_))).map(|(at, _)| s(*at)).collect();
    assert_eq!(measured, vec![2, 12, 22]);
    assert_eq!(state.failure, None);
    assert_eq!(state.detected_at, None);
    // Finished stays finished.
    assert_eq!(sim.step(), Next::Finished);
}

#[test]
fn rolling_batches_wait_between_batches_and_all_at_once_deploys_everything() {
    let strategy = Strategy::Rolling { batches: 3, pause_seconds: 30, analysis: names(&["error-rate"]) };
    let mut sim = Sim::compiled(&strategy, vec![error_rate(None, None, NoDataRule::Fail)], &[]);
    sim.run_to_end();
    assert_eq!(
        sim.actions(),
        vec![(ActionKind::Deploy, 34), (ActionKind::SetWeight, 67), (ActionKind::SetWeight, 100), (ActionKind::Finalize, 100)]
    );
    // deploy 0-1, analysis at 1, pause 1-31, set_weight 31-32, analysis 32, pause 32-62, ...
    assert_eq!(sim.sent.iter().map(|a| s(a.decided_at)).collect::<Vec<_>>(), vec![0, 31, 62, 63]);
    let state = sim.state();
    assert_eq!(state.phase, RolloutPhase::Succeeded);
    assert_eq!(state.history.iter().filter(|r| r.analysis.is_some()).count(), 3);

    let mut sim = Sim::compiled(&Strategy::AllAtOnce { analysis: names(&["error-rate"]) }, canary_metrics(), &[]);
    sim.run_to_end();
    assert_eq!(sim.actions(), vec![(ActionKind::Deploy, 100), (ActionKind::Finalize, 100)]);
    assert_eq!(s(sim.sent[1].decided_at), 21, "finalized after the analysis (1, 11, 21)");
}

// ---------------------------------------------------------------------------------------------
// 3. A breach rolls back

#[test]
fn an_error_rate_breach_rolls_back_at_once() {
    let mut sim = Sim::compiled(&canary_strategy(), canary_metrics(), &[])
        .readings(|_, at| value(if s(at) >= 12 { 0.2 } else { 0.001 }))
        .driver(|a| if a.action == ActionKind::Rollback { Reply::Done { took: 5, digest: None } } else { done() });
    // Up to the second measurement.
    while !matches!(sim.state().analysis.as_ref().map(|a| a.metrics[0].measurements.len()), Some(2)) {
        assert!(!matches!(sim.step(), Next::Finished));
    }
    assert_eq!(sim.now, t(12));
    assert_eq!(sim.state().phase, RolloutPhase::Progressing);
    // The next decision is the rollback itself, decided at the breach.
    let next = sim.apply(|r, now| r.next(now));
    let Next::Send(rollback) = next else { panic!("expected the rollback, got {next:?}") };
    assert_eq!(rollback.action, ActionKind::Rollback);
    assert_eq!(rollback.key, format!("{ID}/1/rollback/rollback"));
    assert_eq!(rollback.weight, 0);
    let state = sim.state();
    assert_eq!(state.phase, RolloutPhase::RollingBack);
    assert_eq!(state.detected_at, Some(t(12)));
    assert_eq!(state.rollback_requested_at, Some(t(12)), "no machine time between the breach and the rollback request");
    assert!(state.failure.as_deref().is_some_and(|f| f.starts_with("analysis failed") && f.contains("error-rate")), "{:?}", state.failure);
    let failed = state.history.last().unwrap();
    assert_eq!(failed.step, 2);
    assert!(failed.outcome.starts_with("failed: analysis failed"), "{}", failed.outcome);
    let measurements = &failed.analysis.as_ref().unwrap().metrics[0].measurements;
    assert_eq!(
        measurements.iter().map(|m| (s(m.at), m.outcome)).collect::<Vec<_>>(),
        vec![(2, Outcome::Successful), (12, Outcome::Failed)]
    );
    assert_eq!(state.analysis, None);
    // The driver rolls back in 5 s.
    sim.perform(&rollback);
    let state = sim.state();
    assert_eq!(state.phase, RolloutPhase::RolledBack);
    let (detected, requested, restored) = (state.detected_at.unwrap(), state.rollback_requested_at.unwrap(), state.restored_at.unwrap());
    assert!(detected <= requested && requested < restored);
    assert_eq!(detected, measurements[1].at, "detected at the breach measurement");
    assert_eq!(restored, t(17));
    assert_eq!(state.finished_at, Some(t(17)));
    assert_eq!(state.weight, 0);
    assert_eq!(sim.step(), Next::Finished);
    // Nothing after the breach was sent but the rollback.
    assert_eq!(sim.actions(), vec![(ActionKind::Deploy, 0), (ActionKind::SetWeight, 5), (ActionKind::Rollback, 0)]);
}

// ---------------------------------------------------------------------------------------------
// 4. No data

fn no_data_sim(rule: NoDataRule) -> Sim {
    Sim::compiled(&canary_strategy(), vec![error_rate(Some(10), Some(3), rule)], &[]).readings(|_, _| Reading::NoData { source: None })
}

#[test]
fn no_data_fail_rolls_back() {
    let mut sim = no_data_sim(NoDataRule::Fail);
    sim.run_to_end();
    let state = sim.state();
    assert_eq!(state.phase, RolloutPhase::RolledBack);
    assert!(state.failure.as_deref().unwrap().contains("no_data: fail"), "{:?}", state.failure);
    assert_eq!(state.detected_at, Some(t(2)));
    assert_eq!(sim.actions().last(), Some(&(ActionKind::Rollback, 0)));
}

#[test]
fn no_data_pass_continues() {
    let mut sim = no_data_sim(NoDataRule::Pass);
    sim.run_to_end();
    let state = sim.state();
    assert_eq!(state.phase, RolloutPhase::Succeeded);
    let run = &state.history[2].analysis.as_ref().unwrap().metrics[0];
    assert_eq!(run.measurements.len(), 3);
    assert!(run.measurements.iter().all(|m| m.no_data && m.outcome == Outcome::Successful));
}

#[test]
fn no_data_inconclusive_pauses_for_a_person_who_resumes() {
    let mut sim = no_data_sim(NoDataRule::Inconclusive);
    assert_eq!(sim.run(100), Stop::Person);
    let state = sim.state();
    assert_eq!(state.phase, RolloutPhase::Paused);
    let pause = state.pause.clone().unwrap();
    assert_eq!(pause.reason, PauseReason::Inconclusive);
    assert_eq!(pause.until, None);
    assert!(pause.message.contains("error-rate"), "{}", pause.message);
    assert_eq!(state.step, 2);
    // Time passing changes nothing; a person decides.
    sim.now = t(10_000);
    assert_eq!(sim.step(), Next::WaitUntil(None));
    assert_eq!(sim.state().phase, RolloutPhase::Paused);
    sim.control(|r, now| r.resume(now)).unwrap();
    let state = sim.state();
    assert_eq!(state.phase, RolloutPhase::Progressing);
    assert_eq!(state.step, 3, "the inconclusive analysis is accepted and the step ends");
    assert!(state.history[2].outcome.contains("inconclusive"), "{}", state.history[2].outcome);
    assert!(state.history[2].analysis.is_some());
    sim.run_to_end();
    assert_eq!(sim.state().phase, RolloutPhase::Succeeded);
}

#[test]
fn no_data_inconclusive_then_abort_rolls_back_as_aborted() {
    let mut sim = no_data_sim(NoDataRule::Inconclusive);
    assert_eq!(sim.run(100), Stop::Person);
    sim.now = t(100);
    sim.control(|r, now| r.abort(now, "ana", "data pipeline is down")).unwrap();
    let state = sim.state();
    assert_eq!(state.phase, RolloutPhase::RollingBack);
    assert_eq!(state.pause, None);
    assert_eq!(state.detected_at, Some(t(100)));
    sim.run_to_end();
    let state = sim.state();
    assert_eq!(state.phase, RolloutPhase::Aborted);
    assert_eq!(state.failure.as_deref(), Some("aborted by ana: data pipeline is down"));
    assert_eq!(sim.actions().last(), Some(&(ActionKind::Rollback, 0)));
    assert!(state.restored_at.is_some());
}

// ---------------------------------------------------------------------------------------------
// 5. Driver failures

#[test]
fn a_driver_failure_on_any_action_rolls_back() {
    let kinds = [(0, "deploy"), (1, "set_weight"), (3, "set_weight"), (5, "set_weight"), (6, "finalize")];
    for (step, name) in kinds {
        let mut sim = Sim::compiled(&canary_strategy(), canary_metrics(), &[]).driver(move |a| {
            if a.step == Some(step) {
                Reply::Fail { took: 2, message: "boom".into() }
            } else {
                done()
            }
        });
        sim.run_to_end();
        let state = sim.state();
        assert_eq!(state.phase, RolloutPhase::RolledBack, "failing step {step}");
        assert_eq!(state.failure.as_deref(), Some(format!("{name} failed: boom").as_str()));
        let keys = sim.keys();
        assert_eq!(keys.last().unwrap(), &format!("{ID}/1/rollback/rollback"));
        assert_eq!(keys[keys.len() - 2], key(1, step, name), "nothing is sent after the failed action but the rollback");
        assert_eq!(state.history.last().unwrap().step, step);
        assert!(state.history.last().unwrap().outcome.contains("boom"));
        // The failed action keeps its error; detected when the failure was reported.
        let failed = sim.sent.iter().find(|a| a.step == Some(step)).unwrap();
        assert_eq!(state.detected_at, Some(failed.decided_at + Duration::seconds(2)));
        assert_eq!(state.rollback_requested_at, state.detected_at);
    }
}

#[test]
fn a_failing_rollback_is_retried_with_the_same_key_then_fails() {
    let mut sim = Sim::compiled(&canary_strategy(), canary_metrics(), &[]).driver(|a| match a.action {
        ActionKind::SetWeight => Reply::Fail { took: 1, message: "boom".into() },
        ActionKind::Rollback => Reply::Fail { took: 1, message: "cluster unreachable".into() },
        _ => done(),
    });
    sim.run_to_end();
    let state = sim.state();
    assert_eq!(state.phase, RolloutPhase::Failed);
    let rollbacks: Vec<&ActionState> = sim.sent.iter().filter(|a| a.action == ActionKind::Rollback).collect();
    assert_eq!(rollbacks.len(), MAX_ROLLBACK_ATTEMPTS as usize);
    assert!(rollbacks.iter().all(|a| a.key == format!("{ID}/1/rollback/rollback")));
    assert_eq!(rollbacks.iter().map(|a| a.attempts).collect::<Vec<_>>(), (1..=MAX_ROLLBACK_ATTEMPTS).collect::<Vec<_>>());
    let failure = state.failure.unwrap();
    assert!(failure.starts_with("set_weight failed: boom"), "{failure}");
    assert!(failure.contains(&format!("the rollback failed {MAX_ROLLBACK_ATTEMPTS} times (cluster unreachable)")), "{failure}");
    assert!(failure.contains("a person must restore the service"), "{failure}");
    assert_eq!(state.restored_at, None);
    assert!(state.finished_at.is_some());
    let action = state.action.unwrap();
    assert_eq!(action.error.as_deref(), Some("cluster unreachable"));
}

#[test]
fn a_rollback_that_fails_twice_then_works_restores() {
    let mut failures = 0;
    let mut sim = Sim::compiled(&canary_strategy(), canary_metrics(), &[]).driver(move |a| match a.action {
        ActionKind::Finalize => Reply::Fail { took: 1, message: "boom".into() },
        ActionKind::Rollback if failures < 2 => {
            failures += 1;
            Reply::Fail { took: 1, message: "try again".into() }
        }
        _ => done(),
    });
    sim.run_to_end();
    let state = sim.state();
    assert_eq!(state.phase, RolloutPhase::RolledBack);
    let rollbacks: Vec<u32> = sim.sent.iter().filter(|a| a.action == ActionKind::Rollback).map(|a| a.attempts).collect();
    assert_eq!(rollbacks, vec![1, 2, 3]);
    assert_eq!(sim.keys().iter().filter(|k| k.ends_with("/rollback")).count(), 1);
    // Requested at the first send, restored at the third one's completion.
    let first = sim.sent.iter().find(|a| a.action == ActionKind::Rollback).unwrap();
    assert_eq!(state.rollback_requested_at, Some(first.decided_at));
    assert_eq!(state.restored_at, Some(first.decided_at + Duration::seconds(3)));
}

// ---------------------------------------------------------------------------------------------
// 6. Digests

#[test]
fn a_digest_mismatch_rolls_back_naming_both_digests() {
    let mut sim = Sim::compiled(&canary_strategy(), canary_metrics(), &[]).driver(|a| match a.action {
        ActionKind::Deploy => Reply::Done { took: 1, digest: Some("sha256:evil".into()) },
        _ => done(),
    });
    sim.run_to_end();
    let state = sim.state();
    assert_eq!(state.phase, RolloutPhase::RolledBack);
    let failure = state.failure.unwrap();
    assert!(failure.contains("sha256:evil") && failure.contains(DIGEST) && failure.contains("deploy"), "{failure}");
    assert_eq!(sim.actions(), vec![(ActionKind::Deploy, 0), (ActionKind::Rollback, 0)]);
    assert_eq!(state.history.len(), 1);
    assert!(state.history[0].outcome.contains("digest mismatch"));
}

#[test]
fn a_digest_mismatch_on_a_later_weight_change_rolls_back_and_no_digest_is_trusted() {
    let mut sim = Sim::compiled(&canary_strategy(), canary_metrics(), &[]).driver(|a| match (a.action, a.weight) {
        (ActionKind::SetWeight, 50) => Reply::Done { took: 1, digest: Some("sha256:other".into()) },
        (ActionKind::SetWeight, _) => Reply::Done { took: 1, digest: None },
        _ => done(),
    });
    sim.run_to_end();
    let state = sim.state();
    assert_eq!(state.phase, RolloutPhase::RolledBack);
    assert!(state.failure.unwrap().contains("set_weight"));
    assert_eq!(state.weight, 0);
}

// ---------------------------------------------------------------------------------------------
// 7. Crash and resume

/// A scenario for the crash property: the plan, the metrics, the driver and the readings.
#[derive(Debug, Clone, Copy)]
enum Scenario {
    Healthy,
    Breach,
    DriverFailure,
    Async,
    FailingRollback,
    BlueGreenWithSmoke,
}

fn scenario(which: Scenario) -> Sim {
    let canary = || Sim::compiled(&canary_strategy(), canary_metrics(), &[]);
    match which {
        Scenario::Healthy => canary(),
        Scenario::Breach => canary().readings(|_, at| value(if s(at) >= 12 { 0.2 } else { 0.001 })),
        Scenario::DriverFailure => {
            canary().driver(|a| if a.weight == 50 { Reply::Fail { took: 1, message: "boom".into() } } else { done() })
        }
        Scenario::Async => canary().driver(|a| match a.action {
            ActionKind::SetWeight => {
                Reply::Async { after: Some(30), result: ActionResult::Completed { deployed_digest: Some(DIGEST.into()) } }
            }
            _ => done(),
        }),
        Scenario::FailingRollback => canary().driver(|a| match a.action {
            ActionKind::Finalize | ActionKind::Rollback => Reply::Fail { took: 1, message: "boom".into() },
            _ => done(),
        }),
        Scenario::BlueGreenWithSmoke => {
            let metrics = vec![named("pre", error_rate(Some(5), Some(2), NoDataRule::Fail)), smoke_check()];
            let strategy = Strategy::BlueGreen {
                pre_promotion_analysis: names(&["pre"]),
                post_promotion_analysis: names(&["pre"]),
                auto_promote: true,
                scale_down_delay_seconds: 30,
            };
            Sim::compiled(&strategy, metrics, &["smoke"])
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Crash {
    /// The decision was stored, then the process died before reporting (the I/O may or may
    /// not have happened).
    AfterCommit,
    /// The process died before the decision was stored.
    BeforeCommit,
}

fn crash_round(sim: &mut Sim, crash: Crash) {
    let before = sim.json.clone();
    let first = sim.apply(|r, now| r.next(now));
    if let Next::Send(a) = &first {
        // The I/O may have reached the driver; its answer is lost.
        sim.sent.push(a.clone());
    }
    if let Crash::BeforeCommit = crash {
        sim.json = before;
    }
    // A new process (or replica) loads the stored state and asks again.
    let again = sim.apply(|r, now| r.next(now));
    match (&first, &again, crash) {
        (Next::Send(a), Next::Send(b), Crash::AfterCommit) => {
            assert_eq!(b.key, a.key, "resent with the same key");
            assert_eq!(b.attempts, a.attempts + 1);
            assert_eq!(b.decided_at, a.decided_at);
        }
        (Next::Send(a), Next::Send(b), Crash::BeforeCommit) => {
            assert_eq!(b.key, a.key);
            assert_eq!(b.attempts, a.attempts);
        }
        (first, again, _) => assert_eq!(first, again, "the same decision after a crash"),
    }
    sim.check(&again);
    sim.nexts.push((sim.now, again.clone()));
    match &again {
        Next::Send(a) => sim.perform(a),
        Next::Measure(specs) => sim.measure(specs),
        Next::WaitUntil(Some(at)) | Next::AwaitReport(at) => sim.advance_to(*at),
        _ => {}
    }
}

fn run_with_crash(which: Scenario, crash: Option<(usize, Crash)>) -> Sim {
    let mut sim = scenario(which);
    for round in 0..500 {
        if let Some((at, kind)) = crash {
            if round == at {
                crash_round(&mut sim, kind);
                continue;
            }
        }
        if matches!(sim.step(), Next::Finished) {
            return sim;
        }
    }
    panic!("{which:?} did not finish");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_crash_anywhere_resends_the_same_keys_only(
        which in prop_oneof![
            Just(Scenario::Healthy), Just(Scenario::Breach), Just(Scenario::DriverFailure),
            Just(Scenario::Async), Just(Scenario::FailingRollback), Just(Scenario::BlueGreenWithSmoke),
        ],
        at in 0usize..40,
        after_commit in any::<bool>(),
    ) {
        let clean = run_with_crash(which, None);
        let rounds = clean.rounds;
        let crash = if after_commit { Crash::AfterCommit } else { Crash::BeforeCommit };
        let crashed = run_with_crash(which, Some((at % rounds.max(1), crash)));
        let clean_keys: BTreeSet<String> = clean.keys().into_iter().collect();
        let crashed_keys: BTreeSet<String> = crashed.keys().into_iter().collect();
        prop_assert_eq!(&crashed_keys, &clean_keys);
        let (a, b) = (clean.state(), crashed.state());
        prop_assert_eq!(a.phase, b.phase);
        prop_assert_eq!(a.history.len(), b.history.len());
        // The failure is the same (a crash during a failing rollback is one more attempt).
        let cause = |f: Option<String>| f.map(|f| f.split(';').next().unwrap_or_default().to_string());
        prop_assert_eq!(cause(a.failure), cause(b.failure));
    }
}

#[test]
fn a_crash_mid_send_resends_the_same_key() {
    // The driver goes silent on the first send of set_weight 50 (the process died).
    let mut silent_once = true;
    let mut sim = Sim::compiled(&canary_strategy(), canary_metrics(), &[]).driver(move |a| {
        if a.weight == 50 && silent_once {
            silent_once = false;
            Reply::Silent
        } else {
            done()
        }
    });
    sim.run_to_end();
    let fifty: Vec<&ActionState> = sim.sent.iter().filter(|a| a.weight == 50).collect();
    assert_eq!(fifty.len(), 2);
    assert_eq!(fifty[0].key, fifty[1].key);
    assert_eq!((fifty[0].attempts, fifty[1].attempts), (1, 2));
    assert_eq!(sim.keys().len(), 5);
    assert_eq!(sim.state().phase, RolloutPhase::Succeeded);
}

// ---------------------------------------------------------------------------------------------
// 8. Asynchronous drivers

#[test]
fn an_accepted_action_awaits_its_report() {
    let mut sim = Sim::compiled(&canary_strategy(), canary_metrics(), &[]).driver(|a| match a.action {
        ActionKind::Deploy => Reply::Async { after: Some(45), result: ActionResult::Completed { deployed_digest: Some(DIGEST.into()) } },
        _ => done(),
    });
    let Next::Send(deploy) = sim.step() else { panic!() };
    assert!(sim.state().action.unwrap().accepted);
    assert_eq!(sim.state().step, 0);
    assert_eq!(sim.step(), Next::AwaitReport(t(REPORT_TIMEOUT_SECONDS)));
    assert_eq!(sim.now, t(45), "the clock moved to the report");
    // The report has been applied: the deploy is done, set_weight comes next.
    let state = sim.state();
    assert_eq!(state.step, 1);
    assert_eq!(state.history[0].finished_at, t(45));
    // A duplicate report changes nothing.
    let before = sim.json.clone();
    assert_eq!(sim.report(&deploy.key, ActionResult::Completed { deployed_digest: Some(DIGEST.into()) }), Ok(()));
    assert_eq!(sim.json, before);
    sim.run_to_end();
    assert_eq!(sim.state().phase, RolloutPhase::Succeeded);
    assert_eq!(sim.sent.iter().filter(|a| a.action == ActionKind::Deploy).count(), 1);
}

#[test]
fn an_accepted_action_without_report_is_resent_with_the_same_key_after_the_timeout() {
    let mut first = true;
    let mut sim = Sim::compiled(&canary_strategy(), canary_metrics(), &[]).driver(move |a| match a.action {
        ActionKind::Deploy if first => {
            first = false;
            Reply::Async { after: None, result: ActionResult::Accepted }
        }
        _ => done(),
    });
    let Next::Send(deploy) = sim.step() else { panic!() };
    assert_eq!(sim.step(), Next::AwaitReport(t(REPORT_TIMEOUT_SECONDS)));
    assert_eq!(sim.now, t(REPORT_TIMEOUT_SECONDS));
    // Before the deadline: wait; at it: resend.
    sim.now = t(REPORT_TIMEOUT_SECONDS - 1);
    assert_eq!(sim.apply(|r, now| r.next(now)), Next::AwaitReport(t(REPORT_TIMEOUT_SECONDS)));
    sim.now = t(REPORT_TIMEOUT_SECONDS);
    let Next::Send(again) = sim.step() else { panic!() };
    assert_eq!(again.key, deploy.key);
    assert_eq!(again.attempts, 2);
    assert!(!again.accepted);
    assert_eq!(again.last_sent_at, Some(t(REPORT_TIMEOUT_SECONDS)));
    sim.run_to_end();
    assert_eq!(sim.state().phase, RolloutPhase::Succeeded);
}

#[test]
fn a_driver_that_never_reports_times_out_into_a_rollback_then_a_failure() {
    let mut sim = Sim::compiled(&canary_strategy(), canary_metrics(), &[]).driver(|a| match a.action {
        ActionKind::Deploy => done(),
        _ => Reply::Async { after: None, result: ActionResult::Accepted },
    });
    sim.run_to_end();
    let state = sim.state();
    assert_eq!(state.phase, RolloutPhase::Failed);
    let weights: Vec<&ActionState> = sim.sent.iter().filter(|a| a.action == ActionKind::SetWeight).collect();
    assert_eq!(weights.len(), MAX_ACTION_ATTEMPTS as usize);
    assert!(weights.iter().all(|a| a.key == key(1, 1, "set_weight")));
    let timeout = Duration::seconds(REPORT_TIMEOUT_SECONDS);
    assert!(weights.windows(2).all(|w| w[1].last_sent_at.unwrap() - w[0].last_sent_at.unwrap() == timeout));
    // The last send timed out: the action failed, detected at its deadline, and rolled back.
    let deadline = weights.last().unwrap().last_sent_at.unwrap() + timeout;
    assert_eq!(state.detected_at, Some(deadline));
    assert_eq!(state.rollback_requested_at, Some(deadline));
    let failure = state.failure.unwrap();
    assert!(failure.starts_with("set_weight failed: the driver accepted it but did not report within 600 s, 5 times"), "{failure}");
    // The rollback never reports either: a person must act.
    let rollbacks: Vec<&ActionState> = sim.sent.iter().filter(|a| a.action == ActionKind::Rollback).collect();
    assert_eq!(rollbacks.len(), MAX_ROLLBACK_ATTEMPTS as usize);
    assert!(failure.contains("a person must restore the service"), "{failure}");
    assert_eq!(state.finished_at, Some(rollbacks.last().unwrap().last_sent_at.unwrap() + timeout));
    assert_eq!(state.restored_at, None);
}

#[test]
fn reports_for_unknown_keys_are_refused_and_change_nothing() {
    let mut sim =
        Sim::compiled(&canary_strategy(), canary_metrics(), &[]).driver(|_| Reply::Async { after: None, result: ActionResult::Accepted });
    // Nothing in flight.
    let before = sim.json.clone();
    let refused = sim.report("dep-1/1/0/deploy", ActionResult::Completed { deployed_digest: None }).unwrap_err();
    assert!(refused.0.contains("no driver action is in flight"), "{refused}");
    assert_eq!(sim.json, before);
    sim.step();
    let before = sim.json.clone();
    for bogus in ["dep-1/1/1/set_weight", "dep-2/1/0/deploy", "dep-1/2/0/deploy", "", "dep-1/1/rollback/rollback"] {
        let refused = sim.report(bogus, ActionResult::Completed { deployed_digest: Some(DIGEST.into()) }).unwrap_err();
        assert!(refused.0.contains("dep-1/1/0/deploy"), "{refused}");
        assert_eq!(sim.json, before, "{bogus}");
    }
    // The real one is applied.
    sim.report(&key(1, 0, "deploy"), ActionResult::Completed { deployed_digest: Some(DIGEST.into()) }).unwrap();
    assert_eq!(sim.state().step, 1);
}

#[test]
fn a_late_duplicate_of_an_earlier_step_changes_nothing() {
    let mut sim = Sim::compiled(&canary_strategy(), canary_metrics(), &[]);
    sim.step(); // deploy, completed
    sim.step(); // set_weight 5, completed
    assert_eq!(sim.state().step, 2);
    let before = sim.json.clone();
    // A webhook redelivers the deploy's report: accepted as a duplicate, nothing moves.
    assert_eq!(sim.report(&key(1, 0, "deploy"), ActionResult::Completed { deployed_digest: Some(DIGEST.into()) }), Ok(()));
    assert_eq!(sim.report(&key(1, 1, "set_weight"), ActionResult::Failed { message: "late".into() }), Ok(()));
    assert_eq!(sim.json, before);
    // A key naming a step not reached yet is not a duplicate.
    assert!(sim.report(&key(1, 3, "set_weight"), ActionResult::Completed { deployed_digest: None }).is_err());
    assert!(sim.report(&key(1, 0, "set_weight"), ActionResult::Completed { deployed_digest: None }).is_err());
    assert_eq!(sim.json, before);
    sim.run_to_end();
    assert_eq!(sim.state().phase, RolloutPhase::Succeeded);
    // And after the end, a duplicate of the finalize is harmless too.
    let before = sim.json.clone();
    assert_eq!(sim.report(&key(1, 6, "finalize"), ActionResult::Completed { deployed_digest: None }), Ok(()));
    assert_eq!(sim.json, before);
}

#[test]
fn an_accepted_rollback_awaits_its_report_too() {
    let mut sim = Sim::compiled(&canary_strategy(), canary_metrics(), &[]).driver(|a| match a.action {
        ActionKind::Finalize => Reply::Fail { took: 1, message: "boom".into() },
        ActionKind::Rollback => Reply::Async { after: Some(120), result: ActionResult::Completed { deployed_digest: None } },
        _ => done(),
    });
    sim.run_to_end();
    let state = sim.state();
    assert_eq!(state.phase, RolloutPhase::RolledBack);
    let requested = state.rollback_requested_at.unwrap();
    assert_eq!(state.restored_at, Some(requested + Duration::seconds(120)));
    assert!(sim.nexts.iter().any(|(_, n)| *n == Next::AwaitReport(requested + Duration::seconds(REPORT_TIMEOUT_SECONDS))));
}

// ---------------------------------------------------------------------------------------------
// 9. Manual controls

#[test]
fn a_manual_pause_holds_the_rollout_without_skipping_a_step() {
    let mut sim = Sim::compiled(&canary_strategy(), canary_metrics(), &[]);
    sim.step(); // deploy
    sim.step(); // set_weight 5
    sim.step(); // first measurement at 2
    assert_eq!(sim.state().step, 2);
    sim.control(|r, now| r.pause(now, "ana", Some("looking at logs"))).unwrap();
    let pause = sim.state().pause.unwrap();
    assert_eq!(pause.reason, PauseReason::Manual);
    assert_eq!(pause.message, "paused by ana: looking at logs");
    assert_eq!(sim.control(|r, now| r.pause(now, "bo", None)).unwrap_err().0, "the rollout is already paused");
    // Hours pass: nothing is measured, nothing sent.
    sim.now = t(7200);
    assert_eq!(sim.step(), Next::WaitUntil(None));
    assert_eq!(sim.sent.len(), 2);
    sim.control(|r, now| r.resume(now)).unwrap();
    assert_eq!(sim.state().step, 2, "the analysis step is still the current one");
    sim.run_to_end();
    let state = sim.state();
    assert_eq!(state.phase, RolloutPhase::Succeeded);
    let run = &state.history[2].analysis.as_ref().unwrap().metrics[0];
    assert_eq!(run.measurements.len(), 3, "the analysis completed its measurements after the pause");
    assert_eq!(s(run.measurements[1].at), 7200);
}

#[test]
fn a_manual_pause_before_a_pause_step_does_not_skip_it() {
    let mut sim = Sim::compiled(&canary_strategy(), canary_metrics(), &[]);
    while sim.state().step < 4 {
        sim.step();
    }
    assert_eq!(sim.now, t(23));
    assert_eq!(sim.state().phase, RolloutPhase::Progressing);
    sim.control(|r, now| r.pause(now, "ana", None)).unwrap();
    sim.now = t(30);
    sim.control(|r, now| r.resume(now)).unwrap();
    assert_eq!(sim.state().step, 4);
    assert_eq!(sim.step(), Next::WaitUntil(Some(t(83))));
    assert_eq!(sim.state().pause.unwrap().reason, PauseReason::Step);
    sim.run_to_end();
    assert_eq!(sim.state().history[4].finished_at, t(83));
}

/// Runs the canary up to its pause step (at 23 s) and lets the machine start the pause.
fn to_the_pause_step(sim: &mut Sim) {
    while sim.state().step < 4 {
        sim.step();
    }
    assert_eq!(sim.apply(|r, now| r.next(now)), Next::WaitUntil(Some(t(83))));
    assert_eq!(sim.state().phase, RolloutPhase::Paused);
    assert_eq!(sim.now, t(23));
}

#[test]
fn a_manual_pause_during_a_timed_pause_step_holds_it() {
    let mut sim = Sim::compiled(&canary_strategy(), canary_metrics(), &[]);
    to_the_pause_step(&mut sim);
    assert_eq!(sim.state().pause.unwrap().until, Some(t(83)));
    sim.now = t(40);
    sim.control(|r, now| r.pause(now, "ana", Some("hold at 50%"))).unwrap();
    let pause = sim.state().pause.unwrap();
    assert_eq!((pause.reason, pause.until), (PauseReason::Manual, None));
    // The pause step's time passes; the person's hold stays.
    sim.now = t(500);
    assert_eq!(sim.step(), Next::WaitUntil(None));
    assert_eq!(sim.state().step, 4);
    sim.control(|r, now| r.resume(now)).unwrap();
    sim.run_to_end();
    let state = sim.state();
    assert_eq!(state.phase, RolloutPhase::Succeeded);
    assert_eq!(s(state.history[4].finished_at), 500);
    // Resumed before the step's time is up, the step pause goes on.
    let mut sim = Sim::compiled(&canary_strategy(), canary_metrics(), &[]);
    to_the_pause_step(&mut sim);
    sim.now = t(40);
    sim.control(|r, now| r.pause(now, "ana", None)).unwrap();
    sim.now = t(50);
    sim.control(|r, now| r.resume(now)).unwrap();
    assert_eq!(sim.step(), Next::WaitUntil(Some(t(83))));
    sim.run_to_end();
    assert_eq!(sim.state().history[4].finished_at, t(83));
}

#[test]
fn a_manual_pause_with_an_action_in_flight_applies_its_result_and_stays_paused() {
    let mut sim = Sim::compiled(&canary_strategy(), canary_metrics(), &[]);
    let Next::Send(deploy) = sim.apply(|r, now| r.next(now)) else { panic!() };
    sim.report(&deploy.key, ActionResult::Accepted).unwrap();
    sim.control(|r, now| r.pause(now, "ana", None)).unwrap();
    sim.now = t(30);
    sim.report(&deploy.key, ActionResult::Completed { deployed_digest: Some(DIGEST.into()) }).unwrap();
    let state = sim.state();
    assert_eq!((state.step, state.phase), (1, RolloutPhase::Paused));
    assert_eq!(state.history[0].finished_at, t(30));
    assert_eq!(sim.step(), Next::WaitUntil(None));
    sim.control(|r, now| r.resume(now)).unwrap();
    let Next::Send(a) = sim.step() else { panic!() };
    assert_eq!(a.key, key(1, 1, "set_weight"));
    sim.run_to_end();
    assert_eq!(sim.state().phase, RolloutPhase::Succeeded);
}

#[test]
fn the_completion_of_an_action_whose_step_was_left_advances_nothing() {
    // As a state stored by an earlier version may hold it: set_weight 5 (step 1) in flight while
    // promote-now moved the rollout on to step 5.
    let plan = compile(&canary_strategy(), &canary_metrics(), &[]).unwrap();
    let mut sim = Sim::new(plan, canary_metrics());
    let mut state = RolloutState::new(t(0));
    state.step = 5;
    state.promoting_now = true;
    state.action = Some(ActionState {
        key: key(1, 1, "set_weight"),
        action: ActionKind::SetWeight,
        step: Some(1),
        weight: 5,
        decided_at: t(0),
        attempts: 1,
        last_sent_at: Some(t(0)),
        accepted: true,
        finished_at: None,
        error: None,
        deployed_digest: None,
    });
    sim.json = serde_json::to_string(&state).unwrap();
    sim.report(&key(1, 1, "set_weight"), ActionResult::Completed { deployed_digest: Some(DIGEST.into()) }).unwrap();
    let state = sim.state();
    assert_eq!(state.step, 5, "step 5 was not skipped by step 1's report");
    assert_eq!(state.weight, 0);
    assert!(state.action.as_ref().unwrap().finished_at.is_some());
    let Next::Send(a) = sim.step() else { panic!() };
    assert_eq!((a.key.as_str(), a.weight), (key(1, 5, "set_weight").as_str(), 100));
    // A wrong digest on it still rolls back: the wrong artifact is out there.
    let mut sim2 = Sim::new(sim.plan.clone(), canary_metrics());
    let mut state = serde_json::from_str::<RolloutState>(&sim.json).unwrap();
    state.action = Some(ActionState { finished_at: None, step: Some(1), key: key(1, 1, "set_weight"), ..state.action.clone().unwrap() });
    sim2.json = serde_json::to_string(&state).unwrap();
    sim2.report(&key(1, 1, "set_weight"), ActionResult::Completed { deployed_digest: Some("sha256:evil".into()) }).unwrap();
    assert_eq!(sim2.state().phase, RolloutPhase::RollingBack);
}

#[test]
fn resuming_a_pause_step_ends_it() {
    let mut sim = Sim::compiled(&canary_strategy(), canary_metrics(), &[]);
    to_the_pause_step(&mut sim);
    assert_eq!(sim.state().step, 4);
    sim.now = t(30);
    sim.control(|r, now| r.resume(now)).unwrap();
    let state = sim.state();
    assert_eq!(state.step, 5);
    assert_eq!(state.history[4].outcome, "resumed by a person");
    assert_eq!(state.history[4].finished_at, t(30));
    let Next::Send(a) = sim.step() else { panic!() };
    assert_eq!((a.action, a.weight, s(a.decided_at)), (ActionKind::SetWeight, 100, 30));
}

#[test]
fn an_indefinite_pause_waits_for_a_person() {
    let strategy = Strategy::Canary { steps: vec![CanaryStep::SetWeight(10), CanaryStep::Pause { duration_seconds: None }] };
    let mut sim = Sim::compiled(&strategy, vec![], &[]);
    assert_eq!(sim.run(50), Stop::Person);
    let state = sim.state();
    assert_eq!(state.pause.as_ref().map(|p| (p.reason, p.until)), Some((PauseReason::Step, None)));
    sim.now = t(1_000_000);
    assert_eq!(sim.step(), Next::WaitUntil(None));
    sim.control(|r, now| r.resume(now)).unwrap();
    sim.run_to_end();
    assert_eq!(sim.actions().last(), Some(&(ActionKind::Finalize, 100)));
    assert_eq!(sim.actions()[2], (ActionKind::SetWeight, 100));
}

#[test]
fn promote_now_skips_pauses_and_analyses_and_jumps_to_the_last_weight() {
    let mut sim = Sim::compiled(&canary_strategy(), canary_metrics(), &[]);
    sim.step(); // deploy
    sim.step(); // set_weight 5
    sim.step(); // one measurement
    sim.control(|r, now| r.promote_now(now)).unwrap();
    sim.run_to_end();
    let state = sim.state();
    assert_eq!(state.phase, RolloutPhase::Succeeded);
    assert_eq!(sim.keys(), vec![key(1, 0, "deploy"), key(1, 1, "set_weight"), key(1, 5, "set_weight"), key(1, 6, "finalize")]);
    let outcomes: Vec<&str> = state.history.iter().map(|r| r.outcome.as_str()).collect();
    assert_eq!(outcomes[2..5], ["skipped (promote now)"; 3]);
    assert_eq!(state.history.len(), 7);
    assert_eq!(state.weight, 100);
    // The skipped analysis keeps what it measured.
    assert_eq!(state.history[2].analysis.as_ref().unwrap().metrics[0].measurements.len(), 1);
}

#[test]
fn promote_now_from_a_pause_and_with_smoke_checks() {
    let metrics = vec![error_rate(Some(10), Some(3), NoDataRule::Fail), smoke_check()];
    let strategy = Strategy::Canary {
        steps: vec![
            CanaryStep::SetWeight(5),
            CanaryStep::Pause { duration_seconds: None },
            CanaryStep::SetWeight(20),
            CanaryStep::Analysis { metrics: names(&["error-rate"]) },
            CanaryStep::SetWeight(50),
        ],
    };
    let mut sim = Sim::compiled(&strategy, metrics, &["smoke"]);
    // 0 deploy, 1 smoke, 2 sw5, 3 smoke, 4 pause, 5 sw20, 6 smoke, 7 analysis, 8 sw50, 9 smoke, 10 sw100, 11 smoke, 12 finalize
    assert_eq!(sim.run(50), Stop::Person);
    assert_eq!(sim.state().step, 4);
    sim.control(|r, now| r.promote_now(now)).unwrap();
    assert_eq!(sim.state().phase, RolloutPhase::Progressing);
    assert_eq!(sim.state().pause, None);
    sim.run_to_end();
    let state = sim.state();
    assert_eq!(state.phase, RolloutPhase::Succeeded);
    assert_eq!(sim.keys(), vec![key(1, 0, "deploy"), key(1, 2, "set_weight"), key(1, 10, "set_weight"), key(1, 12, "finalize")]);
    // Smoke checks run after the traffic change that happens; those after skipped weights do not.
    let smoke_measured: Vec<usize> = state
        .history
        .iter()
        .filter(|r| r.analysis.as_ref().is_some_and(|a| a.metrics.iter().any(|m| m.name == "smoke" && !m.measurements.is_empty())))
        .map(|r| r.step)
        .collect();
    assert_eq!(smoke_measured, vec![1, 3, 11]);
    assert!(state.history.iter().filter(|r| [4, 5, 6, 7, 8, 9].contains(&r.step)).all(|r| r.outcome == "skipped (promote now)"));
}

#[test]
fn promote_now_on_blue_green_switches_without_waiting() {
    let metrics = vec![named("post", error_rate(Some(10), Some(3), NoDataRule::Fail))];
    let strategy = Strategy::BlueGreen {
        pre_promotion_analysis: vec![],
        post_promotion_analysis: names(&["post"]),
        auto_promote: false,
        scale_down_delay_seconds: 300,
    };
    let mut sim = Sim::compiled(&strategy, metrics, &[]);
    assert_eq!(sim.run(50), Stop::Person);
    sim.control(|r, now| r.promote_now(now)).unwrap();
    sim.run_to_end();
    assert_eq!(sim.actions(), vec![(ActionKind::Deploy, 0), (ActionKind::Switch, 100), (ActionKind::Finalize, 100)]);
    assert_eq!(sim.state().finished_at, Some(t(3)), "no analysis, no scale-down delay");
}

#[test]
fn retry_after_a_rollback_starts_a_new_generation() {
    let mut fail = true;
    let mut sim = Sim::compiled(&canary_strategy(), canary_metrics(), &[]).driver(move |a| {
        if a.weight == 50 && fail {
            fail = false;
            Reply::Fail { took: 1, message: "boom".into() }
        } else {
            done()
        }
    });
    sim.run_to_end();
    assert_eq!(sim.state().phase, RolloutPhase::RolledBack);
    let first_history = sim.state().history.len();
    sim.now = t(1000);
    sim.control(|r, now| r.retry(now)).unwrap();
    let state = sim.state();
    assert_eq!((state.phase, state.step, state.generation, state.weight), (RolloutPhase::Progressing, 0, 2, 0));
    assert_eq!(
        (state.failure, state.detected_at, state.rollback_requested_at, state.restored_at, state.finished_at),
        (None, None, None, None, None)
    );
    assert_eq!(state.history.len(), first_history);
    assert_eq!(state.step_started_at, t(1000));
    sim.run_to_end();
    let state = sim.state();
    assert_eq!(state.phase, RolloutPhase::Succeeded);
    let second: Vec<String> = sim.keys().into_iter().filter(|k| k.starts_with("dep-1/2/")).collect();
    assert_eq!(
        second,
        vec![key(2, 0, "deploy"), key(2, 1, "set_weight"), key(2, 3, "set_weight"), key(2, 5, "set_weight"), key(2, 6, "finalize")]
    );
    let first: BTreeSet<String> = sim.keys().into_iter().filter(|k| k.starts_with("dep-1/1/")).collect();
    assert_eq!(first.len(), 4, "{first:?}");
    assert_eq!(state.history.len(), first_history + 7);
    assert!(state.history[..first_history].iter().all(|r| r.generation == 1));
    assert!(state.history[first_history..].iter().all(|r| r.generation == 2));
}

type ControlFn = dyn Fn(&mut Rollout<'_>, DateTime<Utc>) -> Result<(), Refused>;

#[test]
fn controls_are_refused_in_the_wrong_phase() {
    let mut sim = Sim::compiled(&canary_strategy(), canary_metrics(), &[]);
    let refused = |sim: &mut Sim, f: &ControlFn, words: &str| {
        let before = sim.json.clone();
        let err = sim.control(|r, now| f(r, now)).unwrap_err();
        assert!(err.0.contains(words), "{err}");
        assert_eq!(sim.json, before, "a refused control changes nothing");
    };
    // Progressing.
    refused(&mut sim, &|r, now| r.resume(now), "only a paused rollout can be resumed; this one is progressing");
    refused(&mut sim, &|r, now| r.retry(now), "this one is progressing");
    // Rolling back.
    sim.control(|r, now| r.abort(now, "ana", "no")).unwrap();
    refused(&mut sim, &|r, now| r.abort(now, "ana", "again"), "a rolling_back rollout cannot be aborted");
    refused(&mut sim, &|r, now| r.pause(now, "ana", None), "a rolling_back rollout cannot be paused");
    refused(&mut sim, &|r, now| r.promote_now(now), "a rolling_back rollout cannot be promoted");
    refused(&mut sim, &|r, now| r.resume(now), "this one is rolling_back");
    refused(&mut sim, &|r, now| r.retry(now), "this one is rolling_back");
    sim.run_to_end();
    assert_eq!(sim.state().phase, RolloutPhase::Aborted);
    // Finished.
    refused(&mut sim, &|r, now| r.abort(now, "ana", "again"), "a aborted rollout cannot be aborted");
    refused(&mut sim, &|r, now| r.pause(now, "ana", None), "cannot be paused");
    refused(&mut sim, &|r, now| r.promote_now(now), "cannot be promoted");
    refused(&mut sim, &|r, now| r.resume(now), "this one is aborted");
    // Succeeded cannot be retried.
    let mut ok = Sim::compiled(&canary_strategy(), canary_metrics(), &[]);
    ok.run_to_end();
    refused(&mut ok, &|r, now| r.retry(now), "this one is succeeded");
    // Failed can be retried.
    let mut failed = scenario(Scenario::FailingRollback);
    failed.run_to_end();
    assert_eq!(failed.state().phase, RolloutPhase::Failed);
    failed.control(|r, now| r.retry(now)).unwrap();
    assert_eq!(failed.state().generation, 2);
}

// ---------------------------------------------------------------------------------------------
// 10. Blue-green

fn blue_green(auto_promote: bool, delay: u64) -> (Strategy, Vec<MetricSpec>) {
    let metrics =
        vec![named("pre", error_rate(Some(10), Some(2), NoDataRule::Fail)), named("post", error_rate(Some(10), Some(2), NoDataRule::Fail))];
    let strategy = Strategy::BlueGreen {
        pre_promotion_analysis: names(&["pre"]),
        post_promotion_analysis: names(&["post"]),
        auto_promote,
        scale_down_delay_seconds: delay,
    };
    (strategy, metrics)
}

#[test]
fn blue_green_previews_analyses_waits_switches_and_keeps_the_old_side() {
    let (strategy, metrics) = blue_green(false, 120);
    let mut sim = Sim::compiled(&strategy, metrics, &[]);
    // Deploy to the preview at weight 0, pre-promotion analysis (1 and 11), then a person.
    assert_eq!(sim.run(50), Stop::Person);
    let state = sim.state();
    assert_eq!(sim.actions(), vec![(ActionKind::Deploy, 0)]);
    assert_eq!(state.weight, 0);
    assert_eq!(state.pause.as_ref().map(|p| p.reason), Some(PauseReason::Step));
    assert_eq!(state.history[1].analysis.as_ref().unwrap().metrics[0].name, "pre");
    assert_eq!(state.history[1].analysis.as_ref().unwrap().metrics[0].measurements.len(), 2);
    sim.now = t(100);
    sim.control(|r, now| r.resume(now)).unwrap();
    let Next::Send(switch) = sim.step() else { panic!() };
    assert_eq!((switch.action, switch.key.as_str()), (ActionKind::Switch, key(1, 3, "switch").as_str()));
    assert_eq!(sim.state().weight, 100);
    sim.run_to_end();
    let state = sim.state();
    assert_eq!(state.phase, RolloutPhase::Succeeded);
    // Post-promotion analysis 101 / 111, then the old side is kept 120 s, then finalize.
    let delay = state.history.iter().find(|r| r.description == "keep the old side 120s").unwrap();
    assert_eq!((s(delay.started_at), s(delay.finished_at)), (111, 231));
    let finalize = sim.sent.last().unwrap();
    assert_eq!((finalize.action, s(finalize.decided_at)), (ActionKind::Finalize, 231));
    assert!(sim.nexts.iter().any(|(at, n)| s(*at) == 111 && *n == Next::WaitUntil(Some(t(231)))));
}

#[test]
fn blue_green_post_promotion_failure_switches_back() {
    let (strategy, metrics) = blue_green(true, 30);
    let mut sim = Sim::compiled(&strategy, metrics, &[]).readings(|name, _| value(if name == "post" { 0.5 } else { 0.0 }));
    sim.run_to_end();
    let state = sim.state();
    assert_eq!(state.phase, RolloutPhase::RolledBack);
    assert_eq!(sim.actions(), vec![(ActionKind::Deploy, 0), (ActionKind::Switch, 100), (ActionKind::Rollback, 0)]);
    assert!(state.failure.unwrap().contains("post"));
    assert_eq!(state.weight, 0);
    // A pre-promotion failure never switches.
    let (strategy, metrics) = blue_green(true, 30);
    let mut sim = Sim::compiled(&strategy, metrics, &[]).readings(|name, _| value(if name == "pre" { 0.5 } else { 0.0 }));
    sim.run_to_end();
    assert_eq!(sim.actions(), vec![(ActionKind::Deploy, 0), (ActionKind::Rollback, 0)]);
}

// ---------------------------------------------------------------------------------------------
// 11. Freezes

#[test]
fn a_freeze_pause_with_an_end_resumes_by_itself_without_skipping_the_step() {
    let mut sim = Sim::compiled(&canary_strategy(), canary_metrics(), &[]);
    sim.step(); // deploy
    assert!(sim.apply(|r, _| r.at_step_boundary()));
    let before = sim.state().step;
    sim.apply(|r, now| r.freeze_pause(now, Some(t(3600)), "stopped by the freeze".into()));
    let pause = sim.state().pause.unwrap();
    assert_eq!((pause.reason, pause.until, pause.since), (PauseReason::Freeze, Some(t(3600)), t(1)));
    assert!(!sim.apply(|r, _| r.at_step_boundary()), "paused: not a boundary");
    assert_eq!(sim.step(), Next::WaitUntil(Some(t(3600))));
    assert_eq!(sim.now, t(3600));
    // The freeze is over: the rollout goes on with the same step.
    let Next::Send(a) = sim.step() else { panic!("{:?}", sim.state()) };
    assert_eq!((a.action, a.weight, a.key.as_str()), (ActionKind::SetWeight, 5, key(1, 1, "set_weight").as_str()));
    let state = sim.state();
    assert_eq!(state.step, before + 1, "the set_weight step was done, not skipped");
    assert_eq!(state.history[before].description, "set weight 5%");
    assert_eq!(state.history[before].outcome, "set_weight done");
    assert_eq!(state.pause, None);
    assert_eq!(state.phase, RolloutPhase::Progressing);
    sim.run_to_end();
    assert_eq!(sim.state().phase, RolloutPhase::Succeeded);
    assert_eq!(sim.keys().len(), 5);
}

#[test]
fn a_freeze_pause_without_an_end_waits_for_a_person_and_a_freeze_is_not_a_manual_control() {
    let mut sim = Sim::compiled(&canary_strategy(), canary_metrics(), &[]);
    // Step 0 is not a boundary (the deploy is the start); after it, it is.
    assert!(!sim.apply(|r, _| r.at_step_boundary()));
    sim.step();
    sim.apply(|r, now| r.freeze_pause(now, None, "freeze".into()));
    sim.now = t(1_000_000);
    assert_eq!(sim.step(), Next::WaitUntil(None));
    // A freeze does not pause what is already paused or finished.
    let before = sim.json.clone();
    sim.apply(|r, now| r.freeze_pause(now, Some(t(5)), "again".into()));
    assert_eq!(sim.json, before);
    sim.control(|r, now| r.resume(now)).unwrap();
    assert_eq!(sim.state().step, 1);
    sim.run_to_end();
    let before = sim.json.clone();
    sim.apply(|r, now| r.freeze_pause(now, None, "late".into()));
    assert_eq!(sim.json, before);
}

#[test]
fn at_step_boundary_is_true_only_before_a_new_action() {
    let mut sim = Sim::compiled(&canary_strategy(), canary_metrics(), &[]).driver(|a| {
        if a.weight == 5 {
            Reply::Async { after: None, result: ActionResult::Accepted }
        } else {
            done()
        }
    });
    sim.step(); // deploy done, at set_weight 5
    assert!(sim.apply(|r, _| r.at_step_boundary()));
    sim.apply(|r, now| r.next(now)); // set_weight 5 decided (in flight)
    assert!(!sim.apply(|r, _| r.at_step_boundary()), "an action in flight is not a boundary");
    sim.report(&key(1, 1, "set_weight"), ActionResult::Completed { deployed_digest: None }).unwrap();
    assert_eq!(sim.state().step, 2);
    assert!(!sim.apply(|r, _| r.at_step_boundary()), "an analysis step is not a boundary");
}

// ---------------------------------------------------------------------------------------------
// 12. Abort with an action in flight

#[test]
fn a_late_completion_after_an_abort_does_not_advance_the_plan() {
    let mut sim = Sim::compiled(&canary_strategy(), canary_metrics(), &[]);
    sim.step(); // deploy
    let Next::Send(in_flight) = sim.apply(|r, now| r.next(now)) else { panic!() };
    assert_eq!(in_flight.weight, 5);
    sim.sent.push(in_flight.clone());
    sim.now = t(5);
    sim.control(|r, now| r.abort(now, "ana", "wrong release")).unwrap();
    // The driver's answer arrives after the abort.
    sim.report(&in_flight.key, ActionResult::Completed { deployed_digest: Some(DIGEST.into()) }).unwrap();
    let state = sim.state();
    assert_eq!(state.phase, RolloutPhase::RollingBack);
    assert_eq!(state.step, 1, "the plan did not advance");
    assert_eq!(state.weight, 0);
    let Next::Send(rollback) = sim.step() else { panic!() };
    assert_eq!(rollback.action, ActionKind::Rollback);
    sim.run_to_end();
    let state = sim.state();
    assert_eq!(state.phase, RolloutPhase::Aborted);
    assert_eq!(sim.keys(), vec![key(1, 0, "deploy"), key(1, 1, "set_weight"), format!("{ID}/1/rollback/rollback")]);
}

#[test]
fn a_completion_arriving_after_the_rollback_was_decided_is_refused() {
    let mut sim = Sim::compiled(&canary_strategy(), canary_metrics(), &[]);
    sim.step();
    let Next::Send(in_flight) = sim.apply(|r, now| r.next(now)) else { panic!() };
    sim.control(|r, now| r.abort(now, "ana", "wrong release")).unwrap();
    let Next::Send(rollback) = sim.apply(|r, now| r.next(now)) else { panic!() };
    let before = sim.json.clone();
    assert!(sim.report(&in_flight.key, ActionResult::Completed { deployed_digest: None }).is_err());
    assert!(sim.report(&in_flight.key, ActionResult::Failed { message: "x".into() }).is_err());
    assert_eq!(sim.json, before);
    sim.perform(&rollback);
    assert_eq!(sim.state().phase, RolloutPhase::Aborted);
}

#[test]
fn an_abort_while_an_async_action_is_accepted_still_rolls_back() {
    let mut sim = Sim::compiled(&canary_strategy(), canary_metrics(), &[]).driver(|a| {
        if a.action == ActionKind::Deploy {
            Reply::Async { after: None, result: ActionResult::Accepted }
        } else {
            done()
        }
    });
    let Next::Send(deploy) = sim.apply(|r, now| r.next(now)) else { panic!() };
    sim.report(&deploy.key, ActionResult::Accepted).unwrap();
    sim.control(|r, now| r.abort(now, "ana", "stop")).unwrap();
    // Even a failure report of the old action is just noted.
    sim.report(&deploy.key, ActionResult::Failed { message: "late".into() }).unwrap();
    let state = sim.state();
    assert_eq!(state.action.as_ref().unwrap().error.as_deref(), Some("late"));
    assert_eq!(state.failure.as_deref(), Some("aborted by ana: stop"));
    sim.run_to_end();
    assert_eq!(sim.state().phase, RolloutPhase::Aborted);
}

// ---------------------------------------------------------------------------------------------
// Long analyses

#[test]
fn a_metric_counting_more_measurements_than_are_kept_completes() {
    let metrics = vec![error_rate(Some(10), Some(80), NoDataRule::Fail)];
    let strategy = Strategy::AllAtOnce { analysis: names(&["error-rate"]) };
    let mut sim = Sim::compiled(&strategy, metrics, &[]);
    assert_eq!(sim.run(1000), Stop::Finished);
    let state = sim.state();
    assert_eq!(state.phase, RolloutPhase::Succeeded);
    let run = &state.history[1].analysis.as_ref().unwrap().metrics[0];
    assert_eq!(run.assessment.as_ref().unwrap().successful, 80);
    assert_eq!(sim.nexts.iter().filter(|(_, n)| matches!(n, Next::Measure(_))).count(), 80);
}

#[test]
fn an_open_ended_metric_keeps_counting_failures_beyond_the_kept_measurements() {
    // Until the step ends, failure_limit 1: the second failure, 100 measurements after the
    // first, fails the analysis.
    let metrics = vec![MetricSpec { failure_limit: 1, ..error_rate(Some(10), None, NoDataRule::Fail) }];
    let strategy = Strategy::AllAtOnce { analysis: names(&["error-rate"]) };
    let mut sim = Sim::compiled(&strategy, metrics, &[]).readings(|_, at| {
        let n = (s(at) - 1) / 10;
        value(if n == 5 || n == 105 { 0.5 } else { 0.001 })
    });
    assert_eq!(sim.run(1000), Stop::Finished);
    let state = sim.state();
    assert_eq!(state.phase, RolloutPhase::RolledBack);
    assert_eq!(state.detected_at, Some(t(1 + 105 * 10)));
    let run = &state.history[1].analysis.as_ref().unwrap().metrics[0];
    assert!(run.measurements.len() <= signalbox_rollout::plan::MAX_MEASUREMENTS_KEPT + 2, "{}", run.measurements.len());
    assert_eq!(run.assessment.as_ref().unwrap().failed, 2);
}

#[test]
fn an_open_ended_metric_counts_a_run_of_errors_longer_than_the_kept_measurements() {
    let metrics = vec![MetricSpec { consecutive_error_limit: 60, ..error_rate(Some(10), None, NoDataRule::Fail) }];
    let strategy = Strategy::AllAtOnce { analysis: names(&["error-rate"]) };
    let mut sim = Sim::compiled(&strategy, metrics, &[]).readings(|_, at| {
        if s(at) < 50 {
            value(0.001)
        } else {
            Reading::Error { message: "prometheus is down".into() }
        }
    });
    assert_eq!(sim.run(1000), Stop::Finished);
    let state = sim.state();
    assert_eq!(state.phase, RolloutPhase::RolledBack);
    assert!(state.failure.as_deref().unwrap().contains("consecutive errors 61 > consecutive_error_limit 60"), "{:?}", state.failure);
    let run = &state.history[1].analysis.as_ref().unwrap().metrics[0];
    assert_eq!(run.assessment.as_ref().unwrap().consecutive_errors, 61);
}

#[test]
fn huge_durations_in_a_stored_plan_do_not_panic() {
    for plan in [
        vec![Step::Deploy { weight: 0 }, Step::Pause { duration_seconds: Some(u64::MAX) }, Step::Finalize],
        vec![Step::Deploy { weight: 0 }, Step::Pause { duration_seconds: Some(i64::MAX as u64) }, Step::Finalize],
        vec![Step::Deploy { weight: 0 }, Step::ScaleDownDelay { seconds: u64::MAX }, Step::Finalize],
    ] {
        let mut sim = Sim::new(plan, vec![]);
        sim.step();
        let next = sim.apply(|r, now| r.next(now));
        assert!(matches!(next, Next::WaitUntil(Some(at)) if at > t(1_000_000_000)), "{next:?}");
        // Near the end of time, nothing overflows either.
        sim.now = DateTime::<Utc>::MAX_UTC;
        let _ = sim.apply(|r, now| r.next(now));
    }
}

// ---------------------------------------------------------------------------------------------
// 13. Arbitrary plans and readings

fn metric_pool() -> Vec<MetricSpec> {
    vec![
        error_rate(Some(10), Some(3), NoDataRule::Fail),
        named(
            "latency",
            MetricSpec {
                provider: ProviderSpec::Prometheus { address: None, query: "histogram_quantile(0.99, x)".into() },
                success_condition: Some("all(result, # < 300)".into()),
                failure_condition: Some("any(result, # > 1000)".into()),
                failure_limit: 1,
                inconclusive_limit: 2,
                ..error_rate(Some(5), Some(4), NoDataRule::Inconclusive)
            },
        ),
        named("saturation", MetricSpec { success_condition: Some("avg(result) < 0.8".into()), ..error_rate(None, None, NoDataRule::Pass) }),
        MetricSpec { initial_delay_seconds: 15, ..named("delayed", error_rate(Some(20), Some(2), NoDataRule::Pass)) },
        MetricSpec { dry_run: true, ..named("observed", error_rate(Some(10), Some(2), NoDataRule::Inconclusive)) },
        smoke_check(),
    ]
}

fn healthy_reading(name: &str) -> Reading {
    match name {
        "latency" => Reading::Values { values: vec![120.0, 180.0], baseline: None, source: None },
        "smoke" => value(42.0),
        _ => value(0.001),
    }
}

fn metric_names() -> impl Gen<Value = Vec<String>> {
    proptest::sample::subsequence(vec!["error-rate", "latency", "saturation", "delayed", "observed", "smoke"], 0..=3)
        .prop_map(|v| v.into_iter().map(String::from).collect())
}

fn strategy_gen() -> impl Gen<Value = Strategy> {
    let canary_step = prop_oneof![
        (0u8..=100).prop_map(CanaryStep::SetWeight),
        proptest::option::of(0u64..300).prop_map(|duration_seconds| CanaryStep::Pause { duration_seconds }),
        metric_names().prop_filter("an analysis names a metric", |m| !m.is_empty()).prop_map(|metrics| CanaryStep::Analysis { metrics }),
    ];
    prop_oneof![
        metric_names().prop_map(|analysis| Strategy::AllAtOnce { analysis }),
        (1u8..=8, 0u64..200, metric_names()).prop_map(|(batches, pause_seconds, analysis)| Strategy::Rolling {
            batches,
            pause_seconds,
            analysis
        }),
        proptest::collection::vec(canary_step, 1..8).prop_map(|steps| Strategy::Canary { steps }),
        (metric_names(), metric_names(), any::<bool>(), 0u64..200).prop_map(|(pre, post, auto_promote, delay)| Strategy::BlueGreen {
            pre_promotion_analysis: pre,
            post_promotion_analysis: post,
            auto_promote,
            scale_down_delay_seconds: delay,
        }),
    ]
}

/// Steps as a stored plan may hold them, valid or not.
fn raw_step() -> impl Gen<Value = Step> {
    prop_oneof![
        any::<u8>().prop_map(|weight| Step::Deploy { weight }),
        any::<u8>().prop_map(|weight| Step::SetWeight { weight }),
        Just(Step::Switch),
        proptest::option::of(prop_oneof![0u64..100, any::<u64>()]).prop_map(|duration_seconds| Step::Pause { duration_seconds }),
        (
            proptest::collection::vec(
                prop_oneof![Just("error-rate".to_string()), Just("latency".to_string()), Just("nope".to_string())],
                0..3
            ),
            any::<bool>()
        )
            .prop_map(|(metrics, smoke)| Step::Analysis { metrics, smoke }),
        prop_oneof![0u64..100, any::<u64>()].prop_map(|seconds| Step::ScaleDownDelay { seconds }),
        Just(Step::Finalize),
    ]
}

fn reading_gen() -> impl Gen<Value = Reading> {
    prop_oneof![
        prop_oneof![Just(0.001), Just(0.5), Just(f64::NAN), Just(f64::INFINITY), Just(-1.0), Just(250.0), Just(5000.0)].prop_map(value),
        Just(Reading::Values { values: vec![], baseline: None, source: None }),
        Just(Reading::Values { values: vec![f64::NAN, 0.001, 2000.0], baseline: Some(vec![f64::NAN]), source: Some("q".into()) }),
        Just(Reading::NoData { source: None }),
        Just(Reading::Error { message: "timeout".into() }),
        Just(Reading::CheckFailed { message: "status 503".into(), latency_ms: Some(12.0) }),
    ]
}

#[derive(Debug, Clone)]
enum Act {
    Pause,
    Resume,
    Abort,
    PromoteNow,
    Retry,
    Freeze(Option<i64>),
}

fn act_gen() -> impl Gen<Value = Act> {
    prop_oneof![
        Just(Act::Pause),
        Just(Act::Resume),
        Just(Act::Abort),
        Just(Act::PromoteNow),
        Just(Act::Retry),
        proptest::option::of(0i64..500).prop_map(Act::Freeze),
    ]
}

fn reply_gen() -> impl Gen<Value = Reply> {
    prop_oneof![
        3 => Just(done()),
        1 => Just(Reply::Done { took: 0, digest: None }),
        1 => Just(Reply::Done { took: 2, digest: Some("sha256:other".into()) }),
        1 => Just(Reply::Fail { took: 1, message: "boom".into() }),
        1 => (0i64..700).prop_map(|after| Reply::Async { after: Some(after), result: ActionResult::Completed { deployed_digest: None } }),
        1 => Just(Reply::Async { after: Some(5), result: ActionResult::Failed { message: "late failure".into() } }),
        1 => Just(Reply::Async { after: None, result: ActionResult::Accepted }),
    ]
}

fn act(sim: &mut Sim, a: &Act) {
    let _ = match a {
        Act::Pause => sim.control(|r, now| r.pause(now, "p", None)),
        Act::Resume => sim.control(|r, now| r.resume(now)),
        Act::Abort => sim.control(|r, now| r.abort(now, "p", "x")),
        Act::PromoteNow => sim.control(|r, now| r.promote_now(now)),
        Act::Retry => sim.control(|r, now| r.retry(now)),
        Act::Freeze(until) => {
            let until = until.map(|u| sim.now + Duration::seconds(u));
            sim.apply(|r, now| {
                if r.at_step_boundary() {
                    r.freeze_pause(now, until, "freeze".into())
                }
            });
            Ok(())
        }
    };
}

/// Drives an arbitrary rollout with arbitrary answers; a person intervenes now and then.
/// Returns the number of rounds it took to finish.
fn chaos(plan: Vec<Step>, replies: Vec<Reply>, readings: Vec<Reading>, acts: Vec<(usize, Act)>) -> usize {
    let mut i = 0usize;
    let mut j = 0usize;
    let mut sim = Sim::new(plan, metric_pool())
        .driver(move |_| {
            i += 1;
            replies[i % replies.len()].clone()
        })
        .readings(move |_, _| {
            j += 1;
            readings[j % readings.len()].clone()
        });
    let mut k = 0usize;
    let mut retries = 0;
    for round in 0..3000 {
        // A person acts now and then, and always when the rollout waits for one; late in the
        // run, the person aborts, so that every run ends.
        let waiting = matches!(sim.nexts.last(), Some((_, Next::WaitUntil(None))));
        if round > 1500 {
            act(&mut sim, if waiting { &Act::Resume } else { &Act::Abort });
        } else if let Some((_, a)) = acts.get(k).filter(|(at, _)| *at <= round || waiting) {
            if !(matches!(a, Act::Retry) && retries >= 2) {
                if matches!(a, Act::Retry) {
                    retries += 1;
                }
                act(&mut sim, a);
            }
            k += 1;
        } else if waiting {
            act(&mut sim, &Act::Resume);
        }
        match sim.step() {
            Next::Finished => return round,
            Next::WaitUntil(None) => {}
            _ => {}
        }
        let state = sim.state();
        assert!(state.step <= sim.plan.len());
        let generation = state.generation;
        let keys: BTreeSet<String> = sim.keys().into_iter().filter(|k| k.starts_with(&format!("{ID}/{generation}/"))).collect();
        assert!(keys.len() <= sim.plan.len() + 1, "{keys:?}");
    }
    panic!("did not finish in 3000 rounds: {:#?}", sim.state());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn compiled_plans_finish_when_everything_is_healthy(strategy in strategy_gen(), smoke in metric_names(), async_driver in any::<bool>()) {
        let metrics = metric_pool();
        let plan = compile(&strategy, &metrics, &smoke).unwrap();
        let n = plan.len();
        let mut sim = Sim::new(plan, metrics)
            .readings(|name, _| healthy_reading(name))
            .driver(move |_| if async_driver {
                Reply::Async { after: Some(7), result: ActionResult::Completed { deployed_digest: Some(DIGEST.into()) } }
            } else {
                done()
            });
        // Each step: at most one action (send, wait) or a few measurements and waits; indefinite
        // pauses are resumed by a person.
        let budget = 20 * n + 10;
        loop {
            match sim.run(budget) {
                Stop::Finished => break,
                Stop::Person => sim.control(|r, now| r.resume(now)).unwrap(),
                Stop::Budget => panic!("not finished in {budget} rounds: {:#?}", sim.state()),
            }
            prop_assert!(sim.rounds < budget, "{} rounds", sim.rounds);
        }
        let state = sim.state();
        prop_assert_eq!(state.phase, RolloutPhase::Succeeded);
        prop_assert_eq!(state.history.len(), n);
        prop_assert_eq!(state.weight, 100);
        prop_assert!(sim.sent.iter().all(|a| a.attempts == 1));
        let actions = sim.plan.iter().filter(|s| matches!(s, Step::Deploy { .. } | Step::SetWeight { .. } | Step::Switch | Step::Finalize)).count();
        prop_assert_eq!(sim.keys().len(), actions);
        prop_assert_eq!(sim.sent.len(), actions);
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strategies_and_answers_never_panic_and_always_end(
        strategy in strategy_gen(),
        smoke in metric_names(),
        replies in proptest::collection::vec(reply_gen(), 1..8),
        readings in proptest::collection::vec(reading_gen(), 1..12),
        acts in proptest::collection::vec((0usize..200, act_gen()), 0..6),
    ) {
        let plan = compile(&strategy, &metric_pool(), &smoke).unwrap();
        let mut acts = acts;
        acts.sort_by_key(|a| a.0);
        chaos(plan, replies, readings, acts);
    }

    #[test]
    fn arbitrary_stored_plans_never_panic_and_always_end(
        plan in proptest::collection::vec(raw_step(), 0..12),
        replies in proptest::collection::vec(reply_gen(), 1..8),
        readings in proptest::collection::vec(reading_gen(), 1..12),
        acts in proptest::collection::vec((0usize..200, act_gen()), 0..6),
    ) {
        let mut acts = acts;
        acts.sort_by_key(|a| a.0);
        chaos(plan, replies, readings, acts);
    }

    #[test]
    fn arbitrary_stored_states_never_panic(
        plan in proptest::collection::vec(raw_step(), 0..8),
        step in 0usize..12,
        phase in prop_oneof![
            Just(RolloutPhase::Progressing), Just(RolloutPhase::Paused), Just(RolloutPhase::RollingBack),
            Just(RolloutPhase::Succeeded), Just(RolloutPhase::Failed),
        ],
        action_step in proptest::option::of(0usize..12),
        accepted in any::<bool>(),
        analysis_step in proptest::option::of(0usize..12),
        paused in proptest::option::of((prop_oneof![Just(PauseReason::Step), Just(PauseReason::Freeze), Just(PauseReason::Manual), Just(PauseReason::Inconclusive)], proptest::option::of(-100i64..100))),
        now in -10_000i64..10_000,
        at_the_end_of_time in any::<bool>(),
    ) {
        let mut state = RolloutState::new(t(0));
        state.phase = phase;
        state.step = step;
        state.action = action_step.map(|s| ActionState {
            key: format!("{ID}/1/{s}/deploy"),
            action: ActionKind::Deploy,
            step: Some(s),
            weight: 0,
            decided_at: t(0),
            attempts: 1,
            last_sent_at: None,
            accepted,
            finished_at: None,
            error: None,
            deployed_digest: None,
        });
        state.analysis = analysis_step.map(|s| signalbox_rollout::plan::AnalysisState { step: s, started_at: t(0), metrics: vec![], phase: None });
        state.pause = paused.map(|(reason, until)| signalbox_rollout::plan::Pause { reason, since: t(0), until: until.map(t), message: String::new() });
        let metrics = metric_pool();
        let mut rollout = Rollout { deployment_id: ID, plan: &plan, metrics: &metrics, expected_digest: DIGEST, state };
        let now = if at_the_end_of_time { DateTime::<Utc>::MAX_UTC } else { t(now) };
        for _ in 0..5 {
            let _ = rollout.next(now);
            let _ = rollout.action_finished(&format!("{ID}/1/0/deploy"), ActionResult::Completed { deployed_digest: Some("x".into()) }, now);
            rollout.record_measurements(vec![("error-rate".into(), value(f64::NAN)), ("nope".into(), value(1.0))], now);
            let _ = rollout.at_step_boundary();
        }
    }
}
