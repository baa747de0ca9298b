#!/usr/bin/env python3
"""Backpressure through csock proxy's ws:// listener, both ways.

- a fast websockets client sends 20 MB to a slow TCP backend: the proxy
  stops reading the WebSocket while the backend's write queue is full, so
  its peak RSS stays bounded; every byte arrives, in order (a digest);
- a fast TCP backend sends 20 MB to a slowly reading WebSocket client: the
  backend is not read while the WebSocket's queue is full; bounded again,
  every byte arrives.
The bound (6 MiB over the RSS once listening) is far below what holding
the 20 MB would take, and far above what the marks allow (256 KiB queued,
one 1 MiB message, socket buffers). Under ASan freed memory waits in its
quarantine, so the RSS says nothing there: only the bytes are checked."""
import hashlib
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nckit  # noqa: E402

if __name__ == "__main__":
    nckit.reexec_with_websockets(__file__)

from csocktest import SANITIZED, T, check, check_eq, main  # noqa: E402
from nckit import run, websockets  # noqa: E402
from test_proxy import Proxy  # noqa: E402
import test_proxy_ws  # noqa: E402,F401 (Proxy.port_ws)

TOTAL = 20 << 20
CHUNK = 64 << 10
BOUND_KIB = 6 << 10


def check_bounded(base, peak):
    if SANITIZED:
        print("# RSS not checked under ASan (its quarantine keeps freed memory)")
        return
    check(peak - base < BOUND_KIB, "proxy RSS grew by %d KiB (from %d)" % (peak - base, base))


def vm_kib(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


class Backend:
    """A TCP server for one connection; `serve(conn)` runs in a thread."""

    def __init__(self, serve):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(4)
        self.port = self.ls.getsockname()[1]
        self.result = None
        self.error = None

        def go():
            try:
                self.ls.settimeout(T(30))
                conn, _ = self.ls.accept()
                conn.settimeout(T(60))
                with conn:
                    self.result = serve(conn)
            except Exception as e:  # reported by the test
                self.error = e
        self.t = threading.Thread(target=go, daemon=True)
        self.t.start()

    def join(self):
        self.t.join(T(90))
        self.ls.close()
        check(not self.t.is_alive(), "the backend did not finish")
        check(self.error is None, "backend: %r" % self.error)
        return self.result


def slow_reader(conn):
    """Read to EOF, 64 KiB at a time with a pause: about 20 MB/s at most."""
    h = hashlib.sha256()
    n = 0
    while True:
        b = conn.recv(CHUNK)
        if not b:
            return n, h.hexdigest()
        h.update(b)
        n += len(b)
        time.sleep(0.003)


def fast_writer(data):
    def serve(conn):
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        while conn.recv(4096):
            pass
    return serve


def test_fast_websocket_slow_backend():
    w = websockets()
    data = os.urandom(TOTAL)
    be = Backend(slow_reader)
    px = Proxy("ws://127.0.0.1:0/", "--to", "tcp://127.0.0.1:%d" % be.port)
    base = vm_kib(px.pid, "VmRSS")

    async def go():
        async with w.connect("ws://127.0.0.1:%d/" % px.port_ws(), max_size=None) as ws:
            for i in range(0, TOTAL, CHUNK):
                await ws.send(data[i:i + CHUNK])
    run(go(), 120)
    got = be.join()
    peak = vm_kib(px.pid, "VmHWM")
    check_eq(got, (TOTAL, hashlib.sha256(data).hexdigest()), "bytes and digest at the backend")
    check_bounded(base, peak)
    px.finish()


def test_fast_backend_slow_websocket():
    w = websockets()
    data = os.urandom(TOTAL)
    be = Backend(fast_writer(data))
    px = Proxy("ws://127.0.0.1:0/", "--to", "tcp://127.0.0.1:%d" % be.port)
    base = vm_kib(px.pid, "VmRSS")

    async def go():
        import asyncio
        h = hashlib.sha256()
        n = 0
        # max_queue 1: the client itself holds little, so the bytes back up
        # into TCP and the proxy.
        async with w.connect("ws://127.0.0.1:%d/" % px.port_ws(), max_size=None, max_queue=1) as ws:
            try:
                while n < TOTAL:
                    m = await ws.recv()
                    h.update(m)
                    n += len(m)
                    await asyncio.sleep(0.001)
            except w.exceptions.ConnectionClosed:
                pass
        return n, h.hexdigest()
    got = run(go(), 120)
    be.join()
    peak = vm_kib(px.pid, "VmHWM")
    check_eq(got, (TOTAL, hashlib.sha256(data).hexdigest()), "bytes and digest at the client")
    check_bounded(base, peak)
    px.finish()


if __name__ == "__main__":
    main()
