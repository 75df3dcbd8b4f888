//! Key injection into the ext4 root partition of a written image, and the
//! failures that must fail a deployment. Each test holds the mount lock so it
//! can check that no mount of ferrum's is left behind, even after an error.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use ferrum_agent::image::{Format, ImageSpec, Source, WriteOptions, write_image};
use ferrum_agent::keys::{Hostname, KeysError, KeysRequest, install_keys, parse_authorized_keys};

use crate::fixture::{
    IMAGE_SIZE, Images, Loop, MIB, Mounted, OLD_KEY, PART_START, leftover_key_mounts, mkfs_ext4, mount_lock, output, run_with_input, s,
    sparse_file,
};

pub const ALICE: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHb6gOUq0bkq3m1q9Xr2Qv1oXgNn0o0wq3yWmB1eC5Jd alice@laptop";
pub const BOB: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBE5b bob@desk";
pub const CONTROLLER: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF3rR1u8c0m2xC7Vb0aZ0n5f2kq8aT1dQ9wZr3Yx0pLm ferrum-controller";

fn request(device: &Path, partition: u32) -> KeysRequest {
    KeysRequest {
        device: device.to_owned(),
        partition,
        holder_keys: parse_authorized_keys(&format!("# the lease holder's keys\n{ALICE}\n\n{BOB}\n")).expect("keys"),
        controller_key: parse_authorized_keys(CONTROLLER).expect("controller key").pop(),
        hostname: Some("node-7.lab".parse::<Hostname>().expect("hostname")),
    }
}

/// The name the error messages use for partition `n` of a loop device.
fn part(dev: &Path, n: u32) -> String {
    format!("{}p{n}", dev.display())
}

fn assert_no_leftovers(dev: &Path) {
    assert_eq!(leftover_key_mounts(), Vec::<String>::new(), "ferrum left a mount behind");
    let loops = output("losetup", &["-j", s(dev)]);
    assert_eq!(String::from_utf8_lossy(&loops.stdout), "", "ferrum left a loop device over {}", dev.display());
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_and_hostname_land_in_the_written_system() {
    let images = Images::build();
    let disk = sparse_file(&images.dir.join("node-disk"), IMAGE_SIZE);
    let dev = Loop::attach(&disk);
    let spec = ImageSpec { source: Source::File(images.zst.clone()), format: Format::RawZst, sha256: None, size: None };
    write_image(&spec, &dev.dev, &WriteOptions::default(), |_| {}).await.expect("write image");
    let _lock = mount_lock(); // writing mounts nothing; from here on, this test's mounts only

    let report = install_keys(&request(&dev.dev, 1)).expect("install keys");
    assert_eq!(report.partition.to_string_lossy(), part(&dev.dev, 1));
    assert_eq!(report.filesystem, "ext4");
    assert_eq!(report.keys, 3);
    assert_no_leftovers(&dev.dev);

    let mounted = Mounted::new(&dev.dev, PART_START, true);
    let root = mounted.path();
    let keys = std::fs::read_to_string(root.join("root/.ssh/authorized_keys")).expect("authorized_keys");
    assert_eq!(keys, format!("{ALICE}\n{BOB}\n{CONTROLLER}\n"), "replaced, not appended to {OLD_KEY:?}");
    let file = std::fs::metadata(root.join("root/.ssh/authorized_keys")).expect("stat");
    assert_eq!((file.mode() & 0o7777, file.uid(), file.gid()), (0o600, 0, 0));
    let dir = std::fs::metadata(root.join("root/.ssh")).expect("stat");
    assert_eq!((dir.mode() & 0o7777, dir.uid(), dir.gid()), (0o700, 0, 0));
    assert_eq!(std::fs::read_to_string(root.join("etc/hostname")).expect("hostname"), "node-7.lab\n");
    assert!(!root.join("root/.ssh/authorized_keys.ferrum-tmp").exists(), "temporary file left behind");
    // The rest of the system is untouched.
    assert!(std::fs::read_to_string(root.join("usr/share/doc/README")).expect("README").starts_with("line 0: "));
}

#[test]
fn a_missing_partition_is_an_error() {
    let _lock = mount_lock();
    let images = Images::build();
    let dev = Loop::attach(&images.raw);

    let err = install_keys(&request(&dev.dev, 2)).expect_err("partition 2 accepted");
    assert!(matches!(err, KeysError::NoSuchPartition { partition: 2, .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("{} has no partition 2 (partitions found: 1)", dev.dev.display()));
    assert_no_leftovers(&dev.dev);
}

#[test]
fn a_partition_without_filesystem_is_an_error() {
    let _lock = mount_lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = sparse_file(&dir.path().join("blank"), 32 * MIB);
    run_with_input("sfdisk", &["-q", s(&disk)], "label: dos\nstart=2048, type=83\n");
    let dev = Loop::attach(&disk);

    let err = install_keys(&request(&dev.dev, 1)).expect_err("blank partition accepted");
    assert!(matches!(err, KeysError::NoFilesystem { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.starts_with(&format!("{}: no filesystem this kernel can mount (tried ext4", part(&dev.dev, 1))), "{message}");
    assert_no_leftovers(&dev.dev);
}

#[test]
fn a_full_filesystem_is_an_error() {
    let _lock = mount_lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = sparse_file(&dir.path().join("tiny"), 8 * MIB);
    run_with_input("sfdisk", &["-q", s(&disk)], "label: dos\nstart=2048, type=83\n");
    mkfs_ext4(&disk, PART_START, 7 * MIB, None);
    let dev = Loop::attach(&disk);
    {
        let mounted = Mounted::new(&dev.dev, PART_START, false);
        std::fs::create_dir(mounted.path().join("root")).expect("mkdir root");
        fill(mounted.path());
    }

    let err = install_keys(&request(&dev.dev, 1)).expect_err("full filesystem accepted");
    assert!(matches!(err, KeysError::DiskFull { .. }), "{err:?}");
    let message = err.to_string();
    // Where it runs out (.ssh, authorized_keys, /etc) depends on what ext4 keeps aside.
    assert!(message.starts_with(&format!("{}: filesystem full while writing ", part(&dev.dev, 1))), "{message}");
    assert_no_leftovers(&dev.dev);
}

#[test]
fn a_read_only_disk_is_an_error() {
    let _lock = mount_lock();
    let images = Images::build();
    let dev = Loop::attach_read_only(&images.raw);

    let err = install_keys(&request(&dev.dev, 1)).expect_err("read-only disk accepted");
    assert!(matches!(err, KeysError::ReadOnly { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("{}: read-only, cannot install keys", part(&dev.dev, 1)));
    assert_no_leftovers(&dev.dev);
}

#[test]
fn no_keys_is_an_error() {
    let mut req = request(Path::new("/dev/null-disk"), 1);
    req.holder_keys.clear();
    req.controller_key = None;
    let err = install_keys(&req).expect_err("no keys accepted");
    assert!(matches!(err, KeysError::NoKeys), "{err:?}");
}

/// Fills a filesystem as root (reserved blocks included). ext4 hands back
/// delayed-allocation reservations and preallocations on sync and close, so
/// keep adding small synced files and directories until a round adds none.
fn fill(root: &Path) {
    use std::io::Write;
    let mut big = std::fs::File::create(root.join("fill")).expect("create");
    let chunk = vec![0x42u8; 256 * 1024];
    while big.write_all(&chunk).is_ok() {}
    drop(big);
    let block = vec![0x42u8; 4096];
    let mut n = 0;
    loop {
        let mut added = 0;
        loop {
            n += 1;
            let written =
                std::fs::File::create(root.join(format!("f{n}"))).and_then(|mut f| f.write_all(&block).and_then(|()| f.sync_all()));
            match written {
                Ok(()) => added += 1,
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(nix::libc::ENOSPC), "{e}");
                    break;
                }
            }
        }
        // Directories take a block too (as .ssh will).
        while std::fs::create_dir(root.join(format!("d{n}"))).is_ok() {
            n += 1;
            added += 1;
        }
        nix::unistd::sync();
        if added == 0 {
            break;
        }
    }
}

#[test]
fn symlinks_in_the_written_system_are_not_followed() {
    let _lock = mount_lock();
    let images = Images::build();
    let dev = Loop::attach(&images.raw);
    let outside = images.dir.join("outside-the-node");
    {
        // authorized_keys pointing out of the system: replaced, not followed.
        let mounted = Mounted::new(&dev.dev, PART_START, false);
        let keys = mounted.path().join("root/.ssh/authorized_keys");
        std::fs::remove_file(&keys).expect("rm");
        std::os::unix::fs::symlink(&outside, &keys).expect("symlink");
    }
    install_keys(&request(&dev.dev, 1)).expect("install over a symlinked authorized_keys");
    assert!(!outside.exists(), "the symlink was followed out of the written system");
    {
        let mounted = Mounted::new(&dev.dev, PART_START, false);
        let keys = mounted.path().join("root/.ssh/authorized_keys");
        assert!(std::fs::symlink_metadata(&keys).expect("stat").is_file(), "authorized_keys is not a plain file now");
        // .ssh itself a symlink: refused.
        std::fs::remove_dir_all(mounted.path().join("root/.ssh")).expect("rm .ssh");
        std::os::unix::fs::symlink(&images.dir, mounted.path().join("root/.ssh")).expect("symlink");
    }
    let err = install_keys(&request(&dev.dev, 1)).expect_err("symlinked .ssh accepted");
    assert!(matches!(err, KeysError::UnsafePath { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("{}: /root/.ssh is a symlink or not a directory, refusing to write through it", part(&dev.dev, 1)));
    assert!(!images.dir.join("authorized_keys").exists());
    assert_no_leftovers(&dev.dev);
}
