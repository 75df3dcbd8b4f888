//! `ferrum deploy` and `ferrum deployment show|list|cancel`: start a
//! deployment on a lease's nodes and follow it, one progress bar per node
//! (phase, bytes written, time in phase) on a terminal, one line per phase
//! change otherwise. [`follow`] is the one place that follows a deployment
//! (`deploy --wait`, `deployment show --wait`, and `lease create --deploy
//! --wait` through [`follow_lease`]).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Result;
use ferrum_api::DeploymentCreate;
use ferrum_api::deployment::{Deployment, DeploymentState, NodeOperation, OperationState, Phase};
use ferrum_api::{Lease, LeaseState};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Ctx;
use super::lease::read_ssh_keys;
use crate::args::{DeployArgs, DeploymentCommand};
use crate::client::CliError;
use crate::times::format_time;

/// How often a followed deployment is read again.
const POLL: Duration = Duration::from_millis(500);

pub async fn run(ctx: &Ctx, cmd: DeploymentCommand) -> Result<()> {
    match cmd {
        DeploymentCommand::Show { id, wait } => {
            if wait {
                follow(ctx, id).await
            } else {
                let answer = ctx.client.get::<Deployment, _>(&["deployments", &id.to_string()], &()).await?;
                ctx.show(&answer, |d, _| deployment_view(d))
            }
        }
        DeploymentCommand::List { lease } => {
            let answer = ctx.client.get::<Vec<Deployment>, _>(&["leases", &lease.to_string(), "deployments"], &()).await?;
            ctx.show(&answer, |list, _| list.iter().map(deployment_view).collect::<Vec<_>>().join("\n"))
        }
        DeploymentCommand::Cancel { id } => {
            let answer = ctx.client.delete::<Deployment>(&["deployments", &id.to_string()]).await?;
            ctx.show(&answer, |d, _| deployment_view(d))
        }
    }
}

/// The user's default public key when no `--ssh-key` is given.
fn default_key_files() -> Vec<std::path::PathBuf> {
    let Some(home) = std::env::var_os("HOME").map(std::path::PathBuf::from) else { return Vec::new() };
    ["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"].iter().map(|f| home.join(".ssh").join(f)).find(|p| p.is_file()).into_iter().collect()
}

pub async fn deploy(ctx: &Ctx, args: DeployArgs) -> Result<()> {
    let files = if args.ssh_keys.is_empty() { default_key_files() } else { args.ssh_keys.clone() };
    if files.is_empty() {
        anyhow::bail!(
            "no --ssh-key given and no ~/.ssh/id_ed25519.pub, id_ecdsa.pub or id_rsa.pub: give the public key to install for root"
        );
    }
    let ssh_keys = read_ssh_keys(&files)?;
    let nodes = match &args.node_file {
        Some(file) => {
            let text = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("--node-file {}: {e}", file.display()))?;
            Some(node_names(text.lines()))
        }
        None if !args.nodes.is_empty() => Some(node_names(args.nodes.iter().map(String::as_str))),
        None => None,
    };
    let body = DeploymentCreate { environment: args.environment, ssh_keys, nodes };
    let answer = ctx.client.post::<Deployment, _>(&["leases", &args.lease.to_string(), "deployments"], &body).await?;
    if args.wait {
        if !ctx.json {
            eprintln!("deployment {} of {} on lease {} started", answer.value.id, answer.value.environment, answer.value.lease);
        }
        return follow(ctx, answer.value.id).await;
    }
    ctx.show(&answer, |d, _| deployment_view(d))
}

/// How often a lease waited for (`lease create --deploy --wait`) is read
/// again before its deployment begins.
const LEASE_POLL: Duration = Duration::from_secs(1);

/// Waits for the deployment that a lease created with `--deploy` starts
/// at its start, then [`follow`]s it. Fails (exit 3) when the lease waits
/// for an admin's approval or ends without a deployment.
pub(super) async fn follow_lease(ctx: &Ctx, lease: &Lease) -> Result<()> {
    let id = lease.id.to_string();
    if lease.state == LeaseState::AwaitingApproval {
        return Err(CliError::StateConflict(format!(
            "lease {id} awaits an admin's approval: not waiting; follow its deployment later with `ferrum deployment list {id}`"
        ))
        .into());
    }
    if !ctx.json {
        eprintln!("waiting for lease {id} to start at {} and deploy its nodes", format_time(lease.start));
    }
    loop {
        let deployments = ctx.client.get::<Vec<Deployment>, _>(&["leases", &id, "deployments"], &()).await?.value;
        if let Some(first) = deployments.iter().min_by_key(|d| d.id) {
            if !ctx.json {
                eprintln!("deployment {} of {} on lease {id} started", first.id, first.environment);
            }
            return follow(ctx, first.id).await;
        }
        let current = ctx.client.get::<Lease, _>(&["leases", &id], &()).await?.value;
        if !matches!(current.state, LeaseState::Pending | LeaseState::Starting | LeaseState::Active) {
            let reason = current.reason.map(|r| format!(": {r}")).unwrap_or_default();
            return Err(CliError::StateConflict(format!("lease {id} is {} and deployed nothing{reason}", current.state.as_str())).into());
        }
        tokio::time::sleep(LEASE_POLL).await;
    }
}

/// Node names from a node list: blank lines skipped, `<node>.<site>.<domain>`
/// read as `<node>`, and each name once in first-seen order (an OAR node
/// file lists a node once per core).
fn node_names<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in lines {
        let name = line.trim().split('.').next().unwrap_or_default();
        if !name.is_empty() && !out.iter().any(|n| n == name) {
            out.push(name.to_owned());
        }
    }
    out
}

/// Polls a deployment until it ends, drawing its progress; prints the final
/// view (or its JSON) and fails with exit code 7 unless every node deployed.
async fn follow(ctx: &Ctx, id: i64) -> Result<()> {
    let path = ["deployments".to_owned(), id.to_string()];
    let segments: Vec<&str> = path.iter().map(String::as_str).collect();
    let terminal = std::io::stderr().is_terminal() && !ctx.json;
    let bars = MultiProgress::with_draw_target(if terminal { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() });
    let mut by_node: HashMap<String, ProgressBar> = HashMap::new();
    let mut last_phase: HashMap<String, (Phase, OperationState)> = HashMap::new();
    let style = ProgressStyle::with_template("{prefix:>12} {bar:24.cyan/blue} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let started = std::time::Instant::now();
    let answer = loop {
        let answer = ctx.client.get::<Deployment, _>(&segments, &()).await?;
        for n in &answer.value.nodes {
            let bar = by_node.entry(n.node.clone()).or_insert_with(|| {
                let bar = bars.add(ProgressBar::new(1000));
                bar.set_style(style.clone());
                bar.set_prefix(n.node.clone());
                bar
            });
            let (done, total) = progress_of(n);
            bar.set_length(total);
            bar.set_position(done);
            bar.set_message(progress_line(n));
            if !terminal && !ctx.json && last_phase.get(&n.node) != Some(&(n.phase, n.state)) {
                eprintln!("{:>7.1}s {:>12}  {}", started.elapsed().as_secs_f64(), n.node, progress_line(n));
            }
            last_phase.insert(n.node.clone(), (n.phase, n.state));
        }
        if answer.value.state != DeploymentState::Running {
            break answer;
        }
        tokio::time::sleep(POLL).await;
    };
    for bar in by_node.values() {
        bar.finish();
    }
    let d = &answer.value;
    ctx.show(&answer, |d, _| deployment_view(d))?;
    match d.state {
        DeploymentState::Done => Ok(()),
        other => Err(CliError::Failed(format!("deployment {} ended {}", d.id, other.as_str())).into()),
    }
}

/// (done, total) of a node's bar: bytes while writing, phases otherwise.
fn progress_of(n: &NodeOperation) -> (u64, u64) {
    const DEPLOY: [Phase; 6] =
        [Phase::BootRamdisk, Phase::WaitAgent, Phase::WriteImage, Phase::InstallKeys, Phase::BootSystem, Phase::SshCheck];
    if n.phase == Phase::WriteImage
        && let (Some(done), Some(total)) = (n.bytes_written, n.bytes_total)
        && total > 0
    {
        // The write is phases 2..3 of 6: scale the bytes into that span.
        return (2000 + done.min(total) * 1000 / total, 6000);
    }
    if n.state != OperationState::Running {
        return (6000, 6000);
    }
    let index = DEPLOY.iter().position(|p| *p == n.phase).unwrap_or(0) as u64;
    (index * 1000, 6000)
}

fn progress_line(n: &NodeOperation) -> String {
    let mut line = match n.state {
        OperationState::Running => format!("{} {:.0}s", n.phase.as_str(), n.phase_seconds),
        other => other.as_str().to_owned(),
    };
    if n.attempt > 1 {
        line.push_str(&format!(" (attempt {})", n.attempt));
    }
    if n.phase == Phase::WriteImage
        && let (Some(done), Some(total)) = (n.bytes_written, n.bytes_total)
    {
        line.push_str(&format!(" {}/{} MiB", done >> 20, total >> 20));
    }
    if n.state != OperationState::Running
        && let Some(m) = &n.message
    {
        line.push_str(&format!(": {m}"));
    }
    line
}

/// A node's operations for people.
pub(super) fn operations_view(ops: &[NodeOperation]) -> String {
    let mut s = String::new();
    for n in ops {
        s.push_str(&format!("{} {}: {}\n", n.kind, n.started_at.format("%Y-%m-%d %H:%M:%S"), progress_line(n)));
        let phases: Vec<String> =
            n.phases.iter().filter(|p| p.phase != Phase::Finished).map(|p| format!("{} {:.1}s", p.phase.as_str(), p.seconds)).collect();
        s.push_str(&format!("  {}\n", phases.join(", ")));
    }
    if s.is_empty() {
        s.push_str("no deploy or reset yet\n");
    }
    s
}

/// A deployment for people: a line per node, then the phase times.
fn deployment_view(d: &Deployment) -> String {
    let mut s =
        format!("deployment {}  lease {}  {} v{}  by {}  {}\n", d.id, d.lease, d.environment, d.version, d.requested_by, d.state.as_str());
    for n in &d.nodes {
        let total: f64 = n.phases.iter().map(|p| p.seconds).sum();
        s.push_str(&format!("  {:<12} {:<10} {:>6.1}s  {}", n.node, n.state.as_str(), total, progress_line(n)));
        if let Some(ssh) = &n.ssh {
            s.push_str(&format!("\n  {:<12} ssh {ssh}", ""));
        }
        s.push('\n');
        let phases: Vec<String> =
            n.phases.iter().filter(|p| p.phase != Phase::Finished).map(|p| format!("{} {:.1}s", p.phase.as_str(), p.seconds)).collect();
        if !phases.is_empty() {
            s.push_str(&format!("  {:<12} {}\n", "", phases.join(", ")));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(phase: Phase, state: OperationState) -> NodeOperation {
        NodeOperation {
            node: "qemu-1".into(),
            kind: "deploy".into(),
            state,
            phase,
            attempt: 1,
            phase_seconds: 3.0,
            deadline: chrono::DateTime::from_timestamp(0, 0).unwrap_or_default(),
            bytes_written: Some(32 << 20),
            bytes_total: Some(64 << 20),
            message: None,
            host_key: None,
            ssh: None,
            phases: Vec::new(),
            controller_ms: 0,
            started_at: chrono::DateTime::from_timestamp(0, 0).unwrap_or_default(),
            finished_at: None,
        }
    }

    #[test]
    fn node_files_give_each_node_once_by_its_short_name() {
        let file = "chifflot-1.lille.grid5000.fr\nchifflot-1.lille.grid5000.fr\n\n  chifflot-3  \nchifflot-2\n";
        assert_eq!(node_names(file.lines()), ["chifflot-1", "chifflot-3", "chifflot-2"]);
    }

    #[test]
    fn progress_follows_the_phases_and_the_bytes() {
        assert_eq!(progress_of(&node(Phase::BootRamdisk, OperationState::Running)), (0, 6000));
        assert_eq!(progress_of(&node(Phase::WriteImage, OperationState::Running)), (2500, 6000));
        assert_eq!(progress_of(&node(Phase::SshCheck, OperationState::Running)), (5000, 6000));
        assert_eq!(progress_of(&node(Phase::Finished, OperationState::Done)), (6000, 6000));
        assert_eq!(progress_line(&node(Phase::WriteImage, OperationState::Running)), "write_image 3s 32/64 MiB");
    }
}
