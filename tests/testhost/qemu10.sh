#!/usr/bin/env bash
# QEMU 10 beside the system's QEMU 7.2, for the benchmarks' second peer VMM
# (virtio-mem-pci with dynamic-memslots=on) and as the x86_64 test host's
# emulator (the default; MINIVMM_TESTHOST_QEMU=7.2 chooses the system's,
# tests/boot/hostlib.py).
#
# Debian's bookworm-backports has qemu-system-x86 1:10.0.2+ds-2+deb13u1~bpo12+1
# (tests/deps.sh adds that apt source). Installing it would replace 7.2, the
# test suite's emulator and peer, so its packages are fetched with `apt-get
# download -t bookworm-backports` and unpacked with dpkg-deb -x instead:
#   qemu-system-x86     the binary (its libraries are bookworm's, which
#                       tests/deps.sh installs)
#   qemu-system-data    its ROMs (linuxboot_dma.bin, kvmvapic.bin, ...)
#   qemu-system-common  its loadable modules, so that it never tries 7.2's
#   seabios             the backported SeaBIOS it requires (>> 1.16.3)
#
# usage: tests/testhost/qemu10.sh [--out DIR] [--refresh] [--quiet]
#   --out DIR   where to unpack (default: build/qemu10 of this checkout)
#   --refresh   ask apt for newer backports even if DIR is complete
#   --quiet     print nothing but DIR's path
# Prints DIR. In DIR:
#   bin/qemu-system-x86_64   a wrapper running QEMU 10 with its own firmware
#                            (-L DIR/firmware) and modules (QEMU_MODULE_DIR)
#   root/                    the unpacked packages (root/usr/bin/qemu-system-x86_64
#                            is the binary itself, for the test host payload)
#   firmware/                one flat -L directory: qemu-system-data's ROMs,
#                            the backported SeaBIOS, bookworm's iPXE ROMs
#   version                  what `qemu-system-x86_64 --version` printed
# The .debs are kept in the package cache ($MINIVMM_CACHE or
# ~/.cache/minivmm/debs) shared with the image builds; once DIR is complete
# later calls return at once without asking apt.
set -euo pipefail
MVX_PROG=tests/testhost/qemu10.sh
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$repo/guest-images/lib.sh"

out=$repo/build/qemu10
refresh=0
quiet=0
while [ $# -gt 0 ]; do
    case $1 in
    --out)     out=$2; shift 2 ;;
    --refresh) refresh=1; shift ;;
    --quiet)   quiet=1; shift ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) mvx_die "unknown argument $1" ;;
    esac
done
[ "$quiet" = 1 ] && mvx_log() { :; }
MVX_CACHE=$(mvx_default_cache)
PACKAGES=(qemu-system-x86 qemu-system-data qemu-system-common seabios)
WANT_MAJOR=10

mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
if [ "$refresh" = 0 ] && [ -e "$out/.complete" ]; then
    echo "$out"
    exit 0
fi

# Download into a private directory, then rename into the shared cache: an
# interrupted or concurrent download never leaves a truncated .deb there.
mkdir -p "$MVX_CACHE"
dl=$(mktemp -d "$MVX_CACHE/.dl-qemu10.XXXXXX")
stage=
cleanup() { rm -rf "$dl" ${stage:+"$stage"}; }
trap cleanup EXIT
sandbox=()
# As root apt drops to user _apt, which cannot write into $HOME/.cache.
[ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root)
mvx_log "downloading ${PACKAGES[*]} from bookworm-backports"
if ! (cd "$dl" && apt-get download -q "${sandbox[@]}" -t bookworm-backports "${PACKAGES[@]}" >&2); then
    mvx_die "apt-get download -t bookworm-backports failed: is the bookworm-backports source there (sudo tests/deps.sh install) and apt-get update done?"
fi
debs=()
for p in "${PACKAGES[@]}"; do
    f=$(ls "$dl/${p}_"*.deb 2>/dev/null | head -n1)
    [ -n "$f" ] || mvx_die "apt-get download gave no $p"
    case $p in
    qemu-system-*)
        # -t falls back to bookworm's 7.2 when backports is not known.
        case $(basename "$f") in
        "${p}_1%3a${WANT_MAJOR}."*) ;;
        *) mvx_die "$(basename "$f") is not QEMU $WANT_MAJOR: apt does not know bookworm-backports (sudo tests/deps.sh install)" ;;
        esac ;;
    esac
    mv "$f" "$MVX_CACHE/"
    debs+=("$MVX_CACHE/$(basename "$f")")
done

stage=$(mktemp -d "$out.tmp.XXXXXX")
for f in "${debs[@]}"; do
    dpkg-deb -x "$f" "$stage/root"
done
mkdir -p "$stage/firmware" "$stage/bin"
# One -L directory. QEMU also searches its built-in firmware path
# (/usr/share/qemu, /usr/share/seabios, /usr/lib/ipxe/qemu), which on this
# machine holds 7.2's files: -L comes first, so QEMU 10 gets its own.
for d in /usr/lib/ipxe/qemu "$stage/root/usr/share/seabios" "$stage/root/usr/share/qemu"; do
    [ -d "$d" ] || continue
    find "$d" -maxdepth 1 \( -type f -o -type l \) -exec cp -L -t "$stage/firmware" {} +
done
[ -s "$stage/firmware/bios-256k.bin" ] || mvx_die "no bios-256k.bin (seabios) in the unpacked packages"
modules=$stage/root/usr/lib/x86_64-linux-gnu/qemu
cat > "$stage/bin/qemu-system-x86_64" <<'EOF'
#!/bin/sh
# QEMU 10 from bookworm-backports, unpacked by tests/testhost/qemu10.sh: its
# own firmware (-L) and modules, never the system QEMU 7.2's.
d=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
QEMU_MODULE_DIR=$d/root/usr/lib/x86_64-linux-gnu/qemu
export QEMU_MODULE_DIR
exec "$d/root/usr/bin/qemu-system-x86_64" -L "$d/firmware" "$@"
EOF
chmod 0755 "$stage/bin/qemu-system-x86_64"
[ -d "$modules" ] || mvx_die "qemu-system-common has no $modules"

missing=$(ldd "$stage/root/usr/bin/qemu-system-x86_64" | grep 'not found' || true)
[ -z "$missing" ] || mvx_die "QEMU 10 needs libraries that are not installed (tests/deps.sh): $(echo "$missing" | tr -d '\t' | tr '\n' ' ')"
version=$("$stage/bin/qemu-system-x86_64" --version | head -n1)
case $version in
"QEMU emulator version $WANT_MAJOR."*) ;;
*) mvx_die "the unpacked QEMU says '$version', not version $WANT_MAJOR" ;;
esac
echo "$version" > "$stage/version"
printf '%s\n' "${debs[@]##*/}" > "$stage/packages"
touch "$stage/.complete"
rm -rf "$out"
mv -T "$stage" "$out"
stage=
# The wrapper finds its directory at run time, so the rename above is safe.
mvx_log "$version in $out"
echo "$out"
