//! Fuzzes the filter language: any UTF-8 text either fails to parse with an
//! error pointing into it, or parses to a filter that evaluates without
//! panicking and whose canonical text parses back to the same tree.
//!
//! This target owns only the harness; it must not need anything beyond the
//! public `filter` and `model::properties` API.

#![no_main]

use ferrum_controller::filter::{Filter, FilterErrorKind};
use ferrum_controller::model::properties::{
    PropValue, Properties, is_standard, with_standard_defaults,
};
use libfuzzer_sys::fuzz_target;

/// The standard properties plus one custom property that only some nodes
/// carry.
fn is_known(name: &str) -> bool {
    is_standard(name) || name == "rack"
}

fn node(pairs: &[(&str, PropValue)]) -> Properties {
    with_standard_defaults(
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect(),
    )
}

fn nodes() -> [Properties; 2] {
    [
        node(&[
            ("cluster", "chifflot".into()),
            ("host", "chifflot-1".into()),
            ("gpu_count", 2.into()),
            ("gpu_model", "Tesla P100-PCIE-16GB".into()),
            ("memnode", 196_608.into()),
            ("rack", "r1".into()),
        ]),
        node(&[
            ("cluster", "servan".into()),
            ("host", "servan-1".into()),
            ("accel_type", "fpga".into()),
            ("accel_model", "Alveo U200".into()),
            ("exotic", true.into()),
            ("ib_rate", PropValue::Float(100.5)),
        ]),
    ]
}

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let filter = match Filter::parse(source, &is_known) {
        Ok(filter) => filter,
        Err(error) => {
            assert!(error.position >= 1, "{error}");
            assert!(error.position <= source.chars().count() + 1, "{error}");
            return;
        }
    };
    let nodes = nodes();
    let verdicts: Vec<bool> = nodes.iter().map(|n| filter.matches(n)).collect();
    let _ = filter.properties();

    // Canonical text may be longer than the source (spaces, doubled
    // quotes), so only the length limit may stop it from parsing again.
    let canonical = filter.to_string();
    match Filter::parse(&canonical, &is_known) {
        Ok(again) => {
            assert_eq!(again.expr(), filter.expr(), "{source:?} -> {canonical:?}");
            let again_verdicts: Vec<bool> = nodes.iter().map(|n| again.matches(n)).collect();
            assert_eq!(again_verdicts, verdicts, "{source:?} -> {canonical:?}");
        }
        Err(error) => assert_eq!(error.kind, FilterErrorKind::TooLong, "{canonical:?}: {error}"),
    }
});
