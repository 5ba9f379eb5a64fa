"""virtio-mem through virtio-mmio with Debian's unmodified kernels: the guest
finds the device in ACPI, plugs what requested= asks for, the memory works,
and it lands on the NUMA node the SRAT gives it."""
import re

import pytest

from test_boot_linux import BOOT_TIMEOUT, KERNELS, PROMPT, READY, minivmm_cmd

GIB_KB = 1 << 20


def boot_with(host, minivmm, series, *, mem, cpus=1, devices=()):
    extra = []
    for d in devices:
        extra += ["--virtio-mem", d]
    s = host.spawn(minivmm_cmd(host, minivmm, series, cpus=cpus, mem=mem, extra=extra))
    m = s.expect(READY, timeout=BOOT_TIMEOUT)
    s.expect(PROMPT, timeout=60)
    return s, int(m.group(2))


def run(s, command, pattern, timeout=120):
    """Runs a guest shell command and returns the match of pattern in what
    it prints (patterns are anchored on markers that the echo of the command
    line itself cannot contain)."""
    s.sendline(command)
    m = s.expect(pattern, timeout=timeout)
    s.expect(PROMPT, timeout=60)
    return m


def wait_meminfo(s, path, field, at_least_kb, timeout_s=240):
    """Polls a meminfo-style file in the guest until field >= at_least_kb;
    returns the last value. The driver plugs from a workqueue after probe,
    so the memory arrives some time after the shell is up."""
    tries = timeout_s * 5
    cmd = (f"i=0; v=0; while [ $i -lt {tries} ]; do "
           f"v=$(sed -n 's/.*{field}: *\\([0-9]*\\) kB$/\\1/p' {path} 2>/dev/null); "
           f"[ \"${{v:-0}}\" -ge {at_least_kb} ] && break; usleep 200000; i=$((i+1)); done; "
           f"echo \"VAL\"UE=${{v:-0}}")
    m = run(s, cmd, r"VALUE=(\d+)\r?\n", timeout=timeout_s + 60)
    return int(m.group(1))


def online_bytes_sh(start):
    """Shell that sets $b to the bytes of online Linux memory blocks at or
    above start (the region)."""
    return ("bs=$((0x$(cat /sys/devices/system/memory/block_size_bytes))); n=0; "
            "for d in /sys/devices/system/memory/memory*; do j=${d##*memory}; "
            f"[ $((j*bs)) -ge {start} ] && [ \"$(cat $d/state)\" = online ] && n=$((n+1)); "
            "done; b=$((n*bs))")


def online_region_bytes(s, start):
    cmd = online_bytes_sh(start) + "; echo \"ON\"LINE=$b"
    return int(run(s, cmd, r"ONLINE=(\d+)\r?\n").group(1))


def poweroff(s):
    s.sendline("poweroff -f")
    assert s.wait_exit(timeout=60) == 0
    assert "minivmm: guest powered off" in s.output


@pytest.mark.arm64
@pytest.mark.parametrize("series", KERNELS)
def test_guest_plugs_requested_memory_and_uses_it(host, minivmm, series):
    s, memtotal_boot = boot_with(host, minivmm, series, mem="1G",
                                 devices=["node0:64G,requested=2G"])
    # The driver found the device (ACPI on x86, the device tree on arm64)
    # and read the config we gave it.
    m = run(s, "dmesg | grep -E 'virtio_mem virtio[0-9]+: (requested size|region size|"
               "device block size|start address)' | tr '\\n' ' '; echo EN''D",
            r"(.*)END\r?\n")
    info = m.group(1)
    assert "requested size: 0x80000000" in info, info
    assert "region size: 0x1000000000" in info, info
    assert "device block size: 0x200000" in info, info
    # The region starts above boot RAM (1G: RAM ends at 1G, regions start on 1G
    # boundaries above the 4G hole's end or RAM, whichever is higher).
    start = int(re.search(r"start address: 0x([0-9a-f]+)", info).group(1), 16)
    assert start >= 1 << 30 and start % (1 << 30) == 0, hex(start)

    # The driver may have plugged part of it before init printed MemTotal,
    # so wait for boot RAM's share (at least 85 % of 1G) plus 2 GiB, then
    # check exactly: 2 GiB of memory blocks online in the region, and
    # MemTotal without them consistent with 1G of boot RAM.
    total = wait_meminfo(s, "/proc/meminfo", "MemTotal", int(0.85 * GIB_KB) + 2 * GIB_KB)
    assert online_region_bytes(s, start) == 2 << 30
    total = wait_meminfo(s, "/proc/meminfo", "MemTotal", total)     # settled
    assert 0.85 * GIB_KB < total - 2 * GIB_KB <= min(GIB_KB, memtotal_boot), (memtotal_boot, total)

    # Page-cache and tmpfs pages are movable, so the allocator takes them from
    # ZONE_MOVABLE first, which is exactly the plugged memory (onlined
    # online_movable). Write 64 MiB there and read it back.
    movable_free = ("awk '/^Node 0, zone *Movable/{z=1} /^Node/&&!/Movable/{z=0} "
                    "z&&/nr_free_pages/{print $2; exit}' /proc/zoneinfo")
    before = int(run(s, f"echo FREE=$({movable_free})", r"FREE=(\d+)\r?\n").group(1))
    assert before * 4 >= 1800 * 1024, before          # ~2 GiB of free movable pages
    m = run(s, "dd if=/dev/urandom bs=1M count=64 2>/dev/null | tee /tmp/blob | md5sum "
               "| sed 's/^/SUM1=/'; md5sum /tmp/blob | sed 's/^/SUM2=/'",
            r"SUM1=([0-9a-f]{32}).*\n(?:.*\n)*?SUM2=([0-9a-f]{32})", timeout=300)
    assert m.group(1) == m.group(2)
    after = int(run(s, f"echo FREE=$({movable_free})", r"FREE=(\d+)\r?\n").group(1))
    used_mib = (before - after) * 4 // 1024
    assert used_mib >= 56, (before, after)           # the blob lives in plugged memory
    poweroff(s)


def test_two_devices_on_two_nodes(host, minivmm):
    s, memtotal_boot = boot_with(host, minivmm, "6.1", mem="1G", cpus=2,
                                 devices=["node0:4G,requested=512M",
                                          "node1:8G,requested=1G,block=4M"])
    node1 = wait_meminfo(s, "/sys/devices/system/node/node1/meminfo", "MemTotal", GIB_KB)
    assert node1 == GIB_KB, node1
    plugged = GIB_KB + GIB_KB // 2
    total = wait_meminfo(s, "/proc/meminfo", "MemTotal", int(0.85 * GIB_KB) + plugged)
    assert 0.85 * GIB_KB < total - plugged <= min(GIB_KB, memtotal_boot), (memtotal_boot, total)
    # Node 1 has memory but no CPUs: the SRAT put the CPUs on node 0.
    m = run(s, "echo \"CPU\"S1=$(cat /sys/devices/system/node/node1/cpulist)END",
            r"CPUS1=(.*)END\r?\n")
    assert m.group(1).strip() == "", m.group(1)
    poweroff(s)
