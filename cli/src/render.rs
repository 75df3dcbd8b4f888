//! Turning API values into text for people: tables (comfy-table), detail
//! views, import reports, node-set folding (`chifflot-[1-3,5]`) and the
//! order-preserving JSON pretty-printer behind `--json`.
//!
//! Every function here is pure: it takes API values and [`TableOpts`] and
//! returns a `String`, so snapshot tests pin the output. Nothing here talks
//! to the server or decides what a command does; colour is used only when
//! [`TableOpts::color`] says so (a terminal, and `NO_COLOR` unset). The Gantt
//! chart lives in [`crate::gantt`].

use std::collections::BTreeMap;
use std::io::IsTerminal;

use comfy_table::{Cell, CellAlignment, Color, ColumnConstraint, ContentArrangement, Table, presets};
use ferrum_api::{Availability, ImportReport, Lease, LeaseState, Node, NodeEvent, NodePolicy, NodeState, Project, User};
use serde_json::Value;

use crate::times::{format_duration, format_time};

/// How tables are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableOpts {
    /// Wrap to this width; `None` lets comfy-table use the terminal's width
    /// (on a terminal) or not wrap at all (in a pipe).
    pub width: Option<u16>,
    /// Colour state cells.
    pub color: bool,
}

impl TableOpts {
    /// Fixed width, no colour: what tests use.
    #[cfg(test)]
    pub const fn plain(width: u16) -> Self {
        TableOpts { width: Some(width), color: false }
    }

    /// Colour only on a terminal and without `NO_COLOR`; no wrapping in pipes.
    pub fn detect() -> Self {
        let tty = std::io::stdout().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let width = if tty && no_color { columns().and_then(|c| u16::try_from(c).ok()) } else { None };
        TableOpts { width, color: tty && !no_color }
    }
}

/// `COLUMNS`, when set to a number.
pub fn columns() -> Option<usize> {
    std::env::var("COLUMNS").ok()?.trim().parse().ok().filter(|&c| c > 0)
}

fn table(opts: TableOpts, header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    if !opts.color {
        table.force_no_tty();
    }
    if let Some(width) = opts.width {
        table.set_width(width).set_content_arrangement(ContentArrangement::Dynamic);
    } else if opts.color {
        table.set_content_arrangement(ContentArrangement::Dynamic);
    }
    if !header.is_empty() {
        table.set_header(header.to_vec());
    }
    table
}

/// Columns that must not wrap (times, ids, states): others wrap instead
/// when the table is wider than the terminal.
fn keep_whole(table: &mut Table, columns: &[usize]) {
    for &i in columns {
        if let Some(column) = table.column_mut(i) {
            column.set_constraint(ColumnConstraint::ContentWidth);
        }
    }
}

fn finish(mut table: Table) -> String {
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    let mut text = table.trim_fmt();
    text.push('\n');
    text
}

/// A two-column `key  value` view of one object.
fn detail(opts: TableOpts, rows: Vec<(&str, Cell)>) -> String {
    let mut t = table(opts, &[]);
    for (key, value) in rows {
        t.add_row(vec![Cell::new(key), value]);
    }
    keep_whole(&mut t, &[0]);
    finish(t)
}

fn node_state_color(state: NodeState) -> Option<Color> {
    match state {
        NodeState::Available => Some(Color::Green),
        NodeState::Reserved | NodeState::Deploying | NodeState::Deployed => Some(Color::Cyan),
        NodeState::Enrolling | NodeState::Resetting | NodeState::Maintenance => Some(Color::Yellow),
        NodeState::Suspect | NodeState::Dead => Some(Color::Red),
        NodeState::Retired => None,
    }
}

fn lease_state_color(state: LeaseState) -> Option<Color> {
    match state {
        LeaseState::Active => Some(Color::Green),
        LeaseState::Pending | LeaseState::Starting | LeaseState::Ending => Some(Color::Cyan),
        LeaseState::AwaitingApproval => Some(Color::Yellow),
        LeaseState::Rejected | LeaseState::Failed => Some(Color::Red),
        LeaseState::Finished | LeaseState::Cancelled => None,
    }
}

fn colored(text: impl ToString, color: Option<Color>) -> Cell {
    match color {
        Some(color) => Cell::new(text).fg(color),
        None => Cell::new(text),
    }
}

/// The state a node shows, plus the operator's intent when it is not yet
/// visible in the state (a deployed node whose policy says maintenance).
fn node_state_text(node: &Node) -> String {
    let pending = match (node.policy, node.state) {
        (NodePolicy::Maintenance, NodeState::Maintenance) | (NodePolicy::Retired, NodeState::Retired) => None,
        (NodePolicy::Maintenance, _) => Some("maintenance"),
        (NodePolicy::Retired, _) => Some("retired"),
        (NodePolicy::InService, _) => None,
    };
    match pending {
        Some(next) => format!("{} (then {next})", node.state.as_str()),
        None => node.state.as_str().to_owned(),
    }
}

/// A property value as people read it: text without quotes.
fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

fn property<'a>(node: &'a Node, key: &str) -> Option<&'a Value> {
    node.properties.get(key).filter(|v| !v.is_null())
}

fn gpus_text(node: &Node) -> String {
    let count = property(node, "gpu_count").and_then(Value::as_u64).unwrap_or(0);
    match (count, property(node, "gpu_model")) {
        (0, _) => "-".to_owned(),
        (n, Some(model)) => format!("{n} x {}", value_text(model)),
        (n, None) => n.to_string(),
    }
}

/// `memnode` is in MiB (OAR); people read GiB.
fn memory_text(node: &Node) -> String {
    match property(node, "memnode").and_then(Value::as_u64) {
        Some(mib) if mib % 1024 == 0 => format!("{} GiB", mib / 1024),
        Some(mib) => format!("{:.1} GiB", mib as f64 / 1024.0),
        None => "-".to_owned(),
    }
}

/// `ferrum node list`.
pub fn nodes_table(nodes: &[Node], opts: TableOpts) -> String {
    if nodes.is_empty() {
        return "no nodes\n".to_owned();
    }
    let mut t = table(opts, &["NAME", "SITE", "CLUSTER", "STATE", "GPUS", "MEMORY"]);
    for node in nodes {
        t.add_row(vec![
            Cell::new(&node.name),
            Cell::new(&node.site),
            Cell::new(&node.cluster),
            colored(node_state_text(node), node_state_color(node.state)),
            Cell::new(gpus_text(node)),
            Cell::new(memory_text(node)).set_alignment(CellAlignment::Right),
        ]);
    }
    keep_whole(&mut t, &[0, 3, 5]);
    finish(t)
}

/// `ferrum node show`: the node, then its properties.
pub fn node_detail(node: &Node, opts: TableOpts) -> String {
    let policy = match node.policy {
        NodePolicy::InService => "in service",
        NodePolicy::Maintenance => "maintenance",
        NodePolicy::Retired => "retired",
    };
    let mut rows = vec![
        ("name", Cell::new(&node.name)),
        ("site", Cell::new(&node.site)),
        ("cluster", Cell::new(&node.cluster)),
        ("state", colored(node.state.as_str(), node_state_color(node.state))),
        ("policy", Cell::new(policy)),
        ("macs", Cell::new(node.macs.join(", "))),
        ("ip", Cell::new(node.ip.as_deref().unwrap_or("-"))),
    ];
    if let Some(bmc) = &node.bmc {
        let system = bmc.system_id.as_deref().map(|id| format!(" system {id}")).unwrap_or_default();
        rows.push(("bmc", Cell::new(format!("{} {}@{}:{}{system}", bmc.driver, bmc.username, bmc.host, bmc.port))));
    }
    let reference = match &node.reference {
        Some(Value::Object(map)) => format!("stored, {} top-level keys (see --json)", map.len()),
        Some(_) => "stored (see --json)".to_owned(),
        None => "none".to_owned(),
    };
    rows.push(("reference", Cell::new(reference)));
    rows.push(("created", Cell::new(format_time(node.created_at))));
    rows.push(("updated", Cell::new(format_time(node.updated_at))));
    let mut text = detail(opts, rows);
    text.push('\n');
    if node.properties.is_empty() {
        text.push_str("no properties\n");
    } else {
        let mut t = table(opts, &["PROPERTY", "VALUE"]);
        for (key, value) in &node.properties {
            t.add_row(vec![key.clone(), value_text(value)]);
        }
        text.push_str(&finish(t));
    }
    text
}

/// `ferrum node events`.
pub fn node_events_table(events: &[NodeEvent], opts: TableOpts) -> String {
    if events.is_empty() {
        return "no events\n".to_owned();
    }
    let mut t = table(opts, &["AT", "FROM", "TO", "ACTOR", "REASON"]);
    for e in events {
        t.add_row(vec![
            Cell::new(format_time(e.at)),
            Cell::new(e.from.as_str()),
            colored(e.to.as_str(), node_state_color(e.to)),
            Cell::new(&e.actor),
            Cell::new(&e.reason),
        ]);
    }
    keep_whole(&mut t, &[0, 1, 2]);
    finish(t)
}

/// `ferrum node import`: counts and folded names.
pub fn import_report(report: &ImportReport) -> String {
    let mut text = String::new();
    for (label, names) in [("added", &report.added), ("changed", &report.changed), ("unchanged", &report.unchanged)] {
        let list = if names.is_empty() { String::new() } else { format!("  {}", fold_nodeset(names)) };
        text.push_str(&format!("{label:<9} {:>4}{list}\n", names.len()));
    }
    text
}

/// The node count and folded names of a lease or slot: `3: chifflot-[1-3]`.
fn nodes_text(names: &[String]) -> String {
    if names.is_empty() { "-".to_owned() } else { format!("{}: {}", names.len(), fold_nodeset(names)) }
}

/// `ferrum lease list`.
pub fn leases_table(leases: &[Lease], opts: TableOpts) -> String {
    if leases.is_empty() {
        return "no leases\n".to_owned();
    }
    // The NAME column only when a lease has a name: the table is wide.
    let named = leases.iter().any(|l| l.name.is_some());
    let header = ["ID", "NAME", "STATE", "OWNER", "PROJECT", "TYPE", "START", "END", "NODES"];
    let mut t = table(opts, &header.iter().copied().filter(|h| named || *h != "NAME").collect::<Vec<_>>());
    for lease in leases {
        let mut row = vec![Cell::new(lease.id).set_alignment(CellAlignment::Right)];
        if named {
            row.push(Cell::new(lease.name.as_deref().unwrap_or("-")));
        }
        row.extend([
            colored(lease.state.as_str(), lease_state_color(lease.state)),
            Cell::new(&lease.owner),
            Cell::new(lease.project.as_deref().unwrap_or("-")),
            Cell::new(lease.lease_type.as_str()),
            Cell::new(format_time(lease.start)),
            Cell::new(format_time(lease.end)),
            Cell::new(nodes_text(&lease.nodes)),
        ]);
        t.add_row(row);
    }
    let shift = usize::from(named);
    keep_whole(&mut t, &[0, 1 + shift, 4 + shift, 5 + shift, 6 + shift]);
    finish(t)
}

/// `ferrum env list`: what tells environments apart first (name, version,
/// who may use it, whose it is, what it is), then how it is built.
pub fn environments_table(envs: &[ferrum_api::environment::Environment], opts: TableOpts) -> String {
    use ferrum_api::environment::Visibility;
    if envs.is_empty() {
        return "no environments\n".to_owned();
    }
    let mut t = table(opts, &["NAME", "VERSION", "VISIBILITY", "OWNER", "DESCRIPTION", "ARCH", "FORMAT", "SIZE", "BOOT"]);
    for env in envs {
        let d = &env.descriptor;
        let visibility = match d.visibility {
            Visibility::Public => "public",
            Visibility::Project => "project",
            Visibility::User => "user",
        };
        let text = |v: Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
        t.add_row(vec![
            Cell::new(&d.name),
            Cell::new(d.version).set_alignment(CellAlignment::Right),
            Cell::new(visibility),
            Cell::new(&env.owner),
            Cell::new(&d.description),
            Cell::new(&d.arch),
            Cell::new(text(serde_json::to_value(d.format).unwrap_or(Value::Null))),
            Cell::new(format!("{:.0} MiB", d.size as f64 / 1_048_576.0)).set_alignment(CellAlignment::Right),
            Cell::new(text(serde_json::to_value(d.boot).unwrap_or(Value::Null))),
        ]);
    }
    keep_whole(&mut t, &[0, 1, 2]);
    finish(t)
}

/// `ferrum site list`: each site's time zone and domain.
pub fn sites_table(sites: &[ferrum_api::Site], opts: TableOpts) -> String {
    if sites.is_empty() {
        return "no sites: no node is enrolled and no [sites.NAME] table is configured\n".to_owned();
    }
    let mut t = table(opts, &["SITE", "TIMEZONE", "DOMAIN"]);
    for site in sites {
        t.add_row(vec![Cell::new(&site.name), Cell::new(&site.timezone), Cell::new(&site.domain)]);
    }
    finish(t)
}

/// `ferrum lease show` and the answer of every lease-changing command.
pub fn lease_detail(lease: &Lease, opts: TableOpts) -> String {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let mut rows = vec![
        ("id", Cell::new(lease.id)),
        ("name", Cell::new(lease.name.as_deref().unwrap_or("-"))),
        ("state", colored(lease.state.as_str(), lease_state_color(lease.state))),
        ("owner", Cell::new(&lease.owner)),
        ("project", Cell::new(lease.project.as_deref().unwrap_or("- (operator lease)"))),
        ("type", Cell::new(lease.lease_type.as_str())),
        ("start", Cell::new(format_time(lease.start))),
        ("end", Cell::new(format_time(lease.end))),
        ("duration", Cell::new(format_duration(lease.end - lease.start))),
        ("nodes", Cell::new(nodes_text(&lease.nodes))),
    ];
    if let Some(filter) = &lease.filter {
        rows.push(("filter", Cell::new(filter)));
    }
    // A lease of several groups (OAR's `+`): each group's count, filter
    // and nodes, one line each.
    if let Some(groups) = lease.groups.as_ref().filter(|g| !g.is_empty()) {
        let lines: Vec<String> = groups
            .iter()
            .map(|g| format!("{} × {} → {}", g.count, g.filter.as_deref().unwrap_or("any node"), fold_nodeset(&g.nodes)))
            .collect();
        rows.push(("groups", Cell::new(lines.join("\n"))));
    }
    rows.push(("exotic", Cell::new(yes_no(lease.exotic))));
    if let Some(deploy) = &lease.deploy {
        let keys = match deploy.ssh_keys.len() {
            1 => "1 ssh key".to_owned(),
            n => format!("{n} ssh keys"),
        };
        rows.push(("deploy", Cell::new(format!("{} ({keys})", deploy.environment))));
    }
    if let Some(reason) = &lease.reason {
        rows.push(("reason", Cell::new(reason)));
    }
    rows.push(("created", Cell::new(format_time(lease.created_at))));
    detail(opts, rows)
}

/// `ferrum availability`.
pub fn availability_table(availability: &Availability, opts: TableOpts) -> String {
    if availability.slots.is_empty() {
        return "no slot found: no set of nodes matches the request within the search horizon\n".to_owned();
    }
    let mut t = table(opts, &["#", "START", "END", "NODES"]);
    for (i, slot) in availability.slots.iter().enumerate() {
        t.add_row(vec![
            Cell::new(i + 1).set_alignment(CellAlignment::Right),
            Cell::new(format_time(slot.start)),
            Cell::new(format_time(slot.end)),
            Cell::new(nodes_text(&slot.nodes)),
        ]);
    }
    keep_whole(&mut t, &[0, 1, 2]);
    finish(t)
}

/// `ferrum admin project list`.
pub fn projects_table(projects: &[Project], opts: TableOpts) -> String {
    if projects.is_empty() {
        return "no projects\n".to_owned();
    }
    let mut t = table(opts, &["NAME", "CLASS", "QUOTA (node-hours)", "MEMBERS", "CREATED"]);
    for p in projects {
        t.add_row(vec![
            Cell::new(&p.name),
            Cell::new(p.class.as_deref().unwrap_or("-")),
            Cell::new(p.quota_node_hours.map_or_else(|| "none".to_owned(), |q| q.to_string())).set_alignment(CellAlignment::Right),
            Cell::new(if p.members.is_empty() { "-".to_owned() } else { p.members.join(", ") }),
            Cell::new(format_time(p.created_at)),
        ]);
    }
    keep_whole(&mut t, &[0, 4]);
    finish(t)
}

/// `ferrum admin project add`.
pub fn project_detail(project: &Project, opts: TableOpts) -> String {
    detail(
        opts,
        vec![
            ("project", Cell::new(&project.name)),
            ("class", Cell::new(project.class.as_deref().unwrap_or("-"))),
            ("quota", Cell::new(project.quota_node_hours.map_or_else(|| "none".to_owned(), |q| format!("{q} node-hours")))),
            ("members", Cell::new(if project.members.is_empty() { "-".to_owned() } else { project.members.join(", ") })),
            ("manager", Cell::new(project.manager.as_deref().unwrap_or("-"))),
            ("created", Cell::new(format_time(project.created_at))),
        ],
    )
}

fn role_text(user: &User) -> &'static str {
    match (user.role, user.disabled_at.is_some()) {
        (ferrum_api::Role::User, false) => "user",
        (ferrum_api::Role::Admin, false) => "admin",
        (ferrum_api::Role::User, true) => "user (disabled)",
        (ferrum_api::Role::Admin, true) => "admin (disabled)",
    }
}

/// `ferrum token list`.
pub fn tokens_table(tokens: &[ferrum_api::Token], opts: TableOpts) -> String {
    if tokens.is_empty() {
        return "no tokens\n".to_owned();
    }
    let mut t = table(opts, &["ID", "NAME", "ACCESS", "CREATED", "EXPIRES"]);
    for k in tokens {
        let expires = match k.expires_at {
            Some(at) if k.expired => format!("{} (expired)", format_time(at)),
            Some(at) => format_time(at),
            None => "never".to_owned(),
        };
        t.add_row(vec![
            Cell::new(k.id),
            Cell::new(k.name.as_deref().unwrap_or("-")),
            Cell::new(if k.read_only { "read-only" } else { "full" }),
            Cell::new(format_time(k.created_at)),
            Cell::new(expires),
        ]);
    }
    keep_whole(&mut t, &[0, 2, 3, 4]);
    finish(t)
}

/// `ferrum key list`.
pub fn ssh_keys_table(keys: &[ferrum_api::SshKey], opts: TableOpts) -> String {
    if keys.is_empty() {
        return "no SSH keys\n".to_owned();
    }
    let mut t = table(opts, &["ID", "NAME", "FINGERPRINT", "ADDED"]);
    for k in keys {
        t.add_row(vec![
            Cell::new(k.id),
            Cell::new(k.name.as_deref().unwrap_or("-")),
            Cell::new(&k.fingerprint),
            Cell::new(format_time(k.created_at)),
        ]);
    }
    keep_whole(&mut t, &[0, 2, 3]);
    finish(t)
}

/// `ferrum admin user list`.
pub fn users_table(users: &[User], opts: TableOpts) -> String {
    if users.is_empty() {
        return "no users\n".to_owned();
    }
    let mut t = table(opts, &["NAME", "ROLE", "EMAIL", "PROJECTS", "CREATED"]);
    for u in users {
        t.add_row(vec![
            Cell::new(&u.name),
            Cell::new(role_text(u)),
            Cell::new(u.email.as_deref().unwrap_or("-")),
            Cell::new(if u.projects.is_empty() { "-".to_owned() } else { u.projects.join(", ") }),
            Cell::new(format_time(u.created_at)),
        ]);
    }
    keep_whole(&mut t, &[0, 1, 4]);
    finish(t)
}

/// One user, with extra `(key, value)` rows (the server, where the token
/// came from) for `ferrum whoami`.
pub fn user_detail(user: &User, extra: &[(&str, String)], opts: TableOpts) -> String {
    let mut rows = vec![
        ("user", Cell::new(&user.name)),
        ("role", Cell::new(role_text(user))),
        ("email", Cell::new(user.email.as_deref().unwrap_or("-"))),
        ("projects", Cell::new(if user.projects.is_empty() { "-".to_owned() } else { user.projects.join(", ") })),
        ("created", Cell::new(format_time(user.created_at))),
    ];
    if let Some(at) = user.disabled_at {
        rows.push(("disabled", Cell::new(format!("{} ({})", format_time(at), user.disabled_reason.as_deref().unwrap_or("-")))));
    }
    rows.extend(extra.iter().map(|(k, v)| (*k, Cell::new(v))));
    detail(opts, rows)
}

/// Any JSON answer as tables: an array of objects is one table (columns in
/// key order), an object is a key/value view with its arrays of objects as
/// tables below it. For answers the CLI has no dedicated view of yet.
/// One fact of a node's hardware in both descriptions.
fn facts(d: &Value) -> Vec<(&'static str, &'static str, String)> {
    let text = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let gib = |v: &Value| v.as_u64().map(|b| format!("{:.1} GiB", b as f64 / 1_073_741_824.0)).unwrap_or_default();
    let cpu = {
        let p = &d["processor"];
        match p["other_description"].as_str() {
            Some(s) => s.to_owned(),
            None => format!("{} {}", text(&p["model"]), text(&p["version"])).trim().to_owned(),
        }
    };
    let disks: Vec<String> = d["storage_devices"].as_array().into_iter().flatten().map(|s| gib(&s["size"])).collect();
    let macs: Vec<String> = d["network_adapters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["management"] != Value::Bool(true) && !n["mac"].is_null())
        .map(|n| text(&n["mac"]))
        .collect();
    let gpus: Vec<String> = d["gpu_devices"].as_object().into_iter().flatten().map(|(_, g)| text(&g["model"])).collect();
    let others: Vec<String> = d["other_devices"].as_object().into_iter().flatten().map(|(_, o)| text(&o["model"])).collect();
    vec![
        ("cpu model", "processor", cpu),
        ("sockets", "architecture.nb_procs", text(&d["architecture"]["nb_procs"])),
        ("cores", "architecture.nb_cores", text(&d["architecture"]["nb_cores"])),
        ("threads", "architecture.nb_threads", text(&d["architecture"]["nb_threads"])),
        ("memory", "main_memory", gib(&d["main_memory"]["ram_size"])),
        ("disks", "storage_devices", format!("{} {}", disks.len(), disks.join(", ")).trim().to_owned()),
        ("NIC MACs", "network_adapters", macs.join(" ")),
        ("GPUs", "gpu_devices", format!("{} {}", gpus.len(), gpus.join(", ")).trim().to_owned()),
        ("other devices", "other_devices", format!("{} {}", others.len(), others.join(", ")).trim().to_owned()),
    ]
}

/// `ferrum node inventory`: reference and report side by side, a mark on
/// the facts that differ, and where each column comes from.
pub fn node_inventory(inv: &ferrum_api::NodeInventory, opts: TableOpts) -> String {
    let reference = inv.reference.clone().unwrap_or(Value::Null);
    let reported = inv.reported.as_ref().and_then(|r| serde_json::to_value(&r.report).ok()).unwrap_or(Value::Null);
    let differing: Vec<&str> = inv.differences.iter().flatten().map(|d| d.field.as_str()).collect();
    let mut table = table(opts, &["FACT", "REFERENCE", "REPORTED", ""]);
    for ((fact, field, r), (_, _, a)) in facts(&reference).into_iter().zip(facts(&reported)) {
        let differs = differing.iter().any(|d| d.starts_with(field));
        table.add_row(vec![fact.to_owned(), r, a, if differs { "differs".to_owned() } else { String::new() }]);
    }
    let mut text = format!("{}\n", inv.node);
    text.push_str(match &inv.reference {
        Some(_) => "  reference: the node's Grid'5000 description (enrolment or import)\n",
        None => "  reference: none enrolled\n",
    });
    match &inv.reported {
        Some(r) => {
            text.push_str(&format!("  reported:  by its agent at {} (boot {})\n", r.reported_at.format("%Y-%m-%d %H:%M:%SZ"), r.generation))
        }
        None => text.push_str("  reported:  no agent has reported yet\n"),
    }
    text.push('\n');
    text.push_str(&finish(table));
    if let Some(diffs) = &inv.differences {
        text.push('\n');
        if diffs.is_empty() {
            text.push_str("no differences\n");
        }
        for d in diffs {
            text.push_str(&format!("{}: {}\n", d.field, d.message));
        }
    }
    text
}

pub fn generic(value: &Value, opts: TableOpts) -> String {
    match value {
        Value::Array(items) if items.is_empty() => "(none)\n".to_owned(),
        Value::Array(items) if items.iter().all(Value::is_object) => rows_table(items, opts),
        Value::Array(items) => items.iter().map(|v| format!("{}\n", value_text(v))).collect(),
        Value::Object(map) => {
            let (tables, scalars): (Vec<_>, Vec<_>) =
                map.iter().partition(|(_, v)| matches!(v, Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_object)));
            let mut text = String::new();
            if !scalars.is_empty() {
                text.push_str(&detail(opts, scalars.iter().map(|(k, v)| (k.as_str(), Cell::new(value_text(v)))).collect()));
            }
            for (key, rows) in tables {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&format!("{key}:\n"));
                if let Value::Array(rows) = rows {
                    text.push_str(&rows_table(rows, opts));
                }
            }
            text
        }
        scalar => format!("{}\n", value_text(scalar)),
    }
}

/// A JSON answer on one line: `key=value` pairs for an object (nested
/// values as compact JSON), the value itself otherwise.
pub fn one_line(value: &Value) -> String {
    match value {
        Value::Object(map) if map.is_empty() => "ok".to_owned(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => value_text(other),
    }
}

fn rows_table(rows: &[Value], opts: TableOpts) -> String {
    let mut columns: Vec<&str> = Vec::new();
    for row in rows {
        if let Value::Object(map) = row {
            for key in map.keys() {
                if !columns.contains(&key.as_str()) {
                    columns.push(key);
                }
            }
        }
    }
    let header: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
    let mut t = table(opts, &header.iter().map(String::as_str).collect::<Vec<_>>());
    for row in rows {
        t.add_row(
            columns
                .iter()
                .map(|c| {
                    let value = row.get(*c).unwrap_or(&Value::Null);
                    let cell = Cell::new(value_text(value));
                    if value.is_number() { cell.set_alignment(CellAlignment::Right) } else { cell }
                })
                .collect::<Vec<_>>(),
        );
    }
    finish(t)
}

/// Folds node names the Grid'5000 way: `chifflot-1, chifflot-2, chifflot-3,
/// chifflot-5, servan-1` → `chifflot-[1-3,5],servan-1`. Prefixes keep the
/// order of their first appearance; zero-padded numbers stay as they are.
pub fn fold_nodeset(names: &[String]) -> String {
    let mut groups: Vec<(&str, Vec<u64>)> = Vec::new();
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    let mut parts: Vec<String> = Vec::new();
    let mut order: Vec<Result<usize, usize>> = Vec::new(); // Ok(group) or Err(verbatim part)
    for name in names {
        let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (prefix, number) = name.split_at(name.len() - digits);
        let numeric = !number.is_empty() && (number == "0" || !number.starts_with('0'));
        match number.parse::<u64>() {
            Ok(n) if numeric => {
                let slot = *index.entry(prefix).or_insert_with(|| {
                    groups.push((prefix, Vec::new()));
                    order.push(Ok(groups.len() - 1));
                    groups.len() - 1
                });
                groups[slot].1.push(n);
            }
            _ => {
                if !parts.contains(name) {
                    parts.push(name.clone());
                    order.push(Err(parts.len() - 1));
                }
            }
        }
    }
    let mut out: Vec<String> = Vec::new();
    for entry in order {
        match entry {
            Err(i) => out.push(parts[i].clone()),
            Ok(g) => {
                let (prefix, numbers) = &mut groups[g];
                numbers.sort_unstable();
                numbers.dedup();
                if let [only] = numbers.as_slice() {
                    out.push(format!("{prefix}{only}"));
                    continue;
                }
                let mut ranges: Vec<String> = Vec::new();
                let mut i = 0;
                while i < numbers.len() {
                    let start = numbers[i];
                    while i + 1 < numbers.len() && numbers[i + 1] == numbers[i] + 1 {
                        i += 1;
                    }
                    ranges.push(if numbers[i] == start { start.to_string() } else { format!("{start}-{}", numbers[i]) });
                    i += 1;
                }
                out.push(format!("{prefix}[{}]", ranges.join(",")));
            }
        }
    }
    out.join(",")
}

/// Re-indents a JSON text (two spaces, like `serde_json`'s pretty printer)
/// without reordering keys or touching any value, so `--json` shows exactly
/// what the server sent. The input must be valid JSON.
pub fn pretty_json(raw: &str) -> String {
    fn newline(out: &mut String, depth: usize) {
        out.push('\n');
        out.extend(std::iter::repeat_n("  ", depth));
    }
    let mut out = String::with_capacity(raw.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = raw.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while chars.next_if(|c| c.is_whitespace()).is_some() {}
                if chars.next_if_eq(&close).is_some() {
                    out.push(c);
                    out.push(close);
                } else {
                    depth += 1;
                    out.push(c);
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out.push('\n');
    out
}

/// `ferrum admin requests`.
pub fn account_requests_table(requests: &[ferrum_api::accounts::AccountRequest], opts: TableOpts) -> String {
    if requests.is_empty() {
        return "no account requests\n".to_owned();
    }
    let mut t = table(opts, &["ID", "NAME", "EMAIL", "AFFILIATION", "PROJECT", "STATE", "ASKED"]);
    for r in requests {
        t.add_row(vec![
            Cell::new(r.id),
            Cell::new(&r.name),
            Cell::new(&r.email),
            Cell::new(&r.affiliation),
            Cell::new(match &r.project_class {
                Some(class) => format!("{} ({class})", r.project),
                None => r.project.clone(),
            }),
            Cell::new(if r.clash.is_some() { format!("{} (clash)", r.state.as_str()) } else { r.state.as_str().to_owned() }),
            Cell::new(format_time(r.created_at)),
        ]);
    }
    keep_whole(&mut t, &[0, 5, 6]);
    finish(t)
}

/// `ferrum admin requests show|reject`.
pub fn account_request_detail(r: &ferrum_api::accounts::AccountRequest, opts: TableOpts) -> String {
    let mut rows = vec![
        ("request", Cell::new(r.id)),
        ("name", Cell::new(&r.name)),
        ("email", Cell::new(&r.email)),
        ("affiliation", Cell::new(&r.affiliation)),
        ("project", Cell::new(&r.project)),
        ("class", Cell::new(r.project_class.as_deref().unwrap_or("-"))),
        ("motivation", Cell::new(&r.motivation)),
        ("state", Cell::new(r.state.as_str())),
        ("from", Cell::new(&r.source)),
        ("asked", Cell::new(format_time(r.created_at))),
    ];
    if let (Some(by), Some(at)) = (&r.decided_by, r.decided_at) {
        rows.push(("decided", Cell::new(format!("by {by} at {}", format_time(at)))));
    }
    if let Some(clash) = &r.clash {
        rows.push(("clash", Cell::new(clash)));
    }
    if let Some(reason) = &r.reason {
        rows.push(("reason", Cell::new(reason)));
    }
    detail(opts, rows)
}

fn hours_cell(hours: f64) -> Cell {
    Cell::new(format!("{hours:.1}")).set_alignment(CellAlignment::Right)
}

/// `ferrum usage`.
pub fn usage_table(report: &ferrum_api::usage::UsageReport, opts: TableOpts) -> String {
    use ferrum_api::usage::UsageGroupBy;
    let key = match report.group_by {
        UsageGroupBy::User => "USER",
        UsageGroupBy::Project => "PROJECT",
        UsageGroupBy::Cluster => "CLUSTER",
        UsageGroupBy::GpuModel => "GPU MODEL",
    };
    let mut text = format!("usage from {} to {}\n", format_time(report.from), format_time(report.to));
    if report.rows.is_empty() {
        text.push_str("no usage in this period\n");
        return text;
    }
    let mut t = table(opts, &[key, "NODE-HOURS", "GPU-HOURS"]);
    for r in report.rows.iter().chain(std::iter::once(&report.total)) {
        t.add_row(vec![Cell::new(&r.key), hours_cell(r.node_hours), hours_cell(r.gpu_hours)]);
    }
    keep_whole(&mut t, &[1, 2]);
    text.push_str(&finish(t));
    text
}

/// `ferrum usage --records`.
pub fn usage_records_table(records: &[ferrum_api::usage::UsageRecord], opts: TableOpts) -> String {
    if records.is_empty() {
        return "no usage records in this period\n".to_owned();
    }
    let mut t = table(opts, &["LEASE", "USER", "PROJECT", "NODE", "GPU", "START", "END", "NODE-HOURS"]);
    for r in records {
        t.add_row(vec![
            Cell::new(r.lease),
            Cell::new(&r.user),
            Cell::new(r.project.as_deref().unwrap_or("(operator)")),
            Cell::new(&r.node),
            Cell::new(r.gpu_model.as_ref().map_or_else(|| "-".to_owned(), |m| format!("{}x {m}", r.gpu_count))),
            Cell::new(format_time(r.start)),
            Cell::new(format_time(r.end)),
            hours_cell(r.node_hours),
        ]);
    }
    keep_whole(&mut t, &[0, 5, 6, 7]);
    finish(t)
}

/// `ferrum admin audit`.
pub fn audit_table(entries: &[ferrum_api::usage::AuditEntry], opts: TableOpts) -> String {
    if entries.is_empty() {
        return "no audit entries\n".to_owned();
    }
    let mut t = table(opts, &["TIME", "ACTOR", "ACTION", "TARGET", "DETAIL"]);
    for e in entries {
        t.add_row(vec![
            Cell::new(format_time(e.at)),
            Cell::new(&e.actor),
            Cell::new(&e.action),
            Cell::new(&e.target),
            Cell::new(one_line(&e.detail)),
        ]);
    }
    keep_whole(&mut t, &[0, 2]);
    finish(t)
}

/// `ferrum quota`.
pub fn quota_table(quotas: &[ferrum_api::usage::QuotaStatus], opts: TableOpts) -> String {
    if quotas.is_empty() {
        return "you belong to no project\n".to_owned();
    }
    let mut t = table(opts, &["PROJECT", "PERIOD", "QUOTA", "BOOKED", "LEFT"]);
    for q in quotas {
        t.add_row(vec![
            Cell::new(&q.project),
            Cell::new(format!("{} from {}", q.period, format_time(q.from))),
            Cell::new(q.quota_node_hours.map_or_else(|| "none".to_owned(), |n| format!("{n} node-hours"))),
            hours_cell(q.booked_node_hours),
            q.left_node_hours.map_or_else(|| Cell::new("-"), hours_cell),
        ]);
    }
    keep_whole(&mut t, &[1, 3, 4]);
    finish(t)
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeZone, Utc};
    use ferrum_api::{BmcView, DeploySpec, LeaseGroup, LeaseType, Role, Slot};
    use serde_json::json;

    use super::*;

    const OPTS: TableOpts = TableOpts::plain(100);

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).single().expect("valid time")
    }

    fn node(name: &str, state: NodeState, props: Value) -> Node {
        let (cluster, site) = if name.starts_with("servan") { ("servan", "grenoble") } else { ("chifflot", "lille") };
        let properties = match props {
            Value::Object(map) => map.into_iter().collect(),
            _ => BTreeMap::new(),
        };
        Node {
            name: name.to_owned(),
            site: site.to_owned(),
            cluster: cluster.to_owned(),
            state,
            policy: NodePolicy::InService,
            macs: vec!["0c:42:a1:00:00:01".to_owned()],
            ip: Some("172.16.32.1".to_owned()),
            properties,
            bmc: None,
            boot_target: ferrum_api::BootTarget::Local,
            power: None,
            reference: None,
            created_at: at(1, 8),
            updated_at: at(20, 17),
        }
    }

    fn nodes() -> Vec<Node> {
        let gpu = json!({"gpu_count": 2, "gpu_model": "Tesla P100-PCIE-16GB", "memnode": 196608, "cpucore": 12});
        let mut dying = node("chifflot-2", NodeState::Deployed, gpu.clone());
        dying.policy = NodePolicy::Maintenance;
        let mut servan = node("servan-1", NodeState::Maintenance, json!({"memnode": 130000, "accel_type": "fpga"}));
        servan.policy = NodePolicy::Maintenance;
        servan.ip = None;
        vec![node("chifflot-1", NodeState::Available, gpu), dying, servan, node("servan-2", NodeState::Dead, json!({}))]
    }

    fn lease(id: i64, state: LeaseState, lease_type: LeaseType, nodes: &[&str]) -> Lease {
        Lease {
            id,
            owner: "alice".to_owned(),
            project: Some("p-vision".to_owned()),
            lease_type,
            state,
            start: at(22, 9),
            end: at(22, 13),
            nodes: nodes.iter().map(|n| (*n).to_owned()).collect(),
            exotic: false,
            filter: Some("gpu_count >= 2".to_owned()),
            groups: None,
            deploy: None,
            name: Some("vision sweep".to_owned()),
            reason: None,
            created_at: at(21, 18),
        }
    }

    #[test]
    fn node_table() {
        insta::assert_snapshot!(nodes_table(&nodes(), OPTS));
    }

    #[test]
    fn node_detail_view() {
        let mut n = nodes().remove(1);
        n.bmc = Some(BmcView {
            driver: "redfish".to_owned(),
            host: "10.0.0.5".to_owned(),
            port: 443,
            username: "admin".to_owned(),
            system_id: Some("System.Embedded.1".to_owned()),
        });
        n.reference = Some(json!({"uid": "chifflot-2", "architecture": {}}));
        insta::assert_snapshot!(node_detail(&n, OPTS));
    }

    #[test]
    fn lease_table() {
        let mut pending = lease(13, LeaseState::Pending, LeaseType::Default, &["servan-1"]);
        pending.project = None;
        pending.name = None;
        pending.start = at(23, 0);
        pending.end = at(25, 0);
        let leases = vec![
            lease(12, LeaseState::Active, LeaseType::Deploy, &["chifflot-1", "chifflot-2", "chifflot-3", "chifflot-5"]),
            pending,
            lease(7, LeaseState::AwaitingApproval, LeaseType::Besteffort, &[]),
        ];
        // Lease rows are wide (two full times): pinned at a common terminal width.
        let unnamed: Vec<Lease> = leases.iter().cloned().map(|l| Lease { name: None, ..l }).collect();
        insta::assert_snapshot!(leases_table(&unnamed, TableOpts::plain(120)));
        // Names add a column (a name-less lease shows `-`).
        insta::assert_snapshot!("lease_table_with_names", leases_table(&leases, TableOpts::plain(140)));
    }

    #[test]
    fn environment_table_puts_the_name_first() {
        use ferrum_api::agent::ImageFormat;
        use ferrum_api::environment::{EnvironmentBoot, EnvironmentDescriptor, Visibility};
        let env = |name: &str, version: u64, visibility, owner: &str, description: &str| ferrum_api::environment::Environment {
            id: 1,
            descriptor: EnvironmentDescriptor {
                name: name.to_owned(),
                version,
                description: description.to_owned(),
                arch: "x86_64".to_owned(),
                image: format!("{name}-{version}.raw.zst"),
                format: ImageFormat::RawZst,
                sha256: "0".repeat(64),
                size: 48 << 20,
                root_partition: 1,
                boot: EnvironmentBoot::Local,
                visibility,
            },
            image_url: format!("http://h/images/{name}"),
            owner: owner.to_owned(),
            created_at: at(21, 18),
        };
        let envs = vec![
            env("debian12-min", 2026112206, Visibility::Public, "admin", "Debian 12, minimal"),
            env("my-cuda", 3, Visibility::User, "alice", "CUDA 12 on Debian 12"),
        ];
        insta::assert_snapshot!(environments_table(&envs, TableOpts::plain(120)));
    }

    #[test]
    fn lease_detail_view() {
        let mut l = lease(12, LeaseState::Active, LeaseType::Deploy, &["chifflot-1", "chifflot-2"]);
        l.end = at(23, 10);
        l.deploy = Some(DeploySpec { environment: "debian12-min".to_owned(), ssh_keys: vec!["ssh-ed25519 AAAA".to_owned()] });
        l.reason = Some("extended by alice".to_owned());
        insta::assert_snapshot!(lease_detail(&l, OPTS));
    }

    #[test]
    fn lease_detail_view_of_several_groups() {
        let mut l = lease(13, LeaseState::Pending, LeaseType::Default, &["chifflot-1", "chifflot-2", "chifflot-7"]);
        l.filter = None;
        let group = |count: u32, filter: Option<&str>, nodes: &[&str]| LeaseGroup {
            count,
            filter: filter.map(str::to_owned),
            nodes: nodes.iter().map(|n| (*n).to_owned()).collect(),
        };
        l.groups = Some(vec![group(2, Some("cluster='chifflot'"), &["chifflot-1", "chifflot-2"]), group(1, None, &["chifflot-7"])]);
        insta::assert_snapshot!(lease_detail(&l, OPTS));
    }

    #[test]
    fn availability_table_view() {
        let slot = |start: u32, names: &[&str]| Slot {
            start: at(22, start),
            end: at(22, start + 4),
            nodes: names.iter().map(|n| (*n).to_owned()).collect(),
        };
        let availability = Availability {
            slots: vec![
                slot(9, &["chifflot-1", "chifflot-2"]),
                slot(13, &["chifflot-3", "chifflot-4"]),
                slot(14, &["servan-1", "chifflot-8"]),
            ],
        };
        insta::assert_snapshot!(availability_table(&availability, OPTS));
        assert!(availability_table(&Availability { slots: vec![] }, OPTS).starts_with("no slot found"));
    }

    #[test]
    fn accounts_tables() {
        let project = Project {
            manager: Some("alice".into()),
            name: "p-vision".to_owned(),
            class: Some("research".to_owned()),
            quota_node_hours: Some(10_000),
            members: vec!["alice".to_owned(), "bob".to_owned()],
            created_at: at(1, 8),
        };
        let user = User {
            name: "alice".to_owned(),
            role: Role::User,
            email: Some("alice@example.org".to_owned()),
            projects: vec!["p-vision".to_owned()],
            created_at: at(1, 9),
            disabled_at: None,
            disabled_reason: None,
        };
        let admin = User {
            name: "root".to_owned(),
            role: Role::Admin,
            email: None,
            projects: vec![],
            created_at: at(1, 7),
            disabled_at: None,
            disabled_reason: None,
        };
        let text = format!(
            "{}\n{}\n{}",
            projects_table(&[project], OPTS),
            users_table(&[user.clone(), admin], OPTS),
            user_detail(&user, &[("server", "http://127.0.0.1:8750 (ferrumd 0.1.0)".to_owned())], OPTS)
        );
        insta::assert_snapshot!(text);
    }

    #[test]
    fn import_report_folds_names() {
        let report = ImportReport {
            added: (1..=8).map(|i| format!("chifflot-{i}")).collect(),
            changed: vec![],
            unchanged: vec!["servan-1".to_owned(), "servan-2".to_owned()],
        };
        assert_eq!(import_report(&report), "added        8  chifflot-[1-8]\nchanged      0\nunchanged    2  servan-[1-2]\n");
    }

    #[test]
    fn nodesets_fold() {
        let names = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            fold_nodeset(&names(&["chifflot-3", "chifflot-1", "chifflot-2", "chifflot-5", "servan-1"])),
            "chifflot-[1-3,5],servan-1"
        );
        assert_eq!(fold_nodeset(&names(&["gw", "n01", "n02", "n10", "n9", "n10"])), "gw,n01,n02,n[9-10]");
        assert_eq!(fold_nodeset(&names(&["a-0", "a-1"])), "a-[0-1]");
        assert_eq!(fold_nodeset(&[]), "");
    }

    #[test]
    fn inventory_side_by_side() {
        let reference = json!({
            "processor": {"model": "Intel Xeon", "version": "Gold 6126"},
            "architecture": {"nb_procs": 2, "nb_cores": 24, "nb_threads": 48},
            "main_memory": {"ram_size": 206_158_430_208u64},
            "storage_devices": [{"size": 480_103_981_056u64}],
            "network_adapters": [{"mac": "0c:42:a1:00:00:01"}, {"mac": "0c:42:a1:00:00:99", "management": true}],
            "gpu_devices": {"gpu0": {"model": "Tesla P100-PCIE-16GB"}, "gpu1": {"model": "Tesla P100-PCIE-16GB"}}
        });
        let report: ferrum_api::inventory::InventoryReport = serde_json::from_value(json!({
            "schema_version": 1, "agent_version": "0.1.0",
            "processor": {"other_description": "Intel(R) Xeon(R) Gold 6126 CPU @ 2.60GHz"},
            "architecture": {"nb_procs": 2, "nb_cores": 24, "nb_threads": 48},
            "main_memory": {"ram_size": 206_158_430_208u64},
            "storage_devices": [{"id": "disk0", "device": "sda", "size": 480_103_981_056u64}],
            "network_adapters": [{"device": "eth0", "mac": "0c:42:a1:00:00:01"}],
            "gpu_devices": {"nvidia0": {"model": "GP100GL [Tesla P100 PCIe 16GB]", "vendor": "NVIDIA", "pci_address": "0000:3b:00.0", "vendor_id": "10de", "device_id": "15f8"}},
            "pci_ids_source": {"origin": "embedded"}
        }))
        .unwrap();
        let differences = ferrum_check::compare(&reference, &report, &ferrum_check::Tolerances::default());
        let inv = ferrum_api::NodeInventory {
            node: "chifflot-1".into(),
            reference: Some(reference),
            reported: Some(ferrum_api::ReportedInventory { generation: 3, reported_at: at(20, 17), report }),
            differences: Some(differences),
        };
        insta::assert_snapshot!(node_inventory(&inv, TableOpts::plain(120)));
    }

    #[test]
    fn generic_json_renders_as_tables() {
        let usage = json!({
            "from": "2026-01-01T00:00:00Z",
            "group_by": "project",
            "rows": [
                {"project": "p-vision", "node_hours": 120.5, "leases": 4},
                {"project": "ops", "node_hours": 3, "leases": 1, "note": "operator"}
            ]
        });
        insta::assert_snapshot!(generic(&usage, OPTS));
        assert_eq!(generic(&json!([]), OPTS), "(none)\n");
        assert_eq!(generic(&json!("on"), OPTS), "on\n");
    }

    #[test]
    fn usage_audit_and_quota_tables() {
        use ferrum_api::usage::{AuditEntry, QuotaStatus, UsageGroupBy, UsageReport, UsageRow};
        let row = |key: &str, n: i64, g: i64| UsageRow {
            key: key.into(),
            node_hours: n as f64 / 3600.0,
            gpu_hours: g as f64 / 3600.0,
            node_seconds: n,
            gpu_seconds: g,
        };
        let report = UsageReport {
            from: at(1, 0),
            to: at(23, 8),
            group_by: UsageGroupBy::Project,
            rows: vec![row("(operator)", 7200, 0), row("p-vision", 576_000, 2_304_000)],
            total: row("total", 583_200, 2_304_000),
        };
        let audit = vec![AuditEntry {
            id: 3,
            at: at(22, 10),
            actor: "admin".into(),
            action: "lease.approve".into(),
            target: "lease/12".into(),
            detail: json!({"reason": "ok for the paper"}),
        }];
        let quota = vec![QuotaStatus {
            project: "p-vision".into(),
            period: "month".into(),
            from: at(1, 0),
            to: at(30, 0),
            quota_node_hours: Some(500),
            booked_node_hours: 380.0,
            left_node_hours: Some(120.0),
        }];
        insta::assert_snapshot!(format!("{}\n{}\n{}", usage_table(&report, OPTS), audit_table(&audit, OPTS), quota_table(&quota, OPTS)));
    }

    #[test]
    fn pretty_json_keeps_key_order_and_values() {
        let raw = r#"{"name":"n1","a":[],"b":{},"c":[1,{"z":"x, y: {z}","y":null}],"esc":"q\"uo\\te"}"#;
        let pretty = pretty_json(raw);
        assert!(pretty.find("\"name\"") < pretty.find("\"a\""), "{pretty}");
        let reparsed: Value = serde_json::from_str(&pretty).expect("still JSON");
        assert_eq!(reparsed, serde_json::from_str::<Value>(raw).expect("valid"));
        // Same layout as serde_json's pretty printer when keys are sorted.
        let sorted = serde_json::to_string(&reparsed).expect("serialise");
        assert_eq!(pretty_json(&sorted), format!("{}\n", serde_json::to_string_pretty(&reparsed).expect("serialise")));
    }
}
