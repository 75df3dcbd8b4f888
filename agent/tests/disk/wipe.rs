//! Wipes judged by the tools a later tenant (or installer) would use:
//! wipefs, blkid -p and sfdisk must find nothing afterwards.

use std::path::Path;

use ferrum_agent::wipe::{Partition, TableKind, WipeMethod, WipeOptions, WipeProgress, WipeReport, wipe_device};

use crate::fixture::{IMAGE_SIZE, Images, Loop, MIB, PART_START, mkfs_ext4, output, read_at, run, run_with_input, s, sparse_file};

fn wipe(device: &Path, secure: bool) -> (WipeReport, Vec<WipeProgress>) {
    let mut reports = Vec::new();
    let report = wipe_device(device, WipeOptions { secure }, &mut |p| reports.push(p)).expect("wipe");
    (report, reports)
}

/// What `wipefs` (no options: list) and `blkid -p` see, at `offset` for blkid.
fn signatures(dev: &Path, offset: u64) -> (String, String) {
    let wipefs = run("wipefs", &[s(dev)]);
    let blkid = output("blkid", &["-p", "-O", &offset.to_string(), s(dev)]);
    (wipefs, String::from_utf8_lossy(&blkid.stdout).into_owned())
}

fn assert_nothing_found(dev: &Path, offsets: &[u64]) {
    for offset in offsets {
        let blkid = output("blkid", &["-p", "-O", &offset.to_string(), s(dev)]);
        assert_eq!(blkid.status.code(), Some(2), "blkid -p -O {offset} still finds {}", String::from_utf8_lossy(&blkid.stdout));
    }
    assert_eq!(run("wipefs", &[s(dev)]), "", "wipefs still lists signatures");
    let sfdisk = output("sfdisk", &["-d", s(dev)]);
    assert!(!sfdisk.status.success(), "sfdisk still finds a table: {}", String::from_utf8_lossy(&sfdisk.stdout));
}

fn assert_zero(dev: &Path, offset: u64, len: usize) {
    assert!(read_at(dev, offset, len).iter().all(|b| *b == 0), "{} not zero at {offset}+{len}", dev.display());
}

#[test]
fn an_mbr_disk_with_ext4_is_wiped_clean() {
    let images = Images::build();
    let dev = Loop::attach(&images.raw);
    let (wipefs, blkid) = signatures(&dev.dev, 0);
    assert!(wipefs.contains("dos"), "the fixture has no MBR: {wipefs}");
    assert!(blkid.contains("PTTYPE=\"dos\""), "{blkid}");
    assert!(signatures(&dev.dev, PART_START).1.contains("TYPE=\"ext4\""), "the fixture has no ext4");

    let (report, progress) = wipe(&dev.dev, false);
    assert_eq!(report.tables, vec![TableKind::Mbr]);
    assert_eq!(report.partitions, vec![Partition { number: 1, start: PART_START, size: IMAGE_SIZE - PART_START }]);
    assert_eq!(report.method, WipeMethod::Signatures);
    assert_eq!(progress.last(), Some(&WipeProgress { done: report.bytes, total: report.bytes }));
    assert_nothing_found(&dev.dev, &[0, PART_START]);
}

#[test]
fn logical_partitions_are_found_through_the_extended_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = sparse_file(&dir.path().join("ext"), 64 * MIB);
    // 1: primary at 1 MiB; 2: extended from 9 MiB; 5: logical at 10 MiB (ext4 in it).
    run_with_input(
        "sfdisk",
        &["-q", s(&disk)],
        "label: dos\nstart=2048, size=16384, type=83\nstart=18432, type=5\nstart=20480, size=40960, type=83\n",
    );
    let logical = 20480 * 512;
    mkfs_ext4(&disk, logical, 40960 * 512, None);
    let dev = Loop::attach(&disk);
    assert!(signatures(&dev.dev, logical).1.contains("TYPE=\"ext4\""), "the fixture has no ext4 in the logical partition");

    let (report, _) = wipe(&dev.dev, false);
    let numbers: Vec<u32> = report.partitions.iter().map(|p| p.number).collect();
    assert_eq!(numbers, vec![1, 2, 5]);
    assert_eq!(report.partitions[2], Partition { number: 5, start: logical, size: 40960 * 512 });
    assert_nothing_found(&dev.dev, &[0, PART_START, logical]);
}

#[test]
fn a_gpt_disk_loses_both_headers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let size = 64 * MIB;
    let disk = sparse_file(&dir.path().join("gpt"), size);
    run_with_input("sfdisk", &["-q", s(&disk)], "label: gpt\nstart=2048, size=32768\nstart=34816\n");
    mkfs_ext4(&disk, PART_START, 32768 * 512, None);
    let dev = Loop::attach(&disk);
    let wipefs = signatures(&dev.dev, 0).0;
    assert!(wipefs.contains("gpt") && wipefs.contains("PMBR"), "the fixture has no GPT: {wipefs}");
    assert!(read_at(&dev.dev, size - 512, 8).starts_with(b"EFI PART"), "no backup header at the end");

    let (report, _) = wipe(&dev.dev, false);
    assert_eq!(report.tables, vec![TableKind::Gpt]);
    assert_eq!(report.partitions.iter().map(|p| p.number).collect::<Vec<_>>(), vec![1, 2]);
    assert_nothing_found(&dev.dev, &[0, PART_START, 34816 * 512]);
    // Backup header and its 32 sectors of entries.
    assert_zero(&dev.dev, size - 33 * 512, 33 * 512);
}

#[test]
fn a_gpt_image_on_a_bigger_disk_loses_its_misplaced_backup_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = 32 * MIB;
    let disk = sparse_file(&dir.path().join("grown"), image);
    run_with_input("sfdisk", &["-q", s(&disk)], "label: gpt\nstart=2048\n");
    // The image was written to a 96 MiB disk: its backup header now sits in the middle.
    sparse_file(&disk, 96 * MIB);
    let dev = Loop::attach(&disk);
    assert!(read_at(&dev.dev, image - 512, 8).starts_with(b"EFI PART"), "fixture without a mid-disk backup header");

    let (report, _) = wipe(&dev.dev, false);
    assert_eq!(report.tables, vec![TableKind::Gpt]);
    assert_zero(&dev.dev, image - 33 * 512, 33 * 512);
    assert_nothing_found(&dev.dev, &[0]);
}

fn fill_random(path: &Path, size: u64) {
    let mut data = vec![0u8; size as usize];
    let mut urandom = std::fs::File::open("/dev/urandom").expect("urandom");
    std::io::Read::read_exact(&mut urandom, &mut data).expect("read urandom");
    std::fs::write(path, data).expect("write");
}

#[test]
fn a_secure_wipe_leaves_only_zeros_on_a_loop_device() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = dir.path().join("secret");
    fill_random(&disk, 32 * MIB);
    let dev = Loop::attach(&disk);

    let (report, progress) = wipe(&dev.dev, true);
    assert_eq!(report.bytes, 32 * MIB);
    // A loop device discards by punching holes: reads give zeros, so the
    // discard is accepted; any other method is fine as long as it zeroes.
    assert_ne!(report.method, WipeMethod::Signatures);
    assert_eq!(progress.last(), Some(&WipeProgress { done: 32 * MIB, total: 32 * MIB }));
    assert_zero(&dev.dev, 0, (32 * MIB) as usize);
    drop(dev);
    assert_zero(&disk, 0, (32 * MIB) as usize);
}

#[test]
fn a_secure_wipe_of_a_file_overwrites_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = dir.path().join("secret");
    fill_random(&disk, 8 * MIB + 4096);

    let (report, _) = wipe(&disk, true);
    assert_eq!(report.method, WipeMethod::Overwrite);
    assert_eq!(report.bytes, 8 * MIB + 4096);
    assert_zero(&disk, 0, (8 * MIB + 4096) as usize);
}
