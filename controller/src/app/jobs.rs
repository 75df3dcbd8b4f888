//! Grid'5000 jobs over leases: a job is a lease plus the few facts OAR
//! shows that a lease does not have (its site, types as given, queue,
//! command, properties), kept in one row per job. The Grid'5000 API
//! (`crate::g5k::jobs`) translates; the rules stay those of leases
//! (`leases.rs`), which this module only calls.

use ferrum_api as api;

use super::{Actor, App, AppError, AppResult};
use crate::db::{DbError, JobRow, LeaseRow};
use crate::model::{LeaseId, LeaseState};

/// What a job adds to its lease, as submitted.
#[derive(Clone, Debug)]
pub struct JobFacts {
    pub site: String,
    pub types: Vec<String>,
    pub queue: String,
    pub command: Option<String>,
    pub properties: Option<String>,
}

/// A job: its lease and its facts (`None` for a lease created otherwise).
#[derive(Clone, Debug)]
pub struct Job {
    pub lease: LeaseRow,
    pub facts: Option<JobFacts>,
}

impl JobFacts {
    fn of(row: JobRow) -> JobFacts {
        JobFacts {
            site: row.site,
            types: serde_json::from_str(&row.types).unwrap_or_default(),
            queue: row.queue,
            command: row.command,
            properties: row.properties,
        }
    }
}

impl App {
    /// Creates the lease of a job, then records its facts. A lease whose
    /// facts could not be recorded stays a lease (shown as a job with
    /// default facts), and the error is the caller's.
    pub async fn create_job(&self, actor: &Actor, req: api::LeaseCreate, facts: JobFacts) -> AppResult<Job> {
        let lease = self.create_lease(actor, req).await?;
        let types = serde_json::to_string(&facts.types).map_err(|e| AppError::Internal(e.into()))?;
        let row = JobRow {
            lease: lease.id,
            site: facts.site.clone(),
            types,
            queue: facts.queue.clone(),
            command: facts.command.clone(),
            properties: facts.properties.clone(),
        };
        self.store.insert_job(&row).await?;
        Ok(Job { lease, facts: Some(facts) })
    }

    /// The job of `lease`, read with its facts.
    pub async fn job_of(&self, lease: LeaseRow) -> AppResult<Job> {
        let facts = self.store.job(lease.id).await?.map(JobFacts::of);
        Ok(Job { lease, facts })
    }

    /// A job the caller may see (see [`App::get_lease`]).
    pub async fn get_job(&self, actor: &Actor, id: i64) -> AppResult<Job> {
        let lease = self.get_lease(actor, id).await?;
        self.job_of(lease).await
    }

    /// Ends a job (OAR's `oardel`): its lease is cancelled or released.
    /// Another user's job is a 403 (OAR says so too); a job already over
    /// or ending is a conflict whose message is OAR's ("This job was
    /// already killed"), which EnOSlib ignores on purpose.
    pub async fn end_job(&self, actor: &Actor, id: i64) -> AppResult<LeaseRow> {
        let lease = match self.store.get_lease(LeaseId(id)).await {
            Ok(l) => l,
            Err(DbError::NotFound { .. }) => return Err(AppError::NotFound(format!("lease '{id}' does not exist"))),
            Err(e) => return Err(e.into()),
        };
        if !actor.is_admin && lease.owner_id != actor.user_id {
            return Err(AppError::Forbidden(format!("job {id} is not yours: you may only delete your own jobs")));
        }
        if !matches!(lease.state, LeaseState::AwaitingApproval | LeaseState::Pending | LeaseState::Starting | LeaseState::Active) {
            return Err(AppError::Conflict { message: format!("Cannot frag {id} ; This job was already killed."), earliest_start: None });
        }
        self.end_lease(actor, id).await
    }
}
