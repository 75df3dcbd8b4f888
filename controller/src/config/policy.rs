//! `[policy]`: the access policy (SPEC §4), in the spirit of Grid'5000's
//! usage charter: limits per project class, peak hours during which large
//! leases are refused, project quotas counted per period, and the size
//! above which a lease waits for an admin's approval.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{NaiveTime, Weekday};
use ferrum_pxe::config::duration;
use serde::{Deserialize, Deserializer};

/// The whole `[policy]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Leases above this many node-hours wait in `awaiting_approval` until
    /// an admin approves them. Default `10000`.
    pub approval_threshold_node_hours: f64,
    /// Such leases must start at least this far ahead (an admin needs time
    /// to decide); one not approved by its start is rejected. Default `24h`.
    #[serde(deserialize_with = "duration")]
    pub approval_notice: Duration,
    /// The period projects' `quota_node_hours` is counted over: `month` or
    /// `year` (calendar periods, UTC). Default `month`.
    pub quota_period: QuotaPeriod,
    /// The class of projects that have none. Default: none (no class
    /// limits).
    pub default_class: Option<String>,
    /// IANA time zone of the peak hours. Default `UTC`.
    #[serde(deserialize_with = "time_zone")]
    pub timezone: chrono_tz::Tz,
    /// Peak hours (`[policy.peak]`); none by default.
    pub peak: Option<PeakHours>,
    /// Limits per project class (`[policy.classes.<name>]`).
    pub classes: BTreeMap<String, ClassRules>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            approval_threshold_node_hours: 10_000.0,
            approval_notice: Duration::from_secs(24 * 3600),
            quota_period: QuotaPeriod::Month,
            default_class: None,
            timezone: chrono_tz::UTC,
            peak: None,
            classes: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuotaPeriod {
    Month,
    Year,
}

impl QuotaPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaPeriod::Month => "month",
            QuotaPeriod::Year => "year",
        }
    }
}

/// The hours of the working week when large leases are refused
/// (Grid'5000: week days 9:00 to 19:00 belong to small, interactive use).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeakHours {
    /// Days with peak hours: `mon` ... `sun`. Default: Monday to Friday.
    #[serde(default = "week_days", deserialize_with = "weekdays")]
    pub days: Vec<Weekday>,
    /// Start and end of the peak hours, `HH:MM`, local time, `from` < `to`.
    #[serde(deserialize_with = "clock_time")]
    pub from: NaiveTime,
    #[serde(deserialize_with = "clock_time")]
    pub to: NaiveTime,
}

/// Limits of one project class. Every key is optional: absent, no limit.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassRules {
    /// Longest lease.
    #[serde(deserialize_with = "optional_duration")]
    pub max_duration: Option<Duration>,
    /// Most nodes in one lease.
    pub max_nodes: Option<u32>,
    /// Whether the class may use exotic (prototype) hardware. Default
    /// `true`.
    pub exotic: Option<bool>,
    /// Most nodes in one lease that overlaps peak hours: larger leases run
    /// at night and on weekends.
    pub peak_max_nodes: Option<u32>,
}

impl PolicyConfig {
    /// What cannot be checked by types; errors name the key.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.approval_threshold_node_hours.is_finite() && self.approval_threshold_node_hours > 0.0) {
            return Err("policy.approval_threshold_node_hours: a positive number".into());
        }
        if let Some(class) = &self.default_class
            && !self.classes.contains_key(class)
        {
            return Err(format!("policy.default_class: '{class}' is not one of [policy.classes.*]"));
        }
        if let Some(peak) = &self.peak {
            if peak.from >= peak.to {
                return Err("policy.peak: 'from' must be before 'to' (peak hours within one day)".into());
            }
            if peak.days.is_empty() {
                return Err("policy.peak.days: name at least one day".into());
            }
        }
        for (name, rules) in &self.classes {
            if rules.max_duration.is_some_and(|d| d.as_secs() == 0) {
                return Err(format!("policy.classes.{name}.max_duration: must be positive"));
            }
            if rules.max_nodes == Some(0) {
                return Err(format!("policy.classes.{name}.max_nodes: must be at least 1"));
            }
            if rules.peak_max_nodes.is_some() && self.peak.is_none() {
                return Err(format!("policy.classes.{name}.peak_max_nodes: needs [policy.peak]"));
            }
        }
        Ok(())
    }

    /// The rules of a project's class: its own if configured, else the
    /// default class's, else none. Returns the class name it applied.
    pub fn rules_for(&self, class: Option<&str>) -> Option<(&str, &ClassRules)> {
        class
            .and_then(|c| self.classes.get_key_value(c))
            .or_else(|| self.default_class.as_deref().and_then(|c| self.classes.get_key_value(c)))
            .map(|(k, v)| (k.as_str(), v))
    }
}

fn week_days() -> Vec<Weekday> {
    vec![Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri]
}

fn weekdays<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Weekday>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    names
        .iter()
        .map(|n| n.parse::<Weekday>().map_err(|_| serde::de::Error::custom(format!("'{n}' is not a day (mon, tue, ... sun)"))))
        .collect()
}

fn clock_time<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveTime, D::Error> {
    let text = String::deserialize(d)?;
    NaiveTime::parse_from_str(&text, "%H:%M").map_err(|_| serde::de::Error::custom(format!("'{text}' is not a time of day (HH:MM)")))
}

pub(super) fn time_zone<'de, D: Deserializer<'de>>(d: D) -> Result<chrono_tz::Tz, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|_| serde::de::Error::custom(format!("'{text}' is not an IANA time zone (e.g. Europe/Paris, UTC)")))
}

fn optional_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PolicyConfig, String> {
        let p: PolicyConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        p.validate()?;
        Ok(p)
    }

    #[test]
    fn full_section() {
        let p = parse(
            r#"
            approval_threshold_node_hours = 5000
            quota_period = "year"
            default_class = "research"
            timezone = "Europe/Paris"
            [peak]
            days = ["mon", "fri"]
            from = "09:00"
            to = "19:00"
            [classes.student]
            max_duration = "4h"
            max_nodes = 4
            exotic = false
            peak_max_nodes = 2
            [classes.research]
            "#,
        )
        .expect("valid");
        assert_eq!(p.quota_period, QuotaPeriod::Year);
        assert_eq!(p.peak.as_ref().map(|p| p.days.clone()), Some(vec![Weekday::Mon, Weekday::Fri]));
        assert_eq!(p.rules_for(Some("student")).map(|(n, r)| (n, r.max_nodes)), Some(("student", Some(4))));
        assert_eq!(p.rules_for(Some("unknown")).map(|(n, _)| n), Some("research"));
        assert_eq!(p.rules_for(None).map(|(n, _)| n), Some("research"));
    }

    #[test]
    fn errors_name_the_key() {
        for (text, needle) in [
            ("default_class = \"x\"", "policy.default_class"),
            ("[peak]\nfrom = \"19:00\"\nto = \"09:00\"", "policy.peak"),
            ("[peak]\nfrom = \"9h\"\nto = \"19:00\"", "HH:MM"),
            ("timezone = \"Mars/Olympus\"", "IANA"),
            ("[classes.s]\npeak_max_nodes = 2", "policy.classes.s.peak_max_nodes"),
            ("[classes.s]\nmax_nodes = 0", "policy.classes.s.max_nodes"),
            ("approval_threshold_node_hours = -1", "approval_threshold"),
        ] {
            let err = parse(text).expect_err(text);
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
