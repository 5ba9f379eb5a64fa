#!/bin/bash
# Builds the test host: the Linux VM, run under QEMU/TCG with an SVM CPU, whose
# kvm_amd gives minivmm's boot tests a hardware-style /dev/kvm (see
# tests/boot/hostlib.py, which launches it).
#
# usage: tests/testhost/build.sh --payload-dir DIR --out DIR [options]
#   --payload-dir DIR   directory that becomes /payload inside the test host
#   --out DIR           where the images go (see below)
#   --cache DIR         .deb cache shared with guest-images/build.sh
#                       (default $MINIVMM_CACHE or ~/.cache/minivmm/debs)
#   --payload-mode M    disk (default) or initrd, see "Payload delivery" below
#   --add-binary FILE[=NAME]  first copy FILE to DIR/bin/NAME (default: its
#                       basename) and the shared libraries it links (ldd) to
#                       DIR/lib; may be repeated
#   --with-qemu         first add qemu-system-x86_64 and the firmware it needs
#                       for direct kernel boot (DIR/share/qemu)
#   --payload-only      only fill DIR (--add-binary, --with-qemu), build nothing
#   --refresh           look for a newer kernel package even if the cached
#                       base image is otherwise up to date
# environment:
#   MINIVMM_TESTHOST_KERNEL_PKG  pin the kernel package (default: the newest
#                       linux-image-6.1.0-NN-cloud-amd64-unsigned; any Debian
#                       kernel with KVM_AMD=m works)
#
# Outputs in OUT:
#   vmlinuz             test host kernel
#   initrd.img          initramfs (busybox, kvm modules, /init); in initrd mode
#                       with the payload appended
#   payload.ext4        the payload disk (disk mode only)
#   testhost.info       key=value: payload_mode, kernel_release, ...
# The base initramfs is cached (OUT/initrd-base-*.img); the payload is
# repacked on every call, which takes well under a second for ~100 MB.
#
# Payload delivery (--payload-mode):
#   disk    (default) an ext4 image (mke2fs -d, no journal) on virtio-blk,
#           mounted read-only at /payload
#   initrd  a second, uncompressed cpio archive appended to the initramfs
#           (the kernel unpacks concatenated archives) under payload/
# Measured with a 78 MB payload (QEMU, its libraries, both guest kernels),
# 3 alternating runs: launch -> test host shell 6.0 s (disk) vs 6.9 s (initrd;
# unpacking 78 MB costs the kernel ~0.8 s under TCG, more than loading
# virtio_pci/virtio_blk and mounting), the first nested boot afterwards
# 9.8 s vs 9.6 s (within noise), repacking the payload ~0.4 s for either.
# The disk also keeps the payload out of the test host's RAM as it grows.
set -euo pipefail
MVX_PROG=tests/testhost/build.sh
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../guest-images/lib.sh"

payload=
out=
mode=disk
with_qemu=0
payload_only=0
refresh=0
add=()
MVX_CACHE=$(mvx_default_cache)
while [ $# -gt 0 ]; do
    case $1 in
    --payload-dir)  payload=$2; shift 2 ;;
    --out)          out=$2; shift 2 ;;
    --cache)        MVX_CACHE=$2; shift 2 ;;
    --payload-mode) mode=$2; shift 2 ;;
    --add-binary)   add+=("$2"); shift 2 ;;
    --with-qemu)    with_qemu=1; shift ;;
    --payload-only) payload_only=1; shift ;;
    --refresh)      refresh=1; shift ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) mvx_die "unknown argument $1" ;;
    esac
done
[ -n "$payload" ] || mvx_die "--payload-dir is required"
[ "$payload_only" = 1 ] || [ -n "$out" ] || mvx_die "--out is required"
case $mode in initrd|disk) ;; *) mvx_die "--payload-mode must be initrd or disk" ;; esac

# payload_add_binary DIR FILE [NAME]: FILE as DIR/bin/NAME plus every shared
# library ldd reports (including the dynamic loader) flat in DIR/lib; the
# test host's /init links /lib/x86_64-linux-gnu and /lib64's loader there.
payload_add_binary() {
    local dir=$1 file=$2 name=${3:-$(basename "$2")} libs lib
    [ -x "$file" ] || mvx_die "not an executable: $file"
    mkdir -p "$dir/bin" "$dir/lib"
    cp -L "$file" "$dir/bin/$name.tmp"
    mv "$dir/bin/$name.tmp" "$dir/bin/$name"
    if ! libs=$(ldd "$file" 2>&1); then
        case $libs in
        *"not a dynamic executable"*|*"statically linked"*) return ;;
        *) mvx_die "ldd $file: $libs" ;;
        esac
    fi
    if echo "$libs" | grep -q 'not found'; then
        mvx_die "ldd $file: missing libraries: $(echo "$libs" | grep 'not found' | tr -d '\t')"
    fi
    # "libx.so => /path (addr)" and "/lib64/ld-linux-x86-64.so.2 (addr)";
    # linux-vdso has no file.
    for lib in $(echo "$libs" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
        cmp -s "$lib" "$dir/lib/$(basename "$lib")" || cp -L "$lib" "$dir/lib/"
    done
}

# Firmware QEMU 7.2 loads for `-M pc` direct kernel boot with its default
# devices (VGA, e1000 NIC). Debian keeps SeaBIOS and iPXE ROMs outside
# /usr/share/qemu; they are copied into one directory for -L.
payload_add_qemu() {
    local dir=$1 f src
    payload_add_binary "$dir" "$(command -v qemu-system-x86_64 || echo /usr/bin/qemu-system-x86_64)"
    mkdir -p "$dir/share/qemu"
    for f in bios-256k.bin linuxboot_dma.bin kvmvapic.bin vgabios-stdvga.bin efi-e1000.rom; do
        src=
        for d in /usr/share/qemu /usr/share/seabios /usr/lib/ipxe/qemu; do
            [ -e "$d/$f" ] && { src=$d/$f; break; }
        done
        [ -n "$src" ] || mvx_die "QEMU firmware $f not found (packages seabios, ipxe-qemu)"
        cp -L "$src" "$dir/share/qemu/$f"
    done
}

mkdir -p "$payload"
for a in ${add[@]+"${add[@]}"}; do
    case $a in
    *=*) payload_add_binary "$payload" "${a%%=*}" "${a#*=}" ;;
    *)   payload_add_binary "$payload" "$a" ;;
    esac
done
[ "$with_qemu" = 1 ] && payload_add_qemu "$payload"
[ "$payload_only" = 1 ] && exit 0

mkdir -p "$out"
out=$(cd "$out" && pwd)
payload=$(cd "$payload" && pwd)

# Base image: kernel + initramfs, rebuilt only when its inputs change.
# kvm_amd needs kvm and irqbypass; the disk mode also needs virtio-blk on PCI
# (ext4 is built into the cloud kernel). The kernel package is chosen when the
# base is built: checking apt for a newer one costs ~1.5 s (apt-cache has no
# binary cache in Debian's container images), too much for every payload
# update, so that happens only with --refresh or when the base is rebuilt.
modules="kvm_amd"
[ "$mode" = disk ] && modules="$modules virtio_pci virtio_blk"
base=$out/initrd-base-$mode.img
inputs_hash=$(mvx_hash "$0" "$here/init" "$here/mvx-run" "$here/mvx-spawn" "$here/mvx-kill" "$here/mvx-ctl" \
    "$here/../../guest-images/lib.sh")
base_up_to_date() {  # KPKG KDEB BBDEB: whether the base was built from these
    [ -s "$base" ] && [ -s "$out/vmlinuz" ] && [ -s "$MVX_CACHE/$2" ] && [ -s "$MVX_CACHE/$3" ] &&
        [ "$(cat "$base.stamp" 2>/dev/null)" = "$1 $2 $3 $modules $inputs_hash" ]
}
kpkg= kdeb= bbdeb=
[ -s "$base.stamp" ] && read -r kpkg kdeb bbdeb _ < "$base.stamp"
if [ "$refresh" = 1 ] || ! base_up_to_date "$kpkg" "$kdeb" "$bbdeb" ||
   [ "${MINIVMM_TESTHOST_KERNEL_PKG:-$kpkg}" != "$kpkg" ]; then
    if [ -n "${MINIVMM_TESTHOST_KERNEL_PKG:-}" ]; then
        kpkg=$MINIVMM_TESTHOST_KERNEL_PKG
    else
        mvx_prime_kernel_names
        kpkg=$(mvx_kernel_pkg 6.1)
    fi
    mvx_apt_prime "$kpkg" busybox-static
    kdeb=$(mvx_fetch_deb "$kpkg")
    bbdeb=$(mvx_fetch_deb busybox-static)
    kdeb=$(basename "$kdeb") bbdeb=$(basename "$bbdeb")
fi
if base_up_to_date "$kpkg" "$kdeb" "$bbdeb"; then
    mvx_log "base image up to date ($kpkg)"
else
    mvx_log "building base image from $kdeb"
    kdir=$(mvx_unpack_deb "$MVX_CACHE/$kdeb")
    kver=$(mvx_kernel_release "$kdir")
    grep -q '^CONFIG_KVM_AMD=[ym]' "$kdir/boot/config-$kver" ||
        mvx_die "$kpkg has no KVM_AMD"
    stage=$(mktemp -d "$out/.stage.XXXXXX")
    mkdir -p "$stage"/{dev,proc,sys,tmp,root,etc}
    mvx_install_busybox "$stage"
    mvx_install_modules "$kdir" "$stage" $modules
    install -m 0755 "$here/init" "$stage/init"
    install -m 0755 "$here/mvx-run" "$here/mvx-spawn" "$here/mvx-kill" "$here/mvx-ctl" "$stage/bin/"
    # gzip or not made no measurable difference to the boot (0.1-0.2 s
    # either way to unpack); gzip keeps the image small.
    mvx_make_cpio "$stage" "$base" gzip
    rm -rf "$stage"
    cp "$kdir/boot/vmlinuz-$kver" "$out/vmlinuz.tmp"
    mv "$out/vmlinuz.tmp" "$out/vmlinuz"
    echo "$kver" > "$out/kernel_release"
    echo "$kpkg $kdeb $bbdeb $modules $inputs_hash" > "$base.stamp"
fi

# Payload.
rm -f "$out/payload.ext4"
case $mode in
initrd)
    # cpio archives the names it is given, so the payload directory is
    # reached through a symlink named "payload" to get the payload/ prefix
    # without copying it.
    link=$(mktemp -d "$out/.link.XXXXXX")
    ln -s "$payload" "$link/payload"
    {
        # The kernel looks for the next archive's magic at a 4-byte aligned
        # offset and skips zero padding in between.
        cat "$base"
        head -c $(( (4 - $(stat -c %s "$base") % 4) % 4 )) /dev/zero
        (cd "$link" && find -L payload | LC_ALL=C sort |
            cpio -o -H newc -R 0:0 --dereference --quiet)
    } > "$out/initrd.img.tmp"
    rm -rf "$link"
    mv "$out/initrd.img.tmp" "$out/initrd.img"
    ;;
disk)
    # No journal: the test host mounts it read-only.
    kb=$(du -skL "$payload" | cut -f1)
    rm -f "$out/payload.ext4.tmp"
    mke2fs -q -t ext4 -O ^has_journal -L payload -E root_owner=0:0 \
        -d "$payload" "$out/payload.ext4.tmp" "$((kb + kb / 5 + 16384))k" >/dev/null
    mv "$out/payload.ext4.tmp" "$out/payload.ext4"
    cp "$base" "$out/initrd.img"
    ;;
esac

{
    echo "payload_mode=$mode"
    echo "kernel_package=$kpkg"
    echo "kernel_release=$(cat "$out/kernel_release")"
    echo "payload_dir=$payload"
} > "$out/testhost.info"
mvx_log "test host ready in $out (payload: $mode, $(du -shL "$payload" | cut -f1))"
