//! `[sites.NAME]`: what ferrum knows of a site beyond its nodes. The
//! Grid'5000 API (`/stable`) reads its dates in the site's time zone and
//! names its nodes `<node>.<site>.<domain>`; later issues add to the table.
//! A site that has no table (its nodes were imported or enrolled with a
//! site name) takes every default.

use std::net::IpAddr;

use serde::Deserialize;

/// `[sites.NAME]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SiteConfig {
    /// IANA time zone in which the Grid'5000 API reads and writes naive
    /// dates (OAR's `reservation`, the "could run at" time). Default
    /// `Europe/Paris`: EnOSlib reads OAR's times as Paris time, whatever
    /// the site.
    #[serde(deserialize_with = "super::policy::time_zone")]
    pub timezone: chrono_tz::Tz,
    /// DNS domain under the site's label: node `chifflot-1` of site
    /// `lille` is `chifflot-1.lille.<domain>`. Default `ferrum.internal`.
    pub domain: String,
    /// The resolver the site's nodes use (`/stable/sites/NAME/servers/dns`).
    pub dns: Option<IpAddr>,
    /// The nodes' network (CIDR), as Grid'5000's `kavlans.default.network`.
    pub network: Option<ipnet::IpNet>,
    /// Its gateway, as `kavlans.default.gateway`.
    pub gateway: Option<IpAddr>,
}

/// The default domain: `.internal` is reserved for private names (ICANN,
/// 2024), so it never leaks to a public resolver's answer.
pub const DEFAULT_DOMAIN: &str = "ferrum.internal";

impl Default for SiteConfig {
    fn default() -> Self {
        SiteConfig { timezone: chrono_tz::Europe::Paris, domain: DEFAULT_DOMAIN.into(), dns: None, network: None, gateway: None }
    }
}

impl SiteConfig {
    /// The fully qualified name of node `node` of site `site`.
    pub fn fqdn(&self, node: &str, site: &str) -> String {
        format!("{node}.{site}.{}", self.domain)
    }

    pub(super) fn validate(&self, site: &str) -> Result<(), String> {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !self.domain.split('.').all(label_ok) {
            return Err(format!(
                "sites.{site}.domain: '{}' is not a DNS domain (labels of letters, digits and '-', dot-separated)",
                self.domain
            ));
        }
        if let (Some(net), Some(gw)) = (self.network, self.gateway)
            && !net.contains(&gw)
        {
            return Err(format!("sites.{site}.gateway: {gw} is not inside sites.{site}.network ({net})"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn sites_take_defaults_and_errors_name_the_key() {
        let c =
            Config::parse("[sites.lille]\ndomain = \"g5k.example.org\"\nnetwork = \"10.77.0.0/24\"\ngateway = \"10.77.0.1\"\n").unwrap();
        assert_eq!(c.site("lille").fqdn("chifflot-1", "lille"), "chifflot-1.lille.g5k.example.org");
        assert_eq!(c.site("lille").timezone, chrono_tz::Europe::Paris);
        assert_eq!(c.site("nancy").fqdn("gros-1", "nancy"), "gros-1.nancy.ferrum.internal");
        let e = Config::parse("[sites.lille]\ntimezone = \"Mars/Olympus\"\n").unwrap_err();
        assert!(e.contains("Mars/Olympus") && e.contains("timezone"), "{e}");
        let e = Config::parse("[sites.lille]\ndomain = \"bad domain\"\n").unwrap_err();
        assert!(e.starts_with("sites.lille.domain:"), "{e}");
        let e = Config::parse("[sites.lille]\nnetwork = \"10.77.0.0/24\"\ngateway = \"10.78.0.1\"\n").unwrap_err();
        assert!(e.starts_with("sites.lille.gateway:"), "{e}");
        let e = Config::parse("[sites.lille]\nzone = \"x\"\n").unwrap_err();
        assert!(e.contains("zone"), "{e}");
    }
}
