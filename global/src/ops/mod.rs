//! The ops API: operator endpoints behind the admin token, over the shard
//! registry and the customers in the directory.

pub mod customers;
pub mod shards;

use axum::Router;

use crate::state::AppState;

/// Every ops route, in one table.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(shards::router())
        .merge(customers::router())
}
