//! The admin's pages: the approval queues (account requests, a project
//! manager's, leases awaiting approval), nodes with maintenance and power.

use super::*;

#[tokio::test]
async fn an_admin_decides_account_requests_in_the_portal() {
    let ctx = TestContext::empty().await;
    ctx.user("alice", "p-vision").await;
    let erin = account_request(&ctx, "erin").await;
    let fred = account_request(&ctx, "fred").await;
    let mut admin = signed_in(&ctx, "admin").await;
    assert!(admin.get("/").await.text.contains("<a href=\"/admin\">Admin</a>"), "admins have the Admin entry");
    let index = admin.get("/admin").await;
    assert_eq!(index.status, StatusCode::OK, "{}", index.text);
    assert!(index.text.contains("Account requests</a>: 2 waiting") && index.text.contains("0 waiting"), "{}", index.text);
    let queue = admin.get("/admin/account-requests").await;
    assert_eq!(queue.status, StatusCode::OK, "{}", queue.text);
    for fact in [
        &format!("Request {erin}: erin") as &str,
        "<dd>erin@uni.example</dd>",
        "<dt>E-mail confirmed</dt><dd>no: no mail server is configured</dd>",
        "Université de Nantes",
        "<dd>Student</dd>",
        "<dd>p-robots</dd>",
        "Benchmarking ROS 2 planners on GPUs for my thesis.",
        "2026-",
    ] {
        assert!(queue.text.contains(fact), "{fact} in {}", queue.text);
    }
    let csrf = queue.field("csrf");
    // Each page shows the session's token masked afresh (pages are
    // gzipped: no fixed secret in them); every masking of it is accepted.
    let remasked = admin.get("/admin/account-requests").await.field("csrf");
    assert_ne!(csrf, remasked);

    // Users have no Admin entry, get a 403 page in words, and their forms
    // (with their own session's token) change nothing.
    let mut alice = signed_in(&ctx, "alice").await;
    let home = alice.get("/").await;
    assert!(home.text.contains("Welcome, alice") && !home.text.contains("/admin"), "{}", home.text);
    for (path, why) in [
        ("/admin", "this operation is for admins"),
        ("/admin/account-requests", "account requests are decided by admins and by the managers of the projects asked for"),
        ("/admin/leases", "this operation is for admins"),
    ] {
        let refused = alice.get(path).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}");
        assert!(refused.text.contains("<h1>Not allowed</h1>") && refused.text.contains(why), "{}", refused.text);
        assert!(!refused.text.contains("erin"), "{}", refused.text);
    }
    let her_csrf = home.field("csrf");
    let refused = alice.post(&format!("/admin/account-requests/{erin}/approve"), &[("csrf", &her_csrf)]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    let refused = alice.post(&format!("/admin/account-requests/{erin}/reject"), &[("csrf", &her_csrf), ("reason", "no")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    // Without the session's anti-forgery token, not even an admin's form.
    for token in ["", "ferrum_guess"] {
        let forged = admin.post(&format!("/admin/account-requests/{erin}/approve"), &[("csrf", token)]).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text);
        assert!(forged.text.contains("did not come from this site"), "{}", forged.text);
    }
    assert_eq!(request_state(&ctx, erin).await["state"], "pending");

    // A rejection needs a reason: said beside the field, the request stays.
    let empty = admin.post(&format!("/admin/account-requests/{fred}/reject"), &[("csrf", &csrf), ("reason", "  ")]).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST, "{}", empty.text);
    assert!(empty.text.contains(&format!("id=\"reject-{fred}-error\">reason: 1 to 1000 characters of text</p>")), "{}", empty.text);
    assert!(empty.text.contains(&format!("aria-describedby=\"reject-{fred}-error\"")), "{}", empty.text);
    assert_eq!(request_state(&ctx, fred).await["state"], "pending");
    let rejected =
        admin.post(&format!("/admin/account-requests/{fred}/reject"), &[("csrf", &remasked), ("reason", "no such thesis")]).await;
    assert_eq!(rejected.status, StatusCode::SEE_OTHER, "{}", rejected.text);
    assert_eq!(rejected.location.as_deref(), Some(format!("/admin/account-requests?rejected={fred}").as_str()));
    let after = admin.get(rejected.location.as_deref().expect("location")).await;
    assert!(after.text.contains(&format!("Request {fred} rejected.")) && !after.text.contains("Request {fred}: fred"), "{}", after.text);
    let fred_row = request_state(&ctx, fred).await;
    assert_eq!((fred_row["state"].as_str(), fred_row["reason"].as_str()), (Some("rejected"), Some("no such thesis")));

    // Approval without a mail server: the admin is given the activation
    // link (kept out of caches), never the first API token.
    let approved = admin.post(&format!("/admin/account-requests/{erin}/approve"), &[("csrf", &csrf)]).await;
    assert_eq!(approved.status, StatusCode::CREATED, "{}", approved.text);
    assert_eq!(approved.cache_control.as_deref(), Some("no-store"));
    assert!(approved.text.contains("User <strong>erin</strong> is created, in project <strong>p-robots</strong>"), "{}", approved.text);
    assert!(approved.text.contains("No mail server is configured"), "{}", approved.text);
    let start = approved.text.find("<code id=\"activation-url\">").expect("the link shown") + "<code id=\"activation-url\">".len();
    let url = approved.text[start..].split('<').next().expect("link text").to_owned();
    assert!(url.starts_with(&format!("{}/activate/ferrum_", ctx.url)), "{url}");
    assert_eq!(approved.text.matches("ferrum_").count(), 1, "the link, nothing else (the session's token is masked): {}", approved.text);
    assert_eq!(request_state(&ctx, erin).await["state"], "approved");
    // Deciding again: the queue, with why at its top.
    let again = admin.post(&format!("/admin/account-requests/{erin}/approve"), &[("csrf", &csrf)]).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    assert!(again.text.contains("this account request was already decided"), "{}", again.text);
    assert!(again.text.contains("No account request is waiting."), "{}", again.text);

    let mut erin_browser = Browser::new(&ctx);
    assert_eq!(erin_browser.activate(&url, PASSWORD).await.status, StatusCode::SEE_OTHER);
    assert_eq!(erin_browser.sign_in("erin", PASSWORD).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_project_manager_decides_the_requests_to_join_it_in_the_portal() {
    let ctx = TestContext::empty().await;
    ctx.user("lea", "p-robots").await;
    ctx.patch("/api/v1/projects/p-robots", &ctx.admin, json!({"manager": "lea"})).await.expect(200);
    let erin = account_request(&ctx, "erin").await;
    let ask = json!({"name": "zoe", "email": "zoe@uni.example", "affiliation": "Nantes", "project": "p-new", "motivation": "A new project of mine."});
    ctx.request(reqwest::Method::POST, "/api/v1/account-requests", None, Some(&ask)).await.expect(202);

    // Her home page points to the queue, which shows her project's request
    // only, without the admin's links.
    let mut lea = signed_in(&ctx, "lea").await;
    let home = lea.get("/").await;
    assert!(
        home.text.contains("<a href=\"/admin/account-requests\">1 account request to join it</a> waits for your decision"),
        "{}",
        home.text
    );
    assert!(!home.text.contains("<a href=\"/admin\">"), "no Admin entry: {}", home.text);
    let queue = lea.get("/admin/account-requests").await;
    assert_eq!(queue.status, StatusCode::OK, "{}", queue.text);
    assert!(queue.text.contains(&format!("Request {erin}: erin")), "{}", queue.text);
    assert!(!queue.text.contains("zoe") && !queue.text.contains("/admin/leases"), "{}", queue.text);
    let approved = lea.post(&format!("/admin/account-requests/{erin}/approve"), &[("csrf", &queue.field("csrf"))]).await;
    assert_eq!(approved.status, StatusCode::CREATED, "{}", approved.text);
    assert!(approved.text.contains("User <strong>erin</strong> is created, in project <strong>p-robots</strong>"), "{}", approved.text);
    assert_eq!(request_state(&ctx, erin).await["state"], "approved");
    assert!(lea.get("/").await.text.contains("0 account requests to join it</a> wait for your decision"));
}

#[tokio::test]
async fn an_approval_in_the_portal_mails_the_activation_link() {
    let smtp = crate::it::smtp::Smtp::start().await;
    let mut config = Config::default();
    config.mail.smtp_url = Some(smtp.url());
    let ctx = TestContext::empty_configured(config, std::sync::Arc::new(ferrum_controller::app::conductor::SimConductor)).await;
    let id = account_request(&ctx, "gina").await;
    let mut admin = signed_in(&ctx, "admin").await;
    let queue = admin.get("/admin/account-requests").await;
    assert!(queue.text.contains("<dd>gina@uni.example</dd>\n<dt>E-mail confirmed</dt><dd>not yet</dd>"), "{}", queue.text);
    // Gina follows the mail's link: the queue says so.
    let mail = smtp.wait_for("gina@uni.example", "/verify-email/").await;
    let path = crate::it::smtp::link(&mail, &format!("{}/verify-email/", ctx.url)).trim_start_matches(&ctx.url).to_owned();
    let mut gina = Browser::new(&ctx);
    let form = gina.get(&path).await;
    assert_eq!(gina.post(&path, &[("form_token", &form.field("form_token"))]).await.status, StatusCode::OK);
    let queue = admin.get("/admin/account-requests").await;
    assert!(queue.text.contains("<dt>E-mail confirmed</dt><dd>yes, on 2026-"), "{}", queue.text);
    let approved = admin.post(&format!("/admin/account-requests/{id}/approve"), &[("csrf", &queue.field("csrf"))]).await;
    assert_eq!(approved.status, StatusCode::CREATED, "{}", approved.text);
    assert!(approved.text.contains("The link where gina sets their password was mailed to gina@uni.example."), "{}", approved.text);
    assert!(!approved.text.contains("/activate/"), "mailed, not shown: {}", approved.text);
    let mail = smtp.wait_for("gina@uni.example", "/activate/").await;
    let url = crate::it::smtp::link(&mail, &format!("{}/activate/", ctx.url));
    assert_eq!(gina.activate(&url, PASSWORD).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn an_admin_decides_waiting_leases_in_the_portal() {
    let ctx = with_approval_threshold().await;
    let alice = ctx.user("alice", "p-vision").await;
    // 2 nodes x 6h = 12 node-hours > 10: waits for an admin.
    let big = json!({"name": "big-run", "nodes": {"names": ["chifflot-1", "chifflot-2"]}, "start": at(chrono::Duration::hours(2)), "duration": "6h"});
    let big = ctx.post("/api/v1/leases", &alice, big).await.expect(201);
    assert_eq!(big["state"], "awaiting_approval");
    let big = big["id"].as_i64().expect("id");
    let other = ctx.post("/api/v1/leases", &alice, json!({"nodes": {"count": 3}, "duration": "4h"})).await.expect(201);
    let other = other["id"].as_i64().expect("id");
    let state = async |id: i64| ctx.lease(id, &alice).await;

    let mut admin = signed_in(&ctx, "admin").await;
    let queue = admin.get("/admin/leases").await;
    assert_eq!(queue.status, StatusCode::OK, "{}", queue.text);
    for fact in [
        &format!("Lease {big} (big-run) by alice") as &str,
        "<dd>alice, project p-vision</dd>",
        "<dd>2: chifflot-1, chifflot-2</dd>",
        "<dd>12</dd>",
        "12 node-hours is above the approval threshold of 10 node-hours",
        &format!("Lease {other} by alice"),
    ] {
        assert!(queue.text.contains(fact), "{fact} in {}", queue.text);
    }
    let csrf = queue.field("csrf");

    // A user: 403, and her own session's token changes nothing.
    let mut user = signed_in(&ctx, "alice").await;
    let her_csrf = user.get("/").await.field("csrf");
    for decision in ["approve", "reject"] {
        let refused = user.post(&format!("/admin/leases/{big}/{decision}"), &[("csrf", &her_csrf)]).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    }
    // No anti-forgery token: refused.
    let forged = admin.post(&format!("/admin/leases/{big}/approve"), &[("reason", "ok")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text);
    assert_eq!(state(big).await["state"], "awaiting_approval");

    // A note the application refuses is said beside its field, as typed.
    let bad = admin.post(&format!("/admin/leases/{big}/approve"), &[("csrf", &csrf), ("reason", "fine\u{202e}")]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
    assert!(bad.text.contains(&format!("id=\"approve-{big}-error\">reason: ")), "{}", bad.text);
    assert!(bad.text.contains(&format!("aria-describedby=\"approve-{big}-error\"")), "{}", bad.text);
    assert_eq!(state(big).await["state"], "awaiting_approval");

    let approved = admin.post(&format!("/admin/leases/{big}/approve"), &[("csrf", &csrf), ("reason", "fine for the paper")]).await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER, "{}", approved.text);
    assert_eq!(approved.location.as_deref(), Some(format!("/admin/leases?approved={big}").as_str()));
    let lease = state(big).await;
    assert_eq!((lease["state"].as_str(), lease["reason"].as_str()), (Some("pending"), Some("approved by admin: fine for the paper")));
    let after = admin.get(approved.location.as_deref().expect("location")).await;
    assert!(after.text.contains(&format!("Lease {big} approved: it starts on time.")), "{}", after.text);
    assert!(!after.text.contains(&format!("Lease {big} (big-run)")), "it left the queue: {}", after.text);

    let rejected = admin.post(&format!("/admin/leases/{other}/reject"), &[("csrf", &csrf), ("reason", "")]).await;
    assert_eq!(rejected.status, StatusCode::SEE_OTHER, "{}", rejected.text);
    let lease = state(other).await;
    assert_eq!((lease["state"].as_str(), lease["reason"].as_str()), (Some("rejected"), Some("rejected by admin")));
    // A lease decided already: the queue, with why at its top.
    let again = admin.post(&format!("/admin/leases/{big}/reject"), &[("csrf", &csrf)]).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    assert!(again.text.contains("No lease is waiting."), "{}", again.text);
}

#[tokio::test]
async fn the_admin_sees_every_node_with_its_state_reason_power_and_lease() {
    use ferrum_controller::power::PowerError;
    let ctx = TestContext::empty().await;
    let dead = node_with_bmc(&ctx, "sim-1", "sim", 1).await;
    let suspect = node_with_bmc(&ctx, "sim-2", "sim", 2).await;
    node_with_bmc(&ctx, "sim-3", "sim", 3).await;
    ctx.post("/api/v1/nodes", &ctx.admin, json!({"name": "lab-1", "site": "lab", "cluster": "other", "macs": ["02:00:00:00:0d:01"]}))
        .await
        .expect(201);
    ctx.wait_nodes_available(4).await;
    // sim-1's BMC stops answering (dead), sim-2's refuses its password
    // (suspect); alice holds sim-3.
    dead.fail_with(Some(PowerError::Unreachable { bmc: "10.9.2.1:623".into(), tries: 1 }));
    suspect.fail_with(Some(PowerError::Auth { bmc: "10.9.2.2:623".into() }));
    ctx.post("/api/v1/nodes/sim-1/power", &ctx.admin, json!({"action": "status"})).await.error(502, "bmc_error");
    ctx.post("/api/v1/nodes/sim-2/power", &ctx.admin, json!({"action": "status"})).await.error(502, "bmc_error");
    assert_eq!((ctx.node_state("sim-1").await, ctx.node_state("sim-2").await), ("dead".to_owned(), "suspect".to_owned()));
    let alice = ctx.user("alice", "p-vision").await;
    let lease =
        ctx.post("/api/v1/leases", &alice, json!({"name": "run", "nodes": {"names": ["sim-3"]}, "duration": "1h"})).await.expect(201);
    let lease = lease["id"].as_i64().expect("id");
    ctx.wait_lease_state(lease, &alice, "active").await;

    let mut admin = signed_in(&ctx, "admin").await;
    let index = admin.get("/admin").await;
    assert!(index.text.contains("4 in all, 2 suspect or dead, 0 in maintenance."), "{}", index.text);
    let list = admin.get("/admin/nodes").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    no_bmc_secret(&list);
    let row = |page: &Page, node: &str| {
        let start = page.text.find(&format!("<tr id=\"node-{node}\">")).unwrap_or_else(|| panic!("no row of {node} in {}", page.text));
        page.text[start..].split("</tr>").next().unwrap_or_default().to_owned()
    };
    let sim1 = row(&list, "sim-1");
    assert!(sim1.contains("<td>dead</td>"), "{sim1}");
    assert!(sim1.contains("no answer from BMC 10.9.2.1:623 after 1 tries ("), "{sim1}");
    let sim2 = row(&list, "sim-2");
    assert!(sim2.contains("<td>suspect</td>") && sim2.contains("BMC 10.9.2.2:623 refused the credentials"), "{sim2}");
    let sim3 = row(&list, "sim-3");
    assert!(sim3.contains(&format!("lease {lease} (run) of alice, active until")), "{sim3}");
    let lab1 = row(&list, "lab-1");
    assert!(lab1.contains("<td>available</td>") && lab1.contains("<td>no BMC</td>") && lab1.contains("<td>none</td>"), "{lab1}");
    assert!(list.text.contains("All 4 nodes"), "{}", list.text);

    // Filters, on the server.
    let dead_only = admin.get("/admin/nodes?state=dead").await;
    assert!(dead_only.text.contains("node-sim-1") && !dead_only.text.contains("node-sim-2"), "{}", dead_only.text);
    assert!(dead_only.text.contains("1 of 4 nodes, state dead"), "{}", dead_only.text);
    let other = admin.get("/admin/nodes?cluster=other&state=").await;
    assert!(other.text.contains("node-lab-1") && !other.text.contains("node-sim-"), "{}", other.text);
    let none = admin.get("/admin/nodes?cluster=other&state=dead").await;
    assert!(none.text.contains("No node matches."), "{}", none.text);
    let wrong = admin.get("/admin/nodes?state=asleep").await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert!(wrong.text.contains("state: one of enrolling, available"), "{}", wrong.text);

    // A node's page: the same facts, its events, no BMC secret.
    let page = admin.get("/admin/nodes/sim-1").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    no_bmc_secret(&page);
    assert!(page.text.contains("<dt>State</dt><dd>dead</dd>"), "{}", page.text);
    assert!(page.text.contains("available → dead"), "{}", page.text);
    assert_eq!(admin.get("/admin/nodes/nowhere").await.status, StatusCode::NOT_FOUND);

    // Users: the 403 page, and their own token changes nothing.
    let held = ctx.node_state("sim-3").await;
    let mut user = signed_in(&ctx, "alice").await;
    let her_csrf = user.get("/").await.field("csrf");
    for path in ["/admin/nodes", "/admin/nodes/sim-3", "/admin/audit"] {
        let refused = user.get(path).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}: {}", refused.text);
    }
    let refused = user.post("/admin/nodes/sim-3/power", &[("csrf", &her_csrf), ("action", "off")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    let refused = user.post("/admin/nodes/sim-3/maintenance", &[("csrf", &her_csrf), ("enabled", "true"), ("reason", "mine")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert_eq!(ctx.node_state("sim-3").await, held);
    let events = ctx.get("/api/v1/nodes/sim-3/events", &ctx.admin).await.expect(200);
    assert!(!events.to_string().contains("mine"), "{events}");
}

#[tokio::test]
async fn the_admin_puts_a_node_in_maintenance_and_powers_it_from_the_portal() {
    // A short wait for the BMC: a held one leaves the request queued.
    let mut config = Config::default();
    config.power.request_wait = std::time::Duration::from_millis(200);
    let ctx = TestContext::empty_configured(config, std::sync::Arc::new(SimConductor)).await;
    let bmc = node_with_bmc(&ctx, "sim-1", "sim", 1).await;
    ctx.post("/api/v1/nodes", &ctx.admin, json!({"name": "lab-1", "site": "lab", "cluster": "other", "macs": ["02:00:00:00:0d:01"]}))
        .await
        .expect(201);
    ctx.wait_nodes_available(2).await;
    let mut admin = signed_in(&ctx, "admin").await;
    let mut pages = Vec::new();

    let page = admin.get("/admin/nodes/sim-1").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("Start maintenance"), "{}", page.text);
    let csrf = page.field("csrf");
    let maintenance = "/admin/nodes/sim-1/maintenance";

    // Without the session's token: refused, nothing changes.
    let forged = admin.post(maintenance, &[("enabled", "true"), ("reason", "forged")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text);
    assert_eq!(ctx.node_state("sim-1").await, "available");
    // Without a reason: the application's words beside the field.
    let bare = admin.post(maintenance, &[("csrf", &csrf), ("enabled", "true"), ("reason", " ")]).await;
    assert_eq!(bare.status, StatusCode::BAD_REQUEST, "{}", bare.text);
    assert!(bare.text.contains("id=\"maintenance-error\">reason: say why"), "{}", bare.text);
    assert!(bare.text.contains("aria-describedby=\"maintenance-error\""), "{}", bare.text);

    let on = admin.post(maintenance, &[("csrf", &csrf), ("enabled", "true"), ("reason", "disk swap")]).await;
    assert_eq!(on.status, StatusCode::SEE_OTHER, "{}", on.text);
    assert_eq!(on.location.as_deref(), Some("/admin/nodes/sim-1?maintenance=on"));
    assert_eq!(ctx.node_state("sim-1").await, "maintenance");
    let page = admin.get("/admin/nodes/sim-1?maintenance=on").await;
    assert!(page.text.contains("sim-1 is in maintenance now: no new lease gets it."), "{}", page.text);
    assert!(page.text.contains("End maintenance") && page.text.contains("<dt>Maintenance</dt><dd>yes</dd>"), "{}", page.text);
    let listed = admin.get("/admin/nodes?state=maintenance").await;
    assert!(listed.text.contains("<td>maintenance</td><td>disk swap (admin, "), "{}", listed.text);
    pages.extend([page, listed]);
    let off = admin.post(maintenance, &[("csrf", &csrf), ("enabled", "false"), ("reason", "disk swapped")]).await;
    assert_eq!(off.location.as_deref(), Some("/admin/nodes/sim-1?maintenance=off"));
    assert_eq!(ctx.node_state("sim-1").await, "available");

    // Power: a BMC slow to answer leaves the request queued; the page
    // says so, and on reload how it ended.
    let power = "/admin/nodes/sim-1/power";
    let forged = admin.post(power, &[("action", "cycle")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text);
    let odd = admin.post(power, &[("csrf", &csrf), ("action", "reboot")]).await;
    assert_eq!(odd.status, StatusCode::BAD_REQUEST, "{}", odd.text);
    assert!(odd.text.contains("id=\"power-error\">action: one of on, off, soft-off, cycle, status"), "{}", odd.text);
    assert!(bmc.operations().is_empty(), "{:?}", bmc.operations());
    bmc.hold(true);
    let asked = admin.post(power, &[("csrf", &csrf), ("action", "cycle")]).await;
    assert_eq!(asked.status, StatusCode::SEE_OTHER, "{}", asked.text);
    let outcome = asked.location.expect("the node page");
    assert!(outcome.starts_with("/admin/nodes/sim-1?power="), "{outcome}");
    let id = outcome.rsplit('=').next().expect("id").to_owned();
    let waiting = admin.get(&outcome).await;
    assert!(waiting.text.contains(&format!("Power request {id} (power cycle) of sim-1 is ")), "{}", waiting.text);
    assert!(waiting.text.contains("Reload this page to see how it ends."), "{}", waiting.text);
    bmc.hold(false);
    let done = wait_until("the cycle done, on reload", DEADLINE, async || {
        let page = admin.get(&outcome).await;
        if page.text.contains(&format!("Power request {id} (power cycle) of sim-1 is done at ")) { Ok(page) } else { Err(page.text) }
    })
    .await;
    assert!(done.text.contains(": the power is on."), "{}", done.text);
    assert_eq!(bmc.operations(), ["cycle"]);
    pages.extend([waiting, done]);
    // No BMC: the refusal in words, beside the buttons.
    let lab = admin.get("/admin/nodes/lab-1").await;
    assert!(lab.text.contains("This node has no BMC"), "{}", lab.text);
    let nobmc = admin.post("/admin/nodes/lab-1/power", &[("csrf", &csrf), ("action", "on")]).await;
    assert_eq!(nobmc.status, StatusCode::CONFLICT, "{}", nobmc.text);
    assert!(nobmc.text.contains("id=\"power-error\">node &#39;lab-1&#39; has no BMC"), "{}", nobmc.text);

    // The audit log: both maintenance changes and the power request,
    // newest first, filtered on the server.
    let audit = admin.get("/admin/audit").await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.text);
    let at = |text: &str| audit.text.find(text).unwrap_or_else(|| panic!("{text} in {}", audit.text));
    let (power_at, off_at, on_at) = (
        at("operation: cycle; request: "),
        at("maintenance: false; reason: disk swapped</td>"),
        at("maintenance: true; reason: disk swap</td>"),
    );
    assert!(power_at < off_at && off_at < on_at, "newest first: {}", audit.text);
    assert!(audit.text.contains("<a href=\"/admin/nodes/sim-1\">node/sim-1</a>"), "{}", audit.text);
    let filtered = admin.get("/admin/audit?action=node.maintenance&target=node%2Fsim-1&actor=admin&from=2000-01-01").await;
    assert!(filtered.text.contains("2 entries, newest first"), "{}", filtered.text);
    assert!(!filtered.text.contains("operation: cycle"), "{}", filtered.text);
    let past = admin.get("/admin/audit?to=2000-01-01").await;
    assert!(past.text.contains("No entry matches."), "{}", past.text);
    let wrong = admin.get("/admin/audit?from=last+week").await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert!(wrong.text.contains("id=\"audit-error\">from: a time in UTC"), "{}", wrong.text);
    pages.extend([audit, filtered]);

    // Paged back by id: 50 a page, the filters kept.
    for i in 0..30 {
        for enabled in [true, false] {
            let body = json!({"enabled": enabled, "reason": format!("round {i}")});
            ctx.post("/api/v1/nodes/lab-1/maintenance", &ctx.admin, body).await.expect(200);
        }
    }
    let first = admin.get("/admin/audit?target=node%2Flab-1").await;
    assert!(first.text.contains("50 entries, newest first"), "{}", first.text);
    let marker = "<a href=\"/admin/audit?target=node%2Flab-1&#38;before=";
    let start = first.text.find(marker).unwrap_or_else(|| panic!("an older page in {}", first.text)) + marker.len();
    let before: String = first.text[start..].chars().take_while(char::is_ascii_digit).collect();
    let older = admin.get(&format!("/admin/audit?target=node%2Flab-1&before={before}")).await;
    // 60 changes and the node's enrolment: 11 older ones.
    assert!(older.text.contains("11 entries, older ones, newest first"), "{}", older.text);
    assert!(older.text.contains("reason: round 0</td>") && older.text.contains("node.add"), "{}", older.text);
    assert!(!older.text.contains("Older entries"), "{}", older.text);
    assert!(older.text.contains("Newest entries"), "{}", older.text);
    pages.extend([first, older]);
    for page in &pages {
        no_bmc_secret(page);
    }
}
