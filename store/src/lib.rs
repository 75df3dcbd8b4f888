//! The datastore's interface (crate `ferrum-store`, the controller's `db`):
//! the row types, one trait per part of the store and [`Datastore`], their
//! sum, behind which every SQL statement of the controller lives, in the
//! backends `ferrum-store-sqlite` and `ferrum-store-postgres`; the helpers
//! both backends share; and the sealing of the secrets they hold
//! ([`secrets`]).
//!
//! The store persists and reads rows; it does not decide. State transitions
//! are decided by `model` (the application layer asks, then writes them
//! here with compare-and-swap on the previous state), placement is decided
//! by `calendar`, and authorisation by `app`. The rules a store applies
//! while writing (what a lease's end records in usage, how an allocation is
//! cut, what counts as an import change, effective properties) are pure
//! functions of `model`, called by both stores. The store's own rule is the
//! last line of defence: the database refuses two overlapping allocations of
//! one node (SQLite: triggers + `BEGIN IMMEDIATE`).
//!
//! Rows are plain structs of this crate; they never reach the API.

use async_trait::async_trait;

use ferrum_model::{
    AccountRequestInput, AccountRequestState, AgentCommandInput, AgentCommandState, BootTarget, LeaseId, LeaseState, LeaseType, NodeId,
    NodeLifecycle, NodePolicy, NotificationKind, OperationKind, OperationState, Phase, PowerInput, PowerOperation, PowerRequestState,
    ProjectId, ResetOutcome, Seconds, UserId,
};

pub use secrets::SecretKey;

pub mod raw;
pub mod secrets;

pub use raw::*;

/// Errors of the datastore. `Display` never repeats the source.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{what} '{name}' already exists")]
    AlreadyExists { what: &'static str, name: String },
    #[error("{what} '{name}' does not exist")]
    NotFound { what: &'static str, name: String },
    /// The database refused an allocation that overlaps another one.
    #[error("a node is already booked over that interval")]
    DoubleBooked,
    /// The calendar changed since the caller last read it; reload and retry.
    #[error("the calendar changed concurrently")]
    StaleCalendar,
    /// A compare-and-swap on a state found another state.
    #[error("the {what} changed concurrently")]
    Raced { what: &'static str },
    #[error("row holds an invalid value: {0}")]
    Corrupt(String),
    /// A state change the model's transition function refuses.
    #[error("refused state change: {0}")]
    Transition(String),
    #[error("database error")]
    Sqlx(#[source] sqlx::Error),
    #[error("database migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("database URL must start with sqlite:// or postgres://")]
    UnknownBackend,
    /// The database's secrets were sealed with another key than the one
    /// given (fingerprints, never keys).
    #[error("the database's BMC credentials are encrypted with the key of fingerprint {stored}, not with this key ({given})")]
    KeyMismatch { stored: String, given: String },
    /// A sealed value that does not open (altered, or moved to another row).
    #[error("the BMC credentials of node '{node}' cannot be decrypted")]
    Unseal {
        node: String,
        #[source]
        source: crate::secrets::SecretsError,
    },
}

pub type DbResult<T> = Result<T, DbError>;

/// A sqlx error as the stores answer it: a column that does not decode
/// (an unknown state name, say, read through the model's type mappings) is
/// `Corrupt`, naming the column and the value; the rest is `Sqlx`.
pub fn sqlx_error(e: sqlx::Error) -> DbError {
    match e {
        sqlx::Error::ColumnDecode { index, source } => DbError::Corrupt(format!("column {index}: {source}")),
        e => DbError::Sqlx(e),
    }
}

/// A stored name of one of the model's enums, or `Corrupt` naming it: an
/// unknown state is never read as a default.
pub fn parse_name<T: std::str::FromStr<Err = ferrum_model::names::UnknownName>>(text: &str) -> DbResult<T> {
    text.parse().map_err(|e: ferrum_model::names::UnknownName| DbError::Corrupt(e.to_string()))
}

// The states the stores write for power requests and agent commands, as
// the model's transition functions decide them: the stores bind these (and
// the `from` their compare-and-swap expects), never a name of their own.

fn refused(e: impl std::fmt::Display) -> DbError {
    DbError::Transition(e.to_string())
}

/// A power request the power loop takes.
pub fn started_power() -> DbResult<PowerRequestState> {
    PowerRequestState::Queued.next(PowerInput::Started).map_err(refused)
}

/// A power request that ended (it ran, or failed before it could).
pub fn finished_power(error: Option<&str>) -> DbResult<PowerRequestState> {
    let input = if error.is_some() { PowerInput::Failed } else { PowerInput::Succeeded };
    PowerRequestState::Running.next(input).map_err(refused)
}

/// A queued power request dropped before it ran: (from, to).
pub fn dropped_power() -> DbResult<(PowerRequestState, PowerRequestState)> {
    let from = PowerRequestState::Queued;
    Ok((from, from.next(PowerInput::Dropped).map_err(refused)?))
}

/// A pending account request an admin decided: (from, to).
pub fn decided_request(input: AccountRequestInput) -> DbResult<(AccountRequestState, AccountRequestState)> {
    let from = AccountRequestState::Pending;
    Ok((from, from.next(input).map_err(refused)?))
}

/// A queued (or unanswered) agent command handed to an agent.
pub fn handed_command() -> DbResult<AgentCommandState> {
    AgentCommandState::Queued.next(AgentCommandInput::Handed).map_err(refused)
}

/// A sent agent command its agent answered: (from, to).
pub fn answered_command(error: Option<&str>) -> DbResult<(AgentCommandState, AgentCommandState)> {
    let from = AgentCommandState::Sent;
    let input = if error.is_some() { AgentCommandInput::Failed } else { AgentCommandInput::Succeeded };
    Ok((from, from.next(input).map_err(refused)?))
}

/// An unfinished agent command a new operation drops (from any of
/// `AgentCommandState::UNFINISHED`).
pub fn cancelled_command() -> DbResult<AgentCommandState> {
    AgentCommandState::Queued.next(AgentCommandInput::Cancelled).map_err(refused)
}

/// A JSON object stored as text, or `Corrupt` naming `what`.
pub fn json_map(text: &str, what: &str) -> DbResult<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_str(text) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        _ => Err(DbError::Corrupt(format!("{what} is not a JSON object"))),
    }
}

/// A JSON object as stored text.
pub fn to_json(m: &serde_json::Map<String, serde_json::Value>) -> String {
    serde_json::Value::Object(m.clone()).to_string()
}

/// What a node transition does to the node's "needs a reset" mark: handed
/// to a lease, it is dirty until a reset (or an enrolment, which resets a
/// dirty node) brings it back to `available`; `None` leaves the mark.
pub fn needs_reset_after(from: NodeLifecycle, to: NodeLifecycle) -> Option<bool> {
    match (from, to) {
        (_, NodeLifecycle::Reserved | NodeLifecycle::Deploying | NodeLifecycle::Deployed) => Some(true),
        (NodeLifecycle::Resetting | NodeLifecycle::Enrolling, NodeLifecycle::Available) => Some(false),
        _ => None,
    }
}

/// What the associated data of a node's sealed BMC URL names: its column
/// and the node's name (immutable), so a value copied to another node's
/// row does not open.
fn bmc_context(node: &str) -> String {
    format!("nodes.bmc_url:{node}")
}

/// A node's BMC URL as stored: sealed with `key`.
pub fn seal_bmc(key: &SecretKey, node: &str, url: &Secret) -> DbResult<String> {
    key.seal(&bmc_context(node), &url.0).map_err(|source| DbError::Unseal { node: node.to_owned(), source })
}

/// Opens the BMC URL of a node row read from the database.
pub fn open_bmc(key: &SecretKey, node: &mut NodeRow) -> DbResult<()> {
    if let Some(stored) = node.bmc_url.take() {
        let url = key.open(&bmc_context(&node.name), &stored.0).map_err(|source| DbError::Unseal { node: node.name.clone(), source })?;
        node.bmc_url = Some(Secret(url));
    }
    Ok(())
}

/// Refuses a database whose recorded fingerprint is another key's.
pub fn check_fingerprint(stored: Option<&str>, key: &SecretKey) -> DbResult<()> {
    match stored {
        Some(stored) if stored != key.fingerprint() => {
            Err(DbError::KeyMismatch { stored: stored.to_owned(), given: key.fingerprint().to_owned() })
        }
        _ => Ok(()),
    }
}

/// Who is calling, as the store knows them (from a token).
#[derive(Clone, Debug)]
pub struct ActorRow {
    pub user_id: UserId,
    pub name: String,
    pub is_admin: bool,
    /// Project ids and names the user belongs to.
    pub projects: Vec<(ProjectId, String)>,
    /// The token's own id, expiry and whether it may only read.
    pub token_id: i64,
    pub expires_at: Option<Seconds>,
    pub read_only: bool,
}

#[derive(Clone, Debug)]
pub struct UserRow {
    pub id: UserId,
    pub name: String,
    pub is_admin: bool,
    pub email: Option<String>,
    pub projects: Vec<String>,
    pub created_at: Seconds,
    /// Set while an admin has disabled the user.
    pub disabled: Option<Disabled>,
}

impl UserRow {
    /// The row of a user a store just created: its projects in the order
    /// and form a read answers (sorted, once each), enabled.
    pub fn created(id: UserId, name: &str, is_admin: bool, email: Option<&str>, projects: &[String], now: Seconds) -> UserRow {
        let mut projects = projects.to_vec();
        projects.sort();
        projects.dedup();
        UserRow { id, name: name.to_owned(), is_admin, email: email.map(str::to_owned), projects, created_at: now, disabled: None }
    }
}

/// Why and when an admin disabled a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disabled {
    pub at: Seconds,
    pub reason: String,
}

/// An API token as its owner sees it (never its secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRow {
    pub id: i64,
    pub name: Option<String>,
    pub created_at: Seconds,
    pub expires_at: Option<Seconds>,
    pub read_only: bool,
}

/// A token to store (its SHA-256, never the secret).
#[derive(Clone, Debug)]
pub struct NewToken {
    pub sha256: String,
    pub name: Option<String>,
    pub expires_at: Option<Seconds>,
    pub read_only: bool,
}

#[derive(Clone, Debug)]
pub struct ProjectRow {
    pub id: ProjectId,
    pub name: String,
    pub class: Option<String>,
    pub quota_node_hours: Option<i64>,
    pub members: Vec<String>,
    /// The member who may add and remove members.
    pub manager: Option<String>,
    pub created_at: Seconds,
}

/// A node as stored. `bmc_url` holds a secret; the application layer turns
/// it into a redacted view for admins only.
#[derive(Clone, Debug)]
pub struct NodeRow {
    pub id: NodeId,
    pub name: String,
    pub site: String,
    pub cluster: String,
    pub ip: Option<String>,
    pub bmc_url: Option<Secret>,
    pub state: NodeLifecycle,
    pub policy: NodePolicy,
    /// The lease the node is busy for, if any.
    pub lease: Option<LeaseId>,
    /// Effective properties (JSON object text).
    pub properties: serde_json::Map<String, serde_json::Value>,
    pub macs: Vec<String>,
    /// What the node boots next over the network.
    pub boot_target: BootTarget,
    /// What the BMC last said: (`on`|`off`, when, `sync`|`request`).
    pub power: Option<(String, Seconds, String)>,
    pub created_at: Seconds,
    pub updated_at: Seconds,
}

impl NodeRow {
    /// The node's lifecycle part.
    pub fn status(&self) -> NodeStatus {
        NodeStatus { id: self.id, name: self.name.clone(), state: self.state, policy: self.policy, lease: self.lease }
    }
}

/// One MAC address of a node, as the boot services see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootHostRow {
    pub mac: String,
    pub node: NodeId,
    pub name: String,
    pub ip: Option<String>,
    pub boot_target: BootTarget,
}

/// An agent session, as the controller checks it on every agent request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentSessionRow {
    pub node: NodeId,
    pub name: String,
    /// The session's generation.
    pub generation: i64,
    /// The node's newest generation (a later registration supersedes this session).
    pub current_generation: i64,
}

/// The latest inventory a node's agent reported.
#[derive(Clone, Debug)]
pub struct InventoryRow {
    pub generation: i64,
    pub reported_at: Seconds,
    /// JSON text of the report.
    pub report: String,
}

/// A command for a node's agent.
#[derive(Clone, Debug)]
pub struct AgentCommandRow {
    pub id: i64,
    pub node: NodeId,
    /// JSON text of the action.
    pub action: String,
    pub requested_by: String,
    /// Changed only as `AgentCommandState::next` decides.
    pub state: AgentCommandState,
    pub generation: Option<i64>,
    pub done_bytes: i64,
    pub total_bytes: Option<i64>,
    pub error: Option<String>,
    pub created_at: Seconds,
    pub updated_at: Seconds,
}

/// A catalog entry.
#[derive(Clone, Debug)]
pub struct EnvironmentRow {
    pub id: i64,
    pub name: String,
    pub version: i64,
    /// JSON text of the descriptor.
    pub descriptor: String,
    pub visibility: String,
    pub owner: UserId,
    pub owner_name: String,
    /// Whether the owner is an admin now (system lookups take only
    /// admin-owned public environments).
    pub owner_is_admin: bool,
    /// The owner's projects (for `project` visibility).
    pub owner_projects: Vec<String>,
    pub created_at: Seconds,
}

/// A deployment request, as stored.
#[derive(Clone, Debug)]
pub struct DeploymentRow {
    pub id: i64,
    pub lease: LeaseId,
    pub environment: String,
    pub version: i64,
    /// The catalog entry deployed, its owner, and the image's sha256.
    pub environment_id: Option<i64>,
    pub environment_owner: Option<String>,
    pub image_sha256: Option<String>,
    /// Why it could not start (then it has no operation).
    pub error: Option<String>,
    /// JSON: the resolved environment and the keys to install.
    pub spec: String,
    pub requested_by: String,
    pub created_at: Seconds,
}

/// A deployment to insert.
#[derive(Clone, Debug)]
pub struct NewDeployment {
    pub lease: LeaseId,
    pub environment: String,
    pub version: i64,
    pub environment_id: Option<i64>,
    pub environment_owner: Option<String>,
    pub image_sha256: Option<String>,
    pub error: Option<String>,
    pub spec: String,
    pub requested_by: String,
    pub created_at: Seconds,
}

/// One node's deploy or reset, as stored; the operations engine owns its
/// meaning (phases, data). Times in milliseconds since the epoch.
#[derive(Clone, Debug)]
pub struct OperationRow {
    pub id: i64,
    pub node: NodeId,
    pub node_name: String,
    pub kind: OperationKind,
    pub deployment: Option<i64>,
    pub lease: Option<LeaseId>,
    /// Changed only as `OperationState::next` decides.
    pub state: OperationState,
    /// The phase running, or the last one of an ended operation.
    pub phase: Phase,
    pub attempt: i64,
    pub phase_started_ms: i64,
    pub deadline_ms: i64,
    /// JSON: what the phase waits on.
    pub data: String,
    /// JSON: `[[phase, started_ms], ...]`.
    pub history: String,
    pub message: Option<String>,
    /// A reset's verdict, once it ended.
    pub outcome: Option<ResetOutcome>,
    pub controller_ms: i64,
    pub created_ms: i64,
    pub finished_ms: Option<i64>,
    /// Bumped by every write: the compare-and-swap token.
    pub version: i64,
}

/// A node operation to insert (running, in its first phase).
#[derive(Clone, Debug)]
pub struct NewOperation {
    pub node: NodeId,
    pub kind: OperationKind,
    pub lease: Option<LeaseId>,
    pub phase: Phase,
    pub deadline_ms: i64,
    pub now_ms: i64,
}

/// A requested power or boot operation.
#[derive(Clone, Debug)]
pub struct PowerRequestRow {
    pub id: i64,
    pub node: NodeId,
    pub node_name: String,
    pub operation: PowerOperation,
    pub requested_by: String,
    pub requested_at: Seconds,
    /// Changed only as `PowerRequestState::next` decides.
    pub state: PowerRequestState,
    pub finished_at: Option<Seconds>,
    pub error: Option<String>,
}

/// The lifecycle part of a node, for the clock loop (cheap to read for
/// every node: no properties, no secrets).
#[derive(Clone, Debug)]
pub struct NodeStatus {
    pub id: NodeId,
    pub name: String,
    pub state: NodeLifecycle,
    pub policy: NodePolicy,
    pub lease: Option<LeaseId>,
}

/// A string that must not be logged: `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A node to enrol or to update from a reference import.
#[derive(Clone, Debug)]
pub struct NodeWrite {
    pub name: String,
    pub site: String,
    pub cluster: String,
    pub ip: Option<String>,
    pub macs: Vec<String>,
    /// `None` keeps the stored BMC on update.
    pub bmc_url: Option<Secret>,
    pub properties: serde_json::Map<String, serde_json::Value>,
    pub admin_properties: serde_json::Map<String, serde_json::Value>,
    pub reference: Option<String>,
    pub reference_sha256: Option<String>,
}

impl NodeWrite {
    /// The facts an import compares with the stored node's.
    pub fn imported_facts(&self) -> ferrum_model::import::ImportedFacts<'_> {
        import_facts(&self.site, &self.cluster, self.ip.as_deref(), self.reference_sha256.as_deref(), &self.macs)
    }
}

fn import_facts<'a>(
    site: &'a str,
    cluster: &'a str,
    ip: Option<&'a str>,
    reference_sha256: Option<&'a str>,
    macs: &'a [String],
) -> ferrum_model::import::ImportedFacts<'a> {
    ferrum_model::import::ImportedFacts { site, cluster, ip, reference_sha256, macs }
}

/// A stored node as a reference import reads it.
#[derive(Clone, Debug)]
pub struct ImportedNodeRow {
    pub id: NodeId,
    pub site: String,
    pub cluster: String,
    pub ip: Option<String>,
    pub reference_sha256: Option<String>,
    pub macs: Vec<String>,
    pub admin_properties: serde_json::Map<String, serde_json::Value>,
}

impl ImportedNodeRow {
    /// The facts an import compares with the imported node's.
    pub fn facts(&self) -> ferrum_model::import::ImportedFacts<'_> {
        import_facts(&self.site, &self.cluster, self.ip.as_deref(), self.reference_sha256.as_deref(), &self.macs)
    }
}

/// What an import did, by node name.
#[derive(Clone, Debug, Default)]
pub struct ImportOutcome {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct NodeEventRow {
    pub at: Seconds,
    pub actor: String,
    pub from: String,
    pub to: String,
    pub reason: String,
}

/// A node state change to record: compare-and-swap from `from` to `to`,
/// with the event shown to operators.
#[derive(Clone, Debug)]
pub struct NodeTransition {
    pub node: NodeId,
    pub from: NodeLifecycle,
    pub to: NodeLifecycle,
    /// The lease the node is busy for after the transition.
    pub lease: Option<LeaseId>,
    pub event: NewEvent,
}

/// The event half of a transition; `from`/`to` are shown states.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub at: Seconds,
    pub actor: String,
    pub from_shown: String,
    pub to_shown: String,
    pub reason: String,
}

#[derive(Clone, Debug)]
pub struct LeaseRow {
    pub id: LeaseId,
    pub owner_id: UserId,
    pub owner: String,
    pub project: Option<String>,
    pub lease_type: LeaseType,
    pub state: LeaseState,
    pub start: Seconds,
    pub end: Seconds,
    pub exotic: bool,
    pub filter: Option<String>,
    /// A multi-group lease's groups (JSON text, see [`NewLease::groups`]).
    pub groups: Option<String>,
    pub deploy: Option<String>,
    pub name: Option<String>,
    pub reason: Option<String>,
    pub created_at: Seconds,
    /// Allocated nodes in allocation order.
    pub nodes: Vec<(NodeId, String)>,
}

/// What the Grid'5000 API (`/stable`) keeps of a job beyond its lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRow {
    pub lease: LeaseId,
    /// The site it was submitted to.
    pub site: String,
    /// Its OAR types exactly as given (a JSON array of strings).
    pub types: String,
    pub queue: String,
    /// Stored and shown, never run.
    pub command: Option<String>,
    pub properties: Option<String>,
}

/// A lease to insert together with its allocation.
#[derive(Clone, Debug)]
pub struct NewLease {
    pub owner_id: UserId,
    pub project_id: Option<ProjectId>,
    pub lease_type: LeaseType,
    pub state: LeaseState,
    pub start: Seconds,
    pub end: Seconds,
    pub exotic: bool,
    pub filter: Option<String>,
    /// A multi-group lease's groups: a JSON array of
    /// `{"count": N, "filter": TEXT|null, "nodes": [node id, ...]}`, in the
    /// order they were asked; `None` for a single group.
    pub groups: Option<String>,
    pub deploy: Option<String>,
    /// Given by its owner.
    pub name: Option<String>,
    /// Why it is in its first state (waiting for approval).
    pub reason: Option<String>,
    pub nodes: Vec<NodeId>,
    pub created_at: Seconds,
}

/// A besteffort lease that a new lease takes nodes from: its state moves
/// (compare-and-swap) and its allocation is cut or dropped, in the same
/// transaction as the new lease's insertion.
#[derive(Clone, Debug)]
pub struct Preemption {
    pub lease: LeaseId,
    pub from: LeaseState,
    pub to: LeaseState,
    pub change: AllocationChange,
    pub reason: String,
}

/// One allocation row, as the in-memory calendar needs it.
#[derive(Clone, Copy, Debug)]
pub struct AllocationRow {
    pub lease: LeaseId,
    pub node: NodeId,
    pub start: Seconds,
    pub end: Seconds,
    pub lease_type: LeaseType,
}

/// One busy interval for the calendar view.
#[derive(Clone, Debug)]
pub struct BusyRow {
    pub node: NodeId,
    pub lease: LeaseId,
    pub owner_id: UserId,
    pub owner: String,
    pub lease_type: LeaseType,
    pub state: LeaseState,
    pub start: Seconds,
    pub end: Seconds,
}

/// How a lease's allocation changes with a state change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocationChange {
    /// Leave the rows as they are.
    Keep,
    /// Cut every row at this time (rows starting at or after it go).
    CutAt(Seconds),
    /// Remove every row.
    Drop,
}

/// A request for an account.
#[derive(Clone, Debug)]
pub struct AccountRequestRow {
    pub id: i64,
    pub name: String,
    pub email: String,
    pub affiliation: String,
    pub project: String,
    pub project_class: Option<String>,
    pub motivation: String,
    pub source: String,
    pub state: AccountRequestState,
    pub reason: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<Seconds>,
    pub created_at: Seconds,
    /// What the requester says they are (`student`, `academic`,
    /// `startup`, `company`).
    pub status: Option<String>,
    /// When the requester followed the mail's link (`None`: not yet, or no
    /// mail server configured).
    pub email_verified_at: Option<Seconds>,
}

/// A request to insert.
#[derive(Clone, Debug)]
pub struct NewAccountRequest {
    pub name: String,
    pub email: String,
    pub affiliation: String,
    pub project: String,
    pub project_class: Option<String>,
    pub motivation: String,
    pub source: String,
    pub created_at: Seconds,
    pub status: Option<String>,
    /// The SHA-256 of the e-mail check's one-time token, when a mail goes.
    pub email_token_sha256: Option<String>,
}

/// What approving a request creates.
#[derive(Clone, Debug)]
pub struct Approval {
    pub decided_by: String,
    pub reason: Option<String>,
    /// Class and quota of the project, if approval creates it.
    pub project_class: Option<String>,
    pub quota_node_hours: Option<i64>,
    pub token_sha256: String,
    pub at: Seconds,
}

/// A change to a project: `None` leaves a field, `Some(None)` clears it.
#[derive(Clone, Debug, Default)]
pub struct ProjectChange {
    pub class: Option<Option<String>>,
    pub quota_node_hours: Option<Option<i64>>,
    pub manager: Option<Option<String>>,
}

/// One entry of the audit log.
#[derive(Clone, Debug)]
pub struct AuditRow {
    pub id: i64,
    pub at: Seconds,
    pub actor: String,
    pub action: String,
    pub target: String,
    /// JSON object.
    pub detail: String,
}

/// Which audit entries to read, newest first.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub from: Option<Seconds>,
    pub to: Option<Seconds>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    /// Only entries with a smaller id (paging backwards).
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// An erasure of a user's personal data (GDPR art. 17): the user's login
/// becomes `pseudonym` wherever it is stored as text, and `emails` are
/// removed. The store writes it in one transaction and keeps the old
/// login nowhere.
#[derive(Clone, Debug)]
pub struct Erasure {
    pub user: UserId,
    /// The login to erase.
    pub name: String,
    /// The e-mail addresses to erase (the user's, his account requests').
    pub emails: Vec<String>,
    pub pseudonym: String,
    /// The admin who erases.
    pub by: String,
    pub at: Seconds,
    /// The account's disabled reason from now on.
    pub disabled_reason: String,
}

/// The SSH public keys a deployment's stored spec (JSON) installs.
pub fn deployment_keys(spec: &str) -> Vec<String> {
    let keys = serde_json::from_str::<serde_json::Value>(spec).ok().and_then(|v| v.get("ssh_keys").cloned());
    match keys {
        Some(serde_json::Value::Array(keys)) => keys.into_iter().filter_map(|k| k.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    }
}

/// One usage record: what a lease had of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageRecordRow {
    pub id: i64,
    pub lease_id: LeaseId,
    pub node_id: NodeId,
    pub user: String,
    pub project: Option<String>,
    pub node: String,
    pub site: String,
    pub cluster: String,
    pub gpu_model: Option<String>,
    pub gpu_count: i64,
    pub lease_type: LeaseType,
    pub reserved_start: Seconds,
    pub reserved_end: Seconds,
    pub start: Seconds,
    pub end: Seconds,
    pub recorded_at: Seconds,
}

/// A node a lease took (`nodes.lease_id`), with what a usage record keeps
/// of it: the row both stores read to record a lease's use when it ends,
/// and to count a running lease's use.
#[derive(Clone, Debug)]
pub struct HoldingRow {
    pub lease_id: LeaseId,
    pub node_id: NodeId,
    pub user: String,
    pub project: Option<String>,
    pub node: String,
    pub site: String,
    pub cluster: String,
    /// The node's `gpu_model` and `gpu_count` properties, when set.
    pub gpu_model: Option<serde_json::Value>,
    pub gpu_count: Option<serde_json::Value>,
    pub lease_type: LeaseType,
    pub reserved_start: Seconds,
    pub reserved_end: Seconds,
    pub started_at: Option<Seconds>,
}

impl HoldingRow {
    /// The usage record of this holding at `now` (id 0: not stored yet),
    /// or `None` when its use has not begun. The rules are
    /// [`usage::used_span`](ferrum_model::usage::used_span) and
    /// [`usage::node_gpus`](ferrum_model::usage::node_gpus).
    pub fn record_at(&self, now: Seconds) -> Option<UsageRecordRow> {
        let (start, end) = ferrum_model::usage::used_span((self.reserved_start, self.reserved_end), self.started_at, now)?;
        let (gpu_model, gpu_count) = ferrum_model::usage::node_gpus(self.gpu_model.as_ref(), self.gpu_count.as_ref());
        Some(UsageRecordRow {
            id: 0,
            lease_id: self.lease_id,
            node_id: self.node_id,
            user: self.user.clone(),
            project: self.project.clone(),
            node: self.node.clone(),
            site: self.site.clone(),
            cluster: self.cluster.clone(),
            gpu_model,
            gpu_count,
            lease_type: self.lease_type,
            reserved_start: self.reserved_start,
            reserved_end: self.reserved_end,
            start,
            end,
            recorded_at: now,
        })
    }
}

/// A JSON value stored as text (a property read with SQLite's `->` or
/// PostgreSQL's `->`), or `Corrupt` naming `what`.
pub fn json_value(text: Option<&str>, what: &str) -> DbResult<Option<serde_json::Value>> {
    text.map(|t| serde_json::from_str(t).map_err(|_| DbError::Corrupt(format!("{what} is not JSON")))).transpose()
}

impl UsageRecordRow {
    /// What the record counts in usage sums and rollups.
    pub fn as_use(&self) -> ferrum_model::usage::RecordUse<'_> {
        ferrum_model::usage::RecordUse {
            user: &self.user,
            project: self.project.as_deref(),
            cluster: &self.cluster,
            gpu_model: self.gpu_model.as_deref(),
            gpu_count: self.gpu_count,
            start: self.start,
            end: self.end,
        }
    }
}

/// Which records a usage query reads.
#[derive(Clone, Debug)]
pub struct UsageScope {
    pub from: Seconds,
    pub to: Seconds,
    /// Only these projects (`None`: every record, operator leases
    /// included).
    pub projects: Option<Vec<String>>,
}

/// The right to run the background loops (clock, power, operations): held
/// by exactly one replica at a time.
#[async_trait]
pub trait Leadership: Send {
    /// Whether it is still held (PostgreSQL: the connection holding the
    /// advisory lock still answers). `false` means: stop the loops now.
    async fn holds(&mut self) -> bool;
}

/// Held while a replica plans a calendar change and writes it; dropping it
/// lets the next planner in (PostgreSQL: a transaction holding an advisory
/// transaction lock, rolled back on drop).
pub struct PlanningLock(pub Box<dyn Send>);

impl std::fmt::Debug for PlanningLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlanningLock")
    }
}

/// The datastore: every part below, implemented by each database backend
/// (SQLite, PostgreSQL); the application holds it as `Arc<dyn Datastore>`.
///
/// The store is cut by resource: one trait per part, each implemented by
/// every backend in its own module (`store-sqlite/src/<part>.rs`,
/// `store-postgres/src/<part>.rs`). Rules that are not SQL live above the
/// stores (`ferrum-model`), written once.
pub trait Datastore:
    ReplicaStore
    + AccountStore
    + NodeStore
    + LeaseStore
    + OperationStore
    + PowerStore
    + AgentStore
    + UsageStore
    + EnvironmentStore
    + WebStore
    + NotificationStore
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<T> Datastore for T where
    T: ReplicaStore
        + AccountStore
        + NodeStore
        + LeaseStore
        + OperationStore
        + PowerStore
        + AgentStore
        + UsageStore
        + EnvironmentStore
        + WebStore
        + NotificationStore
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// A user about to sign in: their password's hash (argon2id, PHC string;
/// `None` until they set one through an activation link).
#[derive(Clone)]
pub struct LoginRow {
    pub user_id: UserId,
    pub password_hash: Option<String>,
    pub disabled: bool,
}

impl std::fmt::Debug for LoginRow {
    /// The hash stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRow").field("user_id", &self.user_id).field("disabled", &self.disabled).finish_non_exhaustive()
    }
}

/// A live browser session and its user (never a disabled one).
#[derive(Clone, Debug)]
pub struct SessionRow {
    pub id: i64,
    pub user_id: UserId,
    pub name: String,
    pub is_admin: bool,
    pub projects: Vec<(ProjectId, String)>,
    /// The session's anti-forgery token, which every form it posts carries.
    pub csrf: String,
    pub expires_at: Seconds,
    /// How many of the user's notifications are unread (the navigation
    /// shows it; read with the session, no query of its own).
    pub unread: i64,
}

/// An SSH public key a user registered.
#[derive(Clone, Debug)]
pub struct SshKeyRow {
    pub id: i64,
    pub user_id: UserId,
    pub name: Option<String>,
    /// One line, `type base64 [comment]`.
    pub public_key: String,
    /// `SHA256:...`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    pub created_at: Seconds,
}

/// The web portal's state: passwords, one-time activation links, browser
/// sessions and users' SSH keys. Secrets (link and session tokens) are
/// stored as their SHA-256 only.
#[async_trait]
pub trait WebStore: Send + Sync {
    /// Records a one-time activation link for `user` (its token's hash);
    /// the user's earlier unused links stop working.
    async fn insert_activation(&self, user: UserId, token_sha256: &str, now: Seconds, expires_at: Seconds) -> DbResult<()>;

    /// The user a link opens, while it is unused and unexpired (and the
    /// user not disabled).
    async fn activation_user(&self, token_sha256: &str, now: Seconds) -> DbResult<Option<UserRow>>;

    /// Sets the password of the link's user and spends the link, in one
    /// transaction; the user's sessions end. `None` when the link is
    /// unknown, spent or expired.
    async fn use_activation(&self, token_sha256: &str, password_hash: &str, now: Seconds) -> DbResult<Option<UserId>>;

    /// The user `name` as sign-in needs them; `None` for no such user.
    async fn login_user(&self, name: &str) -> DbResult<Option<LoginRow>>;

    /// Opens a session (its token's hash) for `user`.
    async fn insert_session(&self, user: UserId, token_sha256: &str, csrf: &str, now: Seconds, expires_at: Seconds) -> DbResult<()>;

    /// The live session of a token (unexpired, its user not disabled).
    async fn session(&self, token_sha256: &str, now: Seconds) -> DbResult<Option<SessionRow>>;

    /// Ends a session; ending an unknown one is not an error.
    async fn delete_session(&self, token_sha256: &str) -> DbResult<()>;

    /// Registers a key; a key with the same fingerprint already there is
    /// `AlreadyExists`.
    async fn add_ssh_key(&self, user: UserId, name: Option<&str>, public_key: &str, fingerprint: &str, now: Seconds)
    -> DbResult<SshKeyRow>;

    /// A user's keys, oldest first.
    async fn ssh_keys(&self, user: UserId) -> DbResult<Vec<SshKeyRow>>;

    /// Removes one of the user's keys; `false` when they have no such key.
    async fn delete_ssh_key(&self, user: UserId, id: i64) -> DbResult<bool>;
}

/// A notification to record (see [`NotificationStore`]).
#[derive(Clone, Debug)]
pub struct NewNotification {
    pub user_id: UserId,
    pub lease: LeaseId,
    pub kind: NotificationKind,
    /// Which event of the kind: a deployment's id, the lease end a
    /// reminder is for, 0 for an event a lease has once.
    pub about: i64,
    /// One line.
    pub subject: String,
    /// Plain text, without greeting or link.
    pub body: String,
    pub created_at: Seconds,
}

/// A recorded notification.
#[derive(Clone, Debug)]
pub struct NotificationRow {
    pub id: i64,
    pub user_id: UserId,
    pub lease: LeaseId,
    pub kind: NotificationKind,
    pub subject: String,
    pub body: String,
    pub created_at: Seconds,
    /// When its user marked it read.
    pub read_at: Option<Seconds>,
}

/// What users are told of their leases and deployments (the portal's list,
/// the mail sent once). An event is recorded once: its key (user, lease,
/// kind, `about`) is unique, and recording it again changes nothing.
#[async_trait]
pub trait NotificationStore: Send + Sync {
    /// Records a notification unless the same event is recorded already;
    /// whether this call recorded it (then, and only then, it is mailed).
    async fn insert_notification(&self, n: &NewNotification) -> DbResult<bool>;

    /// A user's notifications, newest first, at most `limit`.
    async fn notifications(&self, user: UserId, limit: i64) -> DbResult<Vec<NotificationRow>>;

    /// Marks all of a user's unread notifications read; how many.
    async fn mark_notifications_read(&self, user: UserId, now: Seconds) -> DbResult<u64>;

    /// Active leases longer than `before` that end in `(now, now + before]`
    /// and whose owner was not yet reminded of that end.
    async fn leases_to_remind(&self, now: Seconds, before: Seconds) -> DbResult<Vec<LeaseId>>;

    /// The earliest end after `now + before` of an active lease longer than
    /// `before`: `before` ahead of it, a reminder is due.
    async fn next_reminder_end(&self, now: Seconds, before: Seconds) -> DbResult<Option<Seconds>>;
}

/// What replicas share: leadership, change notifications, the planners' lock, the read generation.
#[async_trait]
pub trait ReplicaStore: Send + Sync {
    /// Tries to become the replica that runs the background loops; `None`
    /// while another replica holds it.
    async fn try_lead(&self) -> DbResult<Option<Box<dyn Leadership>>>;

    /// Names of the tables other processes changed, as they commit
    /// (PostgreSQL: LISTEN/NOTIFY), so that this replica's loops and long
    /// polls wake up; `None` for a store only one process writes.
    async fn listen_changes(&self) -> DbResult<Option<tokio::sync::mpsc::Receiver<String>>>;

    /// Serialises calendar planning across replicas: a replica that plans
    /// on its cache and then writes can always lose the race to another
    /// replica's write (the write is then refused as stale and planned
    /// again); under load that retry can lose every time. Planners holding
    /// this lock never race each other. `None` where one process writes
    /// (its in-process calendar lock suffices).
    async fn planning_lock(&self) -> DbResult<Option<PlanningLock>>;

    /// A number that moves after every commit this process can see, or
    /// `None` where the store cannot tell (PostgreSQL: other replicas commit
    /// too). The read caches (`app::reads`) keep an answer only while this
    /// is `Some` and has not moved since before the answer was read.
    fn read_generation(&self) -> Option<u64> {
        None
    }
}

/// Users, tokens, projects, account requests and the audit log.
#[async_trait]
pub trait AccountStore: Send + Sync {
    async fn count_users(&self) -> DbResult<i64>;

    async fn create_project(&self, name: &str, class: Option<&str>, quota: Option<i64>, now: Seconds) -> DbResult<ProjectRow>;

    async fn list_projects(&self) -> DbResult<Vec<ProjectRow>>;

    /// Creates a user in the named projects (which must exist) with a first
    /// token (its SHA-256).
    async fn create_user(
        &self,
        name: &str,
        is_admin: bool,
        email: Option<&str>,
        projects: &[String],
        token_sha256: &str,
        now: Seconds,
    ) -> DbResult<UserRow>;

    async fn list_users(&self) -> DbResult<Vec<UserRow>>;

    async fn get_user(&self, name: &str) -> DbResult<UserRow>;

    /// Adds a token unless the user holds `max_live` live tokens already
    /// (not revoked, not expired at `now`): then `None`. Counted and written
    /// in one transaction, the user's row locked, so two creations cannot
    /// both pass the cap.
    async fn add_token(&self, user: UserId, token: &NewToken, now: Seconds, max_live: i64) -> DbResult<Option<TokenRow>>;

    /// The user's tokens not revoked (expired ones included), oldest first.
    async fn list_tokens(&self, user: UserId) -> DbResult<Vec<TokenRow>>;

    /// Revokes one of the user's tokens; `false` when the user has no such
    /// token not yet revoked.
    async fn revoke_token(&self, user: UserId, id: i64, now: Seconds) -> DbResult<bool>;

    /// The user of a token not revoked, unless the user is disabled
    /// (expiry is the caller's to check: the answer may be cached).
    async fn actor_by_token(&self, token_sha256: &str) -> DbResult<Option<ActorRow>>;

    /// Disables a user (`Some`) or enables them again (`None`).
    async fn set_user_disabled(&self, name: &str, disabled: Option<&Disabled>) -> DbResult<UserRow>;

    /// Stores a pending request; `AlreadyExists` when the login is taken
    /// or already asked for.
    async fn insert_account_request(&self, request: &NewAccountRequest) -> DbResult<AccountRequestRow>;

    async fn count_pending_account_requests(&self) -> DbResult<i64>;

    async fn account_requests(&self, state: Option<AccountRequestState>) -> DbResult<Vec<AccountRequestRow>>;

    async fn account_request(&self, id: i64) -> DbResult<AccountRequestRow>;

    /// In one transaction: the request moves from pending to approved, the
    /// project is created if it does not exist (the requester as manager),
    /// the user is created in it with a first token.
    async fn approve_account_request(&self, id: i64, approval: &Approval) -> DbResult<(AccountRequestRow, UserRow)>;

    async fn reject_account_request(&self, id: i64, decided_by: &str, reason: &str, at: Seconds) -> DbResult<AccountRequestRow>;

    /// Marks the e-mail address of the request whose check token this is
    /// verified (the token then stops working); `None` for an unknown or
    /// spent token.
    async fn verify_account_email(&self, token_sha256: &str, now: Seconds) -> DbResult<Option<AccountRequestRow>>;

    async fn update_project(&self, name: &str, change: &ProjectChange) -> DbResult<ProjectRow>;

    async fn set_project_member(&self, project: &str, user: &str, member: bool) -> DbResult<ProjectRow>;

    /// Appends one entry to the audit log.
    /// The account requests that made `user` (those linked to the user at
    /// approval), oldest first.
    async fn user_account_requests(&self, user: UserId) -> DbResult<Vec<AccountRequestRow>>;
    /// Every usage record of the user named `name`, oldest first.
    async fn user_usage_records(&self, name: &str) -> DbResult<Vec<UsageRecordRow>>;
    /// Erases a user's personal data in one transaction (see [`Erasure`]
    /// and README "Personal data" for what it rewrites). A user who holds
    /// a lease not over is refused (`Raced`): the caller checked before.
    async fn erase_user(&self, erasure: &Erasure) -> DbResult<()>;
    async fn insert_audit(&self, at: Seconds, actor: &str, action: &str, target: &str, detail: &str) -> DbResult<()>;

    async fn audit_log(&self, filter: &AuditFilter) -> DbResult<Vec<AuditRow>>;
}

/// The inventory: nodes, their import, policy, transitions and events.
#[async_trait]
pub trait NodeStore: Send + Sync {
    async fn insert_node(&self, node: &NodeWrite, event: &NewEvent) -> DbResult<NodeRow>;

    /// Adds or updates many nodes in one transaction, as
    /// [`import_action`](ferrum_model::import::import_action) decides; a
    /// node added is recorded with the event `added`, whose time is also
    /// the updated nodes'.
    async fn import_nodes(&self, nodes: &[NodeWrite], added: &NewEvent) -> DbResult<ImportOutcome>;

    async fn list_nodes(&self) -> DbResult<Vec<NodeRow>>;

    /// Every node's lifecycle state, without properties.
    async fn node_statuses(&self) -> DbResult<Vec<NodeStatus>>;

    async fn get_node_by_id(&self, id: NodeId) -> DbResult<NodeRow>;

    async fn get_node(&self, name: &str) -> DbResult<NodeRow>;

    async fn node_reference(&self, id: NodeId) -> DbResult<Option<String>>;

    /// Each node of one cluster of one site with its reference description
    /// (JSON text, `None` for a node enrolled without one), by id: the
    /// Grid'5000 API's cluster node list in one query.
    async fn cluster_references(&self, site: &str, cluster: &str) -> DbResult<Vec<(NodeId, Option<String>)>>;

    async fn set_node_policy(&self, id: NodeId, policy: NodePolicy, event: &NewEvent) -> DbResult<()>;

    /// Applies node transitions (compare-and-swap each); returns how many
    /// applied. A node whose state moved on is skipped, not an error.
    async fn transition_nodes(&self, transitions: &[NodeTransition]) -> DbResult<usize>;

    async fn node_events(&self, id: NodeId) -> DbResult<Vec<NodeEventRow>>;

    async fn count_nodes_by_state(&self) -> DbResult<Vec<(String, String, i64)>>;

    /// Whether the node was handed to a lease and not reset clean since.
    async fn needs_reset(&self, node: NodeId) -> DbResult<bool>;
}

/// Leases and the calendar: allocations, generations, transitions.
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// (calendar generation, nodes generation), read together. The nodes
    /// generation moves when what placement reads of a node changes.
    async fn generations(&self) -> DbResult<(i64, i64)>;

    async fn calendar_generation(&self) -> DbResult<i64>;

    /// Every allocation row ending after `after`, with the generation they
    /// were read at (one snapshot).
    async fn allocations_after(&self, after: Seconds) -> DbResult<(i64, Vec<AllocationRow>)>;

    /// Inserts a lease and its allocation, first applying `preempt`, if the
    /// calendar is still at `expected_generation`. Returns the lease and the
    /// new generation.
    async fn insert_lease(&self, lease: &NewLease, preempt: &[Preemption], expected_generation: i64) -> DbResult<(LeaseRow, i64)>;

    async fn get_lease(&self, id: LeaseId) -> DbResult<LeaseRow>;

    /// Leases, newest first; `owner` limits to one user's, `include_over`
    /// adds terminal ones.
    async fn list_leases(&self, owner: Option<UserId>, include_over: bool) -> DbResult<Vec<LeaseRow>>;

    /// Moves a lease's end (extension) if the calendar is still at
    /// `expected_generation`.
    async fn set_lease_end(
        &self,
        id: LeaseId,
        end: Seconds,
        preempt: &[Preemption],
        expected_generation: i64,
        now: Seconds,
    ) -> DbResult<i64>;

    /// Compare-and-swap of a lease's state, with the allocation change the
    /// transition implies. Returns the new calendar generation.
    /// `expected_generation` is checked when the change touches the
    /// calendar (not for `Keep`).
    #[allow(clippy::too_many_arguments, reason = "one compare-and-swap; a struct would only rename the arguments")]
    async fn transition_lease(
        &self,
        id: LeaseId,
        from: LeaseState,
        to: LeaseState,
        change: AllocationChange,
        reason: Option<&str>,
        expected_generation: i64,
        now: Seconds,
    ) -> DbResult<i64>;

    /// Leases the clock loop must look at: pending ones due by `now`,
    /// active ones past their end, and every starting or ending one.
    async fn leases_needing_action(&self, now: Seconds) -> DbResult<Vec<LeaseRow>>;

    /// (node, lease) pairs: the starting or active lease holding each node
    /// at `now`.
    async fn held_nodes(&self, now: Seconds) -> DbResult<Vec<(NodeId, LeaseId)>>;

    /// The next time after `now` at which a lease starts or ends.
    async fn next_lease_event(&self, now: Seconds) -> DbResult<Option<Seconds>>;

    /// Besteffort allocations on these nodes that overlap `[start, end)`.
    async fn besteffort_overlapping(&self, nodes: &[NodeId], start: Seconds, end: Seconds) -> DbResult<Vec<AllocationRow>>;

    async fn busy_between(&self, from: Seconds, to: Seconds) -> DbResult<Vec<BusyRow>>;

    async fn count_leases_by_state(&self) -> DbResult<Vec<(String, i64)>>;

    /// Records what the Grid'5000 API keeps of a job beyond its lease.
    async fn insert_job(&self, job: &JobRow) -> DbResult<()>;

    /// The job row of a lease, if it was created through the Grid'5000 API.
    async fn job(&self, lease: LeaseId) -> DbResult<Option<JobRow>>;
}

/// Deployments and node operations (the operations engine's rows), and the SSH host keys they
/// record.
#[async_trait]
pub trait OperationStore: Send + Sync {
    /// Inserts a deployment and one running operation per node in one
    /// transaction; `Raced` when a node already has a running operation.
    async fn insert_deployment(&self, deployment: &NewDeployment, operations: &[NewOperation]) -> DbResult<i64>;

    async fn deployment(&self, id: i64) -> DbResult<(DeploymentRow, Vec<OperationRow>)>;

    async fn lease_deployments(&self, lease: LeaseId) -> DbResult<Vec<DeploymentRow>>;

    /// A deployment's spec (JSON), without its operations.
    async fn deployment_spec(&self, id: i64) -> DbResult<String>;

    /// Active deploy leases that asked for an environment and have no
    /// deployment yet.
    async fn deploy_leases_without_deployment(&self) -> DbResult<Vec<LeaseId>>;

    /// Inserts a running operation; `Raced` when the node already has one.
    async fn insert_operation(&self, operation: &NewOperation) -> DbResult<i64>;

    async fn running_operations(&self) -> DbResult<Vec<OperationRow>>;

    async fn operation(&self, id: i64) -> DbResult<OperationRow>;

    /// The newest operation of `kind` on `node`.
    async fn latest_operation(&self, node: NodeId, kind: OperationKind) -> DbResult<Option<OperationRow>>;

    /// Writes an operation's mutable columns if it is still running at
    /// `row.version` (`false` otherwise), and bumps the version.
    async fn update_operation(&self, row: &OperationRow) -> DbResult<bool>;

    async fn set_ssh_host_key(&self, node: NodeId, key: Option<&str>) -> DbResult<()>;

    async fn ssh_host_key(&self, node: NodeId) -> DbResult<Option<String>>;
}

/// The power request queue and the power states BMCs reported.
#[async_trait]
pub trait PowerStore: Send + Sync {
    async fn enqueue_power(&self, node: NodeId, operation: PowerOperation, actor: &str, now: Seconds) -> DbResult<i64>;

    async fn power_request(&self, id: i64) -> DbResult<PowerRequestRow>;

    /// Requests not finished (queued, or running when a controller died),
    /// oldest first.
    async fn pending_power_requests(&self) -> DbResult<Vec<PowerRequestRow>>;

    async fn set_power_request_running(&self, id: i64) -> DbResult<()>;

    async fn finish_power_request(&self, id: i64, error: Option<&str>, now: Seconds) -> DbResult<()>;

    /// Fails a request that has not started (`false`: it ran or runs).
    async fn cancel_power_request(&self, id: i64, reason: &str, now: Seconds) -> DbResult<bool>;

    /// Fails every request of `node` that has not started; how many.
    async fn cancel_queued_power(&self, node: NodeId, reason: &str, now: Seconds) -> DbResult<u64>;

    /// Records what a BMC said about a node's power.
    async fn record_power(&self, node: NodeId, state: &str, source: &str, now: Seconds) -> DbResult<()>;
}

/// The boot network's view (hosts, boot targets, boot-service tokens) and the agent protocol: one-
/// time tokens, sessions, inventories, commands.
#[async_trait]
pub trait AgentStore: Send + Sync {
    /// Every MAC of every node, with what the boot services need.
    async fn boot_hosts(&self) -> DbResult<Vec<BootHostRow>>;

    /// The node owning `mac` (lowercase, colon-separated), if any.
    async fn boot_host(&self, mac: &str) -> DbResult<Option<BootHostRow>>;

    async fn set_boot_target(&self, node: NodeId, target: BootTarget) -> DbResult<()>;

    /// Stores a new one-time agent token (its SHA-256) for `node`, bound to
    /// the address `bound_ip` (registration must come from it); drops the
    /// node's expired tokens and its unused ones beyond the newest `keep`
    /// (a token an agent registered with is used, so never dropped here).
    async fn mint_agent_token(
        &self,
        node: NodeId,
        token_sha256: &str,
        bound_ip: &str,
        keep: u32,
        now: Seconds,
        expires_at: Seconds,
    ) -> DbResult<()>;

    /// Stores a boot-service token's SHA-256 (`ferrum admin boot-token`).
    async fn add_boot_token(&self, token_sha256: &str, created_by: &str, now: Seconds) -> DbResult<()>;

    /// Whether `token_sha256` is a boot-service token's.
    async fn is_boot_token(&self, token_sha256: &str) -> DbResult<bool>;

    /// Consumes a one-time agent token of the node named `node`: `Some` when
    /// it existed, was bound to `peer_ip`, unused and unexpired (it is now
    /// used).
    async fn consume_agent_token(&self, token_sha256: &str, node: &str, peer_ip: &str, now: Seconds) -> DbResult<Option<NodeId>>;

    /// Opens a session: bumps the node's agent generation, replaces its
    /// sessions, and returns the new generation.
    async fn open_agent_session(&self, node: NodeId, session_sha256: &str, now: Seconds, expires_at: Seconds) -> DbResult<i64>;

    async fn agent_session(&self, session_sha256: &str, now: Seconds) -> DbResult<Option<AgentSessionRow>>;

    /// Stores a report unless a newer generation's is already there
    /// (`false` then).
    async fn store_inventory(&self, node: NodeId, generation: i64, report: &str, now: Seconds) -> DbResult<bool>;

    async fn node_inventory(&self, node: NodeId) -> DbResult<Option<InventoryRow>>;

    async fn enqueue_agent_command(&self, node: NodeId, action: &str, actor: &str, now: Seconds) -> DbResult<AgentCommandRow>;

    /// The oldest unfinished command of the node, marked sent to
    /// `generation`; `None` when there is none or when `generation` is not
    /// the node's newest agent (checked in the same transaction).
    async fn next_agent_command(&self, node: NodeId, generation: i64, now: Seconds) -> DbResult<Option<AgentCommandRow>>;

    /// Progress of a command sent to `generation` (`false`: no such command there).
    async fn agent_command_progress(
        &self,
        id: i64,
        node: NodeId,
        generation: i64,
        done: i64,
        total: Option<i64>,
        now: Seconds,
    ) -> DbResult<bool>;

    /// Finishes a command sent to `generation` (`false`: no such command there).
    async fn finish_agent_command(&self, id: i64, node: NodeId, generation: i64, error: Option<&str>, now: Seconds) -> DbResult<bool>;

    async fn agent_commands(&self, node: NodeId) -> DbResult<Vec<AgentCommandRow>>;

    /// Fails a node's unfinished agent commands (a new operation starts
    /// from a clean queue); returns how many.
    async fn cancel_agent_commands(&self, node: NodeId, reason: &str, now: Seconds) -> DbResult<u64>;

    async fn agent_command_row(&self, id: i64) -> DbResult<AgentCommandRow>;

    /// The node's newest agent generation (0 before any registration).
    async fn agent_generation(&self, node: NodeId) -> DbResult<i64>;
}

/// Usage records and their totals, and the quota's count of booked node-seconds.
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Appends usage records (ids are assigned; the given ones are ignored)
    /// and adds them to the monthly rollups, in one transaction. The lease
    /// transitions write their own records; this is for imports and
    /// benchmarks.
    async fn insert_usage_records(&self, records: &[UsageRecordRow]) -> DbResult<()>;

    /// Node-seconds and GPU-seconds per key of `dimension` in the rollups
    /// of the months `[months.0, months.1)`, of the scope's projects.
    async fn usage_rollup_sums(
        &self,
        dimension: ferrum_model::usage::Dimension,
        months: (Seconds, Seconds),
        projects: Option<&[String]>,
    ) -> DbResult<Vec<ferrum_model::usage::Total>>;

    /// Node-seconds and GPU-seconds per key of `dimension` of the records
    /// of the scope's projects, each clipped to `stretch` (summed by the
    /// database over its covering index; the clip is `usage::clipped`).
    async fn usage_record_sums(
        &self,
        dimension: ferrum_model::usage::Dimension,
        stretch: (Seconds, Seconds),
        projects: Option<&[String]>,
    ) -> DbResult<Vec<ferrum_model::usage::Total>>;

    /// The nodes running leases (`starting`, `active`) hold now, as usage
    /// sees them.
    async fn running_holdings(&self) -> DbResult<Vec<HoldingRow>>;

    /// The records overlapping the scope's window, by id, after `after_id`.
    async fn usage_records(&self, scope: &UsageScope, after_id: i64, limit: i64) -> DbResult<Vec<UsageRecordRow>>;

    /// Node-seconds a project holds on the calendar within `[from, to)`
    /// (leases that hold or held their slot, or wait for approval;
    /// besteffort leases and `except` excluded): what its quota counts.
    async fn project_booked_seconds(&self, project: ProjectId, from: Seconds, to: Seconds, except: Option<LeaseId>) -> DbResult<i64>;
}

/// The environment catalog.
#[async_trait]
pub trait EnvironmentStore: Send + Sync {
    async fn insert_environment(
        &self,
        name: &str,
        version: i64,
        descriptor: &str,
        visibility: &str,
        owner: UserId,
        now: Seconds,
    ) -> DbResult<i64>;

    /// Every version of every environment (the application filters what a
    /// caller may see).
    async fn list_environments(&self) -> DbResult<Vec<EnvironmentRow>>;
}
