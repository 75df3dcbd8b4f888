//! The Redfish power driver: power state, reset actions and one-time boot
//! overrides of one ComputerSystem, over HTTP(S) with a session token (or
//! HTTP Basic where the BMC has no SessionService).
//!
//! It owns the HTTP client of one BMC (TLS policy, timeouts, retries), the
//! login session and the mapping of Redfish answers to [`PowerError`]s. It
//! must not decide what a failure means for the node, and it must never
//! put the password or the session token in an error, a log line or a
//! `Debug` output.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Client, Method, StatusCode, Url};
use serde_json::{Value, json};

use super::{BootDevice, PowerAction, PowerDriver, PowerError, PowerState, Reliability};
use crate::model::bmc::{BmcAddress, TlsPolicy};

pub mod pin;

const SESSIONS_PATH: &str = "/redfish/v1/SessionService/Sessions";
const SYSTEMS_PATH: &str = "/redfish/v1/Systems";
/// Pause between two reads of the power state while a change settles.
const SETTLE_POLL: Duration = Duration::from_millis(500);
/// Longest body excerpt put in an error.
const DETAIL_MAX: usize = 200;

/// How requests authenticate.
#[derive(Clone, Default)]
enum Auth {
    /// Not logged in yet.
    #[default]
    Unknown,
    /// A Redfish session: the token and the session's URL (for logout).
    Session { token: String, location: Option<Url> },
    /// No SessionService: HTTP Basic on every request.
    Basic,
}

#[derive(Default)]
struct State {
    auth: Auth,
    /// The system's own URL, once resolved (after redirects).
    system: Option<Url>,
}

/// A Redfish BMC driver for one ComputerSystem.
pub struct RedfishDriver {
    endpoint: String,
    base: Url,
    system_id: String,
    username: String,
    password: String,
    tls: TlsPolicy,
    client: Client,
    reliability: Reliability,
    state: Mutex<State>,
}

impl fmt::Debug for RedfishDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match self.lock().auth {
            Auth::Unknown => "none yet",
            Auth::Session { .. } => "session",
            Auth::Basic => "basic",
        };
        f.debug_struct("RedfishDriver")
            .field("bmc", &self.endpoint)
            .field("system_id", &self.system_id)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("tls", &self.tls)
            .field("auth", &auth)
            .finish()
    }
}

/// A decoded answer.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
    url: Url,
}

/// Why one attempt failed, before the retry decision.
enum Failure {
    /// Connection refused, reset, or request timeout: worth retrying.
    Transport(String),
    Tls(String),
    Other(PowerError),
}

impl RedfishDriver {
    /// Builds the driver for `bmc` (no network traffic yet).
    pub fn new(bmc: &BmcAddress, reliability: Reliability) -> Result<RedfishDriver, PowerError> {
        let endpoint = bmc.endpoint();
        let system_id = bmc
            .system_id
            .clone()
            .ok_or_else(|| PowerError::Unsupported { bmc: endpoint.clone(), what: "a Redfish address without a system id".to_owned() })?;
        let scheme = if bmc.tls == TlsPolicy::PlainHttp { "http" } else { "https" };
        let base = Url::parse(&format!("{scheme}://{endpoint}/")).map_err(|_| PowerError::Protocol {
            bmc: endpoint.clone(),
            operation: "configure",
            detail: "invalid host".to_owned(),
        })?;
        let origin = base.origin();
        let redirect = reqwest::redirect::Policy::custom(move |attempt| {
            // Follow redirects on the BMC itself only: credentials must not
            // travel to another host.
            if attempt.previous().len() > 5 || attempt.url().origin() != origin { attempt.stop() } else { attempt.follow() }
        });
        let mut builder = Client::builder()
            .timeout(reliability.request_timeout)
            .connect_timeout(reliability.request_timeout)
            .redirect(redirect)
            .user_agent(concat!("ferrum/", env!("CARGO_PKG_VERSION")));
        let tls_error = |detail: String| PowerError::Tls { bmc: endpoint.clone(), detail };
        builder = match &bmc.tls {
            TlsPolicy::PlainHttp | TlsPolicy::SystemRoots => builder,
            TlsPolicy::Ca(path) => {
                let pem = std::fs::read(path).map_err(|e| tls_error(format!("cannot read CA file {}: {e}", path.display())))?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| tls_error(format!("CA file {} is not PEM: {e}", path.display())))?;
                if certs.is_empty() {
                    return Err(tls_error(format!("CA file {} holds no certificate", path.display())));
                }
                builder.tls_certs_only(certs)
            }
            TlsPolicy::Fingerprint(fp) => {
                let config = pin::client_config(fp).map_err(|e| tls_error(format!("TLS configuration: {e}")))?;
                builder.tls_backend_preconfigured(config)
            }
            TlsPolicy::Insecure => builder.tls_danger_accept_invalid_certs(true),
        };
        let client = builder.build().map_err(|e| tls_error(format!("HTTP client: {}", error_chain(&e))))?;
        Ok(RedfishDriver {
            endpoint,
            base,
            system_id,
            username: bmc.username.clone(),
            password: bmc.password().to_owned(),
            tls: bmc.tls.clone(),
            client,
            reliability,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends the Redfish session, if any (DELETE on its URL). Errors are
    /// ignored: the BMC expires sessions by itself.
    pub async fn logout(&self) {
        let auth = std::mem::take(&mut self.lock().auth);
        if let Auth::Session { token, location: Some(location) } = auth {
            let _ = self.client.delete(location).header("X-Auth-Token", token).send().await;
        }
    }

    /// Removes secrets (and shortens) a text about to go into an error.
    fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(&self.password, "<redacted>");
        if let Auth::Session { token, .. } = &self.lock().auth
            && !token.is_empty()
        {
            out = out.replace(token.as_str(), "<redacted>");
        }
        if out.len() > DETAIL_MAX {
            let mut end = DETAIL_MAX;
            while !out.is_char_boundary(end) {
                end -= 1;
            }
            out.truncate(end);
            out.push('…');
        }
        out
    }

    fn protocol(&self, operation: &'static str, detail: String) -> PowerError {
        PowerError::Protocol { bmc: self.endpoint.clone(), operation, detail: self.scrub(&detail) }
    }

    fn unexpected(&self, operation: &'static str, answer: &Answer) -> PowerError {
        let body = String::from_utf8_lossy(&answer.body);
        let message = serde_json::from_slice::<Value>(&answer.body)
            .ok()
            .and_then(|v| v.pointer("/error/message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| body.trim().to_owned());
        self.protocol(operation, format!("HTTP {}: {message}", answer.status.as_u16()))
    }

    fn auth_error(&self) -> PowerError {
        PowerError::Auth { bmc: self.endpoint.clone() }
    }

    /// One HTTP exchange with retries on transport errors and 5xx answers.
    /// `auth` is applied as given (no login logic here).
    async fn exchange(
        &self,
        operation: &'static str,
        method: &Method,
        url: &Url,
        body: Option<&Value>,
        auth: &Auth,
    ) -> Result<Answer, PowerError> {
        let attempts = self.reliability.attempts.max(1);
        let mut backoff = self.reliability.backoff;
        for attempt in 1..=attempts {
            if attempt > 1 {
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
            }
            let last = match self.attempt(method, url, body, auth).await {
                Ok(answer) if answer.status.is_server_error() && attempt < attempts => format!("HTTP {}", answer.status.as_u16()),
                Ok(answer) => return Ok(answer),
                Err(Failure::Transport(detail)) => detail,
                Err(Failure::Tls(detail)) => return Err(PowerError::Tls { bmc: self.endpoint.clone(), detail: self.scrub(&detail) }),
                Err(Failure::Other(e)) => return Err(e),
            };
            tracing::debug!(bmc = %self.endpoint, operation, attempt, error = %self.scrub(&last), "Redfish request failed");
        }
        Err(PowerError::Unreachable { bmc: self.endpoint.clone(), tries: attempts })
    }

    async fn attempt(&self, method: &Method, url: &Url, body: Option<&Value>, auth: &Auth) -> Result<Answer, Failure> {
        let mut request = self.client.request(method.clone(), url.clone()).header("Accept", "application/json");
        request = match auth {
            Auth::Session { token, .. } => {
                let mut value =
                    HeaderValue::from_str(token).map_err(|_| Failure::Other(self.protocol("login", "unusable session token".into())))?;
                value.set_sensitive(true);
                request.header("X-Auth-Token", value)
            }
            Auth::Basic | Auth::Unknown => request.basic_auth(&self.username, Some(&self.password)),
        };
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.classify(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let url = response.url().clone();
        let body = response.bytes().await.map_err(|e| self.classify(&e))?.to_vec();
        Ok(Answer { status, headers, body, url })
    }

    fn classify(&self, error: &reqwest::Error) -> Failure {
        let detail = error_chain(error);
        if is_tls_error(error) {
            Failure::Tls(format!("TLS handshake failed: {detail}"))
        } else if error.is_timeout() || error.is_connect() || error.is_request() || error.is_body() {
            Failure::Transport(detail)
        } else {
            Failure::Other(self.protocol("request", detail))
        }
    }

    /// Logs in: a session if the BMC has a SessionService, else Basic.
    async fn login(&self) -> Result<Auth, PowerError> {
        let url = self.url(SESSIONS_PATH);
        let body = json!({ "UserName": self.username, "Password": self.password });
        // Basic credentials go along: BMCs without a SessionService (sushy)
        // check them before answering 404; the others ignore them.
        let answer = self.exchange("login", &Method::POST, &url, Some(&body), &Auth::Basic).await?;
        let auth = match answer.status.as_u16() {
            200 | 201 | 202 | 204 => {
                let token = answer
                    .headers
                    .get("X-Auth-Token")
                    .and_then(|v| v.to_str().ok())
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| self.protocol("login", format!("HTTP {} without X-Auth-Token", answer.status.as_u16())))?;
                let location =
                    answer.headers.get("Location").and_then(|v| v.to_str().ok()).and_then(|l| answer.url.join(l).ok()).or_else(|| {
                        serde_json::from_slice::<Value>(&answer.body)
                            .ok()
                            .and_then(|v| v.get("@odata.id").and_then(Value::as_str).and_then(|p| self.base.join(p).ok()))
                    });
                Auth::Session { token: token.to_owned(), location }
            }
            404 | 405 | 501 => Auth::Basic,
            401 | 403 => return Err(self.auth_error()),
            _ => return Err(self.unexpected("login", &answer)),
        };
        tracing::debug!(bmc = %self.endpoint, session = matches!(auth, Auth::Session { .. }), "Redfish login");
        self.lock().auth = auth.clone();
        Ok(auth)
    }

    /// A request with authentication: logs in first if needed, and once
    /// more if a session token is refused (401).
    async fn request(&self, operation: &'static str, method: Method, url: &Url, body: Option<&Value>) -> Result<Answer, PowerError> {
        let mut auth = self.lock().auth.clone();
        if matches!(auth, Auth::Unknown) {
            auth = self.login().await?;
        }
        let answer = self.exchange(operation, &method, url, body, &auth).await?;
        if answer.status != StatusCode::UNAUTHORIZED {
            return Ok(answer);
        }
        if !matches!(auth, Auth::Session { .. }) {
            return Err(self.auth_error());
        }
        tracing::debug!(bmc = %self.endpoint, operation, "Redfish session refused, logging in again");
        let auth = self.login().await?;
        let answer = self.exchange(operation, &method, url, body, &auth).await?;
        if answer.status == StatusCode::UNAUTHORIZED { Err(self.auth_error()) } else { Ok(answer) }
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).unwrap_or_else(|_| self.base.clone())
    }

    fn json(&self, operation: &'static str, answer: &Answer) -> Result<Value, PowerError> {
        serde_json::from_slice(&answer.body)
            .map_err(|e| self.protocol(operation, format!("HTTP {}: body is not JSON ({e})", answer.status.as_u16())))
    }

    /// GETs a resource as JSON (200 only).
    async fn get_json(&self, operation: &'static str, url: &Url) -> Result<(Value, Url), PowerError> {
        let answer = self.request(operation, Method::GET, url, None).await?;
        if answer.status != StatusCode::OK {
            return Err(self.unexpected(operation, &answer));
        }
        Ok((self.json(operation, &answer)?, answer.url.clone()))
    }

    /// The ComputerSystem document; resolves (and remembers) the system's
    /// URL: by id (following redirects), else through the collection.
    async fn system(&self, operation: &'static str) -> Result<(Value, Url), PowerError> {
        let known = self.lock().system.clone();
        if let Some(url) = known {
            return self.get_json(operation, &url).await;
        }
        let mut url = self.url(SYSTEMS_PATH);
        url.path_segments_mut().map_err(|_| self.protocol(operation, "base URL".into()))?.pop_if_empty().push(&self.system_id);
        let answer = self.request(operation, Method::GET, &url, None).await?;
        let (doc, found) = match answer.status {
            StatusCode::OK => (self.json(operation, &answer)?, answer.url.clone()),
            StatusCode::NOT_FOUND => self.find_in_collection(operation).await?,
            _ => return Err(self.unexpected(operation, &answer)),
        };
        let own = doc.get("@odata.id").and_then(Value::as_str).and_then(|p| self.base.join(p).ok()).unwrap_or(found);
        self.lock().system = Some(own.clone());
        Ok((doc, own))
    }

    async fn find_in_collection(&self, operation: &'static str) -> Result<(Value, Url), PowerError> {
        let (collection, _) = self.get_json(operation, &self.url(SYSTEMS_PATH)).await?;
        let members = collection.get("Members").and_then(Value::as_array).cloned().unwrap_or_default();
        for member in members {
            let Some(path) = member.get("@odata.id").and_then(Value::as_str) else { continue };
            let Ok(url) = self.base.join(path) else { continue };
            let (doc, url) = self.get_json(operation, &url).await?;
            let hit = ["Id", "Name", "UUID"]
                .iter()
                .any(|k| doc.get(*k).and_then(Value::as_str).is_some_and(|v| v.eq_ignore_ascii_case(&self.system_id)));
            if hit {
                return Ok((doc, url));
            }
        }
        Err(PowerError::Unsupported { bmc: self.endpoint.clone(), what: format!("a system named {:?}", self.system_id) })
    }

    fn parse_power(&self, operation: &'static str, doc: &Value) -> Result<PowerState, PowerError> {
        match doc.get("PowerState").and_then(Value::as_str) {
            Some("On" | "PoweringOff" | "Paused") => Ok(PowerState::On),
            Some("Off" | "PoweringOn") => Ok(PowerState::Off),
            Some(other) => Err(self.protocol(operation, format!("unknown PowerState {other:?}"))),
            None => Err(self.protocol(operation, "system has no PowerState".into())),
        }
    }

    /// Reset types the BMC offers (from the system document or its
    /// ActionInfo); `None` when it does not say.
    async fn allowed_resets(&self, action: &Value) -> Option<Vec<String>> {
        let strings = |v: &Value| v.as_array().map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect::<Vec<_>>());
        if let Some(list) = action.get("ResetType@Redfish.AllowableValues").and_then(strings) {
            return Some(list);
        }
        let info = action.get("@Redfish.ActionInfo").and_then(Value::as_str)?;
        let url = self.base.join(info).ok()?;
        let (doc, _) = self.get_json("read reset action info", &url).await.ok()?;
        doc.get("Parameters")?
            .as_array()?
            .iter()
            .find(|p| p.get("Name").and_then(Value::as_str) == Some("ResetType"))
            .and_then(|p| p.get("AllowableValues"))
            .and_then(strings)
    }

    async fn wait_for(&self, operation: &'static str, wanted: PowerState) -> Result<(), PowerError> {
        let deadline = Instant::now() + self.reliability.settle_timeout;
        loop {
            let (doc, _) = self.system(operation).await?;
            let exact = match doc.get("PowerState").and_then(Value::as_str) {
                Some("On") => Some(PowerState::On),
                Some("Off") => Some(PowerState::Off),
                _ => None,
            };
            if exact == Some(wanted) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(PowerError::Timeout { bmc: self.endpoint.clone(), operation, after: self.reliability.settle_timeout });
            }
            // Bounded poll: the BMC applies power changes seconds later.
            tokio::time::sleep(SETTLE_POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }
}

/// The reset type for `action` among the allowed ones (`None`: the BMC
/// does not list them, so the standard choice is sent).
fn choose_reset(action: PowerAction, allowed: Option<&[String]>) -> Option<&'static str> {
    let preferences: &[&'static str] = match action {
        PowerAction::On => &["On"],
        PowerAction::Off => &["ForceOff"],
        PowerAction::SoftOff => &["GracefulShutdown"],
        PowerAction::Cycle => &["PowerCycle", "ForceRestart", "GracefulRestart"],
    };
    match allowed {
        None if action == PowerAction::Cycle => Some("ForceRestart"),
        None => preferences.first().copied(),
        Some(allowed) => preferences.iter().copied().find(|p| allowed.iter().any(|a| a == p)),
    }
}

fn operation_name(action: PowerAction) -> &'static str {
    match action {
        PowerAction::On => "power on",
        PowerAction::Off => "power off",
        PowerAction::SoftOff => "soft power off",
        PowerAction::Cycle => "power cycle",
    }
}

/// The messages of an error and its sources, without URLs.
fn error_chain(error: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(e) = current {
        parts.push(e.to_string());
        current = e.source();
    }
    if parts.is_empty() {
        let kind = if error.is_timeout() {
            "timed out"
        } else if error.is_connect() {
            "connection failed"
        } else {
            "request failed"
        };
        parts.push(kind.to_owned());
    }
    parts.dedup();
    parts.join(": ")
}

fn is_tls_error(error: &reqwest::Error) -> bool {
    has_rustls_error(error)
}

/// Whether a rustls error is in the chain, also inside `io::Error`s (hyper
/// wraps the handshake error in two of them, whose `source()` skips it).
fn has_rustls_error(error: &(dyn std::error::Error + 'static)) -> bool {
    if error.is::<rustls::Error>() {
        return true;
    }
    if let Some(io) = error.downcast_ref::<std::io::Error>()
        && let Some(inner) = io.get_ref()
        && has_rustls_error(inner)
    {
        return true;
    }
    error.source().is_some_and(has_rustls_error)
}

#[async_trait]
impl PowerDriver for RedfishDriver {
    fn bmc(&self) -> String {
        self.endpoint.clone()
    }

    async fn power_state(&self) -> Result<PowerState, PowerError> {
        let (doc, _) = self.system("read power state").await?;
        self.parse_power("read power state", &doc)
    }

    async fn power(&self, action: PowerAction) -> Result<(), PowerError> {
        let operation = operation_name(action);
        let (doc, system) = self.system(operation).await?;
        let current = self.parse_power(operation, &doc)?;
        let wanted = match action {
            PowerAction::On | PowerAction::Cycle => PowerState::On,
            PowerAction::Off | PowerAction::SoftOff => PowerState::Off,
        };
        let exact = doc.get("PowerState").and_then(Value::as_str).is_some_and(|s| s == "On" || s == "Off");
        if action != PowerAction::Cycle && current == wanted && exact {
            return Ok(());
        }
        let reset = doc.pointer("/Actions/#ComputerSystem.Reset").cloned().unwrap_or(Value::Null);
        let allowed = self.allowed_resets(&reset).await;
        // Many BMCs refuse a restart of a system that is off; the contract
        // of a cycle is "on afterwards": from off, that is a power on.
        let action = if action == PowerAction::Cycle && current == PowerState::Off && exact { PowerAction::On } else { action };
        let reset_type = choose_reset(action, allowed.as_deref())
            .ok_or_else(|| PowerError::Unsupported { bmc: self.endpoint.clone(), what: format!("power action {}", action.as_str()) })?;
        let target = match reset.get("target").and_then(Value::as_str) {
            Some(path) => self.base.join(path).map_err(|_| self.protocol(operation, "bad reset target".into()))?,
            None => {
                let mut url = system.clone();
                url.path_segments_mut()
                    .map_err(|_| self.protocol(operation, "system URL".into()))?
                    .pop_if_empty()
                    .extend(["Actions", "ComputerSystem.Reset"]);
                url
            }
        };
        tracing::info!(bmc = %self.endpoint, system = %self.system_id, reset_type, "Redfish reset");
        let answer = self.request(operation, Method::POST, &target, Some(&json!({ "ResetType": reset_type }))).await?;
        if !matches!(answer.status.as_u16(), 200 | 202 | 204) {
            return Err(self.unexpected(operation, &answer));
        }
        self.wait_for(operation, wanted).await
    }

    async fn set_boot_device(&self, device: BootDevice) -> Result<(), PowerError> {
        let operation = "set boot device";
        let (doc, system) = self.system(operation).await?;
        let target = match device {
            BootDevice::Pxe => "Pxe",
            BootDevice::Disk => "Hdd",
        };
        if let Some(allowed) = doc.pointer("/Boot/BootSourceOverrideTarget@Redfish.AllowableValues").and_then(Value::as_array)
            && !allowed.iter().any(|v| v.as_str() == Some(target))
        {
            return Err(PowerError::Unsupported { bmc: self.endpoint.clone(), what: format!("boot device {target}") });
        }
        let body = json!({ "Boot": { "BootSourceOverrideTarget": target, "BootSourceOverrideEnabled": "Once" } });
        let answer = self.request(operation, Method::PATCH, &system, Some(&body)).await?;
        if !matches!(answer.status.as_u16(), 200 | 202 | 204) {
            return Err(self.unexpected(operation, &answer));
        }
        Ok(())
    }
}

impl Drop for RedfishDriver {
    fn drop(&mut self) {
        let auth = std::mem::take(&mut self.state.get_mut().unwrap_or_else(|e| e.into_inner()).auth);
        if let Auth::Session { token, location: Some(location) } = auth
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let client = self.client.clone();
            runtime.spawn(async move {
                let _ = client.delete(location).header("X-Auth-Token", token).send().await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_choice_follows_the_allowed_values() {
        let all: Vec<String> = ["On", "ForceOff", "GracefulShutdown", "PowerCycle", "ForceRestart"].map(String::from).to_vec();
        assert_eq!(choose_reset(PowerAction::Cycle, Some(&all)), Some("PowerCycle"));
        assert_eq!(choose_reset(PowerAction::Cycle, Some(&["GracefulRestart".to_owned()])), Some("GracefulRestart"));
        assert_eq!(choose_reset(PowerAction::Cycle, None), Some("ForceRestart"));
        assert_eq!(choose_reset(PowerAction::SoftOff, Some(&all)), Some("GracefulShutdown"));
        assert_eq!(choose_reset(PowerAction::Off, Some(&["On".to_owned()])), None);
    }

    #[test]
    fn debug_hides_the_password() {
        let bmc = BmcAddress::parse("redfish+http://admin:hunter2secret@127.0.0.1:1/sys").expect("valid");
        let driver = RedfishDriver::new(&bmc, Reliability::default()).expect("driver");
        let shown = format!("{driver:?}");
        assert!(!shown.contains("hunter2secret"), "{shown}");
        assert!(shown.contains("127.0.0.1:1"), "{shown}");
    }
}
