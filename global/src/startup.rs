//! Builds the application (database, migrations, feed, caches, router,
//! listener, and every part: the HTTP server, the directory-feed consumer, the
//! feed's liveness ping, the registry refresher) and runs those parts side by
//! side under the shared supervisor, which logs which one exited.

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
use crate::directory::Directory;
use crate::feed::{Feed, FeedHandler};
use crate::login_guard::LoginGuard;
use crate::settings::Settings;
use crate::state::AppState;

/// A built, bound, not yet running global tier.
pub struct Application {
    port: u16,
    state: AppState,
    parts: Supervisor,
}

/// Every route of the global tier, in one table.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(crate::health::router())
        .merge(crate::openapi::router())
        .merge(crate::customers::router())
        .merge(crate::events::router())
        .merge(crate::authorizations::router())
        .merge(crate::login::router())
        .merge(
            crate::ops::router().route_layer(from_extractor_with_state::<Admin, _>(state.clone())),
        )
        .with_state(state.clone());
    cellbank_shared::http::with_standard_layers(api, &state.settings.server)
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        crate::metrics::register();
        cellbank_shared::kafka::security::install(settings.kafka.security());
        let directory = open_directory(&settings).await?;
        let producer = Producer::new(&settings.kafka.bootstrap, settings.kafka.produce_timeout())
            .context("create the global broker producer")?;
        let feed = Feed::new(producer, directory.clone());
        let feed_runner = feed
            .runner(&settings.kafka.bootstrap, &settings.kafka.group_prefix)
            .context("create the directory feed consumer")?;
        let state = app_state(settings, directory, feed)?;
        let server = &state.settings.server;
        let listener = TcpListener::bind((server.host.as_str(), server.port))
            .await
            .with_context(|| format!("bind {}:{}", server.host, server.port))?;
        let port = listener.local_addr()?.port();
        let parts = parts(listener, &state, feed_runner);
        Ok(Self { port, state, parts })
    }

    pub fn port(&self) -> u16 {
        self.port
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

/// The parts of the global tier: the HTTP server, the directory-feed
/// consumer, the feed's liveness ping (done once live) and the registry
/// refresher.
fn parts(listener: TcpListener, state: &AppState, feed_runner: Runner<FeedHandler>) -> Supervisor {
    let mut parts = Supervisor::new();
    let stop = parts.stop_token();
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let server_stop = stop.clone();
    parts.add("http server", async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { server_stop.cancelled().await })
            .await
            .context("http server")
    });
    parts.add("directory feed consumer", feed_runner.run(stop.clone()));
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
    let directory = Directory::new(pool, settings.cache.max_entries);
    directory
        .refresh_shards()
        .await
        .context("load the shard registry")?;
    Ok(directory)
}

/// The handles every handler shares, around the directory and its feed.
fn app_state(settings: Settings, directory: Directory, feed: Feed) -> anyhow::Result<AppState> {
    let cell_client = CellClient::new(
        settings.auth.internal_token.clone(),
        settings.routing.breaker.clone(),
        settings.routing.produce_timeout(),
        settings.routing.produce_linger_ms,
        &settings.tls,
    )?;
    let signer = TokenSigner::from_seed_b64(settings.auth.signing_key.expose())
        .map_err(|e| anyhow::anyhow!("auth.signing_key: {e}"))?;
    let pan_hasher = PanHasher::new(settings.auth.pan_hmac_key.expose().as_bytes());
    let login_guard = LoginGuard::new(
        settings.auth.login_max_failures,
        settings.auth.login_window(),
    );
    Ok(AppState {
        settings: Arc::new(settings),
        directory,
        feed,
        cell_client,
        signer: Arc::new(signer),
        pan_hasher: Arc::new(pan_hasher),
        login_guard,
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
