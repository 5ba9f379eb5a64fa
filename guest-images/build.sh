#!/bin/bash
# Builds the minivmm test guests from Debian packages:
#   OUT/vmlinuz-<series>     the cloud-amd64 kernel (bzImage), or with
#                            --arch arm64 the cloud-arm64 kernel (an
#                            uncompressed arm64 Image)
#   OUT/initrd-<series>.img  busybox + virtio modules + /init (guest-images/init);
#                            for arm64 also /bin/nisv-probe
#                            (guest-images/tools/nisv-probe.c, built with
#                            Debian's aarch64-linux-gnu-gcc -static)
#   OUT/guest-<series>.info  which packages went in
# for series 6.1 and 6.12.
#
# usage: guest-images/build.sh [--arch x86_64|arm64] [--kernel 6.1|6.12|all]
#                              [--out DIR] [--cache DIR]
#   --arch   the guests' architecture (default x86_64); arm64 packages come
#            through multi-arch (`dpkg --add-architecture arm64`, tests/deps.sh)
#   --out    default: <repo>/build/guest (x86_64), <repo>/build/guest-arm64
#   --cache  where .debs are downloaded and unpacked; default $MINIVMM_CACHE or
#            ~/.cache/minivmm/debs
# environment:
#   MINIVMM_KERNEL_PKG_6_1, MINIVMM_KERNEL_PKG_6_12  pin an exact kernel package
#            (default: the newest linux-image-*-cloud-amd64-unsigned apt knows);
#   MINIVMM_KERNEL_PKG_ARM64_6_1, MINIVMM_KERNEL_PKG_ARM64_6_12  the same for
#            arm64 (linux-image-*-cloud-arm64-unsigned)
#   MINIVMM_GUEST_INITRD_COMPRESSION  none (default, see below) or gzip
#
# Idempotent: an image is rebuilt only when its packages or these scripts change.
set -euo pipefail
MVX_PROG=guest-images/build.sh
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

series=all
out=
MVX_CACHE=$(mvx_default_cache)
while [ $# -gt 0 ]; do
    case $1 in
    --arch)   mvx_set_arch "$2"; shift 2 ;;
    --kernel) series=$2; shift 2 ;;
    --out)    out=$2; shift 2 ;;
    --cache)  MVX_CACHE=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) mvx_die "unknown argument $1" ;;
    esac
done
case $series in
all) series="6.1 6.12" ;;
6.1|6.12) ;;
*) mvx_die "--kernel must be 6.1, 6.12 or all" ;;
esac
if [ -z "$out" ]; then
    out=$here/../build/guest
    [ "$MVX_ARCH" = amd64 ] || out=$out-$MVX_ARCH
fi

# The guest initrd is ~2.3 MB uncompressed, ~1.1 MB gzipped. Measured nested
# (QEMU+KVM inside the TCG test host, 4 runs per kernel): uncompressed reached
# the ready marker 0.25-0.5 s sooner by the median, within the run-to-run noise;
# the guest's own unpack time (dmesg) was 0.14-0.27 s either way, dominated by
# creating ~300 files. Uncompressed is the default: no slower, and a VMM's
# initrd placement can be checked against the raw cpio.
comp=${MINIVMM_GUEST_INITRD_COMPRESSION:-none}

# Modules the tests need; dependencies are added from modules.dep. virtio_pci
# is for the QEMU peer (bench/plug: virtio-mem-pci). Built in on 6.12 (amd64:
# the virtio core and virtio_pci; arm64: the core and virtio_pci, while
# virtio_mmio and virtio_mem stay modules); on 6.1 all are modules on both.
modules="virtio virtio_ring virtio_mmio virtio_pci virtio_mem virtio_blk"

# Test programs of the guest's own, compiled here: the arm64 guest gets
# nisv-probe (an access KVM cannot decode, for the arm64 guest-error test).
# None on x86_64: that path is arm64's.
tools=()
if [ "$MVX_ARCH" = arm64 ]; then tools=(nisv-probe); fi
tool_cc=$MVX_TRIPLET-gcc
if [ ${#tools[@]} -gt 0 ] && ! command -v "$tool_cc" >/dev/null; then
    mvx_die "$tool_cc not found (package gcc-$MVX_TRIPLET with libc6-dev-$MVX_ARCH-cross: tests/deps.sh install)"
fi

mkdir -p "$out"
out=$(cd "$out" && pwd)

# build_tools DESTROOT : the test programs into DESTROOT/bin, static (the
# initrd has no C library).
build_tools() {
    local t
    for t in ${tools[@]+"${tools[@]}"}; do
        "$tool_cc" -static -O2 -Wall -Wextra -Werror -s -o "$1/bin/$t" "$here/tools/$t.c" ||
            mvx_die "cannot compile $here/tools/$t.c with $tool_cc"
    done
}

build_one() {
    local s=$1 pkg=$2 deb bbdeb stamp want kdir kver stage t
    deb=$(mvx_fetch_deb "$pkg")
    bbdeb=$(mvx_fetch_deb busybox-static)
    local sources=("$here/build.sh" "$here/lib.sh" "$here/init" "$here/loadmod")
    for t in ${tools[@]+"${tools[@]}"}; do sources+=("$here/tools/$t.c"); done
    want="$(basename "$deb") $(basename "$bbdeb") $comp $(mvx_hash "${sources[@]}")"
    stamp="$out/.stamp-$s"
    if [ -s "$out/vmlinuz-$s" ] && [ -s "$out/initrd-$s.img" ] &&
       [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        mvx_log "$s: up to date ($pkg)"
        return
    fi
    mvx_log "$s: building from $(basename "$deb")"
    kdir=$(mvx_unpack_deb "$deb")
    kver=$(mvx_kernel_release "$kdir")
    mvx_check_kernel_image "$kdir/boot/vmlinuz-$kver"

    stage=$(mktemp -d "$out/.stage-$s.XXXXXX")
    mkdir -p "$stage"/{dev,proc,sys,tmp,root,etc}
    mvx_install_busybox "$stage"
    mvx_install_modules "$kdir" "$stage" $modules
    install -m 0755 "$here/init" "$stage/init"
    install -m 0755 "$here/loadmod" "$stage/bin/loadmod"
    build_tools "$stage"
    mvx_make_cpio "$stage" "$out/initrd-$s.img" "$comp"
    rm -rf "$stage"

    cp "$kdir/boot/vmlinuz-$kver" "$out/vmlinuz-$s.tmp"
    mv "$out/vmlinuz-$s.tmp" "$out/vmlinuz-$s"
    {
        echo "arch=$MVX_ARCH"
        echo "kernel_package=$pkg"
        echo "kernel_deb=$(basename "$deb")"
        echo "kernel_release=$kver"
        echo "busybox_deb=$(basename "$bbdeb")"
        echo "initrd_compression=$comp"
    } > "$out/guest-$s.info"
    echo "$want" > "$stamp"
    mvx_log "$s: $out/vmlinuz-$s ($(stat -c %s "$out/vmlinuz-$s") bytes)," \
            "$out/initrd-$s.img ($(stat -c %s "$out/initrd-$s.img") bytes), kernel $kver"
}

declare -A pkg
mvx_prime_kernel_names
for s in $series; do
    pkg[$s]=$(mvx_kernel_pkg "$s")
done
mvx_apt_prime "${pkg[@]}" busybox-static
for s in $series; do
    build_one "$s" "${pkg[$s]}"
done
