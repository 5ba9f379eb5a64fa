"""A guest reboot is a system reset (--on-reboot restart, the default): the
VM is rebuilt, every virtio-mem block is unplugged and its host memory
returned, the kernel boots again and plugs requested_size again."""
import shlex
import time

import pytest

from test_boot_linux import BOOT_TIMEOUT, PROMPT, READY, minivmm_cmd
from test_virtio_mem import online_bytes_sh, run

def rss_shmem_kb(host, pid):
    """Guest memory's share of the VMM's RSS: anonymous memory by default,
    memfds with hugepages=SIZE (RssAnon also holds the VMM's heap, a few
    MiB that do not change across a reset)."""
    out = host.check(f"grep -E '^Rss(Anon|Shmem):' /proc/{pid}/status")
    return sum(int(line.split()[1]) for line in out.splitlines())


def wait_online(s, want):
    # The region's start as the guest's driver reports it (it depends on the
    # architecture's layout); nothing is online before the driver says so.
    start = ("st=$(dmesg | sed -n 's/.*virtio_mem.*start address: 0x\\([0-9a-f]*\\).*/\\1/p' "
             "| head -1)")
    cmd = (f"i=0; while [ $i -lt 600 ]; do {start}; b=0; "
           f"[ -n \"$st\" ] && {{ {online_bytes_sh('$((0x$st))')}; }}; "
           f"[ $b -ge {want} ] && break; usleep 200000; i=$((i+1)); done; "
           "echo \"ON\"LINE=$b")
    return int(run(s, cmd, r"ONLINE=(\d+)\r?\n", timeout=240).group(1))


@pytest.mark.arm64
def test_reboot_unplugs_and_replugs(host, minivmm):
    # guard=off: the host backs what the guest touches, so host memory shows
    # the data written (the same with the guard, the default, which
    # tests/boot/test_api_boot.py reboots).
    cmd = minivmm_cmd(host, minivmm, "6.1", cpus=2, mem="1G",
                      extra=["--virtio-mem", "node0:8G,requested=1G,guard=off"])
    s = host.spawn("sh -c " + shlex.quote(f"echo VMMPID=$$; exec {cmd}"))
    pid = int(s.expect(r"VMMPID=(\d+)\r?\n", timeout=60).group(1))
    s.expect(READY, timeout=BOOT_TIMEOUT)
    s.expect(PROMPT, timeout=60)
    assert wait_online(s, 1 << 30) == 1 << 30

    # Fill 192 MiB of the plugged memory (tmpfs pages come from ZONE_MOVABLE
    # first), so the host really backs it.
    run(s, "dd if=/dev/zero of=/tmp/fill bs=1M count=192 2>/dev/null; echo FI''LLED",
        r"FILLED\r?\n", timeout=180)
    before = rss_shmem_kb(host, pid)

    s.sendline("reboot -f")
    s.expect(r"minivmm: guest requested a reboot \([^)]*\): resetting the VM", timeout=60)
    reset_at = time.monotonic()
    s.expect(READY, timeout=BOOT_TIMEOUT)
    s.expect(PROMPT, timeout=60)
    after = rss_shmem_kb(host, pid)
    # The old region's memory (and the old boot RAM) went away with the reset.
    assert before - after >= 150 * 1024, (before, after)

    # The new boot plugs requested_size again, and it works: the guest that
    # answers is the new one (its uptime began after the reset), and data it
    # writes into the plugged memory reads back intact while the host backs
    # it again.
    assert wait_online(s, 1 << 30) == 1 << 30
    up = float(run(s, "sed 's/ .*//; s/^/UP=/' /proc/uptime", r"UP=([\d.]+)\r?\n").group(1))
    assert up < time.monotonic() - reset_at, (up, time.monotonic() - reset_at)
    sums = run(s, "dd if=/dev/urandom of=/tmp/data bs=1M count=192 2>/dev/null; "
               "a=$(sha256sum < /tmp/data); sync; b=$(sha256sum < /tmp/data); "
               "echo \"SU\"MS=${a%% *}/${b%% *}", r"SUMS=(\w+)/(\w+)\r?\n", timeout=180)
    assert len(sums.group(1)) == 64 and sums.group(1) == sums.group(2), sums.group(0)
    assert rss_shmem_kb(host, pid) - after >= 150 * 1024
    s.sendline("poweroff -f")
    assert s.wait_exit(timeout=60) == 0
    assert "minivmm: guest powered off" in s.output
