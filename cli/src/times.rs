//! Parsing and printing of times and durations, the one place that decides
//! how `ferrum` reads `--start 2026-11-22T09:00:00Z` or `--by 2h` and how it
//! shows them back (RFC 3339 UTC at second precision, compact durations such
//! as `1h 30m`).
//!
//! Everything here is pure: no clock, no I/O. The parsers have clap's
//! `value_parser` shape (`&str -> Result<T, String>`) so a bad value is a
//! usage error (exit code 2) with a message that says what to write instead.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};

/// Parses an RFC 3339 time (`2026-11-22T09:00:00Z`, `2026-11-22T10:00:00+01:00`)
/// into UTC.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|err| format!("`{text}` is not an RFC 3339 time ({err}); write e.g. 2026-11-22T09:00:00Z"))
}

/// Parses a positive duration: `2h`, `90m`, `1h 30m`, `1h30m`, `2d`, `1w`.
pub fn parse_duration(text: &str) -> Result<TimeDelta, String> {
    let std = humantime::parse_duration(text.trim())
        .map_err(|err| format!("`{text}` is not a duration ({err}); write e.g. 2h, 90m, 1h 30m or 2d"))?;
    let delta = TimeDelta::from_std(std).map_err(|_| format!("`{text}` is too long a duration"))?;
    if delta < TimeDelta::seconds(1) {
        return Err(format!("`{text}` is shorter than one second; a duration must be positive"));
    }
    Ok(delta)
}

/// Validates a duration and returns it in the canonical form the server's
/// parser accepts (`1h 30m` for `90m`), so the request carries exactly what
/// the user meant whatever spelling they chose.
pub fn duration_text(text: &str) -> Result<String, String> {
    parse_duration(text).map(format_duration)
}

/// RFC 3339, UTC, second precision: `2026-11-22T09:00:00Z`.
pub fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A compact human duration: `2d 4h`, `1h 30m`, `45s`, `0s`. Sub-second
/// parts are dropped.
pub fn format_duration(delta: TimeDelta) -> String {
    let sign = if delta < TimeDelta::zero() { "-" } else { "" };
    let mut secs = delta.num_seconds().unsigned_abs();
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut parts = Vec::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        let n = secs / size;
        if n > 0 {
            parts.push(format!("{n}{unit}"));
            secs %= size;
        }
    }
    format!("{sign}{}", parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_the_usual_spellings() {
        let cases = [
            ("2h", 2 * 3600),
            ("90m", 90 * 60),
            ("1h 30m", 90 * 60),
            ("1h30m", 90 * 60),
            ("2d", 2 * 86_400),
            ("1w", 7 * 86_400),
            ("45s", 45),
            (" 3hours ", 3 * 3600),
        ];
        for (text, secs) in cases {
            assert_eq!(parse_duration(text), Ok(TimeDelta::seconds(secs)), "{text}");
        }
    }

    #[test]
    fn bad_durations_say_what_to_write() {
        for text in ["", "2", "two hours", "-2h", "0s", "500ms", "2x"] {
            let err = parse_duration(text).expect_err(text);
            assert!(err.contains(&format!("`{text}`")), "{err}");
        }
        assert!(parse_duration("2").expect_err("no unit").contains("e.g. 2h"));
    }

    #[test]
    fn duration_text_is_canonical() {
        assert_eq!(duration_text("90m").as_deref(), Ok("1h 30m"));
        assert_eq!(duration_text("2h").as_deref(), Ok("2h"));
        assert_eq!(duration_text("1d 25h").as_deref(), Ok("2d 1h"));
    }

    #[test]
    fn durations_print_compactly() {
        assert_eq!(format_duration(TimeDelta::zero()), "0s");
        assert_eq!(format_duration(TimeDelta::seconds(59)), "59s");
        assert_eq!(format_duration(TimeDelta::seconds(3600 * 4)), "4h");
        assert_eq!(format_duration(TimeDelta::seconds(86_400 + 3_600 + 61)), "1d 1h 1m 1s");
        assert_eq!(format_duration(TimeDelta::seconds(-5400)), "-1h 30m");
    }

    #[test]
    fn times_parse_to_utc_and_print_at_second_precision() {
        let t = parse_time("2026-11-22T10:00:00.750+01:00").expect("valid");
        assert_eq!(format_time(t), "2026-11-22T09:00:00Z");
        let err = parse_time("tomorrow").expect_err("not rfc 3339");
        assert!(err.contains("2026-11-22T09:00:00Z"), "{err}");
    }
}
