//! Conversions from domain rows to API views. The only place that decides
//! what a caller may see of a row: BMC details for admins only (never the
//! password), lease ids and owners of others' leases never.

use ferrum_api as api;

use crate::app::nodes::NodeDetail;
use crate::db::{BusyRow, LeaseRow, NodeEventRow, NodeRow, ProjectRow, UserRow};
use crate::model::BmcAddress;
use crate::model::node::shown_state;
use crate::model::time::from_seconds;

pub fn node(row: NodeRow, reference: Option<serde_json::Value>, is_admin: bool) -> api::Node {
    let bmc = if is_admin {
        row.bmc_url.as_ref().and_then(|s| BmcAddress::parse(&s.0).ok()).map(|b| api::BmcView {
            driver: b.driver.as_str().to_owned(),
            host: b.host.clone(),
            port: b.port,
            username: b.username.clone(),
            system_id: b.system_id.clone(),
        })
    } else {
        None
    };
    api::Node {
        state: shown_state(row.state, row.policy),
        policy: row.policy.into(),
        name: row.name,
        site: row.site,
        cluster: row.cluster,
        macs: row.macs,
        ip: row.ip,
        properties: row.properties.into_iter().collect(),
        bmc,
        boot_target: row.boot_target.into(),
        power: row.power.map(|(state, at, source)| api::PowerReading { state, observed_at: from_seconds(at), source }),
        reference,
        created_at: from_seconds(row.created_at),
        updated_at: from_seconds(row.updated_at),
    }
}

pub fn node_detail(d: NodeDetail, is_admin: bool) -> api::Node {
    node(d.row, d.reference, is_admin)
}

fn parse_shown(s: &str) -> api::NodeState {
    api::NodeState::ALL.into_iter().find(|st| st.as_str() == s).unwrap_or(api::NodeState::Enrolling)
}

pub fn node_event(e: NodeEventRow) -> api::NodeEvent {
    api::NodeEvent { at: from_seconds(e.at), actor: e.actor, from: parse_shown(&e.from), to: parse_shown(&e.to), reason: e.reason }
}

pub fn lease(l: LeaseRow) -> api::Lease {
    api::Lease {
        id: l.id.0,
        owner: l.owner,
        project: l.project,
        lease_type: l.lease_type,
        state: l.state,
        start: from_seconds(l.start),
        end: from_seconds(l.end),
        nodes: l.nodes.into_iter().map(|(_, name)| name).collect(),
        exotic: l.exotic,
        filter: l.filter,
        deploy: l.deploy.and_then(|d| serde_json::from_str(&d).ok()),
        reason: l.reason,
        created_at: from_seconds(l.created_at),
    }
}

pub fn busy(b: BusyRow, caller: crate::model::UserId) -> api::BusyInterval {
    let visible = b.lease.0 >= 0;
    let mine = b.owner_id == caller;
    api::BusyInterval {
        start: from_seconds(b.start),
        end: from_seconds(b.end),
        lease_type: b.lease_type,
        state: b.state,
        lease: visible.then_some(b.lease.0),
        owner: visible.then_some(b.owner),
        mine,
    }
}

pub fn project(p: ProjectRow) -> api::Project {
    api::Project {
        name: p.name,
        class: p.class,
        quota_node_hours: p.quota_node_hours,
        members: p.members,
        manager: p.manager,
        created_at: from_seconds(p.created_at),
    }
}

pub fn user(u: UserRow) -> api::User {
    api::User {
        name: u.name,
        role: if u.is_admin { api::Role::Admin } else { api::Role::User },
        email: u.email,
        projects: u.projects,
        created_at: from_seconds(u.created_at),
        disabled_at: u.disabled.as_ref().map(|d| from_seconds(d.at)),
        disabled_reason: u.disabled.map(|d| d.reason),
    }
}

pub fn power_operation(r: crate::db::PowerRequestRow, power: Option<String>) -> api::PowerOperation {
    api::PowerOperation {
        id: r.id,
        node: r.node_name,
        operation: r.operation,
        state: r.state,
        power,
        error: r.error,
        requested_by: r.requested_by,
        requested_at: from_seconds(r.requested_at),
        finished_at: r.finished_at.map(from_seconds),
    }
}

pub fn agent_command(row: crate::db::AgentCommandRow, node: &str) -> Result<api::AgentCommandView, super::error::ApiError> {
    let action = serde_json::from_str(&row.action).map_err(|e| crate::app::AppError::Internal(e.into()))?;
    Ok(api::AgentCommandView {
        id: row.id,
        node: node.to_owned(),
        action,
        requested_by: row.requested_by,
        state: row.state,
        generation: row.generation,
        done_bytes: u64::try_from(row.done_bytes).unwrap_or(0),
        total_bytes: row.total_bytes.and_then(|t| u64::try_from(t).ok()),
        error: row.error,
        created_at: from_seconds(row.created_at),
        updated_at: from_seconds(row.updated_at),
    })
}
