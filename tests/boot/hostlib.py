"""Hosts that minivmm's boot tests run on.

A Linux guest needs a /dev/kvm backed by hardware-style virtualization. Where
this machine has one (kvm_intel/kvm_amd, or any /dev/kvm on arm64), tests run
commands directly: LocalHost. Elsewhere (e.g. a machine whose /dev/kvm is the
software kvm_pvm), they run inside the "test host", a Linux VM under QEMU/TCG
whose KVM provides /dev/kvm: TestHostVM (built by tests/testhost/build.sh).

Every host has an architecture, x86_64 or arm64 (Payload.arch, host.arch):
the guests, minivmm and the peer VMM are built for it. An arm64 host on an
x86_64 machine is the arm64 test host (qemu-system-aarch64 -M
virt,virtualization=on -cpu neoverse-n1 under TCG, Debian's arm64 kernel with
its built-in KVM); on an arm64 machine with /dev/kvm it is LocalHost.

Both offer the same interface:

    host.run(cmd, timeout=60) -> (exit_code, output)
        Runs a shell command line (stdin /dev/null, stderr merged into stdout).
    host.spawn(cmd) -> Session
        Starts a shell command line in the foreground of a terminal, e.g.
        minivmm, whose serial console then comes through the session:
            s.expect(regex, timeout=30) -> re.Match
            s.send(text), s.sendline(text=''), s.sendcontrol('c')
            s.wait_exit(timeout=60) -> exit status (128+N if killed by signal N)
            s.kill(), s.close(), s.output (everything seen, '\\n' line ends)
    host.check(cmd, timeout=60) -> output; raises HostError unless exit 0
    host.path(name)           'minivmm', host.qemu_name or a payload path
                              ('guest/vmlinuz-6.1'); host.has(name)
    host.guest_kernel('6.1'), host.guest_initrd('6.1')
    host.qemu_cmd(series, ...) the QEMU+KVM peer command line (needs with_qemu)
    host.qemu_name            'qemu-system-x86_64' or 'qemu-system-aarch64'
    host.qemu_console         the peer's guest console ('ttyS0', 'ttyAMA0')
    host.kind ('local'|'qemu'), host.arch ('x86_64'|'arm64'), host.timings
    (seconds: payload_build, testhost_init, testhost_boot), host.close()

What the host needs (minivmm, guest images, QEMU) is described by a Payload;
inside the test host it appears under /payload.

Python 3.11 standard library only. Consoles are read by a background thread
per channel: a VM writing to its serial console must never stall because the
test is busy elsewhere (e.g. in run() while a nested guest prints).
"""

from __future__ import annotations

import atexit
import codecs
import ctypes
import fcntl
import itertools
import os
import platform
import pty
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import termios
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTHOST_BUILD = REPO / "tests" / "testhost" / "build.sh"
GUEST_BUILD = REPO / "guest-images" / "build.sh"

# The test host's console shell prompt (set by tests/testhost/init).
_TESTHOST_PROMPT = "testhost# "


class HostError(Exception):
    """The host or a program on it did not behave as the harness expects."""


class ExpectTimeout(HostError):
    pass


class ExpectEOF(HostError):
    pass


class _Stopped(Exception):
    """_Channel.expect() saw its stop pattern (a program's end) first."""

    def __init__(self, match: re.Match):
        super().__init__(match.group(0))
        self.match = match


_CRLF = re.compile(r"\r+\n")


def _tail(text: str, n: int = 3000) -> str:
    return text if len(text) <= n else "..." + text[-n:]


class _Channel:
    """A character stream to a console (pty master, pipe or socket).

    A thread reads everything into `text` (UTF-8, '\\r\\n' turned into '\\n')
    and into a transcript file; expect() waits for a regex in `text` after a
    given position.
    """

    def __init__(self, name: str, rfd: int, wfd: int, log_path: Path):
        self.name = name
        self._rfd = rfd
        self._wfd = wfd
        self.text = ""
        self.eof = False
        self._cond = threading.Condition()
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._cr = ""  # '\r's at the end of the last chunk
        self._log = open(log_path, "a", encoding="utf-8")
        self.log_path = log_path
        self._thread = threading.Thread(target=self._reader, name=f"read-{name}", daemon=True)
        self._thread.start()

    def _normalize(self, s: str) -> str:
        # Line ends arrive as \r\n, or as \r\r\n when a guest's \r\n passes
        # through another tty's ONLCR (nested consoles). Trailing \r's wait
        # for the next chunk, which decides whether they end a line.
        s = self._cr + s
        stripped = s.rstrip("\r")
        self._cr = s[len(stripped):]
        return _CRLF.sub("\n", stripped)

    def _reader(self) -> None:
        while True:
            try:
                data = os.read(self._rfd, 65536)
            except OSError:  # EIO: pty closed by the other side
                data = b""
            text = self._normalize(self._decoder.decode(data, final=not data))
            if not data:
                text, self._cr = text + self._cr, ""
            if text:
                self._log.write(text)
                self._log.flush()
            with self._cond:
                self.text += text
                if not data:
                    self.eof = True
                self._cond.notify_all()
            if not data:
                self._log.close()
                return

    def mark(self) -> int:
        with self._cond:
            return len(self.text)

    def expect(self, pattern, timeout: float, pos: int, stop: re.Pattern | None = None,
               end: int | None = None) -> re.Match:
        """First match of pattern in text[pos:end], waiting up to timeout s
        for more text (unless end is given). If stop matches first, raises
        _Stopped with that match."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                m = rx.search(self.text, pos, len(self.text) if end is None else end)
                st = stop.search(self.text, pos) if stop else None
                if st and (not m or st.start() < m.end()):
                    raise _Stopped(st)
                if m:
                    return m
                if end is not None:
                    raise ExpectEOF(f"{self.name}: no {rx.pattern!r} in the program's output")
                if self.eof:
                    raise ExpectEOF(
                        f"{self.name}: end of output while waiting for {rx.pattern!r}; "
                        f"last output:\n{_tail(self.text[pos:])}\n(transcript: {self.log_path})")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ExpectTimeout(
                        f"{self.name}: no {rx.pattern!r} within {timeout:g} s; "
                        f"last output:\n{_tail(self.text[pos:])}\n(transcript: {self.log_path})")
                self._cond.wait(left)

    def write(self, text: str) -> None:
        data = text.encode()
        while data:
            n = os.write(self._wfd, data)
            data = data[n:]


class Session:
    """A program started by Host.spawn(), talking through a terminal."""

    def __init__(self, chan: _Channel, start: int, cmd: str):
        self._chan = chan
        self._start = start
        self._pos = start
        self._end: int | None = None  # where the program's output ended
        self.cmd = cmd
        self.exit_status: int | None = None

    @property
    def output(self) -> str:
        """Everything the program's terminal showed so far ('\\n' line ends)."""
        end = self._end if self._end is not None else len(self._chan.text)
        return self._chan.text[self._start:end]

    def expect(self, pattern, timeout: float = 30) -> re.Match:
        """Waits for pattern (regex) in output not consumed by an earlier
        expect(); the returned match's groups work as usual.

        Output arrives in pieces: end a pattern that captures up to the end
        of a line with '\\n' (r"kernel=(\\S+)\\n"), or it may match half a line.
        Line ends are '\\n'. What you type is echoed by the terminal, so
        patterns should match output, not the command line (see the
        "answer=$((6 * 7))" trick in test_harness_qemu_peer.py)."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        try:
            m = self._chan.expect(rx, timeout, self._pos, stop=self._exit_marker, end=self._end)
        except (_Stopped, ExpectEOF) as e:
            if isinstance(e, _Stopped):
                self._exited(e.match)
            elif self.exit_status is None:
                try:  # a local program's pty closed: collect its status
                    self.wait_exit(5)
                except HostError:
                    pass
            raise ExpectEOF(f"{self.cmd!r} exited (status {self.exit_status}) before "
                            f"{rx.pattern!r} appeared; its output:\n{_tail(self.output)}\n"
                            f"(transcript: {self._chan.log_path})") from None
        self._pos = m.end()
        return m

    # Console sessions: the regex the end of the program prints, and what to
    # do when it shows up (in expect() or wait_exit()).
    _exit_marker: re.Pattern | None = None

    def _exited(self, match: re.Match) -> None:
        raise NotImplementedError

    def send(self, text: str) -> None:
        self._chan.write(text)

    def sendline(self, text: str = "") -> None:
        # CR is what the Enter key sends; a tty in cooked mode (and the guest
        # behind a raw-mode VMM) turns it into '\n'.
        self._chan.write(text + "\r")

    def sendcontrol(self, char: str) -> None:
        self._chan.write(chr(ord(char.lower()) & 0x1F))

    def wait_exit(self, timeout: float = 60) -> int:
        raise NotImplementedError

    def kill(self) -> None:
        """Kills the program (SIGKILL); wait_exit() then returns 137."""
        raise NotImplementedError

    def close(self) -> None:
        """Kills the program if it still runs and waits for it."""
        if self.exit_status is None:
            self.kill()
            self.wait_exit(30)


@dataclass
class Payload:
    """What tests need on the host, by name.

    arch: 'x86_64' or 'arm64', the architecture of everything below.
    binaries: name -> executable on this machine; host.path(name) gives its
        location on the host (inside the test host: /payload/bin/name, with
        its shared libraries in /payload/lib). Built for `arch` (an aarch64
        minivmm cross-built here, for an arm64 test host).
    deb_binaries: name -> 'PKG:/path/in/package', a program taken from a
        Debian package for `arch` with the libraries it depends on (e.g. curl
        for an arm64 test host: 'curl:/usr/bin/curl'). LocalHost finds name
        on PATH instead.
    guest_dir: output of guest-images/build.sh (vmlinuz-<series>, initrd-<series>.img).
    with_qemu: also provide the peer VMM (qemu-system-x86_64 and its firmware;
        for arm64 Debian's arm64 qemu-system-aarch64).
    files: payload-relative path -> file on this machine, for other data.
    """
    binaries: dict[str, Path] = field(default_factory=dict)
    guest_dir: Path = REPO / "build" / "guest"
    with_qemu: bool = False
    files: dict[str, Path] = field(default_factory=dict)
    arch: str = "x86_64"
    deb_binaries: dict[str, str] = field(default_factory=dict)


# Leaves out QEMU's default VGA and e1000 NIC, which minivmm does not have:
# their option ROMs (iPXE) add ~1 s to a nested boot. For host.qemu_cmd(extra=).
QEMU_NO_DEFAULT_DEVICES = ("-vga", "none", "-nic", "none")


# Per architecture: the peer QEMU, its machine options and the console its
# guest's kernel writes to.
_QEMU_NAME = {"x86_64": "qemu-system-x86_64", "arm64": "qemu-system-aarch64"}
_QEMU_CONSOLE = {"x86_64": "ttyS0", "arm64": "ttyAMA0"}

# QEMU 10 (Debian bookworm-backports), unpacked beside the system's 7.2 by
# tests/testhost/qemu10.sh: a second peer for the benchmarks and the x86_64
# test host's emulator (MINIVMM_TESTHOST_QEMU=7.2 chooses the system's QEMU).
# 10 is the default there: the suite runs as fast and the VMMs' ratios are
# the same under both, but a test host under 7.2 froze once in tens to
# hundreds of nested VM creations (docs/testing.md, "The x86_64 test host's
# emulator").
QEMU10_SCRIPT = REPO / "tests" / "testhost" / "qemu10.sh"
TESTHOST_QEMU_ENV = "MINIVMM_TESTHOST_QEMU"


def qemu10_dir() -> Path:
    """build/qemu10 (see qemu10.sh): bin/qemu-system-x86_64 (a wrapper with
    its -L firmware dir), root/usr/bin/qemu-system-x86_64 (the binary),
    firmware/. Fetched and unpacked on the first call."""
    p = subprocess.run([str(QEMU10_SCRIPT), "--quiet"], stdout=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise HostError(f"{QEMU10_SCRIPT} failed (exit {p.returncode}); see its messages above")
    return Path(p.stdout.strip())


def testhost_qemu(arch: str) -> str:
    """The emulator the test host of arch runs under: MINIVMM_TESTHOST_QEMU
    7.2 (the system's qemu-system-*) or 10 (x86_64 only). Default: 10 for
    x86_64, the system's QEMU for arm64."""
    which = os.environ.get(TESTHOST_QEMU_ENV) or ("10" if arch == "x86_64" else "7.2")
    if which == "7.2":
        return _QEMU_NAME[arch]
    if which == "10":
        if arch != "x86_64":
            raise HostError(f"{TESTHOST_QEMU_ENV}=10: only the x86_64 test host can run "
                            "under QEMU 10 (tests/testhost/qemu10.sh fetches qemu-system-x86)")
        try:
            return str(qemu10_dir() / "bin" / "qemu-system-x86_64")
        except HostError as e:
            raise HostError(f"{e}\nQEMU 10 is the x86_64 test host's default emulator: `sudo "
                            "tests/deps.sh install` adds its apt source (bookworm-backports); "
                            f"{TESTHOST_QEMU_ENV}=7.2 runs the test host under the system's "
                            "QEMU instead") from None
    raise HostError(f"{TESTHOST_QEMU_ENV}={which!r}: want 7.2 or 10")

# Kernel options for nested guests of each architecture, beside console=.
# arm64: cryptomgr.notests. Measured in the arm64 test host (QEMU peer, 6.1,
# 2 vCPUs, 512 MiB, quiet): the guest reached init 37 s after its kernel
# started with the crypto self-tests, 4 s without (they stall for seconds
# under nested TCG); 1 vCPU 4.4 s vs 2.0 s.
GUEST_CMDLINE = {"x86_64": "quiet", "arm64": "quiet cryptomgr.notests"}

# minivmm's console is a 16550 on both architectures: the guest's ttyS0.
MINIVMM_CONSOLE = "ttyS0"


def minivmm_cmdline(arch: str, *more: str) -> str:
    """The command line of a guest booted by minivmm: its console and the
    nested guests' options, then more."""
    return " ".join([f"console={MINIVMM_CONSOLE}", GUEST_CMDLINE[arch], *more])


def default_minivmm(arch: str) -> Path:
    """Where the build puts minivmm for arch, relative to the repository:
    build/minivmm natively, build-ARCH/minivmm when cross-built."""
    return Path("build/minivmm" if arch == machine_arch() else f"build-{arch}/minivmm")


def minivmm_unusable(path: Path, arch: str) -> str | None:
    """Why path cannot be the minivmm for arch guests (None: it can)."""
    if not path.exists():
        return f"minivmm is not built ({path} does not exist)"
    built_for = elf_arch(path)
    if built_for != arch:
        return f"{path} is built for {built_for or 'an unknown architecture'}, not {arch}"
    return None


class Host:
    """Common interface; see the module docstring."""

    kind = "?"

    def __init__(self, payload: Payload):
        if payload.arch not in ARCHES:
            raise HostError(f"unknown architecture {payload.arch!r} (want one of {ARCHES})")
        self.payload = payload
        self.arch = payload.arch
        self.timings: dict[str, float] = {}  # seconds, for reports
        self._sessions: list[Session] = []
        self._tokens = itertools.count(1)

    # -- paths -------------------------------------------------------------
    @property
    def qemu_name(self) -> str:
        """The peer VMM's program name for this host's architecture."""
        return _QEMU_NAME[self.arch]

    @property
    def qemu_console(self) -> str:
        """The serial console of a guest under the peer (QEMU's `-M pc`
        16550 or `-M virt` PL011), for the guest's console= option."""
        return _QEMU_CONSOLE[self.arch]

    def path(self, name: str) -> str:
        raise NotImplementedError

    def has(self, name: str) -> bool:
        """Whether the payload provides name (e.g. minivmm may not be built)."""
        return (name in self.payload.binaries or name in self.payload.deb_binaries or
                (name == self.qemu_name and self.payload.with_qemu))

    def guest_kernel(self, series: str) -> str:
        return self.path(f"guest/vmlinuz-{series}")

    def guest_initrd(self, series: str) -> str:
        return self.path(f"guest/initrd-{series}.img")

    def qemu_firmware_dir(self) -> str | None:
        return None

    def qemu_cmd(self, series: str, cpus: int = 2, mem_mb: int = 512,
                 append: str | None = None, extra=(), program: str | None = None,
                 firmware_dir: str | None = None) -> str:
        """Command line booting the test guest with QEMU + KVM (the peer).
        append defaults to "console=<qemu_console> <GUEST_CMDLINE[arch]>".
        program and firmware_dir replace the peer's binary and its -L
        directory (another QEMU in the payload, e.g. QEMU 10).
        arm64: `-M virt`
        with an in-kernel GICv3 (KVM in the arm64 test host has no GICv2)
        and no NIC (its virtio-net-pci would want an option ROM that the
        payload does not carry, and minivmm has no NIC either)."""
        if append is None:
            append = f"console={self.qemu_console} {GUEST_CMDLINE[self.arch]}"
        argv = [program or self.path(self.qemu_name)]
        firmware_dir = firmware_dir or self.qemu_firmware_dir()
        if firmware_dir:
            argv += ["-L", firmware_dir]
        if self.arch == "arm64":
            argv += ["-M", "virt,gic-version=3", "-nic", "none"]
        argv += ["-accel", "kvm", "-cpu", "host", "-m", str(mem_mb), "-smp", str(cpus),
                 "-nographic", "-kernel", self.guest_kernel(series),
                 "-initrd", self.guest_initrd(series), "-append", append, *extra]
        return shlex.join(argv)

    # -- commands ------------------------------------------------------------
    def run(self, cmd: str, timeout: float = 60) -> tuple[int, str]:
        raise NotImplementedError

    def check(self, cmd: str, timeout: float = 60) -> str:
        """run() that raises HostError unless the exit code is 0."""
        rc, out = self.run(cmd, timeout)
        if rc != 0:
            raise HostError(f"{cmd!r} exited with {rc}:\n{_tail(out)}")
        return out

    def spawn(self, cmd: str) -> Session:
        raise NotImplementedError

    def cleanup_sessions(self) -> None:
        """Kills programs a test left running (called between tests)."""
        for s in self._sessions:
            try:
                s.close()
            except HostError:
                pass
        self._sessions.clear()

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------------
# LocalHost


class _LocalSession(Session):
    def __init__(self, chan: _Channel, pid: int, cmd: str):
        super().__init__(chan, 0, cmd)
        self._pid = pid

    def wait_exit(self, timeout: float = 60) -> int:
        if self.exit_status is not None:
            return self.exit_status
        deadline = time.monotonic() + timeout
        while True:
            pid, status = os.waitpid(self._pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                raise ExpectTimeout(f"{self.cmd!r} still running after {timeout:g} s:\n"
                                    f"{_tail(self.output)}")
            time.sleep(0.05)
        # Leftover background children would keep the pty open; then wait
        # for the reader to drain what the program wrote before it exited.
        try:
            os.killpg(self._pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        with self._chan._cond:
            self._chan._cond.wait_for(lambda: self._chan.eof, timeout=5)
        self._end = len(self._chan.text)
        self.exit_status = os.waitstatus_to_exitcode(status)
        if self.exit_status < 0:
            self.exit_status = 128 - self.exit_status
        if self._chan.eof:  # never close an fd the reader may still read
            os.close(self._chan._rfd)
        return self.exit_status

    def kill(self) -> None:
        if self.exit_status is None:
            try:
                os.killpg(self._pid, signal.SIGKILL)  # the pty session's group
            except ProcessLookupError:
                pass


class LocalHost(Host):
    """Runs everything directly on this machine (its /dev/kvm must be real)."""

    kind = "local"

    def __init__(self, payload: Payload, log_dir: Path):
        super().__init__(payload)
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._cmd_log = open(self.log_dir / "local-commands.log", "a", encoding="utf-8")

    def path(self, name: str) -> str:
        # deb_binaries are for test hosts; here the program comes from PATH.
        if name in self.payload.binaries:
            return str(Path(self.payload.binaries[name]).resolve())
        if name in self.payload.files:
            return str(Path(self.payload.files[name]).resolve())
        if name.startswith("guest/"):
            return str((Path(self.payload.guest_dir) / name[len("guest/"):]).resolve())
        found = shutil.which(name)
        if not found:
            raise HostError(f"{name} is not in the payload nor on PATH")
        return found

    def run(self, cmd: str, timeout: float = 60) -> tuple[int, str]:
        self._cmd_log.write(f"$ {cmd}\n")
        # Own process group, so a timeout ends the command's children too
        # (they would keep the output pipe open).
        p = subprocess.Popen(["/bin/sh", "-c", cmd], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True)
        try:
            raw, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            raw, _ = p.communicate()
            out = raw.decode(errors="replace")
            self._cmd_log.write(f"{out}[timeout after {timeout:g} s]\n")
            self._cmd_log.flush()
            raise ExpectTimeout(f"{cmd!r} did not finish within {timeout:g} s:\n{_tail(out)}")
        out = raw.decode(errors="replace")
        rc = p.returncode if p.returncode >= 0 else 128 - p.returncode
        self._cmd_log.write(f"{out}[exit {rc}]\n")
        self._cmd_log.flush()
        return rc, out

    def spawn(self, cmd: str) -> Session:
        n = next(self._tokens)
        log = self.log_dir / f"local-spawn-{n}.log"
        with open(log, "w", encoding="utf-8") as f:
            f.write(f"$ {cmd}\n")
        # pty.fork() makes the child a session leader with the pty as its
        # controlling terminal, as a login shell would have: raw mode and ^C
        # work as they would for a user.
        pid, fd = pty.fork()
        if pid == 0:
            try:
                os.execv("/bin/sh", ["sh", "-c", cmd])
            finally:
                os._exit(127)
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        s = _LocalSession(_Channel(f"spawn-{n}", fd, fd, log), pid, cmd)
        self._sessions.append(s)
        return s

    def close(self) -> None:
        self.cleanup_sessions()
        self._cmd_log.close()


# ---------------------------------------------------------------------------
# TestHostVM


class _ConsoleSession(Session):
    def __init__(self, vm: "TestHostVM", token: str, start: int, cmd: str):
        super().__init__(vm._console, start, cmd)
        self._vm = vm
        self._token = token
        self._exit_marker = re.compile(rf"\nMVX-END-{token} (\d+)\n")

    def wait_exit(self, timeout: float = 60) -> int:
        if self.exit_status is None:
            try:
                m = self._chan.expect(self._exit_marker, timeout, self._pos)
            except ExpectTimeout:
                raise ExpectTimeout(f"{self.cmd!r} still running after {timeout:g} s:\n"
                                    f"{_tail(self.output)}\n"
                                    f"(transcript: {self._chan.log_path})") from None
            self._exited(m)
        return self.exit_status

    def _exited(self, m: re.Match) -> None:
        self._end = m.start()
        self.exit_status = int(m.group(1))
        # Resynchronize with the shell before the next spawn().
        self._chan.expect(re.escape(_TESTHOST_PROMPT), 30, m.end())
        self._vm._console_busy = None

    def kill(self) -> None:
        if self.exit_status is None:
            self._vm.run(f"mvx-kill {self._token}", timeout=30)


class TestHostVM(Host):
    """The test host VM, under QEMU/TCG. x86_64: -cpu max (it has SVM) and
    Debian's kernel with kvm_amd. arm64: -M virt,virtualization=on,
    gic-version=3 -cpu neoverse-n1 (EL2; QEMU 7.2's -cpu max emulates
    pointer authentication ~4x slower) and Debian's arm64 6.1 kernel with its
    built-in KVM. Its serial console (x86_64 ttyS0, arm64 the PL011 ttyAMA0)
    carries spawned programs; a second serial port on a unix socket (x86_64
    ttyS1; arm64 a 16550 on PCI, ttyS0, as the virt machine has one PL011)
    carries a shell for run(), so commands can run while a program occupies
    the console.

    Only one spawned program at a time (there is one console).
    """

    kind = "qemu"
    __test__ = False  # not a pytest test class despite the name

    def __init__(self, payload: Payload, work_dir: Path, log_dir: Path, *,
                 memory: str = "6G", cpus: int = 2, payload_mode: str = "disk",
                 qemu: str | None = None, cache_dir: Path | None = None):
        super().__init__(payload)
        self.work_dir = Path(work_dir)
        self.log_dir = Path(log_dir)
        self.memory = memory
        self.cpus = cpus
        self.payload_mode = payload_mode
        self.qemu = qemu or testhost_qemu(self.arch)
        self.cache_dir = cache_dir
        self._proc: subprocess.Popen | None = None
        self._console: _Channel | None = None
        self._ctl: _Channel | None = None
        self._ctl_sock: socket.socket | None = None
        self._sock_dir: str | None = None
        self._console_busy: Session | None = None

    # -- build ---------------------------------------------------------------
    def build(self) -> None:
        """Fills work_dir/payload and builds the image in work_dir/image."""
        t0 = time.monotonic()
        pdir = self.work_dir / "payload"
        if pdir.exists():
            shutil.rmtree(pdir)
        (pdir / "guest").mkdir(parents=True)
        for f in sorted(Path(self.payload.guest_dir).glob("*")):
            if f.name.startswith(("vmlinuz-", "initrd-", "guest-")):
                _link_or_copy(f, pdir / "guest" / f.name)
        for rel, src in self.payload.files.items():
            (pdir / rel).parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(Path(src), pdir / rel)
        argv = [str(TESTHOST_BUILD), "--arch", self.arch, "--payload-dir", str(pdir),
                "--out", str(self.work_dir / "image"), "--payload-mode", self.payload_mode]
        if self.cache_dir:
            argv += ["--cache", str(self.cache_dir)]
        for name, src in self.payload.binaries.items():
            argv += ["--add-binary", f"{src}={name}"]
        for name, src in self.payload.deb_binaries.items():
            argv += ["--add-deb-binary", f"{src}={name}"]
        if self.payload.with_qemu:
            argv.append("--with-qemu")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / "testhost-build.log", "w") as log:
            p = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT)
        if p.returncode != 0:
            raise HostError(f"{shlex.join(argv)} failed; see {self.log_dir / 'testhost-build.log'}")
        self.timings["payload_build"] = time.monotonic() - t0

    # -- boot ----------------------------------------------------------------
    def qemu_argv(self) -> list[str]:
        img = self.work_dir / "image"
        self._sock_dir = tempfile.mkdtemp(prefix="mvx-testhost-")  # short path for AF_UNIX
        ctl = f"socket,id=ctl,path={self._sock_dir}/ctl,server=on,wait=off"
        disk = img / "payload.ext4"
        if self.arch == "x86_64":
            cpu = ["-cpu", "max"]
            console = "ttyS0"
            # unknown_nmi_panic: diagnose() sends an NMI to a test host that
            # stopped answering; the panic prints where the CPUs were
            # (panic_print 0x40: every CPU's backtrace).
            extra = "edd=off unknown_nmi_panic panic_print=0x40"
            ctl_port = ["-serial", "chardev:ctl"]
            disk_dev = ["-drive", f"file={disk},if=virtio,format=raw,readonly=on"]
        else:
            # virtualization=on: EL2, so the kernel's KVM comes up (VHE);
            # gic-version=3: its vGIC needs a GICv3 (no GICv2 emulation).
            cpu = ["-M", "virt,virtualization=on,gic-version=3", "-cpu", "neoverse-n1"]
            console = "ttyAMA0"
            extra = ""
            ctl_port = ["-device", "pci-serial,chardev=ctl"]
            # virtio-mmio, no PCI probing for the disk.
            disk_dev = ["-drive", f"file={disk},if=none,id=payload,format=raw,readonly=on",
                        "-device", "virtio-blk-device,drive=payload"]
        argv = [self.qemu, "-accel", "tcg,thread=multi", *cpu,
                "-m", self.memory, "-smp", str(self.cpus), "-nographic", "-no-reboot",
                "-kernel", str(img / "vmlinuz"), "-initrd", str(img / "initrd.img"),
                # The boot's kernel messages reach the console (a boot that
                # never gets to init shows where it stopped); /init lowers
                # the level to emergencies only before it reports READY, so
                # kernel warnings (KVM's "Unhandled WRMSR"...) never land in
                # the middle of a nested guest's output; dmesg has them.
                # panic=-1 + -no-reboot: a test host panic ends QEMU at once.
                "-append", f"console={console} panic=-1 {extra}".strip(),
                # signal=off: ^C from a test goes to the test host, not QEMU.
                "-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con",
                "-chardev", ctl, *ctl_port,
                # The human monitor, only for diagnose(): what the emulated
                # CPUs were doing when the test host stopped answering.
                "-monitor", f"unix:{self._sock_dir}/mon,server=on,wait=off",
                "-nic", "none"]
        if disk.exists():
            argv += disk_dev
        return argv

    def boot(self, timeout: float = 120, attempts: int = 2) -> None:
        """Starts the test host. Its boot takes ~6 s; once in CI a test host
        restart printed nothing after the kernel started for 300 s (40 boots
        in a row here never did). That boot runs QEMU's emulator and Debian's
        kernel, no minivmm code, so such a boot is ended and the test host
        started once more, with a warning naming the kept transcript: it
        costs one boot instead of every test after it."""
        for attempt in range(1, attempts + 1):
            try:
                self._boot_once(timeout)
                return
            except HostError as e:
                if attempt == attempts or "MINIVMM-TESTHOST-FAILED" in str(e):
                    raise
                kept = self.log_dir / f"testhost-console.failed-boot-{attempt}.log"
                shutil.copyfile(self._console.log_path, kept)
                warnings.warn(f"the test host did not boot (attempt {attempt} of {attempts}, "
                              f"transcript {kept}); starting it again:\n{e}")

    def _boot_once(self, timeout: float) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        argv = self.qemu_argv()
        (self.log_dir / "testhost-qemu.cmd").write_text(shlex.join(argv) + "\n")
        t0 = time.monotonic()
        # The console is QEMU's stdio on pipes: no tty in between, so every
        # byte (^C, ^A, ...) reaches the test host's serial port unchanged.
        with open(self.log_dir / "testhost-qemu.stderr", "w") as err:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                start_new_session=True, preexec_fn=_die_with_parent)
        # Its own session keeps a ^C on the developer's terminal from reaching
        # QEMU directly; close() (or, if Python dies, the parent-death signal)
        # ends it.
        atexit.register(self.close)
        self._console = _Channel("testhost console", self._proc.stdout.fileno(),
                                 self._proc.stdin.fileno(), self.log_dir / "testhost-console.log")
        try:
            m = self._console.expect(r"MINIVMM-TESTHOST-(READY|FAILED)[^\n]*\n", timeout, 0)
            if m.group(1) == "FAILED":
                raise HostError(f"test host: {m.group(0).strip()}\n"
                                f"(transcript: {self._console.log_path})")
            self.timings["testhost_init"] = time.monotonic() - t0
            self._connect_ctl(deadline=time.monotonic() + 60)
            self._console.expect(re.escape(_TESTHOST_PROMPT), 60, m.end())
            self.timings["testhost_boot"] = time.monotonic() - t0
        except HostError as e:
            if "MINIVMM-TESTHOST-FAILED" not in str(e):
                e = HostError(f"{e}\n(what its CPUs were doing: {self.diagnose('boot-stalled')})")
            self.close()
            err = (self.log_dir / "testhost-qemu.stderr").read_text(errors="replace").strip()
            if err:
                raise HostError(f"{e}\nQEMU's stderr:\n{_tail(err)}") from None
            raise

    def _connect_ctl(self, deadline: float) -> None:
        path = f"{self._sock_dir}/ctl"
        while True:
            try:
                self._ctl_sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._ctl_sock.connect(path)
                break
            except OSError:
                self._ctl_sock.close()
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    raise HostError(f"cannot connect to the test host's control socket {path}")
                time.sleep(0.05)
        fd = self._ctl_sock.fileno()
        self._ctl = _Channel("testhost control", fd, fd, self.log_dir / "testhost-control.log")
        # The control shell starts after the READY line and input sent to a
        # serial port before it is opened is lost: retry until it answers.
        for attempt in itertools.count():
            tok = f"hello{attempt}"
            pos = self._ctl.mark()
            self._ctl.write(f"mvx-run {tok} true\n")
            try:
                self._ctl.expect(rf"MVX-END-{tok} 0\n", 0.25, pos)
                return
            except ExpectTimeout:
                if time.monotonic() > deadline:
                    raise HostError("the test host's control shell does not answer "
                                    f"(transcript: {self._ctl.log_path})")

    # -- interface -------------------------------------------------------------
    def path(self, name: str) -> str:
        return f"/payload/{name}" if "/" in name else f"/payload/bin/{name}"

    def qemu_firmware_dir(self) -> str | None:
        # arm64: -M virt boots a kernel directly without firmware.
        return "/payload/share/qemu" if self.arch == "x86_64" else None

    # The control shell reads lines from a tty in canonical mode, which
    # holds at most 4095 characters per line: longer text goes through a file.
    _MAX_LINE = 3000

    def run(self, cmd: str, timeout: float = 60) -> tuple[int, str]:
        tok = f"r{next(self._tokens)}"
        line = f"mvx-run {tok} {shlex.quote(cmd)}"
        if len(line) > self._MAX_LINE:
            self._put_file(f"/tmp/mvx-run-{tok}.cmd", cmd)
            line = f'mvx-run {tok} "$(cat /tmp/mvx-run-{tok}.cmd)"'
        return self._ctl_run(tok, line, timeout)

    def _ctl_run(self, tok: str, line: str, timeout: float) -> tuple[int, str]:
        pos = self._ctl.mark()
        self._ctl.write(line + "\n")
        try:
            b = self._ctl.expect(rf"MVX-BEGIN-{tok}\n", timeout, pos)
            e = self._ctl.expect(rf"\nMVX-END-{tok} (\d+)\n", timeout, b.end())
        except ExpectTimeout:
            # ^C kills the control shell and whatever it runs; init starts a
            # new one, so later calls still work.
            self._ctl.write("\x03")
            time.sleep(0.5)
            raise
        return int(e.group(1)), self._ctl.text[b.end():e.start()]

    def _put_file(self, path: str, text: str) -> None:
        """Writes text to a file in the test host over the control shell."""
        chunks = [text[i:i + 500] for i in range(0, len(text), 500)] or [""]
        for i, chunk in enumerate(chunks):
            tok = f"p{next(self._tokens)}"
            redir = ">" if i == 0 else ">>"
            cmd = f"printf %s {shlex.quote(chunk)} {redir} {path}"
            rc, out = self._ctl_run(tok, f"mvx-run {tok} {shlex.quote(cmd)}", 30)
            if rc != 0:
                raise HostError(f"cannot write {path} in the test host: {out}")

    def spawn(self, cmd: str) -> Session:
        if self._console_busy is not None:
            raise HostError(f"the console is still used by {self._console_busy.cmd!r}; "
                            "wait_exit() or close() that session first")
        tok = f"s{next(self._tokens)}"
        self._put_file(f"/tmp/mvx-spawn-{tok}.cmd", cmd)
        pos = self._console.mark()
        self._console.write(f"mvx-spawn {tok}\r")
        m = self._console.expect(rf"MVX-START-{tok}\n", 30, pos)
        s = _ConsoleSession(self, tok, m.end(), cmd)
        self._console_busy = s
        self._sessions.append(s)
        return s

    def cleanup_sessions(self) -> None:
        super().cleanup_sessions()
        if self._console_busy is not None:
            # A program that even SIGKILL did not end (stuck in the test
            # host's kernel) still holds the only console: start a fresh test
            # host, so that one stuck VMM fails one test and not every test
            # after it. The failed test's report has the stuck threads' stacks.
            stuck = self._console_busy.cmd
            report = self.diagnose("stuck")
            warnings.warn(f"{stuck!r} could not be ended; restarting the test host "
                          f"(what its CPUs were doing: {report})")
            self.close()
            self._console_busy = None
            self.boot()

    def diagnose(self, tag: str) -> Path:
        """Writes what the test host was doing into testhost-<tag>-N.txt: the
        state and CPU time of QEMU's threads on this machine (an emulator
        spinning or deadlocked), the emulated CPUs' registers, and, on x86_64,
        the kernel's own report after an NMI (it panics on one, printing
        the interrupted CPU's stack). The test host is unusable afterwards:
        call only before close()."""
        out = self.log_dir / f"testhost-{tag}-{next(self._tokens)}.txt"
        parts = []
        pid = self._proc.pid if self._proc else None
        if pid and self._proc.poll() is None:
            parts.append("== QEMU threads on this machine (state, CPU s, CPU s 2 s later)")
            parts.append(_thread_cpu_report(pid, 2.0))
            for cmd in ("info status", "info cpus", "info registers -a"):
                parts.append(f"== (qemu) {cmd}\n{self._monitor(cmd)}")
            if self.arch == "x86_64":
                pos = self._console.mark()
                parts.append(f"== (qemu) nmi\n{self._monitor('nmi')}")
                time.sleep(10)
                parts.append("== console in the 10 s after the NMI\n" + self._console.text[pos:])
        else:
            parts.append(f"QEMU is not running (status {self._proc.poll() if self._proc else None})")
        out.write_text("\n".join(parts) + "\n")
        return out

    def _monitor(self, cmd: str, timeout: float = 10) -> str:
        """One command on QEMU's human monitor; its answer, or why none."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout)
                s.connect(f"{self._sock_dir}/mon")
                buf = b""
                while not buf.endswith(b"(qemu) "):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                s.sendall(cmd.encode() + b"\n")
                buf = b""
                while buf.count(b"(qemu) ") < 1 or not buf.endswith(b"(qemu) "):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                text = buf.decode(errors="replace").replace("\r", "")
                return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
        except OSError as e:
            return f"(no answer from the monitor: {e})"

    def close(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._ctl_sock:
            self._ctl_sock.close()
            self._ctl_sock = None
        if self._sock_dir:
            shutil.rmtree(self._sock_dir, ignore_errors=True)
            self._sock_dir = None


def _thread_cpu_report(pid: int, interval: float) -> str:
    """Each thread of pid: name, state, user+system CPU seconds, and the same
    again after interval seconds."""
    def sample():
        rows = {}
        for t in Path(f"/proc/{pid}/task").glob("*"):
            try:
                stat = (t / "stat").read_text()
            except OSError:
                continue
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            f = stat[stat.rindex(")") + 2:].split()
            rows[t.name] = (name, f[0], (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK"))
        return rows
    try:
        a = sample()
        time.sleep(interval)
        b = sample()
    except OSError as e:
        return f"(cannot read /proc/{pid}: {e})"
    lines = []
    for tid, (name, state, cpu) in sorted(a.items(), key=lambda kv: int(kv[0])):
        later = b.get(tid)
        lines.append(f"{tid:>8} {name:<20} {state} {cpu:10.2f} "
                     + (f"{later[1]} {later[2]:10.2f}" if later else "(gone)"))
    return "\n".join(lines)


def _die_with_parent() -> None:
    """In a child before exec: get SIGTERM when the parent dies, so a crashed
    or killed test run leaves no test host VM behind."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


ARCHES = ("x86_64", "arm64")
_ARCH_ALIASES = {"x86_64": "x86_64", "amd64": "x86_64", "arm64": "arm64", "aarch64": "arm64"}


def normalize_arch(name: str) -> str:
    """'x86_64'/'amd64' -> 'x86_64', 'arm64'/'aarch64' -> 'arm64'."""
    try:
        return _ARCH_ALIASES[name]
    except KeyError:
        raise HostError(f"unknown architecture {name!r} (want x86_64 or arm64)") from None


def machine_arch() -> str:
    """This machine's architecture, as normalize_arch() names it."""
    m = platform.machine()
    return _ARCH_ALIASES.get(m, m)


# ELF e_machine values.
_ELF_MACHINE = {62: "x86_64", 183: "arm64"}


def elf_arch(path: Path) -> str | None:
    """The architecture an ELF executable is built for (None: not an ELF
    file for x86_64 or arm64)."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    order = "little" if head[5] == 1 else "big"
    return _ELF_MACHINE.get(int.from_bytes(head[18:20], order))


def kvm_is_hardware(arch: str | None = None) -> bool:
    """True when this machine's /dev/kvm can run Linux guests of arch (by
    default this machine's own): hardware virtualization, not a software
    implementation such as x86's kvm_pvm. x86_64: kvm_intel or kvm_amd
    loaded. arm64: any /dev/kvm (its KVM is the architecture's own EL2).
    Another architecture's guests never run on this /dev/kvm."""
    if arch is not None and normalize_arch(arch) != machine_arch():
        return False
    if not os.path.exists("/dev/kvm"):
        return False
    if machine_arch() == "arm64":
        return True
    return os.path.isdir("/sys/module/kvm_intel") or os.path.isdir("/sys/module/kvm_amd")


def default_guest_dir(arch: str = "x86_64") -> Path:
    """Where guest-images/build.sh --arch puts its images by default."""
    return REPO / "build" / ("guest" if normalize_arch(arch) == "x86_64" else f"guest-{arch}")


def ensure_guest_images(out: Path, series: str = "all", arch: str = "x86_64") -> None:
    """Runs guest-images/build.sh (quick when nothing changed)."""
    subprocess.run([str(GUEST_BUILD), "--arch", normalize_arch(arch), "--kernel", series,
                    "--out", str(out)], check=True)
