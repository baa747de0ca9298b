#!/usr/bin/env python3
"""csock serve upper (a framed, line-based service) and clients that reset
(issue 10, item 2). A line reader must hear about a reset, or the server
keeps the connection's fd forever: 50 resets used to cost 50 fds, and with
-m 5 five resets locked every later client out. And a valid line that
arrives with an oversized one (item 14) is answered before the connection
is dropped."""

import os
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from csocktest import (Server, check, check_eq, main, nfds, recv_all, recv_exact,  # noqa: E402
                       wait_for)


def _reset_client(ep, line=b"half a line"):
    """Connect, leave an unfinished line, close with RST (SO_LINGER 0)."""
    s = ep.socket()
    s.sendall(line)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def _served(ep):
    with ep.socket() as s:
        s.sendall(b"hello\n")
        return recv_exact(s, 6)


def test_resets_leak_no_fds():
    with Server("upper", "tcp://127.0.0.1:0", opts=["-t", "1"]) as srv:
        ep = srv.endpoints[0]
        check_eq(_served(ep), b"HELLO\n", "a first reply")
        base = nfds(srv.pid)
        for _ in range(50):
            _reset_client(ep)
        check_eq(_served(ep), b"HELLO\n", "a reply after 50 resets")
        # Each reset is seen when its RST arrives; give the server a moment
        # to close them all (bounded), then the fd count is back to base.
        wait_for(lambda: nfds(srv.pid) <= base + 1, 10,
                 "the server to close 50 reset connections (fds %d, at start %d)"
                 % (nfds(srv.pid), base))


def test_max_conns_survives_resets():
    srv = Server("upper", "tcp://127.0.0.1:0", opts=["-t", "1", "-m", "5", "-v"])
    try:
        ep = srv.endpoints[0]
        for _ in range(5):
            _reset_client(ep)

        # The slots come back as the resets are seen: a good client is then
        # served (retried while the last RSTs are still on their way; a
        # refused one is closed at once).
        def good():
            try:
                return _served(ep) == b"HELLO\n"
            except Exception:
                return False
        wait_for(good, 10, "a client to be served after 5 resets with -m 5")
        err = srv.finish()
        check(err.count("dropped") >= 5, "-v logs the dropped connections: %r" % err[-1500:])
    finally:
        srv.kill()


def test_valid_line_answered_before_oversized_one():
    with Server("upper", "tcp://127.0.0.1:0", opts=["-t", "1", "--max-line", "16"]) as srv:
        with srv.endpoints[0].socket() as s:
            s.sendall(b"hi\n" + b"x" * 100 + b"\n")  # one segment: one read
            try:
                got = recv_all(s)
            except ConnectionResetError:
                got = b"(reset before any reply)"
        check_eq(got, b"HI\n", "the reply to the valid line")


if __name__ == "__main__":
    main()
