//! Calendar bench (`cargo bench --bench calendar`, no harness): the replay
//! workload on the engine against the naive reference, then per-operation
//! latencies (earliest, reserve, release) on the packed 10,000-node state.
//!
//! Sizes can be shrunk for quick runs:
//! `FERRUM_BENCH_REPLAY_NODES` (1000), `FERRUM_BENCH_REPLAY_REQUESTS` (10000),
//! `FERRUM_BENCH_OPS_NODES` (10000), `FERRUM_BENCH_OPS_LEASES` (100000),
//! `FERRUM_BENCH_OPS` (2000).

use std::hint::black_box;
use std::time::{Duration, Instant};

use ferrum_controller::calendar::naive::NaiveCalendar;
use ferrum_controller::calendar::workload::{self, SplitMix64};
use ferrum_controller::calendar::{Calendar, NodeSet, Placement, Query, Time};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if !v.len().is_multiple_of(2) { v[m] } else { (v[m - 1] + v[m]) / 2.0 }
}

fn percentile_us(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    if v.is_empty() {
        return f64::NAN;
    }
    let idx = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[idx].as_secs_f64() * 1e6
}

fn replay_section() {
    let n = env_usize("FERRUM_BENCH_REPLAY_NODES", 1000);
    let j = env_usize("FERRUM_BENCH_REPLAY_REQUESTS", 10_000);
    let reqs = workload::generate(j);

    let mut engine_secs = Vec::new();
    let mut engine_fp = None;
    for _ in 0..5 {
        let mut cal = Calendar::new(n, 0);
        let t = Instant::now();
        let r = workload::replay(&mut cal, &reqs);
        engine_secs.push(t.elapsed().as_secs_f64());
        assert_eq!(r.rejected, 0, "engine commit refused");
        assert!(engine_fp.is_none_or(|fp| fp == r.fingerprint));
        engine_fp = Some(r.fingerprint);
    }
    let mut naive = NaiveCalendar::new(n, 0);
    let t = Instant::now();
    let r = workload::replay_on(&mut naive, &reqs);
    let naive_s = t.elapsed().as_secs_f64();
    assert_eq!(r.rejected, 0, "naive commit refused");
    assert_eq!(Some(r.fingerprint), engine_fp, "engine and naive reference disagree");

    let engine_s = median(&mut engine_secs);
    let per_s = |s: f64| j as f64 / s;
    println!("replay, {n} nodes x {j} requests (fingerprint {})", r.fingerprint);
    println!("  {:<28} {:>12} {:>16} {:>8}", "implementation", "seconds", "placements/s", "ratio");
    println!("  {:<28} {:>12.4} {:>16.0} {:>8.1}", "naive reference (baseline)", naive_s, per_s(naive_s), 1.0);
    println!("  {:<28} {:>12.4} {:>16.0} {:>7.1}x", "engine (median of 5)", engine_s, per_s(engine_s), naive_s / engine_s);
    println!();
}

/// One assorted operation: count 1..=64, duration 1 s..24 h, every other one
/// restricted to a fixed half of the nodes.
struct Op {
    count: u32,
    duration: Time,
    half: bool,
}

fn ops_section() {
    let n = env_usize("FERRUM_BENCH_OPS_NODES", 10_000);
    let leases = env_usize("FERRUM_BENCH_OPS_LEASES", 100_000);
    let n_ops = env_usize("FERRUM_BENCH_OPS", 2000);

    // The real packed state: the replay workload's leases, committed both in
    // a calendar that learned search bounds along the way ("warm") and in one
    // rebuilt by `reserve` alone, as after a controller restart ("cold").
    let reqs = workload::generate(leases);
    let mut warm = Calendar::new(n, 0);
    let all = NodeSet::full(n);
    let mut placed: Vec<(Placement, Time)> = Vec::with_capacity(leases);
    let t = Instant::now();
    for r in &reqs {
        let q = Query { count: r.count, duration: r.walltime, not_before: 0, candidates: &all };
        let Some(p) = warm.earliest(&q) else { continue };
        let end = p.start + r.walltime;
        if warm.reserve(&p.nodes, p.start, end).is_ok() {
            placed.push((p, end));
        }
    }
    let build_s = t.elapsed().as_secs_f64();
    let mut cold = Calendar::new(n, 0);
    for (p, end) in &placed {
        let _ = cold.reserve(&p.nodes, p.start, *end);
    }
    let makespan = placed.iter().map(|(_, e)| *e).max().unwrap_or(0);

    let mut rng = SplitMix64::new(0x00C0_FFEE);
    let mut half = NodeSet::new(n);
    for i in 0..n {
        if rng.next_u64().is_multiple_of(2) {
            half.insert(u32::try_from(i).expect("node index fits u32"));
        }
    }
    let ops: Vec<Op> = (0..n_ops)
        .map(|i| Op { count: 1 + (rng.next_u64() % 64) as u32, duration: 1 + (rng.next_u64() % 86_400).cast_signed(), half: i % 2 == 1 })
        .collect();

    println!(
        "operations on {n} nodes, {} leases ({} slots, makespan {:.0} h, built in {:.2} s), {n_ops} ops",
        placed.len(),
        warm.slot_count(),
        makespan as f64 / 3600.0,
        build_s
    );
    println!("  {:<44} {:>10} {:>10} {:>10}", "operation", "p50 µs", "p99 µs", "max µs");
    for (label, cal) in [("warm", &mut warm), ("cold", &mut cold)] {
        let slots_before = cal.slot_count();
        let (mut q_all, mut q_half, mut commit, mut release) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for op in &ops {
            let candidates = if op.half { &half } else { &all };
            let q = Query { count: op.count, duration: op.duration, not_before: 0, candidates };
            let t = Instant::now();
            let p = black_box(cal.earliest(black_box(&q)));
            let dt = t.elapsed();
            if op.half {
                q_half.push(dt);
            } else {
                q_all.push(dt);
            }
            let Some(p) = p else { continue };
            let end = p.start + op.duration;
            let t = Instant::now();
            let r = cal.reserve(&p.nodes, p.start, end);
            commit.push(t.elapsed());
            assert!(r.is_ok(), "a found placement must commit");
            let t = Instant::now();
            cal.release(&p.nodes, p.start, end);
            release.push(t.elapsed());
        }
        assert_eq!(cal.slot_count(), slots_before, "release must restore");
        for (name, v) in [
            ("earliest, all nodes", &mut q_all),
            ("earliest, 50% mask", &mut q_half),
            ("reserve (commit)", &mut commit),
            ("release", &mut release),
        ] {
            let max = v.iter().max().map_or(f64::NAN, |d| d.as_secs_f64() * 1e6);
            println!(
                "  {:<44} {:>10.1} {:>10.1} {:>10.1}",
                format!("{name} [{label}]"),
                percentile_us(v, 0.50),
                percentile_us(v, 0.99),
                max
            );
        }
    }
    println!("  (warm: bounds learned by the replay; cold: state rebuilt by reserve only)");
}

fn main() {
    let t = Instant::now();
    replay_section();
    ops_section();
    println!("\ntotal bench time {:.1} s", t.elapsed().as_secs_f64());
}
