//! `ferrumd copy-database`: a ferrum that ran on SQLite moves to
//! PostgreSQL with everything it knew, and goes on from there.

use std::process::Command;
use std::time::Duration;

use ferrum_lab::postgres::Postgres;
use ferrum_tests::{Ferrumd, binary, block_on, post_json, wait_until};
use serde_json::{Value, json};

async fn get(client: &reqwest::Client, server: &str, token: &str, path: &str) -> Value {
    let resp = client.get(format!("{server}{path}")).bearer_auth(token).send().await.expect("request");
    assert_eq!(resp.status().as_u16(), 200, "{path}");
    resp.json().await.expect("json")
}

/// Waits (60 s at most) until `path` answers with `state`.
fn wait_for_state(client: &reqwest::Client, server: &str, token: &str, path: &str, state: &str) {
    wait_until(&format!("{path} {state}"), Duration::from_secs(60), || {
        let seen = block_on(get(client, server, token, path));
        if seen["state"] == state { Ok(()) } else { Err(seen["state"].to_string()) }
    });
}

/// What the admin sees, which the copy must keep whole (and the usage of
/// this month and the next, whole months: read from the monthly rollups).
const VIEWS: [&str; 7] = [
    "/api/v1/nodes",
    "/api/v1/leases?all=true",
    "/api/v1/users",
    "/api/v1/projects",
    "/api/v1/usage/records",
    "/api/v1/audit",
    "/api/v1/nodes/chifflot-1/events",
];

/// `ferrumd copy-database`, 3 rows at a time: every table of more than 3
/// rows is read in several batches.
fn copy_database(from: &str, to: &str) -> std::process::Output {
    Command::new(binary("ferrumd")).args(["copy-database", "--from", from, "--to", to, "--batch-rows", "3"]).output().expect("ferrumd runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_ferrum_moves_to_postgresql_with_everything_it_knew() {
    let client = reqwest::Client::new();
    let mut old = Ferrumd::start();
    let admin = old.admin_token.clone();
    let out = old.ferrum(&admin, &["node", "import", ferrum_tests::fixtures().to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "import: {}", String::from_utf8_lossy(&out.stderr));
    let post =
        |path: &str, token: &str, body: Value| client.post(format!("{}{path}", old.url)).bearer_auth(token.to_owned()).json(&body).send();
    assert_eq!(post("/api/v1/projects", &admin, json!({"name": "p-move"})).await.expect("project").status().as_u16(), 201);
    let user: Value =
        post("/api/v1/users", &admin, json!({"name": "mover", "projects": ["p-move"]})).await.expect("user").json().await.expect("json");
    let token = user["token"].as_str().expect("token").to_owned();

    // A lease that ran and was released (usage records, node events), and
    // one still ahead; the clock loop enrols the imported nodes first.
    wait_for_state(&client, &old.url, &token, "/api/v1/nodes/chifflot-1", "available");
    let ran: Value = post("/api/v1/leases", &token, json!({"nodes": {"names": ["chifflot-1"]}, "duration": "1h"}))
        .await
        .expect("lease")
        .json()
        .await
        .expect("json");
    let ran_path = format!("/api/v1/leases/{}", ran["id"]);
    wait_for_state(&client, &old.url, &token, &ran_path, "active");
    // Usage is counted in whole seconds (a zero-length use leaves no
    // record): release it once the usage report counts some.
    wait_until("a second of use", Duration::from_secs(60), || {
        let usage = block_on(get(&client, &old.url, &admin, "/api/v1/usage?group_by=project"));
        if usage["total"]["node_seconds"].as_i64() > Some(0) { Ok(()) } else { Err(usage.to_string()) }
    });
    let released = client.delete(format!("{}{ran_path}", old.url)).bearer_auth(&token).send().await.expect("release");
    assert_eq!(released.status().as_u16(), 200);
    let start = (chrono::Utc::now() + chrono::Duration::days(1)).format("%Y-%m-%dT%H:00:00Z").to_string();
    let ahead: Value = post("/api/v1/leases", &token, json!({"nodes": {"names": ["chifflot-2"]}, "start": start, "duration": "2h"}))
        .await
        .expect("lease")
        .json()
        .await
        .expect("json");
    // Copy a settled database: the released node's reset over (these
    // nodes have no BMC, so the reset cannot power-cycle it: it ends
    // `suspect`, for an admin to look at).
    wait_for_state(&client, &old.url, &admin, "/api/v1/nodes/chifflot-1", "suspect");
    let month = chrono::Utc::now().format("%Y-%m-01T00:00:00Z").to_string();
    let in_two_months = (chrono::Utc::now() + chrono::Duration::days(62)).format("%Y-%m-01T00:00:00Z").to_string();
    let rollups = format!("/api/v1/usage?group_by=project&from={month}&to={in_two_months}");
    let views: Vec<&str> = VIEWS.iter().copied().chain([rollups.as_str()]).collect();
    let mut before = Vec::new();
    for view in &views {
        before.push(get(&client, &old.url, &admin, view).await);
    }
    assert!(before[7].to_string().contains("p-move"), "the month's usage counts the lease: {}", before[7]);
    assert_eq!(before[4].as_array().map(Vec::len), Some(1), "one usage record: {}", before[4]);

    // Stop it, copy its file into a fresh PostgreSQL database.
    old.child.kill().expect("kill");
    old.child.wait().expect("reaped");
    let postgres = Postgres::start().expect("throw-away PostgreSQL");
    let url = postgres.create_database("moved").expect("database");
    let sqlite = format!("sqlite://{}", old.data_dir.path().join("ferrum.db").display());
    let out = copy_database(&sqlite, &url);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "copy: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.lines().any(|l| l == "leases: 2 rows"), "{stdout}");

    // The same answers from a ferrumd on PostgreSQL, to the same tokens.
    // With the SQLite ferrumd's secrets key: the copy carries the sealed
    // BMC credentials as they are.
    let new = Ferrumd::start_keyed(&url, &old.data_dir.path().join("secret.key"));
    assert!(new.admin_token.is_empty(), "no new admin on a copied database");
    for (view, was) in views.iter().zip(&before) {
        assert_eq!(&get(&client, &new.url, &admin, view).await, was, "{view}");
    }
    assert_eq!(get(&client, &new.url, &token, &format!("/api/v1/leases/{}", ahead["id"])).await["state"], ahead["state"]);
    // New ids follow the copied ones.
    let (status, next) = post_json(
        &client,
        &format!("{}/api/v1/leases", new.url),
        &token,
        &json!({"nodes": {"names": ["chifflot-3"]}, "start": start, "duration": "1h"}),
    )
    .await;
    assert_eq!(status, 201, "{next}");
    assert_eq!(next["id"].as_i64(), ahead["id"].as_i64().map(|id| id + 1), "{next}");

    // A database that already holds data is refused, and left as it was.
    let again = copy_database(&sqlite, &url);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success() && stderr.contains("already holds data"), "{stderr}");
    // A source that does not exist is refused, not created empty.
    let missing = copy_database("sqlite:///nonexistent/ferrum.db", &url);
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success() && stderr.contains("/nonexistent/ferrum.db"), "{stderr}");
    assert_eq!(get(&client, &new.url, &admin, "/api/v1/leases?all=true").await.as_array().map(Vec::len), Some(3));
    drop(new);
}

/// The BMC credentials travel encrypted, with the key's fingerprint: the
/// PostgreSQL `ferrumd` with the SQLite one's key file reads them; one with
/// another key refuses to start, naming its key file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_copy_carries_the_bmc_credentials_for_the_same_key() {
    let client = reqwest::Client::new();
    let mut old = Ferrumd::start();
    let admin = old.admin_token.clone();
    let password = "Copy-bmc-pw-7";
    let node = json!({"name": "bmc-1", "site": "lab", "cluster": "sim", "macs": ["02:00:00:00:81:01"],
        "bmc": format!("ipmi://operator:{password}@127.0.0.1:9")});
    let (status, body) = post_json(&client, &format!("{}/api/v1/nodes", old.url), &admin, &node).await;
    assert_eq!(status, 201, "{body}");
    old.child.kill().expect("kill");
    old.child.wait().expect("reaped");
    let file = old.data_dir.path().join("ferrum.db");
    let bytes = std::fs::read(&file).expect("database file");
    assert!(!bytes.windows(password.len()).any(|w| w == password.as_bytes()), "the SQLite file holds the BMC password in clear");

    let postgres = Postgres::start().expect("throw-away PostgreSQL");
    let url = postgres.create_database("moved_bmc").expect("database");
    let out = copy_database(&format!("sqlite://{}", file.display()), &url);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("start the PostgreSQL ferrumd with the secrets key file"), "copy: {stdout}");

    // Another key: refused before serving, naming the key file.
    let keys = tempfile::tempdir().expect("tempdir");
    let other = keys.path().join("other.key");
    std::fs::write(&other, format!("{}\n", "cd".repeat(32))).expect("another key");
    std::fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    let refused = ferrumd_exits(&url, &other);
    assert!(refused.contains(&other.display().to_string()) && refused.contains("is not the key of database"), "{refused}");

    // The same key: the admin sees the same BMC.
    let new = Ferrumd::start_keyed(&url, &old.data_dir.path().join("secret.key"));
    let seen = get(&client, &new.url, &admin, "/api/v1/nodes/bmc-1").await;
    assert_eq!((seen["bmc"]["username"].as_str(), seen["bmc"]["host"].as_str()), (Some("operator"), Some("127.0.0.1")), "{seen}");
    assert!(!seen.to_string().contains(password));
}

/// Runs `ferrumd --database URL` with the key file `key`, expecting it to
/// refuse to start; returns what it said.
fn ferrumd_exits(database: &str, key: &std::path::Path) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("ferrumd.toml");
    std::fs::write(&config, format!("secrets_key_file = {:?}\n", key.display().to_string())).expect("config");
    let out = Command::new(binary("ferrumd"))
        .arg("--config")
        .arg(&config)
        .args(["--listen", "127.0.0.1:0", "--database", database, "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("ferrumd runs");
    assert!(!out.status.success(), "ferrumd started: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}
