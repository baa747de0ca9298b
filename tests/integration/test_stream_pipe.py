#!/usr/bin/env python3
"""Big transfers through csock connect into a slow pipe (issue 10, item 1).

`csock connect` to `csock serve echo` with 20 MB on stdin and its stdout a
pipe that a slow reader drains: everything must come back intact, in
bounded time, on every backend. It used to stop after a few hundred KiB
and hang: once stdout congested, the relay stopped reading the server, the
server stopped reading us (its own backpressure), our queue to it passed
the stream's high watermark, and the stream paused reading the server by
itself, so resuming stdout could never restart the flow."""

import hashlib
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from csocktest import BIN, Server, T, check, check_clean, check_eq, main, spawn, tmpdir  # noqa: E402

SIZE = 20 * 1000 * 1000


def _payload():
    path = os.path.join(tmpdir(), "in.bin")
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = SIZE
        while left:
            block = os.urandom(min(left, 1 << 20))
            h.update(block)
            f.write(block)
            left -= len(block)
    return path, h.hexdigest()


def _slow_reader(pipe, result):
    """Let the pipe fill first (that congests csock's stdout), then read it
    in small bites with a pause between them, hashing as it goes."""
    h = hashlib.sha256()
    n = 0
    time.sleep(0.5)
    while True:
        chunk = pipe.read(16384)
        if not chunk:
            break
        h.update(chunk)
        n += len(chunk)
        if n % (1 << 20) < 16384:
            time.sleep(0.02)  # slower than the socket, every MiB
    result["n"], result["sha"] = n, h.hexdigest()


def _through_slow_pipe(backend, path, want):
    os.environ["CSOCK_BACKEND"] = backend
    with Server("echo", "tcp://127.0.0.1:0") as srv:
        ep = srv.endpoints[0]
        with open(path, "rb") as stdin:
            p = spawn([BIN, "connect", ep.host, str(ep.port)], stdin=stdin,
                      stderr=subprocess.PIPE)
        result = {}
        t = threading.Thread(target=_slow_reader, args=(p.stdout, result), daemon=True)
        t.start()
        t.join(T(60))
        if t.is_alive():
            p.kill()
            t.join(10)
            check(False, "%s: the transfer hung after %s of %d bytes"
                  % (backend, result.get("n", "some"), SIZE))
        rc = p.wait(T(20))
        err = p.stderr.read().decode("utf-8", "replace")
        check_clean(err, "csock connect")
        check_eq(result["n"], SIZE, "%s: bytes through the pipe" % backend)
        check_eq(result["sha"], want, "%s: sha256 of what came back" % backend)
        check_eq(rc, 0, "%s: csock connect exit status (stderr %r)" % (backend, err[-500:]))


def test_big_echo_into_slow_pipe():
    path, want = _payload()
    saved = os.environ.get("CSOCK_BACKEND")
    try:
        for backend in ("epoll", "poll", "uring"):
            _through_slow_pipe(backend, path, want)
    finally:
        if saved is None:
            os.environ.pop("CSOCK_BACKEND", None)
        else:
            os.environ["CSOCK_BACKEND"] = saved


if __name__ == "__main__":
    main()
