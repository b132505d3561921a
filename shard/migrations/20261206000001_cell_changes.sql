-- The cell's log of committed state changes, for the analytical export
-- (cellbank-exporter): every insert or update of a posting, customer,
-- account, card or transfer adds a row here in the same transaction — by a
-- trigger, so no write path (live, imported by a move, replayed) can forget
-- one. The relay publishes the rows to Topic::CellChanges in id order, keyed
-- by customer, and marks them sent; sent rows are pruned after a while.
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
    row_data    jsonb NOT NULL,
    sent_at     timestamptz
);
CREATE INDEX cell_changes_unsent ON cell_changes (id) WHERE sent_at IS NULL;
CREATE INDEX cell_changes_sent ON cell_changes (sent_at) WHERE sent_at IS NOT NULL;

CREATE FUNCTION cell_change_capture() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    -- Columns that never leave the cell (personal data, secrets' hashes,
    -- free text) or that are bookkeeping of the cell itself.
    hidden text[] := CASE TG_TABLE_NAME
        WHEN 'customers' THEN ARRAY['name', 'version', 'fence_move', 'inbound_fenced', 'moved_to']
        WHEN 'cards' THEN ARRAY['pan_hash']
        WHEN 'transfers' THEN ARRAY['description', 'to_login']
        ELSE ARRAY[]::text[] END;
    r jsonb := to_jsonb(NEW) - hidden;
BEGIN
    -- An update that changes nothing exported (a customer's version counter
    -- moving with each event, say) is no change for analysts.
    IF TG_OP = 'UPDATE' AND (to_jsonb(OLD) - hidden) = r THEN
        RETURN NULL;
    END IF;
    IF TG_TABLE_NAME = 'postings' THEN
        -- Book account ids are the cell's own; their code means the same everywhere.
        r := r || jsonb_build_object('account_code',
            (SELECT code FROM book_accounts WHERE id = NEW.book_account_id));
    END IF;
    INSERT INTO cell_changes (entity, op, customer_id, epoch, row_data)
    VALUES (TG_TABLE_NAME, lower(TG_OP), NEW.customer_id, NEW.epoch, r);
    RETURN NULL;
END
$$;

CREATE TRIGGER postings_change AFTER INSERT OR UPDATE ON postings
    FOR EACH ROW EXECUTE FUNCTION cell_change_capture();
CREATE TRIGGER customers_change AFTER INSERT OR UPDATE ON customers
    FOR EACH ROW EXECUTE FUNCTION cell_change_capture();
CREATE TRIGGER accounts_change AFTER INSERT OR UPDATE ON accounts
    FOR EACH ROW EXECUTE FUNCTION cell_change_capture();
CREATE TRIGGER cards_change AFTER INSERT OR UPDATE ON cards
    FOR EACH ROW EXECUTE FUNCTION cell_change_capture();
CREATE TRIGGER transfers_change AFTER INSERT OR UPDATE ON transfers
    FOR EACH ROW EXECUTE FUNCTION cell_change_capture();
