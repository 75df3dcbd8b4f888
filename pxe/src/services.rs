//! The boot network services of one site, started together: DHCP per
//! interface, router advertisements, TFTP.
//!
//! Owns: turning a [`BootNetwork`] configuration into bound sockets
//! ([`BootNetwork::bind`], synchronous, so callers can run it inside the
//! network namespace they want) and serving them ([`Bound::run`]). `ferrumd`
//! embeds this with its database as the [`Directory`]; `ferrum-pxe` runs it
//! alone. Must not: decide what a node boots (that is the controller's HTTP
//! script), or start a service the configuration does not name.

use std::future::Future;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use serde::Deserialize;

use crate::config::{DhcpInterface, TftpConfig};
use crate::dhcp::Directory;
use crate::dhcp::server::DhcpSockets;
use crate::ra::Advertiser;

/// What to serve. In `ferrumd` this is the `[boot]` table's `dhcp` and
/// `tftp` entries; `ferrum-pxe --config` reads the same keys.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootNetwork {
    /// DHCP (and router advertisements) per interface.
    #[serde(default)]
    pub dhcp: Vec<DhcpInterface>,
    /// TFTP for firmware without iPXE.
    #[serde(default)]
    pub tftp: Option<TftpConfig>,
}

impl BootNetwork {
    /// Checks every interface entry; the first error names its key.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for d in &self.dhcp {
            d.validate()?;
            if !seen.insert(d.interface.as_str()) {
                return Err(format!("boot.dhcp: interface \"{}\" is listed twice", d.interface));
            }
        }
        Ok(())
    }

    /// Whether anything is configured at all.
    pub fn is_empty(&self) -> bool {
        self.dhcp.is_empty() && self.tftp.is_none()
    }

    /// Binds every configured socket in the calling thread's network
    /// namespace. Nothing is served until [`Bound::run`].
    pub fn bind(&self) -> anyhow::Result<Bound> {
        let mut dhcp = Vec::new();
        let mut ra = Vec::new();
        for d in &self.dhcp {
            dhcp.push(DhcpSockets::bind(d)?);
            if d.router_advertisement {
                ra.push(Advertiser::bind(&d.interface).with_context(|| format!("router advertisements on {}", d.interface))?);
            }
        }
        let tftp = match &self.tftp {
            Some(t) => Some((t.root.clone(), UdpSocket::bind(t.listen).with_context(|| format!("binding TFTP on {}", t.listen))?)),
            None => None,
        };
        Ok(Bound { dhcp, ra, tftp })
    }
}

/// Bound sockets of the boot network services.
#[derive(Debug)]
pub struct Bound {
    dhcp: Vec<DhcpSockets>,
    ra: Vec<Advertiser>,
    tftp: Option<(PathBuf, UdpSocket)>,
}

impl Bound {
    /// One line per service, for the start-up message.
    pub fn describe(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.dhcp.iter().map(DhcpSockets::describe).collect();
        lines.extend(self.ra.iter().map(Advertiser::describe));
        if let Some((root, socket)) = &self.tftp {
            let at = socket.local_addr().map(|a| a.to_string()).unwrap_or_default();
            lines.push(format!("TFTP (read-only) of {} on {at}", root.display()));
        }
        lines
    }

    /// Serves until `shutdown` completes or a service fails. `http_base` is
    /// the URL iPXE clients are sent to (`http://10.10.0.1:8750`).
    pub async fn run(self, directory: Arc<dyn Directory>, http_base: String, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let mut tasks = tokio::task::JoinSet::new();
        for d in self.dhcp {
            let (directory, http_base) = (directory.clone(), http_base.clone());
            tasks.spawn(async move { d.run(directory, http_base).await.context("DHCP service stopped") });
        }
        // Stopped when `run` returns (dropped with this vector).
        let _advertisers = self.ra.into_iter().map(Advertiser::spawn).collect::<std::io::Result<Vec<_>>>()?;
        if let Some((root, socket)) = self.tftp {
            let service = crate::tftp::bind_socket(root, socket).await?;
            tasks.spawn(async move { service.run(std::future::pending()).await });
        }
        if tasks.is_empty() {
            shutdown.await;
            return Ok(());
        }
        tokio::select! {
            () = shutdown => Ok(()),
            Some(ended) = tasks.join_next() => match ended {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(anyhow::anyhow!("boot service task failed: {e}")),
            },
        }
    }
}
