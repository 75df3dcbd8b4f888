//! `ferrum-pxe`: command-line front end for ferrum's boot network services.
//!
//! Owns: parsing flags, logging to stderr, and running either the boot
//! services of one site (`--config FILE`: DHCP, router advertisements and
//! TFTP, with the node table fetched from the controller) or the read-only
//! TFTP service alone (`--tftp-root --tftp-listen`), until SIGINT/SIGTERM.
//! Must not: write any file, or serve anything outside the TFTP root (that
//! confinement lives in `ferrum_pxe::tftp`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// ferrum boot network services: DHCP (full or proxy), IPv6 router
/// advertisements and read-only TFTP for one site.
#[derive(Debug, Parser)]
#[command(name = "ferrum-pxe", version)]
struct Args {
    /// Directory served read-only over TFTP.
    #[arg(long, value_name = "DIR", requires = "tftp_listen")]
    tftp_root: Option<PathBuf>,

    /// Address and port the TFTP service listens on (e.g. 0.0.0.0:69).
    #[arg(long, value_name = "ADDR:PORT", requires = "tftp_root")]
    tftp_listen: Option<SocketAddr>,

    /// The site's boot services and the controller that feeds them (see
    /// ferrum-pxe.example.toml).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["tftp_root", "tftp_listen"])]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let config = match &args.config {
        Some(path) => match ferrum_pxe::standalone::StandaloneConfig::load(path) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("ferrum-pxe: {:#}", anyhow::Error::new(e));
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let tftp_only = match (config.is_some(), args.tftp_root, args.tftp_listen) {
        (true, _, _) => None,
        (false, Some(root), Some(listen)) => Some((root, listen)),
        _ => {
            eprintln!("ferrum-pxe: nothing to serve; give --config FILE, or --tftp-root DIR --tftp-listen ADDR:PORT");
            return ExitCode::from(2);
        }
    };

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferrum-pxe: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match (config, tftp_only) {
        (Some(config), _) => runtime.block_on(run_site(config)),
        (None, Some((root, listen))) => runtime.block_on(run(root, listen)),
        (None, None) => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrum-pxe: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(root: PathBuf, listen: SocketAddr) -> anyhow::Result<()> {
    let service = ferrum_pxe::tftp::bind(root.clone(), listen).await?;
    eprintln!("ferrum-pxe: TFTP serving {} on {}", root.display(), service.local_addr());
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    service
        .run(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = sigterm.recv() => {}
            }
            tracing::info!("signal received, stopping");
        })
        .await
}

async fn run_site(config: ferrum_pxe::standalone::StandaloneConfig) -> anyhow::Result<()> {
    use std::sync::Arc;
    let bound = config.network().bind()?;
    for line in bound.describe() {
        eprintln!("ferrum-pxe: {line}");
    }
    let directory = Arc::new(ferrum_pxe::standalone::ControllerDirectory::default());
    let refresher = tokio::spawn(directory.clone().run(config.controller.clone()));
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let result = bound
        .run(directory, config.http_base(), async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = sigterm.recv() => {}
            }
            tracing::info!("signal received, stopping");
        })
        .await;
    refresher.abort();
    result
}
