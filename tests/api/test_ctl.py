"""`minivmm ctl` against a running VMM (tiny guest: no virtio-mem driver, so
nothing gets plugged and --wait runs out)."""
import json
import socket
import subprocess
import threading

from apiclient import Vmm, request


def ctl(minivmm, sock, *args, timeout=30):
    r = subprocess.run([minivmm, "ctl", "--api-sock", sock, *args], capture_output=True,
                       text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def test_status_resize_json_and_errors(minivmm, tiny_kernel, tmp_path):
    sock = str(tmp_path / "vm.sock")
    v = Vmm(minivmm, tiny_kernel, sock).start()
    try:
        rc, out, err = ctl(minivmm, sock, "status")
        assert rc == 0, err
        assert "VM running: 1 vCPUs, 64M boot memory" in out, out
        assert "virtio-mem devices: 2" in out, out
        assert "node0" in out and "plugged 0" in out and "driver not_probed" in out, out

        rc, out, err = ctl(minivmm, sock, "resize", "node0", "2G")
        assert rc == 0, err
        assert out.strip() == "node0: requested 2G, plugged 0 (the guest follows)", out
        assert request(sock, "GET", "/virtio-mem/node0").json()["requested_size"] == 2 << 30

        # Nobody plugs in this guest: --wait runs out, with its own status.
        rc, out, err = ctl(minivmm, sock, "resize", "node0", "1G", "--wait", "0.3")
        assert rc == 3, (out, err)
        assert "(timed out waiting)" in out, out

        rc, out, err = ctl(minivmm, sock, "--json", "status")
        assert rc == 0, err
        doc = json.loads(out)
        assert doc["vm"]["vcpus"] == 1
        assert [d["id"] for d in doc["virtio_mem"]["devices"]] == ["node0", "x"]

        rc, out, err = ctl(minivmm, sock, "resize", "node0", "3M")
        assert rc == 1
        assert "minivmm ctl: resize:" in err and "(HTTP 400)" in err, err
        rc, out, err = ctl(minivmm, sock, "resize", "nosuch", "1G")
        assert rc == 1 and "(HTTP 404)" in err, err
        rc, out, err = ctl(minivmm, sock, "resize", "node0", "lots")
        assert rc == 2 and "size 'lots'" in err, err
        rc, out, err = ctl(minivmm, sock, "resize", "node0", "1G", "--wait", "-1")
        assert rc == 2 and "--wait '-1'" in err, err
        rc, out, err = ctl(minivmm, sock, "frobnicate")
        assert rc == 2 and "unknown command 'frobnicate'" in err, err
        rc, out, err = ctl(minivmm, sock, "status", "extra")
        assert rc == 2 and "status: expected no arguments" in err, err
    finally:
        v.stop_and_check()


def test_unreachable_socket_and_usage(minivmm, tmp_path):
    rc, out, err = ctl(minivmm, str(tmp_path / "none.sock"), "status")
    assert rc == 1 and "Couldn't connect" in err, err
    r = subprocess.run([minivmm, "ctl", "status"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "--api-sock: required" in r.stderr
    r = subprocess.run([minivmm, "ctl", "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and "usage: minivmm ctl" in r.stdout
    for args, msg in [(["events", "--since", "x"], "--since 'x': not a whole number"),
                      (["events", "--since", "-1"], "--since '-1': not a whole number"),
                      (["status", "--since", "0"], "--since applies to events only")]:
        r = subprocess.run([minivmm, "ctl", "--api-sock", "/nonexistent", *args],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 2 and msg in r.stderr, (args, r.stderr)


def test_events_follow_and_shutdown(minivmm, tiny_kernel, tmp_path):
    sock = str(tmp_path / "vm.sock")
    v = Vmm(minivmm, tiny_kernel, sock).start()
    # The resize comes before the follower connects; --since 0 replays it,
    # and the follower printing it proves it is connected: nothing depends on
    # when the stream starts.
    rc, out, err = ctl(minivmm, sock, "resize", "x", "512M")
    assert rc == 0, err
    ev = subprocess.Popen([minivmm, "ctl", "--api-sock", sock, "events", "--since", "0"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        replayed = []
        for line in ev.stdout:
            replayed.append(line)
            if " virtio_mem_requested " in line:
                break
        assert 'id="x"' in replayed[-1] and "requested_size=536870912" in replayed[-1], replayed
        rc, out, err = ctl(minivmm, sock, "shutdown")
        assert rc == 0 and out.strip() == "shutdown requested", (out, err)
        out, err = ev.communicate(timeout=20)
        assert ev.returncode == 0, err
        lines = (''.join(replayed) + out).strip().splitlines()
        assert " shutdown " in lines[-1] and 'reason="api"' in lines[-1], lines
        assert v.wait_exit() == 0
        v.check_sanitizers()
    finally:
        if ev.poll() is None:
            ev.kill()
        if v.proc.poll() is None:
            v.stop_and_check()


def test_events_from_a_server_that_never_ends_a_line(minivmm, tmp_path):
    """A socket that streams one endless line is not minivmm's event stream:
    ctl stops with an error instead of buffering it without bound."""
    path = str(tmp_path / "fake.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    stop = threading.Event()

    def serve():
        conn, _ = srv.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                         b"Connection: close\r\n\r\n")
            chunk = b"x" * 65536
            try:
                while not stop.is_set():    # at most until ctl hangs up
                    conn.sendall(chunk)
            except OSError:
                pass
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        rc, out, err = ctl(minivmm, path, "events", timeout=30)
    finally:
        stop.set()
        srv.close()
    assert rc != 0, (out, err)
    assert "an event line longer than 64 KiB" in err, err
