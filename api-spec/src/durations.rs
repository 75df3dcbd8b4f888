//! Durations and OAR walltimes as ferrum reads them, strictly, in one
//! place for the server (`duration`, `walltime`, `expires_in`) and the CLI
//! (which checks before it sends). The errors say the accepted forms; the
//! caller adds the field or flag they concern.

/// The walltime forms [`parse_walltime`] accepts, for error messages.
pub const WALLTIME_FORMS: &str = "H, H:MM or H:MM:SS (2 is two hours, 1:30 an hour and a half, 0:10 ten minutes)";

/// The duration forms [`parse_duration`] accepts, for error messages.
pub const DURATION_FORMS: &str =
    "terms of a whole number and a unit s, m, h, d or w (30m, 4h, 1h 30m, 2d), or an OAR walltime H, H:MM or H:MM:SS (2:00 is two hours)";

/// Parses an OAR walltime into seconds: `H`, `H:MM` or `H:MM:SS`
/// (oarsub(1): `2:00` is two hours), with minutes and seconds below 60. A
/// zero walltime is refused.
pub fn parse_walltime(text: &str) -> Result<i64, String> {
    let bad = || format!("'{text}' is not an OAR walltime; write {WALLTIME_FORMS}");
    let parts: Vec<&str> = text.trim().split(':').collect();
    if parts.len() > 3 || parts.iter().any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return Err(bad());
    }
    if parts.iter().skip(1).any(|p| p.len() > 2) {
        return Err(bad());
    }
    let hours: i64 = parts[0].parse().map_err(|_| bad())?;
    let minutes: i64 = parts.get(1).map_or(Ok(0), |p| p.parse()).map_err(|_| bad())?;
    let seconds: i64 = parts.get(2).map_or(Ok(0), |p| p.parse()).map_err(|_| bad())?;
    if minutes >= 60 || seconds >= 60 {
        return Err(format!("'{text}': minutes and seconds of a walltime are below 60 ({WALLTIME_FORMS})"));
    }
    let total = hours.checked_mul(3600).and_then(|h| h.checked_add(minutes * 60 + seconds)).ok_or_else(bad)?;
    if total == 0 {
        return Err(format!("'{text}': the walltime must be at least one second"));
    }
    Ok(total)
}

/// Parses a duration into whole seconds, strictly: terms `<n>s|m|h|d|w`
/// from the largest unit down, each unit at most once (`90m`, `1h 30m`,
/// `2d`), or an OAR walltime (`2:00` is two hours, `0:10` ten minutes).
/// Nothing else: no months (`3M`), no spelled units (`3hr`), no fractions
/// (`1.5h`).
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let bad = || format!("'{text}' is not a duration; write {DURATION_FORMS}");
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b':') {
        return parse_walltime(t);
    }
    if t.is_empty() {
        return Err(bad());
    }
    const UNITS: [(char, i64); 5] = [('w', 604_800), ('d', 86_400), ('h', 3600), ('m', 60), ('s', 1)];
    let mut total: i64 = 0;
    let mut last_unit: Option<usize> = None;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        let unit = rest[digits..].chars().next().ok_or_else(bad)?;
        let index = UNITS.iter().position(|(c, _)| *c == unit).ok_or_else(bad)?;
        if last_unit.is_some_and(|last| index <= last) {
            return Err(format!("'{text}' is not a duration: give each unit once, the largest first (1h 30m); write {DURATION_FORMS}"));
        }
        last_unit = Some(index);
        total = n.checked_mul(UNITS[index].1).and_then(|x| x.checked_add(total)).ok_or_else(|| format!("'{text}' is too long"))?;
        rest = rest[digits + unit.len_utf8()..].trim_start();
    }
    if total <= 0 {
        return Err("must be at least one second".to_owned());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_units_or_oar_walltimes() {
        for (text, secs) in [
            ("90m", 5400),
            ("1h 30m", 5400),
            ("1h30m", 5400),
            (" 4h ", 14_400),
            ("2d", 172_800),
            ("1w 1d", 691_200),
            ("45s", 45),
            ("2:00", 7200),
            ("0:10", 600),
            ("2", 7200),
            ("1:00:30", 3630),
        ] {
            assert_eq!(parse_duration(text).ok(), Some(secs), "{text}");
        }
    }

    #[test]
    fn lax_durations_are_refused_with_the_accepted_forms() {
        for text in ["3M", "3hr", "1.5h", "1 h", "1hour", "2 days", "h", "", "30m 1h", "1h 1h", "-1h", "0:60", "1y", "soon"] {
            let err = parse_duration(text).expect_err(text);
            assert!(err.contains("H:MM") || err.contains("walltime"), "{text}: {err}");
        }
        assert!(parse_duration("0m").expect_err("zero").contains("at least one second"));
        assert!(parse_duration("0:00").expect_err("zero").contains("at least one second"));
        assert!(parse_duration("99999999999999999w").expect_err("huge").contains("too long"));
    }
}
