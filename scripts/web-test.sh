#!/usr/bin/env bash
# The web portal in a real browser (README "Tests and CI"): Debian's
# Chromium driven by Playwright (pytest, tests/web) through sign-in,
# activation, the profile's tokens, SSH keys and personal-data download,
# keyboard-only use, sign-out, the admin's approval queues, nodes (maintenance on and off)
# and audit log, the hardware catalog (its filter builder, a cluster, a
# node), the booking page, the user's leases (a lease extended and
# released), notifications (the start of that lease, marked read) and a
# student's whole path (account request, mails caught by aiosmtpd,
# approval, a slot of 2 V100 nodes booked, extended, released), with
# axe-core on every page (serious or critical violations
# fail) and screenshots of the main pages. Any failure fails the script.
#
# ferrumd and the browser run inside a network namespace of their own that
# has only loopback: nothing leaves the machine. Needs root (ip netns),
# python3 with venv and npm (scripts/web-venv.sh: the venv and axe-core,
# pinned, installed once), aiosmtpd (scripts/test.sh's, or installed here
# into the web venv), and /usr/bin/chromium (scripts/setup.sh installs it;
# never `playwright install`, LAB-NOTES §8).
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

chromium=/usr/bin/chromium
if [ ! -x "$chromium" ]; then
    echo "$chromium is missing: run scripts/setup.sh (Debian's chromium package)" >&2
    exit 1
fi
# The venv (Playwright, pytest) and axe-core, pinned there: `$web_venv`, `$axe_js`.
# shellcheck source=scripts/web-venv.sh
. "$root/scripts/web-venv.sh"
# The mail scenario's SMTP server: the controller tests' (scripts/test.sh),
# else the same pinned version in the web venv.
aiosmtpd="${FERRUM_AIOSMTPD:-$HOME/.cache/ferrum/venv/bin/aiosmtpd}"
if [ ! -x "$aiosmtpd" ]; then
    aiosmtpd="$web_venv/bin/aiosmtpd"
    if [ ! -x "$aiosmtpd" ]; then
        echo "== installing aiosmtpd into $web_venv"
        "$web_venv/bin/pip" install -q aiosmtpd==1.4.6
    fi
fi

# shellcheck source=scripts/loopback-ns.sh
. "$root/scripts/loopback-ns.sh"
ferrum_bins

loopback_ns ferrum-web

# A free port: the namespace is new, but ask its kernel all the same.
port=$(in_ns "$web_venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
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
    FERRUMD_PID="$pid" AIOSMTPD="$aiosmtpd" AXE_JS="$axe_js" CHROMIUM="$chromium" \
    SCREENSHOT_DIR="${WEB_TEST_SCREENSHOTS:-$work/screenshots}" \
    "$web_venv/bin/python" -m pytest -p no:cacheprovider -q tests/web "$@" || rc=$?
echo "== web portal in Chromium: $((SECONDS - started)) s (exit $rc)"
if [ "$rc" != 0 ]; then
    echo "ferrumd's log (last 50 lines):" >&2
    tail -n 50 "$work/ferrumd.log" >&2
fi
exit "$rc"
