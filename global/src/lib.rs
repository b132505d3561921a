//! Cellbank's global router tier: the directory of where every customer
//! lives, placement and onboarding, event routing into the cells' brokers,
//! the authorization proxy, login with HAL links, and the ops API.

// Validation returns `Problem`s (the response body itself, ~150 bytes); they
// are built only on the error path, so boxing them would buy nothing.
#![allow(clippy::result_large_err)]

pub mod authorizations;
pub mod cards;
pub mod cell_client;
pub mod credentials;
pub mod credit;
pub mod directory;
pub mod error;
pub mod events;
pub mod feed;
pub mod health;
pub mod login;
pub mod login_guard;
pub mod metrics;
pub mod moves;
pub mod onboarding;
pub mod openapi;
pub mod ops;
pub mod partners;
pub mod settings;
pub mod startup;
pub mod state;
pub mod transfers;

pub use settings::Settings;
pub use startup::Application;
