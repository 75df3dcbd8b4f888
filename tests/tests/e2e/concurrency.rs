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
    let targets: Vec<(String, String)> = tokens.iter().map(|t| (server.url.clone(), t.clone())).collect();
    let (won, lost) = ferrum_tests::race_for_one_slot(&targets, &body, 100, &start, 3).await;
    assert_eq!((won, lost), (1, 99));

    // The database agrees: one lease on those nodes.
    let leases: serde_json::Value =
        client.get(format!("{}/api/v1/leases", server.url)).bearer_auth(admin).send().await.expect("list").json().await.expect("json");
    assert_eq!(leases.as_array().map(Vec::len), Some(1));
}
