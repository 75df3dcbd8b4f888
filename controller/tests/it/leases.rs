//! The reservation calendar over HTTP: placement, conflicts, availability,
//! extension, release, cancellation, pre-emption and the clock loop,
//! including a controller restart in the middle of a lease.

use chrono::Duration;
use serde_json::json;

use ferrum_controller::db::DbError;
use ferrum_controller::model::LeaseId;

use super::harness::{TestContext, at, raw_execute, t0};

fn id(v: &serde_json::Value) -> i64 {
    v["id"].as_i64().expect("lease id")
}

#[tokio::test]
async fn reserve_then_conflict_gives_409_with_the_earliest_start() {
    let ctx = TestContext::with_fixtures().await;
    let alice = ctx.user("alice", "p-vision").await;
    let req = json!({"nodes": {"count": 2, "filter": "gpu_model LIKE '%V100%'"}, "start": at(Duration::hours(1)), "duration": "4h"});
    let lease = ctx.post("/api/v1/leases", &alice, req.clone()).await.expect(201);
    assert_eq!(lease["state"], "pending");
    assert_eq!(lease["nodes"], json!(["chifflot-7", "chifflot-8"]));
    assert_eq!(lease["project"], "p-vision");
    assert_eq!(lease["start"], at(Duration::hours(1)).replace("+00:00", "Z"));

    let conflict = ctx.post("/api/v1/leases", &alice, req).await;
    assert_eq!(conflict.status, 409, "{:?}", conflict.body);
    assert_eq!(conflict.body["error"]["code"], "conflict");
    assert_eq!(conflict.body["error"]["earliest_start"], at(Duration::hours(5)).replace("+00:00", "Z"));

    // As soon as possible: now, on the P100s it cannot take.
    let asap = ctx
        .post("/api/v1/leases", &alice, json!({"nodes": {"count": 2, "filter": "gpu_model LIKE '%V100%'"}, "duration": "30m"}))
        .await
        .expect(201);
    assert_eq!(asap["start"], at(Duration::zero()).replace("+00:00", "Z"), "fits before the first lease");
    let asap2 = ctx
        .post("/api/v1/leases", &alice, json!({"nodes": {"count": 2, "filter": "gpu_model LIKE '%V100%'"}, "duration": "2h"}))
        .await
        .expect(201);
    assert_eq!(asap2["start"], at(Duration::hours(5)).replace("+00:00", "Z"), "first fit after the 4h lease");
}

#[tokio::test]
async fn availability_and_calendar_show_the_gantt() {
    let ctx = TestContext::with_fixtures().await;
    let alice = ctx.user("alice", "p-vision").await;
    let bob = ctx.user("bob", "p-other").await;
    ctx.post("/api/v1/leases", &alice, json!({"nodes": {"names": ["chifflot-7", "chifflot-8"]}, "duration": "3h"})).await.expect(201);

    let a = ctx.get("/api/v1/availability?count=2&duration=1h&filter=gpu_model%20LIKE%20'%25V100%25'&limit=2", &bob).await.expect(200);
    let slots = a["slots"].as_array().expect("slots");
    assert_eq!(slots.len(), 2);
    assert_eq!(slots[0]["start"], at(Duration::hours(3)).replace("+00:00", "Z"));
    assert_eq!(slots[0]["nodes"], json!(["chifflot-7", "chifflot-8"]));
    assert_eq!(slots[1]["start"], at(Duration::hours(4)).replace("+00:00", "Z"));

    let exotic = ctx.get("/api/v1/availability?count=1&duration=1h&filter=accel_type%3D'fpga'", &bob).await;
    assert!(exotic.error(400, "unsatisfiable").contains("not exotic unless allowed"));
    let exotic = ctx.get("/api/v1/availability?count=1&duration=1h&filter=accel_type%3D'fpga'&exotic=true", &bob).await.expect(200);
    assert_eq!(exotic["slots"][0]["nodes"], json!(["servan-1"]));

    let cal = ctx.get("/api/v1/calendar?filter=cluster%3D'chifflot'", &bob).await.expect(200);
    let nodes = cal["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 8);
    let c7 = nodes.iter().find(|n| n["node"] == "chifflot-7").expect("chifflot-7");
    assert_eq!(c7["busy"][0]["end"], at(Duration::hours(3)).replace("+00:00", "Z"));
    assert!(c7["busy"][0].get("owner").is_none(), "bob does not see alice's lease: {c7}");
    let cal = ctx.get("/api/v1/calendar?filter=cluster%3D'chifflot'", &alice).await.expect(200);
    let c7 = cal["nodes"].as_array().expect("nodes").iter().find(|n| n["node"] == "chifflot-7").expect("chifflot-7").clone();
    assert_eq!(c7["busy"][0]["owner"], "alice");
}

#[tokio::test]
async fn exotic_nodes_only_on_request() {
    let ctx = TestContext::with_fixtures().await;
    let alice = ctx.user("alice", "p-vision").await;
    let msg = ctx
        .post("/api/v1/leases", &alice, json!({"nodes": {"count": 1, "filter": "accel_type = 'fpga'"}, "duration": "1h"}))
        .await
        .error(400, "unsatisfiable");
    assert!(msg.contains("only 0"), "{msg}");
    let msg =
        ctx.post("/api/v1/leases", &alice, json!({"nodes": {"names": ["servan-1"]}, "duration": "1h"})).await.error(400, "bad_request");
    assert!(msg.contains("exotic"), "{msg}");
    let l = ctx
        .post("/api/v1/leases", &alice, json!({"nodes": {"count": 2, "filter": "accel_type = 'fpga'"}, "duration": "1h", "exotic": true}))
        .await
        .expect(201);
    assert_eq!(l["nodes"], json!(["servan-1", "servan-2"]));
    // Unfiltered requests never spill onto exotic nodes.
    let l = ctx.post("/api/v1/leases", &alice, json!({"nodes": {"count": 8}, "duration": "1h"})).await.expect(201);
    assert!(l["nodes"].as_array().expect("nodes").iter().all(|n| n.as_str().is_some_and(|s| s.starts_with("chifflot"))));
}

#[tokio::test]
async fn leases_start_and_end_on_time_and_nodes_are_reset() {
    let ctx = TestContext::with_fixtures().await;
    let alice = ctx.user("alice", "p-vision").await;
    let l = ctx
        .post("/api/v1/leases", &alice, json!({"nodes": {"names": ["chifflot-1"]}, "start": at(Duration::hours(1)), "duration": "2h"}))
        .await
        .expect(201);
    let lid = id(&l);
    assert_eq!(ctx.node_state("chifflot-1").await, "available");

    ctx.advance(Duration::hours(1));
    ctx.wait_lease_state(lid, &alice, "active").await;
    assert_eq!(ctx.node_state("chifflot-1").await, "reserved");

    ctx.advance(Duration::hours(2));
    ctx.wait_lease_state(lid, &alice, "finished").await;
    assert_eq!(ctx.node_state("chifflot-1").await, "available");
    let events = ctx.get("/api/v1/nodes/chifflot-1/events", &alice).await.expect(200);
    let path: Vec<String> = events
        .as_array()
        .expect("events")
        .iter()
        .map(|e| format!("{}>{}", e["from"].as_str().unwrap_or(""), e["to"].as_str().unwrap_or("")))
        .collect();
    assert!(path.ends_with(&["available>reserved".into(), "reserved>resetting".into(), "resetting>available".into()]), "{path:?}");
}

#[tokio::test]
async fn back_to_back_leases_get_a_reset_in_between() {
    let ctx = TestContext::with_fixtures().await;
    let alice = ctx.user("alice", "p-vision").await;
    let bob = ctx.user("bob", "p-other").await;
    let a = id(&ctx.post("/api/v1/leases", &alice, json!({"nodes": {"names": ["chifflot-2"]}, "duration": "1h"})).await.expect(201));
    let b = id(&ctx
        .post("/api/v1/leases", &bob, json!({"nodes": {"names": ["chifflot-2"]}, "start": at(Duration::hours(1)), "duration": "1h"}))
        .await
        .expect(201));
    ctx.wait_lease_state(a, &alice, "active").await;
    ctx.advance(Duration::hours(1));
    ctx.wait_lease_state(b, &bob, "active").await;
    ctx.wait_lease_state(a, &alice, "finished").await;
    let events = ctx.get("/api/v1/nodes/chifflot-2/events", &bob).await.expect(200);
    let resets = events.as_array().expect("events").iter().filter(|e| e["to"] == "resetting").count();
    assert_eq!(resets, 1, "the node was reset between alice and bob: {events}");
}

#[tokio::test]
async fn restart_mid_lease_keeps_every_lease_and_ends_it_on_time() {
    let ctx = TestContext::with_fixtures().await;
    let alice = ctx.user("alice", "p-vision").await;
    let running = id(&ctx
        .post("/api/v1/leases", &alice, json!({"nodes": {"count": 3, "filter": "cluster = 'chifflot'"}, "duration": "2h"}))
        .await
        .expect(201));
    let future = id(&ctx
        .post(
            "/api/v1/leases",
            &alice,
            json!({"nodes": {"count": 2, "filter": "cluster = 'chifflot'"}, "start": at(Duration::hours(3)), "duration": "1h"}),
        )
        .await
        .expect(201));
    ctx.wait_lease_state(running, &alice, "active").await;
    ctx.advance(Duration::hours(1));

    let ctx = ctx.restart().await;
    let l = ctx.wait_lease_state(running, &alice, "active").await;
    assert_eq!(l["nodes"].as_array().expect("nodes").len(), 3);
    assert_eq!(ctx.lease(future, &alice).await["state"], "pending");
    // The restarted calendar still knows the running lease's nodes are taken.
    let c = ctx
        .post(
            "/api/v1/leases",
            &alice,
            json!({"nodes": {"count": 8, "filter": "cluster = 'chifflot'"}, "start": at(Duration::hours(1)), "duration": "30m"}),
        )
        .await;
    assert_eq!(c.body["error"]["earliest_start"], at(Duration::hours(2)).replace("+00:00", "Z"), "{:?}", c.body);

    ctx.advance(Duration::hours(1));
    ctx.wait_lease_state(running, &alice, "finished").await;
    ctx.advance(Duration::hours(1));
    ctx.wait_lease_state(future, &alice, "active").await;
    ctx.advance(Duration::hours(1));
    ctx.wait_lease_state(future, &alice, "finished").await;
    ctx.wait_nodes_available(10).await;
}

#[tokio::test]
async fn extend_release_and_cancel() {
    let ctx = TestContext::with_fixtures().await;
    let alice = ctx.user("alice", "p-vision").await;
    let l = id(&ctx.post("/api/v1/leases", &alice, json!({"nodes": {"names": ["chifflot-3"]}, "duration": "1h"})).await.expect(201));
    let next = id(&ctx
        .post("/api/v1/leases", &alice, json!({"nodes": {"names": ["chifflot-3"]}, "start": at(Duration::hours(3)), "duration": "1h"}))
        .await
        .expect(201));

    let extended = ctx.patch(&format!("/api/v1/leases/{l}"), &alice, json!({"end": at(Duration::hours(2))})).await.expect(200);
    assert_eq!(extended["end"], at(Duration::hours(2)).replace("+00:00", "Z"));
    let msg = ctx.patch(&format!("/api/v1/leases/{l}"), &alice, json!({"end": at(Duration::hours(4))})).await.error(409, "conflict");
    assert!(msg.contains(&format!("latest possible end is {}", at(Duration::hours(3)))), "{msg}");
    let msg = ctx.patch(&format!("/api/v1/leases/{l}"), &alice, json!({"end": at(Duration::hours(1))})).await.error(400, "bad_request");
    assert!(msg.contains("must be later than the current end"), "{msg}");

    // Cancel before start: the slot is free again at once.
    let cancelled = ctx.delete(&format!("/api/v1/leases/{next}"), &alice).await.expect(200);
    assert_eq!(cancelled["state"], "cancelled");
    ctx.patch(&format!("/api/v1/leases/{l}"), &alice, json!({"end": at(Duration::hours(4))})).await.expect(200);

    // Release early: the lease ends now and the nodes are reset.
    ctx.wait_lease_state(l, &alice, "active").await;
    ctx.advance(Duration::minutes(30));
    let released = ctx.delete(&format!("/api/v1/leases/{l}"), &alice).await.expect(200);
    assert_eq!(released["end"], at(Duration::minutes(30)).replace("+00:00", "Z"));
    assert_eq!(released["reason"], "released by alice");
    ctx.wait_lease_state(l, &alice, "finished").await;
    assert_eq!(ctx.node_state("chifflot-3").await, "available");
    let again = ctx.delete(&format!("/api/v1/leases/{l}"), &alice).await.expect(200);
    assert_eq!(again["state"], "finished", "ending an ended lease changes nothing");
    // The freed time can be booked right away.
    ctx.post("/api/v1/leases", &alice, json!({"nodes": {"names": ["chifflot-3"]}, "duration": "1h"})).await.expect(201);
}

#[tokio::test]
async fn besteffort_leases_are_preempted_by_normal_ones() {
    let ctx = TestContext::with_fixtures().await;
    let alice = ctx.user("alice", "p-vision").await;
    let bob = ctx.user("bob", "p-other").await;
    let be = ctx
        .post(
            "/api/v1/leases",
            &bob,
            json!({"nodes": {"count": 8, "filter": "cluster = 'chifflot'"}, "duration": "10h", "type": "besteffort"}),
        )
        .await
        .expect(201);
    let be_id = id(&be);
    ctx.wait_lease_state(be_id, &bob, "active").await;
    ctx.advance(Duration::minutes(10));

    // A normal lease for now takes the nodes: the besteffort lease ends.
    let normal = ctx
        .post("/api/v1/leases", &alice, json!({"nodes": {"count": 2, "filter": "cluster = 'chifflot'"}, "duration": "1h"}))
        .await
        .expect(201);
    assert_eq!(normal["start"], at(Duration::minutes(10)).replace("+00:00", "Z"), "besteffort time is free to normal leases");
    let be = ctx.wait_lease_state(be_id, &bob, "finished").await;
    assert!(be["reason"].as_str().is_some_and(|r| r.contains("pre-empted")), "{be}");
    assert_eq!(be["end"], at(Duration::minutes(10)).replace("+00:00", "Z"));
    assert_eq!(be["nodes"].as_array().map(Vec::len), Some(8), "the pre-empted lease keeps its history");
    ctx.wait_lease_state(id(&normal), &alice, "active").await;

    // A future normal lease cuts a besteffort lease short instead.
    let be2 = id(&ctx
        .post("/api/v1/leases", &bob, json!({"nodes": {"names": ["chifflot-5"]}, "duration": "10h", "type": "besteffort"}))
        .await
        .expect(201));
    ctx.wait_lease_state(be2, &bob, "active").await;
    ctx.post("/api/v1/leases", &alice, json!({"nodes": {"names": ["chifflot-5"]}, "start": at(Duration::hours(2)), "duration": "1h"}))
        .await
        .expect(201);
    let cut = ctx.lease(be2, &bob).await;
    assert_eq!(
        (cut["state"].as_str(), cut["end"].as_str()),
        (Some("active"), Some(at(Duration::hours(2)).replace("+00:00", "Z").as_str()))
    );
    // Besteffort leases never pre-empt each other.
    let msg = ctx.post("/api/v1/leases", &bob, json!({"nodes": {"names": ["chifflot-5"]}, "duration": "1h", "type": "besteffort"})).await;
    assert_eq!(msg.status, 201);
    assert_eq!(msg.body["start"], at(Duration::hours(3)).replace("+00:00", "Z"), "queued after the normal lease: {:?}", msg.body);
}

#[tokio::test]
async fn lease_requests_are_validated_by_field() {
    let ctx = TestContext::with_fixtures().await;
    let alice = ctx.user("alice", "p-vision").await;
    let cases = [
        (json!({"nodes": {"count": 1}, "duration": "1h", "start": (t0() - Duration::hours(2)).to_rfc3339()}), "is in the past"),
        (json!({"nodes": {"count": 1}, "start": at(Duration::hours(2)), "end": at(Duration::hours(1))}), "end: must be after the start"),
        (json!({"nodes": {"count": 1}, "duration": "soon"}), "duration: 'soon' is not a duration"),
        (json!({"nodes": {"count": 1}}), "duration: say how long"),
        (json!({"nodes": {"count": 0}, "duration": "1h"}), "nodes.count: must be at least 1"),
        (json!({"nodes": {}, "duration": "1h"}), "nodes: give count"),
        (json!({"nodes": {"names": ["nope-1"]}, "duration": "1h"}), "nodes.names: there is no node 'nope-1'"),
        (
            json!({"nodes": {"count": 1}, "duration": "1h", "deploy": {"environment": "debian12-min", "ssh_keys": ["not a key"]}}),
            "deploy.ssh_keys[0]",
        ),
        (json!({"nodes": {"count": 1}, "duration": "800d"}), "ahead"),
        (json!({"nodes": {"count": 1}, "duration": "1h", "project": "p-other"}), "not a member"),
        (json!({"nodes": {"count": 1}, "duration": "1h", "name": "x".repeat(101)}), "name: at most 100"),
        (json!({"nodes": {"count": 1}, "duration": "1h", "name": "two\nlines"}), "name: must be one line"),
    ];
    for (body, expected) in cases {
        let a = ctx.post("/api/v1/leases", &alice, body.clone()).await;
        assert!(a.status == 400 || a.status == 403, "{body}: {:?}", a.body);
        let msg = a.body["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(expected), "{body}: '{msg}' should contain '{expected}'");
    }
    let msg = ctx
        .post("/api/v1/leases", &alice, json!({"nodes": {"count": 1, "filter": "gpu_count >= 2 AND gpu_modle = 'x'"}, "duration": "1h"}))
        .await
        .error(400, "invalid_filter");
    assert_eq!(msg, "filter: at position 20: unknown property 'gpu_modle' (did you mean 'gpu_model'?)");
    // Nothing was created by the refused requests; a named lease keeps its name.
    assert_eq!(ctx.get("/api/v1/leases", &alice).await.expect(200).as_array().map(Vec::len), Some(0));
    let named =
        ctx.post("/api/v1/leases", &alice, json!({"nodes": {"count": 1}, "duration": "1h", "name": "vision sweep"})).await.expect(201);
    assert_eq!(named["name"], "vision sweep");
    let read = ctx.get(&format!("/api/v1/leases/{}", named["id"]), &alice).await.expect(200);
    assert_eq!(read["name"], "vision sweep");
}

#[tokio::test]
async fn deploy_leases_keep_their_environment_and_keys() {
    let ctx = TestContext::with_fixtures().await;
    let alice = ctx.user("alice", "p-vision").await;
    // The environment must exist when the lease is created (issue 17).
    let env = json!({"name": "debian12-min", "version": 1, "image": "debian12-min.raw.zst", "format": "raw.zst",
        "sha256": "ab".repeat(32), "size": 1_073_741_824u64, "root_partition": 1, "visibility": "public"});
    ctx.post("/api/v1/environments", &ctx.admin, env).await.expect(201);
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBbQ1H5s1e4lqQxQ2b3vJ9Zq0Kq3dY1YzZxvN0z1w3qG alice@laptop";
    let l = ctx
        .post(
            "/api/v1/leases",
            &alice,
            json!({"nodes": {"count": 1}, "duration": "1h", "deploy": {"environment": "debian12-min", "ssh_keys": [key]}}),
        )
        .await
        .expect(201);
    assert_eq!(l["type"], "deploy");
    assert_eq!(l["deploy"]["environment"], "debian12-min");
    assert_eq!(l["deploy"]["ssh_keys"][0], key);
}

#[tokio::test]
async fn a_node_that_fails_its_check_is_suspect_and_never_allocated() {
    let hands = std::sync::Arc::new(super::harness::BrokenNodes::default());
    let ctx = TestContext::empty_with(hands.clone()).await;
    ctx.import_fixtures().await;
    ctx.wait_nodes_available(10).await;
    let alice = ctx.user("alice", "p-vision").await;
    let bob = ctx.user("bob", "p-other").await;
    let first = id(&ctx.post("/api/v1/leases", &alice, json!({"nodes": {"names": ["chifflot-4"]}, "duration": "1h"})).await.expect(201));
    let alone = id(&ctx
        .post("/api/v1/leases", &bob, json!({"nodes": {"names": ["chifflot-4"]}, "start": at(Duration::hours(2)), "duration": "1h"}))
        .await
        .expect(201));
    let pair = id(&ctx
        .post(
            "/api/v1/leases",
            &bob,
            json!({"nodes": {"names": ["chifflot-4", "chifflot-5"]}, "start": at(Duration::hours(3)), "duration": "1h"}),
        )
        .await
        .expect(201));
    ctx.wait_lease_state(first, &alice, "active").await;

    // At the end of alice's lease the check finds a GPU missing.
    hands.set("chifflot-4", "gpu_count: reference 2, found 1");
    ctx.advance(Duration::hours(1));
    ctx.wait_lease_state(first, &alice, "finished").await;
    assert_eq!(ctx.node_state("chifflot-4").await, "suspect");
    let events = ctx.get("/api/v1/nodes/chifflot-4/events", &ctx.admin).await.expect(200);
    let last = events.as_array().and_then(|e| e.last()).expect("an event").clone();
    assert_eq!((last["from"].as_str(), last["to"].as_str()), (Some("resetting"), Some("suspect")));
    assert!(last["reason"].as_str().is_some_and(|r| r.contains("gpu_count: reference 2, found 1")), "{last}");

    // Never given to a new lease.
    let msg =
        ctx.post("/api/v1/leases", &alice, json!({"nodes": {"names": ["chifflot-4"]}, "duration": "1h"})).await.error(409, "conflict");
    assert!(msg.contains("suspect"), "{msg}");
    let msg = ctx
        .post("/api/v1/leases", &alice, json!({"nodes": {"count": 8, "filter": "cluster = 'chifflot'"}, "duration": "1h"}))
        .await
        .error(400, "unsatisfiable");
    assert!(msg.contains("only 7"), "{msg}");

    // Leases booked before: one with only that node fails, the other starts with the rest.
    ctx.advance(Duration::hours(1));
    let failed = ctx.wait_lease_state(alone, &bob, "failed").await;
    assert!(failed["reason"].as_str().is_some_and(|r| r.contains("chifflot-4")), "{failed}");
    // Its owner is told, with the reason (recorded just after the
    // transition the API showed).
    let store = ctx.store().await;
    let told = super::harness::wait_until("bob told his lease failed", super::harness::DEADLINE, async || {
        let rows = store.notifications(store.get_user("bob").await.expect("bob").id, 10).await.expect("notifications");
        rows.into_iter()
            .find(|n| n.lease.0 == alone && n.kind == ferrum_controller::model::NotificationKind::LeaseFailed)
            .ok_or_else(|| "not yet".to_owned())
    })
    .await;
    assert!(told.body.contains("could not start") && told.body.contains("chifflot-4"), "{told:?}");
    ctx.advance(Duration::hours(1));
    let started = ctx.wait_lease_state(pair, &bob, "active").await;
    assert!(started["reason"].as_str().is_some_and(|r| r.contains("chifflot-4")), "{started}");
    assert_eq!(ctx.node_state("chifflot-5").await, "reserved");
    assert_eq!(ctx.node_state("chifflot-4").await, "suspect");
}

/// A lease row whose stored state is no state of the lease lifecycle reads
/// as a corrupt row naming the column's value, never as a default state, on
/// either backend (the model's sqlx type mappings decode it).
#[tokio::test]
async fn a_lease_with_an_unknown_stored_state_reads_as_corrupt() {
    let ctx = TestContext::with_fixtures().await;
    let alice = ctx.user("alice", "p-vision").await;
    let lease = ctx.post("/api/v1/leases", &alice, json!({"nodes": {"count": 1}, "duration": "1h"})).await.expect(201);
    let lease = LeaseId(id(&lease));
    let store = ctx.store().await;
    assert_eq!(store.get_lease(lease).await.expect("a readable lease").nodes.len(), 1);
    raw_execute(&ctx.database, &format!("UPDATE leases SET state = 'bogus' WHERE id = {}", lease.0)).await;
    match store.get_lease(lease).await {
        Err(DbError::Corrupt(what)) => assert!(what.contains("unknown lease state 'bogus'"), "{what}"),
        other => panic!("a lease in state 'bogus' read as {other:?}"),
    }
}

/// `GET /api/v1/leases?owner=NAME` (`oarstat -u`): admins list anyone's
/// leases, users only their own; another user's name is 403 for a user,
/// an unknown one 400 for an admin.
#[tokio::test]
async fn leases_are_listed_by_owner() {
    let ctx = TestContext::with_fixtures().await;
    let alice = ctx.user("alice", "p-vision").await;
    let bob = ctx.user("bob", "p-vision").await;
    let later = at(Duration::hours(2));
    let mine = id(&ctx.post("/api/v1/leases", &alice, json!({"nodes": {"count": 1}, "start": later, "duration": "1h"})).await.expect(201));
    let his = id(&ctx.post("/api/v1/leases", &bob, json!({"nodes": {"count": 1}, "duration": "1h"})).await.expect(201));
    let ids = |v: serde_json::Value| v.as_array().expect("array").iter().map(id).collect::<Vec<_>>();

    assert_eq!(ids(ctx.get("/api/v1/leases?owner=alice", &ctx.admin).await.expect(200)), [mine]);
    assert_eq!(ids(ctx.get("/api/v1/leases?owner=bob", &ctx.admin).await.expect(200)), [his]);
    assert_eq!(ids(ctx.get("/api/v1/leases?owner=alice", &alice).await.expect(200)), [mine]);
    assert!(ids(ctx.get("/api/v1/leases?owner=admin&all=true", &ctx.admin).await.expect(200)).is_empty());
    // Filters combine.
    ctx.delete(&format!("/api/v1/leases/{mine}"), &alice).await.expect(200);
    assert!(ids(ctx.get("/api/v1/leases?owner=alice", &ctx.admin).await.expect(200)).is_empty());
    assert_eq!(ids(ctx.get("/api/v1/leases?owner=alice&all=true", &ctx.admin).await.expect(200)), [mine]);

    let msg = ctx.get("/api/v1/leases?owner=bob", &alice).await.error(403, "forbidden");
    assert!(msg.starts_with("owner:"), "{msg}");
    let msg = ctx.get("/api/v1/leases?owner=nobody", &alice).await.error(403, "forbidden");
    assert!(!msg.contains("exist"), "a user learns nothing of other names: {msg}");
    let msg = ctx.get("/api/v1/leases?owner=nobody", &ctx.admin).await.error(404, "not_found");
    assert_eq!(msg, "owner: there is no user 'nobody'");
}

/// Several groups in one lease: one start, distinct nodes, every group
/// satisfied, even when one group's filter covers another's; a fixed start
/// that cannot be met is a 409 with the earliest start.
#[tokio::test]
async fn multi_group_leases_are_placed_atomically() {
    let ctx = TestContext::with_fixtures().await;
    let alice = ctx.user("alice", "p-vision").await;
    let bob = ctx.user("bob", "p-other").await;
    let z = |d: Duration| at(d).replace("+00:00", "Z");

    // Group A takes any node, group B only chifflot-1: a greedy choice
    // would give chifflot-1 to A and fail B.
    let overlap = json!({"nodes": {"groups": [{"count": 1}, {"count": 1, "filter": "host = 'chifflot-1'"}]}, "duration": "1h"});
    let lease = ctx.post("/api/v1/leases", &alice, overlap).await.expect(201);
    assert_eq!(lease["start"], z(Duration::zero()));
    assert_eq!(lease["nodes"], json!(["chifflot-2", "chifflot-1"]), "group after group");
    assert_eq!(
        lease["groups"],
        json!([{"count": 1, "nodes": ["chifflot-2"]}, {"count": 1, "filter": "host = 'chifflot-1'", "nodes": ["chifflot-1"]}])
    );
    assert!(lease.get("filter").is_none(), "{lease}");
    let read = ctx.lease(id(&lease), &alice).await;
    assert_eq!(read["groups"], lease["groups"]);

    // chifflot-8 is bob's for 3 hours: a lease needing every chifflot node
    // (7 of the cluster plus chifflot-8 by its OAR name) starts then.
    ctx.post("/api/v1/leases", &bob, json!({"nodes": {"names": ["chifflot-8"]}, "duration": "3h"})).await.expect(201);
    let all = json!([{"count": 7, "filter": "cluster='chifflot'"}, {"count": 1, "filter": "network_address = 'chifflot-8.lille.ferrum.internal'"}]);
    let late = ctx.post("/api/v1/leases", &alice, json!({"nodes": {"groups": all}, "duration": "1h"})).await.expect(201);
    assert_eq!(late["start"], z(Duration::hours(3)));
    assert_eq!(late["groups"][0]["nodes"], json!((1..=7).map(|i| format!("chifflot-{i}")).collect::<Vec<_>>()));
    assert_eq!(late["groups"][1]["nodes"], json!(["chifflot-8"]));
    assert_eq!(late["nodes"].as_array().map(Vec::len), Some(8));

    // The same at a fixed start inside bob's lease: 409 and the earliest
    // start, after both leases.
    let fixed = json!({"nodes": {"groups": all}, "start": at(Duration::hours(1)), "duration": "1h"});
    let conflict = ctx.post("/api/v1/leases", &alice, fixed).await;
    assert_eq!(conflict.status, 409, "{:?}", conflict.body);
    assert_eq!(conflict.body["error"]["earliest_start"], z(Duration::hours(4)));
    assert!(
        conflict.body["error"]["message"].as_str().is_some_and(|m| m.contains("8 node(s) in 2 groups are not free")),
        "{:?}",
        conflict.body
    );

    // Groups are validated by field.
    let cases = [
        (json!({"nodes": {"groups": [{"count": 1}], "count": 1}, "duration": "1h"}), "nodes.groups: give groups alone"),
        (json!({"nodes": {"groups": []}, "duration": "1h"}), "nodes.groups: give at least one group"),
        (json!({"nodes": {"groups": [{"count": 1}, {"count": 0}]}, "duration": "1h"}), "nodes.groups[1].count: must be at least 1"),
        (
            json!({"nodes": {"groups": [{"count": 1}, {"count": 1, "filter": "gpu_modle = 'x'"}]}, "duration": "1h"}),
            "nodes.groups[1].filter: at position 1: unknown property 'gpu_modle' (did you mean 'gpu_model'?)",
        ),
        (
            json!({"nodes": {"groups": [{"count": 1}, {"count": 3, "filter": "gpu_model like '%V100%'"}]}, "duration": "1h"}),
            "nodes.groups[1].filter: 3 node(s) requested but only 2 can be offered",
        ),
        (
            json!({"nodes": {"groups": [{"count": 5, "filter": "gpu_count >= 2"}, {"count": 5, "filter": "gpu_count >= 2"}]}, "duration": "1h"}),
            "10 node(s) requested in all but the groups' filters offer only 8 distinct nodes",
        ),
        (json!({"nodes": {"names": ["chifflot-1"]}, "properties": "exotic='NO'", "duration": "1h"}), "properties: not with nodes.names"),
    ];
    for (body, expected) in cases {
        let a = ctx.post("/api/v1/leases", &alice, body.clone()).await;
        assert_eq!(a.status, 400, "{body}: {:?}", a.body);
        let msg = a.body["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(expected), "{body}: '{msg}' should contain '{expected}'");
    }
}

/// An OAR resource string in place of `nodes` (and of `duration` when it
/// holds a walltime), `properties` ANDed with every group, strict
/// durations, and a 400 naming what ferrum cannot do.
#[tokio::test]
async fn oar_resource_strings_and_walltimes() {
    let ctx = TestContext::with_fixtures().await;
    let alice = ctx.user("alice", "p-vision").await;
    let z = |d: Duration| at(d).replace("+00:00", "Z");

    let body = json!({"resources": "{cluster='chifflot'}/nodes=2+{gpu_model like '%V100%'}/nodes=1,walltime=2:00"});
    let lease = ctx.post("/api/v1/leases", &alice, body).await.expect(201);
    assert_eq!((lease["start"].clone(), lease["end"].clone()), (json!(z(Duration::zero())), json!(z(Duration::hours(2)))));
    assert_eq!(lease["groups"][0], json!({"count": 2, "filter": "cluster='chifflot'", "nodes": ["chifflot-1", "chifflot-2"]}));
    assert_eq!(lease["groups"][1], json!({"count": 1, "filter": "gpu_model like '%V100%'", "nodes": ["chifflot-7"]}));

    // One group: an ordinary lease, its filter with the properties ANDed;
    // the walltime may also come as the duration.
    let one = json!({"resources": "{cluster='chifflot'}/host=1", "properties": "exotic='NO'", "duration": "0:30"});
    let one = ctx.post("/api/v1/leases", &alice, one).await.expect(201);
    assert_eq!(one["filter"], "(cluster='chifflot') AND (exotic='NO')");
    assert!(one.get("groups").is_none(), "{one}");
    assert_eq!(one["end"], z(Duration::minutes(30)));
    let two = json!({"resources": "nodes=1+/nodes=1,walltime=1", "properties": "gpu_model like '%V100%'"});
    let two = ctx.post("/api/v1/leases", &alice, two).await.expect(201);
    assert_eq!(two["groups"][0]["filter"], "gpu_model like '%V100%'");
    assert_eq!(two["nodes"], json!(["chifflot-7", "chifflot-8"]), "chifflot-7 is taken until 2h, so 1h from 2h");
    assert_eq!(two["start"], z(Duration::hours(2)));

    let cases = [
        (json!({"resources": "nodes=1", "nodes": {"count": 1}, "duration": "1h"}), "resources: give either resources or nodes, not both"),
        (json!({"resources": "nodes=1,walltime=1:00", "duration": "1h"}), "duration: the resources give a walltime already"),
        (json!({"resources": "nodes=1,walltime=1:00", "end": at(Duration::hours(1))}), "end: the resources give a walltime already"),
        (json!({"resources": "nodes=1"}), "duration: say how long"),
        (
            json!({"resources": "{cluster='chifflot'}/nodes=2+{type='kavlan'}/vlan=1,walltime=2:00"}),
            "resources: 'vlan=1': KaVLAN is not supported",
        ),
        (json!({"resources": "nodes=1+slash_22=1,walltime=2:00"}), "resources: 'slash_22=1': subnets are not supported"),
        (json!({"resources": "core=2,walltime=1"}), "resources: 'core=2': ferrum leases whole nodes"),
        (json!({"resources": "switch=1/nodes=2,walltime=1"}), "switch groups are not supported"),
        (json!({"resources": "cluster=1/nodes=2,walltime=1"}), "'all in one cluster' is not supported"),
        (json!({"resources": "nodes=BEST,walltime=1"}), "resources: 'nodes=BEST'"),
        (json!({"resources": "nodes=1,walltime=1:75"}), "resources: walltime: '1:75': minutes and seconds of a walltime are below 60"),
        (json!({"resources": "{gpu_modle='x'}/nodes=1,walltime=1"}), "unknown property 'gpu_modle' (did you mean 'gpu_model'?)"),
        (
            json!({"resources": "nodes=1+{gpu_modle='x'}/nodes=1,walltime=1"}),
            "resources (group 2): at position 1: unknown property 'gpu_modle'",
        ),
        (
            json!({"nodes": {"count": 1}, "duration": "3M"}),
            "duration: '3M' is not a duration; write terms of a whole number and a unit s, m, h, d or w",
        ),
        (json!({"nodes": {"count": 1}, "duration": "3hr"}), "duration: '3hr' is not a duration"),
        (json!({"nodes": {"count": 1}, "duration": "1.5h"}), "or an OAR walltime H, H:MM or H:MM:SS"),
    ];
    for (body, expected) in cases {
        let a = ctx.post("/api/v1/leases", &alice, body.clone()).await;
        assert_eq!(a.status, 400, "{body}: {:?}", a.body);
        let msg = a.body["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(expected), "{body}: '{msg}' should contain '{expected}'");
    }
}
