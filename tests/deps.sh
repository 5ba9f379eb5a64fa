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
    libseccomp-dev                          # per-thread system call allowlists
    man-db                                  # man -l renders minivmm(1) in its test
    mmdebstrap                              # tests/cleanroot: a clean Debian 12 root
    libfdt-dev device-tree-compiler dt-schema  # arm64 device tree: build, dtc, dt-validate
    qemu-system-arm                         # the arm64 test host (and its peer VMM)
    # The aarch64 cross build (multi-arch). libfdt-dev cannot be installed
    # for two architectures at once: its headers are the same for both, and
    # the arm64 build links libfdt1:arm64's shared library.
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross
    libfdt1:arm64 libseccomp-dev:arm64
    libjansson-dev:arm64
    # QEMU 10 (bookworm-backports), the second peer VMM of the benchmarks,
    # is not installed: tests/testhost/qemu10.sh unpacks it beside 7.2 into
    # build/qemu10. What its binary loads, named here so that it does not
    # depend on 7.2 pulling the same libraries in (its Depends, all bookworm):
    libaio1 libbpf1 libcapstone4 libfdt1 libfuse3-3 libglib2.0-0 libgmp10
    libgnutls30 libhogweed6 libibverbs1 libjpeg62-turbo libnettle8 libnuma1
    libpixman-1-0 libpmem1 libpng16-16 librdmacm1 libsasl2-2 libseccomp2
    libslirp0 libudev1 liburing2 libvdeplug2 libzstd1 zlib1g
    ipxe-qemu                               # NIC option ROMs (both QEMUs' -L dirs)
)

# Debian's bookworm-backports, for QEMU 10 only (tests/testhost/qemu10.sh
# fetches it with `apt-get download -t bookworm-backports`). Its Release file
# says NotAutomatic/ButAutomaticUpgrades, so apt gives it priority 100: no
# package is installed or upgraded from it unless asked for by name or -t.
BACKPORTS_FILE=/etc/apt/sources.list.d/minivmm-bookworm-backports.sources
BACKPORTS_SOURCE='Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg'

# Whether some apt source already names bookworm-backports (ours, or one a
# root bootstrapped from this machine's sources copied).
have_backports() {
    grep -rqsE '^[[:space:]]*(Suites:.*[[:space:]]bookworm-backports([[:space:]]|$)|deb[[:space:]].*[[:space:]]bookworm-backports[[:space:]])' \
        /etc/apt/sources.list /etc/apt/sources.list.d/
}

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

case ${1:-check} in
check)
    status=0
    if [ ${#missing[@]} -gt 0 ]; then
        echo "missing Debian packages: ${missing[*]} (run: sudo tests/deps.sh install)" >&2
        status=1
    fi
    if ! have_backports; then
        echo "no bookworm-backports apt source (QEMU 10 for the benchmarks; run: sudo tests/deps.sh install)" >&2
        status=1
    fi
    exit $status
    ;;
install)
    SUDO=
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    update=0
    if ! have_backports; then
        echo "adding $BACKPORTS_FILE"
        printf '%s\n' "$BACKPORTS_SOURCE" | $SUDO tee "$BACKPORTS_FILE" >/dev/null
        update=1
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing: ${missing[*]}"
        dpkg --print-foreign-architectures | grep -qx arm64 || $SUDO dpkg --add-architecture arm64
        update=1
    fi
    [ "$update" = 0 ] || $SUDO apt-get update -qq
    if [ ${#missing[@]} -gt 0 ]; then
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
    fi
    ;;
*)
    echo "usage: tests/deps.sh check|install" >&2
    exit 2
    ;;
esac
