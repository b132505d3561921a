//! Integration tests of the global tier against real Postgres, a real global
//! broker and one real broker per cell (shard internal APIs are test peers).

#[path = "../support/mod.rs"]
mod support;

mod authorizations;
mod availability;
mod bad_input;
mod cellctl;
mod events;
mod login;
mod onboarding;
mod replicas;
mod service;
mod transfer_intake;
mod trust;
