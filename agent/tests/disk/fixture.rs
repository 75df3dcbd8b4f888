//! Fixtures: disk images built with sfdisk, mkfs.ext4 and zstd; loop devices
//! and mounts released by Drop guards (also when a test fails); a minimal
//! HTTP/1.1 server that can cut, reset or refuse a download.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, MutexGuard};

use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

pub const MIB: u64 = 1 << 20;
/// The test image: 64 MiB, MBR, partition 1 at sector 2048 to the end.
pub const IMAGE_SIZE: u64 = 64 * MIB;
pub const PART_START: u64 = MIB;

/// Runs a command, fails the test unless it succeeds, returns its stdout.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = output(program, args);
    assert!(out.status.success(), "{program} {args:?} failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command and returns whatever happened.
pub fn output(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Runs a command with `input` on its stdin; fails the test unless it succeeds.
pub fn run_with_input(program: &str, args: &[&str], input: &str) -> String {
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A sparse file of `size` bytes (an existing one keeps its content and is resized).
pub fn sparse_file(path: &Path, size: u64) -> PathBuf {
    let file = std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(path).expect("create");
    file.set_len(size).expect("set_len");
    path.to_owned()
}

/// sha256 of the first `len` bytes of a file or block device (sha256sum:
/// the tests run unoptimised, the coreutils do not).
pub fn sha256_prefix(path: &Path, len: u64) -> String {
    let script = format!("head -c {len} {} | sha256sum", s(path));
    let out = run("sh", &["-c", &script]);
    let digest = out.split_whitespace().next().unwrap_or_default().to_owned();
    assert_eq!(digest.len(), 64, "sha256sum answered {out:?}");
    digest
}

pub fn sha256_file(path: &Path) -> String {
    sha256_prefix(path, std::fs::metadata(path).expect("stat").len())
}

/// Reads `len` bytes at `offset` of a file or device.
pub fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    std::fs::File::open(path).expect("open").read_exact_at(&mut buf, offset).expect("read_at");
    buf
}

/// Formats `[offset, offset + size)` of a disk image file as ext4, filled from `rootfs`.
pub fn mkfs_ext4(disk: &Path, offset: u64, size: u64, rootfs: Option<&Path>) {
    let offset_opt = format!("offset={offset}");
    let size_k = format!("{}k", size / 1024);
    let mut args = vec!["-q", "-F", "-t", "ext4", "-E", &offset_opt];
    if let Some(root) = rootfs {
        args.extend(["-d", s(root)]);
    }
    args.extend([s(disk), &size_k]);
    run("mke2fs", &args);
}

/// A directory tree that looks like a small system: a previous tenant's
/// keys and hostname, compressible text and random blocks.
pub fn make_rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for sub in ["etc", "root/.ssh", "usr/share/doc", "usr/lib"] {
        std::fs::create_dir_all(root.join(sub)).expect("mkdir");
    }
    std::fs::write(root.join("etc/hostname"), "previous-tenant\n").expect("write");
    std::fs::write(root.join("etc/os-release"), "PRETTY_NAME=\"ferrum test system\"\n").expect("write");
    std::fs::write(root.join("root/.ssh/authorized_keys"), format!("{OLD_KEY}\n")).expect("write");
    let text: String = (0..40_000).map(|i| format!("line {i}: the quick brown fox jumps over the lazy dog\n")).collect();
    std::fs::write(root.join("usr/share/doc/README"), text).expect("write");
    let mut random = vec![0u8; 3 * MIB as usize];
    std::fs::File::open("/dev/urandom").expect("urandom").read_exact(&mut random).expect("read urandom");
    std::fs::write(root.join("usr/lib/blob"), random).expect("write");
    root
}

/// The key a previous tenant left in the image.
pub const OLD_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOLDOLDOLDOLDOLDOLDOLDOLDOLDOLDOLDOLDOLDOLDOLD previous@tenant";

/// The test image in three encodings, with their digests.
pub struct Images {
    _dir: TempDir,
    pub dir: PathBuf,
    pub raw: PathBuf,
    /// `zstd FILE`: its frame header declares the decoded size.
    pub zst: PathBuf,
    /// `zstd < FILE`: no declared size.
    pub zst_unsized: PathBuf,
    pub raw_sha: String,
    pub zst_sha: String,
}

impl Images {
    pub fn build() -> Images {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_owned();
        let rootfs = make_rootfs(&path);
        let raw = sparse_file(&path.join("disk.img"), IMAGE_SIZE);
        run_with_input("sfdisk", &["-q", s(&raw)], "label: dos\nstart=2048, type=83\n");
        mkfs_ext4(&raw, PART_START, IMAGE_SIZE - PART_START, Some(&rootfs));
        let zst = path.join("disk.img.zst");
        run("zstd", &["-q", "-f", s(&raw), "-o", s(&zst)]);
        let zst_unsized = path.join("unsized.img.zst");
        let sh = format!("zstd -q -c < {} > {}", s(&raw), s(&zst_unsized));
        run("sh", &["-c", &sh]);
        let (raw_sha, zst_sha) = (sha256_file(&raw), sha256_file(&zst));
        Images { _dir: dir, dir: path, raw, zst, zst_unsized, raw_sha, zst_sha }
    }
}

/// A loop device over a file (`losetup -P`, so a kernel with the table's
/// format shows partitions), detached on drop.
pub struct Loop {
    pub dev: PathBuf,
}

impl Loop {
    pub fn attach(file: &Path) -> Loop {
        Self::attach_with(file, &[])
    }

    pub fn attach_read_only(file: &Path) -> Loop {
        Self::attach_with(file, &["-r"])
    }

    fn attach_with(file: &Path, extra: &[&str]) -> Loop {
        let mut args = vec!["-f", "--show", "-P"];
        args.extend_from_slice(extra);
        args.push(s(file));
        let dev = run("losetup", &args).trim().to_owned();
        assert!(dev.starts_with("/dev/loop"), "losetup answered {dev:?}");
        Loop { dev: PathBuf::from(dev) }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let out = output("losetup", &["-d", s(&self.dev)]);
        if !out.status.success() {
            eprintln!("cannot detach {}: {}", self.dev.display(), String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// A filesystem at `offset` of a device or file, mounted through an
/// auto-clearing loop device by mount(8); unmounted on drop.
pub struct Mounted {
    pub dir: TempDir,
}

impl Mounted {
    pub fn new(device: &Path, offset: u64, read_only: bool) -> Mounted {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = format!("{},offset={offset}", if read_only { "ro" } else { "rw" });
        run("mount", &["-o", &options, s(device), s(dir.path())]);
        Mounted { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let out = output("umount", &[s(self.dir.path())]);
        if !out.status.success() {
            eprintln!("cannot unmount {}: {}", self.dir.path().display(), String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// Serialises the tests that mount, so each can check it left no mount behind.
pub fn mount_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Mount points ferrum's key installer left (its temporary directories).
pub fn leftover_key_mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter(|l| l.contains("/ferrum-keys."))
        .map(str::to_owned)
        .collect()
}

/// How the test server answers.
#[derive(Debug, Clone, Copy)]
pub enum Serve {
    /// The whole body.
    Full,
    /// Announce the whole body, send this many bytes, close cleanly.
    CloseAfter(usize),
    /// Announce the whole body, send this many bytes, reset the connection.
    ResetAfter(usize),
    /// This status, empty body.
    Status(u16),
}

/// A hand-written HTTP/1.1 server on 127.0.0.1:0 serving one body at any path.
pub struct HttpServer {
    pub base: String,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    pub async fn start(body: Vec<u8>, serve: Serve) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let body = Arc::new(body);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, body.clone(), serve));
            }
        });
        HttpServer { base, task }
    }

    pub fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.base)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(stream: tokio::net::TcpStream, body: Arc<Vec<u8>>, serve: Serve) {
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match stream.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let mut stream = stream.into_inner();
    let header = |status: &str, len: usize| format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
    let (head, sent) = match serve {
        Serve::Status(code) => (header(&format!("{code} Refused"), 0), 0),
        Serve::Full => (header("200 OK", body.len()), body.len()),
        Serve::CloseAfter(n) | Serve::ResetAfter(n) => (header("200 OK", body.len()), n.min(body.len())),
    };
    if stream.write_all(head.as_bytes()).await.is_err() || stream.write_all(&body[..sent]).await.is_err() {
        return;
    }
    let _ = stream.flush().await;
    match serve {
        Serve::ResetAfter(_) => {
            // SO_LINGER 0: closing sends RST instead of FIN.
            let _ = stream.set_zero_linger();
            drop(stream);
        }
        _ => {
            let _ = stream.shutdown().await;
        }
    }
}
