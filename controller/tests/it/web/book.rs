//! The booking page: check, then book; the quota's period; a booking
//! above the approval threshold.

use super::*;

#[tokio::test]
async fn the_booking_page_checks_then_books_a_deploy_with_the_profiles_keys() {
    let ctx = TestContext::with_fixtures().await;
    let alice = ctx.user("alice", "p-vision").await;
    let tiny = json!({"name": "tiny", "version": 1, "description": "test image", "image": "tiny.raw.zst", "format": "raw.zst",
        "sha256": "ab".repeat(32), "size": 50_331_648u64, "root_partition": 1, "visibility": "public"});
    ctx.post("/api/v1/environments", &ctx.admin, tiny).await.expect(201);
    for (name, key) in [("laptop", LEASE_KEY), ("desk", DESK_KEY)] {
        ctx.post("/api/v1/users/alice/ssh-keys", &alice, json!({"name": name, "public_key": key})).await.expect(201);
    }
    let mut browser = signed_in(&ctx, "alice").await;
    let form = browser.get("/book?count=2&duration=1h").await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.text);
    assert!(form.text.contains("<a href=\"/book\" aria-current=\"page\">Book</a>"), "in the navigation: {}", form.text);
    assert!(form.text.contains("<option value=\"admin/tiny\">tiny (version 1, by admin)</option>"), "{}", form.text);
    let keys = offered_keys(&form);
    assert_eq!(keys.len(), 2, "her two keys: {}", form.text);
    let chosen = |page: &Page| keys.iter().filter(|k| page.text.contains(&format!("name=\"key\" value=\"{k}\" checked>"))).count();
    assert_eq!(chosen(&form), 2, "all chosen at first");
    assert!(form.text.contains("id=\"count\" name=\"count\" inputmode=\"numeric\" size=\"4\" value=\"2\""), "filled from the query");
    assert!(!form.text.contains("value=\"book\">Book</button>"), "no booking before a check");
    let csrf = form.field("csrf");

    // Check: where, when, what the policy says; nothing booked.
    let start = "2026-11-23T10:00";
    let laptop = keys[0].as_str();
    let fields = [
        ("count", "2"),
        ("filter", "gpu_model LIKE '%V100%'"),
        ("when", "at"),
        ("start", start),
        ("duration", "1h"),
        ("environment", "admin/tiny"),
        ("key", laptop),
        ("name", "paper-run"),
    ];
    let checked = book_form(&mut browser, &csrf, "check", &fields).await;
    assert_eq!(checked.status, StatusCode::OK, "{}", checked.text);
    assert!(
        checked.text.contains("<p id=\"placement\">From 2026-11-23 10:00 UTC to 2026-11-23 11:00 UTC, on chifflot-7, chifflot-8.</p>"),
        "{}",
        checked.text
    );
    for line in ["<li>2 node-hours: 2 node(s) for 1h.</li>", "<li>Project p-vision has no quota.</li>", "<li>It needs no admin"] {
        assert!(checked.text.contains(line), "{line}: {}", checked.text);
    }
    assert!(checked.text.contains("value=\"book\">Book</button>"), "{}", checked.text);
    assert!(checked.text.contains("<p id=\"filter-result\" role=\"status\">Matching nodes: 2.</p>"), "counted: {}", checked.text);
    assert_eq!(chosen(&checked), 1, "the key chosen stays chosen, the other not");
    assert_eq!(ctx.get("/api/v1/leases", &alice).await.expect(200), json!([]), "a check books nothing");

    // Book: the lease is the API's, with the environment and the chosen key.
    let booked = book_form(&mut browser, &csrf, "book", &fields).await;
    assert_eq!(booked.status, StatusCode::SEE_OTHER, "{}", booked.text);
    let location = booked.location.expect("a redirect");
    let id: i64 = location.strip_prefix("/leases/").and_then(|id| id.parse().ok()).unwrap_or_else(|| panic!("{location}"));
    let lease = ctx.lease(id, &alice).await;
    assert_eq!(lease["nodes"], json!(["chifflot-7", "chifflot-8"]));
    assert_eq!(lease["start"], "2026-11-23T10:00:00Z");
    assert_eq!(lease["end"], "2026-11-23T11:00:00Z");
    assert_eq!((&lease["type"], &lease["name"], &lease["state"]), (&json!("deploy"), &json!("paper-run"), &json!("pending")));
    assert_eq!(lease["deploy"], json!({"environment": "admin/tiny", "ssh_keys": [LEASE_KEY]}));
    let shown = browser.get(&location).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text);
    assert!(shown.text.contains("<dd id=\"lease-deploys\">admin/tiny, with 1 SSH key(s), when it starts</dd>"), "{}", shown.text);

    // Without the session's token, nothing is booked.
    let forged = book_form(&mut browser, "", "book", &fields).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    // Bad input is said beside its field, as typed, and nothing is booked.
    for (field, value, action, words) in [
        ("filter", "gpus >> 2", "check", "filter: "),
        ("duration", "soon", "book", "not booked: duration: "),
        ("count", "two", "book", "nodes.count: a whole number of nodes"),
        ("start", "tomorrow", "check", "start: a time in UTC"),
        ("environment", "nobody/nothing", "book", "not booked: deploy.environment: "),
    ] {
        let bad: Vec<(&str, &str)> = fields.iter().map(|&(k, v)| if k == field { (k, value) } else { (k, v) }).collect();
        let refused = book_form(&mut browser, &csrf, action, &bad).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{field}: {}", refused.text);
        let said = error_beside(&refused, field);
        assert!(said.starts_with(&escaped(words)) || said.starts_with(words), "{field}: {said}");
        assert!(refused.text.contains(&format!("aria-describedby=\"{field}-error\"")) || field == "filter", "{field}");
        if field != "environment" {
            assert!(refused.text.contains(&format!("value=\"{}\"", escaped(value))), "{field} as typed: {}", refused.text);
        }
        assert!(!refused.text.contains("value=\"book\">Book</button>"), "{field}");
    }
    assert_eq!(ctx.get("/api/v1/leases", &alice).await.expect(200).as_array().map(Vec::len), Some(1), "only the lease booked");
}

#[tokio::test]
async fn the_booking_preview_counts_the_quota_of_the_period_the_lease_starts_in() {
    let ctx = TestContext::with_fixtures().await;
    let alice = ctx.user("alice", "p-vision").await;
    ctx.patch("/api/v1/projects/p-vision", &ctx.admin, json!({"quota_node_hours": 10})).await.expect(200);
    // 4 node-hours this month (the test's clock: 2026-11-23).
    ctx.post("/api/v1/leases", &alice, json!({"nodes": {"count": 2}, "duration": "2h"})).await.expect(201);
    let mut browser = signed_in(&ctx, "alice").await;
    let csrf = browser.get("/book").await.field("csrf");
    let check = async |browser: &mut Browser, start: &str| {
        let fields = [("count", "1"), ("when", "at"), ("start", start), ("duration", "1h")];
        let page = book_form(browser, &csrf, "check", &fields).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        page
    };
    let this_month = check(&mut browser, "2026-11-25T10:00").await;
    assert!(
        this_month
            .text
            .contains("<li>Project p-vision: 4 of its 10 node-hours booked from 2026-11-01 00:00 UTC to 2026-12-01 00:00 UTC.</li>"),
        "{}",
        this_month.text
    );
    // December's quota is untouched, whatever November holds.
    let next_month = check(&mut browser, "2026-12-02T10:00").await;
    assert!(
        next_month
            .text
            .contains("<li>Project p-vision: 0 of its 10 node-hours booked from 2026-12-01 00:00 UTC to 2027-01-01 00:00 UTC.</li>"),
        "{}",
        next_month.text
    );
}

#[tokio::test]
async fn a_booking_above_the_approval_threshold_says_it_waits_and_waits() {
    let ctx = with_approval_threshold().await;
    let alice = ctx.user("alice", "p-vision").await;
    let mut browser = signed_in(&ctx, "alice").await;
    let csrf = browser.get("/book").await.field("csrf");
    // 2 nodes x 6h = 12 node-hours > 10, as soon as possible: after the
    // approval notice.
    let fields = [("count", "2"), ("filter", "cluster = 'chifflot'"), ("when", "asap"), ("duration", "6h"), ("name", "big-run")];
    let checked = book_form(&mut browser, &csrf, "check", &fields).await;
    assert_eq!(checked.status, StatusCode::OK, "{}", checked.text);
    assert!(
        checked.text.contains("<p id=\"placement\">From 2026-11-23 09:00 UTC to 2026-11-23 15:00 UTC, on chifflot-"),
        "{}",
        checked.text
    );
    assert!(
        checked
            .text
            .contains("<li>It waits for an admin&#39;s approval: 12 node-hours is above the approval threshold of 10 node-hours.</li>"),
        "{}",
        checked.text
    );
    let booked = book_form(&mut browser, &csrf, "book", &fields).await;
    assert_eq!(booked.status, StatusCode::SEE_OTHER, "{}", booked.text);
    let location = booked.location.expect("a redirect");
    let id: i64 = location.strip_prefix("/leases/").and_then(|id| id.parse().ok()).unwrap_or_else(|| panic!("{location}"));
    let lease = ctx.lease(id, &alice).await;
    assert_eq!((&lease["state"], &lease["start"]), (&json!("awaiting_approval"), &json!("2026-11-23T09:00:00Z")));
    let shown = browser.get(&location).await;
    assert!(shown.text.contains("<dd id=\"lease-state\">awaiting_approval (waits for an admin"), "{}", shown.text);
    // In the admin's queue.
    let mut admin = signed_in(&ctx, "admin").await;
    let queue = admin.get("/admin/leases").await;
    assert!(queue.text.contains(&format!("Lease {id} (big-run) by alice")), "{}", queue.text);
}
