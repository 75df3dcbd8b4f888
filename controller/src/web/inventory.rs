//! A node's reference description beside its agent's report, as the node
//! page shows them, pure: grouped facts (processor, memory, GPUs, other
//! devices, disks, network, chassis and firmware), each with the
//! reference's value, the reported one, and whether the check
//! (`ferrum-check`, answered by the API as `differences`) found them to
//! differ.
//!
//! Takes the API's view (`ferrum_api::NodeInventory`, already shaped by
//! `http::views`: no BMC for non-admins) and decides nothing about what
//! differs: a row is marked only where the check's answer names its field.

use ferrum_api as api;
use ferrum_api::inventory::{Difference, InventoryReport};
use serde_json::Value;

use crate::reference::natural_cmp;

/// How a row stands against the check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// The check compares this fact, both sides have it, and the check
    /// found no difference.
    Agrees,
    /// The check found a difference (its message is in the page's list).
    Differs,
    /// The check does not compare this fact, or one side is missing.
    NotChecked,
}

impl Check {
    /// In words, with a symbol: the page never says it by colour alone.
    pub fn words(self) -> &'static str {
        match self {
            Check::Agrees => "✓ agrees",
            Check::Differs => "✗ differs",
            Check::NotChecked => "not checked",
        }
    }

    /// The CSS class of its row.
    pub fn class(self) -> &'static str {
        match self {
            Check::Agrees => "agrees",
            Check::Differs => "differs",
            Check::NotChecked => "unchecked",
        }
    }
}

/// One fact of a node.
#[derive(Debug)]
pub struct FactRow {
    pub fact: String,
    pub reference: String,
    pub reported: String,
    pub check: Check,
}

/// A group of facts under a heading.
#[derive(Debug)]
pub struct FactGroup {
    pub title: &'static str,
    pub rows: Vec<FactRow>,
}

/// What a side does not say.
const ABSENT: &str = "—";

fn s(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(t) if !t.trim().is_empty() => Some(t.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "yes" } else { "no" }.into()),
        _ => None,
    }
}

fn u(v: Option<&Value>) -> Option<u64> {
    v.and_then(Value::as_u64)
}

/// Bytes in binary units: `192 GiB`, `447.1 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 { format!("{value:.0} {}", UNITS[unit]) } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// Bits per second: `25 Gbit/s`.
fn rate(bps: u64) -> String {
    if bps >= 1_000_000_000 { format!("{} Gbit/s", bps as f64 / 1e9) } else { format!("{} Mbit/s", bps as f64 / 1e6) }
}

/// Texts joined by `, `, the absent ones left out.
fn join(parts: &[Option<String>]) -> Option<String> {
    let kept: Vec<&str> = parts.iter().flatten().map(String::as_str).filter(|p| !p.is_empty()).collect();
    if kept.is_empty() { None } else { Some(kept.join(", ")) }
}

/// The rows' builder: which fields the check names, whether both sides are
/// there to compare.
struct Rows<'a> {
    differences: &'a [Difference],
    /// Whether the check ran (both sides exist).
    checked: bool,
}

impl Rows<'_> {
    /// A row; `field` is the check's name of the fact (`None`: a fact the
    /// check does not compare).
    fn row(&self, fact: impl Into<String>, reference: Option<String>, reported: Option<String>, field: Option<&str>) -> FactRow {
        let check = match field {
            Some(f) if self.differences.iter().any(|d| d.field == f) => Check::Differs,
            Some(_) if self.checked && reference.is_some() && reported.is_some() => Check::Agrees,
            _ => Check::NotChecked,
        };
        FactRow {
            fact: fact.into(),
            reference: reference.unwrap_or_else(|| ABSENT.into()),
            reported: reported.unwrap_or_else(|| ABSENT.into()),
            check,
        }
    }
}

/// The processor's model as the check reads it: `other_description`, else
/// `model version`.
fn reference_cpu(r: &Value) -> (Option<String>, &'static str) {
    match s(r.pointer("/processor/other_description")) {
        Some(d) => (Some(d), "processor.other_description"),
        None => {
            (join(&[s(r.pointer("/processor/model")), s(r.pointer("/processor/version"))]).map(|j| j.replace(", ", " ")), "processor.model")
        }
    }
}

fn reported_cpu(p: &api::inventory::Processor) -> Option<String> {
    p.other_description.clone().or_else(|| match (&p.model, &p.version) {
        (Some(m), Some(v)) => Some(format!("{m} {v}")),
        (Some(m), None) => Some(m.clone()),
        _ => None,
    })
}

/// The groups of facts of a node: its reference (`null` for none) beside
/// its report (`None`: no agent reported yet) and the check's differences.
pub fn groups(reference: Option<&Value>, report: Option<&InventoryReport>, differences: &[Difference]) -> Vec<FactGroup> {
    let empty = Value::Null;
    let r = reference.unwrap_or(&empty);
    let rows = Rows { differences, checked: reference.is_some() && report.is_some() };
    let rep = report;
    let mut out = Vec::new();

    // Processor.
    let (cpu, cpu_field) = reference_cpu(r);
    let arch = |name: &str| u(r.pointer(&format!("/architecture/{name}"))).map(|n| n.to_string());
    let rep_arch = |pick: fn(&api::inventory::Architecture) -> Option<u32>| rep.and_then(|x| pick(&x.architecture)).map(|n| n.to_string());
    out.push(FactGroup {
        title: "Processor",
        rows: vec![
            rows.row("Model", cpu, rep.and_then(|x| reported_cpu(&x.processor)), Some(cpu_field)),
            rows.row("Microarchitecture", s(r.pointer("/processor/microarchitecture")), None, None),
            rows.row("CPUs (sockets)", arch("nb_procs"), rep_arch(|a| a.nb_procs), Some("architecture.nb_procs")),
            rows.row("Cores", arch("nb_cores"), rep_arch(|a| a.nb_cores), Some("architecture.nb_cores")),
            rows.row("Threads", arch("nb_threads"), rep_arch(|a| a.nb_threads), None),
            rows.row(
                "Clock speed",
                u(r.pointer("/processor/clock_speed")).map(|hz| format!("{} GHz", hz as f64 / 1e9)),
                rep.and_then(|x| x.processor.clock_speed).map(|hz| format!("{} GHz", hz as f64 / 1e9)),
                None,
            ),
            rows.row(
                "Architecture",
                s(r.pointer("/architecture/platform_type")),
                rep.and_then(|x| x.architecture.platform_type.clone()),
                None,
            ),
        ],
    });

    // Memory.
    out.push(FactGroup {
        title: "Memory",
        rows: vec![rows.row(
            "RAM",
            u(r.pointer("/main_memory/ram_size")).map(bytes),
            rep.and_then(|x| x.main_memory.ram_size).map(bytes),
            Some("main_memory.ram_size"),
        )],
    });

    // GPUs: the count, then each device by its key.
    let ref_gpus = r.get("gpu_devices").and_then(Value::as_object);
    let ref_gpu_count = if reference.is_some() { Some(ref_gpus.map_or(0, |m| m.len()).to_string()) } else { None };
    let mut gpu_rows = vec![rows.row("Count", ref_gpu_count, rep.map(|x| x.gpu_devices.len().to_string()), Some("gpu_devices.count"))];
    let mut keys: Vec<String> = ref_gpus.into_iter().flat_map(|m| m.keys().cloned()).collect();
    keys.extend(rep.into_iter().flat_map(|x| x.gpu_devices.keys().cloned()).filter(|k| ref_gpus.is_none_or(|m| !m.contains_key(k))));
    keys.sort_by(|a, b| natural_cmp(a, b));
    for key in keys {
        let g = ref_gpus.and_then(|m| m.get(&key));
        let reference = g.and_then(|g| join(&[s(g.get("model")), u(g.get("memory")).map(bytes)]));
        let reported = rep
            .and_then(|x| x.gpu_devices.get(&key))
            .map(|d| join(&[d.model.clone(), Some(format!("{} at {}", d.vendor, d.pci_address))]).unwrap_or_else(|| d.pci_address.clone()));
        let field = format!("gpu_devices[{key}].model");
        gpu_rows.push(rows.row(key, reference, reported, Some(&field)));
    }
    out.push(FactGroup { title: "GPUs", rows: gpu_rows });

    // Other devices (FPGAs, accelerators): not compared by the check.
    let ref_other = r.get("other_devices").and_then(Value::as_object);
    let mut keys: Vec<String> = ref_other.into_iter().flat_map(|m| m.keys().cloned()).collect();
    keys.extend(rep.into_iter().flat_map(|x| x.other_devices.keys().cloned()).filter(|k| ref_other.is_none_or(|m| !m.contains_key(k))));
    keys.sort_by(|a, b| natural_cmp(a, b));
    let other_rows: Vec<FactRow> = keys
        .into_iter()
        .map(|key| {
            let d = ref_other.and_then(|m| m.get(&key));
            let reference = d.and_then(|d| {
                let what = join(&[s(d.get("vendor")), s(d.get("model"))]).map(|j| j.replace(", ", " "));
                join(&[u(d.get("count")).map(|n| format!("{n} ×")), what, s(d.get("type")).map(|t| format!("({t})"))])
                    .map(|j| j.replace(", ", " "))
            });
            let reported = rep
                .and_then(|x| x.other_devices.get(&key))
                .map(|o| format!("{} × {} {} ({})", o.count, o.vendor, o.model.as_deref().unwrap_or("unnamed device"), o.kind));
            rows.row(key, reference, reported, None)
        })
        .collect();
    if !other_rows.is_empty() {
        out.push(FactGroup { title: "FPGAs and other devices", rows: other_rows });
    }

    // Disks: the count, then each reference disk beside the reported one
    // with its by-id link, else its id.
    let ref_disks: &[Value] = r.get("storage_devices").and_then(Value::as_array).map_or(&[], Vec::as_slice);
    let rep_disks: &[api::inventory::StorageDevice] = rep.map_or(&[], |x| x.storage_devices.as_slice());
    let mut disk_rows = vec![rows.row(
        "Count",
        reference.is_some().then(|| ref_disks.len().to_string()),
        rep.map(|_| rep_disks.len().to_string()),
        Some("storage_devices.count"),
    )];
    // Paired as the check pairs them (by by-id link, then by size), so a
    // row marked as agreeing shows the disk the check compared.
    let pairs = ferrum_check::disk_pairs(ref_disks, rep_disks, &ferrum_check::Tolerances::default());
    let mut used = vec![false; rep_disks.len()];
    for (i, d) in ref_disks.iter().enumerate() {
        let id = s(d.get("id")).or_else(|| s(d.get("device"))).unwrap_or_else(|| format!("#{i}"));
        let pick = pairs.get(i).copied().flatten();
        if let Some(j) = pick {
            used[j] = true;
        }
        let reference = join(&[
            u(d.get("size")).map(bytes),
            s(d.get("storage")),
            s(d.get("interface")),
            join(&[s(d.get("vendor")), s(d.get("model"))]).map(|j| j.replace(", ", " ")),
            d.get("reservation").and_then(Value::as_bool).filter(|r| *r).map(|_| "reservable".to_owned()),
        ]);
        let field = format!("storage_devices[{id}].size");
        disk_rows.push(rows.row(id, reference, pick.map(|j| reported_disk(&rep_disks[j])), Some(&field)));
    }
    for f in rep_disks.iter().zip(&used).filter(|(_, u)| !**u).map(|(f, _)| f) {
        disk_rows.push(rows.row(f.id.clone(), None, Some(reported_disk(f)), None));
    }
    out.push(FactGroup { title: "Disks", rows: disk_rows });

    // Network adapters: each reference adapter beside the reported one
    // with its MAC, else its name.
    let ref_nics: Vec<&Value> = r.get("network_adapters").and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default();
    let rep_nics: &[api::inventory::NetworkAdapter] = rep.map_or(&[], |x| x.network_adapters.as_slice());
    let mac_of = |m: &str| m.trim().to_ascii_lowercase().replace('-', ":");
    let mut used = vec![false; rep_nics.len()];
    let mut nic_rows = Vec::new();
    for (i, a) in ref_nics.iter().enumerate() {
        let device = s(a.get("device")).unwrap_or_else(|| format!("#{i}"));
        let mac = s(a.get("mac")).map(|m| mac_of(&m));
        let name = s(a.get("name"));
        let pick =
            rep_nics.iter().enumerate().position(|(j, f)| !used[j] && mac.is_some() && f.mac.as_deref().map(mac_of) == mac).or_else(|| {
                rep_nics.iter().enumerate().position(|(j, f)| !used[j] && (Some(&f.device) == name.as_ref() || f.device == device))
            });
        if let Some(j) = pick {
            used[j] = true;
        }
        let in_use =
            a.get("enabled").and_then(Value::as_bool).unwrap_or(false) || a.get("mounted").and_then(Value::as_bool).unwrap_or(false);
        let reference = join(&[
            name.clone(),
            mac.clone(),
            u(a.get("rate")).filter(|r| *r > 0).map(rate),
            s(a.get("interface")),
            s(a.get("model")),
            (!in_use).then(|| "not in use".to_owned()),
        ]);
        // The check compares the MACs of adapters in use only (not the
        // management one, nor an FPGA's): the others are not checked.
        let field = ferrum_check::adapter_checked(a).then(|| format!("network_adapters[{device}].mac"));
        nic_rows.push(rows.row(device, reference, pick.map(|j| reported_nic(&rep_nics[j])), field.as_deref()));
    }
    for f in rep_nics.iter().zip(&used).filter(|(_, u)| !**u).map(|(f, _)| f) {
        nic_rows.push(rows.row(f.device.clone(), None, Some(reported_nic(f)), None));
    }
    if !nic_rows.is_empty() {
        out.push(FactGroup { title: "Network adapters", rows: nic_rows });
    }

    // Chassis and firmware.
    let chassis_ref = join(&[s(r.pointer("/chassis/manufacturer")), s(r.pointer("/chassis/name"))]).map(|j| j.replace(", ", " "));
    let chassis_rep =
        rep.and_then(|x| x.chassis.as_ref()).and_then(|c| join(&[c.manufacturer.clone(), c.name.clone()])).map(|j| j.replace(", ", " "));
    let bios_ref = join(&[s(r.pointer("/bios/vendor")), s(r.pointer("/bios/version")), s(r.pointer("/bios/release_date"))]);
    let bios_rep = rep.and_then(|x| x.bios.as_ref()).and_then(|b| join(&[b.vendor.clone(), b.version.clone(), b.release_date.clone()]));
    out.push(FactGroup {
        title: "Chassis and firmware",
        rows: vec![rows.row("Chassis", chassis_ref, chassis_rep, None), rows.row("BIOS", bios_ref, bios_rep, None)],
    });
    out
}

fn reported_disk(f: &api::inventory::StorageDevice) -> String {
    join(&[
        Some(f.device.clone()),
        f.size.map(bytes),
        f.storage.clone(),
        f.interface.clone(),
        join(&[f.vendor.clone(), f.model.clone()]).map(|j| j.replace(", ", " ")),
    ])
    .unwrap_or_else(|| f.device.clone())
}

fn reported_nic(f: &api::inventory::NetworkAdapter) -> String {
    join(&[Some(f.device.clone()), f.mac.clone(), f.rate.filter(|r| *r > 0).map(rate), f.interface.clone(), f.model.clone()])
        .unwrap_or_else(|| f.device.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report() -> InventoryReport {
        serde_json::from_value(json!({
            "schema_version": 1, "agent_version": "test",
            "processor": {"other_description": "Intel(R) Xeon(R) Gold 6126 CPU @ 2.60GHz"},
            "architecture": {"nb_procs": 2, "nb_cores": 24, "nb_threads": 48},
            "main_memory": {"ram_size": 137_438_953_472u64},
            "storage_devices": [{"id": "disk0", "device": "sda", "size": 480_103_981_056u64, "by_id": "/dev/disk/by-id/wwn-1"}],
            "network_adapters": [{"device": "ens5f0", "mac": "3C:FD:FE:C1:70:90", "rate": 25_000_000_000u64}],
            "gpu_devices": {"nvidia0": {"model": "Tesla V100-PCIE-32GB", "vendor": "NVIDIA", "pci_address": "0000:3b:00.0", "vendor_id": "10de", "device_id": "1db6"}},
            "pci_ids_source": {"origin": "embedded"}
        }))
        .expect("a report")
    }

    fn reference() -> Value {
        json!({
            "processor": {"other_description": "Intel(R) Xeon(R) Gold 6126 CPU @ 2.60GHz", "microarchitecture": "Skylake-SP"},
            "architecture": {"nb_procs": 2, "nb_cores": 24, "nb_threads": 48},
            "main_memory": {"ram_size": 206_158_430_208u64},
            "gpu_devices": {"nvidia0": {"model": "Tesla V100-PCIE-32GB", "memory": 34_359_738_368u64},
                            "nvidia1": {"model": "Tesla V100-PCIE-32GB", "memory": 34_359_738_368u64}},
            "storage_devices": [{"id": "disk0", "size": 480_103_981_056u64, "by_id": "/dev/disk/by-id/wwn-1", "storage": "SSD"}],
            "network_adapters": [{"device": "eth0", "name": "ens5f0", "mac": "3c:fd:fe:c1:70:90", "enabled": true, "rate": 25_000_000_000u64}]
        })
    }

    fn find<'a>(groups: &'a [FactGroup], title: &str, fact: &str) -> &'a FactRow {
        let group = groups.iter().find(|g| g.title == title).unwrap_or_else(|| panic!("no group {title}"));
        group.rows.iter().find(|r| r.fact == fact).unwrap_or_else(|| panic!("no row {fact} in {title}: {:?}", group.rows))
    }

    #[test]
    fn rows_the_check_names_differ_and_the_other_checked_ones_agree() {
        let report = report();
        let reference = reference();
        let differences = ferrum_check::compare(&reference, &report, &ferrum_check::Tolerances::default());
        let groups = groups(Some(&reference), Some(&report), &differences);
        let ram = find(&groups, "Memory", "RAM");
        assert_eq!((ram.reference.as_str(), ram.reported.as_str(), ram.check), ("192 GiB", "128 GiB", Check::Differs));
        let gpus = find(&groups, "GPUs", "Count");
        assert_eq!((gpus.reference.as_str(), gpus.reported.as_str(), gpus.check), ("2", "1", Check::Differs));
        let missing = find(&groups, "GPUs", "nvidia1");
        // The check names the count only: the missing one is not marked
        // on its own.
        assert_eq!((missing.reported.as_str(), missing.check), (ABSENT, Check::NotChecked), "{missing:?}");
        assert_eq!(find(&groups, "Processor", "Model").check, Check::Agrees);
        assert_eq!(find(&groups, "Processor", "Microarchitecture").check, Check::NotChecked);
        let disk = find(&groups, "Disks", "disk0");
        assert_eq!((disk.reported.as_str(), disk.check), ("sda, 447.1 GiB", Check::Agrees));
        let nic = find(&groups, "Network adapters", "eth0");
        assert!(nic.reported.starts_with("ens5f0, 3C:FD:FE:C1:70:90"), "matched by MAC: {nic:?}");
        assert_eq!(nic.check, Check::Agrees);
    }

    #[test]
    fn disks_pair_as_the_check_pairs_them_and_unchecked_adapters_say_so() {
        // Two disks without by-id links, reported the other way round: the
        // check pairs them by size (no difference), and so does the page.
        let mut reference = reference();
        reference["storage_devices"] = json!([{"id": "disk0", "size": 480_103_981_056u64}, {"id": "disk1", "size": 4_000_787_030_016u64}]);
        reference["network_adapters"] = json!([
            {"device": "eth0", "name": "ens5f0", "mac": "3c:fd:fe:c1:70:90", "enabled": true},
            {"device": "bmc", "name": "bmc", "mac": "3c:fd:fe:c1:70:99", "enabled": true, "management": true}]);
        let mut report = report();
        report.storage_devices = serde_json::from_value(json!([
            {"id": "disk0", "device": "sda", "size": 4_000_787_030_016u64},
            {"id": "disk1", "device": "sdb", "size": 480_103_981_056u64}]))
        .expect("disks");
        report.network_adapters = serde_json::from_value(
            json!([{"device": "ens5f0", "mac": "3c:fd:fe:c1:70:90"}, {"device": "bmc", "mac": "02:00:00:00:00:01"}]),
        )
        .expect("adapters");
        let differences = ferrum_check::compare(&reference, &report, &ferrum_check::Tolerances::default());
        assert!(!differences.iter().any(|d| d.field.starts_with("storage_devices")), "{differences:?}");
        let groups = groups(Some(&reference), Some(&report), &differences);
        let disk0 = find(&groups, "Disks", "disk0");
        assert_eq!((disk0.reported.as_str(), disk0.check), ("sdb, 447.1 GiB", Check::Agrees), "the disk of the same size");
        let disk1 = find(&groups, "Disks", "disk1");
        assert!(disk1.reported.starts_with("sda, 3.6 TiB"), "{disk1:?}");
        // The management adapter's MAC is not checked: its row says so,
        // never that it agrees.
        let bmc = find(&groups, "Network adapters", "bmc");
        assert_eq!(bmc.check, Check::NotChecked, "{bmc:?}");
        assert_eq!(find(&groups, "Network adapters", "eth0").check, Check::Agrees);
    }

    #[test]
    fn one_side_alone_is_shown_and_not_checked() {
        let reference = reference();
        let groups_ref = groups(Some(&reference), None, &[]);
        let ram = find(&groups_ref, "Memory", "RAM");
        assert_eq!((ram.reported.as_str(), ram.check), (ABSENT, Check::NotChecked));
        let report = report();
        let groups_rep = groups(None, Some(&report), &[]);
        let disk = find(&groups_rep, "Disks", "disk0");
        assert_eq!((disk.reference.as_str(), disk.check), (ABSENT, Check::NotChecked));
        assert_eq!(find(&groups_rep, "GPUs", "Count").reference, ABSENT);
    }

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(bytes(206_158_430_208), "192 GiB");
        assert_eq!(bytes(480_103_981_056), "447.1 GiB");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(rate(25_000_000_000), "25 Gbit/s");
    }
}
