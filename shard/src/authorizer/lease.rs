//! One decision-maker per cell (invariant 7). A shard runs several replicas;
//! each keeps the authorizer's state hot by following the cell's log, but
//! only the replica holding the **lease** (a row in the cell's Postgres)
//! decides. The others forward each authorization to it, so no two replicas
//! spend the same available limit and a retried `network_reference` gets the
//! same answer whichever replica it lands on.
//!
//! Safety of a hand-over, without trusting clocks to agree:
//! - the leader decides only until `renewal start + ttl - 2 * publish timeout`
//!   (its own monotonic clock), and every decision's publish gives up after the
//!   publish timeout, so each of its decisions is in the log (or never will
//!   be) before the lease row can expire;
//! - a new holder takes the row only once it expired, then writes a marker
//!   into every partition of the decisions topic and decides only after its
//!   state has read past all of them: every earlier decision is then in its
//!   state, whatever the broker's high watermark says.
//!
//! A replica still replaying its log never takes the lease. A dead leader is
//! replaced within `ttl + renew`; meanwhile authorizations answer 503 and
//! global stands in.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use cellbank_shared::kafka::{Producer, Topic};
use sqlx::PgPool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Authorizer;

/// The header that marks a lease marker on the decisions topic (consumers
/// skip such records).
pub const MARKER_HEADER: &str = "cellbank-lease-marker";

/// The lease's timing, from settings.
#[derive(Clone, Copy, Debug)]
pub struct LeaseTiming {
    pub ttl: Duration,
    pub renew: Duration,
}

impl LeaseTiming {
    pub fn new(ttl: Duration, renew: Duration) -> Self {
        Self { ttl, renew }
    }

    /// How long a decision's publish may take: after it the write either
    /// landed or never will.
    pub fn publish_timeout(&self) -> Duration {
        self.ttl / 4
    }

    /// How long after a renewal began the leader may decide.
    fn validity(&self) -> Duration {
        self.ttl.saturating_sub(self.publish_timeout() * 2)
    }
}

/// Where an authorization goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// This replica holds the lease: decide here.
    Decide,
    /// Another replica holds it: forward there.
    Forward(String),
    /// Nobody holds it right now (a hand-over): answer 503.
    NoLeader,
}

#[derive(Clone, Debug)]
enum Role {
    Leader {
        generation: i64,
        valid_until: Instant,
    },
    Follower {
        leader_url: Option<String>,
    },
}

/// This replica's view of the lease (cheap to clone).
#[derive(Clone)]
pub struct Lease {
    inner: Arc<Inner>,
}

struct Inner {
    replica: Uuid,
    url: String,
    timing: LeaseTiming,
    role: Mutex<Role>,
}

impl Lease {
    /// `url` is where the other replicas reach this one's internal API.
    pub fn new(url: String, timing: LeaseTiming) -> Self {
        Self {
            inner: Arc::new(Inner {
                replica: Uuid::new_v4(),
                url,
                timing,
                role: Mutex::new(Role::Follower { leader_url: None }),
            }),
        }
    }

    pub fn replica(&self) -> Uuid {
        self.inner.replica
    }

    pub fn url(&self) -> &str {
        &self.inner.url
    }

    fn role(&self) -> Role {
        self.inner.role.lock().expect("lease role lock").clone()
    }

    fn set(&self, role: Role) {
        *self.inner.role.lock().expect("lease role lock") = role;
    }

    /// Where an authorization arriving now goes.
    pub fn route(&self) -> Route {
        match self.role() {
            Role::Leader { valid_until, .. } if Instant::now() < valid_until => Route::Decide,
            Role::Leader { .. } => Route::NoLeader,
            Role::Follower {
                leader_url: Some(url),
            } if url != self.inner.url => Route::Forward(url),
            Role::Follower { .. } => Route::NoLeader,
        }
    }

    /// The lease generation this replica leads, if it does.
    pub fn leading(&self) -> Option<i64> {
        match self.role() {
            Role::Leader { generation, .. } => Some(generation),
            Role::Follower { .. } => None,
        }
    }

    /// Holds (or follows) the lease until `stop`, then hands it back.
    pub async fn keep(
        self,
        pool: PgPool,
        authorizer: Authorizer,
        markers: Producer,
        partitions: i32,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(self.inner.timing.renew);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let started = Instant::now();
            let held = if authorizer.is_ready() {
                self.try_hold(&pool).await
            } else {
                Ok(None)
            };
            match held {
                Ok(Some(generation)) => {
                    self.lead(generation, started, &authorizer, &markers, partitions)
                        .await;
                }
                Ok(None) => self.follow(&pool).await,
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "authorizer lease not renewed"),
            }
        }
        self.release(&pool).await;
        Ok(())
    }

    /// Takes the lease if it is free or expired, renews it if ours; the
    /// generation we hold, or `None` when another replica holds it.
    async fn try_hold(&self, pool: &PgPool) -> anyhow::Result<Option<i64>> {
        let ttl_ms = i64::try_from(self.inner.timing.ttl.as_millis()).unwrap_or(i64::MAX);
        sqlx::query_scalar(
            "INSERT INTO authorizer_lease (id, holder, holder_url, generation, expires_at)
             VALUES (1, $1, $2, 1, now() + $3 * interval '1 millisecond')
             ON CONFLICT (id) DO UPDATE SET holder = EXCLUDED.holder,
                 holder_url = EXCLUDED.holder_url, expires_at = EXCLUDED.expires_at,
                 generation = CASE WHEN authorizer_lease.holder = EXCLUDED.holder
                     THEN authorizer_lease.generation ELSE authorizer_lease.generation + 1 END
             WHERE authorizer_lease.holder = EXCLUDED.holder OR authorizer_lease.expires_at < now()
             RETURNING generation",
        )
        .bind(self.inner.replica)
        .bind(&self.inner.url)
        .bind(ttl_ms)
        .fetch_optional(pool)
        .await
        .context("hold the authorizer lease")
    }

    /// We hold `generation`: extend our term, or start it once the state
    /// has read past our markers.
    async fn lead(
        &self,
        generation: i64,
        started: Instant,
        authorizer: &Authorizer,
        markers: &Producer,
        partitions: i32,
    ) {
        let valid_until = started + self.inner.timing.validity();
        if self.leading() != Some(generation) {
            if let Err(e) = self
                .barrier(generation, valid_until, authorizer, markers, partitions)
                .await
            {
                tracing::warn!(generation, error = %format!("{e:#}"), "authorizer lease taken but not caught up; retrying");
                self.set(Role::Follower { leader_url: None });
                return;
            }
            tracing::info!(generation, replica = %self.inner.replica, "this replica decides authorizations now");
        }
        self.set(Role::Leader {
            generation,
            valid_until,
        });
    }

    /// Writes a marker into every partition of the decisions topic and waits
    /// until the authorizer's state has read past each of them.
    async fn barrier(
        &self,
        generation: i64,
        deadline: Instant,
        authorizer: &Authorizer,
        markers: &Producer,
        partitions: i32,
    ) -> anyhow::Result<()> {
        let topic = Topic::Authorizations.name();
        let payload = serde_json::json!({
            "lease_generation": generation,
            "replica": self.inner.replica,
        })
        .to_string();
        let mut written = Vec::new();
        for p in 0..partitions {
            let (partition, offset) = markers
                .send_to(
                    topic,
                    Some(p),
                    b"lease",
                    payload.as_bytes(),
                    &[(MARKER_HEADER, b"1")],
                )
                .await
                .context("write a lease marker")?;
            written.push((partition, offset));
        }
        loop {
            let caught_up =
                authorizer.with_state(|s| written.iter().all(|(p, o)| s.includes(topic, *p, *o)));
            if caught_up {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the log was not read past the markers in time"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Another replica holds the lease: remember where to forward.
    async fn follow(&self, pool: &PgPool) {
        let leader: Result<Option<String>, sqlx::Error> = sqlx::query_scalar(
            "SELECT holder_url FROM authorizer_lease WHERE expires_at > now() AND holder <> $1",
        )
        .bind(self.inner.replica)
        .fetch_optional(pool)
        .await;
        match leader {
            Ok(leader_url) => self.set(Role::Follower { leader_url }),
            Err(e) => tracing::warn!(error = %e, "read the authorizer lease failed"),
        }
    }

    /// Stops deciding, lets decisions in flight land, then frees the lease so
    /// a standby takes over at once instead of after the ttl.
    async fn release(&self, pool: &PgPool) {
        if self.leading().is_none() {
            return;
        }
        self.set(Role::Follower { leader_url: None });
        tokio::time::sleep(self.inner.timing.publish_timeout()).await;
        let freed = sqlx::query("UPDATE authorizer_lease SET expires_at = now() WHERE holder = $1")
            .bind(self.inner.replica)
            .execute(pool)
            .await;
        if let Err(e) = freed {
            tracing::warn!(error = %e, "release the authorizer lease failed");
        }
    }
}
