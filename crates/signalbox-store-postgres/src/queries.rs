//! The SQL, shared by pooled reads and transactions: every function takes a connection.

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::Value;
use signalbox_domain::audit::{format_time, AuditDraft, AuditEntry};
use signalbox_domain::model::Kind;
use signalbox_store::{
    AuditQuery, HeadQuery, IdempotencyRecord, ListQuery, NewRecord, Page, Record, RecordHead, RecordUpdate, StoreError, StoreResult,
};
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{Connection, Postgres, QueryBuilder, Row};

/// The statement that writes the durability record: one small transactional WAL record (a
/// commit that wrote no WAL does not wait for the flush), answering its WAL position as
/// `durable`. A macro so that [`DURABILITY_WAIT`] and [`idempotency_get`] share one literal.
macro_rules! durability_record {
    () => {
        "SELECT pg_logical_emit_message(true, 'signalbox', '')::text AS durable"
    };
}

const RECORD_COLUMNS: &str = "seq, kind, id, key, parent, state, version, body, created_at, updated_at";
const AUDIT_COLUMNS: &str =
    "seq, at, actor, action, subject_kind, subject_id, before_json, after_json, reason, request_id, prev_hash, hash";

/// SQLSTATEs that mean "try again later" rather than "this request is wrong".
fn is_transient(code: &str) -> bool {
    code.starts_with("08") // connection exception
        || code == "40001" // serialization_failure
        || code == "40P01" // deadlock_detected
        || code == "53300" // too_many_connections
        || code == "57014" // query_canceled (statement timeout)
        || code.starts_with("57P") // admin/crash shutdown, cannot connect now
}

/// Removes the password from anything that looks like a connection URL.
pub(crate) fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(scheme_end) = rest.find("://") {
        let (head, tail) = rest.split_at(scheme_end + 3);
        out.push_str(head);
        let authority_end = tail.find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace()).unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

/// Connection-level and retryable failures are [`StoreError::Unavailable`]; anything else
/// unexpected is [`StoreError::Internal`].
pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => StoreError::Unavailable(redact(&e.to_string())),
        sqlx::Error::Database(db) if db.code().is_some_and(|c| is_transient(&c)) => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Internal(redact(&e.to_string())),
    }
}

/// The connection broke or the server ended the session (a restart, an administrator's
/// `pg_terminate_backend`): another connection may well succeed.
pub(crate) fn is_connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
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

/// PostgreSQL keeps microseconds (rounding finer input); truncating first makes the record a
/// write returns equal to the one a later read returns, and both backends agree.
pub(crate) fn micros(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
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
/// (`WHERE kind = 'deployment'`, migration 0004) is only usable by a generic plan when the
/// query states its condition, and a bound parameter does not. Without them it stays a
/// parameter, so that each query shape is one prepared statement for every kind.
fn push_kind_filter(qb: &mut QueryBuilder<'_, Postgres>, kind: Kind, filters_body_fields: bool) {
    if filters_body_fields {
        qb.push("kind = ").push(sql_string(kind.as_str()));
    } else {
        qb.push("kind = ").push_bind(kind.as_str());
    }
}

/// `(body ->> '<field>')` with the name as a literal, the exact expression the migrations
/// index. Callers check the name with [`valid_field`] first.
fn body_field(field: &str) -> String {
    format!("(body ->> {})", sql_string(field))
}

/// The body's `field` holds a JSON string (`->>` would also give text for numbers and booleans).
fn string_field_test(field: &str) -> String {
    format!("jsonb_typeof(body -> {}) = 'string'", sql_string(field))
}

/// A SQL string literal, quotes doubled (`standard_conforming_strings` is on by default since
/// PostgreSQL 9.1, so backslashes are plain characters).
fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn record_from_row(row: &PgRow) -> StoreResult<Record> {
    let kind_raw: String = row.try_get("kind").map_err(db_err)?;
    let kind = Kind::parse(&kind_raw).ok_or_else(|| StoreError::Internal(format!("unknown kind {kind_raw:?} in the database")))?;
    Ok(Record {
        kind,
        id: row.try_get("id").map_err(db_err)?,
        key: row.try_get("key").map_err(db_err)?,
        parent: row.try_get("parent").map_err(db_err)?,
        state: row.try_get("state").map_err(db_err)?,
        version: row.try_get("version").map_err(db_err)?,
        body: row.try_get("body").map_err(db_err)?,
        seq: row.try_get("seq").map_err(db_err)?,
        created_at: row.try_get("created_at").map_err(db_err)?,
        updated_at: row.try_get("updated_at").map_err(db_err)?,
    })
}

fn audit_from_row(row: &PgRow) -> StoreResult<AuditEntry> {
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

pub(crate) async fn get(conn: &mut PgConnection, kind: Kind, id_or_key: &str) -> StoreResult<Option<Record>> {
    // An id match wins over a key match, should one record's key equal another's id. Two index
    // lookups rather than one `id = $2 OR key = $2`, which PostgreSQL answers with a bitmap scan
    // of both indexes and a sort: several times the work for the store's most frequent read.
    let sql = format!(
        "SELECT 0 AS pick, {RECORD_COLUMNS} FROM resources WHERE kind = $1 AND id = $2 \
         UNION ALL SELECT 1 AS pick, {RECORD_COLUMNS} FROM resources WHERE kind = $1 AND key = $2 \
         ORDER BY pick LIMIT 1"
    );
    let row = sqlx::query(&sql).bind(kind.as_str()).bind(id_or_key).fetch_optional(&mut *conn).await.map_err(db_err)?;
    row.as_ref().map(record_from_row).transpose()
}

/// The `SELECT` of [`list`], pushed onto `qb` (after an `EXPLAIN`, say).
pub(crate) fn push_list_select(qb: &mut QueryBuilder<'_, Postgres>, query: &ListQuery) -> StoreResult<()> {
    if let Some(field) = query.fields.iter().map(|(f, _)| f).chain(query.times_at_most.iter().map(|(f, _)| f)).find(|f| !valid_field(f)) {
        return Err(StoreError::Internal(format!("invalid body field name {field:?}")));
    }
    qb.push(format!("SELECT {RECORD_COLUMNS} FROM resources WHERE "));
    push_kind_filter(qb, query.kind, !query.fields.is_empty());
    if let Some(parent) = &query.parent {
        qb.push(" AND parent = ").push_bind(parent.clone());
    }
    if let Some(state) = &query.state {
        qb.push(" AND state = ").push_bind(state.clone());
    }
    for (field, value) in &query.fields {
        // Only string fields match, as in the SQLite backend.
        qb.push(" AND ").push(string_field_test(field)).push(" AND ").push(body_field(field)).push(" = ").push_bind(value.clone());
    }
    for (field, at) in &query.times_at_most {
        // Only RFC 3339 strings are cast (ISO 8601 input reads the same under any DateStyle);
        // anything else does not match, as in the SQLite backend.
        qb.push(" AND (CASE WHEN jsonb_typeof(body -> ").push_bind(field.clone()).push("::text) = 'string' AND (body ->> ");
        qb.push_bind(field.clone()).push(
            "::text) ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$' THEN (body ->> ",
        );
        qb.push_bind(field.clone()).push("::text)::timestamptz END) <= ").push_bind(*at);
    }
    if let Some(at) = query.created_after {
        qb.push(" AND created_at > ").push_bind(at);
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

/// The generic plan PostgreSQL makes for `select` (a query pushed by [`push_list_select`] or
/// [`push_heads_select`]) with sequential scans disabled: the index a query over a large table
/// would use, whatever the test table holds. The settings are local to a transaction that is
/// rolled back.
pub(crate) async fn generic_index_plan(
    conn: &mut PgConnection,
    select: impl FnOnce(&mut QueryBuilder<'_, Postgres>) -> StoreResult<()>,
) -> StoreResult<String> {
    let mut tx = conn.begin().await.map_err(db_err)?;
    sqlx::raw_sql("SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL enable_seqscan = off")
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    let mut qb: QueryBuilder<Postgres> = QueryBuilder::new("EXPLAIN ");
    select(&mut qb)?;
    let rows = qb.build().fetch_all(&mut *tx).await.map_err(db_err)?;
    let lines = rows.iter().map(|r| r.try_get::<String, _>(0)).collect::<Result<Vec<_>, _>>().map_err(db_err)?;
    tx.rollback().await.map_err(db_err)?;
    Ok(lines.join("\n"))
}

/// `limit == 0` means no limit.
pub(crate) async fn list(conn: &mut PgConnection, query: &ListQuery) -> StoreResult<Page> {
    let mut qb: QueryBuilder<Postgres> = QueryBuilder::new("");
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

/// `SELECT <index>, id, parent, state, version, seq` of the heads `query` matches.
pub(crate) fn push_heads_select(qb: &mut QueryBuilder<'_, Postgres>, index: i32, query: &HeadQuery) -> StoreResult<()> {
    qb.push("SELECT ").push_bind(index).push("::int4 AS q, id, parent, state, version, seq FROM resources WHERE ");
    push_kind_filter(qb, query.kind, !query.fields.is_empty());
    if let Some(parents) = &query.parents {
        qb.push(" AND parent = ANY(").push_bind(parents.clone()).push(")");
    }
    if let Some(states) = &query.states {
        qb.push(" AND state = ANY(").push_bind(states.clone()).push(")");
    }
    if let Some(ids) = &query.ids {
        qb.push(" AND id = ANY(").push_bind(ids.clone()).push(")");
    }
    for (field, values) in &query.fields {
        if !valid_field(field) {
            return Err(StoreError::Internal(format!("invalid body field name {field:?}")));
        }
        // Only string fields match, as in `list` and the SQLite backend.
        qb.push(" AND ").push(string_field_test(field)).push(" AND ").push(body_field(field)).push(" = ANY(");
        qb.push_bind(values.clone()).push(")");
    }
    Ok(())
}

fn head_from_row(row: &sqlx::postgres::PgRow) -> StoreResult<RecordHead> {
    Ok(RecordHead {
        id: row.try_get("id").map_err(db_err)?,
        parent: row.try_get("parent").map_err(db_err)?,
        state: row.try_get("state").map_err(db_err)?,
        version: row.try_get("version").map_err(db_err)?,
        seq: row.try_get("seq").map_err(db_err)?,
    })
}

pub(crate) async fn heads(conn: &mut PgConnection, query: &HeadQuery) -> StoreResult<Vec<RecordHead>> {
    let mut qb: QueryBuilder<Postgres> = QueryBuilder::new("");
    push_heads_select(&mut qb, 0, query)?;
    qb.push(" ORDER BY seq");
    let rows = qb.build().fetch_all(&mut *conn).await.map_err(db_err)?;
    rows.iter().map(head_from_row).collect()
}

/// Every query's heads in one statement (`UNION ALL`, tagged with the query's index).
pub(crate) async fn heads_many(conn: &mut PgConnection, queries: &[HeadQuery]) -> StoreResult<Vec<Vec<RecordHead>>> {
    if queries.is_empty() {
        return Ok(vec![]);
    }
    let mut qb: QueryBuilder<Postgres> = QueryBuilder::new("");
    for (i, query) in queries.iter().enumerate() {
        if i > 0 {
            qb.push(" UNION ALL ");
        }
        qb.push("(");
        push_heads_select(&mut qb, i as i32, query)?;
        qb.push(")");
    }
    // Unordered: the server streams the rows as it finds them; grouping and ordering them here
    // costs less than a sort node in the plan.
    let rows = qb.build().fetch_all(&mut *conn).await.map_err(db_err)?;
    let mut out: Vec<Vec<RecordHead>> = vec![Vec::new(); queries.len()];
    for row in &rows {
        let index: i32 = row.try_get("q").map_err(db_err)?;
        let slot = out.get_mut(index as usize).ok_or_else(|| StoreError::Internal(format!("head of unknown query {index}")))?;
        slot.push(head_from_row(row)?);
    }
    for heads in &mut out {
        heads.sort_by_key(|h| h.seq);
    }
    Ok(out)
}

pub(crate) async fn get_many(conn: &mut PgConnection, kind: Kind, ids: &[String]) -> StoreResult<Vec<Record>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let sql = format!("SELECT {RECORD_COLUMNS} FROM resources WHERE kind = $1 AND id = ANY($2) ORDER BY seq");
    let rows = sqlx::query(&sql).bind(kind.as_str()).bind(ids).fetch_all(&mut *conn).await.map_err(db_err)?;
    rows.iter().map(record_from_row).collect()
}

/// `ON CONFLICT DO NOTHING` rather than catching the unique violation: a failed statement would
/// abort the whole PostgreSQL transaction, and callers may go on after a `Duplicate`.
pub(crate) async fn insert(conn: &mut PgConnection, record: NewRecord) -> StoreResult<Record> {
    let at = micros(record.at);
    // Only the sequence comes back: the rest is what was sent (JSONB gives back an equal value),
    // so a large body is not converted to text and shipped back.
    let seq = sqlx::query_scalar::<_, i64>(
        "INSERT INTO resources (kind, id, key, parent, state, version, body, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $7) ON CONFLICT DO NOTHING RETURNING seq",
    )
    .bind(record.kind.as_str())
    .bind(&record.id)
    .bind(&record.key)
    .bind(&record.parent)
    .bind(&record.state)
    .bind(&record.body)
    .bind(at)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    match seq {
        Some(seq) => Ok(Record {
            kind: record.kind,
            id: record.id,
            key: record.key,
            parent: record.parent,
            state: record.state,
            version: 1,
            body: record.body,
            seq,
            created_at: at,
            updated_at: at,
        }),
        None => {
            let key_taken = match &record.key {
                Some(key) => key_taken(conn, record.kind, key, None).await?,
                None => false,
            };
            let key = if key_taken { record.key.unwrap_or_default() } else { record.id };
            Err(StoreError::Duplicate { kind: record.kind, key })
        }
    }
}

async fn key_taken(conn: &mut PgConnection, kind: Kind, key: &str, other_than: Option<&str>) -> StoreResult<bool> {
    sqlx::query_scalar::<_, i32>("SELECT 1 FROM resources WHERE kind = $1 AND key = $2 AND id IS DISTINCT FROM $3")
        .bind(kind.as_str())
        .bind(key)
        .bind(other_than)
        .fetch_optional(&mut *conn)
        .await
        .map(|row| row.is_some())
        .map_err(db_err)
}

pub(crate) async fn update(
    conn: &mut PgConnection,
    kind: Kind,
    id: &str,
    expected_version: i64,
    update: RecordUpdate,
) -> StoreResult<Record> {
    // A key held by another record makes the update match nothing rather than fail, so the usual
    // conflict leaves the transaction usable, at no extra round trip when there is none; a
    // concurrent rename racing past the check still ends in the unique violation below (and an
    // aborted transaction, which its commit then reports). Only the columns the database decides
    // come back: a large body is not converted to text and shipped back.
    let at = micros(update.at);
    let row = sqlx::query_as::<_, (i64, i64, DateTime<Utc>)>(
        "UPDATE resources SET key = $1, parent = $2, state = $3, body = $4, updated_at = $5, version = version + 1 \
         WHERE kind = $6 AND id = $7 AND version = $8 \
           AND ($1::text IS NULL OR NOT EXISTS (SELECT 1 FROM resources other WHERE other.kind = $6 AND other.key = $1 AND other.id <> $7)) \
         RETURNING seq, version, created_at",
    )
    .bind(&update.key)
    .bind(&update.parent)
    .bind(&update.state)
    .bind(&update.body)
    .bind(at)
    .bind(kind.as_str())
    .bind(id)
    .bind(expected_version)
    .fetch_optional(&mut *conn)
    .await;
    match row {
        Ok(Some((seq, version, created_at))) => Ok(Record {
            kind,
            id: id.to_string(),
            key: update.key,
            parent: update.parent,
            state: update.state,
            version,
            body: update.body,
            seq,
            created_at,
            updated_at: at,
        }),
        Ok(None) => match &update.key {
            Some(key) if key_taken(conn, kind, key, Some(id)).await? => Err(StoreError::Duplicate { kind, key: key.clone() }),
            _ => Err(missing_or_conflict(conn, kind, id, expected_version).await),
        },
        Err(e) if is_unique_violation(&e) => Err(StoreError::Duplicate { kind, key: update.key.unwrap_or_default() }),
        Err(e) => Err(db_err(e)),
    }
}

pub(crate) async fn delete(conn: &mut PgConnection, kind: Kind, id: &str, expected_version: i64) -> StoreResult<()> {
    let done = sqlx::query("DELETE FROM resources WHERE kind = $1 AND id = $2 AND version = $3")
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
async fn missing_or_conflict(conn: &mut PgConnection, kind: Kind, id: &str, expected: i64) -> StoreError {
    let exists = sqlx::query_scalar::<_, i32>("SELECT 1 FROM resources WHERE kind = $1 AND id = $2")
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

pub(crate) async fn next_number(conn: &mut PgConnection, counter: &str) -> StoreResult<i64> {
    sqlx::query_scalar::<_, i64>(
        "INSERT INTO counters (name, value) VALUES ($1, 1) \
         ON CONFLICT (name) DO UPDATE SET value = counters.value + 1 RETURNING value",
    )
    .bind(counter)
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err)
}

/// A stored response is returned only once the WAL is flushed past the commit that stored it:
/// that commit released its locks before its flush ([`append_statement`]), and replaying a
/// response that a crash could still take back would acknowledge a write that is not durable.
/// The wait costs a flush, paid only by replays.
pub(crate) async fn idempotency_get(conn: &mut PgConnection, actor: &str, key: &str) -> StoreResult<Option<IdempotencyRecord>> {
    let row = sqlx::query("SELECT actor, key, request_hash, status, body, created_at FROM idempotency_keys WHERE actor = $1 AND key = $2")
        .bind(actor)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    let Some(row) = row else { return Ok(None) };
    // One statement in its own implicit transaction: it writes a WAL record, so its commit
    // waits for the flush, and a failure cannot leave a transaction open on the pooled
    // connection (sqlx tracks none here to roll back).
    sqlx::query(durability_record!()).execute(&mut *conn).await.map_err(db_err)?;
    let status: i32 = row.try_get("status").map_err(db_err)?;
    Ok(Some(IdempotencyRecord {
        actor: row.try_get("actor").map_err(db_err)?,
        key: row.try_get("key").map_err(db_err)?,
        request_hash: row.try_get("request_hash").map_err(db_err)?,
        status: u16::try_from(status).map_err(|_| StoreError::Internal(format!("stored status {status} is out of range")))?,
        body: row.try_get("body").map_err(db_err)?,
        created_at: row.try_get("created_at").map_err(db_err)?,
    }))
}

/// `limit == 0` means no limit. `since` and `until` are inclusive; `at` is compared bytewise
/// (`COLLATE "C"`), whatever the database's collation.
pub(crate) async fn audit_page(conn: &mut PgConnection, query: &AuditQuery) -> StoreResult<Vec<AuditEntry>> {
    let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE TRUE"));
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
        qb.push(" AND at COLLATE \"C\" >= ").push_bind(time_bound(since));
    }
    if let Some(until) = &query.until {
        qb.push(" AND at COLLATE \"C\" <= ").push_bind(time_bound(until));
    }
    qb.push(" ORDER BY seq");
    if query.limit > 0 {
        qb.push(" LIMIT ").push_bind(i64::from(query.limit));
    }
    let rows = qb.build().fetch_all(&mut *conn).await.map_err(db_err)?;
    rows.iter().map(audit_from_row).collect()
}

/// The recorded head of the chain.
pub(crate) async fn audit_head(conn: &mut PgConnection) -> StoreResult<Option<(i64, String)>> {
    sqlx::query_as::<_, (i64, String)>("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_optional(&mut *conn).await.map_err(db_err)
}

/// Records the idempotency key, then seals `audit` onto the chain and commits in one message
/// ([`append_statement`]): `SELECT … FROM signalbox_audit_append_images(…); COMMIT; …; BEGIN`.
/// The function (migration 0005) locks the `audit_head` row, hashes, inserts and moves the head; the COMMIT that releases the
/// lock is already queued behind it on the server, so the lock is never held across a client
/// round trip — on a busy host that wait, not the work, is what serialised every writer. The
/// trailing `BEGIN` leaves the connection in the (empty) transaction sqlx still tracks, which
/// the caller then drops: sqlx queues its `ROLLBACK` and sends it with the next message on the
/// connection.
///
/// Under READ COMMITTED a transaction waiting on the head's row lock reads the row version the
/// holder committed, so each append links to the one before it, whichever replica made it.
///
/// A simple-query message takes no bind parameters, so the values travel as escaped string
/// literals ([`sql_literal`]). The entries' time is taken here, before the lock: entries of
/// concurrent transactions may carry times a few milliseconds out of sequence order.
pub(crate) async fn seal_and_commit(
    conn: &mut PgConnection,
    audit: Vec<AuditDraft>,
    idempotency: Option<IdempotencyRecord>,
    relaxed: bool,
) -> StoreResult<Vec<AuditEntry>> {
    Ok(seal_and_commit_durably(conn, audit, idempotency, relaxed).await?.0)
}

/// [`seal_and_commit`], also answering the WAL position of the durability record
/// ([`append_statement`]; `None` when `relaxed`): once this returns, the WAL is flushed at least
/// that far.
pub(crate) async fn seal_and_commit_durably(
    conn: &mut PgConnection,
    audit: Vec<AuditDraft>,
    idempotency: Option<IdempotencyRecord>,
    relaxed: bool,
) -> StoreResult<(Vec<AuditEntry>, Option<String>)> {
    if let Some(rec) = idempotency {
        // A concurrent holder of the same key makes this wait for its outcome; if it committed,
        // nothing is inserted here.
        let done = sqlx::query(
            "INSERT INTO idempotency_keys (actor, key, request_hash, status, body, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(&rec.actor)
        .bind(&rec.key)
        .bind(&rec.request_hash)
        .bind(i32::from(rec.status))
        .bind(&rec.body)
        .bind(micros(rec.created_at))
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::IdempotencyKeyTaken { key: rec.key });
        }
    }

    let entries = entries_from(audit);
    let sql = append_statement("", &entries, relaxed, true)?;
    run_append(conn, &sql, entries, relaxed).await
}

/// The entries `audit` will become, stamped with one time taken now; sequence, link and hash
/// are filled in from the database's answer ([`run_append`]).
pub(crate) fn entries_from(audit: Vec<AuditDraft>) -> Vec<AuditEntry> {
    let at = format_time(chrono::Utc::now());
    audit
        .into_iter()
        .map(|d| AuditEntry {
            seq: 0,
            at: at.clone(),
            actor: d.actor,
            action: d.action,
            subject_kind: d.subject_kind,
            subject_id: d.subject_id,
            before: d.before,
            after: d.after,
            reason: d.reason,
            request_id: d.request_id,
            prev_hash: String::new(),
            hash: String::new(),
        })
        .collect()
}

/// Sends an append message ([`append_statement`]) and fills `entries` in from the rows the
/// chain seal answered; also answers the durability record's WAL position (`None` when
/// `relaxed`). Rows of other statements in the message (a checked-writes call answers an empty
/// row) are passed over.
pub(crate) async fn run_append(
    conn: &mut PgConnection,
    sql: &str,
    mut entries: Vec<AuditEntry>,
    relaxed: bool,
) -> StoreResult<(Vec<AuditEntry>, Option<String>)> {
    let rows = sqlx::Executor::fetch_all(&mut *conn, sqlx::raw_sql(sql)).await.map_err(stale_or_db_err)?;
    let mut durable_at = None;
    let mut sealed = Vec::with_capacity(entries.len());
    for row in rows {
        if row.try_column("durable").is_ok() {
            durable_at = Some(row.try_get::<String, _>("durable").map_err(db_err)?);
        } else if row.try_column("sealed_seq").is_ok() {
            sealed.push(row);
        }
    }
    if !relaxed && durable_at.is_none() {
        return Err(StoreError::Internal("the commit's durability record did not answer".into()));
    }
    if sealed.len() != entries.len() {
        return Err(StoreError::Internal(format!("the audit append sealed {} of {} entries", sealed.len(), entries.len())));
    }
    for (entry, row) in entries.iter_mut().zip(sealed) {
        entry.seq = row.try_get("sealed_seq").map_err(db_err)?;
        entry.prev_hash = row.try_get("sealed_prev_hash").map_err(db_err)?;
        entry.hash = row.try_get("sealed_hash").map_err(db_err)?;
    }
    Ok((entries, durable_at))
}

/// The SQLSTATE `signalbox_optimistic_updates` (migration 0006) raises when a deferred update no
/// longer finds the record it read at the version it expects; its message is `kind/id`.
const STALE_READ_STATE: &str = "SB001";

/// [`db_err`], except that a deferred update's refusal ([`STALE_READ_STATE`]) is the
/// [`StoreError::StaleRead`] it stands for.
pub(crate) fn stale_or_db_err(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if db.code().as_deref() == Some(STALE_READ_STATE) {
            let message = db.message();
            let (kind, id) = message.split_once('/').unwrap_or((message, ""));
            if let Some(kind) = Kind::parse(kind) {
                return StoreError::StaleRead { kind, id: id.to_string() };
            }
        }
    }
    db_err(e)
}

/// An update an optimistic transaction deferred to its commit message. The body is already
/// JSON text: it travels as a literal.
#[derive(Debug, Clone)]
pub(crate) struct DeferredUpdate {
    pub kind: Kind,
    pub id: String,
    /// The record's place in the table when it was read.
    pub seq: i64,
    pub expected_version: i64,
    pub key: Option<String>,
    pub parent: Option<String>,
    pub state: Option<String>,
    pub body: String,
    pub at: DateTime<Utc>,
}

/// `SELECT FROM signalbox_optimistic_updates(…); ` (migration 0006): the deferred updates, each
/// refused with [`STALE_READ_STATE`] when the record it read is gone or at another version.
pub(crate) fn optimistic_updates_statement(updates: &[DeferredUpdate]) -> StoreResult<String> {
    let mut sql = String::with_capacity(256 + updates.iter().map(|u| u.body.len() + 128).sum::<usize>());
    sql.push_str("SELECT FROM signalbox_optimistic_updates(ARRAY[");
    push_literals(&mut sql, updates.iter().map(|u| Some(u.kind.as_str())))?;
    sql.push_str("]::TEXT[]");
    push_text_array(&mut sql, updates.iter().map(|u| Some(u.id.as_str())))?;
    push_numbers(&mut sql, updates.iter().map(|u| u.seq));
    push_numbers(&mut sql, updates.iter().map(|u| u.expected_version));
    push_text_array(&mut sql, updates.iter().map(|u| u.key.as_deref()))?;
    push_text_array(&mut sql, updates.iter().map(|u| u.parent.as_deref()))?;
    push_text_array(&mut sql, updates.iter().map(|u| u.state.as_deref()))?;
    sql.push_str(", ARRAY[");
    push_literals(&mut sql, updates.iter().map(|u| Some(u.body.as_str())))?;
    sql.push_str("]::JSONB[], ARRAY[");
    let times: Vec<String> = updates.iter().map(|u| micros(u.at).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)).collect();
    push_literals(&mut sql, times.iter().map(|t| Some(t.as_str())))?;
    sql.push_str("]::TIMESTAMPTZ[]); ");
    Ok(sql)
}

/// `, ARRAY[…]::BIGINT[]`.
fn push_numbers(sql: &mut String, values: impl Iterator<Item = i64>) {
    use std::fmt::Write;
    sql.push_str(", ARRAY[");
    for (i, value) in values.enumerate() {
        if i > 0 {
            sql.push(',');
        }
        let _ = write!(sql, "{value}");
    }
    sql.push_str("]::BIGINT[]");
}

/// A transaction whose commit waits for the WAL flush (and for synchronous standbys, if any),
/// covering every commit record before it: it writes the durability record.
pub(crate) const DURABILITY_WAIT: &str = concat!("BEGIN; ", durability_record!(), "; COMMIT;");

/// The one-message append. Every commit appends to the audit chain under the `audit_head` row
/// lock, and a row lock is held until its transaction's commit returns. With the default
/// durability that includes the WAL flush, so appenders would flush one after another, each
/// alone: commits would be capped near 1 / flush time and PostgreSQL's group commit, which lets
/// one flush serve every transaction waiting for it, could never act. So the work commits with
/// `synchronous_commit = off`, which releases the lock once the commit record is in the WAL
/// buffers, and a second transaction then writes one small WAL record of its own (a
/// transactional logical message, `pg_logical_emit_message`) and commits with the server's
/// setting. A commit waits for the flush (and for synchronous standbys) only when its
/// transaction wrote WAL, hence the record: a transaction that only took an id would commit
/// without waiting. Its commit record lies after the work's, so when it returns the work is on
/// disk (and on the standbys) too, and concurrent appenders share those flushes. The caller's
/// commit returns only after that, so an acknowledged write is as durable as before.
///
/// The window this opens: between the two commits, other sessions can read the work before it
/// is durable, and a crash of PostgreSQL then takes it back. Every later commit lies after it
/// in the WAL, so no acknowledged write can depend on it; a replayed idempotent response is
/// returned only after a flush ([`idempotency_get`]).
///
/// The message: `SET LOCAL synchronous_commit = off`, the function call, `COMMIT`, then unless
/// `relaxed` (telemetry that does not wait for the disk at all, `Tx::relax_durability`)
/// `BEGIN; SELECT pg_logical_emit_message(true, …) AS durable; COMMIT`, and a last `BEGIN` for
/// the transaction sqlx still tracks.
///
/// `opening` goes first (an optimistic transaction's `BEGIN` and checked writes); without
/// `trailing_begin` the message ends outside any transaction.
pub(crate) fn append_statement(opening: &str, entries: &[AuditEntry], relaxed: bool, trailing_begin: bool) -> StoreResult<String> {
    let at = entries.first().map_or("", |e| e.at.as_str());
    // Each image is encoded once and sent once: as its column, and as the piece of the
    // canonical body the function puts back between `head_start` and `head_middle` (migration
    // 0005).
    let parts: Vec<_> = entries.iter().map(AuditEntry::canonical_image_parts).collect();
    let mut sql = String::with_capacity(
        parts
            .iter()
            .map(|p| {
                let images = p.after.as_ref().map_or(0, String::len) + p.before.as_ref().map_or(0, String::len);
                images + p.head_start.len() + p.head_middle.len() + p.middle.len() + p.tail.len() + 384
            })
            .sum::<usize>()
            + opening.len(),
    );
    sql.push_str(opening);
    sql.push_str(
        "SET LOCAL synchronous_commit = off; SELECT sealed_seq, sealed_prev_hash, sealed_hash FROM signalbox_audit_append_images(",
    );
    sql_literal(&mut sql, Some(at))?;
    push_text_array(&mut sql, entries.iter().map(|e| Some(e.actor.as_str())))?;
    push_text_array(&mut sql, entries.iter().map(|e| Some(e.action.as_str())))?;
    push_text_array(&mut sql, entries.iter().map(|e| Some(e.subject_kind.as_str())))?;
    push_text_array(&mut sql, entries.iter().map(|e| Some(e.subject_id.as_str())))?;
    push_text_array(&mut sql, parts.iter().map(|p| p.before.as_deref()))?;
    push_text_array(&mut sql, parts.iter().map(|p| p.after.as_deref()))?;
    push_text_array(&mut sql, entries.iter().map(|e| e.reason.as_deref()))?;
    push_text_array(&mut sql, entries.iter().map(|e| e.request_id.as_deref()))?;
    push_text_array(&mut sql, parts.iter().map(|p| Some(p.head_start.as_str())))?;
    push_text_array(&mut sql, parts.iter().map(|p| Some(p.head_middle.as_str())))?;
    push_text_array(&mut sql, parts.iter().map(|p| Some(p.middle.as_str())))?;
    push_text_array(&mut sql, parts.iter().map(|p| Some(p.tail.as_str())))?;
    sql.push_str("); COMMIT; ");
    if !relaxed {
        sql.push_str(DURABILITY_WAIT);
        sql.push(' ');
    }
    if trailing_begin {
        sql.push_str("BEGIN");
    }
    Ok(sql)
}

/// `, ARRAY[…]::TEXT[]` — one argument of the append function.
fn push_text_array<'a>(sql: &mut String, values: impl Iterator<Item = Option<&'a str>>) -> StoreResult<()> {
    sql.push_str(", ARRAY[");
    push_literals(sql, values)?;
    sql.push_str("]::TEXT[]");
    Ok(())
}

/// Comma-separated literals ([`sql_literal`]).
fn push_literals<'a>(sql: &mut String, values: impl Iterator<Item = Option<&'a str>>) -> StoreResult<()> {
    for (i, value) in values.enumerate() {
        if i > 0 {
            sql.push(',');
        }
        sql_literal(sql, value)?;
    }
    Ok(())
}

/// Appends `value` as an escape-string literal (`E'…'`, which means the same whatever
/// `standard_conforming_strings` says), or `NULL`. U+0000 cannot be stored in PostgreSQL text
/// and would end the protocol message early, so it is refused.
fn sql_literal(out: &mut String, value: Option<&str>) -> StoreResult<()> {
    let Some(value) = value else {
        out.push_str("NULL");
        return Ok(());
    };
    if value.contains('\0') {
        return Err(StoreError::Internal("PostgreSQL cannot store the character U+0000 in text".into()));
    }
    out.reserve(value.len() + 4);
    out.push_str("E'");
    // Copied in runs between the two characters that need doubling.
    let mut rest = value;
    while let Some(at) = rest.find(['\'', '\\']) {
        let (run, special) = rest.split_at(at);
        out.push_str(run);
        out.push_str(if special.starts_with('\'') { "''" } else { "\\\\" });
        rest = &special[1..];
    }
    out.push_str(rest);
    out.push('\'');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use signalbox_store::Store;

    fn entry() -> AuditEntry {
        AuditEntry {
            seq: 0,
            at: "2026-12-01T00:00:00.000000Z".into(),
            actor: "admin".into(),
            action: "release.create".into(),
            subject_kind: "release".into(),
            subject_id: "rel_1".into(),
            before: None,
            after: Some(serde_json::json!({"name": "it's"})),
            reason: None,
            request_id: None,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    /// The work's commit releases the chain's lock before the flush; the commit as a whole
    /// returns only once the WAL is flushed past the durability record that follows it (a
    /// transaction that wrote no WAL would not have waited). A relaxed one does not wait, but a
    /// response it stored is replayed only after a flush past it. Both checks are against a
    /// moving flush position that other sessions (and PostgreSQL's WAL writer, every 200 ms by
    /// default) also advance, so a broken wait is caught only when nothing else flushed in
    /// between: in practice nearly always, but this is a smoke test, not a proof. Needs a test
    /// server whose `synchronous_commit` is not `off`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_and_replayed_responses_wait_for_the_wal_flush() {
        let Some(base) = crate::testing::base_url("commits_and_replayed_responses_wait_for_the_wal_flush") else {
            return;
        };
        let url = crate::testing::fresh_database(&base).await.expect("fresh database");
        let store = crate::PostgresStore::connect(&url, 2).await.expect("connect");
        let draft = AuditDraft {
            actor: "admin".into(),
            action: "domain.create".into(),
            subject_kind: "domain".into(),
            subject_id: "dom_1".into(),
            before: None,
            after: Some(serde_json::json!({"name": "payments"})),
            reason: None,
            request_id: None,
        };
        for round in 0..5 {
            let mut tx = store.pool().begin().await.expect("begin");
            let (entries, durable_at) = seal_and_commit_durably(&mut tx, vec![draft.clone()], None, false).await.expect("commit");
            drop(tx);
            assert_eq!(entries.len(), 1);
            let durable_at = durable_at.expect("a durability record");
            let flushed: bool = sqlx::query_scalar("SELECT pg_current_wal_flush_lsn() >= $1::pg_lsn")
                .bind(&durable_at)
                .fetch_one(store.pool())
                .await
                .expect("flush position");
            assert!(flushed, "round {round}: the commit returned before the WAL was flushed to {durable_at}");
        }
        // A relaxed commit does not wait; one that stores an idempotent response does not
        // either here, but replaying that response waits for the flush past it.
        let mut tx = store.pool().begin().await.expect("begin");
        let response = IdempotencyRecord {
            actor: "usr_admin".into(),
            key: "replay-1".into(),
            request_hash: "h".into(),
            status: 201,
            body: "{}".into(),
            created_at: chrono::Utc::now(),
        };
        let (entries, durable_at) = seal_and_commit_durably(&mut tx, vec![draft], Some(response), true).await.expect("relaxed commit");
        let written_to: String =
            sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text").fetch_one(&mut *tx).await.expect("insert position");
        drop(tx);
        assert_eq!((entries.len(), durable_at), (1, None));
        let replayed = store.idempotency_get("usr_admin", "replay-1").await.expect("replay").expect("stored");
        assert_eq!(replayed.status, 201);
        let flushed: bool = sqlx::query_scalar("SELECT pg_current_wal_flush_lsn() >= $1::pg_lsn")
            .bind(&written_to)
            .fetch_one(store.pool())
            .await
            .expect("flush position");
        assert!(flushed, "a stored response was replayed before the WAL was flushed past it ({written_to})");
        assert_eq!(store.audit_head().await.map(|h| h.map(|(seq, _)| seq)), Ok(Some(6)));
        store.close().await;
        let _ = crate::testing::drop_database(&base, &url).await;
    }

    /// The work's commit does not wait for the disk (so the chain's lock is not held across a
    /// flush); unless relaxed, a transaction that does wait follows it before the message ends.
    #[test]
    fn the_append_commits_without_the_flush_and_then_waits_for_it_unless_relaxed() {
        let sql = append_statement("", &[entry()], false, true).unwrap();
        let seal = sql.find("signalbox_audit_append_images(").unwrap();
        assert!(sql.starts_with("SET LOCAL synchronous_commit = off; SELECT"), "{sql}");
        let after_seal = &sql[seal..];
        let work_commit = after_seal.find("); COMMIT; ").expect("the work commits");
        let rest = &after_seal[work_commit + "); COMMIT; ".len()..];
        assert_eq!(rest, format!("{DURABILITY_WAIT} BEGIN"));
        // Transactional: a record outside the transaction would give it no id to commit, and a
        // commit without one does not wait for the flush.
        assert!(DURABILITY_WAIT.contains("pg_logical_emit_message(true,"), "{DURABILITY_WAIT}");
        assert!(sql.contains("E'{\"name\":\"it''s\"}'"), "values travel as escaped literals: {sql}");

        let relaxed = append_statement("", &[entry()], true, true).unwrap();
        assert!(relaxed.starts_with("SET LOCAL synchronous_commit = off; SELECT"));
        assert!(relaxed.ends_with("); COMMIT; BEGIN"), "{relaxed}");
        assert!(!relaxed.contains("durable"));
    }

    #[test]
    fn literals_escape_quotes_and_backslashes_and_refuse_nul() {
        let mut out = String::new();
        sql_literal(&mut out, Some(r"it's \' E'x' ; --")).unwrap();
        assert_eq!(out, r"E'it''s \\'' E''x'' ; --'");
        out.clear();
        sql_literal(&mut out, None).unwrap();
        assert_eq!(out, "NULL");
        assert!(matches!(sql_literal(&mut String::new(), Some("a\0b")), Err(StoreError::Internal(m)) if m.contains("U+0000")));
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("error connecting to postgres://app:s3cr%40t@db.example:5432/signalbox?sslmode=require"),
            "error connecting to postgres://app:***@db.example:5432/signalbox?sslmode=require"
        );
        assert_eq!(redact("postgres://app@db/x and postgresql://u:p@h"), "postgres://app@db/x and postgresql://u:***@h");
        assert_eq!(redact("no url here"), "no url here");
    }

    #[test]
    fn transient_codes() {
        for code in ["40001", "40P01", "08006", "57P01", "53300", "57014"] {
            assert!(is_transient(code), "{code}");
        }
        for code in ["23505", "42P01", "22P05", "25P02"] {
            assert!(!is_transient(code), "{code}");
        }
    }

    #[test]
    fn field_names_are_identifiers() {
        assert!(valid_field("domain_id"));
        assert!(!valid_field("a'); DROP TABLE resources; --"));
    }

    #[test]
    fn time_bounds_are_normalised_to_the_stored_form() {
        assert_eq!(time_bound("2026-01-01T01:00:00+01:00"), "2026-01-01T00:00:00.000000Z");
    }
}
