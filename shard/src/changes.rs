//! The cell's change log: every committed insert or update of a posting,
//! customer, account, card or transfer (captured by a trigger into the
//! `cell_changes` outbox, see its migration), relayed to Topic::CellChanges
//! for the analytical export (`cellbank-exporter`).

use std::time::Duration;

use cellbank_shared::kafka::{Producer, Topic};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::outbox::Outbox;

/// The change log's outbox. A record is `cellbank_shared::contract::changes::Change`.
pub const OUTBOX: Outbox = Outbox {
    name: "cell changes",
    table: "cell_changes",
    payload_sql: "jsonb_build_object('seq', id, 'entity', entity, 'op', op, \
                  'customer_id', customer_id, 'epoch', epoch, 'changed_at', changed_at, \
                  'row', row_data)",
    topic: Topic::CellChanges,
    lock: 0x6365_6c6c_6368_6e67, // "cellchng"
    // The log (the broker) keeps them; a day covers any relay outage worth
    // waiting out before a redo is the exporter's job.
    keep_sent: Some(Duration::from_secs(24 * 3600)),
};

/// Relays the change log until cancelled.
pub async fn relay(
    pool: PgPool,
    producer: Producer,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    crate::outbox::relay(OUTBOX, pool, producer, shutdown).await
}
