//! Installing the lease holder's SSH keys and the hostname in a written system.
//!
//! Owns: validating key lines and hostnames, finding partition N of a disk
//! (the kernel's node, or — when the kernel did not split the disk, as with a
//! ramdisk kernel that lacks the table's format — a loop device over the
//! range the table gives), mounting it (ext4 first, then every block
//! filesystem the kernel knows), replacing `/root/.ssh/authorized_keys`
//! (0600 in a 0700 directory, owned by root) and `/etc/hostname`, flushing,
//! unmounting, and rereading both files from a fresh read-only mount. The
//! mount is always undone, also on error.
//!
//! Must not: report success for keys that did not land byte-identical; follow
//! symlinks of the written system out of its mount; merge with keys a
//! previous tenant left (the file is replaced).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt, fchown};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use serde::Serialize;

use crate::image::blkdev;

/// Key types accepted in `authorized_keys` (exact names).
const KEY_TYPES: [&str; 2] = ["ssh-ed25519", "ssh-rsa"];
/// Key type prefixes accepted: ECDSA curves, FIDO security keys.
const KEY_TYPE_PREFIXES: [&str; 2] = ["ecdsa-sha2-", "sk-"];

/// One validated `authorized_keys` line: `TYPE BASE64 [COMMENT]`, no options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct AuthorizedKey(String);

impl AuthorizedKey {
    /// The line, without newline.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AuthorizedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for AuthorizedKey {
    type Err = String;

    /// Checks the type and the shape of the key blob; the reason is the error.
    fn from_str(line: &str) -> Result<Self, Self::Err> {
        let line = line.trim();
        if line.chars().any(char::is_control) {
            return Err("control characters in the line".to_owned());
        }
        let mut fields = line.split_ascii_whitespace();
        let kind = fields.next().ok_or("empty line")?;
        if !KEY_TYPES.contains(&kind) && !KEY_TYPE_PREFIXES.iter().any(|p| kind.starts_with(p) && kind.len() > p.len()) {
            return Err(format!(
                "unknown key type {kind:?} (expected ssh-ed25519, ssh-rsa, ecdsa-sha2-*, sk-*; options before the type are not accepted)"
            ));
        }
        let blob = fields.next().ok_or_else(|| format!("no key after the type {kind:?}"))?;
        let base64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
        if blob.len() < 16 || !blob.chars().all(base64) {
            return Err(format!("the {kind} key is not base64"));
        }
        Ok(AuthorizedKey(line.to_owned()))
    }
}

/// Parses an `authorized_keys`-style text: one key a line, blank lines and
/// `#` comments skipped, every other line validated.
pub fn parse_authorized_keys(text: &str) -> Result<Vec<AuthorizedKey>, KeysError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(|(i, line)| line.parse().map_err(|reason| KeysError::InvalidKey { line: i + 1, reason }))
        .collect()
}

/// A validated hostname (RFC 1123: dot-separated labels of letters, digits
/// and inner hyphens, each at most 63 long, 253 in all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Hostname(String);

impl Hostname {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Hostname {
    type Err = KeysError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| KeysError::InvalidHostname { hostname: name.to_owned(), reason: reason.to_owned() };
        if name.is_empty() || name.len() > 253 {
            return Err(invalid("must be 1 to 253 characters long"));
        }
        for label in name.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(invalid("each dot-separated label must be 1 to 63 characters long"));
            }
            if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(invalid("only letters, digits, '-' and '.' are allowed"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(invalid("a label cannot start or end with '-'"));
            }
        }
        Ok(Hostname(name.to_owned()))
    }
}

/// What to install, and where.
#[derive(Debug, Clone)]
pub struct KeysRequest {
    /// The whole disk the image was written to (`/dev/vda`).
    pub device: PathBuf,
    /// The number of the written system's root partition (1 → `/dev/vda1`).
    pub partition: u32,
    /// The lease holder's keys.
    pub holder_keys: Vec<AuthorizedKey>,
    /// The controller's own key, appended after the holder's.
    pub controller_key: Option<AuthorizedKey>,
    /// The node's hostname, for `/etc/hostname`.
    pub hostname: Option<Hostname>,
}

/// What a successful installation did.
#[derive(Debug, Clone, Serialize)]
pub struct KeysReport {
    /// The partition as named by the kernel convention (`/dev/vda1`).
    pub partition: PathBuf,
    /// The loop device used when the kernel had no node for the partition.
    pub via_loop: Option<PathBuf>,
    /// The filesystem type that mounted.
    pub filesystem: String,
    /// Lines written to `authorized_keys`.
    pub keys: usize,
    /// The hostname written, if any.
    pub hostname: Option<Hostname>,
}

/// Everything that fails a key installation; each names the partition.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// A key line is malformed or of an unknown type.
    #[error("key line {line}: {reason}")]
    InvalidKey {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Neither holder keys nor a controller key: nobody could log in.
    #[error("no SSH key to install")]
    NoKeys,
    /// The hostname is not valid.
    #[error("invalid hostname {hostname:?}: {reason}")]
    InvalidHostname {
        /// The hostname.
        hostname: String,
        /// What is wrong.
        reason: String,
    },
    /// The disk cannot be opened or read.
    #[error("cannot read the partition table of {device}")]
    Disk {
        /// The disk.
        device: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The disk has no partition with that number.
    #[error("{device} has no partition {partition} (partitions found: {found})")]
    NoSuchPartition {
        /// The disk.
        device: PathBuf,
        /// The partition asked for.
        partition: u32,
        /// The partitions that do exist, e.g. "1, 2" or "none".
        found: String,
    },
    /// A loop device over the partition could not be set up.
    #[error("cannot set up a loop device for partition {partition} of {device}")]
    Loop {
        /// The disk.
        device: PathBuf,
        /// The partition.
        partition: u32,
        #[source]
        source: io::Error,
    },
    /// The temporary mount point could not be made.
    #[error("cannot create a mount point under {dir}")]
    MountPoint {
        /// The parent directory.
        dir: PathBuf,
        #[source]
        source: Errno,
    },
    /// No filesystem type mounted the partition.
    #[error("{partition}: no filesystem this kernel can mount (tried {tried})")]
    NoFilesystem {
        /// The partition.
        partition: PathBuf,
        /// The types tried, comma-separated.
        tried: String,
        /// ext4's answer.
        #[source]
        source: Errno,
    },
    /// The partition or its filesystem is read-only.
    #[error("{partition}: read-only, cannot install keys")]
    ReadOnly {
        /// The partition.
        partition: PathBuf,
    },
    /// No space (or quota) left while writing.
    #[error("{partition}: filesystem full while writing {file}")]
    DiskFull {
        /// The partition.
        partition: PathBuf,
        /// The file, relative to the partition's root.
        file: String,
    },
    /// A symlink or non-directory where a directory must be: writing would leave the system.
    #[error("{partition}: /{path} is a symlink or not a directory, refusing to write through it")]
    UnsafePath {
        /// The partition.
        partition: PathBuf,
        /// The path, relative to the partition's root.
        path: String,
    },
    /// Another I/O error while writing.
    /// A file to read (for kexec) is missing or unreadable.
    #[error("{partition}: cannot read /{file}")]
    Read {
        partition: PathBuf,
        file: String,
        #[source]
        source: io::Error,
    },
    #[error("{partition}: cannot write {file}")]
    Write {
        /// The partition.
        partition: PathBuf,
        /// The file, relative to the partition's root.
        file: String,
        #[source]
        source: io::Error,
    },
    /// Unmounting failed (the data may not be on the disk).
    #[error("{partition}: cannot unmount {mountpoint}")]
    Unmount {
        /// The partition.
        partition: PathBuf,
        /// Where it was mounted.
        mountpoint: PathBuf,
        #[source]
        source: Errno,
    },
    /// A file read back from a fresh mount differs from what was written.
    #[error("{partition}: {file} did not land as written: {detail}")]
    NotLanded {
        /// The partition.
        partition: PathBuf,
        /// The file, relative to the partition's root.
        file: String,
        /// What differs.
        detail: String,
    },
}

/// The kernel's name for partition `number` of `device`: a digit-ending disk
/// name takes a `p` (`/dev/nvme0n1` → `/dev/nvme0n1p1`, `/dev/loop3` →
/// `/dev/loop3p1`), others do not (`/dev/vda` → `/dev/vda1`).
pub fn partition_path(device: &Path, number: u32) -> PathBuf {
    let mut name = device.as_os_str().to_owned();
    if device.to_string_lossy().ends_with(|c: char| c.is_ascii_digit()) {
        name.push("p");
    }
    name.push(number.to_string());
    PathBuf::from(name)
}

const AUTHORIZED_KEYS: &str = "root/.ssh/authorized_keys";
const HOSTNAME: &str = "etc/hostname";

/// Installs the keys (replacing `authorized_keys`) and the hostname, then
/// verifies them from a fresh read-only mount.
pub fn install_keys(request: &KeysRequest) -> Result<KeysReport, KeysError> {
    let keys: Vec<&AuthorizedKey> = request.holder_keys.iter().chain(&request.controller_key).collect();
    if keys.is_empty() {
        return Err(KeysError::NoKeys);
    }
    let authorized_keys: String = keys.iter().map(|k| format!("{k}\n")).collect();
    let hostname = request.hostname.as_ref().map(|h| format!("{}\n", h.as_str()));

    let part = PartitionDevice::open(&request.device, request.partition)?;
    let name = part.name.clone();
    let mountpoint = MountPoint::create()?;

    let filesystem = {
        let mount = Mount::read_write(&part, &mountpoint)?;
        let root = mount.path().to_owned();
        let write_err = |file: &str, e: io::Error| classify_write_error(&name, file, e);
        // sshd (StrictModes) ignores keys under a home or .ssh that others can write.
        ensure_dir(&name, &root, "root", 0o700, true)?;
        ensure_dir(&name, &root, "root/.ssh", 0o700, true)?;
        replace_file(&root, AUTHORIZED_KEYS, authorized_keys.as_bytes(), 0o600).map_err(|e| write_err(AUTHORIZED_KEYS, e))?;
        if let Some(hostname) = &hostname {
            ensure_dir(&name, &root, "etc", 0o755, false)?;
            replace_file(&root, HOSTNAME, hostname.as_bytes(), 0o644).map_err(|e| write_err(HOSTNAME, e))?;
        }
        let fs_root = File::open(&root).map_err(|e| write_err("/", e))?;
        nix::unistd::syncfs(&fs_root).map_err(|e| write_err("/", e.into()))?;
        drop(fs_root);
        let fstype = mount.fstype.clone();
        mount.unmount()?;
        fstype
    };

    // Reread from the disk, not from the page cache of the first mount.
    {
        let mount = Mount::with_type(&part, &mountpoint, &filesystem, MsFlags::MS_RDONLY).map_err(|source| KeysError::NoFilesystem {
            partition: name.clone(),
            tried: filesystem.clone(),
            source,
        })?;
        let root = mount.path();
        verify_file(&name, root, AUTHORIZED_KEYS, authorized_keys.as_bytes(), 0o600)?;
        verify_mode(&name, root, "root/.ssh", 0o700)?;
        if let Some(hostname) = &hostname {
            verify_file(&name, root, HOSTNAME, hostname.as_bytes(), 0o644)?;
        }
        mount.unmount()?;
    }

    Ok(KeysReport {
        partition: name,
        via_loop: part.loop_device.as_ref().map(|(path, _)| path.clone()),
        filesystem,
        keys: keys.len(),
        hostname: request.hostname.clone(),
    })
}

/// Reads `files` (paths relative to the file system's root) from partition
/// `partition` of `device`, mounted read-only for the time of the read.
pub fn read_files(device: &Path, partition: u32, files: &[&str]) -> Result<Vec<Vec<u8>>, KeysError> {
    let part = PartitionDevice::open(device, partition)?;
    let mountpoint = MountPoint::create()?;
    let mut last = Errno::ENODEV;
    let mut tried = Vec::new();
    let mut mount = None;
    for fstype in std::iter::once("ext4".to_owned()).chain(block_filesystems()) {
        match Mount::with_type(&part, &mountpoint, &fstype, MsFlags::MS_RDONLY) {
            Ok(m) => {
                mount = Some(m);
                break;
            }
            Err(e) => {
                last = e;
                tried.push(fstype);
            }
        }
    }
    let Some(mount) = mount else {
        return Err(KeysError::NoFilesystem { partition: part.name.clone(), tried: tried.join(", "), source: last });
    };
    let mut out = Vec::with_capacity(files.len());
    for file in files {
        let path = mount.path().join(file.trim_start_matches('/'));
        let bytes = fs::read(&path).map_err(|source| KeysError::Read {
            partition: part.name.clone(),
            file: file.trim_start_matches('/').to_owned(),
            source,
        })?;
        out.push(bytes);
    }
    mount.unmount()?;
    Ok(out)
}

/// The block device to mount for a partition.
struct PartitionDevice {
    /// The kernel-convention name, for messages.
    name: PathBuf,
    /// What to pass to mount(2).
    node: PathBuf,
    /// The loop device (and the handle keeping it attached), when used.
    loop_device: Option<(PathBuf, File)>,
}

impl PartitionDevice {
    fn open(device: &Path, number: u32) -> Result<Self, KeysError> {
        let name = partition_path(device, number);
        let disk_err = |source| KeysError::Disk { device: device.to_owned(), source };
        if crate::wipe::kernel_partitions(device).iter().any(|p| p.number == number)
            && fs::metadata(&name).is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type()))
        {
            return Ok(PartitionDevice { node: name.clone(), name, loop_device: None });
        }
        // The kernel has no node: read the table ourselves.
        let disk = OpenOptions::new().read(true).open(device).map_err(disk_err)?;
        let read_only = blkdev::read_only(&disk).map_err(disk_err)?;
        let table = crate::wipe::read_partition_table(&disk).map_err(disk_err)?;
        let Some(partition) = table.get(number) else {
            let found: Vec<String> = table.partitions.iter().map(|p| p.number.to_string()).collect();
            let found = if found.is_empty() { "none".to_owned() } else { found.join(", ") };
            return Err(KeysError::NoSuchPartition { device: device.to_owned(), partition: number, found });
        };
        if read_only {
            return Err(KeysError::ReadOnly { partition: name });
        }
        let loop_err = |source| KeysError::Loop { device: device.to_owned(), partition: number, source };
        let backing = OpenOptions::new().read(true).write(true).open(device).map_err(loop_err)?;
        let (node, handle) = blkdev::attach_loop(&backing, partition.start, partition.size, false).map_err(loop_err)?;
        Ok(PartitionDevice { name, node: node.clone(), loop_device: Some((node, handle)) })
    }
}

/// A private, empty directory to mount on; removed (only if empty) on drop.
struct MountPoint(PathBuf);

impl MountPoint {
    fn create() -> Result<Self, KeysError> {
        let dir = std::env::temp_dir();
        let path = nix::unistd::mkdtemp(&dir.join("ferrum-keys.XXXXXX")).map_err(|source| KeysError::MountPoint { dir, source })?;
        Ok(MountPoint(path))
    }
}

impl Drop for MountPoint {
    fn drop(&mut self) {
        // rmdir, never a recursive removal: if an unmount failed, the
        // written system's files stay untouched.
        let _ = fs::remove_dir(&self.0);
    }
}

/// A mounted partition; unmounted on drop if not explicitly.
struct Mount<'a> {
    partition: &'a Path,
    target: &'a Path,
    fstype: String,
    mounted: bool,
}

impl<'a> Mount<'a> {
    const FLAGS: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV).union(MsFlags::MS_NOEXEC).union(MsFlags::MS_NOATIME);

    fn with_type(part: &'a PartitionDevice, target: &'a MountPoint, fstype: &str, flags: MsFlags) -> Result<Self, Errno> {
        nix::mount::mount(Some(&part.node), &target.0, Some(fstype), Self::FLAGS | flags, None::<&str>)?;
        Ok(Mount { partition: &part.name, target: &target.0, fstype: fstype.to_owned(), mounted: true })
    }

    /// ext4 first, then every block filesystem the kernel lists.
    fn read_write(part: &'a PartitionDevice, target: &'a MountPoint) -> Result<Self, KeysError> {
        let read_only = || KeysError::ReadOnly { partition: part.name.clone() };
        let first = match Self::with_type(part, target, "ext4", MsFlags::empty()) {
            Ok(mount) => return Ok(mount),
            // EACCES: the block device itself is read-only.
            Err(Errno::EACCES | Errno::EROFS) => return Err(read_only()),
            Err(e) => e,
        };
        let mut tried = vec!["ext4".to_owned()];
        for fstype in block_filesystems() {
            if let Ok(mount) = Self::with_type(part, target, &fstype, MsFlags::empty()) {
                return Ok(mount);
            }
            tried.push(fstype);
        }
        Err(KeysError::NoFilesystem { partition: part.name.clone(), tried: tried.join(", "), source: first })
    }

    fn path(&self) -> &Path {
        self.target
    }

    fn unmount(mut self) -> Result<(), KeysError> {
        self.mounted = false;
        nix::mount::umount2(self.target, MntFlags::empty()).map_err(|source| KeysError::Unmount {
            partition: self.partition.to_owned(),
            mountpoint: self.target.to_owned(),
            source,
        })
    }
}

impl Drop for Mount<'_> {
    fn drop(&mut self) {
        if self.mounted && nix::mount::umount2(self.target, MntFlags::empty()).is_err() {
            let _ = nix::mount::umount2(self.target, MntFlags::MNT_DETACH);
        }
    }
}

/// Block filesystems from /proc/filesystems other than ext4 (and ext2/3,
/// which ext4 serves) and fuseblk (needs a daemon).
fn block_filesystems() -> Vec<String> {
    let list = fs::read_to_string("/proc/filesystems").unwrap_or_default();
    list.lines()
        .filter(|line| !line.starts_with("nodev"))
        .map(|line| line.trim().to_owned())
        .filter(|name| !name.is_empty() && !matches!(name.as_str(), "ext2" | "ext3" | "ext4" | "fuseblk"))
        .collect()
}

fn classify_write_error(partition: &Path, file: &str, error: io::Error) -> KeysError {
    match error.raw_os_error().map(Errno::from_raw) {
        Some(Errno::ENOSPC | Errno::EDQUOT) => KeysError::DiskFull { partition: partition.to_owned(), file: file.to_owned() },
        Some(Errno::EROFS) => KeysError::ReadOnly { partition: partition.to_owned() },
        _ => KeysError::Write { partition: partition.to_owned(), file: file.to_owned(), source: error },
    }
}

/// Makes sure `root/rel` is a directory (not a symlink), creating it owned by
/// root with `mode` if missing; `enforce` also resets an existing one's
/// owner and mode.
fn ensure_dir(partition: &Path, root: &Path, rel: &str, mode: u32, enforce: bool) -> Result<(), KeysError> {
    let path = root.join(rel);
    let unsafe_path = || KeysError::UnsafePath { partition: partition.to_owned(), path: rel.to_owned() };
    let write_err = |e| classify_write_error(partition, rel, e);
    let created = match fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_dir() => false,
        Ok(_) => return Err(unsafe_path()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir(&path).map_err(write_err)?;
            true
        }
        Err(e) => return Err(write_err(e)),
    };
    if !created && !enforce {
        return Ok(());
    }
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags((nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_NOFOLLOW).bits())
        .open(&path)
        .map_err(|e| if e.raw_os_error() == Some(Errno::ELOOP as i32) { unsafe_path() } else { write_err(e) })?;
    fchown(&dir, Some(0), Some(0)).map_err(write_err)?;
    dir.set_permissions(fs::Permissions::from_mode(mode)).map_err(write_err)?;
    Ok(())
}

/// Replaces `root/rel` atomically: a temporary file (mode, root-owned,
/// fsynced) renamed over it, then the directory fsynced. A symlink at `rel`
/// is replaced, not followed.
fn replace_file(root: &Path, rel: &str, content: &[u8], mode: u32) -> io::Result<()> {
    let path = root.join(rel);
    let tmp = root.join(format!("{rel}.ferrum-tmp"));
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file =
        OpenOptions::new().write(true).create_new(true).mode(mode).custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits()).open(&tmp)?;
    fchown(&file, Some(0), Some(0))?;
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    let written = file.write_all(content).and_then(|()| file.sync_all());
    if let Err(e) = written {
        drop(file);
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    drop(file);
    fs::rename(&tmp, &path)?;
    if let Some(parent) = path.parent() {
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

fn verify_file(partition: &Path, root: &Path, rel: &str, expected: &[u8], mode: u32) -> Result<(), KeysError> {
    let not_landed = |detail: String| KeysError::NotLanded { partition: partition.to_owned(), file: rel.to_owned(), detail };
    let content = fs::read(root.join(rel)).map_err(|e| not_landed(format!("cannot read it back: {e}")))?;
    if content != expected {
        return Err(not_landed(format!("{} bytes read back, {} written, contents differ", content.len(), expected.len())));
    }
    verify_mode(partition, root, rel, mode)
}

fn verify_mode(partition: &Path, root: &Path, rel: &str, mode: u32) -> Result<(), KeysError> {
    let not_landed = |detail: String| KeysError::NotLanded { partition: partition.to_owned(), file: rel.to_owned(), detail };
    let meta = fs::symlink_metadata(root.join(rel)).map_err(|e| not_landed(format!("cannot stat it: {e}")))?;
    if meta.mode() & 0o7777 != mode || meta.uid() != 0 || meta.gid() != 0 {
        return Err(not_landed(format!(
            "mode {:o} owner {}:{}, expected {mode:o} root:root",
            meta.mode() & 0o7777,
            meta.uid(),
            meta.gid()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq3E2t6gCmm0JrW1sXq6V9y2a1w8XoO3sQk0vH4bX1j alice@laptop";

    #[test]
    fn partition_names_follow_the_kernel() {
        assert_eq!(partition_path(Path::new("/dev/vda"), 1), Path::new("/dev/vda1"));
        assert_eq!(partition_path(Path::new("/dev/sdb"), 12), Path::new("/dev/sdb12"));
        assert_eq!(partition_path(Path::new("/dev/nvme0n1"), 1), Path::new("/dev/nvme0n1p1"));
        assert_eq!(partition_path(Path::new("/dev/loop3"), 2), Path::new("/dev/loop3p2"));
        assert_eq!(partition_path(Path::new("/dev/mmcblk0"), 1), Path::new("/dev/mmcblk0p1"));
    }

    #[test]
    fn key_lines_are_checked() {
        let text = format!("# alice\n\n{ED25519}\necdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY= x\n");
        let keys = parse_authorized_keys(&text).expect("valid keys");
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].as_str(), ED25519);

        let err = parse_authorized_keys(&format!("{ED25519}\nssh-dss AAAAB3NzaC1kc3MAAACBAP= old\n")).expect_err("dss refused");
        assert!(matches!(err, KeysError::InvalidKey { line: 2, .. }), "{err:?}");
        assert!(err.to_string().starts_with("key line 2: unknown key type \"ssh-dss\""), "{err}");

        let err = parse_authorized_keys("from=\"10.0.0.1\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA").expect_err("options refused");
        assert!(err.to_string().contains("options before the type are not accepted"), "{err}");
        let err = parse_authorized_keys("ssh-rsa not*base64*at*all!").expect_err("bad blob");
        assert_eq!(err.to_string(), "key line 1: the ssh-rsa key is not base64");
        let err = parse_authorized_keys("sk-").expect_err("bare prefix");
        assert!(matches!(err, KeysError::InvalidKey { line: 1, .. }));
    }

    #[test]
    fn hostnames_are_checked() {
        assert!("node-12.lab.example".parse::<Hostname>().is_ok());
        for bad in ["", "-node", "node-", "no_de", "a..b", "ünï", &"x".repeat(64)] {
            assert!(matches!(bad.parse::<Hostname>(), Err(KeysError::InvalidHostname { .. })), "{bad:?} accepted");
        }
    }
}
