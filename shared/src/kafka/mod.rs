//! Kafka plumbing: logical topics, the idempotent producer, the consumer
//! runner (per-partition order, commit after effect, bounded in-flight work,
//! dead letters, pause while a circuit breaker is open) and topic admin.

pub mod breaker;
mod partitions;
pub mod producer;
pub mod record;
pub mod runner;
pub mod topic_admin;
pub mod topics;
mod worker;

pub use breaker::{BreakerConfig, CircuitBreaker};
pub use producer::{ProduceError, Producer};
pub use record::Record;
pub use runner::{
    dead_letter_headers, Handler, HandlerError, Hold, Runner, RunnerConfig, RunnerStats,
};
pub use topics::Topic;
