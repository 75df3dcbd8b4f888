//! `ferrumd` inside the lab: its configuration file, and a watchdog that
//! starts it inside the namespace and restarts it whenever it exits while
//! the lab runs (systemd's `Restart=always`: 1 s backoff, at most
//! [`RESTARTS_PER_MINUTE`] restarts in any minute, then it waits for the
//! minute to pass). Each new PID goes to `DIR/ferrumd.pid` and `DIR/pids`.

use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{LabError, Result};
use crate::layout::{BOOT_PORT, DOMAIN, FERRUMD_PORT, LabFiles, LabSpec};
use crate::netns::Netns;
use crate::procs;

/// Restarts allowed in any 60 s.
pub const RESTARTS_PER_MINUTE: usize = 5;
const BACKOFF: Duration = Duration::from_secs(1);

/// `ferrumd.toml` for the lab. One function so that sections can be added
/// in one place.
pub fn config(spec: &LabSpec) -> String {
    let k = spec.subnet_id;
    let mut text = format!(
        "# Written by `ferrum lab up`; rewritten at every start of the lab.\n\n\
         [boot]\n# The boot and agent endpoints, on the provisioning bridge only (the API\n         # stays on its own port).\nlisten = [\"10.{k}.0.1:{BOOT_PORT}\"]\n\
         public_url = \"http://10.{k}.0.1:{BOOT_PORT}\"\n\
         ramdisk_dir = \"{ramdisk}\"\nimages_dir = \"{images}\"\n\
         cmdline = \"console=ttyS0 panic=-1\"\n\n\
         [[boot.dhcp]]\ninterface = \"br0\"\nmode = \"full\"\nsubnet = \"10.{k}.0.0/24\"\n\
         # Option 15: the nodes' domain (option 12, the host name, is the node's name).\n\
         domain = \"{site}.{domain}\"\n\n\
         [power]\n# The operator default is 120s; the lab's sweep is rare so that a BMC\n         # given a wrong password (--wrong-bmc-password) is first found out by\n         # a deploy, as the end-to-end test wants. Every operation records\n         # the power state it leaves anyway.\nsync_interval = \"10m\"\n\n         [deploy]\n# TCG nodes on a shared CPU boot slowly: generous deadlines.\n         boot_timeout = \"5m\"\nwrite_timeout = \"5m\"\nssh_timeout = \"5m\"\nattempts = 2\n\n\
         [web]\n\
         # Links (activation, mail) name the address lab.env gives: the lab's end\n\
         # of its veth, reachable from the root namespace and inside the lab.\n\
         public_url = \"http://10.{k}.1.2:{FERRUMD_PORT}\"\n\n\
         [sites.{site}]\n\
         # Node N is N.{site}.{domain}; inside the lab's namespace the names resolve\n\
         # through /etc/netns/<namespace>/hosts (no DNS server answers at `dns`: it\n\
         # is the lab network's own address, as /stable/sites/{site}/servers/dns says).\n\
         domain = \"{domain}\"\ndns = \"10.{k}.0.1\"\nnetwork = \"10.{k}.0.0/24\"\ngateway = \"10.{k}.0.1\"\n",
        site = spec.site,
        domain = DOMAIN,
        ramdisk = spec.ramdisk_dir().display(),
        images = spec.environments_dir().display(),
    );
    if let Some(env) = &spec.default_environment {
        text.push_str(&format!(
            "\n[reset]\n# --default-env: written back on every clean node after its reset.\ndefault_environment = \"{env}\"\n"
        ));
    }
    text.push('\n');
    text
}

#[derive(Debug, Default)]
struct Shared {
    stopping: bool,
    pid: Option<u32>,
    running: bool,
}

/// A `ferrumd` kept running.
#[derive(Debug)]
pub struct Watchdog {
    shared: Arc<(Mutex<Shared>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Starts `ferrumd` in `ns` and keeps it running.
    pub fn start(spec: &LabSpec, ns: Arc<Netns>) -> Result<Watchdog> {
        let files = LabFiles::new(&spec.dir);
        let ferrumd = spec.ferrumd.clone();
        let shared: Arc<(Mutex<Shared>, Condvar)> = Arc::default();
        // The first start is synchronous, so a missing binary is an error.
        let child = spawn(&ns, &ferrumd, &files)?;
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || keep_running(child, &ns, &ferrumd, &files, &shared))
        };
        Ok(Watchdog { shared, thread: Some(thread) })
    }

    /// Stops it (SIGTERM, SIGKILL after `grace`) and waits for the
    /// watchdog to end.
    pub fn stop(mut self, grace: Duration) {
        let (lock, cvar) = &*self.shared;
        let pid = {
            let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
            s.stopping = true;
            cvar.notify_all();
            s.pid.filter(|_| s.running)
        };
        if let Some(pid) = pid {
            procs::signal(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
            while s.running && Instant::now() < deadline {
                s = cvar.wait_timeout(s, Duration::from_millis(100)).map(|(g, _)| g).unwrap_or_else(|e| e.into_inner().0);
            }
            if s.running {
                procs::signal(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn spawn(ns: &Netns, ferrumd: &Path, files: &LabFiles) -> Result<Child> {
    let log_path = files.ferrumd_log();
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(LabError::io("cannot open", &log_path))?;
    let err_log = log.try_clone().map_err(LabError::io("cannot open", &log_path))?;
    let child = ns
        .command(&ferrumd.to_string_lossy())
        .arg("--config")
        .arg(files.ferrumd_config())
        .args(["--listen", &format!("0.0.0.0:{FERRUMD_PORT}"), "--data-dir"])
        .arg(files.ferrumd_data())
        .env("NO_COLOR", "1")
        .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .spawn()
        .map_err(|source| LabError::Spawn { program: ferrumd.display().to_string(), source })?;
    let pid = child.id();
    std::fs::write(files.ferrumd_pid(), format!("{pid}\n")).map_err(LabError::io("cannot write", files.ferrumd_pid()))?;
    procs::record(&files.pids(), "ferrumd", pid)?;
    eprintln!("ferrumd started, pid {pid}");
    Ok(child)
}

fn keep_running(mut child: Child, ns: &Netns, ferrumd: &Path, files: &LabFiles, shared: &(Mutex<Shared>, Condvar)) {
    let (lock, cvar) = shared;
    let mut restarts: Vec<Instant> = Vec::new();
    loop {
        {
            let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
            s.pid = Some(child.id());
            s.running = true;
            if s.stopping {
                // Stopped between spawn and here: end it now.
                procs::signal(child.id(), nix::sys::signal::Signal::SIGTERM);
            }
        }
        let status = child.wait();
        {
            let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
            s.running = false;
            cvar.notify_all();
            if s.stopping {
                return;
            }
        }
        eprintln!("ferrumd (pid {}) exited ({}); restarting", child.id(), status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()));
        loop {
            let now = Instant::now();
            restarts.retain(|t| now.duration_since(*t) < Duration::from_secs(60));
            let wait = if restarts.len() >= RESTARTS_PER_MINUTE {
                let oldest = restarts.first().copied().unwrap_or(now);
                eprintln!("ferrumd restarted {} times in a minute: waiting before the next start", restarts.len());
                Duration::from_secs(60).saturating_sub(now.duration_since(oldest)).max(BACKOFF)
            } else {
                BACKOFF
            };
            let s = lock.lock().unwrap_or_else(|e| e.into_inner());
            let (s, _) = cvar.wait_timeout_while(s, wait, |s| !s.stopping).unwrap_or_else(|e| e.into_inner());
            if s.stopping {
                return;
            }
            drop(s);
            restarts.push(Instant::now());
            match spawn(ns, ferrumd, files) {
                Ok(c) => {
                    child = c;
                    break;
                }
                Err(err) => eprintln!("cannot restart ferrumd: {err}"),
            }
        }
    }
}
