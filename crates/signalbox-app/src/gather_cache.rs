//! What gate evaluation derives from single records, cached by record version (issue 3: a gate
//! decision over 50 components and ~10,000 evidence facts in under 5 ms).
//!
//! Gathering a release's evidence document used to decode every evidence record's stored facts
//! (JSON → structs) and every earlier release on every call. What it needs from each record is a
//! pure function of that record's content, and `(id, seq, version)` names one content for good
//! (see [`RecordHead`]): evidence is never updated after upload, every update of a release
//! increments its version, and `seq` is never reused, not even after a delete. So `gather` asks
//! the store for heads only, takes the summaries of versions it has seen from here, and fetches
//! and decodes only the rest, in one query.
//!
//! **Several replicas.** Each replica keeps its own cache and needs no invalidation: which records
//! exist, and at which version, is read from the shared database on every call; the cache only
//! spares decoding a version this replica has decoded before. Only records read outside a
//! transaction — committed ones — are put in: an uncommitted write may roll back, and another
//! write then commit different content under the same version.
//!
//! **Bounded.** Entries carry an estimate of their size in bytes. The cache keeps two
//! generations of at most half the budget each: new entries and hits go into the young one;
//! when it is full it becomes the old one and the previous old one is dropped. Whatever was not
//! used during a whole generation goes; the total stays within the budget.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use signalbox_domain::lifecycle::ReleaseState;
use signalbox_domain::model::{DocumentKind, Release};
use signalbox_governance::gates::{CoverageSummary, FindingSummary, PerformanceMetric, SignoffEvidence, SmokeEvidence, TestSummary};
use signalbox_store::{HeadQuery, RecordHead};

use signalbox_rollout::plan::RolloutPhase;

use crate::governance::{CachedGather, GatheredFacts};
use crate::promotion::Deployment;

/// Default budget of the evidence summaries: some 100,000 typical artifacts' evidence.
pub(crate) const EVIDENCE_BUDGET_BYTES: usize = 64 * 1024 * 1024;
/// Default budget of the release summaries.
pub(crate) const RELEASE_BUDGET_BYTES: usize = 16 * 1024 * 1024;

/// Default budget of the deployment summaries.
pub(crate) const DEPLOYMENT_BUDGET_BYTES: usize = 16 * 1024 * 1024;
/// Default number of whole gathered documents kept (each some 100–300 KB for a release of 50
/// components with its Rego input).
pub(crate) const FACTS_ENTRIES: usize = 128;

/// The caches `gather` reads through, one per derived kind, and the whole gathered documents.
pub(crate) struct GatherCache {
    pub(crate) evidence: VersionCache<EvidenceSummary>,
    pub(crate) releases: VersionCache<ReleaseSummary>,
    pub(crate) deployments: VersionCache<DeploymentSummary>,
    pub(crate) facts: FactsCache<CachedGather>,
    /// Gathered facts by the content of the release and environment they were gathered for:
    /// what a write (promotion, a release transition) checks inside its transaction, gathered
    /// beforehand outside it, so that the write holds the database only to re-ask the heads.
    pub(crate) facts_by_content: FactsCache<Arc<GatheredFacts>>,
}

impl Default for GatherCache {
    fn default() -> Self {
        GatherCache {
            evidence: VersionCache::new(EVIDENCE_BUDGET_BYTES),
            releases: VersionCache::new(RELEASE_BUDGET_BYTES),
            deployments: VersionCache::new(DEPLOYMENT_BUDGET_BYTES),
            facts: FactsCache::new(FACTS_ENTRIES),
            facts_by_content: FactsCache::new(FACTS_ENTRIES),
        }
    }
}

/// A value built from exactly the records `reads` returned (as heads): it still describes the
/// database if the same queries return the same heads, which one `Store::heads_many` call says.
pub(crate) struct FactsEntry<V> {
    pub(crate) reads: Vec<HeadQuery>,
    pub(crate) heads: Vec<Vec<RecordHead>>,
    pub(crate) value: V,
}

impl<V> FactsEntry<V> {
    /// Whether `heads`, the current answers to `self.reads`, are the ones the value was built from.
    pub(crate) fn still_describes(&self, heads: &[Vec<RecordHead>]) -> bool {
        self.heads == heads
    }
}

/// Values built from whole sets of reads, by a caller's key, bounded by a count (two
/// generations, as [`VersionCache`]). The cache never decides validity by itself: every use
/// checks [`FactsEntry::still_describes`] against fresh heads first.
pub(crate) struct FactsCache<V> {
    capacity: usize,
    inner: Mutex<FactsGenerations<V>>,
}

impl<V> FactsCache<V> {
    pub(crate) fn new(capacity: usize) -> Self {
        FactsCache { capacity: capacity.max(2), inner: Mutex::new((HashMap::new(), HashMap::new())) }
    }

    pub(crate) fn get(&self, key: &str) -> Option<Arc<FactsEntry<V>>> {
        let Ok(mut g) = self.inner.lock() else { return None };
        if let Some(e) = g.0.get(key) {
            return Some(e.clone());
        }
        let e = g.1.remove(key)?;
        Self::admit(&mut g, self.capacity, key.to_string(), e.clone());
        Some(e)
    }

    pub(crate) fn insert(&self, key: String, entry: FactsEntry<V>) {
        if let Ok(mut g) = self.inner.lock() {
            Self::admit(&mut g, self.capacity, key, Arc::new(entry));
        }
    }

    fn admit(g: &mut FactsGenerations<V>, capacity: usize, key: String, entry: Arc<FactsEntry<V>>) {
        if !g.0.contains_key(&key) && g.0.len() >= capacity / 2 {
            g.1 = std::mem::take(&mut g.0);
        }
        g.1.remove(&key);
        g.0.insert(key, entry);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().map(|g| g.0.len() + g.1.len()).unwrap_or(0)
    }
}

type FactsGenerations<V> = (HashMap<String, Arc<FactsEntry<V>>>, HashMap<String, Arc<FactsEntry<V>>>);

/// An approximate size in bytes, for the cache budget.
pub(crate) trait Weigh {
    fn weight(&self) -> usize;
}

/// One record at one version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct VersionKey {
    id: String,
    seq: i64,
    version: i64,
}

impl VersionKey {
    pub(crate) fn of(head: &RecordHead) -> VersionKey {
        VersionKey { id: head.id.clone(), seq: head.seq, version: head.version }
    }
}

/// Values derived from one record version, bounded by an approximate byte budget.
pub(crate) struct VersionCache<V> {
    budget: usize,
    inner: Mutex<Generations<V>>,
}

struct Generations<V> {
    young: HashMap<VersionKey, (Arc<V>, usize)>,
    young_weight: usize,
    old: HashMap<VersionKey, (Arc<V>, usize)>,
}

/// Bookkeeping per entry beyond what [`Weigh`] counts (key, map slot, `Arc`).
const ENTRY_OVERHEAD: usize = 96;

impl<V: Weigh> VersionCache<V> {
    pub(crate) fn new(budget: usize) -> Self {
        VersionCache { budget, inner: Mutex::new(Generations { young: HashMap::new(), young_weight: 0, old: HashMap::new() }) }
    }

    /// The cached value for each head, `None` for those not seen at that version.
    pub(crate) fn lookup(&self, heads: &[RecordHead]) -> Vec<Option<Arc<V>>> {
        // A poisoned lock only costs the cache, never the answer.
        let Ok(mut g) = self.inner.lock() else { return heads.iter().map(|_| None).collect() };
        heads
            .iter()
            .map(|h| {
                let key = VersionKey::of(h);
                if let Some((v, _)) = g.young.get(&key) {
                    return Some(v.clone());
                }
                let (v, weight) = g.old.remove(&key)?;
                g.admit(key, v.clone(), weight, self.budget);
                Some(v)
            })
            .collect()
    }

    pub(crate) fn insert(&self, head: &RecordHead, value: Arc<V>) {
        let weight = value.weight() + head.id.len() + ENTRY_OVERHEAD;
        // One entry larger than a generation would evict everything else; it is not kept.
        if weight > self.budget / 2 {
            return;
        }
        if let Ok(mut g) = self.inner.lock() {
            g.admit(VersionKey::of(head), value, weight, self.budget);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().map(|g| g.young.len() + g.old.len()).unwrap_or(0)
    }
}

impl<V> Generations<V> {
    fn admit(&mut self, key: VersionKey, value: Arc<V>, weight: usize, budget: usize) {
        if self.young.contains_key(&key) {
            return;
        }
        if self.young_weight + weight > budget / 2 {
            self.old = std::mem::take(&mut self.young);
            self.young_weight = 0;
        }
        self.old.remove(&key);
        self.young.insert(key, (value, weight));
        self.young_weight += weight;
    }
}

fn strings<'a>(items: impl IntoIterator<Item = &'a String>) -> usize {
    items.into_iter().map(|s| s.len() + 24).sum()
}

fn opt(s: &Option<String>) -> usize {
    s.as_ref().map_or(0, |s| s.len() + 24)
}

/// A software bill of materials as gates read it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SbomSummary {
    /// Component names, for counting dependencies new since the previous artifact.
    pub names: BTreeSet<String>,
    /// Distinct licenses, sorted.
    pub licenses: Vec<String>,
    pub component_count: u64,
}

/// Everything gates read from one evidence record, derived from its facts once. Each field is
/// what the record contributes when it is the newest of its kind (artifact evidence) or when it
/// is listed (release evidence: smoke results, sign-offs, document links).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EvidenceSummary {
    /// The evidence kind (`junit`, `lcov`, …): later uploads of a kind supersede earlier ones.
    pub kind: &'static str,
    pub tests: Option<TestSummary>,
    pub coverage: Option<CoverageSummary>,
    pub findings: Option<FindingSummary>,
    pub sbom: Option<SbomSummary>,
    pub performance: Option<Vec<PerformanceMetric>>,
    pub smoke: Option<SmokeEvidence>,
    pub signoff: Option<SignoffEvidence>,
    pub document: Option<DocumentKind>,
}

impl Weigh for EvidenceSummary {
    fn weight(&self) -> usize {
        let tests = self.tests.as_ref().map_or(0, |t| 64 + strings(&t.failing) + t.evidence_id.len());
        let coverage = self.coverage.as_ref().map_or(0, |c| 32 + c.evidence_id.len());
        let findings = self.findings.as_ref().map_or(0, |f| {
            64 + f.evidence_id.len() + f.top.iter().map(|t| 48 + t.rule_id.len() + t.severity.len() + opt(&t.location)).sum::<usize>()
        });
        let sbom = self.sbom.as_ref().map_or(0, |s| 32 + strings(&s.names) + strings(&s.licenses));
        let performance = self.performance.as_ref().map_or(0, |p| p.iter().map(|m| 48 + m.name.len() + m.unit.len()).sum::<usize>());
        let smoke = self.smoke.as_ref().map_or(0, |s| 64 + s.environment.len() + s.evidence_id.len());
        let signoff = self.signoff.as_ref().map_or(0, |s| 48 + s.by.len() + opt(&s.role) + s.statement.len());
        std::mem::size_of::<Self>() + tests + coverage + findings + sbom + performance + smoke + signoff
    }
}

/// What gates read from an earlier release: where it went, with which artifacts, how it ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReleaseSummary {
    pub id: String,
    pub state: ReleaseState,
    pub target_environments: Vec<String>,
    /// `(service_id, artifact_id)` of each component, in the release's order.
    pub components: Vec<(String, String)>,
    /// When it was last delivered (else created): the newest delivered release is the one in
    /// an environment.
    pub delivered_at: DateTime<Utc>,
}

impl ReleaseSummary {
    pub(crate) fn of(r: &Release) -> ReleaseSummary {
        ReleaseSummary {
            id: r.id.clone(),
            state: r.state,
            target_environments: r.target_environments.clone(),
            components: r.components.iter().map(|c| (c.service_id.clone(), c.artifact_id.clone())).collect(),
            delivered_at: r.history.iter().rev().find(|h| h.to.is_delivered()).map(|h| h.at).unwrap_or(r.created_at),
        }
    }

    /// The artifact of `service_id` this release shipped (its first component of that service).
    pub(crate) fn artifact_of(&self, service_id: &str) -> Option<&str> {
        self.components.iter().find(|(s, _)| s == service_id).map(|(_, a)| a.as_str())
    }
}

impl Weigh for ReleaseSummary {
    fn weight(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.id.len()
            + strings(&self.target_environments)
            + self.components.iter().map(|(s, a)| 48 + s.len() + a.len()).sum::<usize>()
    }
}

/// What gates read from a deployment: which artifact went where, how its rollout ended, and
/// what the environment ran before it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeploymentSummary {
    pub key: String,
    pub service_id: String,
    pub environment_id: String,
    pub created_at: DateTime<Utc>,
    pub phase: RolloutPhase,
    pub artifact_id: String,
    pub digest: String,
    /// The artifact the environment ran before (a rollback returns to it).
    pub previous_artifact_id: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl DeploymentSummary {
    pub(crate) fn of(d: &Deployment) -> DeploymentSummary {
        DeploymentSummary {
            key: d.key.clone(),
            service_id: d.service_id.clone(),
            environment_id: d.environment_id.clone(),
            created_at: d.created_at,
            phase: d.rollout.phase,
            artifact_id: d.artifact.artifact_id.clone(),
            digest: d.artifact.digest.clone(),
            previous_artifact_id: d.previous.as_ref().map(|p| p.artifact_id.clone()),
            finished_at: d.rollout.finished_at,
        }
    }

    /// The artifact running in the environment after this deployment: its own once it
    /// succeeded, else (running, rolled back, aborted, failed) the one it replaced.
    pub(crate) fn running_artifact(&self) -> Option<&str> {
        if self.phase == RolloutPhase::Succeeded {
            Some(&self.artifact_id)
        } else {
            self.previous_artifact_id.as_deref()
        }
    }
}

impl Weigh for DeploymentSummary {
    fn weight(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.key.len()
            + self.service_id.len()
            + self.environment_id.len()
            + self.artifact_id.len()
            + self.digest.len()
            + opt(&self.previous_artifact_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Blob(usize);
    impl Weigh for Blob {
        fn weight(&self) -> usize {
            self.0
        }
    }

    fn head(id: &str, seq: i64, version: i64) -> RecordHead {
        RecordHead { id: id.into(), parent: None, state: None, version, seq }
    }

    #[test]
    fn a_value_is_found_only_for_the_same_record_at_the_same_version() {
        let cache = VersionCache::new(1 << 20);
        cache.insert(&head("ev_1", 7, 1), Arc::new(Blob(10)));
        let found = cache.lookup(&[head("ev_1", 7, 1), head("ev_1", 7, 2), head("ev_2", 7, 1), head("ev_1", 8, 1)]);
        let hits: Vec<bool> = found.iter().map(Option::is_some).collect();
        assert_eq!(hits, [true, false, false, false], "another version, another id or a reused id (new seq) is a miss");
    }

    #[test]
    fn facts_are_kept_by_count_and_describe_only_the_heads_they_were_built_from() {
        let cache: FactsCache<u32> = FactsCache::new(10);
        let entry = |v| FactsEntry {
            reads: vec![HeadQuery::all(signalbox_domain::model::Kind::Evidence)],
            heads: vec![vec![head("ev_1", 1, 1)]],
            value: v,
        };
        cache.insert("a".into(), entry(1));
        let a = cache.get("a").expect("kept");
        assert!(a.still_describes(&[vec![head("ev_1", 1, 1)]]));
        assert!(!a.still_describes(&[vec![head("ev_1", 1, 2)]]), "a new version");
        assert!(!a.still_describes(&[vec![head("ev_1", 1, 1), head("ev_2", 2, 1)]]), "a new record");
        assert!(!a.still_describes(&[vec![]]), "a deleted record");
        for i in 0..100 {
            cache.insert(format!("k{i}"), entry(i));
            assert!(cache.get("a").is_some(), "a key in use survives");
            assert!(cache.len() <= 10);
        }
        assert!(cache.get("k1").is_none());
    }

    #[test]
    fn the_budget_bounds_what_is_kept_and_recently_used_entries_survive() {
        let budget = 100 * (100 + ENTRY_OVERHEAD + 4);
        let cache = VersionCache::new(budget);
        cache.insert(&head("ev_0", 0, 1), Arc::new(Blob(100)));
        for i in 1..1000 {
            cache.insert(&head(&format!("ev_{i}"), i, 1), Arc::new(Blob(100)));
            // ev_0 is used all the time, so it is promoted every generation and stays.
            assert!(cache.lookup(&[head("ev_0", 0, 1)])[0].is_some(), "after {i} inserts");
            assert!(cache.len() <= 101, "{} entries", cache.len());
        }
        assert!(cache.lookup(&[head("ev_1", 1, 1)])[0].is_none(), "an entry unused for two generations is gone");
        // An entry bigger than a generation is not kept at all.
        cache.insert(&head("ev_big", 5000, 1), Arc::new(Blob(budget)));
        assert!(cache.lookup(&[head("ev_big", 5000, 1)])[0].is_none());
    }
}
