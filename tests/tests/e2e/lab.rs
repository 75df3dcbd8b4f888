//! `ferrum lab up/down` with the real binaries and peers: two QEMU nodes,
//! node 1 behind `ipmi_sim`, node 2 behind sushy-tools with ferrum's lab
//! driver, and the lab's own `ferrumd`. The BMCs are driven with their
//! usual clients (ipmitool, curl) inside the lab's namespace and must move
//! the real VMs (the supervisor's reading of QEMU's run state, and the
//! firmware's text on the serial console), promptly and truthfully; the
//! nodes are enrolled and available through `lab.env` from the root
//! namespace; `lab down` leaves no process and no namespace behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ferrum_tests::lab::text;
use ferrum_tests::{binary, lab_images, lab_lock, wait_until};
use serde_json::Value;

/// Not used by the other namespace tests (78-80) nor the default lab (77).
const SUBNET_ID: &str = "86";
const NETNS: &str = "ferrum-lab-86";
const BMC_DEADLINE: Duration = Duration::from_secs(15);
const BOOT_DEADLINE: Duration = Duration::from_secs(120);

/// Runs `ferrum lab down` when the test ends, whatever happened.
struct Lab {
    dir: PathBuf,
}

impl Lab {
    fn down(&self) -> Output {
        Command::new(binary("ferrum")).args(["lab", "down", "--dir"]).arg(&self.dir).output().unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.down();
    }
}

fn in_netns(program: &str, args: &[&str]) -> Output {
    Command::new("ip").args(["netns", "exec", NETNS, program]).args(args).output().unwrap()
}

fn env_file(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn lab_up_gives_bmcs_that_drive_qemu_and_enrolled_nodes_and_down_cleans_up() {
    let _one = lab_lock();
    let images = lab_images();

    let work = tempfile::tempdir().unwrap();
    let lab = Lab { dir: work.path().join("lab") };
    let started = Instant::now();
    let up = Command::new(binary("ferrum"))
        .args(["lab", "up", "--nodes", "2", "--subnet-id", SUBNET_ID, "--dir"])
        .arg(&lab.dir)
        .arg("--images")
        .arg(&images)
        .arg("--ferrumd")
        .arg(binary("ferrumd"))
        .output()
        .unwrap();
    assert!(up.status.success(), "lab up failed: {}", text(&up));
    eprintln!("lab up (2 nodes, enrolled): {:.1} s", started.elapsed().as_secs_f64());
    let summary = text(&up);
    assert!(summary.contains("qemu-1") && summary.contains("ipmi") && summary.contains("redfish"), "{summary}");

    // A second lab in the same directory is refused.
    let again = Command::new(binary("ferrum")).args(["lab", "up", "--nodes", "1", "--dir"]).arg(&lab.dir).output().unwrap();
    assert!(!again.status.success() && text(&again).contains("already runs"), "{}", text(&again));

    let env = env_file(&lab.dir.join("lab.env"));
    assert_eq!(env["FERRUM_LAB_NETNS"], NETNS);
    let state: Value = serde_json::from_str(&std::fs::read_to_string(lab.dir.join("lab.json")).unwrap()).unwrap();
    let password = std::fs::read_to_string(lab.dir.join("bmc-password")).unwrap().trim().to_owned();
    let socket = lab.dir.join("lab.sock");
    let vm_power = |node: &str| ferrum_lab::control::ask(&socket, node, "power", None).map_err(|e| e.to_string());
    assert_eq!(vm_power("qemu-1").unwrap(), "off", "nodes start powered off");
    assert_eq!(vm_power("qemu-2").unwrap(), "off", "nodes start powered off");
    let pids: Vec<u32> =
        std::fs::read_to_string(lab.dir.join("pids")).unwrap().lines().filter_map(|l| l.rsplit_once(' ')?.1.parse().ok()).collect();
    assert!(pids.len() >= 6, "supervisor, ferrumd, 2 QEMU, 2 BMCs: {pids:?}");

    // Node 1: IPMI.
    let ipmi_port = state["nodes"][0]["bmc_port"].as_u64().unwrap().to_string();
    let ipmitool = |args: &[&str]| {
        let mut all = vec!["-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-p", &ipmi_port, "-U", "admin", "-P", &password];
        all.extend_from_slice(args);
        let out = in_netns("ipmitool", &all);
        assert!(out.status.success(), "ipmitool {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_lowercase()
    };
    let on_at = Instant::now();
    ipmitool(&["chassis", "power", "on"]);
    wait_until("QEMU of qemu-1 running", BMC_DEADLINE, || vm_power("qemu-1").and_then(|p| if p == "on" { Ok(()) } else { Err(p) }));
    assert!(ipmitool(&["power", "status"]).contains("is on"));
    let serial = lab.dir.join("nodes/qemu-1/serial.log");
    wait_until("iPXE on qemu-1's serial console", BOOT_DEADLINE, || {
        let text = std::fs::read_to_string(&serial).unwrap_or_default();
        if text.contains("iPXE") { Ok(()) } else { Err(text) }
    });
    eprintln!("IPMI power on -> iPXE on the console: {:.1} s", on_at.elapsed().as_secs_f64());
    ipmitool(&["chassis", "power", "off"]);
    wait_until("QEMU of qemu-1 stopped", BMC_DEADLINE, || vm_power("qemu-1").and_then(|p| if p == "off" { Ok(()) } else { Err(p) }));
    assert!(ipmitool(&["power", "status"]).contains("is off"));

    // Node 2: Redfish.
    let port = state["nodes"][1]["bmc_port"].as_u64().unwrap();
    let system = format!("http://127.0.0.1:{port}/redfish/v1/Systems/{}", state["nodes"][1]["system_id"].as_str().unwrap());
    let auth = format!("admin:{password}");
    let reset = |kind: &str| {
        let body = format!("{{\"ResetType\":\"{kind}\"}}");
        let url = format!("{system}/Actions/ComputerSystem.Reset");
        let out = in_netns("curl", &["-sS", "--fail-with-body", "-u", &auth, "-H", "Content-Type: application/json", "-d", &body, &url]);
        assert!(out.status.success(), "Reset {kind}: {}", text(&out));
    };
    let redfish_power = || {
        let out = in_netns("curl", &["-sS", "--fail-with-body", "-u", &auth, &system]);
        let value: Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}: {}", text(&out)))?;
        Ok::<String, String>(value["PowerState"].as_str().unwrap_or_default().to_owned())
    };
    let at = Instant::now();
    reset("On");
    assert_eq!(redfish_power().unwrap(), "On", "the Redfish BMC reports the VM's state at once");
    assert_eq!(vm_power("qemu-2").unwrap(), "on");
    eprintln!("Redfish On -> PowerState On: {:.2} s", at.elapsed().as_secs_f64());
    reset("ForceOff");
    assert_eq!(redfish_power().unwrap(), "Off");
    assert_eq!(vm_power("qemu-2").unwrap(), "off");
    let wrong = in_netns("curl", &["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-u", "admin:wrong", &system]);
    assert_eq!(String::from_utf8_lossy(&wrong.stdout), "401", "the Redfish BMC checks its password");

    // The nodes, from the root namespace, through lab.env.
    let list = Command::new(binary("ferrum"))
        .args(["--json", "node", "list"])
        .env("FERRUM_URL", &env["FERRUM_URL"])
        .env("FERRUM_TOKEN", &env["FERRUM_TOKEN"])
        .env_remove("FERRUM_CONFIG")
        .output()
        .unwrap();
    assert!(list.status.success(), "node list: {}", text(&list));
    let nodes: Value = serde_json::from_slice(&list.stdout).unwrap();
    let states: Vec<(&str, &str)> =
        nodes.as_array().unwrap().iter().map(|n| (n["name"].as_str().unwrap(), n["state"].as_str().unwrap())).collect();
    assert_eq!(states, [("qemu-1", "available"), ("qemu-2", "available")]);

    // Down: no namespace, no process left.
    let down = lab.down();
    assert!(down.status.success(), "lab down: {}", text(&down));
    assert!(!Path::new("/run/netns").join(NETNS).exists(), "the namespace is gone");
    let alive: Vec<u32> = pids.iter().copied().filter(|p| ferrum_lab::procs::alive(*p)).collect();
    assert!(alive.is_empty(), "processes left after lab down: {alive:?}");
    let again = lab.down();
    assert!(again.status.success() && text(&again).contains("no lab"), "{}", text(&again));
}
