//! `NodeSet`: a set of dense node indices (`0..n`), the form in which callers
//! hand candidate masks to the calendar.
//!
//! It owns nothing but the bits; it does not know real node ids, filters or
//! the database. The caller maps its nodes to indices and builds masks from
//! its filters.

use fixedbitset::FixedBitSet;

/// A set of dense node indices, backed by a [`FixedBitSet`].
///
/// `len` is the size of the universe the set can hold without growing
/// (indices `0..len`); `count` is the number of members.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct NodeSet(FixedBitSet);

impl NodeSet {
    /// An empty set over the universe `0..n`.
    pub fn new(n: usize) -> Self {
        Self(FixedBitSet::with_capacity(n))
    }

    /// The set of all indices `0..n`.
    pub fn full(n: usize) -> Self {
        let mut bits = FixedBitSet::with_capacity(n);
        bits.insert_range(..);
        Self(bits)
    }

    /// Adds `node`, growing the universe if `node >= len()`.
    pub fn insert(&mut self, node: u32) {
        self.0.grow_and_insert(node as usize);
    }

    /// Removes `node` (no-op when absent).
    pub fn remove(&mut self, node: u32) {
        let i = node as usize;
        if i < self.0.len() {
            self.0.remove(i);
        }
    }

    /// Whether `node` is a member.
    pub fn contains(&self, node: u32) -> bool {
        self.0.contains(node as usize)
    }

    /// Size of the universe (`0..len`), not the number of members.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the universe is empty (`len() == 0`), like [`FixedBitSet::is_empty`].
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of members.
    pub fn count(&self) -> usize {
        self.0.count_ones(..)
    }

    /// Members in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        // Indices come from a set built with `u32` inserts (or a universe the
        // caller sized); anything past u32::MAX cannot be a node index.
        self.0.ones().map_while(|i| u32::try_from(i).ok())
    }

    /// The underlying bitset.
    pub fn as_fixedbitset(&self) -> &FixedBitSet {
        &self.0
    }

    /// Writes the members below `n_words * 64` into `out` as little-endian
    /// 64-bit words (bit `i % 64` of word `i / 64` is index `i`). `out` is
    /// overwritten entirely.
    pub(crate) fn write_words(&self, out: &mut [u64]) {
        out.fill(0);
        let block_bits = usize::BITS as usize;
        for (b, &block) in self.0.as_slice().iter().enumerate() {
            if block == 0 {
                continue;
            }
            let bit = b * block_bits;
            let w = bit / 64;
            if w >= out.len() {
                break;
            }
            out[w] |= (block as u64) << (bit % 64);
        }
    }
}

impl From<FixedBitSet> for NodeSet {
    fn from(bits: FixedBitSet) -> Self {
        Self(bits)
    }
}

impl From<NodeSet> for FixedBitSet {
    fn from(set: NodeSet) -> Self {
        set.0
    }
}

impl FromIterator<u32> for NodeSet {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        let mut set = NodeSet::default();
        for i in iter {
            set.insert(i);
        }
        set
    }
}
