"""pytest fixtures for minivmm's boot tests (run: /usr/bin/python3 -m pytest tests/boot).

Environment:
  MINIVMM_ARCH        x86_64 | arm64: the architecture of the guests, of
                      minivmm and of the host they run on (default: this
                      machine's). arm64 on an x86_64 machine runs in the arm64
                      test host (QEMU/TCG, Debian's arm64 kernel with KVM).
  MINIVMM_TEST_HOST   auto (default) | local | qemu
                      auto: local when /dev/kvm is hardware virtualization of
                      MINIVMM_ARCH (kvm_intel/kvm_amd loaded, or /dev/kvm on
                      an arm64 machine), else the QEMU test host.
  MINIVMM_BINARY      minivmm to test, built for MINIVMM_ARCH (default
                      build/minivmm, or build-arm64/minivmm for arm64 on an
                      x86_64 machine); if it does not exist or is built for
                      another architecture, the `minivmm` fixture fails and
                      says why.
  MINIVMM_GUEST_DIR   guest images (default build/guest, for arm64
                      build/guest-arm64; built on demand by
                      guest-images/build.sh --arch).
  MINIVMM_TESTHOST_DIR  test host work directory (default build/testhost,
                      for arm64 build/testhost-arm64).
  MINIVMM_TESTHOST_PAYLOAD_MODE  disk (default) or initrd, see tests/testhost/build.sh.
  MINIVMM_TESTHOST_CPUS  test host vCPUs (default 3, see below).
  MINIVMM_TESTHOST_QEMU  10 (default) or 7.2 (the system's QEMU): the
                      emulator the x86_64 test host runs under (QEMU 10 from
                      bookworm-backports, unpacked by tests/testhost/qemu10.sh;
                      the peer VMM in the payload stays the system's 7.2).
                      The arm64 test host always runs under the system's
                      qemu-system-aarch64.

Tests marked @pytest.mark.qemu_peer get the peer VMM (host.qemu_name:
qemu-system-x86_64, or Debian's arm64 qemu-system-aarch64) in the payload
(host.qemu_cmd()); the payload includes it only when such a test is selected.

Tests marked @pytest.mark.arm64 also run with MINIVMM_ARCH=arm64 (run-all
selects them with -m arm64); with MINIVMM_ARCH=arm64 every other test is
skipped, as it was written for x86_64 only. A test of one architecture's own
behaviour is marked @pytest.mark.only_arch("arm64", reason="...") as well:
with any other MINIVMM_ARCH it is skipped, with that reason.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostlib  # noqa: E402

_log_dirs: list[Path] = []


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "qemu_peer: needs the peer VMM (qemu-system-x86_64 or -aarch64) on the host")
    config.addinivalue_line(
        "markers", "arm64: also runs with MINIVMM_ARCH=arm64 (the arm64 guests and host)")
    config.addinivalue_line(
        "markers", "only_arch(arch, reason): runs only with MINIVMM_ARCH=arch; "
                   "skipped for the others, with reason")


def _arch() -> str:
    name = os.environ.get("MINIVMM_ARCH") or hostlib.machine_arch()
    try:
        return hostlib.normalize_arch(name)
    except hostlib.HostError as e:
        raise pytest.UsageError(f"MINIVMM_ARCH: {e}") from None


def pytest_collection_modifyitems(config, items):
    arch = _arch()
    for item in items:
        only = item.get_closest_marker("only_arch")
        if only is not None and hostlib.normalize_arch(only.args[0]) != arch:
            why = only.kwargs.get("reason", "")
            item.add_marker(pytest.mark.skip(
                reason=f"{only.args[0]} only, MINIVMM_ARCH={arch}" + (f": {why}" if why else "")))
    if arch == "x86_64":
        return
    skip = pytest.mark.skip(reason=f"written for x86_64 only (no @pytest.mark.{arch}); "
                                   f"MINIVMM_ARCH={arch}")
    for item in items:
        if item.get_closest_marker(arch) is None:
            item.add_marker(skip)


def _choose_host_kind(arch: str) -> str:
    kind = os.environ.get("MINIVMM_TEST_HOST", "auto")
    if kind == "auto":
        return "local" if hostlib.kvm_is_hardware(arch) else "qemu"
    if kind not in ("local", "qemu"):
        raise pytest.UsageError(f"MINIVMM_TEST_HOST={kind!r}: want auto, local or qemu")
    if kind == "local" and arch != hostlib.machine_arch():
        raise pytest.UsageError(f"MINIVMM_TEST_HOST=local: this machine cannot run "
                                f"{arch} guests (it is {hostlib.machine_arch()})")
    return kind


def _repo_path(var: str, default: str) -> Path:
    p = Path(os.environ.get(var, default))
    return p if p.is_absolute() else hostlib.REPO / p


# Why the minivmm fixture cannot give a binary (None: it can).
_minivmm_missing: str | None = None


def _minivmm_binary(arch: str) -> Path | None:
    """MINIVMM_BINARY (or the default build for arch) if it exists and is
    built for arch; else None, with the reason in _minivmm_missing."""
    global _minivmm_missing
    minivmm = _repo_path("MINIVMM_BINARY", str(hostlib.default_minivmm(arch)))
    why = hostlib.minivmm_unusable(minivmm, arch)
    _minivmm_missing = f"{why} (set MINIVMM_BINARY, MINIVMM_ARCH is {arch})" if why else None
    return None if why else minivmm


@pytest.fixture(scope="session")
def host(request, tmp_path_factory):
    """The host the boot tests run on (hostlib.LocalHost or hostlib.TestHostVM),
    booted once per session."""
    arch = _arch()
    kind = _choose_host_kind(arch)
    log_dir = tmp_path_factory.mktemp(f"host-{kind}-{arch}")
    _log_dirs.append(log_dir)

    guest_dir = _repo_path("MINIVMM_GUEST_DIR", str(hostlib.default_guest_dir(arch)))
    hostlib.ensure_guest_images(guest_dir, arch=arch)

    binaries = {}
    deb_binaries = {}
    minivmm = _minivmm_binary(arch)
    if minivmm:
        binaries["minivmm"] = minivmm
    # A real HTTP client for the API tests (with its libraries). For another
    # architecture's test host, Debian's curl for that architecture.
    curl = Path("/usr/bin/curl")
    if arch != hostlib.machine_arch():
        if kind == "qemu":
            deb_binaries["curl"] = "curl:/usr/bin/curl"
    elif curl.exists():
        binaries["curl"] = curl
    with_qemu = any(item.get_closest_marker("qemu_peer") for item in request.session.items)
    payload = hostlib.Payload(binaries=binaries, guest_dir=guest_dir, with_qemu=with_qemu,
                              arch=arch, deb_binaries=deb_binaries)

    if kind == "local":
        h = hostlib.LocalHost(payload, log_dir)
    else:
        default_dir = "build/testhost" if arch == "x86_64" else f"build/testhost-{arch}"
        h = hostlib.TestHostVM(
            payload, _repo_path("MINIVMM_TESTHOST_DIR", default_dir), log_dir,
            payload_mode=os.environ.get("MINIVMM_TESTHOST_PAYLOAD_MODE", "disk"),
            # One test-host vCPU more than the largest nested guest: once (in
            # ~10 nested boots) a 2-vCPU guest spinning in both test-host vCPUs
            # froze the whole test host, control shell included.
            cpus=int(os.environ.get("MINIVMM_TESTHOST_CPUS", "3")))
        h.build()
        h.boot()
    yield h
    h.close()


@pytest.fixture(autouse=True)
def _end_sessions(request):
    """Kills programs a test left running on the host, so that a failed test
    does not take the console from the next one."""
    yield
    if "host" in request.fixturenames:
        request.getfixturevalue("host").cleanup_sessions()


# Every minivmm thread on the host: state, where it waits in the kernel, its
# kernel stack. A guest that never answers is then told apart from a VMM
# stuck in the host kernel (a D-state process that even SIGKILL cannot end).
_MINIVMM_THREADS = r"""
for p in $(pidof minivmm); do
  for t in /proc/$p/task/*; do
    echo "== pid $p tid ${t##*/} $(cat $t/comm) state=$(cut -d' ' -f3 $t/stat) wchan=$(cat $t/wchan)"
    cat $t/stack 2>/dev/null
  done
done
echo "load: $(cat /proc/loadavg)"
"""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    h = item.funcargs.get("host")
    if h is None:
        return
    try:
        _, out = h.run(_MINIVMM_THREADS, timeout=30)
    except Exception as e:  # the host itself may be what failed
        out = f"(could not ask the host: {e})"
    report.sections.append(("minivmm threads on the host when the test failed", out))


def pytest_terminal_summary(terminalreporter):
    for d in _log_dirs:
        terminalreporter.write_line(f"host transcripts: {d}")


@pytest.fixture
def minivmm(host):
    """Path of the minivmm binary on the host (built for host.arch)."""
    if not host.has("minivmm"):
        pytest.fail(_minivmm_missing or "minivmm is not in the payload")
    return host.path("minivmm")
