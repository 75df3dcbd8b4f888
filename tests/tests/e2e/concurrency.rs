//! No double booking under concurrent requests against a running ferrumd.

use chrono::{Duration, Utc};
use ferrum_tests::Ferrumd;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_conflicting_requests_exactly_one_wins() {
    let server = Ferrumd::start();
    let out = server.ferrum(&server.admin_token, &["node", "import", ferrum_tests::fixtures().to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "import failed: {}", String::from_utf8_lossy(&out.stderr));

    let client = reqwest::Client::new();
    let admin = &server.admin_token;
    client
        .post(format!("{}/api/v1/projects", server.url))
        .bearer_auth(admin)
        .json(&json!({"name": "p-race"}))
        .send()
        .await
        .expect("project");
    let mut tokens = Vec::new();
    for i in 0..4 {
        let r: serde_json::Value = client
            .post(format!("{}/api/v1/users", server.url))
            .bearer_auth(admin)
            .json(&json!({"name": format!("racer{i}"), "projects": ["p-race"]}))
            .send()
            .await
            .expect("user")
            .json()
            .await
            .expect("json");
        tokens.push(r["token"].as_str().expect("token").to_owned());
    }

    let start = (Utc::now() + Duration::hours(2)).format("%Y-%m-%dT%H:00:00Z").to_string();
    let body = json!({"nodes": {"names": ["chifflot-7", "chifflot-8"]}, "start": start, "duration": "3h"});
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (client, url, token, body) = (client.clone(), server.url.clone(), tokens[i % tokens.len()].clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let resp = client.post(format!("{url}/api/v1/leases")).bearer_auth(token).json(&body).send().await.expect("request");
            let status = resp.status().as_u16();
            (status, resp.json::<serde_json::Value>().await.expect("json answer"))
        }));
    }
    let mut won = 0;
    let mut lost = 0;
    let expected_earliest = (chrono::DateTime::parse_from_rfc3339(&start).expect("start") + Duration::hours(3)).with_timezone(&Utc);
    for t in tasks {
        let (status, body) = t.await.expect("task");
        match status {
            201 => won += 1,
            409 => {
                lost += 1;
                let earliest = body["error"]["earliest_start"].as_str().expect("409 carries earliest_start");
                assert_eq!(chrono::DateTime::parse_from_rfc3339(earliest).expect("rfc3339"), expected_earliest, "{body}");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((won, lost), (1, 99));

    // The database agrees: one lease on those nodes.
    let leases: serde_json::Value =
        client.get(format!("{}/api/v1/leases", server.url)).bearer_auth(admin).send().await.expect("list").json().await.expect("json");
    assert_eq!(leases.as_array().map(Vec::len), Some(1));
}
