//! Choosing QEMU's accelerator. TCG always works; KVM is used only after a
//! probe proves it: the lab kernel boots under `-accel kvm` with no root
//! and must reach `Kernel panic` on its serial console within
//! [`PROBE_DEADLINE`] (a nested `kvm_pvm` module, as on these machines,
//! fails or hangs instead). The verdict is cached per host boot in
//! `$HOME/.cache/ferrum/lab-kvm-probe`, so only the first lab after a boot
//! pays for a failing probe.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::layout::Accel;

/// How long a working KVM may take to boot a kernel to its panic.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(20);

fn cache_file() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".cache/ferrum/lab-kvm-probe"))
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default().trim().to_owned()
}

/// The accelerator to run with, and a line saying why.
pub fn choose(asked: Accel, kernel: &Path, scratch: &Path) -> (Accel, String) {
    match asked {
        Accel::Tcg => return (Accel::Tcg, "TCG (asked)".into()),
        Accel::Kvm => return (Accel::Kvm, "KVM (asked, not probed)".into()),
        Accel::Auto => {}
    }
    if std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() {
        return (Accel::Tcg, "TCG (/dev/kvm is not usable)".into());
    }
    let boot = boot_id();
    if let Some(cache) = cache_file()
        && let Ok(text) = std::fs::read_to_string(&cache)
        && let Some((id, verdict)) = text.trim().split_once(' ')
        && id == boot
    {
        let accel = if verdict == "kvm" { Accel::Kvm } else { Accel::Tcg };
        return (accel, format!("{} (KVM probe cached in {})", accel.as_str().to_uppercase(), cache.display()));
    }
    let started = Instant::now();
    let works = probe(kernel, scratch);
    let accel = if works { Accel::Kvm } else { Accel::Tcg };
    if let Some(cache) = cache_file() {
        if let Some(parent) = cache.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::write(&cache, format!("{boot} {}\n", accel.as_str()));
    }
    let verdict = if works { "KVM boots a kernel" } else { "KVM did not boot a kernel" };
    (accel, format!("{} ({verdict}: probe took {:.1} s)", accel.as_str().to_uppercase(), started.elapsed().as_secs_f64()))
}

/// Boots `kernel` under KVM without a root file system; true when it
/// panics (as it must) within the deadline.
fn probe(kernel: &Path, scratch: &Path) -> bool {
    let serial = scratch.join("kvm-probe.serial");
    let _ = std::fs::remove_file(&serial);
    let child = std::process::Command::new("qemu-system-x86_64")
        .args(["-accel", "kvm", "-m", "128", "-smp", "1", "-nodefaults", "-display", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(kernel)
        .args(["-append", "console=ttyS0 panic=-1"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return false };
    let deadline = Instant::now() + PROBE_DEADLINE;
    let panicked = loop {
        if std::fs::read_to_string(&serial).is_ok_and(|t| t.contains("Kernel panic")) {
            break true;
        }
        if matches!(child.try_wait(), Ok(Some(_))) {
            break std::fs::read_to_string(&serial).is_ok_and(|t| t.contains("Kernel panic"));
        }
        if Instant::now() >= deadline {
            break false;
        }
        // Justified sleep: paces a bounded poll of the probe's console.
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    panicked
}
