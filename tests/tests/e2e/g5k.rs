//! EnOSlib's Grid'5000 provider, unmodified (EnOSlib 10.9.0 and its
//! Ansible, pinned by `scripts/g5k-venv.sh`), against the virtual lab:
//! API-SUBSET §5 check 11 and the successful half of check 9. A lab of
//! site `lille`, cluster `chifflot` (nodes `chifflot-1`, `chifflot-2`);
//! `tests/g5k/enoslib_lab.py` runs inside the lab's namespace, where the
//! nodes' names resolve, with a `~/.python-grid5000.yaml` that points at
//! the lab's `ferrumd`. `G5k(conf).init()` reserves both nodes with a
//! `deploy` job, deploys `tiny-python` with the user's key, and runs
//! `hostname` as root on each through Ansible; a second `init()` in a new
//! process finds and reuses the job; `destroy()` deletes it. The same
//! reservation and deployment through `ferrum lease create --deploy
//! --wait` is timed in the same run (BENCHMARKS.md, "EnOSlib against
//! ferrum").

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ferrum_tests::lab::{Lab, RESET_DEADLINE, g5k_venv, text, user_key};
use ferrum_tests::lab_lock;
use serde_json::Value;

const NODES: [&str; 2] = ["chifflot-1", "chifflot-2"];
const FQDNS: [&str; 2] = ["chifflot-1.lille.ferrum.internal", "chifflot-2.lille.ferrum.internal"];

/// `enoslib_lab.py MODE tiny-python PUBLIC` in the lab's namespace; its
/// last line of output, as JSON.
fn enoslib(lab: &Lab, home: &Path, key: &Path, public: &Path, mode: &str) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("g5k/enoslib_lab.py");
    let out: Output = Command::new("ip")
        .args(["netns", "exec", &lab.netns])
        .arg(g5k_venv().join("bin/python"))
        .arg(&script)
        .args([mode, "tiny-python"])
        .arg(public)
        .env("HOME", home)
        // Ansible's SSH: the user's key, and nodes whose host keys are new
        // at each deployment.
        .env("ANSIBLE_PRIVATE_KEY_FILE", key)
        .env("ANSIBLE_SSH_ARGS", "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python runs");
    assert!(out.status.success(), "enoslib {mode} failed: {}\n{}", text(&out), lab.logs());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("enoslib {mode}: no JSON line ({e}): {}", text(&out)))
}

/// The `/stable` requests ferrumd logged: `(method, path)` of each
/// `ferrum::g5k` access line.
fn g5k_requests(lab: &Lab) -> Vec<(String, String)> {
    let log = std::fs::read_to_string(lab.dir.path().join("ferrumd.log")).unwrap_or_default();
    let field = |line: &str, key: &str| {
        line.split_whitespace().find_map(|w| w.strip_prefix(key)).map(|v| v.trim_matches('"').to_owned()).unwrap_or_default()
    };
    log.lines().filter(|l| l.contains("grid5000 api")).map(|l| (field(l, "method="), field(l, "path="))).collect()
}

#[test]
fn enoslib_reserves_deploys_and_runs_commands_as_root_on_lab_nodes() {
    let _one = lab_lock();
    let lab = Lab::up(95, 2, &["--site", "lille", "--cluster", "chifflot"]);
    lab.wait_states(&NODES, "available", Duration::from_secs(60));
    let (key, public) = user_key(lab.dir.path());
    let user = lab.json(&["whoami"])["name"].as_str().expect("user name").to_owned();
    let home = lab.dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let yaml = format!("uri: {}/stable\nusername: {user}\npassword: {}\nverify_ssl: false\n", lab.url, lab.token);
    std::fs::write(home.join(".python-grid5000.yaml"), yaml).expect("yaml");

    // The baseline: the same reservation and deployment with ferrum's CLI.
    let public_text = public.to_str().expect("utf-8 path");
    let started = Instant::now();
    let args = ["lease", "create", "--count", "2", "--duration", "30m", "--deploy", "tiny-python", "--ssh-key", public_text, "--wait"];
    let out = lab.ferrum(&args);
    assert!(out.status.success(), "ferrum lease create --deploy --wait: {}\n{}", text(&out), lab.logs());
    let cli_secs = started.elapsed().as_secs_f64();
    let leases = lab.json(&["lease", "list"]);
    let baseline = leases.as_array().and_then(|l| l.first()).and_then(|l| l["id"].as_i64()).expect("the baseline lease").to_string();
    lab.json(&["lease", "release", &baseline]);
    lab.wait_states(&NODES, "available", RESET_DEADLINE);

    // EnOSlib: reserve, deploy, run a command as root on both nodes.
    let started = Instant::now();
    let first = enoslib(&lab, &home, &key, &public, "init");
    let enoslib_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "2 nodes reserved and tiny-python deployed: ferrum lease create --deploy --wait {cli_secs:.1} s; \
         EnOSlib G5k(conf).init() {enoslib_secs:.1} s (ratio {:.2}, including its run_command)",
        enoslib_secs / cli_secs
    );
    assert_eq!(first["addresses"], serde_json::json!(FQDNS), "{first}");
    assert_eq!(first["hostnames"], serde_json::json!(NODES), "{first}");
    let nets: Vec<&Value> =
        first["networks"].as_object().expect("networks").values().flat_map(|v| v.as_array().into_iter().flatten()).collect();
    assert!(nets.iter().any(|n| n["network"] == "10.95.0.0/24" && n["gateway"] == "10.95.0.1"), "ferrum's network: {first}");

    // A second init in a new process reuses the job: one job submitted.
    let again = enoslib(&lab, &home, &key, &public, "init");
    assert_eq!(again["hostnames"], serde_json::json!(NODES), "{again}");
    let requests = g5k_requests(&lab);
    let submitted = requests.iter().filter(|(m, p)| m == "POST" && p == "/stable/sites/lille/jobs").count();
    assert_eq!(submitted, 1, "one job for both inits: {requests:?}");
    assert!(requests.iter().any(|(m, p)| m == "POST" && p == "/stable/sites/lille/deployments"), "{requests:?}");
    let job = lab
        .json(&["lease", "list"])
        .as_array()
        .and_then(|l| l.iter().find(|l| l["name"] == "acc").and_then(|l| l["id"].as_i64()))
        .expect("EnOSlib's job is a lease named acc")
        .to_string();

    // destroy(): the job is deleted, and the lease ends.
    enoslib(&lab, &home, &key, &public, "destroy");
    assert!(g5k_requests(&lab).iter().any(|(m, p)| m == "DELETE" && *p == format!("/stable/sites/lille/jobs/{job}")));
    let state = lab.json(&["lease", "show", &job])["state"].as_str().unwrap_or_default().to_owned();
    assert!(["ending", "finished"].contains(&state.as_str()), "lease {job} after destroy: {state}");
}
