#!/usr/bin/env python3
"""csock proxy wss:// -> tcp://: TLS and WebSocket on one listener.

- a Python websockets client over TLS (verified against the test CA, as a
  browser would) reaches a plain TCP echo: text and binary messages' bytes
  go out and come back as binary messages, 512 KiB byte-exact;
- a client that is not TLS is dropped (-v logs the handshake) and the
  listener goes on;
- ws:// to a tls:// backend with --send-proxy-v2: the header, then TLS;
  the served side names the WebSocket client;
- a wss:// listener without --cert: one line, exit 2.
"""
import os
import socket
import ssl
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nckit  # noqa: E402

if __name__ == "__main__":
    nckit.reexec_with_websockets(__file__)

from csocktest import BIN, Proc, Server, T, check, check_eq, csock, main, tmpdir, wait_for  # noqa: E402
from nckit import run, websockets  # noqa: E402
from test_proxy import Proxy, tcp_url  # noqa: E402
import test_proxy_ws  # noqa: E402
from test_proxy_ws import collect  # noqa: E402
import tlscerts  # noqa: E402


def test_wss_to_tcp_echo():
    w = websockets()
    certs = tlscerts.make(tmpdir())
    with Server("echo", "tcp://127.0.0.1:0") as be:
        px = Proxy("wss://127.0.0.1:0/vnc", "--to", tcp_url(be.endpoints[0]),
                   "--cert", os.path.join(certs, "server.pem"), "--key", os.path.join(certs, "server.key"))
        check(px.addrs[0].startswith("wss://127.0.0.1:") and px.addrs[0].endswith("/vnc"),
              "wss listening line: %r" % px.addrs)
        url = "wss://localhost:%d/vnc" % test_proxy_ws._port_ws(px)
        ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))

        async def go():
            async with w.connect(url, ssl=ctx, max_size=None) as ws:
                await ws.send("hello over tls")
                check_eq(await collect(ws, 14), b"hello over tls", "a text message's bytes")
                big = os.urandom(512 * 1024)
                for i in range(0, len(big), 16384):
                    await ws.send(big[i:i + 16384])
                check(await collect(ws, len(big)) == big, "512 KiB byte-exact")
        run(go())
        # Not TLS: dropped, logged, and the listener serves on.
        s = socket.create_connection(("127.0.0.1", test_proxy_ws._port_ws(px)), timeout=T(10))
        s.sendall(b"GET /vnc HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            while s.recv(4096):
                pass
        except (ConnectionResetError, socket.timeout):
            pass
        s.close()
        wait_for(lambda: "TLS handshake with" in px.stderr(), 10, "the -v line of the failed handshake")
        run(go())
        err = px.finish()
        check("(WebSocket)" in err and "bytes up" in err, "-v lines: %r" % err)


def test_ws_to_tls_backend_with_send_proxy():
    # The header goes before the backend's TLS; the served side names the
    # WebSocket client.
    w = websockets()
    certs = tlscerts.make(tmpdir())
    srv = Proc([BIN, "serve", "-v", "--proxy-protocol", "--cert", os.path.join(certs, "server.pem"),
                "--key", os.path.join(certs, "server.key"), "echo", "tls://127.0.0.1:0"])
    try:
        port = int(srv.read_line(15).rsplit(":", 1)[1])
        px = Proxy("--send-proxy-v2", "--ca", os.path.join(certs, "ca.pem"), "ws://127.0.0.1:0/",
                   "--to", "tls://localhost:%d" % port)

        async def go():
            async with w.connect("ws://127.0.0.1:%d/" % test_proxy_ws._port_ws(px)) as ws:
                await ws.send(b"over ws, then tls")
                check_eq(await collect(ws, 17), b"over ws, then tls", "echo")
                return ws.local_address[1]
        cport = run(go())
        want = "connection from tcp://127.0.0.1:%d" % cport
        wait_for(lambda: want in srv.stderr(), 10, "%r in %r" % (want, srv.stderr()[-500:]))
        px.finish()
    finally:
        srv.stop()


def test_wss_needs_a_certificate():
    rc, out, err = csock("proxy", "wss://127.0.0.1:0/", "--to", "tcp://127.0.0.1:1")
    err = err.decode() if isinstance(err, bytes) else err
    check_eq(rc, 2, "exit status (stderr %r)" % err)
    check(err.count("\n") == 1 and "--cert" in err, "one line: %r" % err)


if __name__ == "__main__":
    main()
