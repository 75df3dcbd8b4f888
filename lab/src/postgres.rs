//! A throw-away PostgreSQL cluster on loopback, for tests and benchmarks:
//! `initdb` in a fresh directory, one `postmaster` on a free 127.0.0.1 port,
//! durability off (the data is thrown away anyway).
//!
//! The server runs under a small shell guardian whose standard input is a
//! pipe from this process: when the [`Postgres`] value is dropped, or when
//! this process ends in any way (a test binary's statics are never
//! dropped), the pipe closes, and the guardian stops the server by its PID
//! (fast shutdown) and removes the directory. Nothing is killed by name.
//!
//! Binaries come from `FERRUM_PG_BIN` or Debian's `/usr/lib/postgresql/<v>/bin`
//! (package `postgresql-15`). PostgreSQL refuses to run as root: as root
//! the cluster runs as the `postgres` user the package creates.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{LabError, Result};

/// The cluster's superuser (trust authentication on loopback).
pub const USER: &str = "ferrum";

/// A running throw-away cluster.
#[derive(Debug)]
pub struct Postgres {
    port: u16,
    bin: PathBuf,
    dir: PathBuf,
    guardian: Child,
    /// Closing it stops the server (see the module documentation).
    lifeline: Option<ChildStdin>,
    ids: Option<(u32, u32)>,
}

/// Where the PostgreSQL server binaries are.
pub fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("FERRUM_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| {
            LabError::Invalid(
                "PostgreSQL is not installed: no /usr/lib/postgresql (apt-get install postgresql-15, or set FERRUM_PG_BIN)".into(),
            )
        })?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("postgres").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| LabError::Invalid("no PostgreSQL server under /usr/lib/postgresql/*/bin".into()))
}

/// The uid and gid to run the server as: `postgres` when we are root.
fn server_ids() -> Result<Option<(u32, u32)>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let user = nix::unistd::User::from_name("postgres")
        .map_err(|e| LabError::Invalid(format!("cannot read the user database: {e}")))?
        .ok_or_else(|| LabError::Invalid("running as root, and there is no 'postgres' user to run PostgreSQL as".into()))?;
    Ok(Some((user.uid.as_raw(), user.gid.as_raw())))
}

fn as_server(command: &mut Command, ids: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = ids {
        command.uid(uid).gid(gid);
    }
    command
}

/// The shell guardian: starts the server, waits for its standard input to
/// close, stops the server by PID and removes the cluster's directory.
const GUARDIAN: &str = r#"
"$1/postgres" -D "$2/data" -h 127.0.0.1 -p "$3" -k "$2" \
    -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=500 \
    </dev/null >"$2/server.log" 2>&1 &
pid=$!
read -r _ || true
kill -INT "$pid" 2>/dev/null
wait "$pid"
rm -rf "$2"
"#;

impl Postgres {
    /// Creates and starts a cluster; returns once it accepts connections.
    pub fn start() -> Result<Postgres> {
        let bin = bin_dir()?;
        let ids = server_ids()?;
        let dir = std::env::temp_dir().join(format!("ferrum-pg-{}-{:08x}", std::process::id(), rand_u32()));
        std::fs::create_dir(&dir).map_err(LabError::io("creating the PostgreSQL directory", &dir))?;
        if let Some((uid, gid)) = ids {
            nix::unistd::chown(&dir, Some(uid.into()), Some(gid.into()))
                .map_err(|e| LabError::Invalid(format!("cannot give {} to the postgres user: {e}", dir.display())))?;
        }
        let out = as_server(&mut Command::new(bin.join("initdb")), ids)
            .args(["-A", "trust", "-U", USER, "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions", "-D"])
            .arg(dir.join("data"))
            .output()
            .map_err(|source| LabError::Spawn { program: "initdb".into(), source })?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(LabError::Invalid(format!("initdb failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
        }
        let port = free_port()?;
        let mut guardian = as_server(&mut Command::new("sh"), ids)
            .arg("-c")
            .arg(GUARDIAN)
            .arg("sh")
            .arg(&bin)
            .arg(&dir)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| LabError::Spawn { program: "postgres".into(), source })?;
        let lifeline = guardian.stdin.take();
        let cluster = Postgres { port, bin, dir, guardian, lifeline, ids };
        cluster.wait_ready(Duration::from_secs(30))?;
        Ok(cluster)
    }

    fn wait_ready(&self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER, "-d", "postgres"])
                .status()
                .map_err(|source| LabError::Spawn { program: "pg_isready".into(), source })?;
            if ready.success() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                return Err(LabError::Invalid(format!("PostgreSQL did not accept connections within {limit:?}: {}", log.trim())));
            }
            // pg_isready is the probe; this paces it.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs SQL as the superuser on the `postgres` database (`psql`).
    pub fn sql(&self, sql: &str) -> Result<()> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER, "-d", "postgres", "-c", sql])
            .output()
            .map_err(|source| LabError::Spawn { program: "psql".into(), source })?;
        if out.status.success() { Ok(()) } else { Err(LabError::Invalid(format!("psql: {}", String::from_utf8_lossy(&out.stderr).trim()))) }
    }

    /// Creates an empty database and returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String> {
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(LabError::Invalid(format!("database name '{name}': letters, digits and _ only")));
        }
        self.sql(&format!("CREATE DATABASE {name}"))?;
        Ok(self.url(name))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the server process tree was started as another user.
    pub fn runs_as_postgres_user(&self) -> bool {
        self.ids.is_some()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut lifeline) = self.lifeline.take() {
            let _ = lifeline.write_all(b"stop\n");
        }
        let _ = self.guardian.wait();
    }
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(LabError::io("finding a free port", "127.0.0.1:0"))?;
    listener.local_addr().map(|a| a.port()).map_err(LabError::io("finding a free port", "127.0.0.1:0"))
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).unwrap_or_default();
    u32::from_ne_bytes(b)
}
