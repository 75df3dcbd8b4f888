//! The IPMI power driver against a real `ipmi_sim`, checked with `ipmitool`
//! and the BMC's chassis_control record; and its failures (wrong password,
//! a BMC that never answers, a BMC that died). Every test has its own
//! `ipmi_sim` and port, and a 60 s ceiling so nothing hangs.

use std::future::Future;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use ferrum_controller::model::BmcAddress;
use ferrum_controller::power::ipmi::IpmiDriver;
use ferrum_controller::power::{BootDevice, PowerAction, PowerDriver, PowerError, PowerState, Reliability};

use super::ipmi_sim::IpmiSim;

const CEILING: Duration = Duration::from_secs(60);

async fn bounded<F: Future<Output = ()>>(body: F) {
    tokio::time::timeout(CEILING, body).await.expect("test body finished within 60 s");
}

fn driver(url: &str, reliability: Reliability) -> IpmiDriver {
    IpmiDriver::new(&BmcAddress::parse(url).expect("valid BMC URL"), reliability)
}

fn quick() -> Reliability {
    Reliability {
        request_timeout: Duration::from_millis(300),
        attempts: 2,
        backoff: Duration::from_millis(50),
        settle_timeout: Duration::from_secs(5),
    }
}

/// What `ipmitool chassis power status` says: "on" or "off".
fn ipmitool_power(sim: &IpmiSim) -> String {
    let out = sim.ipmitool(&["chassis", "power", "status"]);
    if out.contains("is on") {
        "on".to_owned()
    } else if out.contains("is off") {
        "off".to_owned()
    } else {
        panic!("unexpected ipmitool output: {out}")
    }
}

/// The BMC's count of active sessions (`ipmitool session info active`,
/// whose own session is one of them).
fn active_sessions(sim: &IpmiSim) -> usize {
    let out = sim.ipmitool(&["session", "info", "active"]);
    out.lines()
        .find_map(|l| l.strip_prefix("active sessions")?.split(':').nth(1)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no session count in: {out}"))
}

/// Waits until `check` holds (the harness's bounded condition wait, 10 s);
/// ipmi_sim applies a power cycle as off, then on about a second later.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    super::harness::wait_until(what, Duration::from_secs(10), async || if check() { Ok(()) } else { Err("not yet".into()) }).await;
}

async fn assert_power(sim: &IpmiSim, bmc: &IpmiDriver, expected: PowerState) {
    let record = if expected == PowerState::On { "1" } else { "0" };
    eventually(&format!("chassis_control records power {record}"), || sim.recorded_power() == record).await;
    assert_eq!(ipmitool_power(sim), expected.as_str());
    assert_eq!(bmc.power_state().await.expect("power_state"), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_actions_show_in_ipmitool_and_the_chassis_record() {
    bounded(async {
        let sim = IpmiSim::start();
        let bmc = driver(&sim.url(), Reliability::default());
        assert_eq!(bmc.bmc(), sim.endpoint());
        assert_power(&sim, &bmc, PowerState::Off).await;

        bmc.power(PowerAction::On).await.expect("power on");
        assert_power(&sim, &bmc, PowerState::On).await;

        bmc.power(PowerAction::Off).await.expect("power off");
        assert_power(&sim, &bmc, PowerState::Off).await;

        bmc.power(PowerAction::On).await.expect("power on");
        assert_power(&sim, &bmc, PowerState::On).await;
        let before = sim.recorded_log().lines().count();
        bmc.power(PowerAction::Cycle).await.expect("power cycle");
        assert_eq!(bmc.power_state().await.expect("power_state"), PowerState::On, "on once the cycle returned");
        // A cycle is off then on: wait for the "on" that follows this cycle.
        eventually("the cycle's power on", || {
            let log = sim.recorded_log();
            let after: Vec<&str> = log.lines().skip(before).collect();
            after.iter().position(|l| *l == "power 0").is_some_and(|off| after[off..].contains(&"power 1"))
        })
        .await;
        assert_power(&sim, &bmc, PowerState::On).await;

        bmc.power(PowerAction::SoftOff).await.expect("soft off");
        eventually("soft off reaches chassis_control", || sim.recorded_log().lines().any(|l| l == "shutdown 1")).await;
        assert_power(&sim, &bmc, PowerState::Off).await;

        // Timings, for the report (`--nocapture` shows them).
        let started = Instant::now();
        bmc.power_state().await.expect("power_state");
        let one_status = started.elapsed();
        let started = Instant::now();
        for action in [PowerAction::On, PowerAction::Off, PowerAction::Cycle] {
            bmc.power(action).await.expect("power action");
        }
        let sequence = started.elapsed();
        let started = Instant::now();
        bmc.power(PowerAction::Cycle).await.expect("power cycle from on");
        let cycle_from_on = started.elapsed();
        let cold = driver(&sim.url(), Reliability::default());
        let started = Instant::now();
        cold.power_state().await.expect("power_state with a new session");
        let cold_status = started.elapsed();
        eprintln!(
            "ipmi timings: power_state {one_status:?} (open session), {cold_status:?} (new session); on/off/cycle {sequence:?} (cycle from off = on); cycle from on {cycle_from_on:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_device_shows_in_ipmitool_and_the_chassis_record() {
    bounded(async {
        let sim = IpmiSim::start();
        let bmc = driver(&sim.url(), Reliability::default());

        bmc.set_boot_device(BootDevice::Pxe).await.expect("boot pxe");
        let param = sim.ipmitool(&["chassis", "bootparam", "get", "5"]);
        assert!(param.contains("Force PXE"), "{param}");
        assert_eq!(sim.recorded_boot(), "pxe");

        bmc.set_boot_device(BootDevice::Disk).await.expect("boot disk");
        let param = sim.ipmitool(&["chassis", "bootparam", "get", "5"]);
        assert!(param.contains("Force Boot from default Hard-Drive"), "{param}");
        assert_eq!(sim.recorded_boot(), "default");

        // Power still works on the same session after boot changes.
        bmc.power(PowerAction::On).await.expect("power on");
        assert_power(&sim, &bmc, PowerState::On).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_an_auth_error_that_keeps_the_secret() {
    bounded(async {
        let sim = IpmiSim::start();
        let secret = format!("{}-wrong", sim.password);
        let bmc = driver(&format!("ipmi://admin:{secret}@127.0.0.1:{}", sim.port), quick());
        let err = bmc.power_state().await.expect_err("wrong password must fail");
        assert_eq!(err, PowerError::Auth { bmc: sim.endpoint() });
        let text = err.to_string();
        assert_eq!(text, format!("BMC 127.0.0.1:{} refused the credentials", sim.port));
        assert!(!text.contains(&secret) && !format!("{err:?}").contains(&secret));
        assert!(!format!("{bmc:?}").contains(&secret));
        assert!(!format!("{bmc:?}").contains(&sim.password));
        // The same BMC still serves the right password.
        let good = driver(&sim.url(), quick());
        assert_eq!(good.power_state().await.expect("power_state"), PowerState::Off);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bmc_that_never_answers_is_unreachable_in_bounded_time() {
    bounded(async {
        // A black hole: bound, held open, never read.
        let hole = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = hole.local_addr().expect("addr").port();
        let reliability = quick();
        let bmc = driver(&format!("ipmi://admin:blackholepw@127.0.0.1:{port}"), reliability);
        let started = Instant::now();
        let err = bmc.power(PowerAction::On).await.expect_err("nobody answers");
        let took = started.elapsed();
        assert_eq!(err, PowerError::Unreachable { bmc: format!("127.0.0.1:{port}"), tries: 2 });
        assert!(!err.to_string().contains("blackholepw"));
        // attempts × timeout, plus the backoff and scheduling slack.
        let bound = reliability.request_timeout * reliability.attempts + reliability.backoff + Duration::from_millis(400);
        assert!(took <= bound, "took {took:?}, more than {bound:?}");
        drop(hole);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bmc_that_died_mid_way_is_unreachable() {
    bounded(async {
        let mut sim = IpmiSim::start();
        let bmc = driver(&sim.url(), quick());
        bmc.power(PowerAction::On).await.expect("power on");
        assert_eq!(bmc.power_state().await.expect("power_state"), PowerState::On);
        sim.kill();
        let started = Instant::now();
        let err = bmc.power_state().await.expect_err("the BMC is gone");
        assert_eq!(err, PowerError::Unreachable { bmc: sim.endpoint(), tries: 2 });
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
        // And again, now without a session to lose.
        let err = bmc.power(PowerAction::Off).await.expect_err("still gone");
        assert!(matches!(err, PowerError::Unreachable { .. }), "{err:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_drivers_share_a_bmc_and_close_their_own_sessions_and_cycle_from_off() {
    bounded(async {
        let sim = IpmiSim::start();
        let bmc = driver(&sim.url(), quick());
        bmc.power(PowerAction::On).await.expect("power on");
        // A second driver on the same BMC: both sessions work side by side,
        // and dropping one closes only its own.
        let other = driver(&sim.url(), quick());
        assert_eq!(other.power_state().await.expect("power_state"), PowerState::On);
        // Active sessions: ours, the other driver's, ipmitool's own.
        assert_eq!(active_sessions(&sim), 3);
        drop(other);
        // Close Session is a datagram sent on drop: poll until it shows.
        eventually("the dropped driver's session closes", || active_sessions(&sim) == 2).await;
        bmc.power(PowerAction::Off).await.expect("power off after the other session closed");
        assert_power(&sim, &bmc, PowerState::Off).await;
        // A cycle of a chassis that is off leaves it on.
        bmc.power(PowerAction::Cycle).await.expect("power cycle from off");
        assert_power(&sim, &bmc, PowerState::On).await;
    })
    .await;
}

/// A BMC that answers slowly: a UDP relay in front of `ipmi_sim` that holds
/// every datagram for `delay` each way. The relay stops when its socket is
/// dropped at the end of the test (it reads with a short timeout).
fn slow_relay(target: u16, delay: Duration) -> (u16, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let front = UdpSocket::bind("127.0.0.1:0").expect("bind relay");
    let port = front.local_addr().expect("addr").port();
    front.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
    let back = UdpSocket::bind("127.0.0.1:0").expect("bind relay back");
    back.connect(("127.0.0.1", target)).expect("connect to ipmi_sim");
    back.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !stopped.load(Ordering::Relaxed) {
            let Ok((n, client)) = front.recv_from(&mut buf) else { continue };
            // Justified sleep: this *is* the slow BMC being emulated (the
            // latency under test), not a test waiting for something.
            std::thread::sleep(delay);
            if back.send(&buf[..n]).is_err() {
                continue;
            }
            if let Ok(m) = back.recv(&mut buf) {
                // The same emulated latency, on the answer.
                std::thread::sleep(delay);
                let _ = front.send_to(&buf[..m], client);
            }
        }
    });
    (port, stop)
}

#[tokio::test]
async fn a_slow_bmc_works_within_the_deadline_and_fails_named_beyond_it() {
    bounded(async {
        let sim = IpmiSim::start();
        let sim_port: u16 = sim.endpoint().rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
        let url_via = |port: u16| sim.url().replace(&format!(":{sim_port}"), &format!(":{port}"));

        // 20 ms each way: slower than loopback, well within 300 ms.
        let (port, stop) = slow_relay(sim_port, Duration::from_millis(20));
        let bmc = driver(&url_via(port), quick());
        assert_eq!(bmc.power_state().await.expect("a slow BMC still answers"), PowerState::Off);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);

        // 400 ms each way: every reply misses the 300 ms deadline.
        let (port, stop) = slow_relay(sim_port, Duration::from_millis(400));
        let bmc = driver(&url_via(port), quick());
        let started = Instant::now();
        let err = bmc.power_state().await.expect_err("too slow");
        assert!(matches!(err, PowerError::Unreachable { .. } | PowerError::Timeout { .. }), "{err:?}");
        assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10), "gave up in bounded time: {:?}", started.elapsed());
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    })
    .await;
}
