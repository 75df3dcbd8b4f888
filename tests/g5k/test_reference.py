"""API-SUBSET §5, checks 1 (auth and discovery), 2 (reference browsing)
and 3 (EnOSlib's helpers, no SSH), with the unmodified clients."""

import pytest
from grid5000.exceptions import Grid5000AuthenticationError, Grid5000GetError

from conftest import ALICE_TOKEN, BOB_TOKEN, CHIFFLOT, LILLE_DNS, LILLE_NETWORK, LILLE_GATEWAY, client, http, reference


def assert_json_answers(c):
    """Every 2xx answer `c` got carries a JSON Content-Type."""
    assert c.answers, "the client made no request"
    for method, url, status, content_type in c.answers:
        if 200 <= status < 300:
            assert content_type and "application/json" in content_type, (method, url, status, content_type)


# Check 1: auth and discovery.


def test_sites_list_as_alice(gk, g5k_log):
    gk.answers.clear()
    assert sorted(s.uid for s in gk.sites.list()) == ["grenoble", "lille"]
    g5k_log.saw("GET", "/stable/sites", 200, "alice")
    assert_json_answers(gk)


def test_a_wrong_password_is_401(gk, g5k_log):
    wrong = client("alice", "not-a-token")
    with pytest.raises(Grid5000AuthenticationError) as e:
        wrong.sites.list()
    assert e.value.response_code == 401
    g5k_log.saw("GET", "/stable/sites", 401, "alice")


def test_a_user_name_that_is_not_the_tokens_owner_is_401(gk, g5k_log):
    # bob's name with alice's token, and alice's name with bob's.
    for user, token in (("bob", ALICE_TOKEN), ("alice", BOB_TOKEN)):
        with pytest.raises(Grid5000AuthenticationError) as e:
            client(user, token).sites["lille"]
        assert e.value.response_code == 401
        g5k_log.saw("GET", "/stable/sites/lille", 401, user)
    # The secret never reaches the log.
    assert ALICE_TOKEN not in g5k_log.path.read_text()
    assert BOB_TOKEN not in g5k_log.path.read_text()


def test_no_credentials_is_401_with_a_basic_challenge(gk, g5k_log):
    a = http("GET", "/sites", auth=None)
    assert a.status == 401, a
    assert a.headers.get("WWW-Authenticate", "").startswith("Basic"), a.headers
    assert "application/json" in a.content_type
    g5k_log.saw("GET", "/stable/sites", 401, "-")


def test_bearer_tokens_work_too(gk, g5k_log):
    a = http("GET", "/sites", auth="bearer")
    assert a.status == 200, a
    assert [s["uid"] for s in a.json()["items"]] == ["grenoble", "lille"]
    g5k_log.saw("GET", "/stable/sites", 200)


# Check 2: reference browsing.


def test_clusters_and_nodes_of_lille(gk, g5k_log):
    gk.answers.clear()
    lille = gk.sites["lille"]
    assert [c.uid for c in lille.clusters.list()] == ["chifflot"]
    nodes = gk.sites["lille"].clusters["chifflot"].nodes.list()
    assert [n.uid for n in nodes] == CHIFFLOT
    for n in nodes:
        imported = reference("lille", "chifflot", n.uid)
        assert n.architecture["nb_cores"] == imported["architecture"]["nb_cores"]
        assert n.main_memory["ram_size"] == imported["main_memory"]["ram_size"]
        assert {k: g["model"] for k, g in n.gpu_devices.items()} == {k: g["model"] for k, g in imported["gpu_devices"].items()}
        # The rest of the imported document is served unchanged.
        assert {k: v for k, v in n.attributes.items() if k not in ("links", "site", "cluster")} == imported
    assert nodes[6].gpu_devices["nvidia0"]["model"] == "Tesla V100-PCIE-32GB"
    one = gk.sites["lille"].clusters["chifflot"].nodes["chifflot-3"]
    assert one.uid == "chifflot-3"
    assert one.network_adapters == reference("lille", "chifflot", "chifflot-3")["network_adapters"]
    for path in ("/sites/lille", "/sites/lille/clusters", "/sites/lille/clusters/chifflot",
                 "/sites/lille/clusters/chifflot/nodes", "/sites/lille/clusters/chifflot/nodes/chifflot-3"):
        g5k_log.saw("GET", "/stable" + path, 200, "alice")
    assert_json_answers(gk)


def test_exotic_clusters(gk, g5k_log):
    assert gk.sites["lille"].clusters["chifflot"].exotic is False
    assert gk.sites["grenoble"].clusters["servan"].exotic is True
    g5k_log.saw("GET", "/stable/sites/lille/clusters/chifflot", 200)
    g5k_log.saw("GET", "/stable/sites/grenoble/clusters/servan", 200)


def test_unknown_site_cluster_node_are_404(gk, g5k_log):
    with pytest.raises(Grid5000GetError) as e:
        gk.sites["nowhere"]
    assert e.value.response_code == 404
    assert "nowhere" in str(e.value)
    with pytest.raises(Grid5000GetError) as e:
        gk.sites["lille"].clusters["servan"]
    assert e.value.response_code == 404
    with pytest.raises(Grid5000GetError) as e:
        gk.sites["lille"].clusters["chifflot"].nodes["servan-1"]
    assert e.value.response_code == 404
    g5k_log.saw("GET", "/stable/sites/nowhere", 404)
    g5k_log.saw("GET", "/stable/sites/lille/clusters/servan", 404)
    g5k_log.saw("GET", "/stable/sites/lille/clusters/chifflot/nodes/servan-1", 404)


def test_collections_have_total_offset_items_links(gk, g5k_log):
    for path, count in (("/sites", 2), ("/sites/lille/clusters", 1), ("/sites/grenoble/clusters", 1),
                        ("/sites/lille/clusters/chifflot/nodes", 8), ("/sites/grenoble/clusters/servan/nodes", 2)):
        a = http("GET", path)
        assert a.status == 200, (path, a)
        body = a.json()
        assert {"total", "offset", "items", "links"} <= body.keys(), (path, body.keys())
        assert body["total"] == count and len(body["items"]) == count and body["offset"] == 0, path
        assert any(link["rel"] == "self" and link["href"] == "/stable" + path for link in body["links"]), body["links"]
        g5k_log.saw("GET", "/stable" + path, 200)


def test_site_and_cluster_documents(gk, g5k_log):
    lille = http("GET", "/sites/lille").json()
    assert lille["uid"] == "lille"
    # ferrum's own network, never Grid'5000's 172.16.x addresses.
    assert lille["kavlans"]["default"] == {"network": LILLE_NETWORK, "gateway": LILLE_GATEWAY}
    assert isinstance(lille["ipv6"]["site_index"], int)
    assert {link["rel"] for link in lille["links"]} >= {"self", "parent", "clusters", "jobs", "deployments", "environments", "status", "servers"}
    grenoble = http("GET", "/sites/grenoble").json()
    assert grenoble["kavlans"]["default"] == {"network": None, "gateway": None}
    assert grenoble["ipv6"]["site_index"] != lille["ipv6"]["site_index"]
    chifflot = http("GET", "/sites/lille/clusters/chifflot").json()
    assert chifflot["model"] == "Dell Inc. PowerEdge R740"
    assert chifflot["queues"] == ["admin", "default"]
    assert isinstance(chifflot["created_at"], str) and chifflot["created_at"].endswith("GMT")
    assert {link["rel"] for link in chifflot["links"]} >= {"self", "parent", "nodes", "status"}
    root = http("GET", "/").json()
    assert root["uid"] == "grid5000"
    g5k_log.saw("GET", "/stable/sites/lille", 200)
    g5k_log.saw("GET", "/stable/sites/grenoble", 200)
    g5k_log.saw("GET", "/stable/sites/lille/clusters/chifflot", 200)
    g5k_log.saw("GET", "/stable/", 200)


# Check 3: EnOSlib's helpers (no SSH). They read $HOME/.python-grid5000.yaml.


def test_enoslib_helpers(gk, g5k_log):
    from enoslib.infra.enos_g5k import g5k_api_utils as u

    assert u.get_all_clusters_sites() == {"chifflot": "lille", "servan": "grenoble"}
    last = reference("lille", "chifflot", "chifflot-8")
    assert u.get_cores("chifflot") == last["architecture"]["nb_cores"]
    assert u.get_memory("chifflot") == last["main_memory"]["ram_size"]
    interfaces = u.get_cluster_interfaces("chifflot")
    assert interfaces and ("eth0", "ens5f0") in interfaces
    # The boot NIC is mounted: only the others are secondary NICs.
    assert u.get_cluster_interfaces("chifflot", extra_cond=lambda nic: not nic["mounted"]) == [("eth1", "ens5f1")]
    assert u.get_dns("lille") == LILLE_DNS
    assert u.get_vlans("lille")["default"]["network"] == LILLE_NETWORK
    assert isinstance(u.get_ipv6("lille")["site_index"], int)
    for path in ("/sites", "/sites/lille/clusters", "/sites/grenoble/clusters", "/sites/lille/clusters/chifflot/nodes",
                 "/sites/lille/servers/dns", "/sites/lille"):
        g5k_log.saw("GET", "/stable" + path, 200, "alice")
