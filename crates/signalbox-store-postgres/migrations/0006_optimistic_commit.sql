-- The checked writes of an optimistic transaction (`Store::begin_optimistic`), run in the
-- message that commits it: every record the transaction read before it wrote must still be the
-- one it read, and every update it deferred must still find the version it expects. Either
-- failing raises SQLSTATE SB001 with `kind/id` as the message; the server answers that as a
-- stale read and runs the operation again in an ordinary transaction.
--
-- p_read_seqs holds NULL for a record that was not found: it must still be absent (by id or by
-- key, as it was asked). A found record is checked by id, version and `seq`, so a record
-- deleted and created again under the same id, at version 1 again, is not taken for the one
-- that was read.
CREATE FUNCTION signalbox_optimistic_writes(
    p_read_kinds    TEXT[],
    p_read_ids      TEXT[],
    p_read_seqs     BIGINT[],
    p_read_versions BIGINT[],
    p_kinds         TEXT[],
    p_ids           TEXT[],
    p_expected      BIGINT[],
    p_keys          TEXT[],
    p_parents       TEXT[],
    p_states        TEXT[],
    p_bodies        JSONB[],
    p_at            TIMESTAMPTZ[]
) RETURNS VOID
LANGUAGE plpgsql AS $fn$
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_read_kinds, 1), 0) LOOP
        IF p_read_seqs[i] IS NULL THEN
            PERFORM 1 FROM resources r
            WHERE r.kind = p_read_kinds[i] AND (r.id = p_read_ids[i] OR r.key = p_read_ids[i]);
            IF FOUND THEN
                RAISE EXCEPTION USING ERRCODE = 'SB001', MESSAGE = p_read_kinds[i] || '/' || p_read_ids[i];
            END IF;
        ELSE
            PERFORM 1 FROM resources r
            WHERE r.kind = p_read_kinds[i] AND r.id = p_read_ids[i]
              AND r.seq = p_read_seqs[i] AND r.version = p_read_versions[i];
            IF NOT FOUND THEN
                RAISE EXCEPTION USING ERRCODE = 'SB001', MESSAGE = p_read_kinds[i] || '/' || p_read_ids[i];
            END IF;
        END IF;
    END LOOP;
    FOR i IN 1 .. coalesce(array_length(p_kinds, 1), 0) LOOP
        -- The key is the one the record had when it was read (a rename is not deferred), so the
        -- unique index on keys cannot refuse it.
        UPDATE resources
        SET key = p_keys[i], parent = p_parents[i], state = p_states[i], body = p_bodies[i],
            updated_at = p_at[i], version = version + 1
        WHERE kind = p_kinds[i] AND id = p_ids[i] AND version = p_expected[i];
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'SB001', MESSAGE = p_kinds[i] || '/' || p_ids[i];
        END IF;
    END LOOP;
END
$fn$;
