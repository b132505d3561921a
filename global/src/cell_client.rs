//! The client global talks to the cells (shards) with: it produces events to
//! each shard's broker (one lazily created Kafka producer per broker) and
//! calls their internal APIs (one pooled hyper client, request bodies
//! encoded once, answers read whole), behind a circuit
//! breaker per shard and path, so that one shard's outage only ever affects
//! that shard's customers.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::Full;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;

use cellbank_shared::envelope::Envelope;
use cellbank_shared::ids::ShardId;
use cellbank_shared::kafka::{BreakerConfig, CircuitBreaker, ProduceError, Producer, Topic};
use cellbank_shared::secret::Secret;
use cellbank_shared::tier_client::{TierClient, TierError};

use crate::directory::Shard;
use crate::metrics;

#[derive(Clone, Debug, thiserror::Error)]
pub enum CellError {
    /// The shard cannot be reached or did not answer in time; retry later.
    #[error("shard {shard} unavailable: {reason}")]
    Unavailable {
        shard: ShardId,
        reason: String,
        retry_after: u64,
    },
    /// The shard answered with an error status.
    #[error("shard {shard} answered {status}: {body}")]
    Rejected {
        shard: ShardId,
        status: u16,
        body: String,
    },
    /// The call did not finish within its deadline.
    #[error("shard {shard} did not answer within {deadline_ms} ms")]
    Timeout { shard: ShardId, deadline_ms: u64 },
    /// The request is too large for the shard or its broker: the caller's
    /// fault, so it does not count against the shard's breaker.
    #[error("too large for shard {shard}")]
    TooLarge { shard: ShardId },
}

/// What global holds for one shard: its producer and its two breakers.
struct Cell {
    bootstrap: String,
    producer: Producer,
    produce_breaker: CircuitBreaker,
    http_breaker: CircuitBreaker,
}

/// Cheap handle on every shard connection.
#[derive(Clone)]
pub struct CellClient {
    inner: Arc<Inner>,
}

struct Inner {
    cells: RwLock<HashMap<ShardId, Arc<Cell>>>,
    http: TierClient,
    /// Each shard's own internal token (per-cell credentials), as the
    /// `Authorization` header it travels in (marked sensitive).
    shard_tokens: BTreeMap<String, HeaderValue>,
    breaker: BreakerConfig,
    produce_timeout: Duration,
    produce_linger_ms: u32,
}

fn retry_after(b: &CircuitBreaker) -> u64 {
    let left = b.retry_at().saturating_duration_since(Instant::now());
    (left.as_millis().div_ceil(1000) as u64).max(1)
}

impl CellClient {
    pub fn new(
        shard_tokens: BTreeMap<String, Secret>,
        breaker: BreakerConfig,
        produce_timeout: Duration,
        produce_linger_ms: u32,
        tls: &cellbank_shared::config::TlsClientSettings,
    ) -> anyhow::Result<Self> {
        let http = TierClient::new(tls, 512)?;
        let shard_tokens = shard_tokens
            .into_iter()
            .map(|(shard, token)| {
                let mut v =
                    HeaderValue::try_from(format!("Bearer {}", token.expose())).map_err(|_| {
                        anyhow::anyhow!("auth.shard_tokens.{shard}: not a header value")
                    })?;
                v.set_sensitive(true);
                Ok((shard, v))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            inner: Arc::new(Inner {
                cells: RwLock::new(HashMap::new()),
                http,
                shard_tokens,
                breaker,
                produce_timeout,
                produce_linger_ms,
            }),
        })
    }

    fn cell(&self, shard: &Shard) -> Result<Arc<Cell>, CellError> {
        if let Some(c) = self
            .inner
            .cells
            .read()
            .expect("cells lock")
            .get(&shard.id)
            .filter(|c| c.bootstrap == shard.broker_bootstrap)
        {
            return Ok(c.clone());
        }
        let mut cells = self.inner.cells.write().expect("cells lock");
        if let Some(c) = cells
            .get(&shard.id)
            .filter(|c| c.bootstrap == shard.broker_bootstrap)
        {
            return Ok(c.clone());
        }
        let producer = Producer::with_linger(
            &shard.broker_bootstrap,
            self.inner.produce_timeout,
            self.inner.produce_linger_ms,
        )
        .map_err(|e| CellError::Unavailable {
            shard: shard.id.clone(),
            reason: format!("create producer: {e}"),
            retry_after: 1,
        })?;
        let cell = Arc::new(Cell {
            bootstrap: shard.broker_bootstrap.clone(),
            producer,
            produce_breaker: CircuitBreaker::new(self.inner.breaker.clone()),
            http_breaker: CircuitBreaker::new(self.inner.breaker.clone()),
        });
        cells.insert(shard.id.clone(), cell.clone());
        Ok(cell)
    }

    /// Produces an envelope to the shard's inbound topic and waits for the
    /// broker's acknowledgement; fails fast while the shard's breaker is open.
    pub async fn produce(&self, shard: &Shard, env: &Envelope) -> Result<(), CellError> {
        let cell = self.cell(shard)?;
        let Some(permit) = cell.produce_breaker.acquire() else {
            metrics::produce_failed(shard.id.as_str(), "breaker_open");
            return Err(unavailable(
                shard,
                "breaker open".into(),
                &cell.produce_breaker,
            ));
        };
        match cell
            .producer
            .send_envelope(Topic::Inbound.name(), env)
            .await
        {
            Ok(_) => {
                permit.succeeded();
                metrics::routed(shard.id.as_str());
                Ok(())
            }
            Err(ProduceError::TooLarge(_)) => {
                permit.neutral();
                metrics::produce_failed(shard.id.as_str(), "too_large");
                Err(CellError::TooLarge {
                    shard: shard.id.clone(),
                })
            }
            Err(e) => {
                permit.failed();
                metrics::produce_failed(shard.id.as_str(), "not_acknowledged");
                Err(unavailable(shard, e.to_string(), &cell.produce_breaker))
            }
        }
    }

    /// Produces a batch of envelopes to the shard's inbound topic in one go
    /// (every record queued, then the acknowledgements awaited together);
    /// answers each envelope's outcome in order. The batch takes one turn
    /// of the shard's breaker: it counts as a failure when any envelope was
    /// not acknowledged for a reason other than its size.
    pub async fn produce_batch(
        &self,
        shard: &Shard,
        envs: &[Envelope],
    ) -> Vec<Result<(), CellError>> {
        let cell = match self.cell(shard) {
            Ok(c) => c,
            Err(e) => return envs.iter().map(|_| Err(e.clone())).collect(),
        };
        let id = shard.id.as_str();
        let Some(permit) = cell.produce_breaker.acquire() else {
            let open = unavailable(shard, "breaker open".into(), &cell.produce_breaker);
            metrics::produce_failed(id, "breaker_open");
            return envs.iter().map(|_| Err(open.clone())).collect();
        };
        let acks = cell
            .producer
            .send_envelopes(Topic::Inbound.name(), envs)
            .await;
        let mut failed = false;
        let outcomes = acks
            .into_iter()
            .map(|ack| match ack {
                Ok(_) => {
                    metrics::routed(id);
                    Ok(())
                }
                Err(ProduceError::TooLarge(_)) => {
                    metrics::produce_failed(id, "too_large");
                    Err(CellError::TooLarge {
                        shard: shard.id.clone(),
                    })
                }
                Err(e) => {
                    failed = true;
                    metrics::produce_failed(id, "not_acknowledged");
                    Err(unavailable(shard, e.to_string(), &cell.produce_breaker))
                }
            })
            .collect();
        if failed {
            permit.failed();
        } else {
            permit.succeeded();
        }
        outcomes
    }

    /// Posts to a shard's internal API with the internal token, trace
    /// context and a deadline, behind the shard's breaker.
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        shard: &Shard,
        path: &str,
        body: &B,
        deadline: Duration,
    ) -> Result<T, CellError> {
        let body = serde_json::to_vec(body).map_err(|e| CellError::Rejected {
            shard: shard.id.clone(),
            status: 0,
            body: format!("unencodable request: {e}"),
        })?;
        let answer = self.exchange(shard, path, Some(body), deadline).await?;
        decode(shard, &answer)
    }

    /// Like [`Self::call`] with the body already encoded, answering the
    /// shard's JSON bytes as they came (to be relayed, not re-encoded).
    pub async fn call_raw(
        &self,
        shard: &Shard,
        path: &str,
        body: Vec<u8>,
        deadline: Duration,
    ) -> Result<Bytes, CellError> {
        self.exchange(shard, path, Some(body), deadline).await
    }

    /// Reads from a shard's internal API, like [`Self::call`].
    pub async fn get<T: DeserializeOwned>(
        &self,
        shard: &Shard,
        path: &str,
        deadline: Duration,
    ) -> Result<T, CellError> {
        let answer = self.exchange(shard, path, None, deadline).await?;
        decode(shard, &answer)
    }

    /// One call behind the shard's breaker: a 5xx, a refused connection or
    /// a timeout counts against it; any other error status is the
    /// caller's. Answers the body of a 2xx.
    async fn exchange(
        &self,
        shard: &Shard,
        path: &str,
        body: Option<Vec<u8>>,
        deadline: Duration,
    ) -> Result<Bytes, CellError> {
        let cell = self.cell(shard)?;
        let req = self.build(shard, path, body)?;
        let breaker = &cell.http_breaker;
        let Some(permit) = breaker.acquire() else {
            return Err(unavailable(shard, "breaker open".into(), breaker));
        };
        let answer = match self.inner.http.send(req, deadline).await {
            Ok(a) => a,
            Err(TierError::Timeout(_)) => {
                permit.failed();
                return Err(timed_out(shard, deadline));
            }
            Err(TierError::Failed(reason)) => {
                permit.failed();
                return Err(unavailable(shard, reason, breaker));
            }
        };
        let status = answer.status;
        if status.is_server_error() {
            permit.failed();
            return Err(unavailable(shard, format!("answered {status}"), breaker));
        }
        permit.succeeded();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return Err(CellError::TooLarge {
                shard: shard.id.clone(),
            });
        }
        if !status.is_success() {
            return Err(CellError::Rejected {
                shard: shard.id.clone(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&answer.body)
                    .chars()
                    .take(512)
                    .collect(),
            });
        }
        Ok(answer.body)
    }

    /// The request to the shard's internal `path` as global: a POST of
    /// `body`, or a GET without one, with its token and trace context.
    fn build(
        &self,
        shard: &Shard,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Request<Full<Bytes>>, CellError> {
        let token = self.token(shard)?;
        let url = cellbank_shared::hal::href(&shard.internal_url, path);
        let builder = match body {
            Some(_) => Request::post(url).header(CONTENT_TYPE, "application/json"),
            None => Request::get(url),
        };
        let mut req = builder
            .header(AUTHORIZATION, token.clone())
            .body(Full::new(body.map(Bytes::from).unwrap_or_default()))
            .map_err(|e| CellError::Unavailable {
                shard: shard.id.clone(),
                reason: format!("the shard's internal_url does not make a request: {e}"),
                retry_after: 30,
            })?;
        cellbank_shared::telemetry::inject_http(req.headers_mut());
        Ok(req)
    }

    /// The shard's own internal token; a shard global holds no token for
    /// cannot be called (a configuration gap, logged loudly).
    fn token(&self, shard: &Shard) -> Result<&HeaderValue, CellError> {
        self.inner
            .shard_tokens
            .get(shard.id.as_str())
            .ok_or_else(|| {
                tracing::error!(shard_id = %shard.id, "no internal token for this shard in auth.shard_tokens");
                CellError::Unavailable {
                    shard: shard.id.clone(),
                    reason: "global holds no internal token for this shard".into(),
                    retry_after: 30,
                }
            })
    }
}

/// A shard's answer as `T`; an answer that is not one is the shard's error.
fn decode<T: DeserializeOwned>(shard: &Shard, body: &[u8]) -> Result<T, CellError> {
    serde_json::from_slice(body).map_err(|e| CellError::Rejected {
        shard: shard.id.clone(),
        status: 200,
        body: format!("undecodable answer: {e}"),
    })
}

/// The shard cannot be reached now; retry once `breaker` would let a call through.
fn unavailable(shard: &Shard, reason: String, breaker: &CircuitBreaker) -> CellError {
    CellError::Unavailable {
        shard: shard.id.clone(),
        reason,
        retry_after: retry_after(breaker),
    }
}

fn timed_out(shard: &Shard, deadline: Duration) -> CellError {
    CellError::Timeout {
        shard: shard.id.clone(),
        deadline_ms: deadline.as_millis() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::ShardState;
    use cellbank_shared::ids::{CustomerId, Epoch, EventId};
    use cellbank_shared::kafka::breaker::BreakerState;

    /// librdkafka refuses an oversized message before it leaves (no broker
    /// needed): each try answers TooLarge and the shard's breaker, which one
    /// counted failure would open, stays closed.
    #[tokio::test]
    async fn too_large_does_not_open_the_breaker() {
        let breaker = BreakerConfig {
            failure_threshold: 1,
            open_ms: 60_000,
        };
        let tokens = [("shard-1".to_owned(), Secret::new("i"))].into();
        let tls = cellbank_shared::config::TlsClientSettings::default();
        let client = CellClient::new(tokens, breaker, Duration::from_secs(1), 0, &tls).unwrap();
        let shard = Shard {
            id: ShardId::parse("shard-1").unwrap(),
            public_url: String::new(),
            internal_url: String::new(),
            broker_bootstrap: "127.0.0.1:9".into(),
            state: ShardState::Active,
            capacity: 1,
            customers: 0,
        };
        let env = Envelope {
            event_id: EventId::generate(),
            customer_id: CustomerId::new(),
            epoch: Epoch(1),
            event_type: "deposit".into(),
            occurred_at: chrono::Utc::now(),
            accepted_at: chrono::Utc::now(),
            correlation_id: "c".into(),
            namespace: None,
            payload: serde_json::json!({ "memo": "x".repeat(2 << 20) }),
        };
        for _ in 0..3 {
            let e = client.produce(&shard, &env).await.unwrap_err();
            assert!(matches!(e, CellError::TooLarge { .. }), "{e}");
        }
        let cell = client.cell(&shard).unwrap();
        assert_eq!(cell.produce_breaker.state(), BreakerState::Closed);
    }
}
