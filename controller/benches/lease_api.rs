//! Lease operations through the application layer on SQLite, with 10,000
//! nodes and 100,000 existing leases: `create_lease` (placement + database
//! commit with its overlap triggers), `end_lease` (cancel) and
//! `availability`, p50/p99 per operation. Target p99 ≤ 5 ms.
//!
//! The 100,000 leases (1 to 4 nodes, 1 to 24 h, as soon as possible, from
//! the seeded generator of CALENDAR-WORKLOAD.md) are placed by the calendar
//! engine and written straight through the store.
//!
//! `cargo bench -p ferrum-controller --bench lease_api`
//! (`FERRUM_BENCH_LEASES` / `FERRUM_BENCH_NODES` / `FERRUM_BENCH_OPS` shrink it.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use ferrum_api as api;
use ferrum_controller::app::conductor::SimConductor;
use ferrum_controller::app::{Actor, App};
use ferrum_controller::calendar::{Calendar, NodeSet, Query};
use ferrum_controller::clock::Clock;
use ferrum_controller::config::Config;
use ferrum_controller::db::Datastore;
use ferrum_controller::db::sqlite::SqliteStore;

mod common;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e3
}

fn main() -> anyhow::Result<()> {
    let n_nodes = env("FERRUM_BENCH_NODES", 10_000);
    let n_leases = env("FERRUM_BENCH_LEASES", 100_000);
    let ops = env("FERRUM_BENCH_OPS", 1_000);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let dir = tempfile::tempdir()?;
    let start = Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).single().expect("valid time");
    let now = start.timestamp();

    rt.block_on(async {
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let store: Arc<dyn Datastore> = Arc::new(SqliteStore::open(&url, ferrum_controller::db::SecretKey::generate()?).await?);
        let t = Instant::now();
        let clusters = ["alpha", "bravo", "charlie", "delta"];
        let ids = common::import_nodes(&*store, n_nodes, now, |i| {
            let cluster = clusters[i % clusters.len()];
            let props = serde_json::json!({"site": "bench", "cluster": cluster, "host": format!("n{}", i + 1),
                "gpu_count": i % 5, "memnode": 196_608, "exotic": false});
            (format!("n{}", i + 1), cluster.to_owned(), props)
        })
        .await?;
        store.create_project("p-bench", None, None, now).await?;
        let user = store.create_user("bench", false, None, &["p-bench".into()], "0", now).await?;
        let actor_row = store.actor_by_token("0").await?.expect("bench user");
        println!("setup: {n_nodes} nodes in {:.1} s", t.elapsed().as_secs_f64());

        // 100,000 existing leases, placed by the engine, written by the store.
        let t = Instant::now();
        let mut cal = Calendar::new(n_nodes, now);
        let all = NodeSet::full(n_nodes);
        let mut rng = SplitMix(42);
        let mut generation = store.calendar_generation().await?;
        for _ in 0..n_leases {
            let count = 1 + (rng.next() % 4) as u32;
            let duration = i64::try_from(1 + rng.next() % 24).unwrap_or(1) * 3600;
            let p = cal.earliest(&Query { count, duration, not_before: now, candidates: &all }).expect("placement");
            cal.reserve(&p.nodes, p.start, p.start + duration).map_err(|e| anyhow::anyhow!("{e:?}"))?;
            let lease =
                common::pending_lease(user.id, p.start, p.start + duration, p.nodes.iter().map(|&i| ids[i as usize]).collect(), now);
            generation = store.insert_lease(&lease, &[], generation).await?.1;
        }
        println!("setup: {n_leases} leases in {:.1} s ({} calendar slots)", t.elapsed().as_secs_f64(), cal.slot_count());

        let (clock, _handle) = Clock::manual(start);
        let app = App::new(
            store.clone(),
            clock,
            Config::default(),
            Arc::new(SimConductor),
            Arc::new(ferrum_controller::app::power::SimBmcs::default()),
        );
        let actor = Actor::from(actor_row);
        // Warm the cache (first load of 10,000 nodes and every allocation).
        let t = Instant::now();
        app.availability(&actor, &api::AvailabilityQuery { count: 1, duration: "1h".into(), ..Default::default() })
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("cache load (nodes + allocations from the database): {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
        // Its two reads again, each alone (the database's pages now cached).
        let t = Instant::now();
        let nodes = store.list_nodes().await?.len();
        let nodes_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let allocations = store.allocations_after(now).await?.1.len();
        let allocations_ms = t.elapsed().as_secs_f64() * 1e3;
        println!("  again: list_nodes {nodes_ms:.0} ms ({nodes} nodes), allocations_after {allocations_ms:.0} ms ({allocations} rows)");

        let filters = [None, Some("gpu_count >= 2"), Some("cluster IN ('alpha','charlie') AND memnode > 1000")];
        let (mut create, mut cancel, mut avail) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..ops {
            let count = 1 + (rng.next() % 8) as u32;
            let hours = 1 + rng.next() % 24;
            let filter = filters[i % filters.len()].map(str::to_owned);
            let req = api::LeaseCreate {
                nodes: api::NodeSelector { count: Some(count), filter: filter.clone(), ..Default::default() },
                duration: Some(format!("{hours}h")),
                ..Default::default()
            };
            let t = Instant::now();
            let lease = app.create_lease(&actor, req).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            create.push(t.elapsed());
            let t = Instant::now();
            app.end_lease(&actor, lease.id.0).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            cancel.push(t.elapsed());
            let q = api::AvailabilityQuery { count, filter, duration: format!("{hours}h"), limit: Some(1), ..Default::default() };
            let t = Instant::now();
            app.availability(&actor, &q).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            avail.push(t.elapsed());
        }
        println!("\n{n_nodes} nodes, {n_leases} existing leases, {ops} operations each (SQLite, WAL, synchronous=NORMAL)");
        println!("{:<40} {:>10} {:>10} {:>10}", "operation", "p50 ms", "p99 ms", "max ms");
        for (name, v) in [
            ("create_lease (ASAP, placement + commit)", &mut create),
            ("end_lease (cancel before start)", &mut cancel),
            ("availability (first slot)", &mut avail),
        ] {
            let max = v.iter().max().copied().unwrap_or_default().as_secs_f64() * 1e3;
            println!("{name:<40} {:>10.2} {:>10.2} {max:>10.2}", pct(v, 0.5), pct(v, 0.99));
        }
        anyhow::Ok(())
    })?;
    Ok(())
}
