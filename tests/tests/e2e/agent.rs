//! The agent protocol end to end: the real `ferrum-agent run` (on this
//! machine, with power actions off) registers with the one-time token of a
//! ramdisk script served by the real `ferrumd`, reports this machine's
//! inventory, and carries out the commands an admin queues, reporting
//! progress and named errors.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferrum_tests::Ferrumd;
use serde_json::{Value, json};

const MAC: &str = "02:00:00:0a:9e:01";
const DEADLINE: Duration = Duration::from_secs(60);

struct Owned(Child);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Api {
    client: reqwest::Client,
    url: String,
    token: String,
}

impl Api {
    async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self.client.get(format!("{}{path}", self.url)).bearer_auth(&self.token).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self.client.post(format!("{}{path}", self.url)).bearer_auth(&self.token).json(body).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Waits until command `id` of `node` has finished; returns it.
    async fn finished(&self, node: &str, id: i64) -> Value {
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            let (_, list) = self.get(&format!("/api/v1/nodes/{node}/agent-commands")).await;
            let cmd = list.as_array().unwrap().iter().find(|c| c["id"] == id).cloned().unwrap();
            if cmd["state"] == "done" || cmd["state"] == "failed" {
                return cmd;
            }
            assert!(started.elapsed() < DEADLINE, "command {id} still {} after {DEADLINE:?}", cmd["state"]);
            tick.tick().await;
        }
    }
}

fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_registers_reports_and_carries_out_commands() {
    // The public URL only goes into scripts; the agent is given the real one
    // (the boot listener's: the API listener serves no boot or agent endpoint).
    let server = Ferrumd::start_with(None, "[boot]\nlisten = [\"127.0.0.1:0\"]\npublic_url = \"http://192.0.2.1:8751\"\n", "127.0.0.1:0");
    let boot_url = server.boot_url.clone().expect("ferrumd logged its boot listener (boot_addr=)");
    let admin = server.admin_token.clone();
    let api = Api { client: reqwest::Client::new(), url: server.url.clone(), token: admin.clone() };
    let (status, _) = api.post("/api/v1/nodes", &json!({"name": "agent-1", "site": "lab", "cluster": "host", "macs": [MAC]})).await;
    assert_eq!(status, 201);
    let out = server.ferrum(&admin, &["node", "boot-target", "ramdisk", "agent-1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let on_api = api.client.get(format!("{}/boot/ipxe?mac={MAC}", server.url)).send().await.unwrap();
    assert_eq!(on_api.status().as_u16(), 404, "no boot script on the API listener");
    let script = api.client.get(format!("{boot_url}/boot/ipxe?mac={MAC}")).send().await.unwrap().text().await.unwrap();
    let token = script.split("ferrum.token=").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();

    let work = tempfile::tempdir().unwrap();
    let token_file = work.path().join("token");
    std::fs::write(&token_file, &token).unwrap();
    let agent = Command::new(ferrum_tests::binary("ferrum-agent"))
        .args(["run", "--url", &boot_url, "--node", "agent-1", "--token-file"])
        .arg(&token_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let _agent = Owned(agent);

    // The inventory arrives, from registration generation 1, and is this machine's.
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let inventory = loop {
        let (status, inv) = api.get("/api/v1/nodes/agent-1/inventory").await;
        assert_eq!(status, 200, "{inv}");
        if !inv["reported"].is_null() {
            break inv;
        }
        assert!(started.elapsed() < DEADLINE, "no inventory within {DEADLINE:?}");
        tick.tick().await;
    };
    assert_eq!(inventory["reported"]["generation"], 1);
    let threads = std::thread::available_parallelism().unwrap().get();
    assert_eq!(
        inventory["reported"]["report"]["architecture"]["nb_threads"], threads,
        "{}",
        inventory["reported"]["report"]["architecture"]
    );
    assert!(inventory["differences"].is_null(), "no reference, nothing to compare");

    // The token was one-time.
    let again = json!({"token": token, "node": "agent-1", "protocol": 1, "agent_version": "test"});
    let resp = api.client.post(format!("{boot_url}/agent/v1/register")).json(&again).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = api.client.post(format!("{}/agent/v1/register", server.url)).json(&again).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 404, "no agent endpoint on the API listener");

    // An image written to a file standing for the disk: byte-identical, with progress.
    let raw = work.path().join("image.raw");
    let content: Vec<u8> = (0..8u32 * 1024 * 1024).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(&raw, &content).unwrap();
    assert!(Command::new("zstd").args(["-q", "-3"]).arg(&raw).status().unwrap().success());
    let zst = work.path().join("image.raw.zst");
    let disk = work.path().join("disk");
    std::fs::File::create(&disk).unwrap().set_len(16 * 1024 * 1024).unwrap();
    let write = json!({"kind": "write_image", "url": zst, "format": "raw.zst", "sha256": sha256_of(&zst),
        "size": content.len(), "device": disk});
    let (status, cmd) = api.post("/api/v1/nodes/agent-1/agent-commands", &write).await;
    assert_eq!(status, 201, "{cmd}");
    assert_eq!(cmd["state"], "queued");
    let done = api.finished("agent-1", cmd["id"].as_i64().unwrap()).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["generation"], 1);
    assert_eq!(done["done_bytes"], content.len(), "the last progress report is the whole image: {done}");
    let written = std::fs::read(&disk).unwrap();
    assert_eq!(&written[..content.len()], content.as_slice());

    // A wrong sha256 fails with the agent's named error.
    let mut bad = write.clone();
    bad["sha256"] = json!("00".repeat(32));
    let (_, cmd) = api.post("/api/v1/nodes/agent-1/agent-commands", &bad).await;
    let failed = api.finished("agent-1", cmd["id"].as_i64().unwrap()).await;
    assert_eq!(failed["state"], "failed");
    assert!(failed["error"].as_str().unwrap().contains("sha256"), "{failed}");

    // Power actions are refused by an agent started without --power-actions.
    let (_, cmd) = api.post("/api/v1/nodes/agent-1/agent-commands", &json!({"kind": "reboot"})).await;
    let refused = api.finished("agent-1", cmd["id"].as_i64().unwrap()).await;
    assert_eq!(refused["state"], "failed");
    assert!(refused["error"].as_str().unwrap().contains("power actions are disabled"), "{refused}");

    // Only admins queue commands; `wait` is not a command.
    let (status, body) = api.post("/api/v1/nodes/agent-1/agent-commands", &json!({"kind": "wait"})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = api.post("/api/v1/nodes/agent-1/agent-commands", &json!({"kind": "format_c"})).await;
    assert_eq!(status, 400, "{body}");
}
