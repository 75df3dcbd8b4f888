//! The Redfish power driver against real peers: sushy-tools' emulator
//! (HTTP Basic, fake driver with delayed power changes, 307 from name to
//! UUID) and a small axum BMC of this file for what sushy lacks (session
//! tokens, expiry and logout, restricted reset types, a BMC that stalls,
//! and an HTTPS BMC on rustls for the TLS policies).
//!
//! Each sushy test runs its own emulator, so they run concurrently. Tests
//! poll with deadlines and never sleep to wait for a condition.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ferrum_controller::model::BmcAddress;
use ferrum_controller::power::redfish::RedfishDriver;
use ferrum_controller::power::{BootDevice, PowerAction, PowerDriver, PowerError, PowerState, Reliability};
use serde_json::{Value, json};

use super::sushy::{NODE_OFF, NODE_ON, PASSWORD, Sushy};

/// sushy applies power changes 1–11 s after the request.
fn sushy_reliability() -> Reliability {
    Reliability {
        request_timeout: Duration::from_secs(5),
        attempts: 3,
        backoff: Duration::from_millis(200),
        settle_timeout: Duration::from_secs(20),
    }
}

fn driver(url: &str, reliability: Reliability) -> RedfishDriver {
    let bmc = BmcAddress::parse(url).expect("valid BMC URL");
    RedfishDriver::new(&bmc, reliability).expect("driver")
}

#[tokio::test]
async fn sushy_power_on_by_name_follows_the_redirect() {
    let sushy = Sushy::start().await;
    // By name: sushy answers 307 to the UUID URL.
    let bmc = driver(&sushy.url(NODE_OFF.name), sushy_reliability());
    assert_eq!(bmc.power_state().await.expect("state"), PowerState::Off);
    bmc.power(PowerAction::On).await.expect("power on");
    assert_eq!(bmc.power_state().await.expect("state"), PowerState::On);
    assert_eq!(sushy.system(&NODE_OFF).await["PowerState"], "On");
    // Already on: no reset is sent, so this returns at once.
    let started = Instant::now();
    bmc.power(PowerAction::On).await.expect("idempotent on");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(!format!("{bmc:?}").contains(PASSWORD));
}

#[tokio::test]
async fn sushy_power_off() {
    let sushy = Sushy::start().await;
    let bmc = driver(&sushy.url(NODE_ON.uuid), sushy_reliability());
    assert_eq!(bmc.power_state().await.expect("state"), PowerState::On);
    bmc.power(PowerAction::Off).await.expect("power off");
    assert_eq!(bmc.power_state().await.expect("state"), PowerState::Off);
    bmc.power(PowerAction::SoftOff).await.expect("already off");
}

#[tokio::test]
async fn sushy_power_cycle_uses_force_restart() {
    // sushy offers no PowerCycle: the driver falls back to ForceRestart.
    let sushy = Sushy::start().await;
    let bmc = driver(&sushy.url(NODE_ON.name), sushy_reliability());
    bmc.power(PowerAction::Cycle).await.expect("power cycle");
    assert_eq!(bmc.power_state().await.expect("state"), PowerState::On);
}

#[tokio::test]
async fn sushy_boot_device_and_unknown_system() {
    let sushy = Sushy::start().await;
    let bmc = driver(&sushy.url(NODE_OFF.uuid), sushy_reliability());
    bmc.set_boot_device(BootDevice::Pxe).await.expect("pxe");
    assert_eq!(sushy.system(&NODE_OFF).await["Boot"]["BootSourceOverrideTarget"], "Pxe");
    bmc.set_boot_device(BootDevice::Disk).await.expect("disk");
    let system = sushy.system(&NODE_OFF).await;
    assert_eq!(system["Boot"]["BootSourceOverrideTarget"], "Hdd");
    // sushy quirk: "Once" reads back as "Continuous"; not asserted.

    let missing = driver(&sushy.url("no-such-node"), sushy_reliability());
    let err = missing.power_state().await.expect_err("unknown system");
    assert!(matches!(err, PowerError::Unsupported { .. }), "{err:?}");
}

#[tokio::test]
async fn sushy_wrong_password_is_an_auth_error_without_the_password() {
    let sushy = Sushy::start().await;
    let url = format!("redfish+http://admin:Wr0ngPassw0rd@127.0.0.1:{}/{}", sushy.port(), NODE_OFF.uuid);
    let bmc = driver(&url, sushy_reliability());
    let err = bmc.power_state().await.expect_err("wrong password");
    assert_eq!(err, PowerError::Auth { bmc: format!("127.0.0.1:{}", sushy.port()) });
    for text in [err.to_string(), format!("{err:?}"), format!("{bmc:?}")] {
        assert!(!text.contains("Wr0ngPassw0rd"), "{text}");
    }
}

// ---- A small Redfish BMC of our own (sessions, reset types, stalls) ----

const MOCK_USER: &str = "root";
const MOCK_PASSWORD: &str = "calvin-mock-pw";

#[derive(Default)]
struct Mock {
    power_on: bool,
    allowable: Vec<&'static str>,
    logins: u32,
    valid_tokens: HashSet<String>,
    /// Authorised requests so far; the tokens expire once at the second.
    authorised: u32,
    expire_at: Option<u32>,
    tokens_used: Vec<String>,
    basic_after_login: bool,
    deleted: Vec<String>,
    resets: Vec<String>,
    patches: Vec<Value>,
}

type Shared = Arc<Mutex<Mock>>;

fn lock(mock: &Shared) -> std::sync::MutexGuard<'_, Mock> {
    mock.lock().unwrap_or_else(|e| e.into_inner())
}

fn token_of(n: u32) -> String {
    format!("tok{n}-9f8e7d6c5b4a")
}

fn authorise(mock: &Shared, headers: &HeaderMap) -> Result<(), StatusCode> {
    let mut m = lock(mock);
    if headers.contains_key("authorization") {
        m.basic_after_login = true;
    }
    let token = headers.get("x-auth-token").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    if !m.valid_tokens.contains(&token) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    m.authorised += 1;
    if m.expire_at == Some(m.authorised) {
        m.expire_at = None;
        m.valid_tokens.clear();
        return Err(StatusCode::UNAUTHORIZED);
    }
    m.tokens_used.push(token);
    Ok(())
}

async fn login(State(mock): State<Shared>, Json(body): Json<Value>) -> Response {
    if body["UserName"] != MOCK_USER || body["Password"] != MOCK_PASSWORD {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": {"message": "bad credentials"}}))).into_response();
    }
    let mut m = lock(&mock);
    m.logins += 1;
    let n = m.logins;
    m.valid_tokens.insert(token_of(n));
    let location = format!("/redfish/v1/SessionService/Sessions/{n}");
    (StatusCode::CREATED, [("X-Auth-Token", token_of(n)), ("Location", location.clone())], Json(json!({ "@odata.id": location })))
        .into_response()
}

async fn logout(State(mock): State<Shared>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorise(&mock, &headers) {
        return denied.into_response();
    }
    let mut m = lock(&mock);
    m.deleted.push(id);
    m.valid_tokens.clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn system(State(mock): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorise(&mock, &headers) {
        return denied.into_response();
    }
    let m = lock(&mock);
    Json(json!({
        "@odata.id": "/redfish/v1/Systems/sys-1",
        "Id": "sys-1",
        "PowerState": if m.power_on { "On" } else { "Off" },
        "Boot": { "BootSourceOverrideTarget": "None", "BootSourceOverrideTarget@Redfish.AllowableValues": ["Pxe", "Hdd"] },
        "Actions": { "#ComputerSystem.Reset": {
            "target": "/redfish/v1/Systems/sys-1/Actions/ComputerSystem.Reset",
            "ResetType@Redfish.AllowableValues": m.allowable,
        } },
    }))
    .into_response()
}

async fn patch_system(State(mock): State<Shared>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Err(denied) = authorise(&mock, &headers) {
        return denied.into_response();
    }
    lock(&mock).patches.push(body);
    StatusCode::NO_CONTENT.into_response()
}

async fn reset(State(mock): State<Shared>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Err(denied) = authorise(&mock, &headers) {
        return denied.into_response();
    }
    let mut m = lock(&mock);
    let kind = body["ResetType"].as_str().unwrap_or_default().to_owned();
    if !m.allowable.contains(&kind.as_str()) {
        return StatusCode::BAD_REQUEST.into_response();
    }
    m.power_on = !matches!(kind.as_str(), "ForceOff" | "GracefulShutdown");
    m.resets.push(kind);
    StatusCode::NO_CONTENT.into_response()
}

/// Starts the mock BMC; returns its state and port.
async fn mock_bmc(mock: Mock) -> (Shared, u16) {
    let shared: Shared = Arc::new(Mutex::new(mock));
    let app = axum::Router::new()
        .route("/redfish/v1/SessionService/Sessions", post(login))
        .route("/redfish/v1/SessionService/Sessions/{id}", axum::routing::delete(logout))
        .route("/redfish/v1/Systems/sys-1", get(system).patch(patch_system))
        .route("/redfish/v1/Systems/sys-1/Actions/ComputerSystem.Reset", post(reset))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (shared, port)
}

fn fast_reliability() -> Reliability {
    Reliability {
        request_timeout: Duration::from_millis(500),
        attempts: 2,
        backoff: Duration::from_millis(50),
        settle_timeout: Duration::from_secs(3),
    }
}

#[tokio::test]
async fn session_token_relogin_once_and_logout() {
    let (mock, port) = mock_bmc(Mock { allowable: vec!["On", "ForceOff", "PowerCycle"], expire_at: Some(2), ..Mock::default() }).await;
    let bmc = driver(&format!("redfish+http://{MOCK_USER}:{MOCK_PASSWORD}@127.0.0.1:{port}/sys-1"), fast_reliability());
    assert_eq!(bmc.power_state().await.expect("state"), PowerState::Off);
    // The next request meets the expired token: 401, login again, retry.
    bmc.power(PowerAction::On).await.expect("power on");
    bmc.set_boot_device(BootDevice::Pxe).await.expect("boot pxe");
    {
        let m = lock(&mock);
        assert_eq!(m.logins, 2);
        assert_eq!(m.resets, ["On"]);
        assert!(m.tokens_used.iter().all(|t| *t == token_of(1) || *t == token_of(2)));
        assert_eq!(m.tokens_used.last(), Some(&token_of(2)));
        assert!(!m.basic_after_login, "session requests must not carry Basic credentials");
        assert_eq!(m.patches, [json!({"Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}})]);
    }
    let shown = format!("{bmc:?}");
    assert!(!shown.contains(&token_of(2)) && !shown.contains(MOCK_PASSWORD), "{shown}");
    bmc.logout().await;
    assert_eq!(lock(&mock).deleted, ["2"]);

    let wrong = driver(&format!("redfish+http://{MOCK_USER}:nope-nope@127.0.0.1:{port}/sys-1"), fast_reliability());
    let err = wrong.power_state().await.expect_err("wrong password");
    assert_eq!(err, PowerError::Auth { bmc: format!("127.0.0.1:{port}") });
}

#[tokio::test]
async fn cycle_falls_back_to_force_restart_and_missing_actions_are_unsupported() {
    let (mock, port) = mock_bmc(Mock { power_on: true, allowable: vec!["ForceRestart"], ..Mock::default() }).await;
    let bmc = driver(&format!("redfish+http://{MOCK_USER}:{MOCK_PASSWORD}@127.0.0.1:{port}/sys-1"), fast_reliability());
    bmc.power(PowerAction::Cycle).await.expect("cycle");
    assert_eq!(lock(&mock).resets, ["ForceRestart"]);
    let err = bmc.power(PowerAction::Off).await.expect_err("no ForceOff offered");
    match &err {
        PowerError::Unsupported { bmc, what } => {
            assert_eq!(bmc, &format!("127.0.0.1:{port}"));
            assert!(what.contains("off"), "{what}");
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
    drop(bmc);
}

#[tokio::test]
async fn stalled_and_absent_bmcs_are_unreachable_within_the_deadline() {
    // Accepts TCP connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let bmc = driver(&format!("redfish+http://u:secret-pw@127.0.0.1:{port}/sys-1"), fast_reliability());
    let started = Instant::now();
    let err = bmc.power_state().await.expect_err("stalled BMC");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(matches!(err, PowerError::Unreachable { tries: 2, .. } | PowerError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")) && !err.to_string().contains("secret-pw"), "{err}");

    // Nothing listens: connection refused, after every attempt.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let bmc = driver(&format!("redfish+http://u:secret-pw@127.0.0.1:{closed}/sys-1"), fast_reliability());
    let err = bmc.power(PowerAction::On).await.expect_err("no BMC");
    assert_eq!(err, PowerError::Unreachable { bmc: format!("127.0.0.1:{closed}"), tries: 2 });
}

// ---- HTTPS: a TLS BMC built on rustls alone (no new crate) ----

/// A throw-away test CA and a leaf for IP 127.0.0.1 signed by it (EC
/// P-256, valid until 2126), made once with openssl. Test data only.
const TEST_CA_PEM: &str = "-----BEGIN CERTIFICATE-----\n\
MIIBiTCCAS+gAwIBAgIUdcCHcxxvG+MkeuCEEXYpphWQU1QwCgYIKoZIzj0EAwIw\n\
GTEXMBUGA1UEAwwOZmVycnVtIHRlc3QgQ0EwIBcNMjYxMTIyMDM1OTIwWhgPMjEy\n\
NjEwMjkwMzU5MjBaMBkxFzAVBgNVBAMMDmZlcnJ1bSB0ZXN0IENBMFkwEwYHKoZI\n\
zj0CAQYIKoZIzj0DAQcDQgAEe6gA8lOV/hZlFrdqgcXwSsMpvvXxCZJRqsnkZs0k\n\
vyVtOI2TuvJqU/QttBbxlqUit4OjxIbIz7eLHYor5RsS5aNTMFEwHQYDVR0OBBYE\n\
FAxTZjL4OjduNv0XbgSIjIVP6uGmMB8GA1UdIwQYMBaAFAxTZjL4OjduNv0XbgSI\n\
jIVP6uGmMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIhANXBNG6R\n\
4KygkU3TzamNDFT9OgFwxnYYjZnDNpCCnBYBAiBo8EBrpskfalDA9G2JSYvP4uh8\n\
ZZ8ogfCZFkcWFCPZIg==\n\
-----END CERTIFICATE-----";
const TEST_LEAF_PEM: &str = "-----BEGIN CERTIFICATE-----\n\
MIIBiTCCAS+gAwIBAgIUeemjf7PKC21wEb5qE90H20cnl/MwCgYIKoZIzj0EAwIw\n\
GTEXMBUGA1UEAwwOZmVycnVtIHRlc3QgQ0EwIBcNMjYxMTIyMDM1OTIwWhgPMjEy\n\
NjEwMjkwMzU5MjBaMA4xDDAKBgNVBAMMA2JtYzBZMBMGByqGSM49AgEGCCqGSM49\n\
AwEHA0IABNyZCSFom6ou/1eW8l97fLd+vIOn2EhhsTmeEzWPjaC9KkTMhbouAPgc\n\
4XE2u5DNqCgtfnGvEAGRlt2qalCgqCajXjBcMA8GA1UdEQQIMAaHBH8AAAEwCQYD\n\
VR0TBAIwADAdBgNVHQ4EFgQUVLPbn232x5biwt1gg7IOvvrAqi0wHwYDVR0jBBgw\n\
FoAUDFNmMvg6N242/RduBIiMhU/q4aYwCgYIKoZIzj0EAwIDSAAwRQIhANRgE3pv\n\
ACzh/s5ie7X8cdThoE6dYwcGGXheJSwsX77KAiB9d/hBc8g5MbC+yJMlksBFnqMO\n\
z3uylOLIzTc5u+q4Ag==\n\
-----END CERTIFICATE-----";
const TEST_LEAF_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\n\
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg01tsYiiCD6s74sSA\n\
vbz+S72zvSq1qp0WMFQN0ANZVGehRANCAATcmQkhaJuqLv9XlvJfe3y3fryDp9hI\n\
YbE5nhM1j42gvSpEzIW6LgD4HOFxNruQzagoLX5xrxABkZbdqmpQoKgm\n\
-----END PRIVATE KEY-----";

/// Serves one tiny HTTPS Redfish BMC (Basic accepted, no SessionService,
/// system `s` powered off) on a thread per connection; returns its port.
fn tls_bmc() -> u16 {
    use std::io::{Read, Write};

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let cert = CertificateDer::from_pem_slice(TEST_LEAF_PEM.as_bytes()).expect("leaf PEM");
    let key = PrivateKeyDer::from_pem_slice(TEST_LEAF_KEY_PEM.as_bytes()).expect("key PEM");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server config");
    let config = Arc::new(config);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || {
                let Ok(conn) = rustls::ServerConnection::new(config) else { return };
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut request = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the head and the body announced by Content-Length.
                loop {
                    let Ok(n) = tls.read(&mut chunk) else { return };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let head = String::from_utf8_lossy(&request).to_string();
                let (status, body) = if head.starts_with("GET /redfish/v1/Systems/s ") {
                    ("200 OK", json!({"@odata.id": "/redfish/v1/Systems/s", "Id": "s", "PowerState": "Off"}).to_string())
                } else {
                    ("404 Not Found", json!({"error": {"message": "not found"}}).to_string())
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(answer.as_bytes());
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    port
}

#[tokio::test]
async fn https_pinning_ca_and_insecure_policies() {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let port = tls_bmc();
    let leaf = CertificateDer::from_pem_slice(TEST_LEAF_PEM.as_bytes()).expect("leaf PEM");
    let pin = ferrum_controller::power::redfish::pin::fingerprint(leaf.as_ref());
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, TEST_CA_PEM).expect("write CA");
    let ca_query = format!("ca={}", ca.display());
    let base = format!("redfish://a:tls-secret@127.0.0.1:{port}/s");
    for query in [format!("fingerprint={pin}"), ca_query, "insecure=true".to_owned()] {
        let bmc = driver(&format!("{base}?{query}"), fast_reliability());
        assert_eq!(bmc.power_state().await.unwrap_or_else(|e| panic!("{query}: {e}")), PowerState::Off, "{query}");
    }
    let wrong_pin = format!("fingerprint={}", "00".repeat(32));
    for url in [format!("{base}?{wrong_pin}"), base.clone()] {
        let err = driver(&url, fast_reliability()).power_state().await.expect_err("untrusted certificate");
        assert!(matches!(&err, PowerError::Tls { bmc, .. } if *bmc == format!("127.0.0.1:{port}")), "{url}: {err:?}");
        assert!(!err.to_string().contains("tls-secret"), "{err}");
    }
    let bmc = BmcAddress::parse("redfish://a:pw@127.0.0.1:1/s?ca=/nonexistent/ca.pem").expect("valid");
    let err = RedfishDriver::new(&bmc, Reliability::default()).expect_err("missing CA");
    assert!(matches!(err, PowerError::Tls { .. }), "{err:?}");
}
