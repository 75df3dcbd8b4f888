//! BMC addresses: `ipmi://user:pass@host:port` and
//! `redfish://user:pass@host:port/<system-id>`.
//!
//! Redfish over plain HTTP (emulators, labs) is `redfish+http://`. The TLS
//! policy of an HTTPS BMC comes from the query: `?ca=/path/ca.pem` (verify
//! against that CA), `?fingerprint=<sha256 hex>` (pin the certificate), or
//! `?insecure=true` (accept any certificate: an explicit per-BMC choice);
//! without any, the system's roots are used.
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

/// How a Redfish client trusts the BMC's certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsPolicy {
    /// Plain HTTP (`redfish+http://`): no TLS at all.
    PlainHttp,
    /// The system's trust roots.
    SystemRoots,
    /// A CA certificate file (PEM).
    Ca(std::path::PathBuf),
    /// The SHA-256 of the BMC's certificate (DER), lowercase hex.
    Fingerprint(String),
    /// Any certificate (explicitly asked for this BMC).
    Insecure,
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
    /// Redfish only (IPMI has no TLS): how to trust the BMC.
    pub tls: TlsPolicy,
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
    #[error("BMC address host is neither a DNS name (letters, digits, '-' and '.') nor an IP address")]
    BadHost,
    #[error("BMC address port must be between 1 and 65535")]
    PortZero,
    #[error("BMC address has no user name (expected {0}://user:pass@host...)")]
    NoUser(&'static str),
    #[error("BMC address has no password (expected {0}://user:pass@host...)")]
    NoPassword(&'static str),
    #[error("redfish BMC address needs the system id as its path (redfish://user:pass@host:port/<system-id>)")]
    NoSystemId,
    #[error("ipmi BMC address must not have a path")]
    UnexpectedPath,
    #[error("BMC address option '{0}' is not known (use ca=, fingerprint= or insecure=true on redfish:// addresses)")]
    UnknownOption(String),
    #[error("BMC address option '{0}' is invalid: {1}")]
    BadOption(&'static str, &'static str),
}

impl BmcAddress {
    /// Parses a BMC URL. The error never echoes the input, which holds a
    /// password.
    pub fn parse(input: &str) -> Result<Self, BmcParseError> {
        let url = Url::parse(input).map_err(|_| BmcParseError::NotAUrl)?;
        let (driver, plain_http) = match url.scheme() {
            "ipmi" => (BmcDriver::Ipmi, false),
            "redfish" => (BmcDriver::Redfish, false),
            "redfish+http" => (BmcDriver::Redfish, true),
            other => return Err(BmcParseError::Scheme(other.to_owned())),
        };
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or(BmcParseError::NoHost)?;
        if !valid_host(host) {
            return Err(BmcParseError::BadHost);
        }
        if url.port() == Some(0) {
            return Err(BmcParseError::PortZero);
        }
        let username = percent_decode(url.username());
        if username.is_empty() {
            return Err(BmcParseError::NoUser(driver.as_str()));
        }
        let password = url.password().map(percent_decode).unwrap_or_default();
        if password.is_empty() {
            return Err(BmcParseError::NoPassword(driver.as_str()));
        }
        let default_port = match (driver, plain_http) {
            (BmcDriver::Ipmi, _) => 623,
            (BmcDriver::Redfish, true) => 80,
            (BmcDriver::Redfish, false) => 443,
        };
        let mut tls = if plain_http { TlsPolicy::PlainHttp } else { TlsPolicy::SystemRoots };
        for (key, value) in url.query_pairs() {
            if driver == BmcDriver::Ipmi || plain_http {
                return Err(BmcParseError::UnknownOption(key.into_owned()));
            }
            tls = match (key.as_ref(), value.as_ref()) {
                ("ca", path) if !path.is_empty() => TlsPolicy::Ca(path.into()),
                ("ca", _) => return Err(BmcParseError::BadOption("ca", "give the path of a PEM file")),
                ("fingerprint", fp) => {
                    let hex: String = fp.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
                    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                        return Err(BmcParseError::BadOption("fingerprint", "give the certificate's SHA-256 in hex"));
                    }
                    TlsPolicy::Fingerprint(hex)
                }
                ("insecure", "true") => TlsPolicy::Insecure,
                ("insecure", _) => return Err(BmcParseError::BadOption("insecure", "the only value is true")),
                (other, _) => return Err(BmcParseError::UnknownOption(other.to_owned())),
            };
        }
        let path = url.path().trim_matches('/');
        let system_id = match driver {
            BmcDriver::Ipmi if !path.is_empty() => return Err(BmcParseError::UnexpectedPath),
            BmcDriver::Ipmi => None,
            BmcDriver::Redfish if path.is_empty() => return Err(BmcParseError::NoSystemId),
            BmcDriver::Redfish => Some(percent_decode(path)),
        };
        Ok(BmcAddress { driver, host: host.to_owned(), port: url.port().unwrap_or(default_port), username, password, system_id, tls })
    }

    fn scheme(&self) -> &'static str {
        match (self.driver, &self.tls) {
            (BmcDriver::Ipmi, _) => "ipmi",
            (BmcDriver::Redfish, TlsPolicy::PlainHttp) => "redfish+http",
            (BmcDriver::Redfish, _) => "redfish",
        }
    }

    /// `?ca=...`, `?fingerprint=...`, `?insecure=true` or nothing.
    fn query(&self) -> String {
        match &self.tls {
            TlsPolicy::Ca(path) => {
                format!("?ca={}", url::form_urlencoded::byte_serialize(path.to_string_lossy().as_bytes()).collect::<String>())
            }
            TlsPolicy::Fingerprint(fp) => format!("?fingerprint={fp}"),
            TlsPolicy::Insecure => "?insecure=true".to_owned(),
            TlsPolicy::PlainHttp | TlsPolicy::SystemRoots => String::new(),
        }
    }

    /// `host:port`, for messages (never the credentials).
    pub fn endpoint(&self) -> String {
        format!("{}:{}", bracket_ipv6(&self.host), self.port)
    }

    /// The secret password, for the power drivers.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The full URL including the password, for storage only.
    pub fn to_url_with_secret(&self) -> String {
        let mut url = format!(
            "{}://{}:{}@{}:{}",
            self.scheme(),
            encode_userinfo(&self.username),
            encode_userinfo(&self.password),
            bracket_ipv6(&self.host),
            self.port
        );
        if let Some(id) = &self.system_id {
            url.push('/');
            url.push_str(id);
        }
        url.push_str(&self.query());
        url
    }
}

/// An IP address (IPv6 in brackets, as URLs write it) or a DNS host name:
/// dot-separated labels of 1 to 63 letters, digits and inner hyphens, 253
/// characters at most. `ipmi://` and `redfish://` are not special schemes
/// for the URL parser, which keeps their host as written, percent escapes
/// (`h%00`) included: this is the check that refuses them.
fn valid_host(host: &str) -> bool {
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return true;
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
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
            .field("tls", &self.tls)
            .finish()
    }
}

impl fmt::Display for BmcAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}@{}:{}", self.scheme(), self.username, bracket_ipv6(&self.host), self.port)?;
        if let Some(id) = &self.system_id {
            write!(f, "/{id}")?;
        }
        f.write_str(&self.query())
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
    fn redfish_transport_and_tls_policy() {
        let b = BmcAddress::parse("redfish+http://admin:pw@127.0.0.1:8000/sys-1").expect("valid");
        assert_eq!((b.port, &b.tls), (8000, &TlsPolicy::PlainHttp));
        assert_eq!(BmcAddress::parse("redfish+http://a:pw@h/s").expect("valid").port, 80);
        let b = BmcAddress::parse("redfish://a:pw@h/s?insecure=true").expect("valid");
        assert_eq!(b.tls, TlsPolicy::Insecure);
        let fp = "AB:".repeat(31) + "AB";
        let b = BmcAddress::parse(&format!("redfish://a:pw@h/s?fingerprint={fp}")).expect("valid");
        assert_eq!(b.tls, TlsPolicy::Fingerprint("ab".repeat(32)));
        let b = BmcAddress::parse("redfish://a:pw@h:8443/s?ca=/etc/ferrum/bmc%20ca.pem").expect("valid");
        assert_eq!(b.tls, TlsPolicy::Ca("/etc/ferrum/bmc ca.pem".into()));
        for url in ["redfish+http://a:pw@h/s", "redfish://a:pw@h/s?insecure=true", "redfish://a:pw@h:8443/s?ca=/etc/ferrum/bmc%20ca.pem"] {
            let b = BmcAddress::parse(url).expect("valid");
            assert_eq!(BmcAddress::parse(&b.to_url_with_secret()).expect("round trip"), b, "{url}");
        }
        for bad in [
            "redfish://a:pw@h/s?insecure=yes",
            "redfish://a:pw@h/s?fingerprint=abc",
            "redfish://a:pw@h/s?verify=no",
            "ipmi://a:pw@h?insecure=true",
        ] {
            assert!(BmcAddress::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_and_port_are_checked() {
        for ok in ["ipmi://a:pw@10.0.0.5:623", "ipmi://a:pw@[::1]:623", "ipmi://a:pw@bmc-1.rack.example.:623", "redfish://a:pw@h:65535/s"] {
            assert!(BmcAddress::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ipmi://a:pw@h%00",
            "ipmi://a:pw@h%0a.example",
            "ipmi://a:pw@h_1",
            "ipmi://a:pw@-h",
            "ipmi://a:pw@a..b",
            "redfish://a:pw@h%20x/s",
            "redfish+http://a:pw@[zz]/s",
        ] {
            assert!(
                matches!(BmcAddress::parse(bad), Err(BmcParseError::BadHost | BmcParseError::NotAUrl)),
                "{bad}: {:?}",
                BmcAddress::parse(bad)
            );
        }
        assert_eq!(BmcAddress::parse("ipmi://a:pw@h%00"), Err(BmcParseError::BadHost));
        let long = format!("ipmi://a:pw@{}", vec!["a".repeat(63); 5].join("."));
        assert_eq!(BmcAddress::parse(&long), Err(BmcParseError::BadHost));
        assert_eq!(BmcAddress::parse("ipmi://a:pw@h:0"), Err(BmcParseError::PortZero));
        assert_eq!(BmcAddress::parse("redfish://a:pw@h:0/s"), Err(BmcParseError::PortZero));
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
