#!/usr/bin/env python3
"""csock proxy relaying many short connections at once, each handed from
its stream to the splice relay with a raw backend socket, on io_uring with
DEFER_TASKRUN (the default since session 35; CSOCK_URING_DEFER=1 keeps it
on here whatever the default).

The raw backend socket's watcher, armed for the connect's writability,
used to stay armed while the client's stream was still being detached:
when it fired again before the detach's task ran (with DEFER_TASKRUN, a
busy wait enters the kernel again in the same loop iteration, and the
re-armed poll completes at once), the relay pumped the client's side, fd
-1, and ended with EBADF: -v said `dropped ...: Bad file descriptor (0
bytes up, 0 down)` and the client got a reset. 600 exchanges lost 7-11
in 4 runs of 5; this makes 5 x 600, and every one must come back."""
import os
import re
import socket
import threading

from csocktest import Server, Skipped, T, check_eq, loop_backend, main
from test_proxy import Proxy, tcp_url

THREADS = 6
EACH = 500  # exchanges per thread


def start_proxy(to):
    saved = {k: os.environ.get(k) for k in ("CSOCK_BACKEND", "CSOCK_URING_DEFER")}
    os.environ["CSOCK_BACKEND"] = "uring"
    os.environ["CSOCK_URING_DEFER"] = "1"
    try:
        return Proxy("tcp://127.0.0.1:0", "--to", to)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def short_exchanges(port, n, errors):
    for i in range(n):
        msg = b"hello %d\n" % i
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=T(20)) as c:
                c.sendall(msg)
                got = b""
                while len(got) < len(msg):
                    b = c.recv(100)
                    if not b:
                        break
                    got += b
            if got != msg:
                errors.append("echo %r for %r" % (got, msg))
        except OSError as e:
            errors.append(repr(e))


def test_short_relays_on_defer_taskrun():
    if loop_backend() != "uring":
        raise Skipped("io_uring is not allowed here")
    with Server("echo", "tcp://127.0.0.1:0") as echo:
        px = start_proxy(tcp_url(echo.ep("tcp")))
        errors = []
        try:
            check_eq(px.stderr().count("event loop: uring"), 1, "the proxy's loop (stderr %r)" % px.stderr())
            ts = [threading.Thread(target=short_exchanges, args=(px.port(), EACH, errors))
                  for _ in range(THREADS)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(T(240))
        finally:
            log = px.finish()
    dropped = re.findall(r"dropped .*", log)
    check_eq((errors[:3], dropped[:3]), ([], []), "exchanges lost of %d (%d), the proxy's drops (%d)"
             % (THREADS * EACH, len(errors), len(dropped)))
    check_eq(len(re.findall(r"closed \S+ -> \S+: (\d+) bytes up, \1 down", log)), THREADS * EACH,
             "relays closed with their bytes")


if __name__ == "__main__":
    main()
