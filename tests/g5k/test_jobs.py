"""Acceptance checks 5-8 of API-SUBSET §5: OAR jobs as ferrum leases,
driven by the unmodified python-grid5000 client (and raw HTTP for the
table of resource strings).

Nodes here have no BMC: a node whose lease ran cannot be reset and turns
suspect. So only the checks that need a running job run one (check 5, two
nodes; check 7, one); every other job is a reservation for tomorrow,
placed at submission (ferrum knows the nodes then) and cancelled before it
starts. Every job a test makes is deleted by it.
"""

import datetime
import re
import time
from zoneinfo import ZoneInfo

import pytest
from grid5000.exceptions import Grid5000CreateError, Grid5000DeleteError, Grid5000GetError

from conftest import BOB_TOKEN, DOMAIN, client, fqdn, http

PARIS = ZoneInfo("Europe/Paris")
# EnOSlib's pattern (provider.G5kBase.reserve).
COULD_RUN_AT = re.compile(r"Reservation not valid --> KO \(This reservation could run at (\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})\)")
LIVE = {"waiting", "launching", "running"}


def wait_state(job, accept, seconds=30):
    """Refreshes `job` until its state is in `accept` (deadline)."""
    deadline = time.monotonic() + seconds
    while True:
        job.refresh()
        if job.state in accept:
            return job
        assert time.monotonic() < deadline, f"job {job.uid} stayed {job.state}, not in {accept}"
        # Paces a state probe bounded by the deadline above.
        time.sleep(0.2)


def tomorrow_at(hour):
    """Tomorrow (Paris date) at `hour`:00:00 Paris, as OAR text and epoch."""
    day = datetime.datetime.now(PARIS).date() + datetime.timedelta(days=1)
    local = datetime.datetime(day.year, day.month, day.day, hour, 0, 0, tzinfo=PARIS)
    return local.strftime("%Y-%m-%d %H:%M:%S"), int(local.timestamp())


def end(job):
    """Deletes a job unless it is over already."""
    job.refresh()
    if job.state in LIVE:
        job.delete()


# The order matters (pytest keeps it within a file): the checks that only
# reserve tomorrow come first, while all 8 chifflot nodes can be offered;
# then the two that run a job (their nodes turn suspect after).


def test_advance_reservation_and_refusal(gk, g5k_log):
    site = gk.sites["lille"]
    at, epoch = tomorrow_at(10)
    job = site.jobs.create({"name": "resa", "resources": "nodes=1", "reservation": at, "command": "sleep 3600"})
    try:
        assert job.state == "waiting"
        assert job.scheduled_at == epoch
        g5k_log.saw("POST", "/stable/sites/lille/jobs", 201, "alice")
        # All 8 nodes at the same time: OAR's refusal, with ferrum's
        # earliest start (after the first job's hour) in Paris time.
        with pytest.raises(Grid5000CreateError) as e:
            site.jobs.create({"resources": "{cluster='chifflot'}/nodes=8,walltime=1", "reservation": at, "command": "sleep 1"})
        m = COULD_RUN_AT.search(str(e.value))
        assert m, str(e.value)
        assert m.group(1) == tomorrow_at(11)[0]
        g5k_log.saw("POST", "/stable/sites/lille/jobs", 400, "alice")
    finally:
        end(job)
    past = (datetime.datetime.now(PARIS) - datetime.timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")
    with pytest.raises(Grid5000CreateError) as e:
        site.jobs.create({"resources": "nodes=1", "reservation": past, "command": "sleep 1"})
    assert "Reservation too old" in str(e.value)
    with pytest.raises(Grid5000CreateError) as e:
        site.jobs.create({"resources": "nodes=1", "reservation": 1720, "command": "sleep 1"})
    assert e.value.response_code == 400
    assert "`reservation` should be a String." in str(e.value)


# Check 8: (body, nodes expected or None, text the 400 names or None). Reservations for tomorrow: placed, then cancelled.
def resource_rows():
    gpu = [fqdn("chifflot-7", "lille"), fqdn("chifflot-8", "lille")]
    return [
        ({"resources": "nodes=1"}, 1, None),
        ({"resources": "{gpu_model like 'Tesla V100%'}/nodes=2,walltime=1:00:00"}, gpu, None),
        ({"resources": "nodes=1", "properties": "cluster='chifflot' AND exotic='NO'"}, 1, None),
        ({"resources": "{cluster='chifflot'}/nodes=1+{cluster='chifflot'}/nodes=1"}, 2, None),
        ({"resources": f"{{network_address in ('{fqdn('chifflot-3', 'lille')}')}}/nodes=1"}, [fqdn("chifflot-3", "lille")], None),
        ({"resources": "core=4"}, None, "'core=4'"),
        ({"resources": "slash_22=1"}, None, "subnets are not supported"),
        ({"resources": "{type='kavlan'}/vlan=1"}, None, "KaVLAN is not supported"),
        ({"resources": "switch=1/nodes=2"}, None, "switch groups are not supported"),
        ({"resources": "{no_such_property='x'}/nodes=1"}, None, "no_such_property"),
    ]


@pytest.mark.parametrize("body,nodes,named", resource_rows())
def test_oar_resource_translation(nodes_ready, g5k_log, body, nodes, named):
    at, _ = tomorrow_at(16)
    a = http("POST", "/sites/lille/jobs", body={**body, "reservation": at, "command": "sleep 1"})
    g5k_log.saw("POST", "/stable/sites/lille/jobs", a.status, "alice")
    if named is not None:
        assert a.status == 400, a
        assert named in a.json()["message"], a
        return
    assert a.status == 201, a
    job = a.json()
    try:
        if isinstance(nodes, int):
            assert len(set(job["assigned_nodes"])) == nodes
            assert all(n.startswith("chifflot-") for n in job["assigned_nodes"]), job
        else:
            assert sorted(job["assigned_nodes"]) == nodes
        if body["resources"] == "nodes=1":
            assert job["walltime"] == 3600
    finally:
        assert http("DELETE", f"/sites/lille/jobs/{job['uid']}").status == 202


def test_exotic_nodes_only_with_the_exotic_type_and_types_echoed(nodes_ready, g5k_log):
    at, _ = tomorrow_at(18)
    refused = http("POST", "/sites/grenoble/jobs", body={"resources": "nodes=1", "reservation": at, "command": "sleep 1"})
    assert refused.status == 400, refused
    g5k_log.saw("POST", "/stable/sites/grenoble/jobs", 400, "alice")
    a = http("POST", "/sites/grenoble/jobs", body={"resources": "nodes=1", "types": ["exotic", "origin=x"], "reservation": at, "command": "sleep 1"})
    assert a.status == 201, a
    job = a.json()
    try:
        assert job["assigned_nodes"][0].startswith("servan-")
        assert job["types"] == ["exotic", "origin=x"]
        again = http("GET", f"/sites/grenoble/jobs/{job['uid']}").json()
        assert again["types"] == ["exotic", "origin=x"]
        g5k_log.saw("GET", f"/stable/sites/grenoble/jobs/{job['uid']}", 200, "alice")
    finally:
        assert http("DELETE", f"/sites/grenoble/jobs/{job['uid']}").status == 202


def test_job_lifecycle(gk, g5k_log):
    site = gk.sites["lille"]
    job = site.jobs.create(
        {"name": "t", "resources": "{cluster='chifflot'}/nodes=2,walltime=0:10", "command": "sleep 3600", "types": ["deploy"]}
    )
    created = [a for a in gk.answers if a[0] == "POST" and a[1].endswith("/stable/sites/lille/jobs")][-1]
    assert created[2] == 201 and "application/json" in created[3], created
    assert isinstance(job.uid, int)
    assert job.state in LIVE
    g5k_log.saw("POST", "/stable/sites/lille/jobs", 201, "alice")
    try:
        wait_state(job, {"running"})
        assert len(job.assigned_nodes) == 2
        assert all(n.startswith("chifflot-") and n.endswith(f".lille.{DOMAIN}") for n in job.assigned_nodes), job.assigned_nodes
        assert isinstance(job.resources_by_type, dict)
        assert job.types == ["deploy"]
        assert job.walltime == 600
        assert isinstance(job.started_at, int) and job.started_at > 0
        g5k_log.saw("GET", f"/stable/sites/lille/jobs/{job.uid}", 200, "alice")
    finally:
        job.delete()
    deleted = [a for a in gk.answers if a[0] == "DELETE"][-1]
    assert deleted[2] == 202, deleted
    g5k_log.saw("DELETE", f"/stable/sites/lille/jobs/{job.uid}", 202, "alice")
    wait_state(job, {"finishing", "error", "terminated"})
    with pytest.raises(Grid5000DeleteError) as e:
        job.delete()
    assert "This job was already killed" in str(e.value)
    g5k_log.saw("DELETE", f"/stable/sites/lille/jobs/{job.uid}", 400, "alice")
    with pytest.raises(Grid5000GetError) as e:
        site.jobs[99999]
    assert e.value.response_code == 404
    g5k_log.saw("GET", "/stable/sites/lille/jobs/99999", 404)


def test_filters_and_listing(gk, g5k_log):
    site = gk.sites["lille"]
    at, _ = tomorrow_at(14)
    live = site.jobs.create({"name": "t7", "resources": "nodes=1", "command": "sleep 3600"})
    ended = site.jobs.create({"name": "t7", "resources": "nodes=1", "reservation": at, "command": "sleep 1"})
    bob = client("bob", BOB_TOKEN)
    bobs = bob.sites["lille"].jobs.create({"name": "t7", "resources": "nodes=1", "reservation": at, "command": "sleep 1"})
    try:
        ended.delete()
        wait_state(ended, {"error"})
        wait_state(live, {"running"})
        found = site.jobs.list(name="t7", state="waiting,launching,running", user="alice")
        assert [j.uid for j in found] == [live.uid]
        g5k_log.saw("GET", "/stable/sites/lille/jobs", 200, "alice")
        running = site.jobs.list(state="running")
        assert live.uid in [j.uid for j in running]
        assert all(j.state == "running" for j in running)
        # Paging (raw HTTP): total, offset, one item.
        everything = http("GET", "/sites/lille/jobs?name=t7").json()
        assert everything["total"] == 2 and len(everything["items"]) == 2  # alice's two; bob's is not hers
        page = http("GET", "/sites/lille/jobs?name=t7&offset=1&limit=1").json()
        assert (page["total"], page["offset"], len(page["items"])) == (2, 1, 1)
        assert page["items"][0]["uid"] == everything["items"][1]["uid"]
        assert http("GET", "/sites/lille/jobs?limit=501").status == 400
    finally:
        end(live)
        end(bobs)
