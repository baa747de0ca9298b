#!/usr/bin/env python3
"""The -v log of csock serve names every client by its address: also one
that reset its connection (the address is taken at accept: the socket no
longer knows its peer after a reset), and one refused over --max-conns."""

import os
import re
import socket
import struct
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from csocktest import (BIN, Proc, Server, T, check, have, main, recv_exact,  # noqa: E402
                       wait_for)


def client(ep):
    s = socket.create_connection((ep.host, ep.port), timeout=T(10))
    return s, "tcp://127.0.0.1:%d" % s.getsockname()[1]


def test_reset_client_keeps_its_address():
    with Server("upper", "tcp://127.0.0.1:0", opts=("-v",)) as srv:
        s, name = client(srv.endpoints[0])
        s.sendall(b"hi\n")
        check(recv_exact(s, 3) == b"HI\n", "served before the reset")
        # SO_LINGER 0: close sends a RST instead of a FIN.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        wait_for(lambda: "dropped " in srv.stderr(), 10, "the reset in the -v log")
        err = srv.stderr()
        check("dropped %s: " % name in err, "the reset client named %s: %r" % (name, err))
        check("dropped ?" not in err, "no client logged as '?': %r" % err)


def test_refused_over_max_conns_is_logged():
    with Server("upper", "tcp://127.0.0.1:0", opts=("-v", "-m", "1")) as srv:
        ep = srv.endpoints[0]
        a, _ = client(ep)
        a.sendall(b"a\n")
        check(recv_exact(a, 2) == b"A\n", "the first client is served")
        b, name_b = client(ep)
        try:  # closed at once: EOF or a reset
            got = b.recv(10)
        except ConnectionResetError:
            got = b""
        check(got == b"", "the second client closed at once, got %r" % got)
        wait_for(lambda: "refused " in srv.stderr(), 10, "the refusal in the -v log")
        err = srv.stderr()
        check("refused %s: 1 connections already (-m)" % name_b in err,
              "the refused client named %s: %r" % (name_b, err))
        a.sendall(b"still\n")
        check(recv_exact(a, 6) == b"STILL\n", "the first client is still served")
        a.close()
        b.close()


def test_log_lines_whole_across_threads():
    """Two loops log at once: every -v line is still whole."""
    n_threads, n_each = 8, 100
    with Server("upper", "tcp://127.0.0.1:0", opts=("-v", "-t", "2")) as srv:
        ep = srv.endpoints[0]
        errors = []

        def hammer():
            try:
                for _ in range(n_each):
                    s, _ = client(ep)
                    s.sendall(b"x\n")
                    recv_exact(s, 2)
                    s.close()
            except Exception as e:  # reported below
                errors.append(e)
        ts = [threading.Thread(target=hammer) for _ in range(n_threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(T(60))
        check(not errors, "clients failed: %r" % errors[:3])
        want = 2 * n_threads * n_each
        # -v's first line names the backend; then a line per event.
        def events():
            return [ln for ln in srv.stderr().splitlines(keepends=True)
                    if not re.match(r"csock: event loop: \w+\n", ln)]
        wait_for(lambda: sum(ln.endswith("\n") for ln in events()) >= want, 20, "every -v line")
        line = re.compile(r"^csock: (connection from tcp://127\.0\.0\.1:\d+|"
                          r"closed tcp://127\.0\.0\.1:\d+ \(2 bytes in, 2 out\))$")
        bad = [ln for ln in (e.rstrip("\n") for e in events()) if not line.match(ln)]
        check(not bad, "%d lines not whole, e.g. %r" % (len(bad), bad[:3]))


def test_listen_tls_reset_in_handshake_keeps_address():
    """csock listen -v tls://: a client that resets before its handshake
    is named in the failure line (its address is kept from the accept)."""
    if not have("openssl"):
        print("  skipped: openssl not installed", flush=True)
        return
    import tlscerts
    d = tlscerts.tempdir()
    p = Proc([BIN, "listen", "-k", "-v", "--recv-only", "--cert", os.path.join(d, "server.pem"),
              "--key", os.path.join(d, "server.key"), "tls://127.0.0.1:0"])
    line = wait_for(lambda: [ln for ln in p.stderr().splitlines() if ln.startswith("listening ")],
                    10, "the listening line")[0]
    port = int(line.rsplit(":", 1)[1])
    silent = socket.create_connection(("127.0.0.1", port), timeout=T(10))
    name = "tcp://127.0.0.1:%d" % silent.getsockname()[1]
    # Accepts are in order: once a later client's line arrives, the silent
    # one has been accepted and sits in its handshake.
    q = Proc([BIN, "connect", "--ca", os.path.join(d, "ca.pem"), "tls://localhost:%d" % port])
    try:
        q.write(b"over tls\n")
        p.read_until(lambda out: b"over tls\n" in out, 10)
        silent.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        silent.close()
        wait_for(lambda: "handshake with" in p.stderr(), 10, "the failed handshake in the log")
        err = p.stderr()
        check("TLS handshake with %s failed" % name in err,
              "the reset client named %s: %r" % (name, err))
    finally:
        q.stop()
        p.stop()


def test_serve_close_line_counts_bytes():
    with Server("upper", "tcp://127.0.0.1:0", opts=("-v",)) as srv:
        s, name = client(srv.endpoints[0])
        s.sendall(b"hello\n")
        check(recv_exact(s, 6) == b"HELLO\n", "served")
        s.close()
        want = "closed %s (6 bytes in, 6 out)" % name
        wait_for(lambda: "closed " in srv.stderr(), 10, "the close line")
        check(want in srv.stderr(), "want %r in %r" % (want, srv.stderr()))


def test_listen_close_line_counts_bytes():
    p = Proc([BIN, "listen", "-v", "127.0.0.1", "0"])
    line = wait_for(lambda: [ln for ln in p.stderr().splitlines() if ln.startswith("listening ")],
                    10, "the listening line")[0]
    port = int(line.rsplit(":", 1)[1])
    s, name = client(type("ep", (), {"host": "127.0.0.1", "port": port}))
    try:
        s.sendall(b"hello\n")
        p.read_until(lambda out: out == b"hello\n", 10)
        p.write(b"hi\n")
        check(recv_exact(s, 3) == b"hi\n", "stdin reached the peer")
        s.close()
        check(p.wait(10) == 0, "listen exits 0 after its peer left: %r" % p.stderr())
        want = "closed %s (6 bytes in, 3 out)" % name
        check(want in p.stderr(), "want %r in %r" % (want, p.stderr()))
    finally:
        s.close()
        p.stop()


if __name__ == "__main__":
    main()
