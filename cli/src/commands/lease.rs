//! `ferrum lease ...`: create, list, show, extend, release, cancel, and the
//! admin decisions approve/reject.

use anyhow::{Context, Result};
use ferrum_api::{DeploySpec, Lease, LeaseCreate, LeaseListQuery, LeasePatch, LeaseState, LeaseType, NodeSelector};
use serde_json::Value;

use super::{Ctx, out};
use crate::args::{LeaseCommand, LeaseCreateArgs, LeaseDecisionArgs, LeaseExtendArgs};
use crate::client::{CliError, NoQuery};
use crate::render;
use crate::times::format_time;

pub async fn run(ctx: &Ctx, cmd: LeaseCommand) -> Result<()> {
    match cmd {
        LeaseCommand::Create(args) => create(ctx, *args).await,
        LeaseCommand::List { all, state } => {
            let query = LeaseListQuery { state, all: all.then_some(true) };
            let answer = ctx.client.get::<Vec<Lease>, _>(&["leases"], &query).await?;
            ctx.show(&answer, |leases, opts| {
                let mut text = render::leases_table(leases, opts);
                if leases.is_empty() && !all {
                    text.push_str("(finished, cancelled, rejected and failed leases are shown with --all)\n");
                }
                text
            })
        }
        LeaseCommand::Show { id } => {
            let answer = ctx.client.get::<Lease, _>(&["leases", &id.to_string()], &NoQuery {}).await?;
            ctx.show(&answer, render::lease_detail)
        }
        LeaseCommand::Extend(args) => extend(ctx, args).await,
        LeaseCommand::Release { id } => {
            let answer = ctx.client.delete::<Lease>(&["leases", &id.to_string()]).await?;
            ctx.show(&answer, |lease, opts| {
                let verb = if lease.state == LeaseState::Cancelled { "cancelled (it had not started)" } else { "released" };
                format!("lease {} {verb}\n\n{}", lease.id, render::lease_detail(lease, opts))
            })
        }
        LeaseCommand::Cancel { id } => cancel(ctx, id).await,
        LeaseCommand::Approve(args) => decide(ctx, "approve", args).await,
        LeaseCommand::Reject(args) => decide(ctx, "reject", args).await,
    }
}

/// Reads each `--ssh-key` file: one key per non-empty, non-comment line, so
/// an `authorized_keys` file works as well as an `id_ed25519.pub`.
pub(super) fn read_ssh_keys(paths: &[std::path::PathBuf]) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read ssh key file {}", path.display()))?;
        let before = keys.len();
        keys.extend(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned));
        if keys.len() == before {
            anyhow::bail!("ssh key file {} holds no key", path.display());
        }
        if keys[before..].iter().any(|k| k.contains("PRIVATE KEY")) {
            anyhow::bail!("{} is a private key; pass the public key (the .pub file)", path.display());
        }
    }
    Ok(keys)
}

pub fn lease_request(args: LeaseCreateArgs, ssh_keys: Vec<String>) -> LeaseCreate {
    let lease_type = match (args.lease_type, &args.deploy) {
        (Some(t), _) => Some(t.into()),
        (None, Some(_)) => Some(LeaseType::Deploy),
        (None, None) => None,
    };
    LeaseCreate {
        project: args.project,
        nodes: NodeSelector { count: args.count, filter: args.filter, names: args.names, groups: None },
        start: args.start,
        duration: args.duration,
        end: args.end,
        lease_type,
        exotic: args.exotic,
        deploy: args.deploy.map(|environment| DeploySpec { environment, ssh_keys }),
        name: args.name,
        ..Default::default()
    }
}

async fn create(ctx: &Ctx, args: LeaseCreateArgs) -> Result<()> {
    let ssh_keys = read_ssh_keys(&args.ssh_keys)?;
    if args.deploy.is_some() && ssh_keys.is_empty() {
        eprintln!("warning: no --ssh-key given: you will not be able to log in as root on the deployed nodes");
    }
    let body = lease_request(args, ssh_keys);
    let answer = ctx.client.post::<Lease, _>(&["leases"], &body).await?;
    ctx.show(&answer, |lease, opts| {
        let note = match lease.state {
            LeaseState::AwaitingApproval => "\nthis request is above the approval threshold: an admin must approve it\n",
            _ => "",
        };
        format!("{}{note}", render::lease_detail(lease, opts))
    })
}

async fn extend(ctx: &Ctx, args: LeaseExtendArgs) -> Result<()> {
    let id = args.id.to_string();
    let (new_end, old_end) = match (args.end, args.by) {
        (Some(end), _) => (end, None),
        (None, Some(by)) => {
            let current = ctx.client.get::<Lease, _>(&["leases", &id], &NoQuery {}).await?.value;
            (current.end + by, Some(current.end))
        }
        (None, None) => anyhow::bail!("give --end or --by"),
    };
    let answer = ctx.client.patch::<Lease, _>(&["leases", &id], &LeasePatch { end: new_end }).await?;
    ctx.show(&answer, |lease, opts| {
        let was = old_end.map(|t| format!(" (was {})", format_time(t))).unwrap_or_default();
        format!("lease {} now ends at {}{was}\n\n{}", lease.id, format_time(lease.end), render::lease_detail(lease, opts))
    })
}

/// What `lease cancel` does for a lease in a given state.
#[derive(Debug, PartialEq, Eq)]
pub enum CancelDecision {
    /// Not started: `DELETE` cancels it.
    Cancel,
    /// Already cancelled: nothing to do, not an error.
    AlreadyCancelled,
    /// Refused, with the message saying why and what to do instead.
    Refuse(String),
}

pub fn cancel_decision(lease: &Lease) -> CancelDecision {
    match lease.state {
        LeaseState::Pending | LeaseState::AwaitingApproval => CancelDecision::Cancel,
        LeaseState::Cancelled => CancelDecision::AlreadyCancelled,
        LeaseState::Starting | LeaseState::Active => CancelDecision::Refuse(format!(
            "lease {} already started at {} (state {}); to end it now, run `ferrum lease release {}`",
            lease.id,
            format_time(lease.start),
            lease.state.as_str(),
            lease.id
        )),
        LeaseState::Ending | LeaseState::Finished | LeaseState::Rejected | LeaseState::Failed => {
            CancelDecision::Refuse(format!("lease {} is {}; there is nothing to cancel", lease.id, lease.state.as_str()))
        }
    }
}

async fn cancel(ctx: &Ctx, id: i64) -> Result<()> {
    let segment = id.to_string();
    let current = ctx.client.get::<Lease, _>(&["leases", &segment], &NoQuery {}).await?;
    match cancel_decision(&current.value) {
        CancelDecision::Refuse(message) => Err(CliError::StateConflict(message).into()),
        CancelDecision::AlreadyCancelled => ctx.show(&current, |lease, _| format!("lease {} is already cancelled\n", lease.id)),
        CancelDecision::Cancel => {
            let answer = ctx.client.delete::<Lease>(&["leases", &segment]).await?;
            ctx.show(&answer, |lease, opts| {
                let headline = if lease.state == LeaseState::Cancelled {
                    format!("lease {} cancelled", lease.id)
                } else {
                    // It started between our GET and the DELETE: the server released it.
                    format!("lease {} had just started and was released instead", lease.id)
                };
                format!("{headline}\n\n{}", render::lease_detail(lease, opts))
            })
        }
    }
}

async fn decide(ctx: &Ctx, verb: &str, args: LeaseDecisionArgs) -> Result<()> {
    let body = ferrum_api::usage::LeaseDecision { reason: args.reason };
    let answer = ctx.client.post::<Value, _>(&["leases", &args.id.to_string(), verb], &body).await?;
    if ctx.json {
        return out(&render::pretty_json(&answer.raw));
    }
    // The answer is expected to be the lease; show anything else generically.
    match serde_json::from_value::<Lease>(answer.value.clone()) {
        Ok(lease) => out(&render::lease_detail(&lease, ctx.table)),
        Err(_) => out(&render::generic(&answer.value, ctx.table)),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};

    fn create_args(line: &[&str]) -> LeaseCreateArgs {
        let mut argv = vec!["ferrum", "lease", "create"];
        argv.extend_from_slice(line);
        match Cli::try_parse_from(argv).expect("valid").command {
            Command::Lease(LeaseCommand::Create(args)) => *args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn requests_match_the_api_shape() {
        let body = lease_request(
            create_args(&[
                "--count",
                "2",
                "--filter",
                "gpu_count >= 2",
                "--duration",
                "240m",
                "--start",
                "2026-11-22T09:00:00Z",
                "--deploy",
                "debian12-min",
                "--project",
                "p-vision",
            ]),
            vec!["ssh-ed25519 AAAA me@laptop".to_owned()],
        );
        insta::assert_json_snapshot!(body);

        let body = lease_request(create_args(&["--names", "n1,n2", "--end", "2026-11-22T10:00:00Z", "--exotic"]), vec![]);
        let json = serde_json::to_value(&body).expect("serialise");
        assert_eq!(json["nodes"]["names"], serde_json::json!(["n1", "n2"]));
        assert_eq!(json["type"], Value::Null);
        assert_eq!(json["exotic"], Value::Bool(true));

        let body = lease_request(create_args(&["--count", "1", "--duration", "1h", "--deploy", "e", "--type", "besteffort"]), vec![]);
        assert_eq!(body.lease_type, Some(LeaseType::Besteffort));
    }

    #[test]
    fn ssh_key_files_are_read_line_by_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let one = dir.path().join("id.pub");
        std::fs::write(&one, "ssh-ed25519 AAAA me@laptop\n").expect("write");
        let many = dir.path().join("authorized_keys");
        std::fs::write(&many, "# team\nssh-rsa BBBB a\n\nssh-ed25519 CCCC b\n").expect("write");
        let keys = read_ssh_keys(&[one, many]).expect("readable");
        assert_eq!(keys, ["ssh-ed25519 AAAA me@laptop", "ssh-rsa BBBB a", "ssh-ed25519 CCCC b"]);

        let private = dir.path().join("id");
        std::fs::write(&private, "-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n").expect("write");
        let err = read_ssh_keys(std::slice::from_ref(&private)).expect_err("private key");
        assert!(err.to_string().contains(".pub"), "{err}");

        let missing = dir.path().join("nope.pub");
        let err = read_ssh_keys(std::slice::from_ref(&missing)).expect_err("missing");
        assert!(format!("{err:#}").contains(&missing.display().to_string()), "{err:#}");
    }

    fn lease_in(state: LeaseState) -> Lease {
        let t = Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).single().expect("valid");
        Lease {
            id: 12,
            owner: "alice".to_owned(),
            project: None,
            lease_type: LeaseType::Default,
            state,
            start: t,
            end: t,
            nodes: vec![],
            exotic: false,
            filter: None,
            groups: None,
            deploy: None,
            name: None,
            reason: None,
            created_at: t,
        }
    }

    #[test]
    fn cancel_only_before_the_start() {
        assert_eq!(cancel_decision(&lease_in(LeaseState::Pending)), CancelDecision::Cancel);
        assert_eq!(cancel_decision(&lease_in(LeaseState::AwaitingApproval)), CancelDecision::Cancel);
        assert_eq!(cancel_decision(&lease_in(LeaseState::Cancelled)), CancelDecision::AlreadyCancelled);
        match cancel_decision(&lease_in(LeaseState::Active)) {
            CancelDecision::Refuse(msg) => {
                assert!(msg.contains("ferrum lease release 12"), "{msg}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(cancel_decision(&lease_in(LeaseState::Finished)), CancelDecision::Refuse(_)));
    }
}
