//! The in-memory view the calendar decides on: the node index (properties,
//! states, dense calendar indices) and two placement calendars, one with
//! normal leases only (where normal leases are placed: besteffort time is
//! free to them) and one with every allocation (where besteffort leases are
//! placed).
//!
//! The database stays the truth. The cache remembers the generations it
//! was built at and reloads when the database has moved on (another
//! process wrote, or a write of ours raced); every write through the store
//! checks the calendar generation, so a stale cache can cost a retry but
//! never a double booking.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::calendar::{Calendar, NodeSet};
use crate::config::SiteConfig;
use crate::db::{Datastore, DbResult};
use crate::model::properties::{PropValue, Properties};
use crate::model::{LeaseType, NodeId, NodeLifecycle, NodePolicy, Seconds};

/// What placement needs to know of a node.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub id: NodeId,
    pub name: String,
    pub state: NodeLifecycle,
    pub policy: NodePolicy,
    pub properties: Properties,
    pub exotic: bool,
}

#[derive(Debug)]
pub struct CalendarCache {
    loaded: bool,
    nodes_generation: i64,
    pub generation: i64,
    /// Nodes in calendar index order (enrolment order).
    pub nodes: Vec<NodeInfo>,
    index: HashMap<NodeId, u32>,
    by_name: HashMap<String, u32>,
    /// Every property name some node has, plus the standard and derived
    /// ones.
    pub known_properties: BTreeSet<String>,
    /// `[sites.NAME]`, for the nodes' fully qualified names.
    sites: BTreeMap<String, SiteConfig>,
    /// Normal (non-besteffort) allocations.
    pub normal: Calendar,
    /// Every allocation.
    pub all: Calendar,
}

pub(crate) fn to_properties(map: &serde_json::Map<String, serde_json::Value>) -> Properties {
    map.iter()
        .filter_map(|(k, v)| {
            let value = match v {
                serde_json::Value::Bool(b) => PropValue::Bool(*b),
                serde_json::Value::Number(n) => match n.as_i64() {
                    Some(i) => PropValue::Int(i),
                    None => PropValue::Float(n.as_f64()?),
                },
                serde_json::Value::String(s) => PropValue::Str(s.clone()),
                _ => return None,
            };
            Some((k.clone(), value))
        })
        .collect()
}

impl CalendarCache {
    pub fn empty(sites: BTreeMap<String, SiteConfig>) -> Self {
        CalendarCache {
            sites,
            loaded: false,
            nodes_generation: -1,
            generation: -1,
            nodes: Vec::new(),
            index: HashMap::new(),
            by_name: HashMap::new(),
            known_properties: BTreeSet::new(),
            normal: Calendar::new(0, 0),
            all: Calendar::new(0, 0),
        }
    }

    /// Brings the cache up to date with the database.
    pub async fn refresh(&mut self, store: &dyn Datastore, now: Seconds) -> DbResult<()> {
        let (generation, nodes_generation) = store.generations().await?;
        if !self.loaded || nodes_generation != self.nodes_generation {
            self.reload_nodes(store, nodes_generation).await?;
        }
        if !self.loaded || generation != self.generation {
            self.reload_calendar(store, now).await?;
        }
        self.loaded = true;
        self.normal.advance(now);
        self.all.advance(now);
        Ok(())
    }

    /// Forces a full reload at the next refresh.
    pub fn invalidate(&mut self) {
        self.loaded = false;
    }

    async fn reload_nodes(&mut self, store: &dyn Datastore, generation: i64) -> DbResult<()> {
        let mut rows = store.list_nodes().await?;
        rows.sort_by_key(|r| r.id);
        let mut known = super::nodes::standard_names();
        let mut nodes = Vec::with_capacity(rows.len());
        for r in rows {
            let props = super::nodes::filter_properties(&self.sites, &r);
            known.extend(props.keys().cloned());
            let exotic = matches!(props.get("exotic"), Some(PropValue::Bool(true)));
            nodes.push(NodeInfo { id: r.id, name: r.name, state: r.state, policy: r.policy, properties: props, exotic });
        }
        // Indices are append-only: a known node keeps its index, so the
        // calendars stay valid; new nodes extend them.
        let same_prefix = self.nodes.len() <= nodes.len() && self.nodes.iter().zip(&nodes).all(|(a, b)| a.id == b.id);
        if !same_prefix {
            self.loaded = false;
        }
        self.index = nodes.iter().enumerate().map(|(i, n)| (n.id, index_u32(i))).collect();
        self.by_name = nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), index_u32(i))).collect();
        self.nodes = nodes;
        self.known_properties = known;
        self.nodes_generation = generation;
        self.normal.grow(self.nodes.len());
        self.all.grow(self.nodes.len());
        Ok(())
    }

    async fn reload_calendar(&mut self, store: &dyn Datastore, now: Seconds) -> DbResult<()> {
        let (generation, rows) = store.allocations_after(now).await?;
        let n = self.nodes.len();
        let mut normal = Calendar::new(n, now);
        let mut all = Calendar::new(n, now);
        for row in rows {
            let Some(&i) = self.index.get(&row.node) else { continue };
            let start = row.start.max(now);
            if start >= row.end {
                continue;
            }
            // The database guarantees rows do not overlap, so these succeed.
            let _ = all.reserve(&[i], start, row.end);
            if row.lease_type != LeaseType::Besteffort {
                let _ = normal.reserve(&[i], start, row.end);
            }
        }
        self.normal = normal;
        self.all = all;
        self.generation = generation;
        Ok(())
    }

    pub fn index_of(&self, id: NodeId) -> Option<u32> {
        self.index.get(&id).copied()
    }

    pub fn index_by_name(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    pub fn node(&self, i: u32) -> &NodeInfo {
        &self.nodes[i as usize]
    }

    /// An empty node set sized for the index.
    pub fn node_set(&self) -> NodeSet {
        NodeSet::new(self.nodes.len())
    }

    /// Records a new allocation in both calendars.
    pub fn reserve(&mut self, nodes: &[u32], start: Seconds, end: Seconds, lease_type: LeaseType) {
        let _ = self.all.reserve(nodes, start, end);
        if lease_type != LeaseType::Besteffort {
            let _ = self.normal.reserve(nodes, start, end);
        }
    }

    /// Frees an allocation (or the part of it after a cut) in both calendars.
    pub fn release(&mut self, nodes: &[u32], start: Seconds, end: Seconds, lease_type: LeaseType) {
        if start >= end {
            return;
        }
        self.all.release(nodes, start, end);
        if lease_type != LeaseType::Besteffort {
            self.normal.release(nodes, start, end);
        }
    }
}

fn index_u32(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}
