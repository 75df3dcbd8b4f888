//! Secrets at rest: BMC credentials are encrypted in the database with the
//! key file of the data directory, the database and its directory are
//! private, a controller holding another key (or none) refuses to start,
//! and an older database's plaintext credentials are encrypted at start.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use ferrum_controller::app::conductor::SimConductor;
use ferrum_controller::app::power::SimBmcs;
use ferrum_controller::clock::Clock;
use ferrum_controller::config::Config;
use ferrum_controller::db::SecretKey;
use ferrum_controller::server;
use serde_json::json;

use super::harness::{TestContext, raw_column, raw_execute, t0};

const PASSWORD: &str = "Xyzzy-bmc-pw-42";

fn bmc_url() -> String {
    format!("ipmi://operator:{PASSWORD}@10.9.7.1:623")
}

/// Enrols `name` with the test's BMC (simulated) and checks an admin can
/// power it: the controller reads the credentials back.
async fn node_with_bmc(ctx: &TestContext, name: &str, mac: &str) {
    ctx.enrol_with_sim_bmc(name, "sim", mac, &bmc_url()).await;
}

/// The BMC as the admin's view shows it (user and host, never the
/// password), and a power status through it.
async fn bmc_works(ctx: &TestContext, name: &str) {
    let node = ctx.get(&format!("/api/v1/nodes/{name}"), &ctx.admin).await.expect(200);
    assert_eq!((node["bmc"]["username"].as_str(), node["bmc"]["host"].as_str()), (Some("operator"), Some("10.9.7.1")), "{node}");
    assert!(!node.to_string().contains(PASSWORD), "{node}");
    let status = ctx.post(&format!("/api/v1/nodes/{name}/power"), &ctx.admin, json!({"action": "status"})).await.expect(200);
    assert!(status["power"].is_string(), "{status}");
}

/// The bytes of the SQLite database and its WAL and shared-memory files.
fn sqlite_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    ["ferrum.db", "ferrum.db-wal", "ferrum.db-shm"]
        .iter()
        .filter_map(|name| std::fs::read(dir.join(name)).ok().map(|bytes| (name.to_string(), bytes)))
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Asserts that nothing the database stores holds the password.
async fn password_not_at_rest(ctx: &TestContext) {
    for value in raw_column(&ctx.database, "SELECT bmc_url FROM nodes WHERE bmc_url IS NOT NULL").await.into_iter().flatten() {
        assert!(!value.contains(PASSWORD) && value.starts_with("sealed:v1:"), "stored: {value}");
    }
    if ctx.database.starts_with("sqlite:") {
        let files = sqlite_files(ctx.dir.path());
        assert!(!files.is_empty());
        for (name, bytes) in files {
            assert!(!contains(&bytes, PASSWORD), "{name} holds the BMC password in clear");
            assert!(!contains(&bytes, "operator:"), "{name} holds the BMC user and password in clear");
        }
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

fn config_of(ctx: &TestContext) -> Config {
    Config { data_dir: ctx.dir.path().to_owned(), database: Some(ctx.database.clone()), ..Config::default() }
}

async fn open_fails(config: Config) -> String {
    let (clock, _) = Clock::manual(t0());
    match server::open_with(config, clock, Arc::new(SimConductor), Arc::new(SimBmcs::default())).await {
        Ok(_) => panic!("the controller started"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn bmc_credentials_are_encrypted_at_rest_in_private_files() {
    let ctx = TestContext::empty().await;
    node_with_bmc(&ctx, "sec-1", "02:00:00:00:71:01").await;
    bmc_works(&ctx, "sec-1").await;
    password_not_at_rest(&ctx).await;

    // The key file, 0600, whose fingerprint the database records.
    let key_path = ctx.dir.path().join("secret.key");
    assert_eq!(mode(&key_path), 0o600);
    let key = SecretKey::load(&key_path).expect("the key file loads");
    let recorded = raw_column(&ctx.database, "SELECT key_fingerprint FROM meta").await;
    assert_eq!(recorded, [Some(key.fingerprint().to_owned())]);

    // What holds secrets is private.
    assert_eq!(mode(&ctx.dir.path().join("admin.token")), 0o600);
    if ctx.database.starts_with("sqlite:") {
        for name in ["ferrum.db", "ferrum.db-wal", "ferrum.db-shm"] {
            assert_eq!(mode(&ctx.dir.path().join(name)), 0o600, "{name}");
        }
    }

    // A sealed value moved to another node's row does not open: the value
    // is bound to its node.
    node_with_bmc(&ctx, "sec-2", "02:00:00:00:71:02").await;
    raw_execute(&ctx.database, "UPDATE nodes SET bmc_url = (SELECT bmc_url FROM nodes WHERE name = 'sec-1') WHERE name = 'sec-2'").await;
    let store = ctx.store().await;
    let err = store.get_node("sec-2").await.expect_err("a moved value does not open");
    assert!(err.to_string().contains("sec-2"), "{err}");
    assert!(store.get_node("sec-1").await.expect("its own row opens").bmc_url.is_some());
}

#[tokio::test]
async fn a_new_data_directory_is_created_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("var").join("ferrum");
    let database = super::harness::fresh_database(&data_dir);
    let config = Config { data_dir: data_dir.clone(), database: Some(database.clone()), ..Config::default() };
    let (clock, _) = Clock::manual(t0());
    let app = server::open_with(config, clock, Arc::new(SimConductor), Arc::new(SimBmcs::default())).await.expect("it starts");
    assert_eq!(mode(&data_dir), 0o700, "data directory");
    assert_eq!(mode(&data_dir.join("secret.key")), 0o600);
    assert_eq!(mode(&data_dir.join("admin.token")), 0o600);
    if database.starts_with("sqlite:") {
        assert_eq!(mode(&data_dir.join("ferrum.db")), 0o600);
    }
    drop(app);
}

#[tokio::test]
async fn a_controller_with_another_key_or_none_refuses_to_start() {
    let mut ctx = TestContext::empty().await;
    node_with_bmc(&ctx, "sec-3", "02:00:00:00:72:01").await;
    ctx.shutdown().await;
    let key_path = ctx.dir.path().join("secret.key");
    let kept = std::fs::read(&key_path).expect("key file");

    // Another key: refused, naming the key file.
    std::fs::remove_file(&key_path).expect("removed");
    SecretKey::load_or_create(&key_path).expect("another key");
    let err = open_fails(config_of(&ctx)).await;
    assert!(err.contains(&key_path.display().to_string()) && err.contains("is not the key of database"), "{err}");

    // No key file: refused, and no new key made in its place.
    std::fs::remove_file(&key_path).expect("removed");
    let recorded = ferrum_controller::db::recorded_key_fingerprint(&ctx.database).await;
    assert!(matches!(&recorded, Ok(Some(f)) if f.starts_with("sha256:")), "{recorded:?}");
    let err = open_fails(config_of(&ctx)).await;
    assert!(err.contains(&format!("no secrets key file at {}", key_path.display())), "{err}");
    assert!(!key_path.exists(), "no key was created for a database that has one");

    // The key kept elsewhere, named by the configuration: it starts.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let kept_path = elsewhere.path().join("ferrum.key");
    std::fs::write(&kept_path, &kept).expect("key copied");
    std::fs::set_permissions(&kept_path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let config = Config { secrets_key_file: Some(kept_path.clone()), ..config_of(&ctx) };
    let (clock, _) = Clock::manual(t0());
    let app = server::open_with(config.clone(), clock, Arc::new(SimConductor), Arc::new(SimBmcs::default())).await.expect("it starts");
    let node = app.store.get_node("sec-3").await.expect("node");
    assert_eq!(node.bmc_url.map(|s| s.0), Some(bmc_url()));
    drop(app);

    // A key file others may read is refused.
    std::fs::set_permissions(&kept_path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = open_fails(config).await;
    assert!(err.contains("mode 0644") && err.contains(&kept_path.display().to_string()), "{err}");
}

#[tokio::test]
async fn plaintext_credentials_of_an_older_database_are_encrypted_at_start() {
    let mut ctx = TestContext::empty().await;
    node_with_bmc(&ctx, "sec-4", "02:00:00:00:73:01").await;
    ctx.shutdown().await;
    // What a ferrumd older than encryption at rest left: the URL in clear.
    raw_execute(&ctx.database, &format!("UPDATE nodes SET bmc_url = '{}' WHERE name = 'sec-4'", bmc_url())).await;
    let ctx = ctx.restart().await;
    password_not_at_rest(&ctx).await;
    bmc_works(&ctx, "sec-4").await;
}
