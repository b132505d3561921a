-- Idempotency is scoped: an event id is unique per customer and namespace.
-- Partners' ids live in 'partner' (per partner once partners authenticate);
-- the cell's own (transfer:, card:, auth:) in 'cell'. A reused id from
-- someone else is a new event, never a silent duplicate (invariant 8).
ALTER TABLE events ADD COLUMN namespace text NOT NULL DEFAULT 'partner';
UPDATE events SET namespace = 'cell' WHERE source <> 'inbound';
ALTER TABLE events ALTER COLUMN namespace DROP DEFAULT;

ALTER TABLE postings ADD COLUMN namespace text;
UPDATE postings p SET namespace = e.namespace FROM events e WHERE e.event_id = p.event_id;
ALTER TABLE postings ALTER COLUMN namespace SET NOT NULL;

ALTER TABLE postings DROP CONSTRAINT postings_event_id_fkey;
ALTER TABLE events DROP CONSTRAINT events_pkey;
ALTER TABLE events ADD PRIMARY KEY (customer_id, namespace, event_id);
ALTER TABLE postings ADD CONSTRAINT postings_event_fkey
    FOREIGN KEY (customer_id, namespace, event_id) REFERENCES events (customer_id, namespace, event_id);
DROP INDEX postings_event;
CREATE INDEX postings_event ON postings (customer_id, namespace, event_id);
