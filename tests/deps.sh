#!/usr/bin/env bash
# The Debian packages minivmm needs to build, test and benchmark, in one place:
# nothing else is installed anywhere, and tests/cleanroot/run proves the list
# on a minimal Debian 12 root (a package missing here fails that stage).
# `tests/deps.sh install` installs whatever is missing (needs root and Debian's
# apt sources); `tests/deps.sh check` only reports.
set -euo pipefail

PACKAGES=(
    build-essential cmake pkg-config        # compiler, CMake
    libcurl4-openssl-dev libjansson-dev     # minivmm ctl: HTTP client, JSON
    clang                                   # libFuzzer, second compiler
    libclang-rt-dev                         # libFuzzer and sanitizer runtimes for clang
    acpica-tools                            # iasl -d validates the ACPI tables
    python3 python3-pytest python3-pexpect  # boot/integration tests
    qemu-system-x86                         # the test host (and the peer in bench/)
    cpio e2fsprogs kmod                     # guest and test-host images (depmod)
    zstd xz-utils                           # kernel package contents
    curl socat                              # API clients in tests
    libmicrohttpd-dev                       # the API server: HTTP (JSON: jansson above)
    libseccomp-dev                          # per-thread system call allowlists
    man-db                                  # man -l renders minivmm(1) in its test
    mmdebstrap                              # tests/cleanroot: a clean Debian 12 root
)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

case ${1:-check} in
check)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "missing Debian packages: ${missing[*]} (run: sudo tests/deps.sh install)" >&2
        exit 1
    fi
    ;;
install)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing: ${missing[*]}"
        SUDO=
        [ "$(id -u)" -eq 0 ] || SUDO=sudo
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
    fi
    ;;
*)
    echo "usage: tests/deps.sh check|install" >&2
    exit 2
    ;;
esac
