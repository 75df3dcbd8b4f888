//! `ferrumd`'s configuration: a TOML file whose every key is optional and
//! documented in `ferrumd.example.toml`, overridden by command-line flags.
//!
//! Parsing is strict (`deny_unknown_fields`) and errors name the file and
//! the key. This module only reads and validates; it starts nothing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferrum_pxe::config::duration;
use serde::Deserialize;

mod policy;
mod sites;
pub use policy::{ClassRules, PeakHours, PolicyConfig, QuotaPeriod};
pub use sites::SiteConfig;

/// The whole configuration, with defaults filled in.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address of the HTTP API. Default `127.0.0.1:8750` (loopback only).
    pub listen: SocketAddr,
    /// Where the database, the first admin token and other state live.
    /// Default `ferrum-data` (relative to the working directory).
    pub data_dir: PathBuf,
    /// Database URL. Default: SQLite at `<data_dir>/ferrum.db`.
    pub database: Option<String>,
    /// The key file that encrypts BMC credentials in the database (mode
    /// 0600, created on first start). Replicas share one. Default:
    /// `<data_dir>/secret.key`.
    pub secrets_key_file: Option<PathBuf>,
    pub log: LogConfig,
    pub leases: LeaseConfig,
    pub power: PowerConfig,
    pub boot: BootConfig,
    pub deploy: DeployConfig,
    pub reset: ResetConfig,
    pub policy: PolicyConfig,
    pub accounts: AccountsConfig,
    pub web: WebConfig,
    pub mail: MailConfig,
    /// `[sites.NAME]`, by site name.
    pub sites: std::collections::BTreeMap<String, SiteConfig>,
}

/// `[mail]`: mail to users (account requests' e-mail check, activation
/// links). Without `smtp_url` nothing is sent.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    /// The SMTP server, as lettre reads it: `smtp://host:25` (plain),
    /// `smtp://host:587?tls=required` (STARTTLS), `smtps://user:password@host`
    /// (TLS); the password is never logged. Default: none (no mail).
    pub smtp_url: Option<String>,
    /// The sender. Default `ferrum <ferrum@localhost>`.
    pub from: String,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig { smtp_url: None, from: "ferrum <ferrum@localhost>".into() }
    }
}

/// `[web]`: the web portal served at `/` (issue 19).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// The URL users reach this controller at, as links (activation,
    /// mail) carry it; `https://` makes the session cookie `Secure`.
    /// Default: `http://` and the `listen` address.
    pub public_url: Option<String>,
    /// How long a browser session lasts after sign-in. Default `12h`.
    #[serde(deserialize_with = "duration")]
    pub session_lifetime: Duration,
    /// How long an activation link stays usable. Default `72h`.
    #[serde(deserialize_with = "duration")]
    pub activation_lifetime: Duration,
    /// Reverse proxies whose `X-Forwarded-For` is believed (the client
    /// address sign-in throttling counts by). Default none: the peer's
    /// address is the client's.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Sign-in attempts one account may make in a burst; one more comes
    /// back every minute. Default `5`.
    pub login_burst_per_account: u32,
    /// Sign-in attempts one client address may make in a burst; one more
    /// comes back every 10 seconds. Default `20`.
    pub login_burst_per_address: u32,
    /// Serve HTTPS on `listen` (the API and the portal) with this
    /// certificate chain, PEM, leaf first. With `tls_key`; default none:
    /// plain HTTP (behind a reverse proxy that terminates TLS).
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert`, PEM (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            public_url: None,
            session_lifetime: Duration::from_secs(12 * 3600),
            activation_lifetime: Duration::from_secs(72 * 3600),
            trusted_proxies: Vec::new(),
            login_burst_per_account: 5,
            login_burst_per_address: 20,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl WebConfig {
    fn validate(&self) -> Result<(), String> {
        if let Some(url) = &self.public_url {
            let parsed = url::Url::parse(url).map_err(|e| format!("web.public_url: '{url}' is not a URL ({e})"))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                return Err(format!("web.public_url: '{url}' must be an http:// or https:// URL with a host"));
            }
        }
        if self.session_lifetime < Duration::from_secs(60) {
            return Err("web.session_lifetime: at least 1m".into());
        }
        if self.activation_lifetime < Duration::from_secs(60) {
            return Err("web.activation_lifetime: at least 1m".into());
        }
        if self.login_burst_per_account == 0 || self.login_burst_per_address == 0 {
            return Err("web.login_burst_per_account, web.login_burst_per_address: at least 1".into());
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("web.tls_cert, web.tls_key: give both (HTTPS) or neither (HTTP)".into());
        }
        Ok(())
    }
}

/// `[accounts]`: API tokens.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsConfig {
    /// Live tokens (not revoked, not expired) one user may hold; creating
    /// one more is refused (409). Default 20, at least 1.
    pub max_tokens_per_user: u32,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        AccountsConfig { max_tokens_per_user: 20 }
    }
}

/// `[deploy]`: how deployments run (SPEC §5). Every phase has a deadline;
/// past it the node is power-cycled again, up to `attempts` times, then its
/// deploy fails (the other nodes go on).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeployConfig {
    /// The controller's own SSH key (ed25519, created on first use),
    /// installed beside the user's keys to check a deployed node.
    /// Default: `<data_dir>/ssh/id_ed25519`.
    pub ssh_key: Option<PathBuf>,
    /// BMC operations (boot device, power) of one phase. Default `3m`.
    #[serde(deserialize_with = "duration")]
    pub power_timeout: Duration,
    /// Power-on to the ramdisk's agent registered. Default `5m`.
    #[serde(deserialize_with = "duration")]
    pub boot_timeout: Duration,
    /// Writing the image (and each other agent command). Default `30m`.
    #[serde(deserialize_with = "duration")]
    pub write_timeout: Duration,
    /// Reboot into the image to a root SSH login. Default `5m`.
    #[serde(deserialize_with = "duration")]
    pub ssh_timeout: Duration,
    /// Tries per node (a retry power-cycles the node again). Default `2`.
    pub attempts: u32,
    /// The command the SSH check runs. Default `uname -a`.
    pub check_command: String,
}

impl Default for DeployConfig {
    fn default() -> Self {
        DeployConfig {
            ssh_key: None,
            power_timeout: Duration::from_secs(180),
            boot_timeout: Duration::from_secs(300),
            write_timeout: Duration::from_secs(1800),
            ssh_timeout: Duration::from_secs(300),
            attempts: 2,
            check_command: "uname -a".into(),
        }
    }
}

impl DeployConfig {
    fn validate(&self) -> Result<(), String> {
        if !(1..=10).contains(&self.attempts) {
            return Err("deploy.attempts: from 1 to 10".into());
        }
        for (key, d) in [
            ("deploy.power_timeout", self.power_timeout),
            ("deploy.boot_timeout", self.boot_timeout),
            ("deploy.write_timeout", self.write_timeout),
            ("deploy.ssh_timeout", self.ssh_timeout),
        ] {
            if d < Duration::from_secs(5) {
                return Err(format!("{key}: at least 5s"));
            }
        }
        if self.check_command.trim().is_empty() {
            return Err("deploy.check_command: empty".into());
        }
        Ok(())
    }
}

/// `[reset]`: what happens to a node when its lease ends (SPEC §6).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResetConfig {
    /// Overwrite every byte of the disks instead of only their partition
    /// tables and signatures (slow). Default `false`.
    pub secure_wipe: bool,
    /// Leave a clean node powered off (`true`), or on (`false`: in the
    /// deploy ramdisk, or booting the default environment). Default `true`.
    pub power_off: bool,
    /// An environment written back on every clean node after the wipe and
    /// check, with the controller's key only; the node's next boot is its
    /// disk. Pinned: `"id:N"` (an admin-owned catalog entry), or `"NAME"` /
    /// `"OWNER/NAME"`: the newest public version published by an admin
    /// (never a user's). Default: none (disks stay blank).
    pub default_environment: Option<String>,
}

/// What `[reset] default_environment` pins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvironmentPin {
    Id(i64),
    Name { owner: Option<String>, name: String },
}

impl ResetConfig {
    /// The parsed `default_environment`; the error names the key.
    pub fn default_environment_pin(&self) -> Result<Option<EnvironmentPin>, String> {
        let Some(text) = self.default_environment.as_deref() else { return Ok(None) };
        let bad = || {
            format!(
                "reset.default_environment: '{text}' must be \"id:N\", \"NAME\" or \"OWNER/NAME\" (names: lowercase letters, digits, '.', '_', '-')"
            )
        };
        if let Some(id) = text.strip_prefix("id:") {
            return id.parse::<i64>().ok().filter(|id| *id > 0).map(|id| Some(EnvironmentPin::Id(id))).ok_or_else(bad);
        }
        let (owner, name) = match text.split_once('/') {
            Some((owner, name)) => (Some(owner), name),
            None => (None, text),
        };
        let word = |w: &str| {
            !w.is_empty()
                && w.len() <= 64
                && w.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        };
        let login = |w: &str| !w.is_empty() && w.len() <= 64 && !w.chars().any(|c| c.is_whitespace() || c.is_control());
        if !word(name) || owner.is_some_and(|o| !login(o)) {
            return Err(bad());
        }
        Ok(Some(EnvironmentPin::Name { owner: owner.map(str::to_owned), name: name.to_owned() }))
    }
}

impl Default for ResetConfig {
    fn default() -> Self {
        ResetConfig { secure_wipe: false, power_off: true, default_environment: None }
    }
}

/// `[boot]`: network boot. Nothing runs unless configured: the HTTP boot
/// and agent endpoints only on the `listen` addresses (never on the API's),
/// DHCP and TFTP only for the interfaces and addresses listed.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BootConfig {
    /// Where the boot and agent endpoints (`/boot/`, `/images/`,
    /// `/agent/v1/`) are served: addresses on the provisioning network,
    /// e.g. `["10.10.0.1:8751"]`. Default: none (no network boot). Required
    /// when DHCP is configured.
    pub listen: Vec<SocketAddr>,
    /// The URL nodes reach the boot listener at (iPXE scripts, kernel,
    /// initrd, images, the agent's API). Required when DHCP is configured.
    pub public_url: Option<String>,
    /// Directory of the deploy ramdisk served at `/boot/files/`.
    /// Default: `<data_dir>/ramdisk`.
    pub ramdisk_dir: Option<PathBuf>,
    /// Directory served at `/images/` (environment images named by a
    /// relative path). Default: `<data_dir>/images`.
    pub images_dir: Option<PathBuf>,
    /// File names of the ramdisk's kernel and initrd in `ramdisk_dir`.
    pub kernel: String,
    pub initrd: String,
    /// Extra kernel command line of the ramdisk (e.g. `console=ttyS0`).
    pub cmdline: String,
    /// How long a one-time agent token stays valid.
    #[serde(deserialize_with = "duration")]
    pub agent_token_ttl: Duration,
    /// DHCP per interface (`[[boot.dhcp]]`).
    pub dhcp: Vec<ferrum_pxe::config::DhcpInterface>,
    /// TFTP (`[boot.tftp]`).
    pub tftp: Option<ferrum_pxe::config::TftpConfig>,
}

impl Default for BootConfig {
    fn default() -> Self {
        BootConfig {
            listen: Vec::new(),
            public_url: None,
            ramdisk_dir: None,
            images_dir: None,
            kernel: "vmlinuz".into(),
            initrd: "initrd.img".into(),
            cmdline: String::new(),
            agent_token_ttl: Duration::from_secs(2 * 3600),
            dhcp: Vec::new(),
            tftp: None,
        }
    }
}

impl BootConfig {
    /// The boot network services to start.
    pub fn network(&self) -> ferrum_pxe::services::BootNetwork {
        ferrum_pxe::services::BootNetwork { dhcp: self.dhcp.clone(), tftp: self.tftp.clone() }
    }

    /// What cannot be checked by types; errors name the key.
    pub fn validate(&self) -> Result<(), String> {
        self.network().validate()?;
        if let Some(url) = &self.public_url {
            let parsed = url::Url::parse(url).map_err(|e| format!("boot.public_url: '{url}' is not a URL ({e})"))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                return Err(format!("boot.public_url: '{url}' must be an http:// or https:// URL with a host"));
            }
        } else if !self.dhcp.is_empty() {
            return Err("boot.public_url: required when boot.dhcp is configured (the URL nodes reach this controller at)".into());
        }
        if !self.dhcp.is_empty() && self.listen.is_empty() {
            return Err("boot.listen: required when boot.dhcp is configured (the provisioning-network addresses the boot and agent endpoints are served at, e.g. [\"10.10.0.1:8751\"])".into());
        }
        for (i, addr) in self.listen.iter().enumerate() {
            if self.listen[..i].contains(addr) {
                return Err(format!("boot.listen: {addr} is listed twice"));
            }
        }
        for (key, name) in [("boot.kernel", &self.kernel), ("boot.initrd", &self.initrd)] {
            if name.is_empty() || name.contains('/') || name.contains(char::is_whitespace) {
                return Err(format!("{key}: '{name}' must be a plain file name inside boot.ramdisk_dir"));
            }
        }
        if self.agent_token_ttl < Duration::from_secs(60) {
            return Err("boot.agent_token_ttl: at least 60s".into());
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PowerConfig {
    /// How often every BMC is asked for its node's power state (Ironic's
    /// default too). Default `120s`.
    #[serde(deserialize_with = "duration")]
    pub sync_interval: Duration,
    /// Deadline of one request to a BMC. Default `5s`.
    #[serde(deserialize_with = "duration")]
    pub request_timeout: Duration,
    /// Attempts per BMC operation. Default `3`.
    pub attempts: u32,
    /// How long to wait for a power change to show. Default `60s`.
    #[serde(deserialize_with = "duration")]
    pub settle_timeout: Duration,
    /// How long `POST /nodes/{name}/power` waits for the operation before
    /// answering 202 (it goes on in the background). Default `90s`.
    #[serde(deserialize_with = "duration")]
    pub request_wait: Duration,
    /// BMCs asked at once by the sweep. Default `32`.
    pub sweep_concurrency: usize,
}

impl Default for PowerConfig {
    fn default() -> Self {
        PowerConfig {
            sync_interval: Duration::from_secs(120),
            request_timeout: Duration::from_secs(5),
            attempts: 3,
            settle_timeout: Duration::from_secs(60),
            request_wait: Duration::from_secs(90),
            sweep_concurrency: 32,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `ferrum_controller=debug`;
    /// `RUST_LOG` wins when set. Default `info`.
    pub level: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaseConfig {
    /// How often the clock loop looks at leases even when nothing woke it.
    /// Default `30s`.
    #[serde(deserialize_with = "duration")]
    pub reconcile_interval: Duration,
    /// How far ahead leases may be booked. Default `365d`.
    #[serde(deserialize_with = "duration")]
    pub max_horizon: Duration,
    /// A requested start this far in the past is taken as "now" rather than
    /// refused (clock skew between client and server). Default `60s`.
    #[serde(deserialize_with = "duration")]
    pub start_grace: Duration,
    /// How long before its end a lease's owner is reminded (portal and
    /// mail), for leases longer than that; `0s`: never. Default `1h`.
    #[serde(deserialize_with = "duration")]
    pub notify_before: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8750)),
            data_dir: PathBuf::from("ferrum-data"),
            database: None,
            secrets_key_file: None,
            log: LogConfig::default(),
            leases: LeaseConfig::default(),
            power: PowerConfig::default(),
            boot: BootConfig::default(),
            deploy: DeployConfig::default(),
            reset: ResetConfig::default(),
            policy: PolicyConfig::default(),
            accounts: AccountsConfig::default(),
            web: WebConfig::default(),
            mail: MailConfig::default(),
            sites: std::collections::BTreeMap::new(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Text, level: "info".into() }
    }
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            reconcile_interval: Duration::from_secs(30),
            max_horizon: Duration::from_secs(365 * 86_400),
            start_grace: Duration::from_secs(60),
            notify_before: Duration::from_secs(3600),
        }
    }
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
}

impl Config {
    /// Reads `path`; every missing key takes its default.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Config::parse(&text).map_err(|message| ConfigError::Parse { path: path.to_owned(), message })
    }

    /// Parses TOML text; the error names the key and line.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?;
        config.boot.validate()?;
        config.deploy.validate()?;
        config.reset.default_environment_pin()?;
        config.policy.validate()?;
        config.web.validate()?;
        crate::app::mail::Mailer::new(&config.mail)?;
        if config.accounts.max_tokens_per_user == 0 {
            return Err("accounts.max_tokens_per_user: must be at least 1".into());
        }
        for (name, site) in &config.sites {
            site.validate(name)?;
        }
        Ok(config)
    }

    /// Site `name`'s settings: its `[sites.NAME]` table, or the defaults.
    pub fn site(&self, name: &str) -> std::borrow::Cow<'_, SiteConfig> {
        match self.sites.get(name) {
            Some(s) => std::borrow::Cow::Borrowed(s),
            None => std::borrow::Cow::Owned(SiteConfig::default()),
        }
    }

    /// The controller's SSH key file.
    pub fn ssh_key_path(&self) -> PathBuf {
        self.deploy.ssh_key.clone().unwrap_or_else(|| self.data_dir.join("ssh").join("id_ed25519"))
    }

    /// Where environment images are served from.
    pub fn images_dir(&self) -> PathBuf {
        self.boot.images_dir.clone().unwrap_or_else(|| self.data_dir.join("images"))
    }

    /// Where the deploy ramdisk is served from.
    pub fn ramdisk_dir(&self) -> PathBuf {
        self.boot.ramdisk_dir.clone().unwrap_or_else(|| self.data_dir.join("ramdisk"))
    }

    /// The key file of secrets at rest.
    pub fn secrets_key_path(&self) -> PathBuf {
        self.secrets_key_file.clone().unwrap_or_else(|| self.data_dir.join("secret.key"))
    }

    /// The portal's base URL (no trailing `/`): `[web] public_url`, or
    /// `http://` and the listen address.
    pub fn web_base_url(&self) -> String {
        match &self.web.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None if self.web.tls_cert.is_some() => format!("https://{}", self.listen),
            None => format!("http://{}", self.listen),
        }
    }

    /// The database URL: the configured one or SQLite in the data directory.
    pub fn database_url(&self) -> String {
        self.database.clone().unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("ferrum.db").display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_errors_name_the_key() {
        let dhcp = "[[boot.dhcp]]\ninterface = \"br0\"\nmode = \"full\"\nsubnet = \"10.0.0.0/24\"\n";
        let e = Config::parse(dhcp).unwrap_err();
        assert!(e.starts_with("boot.public_url: required when boot.dhcp is configured"), "{e}");
        let e = Config::parse(&format!("[boot]\npublic_url = \"http://10.0.0.1:8751\"\n{dhcp}")).unwrap_err();
        assert!(e.starts_with("boot.listen: required when boot.dhcp is configured"), "{e}");
        let ok = Config::parse(&format!("[boot]\nlisten = [\"10.0.0.1:8751\"]\npublic_url = \"http://10.0.0.1:8751\"\n{dhcp}")).unwrap();
        assert_eq!(ok.boot.network().dhcp.len(), 1);
        assert_eq!(ok.boot.listen, vec![SocketAddr::from(([10, 0, 0, 1], 8751))]);
        let e = Config::parse("[boot]\nlisten = [\"10.0.0.1:8751\", \"10.0.0.1:8751\"]\n").unwrap_err();
        assert!(e.starts_with("boot.listen: 10.0.0.1:8751 is listed twice"), "{e}");
        let e = Config::parse("[boot]\npublic_url = \"10.0.0.1\"\n").unwrap_err();
        assert!(e.starts_with("boot.public_url: '10.0.0.1' is not a URL"), "{e}");
        let e = Config::parse("[boot]\nkernel = \"../vmlinuz\"\n").unwrap_err();
        assert!(e.starts_with("boot.kernel: '../vmlinuz' must be a plain file name"), "{e}");
        let e = Config::parse(&format!("[boot]\nlisten = [\"10.0.0.1:8751\"]\npublic_url = \"http://h\"\n{dhcp}{dhcp}")).unwrap_err();
        assert!(e.contains("interface \"br0\" is listed twice"), "{e}");
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::parse("").expect("empty is valid");
        assert_eq!(c.listen.to_string(), "127.0.0.1:8750");
        assert_eq!(c.database_url(), "sqlite://ferrum-data/ferrum.db");
        assert_eq!(c.leases.reconcile_interval, Duration::from_secs(30));
        assert_eq!(c.leases.notify_before, Duration::from_secs(3600));
        let off = Config::parse("[leases]\nnotify_before = \"0s\"\n").expect("0s turns reminders off");
        assert_eq!(off.leases.notify_before, Duration::ZERO);
    }

    #[test]
    fn example_config_parses_and_matches_defaults() {
        let text = include_str!("../ferrumd.example.toml");
        let c = Config::parse(text).expect("the shipped example must parse");
        let d = Config::default();
        assert_eq!(c.listen, d.listen);
        assert_eq!(c.data_dir, d.data_dir);
        assert_eq!(c.secrets_key_path(), d.secrets_key_path());
        assert_eq!(c.leases.max_horizon, d.leases.max_horizon);
        assert_eq!(c.leases.notify_before, d.leases.notify_before);
        assert_eq!(c.log.format, d.log.format);
        assert_eq!(c.power.sync_interval, d.power.sync_interval);
        assert_eq!(c.power.attempts, d.power.attempts);
        assert_eq!(c.policy.approval_threshold_node_hours, d.policy.approval_threshold_node_hours);
        assert_eq!(c.policy.approval_notice, d.policy.approval_notice);
        assert_eq!(c.policy.quota_period, d.policy.quota_period);
        assert_eq!(c.policy.timezone, d.policy.timezone);
        assert_eq!(c.web.public_url, d.web.public_url);
        assert_eq!(c.web.session_lifetime, d.web.session_lifetime);
        assert_eq!(c.web.activation_lifetime, d.web.activation_lifetime);
        assert_eq!(c.web.trusted_proxies, d.web.trusted_proxies);
        assert_eq!(c.web.login_burst_per_account, d.web.login_burst_per_account);
        assert_eq!(c.web.login_burst_per_address, d.web.login_burst_per_address);
        assert_eq!(c.mail.smtp_url, d.mail.smtp_url);
        assert_eq!(c.mail.from, d.mail.from);
    }

    #[test]
    fn example_policy_classes_parse_when_uncommented() {
        let text = include_str!("../ferrumd.example.toml");
        let policy = &text[text.find("[policy]").expect("a [policy] section")..];
        let uncommented: String = policy
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if rest.starts_with('[') || rest.split_once(" = ").is_some_and(|(k, _)| !k.contains(' ')) => rest,
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let c = Config::parse(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
        assert_eq!(c.policy.default_class.as_deref(), Some("research"));
        assert_eq!(c.policy.classes["student"].peak_max_nodes, Some(2));
        assert!(c.policy.peak.is_some());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("[leases]\nreconcile_intervall = \"5s\"\n").expect_err("typo");
        assert!(err.contains("reconcile_intervall"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn bad_duration_is_named() {
        let err = Config::parse("[leases]\nmax_horizon = \"soon\"\n").expect_err("bad duration");
        assert!(err.contains("'soon' is not a duration"), "{err}");
        assert!(err.contains("max_horizon"), "{err}");
    }
}
