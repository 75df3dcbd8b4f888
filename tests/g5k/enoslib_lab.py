"""EnOSlib's Grid'5000 provider, unmodified, against a ferrum lab
(API-SUBSET §5 check 11): run by the lab test `e2e::g5k` inside the lab's
network namespace, with HOME holding the `.python-grid5000.yaml` that
points at the lab's ferrumd. The names `<node>.lille.ferrum.internal`
resolve there (the lab's hosts file) and the nodes are reachable.

Usage: enoslib_lab.py init|destroy ENV PUBLIC_KEY
Prints one JSON line: the hosts' addresses, what `hostname` printed on
each as root (through Ansible), and the networks.
"""

import json
import logging
import sys

import enoslib as en

mode, env_name, public_key = sys.argv[1:4]
logging.basicConfig(level=logging.WARNING)
# Not through access.grid5000.fr: the lab's nodes are reached directly.
en.set_config(g5k_auto_jump=False)
conf = (
    en.G5kConf.from_settings(job_name="acc", job_type=["deploy"], env_name=env_name, walltime="00:30:00", key=public_key)
    .add_machine(roles=["r"], cluster="chifflot", nodes=2)
    .finalize()
)
provider = en.G5k(conf)
if mode == "destroy":
    provider.destroy(wait=True)
    print(json.dumps({"destroyed": True}))
    sys.exit(0)

roles, networks = provider.init()
hosts = roles["r"]
results = en.run_command("hostname", roles=roles)
nets = {}
for role, items in networks.items():
    nets[role] = [{"network": str(getattr(n, "network", "")), "gateway": str(getattr(n, "gateway", ""))} for n in items]
print(
    json.dumps(
        {
            "addresses": sorted(h.address for h in hosts),
            "hostnames": sorted(r.stdout.strip() for r in results),
            "networks": nets,
        }
    )
)
