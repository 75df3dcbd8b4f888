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
//! Owns: the phases and their order, deadlines, retries, the node
//! transitions a deploy makes (`deploying` → `deployed`, or back to
//! `reserved`), and the reset's verdict (clean, mismatch, BMC failure),
//! which the clock loop turns into the node's state. Acts only through the
//! power request queue (BMCs), the boot target (iPXE), agent commands and
//! the SSH check; never talks to a BMC or an agent itself.

use std::collections::HashSet;
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
use crate::db::{DbError, DeploymentRow, NewDeployment, NewOperation, NodeRow, NodeStatus, OperationRow};
use crate::model::time::from_seconds;
use crate::model::{
    AgentCommandState, BootTarget, LeaseId, LeaseState, NodeInput, NodeLifecycle, OperationInput, OperationKind, OperationState, Phase,
    PowerOperation, PowerRequestState, ProjectId, ResetOutcome,
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

/// What a phase waits on; stored as the operation's `data`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct PhaseData {
    /// The phase's actions ran.
    #[serde(default)]
    issued: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    power_requests: Vec<i64>,
    /// The agent generation before the ramdisk boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    command: Option<i64>,
    /// Kept across phases: the disk written, the write command (for the
    /// bytes shown), the reset's verdict, the SSH host key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    write_command: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verdict: Option<(ResetOutcome, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
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

    /// The data a new phase starts with: what is kept across phases.
    fn carry(&self) -> PhaseData {
        PhaseData {
            device: self.device.clone(),
            write_command: self.write_command,
            verdict: self.verdict.clone(),
            fingerprint: self.fingerprint.clone(),
            environment: self.environment,
            not_restored: self.not_restored.clone(),
            ..PhaseData::default()
        }
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
    /// Move to the phase.
    Enter(Phase, PhaseData),
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

    fn deadline_of(&self, kind: OperationKind, phase: Phase) -> Duration {
        let d = &self.config.deploy;
        match phase {
            Phase::PowerOff | Phase::BootRamdisk | Phase::Shutdown => d.power_timeout,
            Phase::WaitAgent => d.boot_timeout,
            Phase::BootSystem | Phase::SshCheck if kind == OperationKind::Deploy => d.ssh_timeout,
            _ => d.write_timeout,
        }
    }

    fn deadline_ms(&self, kind: OperationKind, phase: Phase) -> i64 {
        self.now_ms() + i64::try_from(self.deadline_of(kind, phase).as_millis()).unwrap_or(i64::MAX / 4)
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
                return Ok(id);
            }
            Err(e) => return Err(e),
        };
        let id = self.deploy_environment(&actor, lease.0, environment, spec.ssh_keys).await?.id;
        tracing::info!(lease = %lease, deployment = id, "deployment started at lease start");
        Ok(id)
    }

    /// Deploys an environment on the nodes of a running lease (its holder
    /// or an admin). Nodes already `deployed` are deployed again; nodes
    /// that left the lease (suspect, dead) are left out.
    pub async fn create_deployment(&self, actor: &Actor, lease_id: i64, req: ferrum_api::DeploySpec) -> AppResult<Deployment> {
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
        let environment = self.get_environment(actor, &req.environment, None, None).await?;
        self.deploy_environment(actor, lease_id, environment, req.ssh_keys).await
    }

    /// Deploys a resolved environment (see [`App::create_deployment`]).
    async fn deploy_environment(
        &self,
        actor: &Actor,
        lease_id: i64,
        environment: Environment,
        ssh_keys: Vec<String>,
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
            let node = self.store.get_node_by_id(*id).await?;
            if node.lease != Some(lease.id) {
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
                phase: Phase::BootRamdisk,
                deadline_ms: self.deadline_ms(OperationKind::Deploy, Phase::BootRamdisk),
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
        if let Some(cmd) = data.write_command {
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
            message: op.message.clone().or(data.last_error.clone()),
            host_key: data.fingerprint.clone(),
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
                phase: Phase::PowerOff,
                deadline_ms: self.deadline_ms(OperationKind::Reset, Phase::PowerOff),
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
                same.last_error = Some(e.to_string());
                Next::Stay(same)
            }
        };
        let own_ms = elapsed_ms(started).saturating_sub(i64::try_from(external.as_millis()).unwrap_or(0));
        // The phases that only wait (for the agent, for SSH) issue nothing.
        let judged = data.issued || matches!(phase, Phase::WaitAgent | Phase::SshCheck);
        let next = match next {
            // The step that issues a phase's actions is not judged late: a
            // controller back from a long stop gives them their chance.
            Next::Stay(_) if judged && self.now_ms() > op.deadline_ms => {
                Next::Retry(format!("{} took longer than {}", phase.as_str(), humantime::format_duration(self.deadline_of(op.kind, phase))))
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
            Next::Enter(to, new) => self.enter(&op, to, &new, op.attempt, own_ms).await,
            Next::Retry(why) => {
                let attempts = i64::from(self.config.deploy.attempts);
                if op.attempt >= attempts {
                    let message = format!("gave up after {} attempt(s): {why}", op.attempt);
                    return self.finish(&op, &data, OperationInput::Failed, &message, Some(ResetOutcome::Error), own_ms).await.map(drop);
                }
                tracing::warn!(node = %op.node_name, attempt = op.attempt, reason = %why, "retrying from a power cycle");
                self.abandon_actions(&op, &data).await?;
                let first = match op.kind {
                    OperationKind::Deploy => Phase::BootRamdisk,
                    OperationKind::Reset => Phase::PowerOff,
                };
                let mut new = data.carry();
                new.last_error = Some(why);
                self.enter(&op, first, &new, op.attempt + 1, own_ms).await
            }
            Next::Finish { end, message, outcome, data: new } => {
                self.finish(&op, new.as_ref().unwrap_or(&data), end, &message, outcome, own_ms).await.map(drop)
            }
        }
    }

    /// Drops what a phase queued and that has not run: its power requests
    /// still queued, the node's unfinished agent commands.
    async fn abandon_actions(&self, op: &OperationRow, data: &PhaseData) -> AppResult<()> {
        for id in &data.power_requests {
            self.store.cancel_power_request(*id, "abandoned: the operation moved on", self.now()).await?;
        }
        self.store.cancel_agent_commands(op.node, "abandoned: the operation moved on", self.now()).await?;
        Ok(())
    }

    /// The error of the phase's first failed power request, if any.
    async fn failed_power_request(&self, data: &PhaseData) -> AppResult<Option<String>> {
        for id in &data.power_requests {
            let r = self.store.power_request(*id).await?;
            if r.state == PowerRequestState::Failed {
                return Ok(Some(r.error.unwrap_or_else(|| format!("power request {id} failed"))));
            }
        }
        Ok(None)
    }

    /// Whether every power request of the phase is done.
    async fn power_done(&self, data: &PhaseData) -> AppResult<bool> {
        for id in &data.power_requests {
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
        if !data.issued {
            let stale = self.store.cancel_agent_commands(node.id, "superseded by a new operation", self.now()).await?;
            if stale > 0 {
                tracing::info!(node = %node.name, stale, "old agent commands cancelled");
            }
            self.store.set_boot_target(node.id, BootTarget::Ramdisk).await?;
            data.generation = Some(self.store.agent_generation(node.id).await?);
            data.power_requests =
                self.enqueue_power_ops(node, &[PowerOperation::Boot(BootDevice::Pxe), PowerOperation::Power(power)], actor).await?;
            data.issued = true;
            return Ok(Next::Stay(data));
        }
        if !self.power_done(&data).await? {
            return Ok(Next::Stay(data));
        }
        let mut next = data.carry();
        next.generation = data.generation;
        Ok(Next::Enter(Phase::WaitAgent, next))
    }

    /// Whether the ramdisk's agent (a generation after `data.generation`)
    /// reported its inventory; the report when it did.
    async fn fresh_inventory(&self, node: &NodeRow, data: &PhaseData) -> AppResult<Option<InventoryReport>> {
        let Some(inventory) = self.store.node_inventory(node.id).await? else { return Ok(None) };
        if inventory.generation <= data.generation.unwrap_or(0) {
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
        let Some(id) = data.command.filter(|_| data.issued) else {
            data.command = Some(self.enqueue_agent(node, &action(), actor).await?);
            data.issued = true;
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
                        next.device = Some(format!("/dev/{}", disk.device));
                        Next::Enter(Phase::WriteImage, next)
                    }
                },
            },
            Phase::WriteImage => match self.write_image_phase(node, &spec.environment, &actor, data.clone()).await? {
                Some(next) => next,
                None => Next::Enter(Phase::InstallKeys, data.carry()),
            },
            Phase::InstallKeys => {
                let mut keys = spec.ssh_keys.clone();
                keys.push(self.controller_key()?.public_openssh());
                match self.install_keys_phase(node, env, keys, &actor, data.clone()).await? {
                    Some(next) => next,
                    None => Next::Enter(Phase::BootSystem, data.carry()),
                }
            }
            Phase::BootSystem => {
                if !data.issued {
                    self.store.set_boot_target(node.id, BootTarget::Local).await?;
                }
                let device = data.device.clone().unwrap_or_default();
                let action = || match env.boot {
                    EnvironmentBoot::Kexec => kexec_action(&device, env.root_partition),
                    EnvironmentBoot::Local => AgentAction::Reboot,
                };
                match self.agent_phase(node, action, &actor, &mut data.clone()).await? {
                    Some(Next::Stay(d)) => Next::Stay(d),
                    Some(other) => other,
                    None => Next::Enter(Phase::SshCheck, data.carry()),
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
                    data.last_error = Some(format!("SSH: {addr} does not answer yet"));
                    return Ok(Next::Stay(data));
                }
                let result = crate::ssh::run_as_root(addr, &key, &self.config.deploy.check_command, SSH_ATTEMPT, None).await;
                *external += t.elapsed();
                match result {
                    Ok(check) if check.exit_status == 0 => {
                        self.store.set_ssh_host_key(node.id, Some(&check.host_key)).await?;
                        data.fingerprint = Some(check.fingerprint.clone());
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
                        data.last_error = Some(format!("SSH: {e}"));
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
        let device = data.device.clone().unwrap_or_default();
        let action = || AgentAction::WriteImage {
            url: env.image_url.clone(),
            format: d.format,
            sha256: d.sha256.clone(),
            size: d.size,
            device: device.clone(),
        };
        let first = !data.issued;
        let waiting = self.agent_phase(node, action, actor, &mut data).await?;
        if first {
            // Kept across phases: the bytes written stay visible.
            data.write_command = data.command;
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
        let device = data.device.clone().unwrap_or_default();
        let action =
            || AgentAction::InstallKeys { device, root_partition: env.root_partition, ssh_keys: keys, hostname: node.name.clone() };
        self.agent_phase(node, action, actor, &mut data).await
    }

    async fn reset_step(&self, op: &OperationRow, node: &NodeRow, phase: Phase, mut data: PhaseData) -> AppResult<Next> {
        let actor = "reset".to_owned();
        let _ = op;
        Ok(match phase {
            Phase::PowerOff => {
                if !data.issued {
                    self.store.cancel_agent_commands(node.id, "superseded by the reset", self.now()).await?;
                    data.power_requests = self.enqueue_power_ops(node, &[PowerOperation::Power(PowerAction::Off)], &actor).await?;
                    data.issued = true;
                    return Ok(Next::Stay(data));
                }
                if self.power_done(&data).await? { Next::Enter(Phase::BootRamdisk, data.carry()) } else { Next::Stay(data) }
            }
            Phase::BootRamdisk => self.boot_ramdisk(node, PowerAction::On, &actor, data).await?,
            Phase::WaitAgent => match self.fresh_inventory(node, &data).await? {
                None => Next::Stay(data),
                Some(report) => {
                    let mut next = data.carry();
                    next.device = Some(report.storage_devices.iter().map(|d| format!("/dev/{}", d.device)).collect::<Vec<_>>().join(","));
                    Next::Enter(Phase::Wipe, next)
                }
            },
            Phase::Wipe => {
                let devices: Vec<String> =
                    data.device.clone().unwrap_or_default().split(',').filter(|d| !d.is_empty()).map(str::to_owned).collect();
                let secure = self.config.reset.secure_wipe;
                match self.agent_phase(node, || AgentAction::Wipe { devices, secure }, &actor, &mut data.clone()).await? {
                    Some(Next::Stay(d)) => Next::Stay(d),
                    Some(other) => other,
                    None => Next::Enter(Phase::Inventory, data.carry()),
                }
            }
            Phase::Inventory => match self.agent_phase(node, || AgentAction::Inventory, &actor, &mut data.clone()).await? {
                Some(Next::Stay(d)) => Next::Stay(d),
                Some(other) => other,
                None => {
                    let mut next = data.carry();
                    let verdict = self.check_against_reference(node).await?;
                    let clean = verdict.0 == ResetOutcome::Clean;
                    next.verdict = Some(verdict);
                    // Restore the default environment on a clean node only,
                    // resolved among admin-owned environments only.
                    let restore = if clean { self.reset_environment().await } else { Ok(None) };
                    match restore {
                        Ok(Some(env)) => {
                            next.environment = Some(env.id);
                            next.device = data.device.as_deref().and_then(|d| d.split(',').next()).map(str::to_owned);
                            Next::Enter(Phase::WriteImage, next)
                        }
                        Ok(None) => Next::Enter(Phase::Shutdown, next),
                        Err(e) => {
                            tracing::warn!(node = %node.name, error = %e, "reset: the default environment is not restored");
                            next.not_restored = Some(e.to_string());
                            Next::Enter(Phase::Shutdown, next)
                        }
                    }
                }
            },
            Phase::WriteImage | Phase::InstallKeys => {
                let Some(id) = data.environment else {
                    return Ok(Next::Enter(Phase::Shutdown, data.carry()));
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
                    (None, Phase::WriteImage) => Next::Enter(Phase::InstallKeys, data.carry()),
                    (None, _) => Next::Enter(Phase::Shutdown, data.carry()),
                }
            }
            Phase::Shutdown => {
                if !data.issued {
                    self.store.set_boot_target(node.id, BootTarget::Local).await?;
                    let restored = data.write_command.is_some() && data.environment.is_some();
                    if self.config.reset.power_off {
                        data.power_requests = self.enqueue_power_ops(node, &[PowerOperation::Power(PowerAction::Off)], &actor).await?;
                    } else if restored {
                        // Boot the restored environment.
                        let boot = [PowerOperation::Boot(BootDevice::Disk), PowerOperation::Power(PowerAction::Cycle)];
                        data.power_requests = self.enqueue_power_ops(node, &boot, &actor).await?;
                    }
                    data.issued = true;
                    return Ok(Next::Stay(data));
                }
                if !self.power_done(&data).await? {
                    return Ok(Next::Stay(data));
                }
                let (outcome, message) = data.verdict.clone().unwrap_or((ResetOutcome::Clean, String::new()));
                let outcome = if outcome == ResetOutcome::Clean { ResetOutcome::Clean } else { ResetOutcome::Mismatch };
                let message = match (outcome, &self.config.reset.default_environment, &data.not_restored) {
                    (ResetOutcome::Clean, _, Some(why)) => format!("reset, wiped and checked; default environment not restored: {why}"),
                    (ResetOutcome::Clean, Some(env), None) => {
                        format!("reset, wiped and checked; {env} restored (environment {})", data.environment.unwrap_or_default())
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

    /// Moves an operation to `to` (a new phase, or the same phase of a new
    /// attempt).
    async fn enter(&self, op: &OperationRow, to: Phase, data: &PhaseData, attempt: i64, own_ms: i64) -> AppResult<()> {
        let now_ms = self.now_ms();
        let mut history: Vec<(String, i64)> = serde_json::from_str(&op.history).unwrap_or_default();
        history.push((to.as_str().to_owned(), now_ms));
        let mut row = op.clone();
        row.phase = to;
        row.attempt = attempt;
        row.phase_started_ms = now_ms;
        row.deadline_ms = self.deadline_ms(op.kind, to);
        row.data = serde_json::to_string(data).map_err(|e| AppError::Internal(e.into()))?;
        row.history = serde_json::to_string(&history).map_err(|e| AppError::Internal(e.into()))?;
        row.controller_ms += own_ms;
        if self.store.update_operation(&row).await? {
            tracing::info!(node = %op.node_name, kind = %op.kind, phase = to.as_str(), attempt, "operation phase");
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

    #[test]
    fn phase_data_keeps_only_what_crosses_phases() {
        let data = PhaseData {
            issued: true,
            power_requests: vec![1, 2],
            generation: Some(3),
            command: Some(4),
            device: Some("/dev/vda".into()),
            write_command: Some(5),
            verdict: None,
            fingerprint: None,
            last_error: Some("x".into()),
            environment: Some(6),
            not_restored: None,
        };
        let next = data.carry();
        assert_eq!(next.environment, Some(6), "a reset restores the environment it resolved first");
        assert!(!next.issued);
        assert!(next.power_requests.is_empty() && next.command.is_none() && next.generation.is_none());
        assert_eq!(next.device.as_deref(), Some("/dev/vda"));
        assert_eq!(next.write_command, Some(5));
        assert_eq!(next.last_error, None);
    }

    #[test]
    fn old_data_still_reads() {
        let data: PhaseData = serde_json::from_str("{}").expect("empty data");
        assert!(!data.issued);
    }
}
