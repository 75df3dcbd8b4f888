//! Network boot, the controller's side: what each node boots next.
//!
//! Owns: the per-MAC iPXE script (`GET /boot/ipxe?mac=`) generated from the
//! node's boot target and answered only to the node's inventory address,
//! the one-time agent token a ramdisk boot carries (bound to the address
//! that fetched it), who may fetch which image under `/images/`,
//! boot-service tokens (`ferrum-pxe`'s read of the MAC table), the
//! admin's boot-target change, and [`BootHosts`], the inventory view the
//! embedded DHCP service answers from (refreshed from the database by a
//! loop, so the database stays the one source of truth), which also
//! remembers the unknown MACs that asked (in memory, bounded) so admins can
//! enrol them. Must not: send
//! anything on the network itself (the `ferrum-pxe` services do), or log a
//! token or a script carrying one.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ferrum_pxe::dhcp::{Client, Directory, Host, Mac};
use tokio::sync::{Notify, watch};

use super::accounts::{Actor, new_token, token_hash};
use super::{App, AppError, AppResult};
use crate::db::{BootHostRow, NodeRow};
use crate::model::{BootTarget, MacAddr};

/// Unused one-time agent tokens kept per node, the newest: fetching a
/// script again (iPXE retrying, or anyone asking from the node's address)
/// never voids a token minted moments ago, and a node's table stays small.
pub const LIVE_AGENT_TOKENS: u32 = 4;

/// How often the DHCP view is reloaded even when nothing said it changed
/// (another process may have written).
const REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// The inventory as the DHCP service sees it: MAC → node name and address;
/// and the MACs it saw and did not know, for enrolment.
#[derive(Debug, Default)]
pub struct BootHosts {
    hosts: RwLock<Arc<HashMap<Mac, Host>>>,
    /// Poked after every inventory write of this process.
    pub changed: Notify,
    unknown: std::sync::Mutex<HashMap<Mac, UnknownMac>>,
}

/// A MAC that asked for a boot and is not in the inventory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownMac {
    pub mac: Mac,
    pub interface: String,
    /// PXE firmware (else a plain DHCP client).
    pub pxe: bool,
    /// RFC 4578 architecture, when the client said.
    pub arch: Option<u16>,
    pub first_seen: std::time::SystemTime,
    pub last_seen: std::time::SystemTime,
    pub requests: u64,
}

/// Unknown MACs remembered at most (the oldest are forgotten first).
const UNKNOWN_LIMIT: usize = 1024;

impl Directory for BootHosts {
    fn lookup(&self, mac: Mac) -> Option<Host> {
        let hosts = self.hosts.read().map(|h| h.clone()).unwrap_or_default();
        hosts.get(&mac).cloned()
    }

    fn unknown(&self, client: &Client, interface: &str) {
        let now = std::time::SystemTime::now();
        let Ok(mut seen) = self.unknown.lock() else { return };
        if !seen.contains_key(&client.mac) && seen.len() >= UNKNOWN_LIMIT {
            let oldest = seen.values().min_by_key(|u| u.last_seen).map(|u| u.mac);
            if let Some(oldest) = oldest {
                seen.remove(&oldest);
            }
        }
        let entry = seen.entry(client.mac).or_insert_with(|| UnknownMac {
            mac: client.mac,
            interface: interface.to_owned(),
            pxe: client.pxe,
            arch: client.arch,
            first_seen: now,
            last_seen: now,
            requests: 0,
        });
        entry.last_seen = now;
        entry.requests += 1;
        entry.interface = interface.to_owned();
    }
}

impl BootHosts {
    fn replace(&self, hosts: HashMap<Mac, Host>) {
        if let Ok(mut guard) = self.hosts.write() {
            *guard = Arc::new(hosts);
        }
    }

    /// How many MACs the DHCP service would answer.
    pub fn len(&self) -> usize {
        self.hosts.read().map(|h| h.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The MACs that asked for a boot since this process started and are
    /// still not in the inventory, most recent first.
    pub fn unknown_macs(&self) -> Vec<UnknownMac> {
        let mut list: Vec<UnknownMac> = self.unknown.lock().map(|m| m.values().cloned().collect()).unwrap_or_default();
        list.retain(|u| self.lookup(u.mac).is_none());
        list.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(a.mac.cmp(&b.mac)));
        list
    }
}

/// What the script needs besides the node.
#[derive(Clone, Debug)]
pub struct ScriptInputs<'a> {
    /// The URL nodes reach the controller at, without a trailing slash.
    pub base: &'a str,
    pub kernel: &'a str,
    pub initrd: &'a str,
    pub cmdline: &'a str,
}

/// Boot from the local disk: `sanboot` of the first BIOS disk boots it at
/// once; `exit` hands back to the firmware's next boot entry (UEFI, or a
/// BIOS whose disk is not drive 0x80).
pub fn local_script(node: &str) -> String {
    format!(
        "#!ipxe\n\
         # ferrum: {node} boots from its local disk\n\
         iseq ${{platform}} pcbios || goto firmware\n\
         sanboot --no-describe --drive 0x80 || goto firmware\n\
         :firmware\n\
         exit\n"
    )
}

/// Boot the deploy ramdisk, the controller's URL and a one-time agent token
/// on the kernel command line. `initrd=` names the initrd for EFI-stub
/// kernels (iPXE's EFI build passes it only then).
pub fn ramdisk_script(node: &str, inputs: &ScriptInputs<'_>, token: &str) -> String {
    let ScriptInputs { base, kernel, initrd, cmdline } = inputs;
    let extra = if cmdline.is_empty() { String::new() } else { format!(" {cmdline}") };
    format!(
        "#!ipxe\n\
         # ferrum: {node} boots the deploy ramdisk\n\
         kernel {base}/boot/files/{kernel} initrd={initrd} ferrum.url={base} ferrum.node={node} ferrum.token={token}{extra}\n\
         initrd {base}/boot/files/{initrd}\n\
         boot\n"
    )
}

/// A generated script, for the HTTP layer.
#[derive(Debug)]
pub struct BootScript {
    pub node: String,
    pub target: BootTarget,
    pub script: String,
}

impl App {
    /// The iPXE script of the node owning `mac`, as asked from `peer`, or
    /// `None` for a MAC the inventory does not know. A node with an
    /// inventory IP gets its script only at that address (MACs are public:
    /// they identify, they do not authenticate). A ramdisk boot mints a new
    /// one-time agent token bound to `peer`; the node's other recent unused
    /// tokens stay valid (at most [`LIVE_AGENT_TOKENS`]).
    pub async fn boot_script(&self, mac: &str, peer: IpAddr) -> AppResult<Option<BootScript>> {
        let mac: MacAddr = mac.parse().map_err(|e| AppError::bad_request(format!("mac: {e}")))?;
        let Some(host) = self.store.boot_host(&mac.to_string()).await? else {
            return Ok(None);
        };
        let peer = peer.to_canonical();
        if let Some(ip) = host.ip.as_deref().and_then(|ip| ip.parse::<IpAddr>().ok())
            && ip.to_canonical() != peer
        {
            tracing::warn!(node = %host.name, %mac, %peer, "iPXE script refused: asked from another address than the node's");
            return Err(AppError::Forbidden(format!(
                "the boot script of node {} is served only to the node's inventory address, not to {peer}",
                host.name
            )));
        }
        let script = match host.boot_target {
            BootTarget::Local => local_script(&host.name),
            BootTarget::Ramdisk => {
                let boot = &self.config.boot;
                let Some(base) = boot.public_url.as_deref() else {
                    return Err(AppError::Conflict {
                        message: "boot.public_url is not configured: nodes cannot be sent to the deploy ramdisk".into(),
                        earliest_start: None,
                    });
                };
                let token = new_token()?;
                let now = self.now();
                let ttl = i64::try_from(boot.agent_token_ttl.as_secs()).unwrap_or(i64::MAX);
                self.store
                    .mint_agent_token(host.node, &token_hash(&token), &peer.to_string(), LIVE_AGENT_TOKENS, now, now.saturating_add(ttl))
                    .await?;
                let inputs =
                    ScriptInputs { base: base.trim_end_matches('/'), kernel: &boot.kernel, initrd: &boot.initrd, cmdline: &boot.cmdline };
                ramdisk_script(&host.name, &inputs, &token)
            }
        };
        Ok(Some(BootScript { node: host.name, target: host.boot_target, script }))
    }

    /// Whether the file `path` of the images directory (relative, as in
    /// `/images/{path}`) may be served to this request: the image of a
    /// public environment to anyone on the provisioning network, any other
    /// only to an agent (its session bearer) whose queued or running
    /// `write_image` command names it.
    pub async fn image_access(&self, path: &str, session: Option<&str>) -> AppResult<()> {
        let public =
            self.store.list_environments().await?.into_iter().filter(|r| r.visibility == "public").any(|r| {
                serde_json::from_str::<ferrum_api::environment::EnvironmentDescriptor>(&r.descriptor).is_ok_and(|d| d.image == path)
            });
        if public {
            return Ok(());
        }
        let Some(session) = session else {
            return Err(AppError::Forbidden(format!(
                "image {path}: not a public environment's; only an agent whose current command writes it may fetch it"
            )));
        };
        let caller = self.agent_caller(session).await?;
        let s = caller.row();
        let current = self.store.agent_generation(s.node).await?;
        let named = s.generation >= current
            && self.store.agent_commands(s.node).await?.into_iter().filter(|c| c.state.is_unfinished()).any(|c| {
                matches!(serde_json::from_str::<ferrum_api::agent::AgentAction>(&c.action),
                    Ok(ferrum_api::agent::AgentAction::WriteImage { url, .. })
                        if url.split_once("/images/").is_some_and(|(_, rest)| rest == path))
            });
        if named {
            return Ok(());
        }
        tracing::warn!(node = %s.name, image = %path, "image refused: no current write command of this agent names it");
        Err(AppError::Forbidden(format!("image {path}: no current write command of this agent names it")))
    }

    /// Mints a boot-service token (admin): it reads the MAC → node table
    /// (`GET /api/v1/boot/hosts`, for `ferrum-pxe`) and nothing else.
    /// Returned once, stored hashed.
    pub async fn create_boot_token(&self, actor: &Actor) -> AppResult<String> {
        actor.require_admin()?;
        let token = format!("fboot_{}", new_token()?.trim_start_matches("ferrum_"));
        self.store.add_boot_token(&token_hash(&token), &actor.name, self.now()).await?;
        tracing::info!(actor = %actor.name, "boot-service token created");
        self.audit(actor, "boot.token", "boot", serde_json::json!({})).await;
        Ok(token)
    }

    /// The MAC → node table for the boot services, to a boot-service token
    /// or an admin's API token.
    pub async fn boot_host_table(&self, token: &str) -> AppResult<Vec<BootHostRow>> {
        if !self.store.is_boot_token(&token_hash(token)).await? {
            self.authenticate(token).await?.actor.require_admin()?;
        }
        Ok(self.store.boot_hosts().await?)
    }

    /// Sets what a node boots next over the network (admin).
    pub async fn set_boot_target(&self, actor: &Actor, name: &str, target: BootTarget) -> AppResult<NodeRow> {
        actor.require_admin()?;
        let node = self.store.get_node(name).await?;
        if node.boot_target != target {
            self.store.set_boot_target(node.id, target).await?;
            tracing::info!(node = %name, target = target.as_str(), actor = %actor.name, "boot target set");
            self.audit(
                actor,
                "node.boot_target",
                &format!("node/{name}"),
                serde_json::json!({ "from": node.boot_target.as_str(), "to": target.as_str() }),
            )
            .await;
        }
        Ok(self.store.get_node(name).await?)
    }

    /// Reloads the DHCP service's view of the inventory.
    pub async fn refresh_boot_hosts(&self) -> AppResult<()> {
        let rows = self.store.boot_hosts().await?;
        let mut hosts = HashMap::with_capacity(rows.len());
        for row in rows {
            let Ok(mac) = row.mac.parse::<Mac>() else {
                tracing::warn!(node = %row.name, mac = %row.mac, "stored MAC is not usable for DHCP");
                continue;
            };
            let ip = row.ip.as_deref().and_then(|ip| ip.parse::<Ipv4Addr>().ok());
            hosts.insert(mac, Host { name: row.name, ip });
        }
        self.boot_hosts.replace(hosts);
        Ok(())
    }

    /// Keeps [`BootHosts`] in step with the database: at once, after every
    /// inventory write of this process, and every [`REFRESH_INTERVAL`].
    pub async fn run_boot_hosts_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(REFRESH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if let Err(e) = self.refresh_boot_hosts().await {
                tracing::warn!(error = %e, "cannot reload the boot services' view of the inventory");
            }
            tokio::select! {
                _ = tick.tick() => {}
                () = self.boot_hosts.changed.notified() => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_macs_are_remembered_bounded_and_forgotten_once_enrolled() {
        let hosts = BootHosts::default();
        let client = |last: u8| Client { mac: Mac([2, 0, 0, 0, 0, last]), pxe: true, ipxe: false, arch: Some(7) };
        hosts.unknown(&client(1), "br0");
        hosts.unknown(&client(2), "br0");
        hosts.unknown(&client(1), "br1");
        let list = hosts.unknown_macs();
        assert_eq!(list.len(), 2);
        let one = list.iter().find(|u| u.mac == client(1).mac).unwrap();
        assert_eq!((one.requests, one.interface.as_str(), one.arch), (2, "br1", Some(7)));
        // Enrolled since: no longer listed.
        hosts.replace(HashMap::from([(client(2).mac, Host { name: "n2".into(), ip: None })]));
        assert_eq!(hosts.unknown_macs().iter().map(|u| u.mac).collect::<Vec<_>>(), vec![client(1).mac]);
        // Bounded.
        for i in 0..(UNKNOWN_LIMIT + 10) {
            let b = u16::try_from(i).unwrap().to_be_bytes();
            hosts.unknown(&Client { mac: Mac([2, 1, 0, 0, b[0], b[1]]), pxe: false, ipxe: false, arch: None }, "br0");
        }
        assert!(hosts.unknown.lock().unwrap().len() <= UNKNOWN_LIMIT);
    }

    #[test]
    fn scripts() {
        insta::assert_snapshot!("local", local_script("gpu-1"));
        let inputs = ScriptInputs { base: "http://10.10.0.1:8750", kernel: "vmlinuz", initrd: "initrd.img", cmdline: "console=ttyS0" };
        insta::assert_snapshot!("ramdisk", ramdisk_script("gpu-1", &inputs, "ferrum_0123abcd"));
        let bare = ScriptInputs { cmdline: "", ..inputs };
        assert!(ramdisk_script("gpu-1", &bare, "t").contains("ferrum.token=t\n"), "no trailing space without extra arguments");
    }
}
