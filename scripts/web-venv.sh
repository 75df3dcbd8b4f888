#!/usr/bin/env bash
# The browser tests' Python venv and axe-core, pinned here only: installs
# them when missing or pinned otherwise. Sourced by scripts/test.sh (before
# `cargo test`: the virtual lab's full-loop test drives Chromium with this
# venv, tests/web/lab_progress.py) and scripts/web-test.sh, which read
# `$web_venv` and `$axe_js`; can be run alone too. Needs python3 with venv
# and npm; Chromium itself is Debian's (scripts/setup.sh; never
# `playwright install`, LAB-NOTES §8).
#
# Options (environment):
#   WEB_TEST_VENV   the venv (default ~/.cache/ferrum/web-venv)
set -euo pipefail

# Pinned: the versions the browser tests were measured with (Python 3.11,
# Chromium 156 from bookworm-security).
web_playwright_version=1.65.3
web_pytest_version=9.2.0
web_axe_version=4.14.1

web_venv="${WEB_TEST_VENV:-$HOME/.cache/ferrum/web-venv}"
web_pins="playwright==$web_playwright_version pytest==$web_pytest_version"
web_axe_dir="$HOME/.cache/ferrum/axe-core-$web_axe_version"
axe_js="$web_axe_dir/node_modules/axe-core/axe.min.js"

if [ "$(cat "$web_venv/.pins" 2>/dev/null)" != "$web_pins" ]; then
    echo "== installing $web_pins into $web_venv"
    python3 -m venv "$web_venv"
    # shellcheck disable=SC2086
    "$web_venv/bin/pip" install -q $web_pins
    echo "$web_pins" > "$web_venv/.pins"
fi
if [ ! -s "$axe_js" ]; then
    echo "== installing axe-core $web_axe_version into $web_axe_dir"
    npm install --silent --no-audit --no-fund --prefix "$web_axe_dir" "axe-core@$web_axe_version"
fi
