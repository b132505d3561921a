-- Every state change of a customer is an event kept with its payload, in the
-- order it happened (seq), so a customer's history replays to its state
-- (invariant 5) and can be copied to another cell. Rows written before this
-- migration have no payload.
ALTER TABLE events ADD COLUMN seq bigserial;
ALTER TABLE events ADD COLUMN payload jsonb;
CREATE UNIQUE INDEX events_customer_seq ON events (customer_id, seq);
