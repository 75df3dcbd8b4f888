//! Builds `kernel`, `ramdisk-lab` and `tiny` into a temporary directory (the
//! `.deb` cache is the shared `$HOME/.cache/ferrum/debs`), checks that a
//! second build skips every step, and boots the results for real under QEMU
//! (TCG, restricted user networking: slirp's DHCP answers, nothing leaves
//! the machine):
//! - the lab ramdisk by direct kernel boot, up to its DHCP marker, the agent
//!   started with the command line's URL, and the console shell after it;
//! - the tiny image from its disk (extlinux), with a test key written into
//!   a copy of the image through a loop mount, up to `ferrum-tiny: sshd up`
//!   and an OpenSSH login that runs `uname -a`.
//!
//! QEMU's serial port is its stdout: a thread copies it to a log file and
//! hands it over a channel, so every wait is a condition with a deadline,
//! never a sleep. QEMU is killed by the PID this test started, and reaped.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use ferrum_images::disk::{self, MountedPartition};
use ferrum_images::plan::{self, Options, Target};
use ferrum_images::{Freshness, stamp};

/// How long a boot may take to reach a marker under TCG.
const BOOT_DEADLINE: Duration = Duration::from_secs(120);

#[test]
fn build_then_boot_the_lab_ramdisk_and_tiny() -> Result<()> {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("info").try_init();
    let out = tempfile::tempdir()?;
    let result = build_then_boot(out.path());
    if result.is_err() {
        // Keep the console logs and images for whoever reads the failure.
        let kept = out.keep();
        return result.with_context(|| format!("outputs and console logs kept in {}", kept.display()));
    }
    result
}

fn build_then_boot(out: &Path) -> Result<()> {
    let options = Options { out: out.join("images"), cache: Options::with_default_dirs()?.cache, agent: None };
    let targets = [Target::Kernel, Target::RamdiskLab, Target::Tiny];

    let built = plan::build(&options, &targets, |r| eprintln!("step {} {:?} in {:.1} s", r.step, r.freshness, r.duration.as_secs_f64()))?;
    // Again, with the agent just built (so a concurrent edit of the agent's
    // sources cannot change an input): every step is skipped.
    let again = plan::build(&Options { agent: built.agent.clone(), ..options.clone() }, &targets, |_| {})?;
    for step in &again.steps {
        ensure!(step.freshness == Freshness::UpToDate, "{} was rebuilt with unchanged inputs", step.step);
    }

    let ramdisk = built.ramdisk_lab.context("no lab ramdisk")?;
    let tiny = built.tiny.context("no tiny image")?;
    let descriptor = fs::read_to_string(&tiny.descriptor)?;
    let field = |key: &str| descriptor.lines().find_map(|l| l.strip_prefix(&format!("{key}: "))).map(|v| v.trim_matches('"').to_owned());
    ensure!(field("sha256") == Some(stamp::sha256_file(&tiny.image)?), "descriptor sha256 is not the image's:\n{descriptor}");
    ensure!(tiny.sha256()? == stamp::sha256_file(&tiny.image)?, "the .sha256 file is wrong");
    ensure!(field("image").as_deref() == Some("tiny.raw.zst") && field("format").as_deref() == Some("raw.zst"), "{descriptor}");

    // A test copy of tiny with our key for root.
    let key = out.join("id_ed25519");
    run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "ferrum-images-test", "-f"]).arg(&key))?;
    let raw = out.join("tiny-test.raw");
    disk::decompress(&tiny.image, &raw)?;
    ensure!(field("size") == Some(fs::metadata(&raw)?.len().to_string()), "descriptor size is not the raw size:\n{descriptor}");
    let root = MountedPartition::open(&raw, 1)?;
    let authorized = root.path().join("root/.ssh/authorized_keys");
    fs::copy(key.with_extension("pub"), &authorized)?;
    fs::set_permissions(&authorized, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    root.close()?;

    // Both machines at once: each is one TCG thread.
    let logs = out.to_owned();
    std::thread::scope(|s| {
        let lab = s.spawn(|| boot_lab_ramdisk(&ramdisk.vmlinuz, &ramdisk.initrd, &logs.join("lab.log")));
        let tiny = s.spawn(|| boot_tiny(&raw, &key, &logs.join("tiny.log")));
        let lab = lab.join().map_err(|_| anyhow::anyhow!("lab boot panicked"))?;
        let tiny = tiny.join().map_err(|_| anyhow::anyhow!("tiny boot panicked"))?;
        lab.context("lab ramdisk")?;
        tiny.context("tiny")
    })
}

fn boot_lab_ramdisk(vmlinuz: &Path, initrd: &Path, log: &Path) -> Result<()> {
    let mut qemu = Qemu::start(
        &[
            "-kernel",
            &vmlinuz.to_string_lossy(),
            "-initrd",
            &initrd.to_string_lossy(),
            "-append",
            "console=ttyS0 panic=1 ferrum.url=http://10.0.2.2:9 ferrum.node=qemu-1 ferrum.token=t",
            "-netdev",
            "user,id=n0,restrict=on",
            "-device",
            "virtio-net-pci,netdev=n0",
        ],
        log,
    )?;
    let deadline = Instant::now() + BOOT_DEADLINE;
    let kernel = qemu.wait_for("Linux version", deadline)?;
    let up = qemu.wait_for("ferrum-ramdisk: up eth0 10.0.2.15", deadline)?;
    let started = qemu.wait_for("ferrum-ramdisk: starting ferrum-agent run --url http://10.0.2.2:9 --node qemu-1\r\n", deadline)?;
    // The static agent runs in the bare initramfs: it tries to register
    // (nothing listens in QEMU's restricted network) and says it retries.
    qemu.wait_for("controller not reachable; retrying", deadline)?;
    eprintln!(
        "lab ramdisk: kernel at {:.1} s, DHCP marker at {:.1} s (kernel → marker {:.1} s), agent started at {:.1} s",
        kernel.as_secs_f64(),
        up.as_secs_f64(),
        (up - kernel).as_secs_f64(),
        started.as_secs_f64()
    );
    qemu.stop()
}

fn boot_tiny(raw: &Path, key: &Path, log: &Path) -> Result<()> {
    let port = free_port()?;
    let mut qemu = Qemu::start(
        &[
            "-drive",
            &format!("file={},if=virtio,format=raw,snapshot=on", raw.display()),
            "-netdev",
            &format!("user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22"),
            "-device",
            "virtio-net-pci,netdev=n0",
        ],
        log,
    )?;
    let deadline = Instant::now() + BOOT_DEADLINE;
    let kernel = qemu.wait_for("Linux version", deadline)?;
    let sshd = qemu.wait_for("ferrum-tiny: sshd up", deadline)?;
    let t = Instant::now();
    let out = run(Command::new("ssh")
        .args(["-F", "/dev/null", "-i"])
        .arg(key)
        .args(["-p", &port.to_string()])
        .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
        .args(["-o", "ConnectTimeout=30", "-o", "LogLevel=ERROR", "root@127.0.0.1", "uname", "-a"]))
    .with_context(|| format!("ssh login; console:\n{}", qemu.tail()))?;
    ensure!(out.starts_with("Linux tiny 6.1.0-") && out.contains("cloud-amd64"), "unexpected uname: {out}");
    eprintln!(
        "tiny: kernel at {:.1} s, sshd marker at {:.1} s (kernel → marker {:.1} s), ssh uname -a took {:.1} s",
        kernel.as_secs_f64(),
        sshd.as_secs_f64(),
        (sshd - kernel).as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    qemu.stop()
}

/// A QEMU machine started by this test, its serial console on stdout.
struct Qemu {
    child: Child,
    stdin: Option<ChildStdin>,
    chunks: Receiver<(Instant, Vec<u8>)>,
    reader: Option<JoinHandle<()>>,
    started: Instant,
    /// Everything the console printed so far.
    seen: String,
    /// For each received chunk: when, and the length of `seen` after it.
    arrivals: Vec<(Instant, usize)>,
    log: PathBuf,
}

impl Qemu {
    fn start(args: &[&str], log: &Path) -> Result<Qemu> {
        let mut child = Command::new("qemu-system-x86_64")
            .args(["-accel", "tcg", "-m", "256", "-smp", "1", "-nodefaults", "-display", "none", "-no-reboot", "-serial", "stdio"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // QEMU's own complaints (bad arguments) go next to the console log.
            .stderr(fs::File::create(log.with_extension("stderr"))?)
            .spawn()
            .context("starting qemu-system-x86_64")?;
        let started = Instant::now();
        let mut stdout = child.stdout.take().context("qemu stdout")?;
        let mut file = fs::File::create(log)?;
        let (tx, chunks) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let _ = file.write_all(&buf[..n]);
                if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Ok(Qemu { child, stdin, chunks, reader: Some(reader), started, seen: String::new(), arrivals: Vec::new(), log: log.to_owned() })
    }

    /// Waits until the console has printed `needle`; returns when it first
    /// arrived, counted from QEMU's start.
    fn wait_for(&mut self, needle: &str, deadline: Instant) -> Result<Duration> {
        loop {
            if let Some(pos) = self.seen.find(needle) {
                let end = pos + needle.len();
                let (at, _) = self.arrivals.iter().find(|(_, len)| *len >= end).copied().unwrap_or((Instant::now(), 0));
                return Ok(at - self.started);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.chunks.recv_timeout(left) {
                Ok((at, bytes)) => {
                    self.seen.push_str(&String::from_utf8_lossy(&bytes));
                    self.arrivals.push((at, self.seen.len()));
                }
                Err(RecvTimeoutError::Timeout) => bail!("no {needle:?} within {BOOT_DEADLINE:?}; console:\n{}", self.tail()),
                Err(RecvTimeoutError::Disconnected) => bail!("QEMU exited before {needle:?}; console:\n{}", self.tail()),
            }
        }
    }

    /// The end of the console output, for error messages.
    fn tail(&self) -> String {
        let start = self.seen.char_indices().nth_back(6000).map_or(0, |(i, _)| i);
        format!("(full log: {})\n{}", self.log.display(), &self.seen[start..])
    }

    /// Kills QEMU (by the PID this test started) and reaps it.
    fn stop(mut self) -> Result<()> {
        self.kill()
    }

    fn kill(&mut self) -> Result<()> {
        self.stdin.take();
        if self.child.try_wait()?.is_none() {
            self.child.kill()?;
        }
        self.child.wait()?;
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        Ok(())
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// A TCP port nobody listens on now (for QEMU's host forward).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs a command and returns its stdout, failing with its stderr.
fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    ensure!(out.status.success(), "{cmd:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
