//! HTTP between tiers over TLS: the shared client builder reaches an
//! `https://` server whose certificate a test CA signed once `tls.ca_file`
//! names that CA, and refuses it without.

use cellbank_shared::config::TlsClientSettings;
use cellbank_shared::http_client;
use cellbank_shared::testkit::TestCa;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A tiny HTTPS server on a free loopback port answering every request with
/// `200 ok`; returns its port.
async fn https_server(ca: &TestCa) -> u16 {
    let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let mut read = 0;
                while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                }
                let answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test]
async fn an_https_peer_signed_by_the_configured_ca_is_reached() {
    let ca = TestCa::new();
    let port = https_server(&ca).await;
    let tls = TlsClientSettings {
        ca_file: ca.ca_path().display().to_string(),
    };
    let client = http_client::builder(&tls).unwrap().build().unwrap();
    for host in ["127.0.0.1", "localhost"] {
        let r = client
            .get(format!("https://{host}:{port}/readyz"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{host}: {e:?}"));
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "ok");
    }
}

#[tokio::test]
async fn an_https_peer_of_an_unknown_ca_is_refused() {
    let ca = TestCa::new();
    let port = https_server(&ca).await;
    let url = format!("https://127.0.0.1:{port}/readyz");
    let plain = http_client::builder(&TlsClientSettings::default())
        .unwrap()
        .build()
        .unwrap();
    let err = plain.get(&url).send().await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    // Another CA is no better than none.
    let other = TestCa::new();
    let tls = TlsClientSettings {
        ca_file: other.ca_path().display().to_string(),
    };
    let wrong = http_client::builder(&tls).unwrap().build().unwrap();
    let err = wrong.get(&url).send().await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
}
