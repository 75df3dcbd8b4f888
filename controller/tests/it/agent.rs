//! The agent protocol over HTTP (registration, generations, commands) and
//! the inventory check against a node's Grid'5000 reference description.

use serde_json::{Value, json};

use super::harness::TestContext;

/// A ramdisk boot's one-time token for `node` (boot target set to ramdisk).
async fn token_for(ctx: &TestContext, node: &str) -> String {
    ctx.put(&format!("/api/v1/nodes/{node}/boot-target"), &ctx.admin, json!({"target": "ramdisk"})).await.expect(200);
    let shown = ctx.get(&format!("/api/v1/nodes/{node}"), &ctx.admin).await.expect(200);
    let mac = shown["macs"][0].as_str().expect("the node has a MAC").to_owned();
    let script = ctx.client.get(format!("{}/boot/ipxe?mac={mac}", ctx.boot_url)).send().await.expect("sent").text().await.expect("body");
    script.split("ferrum.token=").nth(1).and_then(|t| t.split_whitespace().next()).expect("a token in the script").to_owned()
}

async fn register(ctx: &TestContext, node: &str, token: &str) -> (u16, Value) {
    let body = json!({"token": token, "node": node, "protocol": 1, "agent_version": "test"});
    let a = ctx.boot_request(reqwest::Method::POST, "/agent/v1/register", None, Some(&body)).await;
    (a.status, a.body)
}

/// A report of a VM without GPU and with 4 GiB of memory.
fn small_report() -> Value {
    json!({
        "schema_version": 1, "agent_version": "test",
        "processor": {"model": "QEMU Virtual CPU"}, "architecture": {"nb_procs": 1, "nb_cores": 1, "nb_threads": 1},
        "main_memory": {"ram_size": 4_294_967_296u64},
        "pci_ids_source": {"origin": "embedded"}
    })
}

#[tokio::test]
async fn registration_generations_and_the_inventory_check() {
    let mut config = ferrum_controller::config::Config::default();
    config.boot.public_url = Some("http://10.10.0.1:8750".into());
    let ctx = TestContext::empty_configured(config, std::sync::Arc::new(ferrum_controller::app::conductor::SimConductor)).await;
    ctx.import_fixtures().await;
    let nodes = ctx.get("/api/v1/nodes?filter=gpu_count%20%3E%3D%202", &ctx.admin).await.expect(200);
    let gpu = nodes[0]["name"].as_str().expect("a GPU node in the fixtures").to_owned();
    // The same description at a loopback address: scripts are answered, and
    // agents registered, only at the node's inventory address.
    let mut reference = ctx.get(&format!("/api/v1/nodes/{gpu}/inventory"), &ctx.admin).await.expect(200)["reference"].clone();
    reference["uid"] = json!("agent-gpu");
    let body = json!({"name": "agent-gpu", "site": "lab", "cluster": "vm", "macs": ["02:00:00:00:0a:01"], "ip": "127.0.0.1",
        "reference": reference});
    ctx.post("/api/v1/nodes", &ctx.admin, body).await.expect(201);
    let node = "agent-gpu".to_owned();

    // Wrong node, wrong protocol, garbage token: refused.
    let token = token_for(&ctx, &node).await;
    assert_eq!(register(&ctx, "some-other-node", &token).await.0, 401);
    let body = json!({"token": token, "node": node, "protocol": 2, "agent_version": "test"});
    let msg = ctx.boot_request(reqwest::Method::POST, "/agent/v1/register", None, Some(&body)).await.error(400, "bad_request");
    assert!(msg.starts_with("protocol:"), "{msg}");
    assert_eq!(register(&ctx, &node, "ferrum_nope").await.0, 401);

    let (status, session) = register(&ctx, &node, &token).await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["generation"], 1);
    let s1 = session["session"].as_str().expect("a session").to_owned();
    assert_eq!(register(&ctx, &node, &token).await.0, 401, "the token was one-time");

    // An upload must carry its session's generation.
    let upload = |generation: i64| json!({"generation": generation, "report": small_report()});
    let msg = ctx.boot_request(reqwest::Method::POST, "/agent/v1/inventory", Some(&s1), Some(&upload(7))).await.error(400, "bad_request");
    assert!(msg.starts_with("generation:"), "{msg}");
    assert_eq!(ctx.boot_request(reqwest::Method::POST, "/agent/v1/inventory", Some(&s1), Some(&upload(1))).await.status, 204);

    // The check: the reference's GPUs and memory are missing from the report.
    let inv = ctx.get(&format!("/api/v1/nodes/{node}/inventory"), &ctx.admin).await.expect(200);
    assert!(inv["reference"]["gpu_devices"].is_object(), "{}", inv["reference"]);
    assert_eq!(inv["reported"]["generation"], 1);
    let fields: Vec<&str> = inv["differences"].as_array().expect("differences").iter().filter_map(|d| d["field"].as_str()).collect();
    assert!(fields.contains(&"gpu_devices.count"), "{fields:?}");
    assert!(fields.contains(&"main_memory.ram_size"), "{fields:?}");

    // A new boot registers generation 2; the old session is over.
    let token2 = token_for(&ctx, &node).await;
    let (_, session2) = register(&ctx, &node, &token2).await;
    assert_eq!(session2["generation"], 2);
    let s2 = session2["session"].as_str().expect("a session").to_owned();
    assert_eq!(ctx.boot_request(reqwest::Method::POST, "/agent/v1/inventory", Some(&s1), Some(&upload(1))).await.status, 401);

    // Commands: none → wait; an admin's command → handed out once, in order.
    let idle = ctx.boot_request(reqwest::Method::GET, "/agent/v1/command?wait_ms=0", Some(&s2), None).await.expect(200);
    assert_eq!((idle["id"].as_i64(), idle["action"]["kind"].as_str()), (Some(0), Some("wait")));
    let user = ctx.user("eve", "p-agents").await;
    ctx.post(&format!("/api/v1/nodes/{node}/agent-commands"), &user, json!({"kind": "inventory"})).await.error(403, "forbidden");
    let queued = ctx.post(&format!("/api/v1/nodes/{node}/agent-commands"), &ctx.admin, json!({"kind": "inventory"})).await.expect(201);
    let id = queued["id"].as_i64().expect("an id");
    let cmd = ctx.boot_request(reqwest::Method::GET, "/agent/v1/command?wait_ms=1000", Some(&s2), None).await.expect(200);
    assert_eq!((cmd["id"].as_i64(), cmd["generation"].as_i64(), cmd["action"]["kind"].as_str()), (Some(id), Some(2), Some("inventory")));
    let progress = json!({"generation": 2, "done": 10, "total": 100});
    ctx.boot_request(reqwest::Method::POST, &format!("/agent/v1/commands/{}/progress", id + 100), Some(&s2), Some(&progress))
        .await
        .error(404, "not_found");
    assert_eq!(
        ctx.boot_request(reqwest::Method::POST, &format!("/agent/v1/commands/{id}/progress"), Some(&s2), Some(&progress)).await.status,
        204
    );
    let result = json!({"generation": 2, "error": null});
    assert_eq!(
        ctx.boot_request(reqwest::Method::POST, &format!("/agent/v1/commands/{id}/result"), Some(&s2), Some(&result)).await.status,
        204
    );
    let list = ctx.get(&format!("/api/v1/nodes/{node}/agent-commands"), &ctx.admin).await.expect(200);
    assert_eq!((list[0]["state"].as_str(), list[0]["done_bytes"].as_i64()), (Some("done"), Some(10)));
    // A finished command is finished: a second result is not accepted.
    ctx.boot_request(reqwest::Method::POST, &format!("/agent/v1/commands/{id}/result"), Some(&s2), Some(&result))
        .await
        .error(404, "not_found");
    assert!(!list.to_string().contains(&s2) && !list.to_string().contains(&token2), "tokens never appear in answers");
}
