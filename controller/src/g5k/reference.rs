//! `/stable`: the Reference API (API-SUBSET §2.1, R1-R8): the root, sites,
//! clusters, nodes and a site's DNS server, read-only, from the inventory
//! grouped by `App::site_tree` and the stored reference descriptions.
//!
//! Decisions (docs/grid5000-api.md):
//! - An imported node's document is its reference JSON unchanged, plus
//!   `links` when it has none. A node enrolled without one gets a
//!   document synthesised from its properties, with the keys the clients
//!   read (`architecture`, `main_memory`, `network_adapters` with the boot
//!   NIC `mounted: true`, ...).
//! - Site and cluster documents are synthesised (the import stores node
//!   descriptions only): a site's `kavlans.default` (its production
//!   network, as EnOSlib reads it) comes from `[sites.NAME] network` and
//!   `gateway`, never from Grid'5000's own addresses; `ipv6.site_index`
//!   is the site's rank in name order.
//! - `servers/dns` is the resolver of `[sites.NAME] dns` (`ip: null` when
//!   none is configured).
//!
//! Must not: decide anything (what exists is the application's), or
//! answer a 5xx for an unknown name.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{Collection, G5kError, G5kPath, G5kResult, G5kUser, Link, fqdn, item_links};
use crate::app::App;
use crate::app::sites::{Cluster, SiteTree};
use crate::db::NodeRow;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(root))
        .route("/sites", get(sites))
        .route("/sites/{site}", get(site))
        .route("/sites/{site}/clusters", get(clusters))
        .route("/sites/{site}/clusters/{cluster}", get(cluster))
        .route("/sites/{site}/clusters/{cluster}/nodes", get(nodes))
        .route("/sites/{site}/clusters/{cluster}/nodes/{node}", get(node))
        .route("/sites/{site}/servers", get(servers))
        .route("/sites/{site}/servers/{server}", get(server))
}

/// R8: the root.
pub(super) async fn root(G5kUser(_): G5kUser) -> Json<Value> {
    Json(json!({
        "uid": "grid5000",
        "type": "grid",
        "links": [Link::item("self", "/"), Link::collection("sites", "/sites")],
    }))
}

/// R1: every site.
async fn sites(State(app): State<Arc<App>>, G5kUser(_): G5kUser) -> G5kResult<Collection<Value>> {
    let tree = app.site_tree().await?;
    Ok(Collection::all("/sites", tree.sites.keys().map(|s| site_document(&app, &tree, s)).collect()))
}

/// R2: one site.
async fn site(State(app): State<Arc<App>>, G5kUser(_): G5kUser, G5kPath(site): G5kPath<String>) -> G5kResult<Json<Value>> {
    let tree = app.site_tree().await?;
    tree.site(&site)?;
    Ok(Json(site_document(&app, &tree, &site)))
}

/// R3: a site's clusters (an empty collection for a site with none).
async fn clusters(State(app): State<Arc<App>>, G5kUser(_): G5kUser, G5kPath(site): G5kPath<String>) -> G5kResult<Collection<Value>> {
    let tree = app.site_tree().await?;
    let mut items = Vec::new();
    for (name, c) in &tree.site(&site)?.clusters {
        items.push(cluster_document(&app, &site, name, c).await?);
    }
    Ok(Collection::all(&format!("/sites/{site}/clusters"), items))
}

/// R4: one cluster.
async fn cluster(
    State(app): State<Arc<App>>,
    G5kUser(_): G5kUser,
    G5kPath((site, cluster)): G5kPath<(String, String)>,
) -> G5kResult<Json<Value>> {
    let tree = app.site_tree().await?;
    let c = tree.cluster(&site, &cluster)?;
    Ok(Json(cluster_document(&app, &site, &cluster, c).await?))
}

/// R5: a cluster's nodes, whole documents.
async fn nodes(
    State(app): State<Arc<App>>,
    G5kUser(_): G5kUser,
    G5kPath((site, cluster)): G5kPath<(String, String)>,
) -> G5kResult<Collection<Value>> {
    let items =
        app.cluster_references(&site, &cluster).await?.into_iter().map(|(row, reference)| node_document(&app, &row, reference)).collect();
    Ok(Collection::all(&format!("/sites/{site}/clusters/{cluster}/nodes"), items))
}

/// R6: one node.
async fn node(
    State(app): State<Arc<App>>,
    G5kUser(_): G5kUser,
    G5kPath((site, cluster, node)): G5kPath<(String, String, String)>,
) -> G5kResult<Json<Value>> {
    let tree = app.site_tree().await?;
    let in_cluster = tree.cluster(&site, &cluster)?.nodes.iter().any(|n| n.name == node);
    if !in_cluster {
        return Err(G5kError::not_found(format!("Couldn't find node '{node}' in cluster '{cluster}' of site '{site}'")));
    }
    let detail = app.get_node(&node).await?;
    Ok(Json(node_document(&app, &detail.row, detail.reference)))
}

/// The servers of a site: its DNS resolver only.
async fn servers(State(app): State<Arc<App>>, G5kUser(_): G5kUser, G5kPath(site): G5kPath<String>) -> G5kResult<Collection<Value>> {
    app.site_tree().await?.site(&site)?;
    Ok(Collection::all(&format!("/sites/{site}/servers"), vec![dns_document(&app, &site)]))
}

/// R7: `servers/dns`, what EnOSlib's `get_dns(site)` reads.
async fn server(
    State(app): State<Arc<App>>,
    G5kUser(_): G5kUser,
    G5kPath((site, server)): G5kPath<(String, String)>,
) -> G5kResult<Json<Value>> {
    app.site_tree().await?.site(&site)?;
    if server != "dns" {
        return Err(G5kError::not_found(format!(
            "Couldn't find server '{server}' in site '{site}': ferrum describes its 'dns' server only"
        )));
    }
    Ok(Json(dns_document(&app, &site)))
}

/// A site: uid, name, time zone, the production network as
/// `kavlans.default`, `ipv6.site_index`, links.
fn site_document(app: &App, tree: &SiteTree, site: &str) -> Value {
    let config = app.config.site(site);
    let path = format!("/sites/{site}");
    let mut links = item_links(&path, "/");
    links.extend([
        Link::collection("clusters", &format!("{path}/clusters")),
        Link::collection("deployments", &format!("{path}/deployments")),
        Link::collection("environments", &format!("{path}/environments")),
        Link::collection("jobs", &format!("{path}/jobs")),
        Link::collection("servers", &format!("{path}/servers")),
        Link::item("status", &format!("{path}/status")),
    ]);
    json!({
        "uid": site,
        "name": site,
        "type": "site",
        "timezone": config.timezone.name(),
        "domain": format!("{site}.{}", config.domain),
        "kavlans": { "default": { "network": config.network.map(|n| n.to_string()), "gateway": config.gateway.map(|g| g.to_string()) } },
        "ipv6": { "site_index": tree.index(site) },
        "links": links,
    })
}

/// A cluster: uid, exotic, queues, model (from a node's chassis), the
/// earliest enrolment as `created_at`, the node count, links.
async fn cluster_document(app: &App, site: &str, name: &str, c: &Cluster) -> G5kResult<Value> {
    let path = format!("/sites/{site}/clusters/{name}");
    let mut links = item_links(&path, &format!("/sites/{site}"));
    links.extend([Link::collection("nodes", &format!("{path}/nodes")), Link::item("status", &format!("{path}/status"))]);
    let model = match c.nodes.first() {
        Some(first) => app.get_node(&first.name).await?.reference.as_ref().and_then(chassis_model),
        None => None,
    };
    let created_at = c
        .nodes
        .iter()
        .map(|n| n.created_at)
        .min()
        .map(|s| crate::model::time::from_seconds(s).format("%a, %d %b %Y %H:%M:%S GMT").to_string());
    Ok(json!({
        "uid": name,
        "type": "cluster",
        "exotic": c.exotic(),
        // ferrum has no OAR queues: every cluster takes the default one.
        "queues": ["admin", "default"],
        "model": model,
        "created_at": created_at,
        "nodes_count": c.nodes.len(),
        "metrics": [],
        "links": links,
    }))
}

/// `chassis.manufacturer` + `chassis.name` of a reference description.
fn chassis_model(reference: &Value) -> Option<String> {
    let chassis = reference.get("chassis")?;
    let name = chassis.get("name")?.as_str()?;
    Some(match chassis.get("manufacturer").and_then(Value::as_str) {
        Some(m) => format!("{m} {name}"),
        None => name.to_owned(),
    })
}

/// A node: its reference description (plus `links` if it has none), or
/// one synthesised from its properties.
fn node_document(app: &App, row: &NodeRow, reference: Option<Value>) -> Value {
    let path = format!("/sites/{}/clusters/{}/nodes/{}", row.site, row.cluster, row.name);
    let links = item_links(&path, &format!("/sites/{}/clusters/{}", row.site, row.cluster));
    let mut doc = match reference {
        Some(Value::Object(map)) => Value::Object(map),
        _ => synthesised_node(app, row),
    };
    if let Some(map) = doc.as_object_mut() {
        map.entry("links").or_insert_with(|| json!(links));
    }
    doc
}

/// The keys of API-SUBSET §2.1 from a node's properties (sizes back in
/// bytes) and its boot NICs (each `mounted`, so none is offered as a
/// secondary NIC).
fn synthesised_node(app: &App, row: &NodeRow) -> Value {
    let p = &row.properties;
    let int = |k: &str| p.get(k).and_then(Value::as_i64).unwrap_or(0);
    let text = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let gpus: serde_json::Map<String, Value> = (0..int("gpu_count"))
        .map(|i| {
            (format!("gpu{i}"), json!({ "model": text("gpu_model"), "vendor": text("gpu_vendor"), "memory": int("gpu_mem") * (1 << 20) }))
        })
        .collect();
    let nics: Vec<Value> = row
        .macs
        .iter()
        .enumerate()
        .map(|(i, mac)| {
            json!({
                "device": format!("eth{i}"),
                "name": format!("eth{i}"),
                "interface": "Ethernet",
                "enabled": true,
                "mountable": true,
                "mounted": true,
                "management": false,
                "mac": mac,
                "ip": if i == 0 { row.ip.clone() } else { None },
                "network_address": if i == 0 { Some(fqdn(app, &row.name, &row.site)) } else { None },
                "rate": int("eth_rate") * 1_000_000_000,
            })
        })
        .collect();
    json!({
        "uid": row.name,
        "type": "node",
        "exotic": p.get("exotic").and_then(Value::as_bool).unwrap_or(false),
        "architecture": {
            "nb_cores": int("core_count").max(int("cpucore")),
            "nb_threads": int("thread_count"),
            "nb_procs": int("cpu_count"),
            "platform_type": text("cpuarch"),
        },
        "main_memory": { "ram_size": int("memnode") * (1 << 20) },
        "processor": { "model": text("cputype"), "microarchitecture": text("cpu_microarch") },
        "gpu_devices": gpus,
        "network_adapters": nics,
        "supported_job_types": { "deploy": true, "besteffort": true, "queues": ["admin", "default"] },
    })
}

/// A site's DNS server: `network_adapters.default.ip`.
fn dns_document(app: &App, site: &str) -> Value {
    let dns = app.config.site(site).dns.map(|a| a.to_string());
    json!({
        "uid": "dns",
        "type": "server",
        "network_adapters": { "default": { "ip": dns } },
        "links": item_links(&format!("/sites/{site}/servers/dns"), &format!("/sites/{site}")),
    })
}
