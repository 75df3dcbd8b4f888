#!/usr/bin/env bash
# Installs the host packages ferrum's tests and virtual lab need (Debian 12,
# root). Idempotent: installs only what is missing. Nothing else is
# downloaded here; kernels for the ramdisk and images come from Debian's
# archive through `ferrum-images build`, never installed on the host.
set -euo pipefail
# shellcheck source=scripts/root.sh
. "$(dirname "$0")/root.sh"
export DEBIAN_FRONTEND=noninteractive

# Debian 12 (bookworm) packages:
#   BMC emulators: openipmi ipmitool
#   boot network clients: atftp tftp-hpa curl busybox-static isc-dhcp-client
#   iPXE: ipxe (undionly.kpxe, ipxe.efi for TFTP), ipxe-qemu (QEMU NIC ROMs)
#   image building: cpio kmod e2fsprogs fdisk zstd extlinux syslinux-common
#     dropbear-bin openssh-client debootstrap util-linux, python3.11 (its
#     interpreter and standard library go into tiny-python)
#   image building and the agent's disk tests: mount util-linux (losetup,
#     wipefs, blkid, blockdev), ca-certificates (copied into the ramdisk)
#   lab: iproute2 procps (sysctl inside namespaces, kill) socat
#   sushy-tools' venv: python3-venv
#   the PostgreSQL backend's tests: postgresql-15 (server binaries; tests
#     start throw-away clusters on loopback, never the packaged one)
#   the API throughput benchmark's load generator (`api-bench`): wrk
#   the web portal's browser tests (scripts/web-test.sh): chromium (driven
#     by Playwright at /usr/bin/chromium; never `playwright install`)
packages=(openipmi ipmitool atftp tftp-hpa curl busybox-static isc-dhcp-client ipxe ipxe-qemu
    cpio kmod e2fsprogs fdisk zstd extlinux syslinux-common dropbear-bin openssh-client debootstrap python3.11
    mount util-linux iproute2 procps socat python3-venv ca-certificates
    postgresql-15 wrk chromium)
installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }

need=()
for p in "${packages[@]}"; do installed "$p" || need+=("$p"); done
qemu_missing=0
installed qemu-system-x86 || qemu_missing=1
# The image builder picks the kernel from apt's index: it must know it.
index_missing=0
apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1 || index_missing=1

if [ ${#need[@]} -gt 0 ] || [ $qemu_missing = 1 ] || [ $index_missing = 1 ]; then
    # QEMU comes from bookworm-backports: Debian 12's 7.2 conflicts with the
    # image's qemu-utils 10 (LAB-NOTES §1).
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
