"""Every resource and documented error of the API, through curl and
http.client, against one running VM (see conftest.py)."""
import json
import os
import re
import socket
import threading
import time

import pytest

from apiclient import IDLE_TIMEOUT_S, UnixHTTPConnection, curl, recv_all, request

G = 1 << 30
M = 1 << 20
DEV_FIELDS = {"id", "node", "addr", "region_size", "block_size", "page_size", "usable_region_size",
              "plugged_size", "requested_size", "driver_state", "host_backed_bytes", "host_backed_bound",
              "blocked_accesses", "memslots", "slot_size"}


def patch(vmm, dev, body, query="", headers=None):
    return request(vmm.sock, "PATCH", f"/virtio-mem/{dev}{query}", body=body, headers=headers)


def test_get_vm(vmm):
    for r in (request(vmm.sock, "GET", "/vm"), curl(vmm.sock, "GET", "/vm")):
        assert r.status == 200, r
        assert r.headers["content-type"] == "application/json"
        vm = r.json()
        assert set(vm) == {"state", "vcpus", "boot_memory", "uptime_s", "vmm_uptime_s",
                           "reboots", "version"}
        assert vm["state"] == "running"
        assert vm["vcpus"] == 1
        assert vm["boot_memory"] == 64 * M
        assert vm["reboots"] == 0
        assert vm["version"] == "0.1.0"
        assert 0 < vm["uptime_s"] <= vm["vmm_uptime_s"] < 3600


def test_virtio_mem_list_and_one(vmm):
    r = curl(vmm.sock, "GET", "/virtio-mem")
    assert r.status == 200, r
    devs = r.json()["devices"]
    assert [d["id"] for d in devs] == ["node0", "x"]
    for d in devs:
        assert set(d) == DEV_FIELDS
        for k in DEV_FIELDS - {"id", "driver_state"}:
            assert isinstance(d[k], int) and not isinstance(d[k], bool), (k, d)
        # The tiny guest has no virtio-mem driver.
        assert d["driver_state"] == "not_probed"
        assert d["plugged_size"] == 0 and d["memslots"] == 0
        assert d["block_size"] == 2 * M
        assert d["page_size"] == 4096
    assert devs[0]["node"] == 0 and devs[0]["region_size"] == 8 * G
    assert devs[1]["node"] == 1 and devs[1]["region_size"] == 2 * G
    # node0 has the default slot size, x its slot=512M.
    assert devs[0]["slot_size"] == G and devs[1]["slot_size"] == 512 * M
    one = request(vmm.sock, "GET", "/virtio-mem/x")
    assert one.status == 200
    assert {k: v for k, v in one.json().items() if k != "host_backed_bytes"} == \
        {k: v for k, v in devs[1].items() if k != "host_backed_bytes"}


def test_patch_then_get_shows_requested_size(vmm):
    r = curl(vmm.sock, "PATCH", "/virtio-mem/node0", {"requested_size": "8G"})
    assert r.status == 202, r
    assert r.json()["requested_size"] == 8 * G
    assert "timed_out" not in r.json()
    assert request(vmm.sock, "GET", "/virtio-mem/node0").json()["requested_size"] == 8 * G
    r = patch(vmm, "node0", {"requested_size": 512 * M})
    assert r.status == 202 and r.json()["requested_size"] == 512 * M
    assert curl(vmm.sock, "GET", "/virtio-mem/node0").json()["requested_size"] == 512 * M
    # Charset parameter and other spellings of the media type are fine.
    r = patch(vmm, "node0", '{"requested_size": 0}',
              headers={"Content-Type": "Application/JSON; charset=utf-8"})
    assert r.status == 202, r


def test_patch_wait_times_out_without_a_driver(vmm):
    t0 = time.monotonic()
    r = curl(vmm.sock, "PATCH", "/virtio-mem/x?wait=0.5", {"requested_size": "1G"})
    took = time.monotonic() - t0
    assert r.status == 202, r
    body = r.json()
    assert body["timed_out"] is True
    assert body["requested_size"] == G and body["plugged_size"] == 0
    assert 0.5 <= took < 5


def test_patch_wait_already_there_is_200(vmm):
    r = patch(vmm, "x", {"requested_size": 0}, query="?wait=2")
    assert r.status == 200, r
    assert "timed_out" not in r.json()


def test_wait_longer_than_idle_timeout_is_not_cut(vmm):
    t0 = time.monotonic()
    r = patch(vmm, "x", {"requested_size": "2M"}, query=f"?wait={IDLE_TIMEOUT_S + 1.5}")
    assert r.status == 202 and r.json()["timed_out"] is True, r
    assert time.monotonic() - t0 >= IDLE_TIMEOUT_S + 1.5
    patch(vmm, "x", {"requested_size": 0})


BIG = "x" * (70 * 1024)

ERRORS = [
    # (method, path, body, content type, status, message fragment)
    ("GET", "/nope", None, None, 404, "no such resource: /nope"),
    ("GET", "/", None, None, 404, "no such resource"),
    ("GET", "/vm/", None, None, 404, "no such resource"),
    ("GET", "/virtio-mem/", None, None, 404, "no such resource"),
    ("GET", "/virtio-mem/node0/more", None, None, 404, "no such resource"),
    ("GET", "/virtio-mem/nosuch", None, None, 404, "no virtio-mem device 'nosuch'"),
    ("GET", "/virtio-mem/" + "n" * 300, None, None, 404, "no virtio-mem device"),
    ("PATCH", "/virtio-mem/nosuch", '{"requested_size":0}', "application/json", 404,
     "no virtio-mem device 'nosuch'"),
    ("POST", "/vm", None, None, 405, "method POST not allowed on /vm"),
    ("DELETE", "/virtio-mem/node0", None, None, 405, "not allowed"),
    ("GET", "/vm/actions", None, None, 405, "not allowed"),
    ("PUT", "/virtio-mem", '{}', "application/json", 405, "not allowed"),
    ("POST", "/events", None, None, 405, "not allowed"),
    ("PATCH", "/metrics", '{}', "application/json", 405, "not allowed"),
    ("PATCH", "/virtio-mem/node0", '{"requested_size":0}', None, 415,
     "needs Content-Type: application/json"),
    ("PATCH", "/virtio-mem/node0", '{"requested_size":0}', "text/plain", 415, "Content-Type"),
    ("PATCH", "/virtio-mem/node0", '{"requested_size":0}', "application/jsonx", 415,
     "Content-Type"),
    ("PUT", "/vm/actions", '{"action":"shutdown"}', None, 415, "Content-Type"),
    ("PATCH", "/virtio-mem/node0", '{"requested_size":', "application/json", 400,
     "malformed JSON"),
    ("PATCH", "/virtio-mem/node0", "", "application/json", 400, "JSON object is required"),
    ("PATCH", "/virtio-mem/node0", "[1]", "application/json", 400, "must be a JSON object"),
    ("PATCH", "/virtio-mem/node0", '{"requested_size":0,"requested_size":0}',
     "application/json", 400, "malformed JSON"),
    ("PATCH", "/virtio-mem/node0", '{"requested_size":true}', "application/json", 400,
     "requested_size: expected an integer number of bytes or a size string"),
    ("PATCH", "/virtio-mem/node0", '{"requested_size":1.5}', "application/json", 400,
     "expected an integer"),
    ("PATCH", "/virtio-mem/node0", '{"requested_size":null}', "application/json", 400,
     "expected an integer"),
    ("PATCH", "/virtio-mem/node0", '{"requested_size":-2097152}', "application/json", 400,
     "must not be negative"),
    ("PATCH", "/virtio-mem/node0", '{"requested_size":"8X"}', "application/json", 400,
     "requested_size '8X'"),
    ("PATCH", "/virtio-mem/node0", '{}', "application/json", 400, "requested_size is required"),
    ("PATCH", "/virtio-mem/node0", '{"requested_size":0,"extra":1}', "application/json", 400,
     "unknown field 'extra'"),
    ("PATCH", "/virtio-mem/node0", '{"requested_size":1048577}', "application/json", 400,
     "must be a multiple of the block size"),
    ("PATCH", "/virtio-mem/node0", '{"requested_size":"3M"}', "application/json", 400,
     "must be a multiple of the block size"),
    ("PATCH", "/virtio-mem/node0", '{"requested_size":"16G"}', "application/json", 400,
     "at most the region size"),
    ("PATCH", "/virtio-mem/x", '{"requested_size":"4G"}', "application/json", 400,
     "at most the region size"),
    ("PATCH", "/virtio-mem/node0?foo=1", '{"requested_size":0}', "application/json", 400,
     "unknown query parameter 'foo'"),
    ("GET", "/vm?verbose=1", None, None, 400, "unknown query parameter 'verbose'"),
    ("GET", "/events?since=abc", None, None, 400, "since 'abc'"),
    ("GET", "/events?since=-1", None, None, 400, "since"),
    ("PUT", "/vm/actions", '{"action":"explode"}', "application/json", 400,
     "expected \"shutdown\" or \"reboot\""),
    ("PUT", "/vm/actions", '{"action":1}', "application/json", 400, "action: expected a string"),
    ("PUT", "/vm/actions", '{}', "application/json", 400, "action is required"),
    ("PUT", "/vm/actions", '{"action":"shutdown","now":true}', "application/json", 400,
     "unknown field 'now'"),
    ("PATCH", "/virtio-mem/node0", '{"requested_size":"' + BIG + '"}', "application/json", 413,
     "larger than 65536 bytes"),
    ("PUT", "/vm/actions", BIG, "application/json", 413, "larger than 65536 bytes"),
] + [
    ("PATCH", f"/virtio-mem/node0?wait={w}", '{"requested_size":0}', "application/json", 400,
     "wait") for w in ("0", "-1", "abc", "3601", "nan", "inf", "", "1e9", "0x10", "1s")
]


def check_error(r, status, fragment):
    assert r.status == status, r
    assert r.headers["content-type"] == "application/json", r.headers
    body = r.json()
    assert list(body) == ["error"] and isinstance(body["error"], str), body
    assert fragment in body["error"], body


@pytest.mark.parametrize("method,path,body,ctype,status,fragment", ERRORS,
                         ids=[f"{e[4]}-{e[0]}-{e[1][:40]}-{i}" for i, e in enumerate(ERRORS)])
def test_documented_errors(vmm, method, path, body, ctype, status, fragment):
    headers = {"Content-Type": ctype} if ctype else {}
    r = request(vmm.sock, method, path, body=body, headers=headers)
    check_error(r, status, fragment)
    if status == 405:
        expected = {"/vm": "GET", "/vm/actions": "PUT", "/virtio-mem": "GET",
                    "/events": "GET", "/metrics": "GET"}.get(path, "GET, PATCH")
        assert r.headers["allow"] == expected


@pytest.mark.parametrize("case", [0, 14, 18, 21, 29, 31, 41, 43],
                         ids=lambda i: f"{ERRORS[i][4]}-{ERRORS[i][0]}-{ERRORS[i][1][:30]}")
def test_errors_through_curl(vmm, case):
    method, path, body, ctype, status, fragment = ERRORS[case]
    check_error(curl(vmm.sock, method, path, body, content_type=ctype), status, fragment)


def test_errors_leave_state_unchanged(vmm):
    before = request(vmm.sock, "GET", "/virtio-mem/node0").json()["requested_size"]
    patch(vmm, "node0", {"requested_size": "3M"})
    patch(vmm, "node0", {"requested_size": "64G"})
    assert request(vmm.sock, "GET", "/virtio-mem/node0").json()["requested_size"] == before


def test_chunked_body_is_411(vmm):
    """Bodies need Content-Length (docs/api.md): a chunked one, large or not,
    is refused with a JSON 411 before any of it is parsed."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(vmm.sock)
    s.sendall(b"PATCH /virtio-mem/node0 HTTP/1.1\r\nHost: x\r\n"
              b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"a" * 8192
    for _ in range(9):
        s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    s.sendall(b"0\r\n\r\n")
    data = recv_all(s)
    assert data.startswith(b"HTTP/1.1 411 "), data[:200]
    assert b"send the body with Content-Length" in data


class EventStream:
    """GET /events read line by line through http.client."""

    def __init__(self, sock, query=""):
        self.conn = UnixHTTPConnection(sock, timeout=15)
        self.conn.request("GET", "/events" + query)
        self.resp = self.conn.getresponse()

    def next(self):
        line = self.resp.readline()
        assert line, "stream ended"
        return json.loads(line)

    def close(self):
        # Every answer says "Connection: close", so http.client hands the
        # socket to the response: closing the connection alone keeps it open.
        self.resp.close()
        self.conn.close()


RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_events_stream_sees_a_patch_from_another_connection(vmm):
    ev = EventStream(vmm.sock)
    try:
        assert ev.resp.status == 200
        assert ev.resp.getheader("Content-Type") == "application/x-ndjson"
        r = curl(vmm.sock, "PATCH", "/virtio-mem/x", {"requested_size": "256M"})
        assert r.status == 202
        e = ev.next()
        assert e["event"] == "virtio_mem_requested"
        assert e["id"] == "x" and e["requested_size"] == 256 * M
        assert isinstance(e["seq"], int) and e["seq"] >= 1
        assert RFC3339_MS.match(e["time"]), e
        patch(vmm, "node0", {"requested_size": 0})
        e2 = ev.next()
        assert e2["seq"] == e["seq"] + 1 and e2["id"] == "node0"
    finally:
        ev.close()
    patch(vmm, "x", {"requested_size": 0})


def test_events_since_0_replays_what_the_bus_keeps(vmm):
    patch(vmm, "x", {"requested_size": "4M"})
    ev = EventStream(vmm.sock, "?since=0")
    try:
        first = ev.next()
        assert first["seq"] == 1 and first["event"] == "virtio_mem_requested"
    finally:
        ev.close()
    patch(vmm, "x", {"requested_size": 0})


def test_events_stream_outlives_the_idle_timeout(vmm):
    ev = EventStream(vmm.sock)
    try:
        time.sleep(IDLE_TIMEOUT_S + 1.5)
        patch(vmm, "x", {"requested_size": "6M"})
        assert ev.next()["requested_size"] == 6 * M
    finally:
        ev.close()
    patch(vmm, "x", {"requested_size": 0})


def test_events_with_curl(vmm, tmp_path):
    import subprocess
    out = tmp_path / "events"
    with open(out, "wb") as f:
        p = subprocess.Popen(["curl", "-sS", "-N", "--unix-socket", vmm.sock,
                              "http://localhost/events"], stdout=f)
    try:
        time.sleep(0.5)
        patch(vmm, "node0", {"requested_size": "2G"})
        deadline = time.time() + 5
        while time.time() < deadline and b"\n" not in out.read_bytes():
            time.sleep(0.05)
    finally:
        p.terminate()
        p.wait()
    e = json.loads(out.read_bytes().splitlines()[0])
    assert e["event"] == "virtio_mem_requested" and e["requested_size"] == 2 * G
    patch(vmm, "node0", {"requested_size": 0})


PROM_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)$')
PROM_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text):
    """Prometheus text format 0.0.4: HELP/TYPE comments and samples."""
    types, samples = {}, []
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            assert name not in types, f"TYPE twice: {line}"
            types[name] = kind
            continue
        assert not line.startswith("#"), line
        m = PROM_SAMPLE.match(line)
        assert m, f"not a sample: {line!r}"
        labels = dict(PROM_LABEL.findall(m.group(3) or ""))
        assert m.group(1) in types, f"sample before its TYPE: {line}"
        samples.append((m.group(1), labels, float(m.group(4))))
    return types, samples


def test_metrics_are_prometheus_text_with_per_device_series(vmm):
    patch(vmm, "node0", {"requested_size": "1G"})
    r = curl(vmm.sock, "GET", "/metrics")
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    types, samples = parse_prometheus(r.body.decode())

    def value(name, **labels):
        hits = [v for n, ls, v in samples if n == name and all(ls.get(k) == x
                                                                for k, x in labels.items())]
        assert len(hits) == 1, (name, labels, hits)
        return hits[0]

    assert value("minivmm_vcpus") == 1
    assert value("minivmm_vcpu_exits_total", vcpu="0") > 0     # the guest printed its banner
    assert value("minivmm_boot_memory_bytes") == 64 * M
    assert value("minivmm_virtio_mem_region_size_bytes", id="node0", node="0") == 8 * G
    assert value("minivmm_virtio_mem_region_size_bytes", id="x", node="1") == 2 * G
    assert value("minivmm_virtio_mem_slot_size_bytes", id="node0", node="0") == G
    assert value("minivmm_virtio_mem_slot_size_bytes", id="x", node="1") == 512 * M
    assert value("minivmm_virtio_mem_requested_size_bytes", id="node0") == G
    assert value("minivmm_virtio_mem_plugged_size_bytes", id="x") == 0
    assert value("minivmm_virtio_mem_requests_total", id="x", type="plug") == 0
    assert value("minivmm_virtio_mem_responses_total", id="node0", result="ack") == 0
    assert types["minivmm_virtio_mem_requests_total"] == "counter"
    for dev in ("node0", "x"):
        for name in ("minivmm_virtio_mem_host_backed_bytes", "minivmm_virtio_mem_memslots",
                     "minivmm_virtio_mem_usable_region_size_bytes",
                     "minivmm_virtio_mem_block_size_bytes",
                     "minivmm_virtio_mem_driver_active"):
            value(name, id=dev)
    patch(vmm, "node0", {"requested_size": 0})


def test_metrics_have_the_startup_steps_on_the_callers_clock(vmm):
    """minivmm_startup_{monotonic,cpu}_seconds: when the VMM reached each
    startup step, on CLOCK_MONOTONIC (Python's time.monotonic here), in
    order, and the process CPU time then (bench/boot --startup uses them)."""
    r = curl(vmm.sock, "GET", "/metrics")
    types, samples = parse_prometheus(r.body.decode())
    now = time.monotonic()
    mono = {ls["step"]: v for n, ls, v in samples if n == "minivmm_startup_monotonic_seconds"}
    cpu = {ls["step"]: v for n, ls, v in samples if n == "minivmm_startup_cpu_seconds"}
    steps = ["main", "vm_built", "api_listening", "payload_loaded", "first_kvm_run"]
    assert sorted(mono) == sorted(steps) and sorted(cpu) == sorted(steps), (mono, cpu)
    assert types["minivmm_startup_monotonic_seconds"] == "gauge"
    # The fixture started this VMM within the module's run, on this clock,
    # and the API listened before the kernel and initrd were read (it
    # answers while they load).
    assert now - 600 < mono["main"] <= mono["vm_built"] <= mono["api_listening"] < now
    assert mono["api_listening"] <= mono["payload_loaded"] <= mono["first_kvm_run"] < now
    assert 0 < cpu["main"] <= cpu["vm_built"] <= cpu["api_listening"]
    assert cpu["api_listening"] <= cpu["payload_loaded"] <= cpu["first_kvm_run"]


def test_socket_mode_is_0600(vmm):
    import os
    import stat
    st = os.lstat(vmm.sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600


def test_idle_client_is_timed_out(vmm):
    t0 = time.monotonic()
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(IDLE_TIMEOUT_S + 10)
    s.connect(vmm.sock)
    assert s.recv(100) == b""          # closed by the server, nothing sent
    took = time.monotonic() - t0
    assert IDLE_TIMEOUT_S - 0.5 <= took < IDLE_TIMEOUT_S + 5, took
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(IDLE_TIMEOUT_S + 10)
    s.connect(vmm.sock)
    s.sendall(b"GET /vm HTTP/1.1\r\nHost: x\r\n")
    t0 = time.monotonic()
    # Half a request, then silence: a JSON 408 when its time is up, then closed.
    data = recv_all(s)
    assert data.startswith(b"HTTP/1.1 408 "), data[:200]
    assert json.loads(data.partition(b"\r\n\r\n")[2])["error"].startswith(
        "the request was not complete within")
    assert time.monotonic() - t0 < IDLE_TIMEOUT_S + 5


def test_keep_alive_connection_serves_several_requests(vmm):
    c = UnixHTTPConnection(vmm.sock)
    try:
        for _ in range(5):
            c.request("GET", "/vm")
            r = c.getresponse()
            assert r.status == 200
            r.read()
    finally:
        c.close()


def test_100_concurrent_clients(vmm):
    n = 100
    results = [None] * n
    barrier = threading.Barrier(n)

    def client(i):
        try:
            c = UnixHTTPConnection(vmm.sock, timeout=60)
            c.connect()
            barrier.wait(timeout=30)
            c.request("GET", "/vm")
            r1 = c.getresponse()
            r1.read()
            body = json.dumps({"requested_size": (i % 8) * 2 * M})
            c.request("PATCH", f"/virtio-mem/{'x' if i % 2 else 'node0'}", body=body,
                      headers={"Content-Type": "application/json"})
            r2 = c.getresponse()
            r2.read()
            c.close()
            results[i] = (r1.status, r2.status)
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = e

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    took = time.monotonic() - t0
    assert all(r == (200, 202) for r in results), [r for r in results if r != (200, 202)][:5]
    print(f"\n100 concurrent clients (GET /vm + PATCH each) answered in {took:.2f} s")
    assert request(vmm.sock, "GET", "/vm").status == 200
    patch(vmm, "x", {"requested_size": 0})
    patch(vmm, "node0", {"requested_size": 0})


def threads_of(vmm):
    return len(os.listdir(f"/proc/{vmm.proc.pid}/task"))


def wait_threads(vmm, at_most, timeout=5):
    deadline = time.time() + timeout
    while time.time() < deadline and threads_of(vmm) > at_most:
        time.sleep(0.05)
    return threads_of(vmm)


def test_streams_whose_clients_vanish_end(vmm):
    """A stream's thread notices its client hung up even when no event comes."""
    time.sleep(0.3)
    base = threads_of(vmm)
    streams = [EventStream(vmm.sock) for _ in range(10)]
    assert threads_of(vmm) >= base + 10
    for s in streams:
        s.close()
    assert wait_threads(vmm, base) <= base


def test_connection_cap(vmm):
    """Past 256 connections the oldest of those that have not sent a whole
    request are closed (these sent nothing: no answer); the server recovers."""
    time.sleep(0.3)
    base = threads_of(vmm)
    socks = []
    try:
        for _ in range(300):
            s = socket.socket(socket.AF_UNIX)
            s.connect(vmm.sock)       # blocking: waits while the backlog is full
            socks.append(s)
        time.sleep(0.5)
        assert threads_of(vmm) <= base + 256 + 2
        closed = 0
        for s in socks:
            s.setblocking(False)
            try:
                if s.recv(1) == b"":
                    closed += 1
            except BlockingIOError:
                pass
        assert closed >= 300 - 256, closed
    finally:
        for s in socks:
            s.close()
    assert wait_threads(vmm, base) <= base
    assert request(vmm.sock, "GET", "/vm").status == 200
