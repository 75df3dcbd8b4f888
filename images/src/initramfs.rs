//! File trees for ramdisks and small root file systems.
//!
//! A [`Builder`] collects entries (directories, files copied from the host or
//! given as bytes, symlinks, character devices) under clean relative paths,
//! with helpers for what every ferrum tree carries: busybox with its applet
//! links, a dynamically linked program with the shared libraries `ldd`
//! names, and kernel modules with their dependencies. It then either writes
//! the tree as a zstd-compressed `newc` cpio archive (the Linux initramfs
//! format; written here so it needs no staging directory, can hold
//! `/dev/console` without `mknod`, and is byte-for-byte reproducible: inode
//! numbers in order, every mtime 0, owner root) or copies it into a
//! directory (a mounted root file system).
//!
//! It never writes outside the output it is given.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::kernel::Kernel;
use crate::kmod::{Missing, ModuleIndex, Resolution};

/// Where the list of modules to load, in order, lives in a tree (paths
/// relative to `/lib/modules/<version>`, one per line). The `/init` scripts
/// read it.
pub const MODULE_LIST: &str = "etc/ferrum/modules";

#[derive(Debug, Clone)]
enum Source {
    Host(PathBuf),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone)]
enum Node {
    Dir,
    File(Source),
    Symlink(String),
    CharDevice { major: u32, minor: u32 },
}

#[derive(Debug, Clone)]
struct Entry {
    node: Node,
    /// Permission bits only (the type comes from `node`).
    mode: u32,
}

/// A file tree to write as an initramfs or into a root file system.
#[derive(Debug, Clone, Default)]
pub struct Builder {
    /// Sorted by path, so a directory always comes before what it holds.
    entries: BTreeMap<String, Entry>,
}

/// `path` without leading `/`, refusing empty, `.` and `..` components.
fn clean(path: &str) -> Result<String> {
    let trimmed = path.trim_start_matches('/');
    if trimmed.is_empty() || trimmed.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(Error::TreePath { path: path.to_owned() });
    }
    Ok(trimmed.to_owned())
}

impl Builder {
    /// An empty tree.
    pub fn new() -> Builder {
        Builder::default()
    }

    fn insert(&mut self, path: &str, node: Node, mode: u32) -> Result<&mut Builder> {
        let path = clean(path)?;
        let mut parent = String::new();
        for component in path.split('/').collect::<Vec<_>>().split_last().map(|(_, p)| p).unwrap_or(&[]) {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(component);
            match self.entries.get(&parent) {
                None => {
                    self.entries.insert(parent.clone(), Entry { node: Node::Dir, mode: 0o755 });
                }
                Some(Entry { node: Node::Dir, .. }) => {}
                Some(_) => return Err(Error::TreePath { path: format!("{path} (its parent {parent} is not a directory)") }),
            }
        }
        let replacing_dir = matches!(self.entries.get(&path), Some(Entry { node: Node::Dir, .. }));
        if replacing_dir && !matches!(node, Node::Dir) {
            return Err(Error::TreePath { path: format!("{path} (already a directory)") });
        }
        self.entries.insert(path, Entry { node, mode: mode & 0o7777 });
        Ok(self)
    }

    /// A directory (parents are created as needed with mode 0755).
    pub fn dir(&mut self, path: &str, mode: u32) -> Result<&mut Builder> {
        self.insert(path, Node::Dir, mode)
    }

    /// A file copied from the host when the tree is written.
    pub fn file(&mut self, path: &str, source: &Path, mode: u32) -> Result<&mut Builder> {
        if !source.is_file() {
            return Err(Error::io("read", source)(io::Error::new(io::ErrorKind::NotFound, "not a regular file")));
        }
        self.insert(path, Node::File(Source::Host(source.to_owned())), mode)
    }

    /// A file with the given content.
    pub fn bytes(&mut self, path: &str, data: impl Into<Vec<u8>>, mode: u32) -> Result<&mut Builder> {
        self.insert(path, Node::File(Source::Bytes(data.into())), mode)
    }

    /// A symbolic link to `target` (taken as is).
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<&mut Builder> {
        self.insert(path, Node::Symlink(target.to_owned()), 0o777)
    }

    /// A character device node (only in cpio archives: `/dev/console` for
    /// the kernel to open before `/init` mounts devtmpfs).
    pub fn char_device(&mut self, path: &str, mode: u32, major: u32, minor: u32) -> Result<&mut Builder> {
        self.insert(path, Node::CharDevice { major, minor }, mode)
    }

    /// Whether the tree has an entry at `path`.
    pub fn contains(&self, path: &str) -> bool {
        clean(path).is_ok_and(|p| self.entries.contains_key(&p))
    }

    /// busybox at `/bin/busybox` with a link for every applet at the place
    /// `busybox --list-full` gives. `busybox` must be statically linked (the
    /// `busybox-static` package): a ramdisk has no libc.
    pub fn busybox(&mut self, busybox: &Path) -> Result<&mut Builder> {
        if !is_static(busybox)? {
            return Err(Error::Host {
                what: busybox.display().to_string(),
                reason: "is dynamically linked; install busybox-static (it provides a static /bin/busybox)".into(),
            });
        }
        let list = crate::cmd::run(Command::new(busybox).arg("--list-full"))?;
        self.file("bin/busybox", busybox, 0o755)?;
        for applet in list.lines().map(str::trim).filter(|l| !l.is_empty() && *l != "bin/busybox") {
            self.symlink(applet, "/bin/busybox")?;
        }
        Ok(self)
    }

    /// A dynamically linked program at `path`, with every shared library
    /// `ldd` lists copied to the path it lists (the loader included).
    pub fn program_with_libraries(&mut self, path: &str, program: &Path) -> Result<&mut Builder> {
        self.file(path, program, 0o755)?;
        for lib in shared_libraries(program)? {
            // Copy the content behind symlinks (libfoo.so.1 -> libfoo.so.1.2.3)
            // to the name the loader looks for.
            let real = fs::canonicalize(&lib).map_err(Error::io("resolve", &lib))?;
            self.file(&lib.to_string_lossy(), &real, 0o755)?;
        }
        Ok(self)
    }

    /// `names` and their dependencies from `kernel`, at
    /// `lib/modules/<version>/...`, with a `modules.dep` for what is carried
    /// (for `modprobe`) and the load order in [`MODULE_LIST`] (for `insmod`).
    pub fn modules(&mut self, kernel: &Kernel, names: &[&str], missing: Missing) -> Result<Resolution> {
        let index = ModuleIndex::load(kernel)?;
        let resolution = index.resolve(names, missing)?;
        let base = format!("lib/modules/{}", kernel.version);
        for rel in &resolution.load_order {
            self.file(&format!("{base}/{rel}"), &kernel.modules.join(rel), 0o644)?;
        }
        self.bytes(&format!("{base}/modules.dep"), index.modules_dep_subset(&resolution.load_order), 0o644)?;
        let list: String = resolution.load_order.iter().map(|rel| format!("{rel}\n")).collect();
        self.bytes(MODULE_LIST, list, 0o644)?;
        Ok(resolution)
    }

    /// The bytes the tree's files hold.
    pub fn content_size(&self) -> Result<u64> {
        let mut total = 0;
        for entry in self.entries.values() {
            total += match &entry.node {
                Node::File(Source::Host(p)) => fs::metadata(p).map_err(Error::io("stat", p))?.len(),
                Node::File(Source::Bytes(b)) => b.len() as u64,
                Node::Symlink(t) => t.len() as u64,
                Node::Dir | Node::CharDevice { .. } => 0,
            };
        }
        Ok(total)
    }

    /// Writes the tree as an uncompressed `newc` cpio archive.
    pub fn write_newc(&self, out: impl Write) -> Result<()> {
        let mut w = NewcWriter { out, written: 0 };
        for (ino, (path, entry)) in (1u32..).zip(&self.entries) {
            let (kind, nlink, rdev, data) = match &entry.node {
                Node::Dir => (0o040000, 2, (0, 0), Vec::new()),
                Node::File(Source::Host(p)) => (0o100000, 1, (0, 0), fs::read(p).map_err(Error::io("read", p))?),
                Node::File(Source::Bytes(b)) => (0o100000, 1, (0, 0), b.clone()),
                Node::Symlink(t) => (0o120000, 1, (0, 0), t.as_bytes().to_vec()),
                Node::CharDevice { major, minor } => (0o020000, 1, (*major, *minor), Vec::new()),
            };
            w.entry(path, ino, kind | entry.mode, nlink, rdev, &data).map_err(Error::io("write", "the cpio archive"))?;
        }
        w.entry("TRAILER!!!", 0, 0, 1, (0, 0), &[]).map_err(Error::io("write", "the cpio archive"))?;
        w.out.flush().map_err(Error::io("write", "the cpio archive"))
    }

    /// Writes the tree as a zstd-compressed `newc` archive at `path` and
    /// returns its size. Compression is zstd's CLI (multithreaded, and
    /// optimised even when this crate is a dev build).
    pub fn write_zstd(&self, path: &Path, level: i32) -> Result<u64> {
        let mut archive = Vec::new();
        self.write_newc(&mut archive)?;
        let tmp = path.with_extension("tmp");
        crate::cmd::run_with_stdin(Command::new("zstd").args(["-q", "-f", "-T0", &format!("-{level}"), "-o"]).arg(&tmp), &archive)?;
        fs::rename(&tmp, path).map_err(Error::io("rename into place", path))?;
        Ok(fs::metadata(path).map_err(Error::io("stat", path))?.len())
    }

    /// Copies the tree into `root` (an existing directory, typically a
    /// mounted file system). Device nodes are refused: a root file system
    /// gets them from devtmpfs.
    pub fn materialize(&self, root: &Path) -> Result<()> {
        for (path, entry) in &self.entries {
            let target = root.join(path);
            let perms = fs::Permissions::from_mode(entry.mode);
            match &entry.node {
                Node::Dir => {
                    fs::create_dir_all(&target).map_err(Error::io("create", &target))?;
                    fs::set_permissions(&target, perms).map_err(Error::io("chmod", &target))?;
                }
                Node::File(source) => {
                    match source {
                        Source::Host(p) => fs::copy(p, &target).map(drop).map_err(Error::io("copy to", &target))?,
                        Source::Bytes(b) => fs::write(&target, b).map_err(Error::io("write", &target))?,
                    }
                    fs::set_permissions(&target, perms).map_err(Error::io("chmod", &target))?;
                }
                Node::Symlink(t) => {
                    if target.symlink_metadata().is_ok() {
                        fs::remove_file(&target).map_err(Error::io("replace", &target))?;
                    }
                    std::os::unix::fs::symlink(t, &target).map_err(Error::io("create symlink", &target))?;
                }
                Node::CharDevice { .. } => return Err(Error::TreePath { path: format!("{path} (device nodes go in cpio archives only)") }),
            }
        }
        Ok(())
    }
}

/// The `newc` ("070701") cpio format: a 110-byte ASCII header, the name with
/// its NUL, padding to 4 bytes, the data, padding to 4 bytes.
struct NewcWriter<W: Write> {
    out: W,
    written: u64,
}

impl<W: Write> NewcWriter<W> {
    fn entry(&mut self, name: &str, ino: u32, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) -> io::Result<()> {
        let size = u32::try_from(data.len()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{name} is over 4 GiB")))?;
        let name_size = u32::try_from(name.len() + 1).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name too long"))?;
        // magic ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
        let header = format!(
            "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{:08x}{size:08x}{:08x}{:08x}{:08x}{:08x}{name_size:08x}{:08x}",
            0, 0, 0, 0, 0, rdev.0, rdev.1, 0
        );
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - self.written % 4) % 4;
        self.put(&[0; 3][..n as usize])
    }
}

/// Whether an ELF executable is statically linked (has no `PT_INTERP`
/// program header, so no loader and no shared libraries).
pub fn is_static(program: &Path) -> Result<bool> {
    let bytes = fs::read(program).map_err(Error::io("read", program))?;
    let not_elf = || Error::Host { what: program.display().to_string(), reason: "is not a 64-bit little-endian ELF executable".into() };
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return Err(not_elf());
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let phoff = usize::try_from(u64::from_le_bytes(bytes[0x20..0x28].try_into().map_err(|_| not_elf())?)).map_err(|_| not_elf())?;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let p_type = bytes.get(at..at + 4).ok_or_else(not_elf)?;
        if u32::from_le_bytes(p_type.try_into().map_err(|_| not_elf())?) == PT_INTERP {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The shared libraries (and the loader) a dynamically linked program needs,
/// as `ldd` resolves them on this host.
pub fn shared_libraries(program: &Path) -> Result<Vec<PathBuf>> {
    if is_static(program)? {
        return Ok(Vec::new());
    }
    let out = crate::cmd::run(Command::new("ldd").arg(program))?;
    let mut libs = Vec::new();
    for line in out.lines() {
        let line = line.trim();
        let path = match line.split_once("=>") {
            Some((name, rest)) => {
                let path = rest.split_whitespace().next().unwrap_or("");
                if path == "not" || path.is_empty() {
                    return Err(Error::Host { what: program.display().to_string(), reason: format!("ldd cannot find {}", name.trim()) });
                }
                path
            }
            None => line.split_whitespace().next().unwrap_or(""),
        };
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_be_clean_and_relative() {
        let mut b = Builder::new();
        for bad in ["", "/", "a//b", "a/../b", "./a", "a/."] {
            assert!(b.dir(bad, 0o755).is_err(), "{bad:?} accepted");
        }
        b.dir("/etc/ferrum", 0o700).unwrap();
        assert!(b.contains("etc") && b.contains("/etc/ferrum"));
        b.bytes("etc/hostname", "x", 0o644).unwrap();
        assert!(b.bytes("etc/hostname/child", "x", 0o644).is_err(), "a file cannot be a parent");
        assert!(b.bytes("etc", "x", 0o644).is_err(), "a directory cannot become a file");
    }

    /// The archive is read back by GNU cpio, the real peer.
    #[test]
    fn newc_archives_are_read_by_cpio() {
        let dir = tempfile::tempdir().unwrap();
        let host_file = dir.path().join("hello");
        fs::write(&host_file, "hello\n").unwrap();
        let mut b = Builder::new();
        b.file("bin/hello", &host_file, 0o755).unwrap();
        b.bytes("init", "#!/bin/sh\n", 0o755).unwrap();
        b.symlink("sbin/hi", "/bin/hello").unwrap();
        b.char_device("dev/console", 0o600, 5, 1).unwrap();
        let mut archive = Vec::new();
        b.write_newc(&mut archive).unwrap();
        assert_eq!(archive.len() % 4, 0);

        let names = crate::cmd::run_with_stdin(Command::new("cpio").args(["-t", "--quiet"]), &archive).unwrap();
        assert_eq!(names.lines().collect::<Vec<_>>(), ["bin", "bin/hello", "dev", "dev/console", "init", "sbin", "sbin/hi"]);
        let listing = crate::cmd::run_with_stdin(Command::new("cpio").args(["-t", "-v", "--quiet"]), &archive).unwrap();
        let listing: Vec<String> = listing.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
        assert!(listing.contains(&"-rwxr-xr-x 1 root root 6 Jan 1 1970 bin/hello".to_owned()), "{listing:#?}");
        assert!(listing.contains(&"crw------- 1 root root 5, 1 Jan 1 1970 dev/console".to_owned()), "{listing:#?}");
        assert!(listing.contains(&"lrwxrwxrwx 1 root root 10 Jan 1 1970 sbin/hi -> /bin/hello".to_owned()), "{listing:#?}");

        let out = dir.path().join("x");
        fs::create_dir(&out).unwrap();
        crate::cmd::run_with_stdin(
            Command::new("cpio").args(["-i", "-d", "--quiet", "--nonmatching", "dev/*"]).current_dir(&out),
            &archive,
        )
        .unwrap();
        assert_eq!(fs::read_to_string(out.join("bin/hello")).unwrap(), "hello\n");
        assert_eq!(fs::read_link(out.join("sbin/hi")).unwrap(), Path::new("/bin/hello"));
    }

    #[test]
    fn the_same_tree_gives_the_same_bytes() {
        let mut b = Builder::new();
        b.bytes("a/b", "x", 0o644).unwrap();
        b.symlink("a/c", "b").unwrap();
        let (mut one, mut two) = (Vec::new(), Vec::new());
        b.write_newc(&mut one).unwrap();
        b.clone().write_newc(&mut two).unwrap();
        assert_eq!(one, two);
    }

    #[test]
    fn static_and_dynamic_programs_are_told_apart() {
        assert!(!is_static(Path::new("/bin/ls")).unwrap());
        assert!(shared_libraries(Path::new("/bin/ls")).unwrap().iter().any(|l| l.to_string_lossy().contains("libc.so")));
        assert!(is_static(Path::new("/bin/busybox")).unwrap(), "busybox-static provides a static /bin/busybox");
        assert!(is_static(Path::new("/etc/hostname")).is_err());
    }
}
