//! What to answer to one DHCP request: a pure function, no I/O.
//!
//! Owns: the protocol decisions of both modes (RFC 2131 states, PXE's
//! proxyDHCP and port 4011 exchange, RFC 4578 architecture, the iPXE
//! chain-load loop break). Must not: touch a socket, a clock or the
//! database; everything it needs comes in as arguments, so it is tested and
//! fuzzed without a network.

use std::net::{Ipv4Addr, SocketAddrV4};

use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode, UnknownOption};

use super::{Client, Directory, Host, Mac};
use crate::config::{DhcpInterface, DhcpMode};

/// The UDP port a request arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// 67: DHCP (full mode) or proxyDHCP offers.
    Dhcp,
    /// 4011: the PXE boot-server exchange of proxy mode.
    PxeBoot,
}

/// Where a reply goes. The server always sends through the interface the
/// request came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// 255.255.255.255:68 on the request's interface.
    Broadcast,
    /// A client or relay that already has an address.
    Unicast(SocketAddrV4),
}

/// A reply to send.
#[derive(Clone, Debug)]
pub struct Reply {
    pub message: Message,
    pub to: Destination,
    /// What was decided, for the log: `offer`, `ack`, `nak`, `proxy-offer`, `pxe-ack`.
    pub kind: &'static str,
    /// The boot file given, if any.
    pub boot_file: Option<String>,
}

/// Why a request got no answer. The server logs these (unknown MACs at
/// info, configuration problems at warn, the rest at debug).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// Not a BOOTREQUEST, not Ethernet, or no DHCP message type.
    NotForUs(&'static str),
    /// The inventory does not know this MAC.
    UnknownMac(Client),
    /// Full mode: the node has no address in the inventory.
    NoAddress { host: String },
    /// Full mode: the node's inventory address is outside the interface's subnet.
    OutsideSubnet { host: String, ip: Ipv4Addr },
    /// The client is talking to another DHCP server.
    OtherServer,
    /// Proxy mode answers PXE and iPXE clients only.
    NotPxe,
    /// PXE firmware of an architecture ferrum has no boot file for.
    UnsupportedArch { host: String, arch: u16 },
    /// The client declined its address (someone else uses it).
    Declined { host: String, ip: Ipv4Addr },
    /// RELEASE or a message type that needs no answer.
    NoAnswerNeeded(&'static str),
}

/// The fixed inputs of [`answer`] for one interface.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    pub interface: &'a DhcpInterface,
    /// This server's address on the interface.
    pub server_ip: Ipv4Addr,
    /// Base URL of the HTTP boot endpoints (`http://10.10.0.1:8750`).
    pub http_base: &'a str,
}

/// iPXE's encapsulated options (175); 176 = 1 says "do not wait for proxyDHCP".
const IPXE_ENCAP: u8 = 175;
const IPXE_NO_PXEDHCP: [u8; 3] = [176, 1, 1];
/// PXE vendor options (43): discovery control (6) bit 3: "boot the file in
/// the offer, no boot-server discovery, no menu".
const PXE_VENDOR_OPTIONS: [u8; 4] = [6, 1, 0x08, 255];

/// Reads what a request says about its sender. `None` when it is not an
/// Ethernet BOOTREQUEST.
pub fn client(req: &Message) -> Option<Client> {
    if req.opcode() != Opcode::BootRequest || req.htype() != dhcproto::v4::HType::Eth || req.chaddr().len() != 6 {
        return None;
    }
    let mac = Mac(req.chaddr().try_into().ok()?);
    let opts = req.opts();
    let pxe = matches!(opts.get(OptionCode::ClassIdentifier), Some(DhcpOption::ClassIdentifier(v)) if v.starts_with(b"PXEClient"));
    let ipxe = matches!(opts.get(OptionCode::UserClass), Some(DhcpOption::UserClass(v)) if contains(v, b"iPXE"));
    let arch = match opts.get(OptionCode::ClientSystemArchitecture) {
        Some(DhcpOption::ClientSystemArchitecture(a)) => Some(a.0),
        _ => None,
    };
    Some(Client { mac, pxe, ipxe, arch })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Decides the answer to `req`, which arrived on `port` from `src`.
pub fn answer(req: &Message, src: SocketAddrV4, port: Port, ctx: &Context<'_>, directory: &dyn Directory) -> Result<Reply, Ignored> {
    let client = client(req).ok_or(Ignored::NotForUs("not an Ethernet BOOTREQUEST"))?;
    let msg_type = req.opts().msg_type().ok_or(Ignored::NotForUs("no DHCP message type"))?;
    let Some(host) = directory.lookup(client.mac) else {
        return Err(Ignored::UnknownMac(client));
    };
    match (ctx.interface.mode, port) {
        (DhcpMode::Full, Port::Dhcp) => full(req, msg_type, &client, &host, ctx),
        (DhcpMode::Proxy, Port::Dhcp) => proxy(req, msg_type, &client, &host, ctx),
        (DhcpMode::Proxy, Port::PxeBoot) => pxe_boot(req, src, msg_type, &client, &host, ctx),
        (DhcpMode::Full, Port::PxeBoot) => Err(Ignored::NotForUs("port 4011 is served in proxy mode only")),
    }
}

/// The boot file for this client: the HTTP script for iPXE, else the iPXE
/// binary for its firmware, fetched over TFTP.
fn boot_file(client: &Client, host: &Host, ctx: &Context<'_>) -> Result<String, Ignored> {
    if client.ipxe {
        return Ok(format!("{}/boot/ipxe?mac={}", ctx.http_base.trim_end_matches('/'), client.mac));
    }
    match client.arch.unwrap_or(0) {
        0 => Ok(ctx.interface.bios_boot_file.clone()),
        7 | 9 => Ok(ctx.interface.uefi_boot_file.clone()),
        arch => Err(Ignored::UnsupportedArch { host: host.name.clone(), arch }),
    }
}

fn full(req: &Message, msg_type: MessageType, client: &Client, host: &Host, ctx: &Context<'_>) -> Result<Reply, Ignored> {
    let iface = ctx.interface;
    let ip = host.ip.ok_or_else(|| Ignored::NoAddress { host: host.name.clone() })?;
    if let Some(subnet) = iface.subnet
        && !subnet.contains(&ip)
    {
        return Err(Ignored::OutsideSubnet { host: host.name.clone(), ip });
    }
    let server_id = match req.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(id)) => Some(*id),
        _ => None,
    };
    let requested = match req.opts().get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(a)) => Some(*a),
        _ => None,
    };
    let (reply_type, kind) = match msg_type {
        MessageType::Discover => (MessageType::Offer, "offer"),
        MessageType::Request => {
            if server_id.is_some_and(|id| id != ctx.server_ip) {
                return Err(Ignored::OtherServer);
            }
            let asked = requested.or_else(|| (!req.ciaddr().is_unspecified()).then(|| req.ciaddr()));
            if asked != Some(ip) {
                let mut nak = base(req, ctx.server_ip);
                nak.opts_mut().insert(DhcpOption::MessageType(MessageType::Nak));
                nak.opts_mut().insert(DhcpOption::ServerIdentifier(ctx.server_ip));
                nak.opts_mut().insert(DhcpOption::Message(format!("{} is not the address of {}", fmt_ip(asked), host.name)));
                let to = if req.giaddr().is_unspecified() { Destination::Broadcast } else { relay(req) };
                return Ok(Reply { message: nak, to, kind: "nak", boot_file: None });
            }
            (MessageType::Ack, "ack")
        }
        MessageType::Inform => (MessageType::Ack, "inform-ack"),
        MessageType::Decline => return Err(Ignored::Declined { host: host.name.clone(), ip: requested.unwrap_or(ip) }),
        MessageType::Release => return Err(Ignored::NoAnswerNeeded("release")),
        _ => return Err(Ignored::NoAnswerNeeded("message type not handled by a server")),
    };

    let mut m = base(req, ctx.server_ip);
    if msg_type != MessageType::Inform {
        m.set_yiaddr(ip);
    }
    let opts = m.opts_mut();
    opts.insert(DhcpOption::MessageType(reply_type));
    opts.insert(DhcpOption::ServerIdentifier(ctx.server_ip));
    if msg_type != MessageType::Inform {
        let lease = u32::try_from(iface.lease_time.as_secs()).unwrap_or(u32::MAX);
        opts.insert(DhcpOption::AddressLeaseTime(lease));
        opts.insert(DhcpOption::Renewal(lease / 2));
        opts.insert(DhcpOption::Rebinding(lease / 8 * 7));
    }
    if let Some(subnet) = iface.subnet {
        opts.insert(DhcpOption::SubnetMask(subnet.netmask()));
        opts.insert(DhcpOption::BroadcastAddr(subnet.broadcast()));
    }
    if let Some(router) = iface.router {
        opts.insert(DhcpOption::Router(vec![router]));
    }
    if !iface.dns.is_empty() {
        opts.insert(DhcpOption::DomainNameServer(iface.dns.clone()));
    }
    if let Some(domain) = &iface.domain {
        opts.insert(DhcpOption::DomainName(domain.clone()));
    }
    opts.insert(DhcpOption::Hostname(host.name.clone()));

    let mut given = None;
    if client.pxe || client.ipxe {
        let file = boot_file(client, host, ctx)?;
        set_boot_file(&mut m, &file);
        given = Some(file);
        if client.ipxe {
            m.opts_mut().insert(DhcpOption::Unknown(UnknownOption::new(OptionCode::from(IPXE_ENCAP), IPXE_NO_PXEDHCP.to_vec())));
        }
    }
    let to = destination(req);
    Ok(Reply { message: m, to, kind, boot_file: given })
}

fn proxy(req: &Message, msg_type: MessageType, client: &Client, host: &Host, ctx: &Context<'_>) -> Result<Reply, Ignored> {
    if !client.pxe && !client.ipxe {
        return Err(Ignored::NotPxe);
    }
    match msg_type {
        MessageType::Discover => {}
        // A REQUEST addressed to us (some firmware sends it on 67): the same answer as on 4011.
        MessageType::Request if matches!(req.opts().get(OptionCode::ServerIdentifier), Some(DhcpOption::ServerIdentifier(id)) if *id == ctx.server_ip) =>
            {}
        MessageType::Request => return Err(Ignored::OtherServer),
        _ => return Err(Ignored::NoAnswerNeeded("proxy mode answers DISCOVER")),
    }
    let reply_type = if msg_type == MessageType::Discover { MessageType::Offer } else { MessageType::Ack };
    let file = boot_file(client, host, ctx)?;
    let m = pxe_reply(req, reply_type, &file, ctx);
    let kind = if reply_type == MessageType::Offer { "proxy-offer" } else { "proxy-ack" };
    Ok(Reply { message: m, to: destination(req), kind, boot_file: Some(file) })
}

fn pxe_boot(
    req: &Message,
    src: SocketAddrV4,
    msg_type: MessageType,
    client: &Client,
    host: &Host,
    ctx: &Context<'_>,
) -> Result<Reply, Ignored> {
    if !client.pxe && !client.ipxe {
        return Err(Ignored::NotPxe);
    }
    if !matches!(msg_type, MessageType::Request | MessageType::Inform) {
        return Err(Ignored::NoAnswerNeeded("port 4011 answers REQUEST and INFORM"));
    }
    let file = boot_file(client, host, ctx)?;
    let m = pxe_reply(req, MessageType::Ack, &file, ctx);
    Ok(Reply { message: m, to: Destination::Unicast(src), kind: "pxe-ack", boot_file: Some(file) })
}

/// A proxyDHCP answer: no address, the PXE class, the discovery control
/// that says "boot this file", the client's UUID echoed (PXE spec).
fn pxe_reply(req: &Message, reply_type: MessageType, file: &str, ctx: &Context<'_>) -> Message {
    let mut m = base(req, ctx.server_ip);
    m.set_ciaddr(req.ciaddr());
    set_boot_file(&mut m, file);
    let opts = m.opts_mut();
    opts.insert(DhcpOption::MessageType(reply_type));
    opts.insert(DhcpOption::ServerIdentifier(ctx.server_ip));
    opts.insert(DhcpOption::ClassIdentifier(b"PXEClient".to_vec()));
    opts.insert(DhcpOption::VendorExtensions(PXE_VENDOR_OPTIONS.to_vec()));
    if let Some(DhcpOption::ClientMachineIdentifier(uuid)) = req.opts().get(OptionCode::ClientMachineIdentifier) {
        opts.insert(DhcpOption::ClientMachineIdentifier(uuid.clone()));
    }
    m
}

/// A BOOTREPLY carrying the request's transaction id, hardware address,
/// flags and relay, with this server as next server.
fn base(req: &Message, server_ip: Ipv4Addr) -> Message {
    let mut m = Message::new_with_id(req.xid(), Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, server_ip, req.giaddr(), req.chaddr());
    m.set_opcode(Opcode::BootReply);
    m.set_htype(req.htype());
    m.set_flags(req.flags());
    m
}

/// The boot file goes in the fixed `file` field when it fits (what PXE ROMs
/// read) and in option 67 as well (what everyone else reads).
fn set_boot_file(m: &mut Message, file: &str) {
    if file.len() < 128 {
        m.set_fname_str(file);
    }
    m.opts_mut().insert(DhcpOption::BootfileName(file.as_bytes().to_vec()));
}

/// RFC 2131 §4.1: through the relay if there is one, to the client's
/// address if it has one, else broadcast.
fn destination(req: &Message) -> Destination {
    if !req.giaddr().is_unspecified() {
        relay(req)
    } else if !req.ciaddr().is_unspecified() {
        Destination::Unicast(SocketAddrV4::new(req.ciaddr(), 68))
    } else {
        Destination::Broadcast
    }
}

fn relay(req: &Message) -> Destination {
    Destination::Unicast(SocketAddrV4::new(req.giaddr(), 67))
}

fn fmt_ip(ip: Option<Ipv4Addr>) -> String {
    ip.map_or_else(|| "no address".to_owned(), |ip| ip.to_string())
}

#[cfg(test)]
mod tests;
