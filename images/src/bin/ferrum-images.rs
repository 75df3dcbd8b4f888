//! `ferrum-images build [--out DIR] [--cache DIR] [--agent PATH] [TARGET...]`:
//! flags to [`ferrum_images::plan::Options`], then one line per step with
//! what it did, how long it took and the sizes of its outputs.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use ferrum_images::plan::{self, Options, StepReport, Target};
use ferrum_images::{Freshness, agent};

/// Builds ferrum's deploy ramdisks and stock environments from Debian packages.
#[derive(Debug, Parser)]
#[command(name = "ferrum-images", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Build targets (default: ramdisk-lab tiny, which builds tiny-python too); steps whose inputs did not
    /// change are skipped.
    Build {
        /// Output directory [default: $HOME/.cache/ferrum/images].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Cache of downloaded .debs [default: $HOME/.cache/ferrum/debs].
        #[arg(long, value_name = "DIR")]
        cache: Option<PathBuf>,
        /// A static ferrum-agent binary for the ramdisks [default: build the
        /// workspace's with +crt-static into <target>/agent-static].
        #[arg(long, value_name = "PATH")]
        agent: Option<PathBuf>,
        /// What to build.
        #[arg(value_enum, value_name = "TARGET")]
        targets: Vec<TargetArg>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TargetArg {
    /// Debian's cloud kernel, unpacked.
    Kernel,
    /// Lab deploy ramdisk: cloud kernel, virtio drivers, busybox, ferrum-agent.
    RamdiskLab,
    /// Hardware deploy ramdisk: generic kernel, server NIC and storage drivers.
    RamdiskHw,
    /// The tiny and tiny-python environments: busybox + dropbear (+ python3, sftp-server), raw.zst.
    Tiny,
    /// The debian12-min environment: debootstrap minbase + OpenSSH (minutes, network).
    #[value(name = "debian12-min")]
    Debian12Min,
    /// Every target.
    All,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_writer(std::io::stderr)
        .init();
    let Cmd::Build { out, cache, agent, targets } = Cli::parse().command;
    let mut options = Options::with_default_dirs().or_else(|e| match (&out, &cache) {
        (Some(o), Some(c)) => Ok(Options { out: o.clone(), cache: c.clone(), agent: None }),
        _ => Err(e),
    })?;
    if let Some(o) = out {
        options.out = o;
    }
    if let Some(c) = cache {
        options.cache = c;
    }
    options.agent = agent;
    let targets = expand(&targets);
    println!("ferrum-images: building into {} (debs cached in {})", options.out.display(), options.cache.display());
    if options.agent.is_none() && targets.iter().any(|t| matches!(t, Target::RamdiskLab | Target::RamdiskHw)) {
        println!("ferrum-images: the agent is built from {}", agent::workspace_root().display());
    }
    let started = std::time::Instant::now();
    plan::build(&options, &targets, print_step).context("build failed")?;
    println!("ferrum-images: done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn expand(args: &[TargetArg]) -> Vec<Target> {
    if args.is_empty() {
        return Target::DEFAULT.to_vec();
    }
    let mut targets: Vec<Target> = args
        .iter()
        .flat_map(|a| match a {
            TargetArg::Kernel => vec![Target::Kernel],
            TargetArg::RamdiskLab => vec![Target::RamdiskLab],
            TargetArg::RamdiskHw => vec![Target::RamdiskHw],
            TargetArg::Tiny => vec![Target::Tiny],
            TargetArg::Debian12Min => vec![Target::Debian12Min],
            TargetArg::All => Target::ALL.to_vec(),
        })
        .collect();
    targets.sort();
    targets.dedup();
    targets
}

fn print_step(r: &StepReport) {
    let what = match r.freshness {
        Freshness::Built => "built",
        Freshness::UpToDate => "up to date",
    };
    let outputs: Vec<String> = r.outputs.iter().map(|p| format!("{} ({})", p.display(), size_of(p))).collect();
    println!("{:<14} {:<10} {:>7.1} s  {}", r.step, what, r.duration.as_secs_f64(), outputs.join(", "));
}

fn size_of(path: &Path) -> String {
    let bytes = if path.is_dir() { dir_size(path) } else { std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) };
    let mib = bytes as f64 / (1024.0 * 1024.0);
    if mib >= 0.1 { format!("{mib:.1} MiB") } else { format!("{bytes} B") }
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => dir_size(&p),
                Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => 0,
            }
        })
        .sum()
}
