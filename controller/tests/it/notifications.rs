//! Notifications (issue 19, item 7): a lease approved, rejected, started,
//! ending soon, a deployment done or failed, each recorded once for its
//! owner and mailed once (a real SMTP server, aiosmtpd, catches the mail);
//! the portal's page lists a user's own and marks them read.

use std::sync::Arc;

use chrono::Duration;
use ferrum_controller::app::conductor::SimConductor;
use ferrum_controller::config::{Config, PolicyConfig};
use ferrum_controller::db::NotificationRow;
use ferrum_controller::model::NotificationKind;
use reqwest::StatusCode;
use serde_json::json;

use super::harness::{DEADLINE, TestContext, at, wait_until};
use super::smtp::Smtp;
use super::web::signed_in;

/// A user in `project` with an e-mail address; their token.
async fn user_with_mail(ctx: &TestContext, name: &str, project: &str) -> String {
    let a = ctx.post("/api/v1/projects", &ctx.admin, json!({"name": project})).await;
    assert!(a.status == 201 || a.status == 409, "{a:?}");
    let body = json!({"name": name, "projects": [project], "email": format!("{name}@lab.example")});
    ctx.post("/api/v1/users", &ctx.admin, body).await.expect(201)["token"].as_str().expect("token").to_owned()
}

/// The user's notifications, newest first, as stored.
async fn stored(ctx: &TestContext, user: &str) -> Vec<NotificationRow> {
    let store = ctx.store().await;
    let id = store.get_user(user).await.expect("the user").id;
    store.notifications(id, 100).await.expect("notifications")
}

/// How many of `kind` the user has about `lease`.
fn count(rows: &[NotificationRow], lease: i64, kind: NotificationKind) -> usize {
    rows.iter().filter(|n| n.lease.0 == lease && n.kind == kind).count()
}

/// Waits until the user has one notification of `kind` about `lease`.
async fn wait_notified(ctx: &TestContext, user: &str, lease: i64, kind: NotificationKind) -> NotificationRow {
    wait_until(&format!("{user} told {kind} of lease {lease}"), DEADLINE, async || {
        let rows = stored(ctx, user).await;
        match rows.iter().find(|n| n.lease.0 == lease && n.kind == kind) {
            Some(n) => Ok(n.clone()),
            None => Err(format!("{rows:?}")),
        }
    })
    .await
}

/// Mails to `to` holding `needle`.
fn mails(smtp: &Smtp, to: &str, needle: &str) -> usize {
    smtp.messages().iter().filter(|m| m.contains(&format!("To: {to}")) && m.contains(needle)).count()
}

#[tokio::test]
async fn a_lease_is_told_approved_rejected_started_and_ending_once_each_by_mail_too() {
    let smtp = Smtp::start().await;
    let mut config = Config {
        policy: PolicyConfig {
            approval_threshold_node_hours: 10.0,
            approval_notice: std::time::Duration::from_secs(3600),
            ..PolicyConfig::default()
        },
        ..Config::default()
    };
    config.mail.smtp_url = Some(smtp.url());
    let ctx = TestContext::empty_configured(config, Arc::new(SimConductor)).await;
    ctx.import_fixtures().await;
    ctx.wait_nodes_available(10).await;
    let alice = user_with_mail(&ctx, "alice", "p-vision").await;
    let lease = async |body: serde_json::Value| ctx.post("/api/v1/leases", &alice, body).await.expect(201)["id"].as_i64().expect("id");
    // 2 nodes x 6h: above the threshold of 10 node-hours, both wait.
    let big = json!({"nodes": {"names": ["chifflot-1", "chifflot-2"]}, "start": at(Duration::hours(2)), "duration": "6h"});
    let approved = lease(big.clone()).await;
    let mut other = big.clone();
    other["nodes"] = json!({"names": ["chifflot-3", "chifflot-4"]});
    let rejected = lease(other).await;
    // No admin decides on this one before its start.
    let mut undecided = big;
    undecided["nodes"] = json!({"names": ["chifflot-6", "chifflot-7"]});
    let expired = lease(undecided).await;
    // 1 node x 6.5h needs no approval; it ends 30 minutes after `approved`.
    let small = lease(json!({"nodes": {"names": ["chifflot-5"]}, "start": at(Duration::hours(2)), "duration": "390m"})).await;

    ctx.post(&format!("/api/v1/leases/{approved}/approve"), &ctx.admin, json!({"reason": "ok for the paper"})).await.expect(200);
    ctx.post(&format!("/api/v1/leases/{rejected}/reject"), &ctx.admin, json!({"reason": "too big for now"})).await.expect(200);
    // A second decision is refused and tells nothing.
    ctx.post(&format!("/api/v1/leases/{approved}/approve"), &ctx.admin, json!({})).await.error(409, "conflict");
    let rows = stored(&ctx, "alice").await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(count(&rows, approved, NotificationKind::LeaseApproved), 1, "{rows:?}");
    assert_eq!(count(&rows, rejected, NotificationKind::LeaseRejected), 1, "{rows:?}");
    assert!(rows.iter().all(|n| n.read_at.is_none()), "{rows:?}");
    let link = |id: i64| format!("{}/leases/{id}", ctx.url);
    let mail = smtp.wait_for("alice@lab.example", &format!("Subject: Your lease {approved} is approved")).await;
    assert!(mail.contains("was approved by admin: ok for the paper") && mail.contains(&link(approved)), "{mail}");
    let mail = smtp.wait_for("alice@lab.example", &format!("Subject: Your lease {rejected} is rejected")).await;
    assert!(mail.contains("will not run: rejected by admin: too big for now") && mail.contains(&link(rejected)), "{mail}");

    // Their start: the approved and the small lease start, told once; the
    // undecided one is rejected.
    ctx.advance(Duration::hours(2));
    ctx.wait_lease_state(approved, &alice, "active").await;
    ctx.wait_lease_state(small, &alice, "active").await;
    let started = wait_notified(&ctx, "alice", approved, NotificationKind::LeaseStarted).await;
    assert!(started.body.contains("chifflot-1") && started.body.contains("chifflot-2"), "{started:?}");
    wait_notified(&ctx, "alice", small, NotificationKind::LeaseStarted).await;
    smtp.wait_for("alice@lab.example", &format!("Subject: Your lease {approved} has started")).await;
    let too_late = wait_notified(&ctx, "alice", expired, NotificationKind::LeaseRejected).await;
    assert!(too_late.body.contains("will not run: not approved before its start time"), "{too_late:?}");

    // An hour before its end (the default `notify_before`), a reminder
    // with the link to the lease's page, where the extend form is.
    ctx.advance(Duration::hours(5));
    let reminder = wait_notified(&ctx, "alice", approved, NotificationKind::LeaseEndingSoon).await;
    assert!(reminder.body.contains("in 60 minutes") && reminder.body.contains("extend it"), "{reminder:?}");
    let mail = smtp.wait_for("alice@lab.example", &format!("Subject: Your lease {approved} ends in 60 minutes")).await;
    assert!(mail.contains(&link(approved)), "{mail}");
    // Later passes (the small lease's reminder proves one ran) remind
    // nothing twice.
    ctx.advance(Duration::minutes(30));
    wait_notified(&ctx, "alice", small, NotificationKind::LeaseEndingSoon).await;
    let rows = stored(&ctx, "alice").await;
    assert_eq!(count(&rows, approved, NotificationKind::LeaseEndingSoon), 1, "{rows:?}");
    assert_eq!(rows.len(), 7, "approved, 2 rejected, 2 started, 2 reminders: {rows:?}");
    smtp.wait_for("alice@lab.example", &format!("Subject: Your lease {small} ends in 60 minutes")).await;
    assert_eq!(mails(&smtp, "alice@lab.example", &format!("Subject: Your lease {approved} ends in")), 1);
    assert_eq!(mails(&smtp, "alice@lab.example", &format!("Subject: Your lease {approved} is approved")), 1);

    // Extended (by an admin: it is above the approval threshold), the
    // lease is reminded again of its new end.
    ctx.patch(&format!("/api/v1/leases/{approved}"), &ctx.admin, json!({"end": at(Duration::hours(9))})).await.expect(200);
    ctx.advance(Duration::minutes(30));
    wait_until("a second reminder, of the new end", DEADLINE, async || {
        let rows = stored(&ctx, "alice").await;
        if count(&rows, approved, NotificationKind::LeaseEndingSoon) == 2 { Ok(()) } else { Err(format!("{rows:?}")) }
    })
    .await;
    let subject = format!("Subject: Your lease {approved} ends in 60 minutes");
    wait_until("the second reminder mailed", DEADLINE, async || match mails(&smtp, "alice@lab.example", &subject) {
        2 => Ok(()),
        n => Err(format!("{n} mails")),
    })
    .await;
}

#[tokio::test]
async fn the_page_lists_ones_own_notifications_and_marks_them_read() {
    let ctx = TestContext::with_fixtures().await;
    let alice = ctx.user("alice", "p-vision").await;
    let bob = ctx.user("bob", "p-other").await;
    let mut ids = Vec::new();
    for (token, node) in [(&alice, "chifflot-1"), (&bob, "chifflot-2")] {
        let id = ctx.post("/api/v1/leases", token, json!({"nodes": {"names": [node]}, "duration": "1h"})).await.expect(201)["id"]
            .as_i64()
            .expect("id");
        ctx.wait_lease_state(id, token, "active").await;
        ids.push(id);
    }
    let (alice_lease, bob_lease) = (ids[0], ids[1]);
    wait_notified(&ctx, "alice", alice_lease, NotificationKind::LeaseStarted).await;
    wait_notified(&ctx, "bob", bob_lease, NotificationKind::LeaseStarted).await;

    let mut browser = signed_in(&ctx, "alice").await;
    let page = browser.get("/notifications").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains(&format!("Your lease {alice_lease} has started: chifflot-1 yours until")), "{}", page.text);
    assert!(page.text.contains(&format!("href=\"/leases/{alice_lease}\"")), "{}", page.text);
    assert!(!page.text.contains(&format!("lease {bob_lease} ")) && !page.text.contains("chifflot-2"), "bob's: {}", page.text);
    // The navigation counts the unread ones, on every page.
    let unread = "1<span class=\"visually-hidden\"> unread</span>";
    assert!(browser.get("/leases").await.text.contains(unread), "the count in the navigation");

    let csrf = page.field("csrf");
    assert_eq!(browser.post("/notifications/read", &[("csrf", "")]).await.status, StatusCode::FORBIDDEN);
    assert!(stored(&ctx, "alice").await.iter().all(|n| n.read_at.is_none()));
    let marked = browser.post("/notifications/read", &[("csrf", &csrf)]).await;
    assert_eq!((marked.status, marked.location.as_deref()), (StatusCode::SEE_OTHER, Some("/notifications")));
    let page = browser.get("/notifications").await;
    assert!(!page.text.contains(unread) && !page.text.contains("Mark all"), "{}", page.text);
    assert!(page.text.contains(&format!("Your lease {alice_lease} has started")), "read ones stay listed: {}", page.text);
    // Bob's stay unread.
    assert!(stored(&ctx, "alice").await.iter().all(|n| n.read_at.is_some()));
    assert!(stored(&ctx, "bob").await.iter().all(|n| n.read_at.is_none()));
}

#[tokio::test]
async fn a_deployment_done_or_failed_is_told_once() {
    use super::sim_agent::{self, Reply, SimNode};
    let ctx = TestContext::with_sim_nodes(Config::default()).await;
    let nodes = [SimNode::enrol(&ctx, "sim-ok").await, SimNode::enrol(&ctx, "sim-bad").await];
    ctx.wait_nodes_available(2).await;
    sim_agent::publish_image(&ctx, "sim", 256 << 10).await;
    let alice = ctx.user("alice", "p-sim").await;
    let lease = ctx.post("/api/v1/leases", &alice, json!({"nodes": {"names": ["sim-ok", "sim-bad"]}, "duration": "2h"})).await.expect(201);
    let lease = lease["id"].as_i64().expect("id");
    ctx.wait_lease_state(lease, &alice, "active").await;
    let deploy = async || {
        let body = json!({"environment": "sim"});
        ctx.post(&format!("/api/v1/leases/{lease}/deployments"), &alice, body).await.expect(201)["id"].as_i64().expect("id")
    };
    let over = async |id: i64| {
        wait_until(&format!("deployment {id} over"), DEADLINE, async || {
            let d = ctx.get(&format!("/api/v1/deployments/{id}"), &alice).await.expect(200);
            if d["state"] != "running" {
                Ok(d)
            } else {
                Err(format!("{d}; journals: {:?}", nodes.iter().map(SimNode::journal).collect::<Vec<_>>()))
            }
        })
        .await
    };

    let broken = Reply::Fail("/dev/sda: no medium found".into());
    nodes[1].reply("write_image", [broken.clone(), broken]);
    let first = deploy().await;
    assert_eq!(over(first).await["state"], "partial");
    let failed = wait_notified(&ctx, "alice", lease, NotificationKind::DeploymentFailed).await;
    assert!(failed.subject.contains(&format!("Deployment {first} failed")), "{failed:?}");
    assert!(failed.body.contains("failed on 1 of 2 nodes: sim-bad: gave up after 2 attempt(s)"), "{failed:?}");

    let second = deploy().await;
    assert_eq!(over(second).await["state"], "done");
    let done = wait_notified(&ctx, "alice", lease, NotificationKind::DeploymentDone).await;
    assert!(done.body.contains(&format!("Deployment {second} of sim")) && done.body.contains("done on 2 nodes"), "{done:?}");
    let rows = stored(&ctx, "alice").await;
    assert_eq!(count(&rows, lease, NotificationKind::DeploymentFailed), 1, "{rows:?}");
    assert_eq!(count(&rows, lease, NotificationKind::DeploymentDone), 1, "{rows:?}");
}
