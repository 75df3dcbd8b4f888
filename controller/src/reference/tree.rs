//! Walking a Reference API tree on disk and reading its node files.
//!
//! Owns where a tree's root is (`DIR/sites/` or `DIR/data/grid5000/sites/`),
//! which files are node descriptions (`sites/<s>/clusters/<c>/nodes/<n>.json`
//! and nothing else), their order, and the checks that span files (uid versus
//! file name, duplicate names). It never touches the database and never
//! writes.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::flatten::flatten_owned;
use super::natural::natural_cmp;
use super::{NodeDescription, ReferenceError};

/// Where the official repository keeps the tree, relative to its checkout.
const REPOSITORY_LAYOUT: &str = "data/grid5000";

/// The directory that holds `sites/`: `dir` itself, or `dir/data/grid5000`
/// (a checkout of grid5000/reference-repository).
pub fn find_root(dir: &Path) -> Result<PathBuf, ReferenceError> {
    fs::metadata(dir).map_err(|source| ReferenceError::Io { path: dir.to_owned(), source })?;
    [dir.to_owned(), dir.join(REPOSITORY_LAYOUT)]
        .into_iter()
        .find(|root| root.join("sites").is_dir())
        .ok_or_else(|| ReferenceError::NoSites { dir: dir.to_owned() })
}

/// Reads every node of the tree at `dir` (see [`find_root`]), sorted by
/// site, cluster and node name, each compared naturally (`chifflot-2` before
/// `chifflot-10`). A tree whose `sites/` holds no node is not an error: the
/// result is empty.
pub fn read_tree(dir: &Path) -> Result<Vec<NodeDescription>, ReferenceError> {
    let root = find_root(dir)?;
    let mut nodes = Vec::new();
    // Where each node name was first seen, to reject duplicates.
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    for (site, site_dir) in entries(&root.join("sites"), Kind::Dir)? {
        let clusters_dir = site_dir.join("clusters");
        if !clusters_dir.is_dir() {
            continue;
        }
        for (cluster, cluster_dir) in entries(&clusters_dir, Kind::Dir)? {
            let nodes_dir = cluster_dir.join("nodes");
            if !nodes_dir.is_dir() {
                continue;
            }
            for (stem, file) in entries(&nodes_dir, Kind::JsonFile)? {
                let node = read_node(&file, &site, &cluster)?;
                if node.name != stem {
                    return Err(ReferenceError::UidMismatch { path: file, uid: node.name, file_stem: stem });
                }
                if let Some(first) = seen.get(&node.name) {
                    return Err(ReferenceError::Duplicate { path: file, name: node.name, first: first.clone() });
                }
                seen.insert(node.name.clone(), file);
                nodes.push(node);
            }
        }
    }
    // Listings are already in this order; sorting again keeps the promise
    // independent of how the walk is written.
    nodes.sort_by(|a, b| {
        natural_cmp(&a.site, &b.site).then_with(|| natural_cmp(&a.cluster, &b.cluster)).then_with(|| natural_cmp(&a.name, &b.name))
    });
    Ok(nodes)
}

/// Reads and flattens one node file, with `site` and `cluster` given by the
/// caller (e.g. `ferrum node add --reference FILE.json`). Unlike
/// [`read_tree`] it does not compare the uid with the file name.
pub fn read_node(path: &Path, site: &str, cluster: &str) -> Result<NodeDescription, ReferenceError> {
    let bytes = fs::read(path).map_err(|source| ReferenceError::Io { path: path.to_owned(), source })?;
    let node: Value = serde_json::from_slice(&bytes).map_err(|source| ReferenceError::Json { path: path.to_owned(), source })?;
    flatten_owned(path, site, cluster, node)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    JsonFile,
}

/// The sub-directories (by name) or `.json` files (by stem) of `dir`, in
/// natural order. Hidden entries (`.git`, `.#x.json`) and everything else are
/// skipped; symbolic links are followed.
fn entries(dir: &Path, kind: Kind) -> Result<Vec<(String, PathBuf)>, ReferenceError> {
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |source| ReferenceError::Io { path, source }
    };
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let path = entry.path();
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str() else {
            return Err(ReferenceError::BadName { path });
        };
        if name.starts_with('.') {
            continue;
        }
        let wanted_name = match kind {
            Kind::Dir => Some(name),
            Kind::JsonFile => name.strip_suffix(".json").filter(|stem| !stem.is_empty()),
        };
        let Some(wanted_name) = wanted_name else {
            continue;
        };
        let mut file_type = entry.file_type().map_err(io_error(&path))?;
        if file_type.is_symlink() {
            file_type = fs::metadata(&path).map_err(io_error(&path))?.file_type();
        }
        let right_type = match kind {
            Kind::Dir => file_type.is_dir(),
            Kind::JsonFile => file_type.is_file(),
        };
        if right_type {
            found.push((wanted_name.to_owned(), path));
        }
    }
    found.sort_by(|a, b| natural_cmp(&a.0, &b.0));
    Ok(found)
}
