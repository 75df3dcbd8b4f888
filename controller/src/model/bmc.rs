//! BMC addresses: `ipmi://user:pass@host:port` and
//! `redfish://user:pass@host:port/<system-id>`.
//!
//! The password is a secret: `Debug` and `Display` redact it, and only
//! [`BmcAddress::to_url_with_secret`] (used by the datastore to persist it,
//! and later by the power drivers) writes it out.

use std::fmt;

use url::Url;

/// Which protocol speaks to the BMC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BmcDriver {
    /// IPMI v2.0 over LAN (RMCP+), default port 623.
    Ipmi,
    /// Redfish over HTTPS, default port 443.
    Redfish,
}

impl BmcDriver {
    pub fn as_str(self) -> &'static str {
        match self {
            BmcDriver::Ipmi => "ipmi",
            BmcDriver::Redfish => "redfish",
        }
    }
}

/// A validated BMC address with its credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct BmcAddress {
    pub driver: BmcDriver,
    pub host: String,
    pub port: u16,
    pub username: String,
    password: String,
    /// Redfish only: the system id under `/redfish/v1/Systems/`.
    pub system_id: Option<String>,
}

/// Why a BMC URL was refused. Never contains the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BmcParseError {
    #[error("BMC address is not a URL (expected ipmi://user:pass@host:port or redfish://user:pass@host:port/<system-id>)")]
    NotAUrl,
    #[error("BMC address scheme '{0}' is not supported (use ipmi:// or redfish://)")]
    Scheme(String),
    #[error("BMC address has no host")]
    NoHost,
    #[error("BMC address has no user name (expected {0}://user:pass@host...)")]
    NoUser(&'static str),
    #[error("BMC address has no password (expected {0}://user:pass@host...)")]
    NoPassword(&'static str),
    #[error("redfish BMC address needs the system id as its path (redfish://user:pass@host:port/<system-id>)")]
    NoSystemId,
    #[error("ipmi BMC address must not have a path")]
    UnexpectedPath,
}

impl BmcAddress {
    /// Parses a BMC URL. The error never echoes the input, which holds a
    /// password.
    pub fn parse(input: &str) -> Result<Self, BmcParseError> {
        let url = Url::parse(input).map_err(|_| BmcParseError::NotAUrl)?;
        let driver = match url.scheme() {
            "ipmi" => BmcDriver::Ipmi,
            "redfish" => BmcDriver::Redfish,
            other => return Err(BmcParseError::Scheme(other.to_owned())),
        };
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or(BmcParseError::NoHost)?;
        let username = percent_decode(url.username());
        if username.is_empty() {
            return Err(BmcParseError::NoUser(driver.as_str()));
        }
        let password = url.password().map(percent_decode).unwrap_or_default();
        if password.is_empty() {
            return Err(BmcParseError::NoPassword(driver.as_str()));
        }
        let default_port = match driver {
            BmcDriver::Ipmi => 623,
            BmcDriver::Redfish => 443,
        };
        let path = url.path().trim_matches('/');
        let system_id = match driver {
            BmcDriver::Ipmi if !path.is_empty() => return Err(BmcParseError::UnexpectedPath),
            BmcDriver::Ipmi => None,
            BmcDriver::Redfish if path.is_empty() => return Err(BmcParseError::NoSystemId),
            BmcDriver::Redfish => Some(percent_decode(path)),
        };
        Ok(BmcAddress { driver, host: host.to_owned(), port: url.port().unwrap_or(default_port), username, password, system_id })
    }

    /// The secret password, for the power drivers.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The full URL including the password, for storage only.
    pub fn to_url_with_secret(&self) -> String {
        let mut url = format!(
            "{}://{}:{}@{}:{}",
            self.driver.as_str(),
            encode_userinfo(&self.username),
            encode_userinfo(&self.password),
            bracket_ipv6(&self.host),
            self.port
        );
        if let Some(id) = &self.system_id {
            url.push('/');
            url.push_str(id);
        }
        url
    }
}

fn bracket_ipv6(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_owned() }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

fn encode_userinfo(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20")
}

impl fmt::Debug for BmcAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BmcAddress")
            .field("driver", &self.driver)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("system_id", &self.system_id)
            .finish()
    }
}

impl fmt::Display for BmcAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}@{}:{}", self.driver.as_str(), self.username, bracket_ipv6(&self.host), self.port)?;
        if let Some(id) = &self.system_id {
            write!(f, "/{id}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipmi_with_default_port() {
        let b = BmcAddress::parse("ipmi://admin:s3cret@10.0.0.5").expect("valid");
        assert_eq!(b.driver, BmcDriver::Ipmi);
        assert_eq!((b.host.as_str(), b.port, b.username.as_str()), ("10.0.0.5", 623, "admin"));
        assert_eq!(b.password(), "s3cret");
        assert_eq!(b.system_id, None);
    }

    #[test]
    fn redfish_with_system_id_and_odd_password_round_trips() {
        let b = BmcAddress::parse("redfish://root:p%40ss%3Aw%2Fd@bmc.example:8443/System.Embedded.1").expect("valid");
        assert_eq!(b.password(), "p@ss:w/d");
        assert_eq!(b.system_id.as_deref(), Some("System.Embedded.1"));
        let again = BmcAddress::parse(&b.to_url_with_secret()).expect("round trip");
        assert_eq!(again, b);
    }

    #[test]
    fn secrets_never_printed() {
        let b = BmcAddress::parse("ipmi://admin:topsecret@127.0.0.1:6230").expect("valid");
        assert!(!format!("{b:?}").contains("topsecret"));
        assert!(!b.to_string().contains("topsecret"));
        for bad in ["ipmi://admin@h", "http://a:topsecret@h", "redfish://a:topsecret@h:1", "ipmi://a:topsecret@h/x", "topsecret"] {
            let err = BmcAddress::parse(bad).expect_err(bad);
            assert!(!err.to_string().contains("topsecret"), "{err}");
        }
    }
}
