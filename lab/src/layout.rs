//! The lab's plan and its files: what `ferrum lab up` asks for
//! ([`LabSpec`]), what each node is (name, MAC, address, BMC), and where
//! everything lives in the lab directory. Pure: nothing here starts a
//! process or touches the network.
//!
//! Lab directory (default `/tmp/ferrum-lab`):
//! `lab.pid` (supervisor), `lab.log` (its output), `lab.json` (written when
//! the lab is ready: [`LabState`]), `lab.sock` (the control socket),
//! `lab.env` (written by `lab up`: URL and admin token, mode 0600),
//! `bmc-password` (mode 0600), `pids` (every process the lab started),
//! `netns` (the namespace and veth names), `ferrumd.toml`, `ferrumd.log`,
//! `ferrumd.pid`, `ferrumd/` (its data directory), `sushy/` (the launcher),
//! `reference/` (the Grid'5000 reference tree `lab up` enrols the nodes
//! from: `sites/<site>/clusters/<cluster>/nodes/<node>.json`), and
//! `nodes/<name>/` (`disk.qcow2`, `serial.log`, `qemu.log`, `qmp.sock`, and
//! the BMC's files).
//!
//! Names: node `<cluster>-<n>` of cluster `<cluster>` at site `<site>`
//! (defaults `qemu-1..N`, `qemu`, `lab`), known as
//! `<node>.<site>.<domain>` ([`DOMAIN`]) and by its short name inside the
//! lab's namespace through `/etc/netns/<namespace>/hosts` ([`hosts_file`]).
//! Site and cluster names have no `-`: Grid'5000 clients (EnOSlib) take the
//! cluster from a node name's part before its first `-`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};

/// The default lab directory.
pub const DEFAULT_DIR: &str = "/tmp/ferrum-lab";
/// The default subnet id K: the lab's networks are `10.K.0.0/24` (nodes)
/// and `10.K.1.0/24` (the veth to the root namespace).
pub const DEFAULT_SUBNET_ID: u8 = 77;
/// Default memory per node (MiB); the deploy ramdisk needs at least 320.
pub const DEFAULT_MEMORY_MIB: u32 = 384;
/// The smallest memory the deploy ramdisk boots with.
pub const RAMDISK_MEMORY_MIB: u32 = 320;
/// Most nodes in one lab (MACs and addresses have room for more; the
/// machine does not).
pub const MAX_NODES: u32 = 64;
/// Disk of every node.
pub const DISK_BYTES: u64 = 2 << 30;
/// The port `ferrumd`'s API listens on inside the namespace.
pub const FERRUMD_PORT: u16 = 8080;
/// The port of `ferrumd`'s boot listener (`[boot] listen`: iPXE scripts,
/// ramdisk, images, the agent protocol), on the bridge's address only.
pub const BOOT_PORT: u16 = 8081;
/// The BMC user.
pub const BMC_USER: &str = "admin";
/// Default site and cluster of the nodes (`--site`, `--cluster`).
pub const DEFAULT_SITE: &str = "lab";
pub const DEFAULT_CLUSTER: &str = "qemu";
/// The DNS domain under the site's label, written into the lab ferrumd's
/// `[sites.<site>]` table: the same as ferrumd's default.
pub const DOMAIN: &str = "ferrum.internal";
/// Longest site or cluster name (a node name adds `-<n>`).
pub const MAX_NAME: usize = 30;

/// Which accelerator QEMU uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// KVM when a probe proves it works (cached), else TCG.
    Auto,
    Tcg,
    Kvm,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Auto => "auto",
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

/// The kind of emulated BMC in front of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BmcKind {
    /// OpenIPMI's `ipmi_sim` (odd nodes).
    Ipmi,
    /// sushy-tools with ferrum's system driver (even nodes).
    Redfish,
}

impl BmcKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BmcKind::Ipmi => "ipmi",
            BmcKind::Redfish => "redfish",
        }
    }
}

/// Everything the supervisor needs to start a lab.
#[derive(Clone, Debug)]
pub struct LabSpec {
    pub dir: PathBuf,
    pub nodes: u32,
    /// The site of every node (`--site`).
    pub site: String,
    /// The cluster of every node (`--cluster`); nodes are `<cluster>-<n>`.
    pub cluster: String,
    pub subnet_id: u8,
    pub memory_mib: u32,
    /// The images cache (`ferrum-images build --out`).
    pub images: PathBuf,
    /// The `ferrumd` binary.
    pub ferrumd: PathBuf,
    /// The `ferrum` binary (the IPMI hook runs it).
    pub ferrum: PathBuf,
    /// `sushy-emulator` of a sushy-tools 2.2.0 venv (its `python3` runs
    /// the launcher).
    pub sushy: PathBuf,
    pub accel: Accel,
    /// `[reset] default_environment` of the lab's ferrumd.
    pub default_environment: Option<String>,
}

impl LabSpec {
    /// Checks the numbers and paths; errors name the flag.
    pub fn validate(&self) -> Result<()> {
        if self.nodes == 0 || self.nodes > MAX_NODES {
            return Err(LabError::Invalid(format!("--nodes {}: give 1 to {MAX_NODES}", self.nodes)));
        }
        check_name("--site", &self.site)?;
        check_name("--cluster", &self.cluster)?;
        if self.subnet_id == 0 || self.subnet_id == 255 {
            return Err(LabError::Invalid(format!("--subnet-id {}: give 1 to 254", self.subnet_id)));
        }
        if let Some(env) = &self.default_environment
            && (env.is_empty() || !env.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(LabError::Invalid(format!("--default-env {env}: not an environment name")));
        }
        if self.memory_mib < 128 {
            return Err(LabError::Invalid(format!("--memory {}: at least 128 MiB (320 for the deploy ramdisk)", self.memory_mib)));
        }
        if !self.dir.is_absolute() {
            return Err(LabError::Invalid(format!("--dir {}: must be an absolute path", self.dir.display())));
        }
        // ipmi_sim runs the hook through `sh -c` with the path inside a
        // double-quoted config string: keep paths free of quotes.
        for (flag, path) in [("--dir", &self.dir), ("--ferrumd", &self.ferrumd), ("ferrum binary", &self.ferrum)] {
            let text = path.to_string_lossy();
            if text.contains(['\'', '"', '\n', '\\']) {
                return Err(LabError::Invalid(format!("{flag} {text}: quotes and backslashes are not supported in lab paths")));
            }
        }
        // The longest unix socket path must fit sun_path (108 bytes).
        let longest = self.node_dir(&node_name(&self.cluster, self.nodes)).join("qmp.sock");
        if longest.as_os_str().len() > 100 {
            return Err(LabError::Invalid(format!("--dir {}: too long for the QMP socket paths inside it", self.dir.display())));
        }
        Ok(())
    }

    /// The plan of every node.
    pub fn node_plans(&self) -> Vec<NodePlan> {
        (1..=self.nodes).map(|i| NodePlan::new(self.subnet_id, &self.cluster, i)).collect()
    }

    /// The Grid'5000 reference tree `lab up` writes and enrols from.
    pub fn reference_dir(&self) -> PathBuf {
        self.dir.join("reference")
    }

    pub fn node_dir(&self, name: &str) -> PathBuf {
        self.dir.join("nodes").join(name)
    }

    /// The lab's ramdisk directory in the images cache.
    pub fn ramdisk_dir(&self) -> PathBuf {
        self.images.join("ramdisk-lab")
    }

    /// The environments directory of the images cache (descriptors and
    /// the images they name by relative path).
    pub fn environments_dir(&self) -> PathBuf {
        self.images.join("environments")
    }

    /// The namespace's name.
    pub fn netns_name(&self) -> String {
        netns_name(self.subnet_id)
    }
}

/// A site or cluster name: a DNS label of lowercase letters and digits,
/// starting with a letter, without `-` (EnOSlib splits node names at their
/// first `-` to find the cluster).
fn check_name(flag: &str, name: &str) -> Result<()> {
    let ok = name.len() <= MAX_NAME
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(LabError::Invalid(format!(
            "{flag} {name}: give 1 to {MAX_NAME} lowercase letters and digits, starting with a letter (no '-': node names are <cluster>-<n>)"
        )))
    }
}

/// Node `i` of `cluster`.
pub fn node_name(cluster: &str, i: u32) -> String {
    format!("{cluster}-{i}")
}

/// The fully qualified name of `node` at `site`.
pub fn fqdn(node: &str, site: &str) -> String {
    format!("{node}.{site}.{DOMAIN}")
}

/// The hosts file of the lab's namespace: `ip netns exec NAME` mounts it
/// over `/etc/hosts` for every process it runs, so node names resolve
/// there (and nowhere else). Removed when the lab stops.
pub fn hosts_path(netns: &str) -> PathBuf {
    Path::new("/etc/netns").join(netns).join("hosts")
}

/// The text of [`hosts_path`]: the host's own `/etc/hosts` (`host`), then
/// each node's address with its fully qualified and short names.
pub fn hosts_file(host: &str, site: &str, nodes: &[NodePlan]) -> String {
    let mut text = String::from(host);
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("# The ferrum lab's nodes (written by `ferrum lab up`, removed by `ferrum lab down`).\n");
    for node in nodes {
        text.push_str(&format!("{}\t{} {}\n", node.ip, fqdn(&node.name, site), node.name));
    }
    text
}

/// The namespace of the lab with subnet id `k`.
pub fn netns_name(k: u8) -> String {
    format!("ferrum-lab-{k}")
}

/// The root-namespace end of the lab's veth.
pub fn veth_root_name(k: u8) -> String {
    format!("ferrumlab{k}")
}

/// One node of the lab.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePlan {
    pub index: u32,
    pub name: String,
    pub mac: String,
    pub ip: String,
    pub tap: String,
    pub bmc: BmcKind,
    /// UDP (IPMI) or TCP (Redfish) port on the namespace's 127.0.0.1.
    pub bmc_port: u16,
    /// Redfish only: the system id (a UUID, so no redirect is involved).
    pub system_id: Option<String>,
}

impl NodePlan {
    pub fn new(k: u8, cluster: &str, i: u32) -> NodePlan {
        let bmc = if i % 2 == 1 { BmcKind::Ipmi } else { BmcKind::Redfish };
        let port_base: u16 = match bmc {
            BmcKind::Ipmi => 6230,
            BmcKind::Redfish => 8000,
        };
        NodePlan {
            index: i,
            name: node_name(cluster, i),
            mac: format!("52:54:00:fe:{k:02x}:{i:02x}"),
            ip: format!("10.{k}.0.{}", 10 + i),
            tap: format!("tap{i}"),
            bmc,
            bmc_port: port_base + u16::try_from(i).unwrap_or(0),
            system_id: (bmc == BmcKind::Redfish).then(|| format!("f3e2a000-0000-4000-8000-{k:04x}{i:08x}")),
        }
    }

    /// The BMC URL to enrol, with `password`.
    pub fn bmc_url(&self, password: &str) -> String {
        match (self.bmc, &self.system_id) {
            (BmcKind::Redfish, Some(id)) => format!("redfish+http://{BMC_USER}:{password}@127.0.0.1:{}/{id}", self.bmc_port),
            _ => format!("ipmi://{BMC_USER}:{password}@127.0.0.1:{}", self.bmc_port),
        }
    }
}

/// What `lab.json` says about a ready lab.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabState {
    pub dir: PathBuf,
    pub netns: String,
    pub subnet_id: u8,
    pub site: String,
    pub cluster: String,
    /// The DNS domain: node `N` is `N.<site>.<domain>`.
    pub domain: String,
    /// ferrumd's URL from the root namespace (through the veth).
    pub url: String,
    /// ferrumd's boot listener, as the nodes reach it (the bridge).
    pub node_url: String,
    pub memory_mib: u32,
    /// The accelerator QEMU runs with.
    pub accel: Accel,
    pub supervisor_pid: u32,
    pub nodes: Vec<NodePlan>,
}

/// The files of a lab directory.
#[derive(Clone, Debug)]
pub struct LabFiles {
    pub dir: PathBuf,
}

impl LabFiles {
    pub fn new(dir: &Path) -> LabFiles {
        LabFiles { dir: dir.to_owned() }
    }
    pub fn pid(&self) -> PathBuf {
        self.dir.join("lab.pid")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("lab.log")
    }
    pub fn state(&self) -> PathBuf {
        self.dir.join("lab.json")
    }
    pub fn socket(&self) -> PathBuf {
        self.dir.join("lab.sock")
    }
    pub fn env(&self) -> PathBuf {
        self.dir.join("lab.env")
    }
    pub fn password(&self) -> PathBuf {
        self.dir.join("bmc-password")
    }
    pub fn pids(&self) -> PathBuf {
        self.dir.join("pids")
    }
    pub fn netns(&self) -> PathBuf {
        self.dir.join("netns")
    }
    pub fn ferrumd_config(&self) -> PathBuf {
        self.dir.join("ferrumd.toml")
    }
    pub fn ferrumd_log(&self) -> PathBuf {
        self.dir.join("ferrumd.log")
    }
    pub fn ferrumd_pid(&self) -> PathBuf {
        self.dir.join("ferrumd.pid")
    }
    pub fn ferrumd_data(&self) -> PathBuf {
        self.dir.join("ferrumd")
    }
    /// The admin token `ferrumd` writes on first start.
    pub fn admin_token(&self) -> PathBuf {
        self.ferrumd_data().join("admin.token")
    }

    /// Reads `lab.json`.
    pub fn read_state(&self) -> Result<LabState> {
        let path = self.state();
        let text = std::fs::read_to_string(&path).map_err(LabError::io("cannot read the lab state", &path))?;
        serde_json::from_str(&text).map_err(|e| LabError::Invalid(format!("{}: not a lab state ({e})", path.display())))
    }
}

/// Writes `text` to `path` with mode 0600 (created or truncated).
pub fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(LabError::io("cannot write", path))?;
    // An existing file keeps its mode on open: set it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(LabError::io("cannot restrict", path))?;
    file.write_all(text.as_bytes()).map_err(LabError::io("cannot write", path))
}

/// Writes `text` to `path` through a temporary file and a rename, so a
/// reader never sees half of it.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(LabError::io("cannot write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(LabError::io("cannot rename into place", path))
}

/// A random password of 16 lowercase hex characters: URL-safe, no quoting
/// needed anywhere, and within ipmi_sim's 16-byte limit (a longer one
/// makes every RMCP+ session fail).
pub fn random_password() -> Result<String> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| LabError::Invalid(format!("no randomness for the BMC password: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_alternate_bmcs_and_have_distinct_addresses() {
        let a = NodePlan::new(77, "qemu", 1);
        let b = NodePlan::new(77, "qemu", 2);
        assert_eq!((a.name.as_str(), a.mac.as_str(), a.ip.as_str(), a.bmc), ("qemu-1", "52:54:00:fe:4d:01", "10.77.0.11", BmcKind::Ipmi));
        assert_eq!((b.bmc, b.bmc_port), (BmcKind::Redfish, 8002));
        assert_eq!(a.bmc_url("pw"), "ipmi://admin:pw@127.0.0.1:6231");
        assert!(b.bmc_url("pw").starts_with("redfish+http://admin:pw@127.0.0.1:8002/f3e2a000-"), "{}", b.bmc_url("pw"));
    }

    #[test]
    fn bad_specs_name_the_flag() {
        let spec = LabSpec {
            dir: "/tmp/x".into(),
            nodes: 0,
            site: "lab".into(),
            cluster: "qemu".into(),
            subnet_id: 77,
            memory_mib: 384,
            images: "/i".into(),
            ferrumd: "/f".into(),
            ferrum: "/g".into(),
            sushy: "/s".into(),
            accel: Accel::Auto,
            default_environment: None,
        };
        assert!(spec.validate().unwrap_err().to_string().contains("--nodes 0"));
        let spec = LabSpec { nodes: 2, dir: "/tmp/it's".into(), ..spec };
        assert!(spec.validate().unwrap_err().to_string().contains("--dir"));
        let spec = LabSpec { dir: "/tmp/x".into(), ..spec };
        assert!(spec.validate().is_ok());
        for (site, cluster, flag) in [("lil-le", "c", "--site lil-le"), ("lille", "Chifflot", "--cluster Chifflot"), ("", "c", "--site ")] {
            let bad = LabSpec { site: site.into(), cluster: cluster.into(), ..spec.clone() };
            let e = bad.validate().unwrap_err().to_string();
            assert!(e.starts_with(flag) && e.contains("no '-'"), "{e}");
        }
    }

    #[test]
    fn nodes_are_named_after_their_cluster_and_resolve_in_the_hosts_file() {
        let nodes = [NodePlan::new(77, "chifflot", 1), NodePlan::new(77, "chifflot", 2)];
        assert_eq!(nodes[1].name, "chifflot-2");
        let text = hosts_file("127.0.0.1 localhost", "lille", &nodes);
        assert!(text.starts_with("127.0.0.1 localhost\n# The ferrum lab's nodes"), "{text}");
        assert!(
            text.ends_with(
                "10.77.0.11\tchifflot-1.lille.ferrum.internal chifflot-1\n10.77.0.12\tchifflot-2.lille.ferrum.internal chifflot-2\n"
            ),
            "{text}"
        );
        assert_eq!(hosts_path("ferrum-lab-77"), Path::new("/etc/netns/ferrum-lab-77/hosts"));
    }
}
