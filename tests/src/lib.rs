//! Process-level test support: start the real `ferrumd` binary on a fresh
//! data directory and run the real `ferrum` CLI against it. The tests live
//! in `tests/`; this library only holds what they share.
//!
//! Processes are started by this code and killed by PID when the handle is
//! dropped; nothing here touches any address but loopback.

pub mod lab;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, mpsc};
use std::time::Duration;

/// The path of a workspace binary, (re)built once per test process with the
/// same profile as the running test, so a stale binary is never tested and
/// `cargo test -p ferrum-tests` alone works too.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>-<hash>, or target/<profile>/<bench binary>
    let parent = exe.parent().expect("target dir");
    let dir = if parent.ends_with("deps") { parent.parent().expect("target profile dir") } else { parent }.to_owned();
    let path = dir.join(name);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|b| b == name) {
        built.push(name.to_owned());
        let release = dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args(["build", "--workspace", "--bin", name]).current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("cargo runs");
        assert!(status.success(), "cargo build --bin {name} failed");
    }
    path
}

/// A running `ferrumd` process on a fresh data directory.
#[derive(Debug)]
pub struct Ferrumd {
    pub child: Child,
    /// The API listener.
    pub url: String,
    /// The first boot listener (`[boot] listen`: `/boot/`, `/images/`,
    /// `/agent/v1/`), when the configuration names one.
    pub boot_url: Option<String>,
    pub admin_token: String,
    pub data_dir: tempfile::TempDir,
    /// The network namespace it runs in (`ip netns exec`), if any.
    pub netns: Option<String>,
}

impl Ferrumd {
    /// Starts `ferrumd --listen 127.0.0.1:0 --data-dir <tmp>` and waits
    /// (bounded) for the line that says where it serves.
    pub fn start() -> Ferrumd {
        Ferrumd::start_with(None, "", "127.0.0.1:0")
    }

    /// Starts `ferrumd --config <tmp>/ferrumd.toml --listen LISTEN` with
    /// `config` as the file's text, inside `netns` when given (the process
    /// is `ip netns exec`, which becomes ferrumd: same PID).
    pub fn start_with(netns: Option<&str>, config: &str, listen: &str) -> Ferrumd {
        Ferrumd::spawn(netns, config, listen, &[])
    }

    /// Starts one replica on the shared database `database`
    /// (`ferrumd --database URL --listen 127.0.0.1:0`). The first replica
    /// on an empty database creates the admin; later ones have no
    /// `admin.token` (their `admin_token` is empty). Replicas share one
    /// secrets key file (one per test process; created by the first).
    pub fn start_replica(database: &str) -> Ferrumd {
        static KEYS: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
        let keys = KEYS.get_or_init(|| tempfile::tempdir().expect("tempdir"));
        Ferrumd::start_keyed(database, &keys.path().join("replicas.key"))
    }

    /// Starts `ferrumd` on `database` with the secrets key file `key`
    /// (`secrets_key_file`), like [`Ferrumd::start_replica`].
    pub fn start_keyed(database: &str, key: &Path) -> Ferrumd {
        let config = format!("secrets_key_file = {:?}\n", key.display().to_string());
        Ferrumd::spawn(None, &config, "127.0.0.1:0", &["--database", database])
    }

    fn spawn(netns: Option<&str>, config: &str, listen: &str, extra: &[&str]) -> Ferrumd {
        let data_dir = tempfile::tempdir().expect("tempdir");
        let config_path = data_dir.path().join("ferrumd.toml");
        std::fs::write(&config_path, config).expect("config written");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(binary("ferrumd"));
                c
            }
            None => Command::new(binary("ferrumd")),
        };
        let mut child = cmd
            .arg("--config")
            .arg(&config_path)
            .args(["--listen", listen, "--data-dir"])
            .arg(data_dir.path())
            .args(extra)
            .env("RUST_LOG", std::env::var("FERRUM_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("ferrumd starts");
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // FERRUM_TEST_LOG set: the controller's log goes on to stderr.
            let echo = std::env::var_os("FERRUM_TEST_LOG").is_some();
            // ferrumd logs its boot listeners (`boot_addr=`) before the API's
            // `addr=`: the API line closes the list.
            let mut boot = Vec::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("{line}");
                }
                for field in line.split_whitespace() {
                    if let Some(addr) = field.strip_prefix("boot_addr=") {
                        boot.push(addr.to_owned());
                    } else if let Some(addr) = field.strip_prefix("addr=") {
                        let _ = tx.send((addr.to_owned(), std::mem::take(&mut boot)));
                    }
                }
            }
        });
        let (addr, boot) = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(found) => found,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("ferrumd did not report its address within 60 s");
            }
        };
        let token_file = data_dir.path().join("admin.token");
        let admin_token = match std::fs::read_to_string(&token_file) {
            Ok(token) => token.trim().to_owned(),
            Err(_) if !extra.is_empty() => String::new(),
            Err(e) => panic!("{}: {e}", token_file.display()),
        };
        let boot_url = boot.first().map(|a| format!("http://{a}"));
        Ferrumd { child, url: format!("http://{addr}"), boot_url, admin_token, data_dir, netns: netns.map(str::to_owned) }
    }

    /// Runs `ferrum ARGS` against this server with `token` (inside its
    /// network namespace, if it has one).
    pub fn ferrum(&self, token: &str, args: &[&str]) -> Output {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(binary("ferrum"));
                c
            }
            None => Command::new(binary("ferrum")),
        };
        cmd.args(args)
            .env("FERRUM_URL", &self.url)
            .env("FERRUM_TOKEN", token)
            .env_remove("FERRUM_CONFIG")
            .env("HOME", self.data_dir.path())
            .env("NO_COLOR", "1")
            .env("COLUMNS", "100")
            .output()
            .expect("ferrum runs")
    }
}

impl Drop for Ferrumd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a future to completion from a synchronous `wait_until` check
/// inside a multi-threaded tokio test.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

/// POSTs `body` as JSON to `url` with `token`; returns the status and the
/// JSON answer.
pub async fn post_json(client: &reqwest::Client, url: &str, token: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let resp = client.post(url).bearer_auth(token).json(body).send().await.unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_else(|e| panic!("POST {url}: answer is not JSON: {e}")))
}

/// Sends `count` copies of the lease request `body` at once, the i-th to
/// `targets[i % len]` (a server URL and a token), and checks the answers of
/// a race for one slot starting at `start` for `hours`: exactly one 201,
/// every other a 409 whose `earliest_start` is the slot's end. Returns
/// (won, lost).
pub async fn race_for_one_slot(
    targets: &[(String, String)],
    body: &serde_json::Value,
    count: usize,
    start: &str,
    hours: i64,
) -> (usize, usize) {
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..count {
        let (url, token) = targets[i % targets.len()].clone();
        let (client, body) = (client.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let resp = client.post(format!("{url}/api/v1/leases")).bearer_auth(token).json(&body).send().await.expect("request");
            let status = resp.status().as_u16();
            (status, resp.json::<serde_json::Value>().await.expect("json answer"))
        }));
    }
    let expected_earliest = chrono::DateTime::parse_from_rfc3339(start).expect("start") + chrono::Duration::hours(hours);
    let (mut won, mut lost) = (0, 0);
    for t in tasks {
        let (status, body) = t.await.expect("task");
        match status {
            201 => won += 1,
            409 => {
                lost += 1;
                let earliest = body["error"]["earliest_start"].as_str().expect("409 carries earliest_start");
                assert_eq!(chrono::DateTime::parse_from_rfc3339(earliest).expect("rfc3339"), expected_earliest, "{body}");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    (won, lost)
}

/// Builds (once per test process; cached across runs under
/// `~/.cache/ferrum`) what the virtual lab boots: the deploy ramdisk and
/// the `tiny` environment. Returns the images directory.
pub fn lab_images() -> PathBuf {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(dir) = built.as_ref() {
        return dir.clone();
    }
    use ferrum_images::plan::{self, Options, Target};
    let options = Options::with_default_dirs().expect("HOME is set");
    plan::build(&options, &[Target::RamdiskLab, Target::Tiny], |r| {
        eprintln!("lab images: {} {:?} in {:.1} s", r.step, r.freshness, r.duration.as_secs_f64())
    })
    .expect("the lab's images build");
    *built = Some(options.out.clone());
    options.out
}

/// One virtual lab at a time per test process: each lab runs several TCG
/// virtual machines, and two labs at once on a 2-core machine would only
/// make both slow.
pub fn lab_lock() -> std::sync::MutexGuard<'static, ()> {
    static LAB: Mutex<()> = Mutex::new(());
    LAB.lock().unwrap_or_else(|e| e.into_inner())
}

/// The fixture tree of Grid'5000 reference descriptions.
pub fn fixtures() -> PathBuf {
    match std::env::var_os("FERRUM_FIXTURES") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/g5k-reference"),
    }
}

/// Waits until `check` gives `Ok`, at most `limit`, and returns its value;
/// on the deadline it fails the test with `what` and the last `Err` (what
/// was seen). The one condition wait of the process-level tests: the
/// processes they watch (QEMU's serial console, a controller's state read
/// through the CLI) expose no event to block on, so the condition is read
/// again every `PACE`. Justified sleep: it paces a deadline-bounded
/// condition check; nothing waits a fixed time for something to happen.
pub fn wait_until<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    const PACE: Duration = Duration::from_millis(100);
    let deadline = std::time::Instant::now() + limit;
    loop {
        match check() {
            Ok(value) => return value,
            Err(seen) => assert!(std::time::Instant::now() < deadline, "{what}: not within {limit:?}; last seen:\n{seen}"),
        }
        std::thread::sleep(PACE);
    }
}
