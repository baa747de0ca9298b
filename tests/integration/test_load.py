#!/usr/bin/env python3
"""Load: 200 concurrent clients x 1,000 lines through serve upper; 64 MiB
into serve echo from a client that does not read (backpressure keeps the
server's RSS bounded, then every byte comes back); peers that reset
mid-stream do not disturb the clients being served beside them."""

import os
import random
import selectors
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from csocktest import (SANITIZED, Server, T, check, check_eq, main, nfds,  # noqa: E402
                       rss_kib, stream_exchange, tmpdir, wait_for)

NCLIENTS = 200
NLINES = 1000


def test_200_clients_1000_lines():
    """All clients connected at once, each pipelining its 1,000 lines; one
    selector thread drives them all. Every answer must be exact and in
    order."""
    with Server("upper", "tcp://127.0.0.1:0") as srv:
        e = srv.endpoints[0]
        sel = selectors.DefaultSelector()
        clients = []
        t0 = time.monotonic()
        for i in range(NCLIENTS):
            s = socket.create_connection(e.sockaddr, timeout=T(10))
            s.setblocking(False)
            out = b"".join(b"client %03d line %04d: the quick brown fox\n" % (i, j)
                           for j in range(NLINES))
            c = {"s": s, "out": out, "sent": 0, "want": out.upper(), "got": bytearray(), "i": i}
            clients.append(c)
            sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
        t_conn = time.monotonic() - t0
        deadline = time.monotonic() + T(120)
        pending = NCLIENTS
        try:
            while pending:
                check(time.monotonic() < deadline,
                      "timed out: %d clients unfinished" % pending)
                for key, ev in sel.select(1.0):
                    c, s = key.data, key.fileobj
                    if ev & selectors.EVENT_WRITE and c["sent"] < len(c["out"]):
                        try:
                            c["sent"] += s.send(c["out"][c["sent"]:c["sent"] + 65536])
                        except BlockingIOError:
                            pass
                        if c["sent"] == len(c["out"]):
                            sel.modify(s, selectors.EVENT_READ, c)
                    if ev & selectors.EVENT_READ:
                        try:
                            chunk = s.recv(65536)
                        except BlockingIOError:
                            continue
                        check(chunk != b"", "client %d: server closed after %d bytes"
                              % (c["i"], len(c["got"])))
                        c["got"] += chunk
                        n = len(c["got"])
                        check(c["got"] == c["want"][:n],
                              "client %d: wrong answer near byte %d" % (c["i"], n))
                        if n == len(c["want"]):
                            sel.unregister(s)
                            pending -= 1
        finally:
            sel.close()
            for c in clients:
                c["s"].close()
        took = time.monotonic() - t0
        print("  200 clients x 1000 lines: connect %.2fs, all answers %.2fs (%d lines/s)"
              % (t_conn, took, NCLIENTS * NLINES / took))
        check_eq(stream_exchange(e, b"after load\n"), b"AFTER LOAD\n", "served after load")


def test_backpressure_64mib_rss_bounded():
    """A client sends 64 MiB to echo without reading. The server must stop
    reading from it (its write queue passes the high-water mark) instead of
    buffering: RSS growth stays under 32 MiB. Then the client reads and gets
    all 64 MiB back byte-exact."""
    total = 64 << 20
    bound_kib = 32 << 10
    data = random.Random(64).randbytes(total)
    with Server("echo", "tcp://127.0.0.1:0") as srv:
        e = srv.endpoints[0]
        # Baseline after one small exchange, so lazily-made pools exist.
        check_eq(stream_exchange(e, b"warm up"), b"warm up", "warm-up")
        base = rss_kib(srv.pid)
        s = socket.create_connection(e.sockaddr, timeout=T(60))
        progress = {"sent": 0, "err": None}

        def sender():
            try:
                view = memoryview(data)
                while progress["sent"] < total:
                    progress["sent"] += s.send(view[progress["sent"]:progress["sent"] + (256 << 10)])
            except Exception as ex:   # reported below
                progress["err"] = ex

        st = threading.Thread(target=sender, daemon=True)
        t0 = time.monotonic()
        st.start()
        # Phase 1: nobody reads. Sample RSS until the sender has made no
        # progress for a while (it is blocked: backpressure reached us) or
        # it finished (the server swallowed everything: RSS will show it).
        peak = base
        last, last_change = -1, time.monotonic()
        stall = T(1.5)
        deadline = time.monotonic() + T(60)
        while st.is_alive():
            peak = max(peak, rss_kib(srv.pid))
            if progress["sent"] != last:
                last, last_change = progress["sent"], time.monotonic()
            elif time.monotonic() - last_change > stall:
                break
            check(time.monotonic() < deadline, "phase 1 did not settle")
            time.sleep(0.05)
        stalled_at = progress["sent"]
        peak_unread = peak
        # Phase 2: read everything back, comparing as we go; keep sampling.
        got = 0
        mismatch = None
        sample_at = time.monotonic()
        s.settimeout(T(60))
        while got < total:
            chunk = s.recv(1 << 20)
            check(chunk != b"", "server closed after %d of %d bytes" % (got, total))
            if mismatch is None and chunk != data[got:got + len(chunk)]:
                mismatch = got
            got += len(chunk)
            if time.monotonic() - sample_at > 0.05:
                peak = max(peak, rss_kib(srv.pid))
                sample_at = time.monotonic()
        st.join(T(30))
        s.close()
        took = time.monotonic() - t0
        check(progress["err"] is None, "sender failed: %r" % progress["err"])
        check(mismatch is None, "echoed data differs at byte %s" % mismatch)
        check_eq(got, total, "bytes echoed")
        growth = peak - base
        print("  64 MiB unread: sender blocked after %.1f MiB; server RSS base %d KiB, "
              "peak while unread %d KiB (+%d KiB), peak overall %d KiB (+%d KiB); "
              "round trip %.2fs"
              % (stalled_at / 2**20, base, peak_unread, peak_unread - base, peak, growth, took))
        check(stalled_at < total, "the sender never blocked: the server read all 64 MiB "
              "without the client reading (no backpressure)")
        if not SANITIZED:   # ASan's quarantine and shadow memory skew RSS
            check(growth < bound_kib, "server RSS grew by %d KiB (bound %d KiB)"
                  % (growth, bound_kib))


def test_reset_mid_stream_does_not_disturb_others():
    """Good clients stream 4 MiB each through echo (TCP and Unix) while 100
    bad peers connect, send without reading and reset (SO_LINGER 0) while
    the server still has data queued for them. Every good client gets its
    bytes back exactly; the server's fds come back down."""
    d = tmpdir()
    with Server("echo", "tcp://127.0.0.1:0", "unix:" + os.path.join(d, "s")) as srv:
        # Baseline once the loop runs (its signal fds exist only by then).
        check_eq(stream_exchange(srv.endpoints[0], b"warm"), b"warm", "warm-up")
        base_fds = nfds(srv.pid)
        errors = []
        size = 4 << 20

        def good(ep, seed):
            try:
                data = random.Random(seed).randbytes(size)
                s = ep.socket(timeout=60)
                w = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)),
                                     daemon=True)
                w.start()
                got = bytearray()
                while True:
                    chunk = s.recv(1 << 20)
                    if not chunk:
                        break
                    got += chunk
                w.join(T(30))
                s.close()
                if bytes(got) != data:
                    errors.append("good client %d: got %d bytes, differs" % (seed, len(got)))
            except Exception as ex:
                errors.append("good client %d: %r" % (seed, ex))

        goods = [threading.Thread(target=good, args=(srv.endpoints[i % 2], i), daemon=True)
                 for i in range(4)]
        for t in goods:
            t.start()
        linger0 = struct.pack("ii", 1, 0)
        blob = os.urandom(256 << 10)
        for i in range(100):
            ep = srv.endpoints[0]
            s = ep.socket(timeout=10)
            s.setblocking(False)
            try:
                s.send(blob)           # as much as fits; never read the echo
            except BlockingIOError:
                pass
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger0)
            s.close()                  # RST
        for t in goods:
            t.join(T(120))
        check(not any(t.is_alive() for t in goods), "good clients did not finish")
        check(not errors, "; ".join(errors))
        check_eq(stream_exchange(srv.endpoints[0], b"alive"), b"alive", "served after resets")
        wait_for(lambda: nfds(srv.pid) <= base_fds, 10,
                 "server fds to drop back to %d (now %d)" % (base_fds, nfds(srv.pid)))


def test_reset_during_upper_lines():
    """Upper with partial lines in flight when the peer resets."""
    with Server("upper", "tcp://127.0.0.1:0") as srv:
        e = srv.endpoints[0]
        keep = e.socket()
        linger0 = struct.pack("ii", 1, 0)
        for i in range(200):
            s = e.socket()
            s.sendall(b"line one\nline two\npartial" * (i % 5 + 1))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger0)
            s.close()
            if i % 50 == 0:
                keep.sendall(b"tick %d\n" % i)
                want = b"TICK %d\n" % i
                got = b""
                while len(got) < len(want):
                    chunk = keep.recv(100)
                    check(chunk != b"", "kept client closed")
                    got += chunk
                check_eq(got, want, "kept client's answer")
        keep.close()


if __name__ == "__main__":
    main()
