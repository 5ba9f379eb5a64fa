"""What bench/boot and bench/plug share: the architecture they measure on
(--arch, --minivmm), the guest images for it, the host (the local /dev/kvm
when it is hardware virtualization of that architecture, else the QEMU test
host of that architecture) and the guests' kernel command lines.

x86_64 (the default on an x86_64 machine) is what the benches always did:
build/minivmm (or MINIVMM_BINARY), build/guest, the x86_64 test host in
build/testhost-NAME, "console=ttyS0 quiet" for both VMMs.

arm64: build-arm64/minivmm on an x86_64 machine (build/minivmm on an arm64
one; or MINIVMM_BINARY, or --minivmm), build/guest-arm64, the arm64 test host
(Debian's arm64 kernel with KVM under qemu-system-aarch64/TCG) in
build/testhost-NAME-arm64 with Debian's arm64 qemu-system-aarch64 as the
peer. minivmm's console is its 16550 (ttyS0), QEMU virt's the PL011
(ttyAMA0); both guests get hostlib.GUEST_CMDLINE["arm64"] (cryptomgr.notests:
the crypto self-tests stall nested boots for seconds).
"""
from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "boot"))
import hostlib  # noqa: E402

# minivmm's guest console on every architecture (x86_64: the 16550 at 0x3f8;
# arm64: the 16550 on its MMIO window, aliased serial0).


def add_arch_args(ap) -> None:
    """--arch and --minivmm, for argparse."""
    ap.add_argument("--arch", default=hostlib.machine_arch(), type=hostlib.normalize_arch,
                    help="x86_64 or arm64: guests, minivmm and peer QEMU of that "
                         "architecture (default: this machine's)")
    ap.add_argument("--minivmm", type=Path, default=None,
                    help="minivmm binary built for --arch (default: MINIVMM_BINARY, else "
                         "build/minivmm, or build-ARCH/minivmm for another architecture)")


def minivmm_binary(arch: str, explicit: Path | None) -> Path:
    """The minivmm to measure; exits with a message if it is missing or
    built for another architecture than arch."""
    if explicit is not None:
        path = explicit
    elif "MINIVMM_BINARY" in os.environ:
        path = Path(os.environ["MINIVMM_BINARY"])
    else:
        path = REPO / hostlib.default_minivmm(arch)
    if not path.is_absolute():
        path = Path.cwd() / path
    why = hostlib.minivmm_unusable(path, arch)
    if why:
        hint = (" (cmake -S . -B build-arm64 --toolchain cmake/aarch64-linux-gnu.cmake && "
                "cmake --build build-arm64)" if arch == "arm64" and not path.exists() else "")
        raise SystemExit(f"{why}{hint}")
    return path


def guest_dir(arch: str) -> Path:
    """The guest images for arch, built (or found up to date) for series."""
    return hostlib.default_guest_dir(arch)


def ensure_guest(arch: str, series: str) -> Path:
    d = guest_dir(arch)
    hostlib.ensure_guest_images(d, series, arch=arch)
    return d


def qemu_append(host, *more: str) -> str:
    """The peer QEMU's guest command line: its console (x86_64 ttyS0, arm64
    ttyAMA0) and the same options as minivmm's guest."""
    return " ".join([f"console={host.qemu_console}", hostlib.GUEST_CMDLINE[host.arch], *more])


@dataclass
class Bench:
    host: hostlib.Host
    nested: bool      # inside the QEMU test host (emulated times)
    log_dir: Path


def new_log_dir(name: str) -> Path:
    """A fresh directory for the transcripts of bench/NAME."""
    return Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))


def open_host(testhost: str, arch: str, binaries: dict, with_qemu: bool, guest: Path,
              log_dir: Path) -> Bench:
    """Starts the host the bench runs on: LocalHost when this machine's
    /dev/kvm runs guests of arch, else the test host of arch in
    build/TESTHOST (x86_64) or build/TESTHOST-ARCH, built and booted."""
    payload = hostlib.Payload(binaries=binaries, guest_dir=guest, with_qemu=with_qemu,
                              arch=arch)
    if hostlib.kvm_is_hardware(arch):
        return Bench(hostlib.LocalHost(payload, log_dir), False, log_dir)
    work = REPO / "build" / (testhost if arch == "x86_64" else f"{testhost}-{arch}")
    host = hostlib.TestHostVM(payload, work, log_dir)
    host.build()
    host.boot()
    return Bench(host, True, log_dir)


def test_host_label(arch: str) -> str:
    """How the nested test host is named in the results: x86_64 "QEMU test
    host" as before, arm64 says which emulator it is."""
    if arch == "x86_64":
        return "QEMU test host"
    return "arm64 QEMU test host (qemu-system-aarch64 TCG, -cpu neoverse-n1)"
