-- Seals audit entries onto the chain inside the database, so the client can send this call and
-- COMMIT in one message and the `audit_head` row lock is held only while the server works, never
-- across a client round trip.
--
-- Entry i's hash is SHA-256 over `body_head[i] || '"' || prev_hash || '"' || body_middle[i] ||
-- seq || body_tail[i]`: the canonical JSON body that `signalbox_domain::audit::AuditEntry::
-- canonical_parts` cuts around the two fields only the chain position decides. Chain hashes are
-- lowercase hex, which needs no JSON escaping.
CREATE FUNCTION signalbox_audit_append(
    p_at           TEXT,
    p_actor        TEXT[],
    p_action       TEXT[],
    p_subject_kind TEXT[],
    p_subject_id   TEXT[],
    p_before       TEXT[],
    p_after        TEXT[],
    p_reason       TEXT[],
    p_request_id   TEXT[],
    p_body_head    TEXT[],
    p_body_middle  TEXT[],
    p_body_tail    TEXT[]
) RETURNS TABLE (sealed_seq BIGINT, sealed_prev_hash TEXT, sealed_hash TEXT)
LANGUAGE plpgsql AS $fn$
DECLARE
    n         INTEGER := coalesce(array_length(p_actor, 1), 0);
    head_seq  BIGINT;
    head_hash TEXT;
    seqs      BIGINT[] := '{}';
    prevs     TEXT[] := '{}';
    hashes    TEXT[] := '{}';
BEGIN
    SELECT h.seq, h.hash INTO head_seq, head_hash FROM audit_head h WHERE h.id = 1 FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the audit_head row is missing';
    END IF;
    FOR i IN 1 .. n LOOP
        seqs[i] := head_seq + i;
        prevs[i] := head_hash;
        head_hash := encode(sha256(convert_to(
            p_body_head[i] || '"' || head_hash || '"' || p_body_middle[i] || (head_seq + i)::TEXT || p_body_tail[i], 'UTF8')), 'hex');
        hashes[i] := head_hash;
    END LOOP;
    INSERT INTO audit_log (seq, at, actor, action, subject_kind, subject_id, before_json, after_json, reason, request_id, prev_hash, hash)
    SELECT u.seq, p_at, u.actor, u.action, u.subject_kind, u.subject_id, u.before_json, u.after_json, u.reason, u.request_id, u.prev_hash, u.hash
    FROM unnest(seqs, p_actor, p_action, p_subject_kind, p_subject_id, p_before, p_after, p_reason, p_request_id, prevs, hashes)
        AS u(seq, actor, action, subject_kind, subject_id, before_json, after_json, reason, request_id, prev_hash, hash);
    UPDATE audit_head SET seq = head_seq + n, hash = head_hash WHERE id = 1;
    RETURN QUERY SELECT s.seq, s.prev_hash, s.hash FROM unnest(seqs, prevs, hashes) AS s(seq, prev_hash, hash);
END
$fn$;
