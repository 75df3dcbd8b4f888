//! Deployments over HTTP against simulated BMCs (the full loop with real
//! QEMU nodes, BMC emulators and the agent is `tests/tests/e2e/deploy.rs`):
//! bad requests named and refused with nothing started, who may deploy,
//! the first phase really driving the BMC (boot device PXE, power cycle)
//! and the next boot going to the ramdisk, one running deploy per node, and
//! cancel giving the nodes back to the lease.

use ferrum_controller::model::BmcAddress;
use serde_json::{Value, json};

use super::harness::{DEADLINE, TestContext, wait_until};

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop";

fn tiny() -> Value {
    json!({"name": "tiny", "version": 1, "description": "test image", "image": "tiny.raw.zst", "format": "raw.zst",
        "sha256": "ab".repeat(32), "size": 50_331_648u64, "root_partition": 1, "visibility": "public"})
}

#[tokio::test]
async fn deployments_validate_drive_the_bmc_and_cancel() {
    let mut config = ferrum_controller::config::Config::default();
    config.boot.public_url = Some("http://10.10.0.1:8750".into());
    let ctx = TestContext::empty_configured(config, std::sync::Arc::new(ferrum_controller::app::conductor::SimConductor)).await;
    let mut bmcs = Vec::new();
    for i in 1..=2 {
        let url = format!("ipmi://admin:s3cret@10.9.0.{i}:623");
        bmcs.push(ctx.bmcs.bmc(&BmcAddress::parse(&url).expect("url").endpoint()));
        let body = json!({"name": format!("sim-{i}"), "site": "lab", "cluster": "sim", "macs": [format!("02:00:00:00:01:0{i}")],
            "ip": format!("10.9.1.{i}"), "bmc": url});
        ctx.post("/api/v1/nodes", &ctx.admin, body).await.expect(201);
    }
    ctx.wait_nodes_available(2).await;
    ctx.post("/api/v1/environments", &ctx.admin, tiny()).await.expect(201);
    let alice = ctx.user("alice", "p-vision").await;
    let bob = ctx.user("bob", "p-vision").await;

    // A lease that has not started cannot be deployed.
    let later = super::harness::at(chrono::Duration::hours(2));
    let future =
        ctx.post("/api/v1/leases", &alice, json!({"nodes": {"count": 1}, "duration": "1h", "start": later})).await.expect(201)["id"]
            .as_i64()
            .expect("id");
    let msg = ctx
        .post(&format!("/api/v1/leases/{future}/deployments"), &alice, json!({"environment": "tiny", "ssh_keys": [KEY]}))
        .await
        .error(409, "conflict");
    assert!(msg.contains("pending"), "{msg}");

    let lease = ctx.post("/api/v1/leases", &alice, json!({"nodes": {"names": ["sim-1", "sim-2"]}, "duration": "1h"})).await.expect(201);
    let id = lease["id"].as_i64().expect("id");
    ctx.wait_lease_state(id, &alice, "active").await;
    let path = format!("/api/v1/leases/{id}/deployments");

    // Bad requests: named, and nothing starts.
    let msg = ctx.post(&path, &alice, json!({"environment": "tiny", "ssh_keys": ["not a key"]})).await.error(400, "bad_request");
    assert!(msg.starts_with("ssh_keys[0]:"), "{msg}");
    let msg = ctx.post(&path, &alice, json!({"environment": " ", "ssh_keys": []})).await.error(400, "bad_request");
    assert!(msg.starts_with("environment:"), "{msg}");
    ctx.post(&path, &alice, json!({"environment": "nope", "ssh_keys": [KEY]})).await.error(404, "not_found");
    let msg = ctx.post(&path, &alice, json!({"environment": "tiny", "ssh_key": [KEY]})).await.error(400, "bad_request");
    assert!(msg.contains("ssh_key"), "{msg}");
    ctx.post(&path, &bob, json!({"environment": "tiny", "ssh_keys": [KEY]})).await.error(404, "not_found");
    assert_eq!(ctx.get(&path, &alice).await.expect(200), json!([]));
    assert_eq!(ctx.node_state("sim-1").await, "reserved");

    // A deployment: the nodes go deploying, their BMC boots them from PXE
    // (power cycle) and their next network boot is the deploy ramdisk.
    let d = ctx.post(&path, &alice, json!({"environment": "tiny", "ssh_keys": [KEY]})).await.expect(201);
    let deployment = d["id"].as_i64().expect("id");
    assert_eq!(
        (d["state"].as_str(), d["environment"].as_str(), d["requested_by"].as_str()),
        (Some("running"), Some("tiny"), Some("alice"))
    );
    assert_eq!(d["nodes"].as_array().map(Vec::len), Some(2));
    assert_eq!(ctx.node_state("sim-1").await, "deploying");
    let show = format!("/api/v1/deployments/{deployment}");
    wait_until("both nodes wait for their agent", DEADLINE, async || {
        let d = ctx.get(&show, &alice).await.expect(200);
        let phases: Vec<&str> = d["nodes"].as_array().expect("nodes").iter().filter_map(|n| n["phase"].as_str()).collect();
        if phases == ["wait_agent", "wait_agent"] { Ok(()) } else { Err(d.to_string()) }
    })
    .await;
    for bmc in &bmcs {
        assert_eq!(bmc.operations(), ["boot pxe", "cycle"]);
    }
    let node = ctx.get("/api/v1/nodes/sim-1", &ctx.admin).await.expect(200);
    assert_eq!(node["boot_target"], "ramdisk", "{node}");
    ctx.get(&show, &bob).await.error(404, "not_found");

    // One deploy at a time per node.
    let msg = ctx.post(&path, &alice, json!({"environment": "tiny", "ssh_keys": [KEY]})).await.error(409, "conflict");
    assert!(msg.contains("being deployed"), "{msg}");

    // Cancel: the nodes are the lease's again, the deployment says so.
    let d = ctx.delete(&show, &alice).await.expect(200);
    assert_eq!(d["state"], "cancelled", "{d}");
    assert!(d["nodes"].as_array().expect("nodes").iter().all(|n| n["state"] == "cancelled" && n["phase"] == "finished"), "{d}");
    for name in ["sim-1", "sim-2"] {
        assert_eq!(ctx.node_state(name).await, "reserved");
        let events = ctx.get(&format!("/api/v1/nodes/{name}/events"), &ctx.admin).await.expect(200);
        assert!(events.to_string().contains("cancelled by alice"), "{events}");
    }
    let ops = ctx.get("/api/v1/nodes/sim-1/operations", &ctx.admin).await.expect(200);
    assert_eq!(ops[0]["kind"], "deploy", "{ops}");
    ctx.get("/api/v1/nodes/sim-1/operations", &alice).await.error(403, "forbidden");
    assert_eq!(ctx.get(&path, &alice).await.expect(200).as_array().map(Vec::len), Some(1));
}

/// A node that leaves a lease without a clean reset (its BMC went silent)
/// is reset when it comes back, never handed out with the last tenant's
/// disk; a node never leased enrols straight away. `NodeConductor` (the
/// real hands) with simulated BMCs and no agent: the reset stays at
/// `wait_agent`, the node stays `enrolling`.
#[tokio::test]
async fn a_node_back_from_dead_mid_lease_is_reset_before_anyone_gets_it() {
    use ferrum_controller::config::{Config, PowerConfig};
    use ferrum_controller::power::PowerError;
    let mut config = Config {
        power: PowerConfig { sync_interval: std::time::Duration::from_millis(100), ..PowerConfig::default() },
        ..Config::default()
    };
    config.boot.public_url = Some("http://10.10.0.1:8750".into());
    let ctx = TestContext::empty_configured(config, std::sync::Arc::new(ferrum_controller::app::conductor::NodeConductor)).await;
    let mut bmcs = Vec::new();
    for i in 1..=2 {
        let url = format!("ipmi://admin:pw@10.9.2.{i}:623");
        bmcs.push((ctx.bmcs.bmc(&BmcAddress::parse(&url).expect("url").endpoint()), BmcAddress::parse(&url).expect("url").endpoint()));
        let body =
            json!({"name": format!("dirty-{i}"), "site": "lab", "cluster": "sim", "macs": [format!("02:00:00:00:02:0{i}")], "bmc": url});
        ctx.post("/api/v1/nodes", &ctx.admin, body).await.expect(201);
    }
    ctx.wait_nodes_available(2).await;
    let alice = ctx.user("alice", "p-vision").await;
    let lease = ctx.post("/api/v1/leases", &alice, json!({"nodes": {"names": ["dirty-1"]}, "duration": "1h"})).await.expect(201);
    ctx.wait_lease_state(lease["id"].as_i64().expect("id"), &alice, "active").await;

    // Its BMC goes silent mid-lease: dead, out of the lease.
    let (bmc, endpoint) = &bmcs[0];
    bmc.fail_with(Some(PowerError::Unreachable { bmc: endpoint.clone(), tries: 3 }));
    wait_until("dirty-1 dead", DEADLINE, async || {
        let state = ctx.node_state("dirty-1").await;
        if state == "dead" { Ok(()) } else { Err(state) }
    })
    .await;

    // It answers again: enrolling, and a reset runs before it is available.
    bmc.fail_with(None);
    let reset = wait_until("a reset of dirty-1", DEADLINE, async || {
        let ops = ctx.get("/api/v1/nodes/dirty-1/operations", &ctx.admin).await.expect(200);
        let reset = ops.as_array().and_then(|a| a.iter().find(|o| o["kind"] == "reset").cloned());
        match reset {
            Some(r) if r["phase"] == "wait_agent" => Ok(r),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(reset["state"], "running", "{reset}");
    assert_eq!(ctx.node_state("dirty-1").await, "enrolling", "never available before its reset ends");
    assert!(bmc.operations().iter().any(|o| o == "off"), "the reset powered it off: {:?}", bmc.operations());
    // The node never leased was not reset.
    assert_eq!(ctx.node_state("dirty-2").await, "available");
    let ops = ctx.get("/api/v1/nodes/dirty-2/operations", &ctx.admin).await.expect(200);
    assert_eq!(ops, json!([]));
}

/// One simulated node `name` (BMC at `10.9.<subnet>.1`), available.
async fn one_node(ctx: &TestContext, name: &str, subnet: u8) {
    let url = format!("ipmi://admin:pw@10.9.{subnet}.1:623");
    ctx.bmcs.bmc(&BmcAddress::parse(&url).expect("url").endpoint());
    let body = json!({"name": name, "site": "lab", "cluster": "sim", "macs": [format!("02:00:00:00:{subnet:02x}:01")],
        "ip": format!("10.9.{subnet}.2"), "bmc": url});
    ctx.post("/api/v1/nodes", &ctx.admin, body).await.expect(201);
    ctx.wait_nodes_available(1).await;
}

fn sim_context_config() -> ferrum_controller::config::Config {
    let mut config = ferrum_controller::config::Config::default();
    config.boot.public_url = Some("http://10.10.0.1:8750".into());
    config
}

/// Issue 17, finding 1: a user's newer version of a public name does not
/// reach an admin's deploy; the deployment records the exact catalog entry
/// (id, owner, version) and the image's sha256.
#[tokio::test]
async fn an_admins_deploy_never_takes_a_users_version_and_records_what_it_used() {
    let ctx =
        TestContext::empty_configured(sim_context_config(), std::sync::Arc::new(ferrum_controller::app::conductor::SimConductor)).await;
    one_node(&ctx, "sim-h", 5).await;
    let public = ctx.post("/api/v1/environments", &ctx.admin, tiny()).await.expect(201);
    let alice = ctx.user("alice", "p-vision").await;
    let mut hijack = tiny();
    hijack["version"] = json!(2);
    hijack["visibility"] = json!("user");
    hijack["sha256"] = json!("cd".repeat(32));
    ctx.post("/api/v1/environments", &alice, hijack).await.expect(201);

    let lease = ctx.post("/api/v1/leases", &ctx.admin, json!({"nodes": {"names": ["sim-h"]}, "duration": "1h"})).await.expect(201);
    let id = lease["id"].as_i64().expect("id");
    ctx.wait_lease_state(id, &ctx.admin, "active").await;
    let d = ctx
        .post(&format!("/api/v1/leases/{id}/deployments"), &ctx.admin, json!({"environment": "tiny", "ssh_keys": [KEY]}))
        .await
        .expect(201);
    let used = |d: &Value| {
        (
            d["environment"].clone(),
            d["version"].clone(),
            d["environment_owner"].clone(),
            d["environment_id"].clone(),
            d["image_sha256"].clone(),
        )
    };
    let expected = (json!("tiny"), json!(1), json!("admin"), public["id"].clone(), json!("ab".repeat(32)));
    assert_eq!(used(&d), expected, "{d}");
    let shown = ctx.get(&format!("/api/v1/deployments/{}", d["id"]), &ctx.admin).await.expect(200);
    assert_eq!(used(&shown), expected, "{shown}");
}

/// Issue 17, finding 7: a deploy lease's environment is checked at
/// creation (a 400 naming the field, nothing said of others' environments);
/// one that no longer resolves when the lease starts fails the deployment
/// once, with the reason, and the node stays the lease's.
#[tokio::test]
async fn a_deploy_leases_environment_is_checked_at_creation_and_a_vanished_one_fails_with_the_reason() {
    let ctx =
        TestContext::empty_configured(sim_context_config(), std::sync::Arc::new(ferrum_controller::app::conductor::SimConductor)).await;
    one_node(&ctx, "sim-l", 6).await;
    let alice = ctx.user("alice", "p-vision").await;
    let bob = ctx.user("bob", "p-vision").await;
    let carol = ctx.user("carol", "p-vision").await;
    let dave = ctx.user("dave", "p-other").await;
    let mut shared = tiny();
    shared["name"] = json!("cuda");
    shared["visibility"] = json!("project");
    ctx.post("/api/v1/environments", &bob, shared.clone()).await.expect(201);
    let mut private = tiny();
    private["name"] = json!("secret");
    private["visibility"] = json!("user");
    ctx.post("/api/v1/environments", &dave, private).await.expect(201);

    for env in ["secret", "nope"] {
        let body = json!({"nodes": {"count": 1}, "duration": "1h", "deploy": {"environment": env, "ssh_keys": [KEY]}});
        let msg = ctx.post("/api/v1/leases", &alice, body).await.error(400, "bad_request");
        assert!(msg.starts_with("deploy.environment:"), "{msg}");
        assert!(!msg.contains("dave"), "{msg}");
    }
    assert_eq!(ctx.get("/api/v1/leases", &alice).await.expect(200), json!([]));

    // Visible at creation; by the start, a second project peer published a
    // `cuda` too: the name no longer says which.
    let body = json!({"nodes": {"count": 1}, "duration": "1h", "start": super::harness::at(chrono::Duration::hours(1)),
        "deploy": {"environment": "cuda", "ssh_keys": [KEY]}});
    let id = ctx.post("/api/v1/leases", &alice, body).await.expect(201)["id"].as_i64().expect("id");
    ctx.post("/api/v1/environments", &carol, shared).await.expect(201);
    ctx.advance(chrono::Duration::minutes(61));
    ctx.wait_lease_state(id, &alice, "active").await;
    let failed = wait_until("the lease's deployment failed", DEADLINE, async || {
        let list = ctx.get(&format!("/api/v1/leases/{id}/deployments"), &alice).await.expect(200);
        match list.as_array().map(Vec::as_slice) {
            Some([d]) if d["state"] == "failed" => Ok(d.clone()),
            _ => Err(list.to_string()),
        }
    })
    .await;
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("deploy.environment:") && error.contains("several owners"), "{failed}");
    assert_eq!(failed["nodes"], json!([]), "{failed}");
    assert_eq!(ctx.node_state("sim-l").await, "reserved");
}
