"""pytest fixtures for minivmm's boot tests (run: /usr/bin/python3 -m pytest tests/boot).

Environment:
  MINIVMM_TEST_HOST   auto (default) | local | qemu
                      auto: local when /dev/kvm is hardware virtualization
                      (kvm_intel/kvm_amd loaded), else the QEMU test host.
  MINIVMM_BINARY      minivmm to test (default build/minivmm); if it does not
                      exist, host.has("minivmm") is False.
  MINIVMM_GUEST_DIR   guest images (default build/guest, built on demand by
                      guest-images/build.sh).
  MINIVMM_TESTHOST_DIR  test host work directory (default build/testhost).
  MINIVMM_TESTHOST_PAYLOAD_MODE  disk (default) or initrd, see tests/testhost/build.sh.
  MINIVMM_TESTHOST_CPUS  test host vCPUs (default 3, see below).

Tests marked @pytest.mark.qemu_peer get qemu-system-x86_64 in the payload
(host.qemu_cmd()); the payload includes it only when such a test is selected.
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
        "markers", "qemu_peer: needs qemu-system-x86_64 (the peer VMM) on the host")


def _choose_host_kind() -> str:
    kind = os.environ.get("MINIVMM_TEST_HOST", "auto")
    if kind == "auto":
        return "local" if hostlib.kvm_is_hardware() else "qemu"
    if kind not in ("local", "qemu"):
        raise pytest.UsageError(f"MINIVMM_TEST_HOST={kind!r}: want auto, local or qemu")
    return kind


def _repo_path(var: str, default: str) -> Path:
    p = Path(os.environ.get(var, default))
    return p if p.is_absolute() else hostlib.REPO / p


@pytest.fixture(scope="session")
def host(request, tmp_path_factory):
    """The host the boot tests run on (hostlib.LocalHost or hostlib.TestHostVM),
    booted once per session."""
    kind = _choose_host_kind()
    log_dir = tmp_path_factory.mktemp(f"host-{kind}")
    _log_dirs.append(log_dir)

    guest_dir = _repo_path("MINIVMM_GUEST_DIR", "build/guest")
    hostlib.ensure_guest_images(guest_dir)

    binaries = {}
    minivmm = _repo_path("MINIVMM_BINARY", "build/minivmm")
    if minivmm.exists():
        binaries["minivmm"] = minivmm
    # A real HTTP client for the API tests (with its libraries, via ldd).
    curl = Path("/usr/bin/curl")
    if curl.exists():
        binaries["curl"] = curl
    with_qemu = any(item.get_closest_marker("qemu_peer") for item in request.session.items)
    payload = hostlib.Payload(binaries=binaries, guest_dir=guest_dir, with_qemu=with_qemu)

    if kind == "local":
        h = hostlib.LocalHost(payload, log_dir)
    else:
        h = hostlib.TestHostVM(
            payload, _repo_path("MINIVMM_TESTHOST_DIR", "build/testhost"), log_dir,
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
    """Path of the minivmm binary on the host."""
    if not host.has("minivmm"):
        pytest.fail("minivmm is not built (set MINIVMM_BINARY or build build/minivmm)")
    return host.path("minivmm")
