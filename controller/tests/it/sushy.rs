//! Test harness for sushy-tools' Redfish emulator: starts one
//! `sushy-emulator` child per test (fake driver, HTTP Basic from a bcrypt
//! htpasswd file, a private state directory and a free port on 127.0.0.1)
//! and kills it by PID when dropped.
//!
//! It owns the emulator's configuration and lifetime only; it must not
//! skip when the emulator is missing (the test fails with a clear message)
//! and must not wait with a plain sleep (it polls with a deadline).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The user and password the emulator accepts.
pub const USER: &str = "admin";
pub const PASSWORD: &str = "ferrum-test-pw";
/// bcrypt (cost 4) of [`PASSWORD`], made once with python's `bcrypt`;
/// sushy checks it with `bcrypt.checkpw`.
const PASSWORD_BCRYPT: &str = "$2b$04$EYDE4aPWjZKJYzCbG0FlV.9CN6W/Lsjk2OxT464Vqy2T3WAIV56tC";

/// A fake system of the emulator.
#[derive(Clone, Copy, Debug)]
pub struct FakeSystem {
    pub name: &'static str,
    pub uuid: &'static str,
    /// Power state at start.
    pub power_on: bool,
}

/// Starts powered off.
pub const NODE_OFF: FakeSystem = FakeSystem { name: "node-1", uuid: "27946b59-9e44-4fa7-8e91-f3527a1ef094", power_on: false };
/// Starts powered on.
pub const NODE_ON: FakeSystem = FakeSystem { name: "node-2", uuid: "f9d3c2a1-6b1e-4c8a-9d42-0e5b7c3a8f10", power_on: true };

/// A running sushy-emulator.
pub struct Sushy {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

/// The emulator executable: `FERRUM_SUSHY_EMULATOR`, else `sushy-emulator`
/// on PATH. Panics (fails the test) when neither exists.
fn emulator() -> PathBuf {
    if let Some(path) = std::env::var_os("FERRUM_SUSHY_EMULATOR") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "FERRUM_SUSHY_EMULATOR={} is not a file: install sushy-tools 2.2.0 in a venv and point it there",
            path.display()
        );
        return path;
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("sushy-emulator"))
        .find(|p| p.is_file());
    on_path.unwrap_or_else(|| {
        panic!(
            "sushy-emulator not found: set FERRUM_SUSHY_EMULATOR to its path (e.g. a venv with `pip install sushy-tools==2.2.0`) or put it on PATH"
        )
    })
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

fn python_system(s: &FakeSystem) -> String {
    format!(
        "{{'uuid': '{}', 'name': '{}', 'power_state': '{}', 'external_notifier': False, 'nics': [{{'mac': '00:5c:52:31:3a:9c', 'ip': '172.22.130.100'}}]}}",
        s.uuid,
        s.name,
        if s.power_on { "On" } else { "Off" }
    )
}

impl Sushy {
    /// Starts an emulator with [`NODE_OFF`] and [`NODE_ON`], and waits
    /// (at most 20 s) until it answers.
    pub async fn start() -> Sushy {
        let exe = emulator();
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let auth = dir.path().join("htpasswd");
        std::fs::write(&auth, format!("{USER}:{PASSWORD_BCRYPT}\n")).expect("write htpasswd");
        let state = dir.path().join("state");
        let config = format!(
            "SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\n\
             SUSHY_EMULATOR_LISTEN_PORT = {port}\n\
             SUSHY_EMULATOR_AUTH_FILE = '{}'\n\
             SUSHY_EMULATOR_STATE_DIR = '{}'\n\
             SUSHY_EMULATOR_FAKE_DRIVER = True\n\
             SUSHY_EMULATOR_FAKE_SYSTEMS = [{}, {}]\n",
            auth.display(),
            state.display(),
            python_system(&NODE_OFF),
            python_system(&NODE_ON)
        );
        let config_path = dir.path().join("emulator.conf");
        std::fs::write(&config_path, config).expect("write config");
        let log = std::fs::File::create(dir.path().join("emulator.log")).expect("log file");
        let child = Command::new(&exe)
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        let mut sushy = Sushy { child, port, dir };
        sushy.wait_ready().await;
        sushy
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("emulator.log")).unwrap_or_default()
    }

    async fn wait_ready(&mut self) {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("client");
        let url = format!("http://127.0.0.1:{}/redfish/v1/", self.port);
        let what = format!("sushy-emulator answering on port {}", self.port);
        super::harness::wait_until(&what, Duration::from_secs(20), async || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sushy-emulator exited early ({status}):\n{}", self.log());
            }
            match client.get(&url).send().await {
                Ok(response) if matches!(response.status().as_u16(), 200 | 401) => Ok(()),
                Ok(response) => Err(format!("HTTP {}", response.status())),
                Err(e) => Err(format!("{e}; log:\n{}", self.log())),
            }
        })
        .await;
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redfish+http://admin:<pw>@127.0.0.1:<port>/<system>`.
    pub fn url(&self, system: &str) -> String {
        format!("redfish+http://{USER}:{PASSWORD}@127.0.0.1:{}/{system}", self.port)
    }

    /// GETs a system document directly (Basic auth), for checks.
    pub async fn system(&self, system: &FakeSystem) -> serde_json::Value {
        let url = format!("http://127.0.0.1:{}/redfish/v1/Systems/{}", self.port, system.uuid);
        let response = reqwest::Client::new().get(url).basic_auth(USER, Some(PASSWORD)).send().await.expect("GET system");
        assert_eq!(response.status().as_u16(), 200);
        response.json().await.expect("system JSON")
    }
}

impl Drop for Sushy {
    fn drop(&mut self) {
        // Child::kill signals this child's PID only; wait() reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
