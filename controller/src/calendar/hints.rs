//! Search lower bounds: "no placement of at least `count` nodes for at least
//! `duration` can start before `t`", learned from earlier full-mask
//! queries, so that the next search for a similar shape starts where the last
//! one ended instead of at the beginning of the timeline.
//!
//! This module owns a small table of such bounds, bucketed by (count class,
//! duration class). It does not look at slots: the calendar tells it what a
//! search proved (`record`) and what was released (`on_release`), and starts
//! a new table on `grow`. Every bound it returns is proven, never a guess; a
//! missed update only costs search time.
//!
//! Validity: a bound found for (k, d) over all nodes also holds for every
//! k' >= k, d' >= d and every candidate subset, and stays valid while nodes
//! only become busy (`reserve`) or the horizon moves (`advance`). A
//! `release` of [a, b) can only make starts t > a - d feasible again, so a
//! class whose durations stay below `D` keeps `min(bound, a - D + 1)`; the
//! open-ended last duration class and `grow` reset to "no bound".

use std::sync::atomic::{AtomicI64, Ordering};

use super::Time;

/// Duration class floors in seconds (strictly increasing). A query of
/// duration `d` reads the class of the largest floor <= d.
const DURATION_FLOORS: &[Time] = &{
    const MINUTES: [Time; 8] = [1, 60, 300, 600, 900, 1200, 1800, 2700];
    const HOURS: usize = 48;
    const DAYS: [Time; 19] = [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 21, 28, 42, 56, 90, 180, 365];
    let mut out = [0 as Time; MINUTES.len() + HOURS + DAYS.len()];
    let mut i = 0;
    while i < MINUTES.len() {
        out[i] = MINUTES[i];
        i += 1;
    }
    let mut h = 0;
    let mut seconds: Time = 0;
    while h < HOURS {
        seconds += 3600;
        out[MINUTES.len() + h] = seconds;
        h += 1;
    }
    let mut d = 0;
    while d < DAYS.len() {
        out[MINUTES.len() + HOURS + d] = DAYS[d] * 86_400;
        d += 1;
    }
    out
};

/// No bound known.
const NONE: Time = Time::MIN;

/// Bounds are learned inside `Calendar::earliest`, which takes `&self`, so the
/// table is made of relaxed atomics: concurrent readers of a shared calendar
/// only ever store valid bounds for the state they all see, and every
/// mutation of the calendar goes through `&mut`.
#[derive(Debug)]
pub(super) struct Hints {
    /// Count class floors: 1..=64 exactly, then four per octave, up to n.
    count_floors: Vec<u32>,
    /// `table[c * DURATION_FLOORS.len() + d]`: a bound for every count at or
    /// above floor `c` and every duration of class `d`. Non-decreasing
    /// along `d` except after `on_release` (which only loosens bounds, so
    /// the early stop in `record` merely loses tightness, never correctness).
    table: Vec<AtomicI64>,
}

impl Clone for Hints {
    fn clone(&self) -> Self {
        Self {
            count_floors: self.count_floors.clone(),
            table: self.table.iter().map(|v| AtomicI64::new(v.load(Ordering::Relaxed))).collect(),
        }
    }
}

impl Hints {
    pub(super) fn new(n_nodes: usize) -> Self {
        let n = u32::try_from(n_nodes).unwrap_or(u32::MAX).max(1);
        let mut count_floors: Vec<u32> = (1..=n.min(64)).collect();
        let mut base: u32 = 64;
        'outer: while base <= n / 2 {
            for q in 0..4u32 {
                let f = base + base / 4 * (q + 1);
                if f > n {
                    break 'outer;
                }
                count_floors.push(f);
            }
            base *= 2;
        }
        let table = (0..count_floors.len() * DURATION_FLOORS.len()).map(|_| AtomicI64::new(NONE)).collect();
        Self { count_floors, table }
    }

    /// Lower bound for a query of `count` nodes for `duration` seconds, over
    /// any candidate set. `Time::MIN` when nothing is known.
    pub(super) fn lower_bound(&self, count: u32, duration: Time) -> Time {
        let rows = self.count_floors.partition_point(|&f| f <= count);
        let d = DURATION_FLOORS.partition_point(|&f| f <= duration);
        if d == 0 {
            return NONE;
        }
        let width = DURATION_FLOORS.len();
        (0..rows).map(|c| self.table[c * width + d - 1].load(Ordering::Relaxed)).max().unwrap_or(NONE)
    }

    /// A full-mask search for (`count`, `duration`) proved that no start in
    /// [horizon, `start`) works. Recorded in the smallest count class that
    /// holds only larger-or-equal counts, for every duration class that holds
    /// only longer-or-equal durations (reads take the maximum over the count
    /// classes at or below theirs).
    pub(super) fn record(&self, count: u32, duration: Time, start: Time) {
        let c = self.count_floors.partition_point(|&f| f < count);
        let d0 = DURATION_FLOORS.partition_point(|&f| f < duration);
        let width = DURATION_FLOORS.len();
        if c >= self.count_floors.len() || d0 >= width {
            return;
        }
        // Plain relaxed stores: a racing writer can only replace a bound by
        // another proven (if smaller) one.
        for v in &self.table[c * width + d0..(c + 1) * width] {
            if v.load(Ordering::Relaxed) >= start {
                break;
            }
            v.store(start, Ordering::Relaxed);
        }
    }

    /// Nodes became free over [`from`, ..): loosen every bound that a start
    /// overlapping the freed range could now beat.
    pub(super) fn on_release(&mut self, from: Time) {
        let mut caps = [NONE; DURATION_FLOORS.len()];
        for (cap, next) in caps.iter_mut().zip(&DURATION_FLOORS[1..]) {
            *cap = from.saturating_sub(*next).saturating_add(1);
        }
        for row in self.table.chunks_exact_mut(DURATION_FLOORS.len()) {
            for (v, &cap) in row.iter_mut().zip(&caps) {
                let v = v.get_mut();
                *v = (*v).min(cap);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_are_strictly_increasing() {
        assert!(DURATION_FLOORS.windows(2).all(|w| w[0] < w[1]));
        let h = Hints::new(10_000);
        assert!(h.count_floors.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(h.count_floors[63], 64);
        assert!(h.count_floors.last().is_some_and(|&f| f <= 10_000));
    }

    #[test]
    fn bounds_are_only_read_by_dominating_shapes() {
        let mut h = Hints::new(100);
        h.record(10, 3600, 500);
        assert_eq!(h.lower_bound(10, 3600), 500);
        assert_eq!(h.lower_bound(11, 7200), 500);
        assert_eq!(h.lower_bound(9, 3600), NONE);
        assert_eq!(h.lower_bound(10, 3599), NONE);
        // 3601 s lies in the 1 h class but 3600 s does not dominate it…
        h.record(10, 3601, 900);
        // …so it went to the 2 h class.
        assert_eq!(h.lower_bound(10, 3600), 500);
        assert_eq!(h.lower_bound(10, 7200), 900);
        h.on_release(100_000);
        assert_eq!(h.lower_bound(10, 7200), 900);
        // The 2 h class holds durations below 3 h: a release at 11_000 lets
        // starts after 11_000 - 10_800 work again.
        h.on_release(11_000);
        assert_eq!(h.lower_bound(10, 7200), 11_000 - 10_800 + 1);
        assert_eq!(h.lower_bound(10, 3600), 500);
    }
}
