# Sourced by ferrum's init scripts (busybox sh).
#
# ferrum_net_up MARKER: brings up every ethernet interface that is a device
# (not a bridge or a veth) and runs udhcpc on all of them at once. It returns
# when each one has a lease or has given up for now (5 tries 2 s apart; udhcpc
# then keeps trying in the background). The udhcpc hook prints
# "MARKER: up <ifname> <ip>" on the console for each lease.
ferrum_net_up() {
    FERRUM_MARKER="$1"
    export FERRUM_MARKER
    ip link set lo up
    found=
    for dev in /sys/class/net/*; do
        ifname="${dev##*/}"
        # type 1 is ARPHRD_ETHER; a "device" link means real (or virtio) hardware.
        [ "$(cat "$dev/type" 2>/dev/null)" = 1 ] && [ -e "$dev/device" ] || continue
        found="$found $ifname"
        ip link set "$ifname" up
        udhcpc -i "$ifname" -s /etc/ferrum/udhcpc.script -b -t 5 -T 2 -A 5 -p "/run/udhcpc.$ifname.pid" &
    done
    wait
    [ -n "$found" ] || echo "$FERRUM_MARKER: no ethernet interface"
}
