//! Multi-group placement: which free node serves which group when a lease
//! asks for several groups at once (OAR's `{A}/nodes=2+{B}/nodes=1`).
//!
//! This module owns the assignment rule only: a bipartite b-matching of
//! groups (each wanting `count` nodes of its candidate set) to the nodes
//! free over a window, by augmenting paths. It never looks at time; the
//! calendar's [`Calendar::earliest_groups`](super::Calendar::earliest_groups)
//! decides which window to try. A greedy assignment would fail spuriously
//! when filters overlap (group A = any node takes the one node group B
//! needs); augmenting paths move A to another node instead.
//!
//! Cost: one breadth-first search over the groups per assigned node, each
//! O(groups × free nodes): small, since groups are few.

use std::collections::VecDeque;

use super::NodeSet;

/// One group of a request: `count` nodes of `candidates`.
#[derive(Clone, Copy, Debug)]
pub struct Group<'a> {
    pub count: u32,
    pub candidates: &'a NodeSet,
}

/// Assigns `free` nodes (increasing indices) to `groups`: every group gets
/// `count` distinct nodes of its candidates, no node serves two groups.
/// Each group's nodes come out in increasing order; lower indices are
/// preferred. `None` when no assignment exists.
pub fn assign(groups: &[Group<'_>], free: &[u32]) -> Option<Vec<Vec<u32>>> {
    let total: usize = groups.iter().map(|g| g.count as usize).sum();
    if total > free.len() {
        return None;
    }
    // Positions in `free` each group may take.
    let adj: Vec<Vec<usize>> = groups.iter().map(|g| (0..free.len()).filter(|&p| g.candidates.contains(free[p])).collect()).collect();
    let mut owner: Vec<Option<usize>> = vec![None; free.len()];
    for (g, group) in groups.iter().enumerate() {
        if adj[g].len() < group.count as usize {
            return None;
        }
        for _ in 0..group.count {
            if !augment(g, &adj, &mut owner) {
                return None;
            }
        }
    }
    let mut out = vec![Vec::new(); groups.len()];
    for (p, o) in owner.iter().enumerate() {
        if let Some(g) = o {
            out[*g].push(free[p]);
        }
    }
    Some(out)
}

/// Gives group `start` one more node, moving other groups to other nodes
/// along a shortest augmenting path if needed. Iterative (no recursion
/// depth to worry about on large node sets).
fn augment(start: usize, adj: &[Vec<usize>], owner: &mut [Option<usize>]) -> bool {
    let n_groups = adj.len();
    // The node a group gives up to the group that reached it (none for
    // `start`), and the group that wants each node.
    let mut gives: Vec<Option<usize>> = vec![None; n_groups];
    let mut visited = vec![false; n_groups];
    let mut wanted_by: Vec<usize> = vec![usize::MAX; owner.len()];
    let mut queue = VecDeque::from([start]);
    visited[start] = true;
    while let Some(g) = queue.pop_front() {
        for &p in &adj[g] {
            match owner[p] {
                None => {
                    // Flip the path: each group takes the node it reached,
                    // and its previous node goes to the group behind it.
                    let (mut node, mut group) = (p, g);
                    loop {
                        owner[node] = Some(group);
                        match gives[group] {
                            None => return true,
                            Some(q) => {
                                node = q;
                                group = wanted_by[q];
                            }
                        }
                    }
                }
                Some(h) if !visited[h] => {
                    visited[h] = true;
                    gives[h] = Some(p);
                    wanted_by[p] = g;
                    queue.push_back(h);
                }
                Some(_) => {}
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(members: &[u32]) -> NodeSet {
        members.iter().copied().collect()
    }

    #[test]
    fn overlapping_filters_get_distinct_nodes() {
        // A takes any node, B only node 0: a greedy A would take node 0.
        let any = set(&[0, 1, 2, 3]);
        let only0 = set(&[0]);
        let groups = [Group { count: 1, candidates: &any }, Group { count: 1, candidates: &only0 }];
        assert_eq!(assign(&groups, &[0, 1, 2, 3]), Some(vec![vec![1], vec![0]]));
        // Node 0 not free: no assignment.
        assert_eq!(assign(&groups, &[1, 2, 3]), None);
    }

    #[test]
    fn chains_of_moves_are_found() {
        // A: {0,1}, B: {1,2}, C: {2}; all one node each.
        let (a, b, c) = (set(&[0, 1]), set(&[1, 2]), set(&[2]));
        let groups = [Group { count: 1, candidates: &b }, Group { count: 1, candidates: &a }, Group { count: 1, candidates: &c }];
        assert_eq!(assign(&groups, &[0, 1, 2]), Some(vec![vec![1], vec![0], vec![2]]));
    }

    #[test]
    fn counts_and_totals_are_checked() {
        let any = set(&[0, 1, 2]);
        assert_eq!(assign(&[Group { count: 4, candidates: &any }], &[0, 1, 2]), None);
        let groups = [Group { count: 2, candidates: &any }, Group { count: 2, candidates: &any }];
        assert_eq!(assign(&groups, &[0, 1, 2]), None);
        let groups = [Group { count: 2, candidates: &any }, Group { count: 1, candidates: &any }];
        assert_eq!(assign(&groups, &[0, 1, 2]), Some(vec![vec![0, 1], vec![2]]));
        assert_eq!(assign(&[], &[0]), Some(vec![]));
    }

    /// Exhaustive check against brute force on every small instance of 2
    /// groups over 4 nodes: an assignment exists iff brute force finds one,
    /// and what is returned is valid.
    #[test]
    fn agrees_with_brute_force_on_small_instances() {
        let n = 4u32;
        for mask_a in 0u32..16 {
            for mask_b in 0u32..16 {
                for free_mask in 0u32..16 {
                    for (ca, cb) in [(1, 1), (2, 1), (1, 2), (2, 2), (3, 1)] {
                        let a: NodeSet = (0..n).filter(|i| mask_a >> i & 1 == 1).collect();
                        let b: NodeSet = (0..n).filter(|i| mask_b >> i & 1 == 1).collect();
                        let free: Vec<u32> = (0..n).filter(|i| free_mask >> i & 1 == 1).collect();
                        let groups = [Group { count: ca, candidates: &a }, Group { count: cb, candidates: &b }];
                        // Brute force: give each free node to A, B or nobody.
                        let mut exists = false;
                        for code in 0..3u32.pow(free.len() as u32) {
                            let (mut x, mut na, mut nb, mut ok) = (code, 0, 0, true);
                            for &node in &free {
                                match x % 3 {
                                    1 => {
                                        na += 1;
                                        ok &= a.contains(node);
                                    }
                                    2 => {
                                        nb += 1;
                                        ok &= b.contains(node);
                                    }
                                    _ => {}
                                }
                                x /= 3;
                            }
                            exists |= ok && na == ca && nb == cb;
                        }
                        let got = assign(&groups, &free);
                        assert_eq!(got.is_some(), exists, "A={mask_a:b} B={mask_b:b} free={free_mask:b} counts={ca},{cb}");
                        if let Some(got) = got {
                            assert_eq!((got[0].len(), got[1].len()), (ca as usize, cb as usize));
                            assert!(got[0].iter().all(|i| a.contains(*i) && free.contains(i)));
                            assert!(got[1].iter().all(|i| b.contains(*i) && free.contains(i) && !got[0].contains(i)));
                        }
                    }
                }
            }
        }
    }
}
