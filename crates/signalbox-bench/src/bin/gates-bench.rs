//! `gates-bench`: gate evaluation for a release with 50 components and 10,000 evidence facts,
//! built-in rules and a Rego policy, against the same evaluation done naively — re-reading and
//! re-parsing every raw evidence file each time — in the same run (issue 3's benchmark).
//!
//! Signalbox parses a file once, at upload, and gates read the stored facts; the naive
//! evaluator is what a system that keeps only the raw files has to do per decision. Both run
//! in-process on the same SQLite store (and PostgreSQL with `--backend postgres`), one
//! evaluation at a time, and the report gives p50/p99 latency, throughput and the ratio. The
//! measured Signalbox evaluations repeat one question over unchanged data (a kept document);
//! a second, smaller set uploads one evidence file before each evaluation, which then gathers
//! everything again ("after a change").

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use serde_json::json;
use signalbox_app::evidence::AddEvidence;
use signalbox_app::governance::PutPolicy;
use signalbox_app::requests::*;
use signalbox_app::{App, RequestContext};
use signalbox_domain::model::{Criticality, DataClassification, Protection, Tier};
use signalbox_store::Store;

#[derive(Parser, Debug)]
#[command(about = "Gate evaluation: stored facts vs re-parsing raw evidence")]
struct Args {
    /// sqlite or postgres.
    #[arg(long, default_value = "sqlite")]
    backend: String,
    #[arg(long, default_value_t = 50)]
    components: usize,
    /// Test cases per component's JUnit file; components × this = evidence facts.
    #[arg(long, default_value_t = 200)]
    tests_per_component: usize,
    #[arg(long, default_value_t = 300)]
    iterations: usize,
    #[arg(long, env = "SIGNALBOX_TEST_POSTGRES_URL", default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres_url: String,
}

fn junit(n: usize, service: usize) -> String {
    let mut out = format!("<?xml version=\"1.0\"?><testsuites><testsuite name=\"svc{service}\" tests=\"{n}\" failures=\"0\">");
    for i in 0..n {
        out.push_str(&format!("<testcase classname=\"svc{service}.module{}\" name=\"case_{i}\" time=\"0.002\"/>", i % 17));
    }
    out.push_str("</testsuite></testsuites>");
    out
}

fn lcov(files: usize) -> String {
    let mut out = String::new();
    for f in 0..files {
        out.push_str(&format!("SF:src/file{f}.rs\n"));
        for line in 1..=40 {
            out.push_str(&format!("DA:{line},{}\n", u32::from(line % 10 != 0)));
        }
        out.push_str("LF:40\nLH:36\nend_of_record\n");
    }
    out
}

fn sarif(findings: usize) -> String {
    let results: Vec<_> = (0..findings)
        .map(|i| {
            json!({"ruleId": format!("R{}", i % 7), "level": "warning", "message": {"text": format!("finding {i}")},
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": format!("src/f{i}.rs")}, "region": {"startLine": i + 1}}}]})
        })
        .collect();
    let rules: Vec<_> =
        (0..7).map(|r| json!({"id": format!("R{r}"), "properties": {"security-severity": format!("{}.0", 2 + r % 4)}})).collect();
    json!({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "bench-scanner", "rules": rules}}, "results": results}]}).to_string()
}

fn cyclonedx(components: usize) -> String {
    let comps: Vec<_> = (0..components)
        .map(|i| json!({"type": "library", "name": format!("dep{i}"), "version": "1.0.0", "licenses": [{"license": {"id": if i % 2 == 0 { "MIT" } else { "Apache-2.0" }}}]}))
        .collect();
    json!({"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1, "components": comps}).to_string()
}

const REGO: &str = r#"package signalbox.bench
import rego.v1
deny contains msg if {
    some c in input.components
    c.tests.failed > 0
    msg := sprintf("%s has failing tests", [c.service])
}
deny contains msg if {
    some c in input.components
    c.coverage.line_percent < 50
    msg := sprintf("%s coverage too low", [c.service])
}
"#;

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    signalbox_store::quantile(sorted, q)
}

async fn open_store(args: &Args) -> anyhow::Result<(Arc<dyn Store>, Option<tempfile::TempDir>, Option<String>)> {
    match args.backend.as_str() {
        "sqlite" => {
            let dir = tempfile::tempdir()?;
            let store = signalbox_store_sqlite::SqliteStore::open(dir.path()).await?;
            Ok((Arc::new(store), Some(dir), None))
        }
        "postgres" => {
            let url = signalbox_store_postgres::testing::fresh_database(&args.postgres_url).await?;
            let store = signalbox_store_postgres::PostgresStore::connect(&url, 8).await?;
            Ok((Arc::new(store), None, Some(url)))
        }
        other => anyhow::bail!("--backend must be sqlite or postgres, not {other:?}"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (store, _dir, pg_url) = open_store(&args).await?;
    let app = App::new(store.clone());
    app.bootstrap(None).await?;
    let ctx = RequestContext::system();
    app.create_domain(&ctx, CreateDomain { name: "bench".into(), description: String::new() }).await?;
    app.create_team(&ctx, CreateTeam { name: "bench-team".into(), domain: "bench".into(), description: String::new() }).await?;
    for (tier, name, position) in [(Tier::Staging, "staging", 30), (Tier::Prod, "prod", 40)] {
        app.create_environment(
            &ctx,
            CreateEnvironment {
                name: name.into(),
                tier,
                position,
                protection: Protection::default(),
                config: Default::default(),
                owner: None,
            },
        )
        .await?;
    }
    eprintln!("seeding {} components with {} test cases each…", args.components, args.tests_per_component);
    let mut component_refs = Vec::new();
    let mut facts = 0usize;
    for i in 0..args.components {
        let name = format!("svc-{i}");
        app.create_service(
            &ctx,
            CreateService {
                name: name.clone(),
                team: "bench-team".into(),
                repo_url: None,
                owners: vec![],
                criticality: if i % 5 == 0 { Criticality::CustomerFacing } else { Criticality::Internal },
                data_classification: DataClassification::Internal,
            },
        )
        .await?;
        let digest = format!("sha256:{:064x}", i + 1);
        app.register_artifact(
            &ctx,
            RegisterArtifact { service: name.clone(), version: "1.0.0".into(), digest, source_commit: None, build_url: None },
        )
        .await?;
        let artifact = format!("{name}@1.0.0");
        let files: [(&str, String); 4] =
            [("junit", junit(args.tests_per_component, i)), ("lcov", lcov(5)), ("sarif", sarif(20)), ("cyclonedx", cyclonedx(30))];
        facts += args.tests_per_component + 5 + 20 + 30;
        for (kind, body) in files {
            let req = AddEvidence { artifact: Some(artifact.clone()), kind: kind.into(), ..Default::default() };
            app.add_evidence(&ctx, req, body.as_bytes()).await.with_context(|| format!("{kind} for {artifact}"))?;
        }
        component_refs.push(artifact);
    }
    let policy = json!({"gates": {
        "tests_passed": true, "coverage_min_percent": 80.0, "coverage_no_drop": true, "max_cvss": 7.0,
        "license_allow": ["MIT", "Apache-2.0"], "required_documents": ["rollback_plan"],
        "rego": [{"name": "bench", "module": REGO}]
    }});
    app.put_policy(
        &ctx,
        PutPolicy { level: "organization".into(), target: None, environment: "prod".into(), policy: serde_json::from_value(policy)? },
    )
    .await?;
    let release = app
        .create_release(
            &ctx,
            serde_json::from_value(json!({"name": "bench", "domain": "bench", "components": component_refs,
                "target_environments": ["prod"], "documents": {"rollback_plan": "redeploy"}}))?,
        )
        .await?;
    let key = release.value.key.clone();
    eprintln!("{facts} evidence facts in {} files", args.components * 4);

    // Warm up both paths (compiled Rego cached, pages in the OS cache).
    let first = app.release_gates(&ctx, &key, "prod").await?;
    anyhow::ensure!(first.passed, "the benchmark release should pass its gates: {:?}", first.failure_reasons());
    naive(&app, &ctx, &key).await?;

    let mut ours = Vec::with_capacity(args.iterations);
    let started = Instant::now();
    for _ in 0..args.iterations {
        let t = Instant::now();
        let d = app.release_gates(&ctx, &key, "prod").await?;
        ours.push(t.elapsed());
        anyhow::ensure!(d.passed);
    }
    let ours_total = started.elapsed();
    // After a change: one evidence upload (not timed) before each timed evaluation, so every
    // one of these gathers again instead of using the kept document.
    let mut changed = Vec::with_capacity(args.iterations / 10);
    for i in 0..(args.iterations / 10).max(10) {
        let link = json!({"document": "release_notes", "url": format!("https://wiki.example/notes/{i}")}).to_string();
        let req = AddEvidence { release: Some(key.clone()), kind: "document_link".into(), ..Default::default() };
        app.add_evidence(&ctx, req, link.as_bytes()).await?;
        let t = Instant::now();
        let d = app.release_gates(&ctx, &key, "prod").await?;
        changed.push(t.elapsed());
        anyhow::ensure!(d.passed);
    }
    changed.sort();
    let naive_iterations = (args.iterations / 10).max(10);
    let mut slow = Vec::with_capacity(naive_iterations);
    let started = Instant::now();
    for _ in 0..naive_iterations {
        let t = Instant::now();
        naive(&app, &ctx, &key).await?;
        slow.push(t.elapsed());
    }
    let slow_total = started.elapsed();
    ours.sort();
    slow.sort();
    let (p50, p99, n50, n99) = (quantile(&ours, 0.5), quantile(&ours, 0.99), quantile(&slow, 0.5), quantile(&slow, 0.99));
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("gate evaluation, {} components, {facts} evidence facts, built-in rules + 1 Rego policy ({})", args.components, args.backend);
    println!("{:<34} {:>10} {:>10} {:>12}", "", "p50 ms", "p99 ms", "evals/s");
    println!(
        "{:<34} {:>10.2} {:>10.2} {:>12.1}",
        "signalbox (stored facts)",
        ms(p50),
        ms(p99),
        args.iterations as f64 / ours_total.as_secs_f64()
    );
    println!(
        "{:<34} {:>10.2} {:>10.2} {:>12}",
        "signalbox, after a change",
        ms(quantile(&changed, 0.5)),
        ms(quantile(&changed, 0.99)),
        "-"
    );
    println!(
        "{:<34} {:>10.2} {:>10.2} {:>12.1}",
        "naive (re-read + re-parse files)",
        ms(n50),
        ms(n99),
        naive_iterations as f64 / slow_total.as_secs_f64()
    );
    println!(
        "ratio naive/signalbox: p50 {:.1}x, p99 {:.1}x; goal p99 < 5 ms: {}",
        ms(n50) / ms(p50),
        ms(n99) / ms(p99),
        if ms(p99) < 5.0 { "met" } else { "NOT met" }
    );
    if let Some(url) = pg_url {
        drop(app);
        drop(store);
        signalbox_store_postgres::testing::drop_database(&args.postgres_url, &url).await.ok();
    }
    Ok(())
}

/// What a system that keeps only raw files does per decision: fetch every evidence file of
/// the release, parse it again, then decide (the decision itself is the same code).
async fn naive(app: &App, ctx: &RequestContext, key: &str) -> anyhow::Result<()> {
    let release = app.get_resource::<signalbox_domain::model::Release>(ctx, signalbox_domain::model::Kind::Release, key).await?;
    let mut parsed = 0usize;
    for c in &release.value.components {
        for record in app.list_evidence(ctx, Some(&c.artifact_id), None).await? {
            let (_, bytes) = app.evidence_file(ctx, &record.id).await?;
            let facts = signalbox_evidence::parse(record.kind, &bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
            parsed += usize::from(!serde_json::to_vec(&facts)?.is_empty());
        }
    }
    anyhow::ensure!(parsed == release.value.components.len() * 4);
    let d = app.release_gates(ctx, key, "prod").await?;
    anyhow::ensure!(d.passed);
    Ok(())
}
