//! The Grid'5000 reference description of a lab node: what the deploy
//! ramdisk's agent will report for that QEMU VM (1 vCPU, the memory, the
//! 2 GiB virtio disk, the virtio NIC with its MAC), so `ferrum node check`
//! finds no difference, unless a flag asks for a lie on purpose: 1 GiB of
//! memory more than the VM has, or a GPU it lacks.
//!
//! Facts the agent cannot know about a VM (CPU model, disk model) are left
//! out: a fact the reference does not state is not a difference.

use serde_json::{Value, json};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lies_change_only_what_they_name() {
        let node = NodePlan::new(77, 1);
        let honest = describe(&node, 384, Lies::default());
        assert_eq!(honest["main_memory"]["ram_size"], 384u64 << 20);
        assert_eq!(honest["network_adapters"][0]["mac"], "52:54:00:fe:4d:01");
        let liar = describe(&node, 384, Lies { memory: true, gpu: true });
        assert_eq!(liar["main_memory"]["ram_size"], (384u64 << 20) + (1 << 30));
        assert_eq!(liar["gpu_devices"]["gpu0"]["model"], "A100-SXM4-40GB");
    }
}
