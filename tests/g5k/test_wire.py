"""API-SUBSET §5, check 12: wire hygiene (raw HTTP), and a bounded sweep
of bad input over the read routes: never a 5xx, always a JSON error with
a `message` and no `error` key."""

import datetime
import itertools
import urllib.parse
from zoneinfo import ZoneInfo

from conftest import ALICE_TOKEN, api, http

# Every read route of this side of the API, with good names.
GOOD = [
    "/",
    "/sites",
    "/sites/lille",
    "/sites/lille/clusters",
    "/sites/lille/clusters/chifflot",
    "/sites/lille/clusters/chifflot/nodes",
    "/sites/lille/clusters/chifflot/nodes/chifflot-1",
    "/sites/lille/servers",
    "/sites/lille/servers/dns",
    "/sites/lille/status",
    "/sites/lille/clusters/chifflot/status",
    "/sites/lille/environments",
]
ITEMS = ["/", "/sites/lille", "/sites/lille/clusters/chifflot", "/sites/lille/clusters/chifflot/nodes/chifflot-1",
         "/sites/lille/servers/dns"]


def assert_error_shape(a, status):
    assert a.status == status, a
    assert "application/json" in a.content_type, a
    body = a.json()
    assert "error" not in body, body
    assert body["code"] == status and body["message"] and body["title"], body


def test_a_get_with_a_json_content_type_and_no_body(g5k_log):
    for path in GOOD:
        a = http("GET", path, headers={"Content-Type": "application/json"}, raw_body=None)
        assert a.status == 200, (path, a)
        assert "application/json" in a.content_type, (path, a)
        g5k_log.saw("GET", "/stable" + path, 200, "alice")


def test_unknown_query_parameters_are_ignored(g5k_log):
    query = "?deep=1&branch=master&pretty=yes&version=abc&queues=all&job_details=no&disks=no&waiting=no&network_address=x&resources=yes&zzz"
    for path in GOOD:
        plain, odd = http("GET", path), http("GET", path + query)
        assert odd.status == 200, (path, odd)
        # Same document, but for the status' time stamp.
        p, o = plain.json(), odd.json()
        p.pop("uid", None) if "nodes" in p else None
        o.pop("uid", None) if "nodes" in o else None
        assert p == o, path
        g5k_log.saw("GET", "/stable" + path, 200)


def test_items_link_to_themselves_and_their_parent_under_stable(g5k_log):
    for path in ITEMS:
        links = {link["rel"]: link for link in http("GET", path).json()["links"]}
        assert links["self"]["href"] == "/stable" + (path if path != "/" else "/"), (path, links)
        assert links["self"]["type"] == "application/vnd.grid5000.item+json"
        if path != "/":
            assert links["parent"]["href"].startswith("/stable"), (path, links)
        for link in links.values():
            assert link["href"].startswith("/stable/"), (path, link)
        g5k_log.saw("GET", "/stable" + path, 200)


def test_errors_are_json_with_a_message_and_no_error_key(g5k_log):
    assert_error_shape(http("GET", "/sites/nowhere"), 404)
    assert_error_shape(http("GET", "/no/such/route"), 404)
    assert_error_shape(http("GET", "/sites", auth=None), 401)
    assert_error_shape(http("GET", "/sites", token="wrong"), 401)
    # A method a read route does not take: 405, JSON, Content-Type set.
    for method in ("POST", "PUT", "DELETE"):
        a = http(method, "/sites/lille", body={} if method != "DELETE" else None)
        assert_error_shape(a, 405)
        g5k_log.saw(method, "/stable/sites/lille", 405)
    g5k_log.saw("GET", "/stable/no/such/route", 404)


def test_a_read_only_token_may_read_but_not_write(g5k_log):
    status, created = api("POST", "/users/alice/tokens", ALICE_TOKEN, {"name": "ro", "read_only": True})
    assert status == 201, (status, created)
    ro = created["token"]
    assert http("GET", "/sites", token=ro).status == 200
    a = http("POST", "/sites/lille/jobs", token=ro, body={"resources": "nodes=1", "command": "sleep 1"})
    assert_error_shape(a, 403)
    assert "read-only" in a.json()["message"]
    g5k_log.saw("POST", "/stable/sites/lille/jobs", 403, "alice")


# A bounded sweep of bad input: odd names in every path segment, odd
# query values, odd bodies on POST. Nothing may answer 5xx (clients retry
# 500, 502 and 504 five times), and every error is this API's shape.
ODD = ["nowhere", "%00", "..", "%2e%2e", "a%2Fb", "%ff%fe", "x" * 300, "%C3%A9", "%20", "1e309", "-1", "_count", "lille.", "'--", "%25"]


def test_bad_input_sweep_never_5xx(g5k_log):
    templates = [
        "/sites/{}", "/sites/{}/clusters", "/sites/lille/clusters/{}", "/sites/{}/clusters/chifflot/nodes",
        "/sites/lille/clusters/{}/nodes", "/sites/lille/clusters/chifflot/nodes/{}", "/sites/{}/servers/dns",
        "/sites/lille/servers/{}", "/sites/{}/status", "/sites/lille/clusters/{}/status", "/sites/{}/environments",
        "/sites/lille/environments/{}",
    ]
    seen = 0
    for template, odd in itertools.product(templates, ODD):
        a = http("GET", template.format(odd))
        assert a.status < 500, (template, odd, a)
        if a.status >= 400:
            assert_error_shape(a, a.status)
        seen += 1
    for path, (key, value) in itertools.product(GOOD, [("latest_only", "maybe"), ("name", "%00"), ("arch", "x" * 5000),
                                                       ("user", "'"), ("offset", "-1"), ("limit", "1e99")]):
        a = http("GET", f"{path}?{key}={urllib.parse.quote(value)}")
        assert a.status < 500, (path, key, a)
        if a.status >= 400:
            assert_error_shape(a, a.status)
        seen += 1
    for body in (b"", b"{", b"[]", b"null", b"\xff", b'{"a": 1}'):
        a = http("POST", "/sites/lille", raw_body=body, headers={"Content-Type": "application/json"})
        assert a.status < 500, (body, a)
        assert_error_shape(a, a.status)
        seen += 1
    assert seen == len(templates) * len(ODD) + len(GOOD) * 6 + 6
    g5k_log.saw("GET", "/stable/sites/nowhere", 404)


# The write routes' bodies, field by field: each field of a valid job (a
# reservation for tomorrow, cancelled at once if accepted) and of a
# deployment takes odd values. Never a 5xx; every refusal in this API's
# shape; an accepted job is deleted before it starts (no job of the sweep
# starts now: the nodes have no BMC to be reset with afterwards).
ODD_VALUES = [None, 0, -1, 1e309, 2**70, "", " ", "x" * 10000, "\u0000", "\u202e", [], ["x"], {}, {"a": 1}, True, "now,now",
              "{", "nodes=0", "nodes=99999999999", "walltime=99999999:00:00", "+", "{cluster='chifflot'}/nodes=1+"]


def test_bad_bodies_on_the_write_routes_never_5xx(g5k_log):
    day = datetime.datetime.now(ZoneInfo("Europe/Paris")).date() + datetime.timedelta(days=1)
    job = {"resources": "nodes=1,walltime=0:10", "reservation": f"{day} 15:00:00", "command": "sleep 1", "name": "sweep",
           "types": ["origin=sweep"], "queue": "default", "properties": "exotic='NO'", "walltime": "0:10"}
    deployment = {"nodes": ["chifflot-1.lille.x"], "environment": "nowhere", "key": "ssh-ed25519 AAAA x", "version": 1}
    seen = 0
    for (route, valid), key, value in itertools.chain(
        itertools.product([("/sites/lille/jobs", job)], job, ODD_VALUES),
        itertools.product([("/sites/lille/deployments", deployment)], deployment, ODD_VALUES),
    ):
        if key == "reservation" and value in (None, "", " ", "now,now"):
            # As soon as possible: the node would run the job, and without
            # a BMC here it could not be reset after it.
            continue
        body = {**valid, key: value}
        a = http("POST", route, body=body)
        assert a.status < 500, (route, key, value, a)
        if a.status >= 400:
            assert_error_shape(a, a.status)
        elif route.endswith("/jobs"):
            assert a.status == 201, (key, value, a)
            assert http("DELETE", f"/sites/lille/jobs/{a.json()['uid']}").status == 202
        seen += 1
    for value in ODD_VALUES:
        a = http("POST", "/sites/lille/jobs/1/walltime", body={"walltime": value})
        assert a.status < 500, (value, a)
        seen += 1
    assert seen == (len(job) + len(deployment) + 1) * len(ODD_VALUES) - 4
    g5k_log.saw("POST", "/stable/sites/lille/jobs")
