//! `SimNode`: a simulated bare-metal node, for the operations engine's
//! integration tests (`operations.rs`). Its BMC is a `SimBmc` of the
//! harness's `SimBmcs`; when that BMC powers it on, the node does what a
//! real one does on the provisioning network, over the controller's real
//! boot and agent endpoints:
//!
//! - network boot (the default, or BMC boot device PXE): it asks
//!   `/boot/ipxe?mac=` for its script from its inventory address (a
//!   loopback address of its own, `127.x.y.z`); a ramdisk script boots the
//!   deploy ramdisk, a local one its disk;
//! - the ramdisk's agent speaks agent protocol v1 the way `ferrum-agent
//!   run` does: it registers with the script's one-time token (a new
//!   generation at each boot), uploads its inventory, long-polls commands,
//!   reports progress and each command's result, fetches the image of a
//!   write from the controller and checks its size and sha256, and after a
//!   `reboot` or `kexec` (reported first) boots again;
//! - the system on its disk runs an SSH server (russh, on the node's
//!   address, port 22) that lets root in with the keys the agent installed
//!   and answers the controller's check command (`uname -a`).
//!
//! Each node is scriptable: the reply to each agent command (done, failed
//! with a message, hanging, or claimed done without effect), an agent that
//! never registers, and hardware that no longer matches the node's
//! reference (the agent reports what the node has). Its journal records
//! what it did, for assertions.
//!
//! The disk is a model, not bytes: the image is remembered as written,
//! with its partition table, keys and hostname. The real peers (QEMU
//! nodes, the real agent and ramdisk, ipmi_sim and sushy, dropbear) are
//! the QEMU end-to-end test's, `tests/tests/e2e/deploy.rs`. Port 22 of a
//! loopback address needs root (as the dropbear tests' `unshare` does),
//! and no SSH server of the host listening on every address (the journal
//! says so: "system: sshd cannot listen on ...").

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ferrum_api::agent::{AGENT_PROTOCOL, AgentAction, AgentCommand, AgentRegister, AgentSession, ImageFormat};
use ferrum_controller::model::BmcAddress;
use ferrum_controller::power::sim::SimBmc;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{HashAlg, PrivateKey, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::harness::TestContext;

/// RAM of every simulated node (64 GiB), as its reference says.
pub const RAM: u64 = 64 << 30;
/// Its one disk, `sda` (480 GB).
pub const DISK: u64 = 480_103_981_056;
/// How long the agent holds a command request open.
const LONG_POLL_MS: u64 = 5_000;

/// How the agent answers one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Carries it out and reports success.
    Done,
    /// Reports this failure (the agent's named error), changing nothing.
    Fail(String),
    /// Never reports (a write stuck on a dying disk).
    Hang,
    /// Reports success without doing anything (a wipe that did not wipe).
    Pretend,
}

/// A simulated node, enrolled in a controller; its tasks end when it is
/// dropped.
#[derive(Debug)]
pub struct SimNode {
    pub name: String,
    node: Arc<Node>,
    task: JoinHandle<()>,
}

/// What the node is and holds.
#[derive(Debug)]
struct Node {
    name: String,
    mac: String,
    ip: Ipv4Addr,
    /// The controller's boot listener, where firmware asks for its script.
    boot_url: String,
    bmc: Arc<SimBmc>,
    /// HTTP from the node's own address.
    client: reqwest::Client,
    host_key: PrivateKey,
    hardware: Mutex<Hardware>,
    replies: Mutex<HashMap<&'static str, VecDeque<Reply>>>,
    silent: AtomicBool,
    journal: Mutex<Vec<String>>,
}

#[derive(Clone, Debug)]
struct Hardware {
    ram_size: u64,
    disks: Vec<Disk>,
}

#[derive(Clone, Debug)]
struct Disk {
    /// The kernel name (`sda`).
    name: String,
    size: u64,
    partition_table: Option<String>,
    system: Option<System>,
}

/// A written system on a disk.
#[derive(Clone, Debug, Default)]
struct System {
    image_sha256: String,
    authorized_keys: Vec<String>,
    hostname: Option<String>,
}

/// Where a boot goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Boot {
    Network,
    Disk,
}

/// What the running system asks of the node.
#[derive(Debug)]
enum Event {
    /// A warm reboot (the agent's `reboot`).
    Reboot,
    /// Straight into the written system (the agent's `kexec`).
    Kexec,
    /// The agent's `power_off`.
    Halt,
}

/// A task that ends when dropped (what runs on the node now).
#[derive(Debug)]
struct Running(JoinHandle<()>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SimNode {
    /// Creates node `name` in `ctx`'s controller (admin, `POST /nodes`)
    /// with its BMC, MAC, a loopback inventory address of its own and a
    /// reference description of its hardware, and starts simulating it
    /// (powered off, blank disk).
    pub async fn enrol(ctx: &TestContext, name: &str) -> SimNode {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // A second octet per test process, so two suites running at once
        // do not meet on port 22.
        let octet = u8::try_from(100 + std::process::id() % 150).expect("below 256");
        let [third, fourth] = [u8::try_from(n / 250).expect("fewer than 64k nodes"), u8::try_from(n % 250 + 1).expect("below 256")];
        let ip = Ipv4Addr::new(127, octet, third, fourth);
        let mac = format!("02:5e:{octet:02x}:{third:02x}:{fourth:02x}:01");
        let bmc_url = format!("ipmi://admin:pw@10.{octet}.{third}.{fourth}:623");
        let bmc = ctx.bmcs.bmc(&BmcAddress::parse(&bmc_url).expect("BMC URL").endpoint());
        let client = reqwest::Client::builder()
            .local_address(IpAddr::V4(ip))
            .timeout(Duration::from_millis(LONG_POLL_MS) + Duration::from_secs(10))
            .build()
            .expect("HTTP client");
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("randomness");
        let node = Arc::new(Node {
            name: name.to_owned(),
            mac,
            ip,
            boot_url: ctx.boot_url.clone(),
            bmc: bmc.clone(),
            client,
            host_key: PrivateKey::from(Ed25519Keypair::from_seed(&seed)),
            hardware: Mutex::new(Hardware {
                ram_size: RAM,
                disks: vec![Disk { name: "sda".into(), size: DISK, partition_table: None, system: None }],
            }),
            replies: Mutex::default(),
            silent: AtomicBool::new(false),
            journal: Mutex::default(),
        });
        let task = tokio::spawn(run(node.clone(), bmc.watch()));
        let body = json!({"name": name, "site": "lab", "cluster": "sim", "macs": [node.mac], "ip": ip.to_string(), "bmc": bmc_url,
            "reference": reference(name)});
        ctx.post("/api/v1/nodes", &ctx.admin, body).await.expect(201);
        SimNode { name: name.to_owned(), node, task }
    }

    /// The replies to the next commands of `kind` (`write_image`, `wipe`,
    /// ...), in order; once they are used up, commands succeed.
    pub fn reply(&self, kind: &'static str, replies: impl IntoIterator<Item = Reply>) {
        lock(&self.node.replies).entry(kind).or_default().extend(replies);
    }

    /// Whether the ramdisk's agent stays silent (never registers).
    pub fn silent(&self, silent: bool) {
        self.node.silent.store(silent, Ordering::Relaxed);
    }

    /// Changes the node's RAM (a DIMM lost): the agent reports it, the
    /// reference still says [`RAM`].
    pub fn set_ram(&self, bytes: u64) {
        lock(&self.node.hardware).ram_size = bytes;
    }

    /// Everything the node did, in order.
    pub fn journal(&self) -> Vec<String> {
        lock(&self.node.journal).clone()
    }

    /// The lines of the journal that start with `prefix`.
    pub fn noted(&self, prefix: &str) -> Vec<String> {
        self.journal().into_iter().filter(|l| l.starts_with(prefix)).collect()
    }

    pub fn bmc(&self) -> &SimBmc {
        &self.node.bmc
    }

    pub fn ip(&self) -> Ipv4Addr {
        self.node.ip
    }

    /// The disk's partition table (`gpt` once an image is written).
    pub fn partition_table(&self) -> Option<String> {
        lock(&self.node.hardware).disks[0].partition_table.clone()
    }

    /// The sha256 of the image on the disk, and root's authorized keys in it.
    pub fn written(&self) -> Option<(String, Vec<String>)> {
        let hardware = lock(&self.node.hardware);
        hardware.disks[0].system.as_ref().map(|s| (s.image_sha256.clone(), s.authorized_keys.clone()))
    }
}

impl Drop for SimNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The node's reference description: what the agent reports until told
/// otherwise.
fn reference(name: &str) -> Value {
    json!({
        "uid": name,
        "processor": {"model": "Intel Xeon", "version": "Gold 6126"},
        "architecture": {"nb_procs": 2, "nb_cores": 24},
        "main_memory": {"ram_size": RAM},
        "storage_devices": [{"id": "disk0", "device": "sda", "size": DISK}]
    })
}

impl Node {
    fn note(&self, line: impl Into<String>) {
        lock(&self.journal).push(line.into());
    }

    fn next_reply(&self, kind: &'static str) -> Reply {
        lock(&self.replies).get_mut(kind).and_then(VecDeque::pop_front).unwrap_or(Reply::Done)
    }

    /// The inventory the agent uploads: the hardware as it is now.
    fn report(&self) -> Value {
        let hardware = lock(&self.hardware).clone();
        let disks: Vec<Value> = hardware
            .disks
            .iter()
            .enumerate()
            .map(|(i, d)| json!({"id": format!("disk{i}"), "device": d.name, "size": d.size, "partition_table": d.partition_table}))
            .collect();
        json!({
            "schema_version": 1, "agent_version": "sim",
            "processor": {"model": "Intel Xeon", "version": "Gold 6126", "other_description": "Intel(R) Xeon(R) Gold 6126 CPU @ 2.60GHz"},
            "architecture": {"nb_procs": 2, "nb_cores": 24, "nb_threads": 48},
            "main_memory": {"ram_size": hardware.ram_size},
            "storage_devices": disks,
            "network_adapters": [{"device": "eth0", "mac": self.mac}],
            "pci_ids_source": {"origin": "embedded"}
        })
    }

    /// The disk `/dev/<name>`, changed by `f`.
    fn with_disk<T>(&self, device: &str, f: impl FnOnce(&mut Disk) -> Result<T, String>) -> Result<T, String> {
        let mut hardware = lock(&self.hardware);
        let name = device.strip_prefix("/dev/").unwrap_or(device);
        let disk = hardware.disks.iter_mut().find(|d| d.name == name).ok_or_else(|| format!("{device}: no such disk"))?;
        f(disk)
    }

    /// The node's iPXE script, asked from its address.
    async fn ipxe(&self) -> Result<Script, String> {
        let url = format!("{}/boot/ipxe?mac={}", self.boot_url, self.mac);
        let resp = self.client.get(url).send().await.map_err(|e| format!("{e:#}"))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| format!("{e:#}"))?;
        if !status.is_success() {
            return Err(format!("{status}: {text}"));
        }
        let arg = |key: &str| text.split_whitespace().find_map(|w| w.strip_prefix(key)).map(str::to_owned);
        match (arg("ferrum.url="), arg("ferrum.node="), arg("ferrum.token=")) {
            (Some(url), Some(node), Some(token)) => Ok(Script::Ramdisk { url, node, token }),
            _ if text.contains("sanboot") => Ok(Script::Local),
            _ => Err(format!("a script that boots nothing known: {text}")),
        }
    }
}

/// What an iPXE script boots.
enum Script {
    /// The deploy ramdisk, with its kernel command line's arguments.
    Ramdisk {
        url: String,
        node: String,
        token: String,
    },
    Local,
}

/// The node: follows its BMC's power operations and the running system's
/// requests, booting what they say.
async fn run(node: Arc<Node>, mut bmc: watch::Receiver<usize>) {
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut running: Option<Running> = None;
    let (mut carried_out, mut powered, mut next_boot) = (0, false, None);
    loop {
        tokio::select! {
            changed = bmc.changed() => {
                if changed.is_err() {
                    return;
                }
                let operations = node.bmc.operations();
                for op in operations.iter().skip(carried_out) {
                    match op.as_str() {
                        "boot pxe" => next_boot = Some(Boot::Network),
                        "boot disk" => next_boot = Some(Boot::Disk),
                        // Already on: nothing boots (the one-time device is spent, as the SimBmc does).
                        "on" if powered => next_boot = None,
                        "on" | "cycle" => {
                            powered = true;
                            running.replace(boot(&node, next_boot.take().unwrap_or(Boot::Network), &events_tx));
                        }
                        "off" | "soft-off" => {
                            powered = false;
                            running.take();
                            node.note("power: off");
                        }
                        _ => {}
                    }
                }
                carried_out = operations.len();
            }
            Some(event) = events.recv() => match event {
                Event::Reboot => {
                    running.replace(boot(&node, next_boot.take().unwrap_or(Boot::Network), &events_tx));
                }
                Event::Kexec => {
                    node.note("kexec: into the written system");
                    running.replace(Running(tokio::spawn(system(node.clone()))));
                }
                Event::Halt => {
                    running.take();
                    node.note("power: off (the agent's power_off)");
                }
            },
        }
    }
}

fn boot(node: &Arc<Node>, from: Boot, events: &mpsc::UnboundedSender<Event>) -> Running {
    node.note(format!("power: boots from {}", if from == Boot::Network { "the network" } else { "its disk" }));
    Running(tokio::spawn(firmware(node.clone(), from, events.clone())))
}

async fn firmware(node: Arc<Node>, from: Boot, events: mpsc::UnboundedSender<Event>) {
    if from == Boot::Network {
        match node.ipxe().await {
            Ok(Script::Ramdisk { node: name, .. }) if name != node.name => return node.note(format!("ipxe: a script for {name}")),
            Ok(Script::Ramdisk { url, token, .. }) => return ramdisk(node, url, token, events).await,
            Ok(Script::Local) => {}
            Err(e) => return node.note(format!("ipxe: {e}")),
        }
    }
    system(node).await;
}

/// The deploy ramdisk: the agent's loop.
async fn ramdisk(node: Arc<Node>, url: String, token: String, events: mpsc::UnboundedSender<Event>) {
    if node.silent.load(Ordering::Relaxed) {
        node.note("ramdisk: the agent stays silent");
        return std::future::pending().await;
    }
    let agent = match Agent::register(node.clone(), url, token).await {
        Ok(agent) => agent,
        Err(e) => return node.note(format!("ramdisk: registration refused: {e}")),
    };
    node.note(format!("agent: registered, generation {}", agent.generation));
    if let Err(e) = agent.upload_inventory().await {
        return node.note(format!("agent: inventory refused: {e}"));
    }
    loop {
        let command = match agent.next_command().await {
            Ok(command) => command,
            Err(e) => return node.note(format!("agent: generation {} ended: {e}", agent.generation)),
        };
        if command.action == AgentAction::Wait {
            continue;
        }
        match agent.execute(&command).await {
            Ok(None) => {}
            Ok(Some(event)) => {
                let _ = events.send(event);
                return;
            }
            Err(e) => return node.note(format!("agent: generation {} ended: {e}", agent.generation)),
        }
    }
}

/// A registered agent session.
struct Agent {
    node: Arc<Node>,
    base: String,
    session: String,
    generation: i64,
}

impl Agent {
    async fn register(node: Arc<Node>, base: String, token: String) -> Result<Agent, String> {
        let body = AgentRegister { token, node: node.name.clone(), protocol: AGENT_PROTOCOL, agent_version: "sim".into() };
        let resp = node.client.post(format!("{base}/agent/v1/register")).json(&body).send().await.map_err(|e| format!("{e:#}"))?;
        let session: AgentSession = answer(resp).await?;
        Ok(Agent { node, base, session: session.session, generation: session.generation })
    }

    /// Posts `body`; a 404 (the controller no longer waits for this
    /// command) is not an error, as for the real agent.
    async fn post(&self, path: &str, body: &Value) -> Result<(), String> {
        let resp = self
            .node
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.session)
            .json(body)
            .send()
            .await
            .map_err(|e| format!("{e:#}"))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            self.node.note(format!("agent: {path} dropped by the controller"));
            return Ok(());
        }
        answer::<Value>(resp).await.map(drop)
    }

    async fn upload_inventory(&self) -> Result<(), String> {
        self.post("/agent/v1/inventory", &json!({"generation": self.generation, "report": self.node.report()})).await
    }

    async fn next_command(&self) -> Result<AgentCommand, String> {
        let url = format!("{}/agent/v1/command?wait_ms={LONG_POLL_MS}", self.base);
        let resp = self.node.client.get(url).bearer_auth(&self.session).send().await.map_err(|e| format!("{e:#}"))?;
        answer(resp).await
    }

    /// Carries out a command as scripted, reports its result, and says
    /// what the node does next when it leaves the ramdisk.
    async fn execute(&self, command: &AgentCommand) -> Result<Option<Event>, String> {
        let kind = command.action.kind();
        let reply = self.node.next_reply(kind);
        let outcome = match &reply {
            Reply::Done => self.carry_out(command).await,
            Reply::Fail(why) => Err(why.clone()),
            Reply::Hang => {
                self.node.note(format!("agent: {kind} hangs"));
                return std::future::pending().await;
            }
            Reply::Pretend => Ok(()),
        };
        match &outcome {
            Ok(()) if reply == Reply::Pretend => self.node.note(format!("agent: {kind} claimed done, nothing done")),
            Ok(()) => self.node.note(format!("agent: {kind} done")),
            Err(e) => self.node.note(format!("agent: {kind} failed: {e}")),
        }
        let done = outcome.is_ok() && reply == Reply::Done;
        let body = json!({"generation": self.generation, "error": outcome.err()});
        self.post(&format!("/agent/v1/commands/{}/result", command.id), &body).await?;
        Ok(match command.action {
            AgentAction::Reboot if done => Some(Event::Reboot),
            AgentAction::Kexec { .. } if done => Some(Event::Kexec),
            AgentAction::PowerOff if done => Some(Event::Halt),
            _ => None,
        })
    }

    async fn progress(&self, id: i64, done: u64, total: Option<u64>) -> Result<(), String> {
        self.post(&format!("/agent/v1/commands/{id}/progress"), &json!({"generation": self.generation, "done": done, "total": total})).await
    }

    async fn carry_out(&self, command: &AgentCommand) -> Result<(), String> {
        let node = &self.node;
        match &command.action {
            AgentAction::Wait | AgentAction::Reboot | AgentAction::PowerOff => Ok(()),
            AgentAction::Inventory => self.upload_inventory().await,
            AgentAction::WriteImage { url, format, sha256, size, device } => {
                let room = node.with_disk(device, |d| Ok(d.size))?;
                if *size > room {
                    return Err(format!("the image ({size} bytes) does not fit {device} ({room} bytes)"));
                }
                // The session goes to the controller's own images only.
                let mut req = node.client.get(url);
                if url.starts_with(&format!("{}/", self.base)) {
                    req = req.bearer_auth(&self.session);
                }
                let mut resp = req.send().await.map_err(|e| format!("{url}: {e:#}"))?;
                if !resp.status().is_success() {
                    return Err(format!("{url}: {}", resp.status()));
                }
                let (mut hash, mut written) = (Sha256::new(), 0u64);
                while let Some(chunk) = resp.chunk().await.map_err(|e| format!("{url}: {e:#}"))? {
                    hash.update(&chunk);
                    written += chunk.len() as u64;
                    self.progress(command.id, written, Some(*size)).await?;
                }
                let seen = hex::encode(hash.finalize());
                if seen != *sha256 {
                    return Err(format!("sha256 of {url} is {seen}, expected {sha256}"));
                }
                if *format == ImageFormat::Raw && written != *size {
                    return Err(format!("{url} is {written} bytes, expected {size}"));
                }
                node.with_disk(device, |d| {
                    d.partition_table = Some("gpt".into());
                    d.system = Some(System { image_sha256: seen, ..System::default() });
                    Ok(())
                })
            }
            AgentAction::InstallKeys { device, root_partition, ssh_keys, hostname } => node.with_disk(device, |d| {
                let system = d.system.as_mut().ok_or_else(|| format!("{device}: no partition {root_partition}"))?;
                system.authorized_keys = ssh_keys.clone();
                system.hostname = Some(hostname.clone());
                Ok(())
            }),
            AgentAction::Wipe { devices, .. } => {
                let mut erased = 0;
                for device in devices {
                    erased += node.with_disk(device, |d| {
                        d.partition_table = None;
                        d.system = None;
                        Ok(d.size)
                    })?;
                }
                self.progress(command.id, erased, None).await
            }
            AgentAction::Kexec { device, kernel, .. } => {
                node.with_disk(device, |d| d.system.as_ref().map(drop).ok_or_else(|| format!("{device}: no {kernel}")))
            }
        }
    }
}

/// The body of a successful answer, or the status and error.
async fn answer<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> Result<T, String> {
    let status = resp.status();
    let text = resp.text().await.map_err(|e| format!("{e:#}"))?;
    if !status.is_success() {
        return Err(format!("{status}: {text}"));
    }
    let text = if text.is_empty() { "null" } else { &text };
    serde_json::from_str(text).map_err(|e| format!("{e}: {text}"))
}

/// The written system: its SSH server, until the node goes down.
async fn system(node: Arc<Node>) {
    let written = lock(&node.hardware).disks[0].system.clone();
    let Some(system) = written else {
        return node.note("system: no operating system on the disk");
    };
    let addr = SocketAddr::from((node.ip, 22));
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(e) => return node.note(format!("system: sshd cannot listen on {addr}: {e}")),
    };
    node.note(format!("system: up as {}", system.hostname.as_deref().unwrap_or("(no hostname)")));
    let config = Arc::new(russh::server::Config {
        keys: vec![node.host_key.clone()],
        auth_rejection_time: Duration::from_millis(10),
        auth_rejection_time_initial: Some(Duration::ZERO),
        inactivity_timeout: Some(Duration::from_secs(10)),
        ..russh::server::Config::default()
    });
    // Sessions end with the system.
    let mut sessions = tokio::task::JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        let sshd = Sshd { node: node.clone(), system: system.clone() };
        let config = config.clone();
        sessions.spawn(async move {
            if let Ok(session) = russh::server::run_stream(config, stream, sshd).await {
                let _ = session.await;
            }
        });
        while sessions.try_join_next().is_some() {}
    }
}

/// One SSH connection to the written system.
struct Sshd {
    node: Arc<Node>,
    system: System,
}

impl russh::server::Handler for Sshd {
    type Error = russh::Error;

    async fn auth_publickey(&mut self, user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        let fingerprint = key.public_key.fingerprint(HashAlg::Sha256);
        let authorized = self
            .system
            .authorized_keys
            .iter()
            .filter_map(|line| PublicKey::from_openssh(line).ok())
            .any(|k| k.key_data() == key.public_key.key_data());
        if user == "root" && authorized {
            self.node.note(format!("sshd: root logged in with {fingerprint}"));
            Ok(Auth::Accept)
        } else {
            self.node.note(format!("sshd: {user} refused with {fingerprint}"));
            Ok(Auth::reject())
        }
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(&mut self, channel: ChannelId, data: &[u8], session: &mut Session) -> Result<(), Self::Error> {
        let command = String::from_utf8_lossy(data).into_owned();
        self.node.note(format!("sshd: root ran '{command}'"));
        session.channel_success(channel)?;
        let host = self.system.hostname.clone().unwrap_or_else(|| "localhost".into());
        if command == "uname -a" {
            session.data(channel, format!("Linux {host} 6.1.0-sim #1 SMP PREEMPT_DYNAMIC x86_64 GNU/Linux\n").into_bytes())?;
            session.exit_status_request(channel, 0)?;
        } else {
            session.extended_data(channel, 1, format!("sh: {command}: not found\n").into_bytes())?;
            session.exit_status_request(channel, 127)?;
        }
        session.eof(channel)?;
        session.close(channel)?;
        Ok(())
    }
}

/// A raw image of `size` bytes in `ctx`'s images directory, published as
/// public environment `name` (admin); returns the image's sha256.
pub async fn publish_image(ctx: &TestContext, name: &str, size: usize) -> String {
    let bytes: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let dir = ctx.dir.path().join("images");
    std::fs::create_dir_all(&dir).expect("images directory");
    std::fs::write(dir.join(format!("{name}.raw")), &bytes).expect("image written");
    let env = json!({"name": name, "version": 1, "description": "simulated image", "image": format!("{name}.raw"), "format": "raw",
        "sha256": sha256, "size": size, "root_partition": 1, "visibility": "public"});
    ctx.post("/api/v1/environments", &ctx.admin, env).await.expect(201);
    sha256
}
