//! Any bytes on UDP port 67 or 4011, in either mode: decoding and deciding
//! never panic, and every reply encodes.
#![no_main]

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::LazyLock;

use dhcproto::v4::Encodable as _;
use ferrum_pxe::config::DhcpInterface;
use ferrum_pxe::dhcp::answer::{Context, Port, answer};
use ferrum_pxe::dhcp::{Host, Mac, decode};
use libfuzzer_sys::fuzz_target;

static FULL: LazyLock<DhcpInterface> =
    LazyLock::new(|| toml::from_str("interface = \"br0\"\nmode = \"full\"\nsubnet = \"10.0.0.0/24\"\nrouter = \"10.0.0.1\"\n").unwrap());
static PROXY: LazyLock<DhcpInterface> = LazyLock::new(|| toml::from_str("interface = \"br0\"\nmode = \"proxy\"\n").unwrap());

fuzz_target!(|data: &[u8]| {
    let Ok(req) = decode(data) else { return };
    // Whatever MAC the packet carries is known, so the whole decision runs.
    let mut directory = HashMap::new();
    if let Ok(mac) = <[u8; 6]>::try_from(req.chaddr()) {
        directory.insert(Mac(mac), Host { name: "n".into(), ip: Some(Ipv4Addr::new(10, 0, 0, 5)) });
    }
    for iface in [&*FULL, &*PROXY] {
        let ctx = Context { interface: iface, server_ip: Ipv4Addr::new(10, 0, 0, 1), http_base: "http://10.0.0.1:8750" };
        for port in [Port::Dhcp, Port::PxeBoot] {
            if let Ok(reply) = answer(&req, SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 5), 68), port, &ctx, &directory) {
                reply.message.to_vec().expect("a reply encodes");
            }
        }
    }
});
