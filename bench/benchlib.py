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
import re
import subprocess
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
              log_dir: Path, files: dict | None = None,
              deb_binaries: dict | None = None) -> Bench:
    """Starts the host the bench runs on: LocalHost when this machine's
    /dev/kvm runs guests of arch, else the test host of arch in
    build/TESTHOST (x86_64) or build/TESTHOST-ARCH, built and booted
    (under the emulator MINIVMM_TESTHOST_QEMU names, hostlib.testhost_qemu).
    files, deb_binaries: as hostlib.Payload's."""
    payload = hostlib.Payload(binaries=binaries, guest_dir=guest, with_qemu=with_qemu,
                              arch=arch, files=dict(files or {}),
                              deb_binaries=dict(deb_binaries or {}))
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


# QEMU 10 (bookworm-backports, tests/testhost/qemu10.sh) as a second peer
# beside the system's QEMU 7.2: its binary under this name in the payload
# and the ROMs `-M pc` direct kernel boot loads (the same list as 7.2's in
# tests/testhost/build.sh) in share/qemu10, its -L directory.
QEMU10_BINARY = "qemu-system-x86_64-10"
QEMU10_FIRMWARE = ("bios-256k.bin", "linuxboot_dma.bin", "kvmvapic.bin",
                   "vgabios-stdvga.bin", "efi-e1000.rom")


def add_qemu10(arch: str, binaries: dict, files: dict) -> None:
    """Puts QEMU 10 into a payload (fetched and unpacked on first use)."""
    if arch != "x86_64":
        raise SystemExit("the QEMU 10 peer is x86_64 only (tests/testhost/qemu10.sh "
                         "fetches qemu-system-x86)")
    d = hostlib.qemu10_dir()
    binaries[QEMU10_BINARY] = d / "root" / "usr" / "bin" / "qemu-system-x86_64"
    for f in QEMU10_FIRMWARE:
        files[f"share/qemu10/{f}"] = d / "firmware" / f


def qemu10_peer(host) -> dict:
    """host.qemu_cmd() keywords that make the peer QEMU 10: program and
    firmware_dir. On the local KVM: the wrapper, which also keeps QEMU 10
    away from the system QEMU 7.2's modules."""
    if host.kind == "local":
        d = hostlib.qemu10_dir()
        return {"program": str(d / "bin" / "qemu-system-x86_64"),
                "firmware_dir": str(d / "firmware")}
    return {"program": host.path(QEMU10_BINARY), "firmware_dir": "/payload/share/qemu10"}


def qemu_version(program: str) -> str:
    """'10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)' from a QEMU on this
    machine, for reports."""
    out = subprocess.run([program, "--version"], stdout=subprocess.PIPE, text=True,
                         check=True).stdout
    m = re.search(r"QEMU emulator version (.*)", out)
    return m.group(1).strip() if m else out.splitlines()[0]


def emulator(host) -> str:
    """What the measured VMMs ran under: the test host's emulator and its
    version, or the local KVM."""
    if host.kind == "local":
        return "local /dev/kvm (no emulator)"
    return f"{Path(host.qemu).name} {qemu_version(host.qemu)} (TCG)"
