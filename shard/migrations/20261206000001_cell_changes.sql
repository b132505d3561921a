-- The cell's log of committed state changes, for the analytical export
-- (cellbank-exporter): every insert or update of a posting, customer,
-- account, card or transfer adds a row here in the same transaction — by a
-- trigger, so no write path (live, imported by a move, replayed) can forget
-- one. The relay publishes the rows to Topic::CellChanges in id order, keyed
-- by customer, and deletes them once the broker has them (the log keeps them).
--
-- What leaves the cell is what analysts may see: no names, no PAN hashes, no
-- free text, no logins (see `cell_change_capture` below).
CREATE TABLE cell_changes (
    id          bigserial PRIMARY KEY,
    entity      text NOT NULL,
    op          text NOT NULL CHECK (op IN ('insert', 'update')),
    customer_id uuid NOT NULL,
    -- the customer's epoch the row was written at (invariant 3)
    epoch       bigint NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    -- the row after the change; NULL for a new posting, captured by id only
    -- (immutable: the relay reads it, which halves what the ledger writes here)
    row_data    jsonb,
    posting_id  bigint,
    CHECK (row_data IS NOT NULL OR posting_id IS NOT NULL),
    -- unused: relayed rows are deleted (the shared relay selects on it)
    sent_at     timestamptz
);

-- Statement-level triggers over transition tables: one INSERT ... SELECT per
-- write statement, whatever its row count (the ledger books a batch of events
-- in a few multi-row statements). A new posting is captured by its id alone:
-- the whole row as JSON in the ledger's own transaction cost it about half
-- its throughput (BENCHMARKS.md). An update is captured only when an exported
-- column changed (a customer's version counter moving with each event is no
-- change for analysts).
CREATE FUNCTION cell_change_capture() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    -- Columns that never leave the cell (personal data, secrets' hashes,
    -- free text) or that are the cell's own bookkeeping.
    hidden text[] := CASE TG_TABLE_NAME
        WHEN 'customers' THEN ARRAY['name', 'version', 'fence_move', 'inbound_fenced', 'moved_to']
        WHEN 'cards' THEN ARRAY['pan_hash']
        WHEN 'transfers' THEN ARRAY['description', 'to_login']
        ELSE ARRAY[]::text[] END;
    -- Book account ids are the cell's own; their code means the same everywhere.
    extra text := CASE TG_TABLE_NAME
        WHEN 'postings' THEN ' || jsonb_build_object(''account_code'',
            (SELECT b.code FROM book_accounts b WHERE b.id = n.book_account_id))'
        ELSE '' END;
    pkey text := CASE TG_TABLE_NAME
        WHEN 'postings' THEN 'id'
        WHEN 'customers' THEN 'customer_id'
        WHEN 'accounts' THEN 'account_id'
        WHEN 'cards' THEN 'card_id'
        WHEN 'transfers' THEN 'customer_id, transfer_id' END;
BEGIN
    IF TG_OP = 'INSERT' AND TG_TABLE_NAME = 'postings' THEN
        INSERT INTO cell_changes (entity, op, customer_id, epoch, posting_id)
        SELECT 'postings', 'insert', n.customer_id, n.epoch, n.id FROM new_rows n;
    ELSIF TG_OP = 'INSERT' THEN
        EXECUTE format(
            'INSERT INTO cell_changes (entity, op, customer_id, epoch, row_data)
             SELECT %L, ''insert'', n.customer_id, n.epoch, (to_jsonb(n) - $1)%s
             FROM new_rows n', TG_TABLE_NAME, extra)
        USING hidden;
    ELSE
        EXECUTE format(
            'INSERT INTO cell_changes (entity, op, customer_id, epoch, row_data)
             SELECT %L, ''update'', n.customer_id, n.epoch, (to_jsonb(n) - $1)%s
             FROM new_rows n JOIN old_rows o USING (%s)
             WHERE (to_jsonb(n) - $1) IS DISTINCT FROM (to_jsonb(o) - $1)',
            TG_TABLE_NAME, extra, pkey)
        USING hidden;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER postings_change AFTER INSERT ON postings
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION cell_change_capture();
CREATE TRIGGER postings_change_update AFTER UPDATE ON postings
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION cell_change_capture();
CREATE TRIGGER customers_change AFTER INSERT ON customers
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION cell_change_capture();
-- Every event moves its customer's version counter (an UPDATE per event):
-- a row trigger whose WHEN skips those without calling any function.
CREATE FUNCTION cell_customer_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO cell_changes (entity, op, customer_id, epoch, row_data)
    VALUES ('customers', 'update', NEW.customer_id, NEW.epoch,
            to_jsonb(NEW) - ARRAY['name', 'version', 'fence_move', 'inbound_fenced', 'moved_to']);
    RETURN NULL;
END
$$;
CREATE TRIGGER customers_change_update AFTER UPDATE ON customers
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.epoch IS DISTINCT FROM NEW.epoch
                       OR OLD.currency IS DISTINCT FROM NEW.currency
                       OR OLD.created_at IS DISTINCT FROM NEW.created_at)
    EXECUTE FUNCTION cell_customer_change();
CREATE TRIGGER accounts_change AFTER INSERT ON accounts
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION cell_change_capture();
CREATE TRIGGER accounts_change_update AFTER UPDATE ON accounts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION cell_change_capture();
CREATE TRIGGER cards_change AFTER INSERT ON cards
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION cell_change_capture();
CREATE TRIGGER cards_change_update AFTER UPDATE ON cards
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION cell_change_capture();
CREATE TRIGGER transfers_change AFTER INSERT ON transfers
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION cell_change_capture();
CREATE TRIGGER transfers_change_update AFTER UPDATE ON transfers
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION cell_change_capture();
