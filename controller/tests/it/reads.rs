//! The read caches (`app::reads`) never answer with something older than
//! the last commit: every read below follows a write that changed its
//! answer, after the same read was made (and, on SQLite, cached) before.

use chrono::Duration;
use serde_json::json;

use super::harness::{TestContext, at};

#[tokio::test]
async fn a_cached_node_lease_or_token_never_outlives_a_commit() {
    let ctx = TestContext::with_fixtures().await;
    let tom = ctx.user("tom", "p-team").await;

    // A node, read twice (the second from the cache), then put in
    // maintenance: the next read shows it. A user's view never carries the
    // BMC an admin's does, even when the admin's view was cached first.
    for _ in 0..2 {
        let node = ctx.get("/api/v1/nodes/chifflot-1", &tom).await.expect(200);
        assert_eq!(node["state"].as_str(), Some("available"));
    }
    ctx.get("/api/v1/nodes/chifflot-1", &ctx.admin).await.expect(200);
    ctx.post("/api/v1/nodes/chifflot-1/maintenance", &ctx.admin, json!({"enabled": true, "reason": "fan"})).await.expect(200);
    let node = ctx.get("/api/v1/nodes/chifflot-1", &tom).await.expect(200);
    assert_eq!(node["state"].as_str(), Some("maintenance"));
    assert!(node.get("bmc").is_none_or(serde_json::Value::is_null), "a user's view shows no BMC: {node}");

    // A lease, read twice, then released: the next read shows it over.
    let lease = ctx
        .post("/api/v1/leases", &tom, json!({"nodes": {"count": 1}, "duration": "1h", "start": at(Duration::hours(2))}))
        .await
        .expect(201);
    let path = format!("/api/v1/leases/{}", lease["id"]);
    for _ in 0..2 {
        assert_eq!(ctx.get(&path, &tom).await.expect(200)["state"], lease["state"]);
    }
    ctx.delete(&path, &tom).await.expect(200);
    let over = ctx.get(&path, &tom).await.expect(200);
    assert_ne!(over["state"], lease["state"], "{over}");

    // A token's projects, used twice, then tom leaves the project: his
    // next request no longer acts for it.
    for _ in 0..2 {
        ctx.get("/api/v1/projects/p-team/quota", &tom).await.expect(200);
    }
    ctx.delete("/api/v1/projects/p-team/members/tom", &ctx.admin).await.expect(200);
    ctx.get("/api/v1/projects/p-team/quota", &tom).await.error(403, "forbidden");
}
