//! The `ferrum-agent` binary: each disk subcommand once, judged by its JSON
//! summary on stdout, its progress on stderr and its effect on the disk.

use std::path::Path;
use std::process::{Command, Output};

use crate::fixture::{IMAGE_SIZE, Images, Loop, Mounted, PART_START, mount_lock, run, s, sha256_file, sparse_file};
use crate::keys::{ALICE, CONTROLLER};

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrum-agent")).args(args).output().expect("run ferrum-agent")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "ferrum-agent failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn write_image_then_install_keys() {
    let _lock = mount_lock();
    let images = Images::build();
    let disk = sparse_file(&images.dir.join("node-disk"), IMAGE_SIZE);
    let dev = Loop::attach(&disk);

    let out = agent(&["write-image", "--source", s(&images.zst), "--device", s(&dev.dev), "--sha256", &images.zst_sha]);
    let summary = json(&out);
    assert_eq!(summary["written"], IMAGE_SIZE);
    assert_eq!(summary["format"], "raw.zst", "format guessed from the .zst name");
    assert_eq!(summary["sha256"], images.zst_sha.as_str());
    assert_eq!(summary["sha256_verified"], true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ferrum-agent: write-image: Flushing: 64.0 MiB of 64.0 MiB written"), "{stderr}");

    let keys = images.dir.join("keys");
    std::fs::write(&keys, format!("{ALICE}\n")).expect("keys");
    let controller = images.dir.join("controller.pub");
    std::fs::write(&controller, format!("{CONTROLLER}\n")).expect("controller key");
    let out = agent(&[
        "install-keys",
        "--device",
        s(&dev.dev),
        "--partition",
        "1",
        "--keys",
        s(&keys),
        "--controller-key",
        s(&controller),
        "--hostname",
        "node-3",
    ]);
    let summary = json(&out);
    assert_eq!(summary["keys"], 2);
    assert_eq!(summary["hostname"], "node-3");
    let mounted = Mounted::new(&dev.dev, PART_START, true);
    let written = std::fs::read_to_string(mounted.path().join("root/.ssh/authorized_keys")).expect("authorized_keys");
    assert_eq!(written, format!("{ALICE}\n{CONTROLLER}\n"));
}

#[test]
fn write_image_fails_loudly_on_a_wrong_digest() {
    let images = Images::build();
    let target = sparse_file(&images.dir.join("target"), IMAGE_SIZE);
    let wrong = "ab".repeat(32);
    let out = agent(&["write-image", "--source", s(&images.raw), "--device", s(&target), "--sha256", &wrong]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no summary for a failed write");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("sha256 mismatch: expected {wrong}, got {}", images.raw_sha)), "{stderr}");
}

#[test]
fn install_keys_refuses_a_bad_key_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys");
    std::fs::write(&keys, "ssh-dss AAAAB3NzaC1kc3MAAACBAPold old@key\n").expect("keys");
    let out = agent(&["install-keys", "--device", "/dev/nonexistent", "--partition", "1", "--keys", s(&keys)]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("key line 1: unknown key type \"ssh-dss\""), "{stderr}");
}

#[test]
fn wipe_two_disks() {
    let images = Images::build();
    let second = images.dir.join("second.img");
    std::fs::copy(&images.raw, &second).expect("copy");
    let (a, b) = (Loop::attach(&images.raw), Loop::attach(&second));

    let out = agent(&["wipe", "--device", s(&a.dev), s(&b.dev)]);
    let summary = json(&out);
    let devices = summary["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 2);
    for (entry, dev) in devices.iter().zip([&a.dev, &b.dev]) {
        assert_eq!(entry["ok"], true, "{entry}");
        assert_eq!(entry["device"], s(dev));
        assert_eq!(entry["report"]["method"], "signatures");
        assert_eq!(run("wipefs", &[s(dev)]), "");
    }
    assert!(String::from_utf8_lossy(&out.stderr).contains("ferrum-agent: wipe "));
    assert_ne!(sha256_file(&images.raw), images.raw_sha, "the backing file changed");
    assert!(Path::new(&images.raw).exists());
}
