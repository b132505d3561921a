//! The shard's integration tests, one binary (like global's): each module
//! starts the real `Application` (or the real binary) against real Postgres
//! and a real broker, through `support`.

mod api;
mod authorizer;
mod history;
mod holds_end;
mod http_edges;
mod inbound;
mod keys;
mod ledger_pg;
mod ledger_props;
mod placement;
mod replicas;
mod sigkill;
mod support;
mod transfer_props;
mod transfers_across;
mod transfers_between;
