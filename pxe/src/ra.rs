//! IPv6 router advertisements on provisioning interfaces.
//!
//! iPXE configures IPv4 and IPv6 in parallel and, without a router
//! advertisement, waits about 16 s for IPv6 before it boots (LAB-NOTES §3).
//! A minimal advertisement (no prefix, router lifetime 0: "I am not a
//! default router", no managed/other flags) ends that wait at once without
//! giving nodes any IPv6 route.
//!
//! Owns: a raw ICMPv6 socket per interface that answers router
//! solicitations (to all nodes, so every node booting at that
//! moment hears it) and advertises periodically. Must not: advertise a prefix or a default
//! route, or send on any interface but its own (the socket is bound to it).

use std::io::{self, Read as _};
use std::net::{Ipv6Addr, SocketAddrV6};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tracing::{debug, warn};

const ROUTER_SOLICITATION: u8 = 133;
const ROUTER_ADVERTISEMENT: u8 = 134;
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
/// Unsolicited advertisements (RFC 4861 allows 4 s to 1800 s).
pub const PERIOD: Duration = Duration::from_secs(60);
/// How long a stopped advertiser may take to notice.
const STOP_CHECK: Duration = Duration::from_millis(500);

/// A bound, not yet running, advertiser.
#[derive(Debug)]
pub struct Advertiser {
    interface: String,
    index: u32,
    socket: Socket,
    packet: Vec<u8>,
}

/// The advertisement: ICMPv6 type 134 (the kernel fills the checksum of raw
/// ICMPv6 sockets), hop limit 64, no flags, lifetime 0, and the source
/// link-layer address option when the MAC is known.
pub fn advertisement(mac: Option<[u8; 6]>) -> Vec<u8> {
    let mut p = vec![ROUTER_ADVERTISEMENT, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    if let Some(mac) = mac {
        p.extend_from_slice(&[1, 1]);
        p.extend_from_slice(&mac);
    }
    p
}

fn interface_mac(interface: &str) -> Option<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{interface}/address")).ok()?;
    text.trim().parse::<crate::dhcp::Mac>().ok().map(|m| m.0)
}

impl Advertiser {
    /// Opens the raw socket on `interface` (in the calling thread's network
    /// namespace) and joins all-routers to hear solicitations.
    pub fn bind(interface: &str) -> io::Result<Advertiser> {
        let index = nix::net::if_::if_nametoindex(interface).map_err(io::Error::from)?;
        let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
        socket.bind_device(Some(interface.as_bytes()))?;
        // RFC 4861: hosts drop neighbour discovery packets whose hop limit is not 255.
        socket.set_multicast_hops_v6(255)?;
        socket.set_unicast_hops_v6(255)?;
        socket.set_multicast_if_v6(index)?;
        socket.set_multicast_loop_v6(false)?;
        socket.join_multicast_v6(&ALL_ROUTERS, index)?;
        Ok(Advertiser { interface: interface.to_owned(), index, socket, packet: advertisement(interface_mac(interface)) })
    }

    /// One line for the start-up message.
    pub fn describe(&self) -> String {
        format!("IPv6 router advertisements on {} (no prefix, lifetime 0)", self.interface)
    }

    /// Advertises now, on every solicitation, and every [`PERIOD`], on a
    /// thread of its own (a raw socket has no safe async wrapper), until
    /// the returned handle is dropped.
    pub fn spawn(self) -> io::Result<Running> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let name = format!("ferrum-ra-{}", self.interface);
        let thread = std::thread::Builder::new().name(name).spawn(move || self.serve(&flag))?;
        Ok(Running { stop, thread: Some(thread) })
    }

    fn serve(self, stop: &AtomicBool) {
        let Advertiser { interface, index, socket, packet } = self;
        let all_nodes = SocketAddrV6::new(ALL_NODES, 0, 0, index).into();
        if let Err(e) = socket.set_read_timeout(Some(STOP_CHECK)) {
            warn!(interface, error = %e, "router advertisements: cannot set a read timeout; not advertising");
            return;
        }
        let mut next = Instant::now();
        let mut buf = [0u8; 1500];
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= next {
                send(&socket, &packet, &all_nodes, &interface);
                next = now + PERIOD;
            }
            match (&socket).read(&mut buf) {
                // Solicitations are answered to all nodes (RFC 4861 §6.2.6):
                // every node booting at that moment hears it.
                Ok(len) if len > 0 && buf[0] == ROUTER_SOLICITATION => {
                    debug!(interface, "router solicitation");
                    send(&socket, &packet, &all_nodes, &interface);
                }
                Ok(_) => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted) => {}
                Err(e) => {
                    warn!(interface, error = %e, "router advertisements stopped");
                    return;
                }
            }
        }
    }
}

/// A running advertiser; dropping it stops the thread (within [`STOP_CHECK`]).
#[derive(Debug)]
pub struct Running {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn send(socket: &Socket, packet: &[u8], to: &socket2::SockAddr, interface: &str) {
    match socket.send_to(packet, to) {
        Ok(_) => debug!(interface, "router advertisement sent"),
        Err(e) => warn!(interface, error = %e, "cannot send a router advertisement"),
    }
}
