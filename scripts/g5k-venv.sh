#!/usr/bin/env bash
# The Grid'5000 acceptance tests' venv: the real, unmodified clients from
# PyPI (python-grid5000 1.2.5, EnOSlib 10.9.0 with the Ansible it pulls in)
# and pytest, every dependency pinned by tests/g5k/constraints.txt.
# Installs when missing or pinned otherwise. Sourced by scripts/g5k-test.sh,
# which reads `$g5k_venv`; can be run alone too. Needs python3 with venv.
#
# Options (environment):
#   G5K_TEST_VENV   the venv (default ~/.cache/ferrum/g5k-venv)
set -euo pipefail

g5k_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
g5k_venv="${G5K_TEST_VENV:-$HOME/.cache/ferrum/g5k-venv}"
g5k_constraints="$g5k_root/tests/g5k/constraints.txt"
g5k_pins="python-grid5000==1.2.5 enoslib==10.9.0 pytest==9.2.0 $(sha256sum "$g5k_constraints" | cut -c1-16)"

if [ "$(cat "$g5k_venv/.pins" 2>/dev/null)" != "$g5k_pins" ]; then
    echo "== installing python-grid5000, EnOSlib and pytest into $g5k_venv"
    python3 -m venv "$g5k_venv"
    "$g5k_venv/bin/pip" install -q -c "$g5k_constraints" python-grid5000==1.2.5 enoslib==10.9.0 pytest==9.2.0
    echo "$g5k_pins" > "$g5k_venv/.pins"
fi
