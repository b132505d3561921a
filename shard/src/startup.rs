//! Builds the cell (migrations, topics, state, and every part: the HTTP API,
//! the consumers of [`CellConsumer`], the outbox relay, the authorizer's log,
//! replay and snapshots, the holds follower, the key refresher, the lag
//! watcher) and runs those parts side by side under one supervisor.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::middleware::from_extractor_with_state;
use axum::Router;
use cellbank_shared::access::{Admin, Internal};
use cellbank_shared::kafka::{topic_admin, Producer, Runner, Topic};
use cellbank_shared::supervisor::Supervisor;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::authorizer::lease::Lease;
use crate::authorizer::{self, decision_log, Authorizer};
use crate::consumers::CellConsumer;
use crate::dead_letters::Mortician;
use crate::ledger::intake::{LedgerIntake, Source};
use crate::settings::Settings;
use crate::signing_keys::SigningKeys;
use crate::state::AppState;
use crate::{
    accounts, cards, changes, customers, dead_letters, health, holds, lag, ledger, metrics,
    openapi, summary, transfers,
};

/// A built cell: bound, with every part constructed and none running yet.
pub struct Application {
    state: AppState,
    port: u16,
    parts: Supervisor,
}

/// Creates the cell's topics, retrying while the broker starts.
async fn ensure_topics(settings: &Settings) -> anyhow::Result<()> {
    let names: Vec<&str> = Topic::SHARD.iter().map(|t| t.name()).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match topic_admin::ensure_topics(
            &settings.kafka.bootstrap,
            &names,
            settings.kafka.partitions,
        )
        .await
        {
            Ok(()) => return Ok(()),
            Err(e) if tokio::time::Instant::now() > deadline => {
                return Err(e.context("create shard topics"))
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "create topics failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// The cell's state: database (migrated), producers, the authorizer from its
/// latest snapshot, and the operators' holds as stored.
async fn state(settings: Settings, url: String) -> anyhow::Result<AppState> {
    let shard_id = settings.shard_id()?;
    let pool = settings
        .database
        .connect()
        .await
        .context("connect to the cell's database")?;
    crate::MIGRATOR
        .run(&pool)
        .await
        .context("apply migrations")?;
    ensure_topics(&settings).await?;
    let timeout = settings.kafka.produce_timeout();
    let producer = Producer::new(&settings.kafka.bootstrap, timeout).context("create producer")?;
    // Each decision is acknowledged before its answer, within the lease's
    // publish timeout (so none lands after a hand-over); concurrent ones
    // share produce requests for at most `decision_linger_ms`.
    let lease = settings.lease();
    let decisions = Producer::with_linger(
        &settings.kafka.bootstrap,
        lease.publish_timeout(),
        settings.authorizer.decision_linger_ms,
    )
    .context("create decision producer")?;
    let mut snapshot = decision_log::load_latest(&pool).await?;
    snapshot.decisions.set_window(settings.dedupe_window()?);
    snapshot.hold_expiry = Some(settings.hold_expiry()?);
    let holds = holds::released();
    holds::load(&pool, &holds).await?;
    let forwarder = cellbank_shared::http_client::builder(&settings.tls)?
        .timeout(Duration::from_secs(2))
        .build()
        .context("create the forwarding client")?;
    let keys = SigningKeys::new(
        &settings.global.url,
        settings.jwks_min_refresh(),
        &settings.tls,
    )
    .context("create the signing-key client")?;
    let handoff = crate::transfers::handoff::Handoff::new(&settings)
        .context("create the transfer hand-off client")?;
    Ok(AppState {
        shard_id,
        settings: Arc::new(settings),
        pool,
        producer,
        authorizer: Authorizer::new(snapshot, decisions),
        lease: Lease::new(url, lease),
        forwarder,
        keys,
        holds,
        handoff,
    })
}

impl Application {
    /// Connects, migrates, creates topics, binds the listener (port 0 picks
    /// one) and constructs every part of the cell.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        metrics::init();
        cellbank_shared::kafka::security::install(settings.kafka.security());
        cellbank_shared::kafka::producer::install_idempotence(settings.kafka.idempotence);
        let addr: SocketAddr = format!("{}:{}", settings.server.host, settings.server.port)
            .parse()
            .context("server address")?;
        let listener = TcpListener::bind(addr).await.context("bind listener")?;
        let port = listener.local_addr()?.port();
        let url = match settings.authorizer.advertise_url.as_str() {
            "" => format!("http://{}:{port}", settings.server.host),
            url => url.to_owned(),
        };
        let state = state(settings, url).await?;
        let mut parts = Supervisor::new();
        let stop = parts.stop_token();
        let router = Self::router(state.clone())?;
        parts.add("http server", async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
                .context("http server")
        });
        for consumer in CellConsumer::ALL {
            add_consumer(&mut parts, &state, consumer)?;
        }
        add_authorizer(&mut parts, &state).await?;
        add_background(&mut parts, &state)?;
        Ok(Self { state, port, parts })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// The HTTP API: one table of resource routers; the internal and admin
    /// ones behind their callers' extractors; CORS for the app's origins.
    pub fn router(state: AppState) -> anyhow::Result<Router> {
        let internal = Router::new()
            .merge(customers::internal_router())
            .merge(cards::internal_router())
            .merge(authorizer::endpoint::internal_router())
            .merge(crate::moves::internal_router())
            .merge(transfers::internal_router())
            .route_layer(from_extractor_with_state::<Internal, _>(state.clone()));
        let admin = Router::new()
            .merge(dead_letters::admin_router())
            .merge(summary::admin_router())
            .merge(holds::admin_router())
            .merge(cards::admin_router())
            .route_layer(from_extractor_with_state::<Admin, _>(state.clone()));
        let app = Router::new()
            .merge(health::router())
            .merge(openapi::router())
            .merge(customers::router())
            .merge(accounts::router())
            .merge(cards::router())
            .merge(transfers::router())
            .merge(internal)
            .merge(admin)
            .with_state(state.clone());
        let app = cellbank_shared::http::with_standard_layers(app, &state.settings.server);
        cellbank_shared::http::with_cors(app, &state.settings.cors.allowed_origins)
            .context("cors.allowed_origins")
    }

    /// Runs every part until `shutdown` resolves or one part stops; the
    /// supervisor logs which.
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(shard_id = %self.state.shard_id, port = self.port, "shard running");
        let result = self.parts.run(shutdown).await;
        self.state.producer.flush(Duration::from_secs(5));
        result
    }
}

/// One of the cell's consumers, under its operator hold.
fn add_consumer(
    parts: &mut Supervisor,
    s: &AppState,
    consumer: CellConsumer,
) -> anyhow::Result<()> {
    let cfg = consumer.runner_config(&s.settings, &s.shard_id, s.holds[&consumer].clone());
    let stop = parts.stop_token();
    let pool = s.pool.clone();
    match consumer {
        CellConsumer::LedgerInbound => {
            let runner = Runner::new(cfg, LedgerIntake::new(pool, Source::Inbound))?;
            parts.add("ledger inbound consumer", runner.run(stop));
        }
        CellConsumer::LedgerAuthorizations => {
            let runner = Runner::new(cfg, LedgerIntake::new(pool, Source::Authorizations))?;
            parts.add("ledger authorizations consumer", runner.run(stop));
        }
        CellConsumer::Mortician => {
            let runner = Runner::new(cfg, Mortician::new(pool))?;
            parts.add("mortician", runner.run(stop));
        }
    }
    Ok(())
}

/// The authorizer's log follower, its lease (decide, or forward to the holder),
/// its replay (finishes once caught up) and its snapshots (the one writer of
/// snapshots, the last one at stop).
async fn add_authorizer(parts: &mut Supervisor, s: &AppState) -> anyhow::Result<()> {
    let cfg = &s.settings;
    let (log, caught_up) = decision_log::start(
        &s.authorizer,
        s.pool.clone(),
        &cfg.kafka,
        &format!("{}-{}", cfg.kafka.group_prefix, s.shard_id),
    )
    .await?;
    parts.add("authorizer log", log.run(parts.stop_token()));
    let lease = s.lease.clone().keep(
        s.pool.clone(),
        s.authorizer.clone(),
        s.producer.clone(),
        cfg.kafka.partitions,
        parts.stop_token(),
    );
    parts.add("authorizer lease", lease);
    parts.add_finite("authorizer replay", caught_up);
    parts.add(
        "authorizer snapshots",
        decision_log::snapshots(
            s.authorizer.clone(),
            s.pool.clone(),
            cfg.snapshot_interval(),
            parts.stop_token(),
        ),
    );
    Ok(())
}

/// The outbox relay, the expiry of unsettled holds, the holds follower, the
/// signing-key refresher and the consumer-lag watcher.
fn add_background(parts: &mut Supervisor, s: &AppState) -> anyhow::Result<()> {
    let stop = || -> CancellationToken { parts.stop_token() };
    let relay = ledger::facts::relay(s.pool.clone(), s.producer.clone(), stop());
    let changes = changes::relay(s.pool.clone(), s.producer.clone(), stop());
    let handoffs = transfers::handoff::relay(s.pool.clone(), s.handoff.clone(), stop());
    let follow = holds::follow(
        s.pool.clone(),
        s.holds.clone(),
        Duration::from_secs(1),
        stop(),
    );
    let keys = s.keys.clone().keep(Duration::from_secs(300), stop());
    let groups = CellConsumer::ALL
        .map(|c| (c.group(&s.settings, &s.shard_id), c.topic().name()))
        .to_vec();
    let lag = lag::watch_lag(
        s.settings.kafka.bootstrap.clone(),
        groups,
        Duration::from_secs(5),
        stop(),
    );
    let expiry = s.settings.hold_expiry()?;
    let every = (expiry / 4)
        .to_std()
        .unwrap_or(Duration::from_secs(10))
        .min(Duration::from_secs(10));
    parts.add(
        "authorization expiry",
        ledger::expiry::run(s.pool.clone(), expiry, every, stop()),
    );
    parts.add("ledger facts relay", relay);
    parts.add("change log relay", changes);
    parts.add("transfer hand-off relay", handoffs);
    parts.add("consumer holds", follow);
    parts.add("signing keys", keys);
    parts.add("consumer lag", lag);
    Ok(())
}
