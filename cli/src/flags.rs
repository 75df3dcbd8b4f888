//! The API's field names as the CLI's flags: when the server refuses a
//! request built from flags (400), its message names the request's fields
//! (`nodes.count: must be at least 1`, `set exotic: true`); people typed
//! flags, so the CLI says `--count`, `add --exotic`. [`FIELD_FLAGS`] is the
//! one table of these spellings.
//!
//! Only commands whose request body comes from flags (`lease create`,
//! `lease extend`, `availability`) rewrite their errors: elsewhere a field
//! is what the user wrote (an environment descriptor's keys).

use reqwest::StatusCode;

use crate::client::CliError;

/// API spelling → CLI spelling. An entry without a space is a field: it is
/// renamed where a message starts with `FIELD:` (or `FIELD[`, for list
/// items), longest first as listed. An entry with a space is a phrase,
/// replaced wherever it appears.
pub const FIELD_FLAGS: &[(&str, &str)] = &[
    // Fields, the longer first.
    ("nodes.count", "--count"),
    ("nodes.names", "--names"),
    ("nodes.filter", "--filter"),
    ("nodes", "--count/--names"),
    ("deploy.environment", "--deploy"),
    ("deploy.ssh_keys", "--ssh-key"),
    ("deploy", "--deploy"),
    ("filter", "--filter"),
    ("count", "--count"),
    ("duration", "--duration"),
    ("start", "--start"),
    ("end", "--end"),
    ("type", "--type"),
    ("exotic", "--exotic"),
    ("project", "--project"),
    ("name", "--name"),
    ("limit", "--limit"),
    ("from", "--from"),
    // Phrases.
    ("set exotic: true", "add --exotic"),
    ("omit start", "omit --start"),
    ("give count (with an optional filter) or names", "give --count (with an optional --filter) or --names"),
    ("give names or a filter, not both", "give --names or --filter, not both"),
    ("give either duration or end, not both", "give either --duration or --end, not both"),
    ("or give an end", "or give --end"),
    ("the number of nodes.names", "the number of --names"),
    ("only a lease of type 'deploy'", "only a lease of --type deploy"),
];

/// A server message with the API's spellings replaced by the CLI's.
pub fn with_flags(message: &str) -> String {
    let mut text = message.to_owned();
    for (field, flag) in FIELD_FLAGS.iter().filter(|(api, _)| !api.contains(' ')) {
        if let Some(rest) = text.strip_prefix(field)
            && (rest.starts_with(':') || rest.starts_with('['))
        {
            text = format!("{flag}{rest}");
            break;
        }
    }
    for (phrase, cli) in FIELD_FLAGS.iter().filter(|(api, _)| api.contains(' ')) {
        text = text.replace(phrase, cli);
    }
    text
}

/// Rewrites a 400 (or 422) answer's message with [`with_flags`]; any other
/// error is returned as it is.
pub fn name_flags(err: anyhow::Error) -> anyhow::Error {
    match err.downcast::<CliError>() {
        Ok(CliError::Api { status, mut detail }) if matches!(status, StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY) => {
            detail.message = with_flags(&detail.message);
            CliError::Api { status, detail }.into()
        }
        Ok(other) => other.into(),
        Err(err) => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server's messages for a lease request (controller/src/app/leases.rs)
    /// as the CLI shows them.
    #[test]
    fn api_fields_become_flags() {
        let messages = [
            "nodes.names: 'servan-1' is exotic (prototype) hardware; set exotic: true to reserve it",
            "nodes.count: must be at least 1",
            "nodes.count: does not match the number of nodes.names",
            "nodes: give count (with an optional filter) or names",
            "nodes: give names or a filter, not both",
            "nodes.names: there is no node 'chifflot-99'",
            "duration: '3 fortnights' is not a duration (unknown unit); use e.g. 30m, 4h, 1h 30m, 2d",
            "duration: say how long (e.g. 4h), or give an end",
            "give either duration or end, not both",
            "start: 2026-11-22T09:00:00Z is in the past; omit it for as soon as possible",
            "start: besteffort leases start as soon as nodes are idle; omit start",
            "end: must be after the start",
            "deploy.environment: there is no environment 'debian13'",
            "deploy: only a lease of type 'deploy' deploys an environment",
            "deploy.ssh_keys[0]: not an OpenSSH public key (expected 'ssh-ed25519 AAAA... comment')",
            "filter: unknown property 'gpu_cont' at 1",
            "name: must be one line of at most 100 characters",
            "a message naming no field stays as it is: start, duration",
        ];
        let shown: Vec<String> = messages.iter().map(|m| format!("{m}\n  -> {}", with_flags(m))).collect();
        insta::assert_snapshot!(shown.join("\n"));
    }

    #[test]
    fn only_refusals_of_the_input_are_rewritten() {
        let api = |status, message: &str| -> anyhow::Error {
            CliError::Api { status, detail: ferrum_api::ErrorDetail { code: "x".into(), message: message.into(), earliest_start: None } }
                .into()
        };
        let text = name_flags(api(StatusCode::BAD_REQUEST, "nodes.count: must be at least 1")).to_string();
        assert!(text.contains("--count: must be at least 1"), "{text}");
        let text = name_flags(api(StatusCode::FORBIDDEN, "nodes.count: policy")).to_string();
        assert!(text.contains("nodes.count: policy"), "{text}");
        let err = name_flags(api(StatusCode::BAD_REQUEST, "x"));
        assert_eq!(crate::client::exit_code(&err), crate::client::exit::USAGE, "the exit code stays");
        assert_eq!(name_flags(anyhow::anyhow!("plain")).to_string(), "plain");
    }
}
