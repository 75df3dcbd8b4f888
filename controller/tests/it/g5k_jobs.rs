//! The Grid'5000 API's jobs and deployments (`/stable/sites/{site}/jobs`,
//! `.../deployments`; API-SUBSET §2.3, §2.4, §4) over HTTP Basic, as
//! python-grid5000 sends them: a job is a lease (its uid the lease id),
//! OAR's resource strings, types, queues and reservation dates (read in
//! the site's time zone) become the lease request, refusals carry the
//! texts EnOSlib parses, and a deployment goes to the caller's running
//! deploy lease holding its nodes, on exactly those nodes.

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};

use super::harness::{DEADLINE, TestContext, wait_until};

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop";
const DOMAIN: &str = "ferrum.internal";

/// An answer with its headers.
struct Raw {
    status: u16,
    location: Option<String>,
    text: String,
}

impl Raw {
    #[track_caller]
    fn json(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text);
        serde_json::from_str(&self.text).expect("a JSON body")
    }

    /// The `message` of an error answer (and no `error` key).
    #[track_caller]
    fn message(&self, status: u16) -> String {
        let body = self.json(status);
        assert!(body.get("error").is_none(), "{body}");
        assert_eq!(body["code"], status, "{body}");
        body["message"].as_str().expect("message").to_owned()
    }
}

/// A request as python-grid5000 makes it: HTTP Basic with the user name
/// and token, JSON in and out.
async fn call(ctx: &TestContext, method: reqwest::Method, path: &str, (user, token): (&str, &str), body: Option<Value>) -> Raw {
    let mut req =
        ctx.client.request(method, format!("{}{path}", ctx.url)).basic_auth(user, Some(token)).header("Accept", "application/json");
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let location = resp.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
    // Every answer with a body is JSON (202s of DELETE have none).
    if status < 300 && status != 202 {
        let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        assert!(ct.contains("application/json"), "{path}: content type {ct}");
    }
    Raw { status, location, text: resp.text().await.expect("body") }
}

async fn post(ctx: &TestContext, path: &str, who: (&str, &str), body: Value) -> Raw {
    call(ctx, reqwest::Method::POST, path, who, Some(body)).await
}

async fn get(ctx: &TestContext, path: &str, who: (&str, &str)) -> Raw {
    call(ctx, reqwest::Method::GET, path, who, None).await
}

async fn delete(ctx: &TestContext, path: &str, who: (&str, &str)) -> Raw {
    call(ctx, reqwest::Method::DELETE, path, who, None).await
}

fn uid(job: &Value) -> i64 {
    job["uid"].as_i64().unwrap_or_else(|| panic!("an integer uid: {job}"))
}

/// Waits until job `id` of `site` is in `state`.
async fn wait_job(ctx: &TestContext, site: &str, id: i64, who: (&str, &str), state: &str) -> Value {
    wait_until(&format!("job {id} reaching {state}"), DEADLINE, async || {
        let job = get(ctx, &format!("/stable/sites/{site}/jobs/{id}"), who).await.json(200);
        if job["state"] == state { Ok(job) } else { Err(job.to_string()) }
    })
    .await
}

/// The fixtures (lille/chifflot ×8, grenoble/servan ×2 exotic), grenoble
/// reading its dates in UTC, and users alice and bob.
async fn lab() -> (TestContext, String, String) {
    super::g5k::configured("[sites.grenoble]\ntimezone = \"UTC\"\n").await
}

fn epoch(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).single().expect("time").timestamp()
}

#[tokio::test]
async fn a_job_is_a_lease_from_submission_to_deletion() {
    let (ctx, alice, bob) = lab().await;
    let (a, b) = (("alice", alice.as_str()), ("bob", bob.as_str()));
    let jobs = "/stable/sites/lille/jobs";
    let submitted = post(
        &ctx,
        jobs,
        a,
        json!({"name": "t", "resources": "{cluster='chifflot'}/nodes=2,walltime=0:10", "command": "sleep 3600",
            "types": ["deploy", "origin=enoslib_g5k"], "queue": "default", "stdout": "ignored"}),
    )
    .await;
    let job = submitted.json(201);
    let id = uid(&job);
    assert_eq!(submitted.location.as_deref(), Some(format!("{jobs}/{id}").as_str()));
    assert!(["waiting", "launching", "running"].contains(&job["state"].as_str().unwrap_or_default()), "{job}");
    // The lease behind it, in ferrum's own API.
    let lease = ctx.lease(id, &alice).await;
    assert_eq!((lease["type"].as_str(), lease["name"].as_str()), (Some("deploy"), Some("t")));

    let job = wait_job(&ctx, "lille", id, a, "running").await;
    let nodes: Vec<&str> = job["assigned_nodes"].as_array().expect("assigned_nodes").iter().filter_map(Value::as_str).collect();
    assert_eq!(nodes.len(), 2, "{job}");
    assert!(nodes.iter().all(|n| n.starts_with("chifflot-") && n.ends_with(&format!(".lille.{DOMAIN}"))), "{nodes:?}");
    assert_eq!(job["types"], json!(["deploy", "origin=enoslib_g5k"]));
    assert_eq!(
        (job["walltime"].as_i64(), job["command"].as_str(), job["queue"].as_str()),
        (Some(600), Some("sleep 3600"), Some("default"))
    );
    assert_eq!((job["user"].as_str(), job["user_uid"].as_str(), job["project"].as_str()), (Some("alice"), Some("alice"), Some("p-g5k")));
    assert!(job["started_at"].as_i64().is_some_and(|t| t > 0) && job["scheduled_at"].is_i64() && job["submitted_at"].is_i64(), "{job}");
    let cores = job["resources_by_type"]["cores"].as_array().expect("cores");
    assert!(cores.iter().any(|c| c.as_str().is_some_and(|c| c.starts_with(&format!("{}/", nodes[0])))), "{cores:?}");
    assert!(job["events"].as_array().is_some_and(|e| e.len() == 2), "{job}");
    assert_eq!(job["links"][0]["href"], format!("{jobs}/{id}"));

    // Jobs of another site, and unknown ones, do not exist here.
    let msg = get(&ctx, &format!("/stable/sites/grenoble/jobs/{id}"), a).await.message(404);
    assert_eq!(msg, format!("Couldn't find OAR::Job with 'job_id'={id}"));
    assert_eq!(get(&ctx, &format!("{jobs}/99999"), a).await.message(404), "Couldn't find OAR::Job with 'job_id'=99999");
    get(&ctx, "/stable/sites/nowhere/jobs", a).await.message(404);

    // EnOSlib's reload: by name, state and user; bob's job of the same
    // name and alice's ended ones are left out; paging.
    let bobs = uid(&post(&ctx, jobs, b, json!({"name": "t", "resources": "nodes=1", "command": "sleep 1"})).await.json(201));
    let other = uid(&post(&ctx, jobs, a, json!({"name": "u", "resources": "nodes=1", "command": "sleep 1"})).await.json(201));
    let live = get(&ctx, &format!("{jobs}?name=t&state=waiting%2Claunching%2Crunning&user=alice"), a).await.json(200);
    assert_eq!((live["total"].as_u64(), live["offset"].as_u64()), (Some(1), Some(0)), "{live}");
    assert_eq!(uid(&live["items"][0]), id);
    let mine = get(&ctx, jobs, a).await.json(200);
    let uids: Vec<i64> = mine["items"].as_array().expect("items").iter().map(uid).collect();
    assert_eq!(uids, vec![other, id], "newest first, bob's ({bobs}) hidden");
    let page = get(&ctx, &format!("{jobs}?offset=1&limit=1"), a).await.json(200);
    assert_eq!((page["total"].as_u64(), page["offset"].as_u64(), uid(&page["items"][0])), (Some(2), Some(1), id));
    get(&ctx, &format!("{jobs}?limit=501"), a).await.message(400);
    assert!(get(&ctx, &format!("{jobs}?state=hold"), a).await.message(400).contains("'hold'"));

    // Deletion: bob may not; alice's gives 202 with no body; a second one
    // says what OAR says.
    delete(&ctx, &format!("{jobs}/{id}"), b).await.message(403);
    let deleted = delete(&ctx, &format!("{jobs}/{id}"), a).await;
    assert_eq!((deleted.status, deleted.text.as_str()), (202, ""));
    assert_eq!(deleted.location.as_deref(), Some(format!("{jobs}/{id}").as_str()));
    let job = wait_until("the job leaves running", DEADLINE, async || {
        let job = get(&ctx, &format!("{jobs}/{id}"), a).await.json(200);
        if ["finishing", "error"].contains(&job["state"].as_str().unwrap_or_default()) { Ok(job) } else { Err(job.to_string()) }
    })
    .await;
    assert!(job["state"] != "running", "{job}");
    let msg = delete(&ctx, &format!("{jobs}/{id}"), a).await.message(400);
    assert!(msg.contains("This job was already killed"), "{msg}");
    let job = wait_job(&ctx, "lille", id, a, "error").await;
    assert!(job["stopped_at"].is_i64(), "{job}");
    let live = get(&ctx, &format!("{jobs}?name=t&state=waiting,launching,running&user=alice"), a).await.json(200);
    assert_eq!(live["total"], 0, "{live}");
    let ended = get(&ctx, &format!("{jobs}?state=error"), a).await.json(200);
    assert_eq!(uid(&ended["items"][0]), id);
}

#[tokio::test]
async fn reservations_are_read_in_the_sites_time_zone_and_refusals_say_when() {
    let (ctx, alice, _bob) = lab().await;
    let a = ("alice", alice.as_str());
    let jobs = "/stable/sites/lille/jobs";
    // t0 is 2026-11-23 08:00 UTC, 09:00 in Paris.
    let job = post(&ctx, jobs, a, json!({"resources": "nodes=1", "reservation": "2026-11-24 10:00:00", "name": "r"})).await.json(201);
    assert_eq!((job["state"].as_str(), job["scheduled_at"].as_i64()), (Some("waiting"), Some(epoch(2026, 11, 24, 9, 0))));
    assert_eq!((job["walltime"].as_i64(), job["started_at"].as_i64()), (Some(3600), Some(0)));

    // All 8 nodes at the same time: refused, with the earliest start in
    // Paris time (after the first job's hour).
    let msg = post(&ctx, jobs, a, json!({"resources": "{cluster='chifflot'}/nodes=8,walltime=1", "reservation": "2026-11-24 10:00:00"}))
        .await
        .message(400);
    assert_eq!(msg, "Reservation not valid --> KO (This reservation could run at 2026-11-24 11:00:00)");
    let msg = post(&ctx, jobs, a, json!({"resources": "nodes=1", "reservation": "2026-11-23 08:00:00"})).await.message(400);
    assert!(msg.contains("Reservation too old"), "{msg}");
    assert_eq!(post(&ctx, jobs, a, json!({"reservation": 1720})).await.message(400), "`reservation` should be a String.");
    let msg = post(&ctx, jobs, a, json!({"reservation": "24/11/2026 10:00"})).await.message(400);
    assert!(msg.starts_with("Syntax error in reservation start date"), "{msg}");

    // Grenoble reads its dates in UTC (its `[sites.grenoble]`); its
    // cluster is exotic.
    let job = post(
        &ctx,
        "/stable/sites/grenoble/jobs",
        a,
        json!({"resources": "nodes=1", "types": ["exotic"], "reservation": "2026-11-24 10:00:00,2026-11-24 12:00:00"}),
    )
    .await
    .json(201);
    assert_eq!((job["scheduled_at"].as_i64(), job["walltime"].as_i64()), (Some(epoch(2026, 11, 24, 10, 0)), Some(7200)));
    assert!(job["assigned_nodes"][0].as_str().is_some_and(|n| n.starts_with("servan-") && n.ends_with(&format!(".grenoble.{DOMAIN}"))));

    // The walltime grows (lease extension); it never shrinks.
    let path = format!("{jobs}/{}/walltime", uid(&job_of(&ctx, jobs, a, "r").await));
    assert_eq!(get(&ctx, &path, a).await.json(200)["walltime"], "1:00:00");
    let changed = post(&ctx, &path, a, json!({"walltime": "+1:30"})).await;
    assert_eq!(changed.status, 202, "{}", changed.text);
    assert_eq!(job_of(&ctx, jobs, a, "r").await["walltime"], 9000);
    assert!(post(&ctx, &path, a, json!({"walltime": "-0:10"})).await.message(400).contains("cannot shorten"));
}

/// The job named `name` among the caller's jobs of `jobs`.
async fn job_of(ctx: &TestContext, jobs: &str, who: (&str, &str), name: &str) -> Value {
    let list = get(ctx, &format!("{jobs}?name={name}"), who).await.json(200);
    assert_eq!(list["total"], 1, "{list}");
    list["items"][0].clone()
}

#[tokio::test]
async fn oar_resources_types_and_queues_become_the_lease_request() {
    let (ctx, alice, _bob) = lab().await;
    let a = ("alice", alice.as_str());
    let jobs = "/stable/sites/lille/jobs";
    let nodes_of = |job: &Value| -> Vec<String> {
        job["assigned_nodes"].as_array().expect("assigned_nodes").iter().map(|n| n.as_str().expect("fqdn").to_owned()).collect()
    };

    let job = post(&ctx, jobs, a, json!({"resources": "nodes=1", "command": "sleep 1"})).await.json(201);
    assert_eq!((nodes_of(&job).len(), job["walltime"].as_i64()), (1, Some(3600)));
    assert_eq!((job["types"].clone(), job["queue"].as_str()), (json!([]), Some("default")));
    let job = post(&ctx, jobs, a, json!({"resources": "{gpu_model like 'Tesla V100%'}/nodes=2,walltime=1:00:00"})).await.json(201);
    let mut got = nodes_of(&job);
    got.sort();
    assert_eq!(got, vec![format!("chifflot-7.lille.{DOMAIN}"), format!("chifflot-8.lille.{DOMAIN}")]);
    // Several groups: one job, distinct nodes; OAR's node names.
    let job = post(&ctx, jobs, a, json!({"resources": "{cluster='chifflot'}/nodes=1+{cluster='chifflot'}/nodes=1"})).await.json(201);
    let got = nodes_of(&job);
    assert!(got.len() == 2 && got[0] != got[1], "{got:?}");
    let one = format!("{{network_address in ('chifflot-3.lille.{DOMAIN}')}}/nodes=1");
    let job = post(&ctx, jobs, a, json!({"resources": one})).await.json(201);
    assert_eq!(nodes_of(&job), vec![format!("chifflot-3.lille.{DOMAIN}")]);
    let job = post(
        &ctx,
        jobs,
        a,
        json!({"resources": "nodes=1", "properties": "cluster='chifflot' AND exotic='NO'", "types": ["origin=x", "monitor=.*"]}),
    )
    .await
    .json(201);
    assert_eq!(job["properties"], "cluster='chifflot' AND exotic='NO'");
    assert_eq!(job["types"], json!(["origin=x", "monitor=.*"]));
    let msg = post(&ctx, jobs, a, json!({"resources": "nodes=1", "properties": "cluster='servan'"})).await.message(400);
    assert!(msg.starts_with("The job you are trying to submit is not valid: "), "{msg}");
    // servan (grenoble, exotic) only with the exotic type.
    let msg = post(&ctx, "/stable/sites/grenoble/jobs", a, json!({"resources": "nodes=1"})).await.message(400);
    assert!(msg.contains("exotic"), "{msg}");
    let job = post(&ctx, jobs, a, json!({"resources": "nodes=1", "queue": "besteffort"})).await.json(201);
    assert_eq!((job["queue"].as_str(), ctx.lease(uid(&job), &alice).await["type"].as_str()), (Some("besteffort"), Some("besteffort")));

    for (resources, named) in [
        ("core=4", "'core=4'"),
        ("slash_22=1", "'slash_22=1'"),
        ("{type='kavlan'}/vlan=1", "KaVLAN is not supported"),
        ("switch=1/nodes=2", "switch groups are not supported"),
        ("{nosuchprop='x'}/nodes=1", "nosuchprop"),
    ] {
        let msg = post(&ctx, jobs, a, json!({"resources": resources})).await.message(400);
        assert!(msg.contains(named), "{resources}: {msg}");
    }
    for (body, named) in [
        (json!({"types": ["container"]}), "'container'"),
        (json!({"types": ["inner=12"]}), "'inner=12'"),
        (json!({"queue": "production"}), "'production'"),
        (json!({"types": "deploy", "queue": "besteffort"}), "besteffort"),
    ] {
        let msg = post(&ctx, jobs, a, body.clone()).await.message(400);
        assert!(msg.contains(named), "{body}: {msg}");
    }
    // A lease made with ferrum's own API is a job too, of its nodes' site.
    let lease = ctx
        .post("/api/v1/leases", &alice, json!({"nodes": {"names": ["servan-1"]}, "duration": "1h", "exotic": true, "type": "deploy"}))
        .await
        .expect(201);
    let job = get(&ctx, &format!("/stable/sites/grenoble/jobs/{}", lease["id"]), a).await.json(200);
    assert_eq!((job["types"].clone(), job["command"].as_str()), (json!(["deploy", "exotic"]), Some("")));
}

fn tiny() -> Value {
    json!({"name": "tiny", "version": 2026112300, "description": "test image", "image": "tiny.raw.zst", "format": "raw.zst",
        "sha256": "ab".repeat(32), "size": 50_331_648u64, "root_partition": 1, "visibility": "public"})
}

#[tokio::test]
async fn deployments_go_to_the_deploy_job_holding_their_nodes() {
    let (ctx, alice, bob) = lab().await;
    let (a, b) = (("alice", alice.as_str()), ("bob", bob.as_str()));
    ctx.post("/api/v1/environments", &ctx.admin, tiny()).await.expect(201);
    let job = post(&ctx, "/stable/sites/lille/jobs", a, json!({"resources": "nodes=3", "types": ["deploy"], "command": "sleep 1"}))
        .await
        .json(201);
    let job = wait_job(&ctx, "lille", uid(&job), a, "running").await;
    let fqdns: Vec<String> =
        job["assigned_nodes"].as_array().expect("nodes").iter().map(|n| n.as_str().expect("fqdn").to_owned()).collect();
    let plain = post(&ctx, "/stable/sites/lille/jobs", a, json!({"resources": "nodes=1"})).await.json(201);
    let plain = wait_job(&ctx, "lille", uid(&plain), a, "running").await;
    let deployments = "/stable/sites/lille/deployments";

    // Refusals: no nodes, nodes outside a deploy job of hers, an unknown
    // environment, what ferrum does not do.
    let msg = post(&ctx, deployments, a, json!({"nodes": [], "environment": "tiny"})).await.message(400);
    assert!(msg.starts_with("The deployment you are trying to submit is not valid: "), "{msg}");
    let outside = json!({"nodes": [fqdns[0], plain["assigned_nodes"][0]], "environment": "tiny", "key": KEY});
    assert!(post(&ctx, deployments, a, outside).await.message(403).contains("deploy job"));
    post(&ctx, deployments, b, json!({"nodes": [fqdns[0]], "environment": "tiny", "key": KEY})).await.message(403);
    let msg = post(&ctx, deployments, a, json!({"nodes": [fqdns[0]], "environment": "nope", "key": KEY})).await.message(400);
    assert!(msg.starts_with("Cannot launch deployment: "), "{msg}");
    let msg = post(&ctx, deployments, a, json!({"nodes": [fqdns[0]], "environment": "tiny", "vlan": "3"})).await.message(400);
    assert!(msg.contains("vlan"), "{msg}");
    let msg = post(&ctx, deployments, a, json!({"nodes": [fqdns[0]], "environment": "tiny", "version": 1})).await.message(400);
    assert!(msg.contains("version 1"), "{msg}");

    // Two of the job's three nodes, with two keys in one `key` text.
    let submitted = post(
        &ctx,
        deployments,
        a,
        json!({"nodes": [fqdns[0], fqdns[1]], "environment": "tiny", "key": format!("{KEY}\n{KEY} second\n"),
            "version": 2026112300, "disable_disk_partitioning": true}),
    )
    .await;
    let d = submitted.json(201);
    let d_uid = d["uid"].as_str().expect("a string uid").to_owned();
    assert!(d_uid.starts_with("D-"), "{d}");
    assert_eq!(submitted.location.as_deref(), Some(format!("{deployments}/{d_uid}").as_str()));
    assert_eq!((d["status"].as_str(), d["user_uid"].as_str(), d["site_uid"].as_str()), (Some("processing"), Some("alice"), Some("lille")));
    assert_eq!((d["environment"].as_str(), d["version"].as_u64()), (Some("tiny"), Some(2026112300)));
    assert_eq!(d["nodes"], json!([fqdns[0], fqdns[1]]));
    assert!(d.get("result").is_none() && d["created_at"].is_i64() && d["updated_at"].is_i64(), "{d}");
    let third = fqdns[2].split('.').next().expect("name").to_owned();
    assert_eq!(ctx.node_state(&third).await, "reserved", "the third node is left alone");

    // Read, list, cancel.
    assert_eq!(get(&ctx, &format!("{deployments}/{d_uid}"), a).await.json(200)["uid"], d_uid);
    get(&ctx, &format!("{deployments}/{d_uid}"), b).await.message(404);
    get(&ctx, &format!("/stable/sites/grenoble/deployments/{d_uid}"), a).await.message(404);
    let list = get(&ctx, &format!("{deployments}?user=alice"), a).await.json(200);
    assert_eq!((list["total"].as_u64(), list["items"][0]["uid"].as_str()), (Some(1), Some(d_uid.as_str())));
    assert_eq!(get(&ctx, &format!("{deployments}?status=error"), a).await.json(200)["total"], 0, "it started");
    let cancelled = delete(&ctx, &format!("{deployments}/{d_uid}"), a).await;
    assert_eq!((cancelled.status, cancelled.text.as_str()), (202, ""));
    // Cancelled, unless its nodes (no BMC here) failed first: then it is
    // over with each node KO.
    let d = get(&ctx, &format!("{deployments}/{d_uid}"), a).await.json(200);
    match d["status"].as_str() {
        Some("canceled") => assert!(d.get("result").is_none(), "{d}"),
        Some("terminated") => {
            for f in &fqdns[..2] {
                assert_eq!(d["result"][f]["state"], "KO", "{d}");
            }
        }
        _ => panic!("neither canceled nor terminated: {d}"),
    }
}

#[tokio::test]
async fn ferrums_own_api_deploys_a_subset_of_a_lease() {
    let (ctx, alice, _bob) = lab().await;
    ctx.post("/api/v1/environments", &ctx.admin, tiny()).await.expect(201);
    let lease = ctx
        .post("/api/v1/leases", &alice, json!({"nodes": {"names": ["chifflot-1", "chifflot-2"]}, "duration": "1h", "type": "deploy"}))
        .await
        .expect(201);
    let id = lease["id"].as_i64().expect("id");
    ctx.wait_lease_state(id, &alice, "active").await;
    let path = format!("/api/v1/leases/{id}/deployments");
    let msg =
        ctx.post(&path, &alice, json!({"environment": "tiny", "ssh_keys": [KEY], "nodes": ["chifflot-3"]})).await.error(400, "bad_request");
    assert_eq!(msg, format!("nodes: 'chifflot-3' is not a node of lease {id}"));
    let msg = ctx.post(&path, &alice, json!({"environment": "tiny", "ssh_keys": [KEY], "nodes": []})).await.error(400, "bad_request");
    assert!(msg.starts_with("nodes:"), "{msg}");
    let msg = ctx
        .post(&path, &alice, json!({"environment": "tiny", "ssh_keys": [KEY], "nodes": ["chifflot-2", "chifflot-2"]}))
        .await
        .error(400, "bad_request");
    assert!(msg.contains("twice"), "{msg}");
    let d = ctx.post(&path, &alice, json!({"environment": "tiny", "ssh_keys": [KEY], "nodes": ["chifflot-2"]})).await.expect(201);
    let names: Vec<&str> = d["nodes"].as_array().expect("nodes").iter().filter_map(|n| n["node"].as_str()).collect();
    assert_eq!(names, ["chifflot-2"]);
    assert_eq!((ctx.node_state("chifflot-1").await.as_str(), ctx.node_state("chifflot-2").await.as_str()), ("reserved", "deploying"));
}
