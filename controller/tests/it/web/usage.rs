//! The usage page: the API's figures, to whom the API would show them.

use super::*;

/// The usage page: month by month per project, user, cluster or GPU model,
/// as the API reports it to the same user (only their projects), with a
/// CSV of the same figures; a bad value is said on the page.
#[tokio::test]
async fn the_usage_page_shows_the_apis_figures_to_whom_the_api_would() {
    let ctx = TestContext::with_fixtures().await;
    let alice = ctx.user("alice", "p-vision").await;
    ctx.user("bob", "p-other").await;
    let lease =
        ctx.post("/api/v1/leases", &alice, json!({"nodes": {"names": ["chifflot-7", "chifflot-8"]}, "duration": "3h"})).await.expect(201);
    ctx.wait_lease_state(lease["id"].as_i64().expect("id"), &alice, "active").await;
    ctx.advance(chrono::Duration::hours(2));
    let api = ctx.get("/api/v1/usage?group_by=project", &alice).await.expect(200);
    assert_eq!(api["rows"][0]["key"], "p-vision");
    let api_hours = api["rows"][0]["node_hours"].as_f64().expect("node_hours");
    assert!(api_hours >= 4.0, "{api}");

    let mut page = signed_in(&ctx, "alice").await;
    let usage = page.get("/usage").await;
    assert_eq!(usage.status, StatusCode::OK, "{}", usage.text);
    assert!(
        usage.text.contains("<th scope=\"col\" class=\"num\">2026-06</th>")
            && usage.text.contains("<th scope=\"col\" class=\"num\">2026-11</th>"),
        "six months"
    );
    let row = format!("<tr><th scope=\"row\">p-vision</th>{}<td class=\"num\">{api_hours:.1}</td>", "<td class=\"num\">0.0</td>".repeat(5));
    assert!(usage.text.contains(&row), "{row} in {}", usage.text);
    assert!(usage.text.contains("<title>p-vision, 2026-11: "), "the chart's bar");
    let by_user = page.get("/usage?group_by=user&months=1").await;
    assert!(by_user.text.contains(&format!("<tr><th scope=\"row\">alice</th><td class=\"num\">{api_hours:.1}</td>")), "{}", by_user.text);
    let csv = page.get("/usage?group_by=project&months=1&format=csv").await;
    assert_eq!(csv.status, StatusCode::OK);
    let mut lines = csv.text.lines();
    assert_eq!(lines.next(), Some("key,month,node_hours,gpu_hours,node_seconds,gpu_seconds"));
    let line = lines.next().expect("p-vision's line");
    assert!(line.starts_with(&format!("p-vision,2026-11,{api_hours}")), "{line}");

    // Bob sees his projects only, as the API would say.
    let mut bob = signed_in(&ctx, "bob").await;
    let his = bob.get("/usage").await;
    assert!(!his.text.contains("p-vision") && his.text.contains("No use recorded"), "{}", his.text);
    let refused = bob.get("/usage?project=p-vision").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.text.contains("p-vision"), "the refusal names it: {}", refused.text);
    let bad = bob.get("/usage?months=99").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text.contains("months: a whole number from 1 to 24"), "{}", bad.text);
}
