//! Image-writing throughput: ferrum-agent's `image::write_image` against the
//! shell pipeline `zstd -dc IMG | dd of=FILE bs=4M`, same image, same run.
//!
//! The image is 512 MiB of disk-like content (zero runs, text, random
//! blocks), compressed with `zstd -3`. ferrum hashes the compressed stream
//! (sha256), decodes, writes and fsyncs; so the baseline that does equal work
//! is `dd ... conv=fsync`, and the ratio is taken against it. The plain
//! pipeline (no fsync) is compared with ferrum's time to its last written
//! byte (its first `Flushing` progress report), and with ferrum's total.
//!
//! `CARGO_TARGET_DIR=/work/target-img cargo bench -p ferrum-agent --bench write`

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use ferrum_agent::image::{Format, ImageSpec, Sha256Digest, Source, Stage, WriteOptions, write_image};

const MIB: usize = 1 << 20;
const IMAGE_MIB: usize = 512;
const RUNS: usize = 3;

fn main() -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("ferrum-bench-write.").tempdir_in("/tmp")?;
    let raw = dir.path().join("disk.img");
    let zst = dir.path().join("disk.img.zst");
    let target = dir.path().join("target.img");
    make_image(&raw)?;
    sh(&format!("zstd -q -3 -T0 -f {} -o {}", raw.display(), zst.display()))?;
    std::fs::remove_file(&raw)?;
    let digest = sh(&format!("sha256sum {}", zst.display()))?;
    let sha256: Sha256Digest = digest.split_whitespace().next().unwrap_or_default().parse()?;
    let zst_len = std::fs::metadata(&zst)?.len();
    let image_len = (IMAGE_MIB * MIB) as u64;
    println!(
        "image: {IMAGE_MIB} MiB raw, {:.1} MiB zstd -3 (ratio {:.2}); target {}",
        zst_len as f64 / MIB as f64,
        image_len as f64 / zst_len as f64,
        target.display()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let spec = ImageSpec { source: Source::File(zst.clone()), format: Format::RawZst, sha256: Some(sha256), size: Some(image_len) };
    let pipe = |fsync: bool| {
        let conv = if fsync { " conv=fsync" } else { "" };
        format!("zstd -dc {} | dd of={} bs=4M status=none{conv}", zst.display(), target.display())
    };

    let (mut ferrum, mut ferrum_written, mut dd_fsync, mut dd_plain) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    sh(&format!("cat {} > /dev/null", zst.display()))?; // the source comes from the page cache in every run
    for run in 0..RUNS {
        fresh(&target, Some(image_len))?;
        let started = Instant::now();
        let mut last_byte = None;
        let report = runtime.block_on(write_image(&spec, &target, &WriteOptions::default(), |p| {
            if p.stage == Stage::Flushing && last_byte.is_none() {
                last_byte = Some(started.elapsed().as_secs_f64());
            }
        }))?;
        ferrum.push(started.elapsed().as_secs_f64());
        ferrum_written.push(last_byte.unwrap_or(f64::NAN));
        anyhow::ensure!(report.written == image_len && report.sha256_verified, "ferrum wrote {} bytes", report.written);

        fresh(&target, None)?;
        let started = Instant::now();
        sh(&pipe(true))?;
        dd_fsync.push(started.elapsed().as_secs_f64());

        fresh(&target, None)?;
        let started = Instant::now();
        sh(&pipe(false))?;
        dd_plain.push(started.elapsed().as_secs_f64());
        println!(
            "run {}: ferrum {:.3} s (last byte written at {:.3} s), zstd|dd conv=fsync {:.3} s, zstd|dd {:.3} s",
            run + 1,
            ferrum[run],
            ferrum_written[run],
            dd_fsync[run],
            dd_plain[run]
        );
    }
    std::fs::remove_file(&target)?;

    let mib_s = |secs: f64| IMAGE_MIB as f64 / secs;
    println!();
    println!("| writer ({IMAGE_MIB} MiB decoded, {RUNS} runs) | median s | MiB/s |");
    println!("|---|---|---|");
    let rows = [
        ("ferrum-agent write_image (sha256 + zstd + fsync)", median(&mut ferrum)),
        ("zstd -dc | dd bs=4M conv=fsync", median(&mut dd_fsync)),
        ("ferrum-agent, until its last byte is written (before fsync)", median(&mut ferrum_written)),
        ("zstd -dc | dd bs=4M (no fsync)", median(&mut dd_plain)),
    ];
    for (name, secs) in rows {
        println!("| {name} | {secs:.3} | {:.0} |", mib_s(secs));
    }
    println!();
    println!("ferrum / zstd|dd throughput: {:.2} (equal work: conv=fsync; goal >= 0.9)", rows[1].1 / rows[0].1);
    println!("ferrum / zstd|dd throughput, neither counting the fsync: {:.2}", rows[3].1 / rows[2].1);
    println!("ferrum (with fsync) / zstd|dd (without): {:.2}", rows[3].1 / rows[0].1);
    Ok(())
}

/// Removes the target (freeing its page cache), for ferrum recreates it sparse
/// at the image size (a regular-file target's length is its capacity), syncs.
fn fresh(target: &Path, size: Option<u64>) -> anyhow::Result<()> {
    if target.exists() {
        std::fs::remove_file(target)?;
    }
    if let Some(size) = size {
        std::fs::File::create(target)?.set_len(size)?;
    }
    // Every run starts with nothing dirty in the page cache.
    sh("sync")?;
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn sh(script: &str) -> anyhow::Result<String> {
    let out = Command::new("sh").args(["-c", script]).output()?;
    anyhow::ensure!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Disk-like content, 1 MiB at a time: 40 % zeros (free space), 35 % text
/// (configuration, logs, man pages), 25 % random (binaries, compressed files).
fn make_image(path: &Path) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(4 * MIB, std::fs::File::create(path)?);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let words = ["kernel", "systemd", "ferrum", "node", "started", "error", "ok", "/usr/lib", "eth0", "lease", "root", "=", "0x1f"];
    let mut block = vec![0u8; MIB];
    for _ in 0..IMAGE_MIB {
        match next() % 100 {
            0..40 => block.fill(0),
            40..75 => {
                block.clear();
                while block.len() < MIB {
                    let line = format!(
                        "{} {} {} [{}] {}\n",
                        next() % 100_000,
                        words[(next() % 13) as usize],
                        words[(next() % 13) as usize],
                        next() % 4096,
                        words[(next() % 13) as usize]
                    );
                    block.extend_from_slice(line.as_bytes());
                }
                block.truncate(MIB);
            }
            _ => {
                for chunk in block.chunks_exact_mut(8) {
                    chunk.copy_from_slice(&next().to_le_bytes());
                }
            }
        }
        out.write_all(&block)?;
    }
    out.flush()?;
    Ok(())
}
