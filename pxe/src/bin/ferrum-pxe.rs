//! `ferrum-pxe`: command-line front end for ferrum's boot network services.
//!
//! Owns: parsing flags, logging to stderr, and running the read-only TFTP
//! service until SIGINT/SIGTERM. Must not: write any file, or serve anything
//! outside `--tftp-root` (that confinement lives in `ferrum_pxe::tftp`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// ferrum boot network services (this build: read-only TFTP only).
#[derive(Debug, Parser)]
#[command(name = "ferrum-pxe", version)]
struct Args {
    /// Directory served read-only over TFTP.
    #[arg(long, value_name = "DIR", requires = "tftp_listen")]
    tftp_root: Option<PathBuf>,

    /// Address and port the TFTP service listens on (e.g. 0.0.0.0:69).
    #[arg(long, value_name = "ADDR:PORT", requires = "tftp_root")]
    tftp_listen: Option<SocketAddr>,

    /// Full boot-services configuration (DHCP, HTTP, TFTP): not in this build.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

const NOT_YET: &str = "the DHCP and HTTP boot services are not in this build yet; use --tftp-root and --tftp-listen";

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    if args.config.is_some() {
        eprintln!("ferrum-pxe: {NOT_YET}");
        return ExitCode::from(2);
    }
    let (Some(root), Some(listen)) = (args.tftp_root, args.tftp_listen) else {
        eprintln!("ferrum-pxe: nothing to serve; give --tftp-root DIR --tftp-listen ADDR:PORT");
        return ExitCode::from(2);
    };

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferrum-pxe: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(root, listen)) {
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
