-- Authorizer snapshots as plain bytes (serde JSON), stored uncompressed: a busy
-- cell's state is a few hundred MB of JSON, and converting it to jsonb and
-- compressing it took the cell's Postgres seconds of CPU per snapshot.
-- Older rows keep their jsonb `state`; the loader reads either.
ALTER TABLE authorizer_snapshots ALTER COLUMN state DROP NOT NULL;
ALTER TABLE authorizer_snapshots ADD COLUMN state_bytes bytea;
ALTER TABLE authorizer_snapshots ALTER COLUMN state_bytes SET STORAGE EXTERNAL;
ALTER TABLE authorizer_snapshots
    ADD CONSTRAINT authorizer_snapshots_has_state CHECK (state IS NOT NULL OR state_bytes IS NOT NULL);
