//! Feature-flag use cases (SPEC C8, issue 7): flag sets per environment (optionally per service)
//! in flagd format on top of `signalbox-flags`, their revisions and audited changes with a
//! per-flag diff, SDK keys for the OFREP endpoints, and the in-memory compiled snapshots the
//! OFREP server evaluates against.
//!
//! Storage, all in the generic record store:
//! - the current set: `Kind::FlagSet`, key `<environment id>` or `<environment id>/<service id>`,
//!   parent the environment, state `current`; its record version is the set's revision;
//! - every revision: `Kind::FlagSet`, key `<set id>@<revision>`, parent the set, state `revision`,
//!   immutable, holding the whole document and the diff against the previous revision;
//! - SDK keys: `Kind::SdkKey`, key the SHA-256 of the secret (as API tokens), parent the environment.
//! - evaluation counters: `Kind::FlagSet`, key `<set key>#stats`, parent the environment, state
//!   `stats` (see `flag_lifecycle`); scheduled changes are `Kind::FlagSchedule`.
//!
//! Flag information beyond flagd (owner, description, type, expected lifetime) lives in each
//! flag's flagd `metadata` (`owner`, `description`, `type`, `expectedLifetimeDays`), so an
//! export is still a plain flagd file and the import/export round trip stays exact.
//!
//! Snapshots: [`FlagRuntime`] holds one [`CompiledFlagSet`] per set behind an `Arc`, and the
//! whole map is swapped at once. Changes made through this process swap it right after the
//! commit; other replicas notice within [`POLL_INTERVAL`]: a poll reads the audit chain's head,
//! then the chain's `flag_set` entries after the head it read last time. The chain, unlike a
//! record's `seq`, becomes visible in sequence order on both backends (PostgreSQL appends under
//! the `audit_head` row lock, held until the commit is visible; SQLite has one writer), so an
//! entry below a head already read can never appear later and the probe misses no commit. A full
//! comparison every [`FULL_RELOAD_INTERVAL`] stays as a second line of defence.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use signalbox_domain::access::{Permission, ResourceScopes, Scope};
use signalbox_domain::model::{Environment, Kind, Service};
use signalbox_domain::Invalid;
use signalbox_flags::{CompiledFlagSet, FlagSet};
use signalbox_store::{AuditQuery, ListQuery, Store};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};
use utoipa::ToSchema;

use crate::access::hash_token;
use crate::error::{AppError, AppResult};
use crate::mutation::{decode, Mutation, Placement};
use crate::{new_id, App, RequestContext, Versioned};

/// How often a server polls the store for flag changes made by other replicas.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How often the snapshot is compared with the store in full, whatever the cheap probe says.
pub const FULL_RELOAD_INTERVAL: Duration = Duration::from_secs(5);
/// How long an authenticated SDK key is trusted without re-reading it (revocation by another replica).
pub const SDK_KEY_CACHE_TTL: Duration = Duration::from_secs(1);
/// SDK key secrets start with this (user API tokens start with `sbx_`).
pub const SDK_KEY_PREFIX: &str = "sbf_";
/// Requests per second an SDK key may make when its creator did not say.
pub const DEFAULT_SDK_RATE_LIMIT: u32 = 1000;

/// Flag types with the lifetime after which a flag of that type is expected to be removed
/// (days; `None` = permanent). `metadata.expectedLifetimeDays` overrides it per flag.
pub const FLAG_TYPES: [(&str, Option<i64>); 4] = [("release", Some(40)), ("experiment", Some(40)), ("ops", Some(7)), ("permission", None)];

/// The current flag set of an environment (or of one service in an environment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagSetRecord {
    pub id: String,
    pub environment_id: String,
    pub environment: String,
    #[serde(default)]
    pub service_id: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
    pub revision: i64,
    /// The flagd document as it is exported.
    pub document: Value,
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// One stored revision of a flag set: the whole document and what changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FlagSetRevision {
    pub id: String,
    pub set_id: String,
    pub revision: i64,
    #[schema(value_type = Object)]
    pub document: Value,
    pub changes: Vec<FlagChange>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub reason: Option<String>,
    /// Set when this revision restored an earlier one.
    #[serde(default)]
    pub reverted_to: Option<i64>,
}

/// What happened to one flag between two revisions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FlagChange {
    pub flag: String,
    /// `added`, `removed` or `changed`.
    pub change: String,
    /// The top-level fields of the flag that differ, with their values before and after.
    pub fields: Vec<FieldChange>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FieldChange {
    /// `state`, `variants`, `defaultVariant`, `targeting`, `metadata`, … or `$evaluators`/`metadata` of the set (flag `*`).
    pub field: String,
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
}

/// A flag's description for people: flagd fields and the lifecycle metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FlagInfo {
    pub key: String,
    /// `ENABLED` or `DISABLED`.
    pub state: String,
    /// `boolean`, `string`, `number` or `object`.
    pub variant_type: String,
    pub variants: Vec<String>,
    pub default_variant: Option<String>,
    pub has_targeting: bool,
    pub owner: Option<String>,
    pub description: Option<String>,
    /// `release`, `experiment`, `ops` or `permission`.
    pub flag_type: Option<String>,
    pub expected_lifetime_days: Option<i64>,
}

/// A flag set as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FlagSetView {
    pub id: String,
    pub environment: String,
    pub environment_id: String,
    pub service: Option<String>,
    pub service_id: Option<String>,
    /// Increases with every change; also the `ETag`.
    pub revision: i64,
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
    pub reason: Option<String>,
    pub flags: Vec<FlagInfo>,
    /// The flagd document.
    #[schema(value_type = Object)]
    pub document: Value,
    /// On a write: what this write changed (empty when nothing changed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<FlagChange>,
}

/// An SDK key: read-only access to one environment's flags over OFREP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SdkKey {
    pub id: String,
    pub name: String,
    pub environment_id: String,
    pub environment: String,
    #[serde(default)]
    pub service_id: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
    /// The first characters of the secret, to recognise it.
    pub prefix: String,
    pub rate_limit_per_second: u32,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IssuedSdkKey {
    pub key: SdkKey,
    /// Shown once; only its hash is stored.
    pub secret: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSdkKey {
    /// Environment id or name.
    pub environment: String,
    /// Service id or name: the key then reads that service's flag set (falling back to the environment's).
    #[serde(default)]
    pub service: Option<String>,
    pub name: String,
    /// Requests per second (default 1000); over it the OFREP endpoints answer 429 with Retry-After.
    #[serde(default)]
    pub rate_limit_per_second: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevertFlagSet {
    /// The revision whose document becomes current again (as a new revision).
    pub revision: i64,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Which flag set a request is about.
#[derive(Debug, Clone)]
pub struct FlagSetRef<'a> {
    /// Environment id or name.
    pub environment: &'a str,
    /// Service id or name, for a per-service set.
    pub service: Option<&'a str>,
}

/// One compiled flag set, shared by every evaluation until it is replaced.
pub struct FlagSnapshot {
    pub set_id: String,
    /// The store key of the set: `<environment id>` or `<environment id>/<service id>`.
    pub set_key: String,
    pub environment_id: String,
    pub service_id: Option<String>,
    pub revision: i64,
    /// What the bulk `ETag` is derived from: set id and revision.
    pub etag_version: String,
    pub updated_at: DateTime<Utc>,
    pub compiled: CompiledFlagSet,
    /// Evaluation counters, one per flag in `compiled.keys()` order (see `flag_lifecycle`).
    pub(crate) counters: crate::flag_lifecycle::FlagCounters,
}

impl FlagSnapshot {
    /// Evaluates one flag and counts the result (a few relaxed atomic operations; unknown flags
    /// are not counted, so hostile keys cost no memory).
    pub fn evaluate(&self, flag_key: &str, context: &Value, now: i64) -> signalbox_flags::Resolution<'_> {
        let resolution = self.compiled.evaluate(flag_key, context, now);
        if let Ok(index) = self.compiled.keys().binary_search_by(|k| k.as_str().cmp(flag_key)) {
            self.counters.record(index, resolution.variant, now);
        }
        resolution
    }

    /// Evaluates every flag in bulk order with one prepared context (the context's properties are
    /// looked up once for the whole set, no flag key is looked up), counts each result and hands
    /// it to `each`. Results are exactly those of [`FlagSnapshot::evaluate`] flag by flag.
    pub fn evaluate_each(&self, context: &Value, now: i64, mut each: impl FnMut(&str, &signalbox_flags::Resolution<'_>)) {
        let prepared = self.compiled.prepare(context);
        // `evaluate_all` walks the flags in `compiled.keys()` order, the counters' order.
        let mut index = 0;
        prepared.evaluate_all(now, |key, resolution| {
            self.counters.record(index, resolution.variant, now);
            index += 1;
            each(key, &resolution);
        });
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Default)]
struct PollState {
    /// The audit chain's head `seq` when the store was last probed; `None` before the first load.
    seen_seq: Option<i64>,
    last_poll: Option<Instant>,
    last_full: Option<Instant>,
}

/// In-memory flag state of one process: compiled snapshots, the SDK key cache, rate limits,
/// the lifecycle state (clock, counters waiting to be flushed, the change feed for SSE).
#[derive(Default)]
pub struct FlagRuntime {
    snapshots: RwLock<Arc<HashMap<String, Arc<FlagSnapshot>>>>,
    poll: Mutex<PollState>,
    sdk_keys: Mutex<HashMap<String, (Arc<SdkKey>, Instant)>>,
    buckets: Mutex<HashMap<String, Bucket>>,
    pub(crate) lifecycle: crate::flag_lifecycle::LifecycleState,
}

impl FlagRuntime {
    pub(crate) fn current(&self) -> Arc<HashMap<String, Arc<FlagSnapshot>>> {
        self.snapshots.read().map(|map| map.clone()).unwrap_or_default()
    }

    /// Replaces the snapshots; snapshots that are replaced keep their unflushed counters until
    /// the next flush, and every set whose revision changed is announced on the change feed.
    fn swap(&self, next: HashMap<String, Arc<FlagSnapshot>>) {
        // What is replaced is read under the same lock, so two concurrent refreshes retire (and
        // announce) exactly what each of them replaced.
        let previous = match self.snapshots.write() {
            Ok(mut map) => std::mem::replace(&mut *map, Arc::new(next.clone())),
            Err(_) => return,
        };
        self.lifecycle.after_swap(&previous, &next);
    }

    /// Takes one token for `key_id`; `Err(seconds)` says when to retry.
    pub fn take_token(&self, key_id: &str, per_second: u32) -> Result<(), u64> {
        let rate = f64::from(per_second.max(1));
        let Ok(mut buckets) = self.buckets.lock() else { return Ok(()) };
        let now = Instant::now();
        // Look up before inserting, so the common case (a known key) copies no string.
        if !buckets.contains_key(key_id) {
            buckets.insert(key_id.to_string(), Bucket { tokens: rate, at: now });
        }
        let Some(bucket) = buckets.get_mut(key_id) else { return Ok(()) };
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(rate);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

/// A handle a background task polls with; it stops when the application is gone.
pub struct FlagPoller {
    store: Weak<dyn Store>,
    runtime: Weak<FlagRuntime>,
}

impl FlagPoller {
    /// Writes the evaluation counters gathered since the last flush (see
    /// [`App::flush_flag_stats`]). `false` once the application has been dropped.
    pub async fn flush(&self) -> bool {
        let (Some(store), Some(runtime)) = (self.store.upgrade(), self.runtime.upgrade()) else { return false };
        let app = App { flags: runtime, ..App::new(store) };
        if let Err(e) = app.flush_flag_stats().await {
            tracing::warn!(error = %e, "flag evaluation counters could not be written; they are kept for the next flush");
        }
        true
    }

    /// One poll. `false` once the application has been dropped (the task should end).
    pub async fn tick(&self) -> bool {
        let (Some(store), Some(runtime)) = (self.store.upgrade(), self.runtime.upgrade()) else { return false };
        if let Err(e) = refresh(store.as_ref(), &runtime, false).await {
            tracing::warn!(error = %e, "flag snapshot refresh failed; serving the previous snapshot");
        }
        true
    }
}

pub(crate) fn set_key(environment_id: &str, service_id: Option<&str>) -> String {
    match service_id {
        Some(service) => format!("{environment_id}/{service}"),
        None => environment_id.to_string(),
    }
}

/// Brings the snapshots up to date with the store. `force` reloads whatever the probe says.
pub(crate) async fn refresh(store: &dyn Store, runtime: &FlagRuntime, force: bool) -> AppResult<bool> {
    let (seen, full_due) = {
        let poll = runtime.poll.lock().map_err(|_| AppError::Internal("flag poll state poisoned".into()))?;
        (poll.seen_seq, poll.last_full.is_none_or(|at| at.elapsed() >= FULL_RELOAD_INTERVAL))
    };
    // The head first: every entry up to it is visible now, so the next probe may start there.
    let head = store.audit_head().await?.map_or(0, |(seq, _)| seq);
    let changed = match seen {
        Some(seen) if seen < head => {
            // Bounded on both sides, so the plan walks the primary key over the few entries
            // since the last poll, whatever the filter's selectivity.
            let probe = AuditQuery {
                after_seq: Some(seen),
                up_to_seq: Some(head),
                limit: 1,
                subject_kind: Some(Kind::FlagSet.as_str().to_string()),
                ..AuditQuery::default()
            };
            !store.audit_page(&probe).await?.is_empty()
        }
        _ => false,
    };
    let newest = Some(head.max(seen.unwrap_or(0)));
    let must_load = force || seen.is_none() || changed || full_due;
    if must_load {
        let mut query = ListQuery::all(Kind::FlagSet);
        query.state = Some("current".into());
        let records = store.list(&query).await?.items;
        let previous = runtime.current();
        let mut next = HashMap::with_capacity(records.len());
        for record in records {
            let Some(key) = record.key.clone() else { continue };
            if let Some(existing) = previous.get(&key).filter(|s| s.set_id == record.id && s.revision == record.version) {
                next.insert(key, existing.clone());
                continue;
            }
            let set: FlagSetRecord = decode(&record)?.value;
            match FlagSet::from_json(&set.document).and_then(|parsed| CompiledFlagSet::compile(&parsed).map(|c| (parsed, c))) {
                Ok((parsed, compiled)) => {
                    let snapshot = FlagSnapshot {
                        etag_version: format!("{}:{}", set.id, record.version),
                        set_id: set.id,
                        set_key: key.clone(),
                        environment_id: set.environment_id,
                        service_id: set.service_id,
                        revision: record.version,
                        updated_at: set.updated_at,
                        counters: crate::flag_lifecycle::FlagCounters::for_set(&parsed),
                        compiled,
                    };
                    next.insert(key, Arc::new(snapshot));
                }
                Err(e) => {
                    tracing::error!(set = %record.id, error = ?e, "a stored flag set does not compile; keeping the previous snapshot");
                    if let Some(existing) = previous.get(&key) {
                        next.insert(key, existing.clone());
                    }
                }
            }
        }
        runtime.swap(next);
    }
    if let Ok(mut poll) = runtime.poll.lock() {
        poll.seen_seq = newest;
        poll.last_poll = Some(Instant::now());
        if must_load {
            poll.last_full = Some(Instant::now());
        }
    }
    Ok(must_load)
}

/// Flag information read from a flag's flagd metadata.
pub(crate) fn flag_infos(set: &FlagSet) -> Vec<FlagInfo> {
    set.flags
        .iter()
        .map(|(key, flag)| {
            let meta = flag.metadata.clone().unwrap_or_default();
            let text = |name: &str| meta.get(name).and_then(Value::as_str).map(str::to_string);
            let flag_type = text("type");
            let default_lifetime = flag_type.as_deref().and_then(|t| FLAG_TYPES.iter().find(|(n, _)| *n == t)).and_then(|(_, days)| *days);
            FlagInfo {
                key: key.clone(),
                state: flag.state.as_str().to_string(),
                variant_type: flag.variant_type.as_str().to_string(),
                variants: flag.variants.keys().cloned().collect(),
                default_variant: flag.default_variant.name().map(str::to_string),
                has_targeting: flag.effective_targeting().is_some(),
                owner: text("owner"),
                description: text("description"),
                flag_type,
                expected_lifetime_days: meta.get("expectedLifetimeDays").and_then(Value::as_i64).or(default_lifetime),
            }
        })
        .collect()
}

/// Parses, validates and compiles a document; returns the parsed set and the exact export.
pub fn validate_document(document: &Value) -> AppResult<(FlagSet, Value)> {
    // The lifecycle metadata is checked on the raw document so that its errors are reported
    // together with the flagd ones.
    let mut errors = Invalid::default();
    for (key, flag) in flags_of(document) {
        let Some(meta) = flag.get("metadata").and_then(Value::as_object) else { continue };
        if let Some(t) = meta.get("type") {
            if !t.as_str().is_some_and(|t| FLAG_TYPES.iter().any(|(n, _)| *n == t)) {
                errors.push(format!("flags.{key}.metadata.type"), "must be one of release, experiment, ops or permission");
            }
        }
        if let Some(days) = meta.get("expectedLifetimeDays") {
            if days.as_i64().is_none_or(|d| d <= 0) {
                errors.push(format!("flags.{key}.metadata.expectedLifetimeDays"), "must be a whole number of days, at least 1");
            }
        }
        for field in ["owner", "description"] {
            if meta.get(field).is_some_and(|v| !v.is_string()) {
                errors.push(format!("flags.{key}.metadata.{field}"), "must be a string");
            }
        }
    }
    let set = match FlagSet::from_json(document).and_then(|set| CompiledFlagSet::compile(&set).map(|_| set)) {
        Ok(set) => set,
        Err(flagd) => {
            let mut all = flagd.0;
            all.extend(errors.0);
            return Err(AppError::Invalid(all));
        }
    };
    errors.into_result()?;
    let exported = set.to_json();
    Ok((set, exported))
}

pub(crate) fn flags_of(document: &Value) -> Map<String, Value> {
    match document.get("flags") {
        Some(Value::Object(map)) => map.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| {
                let key = item.get("key")?.as_str()?.to_string();
                let mut flag = item.as_object()?.clone();
                flag.remove("key");
                Some((key, Value::Object(flag)))
            })
            .collect(),
        _ => Map::new(),
    }
}

fn field_changes(before: &Map<String, Value>, after: &Map<String, Value>) -> Vec<FieldChange> {
    let fields: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    fields
        .into_iter()
        .filter(|f| before.get(*f) != after.get(*f))
        .map(|f| FieldChange { field: f.clone(), before: before.get(f).cloned(), after: after.get(f).cloned() })
        .collect()
}

/// The per-flag difference between two documents (flag `*` holds set-level fields).
pub fn diff_documents(before: Option<&Value>, after: &Value) -> Vec<FlagChange> {
    let empty = Value::Object(Map::new());
    let before = before.unwrap_or(&empty);
    let (old, new) = (flags_of(before), flags_of(after));
    let mut out = Vec::new();
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for key in keys {
        let as_map = |v: Option<&Value>| v.and_then(Value::as_object).cloned().unwrap_or_default();
        let (a, b) = (as_map(old.get(key)), as_map(new.get(key)));
        let change = match (old.contains_key(key), new.contains_key(key)) {
            (false, true) => "added",
            (true, false) => "removed",
            _ if a == b => continue,
            _ => "changed",
        };
        out.push(FlagChange { flag: key.clone(), change: change.into(), fields: field_changes(&a, &b) });
    }
    let top = |doc: &Value| {
        let mut map = doc.as_object().cloned().unwrap_or_default();
        map.remove("flags");
        map
    };
    let set_fields = field_changes(&top(before), &top(after));
    if !set_fields.is_empty() {
        out.push(FlagChange { flag: "*".into(), change: "changed".into(), fields: set_fields });
    }
    out
}

fn view(record: &FlagSetRecord, changes: Vec<FlagChange>) -> FlagSetView {
    let flags = FlagSet::from_json(&record.document).map(|set| flag_infos(&set)).unwrap_or_default();
    FlagSetView {
        id: record.id.clone(),
        environment: record.environment.clone(),
        environment_id: record.environment_id.clone(),
        service: record.service.clone(),
        service_id: record.service_id.clone(),
        revision: record.revision,
        updated_by: record.updated_by.clone(),
        updated_at: record.updated_at,
        reason: record.reason.clone(),
        flags,
        document: record.document.clone(),
        changes,
    }
}

pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(patch) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(map) = target {
                for (key, value) in patch {
                    if value.is_null() {
                        map.remove(key);
                    } else {
                        merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// What [`App::write_flag_set_in`] did: `changed` is `(created, view)` when it wrote.
pub(crate) struct FlagWrite {
    pub(crate) changed: Option<(bool, Versioned<FlagSetView>)>,
    pub(crate) out: Versioned<FlagSetView>,
}

/// The environment, service and permission scopes of a set reference.
pub(crate) struct Located {
    pub(crate) environment: Environment,
    pub(crate) service: Option<Service>,
    pub(crate) scopes: ResourceScopes,
    pub(crate) key: String,
}

impl App {
    pub(crate) async fn locate_flag_set(&self, set: &FlagSetRef<'_>) -> AppResult<Located> {
        let environment: Environment = match self.store.get(Kind::Environment, set.environment).await? {
            Some(r) => decode(&r)?.value,
            None => return Err(AppError::not_found(Kind::Environment, set.environment)),
        };
        let service: Option<Service> = match set.service {
            Some(s) => match self.store.get(Kind::Service, s).await? {
                Some(r) => Some(decode(&r)?.value),
                None => return Err(AppError::invalid("service", format!("no service with id or name {s:?}"))),
            },
            None => None,
        };
        let mut scopes = match &service {
            Some(s) => crate::catalog::service_scopes(s),
            None => ResourceScopes::organization(),
        };
        scopes = scopes.with(Scope::Environment(environment.id.clone()));
        let key = set_key(&environment.id, service.as_ref().map(|s| s.id.as_str()));
        Ok(Located { environment, service, scopes, key })
    }

    pub async fn list_flag_sets(&self, ctx: &RequestContext) -> AppResult<Vec<FlagSetView>> {
        ctx.actor.require(Permission::Read, &ResourceScopes::organization())?;
        let mut query = ListQuery::all(Kind::FlagSet);
        query.state = Some("current".into());
        let records = self.store.list(&query).await?.items;
        records.iter().map(|r| decode::<FlagSetRecord>(r).map(|v| view(&v.value, vec![]))).collect()
    }

    pub async fn get_flag_set(&self, ctx: &RequestContext, set: &FlagSetRef<'_>) -> AppResult<Versioned<FlagSetView>> {
        ctx.actor.require(Permission::Read, &ResourceScopes::organization())?;
        let located = self.locate_flag_set(set).await?;
        let record = self.store.get(Kind::FlagSet, &located.key).await?.ok_or_else(|| AppError::not_found(Kind::FlagSet, &located.key))?;
        let current: Versioned<FlagSetRecord> = decode(&record)?;
        Ok(Versioned { version: current.version, value: view(&current.value, vec![]) })
    }

    /// The flagd document exactly as it is served (import then export is the identity).
    pub async fn export_flag_set(&self, ctx: &RequestContext, set: &FlagSetRef<'_>) -> AppResult<Versioned<Value>> {
        let current = self.get_flag_set(ctx, set).await?;
        Ok(Versioned { version: current.version, value: current.value.document })
    }

    /// Creates or replaces a whole flag set (import). `if_match` guards against lost updates.
    pub async fn put_flag_set(
        &self,
        ctx: &RequestContext,
        set: &FlagSetRef<'_>,
        document: Value,
        if_match: Option<i64>,
    ) -> AppResult<(bool, Versioned<FlagSetView>)> {
        let located = self.locate_flag_set(set).await?;
        ctx.actor.require(Permission::ManageFlags, &located.scopes)?;
        let (_, exported) = validate_document(&document)?;
        self.write_flag_set(ctx, &located, if_match, |_| Ok(exported), None).await
    }

    /// Changes one flag with a JSON merge patch (RFC 7386) on its flagd definition; a flag that
    /// does not exist yet is created from the patch.
    pub async fn patch_flag(
        &self,
        ctx: &RequestContext,
        set: &FlagSetRef<'_>,
        flag_key: &str,
        patch: Value,
        if_match: Option<i64>,
    ) -> AppResult<Versioned<FlagSetView>> {
        if !patch.is_object() {
            return Err(AppError::invalid("body", "must be a JSON object: a merge patch of the flag, e.g. {\"state\": \"DISABLED\"}"));
        }
        let located = self.locate_flag_set(set).await?;
        ctx.actor.require(Permission::ManageFlags, &located.scopes)?;
        let key = flag_key.to_string();
        let apply = move |current: Option<&Value>| {
            let mut document = current.cloned().unwrap_or_else(|| serde_json::json!({"flags": {}}));
            edit_flag(&mut document, &key, |flag| {
                let mut flag = flag.unwrap_or_else(|| Value::Object(Map::new()));
                merge_patch(&mut flag, &patch);
                Some(flag)
            });
            Ok(validate_document(&document)?.1)
        };
        Ok(self.write_flag_set(ctx, &located, if_match, apply, None).await?.1)
    }

    /// The kill switch of the flags linked to a rollout that is rolling back (issue 6): every
    /// linked flag of the environment's set is disabled in one audited write (one flag-set
    /// version, one change-stream event), as the system, with `reason`. Returns one line per
    /// flag saying what happened; a missing flag or set is reported, not an error, so the
    /// rollback itself never waits on flags.
    pub(crate) async fn kill_linked_flags(
        &self,
        environment_id: &str,
        service_id: Option<&str>,
        flags: &[String],
        reason: &str,
    ) -> Vec<String> {
        let mut ctx = RequestContext::system();
        ctx.reason = Some(reason.to_string());
        let set = FlagSetRef { environment: environment_id, service: service_id };
        let present = match self.get_flag_set(&ctx, &set).await {
            Ok(view) => flags_of(&view.value.document),
            Err(_) => Map::new(),
        };
        let mut notes = Vec::new();
        let mut to_disable = Vec::new();
        for flag in flags {
            match present.get(flag) {
                None => notes.push(format!("kill switch: flag {flag} is not in the flag set of this environment; nothing disabled")),
                Some(def) if def.get("state").and_then(Value::as_str) == Some("DISABLED") => {
                    notes.push(format!("kill switch: flag {flag} was already disabled"))
                }
                Some(_) => to_disable.push(flag.clone()),
            }
        }
        if to_disable.is_empty() {
            return notes;
        }
        let located = match self.locate_flag_set(&set).await {
            Ok(located) => located,
            Err(e) => {
                notes.push(format!("kill switch: flags {} could not be disabled: {e}", to_disable.join(", ")));
                return notes;
            }
        };
        let keys = to_disable.clone();
        let apply = move |current: Option<&Value>| {
            let mut document = current.cloned().unwrap_or_else(|| serde_json::json!({"flags": {}}));
            for key in &keys {
                edit_flag(&mut document, key, |flag| {
                    let mut flag = flag?;
                    merge_patch(&mut flag, &serde_json::json!({"state": "DISABLED"}));
                    Some(flag)
                });
            }
            Ok(validate_document(&document)?.1)
        };
        match self.write_flag_set(&ctx, &located, None, apply, None).await {
            Ok(_) => notes.extend(to_disable.iter().map(|flag| format!("kill switch: flag {flag} disabled"))),
            Err(e) => notes.push(format!("kill switch: flags {} could not be disabled: {e}", to_disable.join(", "))),
        }
        notes
    }

    pub async fn delete_flag(
        &self,
        ctx: &RequestContext,
        set: &FlagSetRef<'_>,
        flag_key: &str,
        if_match: Option<i64>,
    ) -> AppResult<Versioned<FlagSetView>> {
        let located = self.locate_flag_set(set).await?;
        ctx.actor.require(Permission::ManageFlags, &located.scopes)?;
        let key = flag_key.to_string();
        let apply = move |current: Option<&Value>| {
            let Some(current) = current else { return Err(AppError::not_found(Kind::FlagSet, "(no flag set yet)")) };
            if !flags_of(current).contains_key(&key) {
                return Err(AppError::NotFound { kind: Kind::FlagSet, id: format!("flag {key:?}") });
            }
            let mut document = current.clone();
            edit_flag(&mut document, &key, |_| None);
            Ok(validate_document(&document)?.1)
        };
        Ok(self.write_flag_set(ctx, &located, if_match, apply, None).await?.1)
    }

    pub async fn list_flag_revisions(&self, ctx: &RequestContext, set: &FlagSetRef<'_>) -> AppResult<Vec<FlagSetRevision>> {
        ctx.actor.require(Permission::Read, &ResourceScopes::organization())?;
        let located = self.locate_flag_set(set).await?;
        let record = self.store.get(Kind::FlagSet, &located.key).await?.ok_or_else(|| AppError::not_found(Kind::FlagSet, &located.key))?;
        let mut query = ListQuery::all(Kind::FlagSet).with_parent(&record.id);
        query.state = Some("revision".into());
        let mut out: Vec<FlagSetRevision> =
            self.store.list(&query).await?.items.iter().map(|r| decode(r).map(|v| v.value)).collect::<AppResult<_>>()?;
        out.sort_by_key(|r| std::cmp::Reverse(r.revision));
        Ok(out)
    }

    /// Makes an earlier revision's document current again, as a new revision.
    pub async fn revert_flag_set(
        &self,
        ctx: &RequestContext,
        set: &FlagSetRef<'_>,
        req: RevertFlagSet,
        if_match: Option<i64>,
    ) -> AppResult<Versioned<FlagSetView>> {
        let located = self.locate_flag_set(set).await?;
        ctx.actor.require(Permission::ManageFlags, &located.scopes)?;
        let current = self.store.get(Kind::FlagSet, &located.key).await?.ok_or_else(|| AppError::not_found(Kind::FlagSet, &located.key))?;
        let revision_key = format!("{}@{}", current.id, req.revision);
        let Some(old) = self.store.get(Kind::FlagSet, &revision_key).await? else {
            return Err(AppError::invalid(
                "revision",
                format!("flag set {} has no revision {}; it is at revision {}", current.id, req.revision, current.version),
            ));
        };
        let old: FlagSetRevision = decode(&old)?.value;
        let mut ctx = ctx.clone();
        if req.reason.is_some() {
            ctx.reason = req.reason;
        }
        let document = old.document;
        Ok(self.write_flag_set(&ctx, &located, if_match, move |_| Ok(document), Some(req.revision)).await?.1)
    }

    async fn write_flag_set(
        &self,
        ctx: &RequestContext,
        located: &Located,
        if_match: Option<i64>,
        next_document: impl FnOnce(Option<&Value>) -> AppResult<Value>,
        reverted_to: Option<i64>,
    ) -> AppResult<(bool, Versioned<FlagSetView>)> {
        let mut m = Mutation::begin(self, ctx).await?;
        let written =
            App::write_flag_set_in(&mut m, &ctx.actor.username, ctx.reason.clone(), located, if_match, next_document, reverted_to).await?;
        let Some((created, out)) = written.changed else { return Ok((false, written.out)) };
        m.commit(if created { 201 } else { 200 }, &out.value).await?;
        // This process serves the change at once; other replicas pick it up by polling.
        if let Err(e) = refresh(self.store.as_ref(), &self.flags, true).await {
            tracing::warn!(error = %e, "flag snapshot refresh after a change failed; the poller will retry");
        }
        Ok((created, out))
    }

    /// The write itself, inside a caller's transaction (a request's, or a scheduled change's job):
    /// reads the current set, computes the next document and its diff, and writes the set and a
    /// revision record (`author` and `reason` go on the revision). Nothing is written when the
    /// document does not change (`changed` is then `None`).
    pub(crate) async fn write_flag_set_in(
        m: &mut Mutation<'_>,
        author: &str,
        reason: Option<String>,
        located: &Located,
        if_match: Option<i64>,
        next_document: impl FnOnce(Option<&Value>) -> AppResult<Value>,
        reverted_to: Option<i64>,
    ) -> AppResult<FlagWrite> {
        let current: Option<Versioned<FlagSetRecord>> = m.find(Kind::FlagSet, &located.key).await?;
        if let Some(current) = &current {
            crate::catalog::check_if_match(Kind::FlagSet, &current.value.id, if_match, current.version)?;
        } else if if_match.is_some() {
            return Err(AppError::PreconditionFailed {
                kind: Kind::FlagSet,
                id: located.key.clone(),
                expected: if_match.unwrap_or(0),
                current: None,
            });
        }
        let document = next_document(current.as_ref().map(|c| &c.value.document))?;
        let changes = diff_documents(current.as_ref().map(|c| &c.value.document), &document);
        if let Some(current) = &current {
            if changes.is_empty() {
                return Ok(FlagWrite { changed: None, out: Versioned { version: current.version, value: view(&current.value, vec![]) } });
            }
        }
        let place =
            Placement { key: Some(located.key.clone()), parent: Some(located.environment.id.clone()), state: Some("current".into()) };
        let (created, record) = match &current {
            Some(current) => {
                let next = FlagSetRecord {
                    revision: current.version + 1,
                    document: document.clone(),
                    updated_by: author.to_string(),
                    updated_at: m.now,
                    reason: reason.clone(),
                    ..current.value.clone()
                };
                let version = m.update("flag_set.update", Kind::FlagSet, &next.id.clone(), place, current, &next).await?;
                (false, Versioned { version, value: next })
            }
            None => {
                let next = FlagSetRecord {
                    id: new_id(Kind::FlagSet),
                    environment_id: located.environment.id.clone(),
                    environment: located.environment.name.clone(),
                    service_id: located.service.as_ref().map(|s| s.id.clone()),
                    service: located.service.as_ref().map(|s| s.name.clone()),
                    revision: 1,
                    document: document.clone(),
                    updated_by: author.to_string(),
                    updated_at: m.now,
                    reason: reason.clone(),
                };
                let version = m.insert("flag_set.create", Kind::FlagSet, &next.id.clone(), place, &next).await?;
                (true, Versioned { version, value: next })
            }
        };
        let revision = FlagSetRevision {
            id: new_id(Kind::FlagSet),
            set_id: record.value.id.clone(),
            revision: record.version,
            document,
            changes: changes.clone(),
            created_by: author.to_string(),
            created_at: m.now,
            reason: reason.clone(),
            reverted_to,
        };
        m.insert(
            "flag_set.revision",
            Kind::FlagSet,
            &revision.id.clone(),
            Placement {
                key: Some(format!("{}@{}", record.value.id, record.version)),
                parent: Some(record.value.id.clone()),
                state: Some("revision".into()),
            },
            &revision,
        )
        .await?;
        let out = Versioned { version: record.version, value: view(&record.value, changes) };
        Ok(FlagWrite { changed: Some((created, out.clone())), out })
    }

    // ---- SDK keys ------------------------------------------------------------------------

    pub async fn create_sdk_key(&self, ctx: &RequestContext, req: CreateSdkKey) -> AppResult<IssuedSdkKey> {
        let name = signalbox_domain::validate::require_text("name", &req.name, 100)?;
        if req.rate_limit_per_second == Some(0) {
            return Err(AppError::invalid("rate_limit_per_second", "must be at least 1"));
        }
        let located = self.locate_flag_set(&FlagSetRef { environment: &req.environment, service: req.service.as_deref() }).await?;
        ctx.actor.require(Permission::ManageCatalog, &located.scopes)?;
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| AppError::Internal(format!("no randomness available: {e}")))?;
        let secret = format!("{SDK_KEY_PREFIX}{}", hex::encode(bytes));
        let mut m = Mutation::begin(self, ctx).await?;
        let key = SdkKey {
            id: new_id(Kind::SdkKey),
            name,
            environment_id: located.environment.id.clone(),
            environment: located.environment.name.clone(),
            service_id: located.service.as_ref().map(|s| s.id.clone()),
            service: located.service.as_ref().map(|s| s.name.clone()),
            prefix: secret.chars().take(12).collect(),
            rate_limit_per_second: req.rate_limit_per_second.unwrap_or(DEFAULT_SDK_RATE_LIMIT),
            created_by: ctx.actor.username.clone(),
            created_at: m.now,
            revoked_at: None,
        };
        m.insert(
            "sdk_key.create",
            Kind::SdkKey,
            &key.id.clone(),
            Placement { key: Some(hash_token(&secret)), parent: Some(located.environment.id.clone()), state: Some("active".into()) },
            &key,
        )
        .await?;
        m.commit(201, &key).await?;
        Ok(IssuedSdkKey { key, secret })
    }

    pub async fn list_sdk_keys(&self, ctx: &RequestContext, environment: Option<&str>) -> AppResult<Vec<SdkKey>> {
        ctx.actor.require(Permission::Read, &ResourceScopes::organization())?;
        let mut query = ListQuery::all(Kind::SdkKey);
        if let Some(env) = environment {
            let located = self.locate_flag_set(&FlagSetRef { environment: env, service: None }).await?;
            query = query.with_parent(located.environment.id);
        }
        self.store.list(&query).await?.items.iter().map(|r| decode(r).map(|v| v.value)).collect()
    }

    pub async fn revoke_sdk_key(&self, ctx: &RequestContext, id: &str) -> AppResult<Versioned<SdkKey>> {
        let record = self.store.get(Kind::SdkKey, id).await?.filter(|r| r.id == id).ok_or_else(|| AppError::not_found(Kind::SdkKey, id))?;
        let current: Versioned<SdkKey> = decode(&record)?;
        let scopes = ResourceScopes::organization().with(Scope::Environment(current.value.environment_id.clone()));
        ctx.actor.require(Permission::ManageCatalog, &scopes)?;
        let mut m = Mutation::begin(self, ctx).await?;
        let mut next = current.value.clone();
        if next.revoked_at.is_none() {
            next.revoked_at = Some(m.now);
        }
        let place = Placement { key: record.key.clone(), parent: record.parent.clone(), state: Some("revoked".into()) };
        let version = m.update("sdk_key.revoke", Kind::SdkKey, id, place, &current, &next).await?;
        let out = Versioned { version, value: next };
        m.commit(200, &out.value).await?;
        if let Ok(mut cache) = self.flags.sdk_keys.lock() {
            cache.clear();
        }
        Ok(out)
    }

    /// Resolves an SDK key secret. `Ok(None)` when it is unknown or revoked.
    pub async fn authenticate_sdk_key(&self, secret: &str) -> AppResult<Option<Arc<SdkKey>>> {
        if !secret.starts_with(SDK_KEY_PREFIX) {
            return Ok(None);
        }
        let hash = hash_token(secret);
        if let Ok(cache) = self.flags.sdk_keys.lock() {
            if let Some((key, at)) = cache.get(&hash) {
                if at.elapsed() < SDK_KEY_CACHE_TTL {
                    return Ok(Some(Arc::clone(key)));
                }
            }
        }
        let Some(record) = self.store.get(Kind::SdkKey, &hash).await? else { return Ok(None) };
        let key: Arc<SdkKey> = Arc::new(decode(&record)?.value);
        if key.revoked_at.is_some() {
            return Ok(None);
        }
        if let Ok(mut cache) = self.flags.sdk_keys.lock() {
            if cache.len() > 10_000 {
                cache.retain(|_, (_, at)| at.elapsed() < SDK_KEY_CACHE_TTL);
            }
            cache.insert(hash, (Arc::clone(&key), Instant::now()));
        }
        Ok(Some(key))
    }

    // ---- snapshots -----------------------------------------------------------------------

    /// The compiled flags an SDK key reads: its service's set when it has one, else its
    /// environment's. `None` when the environment has no flags yet. Refreshes first when the
    /// background poller has not run recently (or was never started).
    pub async fn flag_snapshot(&self, key: &SdkKey) -> AppResult<Option<Arc<FlagSnapshot>>> {
        let stale = self.flags.poll.lock().map(|p| p.last_poll.is_none_or(|at| at.elapsed() > POLL_INTERVAL * 4)).unwrap_or(true);
        if stale {
            refresh(self.store.as_ref(), &self.flags, false).await?;
        }
        let map = self.flags.current();
        let by_service = key.service_id.as_deref().and_then(|s| map.get(&set_key(&key.environment_id, Some(s))));
        Ok(by_service.or_else(|| map.get(&key.environment_id)).cloned())
    }

    /// A handle for a background task that keeps the snapshots fresh (see [`POLL_INTERVAL`]).
    pub fn flag_poller(&self) -> FlagPoller {
        FlagPoller { store: Arc::downgrade(&self.store), runtime: Arc::downgrade(&self.flags) }
    }

    /// Rate limit for an SDK key: `Err(seconds)` when it is over its budget.
    pub fn sdk_rate_check(&self, key: &SdkKey) -> Result<(), u64> {
        self.flags.take_token(&key.id, key.rate_limit_per_second)
    }

    /// Adds the demo's flag sets: every environment gets the same flags in different states.
    pub(crate) async fn seed_flags_demo(&self, ctx: &RequestContext) -> AppResult<()> {
        for env in ["dev", "test", "staging", "prod"] {
            if self.store.get(Kind::Environment, env).await?.is_none() {
                continue;
            }
            let rollout = match env {
                "prod" => 5,
                "staging" => 50,
                _ => 100,
            };
            let document = demo_document(env, rollout);
            let mut ctx = ctx.clone();
            ctx.reason = Some("demo flags".into());
            self.put_flag_set(&ctx, &FlagSetRef { environment: env, service: None }, document, None).await?;
        }
        // The prod rollout continues on schedule: 25 % tomorrow, 100 % the day after (09:00 UTC),
        // unless the demo calendar has a freeze then (the refusal is the point of the check).
        if self.store.get(Kind::Environment, "prod").await?.is_some() {
            let today = self.flags_now().date_naive();
            for (days, percent) in [(1, 25), (2, 100)] {
                let Some(at) = today.checked_add_days(chrono::Days::new(days)).and_then(|d| d.and_hms_opt(9, 0, 0)) else { continue };
                let req = crate::flag_lifecycle::ScheduleFlagChange {
                    patch: serde_json::json!({"targeting": {"if": [{"$ref": "is-employee"}, "on", {"fractional": [["on", percent], ["off", 100 - percent]]}]}}),
                    at: at.and_utc().to_rfc3339(),
                    reason: Some(format!("demo: ramp to {percent}%")),
                };
                let set = FlagSetRef { environment: "prod", service: None };
                if let Err(e) = self.schedule_flag_change(ctx, &set, "new-checkout", req).await {
                    tracing::info!(error = %e, "demo: the scheduled ramp to {percent}% was not planned");
                }
            }
        }
        Ok(())
    }
}

/// Applies `edit` to one flag of a document in either the map or the array form.
pub(crate) fn edit_flag(document: &mut Value, key: &str, edit: impl FnOnce(Option<Value>) -> Option<Value>) {
    let Some(root) = document.as_object_mut() else { return };
    match root.entry("flags").or_insert_with(|| Value::Object(Map::new())) {
        Value::Array(items) => {
            let position = items.iter().position(|item| item.get("key").and_then(Value::as_str) == Some(key));
            let existing = position.map(|i| {
                let mut flag = items[i].clone();
                if let Some(map) = flag.as_object_mut() {
                    map.remove("key");
                }
                flag
            });
            match (edit(existing), position) {
                (Some(mut flag), at) => {
                    if let Some(map) = flag.as_object_mut() {
                        map.insert("key".into(), Value::String(key.to_string()));
                    }
                    match at {
                        Some(i) => items[i] = flag,
                        None => items.push(flag),
                    }
                }
                (None, Some(i)) => {
                    items.remove(i);
                }
                (None, None) => {}
            }
        }
        Value::Object(map) => match edit(map.get(key).cloned()) {
            Some(flag) => {
                map.insert(key.to_string(), flag);
            }
            None => {
                map.remove(key);
            }
        },
        other => {
            let mut map = Map::new();
            if let Some(flag) = edit(None) {
                map.insert(key.to_string(), flag);
            }
            *other = Value::Object(map);
        }
    }
}

fn demo_document(env: &str, rollout: i64) -> Value {
    serde_json::json!({
        "$schema": "https://flagd.dev/schema/v0/flags.json",
        "metadata": {"flagSetId": format!("demo-{env}")},
        "$evaluators": {"is-employee": {"ends_with": [{"var": "email"}, "@example.com"]}},
        "flags": {
            "new-checkout": {
                "state": "ENABLED",
                "variants": {"on": true, "off": false},
                "defaultVariant": "off",
                "targeting": {"if": [{"$ref": "is-employee"}, "on", {"fractional": [["on", rollout], ["off", 100 - rollout]]}]},
                "metadata": {"owner": "checkout-squad", "description": "The redesigned checkout flow", "type": "release"}
            },
            "payment-provider-fallback": {
                "state": "DISABLED",
                "variants": {"on": true, "off": false},
                "defaultVariant": "off",
                "metadata": {"owner": "payments", "description": "Kill switch: route card payments to the fallback provider", "type": "ops"}
            },
            "search-ranking": {
                "state": "ENABLED",
                "variants": {"classic": "classic", "semantic": "semantic", "hybrid": "hybrid"},
                "defaultVariant": "classic",
                "targeting": {"fractional": [{"var": "targetingKey"}, ["classic", 34], ["semantic", 33], ["hybrid", 33]]},
                "metadata": {"owner": "search", "description": "Ranking experiment", "type": "experiment"}
            },
            "max-cart-items": {
                "state": "ENABLED",
                "variants": {"small": 50, "large": 200},
                "defaultVariant": "small",
                "targeting": {"if": [{"in": [{"var": "plan"}, ["business", "enterprise"]]}, "large", null]},
                "metadata": {"owner": "checkout-squad", "description": "Cart size limit by plan", "type": "permission"}
            },
            "banner-copy": {
                "state": "ENABLED",
                "variants": {"default": {"title": "Welcome"}, "sale": {"title": "Winter sale"}},
                "metadata": {"owner": "marketing", "description": "Home page banner; no server default, the app decides", "type": "release", "expectedLifetimeDays": 14}
            }
        }
    })
}
