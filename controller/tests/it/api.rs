//! The API's shape: errors are JSON 4xx for every bad input, the OpenAPI
//! document is current, `/healthz` and `/metrics` answer.

use serde_json::json;

use super::harness::{TestContext, fresh_database};

#[tokio::test]
async fn malformed_bodies_are_400_naming_the_problem() {
    let ctx = TestContext::with_fixtures().await;
    let alice = ctx.user("alice", "p-vision").await;
    let raw = ctx
        .client
        .post(format!("{}/api/v1/leases", ctx.url))
        .bearer_auth(&alice)
        .header("content-type", "application/json")
        .body("{\"nodes\": ")
        .send()
        .await
        .expect("sent");
    assert_eq!(raw.status(), 400);
    let body: serde_json::Value = raw.json().await.expect("json error");
    assert_eq!(body["error"]["code"], "bad_request");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("not valid JSON")), "{body}");

    let msg = ctx.post("/api/v1/leases", &alice, json!({"nodes": {"count": "two"}, "duration": "1h"})).await.error(400, "bad_request");
    assert!(msg.contains("nodes.count"), "{msg}");
    let msg = ctx
        .post("/api/v1/leases", &alice, json!({"nodes": {"count": 1}, "duration": "1h", "colour": "red"}))
        .await
        .error(400, "bad_request");
    assert!(msg.contains("colour"), "{msg}");
    let msg = ctx
        .post("/api/v1/leases", &alice, json!({"nodes": {"count": 1}, "duration": "1h", "start": "tomorrow"}))
        .await
        .error(400, "bad_request");
    assert!(msg.contains("start"), "{msg}");
    // A body is an object: serde alone would take the fields in order.
    let msg = ctx.post("/api/v1/leases", &alice, json!([{"count": 1}, "1h"])).await.error(400, "bad_request");
    assert_eq!(msg, "the request body must be a JSON object");
    // An integral number is an integer (JSON Schema's rule); a fraction is not.
    let msg = ctx.post("/api/v1/leases", &alice, json!({"nodes": {"count": 1.5}, "duration": "1h"})).await.error(400, "bad_request");
    assert!(msg.contains("nodes.count"), "{msg}");
    let lease = ctx.post("/api/v1/leases", &alice, json!({"nodes": {"count": 1.0}, "duration": "1h"})).await.expect(201);
    assert_eq!(lease["nodes"].as_array().map(Vec::len), Some(1), "{lease}");
    let msg = ctx.get("/api/v1/leases/abc", &alice).await.error(400, "bad_request");
    assert!(msg.contains("invalid path"), "{msg}");
    let msg = ctx.get("/api/v1/availability?count=x&duration=1h", &alice).await.error(400, "bad_request");
    assert!(msg.contains("count"), "{msg}");
    ctx.get("/api/v1/leases/999", &alice).await.error(404, "not_found");
    ctx.get("/api/v1/nodes/nope", &alice).await.error(404, "not_found");
    let msg = ctx.get("/api/v2/whatever", &alice).await.error(404, "not_found");
    assert_eq!(msg, "no endpoint at /api/v2/whatever (the API lives under /api/v1)");
    let msg = ctx.get("/api/v1/nodez", &alice).await.error(404, "not_found");
    assert_eq!(msg, "no endpoint at /api/v1/nodez (see /api/v1/openapi.json)");
    ctx.request(reqwest::Method::PUT, "/api/v1/leases", Some(&alice), None).await.error(405, "method_not_allowed");
}

#[tokio::test]
async fn health_metrics_and_openapi() {
    let ctx = TestContext::with_fixtures().await;
    let h = ctx.request(reqwest::Method::GET, "/healthz", None, None).await.expect(200);
    assert_eq!(h["status"], "ok");
    let alice = ctx.user("alice", "p-vision").await;
    ctx.post(
        "/api/v1/leases",
        &alice,
        json!({"nodes": {"count": 2}, "start": super::harness::at(chrono::Duration::hours(5)), "duration": "1h"}),
    )
    .await
    .expect(201);

    let text = ctx.client.get(format!("{}/metrics", ctx.url)).send().await.expect("sent").text().await.expect("text");
    assert!(text.contains("ferrum_leases{state=\"pending\"} 1"), "{text}");
    assert!(text.contains("ferrum_nodes{state=\"available\"} 10"), "{text}");
    assert!(text.contains("ferrum_http_request_duration_seconds_bucket{"), "{text}");
    assert!(text.contains("route=\"/api/v1/leases\""), "{text}");
    assert!(!text.contains(&alice) && !text.contains(&ctx.admin), "no token in metrics");

    let served = ctx.request(reqwest::Method::GET, "/api/v1/openapi.json", None, None).await.expect(200);
    assert_eq!(served["info"]["title"], "ferrum API");
    assert!(served["paths"]["/api/v1/leases"]["post"].is_object());
}

/// The committed OpenAPI document must match the code. Regenerate with
/// `FERRUM_UPDATE_OPENAPI=1 cargo test -p ferrum-controller openapi`.
#[test]
fn openapi_document_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../api-spec/openapi.yaml");
    let generated = ferrum_controller::http::openapi_yaml();
    if std::env::var_os("FERRUM_UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &generated).expect("write openapi.yaml");
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(committed == generated, "api-spec/openapi.yaml is stale: run FERRUM_UPDATE_OPENAPI=1 cargo test -p ferrum-controller openapi");
}

/// The document is exact enough for clients and generators: every
/// operation has its own operationId, every `$ref` points at something,
/// path parameters are exactly the template's `{names}` (query parameters
/// are not declared `in: path`), and every operation that takes a token
/// documents 401.
#[test]
fn openapi_document_is_consistent() {
    let doc = serde_json::to_value(<ferrum_controller::http::ApiDoc as utoipa::OpenApi>::openapi()).expect("document as JSON");
    let mut problems = Vec::new();

    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    for r in refs {
        let pointer = r.strip_prefix('#').unwrap_or(&r);
        if !r.starts_with("#/") || doc.pointer(pointer).is_none() {
            problems.push(format!("$ref {r} points nowhere"));
        }
    }

    let mut ids = std::collections::BTreeMap::<String, Vec<String>>::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let template: std::collections::BTreeSet<&str> =
            path.split('{').skip(1).filter_map(|s| s.split_once('}')).map(|(name, _)| name).collect();
        for (method, op) in item.as_object().expect("path item") {
            let at = format!("{} {path}", method.to_uppercase());
            match op["operationId"].as_str() {
                Some(id) => ids.entry(id.to_owned()).or_default().push(at.clone()),
                None => problems.push(format!("{at}: no operationId")),
            }
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let in_path: std::collections::BTreeSet<&str> =
                params.iter().filter(|p| p["in"] == "path").filter_map(|p| p["name"].as_str()).collect();
            if in_path != template {
                problems.push(format!("{at}: path parameters {in_path:?}, the template has {template:?}"));
            }
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            if secured && op["responses"]["401"].is_null() {
                problems.push(format!("{at}: takes a token but does not document 401"));
            }
            for (status, response) in op["responses"].as_object().expect("responses") {
                if response["description"].as_str().is_none_or(str::is_empty) {
                    problems.push(format!("{at}: response {status} has no description"));
                }
            }
        }
    }
    for (id, ops) in ids {
        if ops.len() > 1 {
            problems.push(format!("operationId {id} is used by {}", ops.join(", ")));
        }
    }
    assert!(problems.is_empty(), "the OpenAPI document is inconsistent:\n{}", problems.join("\n"));
}

fn collect_refs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(r) = map.get("$ref").and_then(|r| r.as_str()) {
                out.push(r.to_owned());
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn migrations_run_on_an_empty_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = fresh_database(dir.path());
    let key = ferrum_controller::db::SecretKey::generate().expect("key");
    let store = ferrum_controller::db::open(&url, key.clone()).await.expect("migrations run on an empty database");
    assert_eq!(store.count_users().await.expect("query"), 0);
    assert_eq!(store.calendar_generation().await.expect("query"), 0);
    // Opening again (migrations already applied) is a no-op.
    drop(store);
    ferrum_controller::db::open(&url, key).await.expect("re-open");
}

/// The database refuses overlapping allocations by itself, whatever the
/// application code does: an insertion and an extension that overlap
/// another lease on one node are both refused.
#[tokio::test]
async fn the_database_refuses_double_booking() {
    use ferrum_controller::db::{DbError, NewEvent, NewLease, NodeWrite};
    use ferrum_controller::model::{LeaseState, LeaseType};
    let dir = tempfile::tempdir().expect("tempdir");
    let key = ferrum_controller::db::SecretKey::generate().expect("key");
    let store = ferrum_controller::db::open(&fresh_database(dir.path()), key).await.expect("open");
    let node = |name: &str, mac: &str| NodeWrite {
        name: name.into(),
        site: "s".into(),
        cluster: "c".into(),
        ip: None,
        macs: vec![mac.into()],
        bmc_url: None,
        properties: Default::default(),
        admin_properties: Default::default(),
        reference: None,
        reference_sha256: None,
    };
    let added =
        NewEvent { at: 0, actor: "test".into(), from_shown: "enrolling".into(), to_shown: "enrolling".into(), reason: "test".into() };
    store.import_nodes(&[node("n1", "02:00:00:00:00:01"), node("n2", "02:00:00:00:00:02")], &added).await.expect("import");
    let ids: Vec<_> = store.list_nodes().await.expect("nodes").iter().map(|n| n.id).collect();
    let user = store.create_user("u", false, None, &[], "h", 0).await.expect("user");
    let lease = |nodes: Vec<_>, start, end| NewLease {
        owner_id: user.id,
        project_id: None,
        lease_type: LeaseType::Default,
        state: LeaseState::Pending,
        start,
        end,
        exotic: false,
        filter: None,
        groups: None,
        deploy: None,
        name: None,
        reason: None,
        nodes,
        created_at: 0,
    };
    let g = store.calendar_generation().await.expect("generation");
    let (first, g) = store.insert_lease(&lease(vec![ids[0]], 100, 200), &[], g).await.expect("first lease");
    // Overlapping on n1 (even partly, even with another free node): refused, nothing written.
    let err = store.insert_lease(&lease(vec![ids[1], ids[0]], 150, 250), &[], g).await.expect_err("overlap");
    assert!(matches!(err, DbError::DoubleBooked), "{err:?}");
    assert_eq!(store.list_leases(None, true).await.expect("leases").len(), 1, "the refused lease left no row");
    // Back to back is fine ([start, end) is half-open).
    let (second, g) = store.insert_lease(&lease(vec![ids[0]], 200, 300), &[], g).await.expect("adjacent lease");
    // Extending the first into the second: refused.
    let err = store.set_lease_end(first.id, 201, &[], g, 0).await.expect_err("overlapping extension");
    assert!(matches!(err, DbError::DoubleBooked), "{err:?}");
    // A stale generation is refused before anything is written.
    let err = store.insert_lease(&lease(vec![ids[1]], 500, 600), &[], g - 1).await.expect_err("stale");
    assert!(matches!(err, DbError::StaleCalendar), "{err:?}");
    assert_eq!(store.get_lease(second.id).await.expect("second").end, 300);
}
