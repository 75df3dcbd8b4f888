//! A reference import's decision for one node: add it, update it, or leave
//! it as it is. Pure; the store reads the node's stored facts and writes
//! what this decides, and nothing else compares them.

/// The facts of a node that a reference import writes and compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportedFacts<'a> {
    pub site: &'a str,
    pub cluster: &'a str,
    pub ip: Option<&'a str>,
    /// The hash of the reference description (properties and the rest of
    /// the description change with it).
    pub reference_sha256: Option<&'a str>,
    /// Boot MACs, in order (the first is the one DHCP answers first).
    pub macs: &'a [String],
}

/// What an import does with one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportAction {
    /// Not known: enrolled as new.
    Add,
    /// Known, with other facts: rewritten (admin properties and the BMC
    /// kept).
    Update,
    /// Known with the same facts: nothing written.
    Unchanged,
}

/// What importing `imported` does to a node stored with `stored` (`None`:
/// no node of that name).
pub fn import_action(stored: Option<&ImportedFacts<'_>>, imported: &ImportedFacts<'_>) -> ImportAction {
    match stored {
        None => ImportAction::Add,
        Some(s) if s == imported => ImportAction::Unchanged,
        Some(_) => ImportAction::Update,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn macs(m: &[&str]) -> Vec<String> {
        m.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn new_node_is_added() {
        let m = macs(&["02:00:00:00:00:01"]);
        let facts = ImportedFacts { site: "s", cluster: "c", ip: None, reference_sha256: Some("h"), macs: &m };
        assert_eq!(import_action(None, &facts), ImportAction::Add);
    }

    #[test]
    fn same_facts_are_unchanged() {
        let m = macs(&["02:00:00:00:00:01", "02:00:00:00:00:02"]);
        let facts = ImportedFacts { site: "s", cluster: "c", ip: Some("10.0.0.1"), reference_sha256: Some("h"), macs: &m };
        assert_eq!(import_action(Some(&facts), &facts), ImportAction::Unchanged);
        let none = ImportedFacts { site: "s", cluster: "c", ip: None, reference_sha256: None, macs: &[] };
        assert_eq!(import_action(Some(&none), &none), ImportAction::Unchanged);
    }

    #[test]
    fn any_compared_fact_is_a_change() {
        let m = macs(&["02:00:00:00:00:01", "02:00:00:00:00:02"]);
        let base = ImportedFacts { site: "s", cluster: "c", ip: Some("10.0.0.1"), reference_sha256: Some("h"), macs: &m };
        let reordered = macs(&["02:00:00:00:00:02", "02:00:00:00:00:01"]);
        let fewer = macs(&["02:00:00:00:00:01"]);
        for other in [
            ImportedFacts { site: "t", ..base },
            ImportedFacts { cluster: "d", ..base },
            ImportedFacts { ip: None, ..base },
            ImportedFacts { ip: Some("10.0.0.2"), ..base },
            ImportedFacts { reference_sha256: Some("g"), ..base },
            ImportedFacts { reference_sha256: None, ..base },
            // MAC order counts: the first boots first.
            ImportedFacts { macs: &reordered, ..base },
            ImportedFacts { macs: &fewer, ..base },
        ] {
            assert_eq!(import_action(Some(&base), &other), ImportAction::Update, "{other:?}");
        }
    }
}
