//! Builds ferrum's boot artefacts from Debian packages: the deploy ramdisks
//! (a kernel and an initramfs running `ferrum-agent`) and the stock
//! environments (`tiny`, `tiny-python`, `debian12-min`) as `raw.zst` images with their
//! descriptors. `ferrum-images build` (see [`plan`]) drives the steps; tests
//! of other crates call the steps directly.
//!
//! Map:
//! - [`kernel`]: Debian kernels downloaded with apt ([`apt`]) and unpacked,
//!   never installed on the host; [`kmod`]: module dependencies and order;
//! - [`initramfs`]: file trees written as newc cpio archives or into a
//!   mounted file system; [`ramdisk`]: the deploy ramdisk recipe; [`agent`]:
//!   the static agent binary it carries;
//! - [`disk`]: raw MBR + ext4 + extlinux images through loop mounts;
//!   [`tiny`], [`tiny_python`], [`debian`]: the stock environment recipes; [`environment`],
//!   [`descriptor`]: what an environment is published as;
//! - [`stamp`]: what lets a step be skipped; [`cmd`]: how every external
//!   tool is run.
//!
//! Everything here runs as root on a Debian 12 host (loop devices, mounts,
//! chroot) and never installs a package or a kernel on that host.

pub mod agent;
pub mod apt;
pub mod cmd;
pub mod debian;
pub mod descriptor;
pub mod disk;
pub mod environment;
pub mod error;
pub mod initramfs;
pub mod kernel;
pub mod kmod;
pub mod plan;
pub mod ramdisk;
pub mod stamp;
pub mod tiny;
pub mod tiny_python;

pub use error::{Error, Result};
pub use kernel::Kernel;

/// Whether a step did its work or found its outputs current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// The step ran.
    Built,
    /// The outputs were already there for the same inputs (stamp matched).
    UpToDate,
}

/// zstd level of initramfs archives. Measured on the lab ramdisk (15.9 MB
/// of cpio): level 9 gives 4.9 MB in 0.9 s, level 19 4.45 MB in 17 s (the
/// hardware ramdisk: 9.1 MB in 2.3 s against 8.2 MB in 45 s). 10% of the
/// initrd is 2.5% of what iPXE fetches with the 13.5 MB kernel: not worth it.
pub const ZSTD_LEVEL_INITRD: i32 = 9;

#[cfg(test)]
mod tidy {
    use std::path::Path;

    /// Every source file of the crate opens with a `//!` doc saying what it owns.
    #[test]
    fn every_module_opens_with_its_doc() {
        fn visit(dir: &Path, missing: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    visit(&path, missing);
                } else if path.extension().is_some_and(|e| e == "rs") && !std::fs::read_to_string(&path).unwrap().starts_with("//!") {
                    missing.push(path.display().to_string());
                }
            }
        }
        let mut missing = Vec::new();
        for dir in ["src", "tests"] {
            visit(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir), &mut missing);
        }
        assert!(missing.is_empty(), "no //! doc at the top of {missing:?}");
    }
}
