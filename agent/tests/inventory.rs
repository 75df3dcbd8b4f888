//! `ferrum-agent inventory` end to end: the real binary on this machine, on
//! a fake sysfs/procfs tree (snapshot of the report), and the check
//! ([`ferrum_check::compare`]) against the Grid'5000 reference
//! fixtures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ferrum_api::inventory::{
    Architecture, GpuDevice, InventoryReport, MainMemory, MemorySource, NetworkAdapter, PciIdsOrigin, PciIdsSource, Processor,
    StorageDevice,
};
use ferrum_check::{Tolerances, compare};
use serde_json::Value;
use tempfile::TempDir;

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrum-agent")).args(args).output().expect("ferrum-agent runs")
}

/// Runs `ferrum-agent inventory ARGS` and parses its report.
fn inventory(args: &[&str]) -> InventoryReport {
    let mut all = vec!["inventory"];
    all.extend_from_slice(args);
    let output = agent(&all);
    assert!(output.status.success(), "ferrum-agent {all:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("report is not an InventoryReport ({e}):\n{}", String::from_utf8_lossy(&output.stdout)))
}

// ---------------------------------------------------------------------------
// This machine
// ---------------------------------------------------------------------------

#[test]
fn inventory_of_this_machine_matches_proc_sys_and_lsblk() {
    let report = inventory(&[]);
    assert_eq!(report.schema_version, 1);
    assert_eq!(report.agent_version, env!("CARGO_PKG_VERSION"));

    // CPUs: one per `processor` line, and at least what this process may use.
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").expect("/proc/cpuinfo");
    let processors = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let threads = report.architecture.nb_threads.expect("nb_threads") as usize;
    assert_eq!(threads, processors, "nb_threads vs /proc/cpuinfo");
    let nproc = Command::new("nproc").output().expect("nproc runs");
    let nproc: usize = String::from_utf8_lossy(&nproc.stdout).trim().parse().expect("nproc prints a number");
    assert!(threads >= nproc, "nb_threads {threads} < nproc {nproc}");
    let cores = report.architecture.nb_cores.expect("nb_cores");
    let procs = report.architecture.nb_procs.expect("nb_procs");
    assert!(procs >= 1 && cores >= procs && cores as usize <= threads, "{:?}", report.architecture);

    // Memory: MemTotal exactly, and an installed size a little above it
    // (what firmware, the kernel image and a crash kernel hold back).
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("/proc/meminfo");
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("MemTotal");
    let mem_total = kib * 1024;
    assert_eq!(report.main_memory.mem_total, Some(mem_total));
    let ram = report.main_memory.ram_size.expect("ram_size");
    assert!(ram >= mem_total && ram as f64 <= mem_total as f64 * 1.15, "ram_size {ram} vs MemTotal {mem_total}");

    // NICs: every interface with a device link, with its MAC.
    for entry in std::fs::read_dir("/sys/class/net").expect("/sys/class/net") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.path().join("device").exists() {
            assert!(!report.network_adapters.iter().any(|a| a.device == name), "virtual {name} reported");
            continue;
        }
        let mac = std::fs::read_to_string(entry.path().join("address")).expect("address").trim().to_string();
        let adapter = report.network_adapters.iter().find(|a| a.device == name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(adapter.mac.as_deref(), Some(mac.as_str()), "{name}");
    }

    // Disks: every lsblk disk with its size. zram is compressed RAM and
    // disks of size 0 are empty readers: the agent leaves both out.
    let lsblk = Command::new("lsblk").args(["-d", "-b", "-n", "-o", "NAME,SIZE,TYPE"]).output().expect("lsblk runs");
    assert!(lsblk.status.success(), "lsblk: {}", String::from_utf8_lossy(&lsblk.stderr));
    let mut checked = 0;
    for line in String::from_utf8_lossy(&lsblk.stdout).lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [name, size, "disk"] = fields[..] else { continue };
        let size: u64 = size.parse().expect("size");
        if name.starts_with("zram") || size == 0 {
            continue;
        }
        let disk = report.storage_devices.iter().find(|d| d.device == name).unwrap_or_else(|| panic!("disk {name} missing"));
        assert_eq!(disk.size, Some(size), "{name}");
        checked += 1;
    }
    assert_eq!(checked, report.storage_devices.len(), "the agent reports exactly lsblk's disks");

    // PCI: every function of the bus.
    let functions = std::fs::read_dir("/sys/bus/pci/devices").map(|d| d.count()).unwrap_or(0);
    assert_eq!(report.pci_devices.len(), functions);
}

// ---------------------------------------------------------------------------
// A fake node
// ---------------------------------------------------------------------------

/// A fake root (`proc/`, `sys/`, `dev/`, `usr/`) laid out like the kernel's.
struct Tree {
    dir: TempDir,
}

impl Tree {
    fn new() -> Tree {
        Tree { dir: TempDir::new().expect("tempdir") }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn root_arg(&self) -> String {
        self.root().display().to_string()
    }

    fn file(&self, path: &str, content: impl AsRef<[u8]>) {
        let path = self.root().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
    }

    /// A relative symlink, as sysfs makes them.
    fn link(&self, path: &str, target: &str) {
        let path = self.root().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::os::unix::fs::symlink(target, path).expect("symlink");
    }

    /// A PCI function under `sys/devices/pci0000:00` and its
    /// `sys/bus/pci/devices` link; returns its directory.
    fn pci(&self, address: &str, vendor: u16, device: u16, class: u32, driver: Option<&str>) -> String {
        let dir = format!("sys/devices/pci0000:00/{address}");
        self.file(&format!("{dir}/vendor"), format!("0x{vendor:04x}\n"));
        self.file(&format!("{dir}/device"), format!("0x{device:04x}\n"));
        self.file(&format!("{dir}/class"), format!("0x{class:06x}\n"));
        self.file(&format!("{dir}/subsystem_vendor"), format!("0x{vendor:04x}\n"));
        self.file(&format!("{dir}/subsystem_device"), "0x0001\n");
        self.file(&format!("{dir}/revision"), "0xa1\n");
        if let Some(driver) = driver {
            self.link(&format!("{dir}/driver"), &format!("../../../bus/pci/drivers/{driver}"));
        }
        self.link(&format!("sys/bus/pci/devices/{address}"), &format!("../../../devices/pci0000:00/{address}"));
        dir
    }
}

/// A raw SMBIOS type 17 (memory device) structure.
fn smbios_dimm(size_mib: u32, locator: &str) -> Vec<u8> {
    let mut raw = vec![0u8; 0x28];
    raw[0] = 17;
    raw[1] = 0x28;
    if size_mib >= 0x7FFF {
        raw[0x0C..0x0E].copy_from_slice(&0x7FFFu16.to_le_bytes());
        raw[0x1C..0x20].copy_from_slice(&size_mib.to_le_bytes());
    } else {
        raw[0x0C..0x0E].copy_from_slice(&u16::try_from(size_mib).expect("small").to_le_bytes());
    }
    raw[0x10] = 1;
    raw[0x12] = 0x22;
    raw.extend_from_slice(locator.as_bytes());
    raw.extend_from_slice(b"\0\0");
    raw
}

/// A two-socket node with an H100, an Alveo U200 FPGA (two functions), a
/// 25 GbE NIC, an NVMe disk, DMI, and the virtual things the agent must
/// leave out (loopback, a bond, loop and zram devices, a BMC VGA).
fn fake_node() -> Tree {
    let t = Tree::new();

    // CPU: 2 sockets × 2 cores × 2 threads.
    let mut cpuinfo = String::new();
    for (n, (package, core)) in [(0, 0), (0, 1), (1, 0), (1, 1), (0, 0), (0, 1), (1, 0), (1, 1)].iter().enumerate() {
        cpuinfo.push_str(&format!(
            "processor\t: {n}\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6126 CPU @ 2.60GHz\n\
             cpu MHz\t\t: 1000.000\nphysical id\t: {package}\ncore id\t\t: {core}\nflags\t\t: fpu ht\n\n"
        ));
    }
    t.file("proc/cpuinfo", cpuinfo);
    for (index, level, kind, size) in
        [(0, 1, "Data", "32K"), (1, 1, "Instruction", "32K"), (2, 2, "Unified", "1024K"), (3, 3, "Unified", "19712K")]
    {
        let dir = format!("sys/devices/system/cpu/cpu0/cache/index{index}");
        t.file(&format!("{dir}/level"), format!("{level}\n"));
        t.file(&format!("{dir}/type"), format!("{kind}\n"));
        t.file(&format!("{dir}/size"), format!("{size}\n"));
    }

    // Memory: 4 × 64 GiB DIMMs and an empty slot; the kernel sees less.
    t.file("proc/meminfo", "MemTotal:       263597176 kB\nMemFree:        260000000 kB\n");
    for (n, locator) in ["A1", "A2", "B1", "B2"].iter().enumerate() {
        t.file(&format!("sys/firmware/dmi/entries/17-{n}/raw"), smbios_dimm(65536, locator));
    }
    t.file("sys/firmware/dmi/entries/17-4/raw", smbios_dimm(0, "B3"));

    // DMI.
    for (name, value) in [
        ("bios_vendor", "Dell Inc."),
        ("bios_version", "2.22.2"),
        ("bios_date", "09/12/2024"),
        ("sys_vendor", "Dell Inc."),
        ("product_name", "PowerEdge XE9680"),
        ("product_serial", "43ZLYQ2"),
    ] {
        t.file(&format!("sys/class/dmi/id/{name}"), format!("{value}\n"));
    }

    // PCI.
    t.pci("0000:00:00.0", 0x8086, 0x09a2, 0x060000, None);
    t.pci("0000:03:00.0", 0x1a03, 0x2000, 0x030000, Some("ast"));
    t.pci("0000:18:00.0", 0x10de, 0x2330, 0x030200, Some("nvidia"));
    t.pci("0000:3b:00.0", 0x10ee, 0x5000, 0x058000, Some("xclmgmt"));
    t.pci("0000:3b:00.1", 0x10ee, 0x5001, 0x058000, Some("xocl"));
    let nic = t.pci("0000:5e:00.0", 0x8086, 0x158b, 0x020000, Some("i40e"));
    t.file(&format!("{nic}/sriov_totalvfs"), "64\n");
    let nvme = t.pci("0000:c3:00.0", 0x144d, 0xa80a, 0x010802, Some("nvme"));

    // NICs: a physical one, and virtual ones without a device link.
    t.file(&format!("{nic}/net/eth0/address"), "3C:FD:FE:C1:60:30\n");
    t.file(&format!("{nic}/net/eth0/type"), "1\n");
    t.file(&format!("{nic}/net/eth0/speed"), "25000\n");
    t.link(&format!("{nic}/net/eth0/device"), "../../../0000:5e:00.0");
    t.link("sys/class/net/eth0", "../../devices/pci0000:00/0000:5e:00.0/net/eth0");
    for name in ["lo", "bond0"] {
        t.file(&format!("sys/devices/virtual/net/{name}/address"), "00:00:00:00:00:00\n");
        t.link(&format!("sys/class/net/{name}"), &format!("../../devices/virtual/net/{name}"));
    }

    // Disks: an NVMe namespace under its controller; loop and zram devices.
    t.file(&format!("{nvme}/nvme/nvme0/model"), "Dell Ent NVMe v2 AGN MU U.2 1.6TB          \n");
    t.file(&format!("{nvme}/nvme/nvme0/serial"), "S6CRNA0R123456\n");
    t.file(&format!("{nvme}/nvme/nvme0/firmware_rev"), "2.1.0\n");
    t.file(&format!("{nvme}/nvme/nvme0/nvme0n1/size"), "3125627568\n");
    t.file(&format!("{nvme}/nvme/nvme0/nvme0n1/queue/rotational"), "0\n");
    t.link(&format!("{nvme}/nvme/nvme0/nvme0n1/device"), "../../nvme0");
    t.link("sys/block/nvme0n1", "../devices/pci0000:00/0000:c3:00.0/nvme/nvme0/nvme0n1");
    for name in ["loop0", "zram0"] {
        t.file(&format!("sys/devices/virtual/block/{name}/size"), "2048\n");
        t.link(&format!("sys/block/{name}"), &format!("../devices/virtual/block/{name}"));
    }
    t.link("dev/disk/by-id/nvme-Dell_Ent_NVMe_v2_AGN_MU_U.2_1.6TB_S6CRNA0R123456", "../../nvme0n1");
    t.link("dev/disk/by-id/nvme-eui.36435430527023640025384100000003", "../../nvme0n1");
    t.link("dev/disk/by-id/nvme-eui.36435430527023640025384100000003-part1", "../../nvme0n1p1");
    t.link("dev/disk/by-path/pci-0000:c3:00.0-nvme-1", "../../nvme0n1");
    t
}

/// The report as JSON with `agent_version` redacted, for snapshots.
fn redacted(report: &InventoryReport) -> Value {
    let mut value = serde_json::to_value(report).expect("serialises");
    value["agent_version"] = Value::from("[agent_version]");
    value
}

#[test]
fn fake_node_report() {
    let tree = fake_node();
    let report = inventory(&["--root", &tree.root_arg()]);

    // The facts that matter, stated; the snapshot pins the whole shape.
    assert_eq!(
        report.architecture,
        Architecture {
            nb_procs: Some(2),
            nb_cores: Some(4),
            nb_threads: Some(8),
            platform_type: report.architecture.platform_type.clone()
        }
    );
    assert_eq!(report.processor.clock_speed, Some(2_600_000_000));
    assert_eq!(report.main_memory.ram_size, Some(256 << 30));
    assert_eq!(report.main_memory.ram_size_source, Some(MemorySource::Smbios));
    assert_eq!(report.gpu_devices.len(), 1, "the ASPEED VGA is not a GPU");
    assert_eq!(report.gpu_devices["nvidia0"].model.as_deref(), Some("H100 SXM5 80GB"));
    assert_eq!(report.other_devices.len(), 1, "two functions, one FPGA");
    assert_eq!(report.other_devices["fpga0"].kind, "fpga");
    assert_eq!(report.network_adapters.len(), 1);
    assert_eq!(report.network_adapters[0].mac.as_deref(), Some("3c:fd:fe:c1:60:30"));
    assert_eq!(report.network_adapters[0].rate, Some(25_000_000_000));
    assert_eq!(report.storage_devices.len(), 1);
    assert_eq!(report.storage_devices[0].size, Some(1_600_321_314_816));
    assert_eq!(report.storage_devices[0].by_id.as_deref(), Some("/dev/disk/by-id/nvme-eui.36435430527023640025384100000003"));
    assert_eq!(report.pci_devices.len(), 7);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);

    insta::assert_json_snapshot!("fake_node_report", redacted(&report));
}

#[test]
fn an_empty_root_gives_an_empty_report_not_a_failure() {
    let tree = Tree::new();
    let report = inventory(&["--root", &tree.root_arg()]);
    assert_eq!(report.processor.other_description, None);
    assert_eq!(report.architecture.nb_threads, None);
    assert_eq!(report.main_memory, MainMemory::default());
    assert!(report.storage_devices.is_empty() && report.network_adapters.is_empty() && report.pci_devices.is_empty());
    assert!(report.gpu_devices.is_empty() && report.bios.is_none() && report.chassis.is_none());
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn a_missing_root_fails_with_its_name() {
    let output = agent(&["inventory", "--root", "/nonexistent/ferrum-root"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/ferrum-root"), "{stderr}");
}

/// A pci.ids naming the H100 differently, so the source of names shows.
fn pci_ids_text(version: &str) -> String {
    format!("#\tVersion: {version}\n#\tDate:    whenever\n10de  NVIDIA Corporation\n\t2330  GH100 [H100 from the file]\n")
}

#[test]
fn pci_ids_given_on_the_command_line_names_first() {
    let tree = fake_node();
    let file = tree.root().join("custom.ids");
    std::fs::write(&file, pci_ids_text("2020.01.01")).expect("write");
    let report = inventory(&["--root", &tree.root_arg(), "--pci-ids", &file.display().to_string()]);
    assert_eq!(report.gpu_devices["nvidia0"].model.as_deref(), Some("H100 from the file"), "asked for, so used even though older");
    assert_eq!(
        report.pci_ids_source,
        PciIdsSource { origin: PciIdsOrigin::File, path: Some(file.display().to_string()), version: Some("2020.01.01".into()) }
    );
    // Names the file lacks still come from the embedded database.
    let fpga = report.pci_devices.iter().find(|d| d.address == "0000:3b:00.0").expect("fpga");
    assert_eq!(fpga.device_name.as_deref(), Some("Alveo U200 XDMA Platform"));
}

#[test]
fn a_bad_pci_ids_on_the_command_line_fails() {
    let tree = fake_node();
    let file = tree.root().join("junk.ids");
    std::fs::write(&file, "<html>404</html>\n").expect("write");
    let output = agent(&["inventory", "--root", &tree.root_arg(), "--pci-ids", &file.display().to_string()]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a pci.ids file"));
}

#[test]
fn the_nodes_pci_ids_is_used_only_when_newer_than_the_embedded_one() {
    let tree = fake_node();
    tree.file("usr/share/misc/pci.ids", pci_ids_text("2023.04.10"));
    let report = inventory(&["--root", &tree.root_arg()]);
    assert_eq!(report.pci_ids_source.origin, PciIdsOrigin::Embedded);
    assert_eq!(report.gpu_devices["nvidia0"].model.as_deref(), Some("H100 SXM5 80GB"));

    tree.file("usr/share/hwdata/pci.ids", pci_ids_text("2099.12.31"));
    let report = inventory(&["--root", &tree.root_arg()]);
    assert_eq!(report.pci_ids_source.origin, PciIdsOrigin::File);
    assert_eq!(report.pci_ids_source.path.as_deref(), Some("/usr/share/hwdata/pci.ids"));
    assert_eq!(report.pci_ids_source.version.as_deref(), Some("2099.12.31"));
    assert_eq!(report.gpu_devices["nvidia0"].model.as_deref(), Some("H100 from the file"));
}

// ---------------------------------------------------------------------------
// The check against the Grid'5000 reference
// ---------------------------------------------------------------------------

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/g5k-reference")
}

/// Every node description of the fixtures, in path order.
fn reference_nodes() -> Vec<(PathBuf, Value)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("fixtures readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.parent().and_then(Path::file_name).is_some_and(|n| n == "nodes") {
                out.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    walk(&fixtures(), &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let value = serde_json::from_slice(&std::fs::read(&p).expect("read")).expect("JSON");
            (p, value)
        })
        .collect()
}

fn gpu_reference() -> Value {
    reference_nodes().into_iter().map(|(_, v)| v).find(|v| v.get("gpu_devices").is_some()).expect("a GPU node in the fixtures")
}

fn fpga_reference() -> Value {
    reference_nodes().into_iter().map(|(_, v)| v).find(|v| v.get("other_devices").is_some()).expect("an FPGA node in the fixtures")
}

/// The pci.ids name of the GPU models of the fixtures, from the embedded
/// database (`GP100GL [Tesla P100 PCIe 16GB]` → `Tesla P100 PCIe 16GB`).
fn pci_ids_gpu_model(reference_model: &str) -> (u16, String) {
    let id = match reference_model {
        "Tesla P100-PCIE-16GB" => 0x15f8,
        "Tesla V100-PCIE-32GB" => 0x1db6,
        other => panic!("no PCI id known for {other}"),
    };
    let name = pci_ids::Device::from_vid_pid(0x10de, id).expect("in pci.ids").name();
    let inner = name.split_once('[').and_then(|(_, rest)| rest.rsplit_once(']')).map(|(inner, _)| inner).unwrap_or(name);
    (id, inner.to_string())
}

/// A report the node described by `reference` would send: the reference's
/// facts in the agent's spellings (pci.ids GPU names, kernel disk names, a
/// little less RAM than installed, disks listed in another order, one
/// without a by-id link as in a ramdisk without udev).
fn matching_report(reference: &Value) -> InventoryReport {
    let text = |v: &Value| v.as_str().map(str::to_string);
    let number = |v: &Value| v.as_u64();
    let mut gpu_devices = BTreeMap::new();
    if let Some(gpus) = reference["gpu_devices"].as_object() {
        for (n, gpu) in gpus.values().enumerate() {
            let (device_id, model) = pci_ids_gpu_model(gpu["model"].as_str().expect("model"));
            gpu_devices.insert(
                format!("nvidia{n}"),
                GpuDevice {
                    model: Some(model),
                    vendor: "Nvidia".into(),
                    pci_address: format!("0000:{:02x}:00.0", 0x3b + n),
                    vendor_id: "10de".into(),
                    device_id: format!("{device_id:04x}"),
                },
            );
        }
    }
    let mut storage_devices: Vec<StorageDevice> = reference["storage_devices"]
        .as_array()
        .map(|disks| {
            disks
                .iter()
                .enumerate()
                .map(|(n, d)| StorageDevice {
                    id: format!("disk{n}"),
                    device: format!("sd{}", char::from(b'a' + u8::try_from(n).expect("few disks"))),
                    size: number(&d["size"]),
                    model: text(&d["model"]),
                    by_id: if n == 0 { None } else { text(&d["by_id"]) },
                    ..StorageDevice::default()
                })
                .collect()
        })
        .unwrap_or_default();
    storage_devices.reverse();
    let network_adapters = reference["network_adapters"]
        .as_array()
        .map(|nics| {
            nics.iter()
                .filter(|a| a["management"] != Value::Bool(true) && !a["interface"].as_str().unwrap_or("").starts_with("FPGA"))
                .map(|a| NetworkAdapter {
                    device: text(&a["name"]).or_else(|| text(&a["device"])).expect("a name"),
                    mac: text(&a["mac"]),
                    driver: text(&a["driver"]),
                    rate: number(&a["rate"]),
                    ..NetworkAdapter::default()
                })
                .collect()
        })
        .unwrap_or_default();
    let ram = number(&reference["main_memory"]["ram_size"]).expect("ram_size");
    InventoryReport {
        schema_version: 1,
        agent_version: "test".into(),
        processor: Processor {
            model: text(&reference["processor"]["model"]),
            vendor: text(&reference["processor"]["vendor"]),
            other_description: text(&reference["processor"]["other_description"]),
            clock_speed: number(&reference["processor"]["clock_speed"]),
            ..Processor::default()
        },
        architecture: Architecture {
            nb_procs: number(&reference["architecture"]["nb_procs"]).map(|n| u32::try_from(n).expect("small")),
            nb_cores: number(&reference["architecture"]["nb_cores"]).map(|n| u32::try_from(n).expect("small")),
            nb_threads: number(&reference["architecture"]["nb_threads"]).map(|n| u32::try_from(n).expect("small")),
            platform_type: Some("x86_64".into()),
        },
        main_memory: MainMemory { ram_size: Some(ram / 100 * 97), ram_size_source: Some(MemorySource::MemoryBlocks), mem_total: None },
        memory_devices: Vec::new(),
        storage_devices,
        network_adapters,
        gpu_devices,
        other_devices: BTreeMap::new(),
        bios: None,
        chassis: None,
        pci_devices: Vec::new(),
        pci_ids_source: PciIdsSource { origin: PciIdsOrigin::Embedded, path: None, version: None },
        warnings: Vec::new(),
    }
}

fn check(reference: &Value, report: &InventoryReport) -> Vec<ferrum_api::inventory::Difference> {
    compare(reference, report, &Tolerances::default())
}

#[test]
fn every_fixture_node_matches_a_report_made_from_it() {
    let nodes = reference_nodes();
    assert_eq!(nodes.len(), 10);
    for (path, reference) in nodes {
        let differences = check(&reference, &matching_report(&reference));
        assert!(differences.is_empty(), "{}: {differences:#?}", path.display());
    }
}

#[test]
fn a_missing_gpu_is_one_difference_naming_the_model() {
    let reference = gpu_reference();
    let mut report = matching_report(&reference);
    report.gpu_devices.remove("nvidia1");
    let differences = check(&reference, &report);
    assert_eq!(differences.len(), 1, "{differences:#?}");
    let d = &differences[0];
    assert_eq!(d.field, "gpu_devices.count");
    assert_eq!((d.expected.clone(), d.found.clone()), (Value::from(2), Value::from(1)));
    assert!(d.message.starts_with("reference says 2 GPUs Tesla P100-PCIE-16GB, agent found 1"), "{}", d.message);
}

#[test]
fn an_extra_gpu_is_a_difference() {
    let reference = gpu_reference();
    let mut report = matching_report(&reference);
    let extra = report.gpu_devices["nvidia0"].clone();
    report.gpu_devices.insert("nvidia2".into(), extra);
    let differences = check(&reference, &report);
    assert_eq!(differences.len(), 1, "{differences:#?}");
    assert_eq!(differences[0].field, "gpu_devices.count");
    assert_eq!(differences[0].found, Value::from(3));

    // A node the reference describes without GPUs has none.
    let fpga_node = fpga_reference();
    let mut report = matching_report(&fpga_node);
    report.gpu_devices.insert("nvidia0".into(), extra_gpu());
    let differences = check(&fpga_node, &report);
    assert_eq!(differences.len(), 1, "{differences:#?}");
    assert_eq!((differences[0].field.as_str(), differences[0].expected.clone()), ("gpu_devices.count", Value::from(0)));
    assert!(differences[0].message.contains("H100 SXM5 80GB"), "{}", differences[0].message);
}

fn extra_gpu() -> GpuDevice {
    GpuDevice {
        model: Some("H100 SXM5 80GB".into()),
        vendor: "Nvidia".into(),
        pci_address: "0000:18:00.0".into(),
        vendor_id: "10de".into(),
        device_id: "2330".into(),
    }
}

#[test]
fn a_gpu_of_another_model_is_a_model_difference() {
    let reference = gpu_reference();
    let mut report = matching_report(&reference);
    let (_, v100) = pci_ids_gpu_model("Tesla V100-PCIE-32GB");
    report.gpu_devices.get_mut("nvidia1").expect("nvidia1").model = Some(v100);
    let differences = check(&reference, &report);
    assert_eq!(differences.len(), 1, "{differences:#?}");
    assert_eq!(differences[0].field, "gpu_devices[nvidia1].model");
    assert_eq!(differences[0].expected, Value::from("Tesla P100-PCIE-16GB"));
    assert_eq!(differences[0].found, Value::from("Tesla V100 PCIe 32GB"));
}

#[test]
fn half_the_memory_is_a_difference_with_both_numbers() {
    let reference = gpu_reference();
    let ram = reference["main_memory"]["ram_size"].as_u64().expect("ram_size");
    let mut report = matching_report(&reference);
    report.main_memory.ram_size = Some(ram / 2);
    let differences = check(&reference, &report);
    assert_eq!(differences.len(), 1, "{differences:#?}");
    let d = &differences[0];
    assert_eq!(d.field, "main_memory.ram_size");
    assert_eq!((d.expected.clone(), d.found.clone()), (Value::from(ram), Value::from(ram / 2)));
    assert!(d.message.contains(&ram.to_string()) && d.message.contains(&(ram / 2).to_string()), "{}", d.message);

    // Within 5% either way is the same memory.
    for ram_size in [ram / 100 * 96, ram / 100 * 104] {
        report.main_memory.ram_size = Some(ram_size);
        assert!(check(&reference, &report).is_empty(), "{ram_size}");
    }
    report.main_memory.ram_size = Some(ram / 100 * 106);
    assert_eq!(check(&reference, &report).len(), 1);
}

#[test]
fn a_changed_mac_is_a_difference() {
    let reference = gpu_reference();
    let mut report = matching_report(&reference);
    let eth0 = reference["network_adapters"][0]["mac"].as_str().expect("mac").to_string();
    let adapter = report.network_adapters.iter_mut().find(|a| a.mac.as_deref() == Some(eth0.as_str())).expect("eth0");
    adapter.mac = Some("02:00:00:00:00:01".into());
    let differences = check(&reference, &report);
    assert_eq!(differences.len(), 1, "{differences:#?}");
    assert_eq!(differences[0].field, "network_adapters[eth0].mac");
    assert_eq!(differences[0].expected, Value::from(eth0));
    assert!(differences[0].message.contains("02:00:00:00:00:01"), "{}", differences[0].message);
}

#[test]
fn bmc_fpga_and_disabled_adapters_are_not_required() {
    // servan: a BMC, two FPGA ports and a disabled eth3 in the reference.
    let reference = fpga_reference();
    let mut report = matching_report(&reference);
    report.network_adapters.retain(|a| a.device != "eno36");
    assert!(check(&reference, &report).is_empty());
    report.network_adapters.retain(|a| a.device != "eno33");
    let differences = check(&reference, &report);
    assert_eq!(differences.iter().map(|d| d.field.as_str()).collect::<Vec<_>>(), ["network_adapters[eth0].mac"]);
}

#[test]
fn disks_are_counted_and_sized() {
    let reference = gpu_reference();
    let mut report = matching_report(&reference);
    let removed = report.storage_devices.remove(0);
    let differences = check(&reference, &report);
    assert_eq!(differences.len(), 1, "{differences:#?}");
    assert_eq!(differences[0].field, "storage_devices.count");
    assert!(differences[0].message.contains("reference says 6 disks, agent found 5"), "{}", differences[0].message);

    // Same count, one disk a tenth smaller: a size difference for it.
    report.storage_devices.insert(0, StorageDevice { size: removed.size.map(|s| s / 10 * 9), ..removed });
    let differences = check(&reference, &report);
    assert_eq!(differences.len(), 1, "{differences:#?}");
    assert!(
        differences[0].field.starts_with("storage_devices[disk") && differences[0].field.ends_with("].size"),
        "{}",
        differences[0].field
    );
}

#[test]
fn cpu_model_and_cores_are_checked() {
    let reference = gpu_reference();
    let mut report = matching_report(&reference);
    report.processor.other_description = Some("AMD EPYC 7352 24-Core Processor".into());
    report.architecture.nb_cores = Some(48);
    let fields: Vec<String> = check(&reference, &report).into_iter().map(|d| d.field).collect();
    assert_eq!(fields, ["processor.other_description", "architecture.nb_cores"]);
}

#[test]
fn facts_missing_from_the_reference_are_not_differences() {
    let reference = serde_json::json!({ "uid": "bare", "gpu_devices": {} });
    let report = inventory(&["--root", &fake_node().root_arg()]);
    let differences = check(&reference, &report);
    // Only the GPU the reference explicitly denies.
    assert_eq!(differences.iter().map(|d| d.field.as_str()).collect::<Vec<_>>(), ["gpu_devices.count"]);
}
