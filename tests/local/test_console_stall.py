"""Issue 10 item 1: guest console output never blocks a vCPU or the exit.
stdout is a pipe nobody reads while the tiny guest prints without end: the
UART's bounded buffer fills, output is dropped and counted, the guest keeps
running, and SIGTERM still ends minivmm within 2 s."""
import os
import select
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "api"))
from apiclient import request  # noqa: E402

pytestmark = pytest.mark.usefixtures("local_kvm")

WARNING = b"console: stdout is not taking guest output"


def start_flood(minivmm, tiny_kernel, tmp_path):
    sock = str(tmp_path / "api.sock")
    # stdout: a pipe this test never reads. stderr: read line by line.
    p = subprocess.Popen([minivmm, "--kernel", tiny_kernel, "--cmdline", "flood",
                          "--api-sock", sock],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p, sock


def wait_for_drop_warning(p, timeout=60):
    """Blocks on stderr until minivmm says it drops output: by then the pipe
    and the UART's buffer are full. Fails if minivmm never says so."""
    deadline = time.monotonic() + timeout
    fd = p.stderr.fileno()
    seen = b""
    while WARNING not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        seen += chunk
    else:
        return seen
    pytest.fail(f"minivmm never reported dropping console output; stderr: {seen!r}")


def dropped_metric(sock):
    body = request(sock, "GET", "/metrics").body.decode()
    for line in body.splitlines():
        if line.startswith("minivmm_console_output_dropped_bytes_total "):
            return int(line.split()[1])
    raise AssertionError("no minivmm_console_output_dropped_bytes_total in /metrics")


def test_unread_stdout_costs_output_not_the_exit(minivmm, tiny_kernel, tmp_path):
    p, sock = start_flood(minivmm, tiny_kernel, tmp_path)
    try:
        seen = wait_for_drop_warning(p)
        first = dropped_metric(sock)
        assert first > 0
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=2)
        elapsed = time.monotonic() - t0
        err = (seen + p.stderr.read()).decode()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert rc == 0, err
    assert elapsed < 2
    assert "stopped by SIGTERM" in err, err
    # Each drop episode is reported once, not once per byte.
    assert err.count("console: stdout is not taking guest output") <= 1, err


def test_guest_flooding_an_unread_stdout_still_answers_input(minivmm, tiny_kernel, tmp_path):
    p, sock = start_flood(minivmm, tiny_kernel, tmp_path)
    try:
        seen = wait_for_drop_warning(p)
        p.stdin.write(b"q")         # the guest polls its input between lines
        p.stdin.flush()
        rc = p.wait(timeout=20)
        err = (seen + p.stderr.read()).decode()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert rc == 0, err
    assert "guest powered off" in err, err
