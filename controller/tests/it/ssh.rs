//! The controller's SSH check (`ferrum_controller::ssh`) against a real
//! `dropbear` (the server the lab's deployed images run) on its own port of
//! 127.0.0.1.
//!
//! Dropbear reads root's `~/.ssh/authorized_keys`, so each instance runs in
//! a private mount namespace with its own tempdir bind-mounted over `/root`:
//! the host's `/root` is never touched. `unshare` execs `sh`, which execs
//! dropbear, so the PID held is dropbear's; it is killed by that PID and
//! reaped on drop, after its per-connection children have ended (this
//! sandbox's PID 1 does not reap orphans).

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferrum_controller::ssh::{self, ControllerKey, SshError};

use super::harness::wait_until;

/// How long dropbear may take to listen, and one check to finish.
const DEADLINE: Duration = Duration::from_secs(20);

/// A running dropbear.
#[derive(Debug)]
struct Dropbear {
    addr: SocketAddr,
    /// `dropbearkey -y` of the host key: `ssh-ed25519 AAAA...`.
    host_key: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Dropbear {
    /// Starts dropbear with `authorized` as root's authorized_keys and waits
    /// until it accepts TCP connections.
    async fn start(authorized: &[String]) -> Dropbear {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let host_key_file = root.join("host_key");
        run_ok(Command::new("dropbearkey").arg("-t").arg("ed25519").arg("-f").arg(&host_key_file));
        let printed = run_ok(Command::new("dropbearkey").arg("-y").arg("-f").arg(&host_key_file));
        let host_key = printed.lines().find(|l| l.starts_with("ssh-ed25519 ")).expect("dropbearkey -y prints the public key");
        let host_key = host_key.split_whitespace().take(2).collect::<Vec<_>>().join(" ");

        // The home dropbear sees as /root: 0700 like the real one.
        let home = root.join("home");
        std::fs::create_dir_all(home.join(".ssh")).expect("home/.ssh");
        for d in [&home, &home.join(".ssh")] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        }
        let keys_file = home.join(".ssh/authorized_keys");
        std::fs::write(&keys_file, authorized.iter().map(|k| format!("{k}\n")).collect::<String>()).expect("authorized_keys");
        std::fs::set_permissions(&keys_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");

        let port = free_tcp_port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let log = std::fs::File::create(root.join("dropbear.log")).expect("log file");
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount --bind "$1" /root && exec /usr/sbin/dropbear -F -E -s -r "$2" -P "$3" -p "$4""#)
            .arg("sh")
            .arg(&home)
            .arg(&host_key_file)
            .arg(root.join("dropbear.pid"))
            .arg(addr.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start unshare + dropbear");
        let mut server = Dropbear { addr, host_key, dir, child: Some(child) };
        let pid = server.pid();
        wait_until("dropbear listening", DEADLINE, async || {
            if let Some(status) = server.child.as_mut().expect("child").try_wait().expect("try_wait") {
                return Err(format!("exited with {status}: {}", server.log()));
            }
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() != "dropbear" {
                return Err(format!("PID {pid} is {comm:?}, not yet dropbear"));
            }
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).map(drop).map_err(|e| format!("connect: {e}"))
        })
        .await;
        server
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("child").id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dropbear.log")).unwrap_or_default()
    }
}

impl Drop for Dropbear {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let pid = child.id();
        // Let the per-connection children end (their clients are gone), so
        // dropbear reaps them before it dies; bounded. Justified sleep: it
        // paces a deadline-bounded check in `Drop`, which cannot await and
        // has no event to block on.
        let children = format!("/proc/{pid}/task/{pid}/children");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(&children).is_ok_and(|c| !c.trim().is_empty()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(out.status.success(), "{cmd:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn free_tcp_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind").local_addr().expect("addr").port()
}

fn new_key(dir: &Path, name: &str) -> ControllerKey {
    ControllerKey::load_or_create(&dir.join(name)).expect("controller key")
}

#[tokio::test]
async fn check_runs_a_command_as_root_and_returns_the_host_key() {
    let keys = tempfile::tempdir().expect("tempdir");
    let key = new_key(keys.path(), "id_ed25519");
    let server = Dropbear::start(&[key.public_openssh()]).await;

    let started = Instant::now();
    let check = ssh::run_as_root(server.addr, &key, "uname -a; id -u", DEADLINE, None).await.expect("check");
    eprintln!("one SSH check against dropbear took {:?}", started.elapsed());

    assert_eq!(check.exit_status, 0, "{check:?}");
    assert!(check.stdout.contains("Linux"), "{check:?}");
    assert!(check.stdout.lines().any(|l| l == "0"), "logged in as root: {check:?}");
    assert_eq!(check.host_key, server.host_key);
    assert!(check.fingerprint.starts_with("SHA256:"), "{}", check.fingerprint);
}

#[tokio::test]
async fn a_recorded_host_key_is_enforced() {
    let keys = tempfile::tempdir().expect("tempdir");
    let key = new_key(keys.path(), "id_ed25519");
    let server = Dropbear::start(&[key.public_openssh()]).await;

    let first = ssh::run_as_root(server.addr, &key, "true", DEADLINE, None).await.expect("first check");
    let again = ssh::run_as_root(server.addr, &key, "true", DEADLINE, Some(&first.host_key)).await.expect("same host key");
    assert_eq!(again.host_key, first.host_key);
    // The comment of a recorded key does not matter.
    let commented = format!("{} root@node-1", first.host_key);
    ssh::run_as_root(server.addr, &key, "true", DEADLINE, Some(&commented)).await.expect("same key, other comment");

    let other = new_key(keys.path(), "other").public_openssh();
    let err = ssh::run_as_root(server.addr, &key, "true", DEADLINE, Some(&other)).await.expect_err("another host key");
    assert!(matches!(err, SshError::HostKeyMismatch { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert!(err.to_string().contains(&first.fingerprint), "{err}");

    let err = ssh::run_as_root(server.addr, &key, "true", DEADLINE, Some("not a key")).await.expect_err("garbage");
    assert!(matches!(err, SshError::InvalidExpectedKey(_)), "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_key_not_in_authorized_keys_is_refused() {
    let keys = tempfile::tempdir().expect("tempdir");
    let installed = new_key(keys.path(), "installed");
    let stranger = new_key(keys.path(), "stranger");
    let server = Dropbear::start(&[installed.public_openssh()]).await;

    let err = ssh::run_as_root(server.addr, &stranger, "true", DEADLINE, None).await.expect_err("refused");
    assert!(matches!(err, SshError::AuthRejected { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert!(err.to_string().contains(&stranger.fingerprint()), "{err}");
    // No key material in what the caller logs.
    let private = std::fs::read_to_string(keys.path().join("stranger")).expect("key file");
    let body: String = private.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!format!("{err:?} {stranger:?}").contains(&body[..40]));
}

#[tokio::test]
async fn a_closed_port_is_retryable() {
    let keys = tempfile::tempdir().expect("tempdir");
    let key = new_key(keys.path(), "id_ed25519");
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_tcp_port()));

    let err = ssh::run_as_root(addr, &key, "true", DEADLINE, None).await.expect_err("nothing listens");
    assert!(matches!(err, SshError::Connect { .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_silent_server_times_out_and_is_retryable() {
    let keys = tempfile::tempdir().expect("tempdir");
    let key = new_key(keys.path(), "id_ed25519");
    // Accepts TCP (the kernel does, from the backlog) but never sends a banner,
    // like a node whose sshd is not up yet behind a listening socket.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let addr = listener.local_addr().expect("addr");

    let limit = Duration::from_millis(300);
    let err = ssh::run_as_root(addr, &key, "true", limit, None).await.expect_err("no banner");
    assert!(matches!(err, SshError::Timeout { .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn the_exit_status_and_both_streams_are_returned_bounded() {
    let keys = tempfile::tempdir().expect("tempdir");
    let key = new_key(keys.path(), "id_ed25519");
    let server = Dropbear::start(&[key.public_openssh()]).await;

    let check = ssh::run_as_root(server.addr, &key, "echo out; echo err >&2; exit 3", DEADLINE, None).await.expect("check");
    assert_eq!(check.exit_status, 3);
    assert_eq!(check.stdout, "out\n");
    assert_eq!(check.stderr, "err\n");

    let check = ssh::run_as_root(server.addr, &key, "head -c 200000 /dev/zero | tr '\\0' x", DEADLINE, None).await.expect("big output");
    assert_eq!(check.exit_status, 0);
    assert_eq!(check.stdout.len(), ssh::OUTPUT_LIMIT);
}

#[test]
fn the_controller_key_is_created_0600_and_loaded_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state/ssh/id_ed25519");
    let key = ControllerKey::load_or_create(&path).expect("create");
    let mode = std::fs::metadata(&path).expect("key file").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let public = key.public_openssh();
    assert!(public.starts_with("ssh-ed25519 AAAA"), "{public}");
    assert!(public.split_whitespace().nth(2).is_some_and(|c| c.starts_with("ferrum-controller")), "{public}");
    let pub_file = std::fs::read_to_string(dir.path().join("state/ssh/id_ed25519.pub")).expect(".pub file");
    assert_eq!(pub_file, format!("{public}\n"));

    let again = ControllerKey::load_or_create(&path).expect("load");
    assert_eq!(again.public_openssh(), public);
    assert_eq!(again.fingerprint(), key.fingerprint());

    // Another implementation reads the file as the same key.
    let converted = dir.path().join("converted");
    run_ok(Command::new("dropbearconvert").arg("openssh").arg("dropbear").arg(&path).arg(&converted));
    let printed = run_ok(Command::new("dropbearkey").arg("-y").arg("-f").arg(&converted));
    let key_data = public.split_whitespace().nth(1).expect("key data");
    assert!(printed.contains(key_data), "{printed}");

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = ControllerKey::load_or_create(&path).expect_err("group-readable key");
    assert!(err.to_string().contains("0600"), "{err}");
}
