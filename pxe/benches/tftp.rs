//! TFTP throughput: a 64 MiB file fetched with atftp from ferrum's TFTP
//! service (plain RFC 1350 512-byte blocks, and blksize 1468 + windowsize
//! 16) and from Debian's tftpd-hpa (`in.tftpd`, which has no windowsize),
//! all on loopback, median of 3, ratios against ferrum's plain transfer in
//! the same run. Needs atftp and tftpd-hpa (`apt-get install atftp
//! tftpd-hpa`).
//!
//! `cargo bench -p ferrum-pxe --bench tftp`

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SIZE: usize = 64 * 1024 * 1024;
const RUNS: usize = 3;

fn fetch(port: u16, options: &[&str], out: &Path) -> anyhow::Result<Duration> {
    let _ = std::fs::remove_file(out);
    let mut cmd = Command::new("timeout");
    cmd.args(["120", "atftp"]);
    for o in options {
        cmd.args(["--option", o]);
    }
    cmd.args(["--get", "-r", "big.bin", "-l"]).arg(out).args(["127.0.0.1", &port.to_string()]);
    let t = Instant::now();
    let status = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status()?;
    let took = t.elapsed();
    anyhow::ensure!(status.success(), "atftp failed ({status}) with {options:?}");
    anyhow::ensure!(std::fs::metadata(out)?.len() == SIZE as u64, "short download with {options:?}");
    Ok(took)
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64()
}

fn main() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let out_dir = tempfile::tempdir()?;
    let out = out_dir.path().join("out.bin");
    // Pseudo-random content (xorshift), so nothing compresses or dedups.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let data: Vec<u8> = (0..SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect();
    std::fs::write(root.path().join("big.bin"), &data)?;

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let service = rt.block_on(ferrum_pxe::tftp::bind(root.path().to_owned(), "127.0.0.1:0".parse()?))?;
    let ferrum_port = service.local_addr().port();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(service.run(async move {
        let _ = stop_rx.await;
    }));

    // tftpd-hpa in the foreground on a free loopback port, killed by PID below.
    let hpa_port = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut hpa = Command::new("/usr/sbin/in.tftpd")
        .args(["-L", "-u", "root", "-a", &format!("127.0.0.1:{hpa_port}"), "-s"])
        .arg(root.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;

    let mut rows = Vec::new();
    let cases: [(&str, u16, &[&str]); 4] = [
        ("ferrum, RFC 1350 (512-byte blocks) [baseline]", ferrum_port, &[]),
        ("ferrum, blksize 1468 + windowsize 16", ferrum_port, &["blksize 1468", "windowsize 16"]),
        ("tftpd-hpa, RFC 1350 (512-byte blocks)", hpa_port, &[]),
        ("tftpd-hpa, blksize 1468 (its best: no windowsize)", hpa_port, &["blksize 1468"]),
    ];
    for (name, port, options) in cases {
        let mut times = Vec::new();
        for _ in 0..RUNS {
            times.push(fetch(port, options, &out)?);
        }
        rows.push((name, median(times)));
    }
    let _ = hpa.kill();
    let _ = hpa.wait();
    let _ = stop_tx.send(());
    let _ = rt.block_on(server);

    let base = rows[0].1;
    println!("TFTP, 64 MiB on loopback with atftp, median of {RUNS}");
    println!("{:<52} {:>9} {:>9} {:>8}", "server and options", "seconds", "MiB/s", "ratio");
    for (name, s) in rows {
        println!("{name:<52} {s:>9.2} {:>9.1} {:>7.1}x", 64.0 / s, base / s);
    }
    Ok(())
}
