//! The processes a lab started, recorded in `DIR/pids` (`ROLE PID` lines),
//! and how to stop them: by PID only, and only when the process's command
//! line still names the lab directory (a recycled PID is left alone).
//!
//! This sandbox's PID 1 does not reap orphans: a process of a lab whose
//! supervisor is gone ends as a zombie, which counts as dead here.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::error::{LabError, Result};

/// One recorded process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub role: String,
    pub pid: u32,
}

/// Appends `role pid` to the pids file.
pub fn record(pids_file: &Path, role: &str, pid: u32) -> Result<()> {
    let mut file =
        std::fs::OpenOptions::new().create(true).append(true).open(pids_file).map_err(LabError::io("cannot record a PID in", pids_file))?;
    writeln!(file, "{role} {pid}").map_err(LabError::io("cannot record a PID in", pids_file))
}

/// Every recorded process (an absent file is an empty list).
pub fn recorded(pids_file: &Path) -> Vec<Recorded> {
    let text = std::fs::read_to_string(pids_file).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (role, pid) = line.rsplit_once(' ')?;
            Some(Recorded { role: role.to_owned(), pid: pid.trim().parse().ok()? })
        })
        .collect()
}

/// Whether `pid` is a live process (a zombie is not).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) S ...`: the state follows the last `)`.
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).is_some_and(|s| s != "Z" && s != "X"),
        Err(_) => false,
    }
}

/// Whether live process `pid`'s command line contains `marker`.
pub fn cmdline_contains(pid: u32, marker: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " ").contains(marker))
        .unwrap_or(false)
}

/// Sends `signal` to `pid`.
pub fn signal(pid: u32, signal: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// Waits until `pid` is dead, at most `limit`; true when it is.
pub fn wait_dead(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if !alive(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        // Justified sleep: another process's exit cannot be waited on
        // (not our child); this paces a bounded poll of /proc.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM, then SIGKILL after `grace`, to `pid` if it is alive and its
/// command line names `marker`. Returns whether it is dead at the end.
pub fn stop(pid: u32, marker: &str, grace: Duration) -> bool {
    if !alive(pid) {
        return true;
    }
    if !cmdline_contains(pid, marker) {
        // Not ours (any more): the PID was recycled.
        return true;
    }
    signal(pid, Signal::SIGTERM);
    if wait_dead(pid, grace) {
        return true;
    }
    signal(pid, Signal::SIGKILL);
    wait_dead(pid, Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_this_process_is_alive() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pids");
        record(&file, "qemu qemu-1", 42).unwrap();
        record(&file, "ferrumd", 43).unwrap();
        assert_eq!(recorded(&file), vec![Recorded { role: "qemu qemu-1".into(), pid: 42 }, Recorded { role: "ferrumd".into(), pid: 43 }]);
        assert!(alive(std::process::id()));
        assert!(!alive(u32::MAX - 1));
    }
}
