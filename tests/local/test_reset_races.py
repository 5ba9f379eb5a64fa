"""What must hold around a guest reset, forced with the test-build hooks
(build-asan, -DMINIVMM_TEST_HOOKS=ON, vmm/test_hooks.h; the release build
has none):

- A vCPU thread that cannot be joined (MINIVMM_TEST_STUCK_VCPU=N holds vCPU
  N's thread for 60 s after its run loop ends): its kvm_run, its fds and the
  VM state it reaches must never be freed under it, so minivmm ends the
  process with status 3 and a line naming the vCPU instead of destroying or
  rebuilding the VM.
- A resize the API answered while a reset is on its way
  (MINIVMM_TEST_RESET_DELAY_MS=N holds each reset N ms before it takes the
  control lock) is kept by the rebuilt VM."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "api"))
from apiclient import request  # noqa: E402

pytestmark = pytest.mark.usefixtures("local_kvm")

REPO = Path(__file__).resolve().parents[2]
HOOKS_BINARY = os.environ.get("MINIVMM_TRIGGER_BINARY", str(REPO / "build-asan" / "minivmm"))
JOIN_TIMEOUT_S = 5              # VCPU_JOIN_TIMEOUT_S in vmm/vm.h


@pytest.fixture
def hooks_binary():
    if not os.path.exists(HOOKS_BINARY):
        pytest.fail(f"{HOOKS_BINARY} missing: build build-asan with -DMINIVMM_TEST_HOOKS=ON "
                    "(tests/run-all does)")
    return HOOKS_BINARY


def read_until(p, marker, timeout=30):
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        assert time.monotonic() < deadline, seen[-300:]
        chunk = os.read(p.stdout.fileno(), 4096)
        assert chunk, seen[-300:]
        seen += chunk
    return seen


@pytest.mark.parametrize("cmdline,stop", [("spin", "sigterm"), ("reboot", "guest reboot")])
def test_a_vcpu_that_cannot_be_joined_ends_the_process(hooks_binary, tiny_kernel, tmp_path,
                                                       cmdline, stop):
    sock = tmp_path / "api.sock"
    env = dict(os.environ, MINIVMM_TEST_STUCK_VCPU="1")
    p = subprocess.Popen([hooks_binary, "--kernel", tiny_kernel, "--cmdline", cmdline,
                          "--cpus", "2", "--mem", "64M", "--virtio-mem", "m:1G",
                          "--api-sock", str(sock)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    try:
        out = read_until(p, b"TINY-GUEST zero-page")
        start = time.monotonic()
        if stop == "sigterm":
            p.send_signal(signal.SIGTERM)
        rest, err = p.communicate(timeout=JOIN_TIMEOUT_S + 20)
        took = time.monotonic() - start
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    out, err = (out + rest).decode(errors="replace"), err.decode(errors="replace")
    assert p.returncode == 3, err
    assert (f"vCPU 1 did not stop within {JOIN_TIMEOUT_S} s; its state cannot be freed while "
            "it may still run") in err, err
    assert err.rstrip().splitlines()[-1] == \
        "minivmm: error: a vCPU did not stop: exiting without freeing the VM (status 3)", err
    # Not rebuilt: the guest booted once; not waited on for the hook's 60 s.
    assert out.count("TINY-GUEST zero-page") == 1, out[-500:]
    assert "resetting the VM" not in err
    assert took < JOIN_TIMEOUT_S + 10, took
    assert "AddressSanitizer" not in err and "runtime error" not in err, err
    assert not sock.exists()


def test_resizes_answered_during_a_reboot_loop_are_kept(hooks_binary, tiny_kernel, tmp_path):
    """Resizes while the guest reboots at once, every time, each reset held
    20 ms before it locks: after each answered resize and two more resets,
    the device still asks for that size. A reset that read the sizes before
    its lock dropped a resize answered in between (about every other one)."""
    sock = str(tmp_path / "api.sock")
    env = dict(os.environ, MINIVMM_TEST_RESET_DELAY_MS="20")
    p = subprocess.Popen([hooks_binary, "--kernel", tiny_kernel, "--cmdline", "reboot",
                          "--mem", "64M", "--virtio-mem", "m:8G", "--api-sock", sock],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=env)

    def reboots():
        return request(sock, "GET", "/vm").json()["reboots"]

    lost = []
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(sock):
            assert time.monotonic() < deadline and p.poll() is None
            time.sleep(0.01)
        for k in range(1, 31):
            size = k * (128 << 20)
            r = request(sock, "PATCH", "/virtio-mem/m", body={"requested_size": size})
            assert r.status == 202, r.body
            answered_at = reboots()
            deadline = time.monotonic() + 30
            while reboots() < answered_at + 2:
                assert time.monotonic() < deadline, "the guest stopped rebooting"
            got = request(sock, "GET", "/virtio-mem/m").json()["requested_size"]
            if got != size:
                lost.append((size, got))
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert lost == [], f"{len(lost)} of 30 answered resizes lost to a reset: {lost}"
    assert p.returncode == 0, err.decode(errors="replace")
