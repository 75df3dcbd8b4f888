//! `IpmiSim`: a real OpenIPMI `ipmi_sim` BMC on its own UDP port of
//! 127.0.0.1, with a `chassis_control` script that records the power and
//! boot device it is told into files, and helpers to ask `ipmitool` (the
//! reference client) what it sees.
//!
//! Each instance owns its tempdir, port and child process, so tests run in
//! parallel. It must not leave processes behind: the child is killed by
//! PID and reaped on drop (this sandbox's PID 1 does not reap zombies).

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long `ipmi_sim` may take to answer after it was started.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// A running `ipmi_sim`.
#[derive(Debug)]
pub struct IpmiSim {
    pub port: u16,
    pub password: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl IpmiSim {
    /// Writes the configuration, starts `ipmi_sim` and waits until it
    /// answers an RMCP ping (at most 10 s).
    pub fn start() -> IpmiSim {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_udp_port();
        // A password per instance, so a leak in a message is recognisable.
        let password = format!("pw{port}x{}", std::process::id());
        let root = dir.path();
        std::fs::create_dir_all(root.join("state")).expect("state dir");
        std::fs::write(root.join("power"), "0\n").expect("power file");
        std::fs::write(root.join("boot"), "default\n").expect("boot file");

        let script = root.join("chassis_control");
        std::fs::write(&script, chassis_control_script(root)).expect("chassis_control");
        set_executable(&script);

        let lan_conf = format!(
            "name \"ferrum-test\"\n\
             set_working_mc 0x20\n\
             startlan 1\n\
             \x20 addr 127.0.0.1 {port}\n\
             \x20 priv_limit admin\n\
             \x20 allowed_auths_callback none md2 md5 straight\n\
             \x20 allowed_auths_user none md2 md5 straight\n\
             \x20 allowed_auths_operator none md2 md5 straight\n\
             \x20 allowed_auths_admin none md2 md5 straight\n\
             \x20 guid a123456789abcdefa123456789abcdef\n\
             endlan\n\
             chassis_control \"{script}\"\n\
             user 2 true \"admin\" \"{password}\" admin 10 none md2 md5 straight\n",
            script = script.display()
        );
        std::fs::write(root.join("lan.conf"), lan_conf).expect("lan.conf");
        let emu = "mc_setbmc 0x20\n\
                   mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n\
                   sel_enable 0x20 1000 0x0a\n\
                   mc_enable 0x20\n";
        std::fs::write(root.join("bmc.emu"), emu).expect("bmc.emu");

        let log = std::fs::File::create(root.join("ipmi_sim.log")).expect("log file");
        let child = Command::new("/usr/bin/ipmi_sim")
            .arg("-c")
            .arg(root.join("lan.conf"))
            .arg("-f")
            .arg(root.join("bmc.emu"))
            .arg("-s")
            .arg(root.join("state"))
            .arg("-n")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start ipmi_sim");
        let mut sim = IpmiSim { port, password, dir, child: Some(child) };
        sim.wait_ready();
        sim
    }

    /// `ipmi://admin:<password>@127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("ipmi://admin:{}@127.0.0.1:{}", self.password, self.port)
    }

    /// `127.0.0.1:<port>`, as errors name the BMC.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The power the chassis_control script last recorded ("0" or "1").
    pub fn recorded_power(&self) -> String {
        self.read("power")
    }

    /// The boot device the chassis_control script last recorded.
    pub fn recorded_boot(&self) -> String {
        self.read("boot")
    }

    /// Every `set` the script received, one `name value` a line.
    pub fn recorded_log(&self) -> String {
        self.read("log")
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default().trim().to_owned()
    }

    /// Runs `ipmitool -I lanplus -C 3 ... <args>` against this BMC and
    /// returns its stdout; panics (with stderr) when it fails.
    pub fn ipmitool(&self, args: &[&str]) -> String {
        let port = self.port.to_string();
        let out = Command::new("/usr/bin/ipmitool")
            .args(["-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-p", &port, "-U", "admin", "-P", &self.password])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ipmitool");
        assert!(out.status.success(), "ipmitool {args:?} failed: {}\n{}", String::from_utf8_lossy(&out.stderr), self.read("ipmi_sim.log"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Kills `ipmi_sim` now (by PID) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_DEADLINE;
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind probe socket");
        socket.connect(("127.0.0.1", self.port)).expect("connect probe socket");
        socket.set_read_timeout(Some(Duration::from_millis(100))).expect("probe timeout");
        // RMCP header (v6, seq 0xff, class ASF) + ASF presence ping, tag 0x42.
        let ping = [0x06, 0x00, 0xff, 0x06, 0x00, 0x00, 0x11, 0xbe, 0x80, 0x42, 0x00, 0x00];
        let mut buf = [0u8; 512];
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("ipmi_sim exited with {status}: {}", self.read("ipmi_sim.log"));
            }
            let _ = socket.send(&ping);
            // The receive timeout (100 ms) paces this bounded polling loop.
            match socket.recv(&mut buf) {
                Ok(n) if n >= 12 && buf[8] == 0x40 => return,
                // Nobody listens yet: the ICMP refusal comes back at once,
                // so the receive timeout cannot pace this (synchronous,
                // deadline-bounded) readiness probe. Justified sleep: a
                // 20 ms pause between probes, never a wait for an outcome.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => std::thread::sleep(Duration::from_millis(20)),
                _ => {}
            }
            if Instant::now() > deadline {
                panic!("ipmi_sim did not answer within {START_DEADLINE:?}: {}", self.read("ipmi_sim.log"));
            }
        }
    }
}

impl Drop for IpmiSim {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A UDP port nobody used a moment ago (bind port 0, read it, close).
pub fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind port 0");
    socket.local_addr().expect("local addr").port()
}

/// The `chassis_control` program: `[<mc>] get power boot` prints the
/// recorded state; `[<mc>] set <name> <value> ...` records it.
fn chassis_control_script(dir: &Path) -> String {
    let dir = dir.display();
    format!(
        r#"#!/bin/sh
dir="{dir}"
# Skip whatever comes before the verb (the MC name, when ipmi_sim passes one).
while [ $# -gt 0 ] && [ "$1" != get ] && [ "$1" != set ]; do
    shift
done
op="$1"
shift
case "$op" in
get)
    for item in "$@"; do
        case "$item" in
        power) echo "power:$(cat "$dir/power")" ;;
        boot) echo "boot:$(cat "$dir/boot")" ;;
        esac
    done
    ;;
set)
    while [ $# -ge 2 ]; do
        echo "$1 $2" >> "$dir/log"
        case "$1" in
        power) echo "$2" > "$dir/power" ;;
        reset) echo 1 > "$dir/power" ;;
        shutdown) echo 0 > "$dir/power" ;;
        boot) echo "$2" > "$dir/boot" ;;
        esac
        shift 2
    done
    ;;
esac
exit 0
"#
    )
}

fn set_executable(path: &PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}
