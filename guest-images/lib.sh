# Shell helpers shared by guest-images/build.sh and tests/testhost/build.sh.
# Source it; it defines functions only.
#
# Everything that ends up in a guest or test-host image comes from Debian
# packages fetched with `apt-get download` into a cache directory, so images
# are reproducible from the package archive and nothing from the build
# machine's own /bin or /lib leaks into a guest.

# Debian architecture of the images (x86-64 guests and test host).
MVX_ARCH=amd64

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
MVX_PKGNAMES=
declare -gA MVX_APT_VER=() MVX_APT_ARCH=()

# mvx_apt_prime PKG... : candidate version and architecture of each PKG that
# apt knows, in one apt-cache call.
mvx_apt_prime() {
    local p v a
    while read -r p v a; do
        MVX_APT_VER[$p]=$v
        MVX_APT_ARCH[$p]=$a
    done < <(apt-cache show --no-all-versions "$@" 2>/dev/null | awk '
        /^Package:/ {p = $2} /^Version:/ {v = $2} /^Architecture:/ {a = $2}
        /^$/ {if (p != "") print p, v, a; p = ""}
        END {if (p != "") print p, v, a}')
}

# mvx_prime_kernel_names : the kernel package names apt knows (one prefix
# covers both series). Call it in the main shell before $(mvx_kernel_pkg ...).
mvx_prime_kernel_names() {
    [ -n "$MVX_PKGNAMES" ] || MVX_PKGNAMES=$(apt-cache pkgnames linux-image-6.1 2>/dev/null || true)
}

# mvx_kernel_pkg SERIES -> name of the cloud-amd64 kernel package to use.
# $MINIVMM_KERNEL_PKG_6_1 / $MINIVMM_KERNEL_PKG_6_12 pin an exact package;
# otherwise the newest one apt knows about is taken (the ABI number is part of
# the package name, so "newest" has to be found among the names).
mvx_kernel_pkg() {
    local series=$1 pin re
    case $series in
    6.1)  pin=${MINIVMM_KERNEL_PKG_6_1:-}
          re='^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$' ;;
    6.12) pin=${MINIVMM_KERNEL_PKG_6_12:-}
          re='^linux-image-6\.12\.[0-9]+\+deb[0-9]+-cloud-amd64-unsigned$' ;;
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

# mvx_fetch_deb PKG -> path of PKG's .deb in $MVX_CACHE, downloading it with
# `apt-get download` unless the candidate version is already cached.
mvx_fetch_deb() {
    local pkg=$1 ver arch file tmp
    mkdir -p "$MVX_CACHE"
    [ -n "${MVX_APT_VER[$pkg]:-}" ] || mvx_apt_prime "$pkg"
    ver=${MVX_APT_VER[$pkg]:-}
    arch=${MVX_APT_ARCH[$pkg]:-}
    if [ -z "$ver" ]; then
        file=$(ls "$MVX_CACHE/${pkg}_"*.deb 2>/dev/null | sort -V | tail -n1)
        [ -n "$file" ] || mvx_die "apt does not know $pkg and it is not cached in $MVX_CACHE"
        mvx_log "apt does not know $pkg; using cached $(basename "$file")"
        echo "$file"
        return
    fi
    # apt-get download names files pkg_version_arch.deb with ':' escaped as %3a.
    file="$MVX_CACHE/${pkg}_${ver//:/%3a}_${arch}.deb"
    if [ ! -s "$file" ]; then
        mvx_log "downloading $pkg $ver"
        # Download into a private directory and rename, so an interrupted or
        # concurrent download never leaves a truncated .deb under the final name.
        tmp=$(mktemp -d "$MVX_CACHE/.dl.XXXXXX")
        local sandbox=()
        # As root apt drops to user _apt, which cannot write into $HOME/.cache.
        [ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root)
        if ! (cd "$tmp" && apt-get download -q "${sandbox[@]}" "$pkg=$ver" >&2); then
            rm -rf "$tmp"
            mvx_die "apt-get download $pkg=$ver failed"
        fi
        mv "$tmp"/*.deb "$file"
        rm -rf "$tmp"
    fi
    echo "$file"
}

# mvx_unpack_deb DEB -> directory holding DEB's extracted files (cached next to
# the .debs; extracting a kernel package takes seconds, so do it once). Kernel
# packages do not ship modules.dep (the postinst runs depmod), so depmod is run
# here on the extracted tree.
mvx_unpack_deb() {
    local deb=$1 dir
    dir="$MVX_CACHE/unpacked/$(basename "$deb" .deb)"
    if [ ! -e "$dir/.complete" ]; then
        rm -rf "$dir" "$dir.tmp"
        mkdir -p "$dir.tmp"
        dpkg-deb -x "$deb" "$dir.tmp"
        local kver
        for kver in $(ls "$dir.tmp/lib/modules" 2>/dev/null); do
            depmod -b "$dir.tmp" "$kver" ||
                mvx_die "depmod failed for $kver (package kmod installed?)"
        done
        mv "$dir.tmp" "$dir"
        touch "$dir/.complete"
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

# mvx_install_busybox DESTROOT : busybox from the busybox-static package, with
# one symlink per applet at the path busybox itself reports.
mvx_install_busybox() {
    local dest=$1 bb applet
    bb="$(mvx_unpack_deb "$(mvx_fetch_deb busybox-static)")/bin/busybox"
    [ -x "$bb" ] || mvx_die "busybox-static package has no bin/busybox"
    mkdir -p "$dest/bin" "$dest/sbin" "$dest/usr/bin" "$dest/usr/sbin"
    cp "$bb" "$dest/bin/busybox"
    for applet in $("$bb" --list-full); do
        [ "$applet" = bin/busybox ] && continue
        # Absolute links keep this independent of the applet's directory depth.
        ln -sf /bin/busybox "$dest/$applet"
    done
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
