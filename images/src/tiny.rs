//! The `tiny` stock environment: the smallest system ferrum can deploy and
//! check, for tests and demos.
//!
//! A raw disk (see [`crate::disk`]) whose ext4 partition holds busybox,
//! dropbear with the shared libraries it needs, Debian's cloud kernel and a
//! small initramfs (the cloud kernel has `virtio_blk` as a module: the
//! initramfs loads the virtio drivers, mounts `root=UUID=...` and
//! switch_roots). busybox init then runs `recipes/tiny/rcS`: DHCP on every
//! ethernet interface, a dropbear host key made on the machine's first
//! boot, dropbear on port 22 with password logins off (root logs in with a
//! key from `/root/.ssh/authorized_keys`, which the agent installs), and the
//! console line `ferrum-tiny: sshd up`. A root shell runs on the console
//! (ttyS0).

use std::path::{Path, PathBuf};

use crate::environment::{self, Environment};
use crate::error::{Error, Result};
use crate::initramfs::{Builder, shared_libraries};
use crate::kernel::{self, Kernel};
use crate::kmod::Missing;
use crate::ramdisk::{self, BUSYBOX, LAB_MODULES};
use crate::stamp::{self, Stamp};
use crate::{Freshness, ZSTD_LEVEL_INITRD, disk};

/// Bump when the recipe changes in a way its inputs do not show.
const RECIPE_VERSION: u32 = 2;

/// The environment's name.
pub const NAME: &str = "tiny";
/// The catalog description.
pub const DESCRIPTION: &str = "busybox and dropbear on Debian's cloud kernel (virtio, NVMe): \
     DHCP on every ethernet interface, root SSH by key only, root shell on ttyS0";

/// The initramfs's PID 1.
pub const INITRD_INIT: &str = include_str!("../recipes/tiny/initrd-init");
/// busybox init's boot script.
pub const RCS: &str = include_str!("../recipes/tiny/rcS");
/// busybox init's table.
pub const INITTAB: &str = include_str!("../recipes/tiny/inittab");

/// dropbear (package dropbear-bin) and its key generator.
pub const DROPBEAR: &str = "/usr/sbin/dropbear";
pub const DROPBEARKEY: &str = "/usr/bin/dropbearkey";

/// Smallest raw image.
const MIN_SIZE: u64 = 48 << 20;

/// Builds `tiny` from `kernel` into the environments directory `dir`.
pub fn build(kernel: &Kernel, dir: &Path) -> Result<(Environment, Freshness)> {
    build_variant(kernel, dir, &Variant { name: NAME, description: DESCRIPTION, recipe_version: RECIPE_VERSION }, Ok, || Ok(Builder::new()))
}

/// A recipe built on `tiny`: its name and catalog description, and the
/// version to bump when what it adds changes in a way its inputs do not show.
#[derive(Debug, Clone, Copy)]
pub struct Variant {
    pub name: &'static str,
    pub description: &'static str,
    pub recipe_version: u32,
}

/// Builds `tiny`'s system with the files `extra` gives laid over its root
/// file system, as environment `variant.name`; `stamp_extra` adds their
/// inputs to the stamp, and `extra` runs only when the stamp is not current.
pub fn build_variant(
    kernel: &Kernel,
    dir: &Path,
    variant: &Variant,
    stamp_extra: impl FnOnce(Stamp) -> Result<Stamp>,
    extra: impl FnOnce() -> Result<Builder>,
) -> Result<(Environment, Freshness)> {
    let name = variant.name;
    let env = Environment::at(dir, name);
    let stamp_path = stamp::path_for(&dir.join(name));
    let mut stamp = Stamp::new(name, variant.recipe_version)
        .input("tiny-recipe", RECIPE_VERSION)
        .input("kernel", kernel.stamp_value())
        .input("zstd-levels", format_args!("{ZSTD_LEVEL_INITRD} {}", environment::ZSTD_LEVEL_IMAGE))
        .input_file("busybox", Path::new(BUSYBOX))?
        .input_file("mbr.bin", Path::new(disk::MBR_BIN))?
        .input_file("extlinux", &which("extlinux")?)?
        .input_text("initrd-init", INITRD_INIT)
        .input_text("rcS", RCS)
        .input_text("inittab", INITTAB)
        .input_text("udhcpc.script", ramdisk::UDHCPC_SCRIPT)
        .input_text("net.sh", ramdisk::NET_SH);
    for program in [DROPBEAR, DROPBEARKEY] {
        stamp = stamp.input_file(program, Path::new(program))?;
        for lib in shared_libraries(Path::new(program))? {
            stamp = stamp.input_file(&lib.to_string_lossy(), &lib)?;
        }
    }
    let stamp = stamp_extra(stamp)?;
    if stamp.is_current(&stamp_path, &env.files()) {
        return Ok((env, Freshness::UpToDate));
    }
    Stamp::invalidate(&stamp_path)?;
    // The initramfs loads the virtio modules but mounts the root as ext4
    // without loading anything.
    if kernel::config_option(kernel, "EXT4_FS")? != Some('y') {
        return Err(Error::Host {
            what: kernel.package.clone(),
            reason: "ext4 is not built in; tiny's initramfs would need to load it".into(),
        });
    }

    let mut initrd = Builder::new();
    ramdisk::base_tree(&mut initrd)?;
    initrd.dir("newroot", 0o755)?;
    initrd.bytes("init", INITRD_INIT, 0o755)?;
    let resolution = initrd.modules(kernel, LAB_MODULES, Missing::Fail)?;
    ramdisk::log_modules(name, &resolution);

    let rootfs = rootfs(name)?;
    let extra = extra()?;
    std::fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
    let work = tempfile::Builder::new().prefix(".tiny-build").tempdir_in(dir).map_err(Error::io("create a directory in", dir))?;
    let initrd_path = work.path().join("initrd.img");
    let initrd_size = initrd.write_zstd(&initrd_path, ZSTD_LEVEL_INITRD)?;
    let kernel_size = std::fs::metadata(&kernel.vmlinuz).map_err(Error::io("stat", &kernel.vmlinuz))?.len();
    let content = rootfs.content_size()? + extra.content_size()? + initrd_size + kernel_size;
    let size = environment::raw_size(content, MIN_SIZE);

    let raw = work.path().join(format!("{name}.raw"));
    disk::build_bootable(&raw, size, name, |root| {
        rootfs.materialize(root.path)?;
        extra.materialize(root.path)?;
        let mut boot = Builder::new();
        boot.file("boot/vmlinuz", &kernel.vmlinuz, 0o644)?;
        boot.file("boot/initrd.img", &initrd_path, 0o644)?;
        boot.bytes("boot/extlinux/extlinux.conf", extlinux_conf(name, root.uuid), 0o644)?;
        boot.materialize(root.path)
    })?;
    let env = environment::publish(&raw, dir, name, variant.description)?;
    stamp.write(&stamp_path)?;
    Ok((env, Freshness::Built))
}

/// The root file system, less `/boot`; `name` is the host name until the
/// agent writes the node's own (and DHCP gives it).
fn rootfs(name: &str) -> Result<Builder> {
    let mut t = Builder::new();
    t.busybox(Path::new(BUSYBOX))?;
    t.program_with_libraries("usr/sbin/dropbear", Path::new(DROPBEAR))?;
    t.program_with_libraries("usr/bin/dropbearkey", Path::new(DROPBEARKEY))?;
    for dir in ["dev", "proc", "sys", "run", "etc/dropbear", "var/log", "mnt"] {
        t.dir(dir, 0o755)?;
    }
    t.dir("tmp", 0o1777)?;
    t.dir("root", 0o700)?;
    t.dir("root/.ssh", 0o700)?;
    t.bytes("etc/inittab", INITTAB, 0o644)?;
    t.bytes("etc/init.d/rcS", RCS, 0o755)?;
    t.bytes("etc/ferrum/udhcpc.script", ramdisk::UDHCPC_SCRIPT, 0o755)?;
    t.bytes("etc/ferrum/net.sh", ramdisk::NET_SH, 0o644)?;
    t.bytes("etc/hostname", format!("{name}\n"), 0o644)?;
    t.bytes("etc/hosts", "127.0.0.1 localhost\n::1 localhost\n", 0o644)?;
    // `x` sends dropbear to /etc/shadow, where `*` means "no password
    // matches" (unlike `!`, which dropbear takes for a locked account and
    // refuses keys too).
    t.bytes("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644)?;
    t.bytes("etc/shadow", "root:*:19000:0:99999:7:::\n", 0o600)?;
    t.bytes("etc/group", "root:x:0:\n", 0o644)?;
    t.bytes("etc/shells", "/bin/sh\n/bin/ash\n", 0o644)?;
    t.bytes("etc/profile", "export PATH=/usr/sbin:/usr/bin:/sbin:/bin\nexport PS1='\\h:\\w\\$ '\n", 0o644)?;
    Ok(t)
}

fn extlinux_conf(name: &str, uuid: &str) -> String {
    format!(
        "# {name}: Debian's cloud kernel and an initramfs with the virtio drivers.\n\
         SERIAL 0 115200\n\
         DEFAULT {name}\n\
         PROMPT 0\n\
         TIMEOUT 0\n\
         LABEL {name}\n\
         \x20 KERNEL /boot/vmlinuz\n\
         \x20 INITRD /boot/initrd.img\n\
         \x20 APPEND root=UUID={uuid} console=tty0 console=ttyS0,115200n8 panic=10\n"
    )
}

/// The path of a program in `PATH`.
fn which(program: &str) -> Result<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Host { what: program.into(), reason: "not found in PATH".into() })
}
