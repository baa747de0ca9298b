"""csocktest: a small harness for driving the built csock binary.

Python 3 stdlib only. What it gives the test files:
  - BIN: the csock binary (env CSOCK_BIN, default build/csock under the repo
    root; a relative CSOCK_BIN is taken relative to the repo root).
  - Server: start `csock serve ...`, wait (bounded) for its `listening ADDR`
    lines, stop it with SIGTERM, and fail on sanitizer reports in its stderr.
  - run(): run a command with stdin bytes and a timeout, in its own process
    group; returns (status, stdout, stderr).
  - Proc: a long-lived child (a peer tool or csock connect) in its own group.
  - rss_kib(pid), nfds(pid): read from /proc.
  - main(): run every test_* function of the calling module in order, print
    one line per test and a final `N passed, M failed, K skipped`; exit 1 on
    a failure, 77 (ctest: skipped) when every test skipped.
  - have(tool) / need(tool...): a test that asks for a peer tool that is
    missing is reported as "skip NAME: TOOL not installed", never as passed.

Every child runs in its own session, is remembered, and is killed (the
whole group) at exit, so a failing test never leaves processes behind.
"""

import atexit
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def _find_bin():
    b = os.environ.get("CSOCK_BIN") or os.path.join("build", "csock")
    if not os.path.isabs(b):
        b = os.path.join(REPO, b)
    return b


BIN = _find_bin()
SANITIZER_MARKS = ("AddressSanitizer", "runtime error:", "ThreadSanitizer",
                   "LeakSanitizer")

# Scale timeouts on a loaded or sanitized run (CSOCK_TIME_SCALE=3 ...).
TIME_SCALE = float(os.environ.get("CSOCK_TIME_SCALE", "1"))


def _is_sanitized(path):
    try:
        with open(path, "rb") as f:
            return b"AddressSanitizer" in f.read()
    except OSError:
        return False


SANITIZED = _is_sanitized(BIN)
if SANITIZED:
    TIME_SCALE *= 3


def T(seconds):
    """A timeout, scaled for sanitized builds and CSOCK_TIME_SCALE."""
    return seconds * TIME_SCALE


class TestFailure(AssertionError):
    pass


def check(cond, msg="check failed"):
    if not cond:
        raise TestFailure(msg)


def check_eq(got, want, what="value"):
    if got != want:
        g, w = repr(got), repr(want)
        if len(g) > 300: g = g[:300] + "..."
        if len(w) > 300: w = w[:300] + "..."
        raise TestFailure("%s: got %s, want %s" % (what, g, w))


def check_clean(stderr_text, who="csock"):
    """Fail if a sanitizer spoke."""
    for m in SANITIZER_MARKS:
        if m in stderr_text:
            raise TestFailure("%s stderr shows a sanitizer report (%r):\n%s"
                              % (who, m, stderr_text[-4000:]))


# ---- process bookkeeping -------------------------------------------------

_live = []          # Popen objects still possibly running
_live_lock = threading.Lock()
_tmpdirs = []


def _kill_group(p, sig=signal.SIGKILL):
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_live(forget):
    """Kill every process the tests started that still runs (and, with
    `forget`, stop tracking them all)."""
    with _live_lock:
        procs = list(_live)
    for p in procs:
        if p.poll() is None:
            _kill_group(p)
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if forget:
            _forget(p)


def _cleanup():
    _kill_live(forget=False)
    for d in _tmpdirs:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup)


def _on_signal(signum, frame):
    _cleanup()
    os._exit(128 + signum)


signal.signal(signal.SIGTERM, _on_signal)


def _env():
    env = dict(os.environ)
    # Sanitizer reports must end the process and be visible in stderr.
    env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    return env



def read_log(f):
    """The whole of a temporary file a child process writes its log to, read
    with pread: seek() would move the file offset the child shares, and its
    next line would overwrite the start of the log (a test then missed a
    line the child had written)."""
    fd = f.fileno()
    return os.pread(fd, os.fstat(fd).st_size, 0).decode("utf-8", "replace")

def spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
          stderr=subprocess.PIPE):
    p = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr,
                         start_new_session=True, env=_env())
    with _live_lock:
        _live.append(p)
    return p


def _forget(p):
    with _live_lock:
        if p in _live:
            _live.remove(p)


def tmpdir():
    """A fresh temporary directory, removed at exit. Kept short: Unix
    socket paths are limited to 107 bytes."""
    d = tempfile.mkdtemp(prefix="csk")
    _tmpdirs.append(d)
    return d


def run(argv, input=b"", timeout=20, check_sanitizer=True):
    """Run argv to completion with input on stdin; bounded by timeout.
    Returns (status, stdout bytes, stderr text)."""
    p = spawn(argv)
    try:
        out, err = p.communicate(input=input, timeout=T(timeout))
    except subprocess.TimeoutExpired:
        _kill_group(p)
        out, err = p.communicate()
        raise TestFailure("%s timed out after %.0fs; stdout=%r stderr=%r"
                          % (" ".join(argv), T(timeout), out[-300:], err[-600:]))
    finally:
        _kill_group(p)      # strays in its group, if any
        _forget(p)
    err = err.decode("utf-8", "replace")
    if check_sanitizer:
        check_clean(err, argv[0])
    return p.returncode, out, err


def csock(*args, input=b"", timeout=20):
    return run([BIN] + list(args), input=input, timeout=timeout)


class Proc:
    """A long-lived child: write to its stdin, read its stdout until a
    condition holds (bounded), then stop it. stderr goes to a temp file."""

    def __init__(self, argv):
        self.argv = argv
        self.errf = tempfile.TemporaryFile()
        self.p = spawn(argv, stderr=self.errf)
        os.set_blocking(self.p.stdout.fileno(), False)
        self.out = b""

    @property
    def pid(self):
        return self.p.pid

    def write(self, data):
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def feed(self, data, close=True):
        """Write data to stdin from a thread (so a child that answers while
        we write cannot deadlock us on full pipes), then close stdin."""
        def go():
            try:
                self.p.stdin.write(data)
                self.p.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass
            if close:
                self.close_stdin()
        t = threading.Thread(target=go, daemon=True)
        t.start()
        return t

    def close_stdin(self):
        try:
            self.p.stdin.close()
        except BrokenPipeError:
            pass

    def read_until(self, pred, timeout=10):
        """Read stdout until pred(all output so far) is true; returns the
        output. Fails after timeout (or if stdout ends first)."""
        deadline = time.monotonic() + T(timeout)
        sel = selectors.DefaultSelector()
        sel.register(self.p.stdout, selectors.EVENT_READ)
        try:
            while not pred(self.out):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TestFailure("%s: timed out waiting for output; have %r; stderr=%r"
                                      % (" ".join(self.argv), self.out[-300:], self.stderr()[-600:]))
                if not sel.select(min(left, 0.5)):
                    continue
                chunk = self.p.stdout.read(65536)
                if chunk is None:
                    continue
                if chunk == b"":
                    if pred(self.out):
                        break
                    raise TestFailure("%s: output ended early; have %r; stderr=%r"
                                      % (" ".join(self.argv), self.out[-300:], self.stderr()[-600:]))
                self.out += chunk
        finally:
            sel.close()
        return self.out

    def read_line(self, timeout=10):
        """The next whole line of stdout (without consuming beyond it)."""
        self.read_until(lambda o: b"\n" in o, timeout)
        line, _, rest = self.out.partition(b"\n")
        self.out = rest
        return line.decode("utf-8", "replace")

    def read_to_eof(self, timeout=10):
        """Read until the child closes stdout; returns everything."""
        done = [False]
        deadline = time.monotonic() + T(timeout)
        sel = selectors.DefaultSelector()
        sel.register(self.p.stdout, selectors.EVENT_READ)
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TestFailure("%s: no EOF on stdout within %.0fs; have %r"
                                      % (" ".join(self.argv), T(timeout), self.out[-300:]))
                if not sel.select(min(left, 0.5)):
                    continue
                chunk = self.p.stdout.read(65536)
                if chunk is None:
                    continue
                if chunk == b"":
                    break
                self.out += chunk
        finally:
            sel.close()
        return self.out

    def wait(self, timeout=10):
        try:
            return self.p.wait(timeout=T(timeout))
        except subprocess.TimeoutExpired:
            raise TestFailure("%s did not exit within %.0fs" % (" ".join(self.argv), T(timeout)))

    def stderr(self):
        return read_log(self.errf)

    def alive(self):
        return self.p.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Signal the group, wait (bounded), then SIGKILL. Returns status."""
        if self.p.poll() is None:
            _kill_group(self.p, sig)
            try:
                self.p.wait(timeout=T(timeout))
            except subprocess.TimeoutExpired:
                _kill_group(self.p)
                self.p.wait(timeout=5)
        _kill_group(self.p)
        for f in (self.p.stdin, self.p.stdout):
            try:
                f.close()
            except Exception:
                pass
        _forget(self.p)
        return self.p.returncode

    def kill(self):
        return self.stop(signal.SIGKILL)


# ---- csock serve ---------------------------------------------------------

_ADDR_RE = re.compile(r"^(tcp|udp)://(\[[^\]]+\]|[^:/]+):(\d+)$")


class Endpoint:
    """One `listening ADDR` line, parsed."""

    def __init__(self, text):
        self.text = text
        m = _ADDR_RE.match(text)
        if m:
            self.scheme = m.group(1)
            host = m.group(2)
            self.v6 = host.startswith("[")
            self.host = host.strip("[]")
            self.port = int(m.group(3))
            self.family = socket.AF_INET6 if self.v6 else socket.AF_INET
            self.sockaddr = (self.host, self.port)
        elif text.startswith("unix:"):
            self.scheme, self.path = "unix", text[5:]
            self.family, self.sockaddr, self.v6 = socket.AF_UNIX, self.path, False
        elif text.startswith("unixgram:"):
            self.scheme, self.path = "unixgram", text[9:]
            self.family, self.sockaddr, self.v6 = socket.AF_UNIX, self.path, False
        else:
            raise TestFailure("cannot parse listening address %r" % text)
        self.stream = self.scheme in ("tcp", "unix")

    def socket(self, timeout=10):
        """A Python socket connected (stream) or connected+bound
        (datagram; unixgram gets a bound path so replies can come back)."""
        st = socket.SOCK_STREAM if self.stream else socket.SOCK_DGRAM
        s = socket.socket(self.family, st)
        s.settimeout(T(timeout))
        if self.scheme == "unixgram":
            s.bind(os.path.join(tmpdir(), "c"))
        s.connect(self.sockaddr)
        return s

    def __repr__(self):
        return self.text


class Server(Proc):
    """csock serve SERVICE ADDR... [extra], ready once every endpoint has
    printed its `listening` line."""

    def __init__(self, service, *addrs, opts=(), tail=(), ready_timeout=15):
        # opts go before SERVICE, tail after the addresses.
        argv = [BIN, "serve"] + list(opts) + [service] + list(addrs) + list(tail)
        super().__init__(argv)
        self.endpoints = []
        try:
            for _ in addrs:
                line = self.read_line(ready_timeout)
                check(line.startswith("listening "),
                      "unexpected serve output %r (stderr %r)" % (line, self.stderr()))
                self.endpoints.append(Endpoint(line[len("listening "):]))
        except BaseException:
            self.stop(signal.SIGKILL)
            raise

    def ep(self, scheme, v6=False):
        for e in self.endpoints:
            if e.scheme == scheme and e.v6 == v6:
                return e
        raise KeyError(scheme)

    def finish(self, timeout=10):
        """Stop with SIGTERM; the server must exit 0 with a clean stderr."""
        alive = self.alive()
        rc = self.stop(signal.SIGTERM, timeout)
        err = self.stderr()
        check_clean(err, "csock serve")
        check(alive, "csock serve died before the end of the test: status %s, stderr %r"
              % (rc, err[-2000:]))
        check_eq(rc, 0, "csock serve exit status after SIGTERM (stderr %r)" % err[-500:])
        return err

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if et is None:
            self.finish()
        else:
            self.stop(signal.SIGKILL)
        return False


# ---- /proc ---------------------------------------------------------------

def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise TestFailure("no VmRSS for pid %d" % pid)


def nfds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def wait_for(pred, timeout, what):
    """Poll pred() until true (bounded); for conditions with no event to
    wait on (an fd count dropping back). Fails with `what`."""
    deadline = time.monotonic() + T(timeout)
    delay = 0.01
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TestFailure("timed out waiting for " + what)
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def loop_backend():
    """The backend csock's loops get here and now ("epoll", "uring", "poll"):
    CSOCK_BACKEND, or for the default (auto) whether the kernel allows
    io_uring, as `csock --version` says."""
    _, out, _ = csock("--version")
    return out.decode().rsplit("event loop: ", 1)[1].rstrip(")\n")


# ---- a connect that hangs ----------------------------------------------

def tcp_states(port, state):
    """How many sockets of /proc/net/tcp are in `state` (hex, e.g. "02"
    SYN_SENT) towards 127.0.0.1:port."""
    with open("/proc/net/tcp") as f:
        return sum(1 for line in list(f)[1:]
                   if line.split()[3] == state and int(line.split()[2].rsplit(":", 1)[1], 16) == port)


def accept_queue(port):
    """(queued, backlog) of the listener on port: for a LISTEN socket the
    rx/tx queue columns of /proc/net/tcp hold those two."""
    with open("/proc/net/tcp") as f:
        for line in list(f)[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                tx, rx = fields[4].split(":")
                return int(rx, 16), int(tx, 16)
    raise TestFailure("no listener on port %d" % port)


class FullListener:
    """A 127.0.0.1 listener (backlog 0) whose accept queue is over its
    backlog: the kernel drops further SYNs, so a connect to .port hangs in
    SYN_SENT. A context manager: closes the listener and its fillers."""

    def __init__(self):
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(0)
        self.port = self.srv.getsockname()[1]
        self.hold = []
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", self.port))
            self.hold.append(s)
        wait_for(lambda: accept_queue(self.port)[0] > accept_queue(self.port)[1], 10,
                 "the accept queue over its backlog")

    def syn_sent(self):
        return tcp_states(self.port, "02")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for s in self.hold:
            s.close()
        self.srv.close()
        return False


# ---- socket helpers ------------------------------------------------------

def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(min(1 << 20, n - len(buf)))
        if not chunk:
            raise TestFailure("peer closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def recv_all(s):
    buf = bytearray()
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            return bytes(buf)
        buf += chunk


def stream_exchange(ep, data, timeout=10):
    """Connect, send data, half-close, read until the server closes."""
    with ep.socket(timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        return recv_all(s)


class Skipped(Exception):
    """Raised by need(): the test cannot run here (a peer tool is missing)."""


_missing = set()    # peer tools have() did not find during the current test


def have(tool):
    """Whether a peer tool is installed. A test that asks for a missing one
    is reported as skipped, not passed (nor failed because of it)."""
    if shutil.which(tool) is not None:
        return True
    _missing.add(tool)
    return False


def need(*tools):
    """Skip the current test unless every tool is installed."""
    missing = [t for t in tools if not have(t)]
    if missing:
        raise Skipped("%s not installed" % ", ".join(missing))


def closed_tcp_port(family=socket.AF_INET):
    """A socket bound to a port that refuses connections (bound, never
    listening); keep it open while the port must stay refused."""
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
    return s


# ---- runner --------------------------------------------------------------

def main(namespace=None):
    """Run every test_* function of the calling module, in file order.
    Optional argv: names (or substrings) of the tests to run."""
    if namespace is None:
        namespace = sys._getframe(1).f_globals
    tests = [(n, f) for n, f in namespace.items()
             if n.startswith("test_") and callable(f)]
    tests.sort(key=lambda nf: nf[1].__code__.co_firstlineno)
    wanted = sys.argv[1:]
    if wanted:
        tests = [(n, f) for n, f in tests if any(w in n for w in wanted)]
    if not os.access(BIN, os.X_OK):
        print("csock binary not found at %s (set CSOCK_BIN)" % BIN)
        print("0 passed, 1 failed")
        sys.exit(1)
    passed = failed = skipped = 0
    print("# csock: %s%s" % (BIN, " (sanitized)" if SANITIZED else ""), flush=True)
    for name, fn in tests:
        t0 = time.monotonic()
        _missing.clear()
        try:
            fn()
        except Skipped as e:
            skipped += 1
            print("skip %s: %s" % (name, e), flush=True)
        except Exception as e:
            if _missing and _about_missing(e):
                skipped += 1
                print("skip %s: %s not installed" % (name, ", ".join(sorted(_missing))),
                      flush=True)
            else:
                failed += 1
                print("FAIL %s (%.2fs)" % (name, time.monotonic() - t0))
                print("  " + traceback.format_exc().replace("\n", "\n  "), flush=True)
        else:
            if _missing:    # it passed without the tool it asked for
                skipped += 1
                print("skip %s: %s not installed" % (name, ", ".join(sorted(_missing))),
                      flush=True)
            else:
                passed += 1
                print("ok   %s (%.2fs)" % (name, time.monotonic() - t0), flush=True)
        _cleanup_between_tests()
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped), flush=True)
    # 77: ctest's SKIP_RETURN_CODE, so a file whose tests all skipped shows
    # as "Not Run (Skipped)" instead of passing.
    sys.exit(1 if failed else 77 if skipped and not passed else 0)


def _about_missing(exc):
    """A failure that only says a tool is missing (check(have(t), "t not
    installed")): a skip."""
    return isinstance(exc, TestFailure) and any(t in str(exc) for t in _missing)


def _cleanup_between_tests():
    _kill_live(forget=True)
