//! The lab's control socket (`DIR/lab.sock`): how the BMC emulators (the
//! IPMI hook, the sushy driver) and tests ask the supervisor about a node.
//! A unix socket is a file, so processes inside the lab's namespace reach
//! it as well as the root namespace.
//!
//! Protocol: one request per connection, one line `NODE VERB [ARG]`, one
//! answer line `ok VALUE` or `err MESSAGE`. Verbs: `power` (answers `on` or
//! `off`), `on`, `off`, `soft-off`, `reset`, `cycle` (answer `done`),
//! `boot` (answers `pxe` or `disk`), `boot pxe|disk` (answer `done`).
//!
//! Owns: the wire format, the server loop and the client. Must not: talk
//! QMP itself (it calls [`crate::vm::Vm`]).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{LabError, Result};
use crate::vm::{BootDevice, Power, Vm};

/// Deadline of one request (a power change answers in well under a second).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Asks the supervisor of the lab whose socket is `socket`; returns the
/// answer's value.
pub fn ask(socket: &Path, node: &str, verb: &str, arg: Option<&str>) -> Result<String> {
    let mut stream = UnixStream::connect(socket).map_err(LabError::io("cannot reach the lab supervisor", socket))?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT)).map_err(LabError::io("socket", socket))?;
    let line = match arg {
        Some(arg) => format!("{node} {verb} {arg}\n"),
        None => format!("{node} {verb}\n"),
    };
    stream.write_all(line.as_bytes()).map_err(LabError::io("cannot send to the lab supervisor", socket))?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).map_err(LabError::io("no answer from the lab supervisor", socket))?;
    let answer = answer.trim();
    match answer.split_once(' ').unwrap_or((answer, "")) {
        ("ok", value) => Ok(value.to_owned()),
        ("err", message) => Err(LabError::Control(message.to_owned())),
        _ => Err(LabError::Control(format!("unexpected answer `{answer}`"))),
    }
}

/// Serves `listener` until the process ends, one thread per connection.
pub fn serve(listener: UnixListener, vms: Arc<Vec<Vm>>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let vms = Arc::clone(&vms);
        std::thread::spawn(move || {
            let _ = handle(stream, &vms);
        });
    }
}

fn handle(stream: UnixStream, vms: &[Vm]) -> std::io::Result<()> {
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let answer = match answer(&line, vms) {
        Ok(value) => format!("ok {value}\n"),
        Err(err) => {
            eprintln!("control: `{}`: {err}", line.trim());
            format!("err {}\n", err.to_string().replace('\n', " "))
        }
    };
    (&stream).write_all(answer.as_bytes())
}

/// Carries out one request line.
pub fn answer(line: &str, vms: &[Vm]) -> Result<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let (node, verb, arg) = match words.as_slice() {
        [node, verb] => (*node, *verb, None),
        [node, verb, arg] => (*node, *verb, Some(*arg)),
        _ => return Err(LabError::Invalid(format!("bad request `{}` (expected NODE VERB [ARG])", line.trim()))),
    };
    let vm = vms.iter().find(|vm| vm.name == node).ok_or_else(|| LabError::Invalid(format!("no node `{node}` in this lab")))?;
    let done = |r: Result<()>| r.map(|()| "done".to_owned());
    match (verb, arg) {
        ("power", None) => Ok(match vm.power()? {
            Power::On => "on".into(),
            Power::Off => "off".into(),
        }),
        ("on", None) => done(vm.power_on()),
        ("off", None) => done(vm.power_off()),
        ("soft-off", None) => done(vm.soft_off()),
        ("reset" | "cycle", None) => done(vm.reset()),
        ("boot", None) => Ok(vm.boot_device().as_str().to_owned()),
        ("boot", Some("pxe")) => done(vm.set_boot_device(BootDevice::Pxe)),
        ("boot", Some("disk")) => done(vm.set_boot_device(BootDevice::Disk)),
        _ => Err(LabError::Invalid(format!("unknown request `{}`", line.trim()))),
    }
}
