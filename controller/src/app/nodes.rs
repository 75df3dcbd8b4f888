//! Nodes and inventory: enrolment (one node, or a Grid'5000 Reference API
//! import), listing with the filter language, operator intent
//! (maintenance), events, and the node transitions the clock loop applies.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ferrum_api::limits;
use sha2::{Digest, Sha256};

use super::{Actor, App, AppError, AppResult};
use crate::config::SiteConfig;
use crate::db::{ImportOutcome, NewEvent, NodeEventRow, NodeRow, NodeStatus, NodeTransition, NodeWrite, Secret};
use crate::filter::{Filter, FilterErrorKind};
use crate::model::node::shown_state;
use crate::model::properties::{self, PropValue, Properties};
use crate::model::{BmcAddress, LeaseId, MacAddr, NodeInput, NodePolicy};
use crate::reference;

/// A node to enrol, as the API received it.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub name: String,
    pub site: String,
    pub cluster: String,
    pub macs: Vec<String>,
    pub ip: Option<String>,
    pub bmc: Option<String>,
    pub properties: serde_json::Map<String, serde_json::Value>,
    pub reference: Option<serde_json::Value>,
}

/// One description of a reference import.
#[derive(Clone, Debug)]
pub struct ReferenceUpload {
    pub site: String,
    pub cluster: String,
    pub description: serde_json::Value,
}

/// A node with its reference description, for `GET /nodes/{name}`.
#[derive(Clone, Debug)]
pub struct NodeDetail {
    pub row: NodeRow,
    pub reference: Option<serde_json::Value>,
}

/// A node's events, for `GET /nodes/{name}/events`.
#[derive(Clone, Debug)]
pub struct NodeEvents {
    pub events: Vec<NodeEventRow>,
    /// The node (its BMC and reference name addresses no user may read).
    pub node: NodeDetail,
    /// When the caller held the node: `(start, end)` of each of his leases
    /// on it (empty for admins, who see everything).
    pub held: Vec<(crate::model::time::Seconds, crate::model::time::Seconds)>,
    /// The admins' names (their events show as `admin`; empty for admins).
    pub admins: Vec<String>,
    /// The names of the other users and of the projects the caller is not
    /// in, which a reason shown to him must not carry (empty for admins).
    pub names: Vec<String>,
}

fn validate_node_name(what: &str, name: &str) -> AppResult<()> {
    // The length first: the name check's message quotes the name.
    super::one_line(if what == "node" { "name" } else { what }, name, limits::NAME)?;
    super::accounts::validate_name(what, name)
}

fn parse_macs(macs: &[String]) -> AppResult<Vec<String>> {
    if macs.is_empty() {
        return Err(AppError::bad_request("macs: give at least one boot NIC MAC address"));
    }
    if macs.len() > MAX_MACS {
        return Err(AppError::bad_request(format!("macs: at most {MAX_MACS} boot NICs")));
    }
    let mut out = Vec::with_capacity(macs.len());
    for (i, mac) in macs.iter().enumerate() {
        out.push(boot_mac(mac).map_err(|e| AppError::bad_request(format!("macs[{i}]: {e}")))?);
    }
    let unique: BTreeSet<&String> = out.iter().collect();
    if unique.len() != out.len() {
        return Err(AppError::bad_request("macs: the same MAC address is listed twice"));
    }
    Ok(out)
}

/// A node has at most this many boot NICs.
const MAX_MACS: usize = 32;

/// A boot NIC's MAC address, normalised: well formed, unicast and not
/// all-zero (a group or zero address would match no NIC, or every one).
fn boot_mac(text: &str) -> Result<String, String> {
    let mac: MacAddr = text.parse().map_err(|e| format!("{e}"))?;
    mac.check_unicast().map_err(|why| format!("'{mac}' {why}"))?;
    Ok(mac.to_string())
}

fn parse_ip(ip: Option<&str>) -> AppResult<Option<String>> {
    let Some(ip) = ip else { return Ok(None) };
    super::one_line("ip", ip, limits::IP)?;
    ip.parse::<IpAddr>().map(|a| Some(a.to_string())).map_err(|_| AppError::bad_request(format!("ip: '{ip}' is not an IP address")))
}

fn props_to_json(props: &Properties) -> serde_json::Map<String, serde_json::Value> {
    props.iter().map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or(serde_json::Value::Null))).collect()
}

/// A node has at most this many admin-set properties.
const MAX_ADMIN_PROPERTIES: usize = 256;

/// Admin-set properties: scalar values under identifier-like names.
fn validate_admin_properties(props: &serde_json::Map<String, serde_json::Value>) -> AppResult<()> {
    if props.len() > MAX_ADMIN_PROPERTIES {
        return Err(AppError::bad_request(format!("properties: at most {MAX_ADMIN_PROPERTIES}")));
    }
    for (k, v) in props {
        if k.len() > 64 {
            return Err(AppError::bad_request("properties: property names are at most 64 characters"));
        }
        let name_ok = !k.is_empty()
            && k.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && k.chars().next().is_some_and(|c| c.is_ascii_lowercase());
        if !name_ok {
            return Err(AppError::bad_request(format!(
                "properties.{k}: property names are lowercase letters, digits and '_', starting with a letter"
            )));
        }
        if matches!(k.as_str(), "site" | "cluster" | "host") {
            return Err(AppError::bad_request(format!("properties.{k}: set by the node's {k}, not as a property")));
        }
        if properties::DERIVED.contains(&k.as_str()) {
            return Err(AppError::bad_request(format!("properties.{k}: derived from the node by ferrum, not set as a property")));
        }
        if !(v.is_boolean() || v.is_string() || v.is_number()) {
            return Err(AppError::bad_request(format!("properties.{k}: must be a string, a number or a boolean")));
        }
        if let Some(text) = v.as_str() {
            super::one_line(&format!("properties.{k}"), text, limits::PROPERTY_VALUE)?;
        }
    }
    Ok(())
}

fn reference_sha256(description: &serde_json::Value) -> String {
    // serde_json's maps are ordered, so this text is canonical.
    hex::encode(Sha256::digest(description.to_string().as_bytes()))
}

fn base_properties(name: &str, site: &str, cluster: &str) -> Properties {
    let mut p = Properties::new();
    p.insert("site".into(), PropValue::from(site));
    p.insert("cluster".into(), PropValue::from(cluster));
    p.insert("host".into(), PropValue::from(name));
    properties::with_standard_defaults(p)
}

impl App {
    /// Enrols one node (admin).
    pub async fn add_node(&self, actor: &Actor, spec: NodeSpec) -> AppResult<NodeRow> {
        actor.require_admin()?;
        validate_node_name("node", &spec.name)?;
        validate_node_name("site", &spec.site)?;
        validate_node_name("cluster", &spec.cluster)?;
        let macs = parse_macs(&spec.macs)?;
        let ip = parse_ip(spec.ip.as_deref())?;
        if let Some(b) = &spec.bmc {
            super::one_line("bmc", b, limits::BMC_URL)?;
        }
        let bmc = spec.bmc.as_deref().map(|b| BmcAddress::parse(b).map_err(|e| AppError::bad_request(format!("bmc: {e}")))).transpose()?;
        validate_admin_properties(&spec.properties)?;
        let (properties, reference, sha) = match &spec.reference {
            Some(description) => {
                let d = reference::flatten(&spec.site, &spec.cluster, description)
                    .map_err(|e| AppError::bad_request(format!("reference: {e}")))?;
                if d.name != spec.name {
                    return Err(AppError::bad_request(format!("reference: describes node '{}', not '{}'", d.name, spec.name)));
                }
                (properties::with_standard_defaults(d.properties), Some(description.to_string()), Some(reference_sha256(description)))
            }
            None => (base_properties(&spec.name, &spec.site, &spec.cluster), None, None),
        };
        let write = NodeWrite {
            name: spec.name.clone(),
            site: spec.site,
            cluster: spec.cluster,
            ip,
            macs,
            bmc_url: bmc.map(|b| Secret(b.to_url_with_secret())),
            properties: props_to_json(&properties),
            admin_properties: spec.properties,
            reference,
            reference_sha256: sha,
        };
        let event = NewEvent {
            at: self.now(),
            actor: actor.name.clone(),
            from_shown: "enrolling".into(),
            to_shown: "enrolling".into(),
            reason: "enrolled".into(),
        };
        let row = self.store.insert_node(&write, &event).await?;
        self.audit(
            actor,
            "node.add",
            &format!("node/{}", row.name),
            serde_json::json!({ "site": row.site, "cluster": row.cluster, "bmc": row.bmc_url.is_some(), "reference": spec.reference.is_some() }),
        )
        .await;
        self.wake.notify_one();
        self.boot_hosts.changed.notify_one();
        Ok(row)
    }

    /// Imports Grid'5000 Reference API node descriptions (admin): new nodes
    /// are added, known ones updated; the same tree twice changes nothing.
    pub async fn import_nodes(&self, actor: &Actor, uploads: Vec<ReferenceUpload>) -> AppResult<ImportOutcome> {
        actor.require_admin()?;
        let mut writes = Vec::with_capacity(uploads.len());
        let mut seen = BTreeSet::new();
        for (i, u) in uploads.iter().enumerate() {
            let d = reference::flatten(&u.site, &u.cluster, &u.description)
                .map_err(|e| AppError::bad_request(format!("nodes[{i}] ({}/{}): {e}", u.site, u.cluster)))?;
            // The same names `node add` takes: a site or cluster named
            // `_count` would stand where the portal's `/hardware/_count` is.
            for (what, name) in [("node", &d.name), ("site", &d.site), ("cluster", &d.cluster)] {
                validate_node_name(what, name).map_err(|e| AppError::bad_request(format!("nodes[{i}]: {e}")))?;
            }
            for mac in &d.macs {
                boot_mac(mac).map_err(|e| AppError::bad_request(format!("nodes[{i}] ({}): boot MAC {e}", d.name)))?;
            }
            if !seen.insert(d.name.clone()) {
                return Err(AppError::bad_request(format!("nodes[{i}]: node '{}' appears twice in the import", d.name)));
            }
            writes.push(NodeWrite {
                name: d.name,
                site: d.site,
                cluster: d.cluster,
                ip: d.ip,
                macs: d.macs,
                bmc_url: None,
                properties: props_to_json(&properties::with_standard_defaults(d.properties)),
                admin_properties: serde_json::Map::new(),
                reference: Some(u.description.to_string()),
                reference_sha256: Some(reference_sha256(&u.description)),
            });
        }
        let added = NewEvent {
            at: self.now(),
            actor: actor.name.clone(),
            from_shown: "enrolling".into(),
            to_shown: "enrolling".into(),
            reason: "imported from a reference description".into(),
        };
        let outcome = self.store.import_nodes(&writes, &added).await?;
        self.audit(actor, "node.import", "nodes", serde_json::json!({ "nodes": writes.len() })).await;
        self.wake.notify_one();
        self.boot_hosts.changed.notify_one();
        Ok(outcome)
    }

    /// Every node, or those matching `filter`.
    pub async fn list_nodes(&self, filter: Option<&str>) -> AppResult<Vec<NodeRow>> {
        let rows = self.store.list_nodes().await?;
        let Some(source) = filter.filter(|f| !f.trim().is_empty()) else { return Ok(rows) };
        super::one_line("filter", source, limits::FILTER)?;
        let parsed: Vec<Properties> = rows.iter().map(|r| filter_properties(&self.config.sites, r)).collect();
        let mut known = standard_names();
        known.extend(parsed.iter().flat_map(|p| p.keys().cloned()));
        let filter = parse_filter(source, &known)?;
        Ok(rows.into_iter().zip(parsed).filter(|(_, p)| filter.matches(p)).map(|(r, _)| r).collect())
    }

    pub async fn get_node(&self, name: &str) -> AppResult<NodeDetail> {
        let row = self.store.get_node(name).await?;
        let reference = match self.store.node_reference(row.id).await? {
            Some(text) => Some(serde_json::from_str(&text).map_err(|e| AppError::Internal(e.into()))?),
            None => None,
        };
        Ok(NodeDetail { row, reference })
    }

    /// Puts a node in maintenance or back in service (admin).
    pub async fn set_maintenance(&self, actor: &Actor, name: &str, enabled: bool, reason: &str) -> AppResult<NodeRow> {
        actor.require_admin()?;
        super::one_line("reason", reason, limits::REASON)?;
        if reason.trim().is_empty() {
            return Err(AppError::bad_request("reason: say why (it is recorded in the node's events)"));
        }
        let node = self.store.get_node(name).await?;
        if node.policy == NodePolicy::Retired {
            return Err(AppError::Conflict { message: format!("node '{name}' is retired"), earliest_start: None });
        }
        let policy = if enabled { NodePolicy::Maintenance } else { NodePolicy::InService };
        if policy != node.policy {
            let event = NewEvent {
                at: self.now(),
                actor: actor.name.clone(),
                from_shown: shown_state(node.state, node.policy).as_str().into(),
                to_shown: shown_state(node.state, policy).as_str().into(),
                reason: reason.to_owned(),
            };
            self.store.set_node_policy(node.id, policy, &event).await?;
            self.audit(actor, "node.maintenance", &format!("node/{name}"), serde_json::json!({ "maintenance": enabled, "reason": reason }))
                .await;
        }
        Ok(self.store.get_node(name).await?)
    }

    /// An admin declares a suspect or dead node repaired (checked by hand):
    /// it goes back to `enrolling`, so the clock loop resets it and checks
    /// its inventory before anyone may reserve it. Any other state is a
    /// conflict: there is nothing to repair.
    pub async fn mark_repaired(&self, actor: &Actor, name: &str, reason: &str) -> AppResult<NodeRow> {
        actor.require_admin()?;
        super::one_line("reason", reason, limits::REASON)?;
        if reason.trim().is_empty() {
            return Err(AppError::bad_request("reason: say what was checked or repaired (it is recorded in the node's events)"));
        }
        let node = self.store.get_node(name).await?;
        if node.state.next(NodeInput::Repaired).is_err() {
            return Err(AppError::Conflict {
                message: format!("node '{name}' is {}, not suspect or dead: there is nothing to repair", node.state.as_str()),
                earliest_start: None,
            });
        }
        let status = node.status();
        self.move_nodes(&[(&status, None)], NodeInput::Repaired, &actor.name, reason).await?;
        self.audit(actor, "node.repaired", &format!("node/{name}"), serde_json::json!({ "reason": reason })).await;
        // Let the clock loop enrol it now.
        self.wake.notify_one();
        Ok(self.store.get_node(name).await?)
    }

    /// The sites that have nodes or a `[sites.NAME]` table, by name, with
    /// their settings.
    pub async fn list_sites(&self) -> AppResult<Vec<(String, std::borrow::Cow<'_, crate::config::SiteConfig>)>> {
        let mut names: BTreeSet<String> = self.config.sites.keys().cloned().collect();
        names.extend(self.store.list_nodes().await?.into_iter().map(|n| n.site));
        Ok(names
            .into_iter()
            .map(|name| {
                let site = self.config.site(&name);
                (name, site)
            })
            .collect())
    }

    /// A node's events with what `http::views` needs to decide what the
    /// caller may see of them (the node's BMC and reference, the caller's
    /// leases on it).
    pub async fn node_events(&self, actor: &Actor, name: &str) -> AppResult<NodeEvents> {
        let detail = self.get_node(name).await?;
        let events = self.store.node_events(detail.row.id).await?;
        let mut seen = NodeEvents { events, node: detail, held: Vec::new(), admins: Vec::new(), names: Vec::new() };
        if actor.is_admin {
            return Ok(seen);
        }
        let leases = self.store.list_leases(Some(actor.user_id), true).await?;
        seen.held = leases.iter().filter(|l| l.nodes.iter().any(|(id, _)| *id == seen.node.row.id)).map(|l| (l.start, l.end)).collect();
        for user in self.store.list_users().await? {
            if user.is_admin {
                seen.admins.push(user.name.clone());
            }
            if user.name != actor.name {
                seen.names.push(user.name);
            }
        }
        let own_projects: Vec<&str> = actor.projects.iter().map(|(_, name)| name.as_str()).collect();
        seen.names.extend(self.store.list_projects().await?.into_iter().map(|p| p.name).filter(|p| !own_projects.contains(&p.as_str())));
        Ok(seen)
    }

    /// Applies `input` to each node through [`NodeLifecycle::next`] and
    /// records the changes. Nodes for which the input is invalid are left
    /// as they are (and reported in the log).
    pub(crate) async fn move_nodes(
        &self,
        nodes: &[(&NodeStatus, Option<LeaseId>)],
        input: NodeInput,
        actor: &str,
        reason: &str,
    ) -> AppResult<usize> {
        let at = self.now();
        let mut transitions = Vec::new();
        for &(row, lease) in nodes {
            let (node, from, policy) = (row.id, row.state, row.policy);
            match from.next(input) {
                Ok(to) if to == from => {}
                Ok(to) => transitions.push(NodeTransition {
                    node,
                    from,
                    to,
                    lease,
                    event: NewEvent {
                        at,
                        actor: actor.to_owned(),
                        from_shown: shown_state(from, policy).as_str().into(),
                        to_shown: shown_state(to, policy).as_str().into(),
                        reason: reason.to_owned(),
                    },
                }),
                Err(e) => tracing::debug!(node = %node, error = %e, "node transition skipped"),
            }
        }
        if transitions.is_empty() {
            return Ok(0);
        }
        Ok(self.store.transition_nodes(&transitions).await?)
    }
}

/// The property names every node has: the standard and the derived ones.
pub(crate) fn standard_names() -> BTreeSet<String> {
    properties::STANDARD.iter().map(|(n, _)| *n).chain(properties::DERIVED.iter().copied()).map(str::to_owned).collect()
}

/// A node's properties as filters read them: the stored ones plus the
/// derived ones (`network_address` from its site's domain, `type`).
pub(crate) fn filter_properties(sites: &BTreeMap<String, SiteConfig>, row: &NodeRow) -> Properties {
    let fqdn = match sites.get(&row.site) {
        Some(site) => site.fqdn(&row.name, &row.site),
        None => SiteConfig::default().fqdn(&row.name, &row.site),
    };
    properties::with_derived(super::cache::to_properties(&row.properties), fqdn)
}

/// Parses a filter over the property names `known`, turning errors into a
/// 400 that names the position; an unknown name gets the nearest known one
/// as a suggestion.
pub(crate) fn parse_filter(source: &str, known: &BTreeSet<String>) -> AppResult<Filter> {
    Filter::parse(source, &|name| known.contains(name)).map_err(|e| {
        let hint = match &e.kind {
            FilterErrorKind::UnknownProperty { name } => nearest(name, known).map(|n| format!(" (did you mean '{n}'?)")),
            _ => None,
        };
        AppError::BadRequest { code: "invalid_filter", message: format!("filter: {e}{}", hint.unwrap_or_default()) }
    })
}

/// The known name closest to `name`, when it is close enough to be a typo
/// or a different spelling (Jaro-Winkler similarity of at least 0.8).
fn nearest<'a>(name: &str, known: &'a BTreeSet<String>) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(&lower, k), k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k.as_str())
}
