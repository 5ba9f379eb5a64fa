"""virtio-mem pieces that need a KVM but no Linux guest: the real binary
with a tiny guest, on the local /dev/kvm."""
import subprocess

import pytest

pytestmark = pytest.mark.usefixtures("local_kvm")


def run(minivmm, kernel, cmdline, *extra, timeout=60):
    args = [minivmm, "--kernel", kernel, "--cmdline", cmdline, "--mem", "64M", *extra]
    return subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)


def test_guest_touching_unplugged_memory_without_a_memslot_stops_the_vm(minivmm, tiny_kernel):
    """Nothing is plugged, so no memslot covers the region: the guest's read
    exits to minivmm, which refuses it and stops the VM (status 1) with a
    line naming the device, the address and the rule; the guest never gets
    to its write or its success marker."""
    r = run(minivmm, tiny_kernel, "h", "--virtio-mem", "m0:1G")
    out, err = r.stdout.decode(), r.stderr.decode()
    assert r.returncode == 1, (out, err)
    assert "HOTPLUG-UNPLUGGED-OK" not in out, out
    assert ("m0: guest read from unplugged memory at 0x100000000; unplugged blocks are "
            "inaccessible (VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE): VM stopped") in err, err
    assert "guest powered off" not in err


def test_virtio_mem_device_is_announced(minivmm, tiny_kernel):
    r = run(minivmm, tiny_kernel, "p", "--verbose", "--virtio-mem", "node1:64G,requested=4G",
            "--virtio-mem", "x:2G,block=1G")
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert "node1: 64G at 0x100000000 (node 1, block 2M, memslots of 1G)" in err, err
    assert "x: 2G at 0x1100000000 (node 0, block 1G, memslots of 1G)" in err, err


@pytest.mark.parametrize("spec,message", [
    ("m:100M", "--virtio-mem m: size 100M: must be a non-zero multiple of 128M"),
    ("m:4G,block=3M", "--virtio-mem m: block=3M: must be a power of two"),
    ("m:64T", "--virtio-mem m: size 64T does not fit the guest-physical address space"),
])
def test_bad_virtio_mem_values(minivmm, tiny_kernel, spec, message):
    r = run(minivmm, tiny_kernel, "p", "--virtio-mem", spec)
    assert r.returncode == 2
    assert message in r.stderr.decode()
