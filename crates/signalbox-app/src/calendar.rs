//! Calendar use cases (SPEC C6, issue 4): entries, bookings, the conflict engine, the freeze
//! check of the release lifecycle and the iCalendar feed, on top of the pure
//! `signalbox-calendar` engine.
//!
//! Entries are stored as [`EntryRecord`] bodies of kind `calendar_entry` (state = the entry
//! kind, so lists can filter on it). Scope names are normalized to the names of existing
//! domains, services and environments when saved. Conflict checks use [`CalendarFacts`]: the
//! catalog, releases and conflict index of the current calendar version, cached per process
//! and rebuilt when any record they are made from changes.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use signalbox_calendar::conflict::{
    BlockedItem, CheckRequest, Conflict, ConflictIndex, ConflictKind, ReleaseStatus, ScheduledDeployment, ScheduledKind,
};
use signalbox_calendar::ics;
use signalbox_calendar::train::{CadenceDraft, CarriedItem, Departure, DeparturePhase, TrainCadence};
use signalbox_calendar::{
    calendar_view, BookingState, BookingStatus, CalendarEntry, EntryDraft, EntryKind, EntryRecord, Occurrence, Scope, ScopeFilter, Span,
    Target,
};
use signalbox_domain::access::{Permission, ResourceScopes, Scope as AccessScope};
use signalbox_domain::lifecycle::ReleaseState;
use signalbox_domain::model::{Domain, Environment, EnvironmentOwner, Kind, Release, Service, Tier};
use signalbox_governance::breakglass::{BreakGlass, BreakGlassState};
use signalbox_store::{ListQuery, Record, Store};
use std::collections::HashMap;
use utoipa::ToSchema;

use crate::governance::Reader;
use crate::mutation::{decode, Mutation, Placement};
use crate::{new_id, App, AppError, AppResult, PageRequest, Paged, RequestContext, Versioned};

/// How far ahead the `.ics` feed shows train departures.
const FEED_DEPARTURE_DAYS: i64 = 90;

/// Does a feed filter admit a train? Trains are not entries: a kind filter leaves them out;
/// otherwise the domain, a service of the domain, a target environment or a target's tier must
/// match what the filter names.
fn train_admitted(catalog: &Catalog, train: &Train, filter: &ScopeFilter) -> bool {
    if !filter.kinds.is_empty() {
        return false;
    }
    let domain = catalog.domain_name(&train.domain_id);
    let targets: Vec<&Environment> = train.target_environments.iter().filter_map(|e| catalog.environments.get(e)).collect();
    filter.domain.as_ref().is_none_or(|d| *d == domain)
        && filter.service.as_ref().is_none_or(|s| catalog.service_by_ref(s).is_some_and(|svc| svc.domain_id == train.domain_id))
        && filter.environment.as_ref().is_none_or(|e| targets.iter().any(|t| t.name == *e))
        && filter.tier.as_ref().is_none_or(|tier| targets.iter().any(|t| t.tier == *tier))
}

/// How far ahead a booking is compared with other bookings of the environment.
const BOOKING_HORIZON_DAYS: i64 = 400;
/// Default expected duration of a deployment whose release has no planned end.
const DEFAULT_DEPLOY_SECONDS: i64 = 3600;

/// `GET /api/v1/calendar`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CalendarView {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub occurrences: Vec<Occurrence>,
    /// The list was cut at 50,000 occurrences; narrow the range or the scope.
    pub truncated: bool,
}

/// `POST /api/v1/calendar/check`: may this service be deployed to this environment then?
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckInput {
    /// Service id or name.
    pub service: String,
    /// Environment id or name.
    pub environment: String,
    pub start: DateTime<Utc>,
    /// How long the deployment is expected to take, at most a week.
    pub expected_duration_seconds: u32,
    /// Whose bookings do not conflict; the caller when omitted.
    #[serde(default)]
    pub requester: Option<String>,
    /// The release being deployed (id or key): its own scheduled deployments do not conflict,
    /// and its dependencies are checked.
    #[serde(default)]
    pub release: Option<String>,
    /// Further releases (ids or keys) that must be released first.
    #[serde(default)]
    pub depends_on: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckResult {
    pub target: Target,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// True when no conflict is blocking.
    pub clear: bool,
    pub conflicts: Vec<Conflict>,
}

/// The conflicts of one (service, environment) pair of a release's plan.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReleaseConflicts {
    pub release_id: String,
    pub release_key: String,
    pub checks: Vec<CheckResult>,
    /// Why the release could not enter `deploying` right now (freezes in force or a run that
    /// would reach one, unless a confirmed break-glass with `freeze: true` covers it).
    pub deploying_now_blocked_by: Vec<String>,
}

/// `POST /api/v1/calendar/preview`: what a freeze would block before it is saved.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FreezePreview {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub blocked: Vec<BlockedItem>,
}

/// A created entry, or (`dry_run`) what it would be and what it would block.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DryRun {
    pub entry: EntryRecord,
    /// For freezes: what the freeze would block over the next 400 days (or its own span).
    pub blocked: Vec<BlockedItem>,
    /// For bookings: overlapping bookings of the same environment (saving would be refused).
    pub overlapping_bookings: Vec<String>,
}

/// `POST /api/v1/calendar/feed-tokens`: a read-only token for `/calendar.ics`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFeedToken {
    pub name: String,
    /// Scope filter applied to every feed read with this token (narrowed further by the
    /// feed's own query parameters).
    #[serde(default)]
    pub filter: ScopeFilter,
}

/// A stored feed token (the secret itself is never stored, only its hash in the key).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FeedToken {
    pub id: String,
    pub name: String,
    pub filter: ScopeFilter,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IssuedFeedToken {
    pub token: FeedToken,
    /// Shown once: put it in the feed URL, `/calendar.ics?token=…`.
    pub secret: String,
}

/// `POST /api/v1/calendar/import`: an `.ics` file as business events or freezes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImportRequest {
    /// The iCalendar text.
    pub ics: String,
    #[serde(flatten)]
    pub options: ics::ImportOptions,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImportResult {
    pub created: Vec<EntryRecord>,
}

fn scope_placement(record: &EntryRecord) -> Placement {
    Placement { key: None, parent: None, state: Some(record.draft.kind.as_str().to_string()) }
}

fn entries_query(kind: EntryKind) -> ListQuery {
    let mut q = ListQuery::all(Kind::CalendarEntry);
    q.state = Some(kind.as_str().to_string());
    q
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Every record of a query, page by page.
async fn load_all(store: &dyn Store, query: ListQuery) -> AppResult<Vec<Record>> {
    let mut out = Vec::new();
    let mut q = query;
    q.limit = 1000;
    loop {
        let page = store.list(&q).await?;
        out.extend(page.items);
        match page.next_after_seq {
            Some(seq) => q.after_seq = Some(seq),
            None => return Ok(out),
        }
    }
}

async fn reader_load_all(reader: &mut Reader<'_, '_>, query: ListQuery) -> AppResult<Vec<Record>> {
    match reader {
        Reader::Store(s) => load_all(*s, query).await,
        Reader::Tx(m) => {
            let mut out = Vec::new();
            let mut q = query;
            q.limit = 1000;
            loop {
                let items = m.list_records(&q).await?;
                let full = items.len() as u32 == q.limit;
                q.after_seq = items.last().map(|r| r.seq);
                out.extend(items);
                if !full {
                    return Ok(out);
                }
            }
        }
    }
}

fn decode_all<T: serde::de::DeserializeOwned>(records: &[Record]) -> AppResult<Vec<T>> {
    records.iter().map(|r| decode(r).map(|v| v.value)).collect()
}

/// The catalog facts a conflict check needs: names and tiers by id.
struct Catalog {
    domains: HashMap<String, Domain>,
    services: HashMap<String, Service>,
    environments: HashMap<String, Environment>,
}

impl Catalog {
    async fn load(reader: &mut Reader<'_, '_>) -> AppResult<Catalog> {
        let domains: Vec<Domain> = decode_all(&reader_load_all(reader, ListQuery::all(Kind::Domain)).await?)?;
        let services: Vec<Service> = decode_all(&reader_load_all(reader, ListQuery::all(Kind::Service)).await?)?;
        let environments: Vec<Environment> = decode_all(&reader_load_all(reader, ListQuery::all(Kind::Environment)).await?)?;
        Ok(Catalog {
            domains: domains.into_iter().map(|d| (d.id.clone(), d)).collect(),
            services: services.into_iter().map(|s| (s.id.clone(), s)).collect(),
            environments: environments.into_iter().map(|e| (e.id.clone(), e)).collect(),
        })
    }

    fn service_by_ref(&self, reference: &str) -> Option<&Service> {
        self.services.get(reference).or_else(|| self.services.values().find(|s| s.name == reference))
    }

    fn environment_by_ref(&self, reference: &str) -> Option<&Environment> {
        self.environments.get(reference).or_else(|| self.environments.values().find(|e| e.name == reference))
    }

    fn domain_name(&self, id: &str) -> String {
        self.domains.get(id).map(|d| d.name.clone()).unwrap_or_else(|| id.to_string())
    }

    fn target(&self, service: Option<&Service>, release_domain: Option<&str>, env: &Environment) -> Target {
        match service {
            Some(s) => Target {
                service: s.name.clone(),
                domain: self.domain_name(&s.domain_id),
                environment: env.name.clone(),
                tier: env.tier.clone(),
            },
            // A release without components still targets its domain.
            None => Target {
                service: "(no component)".into(),
                domain: release_domain.map(|d| self.domain_name(d)).unwrap_or_default(),
                environment: env.name.clone(),
                tier: env.tier.clone(),
            },
        }
    }

    /// Every (service, environment) target of a release.
    fn release_targets(&self, release: &Release) -> Vec<(Environment, Target)> {
        let mut out = Vec::new();
        for env_id in &release.target_environments {
            let Some(env) = self.environments.get(env_id) else { continue };
            let mut services: Vec<&Service> = release.components.iter().filter_map(|c| self.services.get(&c.service_id)).collect();
            services.sort_by(|a, b| a.name.cmp(&b.name));
            services.dedup_by(|a, b| a.id == b.id);
            if services.is_empty() {
                out.push((env.clone(), self.target(None, release.domain_id.as_deref(), env)));
            } else {
                for s in services {
                    out.push((env.clone(), self.target(Some(s), release.domain_id.as_deref(), env)));
                }
            }
        }
        out
    }

    fn tiers(&self) -> HashMap<String, Tier> {
        self.environments.values().map(|e| (e.name.clone(), e.tier.clone())).collect()
    }
}

fn is_open(state: ReleaseState) -> bool {
    !matches!(
        state,
        ReleaseState::Released | ReleaseState::Closed | ReleaseState::Failed | ReleaseState::RolledBack | ReleaseState::Cancelled
    )
}

/// Scheduled deployments (open releases with a planned window) and release statuses.
fn plans(catalog: &Catalog, releases: &[Release]) -> (Vec<ScheduledDeployment>, Vec<ReleaseStatus>) {
    let mut deployments = Vec::new();
    let mut statuses = Vec::new();
    for r in releases {
        let released_at = r.history.iter().rev().find(|h| h.to == ReleaseState::Released).map(|h| h.at);
        statuses.push(ReleaseStatus {
            release_id: r.id.clone(),
            released_at: if matches!(r.state, ReleaseState::Released | ReleaseState::Closed) {
                released_at.or(Some(r.created_at))
            } else {
                None
            },
            scheduled_at: r.planned_window.as_ref().filter(|_| is_open(r.state)).map(|w| w.start),
        });
        let Some(window) = r.planned_window.as_ref().filter(|_| is_open(r.state)) else { continue };
        for (env, target) in catalog.release_targets(r) {
            deployments.push(ScheduledDeployment {
                id: format!("{}/{}/{}", r.key, target.service, env.name),
                kind: ScheduledKind::Deployment,
                release_id: Some(r.id.clone()),
                target,
                start: window.start,
                end: window.end.max(window.start + Duration::seconds(1)),
            });
        }
    }
    (deployments, statuses)
}

/// The stored entries the engine works on: rejected bookings hold nothing and are left out;
/// pending ones become tentative entries.
fn entries_of(records: &[Record]) -> AppResult<Vec<CalendarEntry>> {
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let rec: EntryRecord = decode(r)?.value;
        if rec.booking_state() == Some(BookingState::Rejected) {
            continue;
        }
        out.push(
            CalendarEntry::from_record(&rec)
                .map_err(|e| AppError::Internal(format!("stored calendar entry {} no longer validates: {e:?}", r.id)))?,
        );
    }
    Ok(out)
}

/// The access scopes an entry lives in: a domain's or a service's domain, else the organization.
fn entry_scopes(catalog: &Catalog, scope: &Scope) -> ResourceScopes {
    let org = ResourceScopes::organization();
    match scope {
        Scope::Domain { domain } => match catalog.domains.values().find(|d| &d.name == domain) {
            Some(d) => org.with(AccessScope::Domain(d.id.clone())),
            None => org,
        },
        Scope::Service { service } => match catalog.service_by_ref(service) {
            Some(s) => org.with(AccessScope::Domain(s.domain_id.clone())).with(AccessScope::Service(s.id.clone())),
            None => org,
        },
        Scope::Environment { environment } => match catalog.environment_by_ref(environment) {
            Some(e) => org.with(AccessScope::Environment(e.id.clone())),
            None => org,
        },
        _ => org,
    }
}

/// Replaces scope references (ids or names) with the names of existing resources.
fn normalize_scope(catalog: &Catalog, scope: &Scope) -> AppResult<Scope> {
    Ok(match scope {
        Scope::Domain { domain } => {
            let d = catalog
                .domains
                .get(domain)
                .or_else(|| catalog.domains.values().find(|d| &d.name == domain))
                .ok_or_else(|| AppError::invalid("scope/domain", format!("no domain with id or name {domain:?}")))?;
            Scope::Domain { domain: d.name.clone() }
        }
        Scope::Service { service } => {
            let s = catalog
                .service_by_ref(service)
                .ok_or_else(|| AppError::invalid("scope/service", format!("no service with id or name {service:?}")))?;
            Scope::Service { service: s.name.clone() }
        }
        Scope::Environment { environment } => {
            let e = catalog
                .environment_by_ref(environment)
                .ok_or_else(|| AppError::invalid("scope/environment", format!("no environment with id or name {environment:?}")))?;
            Scope::Environment { environment: e.name.clone() }
        }
        other => other.clone(),
    })
}

/// The environment a booking holds (bookings must be scoped to one environment).
fn booking_environment(draft: &EntryDraft) -> AppResult<String> {
    match &draft.scope {
        Scope::Environment { environment } => Ok(environment.clone()),
        _ => Err(AppError::invalid("scope", "a booking holds one environment: use {\"level\": \"environment\", \"environment\": \"…\"}")),
    }
}

fn spans_of(entry: &CalendarEntry, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Span> {
    let mut out = Vec::new();
    entry.spans_overlapping(from, to, |s| {
        out.push(s);
        out.len() < 10_000
    });
    out
}

/// Other bookings of the same environment overlapping `entry` in the booking horizon.
fn overlapping_bookings(entry: &CalendarEntry, others: &[CalendarEntry], now: DateTime<Utc>) -> Vec<String> {
    let (from, to) = (now - Duration::days(1), now + Duration::days(BOOKING_HORIZON_DAYS));
    let mine = spans_of(entry, from, to);
    let mut out = Vec::new();
    for other in others {
        // A pending booking does not hold the environment yet: it never refuses another.
        if other.id == entry.id || other.kind != EntryKind::Booking || other.scope != entry.scope || other.tentative {
            continue;
        }
        let theirs = spans_of(other, from, to);
        if let Some((a, b)) = mine.iter().flat_map(|a| theirs.iter().map(move |b| (a, b))).find(|(a, b)| a.overlaps(b.start, b.end)) {
            out.push(format!(
                "booking {} ({:?}, held by {}) overlaps: {} to {} against {} to {}",
                other.id,
                other.title,
                other.owner,
                stamp(b.start),
                stamp(b.end),
                stamp(a.start),
                stamp(a.end)
            ));
        }
    }
    out
}

/// A new (or changed) booking's status: `pending` when its environment requires approval,
/// else `confirmed`; requested by `actor`.
fn booking_status(catalog: &Catalog, draft: &EntryDraft, actor: &str) -> AppResult<BookingStatus> {
    let env_name = booking_environment(draft)?;
    let requires = catalog.environment_by_ref(&env_name).is_some_and(|e| e.protection.booking_requires_approval);
    Ok(BookingStatus {
        state: if requires { BookingState::Pending } else { BookingState::Confirmed },
        requested_by: actor.to_string(),
        decided_by: None,
        decided_at: None,
        note: None,
    })
}

/// The subject of a booking's expiry job: the entry at one version. A change plans a job for
/// the new version; the job of an older version finds the version moved on and does nothing.
fn expiry_subject(record: &EntryRecord) -> String {
    format!("{}@v{}", record.id, record.version)
}

/// Plans the `booking.expire` job of a one-off booking that holds or may hold the environment
/// (pending or confirmed), due at its end. Recurring bookings have no end to expire at.
async fn plan_booking_expiry(m: &mut Mutation<'_>, record: &EntryRecord, entry: &CalendarEntry) -> AppResult<()> {
    let live = matches!(record.booking_state(), Some(BookingState::Pending | BookingState::Confirmed));
    if let (true, signalbox_calendar::Timing::OneOff(span)) = (live, &entry.timing) {
        crate::scheduler::plan_job(m, crate::scheduler::JOB_BOOKING_EXPIRE, &expiry_subject(record), span.end).await?;
    }
    Ok(())
}

/// `POST /api/v1/bookings/{id}/approve` and `/reject`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BookingDecision {
    /// Why (required to reject; shown to the requester).
    #[serde(default)]
    pub reason: Option<String>,
}

/// May `actor` decide bookings of `env`? Its owner (the user, or anyone holding a role on the
/// owning team) or an admin.
fn decides_bookings(actor: &crate::context::Actor, env: &Environment) -> bool {
    actor.is_admin()
        || match &env.owner {
            Some(EnvironmentOwner::User(id)) => *id == actor.user_id,
            Some(EnvironmentOwner::Team(id)) => actor.bindings.iter().any(|b| b.scope == AccessScope::Team(id.clone())),
            None => false,
        }
}

/// What a conflict check reads — the catalog, the stored entries (validated) and the releases —
/// for one version of the calendar. `key` lists every (id, version) of the kinds it is made
/// from, so any entry, booking, release (planned deployments) or catalog change gives a new key.
pub(crate) struct CalendarFacts {
    key: Vec<(String, i64)>,
    catalog: Catalog,
    releases: Vec<Release>,
    /// Series pre-expanded from a month ago to [`FACTS_HORIZON_DAYS`] ahead of when it was
    /// built; checks outside that still answer correctly (the index expands what it needs).
    index: ConflictIndex,
}

/// How far ahead the cached conflict index pre-expands series.
const FACTS_HORIZON_DAYS: i64 = 400;

/// The last [`CalendarFacts`] this process built. Like the gather cache it needs no
/// invalidation: which versions exist is read from the database on every check (record heads,
/// no bodies), and a different answer rebuilds it.
#[derive(Default)]
pub struct CalendarCache(std::sync::Mutex<Option<std::sync::Arc<CalendarFacts>>>);

const CALENDAR_FACT_KINDS: [Kind; 5] = [Kind::Domain, Kind::Service, Kind::Environment, Kind::Release, Kind::CalendarEntry];

impl App {
    /// The calendar facts at the current version: from the cache when no record they are made
    /// from changed, else read, validated and cached.
    async fn calendar_facts(&self) -> AppResult<std::sync::Arc<CalendarFacts>> {
        let mut key = Vec::new();
        for kind in CALENDAR_FACT_KINDS {
            let mut heads = self.store.heads(&signalbox_store::HeadQuery::all(kind)).await?;
            heads.sort_by(|a, b| a.id.cmp(&b.id));
            key.push((kind.as_str().to_string(), -1));
            key.extend(heads.into_iter().map(|h| (h.id, h.version)));
        }
        let cached = self.calendar_cache.0.lock().ok().and_then(|c| c.clone());
        if let Some(facts) = cached.filter(|f| f.key == key) {
            return Ok(facts);
        }
        // Read after the heads: if a write lands in between, these are newer than the key and
        // the next check, seeing a newer key, reads again.
        let catalog = self.catalog().await?;
        let entries = self.stored_entries().await?;
        let releases = self.stored_releases().await?;
        let (deployments, statuses) = plans(&catalog, &releases);
        let now = Utc::now();
        let index =
            ConflictIndex::build(entries, deployments, statuses, now - Duration::days(31), now + Duration::days(FACTS_HORIZON_DAYS));
        let facts = std::sync::Arc::new(CalendarFacts { key, catalog, releases, index });
        if let Ok(mut slot) = self.calendar_cache.0.lock() {
            *slot = Some(facts.clone());
        }
        Ok(facts)
    }

    async fn catalog(&self) -> AppResult<Catalog> {
        Catalog::load(&mut Reader::Store(self.store.as_ref())).await
    }

    async fn stored_entries(&self) -> AppResult<Vec<CalendarEntry>> {
        entries_of(&load_all(self.store.as_ref(), ListQuery::all(Kind::CalendarEntry)).await?)
    }

    async fn stored_releases(&self) -> AppResult<Vec<Release>> {
        decode_all(&load_all(self.store.as_ref(), ListQuery::all(Kind::Release)).await?)
    }

    /// Validates a draft and normalizes its scope; returns the validated entry.
    fn validate_entry(catalog: &Catalog, id: &str, version: u32, draft: &mut EntryDraft) -> AppResult<CalendarEntry> {
        let entry = CalendarEntry::from_draft(id, version, draft)?;
        draft.scope = normalize_scope(catalog, &draft.scope)?;
        if draft.kind == EntryKind::Booking {
            booking_environment(draft)?;
        }
        if draft.kind != EntryKind::Freeze && draft.freeze_effect.is_some() {
            return Err(AppError::invalid("freeze_effect", "only freezes have a freeze effect; remove it"));
        }
        Ok(CalendarEntry { scope: draft.scope.clone(), ..entry })
    }

    /// What a freeze would block (over its own span, or the next 400 days for a series).
    async fn preview_entry(&self, catalog: &Catalog, entry: &CalendarEntry, now: DateTime<Utc>) -> AppResult<Vec<BlockedItem>> {
        if entry.kind != EntryKind::Freeze {
            return Ok(vec![]);
        }
        let (from, to) = match &entry.timing {
            signalbox_calendar::Timing::OneOff(span) => (span.start, span.end.min(span.start + Duration::days(400))),
            signalbox_calendar::Timing::Recurring(_) => (now, now + Duration::days(400)),
        };
        let releases = self.stored_releases().await?;
        let (deployments, statuses) = plans(catalog, &releases);
        let entries = self.stored_entries().await?.into_iter().filter(|e| e.kind == EntryKind::Booking && e.id != entry.id).collect();
        let index = ConflictIndex::build(entries, deployments, statuses, from, to);
        Ok(index.preview_freeze(entry, from, to, &catalog.tiers())?)
    }

    /// `POST /api/v1/calendar/entries` (`dry_run`: validate and preview, save nothing).
    pub async fn create_entry(
        &self,
        ctx: &RequestContext,
        mut draft: EntryDraft,
        dry_run: bool,
    ) -> AppResult<Result<Versioned<EntryRecord>, DryRun>> {
        let catalog = self.catalog().await?;
        let id = new_id(Kind::CalendarEntry);
        let entry = App::validate_entry(&catalog, &id, 1, &mut draft)?;
        ctx.actor.require(Permission::EditRelease, &entry_scopes(&catalog, &draft.scope))?;
        let booking = match entry.kind {
            EntryKind::Booking => Some(booking_status(&catalog, &draft, &ctx.actor.username)?),
            _ => None,
        };
        let record = EntryRecord { id: id.clone(), version: 1, draft, booking };
        let now = Utc::now();
        if dry_run {
            let blocked = self.preview_entry(&catalog, &entry, now).await?;
            let overlapping_bookings =
                if entry.kind == EntryKind::Booking { overlapping_bookings(&entry, &self.stored_entries().await?, now) } else { vec![] };
            return Ok(Err(DryRun { entry: record, blocked, overlapping_bookings }));
        }
        let mut m = Mutation::begin(self, ctx).await?;
        if entry.kind == EntryKind::Booking {
            App::refuse_overlapping_booking(&mut m, &entry).await?;
        }
        let version = m.insert("calendar_entry.create", Kind::CalendarEntry, &id, scope_placement(&record), &record).await?;
        plan_booking_expiry(&mut m, &record, &entry).await?;
        let out = Versioned { version, value: record };
        m.commit(201, &out.value).await?;
        Ok(Ok(out))
    }

    /// Bookings of one environment must not overlap: checked inside the writing transaction.
    async fn refuse_overlapping_booking(m: &mut Mutation<'_>, entry: &CalendarEntry) -> AppResult<()> {
        let records = m.list_records(&entries_query(EntryKind::Booking)).await?;
        let others = entries_of(&records)?;
        let clashes = overlapping_bookings(entry, &others, m.now);
        if clashes.is_empty() {
            Ok(())
        } else {
            Err(AppError::Conflict {
                code: "booking-overlap",
                detail: format!("the environment is already booked: {}; pick another time or ask the holder", clashes.join("; ")),
            })
        }
    }

    pub async fn list_entries(&self, ctx: &RequestContext, kind: Option<EntryKind>, page: &PageRequest) -> AppResult<Paged<EntryRecord>> {
        ctx.actor.require(Permission::Read, &ResourceScopes::organization())?;
        let mut q = ListQuery::all(Kind::CalendarEntry);
        q.state = kind.map(|k| k.as_str().to_string());
        self.list_page(q, page).await
    }

    pub async fn get_entry(&self, ctx: &RequestContext, id: &str) -> AppResult<Versioned<EntryRecord>> {
        self.get_resource(ctx, Kind::CalendarEntry, id).await
    }

    /// `PUT /api/v1/calendar/entries/{id}`: replaces the entry; its version (the iCalendar
    /// SEQUENCE) goes up.
    pub async fn replace_entry(
        &self,
        ctx: &RequestContext,
        id: &str,
        if_match: Option<i64>,
        mut draft: EntryDraft,
    ) -> AppResult<Versioned<EntryRecord>> {
        let catalog = self.catalog().await?;
        let mut m = Mutation::begin(self, ctx).await?;
        let current: Versioned<EntryRecord> = m.get(Kind::CalendarEntry, id).await?;
        if let Some(v) = if_match.filter(|v| *v != current.version) {
            return Err(AppError::PreconditionFailed {
                kind: Kind::CalendarEntry,
                id: id.into(),
                expected: v,
                current: Some(current.version),
            });
        }
        ctx.actor.require(Permission::EditRelease, &entry_scopes(&catalog, &current.value.draft.scope))?;
        let version = current.value.version + 1;
        let entry = App::validate_entry(&catalog, &current.value.id, version, &mut draft)?;
        ctx.actor.require(Permission::EditRelease, &entry_scopes(&catalog, &draft.scope))?;
        if entry.kind == EntryKind::Booking {
            App::refuse_overlapping_booking(&mut m, &entry).await?;
        }
        // A changed booking of an environment that requires approval needs a new approval.
        let booking = match entry.kind {
            EntryKind::Booking => Some(booking_status(&catalog, &draft, &ctx.actor.username)?),
            _ => None,
        };
        let next = EntryRecord { id: current.value.id.clone(), version, draft, booking };
        let stored = m.update("calendar_entry.update", Kind::CalendarEntry, &next.id, scope_placement(&next), &current, &next).await?;
        plan_booking_expiry(&mut m, &next, &entry).await?;
        let out = Versioned { version: stored, value: next };
        m.commit(200, &out.value).await?;
        Ok(out)
    }

    pub async fn delete_entry(&self, ctx: &RequestContext, id: &str, if_match: Option<i64>) -> AppResult<()> {
        let catalog = self.catalog().await?;
        let mut m = Mutation::begin(self, ctx).await?;
        let current: Versioned<EntryRecord> = m.get(Kind::CalendarEntry, id).await?;
        if let Some(v) = if_match.filter(|v| *v != current.version) {
            return Err(AppError::PreconditionFailed {
                kind: Kind::CalendarEntry,
                id: id.into(),
                expected: v,
                current: Some(current.version),
            });
        }
        ctx.actor.require(Permission::EditRelease, &entry_scopes(&catalog, &current.value.draft.scope))?;
        m.delete("calendar_entry.delete", Kind::CalendarEntry, &current.value.id, current.version, &current.value).await?;
        m.commit(204, &serde_json::Value::Null).await
    }

    /// `POST /api/v1/bookings/{id}/release`: gives a booking back early; its end becomes now.
    pub async fn release_booking(&self, ctx: &RequestContext, id: &str) -> AppResult<Versioned<EntryRecord>> {
        let mut m = Mutation::begin(self, ctx).await?;
        let current: Versioned<EntryRecord> = m.get(Kind::CalendarEntry, id).await?;
        if current.value.draft.kind != EntryKind::Booking {
            return Err(AppError::Conflict {
                code: "not-a-booking",
                detail: format!("{id} is a {}, not a booking", current.value.draft.kind.as_str()),
            });
        }
        if let Some(state @ (BookingState::Expired | BookingState::Rejected)) = current.value.booking_state() {
            return Err(AppError::Conflict {
                code: "booking-over",
                detail: format!("the booking is {}; there is nothing to release", state.as_str()),
            });
        }
        if current.value.draft.owner != ctx.actor.username && !ctx.actor.is_admin() {
            return Err(AppError::Forbidden(format!(
                "the booking is held by {}; only its holder or an admin releases it",
                current.value.draft.owner
            )));
        }
        let now = m.now;
        let (start, end) = match &current.value.draft.timing {
            signalbox_calendar::TimingDraft::OneOff { start, end } => (start.clone(), end.clone()),
            signalbox_calendar::TimingDraft::Recurring { .. } => {
                return Err(AppError::Conflict {
                    code: "recurring-booking",
                    detail: "a recurring booking cannot be released early; add an exdate or delete it".into(),
                })
            }
        };
        let parse = |raw: &str| DateTime::parse_from_rfc3339(raw).map(|t| t.with_timezone(&Utc)).ok();
        let (Some(s), Some(e)) = (parse(&start), parse(&end)) else {
            return Err(AppError::Internal(format!("booking {id} has unreadable times")));
        };
        if e <= now {
            return Err(AppError::Conflict { code: "booking-over", detail: format!("the booking already ended at {}", stamp(e)) });
        }
        let mut next = current.value.clone();
        next.version += 1;
        if s >= now {
            // Not started yet: releasing it cancels it.
            m.delete("booking.release", Kind::CalendarEntry, id, current.version, &current.value).await?;
            m.commit(200, &next).await?;
            return Ok(Versioned { version: current.version, value: next });
        }
        let end = now.max(s + Duration::seconds(1));
        next.draft.timing = signalbox_calendar::TimingDraft::OneOff { start, end: stamp(end) };
        let version = m.update("booking.release", Kind::CalendarEntry, id, scope_placement(&next), &current, &next).await?;
        crate::scheduler::plan_job(&mut m, crate::scheduler::JOB_BOOKING_EXPIRE, &expiry_subject(&next), end).await?;
        m.commit(200, &next).await?;
        Ok(Versioned { version, value: next })
    }

    /// The `booking.expire` job: a pending or confirmed booking whose time range is over
    /// becomes `expired`. Does nothing when the booking was deleted, changed since the job was
    /// planned (its new version has its own job), decided against, or does not end yet.
    pub(crate) async fn expire_booking(m: &mut Mutation<'_>, subject: &str) -> AppResult<()> {
        let Some((id, version)) = subject.rsplit_once("@v").and_then(|(id, v)| Some((id, v.parse::<u32>().ok()?))) else {
            return Err(AppError::Internal(format!("booking.expire job with a malformed subject {subject:?}")));
        };
        let Some(current) = m.find::<EntryRecord>(Kind::CalendarEntry, id).await? else { return Ok(()) };
        let state = current.value.booking_state();
        if current.value.version != version || !matches!(state, Some(BookingState::Pending | BookingState::Confirmed)) {
            return Ok(());
        }
        let end = match &current.value.draft.timing {
            signalbox_calendar::TimingDraft::OneOff { end, .. } => DateTime::parse_from_rfc3339(end).map(|t| t.with_timezone(&Utc)).ok(),
            signalbox_calendar::TimingDraft::Recurring { .. } => None,
        };
        let Some(end) = end.filter(|e| *e <= m.now) else { return Ok(()) };
        let mut next = current.value.clone();
        let previous = state.unwrap_or(BookingState::Confirmed);
        let status = next.booking.take().unwrap_or(BookingStatus {
            state: previous,
            requested_by: current.value.draft.owner.clone(),
            decided_by: None,
            decided_at: None,
            note: None,
        });
        let note = match previous {
            BookingState::Pending => format!("ended at {} while still pending: never approved", stamp(end)),
            _ => format!("ended at {}", stamp(end)),
        };
        next.booking = Some(BookingStatus { state: BookingState::Expired, note: Some(note), ..status });
        m.update("booking.expire", Kind::CalendarEntry, id, scope_placement(&next), &current, &next).await?;
        Ok(())
    }

    /// `POST /api/v1/bookings/{id}/approve`: the environment's owner (or an admin), never the
    /// requester, confirms a pending booking; it must still not overlap a confirmed one.
    pub async fn approve_booking(&self, ctx: &RequestContext, id: &str, decision: BookingDecision) -> AppResult<Versioned<EntryRecord>> {
        self.decide_booking(ctx, id, true, decision).await
    }

    /// `POST /api/v1/bookings/{id}/reject`: as approving, with a required reason.
    pub async fn reject_booking(&self, ctx: &RequestContext, id: &str, decision: BookingDecision) -> AppResult<Versioned<EntryRecord>> {
        self.decide_booking(ctx, id, false, decision).await
    }

    async fn decide_booking(
        &self,
        ctx: &RequestContext,
        id: &str,
        approve: bool,
        decision: BookingDecision,
    ) -> AppResult<Versioned<EntryRecord>> {
        let reason = decision.reason.map(|r| r.trim().to_string()).filter(|r| !r.is_empty());
        if !approve && reason.is_none() {
            return Err(AppError::invalid("reason", "say why the booking is rejected; the requester sees it"));
        }
        if reason.as_ref().is_some_and(|r| r.chars().count() > 2000) {
            return Err(AppError::invalid("reason", "is longer than 2,000 characters"));
        }
        let mut m = Mutation::begin(self, ctx).await?;
        let current: Versioned<EntryRecord> = m.get(Kind::CalendarEntry, id).await?;
        let Some(state) = current.value.booking_state() else {
            return Err(AppError::Conflict {
                code: "not-a-booking",
                detail: format!("{id} is a {}, not a booking", current.value.draft.kind.as_str()),
            });
        };
        let status = current.value.booking.clone().unwrap_or(BookingStatus {
            state,
            requested_by: current.value.draft.owner.clone(),
            decided_by: None,
            decided_at: None,
            note: None,
        });
        if state != BookingState::Pending {
            return Err(AppError::Conflict {
                code: "booking-not-pending",
                detail: format!("booking {id} is {}, not pending; only pending bookings are approved or rejected", state.as_str()),
            });
        }
        let env_name = booking_environment(&current.value.draft)?;
        let env: Environment = m.get(Kind::Environment, &env_name).await?.value;
        if !decides_bookings(&ctx.actor, &env) {
            let owner = match &env.owner {
                Some(EnvironmentOwner::Team(t)) => format!("members of team {t}"),
                Some(EnvironmentOwner::User(u)) => format!("user {u}"),
                None => "nobody (the environment has no owner)".into(),
            };
            return Err(AppError::Forbidden(format!(
                "bookings of environment {} are decided by its owner ({owner}) or an admin; {} is neither",
                env.name, ctx.actor.username
            )));
        }
        if status.requested_by == ctx.actor.username {
            return Err(AppError::Forbidden(format!(
                "{} requested this booking and cannot decide it (segregation of duties); ask another owner or an admin",
                ctx.actor.username
            )));
        }
        let mut next = current.value.clone();
        next.version += 1;
        next.booking = Some(BookingStatus {
            state: if approve { BookingState::Confirmed } else { BookingState::Rejected },
            decided_by: Some(ctx.actor.username.clone()),
            decided_at: Some(m.now),
            note: reason.clone(),
            ..status
        });
        let catalog = Catalog::load(&mut Reader::Tx(&mut m)).await?;
        let mut draft = next.draft.clone();
        let entry = App::validate_entry(&catalog, &next.id, next.version, &mut draft)?;
        if approve {
            // From now on it holds the environment: it must not overlap a confirmed booking.
            App::refuse_overlapping_booking(&mut m, &entry).await?;
        }
        m.set_reason(reason);
        let action = if approve { "booking.approve" } else { "booking.reject" };
        let version = m.update(action, Kind::CalendarEntry, id, scope_placement(&next), &current, &next).await?;
        if approve {
            plan_booking_expiry(&mut m, &next, &entry).await?;
        }
        m.commit(200, &next).await?;
        Ok(Versioned { version, value: next })
    }

    /// `GET /api/v1/calendar?from=&to=`.
    pub async fn calendar_view(
        &self,
        ctx: &RequestContext,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        filter: &ScopeFilter,
    ) -> AppResult<CalendarView> {
        ctx.actor.require(Permission::Read, &ResourceScopes::organization())?;
        let entries = self.stored_entries().await?;
        let (occurrences, truncated) = calendar_view(&entries, filter, from, to)?;
        Ok(CalendarView { from, to, occurrences, truncated })
    }

    fn resolve_release<'r>(releases: &'r [Release], field: &str, reference: &str) -> AppResult<&'r Release> {
        releases
            .iter()
            .find(|r| r.id == reference || r.key == reference)
            .ok_or_else(|| AppError::invalid(field, format!("no release with id or key {reference:?}")))
    }

    /// `POST /api/v1/calendar/check`.
    pub async fn check_conflicts(&self, ctx: &RequestContext, input: CheckInput) -> AppResult<CheckResult> {
        ctx.actor.require(Permission::Read, &ResourceScopes::organization())?;
        let facts = self.calendar_facts().await?;
        let (catalog, releases) = (&facts.catalog, &facts.releases);
        let service = catalog
            .service_by_ref(&input.service)
            .ok_or_else(|| AppError::invalid("service", format!("no service with id or name {:?}", input.service)))?;
        let env = catalog
            .environment_by_ref(&input.environment)
            .ok_or_else(|| AppError::invalid("environment", format!("no environment with id or name {:?}", input.environment)))?;
        let target = catalog.target(Some(service), None, env);
        let mut depends_on = Vec::new();
        let mut release_id = None;
        if let Some(r) = &input.release {
            let rel = App::resolve_release(releases, "release", r)?;
            release_id = Some(rel.id.clone());
            depends_on.extend(rel.depends_on.iter().cloned());
        }
        for (i, d) in input.depends_on.iter().enumerate() {
            depends_on.push(App::resolve_release(releases, &format!("depends_on/{i}"), d)?.id.clone());
        }
        let request = CheckRequest {
            target,
            start: input.start,
            expected_duration_seconds: input.expected_duration_seconds,
            requester: Some(input.requester.clone().unwrap_or_else(|| ctx.actor.username.clone())),
            release_id,
            depends_on,
        };
        App::run_check(&facts, request)
    }

    fn run_check(facts: &CalendarFacts, request: CheckRequest) -> AppResult<CheckResult> {
        request.validate()?;
        let end = request.start + Duration::seconds(i64::from(request.expected_duration_seconds.max(1)));
        let conflicts = facts.index.check(&request)?;
        let clear = !conflicts.iter().any(|c| c.severity == signalbox_calendar::conflict::Severity::Blocking);
        Ok(CheckResult { target: request.target, start: request.start, end, clear, conflicts })
    }

    /// `GET /api/v1/releases/{id}/conflicts`: every target of the release's planned window.
    pub async fn release_conflicts(&self, ctx: &RequestContext, release: &str) -> AppResult<ReleaseConflicts> {
        let rel: Release = self.get_resource(ctx, Kind::Release, release).await?.value;
        let Some(window) = rel.planned_window.clone() else {
            return Err(AppError::invalid(
                "planned_window",
                "the release has no planned window; set one to check its plan against the calendar",
            ));
        };
        if rel.target_environments.is_empty() {
            return Err(AppError::invalid("target_environments", "the release targets no environment; add one to check its plan"));
        }
        let facts = self.calendar_facts().await?;
        let seconds = (window.end - window.start).num_seconds().clamp(1, i64::from(signalbox_calendar::conflict::MAX_CHECK_SECONDS));
        let mut checks = Vec::new();
        for (_, target) in facts.catalog.release_targets(&rel) {
            let request = CheckRequest {
                target,
                start: window.start,
                expected_duration_seconds: seconds as u32,
                requester: Some(rel.owner.clone()),
                release_id: Some(rel.id.clone()),
                depends_on: rel.depends_on.clone(),
            };
            checks.push(App::run_check(&facts, request)?);
        }
        let deploying_now_blocked_by = self.freeze_blockers(&mut Reader::Store(self.store.as_ref()), &rel, None, Utc::now()).await?;
        Ok(ReleaseConflicts { release_id: rel.id, release_key: rel.key, checks, deploying_now_blocked_by })
    }

    /// `POST /api/v1/calendar/preview`: what a freeze would block, without saving it.
    pub async fn preview_freeze(&self, ctx: &RequestContext, mut draft: EntryDraft) -> AppResult<FreezePreview> {
        ctx.actor.require(Permission::Read, &ResourceScopes::organization())?;
        if draft.kind != EntryKind::Freeze {
            return Err(AppError::invalid("kind", "only a freeze can be previewed for what it would block"));
        }
        let catalog = self.catalog().await?;
        let entry = App::validate_entry(&catalog, "preview", 1, &mut draft)?;
        let now = Utc::now();
        let blocked = self.preview_entry(&catalog, &entry, now).await?;
        let (from, to) = match &entry.timing {
            signalbox_calendar::Timing::OneOff(span) => (span.start, span.end),
            signalbox_calendar::Timing::Recurring(_) => (now, now + Duration::days(400)),
        };
        Ok(FreezePreview { from, to, blocked })
    }

    /// Reasons a release must not enter `deploying` now: a freeze covering one of its
    /// (service, environment) targets is in force, or the expected run (until the end of its
    /// planned window, else an hour) runs into one. A confirmed, unexpired break-glass with
    /// `freeze: true` for that environment lets it through. `environment` narrows the check to
    /// one environment (id or name), as the transition request does.
    ///
    /// Call it inside the transition's transaction, next to `governance_blockers`:
    /// `self.freeze_blockers(&mut Reader::Tx(&mut m), &release, environment, now)`.
    pub(crate) async fn freeze_blockers(
        &self,
        reader: &mut Reader<'_, '_>,
        release: &Release,
        environment: Option<&str>,
        now: DateTime<Utc>,
    ) -> AppResult<Vec<String>> {
        let records = reader_load_all(reader, entries_query(EntryKind::Freeze)).await?;
        if records.is_empty() {
            return Ok(vec![]);
        }
        let freezes = entries_of(&records)?;
        let catalog = Catalog::load(reader).await?;
        let glass: Vec<BreakGlass> =
            decode_all(&reader_load_all(reader, ListQuery::all(Kind::BreakGlass).with_parent(release.id.clone())).await?)?;
        let end =
            release.planned_window.as_ref().map(|w| w.end).filter(|e| *e > now).unwrap_or(now + Duration::seconds(DEFAULT_DEPLOY_SECONDS));
        let seconds = (end - now).num_seconds().clamp(1, i64::from(signalbox_calendar::conflict::MAX_CHECK_SECONDS)) as u32;
        let index = ConflictIndex::build(freezes, vec![], vec![], now - Duration::days(1), now + Duration::days(8));
        let mut reasons = Vec::new();
        for (env, target) in catalog.release_targets(release) {
            if let Some(e) = environment {
                if env.id != e && env.name != e {
                    continue;
                }
            }
            let bypassed = glass.iter().any(|b| b.freeze && b.environment_id == env.id && b.state(now) == BreakGlassState::Active);
            if bypassed {
                continue;
            }
            let request = CheckRequest {
                target: target.clone(),
                start: now,
                expected_duration_seconds: seconds,
                requester: None,
                release_id: Some(release.id.clone()),
                depends_on: vec![],
            };
            for c in index.check(&request)? {
                if matches!(c.kind, ConflictKind::InsideFreeze | ConflictKind::RunsIntoFreeze) {
                    reasons.push(format!(
                        "{} in {} is frozen: {}; only a confirmed break-glass with freeze=true for {} gets through",
                        target.service, env.name, c.reason, env.name
                    ));
                }
            }
        }
        reasons.dedup();
        Ok(reasons)
    }

    /// The calendar's word on one rollout step of `service` in `environment` at `now`, expected
    /// to take `seconds`: freezes (with their effect) and release windows, for the promotion
    /// controller (issue 6). Unlike [`App::freeze_blockers`], the environment need not be one of
    /// the release's targets (promotion paths pass through dev and staging too). A confirmed,
    /// unexpired break-glass with `freeze: true` for the environment lifts freezes.
    pub(crate) async fn rollout_calendar(
        &self,
        reader: &mut Reader<'_, '_>,
        release: &Release,
        service_id: &str,
        environment_id: &str,
        now: DateTime<Utc>,
        seconds: u32,
    ) -> AppResult<Vec<Conflict>> {
        let mut records = reader_load_all(reader, entries_query(EntryKind::Freeze)).await?;
        records.extend(reader_load_all(reader, entries_query(EntryKind::ReleaseWindow)).await?);
        if records.is_empty() {
            return Ok(vec![]);
        }
        let entries = entries_of(&records)?;
        let catalog = Catalog::load(reader).await?;
        let Some(env) = catalog.environments.get(environment_id).cloned() else { return Ok(vec![]) };
        let target = catalog.target(catalog.services.get(service_id), release.domain_id.as_deref(), &env);
        let glass: Vec<BreakGlass> =
            decode_all(&reader_load_all(reader, ListQuery::all(Kind::BreakGlass).with_parent(release.id.clone())).await?)?;
        let bypassed = glass.iter().any(|b| b.freeze && b.environment_id == env.id && b.state(now) == BreakGlassState::Active);
        let index = ConflictIndex::build(entries, vec![], vec![], now - Duration::days(1), now + Duration::days(8));
        let request = CheckRequest {
            target,
            start: now,
            expected_duration_seconds: seconds.clamp(1, signalbox_calendar::conflict::MAX_CHECK_SECONDS),
            requester: None,
            release_id: Some(release.id.clone()),
            depends_on: vec![],
        };
        Ok(index
            .check(&request)?
            .into_iter()
            .filter(|c| match c.kind {
                ConflictKind::InsideFreeze | ConflictKind::RunsIntoFreeze => !bypassed,
                ConflictKind::OutsideReleaseWindow => true,
                _ => false,
            })
            .collect())
    }

    /// Freezes in force at `at` for a flag set (issue 7: scheduled flag changes): the set of one
    /// service is checked as that service in the environment; an environment-wide set is checked
    /// as every service of the catalog in that environment (and as the environment alone), so a
    /// freeze of any one service there also holds changes to flags every service reads.
    /// Break-glass does not apply (it belongs to releases).
    pub(crate) async fn flag_freezes(
        &self,
        reader: &mut Reader<'_, '_>,
        environment_id: &str,
        service_id: Option<&str>,
        at: DateTime<Utc>,
    ) -> AppResult<Vec<Conflict>> {
        let records = reader_load_all(reader, entries_query(EntryKind::Freeze)).await?;
        if records.is_empty() {
            return Ok(vec![]);
        }
        let entries = entries_of(&records)?;
        let catalog = Catalog::load(reader).await?;
        let Some(env) = catalog.environments.get(environment_id).cloned() else { return Ok(vec![]) };
        let mut targets = vec![catalog.target(None, None, &env)];
        match service_id {
            Some(id) => targets = catalog.services.get(id).map(|s| vec![catalog.target(Some(s), None, &env)]).unwrap_or(targets),
            None => {
                let mut services: Vec<&Service> = catalog.services.values().collect();
                services.sort_by(|a, b| a.name.cmp(&b.name));
                targets.extend(services.into_iter().map(|s| catalog.target(Some(s), None, &env)));
            }
        }
        let index = ConflictIndex::build(entries, vec![], vec![], at - Duration::days(1), at + Duration::days(8));
        let mut out: Vec<Conflict> = Vec::new();
        for target in targets {
            let request =
                CheckRequest { target, start: at, expected_duration_seconds: 1, requester: None, release_id: None, depends_on: vec![] };
            for c in index.check(&request)? {
                if matches!(c.kind, ConflictKind::InsideFreeze | ConflictKind::RunsIntoFreeze)
                    && !out.iter().any(|o| o.entry_id == c.entry_id && o.start == c.start)
                {
                    out.push(c);
                }
            }
        }
        Ok(out)
    }

    /// `POST /api/v1/calendar/feed-tokens`.
    pub async fn create_feed_token(&self, ctx: &RequestContext, req: CreateFeedToken) -> AppResult<IssuedFeedToken> {
        ctx.actor.require(Permission::ManageOwnTokens, &ResourceScopes::organization())?;
        let name = req.name.trim();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(AppError::invalid("name", "must be 1–200 characters without control characters"));
        }
        let mut raw = [0u8; 24];
        getrandom::fill(&mut raw).map_err(|e| AppError::Internal(format!("no randomness: {e}")))?;
        let secret = format!("sbxf_{}", hex::encode(raw));
        let id = new_id(Kind::FeedToken);
        let token = FeedToken {
            id: id.clone(),
            name: name.to_string(),
            filter: req.filter,
            created_by: ctx.actor.username.clone(),
            created_at: Utc::now(),
        };
        let mut m = Mutation::begin(self, ctx).await?;
        let place = Placement { key: Some(feed_key(&secret)), parent: Some(ctx.actor.user_id.clone()), state: None };
        m.insert_secret("feed_token.create", Kind::FeedToken, &id, place, &token, serde_json::to_value(&token).unwrap_or_default()).await?;
        let issued = IssuedFeedToken { token, secret };
        m.commit(201, &serde_json::json!({"token": issued.token})).await?;
        Ok(issued)
    }

    /// `GET /calendar.ics?token=…`: the feed, read with a feed token (no user token).
    pub async fn calendar_feed(&self, secret: &str, filter: &ScopeFilter) -> AppResult<String> {
        let record =
            self.store.get(Kind::FeedToken, &feed_key(secret)).await?.ok_or_else(|| {
                AppError::Forbidden("the feed token is not valid; create one with POST /api/v1/calendar/feed-tokens".into())
            })?;
        let token: FeedToken = decode(&record)?.value;
        let entries: Vec<CalendarEntry> =
            self.stored_entries().await?.into_iter().filter(|e| token.filter.admits(e) && filter.admits(e)).collect();
        let now = Utc::now();
        let departures = self.feed_departures(&token.filter, filter, now).await?;
        let options =
            ics::ExportOptions { dtstamp: now, calendar_name: format!("Signalbox — {}", token.name), uid_domain: "signalbox".into() };
        Ok(ics::export(&entries, &departures, &options))
    }

    /// The train departures a feed shows: for every train both filters admit, its departures
    /// from a week ago to [`FEED_DEPARTURE_DAYS`] ahead — by its cadence, plus materialized ones
    /// that no longer match it (a train whose cadence was changed keeps them) — each with its
    /// cut-off. SEQUENCE is the train's version, so changing a train updates its events.
    async fn feed_departures(&self, a: &ScopeFilter, b: &ScopeFilter, now: DateTime<Utc>) -> AppResult<Vec<ics::DepartureEvent>> {
        let (from, to) = (now - Duration::days(7), now + Duration::days(FEED_DEPARTURE_DAYS));
        let catalog = self.catalog().await?;
        let mut out = Vec::new();
        for record in load_all(self.store.as_ref(), ListQuery::all(Kind::Train)).await? {
            let Versioned { version, value: train } = decode::<Train>(&record)?;
            if !(train_admitted(&catalog, &train, a) && train_admitted(&catalog, &train, b)) {
                continue;
            }
            let Ok(cadence) = TrainCadence::from_draft(&train.cadence) else { continue };
            let mut times: Vec<Departure> = cadence.next_departures(from, 500).into_iter().take_while(|d| d.departure <= to).collect();
            let materialized: Vec<DepartureRecord> =
                decode_all(&load_all(self.store.as_ref(), ListQuery::all(Kind::Departure).with_parent(train.id.clone())).await?)?;
            for d in materialized {
                if d.times.departure >= from && d.times.departure <= to && !times.iter().any(|t| t.departure == d.times.departure) {
                    times.push(d.times);
                }
            }
            times.sort_by_key(|t| t.departure);
            let title = format!("{} departure", train.name);
            let version = u32::try_from(version).unwrap_or(u32::MAX);
            out.extend(times.into_iter().map(|departure| ics::DepartureEvent {
                train_id: train.id.clone(),
                title: title.clone(),
                departure,
                version,
            }));
        }
        Ok(out)
    }

    /// `POST /api/v1/calendar/import`: every event becomes an entry, in one audited transaction.
    pub async fn import_calendar(&self, ctx: &RequestContext, req: ImportRequest) -> AppResult<ImportResult> {
        let catalog = self.catalog().await?;
        let mut options = req.options;
        options.scope = normalize_scope(&catalog, &options.scope)?;
        ctx.actor.require(Permission::EditRelease, &entry_scopes(&catalog, &options.scope))?;
        if options.kind == EntryKind::Booking {
            return Err(AppError::invalid("kind", "bookings are not imported; import holidays as business_event or freeze"));
        }
        let events = ics::import(&req.ics, &options)?;
        let mut m = Mutation::begin(self, ctx).await?;
        let mut created = Vec::new();
        for event in events {
            let id = new_id(Kind::CalendarEntry);
            let mut draft = event.draft;
            App::validate_entry(&catalog, &id, 1, &mut draft).map_err(|e| prefix_fields(e, &format!("file/line/{}", event.line)))?;
            let record = EntryRecord { id: id.clone(), version: 1, draft, booking: None };
            m.insert("calendar_entry.import", Kind::CalendarEntry, &id, scope_placement(&record), &record).await?;
            created.push(record);
        }
        if created.is_empty() {
            return Err(AppError::invalid("ics", "the file holds no event to import"));
        }
        let result = ImportResult { created };
        m.commit(201, &result).await?;
        Ok(result)
    }
}

fn prefix_fields(e: AppError, prefix: &str) -> AppError {
    match e {
        AppError::Invalid(errors) => AppError::Invalid(
            errors.into_iter().map(|f| signalbox_domain::FieldError::new(format!("{prefix}/{}", f.field), f.message)).collect(),
        ),
        other => other,
    }
}

/// Feed tokens are found by the hash of their secret.
fn feed_key(secret: &str) -> String {
    format!("feed:{}", hex::encode(Sha256::digest(secret.as_bytes())))
}

/// Parses `from`/`to` of a calendar view; `to` defaults to 31 days after `from`.
pub fn view_range(from: Option<&str>, to: Option<&str>, now: DateTime<Utc>) -> AppResult<(DateTime<Utc>, DateTime<Utc>)> {
    let parse = |field: &str, raw: &str| {
        DateTime::parse_from_rfc3339(raw)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| AppError::invalid(field, format!("{raw:?} is not an RFC 3339 date-time; write e.g. 2026-12-01T00:00:00Z")))
    };
    let from = match from {
        Some(f) => parse("from", f)?,
        None => now,
    };
    let to = match to {
        Some(t) => parse("to", t)?,
        None => from + Duration::days(31),
    };
    if to <= from {
        return Err(AppError::invalid("to", "must be after from"));
    }
    if to - from > Duration::days(signalbox_calendar::model::MAX_EXPANSION_DAYS) {
        return Err(AppError::invalid(
            "to",
            format!("the range is longer than {} days; ask for less", signalbox_calendar::model::MAX_EXPANSION_DAYS),
        ));
    }
    Ok((from, to))
}

impl App {
    /// Adds the demo's freezes, windows, holidays and bookings.
    pub(crate) async fn seed_calendar_demo(&self, ctx: &RequestContext) -> AppResult<()> {
        let catalog = self.catalog().await?;
        let year = Utc::now().format("%Y").to_string();
        let mut drafts: Vec<serde_json::Value> = vec![
            serde_json::json!({
                "kind": "freeze", "title": "Year-end freeze", "reason": "Peak trading; no production changes without break-glass",
                "owner": "release-managers", "scope": {"level": "environment_tier", "tier": "prod"}, "zone": "Europe/Berlin",
                "timing": {"type": "one_off", "start": format!("{year}-12-18T18:00:00+01:00"),
                           "end": format!("{}-01-04T08:00:00+01:00", year.parse::<i32>().unwrap_or(2026) + 1)},
                "freeze_effect": "stop_at_next_step"
            }),
            serde_json::json!({
                "kind": "maintenance_window", "title": "Database patching", "reason": "Monthly DBA patch window; expect failovers",
                "owner": "platform", "scope": {"level": "organization"}, "zone": "Europe/Berlin",
                "timing": {"type": "recurring", "dtstart": format!("{year}-01-06T22:00:00"), "rrule": "FREQ=MONTHLY;BYDAY=1TU", "duration": "PT3H"}
            }),
            serde_json::json!({
                "kind": "business_event", "title": "Christmas Day", "reason": "Public holiday",
                "owner": "people-ops", "scope": {"level": "organization"}, "zone": "Europe/Berlin",
                "timing": {"type": "recurring", "dtstart": format!("{year}-12-25T00:00:00"), "rrule": "FREQ=YEARLY", "duration": "P1D"}
            }),
            serde_json::json!({
                "kind": "business_event", "title": "New Year's Day", "reason": "Public holiday",
                "owner": "people-ops", "scope": {"level": "organization"}, "zone": "Europe/Berlin",
                "timing": {"type": "recurring", "dtstart": format!("{year}-01-01T00:00:00"), "rrule": "FREQ=YEARLY", "duration": "P1D"}
            }),
        ];
        // Storefront ships continuously behind canary analysis (the promotion demo), so only
        // the other domains keep a weekly window.
        for d in catalog.domains.values().filter(|d| d.name != "storefront") {
            drafts.push(serde_json::json!({
                "kind": "release_window", "title": format!("{} weekly window", d.name), "reason": "On-call staffed; the train departs then",
                "owner": "release-managers", "scope": {"level": "domain", "domain": d.name}, "zone": "Europe/Lisbon",
                "timing": {"type": "recurring", "dtstart": format!("{year}-01-01T10:00:00"), "rrule": "FREQ=WEEKLY;BYDAY=TH", "duration": "PT4H"}
            }));
        }
        if let Some(env) = catalog.environments.values().find(|e| e.tier == Tier::Staging) {
            let start = Utc::now() + Duration::days(2);
            drafts.push(serde_json::json!({
                "kind": "booking", "title": "Load-test campaign", "reason": "Black-Friday rehearsal", "owner": "admin",
                "scope": {"level": "environment", "environment": env.name}, "zone": "UTC",
                "timing": {"type": "one_off", "start": stamp(start), "end": stamp(start + Duration::days(1))}
            }));
        }
        for d in drafts {
            let draft: EntryDraft = serde_json::from_value(d).map_err(|e| AppError::Internal(format!("demo calendar entry: {e}")))?;
            self.create_entry(ctx, draft, false).await?.map_err(|_| AppError::Internal("demo entry was a dry run".into()))?;
        }
        // A weekly train per domain: Thursday 10:00 Lisbon, frozen 40 hours before (Tuesday 18:00).
        let prod: Vec<String> = catalog.environments.values().filter(|e| e.tier == Tier::Prod).map(|e| e.name.clone()).collect();
        let mut domains: Vec<&Domain> = catalog.domains.values().collect();
        domains.sort_by(|a, b| a.name.cmp(&b.name));
        for d in domains {
            let req = CreateTrain {
                name: format!("{}-weekly", d.name),
                domain: d.id.clone(),
                cadence: CadenceDraft {
                    zone: "Europe/Lisbon".into(),
                    dtstart: format!("{year}-01-01T10:00:00"),
                    rrule: "FREQ=WEEKLY;BYDAY=TH".into(),
                    exdates: vec![],
                    cutoff_before: Some("PT40H".into()),
                },
                target_environments: prod.clone(),
                template: None,
            };
            self.create_train(ctx, req).await?;
        }
        Ok(())
    }
}

// ---- release trains --------------------------------------------------------------------------

/// `POST /api/v1/trains`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTrain {
    /// Unique name, e.g. `payments-weekly`.
    pub name: String,
    /// Domain id or name.
    pub domain: String,
    pub cadence: CadenceDraft,
    /// Environment ids or names every departure deploys to.
    #[serde(default)]
    pub target_environments: Vec<String>,
    /// Template (id or name) of the departures' releases; `standard` when omitted.
    #[serde(default)]
    pub template: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Train {
    pub id: String,
    pub name: String,
    pub domain_id: String,
    pub cadence: CadenceDraft,
    pub target_environments: Vec<String>,
    pub template_id: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// Something on a departure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TrainItem {
    /// The artifact's or change's id.
    pub id: String,
    /// `artifact` or `change`.
    pub item_kind: String,
    /// Marked ready by a person (when boarded or later). It leaves at departure when it is ready
    /// and its governance gates pass for every target environment of the train.
    pub ready: bool,
    #[serde(default)]
    pub blocker: Option<String>,
    pub boarded_by: String,
    pub boarded_at: DateTime<Utc>,
    /// The departure it was carried over from, with why.
    #[serde(default)]
    pub carried_from: Option<String>,
}

/// A materialized departure: one per train and departure instant (its key), with its release.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DepartureRecord {
    pub id: String,
    pub train_id: String,
    pub train_name: String,
    #[serde(flatten)]
    pub times: Departure,
    /// `boarding`, `frozen` or `departed`.
    pub phase: DeparturePhase,
    pub release_id: String,
    pub items: Vec<TrainItem>,
    #[serde(default)]
    pub carried_over: Vec<CarriedItem>,
    /// What happened to it, in order (cut-off, departure, lateness).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// `POST /api/v1/trains/{id}/board`: exactly one of `artifact` and `change`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BoardRequest {
    /// Artifact id or `service@version`.
    #[serde(default)]
    pub artifact: Option<String>,
    /// Change id.
    #[serde(default)]
    pub change: Option<String>,
    /// Whether it may leave as is (default false: it must be marked ready before departure).
    #[serde(default)]
    pub ready: bool,
}

/// `PUT /api/v1/departures/{id}/items/{item}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkItem {
    pub ready: bool,
    /// Why it is not ready (recorded when it is carried over).
    #[serde(default)]
    pub blocker: Option<String>,
}

/// `PATCH /api/v1/trains/{id}`: the fields given are replaced; the domain stays.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTrain {
    #[serde(default)]
    pub name: Option<String>,
    /// A whole new cadence; governs departures materialized from now on.
    #[serde(default)]
    pub cadence: Option<CadenceDraft>,
    /// Environment ids or names (replaces the list).
    #[serde(default)]
    pub target_environments: Option<Vec<String>>,
    /// Template id or name.
    #[serde(default)]
    pub template: Option<String>,
}

/// A train with its next departures.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TrainView {
    pub train: Train,
    /// The next departures by the cadence (materialized or not).
    pub upcoming: Vec<Departure>,
    /// Materialized departures, latest first.
    pub departures: Vec<DepartureRecord>,
}

pub(crate) fn departure_key(train_id: &str, at: DateTime<Utc>) -> String {
    format!("{train_id}@{}", stamp(at))
}

fn departure_placement(d: &DepartureRecord) -> Placement {
    Placement {
        key: Some(departure_key(&d.train_id, d.times.departure)),
        parent: Some(d.train_id.clone()),
        state: Some(phase_name(d.phase).into()),
    }
}

pub(crate) fn phase_name(p: DeparturePhase) -> &'static str {
    match p {
        DeparturePhase::Boarding => "boarding",
        DeparturePhase::Frozen => "frozen",
        DeparturePhase::Departed => "departed",
    }
}

fn release_placement(r: &Release) -> Placement {
    Placement { key: Some(r.key.clone()), parent: r.domain_id.clone(), state: Some(r.state.as_str().to_string()) }
}

impl App {
    pub async fn create_train(&self, ctx: &RequestContext, req: CreateTrain) -> AppResult<Versioned<Train>> {
        let name = signalbox_domain::validate::Name::parse("name", &req.name)?;
        TrainCadence::from_draft(&req.cadence)?;
        let mut m = Mutation::begin(self, ctx).await?;
        let domain: Domain = App::resolve_ref(&mut m, Kind::Domain, "domain", &req.domain).await?.value;
        ctx.actor.require(Permission::EditRelease, &ResourceScopes::organization().with(AccessScope::Domain(domain.id.clone())))?;
        let mut envs = Vec::new();
        for (i, e) in req.target_environments.iter().enumerate() {
            envs.push(App::resolve_ref::<Environment>(&mut m, Kind::Environment, &format!("target_environments/{i}"), e).await?.value.id);
        }
        let template: signalbox_domain::templates::Template =
            App::resolve_ref(&mut m, Kind::Template, "template", req.template.as_deref().unwrap_or("standard")).await?.value;
        let train = Train {
            id: new_id(Kind::Train),
            name: name.as_str().to_string(),
            domain_id: domain.id,
            cadence: req.cadence,
            target_environments: envs,
            template_id: template.id,
            created_by: ctx.actor.username.clone(),
            created_at: m.now,
        };
        let place = Placement { key: Some(train.name.clone()), parent: Some(train.domain_id.clone()), state: None };
        let version = m.insert("train.create", Kind::Train, &train.id, place, &train).await?;
        m.commit(201, &train).await?;
        Ok(Versioned { version, value: train })
    }

    pub async fn list_trains(&self, ctx: &RequestContext, page: &PageRequest) -> AppResult<Paged<Train>> {
        self.list_resources(ctx, ListQuery::all(Kind::Train), page).await
    }

    /// A train with its departures; the version is the train's (its `ETag`).
    pub async fn train_view(&self, ctx: &RequestContext, id: &str) -> AppResult<Versioned<TrainView>> {
        let Versioned { version, value: train } = self.get_resource::<Train>(ctx, Kind::Train, id).await?;
        let cadence = TrainCadence::from_draft(&train.cadence)?;
        let upcoming = cadence.next_departures(Utc::now(), 5);
        let mut departures: Vec<DepartureRecord> =
            decode_all(&load_all(self.store.as_ref(), ListQuery::all(Kind::Departure).with_parent(train.id.clone())).await?)?;
        departures.sort_by_key(|d| std::cmp::Reverse(d.times.departure));
        Ok(Versioned { version, value: TrainView { train, upcoming, departures } })
    }

    /// `PATCH /api/v1/trains/{id}`. Departures already materialized keep their times, items
    /// and releases (people boarded them); the new cadence, targets and template govern the
    /// departures materialized from now on.
    pub async fn update_train(
        &self,
        ctx: &RequestContext,
        id: &str,
        if_match: Option<i64>,
        req: UpdateTrain,
    ) -> AppResult<Versioned<Train>> {
        let mut m = Mutation::begin(self, ctx).await?;
        let current: Versioned<Train> = m.get(Kind::Train, id).await?;
        ctx.actor
            .require(Permission::EditRelease, &ResourceScopes::organization().with(AccessScope::Domain(current.value.domain_id.clone())))?;
        crate::catalog::check_if_match(Kind::Train, &current.value.id, if_match, current.version)?;
        let mut next = current.value.clone();
        if let Some(name) = &req.name {
            next.name = signalbox_domain::validate::Name::parse("name", name)?.as_str().to_string();
        }
        if let Some(cadence) = req.cadence {
            TrainCadence::from_draft(&cadence)?;
            next.cadence = cadence;
        }
        if let Some(envs) = &req.target_environments {
            let mut ids = Vec::new();
            for (i, e) in envs.iter().enumerate() {
                ids.push(
                    App::resolve_ref::<Environment>(&mut m, Kind::Environment, &format!("target_environments/{i}"), e).await?.value.id,
                );
            }
            next.target_environments = ids;
        }
        if let Some(t) = &req.template {
            next.template_id =
                App::resolve_ref::<signalbox_domain::templates::Template>(&mut m, Kind::Template, "template", t).await?.value.id;
        }
        let place = Placement { key: Some(next.name.clone()), parent: Some(next.domain_id.clone()), state: None };
        let version = m.update("train.update", Kind::Train, &next.id.clone(), place, &current, &next).await?;
        m.commit(200, &next).await?;
        Ok(Versioned { version, value: next })
    }

    /// `DELETE /api/v1/trains/{id}`: refused (409 `train-has-boarded-departures`, naming them)
    /// while a departure that has not left carries items. Otherwise the train goes, and so do
    /// its empty departures that have not left: each is deleted with its pending jobs, and its
    /// release (still in planning) is cancelled. Departed departures stay as history.
    pub async fn delete_train(&self, ctx: &RequestContext, id: &str, if_match: Option<i64>) -> AppResult<()> {
        let mut m = Mutation::begin(self, ctx).await?;
        let current: Versioned<Train> = m.get(Kind::Train, id).await?;
        ctx.actor
            .require(Permission::EditRelease, &ResourceScopes::organization().with(AccessScope::Domain(current.value.domain_id.clone())))?;
        crate::catalog::check_if_match(Kind::Train, &current.value.id, if_match, current.version)?;
        let records =
            reader_load_all(&mut Reader::Tx(&mut m), ListQuery::all(Kind::Departure).with_parent(current.value.id.clone())).await?;
        let mut open: Vec<Versioned<DepartureRecord>> = Vec::new();
        for r in &records {
            let dep: Versioned<DepartureRecord> = decode(r)?;
            if dep.value.phase != DeparturePhase::Departed {
                open.push(dep);
            }
        }
        let boarded: Vec<String> = open
            .iter()
            .filter(|d| !d.value.items.is_empty())
            .map(|d| format!("{} at {} ({} item(s))", d.value.id, d.value.times.local_departure, d.value.items.len()))
            .collect();
        if !boarded.is_empty() {
            return Err(AppError::Conflict {
                code: "train-has-boarded-departures",
                detail: format!(
                    "train {} has departures with items on board: {}; let them depart, or move the items off, before deleting it",
                    current.value.name,
                    boarded.join("; ")
                ),
            });
        }
        m.set_reason(Some(format!("train {} deleted", current.value.name)));
        for dep in open {
            for kind in [crate::scheduler::JOB_CUTOFF, crate::scheduler::JOB_DEPART] {
                if let Some(job) = m.find::<crate::scheduler::Job>(Kind::Job, &crate::scheduler::job_key(kind, &dep.value.id)).await? {
                    if job.value.state == "pending" {
                        m.delete("job.cancel", Kind::Job, &job.value.id.clone(), job.version, &job.value).await?;
                    }
                }
            }
            m.delete("departure.cancel", Kind::Departure, &dep.value.id, dep.version, &dep.value).await?;
            if let Some(release) = m.find::<Release>(Kind::Release, &dep.value.release_id).await? {
                if release.value.state == ReleaseState::Planning {
                    let mut rel = release.value.clone();
                    rel.state = ReleaseState::Cancelled;
                    rel.history.push(signalbox_domain::model::StateChange {
                        from: Some(ReleaseState::Planning),
                        to: ReleaseState::Cancelled,
                        at: m.now,
                        by: ctx.actor.username.clone(),
                        reason: Some(format!("train {} deleted before this departure", current.value.name)),
                    });
                    m.update("release.cancel", Kind::Release, &rel.id.clone(), release_placement(&rel), &release, &rel).await?;
                }
            }
        }
        m.delete("train.delete", Kind::Train, &current.value.id, current.version, &current.value).await?;
        m.commit(204, &serde_json::Value::Null).await
    }

    /// The departure at `times` of `train`, materialized with its release (and its cut-off and
    /// departure jobs) if it does not exist yet. Idempotent: the key is train + instant.
    pub(crate) async fn ensure_departure(m: &mut Mutation<'_>, train: &Train, times: &Departure) -> AppResult<Versioned<DepartureRecord>> {
        if let Some(existing) = m.find::<DepartureRecord>(Kind::Departure, &departure_key(&train.id, times.departure)).await? {
            return Ok(existing);
        }
        let template: signalbox_domain::templates::Template = m.get(Kind::Template, &train.template_id).await?.value;
        let number = m.next_number("release").await?;
        let by = m.context().actor.username.clone();
        let release = Release {
            id: new_id(Kind::Release),
            key: format!("R-{number}"),
            name: format!("{} {}", train.name, times.local_departure),
            version: None,
            domain_id: Some(train.domain_id.clone()),
            owner: train.created_by.clone(),
            template_id: template.id.clone(),
            state: ReleaseState::Planning,
            components: vec![],
            change_ids: vec![],
            target_environments: train.target_environments.clone(),
            planned_window: Some(signalbox_domain::model::PlannedWindow {
                start: times.departure,
                end: times.departure + Duration::hours(1),
            }),
            documents: Default::default(),
            required_documents: template.required_documents.clone(),
            depends_on: vec![],
            kill_switch_flags: vec![],
            tasks: template.instantiate_tasks(),
            review: None,
            history: vec![signalbox_domain::model::StateChange {
                from: None,
                to: ReleaseState::Planning,
                at: m.now,
                by: by.clone(),
                reason: Some(format!("departure of train {} at {}", train.name, times.local_departure)),
            }],
            content_digest: Release::compute_content_digest(&[], &[]),
            created_by: by,
            created_at: m.now,
        };
        m.insert("release.create", Kind::Release, &release.id, release_placement(&release), &release).await?;
        let dep = DepartureRecord {
            id: new_id(Kind::Departure),
            train_id: train.id.clone(),
            train_name: train.name.clone(),
            times: times.clone(),
            phase: DeparturePhase::Boarding,
            release_id: release.id.clone(),
            items: vec![],
            carried_over: vec![],
            notes: vec![],
        };
        let version = m.insert("departure.materialize", Kind::Departure, &dep.id, departure_placement(&dep), &dep).await?;
        crate::scheduler::plan_job(m, crate::scheduler::JOB_CUTOFF, &dep.id, times.cutoff).await?;
        crate::scheduler::plan_job(m, crate::scheduler::JOB_DEPART, &dep.id, times.departure).await?;
        Ok(Versioned { version, value: dep })
    }

    /// `POST /api/v1/trains/{id}/board`: onto the next departure whose cut-off has not passed.
    pub async fn board_train(&self, ctx: &RequestContext, train_ref: &str, req: BoardRequest) -> AppResult<DepartureRecord> {
        // The scheduler may materialize the same departure concurrently: the loser of that race
        // sees a duplicate key and simply retries, finding the departure this time.
        let mut attempt = 0;
        loop {
            match self.board_once(ctx, train_ref, &req).await {
                Err(AppError::Conflict { code: "duplicate", .. }) if attempt < 3 => attempt += 1,
                other => return other,
            }
        }
    }

    async fn board_once(&self, ctx: &RequestContext, train_ref: &str, req: &BoardRequest) -> AppResult<DepartureRecord> {
        let mut m = Mutation::begin(self, ctx).await?;
        let train: Train = m.get(Kind::Train, train_ref).await?.value;
        ctx.actor.require(Permission::EditRelease, &ResourceScopes::organization().with(AccessScope::Domain(train.domain_id.clone())))?;
        let cadence = TrainCadence::from_draft(&train.cadence)?;
        let (item_id, item_kind) = match (&req.artifact, &req.change) {
            (Some(a), None) => (Reader::Tx(&mut m).artifact("artifact", a).await?.id, "artifact"),
            (None, Some(c)) => {
                let change: signalbox_domain::model::Change =
                    m.find(Kind::Change, c).await?.ok_or_else(|| AppError::invalid("change", format!("no change {c:?}")))?.value;
                (change.id, "change")
            }
            _ => return Err(AppError::invalid("artifact", "give exactly one of artifact and change")),
        };
        let now = m.now;
        let times = cadence
            .departure_for_boarding(now)
            .ok_or_else(|| AppError::Conflict { code: "train-ended", detail: format!("train {} has no further departure", train.name) })?;
        let dep = App::ensure_departure(&mut m, &train, &times).await?;
        if dep.value.items.iter().any(|i| i.id == item_id) {
            return Err(AppError::Conflict {
                code: "already-boarded",
                detail: format!("{item_id} is already on the departure at {}", times.local_departure),
            });
        }
        let item = TrainItem {
            id: item_id,
            item_kind: item_kind.into(),
            ready: req.ready,
            blocker: None,
            boarded_by: ctx.actor.username.clone(),
            boarded_at: now,
            carried_from: None,
        };
        let next = App::add_items(&mut m, &dep, vec![item]).await?;
        m.commit(200, &next).await?;
        Ok(next)
    }

    /// Adds items to a departure and to its release's content.
    pub(crate) async fn add_items(
        m: &mut Mutation<'_>,
        dep: &Versioned<DepartureRecord>,
        items: Vec<TrainItem>,
    ) -> AppResult<DepartureRecord> {
        let release: Versioned<Release> = m.get(Kind::Release, &dep.value.release_id).await?;
        let mut rel = release.value.clone();
        for item in &items {
            if item.item_kind == "artifact" {
                let a: signalbox_domain::model::Artifact = m.get(Kind::Artifact, &item.id).await?.value;
                if !rel.components.iter().any(|c| c.artifact_id == a.id) {
                    rel.components.push(signalbox_domain::model::Component {
                        service_id: a.service_id.clone(),
                        artifact_id: a.id.clone(),
                        version: a.version.clone(),
                        digest: a.digest.clone(),
                    });
                }
            } else if !rel.change_ids.contains(&item.id) {
                rel.change_ids.push(item.id.clone());
            }
        }
        rel.content_digest = Release::compute_content_digest(&rel.components, &rel.change_ids);
        m.update("release.board", Kind::Release, &rel.id.clone(), release_placement(&rel), &release, &rel).await?;
        let mut next = dep.value.clone();
        next.items.extend(items);
        m.update("departure.board", Kind::Departure, &next.id.clone(), departure_placement(&next), dep, &next).await?;
        Ok(next)
    }

    /// `PUT /api/v1/departures/{id}/items/{item}`: marks an item ready (or not, with why).
    pub async fn mark_item(&self, ctx: &RequestContext, departure: &str, item: &str, req: MarkItem) -> AppResult<DepartureRecord> {
        let mut m = Mutation::begin(self, ctx).await?;
        let dep: Versioned<DepartureRecord> = m.get(Kind::Departure, departure).await?;
        let train: Train = m.get(Kind::Train, &dep.value.train_id).await?.value;
        ctx.actor.require(Permission::EditRelease, &ResourceScopes::organization().with(AccessScope::Domain(train.domain_id)))?;
        if dep.value.phase == DeparturePhase::Departed {
            return Err(AppError::Conflict {
                code: "departed",
                detail: "the departure has left; mark the item on the departure it was carried to".into(),
            });
        }
        let mut next = dep.value.clone();
        let it = next
            .items
            .iter_mut()
            .find(|i| i.id == item)
            .ok_or_else(|| AppError::not_found(Kind::Departure, format!("{departure}/{item}")))?;
        it.ready = req.ready;
        it.blocker = req.blocker;
        m.update("departure.mark_item", Kind::Departure, &next.id.clone(), departure_placement(&next), &dep, &next).await?;
        m.commit(200, &next).await?;
        Ok(next)
    }

    /// `GET /api/v1/departures/{id}`.
    pub async fn get_departure(&self, ctx: &RequestContext, id: &str) -> AppResult<Versioned<DepartureRecord>> {
        self.get_resource(ctx, Kind::Departure, id).await
    }
}
