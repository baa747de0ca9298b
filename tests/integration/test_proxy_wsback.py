#!/usr/bin/env python3
"""csock proxy with ws:// backends (--to ws://HOST:PORT/PATH): a byte-stream
client (a plain TCP socket, as nc would be) reaching a WebSocket server
(Python websockets, Debian python3-websockets) through the proxy.

- each read of the client's bytes goes as one binary message, each message
  of the backend (text or binary) comes back as its bytes; 300 KiB echoed
  byte-exact; the client's half close becomes a close 1000 and the
  client then gets its EOF (the 20 MB upload below checks that what was
  sent before it all arrives);
- the backend's close ends the client's connection (EOF after the bytes);
- wss:// backends: TLS verified (a certificate not trusted fails);
- --idle ends a quiet relay;
- a refused handshake (403) closes the client and -v says why;
- the request carries the URL's path and Host;
- backpressure both ways, with 20 MB: a slow client holds back a fast
  WebSocket server, a slow WebSocket server a fast client; the proxy's
  peak RSS stays bounded and every byte arrives (a digest);
- a ws:// listener with a ws:// backend is refused (exit 2);
- when the drain ends (--drain-timeout, or a second signal) a relay still
  open tells its backend with a close 1001 "going away", and the client
  gets its EOF."""
import asyncio
import hashlib
import http
import os
import signal
import socket
import ssl
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nckit  # noqa: E402

if __name__ == "__main__":
    nckit.reexec_with_websockets(__file__)

from csocktest import T, check, check_eq, csock, main, recv_all, recv_exact, tmpdir, wait_for  # noqa: E402
from nckit import websockets  # noqa: E402
from test_proxy import Proxy  # noqa: E402
from test_proxy_ws_flow import CHUNK, TOTAL, check_bounded, vm_kib  # noqa: E402
import tlscerts  # noqa: E402


class WsBackend:
    """A websockets server on its own thread and loop. Paths: /echo echoes,
    /greet sends two messages and closes, /deny is refused with 403,
    /flood sends `flood` bytes and closes, /sink reads slowly and keeps a
    digest."""

    def __init__(self, flood=b"", ssl_ctx=None):
        self.w = websockets()
        self.flood = flood
        self.requests = []  # (path, headers)
        self.kinds = set()
        self.closes = []  # /echo: (code, reason) of each end
        self.sink = None
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def runner():
            asyncio.set_event_loop(self.loop)

            async def start():
                self.srv = await self.w.serve(self.handler, "127.0.0.1", 0, max_size=None,
                                              max_queue=1, process_request=self.process, ssl=ssl_ctx)
                self.port = self.srv.sockets[0].getsockname()[1]
                ready.set()
            self.loop.run_until_complete(start())
            self.loop.run_forever()
        self.t = threading.Thread(target=runner, daemon=True)
        self.t.start()
        check(ready.wait(T(10)), "the websockets server did not start")

    def url(self, path, host="127.0.0.1", scheme="ws"):
        return "%s://%s:%d%s" % (scheme, host, self.port, path)

    async def process(self, path, headers):
        self.requests.append((path, headers))
        if path == "/deny":
            return http.HTTPStatus.FORBIDDEN, [], b"no\n"
        return None

    async def handler(self, ws, path=None):
        p = ws.path
        if p == "/echo":
            async for m in ws:
                self.kinds.add(type(m))
                await ws.send(m)
            self.closes.append((ws.close_code, ws.close_reason))
        elif p == "/greet":
            await ws.send("h\u00e9llo ")
            await ws.send(b"bin")
            await ws.close(1000)
        elif p == "/flood":
            for i in range(0, len(self.flood), CHUNK):
                await ws.send(self.flood[i:i + CHUNK])
            await ws.close(1000)
        elif p == "/sink":
            h, n = hashlib.sha256(), 0
            async for m in ws:
                h.update(m)
                n += len(m)
                await asyncio.sleep(0.001)
            self.sink = (n, h.hexdigest())

    def close(self):
        async def stop():
            self.srv.close()
            await self.srv.wait_closed()
        try:
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(T(10))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.t.join(T(10))


def test_tcp_client_to_websocket_echo():
    be = WsBackend()
    try:
        px = Proxy("tcp://127.0.0.1:0", "--to", be.url("/echo"))
        data = os.urandom(300 * 1024)
        with px.connect() as s:
            s.settimeout(T(20))
            threading.Thread(target=s.sendall, args=(data,), daemon=True).start()
            got = bytearray()
            while len(got) < len(data):
                b = s.recv(CHUNK)
                check(b, "EOF after %d bytes" % len(got))
                got += b
            # A WebSocket has no half close: the EOF becomes a close 1000,
            # the backend answers it and the client gets its EOF.
            s.shutdown(socket.SHUT_WR)
            check_eq(recv_all(s), b"", "EOF after the echo")
        check(got == data, "300 KiB echoed byte-exact through the WebSocket (%d of %d)" % (len(got), len(data)))
        check_eq(be.kinds, {bytes}, "the client's bytes go as binary messages")
        wait_for(lambda: be.closes, 10, "the backend's end")
        check_eq(be.closes, [(1000, "")], "the client's EOF is a close 1000")
        path, headers = be.requests[0]
        check_eq(path, "/echo", "the request's path")
        check_eq(headers["Host"], "127.0.0.1:%d" % be.port, "the request's Host")
        err = px.finish()
        check("(WebSocket)" in err and "bytes up" in err, "-v lines: %r" % err)
    finally:
        be.close()


def test_wss_backend_verified():
    certs = tlscerts.make(tmpdir())
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(certs, "server.pem"), os.path.join(certs, "server.key"))
    be = WsBackend(ssl_ctx=ctx)
    # The test CA as the system's (OpenSSL's default paths honour it): the
    # proxy verifies wss:// backends as it does tls:// ones.
    os.environ["SSL_CERT_FILE"] = os.path.join(certs, "ca.pem")
    try:
        px = Proxy("tcp://127.0.0.1:0", "--to", be.url("/echo", "localhost", "wss"))
        with px.connect() as s:
            s.settimeout(T(20))
            s.sendall(b"over tls")
            check_eq(recv_exact(s, 8), b"over tls", "echoed through wss://")
            s.shutdown(socket.SHUT_WR)
            check_eq(recv_all(s), b"", "EOF after the close")
        px.finish()
        # Without the test CA the certificate is not trusted: refused.
        del os.environ["SSL_CERT_FILE"]
        handshakes = len(be.requests)
        px = Proxy("tcp://127.0.0.1:0", "--to", be.url("/echo", "localhost", "wss"))
        with px.connect() as s:
            s.settimeout(T(20))
            try:
                got = recv_all(s)
            except ConnectionResetError:
                got = b""
            check_eq(got, b"", "nothing through an unverified backend")
        err = px.finish()
        check("connect wss://localhost" in err, "-v says the connect failed: %r" % err)
        check_eq(len(be.requests), handshakes, "handshakes at the backend")
    finally:
        os.environ.pop("SSL_CERT_FILE", None)
        be.close()


def test_backend_close_ends_the_client():
    be = WsBackend()
    try:
        px = Proxy("tcp://127.0.0.1:0", "--to", be.url("/greet"))
        with px.connect() as s:
            s.settimeout(T(10))
            check_eq(recv_all(s), "h\u00e9llo bin".encode(), "messages as bytes, then EOF")
        px.finish()
    finally:
        be.close()


def test_idle_relay_closed():
    be = WsBackend()
    try:
        px = Proxy("tcp://127.0.0.1:0", "--idle", "0.3", "--to", be.url("/echo"))
        with px.connect() as s:
            s.settimeout(T(10))
            s.sendall(b"once")
            check_eq(recv_exact(s, 4), b"once", "echoed")
            try:  # then nothing either way: --idle ends it
                got = recv_all(s)
            except ConnectionResetError:
                got = b""
            check_eq(got, b"", "EOF after --idle")
        wait_for(lambda: be.closes, 10, "the backend's end")
        check_eq(be.closes, [(1001, "idle")], "the backend is told: going away")
        err = px.finish()
        check("timed out" in err, "-v says why: %r" % err)
    finally:
        be.close()


def test_refused_handshake():
    be = WsBackend()
    try:
        px = Proxy("tcp://127.0.0.1:0", "--to", be.url("/deny"))
        with px.connect() as s:
            s.settimeout(T(10))
            s.sendall(b"never relayed")
            try:
                got = recv_all(s)
            except ConnectionResetError:
                got = b""
            check_eq(got, b"", "nothing for a refused client")
        err = px.finish()
        check("ws: refused: 403 Forbidden" in err, "-v says why: %r" % err)
    finally:
        be.close()


def test_slow_client_holds_back_a_fast_backend():
    data = os.urandom(TOTAL)
    be = WsBackend(flood=data)
    try:
        px = Proxy("tcp://127.0.0.1:0", "--to", be.url("/flood"))
        base = vm_kib(px.pid, "VmRSS")
        h, n = hashlib.sha256(), 0
        with px.connect() as s:
            s.settimeout(T(60))
            while True:
                b = s.recv(CHUNK)
                if not b:
                    break
                h.update(b)
                n += len(b)
                time.sleep(0.003)
        peak = vm_kib(px.pid, "VmHWM")
        check_eq((n, h.hexdigest()), (TOTAL, hashlib.sha256(data).hexdigest()), "bytes and digest at the client")
        check_bounded(base, peak)
        px.finish()
    finally:
        be.close()


def test_fast_client_held_back_by_a_slow_backend():
    data = os.urandom(TOTAL)
    be = WsBackend()
    try:
        px = Proxy("tcp://127.0.0.1:0", "--to", be.url("/sink"))
        base = vm_kib(px.pid, "VmRSS")
        with px.connect() as s:
            s.settimeout(T(120))
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            recv_all(s)  # EOF once the backend answered our close
        wait_for(lambda: be.sink is not None, 30, "the backend's digest")
        peak = vm_kib(px.pid, "VmHWM")
        check_eq(be.sink, (TOTAL, hashlib.sha256(data).hexdigest()), "bytes and digest at the backend")
        check_bounded(base, peak)
        px.finish()
    finally:
        be.close()


def test_drain_end_says_going_away():
    be = WsBackend()
    try:
        for how, drain in (("the drain timeout", "0.5"), ("a second signal", "60")):
            ends = len(be.closes)
            px = Proxy("tcp://127.0.0.1:0", "--drain-timeout", drain, "--to", be.url("/echo"))
            with px.connect() as s:
                s.settimeout(T(10))
                s.sendall(b"open")
                check_eq(recv_exact(s, 4), b"open", "echoed")
                os.kill(px.pid, signal.SIGTERM)
                wait_for(lambda: "draining: 1 relay" in px.stderr(), 10, "the drain's start")
                if how == "a second signal":
                    os.kill(px.pid, signal.SIGTERM)
                try:
                    got = recv_all(s)
                except ConnectionResetError:
                    got = b"(reset)"
                check_eq(got, b"", "%s: the client's EOF" % how)
            wait_for(lambda: len(be.closes) > ends, 10, "%s: the backend's end" % how)
            check_eq(be.closes[ends:], [(1001, "going away")], "%s: the backend is told" % how)
            check_eq(px.p.wait(T(10)), 0, "%s: the proxy exits by itself, status" % how)
            err = px.finish()
            check("the drain ended" in err, "-v says why: %r" % err)
    finally:
        be.close()


def test_ws_listener_with_ws_backend_refused():
    rc, _, err = csock("proxy", "ws://127.0.0.1:0/", "--to", "ws://127.0.0.1:1/x")
    check_eq(rc, 2, "exit status")
    check("relays to byte streams" in err, "one line why: %r" % err)


if __name__ == "__main__":
    main()
