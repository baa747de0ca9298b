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


def test_idle_counts_only_what_a_member_sends():
    """-i closes a member who says nothing, although the others' lines and
    the announcements keep reaching it; a member who talks stays. (Our own
    writes used to count as activity, so a lurker in a busy room stayed
    forever.)"""
    with Server("chat", "tcp://127.0.0.1:0", tail=("-i", "1")) as srv:
        ep = srv.endpoints[0]
        lurker = connect(ep)
        read_until(lurker, b"already connected: nobody.\n")
        talker = connect(ep)
        read_until(talker, b"as <user1>.\n")
        start = time.monotonic()
        closed = False
        lurker.setblocking(False)
        # The talker speaks every 0.2 s for up to 6 s; the lurker must be
        # cut about 1 s after its last byte (here: ever), whatever the load.
        while time.monotonic() - start < 6:
            talker.sendall(b"still talking\n")
            time.sleep(0.2)
            try:
                while True:
                    d = lurker.recv(4096)
                    if not d:
                        closed = True
                        break
            except (BlockingIOError, ConnectionResetError) as e:
                if isinstance(e, ConnectionResetError):
                    closed = True
            if closed:
                break
        waited = time.monotonic() - start
        check(closed, "the silent member was never closed in %.1f s" % waited)
        check(waited >= 0.9, "closed too early: %.2f s" % waited)
        # The talker was active all along: it is still in the room.
        talker.sendall(b"anyone?\n")
        a = connect(ep)
        read_until(a, b"already connected:")
        talker.sendall(b"hello newcomer\n")
        check(b"hello newcomer" in read_until(a, b"hello newcomer\n"), "talker stayed")
        for s in (talker, a):
            s.close()


def test_listening_line_and_bad_option():
    with Server("chat", "tcp://127.0.0.1:0") as srv:
        check(srv.endpoints[0].port > 0, "listening line with the real port")
    from csocktest import csock
    rc, out, err = csock("serve", "chat", "tcp://127.0.0.1:0", "--bogus")
    check(rc == 2 and err.count("\n") == 1 and "bogus" in err, err)


if __name__ == "__main__":
    main(globals())
