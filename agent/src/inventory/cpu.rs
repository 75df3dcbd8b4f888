//! The CPU: model, vendor, clock and caches (`processor`) and the counts of
//! sockets, cores and threads (`architecture`), from `/proc/cpuinfo` and
//! `/sys/devices/system/cpu`. Parsing is pure and tested here; reading goes
//! through [`Fs`].

use std::collections::{BTreeMap, BTreeSet};

use ferrum_api::inventory::{Architecture, Processor};

use super::Fs;

/// One block of `/proc/cpuinfo` (one logical CPU): key → value.
type CpuEntry = BTreeMap<String, String>;

pub(super) fn collect(fs: &Fs) -> (Processor, Architecture) {
    let entries = fs.read("/proc/cpuinfo").map(|text| parse_cpuinfo(&text)).unwrap_or_default();
    let first = entries.first();
    let field = |key: &str| first.and_then(|e| e.get(key)).cloned();

    let description = field("model name");
    let (model, version) = description.as_deref().map(split_model).unwrap_or((None, None));
    let vendor = field("vendor_id").map(|v| vendor_name(&v)).or_else(|| field("CPU implementer").map(|i| implementer_name(&i)));

    let clock_speed = description
        .as_deref()
        .and_then(clock_from_model_name)
        .or_else(|| khz(fs.read("/sys/devices/system/cpu/cpu0/cpufreq/base_frequency")))
        .or_else(|| khz(fs.read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")))
        .or_else(|| field("cpu MHz").and_then(|m| parse_scaled(&m, 1_000_000)));

    let mut processor = Processor {
        model,
        version,
        vendor,
        other_description: description,
        clock_speed,
        instruction_set: Some(instruction_set().to_string()),
        ..Processor::default()
    };
    read_caches(fs, &mut processor);

    let (nb_procs, nb_cores, nb_threads) = match topology_from_cpuinfo(&entries) {
        Some(counts) => (Some(counts.0), Some(counts.1), Some(counts.2)),
        None => topology_from_sysfs(fs, entries.len()),
    };
    let architecture = Architecture { nb_procs, nb_cores, nb_threads, platform_type: Some(std::env::consts::ARCH.to_string()) };
    (processor, architecture)
}

/// Splits `/proc/cpuinfo` into one map per logical CPU (blocks separated by
/// blank lines; `key<tabs>: value` lines).
pub(super) fn parse_cpuinfo(text: &str) -> Vec<CpuEntry> {
    let mut entries = Vec::new();
    let mut current = CpuEntry::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                entries.push(std::mem::take(&mut current));
            }
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            current.insert(key.trim().to_string(), value.trim().to_string());
        }
    }
    if !current.is_empty() {
        entries.push(current);
    }
    // Keep only per-CPU blocks (aarch64 adds a trailing `Hardware` block).
    entries.retain(|e| e.contains_key("processor"));
    entries
}

/// (sockets, cores, threads) when cpuinfo has `physical id` and `core id`
/// (x86); `None` otherwise.
pub(super) fn topology_from_cpuinfo(entries: &[CpuEntry]) -> Option<(u32, u32, u32)> {
    if entries.is_empty() {
        return None;
    }
    let mut packages = BTreeSet::new();
    let mut cores = BTreeSet::new();
    for entry in entries {
        let package = entry.get("physical id")?;
        let core = entry.get("core id")?;
        packages.insert(package.clone());
        cores.insert((package.clone(), core.clone()));
    }
    Some((count(packages.len()), count(cores.len()), count(entries.len())))
}

/// (sockets, cores, threads) from `/sys/devices/system/cpu/cpuN/topology`;
/// threads fall back to the number of cpuinfo blocks.
fn topology_from_sysfs(fs: &Fs, cpuinfo_threads: usize) -> (Option<u32>, Option<u32>, Option<u32>) {
    let online = fs.read("/sys/devices/system/cpu/online").map(|list| parse_cpu_list(&list)).unwrap_or_default();
    let cpus: Vec<u32> = if online.is_empty() {
        fs.list("/sys/devices/system/cpu").iter().filter_map(|n| n.strip_prefix("cpu")?.parse().ok()).collect()
    } else {
        online
    };
    let mut packages = BTreeSet::new();
    let mut cores = BTreeSet::new();
    for cpu in &cpus {
        let base = format!("/sys/devices/system/cpu/cpu{cpu}/topology");
        let package = fs.read(&format!("{base}/physical_package_id"));
        let core = fs.read(&format!("{base}/core_id"));
        if let (Some(package), Some(core)) = (package, core) {
            packages.insert(package.clone());
            cores.insert((package, core));
        }
    }
    let threads = if cpuinfo_threads > 0 { cpuinfo_threads } else { cpus.len() };
    if threads == 0 {
        return (None, None, None);
    }
    if packages.is_empty() {
        return (Some(1), Some(count(threads)), Some(count(threads)));
    }
    (Some(count(packages.len())), Some(count(cores.len())), Some(count(threads)))
}

/// `0-3,8-11` → [0, 1, 2, 3, 8, 9, 10, 11].
pub(super) fn parse_cpu_list(text: &str) -> Vec<u32> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    cpus.extend(a..=b);
                }
            }
            None => cpus.extend(part.parse::<u32>().ok()),
        }
    }
    cpus
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// `Intel(R) Xeon(R) Gold 6126 CPU @ 2.60GHz` → (`Intel Xeon`, `Gold 6126`);
/// `AMD EPYC 7352 24-Core Processor` → (`AMD EPYC`, `7352`): trademarks,
/// `CPU`, `Processor`, `N-Core` and the clock dropped, the first two words
/// are the family, the rest the version.
pub(super) fn split_model(name: &str) -> (Option<String>, Option<String>) {
    let mut cleaned = name.to_string();
    for mark in ["(R)", "(r)", "(TM)", "(tm)"] {
        cleaned = cleaned.replace(mark, " ");
    }
    if let Some(at) = cleaned.find('@') {
        cleaned.truncate(at);
    }
    let words: Vec<&str> = cleaned
        .split_whitespace()
        .filter(|w| !w.eq_ignore_ascii_case("cpu") && !w.eq_ignore_ascii_case("processor") && !w.to_ascii_lowercase().ends_with("-core"))
        .collect();
    match words.len() {
        0 => (None, None),
        1 | 2 => (Some(words.join(" ")), None),
        _ => (Some(words[..2].join(" ")), Some(words[2..].join(" "))),
    }
}

/// The nominal clock written in the model name (`@ 2.60GHz`), in Hz.
pub(super) fn clock_from_model_name(name: &str) -> Option<u64> {
    let after = name.rsplit_once('@')?.1.trim().to_ascii_lowercase();
    if let Some(ghz) = after.strip_suffix("ghz") {
        parse_scaled(ghz.trim(), 1_000_000_000)
    } else if let Some(mhz) = after.strip_suffix("mhz") {
        parse_scaled(mhz.trim(), 1_000_000)
    } else {
        None
    }
}

/// `2.60` with scale 10^9 → 2_600_000_000, in integers (no float rounding).
pub(super) fn parse_scaled(text: &str, scale: u64) -> Option<u64> {
    let (int, frac) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
    let int: u64 = int.parse().ok()?;
    let mut value = int.checked_mul(scale)?;
    let mut unit = scale;
    for digit in frac.chars() {
        unit /= 10;
        if unit == 0 {
            break;
        }
        value = value.checked_add(u64::from(digit.to_digit(10)?) * unit)?;
    }
    Some(value)
}

fn khz(text: Option<String>) -> Option<u64> {
    text?.parse::<u64>().ok().filter(|k| *k > 0).map(|k| k * 1000)
}

fn vendor_name(vendor_id: &str) -> String {
    match vendor_id {
        "GenuineIntel" => "Intel",
        "AuthenticAMD" => "AMD",
        "HygonGenuine" => "Hygon",
        "CentaurHauls" => "Centaur",
        other => other,
    }
    .to_string()
}

fn implementer_name(implementer: &str) -> String {
    match implementer.to_ascii_lowercase().as_str() {
        "0x41" => "ARM",
        "0x48" => "HiSilicon",
        "0x4e" => "NVIDIA",
        "0x51" => "Qualcomm",
        "0xc0" => "Ampere",
        other => return other.to_string(),
    }
    .to_string()
}

fn instruction_set() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86-64",
        other => other,
    }
}

/// Cache sizes of CPU 0 (`index*/level`, `type`, `size`).
fn read_caches(fs: &Fs, processor: &mut Processor) {
    let base = "/sys/devices/system/cpu/cpu0/cache";
    for index in fs.list(base).into_iter().filter(|n| n.starts_with("index")) {
        let level = fs.read(&format!("{base}/{index}/level"));
        let kind = fs.read(&format!("{base}/{index}/type"));
        let Some(size) = fs.read(&format!("{base}/{index}/size")).and_then(|s| parse_size(&s)) else { continue };
        let slot = match (level.as_deref(), kind.as_deref()) {
            (Some("1"), Some("Data")) => &mut processor.cache_l1d,
            (Some("1"), Some("Instruction")) => &mut processor.cache_l1i,
            (Some("2"), _) => &mut processor.cache_l2,
            (Some("3"), _) => &mut processor.cache_l3,
            _ => continue,
        };
        *slot = Some(size);
    }
}

/// `32K` → 32768; `1M` → 1048576; `512` → 512.
pub(super) fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, multiplier) = match text.chars().last()? {
        'K' | 'k' => (&text[..text.len() - 1], 1 << 10),
        'M' | 'm' => (&text[..text.len() - 1], 1 << 20),
        'G' | 'g' => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two sockets, two cores each, two threads per core, listed the way
    /// Linux lists them (all first threads, then the siblings).
    fn two_socket_cpuinfo() -> String {
        let mut text = String::new();
        let layout = [(0, 0), (0, 1), (1, 0), (1, 1), (0, 0), (0, 1), (1, 0), (1, 1)];
        for (n, (package, core)) in layout.iter().enumerate() {
            text.push_str(&format!(
                "processor\t: {n}\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6126 CPU @ 2.60GHz\n\
                 cpu MHz\t\t: 1000.000\nphysical id\t: {package}\nsiblings\t: 4\ncore id\t\t: {core}\ncpu cores\t: 2\n\
                 flags\t\t: fpu vme ht\n\n"
            ));
        }
        text
    }

    #[test]
    fn cpuinfo_with_two_sockets_counts_sockets_cores_and_threads() {
        let entries = parse_cpuinfo(&two_socket_cpuinfo());
        assert_eq!(entries.len(), 8);
        assert_eq!(topology_from_cpuinfo(&entries), Some((2, 4, 8)));
        assert_eq!(entries[0].get("model name").map(String::as_str), Some("Intel(R) Xeon(R) Gold 6126 CPU @ 2.60GHz"));
    }

    #[test]
    fn core_ids_repeat_across_sockets_without_merging() {
        // core id 0 exists on both sockets: two cores, not one.
        let text = "processor: 0\nphysical id: 0\ncore id: 0\n\nprocessor: 1\nphysical id: 1\ncore id: 0\n";
        assert_eq!(topology_from_cpuinfo(&parse_cpuinfo(text)), Some((2, 2, 2)));
    }

    #[test]
    fn cpuinfo_without_topology_defers_to_sysfs() {
        // aarch64: no physical id, and a trailing non-CPU block.
        let text =
            "processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\n\nprocessor\t: 1\nCPU implementer\t: 0x41\n\nHardware\t: foo\n";
        let entries = parse_cpuinfo(text);
        assert_eq!(entries.len(), 2);
        assert_eq!(topology_from_cpuinfo(&entries), None);
    }

    #[test]
    fn model_names_split_into_family_and_version() {
        let split = |n| split_model(n);
        assert_eq!(split("Intel(R) Xeon(R) Gold 6126 CPU @ 2.60GHz"), (Some("Intel Xeon".into()), Some("Gold 6126".into())));
        assert_eq!(split("AMD EPYC 7352 24-Core Processor"), (Some("AMD EPYC".into()), Some("7352".into())));
        assert_eq!(split("Intel(R) Xeon(R) CPU E5-2630 v3 @ 2.40GHz"), (Some("Intel Xeon".into()), Some("E5-2630 v3".into())));
        assert_eq!(split("AMD EPYC"), (Some("AMD EPYC".into()), None));
        assert_eq!(split("  "), (None, None));
    }

    #[test]
    fn clocks_parse_without_float_rounding() {
        assert_eq!(clock_from_model_name("Intel(R) Xeon(R) Gold 6126 CPU @ 2.60GHz"), Some(2_600_000_000));
        assert_eq!(clock_from_model_name("Something @ 800MHz"), Some(800_000_000));
        assert_eq!(clock_from_model_name("AMD EPYC 7352 24-Core Processor"), None);
        assert_eq!(parse_scaled("2445.404", 1_000_000), Some(2_445_404_000));
        assert_eq!(parse_scaled("x", 1_000_000), None);
    }

    #[test]
    fn cpu_lists_and_cache_sizes() {
        assert_eq!(parse_cpu_list("0-3,8,10-11\n"), [0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_size("32K"), Some(32768));
        assert_eq!(parse_size("32768K"), Some(33_554_432));
        assert_eq!(parse_size("1M"), Some(1_048_576));
        assert_eq!(parse_size("K"), None);
    }
}
