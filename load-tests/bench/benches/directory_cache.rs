//! The directory cache lookup global does for every routed event and every
//! authorization: identifier (card hash) -> customer -> placement, through
//! `cellbank_global::directory::Directory` itself (moka in front of the
//! directory database). The directory is filled through global's own
//! directory functions in a fresh Postgres database (CELLBANK_TEST_PG, default
//! postgres://postgres:postgres@127.0.0.1:5432/postgres) with global's
//! migrations; hits never touch the database, a miss costs one query.
//! For comparison, a bare moka cache configured the way the directory
//! configures its own.

use std::path::Path;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use moka::future::Cache;
use rand::Rng;

use cellbank_global::directory::{self, Change, Directory, IdentifierKind, NewShard};
use cellbank_shared::ids::{CustomerId, ShardId};
use cellbank_shared::testkit::fresh_database;

/// Cards in the directory (and in the cache) while measuring.
const CARDS: usize = 10_000;

async fn filled_directory() -> (Directory, Vec<String>) {
    let url = fresh_database("bench_directory").await;
    let pool = sqlx::PgPool::connect(&url)
        .await
        .expect("connect to the bench database");
    let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../global/migrations");
    sqlx::migrate::Migrator::new(migrations.as_path())
        .await
        .expect("read global's migrations")
        .run(&pool)
        .await
        .expect("apply global's migrations");
    let mut tx = pool.begin().await.expect("begin");
    let shards: Vec<ShardId> = (1..=2)
        .map(|i| ShardId::parse(&format!("shard-{i}")).expect("shard id"))
        .collect();
    for (i, id) in shards.iter().enumerate() {
        let port = 8081 + i;
        directory::insert_shard(
            &mut tx,
            &NewShard {
                id: id.clone(),
                public_url: format!("http://127.0.0.1:{port}"),
                internal_url: format!("http://127.0.0.1:{port}"),
                broker_bootstrap: format!("127.0.0.1:{}", 19093 + i),
                capacity: 1_000_000,
            },
        )
        .await
        .expect("register a shard");
    }
    let mut cards = Vec::with_capacity(CARDS);
    for n in 0..CARDS {
        let customer = CustomerId::new();
        let shard = &shards[n % shards.len()];
        directory::insert_customer(&mut tx, customer, shard, "Bench Customer", "BRL")
            .await
            .expect("insert a customer");
        directory::set_customer_state(&mut tx, customer, "active")
            .await
            .expect("activate a customer");
        let hash = format!("{:064x}", n as u128 * 0x9e37_79b9_7f4a_7c15);
        directory::insert_identifier(&mut tx, IdentifierKind::Card, &hash, customer, Some("1234"))
            .await
            .expect("insert a card identifier");
        cards.push(hash);
    }
    tx.commit().await.expect("commit");
    // The size global runs with (settings cache.max_entries default).
    let dir = Directory::new(
        pool,
        cellbank_global::directory::CachePolicy {
            max_entries: 1_000_000,
            ttl: std::time::Duration::from_secs(600),
            not_found_ttl: std::time::Duration::from_secs(2),
        },
    );
    for card in &cards {
        dir.resolve(IdentifierKind::Card, card)
            .await
            .expect("resolve while warming");
    }
    (dir, cards)
}

fn directory_cache(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let (dir, cards) = rt.block_on(filled_directory());
    let mut g = c.benchmark_group("directory_cache");
    g.throughput(Throughput::Elements(1));

    g.bench_function("resolve_card_hit", |b| {
        b.to_async(&rt).iter_batched(
            || cards[rand::thread_rng().gen_range(0..cards.len())].clone(),
            |card| {
                let dir = &dir;
                async move { dir.resolve(IdentifierKind::Card, &card).await.expect("hit") }
            },
            BatchSize::SmallInput,
        )
    });

    g.bench_function("resolve_card_miss_postgres", |b| {
        b.to_async(&rt).iter_batched(
            || cards[rand::thread_rng().gen_range(0..cards.len())].clone(),
            |card| {
                let dir = &dir;
                async move {
                    dir.invalidate(&Change::Identifier {
                        kind: IdentifierKind::Card,
                        value: card.clone(),
                    })
                    .await;
                    dir.resolve(IdentifierKind::Card, &card)
                        .await
                        .expect("miss")
                }
            },
            BatchSize::SmallInput,
        )
    });

    // A bare moka cache with the directory's key type and capacity.
    let bare: Cache<(IdentifierKind, String), CustomerId> =
        Cache::builder().max_capacity(500_000).build();
    rt.block_on(async {
        for card in &cards {
            bare.insert((IdentifierKind::Card, card.clone()), CustomerId::new())
                .await;
        }
    });
    g.bench_function("bare_moka_get", |b| {
        b.to_async(&rt).iter_batched(
            || {
                (
                    IdentifierKind::Card,
                    cards[rand::thread_rng().gen_range(0..cards.len())].clone(),
                )
            },
            |key| {
                let bare = &bare;
                async move { bare.get(&key).await.expect("hit") }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, directory_cache);
criterion_main!(benches);
