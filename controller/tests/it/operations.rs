//! The operations engine end to end without QEMU: whole deploys and resets
//! through the API, against simulated nodes (`sim_agent::SimNode`: a
//! `SimBmc`, the agent protocol over the controller's real boot listener,
//! an SSH server for the check) on the real hands (`NodeConductor`).
//! Covered: a deploy to the SSH check; resets and their verdicts (clean →
//! `available`; hardware that no longer matches the reference, or a
//! partition table left by the wipe → `suspect`; the default environment
//! restored on a clean node and booted); a failed write retried from a
//! power cycle; deadlines on the controller's clock (a silent agent retried
//! then failed after `deploy.attempts`, an SSH check never answered then
//! retried); partial success; cancel; a reset superseding a running deploy. The QEMU end-to-end test
//! (`tests/tests/e2e/deploy.rs`) stays the check against the real peers.

use ferrum_controller::config::Config;
use serde_json::{Value, json};

use super::harness::{DEADLINE, TestContext, wait_until};
use super::sim_agent::{self, Reply, SimNode};

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop";
/// The simulated image's size.
const IMAGE: usize = 256 << 10;

/// A controller with simulated nodes `names`, all available, the `sim`
/// environment published, and a user; returns the user's token.
async fn lab(config: Config, names: &[&str]) -> (TestContext, Vec<SimNode>, String, String) {
    let ctx = TestContext::with_sim_nodes(config).await;
    let mut nodes = Vec::new();
    for name in names {
        nodes.push(SimNode::enrol(&ctx, name).await);
    }
    ctx.wait_nodes_available(names.len()).await;
    let sha256 = sim_agent::publish_image(&ctx, "sim", IMAGE).await;
    let alice = ctx.user("alice", "p-sim").await;
    (ctx, nodes, alice, sha256)
}

/// An active lease of `nodes`.
async fn lease(ctx: &TestContext, token: &str, nodes: &[SimNode]) -> i64 {
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    let lease = ctx.post("/api/v1/leases", token, json!({"nodes": {"names": names}, "duration": "1h"})).await.expect(201);
    let id = lease["id"].as_i64().expect("id");
    ctx.wait_lease_state(id, token, "active").await;
    id
}

/// Deploys `sim` with alice's key on the lease's nodes; the deployment's id.
async fn deploy(ctx: &TestContext, token: &str, lease: i64) -> i64 {
    let body = json!({"environment": "sim", "ssh_keys": [KEY]});
    ctx.post(&format!("/api/v1/leases/{lease}/deployments"), token, body).await.expect(201)["id"].as_i64().expect("id")
}

/// The deployment once `done` holds for it; else the deployment and what
/// the nodes did.
async fn wait_deployment(ctx: &TestContext, nodes: &[SimNode], id: i64, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    wait_until(what, DEADLINE, async || {
        let d = ctx.get(&format!("/api/v1/deployments/{id}"), &ctx.admin).await.expect(200);
        if done(&d) {
            return Ok(d);
        }
        let journals: Vec<(&str, Vec<String>)> = nodes.iter().map(|n| (n.name.as_str(), n.journal())).collect();
        Err(format!("{d}; the nodes' journals: {journals:?}"))
    })
    .await
}

/// The node's latest operation of `kind` once `done` holds for it.
async fn wait_operation(ctx: &TestContext, node: &str, kind: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    wait_until(what, DEADLINE, async || {
        let ops = ctx.get(&format!("/api/v1/nodes/{node}/operations"), &ctx.admin).await.expect(200);
        match ops.as_array().and_then(|ops| ops.iter().find(|o| o["kind"] == kind)) {
            Some(op) if done(op) => Ok(op.clone()),
            _ => Err(ops.to_string()),
        }
    })
    .await
}

async fn wait_node_state(ctx: &TestContext, node: &str, state: &str) {
    wait_until(&format!("{node} {state}"), DEADLINE, async || {
        let seen = ctx.node_state(node).await;
        let events = ctx.get(&format!("/api/v1/nodes/{node}/events"), &ctx.admin).await.body;
        if seen == state { Ok(()) } else { Err(format!("{seen}; events: {events}")) }
    })
    .await;
}

fn phases(op: &Value) -> Vec<&str> {
    op["phases"].as_array().expect("phases").iter().filter_map(|p| p["phase"].as_str()).collect()
}

/// The node's events' reasons, oldest first.
async fn reasons(ctx: &TestContext, node: &str) -> Vec<String> {
    let events = ctx.get(&format!("/api/v1/nodes/{node}/events"), &ctx.admin).await.expect(200);
    events.as_array().expect("events").iter().filter_map(|e| e["reason"].as_str().map(str::to_owned)).collect()
}

/// The node's agent commands: (kind, state, error).
async fn commands(ctx: &TestContext, node: &str) -> Vec<(String, String, Option<String>)> {
    let list = ctx.get(&format!("/api/v1/nodes/{node}/agent-commands"), &ctx.admin).await.expect(200);
    list.as_array()
        .expect("commands")
        .iter()
        .map(|c| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (text(&c["action"]["kind"]), text(&c["state"]), c["error"].as_str().map(str::to_owned))
        })
        .collect()
}

#[tokio::test]
async fn a_deploy_writes_the_image_installs_the_keys_and_passes_the_ssh_check() {
    let (ctx, nodes, alice, sha256) = lab(Config::default(), &["sim-d"]).await;
    let node = &nodes[0];
    let lease = lease(&ctx, &alice, &nodes).await;
    let id = deploy(&ctx, &alice, lease).await;

    let d = wait_deployment(&ctx, &nodes, id, "the deployment done", |d| d["state"] != "running").await;
    assert_eq!(d["state"], "done", "{d}; the node's journal: {:?}", node.journal());
    let op = &d["nodes"][0];
    assert_eq!((op["state"].as_str(), op["attempt"].as_u64()), (Some("done"), Some(1)), "{op}");
    assert_eq!(phases(op), ["boot_ramdisk", "wait_agent", "write_image", "install_keys", "boot_system", "ssh_check", "finished"]);
    assert_eq!((op["bytes_written"].as_u64(), op["bytes_total"].as_u64()), (Some(IMAGE as u64), Some(IMAGE as u64)), "{op}");
    // The check's first line is the operation's message; the host key seen is recorded.
    let message = op["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("Linux sim-d 6.1.0-sim"), "{op}");
    assert!(op["host_key"].as_str().is_some_and(|k| k.starts_with("SHA256:")), "{op}");
    assert_eq!(op["ssh"], format!("root@{}", node.ip()), "{op}");
    // The node moves right after its operation ends.
    wait_node_state(&ctx, "sim-d", "deployed").await;
    assert!(reasons(&ctx, "sim-d").await.iter().any(|r| r.starts_with(&format!("deployed (deployment {id})"))));
    let shown = ctx.get("/api/v1/nodes/sim-d", &ctx.admin).await.expect(200);
    assert_eq!(shown["boot_target"], "local", "{shown}");

    // What the node went through: one PXE boot into the ramdisk, the
    // image on its disk with the holder's key and the controller's, a
    // reboot into it (the script now boots the disk), root logged in.
    assert_eq!(node.bmc().operations(), ["boot pxe", "cycle"]);
    let (written, keys) = node.written().expect("an image on the disk");
    assert_eq!(written, sha256);
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(keys[0], KEY);
    assert!(keys[1].starts_with("ssh-ed25519 ") && keys[1].contains("ferrum-controller"), "{keys:?}");
    assert_eq!(node.partition_table().as_deref(), Some("gpt"));
    let journal = node.journal();
    let expected = [
        "power: boots from the network",
        "agent: registered, generation 1",
        "agent: write_image done",
        "agent: install_keys done",
        "agent: reboot done",
        "power: boots from the network",
        "system: up as sim-d",
    ];
    let seen: Vec<&str> = journal.iter().map(String::as_str).filter(|l| !l.starts_with("sshd:")).collect();
    assert_eq!(seen, expected, "{journal:?}");
    assert!(journal.iter().any(|l| l == "sshd: root ran 'uname -a'"), "{journal:?}");
    let commands = commands(&ctx, "sim-d").await;
    let kinds: Vec<(&str, &str)> = commands.iter().map(|(k, s, _)| (k.as_str(), s.as_str())).collect();
    assert_eq!(kinds, [("write_image", "done"), ("install_keys", "done"), ("reboot", "done")]);
}

/// The reset at a lease's end, on three deployed nodes: one clean
/// (`available`, its disk blank), one whose RAM no longer matches its
/// reference and one whose wipe left its partition table (both `suspect`,
/// with the differences as reason).
#[tokio::test]
async fn a_reset_wipes_and_checks_each_node_and_its_verdict_makes_it_available_or_suspect() {
    let (ctx, nodes, alice, _) = lab(Config::default(), &["sim-clean", "sim-ram", "sim-wipe"]).await;
    let lease = lease(&ctx, &alice, &nodes).await;
    let id = deploy(&ctx, &alice, lease).await;
    let d = wait_deployment(&ctx, &nodes, id, "the deployment done", |d| d["state"] != "running").await;
    assert_eq!(d["state"], "done", "{d}");
    nodes[1].set_ram(32 << 30);
    nodes[2].reply("wipe", [Reply::Pretend]);

    let released = ctx.delete(&format!("/api/v1/leases/{lease}"), &alice).await.expect(200);
    assert_eq!(released["reason"], "released by alice", "{released}");
    wait_node_state(&ctx, "sim-clean", "available").await;
    wait_node_state(&ctx, "sim-ram", "suspect").await;
    wait_node_state(&ctx, "sim-wipe", "suspect").await;

    let reset_phases = ["power_off", "boot_ramdisk", "wait_agent", "wipe", "inventory", "shutdown", "finished"];
    let clean = wait_operation(&ctx, "sim-clean", "reset", "the reset of sim-clean", |o| o["state"] == "done").await;
    assert_eq!(phases(&clean), reset_phases, "{clean}");
    assert_eq!(clean["message"], "reset, wiped and checked", "{clean}");
    assert_eq!(nodes[0].partition_table(), None, "the wipe erased the partition table");
    assert!(nodes[0].written().is_none(), "nothing of the tenant's system is left");
    // Powered off, booted to the ramdisk, left off.
    assert_eq!(nodes[0].bmc().operations(), ["boot pxe", "cycle", "off", "boot pxe", "on", "off"]);
    assert_eq!(nodes[0].noted("agent: registered"), ["agent: registered, generation 1", "agent: registered, generation 2"]);

    let ram = wait_operation(&ctx, "sim-ram", "reset", "the reset of sim-ram", |o| o["state"] == "done").await;
    let difference = format!("main_memory.ram_size: reference {}, found {}", sim_agent::RAM, 32u64 << 30);
    assert_eq!(ram["message"], difference, "{ram}");
    assert!(reasons(&ctx, "sim-ram").await.iter().any(|r| r.contains(&difference)), "{:?}", reasons(&ctx, "sim-ram").await);

    let wipe = wait_operation(&ctx, "sim-wipe", "reset", "the reset of sim-wipe", |o| o["state"] == "done").await;
    assert_eq!(wipe["message"], "disk sda still has a gpt partition table after the wipe", "{wipe}");
    assert_eq!(nodes[2].partition_table().as_deref(), Some("gpt"));
    assert!(nodes[2].journal().iter().any(|l| l == "agent: wipe claimed done, nothing done"));
}

#[tokio::test]
async fn a_failed_write_is_retried_from_a_power_cycle_and_the_deploy_then_succeeds() {
    let (ctx, nodes, alice, _) = lab(Config::default(), &["sim-w"]).await;
    let node = &nodes[0];
    node.reply("write_image", [Reply::Fail("/dev/sda: I/O error at sector 2048".into())]);
    let lease = lease(&ctx, &alice, &nodes).await;
    let id = deploy(&ctx, &alice, lease).await;

    let d = wait_deployment(&ctx, &nodes, id, "the deployment done", |d| d["state"] != "running").await;
    assert_eq!(d["state"], "done", "{d}");
    let op = &d["nodes"][0];
    assert_eq!(op["attempt"], 2, "{op}");
    assert_eq!(
        phases(op),
        [
            "boot_ramdisk",
            "wait_agent",
            "write_image",
            "boot_ramdisk",
            "wait_agent",
            "write_image",
            "install_keys",
            "boot_system",
            "ssh_check",
            "finished"
        ]
    );
    wait_node_state(&ctx, "sim-w", "deployed").await;
    // A retry is a new power cycle into a new ramdisk: a new agent generation.
    assert_eq!(node.bmc().operations(), ["boot pxe", "cycle", "boot pxe", "cycle"]);
    assert_eq!(node.noted("agent: registered"), ["agent: registered, generation 1", "agent: registered, generation 2"]);
    assert_eq!(
        node.noted("agent: write_image"),
        ["agent: write_image failed: /dev/sda: I/O error at sector 2048", "agent: write_image done"]
    );
    let commands = commands(&ctx, "sim-w").await;
    assert_eq!(commands[0], ("write_image".into(), "failed".into(), Some("/dev/sda: I/O error at sector 2048".into())));
}

/// Deadlines follow the controller's clock: a ramdisk whose agent never
/// registers is retried once the boot deadline passed, and the deploy
/// fails after `deploy.attempts`; the node goes back to its lease.
#[tokio::test]
async fn a_silent_agent_runs_into_the_deadline_and_the_deploy_fails_after_its_attempts() {
    let (ctx, nodes, alice, _) = lab(Config::default(), &["sim-q"]).await;
    let node = &nodes[0];
    node.silent(true);
    let boot_timeout = Config::default().deploy.boot_timeout;
    assert_eq!(Config::default().deploy.attempts, 2);
    let lease = lease(&ctx, &alice, &nodes).await;
    let id = deploy(&ctx, &alice, lease).await;

    for attempt in 1..=2usize {
        // Its ramdisk booted (the agent silent), the operation waits for it.
        wait_deployment(&ctx, &nodes, id, &format!("attempt {attempt} waiting for its agent"), |d| {
            d["nodes"][0]["phase"] == "wait_agent" && d["nodes"][0]["attempt"] == attempt && node.noted("ramdisk:").len() == attempt
        })
        .await;
        ctx.advance(chrono::Duration::from_std(boot_timeout).expect("duration") + chrono::Duration::seconds(1));
    }
    let d = wait_deployment(&ctx, &nodes, id, "the deployment failed", |d| d["state"] != "running").await;
    assert_eq!(d["state"], "failed", "{d}");
    let op = &d["nodes"][0];
    assert_eq!(op["message"], "gave up after 2 attempt(s): wait_agent took longer than 5m", "{op}");
    wait_node_state(&ctx, "sim-q", "reserved").await;
    let shown = ctx.get("/api/v1/nodes/sim-q", &ctx.admin).await.expect(200);
    assert_eq!(shown["boot_target"], "local", "{shown}");
    assert_eq!(node.bmc().operations(), ["boot pxe", "cycle", "boot pxe", "cycle"]);
    assert!(node.noted("agent:").is_empty(), "{:?}", node.journal());
}

#[tokio::test]
async fn a_deployment_where_one_node_fails_is_partial_and_gives_that_node_back() {
    let (ctx, nodes, alice, _) = lab(Config::default(), &["sim-ok", "sim-bad"]).await;
    let broken = Reply::Fail("/dev/sda: no medium found".into());
    nodes[1].reply("write_image", [broken.clone(), broken]);
    let lease = lease(&ctx, &alice, &nodes).await;
    let id = deploy(&ctx, &alice, lease).await;

    let d = wait_deployment(&ctx, &nodes, id, "the deployment over", |d| d["state"] != "running").await;
    assert_eq!(d["state"], "partial", "{d}");
    let by_node = |name: &str| d["nodes"].as_array().and_then(|n| n.iter().find(|o| o["node"] == name).cloned()).expect("the node");
    let ok = by_node("sim-ok");
    assert_eq!((ok["state"].as_str(), ok["attempt"].as_u64()), (Some("done"), Some(1)), "{ok}");
    let bad = by_node("sim-bad");
    assert_eq!((bad["state"].as_str(), bad["attempt"].as_u64()), (Some("failed"), Some(2)), "{bad}");
    assert_eq!(bad["message"], "gave up after 2 attempt(s): the agent's write_image failed: /dev/sda: no medium found", "{bad}");
    wait_node_state(&ctx, "sim-ok", "deployed").await;
    wait_node_state(&ctx, "sim-bad", "reserved").await;
    let reason = format!("deployment {id} failed: {}", bad["message"].as_str().unwrap_or_default());
    assert!(reasons(&ctx, "sim-bad").await.contains(&reason), "{:?}", reasons(&ctx, "sim-bad").await);
    assert!(nodes[1].written().is_none());
}

/// A write that hangs: cancel gives the node back to the lease with its
/// command dropped, and a new deployment boots a new ramdisk that takes
/// over from the stuck one.
#[tokio::test]
async fn cancel_mid_write_gives_the_node_back_and_a_new_deployment_takes_over() {
    let (ctx, nodes, alice, _) = lab(Config::default(), &["sim-c"]).await;
    let node = &nodes[0];
    node.reply("write_image", [Reply::Hang]);
    let lease = lease(&ctx, &alice, &nodes).await;
    let id = deploy(&ctx, &alice, lease).await;
    wait_until("the write hanging", DEADLINE, async || {
        let hanging = node.noted("agent: write_image hangs");
        if hanging.is_empty() { Err(format!("{:?}", node.journal())) } else { Ok(()) }
    })
    .await;

    let d = ctx.delete(&format!("/api/v1/deployments/{id}"), &alice).await.expect(200);
    assert_eq!(d["state"], "cancelled", "{d}");
    assert_eq!(d["nodes"][0]["message"], "cancelled by alice", "{d}");
    assert_eq!(ctx.node_state("sim-c").await, "reserved");
    let write = commands(&ctx, "sim-c").await.pop().expect("the write command");
    assert_eq!(write, ("write_image".into(), "failed".into(), Some("abandoned: the operation moved on".into())));
    let shown = ctx.get("/api/v1/nodes/sim-c", &ctx.admin).await.expect(200);
    assert_eq!(shown["boot_target"], "local", "{shown}");

    let again = deploy(&ctx, &alice, lease).await;
    let d = wait_deployment(&ctx, &nodes, again, "the second deployment done", |d| d["state"] != "running").await;
    assert_eq!(d["state"], "done", "{d}");
    wait_node_state(&ctx, "sim-c", "deployed").await;
    assert_eq!(node.noted("agent: registered"), ["agent: registered, generation 1", "agent: registered, generation 2"]);
}

/// A lease that ends while its deploy runs: the reset supersedes the
/// deploy (cancelled, its hanging command dropped), powers the node off,
/// and wipes and checks it as always.
#[tokio::test]
async fn a_reset_supersedes_a_running_deploy() {
    let (ctx, nodes, alice, _) = lab(Config::default(), &["sim-x"]).await;
    let node = &nodes[0];
    node.reply("write_image", [Reply::Hang]);
    let lease = lease(&ctx, &alice, &nodes).await;
    let id = deploy(&ctx, &alice, lease).await;
    wait_until("the write hanging", DEADLINE, async || {
        let hanging = node.noted("agent: write_image hangs");
        if hanging.is_empty() { Err(format!("{:?}", node.journal())) } else { Ok(()) }
    })
    .await;

    ctx.delete(&format!("/api/v1/leases/{lease}"), &alice).await.expect(200);
    wait_node_state(&ctx, "sim-x", "available").await;
    let d = ctx.get(&format!("/api/v1/deployments/{id}"), &alice).await.expect(200);
    assert_eq!(d["state"], "cancelled", "{d}");
    assert_eq!(d["nodes"][0]["message"], "the node is now resetting", "{d}");
    let reset = wait_operation(&ctx, "sim-x", "reset", "the reset done", |o| o["state"] == "done").await;
    assert_eq!(reset["message"], "reset, wiped and checked", "{reset}");
    let commands = commands(&ctx, "sim-x").await;
    assert_eq!(commands[0].0, "write_image");
    assert_eq!(commands[0].1, "failed");
    let kinds: Vec<&str> = commands.iter().skip(1).map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(kinds, ["wipe", "inventory"]);
    assert_eq!(node.bmc().operations(), ["boot pxe", "cycle", "off", "boot pxe", "on", "off"]);
    assert_eq!(node.noted("agent: registered"), ["agent: registered, generation 1", "agent: registered, generation 2"]);
}

/// The agent says it rebooted, but the node never comes up on SSH: the
/// check runs into its deadline on the controller's clock, the retry's
/// power cycle boots the ramdisk again, and this time the system answers.
#[tokio::test]
async fn an_ssh_check_that_never_answers_runs_into_its_deadline_and_the_retry_succeeds() {
    let (ctx, nodes, alice, _) = lab(Config::default(), &["sim-h"]).await;
    let node = &nodes[0];
    node.reply("reboot", [Reply::Pretend]);
    let lease = lease(&ctx, &alice, &nodes).await;
    let id = deploy(&ctx, &alice, lease).await;

    let waiting = wait_deployment(&ctx, &nodes, id, "the SSH check knocking", |d| {
        d["nodes"][0]["phase"] == "ssh_check" && d["nodes"][0]["message"].as_str().is_some_and(|m| m.contains("does not answer yet"))
    })
    .await;
    assert_eq!(waiting["nodes"][0]["message"], format!("SSH: {}:22 does not answer yet", node.ip()), "{waiting}");
    ctx.advance(chrono::Duration::from_std(Config::default().deploy.ssh_timeout).expect("duration") + chrono::Duration::seconds(1));

    let d = wait_deployment(&ctx, &nodes, id, "the deployment done", |d| d["state"] != "running").await;
    assert_eq!(d["state"], "done", "{d}");
    let op = &d["nodes"][0];
    assert_eq!(op["attempt"], 2, "{op}");
    assert_eq!(phases(op)[5..7], ["ssh_check", "boot_ramdisk"], "{op}");
    wait_node_state(&ctx, "sim-h", "deployed").await;
    assert_eq!(node.noted("agent: reboot"), ["agent: reboot claimed done, nothing done", "agent: reboot done"]);
    assert_eq!(node.noted("system: up"), ["system: up as sim-h"]);
}

/// `[reset] default_environment` with `power_off = false`: a clean node
/// gets the default environment back, with the controller's key only, and
/// is left running it.
#[tokio::test]
async fn a_reset_restores_the_default_environment_and_boots_it() {
    let mut config = Config::default();
    config.reset.default_environment = Some("sim".into());
    config.reset.power_off = false;
    let (ctx, nodes, alice, sha256) = lab(config, &["sim-e"]).await;
    let node = &nodes[0];
    let lease = lease(&ctx, &alice, &nodes).await;
    ctx.delete(&format!("/api/v1/leases/{lease}"), &alice).await.expect(200);

    wait_node_state(&ctx, "sim-e", "available").await;
    let reset = wait_operation(&ctx, "sim-e", "reset", "the reset done", |o| o["state"] == "done").await;
    let environment = ctx.get("/api/v1/environments/sim", &ctx.admin).await.expect(200);
    assert_eq!(reset["message"], format!("reset, wiped and checked; sim restored (environment {})", environment["id"]), "{reset}");
    assert_eq!(
        phases(&reset),
        ["power_off", "boot_ramdisk", "wait_agent", "wipe", "inventory", "write_image", "install_keys", "shutdown", "finished"]
    );
    let (written, keys) = node.written().expect("the default environment on the disk");
    assert_eq!(written, sha256);
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].contains("ferrum-controller"), "{keys:?}");
    // Its next boot is its disk, and it is running the restored system.
    assert_eq!(node.bmc().operations(), ["off", "boot pxe", "on", "boot disk", "cycle"]);
    wait_until("the restored system up", DEADLINE, async || {
        let up = node.noted("system: up");
        if up == ["system: up as sim-e"] { Ok(()) } else { Err(format!("{:?}", node.journal())) }
    })
    .await;
}
