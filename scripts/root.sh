# Sourced by the scripts that need root (packages, network namespaces, taps,
# QEMU): as root they go on; otherwise they run again through sudo when it
# is there, keeping the caller's environment (PATH included, for cargo and
# rustup in the caller's home), and stop with a clear message when it is
# not (minimal images such as Debian's cloud and container images have no
# sudo; there, run the script as root).
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo --preserve-env env "PATH=$PATH" "$0" "$@"
    fi
    echo "$0 needs root (packages, network namespaces, QEMU) and there is no sudo here: run it as root" >&2
    exit 1
fi
