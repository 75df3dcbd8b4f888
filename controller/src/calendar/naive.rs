//! The naive reference calendar: per-node sorted lists of busy intervals and
//! a brute-force search. It is the oracle the engine is tested against and
//! the named baseline of the calendar bench.
//!
//! It owns nothing but those lists and must stay obviously correct rather
//! than fast: no caches and no pruning beyond "stop at the first start that
//! works" (and the one-line-proof jump between starts in `earliest`). Like the engine, it never touches the database or the clock, and
//! it has the same semantics (horizon clamping, conflict reporting, `None`
//! cases); see [`super::Calendar`].

use super::{Conflict, Placement, Query, Time};

/// Per-node busy intervals, each list sorted, disjoint, half-open.
#[derive(Clone, Debug)]
pub struct NaiveCalendar {
    horizon: Time,
    busy: Vec<Vec<(Time, Time)>>,
}

impl NaiveCalendar {
    /// See [`Calendar::new`](super::Calendar::new).
    pub fn new(n_nodes: usize, now: Time) -> Self {
        Self { horizon: now, busy: vec![Vec::new(); n_nodes] }
    }

    /// See [`Calendar::n_nodes`](super::Calendar::n_nodes).
    pub fn n_nodes(&self) -> usize {
        self.busy.len()
    }

    /// See [`Calendar::horizon`](super::Calendar::horizon).
    pub fn horizon(&self) -> Time {
        self.horizon
    }

    /// See [`Calendar::grow`](super::Calendar::grow).
    pub fn grow(&mut self, n_nodes: usize) {
        if n_nodes > self.busy.len() {
            self.busy.resize(n_nodes, Vec::new());
        }
    }

    /// First busy instant of `node` within [start, end), if any.
    fn first_busy(&self, node: u32, start: Time, end: Time) -> Option<Time> {
        let Some(list) = self.busy.get(node as usize) else {
            return Some(start);
        };
        let i = list.partition_point(|&(_, e)| e <= start);
        match list.get(i) {
            Some(&(s, _)) if s < end => Some(s.max(start)),
            _ => None,
        }
    }

    /// See [`Calendar::is_free`](super::Calendar::is_free).
    pub fn is_free(&self, nodes: &[u32], start: Time, end: Time) -> bool {
        let start = start.max(self.horizon);
        if end <= start {
            return nodes.iter().all(|&n| (n as usize) < self.busy.len());
        }
        nodes.iter().all(|&n| self.first_busy(n, start, end).is_none())
    }

    /// See [`Calendar::earliest`](super::Calendar::earliest).
    pub fn earliest(&self, q: &Query<'_>) -> Option<Placement> {
        let k = q.count as usize;
        if k == 0 || q.duration <= 0 {
            return None;
        }
        let candidates: Vec<u32> = q.candidates.iter().filter(|&n| (n as usize) < self.busy.len()).collect();
        if candidates.len() < k {
            return None;
        }
        let t0 = q.not_before.max(self.horizon);
        // Candidate starts are `t0` and the ends of busy intervals. From a
        // failing start `t`, every end before `next` (the earliest end of an
        // interval that blocks some candidate at `t`) fails too: each node
        // blocked at `t` is still blocked by the same interval there, and a
        // node free over [t, t + d) adds no freedom later. So jump to `next`.
        let mut cursor: Vec<usize> = candidates.iter().map(|&n| self.busy[n as usize].partition_point(|&(_, e)| e <= t0)).collect();
        let mut t = t0;
        loop {
            let end = t.saturating_add(q.duration);
            let mut nodes = Vec::with_capacity(k);
            let mut next = Time::MAX;
            for (&node, c) in candidates.iter().zip(&mut cursor) {
                let list = &self.busy[node as usize];
                // First interval ending after t.
                while list.get(*c).is_some_and(|&(_, e)| e <= t) {
                    *c += 1;
                }
                match list.get(*c) {
                    Some(&(s, e)) if s < end => next = next.min(e),
                    _ => {
                        nodes.push(node);
                        if nodes.len() == k {
                            return Some(Placement { start: t, nodes });
                        }
                    }
                }
            }
            if next == Time::MAX {
                return None;
            }
            t = next;
        }
    }

    /// See [`Calendar::reserve`](super::Calendar::reserve).
    ///
    /// # Errors
    /// The first node (in the given order) not free over the range.
    pub fn reserve(&mut self, nodes: &[u32], start: Time, end: Time) -> Result<(), Conflict> {
        let start = start.max(self.horizon);
        for &node in nodes {
            if end <= start {
                if node as usize >= self.busy.len() {
                    return Err(Conflict { node, at: start });
                }
            } else if let Some(at) = self.first_busy(node, start, end) {
                return Err(Conflict { node, at });
            }
        }
        if end <= start {
            return Ok(());
        }
        for &node in nodes {
            let list = &mut self.busy[node as usize];
            // A duplicate in `nodes` finds its own fresh interval: skip it.
            let i = list.partition_point(|&(_, e)| e <= start);
            if list.get(i).is_some_and(|&(s, _)| s < end) {
                continue;
            }
            list.insert(i, (start, end));
        }
        Ok(())
    }

    /// See [`Calendar::release`](super::Calendar::release).
    pub fn release(&mut self, nodes: &[u32], start: Time, end: Time) {
        let start = start.max(self.horizon);
        if end <= start {
            return;
        }
        for &node in nodes {
            let Some(list) = self.busy.get_mut(node as usize) else {
                continue;
            };
            let mut out = Vec::with_capacity(list.len() + 1);
            for &(s, e) in list.iter() {
                if e <= start || s >= end {
                    out.push((s, e));
                    continue;
                }
                if s < start {
                    out.push((s, start));
                }
                if e > end {
                    out.push((end, e));
                }
            }
            *list = out;
        }
    }

    /// See [`Calendar::advance`](super::Calendar::advance).
    pub fn advance(&mut self, now: Time) {
        if now <= self.horizon {
            return;
        }
        self.horizon = now;
        for list in &mut self.busy {
            list.retain(|&(_, e)| e > now);
            for iv in list.iter_mut() {
                iv.0 = iv.0.max(now);
            }
        }
    }
}
