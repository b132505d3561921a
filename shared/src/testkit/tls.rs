//! TLS test helpers: a private CA with a server certificate for loopback, a
//! TLS-terminating proxy, and a private PostgreSQL server that accepts TLS
//! connections only.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use tokio_rustls::rustls;

/// A CA made for one test and a server certificate it signed for
/// `localhost` and `127.0.0.1`, written as PEM files in a temp dir.
pub struct TestCa {
    dir: tempfile::TempDir,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new() -> TestCa {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "Cellbank test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().expect("ca key");
        let ca_cert = ca.self_signed(&ca_key).expect("self-sign the ca");
        let mut leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("server params");
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("server key");
        let cert = leaf
            .signed_by(&key, &ca_cert, &ca_key)
            .expect("sign the server certificate");
        let made = TestCa {
            dir: tempfile::tempdir().expect("tempdir"),
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        std::fs::write(made.ca_path(), &made.ca_pem).expect("write ca.pem");
        std::fs::write(made.cert_path(), &made.cert_pem).expect("write server.pem");
        std::fs::write(made.key_path(), &made.key_pem).expect("write server.key");
        made
    }

    /// The CA certificate clients trust.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// A rustls server config presenting the server certificate.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let cert = CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).expect("cert pem");
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("key pem");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("tls versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("server certificate");
        Arc::new(config)
    }
}

/// A TLS-terminating proxy on a free loopback port, as an ingress or a mesh
/// in front of a tier: it accepts TLS with `ca`'s server certificate and
/// relays each connection to `127.0.0.1:backend` in the clear. Returns its
/// port; it runs as long as the test's runtime.
pub async fn tls_proxy(ca: &TestCa, backend: u16) -> u16 {
    let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind proxy");
    let port = listener.local_addr().expect("proxy addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(("127.0.0.1", backend)).await
                else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// A private PostgreSQL server on a free loopback port, in a temp dir, that
/// accepts TLS connections only (`hostssl` in pg_hba.conf; plaintext is
/// rejected). Users are trusted: the test is about the channel. Stopped when
/// dropped.
pub struct TlsPostgres {
    ca: TestCa,
    dir: tempfile::TempDir,
    port: u16,
    pg: PgRun,
}

impl TlsPostgres {
    /// Starts the server, or `None` (with the reason printed) when the
    /// PostgreSQL server binaries are not installed here.
    pub fn start() -> Option<TlsPostgres> {
        let pg = match PgRun::find() {
            Ok(pg) => pg,
            Err(reason) => {
                eprintln!("skipping: no private PostgreSQL server: {reason}");
                return None;
            }
        };
        let me = TlsPostgres {
            ca: TestCa::new(),
            dir: tempfile::tempdir().expect("tempdir"),
            port: super::free_port(),
            pg,
        };
        me.init();
        me.pg
            .run(
                "pg_ctl",
                &["-D", &me.data(), "-l", &me.log(), "-w", "-t", "60", "start"],
            )
            .unwrap_or_else(|e| panic!("start postgres: {e}\n{}", me.server_log()));
        Some(me)
    }

    /// initdb, the server certificate, TLS settings and a TLS-only pg_hba.conf.
    fn init(&self) {
        let root = self.dir.path();
        std::fs::write(root.join("server.pem"), &self.ca.cert_pem).expect("server.pem");
        std::fs::write(root.join("server.key"), &self.ca.key_pem).expect("server.key");
        set_mode(&root.join("server.key"), 0o600);
        self.pg.give(root);
        self.pg
            .run(
                "initdb",
                &[
                    "-D",
                    &self.data(),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
            )
            .unwrap_or_else(|e| panic!("initdb: {e}"));
        let d = root.display();
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{d}'\n\
             ssl = on\nssl_cert_file = '{d}/server.pem'\nssl_key_file = '{d}/server.key'\n\
             fsync = off\nmax_connections = 100\n",
            self.port
        );
        append(&root.join("data/postgresql.conf"), &conf);
        std::fs::write(
            root.join("data/pg_hba.conf"),
            "local all all trust\n\
             hostssl all all 127.0.0.1/32 trust\n\
             hostnossl all all 0.0.0.0/0 reject\n",
        )
        .expect("write pg_hba.conf");
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn log(&self) -> String {
        self.dir.path().join("postgres.log").display().to_string()
    }

    /// The server's own log, for a failing test's message.
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA that signed the server's certificate.
    pub fn ca_path(&self) -> PathBuf {
        self.ca.ca_path()
    }

    /// The test CA itself (e.g. for [`tls_proxy`]s trusted through the same file).
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// A url of `db` with `sslmode=verify-full` against the test CA.
    pub fn url(&self, db: &str) -> String {
        format!(
            "{}?sslmode=verify-full&sslrootcert={}",
            self.base_url(db),
            self.ca_path().display()
        )
    }

    /// A url of `db` with the given `sslmode` and no CA (e.g. `disable`).
    pub fn url_with_sslmode(&self, db: &str, mode: &str) -> String {
        format!("{}?sslmode={mode}", self.base_url(db))
    }

    fn base_url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a fresh, empty database (over TLS) and returns its [`Self::url`].
    pub async fn fresh_database(&self, prefix: &str) -> String {
        use sqlx::Connection as _;
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .unwrap_or_else(|e| panic!("connect over tls: {e}\n{}", self.server_log()));
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .expect("create test database");
        self.url(&name)
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let _ = self.pg.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }
}

/// Where the server binaries are, and the user that runs them: PostgreSQL
/// refuses to run as root, so under root they run as `postgres`.
struct PgRun {
    bin: PathBuf,
    /// (uid, gid) of `postgres` when this process is root.
    as_postgres: Option<(u32, u32)>,
}

impl PgRun {
    fn find() -> Result<PgRun, String> {
        let bin = server_bin_dir()?;
        let as_postgres = if id(&["-u"])? == 0 {
            let ids = (id(&["-u", "postgres"]), id(&["-g", "postgres"]));
            match ids {
                (Ok(u), Ok(g)) => Some((u, g)),
                _ => return Err("running as root and there is no `postgres` user".into()),
            }
        } else {
            None
        };
        Ok(PgRun { bin, as_postgres })
    }

    /// Hands `dir` (and what is in it) to the user that runs the server.
    fn give(&self, dir: &Path) {
        let Some((uid, gid)) = self.as_postgres else {
            return;
        };
        for e in std::fs::read_dir(dir).expect("read dir").flatten() {
            std::os::unix::fs::chown(e.path(), Some(uid), Some(gid)).expect("chown");
        }
        std::os::unix::fs::chown(dir, Some(uid), Some(gid)).expect("chown");
    }

    /// Runs one server tool to completion; its output on failure.
    fn run(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let exe = self.bin.join(tool);
        let mut cmd = match self.as_postgres {
            Some(_) => {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let out = cmd
            .args(args)
            .current_dir("/")
            .output()
            .map_err(|e| format!("run {}: {e}", exe.display()))?;
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "{tool} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `$CELLBANK_PG_BIN`, else the newest `/usr/lib/postgresql/<version>/bin`.
fn server_bin_dir() -> Result<PathBuf, String> {
    let has_tools = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Ok(d) = std::env::var("CELLBANK_PG_BIN") {
        let d = PathBuf::from(d);
        return if has_tools(&d) {
            Ok(d)
        } else {
            Err(format!(
                "CELLBANK_PG_BIN={} has no initdb/pg_ctl",
                d.display()
            ))
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| "/usr/lib/postgresql does not exist".to_owned())?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| has_tools(d))
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, d)| d)
        .ok_or_else(|| "no /usr/lib/postgresql/*/bin with initdb and pg_ctl".to_owned())
}

fn id(args: &[&str]) -> Result<u32, String> {
    let out = Command::new("id")
        .args(args)
        .output()
        .map_err(|e| format!("run id: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| format!("id {}: no such user", args.join(" ")))
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn append(path: &Path, text: &str) {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open for append");
    f.write_all(text.as_bytes()).expect("append");
}
