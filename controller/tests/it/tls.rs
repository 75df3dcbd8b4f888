//! HTTPS served by ferrumd itself (`[web] tls_cert`, `tls_key`): the API
//! and the portal on one TLS listener, the portal's cookies `Secure`, plain
//! HTTP refused on that port, a silent client holding up nobody, and bad
//! certificate files named at start.

use std::path::Path;

use ferrum_controller::app::conductor::SimConductor;
use ferrum_controller::config::Config;
use reqwest::header::SET_COOKIE;
use tokio::io::AsyncWriteExt;

use super::harness::TestContext;

/// A self-signed certificate for 127.0.0.1 and its key, as PEM files in `dir`.
fn certificate(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("a certificate");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).expect("cert.pem");
    std::fs::write(&key, made.signing_key.serialize_pem()).expect("key.pem");
    (cert, key)
}

#[tokio::test]
async fn ferrumd_serves_the_api_and_the_portal_over_https() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert, key) = certificate(certs.path());
    let mut config = Config::default();
    config.web.tls_cert = Some(cert);
    config.web.tls_key = Some(key);
    let ctx = TestContext::empty_configured(config, std::sync::Arc::new(SimConductor)).await;
    assert!(ctx.url.starts_with("https://127.0.0.1:"), "{}", ctx.url);
    let address = ctx.url.trim_start_matches("https://").to_owned();

    // A client that says nothing holds up no one: handshakes run apart.
    let mut silent = tokio::net::TcpStream::connect(&address).await.expect("a TCP connection");
    assert_eq!(ctx.get("/api/v1/users/me", &ctx.admin).await.expect(200)["name"], "admin");

    // The portal, same origin: its cookies are Secure without a public_url.
    let login = ctx.client.get(format!("{}/login", ctx.url)).send().await.expect("the sign-in page");
    assert_eq!(login.status(), 200);
    let cookie = login.headers().get(SET_COOKIE).and_then(|v| v.to_str().ok()).expect("the form cookie").to_owned();
    assert!(cookie.starts_with("ferrum_form=") && cookie.contains("; Secure"), "{cookie}");
    // An activation link carries the https address.
    let link = ctx.post("/api/v1/users/admin/activation-link", &ctx.admin, serde_json::json!({})).await.expect(201);
    assert!(link["url"].as_str().is_some_and(|u| u.starts_with(&format!("{}/activate/", ctx.url))), "{link}");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new().get(format!("http://{address}/healthz")).send().await;
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");
    silent.shutdown().await.expect("closed");
}

#[tokio::test]
async fn certificate_files_that_do_not_read_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = certificate(dir.path());
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a PEM file").expect("garbage.pem");
    let err = ferrum_controller::http::tls::server_config(&garbage, &key).expect_err("no certificate").to_string();
    assert!(err.contains("web.tls_cert") && err.contains("garbage.pem"), "{err}");
    let err = ferrum_controller::http::tls::server_config(&cert, &garbage).expect_err("no key").to_string();
    assert!(err.contains("web.tls_key") && err.contains("garbage.pem"), "{err}");
    // Another key than the certificate's.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).expect("a second directory");
    let (_, other_key) = certificate(&other);
    let err = ferrum_controller::http::tls::server_config(&cert, &other_key).expect_err("a key of another certificate").to_string();
    assert!(err.contains("does not fit"), "{err}");
    assert!(ferrum_controller::http::tls::server_config(&cert, &key).is_ok());

    let only_cert = "[web]\ntls_cert = \"/etc/ferrum/cert.pem\"\n";
    let err = Config::parse(only_cert).expect_err("half a pair");
    assert!(err.contains("web.tls_cert, web.tls_key: give both"), "{err}");
}
