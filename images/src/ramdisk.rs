//! The deploy ramdisks: a kernel and an initramfs in which `ferrum-agent`
//! runs on a node being deployed or reset.
//!
//! Two kinds share one recipe and one `/init` (`recipes/ramdisk/init`):
//! - [`Kind::Lab`]: the cloud kernel with the virtio drivers only, kept small
//!   because iPXE's HTTP slows sharply under load (LAB-NOTES §3);
//! - [`Kind::Hw`]: the generic kernel with common server NIC and storage
//!   drivers, each one only if that kernel has it, with dependencies.
//!
//! The tree holds busybox (static) with its applets, the agent at
//! `/usr/bin/ferrum-agent`, the modules and their load order, the udhcpc
//! hook, and `/dev/console`. The outputs are `<out>/vmlinuz` and
//! `<out>/initrd.img` (zstd newc cpio), with `<out>.stamp`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::initramfs::Builder;
use crate::kernel::Kernel;
use crate::kmod::{Missing, Resolution};
use crate::stamp::{self, Stamp};
use crate::{Freshness, ZSTD_LEVEL_INITRD};

/// Bump when the recipe changes in a way its inputs do not show.
const RECIPE_VERSION: u32 = 1;

/// The ramdisk's PID 1.
pub const INIT: &str = include_str!("../recipes/ramdisk/init");
/// The udhcpc hook shared by the ramdisks and the tiny image.
pub const UDHCPC_SCRIPT: &str = include_str!("../recipes/common/udhcpc.script");
/// `ferrum_net_up`, shared by the ramdisks and the tiny image.
pub const NET_SH: &str = include_str!("../recipes/common/net.sh");

/// Debian's trust roots (`ca-certificates`), copied into the ramdisk.
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The static busybox of the `busybox-static` package.
pub const BUSYBOX: &str = "/bin/busybox";

/// Virtio drivers in load order (LAB-NOTES §1), plus NVMe (built into the
/// cloud kernel: then there is nothing to load).
pub const LAB_MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
    "virtio_blk",
    "nvme",
];

/// What a hardware ramdisk tries to carry on top of [`LAB_MODULES`]: server
/// NICs, disk controllers and disks, and ext4 (a module in the generic
/// kernel) for the agent to install keys in the written system.
pub const HW_MODULES: &[&str] = &[
    // NICs
    "e1000",
    "e1000e",
    "igb",
    "ixgbe",
    "i40e",
    "ice",
    "bnxt_en",
    "mlx4_en",
    "mlx5_core",
    "tg3",
    "r8169",
    // Storage
    "ahci",
    "nvme",
    "megaraid_sas",
    "mpt3sas",
    "virtio_scsi",
    "sd_mod",
    // File systems
    "ext4",
];

/// Which ramdisk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Cloud kernel, virtio only: QEMU lab nodes.
    Lab,
    /// Generic kernel, common server hardware.
    Hw,
}

impl Kind {
    /// The step's name and output directory.
    pub fn step_name(self) -> &'static str {
        match self {
            Kind::Lab => "ramdisk-lab",
            Kind::Hw => "ramdisk-hw",
        }
    }

    fn modules(self) -> Vec<&'static str> {
        match self {
            Kind::Lab => LAB_MODULES.to_vec(),
            Kind::Hw => LAB_MODULES.iter().chain(HW_MODULES).copied().collect(),
        }
    }
}

/// A built ramdisk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ramdisk {
    pub vmlinuz: PathBuf,
    pub initrd: PathBuf,
}

/// Builds the `kind` ramdisk from `kernel` and `agent` into `out`.
pub fn build(kind: Kind, kernel: &Kernel, agent: &Path, out: &Path) -> Result<(Ramdisk, Freshness)> {
    let ramdisk = Ramdisk { vmlinuz: out.join("vmlinuz"), initrd: out.join("initrd.img") };
    let stamp_path = stamp::path_for(out);
    let stamp = Stamp::new(kind.step_name(), RECIPE_VERSION)
        .input("kernel", kernel.stamp_value())
        .input("modules", kind.modules().join(","))
        .input("zstd-level", ZSTD_LEVEL_INITRD)
        .input_file("busybox", Path::new(BUSYBOX))?
        .input_file("agent", agent)?
        .input_file("ca-certificates", Path::new(CA_BUNDLE))?
        .input_text("init", INIT)
        .input_text("udhcpc.script", UDHCPC_SCRIPT)
        .input_text("net.sh", NET_SH);
    if stamp.is_current(&stamp_path, &[&ramdisk.vmlinuz, &ramdisk.initrd]) {
        return Ok((ramdisk, Freshness::UpToDate));
    }
    Stamp::invalidate(&stamp_path)?;

    let mut tree = Builder::new();
    base_tree(&mut tree)?;
    tree.bytes("init", INIT, 0o755)?;
    tree.file("usr/bin/ferrum-agent", agent, 0o755)?;
    // The agent's HTTPS client (rustls with the platform verifier) needs
    // trust roots to exist at all; the controller's own CA can be added
    // next to them.
    tree.file("etc/ssl/certs/ca-certificates.crt", Path::new(CA_BUNDLE), 0o644)?;
    let missing = match kind {
        Kind::Lab => Missing::Fail,
        Kind::Hw => Missing::Skip,
    };
    let resolution = tree.modules(kernel, &kind.modules(), missing)?;
    log_modules(kind.step_name(), &resolution);

    fs::create_dir_all(out).map_err(Error::io("create", out))?;
    fs::copy(&kernel.vmlinuz, &ramdisk.vmlinuz).map_err(Error::io("copy to", &ramdisk.vmlinuz))?;
    tree.write_zstd(&ramdisk.initrd, ZSTD_LEVEL_INITRD)?;
    stamp.write(&stamp_path)?;
    Ok((ramdisk, Freshness::Built))
}

/// What every ferrum initramfs holds: busybox and its applets, the mount
/// points `/init` uses, `/dev/console` (the kernel opens it before `/init`
/// mounts devtmpfs), and the DHCP scripts.
pub fn base_tree(tree: &mut Builder) -> Result<()> {
    tree.busybox(Path::new(BUSYBOX))?;
    for dir in ["dev", "proc", "sys", "run", "tmp", "root", "etc"] {
        tree.dir(dir, if dir == "tmp" { 0o1777 } else { 0o755 })?;
    }
    tree.char_device("dev/console", 0o600, 5, 1)?;
    tree.bytes("etc/ferrum/udhcpc.script", UDHCPC_SCRIPT, 0o755)?;
    tree.bytes("etc/ferrum/net.sh", NET_SH, 0o644)?;
    tree.bytes("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644)?;
    tree.bytes("etc/group", "root:x:0:\n", 0o644)?;
    Ok(())
}

pub(crate) fn log_modules(step: &str, r: &Resolution) {
    tracing::info!(step, modules = r.load_order.len(), builtin = %r.builtin.join(" "), "kernel modules");
    if !r.missing.is_empty() {
        tracing::info!(step, missing = %r.missing.join(" "), "not in this kernel, left out");
    }
}
