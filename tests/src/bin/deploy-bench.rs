//! `deploy-bench [N...]`: reserve → deployed → root SSH on a virtual lab of
//! N nodes (default: 1, then 4), timed from the outside, and split from the
//! deployment's phase timestamps into BMC, firmware and boot, image writing,
//! and the controller's own work.
//!
//! Baseline measured in the same run: for each lab, after the deploy, one
//! node is power-cycled through its BMC and timed until root SSH answers
//! again: the firmware + kernel + sshd floor that no deploy can beat, since
//! a deploy boots every node twice (ramdisk, then system). The reference
//! figures of the throw-away shell prototype (LAB-NOTES §6: 16.9 s for 1
//! node, 36 s for 4, on this kind of machine) are printed beside, as
//! reference only: they were not measured in this run.
//!
//! Prints a table and one JSON line per lab. Needs root (namespaces, QEMU)
//! and the lab images (built on first use).

use std::time::{Duration, Instant};

use ferrum_tests::lab::{DEPLOY_DEADLINE, Lab, text, user_key, wait_deployment};
use ferrum_tests::wait_until;
use serde_json::{Value, json};

/// The shell prototype's figures (LAB-NOTES §6), for reference.
fn prototype_seconds(nodes: u32) -> Option<f64> {
    match nodes {
        1 => Some(16.9),
        4 => Some(36.0),
        _ => None,
    }
}

fn phase_seconds(op: &Value, phase: &str) -> f64 {
    op["phases"].as_array().map(|p| p.iter().filter(|x| x["phase"] == phase).filter_map(|x| x["seconds"].as_f64()).sum()).unwrap_or(0.0)
}

fn run(nodes: u32, subnet_id: u8) -> Value {
    let lab = Lab::up(subnet_id, nodes, &[]);
    let names: Vec<String> = (1..=nodes).map(|i| format!("lab-{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    lab.wait_states(&refs, "available", Duration::from_secs(120));
    let (key, public) = user_key(lab.dir.path());

    let started = Instant::now();
    let count = nodes.to_string();
    let public = public.to_str().expect("utf-8 path");
    let lease = lab.json(&["lease", "create", "--count", &count, "--duration", "1h", "--deploy", "tiny", "--ssh-key", public]);
    let lease_id = lease["id"].as_i64().expect("lease id").to_string();
    let id = wait_until("the lease's deployment", Duration::from_secs(60), || {
        let list = lab.json(&["deployment", "list", &lease_id]);
        list.as_array().and_then(|l| l.first()).and_then(|d| d["id"].as_i64()).ok_or_else(|| list.to_string())
    });
    let (ok, deployment) = wait_deployment(&lab, id);
    let total = started.elapsed().as_secs_f64();
    assert!(ok, "the deployment failed: {deployment:#}\n{}", lab.logs());

    // Per node: where the time went (phases are back to back).
    let ops = deployment["nodes"].as_array().cloned().unwrap_or_default();
    let slowest = ops
        .iter()
        .max_by(|a, b| {
            let sum =
                |o: &Value| o["phases"].as_array().map(|p| p.iter().filter_map(|x| x["seconds"].as_f64()).sum::<f64>()).unwrap_or(0.0);
            sum(a).total_cmp(&sum(b))
        })
        .cloned()
        .unwrap_or_default();
    let bmc = phase_seconds(&slowest, "boot_ramdisk");
    let firmware_ramdisk = phase_seconds(&slowest, "wait_agent");
    let image = phase_seconds(&slowest, "write_image") + phase_seconds(&slowest, "install_keys");
    let boot_system = phase_seconds(&slowest, "boot_system") + phase_seconds(&slowest, "ssh_check");
    let controller_ms: u64 = ops.iter().filter_map(|o| o["controller_ms"].as_u64()).max().unwrap_or(0);
    let controller = controller_ms as f64 / 1000.0;

    // The floor, measured now: power-cycle qemu-1 and wait for root SSH.
    let ip = lab.node("qemu-1")["ip"].as_str().expect("ip").to_owned();
    let floor_started = Instant::now();
    let out = lab.ferrum(&["node", "power", "cycle", "qemu-1"]);
    assert!(out.status.success(), "power cycle: {}", text(&out));
    wait_until("qemu-1 answers SSH after a power cycle", DEPLOY_DEADLINE, || {
        let out = lab.ssh(&ip, &key, "true");
        if out.status.success() { Ok(()) } else { Err(text(&out)) }
    });
    let floor = floor_started.elapsed().as_secs_f64();

    json!({
        "nodes": nodes,
        "total_s": total,
        "bmc_s": bmc,
        "firmware_and_ramdisk_s": firmware_ramdisk,
        "image_and_keys_s": image,
        "system_boot_and_ssh_s": boot_system,
        "controller_s": controller,
        "controller_share": controller / total,
        "baseline_power_cycle_to_ssh_s": floor,
        "ratio_to_baseline": total / floor,
        "prototype_reference_s": prototype_seconds(nodes),
    })
}

fn main() {
    let mut sizes: Vec<u32> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    if sizes.is_empty() {
        sizes = vec![1, 4];
    }
    let mut rows = Vec::new();
    for (i, n) in sizes.iter().enumerate() {
        let row = run(*n, 97 + u8::try_from(i).unwrap_or(0));
        println!("{row}");
        rows.push(row);
    }
    println!();
    println!(
        "{:>5} {:>8} {:>6} {:>9} {:>7} {:>9} {:>10} {:>7} {:>9} {:>8} {:>10}",
        "nodes", "total s", "BMC", "ramdisk", "image", "sys+ssh", "ferrum s", "share", "floor s", "x floor", "prototype"
    );
    for r in &rows {
        let f = |k: &str| r[k].as_f64().unwrap_or(0.0);
        println!(
            "{:>5} {:>8.1} {:>6.1} {:>9.1} {:>7.1} {:>9.1} {:>10.2} {:>6.1}% {:>9.1} {:>8.2} {:>10}",
            r["nodes"],
            f("total_s"),
            f("bmc_s"),
            f("firmware_and_ramdisk_s"),
            f("image_and_keys_s"),
            f("system_boot_and_ssh_s"),
            f("controller_s"),
            100.0 * f("controller_share"),
            f("baseline_power_cycle_to_ssh_s"),
            f("ratio_to_baseline"),
            r["prototype_reference_s"].as_f64().map_or("-".to_owned(), |s| format!("{s:.1} s")),
        );
    }
}
