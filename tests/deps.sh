#!/usr/bin/env bash
# The Debian packages minivmm needs to build, test and benchmark, in one place:
# nothing else is installed anywhere, and tests/cleanroot/run proves the list
# on a minimal Debian 12 root (a package missing here fails that stage).
# `tests/deps.sh install` installs whatever is missing (needs root and Debian's
# apt sources); `tests/deps.sh check` only reports.
set -euo pipefail

PACKAGES=(
    build-essential cmake pkg-config        # compiler, CMake
    libjansson-dev                          # JSON (the API server, minivmm ctl)
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
    libfdt-dev device-tree-compiler dt-schema  # arm64 device tree: build, dtc, dt-validate
    qemu-system-arm                         # the arm64 test host (and its peer VMM)
    # The aarch64 cross build (multi-arch). libfdt-dev cannot be installed
    # for two architectures at once: its headers are the same for both, and
    # the arm64 build links libfdt1:arm64's shared library.
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross
    libfdt1:arm64 libseccomp-dev:arm64 libmicrohttpd-dev:arm64
    libjansson-dev:arm64
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
        dpkg --print-foreign-architectures | grep -qx arm64 || $SUDO dpkg --add-architecture arm64
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
    fi
    ;;
*)
    echo "usage: tests/deps.sh check|install" >&2
    exit 2
    ;;
esac
