//! `usage-bench`: times `GET /api/v1/usage?group_by=project` over years of
//! synthetic usage records (default 1 million over 5 years) on a real
//! `ferrumd` (SQLite, HTTP on loopback), against a named baseline measured
//! in the same run: the naive query that scans and clips every record of
//! the window (`naive-scan`). Every answer is checked against the
//! baseline's (exit status 1 on any difference), so the bench is also a
//! correctness check at scale. Prints a table per window kind on stderr
//! and one JSON line on stdout.
//!
//! The records are written through `Datastore::insert_usage_records`, the
//! code path that maintains the monthly rollups; they all point at one real
//! lease and node (the schema's foreign keys), which the queries never
//! read.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use ferrum_controller::clock::Clock;
use ferrum_controller::config::Config;
use ferrum_controller::db::UsageRecordRow;
use ferrum_controller::model::{LeaseId, LeaseType, NodeId};
use ferrum_controller::server;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

#[derive(Debug, Parser)]
#[command(name = "usage-bench")]
struct Args {
    /// Usage records to generate.
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// Years they span, ending now.
    #[arg(long, default_value_t = 5)]
    years: i64,
    /// Timed requests (spread over four window kinds).
    #[arg(long, default_value_t = 200)]
    queries: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Keep the database here (default: a scratch directory, removed at the end).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// xorshift64*: deterministic, good enough for synthetic data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + i64::try_from(self.below(u64::try_from(hi - lo).unwrap_or(1))).unwrap_or(0)
    }
}

const DAY: i64 = 86_400;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.records == 0 || args.queries == 0 || args.years <= 0 {
        bail!("--records, --queries and --years must be positive");
    }
    let scratch = std::env::temp_dir().join(format!("usage-bench-{}", std::process::id()));
    let dir = args.data_dir.clone().unwrap_or_else(|| scratch.clone());
    std::fs::create_dir_all(&dir)?;
    let config = Config { data_dir: dir.clone(), ..Config::default() };
    let database = config.database_url();
    let app = server::open(config, Clock::System).await?;
    let token = std::fs::read_to_string(dir.join("admin.token")).context("admin.token")?.trim().to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}/api/v1", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(app.clone(), listener, async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();

    // One real node and lease for the records' foreign keys.
    let node = serde_json::json!({"name": "bench-1", "site": "s", "cluster": "c0", "macs": ["02:00:00:00:00:01"]});
    let answer = http.post(format!("{base}/nodes")).bearer_auth(&token).json(&node).send().await?;
    anyhow::ensure!(answer.status().is_success(), "node: {}", answer.text().await?);
    let lease_id = {
        let now = chrono::Utc::now() + chrono::Duration::days(1);
        let body = serde_json::json!({"nodes": {"names": ["bench-1"]}, "start": now, "duration": "1h"});
        let answer = http.post(format!("{base}/leases")).bearer_auth(&token).json(&body).send().await?;
        let lease: serde_json::Value = answer.json().await?;
        lease["id"].as_i64().context("lease id")?
    };
    let node_id = app.store.get_node("bench-1").await?.id;

    // Synthetic records.
    let now = chrono::Utc::now().timestamp();
    let span = args.years * 365 * DAY;
    let first = now - span;
    let mut rng = Rng(args.seed.max(1));
    let load = Instant::now();
    let mut batch = Vec::with_capacity(20_000);
    for i in 0..args.records {
        let user = rng.below(300);
        let project = if rng.below(4) == 0 { (user * 7 + 3) % 60 } else { user % 60 };
        let cluster = rng.below(12);
        let length = match rng.below(100) {
            0..70 => rng.range(600, 8 * 3600),
            70..95 => rng.range(8 * 3600, DAY),
            _ => rng.range(DAY, 3 * DAY),
        };
        let start = rng.range(first, now - length);
        let gpu_model = (cluster < 9).then(|| format!("GPU-{}", cluster % 4));
        batch.push(UsageRecordRow {
            id: 0,
            lease_id: LeaseId(lease_id),
            node_id: NodeId(node_id.0),
            user: format!("u{user:03}"),
            project: Some(format!("p-{project:02}")),
            node: format!("c{cluster}-{}", rng.below(40)),
            site: "s".into(),
            cluster: format!("c{cluster}"),
            gpu_count: if gpu_model.is_some() { 1 + i64::try_from(rng.below(8)).unwrap_or(0) } else { 0 },
            gpu_model,
            lease_type: LeaseType::Default,
            reserved_start: start,
            reserved_end: start + length,
            start,
            end: start + length,
            recorded_at: start + length,
        });
        if batch.len() == 20_000 || i + 1 == args.records {
            app.store.insert_usage_records(&batch).await?;
            batch.clear();
        }
    }
    let load_seconds = load.elapsed().as_secs_f64();
    eprintln!("loaded {} records in {load_seconds:.1} s", args.records);

    // The baseline reads the same file.
    let options = SqliteConnectOptions::from_str(&database)?.read_only(true);
    let naive = SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;

    let kinds = ["whole span", "calendar year", "90 days", "30 days"];
    let mut ferrum: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    let mut baseline: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    for q in 0..args.queries {
        let kind = kinds[q % kinds.len()];
        let (from, to) = match kind {
            "whole span" => (first, now),
            "calendar year" => {
                let year = chrono::DateTime::from_timestamp(rng.range(first + 366 * DAY, now), 0).context("time")?.format("%Y").to_string();
                let start = chrono::DateTime::parse_from_rfc3339(&format!("{year}-01-01T00:00:00Z"))?.timestamp();
                (start, (start + 365 * DAY).min(now))
            }
            "90 days" => {
                let s = rng.range(first, now - 90 * DAY);
                (s, s + 90 * DAY)
            }
            _ => {
                let s = rng.range(first, now - 30 * DAY);
                (s, s + 30 * DAY)
            }
        };
        let iso = |t: i64| chrono::DateTime::from_timestamp(t, 0).map(|d| d.to_rfc3339()).unwrap_or_default();
        let url = format!("{base}/usage");
        let query = [("group_by", "project".to_owned()), ("from", iso(from)), ("to", iso(to))];
        let t = Instant::now();
        let report: serde_json::Value = http.get(&url).bearer_auth(&token).query(&query).send().await?.error_for_status()?.json().await?;
        ferrum.entry(kind).or_default().push(t.elapsed());
        let got: BTreeMap<String, i64> = report["rows"]
            .as_array()
            .context("rows")?
            .iter()
            .map(|r| (r["key"].as_str().unwrap_or_default().to_owned(), r["node_seconds"].as_i64().unwrap_or(-1)))
            .collect();

        let t = Instant::now();
        let rows = sqlx::query(
            r#"SELECT COALESCE(project_name, ''), SUM(MIN("end", ?2) - MAX(start, ?1)) FROM usage_records
               WHERE start < ?2 AND "end" > ?1 GROUP BY 1"#,
        )
        .bind(from)
        .bind(to)
        .fetch_all(&naive)
        .await?;
        baseline.entry(kind).or_default().push(t.elapsed());
        let want: BTreeMap<String, i64> = rows.iter().map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1))).collect();
        if got != want {
            bail!("query {q} ({kind}, {} .. {}): ferrum and the naive scan disagree", iso(from), iso(to));
        }
    }
    let _ = stop.send(());
    server.await??;
    if args.data_dir.is_none() {
        std::fs::remove_dir_all(&scratch)?;
    }

    eprintln!("{:<14} {:>9} {:>9} {:>9} {:>13} {:>7}", "window", "p50 ms", "p99 ms", "max ms", "naive p99 ms", "ratio");
    let mut all: Vec<Duration> = Vec::new();
    let mut all_naive: Vec<Duration> = Vec::new();
    for kind in kinds {
        let mut f = ferrum.remove(kind).unwrap_or_default();
        let mut n = baseline.remove(kind).unwrap_or_default();
        f.sort();
        n.sort();
        eprintln!(
            "{kind:<14} {:>9.1} {:>9.1} {:>9.1} {:>13.1} {:>7.1}",
            percentile(&f, 0.5),
            percentile(&f, 0.99),
            percentile(&f, 1.0),
            percentile(&n, 0.99),
            percentile(&n, 0.99) / percentile(&f, 0.99)
        );
        all.extend(f);
        all_naive.extend(n);
    }
    all.sort();
    all_naive.sort();
    let (p50, p99, max, naive_p99) = (percentile(&all, 0.5), percentile(&all, 0.99), percentile(&all, 1.0), percentile(&all_naive, 0.99));
    println!(
        "{}",
        serde_json::json!({
            "records": args.records, "years": args.years, "queries": args.queries, "load_seconds": load_seconds,
            "p50_ms": p50, "p99_ms": p99, "max_ms": max, "baseline": "naive-scan", "naive_p99_ms": naive_p99,
            "ratio": naive_p99 / p99, "goal_ms": 50,
        })
    );
    Ok(())
}
