//! Kafka plumbing: logical topics, the idempotent producer, the consumer
//! runner (per-partition order, commit after effect, bounded in-flight work,
//! dead letters, pause while a circuit breaker is open), topic admin, and the
//! broker security every client carries.

pub mod breaker;
mod continuity;
mod partitions;
pub mod producer;
pub mod record;
pub mod runner;
pub mod security;
pub mod topic_admin;
pub mod topics;
mod worker;

pub use breaker::{BreakerConfig, CircuitBreaker};
pub use producer::{ProduceError, Producer};
pub use record::Record;
pub use runner::{
    dead_letter_headers, Handler, HandlerError, Hold, Runner, RunnerConfig, RunnerStats,
};
pub use security::{client_config, KafkaSecurity, SecurityProtocol};
pub use topics::Topic;
