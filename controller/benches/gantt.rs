//! The portal's calendar page (issue 19): 1,000 nodes (40 clusters) and
//! 5,000 leases (1 to 4 nodes, 1 to 24 h, asked for as soon as possible
//! from a random moment of the next two weeks, placed by the calendar
//! engine) in a SQLite file. Times the whole page as its handler makes it
//! (the calendar view from the database, the chart laid out, the HTML
//! written), against a named baseline measured in the same run: the API's
//! `GET /api/v1/calendar` answer for the same window, serialised as JSON.
//! Goal: ≤ 200 ms a page on the 2-core machine.
//!
//! `cargo bench -p ferrum-controller --bench gantt` (`FERRUM_BENCH_NODES`,
//! `FERRUM_BENCH_LEASES`, `FERRUM_BENCH_RUNS` change it). With
//! `FERRUM_GANTT_HTML=FILE` it also writes the admin's month page there,
//! for `scripts/gantt-browser-bench.sh` to time in Chromium.

use std::sync::Arc;
use std::time::{Duration, Instant};

use askama::Template;
use chrono::{TimeZone, Utc};
use ferrum_api as api;
use ferrum_controller::app::conductor::SimConductor;
use ferrum_controller::app::{Actor, App};
use ferrum_controller::calendar::workload::SplitMix64;
use ferrum_controller::calendar::{Calendar, NodeSet, Query};
use ferrum_controller::clock::Clock;
use ferrum_controller::config::Config;
use ferrum_controller::db::Datastore;
use ferrum_controller::db::sqlite::SqliteStore;
use ferrum_controller::http::views;
use ferrum_controller::web::gantt::{CalendarQuery, calendar_page};

mod common;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median_and_max(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (ms(v[v.len() / 2]), ms(v[v.len() - 1]))
}

const DAY: i64 = 86_400;

fn main() -> anyhow::Result<()> {
    let n_nodes = env("FERRUM_BENCH_NODES", 1_000);
    let n_leases = env("FERRUM_BENCH_LEASES", 5_000);
    let runs = env("FERRUM_BENCH_RUNS", 15).max(1);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let dir = tempfile::tempdir()?;
    let start = Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).single().expect("valid time");
    let now = start.timestamp();

    rt.block_on(async {
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let store: Arc<dyn Datastore> = Arc::new(SqliteStore::open(&url, ferrum_controller::db::SecretKey::generate()?).await?);
        let t = Instant::now();
        let ids = common::import_nodes(&*store, n_nodes, now, |i| {
            let cluster = format!("c{:02}", i / 25);
            let props = serde_json::json!({"site": "bench", "cluster": cluster, "gpu_count": i % 5, "exotic": false});
            (format!("{cluster}-{}", i % 25 + 1), cluster, props)
        })
        .await?;
        store.create_project("p-bench", None, None, now).await?;
        let user = store.create_user("bench", false, None, &["p-bench".into()], "0", now).await?;
        store.create_user("boss", true, None, &[], "1", now).await?;
        // The leases are the bench user's; the chart is looked at by
        // another user of the project (others' leases: anonymous busy time)
        // and by an admin (every lease with its id and owner).
        store.create_user("viewer", false, None, &["p-bench".into()], "2", now).await?;
        let as_user = Actor::from(store.actor_by_token("2").await?.expect("bench viewer"));
        let as_admin = Actor::from(store.actor_by_token("1").await?.expect("bench admin"));

        let mut cal = Calendar::new(n_nodes, now);
        let all = NodeSet::full(n_nodes);
        let mut rng = SplitMix64::new(19);
        let mut generation = store.calendar_generation().await?;
        for _ in 0..n_leases {
            let count = 1 + (rng.next_u64() % 4) as u32;
            let duration = i64::try_from(1 + rng.next_u64() % 24).unwrap_or(1) * 3600;
            let not_before = now + i64::try_from(rng.next_u64() % (14 * 24)).unwrap_or(0) * 3600;
            let p = cal.earliest(&Query { count, duration, not_before, candidates: &all }).expect("placement");
            cal.reserve(&p.nodes, p.start, p.start + duration).map_err(|e| anyhow::anyhow!("{e:?}"))?;
            let lease = common::pending_lease(user.id, p.start, p.start + duration, p.nodes.iter().map(|&i| ids[i as usize]).collect(), now);
            generation = store.insert_lease(&lease, &[], generation).await?.1;
        }
        println!("setup: {n_nodes} nodes, {n_leases} leases in {:.1} s", t.elapsed().as_secs_f64());

        let (clock, _handle) = Clock::manual(start);
        let app = App::new(
            store.clone(),
            clock,
            Config::default(),
            Arc::new(SimConductor),
            Arc::new(ferrum_controller::app::power::SimBmcs::default()),
        );
        let day = start.format("%Y-%m-%d").to_string();
        println!("{runs} runs each; p50 / max ms; the page's and the answer's size");
        for (who, actor) in [("user", &as_user), ("admin", &as_admin)] {
            for zoom in ["week", "month"] {
                let from = now - now.rem_euclid(DAY);
                let to = from + if zoom == "week" { 7 * DAY } else { 30 * DAY };
                let (mut api_times, mut page_times) = (Vec::new(), Vec::new());
                let (mut api_bytes, mut page_bytes) = (0, 0);
                for _ in 0..runs {
                    // Baseline: what GET /api/v1/calendar answers for the window.
                    let t = Instant::now();
                    let (_, _, rows) = app.calendar_view(Some(from), Some(to), None).await.map_err(|e| anyhow::anyhow!("{e}"))?;
                    let answer: Vec<api::NodeCalendar> = rows
                        .into_iter()
                        .map(|(n, busy)| api::NodeCalendar {
                            state: ferrum_controller::model::node::shown_state(n.state, n.policy),
                            node: n.name,
                            busy: busy.into_iter().map(|b| views::busy(b, actor)).collect(),
                        })
                        .collect();
                    api_bytes = serde_json::to_vec(&answer)?.len();
                    api_times.push(t.elapsed());

                    let t = Instant::now();
                    let q = CalendarQuery { zoom: Some(zoom.into()), from: Some(day.clone()), ..CalendarQuery::default() };
                    let (_, page) = calendar_page(&app, actor, None, &q).await.map_err(|e| anyhow::anyhow!("{e}"))?;
                    let html = page.render()?;
                    page_times.push(t.elapsed());
                    page_bytes = html.len();
                    if let (("admin", "month"), Ok(path)) = ((who, zoom), std::env::var("FERRUM_GANTT_HTML")) {
                        std::fs::write(&path, &html)?;
                    }
                }
                let (api50, api_max) = median_and_max(api_times);
                let (page50, page_max) = median_and_max(page_times);
                println!(
                    "{who:5} {zoom:5}: page {page50:6.1} / {page_max:6.1} ms ({:5} KB) | baseline api-json {api50:6.1} / {api_max:6.1} ms ({:5} KB) | ratio {:.2}",
                    page_bytes / 1024,
                    api_bytes / 1024,
                    page50 / api50
                );
            }
        }
        anyhow::Ok(())
    })
}
