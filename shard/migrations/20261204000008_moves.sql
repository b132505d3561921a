-- Customer moves between cells.
--
-- A per-customer change counter: every event row (the customer's history)
-- takes the next `customers.version` in a trigger that updates the
-- customer's row, so the number is taken under the customer's row lock and
-- held until commit. Versions therefore commit in order per customer: a
-- snapshot sees exactly the versions up to the customer's committed counter,
-- never a later one without an earlier one. That is the exact cursor a move
-- copies by (a global sequence is not: it is taken before the lock and can
-- commit out of order). An imported event keeps its source version.
ALTER TABLE customers ADD COLUMN version bigint NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN version bigint;
WITH numbered AS (
    SELECT customer_id, namespace, event_id,
           row_number() OVER (PARTITION BY customer_id ORDER BY seq) AS n
    FROM events
)
UPDATE events e SET version = numbered.n FROM numbered
WHERE e.customer_id = numbered.customer_id AND e.namespace = numbered.namespace
  AND e.event_id = numbered.event_id;
UPDATE customers c SET version = coalesce(
    (SELECT max(version) FROM events e WHERE e.customer_id = c.customer_id), 0);
ALTER TABLE events ALTER COLUMN version SET NOT NULL;
CREATE UNIQUE INDEX events_customer_version ON events (customer_id, version);

CREATE FUNCTION events_take_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.version IS NULL THEN
        UPDATE customers SET version = version + 1
            WHERE customer_id = NEW.customer_id
            RETURNING version INTO NEW.version;
        -- A customer's first event creates its row (which starts at 1).
        IF NEW.version IS NULL THEN
            NEW.version := 1;
        END IF;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER events_take_version BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_take_version();

-- `importing`: a move is copying the customer in; nothing but the move
-- writes it. The fence of a move names the move; `inbound_fenced` says the
-- inbound consumer has read that move's fence marker, so the customer's
-- inbound history here ends there (later records are stragglers).
ALTER TABLE customers DROP CONSTRAINT customers_state_check;
ALTER TABLE customers ADD CONSTRAINT customers_state_check
    CHECK (state IN ('active', 'fenced', 'moved_out', 'importing'));
ALTER TABLE customers ADD COLUMN fence_move uuid;
ALTER TABLE customers ADD COLUMN inbound_fenced boolean NOT NULL DEFAULT false;
-- Moved out: the new cell's public base URL, for the app's links.
ALTER TABLE customers ADD COLUMN moved_to text;

-- Moves this cell takes part in, as source or target, with the highest
-- attempt of global's mover seen: a call from an older attempt (a mover
-- that was paused and replaced) is refused.
CREATE TABLE moves (
    move_id     uuid PRIMARY KEY,
    customer_id uuid NOT NULL,
    role        text NOT NULL CHECK (role IN ('source', 'target')),
    attempt     bigint NOT NULL,
    -- target: the source version imported through
    imported    bigint NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX moves_customer ON moves (customer_id);

-- A straggler dead-lettered here for a customer another cell owns is
-- forwarded to the owner by global (same event id): it then counts there.
ALTER TABLE dead_letters DROP CONSTRAINT dead_letters_status_check;
ALTER TABLE dead_letters ADD CONSTRAINT dead_letters_status_check
    CHECK (status IN ('dead', 'republished', 'forwarded'));
ALTER TABLE dead_letters ADD COLUMN forwarded_at timestamptz;

-- What stays of a customer whose copy here was purged after a move.
CREATE TABLE moved_out_customers (
    customer_id uuid PRIMARY KEY,
    move_id     uuid NOT NULL,
    epoch       bigint NOT NULL,
    moved_to    text,
    purged_at   timestamptz NOT NULL DEFAULT now()
);
