//! Power-status sweep over 50 real `ipmi_sim` BMCs: ferrum's IPMI driver
//! asking all of them concurrently (as the power loop's sweep does, 32 at a
//! time) against the baseline `ipmitool -I lanplus -C 3 ... chassis power
//! status` run serially for each, measured in the same run. Needs ipmi_sim
//! and ipmitool (scripts/test.sh installs them).
//!
//! `cargo bench -p ferrum-controller --bench power_sweep`

#[allow(dead_code, reason = "the test harness has more than the bench uses")]
#[path = "../tests/it/ipmi_sim.rs"]
mod ipmi_sim;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrum_controller::model::BmcAddress;
use ferrum_controller::power::{PowerDriver, PowerState, Reliability, ipmi::IpmiDriver};

const BMCS: usize = 50;
const RUNS: usize = 5;

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

fn main() -> anyhow::Result<()> {
    let sims: Vec<ipmi_sim::IpmiSim> = (0..BMCS).map(|_| ipmi_sim::IpmiSim::start()).collect();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;

    // Baseline: ipmitool, one BMC after the other.
    let mut serial = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        for sim in &sims {
            let out = sim.ipmitool(&["chassis", "power", "status"]);
            assert!(out.contains("Chassis Power is"), "{out}");
        }
        serial.push(t.elapsed());
    }

    // ferrum: one driver per BMC (sessions kept, as the power loop does), 32 at a time.
    let drivers: Vec<Arc<dyn PowerDriver>> = sims
        .iter()
        .map(|s| -> anyhow::Result<Arc<dyn PowerDriver>> {
            let bmc = BmcAddress::parse(&s.url()).map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(Arc::new(IpmiDriver::new(&bmc, Reliability::default())))
        })
        .collect::<anyhow::Result<_>>()?;
    let sweep = |drivers: &[Arc<dyn PowerDriver>]| -> anyhow::Result<Duration> {
        rt.block_on(async {
            let limit = Arc::new(tokio::sync::Semaphore::new(32));
            let t = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for d in drivers {
                let (d, limit) = (d.clone(), limit.clone());
                tasks.spawn(async move {
                    let _permit = limit.acquire_owned().await;
                    d.power_state().await
                });
            }
            while let Some(r) = tasks.join_next().await {
                let state = r??;
                assert!(matches!(state, PowerState::On | PowerState::Off));
            }
            Ok(t.elapsed())
        })
    };
    let first = sweep(&drivers)?; // includes the 50 logins
    let mut concurrent = Vec::new();
    for _ in 0..RUNS {
        concurrent.push(sweep(&drivers)?);
    }
    let cold: Vec<Arc<dyn PowerDriver>> = sims
        .iter()
        .map(|s| -> anyhow::Result<Arc<dyn PowerDriver>> {
            let bmc = BmcAddress::parse(&s.url()).map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(Arc::new(IpmiDriver::new(&bmc, Reliability::default())))
        })
        .collect::<anyhow::Result<_>>()?;
    let cold_sweep = sweep(&cold)?;

    let base = median(serial);
    let warm = median(concurrent);
    println!("power-status sweep over {BMCS} ipmi_sim BMCs (median of {RUNS} runs)");
    println!("{:<52} {:>10} {:>8}", "method", "ms", "ratio");
    println!("{:<52} {base:>10.1} {:>8}", "ipmitool -I lanplus -C 3, serially (baseline)", "1.0x");
    println!(
        "{:<52} {:>10.1} {:>7.1}x",
        "ferrum IPMI driver, 32 at a time, new sessions",
        cold_sweep.as_secs_f64() * 1e3,
        base / (cold_sweep.as_secs_f64() * 1e3)
    );
    println!("{:<52} {warm:>10.1} {:>7.1}x", "ferrum IPMI driver, 32 at a time, sessions kept", base / warm);
    println!("(first sweep with logins, same drivers: {:.1} ms)", first.as_secs_f64() * 1e3);
    drop(drivers);
    drop(cold);
    drop(sims);
    Ok(())
}
