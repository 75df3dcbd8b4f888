//! Nodes and inventory over HTTP: import, filters, enrolment, maintenance,
//! events, BMC secrecy.

use serde_json::json;

use super::harness::TestContext;

fn names(v: &serde_json::Value) -> Vec<String> {
    v.as_array().expect("array").iter().map(|n| n["name"].as_str().expect("name").to_owned()).collect()
}

#[tokio::test]
async fn import_is_idempotent_and_reports_changes() {
    let ctx = TestContext::empty().await;
    let first = ctx.import_fixtures().await;
    assert_eq!(first.added.len(), 10);
    assert!(first.changed.is_empty() && first.unchanged.is_empty());
    let second = ctx.import_fixtures().await;
    assert_eq!((second.added.len(), second.changed.len(), second.unchanged.len()), (0, 0, 10));

    // A changed description is reported as changed and updates properties.
    let mut nodes = ferrum_controller::reference::read_tree(&super::harness::fixtures()).expect("fixtures");
    let servan = nodes.iter_mut().find(|n| n.name == "servan-1").expect("servan-1");
    servan.reference["main_memory"]["ram_size"] = json!(274877906944_u64);
    let upload = json!({"nodes": [{"site": servan.site, "cluster": servan.cluster, "description": servan.reference}]});
    let report = ctx.post("/api/v1/nodes/import", &ctx.admin, upload).await.expect(200);
    assert_eq!(report["changed"], json!(["servan-1"]));
    let node = ctx.get("/api/v1/nodes/servan-1", &ctx.admin).await.expect(200);
    assert_eq!(node["properties"]["memnode"], json!(262144));
    assert_eq!(node["reference"]["main_memory"]["ram_size"], json!(274877906944_u64), "the reference is kept whole");
}

/// An import takes the names `node add` takes, for sites and clusters too
/// (a cluster `_count` would shadow the portal's `/hardware/_count`), and
/// a refusal names the entry and the field, adding nothing.
#[tokio::test]
async fn an_import_refuses_site_and_cluster_names_node_add_refuses() {
    let ctx = TestContext::empty().await;
    let nodes = ferrum_controller::reference::read_tree(&super::harness::fixtures()).expect("fixtures");
    let servan = nodes.iter().find(|n| n.name == "servan-1").expect("servan-1");
    for (site, cluster, field) in [(servan.site.as_str(), "_count", "cluster"), ("../lille", servan.cluster.as_str(), "site")] {
        let upload = json!({"nodes": [{"site": site, "cluster": cluster, "description": servan.reference}]});
        let message = ctx.post("/api/v1/nodes/import", &ctx.admin, upload).await.error(400, "bad_request");
        assert!(message.starts_with(&format!("nodes[0]: {field}")), "{message}");
    }
    assert_eq!(names(&ctx.get("/api/v1/nodes", &ctx.admin).await.expect(200)), Vec::<String>::new());
}

#[tokio::test]
async fn a_reimport_keeps_the_admins_properties_over_the_references() {
    let ctx = TestContext::empty().await;
    let mut nodes = ferrum_controller::reference::read_tree(&super::harness::fixtures()).expect("fixtures");
    let servan = nodes.iter_mut().find(|n| n.name == "servan-1").expect("servan-1");
    let body = json!({"name": "servan-1", "site": servan.site, "cluster": servan.cluster, "macs": ["02:00:00:00:00:01"],
        "reference": servan.reference, "properties": {"exotic": false, "rack": "r12"}});
    let created = ctx.post("/api/v1/nodes", &ctx.admin, body).await.expect(201);
    assert_eq!((created["properties"]["exotic"].clone(), created["properties"]["rack"].clone()), (json!(false), json!("r12")));

    servan.reference["main_memory"]["ram_size"] = json!(274877906944_u64);
    let upload = json!({"nodes": [{"site": servan.site, "cluster": servan.cluster, "description": servan.reference}]});
    let report = ctx.post("/api/v1/nodes/import", &ctx.admin, upload).await.expect(200);
    assert_eq!(report["changed"], json!(["servan-1"]));
    let node = ctx.get("/api/v1/nodes/servan-1", &ctx.admin).await.expect(200);
    assert_eq!(node["properties"]["memnode"], json!(262144), "the reference's properties are updated");
    assert_eq!((node["properties"]["exotic"].clone(), node["properties"]["rack"].clone()), (json!(false), json!("r12")));
}

#[tokio::test]
async fn filters_select_nodes_by_oar_properties() {
    let ctx = TestContext::with_fixtures().await;
    let gpu = ctx.get("/api/v1/nodes?filter=gpu_count%20%3E%3D%202%20AND%20NOT%20exotic", &ctx.admin).await.expect(200);
    assert_eq!(names(&gpu), (1..=8).map(|i| format!("chifflot-{i}")).collect::<Vec<_>>());
    let fpga = ctx.get("/api/v1/nodes?filter=accel_type%20%3D%20'fpga'", &ctx.admin).await.expect(200);
    assert_eq!(names(&fpga), ["servan-1", "servan-2"]);
    let v100 = ctx.get("/api/v1/nodes?filter=gpu_model%20LIKE%20'%25V100%25'", &ctx.admin).await.expect(200);
    assert_eq!(names(&v100), ["chifflot-7", "chifflot-8"]);
    let node = &fpga[0];
    assert_eq!(node["properties"]["accel_model"], "Alveo U200");
    assert_eq!(node["properties"]["exotic"], true);
    assert_eq!(node["state"], "available");
}

#[tokio::test]
async fn bad_filters_are_400_naming_the_position() {
    let ctx = TestContext::with_fixtures().await;
    let msg = ctx.get("/api/v1/nodes?filter=gpu_cont%20%3E%3D%202", &ctx.admin).await.error(400, "invalid_filter");
    assert_eq!(msg, "filter: at position 1: unknown property 'gpu_cont' (did you mean 'gpu_count'?)");
    let msg = ctx.get("/api/v1/nodes?filter=gpu_count%20%3E%3D", &ctx.admin).await.error(400, "invalid_filter");
    assert!(msg.contains("position 13"), "{msg}");
}

#[tokio::test]
async fn enrol_one_node_with_a_bmc_kept_secret() {
    let ctx = TestContext::with_fixtures().await;
    let body = json!({"name": "proto-1", "site": "lille", "cluster": "proto", "macs": ["02:00:00:00:00:01"], "ip": "10.0.0.9",
        "bmc": "redfish://root:hunter2@127.0.0.1:8000/System-1", "properties": {"exotic": true, "accel_type": "ipu"}});
    let created = ctx.post("/api/v1/nodes", &ctx.admin, body.clone()).await.expect(201);
    assert_eq!(created["bmc"]["driver"], "redfish");
    assert_eq!(created["bmc"]["system_id"], "System-1");
    assert!(!created.to_string().contains("hunter2"), "password never returned, even to admins");
    assert_eq!(created["properties"]["accel_type"], "ipu");
    assert_eq!(created["properties"]["gpu_count"], 0, "standard properties get defaults");
    ctx.post("/api/v1/nodes", &ctx.admin, body).await.error(409, "conflict");

    let user = ctx.user("alice", "p-vision").await;
    let as_user = ctx.get("/api/v1/nodes/proto-1", &user).await.expect(200);
    assert!(as_user.get("bmc").is_none(), "BMC data is admin-only: {as_user}");
    let all = ctx.get("/api/v1/nodes", &user).await.expect(200);
    assert!(!all.to_string().contains("127.0.0.1:8000") && !all.to_string().contains("hunter2"));
    ctx.post("/api/v1/nodes", &user, json!({"name": "x", "site": "s", "cluster": "c", "macs": ["02:00:00:00:00:02"]}))
        .await
        .error(403, "forbidden");
}

#[tokio::test]
async fn enrolment_refuses_bad_input_by_field() {
    let ctx = TestContext::empty().await;
    let base = json!({"name": "n1", "site": "s", "cluster": "c", "macs": ["02:00:00:00:00:01"]});
    let cases = [
        (json!({"macs": ["zz:00:00:00:00:01"]}), "macs[0]: 'zz:00:00:00:00:01' is not a MAC address"),
        (json!({"macs": []}), "macs: give at least one"),
        (json!({"ip": "10.0.0.300"}), "ip: '10.0.0.300' is not an IP address"),
        (json!({"bmc": "ipmi://admin@10.0.0.5"}), "bmc: BMC address has no password"),
        (json!({"bmc": "http://a:secretpw@h"}), "bmc: BMC address scheme 'http' is not supported"),
        (json!({"name": "bad name"}), "node name 'bad name' is invalid"),
        (json!({"properties": {"Bad": 1}}), "properties.Bad"),
    ];
    for (patch, expected) in cases {
        let mut body = base.clone();
        for (k, v) in patch.as_object().expect("object") {
            body[k] = v.clone();
        }
        let msg = ctx.post("/api/v1/nodes", &ctx.admin, body).await.error(400, "bad_request");
        assert!(msg.contains(expected), "{msg} should contain {expected}");
        assert!(!msg.contains("secretpw"));
    }
    // A MAC already enrolled is a conflict naming it.
    ctx.post("/api/v1/nodes", &ctx.admin, base.clone()).await.expect(201);
    let mut other = base;
    other["name"] = json!("n2");
    let msg = ctx.post("/api/v1/nodes", &ctx.admin, other).await.error(409, "conflict");
    assert!(msg.contains("02:00:00:00:00:01"), "{msg}");
}

#[tokio::test]
async fn maintenance_is_intent_recorded_as_events_and_never_allocated() {
    let ctx = TestContext::with_fixtures().await;
    let user = ctx.user("alice", "p-vision").await;
    let node =
        ctx.post("/api/v1/nodes/chifflot-1/maintenance", &ctx.admin, json!({"enabled": true, "reason": "PSU swap"})).await.expect(200);
    assert_eq!((node["state"].as_str(), node["policy"].as_str()), (Some("maintenance"), Some("maintenance")));
    ctx.post("/api/v1/nodes/chifflot-1/maintenance", &user, json!({"enabled": false, "reason": "x"})).await.error(403, "forbidden");

    // 8 P100/V100 nodes minus one in maintenance: 8 cannot be had.
    let msg = ctx
        .post("/api/v1/leases", &user, json!({"nodes": {"count": 8, "filter": "gpu_count >= 2"}, "duration": "1h"}))
        .await
        .error(400, "unsatisfiable");
    assert!(msg.contains("only 7"), "{msg}");
    let lease =
        ctx.post("/api/v1/leases", &user, json!({"nodes": {"count": 7, "filter": "gpu_count >= 2"}, "duration": "1h"})).await.expect(201);
    assert!(!lease["nodes"].as_array().expect("nodes").contains(&json!("chifflot-1")));
    ctx.post("/api/v1/leases", &user, json!({"nodes": {"names": ["chifflot-1"]}, "duration": "1h"})).await.error(409, "conflict");

    let events = ctx.get("/api/v1/nodes/chifflot-1/events", &user).await.expect(200);
    let last = events.as_array().expect("events").last().expect("an event").clone();
    assert_eq!(
        (last["from"].as_str(), last["to"].as_str(), last["actor"].as_str(), last["reason"].as_str()),
        (Some("available"), Some("maintenance"), Some("admin"), Some("PSU swap"))
    );
}

/// `GET /api/v1/sites`: every site with nodes or a `[sites.NAME]` table,
/// with its time zone (the CLI reads `--start 2026-12-08 09:00` in it) and
/// domain; any signed-in user may read it.
#[tokio::test]
async fn sites_list_the_sites_with_nodes_or_a_table_with_their_time_zone() {
    let config = ferrum_controller::config::Config::parse(
        "[sites.lille]\ntimezone = \"America/Montreal\"\ndomain = \"g5k.example.org\"\n[sites.nancy]\ntimezone = \"UTC\"\n",
    )
    .expect("config");
    let ctx = TestContext::empty_configured(config, std::sync::Arc::new(ferrum_controller::app::conductor::SimConductor)).await;
    ctx.import_fixtures().await;
    let alice = ctx.user("alice", "p-vision").await;
    let sites = ctx.get("/api/v1/sites", &alice).await.expect(200);
    assert_eq!(
        sites,
        json!([
            {"name": "grenoble", "timezone": "Europe/Paris", "domain": "ferrum.internal"},
            {"name": "lille", "timezone": "America/Montreal", "domain": "g5k.example.org"},
            {"name": "nancy", "timezone": "UTC", "domain": "ferrum.internal"},
        ])
    );
    ctx.request(reqwest::Method::GET, "/api/v1/sites", None, None).await.error(401, "unauthorized");
}

/// An admin marks a suspect node repaired: it is enrolled again (checked)
/// and becomes available; anything not suspect or dead is a conflict;
/// users may not; the reason is recorded.
#[tokio::test]
async fn an_admin_marks_a_suspect_node_repaired_and_it_is_checked_again() {
    let hands = std::sync::Arc::new(super::harness::BrokenNodes::default());
    let ctx = TestContext::empty_with(hands.clone()).await;
    ctx.import_fixtures().await;
    ctx.wait_nodes_available(10).await;
    let alice = ctx.user("alice", "p-vision").await;
    let lease = ctx.post("/api/v1/leases", &alice, json!({"nodes": {"names": ["chifflot-4"]}, "duration": "1h"})).await.expect(201);
    let id = lease["id"].as_i64().expect("id");
    ctx.wait_lease_state(id, &alice, "active").await;
    hands.set("chifflot-4", "gpu_count: reference 2, found 1");
    ctx.advance(chrono::Duration::hours(1));
    ctx.wait_lease_state(id, &alice, "finished").await;
    assert_eq!(ctx.node_state("chifflot-4").await, "suspect");

    let repaired = json!({"reason": "GPU reseated"});
    let msg = ctx.post("/api/v1/nodes/chifflot-4/repaired", &alice, repaired.clone()).await.error(403, "forbidden");
    assert!(msg.contains("admins"), "{msg}");
    let msg = ctx.post("/api/v1/nodes/chifflot-4/repaired", &ctx.admin, json!({"reason": " "})).await.error(400, "bad_request");
    assert!(msg.starts_with("reason:"), "{msg}");
    let msg = ctx.post("/api/v1/nodes/chifflot-1/repaired", &ctx.admin, repaired.clone()).await.error(409, "conflict");
    assert!(msg.contains("chifflot-1") && msg.contains("available") && msg.contains("nothing to repair"), "{msg}");
    ctx.post("/api/v1/nodes/nope-1/repaired", &ctx.admin, repaired.clone()).await.error(404, "not_found");

    // Repaired by hand: the next check passes.
    hands.broken.lock().expect("lock").clear();
    let node = ctx.post("/api/v1/nodes/chifflot-4/repaired", &ctx.admin, repaired).await.expect(200);
    assert_ne!(node["state"], "suspect", "{node}");
    super::harness::wait_until("chifflot-4 available again", super::harness::DEADLINE, async || {
        let state = ctx.node_state("chifflot-4").await;
        if state == "available" { Ok(()) } else { Err(state) }
    })
    .await;
    let events = ctx.get("/api/v1/nodes/chifflot-4/events", &ctx.admin).await.expect(200);
    let events = events.as_array().expect("events");
    assert!(
        events.iter().any(|e| e["from"] == "suspect" && e["to"] == "enrolling" && e["reason"] == "GPU reseated" && e["actor"] == "admin"),
        "{events:?}"
    );
    let audit = ctx.get("/api/v1/audit?action=node.repaired", &ctx.admin).await.expect(200);
    assert_eq!(audit.as_array().map(Vec::len), Some(1), "{audit}");
}

/// OAR's spellings (lower-case keywords, `'YES'`/`'NO'` booleans,
/// `network_address`, `type`) select nodes in `/api/v1` too; the
/// fully qualified names use each site's configured domain.
#[tokio::test]
async fn node_listing_takes_oar_spellings() {
    use ferrum_controller::config::{Config, SiteConfig};
    let lille = SiteConfig { domain: "g5k.test".into(), ..SiteConfig::default() };
    let config = Config { sites: [("lille".to_owned(), lille)].into(), ..Config::default() };
    let ctx = TestContext::empty_configured(config, std::sync::Arc::new(ferrum_controller::app::conductor::SimConductor)).await;
    ctx.import_fixtures().await;
    let list = async |filter: &str| {
        let q: String = url::form_urlencoded::byte_serialize(filter.as_bytes()).collect();
        names(&ctx.get(&format!("/api/v1/nodes?filter={q}"), &ctx.admin).await.expect(200))
    };
    let chifflot: Vec<String> = (1..=8).map(|i| format!("chifflot-{i}")).collect();
    assert_eq!(list("cluster='chifflot' and gpu_model like '%V100%'").await, ["chifflot-7", "chifflot-8"]);
    assert_eq!(list("exotic='NO' and cluster in ('servan', 'chifflot')").await, chifflot);
    assert_eq!(list("exotic='YES' or cluster not in ('chifflot')").await, ["servan-1", "servan-2"]);
    assert_eq!(list("not exotic='NO'").await, ["servan-1", "servan-2"]);
    assert_eq!(
        list("network_address in ('chifflot-1.lille.g5k.test', 'servan-2.grenoble.ferrum.internal')").await,
        ["servan-2", "chifflot-1"]
    );
    assert_eq!(list("network_address = 'chifflot-1.lille.ferrum.internal'").await, Vec::<String>::new(), "lille has its own domain");
    assert_eq!(list("(type='default' or type='disk') AND cluster='servan'").await, ["servan-1", "servan-2"]);
    assert_eq!(list("type='disk'").await, Vec::<String>::new());
    assert_eq!(list("host like 'servan-%'").await, ["servan-1", "servan-2"]);
    let msg = ctx.get("/api/v1/nodes?filter=networkaddress%20%3D%20'x'", &ctx.admin).await.error(400, "invalid_filter");
    assert_eq!(msg, "filter: at position 1: unknown property 'networkaddress' (did you mean 'network_address'?)");
    let msg = ctx.get("/api/v1/nodes?filter=colour%20%3D%20'x'", &ctx.admin).await.error(400, "invalid_filter");
    assert_eq!(msg, "filter: at position 1: unknown property 'colour'", "no suggestion when nothing is close");
    // Derived properties are not set by hand.
    for name in ["type", "network_address"] {
        let body =
            json!({"name": "proto-1", "site": "lille", "cluster": "proto", "macs": ["02:00:00:00:00:01"], "properties": {name: "x"}});
        let msg = ctx.post("/api/v1/nodes", &ctx.admin, body).await.error(400, "bad_request");
        assert_eq!(msg, format!("properties.{name}: derived from the node by ferrum, not set as a property"));
    }
}
