//! The gather cache never serves stale data: every decision reflects the evidence and the
//! release history the store holds at that moment, exactly as a cold evaluation (a fresh `App`
//! on the same store) does. On SQLite, and on PostgreSQL when `SIGNALBOX_TEST_POSTGRES_URL`
//! names a server.

use std::sync::Arc;

use serde_json::{json, Value};
use signalbox_domain::lifecycle::ReleaseState;
use signalbox_domain::model::{Artifact, Environment, Kind, Release, Service, StateChange};
use signalbox_evidence::EvidenceKind;
use signalbox_governance::breakglass::BreakGlass;
use signalbox_governance::gates::{Outcome, ReleaseEvidence};
use signalbox_rollout::plan::RolloutPhase;
use signalbox_store::Store;

use super::*;
use crate::evidence::{AddEvidence, EvidenceSubjectKind};
use crate::mutation::{Mutation, Placement};

struct TestStore {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    /// (server URL, database URL) of a PostgreSQL test database to drop afterwards.
    pg: Option<(String, String)>,
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Some((base, url)) = self.pg.take() {
            // Async work cannot run in Drop on the test's runtime; a short-lived one will do.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
                rt.block_on(signalbox_store_postgres::testing::drop_database(&base, &url)).ok()
            })
            .join();
        }
    }
}

async fn stores() -> Vec<TestStore> {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = signalbox_store_sqlite::SqliteStore::open(dir.path()).await.expect("open sqlite");
    let mut out = vec![TestStore { store: Arc::new(sqlite), _dir: Some(dir), pg: None }];
    match std::env::var("SIGNALBOX_TEST_POSTGRES_URL") {
        Ok(base) if !base.is_empty() => {
            let url = signalbox_store_postgres::testing::fresh_database(&base).await.expect("fresh database");
            let store = signalbox_store_postgres::PostgresStore::connect(&url, 8).await.expect("connect postgres");
            out.push(TestStore { store: Arc::new(store), _dir: None, pg: Some((base, url)) });
        }
        _ => eprintln!("SIGNALBOX_TEST_POSTGRES_URL is not set: this test ran on SQLite only"),
    }
    out
}

fn v<T: DeserializeOwned>(j: Value) -> T {
    serde_json::from_value(j).expect("request")
}

fn junit(passed: usize, failed: usize) -> String {
    let mut cases = String::new();
    for i in 0..passed {
        cases.push_str(&format!("<testcase classname=\"c\" name=\"ok_{i}\"/>"));
    }
    for i in 0..failed {
        cases.push_str(&format!("<testcase classname=\"c\" name=\"broken_{i}\"><failure message=\"no\"/></testcase>"));
    }
    format!("<testsuite name=\"s\" tests=\"{}\" failures=\"{failed}\">{cases}</testsuite>", passed + failed)
}

fn lcov(total: u32, hit: u32) -> String {
    let mut out = String::from("SF:src/lib.rs\n");
    for line in 1..=total {
        out.push_str(&format!("DA:{line},{}\n", u32::from(line <= hit)));
    }
    out.push_str(&format!("LF:{total}\nLH:{hit}\nend_of_record\n"));
    out
}

fn sbom(names: &[&str]) -> String {
    let components: Vec<Value> = names.iter().map(|n| json!({"type": "library", "name": n, "version": "1.0.0"})).collect();
    json!({"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1, "components": components}).to_string()
}

async fn upload(app: &App, subject: &str, kind: &str, body: &str) {
    let ctx = RequestContext::system();
    let req = if subject.contains('@') {
        AddEvidence { artifact: Some(subject.into()), kind: kind.into(), ..Default::default() }
    } else {
        AddEvidence { release: Some(subject.into()), kind: kind.into(), ..Default::default() }
    };
    app.add_evidence(&ctx, req, body.as_bytes()).await.unwrap_or_else(|e| panic!("{kind} for {subject}: {e:?}"));
}

/// A catalog with services `api` and `web`, staging and prod, a prod policy that checks tests,
/// coverage (minimum and no drop) and a rollback plan; returns the key of a release of
/// `api@1.1.0` and `web@1.0.0` for prod.
async fn seed(app: &App) -> String {
    let ctx = RequestContext::system();
    app.bootstrap(None).await.expect("bootstrap");
    app.create_domain(&ctx, v(json!({"name": "shop", "description": ""}))).await.expect("domain");
    app.create_team(&ctx, v(json!({"name": "shop-team", "domain": "shop", "description": ""}))).await.expect("team");
    for (name, position) in [("staging", 30), ("prod", 40)] {
        app.create_environment(&ctx, v(json!({"name": name, "tier": name, "position": position}))).await.expect("environment");
    }
    for (i, (service, version)) in [("api", "1.0.0"), ("api", "1.1.0"), ("web", "1.0.0")].into_iter().enumerate() {
        if version == "1.0.0" {
            app.create_service(&ctx, v(json!({"name": service, "team": "shop-team"}))).await.expect("service");
        }
        let digest = format!("sha256:{:064x}", i + 1);
        app.register_artifact(&ctx, v(json!({"service": service, "version": version, "digest": digest}))).await.expect("artifact");
    }
    let policy = json!({"gates": {"tests_passed": true, "coverage_min_percent": 80.0, "coverage_no_drop": true,
        "required_documents": ["rollback_plan"]}});
    app.put_policy(&ctx, PutPolicy { level: "organization".into(), target: None, environment: "prod".into(), policy: v(policy) })
        .await
        .expect("policy");
    for artifact in ["api@1.1.0", "web@1.0.0"] {
        upload(app, artifact, "junit", &junit(10, 0)).await;
        upload(app, artifact, "lcov", &lcov(100, 90)).await;
    }
    upload(app, "api@1.1.0", "cyclonedx", &sbom(&["serde", "tokio", "hyper"])).await;
    let release = app
        .create_release(
            &ctx,
            v(json!({"name": "shop 2", "domain": "shop", "components": ["api@1.1.0", "web@1.0.0"], "target_environments": ["prod"]})),
        )
        .await
        .expect("release");
    release.value.key
}

fn outcome(app_decision: &GateDecision, rule: &str) -> Outcome {
    app_decision.rules.iter().find(|r| r.rule == rule).unwrap_or_else(|| panic!("no rule {rule}")).outcome
}

/// The evidence document from `app` (warm) equals the one a fresh `App` on the same store
/// builds with nothing cached.
async fn document(app: &App, release: &str) -> ReleaseEvidence {
    let ctx = RequestContext::system();
    let warm = app.release_evidence_document(&ctx, release, "prod").await.expect("document");
    let cold = App::new(app.store.clone()).release_evidence_document(&ctx, release, "prod").await.expect("cold document");
    assert_eq!(ReleaseEvidence { now: cold.now, ..warm.clone() }, cold, "a warm cache gives what a cold read gives");
    warm
}

async fn gates(app: &App, release: &str) -> GateDecision {
    app.release_gates(&RequestContext::system(), release, "prod").await.expect("gates")
}

/// Sets a release's state (and, when delivered, a delivery in its history) directly, as the
/// lifecycle would have left it.
async fn set_state(m: &mut Mutation<'_>, release: &str, to: ReleaseState) {
    let current: Versioned<Release> = m.get(Kind::Release, release).await.expect("release");
    let mut next = current.value.clone();
    next.history.push(StateChange { from: Some(next.state), to, at: m.now, by: "test".into(), reason: None });
    next.state = to;
    let place = Placement { key: Some(next.key.clone()), parent: next.domain_id.clone(), state: Some(to.as_str().into()) };
    m.update("release.test", Kind::Release, &next.id.clone(), place, &current, &next).await.expect("update");
}

#[tokio::test]
async fn evidence_uploaded_after_a_decision_changes_the_next_decision() {
    for ts in stores().await {
        let app = App::new(ts.store.clone());
        let key = seed(&app).await;
        let d = gates(&app, &key).await;
        assert_eq!(outcome(&d, "tests_passed"), Outcome::Pass);
        assert_eq!(outcome(&d, "coverage_min"), Outcome::Pass);
        assert_eq!(outcome(&d, "required_documents"), Outcome::Fail);
        assert!(app.gather_cache.evidence.len() >= 5, "the decision filled the cache");
        // The same question again is answered from the cache, identically.
        assert_eq!(gates(&app, &key).await.rules, d.rules);

        upload(&app, "api@1.1.0", "junit", &junit(10, 2)).await;
        upload(&app, "web@1.0.0", "lcov", &lcov(100, 60)).await;
        let d = gates(&app, &key).await;
        assert_eq!(outcome(&d, "tests_passed"), Outcome::Fail, "newer failing tests supersede the cached passing ones");
        assert_eq!(outcome(&d, "coverage_min"), Outcome::Fail);
        let doc = document(&app, &key).await;
        assert_eq!(doc.components[0].tests.as_ref().map(|t| t.failed), Some(2));
        assert_eq!(doc.components[1].coverage.as_ref().map(|c| c.line_percent), Some(60.0));

        upload(&app, "api@1.1.0", "junit", &junit(12, 0)).await;
        upload(&app, &key, "document_link", r#"{"document": "rollback_plan", "url": "https://wiki.example/rollback"}"#).await;
        let d = gates(&app, &key).await;
        assert_eq!(outcome(&d, "tests_passed"), Outcome::Pass);
        assert_eq!(outcome(&d, "required_documents"), Outcome::Pass, "release evidence counts at once");
        assert_eq!(document(&app, &key).await.components[0].tests.as_ref().map(|t| t.total), Some(12));
    }
}

#[tokio::test]
async fn earlier_releases_are_read_at_their_current_version() {
    for ts in stores().await {
        let app = App::new(ts.store.clone());
        let key = seed(&app).await;
        let ctx = RequestContext::system();
        // An earlier release of api@1.0.0 (coverage 95, a smaller SBOM) for prod, still planned.
        upload(&app, "api@1.0.0", "lcov", &lcov(100, 95)).await;
        upload(&app, "api@1.0.0", "cyclonedx", &sbom(&["serde"])).await;
        let earlier = app
            .create_release(
                &ctx,
                v(json!({"name": "shop 1", "domain": "shop", "components": ["api@1.0.0"], "target_environments": ["prod"]})),
            )
            .await
            .expect("release")
            .value
            .id;
        let doc = document(&app, &key).await;
        assert_eq!(doc.components[0].previous_coverage_percent, None);
        assert_eq!(doc.risk.factors.iter().find(|f| f.name == "first_deploy").map(|f| f.value.clone()), Some(json!(["api", "web"])));
        assert_eq!(outcome(&gates(&app, &key).await, "coverage_no_drop"), Outcome::NotApplicable, "nothing in prod to compare with");
        let filled = app.gather_cache.releases.len();

        // Released: api@1.0.0 is now what prod runs, so coverage dropped from 95 to 90.
        let mut m = Mutation::begin(&app, &ctx).await.expect("begin");
        set_state(&mut m, &earlier, ReleaseState::Released).await;
        m.commit(200, &json!({})).await.expect("commit");
        let doc = document(&app, &key).await;
        assert_eq!(doc.components[0].previous_coverage_percent, Some(95.0));
        assert_eq!(doc.risk.factors.iter().find(|f| f.name == "first_deploy").map(|f| f.value.clone()), Some(json!(["web"])));
        assert_eq!(doc.risk.factors.iter().find(|f| f.name == "new_dependencies").map(|f| f.value.clone()), Some(json!(2)));
        assert_eq!(outcome(&gates(&app, &key).await, "coverage_no_drop"), Outcome::Fail);
        assert!(app.gather_cache.releases.len() > filled, "the released version was cached");

        // A rollback written inside a transaction that is then dropped is never seen, not even
        // by the transaction's own gather filling the cache: the same version is committed
        // below with other content.
        let mut m = Mutation::begin(&app, &ctx).await.expect("begin");
        set_state(&mut m, &earlier, ReleaseState::Closed).await;
        let rel: Release = m.get(Kind::Release, &key).await.expect("release").value;
        let env = App::environment(&mut Reader::Tx(&mut m), "environment", "prod").await.expect("env");
        let now = m.now;
        let g = app.gather(&mut Reader::Tx(&mut m), &rel, &env, now).await.expect("gather in tx");
        assert_eq!(g.doc.components[0].previous_coverage_percent, Some(95.0), "closed is delivered too");
        drop(m);
        let mut m = Mutation::begin(&app, &ctx).await.expect("begin");
        set_state(&mut m, &earlier, ReleaseState::RolledBack).await;
        m.commit(200, &json!({})).await.expect("commit");
        let doc = document(&app, &key).await;
        assert_eq!(doc.components[0].previous_coverage_percent, None, "a rolled-back release is not in prod");
        let history = doc.risk.factors.iter().find(|f| f.name == "failure_rate").map(|f| f.value.clone());
        assert_eq!(history, Some(json!({"failures": 1, "releases": 1})));
        assert_eq!(outcome(&gates(&app, &key).await, "coverage_no_drop"), Outcome::NotApplicable);
    }
}

/// Inserts JUnit evidence for `artifact` inside `m`, as an upload would, without committing.
async fn insert_junit(m: &mut Mutation<'_>, artifact: &Artifact, digest: &str, junit_xml: &str) {
    let record = EvidenceRecord {
        id: crate::new_id(Kind::Evidence),
        subject_kind: EvidenceSubjectKind::Artifact,
        subject_id: artifact.id.clone(),
        kind: EvidenceKind::Junit,
        file_name: None,
        file_digest: digest.into(),
        size: 1,
        environment_id: None,
        facts: signalbox_evidence::parse(EvidenceKind::Junit, junit_xml.as_bytes()).expect("parse"),
        uploaded_by: "test".into(),
        created_at: m.now,
    };
    let place = Placement { key: None, parent: Some(artifact.id.clone()), state: Some("junit".into()) };
    m.insert("evidence.add", Kind::Evidence, &record.id.clone(), place, &record).await.expect("insert");
}

#[tokio::test]
async fn uncommitted_evidence_is_read_inside_its_transaction_but_never_cached() {
    for ts in stores().await {
        let app = App::new(ts.store.clone());
        let key = seed(&app).await;
        let ctx = RequestContext::system();
        gates(&app, &key).await;
        let cached = app.gather_cache.evidence.len();
        let artifact = Reader::Store(app.store.as_ref()).artifact("artifact", "api@1.1.0").await.expect("artifact");
        let mut m = Mutation::begin(&app, &ctx).await.expect("begin");
        insert_junit(&mut m, &artifact, "sha256:0", &junit(1, 3)).await;
        let rel: Release = m.get(Kind::Release, &key).await.expect("release").value;
        let env = App::environment(&mut Reader::Tx(&mut m), "environment", "prod").await.expect("env");
        let now = m.now;
        let g = app.gather(&mut Reader::Tx(&mut m), &rel, &env, now).await.expect("gather in tx");
        assert_eq!(g.doc.components[0].tests.as_ref().map(|t| t.failed), Some(3), "a transaction reads its own evidence");
        assert_eq!(app.gather_cache.evidence.len(), cached, "uncommitted evidence is not cached");
        drop(m);
        assert_eq!(document(&app, &key).await.components[0].tests.as_ref().map(|t| t.failed), Some(0));
        assert_eq!(outcome(&gates(&app, &key).await, "tests_passed"), Outcome::Pass);
    }
}

/// Inserts a break-glass record for `release` in prod, confirmed at `at` for `ttl_hours`.
async fn break_glass(app: &App, release: &str, rules: &[&str], at: DateTime<Utc>, ttl_hours: u32) {
    let ctx = RequestContext::system();
    let mut m = Mutation::begin(app, &ctx).await.expect("begin");
    let rel: Release = m.get(Kind::Release, release).await.expect("release").value;
    let env: Environment = m.get(Kind::Environment, "prod").await.expect("prod").value;
    let bg = BreakGlass {
        id: crate::new_id(Kind::BreakGlass),
        release_id: rel.id.clone(),
        environment_id: env.id,
        rules: rules.iter().map(|r| r.to_string()).collect(),
        freeze: false,
        reason: "test".into(),
        incident: "INC-1".into(),
        requested_by: "a".into(),
        requested_at: at,
        ttl_hours,
        confirmed_by: Some("b".into()),
        confirmed_at: Some(at),
        expires_at: Some(at + chrono::Duration::hours(i64::from(ttl_hours))),
        revoked: false,
        review_task: "review".into(),
    };
    let place = Placement { key: None, parent: Some(rel.id.clone()), state: Some("active".into()) };
    m.insert("break_glass.test", Kind::BreakGlass, &bg.id.clone(), place, &bg).await.expect("insert");
    m.commit(200, &json!({})).await.expect("commit");
}

/// Inserts a deployment of `artifact` (`service@version`) in `environment`, in `phase`,
/// finished at `finished` (when given), replacing `previous` (an artifact reference).
async fn deploy(
    app: &App,
    environment: &str,
    artifact: &str,
    phase: RolloutPhase,
    finished: Option<DateTime<Utc>>,
    previous: Option<&str>,
) {
    use crate::promotion::{deployment_placement, DeployedArtifact};
    use signalbox_rollout::plan::{RolloutState, Strategy};
    let ctx = RequestContext::system();
    let mut reader = Reader::Store(app.store.as_ref());
    let a = reader.artifact("artifact", artifact).await.expect("artifact");
    let deployed = |a: &Artifact| DeployedArtifact {
        artifact_id: a.id.clone(),
        version: a.version.clone(),
        digest: a.digest.clone(),
        release_key: None,
    };
    let previous = match previous {
        Some(p) => Some(deployed(&reader.artifact("artifact", p).await.expect("previous artifact"))),
        None => None,
    };
    let mut m = Mutation::begin(app, &ctx).await.expect("begin");
    let env: Environment = m.get(Kind::Environment, environment).await.expect("environment").value;
    let service: Service = m.get(Kind::Service, &a.service_id).await.expect("service").value;
    let number = m.next_number("deployment").await.expect("number");
    let mut rollout = RolloutState::new(m.now);
    rollout.phase = phase;
    rollout.finished_at = finished;
    let d = Deployment {
        id: crate::new_id(Kind::Deployment),
        key: format!("D-{number}"),
        release_id: "rel_elsewhere".into(),
        release_key: "R-0".into(),
        environment_id: env.id.clone(),
        environment: env.name.clone(),
        service_id: service.id.clone(),
        service: service.name.clone(),
        artifact: deployed(&a),
        previous,
        path_id: None,
        trigger: "recorded".into(),
        strategy: Strategy::AllAtOnce { analysis: vec![] },
        driver: signalbox_drivers::DriverSpec::Record {},
        plan: vec![],
        metrics: vec![],
        kill_switch_flags: vec![],
        rollout,
        wake: 0,
        in_flight: false,
        created_by: "test".into(),
        created_at: m.now,
        reason: None,
        notes: vec![],
        pushes_counted: Default::default(),
    };
    m.insert("deployment.test", Kind::Deployment, &d.id.clone(), deployment_placement(&d), &d).await.expect("insert");
    m.commit(200, &json!({})).await.expect("commit");
}

async fn gathered(app: &App, release: &str, now: DateTime<Utc>) -> Gathered {
    app.gathered(&RequestContext::system(), release, "prod", now).await.expect("gathered").1
}

fn outcome_at(app: &App, g: &Gathered, rule: &str) -> Outcome {
    outcome(&app.decide_gates(g), rule)
}

#[tokio::test]
async fn a_kept_document_is_used_only_while_every_read_it_came_from_answers_the_same() {
    for ts in stores().await {
        let app = App::new(ts.store.clone());
        let key = seed(&app).await;
        let ctx = RequestContext::system();
        let now = Utc::now();
        let first = gathered(&app, &key, now).await;
        let later = gathered(&app, &key, now + chrono::Duration::hours(3)).await;
        assert!(Arc::ptr_eq(&first.facts, &later.facts), "nothing changed: the same facts serve another time");
        assert_eq!(later.doc.now, now + chrono::Duration::hours(3), "with that time in the document");
        assert_eq!(outcome_at(&app, &first, "required_documents"), Outcome::Fail);

        // Break-glass: a new record is read, and its expiry is judged at each decision's time.
        break_glass(&app, &key, &["required_documents"], now, 1).await;
        let g = gathered(&app, &key, now).await;
        assert!(!Arc::ptr_eq(&first.facts, &g.facts), "a new break-glass record is a changed read");
        assert_eq!(outcome_at(&app, &g, "required_documents"), Outcome::Bypassed);
        let g2 = gathered(&app, &key, now + chrono::Duration::hours(2)).await;
        assert!(Arc::ptr_eq(&g.facts, &g2.facts));
        assert_eq!(outcome_at(&app, &g2, "required_documents"), Outcome::Fail, "expired by the time of this decision");

        // Policy: a new Rego rule at the environment applies at once, with `input.now` per decision.
        let rego = "package late\nimport rego.v1\ndeny contains \"too late\" if { input.now >= \"2100\" }";
        let policy = json!({"gates": {"tests_passed": true, "coverage_min_percent": 80.0, "coverage_no_drop": true,
            "required_documents": ["rollback_plan"], "rego": [{"name": "late", "module": rego}]}});
        app.put_policy(&ctx, PutPolicy { level: "organization".into(), target: None, environment: "prod".into(), policy: v(policy) })
            .await
            .expect("policy");
        let g = gathered(&app, &key, now).await;
        assert_eq!(outcome_at(&app, &g, "rego:late"), Outcome::Pass);
        let far = gathered(&app, &key, "2100-01-02T00:00:00Z".parse().expect("time")).await;
        assert!(Arc::ptr_eq(&g.facts, &far.facts));
        assert_eq!(outcome_at(&app, &far, "rego:late"), Outcome::Fail, "the prepared Rego input carries each decision's now");
        assert_eq!(outcome_at(&app, &g, "rego:late"), Outcome::Pass);

        // An environment inserted before prod changes the previous environment.
        app.create_environment(&ctx, v(json!({"name": "canary", "tier": "staging", "position": 35}))).await.expect("environment");
        assert_eq!(document(&app, &key).await.previous_environment.map(|e| e.name), Some("canary".into()));

        // The release itself, and its evidence.
        let mut m = Mutation::begin(&app, &ctx).await.expect("begin");
        set_state(&mut m, &key, ReleaseState::Testing).await;
        m.commit(200, &json!({})).await.expect("commit");
        assert_eq!(document(&app, &key).await.release.state, "testing");
        upload(&app, "web@1.0.0", "junit", &junit(3, 1)).await;
        assert_eq!(outcome(&gates(&app, &key).await, "tests_passed"), Outcome::Fail);
        let (kept, g) = (gathered(&app, &key, now).await, gathered(&app, &key, now).await);
        assert!(Arc::ptr_eq(&kept.facts, &g.facts), "and kept again once nothing changes");
    }
}

#[tokio::test]
async fn soak_and_what_runs_in_the_environment_come_from_deployments() {
    for ts in stores().await {
        let app = App::new(ts.store.clone());
        let key = seed(&app).await;
        let ctx = RequestContext::system();
        let policy = json!({"gates": {"coverage_no_drop": true, "min_soak_minutes": 60}});
        app.put_policy(&ctx, PutPolicy { level: "organization".into(), target: None, environment: "prod".into(), policy: v(policy) })
            .await
            .expect("policy");
        let now = Utc::now();
        let g = gathered(&app, &key, now).await;
        assert_eq!(g.doc.components[0].previous_environment.as_ref().map(|e| e.name.as_str()), Some("staging"), "by position");
        assert_eq!(outcome_at(&app, &g, "min_soak"), Outcome::Fail);
        assert!(app.decide_gates(&g).failure_reasons()[0].contains("has not been deployed to staging"));

        // Succeeded in staging 30 minutes ago: 30 of 60 minutes now, enough an hour later.
        let finished = now - chrono::Duration::minutes(30);
        deploy(&app, "staging", "api@1.1.0", RolloutPhase::Succeeded, Some(finished), None).await;
        deploy(&app, "staging", "web@1.0.0", RolloutPhase::Succeeded, Some(finished), None).await;
        let g = gathered(&app, &key, now).await;
        let reasons = app.decide_gates(&g).failure_reasons();
        assert!(reasons.iter().any(|r| r.contains("api 1.1.0 soaked 30 of the required 60 minutes in staging")), "{reasons:?}");
        let g2 = gathered(&app, &key, now + chrono::Duration::minutes(31)).await;
        assert!(Arc::ptr_eq(&g.facts, &g2.facts), "only the time moved");
        assert_eq!(outcome_at(&app, &g2, "min_soak"), Outcome::Pass);

        // A later deployment of another digest in staging replaces it there.
        deploy(&app, "staging", "api@1.0.0", RolloutPhase::Progressing, None, Some("api@1.1.0")).await;
        let g = gathered(&app, &key, now + chrono::Duration::minutes(31)).await;
        assert_eq!(outcome_at(&app, &g, "min_soak"), Outcome::Fail);
        assert_eq!(g.doc.components[0].upstream_deployment.as_ref().map(|d| d.phase.as_str()), Some("progressing"));

        // A promotion path without staging: prod is its first environment, nothing to soak in.
        let stage = |env: &str| json!({"environment": env, "strategy": {"type": "all_at_once"}, "driver": {"type": "record"}});
        app.put_path(&ctx, v(json!({"name": "direct", "stages": [stage("prod")]}))).await.expect("path");
        let g = gathered(&app, &key, now).await;
        assert_eq!(g.doc.components[0].previous_environment, None);
        assert_eq!(outcome_at(&app, &g, "min_soak"), Outcome::NotApplicable);

        // What prod runs: api@1.0.0 (coverage 95) deployed there, so coverage dropped to 90.
        upload(&app, "api@1.0.0", "lcov", &lcov(100, 95)).await;
        deploy(&app, "prod", "api@1.0.0", RolloutPhase::Succeeded, Some(now), None).await;
        let doc = document(&app, &key).await;
        assert_eq!(doc.components[0].previous_coverage_percent, Some(95.0));
        assert_eq!(outcome(&gates(&app, &key).await, "coverage_no_drop"), Outcome::Fail);
        // api@1.1.0 rolled back in prod: api@1.0.0 still runs there.
        deploy(&app, "prod", "api@1.1.0", RolloutPhase::RolledBack, Some(now), Some("api@1.0.0")).await;
        assert_eq!(document(&app, &key).await.components[0].previous_coverage_percent, Some(95.0));
        // A first rollout of web still running in prod: nothing ran there before it.
        deploy(&app, "prod", "web@1.0.0", RolloutPhase::Progressing, None, None).await;
        assert_eq!(document(&app, &key).await.components[1].previous_coverage_percent, None);
    }
}

/// The facts a write gathered beforehand, outside its transaction (`App::prepare_gather`), are
/// used inside it only while the transaction's own reads name the same record versions: after
/// a committed upload, and after an upload inside the transaction itself, the transaction
/// gathers again and decides on what it sees.
#[tokio::test]
async fn facts_gathered_before_a_write_are_used_inside_it_only_while_its_reads_answer_the_same() {
    for ts in stores().await {
        let app = App::new(ts.store.clone());
        let key = seed(&app).await;
        let ctx = RequestContext::system();
        let kept_for = |rel: &Release, env: &Environment| {
            let key = gather_content_key(rel, env).expect("content key");
            app.gather_cache.facts_by_content.get(&key).map(|e| e.value.clone())
        };

        // Nothing changed in between: the transaction uses the facts gathered before it.
        let rel: Release = Reader::Store(app.store.as_ref()).get(Kind::Release, &key).await.expect("release").value;
        app.prepare_gather(&rel, "prod").await;
        let mut m = Mutation::begin(&app, &ctx).await.expect("begin");
        let env = App::environment(&mut Reader::Tx(&mut m), "environment", "prod").await.expect("env");
        let kept = kept_for(&rel, &env).expect("prepare_gather kept the facts");
        let now = m.now;
        let g = app.gather(&mut Reader::Tx(&mut m), &rel, &env, now).await.expect("gather in tx");
        assert!(Arc::ptr_eq(&g.facts, &kept), "unchanged reads: the kept facts are used");
        assert_eq!(g.doc.components[0].tests.as_ref().map(|t| t.failed), Some(0));
        drop(m);

        // A committed upload after the preparation: the transaction sees it.
        upload(&app, "api@1.1.0", "junit", &junit(10, 2)).await;
        let mut m = Mutation::begin(&app, &ctx).await.expect("begin");
        let g = app.gather(&mut Reader::Tx(&mut m), &rel, &env, now).await.expect("gather in tx");
        assert!(!Arc::ptr_eq(&g.facts, &kept), "changed reads: gathered again");
        assert_eq!(g.doc.components[0].tests.as_ref().map(|t| t.failed), Some(2));
        let blockers =
            app.governance_blockers(&mut Reader::Tx(&mut m), now, &rel, ReleaseState::Deploying, Some(&env.id)).await.expect("blockers");
        assert!(blockers.iter().any(|b| b.contains("tests_passed")), "the failing tests block: {blockers:?}");
        drop(m);

        // Prepared again; then the transaction itself uploads passing tests before deciding.
        app.prepare_gather(&rel, "prod").await;
        let kept = kept_for(&rel, &env).expect("kept again");
        assert_eq!(kept.doc.components[0].tests.as_ref().map(|t| t.failed), Some(2));
        let artifact = Reader::Store(app.store.as_ref()).artifact("artifact", "api@1.1.0").await.expect("artifact");
        let mut m = Mutation::begin(&app, &ctx).await.expect("begin");
        insert_junit(&mut m, &artifact, "sha256:1", &junit(5, 0)).await;
        let g = app.gather(&mut Reader::Tx(&mut m), &rel, &env, now).await.expect("gather in tx");
        assert!(!Arc::ptr_eq(&g.facts, &kept), "the transaction's own write changes its reads");
        assert_eq!(g.doc.components[0].tests.as_ref().map(|t| (t.total, t.failed)), Some((5, 0)));
        drop(m);
        let after = kept_for(&rel, &env).expect("still kept");
        assert!(Arc::ptr_eq(&after, &kept), "a transaction's gather is never kept");
    }
}
