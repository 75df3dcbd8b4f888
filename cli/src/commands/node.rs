//! `ferrum node ...`: listing, enrolment, import, maintenance, marking
//! suspect nodes repaired, events, inventory and its check, the boot
//! target, and the BMC verbs `power` and `bootdev`; `ferrum site list`.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use ferrum_api::{
    BootDeviceName, BootDeviceRequest, ImportReport, MaintenanceRequest, Node, NodeCreate, NodeEvent, NodeImport, NodeListQuery,
    NodePolicy, PowerActionName, PowerRequest,
};
use serde::Serialize;
use serde_json::Value;

use super::{Ctx, out};
use crate::args::{BootDevice, BootTargetArg, NodeAddArgs, NodeCommand, PowerAction};
use crate::client::NoQuery;
use crate::reference_tree;
use crate::render;

pub async fn run(ctx: &Ctx, cmd: NodeCommand) -> Result<()> {
    match cmd {
        NodeCommand::List { filter } => {
            let answer = ctx.client.get::<Vec<Node>, _>(&["nodes"], &NodeListQuery { filter }).await?;
            ctx.show(&answer, |nodes, opts| render::nodes_table(nodes, opts))
        }
        NodeCommand::Show { name } => {
            let answer = ctx.client.get::<Node, _>(&["nodes", &name], &NoQuery {}).await?;
            ctx.show(&answer, render::node_detail)
        }
        NodeCommand::Add(args) => add(ctx, args).await,
        NodeCommand::Import { dir } => import(ctx, &dir).await,
        NodeCommand::Maintenance(args) => {
            let body = MaintenanceRequest { enabled: args.on, reason: args.reason };
            let answer = ctx.client.post::<Node, _>(&["nodes", &args.name, "maintenance"], &body).await?;
            ctx.show(&answer, |node, _| {
                let intent = match node.policy {
                    NodePolicy::InService => "in service",
                    NodePolicy::Maintenance => "in maintenance",
                    NodePolicy::Retired => "retired",
                };
                format!("{}: {intent}, state {}\n", node.name, node.state.as_str())
            })
        }
        NodeCommand::Repaired { names, reason } => repaired(ctx, &names, &reason).await,
        NodeCommand::Inventory { name } => {
            let answer = ctx.client.get::<ferrum_api::NodeInventory, _>(&["nodes", &name, "inventory"], &NoQuery {}).await?;
            ctx.show(&answer, render::node_inventory)
        }
        NodeCommand::Check { name } => {
            let answer = ctx.client.get::<ferrum_api::NodeInventory, _>(&["nodes", &name, "inventory"], &NoQuery {}).await?;
            let inv = &answer.value;
            let Some(differences) = &inv.differences else {
                let missing = if inv.reference.is_none() { "no reference description" } else { "no inventory reported by an agent yet" };
                anyhow::bail!("cannot check {name}: {missing}");
            };
            if ctx.json {
                out(&render::pretty_json(&serde_json::to_string(differences)?))?;
            } else if differences.is_empty() {
                out(&format!("{name}: matches its reference description\n"))?;
            } else {
                let mut text = format!("{name}: {} difference(s) from its reference description\n", differences.len());
                for d in differences {
                    text.push_str(&format!("  {}: {}\n", d.field, d.message));
                }
                out(&text)?;
            }
            if differences.is_empty() { Ok(()) } else { anyhow::bail!("{name} differs from its reference description") }
        }
        NodeCommand::Operations { name } => {
            let answer =
                ctx.client.get::<Vec<ferrum_api::deployment::NodeOperation>, _>(&["nodes", &name, "operations"], &NoQuery {}).await?;
            ctx.show(&answer, |ops, _| super::deploy::operations_view(ops))
        }
        NodeCommand::Events { name } => {
            let answer = ctx.client.get::<Vec<NodeEvent>, _>(&["nodes", &name, "events"], &NoQuery {}).await?;
            ctx.show(&answer, |events, opts| render::node_events_table(events, opts))
        }
        NodeCommand::Power { action, names } => {
            let (verb, action) = match action {
                PowerAction::On => ("on", PowerActionName::On),
                PowerAction::Off => ("off", PowerActionName::Off),
                PowerAction::SoftOff => ("soft-off", PowerActionName::SoftOff),
                PowerAction::Cycle => ("cycle", PowerActionName::Cycle),
                PowerAction::Status => ("status", PowerActionName::Status),
            };
            for_each_node(ctx, &format!("power {verb}"), &names, Verb::Post("power"), &PowerRequest { action }).await
        }
        NodeCommand::BootTarget { target, names } => {
            let target = match target {
                BootTargetArg::Local => ferrum_api::BootTarget::Local,
                BootTargetArg::Ramdisk => ferrum_api::BootTarget::Ramdisk,
            };
            let what = format!("boot-target {}", target.as_str());
            for_each_node(ctx, &what, &names, Verb::Put("boot-target"), &ferrum_api::BootTargetRequest { target }).await
        }
        NodeCommand::Bootdev { device, names } => {
            let (verb, device) = match device {
                BootDevice::Pxe => ("pxe", BootDeviceName::Pxe),
                BootDevice::Disk => ("disk", BootDeviceName::Disk),
            };
            for_each_node(ctx, &format!("bootdev {verb}"), &names, Verb::Put("boot-device"), &BootDeviceRequest { device }).await
        }
    }
}

/// `ferrum site list`.
pub async fn sites(ctx: &Ctx) -> Result<()> {
    let answer = ctx.client.get::<Vec<ferrum_api::Site>, _>(&["sites"], &NoQuery {}).await?;
    ctx.show(&answer, |sites, opts| render::sites_table(sites, opts))
}

/// Marks each node repaired in turn, printing what each became (a failure
/// on one does not stop the others) and failing at the end if any failed.
/// With `--json`: an array of the nodes marked; failures go to stderr.
async fn repaired(ctx: &Ctx, names: &[String], reason: &str) -> Result<()> {
    let body = ferrum_api::RepairedRequest { reason: reason.to_owned() };
    let (mut raws, mut first_error, mut failed) = (Vec::new(), None, 0usize);
    for name in names {
        match ctx.client.post::<Node, _>(&["nodes", name, "repaired"], &body).await {
            Ok(answer) => {
                if !ctx.json {
                    out(&format!(
                        "{name}: marked repaired, now {} (ferrum resets and checks it before anyone may reserve it)\n",
                        answer.value.state.as_str()
                    ))?;
                }
                raws.push(answer.raw);
            }
            Err(err) => {
                failed += 1;
                eprintln!("error: {name}: {err:#}");
                first_error.get_or_insert(err);
            }
        }
    }
    if ctx.json {
        out(&render::pretty_json(&format!("[{}]", raws.join(","))))?;
    }
    match first_error {
        Some(err) => Err(err.context(format!("repaired failed on {failed} of {} nodes", names.len()))),
        None => Ok(()),
    }
}

async fn add(ctx: &Ctx, args: NodeAddArgs) -> Result<()> {
    let reference = match &args.reference {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            let value: Value = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
            Some(value)
        }
        None => None,
    };
    let properties: BTreeMap<String, Value> = args.properties.into_iter().collect();
    let body = NodeCreate {
        name: args.name,
        site: args.site,
        cluster: args.cluster,
        macs: args.macs,
        ip: args.ip,
        bmc: args.bmc,
        properties: (!properties.is_empty()).then_some(properties),
        reference,
    };
    let answer = ctx.client.post::<Node, _>(&["nodes"], &body).await?;
    ctx.show(&answer, render::node_detail)
}

async fn import(ctx: &Ctx, dir: &std::path::Path) -> Result<()> {
    let tree = reference_tree::walk(dir)?;
    if !ctx.json {
        let sites = tree.sites().join(", ");
        let clusters: Vec<&str> = tree.clusters().into_iter().map(|(_, c)| c).collect();
        out(&format!(
            "read {} node descriptions from {} (sites: {sites}; clusters: {})\n",
            tree.nodes.len(),
            tree.sites_dir.display(),
            clusters.join(", ")
        ))?;
    }
    for file in &tree.nodes {
        let uid = file.node.description.get("uid").and_then(Value::as_str);
        let stem = file.path.file_stem().and_then(|s| s.to_str());
        if uid.is_some() && uid != stem {
            eprintln!("warning: {} describes node `{}`, not `{}`", file.path.display(), uid.unwrap_or_default(), stem.unwrap_or_default());
        }
    }
    let body = NodeImport { nodes: tree.nodes.into_iter().map(|f| f.node).collect() };
    let answer = ctx.client.post::<ImportReport, _>(&["nodes", "import"], &body).await?;
    ctx.show(&answer, |report, _| render::import_report(report))
}

/// How a per-node BMC request is sent: `POST .../power`, `PUT .../boot-device`.
#[derive(Clone, Copy, Debug)]
enum Verb {
    Post(&'static str),
    Put(&'static str),
}

/// Sends the same BMC request to each node in turn, prints what each one
/// answered (a failure on one node does not stop the others) and fails at
/// the end if any failed. With `--json`: an array of the answers of the
/// nodes that succeeded; failures go to stderr.
async fn for_each_node<B: Serialize>(ctx: &Ctx, what: &str, names: &[String], verb: Verb, body: &B) -> Result<()> {
    let mut raws = Vec::new();
    let mut rows = Vec::new();
    let mut first_error = None;
    let mut failed = 0usize;
    for name in names {
        let answer = match verb {
            Verb::Post(endpoint) => ctx.client.post::<Value, _>(&["nodes", name, endpoint], body).await,
            Verb::Put(endpoint) => ctx.client.put::<Value, _>(&["nodes", name, endpoint], body).await,
        };
        match answer {
            Ok(answer) => {
                rows.push(serde_json::json!({ "node": name, "result": render::one_line(&answer.value) }));
                raws.push(answer.raw);
            }
            Err(err) => {
                failed += 1;
                if ctx.json {
                    eprintln!("error: {name}: {err:#}");
                }
                rows.push(serde_json::json!({ "node": name, "result": format!("FAILED: {err:#}") }));
                first_error.get_or_insert(err);
            }
        }
    }
    if ctx.json {
        out(&render::pretty_json(&format!("[{}]", raws.join(","))))?;
    } else {
        out(&render::generic(&Value::Array(rows), ctx.table))?;
    }
    match first_error {
        Some(err) => Err(err.context(format!("{what} failed on {failed} of {} nodes", names.len()))),
        None => Ok(()),
    }
}
