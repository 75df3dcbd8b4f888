#!/usr/bin/env bash
# Starts one emulated IPMI BMC (OpenIPMI's ipmi_sim) and one emulated
# Redfish BMC (sushy-tools, fake driver) on 127.0.0.1, to try ferrum's power
# control without hardware; `stop` kills them by PID.
#
#   scripts/bmc-emulators.sh start [DIR]   # writes DIR/bmcs.env (IPMI_BMC, REDFISH_BMC)
#   scripts/bmc-emulators.sh stop [DIR]
#
# Needs what scripts/test.sh installs (ipmi_sim, ipmitool, sushy-tools in
# ~/.cache/ferrum/venv). The virtual lab (`ferrum lab up`) will replace this
# with BMCs that drive real QEMU nodes; here power changes only a file.
set -euo pipefail
cmd="${1:-}"
dir="$(realpath -m "${2:-bmc-emulators}")"

free_port() { # $1: tcp|udp
    python3 -c "import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM if sys.argv[1]=='udp' else socket.SOCK_STREAM); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])" "$1"
}

case "$cmd" in
start)
    mkdir -p "$dir/ipmi/state" "$dir/redfish/state"
    # --- IPMI: ipmi_sim runs chassis_control for power and boot device.
    ipmi_port=$(free_port udp)
    ipmi_pw="ipmi-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    echo 0 > "$dir/ipmi/power"
    echo default > "$dir/ipmi/boot"
    cat > "$dir/ipmi/chassis_control" <<EOF
#!/bin/sh
d="$dir/ipmi"
while [ \$# -gt 0 ] && [ "\$1" != get ] && [ "\$1" != set ]; do shift; done
op="\$1"; shift
case "\$op" in
get) for i in "\$@"; do case "\$i" in power) echo "power:\$(cat "\$d/power")";; boot) echo "boot:\$(cat "\$d/boot")";; esac; done ;;
set) while [ \$# -ge 2 ]; do echo "\$1 \$2" >> "\$d/log"
       case "\$1" in power) echo "\$2" > "\$d/power";; reset) echo 1 > "\$d/power";;
                     shutdown) echo 0 > "\$d/power";; boot) echo "\$2" > "\$d/boot";; esac; shift 2; done ;;
esac
exit 0
EOF
    chmod +x "$dir/ipmi/chassis_control"
    cat > "$dir/ipmi/lan.conf" <<EOF
name "ferrum-emulated"
set_working_mc 0x20
startlan 1
  addr 127.0.0.1 $ipmi_port
  priv_limit admin
  allowed_auths_callback none md2 md5 straight
  allowed_auths_user none md2 md5 straight
  allowed_auths_operator none md2 md5 straight
  allowed_auths_admin none md2 md5 straight
  guid a123456789abcdefa123456789abcdef
endlan
chassis_control "$dir/ipmi/chassis_control"
user 2 true "admin" "$ipmi_pw" admin 10 none md2 md5 straight
EOF
    printf 'mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nsel_enable 0x20 1000 0x0a\nmc_enable 0x20\n' > "$dir/ipmi/bmc.emu"
    ipmi_sim -c "$dir/ipmi/lan.conf" -f "$dir/ipmi/bmc.emu" -s "$dir/ipmi/state" -n </dev/null >"$dir/ipmi/ipmi_sim.log" 2>&1 &
    echo $! > "$dir/ipmi/pid"

    # --- Redfish: sushy-emulator, fake driver, Basic auth (htpasswd, bcrypt).
    venv="${FERRUM_VENV:-$HOME/.cache/ferrum/venv}"
    rf_port=$(free_port tcp)
    rf_pw="redfish-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    "$venv/bin/python" -c "import bcrypt,sys; print('admin:' + bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(4)).decode())" "$rf_pw" > "$dir/redfish/htpasswd"
    cat > "$dir/redfish/emulator.conf" <<EOF
SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'
SUSHY_EMULATOR_LISTEN_PORT = $rf_port
SUSHY_EMULATOR_AUTH_FILE = '$dir/redfish/htpasswd'
SUSHY_EMULATOR_STATE_DIR = '$dir/redfish/state'
SUSHY_EMULATOR_FAKE_DRIVER = True
SUSHY_EMULATOR_FAKE_SYSTEMS = [{'uuid': '27946b59-9e44-4fa7-8e91-f3527a1ef094', 'name': 'node-1', 'power_state': 'Off', 'external_notifier': False, 'nics': [{'mac': '00:5c:52:31:3a:9c', 'ip': '172.22.130.100'}]}]
EOF
    "$venv/bin/sushy-emulator" --config "$dir/redfish/emulator.conf" </dev/null >"$dir/redfish/sushy.log" 2>&1 &
    echo $! > "$dir/redfish/pid"

    # Wait (bounded) until both answer.
    for _ in $(seq 100); do
        ipmitool -I lanplus -C 3 -H 127.0.0.1 -p "$ipmi_port" -U admin -P "$ipmi_pw" chassis power status >/dev/null 2>&1 \
            && curl -sf -o /dev/null "http://127.0.0.1:$rf_port/redfish/v1/" && break
        sleep 0.2
    done
    umask 077
    cat > "$dir/bmcs.env" <<EOF
IPMI_BMC='ipmi://admin:$ipmi_pw@127.0.0.1:$ipmi_port'
REDFISH_BMC='redfish+http://admin:$rf_pw@127.0.0.1:$rf_port/node-1'
EOF
    echo "BMC URLs (with their passwords) in $dir/bmcs.env; stop with: $0 stop $dir"
    ;;
stop)
    for f in "$dir/ipmi/pid" "$dir/redfish/pid"; do
        [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
        rm -f "$f"
    done
    ;;
*)
    echo "usage: $0 start|stop [DIR]" >&2
    exit 2
    ;;
esac
