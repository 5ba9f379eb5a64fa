"""arm64 guest errors a real guest can cause: a data abort that KVM cannot
decode (no instruction syndrome, as for a load/store pair) at an address no
memslot covers. minivmm stops the VM as the guest's error: exit status 1, a
message naming the vCPU, the access and the address, a `guest_error` event
with rule `mmio_syndrome` (docs/arm64.md, docs/api.md), and no crash.

The guest makes the access with /bin/nisv-probe (guest-images/tools/
nisv-probe.c), which maps the address through /dev/mem; Debian's kernels
(STRICT_DEVMEM, IO_STRICT_DEVMEM) map it only where no RAM is and no driver
has claimed it: a hole in the address map, or the window of a virtio-mmio
device whose driver is not loaded."""
import json
import re
import shlex
import time

import pytest

from test_boot_linux import BOOT_TIMEOUT, PROMPT, READY, guest_cmdline, minivmm_cmd

SOCK = "/tmp/minivmm-nisv-test.sock"
EVENTS = "/tmp/minivmm-nisv-test.events"
HEADERS = "/tmp/minivmm-nisv-test.headers"

# The arm64 address map (arch/arm64/layout.h, docs/arm64.md): the 64 virtio-mmio
# windows end at 0x0A040000, the GIC redistributors start at 0x0C000000.
# Nothing lives in between, so no memslot and no device claim this address.
HOLE = 0x0B000000
# The first virtio-mmio window (one device: node0's).
FIRST_VIRTIO_WINDOW = 0x0A000000

NO_SYNDROME = "with an instruction that gives no syndrome"
# The address of the probe's access instruction, printed before it runs.
PC = r"NISV-PROBE-PC (0x[0-9a-f]{16})\r?\n"


def boot(host, minivmm, series, *, cpus, cmdline, extra=()):
    host.run(f"rm -f {SOCK} {EVENTS} {HEADERS}")
    cmd = minivmm_cmd(host, minivmm, series, cpus=cpus, mem="512M", cmdline=cmdline,
                      extra=["--api-sock", SOCK, *extra])
    s = host.spawn(cmd)
    s.expect(READY, timeout=BOOT_TIMEOUT)
    s.expect(PROMPT, timeout=60)
    # Follow the events with a real streaming client, and wait until the
    # stream is open (its headers arrived): the guest's error may end the VMM
    # a second later, before a slow-starting curl would have connected.
    # ?since=0 also replays what happened before.
    curl = [host.path("curl"), "-sSN", "-D", HEADERS, "--unix-socket", SOCK,
            "http://localhost/events?since=0"]
    host.check(f"({shlex.join(curl)} > {EVENTS} 2>&1 &)")
    host.check(f"i=0; until grep -q '^HTTP/1.1 200' {HEADERS} 2>/dev/null; do "
               f"[ $i -lt 300 ] || {{ cat {EVENTS}; exit 1; }}; i=$((i+1)); usleep 100000; done",
               timeout=60)
    return s


def events(host, timeout=30):
    """The event stream's events, once it has ended (its last line is the
    shutdown event, then minivmm closes it), and curl's whole output."""
    deadline = time.monotonic() + timeout
    while True:
        out = host.check(f"cat {EVENTS}")
        lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        if (lines and lines[-1]["event"] == "shutdown") or time.monotonic() > deadline:
            return lines, out
        time.sleep(0.5)


def guest_text(out):
    """The console output without minivmm's own lines: minivmm writes the
    guest's console output from its own thread, so its stderr lines may cut
    into a guest line anywhere (seen: "NISV-PROBE ldp", the vCPU's
    registers, then " at 0xb000000")."""
    return re.sub(r"minivmm: [^\n]*\n", "", out)


def probe(s, cmd, pattern, timeout=60):
    s.sendline(cmd)
    return s.expect(pattern, timeout=timeout)


@pytest.mark.arm64
@pytest.mark.only_arch("arm64", reason="KVM_EXIT_ARM_NISV (a data abort without syndrome) "
                                       "is arm64's; the x86_64 guest images have no nisv-probe")
def test_load_pair_from_a_hole_stops_the_vm(host, minivmm):
    s = boot(host, minivmm, "6.1", cpus=2, cmdline=guest_cmdline(host))
    # A plain load from the same address has a syndrome: an MMIO exit that
    # nothing claims, answered with all-ones. So /dev/mem maps the hole, and
    # the VM survives the access KVM can decode.
    m = probe(s, f"taskset -c 1 nisv-probe {HOLE:#x} ldr",
              r"NISV-PROBE-LDR (0x[0-9a-f]+)\r?\n|nisv-probe: .*\r?\n")
    assert m.group(1) == "0xffffffffffffffff", m.group(0)
    s.expect(PROMPT, timeout=60)
    assert (f"minivmm: warning: vCPU 1: read of 8 bytes at unmapped guest address {HOLE:#x}"
            in s.output), s.output[-3000:]

    # The load pair, on the guest's CPU 1 (vCPU 1): the VM stops.
    pc = probe(s, f"taskset -c 1 nisv-probe {HOLE:#x} ldp", PC).group(1)
    status = s.wait_exit(timeout=60)
    out = s.output
    assert f"NISV-PROBE ldp at {HOLE:#x}" in guest_text(out), out[-3000:]
    assert status == 1, out[-3000:]         # the guest's error: not a signal, not success
    assert (f"minivmm: error: guest error: vCPU 1 read from unmapped guest-physical memory at "
            f"{HOLE:#x} {NO_SYNDROME}") in out, out[-3000:]
    assert "VM stopped" in out, out[-3000:]
    assert "NISV-PROBE-RETURNED" not in out, out[-3000:]
    # The vCPU's state is in the log: its PC is the probe's LDP.
    assert f"vCPU 1: PC = {pc}" in out and "vCPU 1: ESR_EL1 = 0x" in out, out[-3000:]

    ev, text = events(host)
    errors = [e for e in ev if e["event"] == "guest_error"]
    assert len(errors) == 1, text
    e = errors[0]
    assert e["rule"] == "mmio_syndrome" and e["gpa"] == HOLE and e["access"] == "read", e
    assert "id" not in e, e                 # no device owns the hole
    assert ev[-1]["event"] == "shutdown", ev
    assert ev[-1]["reason"] == "error" and ev[-1]["status"] == 1, ev[-1]


@pytest.mark.arm64
@pytest.mark.only_arch("arm64", reason="KVM_EXIT_ARM_NISV (a data abort without syndrome) "
                                       "is arm64's; the x86_64 guest images have no nisv-probe")
def test_store_pair_to_a_device_window_names_the_device(host, minivmm):
    # virtio_mmio not loaded: the window is described but unclaimed, so
    # /dev/mem maps it.
    s = boot(host, minivmm, "6.12", cpus=1,
             cmdline=guest_cmdline(host, "minivmm.defer=virtio_mmio"),
             extra=["--virtio-mem", "node0:1G"])
    # The device tree puts the device where the test expects it.
    # (the platform device is named ADDR.NODE-NAME, the node is virtio@ADDR).
    m = probe(s, "ls /sys/bus/platform/devices | grep virtio | sed 's/^/WIN=/; s/$/=END/'",
              r"WIN=([0-9a-f]+)\.virtio=END\r?\n")
    assert int(m.group(1), 16) == FIRST_VIRTIO_WINDOW, m.group(0)
    s.expect(PROMPT, timeout=60)

    pc = probe(s, f"nisv-probe {FIRST_VIRTIO_WINDOW:#x} stp", PC).group(1)
    status = s.wait_exit(timeout=60)
    out = s.output
    assert f"NISV-PROBE stp at {FIRST_VIRTIO_WINDOW:#x}" in guest_text(out), out[-3000:]
    assert status == 1, out[-3000:]
    assert (f"minivmm: error: guest error: vCPU 0 wrote to virtio-mem node0 at "
            f"{FIRST_VIRTIO_WINDOW:#x} {NO_SYNDROME}") in out, out[-3000:]
    assert "NISV-PROBE-RETURNED" not in out, out[-3000:]
    assert f"vCPU 0: PC = {pc}" in out, out[-3000:]

    ev, text = events(host)
    errors = [e for e in ev if e["event"] == "guest_error"]
    assert len(errors) == 1, text
    e = errors[0]
    assert e == {**e, "rule": "mmio_syndrome", "gpa": FIRST_VIRTIO_WINDOW, "access": "write",
                 "id": "virtio-mem node0"}, e
    assert ev[-1]["event"] == "shutdown" and ev[-1]["status"] == 1, ev[-1]
