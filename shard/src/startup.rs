//! Builds and runs the cell: migrations, topics, the HTTP API, the ledger's
//! consumers and outbox relay, the authorizer (snapshot + replay), the
//! mortician, and the key refresher, side by side until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use std::sync::atomic::Ordering;

use cellbank_shared::kafka::{admin, Handler, Producer, Runner, RunnerConfig, Topic};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::authorizer::{self, Authorizer};
use crate::ledger::consumer::{LedgerConsumer, Source};
use crate::settings::Settings;
use crate::state::AppState;
use crate::{
    accounts, admin as admin_api, auth, authorizations, cards, consumers, customers, dead_letters,
    health, ledger, metrics, transfers,
};

type Task = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

pub struct Application {
    listener: TcpListener,
    state: AppState,
    port: u16,
}

/// Creates the cell's topics, retrying while the broker starts.
async fn ensure_topics(settings: &Settings) -> anyhow::Result<()> {
    let names: Vec<&str> = Topic::SHARD.iter().map(|t| t.name()).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match admin::ensure_topics(&settings.kafka.bootstrap, &names, settings.kafka.partitions)
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

/// Runs a consumer, and rejoins its group when it stalls: lag but no progress
/// for `patience` (a member left with no partitions after a peer died, which
/// the broker does not always repair).
async fn supervised<H: Handler>(
    name: &'static str,
    make: impl Fn() -> anyhow::Result<Runner<H>>,
    bootstrap: String,
    group: String,
    topic: &'static str,
    patience: Duration,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let runner = make()?;
        let stats = runner.stats();
        let this_run = stop.child_token();
        let run = runner.run(this_run.clone());
        tokio::pin!(run);
        let watchdog = async {
            let mut last = stats.processed.load(Ordering::Relaxed);
            let mut since = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let now = stats.processed.load(Ordering::Relaxed);
                if now != last {
                    (last, since) = (now, tokio::time::Instant::now());
                    continue;
                }
                if since.elapsed() >= patience
                    && metrics::lag_of(&bootstrap, &group, topic)
                        .await
                        .unwrap_or(0)
                        > 0
                {
                    return;
                }
            }
        };
        tokio::select! {
            r = &mut run => return r,
            () = watchdog => {
                tracing::warn!(consumer = name, group = %group, "consumer stalled with lag; rejoining its group");
                this_run.cancel();
                (&mut run).await?;
                if stop.is_cancelled() {
                    return Ok(());
                }
            }
        }
    }
}

impl Application {
    /// Connects, migrates, creates topics and binds the listener (port 0 picks one).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        metrics::init();
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
        let producer = Producer::new(
            &settings.kafka.bootstrap,
            Duration::from_millis(settings.kafka.produce_timeout_ms),
        )
        .context("create producer")?;
        let decisions = Producer::with_linger(
            &settings.kafka.bootstrap,
            Duration::from_millis(settings.kafka.produce_timeout_ms),
            0,
        )
        .context("create decision producer")?;
        let mut snapshot = authorizer::log::load_latest(&pool).await?;
        let window = i64::try_from(settings.authorizer.dedupe_window_secs)
            .ok()
            .and_then(chrono::TimeDelta::try_seconds)
            .context("authorizer.dedupe_window_secs is out of range")?;
        snapshot.decisions.set_window(window);
        let authorizer = Authorizer::new(snapshot, decisions);
        let addr: SocketAddr = format!("{}:{}", settings.server.host, settings.server.port)
            .parse()
            .context("server address")?;
        let listener = TcpListener::bind(addr).await.context("bind listener")?;
        let port = listener.local_addr()?.port();
        let state = AppState {
            shard_id: settings.shard_id(),
            settings: Arc::new(settings),
            pool,
            producer,
            authorizer,
            keys: Arc::new(RwLock::new(None)),
            holds: crate::consumers::holds(),
        };
        Ok(Self {
            listener,
            state,
            port,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// The HTTP API: one table of resource routers.
    pub fn router(state: AppState) -> Router {
        let internal = Router::new()
            .merge(customers::internal_router())
            .merge(cards::internal_router())
            .merge(authorizations::internal_router())
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                auth::internal,
            ));
        let admin = Router::new()
            .merge(dead_letters::admin_router())
            .merge(admin_api::admin_router())
            .merge(consumers::admin_router())
            .merge(cards::admin_router())
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                auth::admin,
            ));
        let app = Router::new()
            .merge(health::router())
            .merge(customers::router())
            .merge(accounts::router())
            .merge(cards::router())
            .merge(transfers::router())
            .merge(internal)
            .merge(admin)
            .with_state(state.clone());
        cellbank_shared::http::with_standard_layers(app, &state.settings.server)
    }

    /// Runs everything until `shutdown` resolves or one part stops; logs which.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let s = self.state.clone();
        let cfg = &s.settings;
        let stop = CancellationToken::new();
        let group = |name: &str| format!("{}-{}-{name}", cfg.kafka.group_prefix, s.shard_id);
        let bootstrap = cfg.kafka.bootstrap.clone();

        // Holds stored by an operator apply before any consumer starts.
        crate::consumers::load(&s.pool, &s.holds).await?;
        let mut inbound_cfg = RunnerConfig::new(
            &bootstrap,
            &group("ledger-inbound"),
            &[Topic::Inbound.name()],
        );
        inbound_cfg.max_batch = cfg.ledger.max_batch;
        inbound_cfg.max_in_flight = cfg.ledger.max_batch.max(256) * 2;
        inbound_cfg.dead_letter_topic = Some(Topic::DeadLetters.name().to_owned());
        inbound_cfg.hold = s.holds[crate::consumers::LEDGER_INBOUND].clone();
        let inbound = Runner::new(
            inbound_cfg,
            LedgerConsumer::new(s.pool.clone(), Source::Inbound),
        )?;

        let mut auths_cfg = RunnerConfig::new(
            &bootstrap,
            &group("ledger-authorizations"),
            &[Topic::Authorizations.name()],
        );
        auths_cfg.max_batch = cfg.ledger.max_batch;
        auths_cfg.dead_letter_topic = Some(Topic::DeadLetters.name().to_owned());
        auths_cfg.hold = s.holds[crate::consumers::LEDGER_AUTHORIZATIONS].clone();
        let auths = Runner::new(
            auths_cfg,
            LedgerConsumer::new(s.pool.clone(), Source::Authorizations),
        )?;

        let mut dl_cfg = RunnerConfig::new(
            &bootstrap,
            &group("mortician"),
            &[Topic::DeadLetters.name()],
        );
        dl_cfg.max_batch = 64;
        dl_cfg.hold = s.holds[crate::consumers::MORTICIAN].clone();
        let pool = s.pool.clone();
        let mortician = supervised(
            "mortician",
            move || Runner::new(dl_cfg.clone(), dead_letters::Mortician::new(pool.clone())),
            bootstrap.clone(),
            group("mortician"),
            Topic::DeadLetters.name(),
            Duration::from_secs(15),
            stop.clone(),
        );

        let (auth_log, caught_up) = authorizer::log::start(
            &s.authorizer,
            s.pool.clone(),
            &bootstrap,
            &format!("{}-{}", cfg.kafka.group_prefix, s.shard_id),
        )
        .await?;

        let router = Self::router(s.clone());
        let server_stop = stop.clone();
        let listener = self.listener;
        let server: Task = Box::pin(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { server_stop.cancelled().await })
                .await
                .context("http server")
        });
        let lag_groups = vec![
            (group("ledger-inbound"), Topic::Inbound.name()),
            (group("ledger-authorizations"), Topic::Authorizations.name()),
            (group("mortician"), Topic::DeadLetters.name()),
        ];
        let tasks: Vec<(&'static str, Task)> = vec![
            ("http server", server),
            (
                "ledger inbound consumer",
                Box::pin(inbound.run(stop.clone())),
            ),
            (
                "ledger authorizations consumer",
                Box::pin(auths.run(stop.clone())),
            ),
            ("mortician", Box::pin(mortician)),
            ("authorizer log", Box::pin(auth_log.run(stop.clone()))),
            ("authorizer replay", Box::pin(caught_up)),
            (
                "authorizer snapshots",
                Box::pin(authorizer::log::snapshots(
                    s.authorizer.clone(),
                    s.pool.clone(),
                    Duration::from_secs(cfg.authorizer.snapshot_interval_secs),
                    stop.clone(),
                )),
            ),
            (
                "ledger facts relay",
                Box::pin(ledger::facts::relay(
                    s.pool.clone(),
                    s.producer.clone(),
                    stop.clone(),
                )),
            ),
            (
                "consumer holds",
                Box::pin(crate::consumers::follow(
                    s.pool.clone(),
                    s.holds.clone(),
                    Duration::from_secs(1),
                    stop.clone(),
                )),
            ),
            (
                "signing keys",
                Box::pin(auth::keep_keys(
                    s.keys.clone(),
                    cfg.global.url.clone(),
                    Duration::from_secs(300),
                    stop.clone(),
                )),
            ),
            (
                "consumer lag",
                Box::pin(metrics::watch_lag(
                    bootstrap.clone(),
                    lag_groups,
                    Duration::from_secs(5),
                    stop.clone(),
                )),
            ),
        ];
        let mut set = tokio::task::JoinSet::new();
        for (name, t) in tasks {
            set.spawn(async move { (name, t.await) });
        }
        tracing::info!(shard_id = %s.shard_id, port = self.port, "shard running");
        tokio::pin!(shutdown);
        let mut result = Ok(());
        loop {
            tokio::select! {
                () = &mut shutdown, if !stop.is_cancelled() => {
                    tracing::info!("stopping");
                    stop.cancel();
                }
                joined = set.join_next() => {
                    let Some(joined) = joined else { break };
                    match joined {
                        // the replay task finishes by design once caught up
                        Ok(("authorizer replay", Ok(()))) => continue,
                        Ok((name, Ok(()))) => {
                            if !stop.is_cancelled() {
                                tracing::warn!(task = name, "task exited; stopping the shard");
                            }
                        }
                        Ok((name, Err(e))) => {
                            tracing::error!(task = name, error = %format!("{e:#}"), "task failed; stopping the shard");
                            if result.is_ok() {
                                result = Err(e.context(name));
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "task panicked; stopping the shard");
                            if result.is_ok() {
                                result = Err(anyhow::anyhow!("task panicked: {e}"));
                            }
                        }
                    }
                    stop.cancel();
                }
            }
        }
        if let Err(e) = authorizer::log::save_snapshot(&s.pool, s.authorizer.state()).await {
            tracing::warn!(error = %format!("{e:#}"), "final authorizer snapshot failed");
        }
        s.producer.flush(Duration::from_secs(5));
        result
    }
}
