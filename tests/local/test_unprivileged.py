"""minivmm needs no privilege beyond access to /dev/kvm: it runs as an
ordinary user (nobody here) with seccomp on, and a user without access gets
a clear error. As root the test gives nobody access to /dev/kvm only inside
a private mount namespace (a nobody-owned node bind-mounted over /dev/kvm),
so the host's device stays as it is."""
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("local_kvm")


def as_nobody(minivmm, kernel, tmp_path, give_access, *extra, give_userfaultfd=True):
    if os.geteuid() != 0:
        # Already unprivileged: the plain run is the test.
        return subprocess.run([minivmm, "--kernel", kernel, *extra], capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)
    for tool in ("unshare", "setpriv", "mknod"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} (util-linux/coreutils) is needed for this test")
    node = tmp_path / "kvm"
    setup = f"mknod {node} c 10 232 && "
    setup += (f"chown nobody {node} && chmod 600 {node} && " if give_access else
              f"chmod 600 {node} && ")
    setup += f"mount --bind {node} /dev/kvm && "
    # The virtio-mem guard needs a userfaultfd that sees KVM's faults:
    # /dev/userfaultfd, given like /dev/kvm (or taken away).
    uffd = os.stat("/dev/userfaultfd").st_rdev if os.path.exists("/dev/userfaultfd") else None
    if uffd is not None:
        unode = tmp_path / "userfaultfd"
        setup += f"mknod {unode} c {os.major(uffd)} {os.minor(uffd)} && chmod 600 {unode} && "
        if give_userfaultfd:
            setup += f"chown nobody {unode} && "
        setup += f"mount --bind {unode} /dev/userfaultfd && "
    cmd = shlex.join(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                      minivmm, "--kernel", kernel, *extra])
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           setup + "exec " + cmd], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


@pytest.fixture
def shared_dir():
    """A directory nobody can enter (pytest's are private to root)."""
    d = Path(tempfile.mkdtemp(prefix="minivmm-nobody-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def readable_copy(tmp_path, path):
    """A copy nobody can read and run."""
    dst = tmp_path / os.path.basename(path)
    shutil.copy(path, dst)
    os.chmod(dst, 0o755)
    return str(dst)


def test_runs_as_nobody_with_access_to_dev_kvm(minivmm, tiny_kernel, shared_dir):
    tmp_path = shared_dir
    binary = readable_copy(tmp_path, minivmm) if os.geteuid() == 0 else minivmm
    kernel = readable_copy(tmp_path, tiny_kernel) if os.geteuid() == 0 else tiny_kernel
    r = as_nobody(binary, kernel, tmp_path, True, "--cmdline", "p", "--mem", "64M",
                  "--virtio-mem", "m0:1G,requested=128M")   # seccomp: the build's default
    assert r.returncode == 0, r.stderr
    assert "TINY-GUEST zero-page" in r.stdout
    assert "guest powered off" in r.stderr


def test_no_access_to_dev_kvm_is_a_clear_error(minivmm, tiny_kernel, shared_dir):
    tmp_path = shared_dir
    if os.geteuid() != 0:
        pytest.skip("SKIPPED: needs root to take /dev/kvm away inside a mount namespace")
    binary = readable_copy(tmp_path, minivmm)
    kernel = readable_copy(tmp_path, tiny_kernel)
    r = as_nobody(binary, kernel, tmp_path, False, "--cmdline", "p", "--mem", "64M")
    assert r.returncode == 1, r.stderr
    assert "open /dev/kvm: Permission denied (add this user to the kvm group)" in r.stderr


def test_no_access_to_userfaultfd_is_a_clear_error(minivmm, tiny_kernel, shared_dir):
    """With a virtio-mem device the host bound needs a userfaultfd; without
    one minivmm refuses to start and says what to give it."""
    tmp_path = shared_dir
    if os.geteuid() != 0:
        pytest.skip("SKIPPED: needs root to take /dev/userfaultfd away inside a mount namespace")
    if not os.path.exists("/dev/userfaultfd"):
        pytest.skip("SKIPPED: this kernel has no /dev/userfaultfd")
    binary = readable_copy(tmp_path, minivmm)
    kernel = readable_copy(tmp_path, tiny_kernel)
    r = as_nobody(binary, kernel, tmp_path, True, "--cmdline", "p", "--mem", "64M",
                  "--virtio-mem", "m0:1G,guard=on", give_userfaultfd=False)
    assert r.returncode == 1, r.stderr
    assert "--virtio-mem: userfaultfd: Operation not permitted, and /dev/userfaultfd: " \
           "Permission denied" in r.stderr
    assert "access to /dev/userfaultfd" in r.stderr
