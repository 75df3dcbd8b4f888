//! Power and boot operations on nodes: requests (queued in the database, so
//! a restarted controller loses none), the power loop that carries them
//! out one at a time per BMC, and the periodic power-state sweep that
//! records what each BMC says (time and source) and turns BMC failures into
//! node states (`dead` when it does not answer, `suspect` when it answers
//! wrongly) with the named error as the reason.
//!
//! Drivers come from a [`BmcConnector`], so tests can give simulated BMCs
//! beside the real IPMI and Redfish peers. This module never logs a BMC
//! password: only `host:port` and error texts, which never hold one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::{Actor, App, AppError, AppResult};
use crate::db::{NodeRow, PowerRequestRow};
use crate::model::time::from_seconds;
use crate::model::{BmcAddress, LeaseState, NodeInput, NodeLifecycle, NodePolicy};
use crate::power::{PowerAction, PowerDriver, PowerError, PowerState, Reliability};

/// Makes a driver for a BMC address.
pub trait BmcConnector: Send + Sync + std::fmt::Debug {
    fn connect(&self, bmc: &BmcAddress, reliability: Reliability) -> Result<Arc<dyn PowerDriver>, PowerError>;
}

/// The real drivers: IPMI for `ipmi://`, Redfish for `redfish://`. A
/// driver is kept per BMC address (keyed by a hash of the whole address, so
/// new credentials get a new driver) and its session reused.
#[derive(Debug, Default)]
pub struct RealBmcs {
    drivers: Mutex<HashMap<String, Arc<dyn PowerDriver>>>,
}

impl BmcConnector for RealBmcs {
    fn connect(&self, bmc: &BmcAddress, reliability: Reliability) -> Result<Arc<dyn PowerDriver>, PowerError> {
        use sha2::Digest;
        let key = hex::encode(sha2::Sha256::digest(bmc.to_url_with_secret().as_bytes()));
        let mut drivers = self.drivers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(driver) = drivers.get(&key) {
            return Ok(driver.clone());
        }
        let driver = crate::power::connect(bmc, reliability)?;
        drivers.insert(key, driver.clone());
        Ok(driver)
    }
}

/// Simulated BMCs by `host:port`, for fast tests and benchmarks beside the
/// real peers. An address without a simulated BMC does not answer.
#[derive(Debug, Default)]
pub struct SimBmcs {
    pub bmcs: Mutex<HashMap<String, Arc<crate::power::sim::SimBmc>>>,
}

impl SimBmcs {
    /// The simulated BMC at `endpoint`, created on first use.
    pub fn bmc(&self, endpoint: &str) -> Arc<crate::power::sim::SimBmc> {
        let mut bmcs = self.bmcs.lock().unwrap_or_else(|e| e.into_inner());
        bmcs.entry(endpoint.to_owned()).or_insert_with(|| Arc::new(crate::power::sim::SimBmc::new(endpoint))).clone()
    }
}

impl BmcConnector for SimBmcs {
    fn connect(&self, bmc: &BmcAddress, _reliability: Reliability) -> Result<Arc<dyn PowerDriver>, PowerError> {
        let bmcs = self.bmcs.lock().unwrap_or_else(|e| e.into_inner());
        match bmcs.get(&bmc.endpoint()) {
            Some(sim) => Ok(sim.clone()),
            None => Err(PowerError::Unreachable { bmc: bmc.endpoint(), tries: 1 }),
        }
    }
}

pub use crate::model::PowerOperation;

/// The operation an API power action names.
pub fn power_operation(action: ferrum_api::PowerActionName) -> PowerOperation {
    use ferrum_api::PowerActionName as A;
    match action {
        A::On => PowerOperation::Power(PowerAction::On),
        A::Off => PowerOperation::Power(PowerAction::Off),
        A::SoftOff => PowerOperation::Power(PowerAction::SoftOff),
        A::Cycle => PowerOperation::Power(PowerAction::Cycle),
        A::Status => PowerOperation::Status,
    }
}

/// Shared state of the power loop.
#[derive(Debug)]
pub struct PowerRuntime {
    pub connector: Arc<dyn BmcConnector>,
    /// One operation at a time per BMC (`host:port`).
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Wakes the power loop (a request was queued).
    pub wake: Notify,
    /// Bumped each time a request finishes, for waiting callers.
    finished: watch::Sender<u64>,
}

impl PowerRuntime {
    pub fn new(connector: Arc<dyn BmcConnector>) -> Self {
        PowerRuntime { connector, locks: Mutex::new(HashMap::new()), wake: Notify::new(), finished: watch::channel(0).0 }
    }

    fn lock_for(&self, bmc: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(bmc.to_owned()).or_default().clone()
    }
}

fn reliability(app: &App) -> Reliability {
    let c = &app.config.power;
    Reliability {
        request_timeout: c.request_timeout,
        attempts: c.attempts.max(1),
        backoff: Duration::from_millis(200),
        settle_timeout: c.settle_timeout,
    }
}

impl App {
    /// Queues a power or boot operation on a node and waits (bounded by
    /// `power.request_wait`) for it. Admins may act on any node; a user on
    /// the nodes of their own running lease.
    pub async fn request_power(&self, actor: &Actor, node: &str, operation: PowerOperation) -> AppResult<PowerRequestRow> {
        let row = self.store.get_node(node).await?;
        if !actor.is_admin {
            let holder = match row.lease {
                Some(lease) => Some(self.store.get_lease(lease).await?),
                None => None,
            };
            let allowed = holder.is_some_and(|l| l.owner_id == actor.user_id && l.state == LeaseState::Active);
            if !allowed {
                return Err(AppError::Forbidden(format!(
                    "power and boot of node '{node}' are for admins and the holder of its running lease"
                )));
            }
        }
        if row.bmc_url.is_none() {
            return Err(AppError::Conflict { message: format!("node '{node}' has no BMC; enrol it with --bmc"), earliest_start: None });
        }
        let mut finished = self.power.finished.subscribe();
        let id = self.store.enqueue_power(row.id, operation, &actor.name, self.now()).await?;
        tracing::info!(node = %node, operation = operation.as_str(), actor = %actor.name, request = id, "power request queued");
        if actor.is_admin {
            self.audit(actor, "node.power", &format!("node/{node}"), serde_json::json!({ "operation": operation.as_str(), "request": id }))
                .await;
        }
        self.power.wake.notify_one();
        let wait = tokio::time::timeout(self.config.power.request_wait, async {
            loop {
                let r = self.store.power_request(id).await?;
                if r.state.is_finished() {
                    return Ok::<_, AppError>(r);
                }
                if finished.changed().await.is_err() {
                    return Ok(r);
                }
            }
        });
        match wait.await {
            Ok(r) => r,
            Err(_) => Ok(self.store.power_request(id).await?),
        }
    }

    /// A power request as it stands (admin): how a queued request the
    /// caller was told about ended (the portal's node page).
    pub async fn power_request(&self, actor: &Actor, id: i64) -> AppResult<PowerRequestRow> {
        actor.require_admin()?;
        Ok(self.store.power_request(id).await?)
    }

    /// Runs the power loop until `shutdown` turns true: carries out queued
    /// requests, and sweeps every BMC each `power.sync_interval`.
    pub async fn run_power_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut next_sweep = tokio::time::Instant::now();
        loop {
            if let Err(e) = self.carry_out_requests().await {
                tracing::error!(error = ?anyhow::Error::from(e), "power requests failed");
            }
            if tokio::time::Instant::now() >= next_sweep {
                if let Err(e) = self.sweep_power().await {
                    tracing::error!(error = ?anyhow::Error::from(e), "power sweep failed");
                }
                next_sweep = tokio::time::Instant::now() + self.config.power.sync_interval;
            }
            tokio::select! {
                () = tokio::time::sleep_until(next_sweep) => {}
                () = self.power.wake.notified() => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    /// Carries out every pending request: concurrently across nodes, in
    /// request order for each node (a boot device set before a power cycle
    /// applies to that cycle), one at a time per BMC.
    pub async fn carry_out_requests(self: &Arc<Self>) -> AppResult<usize> {
        let pending = self.store.pending_power_requests().await?;
        let count = pending.len();
        let mut by_node: HashMap<crate::model::NodeId, Vec<PowerRequestRow>> = HashMap::new();
        for request in pending {
            by_node.entry(request.node).or_default().push(request);
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (_, mut requests) in by_node {
            requests.sort_by_key(|r| r.id);
            let app = self.clone();
            tasks.spawn(async move {
                let mut failed: Option<String> = None;
                for request in requests {
                    if let Some(cause) = &failed {
                        // A boot device that could not be set must not be
                        // followed by the power cycle meant to use it. The
                        // cause goes along: whoever waits on this request
                        // (an operation) names the BMC's real answer.
                        let why = format!("skipped: an earlier request for this node failed: {cause}");
                        app.store.cancel_power_request(request.id, &why, app.now()).await?;
                        continue;
                    }
                    failed = app.carry_out(request).await?;
                }
                Ok::<_, AppError>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Err(e)) => tracing::error!(error = ?anyhow::Error::from(e), "power request failed to record"),
                Err(e) => tracing::error!(error = %e, "power request task panicked"),
                Ok(Ok(())) => {}
            }
        }
        Ok(count)
    }

    /// Carries out one request; the error when the BMC (or the node's BMC
    /// address) failed it now.
    async fn carry_out(&self, request: PowerRequestRow) -> AppResult<Option<String>> {
        let node = self.store.get_node_by_id(request.node).await?;
        let operation = request.operation;
        let Some(bmc) = node.bmc_url.as_ref().and_then(|s| BmcAddress::parse(&s.0).ok()) else {
            let error = "the node has no valid BMC address";
            self.store.finish_power_request(request.id, Some(error), self.now()).await?;
            return Ok(Some(error.to_owned()));
        };
        let lock = self.power.lock_for(&bmc.endpoint());
        let _one_at_a_time = lock.lock().await;
        // Another task may have finished it while we waited for the lock.
        // (Or cancelled: that is no failure of this BMC.)
        if self.store.power_request(request.id).await?.state.is_finished() {
            return Ok(None);
        }
        self.store.set_power_request_running(request.id).await?;
        let span =
            tracing::info_span!("power", node = %node.name, bmc = %bmc.endpoint(), operation = operation.as_str(), request = request.id);
        let outcome = tracing::Instrument::instrument(self.run_operation(&bmc, operation), span).await;
        let now = self.now();
        // What the answer says of the node is written before the request
        // is finished: whoever waits on the request (an API call, an
        // operation) then reads a node that already shows it.
        let failure = match outcome {
            Ok(state) => {
                if let Some(state) = state {
                    self.store.record_power(node.id, state.as_str(), "request", now).await?;
                }
                self.bmc_answered(&node).await?;
                self.store.finish_power_request(request.id, None, now).await?;
                None
            }
            Err(e) => {
                tracing::warn!(node = %node.name, error = %e, "power request failed");
                let error = e.to_string();
                self.bmc_failed(&node, &e).await?;
                self.store.finish_power_request(request.id, Some(&error), now).await?;
                Some(error)
            }
        };
        self.power.finished.send_modify(|n| *n += 1);
        self.ops_wake.notify_one();
        Ok(failure)
    }

    /// The operation, and the power state it leaves when known.
    async fn run_operation(&self, bmc: &BmcAddress, operation: PowerOperation) -> Result<Option<PowerState>, PowerError> {
        let driver = self.power.connector.connect(bmc, reliability(self))?;
        match operation {
            PowerOperation::Status => driver.power_state().await.map(Some),
            PowerOperation::Boot(device) => driver.set_boot_device(device).await.map(|()| None),
            PowerOperation::Power(action) => {
                driver.power(action).await?;
                Ok(Some(match action {
                    PowerAction::On | PowerAction::Cycle => PowerState::On,
                    PowerAction::Off | PowerAction::SoftOff => PowerState::Off,
                }))
            }
        }
    }

    /// Asks every node's BMC for its power state, a bounded number at once.
    pub async fn sweep_power(self: &Arc<Self>) -> AppResult<usize> {
        let nodes: Vec<NodeRow> =
            self.store.list_nodes().await?.into_iter().filter(|n| n.bmc_url.is_some() && n.policy != NodePolicy::Retired).collect();
        let limit = Arc::new(tokio::sync::Semaphore::new(self.config.power.sweep_concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for node in nodes {
            let (app, limit) = (self.clone(), limit.clone());
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                app.sweep_one(node).await
            });
        }
        let mut swept = 0;
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Ok(())) => swept += 1,
                Ok(Err(e)) => tracing::error!(error = ?anyhow::Error::from(e), "power sweep of a node failed to record"),
                Err(e) => tracing::error!(error = %e, "power sweep task panicked"),
            }
        }
        Ok(swept)
    }

    async fn sweep_one(&self, node: NodeRow) -> AppResult<()> {
        let Some(bmc) = node.bmc_url.as_ref().and_then(|s| BmcAddress::parse(&s.0).ok()) else { return Ok(()) };
        let lock = self.power.lock_for(&bmc.endpoint());
        let _one_at_a_time = lock.lock().await;
        match self.run_operation(&bmc, PowerOperation::Status).await {
            Ok(Some(state)) => {
                self.store.record_power(node.id, state.as_str(), "sync", self.now()).await?;
                self.bmc_answered(&node).await
            }
            Ok(None) => Ok(()),
            Err(e) => {
                tracing::warn!(node = %node.name, error = %e, "power sweep: BMC failed");
                self.bmc_failed(&node, &e).await
            }
        }
    }

    /// A BMC failure becomes the node's state, with the error as reason.
    async fn bmc_failed(&self, node: &NodeRow, e: &PowerError) -> AppResult<()> {
        let node = self.store.get_node_by_id(node.id).await?;
        let status = node.status();
        self.move_nodes(&[(&status, None)], e.node_input(), "system", &e.to_string()).await?;
        Ok(())
    }

    /// A dead node whose BMC answers again is checked again (enrolment).
    async fn bmc_answered(&self, node: &NodeRow) -> AppResult<()> {
        // Read the state now: the row in hand was read before the BMC call.
        let node = self.store.get_node_by_id(node.id).await?;
        if node.state == NodeLifecycle::Dead {
            let status = node.status();
            self.move_nodes(&[(&status, None)], NodeInput::Repaired, "system", "BMC answers again").await?;
        }
        // Let the clock loop enrol it (and anything else waiting) now.
        self.wake.notify_one();
        Ok(())
    }
}

/// When a power reading was taken, for views.
pub fn observed_at(at: i64) -> chrono::DateTime<chrono::Utc> {
    from_seconds(at)
}
