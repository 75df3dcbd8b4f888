#!/usr/bin/env bash
# Installs the host packages ferrum's tests and virtual lab need (Debian 12,
# root). Idempotent: installs only what is missing. Nothing else is
# downloaded here; kernels for the ramdisk and images come from Debian's
# archive through `ferrum-images build`, never installed on the host.
set -euo pipefail

need=()
# command:package pairs, from Debian 12 (bookworm).
for pair in ipmi_sim:openipmi ipmitool:ipmitool atftp:atftp tftp:tftp-hpa curl:curl \
    busybox:busybox-static dhclient:isc-dhcp-client cpio:cpio depmod:kmod mkfs.ext4:e2fsprogs \
    sfdisk:fdisk zstd:zstd extlinux:extlinux dropbearkey:dropbear-bin ssh:openssh-client \
    debootstrap:debootstrap ip:iproute2 socat:socat; do
    command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
for pair in /usr/lib/ipxe/undionly.kpxe:ipxe /usr/lib/ipxe/qemu/pxe-virtio.rom:ipxe-qemu \
    /usr/lib/syslinux/mbr/mbr.bin:syslinux-common; do
    [ -e "${pair%%:*}" ] || need+=("${pair#*:}")
done
qemu_missing=0
command -v qemu-system-x86_64 >/dev/null || qemu_missing=1

if [ ${#need[@]} -gt 0 ] || [ $qemu_missing = 1 ]; then
    export DEBIAN_FRONTEND=noninteractive
    if [ $qemu_missing = 1 ] && ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo "deb http://deb.debian.org/debian bookworm-backports main" > /etc/apt/sources.list.d/ferrum-backports.list
    fi
    echo "== apt-get update"
    apt-get update -q >/dev/null
    if [ ${#need[@]} -gt 0 ]; then
        echo "== installing ${need[*]}"
        apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
    fi
    if [ $qemu_missing = 1 ]; then
        echo "== installing qemu-system-x86 from bookworm-backports"
        apt-get install -y -q -t bookworm-backports qemu-system-x86 >/dev/null
    fi
fi
