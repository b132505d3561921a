//! The steps of a move, each idempotent, so a mover that resumes another's
//! move repeats the step it died in. Before the flip a step that cannot go
//! on answers [`MoveError::Abort`] and the move rolls back; the flip is one
//! directory transaction conditioned on the old placement; after it the
//! move only goes forward.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use cellbank_shared::contract::moves::{
    Digest, DrainStatus, HistoryPage, ImportBatch, Imported, MoveCall,
};
use cellbank_shared::ids::Epoch;

use super::{repo, Move, MoveError, Phase};
use crate::directory::{Change, Shard};
use crate::state::AppState;

/// What every step needs.
#[derive(Clone)]
pub struct Ctx {
    pub state: AppState,
}

impl Ctx {
    fn settings(&self) -> &crate::settings::MoveSettings {
        &self.state.settings.moves
    }

    async fn shard(&self, id: &cellbank_shared::ids::ShardId) -> Result<Arc<Shard>, MoveError> {
        self.state
            .directory
            .shard(id)
            .await
            .map_err(|e| MoveError::Retry(e.to_string()))
    }

    async fn post<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        shard: &Shard,
        path: &str,
        body: &B,
    ) -> Result<T, MoveError> {
        let t = self.settings().call_timeout();
        Ok(self.state.cell_client.call(shard, path, body, t).await?)
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        shard: &Shard,
        path: &str,
    ) -> Result<T, MoveError> {
        let t = self.settings().call_timeout();
        Ok(self.state.cell_client.get(shard, path, t).await?)
    }

    /// `moves.step_delay_ms` (tests stop a mover between steps).
    pub async fn pause(&self) {
        let ms = self.settings().step_delay_ms;
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    fn call(&self, mv: &Move, epoch: Option<i64>) -> MoveCall {
        MoveCall {
            customer_id: mv.customer_id,
            attempt: mv.attempt,
            epoch: epoch.map(Epoch),
            moved_to: None,
        }
    }

    /// Sets the customer's directory state if it is still where the move
    /// found it; answers whether it was.
    async fn directory_state(&self, mv: &Move, from: &[&str], to: &str) -> Result<bool, MoveError> {
        self.directory_state_at(mv, &mv.from, mv.from_epoch, from, to)
            .await
    }

    /// Sets the customer's directory state if it is on `shard` at `epoch`
    /// in one of the `from` states, and announces the change; answers
    /// whether it was.
    async fn directory_state_at(
        &self,
        mv: &Move,
        shard: &cellbank_shared::ids::ShardId,
        epoch: i64,
        from: &[&str],
        to: &str,
    ) -> Result<bool, MoveError> {
        let n = sqlx::query(
            "UPDATE customers SET state = $4, updated_at = now()
             WHERE customer_id = $1 AND shard_id = $2 AND epoch = $3 AND state = ANY($5)",
        )
        .bind(mv.customer_id.as_uuid())
        .bind(shard.as_str())
        .bind(epoch)
        .bind(to)
        .bind(from)
        .execute(self.state.directory.pool())
        .await?
        .rows_affected();
        self.state
            .feed
            .announce(Change::Customer {
                customer_id: mv.customer_id,
            })
            .await;
        Ok(n == 1)
    }
}

/// Plan and preflight: both shards registered and ready, the customer
/// still where the move found it, then marked moving.
pub async fn preflight(ctx: &Ctx, mv: &Move) -> Result<(), MoveError> {
    for id in [&mv.from, &mv.to] {
        let shard = ctx.shard(id).await?;
        let _: serde_json::Value = ctx.get(&shard, "/readyz").await?;
    }
    let source = ctx.shard(&mv.from).await?;
    let lag: serde_json::Value = ctx.get(&source, "/internal/v1/lag").await?;
    let total = lag["total"].as_u64().unwrap_or(u64::MAX);
    if total > ctx.settings().max_source_lag {
        // Not an abort: the preflight waits (and retries) until the source
        // catches up, or gives up after its retries.
        return Err(MoveError::Retry(format!(
            "the source's consumers are {total} records behind (moves.max_source_lag is {})",
            ctx.settings().max_source_lag
        )));
    }
    if !ctx
        .directory_state(mv, &["active", "moving"], "moving")
        .await?
    {
        return Err(MoveError::Abort(
            "the customer's placement changed before the move started".into(),
        ));
    }
    repo::set_phase(ctx.state.directory.pool(), mv, Phase::Copying, None).await
}

/// Copies the history while the source serves: passes from the last copied
/// version until a pass copies little (or the rounds run out: the cutover
/// copies what is left, so a copy that never converges still ends).
pub async fn copy(ctx: &Ctx, mv: &mut Move) -> Result<(), MoveError> {
    let s = ctx.settings();
    let started = Instant::now();
    if mv.rounds == 0 && mv.copied_version == 0 {
        // A customer coming back holds its history up to some version on the
        // target already: the copy starts there (an empty import says where).
        let target = ctx.shard(&mv.to).await?;
        mv.copied_version = import(ctx, mv, &target, Vec::new()).await?.version;
    }
    while (mv.rounds as u32) < s.max_rounds {
        let copied = copy_pass(ctx, mv).await?;
        mv.rounds += 1;
        mv.took("copy_ms", started);
        repo::record_copy(ctx.state.directory.pool(), mv).await?;
        if copied <= s.small_delta {
            break;
        }
    }
    repo::set_phase(ctx.state.directory.pool(), mv, Phase::Cutover, None).await
}

/// One pass: every page after the copied version, imported in order.
/// Answers how many events it copied.
async fn copy_pass(ctx: &Ctx, mv: &mut Move) -> Result<u64, MoveError> {
    let (source, target) = (ctx.shard(&mv.from).await?, ctx.shard(&mv.to).await?);
    let page_size = ctx.settings().page_events;
    let mut copied = 0;
    loop {
        let path = format!(
            "/internal/v1/customers/{}/history?after={}&limit={page_size}",
            mv.customer_id, mv.copied_version
        );
        let page: HistoryPage = ctx.get(&source, &path).await?;
        let n = page.events.len();
        if n > 0 {
            let done = import(ctx, mv, &target, page.events).await?;
            mv.copied_version = done.version;
            mv.copied_events += n as i64;
            copied += n as u64;
        }
        if !page.more {
            return Ok(copied);
        }
    }
}

/// Imports `events` into the target; a batch the target finds too large is
/// imported in halves.
async fn import(
    ctx: &Ctx,
    mv: &Move,
    target: &Shard,
    events: Vec<cellbank_shared::contract::moves::HistoryEvent>,
) -> Result<Imported, MoveError> {
    let path = format!("/internal/v1/moves/{}/import", mv.id);
    let mut pending = vec![events];
    let mut last = None;
    while let Some(events) = pending.pop() {
        let n = events.len();
        let batch = ImportBatch {
            customer_id: mv.customer_id,
            attempt: mv.attempt,
            events,
        };
        let t = ctx.settings().call_timeout();
        match ctx
            .state
            .cell_client
            .call::<_, Imported>(target, &path, &batch, t)
            .await
        {
            Ok(done) => last = Some(done),
            Err(crate::cell_client::CellError::TooLarge { .. }) if n > 1 => {
                let mut first = batch.events;
                let second = first.split_off(n / 2);
                pending.push(second);
                pending.push(first);
            }
            Err(e) => return Err(e.into()),
        }
    }
    last.ok_or_else(|| MoveError::Retry("nothing to import".into()))
}

/// The freeze, up to the flip: traffic held, the source fenced and drained,
/// the tail copied and verified, then the directory flipped.
pub async fn cutover(ctx: &Ctx, mv: &mut Move) -> Result<(), MoveError> {
    let started = Instant::now();
    freeze(ctx, mv).await?;
    mv.took("hold_ms", started);
    let source = ctx.shard(&mv.from).await?;
    ctx.pause().await;
    let t = Instant::now();
    let path = format!("/internal/v1/moves/{}/fence", mv.id);
    let fence = ctx.call(mv, Some(mv.from_epoch));
    let _: serde_json::Value = ctx
        .post(&source, &path, &fence)
        .await
        .map_err(abort_on_conflict)?;
    mv.took("fence_ms", t);
    ctx.pause().await;
    let t = Instant::now();
    drain(ctx, mv, &source).await?;
    mv.took("drain_ms", t);
    let t = Instant::now();
    carry_decisions(ctx, mv, &source).await?;
    mv.took("carry_ms", t);
    ctx.pause().await;
    let t = Instant::now();
    let tail = copy_pass(ctx, mv).await?;
    mv.took("tail_ms", t);
    mv.timings.insert("tail_events".into(), tail.into());
    let t = Instant::now();
    verify(ctx, mv).await?;
    mv.took("verify_ms", t);
    ctx.pause().await;
    flip(ctx, mv, started).await
}

/// Holds the customer's new traffic on every replica (the directory says
/// `frozen`, announced on the feed; a replica that missed it is caught by
/// the fence marker) and notes when the freeze began.
async fn freeze(ctx: &Ctx, mv: &Move) -> Result<(), MoveError> {
    if !ctx
        .directory_state(mv, &["moving", "frozen"], "frozen")
        .await?
    {
        return Err(MoveError::Abort(
            "the customer's placement changed during the copy".into(),
        ));
    }
    sqlx::query("UPDATE moves SET frozen_at = now() WHERE id = $1 AND attempt = $2")
        .bind(mv.id)
        .bind(mv.attempt)
        .execute(ctx.state.directory.pool())
        .await?;
    Ok(())
}

/// A cell refusing a step for what the customer is there: the move cannot
/// go on (a 409 of another attempt is a retry).
fn abort_on_conflict(e: MoveError) -> MoveError {
    match e {
        MoveError::Refused(m) => MoveError::Abort(m),
        other => other,
    }
}

/// Waits until the source has applied everything accepted before the
/// fence (its inbound marker read, approvals stopped and booked).
async fn drain(ctx: &Ctx, mv: &Move, source: &Shard) -> Result<(), MoveError> {
    let deadline = Instant::now() + ctx.settings().drain_timeout();
    let path = format!("/internal/v1/customers/{}/drain", mv.customer_id);
    loop {
        let status: DrainStatus = ctx.get(source, &path).await?;
        if status.drained {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(MoveError::Abort(format!(
                "the source did not drain the customer's tail in time (inbound fenced: {}, authorizer fenced: {}, pending holds: {})",
                status.inbound_fenced, status.authorizer_fenced, status.pending_holds
            )));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Carries the customer's recent authorization decisions to the target's
/// authorizer, so a repeated network reference gets its first answer there.
async fn carry_decisions(ctx: &Ctx, mv: &Move, source: &Shard) -> Result<(), MoveError> {
    let path = format!(
        "/internal/v1/authorizer/customers/{}/decisions",
        mv.customer_id
    );
    let decisions: Vec<serde_json::Value> = ctx.get(source, &path).await?;
    if decisions.is_empty() {
        return Ok(());
    }
    let target = ctx.shard(&mv.to).await?;
    let _: serde_json::Value = ctx
        .post(&target, "/internal/v1/authorizer/carried", &decisions)
        .await?;
    Ok(())
}

/// Both cells' digests of the customer must agree, and each must balance.
async fn verify(ctx: &Ctx, mv: &Move) -> Result<(), MoveError> {
    let path = format!("/internal/v1/customers/{}/digest", mv.customer_id);
    let (source, target) = (ctx.shard(&mv.from).await?, ctx.shard(&mv.to).await?);
    let (a, b): (Digest, Digest) =
        tokio::try_join!(ctx.get(&source, &path), ctx.get(&target, &path))?;
    for (cell, d) in [("source", &a), ("target", &b)] {
        if d.balances_off != 0 || d.unbalanced_movements != 0 {
            return Err(MoveError::Abort(format!(
                "verification: the {cell} does not balance ({} book accounts off their postings, {} movements not summing to zero)",
                d.balances_off, d.unbalanced_movements
            )));
        }
    }
    if a != b {
        let what = json!({"source": a, "target": b});
        return Err(MoveError::Abort(format!(
            "verification: the copies differ: {what}"
        )));
    }
    Ok(())
}

/// The flip: one directory transaction, conditioned on the old placement,
/// points the customer at the target under the next epoch (traffic still
/// held) and marks the move flipped. Repeating it after it happened is a
/// no-op; anything else means the placement moved under the move.
async fn flip(ctx: &Ctx, mv: &mut Move, started: Instant) -> Result<(), MoveError> {
    let mut tx = ctx.state.directory.pool().begin().await?;
    mv.took("frozen_to_flip_ms", started);
    // The move's row first: an operator's abort that committed before this
    // (it takes the same row) wins, and one after it is refused.
    let n = sqlx::query(
        "UPDATE moves SET phase = 'flipped', flipped_at = now(), updated_at = now(),
             copied_version = $3, copied_events = $4, timings = $5
         WHERE id = $1 AND attempt = $2 AND phase = 'cutover' AND abort_requested IS NULL",
    )
    .bind(mv.id)
    .bind(mv.attempt)
    .bind(mv.copied_version)
    .bind(mv.copied_events)
    .bind(sqlx::types::Json(&mv.timings))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 0 {
        drop(tx);
        let now = repo::get(ctx.state.directory.pool(), mv.id)
            .await
            .map_err(|e| MoveError::Retry(e.to_string()))?;
        return Err(match now.abort_requested {
            Some(why) if now.attempt == mv.attempt => {
                MoveError::Abort(format!("aborted by an operator: {why}"))
            }
            _ => MoveError::Superseded(mv.id),
        });
    }
    let flipped = sqlx::query(
        "UPDATE customers SET shard_id = $3, epoch = epoch + 1, updated_at = now()
         WHERE customer_id = $1 AND shard_id = $2 AND epoch = $4 AND state = 'frozen'",
    )
    .bind(mv.customer_id.as_uuid())
    .bind(mv.from.as_str())
    .bind(mv.to.as_str())
    .bind(mv.from_epoch)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if flipped == 0 {
        return Err(MoveError::Abort(
            "the customer's placement changed during the cutover".into(),
        ));
    }
    move_count(&mut tx, mv).await?;
    tx.commit().await?;
    mv.phase = Phase::Flipped;
    Ok(())
}

/// The shards' customer counts follow the flip.
async fn move_count(conn: &mut sqlx::PgConnection, mv: &Move) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE shards SET customers = CASE WHEN id = $1 THEN GREATEST(customers - 1, 0)
         ELSE customers + 1 END, updated_at = now() WHERE id IN ($1, $2)",
    )
    .bind(mv.from.as_str())
    .bind(mv.to.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// After the flip, forward only: the target is activated at the new epoch,
/// the held traffic released to it, the source told the customer moved out.
pub async fn finish(ctx: &Ctx, mv: &mut Move) -> Result<(), MoveError> {
    let (source, target) = (ctx.shard(&mv.from).await?, ctx.shard(&mv.to).await?);
    let new_epoch = mv.from_epoch + 1;
    let path = format!("/internal/v1/moves/{}/activate", mv.id);
    let t = Instant::now();
    let _: serde_json::Value = ctx
        .post(&target, &path, &ctx.call(mv, Some(new_epoch)))
        .await?;
    mv.took("activate_ms", t);
    let released = ctx
        .directory_state_at(mv, &mv.to, new_epoch, &["frozen"], "active")
        .await?;
    if released {
        sqlx::query(
            "UPDATE moves SET freeze_ms = extract(epoch FROM (now() - frozen_at)) * 1000,
                 timings = $3
             WHERE id = $1 AND attempt = $2",
        )
        .bind(mv.id)
        .bind(mv.attempt)
        .bind(sqlx::types::Json(&mv.timings))
        .execute(ctx.state.directory.pool())
        .await?;
    }
    let path = format!("/internal/v1/moves/{}/moved-out", mv.id);
    let call = MoveCall {
        moved_to: Some(target.public_url.clone()),
        ..ctx.call(mv, None)
    };
    let _: serde_json::Value = ctx.post(&source, &path, &call).await?;
    repo::set_phase(ctx.state.directory.pool(), mv, Phase::Completed, None).await
}

/// Rolls a move back before the flip: the directory serves the source
/// again, the source's fence is released, the target's partial copy purged.
pub async fn abort(ctx: &Ctx, mv: &Move, reason: &str) -> Result<(), MoveError> {
    let pool = ctx.state.directory.pool();
    repo::set_phase(pool, mv, Phase::Aborting, Some(reason)).await?;
    ctx.directory_state(mv, &["moving", "frozen"], "active")
        .await?;
    let (source, target) = (ctx.shard(&mv.from).await?, ctx.shard(&mv.to).await?);
    let call = ctx.call(mv, None);
    let path = format!("/internal/v1/moves/{}/unfence", mv.id);
    let _: serde_json::Value = ctx.post(&source, &path, &call).await?;
    let path = format!("/internal/v1/moves/{}/purge", mv.id);
    let _: serde_json::Value = ctx.post(&target, &path, &call).await?;
    repo::set_phase(pool, mv, Phase::Aborted, None).await
}

/// Purges the source's copy of a completed move (the cell keeps a moved-out
/// marker) and records it. The cell refuses if the customer lives there again
/// (moved back since).
pub async fn purge_source(state: &AppState, mv: &Move) -> Result<(), crate::error::ApiError> {
    let source = state.directory.shard(&mv.from).await?;
    let call = MoveCall {
        customer_id: mv.customer_id,
        attempt: mv.attempt,
        epoch: None,
        moved_to: None,
    };
    let path = format!("/internal/v1/moves/{}/purge", mv.id);
    let _: serde_json::Value = state
        .cell_client
        .call(&source, &path, &call, Duration::from_secs(60))
        .await?;
    sqlx::query("UPDATE moves SET source_copy = 'purged', updated_at = now() WHERE id = $1")
        .bind(mv.id)
        .execute(state.directory.pool())
        .await
        .map_err(crate::directory::DirectoryError::from)?;
    tracing::info!(move_id = %mv.id, shard_id = %mv.from, "the source's copy of a moved customer was purged");
    Ok(())
}
