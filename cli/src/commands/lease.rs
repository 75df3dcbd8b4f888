//! `ferrum lease ...`: create, list, show, extend, release, cancel, and the
//! admin decisions approve/reject. `create` reads local times in the
//! lease's site's time zone (from `GET /api/v1/sites`) and can follow the
//! lease's deployment (`--deploy ENV --wait`); `cancel` and `release` take
//! several ids, like `oardel`.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use ferrum_api::{DeploySpec, Lease, LeaseCreate, LeaseListQuery, LeasePatch, LeaseState, LeaseType, NodeSelector, Site};
use serde_json::Value;

use super::{Ctx, out};
use crate::args::{LeaseCommand, LeaseCreateArgs, LeaseDecisionArgs, LeaseExtendArgs};
use crate::client::{CliError, NoQuery};
use crate::flags::name_flags;
use crate::render;
use crate::times::{TIME_FORMATS, TimeArg, format_time};

pub async fn run(ctx: &Ctx, cmd: LeaseCommand) -> Result<()> {
    match cmd {
        LeaseCommand::Create(args) => create(ctx, *args).await,
        LeaseCommand::List { all, state, user } => {
            let query = LeaseListQuery { state, all: all.then_some(true), owner: user };
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
        LeaseCommand::Release { ids } => end_leases(ctx, End::Release, &ids).await,
        LeaseCommand::Cancel { ids } => end_leases(ctx, End::Cancel, &ids).await,
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

/// The request of `lease create`, with `--start`/`--end` already resolved
/// to UTC (see [`resolve_times`]).
pub fn lease_request(args: LeaseCreateArgs, times: LeaseTimes, ssh_keys: Vec<String>) -> LeaseCreate {
    let lease_type = match (args.lease_type, &args.deploy) {
        (Some(t), _) => Some(t.into()),
        (None, Some(_)) => Some(LeaseType::Deploy),
        (None, None) => None,
    };
    // `--site S` with `--count`: only that site's nodes; with `-l`, every
    // group's (through the properties).
    let site = args.site.as_ref().map(|site| format!("site = '{site}'"));
    let (filter, properties) = match (site, args.filter, &args.names, &args.resources) {
        (Some(site), _, None, Some(_)) => (None, Some(args.properties.map_or(site.clone(), |p| format!("{site} AND ({p})")))),
        (Some(site), Some(filter), None, None) => (Some(format!("{site} AND ({filter})")), args.properties),
        (Some(site), None, None, None) => (Some(site), args.properties),
        (_, filter, _, _) => (filter, args.properties),
    };
    LeaseCreate {
        project: args.project,
        nodes: NodeSelector { count: args.count, filter, names: args.names, groups: None },
        resources: args.resources,
        properties,
        start: times.start,
        duration: args.duration,
        end: times.end,
        lease_type,
        exotic: args.exotic,
        deploy: args.deploy.map(|environment| DeploySpec { environment, ssh_keys }),
        name: args.name,
    }
}

/// `--start` and `--end` of `lease create`, in UTC.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTimes {
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

/// Resolves `--start`/`--end` against `now` and, for local times, the
/// lease's site: `--site`, else the only site (or the only time zone of
/// all sites), else a `site = 'x'` the filter plainly requires. `sites` is
/// asked for only when a local time needs it.
pub fn resolve_times(
    start: Option<TimeArg>,
    end: Option<TimeArg>,
    now: DateTime<Utc>,
    sites: Option<&[Site]>,
    site_flag: Option<&str>,
    filter: Option<&str>,
) -> Result<LeaseTimes, String> {
    let zone = match sites {
        Some(sites) if start.is_some_and(|t| t.is_local()) || end.is_some_and(|t| t.is_local()) => {
            let (name, tz) = pick_site_zone(sites, site_flag, filter)?;
            Some((name, tz))
        }
        _ => None,
    };
    let zone = zone.as_ref().map(|(name, tz)| (name.as_str(), *tz));
    let resolve = |t: Option<TimeArg>, flag: &str| t.map(|t| t.resolve(now, zone).map_err(|e| format!("{flag}: {e}"))).transpose();
    Ok(LeaseTimes { start: resolve(start, "--start")?, end: resolve(end, "--end")? })
}

/// The site (name, time zone) whose clock a local time is read on.
fn pick_site_zone(sites: &[Site], site_flag: Option<&str>, filter: Option<&str>) -> Result<(String, chrono_tz::Tz), String> {
    let zone = |site: &Site| {
        site.timezone
            .parse::<chrono_tz::Tz>()
            .map(|tz| (site.name.clone(), tz))
            .map_err(|_| format!("site {} has time zone '{}', unknown to this ferrum; write {TIME_FORMATS}", site.name, site.timezone))
    };
    let known = || sites.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ");
    if let Some(name) = site_flag {
        return match sites.iter().find(|s| s.name == name) {
            Some(site) => zone(site),
            None => Err(format!("--site: there is no site '{name}' (sites: {})", known())),
        };
    }
    if let [site] = sites {
        return zone(site);
    }
    if let Some(first) = sites.first()
        && sites.iter().all(|s| s.timezone == first.timezone)
    {
        return zone(first).map(|(_, tz)| (sites.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "), tz));
    }
    if let Some(name) = filter.and_then(site_in_filter)
        && let Some(site) = sites.iter().find(|s| s.name == name)
    {
        return zone(site);
    }
    if sites.is_empty() {
        return Err(format!("a local time needs a site's time zone, and ferrum knows no site yet; write {TIME_FORMATS}"));
    }
    Err(format!(
        "a local time is read in the lease's site's time zone, and the sites ({}) have different ones: \
         give --site S, or write the time as RFC 3339 with its offset (2026-11-22T09:00:00+01:00) or from now (+2h)",
        known()
    ))
}

/// The site a filter plainly requires: one `site = 'x'` (any spacing or
/// case of `site`) and no `OR`/`NOT` that could mean another.
fn site_in_filter(filter: &str) -> Option<String> {
    let lower = filter.to_ascii_lowercase();
    let words: Vec<&str> = lower.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).collect();
    if words.iter().any(|w| *w == "or" || *w == "not") {
        return None;
    }
    let mut found = None;
    let mut rest = filter;
    while let Some(at) = rest.to_ascii_lowercase().find("site") {
        let before_ok = rest[..at].chars().next_back().is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        let after = rest[at + 4..].trim_start();
        rest = &rest[at + 4..];
        let Some(value) = after.strip_prefix('=').map(str::trim_start).and_then(|v| v.strip_prefix('\'')) else { continue };
        let Some(end) = value.find('\'') else { continue };
        if !before_ok {
            continue;
        }
        if found.replace(value[..end].to_owned()).is_some() {
            return None;
        }
    }
    found
}

async fn create(ctx: &Ctx, args: LeaseCreateArgs) -> Result<()> {
    let ssh_keys = read_ssh_keys(&args.ssh_keys)?;
    if args.deploy.is_some() && ssh_keys.is_empty() {
        eprintln!("warning: no --ssh-key given: you will not be able to log in as root on the deployed nodes");
    }
    let needs_site = args.start.is_some_and(|t| t.is_local()) || args.end.is_some_and(|t| t.is_local());
    let sites = if needs_site { Some(ctx.client.get::<Vec<Site>, _>(&["sites"], &NoQuery {}).await?.value) } else { None };
    let times = resolve_times(args.start, args.end, Utc::now(), sites.as_deref(), args.site.as_deref(), args.filter.as_deref())
        .map_err(CliError::Usage)?;
    let wait = args.wait;
    let body = lease_request(args, times, ssh_keys);
    let answer = ctx.client.post::<Lease, _>(&["leases"], &body).await.map_err(name_flags)?;
    if wait {
        if !ctx.json {
            out(&render::lease_detail(&answer.value, ctx.table))?;
        }
        return super::deploy::follow_lease(ctx, &answer.value).await;
    }
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
    let (new_end, old_end) = match (args.end, args.duration) {
        (Some(end), _) => (end, None),
        (None, Some(by)) => {
            let current = ctx.client.get::<Lease, _>(&["leases", &id], &NoQuery {}).await?.value;
            (current.end + by, Some(current.end))
        }
        (None, None) => anyhow::bail!("give --end or --duration"),
    };
    let answer = ctx.client.patch::<Lease, _>(&["leases", &id], &LeasePatch { end: new_end }).await.map_err(name_flags)?;
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

/// `lease release` or `lease cancel`.
#[derive(Clone, Copy, Debug)]
enum End {
    Release,
    Cancel,
}

/// What one id of `cancel`/`release` came to: the answer's JSON (for
/// `--json`), a headline, and the lease to show in full when it was the
/// only id.
struct Outcome {
    raw: String,
    headline: String,
    lease: Lease,
}

/// Ends each lease in turn, printing each outcome (a failure does not stop
/// the others, as with `oardel`), and fails at the end, with the first
/// failure's exit code, if any failed. With `--json`: an array of the
/// leases' JSON; failures go to stderr.
async fn end_leases(ctx: &Ctx, end: End, ids: &[i64]) -> Result<()> {
    let (mut raws, mut first_error, mut failed) = (Vec::new(), None, 0usize);
    for &id in ids {
        let outcome = match end {
            End::Release => release(ctx, id).await,
            End::Cancel => cancel(ctx, id).await,
        };
        match outcome {
            Ok(Outcome { raw, headline, lease }) => {
                if ctx.json {
                    raws.push(raw);
                } else if ids.len() == 1 {
                    out(&format!("{headline}\n\n{}", render::lease_detail(&lease, ctx.table)))?;
                } else {
                    out(&format!("{headline}\n"))?;
                }
            }
            Err(err) if ids.len() == 1 => return Err(err),
            Err(err) => {
                failed += 1;
                eprintln!("error: lease {id}: {err:#}");
                first_error.get_or_insert(err);
            }
        }
    }
    if ctx.json {
        let text = if ids.len() == 1 { raws.concat() } else { format!("[{}]", raws.join(",")) };
        out(&render::pretty_json(&text))?;
    }
    let verb = match end {
        End::Release => "release",
        End::Cancel => "cancel",
    };
    match first_error {
        Some(err) => Err(err.context(format!("{verb} failed for {failed} of {} leases", ids.len()))),
        None => Ok(()),
    }
}

async fn release(ctx: &Ctx, id: i64) -> Result<Outcome> {
    let answer = ctx.client.delete::<Lease>(&["leases", &id.to_string()]).await?;
    let verb = if answer.value.state == LeaseState::Cancelled { "cancelled (it had not started)" } else { "released" };
    Ok(Outcome { headline: format!("lease {id} {verb}"), raw: answer.raw, lease: answer.value })
}

async fn cancel(ctx: &Ctx, id: i64) -> Result<Outcome> {
    let segment = id.to_string();
    let current = ctx.client.get::<Lease, _>(&["leases", &segment], &NoQuery {}).await?;
    match cancel_decision(&current.value) {
        CancelDecision::Refuse(message) => Err(CliError::StateConflict(message).into()),
        CancelDecision::AlreadyCancelled => {
            Ok(Outcome { headline: format!("lease {id} is already cancelled"), raw: current.raw, lease: current.value })
        }
        CancelDecision::Cancel => {
            let answer = ctx.client.delete::<Lease>(&["leases", &segment]).await?;
            let headline = if answer.value.state == LeaseState::Cancelled {
                format!("lease {id} cancelled")
            } else {
                // It started between our GET and the DELETE: the server released it.
                format!("lease {id} had just started and was released instead")
            };
            Ok(Outcome { headline, raw: answer.raw, lease: answer.value })
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

    fn times_of(args: &LeaseCreateArgs) -> LeaseTimes {
        let now = crate::times::parse_time("2026-11-21T18:00:00Z").expect("valid");
        resolve_times(args.start, args.end, now, None, None, None).expect("absolute times")
    }

    fn request(line: &[&str], keys: Vec<String>) -> LeaseCreate {
        let args = create_args(line);
        let times = times_of(&args);
        lease_request(args, times, keys)
    }

    #[test]
    fn requests_match_the_api_shape() {
        let body = request(
            &[
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
            ],
            vec!["ssh-ed25519 AAAA me@laptop".to_owned()],
        );
        insta::assert_json_snapshot!(body);

        let body = request(&["--names", "n1,n2", "--end", "2026-11-22T10:00:00Z", "--exotic"], vec![]);
        let json = serde_json::to_value(&body).expect("serialise");
        assert_eq!(json["nodes"]["names"], serde_json::json!(["n1", "n2"]));
        assert_eq!(json["type"], Value::Null);
        assert_eq!(json["exotic"], Value::Bool(true));

        let body = request(&["--count", "1", "--duration", "1h", "--deploy", "e", "--type", "besteffort"], vec![]);
        assert_eq!(body.lease_type, Some(LeaseType::Besteffort));

        // --site restricts --count to that site's nodes; --name names the lease.
        let body =
            request(&["--count", "2", "--site", "lille", "--filter", "gpu_count >= 2", "--duration", "1h", "--name", "sweep"], vec![]);
        assert_eq!(body.nodes.filter.as_deref(), Some("site = 'lille' AND (gpu_count >= 2)"));
        assert_eq!(body.name.as_deref(), Some("sweep"));
        let body = request(&["--count", "2", "--site", "lille", "--duration", "1h"], vec![]);
        assert_eq!(body.nodes.filter.as_deref(), Some("site = 'lille'"));
        let body = request(&["--names", "n1", "--site", "lille", "--duration", "1h"], vec![]);
        assert_eq!(body.nodes.filter, None);
        // OAR's -l and -p: sent as they are (the server reads them), the
        // walltime standing for --duration; --site joins the properties.
        let body = request(&["-l", "{cluster='chifflot'}/nodes=1+nodes=1,walltime=2:00", "-p", "exotic='NO'"], vec![]);
        assert_eq!(body.resources.as_deref(), Some("{cluster='chifflot'}/nodes=1+nodes=1,walltime=2:00"));
        assert_eq!((body.properties.as_deref(), body.nodes.count, body.duration), (Some("exotic='NO'"), None, None));
        let body = request(&["-l", "nodes=2", "--duration", "2:00", "--site", "lille", "-p", "gpu_count > 1"], vec![]);
        assert_eq!(body.properties.as_deref(), Some("site = 'lille' AND (gpu_count > 1)"));
        assert_eq!(body.duration.as_deref(), Some("2h"));
    }

    fn site(name: &str, timezone: &str) -> Site {
        Site { name: name.to_owned(), timezone: timezone.to_owned(), domain: "ferrum.internal".to_owned() }
    }

    #[test]
    fn local_times_are_read_at_the_leases_site() {
        let now = crate::times::parse_time("2026-12-07T21:00:00Z").expect("valid");
        let local = crate::times::parse_time_arg("2026-12-08 09:00").expect("valid");
        let start = |sites: &[Site], flag: Option<&str>, filter: Option<&str>| {
            resolve_times(Some(local), None, now, Some(sites), flag, filter).map(|t| t.start.map(format_time).unwrap_or_default())
        };
        let lille = site("lille", "Europe/Paris");
        let montreal = site("montreal", "America/Montreal");
        let both = [lille.clone(), montreal.clone()];
        // The only site; --site; the filter's site; one zone for all.
        assert_eq!(start(std::slice::from_ref(&montreal), None, None).as_deref(), Ok("2026-12-08T14:00:00Z"));
        assert_eq!(start(&both, Some("lille"), None).as_deref(), Ok("2026-12-08T08:00:00Z"));
        assert_eq!(start(&both, None, Some("gpu_count >= 2 AND site='montreal'")).as_deref(), Ok("2026-12-08T14:00:00Z"));
        assert_eq!(start(&both, None, Some("SITE = 'lille' and gpu_count > 0")).as_deref(), Ok("2026-12-08T08:00:00Z"));
        assert_eq!(start(&[lille.clone(), site("nancy", "Europe/Paris")], None, None).as_deref(), Ok("2026-12-08T08:00:00Z"));
        // No way to tell: the error says what to write.
        let errors = [
            start(&both, None, None),
            start(&both, None, Some("site = 'lille' OR site = 'montreal'")),
            start(&both, None, Some("website = 'lille'")),
            start(&both, Some("nancy"), None),
            start(&[], None, None),
        ]
        .map(|r| r.expect_err("refused"));
        insta::assert_snapshot!(errors.join("\n"));
        // Absolute times and offsets never need a site.
        let times = resolve_times(Some(crate::times::parse_time_arg("+2h").expect("valid")), None, now, None, None, None);
        assert_eq!(times.map(|t| t.start.map(format_time)), Ok(Some("2026-12-07T23:00:00Z".to_owned())));
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
