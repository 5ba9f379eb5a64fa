"""Data integrity under virtio-mem resize cycles: the short form of bench/soak
(same code, tests/boot/soaklib.py). A guest keeps 80 MiB of files in a tmpfs,
partly in hot-plugged movable memory, while its 1 GiB device is resized 12
times through the API (`minivmm ctl resize --wait`) to random multiples of
128 MiB (fixed seed 9: 2 GiB unplugged in all, 1 GiB -> 0 once; about 3
minutes in the nested test host). After each cycle every file must hash as
written, host_backed_bytes must stay <= plugged_size + BOUND (0), and
every resize must reach its target: with these sizes the guest can always
give memory back, so even soaklib's documented PARTIAL case (a shrink the
guest cannot finish because the memory is in use) fails this test. Finally
16 bytes of one file are changed behind the checker's back, and the checker
must name that file."""
import soaklib

CYCLES = 12
SEED = 9
REGION = 1 << 30
FILES = 5
FILE_MIB = 16
# One vCPU: with two, the nested 6.1 guest has stalled on vCPU 1 (RCU "timer
# wakeup didn't happen ... cpu=1") before the first resize, and reset with a
# triple fault on vCPU 1 in other tests; that SMP problem in the nested test
# host is open (bench/soak keeps 2 vCPUs). What this test checks, data and
# the host bound across resizes, does not depend on the vCPU count.
CPUS = 1


def test_soak_integrity_and_bound(host, minivmm, tmp_path):
    lines = []
    caught = {}

    def corrupt_one(soak):
        # Past the soak: the verifier must see 16 overwritten bytes in f03
        # (more than one, so that random data cannot already hold them).
        victim = soak.path(3)
        soak.guest(f"printf 0123456789abcdef | dd of={victim} bs=1 seek=1234567 conv=notrunc "
                   "2>/dev/null; "
                   "echo COR\"\"RUPTED", r"CORRUPTED\n")
        caught["bad"] = soak.verify()

    sock = str(tmp_path / "api.sock") if host.kind == "local" else "/tmp/minivmm-soak-test.sock"
    result = soaklib.run_soak(host, minivmm, cycles=CYCLES, seed=SEED, region=REGION,
                              files=FILES, file_mib=FILE_MIB, cpus=CPUS, sock=sock,
                              log=lines.append,
                              after=corrupt_one)
    report = "\n".join(lines + ["", result.summary()])
    print(report)
    assert result.ok, report
    assert len(result.cycles) == CYCLES, report
    assert {0, REGION} <= {c.target for c in result.cycles}, report
    assert not result.partial, report
    assert len(caught.get("bad", [])) == 1 and caught["bad"][0].startswith("/soak/f03 sha256"), \
        caught
