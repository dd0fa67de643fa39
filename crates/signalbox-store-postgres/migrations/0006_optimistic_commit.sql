-- The deferred updates of an optimistic transaction (`Store::begin_optimistic`), applied in the
-- message that commits it. Each must still find the record it read (`seq`, so a record deleted
-- and created again under the same id is not taken for it) at the version it expects; if one
-- does not, SQLSTATE SB001 is raised with `kind/id` as the message, the transaction is rolled
-- back, and the server answers a stale read and runs the operation again in an ordinary
-- transaction. The key is the one the record had when it was read (a rename is not deferred), so
-- the unique index on keys cannot refuse an update.
CREATE FUNCTION signalbox_optimistic_updates(
    p_kinds    TEXT[],
    p_ids      TEXT[],
    p_seqs     BIGINT[],
    p_expected BIGINT[],
    p_keys     TEXT[],
    p_parents  TEXT[],
    p_states   TEXT[],
    p_bodies   JSONB[],
    p_at       TIMESTAMPTZ[]
) RETURNS VOID
LANGUAGE plpgsql AS $fn$
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_kinds, 1), 0) LOOP
        UPDATE resources
        SET key = p_keys[i], parent = p_parents[i], state = p_states[i], body = p_bodies[i],
            updated_at = p_at[i], version = version + 1
        WHERE kind = p_kinds[i] AND id = p_ids[i] AND seq = p_seqs[i] AND version = p_expected[i];
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'SB001', MESSAGE = p_kinds[i] || '/' || p_ids[i];
        END IF;
    END LOOP;
END
$fn$;
