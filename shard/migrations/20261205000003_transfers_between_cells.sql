-- Transfers to customers of other cells. The sender's cell reserves the money
-- (the transfer stays pending) and hands the transfer to global's transfer
-- service, which credits the recipient's cell and settles it back here
-- (completed, or failed with the money returned and a reason).

-- A transfer id is the sender's to choose, so it is unique per sender, not per
-- cell: two customers (also after one moved in) may pick the same one.
ALTER TABLE transfers DROP CONSTRAINT transfers_pkey,
    ADD PRIMARY KEY (customer_id, transfer_id);

-- A recipient may also be named by login (resolved by global, never here).
ALTER TABLE transfers
    DROP CONSTRAINT transfers_one_recipient,
    ADD COLUMN to_login text,
    ADD COLUMN reason text,
    ADD COLUMN settled_at timestamptz,
    ADD CONSTRAINT transfers_one_recipient CHECK (
        (to_account IS NOT NULL)::int + (to_account_number IS NOT NULL)::int
        + (to_login IS NOT NULL)::int = 1);

-- The cell's outbox of transfers to hand to global: written in the
-- transaction that reserves the money, marked once global acknowledged it,
-- retried by the relay until then. The cell's own (not copied by a move:
-- the hand-off is idempotent wherever it comes from).
CREATE TABLE transfer_handoffs (
    customer_id uuid NOT NULL,
    transfer_id uuid NOT NULL,
    request     jsonb NOT NULL,
    -- The sender's trace, continued by global's transfer service.
    traceparent text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    attempts    integer NOT NULL DEFAULT 0,
    handed_at   timestamptz,
    PRIMARY KEY (customer_id, transfer_id)
);
CREATE INDEX transfer_handoffs_waiting ON transfer_handoffs (created_at)
    WHERE handed_at IS NULL;

-- Credits global gave up in this cell (a void), by transfer key: such a
-- transfer is never credited here afterwards.
CREATE TABLE transfer_voids (
    transfer_key uuid PRIMARY KEY,
    voided_at   timestamptz NOT NULL DEFAULT now()
);
