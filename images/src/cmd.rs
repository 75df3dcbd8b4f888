//! Running the external tools the recipes are made of (apt-get, dpkg-deb,
//! depmod, sfdisk, mkfs.ext4, losetup, mount, extlinux, debootstrap, cargo).
//!
//! Every command goes through [`run`] or [`run_with_stdin`], so a failure
//! names the command line and carries its stderr. Arguments are passed one by
//! one to [`std::process::Command`]; nothing here builds a shell string.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// How much of a failed command's stderr an error keeps (its end).
const STDERR_TAIL: usize = 4000;

/// Runs `cmd` to completion and returns its stdout. A non-zero exit is an
/// [`Error::Command`] with the command line and the end of its stderr.
pub fn run(cmd: &mut Command) -> Result<String> {
    run_inner(cmd, None)
}

/// Like [`run`], with `input` written to the command's stdin.
pub fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Result<String> {
    run_inner(cmd, Some(input))
}

fn run_inner(cmd: &mut Command, input: Option<&[u8]>) -> Result<String> {
    let command = describe(cmd);
    tracing::debug!(%command, "running");
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| Error::Spawn { command: command.clone(), source })?;
    if let Some(input) = input {
        // Dropping the handle closes the pipe so the command sees end of file.
        let mut stdin = child.stdin.take().ok_or_else(|| Error::Host { what: command.clone(), reason: "no stdin pipe".into() })?;
        stdin.write_all(input).map_err(|source| Error::Spawn { command: command.clone(), source })?;
    }
    let output = child.wait_with_output().map_err(|source| Error::Spawn { command: command.clone(), source })?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stderr = stderr.trim();
    let stderr = match stderr.char_indices().nth_back(STDERR_TAIL) {
        Some((cut, _)) => format!("...{}", &stderr[cut..]),
        None if stderr.is_empty() => String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        None => stderr.to_owned(),
    };
    Err(Error::Command { command, status: output.status.to_string(), stderr })
}

/// The command line as a person would type it (arguments with spaces or
/// quotes are single-quoted), for messages only.
pub fn describe(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        let arg = arg.to_string_lossy();
        line.push(' ');
        if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || "'\"\\$`".contains(c)) {
            line.push('\'');
            line.push_str(&arg.replace('\'', r"'\''"));
            line.push('\'');
        } else {
            line.push_str(&arg);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_names_the_command_and_its_stderr() {
        let err = run(Command::new("ls").arg("/nonexistent path")).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("`ls '/nonexistent path'` failed (exit status: 2): "), "{text}");
        assert!(text.contains("No such file or directory"), "{text}");
    }

    #[test]
    fn a_missing_program_says_so() {
        let err = run(&mut Command::new("ferrum-no-such-tool")).unwrap_err();
        assert!(matches!(err, Error::Spawn { .. }), "{err}");
    }

    #[test]
    fn stdin_reaches_the_command() {
        assert_eq!(run_with_stdin(&mut Command::new("cat"), b"hello").unwrap(), "hello");
    }
}
