//! Tests of the filter language: examples, error messages, LIKE, and
//! properties (never panics, canonical text round-trips, logic laws).

use proptest::prelude::*;

use super::eval::{eval, like};
use super::*;
use crate::model::properties::{PropValue, Properties, is_standard, with_standard_defaults};

/// Standard properties plus two custom ones that some nodes lack.
fn is_known(name: &str) -> bool {
    is_standard(name) || name == "rack" || name == "wattmeter"
}

fn parse(source: &str) -> Filter {
    match Filter::parse(source, &is_known) {
        Ok(filter) => filter,
        Err(e) => panic!("{source:?} should parse: {e}"),
    }
}

fn parse_err(source: &str) -> FilterError {
    match Filter::parse(source, &is_known) {
        Ok(filter) => panic!("{source:?} should not parse, got {filter}"),
        Err(e) => e,
    }
}

fn node(pairs: &[(&str, PropValue)]) -> Properties {
    with_standard_defaults(pairs.iter().map(|(name, value)| ((*name).to_owned(), value.clone())).collect())
}

fn chifflot() -> Properties {
    node(&[
        ("site", "lille".into()),
        ("cluster", "chifflot".into()),
        ("host", "chifflot-1".into()),
        ("gpu_count", 2.into()),
        ("gpu_model", "Tesla P100-PCIE-16GB".into()),
        ("exotic", false.into()),
        ("memnode", 196_608.into()),
        ("rack", "r1".into()),
    ])
}

fn servan() -> Properties {
    node(&[
        ("site", "nantes".into()),
        ("cluster", "servan".into()),
        ("host", "servan-1".into()),
        ("accel_type", "fpga".into()),
        ("accel_model", "Alveo U200".into()),
        ("exotic", true.into()),
        ("gpu_count", 0.into()),
        ("memnode", 131_072.into()),
    ])
}

fn grouille() -> Properties {
    node(&[
        ("site", "nancy".into()),
        ("cluster", "grouille".into()),
        ("host", "grouille-1".into()),
        ("gpu_count", 2.into()),
        ("gpu_model", "A100".into()),
        ("exotic", true.into()),
        ("memnode", 131_072.into()),
    ])
}

/// (filter, matches chifflot, matches servan, matches grouille)
const EXAMPLES: &[(&str, bool, bool, bool)] = &[
    ("gpu_count >= 2 AND gpu_model = 'A100'", false, false, true),
    ("cluster IN ('chifflot','grouille')", true, false, true),
    ("NOT exotic", true, false, false),
    ("gpu_model LIKE 'A%'", false, false, true),
    ("(cluster='a' OR cluster='b') AND memnode > 100000", false, false, false),
    ("(cluster='chifflot' OR cluster='servan') AND memnode > 150000", true, false, false),
    ("gpu_count >= 2 AND NOT exotic", true, false, false),
    ("accel_type = 'fpga'", false, true, false),
    ("cluster NOT IN ('x')", true, true, true),
    ("gpu_model NOT LIKE 'Tesla%'", false, true, true),
    ("exotic = 'YES'", false, true, true),
    ("exotic = true", false, true, true),
    ("gpu_count <> 0", true, false, true),
    ("gpu_count != 0", true, false, true),
    ("host = \"chifflot-1\"", true, false, false),
    // OAR's spellings, as Grid'5000 users and EnOSlib write them.
    ("exotic='NO'", true, false, false),
    ("exotic = 'no' and cluster in ('chifflot', 'servan')", true, false, false),
    ("not exotic='NO' or gpu_model like 'Tesla%'", true, true, true),
    ("cluster not in ('servan') and gpu_model not like 'Tesla%'", false, false, true),
    ("(cluster='chifflot' or cluster='servan') And exotic = 'YES'", false, true, false),
];

#[test]
fn examples_parse_and_evaluate() {
    let nodes = [chifflot(), servan(), grouille()];
    for &(source, on_chifflot, on_servan, on_grouille) in EXAMPLES {
        let filter = parse(source);
        let got: Vec<bool> = nodes.iter().map(|n| filter.matches(n)).collect();
        assert_eq!(got, [on_chifflot, on_servan, on_grouille], "{source}");
        assert_eq!(filter.source(), source);
    }
}

#[test]
fn examples_round_trip_through_canonical_text() {
    for &(source, ..) in EXAMPLES {
        let filter = parse(source);
        let again = parse(&filter.to_string());
        assert_eq!(again.expr(), filter.expr(), "{source} -> {filter}");
    }
}

#[test]
fn canonical_text() {
    let cases = [
        ("gpu_count>=2 and gpu_model='A100'", "gpu_count >= 2 AND gpu_model = 'A100'"),
        ("cluster in ('chifflot',\"grouille\")", "cluster IN ('chifflot', 'grouille')"),
        ("not   exotic", "NOT exotic"),
        ("gpu_count <> 0", "gpu_count != 0"),
        ("(cluster='a' OR cluster='b') AND memnode>1", "(cluster = 'a' OR cluster = 'b') AND memnode > 1"),
        ("cluster='a' OR (cluster='b' AND memnode>1)", "cluster = 'a' OR cluster = 'b' AND memnode > 1"),
        ("cluster='a' OR (cluster='b' OR cluster='c')", "cluster = 'a' OR (cluster = 'b' OR cluster = 'c')"),
        ("NOT (exotic OR cluster='x')", "NOT (exotic OR cluster = 'x')"),
        ("NOT NOT exotic", "NOT NOT exotic"),
        ("host = \"it's\"", "host = 'it''s'"),
        ("memnode > 2.0", "memnode > 2.0"),
        ("memnode > 1E3", "memnode > 1000.0"),
        ("memnode > -5", "memnode > -5"),
        ("exotic = True", "exotic = TRUE"),
        ("gpu_model not like 'A_%'", "gpu_model NOT LIKE 'A_%'"),
        ("cluster NOT IN ('x')", "cluster NOT IN ('x')"),
    ];
    for (source, canonical) in cases {
        assert_eq!(parse(source).to_string(), canonical, "{source}");
    }
}

#[test]
fn keywords_are_case_insensitive() {
    let lower = parse("gpu_count >= 2 and not exotic or cluster in ('x') and gpu_model like 'A%' and exotic = false");
    let upper = parse("gpu_count >= 2 AND NOT exotic OR cluster IN ('x') AND gpu_model LIKE 'A%' AND exotic = FALSE");
    let mixed = parse("gpu_count >= 2 And NoT exotic oR cluster In ('x') aNd gpu_model LiKe 'A%' AND exotic = False");
    assert_eq!(lower.expr(), upper.expr());
    assert_eq!(mixed.expr(), upper.expr());
}

fn truthy(name: &str) -> Box<Expr> {
    Box::new(Expr::Truthy(name.to_owned()))
}

#[test]
fn precedence_is_not_then_and_then_or() {
    let filter = parse("exotic OR gpu_count AND NOT rack OR wattmeter");
    let expected = Expr::Or(
        Box::new(Expr::Or(truthy("exotic"), Box::new(Expr::And(truthy("gpu_count"), Box::new(Expr::Not(truthy("rack"))))))),
        truthy("wattmeter"),
    );
    assert_eq!(filter.expr(), &expected);

    // NOT applies to the whole comparison.
    let filter = parse("NOT gpu_count = 0 AND exotic");
    let expected = Expr::And(
        Box::new(Expr::Not(Box::new(Expr::Compare { property: "gpu_count".to_owned(), op: CmpOp::Eq, value: Literal::Int(0) }))),
        truthy("exotic"),
    );
    assert_eq!(filter.expr(), &expected);

    // Parentheses override.
    let filter = parse("(exotic OR rack) AND wattmeter");
    let expected = Expr::And(Box::new(Expr::Or(truthy("exotic"), truthy("rack"))), truthy("wattmeter"));
    assert_eq!(filter.expr(), &expected);
}

#[test]
fn literals() {
    let value = |source: &str| match parse(source).expr() {
        Expr::Compare { value, .. } => value.clone(),
        other => panic!("{source}: not a comparison: {other:?}"),
    };
    assert_eq!(value("memnode = 42"), Literal::Int(42));
    assert_eq!(value("memnode = -42"), Literal::Int(-42));
    assert_eq!(value("memnode=-9223372036854775808"), Literal::Int(i64::MIN));
    assert_eq!(value("memnode = 2.5"), Literal::Float(2.5));
    assert_eq!(value("memnode = -0.5"), Literal::Float(-0.5));
    assert_eq!(value("memnode = 1e9"), Literal::Float(1e9));
    assert_eq!(value("memnode = 1.5E-3"), Literal::Float(1.5e-3));
    assert_eq!(value("host = 'it''s'"), Literal::Str("it's".to_owned()));
    assert_eq!(value("host = \"say \"\"hi\"\"\""), Literal::Str("say \"hi\"".to_owned()));
    assert_eq!(value("host = \"it's\""), Literal::Str("it's".to_owned()));
    assert_eq!(value("host = ''"), Literal::Str(String::new()));
    assert_eq!(value("host = 'é ü\t'"), Literal::Str("é ü\t".to_owned()));
    assert_eq!(value("exotic = TRUE"), Literal::Bool(true));
    assert_eq!(value("exotic = false"), Literal::Bool(false));
}

#[test]
fn properties_are_sorted_and_deduplicated() {
    let filter = parse("(rack = 'a' OR gpu_count > 1) AND NOT exotic AND gpu_count < 8 AND cluster LIKE 'c%'");
    assert_eq!(filter.properties(), ["cluster", "exotic", "gpu_count", "rack"]);
}

// ---------------------------------------------------------------- errors

/// Asserts both the position and the full message, since the message is
/// what the user reads.
fn assert_error(source: &str, position: usize, message: &str) {
    let error = parse_err(source);
    assert_eq!(error.position, position, "{source}: {error}");
    assert_eq!(error.to_string(), format!("at position {position}: {message}"), "{source}");
}

#[test]
fn unknown_property() {
    assert_error("gpu_count >= 2 AND gpu_cont = 1", 20, "unknown property 'gpu_cont'");
    let error = parse_err("gpu_count >= 2 AND gpu_cont = 1");
    assert_eq!(error.kind, FilterErrorKind::UnknownProperty { name: "gpu_cont".to_owned() });
    // The first problem in the text wins, even if a later one is lexical.
    assert_error("nope = 'unterminated", 1, "unknown property 'nope'");
    // Positions count characters, not bytes.
    assert_error("host = 'éé' OR nope", 16, "unknown property 'nope'");
}

#[test]
fn missing_value() {
    assert_error("gpu_count >=", 13, "expected a value after '>=', found end of input");
    assert_error("gpu_count <> AND exotic", 14, "expected a value after '<>', found 'AND'");
    assert_error("cluster = chifflot", 11, "expected a value after '=' (strings go in quotes: 'chifflot'), found 'chifflot'");
    assert_error("exotic AND", 11, "expected a property name, NOT or '(', found end of input");
    assert_error("cluster IN ()", 13, "expected a value in the IN list, found ')'");
    assert_error("cluster IN ('a',)", 17, "expected a value after ',' in the IN list, found ')'");
    assert_error("cluster IN ('a' 'b')", 17, "expected ',' or ')' in the IN list, found 'b'");
    assert_error("cluster IN 'a'", 12, "expected '(' after IN, found 'a'");
    assert_error("gpu_model LIKE A", 16, "expected a quoted pattern after LIKE, found 'A'");
    assert_error("gpu_model LIKE 5", 16, "expected a quoted pattern after LIKE, found '5'");
    assert_error("cluster NOT = 'a'", 13, "expected IN or LIKE after 'cluster NOT', found '='");
}

#[test]
fn unterminated_string() {
    assert_error("gpu_model = 'A100", 13, "unterminated string (add the closing quote)");
    assert_error("host = \"chifflot-1'", 8, "unterminated string (add the closing quote)");
    assert_error("host = 'it''", 8, "unterminated string (add the closing quote)");
}

#[test]
fn trailing_garbage() {
    assert_error("gpu_count >= 2 foo", 16, "expected AND, OR or end of input, found 'foo'");
    assert_error("exotic exotic", 8, "expected a comparison operator (=, !=, <>, <, <=, >, >=), IN or LIKE after 'exotic', found 'exotic'");
    assert_error("gpu_count 2", 11, "expected a comparison operator (=, !=, <>, <, <=, >, >=), IN or LIKE after 'gpu_count', found '2'");
    assert_error("exotic ,", 8, "expected AND, OR or end of input, found ','");
}

#[test]
fn unbalanced_parenthesis() {
    assert_error("(cluster = 'a' OR cluster = 'b'", 32, "expected AND, OR or ')' to close the '(' at position 1, found end of input");
    assert_error(
        "exotic AND ((rack = 'a') OR gpu_count > 1 wattmeter",
        43,
        "expected AND, OR or ')' to close the '(' at position 12, found 'wattmeter'",
    );
    assert_error("cluster = 'a')", 14, "')' has no matching '('");
    assert_error("()", 2, "expected a property name, NOT or '(', found ')'");
    assert_error(")", 1, "expected a property name, NOT or '(', found ')'");
}

#[test]
fn bad_operator() {
    let hint = "(compare with =, !=, <>, <, <=, >, >=; negate with NOT)";
    assert_error("gpu_count == 2", 11, &format!("unknown operator '==' {hint}"));
    assert_error("gpu_count => 2", 11, &format!("unknown operator '=>' {hint}"));
    assert_error("!exotic", 1, &format!("unknown operator '!' {hint}"));
    assert_error("exotic && rack", 8, "unexpected character '&' (write AND)");
    assert_error("exotic || rack", 8, "unexpected character '|' (write OR)");
    assert_error("gpu_count ~ 2", 11, "unexpected character '~'");
    assert_error("clüster = 'a'", 3, "unexpected character 'ü'");
    assert_error("exotic\u{0}", 7, "unexpected character '\\0'");
}

#[test]
fn invalid_numbers() {
    assert_error(
        "memnode > 99999999999999999999",
        11,
        "invalid number '99999999999999999999' (write integers like 42 or -1, decimals like 2.5)",
    );
    for (source, text) in [
        ("memnode > 1.", "1."),
        ("memnode > 2abc", "2abc"),
        ("memnode > 1.2.3", "1.2.3"),
        ("memnode > 1e999", "1e999"),
        ("memnode > 1e", "1e"),
        ("memnode > -9223372036854775809", "-9223372036854775809"),
    ] {
        assert_eq!(parse_err(source).kind, FilterErrorKind::InvalidNumber { text: text.to_owned() }, "{source}");
    }
    // Long numbers are cut short in the message.
    let error = parse_err(&format!("memnode > {}", "9".repeat(100)));
    assert_eq!(error.kind, FilterErrorKind::InvalidNumber { text: format!("{}…", "9".repeat(40)) });
}

#[test]
fn empty_too_long_too_deep() {
    assert_error("", 1, "the filter is empty");
    assert_error(" \t\n ", 1, "the filter is empty");

    let long = format!("exotic{}", " ".repeat(MAX_LEN));
    assert_error(&long, MAX_LEN + 1, "the filter is too long (at most 4096 characters)");
    let fits = format!("exotic{}", " ".repeat(MAX_LEN - 6));
    parse(&fits);

    let deep = "the filter nests parentheses and NOT more than 64 levels deep";
    parse(&format!("{}exotic", "NOT ".repeat(MAX_DEPTH)));
    assert_error(&format!("{}exotic", "NOT ".repeat(MAX_DEPTH + 1)), 4 * MAX_DEPTH + 1, deep);
    parse(&format!("{}exotic{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH)));
    assert_error(&format!("{}exotic{}", "(".repeat(MAX_DEPTH + 1), ")".repeat(MAX_DEPTH + 1)), MAX_DEPTH + 1, deep);
    // Depth counts nesting, not length: a long flat chain is fine.
    let chain = vec!["exotic"; 300].join(" AND ");
    let filter = parse(&chain);
    assert!(!filter.matches(&chifflot()));
    assert!(filter.matches(&servan()));
    // Far deeper input than the limit fails cleanly instead of overflowing.
    let error = parse_err(&"(".repeat(MAX_LEN));
    assert_eq!(error.kind, FilterErrorKind::TooDeep);
}

// ------------------------------------------------------------- semantics

fn check(source: &str, props: &Properties) -> bool {
    parse(source).matches(props)
}

#[test]
fn missing_property_makes_conditions_false_but_not_negates() {
    let props = servan(); // no `rack`
    for source in [
        "rack = 'r1'",
        "rack != 'r1'",
        "rack <> 'r1'",
        "rack < 'z'",
        "rack IN ('r1')",
        "rack NOT IN ('r1')",
        "rack LIKE '%'",
        "rack NOT LIKE 'x'",
        "rack",
    ] {
        assert!(!check(source, &props), "{source}");
        assert!(check(&format!("NOT ({source})"), &props), "NOT ({source})");
    }
    assert!(check("rack = 'r1'", &chifflot()));
    assert!(check("rack", &chifflot()));
}

#[test]
fn number_comparisons() {
    let props = node(&[("gpu_count", 2.into()), ("wattmeter", PropValue::Float(2.5)), ("rack", "16".into())]);
    for (source, expected) in [
        ("gpu_count = 2", true),
        ("gpu_count = 2.0", true),
        ("gpu_count < 2.5", true),
        ("gpu_count >= 3", false),
        ("gpu_count <= 2", true),
        ("gpu_count > -1", true),
        ("gpu_count = '2'", true),
        ("gpu_count > '1.5'", true),
        ("gpu_count = 'two'", false),
        ("gpu_count != 'two'", false),
        ("gpu_count = TRUE", false),
        ("gpu_count IN (1, 2, 3)", true),
        ("gpu_count NOT IN (1, 3)", true),
        ("gpu_count NOT IN (1, 'x')", false),
        ("gpu_count LIKE '2'", false),
        ("gpu_count NOT LIKE '3'", false),
        ("wattmeter = 2.5", true),
        ("wattmeter > 2", true),
        ("wattmeter < '3'", true),
        // A string holding a number compares numerically with a number...
        ("rack > 9", true),
        ("rack = 16.0", true),
        // ...but as a string with a string.
        ("rack > '9'", false),
        ("rack = '16'", true),
    ] {
        assert_eq!(check(source, &props), expected, "{source}");
    }
}

#[test]
fn string_comparisons() {
    let props = chifflot();
    for (source, expected) in [
        ("cluster = 'chifflot'", true),
        ("cluster = 'Chifflot'", false),
        ("cluster != 'chifflot'", false),
        ("cluster > 'chiff'", true),
        ("cluster < 'd'", true),
        ("cluster >= 'chifflot'", true),
        ("cluster = 3", false),
        ("cluster != 3", false),
        ("cluster = TRUE", false),
        ("cluster IN ('a', 'chifflot')", true),
        ("cluster NOT IN ('a', 'chifflot')", false),
    ] {
        assert_eq!(check(source, &props), expected, "{source}");
    }
}

#[test]
fn boolean_comparisons() {
    let exotic = servan();
    let plain = chifflot();
    for (source, on_exotic) in [
        ("exotic", true),
        ("exotic = TRUE", true),
        ("exotic = FALSE", false),
        ("exotic != FALSE", true),
        ("exotic = 'YES'", true),
        ("exotic = 'yes'", true),
        ("exotic = 'true'", true),
        ("exotic = '1'", true),
        ("exotic = 'NO'", false),
        ("exotic != 'NO'", true),
        ("exotic = 1", true),
        ("exotic = 0", false),
        ("exotic IN ('YES')", true),
    ] {
        assert_eq!(check(source, &exotic), on_exotic, "{source} on exotic");
        assert_eq!(check(source, &plain), !on_exotic, "{source} on plain");
    }
    // Neither order nor nonsense comparisons hold, on either node.
    for source in ["exotic > FALSE", "exotic <= TRUE", "exotic = 'maybe'", "exotic != 'maybe'", "exotic = 2", "exotic LIKE '%'"] {
        assert!(!check(source, &exotic), "{source}");
        assert!(!check(source, &plain), "{source}");
    }
    // A string property spelled like a boolean compares with booleans too.
    let spelled = node(&[("exotic", "YES".into())]);
    assert!(check("exotic = TRUE", &spelled));
    assert!(check("exotic", &spelled));
}

#[test]
fn truthiness_of_bare_names() {
    for (value, expected) in [
        (PropValue::Bool(true), true),
        (PropValue::Bool(false), false),
        (PropValue::Int(3), true),
        (PropValue::Int(0), false),
        (PropValue::Float(0.5), true),
        (PropValue::Float(0.0), false),
        (PropValue::Float(f64::NAN), false),
        (PropValue::Str("YES".into()), true),
        (PropValue::Str("anything".into()), true),
        (PropValue::Str(String::new()), false),
        (PropValue::Str("NO".into()), false),
        (PropValue::Str("no".into()), false),
        (PropValue::Str("false".into()), false),
        (PropValue::Str("0".into()), false),
    ] {
        let props = node(&[("rack", value.clone())]);
        assert_eq!(check("rack", &props), expected, "{value:?}");
        assert_eq!(check("NOT rack", &props), !expected, "{value:?}");
    }
}

// ------------------------------------------------------------------ LIKE

#[test]
fn like_matching() {
    for (text, pattern, expected) in [
        ("A100", "A%", true),
        ("A100", "A", false),
        ("A100", "A100", true),
        ("A100", "a%", false),
        ("A100", "%", true),
        ("", "%", true),
        ("", "", true),
        ("", "_", false),
        ("a", "", false),
        ("A100", "A_00", true),
        ("A100", "A__", false),
        ("A100", "____", true),
        ("A100", "%0", true),
        ("A100", "%1%", true),
        ("A100", "%2%", false),
        ("Tesla P100-PCIE-16GB", "Tesla%16GB", true),
        ("Tesla P100-PCIE-16GB", "%P100%", true),
        ("abcabc", "%abc", true),
        ("abcab", "%abc", false),
        ("aaa", "a%a%a", true),
        ("aa", "a%a%a", false),
        ("mississippi", "m%iss%pi", true),
        ("mississippi", "m%iss%ppx", false),
        ("é", "_", true),
        ("日本", "__", true),
        ("日本", "_", false),
        ("100%", "100%", true),
    ] {
        assert_eq!(like(text, pattern), expected, "{text:?} LIKE {pattern:?}");
    }
}

#[test]
fn like_pathological_patterns_are_not_exponential() {
    // A backtracking matcher takes exponential time on these; ours is at
    // most text length × pattern length.
    let text = "b".repeat(20_000);
    assert!(!like(&text, "%%%%%%%%a"));
    assert!(!like(&text, &format!("{}a", "%b".repeat(40))));
    let text = "a".repeat(20_000);
    assert!(!like(&text, &format!("{}b", "%a".repeat(30))));
    assert!(like(&text, &format!("{}%", "%a".repeat(30))));
    assert!(!like(&text, &format!("{}%b%", "a%".repeat(30))));
}

/// The textbook dynamic-programming matcher, as a reference.
fn like_reference(text: &str, pattern: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let pattern: Vec<char> = pattern.chars().collect();
    // row[j]: whether pattern[..i] matches text[..j].
    let mut row = vec![false; text.len() + 1];
    row[0] = true;
    for &p in &pattern {
        let mut next = vec![false; text.len() + 1];
        if p == '%' {
            next[0] = row[0];
        }
        for j in 1..=text.len() {
            next[j] = match p {
                '%' => row[j] || next[j - 1],
                '_' => row[j - 1],
                c => row[j - 1] && text[j - 1] == c,
            };
        }
        row = next;
    }
    row[text.len()]
}

// ------------------------------------------------------------ proptests

const NAMES: &[&str] = &["cluster", "gpu_count", "exotic", "memnode", "gpu_model", "rack"];

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(NAMES).prop_map(str::to_owned)
}

/// Strings both arbitrary (quotes, Unicode, control characters) and from
/// a small set likely to match the values in [`props`].
fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec!["", "a", "A100", "YES", "NO", "2", "1.5", "chifflot", "it's"]).prop_map(str::to_owned),
        prop::collection::vec(any::<char>(), 0..8).prop_map(String::from_iter),
        "[a%_'\"]{0,6}",
    ]
}

fn literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        any::<bool>().prop_map(Literal::Bool),
        (-3i64..=3).prop_map(Literal::Int),
        any::<i64>().prop_map(Literal::Int),
        prop_oneof![Just(-1.5), Just(0.0), Just(2.0), Just(2.5)].prop_map(Literal::Float),
        (prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO).prop_map(Literal::Float),
        string().prop_map(Literal::Str),
    ]
}

fn op() -> impl Strategy<Value = CmpOp> {
    prop::sample::select(vec![CmpOp::Eq, CmpOp::Ne, CmpOp::Lt, CmpOp::Le, CmpOp::Gt, CmpOp::Ge])
}

fn predicate() -> impl Strategy<Value = Expr> {
    prop_oneof![
        name().prop_map(Expr::Truthy),
        (name(), op(), literal()).prop_map(|(property, op, value)| Expr::Compare { property, op, value }),
        (name(), any::<bool>(), prop::collection::vec(literal(), 1..4)).prop_map(|(property, negated, values)| Expr::In {
            property,
            negated,
            values
        }),
        (name(), any::<bool>(), string()).prop_map(|(property, negated, pattern)| Expr::Like { property, negated, pattern }),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    predicate().prop_recursive(6, 48, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Expr::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner).prop_map(|(a, b)| Expr::Or(Box::new(a), Box::new(b))),
        ]
    })
}

fn prop_value() -> impl Strategy<Value = PropValue> {
    prop_oneof![
        any::<bool>().prop_map(PropValue::Bool),
        (-3i64..=3).prop_map(PropValue::Int),
        prop_oneof![Just(-1.5), Just(0.0), Just(2.0), Just(2.5), Just(f64::NAN)].prop_map(PropValue::Float),
        string().prop_map(PropValue::Str),
    ]
}

/// A node with each of [`NAMES`] present or not, holding any kind of value.
fn props() -> impl Strategy<Value = Properties> {
    prop::collection::vec(prop::option::of(prop_value()), NAMES.len())
        .prop_map(|values| NAMES.iter().zip(values).filter_map(|(name, value)| Some(((*name).to_owned(), value?))).collect())
}

/// Filter-looking text: tokens glued with or without spaces.
fn token_soup() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "AND",
        "or",
        "NOT",
        "IN",
        "like",
        "TRUE",
        "false",
        "(",
        ")",
        ",",
        "=",
        "!=",
        "<>",
        "<",
        "<=",
        ">",
        ">=",
        "==",
        "!",
        "'a'",
        "'",
        "\"x\"",
        "2",
        "-1",
        "2.5",
        "1e3",
        "1.",
        "exotic",
        "cluster",
        "gpu_count",
        "nope",
        "%",
        " ",
        "é",
        "\u{0}",
    ]);
    prop::collection::vec((token, any::<bool>()), 0..24)
        .prop_map(|parts| parts.into_iter().map(|(token, space)| if space { format!("{token} ") } else { token.to_owned() }).collect())
}

proptest! {
    #[test]
    fn parse_never_panics(source in any::<String>()) {
        let _ = Filter::parse(&source, &is_known);
    }

    /// Whatever parses prints as text that parses back to the same tree,
    /// and errors point inside the input (or just past its end).
    #[test]
    fn token_soup_parses_or_fails_cleanly(source in token_soup()) {
        match Filter::parse(&source, &is_known) {
            Ok(filter) => {
                let again = Filter::parse(&filter.to_string(), &is_known);
                prop_assert_eq!(again.map(|f| f.expr), Ok(filter.expr));
            }
            Err(error) => {
                prop_assert!(error.position >= 1);
                prop_assert!(error.position <= source.chars().count() + 1);
            }
        }
    }

    #[test]
    fn canonical_text_round_trips(expr in expr()) {
        let text = expr.to_string();
        prop_assume!(text.chars().count() <= MAX_LEN);
        let filter = Filter::parse(&text, &is_known);
        prop_assert_eq!(filter.map(|f| f.expr), Ok(expr), "{}", text);
    }

    #[test]
    fn logic_laws(a in expr(), b in expr(), node in props()) {
        let (ea, eb) = (eval(&a, &node), eval(&b, &node));
        let not_a = Expr::Not(Box::new(a.clone()));
        prop_assert_eq!(eval(&not_a, &node), !ea);
        let and = Expr::And(Box::new(a.clone()), Box::new(b.clone()));
        prop_assert_eq!(eval(&and, &node), ea && eb);
        let or = Expr::Or(Box::new(a.clone()), Box::new(b));
        prop_assert_eq!(eval(&or, &node), ea || eb);
        // Parsing the canonical text changes nothing.
        let text = a.to_string();
        prop_assume!(text.chars().count() <= MAX_LEN);
        prop_assert_eq!(parse(&text).matches(&node), ea);
    }

    #[test]
    fn in_lists_are_or_of_equalities(
        property in name(),
        values in prop::collection::vec(literal(), 1..4),
        node in props(),
    ) {
        let any_equal = values.iter().fold(None, |acc: Option<Expr>, value| {
            let eq = Expr::Compare { property: property.clone(), op: CmpOp::Eq, value: value.clone() };
            Some(match acc {
                None => eq,
                Some(acc) => Expr::Or(Box::new(acc), Box::new(eq)),
            })
        });
        let all_differ = values.iter().fold(None, |acc: Option<Expr>, value| {
            let ne = Expr::Compare { property: property.clone(), op: CmpOp::Ne, value: value.clone() };
            Some(match acc {
                None => ne,
                Some(acc) => Expr::And(Box::new(acc), Box::new(ne)),
            })
        });
        let in_list = Expr::In { property: property.clone(), negated: false, values: values.clone() };
        let not_in = Expr::In { property, negated: true, values };
        prop_assert_eq!(eval(&in_list, &node), any_equal.is_some_and(|e| eval(&e, &node)));
        prop_assert_eq!(eval(&not_in, &node), all_differ.is_some_and(|e| eval(&e, &node)));
    }

    #[test]
    fn like_agrees_with_reference(text in "[ab_%é]{0,12}", pattern in "[ab_%é]{0,8}") {
        prop_assert_eq!(like(&text, &pattern), like_reference(&text, &pattern));
    }

    #[test]
    fn properties_lists_every_name_read(expr in expr()) {
        let text = expr.to_string();
        prop_assume!(text.chars().count() <= MAX_LEN);
        let filter = parse(&text);
        let mut seen = Vec::new();
        expr.for_each_property(&mut |name| seen.push(name.to_owned()));
        seen.sort();
        seen.dedup();
        prop_assert_eq!(filter.properties(), seen);
    }
}
