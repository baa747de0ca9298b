"""Shared helpers for the TLS integration tests: start csock serve and wait
for its `listening` line, start openssl s_server on a free port, run checks
and count them."""
import os
import shutil
import socket
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import tlscerts  # noqa: E402

CSOCK = os.environ.get("CSOCK_BIN", "build/csock")
SANITIZER_MARKS = (b"AddressSanitizer", b"runtime error:", b"LeakSanitizer", b"internal error")


class Suite:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.procs = []
        self.certs = tlscerts.tempdir()

    def cert(self, name):
        return os.path.join(self.certs, name)

    def check(self, name, fn):
        t0 = time.time()
        try:
            fn()
            self.passed += 1
            print("ok   %-55s %.2fs" % (name, time.time() - t0), flush=True)
        except Exception as e:  # noqa: BLE001 - a test failure of any kind
            self.failed += 1
            print("FAIL %-55s %s" % (name, e), flush=True)
            traceback.print_exc()

    def spawn(self, args, **kw):
        p = subprocess.Popen(args, stdout=kw.pop("stdout", subprocess.PIPE),
                             stderr=kw.pop("stderr", subprocess.PIPE),
                             stdin=kw.pop("stdin", subprocess.DEVNULL), **kw)
        self.procs.append(p)
        return p

    def serve(self, *args, service="echo", addr="tls://127.0.0.1:0", tls=True):
        """csock serve with the good certificate; returns (proc, port)."""
        opts = ["--cert", self.cert("server.pem"), "--key", self.cert("server.key")] if tls else []
        p = self.spawn([CSOCK, "serve", *opts, *args, service, addr])
        line = p.stdout.readline().decode()
        if not line.startswith("listening "):
            p.kill()
            raise AssertionError("serve did not start: %r %r" % (line, p.stderr.read()))
        return p, int(line.rsplit(":", 1)[1])

    def finish(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            for stream in (p.stderr,):
                if stream and not stream.closed:
                    try:
                        err = stream.read() or b""
                    except (OSError, ValueError):
                        err = b""
                    if any(m in err for m in SANITIZER_MARKS):
                        self.failed += 1
                        print("FAIL sanitizer report from %s:\n%s" % (p.args[:3], err.decode()[-3000:]))
        shutil.rmtree(self.certs, ignore_errors=True)
        print("%d passed, %d failed" % (self.passed, self.failed))
        sys.exit(1 if self.failed else 0)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, timeout=10.0):
    """Wait until something accepts on 127.0.0.1:port (no sleeps as signals)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def start_listener(suite, make_args, accepts_probe=True, tries=5, **kw):
    """Start a peer server on a free port (openssl s_server, ncat, socat cannot
    report port 0): retry with another port if it fails to come up. When
    the server would count our readiness probe as a client (-naccept 1),
    pass accepts_probe=False: readiness is then read from its output."""
    for _ in range(tries):
        port = free_port()
        p = suite.spawn(make_args(port), **kw)
        if accepts_probe:
            if wait_port(port, p):
                return p, port
        else:
            if _wait_listening(port, p):
                return p, port
        p.kill()
        p.wait()
    raise AssertionError("peer server did not start: %s" % make_args(0))


def _wait_listening(port, proc, timeout=10.0):
    """Readiness without connecting: the port shows up in LISTEN state."""
    deadline = time.time() + timeout
    hexport = ":%04X" % port
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        for tab in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(tab) as f:
                    for line in f.readlines()[1:]:
                        parts = line.split()
                        if parts[1].endswith(hexport) and parts[3] == "0A":
                            return True
            except OSError:
                pass
        time.sleep(0.05)
    return False


def run(args, data=b"", timeout=20, **kw):
    return subprocess.run(args, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, **kw)


def exchange(args, data, expect_len=None, timeout=20):
    """Run a client that echoes: write `data`, read back `expect_len` bytes
    (default len(data)) before closing its input, since many TLS peers
    (s_client, ncat -c) exit at the end of their input without waiting for
    the rest of the reply. Returns (returncode, stdout bytes, stderr bytes)."""
    import selectors
    import subprocess
    want = len(data) if expect_len is None else expect_len
    p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    os.set_blocking(p.stdout.fileno(), False)
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    sel.register(p.stdin, selectors.EVENT_WRITE)
    got, sent, deadline = b"", 0, time.time() + timeout
    while len(got) < want and time.time() < deadline:
        for key, _ in sel.select(0.5):
            if key.fileobj is p.stdout:
                chunk = os.read(p.stdout.fileno(), 65536)
                if not chunk:
                    sel.unregister(p.stdout)
                    want = len(got)  # EOF: no more is coming
                got += chunk
            else:
                try:
                    sent += os.write(p.stdin.fileno(), data[sent:sent + 65536])
                except BrokenPipeError:
                    sent = len(data)
                if sent >= len(data):
                    sel.unregister(p.stdin)
        if p.poll() is not None and p.stdout not in [k.fileobj for k in sel.get_map().values()]:
            break
    sel.close()
    try:
        p.stdin.close()
    except BrokenPipeError:
        pass
    p.stdin = None  # communicate() must not flush it again
    try:
        rest, err = p.communicate(timeout=max(1, deadline - time.time()))
    except subprocess.TimeoutExpired:
        p.kill()
        rest, err = p.communicate()
    return p.returncode, got + (rest or b""), err
