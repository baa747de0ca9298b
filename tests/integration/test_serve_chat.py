#!/usr/bin/env python3
"""csock serve chat: the chat room service (ncat --chat's protocol) - each
line goes to every other client tagged <userN>, joins and leaves are
announced, a client never gets its own line back, and a client that leaves
mid-line does not disturb the others."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from csocktest import Server, check, main, recv_exact  # noqa: E402,F401


def read_until(s, needle, timeout=10):
    s.settimeout(timeout)
    buf = b""
    end = time.monotonic() + timeout
    while needle not in buf:
        if time.monotonic() > end:
            raise AssertionError("did not see %r in %r" % (needle, buf))
        d = s.recv(4096)
        if not d:
            raise AssertionError("closed before %r; got %r" % (needle, buf))
        buf += d
    return buf


def connect(ep):
    return ep.socket()


def test_chat_room():
    with Server("chat", "tcp://127.0.0.1:0") as srv:
        ep = srv.endpoints[0]
        a = connect(ep)
        got = read_until(a, b"already connected: nobody.\n")
        check(b"<announce> 127.0.0.1 is connected as <user1>." in got, got)
        b = connect(ep)
        got_b = read_until(b, b"as <user1>.\n")
        check(b"is connected as <user2>." in got_b, got_b)
        read_until(a, b"is connected as <user2>.\n")
        a.sendall(b"hello from a\n")
        check(b"<user1> hello from a\n" in read_until(b, b"hello from a\n"), "tagged")
        b.sendall(b"hi from b\n")
        check(b"<user2> hi from b\n" in read_until(a, b"hi from b\n"), "tagged back")
        c = connect(ep)
        read_until(c, b"already connected:")
        c.sendall(b"partial line without end")  # then leaves
        c.close()
        read_until(a, b"<user3> is disconnected.\n")
        a.sendall(b"still here\n")
        check(b"<user1> still here\n" in read_until(b, b"still here\n"), "room survives a leaver")
        a.close()
        b.close()


def test_listening_line_and_bad_option():
    with Server("chat", "tcp://127.0.0.1:0") as srv:
        check(srv.endpoints[0].port > 0, "listening line with the real port")
    from csocktest import csock
    rc, out, err = csock("serve", "chat", "tcp://127.0.0.1:0", "--bogus")
    check(rc == 2 and err.count("\n") == 1 and "bogus" in err, err)


if __name__ == "__main__":
    main(globals())
