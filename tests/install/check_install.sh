#!/usr/bin/env bash
# `cmake --install` into a throw-away prefix gives a working minivmm, its man
# page and its documentation.   check_install.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
fail() { echo "check_install: $*" >&2; exit 1; }

bin=$prefix/bin/minivmm
[ -x "$bin" ] || fail "no executable bin/minivmm under the prefix"
version=$("$bin" --version)
expected=$(sed -n 's/^project(minivmm VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
case $version in *"$expected"*) ;; *) fail "installed --version says '$version', expected $expected" ;; esac
"$bin" ctl --help | grep -q "resize ID SIZE" || fail "installed minivmm ctl --help has no resize"

man=$prefix/share/man/man1/minivmm.1
[ -f "$man" ] || fail "no share/man/man1/minivmm.1"
MANWIDTH=80 man -l "$man" | grep -q "minivmm ctl" || fail "installed man page does not render"

doc=$prefix/share/doc/minivmm
for f in README.md api.md openapi.json architecture.md virtio-mem.md security.md; do
    [ -s "$doc/$f" ] || fail "no $f in share/doc/minivmm"
done
echo "check_install: bin/minivmm ($version), man1/minivmm.1 and docs installed under a fresh prefix"
