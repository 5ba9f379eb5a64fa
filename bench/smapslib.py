"""A VMM process's memory excluding its guest's memory, from
/proc/PID/smaps_rollup and /proc/PID/smaps (bench/footprint).

RSS and USS (unique set size: Private_Clean + Private_Dirty, the memory
that would be freed if the process ended) come from smaps_rollup; the guest
memory mappings, found in smaps, are subtracted from both.

Which mappings are guest memory. A KVM VMM hands the kernel the host virtual
ranges of guest RAM (KVM_SET_USER_MEMORY_REGION), but no /proc file lists
them, so the mappings are recognised by what only guest memory is, in
either VMM:
  - shared memory from a memfd (`/memfd:NAME (deleted)`): minivmm's guest
    RAM (`minivmm-ram`) and virtio-mem regions (`minivmm-hotplug`), QEMU's
    memory-backend-memfd; and any hugetlbfs mapping (KernelPageSize above
    4 kB, e.g. minivmm's hugepages= memfds);
  - an anonymous mapping at least as large as the smallest guest memory
    block the bench configured (the boot RAM size, >= 32 MiB): QEMU's
    default RAM (`-m`) and memory-backend-ram, or anonymous guest RAM in any
    VMM. Nothing else of a VMM is that large and anonymous: glibc's malloc
    arenas are at most 64 MiB and thread stacks 8 MiB.
The caller checks the result: the guest mappings must add up to at least the
boot RAM size (check_guest), so a VMM whose guest memory looks different
makes the bench fail rather than report its guest RAM as overhead.

Runs on Python 3.11's standard library; the VMM may run elsewhere (inside the
test host), so callers pass the files' text.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# What the test host's busybox awk prints per mapping of /proc/PID/smaps:
# "Size Rss Pss Private_Clean Private_Dirty KernelPageSize <header line>",
# all in kB; a few hundred short lines where the file itself has ~25 per
# mapping (QEMU has hundreds of mappings, and the test host's control channel
# is a serial port).
SMAPS_AWK = ("awk '/^[0-9a-f]+-[0-9a-f]+ /{if (h != \"\") print sz, rss, pss, pc, pd, kps, h; "
             "h = $0; sz = rss = pss = pc = pd = kps = 0; next} "
             "/^Size:/{sz = $2} /^Rss:/{rss = $2} /^Pss:/{pss = $2} "
             "/^Private_Clean:/{pc = $2} /^Private_Dirty:/{pd = $2} /^KernelPageSize:/{kps = $2} "
             "END{if (h != \"\") print sz, rss, pss, pc, pd, kps, h}'")


@dataclass
class Mapping:
    start: int
    end: int
    perms: str
    name: str         # "" for anonymous memory
    size_kb: int
    rss_kb: int
    pss_kb: int
    uss_kb: int       # Private_Clean + Private_Dirty
    page_kb: int      # KernelPageSize


def smaps_command(pid: int) -> str:
    """The shell command printing SMAPS_AWK's lines for pid."""
    return f"{SMAPS_AWK} /proc/{pid}/smaps"


def parse_smaps_lines(text: str) -> list[Mapping]:
    """Mappings from SMAPS_AWK's output."""
    out = []
    for line in text.splitlines():
        parts = line.split(None, 6)
        if len(parts) < 7 or not parts[0].isdigit():
            continue
        size, rss, pss, pc, pd, kps = (int(x) for x in parts[:6])
        hdr = parts[6].split(None, 5)
        if len(hdr) < 5 or "-" not in hdr[0]:
            continue
        lo, hi = (int(x, 16) for x in hdr[0].split("-"))
        name = hdr[5].strip() if len(hdr) > 5 else ""
        out.append(Mapping(lo, hi, hdr[1], name, size, rss, pss, pc + pd, kps))
    return out


def parse_smaps(text: str) -> list[Mapping]:
    """Mappings from the text of /proc/PID/smaps itself (local runs)."""
    lines, cur = [], None
    head = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")
    fields = {}

    def flush():
        if cur is not None:
            lines.append(" ".join(str(fields.get(k, 0)) for k in
                                  ("Size", "Rss", "Pss", "Private_Clean", "Private_Dirty",
                                   "KernelPageSize")) + " " + cur)

    for line in text.splitlines():
        if head.match(line):
            flush()
            cur, fields = line, {}
        else:
            m = re.match(r"^(\w+):\s+(\d+) kB", line)
            if m:
                fields[m.group(1)] = int(m.group(2))
    flush()
    return parse_smaps_lines("\n".join(lines))


def parse_rollup(text: str) -> dict[str, int]:
    """/proc/PID/smaps_rollup's kB fields."""
    return {k: int(v) for k, v in re.findall(r"^(\w+):\s+(\d+) kB", text, re.M)}


def is_guest(m: Mapping, min_anon_kb: int) -> bool:
    """Whether m is guest memory (see the module docstring)."""
    if m.name.startswith("/memfd:") and "s" in m.perms:
        return True
    if m.page_kb > 4:       # hugetlbfs: only guest memory uses it in a VMM
        return True
    return m.name == "" and m.size_kb >= min_anon_kb


def category(m: Mapping, exe: str) -> str:
    """Where a non-guest mapping's memory goes, for the breakdown."""
    n = m.name
    if n == "[heap]":
        return "heap"
    if n == "[stack]" or n.startswith("[stack"):
        return "stacks"
    if n in ("[vdso]", "[vvar]", "[vsyscall]", "[vvar_vclock]"):
        return "vdso"
    if n.startswith("anon_inode:"):
        return "kvm/anon_inode"
    if n == "":
        # Thread stacks are 8 MiB mappings (RLIMIT_STACK) behind a guard
        # page; malloc arenas are 64 MiB-aligned heaps of up to 64 MiB.
        return "stacks" if m.size_kb in (8192, 8188) else "anon (malloc arenas, other)"
    base = n.split("/")[-1]
    if exe and (n == exe or base == exe.split("/")[-1]):
        return "executable"
    if base.startswith(("libc.so", "ld-linux", "libm.so")):
        return "libc+ld.so"
    if ".so" in base:
        return "other shared libraries"
    return "other files"


@dataclass
class Footprint:
    rss_kb: int               # whole process (smaps_rollup)
    uss_kb: int
    guest_rss_kb: int         # guest memory mappings
    guest_uss_kb: int
    guest_size_kb: int        # mapped size of the guest memory mappings
    n_guest: int
    categories: dict          # category -> (rss_kb, uss_kb), guest memory excluded

    @property
    def rss_ex_guest_kb(self) -> int:
        return self.rss_kb - self.guest_rss_kb

    @property
    def uss_ex_guest_kb(self) -> int:
        return self.uss_kb - self.guest_uss_kb


def footprint(rollup_text: str, maps: list[Mapping], min_anon_kb: int, exe: str = "") -> Footprint:
    roll = parse_rollup(rollup_text)
    if "Rss" not in roll:
        raise ValueError(f"no Rss in smaps_rollup: {rollup_text[:200]!r}")
    guest = [m for m in maps if is_guest(m, min_anon_kb)]
    cats: dict[str, list[int]] = {}
    for m in maps:
        if m in guest:
            continue
        c = cats.setdefault(category(m, exe), [0, 0])
        c[0] += m.rss_kb
        c[1] += m.uss_kb
    return Footprint(
        rss_kb=roll["Rss"],
        uss_kb=roll.get("Private_Clean", 0) + roll.get("Private_Dirty", 0),
        guest_rss_kb=sum(m.rss_kb for m in guest),
        guest_uss_kb=sum(m.uss_kb for m in guest),
        guest_size_kb=sum(m.size_kb for m in guest),
        n_guest=len(guest),
        categories={k: tuple(v) for k, v in cats.items()})


def check_guest(fp: Footprint, boot_ram_kb: int, who: str) -> None:
    """Raises ValueError unless the guest mappings cover the boot RAM."""
    if fp.guest_size_kb < boot_ram_kb:
        raise ValueError(f"{who}: the mappings taken for guest memory add up to "
                         f"{fp.guest_size_kb} KiB, less than the {boot_ram_kb} KiB of boot RAM: "
                         "its guest memory is not recognised (bench/smapslib.py)")


if __name__ == "__main__":
    # Local use: bench/smapslib.py PID [MIN_ANON_MIB]: one process's footprint.
    import sys
    pid = int(sys.argv[1])
    min_kb = (int(sys.argv[2]) if len(sys.argv) > 2 else 32) * 1024
    with open(f"/proc/{pid}/smaps") as f:
        maps = parse_smaps(f.read())
    with open(f"/proc/{pid}/smaps_rollup") as f:
        roll = f.read()
    import os
    exe = os.readlink(f"/proc/{pid}/exe")
    fp = footprint(roll, maps, min_kb, exe)
    print(f"RSS {fp.rss_kb} kB, USS {fp.uss_kb} kB; guest memory: {fp.n_guest} mappings, "
          f"{fp.guest_size_kb} kB mapped, RSS {fp.guest_rss_kb} kB")
    print(f"excluding guest memory: RSS {fp.rss_ex_guest_kb} kB, USS {fp.uss_ex_guest_kb} kB")
    for k, (r, u) in sorted(fp.categories.items(), key=lambda kv: -kv[1][0]):
        print(f"  {k:28s} RSS {r:6d} kB  USS {u:6d} kB")
