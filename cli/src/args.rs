//! The command line: every `ferrum` command, flag and help text, as clap
//! derive types. The names are a contract (SPEC §12): scripts call them, so
//! rename nothing without a deprecation path.
//!
//! This module only describes and validates arguments (values are parsed by
//! the functions of [`crate::times`] so a bad time or duration is a usage
//! error, exit code 2). It must not read files, the environment or talk to
//! the server: `FERRUM_URL`/`FERRUM_TOKEN` are read by [`crate::config`], so
//! that the precedence rule lives in one place and the token never shows in
//! `--help`.

use std::path::PathBuf;

use chrono::{DateTime, TimeDelta, Utc};
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use ferrum_api::{LeaseState, LeaseType};

use crate::times::{TimeArg, duration_text, parse_duration, parse_time, parse_time_arg};

const ABOUT: &str = "\
ferrum: reserve bare-metal nodes, deploy your own system on them, get them back clean.

Find free slots with `ferrum availability`, reserve nodes with `ferrum lease create`,
watch the calendar with `ferrum calendar`. Admins enrol nodes (`ferrum node add`,
`ferrum node import`) and manage projects and users (`ferrum admin`).";

const AFTER_HELP: &str = "\
Environment:
  FERRUM_URL     server URL (default http://127.0.0.1:8750)
  FERRUM_TOKEN   API token
  FERRUM_CONFIG  config file (default ~/.config/ferrum/config.toml, keys `url` and `token`)
  COLUMNS        width of the `ferrum calendar` chart (default 80)
Flags beat the environment, which beats the config file.
";

/// `ferrum`: the command line of the ferrum testbed.
#[derive(Debug, Parser)]
#[command(
    name = "ferrum",
    version,
    about = ABOUT,
    after_help = format!("{AFTER_HELP}\n{}", crate::client::EXIT_CODES_HELP),
    disable_help_subcommand = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags valid on every command.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Server URL [env: FERRUM_URL; default: http://127.0.0.1:8750]
    #[arg(long, global = true, value_name = "URL", help_heading = "Global options")]
    pub url: Option<String>,
    /// API token [env: FERRUM_TOKEN]; prefer the environment or the config
    /// file, a flag shows in the process list
    #[arg(long, global = true, value_name = "TOKEN", help_heading = "Global options")]
    pub token: Option<String>,
    /// Print the API's JSON answer instead of a table
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,
    /// Config file [env: FERRUM_CONFIG; default: ~/.config/ferrum/config.toml]
    #[arg(long, global = true, value_name = "FILE", help_heading = "Global options")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List, show, enrol and operate nodes
    #[command(subcommand)]
    Node(NodeCommand),
    /// Reserve nodes: create, list, extend, release and cancel leases
    #[command(subcommand)]
    Lease(LeaseCommand),
    /// The sites: their time zones (local times in `lease create` are read
    /// in them) and domains
    #[command(subcommand)]
    Site(SiteCommand),
    /// The environment catalog: images to deploy (list, show, add)
    #[command(subcommand)]
    Env(EnvCommand),
    /// Deploy an environment on the nodes of an active lease
    Deploy(DeployArgs),
    /// Follow or cancel a deployment
    #[command(subcommand)]
    Deployment(DeploymentCommand),
    /// Find the earliest slots where a request would fit
    Availability(AvailabilityArgs),
    /// Show node reservations as a text Gantt chart
    Calendar(CalendarArgs),
    /// Show usage accounting (node-hours) per user, project or hardware
    Usage(UsageArgs),
    /// Show your projects' quota this period and what is left of it
    Quota {
        /// Only this project [default: every project of yours]
        #[arg(value_name = "PROJECT")]
        project: Option<String>,
    },
    /// Show who the token belongs to and which server answers
    Whoami,
    /// Your API tokens: list, create (named, expiring, read-only), revoke
    #[command(subcommand)]
    Token(MyTokenCommand),
    /// Your SSH public keys (installed on the nodes you deploy): add, list, remove
    #[command(subcommand)]
    Key(KeyCommand),
    /// Ask for an account (no token needed); export your personal data
    #[command(subcommand)]
    Account(AccountCommand),
    /// Admin verbs: projects, users, tokens, account requests, audit log
    #[command(subcommand)]
    Admin(AdminCommand),
    /// The virtual lab: QEMU nodes behind emulated BMCs, with their own ferrumd
    #[command(subcommand)]
    Lab(LabCommand),
}

#[derive(Debug, Subcommand)]
pub enum SiteCommand {
    /// List the sites with nodes or a configuration table
    List,
}

// ---------------------------------------------------------------------------
// lab
// ---------------------------------------------------------------------------

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Start a lab: N QEMU nodes (odd ones behind IPMI, even ones behind
    /// Redfish) and a ferrumd that serves them, all inside a network
    /// namespace; writes DIR/lab.env (FERRUM_URL, FERRUM_TOKEN, FERRUM_LAB_NETNS)
    Up(LabUpArgs),
    /// Stop the lab in DIR and remove its namespace (logs and disks stay)
    Down {
        /// Lab directory
        #[arg(long, value_name = "DIR", default_value = ferrum_lab::layout::DEFAULT_DIR)]
        dir: PathBuf,
    },
    /// The lab's supervisor (started by `lab up`)
    #[command(hide = true)]
    Daemon(LabDaemonArgs),
    /// ipmi_sim's chassis_control program: forwards to the lab supervisor
    #[command(hide = true)]
    BmcHook {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        #[arg(long, value_name = "NAME")]
        node: String,
        /// What ipmi_sim passes: `get ITEMS...` or `set ITEM VALUE...`
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// What `lab up` and the supervisor share.
#[derive(Debug, Args)]
pub struct LabSpecArgs {
    /// Lab directory
    #[arg(long, value_name = "DIR", default_value = ferrum_lab::layout::DEFAULT_DIR)]
    pub dir: PathBuf,
    /// Number of nodes
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub nodes: u32,
    /// Site of the nodes (a name without '-'); node N is <cluster>-N.<site>.ferrum.internal
    #[arg(long, value_name = "SITE", default_value = ferrum_lab::layout::DEFAULT_SITE)]
    pub site: String,
    /// Cluster of the nodes (a name without '-'); the nodes are <cluster>-1..N
    #[arg(long, value_name = "CLUSTER", default_value = ferrum_lab::layout::DEFAULT_CLUSTER)]
    pub cluster: String,
    /// K in the lab's networks 10.K.0.0/24 (nodes) and 10.K.1.0/24 (to this host); one lab per K
    #[arg(long, value_name = "K", default_value_t = ferrum_lab::layout::DEFAULT_SUBNET_ID)]
    pub subnet_id: u8,
    /// Memory per node in MiB (the deploy ramdisk needs 320)
    #[arg(long, value_name = "MIB", default_value_t = ferrum_lab::layout::DEFAULT_MEMORY_MIB)]
    pub memory: u32,
    /// Images cache built by `ferrum-images build` [default: ~/.cache/ferrum/images]
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,
    /// The ferrumd binary [default: the one next to this ferrum]
    #[arg(long, value_name = "PATH")]
    pub ferrumd: Option<PathBuf>,
    /// QEMU accelerator: auto (KVM only when a probe proves it works), tcg or kvm
    #[arg(long, value_enum, default_value_t = LabAccel::Auto)]
    pub accel: LabAccel,
    /// Environment the lab's ferrumd restores on every node after its reset
    /// ([reset] default_environment); default: none, disks stay blank
    #[arg(long, value_name = "NAME")]
    pub default_env: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LabAccel {
    Auto,
    Tcg,
    Kvm,
}

#[derive(Debug, Args)]
pub struct LabUpArgs {
    #[command(flatten)]
    pub spec: LabSpecArgs,
    /// Enrol NODE with a reference claiming 1 GiB more memory than it has
    #[arg(long, value_name = "NODE")]
    pub fake_memory: Vec<String>,
    /// Enrol NODE with a reference claiming a GPU it lacks
    #[arg(long, value_name = "NODE")]
    pub fake_gpu: Vec<String>,
    /// Give ferrum a wrong BMC password for NODE
    #[arg(long, value_name = "NODE")]
    pub wrong_bmc_password: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LabDaemonArgs {
    #[command(flatten)]
    pub spec: LabSpecArgs,
}

// ---------------------------------------------------------------------------
// env
// ---------------------------------------------------------------------------

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// List the environments you can see (newest version first)
    List,
    /// Show one environment (its newest version, or --version)
    Show {
        /// Environment name
        name: String,
        /// A version number
        #[arg(long)]
        version: Option<u64>,
    },
    /// Add an environment from its YAML descriptor (SPEC §5 fields)
    Add {
        /// The descriptor, e.g. tiny.yaml written by `ferrum-images build`
        file: PathBuf,
    },
}

// ---------------------------------------------------------------------------
// deploy
// ---------------------------------------------------------------------------

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    ferrum deploy 42 --env tiny --ssh-key ~/.ssh/id_ed25519.pub --wait\n  \
    ferrum deploy 42 --env tiny --nodes chifflot-1,chifflot-2\n  \
    ferrum deploy 42 --env tiny -f nodefile\n  \
    ferrum deployment show 7 --wait")]
pub struct DeployArgs {
    /// The lease whose nodes to deploy
    pub lease: i64,
    /// Environment name (see `ferrum env list`)
    #[arg(long = "env", value_name = "NAME")]
    pub environment: String,
    /// Public key file(s) to install for root, one key per line (default:
    /// ~/.ssh/id_ed25519.pub, id_ecdsa.pub or id_rsa.pub, the first found)
    #[arg(long = "ssh-key", value_name = "FILE")]
    pub ssh_keys: Vec<PathBuf>,
    /// Deploy only these nodes of the lease (comma-separated names or
    /// `<node>.<site>.<domain>`; default: all of them)
    #[arg(long, value_name = "NAMES", value_delimiter = ',', conflicts_with = "node_file")]
    pub nodes: Vec<String>,
    /// Deploy only the nodes listed in FILE, one per line (kadeploy's and
    /// OAR's node file; repeated names count once)
    #[arg(short = 'f', long = "node-file", value_name = "FILE")]
    pub node_file: Option<PathBuf>,
    /// Show progress bars and wait until every node is deployed or failed
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum DeploymentCommand {
    /// Show a deployment: each node's phase, bytes written, times
    Show {
        id: i64,
        /// Follow it with progress bars until it ends
        #[arg(long)]
        wait: bool,
    },
    /// List the deployments of a lease
    List {
        /// Lease id
        lease: i64,
    },
    /// Cancel what still runs of a deployment
    Cancel { id: i64 },
}

// ---------------------------------------------------------------------------
// node
// ---------------------------------------------------------------------------

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List nodes, optionally only those matching a filter
    List {
        /// OAR property filter, e.g. "gpu_count >= 2 AND NOT exotic"
        #[arg(long, value_name = "EXPR")]
        filter: Option<String>,
    },
    /// Show one node: state, addresses, properties
    Show {
        /// Node name
        name: String,
    },
    /// Enrol one node (admin)
    Add(NodeAddArgs),
    /// Import a Grid'5000 Reference API tree (admin)
    #[command(long_about = "Import a Grid'5000 Reference API tree (admin).\n\n\
        Reads DIR/sites/<site>/clusters/<cluster>/nodes/<node>.json (or the same under \
        DIR/data/grid5000/) and sends every node description in one request. Importing \
        the same tree twice reports every node unchanged.")]
    Import {
        /// Root of the tree (the directory holding `sites/`, or a reference-repository checkout)
        dir: PathBuf,
    },
    /// Put a node in maintenance or return it to service (admin)
    Maintenance(MaintenanceArgs),
    /// Mark suspect or dead nodes repaired after checking them by hand
    /// (admin): ferrum resets and checks each again before anyone may
    /// reserve it
    Repaired {
        /// Nodes to mark
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        /// What was checked or repaired; recorded in the nodes' events
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Show a node's hardware: its reference description beside what its
    /// agent last reported, and where they differ
    Inventory {
        /// Node name
        name: String,
    },
    /// Compare a node's reported hardware with its reference description;
    /// exits 1 when they differ
    Check {
        /// Node name
        name: String,
    },
    /// Show a node's recorded state changes
    Events {
        /// Node name
        name: String,
    },
    /// Show a node's latest deploy and reset, phase by phase (admin)
    Operations {
        /// Node name
        name: String,
    },
    /// Power nodes on or off through their BMC (admin)
    Power {
        /// What to do
        #[arg(value_enum)]
        action: PowerAction,
        /// Nodes to act on
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// Set what nodes boot next over the network (admin): ferrum's deploy
    /// ramdisk or their local disk (the iPXE script at /boot/ipxe follows it)
    BootTarget {
        #[arg(value_enum)]
        target: BootTargetArg,
        /// Nodes to act on
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// Set nodes' next boot device (admin)
    Bootdev {
        /// Boot from the network (deploy ramdisk) or the local disk
        #[arg(value_enum)]
        device: BootDevice,
        /// Nodes to act on
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct NodeAddArgs {
    /// Node name, e.g. chifflot-3
    pub name: String,
    /// Site, e.g. lille
    #[arg(long, value_name = "S")]
    pub site: String,
    /// Cluster, e.g. chifflot
    #[arg(long, value_name = "C")]
    pub cluster: String,
    /// MAC address of a boot NIC (repeat for several)
    #[arg(long = "mac", value_name = "MAC", required = true)]
    pub macs: Vec<String>,
    /// Provisioning IP address
    #[arg(long, value_name = "IP")]
    pub ip: Option<String>,
    /// ipmi://user:pass@host:port or redfish://user:pass@host:port/<system-id>
    #[arg(long, value_name = "URL")]
    pub bmc: Option<String>,
    /// Grid'5000 Reference API description of the node, flattened into properties
    #[arg(long, value_name = "FILE.json")]
    pub reference: Option<PathBuf>,
    /// Admin-set property, overriding the reference (repeat for several);
    /// numbers and true/false are sent as such, anything else as text
    #[arg(long = "property", value_name = "KEY=VALUE", value_parser = parse_property)]
    pub properties: Vec<(String, serde_json::Value)>,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("switch").required(true).args(["on", "off"])))]
pub struct MaintenanceArgs {
    /// Node name
    pub name: String,
    /// Put the node in maintenance (a running lease keeps it until its end)
    #[arg(long)]
    pub on: bool,
    /// Return the node to service
    #[arg(long)]
    pub off: bool,
    /// Why; recorded in the node's events
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
}

/// BMC power operations (SPEC §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PowerAction {
    /// Power on
    On,
    /// Hard power off
    Off,
    /// Ask the OS to shut down (ACPI)
    SoftOff,
    /// Power cycle / reset
    Cycle,
    /// Read the power state
    Status,
}

/// What a node boots next over the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BootTargetArg {
    Local,
    Ramdisk,
}

/// One-time boot devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BootDevice {
    Pxe,
    Disk,
}

fn parse_property(text: &str) -> Result<(String, serde_json::Value), String> {
    let (key, value) = text.split_once('=').ok_or_else(|| format!("`{text}` is not KEY=VALUE (e.g. gpu_model=A100)"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("`{text}` has an empty property name"));
    }
    let value = match serde_json::from_str::<serde_json::Value>(value) {
        Ok(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => v,
        _ => serde_json::Value::String(value.to_owned()),
    };
    Ok((key.to_owned(), value))
}

// ---------------------------------------------------------------------------
// lease
// ---------------------------------------------------------------------------

#[derive(Debug, Subcommand)]
pub enum LeaseCommand {
    /// Reserve nodes for a time slot
    Create(Box<LeaseCreateArgs>),
    /// List your leases (all users' for admins)
    List {
        /// Include finished, cancelled, rejected and failed leases
        #[arg(long)]
        all: bool,
        /// Only leases in this state
        #[arg(long, value_name = "S", value_parser = lease_state_parser())]
        state: Option<LeaseState>,
        /// Only this user's leases (admins; OAR: oarstat -u USER)
        #[arg(long, short = 'u', value_name = "NAME")]
        user: Option<String>,
    },
    /// Show one lease
    Show {
        /// Lease id
        #[arg(value_name = "ID")]
        id: i64,
    },
    /// Move a lease's end later, if the nodes are free
    Extend(LeaseExtendArgs),
    /// End leases now and give their nodes back (like oardel); exits
    /// non-zero if any failed
    Release {
        /// Lease ids
        #[arg(value_name = "ID", required = true)]
        ids: Vec<i64>,
    },
    /// Cancel leases that have not started yet; exits non-zero if any failed
    Cancel {
        /// Lease ids
        #[arg(value_name = "ID", required = true)]
        ids: Vec<i64>,
    },
    /// Approve a lease awaiting approval (admin)
    Approve(LeaseDecisionArgs),
    /// Reject a lease awaiting approval (admin)
    Reject(LeaseDecisionArgs),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("selector").required(true).args(["count", "names", "resources"])))]
#[command(group(ArgGroup::new("length").required(true).multiple(true).args(["duration", "end", "resources"])))]
#[command(after_help = "Examples:\n  \
    ferrum lease create --count 2 --filter \"gpu_count >= 2\" --duration 4h --start 2026-11-22T09:00:00Z\n  \
    ferrum lease create --count 2 --site lille --start \"2026-11-22 10:00\" --duration 4h --name demo\n  \
    ferrum lease create --count 1 --duration 2h --deploy debian12-min --ssh-key ~/.ssh/id_ed25519.pub\n  \
    ferrum lease create --count 1 --duration 2h --start +30m --deploy debian12-min --wait\n  \
    ferrum lease create --names chifflot-1,chifflot-2 --duration 1h --type besteffort\n  \
    ferrum lease create -l \"{cluster='chifflot'}/nodes=2+{gpu_count > 1}/nodes=1,walltime=2:00\" -p \"exotic='NO'\" --name oar")]
pub struct LeaseCreateArgs {
    /// Number of nodes
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub count: Option<u32>,
    /// OAR property filter the nodes must match, e.g. "gpu_count >= 2 AND gpu_model = 'A100'"
    #[arg(long, value_name = "EXPR", conflicts_with = "names")]
    pub filter: Option<String>,
    /// Exactly these nodes, comma-separated (instead of --count)
    #[arg(long, value_name = "N1,N2", value_delimiter = ',')]
    pub names: Option<Vec<String>>,
    /// The nodes as OAR's -l resource string (instead of --count/--names):
    /// "{filter}/nodes=N[+{filter}/nodes=M...][,walltime=H:MM:SS]", several
    /// groups joined by + placed together in one lease; its walltime
    /// replaces --duration
    #[arg(short = 'l', long, value_name = "RESOURCES", conflicts_with = "filter")]
    pub resources: Option<String>,
    /// OAR's -p: a filter ANDed with every group's (with --count or -l)
    #[arg(short = 'p', long, value_name = "EXPR", conflicts_with = "names")]
    pub properties: Option<String>,
    /// How long: 2h, 90m, 1h 30m, 2d, or OAR's walltime 2:00:00
    #[arg(long, value_name = "D", value_parser = duration_text)]
    pub duration: Option<String>,
    /// Start time: RFC 3339 (2026-11-22T09:00:00Z), the site's local time
    /// ('2026-11-22 10:00', as OAR's -r) or from now (+2h) [default: as
    /// soon as possible]
    #[arg(long, value_name = "TIME", value_parser = parse_time_arg)]
    pub start: Option<TimeArg>,
    /// End time, in the forms of --start (instead of --duration)
    #[arg(long, value_name = "TIME", value_parser = parse_time_arg)]
    pub end: Option<TimeArg>,
    /// The site of the nodes: local times are read in its time zone, and
    /// with --count only its nodes are taken [default: the only site]
    #[arg(long, value_name = "S")]
    pub site: Option<String>,
    /// Lease type: default, deploy (your own image, root access) or besteffort
    /// (idle nodes, pre-emptible) [default: deploy with --deploy, else default]
    #[arg(long = "type", value_enum, value_name = "TYPE", hide_possible_values = true)]
    pub lease_type: Option<LeaseTypeArg>,
    /// Project to account the lease to [default: your only project]
    #[arg(long, value_name = "P")]
    pub project: Option<String>,
    /// Allow prototype (exotic) nodes
    #[arg(long)]
    pub exotic: bool,
    /// Deploy this environment on the nodes at the lease start
    #[arg(long, value_name = "ENV")]
    pub deploy: Option<String>,
    /// A name for the lease, shown with it
    #[arg(long, value_name = "TEXT")]
    pub name: Option<String>,
    /// Public key file installed for root on deployed nodes (repeat for several)
    #[arg(long = "ssh-key", value_name = "FILE", requires = "deploy")]
    pub ssh_keys: Vec<PathBuf>,
    /// With --deploy: wait for the lease to start and follow the deployment
    /// with progress bars until every node is deployed or failed
    #[arg(long, requires = "deploy")]
    pub wait: bool,
}

/// `--type` values (OAR job types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LeaseTypeArg {
    Default,
    Deploy,
    Besteffort,
}

impl From<LeaseTypeArg> for LeaseType {
    fn from(arg: LeaseTypeArg) -> Self {
        match arg {
            LeaseTypeArg::Default => LeaseType::Default,
            LeaseTypeArg::Deploy => LeaseType::Deploy,
            LeaseTypeArg::Besteffort => LeaseType::Besteffort,
        }
    }
}

fn lease_state_parser() -> impl clap::builder::TypedValueParser<Value = LeaseState> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(LeaseState::ALL.map(LeaseState::as_str))
        .map(|text| LeaseState::ALL.into_iter().find(|s| s.as_str() == text).unwrap_or(LeaseState::Pending))
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("new_end").required(true).args(["end", "duration"])))]
pub struct LeaseExtendArgs {
    /// Lease id
    #[arg(value_name = "ID")]
    pub id: i64,
    /// New end time, RFC 3339
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    pub end: Option<DateTime<Utc>>,
    /// Add this much to the current end: 1h, 30m, 1h 30m (the old `--by`
    /// still works)
    #[arg(long, alias = "by", value_name = "D", value_parser = parse_duration)]
    pub duration: Option<TimeDelta>,
}

#[derive(Debug, Args)]
pub struct LeaseDecisionArgs {
    /// Lease id
    #[arg(value_name = "ID")]
    pub id: i64,
    /// Why; shown to the requester
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

// ---------------------------------------------------------------------------
// availability, calendar, usage
// ---------------------------------------------------------------------------

#[derive(Debug, Args)]
pub struct AvailabilityArgs {
    /// Number of nodes
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub count: u32,
    /// OAR property filter the nodes must match
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    /// How long: 2h, 90m, 1h 30m, 2d
    #[arg(long, value_name = "D", value_parser = duration_text)]
    pub duration: String,
    /// Earliest start to consider, RFC 3339 [default: now]
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub from: Option<DateTime<Utc>>,
    /// Allow prototype (exotic) nodes
    #[arg(long)]
    pub exotic: bool,
    /// How many distinct start times to show (1-20) [default: 3]
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..=20))]
    pub limit: Option<u32>,
}

#[derive(Debug, Args)]
pub struct CalendarArgs {
    /// Start of the chart, RFC 3339 [default: now]
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub from: Option<DateTime<Utc>>,
    /// End of the chart, RFC 3339 [default: 7 days after the start]
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub to: Option<DateTime<Utc>>,
    /// Only nodes matching this OAR property filter
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
}

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// How to group the node-hours
    #[arg(long, value_enum, value_name = "KEY")]
    pub group_by: Option<UsageGroup>,
    /// Start of the period, RFC 3339
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub from: Option<DateTime<Utc>>,
    /// End of the period, RFC 3339
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub to: Option<DateTime<Utc>>,
    /// Only this project (users: one of their own)
    #[arg(long, value_name = "P")]
    pub project: Option<String>,
    /// List the usage records (one per lease and node) instead of sums
    #[arg(long, conflicts_with = "group_by")]
    pub records: bool,
    /// Print CSV (for spreadsheets and billing)
    #[arg(long)]
    pub csv: bool,
}

/// `ferrum admin audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this actor's actions
    #[arg(long, value_name = "USER")]
    pub actor: Option<String>,
    /// Only this action (e.g. lease.approve, project.update, node.power)
    #[arg(long, value_name = "A")]
    pub action: Option<String>,
    /// Only this target (e.g. lease/12, node/chifflot-3, project/p-vision)
    #[arg(long, value_name = "T")]
    pub target: Option<String>,
    /// Entries from this time, RFC 3339
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub from: Option<DateTime<Utc>>,
    /// Entries before this time, RFC 3339
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub to: Option<DateTime<Utc>>,
    /// How many entries, newest first
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=10_000))]
    pub limit: i64,
}

/// `--group-by` values of `ferrum usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UsageGroup {
    User,
    Project,
    Cluster,
    #[value(name = "gpu_model")]
    GpuModel,
}

// ---------------------------------------------------------------------------
// admin
// ---------------------------------------------------------------------------

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create and list projects
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Create, list, disable and enable users; export or erase their personal data
    #[command(subcommand)]
    User(UserCommand),
    /// Create API tokens
    #[command(subcommand)]
    Token(TokenCommand),
    /// Create a boot-service token for ferrum-pxe (it reads the MAC table
    /// and nothing else); prints it as the last line
    BootToken,
    /// Show admin actions (approvals, quota changes, maintenance, power, ...)
    Audit(AuditArgs),
    /// Account requests: list (the default), show, approve, reject
    Requests {
        #[command(subcommand)]
        command: Option<RequestsCommand>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Ask for an account; prints the request's id
    Request(AccountRequestArgs),
    /// Print everything ferrum stores about you, as JSON
    ///
    /// Your account, token names and dates (never a secret), SSH keys,
    /// account request, leases and usage records.
    Export,
}

#[derive(Debug, Args)]
pub struct AccountRequestArgs {
    /// The login you would like
    #[arg(long, value_name = "LOGIN")]
    pub name: String,
    #[arg(long, value_name = "E")]
    pub email: String,
    /// University, laboratory or company
    #[arg(long, value_name = "A")]
    pub affiliation: String,
    /// A project to join, or a new one to create
    #[arg(long, value_name = "P")]
    pub project: String,
    /// For a new project: its policy class (student, research, industry, ...)
    #[arg(long, value_name = "C")]
    pub class: Option<String>,
    /// What the account is for (20 characters or more)
    #[arg(long, value_name = "TEXT")]
    pub motivation: String,
    /// What you are
    #[arg(long, value_enum, value_name = "S")]
    pub status: Option<Status>,
}

/// What someone asking for an account is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Status {
    Student,
    Academic,
    Startup,
    Company,
}

impl From<Status> for ferrum_api::accounts::RequesterStatus {
    fn from(s: Status) -> Self {
        use ferrum_api::accounts::RequesterStatus as R;
        match s {
            Status::Student => R::Student,
            Status::Academic => R::Academic,
            Status::Startup => R::Startup,
            Status::Company => R::Company,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum RequestsCommand {
    /// List account requests
    List {
        /// Only requests in this state
        #[arg(long, value_enum, value_name = "S")]
        state: Option<RequestState>,
    },
    /// Show one request
    Show {
        #[arg(value_name = "ID")]
        id: i64,
    },
    /// Approve: creates the user (and the project if new); prints their token as the last line
    Approve {
        #[arg(value_name = "ID")]
        id: i64,
        /// Kept with the decision
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Class of the new project [default: the one asked for]
        #[arg(long, value_name = "C")]
        class: Option<String>,
        /// Quota of the new project, in node-hours per period
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(0..))]
        quota_node_hours: Option<i64>,
    },
    /// Reject, saying why
    Reject {
        #[arg(value_name = "ID")]
        id: i64,
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
}

/// States of an account request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RequestState {
    Pending,
    Approved,
    Rejected,
}

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Create a project
    Add {
        /// Project name, e.g. p-vision
        name: String,
        /// Quota in node-hours per accounting period
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(0..))]
        quota_node_hours: Option<i64>,
        /// Policy class: student, research, industry, ...
        #[arg(long, value_name = "C")]
        class: Option<String>,
    },
    /// List projects
    List,
    /// Change a project's quota, class or manager
    #[command(group(ArgGroup::new("change").required(true).multiple(true).args(["quota_node_hours", "no_quota", "class", "manager"])))]
    Set {
        /// Project name
        name: String,
        /// Quota in node-hours per accounting period
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(0..), conflicts_with = "no_quota")]
        quota_node_hours: Option<i64>,
        /// Remove the quota
        #[arg(long)]
        no_quota: bool,
        /// Policy class
        #[arg(long, value_name = "C")]
        class: Option<String>,
        /// The member who may add and remove members
        #[arg(long, value_name = "USER")]
        manager: Option<String>,
    },
    /// Add or remove members (admins and the project's manager)
    #[command(subcommand)]
    Member(MemberCommand),
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Add a user to a project
    Add { project: String, user: String },
    /// Remove a user from a project
    Remove { project: String, user: String },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; prints their first token as the last line
    Add {
        /// User name (login)
        name: String,
        /// Project the user belongs to (repeat for several; not needed with --admin)
        #[arg(long = "project", value_name = "P", required_unless_present = "admin")]
        projects: Vec<String>,
        /// Email address
        #[arg(long, value_name = "E")]
        email: Option<String>,
        /// Give the user the admin role
        #[arg(long)]
        admin: bool,
    },
    /// List users
    List,
    /// Disable a user: their tokens stop working and their leases end, with the reason
    Disable {
        /// User name
        name: String,
        /// Why (kept with the user and written on the leases it ends)
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Enable a disabled user again
    Enable {
        /// User name
        name: String,
    },
    /// Make a one-time link where the user sets their web portal password;
    /// prints it as the last line
    ActivationLink {
        /// User name
        name: String,
    },
    /// Print everything ferrum stores about a user, as JSON
    ///
    /// What `ferrum account export` prints to the user himself: account,
    /// token names and dates, SSH keys, account request, leases, usage.
    Export {
        /// User name
        name: String,
    },
    /// Erase a user's personal data on request; prints the pseudonym
    ///
    /// The login becomes a pseudonym everywhere, e-mail and affiliation go,
    /// the account is disabled and its tokens, sessions and keys revoked;
    /// leases and usage stay under the pseudonym. Refused while the user
    /// holds a lease not over.
    Erase {
        /// User name
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum MyTokenCommand {
    /// List your tokens (never their secrets)
    List,
    /// Create a token; prints it as the last line
    Create {
        /// What the token is for (laptop, ci, ...)
        #[arg(long, value_name = "N")]
        name: Option<String>,
        /// Lifetime: 30d, 12h, 1h 30m [default: never expires]
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        /// The token may only read (GET)
        #[arg(long)]
        read_only: bool,
    },
    /// Revoke one of your tokens: it stops working at once
    Revoke {
        /// Token id (see `ferrum token list`)
        #[arg(value_name = "ID")]
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Register an SSH public key (an OpenSSH .pub file)
    Add {
        /// The public key file, e.g. ~/.ssh/id_ed25519.pub
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// What the key is for [default: none]
        #[arg(long, value_name = "N")]
        name: Option<String>,
    },
    /// List your SSH keys with their fingerprints
    List,
    /// Remove one of your SSH keys
    Remove {
        /// Key id (see `ferrum key list`)
        #[arg(value_name = "ID")]
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a new API token for a user; prints it as the last line
    Create {
        /// User name
        #[arg(value_name = "USER")]
        user: String,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Help as a user sees it, at a fixed width so snapshots do not depend
    /// on the terminal.
    fn help(args: &[&str]) -> String {
        let mut cmd = Cli::command().term_width(100);
        match cmd.try_get_matches_from_mut(args) {
            Err(err) if err.kind() == clap::error::ErrorKind::DisplayHelp => err.render().to_string(),
            other => panic!("{args:?} did not print help: {other:?}"),
        }
    }

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn top_level_help() {
        insta::assert_snapshot!(help(&["ferrum", "--help"]));
    }

    #[test]
    fn lease_create_help() {
        insta::assert_snapshot!(help(&["ferrum", "lease", "create", "--help"]));
    }

    #[test]
    fn node_help() {
        insta::assert_snapshot!(help(&["ferrum", "node", "--help"]));
    }

    #[test]
    fn lease_extend_help() {
        insta::assert_snapshot!(help(&["ferrum", "lease", "extend", "--help"]));
    }

    #[test]
    fn admin_user_help() {
        insta::assert_snapshot!(help(&["ferrum", "admin", "user", "--help"]));
    }

    #[test]
    fn top_level_help_renders_the_same_through_render_help() {
        let mut cmd = Cli::command().term_width(100);
        assert_eq!(cmd.render_help().to_string(), help(&["ferrum", "--help"]));
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(args)
    }

    #[test]
    fn the_ipmi_hook_takes_what_ipmi_sim_appends() {
        for tail in [&["get", "power", "boot"][..], &["set", "power", "1"], &["0x20", "set", "boot", "pxe"]] {
            let mut line = vec!["ferrum", "lab", "bmc-hook", "--dir", "/tmp/l", "--node", "qemu-1"];
            line.extend_from_slice(tail);
            let Ok(Cli { command: Command::Lab(LabCommand::BmcHook { args, .. }), .. }) = parse(&line) else {
                panic!("{line:?} does not parse as the hook");
            };
            assert_eq!(args, tail);
        }
    }

    #[test]
    fn spec_12_command_lines_parse() {
        let lines: &[&[&str]] = &[
            &["ferrum", "node", "list", "--filter", "gpu_count >= 2", "--json"],
            &["ferrum", "node", "import", "/tmp/ref"],
            &[
                "ferrum",
                "node",
                "add",
                "n1",
                "--site",
                "s",
                "--cluster",
                "c",
                "--mac",
                "aa:bb:cc:dd:ee:ff",
                "--ip",
                "10.0.0.2",
                "--bmc",
                "ipmi://u:p@10.0.0.5:623",
                "--reference",
                "n1.json",
            ],
            &["ferrum", "node", "power", "soft-off", "n1", "n2"],
            &["ferrum", "node", "power", "status", "n1"],
            &["ferrum", "node", "bootdev", "pxe", "n1", "n2"],
            &["ferrum", "node", "repaired", "n1", "n2", "--reason", "GPU reseated"],
            &["ferrum", "site", "list", "--json"],
            &["ferrum", "lease", "cancel", "3", "4"],
            &["ferrum", "lease", "release", "3", "4"],
            &["ferrum", "lease", "list", "--user", "alice", "--all"],
            &["ferrum", "lease", "extend", "3", "--duration", "1h"],
            &["ferrum", "lease", "create", "--count", "1", "--duration", "1h", "--start", "+2h", "--name", "x", "--site", "lille"],
            &["ferrum", "lease", "create", "--count", "1", "--duration", "1h", "--deploy", "e", "--wait"],
            &[
                "ferrum",
                "lease",
                "create",
                "--count",
                "2",
                "--filter",
                "gpu_count >= 2",
                "--duration",
                "2h",
                "--start",
                "2026-11-22T09:00:00Z",
                "--deploy",
                "debian12-min",
                "--ssh-key",
                "k.pub",
            ],
            &["ferrum", "lease", "approve", "4", "--reason", "ok"],
            &["ferrum", "lease", "reject", "4"],
            &["ferrum", "admin", "project", "add", "p", "--quota-node-hours", "100", "--class", "student"],
            &["ferrum", "admin", "user", "add", "alice", "--project", "p", "--email", "a@x"],
            &["ferrum", "usage", "--group-by", "gpu_model", "--from", "2026-01-01T00:00:00Z", "--json"],
            &["ferrum", "usage", "--records", "--csv", "--project", "p-vision"],
            &["ferrum", "admin", "audit", "--action", "lease.approve", "--limit", "10"],
            &["ferrum", "quota", "p-vision"],
            &[
                "ferrum",
                "account",
                "request",
                "--name",
                "lea",
                "--email",
                "l@u.fr",
                "--affiliation",
                "U",
                "--project",
                "p",
                "--motivation",
                "a thesis",
            ],
            &["ferrum", "admin", "requests"],
            &["ferrum", "admin", "requests", "list", "--state", "pending"],
            &["ferrum", "admin", "requests", "approve", "3", "--class", "student", "--quota-node-hours", "100"],
            &["ferrum", "admin", "requests", "reject", "3", "--reason", "no"],
            &["ferrum", "admin", "project", "set", "p", "--no-quota", "--manager", "lea"],
            &["ferrum", "admin", "project", "member", "add", "p", "tom"],
            &["ferrum", "--url", "http://h:1", "whoami"],
            &["ferrum", "lab", "up", "--nodes", "4"],
            &["ferrum", "lab", "up", "--nodes", "2", "--dir", "/tmp/l", "--subnet-id", "80", "--fake-gpu", "qemu-2"],
            &["ferrum", "lab", "up", "--nodes", "2", "--site", "lille", "--cluster", "chifflot"],
            &["ferrum", "lab", "down", "--dir", "/tmp/l"],
        ];
        for line in lines {
            if let Err(err) = parse(line) {
                panic!("{line:?}: {err}");
            }
        }
    }

    #[test]
    fn usage_errors_are_caught_by_the_parser() {
        let bad: &[&[&str]] = &[
            &["ferrum", "lease", "create", "--duration", "2h"],
            &["ferrum", "lease", "create", "--count", "1"],
            &["ferrum", "lease", "create", "--count", "0", "--duration", "2h"],
            &["ferrum", "lease", "create", "--count", "1", "--duration", "2 hours please"],
            &["ferrum", "lease", "create", "--count", "1", "--duration", "2h", "--ssh-key", "k.pub"],
            &["ferrum", "lease", "create", "--names", "a", "--filter", "x", "--duration", "2h"],
            &["ferrum", "lease", "extend", "3"],
            &["ferrum", "lease", "extend", "3", "--by", "1h", "--end", "2026-11-22T09:00:00Z"],
            &["ferrum", "lease", "extend", "3", "--duration", "1h", "--by", "1h"],
            &["ferrum", "lease", "create", "--count", "1", "--duration", "2h", "--wait"],
            &["ferrum", "lease", "create", "--count", "1", "--duration", "2h", "--start", "tomorrow"],
            &["ferrum", "lease", "cancel"],
            &["ferrum", "lease", "release", "3", "x"],
            &["ferrum", "lease", "list", "--state", "sleeping"],
            &["ferrum", "node", "maintenance", "n1", "--reason", "x"],
            &["ferrum", "node", "maintenance", "n1", "--on", "--off", "--reason", "x"],
            &["ferrum", "node", "add", "n1", "--site", "s", "--cluster", "c", "--mac", "m", "--property", "novalue"],
            &["ferrum", "node", "power", "reboot", "n1"],
            &["ferrum", "availability", "--count", "1", "--duration", "1h", "--limit", "21"],
            &["ferrum", "admin", "user", "add", "bob"],
        ];
        for line in bad {
            match parse(line) {
                Ok(cli) => panic!("{line:?} parsed: {cli:?}"),
                Err(err) => assert_eq!(err.exit_code(), i32::from(crate::client::exit::USAGE), "{line:?}"),
            }
        }
    }

    #[test]
    fn parsed_values_are_typed() {
        let cli = parse(&["ferrum", "lease", "create", "--names", "a,b", "--end", "2026-11-22T10:00:00+01:00", "--type", "besteffort"])
            .expect("valid");
        let Command::Lease(LeaseCommand::Create(args)) = cli.command else { panic!("not lease create") };
        assert_eq!(args.names, Some(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(args.end, Some(crate::times::TimeArg::At(parse_time("2026-11-22T09:00:00Z").expect("valid"))));
        assert_eq!(args.lease_type, Some(LeaseTypeArg::Besteffort));

        let cli = parse(&["ferrum", "lease", "extend", "7", "--by", "1h 30m"]).expect("valid");
        let Command::Lease(LeaseCommand::Extend(args)) = cli.command else { panic!("not extend") };
        assert_eq!(args.duration, Some(TimeDelta::minutes(90)), "--by is kept as an alias of --duration");
        let cli = parse(&["ferrum", "lease", "extend", "7", "--duration", "2h"]).expect("valid");
        let Command::Lease(LeaseCommand::Extend(args)) = cli.command else { panic!("not extend") };
        assert_eq!(args.duration, Some(TimeDelta::hours(2)));

        let cli = parse(&["ferrum", "lease", "cancel", "3", "4", "5"]).expect("valid");
        let Command::Lease(LeaseCommand::Cancel { ids }) = cli.command else { panic!("not cancel") };
        assert_eq!(ids, [3, 4, 5]);
        let cli = parse(&["ferrum", "lease", "list", "-u", "alice"]).expect("valid");
        let Command::Lease(LeaseCommand::List { user, .. }) = cli.command else { panic!("not list") };
        assert_eq!(user.as_deref(), Some("alice"));

        let cli = parse(&["ferrum", "lease", "create", "--count", "1", "--start", "2026-12-08 09:00", "--end", "+3h"]).expect("valid");
        let Command::Lease(LeaseCommand::Create(args)) = cli.command else { panic!("not lease create") };
        assert!(args.start.is_some_and(|t| t.is_local()));
        assert_eq!(args.end, Some(crate::times::TimeArg::FromNow(TimeDelta::hours(3))));

        let cli = parse(&["ferrum", "lease", "list", "--state", "awaiting_approval"]).expect("valid");
        let Command::Lease(LeaseCommand::List { state, .. }) = cli.command else { panic!("not list") };
        assert_eq!(state, Some(LeaseState::AwaitingApproval));

        let cli = parse(&[
            "ferrum",
            "node",
            "add",
            "n",
            "--site",
            "s",
            "--cluster",
            "c",
            "--mac",
            "m1",
            "--mac",
            "m2",
            "--property",
            "gpu_count=2",
            "--property",
            "gpu_model=A100",
            "--property",
            "exotic=true",
        ])
        .expect("valid");
        let Command::Node(NodeCommand::Add(args)) = cli.command else { panic!("not node add") };
        assert_eq!(args.macs, ["m1", "m2"]);
        assert_eq!(
            args.properties,
            [
                ("gpu_count".to_owned(), serde_json::json!(2)),
                ("gpu_model".to_owned(), serde_json::json!("A100")),
                ("exotic".to_owned(), serde_json::json!(true)),
            ]
        );
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = parse(&["ferrum", "node", "list", "--json", "--url", "http://h:1"]).expect("valid");
        assert!(cli.global.json);
        assert_eq!(cli.global.url.as_deref(), Some("http://h:1"));
    }
}
