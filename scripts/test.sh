#!/usr/bin/env bash
# Runs every test of the workspace. The power tests talk to real BMC
# emulators, installed here when missing (root, Debian 12):
#   - OpenIPMI's ipmi_sim and ipmitool (apt: openipmi, ipmitool)
#   - sushy-tools 2.2.0 (Redfish) in a venv under ~/.cache/ferrum
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v ipmi_sim >/dev/null || ! command -v ipmitool >/dev/null; then
    echo "== installing openipmi and ipmitool"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q openipmi ipmitool
fi

venv="${FERRUM_VENV:-$HOME/.cache/ferrum/venv}"
if [ ! -x "$venv/bin/sushy-emulator" ]; then
    echo "== installing sushy-tools into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q sushy-tools==2.2.0
fi
export FERRUM_SUSHY_EMULATOR="$venv/bin/sushy-emulator"

cargo test --workspace --locked "$@"
