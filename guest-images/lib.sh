# Shell helpers shared by guest-images/build.sh and tests/testhost/build.sh.
# Source it; it defines functions only.
#
# Everything that ends up in a guest or test-host image comes from Debian
# packages fetched with `apt-get download` into a cache directory, so images
# are reproducible from the package archive and nothing from the build
# machine's own /bin or /lib leaks into a guest.

# Debian architecture of the images: amd64 (x86-64, the default) or arm64.
# Set it with mvx_set_arch before any other call; every package is fetched
# for this architecture (as PKG:ARCH, so arm64 packages come through
# multi-arch on an amd64 machine: `dpkg --add-architecture arm64`).
MVX_ARCH=amd64
# GNU triplet of MVX_ARCH (library directories) and the ELF machine name
# readelf prints for it.
MVX_TRIPLET=x86_64-linux-gnu
MVX_ELF_MACHINE="Advanced Micro Devices X86-64"

# mvx_set_arch x86_64|amd64|arm64|aarch64
mvx_set_arch() {
    case $1 in
    x86_64|amd64)  MVX_ARCH=amd64 MVX_TRIPLET=x86_64-linux-gnu
                   MVX_ELF_MACHINE="Advanced Micro Devices X86-64" ;;
    arm64|aarch64) MVX_ARCH=arm64 MVX_TRIPLET=aarch64-linux-gnu MVX_ELF_MACHINE=AArch64 ;;
    *) mvx_die "unknown architecture '$1' (want x86_64 or arm64)" ;;
    esac
}

# mvx_native_arch -> this machine's Debian architecture.
mvx_native_arch() {
    dpkg --print-architecture 2>/dev/null || case $(uname -m) in
        x86_64) echo amd64 ;; aarch64) echo arm64 ;; *) uname -m ;; esac
}

mvx_log() { echo "[${MVX_PROG:-$(basename "$0")}] $*" >&2; }
mvx_die() { mvx_log "error: $*"; exit 1; }

# Default package cache: $MINIVMM_CACHE, else ~/.cache/minivmm/debs.
mvx_default_cache() {
    echo "${MINIVMM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/minivmm/debs}"
}

# apt-cache re-reads all package lists on every call where apt's binary cache
# is disabled (as in Debian container images): ~0.7 s per call. So package
# names and versions are looked up once, in the calling shell, and the results
# kept in these variables for the functions below (also in subshells).
# Keys are PKG:ARCH, where ARCH is the package's own (MVX_ARCH or "all").
MVX_PKGNAMES=
declare -gA MVX_APT_VER=() MVX_APT_ARCH=() MVX_APT_DEPENDS=()

# mvx_qual PKG -> PKG:MVX_ARCH (unless PKG already names an architecture).
mvx_qual() {
    case $1 in *:*) echo "$1" ;; *) echo "$1:$MVX_ARCH" ;; esac
}

# mvx_apt_key PKG -> the key PKG's apt facts are kept under ("" if unknown).
mvx_apt_key() {
    local q n a
    q=$(mvx_qual "$1"); n=${q%%:*}; a=${q#*:}
    if [ -n "${MVX_APT_VER[$n:$a]:-}" ]; then echo "$n:$a"
    elif [ -n "${MVX_APT_VER[$n:all]:-}" ]; then echo "$n:all"
    fi
}

# mvx_apt_prime PKG... : candidate version, architecture and Depends of each
# PKG (for MVX_ARCH) that apt knows, in one apt-cache call.
mvx_apt_prime() {
    local p v a d q=()
    for p; do q+=("$(mvx_qual "$p")"); done
    while IFS=$'\t' read -r p v a d; do
        MVX_APT_VER[$p:$a]=$v
        MVX_APT_ARCH[$p:$a]=$a
        MVX_APT_DEPENDS[$p:$a]=$d
    done < <(apt-cache show --no-all-versions "${q[@]}" 2>/dev/null | awk '
        function out() { if (p != "") printf("%s\t%s\t%s\t%s\n", p, v, a, d); p = ""; d = "" }
        /^Package:/ {p = $2} /^Version:/ {v = $2} /^Architecture:/ {a = $2}
        /^(Pre-)?Depends:/ {sub(/^[^:]*: */, ""); d = (d == "" ? $0 : d ", " $0)}
        /^$/ {out()}
        END {out()}')
}

# mvx_prime_kernel_names : the kernel package names apt knows (one prefix
# covers both series). Call it in the main shell before $(mvx_kernel_pkg ...).
mvx_prime_kernel_names() {
    [ -n "$MVX_PKGNAMES" ] || MVX_PKGNAMES=$(apt-cache pkgnames linux-image-6.1 2>/dev/null || true)
}

# mvx_kernel_pkg SERIES -> name of the cloud-MVX_ARCH kernel package to use.
# $MINIVMM_KERNEL_PKG_6_1 / $MINIVMM_KERNEL_PKG_6_12 (amd64) and
# $MINIVMM_KERNEL_PKG_ARM64_6_1 / $MINIVMM_KERNEL_PKG_ARM64_6_12 (arm64) pin an
# exact package; otherwise the newest one apt knows about is taken (the ABI
# number is part of the package name, so "newest" has to be found among the
# names).
mvx_kernel_pkg() {
    local series=$1 pin re pfx=MINIVMM_KERNEL_PKG_
    [ "$MVX_ARCH" = amd64 ] || pfx=MINIVMM_KERNEL_PKG_${MVX_ARCH^^}_
    case $series in
    6.1)  pin=$(printenv "${pfx}6_1" || true)
          re="^linux-image-6\\.1\\.0-[0-9]+-cloud-$MVX_ARCH-unsigned\$" ;;
    6.12) pin=$(printenv "${pfx}6_12" || true)
          re="^linux-image-6\\.12\\.[0-9]+\\+deb[0-9]+-cloud-$MVX_ARCH-unsigned\$" ;;
    *)    mvx_die "unknown kernel series '$series' (want 6.1 or 6.12)" ;;
    esac
    if [ -n "$pin" ]; then
        echo "$pin"
        return
    fi
    mvx_prime_kernel_names
    local pkg
    pkg=$(echo "$MVX_PKGNAMES" | grep -E "$re" | sort -V | tail -n1)
    if [ -z "$pkg" ]; then
        # No apt lists (offline or before `apt-get update`): fall back to the
        # newest package already in the cache.
        pkg=$(ls "$MVX_CACHE" 2>/dev/null | sed -n 's/_.*\.deb$//p' | grep -E "$re" |
              sort -V | tail -n1)
    fi
    [ -n "$pkg" ] || mvx_die "no package matches $re (run 'apt-get update'?)"
    echo "$pkg"
}

# mvx_fetch_deb PKG -> path of PKG's .deb (for MVX_ARCH) in $MVX_CACHE,
# downloading it with `apt-get download` unless the candidate version is
# already cached.
mvx_fetch_deb() {
    mvx_fetch_debs "$1"
}

# mvx_fetch_debs PKG... -> the paths of the PKGs' .debs, one a line, in the
# order given; those not cached yet come in one `apt-get download` call.
mvx_fetch_debs() {
    local pkg key ver arch file tmp files=() want=()
    mkdir -p "$MVX_CACHE"
    local unknown=()
    for pkg; do [ -n "$(mvx_apt_key "$pkg")" ] || unknown+=("$pkg"); done
    [ ${#unknown[@]} = 0 ] || mvx_apt_prime "${unknown[@]}"
    for pkg; do
        key=$(mvx_apt_key "$pkg")
        pkg=${pkg%%:*}
        if [ -z "$key" ]; then
            file=$(ls "$MVX_CACHE/${pkg}_"*"_$MVX_ARCH.deb" "$MVX_CACHE/${pkg}_"*_all.deb 2>/dev/null |
                   sort -V | tail -n1)
            [ -n "$file" ] || mvx_die "apt does not know $pkg:$MVX_ARCH and it is not cached in $MVX_CACHE"
            mvx_log "apt does not know $pkg:$MVX_ARCH; using cached $(basename "$file")"
            files+=("$file")
            continue
        fi
        ver=${MVX_APT_VER[$key]} arch=${MVX_APT_ARCH[$key]}
        # apt-get download names files pkg_version_arch.deb with ':' escaped as %3a.
        file="$MVX_CACHE/${pkg}_${ver//:/%3a}_${arch}.deb"
        files+=("$file")
        [ -s "$file" ] || want+=("$pkg:$arch=$ver")
    done
    if [ ${#want[@]} -gt 0 ]; then
        mvx_log "downloading ${want[*]}"
        # Download into a private directory and rename, so an interrupted or
        # concurrent download never leaves a truncated .deb under the final name.
        tmp=$(mktemp -d "$MVX_CACHE/.dl.XXXXXX")
        local sandbox=()
        # As root apt drops to user _apt, which cannot write into $HOME/.cache.
        [ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root)
        if ! (cd "$tmp" && apt-get download -q "${sandbox[@]}" "${want[@]}" >&2); then
            rm -rf "$tmp"
            mvx_die "apt-get download ${want[*]} failed"
        fi
        mv "$tmp"/*.deb "$MVX_CACHE/"
        rm -rf "$tmp"
    fi
    for file in "${files[@]}"; do
        [ -s "$file" ] || mvx_die "apt-get download did not give $(basename "$file")"
        echo "$file"
    done
}

# mvx_lib_closure PKG... -> PKG and, recursively, every library package
# (a name with "lib" in it: libfoo1, zlib1g) its Depends name, for MVX_ARCH:
# what a program from PKG needs to run. The first of alternatives is taken;
# other packages (helpers, data, dpkg, qemu-system-common...) are not
# followed.
mvx_lib_closure() {
    local -A seen=()
    local todo=("$@") next=() p key d
    while [ ${#todo[@]} -gt 0 ]; do
        next=()
        for p in "${todo[@]}"; do seen[${p%%:*}]=1; done
        mvx_apt_prime "${todo[@]}"
        for p in "${todo[@]}"; do
            key=$(mvx_apt_key "$p")
            [ -n "$key" ] || mvx_die "apt does not know $(mvx_qual "$p")"
            echo "${p%%:*}"
            # "a (>= 1), b | c, d:any" -> a b d
            for d in $(echo "${MVX_APT_DEPENDS[$key]}" | tr ',' '\n' |
                       sed 's/|.*//; s/(.*)//; s/:any//; s/^ *//; s/ *$//'); do
                case $d in *lib*) ;; *) continue ;; esac
                [ -n "${seen[$d]:-}" ] && continue
                seen[$d]=1
                next+=("$d")
            done
        done
        todo=(${next[@]+"${next[@]}"})
    done
}

# mvx_unpack_deb DEB -> directory holding DEB's extracted files (cached next to
# the .debs; extracting a kernel package takes seconds, so do it once). Kernel
# packages do not ship modules.dep (the postinst runs depmod), so depmod is run
# here on the extracted tree.
mvx_unpack_deb() {
    local deb=$1 dir
    dir="$MVX_CACHE/unpacked/$(basename "$deb" .deb)"
    if [ ! -e "$dir/.complete" ]; then
        # A private directory renamed into place: builds running at the same
        # time (other worktrees share the cache) never see half a tree.
        local tmp kver
        mkdir -p "$MVX_CACHE/unpacked"
        tmp=$(mktemp -d "$dir.tmp.XXXXXX")
        dpkg-deb -x "$deb" "$tmp"
        for kver in $(ls "$tmp/lib/modules" 2>/dev/null); do
            depmod -b "$tmp" "$kver" ||
                mvx_die "depmod failed for $kver (package kmod installed?)"
        done
        touch "$tmp/.complete"
        [ -e "$dir/.complete" ] || { rm -rf "$dir"; mv -T "$tmp" "$dir" 2>/dev/null; }
        [ -e "$dir/.complete" ] || mvx_die "cannot unpack $deb into $dir"
        rm -rf "$tmp"
    fi
    echo "$dir"
}

# mvx_kernel_release UNPACKED_DIR -> the kernel release (uname -r) it contains.
mvx_kernel_release() {
    local rels
    rels=$(ls "$1/lib/modules")
    [ "$(echo "$rels" | wc -l)" = 1 ] || mvx_die "expected one kernel in $1, found: $rels"
    echo "$rels"
}

# mvx_check_kernel_image FILE : dies unless FILE is a kernel MVX_ARCH boots:
# a bzImage ("HdrS" at 0x202) on amd64, an arm64 Image ("ARM\x64" at 56,
# Debian ships it uncompressed) on arm64.
mvx_check_kernel_image() {
    local f=$1
    case $MVX_ARCH in
    amd64) [ "$(dd if="$f" bs=1 skip=514 count=4 status=none)" = HdrS ] ||
               mvx_die "$f is not a bzImage" ;;
    arm64) [ "$(dd if="$f" bs=1 skip=56 count=4 status=none | od -An -tx1 | tr -d ' ')" = 41524d64 ] ||
               mvx_die "$f is not an arm64 Image (compressed? Debian's arm64 vmlinuz is a plain Image)" ;;
    esac
}

# mvx_module_closure MODDIR NAME... -> module files (relative to MODDIR), with
# every dependency before its users: the order in which insmod must load them.
# Names use '_' or '-' interchangeably, as modprobe does. Modules built into
# the kernel (modules.builtin) are skipped with a note.
mvx_module_closure() {
    local moddir=$1
    shift
    awk -v want="$*" '
        function norm(p,   n) {
            n = p; sub(/.*\//, "", n); sub(/\.ko(\.[a-z0-9]+)?$/, "", n)
            gsub(/-/, "_", n); return n
        }
        function visit(n,   i, cnt, d) {
            if (n in done) return
            done[n] = 1
            cnt = split(deps[n], d, " ")
            for (i = 1; i <= cnt; i++) visit(norm(d[i]))
            print path[n]
        }
        FILENAME ~ /modules\.builtin$/ { builtin[norm($0)] = 1; next }
        {
            p = $1; sub(/:$/, "", p); n = norm(p)
            path[n] = p; deps[n] = ""
            for (i = 2; i <= NF; i++) deps[n] = deps[n] " " $i
        }
        END {
            cnt = split(want, w, " ")
            for (i = 1; i <= cnt; i++) {
                n = norm(w[i])
                if (n in path) visit(n)
                else if (n in builtin) printf("note: %s is built into this kernel\n", w[i]) > "/dev/stderr"
                else { printf("error: no module %s\n", w[i]) > "/dev/stderr"; bad = 1 }
            }
            exit bad
        }
    ' "$moddir/modules.builtin" "$moddir/modules.dep"
}

# mvx_install_modules UNPACKED_DIR DESTROOT NAME... : copies NAME's closure,
# decompressed (busybox insmod cannot load the .ko.xz files of newer Debian
# kernels), to DESTROOT/lib/modules/ and lists them in load order in
# DESTROOT/etc/modules.load.
mvx_install_modules() {
    local src=$1 dest=$2
    shift 2
    local kver moddir list ko base
    kver=$(mvx_kernel_release "$src")
    moddir="$src/lib/modules/$kver"
    list=$(mvx_module_closure "$moddir" "$@") || mvx_die "cannot resolve modules: $*"
    mkdir -p "$dest/lib/modules" "$dest/etc"
    : > "$dest/etc/modules.load"
    for ko in $list; do
        base=$(basename "$ko")
        case $base in
        *.ko)     cp "$moddir/$ko" "$dest/lib/modules/$base" ;;
        *.ko.xz)  base=${base%.xz};  xz -dc "$moddir/$ko" > "$dest/lib/modules/$base" ;;
        *.ko.zst) base=${base%.zst}; zstd -qdc "$moddir/$ko" > "$dest/lib/modules/$base" ;;
        *.ko.gz)  base=${base%.gz};  gzip -dc "$moddir/$ko" > "$dest/lib/modules/$base" ;;
        *)        mvx_die "unexpected module file $ko" ;;
        esac
        echo "$base" >> "$dest/etc/modules.load"
    done
}

# mvx_install_busybox DESTROOT : busybox from the busybox-static package
# (for MVX_ARCH), with one symlink per applet at the path busybox itself
# reports. A busybox of another architecture cannot tell its applets here:
# then only /bin/sh is linked, and the image's /init must begin with
# `[ -e /bin/mount ] || /bin/busybox --install -s` (both /inits do).
mvx_install_busybox() {
    local dest=$1 bb applet
    bb="$(mvx_unpack_deb "$(mvx_fetch_deb busybox-static)")/bin/busybox"
    [ -x "$bb" ] || mvx_die "busybox-static package has no bin/busybox"
    mkdir -p "$dest/bin" "$dest/sbin" "$dest/usr/bin" "$dest/usr/sbin"
    cp "$bb" "$dest/bin/busybox"
    if ! mvx_runs_here "$bb"; then
        ln -sf /bin/busybox "$dest/bin/sh"
        return
    fi
    for applet in $("$bb" --list-full); do
        [ "$applet" = bin/busybox ] && continue
        # Absolute links keep this independent of the applet's directory depth.
        ln -sf /bin/busybox "$dest/$applet"
    done
}

# mvx_runs_here ELF : whether ELF is for this machine's architecture.
mvx_runs_here() {
    local native
    case $(uname -m) in
    x86_64)  native="Advanced Micro Devices X86-64" ;;
    aarch64) native=AArch64 ;;
    *)       native=$(uname -m) ;;
    esac
    [ "$(mvx_elf_machine "$1")" = "$native" ]
}

# mvx_elf_machine ELF -> the machine readelf names ("AArch64", ...).
mvx_elf_machine() {
    LC_ALL=C readelf -h "$1" 2>/dev/null | sed -n 's/^ *Machine: *//p'
}

# mvx_make_cpio SRCDIR OUT COMPRESSION(gzip|none) : a newc archive owned by
# root with fixed timestamps, so identical inputs give an identical image.
mvx_make_cpio() {
    local src=$1 out=$2 comp=$3
    find "$src" -exec touch -h -d @0 {} +
    (
        cd "$src"
        find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet
    ) | case $comp in
        gzip) gzip -n -9 ;;
        none) cat ;;
        *)    mvx_die "unknown compression $comp" ;;
        esac > "$out.tmp"
    mv "$out.tmp" "$out"
}

# mvx_hash FILE... -> one hash over the files' contents (for up-to-date stamps).
mvx_hash() {
    cat "$@" | sha256sum | cut -c1-16
}
