//! Raw disk images: an MBR with one bootable ext4 partition booted by
//! extlinux, filled through a loop mount, then compressed to `raw.zst`.
//!
//! The layout follows LAB-NOTES §5: partition 1 starts at sector 2048, the
//! file system is ext4 without `64bit` (extlinux 6.04 cannot read it), files
//! are copied in through a mounted loop device (files placed with
//! `mkfs.ext4 -d` came out sparse and extlinux could not load them),
//! syslinux's `mbr.bin` is written to sector 0, and the partition's boot
//! sector gets its hidden-sectors field set to the partition's start (the
//! loop device is attached with an offset, so extlinux cannot know it).
//!
//! Loop devices and mounts are held by guards ([`LoopDevice`], [`Mount`])
//! that release them when dropped, also on errors and panics.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd;
use crate::error::{Error, Result};

/// Sector size of the images (and of every MBR offset here).
pub const SECTOR: u64 = 512;
/// The first partition's first sector.
pub const PARTITION_START: u64 = 2048;
/// syslinux's MBR boot code (package syslinux-common).
pub const MBR_BIN: &str = "/usr/lib/syslinux/mbr/mbr.bin";

/// A loop device attached to (a part of) a file; detached on drop.
#[derive(Debug)]
pub struct LoopDevice {
    device: Option<PathBuf>,
}

impl LoopDevice {
    /// `losetup --find --show` over `size` bytes of `file` from `offset`.
    pub fn attach(file: &Path, offset: u64, size: u64) -> Result<LoopDevice> {
        let out = cmd::run(
            Command::new("losetup").args(["--find", "--show", "--offset", &offset.to_string(), "--sizelimit", &size.to_string()]).arg(file),
        )?;
        Ok(LoopDevice { device: Some(PathBuf::from(out.trim())) })
    }

    /// The device node (`/dev/loopN`).
    pub fn path(&self) -> &Path {
        self.device.as_deref().unwrap_or(Path::new(""))
    }

    /// Detaches now, reporting a failure (drop only logs it).
    pub fn detach(mut self) -> Result<()> {
        match self.device.take() {
            Some(dev) => cmd::run(Command::new("losetup").arg("--detach").arg(dev)).map(drop),
            None => Ok(()),
        }
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        if let Some(dev) = self.device.take()
            && let Err(e) = cmd::run(Command::new("losetup").arg("--detach").arg(&dev))
        {
            tracing::warn!(device = %dev.display(), error = %e, "loop device left attached");
        }
    }
}

/// A mounted file system; unmounted on drop.
#[derive(Debug)]
pub struct Mount {
    target: Option<PathBuf>,
}

impl Mount {
    /// `mount [-t fstype] [-o options] source target`.
    pub fn new(source: &Path, target: &Path, fstype: Option<&str>, options: Option<&str>) -> Result<Mount> {
        let mut mount = Command::new("mount");
        if let Some(t) = fstype {
            mount.args(["-t", t]);
        }
        if let Some(o) = options {
            mount.args(["-o", o]);
        }
        cmd::run(mount.arg(source).arg(target))?;
        Ok(Mount { target: Some(target.to_owned()) })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.target.as_deref().unwrap_or(Path::new(""))
    }

    /// Unmounts now, reporting a failure (drop only logs it).
    pub fn unmount(mut self) -> Result<()> {
        match self.target.take() {
            Some(t) => cmd::run(Command::new("umount").arg(t)).map(drop),
            None => Ok(()),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(t) = self.target.take()
            && let Err(e) = cmd::run(Command::new("umount").arg(&t))
        {
            tracing::warn!(target = %t.display(), error = %e, "left mounted");
        }
    }
}

/// A partition of a raw image, mounted on a temporary directory through a
/// loop device. Dropping it unmounts, detaches and removes the (empty)
/// directory, in that order; the directory is removed with `rmdir`, never
/// recursively, so a mount that would not go away is never emptied.
#[derive(Debug)]
pub struct MountedPartition {
    mount: Option<Mount>,
    device: Option<LoopDevice>,
    dir: PathBuf,
}

impl MountedPartition {
    /// Mounts partition `number` (1–4) of the MBR image `raw`.
    pub fn open(raw: &Path, number: usize) -> Result<MountedPartition> {
        let (offset, size) = partition_span(raw, number)?;
        let device = LoopDevice::attach(raw, offset, size)?;
        MountedPartition::mount(device)
    }

    fn mount(device: LoopDevice) -> Result<MountedPartition> {
        let dir = tempfile::Builder::new().prefix("ferrum-images-mnt").tempdir().map_err(Error::io("create", std::env::temp_dir()))?.keep();
        let mut partition = MountedPartition { mount: None, device: Some(device), dir };
        partition.mount = Some(Mount::new(partition.device(), &partition.dir, None, None)?);
        Ok(partition)
    }

    /// The root of the mounted file system.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The loop device of the partition.
    pub fn device(&self) -> &Path {
        self.device.as_ref().map(LoopDevice::path).unwrap_or(Path::new(""))
    }

    /// Unmounts and detaches, reporting failures (drop only logs them).
    pub fn close(mut self) -> Result<()> {
        if let Some(m) = self.mount.take() {
            m.unmount()?;
        }
        if let Some(d) = self.device.take() {
            d.detach()?;
        }
        Ok(())
    }
}

impl Drop for MountedPartition {
    fn drop(&mut self) {
        drop(self.mount.take());
        drop(self.device.take());
        if let Err(e) = fs::remove_dir(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "mount point left in place");
        }
    }
}

/// Byte offset and size of MBR partition `number` (1–4) of `raw`.
pub fn partition_span(raw: &Path, number: usize) -> Result<(u64, u64)> {
    let mut mbr = [0u8; 512];
    File::open(raw).and_then(|mut f| f.read_exact(&mut mbr)).map_err(Error::io("read the MBR of", raw))?;
    let bad = |reason: String| Error::Host { what: raw.display().to_string(), reason };
    if mbr[510..512] != [0x55, 0xaa] {
        return Err(bad("has no MBR signature".into()));
    }
    if !(1..=4).contains(&number) {
        return Err(bad(format!("an MBR has no partition {number}")));
    }
    let e = 0x1be + 16 * (number - 1);
    let le = |o: usize| u64::from(u32::from_le_bytes([mbr[o], mbr[o + 1], mbr[o + 2], mbr[o + 3]]));
    let (start, sectors) = (le(e + 8), le(e + 12));
    if sectors == 0 {
        return Err(bad(format!("partition {number} is empty")));
    }
    Ok((start * SECTOR, sectors * SECTOR))
}

/// What [`build_bootable`] gives the fill function.
#[derive(Debug)]
pub struct Root<'a> {
    /// The mounted root file system.
    pub path: &'a Path,
    /// Its file system UUID, for `root=UUID=...` and `/etc/fstab`.
    pub uuid: &'a str,
}

/// Creates `raw` (`size` bytes, sparse): an MBR with one bootable Linux
/// partition from sector 2048 to the end, ext4 labelled `label`, filled by
/// `fill`, with extlinux installed in `/boot/extlinux` (so `fill` must write
/// `/boot/extlinux/extlinux.conf`) and syslinux's MBR code.
pub fn build_bootable(raw: &Path, size: u64, label: &str, fill: impl FnOnce(Root<'_>) -> Result<()>) -> Result<()> {
    let file = File::create(raw).map_err(Error::io("create", raw))?;
    file.set_len(size).map_err(Error::io("size", raw))?;
    drop(file);
    cmd::run_with_stdin(
        Command::new("sfdisk").args(["--quiet", "--no-reread", "--no-tell-kernel"]).arg(raw),
        format!("label: dos\nstart={PARTITION_START}, type=83, bootable\n").as_bytes(),
    )?;
    let (offset, part_size) = partition_span(raw, 1)?;
    let device = LoopDevice::attach(raw, offset, part_size)?;
    cmd::run(Command::new("mkfs.ext4").args(["-q", "-F", "-O", "^64bit", "-L", label]).arg(device.path()))?;
    let uuid = cmd::run(Command::new("blkid").args(["-p", "-s", "UUID", "-o", "value"]).arg(device.path()))?.trim().to_owned();
    let root = MountedPartition::mount(device)?;
    fill(Root { path: root.path(), uuid: &uuid })?;
    let extlinux_dir = root.path().join("boot/extlinux");
    if !extlinux_dir.join("extlinux.conf").is_file() {
        return Err(Error::Host { what: raw.display().to_string(), reason: "the recipe wrote no /boot/extlinux/extlinux.conf".into() });
    }
    cmd::run(Command::new("extlinux").arg("--install").arg(&extlinux_dir))?;
    root.close()?;

    let mut disk = OpenOptions::new().write(true).open(raw).map_err(Error::io("open", raw))?;
    let mbr = fs::read(MBR_BIN).map_err(Error::io("read", MBR_BIN))?;
    if mbr.len() > 440 {
        return Err(Error::Host { what: MBR_BIN.into(), reason: format!("is {} bytes, more than the 440 of MBR boot code", mbr.len()) });
    }
    disk.write_all(&mbr).map_err(Error::io("write the MBR of", raw))?;
    // The partition's boot sector says where the partition starts
    // ("hidden sectors", offset 0x1c); ldlinux finds its files from there.
    let start = u32::try_from(offset / SECTOR)
        .map_err(|_| Error::Host { what: raw.display().to_string(), reason: "partition beyond 2 TiB".into() })?;
    disk.seek(SeekFrom::Start(offset + 0x1c))
        .and_then(|_| disk.write_all(&start.to_le_bytes()))
        .map_err(Error::io("write the boot sector of", raw))?;
    disk.sync_all().map_err(Error::io("sync", raw))
}

/// The result of [`compress`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compressed {
    /// sha256 of the `.zst` file.
    pub sha256: String,
    /// Size of the `.zst` file.
    pub compressed_size: u64,
    /// Size of the raw image.
    pub size: u64,
}

/// Compresses `raw` into `zst` at `level` with zstd's CLI (all cores, and
/// optimised even when this crate is a dev build) and hashes the result.
pub fn compress(raw: &Path, zst: &Path, level: i32) -> Result<Compressed> {
    let size = fs::metadata(raw).map_err(Error::io("stat", raw))?.len();
    let tmp = zst.with_extension("tmp");
    cmd::run(Command::new("zstd").args(["-q", "-f", "-T0", &format!("-{level}")]).arg(raw).arg("-o").arg(&tmp))?;
    fs::rename(&tmp, zst).map_err(Error::io("rename into place", zst))?;
    let compressed_size = fs::metadata(zst).map_err(Error::io("stat", zst))?.len();
    Ok(Compressed { sha256: crate::stamp::sha256_file(zst)?, compressed_size, size })
}

/// Decompresses `zst` into `raw` (zstd's CLI; a raw image stays sparse).
pub fn decompress(zst: &Path, raw: &Path) -> Result<()> {
    cmd::run(Command::new("zstd").args(["-q", "-d", "-f", "--sparse"]).arg(zst).arg("-o").arg(raw)).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_spans_come_from_the_mbr() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("d.raw");
        File::create(&raw).unwrap().set_len(8 << 20).unwrap();
        assert!(partition_span(&raw, 1).unwrap_err().to_string().contains("no MBR signature"));
        cmd::run_with_stdin(Command::new("sfdisk").arg("--quiet").arg(&raw), b"label: dos\nstart=2048, type=83, bootable\n").unwrap();
        assert_eq!(partition_span(&raw, 1).unwrap(), (2048 * 512, (8 << 20) - 2048 * 512));
        assert!(partition_span(&raw, 2).unwrap_err().to_string().contains("partition 2 is empty"));
        assert!(partition_span(&raw, 5).is_err());
    }

    #[test]
    fn compression_round_trips_and_hashes_the_compressed_file() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("d.raw");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(&raw, &data).unwrap();
        let zst = dir.path().join("d.raw.zst");
        let c = compress(&raw, &zst, 3).unwrap();
        assert_eq!(c.size, data.len() as u64);
        assert_eq!(c.compressed_size, fs::metadata(&zst).unwrap().len());
        assert_eq!(c.sha256, crate::stamp::sha256_file(&zst).unwrap());
        let back = dir.path().join("back.raw");
        decompress(&zst, &back).unwrap();
        assert_eq!(fs::read(&back).unwrap(), data);
    }
}
