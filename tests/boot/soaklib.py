"""The soak logic shared by bench/soak and tests/boot/test_soak.py: a Linux
guest keeps files in memory while its virtio-mem device is resized again and
again through the API; after every resize the guest re-hashes every file and
the host checks the device's counters.

One run (run_soak):

  boot   minivmm --mem 512M --virtio-mem node0:REGION,requested=REGION/2
         --api-sock SOCK; the guest's /init loads virtio_mem and onlines
         hot-added memory as movable (guest-images/init). `minivmm ctl resize
         ... --wait` until the initial size is plugged.
  data   a tmpfs at /soak in the guest with FILES files of FILE_MIB MiB each
         from /dev/urandom. Each file is hashed (sha256) right after it is
         written, before the next resize; the sums are kept on the host
         (never trusted from the guest). tmpfs pages are movable, so the
         guest's allocator puts them in ZONE_MOVABLE first, which is the
         plugged memory: each cycle line shows how much of it is in use.
  cycle  for each target (pick_targets: multiples of 128 MiB from 0 to the
         region, 0 and the whole region at least once each):
         1. one file is rewritten in the foreground (its data lands in the
            memory plugged now, to be migrated by the next shrink);
         2. a second file is rewritten in the background, slowly, while the
            resize runs (writes during plugging and migration);
         3. `minivmm ctl --json resize node0 TARGET --wait W` on the host,
            timed; W = WAIT_BASE_S + WAIT_PER_GIB_S per GiB to unplug;
         4. GET /virtio-mem/node0: host_backed_bytes <= plugged_size + BOUND;
            GET /metrics: no ERROR answer to the driver, driver still active;
         5. the background writer is finished and its sum recorded; the guest
            runs sha256sum on every file and each sum must equal the host's
            record (a missing, extra or different file fails the cycle,
            naming the cycle and the file);
         6. GET /virtio-mem/node0 again and the same bound check.
  end    the guest's kernel log since the soak began (after boot and the
         initial plug) must have no BUG/Oops/WARNING/Call Trace/page
         allocation failure/OOM (lines from the boot itself are shown, not
         counted: the nested 6.1 guest warns about XSAVE sizes at boot,
         unrelated to memory); `poweroff -f`, minivmm exits 0.

A cycle whose wait times out (plugged_size != requested_size):
  - growing (target above what was plugged): FAIL. The guest always has
    room to plug (the memmap of a 4 GiB region is 64 MiB of boot RAM).
  - shrinking: the guest unplugs only memory whose pages it can migrate
    elsewhere. When the pages in use in its movable zone cannot fit into
    what remains (the free pages of its other zones above their high
    watermark plus the target size), the memory is *in use* and the guest
    cannot give it back. That is the one documented reason: the cycle is
    PARTIAL, plugged_size is taken as what the guest could give back, the
    line says so with the numbers, and it counts in the summary (bench/soak
    --strict makes it a failure). A guest in that state warns "page
    allocation failure" with a stack trace from virtio_mem_run_wq (its
    migration target allocations fail); in a run with a PARTIAL cycle such
    warnings, and only they, are shown as expected instead of failing it.
    A shrink that times out although the data would fit is a FAIL, as is a
    plugged_size outside [target, previous plugged size], a driver that is
    no longer active, or any ERROR answer. With the default sizes (512 MiB
    boot RAM, 192 MiB of files) every shrink is possible, so PARTIAL means
    something changed. (Measured in the nested test host: with 352 MiB of
    files a 1 GiB -> 0 shrink still completed; with 448 MiB it stopped at
    128 MiB plugged, or the guest's driver unplugged until the guest ran out
    of memory and panicked "System is deadlocked on memory", which fails
    the run as a dead guest does.)

BOUND is 0 bytes: the host may back at most what is plugged. minivmm
enforces it (docs/virtio-mem.md: its userfaultfd guard backs only plugged
blocks, and a block's memory is discarded on UNPLUG before it is
acknowledged), so this checks the enforcement under a real guest. When
plugged_size == requested_size the device is idle and one reading decides;
while a timed-out shrink goes on in the background, host_backed_bytes and
plugged_size are not read atomically (plugged_size may drop between them),
so a violation must be seen again in a second reading with the same
plugged_size.

Python 3.11 standard library only (bench/soak runs without pytest).
"""
from __future__ import annotations

import json
import random
import re
import shlex
import statistics
import time
from dataclasses import dataclass, field

import hostlib

MIB = 1 << 20
GIB = 1 << 30
STEP = 128 * MIB              # Linux's x86 memory block: targets are multiples of it

# host_backed_bytes may exceed plugged_size by this much (see the docstring).
BOUND = 0

READY = r"MINIVMM-GUEST-READY cpus=(\d+) memtotal_kb=(\d+) kernel=(\S+)\r?\n"
PROMPT = "guest# "
BOOT_TIMEOUT = 300
APPEND = "console=ttyS0 quiet"
DEVICE = "node0"
SOAK_DIR = "/soak"

# Resize waits: unplugging under the nested test host takes ~30 s per GiB
# (offlining and migrating), plugging ~1 s.
WAIT_BASE_S = 120
WAIT_PER_GIB_S = 90

# Kernel log lines that fail the run; KLOG_CONTEXT lines are shown with them
# (they name what a "Call Trace" belongs to) but count for nothing.
BAD_DMESG = (r"BUG:|Oops|WARNING:|Call Trace|page allocation failure|invoked oom-killer|"
             r"Out of memory|virtio_mem.*(broken|[Ee]rror)")
KLOG_CONTEXT = r"Workqueue:|XSAVE consistency"
# What a guest that runs out of memory to migrate to while it unplugs prints:
# its migration target allocation (GFP_HIGHUSER_MOVABLE|__GFP_RETRY_MAYFAIL,
# in virtio_mem_run_wq) fails with a warning and a stack trace.
ALLOC_FAILURE = r"page allocation failure|Call Trace"


class SoakError(Exception):
    """The soak could not run (boot failed, a command did not answer)."""


def fmt_size(n: int) -> str:
    if n % GIB == 0 and n:
        return f"{n // GIB}G"
    return f"{n // MIB}M"


def pick_targets(rng: random.Random, region: int, cycles: int) -> list[int]:
    """Random multiples of STEP in [0, region]; about one in seven is 0 and
    one in seven the whole region, and (with 2 cycles or more) each of those
    comes at least once. A draw equal to the previous target is drawn again
    once, so most cycles move."""
    steps = region // STEP
    out: list[int] = []
    prev = None
    for _ in range(cycles):
        for _attempt in range(2):
            r = rng.random()
            t = 0 if r < 0.15 else region if r < 0.30 else rng.randint(0, steps) * STEP
            if t != prev:
                break
        out.append(t)
        prev = t
    if cycles >= 2:
        for must, other in ((0, region), (region, 0)):
            if must not in out:
                idx = [i for i, t in enumerate(out) if t != other]
                out[rng.choice(idx)] = must
    return out


def resize_wait_s(plugged_before: int, target: int) -> int:
    return WAIT_BASE_S + WAIT_PER_GIB_S * -(-max(0, plugged_before - target) // GIB)


@dataclass
class Cycle:
    n: int
    target: int
    plugged_before: int
    plugged: int = 0
    requested: int = 0
    host_backed: int = 0           # the largest of the readings of the cycle
    over: int | None = None        # the largest host_backed_bytes - plugged_size read
    seconds: float = 0.0           # the resize, as `minivmm ctl --wait` took
    movable_used: int = 0          # bytes in use in the guest's movable zone after the cycle
    checksums: str = "-"           # "ok (N files)" or what mismatched
    outcome: str = "ok"            # ok | partial | FAIL
    problems: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def failed(self) -> bool:
        return self.outcome == "FAIL"

    def fail(self, why: str) -> None:
        self.outcome = "FAIL"
        if why not in self.problems:
            self.problems.append(why)


def header() -> str:
    return (f"{'cycle':>5} {'target':>7} {'plugged':>7} {'host-backed':>11} {'movable-used':>12} "
            f"{'seconds':>7}  checksums / outcome")


def line(c: Cycle) -> str:
    mib = lambda n: f"{n // MIB}M"  # noqa: E731
    text = (f"{c.n:>5} {mib(c.target):>7} {mib(c.plugged):>7} {mib(c.host_backed):>11} "
            f"{mib(c.movable_used):>12} {c.seconds:7.1f}  {c.checksums}")
    if c.outcome == "partial":
        text += f"; PARTIAL: {c.note}"
    if c.problems:
        text += "; FAIL: " + "; ".join(c.problems)
    return text


class Soak:
    """One guest under minivmm with a virtio-mem device and the API, and the
    files it keeps. Drive it with setup(), cycle() and finish()."""

    def __init__(self, host: hostlib.Host, minivmm: str, *, kernel: str = "6.1",
                 mem_mib: int = 512, cpus: int = 2, region: int = 4 * GIB,
                 files: int = 12, file_mib: int = 16, seed: int = 1, log=print,
                 sock: str = "/tmp/minivmm-soak.sock", guard: bool = False):
        if region <= 0 or region % STEP:
            raise ValueError(f"region {region} is not a positive multiple of 128 MiB")
        self.host = host
        self.minivmm = minivmm
        self.kernel = kernel
        self.mem_mib = mem_mib
        self.cpus = cpus
        self.guard = guard              # the device's userfaultfd guard (guard=on)
        self.region = region
        self.files = files
        self.file_mib = file_mib
        self.rng = random.Random(seed ^ 0x5eed)      # which files to rewrite
        self.log = log
        self.sock = sock
        self.sums: dict[str, str] = {}             # path -> sha256, the host's record
        self.session: hostlib.Session | None = None
        self.plugged = 0
        self.initial = (region // 2) // STEP * STEP
        self._errors0 = 0
        self.started = 0.0              # guest uptime when the soak began

    # -- plumbing -----------------------------------------------------------
    def guest(self, command: str, pattern: str, timeout: float = 120) -> re.Match:
        """Runs a guest shell command line; the match of pattern in its
        output (patterns must not match the echoed command line)."""
        s = self.session
        s.sendline(command)
        m = s.expect(pattern, timeout=timeout)
        s.expect(PROMPT, timeout=60)
        return m

    def api(self, path: str) -> str:
        return self.host.check(shlex.join([self.host.path("curl"), "-sS", "--fail-with-body",
                                           "--unix-socket", self.sock,
                                           f"http://localhost{path}"]), timeout=120)

    def device(self) -> dict:
        return json.loads(self.api(f"/virtio-mem/{DEVICE}"))

    def errors(self) -> int:
        """ERROR answers the device gave its driver so far."""
        m = re.search(rf'^minivmm_virtio_mem_responses_total\{{id="{DEVICE}",result="error"\}} '
                      r"(\d+)$", self.api("/metrics"), re.M)
        if not m:
            raise SoakError("GET /metrics has no error response counter")
        return int(m.group(1))

    def resize(self, target: int, wait_s: int) -> tuple[int, dict, float]:
        """`minivmm ctl resize --wait`: (exit status, device JSON, seconds)."""
        cmd = shlex.join([self.minivmm, "ctl", "--api-sock", self.sock, "--json", "resize",
                          DEVICE, fmt_size(target), "--wait", str(wait_s)])
        t0 = time.monotonic()
        rc, out = self.host.run(cmd, timeout=wait_s + 120)
        took = time.monotonic() - t0
        if rc not in (0, 3):
            raise SoakError(f"{cmd}: exit status {rc}: {out.strip()}")
        return rc, json.loads(out.strip().splitlines()[-1]), took

    def vmm_messages(self) -> list[str]:
        """minivmm's own lines on the console (errors, resets, exits)."""
        out = self.session.output if self.session else ""
        return re.findall(r"^minivmm: .*$", out, re.M) or ["(minivmm printed nothing)"]

    def zones(self) -> dict[str, dict[str, int]]:
        """The guest's /proc/zoneinfo: zone -> managed, free, high (pages)."""
        m = self.guest(
            "echo ZONES-\"\"BEGIN; awk '/^Node/{z=$4} $1==\"pages\"&&$2==\"free\"{f[z]=$3} "
            "$1==\"high\"{h[z]=$2} $1==\"managed\"{m[z]=$2} "
            "END{for(k in m) printf \"ZONE %s %d %d %d\\n\", k, m[k], f[k], h[k]}' "
            "/proc/zoneinfo; echo ZONES-\"\"END",
            r"(?s)ZONES-BEGIN\n(.*?)ZONES-END\n")
        out = {}
        for z, man, free, high in re.findall(r"ZONE (\S+) (\d+) (\d+) (\d+)", m.group(1)):
            out[z] = {"managed": int(man), "free": int(free), "high": int(high)}
        return out

    def movable_used(self) -> int:
        z = self.zones().get("Movable", {"managed": 0, "free": 0})
        return (z["managed"] - z["free"]) * 4096

    # -- data -----------------------------------------------------------------
    def path(self, i: int) -> str:
        return f"{SOAK_DIR}/f{i:02d}"

    def write_file(self, i: int) -> None:
        p = self.path(i)
        tag = f"WROTE{i:02d}"
        # No pipes: in the nested test host every pipe buffer handed from
        # process to process costs guest context switches, and dd | tee |
        # sha256sum took 10 s for 16 MiB where dd and then sha256sum take 2.
        m = self.guest(f"dd if=/dev/urandom of={p} bs=1M count={self.file_mib} 2>/dev/null; "
                       f"sha256sum {p} | sed 's/ .*//; s/^/{tag}=/'",
                       rf"{tag}=([0-9a-f]{{64}})\n", timeout=60 + 2 * self.file_mib)
        self.sums[p] = m.group(1)

    def start_background_write(self, i: int) -> None:
        """Rewrites file i from a background job, 1 MiB at a time with a
        pause while /tmp/soak-resizing exists (i.e. during the resize)."""
        p = self.path(i)
        self.guest("rm -f /tmp/soak-bg.sum; touch /tmp/soak-resizing; "
                   f"(: > {p}; j=0; while [ $j -lt {self.file_mib} ]; do "
                   f"dd if=/dev/urandom bs=1M count=1 >> {p} 2>/dev/null; "
                   "[ -e /tmp/soak-resizing ] && usleep 250000; j=$((j+1)); done; "
                   f"sha256sum {p} > /tmp/soak-bg.sum) </dev/null >/dev/null 2>&1 & "
                   "echo BG-\"\"STARTED", r"BG-STARTED\n")
        self.sums[p] = None  # being rewritten

    def finish_background_write(self, i: int) -> None:
        m = self.guest("rm -f /tmp/soak-resizing; wait; "
                       "sed 's/ .*//; s/^/BGSUM=/' /tmp/soak-bg.sum; echo BG-\"\"DONE",
                       r"(?:BGSUM=([0-9a-f]{64})\n)?BG-DONE\n", timeout=60 + 2 * self.file_mib)
        if not m.group(1):
            raise SoakError(f"the background rewrite of {self.path(i)} left no checksum")
        self.sums[self.path(i)] = m.group(1)

    def verify(self) -> list[str]:
        """Hashes every file in the guest; what differs from the host's
        record ([] when everything matches)."""
        m = self.guest(f"sha256sum {SOAK_DIR}/* > /tmp/soak.sums 2>&1; echo SUMS-\"\"RC=$?; "
                       "cat /tmp/soak.sums; echo SUMS-\"\"END",
                       r"(?s)SUMS-RC=(\d+)\n(.*?)SUMS-END\n",
                       timeout=60 + self.files * self.file_mib // 4)
        seen = {p: h for h, p in re.findall(rf"^([0-9a-f]{{64}})  ({SOAK_DIR}/\S+)$",
                                            m.group(2), re.M)}
        bad = []
        for p, want in sorted(self.sums.items()):
            got = seen.get(p)
            if got is None:
                bad.append(f"{p} missing")
            elif got != want:
                bad.append(f"{p} sha256 {got[:12]}.. != written {want[:12]}..")
        bad += [f"{p} unexpected" for p in sorted(set(seen) - set(self.sums))]
        if m.group(1) != "0" and not bad:
            bad.append(f"sha256sum exit status {m.group(1)}: {m.group(2).strip()[-300:]}")
        return bad

    # -- phases -----------------------------------------------------------------
    def command(self) -> str:
        return shlex.join([
            self.minivmm, "--kernel", self.host.guest_kernel(self.kernel),
            "--initrd", self.host.guest_initrd(self.kernel), "--cpus", str(self.cpus),
            "--mem", f"{self.mem_mib}M", "--cmdline", APPEND,
            "--virtio-mem", f"{DEVICE}:{fmt_size(self.region)},requested={fmt_size(self.initial)}"
            + (",guard=on" if self.guard else ",guard=off"),
            "--api-sock", self.sock])

    def setup(self) -> None:
        """Boots the guest, waits for the initial plug, writes the files."""
        self.host.run(f"rm -f {shlex.quote(self.sock)}")
        self.session = self.host.spawn(self.command())
        self.session.expect(READY, timeout=BOOT_TIMEOUT)
        self.session.expect(PROMPT, timeout=60)
        rc, d, took = self.resize(self.initial, resize_wait_s(0, 0))
        if rc != 0:
            raise SoakError(f"the guest did not plug the initial {fmt_size(self.initial)}: {d}")
        self.plugged = d["plugged_size"]
        self._errors0 = self.errors()
        self.started = self.uptime()
        for x in self.dmesg_problems(self.started, before=True):
            self.log(f"soak: guest kernel log from its boot, before the soak (not counted): {x}")
        self.guest(f"mkdir -p {SOAK_DIR} && mount -t tmpfs -o size=90% soak {SOAK_DIR} "
                   "&& echo MOUN\"\"TED", r"MOUNTED\n")
        t0 = time.monotonic()
        for i in range(self.files):
            self.write_file(i)
        bad = self.verify()
        if bad:
            raise SoakError(f"the files did not verify right after writing: {bad}")
        self.log(f"soak: {self.files} files x {self.file_mib} MiB written and verified in "
                 f"{time.monotonic() - t0:.1f} s; {fmt_size(self.plugged)} plugged, "
                 f"{self.movable_used() // MIB} MiB of the guest's movable memory in use")

    def check_bound(self, c: Cycle, d: dict) -> dict:
        """host_backed_bytes <= plugged_size + BOUND (see the docstring).
        Returns the reading that decided."""
        # While the driver still works (a timed-out shrink), a violation
        # counts only when a second reading shows the same plugged_size.
        for _ in range(5):
            if (d["host_backed_bytes"] <= d["plugged_size"] + BOUND
                    or d["plugged_size"] == d["requested_size"]):
                break
            again = self.device()
            if again["plugged_size"] == d["plugged_size"]:
                d = again
                break
            d = again
        c.host_backed = max(c.host_backed, d["host_backed_bytes"])
        over = d["host_backed_bytes"] - d["plugged_size"]
        c.over = over if c.over is None else max(c.over, over)
        if over > BOUND:
            c.fail(f"host_backed_bytes {d['host_backed_bytes']} > plugged_size "
                   f"{d['plugged_size']} + BOUND {BOUND} (host_backed - plugged = {over})")
        return d

    def check_device(self, c: Cycle, d: dict) -> None:
        if d["driver_state"] != "active":
            c.fail(f"driver_state {d['driver_state']}")
        errors = self.errors()
        if errors != self._errors0:
            c.fail(f"the device answered {errors - self._errors0} request(s) with ERROR")
            self._errors0 = errors
        self.check_bound(c, d)

    def judge_timeout(self, c: Cycle, d: dict) -> None:
        """A resize that did not reach its target (see the docstring)."""
        plugged = d["plugged_size"]
        if c.target >= c.plugged_before:
            c.fail(f"grow to {fmt_size(c.target)} stopped at {plugged // MIB} MiB")
            return
        if not c.target <= plugged <= c.plugged_before:
            c.fail(f"shrink from {c.plugged_before // MIB} MiB to {c.target // MIB} MiB "
                   f"left plugged_size {plugged // MIB} MiB")
            return
        zones = self.zones()
        mov = zones.get("Movable", {"managed": 0, "free": 0})
        used = (mov["managed"] - mov["free"]) * 4096
        room = sum(max(0, z["free"] - z["high"]) * 4096
                   for name, z in zones.items() if name != "Movable")
        need = used - c.target
        evidence = (f"{(plugged - c.target) // MIB} MiB still plugged above the target; "
                    f"{used // MIB} MiB in use in the movable zone, "
                    f"{room // MIB} MiB free elsewhere (above the high watermarks)")
        if need > room:
            c.outcome = "partial"
            c.note = f"memory in use: {evidence}"
        else:
            c.fail(f"shrink timed out although the data fits: {evidence}")

    def cycle(self, n: int, target: int) -> Cycle:
        c = Cycle(n=n, target=target, plugged_before=self.plugged)
        fg, bg = self.rng.sample(range(self.files), 2)
        self.write_file(fg)
        self.start_background_write(bg)
        rc, d, c.seconds = self.resize(target, resize_wait_s(self.plugged, target))
        reboots = json.loads(self.api("/vm"))["reboots"]
        if reboots:
            # A reset VM starts from scratch: nothing left to verify.
            raise SoakError(f"cycle {n}: the guest was reset during the resize to "
                            f"{fmt_size(target)} (reboots={reboots}); "
                            + " / ".join(self.vmm_messages()))
        c.plugged, c.requested = d["plugged_size"], d["requested_size"]
        if c.requested != target:
            c.fail(f"requested_size {c.requested} after resizing to {target}")
        if rc == 3 or c.plugged != target:
            self.judge_timeout(c, d)
        self.check_device(c, d)
        self.finish_background_write(bg)
        bad = self.verify()
        c.checksums = f"ok ({len(self.sums)} files)" if not bad else "MISMATCH"
        for b in bad:
            c.fail(b)
        d = self.check_bound(c, self.device())
        c.plugged = d["plugged_size"]
        self.plugged = c.plugged
        c.movable_used = self.movable_used()
        return c

    def rebaseline(self) -> None:
        """After a mismatch (with keep-going): record what the files hold now,
        so later cycles report only new damage."""
        m = self.guest(f"echo RB-\"\"BEGIN; sha256sum {SOAK_DIR}/*; echo RB-\"\"END",
                       r"(?s)RB-BEGIN\n(.*?)RB-END\n", timeout=60 + self.files * self.file_mib // 4)
        self.sums = {p: h for h, p in re.findall(rf"^([0-9a-f]{{64}})  ({SOAK_DIR}/\S+)$",
                                                 m.group(1), re.M)}

    def uptime(self) -> float:
        return float(self.guest("read -r u _ </proc/uptime; echo UP\"\"TIME=$u",
                                r"UPTIME=([\d.]+)\n").group(1))

    def dmesg_problems(self, since: float, before: bool = False) -> list[str]:
        """Kernel log lines matching BAD_DMESG or KLOG_CONTEXT stamped at
        or after `since` (guest uptime), or before it."""
        cmp = "<" if before else ">="
        m = self.guest("echo KLOG-\"\"BEGIN; dmesg | awk 'match($0, /^\\[ *[0-9.]+\\]/) "
                       f"{{ if (substr($0, 2, RLENGTH - 2) + 0 {cmp} {since}) print }}' "
                       f"| grep -E {shlex.quote(BAD_DMESG + '|' + KLOG_CONTEXT)} | head -n 40; "
                       "echo KLOG-\"\"END", r"(?s)KLOG-BEGIN\n(.*?)KLOG-END\n")
        return [x for x in m.group(1).splitlines() if x.strip()]

    def finish(self) -> None:
        if self.session and self.session.exit_status is None:
            self.session.sendline("poweroff -f")
            status = self.session.wait_exit(timeout=120)
            if status != 0:
                raise SoakError(f"minivmm exited with status {status}")


@dataclass
class Result:
    cycles: list[Cycle]
    problems: list[str]            # failures outside the cycles (kernel log, setup)
    seconds: float

    @property
    def failed(self) -> list[Cycle]:
        return [c for c in self.cycles if c.failed]

    @property
    def partial(self) -> list[Cycle]:
        return [c for c in self.cycles if c.outcome == "partial"]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.problems

    def summary(self) -> str:
        cs = self.cycles
        secs = [c.seconds for c in cs] or [0.0]
        over = max((c.over for c in cs if c.over is not None), default=0)
        lines = [
            f"cycles: {len(cs)}, passed {len(cs) - len(self.failed)} "
            f"(of which partial {len(self.partial)}), failed {len(self.failed)}",
            f"resize seconds: min {min(secs):.1f}, median {statistics.median(secs):.1f}, "
            f"max {max(secs):.1f}; whole run {self.seconds:.0f} s",
            f"largest host_backed_bytes - plugged_size read: {over} bytes (BOUND {BOUND})",
            f"movable memory in use after a cycle: "
            f"{min((c.movable_used for c in cs), default=0) // MIB}.."
            f"{max((c.movable_used for c in cs), default=0) // MIB} MiB",
        ]
        for c in self.partial:
            lines.append(f"partial cycle {c.n}: {c.note}")
        for c in self.failed:
            lines.append(f"FAILED cycle {c.n}: " + "; ".join(c.problems))
        lines += [f"FAILED: {p}" for p in self.problems]
        lines.append("RESULT: " + ("PASS" if self.ok else "FAIL"))
        return "\n".join(lines)


def run_soak(host: hostlib.Host, minivmm: str, *, cycles: int, seed: int, region: int,
             kernel: str = "6.1", mem_mib: int = 512, cpus: int = 2, files: int = 12,
             file_mib: int = 16, keep_going: bool = False, strict: bool = False,
             log=print, sock: str = "/tmp/minivmm-soak.sock", after=None,
             guard: bool = False) -> Result:
    """The whole soak; log() gets the header, one line per cycle and notes.
    after(soak), if given, runs once the cycles are done, before the kernel
    log check and the power-off (the test checks the checker there)."""
    t0 = time.monotonic()
    soak = Soak(host, minivmm, kernel=kernel, mem_mib=mem_mib, cpus=cpus, region=region,
                files=files, file_mib=file_mib, seed=seed, log=log, sock=sock, guard=guard)
    targets = pick_targets(random.Random(seed), region, cycles)
    done: list[Cycle] = []
    problems: list[str] = []
    try:
        soak.setup()
        log(header())
        for n, target in enumerate(targets, 1):
            c = soak.cycle(n, target)
            if strict and c.outcome == "partial":
                c.fail(f"partial shrink (--strict): {c.note}")
            done.append(c)
            log(line(c))
            if c.failed:
                if not keep_going:
                    break
                if c.checksums == "MISMATCH":
                    soak.rebaseline()
        if after:
            after(soak)
        klog = soak.dmesg_problems(soak.started)
        bad = [x for x in klog if re.search(BAD_DMESG, x)]
        pressure = (any(c.outcome == "partial" for c in done) and bad
                    and all(re.search(ALLOC_FAILURE, x) for x in bad)
                    and sum("Call Trace" in x for x in bad)
                    <= sum("page allocation failure" in x for x in bad))
        for x in klog:
            if pressure:
                log(f"soak: guest kernel log, expected with a PARTIAL shrink (no memory left "
                    f"to migrate to): {x}")
            elif bad:
                problems.append(f"guest kernel log: {x}")
        soak.finish()
    except (hostlib.HostError, SoakError, OSError) as e:
        # OSError: the test host itself went away (its console pipe broke).
        problems.append(f"{type(e).__name__}: {e}")
        proc = getattr(host, "_proc", None)       # TestHostVM's QEMU
        if proc is not None and proc.poll() is not None:
            problems.append(f"the test host's QEMU exited (status {proc.returncode}); it runs "
                            "with -no-reboot, so a reset of the test host itself ends it")
        elif not isinstance(e, SoakError) and soak.session:
            problems.append("minivmm said: " + " / ".join(soak.vmm_messages()))
    finally:
        if soak.session and soak.session.exit_status is None:
            try:
                soak.session.close()
            except (hostlib.HostError, OSError):
                pass
    return Result(done, problems, time.monotonic() - t0)
