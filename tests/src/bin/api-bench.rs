//! `api-bench [SECONDS]`: the REST API's throughput on loopback, SQLite
//! against PostgreSQL, one replica against three, in one run, as a table.
//!
//! Each setup is real `ferrumd` processes (release build when this binary
//! is) on a fresh database: SQLite in its data directory, or one database
//! of a throw-away PostgreSQL cluster shared by the replicas. The fixture
//! nodes are imported and one user is created. Then the load generator,
//! `wrk` (Debian package `wrk`; 64 connections, its threads spread over the
//! replicas), runs a one-second warm-up and SECONDS (default 5) of:
//! - node reads: `GET /api/v1/nodes/{name}` over every node, as the user
//!   (token check, node with its properties, MACs and whole reference
//!   description);
//! - lease reads: `GET /api/v1/leases/{id}` (token check, lease with its
//!   nodes);
//! - lease creations: `POST /api/v1/leases`, one node for one hour, each
//!   request a free slot (node k mod N, hour k div N), so every answer
//!   should be 201: the whole placement path (calendar cache, policy,
//!   database transaction with the overlap rule).
//!
//! Goals (ISSUE 9, 2 cores): ≥ 20,000 reads/s and ≥ 1,000 lease
//! creations/s on SQLite. The load generator shares the cores with the
//! servers (and, for PostgreSQL, with the database): the figures are for
//! the whole machine. Non-2xx answers are counted and reported, never
//! hidden in the rate.

use std::io::Write;
use std::process::Command;

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

struct Outcome {
    per_second: f64,
    failed: u64,
    p50_ms: f64,
    p99_ms: f64,
}

/// The part of every wrk script that spreads wrk's threads over the
/// replicas, numbers each thread's requests `k = id, id + threads, ...`
/// (so `request_for(k)` never repeats across threads), and prints one
/// machine-readable line at the end.
const WRK_COMMON: &str = r#"
local made = 0
function setup(thread)
  local t = targets[(made % #targets) + 1]
  thread.addr = wrk.lookup(t[1], t[2])[1]
  thread:set("id", made)
  made = made + 1
end
function init(args)
  k = id
end
function request()
  local this = k
  k = k + threads
  return request_for(this)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("FERRUM_BENCH %d %d %d %d %d %d\n", summary.requests, summary.duration,
    e.status, e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
end
"#;

/// Runs wrk for a one-second warm-up (with `warmup_script`) and then for
/// `seconds` (with `script`): each script defines `request_for(k)`.
fn wrk(urls: &[String], token: &str, seconds: u64, warmup_script: &str, script: &str) -> Outcome {
    let threads = urls.len().max(2);
    let targets = urls
        .iter()
        .map(|u| {
            let (host, port) = u.trim_start_matches("http://").rsplit_once(':').expect("host:port");
            format!("{{\"{host}\", \"{port}\"}}")
        })
        .collect::<Vec<_>>()
        .join(", ");
    let run = |seconds: u64, body: &str| {
        let mut file = tempfile::NamedTempFile::new().expect("script file");
        write!(
            file,
            "targets = {{{targets}}}\nthreads = {threads}\nwrk.headers[\"Authorization\"] = \"Bearer {token}\"\n\
             wrk.headers[\"Content-Type\"] = \"application/json\"\n{body}\n{WRK_COMMON}"
        )
        .expect("write script");
        let out = Command::new("wrk")
            .args(["-t", &threads.to_string(), "-c", &CONNECTIONS.to_string(), "-d", &format!("{seconds}s"), "-s"])
            .arg(file.path())
            .arg(&urls[0])
            .output()
            .expect("wrk (apt-get install wrk)");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "wrk: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        let line = stdout.lines().find_map(|l| l.strip_prefix("FERRUM_BENCH ")).unwrap_or_else(|| panic!("wrk said: {stdout}"));
        let f: Vec<u64> = line.split_whitespace().map(|v| v.parse().expect("number")).collect();
        let (requests, duration_us, status_errors, socket_errors, p50_us, p99_us) = (f[0], f[1], f[2], f[3], f[4], f[5]);
        let failed = status_errors + socket_errors;
        Outcome {
            per_second: requests.saturating_sub(status_errors) as f64 / (duration_us as f64 / 1e6),
            failed,
            p50_ms: p50_us as f64 / 1e3,
            p99_ms: p99_us as f64 / 1e3,
        }
    };
    run(1, warmup_script);
    run(seconds, script)
}

/// A Lua list of strings.
fn lua_strings(items: &[String]) -> String {
    items.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ")
}

async fn measure(setup: &Setup, seconds: u64) -> [Outcome; 3] {
    let client = reqwest::Client::new();
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
    let urls: Vec<String> = setup.replicas.iter().map(|r| r.url.clone()).collect();
    // One lease to read, before the creations' slots.
    let start = (chrono::Utc::now() + chrono::Duration::hours(3)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (_, lease) = ferrum_tests::post_json(
        &client,
        &format!("{}/api/v1/leases", first.url),
        &token,
        &json!({"nodes": {"count": 1}, "start": start, "duration": "1h"}),
    )
    .await;
    let lease_id = lease["id"].as_i64().unwrap_or_else(|| panic!("lease: {lease}"));

    let node_reads = format!(
        "local paths = {{{}}}\nfunction request_for(k) return wrk.format(\"GET\", paths[(k % #paths) + 1]) end",
        lua_strings(&nodes.iter().map(|n| format!("/api/v1/nodes/{n}")).collect::<Vec<_>>())
    );
    let lease_reads = format!("function request_for(k) return wrk.format(\"GET\", \"/api/v1/leases/{lease_id}\") end");
    // Creation k: node k mod N, the hour k div N after `base`: every
    // request a free slot, so every answer should be 201. The warm-up's
    // slots lie 200 days later, clear of the measured run's.
    let creations = |base: i64| {
        format!(
            "local nodes = {{{}}}\nlocal base = {base}\nfunction request_for(k)\n  \
             local start = os.date(\"!%Y-%m-%dT%H:%M:%SZ\", base + math.floor(k / #nodes) * 3600)\n  \
             local body = string.format('{{\"nodes\": {{\"names\": [\"%s\"]}}, \"start\": \"%s\", \"duration\": \"1h\"}}', nodes[(k % #nodes) + 1], start)\n  \
             return wrk.format(\"POST\", \"/api/v1/leases\", nil, body)\nend",
            lua_strings(&nodes)
        )
    };
    let day = chrono::Utc::now() + chrono::Duration::days(1);
    let base = day.timestamp() - day.timestamp() % 3600;
    [
        wrk(&urls, &token, seconds, &node_reads, &node_reads),
        wrk(&urls, &token, seconds, &lease_reads, &lease_reads),
        wrk(&urls, &token, seconds, &creations(base + 200 * 86_400), &creations(base)),
    ]
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
