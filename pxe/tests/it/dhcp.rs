//! DHCP and router advertisements against real clients, inside network
//! namespaces the tests create: the server's bridge lives in one namespace,
//! the clients' ends of veth pairs in another. Nothing leaves them.
//!
//! Owns: full mode with busybox `udhcpc` and ISC `dhclient`, unknown MACs
//! left unanswered, proxy mode's port 67 offer and port 4011 exchange with
//! packets built by dhcproto, and the router advertisement iPXE waits for.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dhcproto::v4::{Architecture, Decodable, DhcpOption, Encodable, Flags, Message, MessageType, OptionCode};
use ferrum_lab::netns::Netns;
use ferrum_pxe::config::DhcpInterface;
use ferrum_pxe::dhcp::{Directory, Host, Mac};
use ferrum_pxe::services::BootNetwork;
use tokio::process::Command;

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const HTTP_BASE: &str = "http://10.77.0.1:8750";
/// Deadline for anything a test waits on.
const DEADLINE: Duration = Duration::from_secs(30);

/// A server namespace with a bridge running ferrum's boot services, and a
/// client namespace holding one veth end per client MAC.
struct Site {
    /// Kept alive (and removed on drop) with the site.
    _server: Netns,
    clients: Netns,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    dir: tempfile::TempDir,
}

fn mac(last: u8) -> Mac {
    Mac([0x52, 0x54, 0x00, 0x77, 0x00, last])
}

/// The inventory of these tests: MACs ..:01 to ..:04 are nodes with addresses .21 to .24.
fn inventory() -> HashMap<Mac, Host> {
    (1..=4).map(|i| (mac(i), Host { name: format!("node-{i}"), ip: Some(Ipv4Addr::new(10, 77, 0, 20 + i)) })).collect()
}

impl Site {
    /// `clients`: (interface name, MAC) pairs created in the client namespace.
    async fn start(mode: &str, clients: &[(&str, Mac)], router_advertisement: bool) -> Site {
        let server = Netns::create("fpxe-s").unwrap();
        let client_ns = Netns::create("fpxe-c").unwrap();
        server.add_bridge("br0", "10.77.0.1/24").unwrap();
        for (name, mac) in clients {
            let port = format!("{name}p");
            server.add_veth_to_bridge(name, &port, "br0", &mac.to_string()).unwrap();
            server.move_link(name, &client_ns).unwrap();
            client_ns.ip(&["link", "set", name, "up"]).unwrap();
        }
        let text = format!(
            "interface = \"br0\"\nmode = \"{mode}\"\nsubnet = \"10.77.0.0/24\"\nrouter = \"10.77.0.1\"\ndns = [\"10.77.0.1\"]\nrouter_advertisement = {router_advertisement}\n"
        );
        let iface: DhcpInterface = toml::from_str(&text).unwrap();
        let config = BootNetwork { dhcp: vec![iface], tftp: None };
        config.validate().unwrap();
        let bound = server.run_in(move || config.bind()).unwrap().unwrap();
        let directory: Arc<dyn Directory> = Arc::new(inventory());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(bound.run(directory, HTTP_BASE.to_owned(), async move {
            let _ = stopped.await;
        }));
        Site { _server: server, clients: client_ns, stop: Some(stop), task: Some(task), dir: tempfile::tempdir().unwrap() }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = self.task.take().unwrap().await.unwrap();
        assert!(result.is_ok(), "the boot services ended with an error: {result:?}");
    }

    fn script(&self, name: &str, body: &str) -> std::path::PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        path
    }
}

/// Runs a client command inside `ns` to completion, within [`DEADLINE`].
async fn run_client(ns: &Netns, program: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::from(ns.command(program));
    cmd.args(args).kill_on_drop(true);
    tokio::time::timeout(DEADLINE, cmd.output()).await.expect("client finished within the deadline").unwrap()
}

/// Waits until `path` contains `needle`, within [`DEADLINE`], polling the
/// file the client's hook script appends to.
async fn wait_for_text(path: &Path, needle: &str, child: &mut tokio::process::Child) -> String {
    let deadline = Instant::now() + DEADLINE;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("client exited ({status}) before writing {needle:?}; it wrote: {text}");
        }
        assert!(Instant::now() < deadline, "no {needle:?} in {} within {DEADLINE:?}: {text}", path.display());
        tick.tick().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_mode_gives_busybox_udhcpc_its_inventory_address() {
    let site = Site::start("full", &[("c1", mac(1))], false).await;
    let out = site.dir.path().join("udhcpc.out");
    let hook = site.script("hook", &format!("echo \"$1 ip=$ip mask=$subnet router=$router dns=$dns host=$hostname\" >> {}", out.display()));
    let result =
        run_client(&site.clients, "busybox", &["udhcpc", "-i", "c1", "-f", "-q", "-n", "-t", "5", "-T", "2", "-s", hook.to_str().unwrap()])
            .await;
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(result.status.success(), "udhcpc failed: {}\n{text}", String::from_utf8_lossy(&result.stderr));
    assert!(text.contains("bound ip=10.77.0.21 mask=255.255.255.0 router=10.77.0.1 dns=10.77.0.1 host=node-1"), "udhcpc's lease: {text}");
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_mode_gives_isc_dhclient_its_inventory_address() {
    let site = Site::start("full", &[("c2", mac(2))], false).await;
    let out = site.dir.path().join("dhclient.out");
    let hook = site.script(
        "hook",
        &format!("echo \"$reason ip=$new_ip_address mask=$new_subnet_mask router=$new_routers host=$new_host_name\" >> {}", out.display()),
    );
    let leases = site.dir.path().join("leases");
    let pid = site.dir.path().join("pid");
    // -d: stays in the foreground, so this test owns the process and stops it by PID (kill_on_drop).
    let mut cmd = Command::from(site.clients.command("dhclient"));
    cmd.args(["-d", "-1", "-sf", hook.to_str().unwrap(), "-lf", leases.to_str().unwrap(), "-pf", pid.to_str().unwrap(), "c2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let text = wait_for_text(&out, "BOUND", &mut child).await;
    child.kill().await.unwrap();
    assert!(text.contains("BOUND ip=10.77.0.22 mask=255.255.255.0 router=10.77.0.1 host=node-2"), "dhclient's lease: {text}");
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_mac_gets_no_answer() {
    let stranger = Mac([0x52, 0x54, 0x00, 0x99, 0x99, 0x99]);
    let site = Site::start("full", &[("c9", stranger)], false).await;
    let out = site.dir.path().join("udhcpc.out");
    let hook = site.script("hook", &format!("echo \"$1 ip=$ip\" >> {}", out.display()));
    // Three discovers one second apart, then udhcpc gives up by itself (-n).
    let result =
        run_client(&site.clients, "busybox", &["udhcpc", "-i", "c9", "-f", "-q", "-n", "-t", "3", "-T", "1", "-s", hook.to_str().unwrap()])
            .await;
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(!result.status.success(), "udhcpc got a lease for an unknown MAC: {text}");
    assert!(!text.contains("bound"), "{text}");
    site.stop().await;
}

/// A DHCP client socket on the client namespace's interface.
fn client_socket(ns: &Netns, interface: &'static str, port: u16) -> tokio::net::UdpSocket {
    let std_socket = ns.run_in(move || ferrum_pxe::dhcp::server::udp_on_device(interface, port)).unwrap().unwrap();
    tokio::net::UdpSocket::from_std(std_socket).unwrap()
}

fn pxe_request(mac: Mac, kind: MessageType, xid: u32, ciaddr: Ipv4Addr) -> Message {
    let mut m = Message::new_with_id(xid, ciaddr, Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, &mac.0);
    m.set_flags(Flags::default().set_broadcast());
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(kind));
    o.insert(DhcpOption::ClassIdentifier(b"PXEClient:Arch:00000:UNDI:002001".to_vec()));
    o.insert(DhcpOption::ClientSystemArchitecture(Architecture::X86_Bios));
    o.insert(DhcpOption::ClientMachineIdentifier([0u8].into_iter().chain(*b"0123456789abcdef").collect()));
    m
}

/// Receives until a DHCP message with `xid` arrives, within [`DEADLINE`].
async fn receive(socket: &tokio::net::UdpSocket, xid: u32) -> (Message, SocketAddr) {
    let mut buf = vec![0u8; 2048];
    tokio::time::timeout(DEADLINE, async {
        loop {
            let (len, from) = socket.recv_from(&mut buf).await.unwrap();
            if let Ok(m) = Message::from_bytes(&buf[..len])
                && m.xid() == xid
            {
                return (m, from);
            }
        }
    })
    .await
    .expect("an answer within the deadline")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_mode_offers_boot_information_and_answers_on_4011() {
    let stranger = Mac([0x52, 0x54, 0x00, 0x99, 0x99, 0x98]);
    let site = Site::start("proxy", &[("c3", mac(3)), ("c8", stranger)], false).await;
    let known = client_socket(&site.clients, "c3", 68);
    let unknown = client_socket(&site.clients, "c8", 68);

    // The unknown MAC asks first, then the known one: the first answer the
    // known client's interface sees is for its own transaction, and the
    // unknown client's transaction is never answered (checked below, after
    // the server has provably processed the later request).
    let broadcast = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
    unknown
        .send_to(&pxe_request(stranger, MessageType::Discover, 0x0bad, Ipv4Addr::UNSPECIFIED).to_vec().unwrap(), broadcast)
        .await
        .unwrap();
    known.send_to(&pxe_request(mac(3), MessageType::Discover, 0x1111, Ipv4Addr::UNSPECIFIED).to_vec().unwrap(), broadcast).await.unwrap();
    let (offer, from) = receive(&known, 0x1111).await;
    assert_eq!(from, SocketAddr::from(SocketAddrV4::new(SERVER_IP, 67)));
    assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
    assert_eq!(offer.yiaddr(), Ipv4Addr::UNSPECIFIED, "proxyDHCP gives no address");
    assert_eq!(offer.siaddr(), SERVER_IP);
    assert_eq!(offer.fname_str().unwrap().unwrap().trim_end_matches(char::from(0)), "undionly.kpxe");
    assert_eq!(offer.opts().get(OptionCode::ClassIdentifier), Some(&DhcpOption::ClassIdentifier(b"PXEClient".to_vec())));
    assert_eq!(offer.opts().get(OptionCode::VendorExtensions), Some(&DhcpOption::VendorExtensions(vec![6, 1, 8, 255])));
    assert!(offer.opts().get(OptionCode::ClientMachineIdentifier).is_some(), "UUID echoed");

    // The known client now has an address from "the other" DHCP server and
    // asks the boot server on port 4011, unicast.
    site.clients.ip(&["addr", "add", "10.77.0.23/24", "dev", "c3"]).unwrap();
    let boot = &known;
    let mut req = pxe_request(mac(3), MessageType::Request, 0x2222, Ipv4Addr::new(10, 77, 0, 23));
    req.opts_mut().insert(DhcpOption::UserClass(b"iPXE".to_vec()));
    boot.send_to(&req.to_vec().unwrap(), SocketAddrV4::new(SERVER_IP, 4011)).await.unwrap();
    let (ack, from) = receive(boot, 0x2222).await;
    assert_eq!(from, SocketAddr::from(SocketAddrV4::new(SERVER_IP, 4011)));
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(ack.fname_str().unwrap().unwrap().trim_end_matches(char::from(0)), "http://10.77.0.1:8750/boot/ipxe?mac=52:54:00:77:00:03");

    // Nothing ever came back to the unknown MAC's socket: the server has
    // answered two later requests since, in order, on one socket.
    let mut buf = [0u8; 2048];
    match unknown.try_recv_from(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => {
            let got = other.map(|(len, _)| Message::from_bytes(&buf[..len]).map(|m| m.xid()));
            assert!(!matches!(got, Ok(Ok(0x0bad))), "the unknown MAC was answered");
        }
    }
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_advertisement_answers_a_solicitation() {
    let site = Site::start("full", &[("c4", mac(4))], true).await;
    // A raw ICMPv6 socket on the client's interface sends a router
    // solicitation (as iPXE does) and waits for the advertisement.
    let received = site
        .clients
        .run_in(|| {
            use socket2::{Domain, Protocol, Socket, Type};
            use std::io::Read as _;
            let index = nix::net::if_::if_nametoindex("c4").unwrap();
            let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6)).unwrap();
            socket.bind_device(Some(b"c4")).unwrap();
            socket.set_multicast_hops_v6(255).unwrap();
            socket.set_multicast_if_v6(index).unwrap();
            socket.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
            let all_routers = std::net::SocketAddrV6::new("ff02::2".parse().unwrap(), 0, 0, index);
            let deadline = Instant::now() + DEADLINE;
            let mut buf = [0u8; 1500];
            let mut next_solicit = Instant::now();
            while Instant::now() < deadline {
                if Instant::now() >= next_solicit {
                    // Router solicitations are repeated, as hosts do, until answered.
                    socket.send_to(&[133, 0, 0, 0, 0, 0, 0, 0], &all_routers.into()).unwrap();
                    next_solicit = Instant::now() + Duration::from_secs(1);
                }
                if let Ok(len) = (&socket).read(&mut buf)
                    && len >= 16
                    && buf[0] == 134
                {
                    return Some(buf[..len].to_vec());
                }
            }
            None
        })
        .unwrap()
        .expect("a router advertisement within the deadline");
    assert_eq!(received[1], 0, "code 0");
    assert_eq!(received[4], 64, "current hop limit");
    assert_eq!(received[5], 0, "no managed/other flags: iPXE needs no DHCPv6");
    assert_eq!(&received[6..8], &[0, 0], "router lifetime 0: not a default router");
    assert!(!received[16..].chunks(8).any(|o| o.first() == Some(&3)), "no prefix information option");
    site.stop().await;
}
