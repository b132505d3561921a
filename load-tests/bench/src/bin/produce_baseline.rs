//! `produce-baseline`: the physical limit of the event routing path on this
//! machine. Produces the same deposit envelopes global would route, for the
//! seeded customers, straight to each shard's broker with a plain rdkafka
//! producer (idempotent, acks=all, linger), as fast as the brokers take them,
//! and reports acknowledged messages per second as one JSON line.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use futures::channel::oneshot::Canceled;
use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;

use cellbank_bench::seed::Seed;
use cellbank_bench::stream;
use cellbank_shared::ids::{CustomerId, Epoch};
use cellbank_shared::kafka::Topic;

#[derive(Parser, Debug)]
#[command(about = "Produce the routed event stream directly to the shard brokers and report msg/s")]
struct Args {
    /// The seed file written by load-tests/seed.py (shards, customers).
    #[arg(long)]
    seed: PathBuf,
    /// How many messages to produce in all (the run stops by itself).
    #[arg(long, default_value_t = 200_000)]
    count: u64,
    /// Producer linger, as global's producer uses.
    #[arg(long, default_value_t = 5)]
    linger_ms: u32,
    /// Most messages waiting for their acknowledgement at once.
    #[arg(long, default_value_t = 50_000)]
    window: usize,
    /// The topic (default: the shards' inbound topic, where global routes to).
    #[arg(long)]
    topic: Option<String>,
    /// Give up on a message after this long.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
}

/// Acknowledged and failed deliveries.
#[derive(Default)]
struct Tally {
    acked: u64,
    failed: u64,
    first_error: Option<String>,
}

impl Tally {
    fn settle(&mut self, r: Result<OwnedDelivery, Canceled>) {
        match r {
            Ok(Ok(_)) => self.acked += 1,
            Ok(Err((e, _))) => {
                self.failed += 1;
                self.first_error.get_or_insert_with(|| e.to_string());
            }
            Err(_) => {
                self.failed += 1;
                self.first_error
                    .get_or_insert_with(|| "delivery future canceled".to_owned());
            }
        }
    }
}

type OwnedDelivery = rdkafka::producer::future_producer::OwnedDeliveryResult;

fn producer(bootstrap: &str, linger_ms: u32, timeout_ms: u64) -> anyhow::Result<FutureProducer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", linger_ms.to_string())
        .set("message.timeout.ms", timeout_ms.to_string())
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .with_context(|| format!("create a producer for {bootstrap}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let seed = Seed::load(&args.seed)?;
    let topic = args
        .topic
        .clone()
        .unwrap_or_else(|| Topic::Inbound.name().to_owned());
    let mut producers: HashMap<String, FutureProducer> = HashMap::new();
    for s in &seed.shards {
        producers.insert(
            s.id.clone(),
            producer(&s.broker_bootstrap, args.linger_ms, args.timeout_ms)?,
        );
    }
    let customers: Vec<(CustomerId, Epoch, String, String)> = seed
        .customers
        .iter()
        .filter(|c| producers.contains_key(&c.shard))
        .map(|c| {
            let id = c.customer_id.parse().context("seed customer_id")?;
            Ok((
                id,
                Epoch(c.epoch),
                c.account_number.clone(),
                c.shard.clone(),
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(
        !customers.is_empty(),
        "no seeded customer lives on a listed shard"
    );

    let started = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    let mut tally = Tally::default();
    let mut bytes = 0u64;
    for n in 0..args.count {
        let (customer_id, epoch, account, shard) = &customers[(n as usize) % customers.len()];
        let env = stream::deposit(*customer_id, *epoch, account, n);
        let payload = env.encode();
        let key = env.key();
        bytes += payload.len() as u64;
        let mut headers = OwnedHeaders::new_with_capacity(5);
        for (k, v) in env.headers() {
            headers = headers.insert(Header {
                key: k,
                value: Some(&v),
            });
        }
        let record = FutureRecord::to(&topic)
            .key(&key)
            .payload(&payload)
            .headers(headers);
        let p = &producers[shard];
        let delivery = p.send_result(record).map_err(|(e, _)| e)?;
        in_flight.push(delivery);
        while in_flight.len() >= args.window {
            if let Some(r) = in_flight.next().await {
                tally.settle(r);
            }
        }
    }
    let deadline = Duration::from_millis(args.timeout_ms + 5_000);
    let drain = async {
        while let Some(r) = in_flight.next().await {
            tally.settle(r);
        }
    };
    tokio::time::timeout(deadline, drain)
        .await
        .context("the brokers did not acknowledge every message in time")?;
    let secs = started.elapsed().as_secs_f64();
    for p in producers.values() {
        let _ = rdkafka::producer::Producer::flush(p, Timeout::After(Duration::from_secs(5)));
    }
    let result = serde_json::json!({
        "produced": args.count,
        "acked": tally.acked,
        "failed": tally.failed,
        "seconds": secs,
        "msg_per_s": tally.acked as f64 / secs,
        "avg_payload_bytes": bytes as f64 / args.count.max(1) as f64,
        "brokers": seed.shards.iter().map(|s| s.broker_bootstrap.clone()).collect::<Vec<_>>(),
        "topic": topic,
        "linger_ms": args.linger_ms,
        "first_error": tally.first_error,
    });
    println!("{result}");
    anyhow::ensure!(
        tally.failed == 0,
        "{} messages were not acknowledged",
        tally.failed
    );
    Ok(())
}
