"""API tests: the real minivmm binary on the local /dev/kvm with the tiny
test guest spinning ("s"), driven through its --api-sock by real clients
(curl, Python's http.client, raw sockets). The /dev/kvm policy and the tiny
guest come from tests/local/conftest.py: skipped loudly without /dev/kvm,
failed when MINIVMM_REQUIRE_LOCAL_KVM=1."""
import importlib.util
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
_spec = importlib.util.spec_from_file_location(
    "local_conftest", os.path.join(HERE, "..", "local", "conftest.py"))
_local = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_local)

# Re-exported: pytest finds fixtures by name in this module.
minivmm = _local.minivmm
local_kvm = _local.local_kvm
tiny_kernel = _local.tiny_kernel

import apiclient  # noqa: E402
from apiclient import IDLE_TIMEOUT_S  # noqa: E402


@pytest.fixture(scope="module")
def vmm(minivmm, local_kvm, tiny_kernel, tmp_path_factory):
    """One VM shared by a test module: 2 devices, node0 (8G) and x (2G, node 1)."""
    sock = str(tmp_path_factory.mktemp("api") / "vm.sock")
    v = apiclient.Vmm(minivmm, tiny_kernel, sock, idle_timeout=IDLE_TIMEOUT_S)
    v.start()
    yield v
    v.stop_and_check()
