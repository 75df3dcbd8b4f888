//! The emulated BMCs of the lab, one process per node inside the lab's
//! namespace on its `127.0.0.1`:
//!
//! - odd nodes: OpenIPMI's `ipmi_sim` (`lan.conf`, `bmc.emu`, a state
//!   directory). Its `chassis_control` program is `ferrum lab bmc-hook`,
//!   which ipmi_sim runs through `sh -c` as `PROG get power boot` or
//!   `PROG set power "1"` and which forwards to the supervisor
//!   ([`chassis_control`]);
//! - even nodes: sushy-tools 2.2.0 through `lab/sushy/ferrum_sushy.py`
//!   (embedded here, written to `DIR/sushy/`), which runs sushy's own app
//!   with a system driver that asks the supervisor (see that file).
//!
//! Both use user `admin` and the lab's password (`DIR/bmc-password`); the
//! Redfish one checks it against a bcrypt htpasswd file made with the
//! venv's `bcrypt` (the password goes through stdin, never argv).
//!
//! Owns: these files, the commands that start the emulators, and the hook's
//! translation between ipmi_sim's words and the control protocol.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::control;
use crate::error::{LabError, Result};
use crate::layout::{BMC_USER, LabSpec, NodePlan};
use crate::netns::Netns;

/// The launcher, shipped in the binary.
pub const SUSHY_LAUNCHER: &str = include_str!("../sushy/ferrum_sushy.py");

/// Writes `lan.conf`, `bmc.emu` and the state directory of node `plan`'s
/// ipmi_sim, and returns the command that starts it inside `ns`.
pub fn ipmi_sim(spec: &LabSpec, ns: &Netns, plan: &NodePlan, password: &str) -> Result<Command> {
    let dir = spec.node_dir(&plan.name).join("ipmi");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).map_err(LabError::io("cannot create", &state))?;
    let hook = format!("'{}' lab bmc-hook --dir '{}' --node {}", spec.ferrum.display(), spec.dir.display(), plan.name);
    let guid =
        format!("{:032x}", 0xfe00_0000_0000_0000_0000_0000_0000_0000_u128 | (u128::from(spec.subnet_id) << 32) | u128::from(plan.index));
    let lan = format!(
        "name \"{name}\"\nset_working_mc 0x20\nstartlan 1\n  addr 127.0.0.1 {port}\n  priv_limit admin\n\
         \x20 allowed_auths_callback none md2 md5 straight\n  allowed_auths_user none md2 md5 straight\n\
         \x20 allowed_auths_operator none md2 md5 straight\n  allowed_auths_admin none md2 md5 straight\n\
         \x20 guid {guid}\nendlan\nchassis_control \"{hook}\"\n\
         user 2 true \"{BMC_USER}\" \"{password}\" admin 10 none md2 md5 straight\n",
        name = plan.name,
        port = plan.bmc_port,
    );
    let lan_path = dir.join("lan.conf");
    crate::layout::write_private(&lan_path, &lan)?;
    let emu = dir.join("bmc.emu");
    std::fs::write(
        &emu,
        "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nsel_enable 0x20 1000 0x0a\nmc_enable 0x20\n",
    )
    .map_err(LabError::io("cannot write", &emu))?;
    let mut cmd = ns.command("ipmi_sim");
    cmd.arg("-c").arg(&lan_path).arg("-f").arg(&emu).arg("-s").arg(&state).arg("-n");
    Ok(cmd)
}

/// The venv's python next to `sushy-emulator`.
pub fn sushy_python(sushy: &Path) -> PathBuf {
    let bin = sushy.parent().unwrap_or(Path::new("."));
    for name in ["python3", "python"] {
        let candidate = bin.join(name);
        if candidate.exists() {
            return candidate;
        }
    }
    bin.join("python3")
}

/// A bcrypt htpasswd line for `admin` with `password`, made by the venv's
/// python (sushy-tools depends on `bcrypt`).
pub fn htpasswd_line(python: &Path, password: &str) -> Result<String> {
    let mut child = Command::new(python)
        .args([
            "-c",
            "import bcrypt,sys; print(sys.argv[1] + ':' + bcrypt.hashpw(sys.stdin.read().encode(), bcrypt.gensalt(4)).decode())",
            BMC_USER,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| LabError::Spawn { program: python.display().to_string(), source })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(password.as_bytes()).map_err(LabError::io("cannot hash the password with", python))?;
    }
    let out = child.wait_with_output().map_err(LabError::io("cannot hash the password with", python))?;
    if !out.status.success() {
        return Err(LabError::Invalid(format!(
            "{} could not make a bcrypt hash (is it sushy-tools' venv?): {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Writes node `plan`'s sushy config and htpasswd (and the launcher,
/// once per lab) and returns the command that starts it inside `ns`.
pub fn sushy(spec: &LabSpec, ns: &Netns, plan: &NodePlan, htpasswd: &str) -> Result<Command> {
    let launcher_dir = spec.dir.join("sushy");
    std::fs::create_dir_all(&launcher_dir).map_err(LabError::io("cannot create", &launcher_dir))?;
    let launcher = launcher_dir.join("ferrum_sushy.py");
    std::fs::write(&launcher, SUSHY_LAUNCHER).map_err(LabError::io("cannot write", &launcher))?;

    let dir = spec.node_dir(&plan.name).join("redfish");
    let state = dir.join("state");
    // Fresh state: the fake driver persists its systems there.
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state).map_err(LabError::io("cannot create", &state))?;
    let auth = dir.join("htpasswd");
    crate::layout::write_private(&auth, &format!("{htpasswd}\n"))?;
    let uuid = plan.system_id.clone().unwrap_or_default();
    let config = format!(
        "SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\nSUSHY_EMULATOR_LISTEN_PORT = {port}\n\
         SUSHY_EMULATOR_AUTH_FILE = '{auth}'\nSUSHY_EMULATOR_STATE_DIR = '{state}'\n\
         SUSHY_EMULATOR_FAKE_DRIVER = True\n\
         SUSHY_EMULATOR_FAKE_SYSTEMS = [{{'uuid': '{uuid}', 'name': '{name}', 'power_state': 'Off', \
         'boot_mode': 'Legacy', 'external_notifier': False, 'nics': [{{'mac': '{mac}', 'ip': '{ip}'}}]}}]\n",
        port = plan.bmc_port,
        auth = auth.display(),
        state = state.display(),
        name = plan.name,
        mac = plan.mac,
        ip = plan.ip,
    );
    let config_path = dir.join("emulator.conf");
    std::fs::write(&config_path, config).map_err(LabError::io("cannot write", &config_path))?;
    let python = sushy_python(&spec.sushy);
    let mut cmd = ns.command(&python.to_string_lossy());
    cmd.arg(&launcher).arg("--config").arg(&config_path).env("FERRUM_LAB_SOCKET", spec.dir.join("lab.sock"));
    Ok(cmd)
}

/// ipmi_sim's `chassis_control` call for `node`: `args` are what followed
/// the program (`get power boot`, `set power 1`, possibly after an MC
/// address). Returns what to print: for `get`, one `name:value` line per
/// item; for `set`, nothing.
pub fn chassis_control(socket: &Path, node: &str, args: &[String]) -> Result<String> {
    let start = args
        .iter()
        .position(|a| a == "get" || a == "set")
        .ok_or_else(|| LabError::Invalid(format!("bmc-hook: expected `get ITEMS...` or `set ITEM VALUE...`, got {args:?}")))?;
    let (op, rest) = (&args[start], &args[start + 1..]);
    let mut out = String::new();
    if op == "get" {
        for item in rest {
            let value = match item.as_str() {
                "power" => (if control::ask(socket, node, "power", None)? == "on" { "1" } else { "0" }).to_owned(),
                "boot" => (if control::ask(socket, node, "boot", None)? == "pxe" { "pxe" } else { "default" }).to_owned(),
                _ => "0".to_owned(),
            };
            out.push_str(&format!("{item}:{value}\n"));
        }
        return Ok(out);
    }
    for pair in rest.chunks(2) {
        let [item, value] = pair else {
            return Err(LabError::Invalid(format!("bmc-hook: `set {}` has no value", pair[0])));
        };
        let value = value.trim_matches('"');
        let request = match (item.as_str(), value) {
            ("power", "1") => Some(("on", None)),
            ("power", "0") => Some(("off", None)),
            ("reset", _) => Some(("reset", None)),
            ("shutdown", _) => Some(("soft-off", None)),
            ("boot", "pxe") => Some(("boot", Some("pxe"))),
            // `ipmitool chassis bootdev disk` arrives as `default`.
            ("boot", "default") => Some(("boot", Some("disk"))),
            // No override, cdrom, bios setup, identify: nothing to do.
            _ => None,
        };
        if let Some((verb, arg)) = request {
            control::ask(socket, node, verb, arg)?;
        }
    }
    Ok(out)
}
