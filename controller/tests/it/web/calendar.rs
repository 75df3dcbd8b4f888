//! The calendar (Gantt): the API's view drawn, the earliest slot found
//! and booked.

use super::*;

/// The calendar page draws what `GET /api/v1/calendar` shows the same
/// user (others' leases as busy time, nameless), finds the slot
/// `/availability` finds, books it in one click, and says a refusal beside
/// the field it concerns.
#[tokio::test]
async fn the_calendar_draws_the_api_view_and_books_the_earliest_slot() {
    let ctx = TestContext::with_fixtures().await;
    let alice = ctx.user("alice", "p-vision").await;
    let bob_token = ctx.user("bob", "p-other").await;
    let lease =
        ctx.post("/api/v1/leases", &alice, json!({"nodes": {"names": ["chifflot-7", "chifflot-8"]}, "duration": "3h"})).await.expect(201);
    let lease = lease["id"].as_i64().expect("id");

    let mut bob = signed_in(&ctx, "bob").await;
    let chart = bob.get("/calendar?filter=cluster%3D%27chifflot%27").await;
    assert_eq!(chart.status, StatusCode::OK, "{}", chart.text);
    assert!(chart.text.contains("<svg id=\"gantt\""), "{}", chart.text);
    assert!(chart.text.contains("chifflot (8 nodes)"), "{}", chart.text);
    assert_eq!(chart.text.matches("<title>Busy: ").count(), 2, "alice's lease, on her two nodes, nameless: {}", chart.text);
    assert!(!chart.text.contains("alice") && !chart.text.contains(&format!("Lease {lease}")), "{}", chart.text);
    assert!(chart.text.contains("None of your leases falls in this window."));
    let mut alice_browser = signed_in(&ctx, "alice").await;
    let hers = alice_browser.get("/calendar").await;
    assert_eq!(hers.text.matches(&format!("<title>Lease {lease} of alice (yours): ")).count(), 2, "{}", hers.text);
    assert!(hers.text.contains(&format!("<a href=\"#lease-{lease}\">")), "her bars link to her table");
    assert!(
        hers.text.contains(&format!("<tr id=\"lease-{lease}\"><td><a href=\"/leases/{lease}\">Lease {lease}</a></td>")),
        "{}",
        hers.text
    );

    // Find a slot: the API's first slot, drawn on its two nodes.
    let v100 = "gpu_model LIKE '%V100%'";
    let api =
        ctx.get("/api/v1/availability?count=2&duration=1h&filter=gpu_model%20LIKE%20'%25V100%25'&limit=1", &bob_token).await.expect(200);
    assert_eq!(api["slots"][0]["nodes"], json!(["chifflot-7", "chifflot-8"]));
    let find = "/calendar?count=2&duration=1h&filter=gpu_model+LIKE+%27%25V100%25%27";
    let found = bob.get(find).await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.text);
    assert!(found.text.contains("on chifflot-7, chifflot-8."), "{}", found.text);
    assert_eq!(found.text.matches("<rect class=\"slot\"").count(), 2);
    let start = found.field("start");
    assert_eq!(start, at(chrono::Duration::hours(3)), "the API's slot: {api}");
    // Or on the booking page, which gets the nodes and the duration.
    assert!(
        found.text.contains("<a href=\"/book?names=chifflot-7%2Cchifflot-8&#38;duration=1h\">Or on the booking page"),
        "{}",
        found.text
    );
    let form = bob.get("/book?names=chifflot-7%2Cchifflot-8&duration=1h").await;
    assert!(form.text.contains("value=\"chifflot-7,chifflot-8\""), "{}", form.text);
    // What the policy will say, before booking.
    for line in ["<li>2 node-hours: 2 node(s) for 1h.</li>", "<li>Project p-other has no quota.</li>", "<li>It needs no admin"] {
        assert!(found.text.contains(line), "{line}: {}", found.text);
    }

    // Book it: a lease of bob's, on those nodes, at that time.
    let form = |csrf: &str| {
        [
            ("csrf", csrf.to_owned()),
            ("nodes", found.field("nodes")),
            ("start", start.clone()),
            ("duration", "1h".into()),
            ("filter", v100.into()),
            ("zoom", "week".into()),
        ]
    };
    let form = form(&found.field("csrf"));
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let booked = bob.post("/calendar/book", &pairs).await;
    assert_eq!(booked.status, StatusCode::SEE_OTHER, "{}", booked.text);
    let location = booked.location.expect("a redirect");
    let id: i64 = location.split("booked=").nth(1).and_then(|v| v.parse().ok()).expect("the lease booked");
    let lease = ctx.lease(id, &bob_token).await;
    assert_eq!(lease["nodes"], json!(["chifflot-7", "chifflot-8"]));
    assert_eq!(lease["start"], at(chrono::Duration::hours(3)).replace("+00:00", "Z"));
    let shown = bob.get(location.trim_start_matches(&ctx.url)).await;
    assert!(shown.text.contains(&format!("Lease {id} is booked")), "{}", shown.text);
    // The same slot again is taken: said, and the next one offered.
    let again = bob.post("/calendar/book", &pairs).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    assert!(again.text.contains("not booked: "), "{}", again.text);
    assert_eq!(again.field("start"), at(chrono::Duration::hours(4)));
    // Without the session's token, nothing is booked.
    let forged: Vec<(&str, &str)> = pairs.iter().map(|&(k, v)| if k == "csrf" { (k, "") } else { (k, v) }).collect();
    assert_eq!(bob.post("/calendar/book", &forged).await.status, StatusCode::FORBIDDEN);

    // A quota the slot does not fit: the policy's refusal is said (the
    // API's words and status), the chart stays, no slot is offered.
    ctx.patch("/api/v1/projects/p-other", &ctx.admin, json!({"quota_node_hours": 1})).await.expect(200);
    let refused = bob.get(find).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused
            .text
            .contains("<p class=\"error\" role=\"alert\">policy &#39;quota&#39;: project &#39;p-other&#39; has 0 of 1 node-hours left"),
        "{}",
        refused.text
    );
    assert!(refused.text.contains("<svg id=\"gantt\""));
    assert!(!refused.text.contains("Book these nodes"), "a refused slot is not offered");
    // A member of two projects chooses one: the preview runs the policy of
    // the one chosen (not offered without a choice, nor over its quota).
    ctx.user("carol", "p-vision").await;
    ctx.post("/api/v1/projects/p-other/members", &ctx.admin, json!({"user": "carol"})).await.expect(200);
    let mut carol = signed_in(&ctx, "carol").await;
    let unchosen = carol.get(find).await;
    assert!(unchosen.text.contains("<label for=\"project\">For project</label>"), "{}", unchosen.text);
    assert!(unchosen.text.contains("Not offered: project: you belong to several projects"), "{}", unchosen.text);
    let over = carol.get(&format!("{find}&project=p-other")).await;
    let at = over.text.find("<p class=\"error\" id=\"policy-refusal\">Not offered: policy &#39;quota&#39;").expect("the quota's refusal");
    assert!(!over.text[at..].contains("Book these nodes"));
    let fine = carol.get(&format!("{find}&project=p-vision")).await;
    assert!(fine.text.contains("<li>Project p-vision has no quota.</li>"), "{}", fine.text);
    assert_eq!(fine.field("project"), "p-vision");

    // Bad input is said beside its field.
    for (path, field, words) in [
        ("/calendar?filter=gpus+%3E%3E+2", "filter", "filter"),
        ("/calendar?count=two&duration=1h", "count", "count: a whole number of nodes"),
        ("/calendar?count=2&duration=soon", "duration", "duration"),
        ("/calendar?from=yesterday", "from", "from: a date, YYYY-MM-DD"),
    ] {
        let refused = bob.get(path).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{path}: {}", refused.text);
        let marker = format!("<p class=\"error\" id=\"{field}-error\">");
        let at = refused.text.find(&marker).unwrap_or_else(|| panic!("{path}: no error beside {field}: {}", refused.text));
        assert!(refused.text[at..].starts_with(&format!("{marker}{words}")), "{path}: {}", &refused.text[at..at + 200]);
        assert!(refused.text.contains("<svg id=\"gantt\""), "{path}: the chart is still drawn");
    }
}
