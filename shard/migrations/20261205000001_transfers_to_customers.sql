-- Transfers to another customer (by account number): the recipient is not one of
-- the sender's accounts, so the row names it by number instead, and a transfer
-- has a state (a transfer within the cell completes in its own transaction).
ALTER TABLE transfers
    ALTER COLUMN to_account DROP NOT NULL,
    ADD COLUMN to_account_number text,
    ADD COLUMN state text NOT NULL DEFAULT 'completed'
        CHECK (state IN ('pending', 'completed', 'failed')),
    ADD CONSTRAINT transfers_one_recipient
        CHECK ((to_account IS NULL) <> (to_account_number IS NULL));
