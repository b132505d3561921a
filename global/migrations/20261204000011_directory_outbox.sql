-- Directory changes not yet announced on the feed. A change is written here
-- before it is published and deleted once the broker acknowledged it; the
-- relay publishes what is left (the broker was down, the replica stopped).
CREATE TABLE directory_outbox (
    seq        BIGSERIAL PRIMARY KEY,
    change     JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The currency a customer signed up with, so an interrupted sign-up can be
-- completed by the platform exactly as it was asked for.
ALTER TABLE customers ADD COLUMN currency TEXT;
CREATE INDEX customers_pending ON customers (created_at) WHERE state = 'pending';
