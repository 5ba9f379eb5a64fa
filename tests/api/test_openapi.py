"""docs/openapi.json and the server agree: every documented path and method
is served (not 404/405), the server's Allow header lists exactly the
documented methods, and undocumented paths and methods are 404/405."""
import json
import os

import pytest

from apiclient import UnixHTTPConnection, request

SPEC_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "openapi.json")
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def load_spec():
    with open(SPEC_PATH) as f:
        return json.load(f)


def concrete(path):
    return path.replace("{id}", "node0")


def documented():
    spec = load_spec()
    return [(path, m) for path, item in spec["paths"].items() for m in item if m in METHODS]


def probe(sock, method, path):
    """Status of one request; bodies are valid where one is needed but
    harmless (an unknown action is refused with 400 before anything runs)."""
    body, headers = None, {}
    if method == "PATCH":
        body, headers = '{"requested_size": 0}', {"Content-Type": "application/json"}
    elif method in ("PUT", "POST"):
        body, headers = '{"action": "probe"}', {"Content-Type": "application/json"}
    if path == "/events" and method == "GET":
        c = UnixHTTPConnection(sock, timeout=10)
        try:
            c.request("GET", path)
            r = c.getresponse()      # headers only: the body never ends
            return r.status, {k.lower(): v for k, v in r.getheaders()}
        finally:
            c.close()
    r = request(sock, method, path, body=body, headers=headers)
    return r.status, r.headers


def test_spec_is_openapi_3():
    spec = load_spec()
    assert spec["openapi"].startswith("3.0")
    assert spec["info"]["version"] == "0.1.0"
    assert {p for p, _ in documented()} == {"/vm", "/vm/actions", "/virtio-mem",
                                           "/virtio-mem/{id}", "/events", "/metrics"}


@pytest.mark.parametrize("path,method", documented())
def test_documented_route_is_served(vmm, path, method):
    status, _ = probe(vmm.sock, method.upper(), concrete(path))
    assert status not in (404, 405), (method, path, status)
    assert status < 500


def test_allow_header_matches_the_spec(vmm):
    spec = load_spec()
    for path, item in spec["paths"].items():
        documented_methods = {m.upper() for m in item if m in METHODS}
        status, headers = probe(vmm.sock, "DELETE" if "DELETE" not in documented_methods
                                else "TRACE", concrete(path))
        assert status == 405, path
        assert set(headers["allow"].replace(" ", "").split(",")) == documented_methods, path


@pytest.mark.parametrize("path", sorted({p for p, _ in documented()}))
def test_undocumented_methods_are_405(vmm, path):
    spec = load_spec()
    allowed = {m.upper() for m in spec["paths"][path] if m in METHODS}
    for method in ("GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS", "BREW"):
        if method in allowed:
            continue
        status, _ = probe(vmm.sock, method, concrete(path))
        assert status == 405, (method, path, status)


@pytest.mark.parametrize("path", [
    "/", "/v1/vm", "/vm/state", "/vms", "/VM", "/virtio-mem/node0/plug", "/virtio_mem",
    "/virtio-mem/", "/event", "/events/", "/metrics/", "/metric", "/api", "/health",
    "/vm/actions/shutdown", "//vm", "/vm/../vm", "/openapi.json",
])
def test_undocumented_paths_are_404(vmm, path):
    assert request(vmm.sock, "GET", path).status == 404
    assert request(vmm.sock, "PUT", path, body={"action": "probe"}).status == 404


def test_virtio_mem_schema_matches_the_response(vmm):
    """The VirtioMem schema documents exactly the fields GET /virtio-mem/ID
    returns, all of them required."""
    schema = load_spec()["components"]["schemas"]["VirtioMem"]
    dev = request(vmm.sock, "GET", "/virtio-mem/node0").json()
    assert set(schema["required"]) == set(schema["properties"]) == set(dev), dev
