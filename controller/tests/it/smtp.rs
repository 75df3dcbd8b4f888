//! Test harness for a real SMTP server that keeps what it receives:
//! Python's aiosmtpd (`FERRUM_AIOSMTPD`, installed by scripts/test.sh in
//! the tests' venv) with its `Mailbox` handler, one per test on a free
//! loopback port, writing a maildir; killed by PID when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::harness::wait_until;

/// A running aiosmtpd.
pub struct Smtp {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

fn aiosmtpd() -> PathBuf {
    let path = std::env::var_os("FERRUM_AIOSMTPD").map(PathBuf::from).unwrap_or_else(|| {
        panic!("FERRUM_AIOSMTPD is not set: point it at aiosmtpd 1.4.6 (scripts/test.sh installs it in ~/.cache/ferrum/venv)")
    });
    assert!(path.is_file(), "FERRUM_AIOSMTPD={} is not a file", path.display());
    path
}

impl Smtp {
    /// Starts the server and waits (at most 20 s) until it accepts.
    pub async fn start() -> Smtp {
        let exe = aiosmtpd();
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let log = std::fs::File::create(dir.path().join("smtp.log")).expect("log file");
        let child = Command::new(&exe)
            .args(["-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir.path().join("maildir"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        let mut smtp = Smtp { child, port, dir };
        let what = format!("aiosmtpd accepting on port {port}");
        wait_until(&what, Duration::from_secs(20), async || {
            if let Ok(Some(status)) = smtp.child.try_wait() {
                panic!(
                    "aiosmtpd exited early ({status}): {}",
                    std::fs::read_to_string(smtp.dir.path().join("smtp.log")).unwrap_or_default()
                );
            }
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map(|_| ()).map_err(|e| e.to_string())
        })
        .await;
        smtp
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far: headers as sent, the body decoded
    /// (the controller's bodies are quoted-printable when a line is long).
    pub fn messages(&self) -> Vec<String> {
        let new = self.dir.path().join("maildir").join("new");
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(&new).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
        files.sort();
        files
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .map(|m| m.replace("\r\n", "\n"))
            .map(|m| {
                let (headers, body) = m.split_once("\n\n").unwrap_or((m.as_str(), ""));
                let body = if headers.contains("Content-Transfer-Encoding: quoted-printable") {
                    quoted_printable::decode(body.as_bytes(), quoted_printable::ParseMode::Robust)
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_else(|_| body.to_owned())
                } else {
                    body.to_owned()
                };
                format!("{headers}\n\n{body}")
            })
            .collect()
    }

    /// Waits (at most 20 s) for a message to `to` holding `needle`, and
    /// returns it.
    pub async fn wait_for(&self, to: &str, needle: &str) -> String {
        let what = format!("a mail to {to} with '{needle}'");
        wait_until(&what, Duration::from_secs(20), async || {
            self.messages()
                .into_iter()
                .find(|m| m.contains(&format!("To: {to}")) && m.contains(needle))
                .ok_or_else(|| format!("{} messages so far", self.messages().len()))
        })
        .await
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first URL in a mail that starts with `prefix`.
pub fn link(mail: &str, prefix: &str) -> String {
    let start = mail.find(prefix).unwrap_or_else(|| panic!("no {prefix} link in:\n{mail}"));
    mail[start..].split_whitespace().next().unwrap_or_default().to_owned()
}
