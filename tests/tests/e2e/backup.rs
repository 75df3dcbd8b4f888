//! `ferrumd backup` and a restore: a running ferrum's SQLite database is
//! copied (mode 0600, its BMC credentials still encrypted), and a fresh
//! `ferrumd` on the restored file and the key file serves the same data
//! and reads the credentials; with another key it refuses to start.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use ferrum_tests::{Ferrumd, binary, post_json};
use serde_json::{Value, json};

const PASSWORD: &str = "Backup-bmc-pw-9";

async fn get(client: &reqwest::Client, server: &str, token: &str, path: &str) -> Value {
    let resp = client.get(format!("{server}{path}")).bearer_auth(token).send().await.expect("request");
    assert_eq!(resp.status().as_u16(), 200, "{path}");
    resp.json().await.expect("json")
}

fn ferrumd(args: &[&str], data_dir: &std::path::Path) -> std::process::Output {
    Command::new(binary("ferrumd")).args(args).arg("--data-dir").arg(data_dir).output().expect("ferrumd runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_with_its_key_and_only_with_it() {
    let client = reqwest::Client::new();
    let server = Ferrumd::start();
    let admin = server.admin_token.clone();
    let node = json!({"name": "bk-1", "site": "lab", "cluster": "sim", "macs": ["02:00:00:00:91:01"],
        "bmc": format!("ipmi://operator:{PASSWORD}@127.0.0.1:9")});
    let (status, body) = post_json(&client, &format!("{}/api/v1/nodes", server.url), &admin, &node).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = post_json(&client, &format!("{}/api/v1/projects", server.url), &admin, &json!({"name": "p-backup"})).await;
    assert_eq!(status, 201, "{body}");

    // Backed up while it serves.
    let out_dir = tempfile::tempdir().expect("tempdir");
    let backup = out_dir.path().join("ferrum-backup.db");
    let out = ferrumd(&["backup", "--to", backup.to_str().expect("utf-8")], server.data_dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "backup: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    let key = server.data_dir.path().join("secret.key");
    assert!(stdout.contains(&format!("that key is in {}", key.display())), "{stdout}");
    assert!(stdout.contains("useless without that key file") && stdout.contains("not beside the backup"), "{stdout}");
    assert_eq!(std::fs::metadata(&backup).expect("backup").permissions().mode() & 0o777, 0o600);
    let bytes = std::fs::read(&backup).expect("backup");
    assert!(!bytes.windows(PASSWORD.len()).any(|w| w == PASSWORD.as_bytes()), "the backup holds the BMC password in clear");
    // A backup never overwrites.
    let again = ferrumd(&["backup", "--to", backup.to_str().expect("utf-8")], server.data_dir.path());
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("exists"));
    let nodes_before = get(&client, &server.url, &admin, "/api/v1/nodes/bk-1").await;
    let projects_before = get(&client, &server.url, &admin, "/api/v1/projects").await;
    // The key, kept apart from the backup (the data directory goes with the server).
    let kept_key = out_dir.path().join("kept.key");
    std::fs::copy(&key, &kept_key).expect("key kept");
    drop(server);

    // Restored into a new data directory, without the key: refused,
    // naming where the key must go.
    let restored = tempfile::tempdir().expect("tempdir");
    std::fs::copy(&backup, restored.path().join("ferrum.db")).expect("restored");
    let without = ferrumd(&["--listen", "127.0.0.1:0"], restored.path());
    let said = String::from_utf8_lossy(&without.stderr);
    let new_key = restored.path().join("secret.key");
    assert!(!without.status.success() && said.contains(&format!("no secrets key file at {}", new_key.display())), "{said}");
    // With another key: refused.
    std::fs::write(&new_key, format!("{}\n", "ab".repeat(32))).expect("another key");
    std::fs::set_permissions(&new_key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let wrong = ferrumd(&["--listen", "127.0.0.1:0"], restored.path());
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success() && said.contains("is not the key of database"), "{said}");

    // With the key: the same data, and the BMC credentials decrypt.
    std::fs::copy(&kept_key, &new_key).expect("key restored");
    let new = Ferrumd::start_keyed(&format!("sqlite://{}", restored.path().join("ferrum.db").display()), &new_key);
    assert_eq!(get(&client, &new.url, &admin, "/api/v1/projects").await, projects_before);
    let node = get(&client, &new.url, &admin, "/api/v1/nodes/bk-1").await;
    assert_eq!(node["bmc"], nodes_before["bmc"]);
    assert_eq!((node["bmc"]["username"].as_str(), node["bmc"]["host"].as_str()), (Some("operator"), Some("127.0.0.1")), "{node}");
}

/// On PostgreSQL `ferrumd backup` writes nothing and gives the `pg_dump`
/// command.
#[test]
fn on_postgresql_the_backup_is_pg_dump() {
    let dir = tempfile::tempdir().expect("tempdir");
    let to = dir.path().join("dump");
    let out = ferrumd(&["backup", "--database", "postgres://ferrum@127.0.0.1:1/none", "--to", to.to_str().expect("utf-8")], dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("pg_dump --format=custom"), "{stdout}");
    assert!(!to.exists());
}
