# shellcheck shell=bash
# Sourced by the scripts that run a ferrumd to test it from outside
# (schemathesis.sh, web-test.sh, g5k-test.sh): the binaries, and a network namespace with
# loopback only, where that ferrumd and its clients run, so that nothing they
# do leaves the machine. Needs `root` set to the repository root.

# FERRUM_BIN_DIR: where ferrumd and ferrum are; built here (debug) unless
# given.
ferrum_bins() {
    if [ -z "${FERRUM_BIN_DIR:-}" ]; then
        export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
        cargo build --locked --bin ferrumd --bin ferrum
        FERRUM_BIN_DIR="$CARGO_TARGET_DIR/debug"
    fi
}

# loopback_ns NAME: a new namespace NAME-$$ with lo up (`$ns`), a work
# directory (`$work`), `in_ns CMD...`, and an exit trap that kills `$pid`
# (set it to the ferrumd started) and removes both.
loopback_ns() {
    ns="$1-$$"
    work=$(mktemp -d "/tmp/$1.XXXXXX")
    pid=
    trap loopback_ns_cleanup EXIT
    ip netns add "$ns"
    ip -n "$ns" link set lo up
}

loopback_ns_cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$work"
}

in_ns() { ip netns exec "$ns" "$@"; }

# start_ferrumd ARGS...: ferrumd in the namespace, listening on `$addr`,
# data in `$work/data`, log in `$work/ferrumd.log`, with ARGS (e.g.
# `--config FILE`); sets `$pid` (killed by the exit trap) and, once it
# answers, `$admin` (the first admin's token). Gives up after 60 s.
start_ferrumd() {
    # `ip netns exec` execs ferrumd: `$!` is its PID.
    ip netns exec "$ns" "$FERRUM_BIN_DIR/ferrumd" "$@" --listen "$addr" --data-dir "$work/data" > "$work/ferrumd.log" 2>&1 &
    pid=$!
    local deadline=$((SECONDS + 60))
    until [ -s "$work/data/admin.token" ] && in_ns curl -fsS -o /dev/null "http://$addr/healthz" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
            echo "ferrumd did not come up:" >&2
            cat "$work/ferrumd.log" >&2
            exit 1
        fi
        # Paces a readiness probe bounded by the deadline above (ferrumd
        # announces its readiness only by answering).
        sleep 0.2
    done
    admin=$(cat "$work/data/admin.token")
}
