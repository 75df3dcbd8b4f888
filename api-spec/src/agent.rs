//! The agent protocol (version 1): what the deploy ramdisk's `ferrum-agent`
//! and the controller say to each other, under `/agent/v1`.
//!
//! 1. The ramdisk boots with `ferrum.url`, `ferrum.node` and a one-time
//!    `ferrum.token` on its kernel command line; the agent `POST`s
//!    [`AgentRegister`] to `/agent/v1/register` and gets an
//!    [`AgentSession`]: a session token and the node's new agent
//!    *generation* (one per registration).
//! 2. With `Authorization: Bearer <session>`, it `POST`s its inventory to
//!    `/agent/v1/inventory` ([`InventoryUpload`]), then asks
//!    `GET /agent/v1/command?wait_ms=N` for work: an [`AgentCommand`] (or
//!    `wait`, after up to N ms of long polling).
//! 3. While executing it reports [`CommandProgress`] to
//!    `/agent/v1/commands/{id}/progress`, then [`CommandResult`] to
//!    `/agent/v1/commands/{id}/result`, and asks for the next command.
//!
//! Every upload carries the generation of the session it belongs to; the
//! controller refuses (409 `stale_generation`) anything from an older
//! generation, so a late or duplicate report from a previous boot never
//! overwrites newer truth. The agent executes; it never decides.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::inventory::InventoryReport;

/// The protocol version this crate describes.
pub const AGENT_PROTOCOL: u32 = 1;

/// `POST /agent/v1/register`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentRegister {
    /// The one-time token from the kernel command line (`ferrum.token=`).
    pub token: String,
    /// The node name from the kernel command line (`ferrum.node=`).
    pub node: String,
    /// The protocol version the agent speaks ([`AGENT_PROTOCOL`]).
    pub protocol: u32,
    pub agent_version: String,
}

/// The answer to a registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgentSession {
    /// Bearer token for the rest of this boot (never logged).
    pub session: String,
    pub node: String,
    /// This registration's generation; every later upload carries it.
    pub generation: i64,
}

/// `POST /agent/v1/inventory`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InventoryUpload {
    pub generation: i64,
    pub report: InventoryReport,
}

/// Image formats the agent writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ImageFormat {
    #[serde(rename = "raw")]
    Raw,
    #[serde(rename = "raw.zst")]
    RawZst,
}

/// What the controller asks the agent to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentAction {
    /// Nothing now: ask again.
    Wait,
    /// Read the hardware again and upload it.
    Inventory,
    /// Stream an image to a disk, checking its sha256.
    WriteImage {
        /// Where to fetch it (the controller's `/images/...` or any HTTP(S) URL).
        url: String,
        format: ImageFormat,
        /// sha256 of the file as published.
        sha256: String,
        /// Bytes once decoded (checked against the disk before writing).
        #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_u64)]
        size: u64,
        /// The disk, e.g. `/dev/vda`.
        device: String,
    },
    /// Install SSH keys for root and the hostname in a written system.
    InstallKeys {
        device: String,
        /// 1-based partition holding `/`.
        #[schema(format = Int64, minimum = 0, maximum = 4_294_967_295_u64)]
        root_partition: u32,
        /// authorized_keys lines: the lease holder's, plus the controller's own.
        ssh_keys: Vec<String>,
        hostname: String,
    },
    /// Erase partition tables and signatures (every byte when `secure`).
    Wipe { devices: Vec<String>, secure: bool },
    /// Load the kernel (and initrd) found in a written system's root
    /// partition and jump into it, without firmware (environments whose
    /// `boot` is `kexec`).
    Kexec {
        device: String,
        /// 1-based partition holding `/`.
        #[schema(format = Int64, minimum = 0, maximum = 4_294_967_295_u64)]
        root_partition: u32,
        /// Path of the kernel inside that file system, e.g. `boot/vmlinuz`.
        kernel: String,
        /// Path of the initrd inside it, if any.
        initrd: Option<String>,
        /// The kernel command line.
        cmdline: String,
    },
    /// Reboot (into whatever the node's boot target says next).
    Reboot,
    /// Power the node off.
    PowerOff,
}

impl AgentAction {
    /// The action's `kind` on the wire (for logs).
    pub fn kind(&self) -> &'static str {
        match self {
            AgentAction::Wait => "wait",
            AgentAction::Inventory => "inventory",
            AgentAction::WriteImage { .. } => "write_image",
            AgentAction::InstallKeys { .. } => "install_keys",
            AgentAction::Wipe { .. } => "wipe",
            AgentAction::Kexec { .. } => "kexec",
            AgentAction::Reboot => "reboot",
            AgentAction::PowerOff => "power_off",
        }
    }
}

/// `GET /agent/v1/command`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgentCommand {
    /// 0 for `wait`.
    pub id: i64,
    pub generation: i64,
    pub action: AgentAction,
}

/// `POST /agent/v1/commands/{id}/progress`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandProgress {
    pub generation: i64,
    /// Bytes written (images) or erased (wipes) so far.
    pub done: u64,
    pub total: Option<u64>,
}

/// `POST /agent/v1/commands/{id}/result`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandResult {
    pub generation: i64,
    /// `None`: done. `Some(message)`: failed, with the agent's named error.
    pub error: Option<String>,
}
