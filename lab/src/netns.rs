//! Network namespaces created and removed by ferrum (`ip netns`).
//!
//! Owns: the lifetime of a named namespace and commands and sockets run
//! inside it. Anything that broadcasts (DHCP, router advertisements) must
//! run inside one: a broadcast from the root namespace leaves on the real
//! interface. Must not: touch a namespace it did not create.

use std::fs::File;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sched::CloneFlags;

/// Why a namespace operation failed: the command and what it printed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("cannot run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot enter network namespace {name}")]
    Enter {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

/// A network namespace this process created; removed on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Runs `ip ARGS`, turning a failure into an error that quotes it.
pub fn ip(args: &[&str]) -> Result<(), NetnsError> {
    run(Command::new("ip").args(args))
}

fn run(cmd: &mut Command) -> Result<(), NetnsError> {
    let command = format!("{cmd:?}").replace('"', "");
    let out = cmd.stdin(Stdio::null()).output().map_err(|source| NetnsError::Spawn { command: command.clone(), source })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetnsError::Command { command, stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned() })
    }
}

impl Netns {
    /// Creates `<prefix>-<pid>-<n>` (unique in this process) with loopback up.
    pub fn create(prefix: &str) -> Result<Netns, NetnsError> {
        let name = format!("{prefix}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        Netns::create_named(&name)
    }

    /// Creates the namespace `name` with loopback up.
    pub fn create_named(name: &str) -> Result<Netns, NetnsError> {
        ip(&["netns", "add", name])?;
        let ns = Netns { name: name.to_owned() };
        ns.ip(&["link", "set", "lo", "up"])?;
        // No duplicate address detection inside the lab: link-local
        // addresses are usable at once (router advertisements need one).
        for key in ["net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"] {
            run(ns.command("sysctl").args(["-q", "-w", key]))?;
        }
        Ok(ns)
    }

    /// Moves `link` from this namespace into `other`.
    pub fn move_link(&self, link: &str, other: &Netns) -> Result<(), NetnsError> {
        self.ip(&["link", "set", link, "netns", &other.name])
    }

    /// The namespace's name (`ip netns exec NAME ...`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) -> Result<(), NetnsError> {
        let mut cmd = Command::new("ip");
        cmd.arg("-n").arg(&self.name).args(args);
        run(&mut cmd)
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Adds a bridge `name` with `address` (CIDR) and brings it up.
    pub fn add_bridge(&self, name: &str, address: &str) -> Result<(), NetnsError> {
        self.ip(&["link", "add", name, "type", "bridge"])?;
        self.ip(&["addr", "add", address, "dev", name])?;
        self.ip(&["link", "set", name, "up"])
    }

    /// Adds a veth pair inside the namespace, `port` enslaved to `bridge`
    /// and `end` left for a client, with `mac` on `end`. Both up.
    pub fn add_veth_to_bridge(&self, end: &str, port: &str, bridge: &str, mac: &str) -> Result<(), NetnsError> {
        self.ip(&["link", "add", end, "address", mac, "type", "veth", "peer", "name", port])?;
        self.ip(&["link", "set", port, "master", bridge])?;
        self.ip(&["link", "set", port, "up"])?;
        self.ip(&["link", "set", end, "up"])
    }

    /// Runs `f` on a fresh thread that has entered the namespace; sockets
    /// it creates belong to the namespace for their whole life, whatever
    /// thread uses them afterwards.
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, NetnsError> {
        let path = format!("/run/netns/{}", self.name);
        let name = self.name.clone();
        let file = File::open(&path).map_err(|source| NetnsError::Enter { name: name.clone(), source })?;
        std::thread::spawn(move || {
            nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| NetnsError::Enter { name, source: e.into() })?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Interfaces inside go with it; processes started inside were
        // stopped by their owners (by PID) before.
        let _ = ip(&["netns", "delete", &self.name]);
    }
}

/// Whether a namespace `name` exists.
pub fn exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

/// Deletes the namespace `name` (for a lab whose supervisor is gone).
pub fn delete(name: &str) -> Result<(), NetnsError> {
    ip(&["netns", "delete", name])
}

impl Netns {
    /// A veth pair between the root namespace (`root_end`, with
    /// `root_address`) and this one (`ns_end`, with `ns_address`), both up.
    /// The pair disappears with the namespace.
    pub fn add_veth_to_root(&self, root_end: &str, root_address: &str, ns_end: &str, ns_address: &str) -> Result<(), NetnsError> {
        ip(&["link", "add", root_end, "type", "veth", "peer", "name", ns_end, "netns", &self.name])?;
        ip(&["addr", "add", root_address, "dev", root_end])?;
        ip(&["link", "set", root_end, "up"])?;
        self.ip(&["addr", "add", ns_address, "dev", ns_end])?;
        self.ip(&["link", "set", ns_end, "up"])
    }

    /// Adds a tap `name` enslaved to `bridge`, up.
    pub fn add_tap_to_bridge(&self, name: &str, bridge: &str) -> Result<(), NetnsError> {
        self.ip(&["tuntap", "add", name, "mode", "tap"])?;
        self.ip(&["link", "set", name, "master", bridge])?;
        self.ip(&["link", "set", name, "up"])
    }
}
