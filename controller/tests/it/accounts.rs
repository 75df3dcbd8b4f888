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

fn token_of(answer: &serde_json::Value) -> String {
    answer["token"].as_str().expect("token").to_owned()
}

#[tokio::test]
async fn tokens_are_named_listed_expire_and_are_revoked() {
    let ctx = TestContext::with_fixtures().await;
    let alice = ctx.user("alice", "p-vision").await;
    let bob = ctx.user("bob", "p-other").await;

    let laptop = ctx.post("/api/v1/users/alice/tokens", &alice, json!({"name": "laptop", "expires_in": "1h"})).await.expect(201);
    assert_eq!((laptop["name"].as_str(), laptop["read_only"].as_bool()), (Some("laptop"), Some(false)));
    assert_eq!(laptop["expires_at"], "2026-11-23T09:00:00Z", "{laptop}");
    let laptop_token = token_of(&laptop);
    let ci = ctx.post("/api/v1/users/alice/tokens", &alice, json!({"name": "ci"})).await.expect(201);
    let ci_token = token_of(&ci);

    // Listed by their owner and admins, never with their secrets.
    let listed = ctx.get("/api/v1/users/alice/tokens", &alice).await.expect(200);
    let names: Vec<_> = listed.as_array().expect("array").iter().map(|t| t["name"].as_str().map(str::to_owned)).collect();
    assert_eq!(names, [None, Some("laptop".to_owned()), Some("ci".to_owned())], "{listed}");
    assert_eq!(listed[1]["expired"], false);
    for secret in [&alice, &laptop_token, &ci_token] {
        assert!(!listed.to_string().contains(secret.as_str()), "no secret in the listing");
    }
    ctx.get("/api/v1/users/alice/tokens", &bob).await.error(403, "forbidden");
    ctx.delete(&format!("/api/v1/users/alice/tokens/{}", ci["id"]), &bob).await.error(403, "forbidden");
    assert_eq!(ctx.get("/api/v1/users/alice/tokens", &ctx.admin).await.expect(200), listed);

    // Expired: refused, still listed as expired.
    assert_eq!(ctx.get("/api/v1/users/me", &laptop_token).await.expect(200)["name"], "alice");
    ctx.advance(chrono::Duration::hours(1));
    ctx.get("/api/v1/users/me", &laptop_token).await.error(401, "unauthorized");
    assert_eq!(ctx.get("/api/v1/users/alice/tokens", &alice).await.expect(200)[1]["expired"], true);

    // Revoked: refused at once (the token cache included), gone from the list.
    assert_eq!(ctx.get("/api/v1/users/me", &ci_token).await.expect(200)["name"], "alice");
    let revoke = format!("/api/v1/users/alice/tokens/{}", ci["id"]);
    assert_eq!(ctx.delete(&revoke, &alice).await.expect(200)["name"], "ci");
    ctx.get("/api/v1/users/me", &ci_token).await.error(401, "unauthorized");
    ctx.delete(&revoke, &alice).await.error(404, "not_found");
    assert_eq!(ctx.get("/api/v1/users/alice/tokens", &alice).await.expect(200).as_array().map(Vec::len), Some(2));
    // Bob cannot revoke alice's token through his own name either.
    ctx.delete(&format!("/api/v1/users/bob/tokens/{}", laptop["id"]), &bob).await.error(404, "not_found");

    let audit = ctx.get("/api/v1/audit?action=token.revoke", &ctx.admin).await.expect(200);
    assert_eq!((audit[0]["actor"].as_str(), audit[0]["target"].as_str()), (Some("alice"), Some("user/alice")));
    let bad = ctx.post("/api/v1/users/alice/tokens", &alice, json!({"expires_in": "soon"})).await.error(400, "bad_request");
    assert!(bad.starts_with("expires_in:"), "{bad}");
    let bad = ctx.post("/api/v1/users/alice/tokens", &alice, json!({"name": "evil\u{202E}txt"})).await.error(400, "bad_request");
    assert!(bad.starts_with("name:"), "{bad}");
}

#[tokio::test]
async fn read_only_tokens_only_read() {
    let ctx = TestContext::with_fixtures().await;
    let alice = ctx.user("alice", "p-vision").await;
    let reader = token_of(&ctx.post("/api/v1/users/alice/tokens", &alice, json!({"read_only": true})).await.expect(201));
    assert_eq!(ctx.get("/api/v1/users/me", &reader).await.expect(200)["name"], "alice");
    ctx.get("/api/v1/nodes", &reader).await.expect(200);
    let why = ctx.post("/api/v1/leases", &reader, json!({"nodes": {"count": 1}, "duration": "1h"})).await.error(403, "forbidden");
    assert!(why.contains("read-only"), "{why}");
    ctx.post("/api/v1/users/alice/tokens", &reader, json!({})).await.error(403, "forbidden");
    assert_eq!(ctx.get("/api/v1/leases", &alice).await.expect(200), json!([]), "nothing booked");
    let listed = ctx.get("/api/v1/users/alice/tokens", &alice).await.expect(200);
    assert_eq!(listed[1]["read_only"], true);
}

#[tokio::test]
async fn live_tokens_per_user_are_capped() {
    use ferrum_controller::config::{AccountsConfig, Config};
    let config = Config { accounts: AccountsConfig { max_tokens_per_user: 3 }, ..Config::default() };
    let ctx = TestContext::empty_configured(config, std::sync::Arc::new(ferrum_controller::app::conductor::SimConductor)).await;
    let alice = ctx.user("alice", "p-vision").await;
    // No body at all, as before tokens had options.
    let first = ctx.request(reqwest::Method::POST, "/api/v1/users/alice/tokens", Some(alice.as_str()), None).await.expect(201);
    ctx.post("/api/v1/users/alice/tokens", &alice, json!({"expires_in": "1h"})).await.expect(201);
    let refused = ctx.post("/api/v1/users/alice/tokens", &alice, json!({})).await.error(409, "conflict");
    assert!(refused.contains("3 live tokens") && refused.contains("max_tokens_per_user"), "{refused}");
    ctx.post("/api/v1/users/alice/tokens", &ctx.admin, json!({})).await.error(409, "conflict");
    // An expired token no longer counts; nor does a revoked one.
    ctx.advance(chrono::Duration::hours(1));
    ctx.post("/api/v1/users/alice/tokens", &alice, json!({})).await.expect(201);
    ctx.post("/api/v1/users/alice/tokens", &alice, json!({})).await.error(409, "conflict");
    ctx.delete(&format!("/api/v1/users/alice/tokens/{}", first["id"]), &alice).await.expect(200);
    ctx.post("/api/v1/users/alice/tokens", &alice, json!({})).await.expect(201);
}

#[tokio::test]
async fn disabled_users_tokens_stop_and_their_leases_are_released() {
    let ctx = TestContext::with_fixtures().await;
    let alice = ctx.user("alice", "p-vision").await;
    let running = ctx.post("/api/v1/leases", &alice, json!({"nodes": {"count": 1}, "duration": "2h"})).await.expect(201);
    let running = running["id"].as_i64().expect("id");
    ctx.wait_lease_state(running, &alice, "active").await;
    let later = ctx
        .post(
            "/api/v1/leases",
            &alice,
            json!({"nodes": {"count": 1}, "start": super::harness::at(chrono::Duration::days(1)), "duration": "1h"}),
        )
        .await
        .expect(201);
    // Read once: the token is in the read cache now.
    assert_eq!(ctx.get("/api/v1/users/me", &alice).await.expect(200)["name"], "alice");

    ctx.post("/api/v1/users/alice/disable", &alice, json!({"reason": "x"})).await.error(403, "forbidden");
    ctx.post("/api/v1/users/admin/disable", &ctx.admin, json!({"reason": "oops"})).await.error(409, "conflict");
    let bad = ctx.post("/api/v1/users/alice/disable", &ctx.admin, json!({"reason": "a\u{202E}b"})).await.error(400, "bad_request");
    assert!(bad.starts_with("reason:"), "{bad}");
    let user = ctx.post("/api/v1/users/alice/disable", &ctx.admin, json!({"reason": "mining cryptocurrency"})).await.expect(200);
    assert_eq!(user["disabled_reason"], "mining cryptocurrency");

    ctx.get("/api/v1/users/me", &alice).await.error(401, "unauthorized");
    let lease = ctx.get(&format!("/api/v1/leases/{running}"), &ctx.admin).await.expect(200);
    assert!(matches!(lease["state"].as_str(), Some("ending" | "finished")), "{lease}");
    let reason = lease["reason"].as_str().expect("reason");
    assert!(reason.contains("disabled") && reason.contains("mining cryptocurrency"), "{reason}");
    let later = ctx.get(&format!("/api/v1/leases/{}", later["id"]), &ctx.admin).await.expect(200);
    assert_eq!(later["state"], "cancelled", "{later}");
    let audit = ctx.get("/api/v1/audit?action=user.disable", &ctx.admin).await.expect(200);
    assert_eq!(audit[0]["target"], "user/alice");

    // Enabled again: the same token works; ended leases stay ended.
    ctx.post("/api/v1/users/alice/enable", &ctx.admin, json!({})).await.expect(200);
    assert_eq!(ctx.get("/api/v1/users/me", &alice).await.expect(200)["name"], "alice");
    assert!(ctx.get("/api/v1/users/me", &alice).await.expect(200).get("disabled_at").is_none());
}

#[tokio::test]
async fn user_names_are_unique_regardless_of_case() {
    let ctx = TestContext::with_fixtures().await;
    ctx.user("alice", "p-vision").await;
    let clash = ctx.post("/api/v1/users", &ctx.admin, json!({"name": "ALICE", "projects": ["p-vision"]})).await.error(409, "conflict");
    assert!(clash.contains("'alice'"), "{clash}");
    ctx.post("/api/v1/users", &ctx.admin, json!({"name": "Alice2", "projects": ["p-vision"]})).await.expect(201);
}
