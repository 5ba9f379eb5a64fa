#!/bin/bash
# Builds the test host: the Linux VM, run under QEMU/TCG, whose KVM gives
# minivmm's boot tests a hardware-style /dev/kvm (see tests/boot/hostlib.py,
# which launches it). x86_64: an SVM CPU (-cpu max) and kvm_amd. arm64: a
# CPU with EL2 (-M virt,virtualization=on -cpu neoverse-n1) and the arm64
# kernel's built-in KVM.
#
# usage: tests/testhost/build.sh --payload-dir DIR --out DIR [options]
#   --payload-dir DIR   directory that becomes /payload inside the test host
#   --out DIR           where the images go (see below)
#   --arch A            x86_64 (default) or arm64: the test host's, and so the
#                       payload binaries', architecture
#   --cache DIR         .deb cache shared with guest-images/build.sh
#                       (default $MINIVMM_CACHE or ~/.cache/minivmm/debs)
#   --payload-mode M    disk (default) or initrd, see "Payload delivery" below
#   --add-binary FILE[=NAME]  first copy FILE to DIR/bin/NAME (default: its
#                       basename) and the shared libraries it links to DIR/lib
#                       (found by ldd for this machine's architecture, else by
#                       following readelf's NEEDED entries through
#                       /lib/TRIPLET and /usr/lib/TRIPLET, where multi-arch
#                       puts the arm64 libraries); may be repeated
#   --add-deb-binary PKG:PATH[=NAME]  the same for the program PATH of Debian
#                       package PKG (for --arch), downloaded with the library
#                       packages it depends on (apt-get download, cached), its
#                       libraries taken from those; e.g. curl:/usr/bin/curl
#   --with-qemu         first add the peer VMM: x86_64: this machine's
#                       qemu-system-x86_64 and the firmware it needs for direct
#                       kernel boot (DIR/share/qemu); arm64: Debian's arm64
#                       qemu-system-aarch64 (package qemu-system-arm:arm64,
#                       as with --add-deb-binary; -M virt boots a kernel
#                       directly without firmware)
#   --payload-only      only fill DIR (--add-binary, --with-qemu), build nothing
#   --refresh           look for a newer kernel package (and newer packages
#                       for --add-deb-binary) even if the cached ones are
#                       otherwise up to date
# environment:
#   MINIVMM_TESTHOST_KERNEL_PKG  pin the kernel package (default: the newest
#                       linux-image-6.1.0-NN-cloud-amd64-unsigned; any Debian
#                       kernel with KVM_AMD=m works)
#   MINIVMM_TESTHOST_KERNEL_PKG_ARM64  the same for arm64 (default: the newest
#                       linux-image-6.1.0-NN-cloud-arm64-unsigned; KVM=y. A 6.1
#                       kernel: nested boots under a 6.12 one took 3-4 s more)
#
# Outputs in OUT:
#   vmlinuz             test host kernel (arm64: an uncompressed Image)
#   initrd.img          initramfs (busybox, modules, /init); in initrd mode
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
add_deb=()
MVX_CACHE=$(mvx_default_cache)
while [ $# -gt 0 ]; do
    case $1 in
    --payload-dir)  payload=$2; shift 2 ;;
    --out)          out=$2; shift 2 ;;
    --arch)         mvx_set_arch "$2"; shift 2 ;;
    --cache)        MVX_CACHE=$2; shift 2 ;;
    --payload-mode) mode=$2; shift 2 ;;
    --add-binary)   add+=("$2"); shift 2 ;;
    --add-deb-binary) add_deb+=("$2"); shift 2 ;;
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

# payload_add_binary DIR FILE [NAME [SYSROOT...]]: FILE as DIR/bin/NAME plus
# every shared library it needs (including the dynamic loader) flat in
# DIR/lib; the test host's /init links /lib/TRIPLET and the loader there.
# A binary for this machine is asked with ldd (the libraries it really loads
# here); any other (an aarch64 minivmm built on x86_64, a program from an
# arm64 .deb) cannot run here, so its NEEDED entries are followed with
# readelf, looked up in the SYSROOTs first and then in this machine's
# /lib/TRIPLET and /usr/lib/TRIPLET (multi-arch).
payload_add_binary() {
    local dir=$1 file=$2 name=${3:-$(basename "$2")} libs lib machine
    shift 3 2>/dev/null || shift $#
    [ -x "$file" ] || mvx_die "not an executable: $file"
    machine=$(mvx_elf_machine "$file")
    [ "$machine" = "$MVX_ELF_MACHINE" ] ||
        mvx_die "$file is for '${machine:-not an ELF file}', the test host is $MVX_ARCH ($MVX_ELF_MACHINE)"
    mkdir -p "$dir/bin" "$dir/lib"
    cp -L "$file" "$dir/bin/$name.tmp"
    mv "$dir/bin/$name.tmp" "$dir/bin/$name"
    if [ $# -gt 0 ] || ! mvx_runs_here "$file"; then
        libs=$(mvx_needed_closure "$file" "$@") || exit 1
    elif ! libs=$(ldd "$file" 2>&1); then
        case $libs in
        *"not a dynamic executable"*|*"statically linked"*) return ;;
        *) mvx_die "ldd $file: $libs" ;;
        esac
    else
        if echo "$libs" | grep -q 'not found'; then
            mvx_die "ldd $file: missing libraries: $(echo "$libs" | grep 'not found' | tr -d '\t')"
        fi
        # "libx.so => /path (addr)" and "/lib64/ld-linux-x86-64.so.2 (addr)";
        # linux-vdso has no file.
        libs=$(echo "$libs" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
    fi
    for lib in $libs; do
        cmp -s "$lib" "$dir/lib/$(basename "$lib")" || cp -L "$lib" "$dir/lib/"
    done
}

# mvx_needed_closure ELF [SYSROOT...] -> the shared libraries ELF loads,
# recursively, and its program interpreter: one path a line, each named by
# the soname asked for. Dies naming a library that is not found.
mvx_needed_closure() {
    local file=$1 r d so f found
    shift
    local dirs=()
    for r in "$@" ""; do
        dirs+=("$r/lib/$MVX_TRIPLET" "$r/usr/lib/$MVX_TRIPLET" "$r/lib" "$r/usr/lib")
    done
    local -A seen=()
    local todo=("$file") want
    want=$(LC_ALL=C readelf -l "$file" | sed -n 's/.*Requesting program interpreter: \(.*\)\]$/\1/p')
    want="$(basename "$want" 2>/dev/null) "
    while [ ${#todo[@]} -gt 0 ]; do
        f=${todo[0]}
        todo=("${todo[@]:1}")
        want+=$(LC_ALL=C readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p' | tr '\n' ' ')
        for so in $want; do
            [ -n "${seen[$so]:-}" ] && continue
            seen[$so]=1
            found=
            for d in "${dirs[@]}"; do
                # Skip files of another architecture (/usr/lib holds amd64
                # libraries on an amd64 machine).
                if [ -e "$d/$so" ] && [ "$(mvx_elf_machine "$d/$so")" = "$MVX_ELF_MACHINE" ]; then
                    found=$d/$so
                    break
                fi
            done
            [ -n "$found" ] || mvx_die "$(basename "$file") needs $so: not found for $MVX_ARCH in ${*:-} /lib/$MVX_TRIPLET /usr/lib/$MVX_TRIPLET (missing an arm64 package? tests/deps.sh)"
            echo "$found"
            todo+=("$found")
        done
        want=
    done
}

# payload_add_deb_binary DIR PKG PATH [NAME]: PATH from Debian package PKG
# (for MVX_ARCH), with the libraries of the packages it depends on.
payload_add_deb_binary() {
    local dir=$1 pkg=$2 path=$3 name=${4:-$(basename "$3")} list deb roots=() debs
    list=$MVX_CACHE/closure-$pkg-$MVX_ARCH.list
    # The closure is looked up once (several apt-cache calls) and kept; with
    # --refresh, or when a .deb is gone, it is looked up again.
    if [ "$refresh" = 1 ] || [ ! -s "$list" ] ||
       ! (cd "$MVX_CACHE" && xargs -r ls < "$list" >/dev/null 2>&1); then
        local pkgs tmp
        pkgs=$(mvx_lib_closure "$pkg") || exit 1
        debs=$(mvx_fetch_debs $pkgs) || exit 1
        # Renamed into place: other worktrees' builds share the cache.
        tmp=$(mktemp "$list.XXXXXX")
        echo "$debs" | xargs -n1 basename > "$tmp"
        mv "$tmp" "$list"
    fi
    while read -r deb; do
        roots+=("$(mvx_unpack_deb "$MVX_CACHE/$deb")")
    done < "$list"
    [ -x "${roots[0]}$path" ] || mvx_die "package $pkg:$MVX_ARCH has no $path"
    payload_add_binary "$dir" "${roots[0]}$path" "$name" "${roots[@]}"
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
for a in ${add_deb[@]+"${add_deb[@]}"}; do
    p=${a%%:*} a=${a#*:}
    case $a in
    *=*) payload_add_deb_binary "$payload" "$p" "${a%%=*}" "${a#*=}" ;;
    *)   payload_add_deb_binary "$payload" "$p" "$a" ;;
    esac
done
if [ "$with_qemu" = 1 ]; then
    case $MVX_ARCH in
    amd64) payload_add_qemu "$payload" ;;
    arm64) payload_add_deb_binary "$payload" qemu-system-arm /usr/bin/qemu-system-aarch64 ;;
    esac
fi
[ "$payload_only" = 1 ] && exit 0

mkdir -p "$out"
out=$(cd "$out" && pwd)
payload=$(cd "$payload" && pwd)

# Base image: kernel + initramfs, rebuilt only when its inputs change.
# x86_64: kvm_amd needs kvm and irqbypass; the disk mode also needs
# virtio-blk on PCI. arm64: KVM is built in; the disk is a virtio-blk on
# virtio-mmio (virtio, virtio_ring and virtio_mmio are modules in 6.1). ext4
# is built into both cloud kernels. The kernel package is chosen when the
# base is built: checking apt for a newer one costs ~1.5 s (apt-cache has no
# binary cache in Debian's container images), too much for every payload
# update, so that happens only with --refresh or when the base is rebuilt.
#
# The control shell's serial port (hostlib.py's run()): x86_64 has a second
# 16550, ttyS1. QEMU 7.2's arm `virt` machine has one PL011 only (a second
# -serial goes to the secure world's UART, which Linux never sees), so the
# arm64 test host gets a 16550 on PCI (-device pci-serial), which the
# cloud-arm64 kernel drives without modules (SERIAL_8250_PCI=y) as ttyS0.
# A virtconsole (hvc0) was not taken: QEMU drops console-port output that
# its chardev cannot take at once, and a virtserialport is not a tty (no ^C).
case $MVX_ARCH in
amd64) modules="kvm_amd"
       [ "$mode" = disk ] && modules="$modules virtio_pci virtio_blk"
       kvm_config=KVM_AMD console=ttyS0 ctl_tty=ttyS1
       kpin=${MINIVMM_TESTHOST_KERNEL_PKG:-} ;;
arm64) modules=
       [ "$mode" = disk ] && modules="virtio_mmio virtio_blk"
       kvm_config=KVM console=ttyAMA0 ctl_tty=ttyS0
       kpin=${MINIVMM_TESTHOST_KERNEL_PKG_ARM64:-} ;;
esac
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
   [ "${kpin:-$kpkg}" != "$kpkg" ]; then
    if [ -n "$kpin" ]; then
        kpkg=$kpin
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
    grep -q "^CONFIG_$kvm_config=[ym]" "$kdir/boot/config-$kver" ||
        mvx_die "$kpkg has no $kvm_config"
    mvx_check_kernel_image "$kdir/boot/vmlinuz-$kver"
    stage=$(mktemp -d "$out/.stage.XXXXXX")
    mkdir -p "$stage"/{dev,proc,sys,tmp,root,etc}
    mvx_install_busybox "$stage"
    mvx_install_modules "$kdir" "$stage" $modules
    # Read by /init and mvx-ctl.
    printf 'arch=%s\nconsole=%s\nctl_tty=%s\ntriplet=%s\n' \
        "$MVX_ARCH" "$console" "$ctl_tty" "$MVX_TRIPLET" > "$stage/etc/mvx-testhost.conf"
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
    echo "arch=$MVX_ARCH"
    echo "console=$console"
    echo "payload_mode=$mode"
    echo "kernel_package=$kpkg"
    echo "kernel_release=$(cat "$out/kernel_release")"
    echo "payload_dir=$payload"
} > "$out/testhost.info"
mvx_log "test host ready in $out (payload: $mode, $(du -shL "$payload" | cut -f1))"
