//! Node properties: the flat, OAR-named key/value view of a node that the
//! filter language selects on (`gpu_count >= 2 AND NOT exotic`).
//!
//! This module owns the value type and the list of standard property names.
//! It does not know where values come from (the Grid'5000 reference
//! importer, admin input, agent reports) nor how filters are parsed.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// One property value. Serialised as the bare JSON scalar (`true`, `2`,
/// `"A100"`), which is also how it is stored in the database.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PropValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl fmt::Display for PropValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PropValue::Bool(b) => write!(f, "{b}"),
            PropValue::Int(i) => write!(f, "{i}"),
            PropValue::Float(x) => write!(f, "{x}"),
            PropValue::Str(s) => f.write_str(s),
        }
    }
}

impl From<bool> for PropValue {
    fn from(v: bool) -> Self {
        PropValue::Bool(v)
    }
}
impl From<i64> for PropValue {
    fn from(v: i64) -> Self {
        PropValue::Int(v)
    }
}
impl From<&str> for PropValue {
    fn from(v: &str) -> Self {
        PropValue::Str(v.to_owned())
    }
}
impl From<String> for PropValue {
    fn from(v: String) -> Self {
        PropValue::Str(v)
    }
}

/// A node's properties, ordered by name so that listings and snapshots are
/// stable.
pub type Properties = BTreeMap<String, PropValue>;

/// The standard properties every node carries (SPEC §3), with the value a
/// node has when nothing says otherwise. Every node gets all of them, so a
/// filter on a standard property never meets a missing value:
/// `gpu_count >= 1` is simply false on a node without GPUs.
pub const STANDARD: &[(&str, StandardDefault)] = &[
    ("site", StandardDefault::Str),
    ("cluster", StandardDefault::Str),
    ("host", StandardDefault::Str),
    ("cpuarch", StandardDefault::Str),
    ("cpucore", StandardDefault::Int),
    ("cputype", StandardDefault::Str),
    ("memnode", StandardDefault::Int),
    ("gpu_count", StandardDefault::Int),
    ("gpu_model", StandardDefault::Str),
    ("gpu_mem", StandardDefault::Int),
    ("accel_type", StandardDefault::Str),
    ("accel_model", StandardDefault::Str),
    ("disktype", StandardDefault::Str),
    ("disk_count", StandardDefault::Int),
    ("eth_rate", StandardDefault::Int),
    ("ib_rate", StandardDefault::Int),
    ("exotic", StandardDefault::Bool),
];

/// The default of a standard property: `''`, `0` or `false`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StandardDefault {
    Str,
    Int,
    Bool,
}

impl StandardDefault {
    pub fn value(self) -> PropValue {
        match self {
            StandardDefault::Str => PropValue::Str(String::new()),
            StandardDefault::Int => PropValue::Int(0),
            StandardDefault::Bool => PropValue::Bool(false),
        }
    }
}

/// Fills in every standard property that `props` lacks with its default.
pub fn with_standard_defaults(mut props: Properties) -> Properties {
    for (name, default) in STANDARD {
        props.entry((*name).to_owned()).or_insert_with(|| default.value());
    }
    props
}

/// Whether `name` is one of the standard properties.
pub fn is_standard(name: &str) -> bool {
    STANDARD.iter().any(|(n, _)| *n == name)
}

/// Properties that are not stored but derived from the node when a filter
/// reads them, under their OAR names so that Grid'5000 filters work
/// unchanged: `network_address`, the node's fully qualified name
/// (`chifflot-1.lille.ferrum.internal`), and `type`, OAR's resource type,
/// `'default'` on every node (ferrum has no disk or VLAN resources, so
/// `type = 'disk'` matches nothing).
pub const DERIVED: &[&str] = &["network_address", "type"];

/// The value of `type` on every node.
pub const DEFAULT_TYPE: &str = "default";

/// Adds the [`DERIVED`] properties of a node whose fully qualified name is
/// `fqdn`.
pub fn with_derived(mut props: Properties, fqdn: String) -> Properties {
    props.insert("network_address".to_owned(), PropValue::Str(fqdn));
    props.insert("type".to_owned(), PropValue::Str(DEFAULT_TYPE.to_owned()));
    props
}

/// Whether `name` is set by ferrum rather than by an admin: a standard
/// property taken from the node itself or a [`DERIVED`] one.
pub fn is_reserved_name(name: &str) -> bool {
    matches!(name, "site" | "cluster" | "host") || DERIVED.contains(&name)
}

/// The properties a node has: those of its reference description (or the
/// defaults), overridden one by one by those an admin set.
pub fn effective(
    reference: &serde_json::Map<String, serde_json::Value>,
    admin: &serde_json::Map<String, serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut all = reference.clone();
    all.extend(admin.iter().map(|(k, v)| (k.clone(), v.clone())));
    all
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn admin_properties_override_the_reference_ones() {
        let reference = map(json!({"gpu_count": 2, "cpu_arch": "x86_64", "exotic": false}));
        let admin = map(json!({"exotic": true, "rack": "r12"}));
        assert_eq!(effective(&reference, &admin), map(json!({"gpu_count": 2, "cpu_arch": "x86_64", "exotic": true, "rack": "r12"})));
    }

    #[test]
    fn derived_properties_are_the_fqdn_and_the_default_type() {
        let props = with_derived(Properties::new(), "a-1.s.example".into());
        assert_eq!(props.get("network_address"), Some(&PropValue::from("a-1.s.example")));
        assert_eq!(props.get("type"), Some(&PropValue::from("default")));
        assert!(DERIVED.iter().all(|n| is_reserved_name(n)) && is_reserved_name("host") && !is_reserved_name("gpu_count"));
    }

    #[test]
    fn no_admin_properties_leave_the_reference_ones() {
        let reference = map(json!({"gpu_count": 2}));
        assert_eq!(effective(&reference, &serde_json::Map::new()), reference);
        assert_eq!(effective(&serde_json::Map::new(), &reference), reference);
    }
}
