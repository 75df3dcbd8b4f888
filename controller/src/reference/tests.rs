//! Tests of the reference import on the project's Grid'5000 sample
//! (`fixtures/g5k-reference`, located by [`fixtures_dir`]; set
//! `FERRUM_FIXTURES` when the crate is built outside the workspace) and on
//! small hand-written or synthesized trees in temporary directories.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use serde_json::{Value, json};

use super::*;
use crate::model::properties::{PropValue, STANDARD, StandardDefault, with_standard_defaults};

fn fixture(site: &str, cluster: &str, node: &str) -> NodeDescription {
    let path = fixtures_dir().join("sites").join(site).join("clusters").join(cluster).join("nodes").join(format!("{node}.json"));
    read_node(&path, site, cluster).expect("fixture node reads")
}

fn props(entries: &[(&str, PropValue)]) -> Properties {
    entries.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

fn s(v: &str) -> PropValue {
    PropValue::Str(v.to_owned())
}

fn i(v: i64) -> PropValue {
    PropValue::Int(v)
}

fn b(v: bool) -> PropValue {
    PropValue::Bool(v)
}

/// Copies a directory tree (files and directories only).
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("readdir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Writes `nodes` (site, cluster, file stem, JSON) as a tree under `dir`.
fn write_tree(dir: &Path, nodes: &[(&str, &str, &str, Value)]) {
    for (site, cluster, stem, node) in nodes {
        let nodes_dir = dir.join("sites").join(site).join("clusters").join(cluster).join("nodes");
        fs::create_dir_all(&nodes_dir).expect("mkdir");
        fs::write(nodes_dir.join(format!("{stem}.json")), node.to_string()).expect("write");
    }
}

fn flat(node: Value) -> Result<NodeDescription, ReferenceError> {
    flatten("site", "cluster", &node)
}

fn field_error(node: Value) -> (String, String) {
    match flat(node) {
        Err(ReferenceError::Field { field, message, path }) => {
            assert_eq!(path, Path::new("sites/site/clusters/cluster/nodes/x-1.json"));
            (field, message)
        }
        other => panic!("expected a field error, got {other:?}"),
    }
}

// ---- the real fixtures -------------------------------------------------

#[test]
fn chifflot_1_flattens_to_oar_properties() {
    let node = fixture("lille", "chifflot", "chifflot-1");
    assert_eq!(node.name, "chifflot-1");
    assert_eq!((node.site.as_str(), node.cluster.as_str()), ("lille", "chifflot"));
    assert_eq!(node.macs, ["3c:fd:fe:c1:60:30"]);
    assert_eq!(node.ip.as_deref(), Some("172.16.36.1"));
    assert_eq!(node.reference["chassis"]["serial"], "43ZLYQ2");
    assert_eq!(
        node.properties,
        props(&[
            ("site", s("lille")),
            ("cluster", s("chifflot")),
            ("host", s("chifflot-1")),
            ("cpuarch", s("x86_64")),
            ("cpucore", i(12)),
            ("cputype", s("Intel Xeon Gold 6126")),
            ("memnode", i(196_608)),
            ("gpu_count", i(2)),
            ("gpu_model", s("Tesla P100-PCIE-16GB")),
            ("gpu_mem", i(16_384)),
            ("accel_type", s("gpu")),
            ("accel_model", s("Tesla P100-PCIE-16GB")),
            ("disktype", s("SATA/SSD")),
            ("disk_count", i(6)),
            ("eth_rate", i(25)),
            ("ib_rate", i(0)),
            ("exotic", b(false)),
            ("cpu_count", i(2)),
            ("core_count", i(24)),
            ("thread_count", i(48)),
            ("cpu_microarch", s("Skylake-SP")),
            ("gpu_vendor", s("Nvidia")),
            ("fpga_count", i(0)),
            ("ib_count", i(0)),
            ("memcore", i(8_192)),
            ("memcpu", i(98_304)),
        ])
    );
}

#[test]
fn chifflot_7_has_v100s() {
    let node = fixture("lille", "chifflot", "chifflot-7");
    assert_eq!(node.macs, ["3c:fd:fe:c1:70:90"]);
    assert_eq!(node.ip.as_deref(), Some("172.16.36.7"));
    assert_eq!(
        node.properties,
        props(&[
            ("site", s("lille")),
            ("cluster", s("chifflot")),
            ("host", s("chifflot-7")),
            ("cpuarch", s("x86_64")),
            ("cpucore", i(12)),
            ("cputype", s("Intel Xeon Gold 6126")),
            ("memnode", i(196_608)),
            ("gpu_count", i(2)),
            ("gpu_model", s("Tesla V100-PCIE-32GB")),
            ("gpu_mem", i(32_768)),
            ("accel_type", s("gpu")),
            ("accel_model", s("Tesla V100-PCIE-32GB")),
            ("disktype", s("SATA/SSD")),
            ("disk_count", i(6)),
            ("eth_rate", i(25)),
            ("ib_rate", i(0)),
            ("exotic", b(false)),
            ("cpu_count", i(2)),
            ("core_count", i(24)),
            ("thread_count", i(48)),
            ("cpu_microarch", s("Skylake-SP")),
            ("gpu_vendor", s("Nvidia")),
            ("fpga_count", i(0)),
            ("ib_count", i(0)),
            ("memcore", i(8_192)),
            ("memcpu", i(98_304)),
        ])
    );
}

#[test]
fn servan_1_is_an_exotic_fpga_node() {
    let node = fixture("grenoble", "servan", "servan-1");
    // eth0 only: eth1/eth2 are not mounted, eth3 is disabled, the BMC is
    // management and the FPGA ports are not `Ethernet`.
    assert_eq!(node.macs, ["40:a6:b7:a0:af:30"]);
    assert_eq!(node.ip.as_deref(), Some("172.16.23.1"));
    assert_eq!(
        node.properties,
        props(&[
            ("site", s("grenoble")),
            ("cluster", s("servan")),
            ("host", s("servan-1")),
            ("cpuarch", s("x86_64")),
            ("cpucore", i(24)),
            // `processor.version` is the number 7352 in this file.
            ("cputype", s("AMD EPYC 7352")),
            ("memnode", i(131_072)),
            ("gpu_count", i(0)),
            ("gpu_model", s("")),
            ("gpu_mem", i(0)),
            ("accel_type", s("fpga")),
            ("accel_model", s("Alveo U200")),
            ("disktype", s("NVME/SSD")),
            ("disk_count", i(2)),
            ("eth_rate", i(25)),
            ("ib_rate", i(0)),
            ("exotic", b(true)),
            ("cpu_count", i(2)),
            ("core_count", i(48)),
            ("thread_count", i(96)),
            ("cpu_microarch", s("Zen 2")),
            ("gpu_vendor", s("")),
            ("fpga_count", i(1)),
            ("ib_count", i(0)),
            ("memcore", i(2_730)),
            ("memcpu", i(65_536)),
        ])
    );
}

#[test]
fn fixture_tree_reads_in_natural_order() {
    let nodes = read_tree(&fixtures_dir()).expect("fixture tree reads");
    let names: Vec<(&str, &str, &str)> = nodes.iter().map(|n| (n.site.as_str(), n.cluster.as_str(), n.name.as_str())).collect();
    let mut expected = vec![("grenoble", "servan", "servan-1".to_owned()), ("grenoble", "servan", "servan-2".to_owned())];
    expected.extend((1..=8).map(|k| ("lille", "chifflot", format!("chifflot-{k}"))));
    let expected: Vec<(&str, &str, &str)> = expected.iter().map(|(a, b, c)| (*a, *b, c.as_str())).collect();
    assert_eq!(names, expected);
    for node in &nodes {
        assert_eq!(node.reference["uid"], node.name.as_str());
        assert_eq!(node.macs.len(), 1, "{}", node.name);
        assert!(node.ip.is_some(), "{}", node.name);
    }
}

#[test]
fn every_standard_property_is_set_with_its_type() {
    for node in read_tree(&fixtures_dir()).expect("fixture tree reads") {
        assert_eq!(with_standard_defaults(node.properties.clone()), node.properties, "{}", node.name);
        for (name, default) in STANDARD {
            let value = &node.properties[*name];
            let same_type = matches!(
                (default, value),
                (StandardDefault::Str, PropValue::Str(_))
                    | (StandardDefault::Int, PropValue::Int(_))
                    | (StandardDefault::Bool, PropValue::Bool(_))
            );
            assert!(same_type, "{}: {name} = {value:?}", node.name);
        }
    }
}

// ---- tree layout -------------------------------------------------------

#[test]
fn repository_layout_is_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("data/grid5000");
    copy_tree(&fixtures_dir(), &root);
    fs::write(root.join("grid5000.json"), r#"{"uid": "grid5000", "type": "grid"}"#).expect("write");

    let expected = read_tree(&fixtures_dir()).expect("fixture tree reads");
    assert_eq!(find_root(dir.path()).expect("root"), root);
    assert_eq!(read_tree(dir.path()).expect("checkout reads"), expected);
    assert_eq!(read_tree(&root).expect("data/grid5000 reads"), expected);
}

#[test]
fn empty_directory_has_no_sites() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = read_tree(dir.path()).expect_err("empty dir");
    assert!(matches!(&err, ReferenceError::NoSites { dir: d } if d == dir.path()), "{err:?}");
    assert!(err.to_string().contains(&dir.path().display().to_string()), "{err}");

    // `grid5000.json` alone is not enough.
    fs::write(dir.path().join("grid5000.json"), "{}").expect("write");
    assert!(matches!(read_tree(dir.path()), Err(ReferenceError::NoSites { .. })));
}

#[test]
fn missing_directory_is_an_io_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope");
    let err = read_tree(&missing).expect_err("missing dir");
    assert!(matches!(&err, ReferenceError::Io { path, .. } if *path == missing), "{err:?}");
}

#[test]
fn empty_sites_directory_gives_no_nodes() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(dir.path().join("sites/lille/clusters/empty/nodes")).expect("mkdir");
    assert_eq!(read_tree(dir.path()).expect("reads"), []);
}

#[test]
fn only_node_files_are_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_tree(&fixtures_dir(), dir.path());
    let nodes_dir = dir.path().join("sites/lille/clusters/chifflot/nodes");
    fs::write(nodes_dir.join("README.md"), "not a node").expect("write");
    fs::write(nodes_dir.join(".chifflot-1.json.swp"), "junk").expect("write");
    fs::write(nodes_dir.join(".hidden.json"), "junk").expect("write");
    fs::write(nodes_dir.join("chifflot-1.json~"), "junk").expect("write");
    fs::create_dir(nodes_dir.join("old.json")).expect("mkdir");
    // Site-level directories other than clusters/ hold no nodes.
    fs::create_dir_all(dir.path().join("sites/lille/servers")).expect("mkdir");
    fs::write(dir.path().join("sites/lille/servers/srv-1.json"), r#"{"uid": "srv-1"}"#).expect("write");
    fs::write(dir.path().join("sites/lille/pdus.json"), "[]").expect("write");

    assert_eq!(read_tree(dir.path()).expect("reads").len(), 10);
}

#[test]
fn broken_json_names_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_tree(&fixtures_dir(), dir.path());
    let broken = dir.path().join("sites/lille/clusters/chifflot/nodes/chifflot-4.json");
    fs::write(&broken, r#"{"uid": "chifflot-4", "#).expect("write");

    let err = read_tree(dir.path()).expect_err("broken JSON");
    assert!(matches!(&err, ReferenceError::Json { path, .. } if *path == broken), "{err:?}");
    assert!(err.to_string().contains("chifflot-4.json"), "{err}");
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn uid_must_match_the_file_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_tree(dir.path(), &[("lille", "chifflot", "chifflot-9", json!({"uid": "chifflot-1"}))]);
    let err = read_tree(dir.path()).expect_err("mismatch");
    match &err {
        ReferenceError::UidMismatch { path, uid, file_stem } => {
            assert!(path.ends_with("nodes/chifflot-9.json"));
            assert_eq!((uid.as_str(), file_stem.as_str()), ("chifflot-1", "chifflot-9"));
        }
        other => panic!("expected UidMismatch, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("chifflot-1") && message.contains("chifflot-9.json"), "{message}");
}

#[test]
fn a_node_name_is_used_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_tree(dir.path(), &[("lille", "a", "n-1", json!({"uid": "n-1"})), ("nancy", "b", "n-1", json!({"uid": "n-1"}))]);
    let err = read_tree(dir.path()).expect_err("duplicate");
    match &err {
        ReferenceError::Duplicate { path, name, first } => {
            assert_eq!(name, "n-1");
            assert!(first.starts_with(dir.path().join("sites/lille")), "{first:?}");
            assert!(path.starts_with(dir.path().join("sites/nancy")), "{path:?}");
        }
        other => panic!("expected Duplicate, got {other:?}"),
    }
}

#[test]
fn field_errors_from_a_tree_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_tree(dir.path(), &[("lille", "c", "c-1", json!({"uid": "c-1", "main_memory": {"ram_size": "192 GiB"}}))]);
    let err = read_tree(dir.path()).expect_err("bad field");
    let file = dir.path().join("sites/lille/clusters/c/nodes/c-1.json");
    assert!(matches!(&err, ReferenceError::Field { path, field, .. } if *path == file && field == "main_memory.ram_size"), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("{}: field `main_memory.ram_size`: expected a non-negative integer, found a string", file.display())
    );
}

// ---- synthetic full-size tree ------------------------------------------

#[test]
fn synthesized_tree_has_940_nodes_over_12_sites() {
    let dir = tempfile::tempdir().expect("tempdir");
    synthesize_tree(&fixtures_dir(), dir.path(), 940).expect("synthesize");
    assert!(dir.path().join("grid5000.json").is_file());

    let nodes = read_tree(dir.path()).expect("synthetic tree reads");
    assert_eq!(nodes.len(), 940);
    let sites: BTreeSet<&str> = nodes.iter().map(|n| n.site.as_str()).collect();
    assert_eq!(sites.len(), 12);
    let clusters: BTreeSet<&str> = nodes.iter().map(|n| n.cluster.as_str()).collect();
    assert_eq!(clusters.len(), 59);
    let macs: BTreeSet<&str> = nodes.iter().flat_map(|n| n.macs.iter().map(String::as_str)).collect();
    assert_eq!(macs.len(), 940, "boot MACs are unique");
    assert_eq!(nodes.iter().filter(|n| n.properties["exotic"] == PropValue::Bool(true)).count(), 12 * 16, "servan clones");

    // Sorted, naturally.
    for pair in nodes.windows(2) {
        let key = |n: &NodeDescription| (n.site.clone(), n.cluster.clone(), n.name.clone());
        let order = natural_cmp(&pair[0].site, &pair[1].site)
            .then_with(|| natural_cmp(&pair[0].cluster, &pair[1].cluster))
            .then_with(|| natural_cmp(&pair[0].name, &pair[1].name));
        assert_eq!(order, std::cmp::Ordering::Less, "{:?} then {:?}", key(&pair[0]), key(&pair[1]));
    }
    let position = |name: &str| nodes.iter().position(|n| n.name == name).expect(name);
    assert_eq!(position("chifflot3-2") + 1, position("chifflot3-3"));
    assert!(position("chifflot3-2") < position("chifflot3-10"));

    // A clone flattens like its template, but for its names.
    let template = fixture("lille", "chifflot", "chifflot-1");
    let clone = &nodes[position("chifflot3-1")];
    assert_eq!(clone.site, "lille");
    let mut expected = template.properties.clone();
    expected.insert("site".into(), s("lille"));
    expected.insert("cluster".into(), s("chifflot3"));
    expected.insert("host".into(), s("chifflot3-1"));
    assert_eq!(clone.properties, expected);
    assert_eq!(clone.reference["chassis"], template.reference["chassis"]);
}

#[test]
fn synthesized_tree_of_any_size() {
    for count in [0, 1, 17] {
        let dir = tempfile::tempdir().expect("tempdir");
        synthesize_tree(&fixtures_dir(), dir.path(), count).expect("synthesize");
        assert_eq!(read_tree(dir.path()).expect("reads").len(), count);
    }
}

// ---- flattening edge cases ---------------------------------------------

#[test]
fn a_bare_node_gets_defaults() {
    let node = flat(json!({
        "uid": "x-1",
        "architecture": null,
        "processor": {"model": null, "version": null},
        "main_memory": null,
        "gpu_devices": null,
        "other_devices": null,
        "storage_devices": null,
        "network_adapters": null,
        "exotic": null,
    }))
    .expect("flattens");
    assert_eq!(node.name, "x-1");
    assert!(node.macs.is_empty());
    assert_eq!(node.ip, None);
    let mut expected = with_standard_defaults(props(&[("site", s("site")), ("cluster", s("cluster")), ("host", s("x-1"))]));
    for extra in ["cpu_count", "core_count", "thread_count", "fpga_count", "ib_count", "memcore", "memcpu"] {
        expected.insert(extra.into(), i(0));
    }
    expected.insert("cpu_microarch".into(), s(""));
    expected.insert("gpu_vendor".into(), s(""));
    assert_eq!(node.properties, expected);
    assert_eq!(flat(json!({"uid": "x-1"})).expect("flattens").properties, expected);
}

#[test]
fn wrong_types_name_the_field() {
    let cases = [
        (json!({"uid": "x-1", "main_memory": {"ram_size": "big"}}), "main_memory.ram_size"),
        (json!({"uid": "x-1", "main_memory": {"ram_size": -1}}), "main_memory.ram_size"),
        (json!({"uid": "x-1", "main_memory": {"ram_size": 1.5}}), "main_memory.ram_size"),
        (json!({"uid": "x-1", "exotic": "yes"}), "exotic"),
        (json!({"uid": "x-1", "architecture": [1]}), "architecture"),
        (json!({"uid": "x-1", "architecture": {"nb_cores": true}}), "architecture.nb_cores"),
        (json!({"uid": "x-1", "processor": {"version": ["v2"]}}), "processor.version"),
        (json!({"uid": "x-1", "gpu_devices": []}), "gpu_devices"),
        (json!({"uid": "x-1", "gpu_devices": {"nvidia0": {"memory": "16G"}}}), "gpu_devices.nvidia0.memory"),
        (json!({"uid": "x-1", "other_devices": {"fpga0": {"type": "fpga", "count": "one"}}}), "other_devices.fpga0.count"),
        (json!({"uid": "x-1", "storage_devices": [{"id": "disk0"}, 3]}), "storage_devices[1]"),
        (json!({"uid": "x-1", "storage_devices": [{"interface": 3}]}), "storage_devices[0].interface"),
        (json!({"uid": "x-1", "network_adapters": [{"interface": "Ethernet", "mounted": "true"}]}), "network_adapters[0].mounted"),
        (
            json!({"uid": "x-1", "network_adapters": [{}, {"interface": "Ethernet", "mounted": true, "mac": "zz:00:00:00:00:00"}]}),
            "network_adapters[1].mac",
        ),
        (json!({"uid": "x-1", "network_adapters": [{"rate": 1e30}]}), "network_adapters[0].rate"),
        (json!({"uid": "x-1", "network_adapters": [{"rate": 18_446_744_073_709_551_615u64}]}), "network_adapters[0].rate"),
    ];
    for (node, want) in cases {
        let (field, message) = field_error(node.clone());
        assert_eq!(field, want, "{node}: {message}");
    }
}

#[test]
fn uid_is_required() {
    for node in [json!({}), json!({"uid": ""}), json!({"uid": 3}), json!([1, 2])] {
        let err = flat(node.clone()).expect_err("no uid");
        let ReferenceError::Field { field, path, .. } = &err else {
            panic!("{node}: {err:?}");
        };
        assert!(field == "uid" || field == "(root)", "{node}: {field}");
        assert_eq!(path, Path::new("sites/site/clusters/cluster/nodes/?.json"));
    }
}

#[test]
fn boot_nic_is_the_mounted_enabled_non_management_ethernet() {
    let node = flat(json!({
        "uid": "x-1",
        "network_adapters": [
            {"device": "bmc", "interface": "Ethernet", "enabled": true, "mounted": true, "management": true, "mac": "00:00:00:00:00:01", "ip": "10.0.0.1"},
            {"device": "eth0", "interface": "Ethernet", "enabled": false, "mounted": true, "mac": "00:00:00:00:00:02", "ip": "10.0.0.2", "rate": 1_000_000_000u64},
            {"device": "eth1", "interface": "Ethernet", "enabled": true, "mounted": false, "mac": "00:00:00:00:00:03", "ip": "10.0.0.3"},
            {"device": "ib0", "interface": "InfiniBand", "enabled": true, "mounted": true, "mac": "00:00:00:00:00:04", "rate": 100_000_000_000u64},
            {"device": "eth2", "interface": "Ethernet", "enabled": true, "mounted": true, "mac": "AA-BB-CC-DD-EE-0F", "ip": "10.0.0.5", "rate": 10_000_000_000u64},
            {"device": "eth3", "interface": "Ethernet", "mounted": true, "mac": "aa:bb:cc:dd:ee:10", "ip": "10.0.0.6", "rate": 100_000_000_000u64},
            {"device": "ib1", "interface": "InfiniBand", "enabled": true, "mountable": true, "rate": 56_000_000_000u64},
            {"device": "ib2", "interface": "InfiniBand", "enabled": true, "rate": 200_000_000_000u64},
            {"device": "ib3", "interface": "InfiniBand", "enabled": false, "mounted": true, "rate": 200_000_000_000u64},
        ],
    }))
    .expect("flattens");
    assert_eq!(node.macs, ["aa:bb:cc:dd:ee:0f", "aa:bb:cc:dd:ee:10"]);
    assert_eq!(node.ip.as_deref(), Some("10.0.0.5"));
    assert_eq!(node.properties["eth_rate"], i(10));
    assert_eq!(node.properties["ib_rate"], i(100));
    assert_eq!(node.properties["ib_count"], i(2));
}

#[test]
fn disktype_comes_from_the_main_disk() {
    let disks = json!([
        {"id": "disk1", "interface": "SAS", "storage": "HDD", "reservation": true},
        {"id": "disk10", "interface": "SATA", "storage": "SSD"},
        {"id": "disk2", "interface": "NVME", "storage": "SSD", "reservation": false},
    ]);
    let node = flat(json!({"uid": "x-1", "storage_devices": disks})).expect("flattens");
    assert_eq!(node.properties["disktype"], s("NVME/SSD"));
    assert_eq!(node.properties["disk_count"], i(3));

    let all_reserved = json!([
        {"id": "disk3", "interface": "SAS", "storage": "HDD", "reservation": true},
        {"id": "disk1", "interface": "SATA", "storage": "SSD", "reservation": true},
    ]);
    let node = flat(json!({"uid": "x-1", "storage_devices": all_reserved})).expect("flattens");
    assert_eq!(node.properties["disktype"], s("SATA/SSD"));

    let storage_only = json!([{"id": "disk0", "storage": "HDD"}]);
    let node = flat(json!({"uid": "x-1", "storage_devices": storage_only})).expect("flattens");
    assert_eq!(node.properties["disktype"], s("HDD"));
}

#[test]
fn gpus_and_other_accelerators() {
    let node = flat(json!({
        "uid": "x-1",
        "gpu_devices": {
            "nvidia10": {"model": "B", "memory": 2_097_152, "vendor": "Nvidia"},
            "nvidia2": {"model": "A100-SXM4-40GB", "memory": 42_949_672_960u64, "vendor": "Nvidia"},
        },
        "other_devices": {"fpga1": {"type": "fpga", "model": "U280"}, "fpga0": {"type": "fpga", "model": "U200", "count": 2}},
    }))
    .expect("flattens");
    assert_eq!(node.properties["gpu_count"], i(2));
    assert_eq!(node.properties["gpu_model"], s("A100-SXM4-40GB"));
    assert_eq!(node.properties["gpu_mem"], i(40_960));
    assert_eq!(node.properties["accel_type"], s("gpu"));
    assert_eq!(node.properties["accel_model"], s("A100-SXM4-40GB"));
    assert_eq!(node.properties["fpga_count"], i(3));

    let node = flat(json!({
        "uid": "x-1",
        "gpu_devices": {},
        "other_devices": {"a": {"model": "untyped"}, "ipu0": {"type": "ipu", "model": "GC200"}},
    }))
    .expect("flattens");
    assert_eq!(node.properties["gpu_count"], i(0));
    assert_eq!(node.properties["accel_type"], s("ipu"));
    assert_eq!(node.properties["accel_model"], s("GC200"));
    assert_eq!(node.properties["fpga_count"], i(0));
}

#[test]
fn cputype_joins_model_and_version() {
    let cputype = |processor: Value| flat(json!({"uid": "x-1", "processor": processor})).expect("flattens").properties["cputype"].clone();
    assert_eq!(cputype(json!({"model": "POWER8NVL", "version": 1.0})), s("POWER8NVL 1.0"));
    assert_eq!(cputype(json!({"model": "AMD EPYC", "version": 7352})), s("AMD EPYC 7352"));
    assert_eq!(cputype(json!({"model": "Intel Xeon", "version": "Gold 6126"})), s("Intel Xeon Gold 6126"));
    assert_eq!(cputype(json!({"model": "Cavium ThunderX2"})), s("Cavium ThunderX2"));
    assert_eq!(cputype(json!({"version": "E5-2630"})), s("E5-2630"));
}

#[test]
fn whole_floats_are_accepted_as_sizes() {
    let node = flat(json!({"uid": "x-1", "main_memory": {"ram_size": 2.147_483_648e9}})).expect("flattens");
    assert_eq!(node.properties["memnode"], i(2_048));
}

#[test]
fn errors_display_path_and_field() {
    let err = ReferenceError::Field {
        path: "sites/a/clusters/b/nodes/b-1.json".into(),
        field: "exotic".into(),
        message: "expected true or false, found a string".into(),
    };
    assert_eq!(err.to_string(), "sites/a/clusters/b/nodes/b-1.json: field `exotic`: expected true or false, found a string");
    let err = ReferenceError::NoSites { dir: "/x".into() };
    assert_eq!(err.to_string(), "no Grid'5000 reference tree in /x: expected /x/sites/ or /x/data/grid5000/sites/");
}
