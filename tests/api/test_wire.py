"""The API's answers as bytes on the socket (vmm/api/reply.c, request.c):
the headers every answer carries, HEAD, the /events stream's framing for
HTTP/1.1 and HTTP/1.0 clients, percent-decoding of the path and the query,
and no TLS library in the VMM process."""
import json
import socket

from apiclient import recv_all, request

TLS_LIBRARIES = ("libgnutls", "libssl", "libcrypto", "libnettle", "libmicrohttpd")


def raw(vmm, request, timeout=10):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(vmm.sock)
    s.sendall(request)
    return s


def exchange(vmm, request):
    """(status, headers lowercased, body bytes) of one raw request."""
    s = raw(vmm, request)
    try:
        data = recv_all(s)
    finally:
        s.close()
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, data[:300]
    lines = head.decode().split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), lines[0]
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        assert k.lower() not in headers, f"header {k} twice"
        headers[k.lower()] = v.strip()
    return int(lines[0].split()[1]), headers, body


def test_every_answer_has_date_close_type_and_exact_length(vmm):
    for req in (b"GET /vm HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET /metrics HTTP/1.0\r\n\r\n",
                b"DELETE /vm HTTP/1.1\r\nHost: x\r\n\r\n"):
        status, h, body = exchange(vmm, req)
        assert h["connection"] == "close", (req, h)
        assert h["date"].endswith(" GMT"), h
        assert h["content-type"], h
        assert int(h["content-length"]) == len(body), (req, h, body)
        if status >= 400:
            assert "error" in json.loads(body), body


def test_head_is_answered_without_a_body(vmm):
    """No resource allows HEAD: its 405 names the methods and, as RFC 9110
    9.3.2 says, carries no content (the length is what GET would send)."""
    status, h, body = exchange(vmm, b"HEAD /vm HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 405 and h["allow"] == "GET", h
    assert body == b"" and int(h["content-length"]) > 0, (h, body)


def an_event(vmm):
    """Makes sure the bus holds an event for ?since=0 to replay."""
    assert request(vmm.sock, "PATCH", "/virtio-mem/x", {"requested_size": 0}).status == 202


def test_events_are_chunked_for_http11(vmm):
    an_event(vmm)
    s = raw(vmm, b"GET /events?since=0 HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(4096)
        head, _, rest = data.partition(b"\r\n\r\n")
        assert b"\r\nTransfer-Encoding: chunked\r\n" in head + b"\r\n", head
        assert b"Content-Length" not in head, head
        # The first event as one chunk: size line, the event's line, CRLF.
        while rest.count(b"\r\n") < 2:
            rest += s.recv(4096)
        size_line, _, after = rest.partition(b"\r\n")
        size = int(size_line, 16)
        while len(after) < size + 2:
            after += s.recv(4096)
        assert after[size - 1:size] == b"\n", after
        assert json.loads(after[:size])["seq"] >= 1, after
        assert after[size:size + 2] == b"\r\n", after
    finally:
        s.close()


def test_events_end_with_the_connection_for_http10(vmm):
    """HTTP/1.0 has no chunked coding: the lines come bare."""
    an_event(vmm)
    s = raw(vmm, b"GET /events?since=0 HTTP/1.0\r\n\r\n")
    try:
        data = b""
        while b"\n" not in data.partition(b"\r\n\r\n")[2]:
            data += s.recv(4096)
        head, _, rest = data.partition(b"\r\n\r\n")
        assert b"Transfer-Encoding" not in head and b"Content-Length" not in head, head
        assert json.loads(rest.split(b"\n")[0])["seq"] >= 1, rest
    finally:
        s.close()


def test_path_and_query_are_percent_decoded(vmm):
    status, _, body = exchange(vmm, b"GET /virtio-mem/%6Eode0 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200 and json.loads(body)["id"] == "node0", body
    status, _, body = exchange(vmm, b"GET /events?%73ince=abc HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 400 and b"since 'abc'" in body, body
    # '+' is a space in a query value, as forms encode it.
    status, _, body = exchange(vmm, b"GET /events?since=1+2 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 400 and b"since '1 2'" in body, body


def test_a_query_parameter_without_a_name_is_refused(vmm):
    for target in (b"/events?=1", b"/events?&since=1", b"/vm?a&&b"):
        status, _, body = exchange(vmm, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 400, (target, body)
    # An empty query, or one ending in '&', is no parameter at all.
    for target in (b"/vm?", b"/events?since=0&"):
        s = raw(vmm, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            assert s.recv(12) == b"HTTP/1.1 200", target
        finally:
            s.close()


def test_no_tls_library_in_the_vmm_process(vmm):
    """A Unix-socket API has no use for TLS: none of it is mapped (Debian's
    libmicrohttpd brought GnuTLS and eight more libraries into every VMM)."""
    with open(f"/proc/{vmm.proc.pid}/maps") as f:
        maps = f.read()
    assert not [lib for lib in TLS_LIBRARIES if lib in maps], maps
