"""Tests that need a /dev/kvm but no Linux guest: they run on this machine's
KVM whatever kind it is. Without /dev/kvm they are skipped loudly; with
MINIVMM_REQUIRE_LOCAL_KVM=1 (set by .ci/run when /dev/kvm exists) a missing or
unusable KVM fails them instead."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tinyguest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def minivmm():
    path = os.environ.get("MINIVMM_BINARY", os.path.join(REPO, "build", "minivmm"))
    if not os.access(path, os.X_OK):
        pytest.fail(f"minivmm binary not found at {path} (build first or set MINIVMM_BINARY)")
    return path


@pytest.fixture(scope="session")
def local_kvm():
    usable = os.access("/dev/kvm", os.R_OK | os.W_OK)
    if not usable:
        msg = "SKIPPED: /dev/kvm is absent or not accessible; local KVM tests did not run"
        if os.environ.get("MINIVMM_REQUIRE_LOCAL_KVM") == "1":
            pytest.fail(msg.replace("SKIPPED: ", "") + " but MINIVMM_REQUIRE_LOCAL_KVM=1")
        print("\n" + "!" * 70 + "\n" + msg + "\n" + "!" * 70)
        pytest.skip(msg)
    return "/dev/kvm"


@pytest.fixture(scope="session")
def tiny_kernel(tmp_path_factory):
    return tinyguest.build(str(tmp_path_factory.mktemp("tiny") / "tiny.bzImage"))
