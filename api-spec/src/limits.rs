//! Limits on the free texts the API takes, enforced by the controller and
//! declared in the request schemas (`#[schema(max_length = ...)]` takes
//! literals only: keep those in step with these numbers).
//!
//! Lengths count characters (Unicode scalar values), as JSON Schema's
//! `maxLength` does. A one-line text also refuses control characters
//! (C0, DEL, C1) and the bidirectional overrides and isolates
//! (U+202A..U+202E, U+2066..U+2069), which would garble listings.

/// Names: nodes, sites, clusters, projects, users.
pub const NAME: usize = 64;
/// A lease's name (OAR's job names are 100 characters).
pub const LEASE_NAME: usize = 100;
/// A reason (maintenance, approval, rejection).
pub const REASON: usize = 1000;
/// A property filter (`gpu_count >= 2 AND NOT exotic`).
pub const FILTER: usize = 4096;
/// An OAR resource string (`{cluster='a'}/nodes=2+nodes=1,walltime=2:00`).
pub const RESOURCES: usize = 8192;
/// Groups of one multi-group lease.
pub const GROUPS: usize = 64;
/// A duration (`1h 30m`).
pub const DURATION: usize = 64;
/// A BMC URL with its credentials and TLS options.
pub const BMC_URL: usize = 1024;
/// An IP address as text.
pub const IP: usize = 45;
/// An admin-set property's string value.
pub const PROPERTY_VALUE: usize = 256;
/// The environment a deploy lease names (`NAME` or `OWNER/NAME`).
pub const ENVIRONMENT: usize = 200;
/// One OpenSSH public key line.
pub const SSH_KEY: usize = 16_383;
/// SSH keys of one deploy.
pub const SSH_KEYS: usize = 64;
/// Boot NICs of one node.
pub const MACS: usize = 32;
/// Node names of one lease request.
pub const NODE_NAMES: usize = 10_000;
/// A MAC address as text (`3c:fd:fe:c1:70:90`).
pub const MAC: usize = 17;
/// The JSON Schema `pattern` of a one-line text (see the module text).
pub const ONE_LINE_PATTERN: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u202a-\\u202e\\u2066-\\u2069]*$";

/// Why `text` is not an acceptable one-line text of at most `max`
/// characters, or `None`.
pub fn one_line_error(text: &str, max: usize) -> Option<String> {
    if let Some(e) = length_error(text, max) {
        return Some(e);
    }
    text.chars()
        .find(|c| forbidden_in_line(*c))
        .map(|c| format!("must be one line without control characters (found U+{:04X})", u32::from(c)))
}

/// Why `text` is longer than `max` characters, or `None`.
pub fn length_error(text: &str, max: usize) -> Option<String> {
    // Bytes bound characters from above: count only when it may matter.
    (text.len() > max && text.chars().count() > max).then(|| format!("at most {max} characters"))
}

fn forbidden_in_line(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_texts() {
        assert_eq!(one_line_error("disk replaced, é ok", 100), None);
        assert_eq!(one_line_error(&"é".repeat(10), 10), None, "characters, not bytes");
        assert!(one_line_error(&"x".repeat(11), 10).expect("too long").contains("at most 10"));
        for bad in ["a\nb", "a\u{0}b", "a\u{7f}", "a\u{85}", "a\u{202e}b", "\u{2066}x"] {
            assert!(one_line_error(bad, 100).expect(bad).contains("one line"), "{bad:?}");
        }
    }
}
