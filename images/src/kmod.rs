//! Kernel module selection: which `.ko` files a ramdisk needs and in which
//! order to load them.
//!
//! [`ModuleIndex`] reads a kernel's `modules.dep` (written by `depmod`) and
//! `modules.builtin`; [`ModuleIndex::resolve`] turns a list of module names
//! into a load order with every dependency before its users, and says which
//! names are built into the kernel (nothing to load) or absent. It reads
//! files only; it never loads a module on the host.

use std::collections::{HashMap, HashSet};
use std::fs;

use crate::error::{Error, Result};
use crate::kernel::Kernel;

/// What to do with a requested module the kernel does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// The ramdisk cannot work without it: fail.
    Fail,
    /// Best effort (a driver list for many kinds of hardware): leave it out.
    Skip,
}

/// A kernel's modules and their dependencies.
#[derive(Debug, Clone)]
pub struct ModuleIndex {
    version: String,
    /// Module name (with `_`) → path relative to `lib/modules/<version>`.
    path_of: HashMap<String, String>,
    /// Path → the paths it depends on (the full closure, as depmod writes it).
    deps_of: HashMap<String, Vec<String>>,
    builtin: HashSet<String>,
}

/// The answer of [`ModuleIndex::resolve`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    /// Paths relative to `lib/modules/<version>`, each after its dependencies.
    pub load_order: Vec<String>,
    /// Requested names that are built into the kernel.
    pub builtin: Vec<String>,
    /// Requested names the kernel does not have (only with [`Missing::Skip`]).
    pub missing: Vec<String>,
}

/// The module name of a `.ko` path: its file stem with `-` written `_`,
/// the way the kernel names modules.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

impl ModuleIndex {
    /// Reads `modules.dep` and `modules.builtin` of an unpacked kernel.
    pub fn load(kernel: &Kernel) -> Result<ModuleIndex> {
        let dep_path = kernel.modules.join("modules.dep");
        let dep = fs::read_to_string(&dep_path).map_err(Error::io("read", &dep_path))?;
        let builtin_path = kernel.modules.join("modules.builtin");
        let builtin = fs::read_to_string(&builtin_path).map_err(Error::io("read", &builtin_path))?;
        Ok(ModuleIndex::parse(&kernel.version, &dep, &builtin))
    }

    /// Builds an index from the text of `modules.dep` and `modules.builtin`.
    pub fn parse(version: &str, modules_dep: &str, modules_builtin: &str) -> ModuleIndex {
        let mut path_of = HashMap::new();
        let mut deps_of = HashMap::new();
        for line in modules_dep.lines() {
            let Some((path, deps)) = line.split_once(':') else { continue };
            let path = path.trim().to_owned();
            path_of.insert(module_name(&path), path.clone());
            deps_of.insert(path, deps.split_whitespace().map(str::to_owned).collect());
        }
        let builtin = modules_builtin.lines().map(str::trim).filter(|l| !l.is_empty()).map(module_name).collect();
        ModuleIndex { version: version.to_owned(), path_of, deps_of, builtin }
    }

    /// The load order for `names` and their dependencies, without duplicates.
    pub fn resolve(&self, names: &[&str], missing: Missing) -> Result<Resolution> {
        let mut resolution = Resolution::default();
        let mut seen = HashSet::new();
        for name in names {
            let name = name.replace('-', "_");
            if let Some(path) = self.path_of.get(&name) {
                self.visit(path, &mut seen, &mut resolution.load_order);
            } else if self.builtin.contains(&name) {
                resolution.builtin.push(name);
            } else if missing == Missing::Skip {
                resolution.missing.push(name);
            } else {
                return Err(Error::ModuleMissing { version: self.version.clone(), module: name });
            }
        }
        Ok(resolution)
    }

    /// Depth-first, dependencies first (post-order), so the order holds even
    /// where a `modules.dep` line lists its dependencies in another order.
    fn visit(&self, path: &str, seen: &mut HashSet<String>, order: &mut Vec<String>) {
        if !seen.insert(path.to_owned()) {
            return;
        }
        for dep in self.deps_of.get(path).into_iter().flatten() {
            self.visit(dep, seen, order);
        }
        order.push(path.to_owned());
    }

    /// The `modules.dep` lines of the modules in `order` (a subset index for
    /// a ramdisk, so busybox `modprobe` works on what it carries).
    pub fn modules_dep_subset(&self, order: &[String]) -> String {
        order.iter().map(|path| format!("{path}: {}\n", self.deps_of.get(path).map(|d| d.join(" ")).unwrap_or_default())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/nvme/host/nvme-core.ko:
";
    const BUILTIN: &str = "kernel/drivers/nvme/host/nvme.ko\nkernel/fs/ext4/ext4.ko\n";

    fn index() -> ModuleIndex {
        ModuleIndex::parse("6.1.0-test", DEP, BUILTIN)
    }

    #[test]
    fn dependencies_come_first_and_once() {
        let r = index().resolve(&["virtio_net", "virtio_pci", "virtio_blk"], Missing::Fail).unwrap();
        let names: Vec<String> = r.load_order.iter().map(|p| module_name(p)).collect();
        assert_eq!(
            names,
            [
                "failover",
                "net_failover",
                "virtio_ring",
                "virtio",
                "virtio_net",
                "virtio_pci_legacy_dev",
                "virtio_pci_modern_dev",
                "virtio_pci",
                "virtio_blk"
            ]
        );
        for (i, path) in r.load_order.iter().enumerate() {
            for dep in index().deps_of[path].iter() {
                let j = r.load_order.iter().position(|p| p == dep).unwrap();
                assert!(j < i, "{dep} must load before {path}");
            }
        }
    }

    #[test]
    fn builtins_and_missing_modules_are_reported() {
        let r = index().resolve(&["nvme", "nvme-core", "e1000e"], Missing::Skip).unwrap();
        assert_eq!(r.builtin, ["nvme"]);
        assert_eq!(r.missing, ["e1000e"]);
        assert_eq!(r.load_order, ["kernel/drivers/nvme/host/nvme-core.ko"]);

        let err = index().resolve(&["e1000e"], Missing::Fail).unwrap_err();
        assert_eq!(err.to_string(), "kernel 6.1.0-test has no module e1000e (neither built in nor in modules.dep)");
    }

    #[test]
    fn the_subset_index_lists_only_what_is_carried() {
        let idx = index();
        let r = idx.resolve(&["virtio_blk"], Missing::Fail).unwrap();
        assert_eq!(
            idx.modules_dep_subset(&r.load_order),
            "kernel/drivers/virtio/virtio_ring.ko: \n\
             kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n\
             kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n"
        );
    }
}
