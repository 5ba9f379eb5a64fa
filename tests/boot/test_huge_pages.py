"""Guest memory on huge pages: after a Linux guest boots, its boot RAM
(hugepages=thp, the default) is backed by the host's transparent huge pages,
as /proc/PID/smaps of the minivmm process shows, wherever the host's THP is
enabled (Debian's default: always), with no host setting beyond that; so are
regions of anonymous memory (hugepages=thp with guard=off; unit-tested in
tests/unit/test_hotplug_mem.c). A region's default, a shmem memfd, is huge
only where shmem_enabled allows (Debian's: never), and a guarded region is
always a memfd (vmm/cli/virtio_mem_opts.c says why). hugepages=off gives
base pages. KVM maps guest memory with huge stage-2 pages only where
the host does."""
import shlex

import pytest

from test_boot_linux import BOOT_TIMEOUT, PROMPT, READY, minivmm_cmd
from test_reboot import wait_online

MIB = 1 << 20


def mappings(host, pid):
    """[(size, {field: bytes})] for each mapping in /proc/PID/smaps."""
    out = host.check(f"cat /proc/{pid}/smaps", timeout=120)
    maps = []
    for line in out.splitlines():
        head = line.split()
        if head and "-" in head[0] and ":" not in head[0] and len(head) >= 5:
            lo, hi = (int(x, 16) for x in head[0].split("-"))
            maps.append((hi - lo, {}))
        elif maps and len(head) == 3 and head[2] == "kB":
            maps[-1][1][head[0].rstrip(":")] = int(head[1]) * 1024
    return maps


def huge_bytes(fields):
    return fields.get("AnonHugePages", 0) + fields.get("ShmemPmdMapped", 0)


def guest_memory(host, pid, size):
    """The fields of the one mapping of exactly `size` bytes (boot RAM and
    each region are mapped whole)."""
    found = [f for n, f in mappings(host, pid) if n == size]
    assert len(found) == 1, (size, [n for n, _ in mappings(host, pid)])
    return found[0]


def boot(host, minivmm, ram_backing, region_backing):
    extra = ["--virtio-mem", f"node0:8G,requested=1G,hugepages={region_backing}"]
    mem = f"1G{ram_backing and ',hugepages=' + ram_backing}"
    cmd = minivmm_cmd(host, minivmm, "6.1", cpus=1, mem=mem, extra=extra)
    s = host.spawn("sh -c " + shlex.quote(f"echo VMMPID=$$; exec {cmd}"))
    pid = int(s.expect(r"VMMPID=(\d+)\r?\n", timeout=60).group(1))
    s.expect(READY, timeout=BOOT_TIMEOUT)
    s.expect(PROMPT, timeout=60)
    assert wait_online(s, 1 << 30) == 1 << 30
    return s, pid


@pytest.mark.arm64
def test_guest_memory_is_on_huge_pages_by_default(host, minivmm):
    thp = host.check("cat /sys/kernel/mm/transparent_hugepage/enabled").strip()
    if "[never]" in thp:
        pytest.skip(f"the test host's THP is off: {thp}")
    s, pid = boot(host, minivmm, "", "shmem")
    ram = guest_memory(host, pid, 1 << 30)
    print(f"THP {thp}; boot RAM: Rss {ram.get('Rss', 0) // MIB} MiB, huge "
          f"{huge_bytes(ram) // MIB} MiB")
    # What the guest touched while booting is mostly huge pages (the
    # guest's kernel and page allocator work in 2 MiB frames).
    assert huge_bytes(ram) >= 32 * MIB, ram
    assert huge_bytes(ram) >= ram.get("Rss", 0) // 2, ram
    s.sendline("poweroff -f")
    assert s.wait_exit(timeout=60) == 0


def test_hugepages_off_gives_base_pages(host, minivmm):
    s, pid = boot(host, minivmm, "off", "shmem")
    ram = guest_memory(host, pid, 1 << 30)
    assert huge_bytes(ram) == 0 and ram.get("Rss", 0) >= 32 * MIB, ram
    s.sendline("poweroff -f")
    assert s.wait_exit(timeout=60) == 0
