//! `ferrum-agent run`: the agent protocol loop of the deploy ramdisk
//! (`ferrum_api::agent`, version 1).
//!
//! Owns: registering with the one-time token of the kernel command line,
//! uploading the inventory, then asking for commands and carrying each out
//! with the library ([`crate::image`], [`crate::keys`], [`crate::wipe`],
//! [`crate::inventory`]), reporting progress and the named error or
//! success. Must not: decide anything (it only executes what the controller
//! sends), log its tokens, or reboot or power off a machine unless started
//! with `power_actions` (the ramdisk's `/init` does; a test on a
//! developer's host does not).

use std::path::PathBuf;
use std::time::Duration;

use ferrum_api::agent::{
    AGENT_PROTOCOL, AgentAction, AgentCommand, AgentRegister, AgentSession, CommandProgress, CommandResult, ImageFormat, InventoryUpload,
};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::image::{self, Format, ImageSpec, Sha256Digest, Source, WriteOptions};
use crate::inventory;
use crate::keys::{self, AuthorizedKey, Hostname, KeysRequest};
use crate::wipe::{self, WipeOptions};

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The controller (`ferrum.url=`).
    pub url: String,
    /// This node's name (`ferrum.node=`).
    pub node: String,
    /// The one-time token (`ferrum.token=`).
    pub token: String,
    /// Carry out `reboot` and `power_off` (only in a ramdisk).
    pub power_actions: bool,
    /// Where inventory reads `/proc` and `/sys`.
    pub inventory: inventory::Options,
}

/// Why the loop ended.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the controller refused the registration ({status}): {message}")]
    Refused { status: reqwest::StatusCode, message: String },
    #[error("the controller ended this session ({status}): {message}")]
    SessionEnded { status: reqwest::StatusCode, message: String },
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("inventory failed")]
    Inventory(#[source] inventory::InventoryError),
}

/// Long poll for commands, below the controller's 30 s cap.
const WAIT_MS: u64 = 25_000;

/// The latest (done, total) of a running command.
type ProgressSender = watch::Sender<Option<(u64, Option<u64>)>>;

struct Controller {
    client: reqwest::Client,
    base: String,
    session: AgentSession,
}

/// What an HTTP exchange with the controller gave.
enum Sent<T> {
    Ok(T),
    /// The session is over (401, 409), the request is wrong (400) or its
    /// object is gone (404): do not retry.
    Ended(reqwest::StatusCode, String),
    /// The network or the controller failed: try again.
    Retry(String),
}

async fn send<T: serde::de::DeserializeOwned>(req: reqwest::RequestBuilder) -> Sent<Option<T>> {
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return Sent::Retry(error_chain(e)),
    };
    let status = resp.status();
    if status == reqwest::StatusCode::NO_CONTENT {
        return Sent::Ok(None);
    }
    if status.is_success() {
        return match resp.json::<T>().await {
            Ok(v) => Sent::Ok(Some(v)),
            Err(e) => Sent::Retry(error_chain(e)),
        };
    }
    let text = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<ferrum_api::ErrorBody>(&text).map(|b| b.error.message).unwrap_or(text);
    if matches!(
        status,
        reqwest::StatusCode::UNAUTHORIZED
            | reqwest::StatusCode::CONFLICT
            | reqwest::StatusCode::BAD_REQUEST
            | reqwest::StatusCode::NOT_FOUND
    ) {
        Sent::Ended(status, message)
    } else {
        Sent::Retry(format!("{status}: {message}"))
    }
}

/// An error and its causes on one line.
fn error_chain(e: impl std::error::Error + Send + Sync + 'static) -> String {
    format!("{:#}", anyhow::Error::new(e))
}

/// Retries `f` with backoff (0.5 s doubling to 10 s) until it answers or
/// the session ends.
async fn with_retry<T, F, Fut>(what: &str, mut f: F) -> Result<T, (reqwest::StatusCode, String)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Sent<T>>,
{
    let mut delay = Duration::from_millis(500);
    loop {
        match f().await {
            Sent::Ok(v) => return Ok(v),
            Sent::Ended(status, message) => return Err((status, message)),
            Sent::Retry(why) => {
                warn!(what, error = %why, retry_in = ?delay, "controller not reachable; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

impl Controller {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post<B: serde::Serialize>(&self, what: &str, path: &str, body: &B) -> Result<(), RunError> {
        let url = self.url(path);
        with_retry(what, || send::<serde_json::Value>(self.client.post(&url).bearer_auth(&self.session.session).json(body)))
            .await
            .map(|_| ())
            .or_else(|(status, message)| {
                if status == reqwest::StatusCode::NOT_FOUND {
                    // The controller no longer waits for this command (it
                    // was cancelled or handed to a newer agent): go on.
                    warn!(what, %message, "the controller dropped this command");
                    return Ok(());
                }
                Err(RunError::SessionEnded { status, message })
            })
    }

    async fn result(&self, id: i64, error: Option<String>) -> Result<(), RunError> {
        let body = CommandResult { generation: self.session.generation, error };
        self.post("command result", &format!("/agent/v1/commands/{id}/result"), &body).await
    }

    async fn inventory(&self, options: &inventory::Options) -> Result<(), RunError> {
        let report = inventory::collect(options).map_err(RunError::Inventory)?;
        let upload = InventoryUpload { generation: self.session.generation, report };
        self.post("inventory", "/agent/v1/inventory", &upload).await
    }

    /// Posts the latest progress of command `id` whenever it changes, until
    /// the sender is dropped.
    fn progress_reporter(&self, id: i64) -> (ProgressSender, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = watch::channel(None::<(u64, Option<u64>)>);
        let client = self.client.clone();
        let url = self.url(&format!("/agent/v1/commands/{id}/progress"));
        let session = self.session.session.clone();
        let generation = self.session.generation;
        let task = tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let Some((done, total)) = *rx.borrow_and_update() else { continue };
                let body = CommandProgress { generation, done, total };
                // Progress is best effort: the result is what counts.
                if let Sent::Retry(why) | Sent::Ended(_, why) =
                    send::<serde_json::Value>(client.post(&url).bearer_auth(&session).json(&body)).await
                {
                    warn!(command = id, error = %why, "progress report not delivered");
                }
            }
        });
        (tx, task)
    }
}

/// Registers and serves commands until the session ends (an error) or a
/// reboot / power-off is carried out.
pub async fn run(options: RunOptions) -> Result<(), RunError> {
    let client = reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).build().map_err(RunError::Client)?;
    let base = options.url.trim_end_matches('/').to_owned();
    let register = AgentRegister {
        token: options.token.clone(),
        node: options.node.clone(),
        protocol: AGENT_PROTOCOL,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let url = format!("{base}/agent/v1/register");
    let session = with_retry("register", || send::<AgentSession>(client.post(&url).json(&register)))
        .await
        .map_err(|(status, message)| RunError::Refused { status, message })?
        .ok_or_else(|| RunError::Refused { status: reqwest::StatusCode::NO_CONTENT, message: "empty answer".into() })?;
    info!(node = %session.node, generation = session.generation, "registered");
    let controller = Controller { client, base, session };
    controller.inventory(&options.inventory).await?;
    info!("inventory reported");

    loop {
        let url = controller.url(&format!("/agent/v1/command?wait_ms={WAIT_MS}"));
        let command: AgentCommand =
            with_retry("command", || send::<AgentCommand>(controller.client.get(&url).bearer_auth(&controller.session.session)))
                .await
                .map_err(|(status, message)| RunError::SessionEnded { status, message })?
                .ok_or_else(|| RunError::SessionEnded { status: reqwest::StatusCode::NO_CONTENT, message: "empty answer".into() })?;
        if command.action == AgentAction::Wait {
            continue;
        }
        info!(command = command.id, action = command.action.kind(), "command received");
        match execute(&controller, &options, &command).await? {
            Outcome::Continue => {}
            Outcome::Stop => return Ok(()),
        }
    }
}

enum Outcome {
    Continue,
    Stop,
}

async fn execute(controller: &Controller, options: &RunOptions, command: &AgentCommand) -> Result<Outcome, RunError> {
    let id = command.id;
    let error: Option<String> = match &command.action {
        AgentAction::Wait => None,
        AgentAction::Inventory => match inventory::collect(&options.inventory) {
            Ok(report) => {
                let upload = InventoryUpload { generation: controller.session.generation, report };
                controller.post("inventory", "/agent/v1/inventory", &upload).await?;
                None
            }
            Err(e) => Some(error_chain(e)),
        },
        AgentAction::WriteImage { url, format, sha256, size, device } => write(controller, id, url, *format, sha256, *size, device).await,
        AgentAction::InstallKeys { device, root_partition, ssh_keys, hostname } => {
            install(device, *root_partition, ssh_keys, hostname).await
        }
        AgentAction::Wipe { devices, secure } => wipe_all(controller, id, devices, *secure).await,
        AgentAction::Kexec { .. } | AgentAction::Reboot | AgentAction::PowerOff if !options.power_actions => {
            Some("power actions are disabled in this agent (it was started without --power-actions)".into())
        }
        AgentAction::Kexec { device, root_partition, kernel, initrd, cmdline } => {
            match load_kexec(device, *root_partition, kernel, initrd.as_deref(), cmdline).await {
                Ok(()) => {
                    controller.result(id, None).await?;
                    power(&command.action);
                    return Ok(Outcome::Stop);
                }
                Err(e) => Some(e),
            }
        }
        AgentAction::Reboot | AgentAction::PowerOff => {
            controller.result(id, None).await?;
            power(&command.action);
            return Ok(Outcome::Stop);
        }
    };
    match &error {
        None => info!(command = id, "command done"),
        Some(e) => warn!(command = id, error = %e, "command failed"),
    }
    controller.result(id, error).await?;
    Ok(Outcome::Continue)
}

async fn write(controller: &Controller, id: i64, url: &str, format: ImageFormat, sha256: &str, size: u64, device: &str) -> Option<String> {
    let source: Source = match url.parse() {
        Ok(s) => s,
        Err(e) => return Some(format!("url: {e}")),
    };
    let sha256: Sha256Digest = match sha256.parse() {
        Ok(d) => d,
        Err(e) => return Some(format!("sha256: {e}")),
    };
    let format = match format {
        ImageFormat::Raw => Format::Raw,
        ImageFormat::RawZst => Format::RawZst,
    };
    let spec = ImageSpec { source, format, sha256: Some(sha256), size: Some(size) };
    let (tx, reporter) = controller.progress_reporter(id);
    // The session goes only to the controller's own images, never elsewhere.
    let own = url.starts_with(&format!("{}/", controller.base.trim_end_matches('/')));
    let options = WriteOptions { bearer: own.then(|| image::Bearer(controller.session.session.clone())), ..WriteOptions::default() };
    let result = image::write_image(&spec, &PathBuf::from(device), &options, |p| {
        let _ = tx.send(Some((p.written, p.expected)));
    })
    .await;
    drop(tx);
    let _ = reporter.await;
    match result {
        Ok(report) => {
            info!(device, written = report.written, seconds = report.seconds, "image written");
            None
        }
        Err(e) => Some(error_chain(e)),
    }
}

async fn install(device: &str, root_partition: u32, ssh_keys: &[String], hostname: &str) -> Option<String> {
    let mut keys = Vec::with_capacity(ssh_keys.len());
    for line in ssh_keys {
        match line.parse::<AuthorizedKey>() {
            Ok(k) => keys.push(k),
            Err(e) => return Some(format!("ssh_keys: {e}")),
        }
    }
    let hostname = match hostname.parse::<Hostname>() {
        Ok(h) => Some(h),
        Err(e) => return Some(format!("hostname: {e}")),
    };
    let request =
        KeysRequest { device: PathBuf::from(device), partition: root_partition, holder_keys: keys, controller_key: None, hostname };
    match tokio::task::spawn_blocking(move || keys::install_keys(&request)).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(error_chain(e)),
        Err(e) => Some(format!("key installation crashed: {e}")),
    }
}

async fn wipe_all(controller: &Controller, id: i64, devices: &[String], secure: bool) -> Option<String> {
    let (tx, reporter) = controller.progress_reporter(id);
    let devices: Vec<PathBuf> = devices.iter().map(PathBuf::from).collect();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut done_before = 0u64;
        for device in &devices {
            let mut progress = |p: wipe::WipeProgress| {
                let _ = tx.send(Some((done_before + p.done, None)));
            };
            match wipe::wipe_device(device, WipeOptions { secure }, &mut progress) {
                Ok(report) => done_before += report.bytes,
                Err(e) => return Some(format!("{}: {}", device.display(), error_chain(e))),
            }
        }
        None
    })
    .await;
    let _ = reporter.await;
    match outcome {
        Ok(error) => error,
        Err(e) => Some(format!("wipe crashed: {e}")),
    }
}

/// Reads the kernel and initrd from the written system and loads them for
/// `reboot(RB_KEXEC)`; a failure is the command's named error.
async fn load_kexec(device: &str, partition: u32, kernel: &str, initrd: Option<&str>, cmdline: &str) -> Result<(), String> {
    let cmdline = std::ffi::CString::new(cmdline).map_err(|_| "cmdline: contains a NUL byte".to_owned())?;
    let (device, kernel, initrd) = (PathBuf::from(device), kernel.to_owned(), initrd.map(str::to_owned));
    let loaded = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let mut names = vec![kernel.as_str()];
        names.extend(initrd.as_deref());
        let files = keys::read_files(&device, partition, &names).map_err(error_chain)?;
        // kexec_file_load takes descriptors: stage the files in the ramdisk's memory.
        let dir = std::env::temp_dir().join("ferrum-kexec");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut opened = Vec::new();
        for (name, bytes) in ["kernel", "initrd"].iter().zip(&files) {
            let path = dir.join(name);
            std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            opened.push(std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?);
        }
        image::load_kexec(&opened[0], opened.get(1), &cmdline).map_err(|e| format!("kexec_file_load: {e}"))
    })
    .await;
    loaded.map_err(|e| format!("kexec load crashed: {e}"))?
}

/// Reboots, kexecs or powers off now (after syncing). Only reached with `power_actions`.
fn power(action: &AgentAction) {
    use nix::sys::reboot::{RebootMode, reboot};
    nix::unistd::sync();
    let mode = match action {
        AgentAction::PowerOff => RebootMode::RB_POWER_OFF,
        AgentAction::Kexec { .. } => RebootMode::RB_KEXEC,
        _ => RebootMode::RB_AUTOBOOT,
    };
    // `reboot` only returns when it failed.
    let Err(e) = reboot(mode);
    warn!(error = %e, "reboot system call failed");
}
