//! The proof that real firmware accepts ferrum's boot answers: a QEMU VM
//! (TCG, `-boot n`, the iPXE ROM Debian's `ipxe-qemu` gives its virtio
//! NIC) on a tap inside a network namespace gets its address from
//! `ferrumd`'s full-mode DHCP, fetches its iPXE script, kernel and initrd
//! over HTTP, and boots them; the test initrd prints a marker and the
//! kernel command line on the serial console.
//!
//! Everything (ferrumd, DHCP, the VM) runs inside the namespace; the test
//! talks to ferrumd with the real `ferrum` CLI run inside it too.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use ferrum_lab::netns::Netns;
use ferrum_tests::{Ferrumd, wait_until};

const MAC: &str = "52:54:00:5e:00:01";
/// TCG boots of a small kernel take seconds; the deadline is generous for a
/// loaded 2-core CI machine.
const BOOT_DEADLINE: Duration = Duration::from_secs(180);
const MARKER: &str = "FERRUM-PXE-OK";

fn cache() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache/ferrum")
}

/// The Debian cloud kernel (downloaded once, cached) and a busybox initrd
/// whose /init prints the marker and the command line, then powers off.
fn ramdisk(dir: &Path) {
    let kernel = ferrum_images::kernel::fetch(&cache().join("debs"), &cache().join("images/kernel-cloud")).expect("the cloud kernel");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(&kernel.vmlinuz, dir.join("vmlinuz")).unwrap();
    let init = format!(
        "#!/bin/sh\n/bin/busybox mount -t proc proc /proc\necho \"{MARKER} $(/bin/busybox cat /proc/cmdline)\"\n/bin/busybox poweroff -f\n"
    );
    let mut builder = ferrum_images::initramfs::Builder::new();
    builder.busybox(Path::new("/bin/busybox")).unwrap();
    builder.dir("proc", 0o755).unwrap();
    builder.dir("dev", 0o755).unwrap();
    builder.char_device("dev/console", 0o600, 5, 1).unwrap();
    builder.bytes("init", init, 0o755).unwrap();
    builder.write_zstd(&dir.join("initrd.img"), 3).unwrap();
}

/// A child process killed by PID and reaped on drop.
struct Owned(Child);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ok(out: std::process::Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{what} failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// A provisioning network `10.<net>.0.0/24` in a new namespace: a bridge
/// with a tap for one VM, and `ferrumd` serving DHCP (full mode) and the
/// ramdisk in `ramdisk_dir` on it.
fn provisioning_site(prefix: &str, net: u8, ramdisk_dir: &Path) -> (Netns, Ferrumd) {
    let ns = Netns::create(prefix).unwrap();
    ns.add_bridge("br0", &format!("10.{net}.0.1/24")).unwrap();
    ns.ip(&["tuntap", "add", "tap0", "mode", "tap"]).unwrap();
    ns.ip(&["link", "set", "tap0", "master", "br0"]).unwrap();
    ns.ip(&["link", "set", "tap0", "up"]).unwrap();
    let config = format!(
        "[boot]\nlisten = [\"10.{net}.0.1:8751\"]\npublic_url = \"http://10.{net}.0.1:8751\"\nramdisk_dir = \"{}\"\ncmdline = \"console=ttyS0 panic=-1\"\n\n\
         [[boot.dhcp]]\ninterface = \"br0\"\nmode = \"full\"\nsubnet = \"10.{net}.0.0/24\"\n",
        ramdisk_dir.display()
    );
    let ferrumd = Ferrumd::start_with(Some(ns.name()), &config, &format!("10.{net}.0.1:8750"));
    (ns, ferrumd)
}

/// Enrols `name` with `mac` and `ip`, to boot the ramdisk next.
fn enrol_for_ramdisk(ferrumd: &Ferrumd, name: &str, mac: &str, ip: &str) {
    let admin = &ferrumd.admin_token;
    ok(ferrumd.ferrum(admin, &["node", "add", name, "--site", "lab", "--cluster", "vm", "--mac", mac, "--ip", ip]), "node add");
    ok(ferrumd.ferrum(admin, &["node", "boot-target", "ramdisk", name]), "node boot-target");
}

/// A VM on the site's tap, booting from the network (TCG), its serial
/// console in `serial`; `extra` adds devices.
fn start_vm(ns: &Netns, mac: &str, memory_mib: u32, cpus: u32, serial: &Path, extra: &[String]) -> Owned {
    let child = ns
        .command("qemu-system-x86_64")
        .args(["-accel", "tcg", "-m", &memory_mib.to_string(), "-smp", &cpus.to_string()])
        .args(["-nodefaults", "-display", "none", "-no-reboot", "-boot", "n"])
        .args(["-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no"])
        .args(["-device", &format!("virtio-net-pci,netdev=n0,mac={mac}")])
        .args(extra)
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64 starts");
    Owned(child)
}

#[test]
fn qemu_ipxe_boots_the_ramdisk_through_ferrum_dhcp_and_http() {
    let work = tempfile::tempdir().unwrap();
    let ramdisk_dir = work.path().join("ramdisk");
    ramdisk(&ramdisk_dir);

    let (ns, ferrumd) = provisioning_site("fe2e-pxe", 78, &ramdisk_dir);
    let admin = ferrumd.admin_token.clone();
    enrol_for_ramdisk(&ferrumd, "pxe-1", MAC, "10.78.0.21");
    let serial = work.path().join("serial.log");
    let mut qemu = start_vm(&ns, MAC, 256, 1, &serial, &[]);

    let started = Instant::now();
    let line = serial_line(&serial, MARKER, &mut qemu);
    eprintln!("PXE boot to the ramdisk's /init: {:.1} s", started.elapsed().as_secs_f64());

    // The kernel got the command line ferrum's script generated.
    assert!(line.contains("ferrum.url=http://10.78.0.1:8751"), "{line}");
    assert!(line.contains("ferrum.node=pxe-1"), "{line}");
    assert!(line.contains("ferrum.token=ferrum_"), "{line}");
    assert!(line.contains("console=ttyS0"), "{line}");

    // The node keeps its target until the controller (or an admin) changes it.
    let shown = ok(ferrumd.ferrum(&admin, &["node", "show", "pxe-1", "--json"]), "node show");
    assert!(shown.contains("\"boot_target\": \"ramdisk\""), "{shown}");
    drop(qemu);
    drop(ferrumd);
}

/// `ferrum-pxe --config` as a separate per-site service: its DHCP answers
/// from the node table it loads from the controller with a boot-service
/// token (a user's is refused), and busybox `udhcpc` on a client namespace gets the inventory
/// address; a MAC enrolled later is answered after the next refresh.
#[test]
fn standalone_ferrum_pxe_answers_from_the_controller_inventory() {
    let work = tempfile::tempdir().unwrap();
    let site = Netns::create("fe2e-site").unwrap();
    let clients = Netns::create("fe2e-cli").unwrap();
    site.add_bridge("br0", "10.79.0.1/24").unwrap();
    for (end, mac) in [("c1", "52:54:00:5f:00:01"), ("c2", "52:54:00:5f:00:02")] {
        site.add_veth_to_bridge(end, &format!("{end}p"), "br0", mac).unwrap();
        site.move_link(end, &clients).unwrap();
        clients.ip(&["link", "set", end, "up"]).unwrap();
    }

    let ferrumd = Ferrumd::start_with(Some(site.name()), "", "10.79.0.1:8750");
    let admin = ferrumd.admin_token.clone();
    ok(
        ferrumd.ferrum(
            &admin,
            &["node", "add", "site-1", "--site", "lab", "--cluster", "vm", "--mac", "52:54:00:5f:00:01", "--ip", "10.79.0.31"],
        ),
        "node add",
    );
    ok(ferrumd.ferrum(&admin, &["admin", "project", "add", "p-infra"]), "project add");
    let created = ok(ferrumd.ferrum(&admin, &["admin", "user", "add", "pxe-site", "--project", "p-infra"]), "user add");
    let token_file = work.path().join("pxe.token");
    let config = work.path().join("ferrum-pxe.toml");
    std::fs::write(
        &config,
        format!(
            "[controller]\nurl = \"http://10.79.0.1:8750\"\ntoken_file = \"{}\"\nrefresh = \"1s\"\n\n\
             [[boot.dhcp]]\ninterface = \"br0\"\nmode = \"full\"\nsubnet = \"10.79.0.0/24\"\nrouter = \"10.79.0.1\"\n",
            token_file.display()
        ),
    )
    .unwrap();
    let start_pxe = |log: &Path| {
        let log = std::fs::File::create(log).unwrap();
        let pxe = site
            .command(ferrum_tests::binary("ferrum-pxe").to_str().unwrap())
            .arg("--config")
            .arg(&config)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("ferrum-pxe starts");
        Owned(pxe)
    };

    // A user's token does not load the node table (the MAC table is the
    // boot services', not every user's).
    std::fs::write(&token_file, created.lines().last().unwrap().trim()).unwrap();
    let user_log = work.path().join("pxe-user.log");
    let refused = start_pxe(&user_log);
    wait_until("ferrum-pxe says the user token is refused", Duration::from_secs(20), || {
        let text = std::fs::read_to_string(&user_log).unwrap_or_default();
        if text.contains("/api/v1/boot/hosts answered 403") { Ok(()) } else { Err(text) }
    });
    drop(refused);

    // An admin's boot-service token does.
    let minted = ok(ferrumd.ferrum(&admin, &["admin", "boot-token"]), "admin boot-token");
    let boot_token = minted.lines().last().unwrap().trim().to_owned();
    assert!(boot_token.starts_with("fboot_"), "{minted}");
    std::fs::write(&token_file, &boot_token).unwrap();
    let _pxe = start_pxe(&work.path().join("pxe.log"));

    let lease = |end: &str| {
        let out = work.path().join(format!("{end}.lease"));
        let hook = work.path().join(format!("{end}.hook"));
        std::fs::write(&hook, format!("#!/bin/sh\necho \"$1 ip=$ip host=$hostname\" >> {}\n", out.display())).unwrap();
        std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        // udhcpc retries by itself (10 discovers, 1 s apart) and exits: the
        // first ones may come before ferrum-pxe has loaded its table.
        let status = clients
            .command("busybox")
            .args(["udhcpc", "-i", end, "-f", "-q", "-n", "-t", "10", "-T", "1", "-s"])
            .arg(&hook)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        (status.success(), std::fs::read_to_string(&out).unwrap_or_default())
    };
    let (got, text) = lease("c1");
    assert!(got, "udhcpc got no lease: {text}");
    assert!(text.contains("bound ip=10.79.0.31 host=site-1"), "{text}");

    // A node enrolled now is answered once the service has reloaded.
    ok(
        ferrumd.ferrum(
            &admin,
            &["node", "add", "site-2", "--site", "lab", "--cluster", "vm", "--mac", "52:54:00:5f:00:02", "--ip", "10.79.0.32"],
        ),
        "node add",
    );
    let (got, text) = lease("c2");
    assert!(got, "udhcpc got no lease for the new node: {text}");
    assert!(text.contains("bound ip=10.79.0.32 host=site-2"), "{text}");
}

/// The real deploy ramdisk (`ferrum-images build ramdisk-lab`: the Debian
/// cloud kernel, busybox, the static agent) PXE-boots a QEMU VM through
/// `ferrumd`; its agent registers with the one-time token and reports an
/// inventory that says what QEMU was told: 2 vCPUs, 320 MiB, one 1 GiB
/// virtio disk, the NIC's MAC. Then it writes an image served by ferrumd
/// to the disk and kexecs the kernel inside it.
#[test]
fn the_ramdisk_agent_reports_what_qemu_was_told() {
    const VM_MAC: &str = "52:54:00:5e:00:02";
    let options = ferrum_images::plan::Options::with_default_dirs().expect("HOME is set");
    let built = ferrum_images::plan::build(&options, &[ferrum_images::plan::Target::RamdiskLab], |_| {}).expect("the lab ramdisk builds");
    let lab = built.ramdisk_lab.expect("the lab ramdisk");
    let ramdisk_dir = lab.vmlinuz.parent().expect("a directory").to_owned();

    let work = tempfile::tempdir().unwrap();
    let (ns, ferrumd) = provisioning_site("fe2e-agent", 80, &ramdisk_dir);
    let admin = ferrumd.admin_token.clone();
    enrol_for_ramdisk(&ferrumd, "vm-1", VM_MAC, "10.80.0.21");
    let disk = work.path().join("disk.raw");
    std::fs::File::create(&disk).unwrap().set_len(1 << 30).unwrap();
    let serial = work.path().join("serial.log");
    let drive = [
        "-drive".to_owned(),
        format!("file={},if=none,id=d0,format=raw,cache=unsafe", disk.display()),
        "-device".to_owned(),
        "virtio-blk-pci,drive=d0".to_owned(),
    ];
    let mut qemu = start_vm(&ns, VM_MAC, 320, 2, &serial, &drive);

    let started = Instant::now();
    let inventory = wait_until("the agent's inventory", BOOT_DEADLINE, || {
        if let Ok(Some(status)) = qemu.0.try_wait() {
            panic!(
                "QEMU exited ({status}) before the agent reported; serial console:\n{}",
                std::fs::read_to_string(&serial).unwrap_or_default()
            );
        }
        let shown = ok(ferrumd.ferrum(&admin, &["--json", "node", "inventory", "vm-1"]), "node inventory");
        let value: serde_json::Value = serde_json::from_str(&shown).unwrap();
        if value["reported"].is_null() { Err(std::fs::read_to_string(&serial).unwrap_or_default()) } else { Ok(value) }
    });
    eprintln!("PXE boot to the agent's inventory: {:.1} s", started.elapsed().as_secs_f64());

    let report = &inventory["reported"]["report"];
    assert_eq!(inventory["reported"]["generation"], 1);
    assert_eq!(report["architecture"]["nb_threads"], 2, "{}", report["architecture"]);
    let mem = report["main_memory"]["mem_total"].as_u64().expect("MemTotal");
    assert!((200 << 20..=320 << 20).contains(&mem), "MemTotal {mem} for -m 320");
    let ram = report["main_memory"]["ram_size"].as_u64().expect("ram_size");
    assert!((300 << 20..=320 << 20).contains(&ram), "ram_size {ram} for -m 320");
    let disks = report["storage_devices"].as_array().expect("disks");
    assert_eq!(disks.len(), 1, "{disks:?}");
    assert_eq!((disks[0]["size"].as_u64(), disks[0]["interface"].as_str()), (Some(1 << 30), Some("VIRTIO")));
    let macs: Vec<&str> = report["network_adapters"].as_array().expect("NICs").iter().filter_map(|n| n["mac"].as_str()).collect();
    assert_eq!(macs, [VM_MAC]);
    assert!(report["gpu_devices"].as_object().is_some_and(serde_json::Map::is_empty), "no GPU in this VM");

    // The agent writes an image served by ferrumd at /images/ (HTTP) to the
    // VM's disk, then kexecs the kernel and initrd inside it.
    let boot_files = work.path().join("kexec-files");
    ramdisk(&boot_files);
    let images = ferrumd.data_dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    let raw = images.join("kexec.raw");
    ferrum_images::disk::build_bootable(&raw, 64 << 20, "kexec", |root| {
        let boot = root.path.join("boot");
        std::fs::create_dir_all(boot.join("extlinux")).unwrap();
        std::fs::copy(boot_files.join("vmlinuz"), boot.join("vmlinuz")).unwrap();
        std::fs::copy(boot_files.join("initrd.img"), boot.join("initrd.img")).unwrap();
        std::fs::write(boot.join("extlinux/extlinux.conf"), "DEFAULT linux\nLABEL linux\n  KERNEL /boot/vmlinuz\n").unwrap();
        Ok(())
    })
    .expect("a bootable test image");
    let sha = String::from_utf8(std::process::Command::new("sha256sum").arg(&raw).output().unwrap().stdout).unwrap();
    // kexec.raw is no public environment's: ferrumd serves it only to the
    // agent whose write command names it (the agent sends its session).
    let write = serde_json::json!({"kind": "write_image", "url": "http://10.80.0.1:8751/images/kexec.raw", "format": "raw",
        "sha256": sha.split_whitespace().next().unwrap(), "size": 64u64 << 20, "device": "/dev/vda"});
    let done = agent_command(&ns, &ferrumd, "vm-1", &write);
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["done_bytes"], 64u64 << 20);
    let kexec = serde_json::json!({"kind": "kexec", "device": "/dev/vda", "root_partition": 1, "kernel": "boot/vmlinuz",
        "initrd": "boot/initrd.img", "cmdline": "console=ttyS0 panic=-1 ferrum.kexec=yes"});
    let done = agent_command(&ns, &ferrumd, "vm-1", &kexec);
    assert_eq!(done["state"], "done", "{done}");
    let started = Instant::now();
    let line = serial_line(&serial, MARKER, &mut qemu);
    assert!(line.contains("ferrum.kexec=yes"), "the kexec'd kernel has the command line it was given: {line}");
    eprintln!("kexec into the written system: {:.1} s", started.elapsed().as_secs_f64());
}

/// Queues `action` for `node`'s agent through the API (curl inside the
/// namespace) and waits until it has finished; returns the command.
fn agent_command(ns: &Netns, ferrumd: &Ferrumd, node: &str, action: &serde_json::Value) -> serde_json::Value {
    let url = format!("{}/api/v1/nodes/{node}/agent-commands", ferrumd.url);
    let auth = format!("Authorization: Bearer {}", ferrumd.admin_token);
    let curl = |args: &[&str]| -> serde_json::Value {
        let out = ns.command("curl").args(["-sS", "--fail-with-body", "-H", &auth]).args(args).output().unwrap();
        assert!(out.status.success(), "curl {args:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let queued = curl(&["-H", "Content-Type: application/json", "-d", &action.to_string(), &url]);
    let id = queued["id"].as_i64().unwrap();
    wait_until(&format!("command {id} finished"), BOOT_DEADLINE, || {
        let list = curl(&[&url]);
        let cmd = list.as_array().unwrap().iter().find(|c| c["id"] == id).cloned().unwrap();
        if cmd["state"] == "done" || cmd["state"] == "failed" { Ok(cmd) } else { Err(cmd.to_string()) }
    })
}

/// The first serial console line containing `needle`, waiting until the VM
/// prints it (or fails the test if QEMU ends first).
fn serial_line(serial: &Path, needle: &str, qemu: &mut Owned) -> String {
    wait_until(&format!("{needle:?} on the serial console"), BOOT_DEADLINE, || {
        let text = std::fs::read_to_string(serial).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(needle)) {
            return Ok(line.to_owned());
        }
        if let Ok(Some(status)) = qemu.0.try_wait() {
            panic!("QEMU exited ({status}) before {needle:?}; serial console:\n{text}");
        }
        Err(text)
    })
}
