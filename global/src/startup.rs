//! Builds the application (database, migrations, feed, caches, routers,
//! listeners, and every part: the public HTTP server, the ops server on its
//! own port, the directory-feed consumer, the feed's liveness ping and
//! outbox relay, the registry refresher, the completer of interrupted
//! sign-ups) and runs those parts side by side under the shared supervisor,
//! which logs which one exited.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::middleware::from_extractor_with_state;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use cellbank_shared::access::Admin;
use cellbank_shared::kafka::{Producer, Runner, Topic};
use cellbank_shared::pan::PanHasher;
use cellbank_shared::supervisor::Supervisor;
use cellbank_shared::token::TokenSigner;

use crate::cell_client::CellClient;
use crate::credentials::PasswordWork;
use crate::directory::{CachePolicy, Directory};
use crate::feed::{Caches, Feed, FeedHandler};
use crate::login_guard::LoginGuard;
use crate::partners::Partners;
use crate::settings::Settings;
use crate::state::AppState;

/// A built, bound, not yet running global tier.
pub struct Application {
    port: u16,
    ops_port: u16,
    state: AppState,
    parts: Supervisor,
}

/// Every public route of the global tier, in one table, behind load
/// shedding: past `server.max_in_flight` requests at once, 503 at once.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(crate::health::router())
        .merge(crate::openapi::router())
        .merge(crate::onboarding::router())
        .merge(crate::cards::router())
        .merge(crate::events::router())
        .merge(crate::authorizations::router())
        .merge(crate::login::router())
        .merge(crate::transfers::intake::router())
        .with_state(state.clone());
    cellbank_shared::http::with_standard_layers(api, &state.settings.server)
}

/// The ops API, on its own listener: admin token on every route, and the
/// health probes so the port can be checked.
pub fn ops_router(state: AppState) -> Router {
    let ops = Router::new()
        .merge(
            crate::ops::router().route_layer(from_extractor_with_state::<Admin, _>(state.clone())),
        )
        .merge(crate::health::router())
        .with_state(state.clone());
    cellbank_shared::http::with_standard_layers(ops, &state.settings.server)
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        crate::metrics::register();
        cellbank_shared::kafka::security::install(settings.kafka.security());
        cellbank_shared::kafka::producer::install_idempotence(settings.kafka.idempotence);
        let directory = open_directory(&settings).await?;
        let producer = Producer::new(&settings.kafka.bootstrap, settings.kafka.produce_timeout())
            .context("create the global broker producer")?;
        let partners = Partners::new(directory.pool().clone());
        let caches = Caches {
            directory: directory.clone(),
            partners: partners.clone(),
        };
        let feed = Feed::new(producer, caches);
        let feed_runner = feed
            .runner(&settings.kafka.bootstrap, &settings.kafka.group_prefix)
            .context("create the directory feed consumer")?;
        let state = app_state(settings, directory, feed, partners)?;
        let server = &state.settings.server;
        let listener = bind(&server.host, server.port).await?;
        let ops = &state.settings.ops;
        let ops_listener = bind(&ops.host, ops.port).await?;
        let port = listener.local_addr()?.port();
        let ops_port = ops_listener.local_addr()?.port();
        let parts = parts([listener, ops_listener], &state, feed_runner);
        Ok(Self {
            port,
            ops_port,
            state,
            parts,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the ops API listens.
    pub fn ops_port(&self) -> u16 {
        self.ops_port
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves or a part stops on its own.
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(port = self.port, "global tier listening");
        let outcome = self.parts.run(shutdown).await;
        self.state.feed.producer().flush(Duration::from_secs(2));
        outcome
    }
}

async fn bind(host: &str, port: u16) -> anyhow::Result<TcpListener> {
    TcpListener::bind((host, port))
        .await
        .with_context(|| format!("bind {host}:{port}"))
}

/// Serves `router` on `listener` until `stop`.
fn serve(
    parts: &mut Supervisor,
    name: &'static str,
    listener: TcpListener,
    router: Router,
    stop: CancellationToken,
) {
    let app = router.into_make_service_with_connect_info::<SocketAddr>();
    parts.add(name, async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
            .context(name)
    });
}

/// The parts of the global tier: the public and ops HTTP servers, the
/// directory-feed consumer, the feed's liveness ping (done once live), its
/// outbox relay, the registry refresher and the sign-up completer.
fn parts(
    [listener, ops_listener]: [TcpListener; 2],
    state: &AppState,
    feed_runner: Runner<FeedHandler>,
) -> Supervisor {
    let mut parts = Supervisor::new();
    let stop = parts.stop_token();
    serve(
        &mut parts,
        "http server",
        listener,
        router(state.clone()),
        stop.clone(),
    );
    let ops = ops_router(state.clone());
    serve(&mut parts, "ops server", ops_listener, ops, stop.clone());
    parts.add("directory feed consumer", feed_runner.run(stop.clone()));
    let relay = state
        .feed
        .clone()
        .relay_outbox(Duration::from_secs(1), stop.clone());
    parts.add("directory outbox relay", async move {
        relay.await;
        Ok(())
    });
    let every = Duration::from_secs(state.settings.routing.sign_up_stalled_after_secs.min(5));
    let completer = crate::onboarding::complete_stalled(state.clone(), every, stop.clone());
    parts.add("sign-up completer", async move {
        completer.await;
        Ok(())
    });
    let mover = crate::moves::mover::run(state.clone(), stop.clone());
    parts.add("mover", async move {
        mover.await;
        Ok(())
    });
    let transfers = crate::transfers::service::run(state.clone(), stop.clone());
    parts.add("transfer service", async move {
        transfers.await;
        Ok(())
    });
    let ping = state.feed.clone().ping_until_live(stop.clone());
    parts.add_finite("directory feed ping", async move {
        ping.await;
        Ok(())
    });
    let refresh = refresh_registry(state.directory.clone(), stop);
    parts.add("shard registry refresh", async move {
        refresh.await;
        Ok(())
    });
    parts
}

/// Connects to the directory database, brings its schema up to date, makes
/// sure the feed topic exists and loads the shard registry.
async fn open_directory(settings: &Settings) -> anyhow::Result<Directory> {
    let pool = settings
        .database
        .connect()
        .await
        .context("connect to the directory database")?;
    sqlx::migrate!("./migrations")
        .run(&pool)
        .await
        .context("apply directory migrations")?;
    ensure_feed_topic(settings).await?;
    let directory = Directory::new(
        pool,
        CachePolicy {
            max_entries: settings.cache.max_entries,
            ttl: settings.cache.ttl(),
            not_found_ttl: settings.cache.not_found_ttl(),
        },
    );
    directory
        .refresh_shards()
        .await
        .context("load the shard registry")?;
    Ok(directory)
}

/// The handles every handler shares, around the directory and its feed.
fn app_state(
    settings: Settings,
    directory: Directory,
    feed: Feed,
    partners: Partners,
) -> anyhow::Result<AppState> {
    let cell_client = CellClient::new(
        settings.auth.shard_tokens.clone(),
        settings.routing.breaker.clone(),
        settings.routing.produce_timeout(),
        settings.routing.produce_linger_ms,
        &settings.tls,
    )?;
    // Signs with the current key; publishes (and accepts) the next one too,
    // so a rotation never logs anyone out.
    let signer = TokenSigner::from_seeds_b64(
        settings.auth.signing_key.expose(),
        Some(settings.auth.next_signing_key.expose()),
    )
    .map_err(|e| anyhow::anyhow!("auth.signing_key / auth.next_signing_key: {e}"))?;
    let verifier = signer.verifier();
    let pan_hasher = PanHasher::new(settings.auth.pan_hmac_key.expose().as_bytes());
    let login_guard = LoginGuard::new(
        settings.auth.login_max_failures,
        settings.auth.login_window(),
    );
    let password_work = PasswordWork::new(
        settings.auth.password_hash_concurrency,
        Duration::from_secs(2),
    );
    let trusted_proxies = Arc::new(settings.auth.trusted_proxies());
    Ok(AppState {
        settings: Arc::new(settings),
        directory,
        feed,
        cell_client,
        signer: Arc::new(signer),
        pan_hasher: Arc::new(pan_hasher),
        login_guard,
        partners,
        password_work,
        verifier: Arc::new(verifier),
        trusted_proxies,
        transfers: crate::transfers::service::Handle::default(),
    })
}

/// The feed topic must exist before anyone produces to it; the global broker
/// may still be starting, so retry for a while.
async fn ensure_feed_topic(settings: &Settings) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match cellbank_shared::kafka::topic_admin::ensure_topics(
            &settings.kafka.bootstrap,
            &[Topic::DirectoryChanges.name()],
            1,
        )
        .await
        {
            Ok(()) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(e.context("create the directory-change topic"))
            }
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "global broker not ready, retrying"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Reloads the shard registry now and then, in case a feed message was lost;
/// keeps the last good copy while the database is down.
async fn refresh_registry(directory: Directory, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
        if let Err(e) = directory.refresh_shards().await {
            tracing::warn!(error = %e, "refresh shard registry failed");
        }
    }
}
