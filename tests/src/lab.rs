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

/// The web test venv (Playwright, pinned in `scripts/web-venv.sh`, which
/// `scripts/test.sh` runs before the tests): `WEB_TEST_VENV`, default
/// `~/.cache/ferrum/web-venv`. Tests install nothing themselves.
pub fn web_venv() -> PathBuf {
    match std::env::var_os("WEB_TEST_VENV") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(&std::env::var_os("HOME").expect("HOME is set")).join(".cache/ferrum/web-venv"),
    }
}

/// The Grid'5000 clients' venv (python-grid5000, EnOSlib and its Ansible,
/// pinned by `scripts/g5k-venv.sh`).
pub fn g5k_venv() -> PathBuf {
    match std::env::var_os("G5K_TEST_VENV") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(&std::env::var_os("HOME").expect("HOME is set")).join(".cache/ferrum/g5k-venv"),
    }
}

/// Debian's Chromium, which Playwright drives (never `playwright install`).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// A lease's page in a real browser while its deployment runs on the lab:
/// `tests/web/lab_progress.py` in Chromium, with the web venv's python,
/// inside the lab's namespace (the lab's ferrumd is local there; nothing
/// else is reachable). It signs in as the lease owner as soon as it
/// starts, opens the lease's page when [`LiveProgress::follow`] names the
/// running deployment, and passes when the page followed it to its end
/// without a reload. Killed by PID on drop if still running.
pub struct LiveProgress {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    said: Vec<String>,
}

impl std::fmt::Debug for LiveProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveProgress").field("pid", &self.child.id()).finish_non_exhaustive()
    }
}

impl LiveProgress {
    /// Starts the browser; it sets `user`'s password through an activation
    /// link and signs in.
    pub fn start(lab: &Lab, user: &str) -> LiveProgress {
        let python = web_venv().join("bin/python");
        assert!(python.exists(), "{}: the web test venv is missing: run scripts/web-venv.sh (scripts/test.sh does)", python.display());
        assert!(Path::new(CHROMIUM).exists(), "{CHROMIUM} is missing: run scripts/setup.sh (Debian's chromium)");
        let out = lab.ferrum(&["admin", "user", "activation-link", user]);
        assert!(out.status.success(), "activation link: {}", text(&out));
        let link = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_owned();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("web/lab_progress.py");
        // WEB_TEST_SCREENSHOTS (as for scripts/web-test.sh, relative to the
        // repository): where the page's picture goes; none when unset.
        let shots = std::env::var_os("WEB_TEST_SCREENSHOTS").map(|d| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(d));
        // `ip netns exec` execs python: the child's PID is python's.
        let mut child = Command::new("ip")
            .args(["netns", "exec", &lab.netns])
            .arg(&python)
            .arg(&script)
            .env("LAB_URL", &lab.url)
            .env("ACTIVATION_LINK", &link)
            .env("LAB_USER", user)
            .env("CHROMIUM", CHROMIUM)
            .env("DEPLOY_DEADLINE", DEPLOY_DEADLINE.as_secs().to_string())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .envs(shots.map(|d| ("SCREENSHOT_DIR", d)))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the web venv's python starts");
        // Both streams, line by line, into one channel that closes when
        // the process has closed both.
        let (tx, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("stdout piped");
        let stderr = child.stderr.take().expect("stderr piped");
        for stream in [Box::new(stdout) as Box<dyn std::io::Read + Send>, Box::new(stderr)] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stream).lines().map_while(Result::ok) {
                    eprintln!("browser: {line}");
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        LiveProgress { child, lines, said: Vec::new() }
    }

    /// Reads what the browser says until `wanted` (a whole line), at most
    /// `limit`; `None` once it has closed its output (it ended).
    fn read_until(&mut self, wanted: Option<&str>, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = wanted == Some(line.as_str());
                    self.said.push(line);
                    if found {
                        return Ok(());
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) if wanted.is_none() => return Ok(()),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Err("the browser's script ended".into()),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return Err(format!("not within {limit:?}")),
            }
        }
    }

    /// Waits (bounded) until the browser is signed in.
    pub fn wait_signed_in(&mut self) {
        if let Err(why) = self.read_until(Some("signed in"), Duration::from_secs(180)) {
            panic!("the browser did not sign in: {why}; it said:\n{}", self.said.join("\n"));
        }
    }

    /// Tells the browser to open lease `lease`'s page and follow its
    /// running deployment `deployment`.
    pub fn follow(&mut self, lease: &str, deployment: i64) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("stdin piped");
        let sent = writeln!(stdin, "{lease} {deployment}").and_then(|()| stdin.flush());
        assert!(sent.is_ok(), "the browser's script stopped reading: {sent:?}; it said:\n{}", self.said.join("\n"));
    }

    /// Waits (bounded) for the browser's verdict, once the deployment is
    /// over: its script must end with success.
    pub fn finish(mut self) {
        if let Err(why) = self.read_until(None, Duration::from_secs(120)) {
            panic!("the browser did not finish: {why}; it said:\n{}", self.said.join("\n"));
        }
        let status = self.child.wait().expect("wait for the browser's script");
        assert!(
            status.success(),
            "the lease page did not follow the deployment live ({status}); the browser said:\n{}",
            self.said.join("\n")
        );
    }
}

impl Drop for LiveProgress {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
