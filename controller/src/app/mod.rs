//! The application layer: the rules of ferrum. Every HTTP handler calls one
//! function here; this layer authorises, validates, decides (with `model`
//! for transitions, `calendar` for placement, `filter` for selection) and
//! persists through the [`Datastore`] trait.
//!
//! It never builds SQL and never speaks HTTP: it returns domain rows and
//! [`AppError`]s, which the `http` module turns into views and status codes.

use std::sync::Arc;

use tokio::sync::{Mutex, Notify};

use crate::clock::Clock;
use crate::config::Config;
use crate::db::{Datastore, DbError};
use crate::model::Seconds;
use crate::model::time::to_seconds;

pub mod account_requests;
pub mod accounts;
pub mod agent;
pub mod audit;
pub mod boot;
pub mod cache;
pub mod conductor;
pub mod environments;
pub mod jobs;
pub mod leases;
pub mod mail;
pub mod nodes;
pub mod notifications;
pub mod operations;
pub mod policy;
pub mod power;
pub mod privacy;
pub(crate) mod reads;
pub mod reconciler;
pub mod replica;
pub mod sites;
pub mod usage;
pub mod web;

pub use accounts::Actor;

/// Errors of the application layer. Client errors carry a message fit for
/// the client; `Internal` carries the cause for the log only.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request is malformed or names something impossible.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("missing or invalid API token")]
    Unauthenticated,
    /// A portal sign-in with a wrong name or password (which of them is
    /// never said).
    #[error("{0}")]
    SignInRefused(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// Too many requests from one client, or in all.
    #[error("{0}")]
    TooManyRequests(String),
    /// The request conflicts with the calendar or the resource's state.
    #[error("{message}")]
    Conflict { message: String, earliest_start: Option<Seconds> },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl AppError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        AppError::BadRequest { code: "bad_request", message: message.into() }
    }
}

/// A one-line free text of at most `max` characters (see
/// [`ferrum_api::limits`]); the error names `field`.
pub(crate) fn one_line(field: &str, text: &str, max: usize) -> AppResult<()> {
    match ferrum_api::limits::one_line_error(text, max) {
        Some(why) => Err(AppError::bad_request(format!("{field}: {why}"))),
        None => Ok(()),
    }
}

impl From<DbError> for AppError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::AlreadyExists { .. } => AppError::Conflict { message: e.to_string(), earliest_start: None },
            DbError::NotFound { .. } => AppError::NotFound(e.to_string()),
            DbError::DoubleBooked | DbError::StaleCalendar | DbError::Raced { .. } => {
                AppError::Conflict { message: format!("{e}; try again"), earliest_start: None }
            }
            other => AppError::Internal(other.into()),
        }
    }
}

pub type AppResult<T> = Result<T, AppError>;

/// Everything the controller's handlers and loops share.
#[derive(Debug)]
pub struct App {
    pub store: Arc<dyn Datastore>,
    pub clock: Clock,
    pub config: Config,
    /// The in-memory calendar and node index, serialising every calendar
    /// write of this process.
    pub(crate) cache: Mutex<cache::CalendarCache>,
    /// Wakes the clock loop early (a lease was created to start now, a
    /// lease was released).
    pub wake: Notify,
    /// Who carries out resets and enrolment checks on real nodes.
    pub conductor: Arc<dyn conductor::Conductor>,
    /// BMC drivers, the per-BMC locks and the power loop's wake-up.
    pub power: power::PowerRuntime,
    /// The inventory as the embedded DHCP service sees it.
    pub boot_hosts: Arc<boot::BootHosts>,
    /// Wakes agents long-polling for a command.
    pub agent_wake: Notify,
    /// Wakes the operations engine (an agent or a BMC answered).
    pub ops_wake: Notify,
    /// Operations being stepped now.
    pub(crate) in_flight: operations::InFlight,
    /// Serialises deployment creation (a lease's automatic deployment and
    /// an explicit one must not both take its nodes).
    pub(crate) deploy_lock: Mutex<()>,
    /// The controller's SSH key, loaded on first use.
    pub(crate) ssh_key: std::sync::OnceLock<Arc<crate::ssh::ControllerKey>>,
    /// Account requests per client address (they need no token).
    pub(crate) account_requests_limit: account_requests::RequestLimiter,
    /// Whether this replica runs the background loops now (`replica`).
    pub(crate) leading: std::sync::atomic::AtomicBool,
    /// Cached answers of the hottest reads (SQLite only; see `reads`).
    pub(crate) reads: reads::Reads,
    /// Portal sign-in attempts per account and per client address.
    pub(crate) login_limits: web::LoginLimits,
    /// Mail to users (`[mail]`).
    pub mailer: mail::Mailer,
}

impl App {
    pub fn new(
        store: Arc<dyn Datastore>,
        clock: Clock,
        config: Config,
        conductor: Arc<dyn conductor::Conductor>,
        bmcs: Arc<dyn power::BmcConnector>,
    ) -> Arc<App> {
        let login_limits = web::LoginLimits::new(config.web.login_burst_per_account, config.web.login_burst_per_address);
        // `Config::parse` checked `[mail]`; a configuration built in code
        // with a bad one sends nothing, and says so.
        let mailer = mail::Mailer::new(&config.mail).unwrap_or_else(|e| {
            tracing::error!(error = %e, "no mail will be sent");
            mail::Mailer::none()
        });
        let cache = Mutex::new(cache::CalendarCache::empty(config.sites.clone()));
        Arc::new(App {
            store,
            clock,
            config,
            cache,
            wake: Notify::new(),
            conductor,
            power: power::PowerRuntime::new(bmcs),
            boot_hosts: Arc::new(boot::BootHosts::default()),
            agent_wake: Notify::new(),
            ops_wake: Notify::new(),
            in_flight: operations::InFlight::default(),
            deploy_lock: Mutex::new(()),
            ssh_key: std::sync::OnceLock::new(),
            account_requests_limit: account_requests::limiter(),
            leading: std::sync::atomic::AtomicBool::new(false),
            reads: reads::Reads::default(),
            login_limits,
            mailer,
        })
    }

    /// Now, in calendar seconds.
    pub fn now(&self) -> Seconds {
        to_seconds(self.clock.now())
    }
}
