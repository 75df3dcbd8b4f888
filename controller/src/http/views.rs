//! Conversions from domain rows to API views, and the API's privacy rules,
//! written once: every handler that answers a row goes through here, and
//! nothing else decides what a caller may see of it.
//!
//! The rules (README "Who sees what"; SPEC §9: a user sees and acts only
//! on their own leases, node BMC data is admin-only):
//! - Admins see everything but secrets (BMC passwords and tokens are never
//!   shown; a token is answered once, when it is made).
//! - A node's BMC (the enrolled address, and the management adapters of its
//!   reference description) is admin-only: [`node`], [`node_inventory`].
//! - Other users' names, projects and lease ids are admin-only: a user
//!   sees his own leases (the application layer answers 404 for others'),
//!   and in the calendar others' intervals without owner or lease id
//!   ([`busy`]). Project peers are other users here: they share their
//!   project's description, members and usage, not each other's leases.
//! - Node events ([`node_events`]): everyone sees when a node changed and
//!   from which state to which. A user sees the actor when it is himself or
//!   the system; an admin shows as "admin", anyone else as "another user".
//!   He sees the reason when he caused the event, when it happened while he
//!   held the node, and for an admin's maintenance or retirement (a note
//!   for users), with the BMC's addresses and other users' and projects'
//!   names taken out; other reasons are for admins.
//! - A user's personal data ([`personal_data`], GDPR export): the user
//!   himself or an admin (the application layer checks), whole, never a
//!   token, a hash or a link (the rows it is made of hold none).
//!
//! Must not: read the database or decide access (404/403): the
//! application layer does; this only shapes what an allowed read shows.

use ferrum_api as api;

use crate::app::Actor;
use crate::app::agent::NodeInventory;
use crate::app::nodes::{NodeDetail, NodeEvents};
use crate::db::{BusyRow, LeaseRow, NodeEventRow, NodeRow, ProjectRow, UserRow};
use crate::model::BmcAddress;
use crate::model::node::shown_state;
use crate::model::time::from_seconds;

/// The actor shown to non-admins for an event another user caused.
pub const ANOTHER_USER: &str = "another user";

/// The actor of the controller's own loops.
pub const SYSTEM_ACTOR: &str = "system";

/// The actor shown to non-admins for an event an admin caused.
pub const ADMIN_ACTOR: &str = "admin";

/// What stands for another user's or project's name taken out of a reason.
pub const NAME_REDACTED: &str = "<name>";

/// The reason shown to non-admins in place of one that is not theirs.
pub const HIDDEN_REASON: &str = "(shown to admins only)";

/// What stands for a BMC address taken out of a text shown to non-admins.
pub const BMC_REDACTED: &str = "<bmc>";

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
        reference: reference.map(|r| reference_view(r, is_admin)),
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

/// A reference description as `is_admin` may see it: for others, without
/// its BMC (management network adapters, a `bmc` entry).
fn reference_view(mut reference: serde_json::Value, is_admin: bool) -> serde_json::Value {
    if !is_admin {
        if let Some(adapters) = reference.get_mut("network_adapters").and_then(serde_json::Value::as_array_mut) {
            adapters.retain(|a| !is_management_adapter(a));
        }
        if let Some(map) = reference.as_object_mut() {
            map.remove("bmc");
        }
    }
    reference
}

/// A reference network adapter that is a BMC's: `management: true`, or a
/// device or name that says `bmc`.
fn is_management_adapter(adapter: &serde_json::Value) -> bool {
    let says_bmc = |key: &str| adapter.get(key).and_then(serde_json::Value::as_str).is_some_and(|v| v.to_ascii_lowercase().contains("bmc"));
    adapter.get("management").and_then(serde_json::Value::as_bool).unwrap_or(false) || says_bmc("device") || says_bmc("name")
}

/// The texts that name a node's BMC: its enrolled `host:port` and host, and
/// the addresses of its reference's management adapters. Longest first, so
/// that `host:port` goes before `host`.
fn bmc_names(node: &NodeDetail) -> Vec<String> {
    let mut names = Vec::new();
    if let Some(bmc) = node.row.bmc_url.as_ref().and_then(|s| BmcAddress::parse(&s.0).ok()) {
        names.push(format!("{}:{}", bmc.host, bmc.port));
        names.push(bmc.host.clone());
    }
    let adapters = node.reference.as_ref().and_then(|r| r.get("network_adapters")).and_then(serde_json::Value::as_array);
    for adapter in adapters.into_iter().flatten().filter(|a| is_management_adapter(a)) {
        for key in ["ip", "ip6", "network_address"] {
            if let Some(v) = adapter.get(key).and_then(serde_json::Value::as_str) {
                names.push(v.to_owned());
            }
        }
    }
    names.retain(|n| !n.is_empty());
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    names
}

/// `text` with every BMC name replaced by [`BMC_REDACTED`].
fn without_bmc(text: &str, bmc_names: &[String]) -> String {
    bmc_names.iter().fold(text.to_owned(), |t, name| t.replace(name.as_str(), BMC_REDACTED))
}

/// `text` without the whole words of `names` (a name's characters are
/// letters, digits, `-`, `_` and `.`; a word ends where they do).
fn without_names(text: &str, names: &[String]) -> String {
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let mut out = text.to_owned();
    for name in names.iter().filter(|n| !n.is_empty()) {
        let mut kept = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(at) = rest.find(name.as_str()) {
            let end = at + name.len();
            let before = rest[..at].chars().next_back().is_some_and(is_name_char);
            let after = rest[end..].chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
            kept.push_str(&rest[..at]);
            kept.push_str(if before || after { name.as_str() } else { NAME_REDACTED });
            rest = &rest[end..];
        }
        kept.push_str(rest);
        out = kept;
    }
    out
}

/// A node's events as `viewer` may see them (see the module's rules).
pub fn node_events(events: NodeEvents, viewer: &Actor) -> Vec<api::NodeEvent> {
    let bmc = if viewer.is_admin { Vec::new() } else { bmc_names(&events.node) };
    let seen = EventSight { viewer, held: &events.held, admins: &events.admins, names: &events.names, bmc: &bmc };
    events.events.into_iter().map(|e| seen.event(e)).collect()
}

/// What a non-admin's view of one event depends on.
struct EventSight<'a> {
    viewer: &'a Actor,
    held: &'a [(i64, i64)],
    admins: &'a [String],
    names: &'a [String],
    bmc: &'a [String],
}

impl EventSight<'_> {
    fn event(&self, e: NodeEventRow) -> api::NodeEvent {
        let (from, to) = (parse_shown(&e.from), parse_shown(&e.to));
        let (actor, reason) = if self.viewer.is_admin {
            (e.actor, e.reason)
        } else {
            let own = e.actor == self.viewer.name;
            let by_admin = self.admins.contains(&e.actor);
            let while_held = self.held.iter().any(|&(start, end)| (start..=end).contains(&e.at));
            let policy = [api::NodeState::Maintenance, api::NodeState::Retired];
            let note = by_admin && (policy.contains(&from) || policy.contains(&to));
            let actor = if own || e.actor == SYSTEM_ACTOR {
                e.actor
            } else if by_admin {
                ADMIN_ACTOR.to_owned()
            } else {
                ANOTHER_USER.to_owned()
            };
            let reason = if own || while_held || note {
                without_names(&without_bmc(&e.reason, self.bmc), self.names)
            } else {
                HIDDEN_REASON.to_owned()
            };
            (actor, reason)
        };
        api::NodeEvent { at: from_seconds(e.at), actor, from, to, reason }
    }
}

/// A node's reference beside its agent's report, as `is_admin` may see it
/// (the reference without its BMC for others; the report and the
/// differences never name a BMC: the agent cannot see it).
pub fn node_inventory(node: String, inv: NodeInventory, is_admin: bool) -> api::NodeInventory {
    api::NodeInventory {
        node,
        reference: inv.reference.map(|r| reference_view(r, is_admin)),
        reported: inv.reported.map(|(row, report)| api::ReportedInventory {
            generation: row.generation,
            reported_at: from_seconds(row.reported_at),
            report,
        }),
        differences: inv.differences,
    }
}

pub fn lease(l: LeaseRow) -> api::Lease {
    let groups = l.groups.as_deref().and_then(|g| crate::app::leases::StoredGroup::parse(g, &l.nodes));
    api::Lease {
        id: l.id.0,
        owner: l.owner,
        project: l.project,
        lease_type: l.lease_type.into(),
        state: l.state.into(),
        start: from_seconds(l.start),
        end: from_seconds(l.end),
        nodes: l.nodes.into_iter().map(|(_, name)| name).collect(),
        exotic: l.exotic,
        filter: l.filter,
        groups,
        deploy: l.deploy.and_then(|d| serde_json::from_str(&d).ok()),
        name: l.name,
        reason: l.reason,
        created_at: from_seconds(l.created_at),
    }
}

/// A busy interval of the calendar: its lease id and owner only for the
/// owner and admins.
pub fn busy(b: BusyRow, viewer: &Actor) -> api::BusyInterval {
    let mine = b.owner_id == viewer.user_id;
    let visible = mine || viewer.is_admin;
    api::BusyInterval {
        start: from_seconds(b.start),
        end: from_seconds(b.end),
        lease_type: b.lease_type.into(),
        state: b.state.into(),
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
        operation: r.operation.as_str().to_owned(),
        state: r.state.as_str().to_owned(),
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
        state: row.state.as_str().to_owned(),
        generation: row.generation,
        done_bytes: u64::try_from(row.done_bytes).unwrap_or(0),
        total_bytes: row.total_bytes.and_then(|t| u64::try_from(t).ok()),
        error: row.error,
        created_at: from_seconds(row.created_at),
        updated_at: from_seconds(row.updated_at),
    })
}

pub fn usage_record(r: crate::db::UsageRecordRow) -> api::usage::UsageRecord {
    api::usage::UsageRecord {
        id: r.id,
        lease: r.lease_id.0,
        user: r.user,
        project: r.project,
        node: r.node,
        site: r.site,
        cluster: r.cluster,
        gpu_model: r.gpu_model,
        gpu_count: r.gpu_count,
        lease_type: r.lease_type.into(),
        reserved_start: from_seconds(r.reserved_start),
        reserved_end: from_seconds(r.reserved_end),
        start: from_seconds(r.start),
        end: from_seconds(r.end),
        node_hours: super::usage::hours(r.end - r.start),
    }
}

/// A user's personal data, for the user himself or an admin (the
/// application layer checked): everything stored about him but secrets
/// (tokens, hashes, links), which its rows never hold.
pub fn personal_data(d: crate::app::privacy::PersonalData) -> api::PersonalData {
    let now = d.exported_at;
    api::PersonalData {
        exported_at: from_seconds(d.exported_at),
        user: user(d.user),
        affiliation: d.affiliation,
        status: d.status.as_deref().and_then(api::accounts::RequesterStatus::parse),
        tokens: d.tokens.into_iter().map(|t| super::accounts::token_view(t, now)).collect(),
        ssh_keys: d.ssh_keys.into_iter().map(super::accounts::ssh_key_view).collect(),
        account_requests: d.account_requests.into_iter().map(|r| super::account_requests::request_view(r, None)).collect(),
        leases: d.leases.into_iter().map(lease).collect(),
        usage_records: d.usage_records.into_iter().map(usage_record).collect(),
        notifications: d
            .notifications
            .into_iter()
            .map(|n| api::Notification {
                lease: n.lease.0,
                kind: n.kind.as_str().to_owned(),
                subject: n.subject,
                body: n.body,
                created_at: from_seconds(n.created_at),
                read_at: n.read_at.map(from_seconds),
            })
            .collect(),
    }
}
