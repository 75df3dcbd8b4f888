//! End-to-end tests of the read-only TFTP service with real clients
//! (atftp, tftp-hpa, curl) on 127.0.0.1.
//!
//! Owns: checking byte-identical downloads, refusals (traversal, absolute
//! paths, outside symlinks, directories, missing files, writes) and the
//! `ferrum-pxe` binary's flags. Must not: leave processes running or write
//! outside its temporary directories.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const SECRET: &[u8] = b"top secret, outside the root\n";
const CLIENT_TIMEOUT: &str = "20";

/// A served root (with its files) plus a directory outside it.
struct Fixture {
    root: tempfile::TempDir,
    outside: tempfile::TempDir,
    out: tempfile::TempDir,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

fn random_bytes(len: usize) -> Vec<u8> {
    // xorshift64*: deterministic, incompressible enough for a transfer test.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(len);
    v
}

impl Fixture {
    fn start() -> Self {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::write(r.join("small.txt"), b"hello from ferrum\n").unwrap();
        std::fs::write(r.join("big.bin"), random_bytes(3 * 1024 * 1024)).unwrap();
        std::fs::create_dir(r.join("sub")).unwrap();
        std::fs::write(r.join("sub/nested.txt"), b"nested file\n").unwrap();
        std::os::unix::fs::symlink("sub/nested.txt", r.join("inside-link")).unwrap();
        std::fs::write(outside.path().join("secret.txt"), SECRET).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), r.join("outside-link")).unwrap();

        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = mpsc::channel();
        let root_path = r.to_path_buf();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let service = ferrum_pxe::tftp::bind(root_path, "127.0.0.1:0".parse().unwrap()).await.unwrap();
                addr_tx.send(service.local_addr()).unwrap();
                service
                    .run(async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Fixture { root, outside, out, addr, stop: Some(stop_tx), thread: Some(thread) }
    }

    fn port(&self) -> String {
        self.addr.port().to_string()
    }

    fn out_path(&self, name: &str) -> PathBuf {
        self.out.path().join(name)
    }

    fn root_listing(&self) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(self.root.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let r = t.join();
            if !std::thread::panicking() {
                r.unwrap();
            }
        }
    }
}

/// Runs a client under `timeout` so nothing can hang the test.
fn run_client(args: &[&str]) -> (Output, Duration) {
    let start = Instant::now();
    let out = Command::new("timeout").arg(CLIENT_TIMEOUT).args(args).stdin(Stdio::null()).output().unwrap();
    let took = start.elapsed();
    assert_ne!(out.status.code(), Some(124), "client timed out: {args:?}");
    (out, took)
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[derive(Clone, Copy, Debug)]
enum Client {
    Atftp,
    AtftpWindow,
    TftpHpa,
    Curl512,
    Curl1468,
}

const ALL_CLIENTS: [Client; 5] = [Client::Atftp, Client::AtftpWindow, Client::TftpHpa, Client::Curl512, Client::Curl1468];

fn get(fx: &Fixture, client: Client, remote: &str, local: &Path) -> (Output, Duration) {
    let port = fx.port();
    let local = local.to_str().unwrap();
    match client {
        Client::Atftp => run_client(&["atftp", "--get", "-r", remote, "-l", local, "127.0.0.1", &port]),
        Client::AtftpWindow => run_client(&[
            "atftp",
            "--option",
            "blksize 1468",
            "--option",
            "windowsize 16",
            "--get",
            "-r",
            remote,
            "-l",
            local,
            "127.0.0.1",
            &port,
        ]),
        Client::TftpHpa => run_client(&["tftp", "127.0.0.1", &port, "-m", "binary", "-c", "get", remote, local]),
        Client::Curl512 | Client::Curl1468 => {
            let url = format!("tftp://127.0.0.1:{port}/{remote}");
            let blksize = if matches!(client, Client::Curl512) { "512" } else { "1468" };
            run_client(&["curl", "-s", "--path-as-is", "--tftp-blksize", blksize, &url, "-o", local])
        }
    }
}

#[test]
fn every_client_downloads_byte_identical_files() {
    let fx = Fixture::start();
    let files = ["small.txt", "big.bin", "sub/nested.txt", "inside-link"];
    for client in ALL_CLIENTS {
        for (i, remote) in files.iter().enumerate() {
            let local = fx.out_path(&format!("{client:?}-{i}"));
            let (out, took) = get(&fx, client, remote, &local);
            assert!(out.status.success(), "{client:?} {remote}: {}", text(&out));
            let want = std::fs::read(fx.root.path().join(remote)).unwrap();
            let got = std::fs::read(&local).unwrap();
            assert!(got == want, "{client:?} {remote}: content differs");
            if *remote == "big.bin" {
                eprintln!("timing: {client:?} 3 MiB in {:.3} s", took.as_secs_f64());
            }
        }
    }
}

#[test]
fn refusals_leak_nothing() {
    let fx = Fixture::start();
    let outside_name = fx.outside.path().file_name().unwrap().to_str().unwrap();
    let absolute = fx.outside.path().join("secret.txt");
    let bad = [
        format!("../{outside_name}/secret.txt"),
        "../../../../../../../../etc/passwd".to_string(),
        format!("sub/../../{outside_name}/secret.txt"),
        absolute.to_str().unwrap().to_string(),
        "/etc/passwd".to_string(),
        "outside-link".to_string(),
        "sub".to_string(),
        "missing.txt".to_string(),
    ];
    for client in ALL_CLIENTS {
        for (i, remote) in bad.iter().enumerate() {
            let local = fx.out_path(&format!("bad-{client:?}-{i}"));
            let (out, _) = get(&fx, client, remote, &local);
            // tftp-hpa exits 0 even when the server answers with an error.
            if !matches!(client, Client::TftpHpa) {
                assert!(!out.status.success(), "{client:?} {remote} succeeded");
            } else {
                let t = text(&out);
                assert!(t.contains("not found") || t.contains("denied"), "tftp-hpa {remote}: {t}");
            }
            let leaked = std::fs::read(&local).unwrap_or_default();
            assert!(leaked.is_empty(), "{client:?} {remote}: got {} bytes", leaked.len());
        }
    }
}

#[test]
fn write_requests_are_refused() {
    let fx = Fixture::start();
    let before = fx.root_listing();
    let upload = fx.out_path("upload.txt");
    std::fs::write(&upload, b"should never land\n").unwrap();
    let port = fx.port();
    let up = upload.to_str().unwrap();

    let (out, _) = run_client(&["tftp", "127.0.0.1", &port, "-m", "binary", "-c", "put", up, "new-hpa.txt"]);
    assert!(text(&out).contains("denied"), "tftp-hpa put: {}", text(&out));
    let (out, _) = run_client(&["atftp", "--put", "-l", up, "-r", "new-atftp.txt", "127.0.0.1", &port]);
    assert!(!out.status.success(), "atftp put succeeded: {}", text(&out));
    // Overwriting an existing file is refused too.
    let (out, _) = run_client(&["atftp", "--put", "-l", up, "-r", "small.txt", "127.0.0.1", &port]);
    assert!(!out.status.success(), "atftp overwrite succeeded");

    assert_eq!(fx.root_listing(), before);
    assert_eq!(std::fs::read(fx.root.path().join("small.txt")).unwrap(), b"hello from ferrum\n");
}

/// Waits for a child to exit, at most `limit` (blocking on its exit, not
/// polling: `wait-timeout` waits for SIGCHLD).
fn wait_with_deadline(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    use wait_timeout::ChildExt;
    match child.wait_timeout(limit).unwrap() {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child did not exit within {limit:?}");
        }
    }
}

#[test]
fn binary_serves_and_stops_on_sigterm() {
    let root = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("boot.ipxe"), b"#!ipxe\nchain next\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrum-pxe"))
        .args(["--tftp-root", root.path().to_str().unwrap()])
        .args(["--tftp-listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let deadline = Instant::now() + Duration::from_secs(15);
    let addr: SocketAddr = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no address line from ferrum-pxe: {e}");
            }
        };
        if let Some(rest) = line.strip_prefix("ferrum-pxe: TFTP serving ") {
            let (_, addr) = rest.rsplit_once(" on ").unwrap();
            break addr.parse().unwrap();
        }
    };
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 0);

    let local = out.path().join("boot.ipxe");
    let url = format!("tftp://{addr}/boot.ipxe");
    let (res, _) = run_client(&["curl", "-s", &url, "-o", local.to_str().unwrap()]);
    let fetched = std::fs::read(&local).unwrap_or_default();

    let killed = Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let status = wait_with_deadline(&mut child, Duration::from_secs(10));
    reader.join().unwrap();

    assert!(res.status.success(), "curl: {}", text(&res));
    assert_eq!(fetched, b"#!ipxe\nchain next\n");
    assert!(killed.success());
    assert!(status.success(), "ferrum-pxe exit after SIGTERM: {status:?}");
}

#[test]
fn binary_config_errors_name_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &str); 4] = [
        ("[controller]\nurl = \"http://10.0.0.1:8750\"\ntoken_file = \"/t\"\n", "nothing to serve"),
        (
            "[controller]\nurl = \"http://10.0.0.1:8750\"\ntoken_file = \"/t\"\n[[boot.dhcp]]\ninterface = \"br0\"\nmode = \"full\"\n",
            "boot.dhcp[interface = \"br0\"].subnet",
        ),
        ("[controller]\nurl = \"10.0.0.1\"\ntoken_file = \"/t\"\n[boot.tftp]\n", "controller.url"),
        ("[controller]\nurl = \"http://x\"\ntoken = \"secret\"\n", "unknown field `token`"),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("pxe-{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_ferrum-pxe")).arg("--config").arg(&path).stdin(Stdio::null()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(&format!("config file {}", path.display())), "{err}");
        assert!(err.contains(expected), "expected {expected:?} in: {err}");
    }
    let out =
        Command::new(env!("CARGO_BIN_EXE_ferrum-pxe")).args(["--config", "/nonexistent/pxe.toml"]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file /nonexistent/pxe.toml"));
}

#[test]
fn binary_requires_listen_with_root() {
    let root = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferrum-pxe"))
        .args(["--tftp-root", root.path().to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tftp-listen"));
}
