"""Huge page backing (hugepages=2M|1G on --mem and --virtio-mem) and what a
host out of memory means, on the local /dev/kvm with hostile_guest.c in its
interactive mode: the test plugs, writes and unplugs through the guest and
looks at the host's huge page pools between requests.

The pools are the host's (/sys/kernel/mm/hugepages); each test sets the
sizes it needs and puts the old ones back. Changing them needs root: CI runs
as root; a developer run without root says SKIPPED."""
import os
import subprocess
import sys
import time
from fcntl import ioctl

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "api"))
import tinyguest  # noqa: E402
from apiclient import open_events, read_events, request  # noqa: E402

pytestmark = pytest.mark.usefixtures("local_kvm")

REGION_GPA = 0x100000000        # the first region, above 4 GiB with --mem 64M
MIB = 1 << 20
GIB = 1 << 30
POOLS = "/sys/kernel/mm/hugepages"

ACK, NACK, BUSY, ERROR = 0, 1, 2, 3


def pool_dir(page):
    return f"{POOLS}/hugepages-{page // 1024}kB"


def pool(page):
    """(total, free, reserved) pages of the host's pool of that size."""
    def read(name):
        with open(f"{pool_dir(page)}/{name}") as f:
            return int(f.read())
    return read("nr_hugepages"), read("free_hugepages"), read("resv_hugepages")


@pytest.fixture
def pools():
    """set(page, n): the pool of that page size holds exactly n pages; the
    first call also checks they are all free (nothing else on this machine
    uses huge pages). Restored after."""
    if os.geteuid() != 0:
        msg = "SKIPPED: huge page tests need root to size the host's pools"
        if os.environ.get("CI") == "true":
            pytest.fail(msg.replace("SKIPPED: ", "") + " (CI must run as root)")
        print("\n" + "!" * 70 + "\n" + msg + "\n" + "!" * 70)
        pytest.skip(msg)
    saved = {}

    def set_pool(page, n):
        if not os.path.isdir(pool_dir(page)):
            pytest.fail(f"this host has no pool of {page // MIB} MiB pages ({pool_dir(page)})")
        first = page not in saved
        saved.setdefault(page, pool(page)[0])
        if page >= GIB:
            # A 1 GiB page needs 1 GiB of contiguous free memory.
            with open("/proc/sys/vm/compact_memory", "w") as f:
                f.write("1")
        with open(f"{pool_dir(page)}/nr_hugepages", "w") as f:
            f.write(str(n))
        got = pool(page)
        assert got[0] == n and (got[1] == n or not first), (
            f"asked the host for {n} free pages of {page // MIB} MiB, it has {got}")

    yield set_pool
    for page, n in saved.items():
        with open(f"{pool_dir(page)}/nr_hugepages", "w") as f:
            f.write(str(n))


@pytest.fixture(scope="module")
def guest_kernel(tmp_path_factory):
    return tinyguest.build(str(tmp_path_factory.mktemp("hostile") / "hostile.bzImage"),
                           source="hostile_guest.c")


class Guest:
    """minivmm running hostile_guest.c's interactive mode."""

    def __init__(self, minivmm, kernel, sock, mem="64M", virtio_mem="m0:4G,requested=4G"):
        # (the guard is on unless a test turns it off)
        self.sock = sock
        self.p = subprocess.Popen(
            [minivmm, "--kernel", kernel, "--cmdline", "I", "--mem", mem,
             "--virtio-mem", virtio_mem, "--api-sock", sock],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out = b""
        self.read_until(b"HOSTILE-INTERACTIVE\n")

    def read_until(self, marker, timeout=60):
        deadline = time.monotonic() + timeout
        while marker not in self.out:
            assert time.monotonic() < deadline, f"no {marker!r} in {self.out!r}"
            chunk = os.read(self.p.stdout.fileno(), 4096)
            assert chunk, f"console ended before {marker!r}: {self.out!r} " \
                          f"{self.p.stderr.read().decode(errors='replace')}"
            self.out += chunk
        head, _, self.out = self.out.partition(marker)
        return head

    def command(self, text, reply):
        self.p.stdin.write(text.encode() + b"\n")
        self.p.stdin.flush()
        return self.read_until(reply)

    def request(self, verb, offset, blocks):
        self.command(f"{verb}{offset:x} {blocks:x}", b"ANSWER ")
        return int(self.read_until(b"\n"))

    def touch(self, offset, blocks):
        self.command(f"w{offset:x} {blocks:x}", b"WROTE\n")

    def device(self):
        return request(self.sock, "GET", "/virtio-mem/m0").json()

    def finish(self, timeout=60):
        try:
            _, err = self.p.communicate(timeout=timeout)
        finally:
            if self.p.poll() is None:
                self.p.kill()
                self.p.wait()
        return err.decode(errors="replace")

    def poweroff(self):
        self.p.stdin.write(b"o\n")
        self.p.stdin.flush()
        return self.finish()




def kvm_reports_fault_addresses():
    """KVM_CHECK_EXTENSION(KVM_CAP_MEMORY_FAULT_INFO) on /dev/kvm."""
    fd = os.open("/dev/kvm", os.O_RDWR)
    try:
        return ioctl(fd, 0xAE03, 232) > 0
    finally:
        os.close(fd)


def test_boot_ram_takes_its_huge_pages_at_start_and_gives_them_back(
        minivmm, guest_kernel, pools, tmp_path):
    pools(2 * MIB, 40)
    g = Guest(minivmm, guest_kernel, str(tmp_path / "api.sock"), mem="64M,hugepages=2M")
    total, free, resv = pool(2 * MIB)
    # 64 MiB of boot RAM is 32 pages, each in use or reserved for it.
    assert (total - free) + resv == 32, (total, free, resv)
    assert g.poweroff() is not None and g.p.returncode == 0
    assert pool(2 * MIB) == (40, 40, 0)


def test_boot_ram_pool_too_small_is_a_clear_error(minivmm, guest_kernel, pools, tmp_path):
    pools(2 * MIB, 16)
    p = subprocess.run([minivmm, "--kernel", guest_kernel, "--cmdline", "I",
                        "--mem", "64M,hugepages=2M", "--virtio-mem", "m0:4G"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 1, err
    assert ("guest RAM: reserving 32 huge pages of 2M: Cannot allocate memory (the pool has "
            "16 free") in err, err
    assert pool(2 * MIB) == (16, 16, 0)


@pytest.mark.parametrize("where", ["--mem", "--virtio-mem"])
def test_a_page_size_the_host_has_no_pool_for_is_a_clear_error(minivmm, guest_kernel, where):
    """16M is a valid huge page size on some machines (ppc64), not on x86_64."""
    mem, vmem = ("64M,hugepages=16M", "m0:4G") if where == "--mem" else \
        ("64M", "m0:4G,hugepages=16M")
    p = subprocess.run([minivmm, "--kernel", guest_kernel, "--cmdline", "I", "--mem", mem,
                        "--virtio-mem", vmem], stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=60)
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 1, err
    assert ("memfd_create with 16M huge pages: No such device (the host has no pool of 16M "
            "pages: /sys/kernel/mm/hugepages/hugepages-16384kB)") in err, err


@pytest.mark.parametrize("page,blocks", [(2 * MIB, 4), (GIB, 1)], ids=["2M", "1G"])
def test_prealloc_plug_takes_huge_pages_and_unplug_returns_them(
        minivmm, guest_kernel, pools, tmp_path, page, blocks):
    pools(page, blocks + 1)
    # The block size follows the page size when none is given.
    g = Guest(minivmm, guest_kernel, str(tmp_path / "api.sock"),
              virtio_mem=f"m0:4G,hugepages={page // MIB}M,prealloc=on,requested=4G,guard=off")
    try:
        dev = g.device()
        assert dev["block_size"] == page and dev["page_size"] == page, dev
        at = GIB                # the second 1 GiB slot: page aligned for both sizes
        assert g.request("p", at, blocks) == ACK
        assert pool(page)[1] == 1, pool(page)       # taken at plug time
        dev = g.device()
        assert dev["host_backed_bytes"] == blocks * page, dev
        # Without the guard the host promises only the registered memslot.
        assert dev["memslots"] == 1 and dev["host_backed_bound"] == GIB, dev
        g.touch(at, blocks)
        assert pool(page)[1] == 1, pool(page)       # touching takes nothing more
        assert g.request("u", at, blocks) == ACK
        assert pool(page)[1] == blocks + 1, pool(page)
        assert g.device()["host_backed_bytes"] == 0
    finally:
        err = g.poweroff()
    assert g.p.returncode == 0, err


def test_prealloc_plug_is_busy_while_the_pool_is_empty_and_succeeds_later(
        minivmm, guest_kernel, pools, tmp_path):
    pools(2 * MIB, 2)
    g = Guest(minivmm, guest_kernel, str(tmp_path / "api.sock"),
              virtio_mem="m0:4G,hugepages=2M,prealloc=on,requested=4G,guard=off")
    try:
        assert g.request("p", 0, 2) == ACK
        assert pool(2 * MIB)[1] == 0
        assert g.request("p", 2 * 2 * MIB, 1) == BUSY
        # Nothing changed: the guest runs on and keeps its memory.
        g.touch(0, 2)
        dev = g.device()
        assert dev["plugged_size"] == 4 * MIB and dev["host_backed_bytes"] == 4 * MIB, dev
        pools(2 * MIB, 3)       # the host frees memory
        assert g.request("p", 2 * 2 * MIB, 1) == ACK
        assert pool(2 * MIB)[1] == 0
        assert g.device()["plugged_size"] == 6 * MIB
    finally:
        err = g.poweroff()
    assert g.p.returncode == 0, err


def test_guarded_prealloc_plug_is_busy_while_the_pool_is_empty(
        minivmm, guest_kernel, pools, tmp_path):
    """With the guard (on by default) and prealloc=on a block is backed when
    it is plugged: with the pool empty the plug is answered BUSY and the
    guest runs on."""
    pools(2 * MIB, 0)
    g = Guest(minivmm, guest_kernel, str(tmp_path / "api.sock"),
              virtio_mem="m0:4G,hugepages=2M,prealloc=on,requested=4G")
    try:
        assert g.request("p", 0, 1) == BUSY
        assert g.device()["plugged_size"] == 0
        pools(2 * MIB, 1)
        assert g.request("p", 0, 1) == ACK
        assert pool(2 * MIB)[1] == 0            # taken at plug time
        g.touch(0, 1)
    finally:
        err = g.poweroff()
    assert g.p.returncode == 0, err


@pytest.mark.parametrize("guard", ["on", "off"])
def test_first_touch_the_host_cannot_back_stops_the_vm_with_a_reason(
        minivmm, guest_kernel, pools, tmp_path, guard):
    """Without prealloc the plug is accepted, guarded (the default) or not;
    the first write finds the pool empty. Never a SIGBUS death: status 1, a
    line naming the device, the address and the cause, a host_error event."""
    pools(2 * MIB, 0)
    sock = str(tmp_path / "api.sock")
    g = Guest(minivmm, guest_kernel, sock,
              virtio_mem=f"m0:4G,hugepages=2M,requested=4G,guard={guard}")
    events = open_events(sock)
    assert g.request("p", 0, 1) == ACK
    g.p.stdin.write(b"w0 1\n")
    g.p.stdin.flush()
    err = g.finish()
    assert b"WROTE" not in g.out, g.out
    assert g.p.returncode == 1, err
    # A vCPU's own access fails KVM_RUN (which says where since Linux 6.8);
    # one KVM emulates exits as MMIO (this machine's KVM emulates all guest
    # kernel code).
    hows, cause = ["access emulated by KVM"], "Bad address"
    if kvm_reports_fault_addresses():
        hows.append("KVM_RUN on vCPU 0")
    if guard == "on":   # the guard meets the first touch and fails to back it
        hows, cause = ["userfaultfd guard"], "Cannot allocate memory"
    line = [ln for ln in err.splitlines() if "VM stopped" in ln]
    assert len(line) == 1, err
    assert any(line[0].endswith(
        f"m0: the host cannot back plugged memory at {REGION_GPA:#x} the guest touched: "
        f"{how}: {cause} (no 2M huge page left in the host's pool; prealloc=on would "
        f"have answered the plug BUSY): VM stopped") for how in hows), (hows, err)
    evs = read_events(events)
    errors = [e for e in evs if e.get("event") == "host_error"]
    want = {"event": "host_error", "error": cause, "id": "m0", "gpa": REGION_GPA}
    assert [dict((k, e[k]) for k in want) for e in errors] == [want], evs
    assert evs[-1]["event"] == "shutdown" and evs[-1]["status"] == 1, evs
