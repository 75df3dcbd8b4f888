//! Wiping disks between leases, and reading their partition tables.
//!
//! Owns: finding what a disk's partition table says (MBR with its extended
//! chain, GPT primary and backup, plus the kernel's own view in sysfs), and
//! erasing what would let a later reader find the previous tenant's layout:
//! the first and last 4 MiB of the disk (MBR, GPT headers, md/ZFS labels at
//! the end), the first and last MiB of every partition (ext4/xfs/btrfs/LUKS/
//! LVM/md superblocks), btrfs's mirror superblocks and a misplaced GPT backup
//! header. With `secure`, every byte instead: discard when the device
//! provably reads back zeros after it, zero-out (kernel offload) or plain
//! overwrite otherwise. Then the kernel re-reads the (now empty) table.
//!
//! Must not: decide which disks to wipe (the controller names them), or
//! claim a secure wipe that it could not check reads back zeros.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use serde::Serialize;

use crate::image::blkdev::{self, Discard};

const MIB: u64 = 1 << 20;
/// Zeroed at each end of the whole disk.
const DISK_EDGE: u64 = 4 * MIB;
/// Zeroed at each end of every partition.
const PARTITION_EDGE: u64 = MIB;
/// btrfs keeps superblock copies at these offsets from its start.
const BTRFS_MIRRORS: [u64; 2] = [64 * MIB, 256 << 30];
const BTRFS_SUPER_LEN: u64 = 4096;
/// Chunk of one write, zero-out or discard call (and of progress reports).
const CHUNK: u64 = 64 * MIB;

/// Which partition-table format a disk carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TableKind {
    /// DOS/MBR, possibly with an extended partition.
    Mbr,
    /// GUID partition table.
    Gpt,
}

/// One partition, in bytes from the start of the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Partition {
    /// The kernel's number: 1–4 primary and 5… logical for MBR, entry index + 1 for GPT.
    pub number: u32,
    /// First byte.
    pub start: u64,
    /// Length in bytes.
    pub size: u64,
}

/// What a disk's partition table says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PartitionTable {
    /// The formats found (a GPT disk also has a protective MBR, not listed).
    pub kinds: Vec<TableKind>,
    /// The partitions, by number.
    pub partitions: Vec<Partition>,
    /// Other metadata sectors: extended boot records, a GPT backup header and
    /// its entries away from the end of the disk. `(offset, length)` in bytes.
    #[serde(skip)]
    pub metadata: Vec<(u64, u64)>,
}

impl PartitionTable {
    /// Partition `number`, if the table has it.
    pub fn get(&self, number: u32) -> Option<Partition> {
        self.partitions.iter().copied().find(|p| p.number == number)
    }
}

/// Reads the partition table of an open disk (a block device or an image
/// file): MBR (with logical partitions) and GPT (primary, or backup when the
/// primary is damaged). CRCs are not checked: a wipe errs towards erasing
/// more, and a damaged table is still the one a tenant left.
pub fn read_partition_table(disk: &File) -> io::Result<PartitionTable> {
    let size = blkdev::size(disk)?;
    let sector = blkdev::sector_size(disk)?;
    let mut table = PartitionTable::default();
    let mut seen = BTreeSet::new();
    if let Some(mbr) = read_sector(disk, 0, sector, size)? {
        read_mbr(disk, &mbr, sector, size, &mut table, &mut seen)?;
    }
    read_gpt(disk, sector, size, &mut table, &mut seen)?;
    table.partitions.sort();
    Ok(table)
}

fn read_sector(disk: &File, lba: u64, sector: u64, size: u64) -> io::Result<Option<Vec<u8>>> {
    let Some(offset) = lba.checked_mul(sector).filter(|o| o.saturating_add(sector) <= size) else {
        return Ok(None);
    };
    let mut buf = vec![0u8; usize::try_from(sector).map_err(io::Error::other)?];
    disk.read_exact_at(&mut buf, offset)?;
    Ok(Some(buf))
}

fn le32(buf: &[u8], at: usize) -> u32 {
    buf.get(at..at + 4).and_then(|b| b.try_into().ok()).map_or(0, u32::from_le_bytes)
}

fn le64(buf: &[u8], at: usize) -> u64 {
    buf.get(at..at + 8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes)
}

/// The four entries of an MBR/EBR sector: `(type, first LBA, sector count)`.
fn mbr_entries(sector: &[u8]) -> Option<[(u8, u64, u64); 4]> {
    if sector.get(510..512) != Some(&[0x55, 0xaa][..]) {
        return None;
    }
    Some(std::array::from_fn(|i| {
        let e = 446 + 16 * i;
        (sector[e + 4], u64::from(le32(sector, e + 8)), u64::from(le32(sector, e + 12)))
    }))
}

fn is_extended(kind: u8) -> bool {
    matches!(kind, 0x05 | 0x0f | 0x85)
}

fn add_partition(table: &mut PartitionTable, seen: &mut BTreeSet<u32>, number: u32, start: u64, size: u64, disk_size: u64) {
    if size == 0 || start >= disk_size || !seen.insert(number) {
        return;
    }
    table.partitions.push(Partition { number, start, size: size.min(disk_size - start) });
}

fn read_mbr(disk: &File, mbr: &[u8], sector: u64, size: u64, table: &mut PartitionTable, seen: &mut BTreeSet<u32>) -> io::Result<()> {
    let Some(entries) = mbr_entries(mbr) else { return Ok(()) };
    let used: Vec<_> = entries.iter().enumerate().filter(|(_, (kind, _, count))| *kind != 0 && *count != 0).collect();
    if used.is_empty() {
        return Ok(());
    }
    // A protective MBR only announces a GPT.
    if used.iter().all(|(_, (kind, _, _))| *kind == 0xee) {
        return Ok(());
    }
    table.kinds.push(TableKind::Mbr);
    let mut extended = None;
    for (i, (kind, first, count)) in used {
        let number = u32::try_from(i).unwrap_or(0) + 1;
        add_partition(table, seen, number, first * sector, count * sector, size);
        if is_extended(*kind) && extended.is_none() {
            extended = Some(*first);
        }
    }
    // Logical partitions: a chain of EBRs, each describing one partition
    // (relative to itself) and the next EBR (relative to the extended start).
    let Some(ext_start) = extended else { return Ok(()) };
    let mut ebr = ext_start;
    let mut visited = BTreeSet::new();
    let mut number = 5;
    while visited.insert(ebr) && visited.len() <= 256 {
        let Some(sector_bytes) = read_sector(disk, ebr, sector, size)? else { break };
        table.metadata.push((ebr * sector, sector));
        let Some(entries) = mbr_entries(&sector_bytes) else { break };
        let (kind, rel, count) = entries[0];
        if kind != 0 && count != 0 {
            add_partition(table, seen, number, (ebr + rel) * sector, count * sector, size);
            number += 1;
        }
        let (next_kind, next_rel, next_count) = entries[1];
        if !is_extended(next_kind) || next_count == 0 {
            break;
        }
        ebr = ext_start + next_rel;
    }
    Ok(())
}

fn read_gpt(disk: &File, sector: u64, size: u64, table: &mut PartitionTable, seen: &mut BTreeSet<u32>) -> io::Result<()> {
    let last_lba = (size / sector).saturating_sub(1);
    let mut headers = Vec::new();
    for lba in [1, last_lba] {
        if let Some(header) = read_sector(disk, lba, sector, size)?.filter(|h| h.starts_with(b"EFI PART")) {
            headers.push((lba, header));
        }
    }
    if headers.is_empty() {
        return Ok(());
    }
    table.kinds.push(TableKind::Gpt);
    // The primary names its backup; a disk grown after writing a GPT image
    // keeps that backup in the middle, where no one looks but it still is.
    if let Some((1, primary)) = headers.first() {
        let alternate = le64(primary, 32);
        if alternate != last_lba && alternate > 1 && alternate < last_lba {
            table.metadata.push((alternate * sector, sector));
            if let Some(backup) = read_sector(disk, alternate, sector, size)?.filter(|h| h.starts_with(b"EFI PART")) {
                let entries_len = u64::from(le32(&backup, 80)) * u64::from(le32(&backup, 84));
                table.metadata.push((le64(&backup, 72) * sector, entries_len.min(4 * MIB)));
                headers.push((alternate, backup));
            }
        }
    }
    for (_, header) in headers {
        let entries_lba = le64(&header, 72);
        let count = u64::from(le32(&header, 80));
        let entry_size = u64::from(le32(&header, 84));
        if !(128..=4096).contains(&entry_size) || count == 0 || count * entry_size > 4 * MIB {
            continue;
        }
        let Some(offset) = entries_lba.checked_mul(sector).filter(|o| o.saturating_add(count * entry_size) <= size) else {
            continue;
        };
        let mut entries = vec![0u8; usize::try_from(count * entry_size).map_err(io::Error::other)?];
        disk.read_exact_at(&mut entries, offset)?;
        for (i, entry) in entries.chunks_exact(usize::try_from(entry_size).map_err(io::Error::other)?).enumerate() {
            if entry[..16].iter().all(|b| *b == 0) {
                continue;
            }
            let (first, last) = (le64(entry, 32), le64(entry, 40));
            if last < first {
                continue;
            }
            let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
            add_partition(table, seen, number, first.saturating_mul(sector), (last - first + 1).saturating_mul(sector), size);
        }
    }
    Ok(())
}

/// The partitions the kernel knows for a disk (sysfs), `(number, start, size)` in bytes.
pub fn kernel_partitions(disk: &Path) -> Vec<Partition> {
    let Some(name) = disk.file_name().and_then(|n| n.to_str()) else { return Vec::new() };
    let Ok(dir) = std::fs::read_dir(Path::new("/sys/class/block").join(name)) else { return Vec::new() };
    let read = |path: PathBuf| std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse::<u64>().ok());
    let mut found: Vec<Partition> = dir
        .flatten()
        .filter_map(|entry| {
            let path = entry.path();
            let number = u32::try_from(read(path.join("partition"))?).ok()?;
            Some(Partition { number, start: read(path.join("start"))? * 512, size: read(path.join("size"))? * 512 })
        })
        .collect();
    found.sort();
    found
}

/// How a wipe made the data go away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WipeMethod {
    /// Zeroed the partition tables and signature areas only.
    Signatures,
    /// BLKSECDISCARD, after which the device read back zeros.
    SecureDiscard,
    /// BLKDISCARD, after which the device read back zeros.
    Discard,
    /// BLKZEROOUT over the whole device.
    ZeroOut,
    /// Wrote zeros over the whole device.
    Overwrite,
}

/// Options of a wipe.
#[derive(Debug, Clone, Copy, Default)]
pub struct WipeOptions {
    /// Make every byte unreadable, not only the signatures.
    pub secure: bool,
}

/// A progress report: at most four a second, and one at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WipeProgress {
    /// Bytes zeroed or discarded so far.
    pub done: u64,
    /// Bytes to zero or discard in all.
    pub total: u64,
}

/// What a successful wipe did.
#[derive(Debug, Clone, Serialize)]
pub struct WipeReport {
    /// The disk.
    pub device: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// The partition tables that were there.
    pub tables: Vec<TableKind>,
    /// The partitions that were there (table and kernel view together).
    pub partitions: Vec<Partition>,
    /// How the data went away.
    pub method: WipeMethod,
    /// Bytes zeroed or discarded.
    pub bytes: u64,
    /// Whether the kernel re-read the (empty) partition table.
    pub partitions_reread: bool,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Everything that can go wrong in a wipe; each names the disk.
#[derive(Debug, thiserror::Error)]
pub enum WipeError {
    /// The disk could not be opened (missing, busy because mounted, not a disk).
    #[error("cannot open {device}")]
    Open {
        /// The disk.
        device: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Its size or partition table could not be read.
    #[error("cannot read the layout of {device}")]
    Read {
        /// The disk.
        device: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Zeroing failed.
    #[error("cannot zero {device} at byte {offset}")]
    Write {
        /// The disk.
        device: PathBuf,
        /// Where the failed write started.
        offset: u64,
        #[source]
        source: io::Error,
    },
    /// fsync failed: the zeros may not be on the disk.
    #[error("cannot flush {device}")]
    Flush {
        /// The disk.
        device: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The kernel refused to re-read the partition table (a partition in use?).
    #[error("cannot make the kernel re-read the partition table of {device}")]
    RereadPartitions {
        /// The disk.
        device: PathBuf,
        #[source]
        source: Errno,
    },
}

/// Wipes one disk (block device, or regular file used as a disk), calling
/// `progress` at most four times a second and once at the end.
pub fn wipe_device(device: &Path, options: WipeOptions, progress: &mut dyn FnMut(WipeProgress)) -> Result<WipeReport, WipeError> {
    let started = Instant::now();
    let open_err = |source| WipeError::Open { device: device.to_owned(), source };
    let read_err = |source| WipeError::Read { device: device.to_owned(), source };
    let meta = std::fs::metadata(device).map_err(open_err)?;
    let is_block = meta.file_type().is_block_device();
    let mut open = OpenOptions::new();
    open.read(true).write(true);
    if is_block {
        // Exclusive: refuses a disk that is mounted or otherwise claimed.
        open.custom_flags(nix::fcntl::OFlag::O_EXCL.bits());
    } else if !meta.is_file() {
        return Err(open_err(io::Error::new(io::ErrorKind::InvalidInput, "neither a block device nor a regular file")));
    }
    let file = open.open(device).map_err(open_err)?;
    let size = blkdev::size(&file).map_err(read_err)?;
    let table = read_partition_table(&file).map_err(read_err)?;
    let mut partitions = table.partitions.clone();
    for p in kernel_partitions(device) {
        if !partitions.contains(&p) {
            partitions.push(p);
        }
    }
    partitions.sort();

    let mut reporter = Reporter::new(progress);
    let (method, bytes) = if options.secure {
        let mut zeroer = Zeroer::new(&file, device);
        let method = match is_block.then(|| discard_all(&file, device, size, &mut reporter)).transpose()? {
            Some(Some(method)) => method,
            _ => zeroer.zero(0, size, 0, size, &mut reporter)?,
        };
        (method, size)
    } else {
        let regions = signature_regions(size, &partitions, &table.metadata);
        let total = regions.iter().map(|(_, len)| len).sum();
        let mut zeroer = Zeroer::new(&file, device);
        let mut done = 0;
        for (offset, len) in regions {
            zeroer.zero(offset, len, done, total, &mut reporter)?;
            done += len;
        }
        (WipeMethod::Signatures, total)
    };
    reporter.finish(WipeProgress { done: bytes, total: bytes });

    file.sync_all().map_err(|source| WipeError::Flush { device: device.to_owned(), source })?;
    let partitions_reread =
        blkdev::reread_partitions(&file).map_err(|source| WipeError::RereadPartitions { device: device.to_owned(), source })?;
    Ok(WipeReport {
        device: device.to_owned(),
        size,
        tables: table.kinds,
        partitions,
        method,
        bytes,
        partitions_reread,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The byte ranges that hold tables and signatures, clamped, sorted and merged.
fn signature_regions(size: u64, partitions: &[Partition], metadata: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut ranges = vec![(0, DISK_EDGE), (size.saturating_sub(DISK_EDGE), DISK_EDGE)];
    ranges.extend(BTRFS_MIRRORS.iter().map(|at| (*at, BTRFS_SUPER_LEN)));
    for p in partitions {
        ranges.push((p.start, PARTITION_EDGE.min(p.size)));
        ranges.push((p.start + p.size.saturating_sub(PARTITION_EDGE), PARTITION_EDGE.min(p.size)));
        ranges.extend(BTRFS_MIRRORS.iter().filter(|at| **at + BTRFS_SUPER_LEN <= p.size).map(|at| (p.start + at, BTRFS_SUPER_LEN)));
    }
    ranges.extend_from_slice(metadata);
    let mut clamped: Vec<(u64, u64)> = ranges
        .into_iter()
        .filter(|(start, _)| *start < size)
        .map(|(start, len)| (start, start.saturating_add(len).min(size)))
        .filter(|(start, end)| end > start)
        .collect();
    clamped.sort();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (start, end) in clamped {
        match merged.last_mut() {
            Some((_, last_end)) if start <= *last_end => *last_end = (*last_end).max(end),
            _ => merged.push((start, end)),
        }
    }
    merged.into_iter().map(|(start, end)| (start, end - start)).collect()
}

/// Throttles progress reports.
struct Reporter<'a> {
    progress: &'a mut dyn FnMut(WipeProgress),
    last: Option<Instant>,
}

impl<'a> Reporter<'a> {
    const INTERVAL: Duration = Duration::from_millis(250);

    fn new(progress: &'a mut dyn FnMut(WipeProgress)) -> Self {
        Reporter { progress, last: None }
    }

    fn report(&mut self, p: WipeProgress) {
        if self.last.is_none_or(|t| t.elapsed() >= Self::INTERVAL) {
            self.last = Some(Instant::now());
            (self.progress)(p);
        }
    }

    fn finish(&mut self, p: WipeProgress) {
        (self.progress)(p);
    }
}

/// Zeroes ranges: BLKZEROOUT while the device accepts it, `pwrite` of zeros otherwise.
struct Zeroer<'a> {
    file: &'a File,
    device: &'a Path,
    offload: bool,
    zeros: Vec<u8>,
}

impl<'a> Zeroer<'a> {
    fn new(file: &'a File, device: &'a Path) -> Self {
        Zeroer { file, device, offload: true, zeros: Vec::new() }
    }

    /// Zeroes `[offset, offset + len)`, reporting `done + progress` of `total`.
    /// Returns how it did it.
    fn zero(&mut self, offset: u64, len: u64, done: u64, total: u64, reporter: &mut Reporter<'_>) -> Result<WipeMethod, WipeError> {
        let mut at = offset;
        let end = offset + len;
        while at < end {
            let n = CHUNK.min(end - at);
            // The offload needs sector alignment; signature regions always are
            // on block devices, and regular files answer ENOTTY anyway.
            if self.offload && at.is_multiple_of(512) && n.is_multiple_of(512) {
                match blkdev::discard(self.file, Discard::ZeroOut, at, n) {
                    Ok(()) => {
                        at += n;
                        reporter.report(WipeProgress { done: done + (at - offset), total });
                        continue;
                    }
                    Err(Errno::ENOTTY | Errno::EOPNOTSUPP | Errno::EINVAL) => self.offload = false,
                    Err(e) => return Err(WipeError::Write { device: self.device.to_owned(), offset: at, source: e.into() }),
                }
            }
            if self.zeros.is_empty() {
                self.zeros = vec![0u8; usize::try_from(CHUNK).unwrap_or(1 << 26)];
            }
            let buf = &self.zeros[..usize::try_from(n).unwrap_or(self.zeros.len())];
            self.file.write_all_at(buf, at).map_err(|source| WipeError::Write { device: self.device.to_owned(), offset: at, source })?;
            at += n;
            reporter.report(WipeProgress { done: done + (at - offset), total });
        }
        Ok(if self.offload { WipeMethod::ZeroOut } else { WipeMethod::Overwrite })
    }
}

/// Discards the whole device and checks that it then reads back zeros where
/// markers were written just before. `Ok(None)`: discard is unsupported, or
/// does not zero on this device: the caller overwrites.
fn discard_all(file: &File, device: &Path, size: u64, reporter: &mut Reporter<'_>) -> Result<Option<WipeMethod>, WipeError> {
    const MARK: u64 = 4096;
    if size < 2 * MARK {
        return Ok(None);
    }
    let marks: BTreeSet<u64> = (0..8u64).map(|i| (size - MARK) / 7 * i / MARK * MARK).collect();
    let pattern = vec![0xa5u8; usize::try_from(MARK).unwrap_or(4096)];
    for at in &marks {
        file.write_all_at(&pattern, *at).map_err(|source| WipeError::Write { device: device.to_owned(), offset: *at, source })?;
    }
    file.sync_all().map_err(|source| WipeError::Flush { device: device.to_owned(), source })?;

    let mut how = Discard::Secure;
    let mut at = 0;
    while at < size {
        let n = (16 * CHUNK).min(size - at);
        match blkdev::discard(file, how, at, n) {
            Ok(()) => {
                at += n;
                reporter.report(WipeProgress { done: at, total: size });
            }
            Err(Errno::EOPNOTSUPP | Errno::ENOTTY | Errno::EINVAL) if at == 0 && how == Discard::Secure => how = Discard::Plain,
            Err(Errno::EOPNOTSUPP | Errno::ENOTTY | Errno::EINVAL) if at == 0 => return Ok(None),
            Err(e) => return Err(WipeError::Write { device: device.to_owned(), offset: at, source: e.into() }),
        }
    }
    // The discard ioctls drop the page cache for the range: these reads reach the device.
    let mut back = vec![0u8; pattern.len()];
    for at in &marks {
        file.read_exact_at(&mut back, *at).map_err(|source| WipeError::Read { device: device.to_owned(), source })?;
        if back.iter().any(|b| *b != 0) {
            return Ok(None);
        }
    }
    Ok(Some(if how == Discard::Secure { WipeMethod::SecureDiscard } else { WipeMethod::Discard }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_cover_both_ends_and_partitions_merged() {
        let size = 64 * MIB;
        let parts = [Partition { number: 1, start: MIB, size: 63 * MIB }];
        let regions = signature_regions(size, &parts, &[]);
        // Disk head [0,4M) swallows the partition head [1M,2M); the
        // partition's tail lies inside the disk's tail; the 64 MiB btrfs
        // mirror is past the end.
        assert_eq!(regions, vec![(0, 4 * MIB), (60 * MIB, 4 * MIB)]);
    }

    #[test]
    fn regions_of_a_tiny_disk_are_the_whole_disk() {
        assert_eq!(signature_regions(3 * MIB, &[], &[]), vec![(0, 3 * MIB)]);
    }

    #[test]
    fn regions_reach_btrfs_mirrors_and_partition_ends() {
        let size = 1 << 30;
        let parts = [Partition { number: 1, start: 100 * MIB, size: 200 * MIB }];
        let regions = signature_regions(size, &parts, &[(500 * MIB, 512)]);
        assert!(regions.contains(&(64 * MIB, BTRFS_SUPER_LEN)), "{regions:?}");
        assert!(regions.contains(&(100 * MIB, MIB)), "{regions:?}");
        assert!(regions.contains(&(164 * MIB, BTRFS_SUPER_LEN)), "{regions:?}");
        assert!(regions.contains(&(299 * MIB, MIB)), "{regions:?}");
        assert!(regions.contains(&(500 * MIB, 512)), "{regions:?}");
        assert!(regions.contains(&(size - 4 * MIB, 4 * MIB)), "{regions:?}");
    }
}
