-- Customer moves between shards: a state machine per move, kept here so any
-- global replica can resume one whose mover died. `attempt` goes up each
-- time a replica takes the move over (its lease); every step a mover
-- writes is conditioned on its attempt, and the cells refuse steps of an
-- older attempt, so a paused old mover cannot act.
CREATE TABLE moves (
    id              UUID PRIMARY KEY,
    customer_id     UUID NOT NULL REFERENCES customers (customer_id),
    from_shard      TEXT NOT NULL REFERENCES shards (id),
    to_shard        TEXT NOT NULL REFERENCES shards (id),
    from_epoch      BIGINT NOT NULL,
    phase           TEXT NOT NULL CHECK (phase IN
                    ('planned', 'copying', 'cutover', 'flipped', 'completed', 'aborting', 'aborted')),
    -- an abort asked by an operator, applied by the mover at its next step
    abort_requested TEXT,
    reason          TEXT,
    -- the source version copied to the target so far
    copied_version  BIGINT NOT NULL DEFAULT 0,
    copied_events   BIGINT NOT NULL DEFAULT 0,
    rounds          INT NOT NULL DEFAULT 0,
    attempt         BIGINT NOT NULL DEFAULT 0,
    lease_owner     UUID,
    lease_until     TIMESTAMPTZ,
    -- the rebalance (or operator) that asked for it
    requested_by    TEXT NOT NULL DEFAULT 'operator',
    source_copy     TEXT NOT NULL DEFAULT 'kept' CHECK (source_copy IN ('kept', 'purged')),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    frozen_at       TIMESTAMPTZ,
    flipped_at      TIMESTAMPTZ,
    finished_at     TIMESTAMPTZ,
    freeze_ms       DOUBLE PRECISION,
    -- milliseconds per step of the latest attempt (copy, fence, drain, ...)
    timings         JSONB NOT NULL DEFAULT '{}'
);
-- One open move per customer: leftovers of a finished or aborted move never
-- block the next one.
CREATE UNIQUE INDEX moves_one_open ON moves (customer_id)
    WHERE phase NOT IN ('completed', 'aborted');
CREATE INDEX moves_open ON moves (updated_at) WHERE phase NOT IN ('completed', 'aborted');
CREATE INDEX moves_by_created ON moves (created_at DESC);

-- `frozen`: a move's cutover holds the customer's new traffic on every
-- replica until the directory flips.
ALTER TABLE customers DROP CONSTRAINT customers_state_check;
ALTER TABLE customers ADD CONSTRAINT customers_state_check
    CHECK (state IN ('pending', 'active', 'moving', 'frozen', 'closed'));
