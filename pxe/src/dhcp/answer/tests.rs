//! Unit tests of the DHCP decisions, and a property test that no input
//! makes them panic.

use std::collections::HashMap;

use dhcproto::v4::{Architecture, Decodable, Encodable, Flags, HType};
use proptest::prelude::*;

use super::*;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 1);
const KNOWN: Mac = Mac([0x52, 0x54, 0x00, 0, 0, 1]);
const NO_IP: Mac = Mac([0x52, 0x54, 0x00, 0, 0, 2]);
const STRANGER: Mac = Mac([0x52, 0x54, 0x00, 0, 0, 9]);
const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 11);

fn iface(mode: &str) -> DhcpInterface {
    let text = format!(
        "interface = \"br0\"\nmode = \"{mode}\"\nsubnet = \"10.10.0.0/24\"\nrouter = \"10.10.0.254\"\ndns = [\"10.10.0.53\"]\ndomain = \"lab.example\"\n"
    );
    toml::from_str(&text).unwrap()
}

fn directory() -> HashMap<Mac, Host> {
    HashMap::from([(KNOWN, Host { name: "node-1".into(), ip: Some(NODE_IP) }), (NO_IP, Host { name: "node-2".into(), ip: None })])
}

#[derive(Default)]
struct Req {
    pxe: bool,
    ipxe: bool,
    arch: Option<u16>,
    server_id: Option<Ipv4Addr>,
    requested: Option<Ipv4Addr>,
    ciaddr: Option<Ipv4Addr>,
    uuid: bool,
}

fn request(mac: Mac, kind: MessageType, r: Req) -> Message {
    let mut m = Message::new_with_id(
        0x1234_5678,
        r.ciaddr.unwrap_or(Ipv4Addr::UNSPECIFIED),
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac.0,
    );
    m.set_flags(Flags::default().set_broadcast());
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(kind));
    if r.pxe {
        o.insert(DhcpOption::ClassIdentifier(b"PXEClient:Arch:00000:UNDI:002001".to_vec()));
    }
    if r.ipxe {
        o.insert(DhcpOption::UserClass(b"iPXE".to_vec()));
    }
    if let Some(a) = r.arch {
        o.insert(DhcpOption::ClientSystemArchitecture(Architecture(a)));
    }
    if let Some(s) = r.server_id {
        o.insert(DhcpOption::ServerIdentifier(s));
    }
    if let Some(a) = r.requested {
        o.insert(DhcpOption::RequestedIpAddress(a));
    }
    if r.uuid {
        o.insert(DhcpOption::ClientMachineIdentifier(vec![0; 17]));
    }
    m
}

fn run(mode: &str, port: Port, req: &Message) -> Result<Reply, Ignored> {
    let iface = iface(mode);
    let ctx = Context { interface: &iface, server_ip: SERVER, http_base: "http://10.10.0.1:8750/" };
    // Every reply must survive its own encoding: what we send is what we decided.
    let reply = answer(req, SocketAddrV4::new(Ipv4Addr::new(10, 10, 0, 11), 68), port, &ctx, &directory())?;
    let bytes = reply.message.to_vec().unwrap();
    let decoded = Message::from_bytes(&bytes).unwrap();
    assert_eq!(decoded.xid(), req.xid());
    assert_eq!(decoded.chaddr(), req.chaddr());
    assert_eq!(decoded.opcode(), Opcode::BootReply);
    Ok(reply)
}

fn opt(m: &Message, code: OptionCode) -> Option<&DhcpOption> {
    m.opts().get(code)
}

#[test]
fn full_mode_offers_the_inventory_address_and_the_bios_loader() {
    let r = run("full", Port::Dhcp, &request(KNOWN, MessageType::Discover, Req { pxe: true, arch: Some(0), ..Req::default() })).unwrap();
    let m = &r.message;
    assert_eq!(r.kind, "offer");
    assert_eq!(m.yiaddr(), NODE_IP);
    assert_eq!(m.siaddr(), SERVER);
    assert_eq!(m.opts().msg_type(), Some(MessageType::Offer));
    assert_eq!(opt(m, OptionCode::ServerIdentifier), Some(&DhcpOption::ServerIdentifier(SERVER)));
    assert_eq!(opt(m, OptionCode::SubnetMask), Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0))));
    assert_eq!(opt(m, OptionCode::Router), Some(&DhcpOption::Router(vec![Ipv4Addr::new(10, 10, 0, 254)])));
    assert_eq!(opt(m, OptionCode::DomainNameServer), Some(&DhcpOption::DomainNameServer(vec![Ipv4Addr::new(10, 10, 0, 53)])));
    assert_eq!(opt(m, OptionCode::Hostname), Some(&DhcpOption::Hostname("node-1".into())));
    assert_eq!(opt(m, OptionCode::AddressLeaseTime), Some(&DhcpOption::AddressLeaseTime(3600)));
    assert_eq!(m.fname_str().unwrap().unwrap(), "undionly.kpxe");
    assert_eq!(r.to, Destination::Broadcast);
    assert!(opt(m, OptionCode::from(175)).is_none(), "only iPXE gets option 175");
}

#[test]
fn boot_file_follows_the_architecture_and_ipxe_gets_its_script() {
    let uefi = run("full", Port::Dhcp, &request(KNOWN, MessageType::Discover, Req { pxe: true, arch: Some(7), ..Req::default() })).unwrap();
    assert_eq!(uefi.boot_file.as_deref(), Some("ipxe.efi"));
    let uefi9 =
        run("full", Port::Dhcp, &request(KNOWN, MessageType::Discover, Req { pxe: true, arch: Some(9), ..Req::default() })).unwrap();
    assert_eq!(uefi9.boot_file.as_deref(), Some("ipxe.efi"));
    let no_arch = run("full", Port::Dhcp, &request(KNOWN, MessageType::Discover, Req { pxe: true, ..Req::default() })).unwrap();
    assert_eq!(no_arch.boot_file.as_deref(), Some("undionly.kpxe"));

    let ipxe =
        run("full", Port::Dhcp, &request(KNOWN, MessageType::Discover, Req { pxe: true, ipxe: true, arch: Some(0), ..Req::default() }))
            .unwrap();
    assert_eq!(ipxe.boot_file.as_deref(), Some("http://10.10.0.1:8750/boot/ipxe?mac=52:54:00:00:00:01"));
    assert_eq!(ipxe.message.fname_str().unwrap().unwrap(), "http://10.10.0.1:8750/boot/ipxe?mac=52:54:00:00:00:01");
    match opt(&ipxe.message, OptionCode::from(175)) {
        Some(DhcpOption::Unknown(u)) => assert_eq!(u.data(), &[176, 1, 1]),
        other => panic!("option 175 missing: {other:?}"),
    }

    let arm = run("full", Port::Dhcp, &request(KNOWN, MessageType::Discover, Req { pxe: true, arch: Some(11), ..Req::default() }));
    assert_eq!(arm.unwrap_err(), Ignored::UnsupportedArch { host: "node-1".into(), arch: 11 });

    // A plain DHCP client (no PXE) gets its address and no boot file.
    let plain = run("full", Port::Dhcp, &request(KNOWN, MessageType::Discover, Req::default())).unwrap();
    assert_eq!(plain.boot_file, None);
    assert!(plain.message.fname().is_none());
}

#[test]
fn full_mode_request_states() {
    // SELECTING: our server id and the offered address → ACK.
    let ack = run(
        "full",
        Port::Dhcp,
        &request(KNOWN, MessageType::Request, Req { server_id: Some(SERVER), requested: Some(NODE_IP), ..Req::default() }),
    )
    .unwrap();
    assert_eq!(ack.kind, "ack");
    assert_eq!(ack.message.yiaddr(), NODE_IP);
    // SELECTING another server's offer → silence.
    let other = request(
        KNOWN,
        MessageType::Request,
        Req { server_id: Some(Ipv4Addr::new(10, 10, 0, 2)), requested: Some(NODE_IP), ..Req::default() },
    );
    assert_eq!(run("full", Port::Dhcp, &other).unwrap_err(), Ignored::OtherServer);
    // INIT-REBOOT with a stale address → NAK, broadcast.
    let stale = run(
        "full",
        Port::Dhcp,
        &request(KNOWN, MessageType::Request, Req { requested: Some(Ipv4Addr::new(10, 10, 0, 99)), ..Req::default() }),
    )
    .unwrap();
    assert_eq!(stale.kind, "nak");
    assert_eq!(stale.message.opts().msg_type(), Some(MessageType::Nak));
    assert_eq!(stale.message.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(stale.to, Destination::Broadcast);
    // RENEWING: ciaddr set → ACK unicast to the client.
    let renew = run("full", Port::Dhcp, &request(KNOWN, MessageType::Request, Req { ciaddr: Some(NODE_IP), ..Req::default() })).unwrap();
    assert_eq!(renew.kind, "ack");
    assert_eq!(renew.to, Destination::Unicast(SocketAddrV4::new(NODE_IP, 68)));
    // DECLINE and RELEASE get no answer.
    let decline = request(KNOWN, MessageType::Decline, Req { requested: Some(NODE_IP), ..Req::default() });
    assert_eq!(run("full", Port::Dhcp, &decline).unwrap_err(), Ignored::Declined { host: "node-1".into(), ip: NODE_IP });
    assert!(matches!(run("full", Port::Dhcp, &request(KNOWN, MessageType::Release, Req::default())), Err(Ignored::NoAnswerNeeded(_))));
}

#[test]
fn unknown_macs_and_nodes_without_address_get_nothing() {
    let err = run("full", Port::Dhcp, &request(STRANGER, MessageType::Discover, Req { pxe: true, ..Req::default() })).unwrap_err();
    assert!(matches!(err, Ignored::UnknownMac(Client { mac: STRANGER, pxe: true, .. })), "{err:?}");
    let err = run("proxy", Port::Dhcp, &request(STRANGER, MessageType::Discover, Req { pxe: true, ..Req::default() })).unwrap_err();
    assert!(matches!(err, Ignored::UnknownMac(_)), "{err:?}");
    let err = run("full", Port::Dhcp, &request(NO_IP, MessageType::Discover, Req { pxe: true, ..Req::default() })).unwrap_err();
    assert_eq!(err, Ignored::NoAddress { host: "node-2".into() });
}

#[test]
fn inventory_address_outside_the_subnet_is_refused() {
    let mut dir = directory();
    dir.insert(KNOWN, Host { name: "node-1".into(), ip: Some(Ipv4Addr::new(192, 168, 1, 5)) });
    let iface = iface("full");
    let ctx = Context { interface: &iface, server_ip: SERVER, http_base: "http://x" };
    let req = request(KNOWN, MessageType::Discover, Req::default());
    let err = answer(&req, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68), Port::Dhcp, &ctx, &dir).unwrap_err();
    assert_eq!(err, Ignored::OutsideSubnet { host: "node-1".into(), ip: Ipv4Addr::new(192, 168, 1, 5) });
}

#[test]
fn proxy_mode_gives_boot_information_without_an_address() {
    let r =
        run("proxy", Port::Dhcp, &request(KNOWN, MessageType::Discover, Req { pxe: true, arch: Some(0), uuid: true, ..Req::default() }))
            .unwrap();
    let m = &r.message;
    assert_eq!(r.kind, "proxy-offer");
    assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED, "proxyDHCP gives no address");
    assert_eq!(m.siaddr(), SERVER);
    assert_eq!(m.opts().msg_type(), Some(MessageType::Offer));
    assert_eq!(opt(m, OptionCode::ClassIdentifier), Some(&DhcpOption::ClassIdentifier(b"PXEClient".to_vec())));
    assert_eq!(opt(m, OptionCode::VendorExtensions), Some(&DhcpOption::VendorExtensions(vec![6, 1, 8, 255])));
    assert_eq!(opt(m, OptionCode::ClientMachineIdentifier), Some(&DhcpOption::ClientMachineIdentifier(vec![0; 17])));
    assert!(
        opt(m, OptionCode::SubnetMask).is_none() && opt(m, OptionCode::Router).is_none() && opt(m, OptionCode::AddressLeaseTime).is_none()
    );
    assert_eq!(m.fname_str().unwrap().unwrap(), "undionly.kpxe");

    // Non-PXE clients are the other server's business.
    assert_eq!(run("proxy", Port::Dhcp, &request(KNOWN, MessageType::Discover, Req::default())).unwrap_err(), Ignored::NotPxe);
    // The main server's REQUEST is not ours either.
    let to_main = request(KNOWN, MessageType::Request, Req { pxe: true, server_id: Some(Ipv4Addr::new(10, 10, 0, 2)), ..Req::default() });
    assert_eq!(run("proxy", Port::Dhcp, &to_main).unwrap_err(), Ignored::OtherServer);
}

#[test]
fn port_4011_answers_unicast_with_the_boot_file() {
    let req = request(KNOWN, MessageType::Request, Req { pxe: true, ipxe: true, arch: Some(7), ciaddr: Some(NODE_IP), ..Req::default() });
    let r = run("proxy", Port::PxeBoot, &req).unwrap();
    assert_eq!(r.kind, "pxe-ack");
    assert_eq!(r.message.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(r.to, Destination::Unicast(SocketAddrV4::new(NODE_IP, 68)));
    assert_eq!(r.message.ciaddr(), NODE_IP);
    assert_eq!(r.boot_file.as_deref(), Some("http://10.10.0.1:8750/boot/ipxe?mac=52:54:00:00:00:01"));
    // Full mode does not serve 4011.
    assert!(matches!(run("full", Port::PxeBoot, &req), Err(Ignored::NotForUs(_))));
}

#[test]
fn non_ethernet_and_replies_are_not_for_us() {
    let mut m = request(KNOWN, MessageType::Discover, Req::default());
    m.set_opcode(Opcode::BootReply);
    assert!(matches!(run("full", Port::Dhcp, &m), Err(Ignored::NotForUs(_))));
    let mut m = request(KNOWN, MessageType::Discover, Req::default());
    m.set_htype(HType::Unknown(32));
    assert!(matches!(run("full", Port::Dhcp, &m), Err(Ignored::NotForUs(_))));
    let mut m = request(KNOWN, MessageType::Discover, Req::default());
    m.opts_mut().remove(OptionCode::MessageType);
    assert!(matches!(run("full", Port::Dhcp, &m), Err(Ignored::NotForUs(_))));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    /// Whatever arrives on the wire, decoding and deciding never panic, in
    /// either mode or port; a reply, when there is one, encodes.
    #[test]
    fn arbitrary_packets_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), mode in prop_oneof!["full", "proxy"], pxe_port: bool) {
        if let Ok(req) = crate::dhcp::decode(&bytes) {
            let iface = iface(&mode);
            let ctx = Context { interface: &iface, server_ip: SERVER, http_base: "http://10.10.0.1:8750" };
            let port = if pxe_port { Port::PxeBoot } else { Port::Dhcp };
            if let Ok(reply) = answer(&req, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 68), port, &ctx, &directory()) {
                prop_assert!(reply.message.to_vec().is_ok());
            }
        }
    }

    /// Well-formed requests from a known MAC with arbitrary options mixed in.
    #[test]
    fn mutated_known_requests_never_panic(kind in 1u8..=8, arch: Option<u16>, pxe: bool, ipxe: bool, noise in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut req = request(KNOWN, MessageType::from(kind), Req { pxe, ipxe, arch, ..Req::default() });
        if noise.len() > 2 {
            req.opts_mut().insert(DhcpOption::Unknown(UnknownOption::new(OptionCode::from(noise[0]), noise[2..].to_vec())));
        }
        if let Ok(bytes) = req.to_vec() {
            for mode in ["full", "proxy"] {
                if let Ok(decoded) = crate::dhcp::decode(&bytes) {
                    let _ = run(mode, Port::Dhcp, &decoded);
                }
            }
        }
    }
}
