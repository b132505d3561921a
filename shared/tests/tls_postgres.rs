//! Postgres over TLS: [`DatabaseSettings::connect`] honours the url's
//! `sslmode` and `sslrootcert` against a private server that accepts TLS
//! connections only (skipped, saying why, where no server binaries exist).

use cellbank_shared::config::DatabaseSettings;
use cellbank_shared::secret::Secret;
use cellbank_shared::testkit::{TestCa, TlsPostgres};

fn db(url: String) -> DatabaseSettings {
    DatabaseSettings {
        url: Secret::new(url),
        max_connections: 2,
        connect_timeout_ms: 5_000,
        ..DatabaseSettings::default()
    }
}

#[tokio::test]
async fn verify_full_connects_encrypted_and_plaintext_is_refused() {
    let Some(pg) = TlsPostgres::start() else {
        return;
    };
    let url = pg.fresh_database("tls_pg").await;
    let pool = db(url.clone())
        .connect()
        .await
        .unwrap_or_else(|e| panic!("verify-full: {e}\n{}", pg.server_log()));
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(ssl, "the connection is not encrypted");

    let name = url.split('?').next().unwrap().rsplit('/').next().unwrap();
    let err = db(pg.url_with_sslmode(name, "disable"))
        .connect()
        .await
        .expect_err("a plaintext connection must be refused");
    assert!(
        err.to_string().contains("no encryption") || err.to_string().contains("pg_hba"),
        "{err}"
    );
}

#[tokio::test]
async fn a_server_certificate_of_another_ca_is_refused() {
    let Some(pg) = TlsPostgres::start() else {
        return;
    };
    let other = TestCa::new();
    let url = format!(
        "{}&sslrootcert={}",
        pg.url_with_sslmode("postgres", "verify-full"),
        other.ca_path().display()
    );
    let err = db(url)
        .connect()
        .await
        .expect_err("a certificate the configured CA did not sign must be refused");
    assert!(!err.to_string().contains("postgres@"), "{err}");
}
