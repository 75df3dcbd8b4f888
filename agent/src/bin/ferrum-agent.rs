//! `ferrum-agent`: the node agent's command line. Each subcommand is one
//! thing the controller can ask of a node (see the crate documentation of
//! `ferrum_agent`); this file only parses arguments, calls the library and
//! prints.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use ferrum_agent::image::{self, Format, ImageSpec, Sha256Digest, Source, WriteOptions};
use ferrum_agent::inventory;
use ferrum_agent::keys::{self, Hostname, KeysRequest};
use ferrum_agent::wipe::{self, WipeOptions};

#[derive(Debug, Parser)]
#[command(name = "ferrum-agent", version, about = "ferrum's node agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print this machine's hardware inventory as JSON on stdout.
    Inventory(InventoryArgs),
    /// Write an image (raw or raw.zst, from a URL or a local file) to a disk,
    /// checking its sha256; then flush and re-read the partition table.
    WriteImage(WriteImageArgs),
    /// Replace root's authorized_keys (and /etc/hostname) in a written system.
    InstallKeys(InstallKeysArgs),
    /// Erase partition tables and filesystem signatures of disks (every byte with --secure).
    Wipe(WipeArgs),
    /// Serve the controller (the deploy ramdisk's mode): register with the
    /// one-time token, report the inventory, carry out commands.
    Run(RunArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The controller (the kernel command line's ferrum.url=).
    #[arg(long, value_name = "URL")]
    url: String,
    /// This node's name (ferrum.node=).
    #[arg(long, value_name = "NAME")]
    node: String,
    /// The one-time registration token (ferrum.token=). Prefer
    /// --token-file or FERRUM_AGENT_TOKEN: a flag shows in `ps`.
    #[arg(long, env = "FERRUM_AGENT_TOKEN", hide_env_values = true, value_name = "TOKEN", required_unless_present = "token_file")]
    token: Option<String>,
    /// A file holding the one-time token.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Carry out reboot and power-off commands (the ramdisk's /init sets it).
    #[arg(long)]
    power_actions: bool,
}

#[derive(Debug, Args)]
struct WriteImageArgs {
    /// http(s):// URL or local path of the image.
    #[arg(long, value_name = "URL|PATH")]
    source: Source,
    /// Disk (or existing file used as a disk) to write.
    #[arg(long, value_name = "PATH")]
    device: PathBuf,
    /// raw or raw.zst (default: raw.zst when the source ends in .zst).
    #[arg(long)]
    format: Option<Format>,
    /// Expected sha256 of the image as published (of the .zst for raw.zst).
    #[arg(long, value_name = "HEX")]
    sha256: Option<Sha256Digest>,
    /// Expected size of the decoded image in bytes.
    #[arg(long, value_name = "BYTES")]
    size: Option<u64>,
}

#[derive(Debug, Args)]
struct InstallKeysArgs {
    /// The whole disk the image was written to.
    #[arg(long, value_name = "PATH")]
    device: PathBuf,
    /// Number of the system's root partition on it.
    #[arg(long, value_name = "N")]
    partition: u32,
    /// The lease holder's public keys, one per line (authorized_keys format, no options).
    #[arg(long, value_name = "FILE")]
    keys: PathBuf,
    /// The controller's public key, added after the holder's.
    #[arg(long, value_name = "FILE")]
    controller_key: Option<PathBuf>,
    /// Hostname to write to /etc/hostname.
    #[arg(long, value_name = "NAME")]
    hostname: Option<Hostname>,
}

#[derive(Debug, Args)]
struct WipeArgs {
    /// Disks to wipe (in parallel).
    #[arg(long = "device", value_name = "PATH", required = true, num_args = 1..)]
    devices: Vec<PathBuf>,
    /// Make every byte unreadable (discard if the device then reads zeros, else zero-fill).
    #[arg(long)]
    secure: bool,
}

#[derive(Debug, Args)]
struct InventoryArgs {
    /// Read /proc, /sys, /dev and /usr/share under this directory.
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// Name PCI devices with this pci.ids file first (default: the node's
    /// own pci.ids when newer than the embedded database).
    #[arg(long, value_name = "FILE")]
    pci_ids: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Inventory(args) => run_inventory(args),
        Command::WriteImage(args) => run_write_image(args),
        Command::InstallKeys(args) => run_install_keys(args),
        Command::Wipe(args) => run_wipe(args),
        Command::Run(args) => run_agent(args),
    }
}

fn run_agent(args: RunArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let token = match (&args.token, &args.token_file) {
        (_, Some(path)) => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?.trim().to_owned(),
        (Some(t), None) => t.clone(),
        (None, None) => anyhow::bail!("give --token or --token-file"),
    };
    let options = ferrum_agent::run::RunOptions {
        url: args.url,
        node: args.node,
        token,
        power_actions: args.power_actions,
        inventory: inventory::Options::default(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(ferrum_agent::run::run(options)).context("agent stopped")
}

fn run_inventory(args: InventoryArgs) -> anyhow::Result<()> {
    let options = inventory::Options { root: args.root, pci_ids: args.pci_ids };
    let report = inventory::collect(&options).context("inventory failed")?;
    for warning in &report.warnings {
        eprintln!("ferrum-agent: warning: {warning}");
    }
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, &report).context("writing the report")?;
    writeln!(stdout).context("writing the report")?;
    Ok(())
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, value).context("writing the summary")?;
    writeln!(stdout).context("writing the summary")?;
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn run_write_image(args: WriteImageArgs) -> anyhow::Result<()> {
    let format = args.format.unwrap_or_else(|| Format::guess(&args.source));
    let spec = ImageSpec { source: args.source, format, sha256: args.sha256, size: args.size };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    let progress = |p: image::Progress| {
        let of = p.expected.map(|e| format!(" of {:.1} MiB", mib(e))).unwrap_or_default();
        eprintln!(
            "ferrum-agent: write-image: {:?}: {:.1} MiB{of} written, {:.1} MiB downloaded",
            p.stage,
            mib(p.written),
            mib(p.downloaded)
        );
    };
    let report = runtime
        .block_on(image::write_image(&spec, &args.device, &WriteOptions::default(), progress))
        .with_context(|| format!("writing {} to {}", spec.source, args.device.display()))?;
    print_json(&report)
}

fn run_install_keys(args: InstallKeysArgs) -> anyhow::Result<()> {
    let read = |path: &PathBuf| std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()));
    let holder_keys = keys::parse_authorized_keys(&read(&args.keys)?).with_context(|| format!("in {}", args.keys.display()))?;
    let controller_key = match &args.controller_key {
        Some(path) => {
            let mut found = keys::parse_authorized_keys(&read(path)?).with_context(|| format!("in {}", path.display()))?;
            anyhow::ensure!(found.len() == 1, "{} must hold exactly one key, found {}", path.display(), found.len());
            found.pop()
        }
        None => None,
    };
    let request = KeysRequest { device: args.device, partition: args.partition, holder_keys, controller_key, hostname: args.hostname };
    eprintln!("ferrum-agent: install-keys: partition {} of {}", request.partition, request.device.display());
    let report = keys::install_keys(&request)
        .with_context(|| format!("installing keys on partition {} of {}", request.partition, request.device.display()))?;
    print_json(&report)
}

fn run_wipe(args: WipeArgs) -> anyhow::Result<()> {
    let options = WipeOptions { secure: args.secure };
    let outcomes: Vec<serde_json::Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = args
            .devices
            .iter()
            .map(|device| {
                scope.spawn(move || {
                    let mut progress = |p: wipe::WipeProgress| {
                        eprintln!("ferrum-agent: wipe {}: {:.1} of {:.1} MiB", device.display(), mib(p.done), mib(p.total));
                    };
                    match wipe::wipe_device(device, options, &mut progress) {
                        Ok(report) => serde_json::json!({ "device": device, "ok": true, "report": report }),
                        Err(e) => {
                            let message = format!("{:#}", anyhow::Error::new(e));
                            eprintln!("ferrum-agent: wipe {}: {message}", device.display());
                            serde_json::json!({ "device": device, "ok": false, "error": message })
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| serde_json::json!({ "ok": false, "error": "wipe thread panicked" })))
            .collect()
    });
    let failed = outcomes.iter().filter(|o| o["ok"] != serde_json::Value::Bool(true)).count();
    print_json(&serde_json::json!({ "devices": outcomes }))?;
    anyhow::ensure!(failed == 0, "{failed} of {} wipes failed", outcomes.len());
    Ok(())
}
