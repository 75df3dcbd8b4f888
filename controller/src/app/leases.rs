//! Leases: creation (placement on the calendar, pre-emption of besteffort
//! leases), extension, early release and cancellation, availability and the
//! calendar view. Every calendar write happens with the cache lock held and
//! is checked by the database (calendar generation + overlap triggers).

use std::collections::BTreeMap;

use ferrum_api as api;
use ferrum_api::limits;

use super::{Actor, App, AppError, AppResult};
use crate::calendar::groups::Group;
use crate::calendar::{NodeSet, Query};
use crate::db::{AllocationChange, BusyRow, DbError, LeaseRow, NewLease, NodeRow, Preemption};
use crate::model::lease::{self, LeaseAction, LeaseInput};
use crate::model::time::{from_seconds, to_seconds};
use crate::model::{LeaseId, LeaseState, LeaseType, NodeId, ProjectId, Seconds};

use super::cache::CalendarCache;
use super::nodes::parse_filter;

/// How often a lease write is retried when the calendar moved under it.
const MAX_ATTEMPTS: usize = 5;

/// Parses a duration ([`ferrum_api::durations::parse_duration`]: `90m`,
/// `1h 30m`, `2d`, or an OAR walltime `2:00`); the error names `field`.
pub fn parse_duration(field: &str, text: &str) -> AppResult<Seconds> {
    ferrum_api::durations::parse_duration(text).map_err(|e| AppError::bad_request(format!("{field}: {e}")))
}

/// A lease the caller may see, or 404 (other users' leases do not exist
/// for them).
fn visible(actor: &Actor, lease: LeaseRow) -> AppResult<LeaseRow> {
    if actor.is_admin || lease.owner_id == actor.user_id {
        Ok(lease)
    } else {
        Err(AppError::NotFound(format!("lease '{}' does not exist", lease.id)))
    }
}

fn not_found_as_404(e: DbError) -> AppError {
    e.into()
}

/// The resolved placement of a request.
struct Planned {
    start: Seconds,
    end: Seconds,
    nodes: Vec<u32>,
}

/// How far ahead the calendar is open: a lease may end at most
/// `[leases] max_horizon` after now. This is the one rule creation (before
/// and after placement), extension and availability ask, so availability
/// never offers a slot that creation refuses.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Horizon {
    /// The latest end the calendar takes.
    pub last_end: Seconds,
    span: std::time::Duration,
}

impl Horizon {
    pub(crate) fn new(now: Seconds, span: std::time::Duration) -> Horizon {
        let secs = i64::try_from(span.as_secs()).unwrap_or(i64::MAX / 4);
        Horizon { last_end: now.saturating_add(secs), span }
    }

    pub(crate) fn admits(&self, end: Seconds) -> bool {
        end <= self.last_end
    }

    /// `Ok` when a lease ending at `end` is within the horizon; the error
    /// names `field`.
    pub(crate) fn check(&self, field: &str, end: Seconds) -> AppResult<()> {
        if self.admits(end) {
            return Ok(());
        }
        Err(AppError::bad_request(format!(
            "{field}: the lease would end more than {} ahead (after {}); the calendar is open that far only",
            humantime::format_duration(self.span),
            from_seconds(self.last_end).to_rfc3339()
        )))
    }

    /// `Ok` when a placement found as soon as possible still ends within
    /// the horizon (the nodes are busy until too late otherwise).
    fn check_placed(&self, planned: &Planned) -> AppResult<()> {
        if self.admits(planned.end) {
            return Ok(());
        }
        Err(AppError::Conflict {
            message: format!(
                "the earliest placement would end at {}, beyond the calendar's horizon ({} ahead); ask for fewer nodes or a shorter lease",
                from_seconds(planned.end).to_rfc3339(),
                humantime::format_duration(self.span)
            ),
            earliest_start: None,
        })
    }
}

impl App {
    pub(crate) fn resolve_project(&self, actor: &Actor, project: Option<&str>) -> AppResult<Option<ProjectId>> {
        match project {
            Some(name) => {
                if let Some((id, _)) = actor.projects.iter().find(|(_, n)| n == name) {
                    return Ok(Some(*id));
                }
                if actor.is_admin {
                    // Admins may book for any existing project.
                    return Err(AppError::Forbidden(format!(
                        "project '{name}': admins book for projects they belong to; add yourself to it or omit the project for an operator lease"
                    )));
                }
                Err(AppError::Forbidden(format!("you are not a member of project '{name}'")))
            }
            None if actor.is_admin => Ok(None),
            None => match actor.projects.as_slice() {
                [(id, _)] => Ok(Some(*id)),
                [] => Err(AppError::Forbidden("you belong to no project; ask an admin to add you to one".into())),
                many => Err(AppError::bad_request(format!(
                    "project: you belong to several projects ({}); say which one",
                    many.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>().join(", ")
                ))),
            },
        }
    }

    /// The reservation horizon seen from `now`.
    pub(crate) fn horizon(&self, now: Seconds) -> Horizon {
        Horizon::new(now, self.config.leases.max_horizon)
    }

    /// Creates a lease: validates, places it on the calendar and commits it.
    pub async fn create_lease(&self, actor: &Actor, req: api::LeaseCreate) -> AppResult<LeaseRow> {
        check_lease_texts(&req)?;
        let now = self.now();
        let project = self.resolve_project(actor, req.project.as_deref())?;
        let (want, walltime) = wanted(&req)?;
        let lease_type =
            req.lease_type.map(LeaseType::from).unwrap_or(if req.deploy.is_some() { LeaseType::Deploy } else { LeaseType::Default });
        if let Some(d) = &req.deploy {
            if lease_type != LeaseType::Deploy {
                return Err(AppError::bad_request("deploy: only a lease of type 'deploy' deploys an environment"));
            }
            if d.environment.trim().is_empty() {
                return Err(AppError::bad_request("deploy.environment: name the environment to deploy"));
            }
            validate_ssh_keys("deploy.ssh_keys", &d.ssh_keys)?;
            // Checked now, for the lease's owner, rather than found missing
            // when the lease starts (it is resolved again then).
            // (Its length was checked with the other texts above.)
            if let Err(e) = self.get_environment(actor, &d.environment, None, None).await {
                return Err(match e {
                    AppError::NotFound(m) | AppError::Conflict { message: m, .. } | AppError::BadRequest { message: m, .. } => {
                        AppError::bad_request(format!("deploy.environment: {m}"))
                    }
                    other => other,
                });
            }
        }

        // When.
        let grace = i64::try_from(self.config.leases.start_grace.as_secs()).unwrap_or(60);
        let horizon = self.horizon(now);
        let fixed_start = match req.start {
            Some(t) => {
                let s = to_seconds(t);
                if s < now - grace {
                    return Err(AppError::bad_request(format!("start: {t} is in the past; omit it for as soon as possible")));
                }
                Some(s.max(now))
            }
            None => None,
        };
        let duration = match (walltime, &req.duration, req.end) {
            (Some(_), Some(_), _) => {
                return Err(AppError::bad_request("duration: the resources give a walltime already; give one or the other"));
            }
            (Some(_), None, Some(_)) => {
                return Err(AppError::bad_request("end: the resources give a walltime already; give one or the other"));
            }
            (Some(w), None, None) => w,
            (None, _, _) => requested_duration(&req, fixed_start, now)?,
        };
        horizon.check(if req.end.is_some() { "end" } else { "duration" }, fixed_start.unwrap_or(now).saturating_add(duration))?;
        if lease_type == LeaseType::Besteffort && fixed_start.is_some_and(|s| s > now) {
            return Err(AppError::bad_request("start: besteffort leases start as soon as nodes are idle; omit start"));
        }

        let project_row = match project.and_then(|id| actor.projects.iter().find(|(p, _)| *p == id)) {
            Some((_, name)) => Some(self.project_row(name).await?),
            None => None,
        };
        // A large lease waits for an admin's approval, and gives them time;
        // the policy counts every node of every group.
        let wanted = want.total();
        let approval = self.approval_reason(actor, project_row.as_ref(), lease_type, wanted, duration);
        let mut not_before = now;
        if let Some(reason) = &approval {
            let notice = i64::try_from(self.config.policy.approval_notice.as_secs()).unwrap_or(i64::MAX / 4);
            not_before = now.saturating_add(notice);
            if let Some(start) = fixed_start.filter(|s| *s < not_before) {
                return Err(AppError::Forbidden(format!(
                    "policy 'approval': this lease {reason}, and must start at least {} ahead: at {} or later, not {}",
                    humantime::format_duration(self.config.policy.approval_notice),
                    from_seconds(not_before).to_rfc3339(),
                    from_seconds(start).to_rfc3339()
                )));
            }
        }

        let mut cache = self.cache.lock().await;
        // Other replicas' planners wait (PostgreSQL; see `planning_lock`).
        let _planning = self.store.planning_lock().await?;
        for _attempt in 0..MAX_ATTEMPTS {
            cache.refresh(self.store.as_ref(), now).await?;
            let offered = |n: &super::cache::NodeInfo| n.policy.offers_node() && n.state.is_allocatable() && (req.exotic || !n.exotic);
            let (planned, filter_text, groups_json) = match &want {
                Want::Count(count, filter) => {
                    let parsed = filter.as_deref().map(|f| parse_filter(f, &cache.known_properties)).transpose()?;
                    let mut set = cache.node_set();
                    for (i, n) in cache.nodes.iter().enumerate() {
                        if offered(n) && parsed.as_ref().is_none_or(|f| f.matches(&n.properties)) {
                            set.insert(i as u32);
                        }
                    }
                    (plan(&cache, lease_type, *count, duration, fixed_start, not_before, &set)?, filter.clone(), None)
                }
                Want::Names(names) => {
                    let set = named_candidates(&cache, names, req.exotic)?;
                    let count = u32::try_from(names.len()).unwrap_or(u32::MAX);
                    (plan(&cache, lease_type, count, duration, fixed_start, not_before, &set)?, None, None)
                }
                Want::Groups(groups) => {
                    let mut sets = Vec::with_capacity(groups.len());
                    for g in groups {
                        let parsed = g
                            .filter
                            .as_deref()
                            .map(|f| {
                                parse_filter(f, &cache.known_properties).map_err(|e| match e {
                                    AppError::BadRequest { code, message } => {
                                        let message = message.strip_prefix("filter: ").unwrap_or(&message);
                                        AppError::BadRequest { code, message: format!("{}: {message}", g.field) }
                                    }
                                    other => other,
                                })
                            })
                            .transpose()?;
                        let mut set = cache.node_set();
                        for (i, n) in cache.nodes.iter().enumerate() {
                            if offered(n) && parsed.as_ref().is_none_or(|f| f.matches(&n.properties)) {
                                set.insert(i as u32);
                            }
                        }
                        sets.push(set);
                    }
                    let (planned, assigned) = plan_groups(&cache, lease_type, groups, &sets, duration, fixed_start, not_before)?;
                    let stored: Vec<StoredGroup> = groups
                        .iter()
                        .zip(assigned)
                        .map(|(g, nodes)| StoredGroup {
                            count: g.count,
                            filter: g.filter.clone(),
                            nodes: nodes.iter().map(|&i| cache.node(i).id.0).collect(),
                        })
                        .collect();
                    let json = serde_json::to_string(&stored).map_err(|e| AppError::Internal(e.into()))?;
                    (planned, None, Some(json))
                }
            };
            let count = wanted;
            horizon.check_placed(&planned)?;
            let ask = super::policy::Ask {
                project: project_row.as_ref(),
                lease_type,
                nodes: count,
                start: planned.start,
                end: planned.end,
                exotic: req.exotic,
                extends_from: None,
            };
            self.check_policy(actor, &ask).await?;
            let node_ids: Vec<NodeId> = planned.nodes.iter().map(|&i| cache.node(i).id).collect();
            let preempt = if lease_type == LeaseType::Besteffort {
                Vec::new()
            } else {
                self.plan_preemptions(&node_ids, planned.start, planned.end, now).await?
            };
            let new = NewLease {
                owner_id: actor.user_id,
                project_id: project,
                lease_type,
                state: if approval.is_some() { LeaseState::AwaitingApproval } else { LeaseState::Pending },
                start: planned.start,
                end: planned.end,
                exotic: req.exotic,
                filter: filter_text,
                groups: groups_json,
                deploy: req.deploy.as_ref().map(|d| serde_json::json!({"environment": d.environment, "ssh_keys": d.ssh_keys}).to_string()),
                name: req.name.clone(),
                reason: approval.clone(),
                nodes: node_ids,
                created_at: now,
            };
            match self.store.insert_lease(&new, &preempt.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(), cache.generation).await {
                Ok((row, generation)) => {
                    for (p, victim) in &preempt {
                        release_cut(&mut cache, victim, p.change, now);
                    }
                    cache.reserve(&planned.nodes, planned.start, planned.end, lease_type);
                    cache.generation = generation;
                    drop(cache);
                    if row.start <= now || !preempt.is_empty() {
                        self.wake.notify_one();
                    }
                    tracing::info!(lease = %row.id, owner = %actor.name, nodes = row.nodes.len(), start = row.start, end = row.end, "lease created");
                    return Ok(row);
                }
                Err(e @ (DbError::StaleCalendar | DbError::DoubleBooked | DbError::Raced { .. })) => {
                    // Another writer (another replica) moved the calendar
                    // since the cache was read: read it again and re-plan.
                    tracing::debug!(error = %e, attempt = _attempt, "lease insertion raced; planning again");
                    cache.invalidate();
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Conflict { message: "the calendar is changing too fast; try again".into(), earliest_start: None })
    }

    /// Besteffort leases holding any of `nodes` during `[start, end)`, and
    /// what pre-empting them means for each.
    async fn plan_preemptions(
        &self,
        nodes: &[NodeId],
        start: Seconds,
        end: Seconds,
        now: Seconds,
    ) -> AppResult<Vec<(Preemption, LeaseRow)>> {
        let rows = self.store.besteffort_overlapping(nodes, start, end).await?;
        let mut victims: Vec<LeaseId> = rows.iter().map(|r| r.lease).collect();
        victims.sort();
        victims.dedup();
        let mut out = Vec::new();
        for id in victims {
            let victim = self.store.get_lease(id).await?;
            let cut = start;
            let reason = format!("pre-empted at {} by a normal lease", from_seconds(cut).to_rfc3339());
            let (to, change) = if victim.start >= cut || cut <= now {
                let (to, action) = lease::next(victim.state, LeaseInput::Preempted)
                    .map_err(|e| AppError::Conflict { message: e.to_string(), earliest_start: None })?;
                let change = match action {
                    LeaseAction::DropAllocation => AllocationChange::Drop,
                    LeaseAction::EndAndReset => AllocationChange::CutAt(cut),
                    _ => AllocationChange::Keep,
                };
                (to, change)
            } else {
                // It runs until the normal lease starts, then ends on time.
                (victim.state, AllocationChange::CutAt(cut))
            };
            out.push((Preemption { lease: id, from: victim.state, to, change, reason }, victim));
        }
        Ok(out)
    }

    /// One lease, if `actor` may see it (from the read cache while nothing
    /// was committed since it was read).
    pub async fn get_lease(&self, actor: &Actor, id: i64) -> AppResult<LeaseRow> {
        let generation = self.store.read_generation();
        let row = self.reads.leases.get_or_read(generation, &id, self.store.get_lease(LeaseId(id))).await.map_err(not_found_as_404)?;
        visible(actor, LeaseRow::clone(&row))
    }

    pub async fn list_leases(&self, actor: &Actor, state: Option<LeaseState>, all: bool) -> AppResult<Vec<LeaseRow>> {
        let owner = if actor.is_admin { None } else { Some(actor.user_id) };
        self.leases_of(owner, state, all).await
    }

    /// The leases of user `owner` (`oarstat -u`): admins name anyone, users
    /// only themselves (403 otherwise, before saying whether the user
    /// exists); an unknown user is a 400 naming the parameter.
    pub async fn list_leases_of(&self, actor: &Actor, owner: &str, state: Option<LeaseState>, all: bool) -> AppResult<Vec<LeaseRow>> {
        super::accounts::validate_name("owner: user", owner)?;
        if !actor.is_admin && owner != actor.name {
            return Err(AppError::Forbidden("owner: only admins may list another user's leases".into()));
        }
        let user = match self.store.get_user(owner).await {
            Ok(user) => user,
            Err(DbError::NotFound { .. }) => return Err(AppError::NotFound(format!("owner: there is no user '{owner}'"))),
            Err(e) => return Err(e.into()),
        };
        self.leases_of(Some(user.id), state, all).await
    }

    async fn leases_of(&self, owner: Option<crate::model::UserId>, state: Option<LeaseState>, all: bool) -> AppResult<Vec<LeaseRow>> {
        let include_over = all || state.is_some_and(lease::is_terminal);
        let mut rows = self.store.list_leases(owner, include_over).await?;
        if let Some(s) = state {
            rows.retain(|l| l.state == s);
        }
        Ok(rows)
    }

    /// Moves a lease's end later, if its nodes are free until then.
    pub async fn extend_lease(&self, actor: &Actor, id: i64, new_end: Seconds) -> AppResult<LeaseRow> {
        let now = self.now();
        let horizon = self.horizon(now);
        let mut cache = self.cache.lock().await;
        // Other replicas' planners wait (PostgreSQL; see `planning_lock`).
        let _planning = self.store.planning_lock().await?;
        for _attempt in 0..MAX_ATTEMPTS {
            let lease = self.get_lease(actor, id).await?;
            if !lease::holds_slot(lease.state) {
                return Err(AppError::Conflict {
                    message: format!("a lease in state '{}' cannot be extended", lease.state.as_str()),
                    earliest_start: None,
                });
            }
            if new_end <= lease.end {
                return Err(AppError::bad_request(format!(
                    "end: must be later than the current end {} (to end a lease early, DELETE it)",
                    from_seconds(lease.end).to_rfc3339()
                )));
            }
            horizon.check("end", new_end)?;
            cache.refresh(self.store.as_ref(), now).await?;
            let project_row = match &lease.project {
                Some(name) => Some(self.project_row(name).await?),
                None => None,
            };
            let ask = super::policy::Ask {
                project: project_row.as_ref(),
                lease_type: lease.lease_type,
                nodes: u32::try_from(lease.nodes.len()).unwrap_or(u32::MAX),
                start: lease.start,
                end: new_end,
                exotic: lease.exotic,
                extends_from: Some(lease.end),
            };
            self.check_policy(actor, &ask).await?;
            let indices: Vec<u32> = lease.nodes.iter().filter_map(|(n, _)| cache.index_of(*n)).collect();
            let calendar = if lease.lease_type == LeaseType::Besteffort { &cache.all } else { &cache.normal };
            if !calendar.is_free(&indices, lease.end, new_end) {
                // The latest end that would fit, by bisection on the calendar.
                let (mut ok, mut bad) = (lease.end, new_end);
                while bad - ok > 1 {
                    let mid = ok + (bad - ok) / 2;
                    if calendar.is_free(&indices, lease.end, mid) { ok = mid } else { bad = mid }
                }
                let message = if ok > lease.end {
                    format!(
                        "its nodes are booked before {}; the latest possible end is {}",
                        from_seconds(new_end).to_rfc3339(),
                        from_seconds(ok).to_rfc3339()
                    )
                } else {
                    "its nodes are booked right after it ends; it cannot be extended".to_owned()
                };
                return Err(AppError::Conflict { message, earliest_start: None });
            }
            let node_ids: Vec<NodeId> = lease.nodes.iter().map(|(n, _)| *n).collect();
            let preempt = if lease.lease_type == LeaseType::Besteffort {
                Vec::new()
            } else {
                self.plan_preemptions(&node_ids, lease.end, new_end, now).await?
            };
            let preemptions: Vec<Preemption> = preempt.iter().map(|(p, _)| p.clone()).collect();
            match self.store.set_lease_end(lease.id, new_end, &preemptions, cache.generation, now).await {
                Ok(generation) => {
                    for (p, victim) in &preempt {
                        release_cut(&mut cache, victim, p.change, now);
                    }
                    cache.reserve(&indices, lease.end, new_end, lease.lease_type);
                    cache.generation = generation;
                    drop(cache);
                    self.wake.notify_one();
                    if lease.owner_id != actor.user_id {
                        let detail = serde_json::json!({ "owner": lease.owner, "from": from_seconds(lease.end).to_rfc3339(), "to": from_seconds(new_end).to_rfc3339() });
                        self.audit(actor, "lease.extend", &format!("lease/{id}"), detail).await;
                    }
                    return Ok(self.store.get_lease(lease.id).await?);
                }
                Err(DbError::StaleCalendar | DbError::DoubleBooked | DbError::Raced { .. }) => {
                    cache.invalidate();
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Conflict { message: "the calendar is changing too fast; try again".into(), earliest_start: None })
    }

    /// Ends a lease now: cancels it if it has not started, releases it
    /// otherwise. Ending an ended lease changes nothing.
    pub async fn end_lease(&self, actor: &Actor, id: i64) -> AppResult<LeaseRow> {
        self.get_lease(actor, id).await?;
        let lease = self
            .change_lease(LeaseId(id), LeaseInput::Released, &|to| {
                let verb = if to == LeaseState::Cancelled { "cancelled" } else { "released" }; // tidy:not-a-state
                format!("{verb} by {}", actor.name)
            })
            .await?;
        tracing::info!(lease = %lease.id, actor = %actor.name, state = lease.state.as_str(), "lease ended by its holder or an admin");
        if lease.owner_id != actor.user_id {
            self.audit(
                actor,
                "lease.end",
                &format!("lease/{id}"),
                serde_json::json!({ "owner": lease.owner, "state": lease.state.as_str() }),
            )
            .await;
        }
        Ok(lease)
    }

    /// Approves or rejects a lease awaiting approval (admin); the reason is
    /// shown to the requester.
    pub async fn decide_lease(&self, actor: &Actor, id: i64, approve: bool, reason: Option<&str>) -> AppResult<LeaseRow> {
        actor.require_admin()?;
        if let Some(r) = reason {
            super::one_line("reason", r, limits::REASON)?;
        }
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        let (input, verb) = if approve { (LeaseInput::Approved, "approved") } else { (LeaseInput::Rejected, "rejected") }; // tidy:not-a-state
        let text = format!("{verb} by {}{}", actor.name, reason.map(|r| format!(": {r}")).unwrap_or_default());
        let lease = self.change_lease(LeaseId(id), input, &|_| text.clone()).await?;
        self.audit(
            actor,
            if approve { "lease.approve" } else { "lease.reject" },
            &format!("lease/{id}"),
            serde_json::json!({ "reason": reason, "owner": lease.owner, "project": lease.project, "nodes": lease.nodes.len(),
                "start": from_seconds(lease.start).to_rfc3339(), "end": from_seconds(lease.end).to_rfc3339() }),
        )
        .await;
        tracing::info!(lease = %lease.id, actor = %actor.name, "lease {verb}");
        self.notify_decision(&lease, approve).await;
        Ok(lease)
    }

    /// Ends a lease now for a reason of the system's or an admin's (a
    /// disabled user's leases): cancelled if it has not started, released
    /// otherwise, through the same transition as `end_lease`.
    pub(crate) async fn end_lease_with_reason(&self, id: LeaseId, reason: &str) -> AppResult<LeaseRow> {
        self.change_lease(id, LeaseInput::Released, &|to| {
            let verb = if to == LeaseState::Cancelled { "cancelled" } else { "released" }; // tidy:not-a-state
            format!("{verb}: {reason}")
        })
        .await
    }

    /// Rejects a lease still waiting for approval at its start.
    pub(crate) async fn expire_unapproved(&self, id: LeaseId) -> AppResult<LeaseRow> {
        let lease = self
            .change_lease(id, LeaseInput::Rejected, &|_| "not approved before its start time; ask again with a later start".into())
            .await?;
        self.notify_decision(&lease, false).await;
        Ok(lease)
    }

    /// Feeds `input` to a lease and applies what it means for the calendar
    /// (retried when the calendar moves under it). `reason` says why, given
    /// the new state.
    async fn change_lease(&self, id: LeaseId, input: LeaseInput, reason: &(dyn Fn(LeaseState) -> String + Sync)) -> AppResult<LeaseRow> {
        let now = self.now();
        let mut cache = self.cache.lock().await;
        // Other replicas' planners wait (PostgreSQL; see `planning_lock`).
        let _planning = self.store.planning_lock().await?;
        for _attempt in 0..MAX_ATTEMPTS {
            let lease = self.store.get_lease(id).await?;
            let (to, action) =
                lease::next(lease.state, input).map_err(|e| AppError::Conflict { message: e.to_string(), earliest_start: None })?;
            let change = match action {
                LeaseAction::AlreadyDone => return Ok(lease),
                LeaseAction::DropAllocation => AllocationChange::Drop,
                // Keep at least one second so the nodes stay tied to the
                // lease until the clock loop has reset them.
                LeaseAction::EndAndReset => AllocationChange::CutAt(now.max(lease.start + 1)),
                LeaseAction::Record | LeaseAction::TakeNodes => AllocationChange::Keep,
            };
            cache.refresh(self.store.as_ref(), now).await?;
            match self.store.transition_lease(lease.id, lease.state, to, change, Some(&reason(to)), cache.generation, now).await {
                Ok(generation) => {
                    release_cut(&mut cache, &lease, change, now);
                    cache.generation = generation;
                    drop(cache);
                    self.wake.notify_one();
                    return Ok(self.store.get_lease(lease.id).await?);
                }
                Err(DbError::StaleCalendar | DbError::Raced { .. }) => {
                    cache.invalidate();
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Conflict { message: "the lease is changing too fast; try again".into(), earliest_start: None })
    }

    /// The earliest slots for `count` nodes matching `filter` for
    /// `duration`: the first one, then each next one starting after the
    /// previous one ends.
    ///
    /// Only slots that creation would accept from this caller are offered:
    /// the same horizon, the same approval notice for a lease large enough
    /// to wait for an admin, and, for a caller with one project (the
    /// project creation picks when none is named), the same policy check.
    /// A caller with several projects names one at creation; its class
    /// rules may still refuse a slot offered here.
    pub async fn availability(&self, actor: &Actor, q: &api::AvailabilityQuery) -> AppResult<Vec<(Seconds, Seconds, Vec<String>)>> {
        let now = self.now();
        if q.count == 0 {
            return Err(AppError::bad_request("count: must be at least 1"));
        }
        super::one_line("duration", &q.duration, limits::DURATION)?;
        if let Some(f) = &q.filter {
            super::one_line("filter", f, limits::FILTER)?;
        }
        let duration = parse_duration("duration", &q.duration)?;
        let limit = q.limit.unwrap_or(3);
        if !(1..=20).contains(&limit) {
            return Err(AppError::bad_request("limit: must be between 1 and 20"));
        }
        let mut from = q.from.map(to_seconds).unwrap_or(now).max(now);
        // The same rule as creation: a request that cannot end before the
        // horizon is refused alike, and a slot ending past it is not offered.
        let horizon = self.horizon(now);
        horizon.check("duration", from.saturating_add(duration))?;
        let exotic = q.exotic.unwrap_or(false);
        // Whether a lease waits for approval does not depend on which of
        // the caller's projects it is for; the class rules do.
        let first_project = match actor.projects.first() {
            Some((_, name)) => Some(self.project_row(name).await?),
            None => None,
        };
        let project_row = first_project.as_ref().filter(|_| actor.projects.len() == 1);
        if self.approval_reason(actor, first_project.as_ref(), LeaseType::Default, q.count, duration).is_some() {
            let notice = i64::try_from(self.config.policy.approval_notice.as_secs()).unwrap_or(i64::MAX / 4);
            from = from.max(now.saturating_add(notice));
        }
        let mut cache = self.cache.lock().await;
        cache.refresh(self.store.as_ref(), now).await?;
        let filter = q.filter.as_deref().filter(|f| !f.trim().is_empty()).map(|f| parse_filter(f, &cache.known_properties)).transpose()?;
        let mut candidates = cache.node_set();
        for (i, n) in cache.nodes.iter().enumerate() {
            if n.policy.offers_node()
                && n.state.is_allocatable()
                && (exotic || !n.exotic)
                && filter.as_ref().is_none_or(|f| f.matches(&n.properties))
            {
                candidates.insert(i as u32);
            }
        }
        let mut slots = Vec::new();
        let mut refused = None;
        let mut not_before = from;
        for _ in 0..limit {
            let planned = plan(&cache, LeaseType::Default, q.count, duration, None, not_before, &candidates)?;
            if !horizon.admits(planned.end) {
                break;
            }
            not_before = planned.end;
            if project_row.is_some() {
                let ask = super::policy::Ask {
                    project: project_row,
                    lease_type: LeaseType::Default,
                    nodes: q.count,
                    start: planned.start,
                    end: planned.end,
                    exotic,
                    extends_from: None,
                };
                if let Err(e) = self.check_policy(actor, &ask).await {
                    refused.get_or_insert(e);
                    continue;
                }
            }
            slots.push((planned.start, planned.end, planned.nodes.iter().map(|&i| cache.node(i).name.clone()).collect()));
        }
        match refused {
            // Say why nothing is offered when the policy is the reason.
            Some(e) if slots.is_empty() => Err(e),
            _ => Ok(slots),
        }
    }

    /// Busy intervals per node between `from` and `to` (for Gantt charts);
    /// `http::views::busy` decides what a caller sees of each.
    pub async fn calendar_view(
        &self,
        from: Option<Seconds>,
        to: Option<Seconds>,
        filter: Option<&str>,
    ) -> AppResult<(Seconds, Seconds, Vec<(NodeRow, Vec<BusyRow>)>)> {
        let from = from.unwrap_or_else(|| self.now());
        let to = to.unwrap_or(from + 7 * 86_400);
        if to <= from {
            return Err(AppError::bad_request("to: must be after from"));
        }
        if to - from > 400 * 86_400 {
            return Err(AppError::bad_request("to: the window is limited to 400 days"));
        }
        let nodes = self.list_nodes(filter).await?;
        let mut busy: BTreeMap<NodeId, Vec<BusyRow>> = BTreeMap::new();
        for row in self.store.busy_between(from, to).await? {
            busy.entry(row.node).or_default().push(row);
        }
        let out = nodes.into_iter().map(|n| {
            let b = busy.remove(&n.id).unwrap_or_default();
            (n, b)
        });
        Ok((from, to, out.collect()))
    }
}

/// The length of a lease asked with `duration` or `end` (from its
/// fixed start, or from now).
fn requested_duration(req: &api::LeaseCreate, fixed_start: Option<Seconds>, now: Seconds) -> AppResult<Seconds> {
    Ok(match (&req.duration, req.end) {
        (Some(d), None) => parse_duration("duration", d)?,
        (None, Some(end)) => {
            let from = fixed_start.unwrap_or(now);
            let e = to_seconds(end);
            if e <= from {
                return Err(AppError::bad_request("end: must be after the start"));
            }
            e - from
        }
        (Some(_), Some(_)) => return Err(AppError::bad_request("give either duration or end, not both")),
        (None, None) => return Err(AppError::bad_request("duration: say how long (e.g. 4h), or give an end")),
    })
}

/// One group of a multi-group request.
struct WantGroup {
    count: u32,
    /// With the request's `properties` ANDed in.
    filter: Option<String>,
    /// What an error about its filter names (`nodes.groups[1].filter`,
    /// `resources (group 2)`).
    field: String,
}

/// Which nodes a request wants.
enum Want<'a> {
    Count(u32, Option<String>),
    Names(&'a [String]),
    /// Two groups or more (one group is a `Count`).
    Groups(Vec<WantGroup>),
}

impl Want<'_> {
    /// Nodes in all: what policy, quotas and approval count.
    fn total(&self) -> u32 {
        match self {
            Want::Count(c, _) => *c,
            Want::Names(names) => u32::try_from(names.len()).unwrap_or(u32::MAX),
            Want::Groups(groups) => groups.iter().fold(0u32, |acc, g| acc.saturating_add(g.count)),
        }
    }
}

/// A multi-group lease's groups as stored (`leases.groups`, JSON): each
/// group's count, filter and node ids in the order the groups were asked.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredGroup {
    pub count: u32,
    pub filter: Option<String>,
    pub nodes: Vec<i64>,
}

impl StoredGroup {
    /// The groups of a lease as the API shows them, the node ids named by
    /// the lease's `nodes`; `None` when the text does not parse.
    pub(crate) fn parse(text: &str, nodes: &[(NodeId, String)]) -> Option<Vec<api::LeaseGroup>> {
        let groups: Vec<StoredGroup> = serde_json::from_str(text).ok()?;
        let name = |id: i64| nodes.iter().find(|(n, _)| n.0 == id).map(|(_, name)| name.clone());
        Some(
            groups
                .into_iter()
                .map(|g| api::LeaseGroup { count: g.count, filter: g.filter, nodes: g.nodes.into_iter().filter_map(name).collect() })
                .collect(),
        )
    }
}

/// What a request asks for: its nodes (from `nodes` or from `resources`,
/// with `properties` ANDed into every filter) and the walltime its
/// resource string gives, if any. Pure: filters are checked at placement.
fn wanted(req: &api::LeaseCreate) -> AppResult<(Want<'_>, Option<Seconds>)> {
    let sel = &req.nodes;
    let properties = req.properties.as_deref().filter(|p| !p.trim().is_empty());
    let and = |filter: Option<&str>| crate::oar::and_properties(filter, properties);
    let (groups, walltime) = if let Some(text) = &req.resources {
        if sel.count.is_some() || sel.filter.is_some() || sel.names.is_some() || sel.groups.is_some() {
            return Err(AppError::bad_request("resources: give either resources or nodes, not both"));
        }
        let parsed = crate::oar::parse_resources(text).map_err(|e| AppError::bad_request(format!("resources: {e}")))?;
        let many = parsed.groups.len() > 1;
        let groups = parsed
            .groups
            .into_iter()
            .enumerate()
            .map(|(i, g)| WantGroup {
                count: g.count,
                filter: and(g.filter.as_deref()),
                field: if many { format!("resources (group {})", i + 1) } else { "resources".into() },
            })
            .collect::<Vec<_>>();
        (groups, parsed.walltime)
    } else if let Some(groups) = &sel.groups {
        if sel.count.is_some() || sel.filter.is_some() || sel.names.is_some() {
            return Err(AppError::bad_request("nodes.groups: give groups alone, without nodes.count, nodes.filter or nodes.names"));
        }
        if groups.is_empty() {
            return Err(AppError::bad_request("nodes.groups: give at least one group"));
        }
        if groups.len() > limits::GROUPS {
            return Err(AppError::bad_request(format!("nodes.groups: at most {} groups", limits::GROUPS)));
        }
        let mut out = Vec::with_capacity(groups.len());
        for (i, g) in groups.iter().enumerate() {
            if g.count == 0 {
                return Err(AppError::bad_request(format!("nodes.groups[{i}].count: must be at least 1")));
            }
            if let Some(f) = &g.filter {
                super::one_line(&format!("nodes.groups[{i}].filter"), f, limits::FILTER)?;
            }
            out.push(WantGroup { count: g.count, filter: and(g.filter.as_deref()), field: format!("nodes.groups[{i}].filter") });
        }
        (out, None)
    } else {
        let want = match (&sel.names, sel.count, sel.filter.as_deref()) {
            (Some(names), count, None) if !names.is_empty() => {
                if count.is_some_and(|c| c as usize != names.len()) {
                    return Err(AppError::bad_request("nodes.count: does not match the number of nodes.names"));
                }
                if properties.is_some() {
                    return Err(AppError::bad_request("properties: not with nodes.names (name the nodes, or filter them)"));
                }
                Want::Names(names)
            }
            (Some(_), _, Some(_)) => return Err(AppError::bad_request("nodes: give names or a filter, not both")),
            (None, Some(c), filter) if c >= 1 => Want::Count(c, and(filter.filter(|f| !f.trim().is_empty()))),
            (None, Some(_), _) => return Err(AppError::bad_request("nodes.count: must be at least 1")),
            _ => return Err(AppError::bad_request("nodes: give count (with an optional filter), names or groups, or give resources")),
        };
        return Ok((want, None));
    };
    let want = match <[WantGroup; 1]>::try_from(groups) {
        Ok([one]) => Want::Count(one.count, one.filter),
        Err(groups) => Want::Groups(groups),
    };
    Ok((want, walltime))
}

/// The free texts of a lease request: lengths, and one line each (see
/// [`limits`]); errors name the field.
fn check_lease_texts(req: &api::LeaseCreate) -> AppResult<()> {
    let one_line = super::one_line;
    if let Some(p) = &req.project {
        one_line("project", p, limits::NAME)?;
    }
    if let Some(d) = &req.duration {
        one_line("duration", d, limits::DURATION)?;
    }
    if let Some(f) = &req.nodes.filter {
        one_line("nodes.filter", f, limits::FILTER)?;
    }
    if let Some(r) = &req.resources {
        one_line("resources", r, limits::RESOURCES)?;
    }
    if let Some(p) = &req.properties {
        one_line("properties", p, limits::FILTER)?;
    }
    if let Some(names) = &req.nodes.names {
        if names.len() > limits::NODE_NAMES {
            return Err(AppError::bad_request(format!("nodes.names: at most {} nodes", limits::NODE_NAMES)));
        }
        for (i, name) in names.iter().enumerate() {
            one_line(&format!("nodes.names[{i}]"), name, limits::NAME)?;
        }
    }
    if let Some(d) = &req.deploy {
        one_line("deploy.environment", &d.environment, limits::ENVIRONMENT)?;
    }
    if let Some(n) = &req.name {
        one_line("name", n, limits::LEASE_NAME)?;
    }
    Ok(())
}

/// Checks that each line is an OpenSSH public key; the error names
/// `field[i]`.
pub fn validate_ssh_keys(field: &str, keys: &[String]) -> AppResult<()> {
    if keys.len() > limits::SSH_KEYS {
        return Err(AppError::bad_request(format!("{field}: at most {} keys", limits::SSH_KEYS)));
    }
    for (i, key) in keys.iter().enumerate() {
        super::one_line(&format!("{field}[{i}]"), key, limits::SSH_KEY)?;
        let mut parts = key.split_whitespace();
        let kind = parts.next().unwrap_or_default();
        let ok = (kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-")) && parts.next().is_some();
        if !ok {
            return Err(AppError::bad_request(format!("{field}[{i}]: not an OpenSSH public key (expected 'ssh-ed25519 AAAA... comment')")));
        }
    }
    Ok(())
}

/// The candidate set for a request by names.
fn named_candidates(cache: &CalendarCache, names: &[String], exotic: bool) -> AppResult<NodeSet> {
    let mut set = cache.node_set();
    for name in names {
        let i = cache.index_by_name(name).ok_or_else(|| AppError::bad_request(format!("nodes.names: there is no node '{name}'")))?;
        let n = cache.node(i);
        if !n.policy.offers_node() {
            return Err(AppError::Conflict {
                message: format!("node '{name}' is in {} and cannot be reserved", n.policy.as_str()),
                earliest_start: None,
            });
        }
        if !n.state.is_allocatable() {
            return Err(AppError::Conflict {
                message: format!("node '{name}' is {} and cannot be reserved", n.state.as_str()),
                earliest_start: None,
            });
        }
        if n.exotic && !exotic {
            return Err(AppError::bad_request(format!(
                "nodes.names: '{name}' is exotic (prototype) hardware; set exotic: true to reserve it"
            )));
        }
        if set.contains(i) {
            return Err(AppError::bad_request(format!("nodes.names: '{name}' is listed twice")));
        }
        set.insert(i);
    }
    Ok(set)
}

/// Places a request on the right calendar.
fn plan(
    cache: &CalendarCache,
    lease_type: LeaseType,
    count: u32,
    duration: Seconds,
    fixed_start: Option<Seconds>,
    now: Seconds,
    candidates: &NodeSet,
) -> AppResult<Planned> {
    let available = candidates.count();
    if (count as usize) > available {
        return Err(AppError::BadRequest {
            code: "unsatisfiable",
            message: format!(
                "{count} node(s) requested but only {available} can be offered (matching the filter, in service, healthy, not exotic unless allowed)"
            ),
        });
    }
    let calendar = if lease_type == LeaseType::Besteffort { &cache.all } else { &cache.normal };
    let not_before = fixed_start.unwrap_or(now);
    let query = Query { count, duration, not_before, candidates };
    let placement = calendar
        .earliest(&query)
        .ok_or_else(|| AppError::Conflict { message: "no placement found for this request".into(), earliest_start: None })?;
    if let Some(start) = fixed_start.filter(|s| *s != placement.start) {
        return Err(AppError::Conflict {
            message: format!(
                "{count} node(s) are not free from {} for {}; the earliest possible start is {}",
                from_seconds(start).to_rfc3339(),
                humantime::format_duration(std::time::Duration::from_secs(duration.unsigned_abs())),
                from_seconds(placement.start).to_rfc3339()
            ),
            earliest_start: Some(placement.start),
        });
    }
    Ok(Planned { start: placement.start, end: placement.start + duration, nodes: placement.nodes })
}

/// Places a multi-group request on the right calendar: one start, each
/// group's nodes among its `sets` (same order as `groups`), no node
/// twice. Answers the placement (the nodes group after group) and each
/// group's nodes.
fn plan_groups(
    cache: &CalendarCache,
    lease_type: LeaseType,
    groups: &[WantGroup],
    sets: &[NodeSet],
    duration: Seconds,
    fixed_start: Option<Seconds>,
    now: Seconds,
) -> AppResult<(Planned, Vec<Vec<u32>>)> {
    for (g, set) in groups.iter().zip(sets) {
        let available = set.count();
        if (g.count as usize) > available {
            return Err(AppError::BadRequest {
                code: "unsatisfiable",
                message: format!(
                    "{}: {} node(s) requested but only {available} can be offered (matching the filter, in service, healthy, not exotic unless allowed)",
                    g.field, g.count
                ),
            });
        }
    }
    let total: u32 = groups.iter().fold(0u32, |acc, g| acc.saturating_add(g.count));
    let mut union = cache.node_set();
    for set in sets {
        for i in set.iter() {
            union.insert(i);
        }
    }
    if (total as usize) > union.count() {
        return Err(AppError::BadRequest {
            code: "unsatisfiable",
            message: format!("{total} node(s) requested in all but the groups' filters offer only {} distinct nodes", union.count()),
        });
    }
    let calendar = if lease_type == LeaseType::Besteffort { &cache.all } else { &cache.normal };
    let asked: Vec<Group<'_>> = groups.iter().zip(sets).map(|(g, candidates)| Group { count: g.count, candidates }).collect();
    let (start, assigned) = calendar.earliest_groups(&asked, duration, fixed_start.unwrap_or(now)).ok_or_else(|| AppError::Conflict {
        message: "no placement found for these groups: no assignment of distinct nodes satisfies them all".into(),
        earliest_start: None,
    })?;
    if let Some(asked_start) = fixed_start.filter(|s| *s != start) {
        return Err(AppError::Conflict {
            message: format!(
                "{total} node(s) in {} groups are not free from {} for {}; the earliest possible start is {}",
                groups.len(),
                from_seconds(asked_start).to_rfc3339(),
                humantime::format_duration(std::time::Duration::from_secs(duration.unsigned_abs())),
                from_seconds(start).to_rfc3339()
            ),
            earliest_start: Some(start),
        });
    }
    let nodes = assigned.iter().flatten().copied().collect();
    Ok((Planned { start, end: start + duration, nodes }, assigned))
}

/// Frees in the cache what an allocation change freed in the database.
pub(super) fn release_cut(cache: &mut CalendarCache, lease: &LeaseRow, change: AllocationChange, now: Seconds) {
    let indices: Vec<u32> = lease.nodes.iter().filter_map(|(n, _)| cache.index_of(*n)).collect();
    let from = match change {
        AllocationChange::Keep => return,
        AllocationChange::Drop => lease.start,
        AllocationChange::CutAt(t) => t,
    };
    cache.release(&indices, from.max(now).max(lease.start), lease.end, lease.lease_type);
}
