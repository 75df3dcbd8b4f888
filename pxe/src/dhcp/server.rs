//! The DHCP sockets: one per interface and port, each bound to its device.
//!
//! Owns: receiving requests, calling [`answer`](super::answer::answer), and
//! sending the reply out of the interface the request came in on. Every
//! socket carries `SO_BINDTODEVICE`, so a broadcast reply can never leave
//! through the routing table's default interface. Must not: wait on
//! anything while answering (no ping, no I/O besides the reply itself).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dhcproto::v4::Encodable;
use socket2::{Domain, Protocol, Socket, Type};
use tracing::{debug, info, warn};

use super::answer::{self, Context, Destination, Ignored, Port};
use super::{Directory, Mac};
use crate::config::{DhcpInterface, DhcpMode};

/// Why the DHCP service could not start on an interface.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("interface {interface}: no IPv4 address (set boot.dhcp.address, or give the interface one)")]
    NoAddress { interface: String },
    #[error("interface {interface}: cannot read its addresses")]
    Addresses {
        interface: String,
        #[source]
        source: nix::Error,
    },
    #[error("interface {interface}: cannot bind UDP port {port}")]
    Bind {
        interface: String,
        port: u16,
        #[source]
        source: std::io::Error,
    },
}

/// The DHCP sockets of one interface, bound and not yet serving.
#[derive(Debug)]
pub struct DhcpSockets {
    interface: DhcpInterface,
    server_ip: Ipv4Addr,
    dhcp: UdpSocket,
    /// Port 4011, proxy mode only.
    pxe: Option<UdpSocket>,
}

/// The first IPv4 address of `interface`, in the calling thread's network namespace.
pub fn interface_ipv4(interface: &str) -> Result<Option<Ipv4Addr>, nix::Error> {
    Ok(nix::ifaddrs::getifaddrs()?
        .filter(|a| a.interface_name == interface)
        .find_map(|a| a.address.and_then(|s| s.as_sockaddr_in().map(|sin| sin.ip()))))
}

/// A UDP socket on `0.0.0.0:port` that sees and sends only `interface`'s traffic.
pub fn udp_on_device(interface: &str, port: u16) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_broadcast(true)?;
    socket.bind_device(Some(interface.as_bytes()))?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)).into())?;
    Ok(socket.into())
}

impl DhcpSockets {
    /// Binds port 67 (and 4011 in proxy mode) on the interface. Runs in the
    /// calling thread's network namespace.
    pub fn bind(interface: &DhcpInterface) -> Result<DhcpSockets, BindError> {
        let name = &interface.interface;
        let server_ip = match interface.address {
            Some(a) => a,
            None => interface_ipv4(name)
                .map_err(|source| BindError::Addresses { interface: name.clone(), source })?
                .ok_or_else(|| BindError::NoAddress { interface: name.clone() })?,
        };
        let bind = |port| udp_on_device(name, port).map_err(|source| BindError::Bind { interface: name.clone(), port, source });
        let dhcp = bind(67)?;
        let pxe = if interface.mode == DhcpMode::Proxy { Some(bind(4011)?) } else { None };
        Ok(DhcpSockets { interface: interface.clone(), server_ip, dhcp, pxe })
    }

    /// One line for the start-up message.
    pub fn describe(&self) -> String {
        let ports = if self.pxe.is_some() { "67+4011" } else { "67" };
        format!("DHCP {} mode on {} ({}, UDP {ports})", self.interface.mode, self.interface.interface, self.server_ip)
    }

    /// This server's address on the interface.
    pub fn server_ip(&self) -> Ipv4Addr {
        self.server_ip
    }

    /// Serves until the task is dropped or a socket fails.
    pub async fn run(self, directory: Arc<dyn Directory>, http_base: String) -> std::io::Result<()> {
        let DhcpSockets { interface, server_ip, dhcp, pxe } = self;
        let interface = Arc::new(interface);
        let dhcp =
            serve(tokio::net::UdpSocket::from_std(dhcp)?, Port::Dhcp, interface.clone(), server_ip, directory.clone(), http_base.clone());
        match pxe {
            Some(pxe) => {
                let pxe = serve(tokio::net::UdpSocket::from_std(pxe)?, Port::PxeBoot, interface, server_ip, directory, http_base);
                tokio::try_join!(dhcp, pxe).map(|_| ())
            }
            None => dhcp.await,
        }
    }
}

/// How often one unknown MAC is logged (a node stuck in a PXE loop asks every few seconds).
const UNKNOWN_LOG_INTERVAL: Duration = Duration::from_secs(60);

async fn serve(
    socket: tokio::net::UdpSocket,
    port: Port,
    interface: Arc<DhcpInterface>,
    server_ip: Ipv4Addr,
    directory: Arc<dyn Directory>,
    http_base: String,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 4096];
    let mut unknown_logged: HashMap<Mac, Instant> = HashMap::new();
    let ctx = Context { interface: &interface, server_ip, http_base: &http_base };
    let name = interface.interface.as_str();
    loop {
        let (len, from) = socket.recv_from(&mut buf).await?;
        let SocketAddr::V4(from) = from else { continue };
        let request = match super::decode(&buf[..len]) {
            Ok(m) => m,
            Err(e) => {
                debug!(interface = name, %from, error = %e, "undecodable DHCP packet");
                continue;
            }
        };
        let reply = match answer::answer(&request, from, port, &ctx, directory.as_ref()) {
            Ok(reply) => reply,
            Err(ignored) => {
                log_ignored(name, &ignored, &mut unknown_logged, directory.as_ref());
                continue;
            }
        };
        let bytes = match reply.message.to_vec() {
            Ok(b) => b,
            Err(e) => {
                warn!(interface = name, error = %e, "cannot encode a DHCP reply");
                continue;
            }
        };
        let to = match reply.to {
            Destination::Broadcast => SocketAddrV4::new(Ipv4Addr::BROADCAST, 68),
            Destination::Unicast(a) => a,
        };
        // The reply carries the client's hardware address: no second parse of the request.
        let mac = <[u8; 6]>::try_from(reply.message.chaddr()).map(|m| Mac(m).to_string()).unwrap_or_default();
        if let Err(e) = socket.send_to(&bytes, to).await {
            warn!(interface = name, mac, %to, error = %e, "cannot send a DHCP reply");
            continue;
        }
        info!(
            interface = name,
            mac,
            kind = reply.kind,
            address = %reply.message.yiaddr(),
            boot_file = reply.boot_file.as_deref().unwrap_or("-"),
            "DHCP answer"
        );
    }
}

fn log_ignored(interface: &str, ignored: &Ignored, unknown_logged: &mut HashMap<Mac, Instant>, directory: &dyn Directory) {
    match ignored {
        Ignored::UnknownMac(client) => {
            let now = Instant::now();
            let due = unknown_logged.get(&client.mac).is_none_or(|t| now.duration_since(*t) >= UNKNOWN_LOG_INTERVAL);
            if due {
                if unknown_logged.len() > 10_000 {
                    unknown_logged.retain(|_, t| now.duration_since(*t) < UNKNOWN_LOG_INTERVAL);
                }
                unknown_logged.insert(client.mac, now);
                info!(interface, mac = %client.mac, pxe = client.pxe, "DHCP request from a MAC not in the inventory: not answered");
                directory.unknown(client, interface);
            }
        }
        Ignored::NoAddress { host } => {
            warn!(interface, node = %host, "node has no IP address in the inventory: full-mode DHCP cannot answer it")
        }
        Ignored::OutsideSubnet { host, ip } => {
            warn!(interface, node = %host, %ip, "node's inventory address is outside the interface's subnet: not answered");
        }
        Ignored::UnsupportedArch { host, arch } => {
            warn!(interface, node = %host, arch, "PXE client architecture without a boot file: not answered")
        }
        Ignored::Declined { host, ip } => warn!(interface, node = %host, %ip, "node declined its address: another host uses it"),
        other => debug!(interface, reason = ?other, "DHCP request not answered"),
    }
}
