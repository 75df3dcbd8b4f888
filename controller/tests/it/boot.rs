//! The HTTP boot endpoints: per-MAC iPXE scripts following the node's boot
//! target, one-time agent tokens, and the ramdisk files with Range support.

use ferrum_controller::config::Config;
use serde_json::json;

use super::harness::TestContext;

const MAC: &str = "02:00:00:00:0b:01";

async fn boot_context() -> TestContext {
    let mut config = Config::default();
    config.boot.public_url = Some("http://10.10.0.1:8750/".into());
    config.boot.cmdline = "console=ttyS0".into();
    let ctx = TestContext::empty_configured(config, std::sync::Arc::new(ferrum_controller::app::conductor::SimConductor)).await;
    let body = json!({"name": "boot-1", "site": "lab", "cluster": "vm", "macs": [MAC], "ip": "10.10.0.11"});
    ctx.post("/api/v1/nodes", &ctx.admin, body).await.expect(201);
    ctx
}

async fn script(ctx: &TestContext, mac: &str) -> (u16, String) {
    let resp = ctx.client.get(format!("{}/boot/ipxe?mac={mac}", ctx.url)).send().await.expect("request sent");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body read"))
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
    let answer = ctx.request(reqwest::Method::GET, "/boot/ipxe?mac=not-a-mac", None, None).await;
    let msg = answer.error(400, "bad_request");
    assert!(msg.starts_with("mac: "), "{msg}");
    let msg = ctx.request(reqwest::Method::GET, "/boot/ipxe", None, None).await.error(400, "bad_request");
    assert!(msg.contains("mac"), "{msg}");
}

#[tokio::test]
async fn ramdisk_files_are_served_with_ranges_and_nothing_else() {
    let ctx = boot_context().await;
    let dir = ctx.dir.path().join("ramdisk");
    std::fs::create_dir_all(&dir).unwrap();
    let kernel: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    std::fs::write(dir.join("vmlinuz"), &kernel).unwrap();

    let resp = ctx.client.get(format!("{}/boot/files/vmlinuz", ctx.url)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), kernel.as_slice());

    let resp = ctx.client.get(format!("{}/boot/files/vmlinuz", ctx.url)).header("Range", "bytes=1000-1099").send().await.unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.headers()["content-range"], "bytes 1000-1099/100000");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &kernel[1000..1100]);

    // The data directory around the ramdisk is not reachable.
    for path in ["/boot/files/../admin.token", "/boot/files/%2e%2e/admin.token", "/boot/files/missing"] {
        let resp = ctx.client.get(format!("{}{path}", ctx.url)).send().await.unwrap();
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
