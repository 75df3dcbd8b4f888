//! The IPMI v2.0 (RMCP+, "lanplus", cipher suite 3) power driver, on top of
//! the blocking `ipmi-rs` client.
//!
//! It owns one RMCP+ session per BMC: opening it (and raising it to
//! ADMINISTRATOR privilege), re-opening it when it died, closing it when it
//! is replaced or the driver is dropped, and the timeouts, retries and panic
//! containment around the library. Every exchange runs on
//! `spawn_blocking`, never on an async worker thread. On, off and cycle
//! return once the chassis shows the new state (within `settle_timeout`);
//! a soft off returns once the BMC accepted it (the OS shuts down later).
//!
//! It must not decide what a failure means for the node (that is
//! [`PowerError::node_input`]), and it must never put the password into an
//! error, a log line or a `Debug` output — nor `Debug`-format an `ipmi-rs`
//! session object (its crypto state derives from the password) anywhere but
//! into the streaming scanner of `session_id_of`, which keeps nothing.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ipmi_rs::connection::{IpmiConnection, LogicalUnit, Message, Request, RequestTargetAddress};
use ipmi_rs::rmcp::{
    ActivationError, RakpMessage2ErrorStatusCode, RakpMessage2ParseError, RakpMessage4ParseError, Rmcp, RmcpIpmiError,
    RmcpIpmiReceiveError, RmcpIpmiSendError, V2_0ActivationError, V2_0WriteError,
};

use super::{BootDevice, PowerAction, PowerDriver, PowerError, PowerState, Reliability};
use crate::model::bmc::BmcAddress;

const NETFN_CHASSIS: u8 = 0x00;
const NETFN_APP: u8 = 0x06;
const CMD_CHASSIS_STATUS: u8 = 0x01;
const CMD_CHASSIS_CONTROL: u8 = 0x02;
const CMD_SET_BOOT_OPTIONS: u8 = 0x08;
const CMD_SET_SESSION_PRIVILEGE: u8 = 0x3B;
const CMD_CLOSE_SESSION: u8 = 0x3C;
const PRIVILEGE_ADMINISTRATOR: u8 = 0x04;
/// The longest user name RMCP+ carries (ipmi-rs silently sends an empty
/// one instead of a longer one).
const MAX_USERNAME: usize = 16;
/// A session idle this long may have been expired by the BMC: replace it
/// rather than pay a request timeout to find out.
const MAX_IDLE: Duration = Duration::from_secs(30);
/// Replace a session well before ipmi-rs reaches its `todo!()` on
/// sequence-number wrap.
const MAX_REQUESTS_PER_SESSION: u64 = 1 << 31;
/// Round trips of an attempt that opens a session: ping, channel
/// authentication capabilities, open session, RAKP 1/2, RAKP 3/4,
/// privilege, the command itself.
const EXCHANGES_WITH_ACTIVATION: u32 = 7;
/// Pause between two reads of the power state while a change settles.
const SETTLE_POLL: Duration = Duration::from_millis(100);

/// The IPMI v2.0 lanplus driver of one BMC.
pub struct IpmiDriver {
    target: Arc<Target>,
    reliability: Reliability,
    /// The open session, if any. An attempt takes it out and gives it back
    /// only when it is still sound.
    session: Arc<Mutex<Option<Session>>>,
}

/// Where and how to log in. Never `Debug`: it holds the password.
struct Target {
    host: String,
    port: u16,
    endpoint: String,
    username: String,
    password: String,
    timeout: Duration,
}

/// An activated RMCP+ session at ADMINISTRATOR privilege.
struct Session {
    rmcp: Rmcp,
    /// The BMC's ID of this session, for Close Session.
    session_id: Option<u32>,
    requests: u64,
    last_used: Instant,
}

impl Drop for Session {
    /// Sends Close Session without waiting for the answer (one UDP
    /// datagram, so dropping never blocks on the BMC).
    fn drop(&mut self) {
        let Some(id) = self.session_id else { return };
        let mut request = raw_request(NETFN_APP, CMD_CLOSE_SESSION, id.to_le_bytes().to_vec());
        // ipmi-rs unwraps socket errors in send(): a dead peer must not
        // turn a drop into a panic.
        let _ = catch_unwind(AssertUnwindSafe(|| self.rmcp.send(&mut request)));
    }
}

/// How one attempt failed.
#[derive(Debug)]
enum Failure {
    /// The BMC refused the credentials: retrying cannot help.
    Auth,
    /// The BMC answered with a non-zero completion code.
    Completion(u8),
    /// No (usable) answer: the session is gone, the next attempt opens one.
    NoAnswer(String),
    /// A garbled or unexpected answer.
    Protocol(String),
}

impl Failure {
    fn retryable(&self) -> bool {
        matches!(self, Failure::NoAnswer(_) | Failure::Protocol(_))
    }
}

impl IpmiDriver {
    pub fn new(bmc: &BmcAddress, reliability: Reliability) -> IpmiDriver {
        IpmiDriver {
            target: Arc::new(Target {
                host: bmc.host.trim_start_matches('[').trim_end_matches(']').to_owned(),
                port: bmc.port,
                endpoint: bmc.endpoint(),
                username: bmc.username.clone(),
                password: bmc.password().to_owned(),
                timeout: reliability.request_timeout,
            }),
            reliability,
            session: Arc::new(Mutex::new(None)),
        }
    }

    fn take_session(&self) -> Option<Session> {
        self.session.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn put_session(&self, session: Option<Session>) {
        // A session that was there (it cannot be: the caller runs one
        // operation at a time) is dropped, which closes it.
        let _old = std::mem::replace(&mut *self.session.lock().unwrap_or_else(|e| e.into_inner()), session);
    }

    /// Sends one command with retries; returns the answer's data (after
    /// the completion code).
    async fn call(&self, operation: &'static str, netfn: u8, cmd: u8, data: Vec<u8>) -> Result<Vec<u8>, PowerError> {
        self.with_retries(operation, move |target, session| attempt_blocking(target, session, netfn, cmd, data.clone())).await
    }

    /// Runs `work` (one attempt, blocking) on `spawn_blocking` until it
    /// succeeds, fails for good, or the attempts are spent; with the
    /// attempt deadline, the backoff, and the panic boundary.
    async fn with_retries<F>(&self, operation: &'static str, work: F) -> Result<Vec<u8>, PowerError>
    where
        F: Fn(&Target, Option<Session>) -> (Option<Session>, Result<Vec<u8>, Failure>) + Send + Sync + 'static,
    {
        let work = Arc::new(work);
        let attempts = self.reliability.attempts.max(1);
        let mut backoff = self.reliability.backoff;
        let mut last = Failure::NoAnswer("no attempt made".to_owned());
        for attempt in 1..=attempts {
            if attempt > 1 {
                // Backoff between attempts, not a wait for a condition.
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
            }
            let session = self.take_session();
            let exchanges = if session.is_some() { 1 } else { EXCHANGES_WITH_ACTIVATION };
            // Each exchange has its own socket timeout; this is the backstop
            // for the whole attempt.
            let deadline = self.reliability.request_timeout.saturating_mul(exchanges) + Duration::from_millis(100);
            let target = Arc::clone(&self.target);
            let work = Arc::clone(&work);
            let task = tokio::task::spawn_blocking(move || work(&target, session));
            let failure = match tokio::time::timeout(deadline, task).await {
                Err(_) => {
                    // The abandoned task ends at its socket timeout and drops
                    // (closes) the session it holds.
                    Failure::NoAnswer(format!("no answer within {deadline:?}"))
                }
                Ok(Err(join)) => {
                    // The session moved into the task and died with it.
                    Failure::Protocol(format!("IPMI client panicked: {}", panic_text(join)))
                }
                Ok(Ok((session, result))) => {
                    self.put_session(session);
                    match result {
                        Ok(answer) => return Ok(answer),
                        Err(f) => f,
                    }
                }
            };
            tracing::debug!(bmc = %self.target.endpoint, operation, attempt, failure = ?failure, "IPMI attempt failed");
            let retry = failure.retryable();
            last = failure;
            if !retry {
                break;
            }
        }
        let bmc = self.target.endpoint.clone();
        Err(match last {
            Failure::Auth => PowerError::Auth { bmc },
            Failure::Completion(code) => {
                PowerError::Protocol { bmc, operation, detail: format!("completion code {code:#04x} ({})", completion_text(code)) }
            }
            Failure::NoAnswer(detail) => {
                tracing::debug!(bmc = %bmc, operation, last = %detail, "IPMI BMC unreachable");
                PowerError::Unreachable { bmc, tries: attempts }
            }
            Failure::Protocol(detail) => PowerError::Protocol { bmc, operation, detail },
        })
    }
}

impl IpmiDriver {
    /// Polls the power state until it is `expected`, at most
    /// `settle_timeout`.
    async fn settle(&self, action: PowerAction, expected: PowerState) -> Result<(), PowerError> {
        let deadline = Instant::now() + self.reliability.settle_timeout;
        loop {
            if self.power_state().await? == expected {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(PowerError::Timeout {
                    bmc: self.bmc(),
                    operation: action_operation(action),
                    after: self.reliability.settle_timeout,
                });
            }
            // Pace of this bounded polling loop.
            tokio::time::sleep(SETTLE_POLL).await;
        }
    }
}

fn action_operation(action: PowerAction) -> &'static str {
    match action {
        PowerAction::On => "power on",
        PowerAction::Off => "power off",
        PowerAction::SoftOff => "soft off",
        PowerAction::Cycle => "power cycle",
    }
}

impl Drop for IpmiDriver {
    fn drop(&mut self) {
        // Dropping the session sends Close Session (one datagram).
        self.put_session(None);
    }
}

impl fmt::Debug for IpmiDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpmiDriver")
            .field("bmc", &self.target.endpoint)
            .field("username", &self.target.username)
            .field("password", &"<redacted>")
            .field("reliability", &self.reliability)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl PowerDriver for IpmiDriver {
    fn bmc(&self) -> String {
        self.target.endpoint.clone()
    }

    async fn power_state(&self) -> Result<PowerState, PowerError> {
        let answer = self.call("get chassis status", NETFN_CHASSIS, CMD_CHASSIS_STATUS, Vec::new()).await?;
        match answer.first() {
            Some(current) if current & 0x01 != 0 => Ok(PowerState::On),
            Some(_) => Ok(PowerState::Off),
            None => Err(PowerError::Protocol { bmc: self.bmc(), operation: "get chassis status", detail: "empty answer".to_owned() }),
        }
    }

    async fn power(&self, action: PowerAction) -> Result<(), PowerError> {
        let op = match action {
            PowerAction::Off => 0x00,
            PowerAction::On => 0x01,
            // Many BMCs ignore (or refuse) a cycle of a chassis that is off;
            // the contract is "on afterwards", so that is a power on.
            PowerAction::Cycle if self.power_state().await? == PowerState::Off => 0x01,
            PowerAction::Cycle => 0x02,
            PowerAction::SoftOff => 0x05,
        };
        self.call("chassis control", NETFN_CHASSIS, CMD_CHASSIS_CONTROL, vec![op]).await?;
        // A cycle is off, then on a moment later (about 1 s on ipmi_sim):
        // wait for the "on". A soft off depends on the OS and is not waited
        // for; on and off apply at once.
        let expected = match action {
            PowerAction::On | PowerAction::Cycle => PowerState::On,
            PowerAction::Off => PowerState::Off,
            PowerAction::SoftOff => return Ok(()),
        };
        self.settle(action, expected).await
    }

    async fn set_boot_device(&self, device: BootDevice) -> Result<(), PowerError> {
        let selector = match device {
            BootDevice::Pxe => 0x04,
            BootDevice::Disk => 0x08,
        };
        // Parameter 5 (boot flags): valid, this boot only, BIOS boot type.
        let data = vec![5, 0x80, selector, 0, 0, 0];
        self.call("set system boot options", NETFN_CHASSIS, CMD_SET_BOOT_OPTIONS, data).await.map(|_| ())
    }
}

/// One attempt, on a blocking thread: re-uses or opens the session, sends
/// the command, and gives back the session when it is still sound.
fn attempt_blocking(
    target: &Target,
    session: Option<Session>,
    netfn: u8,
    cmd: u8,
    data: Vec<u8>,
) -> (Option<Session>, Result<Vec<u8>, Failure>) {
    let session = match session {
        Some(s) if s.last_used.elapsed() < MAX_IDLE && s.requests < MAX_REQUESTS_PER_SESSION => s,
        stale => {
            // Dropping the old one closes it before its replacement opens.
            drop(stale);
            match open_session(target) {
                Ok(s) => s,
                Err(f) => return (None, Err(f)),
            }
        }
    };
    let mut session = session;
    match exchange(&mut session, netfn, cmd, data) {
        Ok(answer) => (Some(session), Ok(answer)),
        Err(f @ Failure::Completion(_)) => (Some(session), Err(f)),
        Err(f) => (None, Err(f)),
    }
}

fn open_session(target: &Target) -> Result<Session, Failure> {
    if target.username.len() > MAX_USERNAME {
        return Err(Failure::Auth);
    }
    let mut rmcp = Rmcp::new((target.host.as_str(), target.port), target.timeout)
        .map_err(|e| Failure::NoAnswer(format!("cannot resolve the address: {e}")))?;
    rmcp.activate(true, Some(&target.username), Some(target.password.as_bytes())).map_err(activation_failure)?;
    let session_id = session_id_of(&rmcp);
    let mut session = Session { rmcp, session_id, requests: 0, last_used: Instant::now() };
    // RMCP+ sessions start at USER privilege; chassis control needs more.
    match exchange(&mut session, NETFN_APP, CMD_SET_SESSION_PRIVILEGE, vec![PRIVILEGE_ADMINISTRATOR]) {
        Ok(_) => Ok(session),
        Err(Failure::Completion(code)) => {
            Err(Failure::Protocol(format!("set session privilege to administrator: completion code {code:#04x}")))
        }
        Err(f) => Err(f),
    }
}

/// One request and its answer on an open session.
fn exchange(session: &mut Session, netfn: u8, cmd: u8, data: Vec<u8>) -> Result<Vec<u8>, Failure> {
    session.requests += 1;
    session.last_used = Instant::now();
    let mut request = raw_request(netfn, cmd, data);
    let response = session.rmcp.send_recv(&mut request).map_err(connection_failure)?;
    if response.netfn_raw() != netfn | 1 || response.cmd() != cmd {
        return Err(Failure::Protocol(format!(
            "answer to netfn {netfn:#04x} cmd {cmd:#04x} was netfn {:#04x} cmd {:#04x}",
            response.netfn_raw(),
            response.cmd()
        )));
    }
    match response.cc() {
        0 => Ok(response.data().to_vec()),
        code => Err(Failure::Completion(code)),
    }
}

/// The BMC's ID of the session `rmcp` holds, which Close Session needs
/// (OpenIPMI accepts no other way to name the session, and ipmi-rs keeps the
/// ID private). It is read from the `Debug` output of the connection, which
/// also holds key material derived from the password: that output streams
/// through [`SessionIdScan`], which keeps only a 12-byte window (zeroed on
/// drop) and stops the formatting as soon as the ID is read. Nothing of it
/// is stored, logged or returned.
fn session_id_of(rmcp: &Rmcp) -> Option<u32> {
    use std::fmt::Write;
    let mut scan = SessionIdScan::default();
    // Ends in an error once the ID is read: that is the early stop.
    let _ = write!(scan, "{rmcp:?}");
    scan.id()
}

/// A `fmt::Write` sink that finds the first `session_id: <digits>`.
#[derive(Default)]
struct SessionIdScan {
    window: [u8; SessionIdScan::KEY.len()],
    digits: Option<u64>,
    done: bool,
}

impl SessionIdScan {
    const KEY: &'static [u8; 12] = b"session_id: ";

    fn id(&self) -> Option<u32> {
        self.digits.filter(|_| self.done).and_then(|d| u32::try_from(d).ok()).filter(|id| *id != 0)
    }
}

impl fmt::Write for SessionIdScan {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if self.done {
                return Err(fmt::Error);
            }
            if let Some(value) = self.digits.as_mut() {
                if byte.is_ascii_digit() {
                    *value = value.saturating_mul(10).saturating_add(u64::from(byte - b'0'));
                    continue;
                }
                self.done = true;
                return Err(fmt::Error);
            }
            self.window.rotate_left(1);
            self.window[SessionIdScan::KEY.len() - 1] = byte;
            if &self.window == SessionIdScan::KEY {
                self.digits = Some(0);
            }
        }
        Ok(())
    }
}

impl Drop for SessionIdScan {
    fn drop(&mut self) {
        self.window = [0; SessionIdScan::KEY.len()];
    }
}

fn raw_request(netfn: u8, cmd: u8, data: Vec<u8>) -> Request {
    Request::new(Message::new_raw(netfn, cmd, data), RequestTargetAddress::Bmc(LogicalUnit::Zero))
}

fn connection_failure(e: RmcpIpmiError) -> Failure {
    match e {
        RmcpIpmiError::NotActive => Failure::NoAnswer("session not active".to_owned()),
        RmcpIpmiError::Receive(RmcpIpmiReceiveError::Io(io)) => Failure::NoAnswer(io.to_string()),
        RmcpIpmiError::Send(RmcpIpmiSendError::V2_0(V2_0WriteError::Io(io))) => Failure::NoAnswer(io.to_string()),
        other => Failure::Protocol(format!("{other:?}")),
    }
}

fn activation_failure(e: ActivationError) -> Failure {
    use RakpMessage2ErrorStatusCode as Rm2;
    match e {
        ActivationError::BindSocket(io) | ActivationError::PingSend(io) | ActivationError::PongReceive(io) => {
            Failure::NoAnswer(io.to_string())
        }
        ActivationError::GetChannelAuthenticationCapabilities(ipmi_rs::IpmiError::Connection(c)) => connection_failure(c),
        ActivationError::V2_0(v2) => match v2 {
            V2_0ActivationError::ServerAuthenticationFailed
            | V2_0ActivationError::RakpMessage4InvalidIntegrityCheckValue
            | V2_0ActivationError::RakpMessage4Parse(RakpMessage4ParseError::ErrorStatusCode(_))
            | V2_0ActivationError::RakpMessage2Parse(RakpMessage2ParseError::ErrorStatusCode(
                Rm2::UnauthorizedName | Rm2::InvalidRole | Rm2::UnauthorizedRoleOrPrivilegeLevelRequested | Rm2::InvalidNameLength,
            )) => Failure::Auth,
            V2_0ActivationError::Io(io)
            | V2_0ActivationError::OpenSessionRequestSend(V2_0WriteError::Io(io))
            | V2_0ActivationError::SendRakpMessage1(V2_0WriteError::Io(io))
            | V2_0ActivationError::RakpMessage3Send(V2_0WriteError::Io(io))
            | V2_0ActivationError::OpenSessionResponseReceive(RmcpIpmiReceiveError::Io(io))
            | V2_0ActivationError::RakpMessage2Receive(RmcpIpmiReceiveError::Io(io))
            | V2_0ActivationError::RakpMessage4Receive(RmcpIpmiReceiveError::Io(io)) => Failure::NoAnswer(io.to_string()),
            other => Failure::Protocol(format!("RMCP+ session activation: {other:?}")),
        },
        other => Failure::Protocol(format!("RMCP session activation: {other:?}")),
    }
}

fn panic_text(join: tokio::task::JoinError) -> String {
    match join.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned()),
        Err(join) => join.to_string(),
    }
}

fn completion_text(code: u8) -> &'static str {
    match code {
        0xC0 => "node busy",
        0xC1 => "invalid command",
        0xC3 => "timeout",
        0xC7 | 0xC8 => "bad request length",
        0xC9 => "parameter out of range",
        0xCC => "invalid data field",
        0xD4 => "insufficient privilege",
        0xD5 => "not supported in present state",
        0xFF => "unspecified error",
        _ => "see the IPMI specification",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick_driver() -> IpmiDriver {
        let bmc = BmcAddress::parse("ipmi://admin:unitsecret@127.0.0.1:9623").expect("valid");
        let reliability = Reliability {
            request_timeout: Duration::from_millis(200),
            attempts: 3,
            backoff: Duration::from_millis(10),
            settle_timeout: Duration::from_secs(1),
        };
        IpmiDriver::new(&bmc, reliability)
    }

    #[tokio::test]
    async fn a_panic_in_the_client_is_a_protocol_error_and_is_retried() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let driver = quick_driver();
        let tries = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&tries);
        let err = driver
            .with_retries("test", move |_, _| {
                counted.fetch_add(1, Ordering::SeqCst);
                panic!("ipmi-rs todo!() reached");
            })
            .await
            .expect_err("panics");
        assert_eq!(tries.load(Ordering::SeqCst), 3);
        let PowerError::Protocol { bmc, detail, .. } = &err else { panic!("{err:?}") };
        assert_eq!(bmc, "127.0.0.1:9623");
        assert!(detail.contains("panicked") && detail.contains("todo!()"), "{detail}");
        assert!(driver.take_session().is_none());
    }

    #[tokio::test]
    async fn no_answer_is_unreachable_after_all_attempts_and_auth_is_not_retried() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let driver = quick_driver();
        let tries = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&tries);
        let err = driver
            .with_retries("test", move |_, _| {
                counted.fetch_add(1, Ordering::SeqCst);
                (None, Err(Failure::NoAnswer("timed out".to_owned())))
            })
            .await
            .expect_err("no answer");
        assert_eq!(err, PowerError::Unreachable { bmc: "127.0.0.1:9623".to_owned(), tries: 3 });
        assert_eq!(tries.load(Ordering::SeqCst), 3);

        let tries = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&tries);
        let err = driver
            .with_retries("test", move |_, _| {
                counted.fetch_add(1, Ordering::SeqCst);
                (None, Err(Failure::Auth))
            })
            .await
            .expect_err("refused");
        assert_eq!(err, PowerError::Auth { bmc: "127.0.0.1:9623".to_owned() });
        assert_eq!(tries.load(Ordering::SeqCst), 1);
        assert!(!err.to_string().contains("unitsecret"));

        let err = driver.with_retries("chassis control", |_, _| (None, Err(Failure::Completion(0xD4)))).await.expect_err("cc");
        assert!(err.to_string().contains("0xd4"), "{err}");
    }

    #[tokio::test]
    async fn a_hung_attempt_is_cut_at_its_deadline_and_retried() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let driver = quick_driver();
        let tries = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&tries);
        let started = Instant::now();
        let answer = driver
            .with_retries("test", move |_, _| {
                if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                    // A first attempt that hangs far beyond its deadline
                    // (200 ms x 7 exchanges + 100 ms).
                    std::thread::sleep(Duration::from_secs(2));
                }
                (None, Ok(vec![1]))
            })
            .await
            .expect("second attempt answers");
        assert_eq!(answer, vec![1]);
        assert!(started.elapsed() < Duration::from_millis(1900), "{:?}", started.elapsed());
    }

    #[test]
    fn session_id_scan_reads_the_first_id_only() {
        use std::fmt::Write;
        let mut scan = SessionIdScan::default();
        let _ = write!(scan, "State {{ socket: S {{ buffer: [1, 2] }}, session_id: 30");
        let _ = write!(scan, "5419896, sequence: 2, session_id: 7 }}");
        assert_eq!(scan.id(), Some(305_419_896));
        let mut none = SessionIdScan::default();
        let _ = write!(none, "State {{ session: 1 }}");
        assert_eq!(none.id(), None);
    }

    #[test]
    fn debug_hides_the_password() {
        let bmc = BmcAddress::parse("ipmi://admin:hunter2secret@127.0.0.1:9623").expect("valid");
        let driver = IpmiDriver::new(&bmc, Reliability::default());
        let text = format!("{driver:?}");
        assert!(!text.contains("hunter2secret"), "{text}");
        assert!(text.contains("127.0.0.1:9623"), "{text}");
        assert_eq!(driver.bmc(), "127.0.0.1:9623");
    }
}
