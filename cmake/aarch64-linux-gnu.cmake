# Cross build for aarch64 on a Debian x86_64 machine:
#   cmake -S . -B build-arm64 --toolchain cmake/aarch64-linux-gnu.cmake
# Debian's cross compiler (gcc-aarch64-linux-gnu) with the arm64 libraries
# installed through multi-arch (tests/deps.sh): they live in
# /usr/lib/aarch64-linux-gnu, and their headers are shared in /usr/include.
# A native aarch64 build needs none of this: `cmake -S . -B build`.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)

# find_library looks in <prefix>/lib/aarch64-linux-gnu, never in the
# build machine's /usr/lib/x86_64-linux-gnu. No sysroot: multi-arch
# libraries are installed in the real /usr.
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

# pkg-config reads the arm64 .pc files only (not the build machine's).
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")

# Programs (pkg-config, python3) are the build machine's.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
