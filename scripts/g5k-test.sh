#!/usr/bin/env bash
# The Grid'5000 REST API (`/stable`) driven by the real, unmodified clients
# (README "Using Grid'5000 tools with ferrum"; the contract:
# docs/grid5000-api.md): python-grid5000 1.2.5 and EnOSlib 10.9.0, from
# pytest (tests/g5k), against a real ferrumd seeded with the reference
# fixtures (fixtures/g5k-reference: lille/chifflot x8, grenoble/servan x2)
# and two users, alice and bob, each with an API token.
#
# ferrumd and the clients run inside a network namespace of their own that
# has only loopback: nothing leaves the machine. That also guarantees that
# python-grid5000, which silently falls back to the public
# https://api.grid5000.fr when its configuration is broken, can never reach
# it; each test also checks that ferrumd's access log saw its requests.
# HOME is a temp dir holding the `.python-grid5000.yaml` the clients read
# (uri http://127.0.0.1:PORT/stable, username alice, password her token).
# Needs root (ip netns), python3 with venv and curl; the venv
# (scripts/g5k-venv.sh) is installed once.
#
# Options (environment):
#   G5K_TEST_VENV   the venv (default ~/.cache/ferrum/g5k-venv)
#   FERRUM_BIN_DIR  where ferrumd and ferrum are (default: built here)
# Arguments go to pytest (e.g. `-k status`).
set -euo pipefail
# shellcheck source=scripts/root.sh
. "$(dirname "$0")/root.sh"
cd "$(dirname "$0")/.."
root=$(pwd)

# The venv (python-grid5000, EnOSlib, pytest, pinned): `$g5k_venv`.
# shellcheck source=scripts/g5k-venv.sh
. "$root/scripts/g5k-venv.sh"
python="$g5k_venv/bin/python"

# shellcheck source=scripts/loopback-ns.sh
. "$root/scripts/loopback-ns.sh"
ferrum_bins

loopback_ns ferrum-g5k

# A free port: the namespace is new, but ask its kernel all the same.
port=$(in_ns "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
addr="127.0.0.1:$port"
url="http://$addr"
# JSON log lines: the tests read the `ferrum::g5k` access lines back.
# lille has a network, a gateway and a resolver (`kavlans.default`,
# `servers/dns`); grenoble takes every default (no network: nulls).
g5k_domain=g5k.test
lille_network=10.44.0.0/24
lille_gateway=10.44.0.254
lille_dns=10.44.0.53
cat > "$work/ferrumd.toml" <<EOF
[log]
format = "json"
level = "info"
[sites.lille]
timezone = "Europe/Paris"
domain = "$g5k_domain"
network = "$lille_network"
gateway = "$lille_gateway"
dns = "$lille_dns"
[sites.grenoble]
domain = "$g5k_domain"
EOF
start_ferrumd --config "$work/ferrumd.toml"

echo "== seeding: fixtures/g5k-reference, project p-g5k, users alice and bob"
FERRUM_URL="$url" FERRUM_TOKEN="$admin" in_ns "$FERRUM_BIN_DIR/ferrum" node import fixtures/g5k-reference > /dev/null
api() { # METHOD PATH TOKEN [BODY]
    in_ns curl -fsS -X "$1" -H "Authorization: Bearer $3" -H 'Content-Type: application/json' ${4:+--data "$4"} "$url/api/v1$2"
}
token_of() { "$python" -c 'import json, sys; print(json.load(sys.stdin)["token"])'; }
api POST /projects "$admin" '{"name": "p-g5k"}' > /dev/null
alice=$(api POST /users "$admin" '{"name": "alice", "projects": ["p-g5k"]}' | token_of)
bob=$(api POST /users "$admin" '{"name": "bob", "projects": ["p-g5k"]}' | token_of)

# The clients' configuration, in a HOME of its own (EnOSlib reads exactly
# $HOME/.python-grid5000.yaml).
mkdir -p "$work/home"
cat > "$work/home/.python-grid5000.yaml" <<EOF
uri: $url/stable
username: alice
password: $alice
verify_ssl: false
EOF

echo "== Grid'5000 API with python-grid5000 and EnOSlib (tests/g5k, ferrumd at $url)"
started=$SECONDS
rc=0
in_ns env HOME="$work/home" PYTHONDONTWRITEBYTECODE=1 \
    FERRUM_URL="$url" G5K_URL="$url/stable" FERRUM_DATA_DIR="$work/data" FERRUM_BIN_DIR="$FERRUM_BIN_DIR" \
    FERRUMD_PID="$pid" FERRUMD_LOG="$work/ferrumd.log" \
    FERRUM_ADMIN_TOKEN="$admin" ALICE_TOKEN="$alice" BOB_TOKEN="$bob" \
    G5K_DOMAIN="$g5k_domain" G5K_LILLE_NETWORK="$lille_network" G5K_LILLE_GATEWAY="$lille_gateway" G5K_LILLE_DNS="$lille_dns" \
    "$python" -m pytest -p no:cacheprovider -q tests/g5k "$@" || rc=$?
echo "== Grid'5000 API: $((SECONDS - started)) s (exit $rc)"
if [ "$rc" != 0 ]; then
    echo "ferrumd's log (last 50 lines):" >&2
    tail -n 50 "$work/ferrumd.log" >&2
fi
exit "$rc"
