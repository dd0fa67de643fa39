-- The chain seal of migration 0002, with each entry's before and after images sent once: they
-- are columns of the entry and also part of its canonical body, so the body's head is rebuilt
-- here as `head_start || after || head_middle || before || ',"prev_hash":'` (an absent image
-- reading `null`), the cut `signalbox_domain::audit::AuditEntry::canonical_image_parts` makes.
-- The message that seals an entry is then about half as long for the server to parse.
-- `signalbox_audit_append` (migration 0002) is no longer called.
CREATE FUNCTION signalbox_audit_append_images(
    p_at           TEXT,
    p_actor        TEXT[],
    p_action       TEXT[],
    p_subject_kind TEXT[],
    p_subject_id   TEXT[],
    p_before       TEXT[],
    p_after        TEXT[],
    p_reason       TEXT[],
    p_request_id   TEXT[],
    p_head_start   TEXT[],
    p_head_middle  TEXT[],
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
            p_head_start[i] || coalesce(p_after[i], 'null') || p_head_middle[i] || coalesce(p_before[i], 'null')
                || ',"prev_hash":"' || head_hash || '"' || p_body_middle[i] || (head_seq + i)::TEXT || p_body_tail[i], 'UTF8')), 'hex');
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
