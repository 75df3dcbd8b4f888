"""API-SUBSET §5, check 4: node status (cluster and site), as
python-grid5000 lists it and EnOSlib's `can_start_on_cluster` reads it,
with another user's reservation (made through ferrum's own API as bob)."""

import datetime

import pytest

from conftest import BOB_TOKEN, CHIFFLOT, SERVAN, api, fqdn, http

CHIFFLOT_FQDNS = sorted(fqdn(n, "lille") for n in CHIFFLOT)


def test_free_nodes(gk, g5k_log):
    gk.answers.clear()
    status = gk.sites["lille"].clusters["chifflot"].status.list()
    assert sorted(status.nodes) == CHIFFLOT_FQDNS
    for name, s in status.nodes.items():
        assert (s["hard"], s["soft"], s["reservations"]) == ("alive", "free", []), (name, s)
        assert s["free_slots"] == 24 and s["busy_slots"] == 0, (name, s)
    assert isinstance(status.uid, int)
    g5k_log.saw("GET", "/stable/sites/lille/clusters/chifflot/status", 200, "alice")
    for method, url, code, content_type in gk.answers:
        assert "application/json" in content_type, (method, url, code, content_type)


@pytest.fixture
def bobs_reservation():
    """bob's lease of chifflot-1..8 for [T0, T0 + 1 h), T0 two hours from
    now on a whole minute, through /api/v1 as bob; cancelled after (it
    never starts, so the nodes stay available)."""
    t0 = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=2)).replace(second=0, microsecond=0)
    status, lease = api("POST", "/leases", BOB_TOKEN, {"nodes": {"names": CHIFFLOT}, "start": t0.isoformat(), "duration": "1h", "name": "bobs"})
    assert status == 201, (status, lease)
    yield int(t0.timestamp()), lease
    status, _ = api("DELETE", f"/leases/{lease['id']}", BOB_TOKEN)
    assert status == 200, status


def test_another_users_reservation(gk, g5k_log, bobs_reservation):
    from enoslib.infra.enos_g5k.g5k_api_utils import can_start_on_cluster

    t0, lease = bobs_reservation
    for status, path in (
        (gk.sites["lille"].clusters["chifflot"].status.list(), "/sites/lille/clusters/chifflot/status"),
        (gk.sites["lille"].status.list(), "/sites/lille/status"),
    ):
        g5k_log.saw("GET", "/stable" + path, 200, "alice")
        assert sorted(status.nodes) == CHIFFLOT_FQDNS, path
        for name, s in status.nodes.items():
            assert s["hard"] == "alive" and s["soft"] == "free", (path, name, s)
            [r] = s["reservations"]
            assert r["scheduled_at"] == t0 and r["walltime"] == 3600, r
            assert r["state"] == "waiting" and r["queue"] == "default", r
            # Not alice's: when, not who or what (SPEC §9).
            assert not {"uid", "user", "user_uid", "name", "project", "command"} & r.keys(), r
        # EnOSlib's slot test, on what the API gave.
        assert not can_start_on_cluster(status.nodes, 1, [], t0 + 600, 600)
        assert can_start_on_cluster(status.nodes, 1, [], t0 + 7200, 600)
        assert can_start_on_cluster(status.nodes, 1, [], t0 - 1200, 600)

    # bob sees his own lease's details.
    a = http("GET", "/sites/lille/clusters/chifflot/status", user="bob", token=BOB_TOKEN)
    assert a.status == 200, a
    r = a.json()["nodes"][fqdn("chifflot-1", "lille")]["reservations"][0]
    assert (r["uid"], r["user"], r["name"], r["project"]) == (lease["id"], "bob", "bobs", "p-g5k"), r
    g5k_log.saw("GET", "/stable/sites/lille/clusters/chifflot/status", 200, "bob")


def test_site_status_has_every_cluster_and_no_items(gk, g5k_log):
    for site, names in (("lille", CHIFFLOT), ("grenoble", SERVAN)):
        a = http("GET", f"/sites/{site}/status")
        assert a.status == 200, a
        body = a.json()
        # python-grid5000's status.list() would return `items` instead.
        assert "items" not in body, body.keys()
        assert {"uid", "nodes", "disks", "links"} <= body.keys()
        assert sorted(body["nodes"]) == sorted(fqdn(n, site) for n in names)
        g5k_log.saw("GET", f"/stable/sites/{site}/status", 200)
    whole = gk.sites["grenoble"].status.list()
    assert sorted(whole.nodes) == sorted(fqdn(n, "grenoble") for n in SERVAN)
    for path in ("/sites/nowhere/status", "/sites/lille/clusters/servan/status"):
        a = http("GET", path)
        assert a.status == 404, (path, a)
        g5k_log.saw("GET", "/stable" + path, 404)
