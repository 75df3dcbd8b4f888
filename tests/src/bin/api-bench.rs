//! `api-bench [SECONDS]`: the REST API's throughput on loopback, SQLite
//! against PostgreSQL, one replica against three, in one run, as a table.
//!
//! Each setup is real `ferrumd` processes (release build when this binary
//! is) on a fresh database: SQLite in its data directory, or one database
//! of a throw-away PostgreSQL cluster shared by the replicas. The fixture
//! nodes are imported and one user is created. Then, for SECONDS (default
//! 5) after a one-second warm-up each, the load generator (in this
//! process: 64 connections, requests spread round-robin over the
//! replicas) runs:
//! - node reads: `GET /api/v1/nodes/{name}` over every node, as the user
//!   (token check, node with its properties, MACs and whole reference
//!   description);
//! - lease reads: `GET /api/v1/leases/{id}` (token check, lease with its
//!   nodes);
//! - lease creations: `POST /api/v1/leases`, one node for one hour, each
//!   request a free slot (node i mod N, hour i div N), so every answer
//!   should be 201: the whole placement path (calendar cache, policy,
//!   database transaction with the overlap rule).
//!
//! Goals (ISSUE 9, 2 cores): ≥ 20,000 reads/s and ≥ 1,000 lease
//! creations/s on SQLite. The load generator shares the cores with the
//! servers (and, for PostgreSQL, with the database): the figures are for
//! the whole machine. Non-2xx answers are counted and reported, never
//! hidden in the rate.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferrum_lab::postgres::Postgres;
use ferrum_tests::Ferrumd;
use serde_json::{Value, json};

const CONNECTIONS: usize = 64;

struct Setup {
    name: &'static str,
    replicas: Vec<Ferrumd>,
    _postgres: Option<Postgres>,
}

fn sqlite() -> Setup {
    Setup { name: "SQLite, 1 replica", replicas: vec![Ferrumd::start()], _postgres: None }
}

fn postgres(count: usize, name: &'static str) -> Setup {
    let pg = Postgres::start().expect("throw-away PostgreSQL");
    let url = pg.create_database("bench").expect("database");
    let replicas = (0..count).map(|_| Ferrumd::start_replica(&url)).collect();
    Setup { name, replicas, _postgres: Some(pg) }
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
}

struct Outcome {
    per_second: f64,
    failed: u64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Runs `request(i)` from CONNECTIONS tasks for `warmup + seconds`,
/// counting what completes after the warm-up.
async fn load<F, Fut>(seconds: u64, request: F) -> Outcome
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let request = Arc::new(request);
    let counts = Arc::new(Counts::default());
    let next = Arc::new(AtomicU64::new(0));
    let warm_until = Instant::now() + Duration::from_secs(1);
    let stop_at = warm_until + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (request, counts, next) = (request.clone(), counts.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let t = Instant::now();
                if t >= stop_at {
                    return latencies;
                }
                let ok = request(next.fetch_add(1, Ordering::Relaxed)).await;
                if t >= warm_until {
                    latencies.push(t.elapsed());
                    if ok { &counts.ok } else { &counts.failed }.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("load task"));
    }
    latencies.sort();
    let pct = |p: f64| latencies.get(((latencies.len().max(1) - 1) as f64 * p) as usize).map_or(0.0, |d| d.as_secs_f64() * 1e3);
    Outcome {
        per_second: counts.ok.load(Ordering::Relaxed) as f64 / seconds as f64,
        failed: counts.failed.load(Ordering::Relaxed),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
    }
}

async fn measure(setup: &Setup, seconds: u64) -> [Outcome; 3] {
    let client = reqwest::Client::builder().pool_max_idle_per_host(CONNECTIONS).build().expect("HTTP client");
    let first = &setup.replicas[0];
    let admin = first.admin_token.clone();
    let out = first.ferrum(&admin, &["node", "import", ferrum_tests::fixtures().to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "import: {}", String::from_utf8_lossy(&out.stderr));
    let post = |path: &str, body: Value| client.post(format!("{}{path}", first.url)).bearer_auth(&admin).json(&body).send();
    assert!(post("/api/v1/projects", json!({"name": "p-bench"})).await.expect("project").status().is_success());
    let user: Value =
        post("/api/v1/users", json!({"name": "bencher", "projects": ["p-bench"]})).await.expect("user").json().await.expect("json");
    let token = user["token"].as_str().expect("token").to_owned();
    let nodes: Vec<String> = client
        .get(format!("{}/api/v1/nodes", first.url))
        .bearer_auth(&token)
        .send()
        .await
        .expect("nodes")
        .json::<Value>()
        .await
        .expect("json")
        .as_array()
        .expect("node list")
        .iter()
        // Prototype nodes need `exotic: true`: the creations leave them out.
        .filter(|n| n["properties"]["exotic"] != true)
        .map(|n| n["name"].as_str().expect("name").to_owned())
        .collect();
    let urls: Arc<Vec<String>> = Arc::new(setup.replicas.iter().map(|r| r.url.clone()).collect());
    // One lease to read, before the creations' slots.
    let lease: Value = client
        .post(format!("{}/api/v1/leases", first.url))
        .bearer_auth(&token)
        .json(&json!({"nodes": {"count": 1}, "start": (chrono::Utc::now() + chrono::Duration::hours(3)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "duration": "1h"}))
        .send()
        .await
        .expect("lease")
        .json()
        .await
        .expect("json");
    let lease_id = lease["id"].as_i64().unwrap_or_else(|| panic!("lease: {lease}"));

    let read = |paths: Arc<Vec<String>>| {
        let (client, token, urls) = (client.clone(), token.clone(), urls.clone());
        load(seconds, move |i| {
            let (client, token, urls, paths) = (client.clone(), token.clone(), urls.clone(), paths.clone());
            async move {
                let url = &urls[i as usize % urls.len()];
                let path = &paths[i as usize % paths.len()];
                match client.get(format!("{url}{path}")).bearer_auth(&token).send().await {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                }
            }
        })
    };
    let node_reads = read(Arc::new(nodes.iter().map(|n| format!("/api/v1/nodes/{n}")).collect())).await;
    let lease_reads = read(Arc::new(vec![format!("/api/v1/leases/{lease_id}")])).await;
    let creations = {
        let (client, token, urls, nodes) = (client.clone(), token.clone(), urls.clone(), Arc::new(nodes));
        let base = chrono::Utc::now() + chrono::Duration::days(1);
        let base = base.timestamp() - base.timestamp() % 3600;
        load(seconds, move |i| {
            let (client, token, urls, nodes) = (client.clone(), token.clone(), urls.clone(), nodes.clone());
            async move {
                let url = &urls[i as usize % urls.len()];
                let n = nodes.len() as u64;
                let start =
                    chrono::DateTime::from_timestamp(base + i64::try_from(i / n).unwrap_or(i64::MAX / 7200) * 3600, 0).expect("time");
                let body = json!({
                    "nodes": {"names": [nodes[(i % n) as usize]]},
                    "start": start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "duration": "1h",
                });
                match client.post(format!("{url}/api/v1/leases")).bearer_auth(&token).json(&body).send().await {
                    Ok(r) if r.status().as_u16() == 201 => r.bytes().await.is_ok(),
                    Ok(r) => {
                        if std::env::var_os("FERRUM_BENCH_VERBOSE").is_some() {
                            eprintln!("{}: {}", r.status(), r.text().await.unwrap_or_default());
                        }
                        false
                    }
                    Err(_) => false,
                }
            }
        })
        .await
    };
    [node_reads, lease_reads, creations]
}

fn main() {
    let seconds: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    println!("API throughput on loopback, {CONNECTIONS} connections, {seconds} s per measure (after 1 s warm-up)");
    println!("| setup | node reads/s (p50, p99 ms) | lease reads/s (p50, p99 ms) | lease creations/s (p50, p99 ms) | failed |");
    println!("|---|---|---|---|---|");
    let mut sqlite_rates = None;
    let setups: [fn() -> Setup; 3] = [sqlite, || postgres(1, "PostgreSQL, 1 replica"), || postgres(3, "PostgreSQL, 3 replicas")];
    for make in setups {
        let setup = make();
        let outcomes = rt.block_on(measure(&setup, seconds));
        let cell = |o: &Outcome| format!("{:.0} ({:.1}, {:.1})", o.per_second, o.p50_ms, o.p99_ms);
        println!(
            "| {} | {} | {} | {} | {} |",
            setup.name,
            cell(&outcomes[0]),
            cell(&outcomes[1]),
            cell(&outcomes[2]),
            outcomes.iter().map(|o| o.failed).sum::<u64>()
        );
        let [nodes, leases, creations] = &outcomes;
        // Reads: node and lease reads in equal numbers (harmonic mean).
        let reads = 2.0 / (1.0 / nodes.per_second.max(1e-9) + 1.0 / leases.per_second.max(1e-9));
        sqlite_rates.get_or_insert((reads, creations.per_second));
        drop(setup);
    }
    if let Some((reads, creations)) = sqlite_rates {
        println!(
            "goals on SQLite: reads (node and lease alike) {reads:.0}/s (goal 20000: {}), lease creations {creations:.0}/s (goal 1000: {})",
            if reads >= 20_000.0 { "met" } else { "NOT met" },
            if creations >= 1_000.0 { "met" } else { "NOT met" }
        );
    }
}
