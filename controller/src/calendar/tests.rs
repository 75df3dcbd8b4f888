//! Engine tests: exact agreement with the naive reference on random
//! workloads, the replay fingerprint, and edge cases.

use proptest::prelude::*;

use super::naive::NaiveCalendar;
use super::workload::{self, Request};
use super::*;

/// Fingerprint of the (1,000 nodes × 10,000 requests) replay, computed by
/// the engine and the naive reference (release build) alike.
const FINGERPRINT_1000_10000: i64 = 472_083_109_405_200;

fn all(n: usize) -> NodeSet {
    NodeSet::full(n)
}

fn q(count: u32, duration: Time, not_before: Time, candidates: &NodeSet) -> Query<'_> {
    Query { count, duration, not_before, candidates }
}

#[test]
fn calendar_can_be_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Calendar>();
}

#[test]
fn fresh_calendar_places_at_not_before_on_lowest_nodes() {
    let cal = Calendar::new(10, 100);
    let m = all(10);
    let p = cal.earliest(&q(3, 50, 0, &m));
    assert_eq!(p, Some(Placement { start: 100, nodes: vec![0, 1, 2] }));
    let p = cal.earliest(&q(3, 50, 250, &m));
    assert_eq!(p.map(|p| p.start), Some(250));
    assert_eq!(cal.slot_count(), 1);
}

#[test]
fn invalid_queries_give_none() {
    let cal = Calendar::new(4, 0);
    let m = all(4);
    assert_eq!(cal.earliest(&q(0, 10, 0, &m)), None);
    assert_eq!(cal.earliest(&q(1, 0, 0, &m)), None);
    assert_eq!(cal.earliest(&q(1, -5, 0, &m)), None);
    assert_eq!(cal.earliest(&q(5, 10, 0, &m)), None);
    let two: NodeSet = [1u32, 3].into_iter().collect();
    assert_eq!(cal.earliest(&q(3, 10, 0, &two)), None);
    // Candidates beyond n_nodes do not count.
    let far: NodeSet = [2u32, 7, 9].into_iter().collect();
    assert_eq!(cal.earliest(&q(2, 10, 0, &far)), None);
    assert_eq!(cal.earliest(&q(1, 10, 0, &far)), Some(Placement { start: 0, nodes: vec![2] }));
}

#[test]
fn half_open_ranges_touch_without_conflict() {
    let mut cal = Calendar::new(2, 0);
    cal.reserve(&[0], 10, 20).expect("free");
    cal.reserve(&[0], 20, 30).expect("touching at 20 is no overlap");
    cal.reserve(&[0], 0, 10).expect("touching at 10 is no overlap");
    assert!(!cal.is_free(&[0], 19, 21));
    assert!(cal.is_free(&[0], 30, 31));
    assert!(cal.is_free(&[1], 0, 100));
    // The next start for node 0 is exactly the end of the last lease.
    let only0: NodeSet = [0u32].into_iter().collect();
    assert_eq!(cal.earliest(&q(1, 5, 0, &only0)).map(|p| p.start), Some(30));
}

#[test]
fn overlapping_reserve_conflicts_and_changes_nothing() {
    let mut cal = Calendar::new(4, 0);
    cal.reserve(&[1, 2], 100, 200).expect("free");
    let before = cal.clone();
    assert_eq!(cal.reserve(&[0, 2, 1], 150, 300), Err(Conflict { node: 2, at: 150 }));
    assert_eq!(cal.reserve(&[3, 1], 50, 101), Err(Conflict { node: 1, at: 100 }));
    assert_eq!(cal.reserve(&[9], 0, 1), Err(Conflict { node: 9, at: 0 }));
    assert_eq!(cal.slots, before.slots);
    assert!(cal.is_free(&[0, 3], 0, 1000));
    assert!(!cal.is_free(&[9], 0, 1));
}

#[test]
fn release_restores_and_merges_slots() {
    let mut cal = Calendar::new(3, 0);
    cal.reserve(&[0, 1], 10, 20).expect("free");
    cal.reserve(&[2], 15, 40).expect("free");
    assert_eq!(cal.slot_count(), 5);
    cal.release(&[0, 1], 10, 20);
    cal.release(&[2], 15, 40);
    assert_eq!(cal.slot_count(), 1);
    assert!(cal.is_free(&[0, 1, 2], 0, 100));
    // Early release of the tail only.
    cal.reserve(&[1], 10, 50).expect("free");
    cal.release(&[1], 30, 50);
    assert!(!cal.is_free(&[1], 29, 30));
    assert!(cal.is_free(&[1], 30, 1000));
    assert_eq!(cal.slot_count(), 3);
}

#[test]
fn advance_forgets_the_past_only() {
    let mut cal = Calendar::new(2, 0);
    cal.reserve(&[0], 10, 20).expect("free");
    cal.reserve(&[1], 30, 40).expect("free");
    let m = all(2);
    let before = cal.earliest(&q(2, 5, 15, &m));
    cal.advance(15);
    assert_eq!(cal.horizon(), 15);
    assert_eq!(cal.slot_count(), 4);
    assert_eq!(cal.earliest(&q(2, 5, 15, &m)), before);
    // Queries before the horizon start at the horizon.
    assert_eq!(cal.earliest(&q(1, 5, 0, &m)).map(|p| p.start), Some(15));
    cal.advance(100);
    assert_eq!(cal.slot_count(), 1);
    assert!(cal.is_free(&[0, 1], 0, 200));
}

#[test]
fn high_words_filling_up_hide_nothing() {
    // 4,200 nodes: 66 data words, 2 summary words.
    let n = 4200;
    let mut cal = Calendar::new(n, 0);
    let high: Vec<u32> = (4096..4160).collect();
    cal.reserve(&high, 10, 20).expect("free");
    let low: Vec<u32> = (1..64).collect();
    cal.reserve(&low, 10, 20).expect("free");
    let m = all(n);
    assert_eq!(cal.earliest(&q(2, 10, 10, &m)), Some(Placement { start: 10, nodes: vec![0, 64] }));
    let top: NodeSet = (4090u32..4200).collect();
    let p = cal.earliest(&q(40, 10, 10, &top)).expect("enough nodes");
    assert_eq!(p.start, 10);
    assert_eq!(p.nodes[..6], [4090, 4091, 4092, 4093, 4094, 4095]);
    assert_eq!(p.nodes[6], 4160);
    cal.release(&high, 10, 20);
    cal.release(&low, 10, 20);
    assert_eq!(cal.slot_count(), 1);
}

#[test]
fn grow_adds_free_nodes() {
    let mut cal = Calendar::new(2, 0);
    cal.reserve(&[0, 1], 0, 100).expect("free");
    let m = all(70);
    assert_eq!(cal.earliest(&q(1, 10, 0, &m)).map(|p| p.start), Some(100));
    cal.grow(70);
    assert_eq!(cal.n_nodes(), 70);
    assert_eq!(cal.earliest(&q(68, 10, 0, &m)), Some(Placement { start: 0, nodes: (2..70).collect() }));
    assert_eq!(cal.earliest(&q(70, 10, 0, &m)).map(|p| p.start), Some(100));
}

#[test]
fn workload_generator_is_the_documented_splitmix64() {
    // splitmix64(42): the first outputs are fixed by the algorithm.
    let mut rng = workload::SplitMix64::new(42);
    let a = rng.next_u64();
    let b = rng.next_u64();
    let reqs = workload::generate(2);
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        reqs[0],
        Request { count: 1 + u32::try_from(a % 64).expect("small"), walltime: (1 + i64::try_from(b % 24).expect("small")) * 3600 }
    );
    assert!(
        workload::generate(1000)
            .iter()
            .all(|r| (1..=64).contains(&r.count) && r.walltime % 3600 == 0 && (3600..=86_400).contains(&r.walltime))
    );
}

#[test]
fn replay_fingerprint_1000_x_10000() {
    let reqs = workload::generate(10_000);
    let mut cal = Calendar::new(1000, 0);
    let res = workload::replay(&mut cal, &reqs);
    assert_eq!(res.rejected, 0);
    assert_eq!(res.placed, 10_000);
    assert_eq!(res.fingerprint, FINGERPRINT_1000_10000);
}

#[test]
fn replay_matches_naive_on_a_small_workload() {
    let reqs = workload::generate(300);
    for n in [16, 64, 100] {
        let mut cal = Calendar::new(n, 0);
        let mut naive = NaiveCalendar::new(n, 0);
        let a = workload::replay(&mut cal, &reqs);
        let b = workload::replay_on(&mut naive, &reqs);
        assert_eq!(a, b, "n = {n}");
        assert_eq!(a.rejected, 0);
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// Earliest placement, then commit it for `duration`.
    Place {
        count: u32,
        duration: Time,
        not_before: Time,
        /// `None`: every node (the case that feeds the hints).
        mask: Option<u64>,
    },
    Reserve {
        nodes: Vec<u32>,
        start: Time,
        end: Time,
    },
    Release {
        nodes: Vec<u32>,
        start: Time,
        end: Time,
    },
    IsFree {
        nodes: Vec<u32>,
        start: Time,
        end: Time,
    },
    /// Cancel committed lease `index % leases`, from `cut % length` into it
    /// to its end (the way leases really come back).
    Cancel {
        index: usize,
        cut: Time,
    },
    Advance(Time),
    Grow(usize),
}

/// Operations on node indices below `max_node` (a little past `n_nodes`, on
/// purpose) asking for fewer than `max_count` nodes.
fn op(max_node: u32, max_count: u32) -> impl Strategy<Value = Op> {
    let nodes = move || proptest::collection::vec(0u32..max_node, 0..6);
    prop_oneof![
        6 => (
            0u32..max_count,
            -2i64..400,
            // "As soon as possible" (not before the horizon) is the case the
            // search bounds learn from: make it common.
            prop_oneof![Just(0i64), -20i64..600],
            prop_oneof![Just(None), any::<u64>().prop_map(Some)]
        )
            .prop_map(|(count, duration, not_before, mask)| Op::Place {
                count,
                duration,
                not_before,
                mask
            }),
        2 => (nodes(), -20i64..700, 0i64..300).prop_map(|(nodes, start, len)| Op::Reserve {
            nodes,
            start,
            end: start + len
        }),
        2 => (nodes(), -20i64..700, -5i64..300).prop_map(|(nodes, start, len)| Op::Release {
            nodes,
            start,
            end: start + len
        }),
        1 => (nodes(), -20i64..700, -5i64..300).prop_map(|(nodes, start, len)| Op::IsFree {
            nodes,
            start,
            end: start + len
        }),
        2 => (any::<usize>(), 0i64..400).prop_map(|(index, cut)| Op::Cancel { index, cut }),
        1 => (0i64..400).prop_map(Op::Advance),
        1 => (0usize..5).prop_map(Op::Grow),
    ]
}

/// `op` with every time multiplied by `s`: `s = 60` moves the same shapes
/// onto the minute scale, where durations fall into distinct classes of the
/// search bounds (and exercise them), `s = 1` keeps arbitrary second offsets.
fn scaled(op: Op, s: Time) -> Op {
    match op {
        Op::Place { count, duration, not_before, mask } => Op::Place { count, duration: duration * s, not_before: not_before * s, mask },
        Op::Reserve { nodes, start, end } => Op::Reserve { nodes, start: start * s, end: end * s },
        Op::Release { nodes, start, end } => Op::Release { nodes, start: start * s, end: end * s },
        Op::IsFree { nodes, start, end } => Op::IsFree { nodes, start: start * s, end: end * s },
        Op::Cancel { index, cut } => Op::Cancel { index, cut: cut * s },
        Op::Advance(t) => Op::Advance(t * s),
        Op::Grow(extra) => Op::Grow(extra),
    }
}

/// Every node, or a random subset drawn from `seed` with density 1/2, 1/8,
/// 15/16 or 1/64, over all nodes or only the last 200 (so that high words
/// fill up too), reaching a little past `n` on purpose (the calendar must
/// ignore indices beyond its nodes).
fn mask_of(mask: Option<u64>, n: usize) -> NodeSet {
    let Some(seed) = mask else {
        return NodeSet::full(n);
    };
    let mut rng = workload::SplitMix64::new(seed);
    let (num, den) = [(1, 2), (1, 8), (15, 16), (1, 64)][(seed % 4) as usize];
    let low = if seed & 4 == 0 { 0 } else { n.saturating_sub(200) };
    let low = u32::try_from(low).expect("small");
    let top = u32::try_from(n + 8).expect("small");
    (low..top).filter(|_| rng.next_u64() % den < num).collect()
}

/// Engine and reference agree on every node's free/busy state around `ts`.
fn assert_same_state(cal: &Calendar, naive: &NaiveCalendar, n: usize, scale: Time) {
    for node in 0..u32::try_from(n).expect("small") {
        for (s, e) in [(0, 50), (37, 38), (100, 250), (249, 600), (599, 2000)] {
            let (s, e) = (s * scale, e * scale);
            assert_eq!(cal.is_free(&[node], s, e), naive.is_free(&[node], s, e), "node {node} over [{s}, {e})");
        }
    }
}

/// Runs `ops` (times multiplied by `scale`) on the engine, the naive
/// reference and a never-advanced engine, comparing every answer.
fn check_against_naive(n: usize, ops: Vec<Op>, scale: Time) -> Result<(), TestCaseError> {
    let mut n = n;
    let mut leases: Vec<(Vec<u32>, Time, Time)> = Vec::new();
    let mut cal = Calendar::new(n, 0);
    let mut naive = NaiveCalendar::new(n, 0);
    // Never advanced: future answers must not depend on `advance`.
    let mut unadvanced = Calendar::new(n, 0);
    for op in ops {
        let h = cal.horizon();
        match scaled(op, scale) {
            Op::Place { count, duration, not_before, mask } => {
                let m = mask_of(mask, n);
                let query = q(count, duration, not_before, &m);
                let got = cal.earliest(&query);
                prop_assert_eq!(&got, &naive.earliest(&query));
                let late = q(count, duration, not_before.max(h), &m);
                prop_assert_eq!(&got, &unadvanced.earliest(&late));
                if let Some(p) = got {
                    prop_assert_eq!(p.nodes.len(), count as usize);
                    prop_assert!(p.nodes.windows(2).all(|w| w[0] < w[1]));
                    prop_assert!(p.nodes.iter().all(|&x| m.contains(x)));
                    prop_assert!(p.start >= not_before.max(h));
                    let end = p.start + duration;
                    prop_assert!(cal.is_free(&p.nodes, p.start, end));
                    prop_assert_eq!(cal.reserve(&p.nodes, p.start, end), Ok(()));
                    prop_assert_eq!(naive.reserve(&p.nodes, p.start, end), Ok(()));
                    prop_assert_eq!(unadvanced.reserve(&p.nodes, p.start, end), Ok(()));
                    leases.push((p.nodes.clone(), p.start, end));
                    prop_assert!(!cal.is_free(&p.nodes, p.start, end));
                    prop_assert!(!cal.is_free(&p.nodes[..1], p.start, p.start + 1));
                    prop_assert!(!cal.is_free(&p.nodes[..1], end - 1, end));
                }
            }
            Op::Reserve { nodes, start, end } => {
                let r = cal.reserve(&nodes, start, end);
                prop_assert_eq!(r, naive.reserve(&nodes, start, end));
                prop_assert_eq!(r, unadvanced.reserve(&nodes, start.max(h), end));
                if r.is_ok() && !nodes.is_empty() && end > start.max(h) {
                    prop_assert!(!cal.is_free(&nodes, start, end));
                }
            }
            Op::Release { nodes, start, end } => {
                cal.release(&nodes, start, end);
                naive.release(&nodes, start, end);
                unadvanced.release(&nodes, start.max(h), end);
                let known: Vec<u32> = nodes.iter().copied().filter(|&x| (x as usize) < n).collect();
                prop_assert!(cal.is_free(&known, start, end));
            }
            Op::IsFree { nodes, start, end } => {
                let f = cal.is_free(&nodes, start, end);
                prop_assert_eq!(f, naive.is_free(&nodes, start, end));
                prop_assert_eq!(f, unadvanced.is_free(&nodes, start.max(h), end));
            }
            Op::Cancel { index, cut } => {
                if leases.is_empty() {
                    continue;
                }
                let (nodes, start, end) = leases.swap_remove(index % leases.len());
                let from = start + cut % (end - start);
                cal.release(&nodes, from, end);
                naive.release(&nodes, from, end);
                unadvanced.release(&nodes, from.max(h), end);
                prop_assert!(cal.is_free(&nodes, from, end));
            }
            Op::Advance(t) => {
                cal.advance(t);
                naive.advance(t);
                prop_assert_eq!(cal.horizon(), t.max(h));
            }
            Op::Grow(extra) => {
                n += extra;
                cal.grow(n);
                naive.grow(n);
                unadvanced.grow(n);
            }
        }
        prop_assert!(cal.slots.windows(2).all(|w| w[0].start < w[1].start));
        let counts_ok = cal.slots.iter().all(|s| {
            let (data, _) = s.bits.split_at(cal.words);
            data.iter().map(|w| w.count_ones()).sum::<u32>() == s.free
        });
        prop_assert!(counts_ok);
        // No two neighbours alike: memory stays bounded by the leases.
        prop_assert!(cal.slots.windows(2).all(|w| w[0].bits != w[1].bits));
    }
    assert_same_state(&cal, &naive, n, scale);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Small calendars (one bitset word), dense and sparse.
    #[test]
    fn engine_agrees_with_naive(
        n in prop_oneof![1usize..=8, 1usize..=40],
        ops in proptest::collection::vec(op(44, 14), 0..60),
        scale in prop_oneof![Just(1i64), Just(60)],
    ) {
        check_against_naive(n, ops, scale)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Many words and several summary words (n > 4096).
    #[test]
    fn engine_agrees_with_naive_on_wide_calendars(
        n in prop_oneof![60usize..=200, 4000usize..=4300],
        ops in proptest::collection::vec(op(4310, 300), 0..30),
        scale in prop_oneof![Just(1i64), Just(60)],
    ) {
        check_against_naive(n, ops, scale)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Reserving a placement makes it busy; releasing it restores every
    /// answer (the slot structure merges back).
    #[test]
    fn reserve_then_release_restores(
        n in 1usize..=40,
        leases in proptest::collection::vec((0u32..8, 1i64..100, 0i64..300), 0..30),
        probe in (1u32..8, 1i64..150, 0i64..300, any::<u64>()),
    ) {
        let mut cal = Calendar::new(n, 0);
        let m = NodeSet::full(n);
        for (count, duration, not_before) in leases {
            if let Some(p) = cal.earliest(&q(count, duration, not_before, &m)) {
                prop_assert_eq!(cal.reserve(&p.nodes, p.start, p.start + duration), Ok(()));
            }
        }
        let before = cal.clone();
        let pm = mask_of(Some(probe.3), n);
        let query = q(probe.0, probe.1, probe.2, &pm);
        let first = cal.earliest(&query);
        if let Some(p) = &first {
            let end = p.start + probe.1;
            cal.reserve(&p.nodes, p.start, end).map_err(|c| TestCaseError::fail(c.to_string()))?;
            prop_assert!(!cal.is_free(&p.nodes, p.start, end));
            prop_assert!(cal.earliest(&query) != first);
            cal.release(&p.nodes, p.start, end);
            prop_assert!(cal.is_free(&p.nodes, p.start, end));
        }
        prop_assert_eq!(&cal.slots, &before.slots);
        prop_assert_eq!(cal.earliest(&query), first);
    }
}

#[test]
fn free_over_and_next_change_follow_the_slots() {
    let mut cal = Calendar::new(70, 0);
    cal.reserve(&[1, 65], 10, 20).unwrap();
    cal.reserve(&[2], 15, 30).unwrap();
    let m = all(70);
    assert_eq!(cal.next_change_after(0), Some(10));
    assert_eq!(cal.next_change_after(10), Some(15));
    assert_eq!(cal.next_change_after(25), Some(30));
    assert_eq!(cal.next_change_after(30), None);
    let free = cal.free_over(&m, 0, 16);
    assert!(!free.contains(&1) && !free.contains(&2) && !free.contains(&65) && free.contains(&69) && free.len() == 67);
    assert_eq!(cal.free_over(&[1u32, 2, 3].into_iter().collect(), 20, 40), vec![1, 3]);
    assert_eq!(cal.free_over(&[1u32, 2, 99].into_iter().collect(), 0, 5), vec![1, 2]);
}

#[test]
fn groups_with_overlapping_filters_are_placed_together() {
    use super::groups::Group;
    let mut cal = Calendar::new(4, 0);
    let any = all(4);
    let only0: NodeSet = [0u32].into_iter().collect();
    let groups = [Group { count: 1, candidates: &any }, Group { count: 1, candidates: &only0 }];
    // All free: node 0 goes to the group that needs it.
    assert_eq!(cal.earliest_groups(&groups, 10, 0), Some((0, vec![vec![1], vec![0]])));
    // Node 0 busy until 50: the start moves there, although 3 nodes are free before.
    cal.reserve(&[0], 0, 50).unwrap();
    assert_eq!(cal.earliest_groups(&groups, 10, 0), Some((50, vec![vec![1], vec![0]])));
    // Everything else busy [50, 100): node 0 is free but group A has nothing.
    cal.reserve(&[1, 2, 3], 40, 100).unwrap();
    assert_eq!(cal.earliest_groups(&groups, 10, 0), Some((100, vec![vec![1], vec![0]])));
    // A group with no candidate never fits; nor does a zero count.
    let none = NodeSet::new(4);
    assert_eq!(cal.earliest_groups(&[Group { count: 1, candidates: &none }], 10, 0), None);
    assert_eq!(cal.earliest_groups(&[Group { count: 0, candidates: &any }], 10, 0), None);
}

proptest! {
    /// The group placement agrees with a brute-force scan of every slot
    /// boundary on random calendars of two overlapping groups.
    #[test]
    fn earliest_groups_matches_a_scan_of_every_boundary(
        busy in proptest::collection::vec((0u32..6, 0i64..100, 1i64..40), 0..12),
        mask_a in 1u32..64, mask_b in 1u32..64, ca in 1u32..3, cb in 1u32..3, d in 1i64..30,
    ) {
        use super::groups::{assign, Group};
        let mut cal = Calendar::new(6, 0);
        for (node, start, len) in busy {
            let _ = cal.reserve(&[node], start, start + len);
        }
        let a: NodeSet = (0..6).filter(|i| mask_a >> i & 1 == 1).collect();
        let b: NodeSet = (0..6).filter(|i| mask_b >> i & 1 == 1).collect();
        let groups = [Group { count: ca, candidates: &a }, Group { count: cb, candidates: &b }];
        let mut starts = vec![0];
        let mut t = 0;
        while let Some(next) = cal.next_change_after(t) {
            starts.push(next);
            t = next;
        }
        let expected = starts.iter().copied().find(|&s| assign(&groups, &cal.free_over(&NodeSet::full(6), s, s + d)).is_some());
        let got = cal.earliest_groups(&groups, d, 0);
        prop_assert_eq!(got.as_ref().map(|g| g.0), expected);
        if let Some((start, nodes)) = got {
            prop_assert!(cal.is_free(&nodes[0], start, start + d) && cal.is_free(&nodes[1], start, start + d));
            prop_assert!(nodes[0].iter().all(|i| a.contains(*i) && !nodes[1].contains(i)));
            prop_assert!(nodes[1].iter().all(|i| b.contains(*i)));
        }
    }
}
