"""Debian's unmodified cloud kernels booted by minivmm on a real KVM (the QEMU
test host on machines whose /dev/kvm cannot run Linux): init marker, CPU
count, MemTotal, an interactive console, poweroff and reboot."""
import re
import shlex

import pytest

import hostlib

KERNELS = ["6.1", "6.12"]
BOOT_TIMEOUT = 240
READY = r"MINIVMM-GUEST-READY cpus=(\d+) memtotal_kb=(\d+) kernel=(\S+)\r?\n"
PROMPT = "guest# "


def guest_cmdline(host, *more):
    """The command line of a guest minivmm boots on this host."""
    return hostlib.minivmm_cmdline(host.arch, *more)


def minivmm_cmd(host, minivmm, series, *, cpus, mem, cmdline=None, extra=()):
    cmdline = cmdline or guest_cmdline(host)
    argv = [minivmm, "--kernel", host.guest_kernel(series), "--initrd", host.guest_initrd(series),
            "--cpus", str(cpus), "--mem", mem, "--cmdline", cmdline, *extra]
    return shlex.join(argv)


def boot(host, minivmm, series, *, cpus, mem, extra=()):
    s = host.spawn(minivmm_cmd(host, minivmm, series, cpus=cpus, mem=mem, extra=extra))
    m = s.expect(READY, timeout=BOOT_TIMEOUT)
    s.expect(PROMPT, timeout=60)
    return s, int(m.group(1)), int(m.group(2)), m.group(3)


def assert_memtotal_consistent(memtotal_kb, mem_bytes):
    # MemTotal is boot RAM minus what the kernel reserves for itself (its
    # image, memmap, crash areas): at least 85 % and never more than --mem.
    mem_kb = mem_bytes // 1024
    assert 0.85 * mem_kb < memtotal_kb <= mem_kb, (memtotal_kb, mem_kb)


def type_command(s):
    s.sendline("echo typed-$((6 * 7))-on-the-console")
    # A plain expect: a console that stalls fails the test (it used to get an
    # extra Enter and only a warning).
    s.expect("typed-42-on-the-console", timeout=60)
    s.expect(PROMPT, timeout=60)


# How the guest's kernel sees the console's interrupt: a level. x86: the
# IOAPIC pin is level-triggered ("4-fasteoi"); arm64: the GIC SPI is "Level".
CONSOLE_IRQ_LEVEL = {"x86_64": r"IO-APIC\s+4-fasteoi\s+ttyS0", "arm64": r"GICv3\s+\d+\s+Level\s+ttyS0"}


@pytest.mark.arm64
@pytest.mark.parametrize("series", KERNELS)
@pytest.mark.parametrize("cpus,end", [(1, "poweroff"), (2, "reboot")])
def test_boot_console_and_power(host, minivmm, series, cpus, end):
    s, seen_cpus, memtotal, release = boot(host, minivmm, series, cpus=cpus, mem="512M",
                                           extra=["--on-reboot", "exit"])
    assert release.startswith(series + "."), release
    assert seen_cpus == cpus
    assert_memtotal_consistent(memtotal, 512 << 20)
    type_command(s)
    # The console's interrupt is level-triggered, as the UART's interrupt is
    # a level: an edge could be missed for good.
    s.sendline("grep ttyS0 /proc/interrupts | sed 's/^/IRQ=/; s/$/=END/'")
    m = s.expect(r"IRQ=(.*)=END\r?\n", timeout=60)
    assert re.search(CONSOLE_IRQ_LEVEL[host.arch], m.group(1)), m.group(0)
    s.sendline(f"{end} -f")
    assert s.wait_exit(timeout=60) == 0
    if end == "poweroff":
        assert "minivmm: guest powered off" in s.output
    else:
        assert re.search(r"minivmm: guest (requested a reboot|reset)", s.output), s.output[-500:]


def test_memory_above_the_4g_hole(host, minivmm):
    """--mem beyond the 32-bit hole puts the rest above 4 GiB (a second e820
    RAM range), and the guest sees all of it."""
    s, cpus, memtotal, _ = boot(host, minivmm, "6.1", cpus=2, mem="4G")
    assert cpus == 2
    assert_memtotal_consistent(memtotal, 4 << 30)
    s.sendline("dmesg | grep -c 'e820: .mem 0x0000000100000000-0x000000013fffffff. usable'")
    s.expect(r"\n1\r?\n", timeout=60)
    s.sendline("poweroff -f")
    assert s.wait_exit(timeout=60) == 0


@pytest.mark.arm64
@pytest.mark.parametrize("args,message", [
    (["--mem", "12Q"], "minivmm: --mem '12Q': unknown size suffix"),
    (["--cpus", "0"], "minivmm: --cpus 0: at least one vCPU is needed"),
    (["--initrd", "/nonexistent"], "minivmm: --initrd /nonexistent: No such file or directory"),
    (["--bogus"], "minivmm: unknown option '--bogus'"),
])
def test_bad_cli_input(host, minivmm, args, message):
    cmd = shlex.join([minivmm, "--kernel", host.guest_kernel("6.1"), *args])
    rc, out = host.run(cmd + " 2>&1", timeout=60)
    assert rc == 2
    assert message in out
    assert len(out.strip().splitlines()) == 1, out
