#!/usr/bin/env python3
"""csock serve echo drains gracefully: SIGTERM during 200 slow downloads
(each client sends 2 MiB and reads the echo back slowly) lets every
download complete byte-exact, then the process exits 0 well before
--drain-timeout; a second SIGTERM exits at once.

Each client sends its whole 2 MiB (a large SO_SNDBUF) before the SIGTERM,
so every byte is a request already in flight when the drain begins. The
test raises its own RLIMIT_NOFILE; every wait is bounded."""
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time

CSOCK = os.environ.get("CSOCK_BIN", "build/csock")
NCLIENTS = 200
SIZE = 2 << 20
DRAIN_TIMEOUT = 30
from serverkit import (Server, check, clean_stderr, close_all, echo_all, open_many,  # noqa: E402,F401
                       results, run_tests, wait_for)


class Download:
    def __init__(self, s, blob2, off):
        self.s = s
        self.data = memoryview(blob2)[off:off + SIZE]  # what this client sends and expects
        self.sent = 0
        self.got = 0
        self.bad = None  # first mismatch, or an error
        self.eof = False


def test_sigterm_during_slow_downloads():
    srv = Server("--threads", "2", "--drain-timeout", str(DRAIN_TIMEOUT))
    dls = []
    try:
        blob = os.urandom(SIZE)
        blob2 = blob + blob
        socks = open_many(srv.addr, NCLIENTS, time.monotonic() + 30)
        for i, s in enumerate(socks):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            dls.append(Download(s, blob2, (i * 10007) % SIZE))
        sel = selectors.DefaultSelector()
        for d in dls:
            sel.register(d.s, selectors.EVENT_WRITE, d)
        start = time.monotonic()
        deadline = start + 90
        term_at = None
        tick, budget = 0.02, 16384  # read at most 16 KiB per client per 20 ms: ~0.8 MiB/s
        next_tick = start
        sending = len(dls)
        while time.monotonic() < deadline and not all(d.eof or d.bad for d in dls):
            for key, _ in sel.select(max(0.0, next_tick - time.monotonic())):
                d = key.data
                try:
                    n = d.s.send(d.data[d.sent:d.sent + 262144])
                except BlockingIOError:
                    continue
                except OSError as e:
                    d.bad = f"send: {e}"
                    n = 0
                d.sent += n
                if d.sent == SIZE or d.bad:
                    sel.unregister(d.s)
                    sending -= 1
            now = time.monotonic()
            if now < next_tick:
                continue
            next_tick = now + tick
            for d in dls:
                if d.eof or d.bad:
                    continue
                try:
                    chunk = d.s.recv(budget)
                except BlockingIOError:
                    continue
                except OSError as e:
                    d.bad = f"recv after {d.got} bytes: {e}"
                    continue
                if not chunk:
                    d.eof = True
                    if d.got != SIZE:
                        d.bad = f"EOF after {d.got} of {SIZE} bytes"
                    continue
                if d.got + len(chunk) > SIZE or chunk != d.data[d.got:d.got + len(chunk)]:
                    d.bad = f"wrong bytes at {d.got}"
                d.got += len(chunk)
            if term_at is None and sending == 0 and now - start >= 1.0:
                got = sum(d.got for d in dls)
                check("SIGTERM arrives mid-way", got < NCLIENTS * SIZE * 0.8,
                      f"{got / (NCLIENTS * SIZE):.0%} read back, all sent, at {now - start:.1f} s")
                srv.p.send_signal(signal.SIGTERM)
                term_at = now
        sel.close()
        check("SIGTERM was sent", term_at is not None, f"{sending} still sending")
        bad = [d.bad for d in dls if d.bad]
        done = sum(1 for d in dls if d.eof and not d.bad)
        check(f"all {NCLIENTS} downloads complete byte-exact, then EOF", done == NCLIENTS,
              f"{done} ok; first problems: {bad[:3]}")
        if term_at is not None:
            finished = time.monotonic() - term_at
            try:
                rc = srv.p.wait(max(0.1, term_at + DRAIN_TIMEOUT + 5 - time.monotonic()))
            except subprocess.TimeoutExpired:
                rc = None
            took = time.monotonic() - term_at
            print(f"downloads finished {finished:.1f} s after SIGTERM; "
                  f"process exited {took:.1f} s after it", flush=True)
            check("exit status 0", rc == 0, f"rc={rc}")
            check(f"exited before the drain timeout ({DRAIN_TIMEOUT} s)", took < DRAIN_TIMEOUT,
                  f"{took:.1f} s")
        clean_stderr(srv)
    finally:
        for d in dls:
            d.s.close()
        srv.kill()


def test_second_sigterm():
    srv = Server("--threads", "2", "--drain-timeout", str(DRAIN_TIMEOUT))
    socks = []
    try:
        stuck = socket.create_connection(srv.addr, timeout=10)
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        stuck.sendall(os.urandom(4 << 20))  # never read: the drain cannot finish
        socks = [stuck] + open_many(srv.addr, 20, time.monotonic() + 10)
        time.sleep(0.3)
        srv.p.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        check("still draining after the first SIGTERM", srv.p.poll() is None)
        # The idle clients were closed at once by the drain.
        idle_eof = 0
        for s in socks[1:]:
            s.setblocking(True)
            s.settimeout(2)
            try:
                idle_eof += s.recv(1) == b""
            except OSError:
                pass
        check("idle clients closed by the drain", idle_eof == 20, f"{idle_eof}/20")
        t0 = time.monotonic()
        srv.p.send_signal(signal.SIGTERM)
        try:
            rc = srv.p.wait(5)
        except subprocess.TimeoutExpired:
            rc = None
        took = time.monotonic() - t0
        check("a second SIGTERM exits at once", rc is not None and took < 2.0,
              f"rc={rc} after {took:.2f} s")
        clean_stderr(srv)
    finally:
        close_all(socks)
        srv.kill()


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return run_tests([test_sigterm_during_slow_downloads, test_second_sigterm])


if __name__ == "__main__":
    sys.exit(main())
