//! OAR's request syntax, as Grid'5000 users and their tools write it:
//! resource strings (`oarsub -l`, the `resources` of a Grid'5000 job),
//! walltimes (`H[:MM[:SS]]`) and the `properties` text that is ANDed with
//! every resource group's filter.
//!
//! This module owns the parsing only. It is pure: it never looks at nodes,
//! the calendar or the database, never panics on any input, and leaves the
//! filters' contents to the filter language (`crate::filter`), which
//! checks them when the lease is placed. What ferrum cannot do (sub-node
//! resources, switches, KaVLAN, subnets) is an error naming the construct.
//!
//! # Resource strings
//!
//! ```text
//! resources := group ('+' group)* (',' 'walltime=' walltime)?
//! group     := ['{' filter '}'] ['/'] level ('/' level)*
//! level     := ('nodes' | 'host' | 'network_address') '=' N
//! ```
//!
//! `N` is a positive integer. `{cluster='chuc'}/nodes=2+{gpu_count>0}/nodes=1,walltime=2:00`
//! asks for two groups placed together in one lease, for two hours. A
//! group is whole nodes, hence exactly one `nodes=N` level (`host=N` and
//! `network_address=N` are OAR's synonyms).

use crate::model::Seconds;

/// One group of a resource string: `count` nodes matching `filter`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub count: u32,
    /// The `{...}` text, without the braces; `None` when there was none.
    pub filter: Option<String>,
}

/// A parsed resource string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resources {
    /// At least one group.
    pub groups: Vec<Group>,
    /// The `walltime=` part, in seconds.
    pub walltime: Option<Seconds>,
}

/// Why a resource string or a walltime was refused, worded for the person
/// who wrote it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OarError(String);

impl OarError {
    fn new(text: impl Into<String>) -> OarError {
        OarError(text.into())
    }
}

/// The longest resource string accepted, in bytes (a filter's length plus
/// room for the levels).
pub const MAX_LEN: usize = 8192;

/// At most this many `+` groups in one resource string.
pub const MAX_GROUPS: usize = 64;

/// Parses an OAR walltime ([`ferrum_api::durations::parse_walltime`]:
/// `H`, `H:MM` or `H:MM:SS`, `2:00` is two hours).
pub fn parse_walltime(text: &str) -> Result<Seconds, OarError> {
    ferrum_api::durations::parse_walltime(text).map_err(OarError::new)
}

/// `filter AND (properties)`: the `properties` text of a Grid'5000 job
/// applies to every resource group. Blank texts count as absent; each side
/// is parenthesised so that an `OR` inside keeps its meaning.
pub fn and_properties(filter: Option<&str>, properties: Option<&str>) -> Option<String> {
    let filter = filter.map(str::trim).filter(|f| !f.is_empty());
    let properties = properties.map(str::trim).filter(|p| !p.is_empty());
    match (filter, properties) {
        (Some(f), Some(p)) => Some(format!("({f}) AND ({p})")),
        (Some(one), None) | (None, Some(one)) => Some(one.to_owned()),
        (None, None) => None,
    }
}

/// Splits `text` at each top-level `sep`: outside `{...}` and outside
/// quoted strings (a doubled quote inside a string stands for one, which
/// this scanner handles by closing and reopening the string).
fn split_top(text: &str, sep: char) -> Result<Vec<&str>, OarError> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut from = 0;
    for (i, c) in text.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '\'' | '"' if depth > 0 => quote = Some(c),
                '{' => depth += 1,
                '}' => {
                    depth = depth.checked_sub(1).ok_or_else(|| OarError::new("a '}' has no '{' before it"))?;
                }
                _ if c == sep && depth == 0 => {
                    parts.push(&text[from..i]);
                    from = i + c.len_utf8();
                }
                _ => {}
            },
        }
    }
    if quote.is_some() {
        return Err(OarError::new("a quoted string in a {...} filter has no closing quote"));
    }
    if depth > 0 {
        return Err(OarError::new("a '{' has no closing '}'"));
    }
    parts.push(&text[from..]);
    Ok(parts)
}

/// The byte index of the `}` that closes the `{` at the start of `text`
/// (quotes and nested braces skipped).
fn closing_brace(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    for (i, c) in text.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '\'' | '"' => quote = Some(c),
                '{' => depth += 1,
                '}' => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        return Some(i);
                    }
                }
                _ => {}
            },
        }
    }
    None
}

/// Parses a resource string (see the module documentation).
pub fn parse_resources(text: &str) -> Result<Resources, OarError> {
    if text.len() > MAX_LEN {
        return Err(OarError::new(format!("at most {MAX_LEN} characters")));
    }
    let text = text.trim();
    if text.is_empty() {
        return Err(OarError::new("empty; write e.g. nodes=2,walltime=2:00 or {cluster='chifflot'}/nodes=2"));
    }
    let mut parts = split_top(text, ',')?.into_iter();
    let spec = parts.next().unwrap_or_default();
    let mut walltime = None;
    for option in parts {
        let option = option.trim();
        match option.split_once('=') {
            Some((key, value)) if key.trim().eq_ignore_ascii_case("walltime") => {
                if walltime.is_some() {
                    return Err(OarError::new("walltime is given twice"));
                }
                walltime = Some(parse_walltime(value).map_err(|e| OarError::new(format!("walltime: {e}")))?);
            }
            _ => return Err(OarError::new(format!("'{option}': after a ',' only walltime=H:MM:SS is understood"))),
        }
    }
    // `-l walltime=2:00` alone: one node (OAR's default).
    if let Some((key, value)) = spec.split_once('=')
        && key.trim().eq_ignore_ascii_case("walltime")
    {
        if walltime.is_some() {
            return Err(OarError::new("walltime is given twice"));
        }
        let walltime = parse_walltime(value).map_err(|e| OarError::new(format!("walltime: {e}")))?;
        return Ok(Resources { groups: vec![Group { count: 1, filter: None }], walltime: Some(walltime) });
    }
    let groups = split_top(spec, '+')?;
    if groups.len() > MAX_GROUPS {
        return Err(OarError::new(format!("at most {MAX_GROUPS} groups joined by '+'")));
    }
    let groups = groups.into_iter().map(parse_group).collect::<Result<Vec<_>, _>>()?;
    Ok(Resources { groups, walltime })
}

/// One `+` group: `[{filter}][/]level(/level)*`.
fn parse_group(text: &str) -> Result<Group, OarError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(OarError::new("an empty group (two '+' in a row, or one at an end)"));
    }
    let (filter, rest) = if text.starts_with('{') {
        let end = closing_brace(text).ok_or_else(|| OarError::new("a '{' has no closing '}'"))?;
        let filter = text[1..end].trim();
        if filter.is_empty() {
            return Err(OarError::new("an empty {} filter"));
        }
        (Some(filter.to_owned()), text[end + 1..].trim_start())
    } else {
        (None, text)
    };
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    if rest.trim().is_empty() {
        return Err(OarError::new(format!("'{text}': say how many nodes (/nodes=N)")));
    }
    let mut count = None;
    for level in split_top(rest, '/')? {
        let level = level.trim();
        if level.starts_with('{') {
            return Err(OarError::new(format!("'{level}': a {{...}} filter goes before the levels ({{filter}}/nodes=N)")));
        }
        let (name, value) = level.split_once('=').unwrap_or((level, ""));
        let (name, value) = (name.trim(), value.trim());
        match name.to_ascii_lowercase().as_str() {
            "nodes" | "host" | "network_address" => {
                if count.is_some() {
                    return Err(OarError::new(format!("'{text}': one nodes=N level per group")));
                }
                count = Some(parse_count(name, value)?);
            }
            "core" | "cpu" | "gpu" | "thread" | "resource_id" => {
                return Err(OarError::new(format!(
                    "'{name}={value}': ferrum leases whole nodes; ask for nodes=N (with a filter such as {{gpu_count >= 1}})"
                )));
            }
            "switch" => return Err(OarError::new(format!("'{name}={value}': switch groups are not supported"))),
            "cluster" => {
                return Err(OarError::new(format!(
                    "'{name}={value}': 'all in one cluster' is not supported; name the cluster in the filter ({{cluster='NAME'}}/nodes=N)"
                )));
            }
            "vlan" => return Err(OarError::new(format!("'{name}={value}': KaVLAN is not supported"))),
            n if n.starts_with("slash_") => return Err(OarError::new(format!("'{name}={value}': subnets are not supported"))),
            "" => return Err(OarError::new(format!("'{text}': an empty level (two '/' in a row, or one at the end)"))),
            _ => {
                return Err(OarError::new(format!(
                    "'{name}': unknown resource; ferrum understands nodes=N (or host=N, network_address=N)"
                )));
            }
        }
    }
    let count = count.ok_or_else(|| OarError::new(format!("'{text}': say how many nodes (/nodes=N)")))?;
    Ok(Group { count, filter })
}

fn parse_count(name: &str, value: &str) -> Result<u32, OarError> {
    if value.eq_ignore_ascii_case("best") || value.eq_ignore_ascii_case("all") {
        return Err(OarError::new(format!("'{name}={value}': ferrum places a fixed number of nodes; write {name}=N")));
    }
    match value.parse::<u32>() {
        Ok(n) if n >= 1 && value.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(OarError::new(format!("'{name}={value}': the count is a whole number of at least 1"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(count: u32, filter: Option<&str>) -> Group {
        Group { count, filter: filter.map(str::to_owned) }
    }

    #[test]
    fn walltimes_read_as_oarsub_says() {
        for (text, secs) in
            [("2", 7200), ("2:00", 7200), ("0:10", 600), ("1:30", 5400), ("02:00:00", 7200), ("0:0:5", 5), (" 1:00:30 ", 3630)]
        {
            assert_eq!(parse_walltime(text), Ok(secs), "{text}");
        }
        for text in ["", "0", "0:00:00", "1:60", "1:00:60", "1::", ":30", "1.5", "1:2:3:4", "-1", "1h", "1:000", "99999999999999999999"] {
            let err = parse_walltime(text).expect_err(text);
            assert!(!err.to_string().is_empty(), "{text}");
        }
        assert!(parse_walltime("1h").unwrap_err().to_string().contains("H:MM"));
    }

    #[test]
    fn the_forms_the_clients_send_parse() {
        let r = parse_resources("{cluster='chuc'}/nodes=2,walltime=02:00:00").unwrap();
        assert_eq!(r, Resources { groups: vec![group(2, Some("cluster='chuc'"))], walltime: Some(7200) });
        let r = parse_resources("{cluster='chuc'}/nodes=2,walltime=2:00").unwrap();
        assert_eq!(r.walltime, Some(7200));
        assert_eq!(parse_resources("nodes=3").unwrap(), Resources { groups: vec![group(3, None)], walltime: None });
        assert_eq!(parse_resources("/nodes=1").unwrap().groups, vec![group(1, None)]);
        assert_eq!(parse_resources("host=2,walltime=1").unwrap(), Resources { groups: vec![group(2, None)], walltime: Some(3600) });
        assert_eq!(parse_resources("{a=1}network_address=4").unwrap().groups, vec![group(4, Some("a=1"))]);
        let r = parse_resources("{cluster='chuc'}/nodes=2+{network_address in ('a-1.s.d', 'a-2.s.d')}/nodes=2,walltime=02:00:00").unwrap();
        assert_eq!(r.groups, vec![group(2, Some("cluster='chuc'")), group(2, Some("network_address in ('a-1.s.d', 'a-2.s.d')"))]);
        let r = parse_resources("{(type='default' or type='disk') AND cluster='x'}/nodes=3").unwrap();
        assert_eq!(r.groups, vec![group(3, Some("(type='default' or type='disk') AND cluster='x'"))]);
        // Separators inside the filter's strings and braces do not split.
        let r = parse_resources("{name = 'a+b,c/d}'}/nodes=1 + nodes=2").unwrap();
        assert_eq!(r.groups, vec![group(1, Some("name = 'a+b,c/d}'")), group(2, None)]);
        assert_eq!(parse_resources("NODES=1, WALLTIME=0:30").unwrap(), Resources { groups: vec![group(1, None)], walltime: Some(1800) });
    }

    #[test]
    fn what_ferrum_cannot_do_names_the_construct() {
        for (text, says) in [
            ("{cluster='chuc'}/nodes=2+{type='kavlan'}/vlan=1,walltime=2:00", "KaVLAN is not supported"),
            ("nodes=2+slash_22=1", "subnets are not supported"),
            ("slash_16=1", "subnets are not supported"),
            ("core=4", "'core=4': ferrum leases whole nodes"),
            ("nodes=1/cpu=2", "'cpu=2'"),
            ("gpu=1", "'gpu=1'"),
            ("switch=1/nodes=2", "switch groups are not supported"),
            ("cluster=1/nodes=2", "'all in one cluster' is not supported"),
            ("nodes=BEST", "'nodes=BEST'"),
            ("nodes=ALL", "'nodes=ALL'"),
            ("nodes=0", "at least 1"),
            ("nodes=-1", "at least 1"),
            ("nodes=+1", "at least 1"),
            ("nodes=x", "at least 1"),
            ("nodes=2/host=2", "one nodes=N level"),
            ("{cluster='a'}", "say how many nodes"),
            ("{}/nodes=1", "empty {} filter"),
            ("{cluster='a'/nodes=1", "no closing '}'"),
            ("cluster='a'}/nodes=1", "has no '{'"),
            ("{cluster='a}/nodes=1", "no closing quote"),
            ("nodes=1,walltime=1:00,walltime=2", "twice"),
            ("nodes=1,walltime=1h", "walltime: '1h' is not an OAR walltime"),
            ("nodes=1,besteffort", "only walltime"),
            ("nodes=1++nodes=2", "empty group"),
            ("nodes=1/", "empty level"),
            ("disks=1", "'disks': unknown resource"),
            ("", "empty"),
            ("  ", "empty"),
            ("nodes=1/{a=1}", "goes before the levels"),
        ] {
            let err = parse_resources(text).expect_err(text).to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
        assert!(parse_resources(&"nodes=1+".repeat(70)).is_err());
        assert!(parse_resources(&"x".repeat(MAX_LEN + 1)).unwrap_err().to_string().contains("at most"));
    }

    #[test]
    fn properties_are_anded_with_each_filter() {
        assert_eq!(
            and_properties(Some("cluster='a'"), Some("gpu_count > 0 or exotic")),
            Some("(cluster='a') AND (gpu_count > 0 or exotic)".into())
        );
        assert_eq!(and_properties(None, Some(" exotic='NO' ")), Some("exotic='NO'".into()));
        assert_eq!(and_properties(Some("a=1"), Some("  ")), Some("a=1".into()));
        assert_eq!(and_properties(None, None), None);
    }

    #[test]
    fn no_input_panics() {
        // Every prefix of tricky inputs, cut at every character boundary.
        let samples = ["{a='é+,/}'}/nodes=2+{b=\"x''y\"}/host=3,walltime=1:02:03", "{{{}}}/nodes=1", "é/é=é,é=é", "}{'\"/+,=:"];
        for s in samples {
            for (i, _) in s.char_indices() {
                let _ = parse_resources(&s[..i]);
                let _ = parse_resources(&s[i..]);
                let _ = parse_walltime(&s[i..]);
            }
        }
    }
}
