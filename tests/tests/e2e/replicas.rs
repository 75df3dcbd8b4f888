//! Several `ferrumd` replicas on one PostgreSQL database (a throw-away
//! cluster on loopback): the database keeps "never two leases on one node"
//! whichever replica writes, and the background loops survive the death of
//! the replica running them.

use std::time::Duration;

use chrono::Utc;
use ferrum_lab::postgres::Postgres;
use ferrum_tests::{Ferrumd, block_on, wait_until};
use serde_json::{Value, json};

/// Replicas first: they stop before the database does.
struct Replicas {
    ferrumd: Vec<Ferrumd>,
    _postgres: Postgres,
}

impl Replicas {
    fn start(count: usize) -> Replicas {
        let postgres = Postgres::start().expect("throw-away PostgreSQL starts");
        let url = postgres.create_database("ferrum").expect("database created");
        // The first creates the schema and the admin; the others join.
        let ferrumd = (0..count).map(|_| Ferrumd::start_replica(&url)).collect::<Vec<_>>();
        assert!(!ferrumd[0].admin_token.is_empty(), "the first replica created the admin");
        Replicas { ferrumd, _postgres: postgres }
    }

    fn admin(&self) -> String {
        self.ferrumd[0].admin_token.clone()
    }

    /// Which live replicas say (in `/metrics`) that they run the loops.
    async fn leaders(&self, client: &reqwest::Client, alive: &[usize]) -> Vec<usize> {
        let mut leaders = Vec::new();
        for &i in alive {
            let text = client.get(format!("{}/metrics", self.ferrumd[i].url)).send().await.expect("metrics").text().await.expect("text");
            if text.lines().any(|l| l.trim() == "ferrum_leader 1") {
                leaders.push(i);
            }
        }
        leaders
    }

    /// Imports the fixtures (through the first replica) and creates a
    /// project with `users` members; returns their tokens.
    async fn populate(&self, client: &reqwest::Client, users: usize) -> Vec<String> {
        let first = &self.ferrumd[0];
        let out = first.ferrum(&self.admin(), &["node", "import", ferrum_tests::fixtures().to_str().expect("utf-8 path")]);
        assert!(out.status.success(), "import failed: {}", String::from_utf8_lossy(&out.stderr));
        let created = client
            .post(format!("{}/api/v1/projects", first.url))
            .bearer_auth(self.admin())
            .json(&json!({"name": "p-replicas"}))
            .send()
            .await
            .expect("project");
        assert_eq!(created.status().as_u16(), 201);
        let mut tokens = Vec::new();
        for i in 0..users {
            // Spread over the replicas: any of them writes.
            let url = &self.ferrumd[i % self.ferrumd.len()].url;
            let r: Value = client
                .post(format!("{url}/api/v1/users"))
                .bearer_auth(self.admin())
                .json(&json!({"name": format!("replica-user{i}"), "projects": ["p-replicas"]}))
                .send()
                .await
                .expect("user")
                .json()
                .await
                .expect("json");
            tokens.push(r["token"].as_str().expect("token").to_owned());
        }
        tokens
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_conflicting_requests_over_three_replicas_exactly_one_wins() {
    let replicas = Replicas::start(3);
    let client = reqwest::Client::new();
    let tokens = replicas.populate(&client, 4).await;

    let start = (Utc::now() + chrono::Duration::hours(2)).format("%Y-%m-%dT%H:00:00Z").to_string();
    let body = json!({"nodes": {"names": ["chifflot-7", "chifflot-8"]}, "start": start, "duration": "3h"});
    // Request i goes to replica i mod 3 with token i mod 4.
    let targets: Vec<(String, String)> = (0..12).map(|i| (replicas.ferrumd[i % 3].url.clone(), tokens[i % tokens.len()].clone())).collect();
    let (won, lost) = ferrum_tests::race_for_one_slot(&targets, &body, 100, &start, 3).await;
    assert_eq!((won, lost), (1, 99));

    // Every replica reads the same calendar: one lease on those nodes.
    for replica in &replicas.ferrumd {
        let leases: Value = client
            .get(format!("{}/api/v1/leases", replica.url))
            .bearer_auth(replicas.admin())
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        assert_eq!(leases.as_array().map(Vec::len), Some(1), "{leases}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_leader_hands_the_loops_to_another_replica() {
    let mut replicas = Replicas::start(3);
    let client = reqwest::Client::new();
    let all = [0, 1, 2];
    let leader = wait_until("one replica leads", Duration::from_secs(20), || {
        let leaders = block_on(replicas.leaders(&client, &all));
        if leaders.len() == 1 { Ok(leaders[0]) } else { Err(format!("leaders: {leaders:?}")) }
    });
    let tokens = replicas.populate(&client, 1).await;
    let survivor = replicas.ferrumd[(leader + 1) % 3].url.clone();
    // The leader's clock loop enrols the imported nodes.
    wait_until("chifflot-1 available", Duration::from_secs(30), || {
        let node: Value = block_on(async {
            client.get(format!("{survivor}/api/v1/nodes/chifflot-1")).bearer_auth(&tokens[0]).send().await?.json().await
        })
        .map_err(|e| e.to_string())?;
        if node["state"] == "available" { Ok(()) } else { Err(node["state"].to_string()) }
    });

    // A lease that starts after the leader is gone.
    let start = Utc::now() + chrono::Duration::seconds(8);
    let body =
        json!({"nodes": {"names": ["chifflot-1"]}, "start": start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "duration": "8s"});
    let created = client.post(format!("{survivor}/api/v1/leases")).bearer_auth(&tokens[0]).json(&body).send().await.expect("lease request");
    assert_eq!(created.status().as_u16(), 201);
    let lease: Value = created.json().await.expect("json");
    let id = lease["id"].as_i64().expect("lease id");

    // kill -9 the leader.
    replicas.ferrumd[leader].child.kill().expect("SIGKILL");
    replicas.ferrumd[leader].child.wait().expect("reaped");
    let alive: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
    let new_leader = wait_until("another replica leads", Duration::from_secs(10), || {
        let leaders = block_on(replicas.leaders(&client, &alive));
        if leaders.len() == 1 { Ok(leaders[0]) } else { Err(format!("leaders: {leaders:?}")) }
    });
    assert_ne!(new_leader, leader);

    // The new leader starts and ends the lease on time (within the clock
    // loop's reach of its start and end: a few seconds).
    let state = |url: String| {
        let (client, token) = (client.clone(), tokens[0].clone());
        move || -> Result<String, String> {
            let lease: Value =
                block_on(async { client.get(format!("{url}/api/v1/leases/{id}")).bearer_auth(&token).send().await?.json().await })
                    .map_err(|e| e.to_string())?;
            Ok(lease["state"].as_str().unwrap_or_default().to_owned())
        }
    };
    let read = state(survivor.clone());
    let slack = chrono::Duration::seconds(4);
    let until = |t: chrono::DateTime<Utc>| (t - Utc::now()).to_std().unwrap_or_default();
    wait_until("the lease started", until(start + slack), || match read()? {
        s if s == "active" => Ok(()),
        s => Err(s),
    });
    wait_until("the lease ended", until(start + chrono::Duration::seconds(8) + slack), || match read()? {
        s if s == "ending" || s == "finished" => Ok(()),
        s => Err(s),
    });
}
