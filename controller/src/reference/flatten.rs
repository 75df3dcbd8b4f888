//! Flattening one node's Reference API JSON into OAR-named properties.
//!
//! Owns the mapping from the Grid'5000 node schema (`architecture`,
//! `processor`, `gpu_devices`, `network_adapters`, ...) to ferrum's
//! properties, the choice of the boot NIC, and the typed reading of JSON
//! fields with errors that name the file and the field. It reads no files
//! (the caller hands it parsed JSON and the path it came from) and never
//! touches the database.

use std::cmp::Ordering;
use std::path::Path;

use serde_json::{Map, Value};

use super::natural::natural_cmp;
use super::{NodeDescription, ReferenceError};
use crate::model::properties::{PropValue, Properties};

/// Bytes per MiB: `memnode` and `gpu_mem` are in MiB, the reference in bytes.
const MIB: i64 = 1024 * 1024;
/// Bits/s per Gbit/s: `eth_rate` and `ib_rate` are in Gbps, the reference in bits/s.
const GBPS: i64 = 1_000_000_000;

/// Flattens `node` (kept whole in the result) as read from `path`.
pub(super) fn flatten_owned(path: &Path, site: &str, cluster: &str, node: Value) -> Result<NodeDescription, ReferenceError> {
    let flat = Flat::read(&Fields { path }, &node)?;
    Ok(NodeDescription {
        properties: flat.properties(site, cluster),
        name: flat.uid,
        site: site.to_owned(),
        cluster: cluster.to_owned(),
        macs: flat.macs,
        ip: flat.ip,
        reference: node,
    })
}

/// Everything the properties are made of, read and checked.
#[derive(Debug, Default)]
struct Flat {
    uid: String,
    cpuarch: String,
    nb_procs: i64,
    nb_cores: i64,
    nb_threads: i64,
    cputype: String,
    cpu_microarch: String,
    ram_bytes: i64,
    gpu_count: i64,
    gpu_model: String,
    gpu_mem_bytes: i64,
    gpu_vendor: String,
    /// `type` and `model` of the first typed entry of `other_devices`.
    other_accel: Option<(String, String)>,
    fpga_count: i64,
    disktype: String,
    disk_count: i64,
    macs: Vec<String>,
    ip: Option<String>,
    eth_rate_bps: i64,
    ib_count: i64,
    ib_rate_bps: i64,
    exotic: bool,
}

impl Flat {
    fn read(f: &Fields<'_>, node: &Value) -> Result<Flat, ReferenceError> {
        let root = match node {
            Value::Object(map) => map,
            other => {
                return Err(f.err("(root)", format!("expected a JSON object, found {}", kind(other))));
            }
        };
        let mut flat = Flat {
            uid: match f.string(root.get("uid"), "uid")? {
                Some(uid) if !uid.is_empty() => uid.to_owned(),
                Some(_) => return Err(f.err("uid", "is empty")),
                None => return Err(f.err("uid", "missing: every node description needs a uid")),
            },
            exotic: f.boolean(root.get("exotic"), "exotic")?.unwrap_or(false),
            ..Flat::default()
        };
        flat.read_cpu(f, root)?;
        flat.read_memory(f, root)?;
        flat.read_gpus(f, root)?;
        flat.read_other_devices(f, root)?;
        flat.read_storage(f, root)?;
        flat.read_network(f, root)?;
        Ok(flat)
    }

    fn read_cpu(&mut self, f: &Fields<'_>, root: &Map<String, Value>) -> Result<(), ReferenceError> {
        let arch = f.object(root.get("architecture"), "architecture")?;
        self.cpuarch = f.string(member(arch, "platform_type"), "architecture.platform_type")?.unwrap_or_default().to_owned();
        self.nb_procs = f.count(member(arch, "nb_procs"), "architecture.nb_procs")?.unwrap_or(0);
        self.nb_cores = f.count(member(arch, "nb_cores"), "architecture.nb_cores")?.unwrap_or(0);
        self.nb_threads = f.count(member(arch, "nb_threads"), "architecture.nb_threads")?.unwrap_or(0);

        let cpu = f.object(root.get("processor"), "processor")?;
        let model = f.string(member(cpu, "model"), "processor.model")?.unwrap_or_default();
        // `version` is a string ("Gold 6126") or a bare number (7352, 1.0).
        let version = f.text(member(cpu, "version"), "processor.version")?.unwrap_or_default();
        self.cputype = join_nonempty(&[model, &version], " ");
        self.cpu_microarch = f.string(member(cpu, "microarchitecture"), "processor.microarchitecture")?.unwrap_or_default().to_owned();
        Ok(())
    }

    fn read_memory(&mut self, f: &Fields<'_>, root: &Map<String, Value>) -> Result<(), ReferenceError> {
        let memory = f.object(root.get("main_memory"), "main_memory")?;
        self.ram_bytes = f.count(member(memory, "ram_size"), "main_memory.ram_size")?.unwrap_or(0);
        Ok(())
    }

    fn read_gpus(&mut self, f: &Fields<'_>, root: &Map<String, Value>) -> Result<(), ReferenceError> {
        let Some(gpus) = f.object(root.get("gpu_devices"), "gpu_devices")? else {
            return Ok(());
        };
        self.gpu_count = saturating_int(gpus.len());
        // "First" by device name, naturally (nvidia2 before nvidia10), so the
        // answer does not depend on the JSON map's iteration order.
        let first = gpus.iter().min_by(|a, b| natural_cmp(a.0, b.0));
        if let Some((name, device)) = first {
            let field = format!("gpu_devices.{name}");
            let device = f.object(Some(device), &field)?;
            self.gpu_model = f.string(member(device, "model"), &format!("{field}.model"))?.unwrap_or_default().to_owned();
            self.gpu_mem_bytes = f.count(member(device, "memory"), &format!("{field}.memory"))?.unwrap_or(0);
            self.gpu_vendor = f.string(member(device, "vendor"), &format!("{field}.vendor"))?.unwrap_or_default().to_owned();
        }
        Ok(())
    }

    fn read_other_devices(&mut self, f: &Fields<'_>, root: &Map<String, Value>) -> Result<(), ReferenceError> {
        let Some(others) = f.object(root.get("other_devices"), "other_devices")? else {
            return Ok(());
        };
        let mut sorted: Vec<(&String, &Value)> = others.iter().collect();
        sorted.sort_by(|a, b| natural_cmp(a.0, b.0));
        for (name, device) in sorted {
            let field = format!("other_devices.{name}");
            let Some(device) = f.object(Some(device), &field)? else {
                continue;
            };
            let kind = f.string(device.get("type"), &format!("{field}.type"))?.unwrap_or_default();
            let model = f.string(device.get("model"), &format!("{field}.model"))?.unwrap_or_default();
            let count = f.count(device.get("count"), &format!("{field}.count"))?.unwrap_or(1);
            if self.other_accel.is_none() && !kind.is_empty() {
                self.other_accel = Some((kind.to_owned(), model.to_owned()));
            }
            if kind.eq_ignore_ascii_case("fpga") {
                self.fpga_count = self.fpga_count.saturating_add(count);
            }
        }
        Ok(())
    }

    fn read_storage(&mut self, f: &Fields<'_>, root: &Map<String, Value>) -> Result<(), ReferenceError> {
        let disks = f.array(root.get("storage_devices"), "storage_devices")?.unwrap_or_default();
        self.disk_count = saturating_int(disks.len());
        // The main disk: the first non-reservable one in `id` order (falling
        // back to a reservable one when every disk is), i.e. `disk0` on every
        // node of the real reference.
        let mut main: Option<(bool, &str, usize, &Map<String, Value>)> = None;
        for (index, disk) in disks.iter().enumerate() {
            let field = format!("storage_devices[{index}]");
            let Some(disk) = f.object(Some(disk), &field)? else {
                continue;
            };
            let reserved = f.boolean(disk.get("reservation"), &format!("{field}.reservation"))?.unwrap_or(false);
            let id = f.string(disk.get("id"), &format!("{field}.id"))?.unwrap_or_default();
            let better = match main {
                None => true,
                Some((main_reserved, main_id, main_index, _)) => {
                    disk_order((reserved, id, index), (main_reserved, main_id, main_index)) == Ordering::Less
                }
            };
            if better {
                main = Some((reserved, id, index, disk));
            }
        }
        if let Some((_, _, index, disk)) = main {
            let field = format!("storage_devices[{index}]");
            let interface = f.string(disk.get("interface"), &format!("{field}.interface"))?.unwrap_or_default();
            let storage = f.string(disk.get("storage"), &format!("{field}.storage"))?.unwrap_or_default();
            // As Grid'5000's OAR property generator writes it: "SATA/SSD", "NVME/SSD".
            self.disktype = join_nonempty(&[interface, storage], "/");
        }
        Ok(())
    }

    fn read_network(&mut self, f: &Fields<'_>, root: &Map<String, Value>) -> Result<(), ReferenceError> {
        let adapters = f.array(root.get("network_adapters"), "network_adapters")?.unwrap_or_default();
        let mut boot_seen = false;
        for (index, adapter) in adapters.iter().enumerate() {
            let field = format!("network_adapters[{index}]");
            let Some(adapter) = f.object(Some(adapter), &field)? else {
                continue;
            };
            let flag = |name: &str| f.boolean(adapter.get(name), &format!("{field}.{name}"));
            let interface = f.string(adapter.get("interface"), &format!("{field}.interface"))?.unwrap_or_default();
            let enabled = flag("enabled")?.unwrap_or(true);
            let mounted = flag("mounted")?.unwrap_or(false);
            let mountable = flag("mountable")?.unwrap_or(false);
            let management = flag("management")?.unwrap_or(false);
            let rate = f.count(adapter.get("rate"), &format!("{field}.rate"))?.unwrap_or(0);

            if interface.eq_ignore_ascii_case("ethernet") && enabled && mounted && !management {
                let mac_field = format!("{field}.mac");
                if let Some(mac) = f.string(adapter.get("mac"), &mac_field)? {
                    let mac = normalize_mac(mac)
                        .ok_or_else(|| f.err(&mac_field, format!("`{mac}` is not a MAC address (expected aa:bb:cc:dd:ee:ff)")))?;
                    self.macs.push(mac);
                }
                if !boot_seen {
                    boot_seen = true;
                    self.ip = f.string(adapter.get("ip"), &format!("{field}.ip"))?.map(str::to_owned);
                    self.eth_rate_bps = rate;
                }
            }
            if interface.eq_ignore_ascii_case("infiniband") && enabled && (mounted || mountable) {
                self.ib_count += 1;
                self.ib_rate_bps = self.ib_rate_bps.max(rate);
            }
        }
        Ok(())
    }

    fn properties(&self, site: &str, cluster: &str) -> Properties {
        let (accel_type, accel_model) = if self.gpu_count > 0 {
            ("gpu", self.gpu_model.as_str())
        } else if let Some((kind, model)) = &self.other_accel {
            (kind.as_str(), model.as_str())
        } else {
            ("", "")
        };
        let entries: [(&str, PropValue); 26] = [
            // The standard set (SPEC §3), OAR names.
            ("site", site.into()),
            ("cluster", cluster.into()),
            ("host", self.uid.as_str().into()),
            ("cpuarch", self.cpuarch.as_str().into()),
            // OAR meaning: cores per CPU (the total is `core_count`).
            ("cpucore", self.nb_cores.checked_div(self.nb_procs).unwrap_or(self.nb_cores).into()),
            ("cputype", self.cputype.as_str().into()),
            ("memnode", (self.ram_bytes / MIB).into()),
            ("gpu_count", self.gpu_count.into()),
            ("gpu_model", self.gpu_model.as_str().into()),
            ("gpu_mem", (self.gpu_mem_bytes / MIB).into()),
            ("accel_type", accel_type.into()),
            ("accel_model", accel_model.into()),
            ("disktype", self.disktype.as_str().into()),
            ("disk_count", self.disk_count.into()),
            ("eth_rate", (self.eth_rate_bps / GBPS).into()),
            ("ib_rate", (self.ib_rate_bps / GBPS).into()),
            ("exotic", self.exotic.into()),
            // Extras.
            ("cpu_count", self.nb_procs.into()),
            ("core_count", self.nb_cores.into()),
            ("thread_count", self.nb_threads.into()),
            ("cpu_microarch", self.cpu_microarch.as_str().into()),
            ("gpu_vendor", self.gpu_vendor.as_str().into()),
            ("fpga_count", self.fpga_count.into()),
            ("ib_count", self.ib_count.into()),
            ("memcore", self.ram_bytes.checked_div(self.nb_cores).map_or(0, |b| b / MIB).into()),
            ("memcpu", self.ram_bytes.checked_div(self.nb_procs).map_or(0, |b| b / MIB).into()),
        ];
        entries.into_iter().map(|(name, value)| (name.to_owned(), value)).collect()
    }
}

/// Orders disks by (reservable, `id` naturally, position in the list).
fn disk_order(a: (bool, &str, usize), b: (bool, &str, usize)) -> Ordering {
    a.0.cmp(&b.0).then_with(|| natural_cmp(a.1, b.1)).then_with(|| a.2.cmp(&b.2))
}

/// Typed access to the fields of one node document. Every error names the
/// file and the field (`network_adapters[2].rate`). Absent fields and JSON
/// `null` read as `None`; a value of the wrong type is an error.
struct Fields<'a> {
    path: &'a Path,
}

impl Fields<'_> {
    fn err(&self, field: &str, message: impl Into<String>) -> ReferenceError {
        ReferenceError::Field { path: self.path.to_owned(), field: field.to_owned(), message: message.into() }
    }

    fn object<'v>(&self, value: Option<&'v Value>, field: &str) -> Result<Option<&'v Map<String, Value>>, ReferenceError> {
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map)),
            Some(other) => Err(self.err(field, format!("expected an object, found {}", kind(other)))),
        }
    }

    fn array<'v>(&self, value: Option<&'v Value>, field: &str) -> Result<Option<&'v [Value]>, ReferenceError> {
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(other) => Err(self.err(field, format!("expected an array, found {}", kind(other)))),
        }
    }

    fn string<'v>(&self, value: Option<&'v Value>, field: &str) -> Result<Option<&'v str>, ReferenceError> {
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.err(field, format!("expected a string, found {}", kind(other)))),
        }
    }

    /// A string, or a number written as JSON writes it (`7352`, `1.0`).
    fn text(&self, value: Option<&Value>, field: &str) -> Result<Option<String>, ReferenceError> {
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(self.err(field, format!("expected a string or a number, found {}", kind(other)))),
        }
    }

    fn boolean(&self, value: Option<&Value>, field: &str) -> Result<Option<bool>, ReferenceError> {
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.err(field, format!("expected true or false, found {}", kind(other)))),
        }
    }

    /// A non-negative integer (bytes, bits/s, counts). A float with no
    /// fractional part (`1.6e12`) is accepted.
    fn count(&self, value: Option<&Value>, field: &str) -> Result<Option<i64>, ReferenceError> {
        let number = match value {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Number(n)) => n,
            Some(other) => {
                return Err(self.err(field, format!("expected a non-negative integer, found {}", kind(other))));
            }
        };
        if let Some(v) = number.as_i64() {
            if v >= 0 {
                return Ok(Some(v));
            }
        } else if number.is_u64() {
            return Err(self.err(field, format!("{number} is too large")));
        } else if let Some(x) = number.as_f64() {
            // 2^63 as f64: every whole float below it converts exactly.
            const LIMIT: f64 = 9_223_372_036_854_775_808.0;
            if x.is_finite() && x.fract() == 0.0 && (0.0..LIMIT).contains(&x) {
                #[allow(clippy::cast_possible_truncation)] // whole and in range, checked above
                return Ok(Some(x as i64));
            }
        }
        Err(self.err(field, format!("expected a non-negative integer, found {number}")))
    }
}

fn member<'v>(object: Option<&'v Map<String, Value>>, key: &str) -> Option<&'v Value> {
    object.and_then(|map| map.get(key))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn join_nonempty(parts: &[&str], separator: &str) -> String {
    parts.iter().map(|part| part.trim()).filter(|part| !part.is_empty()).collect::<Vec<_>>().join(separator)
}

fn saturating_int(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `AA:BB:CC:DD:EE:FF` or `aa-bb-cc-dd-ee-ff` → `aa:bb:cc:dd:ee:ff`.
fn normalize_mac(mac: &str) -> Option<String> {
    let groups: Vec<&str> = mac.trim().split([':', '-']).collect();
    let valid = groups.len() == 6 && groups.iter().all(|g| g.len() == 2 && g.bytes().all(|c| c.is_ascii_hexdigit()));
    valid.then(|| groups.join(":").to_ascii_lowercase())
}
