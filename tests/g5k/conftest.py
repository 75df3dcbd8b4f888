"""The Grid'5000 API (`/stable`) with the real clients: fixtures.

scripts/g5k-test.sh starts ferrumd (inside a loopback-only network
namespace, with JSON log lines), imports fixtures/g5k-reference, makes
users alice and bob (project p-g5k), writes $HOME/.python-grid5000.yaml
(alice and her token) in a temp HOME, and runs pytest there with:
  FERRUM_URL          ferrumd, http://127.0.0.1:PORT
  G5K_URL             the Grid'5000 API, FERRUM_URL + /stable
  FERRUM_DATA_DIR     ferrumd's data dir
  FERRUM_BIN_DIR      where the ferrum CLI is
  FERRUMD_PID         ferrumd's PID
  FERRUMD_LOG         ferrumd's log (JSON lines)
  FERRUM_ADMIN_TOKEN, ALICE_TOKEN, BOB_TOKEN   API tokens
  G5K_DOMAIN          the sites' DNS domain (`[sites.NAME] domain`)
  G5K_LILLE_NETWORK, G5K_LILLE_GATEWAY, G5K_LILLE_DNS   lille's `[sites.lille]`

Every test checks that ferrumd's log saw its requests (`g5k_log.saw`):
python-grid5000 silently falls back to the public Grid'5000 API when its
configuration is broken (the namespace has no route there anyway).
"""

import json
import os
import time
import urllib.error
import urllib.request
import base64
from pathlib import Path

import pytest

FERRUM_URL = os.environ["FERRUM_URL"]
G5K_URL = os.environ["G5K_URL"]
FERRUMD_LOG = Path(os.environ["FERRUMD_LOG"])
ADMIN_TOKEN = os.environ["FERRUM_ADMIN_TOKEN"]
ALICE_TOKEN = os.environ["ALICE_TOKEN"]
BOB_TOKEN = os.environ["BOB_TOKEN"]
DOMAIN = os.environ["G5K_DOMAIN"]
LILLE_NETWORK = os.environ["G5K_LILLE_NETWORK"]
LILLE_GATEWAY = os.environ["G5K_LILLE_GATEWAY"]
LILLE_DNS = os.environ["G5K_LILLE_DNS"]
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "g5k-reference"

# The reference fixtures' nodes.
CHIFFLOT = [f"chifflot-{i}" for i in range(1, 9)]
SERVAN = ["servan-1", "servan-2"]


def fqdn(node, site):
    return f"{node}.{site}.{DOMAIN}"


def reference(site, cluster, node):
    """A node's imported JSON, as the fixture file has it."""
    return json.loads((FIXTURES / "sites" / site / "clusters" / cluster / "nodes" / f"{node}.json").read_text())


class Answer:
    """One raw HTTP answer: status, headers, body bytes, parsed JSON."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def content_type(self):
        return self.headers.get("Content-Type", "")

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.status} {self.content_type} {self.body[:300]!r}>"


def http(method, path, *, user="alice", token=ALICE_TOKEN, auth="basic", body=None, raw_body=None, headers=None, base=G5K_URL):
    """A raw request under `base` (the Grid'5000 API by default): HTTP
    Basic as `user` with `token` (`auth="bearer"`: a Bearer token;
    `auth=None`: none). `body` is sent as JSON, `raw_body` as is. Never
    raises on 4xx/5xx."""
    req = urllib.request.Request(base + path, method=method)
    if auth == "basic":
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode())
    elif auth == "bearer":
        req.add_header("Authorization", f"Bearer {token}")
    data = raw_body
    if body is not None:
        data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, data=data, timeout=30) as r:
            return Answer(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        return Answer(e.code, e.headers, e.read())


def api(method, path, token, body=None):
    """ferrum's own API (`/api/v1`), Bearer token; (status, JSON or None)."""
    a = http(method, path, token=token, auth="bearer", body=body, base=FERRUM_URL + "/api/v1")
    return a.status, (a.json() if a.body else None)


class G5kLog:
    """ferrumd's `ferrum::g5k` access lines written since a test began."""

    def __init__(self, path):
        self.path = path
        self.start = path.stat().st_size

    def lines(self):
        """(method, path, status, user) of each access line since the start."""
        with open(self.path, "rb") as f:
            f.seek(self.start)
            text = f.read().decode(errors="replace")
        out = []
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("target") != "ferrum::g5k":
                continue
            fields = entry.get("fields", {})
            out.append((fields.get("method"), fields.get("path"), fields.get("status"), fields.get("user")))
        return out

    def saw(self, method, path, status=None, user=None):
        """Asserts that ferrumd logged `method path` (the path under
        /stable, without the query) since the test began, with `status`
        and `user` when given. The line is written before the answer is
        sent; the short deadline only covers the log file's buffering."""
        deadline = time.monotonic() + 5
        while True:
            for m, p, s, u in self.lines():
                if m == method and p == path and status in (None, s) and user in (None, u):
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"ferrumd's log did not see {method} {path} (status {status}, user {user}); it saw {self.lines()}")
            # Paces a log probe bounded by the deadline above.
            time.sleep(0.05)


@pytest.fixture
def g5k_log():
    """The access lines of this test's requests: `g5k_log.saw(method, path)`."""
    return G5kLog(FERRUMD_LOG)


@pytest.fixture(scope="session")
def nodes_ready():
    """Until every imported node is available (the clock loop enrols
    them; they have no BMC, so enrolment is a check of the records only);
    deadline 60 s."""
    deadline = time.monotonic() + 60
    while True:
        status, nodes = api("GET", "/nodes", ADMIN_TOKEN)
        assert status == 200, status
        states = {n["name"]: n["state"] for n in nodes}
        if len(states) == 10 and all(s == "available" for s in states.values()):
            return states
        assert time.monotonic() < deadline, f"nodes not available within 60 s: {states}"
        # Paces a state probe bounded by the deadline above (the clock
        # loop announces nothing).
        time.sleep(0.2)


@pytest.fixture(scope="session")
def gk(nodes_ready):
    """python-grid5000's client as alice, from $HOME/.python-grid5000.yaml
    (the file EnOSlib reads too)."""
    from grid5000 import Grid5000

    client = Grid5000.from_yaml(os.path.join(os.environ["HOME"], ".python-grid5000.yaml"))
    assert client._uri == G5K_URL, f"the client is not pointed at ferrum: {client._uri}"
    record(client)
    return client


def record(client):
    """Keeps every answer `client` gets in `client.answers` (method, URL,
    status, Content-Type), by wrapping its session's `send` (the client
    prepares its requests without the session, so session hooks never
    run)."""
    client.answers = []
    send = client.session.send

    def recording_send(request, **kwargs):
        r = send(request, **kwargs)
        client.answers.append((request.method, r.url, r.status_code, r.headers.get("Content-Type")))
        return r

    client.session.send = recording_send
    return client


def client(username, password):
    """A python-grid5000 client with these credentials (the same file as
    the HOME one otherwise)."""
    from grid5000 import Grid5000

    return record(Grid5000(uri=G5K_URL, username=username, password=password, verify_ssl=False))


# The read-only checks first: they expect the nodes free (check 4 wants
# every chifflot node `free` with no reservation), before any test that
# makes jobs. Within a file, the file's order.
FIRST = ["test_reference.py", "test_status.py", "test_environments.py", "test_wire.py"]


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: FIRST.index(item.path.name) if item.path.name in FIRST else len(FIRST))
