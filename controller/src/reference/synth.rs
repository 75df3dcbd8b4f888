//! A synthetic, full-size Reference API tree for benchmarks and tests.
//!
//! Owns [`synthesize_tree`]: it clones the node files of a small sample tree
//! (the project's fixtures) under new names, clusters and sites, until the
//! wanted number of nodes is reached. It writes only under the directory it
//! is given, never reads anything but the sample, and never touches the
//! database.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use serde_json::{Value, json};

use super::ReferenceError;
use super::tree::{find_root, read_tree};

/// The twelve Grid'5000 sites, which the synthetic clusters are spread over.
const SITES: [&str; 12] =
    ["bordeaux", "grenoble", "lille", "louvain", "luxembourg", "lyon", "nancy", "nantes", "rennes", "sophia", "strasbourg", "toulouse"];

/// Nodes per synthetic cluster (the last one may be smaller). Above 10, so
/// every full cluster exercises natural ordering (`x-2` before `x-10`).
const CLUSTER_SIZE: usize = 16;

/// Writes a tree of `nodes` node files under `out` (`out/grid5000.json`,
/// `out/sites/<site>/<site>.json`,
/// `out/sites/<site>/clusters/<cluster>/<cluster>.json` and
/// `.../nodes/<node>.json`), built from the nodes of the tree at `fixtures`.
///
/// Synthetic cluster number `i` (from 1) clones fixture node `(i-1) mod N`
/// for all its nodes, so clusters are homogeneous as real ones are; it is
/// named after the fixture's cluster plus `i` (`servan1`, `chifflot3`), has
/// up to 16 nodes `<cluster>-1`, `<cluster>-2`, ..., and lives on site
/// `(i-1) mod 12` of the real site list. With 940 nodes: 59 clusters over
/// all 12 sites and, from the project's fixtures (in `read_tree` order: servan-1, servan-2, chifflot-1..8), 2 clusters in 10 exotic.
///
/// Each node file keeps its fixture's structure; besides `uid` (and
/// `nodeset`, the cluster name), every network adapter gets a fresh `mac`
/// (`02:00:` + node number + adapter index, locally administered) and `ip`
/// (`10.<adapter>.<node number / 256>.<node number % 256>`) so that imported
/// nodes do not collide on their boot MAC. MACs are unique up to 2^24 nodes,
/// IPs up to 65,536.
pub fn synthesize_tree(fixtures: &Path, out: &Path, nodes: usize) -> Result<(), ReferenceError> {
    let templates = read_tree(fixtures)?;
    if templates.is_empty() && nodes > 0 {
        return Err(ReferenceError::NoNodes { dir: fixtures.to_owned() });
    }
    let fixtures_root = find_root(fixtures)?;

    create_dir(&out.join("sites"))?;
    write_json(&out.join("grid5000.json"), &json!({ "type": "grid", "uid": "grid5000" }))?;

    let mut sites_written = BTreeSet::new();
    let mut number = 0usize; // node number across the whole tree, from 0
    for (index, first) in (0..nodes).step_by(CLUSTER_SIZE).enumerate() {
        let template = &templates[index % templates.len()];
        let site = SITES[index % SITES.len()];
        let cluster = format!("{}{}", template.cluster, index + 1);

        let site_dir = out.join("sites").join(site);
        if sites_written.insert(site) {
            create_dir(&site_dir)?;
            write_json(&site_dir.join(format!("{site}.json")), &json!({ "type": "site", "uid": site }))?;
        }

        let cluster_dir = site_dir.join("clusters").join(&cluster);
        create_dir(&cluster_dir.join("nodes"))?;
        let fixture_cluster = fixtures_root
            .join("sites")
            .join(&template.site)
            .join("clusters")
            .join(&template.cluster)
            .join(format!("{}.json", template.cluster));
        let mut description = match fs::read(&fixture_cluster) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| ReferenceError::Json { path: fixture_cluster.clone(), source })?,
            Err(missing) if missing.kind() == std::io::ErrorKind::NotFound => {
                json!({ "type": "cluster" })
            }
            Err(source) => {
                return Err(ReferenceError::Io { path: fixture_cluster, source });
            }
        };
        set(&mut description, "uid", Value::from(cluster.as_str()));
        write_json(&cluster_dir.join(format!("{cluster}.json")), &description)?;

        for member in 1..=CLUSTER_SIZE.min(nodes - first) {
            let name = format!("{cluster}-{member}");
            let mut node = template.reference.clone();
            set(&mut node, "uid", Value::from(name.as_str()));
            if node.get("nodeset").is_some() {
                set(&mut node, "nodeset", Value::from(cluster.as_str()));
            }
            renumber_adapters(&mut node, number);
            write_json(&cluster_dir.join("nodes").join(format!("{name}.json")), &node)?;
            number += 1;
        }
    }
    Ok(())
}

/// Gives every network adapter of node number `number` its own MAC and IP.
fn renumber_adapters(node: &mut Value, number: usize) {
    let Some(adapters) = node.get_mut("network_adapters").and_then(Value::as_array_mut) else {
        return;
    };
    for (index, adapter) in adapters.iter_mut().enumerate() {
        let Some(adapter) = adapter.as_object_mut() else {
            continue;
        };
        if adapter.get("mac").is_some_and(Value::is_string) {
            let mac =
                format!("02:00:{:02x}:{:02x}:{:02x}:{:02x}", (number >> 16) & 0xff, (number >> 8) & 0xff, number & 0xff, index & 0xff);
            adapter.insert("mac".to_owned(), Value::from(mac));
        }
        if adapter.get("ip").is_some_and(Value::is_string) {
            let ip = format!("10.{}.{}.{}", index & 0xff, (number >> 8) & 0xff, number & 0xff);
            adapter.insert("ip".to_owned(), Value::from(ip));
        }
    }
}

fn set(object: &mut Value, key: &str, value: Value) {
    if let Some(map) = object.as_object_mut() {
        map.insert(key.to_owned(), value);
    }
}

fn create_dir(dir: &Path) -> Result<(), ReferenceError> {
    fs::create_dir_all(dir).map_err(|source| ReferenceError::Io { path: dir.to_owned(), source })
}

fn write_json(path: &Path, value: &Value) -> Result<(), ReferenceError> {
    let mut text = serde_json::to_vec_pretty(value).map_err(|source| ReferenceError::Json { path: path.to_owned(), source })?;
    text.push(b'\n');
    fs::write(path, text).map_err(|source| ReferenceError::Io { path: path.to_owned(), source })
}
