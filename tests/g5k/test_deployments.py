"""Acceptance check 9 of API-SUBSET §5, the failure cases that need no
lab (python-grid5000): a deployment's nodes must all be in a running
deploy job of the caller (else 403), its environment must exist (else 400
`Cannot launch deployment: ...`), and it names at least one node (else
400). The deployment itself (nodes reaching `terminated` with `OK`, root
SSH with the key) runs on the virtual lab (check 9's other rows, 11)."""

import pytest
from grid5000.exceptions import Grid5000CreateError, Grid5000GetError

from conftest import ADMIN_TOKEN, api, fqdn, http

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop"


@pytest.fixture(scope="module")
def environment():
    """A public environment in ferrum's catalogue (made by the admin)."""
    d = {"name": "jobs-tiny", "version": 1, "description": "test image", "image": "tiny.raw.zst", "format": "raw.zst",
         "sha256": "ab" * 32, "size": 50331648, "root_partition": 1, "visibility": "public"}
    status, body = api("POST", "/environments", ADMIN_TOKEN, d)
    assert status in (201, 409), body
    return d["name"]


def test_nodes_outside_a_deploy_job_of_the_caller_are_refused(gk, g5k_log, environment):
    site = gk.sites["lille"]
    with pytest.raises(Grid5000CreateError) as e:
        site.deployments.create({"nodes": [fqdn("chifflot-1", "lille")], "environment": environment, "key": KEY})
    assert e.value.response_code == 403, str(e.value)
    assert "deploy job" in str(e.value)
    g5k_log.saw("POST", "/stable/sites/lille/deployments", 403, "alice")


def test_an_unknown_environment_cannot_launch(gk, g5k_log):
    site = gk.sites["lille"]
    with pytest.raises(Grid5000CreateError) as e:
        site.deployments.create({"nodes": [fqdn("chifflot-1", "lille")], "environment": "no-such-env", "key": KEY})
    assert e.value.response_code == 400, str(e.value)
    assert "Cannot launch deployment: " in str(e.value)
    g5k_log.saw("POST", "/stable/sites/lille/deployments", 400, "alice")


def test_a_deployment_names_at_least_one_node(gk, g5k_log, environment):
    site = gk.sites["lille"]
    with pytest.raises(Grid5000CreateError) as e:
        site.deployments.create({"nodes": [], "environment": environment, "key": KEY})
    assert e.value.response_code == 400, str(e.value)
    assert "The deployment you are trying to submit is not valid: " in str(e.value)
    g5k_log.saw("POST", "/stable/sites/lille/deployments", 400, "alice")


def test_unknown_deployments_and_options_ferrum_lacks(gk, g5k_log, environment):
    site = gk.sites["lille"]
    with pytest.raises(Grid5000GetError) as e:
        site.deployments["D-99999"]
    assert e.value.response_code == 404
    assert "Couldn't find Grid5000::Deployment with ID=D-99999" in str(e.value)
    g5k_log.saw("GET", "/stable/sites/lille/deployments/D-99999", 404, "alice")
    a = http("POST", "/sites/lille/deployments", body={"nodes": [fqdn("chifflot-1", "lille")], "environment": environment, "vlan": "4"})
    assert a.status == 400 and "vlan" in a.json()["message"], a
    listed = http("GET", "/sites/lille/deployments").json()
    assert (listed["offset"], isinstance(listed["total"], int), isinstance(listed["items"], list)) == (0, True, True)
    g5k_log.saw("GET", "/stable/sites/lille/deployments", 200, "alice")
