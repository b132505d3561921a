//! Kafka plumbing: logical topics, the idempotent producer, the consumer
//! runner (per-partition order, commit after effect, bounded in-flight work,
//! dead letters, pause while a circuit breaker is open) and topic admin.

pub mod admin;
pub mod breaker;
pub mod consumer;
pub mod producer;
pub mod record;
pub mod topics;

pub use breaker::{BreakerConfig, CircuitBreaker};
pub use consumer::{Handler, HandlerError, Hold, Runner, RunnerConfig, RunnerStats};
pub use producer::{ProduceError, Producer};
pub use record::Record;
pub use topics::Topic;
