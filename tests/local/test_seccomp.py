"""Seccomp: every thread of a running minivmm is filtered, a forbidden call
in any thread role is fatal with a line naming the thread, its role and the
call, and --seccomp parses. The forbidden-call trigger exists only in the
test build (build-asan, -DMINIVMM_SECCOMP_TEST_TRIGGER=ON); the release build
must ignore it."""
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("local_kvm")

REPO = Path(__file__).resolve().parents[2]
TRIGGER_BINARY = os.environ.get("MINIVMM_TRIGGER_BINARY", str(REPO / "build-asan" / "minivmm"))
RELEASE_BINARY = os.environ.get("MINIVMM_RELEASE_BINARY", str(REPO / "build" / "minivmm"))


def start(binary, kernel, cmdline, *extra, env=None):
    return subprocess.Popen([binary, "--kernel", kernel, "--cmdline", cmdline, "--mem", "64M",
                             *extra], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)


@pytest.mark.parametrize("role,thread,extra", [
    ("main", "main", []),
    ("vcpu", "vcpu0", []),
    ("device", "virtio-mem m0", ["--virtio-mem", "m0:1G"]),
    ("console", "console", []),
    ("api", "api", ["--api-sock", "SOCK"]),
])
def test_forbidden_call_is_fatal_and_named(tiny_kernel, tmp_path, role, thread, extra):
    if not os.path.exists(TRIGGER_BINARY):
        pytest.fail(f"{TRIGGER_BINARY} missing: build build-asan with "
                    "-DMINIVMM_SECCOMP_TEST_TRIGGER=ON (tests/run-all does)")
    extra = [str(tmp_path / "vm.sock") if a == "SOCK" else a for a in extra]
    env = dict(os.environ, MINIVMM_SECCOMP_TRIGGER=role)
    p = start(TRIGGER_BINARY, tiny_kernel, "s", "--seccomp", "on", *extra, env=env)
    try:
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    err = err.decode()
    assert p.returncode == -signal.SIGSYS, (p.returncode, err[-2000:])
    assert (f"minivmm: seccomp: thread '{thread}' (role {role}) made a forbidden system call: "
            "kexec_load") in err, err[-2000:]


def test_release_build_has_no_trigger(tiny_kernel):
    env = dict(os.environ, MINIVMM_SECCOMP_TRIGGER="vcpu")
    p = start(RELEASE_BINARY, tiny_kernel, "p", env=env)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err.decode()[-1000:]
    assert "guest powered off" in err.decode()


def thread_seccomp_states(pid):
    states = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
            name = (task / "comm").read_text().strip()
        except FileNotFoundError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        states[f"{name}/{task.name}"] = (fields["Seccomp"].strip(),
                                         int(fields.get("Seccomp_filters", "0").strip()))
    return states


def test_every_thread_of_the_release_build_is_filtered(tiny_kernel, tmp_path):
    sock = tmp_path / "vm.sock"
    p = start(RELEASE_BINARY, tiny_kernel, "s", "--cpus", "2", "--virtio-mem", "m0:1G",
              "--api-sock", str(sock))
    try:
        deadline = time.monotonic() + 20
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        # One request first: its thread, under the API role's filter,
        # came and went.
        subprocess.run(["curl", "-s", "--unix-socket", str(sock), "http://localhost/vm"],
                       check=True, capture_output=True, timeout=10)
        time.sleep(0.3)
        states = thread_seccomp_states(p.pid)
        names = " ".join(states)
        # (the console thread runs on after stdin, /dev/null here, ends: it drains output)
        for want in ("vcpu0", "vcpu1", "vio-m0", "api-front"):
            assert want in names, states
        unfiltered = {t: s for t, s in states.items() if s[0] != "2" or s[1] < 1}
        assert not unfiltered, unfiltered
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err.decode()[-1000:]


@pytest.mark.parametrize("value,ok", [("on", True), ("log", True), ("off", True),
                                      ("strict", False)])
def test_seccomp_option(tiny_kernel, value, ok):
    p = start(RELEASE_BINARY, tiny_kernel, "p", "--seccomp", value)
    out, err = p.communicate(timeout=30)
    if ok:
        assert p.returncode == 0, err.decode()
    else:
        assert p.returncode == 2
        assert "--seccomp 'strict': expected on, log or off" in err.decode()


def test_device_events_from_a_vcpu_thread_pass_the_filter(tiny_kernel, tmp_path):
    """A guest resetting a virtio-mem device makes its vCPU thread publish an
    event (time-stamped): nothing on that path may need a call the vCPU role
    forbids, e.g. glibc's first-time time-zone load."""
    p = start(RELEASE_BINARY, tiny_kernel, "v", "--virtio-mem", "m0:1G",
              "--api-sock", str(tmp_path / "vm.sock"))
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err.decode()[-1000:]
    assert "guest powered off" in err.decode()
