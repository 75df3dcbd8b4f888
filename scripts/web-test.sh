#!/usr/bin/env bash
# The web portal in a real browser (README "Tests and CI"): Debian's
# Chromium driven by Playwright (pytest, tests/web) through sign-in,
# activation, the profile's tokens and SSH keys, keyboard-only use,
# sign-out, the admin's approval queues, nodes (maintenance on and off)
# and audit log, the hardware catalog (its filter builder, a cluster, a
# node), the user's leases (a lease extended and released) and
# notifications (the start of that lease, marked read), with
# axe-core on every page (serious or critical violations
# fail) and screenshots of the main pages. Any failure fails the script.
#
# ferrumd and the browser run inside a network namespace of their own that
# has only loopback: nothing leaves the machine. Needs root (ip netns),
# python3 with venv, npm (axe-core, once), and /usr/bin/chromium
# (scripts/setup.sh installs it; never `playwright install`, LAB-NOTES §8).
#
# Options (environment):
#   WEB_TEST_VENV   the venv (default ~/.cache/ferrum/web-venv)
#   FERRUM_BIN_DIR  where ferrumd and ferrum are (default: built here)
#   WEB_TEST_SCREENSHOTS  where the screenshots go (default: a temp dir,
#                   removed after; `docs/screenshots` refreshes the README's)
# Arguments go to pytest (e.g. `-k keyboard`).
set -euo pipefail
# shellcheck source=scripts/root.sh
. "$(dirname "$0")/root.sh"
cd "$(dirname "$0")/.."
root=$(pwd)

# Pinned: the versions this script was measured with (Python 3.11,
# Chromium 156 from bookworm-security).
playwright_version=1.65.3
pytest_version=9.2.0
axe_version=4.14.1
venv="${WEB_TEST_VENV:-$HOME/.cache/ferrum/web-venv}"
pins="playwright==$playwright_version pytest==$pytest_version"
axe_dir="$HOME/.cache/ferrum/axe-core-$axe_version"
chromium=/usr/bin/chromium

if [ ! -x "$chromium" ]; then
    echo "$chromium is missing: run scripts/setup.sh (Debian's chromium package)" >&2
    exit 1
fi
if [ "$(cat "$venv/.pins" 2>/dev/null)" != "$pins" ]; then
    echo "== installing $pins into $venv"
    python3 -m venv "$venv"
    # shellcheck disable=SC2086
    "$venv/bin/pip" install -q $pins
    echo "$pins" > "$venv/.pins"
fi
if [ ! -s "$axe_dir/node_modules/axe-core/axe.min.js" ]; then
    echo "== installing axe-core $axe_version into $axe_dir"
    npm install --silent --no-audit --no-fund --prefix "$axe_dir" "axe-core@$axe_version"
fi

# shellcheck source=scripts/loopback-ns.sh
. "$root/scripts/loopback-ns.sh"
ferrum_bins

loopback_ns ferrum-web

# A free port: the namespace is new, but ask its kernel all the same.
port=$(in_ns "$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
addr="127.0.0.1:$port"
url="http://$addr"
# Sign-in throttling per account (default burst 5) would count the suite's
# sign-ins as alice; the throttle itself is tested in controller/tests/it.
# A low approval threshold: the admin's queue test asks for a large lease.
cat > "$work/ferrumd.toml" <<EOF
[web]
login_burst_per_account = 50
login_burst_per_address = 50
[policy]
approval_threshold_node_hours = 10
approval_notice = "1h"
EOF
# Not through in_ns: a function in the background is a subshell, and $! its PID.
ip netns exec "$ns" "$FERRUM_BIN_DIR/ferrumd" --config "$work/ferrumd.toml" --listen "$addr" --data-dir "$work/data" > "$work/ferrumd.log" 2>&1 &
pid=$! # ip netns exec execs ferrumd: this is its PID

echo "== web portal in Chromium (tests/web, ferrumd at $url)"
started=$SECONDS
rc=0
in_ns env PYTHONDONTWRITEBYTECODE=1 FERRUM_URL="$url" FERRUM_DATA_DIR="$work/data" FERRUM_BIN_DIR="$FERRUM_BIN_DIR" \
    FERRUMD_PID="$pid" AXE_JS="$axe_dir/node_modules/axe-core/axe.min.js" CHROMIUM="$chromium" \
    SCREENSHOT_DIR="${WEB_TEST_SCREENSHOTS:-$work/screenshots}" \
    "$venv/bin/python" -m pytest -p no:cacheprovider -q tests/web "$@" || rc=$?
echo "== web portal in Chromium: $((SECONDS - started)) s (exit $rc)"
if [ "$rc" != 0 ]; then
    echo "ferrumd's log (last 50 lines):" >&2
    tail -n 50 "$work/ferrumd.log" >&2
fi
exit "$rc"
