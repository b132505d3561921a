//! The ops API: operator endpoints behind the admin token, on a listener of
//! their own, over the shard registry, the customers in the directory, the
//! partners and the credit policy.

pub mod customers;
pub mod moves;
pub mod partners;
pub mod shards;

use axum::Router;

use crate::state::AppState;

/// Every ops route, in one table (behind the shared `Admin` extractor, laid
/// over it where the tier's routes are assembled).
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(shards::router())
        .merge(customers::router())
        .merge(moves::router())
        .merge(partners::router())
        .merge(crate::credit::ops_router())
        .merge(crate::transfers::ops::router())
}
