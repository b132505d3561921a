//! The transfer service's driver: every global replica runs one. It claims
//! due transfers (new, waiting for a retry, or left by a replica that died)
//! under a lease, drives each through its stages with a bounded number at
//! once, and leaves a step that could not be made to be retried with
//! backoff. Each step reads the directory at the time it calls a cell, so a
//! customer who moved is followed to their new cell.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use uuid::Uuid;

use cellbank_shared::contract::{CreditTransfer, SettleTransfer, VoidAnswer, VoidOutcome};
use cellbank_shared::ids::CustomerId;

use super::repo::{self, Advance};
use super::{Stage, Transfer};
use crate::cell_client::CellError;
use crate::directory::{DirectoryError, IdentifierKind, Placement};
use crate::metrics;
use crate::state::AppState;

/// Wakes the driver when a transfer is handed over (cheap to clone).
#[derive(Clone, Default)]
pub struct Handle {
    wake: Arc<Notify>,
}

impl Handle {
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// What a step came to.
enum Step {
    /// The transfer moved on (the new stage is durable).
    Next(Box<Transfer>),
    /// This replica no longer holds the transfer.
    Lost,
}

/// A step that could not be made now: retried later, with this reason.
type StepResult = Result<Step, String>;

/// Runs the driver until `stop`.
pub async fn run(state: AppState, stop: CancellationToken) {
    let me = Uuid::new_v4();
    let permits = Arc::new(Semaphore::new(state.settings.transfers.max_parallel));
    let mut ticks = 0u32;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = state.transfers.wake.notified() => {}
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        claim_and_drive(&state, me, &permits).await;
        ticks = ticks.wrapping_add(1);
        if ticks.is_multiple_of(25) {
            count_open(&state).await;
        }
    }
}

/// Claims due transfers while permits last, each driven in its own task.
async fn claim_and_drive(s: &AppState, me: Uuid, permits: &Arc<Semaphore>) {
    let ttl = s.settings.transfers.lease_ttl();
    loop {
        let free = permits.available_permits();
        if free == 0 {
            return;
        }
        let claimed = match repo::claim(s.directory.pool(), me, ttl, free.min(64) as i64).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "claiming transfers failed");
                return;
            }
        };
        if claimed.is_empty() {
            return;
        }
        for t in claimed {
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                // Claimed no more than there were permits: cannot happen;
                // the lease runs out and the transfer is claimed again.
                return;
            };
            let span = tracing::info_span!("transfer", transfer_key = %t.transfer_key,
                transfer_id = %t.transfer_id, source_shard = %t.source_shard);
            let parent = t.traceparent.clone();
            cellbank_shared::telemetry::set_parent_from(&span, |k| {
                (k == "traceparent").then(|| parent.clone()).flatten()
            });
            let s = s.clone();
            tokio::spawn(
                async move {
                    drive(&s, me, t).await;
                    drop(permit);
                }
                .instrument(span),
            );
        }
    }
}

/// Drives one transfer until it is final, a step must wait, or the lease
/// is lost.
async fn drive(s: &AppState, me: Uuid, mut t: Transfer) {
    loop {
        let stage = t.state;
        let outcome = match stage {
            Stage::Crediting => credit(s, me, &t).await,
            Stage::Voiding => void(s, me, &t).await,
            Stage::Delivering | Stage::Returning => settle(s, me, &t).await,
            Stage::Completed | Stage::Failed => return,
        };
        match outcome {
            Ok(Step::Next(next)) => {
                tracing::info!(
                    from = stage.as_str(),
                    to = next.state.as_str(),
                    "transfer moved on"
                );
                if next.state.is_final() {
                    finished(&next);
                    return;
                }
                t = *next;
            }
            Ok(Step::Lost) => return,
            Err(why) => {
                metrics::transfer_retry(stage.as_str());
                let after = backoff(t.attempts);
                tracing::warn!(stage = stage.as_str(), attempts = t.attempts + 1, error = %why, "transfer step failed; will retry");
                if let Err(e) = repo::retry(s.directory.pool(), &t, me, after, &why).await {
                    tracing::warn!(error = %e, "recording a transfer's retry failed");
                }
                return;
            }
        }
    }
}

/// 50 ms doubling to 5 s.
fn backoff(attempts: i32) -> Duration {
    Duration::from_millis(50u64 << attempts.clamp(0, 7)).min(Duration::from_secs(5))
}

fn finished(t: &Transfer) {
    let end = t.finished_at.unwrap_or_else(chrono::Utc::now);
    let secs = (end - t.requested_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
    metrics::transfer_finished(t.state.as_str(), secs.max(0.0));
    let trace_id = cellbank_shared::telemetry::current_trace_id();
    tracing::info!(
        state = t.state.as_str(),
        reason = t.reason.as_deref().unwrap_or(""),
        seconds = secs,
        %trace_id,
        "transfer settled"
    );
}

/// Moves `t` on to `to`; a lost lease is [`Step::Lost`].
async fn advance(s: &AppState, me: Uuid, t: &Transfer, to: Stage, what: Advance<'_>) -> StepResult {
    let ttl = s.settings.transfers.lease_ttl();
    match repo::advance(s.directory.pool(), t, me, ttl, to, what).await {
        Ok(Some(next)) => Ok(Step::Next(Box::new(next))),
        Ok(None) => Ok(Step::Lost),
        Err(e) => Err(format!("directory database: {e}")),
    }
}

/// The recipient's placement now; `None` when no customer has the
/// identifier the sender named.
async fn resolve_recipient(s: &AppState, t: &Transfer) -> Result<Option<Placement>, String> {
    let (kind, value) = match (&t.to_account_number, &t.to_login) {
        (Some(n), _) => (IdentifierKind::Account, n),
        (None, Some(l)) => (IdentifierKind::Login, l),
        (None, None) => return Ok(None),
    };
    match s.directory.resolve(kind, value).await {
        Ok(p) => Ok(Some(p)),
        Err(DirectoryError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

fn unknown_recipient(t: &Transfer) -> &'static str {
    if t.to_login.is_some() {
        "no customer has this login"
    } else {
        "no customer has this account number"
    }
}

/// Why a transfer not credited by now never will be, once past the bound.
fn past_the_bound(s: &AppState, t: &Transfer) -> Option<String> {
    let cfg = &s.settings.transfers;
    let age = (chrono::Utc::now() - t.accepted_at)
        .to_std()
        .unwrap_or_default();
    (age > cfg.credit_timeout()).then(|| {
        format!(
            "the recipient could not be credited within {} ms",
            cfg.credit_timeout_ms
        )
    })
}

/// Crediting: past the bound, void; an unknown recipient, return; else
/// credit the recipient's cell as the directory places them now (the cell
/// noted first, for a later void to look at).
async fn credit(s: &AppState, me: Uuid, t: &Transfer) -> StepResult {
    let cfg = &s.settings.transfers;
    if let Some(why) = past_the_bound(s, t) {
        let what = Advance {
            reason: Some(&why),
            ..Default::default()
        };
        return advance(s, me, t, Stage::Voiding, what).await;
    }
    let Some(p) = resolve_recipient(s, t).await? else {
        let what = Advance {
            reason: Some(unknown_recipient(t)),
            ..Default::default()
        };
        return advance(s, me, t, Stage::Returning, what).await;
    };
    let shard = s
        .directory
        .shard(&p.shard_id)
        .await
        .map_err(|e| e.to_string())?;
    let ttl = cfg.lease_ttl();
    let noted = repo::note_credit_shard(s.directory.pool(), t, me, ttl, shard.id.as_str())
        .await
        .map_err(|e| format!("directory database: {e}"))?;
    let Some(t) = noted else {
        return Ok(Step::Lost);
    };
    let body = CreditTransfer {
        to_account_number: t.to_account_number.clone(),
        to_customer_id: t.to_login.as_ref().map(|_| p.customer_id),
        amount: t.amount,
        currency: t
            .currency
            .parse()
            .map_err(|_| "unknown currency".to_owned())?,
    };
    let path = format!("/internal/v1/transfers/{}/credit", t.transfer_key);
    let answer = s
        .cell_client
        .call::<_, Value>(&shard, &path, &body, cfg.call_timeout())
        .await;
    match answer {
        Ok(_) => {
            let what = Advance {
                to_customer_id: Some(p.customer_id.as_uuid()),
                to_shard: Some(shard.id.as_str()),
                credited: true,
                ..Default::default()
            };
            advance(s, me, &t, Stage::Delivering, what).await
        }
        Err(e) => credit_failed(s, me, &t, p.customer_id, e).await,
    }
}

/// What a refused or failed credit means: a final refusal returns the money
/// (a void first when the cell says it will never credit it); a recipient
/// the cell does not hold or cannot write now is looked up again next time.
async fn credit_failed(
    s: &AppState,
    me: Uuid,
    t: &Transfer,
    recipient: CustomerId,
    e: CellError,
) -> StepResult {
    match e {
        CellError::Rejected {
            status: 409,
            ref body,
            ..
        } if body.contains("transfer-refused") => {
            let what = Advance {
                reason: Some("the recipient's cell refused the credit"),
                ..Default::default()
            };
            advance(s, me, t, Stage::Voiding, what).await
        }
        CellError::Rejected {
            status: 404 | 409, ..
        } => {
            s.directory.forget_customer(recipient).await;
            Err(format!(
                "the recipient is not writable where the directory placed them: {e}"
            ))
        }
        CellError::Rejected {
            status: 400 | 422,
            ref body,
            ..
        } => {
            let why = refusal(body);
            let what = Advance {
                reason: Some(&why),
                ..Default::default()
            };
            advance(s, me, t, Stage::Returning, what).await
        }
        other => Err(other.to_string()),
    }
}

/// The reason a cell gave for refusing a credit (its problem's detail).
fn refusal(body: &str) -> String {
    let detail = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_owned));
    let detail: String = detail.unwrap_or_default().chars().take(160).collect();
    if detail.is_empty() {
        "the recipient's cell refused the credit".into()
    } else {
        format!("the recipient's cell refused the credit ({detail})")
    }
}

/// Voiding: asks every cell a credit was sent to, and the recipient's cell
/// now, to void the credit. Any that booked it means it was credited
/// (deliver); all voided means none ever will (return the money).
async fn void(s: &AppState, me: Uuid, t: &Transfer) -> StepResult {
    let mut shards = t.credit_shards.clone();
    if let Some(p) = resolve_recipient(s, t).await? {
        if !shards.iter().any(|x| x == p.shard_id.as_str()) {
            shards.push(p.shard_id.to_string());
        }
    }
    let deadline = s.settings.transfers.call_timeout();
    let path = format!("/internal/v1/transfers/{}/void", t.transfer_key);
    for id in &shards {
        let id = cellbank_shared::ids::ShardId::parse(id).map_err(|e| e.to_string())?;
        let shard = s.directory.shard(&id).await.map_err(|e| e.to_string())?;
        let answer: VoidAnswer = s
            .cell_client
            .call(&shard, &path, &serde_json::json!({}), deadline)
            .await
            .map_err(|e| e.to_string())?;
        if answer.state == VoidOutcome::Received {
            let what = Advance {
                to_shard: Some(shard.id.as_str()),
                credited: true,
                ..Default::default()
            };
            return advance(s, me, t, Stage::Delivering, what).await;
        }
    }
    advance(s, me, t, Stage::Returning, Advance::default()).await
}

/// Delivering or returning, in the sender's cell as the directory places
/// them now (a sender who moved took the pending transfer along).
async fn settle(s: &AppState, me: Uuid, t: &Transfer) -> StepResult {
    let sender = CustomerId::from_uuid(t.from_customer_id);
    let p = s
        .directory
        .placement(sender)
        .await
        .map_err(|e| e.to_string())?;
    let shard = s
        .directory
        .shard(&p.shard_id)
        .await
        .map_err(|e| e.to_string())?;
    let (verb, reason, done) = match t.state {
        Stage::Delivering => ("deliver", None, Stage::Completed),
        _ => (
            "return",
            Some(
                t.reason
                    .clone()
                    .unwrap_or_else(|| "the transfer could not be completed".into()),
            ),
            Stage::Failed,
        ),
    };
    let body = SettleTransfer {
        customer_id: sender,
        reason,
    };
    let path = format!("/internal/v1/transfers/{}/{verb}", t.transfer_id);
    let deadline = s.settings.transfers.call_timeout();
    match s
        .cell_client
        .call::<_, Value>(&shard, &path, &body, deadline)
        .await
    {
        Ok(_) => advance(s, me, t, done, Advance::default()).await,
        Err(
            e @ CellError::Rejected {
                status: 404 | 409, ..
            },
        ) => {
            s.directory.forget_customer(sender).await;
            Err(format!("the sender's cell did not settle it: {e}"))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Sets the gauge of open transfers per stage.
async fn count_open(s: &AppState) {
    let Ok(counts) = repo::open_counts(s.directory.pool()).await else {
        return;
    };
    for stage in Stage::OPEN {
        let n = counts
            .iter()
            .find(|(st, _)| st == stage.as_str())
            .map_or(0, |(_, n)| *n);
        metrics::transfers_open(stage.as_str(), n);
    }
}
