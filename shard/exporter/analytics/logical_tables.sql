-- Cellbank's dataset as one logical table per entity, over every cell's
-- export (DuckDB; Athena reads the same files through the Glue tables of
-- infra/terraform/modules/analytics and takes the same views).
--
-- `{root}` is the dataset's root (a directory or s3://bucket/prefix).
-- Each `raw_<entity>` view is every change any cell exported, once: a
-- redelivery the exporter's window let through has the same cell and
-- change id, and only its first copy counts.
--
-- The rule for customers that moved between cells (explained in
-- shard/exporter/README.md): a customer belongs to the cell that holds it at
-- its latest epoch, not counting a cell still importing it. A move copies
-- the customer's whole history to the new cell, so that cell's export has
-- all of it; the old cell's rows (kept until its copy is purged, and in its
-- export for ever) are left out. Within the owner's rows a state entity
-- (customer, account, card, transfer) is its latest change; a posting, which
-- never changes, is one row per leg (event, entry, side), whatever cell
-- copy or move round wrote it.

{raw_views}

CREATE OR REPLACE VIEW owners AS
SELECT customer_id,
       arg_max(shard, (epoch, change_id)) AS shard,
       max(epoch) AS epoch
FROM raw_customers
WHERE state <> 'importing'
GROUP BY customer_id;

CREATE OR REPLACE VIEW customers AS
SELECT r.* FROM raw_customers r JOIN owners o USING (customer_id)
WHERE r.shard = o.shard
QUALIFY row_number() OVER (PARTITION BY r.customer_id ORDER BY r.change_id DESC) = 1;

CREATE OR REPLACE VIEW accounts AS
SELECT r.* FROM raw_accounts r JOIN owners o USING (customer_id)
WHERE r.shard = o.shard
QUALIFY row_number() OVER (PARTITION BY r.account_id ORDER BY r.change_id DESC) = 1;

CREATE OR REPLACE VIEW cards AS
SELECT r.* FROM raw_cards r JOIN owners o USING (customer_id)
WHERE r.shard = o.shard
QUALIFY row_number() OVER (PARTITION BY r.card_id ORDER BY r.change_id DESC) = 1;

CREATE OR REPLACE VIEW transfers AS
SELECT r.* FROM raw_transfers r JOIN owners o USING (customer_id)
WHERE r.shard = o.shard
QUALIFY row_number() OVER (PARTITION BY r.customer_id, r.transfer_id ORDER BY r.change_id DESC) = 1;

CREATE OR REPLACE VIEW postings AS
SELECT r.* FROM raw_postings r JOIN owners o USING (customer_id)
WHERE r.shard = o.shard
QUALIFY row_number() OVER (
    PARTITION BY r.customer_id, r.namespace, r.event_id, r.entry_no, sign(r.amount)
    ORDER BY r.change_id) = 1;
