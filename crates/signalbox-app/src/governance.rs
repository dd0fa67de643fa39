//! Governance use cases (SPEC C4, C5): policies, gate decisions, approvals, risk, break-glass
//! and the go/no-go summary. The decisions themselves are pure functions of
//! `signalbox-governance`; this module gathers their inputs from the store — inside the
//! transaction when a lifecycle step depends on them, so the decision and the write agree.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use signalbox_domain::access::{Permission, ResourceScopes, Role, Scope};
use signalbox_domain::lifecycle::ReleaseState;
use signalbox_domain::model::{Artifact, Change, Criticality, DataClassification, DocumentKind, Environment, Kind, Release, Service, Tier};
use signalbox_domain::tasks::{Task, TaskKind};
use signalbox_domain::validate::parse_version;
use signalbox_evidence::{DocumentType, Facts};
use signalbox_governance::approvals::{self, ApprovalContext, ApprovalRound, ApprovalStatus, Decision, Vote};
use signalbox_governance::breakglass::{self, BreakGlass, BreakGlassState};
use signalbox_governance::gates::{
    self, ChangeEvidence, ComponentEvidence, CoverageSummary, DependencyEvidence, DeploymentEvidence, EnvironmentFacts, FindingSummary,
    GateDecision, PerformanceMetric, ReleaseEvidence, ReleaseFacts, SignoffEvidence, SmokeEvidence, TestSummary, TopFinding,
};
use signalbox_governance::policy::{self, EnvironmentPolicy, PolicyLevel};
use signalbox_governance::rego::{self, CompiledRego, RegoInput};
use signalbox_governance::risk::{self, RiskAssessment, RiskInput, RiskWeights};
use signalbox_rollout::plan::RolloutPhase;
use signalbox_store::{HeadQuery, ListQuery, Record, RecordHead, Store};
use utoipa::ToSchema;

use crate::artifacts::artifact_key;
use crate::error::{AppError, AppResult};
use crate::evidence::EvidenceRecord;
use crate::gather_cache::{DeploymentSummary, EvidenceSummary, FactsEntry, ReleaseSummary, SbomSummary, VersionCache, Weigh};
use crate::mutation::{decode, Mutation, Placement};
use crate::promotion::{path_key, Deployment, PromotionPath};
use crate::releases::release_scopes;
use crate::{new_id, App, RequestContext, Versioned};

/// Settings of governance that are configuration rather than policy.
#[derive(Debug, Clone)]
pub struct GovernanceSettings {
    pub risk_weights: RiskWeights,
    pub rego_time_limit: std::time::Duration,
}

impl Default for GovernanceSettings {
    fn default() -> Self {
        GovernanceSettings { risk_weights: RiskWeights::default(), rego_time_limit: rego::DEFAULT_TIME_LIMIT }
    }
}

/// Compiled Rego modules by (rule name, module text digest): parsing happens once per module
/// version, not once per evaluation.
#[derive(Default)]
pub struct RegoCache(Mutex<BTreeMap<String, CompiledRego>>);

/// Reads for governance decisions, from the store (queries) or from a transaction (decisions
/// that precede a write).
pub(crate) enum Reader<'r, 'm> {
    Store(&'r dyn Store),
    Tx(&'r mut Mutation<'m>),
}

impl Reader<'_, '_> {
    async fn record(&mut self, kind: Kind, id: &str) -> AppResult<Option<Record>> {
        match self {
            Reader::Store(s) => Ok(s.get(kind, id).await?),
            Reader::Tx(m) => m.get_record(kind, id).await,
        }
    }
    async fn find<T: DeserializeOwned>(&mut self, kind: Kind, id: &str) -> AppResult<Option<Versioned<T>>> {
        match self.record(kind, id).await? {
            Some(r) => Ok(Some(decode(&r)?)),
            None => Ok(None),
        }
    }
    async fn get<T: DeserializeOwned>(&mut self, kind: Kind, id: &str) -> AppResult<Versioned<T>> {
        self.find(kind, id).await?.ok_or_else(|| AppError::not_found(kind, id))
    }
    async fn records(&mut self, query: &ListQuery) -> AppResult<Vec<Record>> {
        match self {
            Reader::Store(s) => Ok(s.list(query).await?.items),
            Reader::Tx(m) => m.list_records(query).await,
        }
    }
    async fn heads(&mut self, query: &HeadQuery) -> AppResult<Vec<RecordHead>> {
        match self {
            Reader::Store(s) => Ok(s.heads(query).await?),
            Reader::Tx(m) => m.heads(query).await,
        }
    }
    async fn heads_many(&mut self, queries: &[HeadQuery]) -> AppResult<Vec<Vec<RecordHead>>> {
        match self {
            Reader::Store(s) => Ok(s.heads_many(queries).await?),
            Reader::Tx(m) => m.heads_many(queries).await,
        }
    }
    async fn get_many(&mut self, kind: Kind, ids: &[String]) -> AppResult<Vec<Record>> {
        match self {
            Reader::Store(s) => Ok(s.get_many(kind, ids).await?),
            Reader::Tx(m) => m.get_many_records(kind, ids).await,
        }
    }
    /// What something derived from each record `query` matches, in `seq` order: from `cache`
    /// for versions seen before, the rest fetched in one query and derived by `derive`. Only
    /// committed records (read outside a transaction) go into the cache; see
    /// [`crate::gather_cache`].
    async fn derived<V: Weigh>(
        &mut self,
        query: &HeadQuery,
        cache: &VersionCache<V>,
        derive: impl Fn(&Record) -> AppResult<V>,
    ) -> AppResult<Vec<(RecordHead, Arc<V>)>> {
        let heads = self.heads(query).await?;
        let cached = cache.lookup(&heads);
        let missing: Vec<String> = heads.iter().zip(&cached).filter(|(_, c)| c.is_none()).map(|(h, _)| h.id.clone()).collect();
        let mut fetched: HashMap<String, (RecordHead, Arc<V>)> = HashMap::new();
        if !missing.is_empty() {
            let committed = matches!(self, Reader::Store(_));
            for record in self.get_many(query.kind, &missing).await? {
                let head = RecordHead::from(&record);
                // Changed between the two reads: the later read counts, if it still matches.
                if !query.matches_record(&record) {
                    continue;
                }
                let value = Arc::new(derive(&record)?);
                if committed {
                    cache.insert(&head, value.clone());
                }
                fetched.insert(head.id.clone(), (head, value));
            }
        }
        // Deleted between the two reads: left out, as a later read would.
        Ok(heads
            .into_iter()
            .zip(cached)
            .filter_map(|(head, cached)| match cached {
                Some(value) => Some((head, value)),
                None => fetched.remove(&head.id),
            })
            .collect())
    }
    /// An artifact by id or `service@version` (service by id or name); errors name `field`.
    /// The one lookup behind release components, evidence subjects and train boarding.
    pub(crate) async fn artifact(&mut self, field: &str, reference: &str) -> AppResult<Artifact> {
        if let Some((service_ref, version_raw)) = reference.split_once('@') {
            let service: Service = self
                .find(Kind::Service, service_ref)
                .await?
                .ok_or_else(|| AppError::invalid(field, format!("no service with id or name {service_ref:?}")))?
                .value;
            let version = parse_version(field, version_raw)?;
            Ok(self
                .find(Kind::Artifact, &artifact_key(&service.id, &version))
                .await?
                .ok_or_else(|| {
                    AppError::invalid(
                        field,
                        format!("{} has no registered artifact with version {version}; register it first", service.name),
                    )
                })?
                .value)
        } else {
            Ok(self
                .find(Kind::Artifact, reference)
                .await?
                .ok_or_else(|| AppError::invalid(field, format!("no artifact {reference:?}; give an artifact id or service@version")))?
                .value)
        }
    }
}

/// A policy as stored: one level's rules for one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PolicyRecord {
    pub id: String,
    pub level: PolicyLevel,
    pub environment_id: String,
    pub policy: EnvironmentPolicy,
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutPolicy {
    /// `organization`, `domain` or `service`.
    pub level: String,
    /// Domain or service id or name (not for the organization level).
    #[serde(default)]
    pub target: Option<String>,
    /// Environment id or name.
    pub environment: String,
    pub policy: EnvironmentPolicy,
}

/// The approval rounds of one release for one environment; the last round is current.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApprovalRecord {
    pub id: String,
    pub release_id: String,
    pub environment_id: String,
    pub rounds: Vec<ApprovalRound>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CastVote {
    pub environment: String,
    pub decision: Decision,
    #[serde(default)]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestApproval {
    pub environment: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApprovalView {
    pub release: String,
    pub environment: String,
    pub content_digest: String,
    pub risk: risk::RiskLevel,
    #[serde(flatten)]
    pub status: ApprovalStatus,
}

impl ApprovalView {
    fn new(release: &Release, env: &Environment, g: &Gathered, status: ApprovalStatus) -> ApprovalView {
        ApprovalView {
            release: release.key.clone(),
            environment: env.name.clone(),
            content_digest: release.content_digest.clone(),
            risk: g.doc.risk.level,
            status,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestBreakGlass {
    pub environment: String,
    #[serde(default)]
    pub rules: Vec<String>,
    #[serde(default)]
    pub freeze: bool,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub incident: String,
    #[serde(default)]
    pub ttl_hours: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BreakGlassView {
    #[serde(flatten)]
    pub break_glass: BreakGlass,
    pub state: BreakGlassState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GoNoGo {
    Go,
    NoGo,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OpenTask {
    pub key: String,
    pub name: String,
    pub status: String,
    pub assignee: Option<String>,
}

/// The go/no-go summary a release manager decides from.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    pub release: String,
    pub state: ReleaseState,
    pub environment: String,
    pub decision: GoNoGo,
    /// Every reason for no-go, one sentence each.
    pub blockers: Vec<String>,
    pub gates: GateDecision,
    pub approvals: ApprovalStatus,
    pub risk: RiskAssessment,
    pub open_tasks: Vec<OpenTask>,
    pub missing_documents: Vec<DocumentKind>,
    pub break_glass: Vec<BreakGlassView>,
}

/// The key of a whole gather: the digest of the release's and the environment's content, which
/// (with the records its reads name) are everything a gather depends on.
fn gather_content_key(release: &Release, env: &Environment) -> Option<String> {
    serde_json::to_value((release, env)).ok().map(|both| signalbox_domain::canonical::digest_of(&both))
}

fn tier_name(t: &Tier) -> String {
    match t {
        Tier::Dev => "dev".into(),
        Tier::Test => "test".into(),
        Tier::Staging => "staging".into(),
        Tier::Prod => "prod".into(),
        Tier::Custom(c) => c.clone(),
    }
}

fn env_facts(e: &Environment) -> EnvironmentFacts {
    EnvironmentFacts { id: e.id.clone(), name: e.name.clone(), tier: tier_name(&e.tier), position: e.position }
}

fn policy_key(level: &PolicyLevel, environment_id: &str) -> String {
    match level {
        PolicyLevel::Organization => format!("organization:{environment_id}"),
        PolicyLevel::Domain(d) => format!("domain:{d}:{environment_id}"),
        PolicyLevel::Service(s) => format!("service:{s}:{environment_id}"),
    }
}

fn approval_key(release_id: &str, environment_id: &str) -> String {
    format!("{release_id}:{environment_id}")
}

/// The roles a person holds over a release (bindings at the organization or its domain).
fn roles_over(bindings: &[signalbox_domain::access::RoleBinding], scopes: &ResourceScopes) -> Vec<Role> {
    let mut roles: Vec<Role> =
        bindings.iter().filter(|b| b.scope == Scope::Organization || scopes.0.contains(&b.scope)).map(|b| b.role).collect();
    roles.sort();
    roles.dedup();
    roles
}

/// The newest evidence of each kind (later uploads supersede earlier ones), from summaries in
/// upload order.
fn latest_by_kind(summaries: &[Arc<EvidenceSummary>]) -> BTreeMap<&'static str, &EvidenceSummary> {
    let mut out = BTreeMap::new();
    for s in summaries {
        out.insert(s.kind, s.as_ref());
    }
    out
}

/// Releases in these states are the history gates read (coverage in an environment, first
/// deploys, failure rate), in this order.
const HISTORY_STATES: [&str; 5] = ["released", "closed", "failed", "rolled_back", "verifying"];

impl EvidenceSummary {
    /// Everything gates read from `e`, derived once per evidence record.
    pub(crate) fn of(e: &EvidenceRecord) -> EvidenceSummary {
        EvidenceSummary {
            kind: e.kind.as_str(),
            tests: test_summary(e),
            coverage: coverage_summary(e),
            findings: finding_summary(e),
            sbom: sbom_names_and_licenses(e).map(|(names, licenses, component_count)| SbomSummary { names, licenses, component_count }),
            performance: performance(e),
            smoke: match (&e.facts, &e.environment_id) {
                (Facts::Smoke(t), Some(env_id)) => Some(SmokeEvidence {
                    passed: t.passed,
                    failed: t.failed + t.errored,
                    environment: env_id.clone(),
                    recorded_at: e.created_at,
                    evidence_id: e.id.clone(),
                }),
                _ => None,
            },
            signoff: match &e.facts {
                Facts::Signoff(s) => Some(SignoffEvidence { by: s.by.clone(), role: s.role.clone(), statement: s.statement.clone() }),
                _ => None,
            },
            document: match &e.facts {
                Facts::DocumentLink(d) => match d.document {
                    DocumentType::RollbackPlan => Some(DocumentKind::RollbackPlan),
                    DocumentType::BackoutCriteria => Some(DocumentKind::BackoutCriteria),
                    DocumentType::ImpactAssessment => Some(DocumentKind::ImpactAssessment),
                    DocumentType::ReleaseNotes => Some(DocumentKind::ReleaseNotes),
                    DocumentType::Other => None,
                },
                _ => None,
            },
        }
    }
}

fn test_summary(e: &EvidenceRecord) -> Option<TestSummary> {
    match &e.facts {
        Facts::Junit(t) | Facts::Smoke(t) => Some(TestSummary {
            total: t.total,
            passed: t.passed,
            failed: t.failed,
            errored: t.errored,
            skipped: t.skipped,
            failing: t.failures.iter().take(5).map(|f| f.name.clone()).collect(),
            evidence_id: e.id.clone(),
        }),
        _ => None,
    }
}

fn coverage_summary(e: &EvidenceRecord) -> Option<CoverageSummary> {
    match &e.facts {
        Facts::Lcov(c) | Facts::Cobertura(c) => Some(CoverageSummary {
            line_percent: (c.line_rate * 1000.0).round() / 10.0,
            lines_total: c.lines_total,
            lines_covered: c.lines_covered,
            evidence_id: e.id.clone(),
        }),
        _ => None,
    }
}

fn finding_summary(e: &EvidenceRecord) -> Option<FindingSummary> {
    match &e.facts {
        Facts::Sarif(f) => {
            let mut scored: Vec<&signalbox_evidence::Finding> = f.findings.iter().collect();
            scored.sort_by(|a, b| b.score.unwrap_or(-1.0).total_cmp(&a.score.unwrap_or(-1.0)));
            Some(FindingSummary {
                total: f.counts.critical + f.counts.high + f.counts.medium + f.counts.low + f.counts.none,
                critical: f.counts.critical,
                high: f.counts.high,
                medium: f.counts.medium,
                low: f.counts.low,
                max_score: f.max_score,
                top: scored
                    .iter()
                    .take(5)
                    .map(|x| TopFinding {
                        rule_id: x.rule_id.clone().unwrap_or_else(|| "(no rule id)".into()),
                        score: x.score,
                        severity: serde_json::to_value(x.severity).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
                        location: x.location.clone(),
                    })
                    .collect(),
                evidence_id: e.id.clone(),
            })
        }
        _ => None,
    }
}

fn sbom_names_and_licenses(e: &EvidenceRecord) -> Option<(BTreeSet<String>, Vec<String>, u64)> {
    match &e.facts {
        Facts::Cyclonedx(s) | Facts::Spdx(s) => {
            let names = s.components.iter().map(|c| c.name.clone()).collect();
            let mut licenses: Vec<String> = s.components.iter().flat_map(|c| c.licenses.iter().cloned()).collect();
            licenses.sort();
            licenses.dedup();
            Some((names, licenses, s.component_count))
        }
        _ => None,
    }
}

fn performance(e: &EvidenceRecord) -> Option<Vec<PerformanceMetric>> {
    match &e.facts {
        Facts::Performance(p) => Some(
            p.metrics
                .iter()
                .map(|m| PerformanceMetric {
                    name: m.name.clone(),
                    unit: m.unit.clone(),
                    baseline: m.baseline,
                    current: m.current,
                    regression_percent: (m.change_ratio * 1000.0).round() / 10.0,
                })
                .collect(),
        ),
        _ => None,
    }
}

/// What one evaluation reads, apart from the time: a pure function of the records read, so
/// it can be kept as long as those records are unchanged ([`crate::gather_cache::FactsCache`]).
pub(crate) struct GatheredFacts {
    /// The environment as the environment list read it.
    env: Environment,
    /// `now` is a placeholder; [`GatheredFacts::at`] sets it.
    doc: ReleaseEvidence,
    policy: EnvironmentPolicy,
    /// The release's break-glass requests for this environment, in any state.
    break_glass: Vec<BreakGlass>,
    change_authors: Vec<String>,
    /// `doc` as Rego input, converted on the first decision that needs it.
    rego_input: OnceLock<Result<RegoInput, String>>,
}

impl GatheredFacts {
    /// The facts at `now`: the document's `now` and the break-glass states.
    fn at(self: &Arc<Self>, now: DateTime<Utc>) -> Gathered {
        let break_glass: Vec<BreakGlassView> =
            self.break_glass.iter().map(|b| BreakGlassView { state: b.state(now), break_glass: b.clone() }).collect();
        let bypassed =
            break_glass.iter().filter(|b| b.state == BreakGlassState::Active).flat_map(|b| b.break_glass.rules.iter().cloned()).collect();
        Gathered {
            doc: ReleaseEvidence { now, ..self.doc.clone() },
            policy: self.policy.clone(),
            bypassed,
            break_glass,
            change_authors: self.change_authors.clone(),
            facts: self.clone(),
        }
    }
}

/// A gathered document kept between queries ([`crate::gather_cache::FactsCache`]), with the
/// release it was gathered for.
pub(crate) struct CachedGather {
    release: Versioned<Release>,
    facts: Arc<GatheredFacts>,
}

/// Everything one evaluation uses, at one time.
struct Gathered {
    doc: ReleaseEvidence,
    policy: EnvironmentPolicy,
    bypassed: Vec<String>,
    break_glass: Vec<BreakGlassView>,
    change_authors: Vec<String>,
    facts: Arc<GatheredFacts>,
}

/// Every read of a gather as a head query and the heads of what it returned.
#[derive(Default)]
pub(crate) struct Reads(pub(crate) Vec<(HeadQuery, Vec<RecordHead>)>);

impl Reads {
    fn records(&mut self, query: HeadQuery, records: &[Record]) {
        let mut heads: Vec<RecordHead> = records.iter().map(RecordHead::from).collect();
        heads.sort_by_key(|h| h.seq);
        self.0.push((query, heads));
    }
    fn derived<V>(&mut self, query: HeadQuery, derived: &[(RecordHead, Arc<V>)]) {
        let mut heads: Vec<RecordHead> = derived.iter().map(|(h, _)| h.clone()).collect();
        heads.sort_by_key(|h| h.seq);
        self.0.push((query, heads));
    }
}

impl App {
    fn compiled_rego(&self, rules: &[policy::RegoRule]) -> Vec<CompiledRego> {
        let mut out = Vec::new();
        for r in rules {
            let key = format!("{}:{}", r.name, signalbox_domain::canonical::digest_of(&serde_json::json!(r.module)));
            let cached = self.rego_cache.0.lock().ok().and_then(|c| c.get(&key).cloned());
            let compiled = match cached {
                Some(c) => c,
                None => match rego::compile(&r.name, &r.module, self.governance.rego_time_limit) {
                    Ok(c) => {
                        if let Ok(mut cache) = self.rego_cache.0.lock() {
                            cache.insert(key, c.clone());
                        }
                        c
                    }
                    // Stored modules were compiled when saved; one that no longer compiles (an
                    // engine upgrade) must fail its rule, so give it a module that errors.
                    Err(e) => match rego::compile(
                        &r.name,
                        &format!("package broken\nimport rego.v1\ndeny := {{{:?}: 1}}", e),
                        self.governance.rego_time_limit,
                    ) {
                        Ok(c) => c,
                        Err(_) => continue,
                    },
                },
            };
            out.push(compiled);
        }
        out
    }

    /// The merged policy of every level covering the release in this environment. The
    /// environment's policies are read in one list and picked by key.
    async fn effective_policy(
        reader: &mut Reader<'_, '_>,
        reads: &mut Reads,
        release: &Release,
        services: &[Service],
        env_id: &str,
    ) -> AppResult<EnvironmentPolicy> {
        let mut keys = vec![policy_key(&PolicyLevel::Organization, env_id)];
        let mut domains: BTreeSet<String> = services.iter().map(|s| s.domain_id.clone()).collect();
        if let Some(d) = &release.domain_id {
            domains.insert(d.clone());
        }
        keys.extend(domains.iter().map(|d| policy_key(&PolicyLevel::Domain(d.clone()), env_id)));
        keys.extend(services.iter().map(|s| policy_key(&PolicyLevel::Service(s.id.clone()), env_id)));
        let mut query = ListQuery::all(Kind::Policy).with_parent(env_id);
        query.limit = 0;
        let stored = reader.records(&query).await?;
        reads.records(HeadQuery::all(Kind::Policy).with_parents([env_id]), &stored);
        let by_key: HashMap<&str, &Record> = stored.iter().filter_map(|r| r.key.as_deref().map(|k| (k, r))).collect();
        let mut merged = EnvironmentPolicy::default();
        for k in keys {
            if let Some(r) = by_key.get(k.as_str()) {
                merged = policy::merge(&merged, &decode::<PolicyRecord>(r)?.value.policy);
            }
        }
        Ok(merged)
    }

    /// Everything one evaluation reads, in a fixed number of queries whatever the release's
    /// size: evidence and earlier releases as heads, their summaries from the gather cache
    /// (decoded only for versions not seen before; see [`crate::gather_cache`]).
    ///
    /// Whole gathers are kept by the content of `release` and `env`
    /// ([`GatherCache::facts_by_content`](crate::gather_cache::GatherCache)): when one is kept,
    /// one `heads_many` call re-asks every query it was built from, and it is used only if every
    /// answer names the same record versions. Inside a transaction that check reads the
    /// transaction's own view, so a decision that precedes a write is as exact as a full gather
    /// there, and a caller that gathered the same release beforehand ([`App::prepare_gather`])
    /// spares the write everything but the check. Only gathers read outside a transaction are
    /// kept.
    async fn gather(&self, reader: &mut Reader<'_, '_>, release: &Release, env: &Environment, now: DateTime<Utc>) -> AppResult<Gathered> {
        let key = gather_content_key(release, env);
        if let Some(entry) = key.as_deref().and_then(|k| self.gather_cache.facts_by_content.get(k)) {
            let heads = reader.heads_many(&entry.reads).await?;
            if entry.still_describes(&heads) {
                return Ok(entry.value.at(now));
            }
        }
        let (facts, reads) = self.gather_facts(reader, release, env).await?;
        let facts = Arc::new(facts);
        if let (Some(key), Reader::Store(_)) = (key, &reader) {
            let (reads, heads) = reads.0.into_iter().unzip();
            self.gather_cache.facts_by_content.insert(key, FactsEntry { reads, heads, value: facts.clone() });
        }
        Ok(facts.at(now))
    }

    /// Gathers outside any transaction what a write about to check `release`'s governance in
    /// `environment` (id or name) will need, so that its transaction only re-asks the heads.
    /// Best effort: anything that fails here is found again, and reported, inside the write.
    pub(crate) async fn prepare_gather(&self, release: &Release, environment: &str) {
        let mut reader = Reader::Store(self.store.as_ref());
        if let Ok(env) = App::environment(&mut reader, "environment", environment).await {
            let _ = self.gather(&mut reader, release, &env, Utc::now()).await;
        }
    }

    /// What [`App::gather`] reads, without the time, and every read as a head query with its
    /// answer: the same queries answered the same way mean the same facts
    /// ([`crate::gather_cache::FactsCache`]).
    async fn gather_facts(&self, reader: &mut Reader<'_, '_>, release: &Release, env: &Environment) -> AppResult<(GatheredFacts, Reads)> {
        let mut reads = Reads::default();
        let env_records = reader.records(&ListQuery::all(Kind::Environment)).await?;
        reads.records(HeadQuery::all(Kind::Environment), &env_records);
        let environments: Vec<Environment> = env_records.iter().map(|r| decode(r).map(|v| v.value)).collect::<AppResult<_>>()?;
        // The environment as this read saw it, so its facts and its recorded head agree.
        let env = environments.iter().find(|e| e.id == env.id).unwrap_or(env);
        let previous = environments.iter().filter(|e| e.position < env.position).max_by_key(|e| e.position);
        let history_query = HeadQuery::all(Kind::Release).with_states(HISTORY_STATES);
        let mut history =
            reader.derived(&history_query, &self.gather_cache.releases, |r| Ok(ReleaseSummary::of(&decode::<Release>(r)?.value))).await?;
        reads.derived(history_query, &history);
        // In the order of one list per state, as gates have always read them.
        history.sort_by_key(|(h, _)| (HISTORY_STATES.iter().position(|s| Some(*s) == h.state.as_deref()), h.seq));
        let all_releases: Vec<Arc<ReleaseSummary>> = history.into_iter().map(|(_, r)| r).collect();
        let service_ids: Vec<String> = release.components.iter().map(|c| c.service_id.clone()).collect();
        let mut services_by_id: HashMap<String, Service> = HashMap::new();
        let service_records = reader.get_many(Kind::Service, &service_ids).await?;
        reads.records(HeadQuery::all(Kind::Service).with_ids(service_ids.iter().cloned()), &service_records);
        for r in &service_records {
            let s: Service = decode(r)?.value;
            services_by_id.insert(s.id.clone(), s);
        }
        // Promotion paths, all in one read (there are few): a service's own path wins over its
        // domain's, which wins over the organization's, as in promotion.
        let mut path_query = ListQuery::all(Kind::PromotionPath);
        path_query.limit = 0;
        let path_records = reader.records(&path_query).await?;
        reads.records(HeadQuery::all(Kind::PromotionPath), &path_records);
        let mut paths: HashMap<String, PromotionPath> = HashMap::new();
        for r in &path_records {
            if let Some(key) = &r.key {
                paths.insert(key.clone(), decode::<PromotionPath>(r)?.value);
            }
        }
        // Per component, the environment before this one on its path; without a path that
        // includes this environment, the environment list by position.
        let mut upstream_envs: Vec<Option<&Environment>> = Vec::new();
        for c in &release.components {
            let service = services_by_id.get(&c.service_id).ok_or_else(|| AppError::not_found(Kind::Service, &c.service_id))?;
            let path = [path_key(Some(&service.id), None), path_key(None, Some(&service.domain_id)), path_key(None, None)]
                .iter()
                .find_map(|k| paths.get(k));
            let on_path = path.and_then(|p| p.stages.iter().position(|s| s.environment_id == env.id).map(|i| (p, i)));
            upstream_envs.push(match on_path {
                Some((p, i)) if i > 0 => environments.iter().find(|e| e.id == p.stages[i - 1].environment_id),
                Some(_) => None,
                None => previous,
            });
        }
        // Deployments of these services here and upstream: what runs here, and soak upstream.
        let mut deployment_envs: Vec<String> = upstream_envs.iter().flatten().map(|e| e.id.clone()).collect();
        deployment_envs.push(env.id.clone());
        deployment_envs.sort();
        deployment_envs.dedup();
        let deployment_query = HeadQuery::all(Kind::Deployment)
            .with_field_in("service_id", service_ids.iter().cloned())
            .with_field_in("environment_id", deployment_envs);
        let deployments = reader
            .derived(&deployment_query, &self.gather_cache.deployments, |r| Ok(DeploymentSummary::of(&decode::<Deployment>(r)?.value)))
            .await?;
        reads.derived(deployment_query, &deployments);
        // The latest deployment of a service in an environment, as promotion's `current_deployment`.
        let latest_deployment = |service_id: &str, environment_id: &str| {
            deployments
                .iter()
                .map(|(_, d)| d.as_ref())
                .filter(|d| d.service_id == service_id && d.environment_id == environment_id)
                .max_by(|a, b| (a.created_at, &a.key).cmp(&(b.created_at, &b.key)))
        };
        let mut services = Vec::new();
        // Per component: the artifact of its service currently in the environment, if another
        // one: from its latest deployment there; when it has never been deployed there through
        // promotion, the newest delivered release that targeted the environment and pinned it.
        let mut previous_artifacts = Vec::new();
        let mut first_deploys = Vec::new();
        for c in &release.components {
            let service = services_by_id.get(&c.service_id).cloned().ok_or_else(|| AppError::not_found(Kind::Service, &c.service_id))?;
            let in_env = match latest_deployment(&c.service_id, &env.id) {
                Some(d) => d.running_artifact().map(str::to_string),
                None => all_releases
                    .iter()
                    .filter(|r| r.id != release.id && r.state.is_delivered() && r.target_environments.contains(&env.id))
                    .filter_map(|r| r.artifact_of(&c.service_id).map(|a| (r.delivered_at, a)))
                    .max_by_key(|(t, _)| *t)
                    .map(|(_, a)| a.to_string()),
            };
            let ever_released = all_releases
                .iter()
                .any(|r| r.id != release.id && r.state.is_delivered() && r.components.iter().any(|(s, _)| *s == c.service_id));
            if !ever_released {
                first_deploys.push(service.name.clone());
            }
            previous_artifacts.push(in_env.filter(|a| a != &c.artifact_id));
            services.push(service);
        }
        // Every evidence record read here — the components' artifacts, the artifacts they
        // replace, the release's own — in one head query.
        let mut subjects: Vec<String> = release.components.iter().map(|c| c.artifact_id.clone()).collect();
        subjects.extend(previous_artifacts.iter().flatten().cloned());
        subjects.push(release.id.clone());
        subjects.sort();
        subjects.dedup();
        let evidence_query = HeadQuery::all(Kind::Evidence).with_parents(subjects);
        let evidence = reader
            .derived(&evidence_query, &self.gather_cache.evidence, |r| Ok(EvidenceSummary::of(&decode::<EvidenceRecord>(r)?.value)))
            .await?;
        reads.derived(evidence_query, &evidence);
        let mut evidence_of: HashMap<String, Vec<Arc<EvidenceSummary>>> = HashMap::new();
        for (head, summary) in evidence {
            evidence_of.entry(head.parent.unwrap_or_default()).or_default().push(summary);
        }
        let none = Vec::new();
        let mut components = Vec::new();
        let mut new_dependencies = 0u32;
        for (((c, service), prev_artifact), upstream_env) in
            release.components.iter().zip(&services).zip(&previous_artifacts).zip(&upstream_envs)
        {
            let latest = latest_by_kind(evidence_of.get(&c.artifact_id).unwrap_or(&none));
            let (mut previous_coverage, mut previous_names) = (None, None);
            if let Some(prev_artifact) = prev_artifact {
                let prev = latest_by_kind(evidence_of.get(prev_artifact).unwrap_or(&none));
                previous_coverage =
                    prev.get("lcov").or_else(|| prev.get("cobertura")).and_then(|e| e.coverage.as_ref()).map(|s| s.line_percent);
                previous_names = prev.get("cyclonedx").or_else(|| prev.get("spdx")).and_then(|e| e.sbom.as_ref()).map(|s| &s.names);
            }
            let sbom = latest.get("cyclonedx").or_else(|| latest.get("spdx")).and_then(|e| e.sbom.as_ref());
            if let (Some(s), Some(prev)) = (sbom, previous_names) {
                new_dependencies += s.names.difference(prev).count() as u32;
            }
            components.push(ComponentEvidence {
                service_id: service.id.clone(),
                service: service.name.clone(),
                artifact_id: c.artifact_id.clone(),
                version: c.version.clone(),
                digest: c.digest.clone(),
                tests: latest.get("junit").and_then(|e| e.tests.clone()),
                coverage: latest.get("lcov").or_else(|| latest.get("cobertura")).and_then(|e| e.coverage.clone()),
                previous_coverage_percent: previous_coverage,
                findings: latest.get("sarif").and_then(|e| e.findings.clone()),
                licenses: sbom.map(|s| s.licenses.clone()),
                sbom_components: sbom.map(|s| s.component_count),
                performance: latest.get("performance").and_then(|e| e.performance.clone()),
                previous_environment: upstream_env.map(env_facts),
                upstream_deployment: upstream_env.and_then(|u| latest_deployment(&c.service_id, &u.id)).map(|d| DeploymentEvidence {
                    key: d.key.clone(),
                    environment_id: d.environment_id.clone(),
                    digest: d.digest.clone(),
                    phase: d.phase.as_str().into(),
                    // A deployment recorded as succeeded without a finish time finished when created.
                    finished_at: d.finished_at.or((d.phase == RolloutPhase::Succeeded).then_some(d.created_at)),
                }),
            });
        }
        let mut changes = Vec::new();
        let mut change_authors = Vec::new();
        let mut risk_flags: BTreeMap<String, u32> = BTreeMap::new();
        let change_records = reader.get_many(Kind::Change, &release.change_ids).await?;
        reads.records(HeadQuery::all(Kind::Change).with_ids(release.change_ids.iter().cloned()), &change_records);
        let mut changes_by_id: HashMap<String, Change> = HashMap::new();
        for r in &change_records {
            let ch: Change = decode(r)?.value;
            changes_by_id.insert(ch.id.clone(), ch);
        }
        for id in &release.change_ids {
            if let Some(ch) = changes_by_id.remove(id) {
                for f in &ch.risk_flags {
                    *risk_flags.entry(f.clone()).or_default() += 1;
                }
                change_authors.push(ch.author.clone());
                changes.push(ChangeEvidence {
                    id: ch.id,
                    reference: ch.reference,
                    title: ch.title,
                    change_type: ch.change_type,
                    author: ch.author,
                    risk_flags: ch.risk_flags,
                    bug_severity: ch.bug.map(|b| b.severity.as_str().to_string()),
                    bug_open: ch.bug.is_some_and(|b| b.open),
                });
            }
        }
        let mut dependencies = Vec::new();
        let dependency_records = reader.get_many(Kind::Release, &release.depends_on).await?;
        reads.records(HeadQuery::all(Kind::Release).with_ids(release.depends_on.iter().cloned()), &dependency_records);
        let mut dependencies_by_id: HashMap<String, Release> = HashMap::new();
        for r in &dependency_records {
            let d: Release = decode(r)?.value;
            dependencies_by_id.insert(d.id.clone(), d);
        }
        for d in &release.depends_on {
            if let Some(r) = dependencies_by_id.remove(d) {
                dependencies.push(DependencyEvidence { key: r.key, state: r.state.as_str().into(), released: r.state.is_delivered() });
            }
        }
        let release_evidence = evidence_of.get(&release.id).unwrap_or(&none);
        let mut smoke: Vec<SmokeEvidence> = release_evidence.iter().filter_map(|e| e.smoke.clone()).collect();
        smoke.reverse();
        let signoffs = release_evidence.iter().filter_map(|e| e.signoff.clone()).collect();
        let mut documents: Vec<DocumentKind> =
            [DocumentKind::RollbackPlan, DocumentKind::BackoutCriteria, DocumentKind::ImpactAssessment, DocumentKind::ReleaseNotes]
                .into_iter()
                .filter(|d| release.documents.get(*d).is_some())
                .collect();
        for k in release_evidence.iter().filter_map(|e| e.document) {
            if !documents.contains(&k) {
                documents.push(k);
            }
        }
        let service_ids: BTreeSet<&String> = services.iter().map(|s| &s.id).collect();
        let prior: Vec<&ReleaseSummary> = all_releases
            .iter()
            .map(|r| r.as_ref())
            .filter(|r| r.id != release.id && r.state != ReleaseState::Verifying)
            .filter(|r| r.components.iter().any(|(s, _)| service_ids.contains(s)))
            .collect();
        let risk_input = RiskInput {
            service_count: services.len() as u32,
            customer_facing_services: services.iter().filter(|s| s.criticality == Criticality::CustomerFacing).count() as u32,
            sensitive_data_services: services
                .iter()
                .filter(|s| matches!(s.data_classification, DataClassification::Confidential | DataClassification::Restricted))
                .count() as u32,
            component_count: release.components.len() as u32,
            change_count: release.change_ids.len() as u32,
            risk_flags,
            first_deploy_services: first_deploys,
            new_dependencies,
            prior_releases: prior.len() as u32,
            prior_failures: prior.iter().filter(|r| matches!(r.state, ReleaseState::Failed | ReleaseState::RolledBack)).count() as u32,
        };
        let risk = risk::assess(&risk_input, &self.governance.risk_weights);
        let policy = App::effective_policy(reader, &mut reads, release, &services, &env.id).await?;
        let mut glass_query = ListQuery::all(Kind::BreakGlass).with_parent(release.id.clone());
        glass_query.limit = 0;
        let glass_records = reader.records(&glass_query).await?;
        reads.records(HeadQuery::all(Kind::BreakGlass).with_parents([release.id.clone()]), &glass_records);
        let mut break_glass = Vec::new();
        for r in &glass_records {
            let b: BreakGlass = decode(r)?.value;
            if b.environment_id == env.id {
                break_glass.push(b);
            }
        }
        let doc = ReleaseEvidence {
            release: ReleaseFacts {
                id: release.id.clone(),
                key: release.key.clone(),
                name: release.name.clone(),
                state: release.state.as_str().into(),
                domain_id: release.domain_id.clone(),
                documents,
                planned_window_start: release.planned_window.as_ref().map(|w| w.start),
                planned_window_end: release.planned_window.as_ref().map(|w| w.end),
            },
            environment: env_facts(env),
            previous_environment: previous.map(env_facts),
            // Replaced by the time of each decision (`GatheredFacts::at`).
            now: DateTime::<Utc>::UNIX_EPOCH,
            components,
            changes,
            dependencies,
            smoke,
            signoffs,
            risk,
        };
        let facts = GatheredFacts { env: env.clone(), doc, policy, break_glass, change_authors, rego_input: OnceLock::new() };
        Ok((facts, reads))
    }

    fn decide_gates(&self, g: &Gathered) -> GateDecision {
        let rego = self.compiled_rego(&g.policy.gates.rego);
        let input = if rego.is_empty() {
            &Err(String::new())
        } else {
            // Converted once per gathered document, whatever the time of the decision.
            g.facts.rego_input.get_or_init(|| gates::rego_input(&g.facts.doc))
        };
        gates::evaluate_with_input(&g.policy, &g.doc, &rego, &g.bypassed, input)
    }

    /// The gate decision for `release` (possibly narrowed to part of its content, as a train
    /// departure does per boarded item) in the environment with id `environment_id`.
    pub(crate) async fn gate_decision(
        &self,
        reader: &mut Reader<'_, '_>,
        release: &Release,
        environment_id: &str,
        now: DateTime<Utc>,
    ) -> AppResult<GateDecision> {
        let env = reader.get::<Environment>(Kind::Environment, environment_id).await?.value;
        let g = self.gather(reader, release, &env, now).await?;
        Ok(self.decide_gates(&g))
    }

    fn approval_status(g: &Gathered, release: &Release, record: Option<&ApprovalRecord>) -> ApprovalStatus {
        let actx = ApprovalContext {
            rules: &g.policy.approvals,
            risk: g.doc.risk.level,
            content_digest: &release.content_digest,
            change_authors: &g.change_authors,
            now: g.doc.now,
        };
        approvals::evaluate(record.and_then(|r| r.rounds.last()), &actx)
    }

    async fn environment(reader: &mut Reader<'_, '_>, field: &str, reference: &str) -> AppResult<Environment> {
        Ok(reader
            .find::<Environment>(Kind::Environment, reference)
            .await?
            .ok_or_else(|| AppError::invalid(field, format!("no environment with id or name {reference:?}")))?
            .value)
    }

    /// The release and environment as the caller named them (id, key or name) and what gates
    /// read about them at `now`, for queries (decisions that precede a write gather inside
    /// their transaction). When the facts cache holds a document for the same names, one
    /// `heads_many` call re-asks every query it was built from; only if every answer is the
    /// same record versions is it used, else everything is gathered again and kept.
    async fn gathered(
        &self,
        ctx: &RequestContext,
        release: &str,
        environment: &str,
        now: DateTime<Utc>,
    ) -> AppResult<(Versioned<Release>, Gathered)> {
        ctx.actor.require(Permission::Read, &ResourceScopes::organization())?;
        let key = format!("{release}\u{1f}{environment}");
        if let Some(entry) = self.gather_cache.facts.get(&key) {
            let heads = self.store.heads_many(&entry.reads).await?;
            if entry.still_describes(&heads) {
                return Ok((entry.value.release.clone(), entry.value.facts.at(now)));
            }
        }
        let record = self.store.get(Kind::Release, release).await?.ok_or_else(|| AppError::not_found(Kind::Release, release))?;
        let rel: Versioned<Release> = decode(&record)?;
        let mut reader = Reader::Store(self.store.as_ref());
        let env = App::environment(&mut reader, "environment", environment).await?;
        let (facts, mut reads) = self.gather_facts(&mut reader, &rel.value, &env).await?;
        // The release as named: by its id, or by its key, which no other record's id may take.
        let mut ids = vec![record.id.clone()];
        if release != record.id {
            ids.push(release.to_string());
        }
        reads.0.push((HeadQuery::all(Kind::Release).with_ids(ids), vec![RecordHead::from(&record)]));
        let facts = Arc::new(facts);
        let g = facts.at(now);
        let (reads, heads) = reads.0.into_iter().unzip();
        let value = CachedGather { release: rel.clone(), facts };
        self.gather_cache.facts.insert(key, FactsEntry { reads, heads, value });
        Ok((rel, g))
    }

    /// `GET /releases/{id}/gates?environment=…`
    pub async fn release_gates(&self, ctx: &RequestContext, release: &str, environment: &str) -> AppResult<GateDecision> {
        let (_, g) = self.gathered(ctx, release, environment, Utc::now()).await?;
        Ok(self.decide_gates(&g))
    }

    /// The release evidence document exactly as gates and Rego rules see it.
    pub async fn release_evidence_document(&self, ctx: &RequestContext, release: &str, environment: &str) -> AppResult<ReleaseEvidence> {
        Ok(self.gathered(ctx, release, environment, Utc::now()).await?.1.doc)
    }

    pub async fn release_risk(&self, ctx: &RequestContext, release: &str) -> AppResult<RiskAssessment> {
        let release: Release = self.get_resource(ctx, Kind::Release, release).await?.value;
        let mut reader = Reader::Store(self.store.as_ref());
        // Risk does not depend on the environment; any environment (or none) gives the same answer.
        let env = match release.target_environments.first() {
            Some(e) => reader.get::<Environment>(Kind::Environment, e).await?.value,
            None => Environment {
                id: String::new(),
                name: String::new(),
                tier: Tier::Prod,
                position: i32::MAX,
                protection: Default::default(),
                config: Default::default(),
                owner: None,
                created_at: Utc::now(),
            },
        };
        Ok(self.gather(&mut reader, &release, &env, Utc::now()).await?.doc.risk)
    }

    /// Governance reasons against entering `to` (approved or deploying), evaluated inside the
    /// transition's transaction for the named environment or every target environment.
    pub(crate) async fn governance_blockers(
        &self,
        reader: &mut Reader<'_, '_>,
        now: DateTime<Utc>,
        release: &Release,
        to: ReleaseState,
        environment: Option<&str>,
    ) -> AppResult<Vec<String>> {
        if !matches!(to, ReleaseState::Approved | ReleaseState::Deploying) {
            return Ok(vec![]);
        }
        let reader = &mut *reader;
        let envs: Vec<Environment> = match environment {
            Some(e) => vec![App::environment(reader, "environment", e).await?],
            None => {
                let mut out = Vec::new();
                for id in &release.target_environments {
                    out.push(reader.get::<Environment>(Kind::Environment, id).await?.value);
                }
                out
            }
        };
        let mut reasons = Vec::new();
        for env in envs {
            let g = self.gather(reader, release, &env, now).await?;
            reasons.extend(self.decide_gates(&g).failure_reasons());
            let record = reader.find::<ApprovalRecord>(Kind::Approval, &approval_key(&release.id, &env.id)).await?;
            let status = App::approval_status(&g, release, record.as_ref().map(|r| &r.value));
            if !status.satisfied() {
                let detail = match &status.rejection {
                    Some(r) => r.clone(),
                    None => status.still_needed.join("; "),
                };
                reasons.push(format!("approvals for {} are not complete: {detail}", env.name));
            }
        }
        Ok(reasons)
    }

    /// Opens a new approval round for every environment of `release` with approval rules.
    /// Called when a release enters `awaiting_approval`, and by an explicit request.
    pub(crate) async fn open_approval_rounds(m: &mut Mutation<'_>, release: &Release, environments: &[String]) -> AppResult<()> {
        for env_id in environments {
            let key = approval_key(&release.id, env_id);
            let requested_by = m.context().actor.username.clone();
            let existing = m.find::<ApprovalRecord>(Kind::Approval, &key).await?;
            let number = existing.as_ref().map(|r| r.value.rounds.len() as u32 + 1).unwrap_or(1);
            let round =
                ApprovalRound { number, requested_by, requested_at: m.now, content_digest: release.content_digest.clone(), votes: vec![] };
            let place = Placement { key: Some(key), parent: Some(release.id.clone()), state: None };
            match existing {
                Some(current) => {
                    let mut next = current.value.clone();
                    next.rounds.push(round);
                    let id = next.id.clone();
                    m.update("approval.request", Kind::Approval, &id, place, &current, &next).await?;
                }
                None => {
                    let record = ApprovalRecord {
                        id: new_id(Kind::Approval),
                        release_id: release.id.clone(),
                        environment_id: env_id.clone(),
                        rounds: vec![round],
                    };
                    m.insert("approval.request", Kind::Approval, &record.id.clone(), place, &record).await?;
                }
            }
        }
        Ok(())
    }

    pub async fn request_approval(&self, ctx: &RequestContext, release: &str, req: RequestApproval) -> AppResult<ApprovalView> {
        let mut m = Mutation::begin(self, ctx).await?;
        let rel: Release = m.get(Kind::Release, release).await?.value;
        ctx.actor.require(Permission::EditRelease, &release_scopes(&rel))?;
        let env: Environment = App::resolve_ref(&mut m, Kind::Environment, "environment", &req.environment).await?.value;
        App::open_approval_rounds(&mut m, &rel, std::slice::from_ref(&env.id)).await?;
        let now = m.now;
        let view = self.approval_view(&mut Reader::Tx(&mut m), &rel, &env, now).await?;
        m.commit(201, &view).await?;
        Ok(view)
    }

    /// The approval status of a release for one environment, read through `reader`.
    async fn approval_view(
        &self,
        reader: &mut Reader<'_, '_>,
        release: &Release,
        env: &Environment,
        now: DateTime<Utc>,
    ) -> AppResult<ApprovalView> {
        let g = self.gather(reader, release, env, now).await?;
        let record = reader.find::<ApprovalRecord>(Kind::Approval, &approval_key(&release.id, &env.id)).await?;
        let status = App::approval_status(&g, release, record.as_ref().map(|r| &r.value));
        Ok(ApprovalView::new(release, env, &g, status))
    }

    /// `GET /releases/{id}/approvals?environment=…`: the status with who is still needed.
    pub async fn approval_status_of(&self, ctx: &RequestContext, release: &str, environment: &str) -> AppResult<ApprovalView> {
        let (rel, g) = self.gathered(ctx, release, environment, Utc::now()).await?;
        let env = g.facts.env.clone();
        let record = self.store.get(Kind::Approval, &approval_key(&rel.value.id, &env.id)).await?;
        let record = record.map(|r| decode::<ApprovalRecord>(&r)).transpose()?;
        let status = App::approval_status(&g, &rel.value, record.as_ref().map(|r| &r.value));
        Ok(ApprovalView::new(&rel.value, &env, &g, status))
    }

    /// `POST /releases/{id}/approvals`: approve or reject, with segregation of duties.
    pub async fn cast_vote(&self, ctx: &RequestContext, release: &str, req: CastVote) -> AppResult<ApprovalView> {
        if req.decision == Decision::Reject && req.comment.as_deref().is_none_or(|c| c.trim().is_empty()) {
            return Err(AppError::invalid("comment", "a rejection needs a comment saying what must change"));
        }
        if req.comment.as_ref().is_some_and(|c| c.len() > 4000) {
            return Err(AppError::invalid("comment", "must be at most 4000 characters"));
        }
        let mut m = Mutation::begin(self, ctx).await?;
        let rel: Release = m.get(Kind::Release, release).await?.value;
        let scopes = release_scopes(&rel);
        ctx.actor.require(Permission::Approve, &scopes)?;
        let env: Environment = App::resolve_ref(&mut m, Kind::Environment, "environment", &req.environment).await?.value;
        let key = approval_key(&rel.id, &env.id);
        let current: Versioned<ApprovalRecord> = m.find(Kind::Approval, &key).await?.ok_or_else(|| AppError::Conflict {
            code: "approval-not-requested",
            detail: format!(
                "nobody has requested approval of {} for {}; it is requested when the release enters awaiting_approval",
                rel.key, env.name
            ),
        })?;
        let now = m.now;
        let g = {
            let mut reader = Reader::Tx(&mut m);
            self.gather(&mut reader, &rel, &env, now).await?
        };
        let round = current.value.rounds.last().cloned().ok_or_else(|| AppError::Internal("approval record without rounds".into()))?;
        let status = App::approval_status(&g, &rel, Some(&current.value));
        if status.state == approvals::ApprovalState::Rejected {
            return Err(AppError::Conflict {
                code: "approval-rejected",
                detail: format!(
                    "round {} for {} was rejected ({}); request approval again to start a new round",
                    round.number,
                    env.name,
                    status.rejection.unwrap_or_default()
                ),
            });
        }
        let roles = roles_over(&ctx.actor.bindings, &scopes);
        let actx = ApprovalContext {
            rules: &g.policy.approvals,
            risk: g.doc.risk.level,
            content_digest: &rel.content_digest,
            change_authors: &g.change_authors,
            now,
        };
        if let Some(reason) = approvals::refuse_voter(&round, &actx, &ctx.actor.username, &roles) {
            return Err(AppError::ForbiddenCode { code: "segregation-of-duties", detail: reason });
        }
        let mut next = current.value.clone();
        if let Some(last) = next.rounds.last_mut() {
            last.votes.push(Vote {
                user_id: ctx.actor.user_id.clone(),
                username: ctx.actor.username.clone(),
                roles,
                decision: req.decision,
                comment: req.comment.clone(),
                content_digest: rel.content_digest.clone(),
                at: now,
            });
        }
        m.set_reason(req.comment.clone());
        let action = match req.decision {
            Decision::Approve => "approval.approve",
            Decision::Reject => "approval.reject",
        };
        let place = Placement { key: Some(key), parent: Some(rel.id.clone()), state: None };
        m.update(action, Kind::Approval, &next.id.clone(), place, &current, &next).await?;
        let status = App::approval_status(&g, &rel, Some(&next));
        let view = ApprovalView::new(&rel, &env, &g, status);
        m.commit(200, &view).await?;
        Ok(view)
    }

    /// `PUT /policies`: sets one level's rules for one environment, refusing any loosening of
    /// the levels above.
    pub async fn put_policy(&self, ctx: &RequestContext, req: PutPolicy) -> AppResult<Versioned<PolicyRecord>> {
        policy::validate_policy(&req.policy)?;
        let mut errors = signalbox_domain::Invalid::default();
        for (i, r) in req.policy.gates.rego.iter().enumerate() {
            if let Err(e) = rego::compile(&r.name, &r.module, self.governance.rego_time_limit) {
                errors.push(format!("policy/gates/rego/{i}/module"), format!("does not compile: {e}"));
            }
        }
        errors.into_result()?;
        let mut m = Mutation::begin(self, ctx).await?;
        let env: Environment = App::resolve_ref(&mut m, Kind::Environment, "environment", &req.environment).await?.value;
        let (level, scopes, parents) = match req.level.as_str() {
            "organization" => {
                if req.target.is_some() {
                    return Err(AppError::invalid("target", "the organization level has no target; leave it out"));
                }
                (PolicyLevel::Organization, ResourceScopes::organization(), vec![])
            }
            "domain" => {
                let t = req.target.as_deref().ok_or_else(|| AppError::invalid("target", "name the domain (id or name)"))?;
                let d: signalbox_domain::model::Domain = App::resolve_ref(&mut m, Kind::Domain, "target", t).await?.value;
                (
                    PolicyLevel::Domain(d.id.clone()),
                    ResourceScopes::organization().with(Scope::Domain(d.id)),
                    vec![PolicyLevel::Organization],
                )
            }
            "service" => {
                let t = req.target.as_deref().ok_or_else(|| AppError::invalid("target", "name the service (id or name)"))?;
                let s: Service = App::resolve_ref(&mut m, Kind::Service, "target", t).await?.value;
                let parents = vec![PolicyLevel::Organization, PolicyLevel::Domain(s.domain_id.clone())];
                (PolicyLevel::Service(s.id.clone()), crate::catalog::service_scopes(&s), parents)
            }
            other => {
                return Err(AppError::invalid("level", format!("{other:?} is not a policy level; use organization, domain or service")))
            }
        };
        ctx.actor.require(Permission::ManagePolicy, &scopes)?;
        let mut parent = EnvironmentPolicy::default();
        let mut parent_level = PolicyLevel::Organization;
        for p in &parents {
            if let Some(rec) = m.find::<PolicyRecord>(Kind::Policy, &policy_key(p, &env.id)).await? {
                parent = policy::merge(&parent, &rec.value.policy);
                parent_level = p.clone();
            }
        }
        if !parents.is_empty() {
            policy::check_tightening(&parent, &parent_level, &req.policy).map_err(|e| {
                AppError::Invalid(
                    e.0.into_iter().map(|f| signalbox_domain::FieldError::new(format!("policy/{}", f.field), f.message)).collect(),
                )
            })?;
        }
        let key = policy_key(&level, &env.id);
        let place = Placement { key: Some(key.clone()), parent: Some(env.id.clone()), state: None };
        let out = match m.find::<PolicyRecord>(Kind::Policy, &key).await? {
            Some(current) => {
                let next =
                    PolicyRecord { policy: req.policy, updated_by: ctx.actor.username.clone(), updated_at: m.now, ..current.value.clone() };
                let version = m.update("policy.update", Kind::Policy, &next.id.clone(), place, &current, &next).await?;
                Versioned { version, value: next }
            }
            None => {
                let record = PolicyRecord {
                    id: new_id(Kind::Policy),
                    level,
                    environment_id: env.id.clone(),
                    policy: req.policy,
                    updated_by: ctx.actor.username.clone(),
                    updated_at: m.now,
                };
                let version = m.insert("policy.create", Kind::Policy, &record.id.clone(), place, &record).await?;
                Versioned { version, value: record }
            }
        };
        m.commit(200, &out.value).await?;
        Ok(out)
    }

    pub async fn list_policies(&self, ctx: &RequestContext, environment: Option<&str>) -> AppResult<Vec<PolicyRecord>> {
        ctx.actor.require(Permission::Read, &ResourceScopes::organization())?;
        let mut q = ListQuery::all(Kind::Policy);
        if let Some(e) = environment {
            let env: Environment = self.get_resource(ctx, Kind::Environment, e).await?.value;
            q = q.with_parent(env.id);
        }
        Ok(self
            .store
            .list(&q)
            .await?
            .items
            .iter()
            .map(decode::<PolicyRecord>)
            .collect::<AppResult<Vec<_>>>()?
            .into_iter()
            .map(|v| v.value)
            .collect())
    }

    /// `POST /releases/{id}/break-glass`
    pub async fn request_break_glass(&self, ctx: &RequestContext, release: &str, req: RequestBreakGlass) -> AppResult<BreakGlassView> {
        let mut m = Mutation::begin(self, ctx).await?;
        let current: Versioned<Release> = m.get(Kind::Release, release).await?;
        let rel = current.value.clone();
        ctx.actor.require(Permission::BreakGlass, &release_scopes(&rel))?;
        if rel.state.is_terminal() {
            return Err(AppError::Conflict { code: "release-final", detail: format!("{} is {}; nothing to bypass", rel.key, rel.state) });
        }
        let env: Environment = App::resolve_ref(&mut m, Kind::Environment, "environment", &req.environment).await?.value;
        let now = m.now;
        let rego_names: Vec<String> = {
            let mut reader = Reader::Tx(&mut m);
            let g = self.gather(&mut reader, &rel, &env, now).await?;
            g.policy.gates.rego.iter().map(|r| r.name.clone()).collect()
        };
        let ttl = breakglass::validate_request(&req.rules, &req.reason, &req.incident, req.ttl_hours, req.freeze, &rego_names)?;
        let id = new_id(Kind::BreakGlass);
        let number = m.next_number("break_glass").await?;
        let review_task = format!("break-glass-review-{number}");
        let bg = BreakGlass {
            id: id.clone(),
            release_id: rel.id.clone(),
            environment_id: env.id.clone(),
            rules: req.rules,
            freeze: req.freeze,
            reason: req.reason.trim().to_string(),
            incident: req.incident.trim().to_string(),
            requested_by: ctx.actor.username.clone(),
            requested_at: now,
            ttl_hours: ttl,
            confirmed_by: None,
            confirmed_at: None,
            expires_at: None,
            revoked: false,
            review_task: review_task.clone(),
        };
        m.set_reason(Some(format!("break-glass for {} ({}): {}", env.name, bg.incident, bg.reason)));
        let place = Placement { key: None, parent: Some(rel.id.clone()), state: Some("pending".into()) };
        m.insert("break_glass.request", Kind::BreakGlass, &id, place, &bg).await?;
        // The post-facto review: closing the release waits for it.
        let mut next = rel.clone();
        let mut task = Task::new(
            &review_task,
            "review",
            &format!("Post-facto review of break-glass {} ({})", number, bg.incident),
            TaskKind::Manual,
            vec![],
        );
        task.blocks_close = true;
        task.assignee_role = Some("release_manager".into());
        next.tasks.push(task);
        let place = Placement { key: Some(next.key.clone()), parent: next.domain_id.clone(), state: Some(next.state.as_str().to_string()) };
        m.update("release.task.add", Kind::Release, &next.id.clone(), place, &current, &next).await?;
        let view = BreakGlassView { state: bg.state(now), break_glass: bg };
        m.commit(201, &view).await?;
        Ok(view)
    }

    /// `POST /break-glass/{id}/confirm`: a second person with incident_commander or
    /// release_manager activates it; it expires `ttl_hours` later.
    pub async fn confirm_break_glass(&self, ctx: &RequestContext, id: &str) -> AppResult<BreakGlassView> {
        let mut m = Mutation::begin(self, ctx).await?;
        let current: Versioned<BreakGlass> = m.get(Kind::BreakGlass, id).await?;
        let rel: Release = m.get(Kind::Release, &current.value.release_id).await?.value;
        let scopes = release_scopes(&rel);
        ctx.actor.require(Permission::BreakGlass, &scopes)?;
        let roles = roles_over(&ctx.actor.bindings, &scopes);
        breakglass::check_confirmation(&current.value, &ctx.actor.username, &roles, m.now)
            .map_err(|detail| AppError::ForbiddenCode { code: "break-glass-refused", detail })?;
        let mut next = current.value.clone();
        breakglass::confirm(&mut next, &ctx.actor.username, m.now);
        m.set_reason(Some(format!(
            "BREAK-GLASS ACTIVE for {} on {} until {}: {}",
            rel.key,
            next.environment_id,
            next.expires_at.map(|e| e.to_rfc3339()).unwrap_or_default(),
            next.reason
        )));
        let place = Placement { key: None, parent: Some(rel.id.clone()), state: Some("active".into()) };
        m.update("break_glass.confirm", Kind::BreakGlass, id, place, &current, &next).await?;
        let view = BreakGlassView { state: next.state(m.now), break_glass: next };
        m.commit(200, &view).await?;
        Ok(view)
    }

    pub async fn list_break_glass(&self, ctx: &RequestContext, release: &str) -> AppResult<Vec<BreakGlassView>> {
        let rel: Release = self.get_resource(ctx, Kind::Release, release).await?.value;
        let now = Utc::now();
        let items: Vec<BreakGlass> = self
            .store
            .list(&ListQuery::all(Kind::BreakGlass).with_parent(rel.id))
            .await?
            .items
            .iter()
            .map(|r| decode(r).map(|v| v.value))
            .collect::<AppResult<_>>()?;
        Ok(items.into_iter().map(|b| BreakGlassView { state: b.state(now), break_glass: b }).collect())
    }

    /// `GET /releases/{id}/readiness?environment=…`: one go/no-go answer.
    pub async fn readiness(&self, ctx: &RequestContext, release: &str, environment: &str) -> AppResult<Readiness> {
        let (rel, g) = self.gathered(ctx, release, environment, Utc::now()).await?;
        let rel = rel.value;
        let env = g.facts.env.clone();
        let gates = self.decide_gates(&g);
        let record = Reader::Store(self.store.as_ref()).find::<ApprovalRecord>(Kind::Approval, &approval_key(&rel.id, &env.id)).await?;
        let approvals = App::approval_status(&g, &rel, record.as_ref().map(|r| &r.value));
        let open_tasks: Vec<OpenTask> = rel
            .tasks
            .iter()
            .filter(|t| !t.status.releases_successors())
            .map(|t| OpenTask { key: t.key.clone(), name: t.name.clone(), status: t.status.as_str().into(), assignee: t.assignee.clone() })
            .collect();
        let missing_documents: Vec<DocumentKind> =
            rel.required_documents.iter().filter(|d| !g.doc.release.documents.contains(d)).copied().collect();
        let mut blockers = gates.failure_reasons();
        if !approvals.satisfied() {
            blockers.push(match &approvals.rejection {
                Some(r) => format!("approvals for {}: {r}", env.name),
                None => format!("approvals for {}: {}", env.name, approvals.still_needed.join("; ")),
            });
        }
        if !missing_documents.is_empty() {
            let names: Vec<&str> = missing_documents.iter().map(|d| d.label()).collect();
            blockers.push(format!("missing documents: {}", names.join(", ")));
        }
        if matches!(rel.state, ReleaseState::Planning | ReleaseState::Testing | ReleaseState::AwaitingApproval) {
            let mut keys: Vec<&str> = Vec::new();
            for to in [ReleaseState::AwaitingApproval, ReleaseState::Approved] {
                for t in signalbox_domain::lifecycle::tasks_required_for(&rel, to) {
                    if !t.status.releases_successors() && !keys.contains(&t.key.as_str()) {
                        keys.push(&t.key);
                    }
                }
            }
            if !keys.is_empty() {
                blockers.push(format!("tasks to finish before approval: {}", keys.join(", ")));
            }
        }
        if rel.state.is_terminal() {
            blockers.push(format!("{} is {}", rel.key, rel.state));
        }
        let decision = if blockers.is_empty() { GoNoGo::Go } else { GoNoGo::NoGo };
        Ok(Readiness {
            release: rel.key.clone(),
            state: rel.state,
            environment: env.name.clone(),
            decision,
            blockers,
            gates,
            approvals,
            risk: g.doc.risk.clone(),
            open_tasks,
            missing_documents,
            break_glass: g.break_glass.clone(),
        })
    }
}

#[cfg(test)]
mod tests;
