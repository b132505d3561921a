//! Types and plumbing every Cellbank cell uses: identifiers, money, the event
//! envelope, HAL and problem+json, tokens, configuration, telemetry and the
//! Kafka producer / consumer runner.

pub mod access;
pub mod config;
pub mod contract;
pub mod db;
pub mod envelope;
pub mod hal;
pub mod http;
pub mod http_client;
pub mod ids;
pub mod kafka;
pub mod metrics;
pub mod money;
pub mod openapi;
pub mod pan;
pub mod problem;
pub mod secret;
pub mod supervisor;
pub mod telemetry;
pub mod tier_client;
pub mod token;

#[cfg(feature = "testkit")]
pub mod testkit;
