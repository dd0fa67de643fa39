-- Signalbox schema, PostgreSQL. Resources are JSON bodies beside a few indexed columns; the
-- audit trail is a hash chain whose latest link is recorded in `audit_head`, whose row lock
-- serialises appends across replicas.

CREATE TABLE resources (
    seq        BIGSERIAL   PRIMARY KEY,
    kind       TEXT        NOT NULL,
    id         TEXT        NOT NULL UNIQUE,
    key        TEXT,
    parent     TEXT,
    state      TEXT,
    version    BIGINT      NOT NULL,
    body       JSONB       NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE UNIQUE INDEX resources_kind_key ON resources (kind, key) WHERE key IS NOT NULL;
CREATE INDEX resources_kind_parent_seq ON resources (kind, parent, seq);
CREATE INDEX resources_kind_state_seq ON resources (kind, state, seq);
CREATE INDEX resources_kind_seq ON resources (kind, seq);

-- Text, not JSONB or TIMESTAMPTZ: `at`, `before_json` and `after_json` hold the exact bytes the
-- entry's hash was computed over.
CREATE TABLE audit_log (
    seq          BIGINT PRIMARY KEY,
    at           TEXT   NOT NULL,
    actor        TEXT   NOT NULL,
    action       TEXT   NOT NULL,
    subject_kind TEXT   NOT NULL,
    subject_id   TEXT   NOT NULL,
    before_json  TEXT   NULL,
    after_json   TEXT   NULL,
    reason       TEXT   NULL,
    request_id   TEXT   NULL,
    prev_hash    TEXT   NOT NULL,
    hash         TEXT   NOT NULL
);

CREATE INDEX audit_log_subject ON audit_log (subject_kind, subject_id);
CREATE INDEX audit_log_actor ON audit_log (actor, seq);

CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT  NOT NULL,
    hash TEXT    NOT NULL
);

INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE idempotency_keys (
    actor        TEXT        NOT NULL,
    key          TEXT        NOT NULL,
    request_hash TEXT        NOT NULL,
    status       INTEGER     NOT NULL,
    body         TEXT        NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (actor, key)
);

CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

CREATE TABLE counters (
    name  TEXT   PRIMARY KEY,
    value BIGINT NOT NULL
);
