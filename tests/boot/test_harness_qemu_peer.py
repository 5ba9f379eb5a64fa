"""Checks the boot-test chain without minivmm: the host (local or the QEMU
test host), the harness, and the test guests, booted by QEMU + KVM, the peer
VMM that boot benchmarks compare minivmm with. For both architectures
(MINIVMM_ARCH=arm64: the arm64 test host, guests and peer)."""

import re
import shlex
import time
from pathlib import Path

import pytest

import hostlib

pytestmark = pytest.mark.arm64

# uname -m of a host of each architecture; the guests' kernel flavour.
UNAME_M = {"x86_64": "x86_64", "arm64": "aarch64"}
DEBIAN_ARCH = {"x86_64": "amd64", "arm64": "arm64"}


def test_host_architecture(host):
    assert host.run("uname -m") == (0, UNAME_M[host.arch] + "\n")


def test_payload_programs_find_their_libraries(host):
    """Every program in the payload starts on the host: its shared libraries
    (found by ldd, or for another architecture by following readelf's
    NEEDED entries) and its loader are all there."""
    names = [*host.payload.binaries, *host.payload.deb_binaries]
    if host.has(host.qemu_name):
        names.append(host.qemu_name)
    if not names:
        pytest.skip("the payload has no programs")
    for name in names:
        rc, out = host.run(f"{shlex.quote(host.path(name))} --version", timeout=60)
        assert rc == 0, f"{name} --version: status {rc}\n{out}"
        assert out.strip(), name


def test_run_returns_status_and_exact_output(host):
    assert host.run("printf 'a\\nb'; echo err >&2; exit 3") == (3, "a\nb" + "err\n")
    assert host.run("true") == (0, "")
    # Quoting survives, and long commands work on the test host's control line.
    word = "x'y\"z $HOME `id` " * 400
    rc, out = host.run(f"printf %s {_sh_quote(word)} | wc -c")
    assert (rc, out.strip()) == (0, str(len(word)))


def test_run_timeout_recovers(host):
    with pytest.raises(hostlib.ExpectTimeout):
        host.run("echo begun; sleep 600", timeout=2)
    assert host.run("echo still-usable") == (0, "still-usable\n")


def test_kvm_is_available(host):
    rc, out = host.run("test -c /dev/kvm && echo yes")
    assert (rc, out) == (0, "yes\n")


def test_spawn_interrupt_and_kill(host):
    s = host.spawn("echo started; sleep 600")
    s.expect("started")
    s.sendcontrol("c")
    assert s.wait_exit(30) == 130
    s = host.spawn("stty raw -echo; sleep 600")
    time.sleep(0.5)
    s.kill()
    assert s.wait_exit(30) == 137
    # A program that ends while a test waits for output fails the wait at
    # once, with its status, instead of after the timeout.
    s = host.spawn("echo bye; exit 3")
    t0 = time.monotonic()
    with pytest.raises(hostlib.ExpectEOF, match="status 3"):
        s.expect("never printed", timeout=60)
    assert time.monotonic() - t0 < 10
    assert s.wait_exit(1) == 3 and s.output.startswith("bye\n")
    # The terminal is usable (not raw) again for the next program.
    s = host.spawn("read line; echo got=$line")
    s.sendline("hi")
    s.expect("got=hi")
    assert s.wait_exit(30) == 0


def diagnosis(warned, about: str) -> str:
    """The report file named by the harness's warning about `about`."""
    texts = [str(w.message) for w in warned if about in str(w.message)]
    assert texts, [str(w.message) for w in warned]
    m = re.search(r"what its CPUs were doing: (\S+)\)", texts[0])
    assert m, texts[0]
    return m.group(1)


def test_a_program_that_cannot_be_ended_costs_one_test_host(host):
    """A VMM stuck in the host kernel survives SIGKILL and keeps the test
    host's only console: the harness then restarts the test host instead of
    failing every later test. Simulated by stopping the spawn wrapper, so no
    end marker ever comes."""
    if host.kind != "qemu":
        pytest.skip("only the QEMU test host has a console to lose")
    s = host.spawn("echo stopping-the-wrapper; kill -STOP $$; sleep 600")
    s.expect("stopping-the-wrapper")
    with pytest.warns(UserWarning, match="restarting the test host") as warned:
        host.cleanup_sessions()
    # The warning names a report of what the test host was doing before it
    # was ended: QEMU's threads, the emulated CPUs' registers, and on x86_64
    # the kernel's backtraces after an NMI (the L1 kernel's own view).
    report = Path(diagnosis(warned, "restarting the test host")).read_text()
    assert "== QEMU threads on this machine" in report
    assert re.search(r"qemu-system-\S*\s+[RSD]\s+\d", report), report[:2000]
    assert re.search(r"^CPU#0$", report, re.M), report[:2000]
    if host.arch == "x86_64":
        assert re.search(r"NMI backtrace for cpu \d", report), report[-4000:]
    assert host.run("echo control-works") == (0, "control-works\n")
    s = host.spawn("echo console-$((6 * 7))")
    s.expect("console-42")
    assert s.wait_exit(30) == 0


def test_a_test_host_boot_that_stalls_is_started_again(host, monkeypatch):
    """A test host whose boot never reaches /init (seen once in CI) is ended
    and started once more. Simulated with QEMU's -S: the first start never
    runs a CPU."""
    if host.kind != "qemu":
        pytest.skip("only the QEMU test host boots")
    host.close()
    real_argv = host.qemu_argv
    starts = []

    def argv():
        starts.append(1)
        return real_argv() + (["-S"] if len(starts) == 1 else [])
    monkeypatch.setattr(host, "qemu_argv", argv)
    # Only the held start gets a short deadline; the second start has the
    # usual one, so a slow but healthy boot on a loaded machine still counts.
    real_boot_once = host._boot_once
    monkeypatch.setattr(host, "_boot_once",
                        lambda timeout: real_boot_once(20 if len(starts) == 0 else timeout))
    with pytest.warns(UserWarning, match=r"did not boot \(attempt 1 of 2") as warned:
        host.boot()
    assert len(starts) == 2
    # The stalled start's report: QEMU said its CPUs never ran.
    assert "VM status: paused" in Path(diagnosis(warned, "did not boot")).read_text()
    assert host.run("echo control-works") == (0, "control-works\n")


@pytest.mark.qemu_peer
@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_qemu_kvm_boots_guest(host, series, record_property):
    t0 = time.monotonic()
    s = host.spawn(host.qemu_cmd(series, cpus=2, mem_mb=512))
    m = s.expect(r"MINIVMM-GUEST-READY cpus=(\d+) memtotal_kb=(\d+) kernel=(\S+)\n", timeout=180)
    boot_s = time.monotonic() - t0
    assert m.group(1) == "2"
    # Boot RAM minus what the kernel keeps for itself (image, memmap).
    assert 0.85 * 512 * 1024 < int(m.group(2)) <= 512 * 1024, m.group(2)
    assert m.group(3).startswith(series + ".")
    assert m.group(3).endswith(f"-cloud-{DEBIAN_ARCH[host.arch]}"), m.group(3)
    assert "MINIVMM-GUEST-MODULE-FAILED" not in s.output
    s.expect("guest# ")
    # The arithmetic shows the line was run, not just echoed.
    s.sendline("echo answer=$((6 * 7)); grep -o '^virtio_mem ' /proc/modules; "
               "cat /sys/devices/system/memory/auto_online_blocks")
    # virtio_mem loaded after /init set hot-added memory to come up movable.
    s.expect(r"answer=42\nvirtio_mem \nonline_movable\n")
    s.expect("guest# ")
    s.sendline("poweroff -f")
    assert s.wait_exit(60) == 0
    record_property("guest_ready_s", round(boot_s, 2))
    print(f"\n{host.kind} {host.arch} host: QEMU+KVM booted guest {series} "
          f"({m.group(3)}) to the ready marker in {boot_s:.2f} s; host timings: "
          + ", ".join(f"{k}={v:.2f}s" for k, v in host.timings.items()))


def _sh_quote(s):
    return "'" + s.replace("'", "'\\''") + "'"
