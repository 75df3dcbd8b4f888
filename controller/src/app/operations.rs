//! The operations engine: deployments (SPEC §5) and resets (SPEC §6), one
//! operation per node, carried out phase by phase by a level-triggered
//! loop.
//!
//! Every operation lives in the database (`node_operations`): its phase,
//! what the phase waits on (power requests, an agent generation, an agent
//! command) and its deadline. A step reads the operation and the world,
//! and either waits, moves to the next phase, retries (power-cycles again)
//! or finishes; it writes with compare-and-swap on (phase, attempt). A
//! phase's actions run at its first step and are recorded in its data, so
//! a controller killed at any point resumes each operation where it stood
//! (at worst repeating one idempotent action), and a phase past its
//! deadline retries or fails: no node stays in a transitional state.
//!
//! Each kind's phases are one table, in order (`DEPLOY`, `RESET`): what a
//! phase does and waits on, its deadline, whether it only waits (judged
//! late from its first step); a reset's restore of its default
//! environment is the rows marked `restore`. A step says only that its
//! phase is done (`Next::Advance`, or `Next::Restore`); the table names the
//! next. A phase's data is what it waits on (`Waiting`, which each phase
//! starts afresh) and what the operation carries to its end (`Carried`),
//! stored side by side as one JSON object; data that does not read fails
//! the operation, it is never read as empty.
//!
//! Owns: the phases and their order, deadlines, retries, the node
//! transitions a deploy makes (`deploying` → `deployed`, or back to
//! `reserved`), and the reset's verdict (clean, mismatch, BMC failure),
//! which the clock loop turns into the node's state. Acts only through the
//! power request queue (BMCs), the boot target (iPXE), agent commands and
//! the SSH check; never talks to a BMC or an agent itself.

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrum_api::agent::AgentAction;
use ferrum_api::deployment::{self as api, Deployment, DeploymentState, NodeOperation, PhaseTime};
use ferrum_api::environment::{Environment, EnvironmentBoot};
use ferrum_api::inventory::InventoryReport;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::accounts::Actor;
use super::conductor::CheckOutcome;
use super::{App, AppError, AppResult};
use crate::db::{DbError, DeploymentRow, LeaseRow, NewDeployment, NewOperation, NodeRow, NodeStatus, OperationRow};
use crate::model::time::from_seconds;
use crate::model::{
    AgentCommandState, BootTarget, LeaseId, LeaseState, NodeId, NodeInput, NodeLifecycle, OperationInput, OperationKind, OperationState,
    Phase, PowerOperation, PowerRequestState, ProjectId, ResetOutcome,
};
use crate::power::{BootDevice, PowerAction};

/// How often running operations are looked at when nothing woke the loop.
const TICK: Duration = Duration::from_secs(1);
/// One SSH attempt (the phase's deadline bounds them all).
const SSH_ATTEMPT: Duration = Duration::from_secs(10);
/// Operation steps running at once.
const MAX_CONCURRENT_STEPS: usize = 32;
/// The TCP knock on port 22 before an attempt.
const SSH_KNOCK: Duration = Duration::from_millis(800);
/// A `deploying` node with no running deploy older than this is given back
/// to its lease (a controller died between the two writes).
const ORPHAN_GRACE_S: i64 = 60;

/// The deploy's phases, in order (SPEC §5). Its last phase finishes it
/// (node `deployed`); a retry starts again from its first.
const DEPLOY: &[PhaseSpec] = &[
    PhaseSpec::acts(Phase::BootRamdisk, Deadline::Power, "boot target ramdisk; BMC: boot device PXE, power cycle"),
    PhaseSpec::waits(Phase::WaitAgent, Deadline::Boot, "a newer agent generation reports its inventory; its first disk is written"),
    PhaseSpec::acts(Phase::WriteImage, Deadline::Write, "agent: write the environment's image to that disk"),
    PhaseSpec::acts(Phase::InstallKeys, Deadline::Write, "agent: root's keys (the user's and the controller's), the hostname"),
    PhaseSpec::acts(Phase::BootSystem, Deadline::Ssh, "boot target local; agent: reboot, or kexec the written system"),
    PhaseSpec::waits(Phase::SshCheck, Deadline::Ssh, "root SSH login with the controller's key runs the check; host key kept"),
];

/// The reset's phases, in order (SPEC §6). Its last phase finishes it with
/// its verdict; a retry starts again from its first.
const RESET: &[PhaseSpec] = &[
    PhaseSpec::acts(Phase::PowerOff, Deadline::Power, "agent commands dropped; BMC: power off"),
    PhaseSpec::acts(Phase::BootRamdisk, Deadline::Power, "boot target ramdisk; BMC: boot device PXE, power on"),
    PhaseSpec::waits(Phase::WaitAgent, Deadline::Boot, "a newer agent generation reports its inventory; all its disks are wiped"),
    PhaseSpec::acts(Phase::Wipe, Deadline::Write, "agent: wipe the disks (`reset.secure_wipe`)"),
    PhaseSpec::acts(Phase::Inventory, Deadline::Write, "agent: inventory; the verdict; a clean node restores `reset.default_environment`"),
    PhaseSpec::acts(Phase::WriteImage, Deadline::Write, "agent: write the default environment to the first disk").restore(),
    PhaseSpec::acts(Phase::InstallKeys, Deadline::Write, "agent: the controller's key, the hostname").restore(),
    PhaseSpec::acts(Phase::Shutdown, Deadline::Power, "boot target local; BMC: power off (`reset.power_off`), else boot a restored disk"),
];

/// A reset's last power sequence (`shutdown`): the node off when
/// `reset.power_off`, else the restored system booted, else none (the node
/// stays in the ramdisk).
fn shutdown_power(power_off: bool, restored: bool) -> &'static [PowerOperation] {
    const OFF: &[PowerOperation] = &[PowerOperation::Power(PowerAction::Off)];
    const BOOT_DISK: &[PowerOperation] = &[PowerOperation::Boot(BootDevice::Disk), PowerOperation::Power(PowerAction::Cycle)];
    match (power_off, restored) {
        (true, _) => OFF,
        (false, true) => BOOT_DISK,
        (false, false) => &[],
    }
}

/// One phase of a sequence: what it does and waits on (for a reader and
/// the log; [`App::deploy_step`] and [`App::reset_step`] do it), its
/// deadline, and how its lateness is judged.
#[derive(Debug)]
struct PhaseSpec {
    phase: Phase,
    deadline: Deadline,
    /// It issues nothing, only waits (for the agent, for SSH): it is judged
    /// against its deadline from its first step. A phase that issues
    /// actions is judged only once they ran, so a controller back from a
    /// long stop gives them their chance.
    only_waits: bool,
    /// Part of a reset's restore of its default environment: entered only
    /// when the phase before it says so ([`Next::Restore`]).
    restore: bool,
    does: &'static str,
}

impl PhaseSpec {
    const fn acts(phase: Phase, deadline: Deadline, does: &'static str) -> PhaseSpec {
        PhaseSpec { phase, deadline, only_waits: false, restore: false, does }
    }

    const fn waits(phase: Phase, deadline: Deadline, does: &'static str) -> PhaseSpec {
        PhaseSpec { phase, deadline, only_waits: true, restore: false, does }
    }

    const fn restore(self) -> PhaseSpec {
        PhaseSpec { restore: true, ..self }
    }
}

/// Which `[deploy]` timeout bounds a phase.
#[derive(Clone, Copy, Debug)]
enum Deadline {
    /// `power_timeout`: the BMC runs the phase's power requests.
    Power,
    /// `boot_timeout`: the node boots the ramdisk and its agent reports.
    Boot,
    /// `write_timeout`: an agent command (write, keys, wipe, inventory).
    Write,
    /// `ssh_timeout`: the written system boots and answers SSH.
    Ssh,
}

/// The phases of a kind of operation, in order.
fn sequence(kind: OperationKind) -> &'static [PhaseSpec] {
    match kind {
        OperationKind::Deploy => DEPLOY,
        OperationKind::Reset => RESET,
    }
}

/// The phase an operation (and each of its retries) starts with.
fn first_phase(kind: OperationKind) -> &'static PhaseSpec {
    &sequence(kind)[0]
}

/// `phase` in its kind's sequence; `None` when the kind has no such phase.
fn spec_of(kind: OperationKind, phase: Phase) -> Option<&'static PhaseSpec> {
    sequence(kind).iter().find(|s| s.phase == phase)
}

/// The phase after `phase` in its kind's sequence (past the restore
/// phases unless `restore`); `None` after the last.
fn phase_after(kind: OperationKind, phase: Phase, restore: bool) -> Option<&'static PhaseSpec> {
    let table = sequence(kind);
    let at = table.iter().position(|s| s.phase == phase)?;
    table[at + 1..].iter().find(|s| restore || !s.restore)
}

/// A phase's data, stored as the operation's `data`: one JSON object with
/// the fields of both parts side by side (the names they always had). A
/// missing field is its empty value (the stored form leaves them out); a
/// field that does not read is an error (see [`PhaseData::of`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct PhaseData {
    #[serde(flatten)]
    waiting: Waiting,
    #[serde(flatten)]
    carried: Carried,
}

/// What the current phase issued and waits on; a new phase starts with
/// none of it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Waiting {
    /// The phase's actions ran.
    #[serde(default)]
    issued: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    power_requests: Vec<i64>,
    /// The agent generation before the ramdisk boot (`boot_ramdisk` hands
    /// it to `wait_agent`, which waits for a newer one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    command: Option<i64>,
    /// Why the phase has not moved on yet (a step that failed, SSH that
    /// does not answer), or why its attempt began (a retry); shown while
    /// the phase runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
}

/// What the operation learnt and keeps to its end, across phases and
/// retries.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Carried {
    /// The disk written (a deploy, a reset's restore), or the disks wiped
    /// (a reset, comma-separated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device: Option<String>,
    /// The write's agent command (for the bytes shown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    write_command: Option<i64>,
    /// A reset's verdict, from its inventory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verdict: Option<(ResetOutcome, String)>,
    /// The SSH host key's fingerprint (a deploy's check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fingerprint: Option<String>,
    /// A reset: the default environment it restores, resolved once (by
    /// id: a version published meanwhile does not change it mid-way), or
    /// why none is restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    environment: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not_restored: Option<String>,
}

impl PhaseData {
    /// The stored data of an operation. Data that does not read is an
    /// error naming the problem, never empty data: an operation that
    /// forgot what it issued could wait on nothing, or issue it twice.
    fn of(op: &OperationRow) -> Result<PhaseData, String> {
        serde_json::from_str(&op.data).map_err(|e| format!("the operation's phase data cannot be read ({e})"))
    }

    /// The data a new phase starts with: what is carried, nothing waited on.
    fn carry(&self) -> PhaseData {
        PhaseData { waiting: Waiting::default(), carried: self.carried.clone() }
    }
}

/// The environment and keys of a deployment; stored as its `spec`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct DeploySpec {
    environment: Environment,
    ssh_keys: Vec<String>,
}

/// What a step decided.
enum Next {
    /// Nothing changed outside; store the data (if it changed).
    Stay(PhaseData),
    /// The phase is done: on to the next phase of its sequence.
    Advance(PhaseData),
    /// The phase is done and a reset restores its default environment: on
    /// to the next phase, the restore's phases included.
    Restore(PhaseData),
    /// The phase cannot succeed; retry from the first phase if tries are
    /// left, else fail with this message.
    Retry(String),
    /// End it; `data` replaces the operation's data when given.
    Finish { end: OperationInput, message: String, outcome: Option<ResetOutcome>, data: Option<PhaseData> },
}

fn fail(message: impl Into<String>, outcome: Option<ResetOutcome>) -> Next {
    Next::Finish { end: OperationInput::Failed, message: message.into(), outcome, data: None }
}

/// An operation claimed by a step task, released on drop.
struct Claim {
    app: Arc<App>,
    id: i64,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.app.in_flight.release(self.id);
    }
}

/// Operations being stepped right now (a step never overlaps itself), and
/// leases whose automatic deployment failed lately.
#[derive(Debug)]
pub struct InFlight(Mutex<HashSet<i64>>, Mutex<std::collections::HashMap<LeaseId, Instant>>, tokio::sync::Semaphore);

impl Default for InFlight {
    fn default() -> Self {
        InFlight(Mutex::default(), Mutex::default(), tokio::sync::Semaphore::new(MAX_CONCURRENT_STEPS))
    }
}

impl InFlight {
    fn failed_lease_recently(&self, lease: LeaseId) -> bool {
        let failed = self.1.lock().unwrap_or_else(|e| e.into_inner());
        failed.get(&lease).is_some_and(|at| at.elapsed() < Duration::from_secs(60))
    }

    fn lease_failed(&self, lease: LeaseId) {
        let mut failed = self.1.lock().unwrap_or_else(|e| e.into_inner());
        failed.retain(|_, at| at.elapsed() < Duration::from_secs(3600));
        failed.insert(lease, Instant::now());
    }

    fn claim(&self, id: i64) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(id)
    }

    fn release(&self, id: i64) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }
}

impl App {
    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    fn deadline_of(&self, spec: &PhaseSpec) -> Duration {
        let d = &self.config.deploy;
        match spec.deadline {
            Deadline::Power => d.power_timeout,
            Deadline::Boot => d.boot_timeout,
            Deadline::Write => d.write_timeout,
            Deadline::Ssh => d.ssh_timeout,
        }
    }

    fn deadline_ms(&self, spec: &PhaseSpec) -> i64 {
        self.now_ms() + i64::try_from(self.deadline_of(spec).as_millis()).unwrap_or(i64::MAX / 4)
    }

    /// The controller's SSH key, loaded (or created) on first use.
    fn controller_key(&self) -> AppResult<Arc<crate::ssh::ControllerKey>> {
        if let Some(key) = self.ssh_key.get() {
            return Ok(key.clone());
        }
        let key = crate::ssh::ControllerKey::load_or_create(&self.config.ssh_key_path()).map_err(AppError::Internal)?;
        let _ = self.ssh_key.set(Arc::new(key));
        self.ssh_key.get().cloned().ok_or_else(|| AppError::Internal(anyhow::anyhow!("SSH key not set")))
    }

    /// Runs the operations engine until `shutdown` turns true.
    pub async fn run_operations_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.operations_pass().await {
                tracing::error!(error = ?anyhow::Error::from(e), "operations pass failed");
            }
            tokio::select! {
                () = tokio::time::sleep(TICK) => {}
                () = self.ops_wake.notified() => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    /// Starts the deployments that leases asked for, gives back orphaned
    /// `deploying` nodes, and steps every running operation (each in its
    /// own task, never two steps of one operation at once).
    pub async fn operations_pass(self: &Arc<Self>) -> AppResult<()> {
        for lease in self.store.deploy_leases_without_deployment().await? {
            // A lease whose deployment cannot start (its environment is
            // gone, its nodes are unhealthy) is tried again each minute.
            let recently = self.in_flight.failed_lease_recently(lease);
            if recently {
                continue;
            }
            if let Err(e) = self.start_lease_deployment(lease).await {
                tracing::warn!(lease = %lease, error = %e, "the lease's deployment could not start; trying again in a minute");
                self.in_flight.lease_failed(lease);
            }
        }
        let running = self.store.running_operations().await?;
        self.give_back_orphans(&running).await?;
        for op in running {
            if !self.in_flight.claim(op.id) {
                continue;
            }
            let app = self.clone();
            tokio::spawn(async move {
                let id = op.id;
                // Released however the step ends (a panic included).
                let _claim = Claim { app: app.clone(), id };
                // A bounded number of steps at once (a large deployment
                // must not open hundreds of database connections).
                let Ok(_permit) = app.in_flight.2.acquire().await else { return };
                // Read again now that it is ours: the row listed above may
                // predate a step that ended since.
                let op = match app.store.operation(id).await {
                    Ok(op) if op.state == OperationState::Running => op,
                    Ok(_) => return,
                    Err(e) => {
                        return tracing::error!(operation = id, error = ?anyhow::Error::from(AppError::from(e)), "operation unreadable");
                    }
                };
                let span = tracing::info_span!("operation", id, kind = %op.kind, node = %op.node_name, phase = %op.phase);
                if let Err(e) = tracing::Instrument::instrument(app.step(op), span).await {
                    tracing::error!(operation = id, error = ?anyhow::Error::from(e), "operation step failed");
                }
            });
        }
        Ok(())
    }

    /// `deploying` nodes without a running deploy (the controller stopped
    /// between moving the node and recording the operation) go back to
    /// their lease as `reserved`.
    async fn give_back_orphans(&self, running: &[OperationRow]) -> AppResult<()> {
        let busy: HashSet<_> = running.iter().map(|o| o.node).collect();
        let now = self.now();
        for n in self.store.node_statuses().await? {
            if n.state != NodeLifecycle::Deploying || busy.contains(&n.id) {
                continue;
            }
            let row = self.store.get_node_by_id(n.id).await?;
            if now - row.updated_at < ORPHAN_GRACE_S {
                continue;
            }
            // The controller stopped between ending the deploy and moving
            // the node: finish the move the deploy's outcome says.
            let last = self.store.latest_operation(n.id, OperationKind::Deploy).await?.filter(|op| op.lease == n.lease);
            if last.as_ref().is_some_and(|op| op.state == OperationState::Done) {
                self.move_nodes(&[(&n, n.lease)], NodeInput::DeployDone, "system", "deployed (recorded after a controller restart)")
                    .await?;
                continue;
            }
            self.move_nodes(&[(&n, n.lease)], NodeInput::DeployFailed, "system", "no deployment runs on the node (controller restart)")
                .await?;
        }
        Ok(())
    }

    /// The deployment a deploy lease asked for at creation, started once it
    /// is active, on behalf of its owner.
    async fn start_lease_deployment(&self, lease: LeaseId) -> AppResult<i64> {
        let row = self.store.get_lease(lease).await?;
        let spec: ferrum_api::DeploySpec =
            serde_json::from_str(row.deploy.as_deref().unwrap_or("{}")).map_err(|e| AppError::Internal(e.into()))?;
        let owner = self.store.get_user(&row.owner).await?;
        let actor = Actor {
            user_id: owner.id,
            name: owner.name.clone(),
            is_admin: owner.is_admin,
            // Visibility compares project names only.
            projects: owner.projects.iter().map(|p| (ProjectId(0), p.clone())).collect(),
        };
        // The environment was checked at the lease's creation; if its owner
        // can no longer resolve it, the deployment fails now with the
        // reason, once (not a retry each minute that no one sees).
        let environment = match self.get_environment(&actor, &spec.environment, None, None).await {
            Ok(environment) => environment,
            Err(e @ (AppError::NotFound(_) | AppError::Conflict { .. } | AppError::BadRequest { .. })) => {
                let error = format!("deploy.environment: {e}");
                let new = NewDeployment {
                    lease,
                    environment: spec.environment.chars().take(super::environments::MAX_REFERENCE).collect(),
                    version: 0,
                    environment_id: None,
                    environment_owner: None,
                    image_sha256: None,
                    error: Some(error.clone()),
                    spec: row.deploy.clone().unwrap_or_default(),
                    requested_by: actor.name.clone(),
                    created_at: self.now(),
                };
                let id = self.store.insert_deployment(&new, &[]).await?;
                tracing::warn!(lease = %lease, deployment = id, error, "the lease's deployment could not start");
                self.notify_deployment(id).await;
                return Ok(id);
            }
            Err(e) => return Err(e),
        };
        let id = self.deploy_environment(&actor, lease.0, environment, spec.ssh_keys, None).await?.id;
        tracing::info!(lease = %lease, deployment = id, "deployment started at lease start");
        Ok(id)
    }

    /// Deploys an environment on the nodes of a running lease (its holder
    /// or an admin), or on those of `req.nodes` (a subset of the lease's).
    /// Nodes already `deployed` are deployed again; nodes that left the
    /// lease (suspect, dead) are left out.
    pub async fn create_deployment(&self, actor: &Actor, lease_id: i64, req: ferrum_api::DeploymentCreate) -> AppResult<Deployment> {
        let lease = self.get_lease(actor, lease_id).await?;
        if lease.state != LeaseState::Active {
            return Err(AppError::Conflict {
                message: format!("lease {} is {}; deployments run on active leases", lease.id, lease.state.as_str()),
                earliest_start: None,
            });
        }
        super::one_line("environment", &req.environment, ferrum_api::limits::ENVIRONMENT)?;
        if req.environment.trim().is_empty() {
            return Err(AppError::bad_request("environment: name the environment to deploy"));
        }
        if req.environment.chars().count() > super::environments::MAX_REFERENCE {
            return Err(AppError::bad_request(format!("environment: at most {} characters", super::environments::MAX_REFERENCE)));
        }
        super::leases::validate_ssh_keys("ssh_keys", &req.ssh_keys)?;
        let subset = match &req.nodes {
            Some(names) => Some(subset_of(&lease, names)?),
            None => None,
        };
        let environment = self.get_environment(actor, &req.environment, None, None).await?;
        self.deploy_environment(actor, lease_id, environment, req.ssh_keys, subset.as_ref()).await
    }

    /// Deploys a resolved environment (see [`App::create_deployment`]).
    async fn deploy_environment(
        &self,
        actor: &Actor,
        lease_id: i64,
        environment: Environment,
        ssh_keys: Vec<String>,
        subset: Option<&BTreeSet<NodeId>>,
    ) -> AppResult<Deployment> {
        // One creation at a time: the node states read below stay true
        // until the nodes are moved and the operations recorded.
        let _one_at_a_time = self.deploy_lock.lock().await;
        let lease = self.get_lease(actor, lease_id).await?;
        if lease.state != LeaseState::Active {
            return Err(AppError::Conflict {
                message: format!("lease {} is {}; deployments run on active leases", lease.id, lease.state.as_str()),
                earliest_start: None,
            });
        }
        let mut nodes = Vec::new();
        for (id, name) in &lease.nodes {
            if subset.is_some_and(|s| !s.contains(id)) {
                continue;
            }
            let node = self.store.get_node_by_id(*id).await?;
            if node.lease != Some(lease.id) {
                if subset.is_some() {
                    return Err(AppError::Conflict {
                        message: format!("node '{name}' has left lease {} ({}); it cannot be deployed", lease.id, node.state.as_str()),
                        earliest_start: None,
                    });
                }
                continue;
            }
            match node.state {
                NodeLifecycle::Reserved | NodeLifecycle::Deployed => nodes.push(node),
                NodeLifecycle::Deploying => {
                    return Err(AppError::Conflict {
                        message: format!("node '{name}' is being deployed; cancel that deployment first"),
                        earliest_start: None,
                    });
                }
                _ => {}
            }
        }
        if nodes.is_empty() {
            return Err(AppError::Conflict {
                message: format!("lease {} holds no node that can be deployed", lease.id),
                earliest_start: None,
            });
        }
        let version = i64::try_from(environment.descriptor.version).unwrap_or(i64::MAX);
        let spec = DeploySpec { environment, ssh_keys };
        let text = serde_json::to_string(&spec).map_err(|e| AppError::Internal(e.into()))?;
        let statuses: Vec<NodeStatus> = nodes.iter().map(NodeRow::status).collect();
        let moves: Vec<_> = statuses.iter().map(|s| (s, Some(lease.id))).collect();
        let reason = format!("deploying {} for lease {}", spec.environment.descriptor.name, lease.id);
        self.move_nodes(&moves, NodeInput::DeployStarted, &actor.name, &reason).await?;
        let now_ms = self.now_ms();
        let operations: Vec<NewOperation> = nodes
            .iter()
            .map(|n| NewOperation {
                node: n.id,
                kind: OperationKind::Deploy,
                lease: Some(lease.id),
                phase: first_phase(OperationKind::Deploy).phase,
                deadline_ms: self.deadline_ms(first_phase(OperationKind::Deploy)),
                now_ms,
            })
            .collect();
        let new = NewDeployment {
            lease: lease.id,
            environment: spec.environment.descriptor.name.clone(),
            version,
            environment_id: Some(spec.environment.id),
            environment_owner: Some(spec.environment.owner.clone()),
            image_sha256: Some(spec.environment.descriptor.sha256.clone()),
            error: None,
            spec: text,
            requested_by: actor.name.clone(),
            created_at: self.now(),
        };
        let id = match self.store.insert_deployment(&new, &operations).await {
            Ok(id) => id,
            Err(e) => {
                // Give the nodes back: nothing will deploy them.
                let back: Vec<NodeRow> = reread_nodes(self, &nodes).await?;
                let statuses: Vec<NodeStatus> = back.iter().map(NodeRow::status).collect();
                let moves: Vec<_> = statuses.iter().map(|s| (s, Some(lease.id))).collect();
                self.move_nodes(&moves, NodeInput::DeployFailed, "system", "the deployment could not be recorded").await?;
                return Err(match e {
                    DbError::Raced { .. } => AppError::Conflict {
                        message: "a node of the lease is already being deployed or reset; try again when it is done".into(),
                        earliest_start: None,
                    },
                    other => other.into(),
                });
            }
        };
        tracing::info!(deployment = id, lease = %lease.id, environment = %new.environment, nodes = nodes.len(), actor = %actor.name, "deployment created");
        self.ops_wake.notify_one();
        self.power.wake.notify_one();
        self.deployment_view(id).await
    }

    /// A deployment, for its lease's holder or an admin.
    pub async fn get_deployment(&self, actor: &Actor, id: i64) -> AppResult<Deployment> {
        let (row, _) = self.store.deployment(id).await?;
        self.get_lease(actor, row.lease.0).await.map_err(|_| AppError::NotFound(format!("deployment '{id}' does not exist")))?;
        self.deployment_view(id).await
    }

    /// The deployments of a lease, oldest first.
    pub async fn lease_deployments(&self, actor: &Actor, lease: i64) -> AppResult<Vec<Deployment>> {
        let lease = self.get_lease(actor, lease).await?;
        let mut out = Vec::new();
        for d in self.store.lease_deployments(lease.id).await? {
            out.push(self.deployment_view(d.id).await?);
        }
        Ok(out)
    }

    /// Cancels what still runs of a deployment; those nodes go back to the
    /// lease as `reserved`.
    pub async fn cancel_deployment(&self, actor: &Actor, id: i64) -> AppResult<Deployment> {
        let (row, ops) = self.store.deployment(id).await?;
        self.get_lease(actor, row.lease.0).await.map_err(|_| AppError::NotFound(format!("deployment '{id}' does not exist")))?;
        let reason = format!("cancelled by {}", actor.name);
        for op in ops.into_iter().filter(|o| o.state == OperationState::Running) {
            // A step may move the operation on meanwhile: read it again and
            // retry, a few times.
            let mut current = op;
            for _ in 0..10 {
                // Data that does not read is named in the message and
                // left for empty data (see `PhaseData::of`).
                let (data, message) = match PhaseData::of(&current) {
                    Ok(data) => (data, reason.clone()),
                    Err(problem) => (PhaseData::default(), format!("{reason}; {problem}")),
                };
                if self.finish(&current, &data, OperationInput::Cancelled, &message, None, 0).await? {
                    break;
                }
                current = self.store.operation(current.id).await?;
                if current.state != OperationState::Running {
                    break;
                }
            }
        }
        self.deployment_view(id).await
    }

    async fn deployment_view(&self, id: i64) -> AppResult<Deployment> {
        let (row, ops) = self.store.deployment(id).await?;
        let mut nodes = Vec::new();
        for op in &ops {
            nodes.push(self.operation_view(op).await?);
        }
        Ok(deployment_of(&row, nodes))
    }

    /// One operation as the API shows it.
    pub async fn operation_view(&self, op: &OperationRow) -> AppResult<NodeOperation> {
        let data = PhaseData::of(op).map_err(|problem| AppError::Internal(anyhow::anyhow!("operation {}: {problem}", op.id)))?;
        let (mut written, mut total) = (None, None);
        if let Some(cmd) = data.carried.write_command {
            let c = self.store.agent_command_row(cmd).await?;
            written = u64::try_from(c.done_bytes).ok();
            total = c.total_bytes.and_then(|t| u64::try_from(t).ok());
        }
        let now_ms = self.now_ms();
        let end_ms = op.finished_ms.unwrap_or(now_ms);
        let history: Vec<(String, i64)> = serde_json::from_str(&op.history).unwrap_or_default();
        let mut phases = Vec::new();
        for (i, (phase, at)) in history.iter().enumerate() {
            let until = history.get(i + 1).map(|(_, t)| *t).unwrap_or(end_ms);
            if let Some(phase) = api::Phase::parse(phase) {
                phases.push(PhaseTime { phase, started_at: ms_time(*at), seconds: (until - at).max(0) as f64 / 1000.0 });
            }
        }
        let state = op.state;
        let ssh = if op.kind == OperationKind::Deploy && state == OperationState::Done {
            self.store.get_node_by_id(op.node).await?.ip.map(|ip| format!("root@{ip}"))
        } else {
            None
        };
        Ok(NodeOperation {
            node: op.node_name.clone(),
            kind: op.kind.as_str().to_owned(),
            state: state.into(),
            phase: if state == OperationState::Running { op.phase.into() } else { api::Phase::Finished },
            attempt: u32::try_from(op.attempt).unwrap_or(1),
            phase_seconds: if op.finished_ms.is_some() { 0.0 } else { (now_ms - op.phase_started_ms).max(0) as f64 / 1000.0 },
            deadline: ms_time(op.deadline_ms),
            bytes_written: written,
            bytes_total: total,
            message: op.message.clone().or(data.waiting.last_error.clone()),
            host_key: data.carried.fingerprint.clone(),
            ssh,
            phases,
            controller_ms: u64::try_from(op.controller_ms).unwrap_or(0),
            started_at: ms_time(op.created_ms),
            finished_at: op.finished_ms.map(ms_time),
        })
    }

    /// The latest reset of a node, as the API shows it.
    pub async fn node_operations(&self, name: &str) -> AppResult<Vec<NodeOperation>> {
        let node = self.store.get_node(name).await?;
        let mut out = Vec::new();
        for kind in [OperationKind::Deploy, OperationKind::Reset] {
            if let Some(op) = self.store.latest_operation(node.id, kind).await? {
                out.push(self.operation_view(&op).await?);
            }
        }
        Ok(out)
    }

    /// The reset of a `resetting` node (or of a dirty `enrolling` one):
    /// started on first call, then its verdict once done. The clock loop
    /// calls this each pass.
    pub async fn reset_node(&self, node: &NodeRow) -> CheckOutcome {
        match self.reset_step_outcome(node).await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::error!(node = %node.name, error = ?anyhow::Error::from(e), "reset bookkeeping failed");
                CheckOutcome::InProgress
            }
        }
    }

    async fn reset_step_outcome(&self, node: &NodeRow) -> AppResult<CheckOutcome> {
        if node.bmc_url.is_none() {
            return Ok(CheckOutcome::Mismatch(
                "the node has no BMC: ferrum cannot power it off, wipe and check it; check it by hand and mark it repaired".into(),
            ));
        }
        let latest = self.store.latest_operation(node.id, OperationKind::Reset).await?;
        // This reset's operation: the running one, or the one that ended
        // for the node's ending lease (for a node reset without a lease:
        // one begun since the node became `resetting`).
        let current = latest.filter(|op| {
            op.state == OperationState::Running
                || (op.state != OperationState::Cancelled
                    && op.lease == node.lease
                    && (node.lease.is_some() || op.created_ms >= node.updated_at.saturating_mul(1000)))
        });
        let Some(op) = current else {
            let new = NewOperation {
                node: node.id,
                kind: OperationKind::Reset,
                lease: node.lease,
                phase: first_phase(OperationKind::Reset).phase,
                deadline_ms: self.deadline_ms(first_phase(OperationKind::Reset)),
                now_ms: self.now_ms(),
            };
            match self.store.insert_operation(&new).await {
                Ok(id) => tracing::info!(node = %node.name, operation = id, "reset started"),
                // A deploy still winding down: its guard cancels it, then the reset starts.
                Err(DbError::Raced { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            self.ops_wake.notify_one();
            return Ok(CheckOutcome::InProgress);
        };
        Ok(match (op.state, op.outcome) {
            (OperationState::Running, _) => CheckOutcome::InProgress,
            (OperationState::Done, Some(ResetOutcome::Clean)) => CheckOutcome::Clean,
            (OperationState::Done, _) => CheckOutcome::Mismatch(op.message.unwrap_or_default()),
            (_, Some(ResetOutcome::Bmc)) => CheckOutcome::Unreachable(op.message.unwrap_or_default()),
            _ => CheckOutcome::Mismatch(format!("reset failed: {}", op.message.unwrap_or_default())),
        })
    }

    /// One step of an operation.
    async fn step(&self, op: OperationRow) -> AppResult<()> {
        let started = Instant::now();
        let data = match PhaseData::of(&op) {
            Ok(data) => data,
            // Nothing can say what the phase issued or waits on: the
            // operation fails (a deploy's node goes back to its lease, a
            // reset's to an operator), naming the problem.
            Err(problem) => {
                return self
                    .finish(&op, &PhaseData::default(), OperationInput::Failed, &problem, Some(ResetOutcome::Error), 0)
                    .await
                    .map(drop);
            }
        };
        let phase = op.phase;
        let node = self.store.get_node_by_id(op.node).await?;

        // A BMC failure of this phase is the named reason, even when the
        // power loop already moved the node to suspect or dead.
        if let Some(error) = self.failed_power_request(&data).await? {
            return self.finish(&op, &data, OperationInput::Failed, &error, Some(ResetOutcome::Bmc), elapsed_ms(started)).await.map(drop);
        }
        let still_ours = match op.kind {
            OperationKind::Deploy => node.state == NodeLifecycle::Deploying && node.lease == op.lease,
            // A reset also runs for a dirty node being enrolled again.
            OperationKind::Reset => matches!(node.state, NodeLifecycle::Resetting | NodeLifecycle::Enrolling),
        };
        if !still_ours {
            let why = format!("the node is now {}", node.state.as_str());
            return self.finish(&op, &data, OperationInput::Cancelled, &why, None, elapsed_ms(started)).await.map(drop);
        }

        let Some(spec) = spec_of(op.kind, phase) else {
            let message = format!("phase {} is not part of a {}", phase.as_str(), op.kind);
            return self
                .finish(&op, &data, OperationInput::Failed, &message, Some(ResetOutcome::Error), elapsed_ms(started))
                .await
                .map(drop);
        };
        let mut external = Duration::ZERO;
        let stepped = match op.kind {
            OperationKind::Deploy => self.deploy_step(&op, &node, phase, data.clone(), &mut external).await,
            OperationKind::Reset => self.reset_step(&op, &node, phase, data.clone()).await,
        };
        let next = match stepped {
            Ok(next) => next,
            // An error (a database hiccup, a default environment that does
            // not exist) waits like any other step: the deadline still ends it.
            Err(e) => {
                tracing::warn!(node = %op.node_name, error = %e, "operation step failed; trying again");
                let mut same = data.clone();
                same.waiting.last_error = Some(e.to_string());
                Next::Stay(same)
            }
        };
        let own_ms = elapsed_ms(started).saturating_sub(i64::try_from(external.as_millis()).unwrap_or(0));
        // The step that issues a phase's actions is not judged late: a
        // controller back from a long stop gives them their chance.
        let judged = data.waiting.issued || spec.only_waits;
        let next = match next {
            Next::Stay(_) if judged && self.now_ms() > op.deadline_ms => {
                Next::Retry(format!("{} took longer than {}", phase.as_str(), humantime::format_duration(self.deadline_of(spec))))
            }
            other => other,
        };
        match next {
            Next::Stay(new) => {
                let text = serde_json::to_string(&new).map_err(|e| AppError::Internal(e.into()))?;
                if text != op.data {
                    let mut row = op.clone();
                    row.data = text;
                    row.controller_ms += own_ms;
                    self.store.update_operation(&row).await?;
                }
                Ok(())
            }
            Next::Advance(new) => self.advance(&op, &new, false, own_ms).await,
            Next::Restore(new) => self.advance(&op, &new, true, own_ms).await,
            Next::Retry(why) => {
                let attempts = i64::from(self.config.deploy.attempts);
                if op.attempt >= attempts {
                    let message = format!("gave up after {} attempt(s): {why}", op.attempt);
                    return self.finish(&op, &data, OperationInput::Failed, &message, Some(ResetOutcome::Error), own_ms).await.map(drop);
                }
                tracing::warn!(node = %op.node_name, attempt = op.attempt, reason = %why, "retrying from a power cycle");
                self.abandon_actions(&op, &data).await?;
                let mut new = data.carry();
                new.waiting.last_error = Some(why);
                self.enter(&op, first_phase(op.kind), &new, op.attempt + 1, own_ms).await
            }
            Next::Finish { end, message, outcome, data: new } => {
                self.finish(&op, new.as_ref().unwrap_or(&data), end, &message, outcome, own_ms).await.map(drop)
            }
        }
    }

    /// Drops what a phase queued and that has not run: its power requests
    /// still queued, the node's unfinished agent commands.
    async fn abandon_actions(&self, op: &OperationRow, data: &PhaseData) -> AppResult<()> {
        for id in &data.waiting.power_requests {
            self.store.cancel_power_request(*id, "abandoned: the operation moved on", self.now()).await?;
        }
        self.store.cancel_agent_commands(op.node, "abandoned: the operation moved on", self.now()).await?;
        Ok(())
    }

    /// The error of the phase's first failed power request, if any.
    async fn failed_power_request(&self, data: &PhaseData) -> AppResult<Option<String>> {
        for id in &data.waiting.power_requests {
            let r = self.store.power_request(*id).await?;
            if r.state == PowerRequestState::Failed {
                return Ok(Some(r.error.unwrap_or_else(|| format!("power request {id} failed"))));
            }
        }
        Ok(None)
    }

    /// Whether every power request of the phase is done.
    async fn power_done(&self, data: &PhaseData) -> AppResult<bool> {
        for id in &data.waiting.power_requests {
            if self.store.power_request(*id).await?.state != PowerRequestState::Done {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Queues a phase's power sequence. Requests of the node still queued
    /// are dropped first: they would run ahead of the sequence, and a
    /// failing one would make it skipped. (A step that failed after
    /// queueing, and so queues again, leaves such requests behind.)
    async fn enqueue_power_ops(&self, node: &NodeRow, ops: &[PowerOperation], actor: &str) -> AppResult<Vec<i64>> {
        let dropped = self.store.cancel_queued_power(node.id, "superseded by an operation's power sequence", self.now()).await?;
        if dropped > 0 {
            tracing::info!(node = %node.name, dropped, "queued power requests superseded");
        }
        let mut ids = Vec::new();
        for op in ops {
            ids.push(self.store.enqueue_power(node.id, *op, actor, self.now()).await?);
        }
        self.power.wake.notify_one();
        Ok(ids)
    }

    async fn enqueue_agent(&self, node: &NodeRow, action: &AgentAction, actor: &str) -> AppResult<i64> {
        let text = serde_json::to_string(action).map_err(|e| AppError::Internal(e.into()))?;
        let row = self.store.enqueue_agent_command(node.id, &text, actor, self.now()).await?;
        self.agent_wake.notify_waiters();
        Ok(row.id)
    }

    /// Sends the node to the deploy ramdisk: next boot → ramdisk, BMC boot
    /// device PXE, then `power` (`cycle` or `on`).
    async fn boot_ramdisk(&self, node: &NodeRow, power: PowerAction, actor: &str, mut data: PhaseData) -> AppResult<Next> {
        if !data.waiting.issued {
            let stale = self.store.cancel_agent_commands(node.id, "superseded by a new operation", self.now()).await?;
            if stale > 0 {
                tracing::info!(node = %node.name, stale, "old agent commands cancelled");
            }
            self.store.set_boot_target(node.id, BootTarget::Ramdisk).await?;
            data.waiting.generation = Some(self.store.agent_generation(node.id).await?);
            data.waiting.power_requests =
                self.enqueue_power_ops(node, &[PowerOperation::Boot(BootDevice::Pxe), PowerOperation::Power(power)], actor).await?;
            data.waiting.issued = true;
            return Ok(Next::Stay(data));
        }
        if !self.power_done(&data).await? {
            return Ok(Next::Stay(data));
        }
        // Handed on: the next phase waits for a newer agent generation.
        let waiting = Waiting { generation: data.waiting.generation, ..Waiting::default() };
        Ok(Next::Advance(PhaseData { waiting, carried: data.carried }))
    }

    /// Whether the ramdisk's agent (a generation after the one
    /// `boot_ramdisk` handed on) reported its inventory; the report when it
    /// did.
    async fn fresh_inventory(&self, node: &NodeRow, data: &PhaseData) -> AppResult<Option<InventoryReport>> {
        let Some(inventory) = self.store.node_inventory(node.id).await? else { return Ok(None) };
        if inventory.generation <= data.waiting.generation.unwrap_or(0) {
            return Ok(None);
        }
        let report: InventoryReport = serde_json::from_str(&inventory.report).map_err(|e| AppError::Internal(e.into()))?;
        Ok(Some(report))
    }

    /// Issues an agent command at the phase's first step, then waits for it.
    /// `Ok(None)` when it is done.
    async fn agent_phase(
        &self,
        node: &NodeRow,
        action: impl FnOnce() -> AgentAction,
        actor: &str,
        data: &mut PhaseData,
    ) -> AppResult<Option<Next>> {
        let Some(id) = data.waiting.command.filter(|_| data.waiting.issued) else {
            data.waiting.command = Some(self.enqueue_agent(node, &action(), actor).await?);
            data.waiting.issued = true;
            return Ok(Some(Next::Stay(data.clone())));
        };
        let c = self.store.agent_command_row(id).await?;
        Ok(match c.state {
            AgentCommandState::Done => None,
            AgentCommandState::Failed => {
                Some(Next::Retry(format!("the agent's {} failed: {}", kind_of(&c.action), c.error.unwrap_or_default())))
            }
            AgentCommandState::Queued | AgentCommandState::Sent => Some(Next::Stay(data.clone())),
        })
    }

    async fn deploy_step(
        &self,
        op: &OperationRow,
        node: &NodeRow,
        phase: Phase,
        mut data: PhaseData,
        external: &mut Duration,
    ) -> AppResult<Next> {
        let actor = format!("deployment {}", op.deployment.unwrap_or_default());
        let spec: DeploySpec = {
            let text = self.store.deployment_spec(op.deployment.unwrap_or_default()).await?;
            serde_json::from_str(&text).map_err(|e| AppError::Internal(e.into()))?
        };
        let env = &spec.environment.descriptor;
        Ok(match phase {
            Phase::BootRamdisk => self.boot_ramdisk(node, PowerAction::Cycle, &actor, data).await?,
            Phase::WaitAgent => match self.fresh_inventory(node, &data).await? {
                None => Next::Stay(data),
                Some(report) => match report.storage_devices.first() {
                    None => fail("the node's agent found no disk to write the image to", Some(ResetOutcome::Error)),
                    Some(disk) => {
                        let mut next = data.carry();
                        next.carried.device = Some(format!("/dev/{}", disk.device));
                        Next::Advance(next)
                    }
                },
            },
            Phase::WriteImage => match self.write_image_phase(node, &spec.environment, &actor, data.clone()).await? {
                Some(next) => next,
                None => Next::Advance(data.carry()),
            },
            Phase::InstallKeys => {
                let mut keys = spec.ssh_keys.clone();
                keys.push(self.controller_key()?.public_openssh());
                match self.install_keys_phase(node, env, keys, &actor, data.clone()).await? {
                    Some(next) => next,
                    None => Next::Advance(data.carry()),
                }
            }
            Phase::BootSystem => {
                if !data.waiting.issued {
                    self.store.set_boot_target(node.id, BootTarget::Local).await?;
                }
                let device = data.carried.device.clone().unwrap_or_default();
                let action = || match env.boot {
                    EnvironmentBoot::Kexec => kexec_action(&device, env.root_partition),
                    EnvironmentBoot::Local => AgentAction::Reboot,
                };
                match self.agent_phase(node, action, &actor, &mut data.clone()).await? {
                    Some(Next::Stay(d)) => Next::Stay(d),
                    Some(other) => other,
                    None => Next::Advance(data.carry()),
                }
            }
            Phase::SshCheck => {
                let Some(ip) = node.ip.as_deref() else {
                    return Ok(fail(
                        "the node has no IP address in the inventory: the controller cannot log in",
                        Some(ResetOutcome::Error),
                    ));
                };
                let addr: SocketAddr = match format!("{ip}:22").parse() {
                    Ok(a) => a,
                    Err(_) => return Ok(fail(format!("the node's IP address '{ip}' is not valid"), Some(ResetOutcome::Error))),
                };
                let key = self.controller_key()?;
                let t = Instant::now();
                // A cheap knock first: a SYN sent while the node still boots
                // is retransmitted only after 1, 3, 7 s; a fresh short
                // attempt each tick catches sshd as soon as it listens.
                let knock = tokio::time::timeout(SSH_KNOCK, tokio::net::TcpStream::connect(addr)).await;
                if !matches!(knock, Ok(Ok(_))) {
                    *external += t.elapsed();
                    data.waiting.last_error = Some(format!("SSH: {addr} does not answer yet"));
                    return Ok(Next::Stay(data));
                }
                let result = crate::ssh::run_as_root(addr, &key, &self.config.deploy.check_command, SSH_ATTEMPT, None).await;
                *external += t.elapsed();
                match result {
                    Ok(check) if check.exit_status == 0 => {
                        self.store.set_ssh_host_key(node.id, Some(&check.host_key)).await?;
                        data.carried.fingerprint = Some(check.fingerprint.clone());
                        let first_line = check.stdout.lines().next().unwrap_or_default().trim().to_owned();
                        return Ok(Next::Finish { end: OperationInput::Succeeded, message: first_line, outcome: None, data: Some(data) });
                    }
                    Ok(check) => fail(
                        format!(
                            "the check command '{}' exited with {}: {}",
                            self.config.deploy.check_command,
                            check.exit_status,
                            check.stderr.trim()
                        ),
                        Some(ResetOutcome::Error),
                    ),
                    Err(e) if e.is_retryable() => {
                        data.waiting.last_error = Some(format!("SSH: {e}"));
                        Next::Stay(data)
                    }
                    Err(e) => fail(format!("root SSH login with the controller's key failed: {e}"), Some(ResetOutcome::Error)),
                }
            }
            other => fail(format!("phase {} is not part of a deploy", other.as_str()), Some(ResetOutcome::Error)),
        })
    }

    /// Writes `env`'s image to the disk chosen at `wait_agent`; `None` once
    /// written.
    async fn write_image_phase(&self, node: &NodeRow, env: &Environment, actor: &str, mut data: PhaseData) -> AppResult<Option<Next>> {
        let d = &env.descriptor;
        let device = data.carried.device.clone().unwrap_or_default();
        let action = || AgentAction::WriteImage {
            url: env.image_url.clone(),
            format: d.format,
            sha256: d.sha256.clone(),
            size: d.size,
            device: device.clone(),
        };
        let first = !data.waiting.issued;
        let waiting = self.agent_phase(node, action, actor, &mut data).await?;
        if first {
            // Kept across phases: the bytes written stay visible.
            data.carried.write_command = data.waiting.command;
            return Ok(Some(Next::Stay(data)));
        }
        Ok(waiting)
    }

    /// Installs `keys` for root and the node's hostname in the written
    /// system; `None` once done.
    async fn install_keys_phase(
        &self,
        node: &NodeRow,
        env: &ferrum_api::environment::EnvironmentDescriptor,
        keys: Vec<String>,
        actor: &str,
        mut data: PhaseData,
    ) -> AppResult<Option<Next>> {
        let device = data.carried.device.clone().unwrap_or_default();
        let action =
            || AgentAction::InstallKeys { device, root_partition: env.root_partition, ssh_keys: keys, hostname: node.name.clone() };
        self.agent_phase(node, action, actor, &mut data).await
    }

    async fn reset_step(&self, op: &OperationRow, node: &NodeRow, phase: Phase, mut data: PhaseData) -> AppResult<Next> {
        let actor = "reset".to_owned();
        let _ = op;
        Ok(match phase {
            Phase::PowerOff => {
                if !data.waiting.issued {
                    self.store.cancel_agent_commands(node.id, "superseded by the reset", self.now()).await?;
                    data.waiting.power_requests = self.enqueue_power_ops(node, &[PowerOperation::Power(PowerAction::Off)], &actor).await?;
                    data.waiting.issued = true;
                    return Ok(Next::Stay(data));
                }
                if self.power_done(&data).await? { Next::Advance(data.carry()) } else { Next::Stay(data) }
            }
            Phase::BootRamdisk => self.boot_ramdisk(node, PowerAction::On, &actor, data).await?,
            Phase::WaitAgent => match self.fresh_inventory(node, &data).await? {
                None => Next::Stay(data),
                Some(report) => {
                    let mut next = data.carry();
                    next.carried.device =
                        Some(report.storage_devices.iter().map(|d| format!("/dev/{}", d.device)).collect::<Vec<_>>().join(","));
                    Next::Advance(next)
                }
            },
            Phase::Wipe => {
                let devices: Vec<String> =
                    data.carried.device.clone().unwrap_or_default().split(',').filter(|d| !d.is_empty()).map(str::to_owned).collect();
                let secure = self.config.reset.secure_wipe;
                match self.agent_phase(node, || AgentAction::Wipe { devices, secure }, &actor, &mut data.clone()).await? {
                    Some(Next::Stay(d)) => Next::Stay(d),
                    Some(other) => other,
                    None => Next::Advance(data.carry()),
                }
            }
            Phase::Inventory => match self.agent_phase(node, || AgentAction::Inventory, &actor, &mut data.clone()).await? {
                Some(Next::Stay(d)) => Next::Stay(d),
                Some(other) => other,
                None => {
                    let mut next = data.carry();
                    let verdict = self.check_against_reference(node).await?;
                    let clean = verdict.0 == ResetOutcome::Clean;
                    next.carried.verdict = Some(verdict);
                    // Restore the default environment on a clean node only,
                    // resolved among admin-owned environments only.
                    let restore = if clean { self.reset_environment().await } else { Ok(None) };
                    match restore {
                        Ok(Some(env)) => {
                            next.carried.environment = Some(env.id);
                            next.carried.device = data.carried.device.as_deref().and_then(|d| d.split(',').next()).map(str::to_owned);
                            Next::Restore(next)
                        }
                        Ok(None) => Next::Advance(next),
                        Err(e) => {
                            tracing::warn!(node = %node.name, error = %e, "reset: the default environment is not restored");
                            next.carried.not_restored = Some(e.to_string());
                            Next::Advance(next)
                        }
                    }
                }
            },
            Phase::WriteImage | Phase::InstallKeys => {
                let Some(id) = data.carried.environment else {
                    // Nothing to restore: past the restore's phases.
                    return Ok(Next::Advance(data.carry()));
                };
                let env = match self.admin_environment(id).await {
                    Ok(env) => env,
                    Err(e @ AppError::NotFound(_)) => return Ok(fail(format!("default environment: {e}"), Some(ResetOutcome::Error))),
                    Err(e) => return Err(e),
                };
                let waiting = if phase == Phase::WriteImage {
                    self.write_image_phase(node, &env, &actor, data.clone()).await?
                } else {
                    let keys = vec![self.controller_key()?.public_openssh()];
                    self.install_keys_phase(node, &env.descriptor, keys, &actor, data.clone()).await?
                };
                match (waiting, phase) {
                    (Some(next), _) => next,
                    (None, Phase::WriteImage) => Next::Restore(data.carry()),
                    (None, _) => Next::Advance(data.carry()),
                }
            }
            Phase::Shutdown => {
                if !data.waiting.issued {
                    self.store.set_boot_target(node.id, BootTarget::Local).await?;
                    let restored = data.carried.write_command.is_some() && data.carried.environment.is_some();
                    let power = shutdown_power(self.config.reset.power_off, restored);
                    if !power.is_empty() {
                        data.waiting.power_requests = self.enqueue_power_ops(node, power, &actor).await?;
                    }
                    data.waiting.issued = true;
                    return Ok(Next::Stay(data));
                }
                if !self.power_done(&data).await? {
                    return Ok(Next::Stay(data));
                }
                let (outcome, message) = data.carried.verdict.clone().unwrap_or((ResetOutcome::Clean, String::new()));
                let outcome = if outcome == ResetOutcome::Clean { ResetOutcome::Clean } else { ResetOutcome::Mismatch };
                let message = match (outcome, &self.config.reset.default_environment, &data.carried.not_restored) {
                    (ResetOutcome::Clean, _, Some(why)) => format!("reset, wiped and checked; default environment not restored: {why}"),
                    (ResetOutcome::Clean, Some(env), None) => {
                        format!("reset, wiped and checked; {env} restored (environment {})", data.carried.environment.unwrap_or_default())
                    }
                    (ResetOutcome::Clean, None, None) => "reset, wiped and checked".to_owned(),
                    _ => message,
                };
                Next::Finish { end: OperationInput::Succeeded, message, outcome: Some(outcome), data: None }
            }
            other => fail(format!("phase {} is not part of a reset", other.as_str()), Some(ResetOutcome::Error)),
        })
    }

    /// The verdict of a reset's inventory: (clean, "") or (mismatch, the
    /// differences with the reference, and any disk not wiped).
    async fn check_against_reference(&self, node: &NodeRow) -> AppResult<(ResetOutcome, String)> {
        let inventory = self.node_inventory(&node.name).await?;
        let mut problems: Vec<String> = inventory
            .differences
            .unwrap_or_default()
            .iter()
            .map(|d| format!("{}: reference {}, found {}", d.field, d.expected, d.found))
            .collect();
        if let Some((_, report)) = &inventory.reported {
            for disk in &report.storage_devices {
                if let Some(table) = &disk.partition_table {
                    problems.push(format!("disk {} still has a {table} partition table after the wipe", disk.device));
                }
            }
        }
        Ok(if problems.is_empty() { (ResetOutcome::Clean, String::new()) } else { (ResetOutcome::Mismatch, problems.join("; ")) })
    }

    /// Moves an operation from its phase to the next one of its sequence
    /// (through the restore's phases when `restore`).
    async fn advance(&self, op: &OperationRow, data: &PhaseData, restore: bool, own_ms: i64) -> AppResult<()> {
        match phase_after(op.kind, op.phase, restore) {
            Some(to) => self.enter(op, to, data, op.attempt, own_ms).await,
            // The last phase of a sequence finishes its operation itself.
            None => {
                let message = format!("phase {} is the last of a {}: nothing follows it", op.phase.as_str(), op.kind);
                self.finish(op, data, OperationInput::Failed, &message, Some(ResetOutcome::Error), own_ms).await.map(drop)
            }
        }
    }

    /// Moves an operation to `to` (the next phase, or the first phase of a
    /// new attempt).
    async fn enter(&self, op: &OperationRow, to: &PhaseSpec, data: &PhaseData, attempt: i64, own_ms: i64) -> AppResult<()> {
        let now_ms = self.now_ms();
        let mut history: Vec<(String, i64)> = serde_json::from_str(&op.history).unwrap_or_default();
        history.push((to.phase.as_str().to_owned(), now_ms));
        let mut row = op.clone();
        row.phase = to.phase;
        row.attempt = attempt;
        row.phase_started_ms = now_ms;
        row.deadline_ms = self.deadline_ms(to);
        row.data = serde_json::to_string(data).map_err(|e| AppError::Internal(e.into()))?;
        row.history = serde_json::to_string(&history).map_err(|e| AppError::Internal(e.into()))?;
        row.controller_ms += own_ms;
        if self.store.update_operation(&row).await? {
            tracing::info!(node = %op.node_name, kind = %op.kind, phase = to.phase.as_str(), attempt, does = to.does, "operation phase");
            self.ops_wake.notify_one();
        }
        Ok(())
    }

    /// Ends an operation; `false` when it moved on or ended meanwhile
    /// (nothing is done then). A deploy that did not succeed gives its node
    /// back to the lease (`reserved`); the end wakes the clock loop, which
    /// turns a reset's verdict into the node's state.
    async fn finish(
        &self,
        op: &OperationRow,
        data: &PhaseData,
        end: OperationInput,
        message: &str,
        outcome: Option<ResetOutcome>,
        own_ms: i64,
    ) -> AppResult<bool> {
        let now_ms = self.now_ms();
        let state = op.state.next(end).map_err(|e| AppError::Internal(e.into()))?;
        let mut history: Vec<(String, i64)> = serde_json::from_str(&op.history).unwrap_or_default();
        history.push((api::Phase::Finished.as_str().to_owned(), now_ms));
        let mut row = op.clone();
        row.state = state;
        row.data = serde_json::to_string(data).map_err(|e| AppError::Internal(e.into()))?;
        row.history = serde_json::to_string(&history).map_err(|e| AppError::Internal(e.into()))?;
        row.message = Some(message.to_owned()).filter(|m| !m.is_empty());
        row.outcome = outcome;
        row.controller_ms += own_ms;
        row.finished_ms = Some(now_ms);
        if !self.store.update_operation(&row).await? {
            return Ok(false);
        }
        match state {
            OperationState::Done => tracing::info!(node = %op.node_name, kind = %op.kind, message, "operation done"),
            _ => tracing::warn!(node = %op.node_name, kind = %op.kind, state = state.as_str(), message, "operation ended"),
        }
        if op.kind == OperationKind::Deploy && state == OperationState::Done {
            // Recorded after the operation: a crash in between is finished
            // by `give_back_orphans` from the operation's outcome.
            let node = self.store.get_node_by_id(op.node).await?;
            let reason = format!("deployed (deployment {}); root SSH check: {message}", op.deployment.unwrap_or_default());
            self.move_nodes(&[(&node.status(), node.lease)], NodeInput::DeployDone, "system", &reason).await?;
        }
        if op.kind == OperationKind::Deploy && state != OperationState::Done {
            // Nothing of the abandoned deploy may run later: not a queued
            // power cycle, not an agent command a later ramdisk would take,
            // not a ramdisk boot when the holder reboots the node.
            self.abandon_actions(op, data).await?;
            self.store.set_boot_target(op.node, BootTarget::Local).await?;
            let node = self.store.get_node_by_id(op.node).await?;
            if node.state == NodeLifecycle::Deploying && node.lease == op.lease {
                let reason = format!("deployment {} {}: {message}", op.deployment.unwrap_or_default(), state.as_str());
                self.move_nodes(&[(&node.status(), node.lease)], NodeInput::DeployFailed, "system", &reason).await?;
            }
        }
        // The last node's end tells the lease's owner how the deployment went.
        if let (OperationKind::Deploy, Some(deployment)) = (op.kind, op.deployment) {
            self.notify_deployment(deployment).await;
        }
        // The clock loop turns a reset's verdict into the node's state, and
        // starts a reset that waited for this operation to end.
        self.wake.notify_one();
        Ok(true)
    }
}

/// The nodes as they are now (after a failed insert, to move them from
/// their current state).
async fn reread_nodes(app: &App, nodes: &[NodeRow]) -> AppResult<Vec<NodeRow>> {
    let mut out = Vec::new();
    for n in nodes {
        out.push(app.store.get_node_by_id(n.id).await?);
    }
    Ok(out)
}

/// The nodes `names` of `lease` (a deployment's subset), or a 400 naming
/// the first that is not one of its nodes.
fn subset_of(lease: &LeaseRow, names: &[String]) -> AppResult<BTreeSet<NodeId>> {
    if names.is_empty() {
        return Err(AppError::bad_request("nodes: name at least one node of the lease, or leave nodes out to deploy them all"));
    }
    let mut out = BTreeSet::new();
    for name in names {
        let Some((id, _)) = lease.nodes.iter().find(|(_, n)| n == name) else {
            return Err(AppError::bad_request(format!("nodes: '{name}' is not a node of lease {}", lease.id)));
        };
        if !out.insert(*id) {
            return Err(AppError::bad_request(format!("nodes: '{name}' is listed twice")));
        }
    }
    Ok(out)
}

fn deployment_of(row: &DeploymentRow, nodes: Vec<NodeOperation>) -> Deployment {
    Deployment {
        id: row.id,
        lease: row.lease.0,
        environment: row.environment.clone(),
        version: u64::try_from(row.version).unwrap_or(0),
        environment_id: row.environment_id,
        environment_owner: row.environment_owner.clone(),
        image_sha256: row.image_sha256.clone(),
        error: row.error.clone(),
        requested_by: row.requested_by.clone(),
        // A deployment that could not start has no node and failed.
        state: if row.error.is_some() { DeploymentState::Failed } else { DeploymentState::of(nodes.iter().map(|n| n.state)) },
        created_at: from_seconds(row.created_at),
        nodes,
    }
}

fn ms_time(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn elapsed_ms(since: Instant) -> i64 {
    i64::try_from(since.elapsed().as_millis()).unwrap_or(i64::MAX)
}

/// The kexec of a `boot: kexec` environment: the image's
/// `/boot/vmlinuz` and `/boot/initrd.img` (the Debian symlinks), root on
/// the written partition, console on the first serial port and the screen.
fn kexec_action(device: &str, partition: u32) -> AgentAction {
    // `nvme0n1` → `nvme0n1p1`; `vda` → `vda1`.
    let separator = if device.ends_with(|c: char| c.is_ascii_digit()) { "p" } else { "" };
    AgentAction::Kexec {
        device: device.to_owned(),
        root_partition: partition,
        kernel: "boot/vmlinuz".into(),
        initrd: Some("boot/initrd.img".into()),
        cmdline: format!("root={device}{separator}{partition} ro console=tty0 console=ttyS0,115200n8"),
    }
}

/// The kind of an agent command's stored action, for messages.
fn kind_of(action: &str) -> String {
    serde_json::from_str::<AgentAction>(action).map(|a| a.kind().to_owned()).unwrap_or_else(|_| "command".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phases(kind: OperationKind, restore: bool) -> Vec<Phase> {
        let mut out = vec![first_phase(kind).phase];
        while let Some(next) = phase_after(kind, out[out.len() - 1], restore) {
            out.push(next.phase);
        }
        out
    }

    #[test]
    fn the_tables_give_each_sequence_in_order() {
        use Phase as P;
        let deploy = [P::BootRamdisk, P::WaitAgent, P::WriteImage, P::InstallKeys, P::BootSystem, P::SshCheck];
        assert_eq!(phases(OperationKind::Deploy, false), deploy);
        assert_eq!(phases(OperationKind::Deploy, true), deploy, "a deploy has no optional phase");
        assert_eq!(phases(OperationKind::Reset, false), [P::PowerOff, P::BootRamdisk, P::WaitAgent, P::Wipe, P::Inventory, P::Shutdown]);
        assert_eq!(
            phases(OperationKind::Reset, true),
            [P::PowerOff, P::BootRamdisk, P::WaitAgent, P::Wipe, P::Inventory, P::WriteImage, P::InstallKeys, P::Shutdown]
        );
        // Once in the restore, a restore phase that finds nothing to
        // restore goes past the rest of it.
        assert_eq!(phase_after(OperationKind::Reset, P::WriteImage, false).map(|s| s.phase), Some(P::Shutdown));
        assert!(spec_of(OperationKind::Reset, P::SshCheck).is_none() && spec_of(OperationKind::Deploy, P::Wipe).is_none());
        for kind in OperationKind::ALL {
            let table = sequence(*kind);
            let distinct: HashSet<Phase> = table.iter().map(|s| s.phase).collect();
            assert_eq!(distinct.len(), table.len(), "{kind}: a phase appears once");
            assert!(!table[0].restore && !table[table.len() - 1].restore, "{kind}: the first and last phases always run");
        }
    }

    #[test]
    fn a_reset_ends_powered_off_or_booting_what_it_restored() {
        use PowerOperation::{Boot, Power};
        assert_eq!(shutdown_power(true, true), [Power(PowerAction::Off)]);
        assert_eq!(shutdown_power(true, false), [Power(PowerAction::Off)]);
        assert_eq!(shutdown_power(false, true), [Boot(BootDevice::Disk), Power(PowerAction::Cycle)]);
        assert!(shutdown_power(false, false).is_empty());
    }

    #[test]
    fn only_the_phases_that_wait_are_judged_from_their_first_step() {
        for kind in OperationKind::ALL {
            for spec in sequence(*kind) {
                assert_eq!(spec.only_waits, matches!(spec.phase, Phase::WaitAgent | Phase::SshCheck), "{kind} {}", spec.phase);
            }
        }
    }

    #[test]
    fn each_phase_has_its_timeout() {
        let deadline = |kind, phase| spec_of(kind, phase).map(|s| s.deadline);
        use OperationKind::{Deploy, Reset};
        assert!(matches!(deadline(Deploy, Phase::BootRamdisk), Some(Deadline::Power)));
        assert!(matches!(deadline(Deploy, Phase::WaitAgent), Some(Deadline::Boot)));
        assert!(matches!(deadline(Deploy, Phase::WriteImage), Some(Deadline::Write)));
        assert!(matches!(deadline(Deploy, Phase::InstallKeys), Some(Deadline::Write)));
        assert!(matches!(deadline(Deploy, Phase::BootSystem), Some(Deadline::Ssh)));
        assert!(matches!(deadline(Deploy, Phase::SshCheck), Some(Deadline::Ssh)));
        assert!(matches!(deadline(Reset, Phase::PowerOff), Some(Deadline::Power)));
        assert!(matches!(deadline(Reset, Phase::BootRamdisk), Some(Deadline::Power)));
        assert!(matches!(deadline(Reset, Phase::WaitAgent), Some(Deadline::Boot)));
        assert!(matches!(deadline(Reset, Phase::Wipe), Some(Deadline::Write)));
        assert!(matches!(deadline(Reset, Phase::Inventory), Some(Deadline::Write)));
        assert!(matches!(deadline(Reset, Phase::WriteImage), Some(Deadline::Write)));
        assert!(matches!(deadline(Reset, Phase::InstallKeys), Some(Deadline::Write)));
        assert!(matches!(deadline(Reset, Phase::Shutdown), Some(Deadline::Power)));
    }

    fn full() -> PhaseData {
        PhaseData {
            waiting: Waiting {
                issued: true,
                power_requests: vec![1, 2],
                generation: Some(3),
                command: Some(4),
                last_error: Some("x".into()),
            },
            carried: Carried {
                device: Some("/dev/vda".into()),
                write_command: Some(5),
                verdict: Some((ResetOutcome::Mismatch, "cpu".into())),
                fingerprint: Some("SHA256:f".into()),
                environment: Some(6),
                not_restored: Some("gone".into()),
            },
        }
    }

    #[test]
    fn phase_data_keeps_only_what_crosses_phases() {
        let data = full();
        let next = data.carry();
        assert_eq!(next.carried.environment, Some(6), "a reset restores the environment it resolved first");
        assert_eq!(next.carried, data.carried);
        assert_eq!(next.waiting, Waiting::default());
        assert!(!next.waiting.issued);
        assert!(next.waiting.power_requests.is_empty() && next.waiting.command.is_none() && next.waiting.generation.is_none());
        assert_eq!(next.carried.device.as_deref(), Some("/dev/vda"));
        assert_eq!(next.carried.write_command, Some(5));
        assert_eq!(next.waiting.last_error, None);
    }

    #[test]
    fn old_data_still_reads() {
        let data: PhaseData = serde_json::from_str("{}").expect("empty data");
        assert!(!data.waiting.issued);
        // The stored form, as the bag of options before the split wrote it
        // (its field order): a running operation resumes after an upgrade.
        let stored = r#"{"issued":true,"power_requests":[1,2],"generation":3,"command":4,"device":"/dev/vda","write_command":5,"verdict":["OUTCOME","cpu"],"fingerprint":"SHA256:f","last_error":"x","environment":6,"not_restored":"gone"}"#;
        // (The outcome's stored name is written once, in its enum.)
        let stored = &stored.replace("OUTCOME", ResetOutcome::Mismatch.as_str());
        let data: PhaseData = serde_json::from_str(stored).expect("stored data");
        assert_eq!(data, full());
        // And the same names are written.
        let written: serde_json::Value = serde_json::to_value(&data).expect("serialises");
        assert_eq!(written, serde_json::from_str::<serde_json::Value>(stored).expect("json"));
        assert_eq!(serde_json::to_string(&PhaseData::default()).expect("serialises"), r#"{"issued":false}"#);
        let waiting = r#"{"issued":true,"power_requests":[7]}"#;
        assert_eq!(serde_json::to_string(&serde_json::from_str::<PhaseData>(waiting).expect("reads")).expect("serialises"), waiting);
    }

    #[test]
    fn phase_data_that_does_not_read_is_an_error() {
        for bad in [
            r#"{"issued":"yes"}"#,
            r#"{"issued":null}"#,
            r#"{"power_requests":[1,"2"]}"#,
            r#"{"generation":"3"}"#,
            r#"{"device":7}"#,
            r#"{"verdict":["fine",""]}"#,
            r#"{"environment":[6]}"#,
            "[]",
            "null",
            "",
        ] {
            assert!(serde_json::from_str::<PhaseData>(bad).is_err(), "{bad} must not read");
        }
    }
}
