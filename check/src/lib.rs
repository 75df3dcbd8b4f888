//! The check of a node's hardware against its Grid'5000 reference
//! description (ferrum's g5k-checks): which facts of the reference an
//! inventory report from `ferrum-agent` contradicts.
//!
//! [`compare`] is pure: it reads only its arguments. It owns the matching
//! rules (tolerances, model-name normalisation); it must not decide what
//! happens to a node that fails the check (the controller's operations
//! engine does: a reset's verdict, the node `suspect`). The report and the
//! [`Difference`]s it answers are API types (`ferrum_api::inventory`); the
//! rule is here, outside the API crate, so the controller, the agent's
//! tests and the CLI's render tests share one copy.

use ferrum_api::inventory::{Difference, InventoryReport, StorageDevice};
use serde_json::Value;

/// How far a report may stray from the reference before it is a difference.
#[derive(Clone, Debug, PartialEq)]
pub struct Tolerances {
    /// How much less RAM than the reference is accepted, as a fraction
    /// (0.05: up to 5% below, e.g. firmware-reserved memory).
    pub memory_below: f64,
    /// How much more RAM than the reference is accepted, as a fraction.
    pub memory_above: f64,
    /// How far a disk's size may be from the reference's, either way, as a
    /// fraction.
    pub disk_size: f64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Tolerances { memory_below: 0.05, memory_above: 0.05, disk_size: 0.01 }
    }
}

/// Compares a Grid'5000 reference node description with an inventory
/// report and returns the reference's facts that the report contradicts
/// (empty: the node is what the reference says).
///
/// Compared, when the reference has the fact (a fact missing from the
/// reference is never a difference):
/// - `gpu_devices`: the count, then the models, matched as a multiset with
///   [`models_match`]. A reference without `gpu_devices` says the node has
///   no GPU (Grid'5000 omits the key for GPU-less nodes), so a GPU the agent
///   finds there is a difference. When the counts differ, only the count is
///   a difference for the surplus; models are compared pairwise for the rest.
/// - `main_memory.ram_size`: within `tolerances.memory_below` /
///   `memory_above`.
/// - `processor.other_description` (else `processor.model` and `version`)
///   with [`cpu_models_match`]; `architecture.nb_procs` and `nb_cores`
///   exactly.
///   `nb_threads` is not compared: it follows the hyper-threading setting.
/// - `storage_devices`: the count, then each reference disk is matched with
///   a found one by `by_id`, else by size within `tolerances.disk_size`;
///   when the counts agree every unmatched reference disk is a size
///   difference (when they do not, the count difference names the missing
///   disks).
/// - `network_adapters`: the MAC of every adapter that is `enabled` (or
///   `mounted`) must be on one of the found adapters, except management
///   adapters (a BMC's MAC is not visible from the host) and `FPGA/...`
///   interfaces (an FPGA's ports are not network interfaces of the host).
pub fn compare(reference: &Value, report: &InventoryReport, tolerances: &Tolerances) -> Vec<Difference> {
    let mut differences = Vec::new();
    compare_gpus(reference, report, &mut differences);
    compare_memory(reference, report, tolerances, &mut differences);
    compare_processor(reference, report, &mut differences);
    compare_disks(reference, report, tolerances, &mut differences);
    compare_nics(reference, report, &mut differences);
    differences
}

/// Splits a model name into the tokens [`models_match`] compares:
/// lowercase; `(r)` and `(tm)` dropped; every run of characters other than
/// ASCII letters and digits separates tokens; a number followed by a unit
/// (`40 GB`) joined into one token (`40gb`); vendor and filler words
/// (`nvidia`, `amd`, `intel`, `corporation`, `cpu`, `processor`, ...)
/// dropped.
pub fn model_tokens(name: &str) -> Vec<String> {
    const UNITS: [&str; 8] = ["gb", "tb", "mb", "gib", "tib", "mib", "ghz", "mhz"];
    const NOISE: [&str; 10] = ["nvidia", "amd", "ati", "intel", "corporation", "corp", "inc", "cpu", "processor", "xilinx"];
    let lower = name.to_lowercase().replace("(r)", " ").replace("(tm)", " ");
    let mut tokens: Vec<String> = Vec::new();
    for raw in lower.split(|c: char| !c.is_ascii_alphanumeric()).filter(|t| !t.is_empty()) {
        if UNITS.contains(&raw)
            && let Some(last) = tokens.last_mut()
            && last.chars().all(|c| c.is_ascii_digit())
        {
            last.push_str(raw);
            continue;
        }
        tokens.push(raw.to_string());
    }
    tokens.retain(|t| !NOISE.contains(&t.as_str()));
    tokens
}

/// Whether two model names name the same thing, tolerating the naming
/// differences between a Grid'5000 reference (`A100-SXM4-40GB`, from
/// `nvidia-smi`) and pci.ids (`GA100 [A100 SXM4 40GB]`): both are split
/// with [`model_tokens`], and they match when every token of one is a token
/// of the other. Whole tokens are compared, so `A10` does not match `A100`.
/// A name with no token matches nothing.
pub fn models_match(a: &str, b: &str) -> bool {
    let a = model_tokens(a);
    let b = model_tokens(b);
    if a.is_empty() || b.is_empty() {
        return false;
    }
    a.iter().all(|t| b.contains(t)) || b.iter().all(|t| a.contains(t))
}

/// Whether two CPU model names are the same model: [`model_tokens`] of
/// each, the clock (`@ 2.60GHz`) left out, are equal. Stricter than
/// [`models_match`]: a VM's bare `AMD EPYC` is not an `AMD EPYC 7352`.
pub fn cpu_models_match(a: &str, b: &str) -> bool {
    let tokens = |name: &str| model_tokens(name.split('@').next().unwrap_or(name));
    let a = tokens(a);
    !a.is_empty() && a == tokens(b)
}

fn compare_gpus(reference: &Value, report: &InventoryReport, out: &mut Vec<Difference>) {
    let expected: Vec<(String, Option<String>)> = match reference.get("gpu_devices").and_then(Value::as_object) {
        Some(map) => {
            let mut gpus: Vec<(String, Option<String>)> =
                map.iter().map(|(key, gpu)| (key.clone(), gpu.get("model").and_then(Value::as_str).map(str::to_string))).collect();
            gpus.sort_by_key(|g| natural_key(&g.0));
            gpus
        }
        None => Vec::new(),
    };
    let mut found: Vec<(String, Option<String>)> = report.gpu_devices.iter().map(|(k, g)| (k.clone(), g.model.clone())).collect();
    found.sort_by_key(|g| natural_key(&g.0));

    if expected.len() != found.len() {
        let found_models = if found.is_empty() { String::new() } else { format!(" ({})", describe_models(&found)) };
        let expected_models = if expected.is_empty() { String::new() } else { format!(" {}", describe_models(&expected)) };
        out.push(Difference {
            field: "gpu_devices.count".to_string(),
            expected: Value::from(expected.len()),
            found: Value::from(found.len()),
            message: format!(
                "reference says {} GPU{}{}, agent found {}{}",
                expected.len(),
                plural(expected.len()),
                expected_models,
                found.len(),
                found_models
            ),
        });
    }

    // Multiset matching of models: each reference GPU takes the first
    // unmatched found GPU whose model matches; the leftovers are paired in
    // order and each pair is a model difference.
    let mut taken = vec![false; found.len()];
    let mut unmatched_expected = Vec::new();
    for (key, model) in &expected {
        let Some(model) = model else { continue };
        let hit = found.iter().enumerate().position(|(i, (_, m))| !taken[i] && m.as_deref().is_some_and(|m| models_match(model, m)));
        match hit {
            Some(i) => taken[i] = true,
            None => unmatched_expected.push((key, model)),
        }
    }
    let mut leftovers = found.iter().enumerate().filter(|(i, _)| !taken[*i]).map(|(_, g)| g);
    for (key, model) in unmatched_expected {
        let Some((found_key, found_model)) = leftovers.next() else { break };
        out.push(Difference {
            field: format!("gpu_devices[{key}].model"),
            expected: Value::from(model.clone()),
            found: found_model.clone().map(Value::from).unwrap_or(Value::Null),
            message: format!(
                "reference says {key} is a {model}, agent found {found_key}: {}",
                found_model.as_deref().unwrap_or("a GPU pci.ids does not name")
            ),
        });
    }
}

fn describe_models(gpus: &[(String, Option<String>)]) -> String {
    let mut models: Vec<&str> = Vec::new();
    for (_, model) in gpus {
        let model = model.as_deref().unwrap_or("(unnamed)");
        if !models.contains(&model) {
            models.push(model);
        }
    }
    models.join(" + ")
}

fn compare_memory(reference: &Value, report: &InventoryReport, tolerances: &Tolerances, out: &mut Vec<Difference>) {
    let Some(expected) = reference.pointer("/main_memory/ram_size").and_then(Value::as_u64) else { return };
    let field = "main_memory.ram_size".to_string();
    match report.main_memory.ram_size {
        None => out.push(Difference {
            field,
            expected: Value::from(expected),
            found: Value::Null,
            message: format!("reference says {} of RAM, agent could not read the memory size", gib(expected)),
        }),
        Some(found) => {
            let low = expected as f64 * (1.0 - tolerances.memory_below);
            let high = expected as f64 * (1.0 + tolerances.memory_above);
            let f = found as f64;
            if f < low || f > high {
                out.push(Difference {
                    field,
                    expected: Value::from(expected),
                    found: Value::from(found),
                    message: format!(
                        "reference says {} of RAM, agent found {} (accepted: {:.0}% below to {:.0}% above)",
                        gib(expected),
                        gib(found),
                        tolerances.memory_below * 100.0,
                        tolerances.memory_above * 100.0
                    ),
                });
            }
        }
    }
}

fn compare_processor(reference: &Value, report: &InventoryReport, out: &mut Vec<Difference>) {
    let description = reference.pointer("/processor/other_description").and_then(Value::as_str).map(str::to_string);
    let (field, expected) = match description {
        Some(d) => ("processor.other_description", Some(d)),
        None => {
            let model = reference.pointer("/processor/model").and_then(Value::as_str);
            let version = reference.pointer("/processor/version").and_then(value_as_text);
            let joined = match (model, version) {
                (Some(m), Some(v)) => Some(format!("{m} {v}")),
                (Some(m), None) => Some(m.to_string()),
                _ => None,
            };
            ("processor.model", joined)
        }
    };
    if let Some(expected) = expected {
        let found = report.processor.other_description.clone().or_else(|| {
            let p = &report.processor;
            p.model.as_ref().map(|m| match &p.version {
                Some(v) => format!("{m} {v}"),
                None => m.clone(),
            })
        });
        if !found.as_deref().is_some_and(|f| cpu_models_match(&expected, f)) {
            out.push(Difference {
                field: field.to_string(),
                expected: Value::from(expected.clone()),
                found: found.clone().map(Value::from).unwrap_or(Value::Null),
                message: format!("reference says the CPU is {expected}, agent found {}", found.as_deref().unwrap_or("no CPU model")),
            });
        }
    }

    for (name, found, what) in [("nb_procs", report.architecture.nb_procs, "sockets"), ("nb_cores", report.architecture.nb_cores, "cores")]
    {
        let Some(expected) = reference.pointer(&format!("/architecture/{name}")).and_then(Value::as_u64) else { continue };
        if found.map(u64::from) != Some(expected) {
            out.push(Difference {
                field: format!("architecture.{name}"),
                expected: Value::from(expected),
                found: found.map(Value::from).unwrap_or(Value::Null),
                message: format!(
                    "reference says {expected} {what}, agent found {}",
                    found.map(|f| f.to_string()).unwrap_or_else(|| "none".to_string())
                ),
            });
        }
    }
}

/// Which reported disk each reference disk is compared with (`None`:
/// none): first by by-id link, then by size within the tolerance. Pages
/// that show the two side by side pair them with this, as the check does.
pub fn disk_pairs(reference: &[Value], found: &[StorageDevice], tolerances: &Tolerances) -> Vec<Option<usize>> {
    let within = |a: u64, b: u64| (a as f64 - b as f64).abs() <= b as f64 * tolerances.disk_size;
    let mut taken = vec![false; found.len()];
    let mut matched: Vec<Option<usize>> = vec![None; reference.len()];
    for (e, disk) in reference.iter().enumerate() {
        let Some(by_id) = disk.get("by_id").and_then(Value::as_str) else { continue };
        if let Some(i) = found.iter().position(|f| f.by_id.as_deref() == Some(by_id))
            && !taken[i]
        {
            taken[i] = true;
            matched[e] = Some(i);
        }
    }
    for (e, disk) in reference.iter().enumerate() {
        if matched[e].is_some() {
            continue;
        }
        let Some(size) = disk.get("size").and_then(Value::as_u64) else { continue };
        if let Some(i) = (0..found.len()).find(|&i| !taken[i] && found[i].size.is_some_and(|s| within(s, size))) {
            taken[i] = true;
            matched[e] = Some(i);
        }
    }
    matched
}

/// Whether the check compares a reference network adapter's MAC: one in
/// use, neither the management one nor an FPGA's.
pub fn adapter_checked(adapter: &Value) -> bool {
    let flag = |name: &str| adapter.get(name).and_then(Value::as_bool);
    let in_use = flag("enabled").unwrap_or(false) || flag("mounted").unwrap_or(false);
    let management = flag("management").unwrap_or(false);
    let fpga = adapter.get("interface").and_then(Value::as_str).is_some_and(|s| s.to_ascii_lowercase().starts_with("fpga"));
    in_use && !management && !fpga
}

fn compare_disks(reference: &Value, report: &InventoryReport, tolerances: &Tolerances, out: &mut Vec<Difference>) {
    let Some(list) = reference.get("storage_devices").and_then(Value::as_array) else { return };
    struct RefDisk {
        id: String,
        size: Option<u64>,
        model: Option<String>,
    }
    let expected: Vec<RefDisk> = list
        .iter()
        .enumerate()
        .map(|(i, d)| RefDisk {
            id: d.get("id").or_else(|| d.get("device")).and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| format!("#{i}")),
            size: d.get("size").and_then(Value::as_u64),
            model: d.get("model").and_then(Value::as_str).map(str::to_string),
        })
        .collect();
    let found = &report.storage_devices;
    let within = |a: u64, b: u64| (a as f64 - b as f64).abs() <= b as f64 * tolerances.disk_size;
    let matched = disk_pairs(list, found, tolerances);
    let mut taken = vec![false; found.len()];
    for i in matched.iter().flatten() {
        taken[*i] = true;
    }

    let describe = |d: &RefDisk| {
        let size = d.size.map(gb).unwrap_or_else(|| "unknown size".to_string());
        match &d.model {
            Some(m) => format!("{} ({size}, {m})", d.id),
            None => format!("{} ({size})", d.id),
        }
    };

    if expected.len() != found.len() {
        let missing: Vec<String> =
            expected.iter().zip(&matched).filter(|(d, m)| m.is_none() && d.size.is_some()).map(|(d, _)| describe(d)).collect();
        let extra: Vec<String> = found
            .iter()
            .zip(&taken)
            .filter(|(_, t)| !**t)
            .map(|(f, _)| format!("{} ({})", f.device, f.size.map(gb).unwrap_or_default()))
            .collect();
        let mut message = format!("reference says {} disk{}, agent found {}", expected.len(), plural(expected.len()), found.len());
        if !missing.is_empty() {
            message.push_str(&format!("; not found: {}", missing.join(", ")));
        }
        if !extra.is_empty() {
            message.push_str(&format!("; not in the reference: {}", extra.join(", ")));
        }
        out.push(Difference {
            field: "storage_devices.count".to_string(),
            expected: Value::from(expected.len()),
            found: Value::from(found.len()),
            message,
        });
        return;
    }

    // Same count: a matched disk may still have the wrong size (matched by
    // by-id); an unmatched one is paired with a leftover found disk.
    let mut leftovers = (0..found.len()).filter(|&i| !taken[i]);
    for (e, disk) in expected.iter().enumerate() {
        let Some(size) = disk.size else { continue };
        let pick = match matched[e] {
            Some(i) => Some(i),
            None => leftovers.next(),
        };
        let found_size = pick.and_then(|i| found[i].size);
        if found_size.is_some_and(|s| within(s, size)) {
            continue;
        }
        let found_text = match pick {
            Some(i) => format!("{} of {}", found[i].device, found_size.map(gb).unwrap_or_else(|| "unknown size".to_string())),
            None => "no matching disk".to_string(),
        };
        out.push(Difference {
            field: format!("storage_devices[{}].size", disk.id),
            expected: Value::from(size),
            found: found_size.map(Value::from).unwrap_or(Value::Null),
            message: format!(
                "reference says {} is {}, agent found {found_text} (accepted: {:.0}% either way)",
                disk.id,
                gb(size),
                tolerances.disk_size * 100.0
            ),
        });
    }
}

fn compare_nics(reference: &Value, report: &InventoryReport, out: &mut Vec<Difference>) {
    let Some(list) = reference.get("network_adapters").and_then(Value::as_array) else { return };
    let found: Vec<String> = report.network_adapters.iter().filter_map(|a| a.mac.as_deref()).map(normalise_mac).collect();
    for (i, adapter) in list.iter().enumerate() {
        if !adapter_checked(adapter) {
            continue;
        }
        let Some(mac) = adapter.get("mac").and_then(Value::as_str) else { continue };
        if found.contains(&normalise_mac(mac)) {
            continue;
        }
        let device = adapter.get("device").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| format!("#{i}"));
        out.push(Difference {
            field: format!("network_adapters[{device}].mac"),
            expected: Value::from(mac),
            found: Value::from(found.clone()),
            message: format!(
                "reference says {device} has MAC {mac}, agent found no adapter with it (found: {})",
                if found.is_empty() { "none".to_string() } else { found.join(", ") }
            ),
        });
    }
}

fn normalise_mac(mac: &str) -> String {
    mac.trim().to_ascii_lowercase().replace('-', ":")
}

/// Sort key that orders `nvidia2` before `nvidia10`.
fn natural_key(key: &str) -> (String, u64) {
    let digits = key.len() - key.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (stem, number) = key.split_at(key.len() - digits);
    (stem.to_string(), number.parse().unwrap_or(0))
}

fn value_as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB ({bytes} bytes)", bytes as f64 / (1u64 << 30) as f64)
}

fn gb(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_match_across_reference_and_pci_ids_spellings() {
        assert!(models_match("A100-SXM4-40GB", "GA100 [A100 SXM4 40GB]"));
        assert!(models_match("NVIDIA A100-SXM4-40GB", "GA100 [A100 SXM4 40GB]"));
        assert!(models_match("Tesla P100-PCIE-16GB", "GP100GL [Tesla P100 PCIe 16GB]"));
        assert!(models_match("Tesla V100-PCIE-32GB", "GV100GL [Tesla V100 PCIe 32GB]"));
        assert!(models_match("Quadro RTX 6000", "TU102GL [Quadro RTX 6000/8000]"));
        assert!(models_match("H100 80 GB", "GH100 [H100 SXM5 80GB]"));
    }

    #[test]
    fn cpu_models_must_be_the_same_model() {
        assert!(cpu_models_match("Intel(R) Xeon(R) Gold 6126 CPU @ 2.60GHz", "Intel Xeon Gold 6126"));
        assert!(cpu_models_match("AMD EPYC 7352 24-Core Processor", "AMD EPYC 7352 24-Core Processor"));
        assert!(!cpu_models_match("AMD EPYC 7352 24-Core Processor", "AMD EPYC"));
        assert!(!cpu_models_match("Intel(R) Xeon(R) Gold 6126 CPU @ 2.60GHz", "Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz"));
        assert!(!cpu_models_match("", ""));
    }

    #[test]
    fn model_names_compare_whole_tokens() {
        assert!(!models_match("A10", "GA100 [A100 SXM4 40GB]"));
        assert!(!models_match("Tesla P100-PCIE-16GB", "GV100GL [Tesla V100 PCIe 32GB]"));
        assert!(!models_match("A100-SXM4-80GB", "GA100 [A100 SXM4 40GB]"));
        assert!(!models_match("", "GA100"));
        assert!(!models_match("NVIDIA", "NVIDIA"));
    }

    #[test]
    fn tokens_join_numbers_and_units_and_drop_vendors() {
        assert_eq!(model_tokens("NVIDIA H100 80 GB"), ["h100", "80gb"]);
        assert_eq!(model_tokens("AMD EPYC 7352 24-Core Processor"), ["epyc", "7352", "24", "core"]);
    }

    #[test]
    fn natural_order_of_keys() {
        let mut keys = vec!["nvidia10", "nvidia2", "amd0", "nvidia1"];
        keys.sort_by_key(|k| natural_key(k));
        assert_eq!(keys, ["amd0", "nvidia1", "nvidia2", "nvidia10"]);
    }
}
