//! The idempotent producer (acks=all): a send returns only once the broker
//! acknowledged the write, and carries the current W3C trace context.
//! Idempotence can be turned off for brokers that fail it ([`install_idempotence`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;

use futures::future::{self, FutureExt as _};
use rdkafka::producer::future_producer::OwnedDeliveryResult;

/// A delivery report as the partition and offset written, or why not.
fn acknowledged(
    ack: Result<OwnedDeliveryResult, futures::channel::oneshot::Canceled>,
) -> Result<(i32, i64), ProduceError> {
    match ack {
        Ok(Ok(d)) => Ok((d.partition, d.offset)),
        Ok(Err((e, _))) => Err(ProduceError::classify(e)),
        Err(_) => Err(ProduceError::Kafka(KafkaError::Canceled)),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("broker did not acknowledge: {0}")]
    Kafka(#[from] KafkaError),
    /// The message is larger than the producer or the broker takes: the
    /// sender's fault, not the broker's (no reason to open a breaker).
    #[error("message too large for the broker: {0}")]
    TooLarge(KafkaError),
}

impl ProduceError {
    /// Sorts a failed send: a message too large is [`ProduceError::TooLarge`].
    pub fn classify(e: KafkaError) -> Self {
        match e.rdkafka_error_code() {
            Some(
                RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::MessageBatchTooLarge,
            ) => Self::TooLarge(e),
            _ => Self::Kafka(e),
        }
    }
}

static IDEMPOTENCE: AtomicBool = AtomicBool::new(true);

/// Whether the producers created from now on are idempotent (the binaries
/// install `kafka.idempotence` at startup; true until then).
pub fn install_idempotence(on: bool) {
    IDEMPOTENCE.store(on, Ordering::Relaxed);
}

/// A cheap-to-clone handle on one broker's idempotent producer.
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
    timeout: Duration,
    bootstrap: String,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Producer({})", self.bootstrap)
    }
}

impl Producer {
    /// `timeout` bounds how long a send may wait for the acknowledgement.
    pub fn new(bootstrap: &str, timeout: Duration) -> Result<Self, KafkaError> {
        Self::with_linger(bootstrap, timeout, 5)
    }

    pub fn with_linger(
        bootstrap: &str,
        timeout: Duration,
        linger_ms: u32,
    ) -> Result<Self, KafkaError> {
        let mut config = super::client_config(bootstrap);
        if IDEMPOTENCE.load(Ordering::Relaxed) {
            config.set("enable.idempotence", "true");
        } else {
            // Retries stay in order with one request in flight per broker.
            config
                .set("enable.idempotence", "false")
                .set("max.in.flight.requests.per.connection", "1");
        }
        let inner: FutureProducer = config
            .set("acks", "all")
            .set("linger.ms", linger_ms.to_string())
            .set("message.timeout.ms", timeout.as_millis().to_string())
            .set("socket.connection.setup.timeout.ms", "3000")
            .set("reconnect.backoff.max.ms", "1000")
            .create()?;
        Ok(Self {
            inner,
            timeout,
            bootstrap: bootstrap.to_owned(),
        })
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Produces one message and waits for the broker's acknowledgement.
    /// Returns (partition, offset).
    pub async fn send(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        headers: &[(&str, &[u8])],
    ) -> Result<(i32, i64), ProduceError> {
        self.send_to(topic, None, key, payload, headers).await
    }

    /// Like [`Self::send`], into one chosen partition (markers that every
    /// partition of a topic must carry).
    pub async fn send_to(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: &[u8],
        payload: &[u8],
        headers: &[(&str, &[u8])],
    ) -> Result<(i32, i64), ProduceError> {
        let mut hs = OwnedHeaders::new_with_capacity(headers.len() + 2);
        for (k, v) in headers {
            hs = hs.insert(Header {
                key: k,
                value: Some(*v),
            });
        }
        for (k, v) in crate::telemetry::current_trace_headers() {
            hs = hs.insert(Header {
                key: &k,
                value: Some(v.as_bytes()),
            });
        }
        let mut record = FutureRecord::to(topic)
            .key(key)
            .payload(payload)
            .headers(hs);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        match self.inner.send(record, Timeout::After(self.timeout)).await {
            Ok(delivery) => Ok((delivery.partition, delivery.offset)),
            Err((e, _)) => Err(ProduceError::classify(e)),
        }
    }

    /// Produces an envelope to `topic`, keyed by its customer for ordering.
    pub async fn send_envelope(
        &self,
        topic: &str,
        env: &crate::envelope::Envelope,
    ) -> Result<(i32, i64), ProduceError> {
        let hs = env.headers();
        let refs: Vec<(&str, &[u8])> = hs.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        self.send(topic, env.key().as_bytes(), &env.encode(), &refs)
            .await
    }

    /// Produces `envs` to `topic` as one batch: every record is handed to
    /// librdkafka before any acknowledgement is awaited, then the
    /// acknowledgements are awaited together (no task or send future per
    /// event; librdkafka keeps one delivery report per record). Answers
    /// each envelope's outcome, in order.
    pub async fn send_envelopes(
        &self,
        topic: &str,
        envs: &[crate::envelope::Envelope],
    ) -> Vec<Result<(i32, i64), ProduceError>> {
        let trace = crate::telemetry::current_trace_headers();
        let mut acks = Vec::with_capacity(envs.len());
        for env in envs {
            let (key, payload) = (env.key(), env.encode());
            let mut hs = OwnedHeaders::new_with_capacity(8);
            for (k, v) in &env.headers() {
                hs = hs.insert(Header {
                    key: k,
                    value: Some(v.as_slice()),
                });
            }
            for (k, v) in &trace {
                hs = hs.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                });
            }
            let record = FutureRecord::to(topic)
                .key(&key)
                .payload(&payload)
                .headers(hs);
            let ack = match self.inner.send_result(record) {
                Ok(delivery) => future::Either::Left(delivery.map(acknowledged)),
                // librdkafka's queue is full: wait for room for this one.
                Err((e, record)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    let sent = self.inner.send(record, Timeout::After(self.timeout)).await;
                    future::Either::Right(future::ready(acknowledged(Ok(sent))))
                }
                Err((e, _)) => future::Either::Right(future::ready(Err(ProduceError::classify(e)))),
            };
            acks.push(ack);
        }
        future::join_all(acks).await
    }

    /// Whether the broker answers a metadata request within `within`.
    pub async fn check(&self, within: Duration) -> Result<(), String> {
        let p = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            p.client()
                .fetch_metadata(None, Timeout::After(within))
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Waits until queued messages are delivered (graceful shutdown).
    pub fn flush(&self, within: Duration) {
        let _ = self.inner.flush(Timeout::After(within));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_large_is_its_own_error() {
        for code in [
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::InvalidMessageSize,
            RDKafkaErrorCode::MessageBatchTooLarge,
        ] {
            let e = ProduceError::classify(KafkaError::MessageProduction(code));
            assert!(matches!(e, ProduceError::TooLarge(_)), "{code:?}");
        }
        let e = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        assert!(matches!(ProduceError::classify(e), ProduceError::Kafka(_)));
    }
}
