#!/usr/bin/env python3
"""csock listen --proxy-type socks5|http relays a tunnel between two plain
TCP sockets with splice(2), on every backend (io_uring, the default, too:
the sockets leave their streams by csock_stream_detach, which waits for a
recv in flight): 64 MiB each way arrive intact (sha256) across a
half-close, and the -v log shows the splice relay carried them (so a silent
fall-back to the stream relay fails here). Bytes a client sends with its
request, and a stream of them before it has read the answer, arrive first
and exactly once. -m counts tunnels, spliced ones too. SIGTERM with a
tunnel open exits 0."""
import hashlib
import os
import random
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import csocktest as ct  # noqa: E402
import test_nc_proxy as tp  # noqa: E402
import test_nc_proxy_server as tps  # noqa: E402

BIG = 64 << 20


def data(n, seed):
    return random.Random(seed).randbytes(n)


def sink_port(reply):
    """A target that reads to EOF, then answers the sha256 of what it got
    followed by `reply`, and closes."""
    def handler(c):
        with c:
            h = hashlib.sha256()
            while True:
                d = c.recv(1 << 20)
                if not d:
                    break
                h.update(d)
            c.sendall(h.digest() + reply)
    s = tp._listen()
    tp._serve(s, handler)
    return s.getsockname()[1]


def open_tunnel(kind, port, target, early=b""):
    """A client socket through the proxy to 127.0.0.1:target, the answer
    read; `early` goes out with the request, before the answer."""
    c = socket.create_connection(("127.0.0.1", port), timeout=ct.T(30))
    if kind == "socks5":
        c.sendall(b"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01" + target.to_bytes(2, "big") + early)
        head = ct.recv_exact(c, 12)
        ct.check(head[:6] == b"\x05\x00\x05\x00\x00\x01", "the SOCKS5 answers: %r" % head)
    else:
        c.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (target, target)
                  + early)
        ok = b"HTTP/1.1 200 Connection established\r\n\r\n"
        ct.check_eq(ct.recv_exact(c, len(ok)), ok, "the CONNECT answer")
    return c


def test_big_both_ways_by_splice():
    up, down = data(BIG, 1), data(BIG, 2)
    target = sink_port(down)
    for kind in ("socks5", "http"):
        p, port = tps.proxy_server("-v", "--proxy-type", kind)
        with open_tunnel(kind, port, target) as c:
            c.sendall(up)
            c.shutdown(socket.SHUT_WR)  # the target answers only after our EOF
            got = ct.recv_all(c)
        ct.check_eq(got[:32], hashlib.sha256(up).digest(), "%s: the sha256 of %d bytes up" % (kind, BIG))
        ct.check(got[32:] == down, "%s: %d bytes down, want %d (sha256 %s)"
                 % (kind, len(got) - 32, BIG, hashlib.sha256(got[32:]).hexdigest()))
        log = tps.stop(p)
        where = "127.0.0.1:%d" % target
        ct.check("tunnel to %s open (splice)\n" % where in log, "%s: not spliced: %r" % (kind, log))
        ct.check("tunnel to %s closed: %d bytes up, %d down" % (where, BIG, BIG + 32) in log,
                 "%s: the splice relay's counts: %r" % (kind, log))


def test_early_bytes_go_first_by_splice():
    """Bytes sent with the request wait in the client's stream: the splice
    relay gets them with the socket and sends them before the rest."""
    early, rest = b"sent-with-the-request|", data(300000, 3)
    target = sink_port(b"answer")
    for kind in ("socks5", "http"):
        p, port = tps.proxy_server("-v", "--proxy-type", kind)
        with open_tunnel(kind, port, target, early) as c:
            c.sendall(rest)
            c.shutdown(socket.SHUT_WR)
            got = ct.recv_all(c)
        ct.check_eq(got, hashlib.sha256(early + rest).digest() + b"answer", "%s: both ways" % kind)
        log = tps.stop(p)
        n = len(early) + len(rest)
        ct.check("tunnel to 127.0.0.1:%d open (splice)\n" % target in log,
                 "%s: not spliced: %r" % (kind, log))
        ct.check("closed: %d bytes up, %d down" % (n, 32 + 6) in log, "%s: the counts: %r" % (kind, log))


def request(kind, target):
    if kind == "socks5":
        return b"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01" + target.to_bytes(2, "big")
    return b"CONNECT 127.0.0.1:%d HTTP/1.1\r\n\r\n" % target


def test_a_stream_of_bytes_before_the_answer():
    """The client writes 8 MiB right after its request, without waiting for
    the answer, while the proxy connects and hands the sockets over: the
    hand-over must neither lose nor repeat a byte (whatever the client's
    stream had read, or was reading, when its socket left it). Repeated:
    where the cut falls varies."""
    up = data(8 << 20, 4)
    target = sink_port(b"end")
    for kind in ("socks5", "http"):
        p, port = tps.proxy_server("-v", "--proxy-type", kind)
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port), timeout=ct.T(30)) as c:
                def send():
                    try:
                        c.sendall(request(kind, target) + up)
                        c.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass  # the proxy refused: the check below says so
                t = threading.Thread(target=send)
                t.start()
                got = ct.recv_all(c)
                t.join()
            head = 12 if kind == "socks5" else len(b"HTTP/1.1 200 Connection established\r\n\r\n")
            ct.check_eq(got[head:], hashlib.sha256(up).digest() + b"end", "%s: 8 MiB up" % kind)
        log = tps.stop(p)
        ct.check(log.count("open (splice)\n") == 3, "%s: not spliced: %r" % (kind, log))


def test_max_conns_counts_spliced_tunnels():
    """A spliced tunnel holds no stream of the listener's: -m 1 still
    refuses a second client while it is open, and takes one after."""
    target = sink_port(b"done")
    p, port = tps.proxy_server("-v", "-m", "1", "--proxy-type", "socks5")
    first = open_tunnel("socks5", port, target)
    with socket.create_connection(("127.0.0.1", port), timeout=ct.T(10)) as c:
        try:
            c.sendall(b"\x05\x01\x00")
            got = c.recv(16)
        except ConnectionResetError:
            got = b""
        ct.check_eq(got, b"", "a second client under -m 1")
    with first:
        first.shutdown(socket.SHUT_WR)
        ct.check_eq(ct.recv_all(first), hashlib.sha256(b"").digest() + b"done", "the first tunnel")

    def third():
        try:
            with open_tunnel("socks5", port, target) as c:
                c.shutdown(socket.SHUT_WR)
                return ct.recv_all(c)[32:] == b"done"
        except (OSError, ct.TestFailure):
            return False  # the first tunnel's end not seen yet
    ct.wait_for(third, 20, "a client once the first tunnel ended")
    log = tps.stop(p)
    ct.check("refused: 1 clients already (-m)" in log, "the refusal logged: %r" % log)


def test_sigterm_with_a_spliced_tunnel_open():
    target = sink_port(b"")
    p, port = tps.proxy_server("-v", "--proxy-type", "http")
    with open_tunnel("http", port, target) as c:
        c.sendall(b"x" * 100000)
        log = tps.stop(p)
        ct.check("open (splice)\n" in log, "spliced: %r" % log)
        ct.check("dropped: " in log, "the tunnel's end logged: %r" % log)
        c.settimeout(ct.T(10))
        try:
            ct.check_eq(ct.recv_all(c), b"", "the client after the proxy's exit")
        except ConnectionResetError:
            pass


if __name__ == "__main__":
    ct.main()
