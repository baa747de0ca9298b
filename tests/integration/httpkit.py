"""The csock serve http process the HTTP integration tests share: started on
tcp://127.0.0.1:0 with its port read from the `listening` line, stopped
with SIGTERM, its exit status and stderr checked through the caller's
check(name, cond, detail)."""
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time

BIN = os.environ.get("CSOCK_BIN", "build/csock")


class Server:
    def __init__(self, root, *args, env=None, check=None, prefix=()):
        """`prefix`: a command the server runs under (e.g. prlimit ...)."""
        self.check = check
        self.p = subprocess.Popen([*prefix, BIN, "serve", "http", root, "tcp://127.0.0.1:0", *args],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=dict(os.environ, **(env or {})))
        line = b""
        deadline = time.time() + 10
        while not line.endswith(b"\n") and time.time() < deadline:
            r, _, _ = select.select([self.p.stdout], [], [], 0.5)
            if r:
                c = os.read(self.p.stdout.fileno(), 1)
                if not c:
                    break
                line += c
        m = re.match(rb"listening tcp://127\.0\.0\.1:(\d+)", line)
        if not m:
            self.p.kill()
            raise RuntimeError(f"server did not start: {line!r} {self.p.stderr.read()!r}")
        self.port = int(m.group(1))

    def stop(self):
        self.p.terminate()
        try:
            out, err = self.p.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, err = self.p.communicate()
        err = err.decode(errors="replace")
        self.check("server exit status", self.p.returncode == 0, f"rc={self.p.returncode} {err[-2000:]}")
        self.check("no sanitizer report", "Sanitizer" not in err and "runtime error" not in err, err[-3000:])
        return out.decode(errors="replace")


class Tally:
    """check(name, cond, detail) counts results and prints failures (safe
    from several threads); finish() prints "N passed, M failed" and exits
    with 1 on any failure."""

    def __init__(self):
        self.passed = self.failed = 0
        self.lock = threading.Lock()

    def check(self, name, cond, detail=""):
        with self.lock:
            if cond:
                self.passed += 1
            else:
                self.failed += 1
                print(f"FAIL {name} {detail}", flush=True)

    def finish(self):
        print(f"{self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed else 0)


def exchange(port, data, timeout=5.0, shut=False):
    """Send raw bytes to 127.0.0.1:port (then half-close if `shut`), read
    until the server closes or `timeout`; returns (bytes, closed)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
    except (BrokenPipeError, ConnectionResetError):
        pass
    out = b""
    end = time.time() + timeout
    closed = False
    try:
        while time.time() < end:
            b = s.recv(65536)
            if not b:
                closed = True
                break
            out += b
    except socket.timeout:
        pass
    except ConnectionResetError:
        closed = True
    s.close()
    return out, closed
