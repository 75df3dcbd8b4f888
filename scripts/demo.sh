#!/usr/bin/env bash
# The virtual lab demo: ferrum's whole loop on QEMU nodes behind emulated
# BMCs, on this machine, as root.
#
#   1. set-up: installs the peers (scripts/setup.sh: QEMU, ipmi_sim, iPXE,
#      ...; sushy-tools in a venv), builds ferrum, builds the deploy ramdisk
#      and the `tiny` environment (cached under ~/.cache/ferrum);
#   2. `ferrum lab up --nodes 2`: a network namespace with a bridge, two
#      QEMU nodes (qemu-1 behind IPMI, qemu-2 behind Redfish), ferrumd serving
#      DHCP/TFTP/HTTP on the bridge, the nodes enrolled;
#   3. reserve both nodes and deploy `tiny` with your SSH key (progress bars),
#      then log in as root on each node from inside the lab;
#   4. release the lease and watch the reset (power off, deploy ramdisk,
#      wipe, inventory checked against the reference) until both nodes are
#      `available` again;
#   5. `ferrum lab down`, and a summary of the times.
#
# Options: DEMO_NODES (default 2), DEMO_DIR (default /tmp/ferrum-lab-demo),
# DEMO_KEEP=1 keeps the lab running at the end (stop it with
# `ferrum lab down --dir $DEMO_DIR`).
set -euo pipefail
# shellcheck source=scripts/root.sh
. "$(dirname "$0")/root.sh"

cd "$(dirname "$0")/.."
root=$(pwd)
nodes="${DEMO_NODES:-2}"
dir="${DEMO_DIR:-/tmp/ferrum-lab-demo}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
bin="$CARGO_TARGET_DIR/release"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }


t0=$(now)
step "set-up: packages, ferrum, images"
scripts/setup.sh
venv="${FERRUM_VENV:-$HOME/.cache/ferrum/venv}"
if [ ! -x "$venv/bin/sushy-emulator" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q sushy-tools==2.2.0
fi
export FERRUM_SUSHY_EMULATOR="$venv/bin/sushy-emulator"
cargo build --release --locked --bin ferrum --bin ferrumd --bin ferrum-images
"$bin/ferrum-images" build ramdisk-lab tiny
setup_s=$(since "$t0")

if [ -f "$dir/lab.pid" ]; then
    "$bin/ferrum" lab down --dir "$dir" || true
fi
t=$(now)
step "ferrum lab up --nodes $nodes"
"$bin/ferrum" lab up --nodes "$nodes" --dir "$dir"
lab_s=$(since "$t")
# shellcheck disable=SC1091
. "$dir/lab.env"
export FERRUM_URL FERRUM_TOKEN
cleanup() {
    if [ "${DEMO_KEEP:-0}" != 1 ]; then
        step "ferrum lab down"
        "$bin/ferrum" lab down --dir "$dir"
    fi
}
trap cleanup EXIT
"$bin/ferrum" node list

# The experimenter's key: yours if you have one, else one made for the demo.
key="$HOME/.ssh/id_ed25519"
if [ ! -f "$key.pub" ]; then
    key="$dir/id_demo"
    [ -f "$key" ] || ssh-keygen -q -t ed25519 -N '' -C ferrum-demo -f "$key"
fi

t=$(now)
step "reserve $nodes nodes and deploy tiny with $key.pub"
lease=$("$bin/ferrum" --json lease create --count "$nodes" --duration 1h | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
echo "lease $lease"
"$bin/ferrum" deploy "$lease" --env tiny --ssh-key "$key.pub" --wait
deploy_s=$(since "$t")

step "root SSH on the deployed nodes (from inside the lab's namespace)"
# Nodes are named <node>.<site>.ferrum.internal in the lab's namespace
# (/etc/netns/$FERRUM_LAB_NETNS/hosts); the default site is `lab`.
for name in $("$bin/ferrum" --json node list | python3 -c '
import json, sys
for n in json.load(sys.stdin):
    if n["state"] == "deployed": print(n["name"])'); do
    echo "\$ ip netns exec $FERRUM_LAB_NETNS ssh -i $key root@$name.lab.ferrum.internal"
    ip netns exec "$FERRUM_LAB_NETNS" ssh -i "$key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o LogLevel=ERROR -o ConnectTimeout=10 "root@$name.lab.ferrum.internal" 'uname -a; echo "hello from $(hostname), uid $(id -u)"'
done

t=$(now)
step "release the lease: every node is reset (power off, ramdisk, wipe, inventory check)"
"$bin/ferrum" lease release "$lease"
deadline=$(( $(date +%s) + 600 ))
while :; do
    states=$("$bin/ferrum" --json node list | python3 -c '
import json, sys
print(" ".join(n["name"] + "=" + n["state"] for n in json.load(sys.stdin)))')
    printf '\r  %s   ' "$states"
    case " $states " in
        *=resetting*|*=deployed*|*=reserved*) ;;
        *) break ;;
    esac
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo; echo "the reset did not finish within 10 minutes" >&2
        exit 1
    fi
    sleep 1   # paces a bounded poll of the node states
done
echo
reset_s=$(since "$t")
"$bin/ferrum" node list
for n in $(seq 1 "$nodes"); do "$bin/ferrum" node operations "qemu-$n" | tail -n 2; done

step "summary"
printf '  set-up (install, build, images)   %6s s\n' "$setup_s"
printf '  lab up (%s nodes)                 %6s s\n' "$nodes" "$lab_s"
printf '  reserve → deployed → root SSH     %6s s\n' "$deploy_s"
printf '  release → reset → available       %6s s\n' "$reset_s"
printf '  total                             %6s s\n' "$(since "$t0")"
