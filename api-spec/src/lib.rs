//! ferrum's HTTP API types: the request and response bodies of `/api/v1`,
//! shared by the controller (which serves them) and the `ferrum` CLI (which
//! sends and prints them).
//!
//! These are boundary types: they derive `Serialize`/`Deserialize`/`ToSchema`
//! and nothing else in the workspace should. They must not depend on the
//! controller's domain types or its database rows; the controller converts
//! with explicit `From` impls, so renaming a column never changes the API.
//! The OpenAPI document generated from them is committed at
//! `api-spec/openapi.yaml` and checked by a test in the controller.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub mod accounts;
pub mod agent;
pub mod deployment;
pub mod durations;
pub mod environment;
pub mod inventory;
pub mod limits;
pub mod usage;

/// The base path of every versioned resource.
pub const API_BASE: &str = "/api/v1";

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Every error answer: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong, for people (`message`) and for programs (`code`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code: `bad_request`, `invalid_filter`,
    /// `unauthorized`, `forbidden`, `not_found`, `conflict`,
    /// `payload_too_large`, `internal`, ...
    pub code: String,
    /// What happened and, for client errors, what to change.
    pub message: String,
    /// For `conflict` answers to lease requests: the earliest start at which
    /// the same request would succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earliest_start: Option<DateTime<Utc>>,
}

// ---------------------------------------------------------------------------
// Nodes
// ---------------------------------------------------------------------------

/// The state of a node as the calendar and operators see it (SPEC §3): the
/// observed lifecycle state, except that operator intent (`maintenance`,
/// `retired`) shows once the node is idle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Enrolling,
    Available,
    Reserved,
    Deploying,
    Deployed,
    Resetting,
    Maintenance,
    Suspect,
    Dead,
    Retired,
}

impl NodeState {
    pub const ALL: [NodeState; 10] = [
        NodeState::Enrolling,
        NodeState::Available,
        NodeState::Reserved,
        NodeState::Deploying,
        NodeState::Deployed,
        NodeState::Resetting,
        NodeState::Maintenance,
        NodeState::Suspect,
        NodeState::Dead,
        NodeState::Retired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Enrolling => "enrolling",
            NodeState::Available => "available",
            NodeState::Reserved => "reserved",
            NodeState::Deploying => "deploying",
            NodeState::Deployed => "deployed",
            NodeState::Resetting => "resetting",
            NodeState::Maintenance => "maintenance",
            NodeState::Suspect => "suspect",
            NodeState::Dead => "dead",
            NodeState::Retired => "retired",
        }
    }

    /// Out of use, for a reason someone wrote: in maintenance, suspect,
    /// dead or retired (the calendar shades these rows, the admin's list
    /// says why).
    pub fn is_unavailable(self) -> bool {
        matches!(self, NodeState::Maintenance | NodeState::Suspect | NodeState::Dead | NodeState::Retired)
    }
}

/// Operator intent for a node, kept apart from its observed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodePolicy {
    /// Offered to leases.
    InService,
    /// Not offered to new leases; a running lease keeps it until its end.
    Maintenance,
    /// Gone for good; kept for history and accounting.
    Retired,
}

impl NodePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            NodePolicy::InService => "in_service",
            NodePolicy::Maintenance => "maintenance",
            NodePolicy::Retired => "retired",
        }
    }
}

/// What a node boots next over the network: the iPXE script served at
/// `/boot/ipxe?mac=` follows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BootTarget {
    /// Boot from the local disk (the deployed system, if any).
    #[default]
    Local,
    /// Boot ferrum's deploy ramdisk (its agent inventories, writes images, wipes).
    Ramdisk,
}

impl BootTarget {
    pub fn as_str(self) -> &'static str {
        match self {
            BootTarget::Local => "local",
            BootTarget::Ramdisk => "ramdisk",
        }
    }
}

/// `PUT /api/v1/nodes/{name}/boot-target` (admin): what the node boots next.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BootTargetRequest {
    pub target: BootTarget,
}

/// `GET /api/v1/nodes/{name}/inventory`: the reference description, the
/// agent's latest report, and where they differ.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeInventory {
    pub node: String,
    /// The Grid'5000-style reference description (`null`: none enrolled).
    pub reference: Option<serde_json::Value>,
    /// The agent's latest report (`null`: no agent has reported yet).
    pub reported: Option<ReportedInventory>,
    /// Reference facts the report contradicts (`null` until both exist).
    pub differences: Option<Vec<inventory::Difference>>,
}

/// An agent's report with when and from which registration it came.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ReportedInventory {
    pub generation: i64,
    pub reported_at: DateTime<Utc>,
    pub report: inventory::InventoryReport,
}

/// A command for a node's agent, and how far it got.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentCommandView {
    pub id: i64,
    pub node: String,
    pub action: agent::AgentAction,
    pub requested_by: String,
    /// `queued`, `sent`, `done`, `failed`.
    pub state: String,
    /// The agent generation it was sent to.
    pub generation: Option<i64>,
    pub done_bytes: u64,
    pub total_bytes: Option<u64>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A MAC address that asked ferrum's DHCP for a boot and is not in the
/// inventory (`GET /api/v1/boot/unknown-macs`, admin): enrol it with
/// `ferrum node add ... --mac`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct UnknownMac {
    pub mac: String,
    pub interface: String,
    /// PXE firmware (else a plain DHCP client).
    pub pxe: bool,
    /// RFC 4578 client architecture (0 BIOS, 7/9 UEFI x64), when sent.
    pub arch: Option<u16>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub requests: u64,
}

/// One MAC of the boot services' table (`GET /api/v1/boot/hosts`, a
/// boot-service token or an admin's): what `ferrum-pxe` needs to answer
/// DHCP, nothing more.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BootHost {
    /// Lowercase, colon-separated.
    pub mac: String,
    /// The node's name.
    pub name: String,
    /// The node's inventory IPv4 address, if any.
    pub ip: Option<String>,
}

/// A new boot-service token (`POST /api/v1/boot/tokens`, admin), shown
/// once: it reads `GET /api/v1/boot/hosts` and nothing else.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BootTokenCreated {
    pub token: String,
}

/// A node's BMC, as shown to admins only. The password is never returned.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BmcView {
    /// `ipmi` or `redfish`.
    pub driver: String,
    pub host: String,
    pub port: u16,
    pub username: String,
    /// Redfish system id (the last path segment of the BMC URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_id: Option<String>,
}

/// A node.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Node {
    pub name: String,
    pub site: String,
    pub cluster: String,
    /// The state the calendar and operators see (observed state, or the
    /// operator's `maintenance`/`retired` once the node is idle).
    pub state: NodeState,
    /// Operator intent.
    pub policy: NodePolicy,
    /// MAC addresses of the boot NIC(s), lowercase `aa:bb:cc:dd:ee:ff`.
    pub macs: Vec<String>,
    /// Provisioning IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Flattened OAR-named properties (`gpu_count`, `gpu_model`, ...).
    #[schema(value_type = Object)]
    pub properties: BTreeMap<String, serde_json::Value>,
    /// The BMC, for admins only; absent for everybody else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bmc: Option<BmcView>,
    /// What the node boots next over the network (`local` when an older
    /// server does not say).
    #[serde(default)]
    pub boot_target: BootTarget,
    /// What the BMC last said about power.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<PowerReading>,
    /// The whole Grid'5000-style reference description, when asked for
    /// (`GET /nodes/{name}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub reference: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A node's power as its BMC last reported it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PowerReading {
    /// `on` or `off`.
    pub state: String,
    pub observed_at: DateTime<Utc>,
    /// `sync` (the periodic sweep) or `request` (an operation).
    pub source: String,
}

/// A power operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PowerActionName {
    On,
    Off,
    SoftOff,
    Cycle,
    /// Ask the BMC for the power state now.
    Status,
}

impl PowerActionName {
    pub const ALL: [PowerActionName; 5] =
        [PowerActionName::On, PowerActionName::Off, PowerActionName::SoftOff, PowerActionName::Cycle, PowerActionName::Status];

    /// The name the API takes (`soft-off`).
    pub fn as_str(self) -> &'static str {
        match self {
            PowerActionName::On => "on",
            PowerActionName::Off => "off",
            PowerActionName::SoftOff => "soft-off",
            PowerActionName::Cycle => "cycle",
            PowerActionName::Status => "status",
        }
    }

    pub fn parse(name: &str) -> Option<PowerActionName> {
        PowerActionName::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

/// Body of `POST /api/v1/nodes/{name}/power`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PowerRequest {
    pub action: PowerActionName,
}

/// A one-time boot device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BootDeviceName {
    Pxe,
    Disk,
}

/// Body of `PUT /api/v1/nodes/{name}/boot-device`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BootDeviceRequest {
    pub device: BootDeviceName,
}

/// The outcome of a power or boot operation. Operations are queued and
/// carried out one at a time per BMC; an answer with `state` `queued` or
/// `running` (HTTP 202) means it goes on in the background.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PowerOperation {
    pub id: i64,
    pub node: String,
    /// `on`, `off`, `soft-off`, `cycle`, `status`, `boot-pxe`, `boot-disk`.
    pub operation: String,
    /// `queued`, `running`, `done` or `failed`.
    pub state: String,
    /// The power state after the operation, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<String>,
    /// The named BMC error of a failed operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

/// Body of `POST /api/v1/nodes` (admin): enrol one node.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeCreate {
    #[schema(max_length = 64, pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    pub name: String,
    #[schema(max_length = 64, pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    pub site: String,
    #[schema(max_length = 64, pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    pub cluster: String,
    /// Boot NIC MAC address(es): unicast, not all-zero.
    #[schema(min_items = 1, max_items = 32)]
    pub macs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 45)]
    pub ip: Option<String>,
    /// `ipmi://user:pass@host:port` or `redfish://user:pass@host:port/<system-id>`;
    /// the host is a DNS name or an IP address, the port 1 to 65535.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 1024, pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$")]
    pub bmc: Option<String>,
    /// Admin-set properties; they override those of the reference.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub properties: Option<BTreeMap<String, serde_json::Value>>,
    /// A Grid'5000 Reference API node description to flatten into properties.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub reference: Option<serde_json::Value>,
}

/// One node description of a Grid'5000 Reference API tree, as uploaded by
/// `ferrum node import`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReferenceNode {
    pub site: String,
    pub cluster: String,
    /// The node's JSON document (`sites/<site>/clusters/<cluster>/nodes/<node>.json`).
    #[schema(value_type = Object)]
    pub description: serde_json::Value,
}

/// Body of `POST /api/v1/nodes/import` (admin).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeImport {
    pub nodes: Vec<ReferenceNode>,
}

/// What an import did. Importing the same tree twice reports every node
/// `unchanged` the second time.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct ImportReport {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
}

/// Body of `POST /api/v1/nodes/{name}/maintenance` (admin).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceRequest {
    /// `true` puts the node in maintenance, `false` returns it to service.
    pub enabled: bool,
    /// Why; recorded in the node's events.
    #[schema(min_length = 1, max_length = 1000, pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$")]
    pub reason: String,
}

/// Body of `POST /api/v1/nodes/{name}/repaired` (admin): the node was
/// checked and repaired by hand; ferrum enrols it again (reset, inventory
/// check) before anyone may reserve it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RepairedRequest {
    /// What was done; recorded in the node's events.
    #[schema(min_length = 1, max_length = 1000, pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$")]
    pub reason: String,
}

/// One site of `GET /api/v1/sites`: what clients need to read and write
/// times and names the way the site does.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Site {
    /// The site's name, as on its nodes (`lille`).
    pub name: String,
    /// IANA time zone in which the site reads naive dates (`Europe/Paris`).
    pub timezone: String,
    /// DNS domain of the site's nodes: `<node>.<site>.<domain>`.
    pub domain: String,
}

/// One recorded node state change.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeEvent {
    pub at: DateTime<Utc>,
    /// Who caused it: a user name, or `system` for the controller's loops.
    pub actor: String,
    pub from: NodeState,
    pub to: NodeState,
    pub reason: String,
}

/// Query of `GET /api/v1/nodes`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NodeListQuery {
    /// OAR property filter, e.g. `gpu_count >= 2 AND NOT exotic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(max_length = 4096, pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$")]
    pub filter: Option<String>,
}

// ---------------------------------------------------------------------------
// Leases
// ---------------------------------------------------------------------------

/// What a lease is for (OAR job types).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LeaseType {
    /// Nodes with the default environment.
    #[default]
    Default,
    /// Nodes on which the holder deploys their own image with root access.
    Deploy,
    /// Idle nodes, pre-empted when a normal lease needs them.
    Besteffort,
}

impl LeaseType {
    pub const ALL: [LeaseType; 3] = [LeaseType::Default, LeaseType::Deploy, LeaseType::Besteffort];

    pub fn as_str(self) -> &'static str {
        match self {
            LeaseType::Default => "default",
            LeaseType::Deploy => "deploy",
            LeaseType::Besteffort => "besteffort",
        }
    }
}

/// Lease states (SPEC §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    AwaitingApproval,
    Pending,
    Starting,
    Active,
    Ending,
    Finished,
    Rejected,
    Cancelled,
    Failed,
}

impl LeaseState {
    pub const ALL: [LeaseState; 9] = [
        LeaseState::AwaitingApproval,
        LeaseState::Pending,
        LeaseState::Starting,
        LeaseState::Active,
        LeaseState::Ending,
        LeaseState::Finished,
        LeaseState::Rejected,
        LeaseState::Cancelled,
        LeaseState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LeaseState::AwaitingApproval => "awaiting_approval",
            LeaseState::Pending => "pending",
            LeaseState::Starting => "starting",
            LeaseState::Active => "active",
            LeaseState::Ending => "ending",
            LeaseState::Finished => "finished",
            LeaseState::Rejected => "rejected",
            LeaseState::Cancelled => "cancelled",
            LeaseState::Failed => "failed",
        }
    }
}

/// Which nodes a lease wants: `count` nodes matching `filter`, the nodes
/// `names`, or several `groups` placed together (one start, disjoint
/// nodes, every group satisfied).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 4096, pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$")]
    pub filter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 10000)]
    pub names: Option<Vec<String>>,
    /// Several groups in one lease (OAR's `A+B`); excludes `count`,
    /// `filter` and `names`. A node serves one group only, so groups whose
    /// filters overlap still get distinct nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 64)]
    pub groups: Option<Vec<NodeGroup>>,
}

/// One group of a multi-group lease: `count` nodes matching `filter`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeGroup {
    #[schema(minimum = 1)]
    pub count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 4096, pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$")]
    pub filter: Option<String>,
}

/// One group of a multi-group lease as placed: the nodes that serve it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LeaseGroup {
    pub count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Node names, in allocation order.
    pub nodes: Vec<String>,
}

/// What to deploy on the nodes of a `deploy` lease.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploySpec {
    /// `NAME` (yours, else the public one, else the one shared with your
    /// project) or `OWNER/NAME`.
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$")]
    pub environment: String,
    /// OpenSSH public keys, one line each (at most 16,383 characters).
    #[serde(default)]
    #[schema(max_items = 64)]
    pub ssh_keys: Vec<String>,
}

/// Body of `POST /api/v1/leases/{id}/deployments`: what to deploy, and on
/// which of the lease's nodes (all of them when `nodes` is left out;
/// kadeploy's `-f nodefile`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentCreate {
    /// `NAME` (yours, else the public one, else the one shared with your
    /// project) or `OWNER/NAME`.
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$")]
    pub environment: String,
    /// OpenSSH public keys, one line each (at most 16,383 characters).
    #[serde(default)]
    #[schema(max_items = 64)]
    pub ssh_keys: Vec<String>,
    /// Node names, a subset of the lease's nodes; default: every node of
    /// the lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 10000)]
    pub nodes: Option<Vec<String>>,
}

/// Body of `POST /api/v1/leases`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseCreate {
    /// May be omitted when the caller belongs to exactly one project. An
    /// admin's lease without a project is an operator lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 64)]
    pub project: Option<String>,
    /// Which nodes; give this or `resources`.
    #[serde(default)]
    pub nodes: NodeSelector,
    /// The nodes as an OAR resource string instead of `nodes`:
    /// `{filter}/nodes=N[+{filter}/nodes=M...][,walltime=H[:MM[:SS]]]`
    /// (`host=N` and `network_address=N` are synonyms of `nodes=N`). A
    /// walltime takes the place of `duration`/`end`. Sub-node resources
    /// (`core=`, `cpu=`, `gpu=`), `switch=`, `cluster=1/...`, KaVLAN
    /// (`vlan=`), subnets (`slash_22=`) and `nodes=BEST|ALL` are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 8192, pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$")]
    pub resources: Option<String>,
    /// A filter ANDed with the filter of every group (OAR's `-p`); not
    /// with `nodes.names`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 4096, pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$")]
    pub properties: Option<String>,
    /// Omitted: as soon as possible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTime<Utc>>,
    /// `4h`, `90m`, `1h 30m`, `2d` (whole numbers of `s`, `m`, `h`, `d`,
    /// `w`, largest unit first) or an OAR walltime `H`, `H:MM`, `H:MM:SS`
    /// (`2:00` is two hours); give either this or `end`. The lease must end
    /// within the reservation horizon (`[leases] max_horizon`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 64, pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$")]
    pub duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<Utc>>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub lease_type: Option<LeaseType>,
    /// Allow prototype (`exotic`) nodes.
    #[serde(default)]
    pub exotic: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<DeploySpec>,
    /// A name for the lease, shown with it (Grid'5000's job name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 100, pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$")]
    pub name: Option<String>,
}

/// A lease.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Lease {
    pub id: i64,
    pub owner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(rename = "type")]
    pub lease_type: LeaseType,
    pub state: LeaseState,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Node names, in allocation order.
    pub nodes: Vec<String>,
    pub exotic: bool,
    /// The filter the nodes were chosen with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// For a multi-group lease, each group and the nodes serving it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<LeaseGroup>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<DeploySpec>,
    /// The name its owner gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Why the lease is in its state, when that is worth saying
    /// (`pre-empted by lease 12`, `released by alice`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Body of `PATCH /api/v1/leases/{id}`: move the end.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeasePatch {
    /// The new end; later than the current one (extend). To end early, use
    /// `DELETE`.
    pub end: DateTime<Utc>,
}

/// Query of `GET /api/v1/leases`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LeaseListQuery {
    /// Only leases in this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<LeaseState>,
    /// Include finished, cancelled, rejected and failed leases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<bool>,
    /// Only this user's leases (admins; others may name only themselves);
    /// a user that does not exist is a 404.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub owner: Option<String>,
}

// ---------------------------------------------------------------------------
// Availability and calendar
// ---------------------------------------------------------------------------

/// Query of `GET /api/v1/availability`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AvailabilityQuery {
    #[param(minimum = 1)]
    pub count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(max_length = 4096, pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$")]
    pub filter: Option<String>,
    /// `4h`, `90m`, ...; `from` plus this must end within the reservation
    /// horizon, and only slots that end within it are offered.
    #[param(max_length = 64, pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$")]
    pub duration: String,
    /// Earliest start to consider; default now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exotic: Option<bool>,
    /// How many distinct start times to return (1..=20, default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 20)]
    pub limit: Option<u32>,
}

/// One possible placement.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Slot {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The nodes a request made now would get for this start.
    pub nodes: Vec<String>,
}

/// Answer of `GET /api/v1/availability`: earliest slots first.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Availability {
    pub slots: Vec<Slot>,
}

/// Query of `GET /api/v1/calendar`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CalendarQuery {
    /// Default: now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<DateTime<Utc>>,
    /// Default: `from` + 7 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(max_length = 4096, pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$")]
    pub filter: Option<String>,
}

/// One busy interval of a node.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BusyInterval {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    #[serde(rename = "type")]
    pub lease_type: LeaseType,
    pub state: LeaseState,
    /// The lease id, shown for the caller's own leases (all for admins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<i64>,
    /// The lease owner, shown for the caller's own leases (all for admins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Whether the lease is the caller's own.
    #[serde(default)]
    pub mine: bool,
}

/// Busy intervals of one node.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeCalendar {
    pub node: String,
    pub state: NodeState,
    pub busy: Vec<BusyInterval>,
}

/// Answer of `GET /api/v1/calendar`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Calendar {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub nodes: Vec<NodeCalendar>,
}

// ---------------------------------------------------------------------------
// Accounts
// ---------------------------------------------------------------------------

/// A user role.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    #[default]
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
}

/// A project.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Project {
    pub name: String,
    /// Policy class (`student`, `research`, `industry`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Quota in node-hours per accounting period, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_node_hours: Option<i64>,
    pub members: Vec<String>,
    /// The member who may add and remove members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Body of `POST /api/v1/projects` (admin).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectCreate {
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 64, pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$")]
    pub class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub quota_node_hours: Option<i64>,
}

/// A user.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub name: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub projects: Vec<String>,
    pub created_at: DateTime<Utc>,
    /// Set while an admin has disabled the user: their tokens do not work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<DateTime<Utc>>,
    /// The admin's reason for disabling the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
}

/// Body of `POST /api/v1/users` (admin).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserCreate {
    /// Letters, digits, `-`, `_`, `.`; unique regardless of case.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub name: String,
    #[serde(default)]
    pub role: Role,
    /// `local@domain.tld`: no spaces, control or formatting characters (the
    /// rule of account requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        max_length = 254,
        pattern = r"^[^@\s\u0000-\u001f\u007f-\u009f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]+@[^@\s\u0000-\u001f\u007f-\u009f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff.][^@\s\u0000-\u001f\u007f-\u009f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]*\.[^@\s\u0000-\u001f\u007f-\u009f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]*[^@\s\u0000-\u001f\u007f-\u009f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff.]$"
    )]
    pub email: Option<String>,
    /// Projects the user belongs to (they must exist).
    #[serde(default)]
    pub projects: Vec<String>,
}

/// Body of `POST /api/v1/users/{name}/tokens`; every field is optional
/// (no body at all: an unnamed full token that never expires).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCreate {
    /// What the token is for (`laptop`, `ci`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 64)]
    pub name: Option<String>,
    /// Lifetime from now: `30d`, `12h`, `1h 30m`; or give `expires_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 64)]
    pub expires_in: Option<String>,
    /// When the token stops working.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// The token may only read (`GET`); anything else answers 403.
    #[serde(default)]
    pub read_only: bool,
}

/// A new API token, shown once.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    pub user: String,
    /// The secret; ferrum keeps only its hash and cannot show it again.
    pub token: String,
    /// The token's id (to revoke it).
    #[serde(default)]
    pub id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub read_only: bool,
}

/// An API token as `GET /api/v1/users/{name}/tokens` shows it: never its
/// secret.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Token {
    pub id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Past its expiry: it no longer works (and no longer counts towards
    /// the cap), but stays listed until revoked.
    pub expired: bool,
    pub read_only: bool,
}

/// Answer of `POST /api/v1/users/{name}/activation-link` (admin): a
/// one-time link where the user sets their portal password.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ActivationLink {
    pub user: String,
    /// Works once, until `expires_at`; a newer link for the same user
    /// replaces it. A secret: send it to the user only.
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// An SSH public key a user registered (installed on the nodes they deploy
/// and accepted by the SSH gateway).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SshKey {
    pub id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// One line: `type base64 [comment]`.
    pub public_key: String,
    /// `SHA256:...`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    pub created_at: DateTime<Utc>,
}

/// Everything ferrum stores about a user (GDPR articles 15 and 20), as
/// `GET /api/v1/users/{name}/export` answers it: never a secret or a hash
/// (no token, password or link).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PersonalData {
    pub exported_at: DateTime<Utc>,
    /// The account: login, role, e-mail, projects, creation, disabled.
    pub user: User,
    /// From the account request that made the account, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affiliation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<accounts::RequesterStatus>,
    /// Live API tokens: names and dates only.
    pub tokens: Vec<Token>,
    pub ssh_keys: Vec<SshKey>,
    /// The account requests that made the account.
    pub account_requests: Vec<accounts::AccountRequest>,
    /// Every lease the user owns or owned, newest first.
    pub leases: Vec<Lease>,
    /// The user's usage records, oldest first.
    pub usage_records: Vec<usage::UsageRecord>,
    /// What ferrum told the user of their leases (the portal's and the
    /// mails'), newest first.
    #[serde(default)]
    pub notifications: Vec<Notification>,
}

/// A notification of a lease or one of its deployments, as the portal
/// lists it and a mail carried it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Notification {
    pub lease: i64,
    /// `lease_approved`, `lease_rejected`, `lease_started`, ...
    pub kind: String,
    pub subject: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at: Option<DateTime<Utc>>,
}

/// Answer of `POST /api/v1/users/{name}/erase` (admin).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct UserErased {
    /// The login the account, its leases and usage records carry from now on.
    pub pseudonym: String,
    pub erased_at: DateTime<Utc>,
}

/// Body of `POST /api/v1/users/{name}/ssh-keys`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SshKeyCreate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 64, pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$")]
    pub name: Option<String>,
    /// The line of an OpenSSH `.pub` file.
    #[schema(max_length = 16383)]
    pub public_key: String,
}

/// Body of `POST /api/v1/users/{name}/disable` (admin).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserDisable {
    /// Why; kept with the user and written on the leases it ends.
    #[schema(min_length = 1, max_length = 1000)]
    pub reason: String,
}

/// Answer of `POST /api/v1/users`: the user and a first token.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct UserCreated {
    pub user: User,
    pub token: String,
}

/// Answer of `GET /healthz`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
}

#[cfg(test)]
mod power_action_names {
    use super::PowerActionName;

    #[test]
    fn the_names_are_serdes() {
        for a in PowerActionName::ALL {
            assert_eq!(serde_json::to_value(a).expect("json"), serde_json::Value::from(a.as_str()));
            assert_eq!(PowerActionName::parse(a.as_str()), Some(a));
        }
        assert_eq!(PowerActionName::parse("reboot"), None);
    }
}
