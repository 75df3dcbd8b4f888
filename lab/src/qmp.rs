//! A minimal QMP client: one connection to one QEMU's unix socket, the
//! capabilities handshake, and synchronous commands whose answers are told
//! apart from asynchronous events.
//!
//! Owns: the QMP wire (JSON lines). Must not: be used by anything but the
//! supervisor's [`crate::vm::Vm`] (QEMU serves one QMP client at a time).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::error::{LabError, Result};

/// Deadline of one QMP answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A QMP session in command mode.
#[derive(Debug)]
pub struct Qmp {
    node: String,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects to `path` (retrying until `deadline`: QEMU creates the
    /// socket a moment after it starts), reads the greeting and leaves
    /// capabilities negotiation.
    pub fn connect(node: &str, path: &Path, deadline: Instant) -> Result<Qmp> {
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(stream) => break stream,
                Err(err) if Instant::now() >= deadline => {
                    return Err(LabError::Qmp { node: node.to_owned(), message: format!("cannot connect to {}: {err}", path.display()) });
                }
                // Justified sleep: paces a bounded retry while QEMU has
                // not created its socket yet; nothing to block on.
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let qmp_err = |e: std::io::Error| LabError::Qmp { node: node.to_owned(), message: e.to_string() };
        stream.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(qmp_err)?;
        let writer = stream.try_clone().map_err(qmp_err)?;
        let mut qmp = Qmp { node: node.to_owned(), reader: BufReader::new(stream), writer };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(qmp.error(format!("unexpected greeting {greeting}")));
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    fn error(&self, message: String) -> LabError {
        LabError::Qmp { node: self.node.clone(), message }
    }

    fn read_message(&mut self) -> Result<Value> {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).map_err(|e| self.error(format!("reading: {e}")))?;
        if n == 0 {
            return Err(self.error("QEMU closed the QMP connection".into()));
        }
        serde_json::from_str(&line).map_err(|e| self.error(format!("not JSON ({e}): {}", line.trim())))
    }

    /// Runs `command` with `arguments` and returns its `return` value; a
    /// QMP `error` becomes an error quoting its description.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        let mut request = json!({ "execute": command });
        if let Some(arguments) = arguments {
            request["arguments"] = arguments;
        }
        let mut text = request.to_string();
        text.push('\n');
        self.writer.write_all(text.as_bytes()).map_err(|e| self.error(format!("sending {command}: {e}")))?;
        loop {
            let message = self.read_message()?;
            if let Some(value) = message.get("return") {
                return Ok(value.clone());
            }
            if let Some(error) = message.get("error") {
                let desc = error.get("desc").and_then(Value::as_str).unwrap_or("no description");
                return Err(self.error(format!("{command}: {desc}")));
            }
            // An event (RESET, STOP, SHUTDOWN, ...): not our answer.
        }
    }
}
