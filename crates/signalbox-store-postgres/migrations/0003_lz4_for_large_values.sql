-- Record bodies and audit before/after images are compressed with lz4 instead of pglz when the
-- server supports it. A running rollout's deployment record is several KB of JSON rewritten (and
-- copied into its audit entry twice) at every step, and lz4 compresses and decompresses such
-- values several times faster than pglz. Only new values are affected.
-- Servers built without lz4 keep pglz.
DO $$
BEGIN
    ALTER TABLE resources ALTER COLUMN body SET COMPRESSION lz4;
    ALTER TABLE audit_log ALTER COLUMN before_json SET COMPRESSION lz4;
    ALTER TABLE audit_log ALTER COLUMN after_json SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    RAISE NOTICE 'lz4 is not available on this server; large values stay pglz-compressed';
END
$$;
