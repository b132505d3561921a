//! The ops API: operator endpoints behind the admin token, over the shard
//! registry and the customers in the directory.

pub mod customers;
pub mod shards;

use axum::Router;

use crate::state::AppState;

/// Every ops route, in one table (behind the shared `Admin` extractor, laid
/// over it where the tier's routes are assembled).
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(shards::router())
        .merge(customers::router())
}
