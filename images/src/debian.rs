//! The `debian12-min` stock environment: Debian 12 minbase with systemd,
//! OpenSSH and the cloud kernel, booted by extlinux.
//!
//! `debootstrap --variant=minbase` builds the tree in a staging directory
//! (its `.debs` cached in `<cache>/debootstrap`); then, in a chroot with
//! `/proc` and `/sys` mounted, apt takes the security updates and installs
//! `linux-image-cloud-amd64` (its initramfs finds the root by UUID). The
//! system is configured for a testbed node: systemd-networkd runs DHCP on
//! every wired interface (`recipes/debian12-min/80-ferrum-dhcp.network`),
//! systemd-resolved serves DNS, sshd lets root in by key only and makes
//! host keys of its own at first boot (the image ships none), the machine id
//! is made at first boot, consoles are tty0 and ttyS0. The tree is then
//! copied into a raw disk through a loop mount (see [`crate::disk`]).
//!
//! It needs deb.debian.org and takes minutes: the default target set leaves
//! it out. It runs commands in a chroot; it never installs anything on the
//! host.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::disk::Mount;
use crate::environment::{self, Environment};
use crate::error::{Error, Result};
use crate::stamp::{self, Stamp};
use crate::{Freshness, apt, cmd, disk};

/// Bump when the recipe changes in a way its inputs do not show.
const RECIPE_VERSION: u32 = 1;

/// The environment's name.
pub const NAME: &str = "debian12-min";
/// The catalog description.
pub const DESCRIPTION: &str = "Debian 12 (bookworm) minbase, systemd, OpenSSH, cloud kernel (virtio, NVMe): \
     DHCP on every wired interface (systemd-networkd), root SSH by key only, consoles tty0 and ttyS0";

/// The Debian release.
pub const SUITE: &str = "bookworm";
/// The mirror.
pub const MIRROR: &str = "http://deb.debian.org/debian";
/// Packages debootstrap adds to minbase (the kernel comes later, from the
/// security archive).
pub const INCLUDE: &[&str] =
    &["systemd-sysv", "systemd-resolved", "udev", "dbus", "openssh-server", "iproute2", "netbase", "e2fsprogs", "ca-certificates"];
/// The kernel meta package.
pub const KERNEL: &str = "linux-image-cloud-amd64";

const SOURCES_LIST: &str = "deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
";
const NETWORK: &str = include_str!("../recipes/debian12-min/80-ferrum-dhcp.network");
const SSHD_CONF: &str = include_str!("../recipes/debian12-min/ferrum-sshd.conf");
const HOST_KEYS: &str = include_str!("../recipes/debian12-min/ferrum-host-keys.conf");

/// Smallest raw image.
const MIN_SIZE: u64 = 512 << 20;

/// Builds `debian12-min` into the environments directory `dir`.
pub fn build(cache: &Path, dir: &Path) -> Result<(Environment, Freshness)> {
    let env = Environment::at(dir, NAME);
    let stamp_path = stamp::path_for(&dir.join(NAME));
    let mut stamp = Stamp::new(NAME, RECIPE_VERSION)
        .input("suite", SUITE)
        .input("zstd-level", environment::ZSTD_LEVEL_IMAGE)
        .input("include", INCLUDE.join(","))
        .input_text("network", NETWORK)
        .input_text("sshd", SSHD_CONF)
        .input_text("host-keys", HOST_KEYS)
        .input_file("mbr.bin", Path::new(disk::MBR_BIN))?;
    // Rebuild when the host's package index sees new versions of what
    // matters most (kernel, sshd, systemd); `apt-get update` to refresh.
    for package in [KERNEL, "openssh-server", "systemd"] {
        let p = apt::candidate(package)?;
        stamp = stamp.input(package, format_args!("{} {}", p.version, p.depends));
    }
    if stamp.is_current(&stamp_path, &env.files()) {
        return Ok((env, Freshness::UpToDate));
    }
    Stamp::invalidate(&stamp_path)?;

    fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
    let work = WorkDir::new(dir)?;
    let stage = work.path().join("rootfs");
    let debs = std::path::absolute(cache.join("debootstrap")).map_err(Error::io("resolve", cache))?;
    fs::create_dir_all(&debs).map_err(Error::io("create", &debs))?;
    tracing::info!(stage = %stage.display(), "debootstrap (minutes)");
    cmd::run(
        Command::new("debootstrap")
            .arg("--variant=minbase")
            .arg(format!("--include={}", INCLUDE.join(",")))
            .arg(format!("--cache-dir={}", debs.display()))
            .arg(SUITE)
            .arg(&stage)
            .arg(MIRROR),
    )?;
    configure(&stage)?;
    let kernel_version = installed_kernel(&stage)?;

    let content = du(&stage)?;
    let size = environment::raw_size(content, MIN_SIZE);
    let raw = work.path().join("debian12-min.raw");
    tracing::info!(content, size, "copying the tree into the image");
    disk::build_bootable(&raw, size, NAME, |root| {
        cmd::run(Command::new("cp").arg("-a").arg(stage.join(".")).arg(root.path))?;
        write(root.path, "etc/fstab", &format!("UUID={} / ext4 errors=remount-ro 0 1\n", root.uuid))?;
        write(root.path, "boot/extlinux/extlinux.conf", &extlinux_conf(root.uuid, &kernel_version))
    })?;
    let env = environment::publish(&raw, dir, NAME, DESCRIPTION)?;
    stamp.write(&stamp_path)?;
    work.remove()?;
    Ok((env, Freshness::Built))
}

/// Security updates, the kernel, and the node configuration, in a chroot.
fn configure(stage: &Path) -> Result<()> {
    let chroot = Chroot::enter(stage)?;
    write(stage, "etc/apt/sources.list", SOURCES_LIST)?;
    // No service starts inside the chroot.
    write(stage, "usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n")?;
    chmod(&stage.join("usr/sbin/policy-rc.d"), 0o755)?;
    // apt needs a resolver now; systemd-resolved's stub link comes back at the end.
    let resolv = stage.join("etc/resolv.conf");
    let _ = fs::remove_file(&resolv);
    fs::copy("/etc/resolv.conf", &resolv).map_err(Error::io("copy to", &resolv))?;

    chroot.run(&["apt-get", "-q", "update"])?;
    chroot.run(&["apt-get", "-q", "-y", "dist-upgrade"])?;
    chroot.run(&["apt-get", "-q", "-y", "install", "--no-install-recommends", KERNEL])?;
    chroot.run(&["systemctl", "enable", "systemd-networkd", "systemd-resolved"])?;
    chroot.run(&["apt-get", "clean"])?;

    write(stage, "etc/hostname", "debian12-min\n")?;
    write(stage, "etc/hosts", "127.0.0.1 localhost\n127.0.1.1 debian12-min\n::1 localhost ip6-localhost ip6-loopback\n")?;
    write(stage, "etc/systemd/network/80-ferrum-dhcp.network", NETWORK)?;
    write(stage, "etc/ssh/sshd_config.d/ferrum.conf", SSHD_CONF)?;
    write(stage, "etc/systemd/system/ssh.service.d/ferrum-host-keys.conf", HOST_KEYS)?;
    let ssh_dir = stage.join("root/.ssh");
    fs::create_dir_all(&ssh_dir).map_err(Error::io("create", &ssh_dir))?;
    chmod(&ssh_dir, 0o700)?;
    for entry in fs::read_dir(stage.join("etc/ssh")).map_err(Error::io("list", stage.join("etc/ssh")))? {
        let path = entry.map_err(Error::io("list", stage.join("etc/ssh")))?.path();
        if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("ssh_host_")) {
            fs::remove_file(&path).map_err(Error::io("remove", &path))?;
        }
    }
    // Empty: systemd makes a machine id on first boot.
    write(stage, "etc/machine-id", "")?;
    let _ = fs::remove_file(stage.join("var/lib/dbus/machine-id"));
    for dir in ["var/lib/apt/lists", "var/log/apt"] {
        clear_dir(&stage.join(dir))?;
    }
    fs::remove_file(stage.join("usr/sbin/policy-rc.d")).map_err(Error::io("remove", stage.join("usr/sbin/policy-rc.d")))?;
    let _ = fs::remove_file(&resolv);
    std::os::unix::fs::symlink("../run/systemd/resolve/stub-resolv.conf", &resolv).map_err(Error::io("create symlink", &resolv))?;
    chroot.leave()
}

/// The kernel release installed in the tree (the newest `boot/vmlinuz-*`).
fn installed_kernel(stage: &Path) -> Result<String> {
    let boot = stage.join("boot");
    let mut versions: Vec<String> = fs::read_dir(&boot)
        .map_err(Error::io("list", &boot))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("vmlinuz-").map(str::to_owned))
        .collect();
    versions.sort();
    versions
        .pop()
        .ok_or_else(|| Error::Host { what: boot.display().to_string(), reason: "no vmlinuz-* after installing the kernel".into() })
}

fn extlinux_conf(uuid: &str, kernel: &str) -> String {
    format!(
        "# debian12-min: Debian's cloud kernel and its initramfs (initramfs-tools).\n\
         SERIAL 0 115200\n\
         DEFAULT debian\n\
         PROMPT 0\n\
         TIMEOUT 0\n\
         LABEL debian\n\
         \x20 KERNEL /boot/vmlinuz-{kernel}\n\
         \x20 INITRD /boot/initrd.img-{kernel}\n\
         \x20 APPEND root=UUID={uuid} ro console=tty0 console=ttyS0,115200n8\n"
    )
}

/// `/proc` and `/sys` mounted in a tree, unmounted in reverse order on
/// leave or drop.
struct Chroot {
    root: PathBuf,
    mounts: Vec<Mount>,
}

impl Chroot {
    fn enter(root: &Path) -> Result<Chroot> {
        let mut chroot = Chroot { root: root.to_owned(), mounts: Vec::new() };
        chroot.mounts.push(Mount::new(Path::new("proc"), &root.join("proc"), Some("proc"), None)?);
        chroot.mounts.push(Mount::new(Path::new("sysfs"), &root.join("sys"), Some("sysfs"), None)?);
        Ok(chroot)
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        tracing::info!(command = %args.join(" "), "chroot");
        cmd::run(
            Command::new("chroot")
                .arg(&self.root)
                .args(args)
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .env("LC_ALL", "C.UTF-8"),
        )
    }

    fn leave(mut self) -> Result<()> {
        while let Some(m) = self.mounts.pop() {
            m.unmount()?;
        }
        Ok(())
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        while let Some(m) = self.mounts.pop() {
            drop(m);
        }
    }
}

/// A scratch directory next to the outputs, removed only when nothing is
/// mounted below it (a recursive removal must never reach a mounted /proc
/// or /sys).
struct WorkDir {
    dir: Option<tempfile::TempDir>,
}

impl WorkDir {
    fn new(parent: &Path) -> Result<WorkDir> {
        let dir = tempfile::Builder::new()
            .prefix(".debian12-min-build")
            .tempdir_in(parent)
            .map_err(Error::io("create a directory in", parent))?;
        Ok(WorkDir { dir: Some(dir) })
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().map(tempfile::TempDir::path).unwrap_or(Path::new(""))
    }

    fn remove(mut self) -> Result<()> {
        self.cleanup()
    }

    fn cleanup(&mut self) -> Result<()> {
        let Some(dir) = self.dir.take() else { return Ok(()) };
        let mounts = fs::read_to_string("/proc/self/mounts").map_err(Error::io("read", "/proc/self/mounts"))?;
        let prefix = dir.path().to_string_lossy().into_owned();
        if let Some(m) = mounts.lines().filter_map(|l| l.split_whitespace().nth(1)).find(|m| m.starts_with(&prefix)) {
            let kept = dir.keep();
            return Err(Error::Host { what: kept.display().to_string(), reason: format!("left in place: {m} is still mounted below it") });
        }
        let path = dir.path().to_owned();
        dir.close().map_err(Error::io("remove", path))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup() {
            tracing::warn!(error = %e, "scratch directory");
        }
    }
}

fn write(root: &Path, rel: &str, text: &str) -> Result<()> {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(Error::io("create", parent))?;
    }
    fs::write(&path, text).map_err(Error::io("write", &path))
}

fn chmod(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(Error::io("chmod", path))
}

/// Removes the files (not the subdirectories) of `dir`.
fn clear_dir(dir: &Path) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else { return Ok(()) };
    for entry in entries {
        let path = entry.map_err(Error::io("list", dir))?.path();
        if path.is_file() {
            fs::remove_file(&path).map_err(Error::io("remove", &path))?;
        }
    }
    Ok(())
}

/// Bytes used by a tree (`du -s -B1`, which counts what a copy will use).
fn du(dir: &Path) -> Result<u64> {
    let out = cmd::run(Command::new("du").args(["-s", "-B1", "-x"]).arg(dir))?;
    out.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::Host { what: "du".into(), reason: format!("unexpected answer {out:?}") })
}
