//! The SQL, shared by the read pool and write transactions: every function takes a connection.

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::Value;
use signalbox_domain::audit::{format_time, AuditDraft, AuditEntry};
use signalbox_domain::canonical::to_canonical_string;
use signalbox_domain::model::Kind;
use signalbox_store::{
    AuditQuery, HeadQuery, IdempotencyRecord, ListQuery, NewRecord, Page, Record, RecordHead, RecordUpdate, StoreError, StoreResult,
};
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{QueryBuilder, Row, Sqlite};

const RECORD_COLUMNS: &str = "seq, kind, id, key, parent, state, version, body, created_at, updated_at";
const AUDIT_COLUMNS: &str =
    "seq, at, actor, action, subject_kind, subject_id, before_json, after_json, reason, request_id, prev_hash, hash";

/// Audit rows per INSERT statement, well under SQLite's bound-parameter limit.
const AUDIT_INSERT_CHUNK: usize = 500;

// SQLite primary result codes (the low byte of an extended code).
const SQLITE_IOERR: i32 = 10;
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_FULL: i32 = 13;
const SQLITE_CANTOPEN: i32 = 14;

/// Connection-level failures are [`StoreError::Unavailable`]; anything else unexpected is
/// [`StoreError::Internal`].
pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            StoreError::Unavailable(e.to_string())
        }
        sqlx::Error::Database(db) => {
            let code = db.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0) & 0xff;
            match code {
                SQLITE_BUSY | SQLITE_LOCKED | SQLITE_IOERR | SQLITE_FULL | SQLITE_CANTOPEN => StoreError::Unavailable(e.to_string()),
                _ => StoreError::Internal(e.to_string()),
            }
        }
        _ => StoreError::Internal(e.to_string()),
    }
}

pub(crate) fn migrate_err(e: sqlx::migrate::MigrateError) -> StoreError {
    match e {
        sqlx::migrate::MigrateError::Execute(e) => match db_err(e) {
            StoreError::Internal(m) => StoreError::Internal(format!("migration failed: {m}")),
            other => other,
        },
        other => StoreError::Internal(format!("migration failed: {other}")),
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Times are stored with microsecond precision; truncating before writing makes the record a
/// write returns equal to the one a later read returns.
fn micros(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

fn parse_time(raw: &str) -> StoreResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Internal(format!("stored time {raw:?} is not RFC 3339: {e}")))
}

fn parse_json(raw: &str, what: &str) -> StoreResult<Value> {
    serde_json::from_str(raw).map_err(|e| StoreError::Internal(format!("stored {what} is not JSON: {e}")))
}

/// Normalises an RFC 3339 bound to the stored form so text comparison orders correctly;
/// anything else is compared as given.
fn time_bound(raw: &str) -> String {
    DateTime::parse_from_rfc3339(raw).map(|t| format_time(t.with_timezone(&Utc))).unwrap_or_else(|_| raw.to_string())
}

/// Body field names filtered on must look like identifiers; they are bound as parameters
/// anyway, never interpolated.
pub(crate) fn valid_field(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// `kind = …`. With body-field filters the kind is written as a literal: a partial index
/// (`WHERE kind = 'deployment'`, migration 0002) is only used when the query states its
/// condition, and a bound parameter does not. Without them it stays a parameter, so that each
/// query shape is one prepared statement for every kind.
fn push_kind_filter(qb: &mut QueryBuilder<'_, Sqlite>, kind: Kind, filters_body_fields: bool) {
    if filters_body_fields {
        qb.push("kind = ").push(sql_string(kind.as_str()));
    } else {
        qb.push("kind = ").push_bind(kind.as_str());
    }
}

/// The body-field indexes of the migrations: (kind, the index's first field, index).
const FIELD_INDEXES: [(Kind, &str, &str); 1] = [(Kind::Deployment, "service_id", "resources_deployment_service_environment")];

/// ` INDEXED BY <index>` when the query filters the first field of one of [`FIELD_INDEXES`].
/// Without `ANALYZE` statistics (which this store does not keep) SQLite's planner prefers
/// walking every record of the kind (`resources_kind_seq`) to looking up a list of values in an
/// expression index; naming the index makes the read follow the values whatever the statistics.
/// Should the index stop matching the query, SQLite refuses it ("no query solution") rather
/// than scanning.
fn field_index_hint<'a>(kind: Kind, fields: impl IntoIterator<Item = &'a String>) -> String {
    let fields: Vec<&String> = fields.into_iter().collect();
    FIELD_INDEXES
        .iter()
        .find(|(k, first, _)| *k == kind && fields.iter().any(|f| f.as_str() == *first))
        .map(|(_, _, index)| format!(" INDEXED BY {index}"))
        .unwrap_or_default()
}

/// `json_extract(body, '$.<field>')` with the path as a literal, the exact expression the
/// migrations index. Callers check the name with [`valid_field`] first.
fn body_field(field: &str) -> String {
    format!("json_extract(body, {})", sql_string(&format!("$.{field}")))
}

/// A SQL string literal, quotes doubled.
fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn record_from_row(row: &SqliteRow) -> StoreResult<Record> {
    let kind_raw: String = row.try_get("kind").map_err(db_err)?;
    let kind = Kind::parse(&kind_raw).ok_or_else(|| StoreError::Internal(format!("unknown kind {kind_raw:?} in the database")))?;
    let body: String = row.try_get("body").map_err(db_err)?;
    let created_at: String = row.try_get("created_at").map_err(db_err)?;
    let updated_at: String = row.try_get("updated_at").map_err(db_err)?;
    Ok(Record {
        kind,
        id: row.try_get("id").map_err(db_err)?,
        key: row.try_get("key").map_err(db_err)?,
        parent: row.try_get("parent").map_err(db_err)?,
        state: row.try_get("state").map_err(db_err)?,
        version: row.try_get("version").map_err(db_err)?,
        body: parse_json(&body, "record body")?,
        seq: row.try_get("seq").map_err(db_err)?,
        created_at: parse_time(&created_at)?,
        updated_at: parse_time(&updated_at)?,
    })
}

fn audit_from_row(row: &SqliteRow) -> StoreResult<AuditEntry> {
    let before: Option<String> = row.try_get("before_json").map_err(db_err)?;
    let after: Option<String> = row.try_get("after_json").map_err(db_err)?;
    Ok(AuditEntry {
        seq: row.try_get("seq").map_err(db_err)?,
        at: row.try_get("at").map_err(db_err)?,
        actor: row.try_get("actor").map_err(db_err)?,
        action: row.try_get("action").map_err(db_err)?,
        subject_kind: row.try_get("subject_kind").map_err(db_err)?,
        subject_id: row.try_get("subject_id").map_err(db_err)?,
        before: before.as_deref().map(|b| parse_json(b, "audit before")).transpose()?,
        after: after.as_deref().map(|a| parse_json(a, "audit after")).transpose()?,
        reason: row.try_get("reason").map_err(db_err)?,
        request_id: row.try_get("request_id").map_err(db_err)?,
        prev_hash: row.try_get("prev_hash").map_err(db_err)?,
        hash: row.try_get("hash").map_err(db_err)?,
    })
}

pub(crate) async fn get(conn: &mut SqliteConnection, kind: Kind, id_or_key: &str) -> StoreResult<Option<Record>> {
    // An id match wins over a key match, should one record's key equal another's id.
    let sql = format!(
        "SELECT {RECORD_COLUMNS} FROM resources WHERE kind = ? AND (id = ? OR key = ?) \
         ORDER BY CASE WHEN id = ? THEN 0 ELSE 1 END LIMIT 1"
    );
    let row = sqlx::query(&sql)
        .bind(kind.as_str())
        .bind(id_or_key)
        .bind(id_or_key)
        .bind(id_or_key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    row.as_ref().map(record_from_row).transpose()
}

/// The `SELECT` of [`list`], pushed onto `qb` (after an `EXPLAIN`, say).
pub(crate) fn push_list_select(qb: &mut QueryBuilder<'_, Sqlite>, query: &ListQuery) -> StoreResult<()> {
    if let Some(field) = query.fields.iter().map(|(f, _)| f).chain(query.times_at_most.iter().map(|(f, _)| f)).find(|f| !valid_field(f)) {
        return Err(StoreError::Internal(format!("invalid body field name {field:?}")));
    }
    qb.push(format!("SELECT {RECORD_COLUMNS} FROM resources{} WHERE ", field_index_hint(query.kind, query.fields.iter().map(|(f, _)| f))));
    push_kind_filter(qb, query.kind, !query.fields.is_empty());
    if let Some(parent) = &query.parent {
        qb.push(" AND parent = ").push_bind(parent.clone());
    }
    if let Some(state) = &query.state {
        qb.push(" AND state = ").push_bind(state.clone());
    }
    for (field, value) in &query.fields {
        // Only string fields match, as in the PostgreSQL backend: `json_extract` yields SQL text
        // only for JSON strings, and text never equals an integer, a real or NULL.
        qb.push(" AND ").push(body_field(field)).push(" = ").push_bind(value.clone());
    }
    for (field, at) in &query.times_at_most {
        // `julianday` reads RFC 3339 (any fraction digits, `Z` or an offset) and is NULL for
        // anything else, which then does not match.
        qb.push(" AND julianday(json_extract(body, '$.' || ").push_bind(field.clone()).push(")) <= julianday(");
        qb.push_bind(at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)).push(")");
    }
    if let Some(at) = query.created_after {
        // `created_at` is always written by `format_time` (UTC, six fraction digits, `Z`), so text
        // order is time order, to the microsecond (`julianday` keeps only about a millisecond).
        qb.push(" AND created_at > ").push_bind(format_time(micros(at)));
    }
    if let Some(after) = query.after_seq {
        qb.push(" AND seq > ").push_bind(after);
    }
    qb.push(" ORDER BY seq");
    if query.limit > 0 {
        qb.push(" LIMIT ").push_bind(i64::from(query.limit) + 1);
    }
    Ok(())
}

/// SQLite's plan for `select` (a query pushed by [`push_list_select`] or [`push_heads_select`]):
/// the `detail` of every `EXPLAIN QUERY PLAN` row, one per line.
pub(crate) async fn query_plan(
    conn: &mut SqliteConnection,
    select: impl FnOnce(&mut QueryBuilder<'_, Sqlite>) -> StoreResult<()>,
) -> StoreResult<String> {
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("EXPLAIN QUERY PLAN ");
    select(&mut qb)?;
    let rows = qb.build().fetch_all(&mut *conn).await.map_err(db_err)?;
    let details = rows.iter().map(|r| r.try_get::<String, _>("detail")).collect::<Result<Vec<_>, _>>().map_err(db_err)?;
    Ok(details.join("\n"))
}

/// `limit == 0` means no limit.
pub(crate) async fn list(conn: &mut SqliteConnection, query: &ListQuery) -> StoreResult<Page> {
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("");
    push_list_select(&mut qb, query)?;
    let rows = qb.build().fetch_all(&mut *conn).await.map_err(db_err)?;
    let mut items = rows.iter().map(record_from_row).collect::<StoreResult<Vec<_>>>()?;
    let mut next_after_seq = None;
    if query.limit > 0 && items.len() > query.limit as usize {
        items.truncate(query.limit as usize);
        next_after_seq = items.last().map(|r| r.seq);
    }
    Ok(Page { items, next_after_seq })
}

/// Lists of values are bound as one JSON array and read with `json_each`, so any number of
/// them takes one parameter.
fn json_list(values: &[String]) -> String {
    serde_json::Value::from(values.to_vec()).to_string()
}

/// `heads` and `get_many` return their rows aggregated into one JSON array, in one result row:
/// sqlx's SQLite driver hands rows over one at a time from its worker thread, which for many
/// small rows costs more than reading them (in the gate benchmark, the 200 evidence heads of a
/// release took 2.2 ms as rows and 0.8 ms as one array).
fn aggregate_err(what: &str, e: serde_json::Error) -> StoreError {
    StoreError::Internal(format!("{what} do not decode: {e}"))
}

/// `[id, parent, state, version, seq]`
type AggregatedHead = (String, Option<String>, Option<String>, i64, i64);

/// `SELECT json_group_array(...)` of the heads `query` matches, as one scalar.
pub(crate) fn push_heads_select(qb: &mut QueryBuilder<'_, Sqlite>, query: &HeadQuery) -> StoreResult<()> {
    qb.push("SELECT json_group_array(json_array(id, parent, state, version, seq)) FROM resources");
    // An empty list matches nothing and uses no index.
    qb.push(field_index_hint(query.kind, query.fields.iter().filter(|(_, values)| !values.is_empty()).map(|(f, _)| f))).push(" WHERE ");
    push_kind_filter(qb, query.kind, !query.fields.is_empty());
    if let Some(parents) = &query.parents {
        qb.push(" AND parent IN (SELECT value FROM json_each(").push_bind(json_list(parents)).push("))");
    }
    if let Some(states) = &query.states {
        qb.push(" AND state IN (SELECT value FROM json_each(").push_bind(json_list(states)).push("))");
    }
    if let Some(ids) = &query.ids {
        qb.push(" AND id IN (SELECT value FROM json_each(").push_bind(json_list(ids)).push("))");
    }
    for (field, values) in &query.fields {
        if !valid_field(field) {
            return Err(StoreError::Internal(format!("invalid body field name {field:?}")));
        }
        // Text only for JSON strings, as in `list`.
        // One parameter per value, not `json_each`: SQLite's planner takes a list of unknown
        // length to be long and would then walk every record of the kind rather than look the
        // values up in an index on the field (migration 0002).
        if values.is_empty() {
            qb.push(" AND 0");
            continue;
        }
        qb.push(" AND ").push(body_field(field)).push(" IN (");
        let mut list = qb.separated(", ");
        for value in values {
            list.push_bind(value.clone());
        }
        list.push_unseparated(")");
    }
    Ok(())
}

fn heads_of(rows: Vec<AggregatedHead>) -> Vec<RecordHead> {
    let mut heads: Vec<RecordHead> =
        rows.into_iter().map(|(id, parent, state, version, seq)| RecordHead { id, parent, state, version, seq }).collect();
    heads.sort_by_key(|h| h.seq);
    heads
}

pub(crate) async fn heads(conn: &mut SqliteConnection, query: &HeadQuery) -> StoreResult<Vec<RecordHead>> {
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("");
    push_heads_select(&mut qb, query)?;
    let raw: String = qb.build_query_scalar().fetch_one(&mut *conn).await.map_err(db_err)?;
    let rows: Vec<AggregatedHead> = serde_json::from_str(&raw).map_err(|e| aggregate_err("record heads", e))?;
    Ok(heads_of(rows))
}

/// Every query's heads in one statement: one JSON array of the per-query arrays.
pub(crate) async fn heads_many(conn: &mut SqliteConnection, queries: &[HeadQuery]) -> StoreResult<Vec<Vec<RecordHead>>> {
    if queries.is_empty() {
        return Ok(vec![]);
    }
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT '[' || ");
    for (i, query) in queries.iter().enumerate() {
        if i > 0 {
            qb.push(" || ',' || ");
        }
        qb.push("(");
        push_heads_select(&mut qb, query)?;
        qb.push(")");
    }
    qb.push(" || ']'");
    let raw: String = qb.build_query_scalar().fetch_one(&mut *conn).await.map_err(db_err)?;
    let lists: Vec<Vec<AggregatedHead>> = serde_json::from_str(&raw).map_err(|e| aggregate_err("record heads", e))?;
    Ok(lists.into_iter().map(heads_of).collect())
}

/// `[seq, kind, id, key, parent, state, version, body, created_at, updated_at]`
type AggregatedRecord = (i64, String, String, Option<String>, Option<String>, Option<String>, i64, String, String, String);

pub(crate) async fn get_many(conn: &mut SqliteConnection, kind: Kind, ids: &[String]) -> StoreResult<Vec<Record>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    // The body travels as text and is parsed exactly as `get` and `list` parse it.
    let raw: String = sqlx::query_scalar(
        "SELECT json_group_array(json_array(seq, kind, id, key, parent, state, version, body, created_at, updated_at)) \
         FROM resources WHERE kind = ? AND id IN (SELECT value FROM json_each(?))",
    )
    .bind(kind.as_str())
    .bind(json_list(ids))
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err)?;
    let rows: Vec<AggregatedRecord> = serde_json::from_str(&raw).map_err(|e| aggregate_err("records", e))?;
    let mut records = rows
        .into_iter()
        .map(|(seq, kind_raw, id, key, parent, state, version, body, created_at, updated_at)| {
            Ok(Record {
                kind: Kind::parse(&kind_raw).ok_or_else(|| StoreError::Internal(format!("unknown kind {kind_raw:?} in the database")))?,
                id,
                key,
                parent,
                state,
                version,
                body: parse_json(&body, "record body")?,
                seq,
                created_at: parse_time(&created_at)?,
                updated_at: parse_time(&updated_at)?,
            })
        })
        .collect::<StoreResult<Vec<Record>>>()?;
    records.sort_by_key(|r| r.seq);
    Ok(records)
}

pub(crate) async fn insert(conn: &mut SqliteConnection, record: NewRecord) -> StoreResult<Record> {
    let at = format_time(micros(record.at));
    let sql = format!(
        "INSERT INTO resources (kind, id, key, parent, state, version, body, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING {RECORD_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(record.kind.as_str())
        .bind(&record.id)
        .bind(&record.key)
        .bind(&record.parent)
        .bind(&record.state)
        .bind(to_canonical_string(&record.body))
        .bind(&at)
        .bind(&at)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    match row {
        Some(row) => record_from_row(&row),
        None => {
            // Nothing inserted: the key or the id is taken.
            let key_taken = match &record.key {
                Some(key) => sqlx::query_scalar::<_, i64>("SELECT 1 FROM resources WHERE kind = ? AND key = ?")
                    .bind(record.kind.as_str())
                    .bind(key)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(db_err)?
                    .is_some(),
                None => false,
            };
            let key = if key_taken { record.key.unwrap_or_default() } else { record.id };
            Err(StoreError::Duplicate { kind: record.kind, key })
        }
    }
}

pub(crate) async fn update(
    conn: &mut SqliteConnection,
    kind: Kind,
    id: &str,
    expected_version: i64,
    update: RecordUpdate,
) -> StoreResult<Record> {
    let sql = format!(
        "UPDATE resources SET key = ?, parent = ?, state = ?, body = ?, updated_at = ?, version = version + 1 \
         WHERE kind = ? AND id = ? AND version = ? RETURNING {RECORD_COLUMNS}"
    );
    let result = sqlx::query(&sql)
        .bind(&update.key)
        .bind(&update.parent)
        .bind(&update.state)
        .bind(to_canonical_string(&update.body))
        .bind(format_time(micros(update.at)))
        .bind(kind.as_str())
        .bind(id)
        .bind(expected_version)
        .fetch_optional(&mut *conn)
        .await;
    match result {
        Ok(Some(row)) => record_from_row(&row),
        Ok(None) => Err(missing_or_conflict(conn, kind, id, expected_version).await),
        Err(e) if is_unique_violation(&e) => Err(StoreError::Duplicate { kind, key: update.key.unwrap_or_default() }),
        Err(e) => Err(db_err(e)),
    }
}

pub(crate) async fn delete(conn: &mut SqliteConnection, kind: Kind, id: &str, expected_version: i64) -> StoreResult<()> {
    let done = sqlx::query("DELETE FROM resources WHERE kind = ? AND id = ? AND version = ?")
        .bind(kind.as_str())
        .bind(id)
        .bind(expected_version)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(missing_or_conflict(conn, kind, id, expected_version).await)
    }
}

/// Why an update or delete guarded by a version touched no row.
async fn missing_or_conflict(conn: &mut SqliteConnection, kind: Kind, id: &str, expected: i64) -> StoreError {
    let exists = sqlx::query_scalar::<_, i64>("SELECT 1 FROM resources WHERE kind = ? AND id = ?")
        .bind(kind.as_str())
        .bind(id)
        .fetch_optional(&mut *conn)
        .await;
    match exists {
        Ok(Some(_)) => StoreError::VersionConflict { kind, id: id.to_string(), expected },
        Ok(None) => StoreError::NotFound { kind, id: id.to_string() },
        Err(e) => db_err(e),
    }
}

pub(crate) async fn next_number(conn: &mut SqliteConnection, counter: &str) -> StoreResult<i64> {
    sqlx::query_scalar::<_, i64>(
        "INSERT INTO counters (name, value) VALUES (?, 1) \
         ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
    )
    .bind(counter)
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err)
}

pub(crate) async fn idempotency_get(conn: &mut SqliteConnection, actor: &str, key: &str) -> StoreResult<Option<IdempotencyRecord>> {
    let row = sqlx::query("SELECT actor, key, request_hash, status, body, created_at FROM idempotency_keys WHERE actor = ? AND key = ?")
        .bind(actor)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    let Some(row) = row else { return Ok(None) };
    let status: i64 = row.try_get("status").map_err(db_err)?;
    let created_at: String = row.try_get("created_at").map_err(db_err)?;
    Ok(Some(IdempotencyRecord {
        actor: row.try_get("actor").map_err(db_err)?,
        key: row.try_get("key").map_err(db_err)?,
        request_hash: row.try_get("request_hash").map_err(db_err)?,
        status: u16::try_from(status).map_err(|_| StoreError::Internal(format!("stored status {status} is out of range")))?,
        body: row.try_get("body").map_err(db_err)?,
        created_at: parse_time(&created_at)?,
    }))
}

/// `limit == 0` means no limit. `since` and `until` are inclusive.
pub(crate) async fn audit_page(conn: &mut SqliteConnection, query: &AuditQuery) -> StoreResult<Vec<AuditEntry>> {
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE 1 = 1"));
    if let Some(after) = query.after_seq {
        qb.push(" AND seq > ").push_bind(after);
    }
    if let Some(up_to) = query.up_to_seq {
        qb.push(" AND seq <= ").push_bind(up_to);
    }
    if let Some(actor) = &query.actor {
        qb.push(" AND actor = ").push_bind(actor.clone());
    }
    if let Some(action) = &query.action {
        qb.push(" AND action = ").push_bind(action.clone());
    }
    if let Some(kind) = &query.subject_kind {
        qb.push(" AND subject_kind = ").push_bind(kind.clone());
    }
    if let Some(id) = &query.subject_id {
        qb.push(" AND subject_id = ").push_bind(id.clone());
    }
    if let Some(since) = &query.since {
        qb.push(" AND at >= ").push_bind(time_bound(since));
    }
    if let Some(until) = &query.until {
        qb.push(" AND at <= ").push_bind(time_bound(until));
    }
    qb.push(" ORDER BY seq");
    if query.limit > 0 {
        qb.push(" LIMIT ").push_bind(i64::from(query.limit));
    }
    let rows = qb.build().fetch_all(&mut *conn).await.map_err(db_err)?;
    rows.iter().map(audit_from_row).collect()
}

pub(crate) async fn audit_head(conn: &mut SqliteConnection) -> StoreResult<Option<(i64, String)>> {
    sqlx::query_as::<_, (i64, String)>("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_optional(&mut *conn).await.map_err(db_err)
}

/// Records the idempotency key and seals `audit` onto the chain after `head` (the chain's last
/// `(seq, hash)`, which the caller keeps); the caller moves the stored head ([`move_head`]) and
/// commits. Runs on the write connection inside `BEGIN IMMEDIATE`, so appends are serial.
pub(crate) async fn append(
    conn: &mut SqliteConnection,
    audit: Vec<AuditDraft>,
    idempotency: Option<IdempotencyRecord>,
    head: &(i64, String),
) -> StoreResult<Vec<AuditEntry>> {
    if let Some(rec) = idempotency {
        let done = sqlx::query(
            "INSERT INTO idempotency_keys (actor, key, request_hash, status, body, created_at) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(&rec.actor)
        .bind(&rec.key)
        .bind(&rec.request_hash)
        .bind(i64::from(rec.status))
        .bind(&rec.body)
        .bind(format_time(micros(rec.created_at)))
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::IdempotencyKeyTaken { key: rec.key });
        }
    }

    let (head_seq, head_hash) = head;
    let at = chrono::Utc::now();
    let mut prev = head_hash.clone();
    let mut entries = Vec::with_capacity(audit.len());
    for (i, draft) in audit.into_iter().enumerate() {
        let entry = AuditEntry::seal(draft, head_seq + 1 + i as i64, at, &prev);
        prev = entry.hash.clone();
        entries.push(entry);
    }

    for chunk in entries.chunks(AUDIT_INSERT_CHUNK) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(format!("INSERT INTO audit_log ({AUDIT_COLUMNS}) "));
        qb.push_values(chunk, |mut b, e| {
            b.push_bind(e.seq)
                .push_bind(e.at.clone())
                .push_bind(e.actor.clone())
                .push_bind(e.action.clone())
                .push_bind(e.subject_kind.clone())
                .push_bind(e.subject_id.clone())
                .push_bind(e.before.as_ref().map(to_canonical_string))
                .push_bind(e.after.as_ref().map(to_canonical_string))
                .push_bind(e.reason.clone())
                .push_bind(e.request_id.clone())
                .push_bind(e.prev_hash.clone())
                .push_bind(e.hash.clone());
        });
        qb.build().execute(&mut *conn).await.map_err(db_err)?;
    }
    Ok(entries)
}

/// The chain's stored head, read inside the write transaction.
pub(crate) async fn stored_head(conn: &mut SqliteConnection) -> StoreResult<(i64, String)> {
    audit_head(conn).await?.ok_or_else(|| StoreError::Internal("the audit_head row is missing".into()))
}

/// Moves the stored head to `(seq, hash)`.
pub(crate) async fn move_head(conn: &mut SqliteConnection, head: &(i64, String)) -> StoreResult<()> {
    let moved = sqlx::query("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1")
        .bind(head.0)
        .bind(&head.1)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    if moved.rows_affected() != 1 {
        return Err(StoreError::Internal("the audit_head row is missing".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_identifiers() {
        for ok in ["domain_id", "_x", "a1", "name"] {
            assert!(valid_field(ok), "{ok}");
        }
        for bad in ["", "1a", "Name", "a.b", "a'--", "a b", "$.x", "é"] {
            assert!(!valid_field(bad), "{bad}");
        }
    }

    #[test]
    fn time_bounds_are_normalised_to_the_stored_form() {
        assert_eq!(time_bound("2026-01-01T01:00:00+01:00"), "2026-01-01T00:00:00.000000Z");
        assert_eq!(time_bound("2026-01-01T00:00:00.5Z"), "2026-01-01T00:00:00.500000Z");
        assert_eq!(time_bound("2026-01"), "2026-01");
    }
}
