//! The hardware catalog's summaries, pure: nodes (as the API shows them,
//! `ferrum_api::Node`) grouped into sites and clusters, each cluster's
//! facts in words (CPU, cores, memory, GPUs, other accelerators, disks,
//! network, exotic, nodes per state), and the filter builder's rule for
//! writing a helper's condition into the filter text.
//!
//! Reads only the OAR-named properties the reference import writes
//! (`controller/src/reference/flatten.rs`); decides nothing about what a
//! caller may see (the nodes come through `http::views`) and never parses
//! a filter (the application layer does, with the lease API's parser).

use std::collections::BTreeMap;

use ferrum_api as api;
use serde_json::Value;

use crate::reference::natural_cmp;

/// A node property as an integer (0 when absent or not a number).
fn int(node: &api::Node, name: &str) -> i64 {
    node.properties.get(name).and_then(Value::as_i64).unwrap_or(0)
}

/// A node property as a non-empty text.
fn text<'a>(node: &'a api::Node, name: &str) -> Option<&'a str> {
    node.properties.get(name).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

/// What a node's description does not say.
pub const UNKNOWN: &str = "not described";

/// `n` MiB in words: `192 GiB`, `1.5 GiB`, `512 MiB`.
pub fn mib(n: i64) -> String {
    if n >= 1024 {
        if n % 1024 == 0 { format!("{} GiB", n / 1024) } else { format!("{:.1} GiB", n as f64 / 1024.0) }
    } else {
        format!("{n} MiB")
    }
}

/// `n` with its noun, plural when `n` is not 1.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// The CPU: `Intel Xeon Gold 6126 (Skylake-SP)`.
pub fn cpu(node: &api::Node) -> String {
    match (text(node, "cputype"), text(node, "cpu_microarch")) {
        (Some(t), Some(m)) => format!("{t} ({m})"),
        (Some(t), None) => t.to_owned(),
        _ => UNKNOWN.to_owned(),
    }
}

/// Cores per node: `24 (2 CPUs × 12)`.
pub fn cores(node: &api::Node) -> String {
    let (total, cpus, per_cpu) = (int(node, "core_count"), int(node, "cpu_count"), int(node, "cpucore"));
    match (total, cpus) {
        (t, c) if t > 0 && c > 1 => format!("{t} ({c} CPUs × {})", t / c),
        (t, _) if t > 0 => t.to_string(),
        _ if per_cpu > 0 => format!("{per_cpu} per CPU"),
        _ => UNKNOWN.to_owned(),
    }
}

/// Memory per node.
pub fn memory(node: &api::Node) -> String {
    match int(node, "memnode") {
        m if m > 0 => mib(m),
        _ => UNKNOWN.to_owned(),
    }
}

/// GPUs: `2 × Tesla V100-PCIE-32GB (32 GiB each)`, or `none`.
pub fn gpus(node: &api::Node) -> String {
    let n = int(node, "gpu_count");
    if n <= 0 {
        return "none".into();
    }
    let model = text(node, "gpu_model").unwrap_or("unnamed GPU");
    match int(node, "gpu_mem") {
        m if m > 0 => format!("{n} × {model} ({} each)", mib(m)),
        _ => format!("{n} × {model}"),
    }
}

/// Accelerators other than GPUs (FPGAs, ...): `1 × Alveo U200 (fpga)`,
/// or `none`.
pub fn accelerators(node: &api::Node) -> String {
    match text(node, "accel_type") {
        Some(kind) if kind != "gpu" => {
            let n = if kind == "fpga" { int(node, "fpga_count").max(1) } else { 1 };
            format!("{n} × {} ({kind})", text(node, "accel_model").unwrap_or("unnamed device"))
        }
        _ => "none".into(),
    }
}

/// Disks: `4, main disk SATA/SSD`.
pub fn disks(node: &api::Node) -> String {
    match (int(node, "disk_count"), text(node, "disktype")) {
        (n, Some(kind)) if n > 0 => format!("{n}, main disk {kind}"),
        (n, None) if n > 0 => n.to_string(),
        _ => UNKNOWN.to_owned(),
    }
}

/// Network: `25 Gbit/s Ethernet, 2 × 100 Gbit/s InfiniBand`.
pub fn network(node: &api::Node) -> String {
    let mut parts = Vec::new();
    match int(node, "eth_rate") {
        r if r > 0 => parts.push(format!("{r} Gbit/s Ethernet")),
        _ => {}
    }
    let ib = int(node, "ib_rate");
    if ib > 0 {
        match int(node, "ib_count") {
            n if n > 1 => parts.push(format!("{n} × {ib} Gbit/s InfiniBand")),
            _ => parts.push(format!("{ib} Gbit/s InfiniBand")),
        }
    }
    if parts.is_empty() { UNKNOWN.to_owned() } else { parts.join(", ") }
}

/// Whether the node is exotic, in words.
pub fn exotic(node: &api::Node) -> String {
    if node.properties.get("exotic").and_then(Value::as_bool).unwrap_or(false) {
        "yes: prototype hardware, leased only on request".into()
    } else {
        "no".into()
    }
}

/// Distinct values in first-seen order, each with how many nodes have it.
#[derive(Debug, Default)]
struct Tally(Vec<(String, usize)>);

impl Tally {
    fn add(&mut self, value: String) {
        match self.0.iter_mut().find(|(v, _)| *v == value) {
            Some((_, n)) => *n += 1,
            None => self.0.push((value, 1)),
        }
    }

    /// One value alone; several each with its node count.
    fn words(&self) -> String {
        match self.0.as_slice() {
            [(only, _)] => only.clone(),
            many => many.iter().map(|(v, n)| format!("{v} on {}", count(*n, "node"))).collect::<Vec<_>>().join("; "),
        }
    }
}

/// Nodes per shown state, in the lifecycle's order, those with none left
/// out: `6 available, 2 reserved`.
pub fn states<'a>(nodes: impl IntoIterator<Item = &'a api::Node>) -> String {
    let mut counts = [0usize; api::NodeState::ALL.len()];
    for node in nodes {
        if let Some(i) = api::NodeState::ALL.iter().position(|s| *s == node.state) {
            counts[i] += 1;
        }
    }
    let parts: Vec<String> =
        api::NodeState::ALL.iter().zip(counts).filter(|(_, n)| *n > 0).map(|(s, n)| format!("{n} {}", s.as_str())).collect();
    if parts.is_empty() { "no node".into() } else { parts.join(", ") }
}

/// One cluster of the catalog.
#[derive(Debug)]
pub struct ClusterSummary {
    pub name: String,
    pub site: String,
    pub nodes: usize,
    /// How many of its nodes the filter selects (`None`: no filter).
    pub matching: Option<usize>,
    pub cpu: String,
    pub cores: String,
    pub memory: String,
    pub gpus: String,
    pub accelerators: String,
    pub disks: String,
    pub network: String,
    pub exotic: String,
    pub states: String,
}

impl ClusterSummary {
    /// The summary of one cluster's nodes (at least one); `matching`
    /// names the nodes a filter selects.
    pub fn of(nodes: &[&api::Node], matching: Option<&[String]>) -> ClusterSummary {
        let tally = |fact: fn(&api::Node) -> String| {
            let mut t = Tally::default();
            for n in nodes {
                t.add(fact(n));
            }
            t.words()
        };
        let first = nodes.first();
        ClusterSummary {
            name: first.map(|n| n.cluster.clone()).unwrap_or_default(),
            site: first.map(|n| n.site.clone()).unwrap_or_default(),
            nodes: nodes.len(),
            matching: matching.map(|names| nodes.iter().filter(|n| names.contains(&n.name)).count()),
            cpu: tally(cpu),
            cores: tally(cores),
            memory: tally(memory),
            gpus: tally(gpus),
            accelerators: tally(accelerators),
            disks: tally(disks),
            network: tally(network),
            exotic: tally(exotic),
            states: states(nodes.iter().copied()),
        }
    }
}

/// One site of the catalog, its clusters in natural order.
#[derive(Debug)]
pub struct SiteSummary {
    pub name: String,
    pub nodes: usize,
    pub clusters: Vec<ClusterSummary>,
}

/// A cluster's name and its nodes.
pub type Cluster<'a> = (String, Vec<&'a api::Node>);

/// A site's name and its clusters.
pub type Site<'a> = (String, Vec<Cluster<'a>>);

/// Nodes grouped by site, then cluster (natural order: `chifflot2`
/// before `chifflot10`).
pub fn by_cluster(nodes: &[api::Node]) -> Vec<Site<'_>> {
    let mut sites: BTreeMap<&str, BTreeMap<&str, Vec<&api::Node>>> = BTreeMap::new();
    for n in nodes {
        sites.entry(n.site.as_str()).or_default().entry(n.cluster.as_str()).or_default().push(n);
    }
    let mut out: Vec<Site<'_>> = sites
        .into_iter()
        .map(|(site, clusters)| {
            let mut clusters: Vec<Cluster<'_>> = clusters
                .into_iter()
                .map(|(c, mut nodes)| {
                    nodes.sort_by(|a, b| natural_cmp(&a.name, &b.name));
                    (c.to_owned(), nodes)
                })
                .collect();
            clusters.sort_by(|a, b| natural_cmp(&a.0, &b.0));
            (site.to_owned(), clusters)
        })
        .collect();
    out.sort_by(|a, b| natural_cmp(&a.0, &b.0));
    out
}

/// The catalog: every site and cluster summarised; `matching` names the
/// nodes a filter selects.
pub fn catalog(nodes: &[api::Node], matching: Option<&[String]>) -> Vec<SiteSummary> {
    by_cluster(nodes)
        .into_iter()
        .map(|(site, clusters)| SiteSummary {
            name: site,
            nodes: clusters.iter().map(|(_, n)| n.len()).sum(),
            clusters: clusters.iter().map(|(_, nodes)| ClusterSummary::of(nodes, matching)).collect(),
        })
        .collect()
}

/// The filter builder's helpers, as the form sends them (empty: unset).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct Helpers {
    #[serde(default)]
    pub cluster: String,
    #[serde(default)]
    pub gpu_model: String,
    #[serde(default)]
    pub min_gpus: String,
    /// GiB.
    #[serde(default)]
    pub min_memory: String,
}

/// A string literal of the filter language: single quotes, a quote inside
/// doubled.
pub fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A positive whole number typed in a helper, digits only (anything else:
/// unset; `static/hardware.js` reads it the same way).
fn positive(typed: &str) -> Option<u64> {
    let typed = typed.trim();
    typed.bytes().all(|b| b.is_ascii_digit()).then(|| typed.parse::<u64>().ok()).flatten().filter(|n| *n > 0)
}

impl Helpers {
    /// Each helper's condition (empty: unset), in the form's order.
    /// `static/hardware.js` writes the same ones.
    pub fn clauses(&self) -> [String; 4] {
        let cluster = Some(self.cluster.trim()).filter(|c| !c.is_empty()).map(|c| format!("cluster = {}", quoted(c)));
        let model = Some(self.gpu_model.trim()).filter(|m| !m.is_empty()).map(|m| format!("gpu_model = {}", quoted(m)));
        let gpus = positive(&self.min_gpus).map(|n| format!("gpu_count >= {n}"));
        let memory = positive(&self.min_memory).map(|g| format!("memnode >= {}", g.saturating_mul(1024)));
        [cluster, model, gpus, memory].map(Option::unwrap_or_default)
    }
}

/// Where `clause` stands in `filter` as a whole condition: bounded by the
/// text's ends, spaces or parentheses (`gpu_count >= 2` is not inside
/// `gpu_count >= 20`).
fn find_clause(filter: &str, clause: &str) -> Option<usize> {
    let bounded = |at: usize| {
        let before = filter[..at].chars().next_back();
        let after = filter[at + clause.len()..].chars().next();
        before.is_none_or(|c| c == ' ' || c == '(') && after.is_none_or(|c| c == ' ' || c == ')')
    };
    filter.match_indices(clause).map(|(at, _)| at).find(|&at| bounded(at))
}

/// `filter` with the condition `old` (a helper's previous one) taken out,
/// with the `AND` that joined it.
fn without(filter: &str, old: &str) -> String {
    let Some(at) = Some(old).filter(|o| !o.is_empty()).and_then(|o| find_clause(filter, o)) else {
        return filter.to_owned();
    };
    let end = at + old.len();
    let (from, to) = if filter[end..].starts_with(" AND ") {
        (at, end + " AND ".len())
    } else if filter[..at].ends_with(" AND ") {
        (at - " AND ".len(), end)
    } else {
        (at, end)
    };
    let mut out = filter.to_owned();
    out.replace_range(from..to, "");
    out.trim().to_owned()
}

/// `filter AND clause`, the filter in parentheses when it has an `OR` of
/// its own (so the condition applies to all of it); unchanged when the
/// filter already holds the clause.
fn with(filter: &str, clause: &str) -> String {
    let filter = filter.trim();
    if clause.is_empty() || find_clause(filter, clause).is_some() {
        return filter.to_owned();
    }
    if filter.is_empty() {
        return clause.to_owned();
    }
    if has_top_level_or(filter) { format!("({filter}) AND {clause}") } else { format!("{filter} AND {clause}") }
}

/// Whether `filter` has an `OR` outside parentheses and quotes (where an
/// `AND` written after it would bind to its last term only).
fn has_top_level_or(filter: &str) -> bool {
    let (mut depth, mut quote, mut word) = (0i32, None::<char>, String::new());
    for c in filter.chars().chain([' ']) {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if depth == 0 && word.eq_ignore_ascii_case("or") {
            return true;
        }
        word.clear();
        match c {
            '\'' | '"' => quote = Some(c),
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
    }
    false
}

/// The filter after the helpers changed from `before` to `now`: each
/// helper's previous condition is replaced by its new one; one already in
/// the text stays once. `static/hardware.js` does the same as the helpers
/// change, so a form sent with or without the script gives one filter.
pub fn compose(filter: &str, before: &Helpers, now: &Helpers) -> String {
    let mut out = filter.trim().to_owned();
    for (old, new) in before.clauses().iter().zip(now.clauses()) {
        if *old != new {
            out = without(&out, old);
        }
        out = with(&out, &new);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cluster: &str, props: Value, state: api::NodeState) -> api::Node {
        serde_json::from_value(serde_json::json!({
            "name": name, "site": "lille", "cluster": cluster, "state": state.as_str(), "policy": "in_service",
            "macs": [], "properties": props, "boot_target": "local",
            "created_at": "2026-12-01T00:00:00Z", "updated_at": "2026-12-01T00:00:00Z"
        }))
        .expect("a node")
    }

    fn gpu(name: &str, model: &str, state: api::NodeState) -> api::Node {
        node(
            name,
            "chifflot",
            serde_json::json!({"cputype": "Intel Xeon Gold 6126", "cpu_microarch": "Skylake-SP", "core_count": 24, "cpu_count": 2,
                "cpucore": 12, "memnode": 196_608, "gpu_count": 2, "gpu_model": model, "gpu_mem": 16_384, "accel_type": "gpu",
                "disk_count": 4, "disktype": "SATA/SSD", "eth_rate": 25, "ib_rate": 0, "exotic": false}),
            state,
        )
    }

    #[test]
    fn a_cluster_reads_as_its_facts_and_a_mixed_one_counts_each() {
        let nodes = [
            gpu("chifflot-10", "Tesla V100", api::NodeState::Reserved),
            gpu("chifflot-2", "Tesla P100", api::NodeState::Available),
            gpu("chifflot-1", "Tesla P100", api::NodeState::Available),
        ];
        let sites = catalog(&nodes, Some(&["chifflot-10".to_owned()]));
        assert_eq!(sites.len(), 1);
        let c = &sites[0].clusters[0];
        assert_eq!((c.name.as_str(), c.site.as_str(), c.nodes, c.matching), ("chifflot", "lille", 3, Some(1)));
        assert_eq!(c.cpu, "Intel Xeon Gold 6126 (Skylake-SP)");
        assert_eq!(c.cores, "24 (2 CPUs × 12)");
        assert_eq!(c.memory, "192 GiB");
        // Natural order (chifflot-1, -2, -10): the P100s come first.
        assert_eq!(c.gpus, "2 × Tesla P100 (16 GiB each) on 2 nodes; 2 × Tesla V100 (16 GiB each) on 1 node");
        assert_eq!(c.accelerators, "none");
        assert_eq!(c.disks, "4, main disk SATA/SSD");
        assert_eq!(c.network, "25 Gbit/s Ethernet");
        assert_eq!(c.exotic, "no");
        assert_eq!(c.states, "2 available, 1 reserved");
    }

    #[test]
    fn fpgas_infiniband_and_bare_nodes_read_in_words() {
        let fpga = node(
            "servan-1",
            "servan",
            serde_json::json!({"accel_type": "fpga", "accel_model": "Alveo U200", "fpga_count": 1, "gpu_count": 0,
                "eth_rate": 25, "ib_rate": 100, "ib_count": 2, "exotic": true, "memnode": 1536}),
            api::NodeState::Maintenance,
        );
        assert_eq!(accelerators(&fpga), "1 × Alveo U200 (fpga)");
        assert_eq!(gpus(&fpga), "none");
        assert_eq!(network(&fpga), "25 Gbit/s Ethernet, 2 × 100 Gbit/s InfiniBand");
        assert_eq!(exotic(&fpga), "yes: prototype hardware, leased only on request");
        assert_eq!(memory(&fpga), "1.5 GiB");
        let bare = node("sim-1", "sim", serde_json::json!({"cputype": "", "memnode": 0}), api::NodeState::Dead);
        for fact in [cpu(&bare), cores(&bare), memory(&bare), disks(&bare), network(&bare)] {
            assert_eq!(fact, UNKNOWN);
        }
        assert_eq!(states([&fpga, &bare]), "1 maintenance, 1 dead");
    }

    #[test]
    fn helpers_write_their_conditions_into_the_filter() {
        let none = Helpers::default();
        let chifflot = Helpers { cluster: "chifflot".into(), min_gpus: "2".into(), ..Helpers::default() };
        assert_eq!(compose("", &none, &chifflot), "cluster = 'chifflot' AND gpu_count >= 2");
        // Typed text stays; an OR of its own is put in parentheses.
        assert_eq!(compose("NOT exotic", &none, &chifflot), "NOT exotic AND cluster = 'chifflot' AND gpu_count >= 2");
        assert_eq!(compose("a = 1 OR b = 2", &none, &chifflot), "(a = 1 OR b = 2) AND cluster = 'chifflot' AND gpu_count >= 2");
        assert_eq!(compose("(a = 1 or b = 2)", &none, &chifflot), "(a = 1 or b = 2) AND cluster = 'chifflot' AND gpu_count >= 2");
        assert_eq!(compose("m = 'X OR Y'", &none, &chifflot), "m = 'X OR Y' AND cluster = 'chifflot' AND gpu_count >= 2");
        // Sent again unchanged: nothing is added twice.
        let once = compose("", &none, &chifflot);
        assert_eq!(compose(&once, &chifflot, &chifflot), once);
        // A helper changed: its old condition is replaced, the others kept.
        let servan = Helpers { cluster: "servan".into(), ..chifflot.clone() };
        assert_eq!(compose(&once, &chifflot, &servan), "gpu_count >= 2 AND cluster = 'servan'");
        // Unset: its condition goes.
        assert_eq!(compose(&once, &chifflot, &none), "");
        // Memory in GiB, models quoted; nonsense numbers are unset.
        let more = Helpers { gpu_model: "O'Brien X1".into(), min_memory: "192".into(), min_gpus: "-1".into(), ..none.clone() };
        assert_eq!(compose("", &none, &more), "gpu_model = 'O''Brien X1' AND memnode >= 196608");
        assert_eq!(positive("+2"), None, "digits only, as the script reads it");
        // Whole conditions only: one that starts another is neither taken
        // for it nor cut out of it.
        let two = Helpers { min_gpus: "2".into(), ..none.clone() };
        assert_eq!(compose("gpu_count >= 20", &none, &two), "gpu_count >= 20 AND gpu_count >= 2");
        assert_eq!(compose("gpu_count >= 20 AND gpu_count >= 2", &two, &none), "gpu_count >= 20");
    }
}
