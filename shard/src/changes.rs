//! The cell's change log: every committed insert or update of a posting,
//! customer, account, card or transfer (captured by a trigger into the
//! `cell_changes` outbox, see its migration), relayed to Topic::CellChanges
//! for the analytical export (`cellbank-exporter`).

use cellbank_shared::kafka::{Producer, Topic};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::outbox::{Outbox, Sent};

/// The change log's outbox. A record is `cellbank_shared::contract::changes::Change`.
pub const OUTBOX: Outbox = Outbox {
    name: "cell changes",
    table: "cell_changes",
    // A new posting is captured by id only (its row is immutable): the relay
    // reads it here, which keeps the ledger's transaction small. One purged
    // before it was relayed (its customer moved on) is sent with its id only.
    joins_sql: "LEFT JOIN postings p ON o.row_data IS NULL AND p.id = o.posting_id \
                LEFT JOIN book_accounts b ON b.id = p.book_account_id",
    payload_sql: "jsonb_build_object('seq', o.id, 'entity', o.entity, 'op', o.op, \
                  'customer_id', o.customer_id, 'epoch', o.epoch, 'changed_at', o.changed_at, \
                  'row', coalesce(o.row_data, to_jsonb(p) || jsonb_build_object('account_code', b.code), \
                                  jsonb_build_object('id', o.posting_id)))",
    topic: Topic::CellChanges,
    lock: 0x6365_6c6c_6368_6e67, // "cellchng"
    // The log keeps them once relayed.
    sent: Sent::Delete,
};

/// Relays the change log until cancelled.
pub async fn relay(
    pool: PgPool,
    producer: Producer,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    crate::outbox::relay(OUTBOX, pool, producer, shutdown).await
}
