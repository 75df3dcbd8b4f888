//! `ferrum lab up|down` (and the hidden `lab daemon` and `lab bmc-hook`):
//! the virtual lab of `ferrum_lab`, from the command line.
//!
//! `up` starts the supervisor (`ferrum lab daemon`, detached, output in
//! `DIR/lab.log`), waits (bounded) for its `lab.json`, then does what an
//! admin would: registers the built environments (`ferrum env add`),
//! writes the nodes' Grid'5000 reference tree (`DIR/reference/`) and
//! enrols every node from it, as `ferrum node import` reads a tree, with
//! its BMC URL (`ferrum node add --reference`) through the API, waits for
//! the nodes to leave `enrolling`, and writes `DIR/lab.env`. `down` stops it. These commands
//! need no token: the lab's ferrumd creates its own admin token.
//!
//! Must not: print the admin token or a BMC password (they are in
//! `lab.env` and `bmc-password`, mode 0600).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferrum_api::{Node, NodeCreate, NodeState};
use ferrum_lab::layout::{self, Accel, BmcKind, LabFiles, LabSpec, LabState};
use ferrum_lab::reference::{self, Lies};
use ferrum_lab::{supervisor, teardown};

use super::out;
use crate::args::{LabAccel, LabCommand, LabSpecArgs, LabUpArgs};
use crate::client::{Client, NoQuery};

/// How long `lab up` waits for the supervisor to report the lab ready.
const READY_WAIT: Duration = Duration::from_secs(180);
/// How long `lab up` waits for the nodes to leave `enrolling`.
const ENROL_WAIT: Duration = Duration::from_secs(120);

pub async fn run(cmd: LabCommand) -> Result<()> {
    match cmd {
        LabCommand::Up(args) => up(args).await,
        LabCommand::Down { dir } => down(&absolute(&dir)?),
        LabCommand::Daemon(args) => {
            let spec = spec(&args.spec)?;
            // Registered before the start, so a signal during it is kept.
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
            let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
            let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
            let stop = async move {
                tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                    _ = hup.recv() => "SIGHUP",
                }
            };
            supervisor::run(&spec, stop).await.context("the lab supervisor failed")
        }
        LabCommand::BmcHook { dir, node, args } => {
            let text = ferrum_lab::bmc::chassis_control(&LabFiles::new(&dir).socket(), &node, &args)?;
            out(&text)
        }
    }
}

fn absolute(dir: &Path) -> Result<PathBuf> {
    std::path::absolute(dir).with_context(|| format!("--dir {}: cannot make it absolute", dir.display()))
}

fn home() -> Result<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from).context("HOME is not set: give --images")
}

/// The supervisor's spec from the flags and their defaults.
fn spec(args: &LabSpecArgs) -> Result<LabSpec> {
    let ferrum = std::env::current_exe().context("cannot find this ferrum executable")?;
    let ferrumd = match &args.ferrumd {
        Some(path) => absolute(path)?,
        None => ferrum.with_file_name("ferrumd"),
    };
    let images = match &args.images {
        Some(path) => absolute(path)?,
        None => home()?.join(".cache/ferrum/images"),
    };
    let sushy = match std::env::var_os("FERRUM_SUSHY_EMULATOR").filter(|s| !s.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => home()?.join(".cache/ferrum/venv/bin/sushy-emulator"),
    };
    let accel = match args.accel {
        LabAccel::Auto => Accel::Auto,
        LabAccel::Tcg => Accel::Tcg,
        LabAccel::Kvm => Accel::Kvm,
    };
    Ok(LabSpec {
        dir: absolute(&args.dir)?,
        nodes: args.nodes,
        site: args.site.clone(),
        cluster: args.cluster.clone(),
        subnet_id: args.subnet_id,
        memory_mib: args.memory,
        images,
        ferrumd,
        ferrum,
        sushy,
        accel,
        default_environment: args.default_env.clone(),
    })
}

async fn up(args: LabUpArgs) -> Result<()> {
    let started = Instant::now();
    let spec = spec(&args.spec)?;
    let files = LabFiles::new(&spec.dir);
    let names: Vec<String> = spec.node_plans().into_iter().map(|p| p.name).collect();
    for (flag, list) in
        [("--fake-memory", &args.fake_memory), ("--fake-gpu", &args.fake_gpu), ("--wrong-bmc-password", &args.wrong_bmc_password)]
    {
        if let Some(bad) = list.iter().find(|n| !names.contains(n)) {
            bail!("{flag} {bad}: no such node in this lab (nodes: {})", names.join(", "));
        }
    }
    if let Some(pid) = teardown::running(&spec.dir) {
        bail!(
            "a lab already runs in {} (supervisor pid {pid}): stop it first with `ferrum lab down --dir {}`",
            spec.dir.display(),
            spec.dir.display()
        );
    }
    supervisor::preflight(&spec)?;
    if spec.memory_mib < layout::RAMDISK_MEMORY_MIB {
        eprintln!("warning: --memory {} is below the {} MiB the deploy ramdisk needs", spec.memory_mib, layout::RAMDISK_MEMORY_MIB);
    }
    std::fs::create_dir_all(&spec.dir).with_context(|| format!("cannot create the lab directory {}", spec.dir.display()))?;
    let _ = std::fs::remove_file(files.state());
    let _ = std::fs::remove_file(files.env());

    // The supervisor: this same binary, detached (it calls setsid).
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(files.log())
        .with_context(|| format!("cannot open {}", files.log().display()))?;
    let log_err = log.try_clone()?;
    let mut daemon = Command::new(&spec.ferrum);
    daemon
        .args(["lab", "daemon", "--dir"])
        .arg(&spec.dir)
        .args(["--nodes", &spec.nodes.to_string(), "--subnet-id", &spec.subnet_id.to_string()])
        .args(["--site", &spec.site, "--cluster", &spec.cluster])
        .args(["--memory", &spec.memory_mib.to_string(), "--accel", spec.accel.as_str()])
        .arg("--images")
        .arg(&spec.images)
        .arg("--ferrumd")
        .arg(&spec.ferrumd)
        .args(spec.default_environment.iter().flat_map(|e| ["--default-env", e.as_str()]))
        .env("FERRUM_SUSHY_EMULATOR", &spec.sushy)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    let mut child = daemon.spawn().with_context(|| format!("cannot start {} lab daemon", spec.ferrum.display()))?;
    eprintln!("starting the lab in {} (supervisor pid {}, log {})", spec.dir.display(), child.id(), files.log().display());

    let deadline = Instant::now() + READY_WAIT;
    let state = loop {
        if files.state().is_file() {
            break files.read_state()?;
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "the lab supervisor exited ({status}) before the lab was ready; end of {}:\n{}",
                files.log().display(),
                tail(&files.log(), 30)
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "the lab was not ready within {} s (it keeps starting: `ferrum lab down --dir {}` stops it); end of {}:\n{}",
                READY_WAIT.as_secs(),
                spec.dir.display(),
                files.log().display(),
                tail(&files.log(), 30)
            );
        }
        // Justified sleep: paces a bounded wait for another process's file.
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ready_s = started.elapsed().as_secs_f64();

    let token = std::fs::read_to_string(files.admin_token())
        .with_context(|| format!("cannot read the lab ferrumd's admin token {}", files.admin_token().display()))?
        .trim()
        .to_owned();
    let client = Client::new(&state.url, "lab", token.clone())?;
    let envs = register_environments(&client, &spec.environments_dir()).await?;
    let password = std::fs::read_to_string(files.password()).with_context(|| format!("cannot read {}", files.password().display()))?;
    let password = password.trim();
    // The reference tree, then each node enrolled from what the tree says.
    let descriptions: Vec<_> = state
        .nodes
        .iter()
        .map(|plan| {
            let lies = Lies { memory: args.fake_memory.contains(&plan.name), gpu: args.fake_gpu.contains(&plan.name) };
            (plan, reference::describe(plan, state.memory_mib, lies))
        })
        .collect();
    let tree_dir = spec.reference_dir();
    reference::write_tree(&tree_dir, &state.site, &state.cluster, &descriptions)?;
    let tree = crate::reference_tree::walk(&tree_dir)?;
    for plan in &state.nodes {
        let file = tree
            .nodes
            .iter()
            .find(|f| f.path.file_stem().is_some_and(|s| *s == *plan.name))
            .with_context(|| format!("{}: no description of {}", tree_dir.display(), plan.name))?;
        let bmc_password = if args.wrong_bmc_password.contains(&plan.name) { format!("{password}x") } else { password.to_owned() };
        let body = NodeCreate {
            name: plan.name.clone(),
            site: file.node.site.clone(),
            cluster: file.node.cluster.clone(),
            macs: vec![plan.mac.clone()],
            ip: Some(plan.ip.clone()),
            bmc: Some(plan.bmc_url(&bmc_password)),
            properties: None,
            reference: Some(file.node.description.clone()),
        };
        client.post::<Node, _>(&["nodes"], &body).await.with_context(|| format!("enrolling {}", plan.name))?;
    }
    let nodes = wait_enrolled(&client).await?;
    write_env(&files, &state, &token)?;
    out(&summary(&state, &nodes, &envs, ready_s, started.elapsed().as_secs_f64()))?;
    let stuck: Vec<&str> = nodes.iter().filter(|n| n.state == NodeState::Enrolling).map(|n| n.name.as_str()).collect();
    if !stuck.is_empty() {
        eprintln!("warning: still enrolling after {} s: {} (see `ferrum node events NAME`)", ENROL_WAIT.as_secs(), stuck.join(", "));
    }
    Ok(())
}

/// Adds every environment descriptor of the images cache; returns the names.
async fn register_environments(client: &Client, dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for name in ["tiny", "tiny-python", "debian12-min"] {
        let file = dir.join(format!("{name}.yaml"));
        if !file.is_file() {
            continue;
        }
        let descriptor = super::env::read_descriptor(&file)?;
        client
            .post::<ferrum_api::environment::Environment, _>(&["environments"], &descriptor)
            .await
            .with_context(|| format!("adding the environment described in {}", file.display()))?;
        names.push(name.to_owned());
    }
    Ok(names)
}

/// Waits (bounded) until no node is `enrolling`; returns the nodes.
async fn wait_enrolled(client: &Client) -> Result<Vec<Node>> {
    let deadline = Instant::now() + ENROL_WAIT;
    loop {
        let nodes = client.get::<Vec<Node>, _>(&["nodes"], &NoQuery {}).await?.value;
        if Instant::now() >= deadline || nodes.iter().all(|n| n.state != NodeState::Enrolling) {
            return Ok(nodes);
        }
        // Justified sleep: paces a bounded poll of the controller's state.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn write_env(files: &LabFiles, state: &LabState, token: &str) -> Result<()> {
    let text = format!(
        "# The ferrum virtual lab in {dir}: `. {env}` (it holds the admin token).\n\
         export FERRUM_URL={url}\nexport FERRUM_TOKEN={token}\nexport FERRUM_LAB_NETNS={netns}\n\
         export FERRUM_LAB_DIR={dir}\nexport FERRUM_LAB_NODE_URL={node_url}\n\
         # Node N is N.$FERRUM_LAB_SITE.$FERRUM_LAB_DOMAIN inside the namespace.\n\
         export FERRUM_LAB_SITE={site}\nexport FERRUM_LAB_CLUSTER={cluster}\nexport FERRUM_LAB_DOMAIN={domain}\n",
        site = state.site,
        cluster = state.cluster,
        domain = state.domain,
        dir = state.dir.display(),
        env = files.env().display(),
        url = state.url,
        netns = state.netns,
        node_url = state.node_url,
    );
    layout::write_private(&files.env(), &text)?;
    Ok(())
}

fn summary(state: &LabState, nodes: &[Node], envs: &[String], ready_s: f64, total_s: f64) -> String {
    let mut text = format!(
        "lab ready: {} node(s), QEMU {} with {} MiB each, namespace {}, ferrumd at {} (nodes reach it at {})\n\
         started in {ready_s:.1} s, enrolled in {total_s:.1} s\n\n",
        state.nodes.len(),
        state.accel.as_str().to_uppercase(),
        state.memory_mib,
        state.netns,
        state.url,
        state.node_url,
    );
    let width = state.nodes.iter().map(|p| p.name.len()).max().unwrap_or(0).max(4);
    text.push_str(&format!(
        "  {:<width$} {:<18} {:<12} {:<8} {:<40} {}\n",
        "NODE", "MAC", "IP", "BMC", "BMC ADDRESS (inside the namespace)", "STATE"
    ));
    for plan in &state.nodes {
        let address = match (plan.bmc, &plan.system_id) {
            (BmcKind::Redfish, Some(id)) => format!("127.0.0.1:{}/{}", plan.bmc_port, id),
            _ => format!("127.0.0.1:{} (udp)", plan.bmc_port),
        };
        let node_state = nodes.iter().find(|n| n.name == plan.name).map_or("not enrolled", |n| n.state.as_str());
        text.push_str(&format!(
            "  {:<width$} {:<18} {:<12} {:<8} {:<40} {}\n",
            plan.name,
            plan.mac,
            plan.ip,
            plan.bmc.as_str(),
            address,
            node_state
        ));
    }
    let envs = if envs.is_empty() { "none".to_owned() } else { envs.join(", ") };
    let dir = state.dir.display();
    text.push_str(&format!(
        "\nsite {site}, cluster {cluster}: node NAME is NAME.{site}.{domain} inside the namespace (/etc/netns/{ns}/hosts)\n\
         environments: {envs}\n\
         use it:     . {dir}/lab.env && ferrum node list\n\
         enter it:   ip netns exec {ns} bash   (BMCs on 127.0.0.1; user admin, password in {dir}/bmc-password)\n\
         consoles:   {dir}/nodes/NAME/serial.log; logs: {dir}/lab.log, {dir}/ferrumd.log\n\
         stop it:    ferrum lab down --dir {dir}\n",
        ns = state.netns,
        site = state.site,
        cluster = state.cluster,
        domain = state.domain,
    ));
    text
}

fn down(dir: &Path) -> Result<()> {
    let report = teardown::down(dir)?;
    if report.nothing {
        return out(&format!("no lab in {}\n", dir.display()));
    }
    let mut text = String::new();
    match report.supervisor {
        Some(pid) if report.supervisor_clean => text.push_str(&format!("lab supervisor {pid} stopped everything it started\n")),
        Some(pid) => text.push_str(&format!("lab supervisor {pid} did not stop in time: killed\n")),
        None => text.push_str("no lab supervisor was running: cleaning what it left\n"),
    }
    if !report.swept.is_empty() {
        text.push_str(&format!("stopped left-over processes: {}\n", report.swept.join(", ")));
    }
    if let Some(ns) = &report.netns_deleted {
        text.push_str(&format!("deleted the network namespace {ns}\n"));
    }
    text.push_str(&format!("lab in {} is down (logs and disks kept)\n", dir.display()));
    out(&text)?;
    if !report.survivors.is_empty() {
        bail!("could not stop: {}", report.survivors.join(", "));
    }
    Ok(())
}

/// The last `lines` lines of a log file.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
