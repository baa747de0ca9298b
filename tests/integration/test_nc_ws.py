#!/usr/bin/env python3
"""csock connect ws:// and csock listen ws:// (netcat over WebSocket, as
websocat does): lines on stdin become text messages, messages become lines;
--binary, --header, --subprotocol, -v's handshake, the close codes and the
exit status, refused handshakes, wss:// both ways with the test CA, a GET
without Upgrade (426), and wrong arguments (status 2). The peers are
Python's websockets (Debian python3-websockets) and csock itself."""
import asyncio
import http
import os
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nckit  # noqa: E402

if __name__ == "__main__":
    nckit.reexec_with_websockets(__file__)

import csocktest as ct  # noqa: E402
import tlscerts  # noqa: E402
from nckit import Child, run, websockets  # noqa: E402


async def serve(w, handler, **kw):
    """A websockets server on 127.0.0.1:0; returns (server, port)."""
    srv = await w.serve(handler, "127.0.0.1", 0, **kw)
    return srv, srv.sockets[0].getsockname()[1]


def test_connect_text_lines_both_ways():
    """Messages become lines (a "\\n" after each), lines become messages
    without their CRLF or LF, the last unended line too; end of input sends
    close 1000 and the peer's answer ends csock with status 0. --header is
    in the request, the subprotocol agreed is shown with -v, and -v shows
    the handshake."""
    w = websockets()
    got, seen = [], {}

    async def handler(ws, path):
        seen["path"] = path
        seen["x"] = ws.request_headers.get("X-Csock-Test")
        seen["sub"] = ws.subprotocol
        await ws.send("from server")
        await ws.send("dé jà\tvu")
        async for m in ws:
            got.append(m)

    async def go():
        srv, port = await serve(w, handler, subprotocols=["beta"])
        c = await Child.start("connect", "-v", "--header", "X-Csock-Test: yes",
                              "--subprotocol", "alpha", "--subprotocol", "beta",
                              "ws://127.0.0.1:%d/room?x=1" % port)
        try:
            ct.check_eq(await c.line(), "from server", "first message as a line")
            ct.check_eq(await c.line(), "dé jà\tvu", "UTF-8 message as a line")
            await c.send(b"line one\r\nline two\n\n\xff\xfe not UTF-8\nno end", close=True)
            rc, out, err = await c.finish()
        finally:
            await c.close()
            srv.close()
            await srv.wait_closed()
        return rc, out, err

    rc, out, err = run(go())
    ct.check_eq(rc, 0, "exit status (stderr %r)" % err)
    ct.check_eq(got, ["line one", "line two", "", b"\xff\xfe not UTF-8", "no end"],
                "messages the server got (a line that is not UTF-8: binary)")
    ct.check_eq(seen, {"path": "/room?x=1", "x": "yes", "sub": "beta"}, "the request")
    for want in ("> GET /room?x=1 HTTP/1.1", "> Host: 127.0.0.1:", "> Upgrade: websocket",
                 "> Sec-WebSocket-Protocol: alpha", "> X-Csock-Test: yes",
                 "< HTTP/1.1 101 Switching Protocols", "< Sec-WebSocket-Protocol: beta",
                 "< Sec-WebSocket-Accept: ", "< Server: Python"):  # the answer as it came
        ct.check(want in err, "-v lacks %r: %r" % (want, err))


def test_connect_binary():
    """--binary: each chunk of stdin is a binary message, and a message
    received is written as it is (no "\\n")."""
    w = websockets()
    got = []

    async def handler(ws, path):
        await ws.send(b"\x00\x01\xfe\xff")
        await ws.send("text too")
        async for m in ws:
            got.append(m)

    async def go():
        srv, port = await serve(w, handler)
        c = await Child.start("connect", "--binary", "ws://127.0.0.1:%d/" % port)
        try:
            ct.check_eq(await c.read(12), b"\x00\x01\xfe\xfftext too", "raw messages")
            await c.send(b"\xff\x00 binary\n", close=True)
            rc, out, err = await c.finish()
        finally:
            await c.close()
            srv.close()
            await srv.wait_closed()
        return rc, out, err

    rc, out, err = run(go())
    ct.check_eq(rc, 0, "exit status (stderr %r)" % err)
    ct.check(all(isinstance(m, bytes) for m in got), "binary messages: %r" % got)
    ct.check_eq(b"".join(got), b"\xff\x00 binary\n", "bytes the server got")


def _peer_closes(code, reason):
    w = websockets()

    async def handler(ws, path):
        await ws.send("bye soon")
        await ws.close(code, reason)

    async def go():
        srv, port = await serve(w, handler)
        c = await Child.start("connect", "ws://127.0.0.1:%d/" % port)
        try:
            line = await c.line()
            rc, out, err = await c.finish()
        finally:
            await c.close()
            srv.close()
            await srv.wait_closed()
        return line, rc, err

    return run(go())


def test_connect_peer_close_codes():
    """The peer's close ends csock: 1000 and 1001 with status 0 and a quiet
    stderr; another code with status 1 and the code and reason on one line."""
    for code in (1000, 1001):
        line, rc, err = _peer_closes(code, "done")
        ct.check_eq((line, rc, err), ("bye soon", 0, ""), "peer closes with %d" % code)
    line, rc, err = _peer_closes(4001, "go away\nnow")
    ct.check_eq(rc, 1, "exit status after close 4001")
    ct.check_eq(len(err.splitlines()), 1, "one line: %r" % err)
    ct.check("4001" in err and "go away" in err, err)


def _raw_server(serve_one):
    """A TCP server for one connection: serve_one(sock, request head) does
    the rest in a thread; returns the port."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)

    def go():
        try:
            s, _ = ls.accept()
            s.settimeout(ct.T(20))
            data = b""
            while b"\r\n\r\n" not in data:
                d = s.recv(4096)
                if not d:
                    break
                data += d
            serve_one(s, data)
            s.close()
        except OSError:
            pass
        finally:
            ls.close()
    threading.Thread(target=go, daemon=True).start()
    return ls.getsockname()[1]


def _one_shot_http(answer):
    """A server that answers the first request with `answer`; its port."""
    return _raw_server(lambda s, head: s.sendall(answer))


def test_connect_refused_handshakes():
    """HTTP 404, a wrong Sec-WebSocket-Accept: one line on stderr, status 1."""
    answers = [b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
               b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"]
    for answer in answers:
        port = _one_shot_http(answer)
        rc, out, err = ct.csock("connect", "ws://127.0.0.1:%d/x" % port, input=b"hi\n")
        ct.check_eq(rc, 1, "status after %r (stderr %r)" % (answer[:20], err))
        ct.check_eq(len(err.splitlines()), 1, "one line: %r" % err)
        want = "ws: refused: 404 Not Found" if b" 404 " in answer else "handshake"
        ct.check(want in err, "stderr lacks %r: %r" % (want, err))
        print("  refused: %s" % err.strip())
    # Nobody there.
    closed = ct.closed_tcp_port()
    rc, out, err = ct.csock("connect", "ws://127.0.0.1:%d/" % closed.getsockname()[1], input=b"")
    closed.close()
    ct.check_eq(rc, 1, "status, connection refused")
    ct.check_eq(len(err.splitlines()), 1, "one line: %r" % err)


def test_connect_replies_after_the_end_of_input():
    """`printf 'hi\\n' | csock connect ws://.../echo` prints the echo, as
    websocat does: the end of input is a half close (csock_ws_shutdown),
    and the server's messages until it answers the close still come."""
    from test_serve_ws import WsServer
    srv = WsServer("echo", "ws://127.0.0.1:0/e")
    try:
        rc, out, err = ct.csock("connect", srv.urls[0], input=b"hi\nthere\n")
        ct.check_eq((rc, out), (0, b"hi\nthere\n"), "status and the echoes (stderr %r)" % err)
    finally:
        srv.finish()


def test_connect_refused_by_websockets():
    """A websockets server that refuses the handshake with 403: the status
    line is the reason on stderr, and the exit status is 1."""
    w = websockets()

    async def refuse(path, headers):
        return http.HTTPStatus.FORBIDDEN, [], b"go away\n"

    async def handler(ws, path):
        await ws.send("never")

    async def go():
        srv, port = await serve(w, handler, process_request=refuse)
        url = "ws://127.0.0.1:%d/private" % port
        c = await Child.start("connect", url)
        try:
            rc, out, err = await c.finish()
        finally:
            await c.close()
            srv.close()
            await srv.wait_closed()
        return url, rc, out, err

    url, rc, out, err = run(go())
    ct.check_eq(rc, 1, "exit status (stderr %r)" % err)
    ct.check_eq(out, b"", "nothing on stdout")
    ct.check_eq(err.strip(), "csock: connect %s: ws: refused: 403 Forbidden" % url, "the one line")


def test_connect_origin():
    """--origin URL goes out as the Origin field: a websockets server that
    accepts only that origin echoes; another origin is refused with 403."""
    w = websockets()

    async def echo(ws, path):
        async for m in ws:
            await ws.send(m)

    async def go():
        srv, port = await serve(w, echo, origins=["https://app.example"])
        url = "ws://127.0.0.1:%d/" % port
        try:
            got = []
            for origin in ("https://app.example", "https://evil.example"):
                c = await Child.start("connect", "--origin", origin, url)
                try:
                    if not got:  # websockets answers a close at once: echo first
                        await c.send(b"hi\n")
                        ct.check_eq(await c.line(), "hi", "the accepted origin's echo")
                        await c.send(b"", close=True)
                    got.append(await c.finish())
                finally:
                    await c.close()
        finally:
            srv.close()
            await srv.wait_closed()
        return url, got

    url, got = run(go())
    ct.check_eq(got[0][0], 0, "the accepted origin: exit status (stderr %r)" % got[0][2])
    ct.check_eq(got[1][0], 1, "another origin: exit status")
    ct.check_eq(got[1][2].strip(), "csock: connect %s: ws: refused: 403 Forbidden" % url, "the one line")


def test_listen_origin():
    """listen --origin: a browser-like client from another origin gets 403
    and the listener goes on; the listed origin (any case) is served."""
    w = websockets()

    async def go():
        c = await Child.start("listen", "--origin", "https://ok.example", "ws://127.0.0.1:0/")
        try:
            url = await c.listening()
            try:
                async with w.connect(url, origin="https://bad.example"):
                    ct.check(False, "a connection from another origin was accepted")
            except w.exceptions.InvalidStatusCode as e:
                ct.check_eq(e.status_code, 403, "status for another origin")
            async with w.connect(url, origin="https://OK.example") as ws:
                await ws.send("from ok")
                ct.check_eq(await c.line(), "from ok", "the accepted origin's message")
                await ws.close(1000)
            rc, out, err = await c.finish()
        finally:
            await c.close()
        return rc, err

    rc, err = run(go())
    ct.check_eq(rc, 0, "exit status (stderr %r)" % err)


def _silent_ws_server(frames):
    """A server that makes the handshake, then never answers: what the client
    sends after it is put in `frames` (raw bytes); returns its port."""
    import base64
    import hashlib

    def serve_one(s, head):
        key = [l.split(b":", 1)[1].strip() for l in head.split(b"\r\n")
               if l.lower().startswith(b"sec-websocket-key:")][0]
        acc = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
                               .digest())
        s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + acc + b"\r\n\r\n")
        while True:
            d = s.recv(4096)
            if not d:
                break
            frames.append(d)
    return _raw_server(serve_one)


def test_connect_ping_finds_a_dead_peer():
    """--ping: after SECS without input a ping goes out (opcode 9, masked);
    a peer that stays silent SECS more is dead: status 1, one line."""
    frames = []
    port = _silent_ws_server(frames)
    p = ct.Proc([ct.BIN, "connect", "--ping", "0.3", "ws://127.0.0.1:%d/" % port])
    try:
        rc = p.wait(20)
    finally:
        p.stop()
    err = p.stderr()
    ct.check_eq(rc, 1, "status (stderr %r)" % err)
    ct.check_eq(len(err.splitlines()), 1, "one line: %r" % err)
    ct.check("ping" in err.lower(), err)
    print("  dead peer: %s" % err.strip())
    raw = b"".join(frames)
    ct.check(raw[:1] == b"\x89" and raw[1] & 0x80, "a masked ping first: %r" % raw[:8])


def test_listen_with_python_client():
    """listen ws://: the Python client's messages come out as lines, stdin
    lines go to it; its close (1000) ends csock with status 0. A GET
    without Upgrade gets 426, another path 404."""
    w = websockets()

    async def go():
        c = await Child.start("listen", "--subprotocol", "chat.v2", "-v", "ws://127.0.0.1:0/sock")
        try:
            url = await c.listening()
            ct.check(url.startswith("ws://127.0.0.1:") and url.endswith("/sock"), url)
            status, head, _ = nckit.http_get(url)
            ct.check_eq(status, 426, "plain GET on the socket's path")
            ct.check_eq(nckit.field(head, "Upgrade"), "websocket", "426's Upgrade field")
            ct.check_eq(nckit.http_get(url, "/other")[0], 404, "GET on another path")
            async with w.connect(url, subprotocols=["x", "chat.v2"]) as ws:
                ct.check_eq(ws.subprotocol, "chat.v2", "subprotocol chosen")
                await ws.send("hello listener")
                await ws.send("two\nlines")
                await ws.send(b"bin")
                ct.check_eq(await c.line(), "hello listener", "message 1")
                ct.check_eq(await c.line(), "two", "message 2, line 1")
                ct.check_eq(await c.line(), "lines", "message 2, line 2")
                ct.check_eq(await c.line(), "bin", "a binary message, as a line")
                await c.send(b"to the client\nsecond\n")
                ct.check_eq(await ws.recv(), "to the client", "stdin line 1")
                ct.check_eq(await ws.recv(), "second", "stdin line 2")
                await ws.close(1000, "thanks")
            rc, out, err = await c.finish()
        finally:
            await c.close()
        return rc, err

    rc, err = run(go())
    ct.check_eq(rc, 0, "exit status (stderr %r)" % err)
    ct.check("subprotocol chat.v2" in err, "-v names the subprotocol: %r" % err)


def test_listen_binary_and_broker():
    """listen --binary: messages written raw, stdin reads sent as binary;
    listen -k --broker: a client's message goes to the other clients (as a
    line: a text message), not to stdout."""
    w = websockets()

    async def go():
        c = await Child.start("listen", "--binary", "ws://127.0.0.1:0/")
        try:
            url = await c.listening()
            async with w.connect(url) as ws:
                await ws.send(b"\x00raw\xff")
                ct.check_eq(await c.read(5), b"\x00raw\xff", "a binary message, raw")
                await c.send(b"\x01\x02")
                m = await asyncio.wait_for(ws.recv(), ct.T(10))
                ct.check_eq(m, b"\x01\x02", "stdin as a binary message")
        finally:
            await c.close()
        b = await Child.start("listen", "-k", "--broker", "ws://127.0.0.1:0/")
        try:
            url = await b.listening()
            async with w.connect(url) as one, w.connect(url) as two:
                await one.send("to the others")
                ct.check_eq(await asyncio.wait_for(two.recv(), ct.T(10)), "to the others",
                            "broker relays")
                await b.send(b"from stdin\n")
                ct.check_eq(await asyncio.wait_for(one.recv(), ct.T(10)), "from stdin", "stdin 1")
                ct.check_eq(await asyncio.wait_for(two.recv(), ct.T(10)), "from stdin", "stdin 2")
            b.p.stdin.close()
            b.p.terminate()
            rc, out, err = await b.finish()
            ct.check_eq(out, b"", "a broker writes nothing to stdout")
        finally:
            await b.close()

    run(go())


def test_connect_to_listen():
    """csock on both ends: lines across, then the connecting side's end of
    input closes both with status 0."""
    async def go():
        lst = await Child.start("listen", "ws://127.0.0.1:0/")
        con = None
        try:
            url = await lst.listening()
            con = await Child.start("connect", url)
            await con.send(b"ping from connect\n")
            ct.check_eq(await lst.line(), "ping from connect", "connect -> listen")
            await lst.send(b"pong from listen\n")
            ct.check_eq(await con.line(), "pong from listen", "listen -> connect")
            con.p.stdin.close()
            rc1, _, err1 = await con.finish()
            rc2, _, err2 = await lst.finish()
        finally:
            await lst.close()
            if con:
                await con.close()
        return rc1, err1, rc2, err2

    rc1, err1, rc2, err2 = run(go())
    ct.check_eq((rc1, rc2), (0, 0), "exit statuses (stderr %r / %r)" % (err1, err2))


def test_send_only_closes_cleanly():
    """--send-only: the lines, then a close 1000 that the end of csock does
    not cut off (the server sees the code)."""
    w = websockets()
    got, codes = [], []
    ended = []

    async def handler(ws, path):
        async for m in ws:
            got.append(m)
        codes.append(ws.close_code)
        ended[0].set()

    async def go():
        ended.append(asyncio.Event())
        srv, port = await serve(w, handler)
        c = await Child.start("connect", "--send-only", "ws://127.0.0.1:%d/" % port)
        try:
            await c.send(b"one\ntwo\n", close=True)
            rc, out, err = await c.finish()
            await asyncio.wait_for(ended[0].wait(), ct.T(10))
        finally:
            await c.close()
            srv.close()
            await srv.wait_closed()
        return rc, err

    rc, err = run(go())
    ct.check_eq((rc, err), (0, ""), "status and stderr")
    ct.check_eq((got, codes), (["one", "two"], [1000]), "what the server saw")


def _certs():
    ct.need("openssl")
    d = ct.tmpdir()
    tlscerts.make(d)
    return d


def test_wss_both_ways():
    """wss://: csock listen with --cert/--key, csock connect with --ca (and
    Python's client); an unknown CA fails the handshake: one line, status 1."""
    import ssl
    w = websockets()
    d = _certs()
    cert, key, ca = (os.path.join(d, f) for f in ("server.pem", "server.key", "ca.pem"))

    async def go():
        lst = await Child.start("listen", "-k", "--cert", cert, "--key", key,
                                "wss://127.0.0.1:0/secure")
        try:
            url = await lst.listening()
            ct.check(url.startswith("wss://127.0.0.1:"), url)
            url = url.replace("127.0.0.1", "localhost")
            ctx = ssl.create_default_context(cafile=ca)
            async with w.connect(url, ssl=ctx) as ws:
                await ws.send("python over tls")
                ct.check_eq(await lst.line(), "python over tls", "python -> listen")
                await lst.send(b"to everyone\n")
                ct.check_eq(await ws.recv(), "to everyone", "listen -> python")
            con = await Child.start("connect", "-v", "--ca", ca, url)
            try:
                await con.send(b"csock over tls\n", close=True)
                ct.check_eq(await lst.line(), "csock over tls", "connect -> listen")
                rc, _, err = await con.finish()
                ct.check_eq(rc, 0, "connect wss:// status (stderr %r)" % err)
                ct.check("TLSv1." in err, "-v shows TLS: %r" % err)
            finally:
                await con.close()
            other = os.path.join(d, "otherca.pem")
            bad = await Child.start("connect", "--ca", other, url)
            try:
                rc, _, err = await bad.finish()
            finally:
                await bad.close()
            ct.check_eq(rc, 1, "status with an unknown CA (stderr %r)" % err)
            ct.check_eq(len(err.splitlines()), 1, "one line: %r" % err)
        finally:
            await lst.close()

    run(go())


def test_wrong_arguments():
    """Status 2 and one line on stderr."""
    cases = [
        ("connect", "--binary", "tcp://127.0.0.1:9"),
        ("connect", "--header", "no colon", "ws://127.0.0.1:9/"),
        ("connect", "--subprotocol", "a b", "ws://127.0.0.1:9/"),
        ("connect", "--ping", "0", "ws://127.0.0.1:9/"),
        ("connect", "-u", "ws://127.0.0.1:9/"),
        ("connect", "--ca", "x.pem", "ws://127.0.0.1:9/"),
        ("connect", "ws://"),
        ("connect", "--origin", "https://a", "tcp://127.0.0.1:9"),
        ("connect", "--origin", "https://a", "--origin", "https://b", "ws://127.0.0.1:9/"),
        ("connect", "--origin", "", "ws://127.0.0.1:9/"),
        ("listen", "--header", "A: b", "ws://127.0.0.1:0/"),
        ("listen", "ws://127.0.0.1:0/a?b"),
        ("listen", "-e", "cat", "ws://127.0.0.1:0/"),
        ("listen", "wss://127.0.0.1:0/"),
    ]
    for args in cases:
        rc, out, err = ct.csock(*args)
        ct.check_eq(rc, 2, "status of %r (stderr %r)" % (args, err))
        ct.check_eq(len(err.splitlines()), 1, "one line for %r: %r" % (args, err))


if __name__ == "__main__":
    ct.main()
