#!/usr/bin/env bash
# Runs every test of the workspace. Tests talk to real peers, installed
# here when missing (root, Debian 12):
#   - OpenIPMI's ipmi_sim and ipmitool (apt: openipmi, ipmitool)
#   - sushy-tools 2.2.0 (Redfish) in a venv under ~/.cache/ferrum
#   - TFTP clients: atftp, tftp-hpa, curl
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages of the real peers: BMC emulators, TFTP clients.
missing=()
for pair in ipmi_sim:openipmi ipmitool:ipmitool atftp:atftp tftp:tftp-hpa curl:curl; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q "${missing[@]}"
fi

venv="${FERRUM_VENV:-$HOME/.cache/ferrum/venv}"
if [ ! -x "$venv/bin/sushy-emulator" ]; then
    echo "== installing sushy-tools into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q sushy-tools==2.2.0
fi
export FERRUM_SUSHY_EMULATOR="$venv/bin/sushy-emulator"

cargo test --workspace --locked "$@"
