"""The virtio-mem host memory bound against a hostile guest, on the local
/dev/kvm: hostile_guest.c drives the device itself, plugs one block per
1 GiB slot in turn (requested is the whole region, so only what is plugged
bounds it), and then reads or writes the unplugged blocks beside the one it
holds. The region must never hold more host memory than the plugged bytes, and
the first such access must stop the VM (status 1) with a line naming the
device, the address and the rule, a guest_error event, and a count in
blocked_accesses, without the access being served."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "api"))
import tinyguest  # noqa: E402
from apiclient import open_events, read_events, request  # noqa: E402

pytestmark = pytest.mark.usefixtures("local_kvm")

REGION_GPA = 0x100000000        # above 4 GiB with --mem 64M
SLOT = 1 << 30
BLOCK = 2 << 20


@pytest.fixture(scope="module")
def hostile_kernel(tmp_path_factory):
    return tinyguest.build(str(tmp_path_factory.mktemp("hostile") / "hostile.bzImage"),
                           source="hostile_guest.c")


REGION = 4 << 30


def region_smaps(pid, size=REGION):
    """{field: bytes} summed over the process's mappings of exactly `size`
    bytes (the region: minivmm maps it whole, anonymous memory or a memfd),
    read from /proc/PID/smaps, so independent of what minivmm reports."""
    fields, found, inside = {}, False, False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
                lo, hi = (int(x, 16) for x in head[0].split("-"))
                inside = hi - lo == size
                found |= inside
            elif inside and len(head) == 3 and head[2] == "kB":
                fields[head[0].rstrip(":")] = fields.get(head[0].rstrip(":"), 0) + int(head[1]) * 1024
    assert found, f"no mapping of {size} bytes in /proc/{pid}/smaps"
    return fields


def region_host_bytes(pid):
    """Host memory behind the region: a memfd's allocated blocks (st_blocks,
    mapped or not) if minivmm backs it with one, else the Rss of its
    anonymous mapping."""
    total, found = 0, False
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if "minivmm-hotplug" in os.readlink(f"/proc/{pid}/fd/{fd}"):
                total += os.stat(f"/proc/{pid}/fd/{fd}").st_blocks * 512
                found = True
        except OSError:
            continue
    return total if found else region_smaps(pid)["Rss"]


def read_until(stream, marker, timeout=30):
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        assert time.monotonic() < deadline, f"no {marker!r} in {seen!r}"
        chunk = os.read(stream.fileno(), 4096)
        assert chunk, f"stream ended before {marker!r}: {seen!r}"
        seen += chunk
    return seen




@pytest.mark.parametrize("slot,access", [(0, "r"), (1, "w"), (2, "r"), (3, "w")])
def test_hostile_guest_cannot_make_the_host_back_unplugged_blocks(
        minivmm, hostile_kernel, tmp_path, slot, access):
    sock_path = str(tmp_path / "api.sock")
    p = subprocess.Popen([minivmm, "--kernel", hostile_kernel, "--cmdline", f"X{slot}{access}",
                          "--mem", "64M", "--virtio-mem", "m0:4G,block=2M,requested=4G,guard=on",
                          "--api-sock", sock_path],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out = read_until(p.stdout, b"HOSTILE-READY")
        for s in range(slot):
            assert f"HOSTILE-CYCLE {s}".encode() in out, out
        # One block plugged (and written), the earlier slots' blocks unplugged.
        held = region_host_bytes(p.pid)
        dev = request(sock_path, "GET", "/virtio-mem/m0").json()
        assert dev["plugged_size"] == BLOCK, dev
        assert dev["host_backed_bound"] == BLOCK, dev
        assert dev["host_backed_bytes"] <= BLOCK, dev
        assert held <= BLOCK, held
        assert dev["blocked_accesses"] == 0, dev
        events = open_events(sock_path)
        p.stdin.write(b"x")
        p.stdin.flush()
        stdout, stderr = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    out += stdout
    err = stderr.decode(errors="replace")
    gpa = REGION_GPA + slot * SLOT + SLOT // 2 + BLOCK
    verb = "read from" if access == "r" else "wrote to"
    assert b"HOSTILE-SERVED" not in out, (out, err)
    assert p.returncode == 1, (out, err)
    assert (f"m0: guest {verb} unplugged memory at {gpa:#x}; unplugged blocks are "
            f"inaccessible (VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE): VM stopped") in err, err
    # Whose access faulted: a vCPU thread of minivmm, or a kernel worker
    # KVM sent (an x86 async page fault).
    assert re.search(rf"m0: the access to unplugged memory at {gpa:#x} faulted in "
                     r"(minivmm thread \d+|kernel thread \d+, not minivmm's)", err), err
    evs = read_events(events)
    errors = [e for e in evs if e.get("event") == "guest_error"]
    assert errors == [dict(errors[0], id="m0", gpa=gpa,
                           access="read" if access == "r" else "write",
                           rule="unplugged_inaccessible")], evs
    assert evs[-1]["event"] == "shutdown" and evs[-1]["status"] == 1, evs


def test_blocked_access_is_counted_in_the_metrics(minivmm, hostile_kernel, tmp_path):
    """The counter as /metrics shows it, read while the VM is stopping."""
    sock_path = str(tmp_path / "api.sock")
    p = subprocess.Popen([minivmm, "--kernel", hostile_kernel, "--cmdline", "X0r",
                          "--mem", "64M", "--virtio-mem", "m0:4G,block=2M,requested=4G,guard=on",
                          "--api-sock", sock_path],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        read_until(p.stdout, b"HOSTILE-READY")
        metrics = request(sock_path, "GET", "/metrics").body.decode()
        assert 'minivmm_virtio_mem_blocked_accesses_total{id="m0",node="0"} 0' in metrics
        assert 'minivmm_virtio_mem_late_fetches_refused_total{id="m0",node="0"} 0' in metrics
        assert 'minivmm_virtio_mem_host_backed_bound_bytes{id="m0",node="0"} 2097152' in metrics
        # The plug of that block (a populate and a memslot) took the device
        # measurable time, and far less than the whole run so far.
        m = re.search(r'^minivmm_virtio_mem_serving_seconds_total\{id="m0",node="0"\} '
                      r'([0-9.]+)$', metrics, re.M)
        assert m, metrics
        assert 0 < float(m.group(1)) < 10, m.group(0)
        # The guest wrote the block it plugged: the guard backed that first
        # touch, and timed it apart from serving the requests.
        m = re.search(r'^minivmm_virtio_mem_first_touch_seconds_total\{id="m0",node="0"\} '
                      r'([0-9.]+)$', metrics, re.M)
        assert m, metrics
        assert 0 < float(m.group(1)) < 10, m.group(0)
        p.stdin.write(b"x")
        p.stdin.flush()
        p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 1


def test_a_guarded_region_of_anonymous_memory_is_refused(minivmm, hostile_kernel):
    """hugepages=thp|off make a region anonymous memory, which the guard
    cannot back without splitting the mapping at every plug on Linux 6.1
    (vmm/cli/virtio_mem_opts.c): with the guard on (the default) they are
    refused at start, naming the option, before any VM exists."""
    for backing in ("thp", "off"):
        p = subprocess.run([minivmm, "--kernel", hostile_kernel, "--mem", "64M",
                            "--virtio-mem", f"m0:4G,block=2M,hugepages={backing}"],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        err = p.stderr.decode(errors="replace")
        assert p.returncode == 2, err
        assert f"m0: hugepages={backing} needs guard=off: a guarded region is a memfd" in err, err
