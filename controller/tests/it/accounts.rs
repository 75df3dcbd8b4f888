//! Authorisation: tokens, roles, projects; users see and act only on their
//! own leases.

use serde_json::json;

use super::harness::TestContext;

#[tokio::test]
async fn users_see_and_touch_only_their_own_leases() {
    let ctx = TestContext::with_fixtures().await;
    let alice = ctx.user("alice", "p-vision").await;
    let bob = ctx.user("bob", "p-other").await;
    let l = ctx.post("/api/v1/leases", &alice, json!({"nodes": {"count": 1}, "duration": "2h"})).await.expect(201);
    let path = format!("/api/v1/leases/{}", l["id"]);

    ctx.get(&path, &bob).await.error(404, "not_found");
    ctx.delete(&path, &bob).await.error(404, "not_found");
    ctx.patch(&path, &bob, json!({"end": "2026-11-23T20:00:00Z"})).await.error(404, "not_found");
    assert_eq!(ctx.get("/api/v1/leases", &bob).await.expect(200), json!([]));
    assert_eq!(ctx.get("/api/v1/leases", &alice).await.expect(200).as_array().map(Vec::len), Some(1));
    assert_eq!(ctx.get("/api/v1/leases", &ctx.admin).await.expect(200).as_array().map(Vec::len), Some(1), "admins see every lease");
    assert_eq!(ctx.get(&path, &alice).await.expect(200)["owner"], "alice");
    ctx.delete(&path, &ctx.admin).await.expect(200);
}

#[tokio::test]
async fn tokens_and_roles() {
    let ctx = TestContext::with_fixtures().await;
    ctx.request(reqwest::Method::GET, "/api/v1/nodes", None, None).await.error(401, "unauthorized");
    ctx.get("/api/v1/nodes", "ferrum_0000").await.error(401, "unauthorized");

    let alice = ctx.user("alice", "p-vision").await;
    let me = ctx.get("/api/v1/users/me", &alice).await.expect(200);
    assert_eq!((me["name"].as_str(), me["role"].as_str()), (Some("alice"), Some("user")));
    assert_eq!(me["projects"], json!(["p-vision"]));
    ctx.get("/api/v1/users", &alice).await.error(403, "forbidden");
    ctx.post("/api/v1/projects", &alice, json!({"name": "mine"})).await.error(403, "forbidden");
    ctx.post("/api/v1/users/admin/tokens", &alice, json!({})).await.error(403, "forbidden");

    // A second token for oneself works, and is different.
    let t2 = ctx.post("/api/v1/users/alice/tokens", &alice, json!({})).await.expect(201)["token"].as_str().expect("token").to_owned();
    assert_ne!(t2, alice);
    assert_eq!(ctx.get("/api/v1/users/me", &t2).await.expect(200)["name"], "alice");

    // Users must name a project when they have several; one with none may not book.
    ctx.post("/api/v1/projects", &ctx.admin, json!({"name": "p-two"})).await.expect(201);
    let carol = ctx
        .post("/api/v1/users", &ctx.admin, json!({"name": "carol", "projects": ["p-vision", "p-two"], "email": "carol@example.org"}))
        .await
        .expect(201)["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let msg = ctx.post("/api/v1/leases", &carol, json!({"nodes": {"count": 1}, "duration": "1h"})).await.error(400, "bad_request");
    assert!(msg.contains("p-two, p-vision"), "{msg}");
    ctx.post("/api/v1/leases", &carol, json!({"project": "p-two", "nodes": {"count": 1}, "duration": "1h"})).await.expect(201);
    let dave =
        ctx.post("/api/v1/users", &ctx.admin, json!({"name": "dave"})).await.expect(201)["token"].as_str().expect("token").to_owned();
    ctx.post("/api/v1/leases", &dave, json!({"nodes": {"count": 1}, "duration": "1h"})).await.error(403, "forbidden");
    // An admin lease without a project is an operator lease.
    let op = ctx.post("/api/v1/leases", &ctx.admin, json!({"nodes": {"count": 1}, "duration": "1h"})).await.expect(201);
    assert!(op.get("project").is_none(), "{op}");

    ctx.post("/api/v1/users", &ctx.admin, json!({"name": "erin", "projects": ["nope"]})).await.error(400, "bad_request");
    ctx.post("/api/v1/users", &ctx.admin, json!({"name": "alice"})).await.error(409, "conflict");
}

#[tokio::test]
async fn admin_token_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let ctx = TestContext::empty().await;
    let meta = std::fs::metadata(ctx.dir.path().join("admin.token")).expect("admin.token");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(ctx.get("/api/v1/users/me", &ctx.admin).await.expect(200)["role"], "admin");
}
