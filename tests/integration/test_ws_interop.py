#!/usr/bin/env python3
"""WebSocket interop with Python's `websockets` (Debian python3-websockets,
its asyncio API as of 10.4), both directions: csock's server (a csock_ws
upgrade from the HTTP server, in test_ws_peer.c) against the Python client,
and csock's client against the Python server. Text, binary, fragmented and
16 MiB messages, pings both ways, subprotocols, and the close codes of
either side's closing handshake; then the same compressed (permessage-deflate,
which websockets negotiates by default) both ways, with its parameters.

Also the helpers test_ws_battery.py uses (the C peer, built here from
test_ws_peer.c with the public headers)."""
import asyncio
import importlib.util
import os
import socket
import sys

# Debian's python3-websockets is installed for Debian's python3: when ctest
# found another interpreter (a pyenv shim) that lacks it, run there.
SYSTEM_PYTHON = "/usr/bin/python3"
if (__name__ == "__main__" and importlib.util.find_spec("websockets") is None
        and os.path.realpath(sys.executable) != os.path.realpath(SYSTEM_PYTHON)
        and os.access(SYSTEM_PYTHON, os.X_OK)):
    os.execv(SYSTEM_PYTHON, [SYSTEM_PYTHON, os.path.abspath(__file__)] + sys.argv[1:])

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import csocktest as ct  # noqa: E402
import cckit  # noqa: E402
import tlscerts  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
_peer = []


def peer():
    """The C peer program, compiled once per run."""
    if not _peer:
        exe = os.path.join(ct.tmpdir(), "test_ws_peer")
        ok, diag = cckit.compile_c(os.path.join(HERE, "test_ws_peer.c"), exe)
        ct.check(ok, "test_ws_peer.c does not compile:\n" + diag)
        _peer.append(exe)
    return _peer[0]


def websockets():
    try:
        import websockets as w
    except ImportError:
        raise ct.Skipped("python3-websockets not installed")
    return w


def start_server(*args, flags=()):
    """The C echo server (flags: test_ws_peer's, e.g. --deflate); returns
    (Proc, "127.0.0.1:PORT")."""
    p = ct.Proc([peer(), *flags, "server", *args])
    line = p.read_line(ct.T(20))
    ct.check(line.startswith("listening tcp://"), "server said %r, stderr %r" % (line, p.stderr()))
    return p, line.split("//", 1)[1].strip()


def stop_server(p):
    p.stop()
    ct.check_clean(p.stderr(), "test_ws_peer")


def wait_line(p, prefix, timeout=10):
    """The next line of p's output starting with prefix (others skipped)."""
    while True:
        line = p.read_line(ct.T(timeout))
        ct.check(line != "", "no %r line; stderr %r" % (prefix, p.stderr()))
        if line.startswith(prefix):
            return line.strip()


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, ct.T(timeout)))


# ---- csock's server, Python's client ------------------------------------------------


def test_python_client_messages():
    w = websockets()
    p, hp = start_server()
    try:
        async def go():
            async with w.connect("ws://%s/" % hp, max_size=None) as ws:
                await ws.send("hello \u20ac")
                ct.check_eq(await ws.recv(), "hello \u20ac", "text echo")
                await ws.send(b"\x00\x01\xff")
                ct.check_eq(await ws.recv(), b"\x00\x01\xff", "binary echo")
                await ws.send(["frag", "ment", "ed \U0001d11e"])  # three frames
                ct.check_eq(await ws.recv(), "fragmented \U0001d11e", "fragmented echo")
                await ws.send([b"a" * 70000, b"b" * 5])  # a streamed first fragment
                ct.check_eq(await ws.recv(), b"a" * 70000 + b"b" * 5, "large fragments")
                big = bytes(range(256)) * 65536  # 16 MiB
                await ws.send(big)
                got = await ws.recv()
                ct.check(got == big, "16 MiB echo differs (%d bytes)" % len(got))
                pong = await ws.ping(b"xy")
                await asyncio.wait_for(pong, ct.T(10))
                await ws.send("!ping")  # the server pings; websockets answers
                await ws.send("after")  # read after the ping, so the pong is out
                ct.check_eq(await ws.recv(), "after", "echo after the server's ping")
                await ws.close(4002, "python done")
                ct.check_eq(ws.close_code, 4002, "the server's answer to our close")
        run(go())
        wait_line(p, "pong srv")
        ct.check_eq(wait_line(p, "closed"), "closed code=4002 sent=4002 status=0 reason=python done",
                    "the server's end")
    finally:
        stop_server(p)


def test_server_closes_python_client():
    w = websockets()
    p, hp = start_server()
    try:
        async def go():
            async with w.connect("ws://%s/" % hp) as ws:
                await ws.send("!close 4001 bye now")
                try:
                    await ws.recv()
                    ct.check(False, "a message after the close")
                except w.ConnectionClosed as e:
                    return e.code, e.reason
        ct.check_eq(run(go()), (4001, "bye now"), "close code and reason")
        ct.check_eq(wait_line(p, "closed"), "closed code=4001 sent=4001 status=0 reason=bye now",
                    "the server's end")
    finally:
        stop_server(p)


def test_subprotocol_and_page():
    w = websockets()
    p, hp = start_server()
    try:
        async def go(offer):
            async with w.connect("ws://%s/" % hp, subprotocols=offer) as ws:
                return ws.subprotocol
        ct.check_eq(run(go(["superchat", "other"])), "superchat", "the server's pick")
        ct.check_eq(run(go(["nothing"])), None, "no common subprotocol")
        host, port = hp.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=ct.T(10)) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = ct.recv_all(s)
        ct.check(data.startswith(b"HTTP/1.1 200") and data.endswith(b"page\n"),
                 "a plain request on the same port: %r" % data[:200])
    finally:
        stop_server(p)


def test_python_client_too_big():
    w = websockets()
    p, hp = start_server("1000")
    try:
        async def go():
            async with w.connect("ws://%s/" % hp) as ws:
                await ws.send(b"x" * 1000)
                await ws.recv()
                await ws.send(b"x" * 1001)
                try:
                    await ws.recv()
                except w.ConnectionClosedError as e:
                    return e.code
        ct.check_eq(run(go()), 1009, "close code for a message over max_message")
        ct.check_eq(wait_line(p, "closed"), "closed code=1006 sent=1009 status=ETOOBIG reason=",
                    "the server's end")
    finally:
        stop_server(p)


# ---- csock's client, Python's server ------------------------------------------------


async def _echo(ws, path=None):
    try:
        async for m in ws:
            await ws.send(m)
    except Exception:
        pass


async def _c_client(handler, ssl=None, extra=(), flags=(), **serve_kw):
    w = websockets()
    async with w.serve(handler, "127.0.0.1", 0, max_size=None, ssl=ssl, **serve_kw) as srv:
        port = srv.sockets[0].getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            peer(), *flags, "client", "%s://127.0.0.1:%d/chat?x=1" % ("wss" if ssl else "ws", port), *extra,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        return proc.returncode, out.decode(), err.decode()


def test_c_client_python_server():
    websockets()
    paths = []

    async def handler(ws, path=None):
        paths.append(path or ws.path)
        await _echo(ws)
    rc, out, err = run(_c_client(handler), 120)
    ct.check_clean(err, "test_ws_peer client")
    for what in ("text", "binary", "fragmented", "16MiB", "utf8", "pong"):
        ct.check("ok %s\n" % what in out, "no 'ok %s' in %r" % (what, out))
    ct.check("closed code=1000 sent=1000 status=0 reason=bye" in out, out)
    ct.check_eq(rc, 0, "client exit status")
    ct.check_eq(paths, ["/chat?x=1"], "the request target")


def test_python_server_closes_c_client():
    websockets()

    async def handler(ws, path=None):
        await ws.recv()
        await ws.close(4003, "server says no")
    rc, out, err = run(_c_client(handler), 60)
    ct.check_clean(err, "test_ws_peer client")
    ct.check("closed code=4003 sent=4003 status=0 reason=server says no" in out, out)
    ct.check(rc != 0, "the client's script cannot have finished")


def test_python_server_breaks_the_rules():
    """A server frame with a reserved bit set: the C client answers 1002."""
    w = websockets()

    async def handler(ws, path=None):
        await ws.recv()
        ws.transport.write(b"\xc1\x01x")  # RSV1 + text, no extension agreed
        try:
            await ws.wait_closed()
        except Exception:
            pass
        return ws.close_code
    rc, out, err = run(_c_client(handler), 60)
    ct.check_clean(err, "test_ws_peer client")
    ct.check("closed code=1006 sent=1002 status=EPROTO" in out, out)


def _certs():
    ct.need("openssl")
    d = ct.tmpdir()
    tlscerts.make(d)
    return d


def test_wss_c_client_python_server():
    import ssl
    websockets()
    d = _certs()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(d, "server.pem"), os.path.join(d, "server.key"))
    rc, out, err = run(_c_client(_echo, ssl=ctx, extra=[os.path.join(d, "ca.pem")]), 120)
    ct.check_clean(err, "test_ws_peer client")
    ct.check("ok 16MiB\n" in out and "closed code=1000 sent=1000 status=0 reason=bye" in out, out)
    ct.check_eq(rc, 0, "client exit status")
    # A CA that signed nothing here: the handshake fails, never OPEN.
    rc, out, err = run(_c_client(_echo, ssl=ctx, extra=[os.path.join(d, "otherca.pem")]), 60)
    ct.check("closed code=1006 sent=0 status=CSOCK_ETLS" in out or "status=ETLS" in out, out)
    ct.check("ok text" not in out, out)


def test_wss_python_client_c_server():
    import ssl
    w = websockets()
    d = _certs()
    p, hp = start_server("1048576", os.path.join(d, "server.pem"), os.path.join(d, "server.key"))
    try:
        ctx = ssl.create_default_context(cafile=os.path.join(d, "ca.pem"))

        async def go():
            async with w.connect("wss://localhost:%s/" % hp.rsplit(":", 1)[1], ssl=ctx) as ws:
                await ws.send("over tls")
                ct.check_eq(await ws.recv(), "over tls", "echo over wss")
                await ws.send(b"\x01" * 300000)
                ct.check_eq(len(await ws.recv()), 300000, "300 kB over wss")
                await ws.close(1000, "tls done")
        run(go())
        ct.check_eq(wait_line(p, "closed"), "closed code=1000 sent=1000 status=0 reason=tls done",
                    "the server's end")
    finally:
        stop_server(p)


# ---- compressed (permessage-deflate) ---------------------------------------------------


def _pmd():
    websockets()
    from websockets.extensions import permessage_deflate
    return permessage_deflate


async def _compressed_exchange(ws):
    """Text, binary, fragmented, small and 16 MiB messages (compressible and
    not) through an echo, then a ping."""
    ct.check_eq([e.name for e in ws.extensions], ["permessage-deflate"], "negotiated")
    for m in ["hello", "h\u00e9llo " * 100, b"\x00\x01\xff", bytes(range(256)) * 40]:
        await ws.send(m)
        ct.check_eq(await ws.recv(), m, "compressed echo of %d" % len(m))
    await ws.send(["frag", "ment", "ed \U0001d11e" * 50])
    ct.check_eq(await ws.recv(), "fragmented \U0001d11e" + "ed \U0001d11e" * 49, "fragmented")
    await ws.send([b"a" * 70000, b"b" * 5])
    ct.check_eq(await ws.recv(), b"a" * 70000 + b"b" * 5, "large fragments")
    noise = os.urandom(1 << 20)
    await ws.send(noise)
    ct.check(await ws.recv() == noise, "1 MiB incompressible echo differs")
    big = bytes(range(256)) * 65536  # 16 MiB
    await ws.send(big)
    got = await ws.recv()
    ct.check(got == big, "16 MiB compressed echo differs (%d bytes)" % len(got))
    pong = await ws.ping(b"xy")
    await asyncio.wait_for(pong, ct.T(10))


def test_python_client_compressed():
    """websockets' default offer, then one with every parameter, against
    the server's defaults and its own limits."""
    w, pmd = websockets(), _pmd()
    cases = [
        ((), "--deflate", None),
        ((), "--deflate", pmd.ClientPerMessageDeflateFactory(
            server_no_context_takeover=True, client_no_context_takeover=True,
            server_max_window_bits=10, client_max_window_bits=9)),
        ((), "--deflate=snct,cnct,sbits=11,cbits=10,level=1,min=1", None),
        ((), "--deflate=sbits=8", pmd.ClientPerMessageDeflateFactory(server_max_window_bits=9)),
    ]
    for args, flag, factory in cases:
        p, hp = start_server(*args, flags=[flag])
        try:
            async def go():
                kw = {"extensions": [factory], "compression": None} if factory else {}
                async with w.connect("ws://%s/" % hp, max_size=None, **kw) as ws:
                    await _compressed_exchange(ws)
                    await ws.close(4002, "python done")
            run(go(), 120)
            ct.check_eq(wait_line(p, "accepted"), "accepted compressed=1", flag)
            ct.check_eq(wait_line(p, "closed"), "closed code=4002 sent=4002 status=0 reason=python done",
                        "the server's end")
        finally:
            stop_server(p)


def test_python_client_offer_declined():
    """An offer the server cannot honour (server_max_window_bits=8: zlib's
    compressor cannot do 8) is declined: the connection is uncompressed."""
    w, pmd = websockets(), _pmd()
    p, hp = start_server(flags=["--deflate"])
    try:
        async def go():
            f = pmd.ClientPerMessageDeflateFactory(server_max_window_bits=8)
            async with w.connect("ws://%s/" % hp, extensions=[f], compression=None) as ws:
                ct.check_eq(ws.extensions, [], "no extension")
                await ws.send("x" * 1000)
                ct.check_eq(await ws.recv(), "x" * 1000, "uncompressed echo")
        run(go())
        ct.check_eq(wait_line(p, "accepted"), "accepted compressed=0", "declined")
    finally:
        stop_server(p)


def test_python_client_compressed_too_big():
    """max_message limits the decompressed size: 100 kB of zeros is a few
    hundred bytes compressed, and over the limit."""
    w = websockets()
    p, hp = start_server("65536", flags=["--deflate"])
    try:
        async def go():
            async with w.connect("ws://%s/" % hp) as ws:
                await ws.send(b"\0" * 100000)
                try:
                    await ws.recv()
                except w.ConnectionClosedError as e:
                    return e.code
        ct.check_eq(run(go()), 1009, "close code for an inflated message over max_message")
        ct.check_eq(wait_line(p, "closed"), "closed code=1006 sent=1009 status=ETOOBIG reason=",
                    "the server's end")
    finally:
        stop_server(p)


def test_c_client_python_server_compressed():
    """websockets' server defaults (window bits 12 both ways), then one
    without context takeover, then the client's own limits."""
    pmd = _pmd()
    cases = [
        (["--deflate"], None),
        (["--deflate"], pmd.ServerPerMessageDeflateFactory(
            server_no_context_takeover=True, client_no_context_takeover=True,
            server_max_window_bits=9, client_max_window_bits=10)),
        (["--deflate=snct,cnct,sbits=10,cbits=11,min=1"], None),
    ]
    for flags, factory in cases:
        kw = {"extensions": [factory], "compression": None} if factory else {}
        rc, out, err = run(_c_client(_echo, flags=flags, **kw), 120)
        ct.check_clean(err, "test_ws_peer client")
        ct.check("open compressed=1\n" in out, "%s: not compressed: %r" % (flags, out))
        for what in ("text", "binary", "fragmented", "16MiB", "utf8", "pong"):
            ct.check("ok %s\n" % what in out, "no 'ok %s' in %r" % (what, out))
        ct.check("closed code=1000 sent=1000 status=0 reason=bye" in out, out)
        ct.check_eq(rc, 0, "client exit status")


def test_python_server_bad_answer():
    """A server answering with client_max_window_bits=8 (which zlib's
    compressor cannot keep to): the C client fails the handshake."""
    pmd = _pmd()
    f = pmd.ServerPerMessageDeflateFactory(client_max_window_bits=8)
    rc, out, err = run(_c_client(_echo, flags=["--deflate"], extensions=[f], compression=None), 60)
    ct.check_clean(err, "test_ws_peer client")
    ct.check("closed code=1006 sent=0 status=EPROTO" in out, out)
    ct.check("open" not in out, out)


if __name__ == "__main__":
    ct.main()
