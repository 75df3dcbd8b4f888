//! The whole loop on the virtual lab, with every peer real: `ferrum lab up`
//! (QEMU nodes under TCG behind ipmi_sim and sushy-tools, `ferrumd` with
//! its DHCP/TFTP/HTTP on the lab's bridge), then reserve → deploy `tiny`
//! with the user's key → root SSH with that key → release → reset (wipe,
//! inventory, check) → `available`, driven through the real `ferrum` CLI
//! from the root namespace, while the lease owner watches the deployment
//! in Chromium on the portal's lease page (issue 19: the progress moves
//! live, without a reload, to its end; `tests/web/lab_progress.py`). Also: a reference that lies about memory makes
//! the reset end `suspect`; a BMC that refuses ferrum's password fails that
//! node's deploy with the named error while the other node deploys;
//! `kill -9` of `ferrumd` mid-deploy and mid-reset (a reset that restores a
//! default environment), and the work still ends cleanly; Grid'5000 names
//! (site `lille`, cluster `chifflot`) resolving in the lab, and
//! `tiny-python` deployed and used as Ansible would.
//!
//! Labs run one at a time ([`ferrum_tests::lab_lock`]); every wait is
//! bounded.

use std::process::Command;
use std::time::{Duration, Instant};

use ferrum_tests::lab::{DEPLOY_DEADLINE, Lab, LiveProgress, RESET_DEADLINE, text, user_key, wait_deployment};
use ferrum_tests::{lab_lock, wait_until};
use serde_json::Value;

fn op_of<'a>(deployment: &'a Value, node: &str) -> &'a Value {
    deployment["nodes"].as_array().expect("nodes").iter().find(|n| n["node"] == node).expect("node in the deployment")
}

#[test]
fn full_loop_reserve_deploy_ssh_release_reset_on_ipmi_and_redfish_nodes() {
    let _one = lab_lock();
    let lab = Lab::up(91, 2, &[]);
    assert_eq!(lab.node("qemu-1")["bmc"], "ipmi");
    assert_eq!(lab.node("qemu-2")["bmc"], "redfish");
    // The lease owner's browser starts and signs in while the nodes come up.
    let owner = lab.json(&["whoami"])["name"].as_str().expect("user name").to_owned();
    let mut browser = LiveProgress::start(&lab, &owner);
    lab.wait_states(&["qemu-1", "qemu-2"], "available", Duration::from_secs(60));
    let (key, public) = user_key(lab.dir.path());
    let waited = Instant::now();
    browser.wait_signed_in();
    eprintln!("the browser signed in {:.1} s after the nodes were available", waited.elapsed().as_secs_f64());

    // Reserve with a deploy: the deployment starts on its own at lease start.
    let started = Instant::now();
    let public_text = public.to_str().expect("utf-8 path");
    let lease = lab.json(&["lease", "create", "--count", "2", "--duration", "1h", "--deploy", "tiny", "--ssh-key", public_text]);
    let lease_id = lease["id"].as_i64().expect("lease id").to_string();
    let deployment = wait_until("the lease's deployment starts", Duration::from_secs(60), || {
        let list = lab.json(&["deployment", "list", &lease_id]);
        list.as_array().and_then(|l| l.first()).and_then(|d| d["id"].as_i64()).ok_or_else(|| list.to_string())
    });
    // The lease page opens while the deployment runs, and follows it.
    browser.follow(&lease_id, deployment);
    let (ok, done) = wait_deployment(&lab, deployment);
    assert!(ok, "deployment failed: {done:#}\n{}", lab.logs());
    eprintln!("reserve → deployed → SSH on 2 nodes: {:.1} s", started.elapsed().as_secs_f64());
    let seen = Instant::now();
    browser.finish();
    eprintln!("the lease page showed the end {:.1} s later", seen.elapsed().as_secs_f64());
    for name in ["qemu-1", "qemu-2"] {
        let op = op_of(&done, name);
        assert_eq!(op["state"], "done", "{op:#}");
        assert!(op["message"].as_str().unwrap_or_default().contains("Linux"), "the controller's SSH check ran uname: {op:#}");
        assert!(op["host_key"].as_str().unwrap_or_default().starts_with("SHA256:"), "{op:#}");
        assert!(op["bytes_written"].as_u64().unwrap_or(0) > 0, "{op:#}");
        let phases: Vec<&str> = op["phases"].as_array().expect("phases").iter().filter_map(|p| p["phase"].as_str()).collect();
        assert_eq!(phases, ["boot_ramdisk", "wait_agent", "write_image", "install_keys", "boot_system", "ssh_check", "finished"]);
        assert_eq!(lab.node_state(name), "deployed");
    }

    // The experimenter logs in as root with her own key.
    for name in ["qemu-1", "qemu-2"] {
        let ip = lab.node(name)["ip"].as_str().expect("ip").to_owned();
        let out = lab.ssh(&ip, &key, "uname -a; id -u; hostname");
        let said = text(&out);
        assert!(out.status.success(), "ssh root@{ip}: {said}");
        assert!(said.contains("Linux") && said.lines().any(|l| l.trim() == "0"), "{said}");
        assert!(said.contains(name), "the hostname is the node's name: {said}");
    }

    // Release: every node is reset (wiped, checked) and comes back.
    let started = Instant::now();
    let out = lab.ferrum(&["lease", "release", &lease_id]);
    assert!(out.status.success(), "release: {}", text(&out));
    lab.wait_states(&["qemu-1", "qemu-2"], "available", RESET_DEADLINE);
    eprintln!("release → reset → available on 2 nodes: {:.1} s", started.elapsed().as_secs_f64());
    for name in ["qemu-1", "qemu-2"] {
        // The wipe is verified: the inventory read after it sees a blank disk.
        let inventory = lab.json(&["node", "inventory", name]);
        let disks = inventory["reported"]["report"]["storage_devices"].as_array().cloned().unwrap_or_default();
        assert!(!disks.is_empty(), "{inventory:#}");
        assert!(disks.iter().all(|d| d.get("partition_table").is_none()), "a partition table survived the wipe: {inventory:#}");
        let events = lab.events(name);
        assert!(events.contains("reset and checked"), "{events}");
    }
}

#[test]
fn a_lying_reference_ends_suspect_and_a_refused_bmc_fails_only_its_node() {
    let _one = lab_lock();
    let lab = Lab::up(92, 2, &["--fake-memory", "qemu-2", "--wrong-bmc-password", "qemu-1"]);
    lab.wait_states(&["qemu-1", "qemu-2"], "available", Duration::from_secs(60));
    let (_key, public) = user_key(lab.dir.path());
    let lease = lab.json(&["lease", "create", "--count", "2", "--duration", "1h"]);
    let lease_id = lease["id"].as_i64().expect("lease id").to_string();
    lab.wait_states(&["qemu-1", "qemu-2"], "reserved", Duration::from_secs(60));

    // ferrum was given a wrong password for qemu-1's BMC: nothing has used
    // it yet (the lab's power sweep runs every 10 minutes).
    let password = std::fs::read_to_string(lab.dir.path().join("bmc-password")).expect("bmc-password");
    let out = lab.ferrum(&["--json", "deploy", &lease_id, "--env", "tiny", "--ssh-key", public.to_str().expect("utf-8"), "--wait"]);
    assert_eq!(out.status.code(), Some(7), "a partial deployment exits 7: {}\n{}", text(&out), lab.logs());
    let done: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(done["state"], "partial", "{done:#}");
    let refused = op_of(&done, "qemu-1");
    assert_eq!(refused["state"], "failed", "{refused:#}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("refused the credentials") && message.contains("127.0.0.1:"),
        "the error names the BMC: {message}\n{done:#}\n{}",
        lab.logs()
    );
    assert!(!message.contains(password.trim()), "no password in the error");
    assert_eq!(op_of(&done, "qemu-2")["state"], "done", "{done:#}");
    assert_eq!(lab.node_state("qemu-1"), "suspect");
    // The same deployment through the Grid'5000 API (what EnOSlib reads):
    // over, one node KO and the other OK (API-SUBSET §5 check 9).
    let id = done["id"].as_i64().expect("deployment id");
    let url = format!("{}/stable/sites/lab/deployments/D-{id}", lab.url);
    let out = Command::new("curl").args(["-sS", "--fail-with-body", "-H", &format!("Authorization: Bearer {}", lab.token), &url]).output();
    let out = out.expect("curl runs");
    let g5k: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(g5k["status"], "terminated", "{g5k:#}");
    assert_eq!(g5k["result"]["qemu-1.lab.ferrum.internal"]["state"], "KO", "{g5k:#}");
    assert_eq!(g5k["result"]["qemu-2.lab.ferrum.internal"]["state"], "OK", "{g5k:#}");

    // At release, qemu-2's reset finds less memory than its reference says.
    let out = lab.ferrum(&["lease", "release", &lease_id]);
    assert!(out.status.success(), "release: {}", text(&out));
    lab.wait_states(&["qemu-2"], "suspect", RESET_DEADLINE);
    let events = lab.events("qemu-2");
    assert!(events.contains("main_memory"), "the difference is the reason: {events}");
}

#[test]
fn kill_9_of_ferrumd_mid_deploy_and_mid_reset_still_ends_cleanly() {
    let _one = lab_lock();
    // This lab's ferrumd restores `tiny` after every reset.
    let lab = Lab::up(93, 1, &["--default-env", "tiny"]);
    lab.wait_states(&["qemu-1"], "available", Duration::from_secs(60));
    let (_key, public) = user_key(lab.dir.path());
    let lease = lab.json(&["lease", "create", "--count", "1", "--duration", "1h"]);
    let lease_id = lease["id"].as_i64().expect("lease id").to_string();
    lab.wait_states(&["qemu-1"], "reserved", Duration::from_secs(60));
    let deployment = lab.json(&["deploy", &lease_id, "--env", "tiny", "--ssh-key", public.to_str().expect("utf-8")]);
    let id = deployment["id"].as_i64().expect("deployment id");

    // Kill it once the node is in the ramdisk (the agent is at work).
    let phase = |lab: &Lab| lab.json(&["deployment", "show", &id.to_string()])["nodes"][0]["phase"].as_str().unwrap_or_default().to_owned();
    wait_until("the deploy reaches the ramdisk", DEPLOY_DEADLINE, || {
        let p = phase(&lab);
        if matches!(p.as_str(), "write_image" | "install_keys" | "boot_system" | "ssh_check" | "finished") { Ok(()) } else { Err(p) }
    });
    kill_9_and_wait_for_restart(&lab);
    let (ok, done) = wait_deployment(&lab, id);
    let state = lab.node_state("qemu-1");
    if ok {
        assert_eq!(state, "deployed", "{done:#}");
    } else {
        // Failing is allowed, cleanly: the node is back with its lease.
        assert_eq!(op_of(&done, "qemu-1")["state"], "failed", "{done:#}");
        assert_eq!(state, "reserved", "{done:#}");
    }

    // And once more during the reset.
    let out = lab.ferrum(&["lease", "release", &lease_id]);
    assert!(out.status.success(), "release: {}", text(&out));
    wait_until("the reset reaches the ramdisk", RESET_DEADLINE, || {
        let ops = lab.json(&["node", "operations", "qemu-1"]);
        let reset = ops.as_array().and_then(|a| a.iter().find(|o| o["kind"] == "reset").cloned()).unwrap_or_default();
        match reset["phase"].as_str() {
            Some("wait_agent" | "wipe" | "inventory" | "write_image" | "install_keys" | "shutdown" | "finished") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    kill_9_and_wait_for_restart(&lab);
    lab.wait_states(&["qemu-1"], "available", RESET_DEADLINE);
    let ops = lab.json(&["node", "operations", "qemu-1"]);
    let reset = ops.as_array().and_then(|a| a.iter().find(|o| o["kind"] == "reset").cloned()).expect("a reset");
    assert_eq!(reset["state"], "done", "{reset:#}");
    assert!(reset["message"].as_str().unwrap_or_default().contains("tiny restored"), "{reset:#}");
    let phases: Vec<&str> = reset["phases"].as_array().expect("phases").iter().filter_map(|p| p["phase"].as_str()).collect();
    assert!(phases.ends_with(&["wipe", "inventory", "write_image", "install_keys", "shutdown", "finished"]), "{phases:?}");
}

/// `kill -9` of the lab's ferrumd; the lab's supervisor starts it again.
fn kill_9_and_wait_for_restart(lab: &Lab) {
    let old = lab.ferrumd_pid().expect("ferrumd.pid");
    let status = Command::new("kill").args(["-9", &old.to_string()]).status().expect("kill");
    assert!(status.success());
    wait_until("ferrumd restarted and serving", Duration::from_secs(60), || {
        let pid = lab.ferrumd_pid().ok_or("no pid")?;
        if pid == old {
            return Err("same pid".into());
        }
        let out = lab.ferrum(&["whoami"]);
        if out.status.success() { Ok(()) } else { Err(text(&out)) }
    });
}

/// Issue 20's names and environment, as EnOSlib would use them: a lab whose
/// site and cluster are Grid'5000's (`lille`, `chifflot`), enrolled from
/// the reference tree it wrote; `chifflot-1.lille.ferrum.internal` and
/// `chifflot-1` resolve inside the lab's namespace only, and no longer
/// once the lab is down; ferrum's DHCP names the node in the ramdisk and
/// in the deployed system; `tiny-python` deploys and runs what Ansible
/// needs (python3 with its standard library, files sent by sftp), as root
/// over SSH to the node's name.
#[test]
fn grid5000_names_resolve_in_the_lab_and_tiny_python_runs_what_ansible_needs() {
    let _one = lab_lock();
    let lab = Lab::up(94, 1, &["--site", "lille", "--cluster", "chifflot"]);
    let fqdn = "chifflot-1.lille.ferrum.internal";
    let node = lab.json(&["node", "show", "chifflot-1"]);
    assert_eq!((node["site"].as_str(), node["cluster"].as_str()), (Some("lille"), Some("chifflot")), "{node:#}");
    let tree = lab.dir.path().join("reference/sites/lille/clusters/chifflot/nodes/chifflot-1.json");
    let description: Value = serde_json::from_str(&std::fs::read_to_string(&tree).expect("the reference tree")).expect("json");
    assert_eq!(description["uid"], "chifflot-1");
    let env = std::fs::read_to_string(lab.dir.path().join("lab.env")).expect("lab.env");
    for line in ["export FERRUM_LAB_SITE=lille\n", "export FERRUM_LAB_CLUSTER=chifflot\n", "export FERRUM_LAB_DOMAIN=ferrum.internal\n"] {
        assert!(env.contains(line), "{line} in lab.env:\n{env}");
    }
    let config = std::fs::read_to_string(lab.dir.path().join("ferrumd.toml")).expect("ferrumd.toml");
    assert!(config.contains("[sites.lille]\n") && config.contains("network = \"10.94.0.0/24\""), "{config}");

    // Names: inside the namespace, both forms; outside, neither.
    let hosts = std::path::Path::new("/etc/netns").join(&lab.netns).join("hosts");
    let getent = |name: &str| {
        let out = Command::new("ip").args(["netns", "exec", &lab.netns, "getent", "hosts", name]).output().expect("getent runs");
        String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_owned()
    };
    assert_eq!(getent(fqdn), "10.94.0.11");
    assert_eq!(getent("chifflot-1"), "10.94.0.11");
    // (Not asked outside: the root namespace's resolver would send the
    // question off this machine.)
    let root_hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    assert!(!root_hosts.contains(fqdn), "the lab's names stay inside its namespace");

    lab.wait_states(&["chifflot-1"], "available", Duration::from_secs(60));
    let (key, public) = user_key(lab.dir.path());
    let started = Instant::now();
    let public_text = public.to_str().expect("utf-8 path");
    let lease = lab.json(&["lease", "create", "--count", "1", "--duration", "1h", "--deploy", "tiny-python", "--ssh-key", public_text]);
    let lease_id = lease["id"].as_i64().expect("lease id").to_string();
    let deployment = wait_until("the lease's deployment starts", Duration::from_secs(60), || {
        let list = lab.json(&["deployment", "list", &lease_id]);
        list.as_array().and_then(|l| l.first()).and_then(|d| d["id"].as_i64()).ok_or_else(|| list.to_string())
    });
    let (ok, done) = wait_deployment(&lab, deployment);
    assert!(ok, "deployment failed: {done:#}\n{}", lab.logs());
    eprintln!("reserve → tiny-python deployed → SSH on 1 node: {:.1} s", started.elapsed().as_secs_f64());

    // The DHCP server named the node in both phases (the console says so).
    let serial = std::fs::read_to_string(lab.dir.path().join("nodes/chifflot-1/serial.log")).expect("serial.log");
    for marker in ["ferrum-ramdisk: hostname chifflot-1", "ferrum-tiny: hostname chifflot-1"] {
        assert!(serial.contains(marker), "{marker} on the console:\n{serial}");
    }

    // Root over SSH to the node's name: its host name, and python3 with
    // the modules Ansible's module wrapper imports.
    let started = Instant::now();
    let python =
        "hostname; python3 -c 'import json,subprocess,shlex,tempfile,zipfile,hashlib,base64; print(1, hashlib.sha1(b\"x\").hexdigest())'";
    let out = lab.ssh(fqdn, &key, python);
    let said = text(&out);
    assert!(out.status.success(), "ssh root@{fqdn}: {said}");
    let lines: Vec<&str> = said.lines().map(str::trim).collect();
    assert_eq!(lines, ["chifflot-1", "1 11f6ad8ec52a2984abaafd7c3b516503785c2072"], "{said}");
    eprintln!("ssh + python3 imports on the node: {:.1} s", started.elapsed().as_secs_f64());

    // A file there and back by sftp (OpenSSH's client against dropbear's
    // sftp subsystem), as Ansible sends its modules.
    let local = lab.dir.path().join("sent.txt");
    std::fs::write(&local, "sent by sftp\n").expect("write");
    let batch = format!("put {} /tmp/sent.txt\n", local.display());
    let mut sftp = Command::new("ip")
        .args(["netns", "exec", &lab.netns, "sftp", "-b", "-", "-i"])
        .arg(&key)
        .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"])
        .arg(format!("root@{fqdn}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sftp runs");
    {
        use std::io::Write;
        sftp.stdin.take().expect("stdin").write_all(batch.as_bytes()).expect("batch written");
    }
    let out = sftp.wait_with_output().expect("sftp ends");
    assert!(out.status.success(), "sftp put: {}", text(&out));
    let out = lab.ssh("chifflot-1", &key, "cat /tmp/sent.txt");
    assert_eq!(text(&out), "sent by sftp\n", "the short name works too");

    // Down: the names go with the lab.
    assert!(hosts.is_file());
    drop(lab);
    assert!(!hosts.exists(), "{} is removed by lab down", hosts.display());
}
