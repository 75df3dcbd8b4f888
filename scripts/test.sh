#!/usr/bin/env bash
# Runs every test of the workspace. Tests talk to real peers, installed
# here when missing (root, Debian 12):
#   - BMC emulators: OpenIPMI's ipmi_sim and ipmitool; sushy-tools 2.2.0
#     (Redfish) in a venv under ~/.cache/ferrum
#   - a mail server that keeps what it gets (the portal's mails): aiosmtpd
#     1.4.6 in the same venv
#   - boot network clients: atftp, tftp-hpa, curl, busybox udhcpc, ISC dhclient
#   - QEMU 10 from bookworm-backports (Debian 12's 7.2 conflicts with the
#     image's qemu-utils: LAB-NOTES §1) with the iPXE ROMs of ipxe-qemu
#   - image building: cpio, kmod, e2fsprogs, fdisk, dosfstools, zstd,
#     extlinux/syslinux, dropbear, openssh-client, debootstrap
#   - PostgreSQL 15's server binaries (throw-away clusters on loopback)
#   - the API contract checks (scripts/schemathesis.sh): schemathesis and
#     openapi-spec-validator, pinned, in a venv under ~/.cache/ferrum
#   - the web portal in a real browser (scripts/web-test.sh, and the lab's
#     full-loop test): Debian's chromium driven by Playwright and pytest,
#     pinned, in a venv under ~/.cache/ferrum (scripts/web-venv.sh), with
#     axe-core (pinned, from npm) on every page
#   - the Grid'5000 API's acceptance tests (scripts/g5k-test.sh): the real
#     python-grid5000 and EnOSlib, every dependency pinned, in a venv under
#     ~/.cache/ferrum (scripts/g5k-venv.sh)
set -euo pipefail
# shellcheck source=scripts/root.sh
. "$(dirname "$0")/root.sh"
cd "$(dirname "$0")/.."
scripts/setup.sh

venv="${FERRUM_VENV:-$HOME/.cache/ferrum/venv}"
if [ ! -x "$venv/bin/sushy-emulator" ]; then
    echo "== installing sushy-tools into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q sushy-tools==2.2.0
fi
export FERRUM_SUSHY_EMULATOR="$venv/bin/sushy-emulator"
if [ ! -x "$venv/bin/aiosmtpd" ]; then
    echo "== installing aiosmtpd into $venv"
    "$venv/bin/pip" install -q aiosmtpd==1.4.6
fi
export FERRUM_AIOSMTPD="$venv/bin/aiosmtpd"
# The browser tests' venv (Playwright, pinned), before `cargo test`: the
# virtual lab's full-loop test watches its deployment in Chromium with it.
# shellcheck source=scripts/web-venv.sh
. scripts/web-venv.sh
export WEB_TEST_VENV="$web_venv"
# The Grid'5000 clients' venv (EnOSlib, python-grid5000, pinned), before
# `cargo test` too: the lab test `e2e::g5k` runs EnOSlib against a lab.
# shellcheck source=scripts/g5k-venv.sh
. scripts/g5k-venv.sh
export G5K_TEST_VENV="$g5k_venv"

cargo test --workspace --locked "$@"

# The controller's integration suite again, on PostgreSQL: every test on a
# fresh database of a throw-away cluster (controller/tests/it/harness.rs).
echo "== the controller's integration suite on PostgreSQL"
FERRUM_TEST_DATABASE=postgres cargo test -p ferrum-controller --test test_all --locked "$@"

# The API contract checks: the OpenAPI document is valid, and a live
# ferrumd (in a loopback-only network namespace) answers what it says,
# with an admin's and a user's token (README "API contract checks").
echo "== API contract checks (openapi-spec-validator, schemathesis)"
scripts/schemathesis.sh

# The web portal in a real browser: Chromium (Playwright) through
# activation, sign-in, the profile and sign-out, keyboard only too, with
# axe-core on every page; ferrumd and the browser in a loopback-only
# network namespace (README "Tests and CI").
echo "== web portal in a real browser (Playwright, Chromium, axe-core)"
scripts/web-test.sh

# The Grid'5000 API with the real, unmodified clients (python-grid5000,
# EnOSlib, pinned): ferrumd and pytest in a loopback-only network
# namespace (README "Using Grid'5000 tools with ferrum").
echo "== Grid'5000 API with python-grid5000 and EnOSlib"
scripts/g5k-test.sh
