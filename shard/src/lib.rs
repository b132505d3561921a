//! One Cellbank cell: accounts and cards, the double-entry ledger, the card
//! authorizer, the dead-letter mortician and the app's HAL API.

pub mod access;
pub mod accounts;
pub mod authorizer;
pub mod cards;
pub mod changes;
pub mod consumers;
pub mod customers;
pub mod dead_letters;
pub mod error;
pub mod health;
pub mod history;
pub mod holds;
pub mod lag;
pub mod ledger;
pub mod metrics;
pub mod moves;
pub mod openapi;
pub mod outbox;
pub mod placement;
pub mod settings;
pub mod signing_keys;
pub mod startup;
pub mod state;
pub mod summary;
pub mod transfers;

pub use settings::Settings;
pub use startup::Application;

/// The cell's schema migrations (applied by `Application::build`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
