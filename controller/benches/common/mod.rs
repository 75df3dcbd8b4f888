//! What the benches that seed a SQLite store share: nodes imported in one
//! go, and a lease as the engine placed it. (`mod common;` in each.)

use ferrum_controller::db::{Datastore, NewEvent, NewLease, NodeWrite};
use ferrum_controller::model::{LeaseState, LeaseType, NodeId, Seconds, UserId};

/// Imports `n` nodes of site `bench`; `node(i)` gives the i-th node's name,
/// cluster and properties. Answers their ids in import order.
pub async fn import_nodes(
    store: &dyn Datastore,
    n: usize,
    now: Seconds,
    node: impl Fn(usize) -> (String, String, serde_json::Value),
) -> anyhow::Result<Vec<NodeId>> {
    let writes: Vec<NodeWrite> = (0..n)
        .map(|i| {
            let (name, cluster, props) = node(i);
            NodeWrite {
                name,
                site: "bench".into(),
                cluster,
                ip: None,
                macs: vec![format!("02:00:{:02x}:{:02x}:{:02x}:01", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff)],
                bmc_url: None,
                properties: props.as_object().cloned().unwrap_or_default(),
                admin_properties: Default::default(),
                reference: None,
                reference_sha256: None,
            }
        })
        .collect();
    let added = NewEvent {
        at: now,
        actor: "bench".into(),
        from_shown: "enrolling".into(),
        to_shown: "enrolling".into(),
        reason: "imported from a reference description".into(),
    };
    store.import_nodes(&writes, &added).await?;
    let mut ids: Vec<NodeId> = store.list_nodes().await?.iter().map(|n| n.id).collect();
    ids.sort();
    Ok(ids)
}

/// A pending lease of `owner` on `nodes` over `[start, end)`.
pub fn pending_lease(owner: UserId, start: Seconds, end: Seconds, nodes: Vec<NodeId>, now: Seconds) -> NewLease {
    NewLease {
        owner_id: owner,
        project_id: None,
        lease_type: LeaseType::Default,
        state: LeaseState::Pending,
        start,
        end,
        exotic: false,
        filter: None,
        groups: None,
        deploy: None,
        name: None,
        reason: None,
        nodes,
        created_at: now,
    }
}
