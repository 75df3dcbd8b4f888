//! The lab supervisor: the detached process (`ferrum lab daemon`) that
//! builds the lab, keeps it running and takes it down on SIGTERM/SIGINT.
//!
//! Start, in order: a new session (`setsid`); the namespace with bridge
//! `br0` (`10.K.0.1/24`) and a veth to the root namespace (`10.K.1.1` root
//! side, `10.K.1.2` inside) and the namespace's hosts file
//! (`/etc/netns/<namespace>/hosts`: the nodes' names); `ferrumd` under a
//! [`Watchdog`]; per node a tap,
//! a blank qcow2 disk and QEMU, paused (`-S`: the node starts powered off);
//! the control socket; the BMCs; then it waits (bounded) until ferrumd
//! answers `/healthz` and every BMC answers, and writes `lab.json`, the
//! signal `ferrum lab up` waits for. Every PID goes to `DIR/pids`.
//!
//! Stop: BMCs (SIGTERM), QEMU (QMP `quit`, SIGKILL by PID after a
//! deadline), ferrumd, each reaped; then the namespace (and with it the
//! veth) and its hosts file are deleted.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::error::{LabError, Result};
use crate::ferrumd::Watchdog;
use crate::layout::{self, Accel, BmcKind, FERRUMD_PORT, LabFiles, LabSpec, LabState, NodePlan};
use crate::netns::Netns;
use crate::vm::Vm;
use crate::{accel, bmc, control, procs};

/// How long the lab may take to become ready (the CLI waits a little longer).
pub const READY_DEADLINE: Duration = Duration::from_secs(150);
/// How long QEMU gets to quit before SIGKILL.
const QUIT_GRACE: Duration = Duration::from_secs(5);

/// Checks what the lab needs before anything starts; errors say what is
/// missing and how to get it.
pub fn preflight(spec: &LabSpec) -> Result<()> {
    spec.validate()?;
    let build = |what: &str| {
        format!(
            "{what} is missing in the images cache {}: build it with `cargo run --release -p ferrum-images -- build --out {}` (or point --images at a built cache)",
            spec.images.display(),
            spec.images.display()
        )
    };
    let ramdisk = spec.ramdisk_dir();
    if !ramdisk.join("vmlinuz").is_file() || !ramdisk.join("initrd.img").is_file() {
        return Err(LabError::Invalid(build("ramdisk-lab (vmlinuz, initrd.img)")));
    }
    if !spec.environments_dir().join("tiny.yaml").is_file() {
        return Err(LabError::Invalid(build("the `tiny` environment (environments/tiny.yaml)")));
    }
    if !spec.ferrumd.is_file() {
        return Err(LabError::Invalid(format!(
            "--ferrumd {}: no such file (build it with `cargo build --release -p ferrum-controller`)",
            spec.ferrumd.display()
        )));
    }
    if !spec.sushy.is_file() {
        return Err(LabError::Invalid(format!(
            "sushy-emulator not found at {} (set FERRUM_SUSHY_EMULATOR, or install sushy-tools 2.2.0 in ~/.cache/ferrum/venv: scripts/setup.sh does)",
            spec.sushy.display()
        )));
    }
    for program in ["qemu-system-x86_64", "qemu-img", "ipmi_sim", "ipmitool", "ip"] {
        if !on_path(program) {
            return Err(LabError::Invalid(format!("`{program}` is not on PATH (scripts/setup.sh installs what the lab needs)")));
        }
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(LabError::Invalid("the lab creates a network namespace: run it as root".into()));
    }
    Ok(())
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Everything the supervisor started, stopped in reverse on [`Lab::stop`].
#[derive(Debug, Default)]
struct Lab {
    netns: Option<Arc<Netns>>,
    veth: Option<String>,
    /// The namespace's hosts file, once written.
    hosts: Option<String>,
    ferrumd: Option<Watchdog>,
    qemus: Vec<(String, Child)>,
    bmcs: Vec<(String, Child)>,
    vms: Arc<Vec<Vm>>,
}

/// Runs the supervisor until `stop` completes (the CLI makes it SIGTERM,
/// SIGINT or SIGHUP, registered before this is called so that a signal
/// during the start is not lost) or the start fails; everything it started
/// is stopped before it returns. The start itself is blocking: nothing
/// else runs on the caller's runtime.
pub async fn run(spec: &LabSpec, stop: impl std::future::Future<Output = &'static str>) -> Result<()> {
    // Detach from the terminal's session; `ferrum lab up` started us as an
    // ordinary child, so we are not a group leader and this succeeds.
    let _ = nix::unistd::setsid();
    let files = LabFiles::new(&spec.dir);
    let me = std::process::id();
    std::fs::write(files.pid(), format!("{me}\n")).map_err(LabError::io("cannot write", files.pid()))?;
    std::fs::write(files.pids(), "").map_err(LabError::io("cannot write", files.pids()))?;
    procs::record(&files.pids(), "supervisor", me)?;
    eprintln!("lab supervisor {me}: starting {} node(s) in {}", spec.nodes, spec.dir.display());

    let mut lab = Lab::default();
    let started = Instant::now();
    let outcome = start(spec, &files, &mut lab);
    let result = match outcome {
        Ok(state) => {
            let text = serde_json::to_string_pretty(&state).unwrap_or_default();
            match layout::write_atomic(&files.state(), &text) {
                Ok(()) => {
                    eprintln!("lab ready in {:.1} s", started.elapsed().as_secs_f64());
                    let why = stop.await;
                    eprintln!("{why}: stopping the lab");
                    Ok(())
                }
                Err(err) => Err(err),
            }
        }
        Err(err) => Err(err),
    };
    if let Err(err) = &result {
        eprintln!("error: {err}");
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            eprintln!("  caused by: {cause}");
            source = cause.source();
        }
    }
    lab.stop(&files);
    eprintln!("lab stopped");
    result
}

fn start(spec: &LabSpec, files: &LabFiles, lab: &mut Lab) -> Result<LabState> {
    preflight(spec)?;
    let k = spec.subnet_id;
    let ns_name = spec.netns_name();
    if crate::netns::exists(&ns_name) {
        return Err(LabError::Invalid(format!(
            "network namespace {ns_name} exists already: another lab uses --subnet-id {k} (stop it with `ferrum lab down`, or choose another id)"
        )));
    }
    // Fresh state: a lab starts blank.
    for stale in [files.state(), files.socket(), files.ferrumd_pid()] {
        let _ = std::fs::remove_file(stale);
    }
    let _ = std::fs::remove_dir_all(files.ferrumd_data());

    let (accel, why) = accel::choose(spec.accel, &spec.ramdisk_dir().join("vmlinuz"), &spec.dir);
    eprintln!("accelerator: {why}");

    // Network.
    let ns = Arc::new(Netns::create_named(&ns_name)?);
    lab.netns = Some(Arc::clone(&ns));
    let veth = layout::veth_root_name(k);
    std::fs::write(files.netns(), format!("{ns_name}\n{veth}\n")).map_err(LabError::io("cannot write", files.netns()))?;
    ns.add_bridge("br0", &format!("10.{k}.0.1/24"))?;
    if crate::netns::ip(&["link", "show", &veth]).is_ok() {
        let _ = crate::netns::ip(&["link", "delete", &veth]);
    }
    ns.add_veth_to_root(&veth, &format!("10.{k}.1.1/24"), "uplink", &format!("10.{k}.1.2/24"))?;
    lab.veth = Some(veth);
    let plans = spec.node_plans();
    // Before any process starts in the namespace: `ip netns exec` mounts
    // the file over /etc/hosts as it starts a program.
    lab.hosts = Some(ns_name.clone());
    write_hosts(&ns_name, &spec.site, &plans)?;

    // ferrumd.
    std::fs::write(files.ferrumd_config(), crate::ferrumd::config(spec)).map_err(LabError::io("cannot write", files.ferrumd_config()))?;
    lab.ferrumd = Some(Watchdog::start(spec, Arc::clone(&ns))?);

    // Nodes: QEMU, paused.
    let mut vms = Vec::new();
    for plan in &plans {
        let dir = spec.node_dir(&plan.name);
        std::fs::create_dir_all(&dir).map_err(LabError::io("cannot create", &dir))?;
        ns.add_tap_to_bridge(&plan.tap, "br0")?;
        let disk = dir.join("disk.qcow2");
        let _ = std::fs::remove_file(&disk);
        run_quiet(Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&disk).arg(DISK_SIZE_ARG), "qemu-img create")?;
        // SeaBIOS mirrors the firmware's text (its own, iPXE's) to this
        // serial port when fw_cfg names it: the console log then shows
        // the whole boot, not only the kernel's part.
        let sercon = dir.join("sercon-port");
        std::fs::write(&sercon, 0x3f8u16.to_le_bytes()).map_err(LabError::io("cannot write", &sercon))?;
        let qmp = dir.join("qmp.sock");
        let _ = std::fs::remove_file(&qmp);
        let child = spawn_logged(qemu_command(spec, &ns, plan, accel), &dir.join("qemu.log"), "qemu-system-x86_64")?;
        procs::record(&files.pids(), &format!("qemu {}", plan.name), child.id())?;
        lab.qemus.push((plan.name.clone(), child));
        vms.push(Vm::new(&plan.name, qmp));
    }
    for vm in &vms {
        vm.connect()?;
    }
    lab.vms = Arc::new(vms);

    // The control socket, before the BMCs that use it.
    let socket = files.socket();
    let listener = UnixListener::bind(&socket).map_err(LabError::io("cannot listen on", &socket))?;
    {
        let vms = Arc::clone(&lab.vms);
        std::thread::spawn(move || control::serve(listener, vms));
    }

    // BMCs.
    let password = layout::random_password()?;
    layout::write_private(&files.password(), &format!("{password}\n"))?;
    let htpasswd = if plans.iter().any(|p| p.bmc == BmcKind::Redfish) {
        Some(bmc::htpasswd_line(&bmc::sushy_python(&spec.sushy), &password)?)
    } else {
        None
    };
    for plan in &plans {
        let dir = spec.node_dir(&plan.name);
        let (cmd, role, log) = match plan.bmc {
            BmcKind::Ipmi => (bmc::ipmi_sim(spec, &ns, plan, &password)?, "ipmi_sim", dir.join("ipmi_sim.log")),
            BmcKind::Redfish => (bmc::sushy(spec, &ns, plan, htpasswd.as_deref().unwrap_or_default())?, "sushy", dir.join("sushy.log")),
        };
        let child = spawn_logged(cmd, &log, role)?;
        procs::record(&files.pids(), &format!("{role} {}", plan.name), child.id())?;
        lab.bmcs.push((plan.name.clone(), child));
    }

    // Ready when ferrumd and every BMC answer.
    let deadline = Instant::now() + READY_DEADLINE;
    let url = format!("http://10.{k}.1.2:{FERRUMD_PORT}");
    wait_for("ferrumd to answer /healthz", deadline, || {
        http_get(&format!("10.{k}.1.2:{FERRUMD_PORT}"), "/healthz").is_some_and(|r| r.starts_with("HTTP/1.1 200"))
            && files.admin_token().is_file()
    })?;
    for plan in &plans {
        match plan.bmc {
            BmcKind::Ipmi => wait_for(&format!("the IPMI BMC of {}", plan.name), deadline, || ipmi_answers(&ns, plan, &password))?,
            BmcKind::Redfish => {
                let port = plan.bmc_port;
                wait_for(&format!("the Redfish BMC of {}", plan.name), deadline, || {
                    ns.run_in(move || http_get(&format!("127.0.0.1:{port}"), "/redfish/v1/").is_some()).unwrap_or(false)
                })?
            }
        }
        for (name, child) in lab.bmcs.iter_mut().chain(lab.qemus.iter_mut()) {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(LabError::Invalid(format!(
                    "a process of {name} exited during start ({status}): see its log under nodes/{name}/"
                )));
            }
        }
    }
    Ok(LabState {
        dir: spec.dir.clone(),
        netns: ns_name,
        subnet_id: k,
        site: spec.site.clone(),
        cluster: spec.cluster.clone(),
        domain: layout::DOMAIN.to_owned(),
        url,
        node_url: format!("http://10.{k}.0.1:{}", layout::BOOT_PORT),
        memory_mib: spec.memory_mib,
        accel,
        supervisor_pid: std::process::id(),
        nodes: plans,
    })
}

const DISK_SIZE_ARG: &str = "2G";

/// Writes `/etc/netns/<netns>/hosts` ([`layout::hosts_file`]).
fn write_hosts(netns: &str, site: &str, plans: &[NodePlan]) -> Result<()> {
    let path = layout::hosts_path(netns);
    let host = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(LabError::io("cannot create", dir))?;
    }
    std::fs::write(&path, layout::hosts_file(&host, site, plans)).map_err(LabError::io("cannot write", &path))
}

/// Removes what [`write_hosts`] wrote: the file, and its directory when
/// nothing else is in it.
pub fn remove_hosts(netns: &str) {
    let path = layout::hosts_path(netns);
    let _ = std::fs::remove_file(&path);
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir(dir);
    }
}

/// QEMU for `plan`: paused (`-S`), NIC first in the boot order, serial
/// console appended to `serial.log`, QMP on `qmp.sock`.
fn qemu_command(spec: &LabSpec, ns: &Netns, plan: &NodePlan, accel: Accel) -> Command {
    let dir = spec.node_dir(&plan.name);
    let mut cmd = ns.command("qemu-system-x86_64");
    cmd.args(["-name", &plan.name, "-accel", if accel == Accel::Kvm { "kvm" } else { "tcg" }])
        .args(["-smp", "1", "-m", &spec.memory_mib.to_string()])
        .args(["-nodefaults", "-display", "none", "-no-shutdown", "-S"])
        .args(["-netdev", &format!("tap,id=n0,ifname={},script=no,downscript=no", plan.tap)])
        .args(["-device", &format!("virtio-net-pci,id=nic0,netdev=n0,mac={},bootindex=1", plan.mac)])
        .args(["-drive", &format!("file={},if=none,id=d0,format=qcow2,cache=unsafe", dir.join("disk.qcow2").display())])
        .args(["-device", "virtio-blk-pci,id=disk0,drive=d0,bootindex=2"])
        .args(["-chardev", &format!("file,id=serial0,path={},append=on", dir.join("serial.log").display())])
        .args(["-serial", "chardev:serial0"])
        .args(["-fw_cfg", &format!("name=etc/sercon-port,file={}", dir.join("sercon-port").display())])
        .args(["-qmp", &format!("unix:{},server=on,wait=off", dir.join("qmp.sock").display())]);
    cmd
}

fn spawn_logged(mut cmd: Command, log_path: &std::path::Path, program: &str) -> Result<Child> {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log_path).map_err(LabError::io("cannot open", log_path))?;
    let err = log.try_clone().map_err(LabError::io("cannot open", log_path))?;
    cmd.stdin(Stdio::null()).stdout(log).stderr(err).spawn().map_err(|source| LabError::Spawn { program: program.to_owned(), source })
}

fn run_quiet(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|source| LabError::Spawn { program: what.to_owned(), source })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LabError::Invalid(format!("`{what}` failed: {}", String::from_utf8_lossy(&out.stderr).trim())))
    }
}

fn ipmi_answers(ns: &Netns, plan: &NodePlan, password: &str) -> bool {
    ns.command("ipmitool")
        .args(["-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-p", &plan.bmc_port.to_string(), "-U", layout::BMC_USER, "-E"])
        .args(["-N", "1", "-R", "1", "power", "status"])
        .env("IPMI_PASSWORD", password)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A plain HTTP/1.1 GET; the whole answer, or None when nothing answers.
fn http_get(addr: &str, path: &str) -> Option<String> {
    let addr = addr.parse().ok()?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    (!answer.is_empty()).then_some(answer)
}

fn wait_for(what: &str, deadline: Instant, mut check: impl FnMut() -> bool) -> Result<()> {
    let started = Instant::now();
    loop {
        if check() {
            eprintln!("{what}: ok after {:.1} s", started.elapsed().as_secs_f64());
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(LabError::Timeout { what: what.to_owned(), seconds: READY_DEADLINE.as_secs() });
        }
        // Justified sleep: paces a bounded readiness poll of processes
        // that signal nothing when they start serving.
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for `child` at most `limit`; SIGKILL (by its PID) after that.
fn reap(name: &str, child: &mut Child, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) if Instant::now() >= deadline => {
                eprintln!("{name} (pid {}) did not exit in {} s: SIGKILL", child.id(), limit.as_secs());
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            // Justified sleep: paces a bounded wait for a child's exit.
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

impl Lab {
    fn stop(&mut self, files: &LabFiles) {
        for (name, child) in &mut self.bmcs {
            procs::signal(child.id(), Signal::SIGTERM);
            reap(&format!("BMC of {name}"), child, QUIT_GRACE);
        }
        self.bmcs.clear();
        for ((name, child), vm) in self.qemus.iter_mut().zip(self.vms.iter()) {
            if matches!(child.try_wait(), Ok(None))
                && let Err(err) = vm.quit()
            {
                eprintln!("QMP quit of {name}: {err}");
            }
            reap(&format!("QEMU of {name}"), child, QUIT_GRACE);
        }
        // Nodes whose QMP never connected.
        for (name, child) in self.qemus.iter_mut().skip(self.vms.len()) {
            reap(&format!("QEMU of {name}"), child, Duration::ZERO);
        }
        self.qemus.clear();
        if let Some(watchdog) = self.ferrumd.take() {
            watchdog.stop(Duration::from_secs(10));
        }
        if let Some(veth) = self.veth.take() {
            // Goes with the namespace; delete explicitly in case.
            let _ = crate::netns::ip(&["link", "delete", &veth]);
        }
        // The last reference: dropping it deletes the namespace.
        self.netns = None;
        if let Some(netns) = self.hosts.take() {
            remove_hosts(&netns);
        }
        for file in [files.state(), files.socket(), files.pid(), files.ferrumd_pid(), files.netns()] {
            let _ = std::fs::remove_file(file);
        }
    }
}
