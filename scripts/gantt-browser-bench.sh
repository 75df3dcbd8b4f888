#!/usr/bin/env bash
# The calendar page's measure (issue 19, BENCHMARKS.md "Portal"): the
# `gantt` bench (1,000 nodes, 5,000 leases over two weeks, in SQLite)
# times the page on the server and writes the admin's month page; then
# Chromium (Playwright, tests/web/gantt_bench.py) times it from navigation
# to the chart drawn, against the same page without its chart.
#
# The browser runs in a network namespace with loopback only (the page is
# served by Playwright itself). Needs root (ip netns), the venv and the
# Chromium of scripts/web-test.sh (scripts/web-venv.sh installs the venv).
#
# Options (environment): CARGO_TARGET_DIR; FERRUM_BENCH_RUNS (server runs,
# default 15); GANTT_BROWSER_RUNS (navigations, default 7);
# FERRUM_BENCH_NODES / FERRUM_BENCH_LEASES.
set -euo pipefail
# shellcheck source=scripts/root.sh
. "$(dirname "$0")/root.sh"
cd "$(dirname "$0")/.."
root=$(pwd)
venv="${WEB_TEST_VENV:-$HOME/.cache/ferrum/web-venv}"
[ -x "$venv/bin/python" ] || { echo "$venv is missing: run scripts/web-venv.sh" >&2; exit 1; }
[ -x /usr/bin/chromium ] || { echo "/usr/bin/chromium is missing: run scripts/setup.sh" >&2; exit 1; }

# shellcheck source=scripts/loopback-ns.sh
. "$root/scripts/loopback-ns.sh"
loopback_ns ferrum-gantt

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
FERRUM_GANTT_HTML="$work/calendar.html" cargo bench --locked -p ferrum-controller --bench gantt
in_ns env PYTHONDONTWRITEBYTECODE=1 "$venv/bin/python" tests/web/gantt_bench.py "$work/calendar.html" \
    controller/static/ferrum.css "${GANTT_BROWSER_RUNS:-7}"
