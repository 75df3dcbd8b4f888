//! A virtual lab driven from the root namespace, as an operator would:
//! `ferrum lab up`, the `ferrum` CLI with the lab's `lab.env`, SSH from
//! inside the lab, `ferrum lab down` on drop. Shared by the end-to-end
//! tests and the deploy benchmark.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{binary, lab_images, wait_until};

/// TCG on a loaded 2-core machine: a deploy takes tens of seconds, a slow
/// CI machine may take several times that.
pub const DEPLOY_DEADLINE: Duration = Duration::from_secs(420);
pub const RESET_DEADLINE: Duration = Duration::from_secs(420);

/// A command's stdout and stderr, for messages.
pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A running lab, brought down (by `ferrum lab down`) on drop.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub token: String,
    pub netns: String,
    pub state: Value,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab").field("dir", &self.dir.path()).field("url", &self.url).field("netns", &self.netns).finish_non_exhaustive()
    }
}

impl Lab {
    /// `ferrum lab up --nodes N --subnet-id K EXTRA` in a fresh directory.
    pub fn up(subnet_id: u8, nodes: u32, extra: &[&str]) -> Lab {
        let images = lab_images();
        // `lab up` runs the ferrumd next to the ferrum binary: build both.
        binary("ferrumd");
        let dir = tempfile::Builder::new().prefix("ferrum-lab-test").tempdir().expect("tempdir");
        let started = Instant::now();
        let out = Command::new(binary("ferrum"))
            .args(["lab", "up", "--nodes", &nodes.to_string(), "--subnet-id", &subnet_id.to_string()])
            .arg("--dir")
            .arg(dir.path())
            .arg("--images")
            .arg(&images)
            .args(extra)
            .env("NO_COLOR", "1")
            .output()
            .expect("ferrum lab up runs");
        let log = std::fs::read_to_string(dir.path().join("lab.log")).unwrap_or_default();
        assert!(out.status.success(), "ferrum lab up failed: {}\nlab.log:\n{log}", text(&out));
        eprintln!("lab up ({nodes} nodes): {:.1} s", started.elapsed().as_secs_f64());
        let env = std::fs::read_to_string(dir.path().join("lab.env")).expect("lab.env");
        let var = |key: &str| {
            env.lines()
                .filter_map(|l| l.trim().trim_start_matches("export ").split_once('='))
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.trim_matches(|c| c == '"' || c == '\'').to_owned())
                .unwrap_or_else(|| panic!("{key} in lab.env:\n{env}"))
        };
        let state: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("lab.json")).expect("lab.json")).expect("json");
        Lab { url: var("FERRUM_URL"), token: var("FERRUM_TOKEN"), netns: var("FERRUM_LAB_NETNS"), dir, state }
    }

    pub fn ferrum(&self, args: &[&str]) -> Output {
        Command::new(binary("ferrum"))
            .args(args)
            .env("FERRUM_URL", &self.url)
            .env("FERRUM_TOKEN", &self.token)
            .env_remove("FERRUM_CONFIG")
            .env("NO_COLOR", "1")
            .output()
            .expect("ferrum runs")
    }

    /// `ferrum --json ARGS`, which must succeed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.ferrum(&all);
        assert!(out.status.success(), "ferrum {args:?} failed: {}\n{}", text(&out), self.logs());
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("ferrum {args:?}: not JSON ({e}): {}", text(&out)))
    }

    pub fn node(&self, name: &str) -> Value {
        self.state["nodes"].as_array().expect("nodes").iter().find(|n| n["name"] == name).cloned().expect("node in lab.json")
    }

    pub fn node_state(&self, name: &str) -> String {
        self.json(&["node", "show", name])["state"].as_str().unwrap_or_default().to_owned()
    }

    /// Waits until every node named is in `state`.
    pub fn wait_states(&self, names: &[&str], state: &str, limit: Duration) {
        wait_until(&format!("{names:?} {state}"), limit, || {
            let seen: Vec<String> = names.iter().map(|n| format!("{n}={}", self.node_state(n))).collect();
            if seen.iter().all(|s| s.ends_with(&format!("={state}"))) { Ok(()) } else { Err(seen.join(" ")) }
        });
    }

    /// Runs `command` as root on `ip` over SSH with `key`, from inside the lab.
    pub fn ssh(&self, ip: &str, key: &Path, command: &str) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.netns, "ssh", "-i"])
            .arg(key)
            .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"])
            .args(["-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", &format!("root@{ip}"), command])
            .output()
            .expect("ssh runs")
    }

    pub fn ferrumd_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.path().join("ferrumd.pid")).ok()?.trim().parse().ok()
    }

    /// The tail of ferrumd's log and the lab's log, for failure messages.
    pub fn logs(&self) -> String {
        let tail = |name: &str| {
            let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        format!("--- ferrumd.log (tail)\n{}\n--- lab.log (tail)\n{}", tail("ferrumd.log"), tail("lab.log"))
    }

    pub fn events(&self, node: &str) -> String {
        let out = self.ferrum(&["--json", "node", "events", node]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = Command::new(binary("ferrum")).args(["lab", "down", "--dir"]).arg(self.dir.path()).output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!("ferrum lab down failed: {}", text(&o)),
            Err(e) => eprintln!("ferrum lab down did not run: {e}"),
        }
    }
}

/// A fresh ed25519 key pair for the experimenter.
pub fn user_key(dir: &Path) -> (PathBuf, PathBuf) {
    let key = dir.join("id_user");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "experimenter", "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success(), "ssh-keygen: {}", text(&out));
    let public = key.with_extension("pub");
    (key, public)
}

/// Follows a deployment to its end with the CLI (`--wait`), bounded.
pub fn wait_deployment(lab: &Lab, id: i64) -> (bool, Value) {
    let mut child = Command::new(binary("ferrum"))
        .args(["--json", "deployment", "show", &id.to_string(), "--wait"])
        .env("FERRUM_URL", &lab.url)
        .env("FERRUM_TOKEN", &lab.token)
        .env_remove("FERRUM_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ferrum deployment show --wait");
    // The CLI waits as long as the deployment runs; the test does not.
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until("the deployment ends", DEPLOY_DEADLINE, || match child.try_wait() {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(lab.json(&["deployment", "show", &id.to_string()]).to_string()),
            Err(e) => panic!("cannot wait for ferrum: {e}"),
        })
    }));
    if let Err(panic) = waited {
        let _ = child.kill();
        let _ = child.wait();
        eprintln!("{}", lab.logs());
        std::panic::resume_unwind(panic);
    }
    let out = child.wait_with_output().expect("ferrum's output");
    let value: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", text(&out), lab.logs()));
    (out.status.success(), value)
}
