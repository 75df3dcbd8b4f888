//! The `ferrum-agent` binary a deploy ramdisk carries: a given path, or a
//! static build of the workspace's `ferrum-agent` package.
//!
//! The static build runs `cargo build --release -p ferrum-agent --target
//! x86_64-unknown-linux-gnu` with `RUSTFLAGS=-C target-feature=+crt-static`
//! in its own target directory, `<workspace target>/agent-static`, so the
//! workspace's normal build is not invalidated by the different flags. The
//! explicit `--target` keeps the flag away from build scripts and proc
//! macros, which cannot be static. Either way the binary must be static: a
//! ramdisk has no libc.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::initramfs::is_static;
use crate::{Freshness, cmd};

/// The target triple of the static build.
pub const TARGET: &str = "x86_64-unknown-linux-gnu";

/// The workspace this crate belongs to (where `ferrum-agent` is built from).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_owned).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The agent binary to put in a ramdisk: `given` if any (checked to be
/// static), else a fresh static build of the workspace's agent; and whether
/// cargo (re)built it.
pub fn resolve(given: Option<&Path>) -> Result<(PathBuf, Freshness)> {
    let (path, freshness) = match given {
        Some(p) => (p.to_owned(), Freshness::UpToDate),
        None => build_static(&workspace_root())?,
    };
    if !is_static(&path)? {
        return Err(Error::Host {
            what: path.display().to_string(),
            reason: "is dynamically linked; a ramdisk has no libc (build with RUSTFLAGS=\"-C target-feature=+crt-static\")".into(),
        });
    }
    Ok((path, freshness))
}

/// Builds `ferrum-agent` statically (incremental: a no-op when nothing
/// changed) and returns the binary's path and whether cargo rewrote it.
pub fn build_static(workspace: &Path) -> Result<(PathBuf, Freshness)> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = workspace.join("Cargo.toml");
    let metadata =
        cmd::run(Command::new(&cargo).args(["metadata", "--format-version", "1", "--no-deps", "--manifest-path"]).arg(&manifest))?;
    let target_dir = serde_json::from_str::<serde_json::Value>(&metadata)
        .ok()
        .and_then(|m| m.get("target_directory")?.as_str().map(PathBuf::from))
        .ok_or_else(|| Error::Host { what: "cargo metadata".into(), reason: "no target_directory in its answer".into() })?;
    let static_dir = target_dir.join("agent-static");
    let binary = static_dir.join(TARGET).join("release").join("ferrum-agent");
    let modified = || fs::metadata(&binary).and_then(|m| m.modified()).ok();
    let before = modified();
    tracing::info!(target_dir = %static_dir.display(), "building ferrum-agent (static)");
    cmd::run(
        Command::new(&cargo)
            .args(["build", "--release", "-p", "ferrum-agent", "--target", TARGET, "--manifest-path"])
            .arg(&manifest)
            .env("CARGO_TARGET_DIR", &static_dir)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            // Flags of an outer cargo (when run from a test) must not leak in.
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET"),
    )?;
    let freshness = if before.is_some() && before == modified() { Freshness::UpToDate } else { Freshness::Built };
    Ok((binary, freshness))
}
