#!/usr/bin/python3
"""Writes the hand-made seed inputs of tests/fuzz/corpus/<target>/ (seed-*).

The binary formats are the ones documented at the top of each fuzz_<target>.c;
the seeds are what a well-behaved guest, operator or shell would send, so the
fuzzer starts from deep inside each state machine. Run it again after
changing a format; regress-* files (crashes found) are left alone.
"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

# virtio constants (devices/virtio.h, devices/virtio_mem.h, devices/virtio_mmio.h)
NEXT, WRITE = 1, 2
PLUG, UNPLUG, UNPLUG_ALL, STATE = 0, 1, 2, 3
MEM_GPA, BLOCK = 4 << 30, 2 << 20


def desc(addr, length, flags=0, nxt=0):
    return struct.pack("<QIHH", addr, length, flags, nxt)


def ram_image(pokes, size):
    """A RAM image of `size` bytes with each (gpa, bytes) written in."""
    ram = bytearray(size)
    for gpa, data in pokes:
        ram[gpa:gpa + len(data)] = data
    return bytes(ram)


def mem_req(rtype, addr=0, nb=0):
    return struct.pack("<H6xQH6x", rtype, addr, nb)


# Ring layout shared by the virtqueue and virtio-mmio seeds: 8 entries.
DESC, AVAIL, USED, REQ, RESP = 0x0, 0x80, 0x100, 0x180, 0x1a0


def linux_ring(heads):
    """Descriptor 2i: the request (readable), 2i+1: the response (writable)."""
    pokes = []
    for i in range(len(heads)):
        pokes.append((DESC + 32 * i, desc(REQ + 0x40 * i, 24, NEXT, 2 * i + 1)))
        pokes.append((DESC + 32 * i + 16, desc(RESP + 0x40 * i, 10, WRITE)))
    ring = b"".join(struct.pack("<H", h) for h in heads)
    pokes.append((AVAIL, struct.pack("<HH", 0, len(heads)) + ring))
    return pokes


# ---- virtqueue: header | ops | RAM -------------------------------------------

def vq_input(ops, pokes, max_log2=7, size=8, d=DESC, a=AVAIL, u=USED, cap=16, ram=0x300):
    hdr = struct.pack("<BHIIIBB", max_log2, size, d, a, u, cap, len(ops))
    return hdr + b"".join(struct.pack("<BBHI", *op) for op in ops) + ram_image(pokes, ram)


def vq_seeds():
    pop, hold, push, poke, irq, reset = range(6)
    two = linux_ring([0, 2])
    yield "linux-two-requests", vq_input([(pop, 0, 0, 10), (irq, 0, 0, 0), (pop, 0, 0, 10),
                                          (irq, 0, 0, 0)], two)
    # The driver publishes the second request only after the first is served.
    yield "avail-idx-bumped-later", vq_input(
        [(poke, 0, AVAIL + 2, 1), (pop, 0, 0, 10), (poke, 0, AVAIL + 2, 2), (pop, 0, 0, 10)],
        two)
    yield "out-of-order-completion", vq_input([(hold, 0, 0, 0), (pop, 0, 0, 10),
                                               (push, 0, 0, 10), (irq, 0, 0, 0)], two)
    # One readable, two writable buffers, the last in the small second region.
    chain = [(DESC, desc(REQ, 24, NEXT, 1) + desc(RESP, 4, NEXT | WRITE, 2) +
              desc(0x20000, 0x1000, WRITE)),
             (AVAIL, struct.pack("<HHH", 1, 1, 0))]      # NO_INTERRUPT set
    yield "three-buffers-two-regions", vq_input([(pop, 0x5a, 0, 4096), (irq, 0, 0, 0)],
                                                chain)
    loop = [(DESC, desc(REQ, 24, NEXT, 0)), (AVAIL, struct.pack("<HHH", 0, 1, 0))]
    yield "descriptor-loop", vq_input([(pop, 0, 0, 0)], loop)
    yield "reset-and-resize", vq_input([(pop, 0, 0, 10), (reset, 0, 4, 0), (pop, 0, 0, 10)],
                                       linux_ring([0]))


# ---- virtio-mem: geometry | 16-byte steps ------------------------------------

def vm_step(op, flags=0, block=0, nb=0, rtype=0, value=0):
    return struct.pack("<BBHHHQ", op, flags, block, nb, rtype, value)


def vm_seeds():
    req, resize, reboot, config = range(4)

    def linux_session(n):
        s = [vm_step(resize, block=n), vm_step(req, rtype=UNPLUG_ALL),
             vm_step(req, block=0, nb=n, rtype=STATE)]
        s += [vm_step(req, block=i, nb=1, rtype=PLUG) for i in range(n)]
        s += [vm_step(req, block=0, nb=n, rtype=STATE), vm_step(config),
              vm_step(resize, block=n // 2)]
        s += [vm_step(req, block=i, nb=1, rtype=UNPLUG) for i in range(n // 2, n)]
        s += [vm_step(req, block=0, nb=n, rtype=STATE), vm_step(reboot), vm_step(config)]
        return b"".join(s)

    yield "linux-session-fake", bytes([0]) + linux_session(8)
    yield "linux-session-hotplug-mem", bytes([0x80]) + linux_session(8)
    yield "big-ranges-4k-blocks", bytes([1]) + b"".join([
        vm_step(resize, block=2048), vm_step(req, block=0, nb=1000, rtype=PLUG),
        vm_step(req, block=990, nb=100, rtype=PLUG), vm_step(req, block=1000, nb=1048, rtype=PLUG),
        vm_step(req, block=500, nb=600, rtype=STATE), vm_step(resize, block=100),
        vm_step(req, block=64, nb=64, rtype=UNPLUG), vm_step(req, rtype=UNPLUG_ALL)])
    yield "host-failures", bytes([0]) + b"".join([
        vm_step(resize, block=16), vm_step(req, flags=6, block=0, nb=4, rtype=PLUG),   # BUSY
        vm_step(req, flags=2, block=0, nb=4, rtype=PLUG),                              # ERROR
        vm_step(req, block=0, nb=4, rtype=PLUG), vm_step(req, flags=2, block=0, nb=2, rtype=UNPLUG),
        vm_step(reboot, flags=2), vm_step(reboot)])
    yield "raw-addresses", bytes([2]) + b"".join([
        vm_step(resize, flags=1, value=256 << 20), vm_step(req, flags=1, nb=1, value=MEM_GPA),
        vm_step(req, flags=1, nb=1, value=MEM_GPA + (128 << 20)),
        vm_step(req, flags=1, nb=1, value=MEM_GPA + 4096), vm_step(req | 0x80, nb=1, rtype=7),
        vm_step(resize, flags=1, value=(1 << 64) - 1)])


# ---- virtio-mmio: u16 RAM length | RAM | 12-byte ops -------------------------

R, W, NOTIFY, PROCESS, POKE, RESIZE = range(6)
W1, W2, W4, W8 = range(4)


def op(kind, width, offset, value=0):
    return struct.pack("<BBHQ", kind, width, offset, value)


def negotiate(features_ok=True):
    ops = [op(R, W4, 0x000), op(R, W4, 0x004), op(R, W4, 0x008), op(W, W4, 0x070, 0),
           op(W, W4, 0x070, 1), op(W, W4, 0x070, 3),
           op(W, W4, 0x014, 0), op(R, W4, 0x010), op(W, W4, 0x014, 1), op(R, W4, 0x010),
           op(W, W4, 0x024, 0), op(W, W4, 0x020, 1 << 1),     # UNPLUGGED_INACCESSIBLE
           op(W, W4, 0x024, 1), op(W, W4, 0x020, 1 if features_ok else 0),  # VERSION_1
           op(W, W4, 0x070, 0xb), op(R, W4, 0x070)]
    ops += [op(R, W8, 0x100 + off) for off in range(0, 0x38, 8)]
    return ops


def setup_queue(desc=DESC, avail=AVAIL, used=USED, num=8):
    return [op(W, W4, 0x030, 0), op(R, W4, 0x034), op(W, W4, 0x038, num),
            op(W, W4, 0x080, desc), op(W, W4, 0x084, 0), op(W, W4, 0x090, avail),
            op(W, W4, 0x094, 0), op(W, W4, 0x0a0, used), op(W, W4, 0x0a4, 0),
            op(W, W4, 0x044, 1), op(R, W4, 0x044)]


def poke_bytes(gpa, data):
    """RAM writes of 8 bytes at a time (the last may overlap zeros after)."""
    data = data + bytes(-len(data) % 8)
    return [op(POKE, W8, gpa + i, struct.unpack_from("<Q", data, i)[0])
            for i in range(0, len(data), 8)]


def mmio_input(pokes, ops):
    ram = ram_image(pokes, 0x300)
    return struct.pack("<H", len(ram)) + ram + b"".join(ops)


def mmio_seeds():
    running = negotiate() + setup_queue() + [op(W, W4, 0x070, 0xf)]
    ack_config = [op(R, W4, 0x060), op(W, W4, 0x064, 3), op(R, W4, 0x0fc), op(R, W8, 0x130),
                  op(R, W8, 0x128)]
    # Request slots i (descriptors 2i, 2i+1), published one by one, as Linux does.
    session = list(running)
    session += [op(RESIZE, 0, 0, 16)] + ack_config
    reqs = [mem_req(UNPLUG_ALL), mem_req(STATE, MEM_GPA, 16), mem_req(PLUG, MEM_GPA, 1),
            mem_req(PLUG, MEM_GPA + BLOCK, 4), mem_req(UNPLUG, MEM_GPA + BLOCK, 2),
            mem_req(STATE, MEM_GPA, 4), mem_req(PLUG, MEM_GPA, 1)]
    pokes = linux_ring([0])[:-1]    # descriptors only; the avail ring grows below
    for i, rq in enumerate(reqs):
        slot = i % 4
        pokes.append((DESC + 32 * slot, desc(REQ + 0x40 * slot, 24, NEXT, 2 * slot + 1)))
        pokes.append((DESC + 32 * slot + 16, desc(RESP + 0x40 * slot, 10, WRITE)))
        session += poke_bytes(REQ + 0x40 * slot, rq)
        session += [op(POKE, W2, AVAIL + 4 + 2 * (i % 8), 2 * slot),
                    op(POKE, W2, AVAIL + 2, i + 1), op(NOTIFY, 0, 0, 0), op(R, W4, 0x060),
                    op(W, W4, 0x064, 1)]
    session += ack_config + [op(W, W4, 0x070, 0), op(R, W4, 0x070)]
    yield "linux-session", mmio_input(pokes, session)

    # A ring outside RAM: NEEDS_RESET, then the driver resets and starts over.
    bad = negotiate() + setup_queue(used=0xfff8) + [op(R, W4, 0x070), op(W, W4, 0x070, 0)]
    yield "bad-ring-needs-reset", mmio_input([], bad + running)
    # A request with no room for the response breaks the device.
    noresp = [(DESC, desc(REQ, 24)), (AVAIL, struct.pack("<HHH", 0, 1, 0)),
              (REQ, mem_req(PLUG, MEM_GPA, 1))]
    yield "request-without-response", mmio_input(noresp, running + [
        op(NOTIFY, 0, 0, 0), op(R, W4, 0x070), op(RESIZE, 0x80, 0, 3 << 20)])
    yield "features-refused", mmio_input([], negotiate(features_ok=False) + [
        op(R, W4, 0x070), op(W, W4, 0x070, 0x8f), op(W, W2, 0x070, 1), op(R, W1, 0x101),
        op(W, W4, 0x100, 1), op(W, W4, 0x050, 7)])


# ---- api: METHOD \n PATH[?QUERY] \n CONTENT-TYPE \n BODY ----------------------

def api_seeds():
    j = "application/json"
    reqs = {
        "get-vm": ("GET", "/vm", "", ""),
        "get-devices": ("GET", "/virtio-mem", "", ""),
        "get-device": ("GET", "/virtio-mem/node0", "", ""),
        "get-events-since": ("GET", "/events?since=12", "", ""),
        "get-metrics": ("GET", "/metrics", "", ""),
        "patch-size-string-wait": ("PATCH", "/virtio-mem/node0?wait=2.5", j,
                                   '{"requested_size": "1G"}'),
        "patch-size-integer": ("PATCH", "/virtio-mem/mem-1", j + "; charset=utf-8",
                               '{"requested_size":1073741824}'),
        "patch-unknown-field": ("PATCH", "/virtio-mem/x?wait", j,
                                '{"requested_size":0,"extra":[1,{"a":null}]}'),
        "patch-bad-wait": ("PATCH", "/virtio-mem/x?wait=1e9", j, '{"requested_size":-1}'),
        "put-reboot": ("PUT", "/vm/actions", j, '{"action":"reboot"}'),
        "put-shutdown": ("PUT", "/vm/actions", "Application/JSON ;x=y", '{"action":"shutdown"}'),
        "put-not-a-string": ("PUT", "/vm/actions", j, '{"action":true}'),
        "put-wrong-type": ("PUT", "/vm/actions", "text/plain", '{"action":"reboot"}'),
        "method-not-allowed": ("DELETE", "/vm", "", ""),
        "not-found": ("GET", "/virtio-mem/a/b", "", ""),
        "unknown-query": ("GET", "/vm?verbose=1&x", "", ""),
    }
    for name, (method, path, ctype, body) in reqs.items():
        yield name, f"{method}\n{path}\n{ctype}\n{body}".encode()


# ---- cli: argv[1..] separated by NUL bytes ----------------------------------

def cli_seeds():
    k = ["--kernel", "/proc/self/exe"]
    lines = {
        "minimal": k,
        "full": k + ["--initrd=/proc/self/exe", "--cmdline", "console=ttyS0 quiet",
                     "--mem", "2G", "--cpus=4", "--on-reboot", "exit", "--verbose",
                     "--api-sock", "/tmp/minivmm-fuzz.sock"],
        "virtio-mem-two-nodes": k + ["--mem", "1G", "--virtio-mem",
                                     "node0:4G,block=2M,requested=1G",
                                     "--virtio-mem=node1:8G,node=1,prealloc=on,block=1G"],
        "virtio-mem-errors": k + ["--virtio-mem", "a:128M,requested=3M", "--virtio-mem",
                                  "a:128MiB"],
        "bad-sizes": k + ["--mem", "1024K", "--cpus", "256"],
        "help": ["--help"],
        "version": ["-v", "--version"],
    }
    for name, argv in lines.items():
        yield name, b"\0".join(a.encode() for a in argv)


# ---- http: raw bytes a client sends the API's front door --------------------
def http_seeds():
    body = b'{"requested_size":"1G"}'
    reqs = {
        "get": b"GET /vm HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "patch": b"PATCH /virtio-mem/node0?wait=5 HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                 % (len(body), body),
        "expect": b"PUT /vm/actions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                  b"Content-Length: 23\r\n\r\n",
        "two-hosts": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "cl-and-te": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\nabc",
        "chunked": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"3\r\nabc\r\n0\r\n\r\n",
        "space-colon": b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        "nul-path": b"GET /virtio-mem/a\0b HTTP/1.1\r\nHost: a\r\n\r\n",
        "pct00": b"GET /virtio-mem/node0%00x HTTP/1.1\r\nHost: a\r\n\r\n",
        "http10": b"GET /metrics HTTP/1.0\r\n\r\n",
        "folded": b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n",
    }
    yield from reqs.items()


def main():
    targets = {"virtqueue": vq_seeds, "virtio_mem": vm_seeds, "virtio_mmio": mmio_seeds,
               "api": api_seeds, "cli": cli_seeds, "http": http_seeds}
    for target, gen in targets.items():
        d = os.path.join(CORPUS, target)
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(d):
            if f.startswith("seed-"):
                os.unlink(os.path.join(d, f))
        for name, data in gen():
            with open(os.path.join(d, "seed-" + name), "wb") as f:
                f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
