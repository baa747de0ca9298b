#!/usr/bin/env python3
"""csock proxy hands a plain client's socket (and a dialled backend's) from
its stream to the splice relay by csock_stream_detach. A client that
writes 8 MiB the moment it connects, while the proxy is still connecting
to the backend, must get every byte to the backend exactly once (sha256 and
the -v byte count), on each backend: the default (io_uring where the
kernel allows it), epoll and poll. A backend of one address is connected
by a raw socket; a name (localhost: ::1 and 127.0.0.1) goes through the
dialler, whose stream is detached too. Repeated: where the hand-over falls
in the client's flow varies."""
import hashlib
import os
import random
import re
import socket
import threading

from csocktest import T, check_eq, main, recv_all
from test_nc_proxy_splice import sink_port
from test_proxy import Proxy

UP = random.Random(12).randbytes(8 << 20)


def one_client(px):
    with px.connect(timeout=30) as c:
        def send():
            try:
                c.sendall(UP)
                c.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the proxy dropped us: the check below says so
        t = threading.Thread(target=send)
        t.start()
        got = recv_all(c)
        t.join(T(30))
    check_eq(got, hashlib.sha256(UP).digest() + b"end", "8 MiB up, the backend's answer down")


def run_on(backend, to):
    saved = os.environ.get("CSOCK_BACKEND")
    if backend:
        os.environ["CSOCK_BACKEND"] = backend
    try:
        px = Proxy("tcp://127.0.0.1:0", "--to", to)
    finally:
        if saved is None:
            os.environ.pop("CSOCK_BACKEND", None)
        else:
            os.environ["CSOCK_BACKEND"] = saved
    try:
        for _ in range(3):
            one_client(px)
    finally:
        log = px.finish()
    closed = re.findall(r"closed \S+ -> \S+: (\d+) bytes up, (\d+) down", log)
    check_eq(closed, [(str(len(UP)), "35")] * 3, "%s: the relays' counts (log %r)" % (backend, log[-600:]))


def test_raw_backend_every_loop_backend():
    port = sink_port(b"end")
    for backend in (None, "epoll", "poll"):
        run_on(backend, "tcp://127.0.0.1:%d" % port)


def test_dialled_backend_every_loop_backend():
    port = sink_port(b"end")
    for backend in (None, "epoll", "poll"):
        run_on(backend, "tcp://localhost:%d" % port)


if __name__ == "__main__":
    main()
