//! Power and boot requests over HTTP, against simulated BMCs (the drivers
//! are tested against ipmi_sim and sushy-tools in their own modules):
//! authorisation, the durable queue, BMC failures as node states.

use std::sync::Arc;

use chrono::Duration;
use ferrum_controller::model::BmcAddress;
use ferrum_controller::power::sim::SimBmc;
use serde_json::json;

use super::harness::{DEADLINE, TestContext, wait_until};

async fn node_with_bmc(ctx: &TestContext, name: &str, mac: &str, bmc: &str) {
    let body = json!({"name": name, "site": "lab", "cluster": "sim", "macs": [mac], "bmc": bmc});
    ctx.post("/api/v1/nodes", &ctx.admin, body).await.expect(201);
}

fn endpoint(url: &str) -> String {
    BmcAddress::parse(url).expect("valid BMC URL").endpoint()
}

#[tokio::test]
async fn admins_power_and_boot_nodes_through_their_bmc() {
    let ctx = TestContext::empty().await;
    let url = "ipmi://admin:s3cret@10.9.0.1:623";
    let bmc = ctx.bmcs.bmc(&endpoint(url));
    node_with_bmc(&ctx, "sim-1", "02:00:00:00:01:01", url).await;

    let op = ctx.put("/api/v1/nodes/sim-1/boot-device", &ctx.admin, json!({"device": "pxe"})).await.expect(200);
    assert_eq!((op["operation"].as_str(), op["state"].as_str()), (Some("boot-pxe"), Some("done")));
    let op = ctx.post("/api/v1/nodes/sim-1/power", &ctx.admin, json!({"action": "cycle"})).await.expect(200);
    assert_eq!((op["power"].as_str(), op["requested_by"].as_str()), (Some("on"), Some("admin")));
    assert_eq!(bmc.operations(), ["boot pxe", "cycle"]);
    ctx.post("/api/v1/nodes/sim-1/power", &ctx.admin, json!({"action": "off"})).await.expect(200);
    let status = ctx.post("/api/v1/nodes/sim-1/power", &ctx.admin, json!({"action": "status"})).await.expect(200);
    assert_eq!(status["power"], "off");

    let node = ctx.get("/api/v1/nodes/sim-1", &ctx.admin).await.expect(200);
    assert_eq!((node["power"]["state"].as_str(), node["power"]["source"].as_str()), (Some("off"), Some("request")));
    assert!(!node.to_string().contains("s3cret"));

    let msg = ctx.post("/api/v1/nodes/sim-1/power", &ctx.admin, json!({"action": "reboot"})).await.error(400, "bad_request");
    assert!(msg.contains("action"), "{msg}");
    ctx.post("/api/v1/nodes", &ctx.admin, json!({"name": "nobmc", "site": "lab", "cluster": "sim", "macs": ["02:00:00:00:01:02"]}))
        .await
        .expect(201);
    let msg = ctx.post("/api/v1/nodes/nobmc/power", &ctx.admin, json!({"action": "on"})).await.error(409, "conflict");
    assert!(msg.contains("has no BMC"), "{msg}");
}

#[tokio::test]
async fn users_power_only_the_nodes_of_their_running_lease() {
    let ctx = TestContext::empty().await;
    let url = "redfish+http://root:pw@10.9.0.2:8000/System-1";
    ctx.bmcs.bmc(&endpoint(url));
    node_with_bmc(&ctx, "sim-2", "02:00:00:00:02:01", url).await;
    ctx.wait_nodes_available(1).await;
    let alice = ctx.user("alice", "p-vision").await;
    let bob = ctx.user("bob", "p-other").await;
    ctx.post("/api/v1/nodes/sim-2/power", &alice, json!({"action": "on"})).await.error(403, "forbidden");
    let lease = ctx.post("/api/v1/leases", &alice, json!({"nodes": {"names": ["sim-2"]}, "duration": "1h"})).await.expect(201);
    ctx.wait_lease_state(lease["id"].as_i64().expect("id"), &alice, "active").await;
    ctx.post("/api/v1/nodes/sim-2/power", &alice, json!({"action": "cycle"})).await.expect(200);
    ctx.put("/api/v1/nodes/sim-2/boot-device", &alice, json!({"device": "disk"})).await.expect(200);
    ctx.post("/api/v1/nodes/sim-2/power", &bob, json!({"action": "off"})).await.error(403, "forbidden");
    ctx.advance(Duration::hours(1));
    ctx.wait_lease_state(lease["id"].as_i64().expect("id"), &alice, "finished").await;
    ctx.post("/api/v1/nodes/sim-2/power", &alice, json!({"action": "off"})).await.error(403, "forbidden");
}

#[tokio::test]
async fn a_bmc_that_does_not_answer_makes_the_node_dead_until_it_answers_again() {
    use ferrum_controller::power::PowerError;
    let ctx = TestContext::empty().await;
    let url = "ipmi://admin:pw@10.9.0.3:623";
    // The BMC exists from the start: the power loop may sweep it at any time.
    let bmc = ctx.bmcs.bmc(&endpoint(url));
    node_with_bmc(&ctx, "sim-3", "02:00:00:00:03:01", url).await;
    ctx.wait_nodes_available(1).await;

    // It stops answering.
    bmc.fail_with(Some(PowerError::Unreachable { bmc: endpoint(url), tries: 1 }));
    let msg = ctx.post("/api/v1/nodes/sim-3/power", &ctx.admin, json!({"action": "on"})).await.error(502, "bmc_error");
    assert_eq!(msg, "no answer from BMC 10.9.0.3:623 after 1 tries");
    assert_eq!(ctx.node_state("sim-3").await, "dead");
    let events = ctx.get("/api/v1/nodes/sim-3/events", &ctx.admin).await.expect(200);
    let last = events.as_array().and_then(|e| e.last()).expect("an event").clone();
    assert_eq!((last["to"].as_str(), last["reason"].as_str()), (Some("dead"), Some(msg.as_str())));
    let alice = ctx.user("alice", "p-vision").await;
    ctx.post("/api/v1/leases", &alice, json!({"nodes": {"names": ["sim-3"]}, "duration": "1h"})).await.error(409, "conflict");

    // The BMC comes back: the node is checked again and returns to the pool.
    bmc.fail_with(None);
    ctx.post("/api/v1/nodes/sim-3/power", &ctx.admin, json!({"action": "status"})).await.expect(200);
    ctx.wait_nodes_available(1).await;
}

/// A controller with the simulated node `name` behind `url`, stopped, and
/// `ops` queued for that node meanwhile (as if the controller had died
/// right after accepting them): the stopped context, the node's BMC and
/// the requests' ids.
async fn stopped_with_queued(name: &str, mac: &str, url: &str, ops: &[&str]) -> (TestContext, Arc<SimBmc>, Vec<i64>) {
    let mut ctx = TestContext::empty().await;
    // The BMC exists from the start: the power loop may sweep it at any time.
    let bmc = ctx.bmcs.bmc(&endpoint(url));
    node_with_bmc(&ctx, name, mac, url).await;
    ctx.shutdown().await;
    let store = ctx.store().await;
    let node = store.get_node(name).await.expect("node").id;
    let mut ids = Vec::new();
    for op in ops {
        ids.push(store.enqueue_power(node, op.parse().expect("operation"), "admin", 0).await.expect("queued"));
    }
    (ctx, bmc, ids)
}

#[tokio::test]
async fn queued_requests_survive_a_restart() {
    let url = "ipmi://admin:pw@10.9.0.4:623";
    let (ctx, bmc, ids) = stopped_with_queued("sim-4", "02:00:00:00:04:01", url, &["on"]).await;
    // The next controller carries out what was queued.
    let ctx = ctx.restart().await;
    let store = ctx.store().await;
    wait_until("the queued request carried out", DEADLINE, async || {
        let state = store.power_request(ids[0]).await.expect("request").state;
        if state.as_str() == "done" { Ok(()) } else { Err(state.as_str().to_owned()) }
    })
    .await;
    assert_eq!(bmc.operations(), ["on"]);
    let node = ctx.get("/api/v1/nodes/sim-4", &ctx.admin).await.expect(200);
    assert_eq!(node["power"]["state"], "on");
}

/// A boot device that could not be set is not followed by the cycle meant
/// to use it, and the cycle's refusal names the BMC's real answer (an
/// operation waiting on the cycle reports that).
#[tokio::test]
async fn a_failed_request_skips_the_next_ones_of_its_node_and_says_why() {
    use ferrum_controller::power::PowerError;
    let url = "ipmi://admin:pw@10.9.0.6:623";
    // Both queued at once, then carried out in one pass by the next
    // controller, against a BMC that does not answer.
    let (ctx, bmc, ids) = stopped_with_queued("sim-6", "02:00:00:00:06:01", url, &["boot-pxe", "cycle"]).await;
    let (boot, cycle) = (ids[0], ids[1]);
    bmc.fail_with(Some(PowerError::Unreachable { bmc: endpoint(url), tries: 1 }));
    let ctx = ctx.restart().await;
    let store = ctx.store().await;
    let skipped = wait_until("the cycle settled", DEADLINE, async || {
        let r = store.power_request(cycle).await.expect("request");
        if r.state.as_str() == "failed" { Ok(r) } else { Err(r.state.as_str().to_owned()) }
    })
    .await;
    let cause = store.power_request(boot).await.expect("request").error.expect("the boot request failed");
    assert_eq!(cause, "no answer from BMC 10.9.0.6:623 after 1 tries");
    assert_eq!(skipped.error.as_deref(), Some(format!("skipped: an earlier request for this node failed: {cause}").as_str()));
    assert!(bmc.operations().is_empty(), "nothing reached the BMC: {:?}", bmc.operations());
}

/// An operation's power sequence drops what was still queued for its node
/// (the store's part: only that node's requests, only those not started).
#[tokio::test]
async fn queued_requests_of_one_node_can_be_superseded() {
    let ctx = TestContext::empty().await;
    node_with_bmc(&ctx, "sim-7", "02:00:00:00:07:01", "ipmi://admin:pw@10.9.0.7:623").await;
    node_with_bmc(&ctx, "sim-8", "02:00:00:00:08:01", "ipmi://admin:pw@10.9.0.8:623").await;
    let mut ctx = ctx;
    ctx.shutdown().await;
    let store = ctx.store().await;
    let (seven, eight) = (store.get_node("sim-7").await.expect("node").id, store.get_node("sim-8").await.expect("node").id);
    let started = store.enqueue_power(seven, "boot-pxe".parse().expect("operation"), "admin", 0).await.expect("queued");
    store.set_power_request_running(started).await.expect("running");
    let stale = store.enqueue_power(seven, "cycle".parse().expect("operation"), "admin", 0).await.expect("queued");
    let other = store.enqueue_power(eight, "on".parse().expect("operation"), "admin", 0).await.expect("queued");
    assert_eq!(store.cancel_queued_power(seven, "superseded", 1).await.expect("cancelled"), 1);
    let mut seen = Vec::new();
    for id in [started, stale, other] {
        let r = store.power_request(id).await.expect("request");
        seen.push((r.state.as_str().to_owned(), r.error));
    }
    assert_eq!(seen, [("running".to_owned(), None), ("failed".to_owned(), Some("superseded".to_owned())), ("queued".to_owned(), None)]);
}

#[tokio::test]
async fn the_sweep_records_power_and_finds_silent_bmcs() {
    use ferrum_controller::app::conductor::SimConductor;
    use ferrum_controller::config::{Config, PowerConfig};
    use ferrum_controller::power::PowerError;
    // A fast sweep (real time: the power loop is not on the lease clock).
    let config = Config {
        power: PowerConfig { sync_interval: std::time::Duration::from_millis(100), ..PowerConfig::default() },
        ..Config::default()
    };
    let ctx = TestContext::empty_configured(config, std::sync::Arc::new(SimConductor)).await;
    let url = "ipmi://admin:pw@10.9.0.5:623";
    let bmc = ctx.bmcs.bmc(&endpoint(url));
    node_with_bmc(&ctx, "sim-5", "02:00:00:00:05:01", url).await;
    ctx.wait_nodes_available(1).await;

    let node = wait_until("the sweep reading the BMC", DEADLINE, async || {
        let node = ctx.get("/api/v1/nodes/sim-5", &ctx.admin).await.expect(200);
        if node["power"]["source"] == "sync" { Ok(node) } else { Err(node.to_string()) }
    })
    .await;
    assert_eq!(node["power"]["state"], "off");

    // The BMC stops answering: the next sweep makes the node dead, with the named error.
    bmc.fail_with(Some(PowerError::Unreachable { bmc: endpoint(url), tries: 3 }));
    wait_until("the sweep noticing the silent BMC", DEADLINE, async || {
        let state = ctx.node_state("sim-5").await;
        if state == "dead" { Ok(()) } else { Err(state) }
    })
    .await;
    let events = ctx.get("/api/v1/nodes/sim-5/events", &ctx.admin).await.expect(200);
    let last = events.as_array().and_then(|e| e.last()).expect("an event").clone();
    assert_eq!((last["actor"].as_str(), last["reason"].as_str()), (Some("system"), Some("no answer from BMC 10.9.0.5:623 after 3 tries")));

    // It answers again: checked again and back in the pool.
    bmc.fail_with(None);
    ctx.wait_nodes_available(1).await;
}
