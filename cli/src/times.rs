//! Parsing and printing of times and durations, the one place that decides
//! how `ferrum` reads `--start 2026-11-22T09:00:00Z` (or the OAR-style
//! `2026-11-22 09:00` in the site's time zone, or `+2h` from now) and
//! `--duration 2h`, and how it shows them back (RFC 3339 UTC at second
//! precision, compact durations such as `1h 30m`).
//!
//! Everything here is pure: no clock, no I/O (the current time and the
//! site's time zone are arguments). The parsers have clap's `value_parser`
//! shape (`&str -> Result<T, String>`) so a bad value is a usage error (exit
//! code 2) with a message that says what to write instead.

use chrono::{DateTime, LocalResult, NaiveDateTime, SecondsFormat, TimeDelta, TimeZone, Utc};

/// Parses an RFC 3339 time (`2026-11-22T09:00:00Z`, `2026-11-22T10:00:00+01:00`)
/// into UTC.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|err| format!("`{text}` is not an RFC 3339 time ({err}); write e.g. 2026-11-22T09:00:00Z"))
}

/// A time as given on the command line (`--start`, `--end` of `lease
/// create`): absolute, local to the lease's site, or from now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeArg {
    /// RFC 3339, with its offset: `2026-11-22T09:00:00Z`.
    At(DateTime<Utc>),
    /// `2026-11-22 09:00[:SS]`, read in the site's time zone (as OAR's
    /// `-r` reads it).
    Local(NaiveDateTime),
    /// `+2h`, `+1h 30m`: that long after now.
    FromNow(TimeDelta),
}

/// The accepted spellings, for help and errors.
pub const TIME_FORMATS: &str = "2026-11-22T09:00:00Z (RFC 3339), 2026-11-22 09:00 (the site's time zone) or +2h (from now)";

/// Parses a `--start`/`--end` of `lease create` (see [`TimeArg`]).
pub fn parse_time_arg(text: &str) -> Result<TimeArg, String> {
    let trimmed = text.trim();
    if let Some(offset) = trimmed.strip_prefix('+') {
        return parse_duration(offset)
            .map(TimeArg::FromNow)
            .map_err(|_| format!("`{text}` is not an offset from now; write e.g. +2h or +1h 30m"));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(trimmed) {
        return Ok(TimeArg::At(t.with_timezone(&Utc)));
    }
    for format in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(trimmed, format) {
            return Ok(TimeArg::Local(t));
        }
    }
    Err(format!("`{text}` is not a time; write {TIME_FORMATS}"))
}

impl TimeArg {
    /// Whether reading it needs the site's time zone.
    pub fn is_local(&self) -> bool {
        matches!(self, TimeArg::Local(_))
    }

    /// The time in UTC: `now` for offsets, `zone` (the site's, named
    /// `site`) for local times. A local time that the zone skips (spring
    /// forward) or repeats (fall back) is refused, naming both readings.
    pub fn resolve(self, now: DateTime<Utc>, zone: Option<(&str, chrono_tz::Tz)>) -> Result<DateTime<Utc>, String> {
        match self {
            TimeArg::At(t) => Ok(t),
            TimeArg::FromNow(d) => Ok(now + d),
            TimeArg::Local(t) => {
                let Some((site, tz)) = zone else {
                    return Err(format!("{} has no time zone here; write {TIME_FORMATS}", t.format("%Y-%m-%d %H:%M:%S")));
                };
                let shown = t.format("%Y-%m-%d %H:%M:%S");
                match tz.from_local_datetime(&t) {
                    LocalResult::Single(t) => Ok(t.with_timezone(&Utc)),
                    LocalResult::Ambiguous(a, b) => Err(format!(
                        "{shown} happens twice in {tz} (site {site}): write {} or {}",
                        format_time(a.with_timezone(&Utc)),
                        format_time(b.with_timezone(&Utc))
                    )),
                    LocalResult::None => Err(format!("{shown} does not exist in {tz} (site {site}, the clocks skip it)")),
                }
            }
        }
    }
}

/// Parses a positive duration as the server does
/// ([`ferrum_api::durations`]: `2h`, `90m`, `1h 30m`, `2d`, `1w`, or an
/// OAR walltime `2:00`); `3M`, `3hr` or `1.5h` are refused here, before
/// anything is sent.
pub fn parse_duration(text: &str) -> Result<TimeDelta, String> {
    let secs = ferrum_api::durations::parse_duration(text).map_err(|e| format!("`{}`: {e}", text.trim()))?;
    TimeDelta::try_seconds(secs).ok_or_else(|| format!("`{text}` is too long a duration"))
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
            (" 4h ", 4 * 3600),
            ("2:00", 2 * 3600),
            ("0:10", 10 * 60),
        ];
        for (text, secs) in cases {
            assert_eq!(parse_duration(text), Ok(TimeDelta::seconds(secs)), "{text}");
        }
    }

    #[test]
    fn bad_durations_say_what_to_write() {
        for text in ["", "two hours", "-2h", "0s", "500ms", "2x", "3M", "3hr", "1.5h", " 3hours "] {
            let err = parse_duration(text).expect_err(text);
            assert!(err.contains(&format!("`{}`", text.trim())), "{err}");
        }
        assert!(parse_duration("3M").expect_err("months").contains("H:MM"), "the accepted forms are said");
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
    fn lease_times_are_absolute_local_or_from_now() {
        let now = parse_time("2026-12-07T21:00:00Z").expect("valid");
        let paris = Some(("lille", chrono_tz::Europe::Paris));
        let resolve = |text: &str, zone| parse_time_arg(text).and_then(|t| t.resolve(now, zone)).map(format_time);
        // RFC 3339 is read as before, whatever the zone.
        assert_eq!(resolve("2026-12-08T09:00:00Z", None).as_deref(), Ok("2026-12-08T09:00:00Z"));
        assert_eq!(resolve("2026-12-08T10:00:00+01:00", paris).as_deref(), Ok("2026-12-08T09:00:00Z"));
        // OAR's spelling, in the site's zone (Paris is UTC+1 in winter, +2 in summer).
        assert_eq!(resolve("2026-12-08 09:00", paris).as_deref(), Ok("2026-12-08T08:00:00Z"));
        assert_eq!(resolve("2026-12-08 09:00:30", paris).as_deref(), Ok("2026-12-08T08:00:30Z"));
        assert_eq!(resolve("2026-07-08T09:00", paris).as_deref(), Ok("2026-07-08T07:00:00Z"));
        assert_eq!(resolve("2026-12-08 09:00", Some(("x", chrono_tz::America::Montreal))).as_deref(), Ok("2026-12-08T14:00:00Z"));
        // Offsets from now.
        assert_eq!(resolve("+2h", None).as_deref(), Ok("2026-12-07T23:00:00Z"));
        assert_eq!(resolve("+1h 30m", None).as_deref(), Ok("2026-12-07T22:30:00Z"));
        assert!(parse_time_arg("2026-12-08 09:00").expect("valid").is_local());
        assert!(!parse_time_arg("+2h").expect("valid").is_local());
    }

    #[test]
    fn bad_lease_times_say_what_to_write() {
        let now = parse_time("2026-12-07T21:00:00Z").expect("valid");
        let paris = Some(("lille", chrono_tz::Europe::Paris));
        let errors: Vec<String> = [
            parse_time_arg("tomorrow").map(|_| ()),
            parse_time_arg("+soon").map(|_| ()),
            parse_time_arg("2026-13-08 09:00").map(|_| ()),
            parse_time_arg("2026-03-29 02:30").and_then(|t| t.resolve(now, paris)).map(|_| ()),
            parse_time_arg("2026-10-25 02:30").and_then(|t| t.resolve(now, paris)).map(|_| ()),
            parse_time_arg("2026-12-08 09:00").and_then(|t| t.resolve(now, None)).map(|_| ()),
        ]
        .into_iter()
        .map(|r| r.expect_err("refused"))
        .collect();
        insta::assert_snapshot!(errors.join("\n"));
    }

    #[test]
    fn times_parse_to_utc_and_print_at_second_precision() {
        let t = parse_time("2026-11-22T10:00:00.750+01:00").expect("valid");
        assert_eq!(format_time(t), "2026-11-22T09:00:00Z");
        let err = parse_time("tomorrow").expect_err("not rfc 3339");
        assert!(err.contains("2026-11-22T09:00:00Z"), "{err}");
    }
}
