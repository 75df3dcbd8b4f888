"""API-SUBSET §5, check 10: environments, as Kadeploy lists them, over
ferrum's catalog (an admin's public image, bob's shared with their
project, alice's own, and bob's private one that alice must not see)."""

import pytest
from grid5000.exceptions import Grid5000GetError

from conftest import ADMIN_TOKEN, ALICE_TOKEN, BOB_TOKEN, api, http

SHA = "0" * 64


def descriptor(name, version, visibility, fmt="raw.zst"):
    return {"name": name, "version": version, "image": f"{name}.img.zst", "format": fmt, "sha256": SHA,
            "size": 1 << 30, "root_partition": 2, "visibility": visibility, "description": f"{name} for the tests"}


@pytest.fixture(scope="module")
def catalog():
    for token, d in (
        (ADMIN_TOKEN, descriptor("debian12-min", 2026120100, "public")),
        (ADMIN_TOKEN, descriptor("debian12-min", 2026120700, "public")),
        (BOB_TOKEN, descriptor("bob-shared", 3, "project", fmt="raw")),
        (BOB_TOKEN, descriptor("bob-secret", 1, "user")),
        (ALICE_TOKEN, descriptor("alice-env", 7, "user")),
    ):
        status, body = api("POST", "/environments", token, d)
        assert status == 201, (status, body)
    status, me = api("GET", "/users/me", ADMIN_TOKEN)
    assert status == 200
    return me["name"]


def test_list(gk, g5k_log, catalog):
    admin = catalog
    gk.answers.clear()
    envs = gk.sites["lille"].environments.list()
    by_uid = {e.uid: e for e in envs}
    assert sorted(by_uid) == sorted([
        f"debian12-min_x86_64_2026120100_{admin}",
        f"debian12-min_x86_64_2026120700_{admin}",
        "bob-shared_x86_64_3_bob",
        "alice-env_x86_64_7_alice",
    ])
    for e in envs:
        assert e.uid == f"{e.name}_{e.arch}_{e.version}_{e.user}"
        assert isinstance(e.version, int)
        assert e.visibility in ("public", "shared", "private")
        assert e.image["kind"] == "dd"
    assert by_uid["bob-shared_x86_64_3_bob"].visibility == "shared"
    assert by_uid["bob-shared_x86_64_3_bob"].image["compression"] == "none"
    assert by_uid["alice-env_x86_64_7_alice"].visibility == "private"
    assert by_uid[f"debian12-min_x86_64_2026120700_{admin}"].visibility == "public"
    assert by_uid[f"debian12-min_x86_64_2026120700_{admin}"].image["compression"] == "zstd"
    g5k_log.saw("GET", "/stable/sites/lille/environments", 200, "alice")
    for method, url, code, content_type in gk.answers:
        assert "application/json" in content_type, (method, url, code, content_type)


def test_filters(gk, g5k_log, catalog):
    admin = catalog
    named = gk.sites["lille"].environments.list(name="debian12-min")
    assert sorted(e.version for e in named) == [2026120100, 2026120700]
    latest = gk.sites["lille"].environments.list(name="debian12-min", latest_only="yes")
    assert [e.uid for e in latest] == [f"debian12-min_x86_64_2026120700_{admin}"]
    assert [e.uid for e in gk.sites["lille"].environments.list(user="bob")] == ["bob-shared_x86_64_3_bob"]
    assert gk.sites["lille"].environments.list(name="no-such-env") == []
    a = http("GET", "/sites/lille/environments?latest_only=perhaps")
    assert a.status == 400 and "latest_only" in a.json()["message"], a
    g5k_log.saw("GET", "/stable/sites/lille/environments", 200, "alice")
    g5k_log.saw("GET", "/stable/sites/lille/environments", 400, "alice")


def test_one_and_unknown(gk, g5k_log, catalog):
    uid = "bob-shared_x86_64_3_bob"
    e = gk.sites["grenoble"].environments[uid]
    assert (e.uid, e.name, e.version, e.user) == (uid, "bob-shared", 3, "bob")
    assert {link["rel"]: link["href"] for link in e.links}["self"] == f"/stable/sites/grenoble/environments/{uid}"
    # bob's private environment is not alice's to see: as unknown.
    for missing in ("bob-secret_x86_64_1_bob", "nothing_x86_64_1_alice"):
        with pytest.raises(Grid5000GetError) as err:
            gk.sites["lille"].environments[missing]
        assert err.value.response_code == 404
        assert str(err.value) == f"404: Cannot find environment {missing}"
        g5k_log.saw("GET", f"/stable/sites/lille/environments/{missing}", 404, "alice")
    # bob sees it.
    a = http("GET", "/sites/lille/environments/bob-secret_x86_64_1_bob", user="bob", token=BOB_TOKEN)
    assert a.status == 200 and a.json()["visibility"] == "private", a
    g5k_log.saw("GET", f"/stable/sites/grenoble/environments/{uid}", 200, "alice")
    g5k_log.saw("GET", "/stable/sites/lille/environments/bob-secret_x86_64_1_bob", 200, "bob")
