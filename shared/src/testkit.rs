//! Test helpers (feature `testkit`): a real Kafka-protocol broker process per
//! test, a fresh Postgres database per test, and TLS ones ([`TestCa`],
//! [`TlsPostgres`]).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod tls;
pub use tls::{tls_proxy, TestCa, TlsPostgres};

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// Where the `tansu` broker binary is: `$TANSU_BIN`, `~/.cargo/bin/tansu`, or `PATH`.
pub fn tansu_bin() -> PathBuf {
    if let Ok(p) = std::env::var("TANSU_BIN") {
        return PathBuf::from(p);
    }
    if let Ok(home) = std::env::var("HOME") {
        let p = PathBuf::from(home).join(".cargo/bin/tansu");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("tansu")
}

/// A real broker process; killed when dropped.
pub struct Broker {
    child: Option<Child>,
    port: u16,
    storage: String,
    _dir: tempfile::TempDir,
}

impl Broker {
    /// A broker on a free port with in-memory storage.
    pub async fn start() -> Broker {
        Self::start_with(None).await
    }

    /// A broker with durable sqlite storage, restartable on the same port.
    pub async fn start_durable() -> Broker {
        Self::start_with(Some("sqlite")).await
    }

    async fn start_with(engine: Option<&str>) -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = match engine {
            Some("sqlite") => "sqlite://broker.db".to_owned(),
            _ => "memory://tansu/".to_owned(),
        };
        let mut b = Broker {
            child: None,
            port: free_port(),
            storage,
            _dir: dir,
        };
        b.spawn().await;
        b
    }

    async fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::File::create(self._dir.path().join("broker.log")).expect("broker log");
        let child = Command::new(tansu_bin())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                &self.storage,
            ])
            .current_dir(self._dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start tansu broker (is it installed? see .ci/install)");
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(20)).await;
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker (SIGKILL) without waiting for anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and storage.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// Creates topics with `partitions` partitions each.
    pub async fn create_topics(&self, topics: &[&str], partitions: i32) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match crate::kafka::topic_admin::ensure_topics(&self.bootstrap(), topics, partitions)
                .await
            {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("create topics: {e:#}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn wait_for_port(port: u16, within: Duration) {
    let deadline = Instant::now() + within;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "broker did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Postgres server tests use (`CELLBANK_TEST_PG`, else local postgres).
pub fn pg_admin_url() -> String {
    std::env::var("CELLBANK_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Creates a fresh, empty database and returns its URL.
pub async fn fresh_database(prefix: &str) -> String {
    use sqlx::Connection;
    let admin = pg_admin_url();
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("connect to test postgres (CELLBANK_TEST_PG)");
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    format!("{base}/{name}")
}

/// Polls `cond` until it is true or `within` has passed.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if cond().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
