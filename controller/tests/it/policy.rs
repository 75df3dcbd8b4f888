//! Access policy, approval of large leases, usage accounting and the audit
//! log, over HTTP (issue 8): quotas and class limits refuse with a 403
//! naming the rule and the numbers, large leases wait for an admin, usage
//! equals hand-computed node-hours.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::Duration;
use ferrum_controller::app::conductor::SimConductor;
use ferrum_controller::config::{ClassRules, Config, PeakHours, PolicyConfig};
use serde_json::{Value, json};

use super::harness::{TestContext, at};

fn id(v: &Value) -> i64 {
    v["id"].as_i64().expect("lease id")
}

fn z(d: Duration) -> String {
    at(d).replace("+00:00", "Z")
}

/// A controller with the fixtures and this policy.
async fn with_policy(policy: PolicyConfig) -> TestContext {
    let ctx = TestContext::empty_configured(Config { policy, ..Config::default() }, Arc::new(SimConductor)).await;
    ctx.import_fixtures().await;
    ctx.wait_nodes_available(10).await;
    ctx
}

/// Creates a project with a class and quota, and a user in it.
async fn member(ctx: &TestContext, user: &str, project: &str, class: Option<&str>, quota: Option<i64>) -> String {
    let created = ctx.post("/api/v1/projects", &ctx.admin, json!({"name": project, "class": class, "quota_node_hours": quota})).await;
    assert!(created.status == 201 || created.status == 409, "{created:?}");
    ctx.user(user, project).await
}

#[tokio::test]
async fn quota_refusals_name_the_rule_and_the_numbers() {
    let ctx = with_policy(PolicyConfig::default()).await;
    let alice = member(&ctx, "alice", "p-small", None, Some(10)).await;

    // 2 nodes for 3h now: 6 of 10 node-hours.
    let first =
        ctx.post("/api/v1/leases", &alice, json!({"nodes": {"names": ["chifflot-1", "chifflot-2"]}, "duration": "3h"})).await.expect(201);
    ctx.wait_lease_state(id(&first), &alice, "active").await;
    let refused =
        ctx.post("/api/v1/leases", &alice, json!({"nodes": {"count": 2}, "start": at(Duration::hours(5)), "duration": "3h"})).await;
    let msg = refused.error(403, "forbidden");
    assert_eq!(msg, "policy 'quota': project 'p-small' has 4 of 10 node-hours left this month (2026-11); this lease needs 6");

    // Released after one hour, the first lease holds 2 node-hours only.
    ctx.advance(Duration::hours(1));
    ctx.delete(&format!("/api/v1/leases/{}", id(&first)), &alice).await.expect(200);
    let second = ctx
        .post("/api/v1/leases", &alice, json!({"nodes": {"count": 2}, "start": at(Duration::hours(5)), "duration": "3h"}))
        .await
        .expect(201);
    // 2 + 6 = 8: an extension by 1h (2 node-hours) fits, one more does not.
    ctx.patch(&format!("/api/v1/leases/{}", id(&second)), &alice, json!({"end": at(Duration::hours(9))})).await.expect(200);
    let msg = ctx
        .patch(&format!("/api/v1/leases/{}", id(&second)), &alice, json!({"end": at(Duration::hours(10))}))
        .await
        .error(403, "forbidden");
    assert_eq!(msg, "policy 'quota': project 'p-small' has 0 of 10 node-hours left this month (2026-11); this extension needs 2");
    let unchanged = ctx.lease(id(&second), &alice).await;
    assert_eq!(unchanged["end"], z(Duration::hours(9)), "a refused extension changes nothing");
    let quota = ctx.get("/api/v1/projects/p-small/quota", &alice).await.expect(200);
    assert_eq!(
        (quota["period"].as_str(), quota["booked_node_hours"].as_f64(), quota["left_node_hours"].as_f64(), quota["from"].as_str()),
        (Some("month"), Some(10.0), Some(0.0), Some("2026-11-01T00:00:00Z"))
    );
    let bob = ctx.user("bob", "p-bob").await;
    ctx.get("/api/v1/projects/p-small/quota", &bob).await.error(403, "forbidden");

    // Besteffort leases count against no quota.
    ctx.post("/api/v1/leases", &alice, json!({"nodes": {"count": 1}, "duration": "4h", "type": "besteffort"})).await.expect(201);
    // Next month's quota is fresh (the test starts on 2026-11-23).
    ctx.post("/api/v1/leases", &alice, json!({"nodes": {"count": 2}, "start": "2026-12-02T00:00:00Z", "duration": "4h"})).await.expect(201);
}

#[tokio::test]
async fn class_limits_exotic_hardware_and_peak_hours() {
    let policy = PolicyConfig {
        timezone: chrono_tz::UTC,
        peak: Some(PeakHours {
            days: vec![chrono::Weekday::Mon, chrono::Weekday::Tue, chrono::Weekday::Wed, chrono::Weekday::Thu, chrono::Weekday::Fri],
            from: chrono::NaiveTime::from_hms_opt(9, 0, 0).expect("time"),
            to: chrono::NaiveTime::from_hms_opt(19, 0, 0).expect("time"),
        }),
        classes: [(
            "student".to_owned(),
            ClassRules {
                max_duration: Some(StdDuration::from_secs(2 * 3600)),
                max_nodes: Some(3),
                exotic: Some(false),
                peak_max_nodes: Some(1),
            },
        )]
        .into(),
        ..PolicyConfig::default()
    };
    let ctx = with_policy(policy).await;
    let sam = member(&ctx, "sam", "p-students", Some("student"), None).await;
    let cases = [
        (
            json!({"nodes": {"count": 4}, "start": at(Duration::hours(12)), "duration": "1h"}),
            "policy 'max_nodes': leases of class 'student' hold at most 3 node(s); this one asks for 4",
        ),
        (
            json!({"nodes": {"groups": [{"count": 2}, {"count": 2, "filter": "gpu_count >= 2"}]}, "start": at(Duration::hours(12)), "duration": "1h"}),
            "policy 'max_nodes': leases of class 'student' hold at most 3 node(s); this one asks for 4",
        ),
        (
            json!({"resources": "nodes=1+nodes=3,walltime=1:00", "start": at(Duration::hours(12))}),
            "policy 'max_nodes': leases of class 'student' hold at most 3 node(s); this one asks for 4",
        ),
        (
            json!({"nodes": {"count": 1}, "start": at(Duration::hours(12)), "duration": "3h"}),
            "policy 'max_duration': leases of class 'student' last at most 2h; this one would last 3h",
        ),
        (
            json!({"nodes": {"count": 1, "filter": "accel_type = 'fpga'"}, "exotic": true, "start": at(Duration::hours(12)), "duration": "1h"}),
            "policy 'exotic': project 'p-students' (class 'student') may not use exotic (prototype) hardware",
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(ctx.post("/api/v1/leases", &sam, body.clone()).await.error(403, "forbidden"), expected, "{body}");
    }
    // t0 is Monday 08:00 UTC: 2 nodes from 08:00 to 10:00 meet the peak hours.
    let msg = ctx.post("/api/v1/leases", &sam, json!({"nodes": {"count": 2}, "duration": "2h"})).await.error(403, "forbidden");
    assert!(msg.starts_with("policy 'peak_max_nodes': during peak hours (09:00 to 19:00 UTC, Mon, Tue, Wed, Thu, Fri) leases of class 'student' hold at most 1 node(s)"), "{msg}");
    assert!(msg.contains("Mon 2026-11-23"), "{msg}");
    // The same at night, or one node by day, is fine.
    ctx.post("/api/v1/leases", &sam, json!({"nodes": {"count": 2}, "start": at(Duration::hours(12)), "duration": "2h"})).await.expect(201);
    ctx.post("/api/v1/leases", &sam, json!({"nodes": {"count": 1}, "start": at(Duration::hours(2)), "duration": "2h"})).await.expect(201);
    // Admins grant the exceptions: their operator leases are not limited.
    ctx.post("/api/v1/leases", &ctx.admin, json!({"nodes": {"count": 4}, "duration": "5h"})).await.expect(201);
}

fn approval_policy() -> PolicyConfig {
    PolicyConfig { approval_threshold_node_hours: 10.0, approval_notice: StdDuration::from_secs(3600), ..PolicyConfig::default() }
}

#[tokio::test]
async fn large_leases_wait_for_approval_then_run() {
    let ctx = with_policy(approval_policy()).await;
    let alice = member(&ctx, "alice", "p-vision", None, None).await;
    let bob = member(&ctx, "bob", "p-other", None, None).await;

    // 2 nodes x 6h = 12 node-hours > 10: too soon to be decided on.
    let too_soon = json!({"nodes": {"names": ["chifflot-1", "chifflot-2"]}, "start": at(Duration::minutes(30)), "duration": "6h"});
    let msg = ctx.post("/api/v1/leases", &alice, too_soon).await.error(403, "forbidden");
    assert!(msg.starts_with("policy 'approval': this lease waits for an admin's approval: 12 node-hours is above the approval threshold of 10 node-hours, and must start at least 1h ahead"), "{msg}");

    let big = ctx
        .post(
            "/api/v1/leases",
            &alice,
            json!({"nodes": {"names": ["chifflot-1", "chifflot-2"]}, "start": at(Duration::hours(2)), "duration": "6h"}),
        )
        .await
        .expect(201);
    assert_eq!(big["state"], "awaiting_approval");
    assert!(big["reason"].as_str().is_some_and(|r| r.contains("12 node-hours")), "{big}");
    // Its slot is held tentatively.
    let taken = ctx
        .post("/api/v1/leases", &bob, json!({"nodes": {"names": ["chifflot-1"]}, "start": at(Duration::hours(3)), "duration": "1h"}))
        .await;
    assert_eq!(taken.status, 409, "{:?}", taken.body);
    // An as-soon-as-possible large request is placed after the notice.
    let asap = ctx.post("/api/v1/leases", &bob, json!({"nodes": {"count": 3}, "duration": "4h"})).await.expect(201);
    assert_eq!((asap["state"].as_str(), asap["start"].as_str()), (Some("awaiting_approval"), Some(z(Duration::hours(1)).as_str())));

    // Users decide nothing.
    for token in [&alice, &bob] {
        ctx.post(&format!("/api/v1/leases/{}/approve", id(&big)), token, json!({})).await.error(403, "forbidden");
    }
    let approved =
        ctx.post(&format!("/api/v1/leases/{}/approve", id(&big)), &ctx.admin, json!({"reason": "ok for the paper"})).await.expect(200);
    assert_eq!(approved["state"], "pending");
    let seen = ctx.lease(id(&big), &alice).await;
    assert_eq!(seen["reason"], "approved by admin: ok for the paper", "the requester sees the decision");
    let again = ctx.post(&format!("/api/v1/leases/{}/approve", id(&big)), &ctx.admin, json!({})).await;
    assert!(again.error(409, "conflict").contains("cannot be approved"));

    // Not approved by its start: rejected. The approved one starts on time.
    ctx.advance(Duration::hours(1));
    let expired = ctx.wait_lease_state(id(&asap), &bob, "rejected").await;
    assert!(expired["reason"].as_str().is_some_and(|r| r.contains("not approved before its start")), "{expired}");
    ctx.advance(Duration::hours(1));
    ctx.wait_lease_state(id(&big), &alice, "active").await;

    // The audit log has the decision, for admins only.
    let audit = ctx.get(&format!("/api/v1/audit?action=lease.approve&target=lease/{}", id(&big)), &ctx.admin).await.expect(200);
    assert_eq!(audit.as_array().map(Vec::len), Some(1), "{audit}");
    assert_eq!((audit[0]["actor"].as_str(), audit[0]["detail"]["reason"].as_str()), (Some("admin"), Some("ok for the paper")));
    ctx.get("/api/v1/audit", &alice).await.error(403, "forbidden");
}

#[tokio::test]
async fn a_rejected_request_frees_only_what_it_held() {
    let ctx = with_policy(approval_policy()).await;
    let alice = member(&ctx, "alice", "p-vision", None, None).await;
    let bob = member(&ctx, "bob", "p-other", None, None).await;
    let small = ctx
        .post("/api/v1/leases", &bob, json!({"nodes": {"names": ["chifflot-3"]}, "start": at(Duration::hours(2)), "duration": "1h"}))
        .await
        .expect(201);
    let big = ctx
        .post(
            "/api/v1/leases",
            &alice,
            json!({"nodes": {"names": ["chifflot-1", "chifflot-2"]}, "start": at(Duration::hours(2)), "duration": "6h"}),
        )
        .await
        .expect(201);
    assert_eq!(big["state"], "awaiting_approval");
    let rejected =
        ctx.post(&format!("/api/v1/leases/{}/reject", id(&big)), &ctx.admin, json!({"reason": "too big for a student"})).await.expect(200);
    assert_eq!(
        (rejected["state"].as_str(), rejected["reason"].as_str()),
        (Some("rejected"), Some("rejected by admin: too big for a student"))
    );
    ctx.post(&format!("/api/v1/leases/{}/approve", id(&big)), &ctx.admin, json!({})).await.error(409, "conflict");
    // The other lease is as it was; the rejected slot is free again.
    let other = ctx.lease(id(&small), &bob).await;
    assert_eq!(
        (other["state"].as_str(), other["start"].as_str(), other["nodes"].clone()),
        (Some("pending"), Some(z(Duration::hours(2)).as_str()), json!(["chifflot-3"]))
    );
    ctx.post(
        "/api/v1/leases",
        &bob,
        json!({"nodes": {"names": ["chifflot-1", "chifflot-3"]}, "start": at(Duration::hours(4)), "duration": "1h"}),
    )
    .await
    .expect(201);
    ctx.post("/api/v1/leases", &bob, json!({"nodes": {"names": ["chifflot-3"]}, "start": at(Duration::hours(2)), "duration": "1h"}))
        .await
        .error(409, "conflict");
}

/// node-seconds per key of a usage report.
fn by_key(report: &Value) -> Vec<(String, i64, i64)> {
    report["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (r["key"].as_str().expect("key").to_owned(), r["node_seconds"].as_i64().expect("n"), r["gpu_seconds"].as_i64().expect("g"))
        })
        .collect()
}

#[tokio::test]
async fn usage_equals_hand_computed_node_hours() {
    let ctx = with_policy(PolicyConfig::default()).await;
    let alice = member(&ctx, "alice", "p-vision", None, None).await;
    let bob = member(&ctx, "bob", "p-other", None, None).await;
    const H: i64 = 3600;

    // t0: alice takes chifflot-1,2 for 2h; bob takes chifflot-3 besteffort.
    let l1 =
        ctx.post("/api/v1/leases", &alice, json!({"nodes": {"names": ["chifflot-1", "chifflot-2"]}, "duration": "2h"})).await.expect(201);
    let l2 = ctx
        .post("/api/v1/leases", &bob, json!({"nodes": {"names": ["chifflot-3"]}, "duration": "10h", "type": "besteffort"}))
        .await
        .expect(201);
    ctx.wait_lease_state(id(&l1), &alice, "active").await;
    ctx.wait_lease_state(id(&l2), &bob, "active").await;

    // t0+1h: running leases count up to now.
    ctx.advance(Duration::hours(1));
    let window = format!("from={}&to={}", z(Duration::zero()), z(Duration::hours(3)));
    let live = ctx.get(&format!("/api/v1/usage?{window}&group_by=project"), &ctx.admin).await.expect(200);
    assert_eq!(by_key(&live), vec![("p-other".into(), H, 2 * H), ("p-vision".into(), 2 * H, 4 * H)]);

    // alice releases early (2 nodes x 1h); her new lease pre-empts bob's
    // (1 node x 1h) and runs to its end (1 node x 1h).
    ctx.delete(&format!("/api/v1/leases/{}", id(&l1)), &alice).await.expect(200);
    let l3 = ctx.post("/api/v1/leases", &alice, json!({"nodes": {"names": ["chifflot-3"]}, "duration": "1h"})).await.expect(201);
    ctx.wait_lease_state(id(&l2), &bob, "finished").await;
    ctx.wait_lease_state(id(&l3), &alice, "active").await;
    ctx.advance(Duration::hours(1));
    ctx.wait_lease_state(id(&l3), &alice, "finished").await;
    ctx.wait_lease_state(id(&l1), &alice, "finished").await;

    let report = ctx.get(&format!("/api/v1/usage?{window}&group_by=project"), &ctx.admin).await.expect(200);
    // chifflot-1..3 have 2 GPUs each.
    assert_eq!(by_key(&report), vec![("p-other".into(), H, 2 * H), ("p-vision".into(), 3 * H, 6 * H)]);
    assert_eq!((report["total"]["node_hours"].as_f64(), report["total"]["gpu_hours"].as_f64()), (Some(4.0), Some(8.0)));
    let users = ctx.get(&format!("/api/v1/usage?{window}&group_by=user"), &ctx.admin).await.expect(200);
    assert_eq!(by_key(&users), vec![("alice".into(), 3 * H, 6 * H), ("bob".into(), H, 2 * H)]);
    let clusters = ctx.get(&format!("/api/v1/usage?{window}&group_by=cluster"), &ctx.admin).await.expect(200);
    assert_eq!(by_key(&clusters), vec![("chifflot".into(), 4 * H, 8 * H)]);
    let model = ctx.get("/api/v1/nodes/chifflot-1", &ctx.admin).await.expect(200)["properties"]["gpu_model"]
        .as_str()
        .expect("gpu_model")
        .to_owned();
    let models = ctx.get(&format!("/api/v1/usage?{window}&group_by=gpu_model"), &ctx.admin).await.expect(200);
    assert_eq!(by_key(&models), vec![(model.clone(), 4 * H, 8 * H)]);
    // A window cutting the first hour in half.
    let half =
        ctx.get(&format!("/api/v1/usage?from={}&to={}", z(Duration::minutes(30)), z(Duration::hours(1))), &ctx.admin).await.expect(200);
    assert_eq!(by_key(&half), vec![("p-other".into(), H / 2, H), ("p-vision".into(), H, 2 * H)]);

    // Users read their own projects' usage only.
    let own = ctx.get(&format!("/api/v1/usage?{window}&group_by=user"), &alice).await.expect(200);
    assert_eq!(by_key(&own), vec![("alice".into(), 3 * H, 6 * H)]);
    let msg = ctx.get(&format!("/api/v1/usage?{window}&project=p-other"), &alice).await.error(403, "forbidden");
    assert!(msg.contains("not a member of project 'p-other'"), "{msg}");
    ctx.get(&format!("/api/v1/usage/records?{window}&project=p-other"), &alice).await.error(403, "forbidden");

    // The records: one per lease and node, reserved and actual intervals.
    let records = ctx.get(&format!("/api/v1/usage/records?{window}"), &ctx.admin).await.expect(200);
    let rows: Vec<(i64, String, String, String)> = records
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            (
                r["lease"].as_i64().expect("lease"),
                r["node"].as_str().expect("node").into(),
                r["start"].as_str().expect("s").into(),
                r["end"].as_str().expect("e").into(),
            )
        })
        .collect();
    let (s0, s1, s2) = (z(Duration::zero()), z(Duration::hours(1)), z(Duration::hours(2)));
    assert_eq!(
        rows,
        vec![
            (id(&l1), "chifflot-1".into(), s0.clone(), s1.clone()),
            (id(&l1), "chifflot-2".into(), s0.clone(), s1.clone()),
            (id(&l2), "chifflot-3".into(), s0.clone(), s1.clone()),
            (id(&l3), "chifflot-3".into(), s1.clone(), s2.clone()),
        ]
    );
    assert_eq!(records[0]["reserved_end"], s2, "the reservation is kept beside the actual use");
    // CSV export.
    let csv = ctx.client.get(format!("{}/api/v1/usage?{window}&format=csv", ctx.url)).bearer_auth(&ctx.admin).send().await.expect("csv");
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let text = csv.text().await.expect("body");
    assert_eq!(text, "key,node_hours,gpu_hours,node_seconds,gpu_seconds\np-other,1.0,2.0,3600,7200\np-vision,3.0,6.0,10800,21600\n");
    let csv =
        ctx.client.get(format!("{}/api/v1/usage/records?{window}&format=csv", ctx.url)).bearer_auth(&ctx.admin).send().await.expect("csv");
    let text = csv.text().await.expect("body");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert_eq!(
        lines[0],
        "id,lease,user,project,node,site,cluster,gpu_model,gpu_count,lease_type,reserved_start,reserved_end,start,end,node_hours"
    );
    assert!(lines[1].ends_with(&format!(",{model},2,default,{s0},{s2},{s0},{s1},1.0")), "{}", lines[1]);
    // An empty period still has the header.
    let empty = ctx.client.get(format!("{}/api/v1/usage?from=2020-01-01T00:00:00Z&to=2020-02-01T00:00:00Z&format=csv", ctx.url));
    let text = empty.bearer_auth(&ctx.admin).send().await.expect("csv").text().await.expect("body");
    assert_eq!(text, "key,node_hours,gpu_hours,node_seconds,gpu_seconds\n");
    // Bad input names the field.
    let msg = ctx.get("/api/v1/usage?group_by=colour", &ctx.admin).await.error(400, "bad_request");
    assert!(msg.contains("group_by"), "{msg}");
}
