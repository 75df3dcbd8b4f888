//! `ferrum-pxe --config FILE`: the boot network services of one site,
//! running apart from the controller and fed by it.
//!
//! Owns: the standalone configuration (`[controller]` and `[boot]`) and
//! [`ControllerDirectory`], a copy of the inventory's MAC → node table
//! refreshed from the controller's API (`GET /api/v1/boot/hosts`, with a
//! boot-service token: `ferrum admin boot-token`), so the
//! database stays the one source of truth. Must not: keep any inventory of
//! its own, or answer from a table it failed to load (an empty table
//! answers nobody).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;
use tracing::{info, warn};

use crate::config::{DhcpInterface, TftpConfig, duration};
use crate::dhcp::{Directory, Host, Mac};
use crate::services::BootNetwork;

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandaloneConfig {
    pub controller: ControllerSource,
    #[serde(default)]
    pub boot: StandaloneBoot,
}

/// `[controller]`: where the inventory comes from.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerSource {
    /// The controller's URL as this service reaches it.
    pub url: String,
    /// A file holding a boot-service token (`ferrum admin boot-token`: it
    /// reads the MAC → node table and nothing else; a user's token is
    /// refused). Kept out of the config file so the file can be shared.
    pub token_file: PathBuf,
    /// How often the node table is reloaded.
    #[serde(default = "default_refresh", deserialize_with = "duration")]
    pub refresh: Duration,
}

/// `[boot]`: the services, with the same keys as `ferrumd`'s `[boot]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandaloneBoot {
    /// The URL nodes reach the controller's HTTP boot endpoints at (its
    /// `[boot] listen`, on the provisioning network: the API listener does
    /// not serve them). Default: `controller.url`.
    #[serde(default)]
    pub public_url: Option<String>,
    #[serde(default)]
    pub dhcp: Vec<DhcpInterface>,
    #[serde(default)]
    pub tftp: Option<TftpConfig>,
}

fn default_refresh() -> Duration {
    Duration::from_secs(30)
}

/// Why the configuration cannot be used; names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl StandaloneConfig {
    pub fn load(path: &Path) -> Result<StandaloneConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let invalid = |message: String| ConfigError::Invalid { path: path.to_owned(), message };
        let config: StandaloneConfig = toml::from_str(&text).map_err(|e| invalid(e.to_string().trim_end().to_owned()))?;
        config.network().validate().map_err(invalid)?;
        if config.network().is_empty() {
            return Err(invalid("nothing to serve: add a [[boot.dhcp]] interface or a [boot.tftp] table".into()));
        }
        if !config.controller.url.starts_with("http://") && !config.controller.url.starts_with("https://") {
            return Err(invalid(format!("controller.url: '{}' must start with http:// or https://", config.controller.url)));
        }
        Ok(config)
    }

    pub fn network(&self) -> BootNetwork {
        BootNetwork { dhcp: self.boot.dhcp.clone(), tftp: self.boot.tftp.clone() }
    }

    /// The base URL handed to iPXE clients.
    pub fn http_base(&self) -> String {
        self.boot.public_url.clone().unwrap_or_else(|| self.controller.url.clone()).trim_end_matches('/').to_owned()
    }
}

/// The controller's node table, refreshed by [`ControllerDirectory::run`].
#[derive(Debug, Default)]
pub struct ControllerDirectory {
    hosts: RwLock<Arc<HashMap<Mac, Host>>>,
}

impl Directory for ControllerDirectory {
    fn lookup(&self, mac: Mac) -> Option<Host> {
        let hosts = self.hosts.read().map(|h| h.clone()).unwrap_or_default();
        hosts.get(&mac).cloned()
    }
}

/// Why the node table could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the token file {path}")]
    Token {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("GET {url} failed")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("GET {url} answered {status}")]
    Status { url: String, status: reqwest::StatusCode },
}

impl ControllerDirectory {
    /// Loads the node table once; returns how many MACs it holds.
    pub async fn load(&self, client: &reqwest::Client, source: &ControllerSource) -> Result<usize, LoadError> {
        let token =
            std::fs::read_to_string(&source.token_file).map_err(|e| LoadError::Token { path: source.token_file.clone(), source: e })?;
        let url = format!("{}/api/v1/boot/hosts", source.url.trim_end_matches('/'));
        let resp =
            client.get(&url).bearer_auth(token.trim()).send().await.map_err(|e| LoadError::Request { url: url.clone(), source: e })?;
        if !resp.status().is_success() {
            return Err(LoadError::Status { url, status: resp.status() });
        }
        let table: Vec<ferrum_api::BootHost> = resp.json().await.map_err(|e| LoadError::Request { url, source: e })?;
        let mut hosts = HashMap::new();
        for entry in table {
            let ip = entry.ip.as_deref().and_then(|ip| ip.parse::<Ipv4Addr>().ok());
            if let Ok(mac) = entry.mac.parse::<Mac>() {
                hosts.insert(mac, Host { name: entry.name, ip });
            }
        }
        let count = hosts.len();
        if let Ok(mut guard) = self.hosts.write() {
            *guard = Arc::new(hosts);
        }
        Ok(count)
    }

    /// Reloads every `source.refresh` until the task is dropped. A failed
    /// reload keeps the last good table and says so.
    pub async fn run(self: Arc<Self>, source: ControllerSource) {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
        let mut tick = tokio::time::interval(source.refresh);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = None;
        loop {
            tick.tick().await;
            match self.load(&client, &source).await {
                Ok(count) if last != Some(count) => {
                    info!(macs = count, controller = %source.url, "node table loaded");
                    last = Some(count);
                }
                Ok(_) => {}
                Err(e) => warn!(error = %format!("{:#}", anyhow::Error::new(e)), "cannot reload the node table; keeping the last one"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("ferrum-pxe.example.toml");
        let config = StandaloneConfig::load(&path).expect("the example is valid");
        assert_eq!(config.controller.refresh, Duration::from_secs(30));
        assert_eq!(config.http_base(), "http://10.10.0.1:8751");
        assert_eq!(config.boot.dhcp[0].mode, crate::config::DhcpMode::Proxy);
        assert!(config.boot.tftp.is_some());
    }
}
