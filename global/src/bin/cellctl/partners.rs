//! `cellctl partners`: who may send events and authorizations, with their keys.

use anyhow::Context as _;
use clap::Subcommand;
use serde_json::Value;

use crate::client::{print, Client};

#[derive(Subcommand)]
pub enum PartnersCmd {
    /// Registers a partner; its key is printed once and kept only as a hash.
    Add {
        #[arg(long)]
        name: String,
        /// events and/or authorizations (repeat the flag).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Requests (events) per second; the platform default otherwise.
        #[arg(long)]
        rate_per_sec: Option<u32>,
        /// Print only the key (for scripts).
        #[arg(long)]
        print_key: bool,
    },
    List,
    /// Every key of the partner stops working.
    Revoke {
        id: String,
    },
    /// A new key; the previous one keeps working until the next rotation.
    Rotate {
        id: String,
        #[arg(long)]
        print_key: bool,
    },
}

pub async fn partners(c: &Client, cmd: PartnersCmd) -> anyhow::Result<()> {
    let (answer, print_key) = match cmd {
        PartnersCmd::Add {
            name,
            scopes,
            rate_per_sec,
            print_key,
        } => {
            let mut body = serde_json::json!({ "name": name, "scopes": scopes });
            if let Some(r) = rate_per_sec {
                body["rate_per_sec"] = r.into();
            }
            (
                c.post(&c.global, "/ops/v1/partners", &body).await?,
                print_key,
            )
        }
        PartnersCmd::List => (c.get(&c.global, "/ops/v1/partners").await?, false),
        PartnersCmd::Revoke { id } => {
            let path = format!("/ops/v1/partners/{id}/revoke");
            (c.post(&c.global, &path, &Value::Null).await?, false)
        }
        PartnersCmd::Rotate { id, print_key } => {
            let path = format!("/ops/v1/partners/{id}/rotate");
            (c.post(&c.global, &path, &Value::Null).await?, print_key)
        }
    };
    if print_key {
        println!(
            "{}",
            answer["key"].as_str().context("the answer holds no key")?
        );
    } else {
        print(&answer);
    }
    Ok(())
}
