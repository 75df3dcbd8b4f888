//! The reservation calendar's placement engine: an in-memory Gantt chart of
//! which node is free when, answering "earliest start for `count` of these
//! nodes for `duration`" and recording commits and releases.
//!
//! This module owns the timeline and the placement rule only. It never
//! touches the database or the clock: the caller tells it what time it is
//! ([`Calendar::new`], [`Calendar::advance`]), replays existing leases into
//! it with [`Calendar::reserve`], and maps its dense node indices (`0..n`,
//! `u32`) to real node ids. Index order is the tie-break order: among the
//! nodes free over the chosen window, the lowest indices are picked.
//!
//! # Representation
//! A sorted `Vec` of slots. Slot `i` holds the set of nodes free over
//! `[start_i, start_{i+1})` as a plain bitset (one bit per node) plus a
//! one-bit-per-word summary of its non-zero words, and the number of free
//! nodes. The last slot extends to +infinity. Commits split slots at the
//! lease's start and end and clear bits in between; releases set them back
//! and merge neighbours that became identical; [`Calendar::advance`] drops
//! the slots that ended before `now`, so memory follows the future only.
//!
//! Memory is `slots × (n/8 + n/512 + 32)` bytes, with `slots <= 2 ×
//! (leases ending after now) + 1` (neighbouring slots always differ): about
//! 3 MB for 10,000 nodes and the 2,368 slots left by the fully packed
//! 100,000-lease replay. TODO-perf: if far-future reservations ever make
//! slot counts large, a bounded alternative is per-slot deltas (the nodes
//! that change at each boundary) with a full checkpoint bitset every few
//! dozen slots.
//!
//! # Search
//! Candidate starts are `not_before` and every later slot start. For the
//! window `[t, t + duration)`, covering slots `i..=j`:
//! 1. free counts: a slot `m` in the window with fewer than `count` free
//!    nodes rules out every start up to `m`, so the search jumps past it
//!    (each slot's count is checked once per query);
//! 2. bitsets, word by word from the lowest node index: a word of the
//!    candidate mask is ANDed with that word of every not-entirely-free slot
//!    of the window (only words whose summary bits survive all of them), and
//!    the search stops as soon as `count` nodes survive: those are the
//!    answer;
//! 3. on failure, the window's sets are ANDed from `j` backwards until fewer
//!    than `count` candidates survive at some slot `m`: every start up to
//!    `m` covers `m..=j` and fails too, so the search jumps past `m`.
//!
//! Lower bounds learned from earlier full-mask searches (the private `hints`
//! module) let a search start where the last search of a smaller or equal
//! shape ended; `release` loosens them, `grow` forgets them.
//!
//! Cost: with the bounds, a replay placement visits about one window
//! (O(window slots + words until `count` nodes)); a commit is
//! O(window slots × words touched) plus, when a new boundary appears, one
//! `Vec` insert (O(slots) moves of 32 bytes).
//!
//! # Several groups
//! [`Calendar::earliest_groups`] places a request for several groups (each
//! `count` nodes of its own candidates, on distinct nodes, at one start):
//! the single-group search above for the total on the union of the
//! candidates gives the first start where enough nodes are free at all;
//! there the nodes free over the window are assigned to the groups by a
//! b-matching ([`groups::assign`]); if none exists, the search goes on
//! from the next slot boundary ([`Calendar::next_change_after`]): every
//! start before it has a smaller free set, so fails too.
//!
//! Times before the horizon (`now` given to `new`/`advance`) are forgotten:
//! searches start at the horizon at the earliest, and reserve/release/
//! is_free only look at the part of a range at or after it.

pub mod groups;
mod hints;
pub mod naive;
mod nodeset;
pub mod workload;

#[cfg(test)]
mod tests;

pub use nodeset::NodeSet;

use hints::Hints;

/// Seconds (unix seconds in the controller, 0-based in the replay).
pub type Time = i64;

/// A placement request.
#[derive(Clone, Copy, Debug)]
pub struct Query<'a> {
    /// Number of nodes wanted (0 → no placement).
    pub count: u32,
    /// Length of the lease in seconds (<= 0 → no placement).
    pub duration: Time,
    /// Earliest acceptable start (clamped to the calendar's horizon).
    pub not_before: Time,
    /// Nodes that may be used; indices at or above `n_nodes` are ignored.
    pub candidates: &'a NodeSet,
}

/// Where a query fits: `nodes` (increasing indices) are free over
/// `[start, start + duration)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Placement {
    /// First second of the window.
    pub start: Time,
    /// `count` node indices, increasing.
    pub nodes: Vec<u32>,
}

/// Why a [`Calendar::reserve`] was refused: `node` is busy at `at` (the first
/// busy instant of the first offending node, in the order the nodes were
/// given). An index outside `0..n_nodes` counts as busy everywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("node index {node} is not free at {at}")]
pub struct Conflict {
    /// The offending node index.
    pub node: u32,
    /// Its first busy instant within the requested range.
    pub at: Time,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Slot {
    start: Time,
    free: u32,
    /// `words` data words (bit i = node i free) then `summary` words (bit w =
    /// data word w non-zero).
    bits: Box<[u64]>,
}

/// The in-memory Gantt chart. See the module documentation.
#[derive(Clone, Debug)]
pub struct Calendar {
    n: usize,
    /// Data words per slot (`ceil(n / 64)`).
    words: usize,
    /// Summary words per slot (`ceil(words / 64)`).
    summary: usize,
    /// Never empty; `slots[0].start` is the horizon; strictly increasing starts.
    slots: Vec<Slot>,
    hints: Hints,
}

fn set_bit(words: &mut [u64], i: usize) {
    words[i / 64] |= 1 << (i % 64);
}

fn get_bit(words: &[u64], i: usize) -> bool {
    words[i / 64] >> (i % 64) & 1 != 0
}

fn n_as_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Calendar {
    /// A calendar of `n_nodes` nodes, all free from `now` on.
    pub fn new(n_nodes: usize, now: Time) -> Self {
        let words = n_nodes.div_ceil(64);
        let summary = words.div_ceil(64);
        let mut cal = Self { n: n_nodes, words, summary, slots: Vec::new(), hints: Hints::new(n_nodes) };
        let bits = cal.all_free_bits();
        cal.slots.push(Slot { start: now, free: n_as_u32(n_nodes), bits });
        cal
    }

    /// Bits of a slot in which every node is free.
    fn all_free_bits(&self) -> Box<[u64]> {
        let mut bits = vec![0u64; self.words + self.summary];
        bits[..self.n / 64].fill(u64::MAX);
        if !self.n.is_multiple_of(64) {
            bits[self.n / 64] = (1u64 << (self.n % 64)) - 1;
        }
        for w in 0..self.words {
            set_bit(&mut bits[self.words..], w);
        }
        bits.into_boxed_slice()
    }

    /// Number of nodes (indices `0..n_nodes`).
    pub fn n_nodes(&self) -> usize {
        self.n
    }

    /// Number of slots on the timeline (at least 1).
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// The horizon: nothing before it is remembered.
    pub fn horizon(&self) -> Time {
        self.slots[0].start
    }

    /// Grow to `n_nodes` nodes; the new ones are free forever. Shrinking is
    /// not supported (a smaller `n_nodes` is a no-op): retire nodes by
    /// reserving them.
    pub fn grow(&mut self, n_nodes: usize) {
        if n_nodes <= self.n {
            return;
        }
        let old_n = self.n;
        let old_words = self.words;
        let added = n_as_u32(n_nodes - old_n);
        self.n = n_nodes;
        self.words = n_nodes.div_ceil(64);
        self.summary = self.words.div_ceil(64);
        for slot in &mut self.slots {
            let mut bits = vec![0u64; self.words + self.summary];
            bits[..old_words].copy_from_slice(&slot.bits[..old_words]);
            for i in old_n..n_nodes {
                set_bit(&mut bits, i);
            }
            let (data, summary) = bits.split_at_mut(self.words);
            for (w, &v) in data.iter().enumerate() {
                if v != 0 {
                    set_bit(summary, w);
                }
            }
            slot.bits = bits.into_boxed_slice();
            slot.free = slot.free.saturating_add(added);
        }
        self.hints = Hints::new(n_nodes);
    }

    /// Index of the slot containing `t` (`t` at or after the horizon).
    fn slot_at(&self, t: Time) -> usize {
        self.slots.partition_point(|s| s.start <= t).saturating_sub(1)
    }

    /// Makes a slot boundary at `t` (> horizon) and returns the index of the
    /// slot starting at `t`; `slots.len()` for `t == Time::MAX` (the end of
    /// time needs no boundary).
    fn split_at(&mut self, t: Time) -> usize {
        if t == Time::MAX {
            return self.slots.len();
        }
        let i = self.slot_at(t);
        if self.slots[i].start == t {
            return i;
        }
        let mut new = self.slots[i].clone();
        new.start = t;
        self.slots.insert(i + 1, new);
        i + 1
    }

    /// First busy instant of one node in [start, end), `start` at or after
    /// the horizon and `end > start`.
    fn first_busy(&self, node: u32, start: Time, end: Time) -> Option<Time> {
        let i = node as usize;
        if i >= self.n {
            return Some(start);
        }
        let first = self.slot_at(start);
        self.slots[first..].iter().take_while(|s| s.start < end).find(|s| !get_bit(&s.bits, i)).map(|s| s.start.max(start))
    }

    /// `nodes` as (word index, bits) pairs, one per word, in word order, and
    /// whether every index was below `n_nodes` (the others are left out).
    fn word_groups(&self, nodes: &[u32]) -> (Vec<(usize, u64)>, bool) {
        let sorted;
        let nodes = if nodes.is_sorted() {
            nodes
        } else {
            let mut v = nodes.to_vec();
            v.sort_unstable();
            sorted = v;
            &sorted[..]
        };
        let mut groups: Vec<(usize, u64)> = Vec::new();
        let mut known = true;
        for &node in nodes {
            let x = node as usize;
            if x >= self.n {
                known = false;
                continue;
            }
            let (w, bit) = (x / 64, 1u64 << (x % 64));
            match groups.last_mut() {
                Some((lw, m)) if *lw == w => *m |= bit,
                _ => groups.push((w, bit)),
            }
        }
        (groups, known)
    }

    /// Whether every grouped node is free over [start, end) (`start` at or
    /// after the horizon).
    fn groups_free(&self, groups: &[(usize, u64)], start: Time, end: Time) -> bool {
        let first = self.slot_at(start);
        self.slots[first..].iter().take_while(|s| s.start < end).all(|s| groups.iter().all(|&(w, m)| s.bits[w] & m == m))
    }

    /// The first of `nodes` (in the given order) that is not free over
    /// [start, end), with its first busy instant.
    fn first_conflict(&self, nodes: &[u32], start: Time, end: Time) -> Option<Conflict> {
        nodes.iter().find_map(|&node| {
            let at = if end <= start { (node as usize >= self.n).then_some(start) } else { self.first_busy(node, start, end) };
            at.map(|at| Conflict { node, at })
        })
    }

    /// Whether all `nodes` are free over [start, end). Empty ranges and empty
    /// node lists are free; indices outside `0..n_nodes` never are.
    pub fn is_free(&self, nodes: &[u32], start: Time, end: Time) -> bool {
        let start = start.max(self.horizon());
        let (groups, known) = self.word_groups(nodes);
        known && (end <= start || self.groups_free(&groups, start, end))
    }

    /// Marks `nodes` busy over [start, end) (duplicates are harmless). An
    /// empty range (after clamping to the horizon) or an empty node list is
    /// accepted and changes nothing.
    ///
    /// # Errors
    /// [`Conflict`] with the first node (in the given order) that is not
    /// free over the whole range; nothing is changed then.
    pub fn reserve(&mut self, nodes: &[u32], start: Time, end: Time) -> Result<(), Conflict> {
        let start = start.max(self.horizon());
        let (groups, known) = self.word_groups(nodes);
        let free = known && (end <= start || self.groups_free(&groups, start, end));
        if let Some(conflict) = (!free).then(|| self.first_conflict(nodes, start, end)).flatten() {
            return Err(conflict);
        }
        if end <= start || groups.is_empty() {
            return Ok(());
        }
        let taken: u32 = groups.iter().map(|&(_, m)| m.count_ones()).sum();
        let i = self.split_at(start);
        let j = self.split_at(end);
        let words = self.words;
        for slot in &mut self.slots[i..j] {
            let (data, summary) = slot.bits.split_at_mut(words);
            for &(w, m) in &groups {
                data[w] &= !m;
                if data[w] == 0 {
                    summary[w / 64] &= !(1u64 << (w % 64));
                }
            }
            slot.free -= taken;
        }
        // Inner boundaries stay (the nodes were free on both sides), but the
        // outer ones may now separate equal slots.
        self.merge_at(j);
        self.merge_at(i);
        Ok(())
    }

    /// Removes the boundary before slot `s` if slots `s - 1` and `s` are
    /// alike (no-op for `s == 0` or past the end).
    fn merge_at(&mut self, s: usize) {
        if s == 0 || s >= self.slots.len() {
            return;
        }
        let (a, b) = (&self.slots[s - 1], &self.slots[s]);
        if a.free == b.free && a.bits == b.bits {
            self.slots.remove(s);
        }
    }

    /// Marks `nodes` free over [start, end) (lease cancelled, released early
    /// or ended). Indices outside `0..n_nodes` are ignored; nodes already
    /// free stay free.
    pub fn release(&mut self, nodes: &[u32], start: Time, end: Time) {
        let start = start.max(self.horizon());
        let (groups, _) = self.word_groups(nodes);
        if end <= start || groups.is_empty() {
            return;
        }
        let i = self.split_at(start);
        let j = self.split_at(end);
        let words = self.words;
        for slot in &mut self.slots[i..j] {
            let (data, summary) = slot.bits.split_at_mut(words);
            for &(w, m) in &groups {
                let added = m & !data[w];
                if added != 0 {
                    data[w] |= m;
                    slot.free += added.count_ones();
                    summary[w / 64] |= 1u64 << (w % 64);
                }
            }
        }
        // Any boundary from `start` to `end` may now separate equal slots.
        for s in (i..=j).rev() {
            self.merge_at(s);
        }
        self.hints.on_release(start);
    }

    /// Forget everything before `now` (a `now` before the horizon is a
    /// no-op). Answers for windows starting at or after `now` do not change.
    pub fn advance(&mut self, now: Time) {
        if now <= self.horizon() {
            return;
        }
        let i = self.slot_at(now);
        self.slots.drain(..i);
        self.slots[0].start = now;
    }

    /// Earliest placement: the earliest `t >= max(not_before, horizon)` at
    /// which `count` nodes of `candidates` are all free over
    /// `[t, t + duration)`, taking the `count` lowest free indices.
    ///
    /// `None` when `count == 0`, `duration <= 0`, fewer than `count`
    /// candidates exist among `0..n_nodes`, or (only possible with leases
    /// reserved up to `Time::MAX`) no window ever fits.
    pub fn earliest(&self, q: &Query<'_>) -> Option<Placement> {
        let k = q.count;
        let d = q.duration;
        if k == 0 || d <= 0 || k as usize > self.n {
            return None;
        }
        let nw = self.words;
        let mut mask = vec![0u64; nw + self.summary];
        let (mask_words, mask_summary) = mask.split_at_mut(nw);
        q.candidates.write_words(mask_words);
        if !self.n.is_multiple_of(64) {
            mask_words[nw - 1] &= (1u64 << (self.n % 64)) - 1;
        }
        // Is every node a candidate (then the search result may teach the
        // hints), and are there at least `k` candidates at all? Counting
        // stops at `k`: popcount is slow without target-cpu flags.
        let mut full_mask = true;
        let mut enough = 0usize;
        for (w, &v) in mask_words.iter().enumerate() {
            if v != 0 {
                set_bit(mask_summary, w);
                if enough < k as usize {
                    enough += v.count_ones() as usize;
                }
            }
            full_mask &= v == u64::MAX || (w == nw - 1 && v.count_ones() as usize == self.n % 64);
        }
        if enough < k as usize {
            return None;
        }
        let t0 = q.not_before.max(self.horizon());
        let bound = self.hints.lower_bound(k, d);
        let (start, nodes) = self.search(k, d, t0.max(bound), &mask)?;
        // [horizon, bound) was known not to work and the search proved
        // [max(t0, bound), start) does not either; if together they cover
        // [horizon, start), every larger shape can skip that part too.
        if full_mask && t0 <= bound.max(self.horizon()) {
            self.hints.record(k, d, start);
        }
        Some(Placement { start, nodes })
    }

    /// The first slot boundary strictly after `t`: the next instant at
    /// which some node's freedom changes. `None` when nothing changes after
    /// `t`.
    pub fn next_change_after(&self, t: Time) -> Option<Time> {
        let i = self.slots.partition_point(|s| s.start <= t);
        self.slots.get(i).map(|s| s.start)
    }

    /// The members of `candidates` (below `n_nodes`) free over the whole of
    /// `[start, end)`, in increasing order. An empty range (after clamping
    /// `start` to the horizon) leaves every candidate.
    pub fn free_over(&self, candidates: &NodeSet, start: Time, end: Time) -> Vec<u32> {
        let start = start.max(self.horizon());
        let nw = self.words;
        let mut acc = vec![0u64; nw];
        candidates.write_words(&mut acc);
        if !self.n.is_multiple_of(64) {
            acc[nw - 1] &= (1u64 << (self.n % 64)) - 1;
        }
        if end > start {
            let first = self.slot_at(start);
            for slot in self.slots[first..].iter().take_while(|s| s.start < end) {
                for (a, b) in acc.iter_mut().zip(&slot.bits[..nw]) {
                    *a &= b;
                }
            }
        }
        let mut out = Vec::new();
        for (w, &v) in acc.iter().enumerate() {
            let mut x = v;
            while x != 0 {
                out.push(n_as_u32(w * 64 + x.trailing_zeros() as usize));
                x &= x - 1;
            }
        }
        out
    }

    /// Earliest placement of several groups at one start (see the module
    /// documentation): the earliest `t >= max(not_before, horizon)` at which
    /// every group gets `count` distinct nodes of its candidates, all free
    /// over `[t, t + duration)`. Returns the start and each group's nodes
    /// (increasing). `None` when no window ever fits (or a group is
    /// empty, or `duration <= 0`).
    pub fn earliest_groups(&self, groups: &[groups::Group<'_>], duration: Time, not_before: Time) -> Option<(Time, Vec<Vec<u32>>)> {
        if groups.is_empty() || groups.iter().any(|g| g.count == 0) {
            return None;
        }
        let total = groups.iter().try_fold(0u32, |acc, g| acc.checked_add(g.count))?;
        let mut union = NodeSet::new(self.n);
        for g in groups {
            for i in g.candidates.iter() {
                union.insert(i);
            }
        }
        let mut from = not_before;
        loop {
            let p = self.earliest(&Query { count: total, duration, not_before: from, candidates: &union })?;
            let free = self.free_over(&union, p.start, p.start.saturating_add(duration));
            if let Some(assigned) = groups::assign(groups, &free) {
                return Some((p.start, assigned));
            }
            from = self.next_change_after(p.start)?;
        }
    }

    /// The search proper (see the module documentation), from `from` on.
    /// `mask` is the candidate words followed by their summary words, with
    /// at least `k` members.
    fn search(&self, k: u32, d: Time, from: Time, mask: &[u64]) -> Option<(Time, Vec<u32>)> {
        let nw = self.words;
        let ns = self.summary;
        let (mask_words, mask_summary) = mask.split_at(nw);
        let all_free = n_as_u32(self.n);
        let need = k as usize;
        let slots = &self.slots[..];
        let last = slots.len() - 1;
        let mut acc_summary = vec![0u64; ns];
        let mut busy: Vec<usize> = Vec::new();
        let mut nodes: Vec<u32> = Vec::with_capacity(need);

        let mut i = self.slot_at(from);
        let mut t = from;
        let mut j = i;
        // Every slot in i..=counted has at least `k` free nodes.
        let mut counted = None;
        loop {
            let end = t.saturating_add(d);
            j = j.max(i);
            while j < last && slots[j + 1].start < end {
                j += 1;
            }

            let lo = match counted {
                Some(c) if c >= i => c + 1,
                _ => i,
            };
            if let Some(m) = (lo..=j).rev().find(|&m| slots[m].free < k) {
                if m == last {
                    return None;
                }
                i = m + 1;
                t = slots[i].start;
                continue;
            }
            counted = Some(j);

            // Window slots that are not entirely free (the others AND to a
            // no-op), in time order.
            busy.clear();
            busy.extend((i..=j).filter(|&m| slots[m].free != all_free));

            // Fast path, word by word from the lowest index, stopping as soon
            // as `k` nodes survive every slot of the window.
            acc_summary.copy_from_slice(mask_summary);
            for &m in &busy {
                for (a, s) in acc_summary.iter_mut().zip(&slots[m].bits[nw..]) {
                    *a &= s;
                }
            }
            nodes.clear();
            'words: for (sw, &s) in acc_summary.iter().enumerate() {
                let mut x = s;
                while x != 0 {
                    let w = sw * 64 + x.trailing_zeros() as usize;
                    x &= x - 1;
                    let mut v = mask_words[w];
                    for &m in &busy {
                        v &= slots[m].bits[w];
                        if v == 0 {
                            break;
                        }
                    }
                    while v != 0 {
                        nodes.push(n_as_u32(w * 64 + v.trailing_zeros() as usize));
                        v &= v - 1;
                        if nodes.len() == need {
                            break 'words;
                        }
                    }
                }
            }
            if nodes.len() == need {
                return Some((t, nodes));
            }

            // Too few survive the whole window: find how far to jump.
            let m = self.backward_failure(&busy, mask, need, &mut acc_summary);
            if m == last {
                return None;
            }
            i = m + 1;
            t = slots[i].start;
        }
    }

    /// ANDs the `busy` slots of a window (time order) into the candidate
    /// `mask` from the last one backwards and returns the slot at which fewer
    /// than `need` nodes survive: no start up to it can work, since every
    /// such window covers it and all the window's later slots. The whole
    /// window must leave fewer than `need` survivors.
    fn backward_failure(&self, busy: &[usize], mask: &[u64], need: usize, acc_summary: &mut [u64]) -> usize {
        let nw = self.words;
        let mut acc = vec![0u64; nw];
        let (mask_words, mask_summary) = mask.split_at(nw);
        acc_summary.copy_from_slice(mask_summary);
        let mut first = true;
        for &m in busy.iter().rev() {
            let (data, summary) = self.slots[m].bits.split_at(nw);
            let mut alive = 0usize;
            for (sw, acc_sw) in acc_summary.iter_mut().enumerate() {
                let mut x = *acc_sw & summary[sw];
                let mut keep = x;
                while x != 0 {
                    let b = x.trailing_zeros() as usize;
                    x &= x - 1;
                    let w = sw * 64 + b;
                    let v = if first { mask_words[w] } else { acc[w] } & data[w];
                    acc[w] = v;
                    if v == 0 {
                        keep &= !(1u64 << b);
                    }
                    alive += v.count_ones() as usize;
                }
                *acc_sw = keep;
            }
            first = false;
            if alive < need {
                return m;
            }
        }
        // Unreachable when the precondition holds (the full AND is below
        // `need`); the window's first busy slot is the safe answer then.
        busy.first().copied().unwrap_or(0)
    }
}
