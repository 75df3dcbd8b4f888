"""sushy-tools 2.2.0 with ferrum's lab system driver.

Started by the ferrum lab supervisor with the venv's python:

    python3 ferrum_sushy.py --config FILE

It runs sushy-emulator's own Flask application (routes, Basic auth, the
templates) unchanged, with one difference: the fake driver class is
replaced, before the app first builds its systems driver, by FerrumDriver,
a subclass whose power state, reset actions and boot device are answered
and carried out by the lab supervisor (the one process that talks QMP to
the node's QEMU) through the lab's control socket, named in the
environment variable FERRUM_LAB_SOCKET. So the emulated BMC is truthful
(a guest that powered itself off reads Off) and prompt (no random 1-11 s
delay, no lost request). Names, UUIDs, NICs and boot mode stay the fake
driver's static data from the config file.
"""

import os
import socket
import sys

from sushy_tools import error
from sushy_tools.emulator import main as emulator
from sushy_tools.emulator.resources.systems import fakedriver

SOCKET = os.environ.get("FERRUM_LAB_SOCKET", "")

# Redfish ResetType -> lab control verb.
RESET_VERBS = {
    "On": "on",
    "ForceOn": "on",
    "ForceOff": "off",
    "GracefulShutdown": "soft-off",
    "GracefulRestart": "reset",
    "ForceRestart": "reset",
    "PowerCycle": "cycle",
}
BOOT_TO_LAB = {"Pxe": "pxe", "Hdd": "disk"}
BOOT_FROM_LAB = {"pxe": "Pxe", "disk": "Hdd"}


def ask(node, verb, arg=None):
    """One request to the lab supervisor; returns the answer's value."""
    line = f"{node} {verb}" + (f" {arg}" if arg else "") + "\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(30)
        conn.connect(SOCKET)
        conn.sendall(line.encode())
        answer = conn.makefile().readline().strip()
    status, _, value = answer.partition(" ")
    if status != "ok":
        raise error.FishyError(f"lab supervisor: {value or answer}")
    return value


class FerrumDriver(fakedriver.FakeDriver):
    """The fake driver's static systems, with power and boot from the VM."""

    def _node(self, identity):
        # _get raises NotFound, or AliasAccessError for a name (307).
        return self._get(identity)["name"]

    def get_power_state(self, identity):
        return "On" if ask(self._node(identity), "power") == "on" else "Off"

    def set_power_state(self, identity, state):
        verb = RESET_VERBS.get(state)
        if verb is None:
            raise error.NotSupportedError(f"Power state {state} is not supported")
        ask(self._node(identity), verb)

    def get_boot_device(self, identity):
        return BOOT_FROM_LAB.get(ask(self._node(identity), "boot"), "Hdd")

    def set_boot_device(self, identity, boot_source):
        device = BOOT_TO_LAB.get(boot_source)
        if device is None:
            raise error.BadRequest(f"Boot source {boot_source} is not supported by the ferrum lab (Pxe or Hdd)")
        ask(self._node(identity), "boot", device)


fakedriver.FakeDriver = FerrumDriver

if __name__ == "__main__":
    if not SOCKET:
        sys.exit("FERRUM_LAB_SOCKET is not set")
    sys.exit(emulator.main())
