"""The API with a real guest (curl and `minivmm ctl` on the host): grow and
shrink a virtio-mem device while the guest runs, wait for the guest, follow
the events, resize before the driver loads, and reboot (system reset). The
device has the host's enforcement on (guard=on): the cooperative guest plugs,
unplugs, shrinks to 0 and reboots without one access refused, and the host
never backs more than what is plugged."""
import json
import shlex

import pytest

from test_boot_linux import BOOT_TIMEOUT, PROMPT, READY, guest_cmdline, minivmm_cmd
from test_virtio_mem import online_region_bytes, run

SOCK = "/tmp/minivmm-api-test.sock"
EVENTS = "/tmp/minivmm-api-test.events"
GIB = 1 << 30


def curl(host, method, path, body=None):
    args = [host.path("curl"), "-sS", "--unix-socket", SOCK, "-X", method,
            "-w", "\\n%{http_code}", f"http://localhost{path}"]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
    out = host.check(shlex.join(args), timeout=300)
    text, _, code = out.rstrip("\n").rpartition("\n")
    return int(code), (json.loads(text) if text.strip() else None)


def ctl(host, minivmm, *args, timeout=300):
    return host.run(shlex.join([minivmm, "ctl", "--api-sock", SOCK, *args]) + " 2>&1",
                    timeout=timeout)


def online_bytes(s, host):
    return online_region_bytes(s, device(host)["addr"])


def memtotal_kb(s):
    return int(run(s, "sed -n 's/^MemTotal: *\\([0-9]*\\) kB$/MEM\\1END/p' /proc/meminfo",
                   r"MEM(\d+)END\r?\n").group(1))


def device(host):
    """The device, with the guard's promise checked on every read: a
    cooperative Linux guest never touches unplugged memory, and the host
    backs no more than what is plugged (guard=on)."""
    code, d = curl(host, "GET", "/virtio-mem/node0")
    assert code == 200, d
    assert d["blocked_accesses"] == 0, d
    assert d["host_backed_bound"] == d["plugged_size"], d
    assert d["host_backed_bytes"] <= d["plugged_size"], d
    return d


def assert_every_thread_sandboxed(host):
    """Every thread of the VMM runs under its seccomp filter (mode 2)."""
    out = host.check("p=$(pidof minivmm); for t in /proc/$p/task/*; do "
                     "printf '%s %s\\n' \"$(cat $t/comm)\" \"$(sed -n 's/^Seccomp:[[:space:]]*//p' $t/status)\"; "
                     "done")
    threads = [line.rsplit(" ", 1) for line in out.splitlines() if line.strip()]
    names = [n for n, _ in threads]
    # main, two vCPUs, the console, the device, the guard and the API's.
    assert len(threads) >= 7 and "vcpu1" in names and "vio-node0" in names, threads
    assert all(mode == "2" for _, mode in threads), threads


@pytest.mark.arm64
def test_resize_events_and_reboot(host, minivmm):
    host.run(f"rm -f {SOCK} {EVENTS}")
    cmd = minivmm_cmd(host, minivmm, "6.1", cpus=2, mem="1G",
                      cmdline=guest_cmdline(host, "minivmm.defer=virtio_mem"),
                      extra=["--virtio-mem", "node0:8G,guard=on", "--api-sock", SOCK])
    s = host.spawn(cmd)
    s.expect(READY, timeout=BOOT_TIMEOUT)
    s.expect(PROMPT, timeout=60)
    # Follow the events from the start, with a real streaming client.
    host.check(f"({shlex.join([host.path('curl'), '-sN', '--unix-socket', SOCK])} "
               f"http://localhost/events > {EVENTS} 2>&1 &)")

    d = device(host)
    assert d["driver_state"] == "not_probed" and d["plugged_size"] == 0, d

    # Resize before the driver loads: the guest picks it up on probe.
    code, d = curl(host, "PATCH", "/virtio-mem/node0", {"requested_size": "1G"})
    assert code == 202 and d["requested_size"] == GIB, (code, d)
    base_kb = memtotal_kb(s)
    run(s, "loadmod virtio_mem; echo LOA''DED", r"LOADED\r?\n")
    code, d = curl(host, "PATCH", "/virtio-mem/node0?wait=120", {"requested_size": GIB})
    assert code == 200 and d["plugged_size"] == GIB and d["driver_state"] == "active", (code, d)
    assert online_bytes(s, host) == GIB
    assert_every_thread_sandboxed(host)

    # Grow to 4 GiB with minivmm ctl --wait; MemTotal follows.
    rc, out = ctl(host, minivmm, "resize", "node0", "4G", "--wait", "240")
    assert rc == 0, out
    assert "requested 4G, plugged 4G" in out, out
    assert online_bytes(s, host) == 4 * GIB
    assert memtotal_kb(s) - base_kb == 4 * GIB // 1024

    # The guard (on by default) backs plugged blocks as the guest touches
    # them: far less than the 4 GiB plugged, and a 256 MiB file in the
    # guest's tmpfs (wherever the guest puts it) never takes it above.
    before = device(host)["host_backed_bytes"]
    assert before < 2 * GIB, before
    run(s, "dd if=/dev/zero of=/tmp/fill bs=1M count=256 2>/dev/null; echo FI''LLED",
        r"FILLED\r?\n", timeout=180)
    after = device(host)["host_backed_bytes"]
    assert before <= after <= 4 * GIB, (before, after)
    run(s, "rm /tmp/fill; echo REM''OVED", r"REMOVED\r?\n")

    # Shrink to 0: online_movable memory can be offlined, so the guest gives
    # it all back, and the host's memory for the region falls to ~0.
    code, d = curl(host, "PATCH", "/virtio-mem/node0?wait=240", {"requested_size": 0})
    assert code == 200 and d["plugged_size"] == 0, (code, d)
    assert d["host_backed_bytes"] < 8 << 20, d
    assert d["memslots"] == 0, d
    assert online_bytes(s, host) == 0
    assert memtotal_kb(s) == base_kb

    rc, out = ctl(host, minivmm, "status")
    assert rc == 0 and "node0" in out and "plugged 0" in out, out

    # Reboot with 2 GiB requested and plugged: a system reset unplugs it
    # all; the new boot's driver (loaded by hand again) plugs 2 GiB again.
    rc, out = ctl(host, minivmm, "resize", "node0", "2G", "--wait", "240")
    assert rc == 0, out
    s.sendline("reboot -f")
    s.expect(r"resetting the VM", timeout=60)
    s.expect(READY, timeout=BOOT_TIMEOUT)
    s.expect(PROMPT, timeout=60)
    d = device(host)
    assert d["plugged_size"] == 0 and d["requested_size"] == 2 * GIB, d
    assert d["host_backed_bytes"] == 0 and d["memslots"] == 0, d
    run(s, "loadmod virtio_mem; echo LOA''DED", r"LOADED\r?\n")
    code, d = curl(host, "PATCH", "/virtio-mem/node0?wait=240", {"requested_size": "2G"})
    assert code == 200 and d["plugged_size"] == 2 * GIB, (code, d)
    assert device(host)["host_backed_bytes"] <= 2 * GIB
    code, vm = curl(host, "GET", "/vm")
    assert code == 200 and vm["reboots"] == 1, vm

    rc, out = ctl(host, minivmm, "shutdown")
    assert rc == 0, out
    assert s.wait_exit(timeout=60) == 0
    assert "stopped through the API" in s.output

    # The event stream told the whole story, in order.
    events = [json.loads(line) for line in host.check(f"cat {EVENTS}").splitlines()
              if line.startswith("{")]
    kinds = [(e["event"], e.get("requested_size", e.get("plugged_size", e.get("state"))))
             for e in events]
    def index(kind, value=None):
        for i, (k, v) in enumerate(kinds):
            if k == kind and (value is None or v == value):
                return i
        raise AssertionError(f"no {kind} {value} event in {kinds}")
    order = [index("virtio_mem_requested", GIB), index("virtio_mem_driver", "active"),
             index("virtio_mem_plugged", GIB), index("virtio_mem_requested", 4 * GIB),
             index("virtio_mem_plugged", 4 * GIB), index("virtio_mem_requested", 0),
             index("virtio_mem_plugged", 0), index("reboot"), index("shutdown")]
    assert order == sorted(order), kinds
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
