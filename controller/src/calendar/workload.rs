//! The seeded calendar replay workload of `shared/bench/CALENDAR-WORKLOAD.md`
//! (splitmix64, seed 42) and its replay under the placement rule, shared by
//! the `calendar-replay` binary, the calendar bench and the tests.
//!
//! It owns request generation and the replay loop only; it does no timing,
//! no I/O, and never touches the database or the clock.

use super::naive::NaiveCalendar;
use super::{Calendar, Conflict, NodeSet, Placement, Query, Time};

/// The splitmix64 generator of the workload definition.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator in state `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next output.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Seed of the workload definition.
pub const SEED: u64 = 42;

/// One request: `count` nodes for `walltime` seconds, as soon as possible.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Request {
    /// Nodes wanted (1..=64).
    pub count: u32,
    /// Seconds (1..=24 hours, whole hours).
    pub walltime: i64,
}

/// The first `j` requests of the workload: `k = 1 + next() % 64`, then
/// `wt = (1 + next() % 24) * 3600`, per request.
pub fn generate(j: usize) -> Vec<Request> {
    let mut rng = SplitMix64::new(SEED);
    (0..j)
        .map(|_| {
            // Both values are below 65 and 25: the casts cannot truncate.
            let count = 1 + (rng.next_u64() % 64) as u32;
            let walltime = (1 + (rng.next_u64() % 24).cast_signed()) * 3600;
            Request { count, walltime }
        })
        .collect()
}

/// Outcome of a replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReplayResult {
    /// Wrapping sum over requests `i = 1..` of `start × i`; requests that
    /// could not be placed contribute nothing.
    pub fingerprint: i64,
    /// Requests placed and committed.
    pub placed: usize,
    /// Requests with no placement (more nodes than the calendar has).
    pub unplaced: usize,
    /// Placements whose commit was refused: always 0 for a correct engine.
    pub rejected: usize,
    /// Latest lease end.
    pub makespan: Time,
}

/// What a replay needs from a calendar; implemented by the engine and the
/// naive reference so both run the same loop.
pub trait Planner {
    /// Number of nodes.
    fn n_nodes(&self) -> usize;
    /// Earliest placement.
    fn earliest(&self, q: &Query<'_>) -> Option<Placement>;
    /// Commit a placement.
    ///
    /// # Errors
    /// A node of the placement is not free.
    fn reserve(&mut self, nodes: &[u32], start: Time, end: Time) -> Result<(), Conflict>;
}

impl Planner for Calendar {
    fn n_nodes(&self) -> usize {
        Calendar::n_nodes(self)
    }
    fn earliest(&self, q: &Query<'_>) -> Option<Placement> {
        Calendar::earliest(self, q)
    }
    fn reserve(&mut self, nodes: &[u32], start: Time, end: Time) -> Result<(), Conflict> {
        Calendar::reserve(self, nodes, start, end)
    }
}

impl Planner for NaiveCalendar {
    fn n_nodes(&self) -> usize {
        NaiveCalendar::n_nodes(self)
    }
    fn earliest(&self, q: &Query<'_>) -> Option<Placement> {
        NaiveCalendar::earliest(self, q)
    }
    fn reserve(&mut self, nodes: &[u32], start: Time, end: Time) -> Result<(), Conflict> {
        NaiveCalendar::reserve(self, nodes, start, end)
    }
}

/// Places `reqs` in order per the workload's rule (all nodes candidates,
/// not before 0, each committed before the next) on the engine.
pub fn replay(cal: &mut Calendar, reqs: &[Request]) -> ReplayResult {
    replay_on(cal, reqs)
}

/// [`replay`] on any [`Planner`].
pub fn replay_on<P: Planner>(cal: &mut P, reqs: &[Request]) -> ReplayResult {
    let all = NodeSet::full(cal.n_nodes());
    let mut out = ReplayResult { fingerprint: 0, placed: 0, unplaced: 0, rejected: 0, makespan: 0 };
    for (i, r) in (1i64..).zip(reqs) {
        let q = Query { count: r.count, duration: r.walltime, not_before: 0, candidates: &all };
        let Some(p) = cal.earliest(&q) else {
            out.unplaced += 1;
            continue;
        };
        let end = p.start.saturating_add(r.walltime);
        if cal.reserve(&p.nodes, p.start, end).is_err() {
            out.rejected += 1;
            continue;
        }
        out.placed += 1;
        out.makespan = out.makespan.max(end);
        out.fingerprint = out.fingerprint.wrapping_add(p.start.wrapping_mul(i));
    }
    out
}
