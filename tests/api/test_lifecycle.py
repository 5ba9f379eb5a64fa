"""The API socket's life: created 0600, stale ones replaced, live ones and
other files refused, removed at exit; shutdown and reboot through the API.
Each test runs its own VMM."""
import json
import os
import socket
import stat
import subprocess
import time

import pytest

from apiclient import UnixHTTPConnection, Vmm, curl, request

pytestmark = pytest.mark.usefixtures("local_kvm")


@pytest.fixture
def sock_path(tmp_path):
    return str(tmp_path / "vm.sock")


def test_shutdown_action_ends_the_vmm_cleanly(minivmm, tiny_kernel, sock_path):
    v = Vmm(minivmm, tiny_kernel, sock_path).start()
    ev = UnixHTTPConnection(sock_path, timeout=15)
    ev.request("GET", "/events")
    stream = ev.getresponse()
    r = curl(sock_path, "PUT", "/vm/actions", {"action": "shutdown"})
    assert r.status == 202, r
    assert r.json() == {"action": "shutdown"}
    t0 = time.monotonic()
    rc = v.wait_exit(timeout=15)
    took = time.monotonic() - t0
    err = v.stderr()
    assert rc == 0, err
    assert "stopped through the API" in err
    assert not os.path.exists(sock_path)
    v.check_sanitizers()
    # The stream got the last word, then ended.
    lines = [json.loads(x) for x in stream.read().splitlines()]
    ev.close()
    assert lines and lines[-1]["event"] == "shutdown", lines
    assert lines[-1]["reason"] == "api" and lines[-1]["status"] == 0
    print(f"\nPUT shutdown -> VMM exit in {took:.3f} s")


def test_reboot_action_resets_the_vm(minivmm, tiny_kernel, sock_path):
    """PUT /vm/actions reboot is a system reset: minivmm stays, the guest
    starts over, the API keeps answering across it, and events tell."""
    v = Vmm(minivmm, tiny_kernel, sock_path).start()
    r = request(sock_path, "PATCH", "/virtio-mem/node0", body={"requested_size": "256M"})
    assert r.status == 202
    conn = UnixHTTPConnection(sock_path, timeout=30)
    conn.request("GET", "/events")
    stream = conn.getresponse()
    assert stream.status == 200
    r = request(sock_path, "PUT", "/vm/actions", body={"action": "reboot"})
    assert r.status == 202 and r.json() == {"action": "reboot"}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        info = request(sock_path, "GET", "/vm").json()
        if info["reboots"] == 1 and info["state"] == "running":
            break
        time.sleep(0.05)
    assert info["reboots"] == 1 and info["state"] == "running", info
    dev = request(sock_path, "GET", "/virtio-mem/node0").json()
    assert dev["requested_size"] == 256 << 20 and dev["plugged_size"] == 0, dev
    event = json.loads(stream.readline())
    assert event["event"] == "reboot", event
    assert "reboot requested through the API" in event["reason"], event
    conn.close()
    assert v.proc.poll() is None
    assert "reboot requested through the API: resetting the VM" in v.stderr()
    v.stop_and_check()


def test_sigterm_removes_the_socket(minivmm, tiny_kernel, sock_path):
    v = Vmm(minivmm, tiny_kernel, sock_path).start()
    st = os.lstat(sock_path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    v.stop_and_check()


def test_mode_is_0600_whatever_the_umask(minivmm, tiny_kernel, sock_path):
    old = os.umask(0)
    try:
        v = Vmm(minivmm, tiny_kernel, sock_path).start()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.lstat(sock_path).st_mode) == 0o600
    v.stop_and_check()


def test_stale_socket_is_replaced(minivmm, tiny_kernel, sock_path):
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(sock_path)
    dead.close()                      # the file stays, nobody listens
    assert stat.S_ISSOCK(os.lstat(sock_path).st_mode)
    v = Vmm(minivmm, tiny_kernel, sock_path).start()
    assert request(sock_path, "GET", "/vm").status == 200
    assert stat.S_IMODE(os.lstat(sock_path).st_mode) == 0o600
    v.stop_and_check()


def test_live_socket_is_refused(minivmm, tiny_kernel, sock_path):
    live = socket.socket(socket.AF_UNIX)
    live.bind(sock_path)
    live.listen(1)
    try:
        v = Vmm(minivmm, tiny_kernel, sock_path).start(wait=False)
        rc = v.wait_exit(timeout=20)
        err = v.stderr()
        assert rc == 1, err
        assert f"--api-sock {sock_path}: another process is serving this socket" in err
        # Theirs is left alone.
        assert stat.S_ISSOCK(os.lstat(sock_path).st_mode)
        c = socket.socket(socket.AF_UNIX)
        c.connect(sock_path)
        c.close()
        v.check_sanitizers()
    finally:
        live.close()


def test_two_vmms_on_one_socket(minivmm, tiny_kernel, sock_path):
    first = Vmm(minivmm, tiny_kernel, sock_path).start()
    second = Vmm(minivmm, tiny_kernel, sock_path, extra=[])
    second.stderr_path = sock_path + ".second.stderr"
    second.start(wait=False)
    assert second.wait_exit(timeout=20) == 1
    assert "another process is serving this socket" in second.stderr()
    assert request(sock_path, "GET", "/vm").status == 200   # the first still serves
    first.stop_and_check()


def run_cli(minivmm, tiny_kernel, *args):
    return subprocess.run([minivmm, "--kernel", tiny_kernel, "--cmdline", "s", "--mem", "64M",
                           *args], stdin=subprocess.DEVNULL, capture_output=True, timeout=30)


def test_non_socket_file_is_refused(minivmm, tiny_kernel, sock_path):
    with open(sock_path, "w") as f:
        f.write("keep me")
    r = run_cli(minivmm, tiny_kernel, "--api-sock", sock_path)
    assert r.returncode == 2
    assert f"--api-sock {sock_path}: exists and is not a socket" in r.stderr.decode()
    with open(sock_path) as f:
        assert f.read() == "keep me"


@pytest.mark.parametrize("path,message", [
    ("/nonexistent-dir-minivmm/vm.sock", "directory /nonexistent-dir-minivmm:"),
    ("/tmp/" + "s" * 120, "path longer than 107 bytes"),
    ("", "--api-sock: empty path"),
])
def test_bad_paths_exit_2(minivmm, tiny_kernel, path, message):
    r = run_cli(minivmm, tiny_kernel, "--api-sock", path)
    assert r.returncode == 2
    assert message in r.stderr.decode()


def test_unbindable_path_exits_1(minivmm, tiny_kernel):
    """The directory exists (the CLI's check passes) but bind fails: even root
    cannot create files in /proc."""
    r = run_cli(minivmm, tiny_kernel, "--api-sock", "/proc/minivmm-test.sock")
    assert r.returncode == 1
    assert "--api-sock /proc/minivmm-test.sock: bind:" in r.stderr.decode()
