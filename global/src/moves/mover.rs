//! The mover: every global replica runs one. It takes over open moves whose
//! lease is free (a new move, or one whose mover died), drives each through
//! its steps with a bounded number at once, and forwards stragglers — inbound
//! events dead-lettered in a cell for a customer another cell owns now — to
//! their owner with their event id, so they apply there exactly once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use cellbank_shared::contract::moves::Straggler;
use cellbank_shared::envelope::Envelope;

use super::steps::{self, Ctx};
use super::{repo, Move, MoveError, Phase};
use crate::state::AppState;

/// Retries of a failing step before the flip, before the move rolls back
/// (after the flip a move only goes forward, so it retries for ever).
const MAX_RETRIES_BEFORE_FLIP: u32 = 40;

/// Runs the mover until `stop`.
pub async fn run(state: AppState, stop: CancellationToken) {
    let me = Uuid::new_v4();
    let permits = Arc::new(Semaphore::new(state.settings.moves.max_parallel));
    let ctx = Ctx { state };
    let mut tick = 0u32;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        take_over(&ctx, me, &permits, &stop).await;
        tick += 1;
        if tick.is_multiple_of(20) {
            forward_stragglers(&ctx).await;
        }
        if tick.is_multiple_of(1200) {
            purge_expired_copies(&ctx).await;
        }
    }
}

/// Claims open moves while permits last, each driven in its own task.
async fn take_over(ctx: &Ctx, me: Uuid, permits: &Arc<Semaphore>, stop: &CancellationToken) {
    let pool = ctx.state.directory.pool();
    let ttl = ctx.state.settings.moves.lease_ttl();
    while let Ok(permit) = permits.clone().try_acquire_owned() {
        match repo::claim(pool, me, ttl).await {
            Ok(Some(mv)) => {
                let (ctx, stop) = (ctx.clone(), stop.clone());
                tokio::spawn(async move {
                    drive(&ctx, mv, &stop).await;
                    drop(permit);
                });
            }
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "claiming a move failed");
                return;
            }
        }
    }
}

/// Drives one move until it is over, taken over by another attempt, or
/// this replica stops (then its lease runs out and another resumes it).
#[tracing::instrument(skip_all, fields(move_id = %mv.id, customer_id = %mv.customer_id, attempt = mv.attempt))]
async fn drive(ctx: &Ctx, mut mv: Move, stop: &CancellationToken) {
    let pool = ctx.state.directory.pool();
    let ttl = ctx.state.settings.moves.lease_ttl();
    let mut retries = 0;
    tracing::info!(phase = mv.phase.as_str(), from = %mv.from, to = %mv.to, "driving a move");
    while !stop.is_cancelled() {
        ctx.pause().await;
        mv = match repo::renew(pool, &mv, ttl).await {
            Ok(m) => m,
            Err(MoveError::Superseded(_)) => return,
            Err(e) => {
                tracing::warn!(error = %e, "renewing the move's lease failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if mv.phase.is_final() {
            let _ = repo::release(pool, &mv).await;
            tracing::info!(
                phase = mv.phase.as_str(),
                reason = mv.reason.as_deref().unwrap_or(""),
                "move over"
            );
            return;
        }
        let (id, attempt) = (mv.id, mv.attempt);
        let outcome = tokio::select! {
            r = step(ctx, &mut mv) => r,
            () = heartbeat(ctx, id, attempt) => Err(MoveError::Superseded(id)),
        };
        match outcome {
            Ok(()) => retries = 0,
            Err(MoveError::Superseded(_)) => return,
            Err(MoveError::Abort(why)) if mv.phase.before_flip() => {
                tracing::warn!(reason = %why, "move rolls back");
                if let Err(e) = steps::abort(ctx, &mv, &why).await {
                    tracing::warn!(error = %e, "rolling the move back failed; retrying");
                }
            }
            Err(e) => {
                retries += 1;
                tracing::warn!(error = %e, retries, phase = mv.phase.as_str(), "move step failed; retrying");
                if mv.phase.before_flip() && retries >= MAX_RETRIES_BEFORE_FLIP {
                    let why = format!("gave up after {retries} tries: {e}");
                    let _ = steps::abort(ctx, &mv, &why).await;
                }
                let backoff = Duration::from_millis(50 * u64::from(retries.min(20)));
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

/// Renews the lease while a step runs (a step can outlast the lease: a long
/// copy, a slow cell); returns once a newer attempt took the move over, which
/// cancels the step (every step is idempotent, the new attempt redoes it).
async fn heartbeat(ctx: &Ctx, id: Uuid, attempt: i64) {
    let pool = ctx.state.directory.pool();
    let ttl = ctx.state.settings.moves.lease_ttl();
    loop {
        tokio::time::sleep(ttl / 3).await;
        match repo::extend(pool, id, attempt, ttl).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => tracing::warn!(error = %e, "renewing a move's lease failed"),
        }
    }
}

/// The step the move's phase calls for (an operator's abort first, while
/// the move can still roll back).
async fn step(ctx: &Ctx, mv: &mut Move) -> Result<(), MoveError> {
    if let (Some(why), true) = (mv.abort_requested.clone(), mv.phase.before_flip()) {
        return steps::abort(ctx, mv, &format!("aborted by an operator: {why}")).await;
    }
    match mv.phase {
        Phase::Planned => steps::preflight(ctx, mv).await,
        Phase::Copying => steps::copy(ctx, mv).await,
        Phase::Cutover => steps::cutover(ctx, mv).await,
        Phase::Flipped => steps::finish(ctx, mv).await,
        Phase::Aborting => {
            let why = mv.reason.clone().unwrap_or_else(|| "aborted".into());
            steps::abort(ctx, mv, &why).await
        }
        Phase::Completed | Phase::Aborted => Ok(()),
    }
}

/// Purges the source copies kept longer than `moves.source_retention_secs`
/// (an operator may purge sooner: `POST /ops/v1/moves/{id}/complete`).
async fn purge_expired_copies(ctx: &Ctx) {
    let retention = Duration::from_secs(ctx.state.settings.moves.source_retention_secs);
    let expired = repo::expired_source_copies(ctx.state.directory.pool(), retention).await;
    for mv in expired.unwrap_or_default() {
        if let Err(e) = steps::purge_source(&ctx.state, &mv).await {
            tracing::warn!(move_id = %mv.id, error = %e, "purging an expired source copy failed");
        }
    }
}

/// Forwards what every cell lists as stragglers to the customers' owners.
async fn forward_stragglers(ctx: &Ctx) {
    let shards: Vec<_> = ctx.state.directory.snapshot().values().cloned().collect();
    for shard in shards {
        let listed: Result<Vec<Straggler>, _> = ctx
            .state
            .cell_client
            .get(
                &shard,
                "/internal/v1/stragglers?limit=200",
                Duration::from_secs(5),
            )
            .await;
        let Ok(listed) = listed else { continue };
        for s in listed {
            if let Err(e) = forward_one(ctx, &shard, s).await {
                tracing::warn!(shard_id = %shard.id, error = %e, "forwarding a straggler failed; retried later");
            }
        }
    }
}

/// Re-stamps the straggler with its owner's epoch and produces it there
/// (same event id and namespace), then marks it forwarded in its cell.
async fn forward_one(
    ctx: &Ctx,
    from: &crate::directory::Shard,
    s: Straggler,
) -> anyhow::Result<()> {
    ctx.state.directory.forget_customer(s.customer_id).await;
    let owner = ctx.state.directory.placement(s.customer_id).await?;
    // The owner may be this cell again (a move aborted after its fence
    // refused the event); never while a move's cutover holds the customer.
    if owner.state == "frozen" {
        return Ok(());
    }
    let mut env: Envelope = serde_json::from_value(s.envelope)?;
    env.epoch = owner.epoch;
    let shard = ctx.state.directory.shard(&owner.shard_id).await?;
    ctx.state.cell_client.produce(&shard, &env).await?;
    let path = format!("/internal/v1/stragglers/{}/forwarded", s.id);
    let _: serde_json::Value = ctx
        .state
        .cell_client
        .call(from, &path, &serde_json::json!({}), Duration::from_secs(5))
        .await?;
    tracing::info!(shard_id = %from.id, owner = %owner.shard_id, event_id = %env.event_id, "straggler forwarded to its owner");
    Ok(())
}
