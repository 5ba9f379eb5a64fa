"""Clients for the minivmm API over a Unix socket, and the VMM process."""
import http.client
import json
import os
import signal
import socket
import subprocess
import time

# A short idle timeout (the hidden MINIVMM_API_TIMEOUT_S knob) so the
# timeout tests run in seconds.
IDLE_TIMEOUT_S = 2

SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer", "ThreadSanitizer",
                   "runtime error:")


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


class Reply:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"Reply({self.status}, {self.body[:300]!r})"


def request(sock, method, path, body=None, headers=None, timeout=30):
    """One request on a fresh connection; body: dict (sent as JSON), str or bytes."""
    headers = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
        headers.setdefault("Content-Type", "application/json")
    if isinstance(body, str):
        body = body.encode()
    c = UnixHTTPConnection(sock, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        c.close()


def curl(sock, method, path, body=None, content_type="application/json", extra=()):
    """The same through curl --unix-socket: returns Reply (headers lowercased)."""
    args = ["curl", "-sS", "--unix-socket", sock, "-X", method, "-D", "-",
            f"http://localhost{path}", *extra]
    if body is not None:
        args += ["--data-binary", body if isinstance(body, str) else json.dumps(body)]
        if content_type:
            args += ["-H", f"Content-Type: {content_type}"]
    r = subprocess.run(args, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode()
    head, _, body_text = out.partition("\r\n\r\n")
    lines = head.split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return Reply(status, headers, body_text.encode())


def recv_all(s, limit=1 << 20):
    """What a raw socket receives until the peer closes, times out or resets
    (at most about limit bytes)."""
    data = b""
    try:
        while len(data) < limit:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return data


def open_events(sock, timeout=60):
    """A raw GET /events?since=0, returned once the server has answered its
    headers: the stream is being served from then on, and ?since=0 replays
    whatever happened before, so nothing is missed and nothing has to sleep.
    Read it with read_events."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(sock)
    s.sendall(b"GET /events?since=0 HTTP/1.1\r\nHost: localhost\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, f"the event stream closed before its headers: {data!r}"
        data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data
    return s, data


def read_events(stream):
    """The events of a stream from open_events, up to the shutdown event
    (the last one) or the end of the stream."""
    s, data = stream
    while b'"event":"shutdown"' not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return [json.loads(line) for line in data.decode(errors="replace").splitlines()
            if line.startswith("{")]


class Vmm:
    def __init__(self, binary, kernel, sock, idle_timeout=None, extra=()):
        self.binary, self.kernel, self.sock = binary, kernel, sock
        self.idle_timeout = idle_timeout
        self.extra = list(extra)
        self.proc = None
        self.stderr_path = sock + ".stderr"

    def args(self):
        return [self.binary, "--kernel", self.kernel, "--cmdline", "s", "--mem", "64M",
                "--virtio-mem", "node0:8G", "--virtio-mem", "x:2G,node=1,slot=512M",
                "--api-sock", self.sock, *self.extra]

    def start(self, wait=True):
        env = dict(os.environ)
        if self.idle_timeout:
            env["MINIVMM_API_TIMEOUT_S"] = str(self.idle_timeout)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        self.stderr_file = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.args(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.stderr_file,
                                     env=env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"minivmm exited {self.proc.returncode}: {self.stderr()}")
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(self.sock)
                s.close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"API socket never came up: {self.stderr()}")

    def stderr(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_exit(self, timeout=20):
        rc = self.proc.wait(timeout=timeout)
        self.stderr_file.close()
        return rc

    def check_sanitizers(self):
        err = self.stderr()
        for mark in SANITIZER_MARKS:
            assert mark not in err, err

    def stop_and_check(self):
        """SIGTERM: the VMM must exit 0, remove its socket, and be sanitizer-clean."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.wait_exit()
        self.check_sanitizers()
        assert rc == 0, self.stderr()
        assert not os.path.exists(self.sock)
