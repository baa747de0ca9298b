#!/usr/bin/env python3
"""csock proxy ws:// -> tcp:// (the websockify job) and udp:// -> udp://.

- a Python websockets client (Debian python3-websockets, as a browser
  would) reaches a plain TCP echo through ws://: each message's bytes go
  out, the echo comes back as binary messages; 256 KiB byte-exact;
  a wrong path is 404, a GET without Upgrade 426; the backend's EOF
  closes the WebSocket with 1000; a dead backend closes it too;
- UDP: each client address gets a session (its own socket to the backend),
  replies go back to the right client, and an idle session ends.
"""
import asyncio
import os
import re
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nckit  # noqa: E402

if __name__ == "__main__":
    nckit.reexec_with_websockets(__file__)

from csocktest import Server, T, check, check_eq, closed_tcp_port, main, wait_for  # noqa: E402
from nckit import websockets  # noqa: E402
from test_proxy import Proxy, free_port, tcp_url  # noqa: E402


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, T(timeout)))


async def collect(ws, n):
    got = b""
    while len(got) < n:
        m = await ws.recv()
        check(isinstance(m, bytes), "backend bytes come as binary messages: %r" % type(m))
        got += m
    return got


def test_websocket_to_tcp_echo():
    w = websockets()
    with Server("echo", "tcp://127.0.0.1:0") as be:
        px = Proxy("ws://127.0.0.1:0/vnc", "--to", tcp_url(be.endpoints[0]))
        check(px.addrs[0].startswith("ws://127.0.0.1:") and px.addrs[0].endswith("/vnc"),
              "ws listening line: %r" % px.addrs)
        url = "ws://127.0.0.1:%d/vnc" % px.port_ws()

        async def go():
            async with w.connect(url, max_size=None) as ws:
                await ws.send("hello text")
                check_eq(await collect(ws, 10), b"hello text", "a text message's bytes")
                big = os.urandom(256 * 1024)
                for i in range(0, len(big), 16384):
                    await ws.send(big[i:i + 16384])
                check(await collect(ws, len(big)) == big, "256 KiB byte-exact")
        run(go())
        err = px.finish()
        check("(WebSocket)" in err and "bytes up" in err, "-v lines: %r" % err)


def test_backend_eof_closes_the_websocket():
    w = websockets()
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    px = Proxy("ws://127.0.0.1:0", "--to", "tcp://127.0.0.1:%d" % ls.getsockname()[1])

    async def go():
        async with w.connect("ws://127.0.0.1:%d/" % px.port_ws()) as ws:
            loop = asyncio.get_running_loop()
            b, _ = await loop.run_in_executor(None, ls.accept)
            await ws.send(b"ping")
            b.settimeout(T(10))
            check_eq(b.recv(4), b"ping", "backend got it")
            b.sendall(b"bye")
            b.close()
            check_eq(await ws.recv(), b"bye", "last bytes")
            try:
                await ws.recv()
                check(False, "expected the close")
            except w.exceptions.ConnectionClosed as e:
                check_eq(e.code, 1000, "close code after the backend's EOF")
    run(go())
    ls.close()
    px.finish()


def test_dead_backend_and_http_answers():
    w = websockets()
    dead = closed_tcp_port()
    px = Proxy("ws://127.0.0.1:0/x", "--to", "tcp://127.0.0.1:%d" % dead.getsockname()[1])

    async def go():
        async with w.connect("ws://127.0.0.1:%d/x" % px.port_ws()) as ws:
            try:
                await ws.recv()
                check(False, "expected a close")
            except w.exceptions.ConnectionClosed as e:
                check(e.code != 1000, "an abnormal close for a dead backend: %s" % e.code)
    run(go())
    with socket.create_connection(("127.0.0.1", px.port_ws()), timeout=T(10)) as s:
        s.sendall(b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")
        check(s.recv(100).startswith(b"HTTP/1.1 404"), "another path is 404")
    with socket.create_connection(("127.0.0.1", px.port_ws()), timeout=T(10)) as s:
        s.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        check(s.recv(100).startswith(b"HTTP/1.1 426"), "no Upgrade is 426")
    dead.close()
    px.finish()


def udp_upper():
    """A UDP server in a thread answering each datagram in upper case, with
    the port it saw the datagram from (each session has its own)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    seen = set()

    def serve():
        while True:
            try:
                data, peer = s.recvfrom(2048)
            except OSError:
                return
            seen.add(peer)
            s.sendto(data.upper(), peer)
    threading.Thread(target=serve, daemon=True).start()
    return s, seen


def test_udp_sessions_per_client():
    be, seen = udp_upper()
    px = Proxy("udp://127.0.0.1:0", "--udp-idle", "0.5",
               "--to", "udp://127.0.0.1:%d" % be.getsockname()[1])
    port = px.port()
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (a, b):
        s.settimeout(T(5))

    def ask(s, msg):
        # UDP may drop: a few tries, each answered or timed out.
        for _ in range(5):
            s.sendto(msg, ("127.0.0.1", port))
            try:
                return s.recv(2048)
            except socket.timeout:
                continue
        check(False, "no answer to %r" % msg)
    check_eq(ask(a, b"from a"), b"FROM A", "client a")
    check_eq(ask(b, b"from b"), b"FROM B", "client b, its own session")
    check_eq(ask(a, b"again a"), b"AGAIN A", "a's session again")
    # a's own session must have ended (b's, idle longer, ends first: waiting
    # for any "ended" let a's next datagram reuse a's live session).
    a_ended = re.compile(r"udp session \S*:%d ended" % a.getsockname()[1])
    wait_for(lambda: a_ended.search(px.stderr()), 15, "a's idle session to end")
    check_eq(ask(a, b"after"), b"AFTER", "a new session after the idle end")
    check(len(seen) >= 3, "a backend socket per session: %r" % seen)
    a.close()
    b.close()
    px.finish()
    be.close()


def _port_ws(self, i=0):
    return int(self.addrs[i].split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


Proxy.port_ws = _port_ws

if __name__ == "__main__":
    main()
