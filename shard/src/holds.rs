//! Operator holds on the cell's consumers: `PUT /admin/v1/consumers/{name}/hold`
//! pauses a consumer's partitions (the backlog waits in the cell's log, nothing
//! is skipped), `DELETE` releases it. For maintenance, customer moves and load
//! tests that measure routing apart from the ledger. A hold is stored in the
//! cell's Postgres: every replica follows it (each consumes some of the
//! partitions) and a restart keeps it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::{get, put};
use axum::{Json, Router};
use cellbank_shared::kafka::Hold;
use serde::Serialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::consumers::CellConsumer;
use crate::error::ApiError;
use crate::state::AppState;

/// The hold of each of the cell's consumers (shared with its runner).
pub type Holds = Arc<BTreeMap<CellConsumer, Hold>>;

/// One released hold per consumer an operator may hold.
pub fn released() -> Holds {
    Arc::new(BTreeMap::from(
        CellConsumer::ALL.map(|c| (c, Hold::default())),
    ))
}

pub fn admin_router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/consumers", get(list))
        .route("/admin/v1/consumers/{name}/hold", put(hold).delete(release))
}

#[derive(Serialize)]
struct ConsumerHold {
    name: &'static str,
    held: bool,
}

/// What the cell's database says is held (names it does not mention are not).
async fn stored(pool: &PgPool) -> Result<BTreeMap<String, bool>, sqlx::Error> {
    let rows: Vec<(String, bool)> = sqlx::query_as("SELECT name, held FROM consumer_holds")
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Applies the stored holds to this replica's consumers.
pub async fn load(pool: &PgPool, holds: &Holds) -> anyhow::Result<()> {
    let stored = stored(pool).await?;
    for (consumer, hold) in holds.iter() {
        hold.set(stored.get(consumer.name()).copied().unwrap_or(false));
    }
    Ok(())
}

/// Follows the stored holds until cancelled, so a hold set through another
/// replica reaches this one within a second.
pub async fn follow(
    pool: PgPool,
    holds: Holds,
    every: Duration,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            _ = tick.tick() => {
                if let Err(e) = load(&pool, &holds).await {
                    tracing::warn!(error = %format!("{e:#}"), "reading consumer holds failed; keeping the last ones");
                }
            }
        }
    }
}

async fn list(State(s): State<AppState>) -> Result<Json<Vec<ConsumerHold>>, ApiError> {
    let stored = stored(&s.pool).await?;
    Ok(Json(
        s.holds
            .keys()
            .map(|c| ConsumerHold {
                name: c.name(),
                held: stored.get(c.name()).copied().unwrap_or(false),
            })
            .collect(),
    ))
}

async fn set(s: &AppState, name: &str, held: bool) -> Result<Json<ConsumerHold>, ApiError> {
    let consumer = CellConsumer::parse(name).ok_or_else(|| {
        let known: Vec<&str> = CellConsumer::ALL.iter().map(|c| c.name()).collect();
        ApiError::NotFound(format!("no such consumer; known: {}", known.join(", ")))
    })?;
    let (name, hold) = (consumer.name(), &s.holds[&consumer]);
    sqlx::query(
        "INSERT INTO consumer_holds (name, held) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET held = EXCLUDED.held, changed_at = now()",
    )
    .bind(name)
    .bind(held)
    .execute(&s.pool)
    .await?;
    hold.set(held);
    tracing::warn!(consumer = name, held, "operator changed a consumer hold");
    Ok(Json(ConsumerHold { name, held }))
}

async fn hold(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ConsumerHold>, ApiError> {
    set(&s, &name, true).await
}

async fn release(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ConsumerHold>, ApiError> {
    set(&s, &name, false).await
}
