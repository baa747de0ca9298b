"""Shared pieces of the server integration tests (test_server_*.py): a
counting check(), a csock serve echo process that reports its port, and
helpers that open, exercise and close thousands of loopback connections
with bounded waits."""
import os
import selectors
import signal
import socket
import subprocess
import tempfile
import time

CSOCK = os.environ.get("CSOCK_BIN", "build/csock")
results = []


def check(name, cond, detail=""):
    results.append(bool(cond))
    print(("ok   " if cond else "FAIL ") + name + (f": {detail}" if detail else ""), flush=True)
    return cond


class Server:
    """csock serve echo (or `service`) on tcp://127.0.0.1:0, ready once it
    printed its line.
    Options go before SERVICE, which every version of the parser accepts."""

    def __init__(self, *args, preexec=None, service="echo"):
        self.err = tempfile.TemporaryFile()
        self.p = subprocess.Popen([CSOCK, "serve", *args, service, "tcp://127.0.0.1:0"],
                                  stdout=subprocess.PIPE, stderr=self.err, preexec_fn=preexec)
        sel = selectors.DefaultSelector()
        sel.register(self.p.stdout, selectors.EVENT_READ)
        if not sel.select(10):
            self.kill()
            raise RuntimeError("server did not print 'listening' within 10 s")
        line = self.p.stdout.readline().decode().strip()
        sel.close()
        if not line.startswith("listening tcp://127.0.0.1:"):
            self.kill()
            raise RuntimeError(f"unexpected first line {line!r}")
        self.port = int(line.rsplit(":", 1)[1])
        self.addr = ("127.0.0.1", self.port)

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(10)

    def stop(self, timeout=15):
        """SIGTERM; returns the exit status (None if it had to be killed)."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def stderr(self):
        # pread, not seek: the offset is shared with the server, whose next
        # line would overwrite the start of the log (csocktest.read_log).
        fd = self.err.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")

    def rss(self):
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def nfds(self):
        return len(os.listdir(f"/proc/{self.p.pid}/fd"))

    def tasks(self):
        return os.listdir(f"/proc/{self.p.pid}/task")

    def task_cpu_ticks(self, tid):
        with open(f"/proc/{self.p.pid}/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime


def clean_stderr(srv):
    text = srv.stderr()
    bad = [w for w in ("Sanitizer", "runtime error", "internal error", "assert") if w in text]
    return check("server stderr clean", not bad, text[-500:] if bad else "")


def open_many(addr, n, deadline, batch=500):
    """n connected non-blocking sockets, opened batch by batch."""
    socks = []
    sel = selectors.DefaultSelector()
    while len(socks) < n:
        pending = {}
        for _ in range(min(batch, n - len(socks))):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex(addr)
            if err not in (0, 115):  # EINPROGRESS
                raise OSError(err, os.strerror(err))
            pending[s.fileno()] = s
            sel.register(s, selectors.EVENT_WRITE)
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"connects: {len(socks)} done, {len(pending)} pending")
            for key, _ in sel.select(1.0):
                s = pending.pop(key.fd)
                sel.unregister(s)
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, "connect: " + os.strerror(err))
                socks.append(s)
    sel.close()
    return socks


def echo_all(socks, deadline, tag):
    """Send a distinct message on every socket at once, then read every
    echo back; returns the number answered byte-exact."""
    sel = selectors.DefaultSelector()
    want, got = {}, {}
    for i, s in enumerate(socks):
        msg = f"{tag}:{i}:".encode() + bytes((i * 7 + k) & 0xFF for k in range(40)) + b"\n"
        want[s.fileno()] = msg
        got[s.fileno()] = b""
        s.send(msg)  # small: a fresh socket buffer always takes it
        sel.register(s, selectors.EVENT_READ)
    ok = 0
    left = len(socks)
    while left and time.monotonic() < deadline:
        for key, _ in sel.select(1.0):
            fd = key.fd
            try:
                data = key.fileobj.recv(4096)
            except OSError:
                data = b""
            if not data:
                sel.unregister(key.fileobj)
                left -= 1
                continue
            got[fd] += data
            if len(got[fd]) >= len(want[fd]):
                ok += got[fd] == want[fd]
                sel.unregister(key.fileobj)
                left -= 1
    sel.close()
    return ok


def close_all(socks):
    for s in socks:
        s.close()


def wait_for(pred, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def run_tests(tests):
    """Run each test function, counting an exception as one failed check;
    print the closing `N passed, M failed` line and return the exit status."""
    for t in tests:
        print(f"--- {t.__name__}", flush=True)
        try:
            t()
        except Exception as e:  # a failure, not a crash of the test itself
            check(t.__name__ + " raised", False, repr(e))
    passed = sum(results)
    failed = len(results) - passed
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0
