//! The environment catalog: validation naming the field, who may publish,
//! who sees what, versions, and where agents fetch images.

use serde_json::{Value, json};

use super::harness::TestContext;

fn descriptor(name: &str, version: u64, visibility: &str) -> Value {
    json!({"name": name, "version": version, "description": "test image", "image": format!("{name}/{name}-{version}.raw.zst"),
        "format": "raw.zst", "sha256": "ab".repeat(32), "size": 50_331_648u64, "root_partition": 1, "visibility": visibility})
}

#[tokio::test]
async fn catalog_visibility_versions_and_errors() {
    let mut config = ferrum_controller::config::Config::default();
    config.boot.public_url = Some("http://10.10.0.1:8750/".into());
    let ctx = TestContext::empty_configured(config, std::sync::Arc::new(ferrum_controller::app::conductor::SimConductor)).await;
    let alice = ctx.user("alice", "p-vision").await;
    let bob = ctx.user("bob", "p-vision").await;
    let carol = ctx.user("carol", "p-other").await;

    // Admins publish; users may not.
    let env = ctx.post("/api/v1/environments", &ctx.admin, descriptor("tiny", 1, "public")).await.expect(201);
    assert_eq!(env["image_url"], "http://10.10.0.1:8750/images/tiny/tiny-1.raw.zst");
    assert_eq!((env["owner"].as_str(), env["boot"].as_str(), env["arch"].as_str()), (Some("admin"), Some("local"), Some("x86_64")));
    ctx.post("/api/v1/environments", &alice, descriptor("mine", 1, "public")).await.error(403, "forbidden");
    ctx.post("/api/v1/environments", &ctx.admin, descriptor("tiny", 2, "public")).await.expect(201);
    ctx.post("/api/v1/environments", &ctx.admin, descriptor("tiny", 2, "public")).await.error(409, "conflict");

    // A project environment is seen by the owner's project, a user one by its owner.
    let mut remote = descriptor("cuda", 7, "project");
    remote["image"] = json!("https://images.example.org/cuda-7.raw.zst");
    let env = ctx.post("/api/v1/environments", &alice, remote).await.expect(201);
    assert_eq!(env["image_url"], "https://images.example.org/cuda-7.raw.zst");
    ctx.post("/api/v1/environments", &alice, descriptor("scratch", 1, "user")).await.expect(201);
    let names = |list: Value| -> Vec<String> {
        list.as_array().unwrap().iter().map(|e| format!("{}@{}", e["name"].as_str().unwrap(), e["version"])).collect()
    };
    assert_eq!(names(ctx.get("/api/v1/environments", &alice).await.expect(200)), ["cuda@7", "scratch@1", "tiny@2", "tiny@1"]);
    assert_eq!(names(ctx.get("/api/v1/environments", &bob).await.expect(200)), ["cuda@7", "tiny@2", "tiny@1"]);
    assert_eq!(names(ctx.get("/api/v1/environments", &carol).await.expect(200)), ["tiny@2", "tiny@1"]);
    ctx.get("/api/v1/environments/cuda", &carol).await.error(404, "not_found");

    // Newest version by default, or the one asked for.
    assert_eq!(ctx.get("/api/v1/environments/tiny", &carol).await.expect(200)["version"], 2);
    assert_eq!(ctx.get("/api/v1/environments/tiny?version=1", &carol).await.expect(200)["version"], 1);
    ctx.get("/api/v1/environments/tiny?version=9", &carol).await.error(404, "not_found");

    // Bad descriptors: a 400 naming the field, nothing stored.
    for (field, value) in
        [("sha256", json!("xyz")), ("image", json!("../../etc/shadow")), ("root_partition", json!(0)), ("name", json!("Bad Name"))]
    {
        let mut d = descriptor("broken", 1, "user");
        d[field] = value;
        let msg = ctx.post("/api/v1/environments", &alice, d).await.error(400, "bad_request");
        assert!(msg.starts_with(&format!("{field}:")), "{msg}");
    }
    let mut d = descriptor("broken", 1, "user");
    d["format"] = json!("qcow2");
    let msg = ctx.post("/api/v1/environments", &alice, d).await.error(400, "bad_request");
    assert!(msg.contains("format"), "{msg}");
    assert!(!names(ctx.get("/api/v1/environments", &ctx.admin).await.expect(200)).iter().any(|n| n.starts_with("broken")));
}

/// Issue 17, findings 1, 6 and 8: names are per owner. A user's version of
/// a public name is his alone: an admin's lookup keeps the public one
/// (another user's private version only when named `OWNER/NAME`); a clash
/// can only be with one's own; free text has limits.
#[tokio::test]
async fn names_are_per_owner_and_cannot_be_hijacked() {
    let ctx = TestContext::empty_configured(
        ferrum_controller::config::Config::default(),
        std::sync::Arc::new(ferrum_controller::app::conductor::SimConductor),
    )
    .await;
    let alice = ctx.user("alice", "p-vision").await;
    let bob = ctx.user("bob", "p-other").await;
    let public = ctx.post("/api/v1/environments", &ctx.admin, descriptor("tiny", 1, "public")).await.expect(201);
    let mut hijack = descriptor("tiny", 2, "user");
    hijack["sha256"] = json!("cd".repeat(32));
    let own = ctx.post("/api/v1/environments", &alice, hijack).await.expect(201);
    assert_ne!(public["id"], own["id"]);

    // Unqualified: one's own first, else the public one.
    let shown = |v: Value| (v["owner"].as_str().map(str::to_owned), v["version"].as_u64(), v["id"].as_i64());
    let admins = (Some("admin".to_owned()), Some(1), public["id"].as_i64());
    let alices = (Some("alice".to_owned()), Some(2), own["id"].as_i64());
    assert_eq!(shown(ctx.get("/api/v1/environments/tiny", &ctx.admin).await.expect(200)), admins);
    assert_eq!(shown(ctx.get("/api/v1/environments/tiny", &bob).await.expect(200)), admins);
    assert_eq!(shown(ctx.get("/api/v1/environments/tiny", &alice).await.expect(200)), alices);
    assert_eq!(shown(ctx.get("/api/v1/environments/tiny?version=1", &alice).await.expect(200)), admins);
    ctx.get("/api/v1/environments/tiny?version=2", &ctx.admin).await.error(404, "not_found");
    // Qualified: the admin may name alice's; bob may not see it.
    assert_eq!(shown(ctx.get("/api/v1/environments/tiny?owner=alice", &ctx.admin).await.expect(200)), alices);
    assert_eq!(shown(ctx.get("/api/v1/environments/alice%2Ftiny", &ctx.admin).await.expect(200)), alices);
    assert_eq!(shown(ctx.get("/api/v1/environments/admin%2Ftiny", &alice).await.expect(200)), admins);
    ctx.get("/api/v1/environments/tiny?owner=alice", &bob).await.error(404, "not_found");
    ctx.get("/api/v1/environments/alice%2Ftiny?owner=bob", &ctx.admin).await.error(400, "bad_request");

    // Finding 6: bob's private name is no obstacle to alice and is not
    // revealed; a clash is with one's own version only.
    ctx.post("/api/v1/environments", &bob, descriptor("secret", 1, "user")).await.expect(201);
    ctx.post("/api/v1/environments", &alice, descriptor("secret", 1, "user")).await.expect(201);
    let msg = ctx.post("/api/v1/environments", &alice, descriptor("secret", 1, "user")).await.error(409, "conflict");
    assert!(msg.contains("you already have 'secret' version 1"), "{msg}");
    assert!(!msg.contains("bob"), "{msg}");
    assert_eq!(ctx.get("/api/v1/environments/secret", &alice).await.expect(200)["owner"], "alice");

    // Free text has limits, named.
    let cases = [
        ("description", json!("x".repeat(1001))),
        ("description", json!("x".repeat(100_000))),
        ("description", json!("bell\u{7}")),
        ("description", json!("evil\u{202e}txt")),
        ("image", json!(format!("https://images.example.org/{}", "a".repeat(2048)))),
        ("image", json!("tiny/a\nb.raw.zst")),
    ];
    for (field, value) in cases {
        let mut d = descriptor("limits", 1, "user");
        d[field] = value;
        let msg = ctx.post("/api/v1/environments", &alice, d).await.error(400, "bad_request");
        assert!(msg.starts_with(&format!("{field}:")), "{msg}");
    }
    let mut d = descriptor("limits", 1, "user");
    d["description"] = json!(format!("{}\nsecond line\tand a tab", "é".repeat(900)));
    ctx.post("/api/v1/environments", &alice, d).await.expect(201);
}
