//! Debian kernels, unpacked, never installed.
//!
//! [`fetch`] (the `cloud` flavour: virtio and NVMe, small, for the lab and the
//! stock environments) and [`fetch_generic`] (every driver, for hardware
//! ramdisks) resolve the meta package (`linux-image-cloud-amd64`,
//! `linux-image-amd64`) to the versioned image package it depends on
//! (`linux-image-6.1.0-N-cloud-amd64`), download that `.deb` into the cache,
//! unpack it with `dpkg-deb -x` into the output directory and run
//! `depmod -b` on the unpacked tree, because the package ships no
//! `modules.dep`. The host's `/boot` and `/lib/modules` are never touched.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::stamp::{self, Stamp};
use crate::{Freshness, apt, cmd};

/// Bump when the way a kernel is unpacked changes.
const RECIPE_VERSION: u32 = 1;

/// Which Debian kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// `linux-image-cloud-amd64`: virtio, NVMe, ext4 built in; no AHCI, no
    /// physical NICs.
    Cloud,
    /// `linux-image-amd64`: every driver Debian builds.
    Generic,
}

impl Flavour {
    /// The meta package that always depends on the current image package.
    pub fn meta_package(self) -> &'static str {
        match self {
            Flavour::Cloud => "linux-image-cloud-amd64",
            Flavour::Generic => "linux-image-amd64",
        }
    }

    /// The name of this flavour's step and output directory.
    pub fn step_name(self) -> &'static str {
        match self {
            Flavour::Cloud => "kernel-cloud",
            Flavour::Generic => "kernel-generic",
        }
    }
}

/// An unpacked kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// The bzImage.
    pub vmlinuz: PathBuf,
    /// The `lib/modules/<version>` directory, with a `modules.dep`.
    pub modules: PathBuf,
    /// The kernel release (`uname -r`), e.g. `6.1.0-56-cloud-amd64`.
    pub version: String,
    /// The Debian package it came from, `name=version`.
    pub package: String,
    /// The sha256 of that package's `.deb`.
    pub deb_sha256: String,
}

impl Kernel {
    /// The kernel's build configuration (`/boot/config-<version>` of the package).
    pub fn config(&self) -> PathBuf {
        self.vmlinuz.with_file_name(format!("config-{}", self.version))
    }

    /// A one-line identity for other steps' stamps.
    pub fn stamp_value(&self) -> String {
        format!("{} sha256:{}", self.package, self.deb_sha256)
    }
}

/// The cloud kernel, unpacked into `out` (with `.debs` cached in `cache`).
pub fn fetch(cache: &Path, out: &Path) -> Result<Kernel> {
    fetch_flavour(Flavour::Cloud, cache, out).map(|(k, _)| k)
}

/// The generic kernel, unpacked into `out` (with `.debs` cached in `cache`).
pub fn fetch_generic(cache: &Path, out: &Path) -> Result<Kernel> {
    fetch_flavour(Flavour::Generic, cache, out).map(|(k, _)| k)
}

/// Fetches and unpacks `flavour` into `out` unless the stamp `out.stamp`
/// says the same package is already there.
pub fn fetch_flavour(flavour: Flavour, cache: &Path, out: &Path) -> Result<(Kernel, Freshness)> {
    let meta = apt::candidate(flavour.meta_package())?;
    let image_name = meta
        .dependencies()
        .into_iter()
        .find(|d| d.starts_with("linux-image-"))
        .ok_or_else(|| Error::Package { package: meta.name.clone(), reason: format!("no linux-image-* in Depends: {:?}", meta.depends) })?;
    let image = apt::candidate(&image_name)?;
    let version = image_name.strip_prefix("linux-image-").unwrap_or(&image_name).to_owned();
    let kernel = Kernel {
        vmlinuz: out.join("boot").join(format!("vmlinuz-{version}")),
        modules: out.join("lib/modules").join(&version),
        version,
        package: format!("{}={}", image.name, image.version),
        deb_sha256: image.sha256.clone(),
    };

    let stamp_path = stamp::path_for(out);
    let stamp = Stamp::new(flavour.step_name(), RECIPE_VERSION).input("deb", kernel.stamp_value());
    if stamp.is_current(&stamp_path, &[&kernel.vmlinuz, &kernel.modules.join("modules.dep")]) {
        return Ok((kernel, Freshness::UpToDate));
    }
    Stamp::invalidate(&stamp_path)?;

    let deb = apt::download(cache, &image)?;
    if out.exists() {
        fs::remove_dir_all(out).map_err(Error::io("remove", out))?;
    }
    fs::create_dir_all(out).map_err(Error::io("create", out))?;
    tracing::info!(deb = %deb.display(), out = %out.display(), "unpacking");
    cmd::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(out))?;
    if !kernel.vmlinuz.is_file() || !kernel.modules.is_dir() {
        return Err(Error::Package {
            package: kernel.package.clone(),
            reason: format!("the .deb has no {} or no {}", kernel.vmlinuz.display(), kernel.modules.display()),
        });
    }
    cmd::run(Command::new("depmod").arg("-b").arg(out).arg(&kernel.version))?;
    stamp.write(&stamp_path)?;
    Ok((kernel, Freshness::Built))
}

/// The value of `CONFIG_<name>` in the kernel's config: `Some('y')` built
/// in, `Some('m')` a module, `None` absent.
pub fn config_option(kernel: &Kernel, name: &str) -> Result<Option<char>> {
    let path = kernel.config();
    let text = fs::read_to_string(&path).map_err(Error::io("read", &path))?;
    let key = format!("CONFIG_{name}=");
    Ok(text.lines().find_map(|l| l.strip_prefix(&key)).and_then(|v| v.chars().next()))
}
