//! Sites and clusters: the inventory grouped as Grid'5000's reference tree
//! (site → cluster → nodes), for the Grid'5000 API's reference and status
//! documents (`g5k::reference`, `g5k::status`), and the reference
//! descriptions of one cluster's nodes in one read.
//!
//! Read only: it decides nothing and writes nothing. The tree is read
//! through the read cache (`reads`), so the parent documents that
//! python-grid5000 fetches again and again (`gk.sites["lille"]` is a GET
//! each time) cost no query while nothing was committed.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{App, AppError, AppResult};
use crate::db::{BusyRow, NodeRow};
use crate::model::{NodeId, Seconds};
use crate::reference::natural_cmp;

/// Every site: those of the nodes, and those of `[sites.NAME]` (which may
/// have no node yet), in name order.
#[derive(Debug, Default)]
pub struct SiteTree {
    pub sites: BTreeMap<String, Site>,
}

/// One site's clusters, in name order.
#[derive(Debug, Default)]
pub struct Site {
    pub clusters: BTreeMap<String, Cluster>,
}

/// One cluster's nodes, in natural name order (`chifflot-2` before
/// `chifflot-10`).
#[derive(Debug, Default)]
pub struct Cluster {
    pub nodes: Vec<NodeRow>,
}

impl Cluster {
    /// Whether the cluster is exotic: one of its nodes is (ferrum's
    /// `exotic` is per node; Grid'5000's per cluster).
    pub fn exotic(&self) -> bool {
        self.nodes.iter().any(|n| n.properties.get("exotic").and_then(serde_json::Value::as_bool) == Some(true))
    }
}

impl SiteTree {
    /// A site, or 404 naming it.
    pub fn site(&self, name: &str) -> AppResult<&Site> {
        self.sites.get(name).ok_or_else(|| AppError::NotFound(format!("Couldn't find site '{name}'")))
    }

    /// A cluster of a site, or 404 naming what is missing.
    pub fn cluster(&self, site: &str, name: &str) -> AppResult<&Cluster> {
        self.site(site)?.clusters.get(name).ok_or_else(|| AppError::NotFound(format!("Couldn't find cluster '{name}' in site '{site}'")))
    }

    /// The site's stable small number (Grid'5000's `ipv6.site_index`): its
    /// rank in name order, from 1. It changes only when a site whose name
    /// sorts before it is added.
    pub fn index(&self, site: &str) -> Option<usize> {
        self.sites.keys().position(|s| s == site).map(|i| i + 1)
    }
}

impl App {
    /// The sites, their clusters and nodes.
    pub async fn site_tree(&self) -> AppResult<Arc<SiteTree>> {
        let generation = self.store.read_generation();
        self.reads.sites.get_or_read(generation, &(), self.read_site_tree()).await
    }

    async fn read_site_tree(&self) -> AppResult<SiteTree> {
        let mut tree = SiteTree::default();
        for name in self.config.sites.keys() {
            tree.sites.entry(name.clone()).or_default();
        }
        for row in self.store.list_nodes().await? {
            let site = tree.sites.entry(row.site.clone()).or_default();
            site.clusters.entry(row.cluster.clone()).or_default().nodes.push(row);
        }
        for site in tree.sites.values_mut() {
            for cluster in site.clusters.values_mut() {
                cluster.nodes.sort_by(|a, b| natural_cmp(&a.name, &b.name));
            }
        }
        Ok(tree)
    }

    /// The nodes of one cluster, each with its reference description
    /// (`None` for a node enrolled without one), in the tree's order; 404
    /// for an unknown site or cluster.
    pub async fn cluster_references(&self, site: &str, cluster: &str) -> AppResult<Vec<(NodeRow, Option<serde_json::Value>)>> {
        let tree = self.site_tree().await?;
        let nodes = &tree.cluster(site, cluster)?.nodes;
        let mut references: BTreeMap<_, _> = self.store.cluster_references(site, cluster).await?.into_iter().collect();
        nodes
            .iter()
            .map(|n| {
                let reference = match references.remove(&n.id).flatten() {
                    Some(text) => Some(serde_json::from_str(&text).map_err(|e| AppError::Internal(e.into()))?),
                    None => None,
                };
                Ok((n.clone(), reference))
            })
            .collect()
    }
}

impl App {
    /// The calendar from now on: every allocation not over yet, by node,
    /// and the `now` it was read at (for the Grid'5000 API's status, whose
    /// `uid` is that time).
    pub async fn upcoming_allocations(&self) -> AppResult<(Seconds, BTreeMap<NodeId, Vec<BusyRow>>)> {
        let now = self.now();
        let mut by_node: BTreeMap<NodeId, Vec<BusyRow>> = BTreeMap::new();
        for row in self.store.busy_between(now, Seconds::MAX / 2).await? {
            by_node.entry(row.node).or_default().push(row);
        }
        Ok((now, by_node))
    }
}
