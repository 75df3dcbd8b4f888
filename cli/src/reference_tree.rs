//! Walking a Grid'5000 Reference API tree for `ferrum node import`:
//! `DIR/sites/<site>/clusters/<cluster>/nodes/<node>.json`, or the same
//! under `DIR/data/grid5000/` (a checkout of the reference repository).
//!
//! This module reads files and builds [`ReferenceNode`]s; it does not
//! interpret the descriptions (flattening into properties is the
//! controller's job) and does not talk to the server. Every error names the
//! file or directory at fault. The walk is sorted, so the same tree always
//! gives the same request.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ferrum_api::ReferenceNode;

/// One node description found in the tree.
#[derive(Debug, Clone)]
pub struct NodeFile {
    pub path: PathBuf,
    pub node: ReferenceNode,
}

/// What the walk found.
#[derive(Debug, Clone)]
pub struct Tree {
    /// The `sites/` directory that was walked.
    pub sites_dir: PathBuf,
    pub nodes: Vec<NodeFile>,
}

impl Tree {
    /// Distinct site names, sorted.
    pub fn sites(&self) -> Vec<&str> {
        let mut sites: Vec<&str> = self.nodes.iter().map(|n| n.node.site.as_str()).collect();
        sites.dedup();
        sites
    }

    /// Distinct `site/cluster` pairs, sorted.
    pub fn clusters(&self) -> Vec<(&str, &str)> {
        let mut clusters: Vec<(&str, &str)> = self.nodes.iter().map(|n| (n.node.site.as_str(), n.node.cluster.as_str())).collect();
        clusters.dedup();
        clusters
    }
}

/// Finds the `sites/` directory of a tree rooted at `dir`.
pub fn sites_dir(dir: &Path) -> Result<PathBuf> {
    let meta = std::fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a directory; give the root of a Grid'5000 reference tree", dir.display());
    }
    for candidate in [dir.join("sites"), dir.join("data").join("grid5000").join("sites")] {
        if candidate.is_dir() {
            return Ok(candidate);
        }
    }
    bail!(
        "no `sites/` directory in {}: expected {dir}/sites/<site>/clusters/<cluster>/nodes/<node>.json \
         (or the same under {dir}/data/grid5000/)",
        dir.display(),
        dir = dir.display()
    )
}

/// Reads every node description of the tree rooted at `dir`.
pub fn walk(dir: &Path) -> Result<Tree> {
    let sites_dir = sites_dir(dir)?;
    let mut nodes = Vec::new();
    for (site, site_dir) in subdirs(&sites_dir)? {
        let clusters_dir = site_dir.join("clusters");
        if !clusters_dir.is_dir() {
            continue;
        }
        for (cluster, cluster_dir) in subdirs(&clusters_dir)? {
            let nodes_dir = cluster_dir.join("nodes");
            if !nodes_dir.is_dir() {
                continue;
            }
            for path in json_files(&nodes_dir)? {
                nodes.push(read_node(&path, &site, &cluster)?);
            }
        }
    }
    if nodes.is_empty() {
        bail!("no node descriptions in {} (expected <site>/clusters/<cluster>/nodes/<node>.json)", sites_dir.display());
    }
    Ok(Tree { sites_dir, nodes })
}

fn read_node(path: &Path, site: &str, cluster: &str) -> Result<NodeFile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let description: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
    if !description.is_object() {
        bail!("{} does not hold a JSON object (a node description)", path.display());
    }
    Ok(NodeFile { path: path.to_path_buf(), node: ReferenceNode { site: site.to_owned(), cluster: cluster.to_owned(), description } })
}

/// Sorted `(name, path)` of the subdirectories of `dir` (symlinks followed).
fn subdirs(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let path = entry.path();
        if path.is_dir() {
            let name =
                entry.file_name().into_string().map_err(|name| anyhow::anyhow!("{}: {name:?} is not a UTF-8 name", dir.display()))?;
            found.push((name, path));
        }
    }
    found.sort();
    Ok(found)
}

/// Sorted `*.json` files of `dir`.
fn json_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry.with_context(|| format!("cannot list {}", dir.display()))?.path();
        if path.extension().is_some_and(|e| e == "json") && !path.is_dir() {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/g5k-reference")
    }

    #[test]
    fn walks_the_shared_fixtures() {
        let tree = walk(&fixtures()).expect("fixtures walk");
        assert_eq!(tree.nodes.len(), 10);
        assert_eq!(tree.sites(), ["grenoble", "lille"]);
        assert_eq!(tree.clusters(), [("grenoble", "servan"), ("lille", "chifflot")]);
        let count = |cluster: &str, site: &str| tree.nodes.iter().filter(|n| n.node.cluster == cluster && n.node.site == site).count();
        assert_eq!(count("chifflot", "lille"), 8);
        assert_eq!(count("servan", "grenoble"), 2);
        for file in &tree.nodes {
            let uid = file.node.description.get("uid").and_then(|u| u.as_str()).expect("uid");
            assert_eq!(Some(uid), file.path.file_stem().and_then(|s| s.to_str()));
        }
    }

    #[test]
    fn finds_a_reference_repository_checkout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nodes = dir.path().join("data/grid5000/sites/nancy/clusters/gros/nodes");
        std::fs::create_dir_all(&nodes).expect("mkdir");
        std::fs::write(nodes.join("gros-1.json"), r#"{"uid":"gros-1"}"#).expect("write");
        std::fs::write(nodes.join("README.md"), "not a node").expect("write");
        let tree = walk(dir.path()).expect("walk");
        assert_eq!(tree.nodes.len(), 1);
        assert_eq!((tree.nodes[0].node.site.as_str(), tree.nodes[0].node.cluster.as_str()), ("nancy", "gros"));
    }

    #[test]
    fn a_missing_dir_is_named() {
        let missing = fixtures().join("no-such-dir");
        let err = format!("{:#}", walk(&missing).expect_err("missing"));
        assert!(err.contains(&missing.display().to_string()), "{err}");
    }

    #[test]
    fn a_dir_without_sites_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = format!("{:#}", walk(dir.path()).expect_err("no sites"));
        assert!(err.contains("no `sites/` directory") && err.contains(&dir.path().display().to_string()), "{err}");
    }

    #[test]
    fn bad_json_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nodes = dir.path().join("sites/s/clusters/c/nodes");
        std::fs::create_dir_all(&nodes).expect("mkdir");
        let bad = nodes.join("c-1.json");
        std::fs::write(&bad, "{\"uid\": ").expect("write");
        let err = format!("{:#}", walk(dir.path()).expect_err("bad json"));
        assert!(err.contains(&bad.display().to_string()) && err.contains("not valid JSON"), "{err}");

        std::fs::write(&bad, "[1, 2]").expect("write");
        let err = format!("{:#}", walk(dir.path()).expect_err("not an object"));
        assert!(err.contains(&bad.display().to_string()), "{err}");
    }

    #[test]
    fn an_empty_tree_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("sites/s/clusters/c/nodes")).expect("mkdir");
        let err = format!("{:#}", walk(dir.path()).expect_err("empty"));
        assert!(err.contains("no node descriptions"), "{err}");
    }
}
