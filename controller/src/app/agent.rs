//! The controller's side of the agent protocol (`ferrum_api::agent`), and
//! what admins see of it: reported inventories, the check against the
//! reference description, and agent commands.
//!
//! Owns: registration (a one-time token from the kernel command line →
//! a session and a new agent generation), storing inventories (never over
//! a newer generation's), handing out commands in order (long polling),
//! and recording their progress and results. Must not: decide what to do
//! to a node (deploy and reset orchestration enqueue commands; this module
//! only carries them), or log a token.

use std::time::Duration;

use ferrum_api::agent::{
    AGENT_PROTOCOL, AgentAction, AgentCommand, AgentRegister, AgentSession, CommandProgress, CommandResult, InventoryUpload,
};
use ferrum_api::inventory::{Difference, InventoryReport};
use ferrum_check::{Tolerances, compare};

use super::accounts::{Actor, token_hash};
use super::{App, AppError, AppResult};
use crate::db::{AgentCommandRow, AgentSessionRow, InventoryRow};

/// How long an agent session lasts (a deploy or a wipe fits in it).
const SESSION_TTL: i64 = 24 * 3600;
/// The longest a `GET /agent/v1/command` is held open.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// The agent behind a request: its node and its session's generation.
#[derive(Clone, Debug)]
pub struct AgentCaller(AgentSessionRow);

impl AgentCaller {
    pub fn node(&self) -> &str {
        &self.0.name
    }

    pub fn row(&self) -> &AgentSessionRow {
        &self.0
    }
}

/// A node's inventory as the API shows it.
#[derive(Debug)]
pub struct NodeInventory {
    pub reference: Option<serde_json::Value>,
    pub reported: Option<(InventoryRow, InventoryReport)>,
    /// `None` until both sides exist.
    pub differences: Option<Vec<Difference>>,
}

fn stale(generation: i64, current: i64) -> AppError {
    AppError::Conflict {
        message: format!("stale_generation: this agent session is generation {generation}; the node's agent is now at {current}"),
        earliest_start: None,
    }
}

impl App {
    /// A ramdisk's agent registers with its one-time token, from the
    /// address the token is bound to (the one that fetched its script).
    pub async fn agent_register(&self, req: AgentRegister, peer: std::net::IpAddr) -> AppResult<AgentSession> {
        if req.protocol != AGENT_PROTOCOL {
            return Err(AppError::bad_request(format!(
                "protocol: this controller speaks agent protocol {AGENT_PROTOCOL}, the agent {}",
                req.protocol
            )));
        }
        let now = self.now();
        let peer = peer.to_canonical().to_string();
        let Some(node) = self.store.consume_agent_token(&token_hash(&req.token), &req.node, &peer, now).await? else {
            tracing::warn!(node = %req.node, %peer, "agent registration refused: unknown, used or expired token, or another address than the one it was given to");
            return Err(AppError::Unauthenticated);
        };
        let session = format!("fagent_{}", super::accounts::new_token()?.trim_start_matches("ferrum_"));
        let generation = self.store.open_agent_session(node, &token_hash(&session), now, now + SESSION_TTL).await?;
        tracing::info!(node = %req.node, generation, agent_version = %req.agent_version, "agent registered");
        Ok(AgentSession { session, node: req.node, generation })
    }

    /// The agent owning `session`, if the session is current.
    pub async fn agent_caller(&self, session: &str) -> AppResult<AgentCaller> {
        match self.store.agent_session(&token_hash(session), self.now()).await? {
            Some(row) => Ok(AgentCaller(row)),
            None => Err(AppError::Unauthenticated),
        }
    }

    fn check_generation(caller: &AgentCaller, generation: i64) -> AppResult<()> {
        let s = &caller.0;
        if generation != s.generation {
            return Err(AppError::bad_request(format!("generation: this session is generation {}, not {generation}", s.generation)));
        }
        if s.generation < s.current_generation {
            return Err(stale(s.generation, s.current_generation));
        }
        Ok(())
    }

    pub async fn agent_inventory(&self, caller: &AgentCaller, upload: InventoryUpload) -> AppResult<()> {
        Self::check_generation(caller, upload.generation)?;
        let text = serde_json::to_string(&upload.report).map_err(|e| AppError::Internal(e.into()))?;
        if !self.store.store_inventory(caller.0.node, upload.generation, &text, self.now()).await? {
            return Err(stale(upload.generation, caller.0.current_generation));
        }
        tracing::info!(node = %caller.node(), generation = upload.generation, "inventory reported");
        self.ops_wake.notify_one();
        Ok(())
    }

    /// The next command for the caller's node, waiting up to `wait` for one.
    pub async fn agent_next_command(&self, caller: &AgentCaller, wait: Duration) -> AppResult<AgentCommand> {
        let s = &caller.0;
        if s.generation < s.current_generation {
            return Err(stale(s.generation, s.current_generation));
        }
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        loop {
            // Registered before the check, so an enqueue in between still wakes us.
            let woken = self.agent_wake.notified();
            // A newer registration (the node rebooted into a new ramdisk)
            // supersedes this session even while it waits.
            let current = self.store.agent_generation(s.node).await?;
            if s.generation < current {
                return Err(stale(s.generation, current));
            }
            if let Some(row) = self.store.next_agent_command(s.node, s.generation, self.now()).await? {
                let action: AgentAction = serde_json::from_str(&row.action).map_err(|e| AppError::Internal(e.into()))?;
                tracing::info!(node = %s.name, command = row.id, kind = action.kind(), "agent command sent");
                return Ok(AgentCommand { id: row.id, generation: s.generation, action });
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return Ok(AgentCommand { id: 0, generation: s.generation, action: AgentAction::Wait });
            }
        }
    }

    pub async fn agent_progress(&self, caller: &AgentCaller, id: i64, p: CommandProgress) -> AppResult<()> {
        Self::check_generation(caller, p.generation)?;
        let done = i64::try_from(p.done).map_err(|_| AppError::bad_request("done: too large"))?;
        let total = p.total.map(i64::try_from).transpose().map_err(|_| AppError::bad_request("total: too large"))?;
        if !self.store.agent_command_progress(id, caller.0.node, p.generation, done, total, self.now()).await? {
            return Err(AppError::NotFound(format!("no command {id} in progress for this agent")));
        }
        Ok(())
    }

    pub async fn agent_result(&self, caller: &AgentCaller, id: i64, r: CommandResult) -> AppResult<()> {
        Self::check_generation(caller, r.generation)?;
        if !self.store.finish_agent_command(id, caller.0.node, r.generation, r.error.as_deref(), self.now()).await? {
            return Err(AppError::NotFound(format!("no command {id} in progress for this agent")));
        }
        match &r.error {
            None => tracing::info!(node = %caller.node(), command = id, "agent command done"),
            Some(e) => tracing::warn!(node = %caller.node(), command = id, error = %e, "agent command failed"),
        }
        self.agent_wake.notify_waiters();
        self.ops_wake.notify_one();
        Ok(())
    }

    /// Queues a command for a node's agent (admin; deploys and resets use
    /// the same path).
    pub async fn request_agent_command(&self, actor: &Actor, name: &str, action: AgentAction) -> AppResult<AgentCommandRow> {
        actor.require_admin()?;
        if action == AgentAction::Wait {
            return Err(AppError::bad_request("kind: 'wait' is the agent's idle answer, not a command"));
        }
        if let AgentAction::WriteImage { size, .. } = &action
            && (*size == 0 || i64::try_from(*size).is_err())
        {
            return Err(AppError::bad_request("size: the decoded size in bytes, from 1 to 2^63-1"));
        }
        let node = self.store.get_node(name).await?;
        let text = serde_json::to_string(&action).map_err(|e| AppError::Internal(e.into()))?;
        let row = self.store.enqueue_agent_command(node.id, &text, &actor.name, self.now()).await?;
        self.agent_wake.notify_waiters();
        self.audit(actor, "node.agent_command", &format!("node/{name}"), serde_json::json!({ "command": row.id, "action": action.kind() }))
            .await;
        Ok(row)
    }

    pub async fn agent_command_list(&self, actor: &Actor, name: &str) -> AppResult<Vec<AgentCommandRow>> {
        actor.require_admin()?;
        let node = self.store.get_node(name).await?;
        Ok(self.store.agent_commands(node.id).await?)
    }

    /// The node's reference description, its agent's latest report, and
    /// their differences.
    pub async fn node_inventory(&self, name: &str) -> AppResult<NodeInventory> {
        let node = self.store.get_node(name).await?;
        let reference = match self.store.node_reference(node.id).await? {
            Some(text) => Some(serde_json::from_str::<serde_json::Value>(&text).map_err(|e| AppError::Internal(e.into()))?),
            None => None,
        };
        let reported = match self.store.node_inventory(node.id).await? {
            Some(row) => {
                let report: InventoryReport = serde_json::from_str(&row.report).map_err(|e| AppError::Internal(e.into()))?;
                Some((row, report))
            }
            None => None,
        };
        let differences = match (&reference, &reported) {
            (Some(r), Some((_, report))) => Some(compare(r, report, &Tolerances::default())),
            _ => None,
        };
        Ok(NodeInventory { reference, reported, differences })
    }
}
