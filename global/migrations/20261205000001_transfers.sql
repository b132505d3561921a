-- Global's transfer service: transfers between customers that a cell
-- reserved (the sender's money pending there) and handed over, for global to
-- credit to the recipient's cell and settle back in the sender's. The row is
-- the transfer's durable state; any replica drives it under a lease and a
-- restarted one resumes it from here.
--
--   crediting  -> delivering -> completed
--   crediting  -> returning  -> failed            (refused for good)
--   crediting  -> voiding    -> delivering | returning   (outcome unknown
--                                                          past the bound)
CREATE TABLE transfers (
    -- Derived from the sender and their transfer_id (see contract::transfer_key).
    transfer_key      uuid PRIMARY KEY,
    transfer_id       uuid NOT NULL,
    from_customer_id  uuid NOT NULL,
    source_shard      text NOT NULL,
    from_account_id   uuid NOT NULL,
    amount            bigint NOT NULL CHECK (amount > 0),
    currency          text NOT NULL,
    to_account_number text,
    to_login          text,
    state             text NOT NULL DEFAULT 'crediting' CHECK (state IN
        ('crediting', 'voiding', 'delivering', 'returning', 'completed', 'failed')),
    -- Why it fails (set on the way to returning).
    reason            text,
    to_customer_id    uuid,
    to_shard          text,
    -- Every cell a credit was sent to (recorded before the call), where a
    -- void must look.
    credit_shards     text[] NOT NULL DEFAULT '{}',
    attempts          integer NOT NULL DEFAULT 0,
    last_error        text,
    next_at           timestamptz NOT NULL DEFAULT now(),
    lease_owner       uuid,
    lease_until       timestamptz,
    traceparent       text,
    requested_at      timestamptz NOT NULL,
    accepted_at       timestamptz NOT NULL DEFAULT now(),
    credited_at       timestamptz,
    finished_at       timestamptz,
    CONSTRAINT transfers_one_recipient
        CHECK ((to_account_number IS NULL) <> (to_login IS NULL)),
    UNIQUE (from_customer_id, transfer_id)
);
CREATE INDEX transfers_due ON transfers (next_at)
    WHERE state NOT IN ('completed', 'failed');
CREATE INDEX transfers_recent ON transfers (accepted_at DESC);
