//! Network boot, the controller's side: what each node boots next.
//!
//! Owns: the per-MAC iPXE script (`GET /boot/ipxe?mac=`) generated from the
//! node's boot target, the one-time agent token a ramdisk boot carries, the
//! admin's boot-target change, and [`BootHosts`], the inventory view the
//! embedded DHCP service answers from (refreshed from the database by a
//! loop, so the database stays the one source of truth), which also
//! remembers the unknown MACs that asked (in memory, bounded) so admins can
//! enrol them. Must not: send
//! anything on the network itself (the `ferrum-pxe` services do), or log a
//! token or a script carrying one.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ferrum_pxe::dhcp::{Client, Directory, Host, Mac};
use tokio::sync::{Notify, watch};

use super::accounts::{Actor, new_token, token_hash};
use super::{App, AppError, AppResult};
use crate::db::NodeRow;
use crate::model::{BootTarget, MacAddr};

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
    /// The iPXE script of the node owning `mac`, or `None` for a MAC the
    /// inventory does not know. A ramdisk boot mints a new one-time agent
    /// token (and forgets the node's unused ones).
    pub async fn boot_script(&self, mac: &str) -> AppResult<Option<BootScript>> {
        let mac: MacAddr = mac.parse().map_err(|e| AppError::bad_request(format!("mac: {e}")))?;
        let Some(host) = self.store.boot_host(&mac.to_string()).await? else {
            return Ok(None);
        };
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
                self.store.mint_agent_token(host.node, &token_hash(&token), now, now.saturating_add(ttl)).await?;
                let inputs =
                    ScriptInputs { base: base.trim_end_matches('/'), kernel: &boot.kernel, initrd: &boot.initrd, cmdline: &boot.cmdline };
                ramdisk_script(&host.name, &inputs, &token)
            }
        };
        Ok(Some(BootScript { node: host.name, target: host.boot_target, script }))
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
