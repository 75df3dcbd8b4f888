//! `ferrum lab down`: ask the supervisor to stop (SIGTERM, bounded wait),
//! then sweep what it may have left (a supervisor killed with SIGKILL stops
//! nothing): every process recorded in `DIR/pids` whose command line still
//! names the lab directory, the namespace and the veth named in
//! `DIR/netns` with the namespace's hosts file, and the lab's run files.
//! Logs and disks stay.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::error::Result;
use crate::layout::LabFiles;
use crate::{netns, procs};

/// How long the supervisor gets to stop everything.
pub const SUPERVISOR_GRACE: Duration = Duration::from_secs(60);

/// What `down` did.
#[derive(Debug, Default)]
pub struct DownReport {
    /// No lab (running or left over) was found.
    pub nothing: bool,
    /// The supervisor's PID, when it was running.
    pub supervisor: Option<u32>,
    /// Whether it stopped by itself within the grace period.
    pub supervisor_clean: bool,
    /// Left-over processes stopped by the sweep (`role pid`).
    pub swept: Vec<String>,
    /// Left-over processes that could not be stopped.
    pub survivors: Vec<String>,
    /// The namespace deleted by the sweep.
    pub netns_deleted: Option<String>,
}

/// Whether a lab supervisor runs for `dir`; its PID if so.
pub fn running(dir: &Path) -> Option<u32> {
    let files = LabFiles::new(dir);
    let pid: u32 = std::fs::read_to_string(files.pid()).ok()?.trim().parse().ok()?;
    (procs::alive(pid) && procs::cmdline_contains(pid, &dir.to_string_lossy())).then_some(pid)
}

/// Stops the lab in `dir`.
pub fn down(dir: &Path) -> Result<DownReport> {
    let files = LabFiles::new(dir);
    let marker = dir.to_string_lossy().into_owned();
    let mut report = DownReport::default();
    let recorded = procs::recorded(&files.pids());
    let netns_file = std::fs::read_to_string(files.netns()).unwrap_or_default();
    if let Some(pid) = running(dir) {
        report.supervisor = Some(pid);
        procs::signal(pid, Signal::SIGTERM);
        report.supervisor_clean = procs::wait_dead(pid, SUPERVISOR_GRACE);
        if !report.supervisor_clean {
            procs::signal(pid, Signal::SIGKILL);
            procs::wait_dead(pid, Duration::from_secs(5));
        }
    }
    let live: Vec<&procs::Recorded> = recorded.iter().filter(|r| procs::alive(r.pid) && procs::cmdline_contains(r.pid, &marker)).collect();
    let mut names = netns_file.lines().filter(|l| !l.trim().is_empty());
    let ns = names.next().map(str::to_owned);
    let veth = names.next().map(str::to_owned);
    if report.supervisor.is_none() && live.is_empty() && ns.as_deref().is_none_or(|n| !netns::exists(n)) && !files.pid().exists() {
        report.nothing = true;
    }
    // Processes first (the supervisor last: it may still be stopping them).
    for r in live.iter().filter(|r| r.role != "supervisor").chain(live.iter().filter(|r| r.role == "supervisor")) {
        let label = format!("{} {}", r.role, r.pid);
        if procs::stop(r.pid, &marker, Duration::from_secs(5)) {
            report.swept.push(label);
        } else {
            report.survivors.push(label);
        }
    }
    if let Some(ns) = ns {
        if netns::exists(&ns) {
            let _ = netns::delete(&ns);
            report.netns_deleted = Some(ns.clone());
        }
        crate::supervisor::remove_hosts(&ns);
    }
    if let Some(veth) = veth {
        let _ = netns::ip(&["link", "delete", &veth]);
    }
    for file in [files.state(), files.socket(), files.pid(), files.ferrumd_pid(), files.netns(), files.env()] {
        let _ = std::fs::remove_file(file);
    }
    Ok(report)
}
