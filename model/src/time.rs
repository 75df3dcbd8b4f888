//! Time as the calendar sees it: whole seconds since the Unix epoch, and
//! half-open ranges `[start, end)` that are never empty.

use chrono::{DateTime, TimeZone, Utc};

/// Seconds since the Unix epoch (UTC). The calendar works in whole seconds.
pub type Seconds = i64;

/// Converts a timestamp to calendar seconds (sub-second parts are dropped).
pub fn to_seconds(t: DateTime<Utc>) -> Seconds {
    t.timestamp()
}

/// Converts calendar seconds back to a timestamp. Out-of-range values
/// (which the API never produces) saturate at the epoch.
pub fn from_seconds(s: Seconds) -> DateTime<Utc> {
    Utc.timestamp_opt(s, 0).single().unwrap_or_default()
}

/// A non-empty half-open interval `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeRange {
    start: Seconds,
    end: Seconds,
}

/// `start` was not before `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("start must be before end")]
pub struct EmptyRange;

impl TimeRange {
    pub fn new(start: Seconds, end: Seconds) -> Result<Self, EmptyRange> {
        if start < end { Ok(TimeRange { start, end }) } else { Err(EmptyRange) }
    }
    pub fn start(&self) -> Seconds {
        self.start
    }
    pub fn end(&self) -> Seconds {
        self.end
    }
    pub fn duration(&self) -> Seconds {
        self.end - self.start
    }
    pub fn overlaps(&self, other: &TimeRange) -> bool {
        self.start < other.end && other.start < self.end
    }
}
