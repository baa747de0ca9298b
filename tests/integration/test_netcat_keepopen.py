#!/usr/bin/env python3
"""csock listen -k / --broker / --chat / -m / --allow / --deny at scale and
under abuse: 500 TCP clients, 100 UDP peers, slow readers, peers that reset
mid-transfer. Prints "N passed, M failed"."""
import os
import re
import socket
import struct
import threading
import time

from test_netcat_basic import (SLOW, connect, csock, listen, main, quiet_read, recv_all,
                               recv_until, test, tmpdir)


def line_for(i, k):
    return b"client-%03d-line-%d-" % (i, k) + bytes([65 + (i + k) % 26]) * 80 + b"\n"


@test
def keep_open_500_tcp_clients():
    n = 500
    p, port = listen("-k", "-v", "127.0.0.1", 0)
    socks = [connect(port) for _ in range(n)]
    p.wait_for("500 accepts", lambda: p.stderr().count("connection from") >= n, 60)
    p.send(b"hello everyone\n")
    for s in socks:
        assert recv_until(s, b"\n", 20) == b"hello everyone\n"
    for i, s in enumerate(socks):
        s.sendall(b"".join(line_for(i, k) for k in range(3)))
    for s in socks:
        s.close()
    p.wait_for("500 closes", lambda: p.stderr().count("closed") >= n, 60)
    lines = p.stdout().split(b"\n")[:-1]
    assert len(lines) == 3 * n, len(lines)
    want = {line_for(i, k)[:-1] for i in range(n) for k in range(3)}
    assert set(lines) == want, "lost or mixed lines"
    # and per client in order
    for i in range(n):
        mine = [l for l in lines if l.startswith(b"client-%03d-" % i)]
        assert mine == [line_for(i, k)[:-1] for k in range(3)], mine
    assert p.p.poll() is None


@test
def keep_open_100_udp_peers():
    n = 100
    p, port = listen("-k", "-u", "127.0.0.1", 0)
    peers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
    for i, u in enumerate(peers):
        u.bind(("127.0.0.1", 0))
        for k in range(3):
            u.sendto(line_for(i, k), ("127.0.0.1", port))
        if i % 10 == 9:
            # loopback UDP drops what the receiver's buffer cannot hold: pace
            p.wait_for("peer %d" % i, lambda i=i: line_for(i, 2) in p.stdout(), 20)
    p.wait_for("all datagrams", lambda: p.stdout().count(b"\n") >= 3 * n, 20)
    lines = p.stdout().split(b"\n")[:-1]
    assert sorted(lines) == sorted(line_for(i, k)[:-1] for i in range(n) for k in range(3))
    p.send(b"to every peer\n")
    for u in peers:
        u.settimeout(10 * SLOW)
        assert u.recv(100) == b"to every peer\n"


@test
def keep_open_unix_socket():
    d = tmpdir()
    path = os.path.join(d, "k.sock")
    p = csock("listen", "-k", "-v", "-U", path)
    p.wait_stderr("listening unix:")
    for i in range(5):
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.sendall(b"unix %d\n" % i)
        s.close()
    p.wait_for("5 lines", lambda: p.stdout().count(b"\n") == 5)
    assert sorted(p.stdout().split(b"\n")[:-1]) == [b"unix %d" % i for i in range(5)]


@test
def keep_open_unixgram_peers():
    d = tmpdir()
    path = os.path.join(d, "g.sock")
    p = csock("listen", "-k", "-v", "-u", "-U", path)
    p.wait_stderr("listening unixgram:")
    peers = []
    for i in range(3):
        u = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        u.bind(os.path.join(d, "c%d" % i))
        u.sendto(b"gram %d\n" % i, path)
        peers.append(u)
    p.wait_for("3 lines", lambda: p.stdout().count(b"\n") == 3)
    p.send(b"back\n")
    for u in peers:
        u.settimeout(5 * SLOW)
        assert u.recv(100) == b"back\n"


@test
def slow_reader_gets_everything_nothing_dropped():
    # stdin -> two clients, one reads late: backpressure holds stdin back
    # instead of dropping or buffering without bound.
    p, port = listen("-k", "-v", "127.0.0.1", 0)
    fast, slow = connect(port), connect(port)
    p.wait_for("2 accepts", lambda: p.stderr().count("connection from") >= 2)
    blob = os.urandom(4 * 1024 * 1024)
    got = {}

    def reader(name, s, delay):
        time.sleep(delay)
        data = b""
        s.settimeout(60 * SLOW)
        while len(data) < len(blob):
            d = s.recv(1 << 20)
            if not d:
                break
            data += d
        got[name] = data

    ts = [threading.Thread(target=reader, args=("fast", fast, 0)),
          threading.Thread(target=reader, args=("slow", slow, 1.0))]
    for t in ts:
        t.start()
    p.send(blob)
    for t in ts:
        t.join(90)
    assert got.get("fast") == blob and got.get("slow") == blob


def reset(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


@test
def peer_reset_mid_transfer_keeps_listener():
    p, port = listen("-k", "-v", "127.0.0.1", 0)
    a = connect(port)
    a.sendall(os.urandom(200000))
    reset(a)
    b = connect(port)  # a reader that resets while stdin pours into it
    p.wait_for("2 accepts", lambda: p.stderr().count("connection from") >= 2)
    p.send(os.urandom(1 << 20))
    b.recv(1000)
    reset(b)
    p.wait_for("a and b closed", lambda: p.stderr().count("csock: closed") >= 2)
    c = connect(port)
    c.sendall(b"still serving\n")
    p.wait_stdout(b"still serving\n")
    assert p.p.poll() is None
    # exec listener too
    q, port = listen("-k", "-v", "-c", "cat", "127.0.0.1", 0)
    a = connect(port)
    a.sendall(os.urandom(300000))
    reset(a)
    b = connect(port)
    b.sendall(b"echo me\n")
    assert recv_until(b, b"echo me\n") == b"echo me\n"
    assert q.p.poll() is None


@test
def max_conns_refuses_extra_peers():
    p, port = listen("-k", "-v", "-m", "2", "127.0.0.1", 0)
    a, b = connect(port), connect(port)
    p.wait_for("2 accepts", lambda: p.stderr().count("connection from") >= 2)
    c = connect(port)
    assert recv_all(c, 5) == b""  # closed at once
    p.wait_stderr(r"refused tcp://127\.0\.0\.1:\d+: 2 connections already")
    a.close()
    p.wait_stderr(r"closed")
    d = connect(port)
    d.sendall(b"fits again\n")
    p.wait_stdout(b"fits again\n")
    # UDP: a third sender is not a peer
    q, port = listen("-k", "-u", "-m", "2", "127.0.0.1", 0)
    us = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    for i, u in enumerate(us):
        u.sendto(b"u%d\n" % i, ("127.0.0.1", port))
        if i < 2:
            q.wait_stdout(b"u%d\n" % i)
    q.send(b"all\n")
    for u in us[:2]:
        u.settimeout(5 * SLOW)
        assert u.recv(10) == b"all\n"
    assert quiet_read(us[2]) == b""
    assert b"u2" not in q.stdout()


def from_source(port, src, host="127.0.0.1", family=socket.AF_INET):
    s = socket.socket(family)
    s.bind((src, 0))
    s.settimeout(5 * SLOW)
    s.connect((host, port))
    return s


@test
def allow_and_deny_cidr_ipv4():
    p, port = listen("-k", "-v", "--allow", "127.0.0.2,127.0.1.0/24", "127.0.0.1", 0)
    denied = from_source(port, "127.0.0.1")
    got = recv_all(denied)
    assert got == b"", got
    p.wait_stderr(r"denied tcp://127\.0\.0\.1:\d+")
    for src in ("127.0.0.2", "127.0.1.77"):
        s = from_source(port, src)
        s.sendall(b"from %s\n" % src.encode())
        p.wait_stdout(b"from %s\n" % src.encode())
    q, port = listen("-k", "-v", "--deny", "127.0.0.0/30", "--deny", "127.0.0.9", "127.0.0.1", 0)
    for src in ("127.0.0.1", "127.0.0.3", "127.0.0.9"):
        got = recv_all(from_source(port, src))
        assert got == b"", (src, got)
        # The close may reach us before the log line is written: wait for it.
        q.wait_stderr(r"denied tcp://%s:\d+" % re.escape(src))
    s = from_source(port, "127.0.0.4")
    s.sendall(b"ok\n")
    q.wait_stdout(b"ok\n")
    assert q.stderr().count("denied") == 3, q.stderr()


@test
def allow_and_deny_ipv6_and_files():
    p, port = listen("-k", "-v", "-6", "--deny", "::1/128", "::1", 0)
    s = from_source(port, "::1", "::1", socket.AF_INET6)
    assert recv_all(s) == b""
    p.wait_stderr("denied")
    q, port = listen("-k", "-v", "-6", "--allow", "[::1]/127", "::1", 0)
    s = from_source(port, "::1", "::1", socket.AF_INET6)
    s.sendall(b"six\n")
    q.wait_stdout(b"six\n")
    d = tmpdir()
    allowf = os.path.join(d, "allow")
    with open(allowf, "w") as f:
        f.write("# who may come\n127.0.0.5   # one host\n\n127.0.2.0/24\n")
    denyf = os.path.join(d, "deny")
    with open(denyf, "w") as f:
        f.write("127.0.2.9\n")
    r, port = listen("-k", "-v", "--allowfile", allowf, "--denyfile", denyf, "127.0.0.1", 0)
    for src, ok in (("127.0.0.1", False), ("127.0.0.5", True), ("127.0.2.8", True), ("127.0.2.9", False)):
        s = from_source(port, src)
        if ok:
            s.sendall(b"in %s\n" % src.encode())
            r.wait_stdout(b"in %s\n" % src.encode())
        else:
            assert recv_all(s) == b"", src
    # UDP: a denied sender's datagrams are dropped
    u, port = listen("-k", "-u", "-v", "--deny", "127.0.0.1", "127.0.0.1", 0)
    bad = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    bad.bind(("127.0.0.1", 0))
    bad.sendto(b"bad\n", ("127.0.0.1", port))
    good = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    good.bind(("127.0.0.6", 0))
    good.sendto(b"good\n", ("127.0.0.1", port))
    u.wait_stdout(b"good\n")
    u.wait_stderr("denied udp://127.0.0.1")
    assert b"bad" not in u.stdout()


@test
def broker_relays_between_clients_only():
    p, port = listen("--broker", "-v", "127.0.0.1", 0)
    cs = [connect(port) for _ in range(3)]
    p.wait_for("3 accepts", lambda: p.stderr().count("connection from") >= 3)
    cs[0].sendall(b"zero says hi\n")
    for s in cs[1:]:
        assert recv_until(s, b"\n") == b"zero says hi\n"
    assert quiet_read(cs[0]) == b""
    p.send(b"stdin to all\n")
    for s in cs:
        assert recv_until(s, b"\n") == b"stdin to all\n"
    assert p.stdout() == b""


@test
def broker_200_clients_fan_out():
    n = 200
    p, port = listen("--broker", "-v", "127.0.0.1", 0)
    cs = [connect(port) for _ in range(n)]
    p.wait_for("accepts", lambda: p.stderr().count("connection from") >= n, 60)
    for i in range(0, n, 20):
        cs[i].sendall(line_for(i, 0))
    want = [line_for(i, 0) for i in range(0, n, 20)]
    for j, s in enumerate(cs):
        expect = b"".join(w for i, w in zip(range(0, n, 20), want) if i != j)
        got = recv_until(s, b"", 0) if not expect else b""
        while len(got) < len(expect):
            d = recv_until(s, b"\n", 20)
            if not d:
                break
            got += d
        assert sorted(got.split(b"\n")) == sorted(expect.split(b"\n")), (j, got[:200])


@test
def chat_tags_and_announces():
    p, port = listen("--chat", "127.0.0.1", 0)
    a = connect(port)
    assert recv_until(a, b"nobody.\n") == (b"<announce> 127.0.0.1 is connected as <user1>.\n"
                                           b"<announce> already connected: nobody.\n")
    b = connect(port)
    hello_b = (b"<announce> 127.0.0.1 is connected as <user2>.\n"
               b"<announce> already connected: 127.0.0.1 as <user1>.\n")
    assert recv_until(a, b"<user1>.\n") == hello_b
    assert recv_until(b, b"<user1>.\n") == hello_b
    a.sendall(b"hi\x01\n")
    assert recv_until(b, b"\n") == b"<user1> hi\\001\n"
    p.send(b"op speaking\n")
    assert recv_until(a, b"\n") == b"<user0> op speaking\n"
    assert recv_until(b, b"\n") == b"<user0> op speaking\n"
    a.close()
    assert recv_until(b, b"disconnected.\n") == b"<announce> <user1> is disconnected.\n"
    assert p.stdout() == b""


if __name__ == "__main__":
    main()
