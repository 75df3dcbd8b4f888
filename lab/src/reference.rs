//! The Grid'5000 reference description of a lab node: what the deploy
//! ramdisk's agent will report for that QEMU VM (1 vCPU, the memory, the
//! 2 GiB virtio disk, the virtio NIC with its MAC), so `ferrum node check`
//! finds no difference, unless a flag asks for a lie on purpose: 1 GiB of
//! memory more than the VM has, or a GPU it lacks.
//!
//! Facts the agent cannot know about a VM (CPU model, disk model) are left
//! out: a fact the reference does not state is not a difference.
//!
//! `lab up` writes the descriptions as a reference tree
//! (`DIR/reference/sites/<site>/clusters/<cluster>/nodes/<node>.json`,
//! [`write_tree`]) and enrols the nodes from it, reading it as
//! `ferrum node import` does: the tree says which site and cluster each
//! node belongs to.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::error::{LabError, Result};
use crate::layout::{DISK_BYTES, NodePlan};

/// Deliberate differences from the VM.
#[derive(Clone, Copy, Debug, Default)]
pub struct Lies {
    /// Claim 1 GiB more memory than the VM has.
    pub memory: bool,
    /// Claim a GPU the VM lacks.
    pub gpu: bool,
}

/// The description of `node` with `memory_mib` of RAM.
pub fn describe(node: &NodePlan, memory_mib: u32, lies: Lies) -> Value {
    let mut ram = u64::from(memory_mib) << 20;
    if lies.memory {
        ram += 1 << 30;
    }
    let mut gpus = json!({});
    if lies.gpu {
        gpus = json!({ "gpu0": { "vendor": "Nvidia", "model": "A100-SXM4-40GB", "memory": 42_949_672_960u64, "device": "/dev/nvidia0" } });
    }
    json!({
        "uid": node.name,
        "type": "node",
        "architecture": { "platform_type": "x86_64", "nb_procs": 1, "nb_cores": 1, "nb_threads": 1 },
        "main_memory": { "ram_size": ram },
        "storage_devices": [{
            "id": "disk0", "device": "vda", "interface": "VIRTIO", "storage": "HDD", "size": DISK_BYTES, "reservation": false
        }],
        "network_adapters": [{
            "device": "eth0", "interface": "Ethernet", "driver": "virtio_net", "mac": node.mac, "ip": node.ip,
            "enabled": true, "mounted": true, "management": false, "mountable": true, "rate": 1_000_000_000u64
        }],
        "gpu_devices": gpus,
    })
}

/// Where the description of `node` goes in the tree rooted at `root`.
pub fn node_path(root: &Path, site: &str, cluster: &str, node: &str) -> PathBuf {
    root.join("sites").join(site).join("clusters").join(cluster).join("nodes").join(format!("{node}.json"))
}

/// Writes a fresh tree at `root` (what was there is removed) with one
/// description per node, all of `cluster` at `site`.
pub fn write_tree(root: &Path, site: &str, cluster: &str, nodes: &[(&NodePlan, Value)]) -> Result<()> {
    if root.exists() {
        std::fs::remove_dir_all(root).map_err(LabError::io("cannot remove the old reference tree", root))?;
    }
    for (plan, description) in nodes {
        let path = node_path(root, site, cluster, &plan.name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(LabError::io("cannot create", parent))?;
        }
        let text = serde_json::to_string_pretty(description).unwrap_or_default();
        std::fs::write(&path, format!("{text}\n")).map_err(LabError::io("cannot write", &path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_has_one_file_per_node_under_its_site_and_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("reference");
        let node = NodePlan::new(77, "chifflot", 1);
        write_tree(&root, "lille", "chifflot", &[(&node, describe(&node, 384, Lies::default()))]).unwrap();
        let path = root.join("sites/lille/clusters/chifflot/nodes/chifflot-1.json");
        let back: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back["uid"], "chifflot-1");
        // A second write replaces the tree.
        write_tree(&root, "lille", "chifflot", &[]).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn lies_change_only_what_they_name() {
        let node = NodePlan::new(77, "qemu", 1);
        let honest = describe(&node, 384, Lies::default());
        assert_eq!(honest["main_memory"]["ram_size"], 384u64 << 20);
        assert_eq!(honest["network_adapters"][0]["mac"], "52:54:00:fe:4d:01");
        let liar = describe(&node, 384, Lies { memory: true, gpu: true });
        assert_eq!(liar["main_memory"]["ram_size"], (384u64 << 20) + (1 << 30));
        assert_eq!(liar["gpu_devices"]["gpu0"]["model"], "A100-SXM4-40GB");
    }
}
