//! `/stable/sites/{site}/deployments`: Kadeploy deployments as ferrum
//! deployments (API-SUBSET §2.4, §4 M8). Kadeploy deploys any nodes of a
//! site; ferrum deploys the nodes of a lease: a deployment goes to the
//! caller's running deploy lease that holds every listed node, on exactly
//! those nodes (a subset deploy), and to nothing else (403). The document
//! is Kadeploy's: `uid` `D-<id>`, `status` waiting | processing |
//! terminated | error | canceled, and per-node `result` once terminated.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ferrum_api as api;
use ferrum_api::deployment::{Deployment, DeploymentState, OperationState};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::jobs::{Nodes, known_site};
use super::{Collection, G5kBody, G5kError, G5kPath, G5kQuery, G5kResult, G5kUser, Link, fqdn, item_links, node_of_fqdn};
use crate::app::{Actor, App, AppError};
use crate::model::LeaseState;
use crate::model::time::to_seconds;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/sites/{site}/deployments", get(list).post(create))
        .route("/sites/{site}/deployments/{uid}", get(show).delete(cancel))
}

/// Kadeploy options ferrum has no equivalent for: refused, named.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("vlan", "KaVLAN is not supported by ferrum"),
    ("block_device", "ferrum writes the environment on the node's configured disk"),
    ("partition_label", "ferrum writes the environment on the node's configured partition"),
    ("reformat_tmp", "ferrum does not manage a /tmp partition"),
];

/// The body of `POST /sites/{site}/deployments` (g5k-api's permitted
/// keys). `disable_*`, `ignore_nodes_deploying` and `reboot_*_timeout`
/// are accepted and ignored.
#[derive(Debug, Default, Deserialize)]
struct DeploymentSubmission {
    #[serde(default)]
    nodes: Option<Value>,
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    version: Option<Value>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// Kadeploy's deployment states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Processing,
    Terminated,
    Error,
    Canceled,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Processing => "processing",
            Status::Terminated => "terminated",
            Status::Error => "error",
            Status::Canceled => "canceled",
        }
    }

    /// Every node over (even failed) is `terminated`, with `KO` nodes in
    /// `result`; a deployment that could not start at all is `error`.
    fn of(d: &Deployment) -> Status {
        match d.state {
            DeploymentState::Running => Status::Processing,
            DeploymentState::Cancelled => Status::Canceled,
            DeploymentState::Failed if d.error.is_some() || d.nodes.is_empty() => Status::Error,
            DeploymentState::Done | DeploymentState::Partial | DeploymentState::Failed => Status::Terminated,
        }
    }
}

/// One node's outcome.
#[derive(Debug, Serialize)]
struct NodeResult {
    state: &'static str,
    #[serde(rename = "macro", skip_serializing_if = "Option::is_none")]
    macro_step: Option<String>,
    #[serde(rename = "micro", skip_serializing_if = "Option::is_none")]
    micro_step: Option<String>,
}

/// Kadeploy's deployment document (null keys left out).
#[derive(Debug, Serialize)]
struct DeploymentView {
    uid: String,
    site_uid: String,
    user_uid: String,
    environment: String,
    version: u64,
    status: &'static str,
    nodes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    created_at: i64,
    updated_at: i64,
    links: Vec<Link>,
}

fn view(app: &App, site: &str, d: &Deployment) -> DeploymentView {
    let status = Status::of(d);
    let result = (status == Status::Terminated).then(|| {
        d.nodes
            .iter()
            .map(|n| {
                let ok = n.state == OperationState::Done;
                let r = NodeResult {
                    state: if ok { "OK" } else { "KO" },
                    macro_step: n.phases.last().map(|p| p.phase.as_str().to_owned()),
                    micro_step: if ok { None } else { n.message.clone() },
                };
                (fqdn(app, &n.node, site), serde_json::to_value(r).unwrap_or(Value::Null))
            })
            .collect()
    });
    let created_at = to_seconds(d.created_at);
    let updated_at = d
        .nodes
        .iter()
        .flat_map(|n| n.finished_at.into_iter().chain(n.phases.last().map(|p| p.started_at)))
        .map(to_seconds)
        .fold(created_at, i64::max);
    let path = format!("/sites/{site}/deployments/D-{}", d.id);
    DeploymentView {
        uid: format!("D-{}", d.id),
        site_uid: site.to_owned(),
        user_uid: d.requested_by.clone(),
        environment: d.environment.clone(),
        version: d.version,
        status: status.as_str(),
        nodes: d.nodes.iter().map(|n| fqdn(app, &n.node, site)).collect(),
        result,
        error: d.error.clone(),
        created_at,
        updated_at,
        links: item_links(&path, &format!("/sites/{site}")),
    }
}

fn invalid(message: impl std::fmt::Display) -> G5kError {
    G5kError::bad_request(format!("The deployment you are trying to submit is not valid: {message}"))
}

fn cannot_launch(message: impl std::fmt::Display) -> G5kError {
    G5kError::bad_request(format!("Cannot launch deployment: {message}"))
}

/// Kadeploy's environment reference as ferrum's: `name@owner` is
/// `owner/name`; a description by URL is refused.
fn environment_reference(text: &str) -> G5kResult<String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(invalid("environment: name the environment to deploy"));
    }
    if text.starts_with("http://") || text.starts_with("https://") {
        return Err(cannot_launch(format!(
            "environment '{text}': ferrum does not fetch environment descriptions by URL; name an environment of `ferrum env list`"
        )));
    }
    Ok(match text.split_once('@') {
        Some((name, owner)) => format!("{owner}/{name}"),
        None => text.to_owned(),
    })
}

/// The public keys of `key` (the content of a public key or
/// authorized_keys file), one per line; a URL is refused.
fn keys_of(key: Option<&str>) -> G5kResult<Vec<String>> {
    let Some(text) = key.map(str::trim).filter(|k| !k.is_empty()) else { return Ok(Vec::new()) };
    if text.starts_with("http://") || text.starts_with("https://") {
        return Err(invalid("key: ferrum does not fetch keys from URLs; give the key file's content"));
    }
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned).collect())
}

async fn create(
    State(app): State<Arc<App>>,
    G5kUser(actor): G5kUser,
    G5kPath(site): G5kPath<String>,
    G5kBody(submission): G5kBody<DeploymentSubmission>,
) -> G5kResult<Response> {
    let nodes = Nodes::read(&app).await?;
    known_site(&nodes, &site)?;
    for (option, why) in UNSUPPORTED {
        if submission.rest.get(*option).is_some_and(|v| !v.is_null()) {
            return Err(invalid(format!("{option}: {why}")));
        }
    }
    let names: Vec<String> = match &submission.nodes {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| v.as_str().map(|s| node_of_fqdn(s.trim()).to_owned()).ok_or_else(|| invalid("nodes: a list of node names")))
            .collect::<G5kResult<_>>()?,
        Some(Value::Array(_)) | None | Some(Value::Null) => return Err(invalid("nodes: give at least one node")),
        Some(_) => return Err(invalid("nodes: a list of node names")),
    };
    let environment =
        environment_reference(submission.environment.as_deref().ok_or_else(|| invalid("environment: name the environment to deploy"))?)?;
    let ssh_keys = keys_of(submission.key.as_deref())?;
    let version = match &submission.version {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.as_u64().ok_or_else(|| invalid("version: a positive integer"))?),
        Some(Value::String(s)) => Some(s.trim().parse::<u64>().map_err(|_| invalid("version: a positive integer"))?),
        Some(_) => return Err(invalid("version: a positive integer")),
    };
    for name in &names {
        if nodes.site_of_node(name) != Some(site.as_str()) {
            return Err(invalid(format!("nodes: '{name}' is not a node of site {site}")));
        }
    }
    // The environment first (Kadeploy's check), whatever the nodes. ferrum
    // deploys an environment's latest version: an older one asked for is
    // refused rather than replaced silently.
    let env = app.get_environment(&actor, &environment, None, None).await.map_err(cannot_launch)?;
    if let Some(wanted) = version.filter(|v| *v != env.descriptor.version) {
        return Err(cannot_launch(format!(
            "environment '{environment}' version {wanted}: ferrum deploys the latest version, {}",
            env.descriptor.version
        )));
    }
    let lease = holding_lease(&app, &actor, &names).await?;
    let request = api::DeploymentCreate { environment, ssh_keys, nodes: Some(names) };
    let deployment = match app.create_deployment(&actor, lease, request).await {
        Ok(d) => d,
        Err(AppError::NotFound(m)) => return Err(cannot_launch(m)),
        Err(AppError::BadRequest { message, .. }) => return Err(invalid(message)),
        Err(AppError::Conflict { message, .. }) => return Err(cannot_launch(message)),
        Err(e) => return Err(e.into()),
    };
    tracing::info!(deployment = deployment.id, lease, site = %site, user = %actor.name, "grid5000 deployment submitted");
    let response = (StatusCode::CREATED, Json(view(&app, &site, &deployment))).into_response();
    Ok(super::located(response, &format!("/sites/{site}/deployments/D-{}", deployment.id)))
}

/// The caller's own active deploy lease holding every node of `names`, or
/// a 403 naming the nodes (Kadeploy refuses nodes outside one's deploy
/// job).
async fn holding_lease(app: &App, actor: &Actor, names: &[String]) -> G5kResult<i64> {
    let leases = app.list_leases(actor, Some(LeaseState::Active), false).await?;
    let holding = leases.iter().find(|l| {
        l.owner_id == actor.user_id
            && l.lease_type == crate::model::LeaseType::Deploy
            && names.iter().all(|n| l.nodes.iter().any(|(_, held)| held == n))
    });
    match holding {
        Some(l) => Ok(l.id.0),
        None => Err(G5kError::forbidden(format!(
            "You are not authorized to deploy {}: the nodes of a deployment must all belong to one running deploy job of yours",
            names.join(", ")
        ))),
    }
}

/// `D-<id>` (or the bare id) → the id.
fn deployment_id(uid: &str) -> G5kResult<i64> {
    uid.strip_prefix("D-").unwrap_or(uid).parse().map_err(|_| not_found(uid))
}

fn not_found(uid: &str) -> G5kError {
    G5kError::not_found(format!("Couldn't find Grid5000::Deployment with ID={uid}"))
}

/// A deployment of `site` the caller may see.
async fn deployment_at(app: &App, actor: &Actor, nodes: &Nodes, site: &str, uid: &str) -> G5kResult<Deployment> {
    let id = deployment_id(uid)?;
    let d = match app.get_deployment(actor, id).await {
        Ok(d) => d,
        Err(AppError::NotFound(_)) => return Err(not_found(uid)),
        Err(e) => return Err(e.into()),
    };
    if site_of(nodes, &d) != Some(site) {
        return Err(not_found(uid));
    }
    Ok(d)
}

fn site_of<'a>(nodes: &'a Nodes, d: &Deployment) -> Option<&'a str> {
    d.nodes.first().and_then(|n| nodes.site_of_node(&n.node))
}

async fn show(
    State(app): State<Arc<App>>,
    G5kUser(actor): G5kUser,
    G5kPath((site, uid)): G5kPath<(String, String)>,
) -> G5kResult<Json<DeploymentView>> {
    let nodes = Nodes::read(&app).await?;
    let d = deployment_at(&app, &actor, &nodes, &site, &uid).await?;
    Ok(Json(view(&app, &site, &d)))
}

async fn cancel(
    State(app): State<Arc<App>>,
    G5kUser(actor): G5kUser,
    G5kPath((site, uid)): G5kPath<(String, String)>,
) -> G5kResult<Response> {
    let nodes = Nodes::read(&app).await?;
    let d = deployment_at(&app, &actor, &nodes, &site, &uid).await?;
    app.cancel_deployment(&actor, d.id).await?;
    Ok(super::located(StatusCode::ACCEPTED.into_response(), &format!("/sites/{site}/deployments/D-{}", d.id)))
}

/// Query of `GET /sites/{site}/deployments` (others are ignored).
#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    status: Option<String>,
    user: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
    reverse: Option<String>,
}

async fn list(
    State(app): State<Arc<App>>,
    G5kUser(actor): G5kUser,
    G5kPath(site): G5kPath<String>,
    G5kQuery(q): G5kQuery<ListQuery>,
) -> G5kResult<Collection<DeploymentView>> {
    let nodes = Nodes::read(&app).await?;
    known_site(&nodes, &site)?;
    let page = super::Page::of(q.offset, q.limit)?;
    let statuses: Option<Vec<&str>> = q.status.as_deref().filter(|s| !s.trim().is_empty()).map(|s| s.split(',').map(str::trim).collect());
    let mut all = Vec::new();
    for lease in app.list_leases(&actor, None, true).await? {
        for d in app.lease_deployments(&actor, lease.id.0).await? {
            if site_of(&nodes, &d) != Some(site.as_str()) {
                continue;
            }
            let v = view(&app, &site, &d);
            if statuses.as_ref().is_some_and(|s| !s.contains(&v.status)) || q.user.as_deref().is_some_and(|u| v.user_uid != u) {
                continue;
            }
            all.push((d.id, v));
        }
    }
    // Newest first; `reverse=true` gives the oldest first.
    all.sort_by_key(|d| std::cmp::Reverse((d.1.created_at, d.0)));
    if q.reverse.as_deref().is_some_and(|r| matches!(r, "true" | "yes" | "1")) {
        all.reverse();
    }
    Ok(Collection::page(&site, "deployments", all.into_iter().map(|(_, v)| v).collect(), page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_environments_read_as_kadeploy_writes_them() {
        let keys = keys_of(Some("ssh-ed25519 AAAA a@b\n\n# comment\nssh-rsa BBBB c@d\n")).expect("keys");
        assert_eq!(keys, ["ssh-ed25519 AAAA a@b", "ssh-rsa BBBB c@d"]);
        assert!(keys_of(Some("https://example.org/key.pub")).expect_err("a URL").message.contains("key:"));
        assert_eq!(environment_reference("debian12-min@alice").expect("ok"), "alice/debian12-min");
        assert_eq!(environment_reference("debian12-min").expect("ok"), "debian12-min");
        let e = environment_reference("http://x/env.yaml").expect_err("a URL");
        assert!(e.message.starts_with("Cannot launch deployment: "), "{}", e.message);
    }
}
