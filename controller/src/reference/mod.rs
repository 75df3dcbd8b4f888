//! Grid'5000 Reference API import: reading a reference tree and flattening
//! each node's description into OAR-named properties.
//!
//! This module owns the reading of a tree (`DIR/sites/<site>/clusters/
//! <cluster>/nodes/<node>.json`, or a repository checkout holding
//! `data/grid5000/sites/...`), the mapping from the reference schema to
//! [`Properties`], the choice of a node's boot NIC, and a generator of
//! synthetic full-size trees for benchmarks. It must not touch the database,
//! the network or any BMC, and does not decide what an import does with
//! nodes that already exist: it returns [`NodeDescription`]s and callers
//! (the `node import` application function) act on them.
//!
//! # Properties
//!
//! Every node gets every standard property of SPEC §3 (missing or `null`
//! fields give `''`, `0` or `false`), plus a few extras. Sizes are floored.
//!
//! | property | from the node's JSON |
//! |---|---|
//! | `site`, `cluster` | the directories the file is in |
//! | `host` | `uid` (must equal the file name) |
//! | `cpuarch` | `architecture.platform_type` |
//! | `cpucore` | `architecture.nb_cores`: cores of the whole node (see below) |
//! | `cputype` | `processor.model` + `' '` + `processor.version` (`Intel Xeon Gold 6126`, `AMD EPYC 7352`) |
//! | `memnode` | `main_memory.ram_size` / 2^20 (MiB) |
//! | `gpu_count` | number of entries of `gpu_devices` |
//! | `gpu_model`, `gpu_mem`, `gpu_vendor` | `model`, `memory` / 2^20, `vendor` of the first GPU by device name (natural order) |
//! | `accel_type`, `accel_model` | `gpu` and `gpu_model` when there are GPUs; else `type` and `model` of the first typed `other_devices` entry (`fpga`, `Alveo U200`) |
//! | `fpga_count` | sum of `count` (default 1) of the `other_devices` of type `fpga` |
//! | `disktype` | `interface/storage` of the main disk: `SATA/SSD`, `NVME/SSD`, `SAS/HDD` |
//! | `disk_count` | number of `storage_devices`, reservable ones included |
//! | `eth_rate` | `rate` of the boot adapter / 10^9 (Gbps) |
//! | `ib_rate`, `ib_count` | highest `rate` / 10^9 and number of InfiniBand adapters that are enabled and mounted or mountable |
//! | `exotic` | `exotic` |
//! | `cpu_count`, `core_count`, `thread_count` | `architecture.nb_procs`, `nb_cores`, `nb_threads` |
//! | `memcpu`, `memcore` | `ram_size` / `nb_procs`, / `nb_cores`, in MiB (as OAR) |
//! | `cpu_microarch` | `processor.microarchitecture` |
//!
//! Decisions, and where they differ from Grid'5000's own OAR property
//! generator (`lib/refrepo/gen/oar-properties.rb` in
//! grid5000/reference-repository, read at commit 9ebe1b1e, the commit the
//! fixtures come from):
//!
//! - `disktype` is written as that generator writes it: the main disk's
//!   `interface`, a slash, its `storage` (`SATA/SSD`), so filters written for
//!   Grid'5000 (`disktype = 'SAS/HDD'`) work unchanged. The main disk is the
//!   first non-reservable disk in `id` order (`disk0` on every real node,
//!   which is also the generator's "first disk"); if every disk is
//!   reservable, the first one.
//! - `cpucore` is the node's total core count, as ferrum's SPEC asks. OAR's
//!   `cpucore` is cores *per CPU* (`nb_cores / nb_procs`: 12 on chifflot,
//!   not 24); OAR's total is `core_count`, which is also set here.
//! - `eth_rate` is the boot adapter's rate. OAR takes the fastest `ethN`
//!   adapter that is enabled and mounted or mountable; the two agree on the
//!   fixtures.
//! - The boot adapter (`macs`, `ip`, `eth_rate`) is, as in OAR, the adapter
//!   whose `interface` is `Ethernet` and which is `mounted` and not
//!   `management`; `enabled` must not be `false` (absent counts as
//!   enabled). `macs` lists every such adapter in file order, lowercased;
//!   `ip` and `eth_rate` come from the first. A node without one has no MAC
//!   and no IP here; refusing it is the importer's decision. OAR also
//!   requires the device name to be `ethN`; ferrum does not.
//! - A node's `status` (`retired`) is not interpreted.
//!
//! # Performance
//!
//! [`read_tree`] reads and parses files one after the other. The full
//! reference (939 nodes, 16 MB of pretty-printed JSON at commit 9ebe1b1e)
//! and a synthetic 940-node tree each read in about 0.12 s in a release
//! build on a small 2-core machine; JSON parsing is nearly all of it.

mod flatten;
mod natural;
mod synth;
mod tree;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use crate::model::properties::Properties;

pub use natural::natural_cmp;
pub use synth::synthesize_tree;
pub use tree::{find_root, read_node, read_tree};

/// One node of a reference tree, flattened.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeDescription {
    /// The node's `uid` (`chifflot-3`).
    pub name: String,
    /// From the file's path (`sites/<site>/...`).
    pub site: String,
    /// From the file's path (`clusters/<cluster>/...`).
    pub cluster: String,
    /// MACs of the boot NIC(s), lowercase `aa:bb:cc:dd:ee:ff`: the mounted,
    /// enabled, non-management Ethernet adapters. Usually exactly one.
    pub macs: Vec<String>,
    /// The first boot NIC's `ip`.
    pub ip: Option<String>,
    /// OAR-named properties, every standard one included.
    pub properties: Properties,
    /// The node's JSON, whole.
    pub reference: serde_json::Value,
}

/// Why a tree or a node description could not be read. Every variant names
/// the file (or directory) and, where one is at fault, the JSON field.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error(
        "no Grid'5000 reference tree in {}: expected {}/sites/ or {}/data/grid5000/sites/",
        .dir.display(), .dir.display(), .dir.display()
    )]
    NoSites { dir: PathBuf },

    #[error("no node description under {} (sites/<site>/clusters/<cluster>/nodes/<node>.json)", .dir.display())]
    NoNodes { dir: PathBuf },

    #[error("I/O error on {}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: invalid JSON", .path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("{}: field `{field}`: {message}", .path.display())]
    Field { path: PathBuf, field: String, message: String },

    #[error("{}: field `uid` is `{uid}` but the file is named `{file_stem}.json`", .path.display())]
    UidMismatch { path: PathBuf, uid: String, file_stem: String },

    #[error("{}: node `{name}` is already described by {}", .path.display(), .first.display())]
    Duplicate { path: PathBuf, name: String, first: PathBuf },

    #[error("{}: name is not valid UTF-8", .path.display())]
    BadName { path: PathBuf },
}

/// Flattens one node description. `site` and `cluster` come from where the
/// description was found; errors name the file as
/// `sites/<site>/clusters/<cluster>/nodes/<uid>.json`, the node's place in a
/// reference tree. Use [`read_node`] for a file on disk.
pub fn flatten(site: &str, cluster: &str, node: &serde_json::Value) -> Result<NodeDescription, ReferenceError> {
    let uid = node.get("uid").and_then(serde_json::Value::as_str).filter(|uid| !uid.is_empty()).unwrap_or("?");
    let path = Path::new("sites").join(site).join("clusters").join(cluster).join("nodes").join(format!("{uid}.json"));
    flatten::flatten_owned(&path, site, cluster, node.clone())
}

/// The Grid'5000 reference sample shipped with the project
/// (`fixtures/g5k-reference` at the workspace root), for tests and
/// benchmarks.
///
/// `FERRUM_FIXTURES`, when set, names another fixtures directory (the one
/// holding `g5k-reference/`); a path to `g5k-reference` itself is accepted
/// too.
pub fn fixtures_dir() -> PathBuf {
    match std::env::var_os("FERRUM_FIXTURES") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            let nested = dir.join("g5k-reference");
            if nested.is_dir() { nested } else { dir }
        }
        None => Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/g5k-reference")).to_owned(),
    }
}
