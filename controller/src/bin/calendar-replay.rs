//! `calendar-replay`: times the calendar placement engine on the seeded
//! replay workload (`shared/bench/CALENDAR-WORKLOAD.md`) and prints one JSON
//! line:
//!
//! ```text
//! {"nodes":N,"requests":J,"runs":R,"seconds":<median>,"min_seconds":..,
//!  "median_seconds":..,"placements_per_s":<J/median>,"fingerprint":<i64>,
//!  "slots":<final slot count>}
//! ```
//!
//! Scripts depend on this interface. Request generation is not timed; each
//! run starts from an empty calendar; the fingerprint must be the same in
//! every run (exit status 1 otherwise). It never touches the database.

use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use ferrum_controller::calendar::{Calendar, workload};

/// Replay the seeded calendar workload and print one JSON line.
#[derive(Debug, Parser)]
#[command(name = "calendar-replay")]
struct Args {
    /// Number of nodes N.
    #[arg(long)]
    nodes: usize,
    /// Number of requests J.
    #[arg(long)]
    requests: usize,
    /// Number of timed passes (min and median are reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// A JSON number, `null` if not finite.
fn num(x: f64) -> String {
    serde_json::Number::from_f64(x).map_or_else(|| "null".to_owned(), |n| n.to_string())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let reqs = workload::generate(args.requests);
    let mut secs = Vec::with_capacity(args.runs);
    let mut first: Option<(i64, usize)> = None;
    for run in 1..=args.runs {
        let mut cal = Calendar::new(args.nodes, 0);
        let t = Instant::now();
        let res = workload::replay(&mut cal, &reqs);
        let dt = t.elapsed().as_secs_f64();
        if res.rejected != 0 {
            bail!("run {run}: {} placements were refused on commit", res.rejected);
        }
        match first {
            None => first = Some((res.fingerprint, cal.slot_count())),
            Some((fp, _)) if fp != res.fingerprint => {
                bail!("run {run}: fingerprint {} differs from run 1's {fp}", res.fingerprint)
            }
            Some(_) => {}
        }
        secs.push(dt);
    }
    let (fingerprint, slots) = first.context("no run")?;
    secs.sort_by(f64::total_cmp);
    let min = secs[0];
    let mid = secs.len() / 2;
    let median = if !secs.len().is_multiple_of(2) { secs[mid] } else { (secs[mid - 1] + secs[mid]) / 2.0 };
    // Written by hand to keep the documented key order.
    println!(
        "{{\"nodes\":{},\"requests\":{},\"runs\":{},\"seconds\":{},\"min_seconds\":{},\"median_seconds\":{},\"placements_per_s\":{},\"fingerprint\":{},\"slots\":{}}}",
        args.nodes,
        args.requests,
        args.runs,
        num(median),
        num(min),
        num(median),
        num(args.requests as f64 / median),
        fingerprint,
        slots
    );
    Ok(())
}
