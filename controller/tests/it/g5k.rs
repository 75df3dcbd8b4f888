//! The Grid'5000 API (`/stable`) on the wire, on both databases: HTTP
//! Basic auth (user name + token), Bearer, read-only tokens, content
//! types, the error shape (`{code, title, message}`, no `error` key), 404s,
//! and the reference, status and environment documents. The unmodified
//! clients' acceptance checks are tests/g5k (scripts/g5k-test.sh).

use std::sync::Arc;

use chrono::Duration;
use ferrum_controller::app::conductor::SimConductor;
use ferrum_controller::config::Config;
use serde_json::{Value, json};

use super::harness::{TestContext, at, t0};

/// How a request authenticates.
enum Auth<'a> {
    Basic(&'a str, &'a str),
    Bearer(&'a str),
    None,
}

/// A `/stable` answer.
#[derive(Debug)]
struct G5k {
    status: u16,
    content_type: String,
    challenge: Option<String>,
    body: Value,
}

impl G5k {
    #[track_caller]
    fn expect(self, status: u16) -> Value {
        assert_eq!(self.status, status, "unexpected answer: {}", self.body);
        assert!(self.content_type.contains("application/json"), "{self:?}");
        self.body
    }

    /// An error in this API's shape; its message.
    #[track_caller]
    fn error(self, status: u16) -> String {
        let body = self.expect(status);
        assert!(body.get("error").is_none(), "no `error` key: {body}");
        assert_eq!(body["code"], status, "{body}");
        assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()), "{body}");
        body["message"].as_str().expect("message").to_owned()
    }
}

async fn g5k(ctx: &TestContext, method: reqwest::Method, path: &str, auth: Auth<'_>, body: Option<&str>) -> G5k {
    let mut req = ctx.client.request(method, format!("{}/stable{path}", ctx.url)).header("Accept", "application/json");
    req = match auth {
        Auth::Basic(user, token) => req.basic_auth(user, Some(token)),
        Auth::Bearer(token) => req.bearer_auth(token),
        Auth::None => req,
    };
    // python-grid5000 sends this Content-Type on GETs too, with no body.
    req = req.header("Content-Type", "application/json");
    if let Some(body) = body {
        req = req.body(body.to_owned());
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let content_type = header("content-type").unwrap_or_default();
    let challenge = header("www-authenticate");
    let text = resp.text().await.expect("body read");
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    G5k { status, content_type, challenge, body }
}

async fn get(ctx: &TestContext, path: &str, user: &str, token: &str) -> G5k {
    g5k(ctx, reqwest::Method::GET, path, Auth::Basic(user, token), None).await
}

/// The fixtures imported, lille's network, gateway and resolver
/// configured, and a site with no node (`nancy`); alice and bob in one
/// project.
async fn context() -> (TestContext, String, String) {
    configured("[sites.lille]\ndomain = \"g5k.test\"\nnetwork = \"10.44.0.0/24\"\ngateway = \"10.44.0.254\"\ndns = \"10.44.0.53\"\n[sites.nancy]\n")
        .await
}

/// A ferrumd configured by `config` (TOML) with the fixtures (lille/chifflot
/// ×8, grenoble/servan ×2 exotic) available, and users alice and bob of
/// project p-g5k (their tokens).
pub(super) async fn configured(config: &str) -> (TestContext, String, String) {
    let config = Config::parse(config).expect("config");
    let ctx = TestContext::empty_configured(config, Arc::new(SimConductor)).await;
    ctx.import_fixtures().await;
    ctx.wait_nodes_available(10).await;
    let alice = ctx.user("alice", "p-g5k").await;
    let bob = ctx.user("bob", "p-g5k").await;
    (ctx, alice, bob)
}

fn uids(collection: &Value) -> Vec<&str> {
    collection["items"].as_array().expect("items").iter().map(|i| i["uid"].as_str().expect("uid")).collect()
}

#[tokio::test]
async fn auth_is_basic_with_the_tokens_owner_or_bearer() {
    let (ctx, alice, bob) = context().await;
    let sites = get(&ctx, "/sites", "alice", &alice).await.expect(200);
    assert_eq!(uids(&sites), ["grenoble", "lille", "nancy"]);
    assert_eq!((sites["total"].as_u64(), sites["offset"].as_u64()), (Some(3), Some(0)));
    assert_eq!(
        uids(&g5k(&ctx, reqwest::Method::GET, "/sites", Auth::Bearer(&bob), None).await.expect(200)),
        ["grenoble", "lille", "nancy"]
    );

    // A wrong token, another user's token, no credentials: 401 with a
    // Basic challenge, wherever the request goes (unknown paths too).
    for (auth, path) in [
        (Auth::Basic("alice", "not-a-token"), "/sites"),
        (Auth::Basic("bob", &alice), "/sites/lille"),
        (Auth::Basic("alice", &bob), "/sites/lille/clusters"),
        (Auth::Basic("nobody", &alice), "/sites"),
        (Auth::None, "/sites"),
        (Auth::None, "/no/such/path"),
        (Auth::Bearer("not-a-token"), "/"),
    ] {
        let a = g5k(&ctx, reqwest::Method::GET, path, auth, None).await;
        assert!(a.challenge.as_deref().is_some_and(|c| c.starts_with("Basic")), "{a:?}");
        let message = a.error(401);
        assert!(!message.contains(&alice) && !message.contains(&bob), "{message}");
    }

    // A read-only token reads, and is refused anything else (403), before
    // the route is looked at.
    let ro = ctx.post("/api/v1/users/alice/tokens", &alice, json!({"name": "ro", "read_only": true})).await.expect(201)["token"]
        .as_str()
        .expect("token")
        .to_owned();
    get(&ctx, "/sites/lille", "alice", &ro).await.expect(200);
    for path in ["/sites/lille/jobs", "/sites/lille/deployments", "/sites/lille"] {
        let a = g5k(&ctx, reqwest::Method::POST, path, Auth::Basic("alice", &ro), Some("{}")).await;
        assert!(a.error(403).contains("read-only"), "{path}");
    }
    // A full token gets the route's answer.
    assert_eq!(g5k(&ctx, reqwest::Method::POST, "/sites/lille", Auth::Basic("alice", &alice), Some("{}")).await.status, 405);
}

#[tokio::test]
async fn errors_have_this_apis_shape_and_unknown_names_are_404() {
    let (ctx, alice, _) = context().await;
    for (path, needle) in [
        ("/sites/nowhere", "nowhere"),
        ("/sites/lille/clusters/servan", "servan"),
        ("/sites/lille/clusters/chifflot/nodes/servan-1", "servan-1"),
        ("/sites/nowhere/clusters", "nowhere"),
        ("/sites/nowhere/status", "nowhere"),
        ("/sites/lille/clusters/nope/status", "nope"),
        ("/sites/lille/servers/ntp", "ntp"),
        ("/sites/lille/environments/nope_x86_64_1_alice", "Cannot find environment nope_x86_64_1_alice"),
        ("/no/such/path", "/stable/no/such/path"),
    ] {
        let message = get(&ctx, path, "alice", &alice).await.error(404);
        assert!(message.contains(needle), "{path}: {message}");
    }
    let message = g5k(&ctx, reqwest::Method::DELETE, "/sites/lille", Auth::Basic("alice", &alice), None).await.error(405);
    assert!(message.contains("method"), "{message}");
    // A bad query value of a known parameter: 400 naming it.
    assert!(get(&ctx, "/sites/lille/environments?latest_only=maybe", "alice", &alice).await.error(400).contains("latest_only"));
    // Unknown parameters are ignored.
    get(&ctx, "/sites/lille?deep=1&pretty=yes&branch=master", "alice", &alice).await.expect(200);
}

#[tokio::test]
async fn reference_documents() {
    let (ctx, alice, _) = context().await;
    // A node enrolled by hand (no reference description) in a cluster of
    // its own: its document is synthesised.
    let node = json!({"name": "tiny-1", "site": "nancy", "cluster": "tiny", "macs": ["02:00:00:00:00:01"], "ip": "10.45.0.11",
        "properties": {"core_count": 8, "memnode": 16384, "gpu_count": 1, "gpu_model": "T4", "gpu_mem": i64::MAX}});
    ctx.post("/api/v1/nodes", &ctx.admin, node).await.expect(201);

    let lille = get(&ctx, "/sites/lille", "alice", &alice).await.expect(200);
    assert_eq!(lille["kavlans"]["default"], json!({"network": "10.44.0.0/24", "gateway": "10.44.0.254"}));
    assert_eq!(lille["ipv6"]["site_index"], 2);
    let rels: Vec<&str> = lille["links"].as_array().expect("links").iter().map(|l| l["rel"].as_str().expect("rel")).collect();
    for rel in ["self", "parent", "clusters", "jobs", "deployments", "environments", "status", "servers"] {
        assert!(rels.contains(&rel), "{rel} in {rels:?}");
    }
    assert_eq!(lille["links"][0], json!({"rel": "self", "href": "/stable/sites/lille", "type": "application/vnd.grid5000.item+json"}));
    let grenoble = get(&ctx, "/sites/grenoble", "alice", &alice).await.expect(200);
    assert_eq!(grenoble["kavlans"]["default"], json!({"network": null, "gateway": null}));

    let dns = get(&ctx, "/sites/lille/servers/dns", "alice", &alice).await.expect(200);
    assert_eq!(dns["network_adapters"]["default"]["ip"], "10.44.0.53");
    assert_eq!(
        get(&ctx, "/sites/grenoble/servers/dns", "alice", &alice).await.expect(200)["network_adapters"]["default"]["ip"],
        Value::Null
    );

    // A configured site with no node: an empty collection, never a 404.
    let empty = get(&ctx, "/sites/lille/clusters", "alice", &alice).await.expect(200);
    assert_eq!(uids(&empty), ["chifflot"]);
    let chifflot = &empty["items"][0];
    assert_eq!((chifflot["exotic"].as_bool(), chifflot["model"].as_str()), (Some(false), Some("Dell Inc. PowerEdge R740")));
    assert_eq!(chifflot["created_at"], "Mon, 23 Nov 2026 08:00:00 GMT", "enrolled at t0");
    let servan = get(&ctx, "/sites/grenoble/clusters/servan", "alice", &alice).await.expect(200);
    assert_eq!(servan["exotic"], true);

    // Imported nodes: the reference JSON unchanged, plus links.
    let nodes = get(&ctx, "/sites/lille/clusters/chifflot/nodes", "alice", &alice).await.expect(200);
    assert_eq!(uids(&nodes), (1..=8).map(|i| format!("chifflot-{i}")).collect::<Vec<_>>());
    let imported = ferrum_controller::reference::read_tree(&super::harness::fixtures()).expect("fixtures");
    for item in nodes["items"].as_array().expect("items") {
        let mut served = item.clone();
        let links = served.as_object_mut().expect("object").remove("links").expect("links");
        assert_eq!(links[1]["href"], "/stable/sites/lille/clusters/chifflot");
        let original = imported.iter().find(|d| d.name == item["uid"]).expect("imported");
        assert_eq!(served, original.reference);
    }
    let one = get(&ctx, "/sites/lille/clusters/chifflot/nodes/chifflot-7", "alice", &alice).await.expect(200);
    assert_eq!(one["gpu_devices"]["nvidia0"]["model"], "Tesla V100-PCIE-32GB");

    // The synthesised node: the keys the clients read.
    let tiny = get(&ctx, "/sites/nancy/clusters/tiny/nodes/tiny-1", "alice", &alice).await.expect(200);
    assert_eq!(tiny["architecture"]["nb_cores"], 8);
    assert_eq!(tiny["main_memory"]["ram_size"], 16384_i64 << 20);
    assert_eq!(tiny["gpu_devices"]["gpu0"]["model"], "T4");
    assert_eq!(tiny["gpu_devices"]["gpu0"]["memory"], i64::MAX, "MiB to bytes, saturating");
    let nic = &tiny["network_adapters"][0];
    assert_eq!((nic["mounted"].as_bool(), nic["mountable"].as_bool(), nic["management"].as_bool()), (Some(true), Some(true), Some(false)));
    assert_eq!((nic["interface"].as_str(), nic["ip"].as_str()), (Some("Ethernet"), Some("10.45.0.11")));
    assert_eq!(nic["network_address"], "tiny-1.nancy.ferrum.internal");
    assert_eq!(uids(&get(&ctx, "/sites/nancy/clusters", "alice", &alice).await.expect(200)), ["tiny"]);
    let root = get(&ctx, "/", "alice", &alice).await.expect(200);
    assert_eq!(root["uid"], "grid5000");
}

#[tokio::test]
async fn status_shows_others_reservations_without_who() {
    let (ctx, alice, bob) = context().await;
    let names: Vec<String> = (1..=8).map(|i| format!("chifflot-{i}")).collect();
    let status = get(&ctx, "/sites/lille/clusters/chifflot/status", "alice", &alice).await.expect(200);
    assert!(status.get("items").is_none(), "{status}");
    assert_eq!(status["uid"], t0().timestamp());
    let nodes = status["nodes"].as_object().expect("nodes");
    assert_eq!(nodes.len(), 8);
    for name in &names {
        let s = &nodes[&format!("{name}.lille.g5k.test")];
        assert_eq!((s["hard"].as_str(), s["soft"].as_str()), (Some("alive"), Some("free")), "{s}");
        assert_eq!(s["reservations"], json!([]));
    }

    // bob books every chifflot node from t0 + 1 h for an hour; alice one
    // servan node now (an exotic one).
    let bobs = ctx
        .post(
            "/api/v1/leases",
            &bob,
            json!({"nodes": {"names": names}, "start": at(Duration::hours(1)), "duration": "1h", "name": "secret-name"}),
        )
        .await
        .expect(201);
    let alices = ctx
        .post("/api/v1/leases", &alice, json!({"nodes": {"names": ["servan-1"]}, "duration": "2h", "exotic": true, "name": "mine"}))
        .await
        .expect(201);
    ctx.wait_lease_state(alices["id"].as_i64().expect("id"), &alice, "active").await;

    let t1 = (t0() + Duration::hours(1)).timestamp();
    for path in ["/sites/lille/clusters/chifflot/status", "/sites/lille/status"] {
        let status = get(&ctx, path, "alice", &alice).await.expect(200);
        let r = &status["nodes"]["chifflot-3.lille.g5k.test"]["reservations"][0];
        assert_eq!((r["scheduled_at"].as_i64(), r["walltime"].as_i64()), (Some(t1), Some(3600)), "{r}");
        assert_eq!((r["state"].as_str(), r["queue"].as_str()), (Some("waiting"), Some("default")), "{r}");
        assert!(r.get("started_at").is_none(), "{r}");
        for hidden in ["uid", "user", "user_uid", "name", "project", "types"] {
            assert!(r.get(hidden).is_none(), "{hidden} shown to another user: {r}");
        }
        assert!(!status.to_string().contains("secret-name"));
    }
    // bob and the admins see who and what.
    for (user, token) in [("bob", bob.as_str()), ("admin", ctx.admin.as_str())] {
        let status = get(&ctx, "/sites/lille/clusters/chifflot/status", user, token).await.expect(200);
        let r = &status["nodes"]["chifflot-1.lille.g5k.test"]["reservations"][0];
        assert_eq!((r["uid"].as_i64(), r["user"].as_str(), r["name"].as_str()), (bobs["id"].as_i64(), Some("bob"), Some("secret-name")));
    }
    // alice's running lease: her node is busy, since its start.
    let status = get(&ctx, "/sites/grenoble/status", "alice", &alice).await.expect(200);
    assert_eq!((status["vlans"].clone(), status["subnets"].clone()), (json!({}), json!({})));
    let s = &status["nodes"]["servan-1.grenoble.ferrum.internal"];
    assert_eq!(
        (s["hard"].as_str(), s["soft"].as_str(), s["busy_slots"].as_i64(), s["free_slots"].as_i64()),
        (Some("alive"), Some("busy"), Some(48), Some(0)),
        "{s}"
    );
    let r = &s["reservations"][0];
    assert_eq!(
        (r["state"].as_str(), r["started_at"].as_i64(), r["walltime"].as_i64()),
        (Some("running"), Some(t0().timestamp()), Some(7200)),
        "{r}"
    );
    assert_eq!((r["name"].as_str(), r["user"].as_str()), (Some("mine"), Some("alice")));
    assert_eq!(status["nodes"]["servan-2.grenoble.ferrum.internal"]["soft"], "free");
}

#[tokio::test]
async fn environments_by_uid() {
    let (ctx, alice, bob) = context().await;
    let d = |name: &str, version: u64, visibility: &str| {
        json!({"name": name, "version": version, "image": format!("{name}.raw"), "format": "raw", "sha256": "ab".repeat(32),
            "size": 1_048_576, "root_partition": 1, "visibility": visibility})
    };
    ctx.post("/api/v1/environments", &ctx.admin, d("debian12-min", 2026120700, "public")).await.expect(201);
    ctx.post("/api/v1/environments", &bob, d("bobs", 1, "user")).await.expect(201);
    ctx.post("/api/v1/environments", &bob, d("shared", 2, "project")).await.expect(201);
    let list = get(&ctx, "/sites/lille/environments", "alice", &alice).await.expect(200);
    let mut seen = uids(&list);
    seen.sort_unstable();
    assert_eq!(seen, ["debian12-min_x86_64_2026120700_admin", "shared_x86_64_2_bob"]);
    let one = get(&ctx, "/sites/grenoble/environments/shared_x86_64_2_bob", "alice", &alice).await.expect(200);
    assert_eq!((one["version"].as_u64(), one["visibility"].as_str(), one["user"].as_str()), (Some(2), Some("shared"), Some("bob")));
    assert_eq!((one["image"]["kind"].as_str(), one["image"]["compression"].as_str()), (Some("dd"), Some("none")));
    get(&ctx, "/sites/lille/environments/bobs_x86_64_1_bob", "alice", &alice).await.error(404);
    assert_eq!(get(&ctx, "/sites/lille/environments/bobs_x86_64_1_bob", "bob", &bob).await.expect(200)["visibility"], "private");
    let named = get(&ctx, "/sites/lille/environments?name=debian12-min", "alice", &alice).await.expect(200);
    assert_eq!(uids(&named), ["debian12-min_x86_64_2026120700_admin"]);
}
