//! The hardware catalog: clusters, the filter builder's count, a node's
//! reference beside its report, the page budget of a whole Grid'5000.

use super::*;

#[tokio::test]
async fn the_hardware_catalog_shows_each_clusters_facts_to_signed_in_users() {
    let ctx = TestContext::with_fixtures().await;
    ctx.user("alice", "p-vision").await;
    // Signed out: the sign-in page, then back; no "Hardware" entry.
    let mut anonymous = Browser::new(&ctx);
    let away = anonymous.get("/hardware").await;
    assert_eq!((away.status, away.location.as_deref()), (StatusCode::SEE_OTHER, Some("/login?next=%2Fhardware")));
    assert!(!anonymous.get("/").await.text.contains("href=\"/hardware\""));

    let mut alice = signed_in(&ctx, "alice").await;
    assert!(alice.get("/").await.text.contains("<a href=\"/hardware\">Hardware</a>"), "the navigation has Hardware");
    let catalog = alice.get("/hardware").await;
    assert_eq!(catalog.status, StatusCode::OK, "{}", catalog.text);
    assert!(catalog.text.len() < PAGE_BUDGET, "{} bytes", catalog.text.len());
    assert!(catalog.text.contains("<a href=\"/hardware\" aria-current=\"page\">Hardware</a>"));
    let section = |name: &str| -> String {
        let start = catalog.text.find(&format!("id=\"cluster-{name}\"")).unwrap_or_else(|| panic!("no cluster {name}: {}", catalog.text));
        catalog.text[start..].split("</section>").next().unwrap_or_default().to_owned()
    };
    let chifflot = section("chifflot");
    for fact in [
        "<dt>Nodes</dt><dd>8</dd>",
        "<dt>By state</dt><dd>8 available</dd>",
        "<dd>Intel Xeon Gold 6126 (Skylake-SP)</dd>",
        "<dd>24 (2 CPUs × 12)</dd>",
        "<dd>192 GiB</dd>",
        "2 × Tesla P100-PCIE-16GB (16 GiB each) on 6 nodes; 2 × Tesla V100-PCIE-32GB (32 GiB each) on 2 nodes",
        "<dt>FPGAs and other accelerators</dt><dd>none</dd>",
        "Gbit/s Ethernet",
        "<dt>Exotic</dt><dd>no</dd>",
    ] {
        assert!(chifflot.contains(fact), "chifflot: {fact} in {chifflot}");
    }
    let servan = section("servan");
    for fact in ["<dd>2</dd>", "<dd>128 GiB</dd>", "1 × Alveo U200 (fpga)", "<dt>GPUs</dt><dd>none</dd>", "yes: prototype hardware"] {
        assert!(servan.contains(fact), "servan: {fact} in {servan}");
    }
    assert!(catalog.text.contains("Site grenoble (2 nodes)") && catalog.text.contains("Site lille (8 nodes)"), "{}", catalog.text);
    // The helpers offer the clusters and GPU models there are.
    for option in ["<option value=\"chifflot\">", "<option value=\"servan\">", "<option value=\"Tesla V100-PCIE-32GB\">"] {
        assert!(catalog.text.contains(option), "{option}");
    }
    // The scripts are files of this origin (the CSP refuses inline ones):
    // the shared live count first, then the builder that uses it.
    assert!(
        catalog
            .text
            .contains("<script src=\"/static/filter-count.js\" defer></script>\n<script src=\"/static/hardware.js\" defer></script>")
    );
    let script = reqwest::get(format!("{}/static/filter-count.js", ctx.url)).await.expect("script");
    assert_eq!(script.headers()["content-type"], "text/javascript; charset=utf-8");
    assert!(script.text().await.expect("text").contains("/hardware/_count"));
    let script = reqwest::get(format!("{}/static/hardware.js", ctx.url)).await.expect("script");
    assert!(script.text().await.expect("text").contains("window.ferrumFilterCount("));

    // A cluster's page: its nodes in natural order, each with its state.
    let cluster = alice.get("/hardware/chifflot").await;
    assert_eq!(cluster.status, StatusCode::OK, "{}", cluster.text);
    assert!(cluster.text.len() < PAGE_BUDGET);
    let rows: Vec<&str> = cluster.text.match_indices("<a href=\"/hardware/nodes/").map(|(i, _)| &cluster.text[i + 25..i + 36]).collect();
    assert_eq!(rows.len(), 8, "{}", cluster.text);
    assert!(rows[0].starts_with("chifflot-1\"") && rows[7].starts_with("chifflot-8\""), "{rows:?}");
    assert!(cluster.text.contains("<td>available</td><td>192 GiB</td><td>2 × Tesla V100-PCIE-32GB (32 GiB each)</td>"), "{}", cluster.text);
    // Its calendar, and a node's, are a link away (the calendar takes the
    // same filter language).
    assert!(cluster.text.contains("<a href=\"/calendar?filter=cluster+%3D+%27chifflot%27\">"), "{}", cluster.text);
    let node = alice.get("/hardware/nodes/chifflot-3").await;
    assert!(node.text.contains("<a href=\"/calendar?filter=host+%3D+%27chifflot-3%27\">"), "{}", node.text);
    let calendar = alice.get("/calendar?filter=host+%3D+%27chifflot-3%27").await;
    assert_eq!(calendar.status, StatusCode::OK, "{}", calendar.text);
    assert!(calendar.text.contains("chifflot-3") && !calendar.text.contains("chifflot-4"), "{}", calendar.text);
    let unknown = alice.get("/hardware/nowhere").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(unknown.text.contains("there is no cluster &#39;nowhere&#39;"), "{}", unknown.text);
    assert_eq!(alice.get("/hardware/nodes/nowhere-1").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_filter_builder_counts_what_the_api_counts_and_says_why_a_filter_is_wrong() {
    let ctx = TestContext::with_fixtures().await;
    let token = ctx.user("alice", "p-vision").await;
    let mut alice = signed_in(&ctx, "alice").await;
    for filter in [
        "gpu_count >= 2 AND cluster IN ('chifflot')",
        "gpu_model LIKE '%V100%'",
        "exotic",
        "memnode >= 150000 AND NOT exotic",
        "cluster = 'chifflot' OR accel_type = 'fpga'",
        "gpu_count > 2",
    ] {
        let api = ctx.get(&format!("/api/v1/nodes?filter={}", query(filter)), &token).await.expect(200);
        let expected = api.as_array().expect("nodes").len();
        let counted = alice.get(&format!("/hardware/_count?filter={}", query(filter))).await;
        assert_eq!(counted.status, StatusCode::OK, "{filter}: {}", counted.text);
        let counted: Value = serde_json::from_str(&counted.text).expect("JSON");
        assert_eq!(counted["count"], expected, "{filter}");
        // Without the script: the button asks the same of the page.
        let page = alice.get(&format!("/hardware?filter={}", query(filter))).await;
        assert_eq!(page.status, StatusCode::OK, "{filter}: {}", page.text);
        assert!(page.text.contains(&format!("Matching nodes: {expected} of 10.")), "{filter}: {}", page.text);
        assert!(page.text.contains(&format!("value=\"{}\"", escaped(filter))), "the filter stays in its field: {}", page.text);
    }
    let some = alice.get(&format!("/hardware?filter={}", query("gpu_model = 'Tesla V100-PCIE-32GB'"))).await;
    assert!(some.text.contains("<dt>Nodes</dt><dd>8; 2 match the filter (<a href=\"/hardware/chifflot?filter="), "{}", some.text);
    let listed = alice.get(&format!("/hardware/chifflot?filter={}", query("gpu_model = 'Tesla V100-PCIE-32GB'"))).await;
    assert!(listed.text.contains("2 of 8 nodes match"), "{}", listed.text);
    assert_eq!(listed.text.matches("<a href=\"/hardware/nodes/").count(), 2, "{}", listed.text);

    // A wrong filter: the parser's words beside the field, kept as typed.
    let typo = "gpu_cont >= 2";
    let api = ctx.get(&format!("/api/v1/nodes?filter={}", query(typo)), &token).await.error(400, "invalid_filter");
    let counted = alice.get(&format!("/hardware/_count?filter={}", query(typo))).await;
    assert_eq!(counted.status, StatusCode::BAD_REQUEST);
    let counted: Value = serde_json::from_str(&counted.text).expect("JSON");
    assert_eq!(counted["error"], api.as_str());
    assert_eq!(api, "filter: at position 1: unknown property 'gpu_cont' (did you mean 'gpu_count'?)");
    let page = alice.get(&format!("/hardware?filter={}", query(typo))).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(
        page.text
            .contains("class=\"error\">filter: at position 1: unknown property &#39;gpu_cont&#39; (did you mean &#39;gpu_count&#39;?)</p>"),
        "{}",
        page.text
    );
    assert!(page.text.contains("aria-invalid=\"true\""), "{}", page.text);
    assert!(page.text.contains(&format!("value=\"{}\"", escaped(typo))), "{}", page.text);
    for (bad, words) in
        [("gpu_count >=", "expected a value"), ("(exotic", "to close the '(' at position 1"), ("exotic & gpu_count > 1", "write AND")]
    {
        let counted = alice.get(&format!("/hardware/_count?filter={}", query(bad))).await;
        assert_eq!(counted.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(counted.text.contains(words), "{bad}: {}", counted.text);
    }

    // The helpers write their conditions into the filter; a changed one
    // replaces its own, and the text typed stays.
    let first = alice.get("/hardware?filter=NOT+exotic&cluster=chifflot&min_gpus=2&min_memory=&gpu_model=").await;
    let composed = "NOT exotic AND cluster = 'chifflot' AND gpu_count >= 2";
    assert!(first.text.contains(&format!("value=\"{}\"", escaped(composed))), "{}", first.text);
    assert!(first.text.contains("Matching nodes: 8 of 10."), "{}", first.text);
    assert!(first.text.contains("<option value=\"chifflot\" selected>"), "{}", first.text);
    assert!(first.text.contains("name=\"prev_cluster\" value=\"chifflot\""), "{}", first.text);
    let changed = alice
        .get(&format!(
            "/hardware?filter={}&cluster=chifflot&min_gpus=2&gpu_model={}&min_memory=&prev_cluster=chifflot&prev_min_gpus=2",
            query(composed),
            query("Tesla V100-PCIE-32GB")
        ))
        .await;
    let composed = format!("{composed} AND gpu_model = 'Tesla V100-PCIE-32GB'");
    assert!(changed.text.contains(&format!("value=\"{}\"", escaped(&composed))), "{}", changed.text);
    assert!(changed.text.contains("Matching nodes: 2 of 10."), "{}", changed.text);
    let servan = alice.get(&format!("/hardware?filter={}&cluster=servan&prev_cluster=chifflot&prev_min_gpus=2", query(&composed))).await;
    let composed = "NOT exotic AND gpu_model = 'Tesla V100-PCIE-32GB' AND cluster = 'servan'";
    assert!(servan.text.contains(&format!("value=\"{}\"", escaped(composed))), "{}", servan.text);
    assert!(servan.text.contains("Matching nodes: 0 of 10."), "{}", servan.text);

    // The count takes a session; the API a token.
    let mut anonymous = Browser::new(&ctx);
    let refused = anonymous.get("/hardware/_count?filter=exotic").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(serde_json::from_str::<Value>(&refused.text).expect("JSON")["error"], "sign in again to count nodes");
}

#[tokio::test]
async fn a_node_page_shows_its_reference_beside_its_report_with_the_differences_marked() {
    let ctx = TestContext::with_fixtures().await;
    let alice_token = ctx.user("alice", "p-vision").await;
    ctx.user("bob", "p-other").await;
    // The agent found one GPU and 128 GiB where the reference says two
    // and 192 GiB.
    let store = ctx.store().await;
    let node = store.get_node("chifflot-7").await.expect("chifflot-7");
    let report = json!({"schema_version": 1, "agent_version": "test",
        "processor": {"other_description": "Intel(R) Xeon(R) Gold 6126 CPU @ 2.60GHz"},
        "architecture": {"nb_procs": 2, "nb_cores": 24, "nb_threads": 48}, "main_memory": {"ram_size": 137_438_953_472u64},
        "gpu_devices": {"nvidia0": {"model": "Tesla V100-PCIE-32GB", "vendor": "NVIDIA", "pci_address": "0000:3b:00.0", "vendor_id": "10de", "device_id": "1db6"}},
        "network_adapters": [{"device": "ens5f0", "mac": "3c:fd:fe:c1:70:90", "rate": 25_000_000_000u64}],
        "pci_ids_source": {"origin": "embedded"}});
    assert!(store.store_inventory(node.id, 1, &report.to_string(), 0).await.expect("stored"));
    // Alice's lease on it, in two hours.
    let lease = json!({"nodes": {"names": ["chifflot-7"]}, "duration": "1h", "start": at(chrono::Duration::hours(2))});
    let lease = ctx.post("/api/v1/leases", &alice_token, lease).await.expect(201)["id"].as_i64().expect("id");

    let mut alice = signed_in(&ctx, "alice").await;
    let page = alice.get("/hardware/nodes/chifflot-7").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.len() < PAGE_BUDGET, "{} bytes", page.text.len());
    assert!(page.text.contains("<a href=\"/hardware\" aria-current=\"true\">Hardware</a>"));
    let api = ctx.get("/api/v1/nodes/chifflot-7/inventory", &alice_token).await.expect(200);
    let differences = api["differences"].as_array().expect("differences");
    assert_eq!(differences.len(), 4, "GPU count, RAM, the disks, a NIC's MAC: {differences:?}");
    assert!(page.text.contains("✗ 4 differences from the reference"), "{}", page.text);
    for d in differences {
        let message = d["message"].as_str().expect("message");
        assert!(page.text.contains(&format!("<li>{}</li>", escaped(message))), "{message} in {}", page.text);
    }
    // Each differing row is marked in words, not by colour alone.
    for row in [
        "<tr class=\"differs\"><th scope=\"row\">RAM</th><td>192 GiB</td><td>128 GiB</td><td>✗ differs</td></tr>",
        "<tr class=\"differs\"><th scope=\"row\">Count</th><td>2</td><td>1</td><td>✗ differs</td></tr>",
        "<tr class=\"agrees\"><th scope=\"row\">Cores</th><td>24</td><td>24</td><td>✓ agrees</td></tr>",
    ] {
        assert!(page.text.contains(row), "{row} in {}", page.text);
    }
    assert!(page.text.contains("<td>Tesla V100-PCIE-32GB, 32 GiB</td><td>Tesla V100-PCIE-32GB, NVIDIA at 0000:3b:00.0</td>"));
    // State, events, the lease, the properties a filter sees.
    assert!(page.text.contains("<dt>State</dt><dd>available</dd>"), "{}", page.text);
    // (The admin's import shows as the admin's, its reason for admins.)
    assert!(page.text.contains("<td>enrolling</td><td>available</td><td>system</td>"), "{}", page.text);
    assert!(page.text.contains("<td>admin</td><td>(shown to admins only)</td>"), "{}", page.text);
    assert!(page.text.contains(&format!("<td>default</td><td>pending</td><td>yours (lease {lease})</td>")), "{}", page.text);
    assert!(page.text.contains("<th scope=\"row\"><code>gpu_model</code></th><td><code>&#39;Tesla V100-PCIE-32GB&#39;</code></td>"));
    // Bob sees that the node is taken, not by whom.
    let mut bob = signed_in(&ctx, "bob").await;
    let seen = bob.get("/hardware/nodes/chifflot-7").await;
    assert!(seen.text.contains("<td>pending</td><td>another user&#39;s</td>"), "{}", seen.text);
    assert!(!seen.text.contains("alice") && !seen.text.contains(&format!("lease {lease}")), "{}", seen.text);
    // No report yet: the reference alone, nothing marked.
    let bare = alice.get("/hardware/nodes/chifflot-1").await;
    assert!(bare.text.contains("No agent has reported this node's hardware yet"), "{}", bare.text);
    assert!(!bare.text.contains("class=\"differs\"") && !bare.text.contains("class=\"agrees\""), "{}", bare.text);
    assert!(!bare.text.contains("Reported by the agent") && bare.text.contains("<td>192 GiB</td>"), "{}", bare.text);
}

#[tokio::test]
async fn the_catalog_of_a_whole_grid5000_stays_well_under_its_page_budget() {
    let ctx = TestContext::empty().await;
    ctx.user("alice", "p-vision").await;
    // 940 nodes in 59 clusters over 12 sites, as big as Grid'5000.
    let dir = tempfile::tempdir().expect("tempdir");
    ferrum_controller::reference::synthesize_tree(&crate::it::harness::fixtures(), dir.path(), 940).expect("a synthesized tree");
    let nodes = ferrum_controller::reference::read_tree(dir.path()).expect("readable");
    let upload = ferrum_api::NodeImport {
        nodes: nodes
            .into_iter()
            .map(|d| ferrum_api::ReferenceNode { site: d.site, cluster: d.cluster, description: d.reference })
            .collect(),
    };
    ctx.post("/api/v1/nodes/import", &ctx.admin, serde_json::to_value(&upload).expect("json")).await.expect(200);
    let mut alice = signed_in(&ctx, "alice").await;
    for path in ["/hardware", "/hardware?filter=gpu_count+%3E%3D+2&min_memory=64", "/hardware/chifflot3", "/hardware/nodes/chifflot3-16"] {
        let page = alice.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.text);
        assert!(page.text.len() < PAGE_BUDGET / 2, "{path}: {} bytes", page.text.len());
    }
    let catalog = alice.get("/hardware").await;
    assert_eq!(catalog.text.matches("class=\"item cluster\"").count(), 59);
}
