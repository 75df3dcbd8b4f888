//! The user's leases: the list, a lease's page and its forms, the live
//! progress stream; compression of the pages.

use super::*;

#[tokio::test]
async fn my_leases_are_listed_shown_extended_released_cancelled_and_redeployed() {
    let ctx = TestContext::with_fixtures().await;
    let bmc = node_with_bmc(&ctx, "sim-1", "sim", 1).await;
    ctx.wait_nodes_available(11).await;
    let alice = ctx.user("alice", "p-vision").await;
    let bob = ctx.user("bob", "p-other").await;
    let tiny = json!({"name": "tiny", "version": 1, "description": "test image", "image": "tiny.raw.zst", "format": "raw.zst",
        "sha256": "ab".repeat(32), "size": 50_331_648u64, "root_partition": 1, "visibility": "public"});
    ctx.post("/api/v1/environments", &ctx.admin, tiny).await.expect(201);
    let create = async |token: &str, body: Value| ctx.post("/api/v1/leases", token, body).await.expect(201)["id"].as_i64().expect("id");
    let running = create(&alice, json!({"name": "paper-run", "nodes": {"names": ["chifflot-1", "chifflot-2"]}, "duration": "2h"})).await;
    let later =
        create(&alice, json!({"nodes": {"names": ["chifflot-3"]}, "start": at(chrono::Duration::hours(5)), "duration": "1h"})).await;
    let over = create(&alice, json!({"name": "short-one", "nodes": {"names": ["chifflot-4"]}, "duration": "1h"})).await;
    ctx.wait_lease_state(running, &alice, "active").await;
    ctx.wait_lease_state(over, &alice, "active").await;
    ctx.delete(&format!("/api/v1/leases/{over}"), &alice).await.expect(200);
    ctx.wait_lease_state(over, &alice, "finished").await;
    // Bob's lease starts two hours after alice's running one ends.
    let bobs = create(&bob, json!({"nodes": {"names": ["chifflot-1"]}, "start": at(chrono::Duration::hours(4)), "duration": "1h"})).await;

    let mut browser = signed_in(&ctx, "alice").await;
    let list = browser.get("/leases").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    assert!(list.text.contains("<a href=\"/leases\" aria-current=\"page\">Leases</a>"), "in the navigation: {}", list.text);
    let (now_part, past_part) = list.text.split_once("<h2>Past 30 days</h2>").expect("two parts");
    let running_at = now_part.find(&format!("<a href=\"/leases/{running}\">Lease {running}</a>")).expect("the running lease");
    let later_at = now_part.find(&format!("<a href=\"/leases/{later}\">Lease {later}</a>")).expect("the upcoming lease");
    assert!(running_at < later_at, "running first: {now_part}");
    assert!(now_part.contains("<td>paper-run</td>") && now_part.contains(">active</span>"), "{now_part}");
    assert!(
        past_part.contains(&format!("<a href=\"/leases/{over}\">Lease {over}</a>")) && past_part.contains("<td>finished</td>"),
        "{past_part}"
    );
    assert!(!list.text.contains(&format!("Lease {bobs}<")), "not bob's: {}", list.text);
    // An admin sees their own by default, everyone's on asking.
    let mut admin = signed_in(&ctx, "admin").await;
    let own = admin.get("/leases").await;
    assert!(own.text.contains("No running or upcoming lease: ") && own.text.contains("Show every user"), "{}", own.text);
    let all = admin.get("/leases?all=1").await;
    for id in [running, later, over, bobs] {
        assert!(all.text.contains(&format!("<a href=\"/leases/{id}\">Lease {id}</a>")), "{id}: {}", all.text);
    }
    assert!(all.text.contains("<td>bob</td>") && all.text.contains("<td>alice</td>"), "owners named: {}", all.text);
    // A user asking for all gets hers.
    assert!(!browser.get("/leases?all=1").await.text.contains(&format!("Lease {bobs}<")));

    // The page of one: its facts, no deployment yet, the forms that apply.
    let shown = browser.get(&format!("/leases/{running}")).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text);
    for fact in [
        &format!("<h1>Lease {running} (paper-run)</h1>") as &str,
        "<dd id=\"lease-state\">active</dd>",
        "<dd>p-vision</dd>",
        "<dd>2: <a href=\"/hardware/nodes/chifflot-1\">chifflot-1</a>, <a href=\"/hardware/nodes/chifflot-2\">chifflot-2</a></dd>",
        &format!("<dd>{}</dd>", "2026-11-23 10:00 UTC"),
        "No deployment on this lease.",
        &format!("action=\"/leases/{running}/extend\""),
        &format!("Release lease {running}</button>"),
        &format!("action=\"/leases/{running}/deploy\""),
        "Root's SSH keys: none: add yours",
        &format!("<a href=\"/leases/{running}\">Refresh</a>"),
        "<script src=\"/static/lease.js\" defer></script>",
    ] {
        assert!(shown.text.contains(fact), "{fact} in {}", shown.text);
    }
    let csrf = shown.field("csrf");
    let upcoming = browser.get(&format!("/leases/{later}")).await;
    assert!(upcoming.text.contains(&format!("Cancel lease {later}</button>")), "{}", upcoming.text);
    assert!(!upcoming.text.contains("action=\"/leases/{later}/deploy\""), "no deploy before it starts");
    let past = browser.get(&format!("/leases/{over}")).await;
    assert!(past.text.contains("nothing can be changed") && past.text.contains("released by alice"), "{}", past.text);

    // Extend: refusals beside the form, as typed, then +1h.
    let extend = format!("/leases/{running}/extend");
    let end_of = async |id: i64| ctx.lease(id, &alice).await["end"].as_str().expect("end").to_owned();
    for (typed, status, words) in [
        ("soon", StatusCode::BAD_REQUEST, "end: a time in UTC"),
        ("+1000d", StatusCode::BAD_REQUEST, "end: "),
        ("+3h", StatusCode::CONFLICT, "its nodes are booked before"),
    ] {
        let refused = lease_form(&mut browser, &csrf, &extend, &[("end", typed)]).await;
        assert_eq!(refused.status, status, "{typed}: {}", refused.text);
        let marker = "<p class=\"error\" role=\"alert\" id=\"extend-error\">";
        let at = refused.text.find(marker).unwrap_or_else(|| panic!("{typed}: no error beside the form: {}", refused.text));
        assert!(refused.text[at + marker.len()..].starts_with(words), "{typed}: {}", &refused.text[at..]);
        assert!(refused.text.contains(&format!("value=\"{}\"", escaped(typed))), "typed kept: {typed}");
        assert_eq!(end_of(running).await, "2026-11-23T10:00:00Z");
    }
    let extended = lease_form(&mut browser, &csrf, &extend, &[("end", "+1h")]).await;
    assert_eq!(extended.status, StatusCode::SEE_OTHER, "{}", extended.text);
    assert_eq!(extended.location.as_deref(), Some(format!("/leases/{running}?done=extended").as_str()));
    assert_eq!(end_of(running).await, "2026-11-23T11:00:00Z");
    let after = browser.get(extended.location.as_deref().expect("location")).await;
    assert!(
        after.text.contains("Extended: the new end is below.") && after.text.contains("<dd>2026-11-23 11:00 UTC</dd>"),
        "{}",
        after.text
    );
    let at_time = lease_form(&mut browser, &csrf, &extend, &[("end", "2026-11-23 11:30")]).await;
    assert_eq!(at_time.status, StatusCode::SEE_OTHER, "{}", at_time.text);
    assert_eq!(end_of(running).await, "2026-11-23T11:30:00Z");

    // Bob: alice's lease is the API's 404, from the page and from every
    // form, even with his own session's token; nothing changes.
    let mut bob_browser = signed_in(&ctx, "bob").await;
    let api_says = ctx.get(&format!("/api/v1/leases/{running}"), &bob).await.error(404, "not_found");
    let bob_csrf = bob_browser.get("/leases").await.field("csrf");
    let seen = bob_browser.get(&format!("/leases/{running}")).await;
    assert_eq!(seen.status, StatusCode::NOT_FOUND, "{}", seen.text);
    assert!(seen.text.contains(&escaped(&api_says)), "{api_says} in {}", seen.text);
    assert!(!seen.text.contains("paper-run") && !seen.text.contains("chifflot-1"), "{}", seen.text);
    assert_eq!(bob_browser.first_event(&format!("/leases/{running}/events")).await.status, StatusCode::NOT_FOUND);
    for (action, fields) in [("extend", &[("end", "+1h")] as &[(&str, &str)]), ("end", &[]), ("deploy", &[("environment", "tiny")])] {
        let path = format!("/leases/{running}/{action}");
        let refused = lease_form(&mut bob_browser, &bob_csrf, &path, fields).await;
        assert_eq!(refused.status, StatusCode::NOT_FOUND, "{action}: {}", refused.text);
        assert!(refused.text.contains(&escaped(&api_says)), "{action}: {}", refused.text);
        // Alice's token is not his to send: refused as forged.
        let forged = lease_form(&mut bob_browser, &csrf, &path, fields).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN, "{action}: {}", forged.text);
    }
    let lease = ctx.lease(running, &alice).await;
    assert_eq!((lease["state"].as_str(), lease["end"].as_str()), (Some("active"), Some("2026-11-23T11:30:00Z")));
    assert!(ctx.get(&format!("/api/v1/leases/{running}/deployments"), &alice).await.expect(200).as_array().expect("list").is_empty());

    // Redeploy: an unknown environment is said beside the form; the
    // profile's keys go with a known one.
    let deploy = format!("/leases/{running}/deploy");
    let unknown = lease_form(&mut browser, &csrf, &deploy, &[("environment", "nope")]).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text);
    assert!(
        unknown.text.contains("<p class=\"error\" role=\"alert\" id=\"deploy-error\">no environment &#39;nope&#39; that you can see"),
        "{}",
        unknown.text
    );
    assert!(unknown.text.contains("value=\"nope\""), "{}", unknown.text);
    let not_yet = lease_form(&mut browser, &csrf, &format!("/leases/{later}/deploy"), &[("environment", "tiny")]).await;
    assert_eq!(not_yet.status, StatusCode::CONFLICT, "{}", not_yet.text);
    assert!(
        not_yet.text.contains(&format!("id=\"deploy-error\">lease {later} is pending; deployments run on active leases")),
        "{}",
        not_yet.text
    );
    ctx.post("/api/v1/users/alice/ssh-keys", &alice, json!({"public_key": LEASE_KEY})).await.expect(201);
    // The deployment runs on a node whose BMC is held: it stays at its
    // first power action for as long as the test needs it running.
    let held = create(&alice, json!({"nodes": {"names": ["sim-1"]}, "duration": "1h"})).await;
    ctx.wait_lease_state(held, &alice, "active").await;
    bmc.hold(true);
    let deploy = format!("/leases/{held}/deploy");
    let deployed = lease_form(&mut browser, &csrf, &deploy, &[("environment", "tiny")]).await;
    assert_eq!(deployed.status, StatusCode::SEE_OTHER, "{}", deployed.text);
    let list = ctx.get(&format!("/api/v1/leases/{held}/deployments"), &alice).await.expect(200);
    let id = list[0]["id"].as_i64().expect("a deployment");
    assert_eq!(deployed.location, Some(format!("/leases/{held}?done=deployed&deployment={id}#deployment-{id}")));
    let page = browser.get(&format!("/leases/{held}?done=deployed&deployment={id}")).await;
    for fact in [
        &format!("Deployment {id} started: its progress is below.") as &str,
        &format!("<h3>Deployment {id}: tiny (version 1)</h3>"),
        &format!("<dd id=\"deployment-{id}-state\">running</dd>"),
        &format!("<code>{}</code>", "ab".repeat(32)),
        &format!("<tr id=\"op-{id}-sim-1\"><th scope=\"row\">sim-1</th><td data-field=\"state\">running</td>"),
        "data-live=\"true\"",
        "Root's SSH keys: the key of your profile.",
    ] {
        assert!(page.text.contains(fact), "{fact} in {}", page.text);
    }
    // A second one while the first runs: the conflict in words, beside
    // the form.
    let again = lease_form(&mut browser, &csrf, &deploy, &[("environment", "tiny")]).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    assert!(again.text.contains("id=\"deploy-error\">node &#39;sim-1&#39; is being deployed"), "{}", again.text);
    assert_eq!(ctx.get(&format!("/api/v1/leases/{held}/deployments"), &alice).await.expect(200).as_array().map(Vec::len), Some(1));
    bmc.hold(false);

    // Release the running one, cancel the upcoming one.
    let released = lease_form(&mut browser, &csrf, &format!("/leases/{running}/end"), &[]).await;
    assert_eq!(released.location, Some(format!("/leases/{running}?done=released")), "{}", released.text);
    assert!(["ending", "finished"].contains(&ctx.lease(running, &alice).await["state"].as_str().unwrap_or_default()));
    let cancelled = lease_form(&mut browser, &csrf, &format!("/leases/{later}/end"), &[]).await;
    assert_eq!(cancelled.location, Some(format!("/leases/{later}?done=cancelled")), "{}", cancelled.text);
    assert_eq!(ctx.lease(later, &alice).await["state"], "cancelled");
    let shown = browser.get(&format!("/leases/{later}?done=cancelled")).await;
    assert!(shown.text.contains("Cancelled: its nodes are free again.") && shown.text.contains("cancelled by alice"), "{}", shown.text);
    // No anti-forgery token: nothing happens.
    assert_eq!(browser.post(&format!("/leases/{bobs}/end"), &[]).await.status, StatusCode::FORBIDDEN);
}

/// A deployment asked from the lease page, followed live: the events
/// stream says each node's phase as it goes, then its end with the ssh
/// line, and `end`; the profile's key is on the node's disk.
#[tokio::test]
async fn a_lease_page_follows_its_deployment_live_over_server_sent_events() {
    use crate::it::sim_agent::{self, SimNode};
    let ctx = TestContext::with_sim_nodes(Config::default()).await;
    let node = SimNode::enrol(&ctx, "sim-live").await;
    ctx.wait_nodes_available(1).await;
    sim_agent::publish_image(&ctx, "sim", 1 << 20).await;
    let alice = ctx.user("alice", "p-sim").await;
    ctx.post("/api/v1/users/alice/ssh-keys", &alice, json!({"public_key": LEASE_KEY})).await.expect(201);
    let lease = ctx.post("/api/v1/leases", &alice, json!({"nodes": {"names": ["sim-live"]}, "duration": "1h"})).await.expect(201);
    let lease = lease["id"].as_i64().expect("id");
    ctx.wait_lease_state(lease, &alice, "active").await;

    let mut browser = signed_in(&ctx, "alice").await;
    // Nothing runs: one event, then `end`, and the stream closes.
    let idle = browser.stream(&format!("/leases/{lease}/events")).await;
    assert_eq!(idle.status(), StatusCode::OK);
    let kind = idle.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(kind.as_deref(), Some("text/event-stream"));
    let text = tokio::time::timeout(DEADLINE, idle.text()).await.expect("the stream ends").expect("body");
    let events = sse_events(&text);
    assert_eq!(events.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["progress", "end"], "{text}");
    let first: Value = serde_json::from_str(&events[0].1).expect("JSON");
    assert_eq!(first, json!({"lease_state": "active", "moving": false, "deployments": []}));

    let csrf = browser.get(&format!("/leases/{lease}")).await.field("csrf");
    let deployed = lease_form(&mut browser, &csrf, &format!("/leases/{lease}/deploy"), &[("environment", "sim")]).await;
    assert_eq!(deployed.status, StatusCode::SEE_OTHER, "{}", deployed.text);
    let mut live = browser.stream(&format!("/leases/{lease}/events")).await;
    assert_eq!(live.status(), StatusCode::OK);
    let mut text = String::new();
    let read = async {
        while let Some(chunk) = live.chunk().await.expect("a chunk") {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .unwrap_or_else(|_| panic!("the stream ends with the deployment; so far: {text}; the node's journal: {:?}", node.journal()));
    let events = sse_events(&text);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.last(), Some(&"end"), "{text}");
    let progress: Vec<Value> =
        events.iter().filter(|(n, _)| n == "progress").map(|(_, d)| serde_json::from_str(d).expect("JSON")).collect();
    assert!(progress.len() >= 2, "{text}");
    let first = &progress[0]["deployments"][0]["nodes"][0];
    assert_eq!((first["node"].as_str(), first["state"].as_str()), (Some("sim-live"), Some("running")), "{text}");
    assert!(first["elapsed"].as_str().is_some_and(|e| e.ends_with(" s")), "{first}");
    let phases: Vec<&str> = progress.iter().filter_map(|p| p["deployments"][0]["nodes"][0]["phase"].as_str()).collect();
    let deploy_phases = ["boot_ramdisk", "wait_agent", "write_image", "install_keys", "boot_system", "ssh_check", "finished"];
    assert!(phases.iter().all(|p| deploy_phases.contains(p)), "{phases:?}");
    let last = &progress[progress.len() - 1];
    assert_eq!(last["moving"], false, "{last}");
    assert_eq!(last["deployments"][0]["state"], "done", "{last}");
    let op = &last["deployments"][0]["nodes"][0];
    let ssh = format!("ssh root@{}", node.ip());
    assert_eq!(
        (op["phase"].as_str(), op["written"].as_str(), op["ssh"].as_str()),
        (Some("finished"), Some("1.0 of 1.0 MiB"), Some(ssh.as_str())),
        "{op}"
    );

    // The page: the ssh line to copy, the profile's key on the disk.
    let page = browser.get(&format!("/leases/{lease}")).await;
    assert!(
        page.text.contains(&format!("<pre class=\"ssh\" tabindex=\"0\" aria-label=\"Commands to log in\">{ssh}\n</pre>")),
        "{}",
        page.text
    );
    assert!(page.text.contains("data-live=\"false\""), "{}", page.text);
    let (_, keys) = node.written().expect("an image on the disk");
    assert_eq!(keys[0], LEASE_KEY, "{keys:?}");
}

/// Pages are gzipped when the browser asks for it (the calendar of a site
/// is large), and sent as they are otherwise.
#[tokio::test]
async fn pages_are_compressed_when_the_browser_asks() {
    use reqwest::header::{ACCEPT_ENCODING, CONTENT_ENCODING};
    let ctx = TestContext::with_fixtures().await;
    ctx.user("alice", "p-vision").await;
    let browser = signed_in(&ctx, "alice").await;
    let cookie = browser.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
    let calendar = async |encoding: &str| {
        let answer = ctx
            .client
            .get(format!("{}/calendar?zoom=month", ctx.url))
            .header(COOKIE, &cookie)
            .header(ACCEPT_ENCODING, encoding)
            .send()
            .await
            .expect("the calendar");
        assert_eq!(answer.status(), StatusCode::OK);
        let encoded = answer.headers().get(CONTENT_ENCODING).map(|v| v.to_str().unwrap_or_default().to_owned());
        (encoded, answer.bytes().await.expect("a body").len())
    };
    let (plain_encoding, plain) = calendar("identity").await;
    let (gzip_encoding, gzipped) = calendar("gzip").await;
    assert_eq!((plain_encoding, gzip_encoding.as_deref()), (None, Some("gzip")));
    assert!(gzipped * 2 < plain, "gzip {gzipped} bytes against {plain}");
}
