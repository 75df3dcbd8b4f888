//! The HTTP boot endpoints: per-MAC iPXE scripts following the node's boot
//! target, answered only to the node's address, one-time agent tokens bound
//! to the address that fetched them, the ramdisk files with Range support,
//! images by visibility, and the boot-service tokens of `ferrum-pxe`. All
//! of it on the boot listener (loopback here), none on the API's.

use std::net::{IpAddr, Ipv4Addr};

use ferrum_controller::config::Config;
use serde_json::{Value, json};

use super::harness::TestContext;

const MAC: &str = "02:00:00:00:0b:01";
/// The node's inventory address: where the test's default client connects from.
const NODE_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// Another host of the provisioning network (loopback: any 127/8 source works).
const OTHER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

async fn boot_context() -> TestContext {
    let mut config = Config::default();
    config.boot.public_url = Some("http://10.10.0.1:8750/".into());
    config.boot.cmdline = "console=ttyS0".into();
    let ctx = TestContext::empty_configured(config, std::sync::Arc::new(ferrum_controller::app::conductor::SimConductor)).await;
    let body = json!({"name": "boot-1", "site": "lab", "cluster": "vm", "macs": [MAC], "ip": NODE_IP.to_string()});
    ctx.post("/api/v1/nodes", &ctx.admin, body).await.expect(201);
    ctx
}

/// An HTTP client whose connections come from `ip`.
fn client_from(ip: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder().local_address(IpAddr::V4(ip)).build().expect("client")
}

async fn script_from(ctx: &TestContext, from: Ipv4Addr, mac: &str) -> (u16, String) {
    let resp = client_from(from).get(format!("{}/boot/ipxe?mac={mac}", ctx.boot_url)).send().await.expect("request sent");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body read"))
}

async fn script(ctx: &TestContext, mac: &str) -> (u16, String) {
    script_from(ctx, NODE_IP, mac).await
}

async fn register_from(ctx: &TestContext, from: Ipv4Addr, node: &str, token: &str) -> (u16, Value) {
    let body = json!({"token": token, "node": node, "protocol": 1, "agent_version": "test"});
    let resp = client_from(from).post(format!("{}/agent/v1/register", ctx.boot_url)).json(&body).send().await.expect("request sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("a JSON answer"))
}

fn token_of(script: &str) -> &str {
    let start = script.find("ferrum.token=").expect("a token on the command line") + "ferrum.token=".len();
    script[start..].split_whitespace().next().expect("a token value")
}

#[tokio::test]
async fn scripts_follow_the_boot_target_and_carry_fresh_tokens() {
    let ctx = boot_context().await;

    // A new node boots from its disk; MACs are matched whatever their case.
    let (status, text) = script(&ctx, &MAC.to_uppercase()).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.starts_with("#!ipxe\n# ferrum: boot-1 boots from its local disk\n"), "{text}");
    let node = ctx.get("/api/v1/nodes/boot-1", &ctx.admin).await.expect(200);
    assert_eq!(node["boot_target"], "local");

    // Only admins choose what a node boots.
    let user = ctx.user("alice", "p-boot").await;
    ctx.put("/api/v1/nodes/boot-1/boot-target", &user, json!({"target": "ramdisk"})).await.error(403, "forbidden");
    let msg = ctx.put("/api/v1/nodes/boot-1/boot-target", &ctx.admin, json!({"target": "rescue"})).await.error(400, "bad_request");
    assert!(msg.contains("target"), "{msg}");
    let node = ctx.put("/api/v1/nodes/boot-1/boot-target", &ctx.admin, json!({"target": "ramdisk"})).await.expect(200);
    assert_eq!(node["boot_target"], "ramdisk");

    let (status, first) = script(&ctx, MAC).await;
    assert_eq!(status, 200, "{first}");
    assert!(first.contains("\nkernel http://10.10.0.1:8750/boot/files/vmlinuz initrd=initrd.img ferrum.url=http://10.10.0.1:8750 ferrum.node=boot-1 ferrum.token="), "{first}");
    assert!(first.contains(" console=ttyS0\ninitrd http://10.10.0.1:8750/boot/files/initrd.img\nboot\n"), "{first}");
    let (_, second) = script(&ctx, MAC).await;
    let (t1, t2) = (token_of(&first), token_of(&second));
    assert!(t1.starts_with("ferrum_") && t1.len() > 40, "{t1}");
    assert_ne!(t1, t2, "every ramdisk boot gets its own token");
    let shown = ctx.get("/api/v1/nodes/boot-1", &ctx.admin).await.expect(200).to_string();
    assert!(!shown.contains(t2), "tokens never appear in the API");

    ctx.put("/api/v1/nodes/boot-1/boot-target", &ctx.admin, json!({"target": "local"})).await.expect(200);
    let (_, text) = script(&ctx, MAC).await;
    assert!(text.contains("sanboot --no-describe --drive 0x80"), "{text}");
}

#[tokio::test]
async fn unknown_and_malformed_macs() {
    let ctx = boot_context().await;
    let (status, _) = script(&ctx, "02:00:00:00:0b:99").await;
    assert_eq!(status, 404);
    let answer = ctx.boot_request(reqwest::Method::GET, "/boot/ipxe?mac=not-a-mac", None, None).await;
    let msg = answer.error(400, "bad_request");
    assert!(msg.starts_with("mac: "), "{msg}");
    let msg = ctx.boot_request(reqwest::Method::GET, "/boot/ipxe", None, None).await.error(400, "bad_request");
    assert!(msg.contains("mac"), "{msg}");
}

#[tokio::test]
async fn ramdisk_files_are_served_with_ranges_and_nothing_else() {
    let ctx = boot_context().await;
    let dir = ctx.dir.path().join("ramdisk");
    std::fs::create_dir_all(&dir).unwrap();
    let kernel: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    std::fs::write(dir.join("vmlinuz"), &kernel).unwrap();

    let resp = ctx.client.get(format!("{}/boot/files/vmlinuz", ctx.boot_url)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), kernel.as_slice());

    let resp = ctx.client.get(format!("{}/boot/files/vmlinuz", ctx.boot_url)).header("Range", "bytes=1000-1099").send().await.unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.headers()["content-range"], "bytes 1000-1099/100000");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &kernel[1000..1100]);

    // The data directory around the ramdisk is not reachable.
    for path in ["/boot/files/../admin.token", "/boot/files/%2e%2e/admin.token", "/boot/files/missing"] {
        let resp = ctx.client.get(format!("{}{path}", ctx.boot_url)).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{path}");
    }
}

#[tokio::test]
async fn unknown_macs_are_for_admins() {
    let ctx = boot_context().await;
    let list = ctx.get("/api/v1/boot/unknown-macs", &ctx.admin).await.expect(200);
    assert_eq!(list, json!([]), "no DHCP service here, nothing seen");
    let user = ctx.user("bob", "p-boot").await;
    ctx.get("/api/v1/boot/unknown-macs", &user).await.error(403, "forbidden");
}

#[tokio::test]
async fn the_api_listener_serves_no_boot_or_agent_endpoint() {
    let ctx = boot_context().await;
    std::fs::create_dir_all(ctx.dir.path().join("ramdisk")).unwrap();
    std::fs::write(ctx.dir.path().join("ramdisk/vmlinuz"), b"kernel").unwrap();
    let register = json!({"token": "ferrum_x", "node": "boot-1", "protocol": 1, "agent_version": "test"});
    for (method, path, body) in [
        (reqwest::Method::GET, format!("/boot/ipxe?mac={MAC}"), None),
        (reqwest::Method::GET, "/boot/files/vmlinuz".to_owned(), None),
        (reqwest::Method::GET, "/images/tiny.raw".to_owned(), None),
        (reqwest::Method::POST, "/agent/v1/register".to_owned(), Some(&register)),
        (reqwest::Method::GET, "/agent/v1/command".to_owned(), None),
    ] {
        let msg = ctx.request(method, &path, None, body).await.error(404, "not_found");
        assert!(msg.contains("no endpoint"), "{path}: {msg}");
    }
    // ... and the boot listener none of the API.
    ctx.boot_request(reqwest::Method::GET, "/api/v1/nodes", Some(&ctx.admin), None).await.error(404, "not_found");
    let (status, text) = script(&ctx, MAC).await;
    assert_eq!(status, 200, "{text}");
}

#[tokio::test]
async fn a_script_is_answered_only_at_the_nodes_address() {
    let ctx = boot_context().await;
    ctx.put("/api/v1/nodes/boot-1/boot-target", &ctx.admin, json!({"target": "ramdisk"})).await.expect(200);
    // Knowing the MAC (any user can list them) is not enough.
    let (status, text) = script_from(&ctx, OTHER_IP, MAC).await;
    assert_eq!(status, 403, "{text}");
    assert!(!text.contains("ferrum.token"), "{text}");
    let error: Value = serde_json::from_str(&text).expect("a JSON error");
    assert_eq!(error["error"]["code"], "forbidden", "{text}");
    let (status, text) = script(&ctx, MAC).await;
    assert_eq!(status, 200, "{text}");
}

#[tokio::test]
async fn fetching_the_script_again_keeps_recent_tokens_and_registration_is_bound_to_the_address() {
    let ctx = boot_context().await;
    ctx.put("/api/v1/nodes/boot-1/boot-target", &ctx.admin, json!({"target": "ramdisk"})).await.expect(200);
    let (_, first) = script(&ctx, MAC).await;
    ctx.advance(chrono::Duration::seconds(1));
    let (_, second) = script(&ctx, MAC).await;
    let (t1, t2) = (token_of(&first).to_owned(), token_of(&second).to_owned());

    // From another address, the node's token is refused (and not used up).
    let (status, body) = register_from(&ctx, OTHER_IP, "boot-1", &t1).await;
    assert_eq!(status, 401, "{body}");
    // The second fetch did not void the first token.
    let (status, body) = register_from(&ctx, NODE_IP, "boot-1", &t1).await;
    assert_eq!(status, 200, "{body}");
    let session = body["session"].as_str().expect("a session").to_owned();
    // Fetching scripts again does not end the session of an agent at work.
    // (A second apart: within one second the oldest is not defined.)
    for _ in 0..6 {
        ctx.advance(chrono::Duration::seconds(1));
        assert_eq!(script(&ctx, MAC).await.0, 200);
    }
    let idle = ctx.boot_request(reqwest::Method::GET, "/agent/v1/command?wait_ms=0", Some(&session), None).await.expect(200);
    assert_eq!(idle["action"]["kind"], "wait", "{idle}");
    // Live tokens are bounded: the oldest unused one is gone.
    let (status, body) = register_from(&ctx, NODE_IP, "boot-1", &t2).await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test]
async fn a_node_without_an_address_binds_its_token_to_the_fetcher() {
    let ctx = boot_context().await;
    let body = json!({"name": "boot-2", "site": "lab", "cluster": "vm", "macs": ["02:00:00:00:0b:02"]});
    ctx.post("/api/v1/nodes", &ctx.admin, body).await.expect(201);
    ctx.put("/api/v1/nodes/boot-2/boot-target", &ctx.admin, json!({"target": "ramdisk"})).await.expect(200);
    let (status, text) = script_from(&ctx, OTHER_IP, "02:00:00:00:0b:02").await;
    assert_eq!(status, 200, "{text}");
    let token = token_of(&text);
    assert_eq!(register_from(&ctx, NODE_IP, "boot-2", token).await.0, 401, "registration from another address");
    let (status, body) = register_from(&ctx, OTHER_IP, "boot-2", token).await;
    assert_eq!(status, 200, "{body}");
}

fn environment(name: &str, visibility: &str) -> Value {
    json!({"name": name, "version": 1, "description": "test image", "image": format!("{name}.raw"),
        "format": "raw", "sha256": "ab".repeat(32), "size": 6, "root_partition": 1, "visibility": visibility})
}

#[tokio::test]
async fn a_private_image_is_served_only_to_the_agent_that_writes_it() {
    let ctx = boot_context().await;
    let images = ctx.dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::write(images.join("open.raw"), b"public").unwrap();
    std::fs::write(images.join("secret.raw"), b"secret").unwrap();
    let alice = ctx.user("alice", "p-img").await;
    ctx.post("/api/v1/environments", &ctx.admin, environment("open", "public")).await.expect(201);
    ctx.post("/api/v1/environments", &alice, environment("secret", "user")).await.expect(201);
    let get = async |path: &str, session: Option<&str>| {
        let mut req = client_from(OTHER_IP).get(format!("{}{path}", ctx.boot_url));
        if let Some(s) = session {
            req = req.bearer_auth(s);
        }
        let resp = req.send().await.expect("sent");
        (resp.status().as_u16(), resp.bytes().await.expect("body").to_vec())
    };

    // A public environment's image: to anyone on the provisioning network.
    assert_eq!(get("/images/open.raw", None).await, (200, b"public".to_vec()));
    // A private one: not without an agent session, nor with a user's token.
    assert_eq!(get("/images/secret.raw", None).await.0, 403);
    assert_eq!(get("/images/secret.raw", Some(&alice)).await.0, 401);
    assert_eq!(get("/images/secret.raw", Some(&ctx.admin)).await.0, 401);

    // An agent session of a node whose current commands do not name it.
    ctx.put("/api/v1/nodes/boot-1/boot-target", &ctx.admin, json!({"target": "ramdisk"})).await.expect(200);
    let (_, text) = script(&ctx, MAC).await;
    let (_, session) = register_from(&ctx, NODE_IP, "boot-1", token_of(&text)).await;
    let session = session["session"].as_str().expect("a session").to_owned();
    assert_eq!(get("/images/secret.raw", Some(&session)).await.0, 403);
    let write = |image: &str| {
        json!({"kind": "write_image", "url": format!("http://10.10.0.1:8750/images/{image}"), "format": "raw",
            "sha256": "ab".repeat(32), "size": 6, "device": "/dev/vda"})
    };
    ctx.post("/api/v1/nodes/boot-1/agent-commands", &ctx.admin, write("open.raw")).await.expect(201);
    assert_eq!(get("/images/secret.raw", Some(&session)).await.0, 403, "a write of another image");

    // Its queued write command names it: served, with ranges.
    ctx.post("/api/v1/nodes/boot-1/agent-commands", &ctx.admin, write("secret.raw")).await.expect(201);
    assert_eq!(get("/images/secret.raw", Some(&session)).await, (200, b"secret".to_vec()));
    let resp = client_from(NODE_IP)
        .get(format!("{}/images/secret.raw", ctx.boot_url))
        .bearer_auth(&session)
        .header("Range", "bytes=1-2")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"ec");
    // Traversal stays out of the directory (the client already folds `%2e%2e`).
    assert_eq!(get("/images/%2e%2e/admin.token", Some(&session)).await.0, 404);
}

#[tokio::test]
async fn the_boot_host_table_is_for_boot_service_tokens_and_admins() {
    let ctx = boot_context().await;
    let user = ctx.user("bob", "p-boot").await;
    ctx.post("/api/v1/boot/tokens", &user, json!({})).await.error(403, "forbidden");
    let created = ctx.post("/api/v1/boot/tokens", &ctx.admin, json!({})).await.expect(201);
    let boot = created["token"].as_str().expect("a token").to_owned();

    ctx.get("/api/v1/boot/hosts", &user).await.error(403, "forbidden");
    ctx.request(reqwest::Method::GET, "/api/v1/boot/hosts", None, None).await.error(401, "unauthorized");
    ctx.get("/api/v1/boot/hosts", "fboot_nope").await.error(401, "unauthorized");
    let table = ctx.get("/api/v1/boot/hosts", &boot).await.expect(200);
    assert_eq!(table, json!([{"mac": MAC, "name": "boot-1", "ip": NODE_IP.to_string()}]));
    assert_eq!(ctx.get("/api/v1/boot/hosts", &ctx.admin).await.expect(200), table);
    // A boot-service token reads that table and nothing else.
    ctx.get("/api/v1/nodes", &boot).await.error(401, "unauthorized");
    ctx.get("/api/v1/users/me", &boot).await.error(401, "unauthorized");
    let shown = ctx.get("/api/v1/audit", &ctx.admin).await.expect(200).to_string();
    assert!(shown.contains("boot.token") && !shown.contains(&boot), "audited, token never shown: {shown}");
}
