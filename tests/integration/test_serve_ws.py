#!/usr/bin/env python3
"""csock serve echo|upper|discard on ws:// and wss:// addresses, with real
peers: Python's `websockets` (Debian python3-websockets) for the messages
(text, binary, fragmented, 1 MiB, many clients at once, over TLS with the
test CA), the limits (a message over --max-line: 1009; -m; -i: 1001) and the
drain (SIGTERM: 1001); curl for the plain HTTP answers (426, 404); node's
`ws` (Debian node-ws) as another client; wrong arguments (status 2)."""
import asyncio
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

# Debian's python3-websockets is installed for Debian's python3: when ctest
# found another interpreter that lacks it, run there.
SYSTEM_PYTHON = "/usr/bin/python3"
if (__name__ == "__main__" and importlib.util.find_spec("websockets") is None
        and os.path.realpath(sys.executable) != os.path.realpath(SYSTEM_PYTHON)
        and os.access(SYSTEM_PYTHON, os.X_OK)):
    os.execv(SYSTEM_PYTHON, [SYSTEM_PYTHON, os.path.abspath(__file__)] + sys.argv[1:])

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import csocktest as ct  # noqa: E402
import tlscerts  # noqa: E402

MIB = 1 << 20
_WS_RE = re.compile(r"^(wss?)://(\[[^\]]+\]|[^:/]+):(\d+)(/.*)$")


def websockets():
    try:
        import websockets as w
    except ImportError:
        raise ct.Skipped("python3-websockets not installed")
    return w


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, ct.T(timeout)))


class WsServer(ct.Proc):
    """csock serve OPTS SERVICE ADDR..., ready once every endpoint printed
    its `listening` line; .urls holds them (ws://127.0.0.1:PORT/PATH)."""

    def __init__(self, service, *addrs, opts=()):
        super().__init__([ct.BIN, "serve", *opts, service, *addrs])
        self.urls = []
        try:
            for _ in addrs:
                line = self.read_line(15)
                ct.check(line.startswith("listening "), "serve said %r, stderr %r" % (line, self.stderr()))
                self.urls.append(line[len("listening "):])
        except BaseException:
            self.stop(signal.SIGKILL)
            raise

    def port(self, i=0):
        return int(_WS_RE.match(self.urls[i]).group(3))

    def finish(self, timeout=15):
        """SIGTERM: exit 0 with a clean stderr; returns the stderr."""
        ct.check(self.alive(), "csock serve died early: %r" % self.stderr()[-1000:])
        rc = self.stop(signal.SIGTERM, timeout)
        err = self.stderr()
        ct.check_clean(err, "csock serve")
        ct.check_eq(rc, 0, "exit status after SIGTERM (stderr %r)" % err[-500:])
        return err


def serving(service, *addrs, opts=()):
    websockets()
    return WsServer(service, *addrs, opts=opts)


async def exchange(ws, msg):
    await ws.send(msg)
    return await ws.recv()


UPGRADE = (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def raw_client(port):
    """A socket upgraded by hand: (socket, bytes after the 101's head)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=ct.T(10))
    s.sendall(UPGRADE)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        ct.check(chunk, "no 101")
        head += chunk
    ct.check(head.startswith(b"HTTP/1.1 101"), head)
    return s, head.split(b"\r\n\r\n", 1)[1]


def read_goodbye(s, rest):
    """Read the server's close frame 1001 "going away" (unmasked) off s."""
    while len(rest) < 2 + 2 + len("going away"):
        chunk = s.recv(4096)
        ct.check(chunk, "no close frame")
        rest += chunk
    ct.check_eq(rest[:4], b"\x88\x0c\x03\xe9", "close frame 1001, unmasked")


def test_listening_line():
    with_path = serving("echo", "ws://127.0.0.1:0/a/b", "ws://127.0.0.1:0", "tcp://127.0.0.1:0")
    try:
        ct.check(_WS_RE.match(with_path.urls[0]) and with_path.urls[0].endswith("/a/b"), with_path.urls)
        ct.check(with_path.urls[1].startswith("ws://127.0.0.1:") and with_path.urls[1].endswith("/"),
                 with_path.urls)
        ct.check(with_path.urls[2].startswith("tcp://127.0.0.1:"), with_path.urls)
    finally:
        with_path.finish()
    w = websockets()
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return  # no IPv6 loopback here: the IPv4 part above still ran
    v6 = serving("upper", "ws://[::1]:0/six")
    try:
        ct.check(re.match(r"^ws://\[::1\]:\d+/six$", v6.urls[0]), v6.urls)

        async def go():
            async with w.connect(v6.urls[0]) as ws:
                ct.check_eq(await exchange(ws, "v6"), "V6", "upper over IPv6")
        run(go())
    finally:
        v6.finish()


def test_echo_messages():
    w = websockets()
    srv = serving("echo", "ws://127.0.0.1:0/echo")
    try:
        async def go():
            async with w.connect(srv.urls[0], max_size=None) as ws:
                ct.check_eq(await exchange(ws, "h\u00e9llo\nw\u00f6rld"), "h\u00e9llo\nw\u00f6rld", "text")
                ct.check_eq(await exchange(ws, b"\x00\x01\xffbin\n"), b"\x00\x01\xffbin\n", "binary")
                ct.check_eq(await exchange(ws, ""), "", "an empty text")
                ct.check_eq(await exchange(ws, b""), b"", "an empty binary")
                ct.check_eq(await exchange(ws, ["frag", "men", "ted \U0001d11e"]), "fragmented \U0001d11e",
                            "a fragmented text")
                ct.check_eq(await exchange(ws, [b"a" * 70000, b"b" * 5]), b"a" * 70000 + b"b" * 5,
                            "fragments, a large first one")
                big = bytes(range(256)) * (MIB // 256)  # exactly 1 MiB, the default max
                got = await exchange(ws, big)
                ct.check(got == big, "1 MiB binary echo differs (%d bytes)" % len(got))
                text = ("0123456789abcde\u20ac" * (MIB // 18))
                got = await exchange(ws, text)
                ct.check(isinstance(got, str) and got == text, "a large text echo differs")
                await ws.close(1000, "done")
                ct.check_eq(ws.close_code, 1000, "close code")
        run(go())
    finally:
        srv.finish()


def test_upper_whole_messages():
    w = websockets()
    srv = serving("upper", "ws://127.0.0.1:0/")
    try:
        async def go():
            async with w.connect(srv.urls[0], max_size=None) as ws:
                # Whole, not split into lines; non-ASCII letters stay as they are.
                ct.check_eq(await exchange(ws, "one\ntwo\r\nthree \u00e9t\u00e9"), "ONE\nTWO\r\nTHREE \u00e9T\u00e9",
                            "a text in upper case")
                ct.check_eq(await exchange(ws, b"bin\x00ary\xe9"), b"BIN\x00ARY\xe9", "binary in upper case")
                ct.check_eq(await exchange(ws, ["fr", "ag"]), "FRAG", "fragmented")
                big = b"abcdefghijklmnop" * (MIB // 16)
                ct.check(await exchange(ws, big) == big.upper(), "1 MiB in upper case")
        run(go())
    finally:
        srv.finish()


def test_discard():
    w = websockets()
    srv = serving("discard", "ws://127.0.0.1:0/d", opts=["-v"])
    try:
        async def go():
            async with w.connect(srv.urls[0], max_size=None) as ws:
                for i in range(20):
                    await ws.send("message %d" % i)
                await ws.send(b"x" * MIB)
                # The pong comes after whatever the server sent for the
                # messages before it: nothing.
                await asyncio.wait_for(await ws.ping(b"p"), ct.T(20))
                await ws.close()
                try:
                    got = await ws.recv()
                    ct.check(False, "discard answered %r" % got[:40])
                except w.ConnectionClosedOK:
                    pass
        run(go())
        ct.wait_for(lambda: "21 messages in, 0 out" in srv.stderr(), 10, "the -v close line")
    finally:
        srv.finish()


def _certs():
    ct.need("openssl")
    d = ct.tmpdir()
    if not os.path.exists(os.path.join(d, "ca.pem")):
        tlscerts.make(d)
    return d


def test_wss_echo_and_upper():
    import ssl
    w = websockets()
    d = _certs()
    tls = ["--cert", os.path.join(d, "server.pem"), "--key", os.path.join(d, "server.key")]
    for service, f in (("echo", lambda m: m), ("upper", lambda m: m.upper())):
        srv = serving(service, "wss://127.0.0.1:0/secure", "ws://127.0.0.1:0/plain", opts=tls)
        try:
            ct.check(srv.urls[0].startswith("wss://"), srv.urls)
            ctx = ssl.create_default_context(cafile=os.path.join(d, "ca.pem"))

            async def go():
                url = "wss://localhost:%d/secure" % srv.port(0)
                async with w.connect(url, ssl=ctx, max_size=None) as ws:
                    ct.check_eq(await exchange(ws, "over tls"), f("over tls"), service + " text over wss")
                    ct.check_eq(await exchange(ws, b"b\x00in"), f(b"b\x00in"), service + " binary over wss")
                    big = b"q" * MIB
                    ct.check(await exchange(ws, big) == f(big), service + " 1 MiB over wss")
                async with w.connect(srv.urls[1]) as ws:  # the plain endpoint beside it
                    ct.check_eq(await exchange(ws, "plain"), f("plain"), service + " on ws://")
                # wss path check: another path is 404, over TLS too
                try:
                    async with w.connect("wss://localhost:%d/other" % srv.port(0), ssl=ctx):
                        ct.check(False, "upgraded on a wrong path")
                except w.InvalidStatusCode as e:
                    ct.check_eq(e.status_code, 404, "status for a wrong path over wss")
            run(go())
        finally:
            srv.finish()


def test_many_clients():
    w = websockets()
    srv = serving("echo", "ws://127.0.0.1:0/", opts=["-t", "2"])
    try:
        async def client(i):
            async with w.connect(srv.urls[0], max_size=None) as ws:
                for j in range(20):
                    msg = ("c%d m%d " % (i, j)) * (1 + j * 50)
                    ct.check_eq(await exchange(ws, msg), msg, "client %d message %d" % (i, j))
                b = bytes([i]) * 200000
                ct.check(await exchange(ws, b) == b, "client %d 200 kB" % i)
            return i

        async def go():
            done = await asyncio.gather(*(client(i) for i in range(60)))
            ct.check_eq(sorted(done), list(range(60)), "clients done")
            # 300 open at once, then each talks.
            conns = await asyncio.gather(*(w.connect(srv.urls[0]) for _ in range(300)))
            got = await asyncio.gather(*(exchange(c, "n%d" % i) for i, c in enumerate(conns)))
            ct.check_eq(got, ["n%d" % i for i in range(300)], "300 clients at once")
            await asyncio.gather(*(c.close() for c in conns))
        run(go(), 120)
    finally:
        srv.finish()


def test_message_too_big():
    w = websockets()
    srv = serving("echo", "ws://127.0.0.1:0/", opts=["--max-line", "1000", "-v"])
    try:
        async def go():
            async with w.connect(srv.urls[0], max_size=None) as ws:
                ct.check_eq(await exchange(ws, b"m" * 1000), b"m" * 1000, "a message of the max")
                await ws.send(b"m" * 1001)
                try:
                    await ws.recv()
                    ct.check(False, "a reply to a message over the max")
                except w.ConnectionClosed as e:
                    ct.check_eq(e.code, 1009, "close code for a message over the max")
            # Fragments adding up to more are too big as well.
            async with w.connect(srv.urls[0], max_size=None) as ws:
                await ws.send([b"f" * 600, b"f" * 600])
                try:
                    await ws.recv()
                    ct.check(False, "a reply to fragments over the max")
                except w.ConnectionClosed as e:
                    ct.check_eq(e.code, 1009, "close code for fragments over the max")
        run(go())
        ct.wait_for(lambda: "sent 1009" in srv.stderr(), 10, "a -v line with the 1009")
    finally:
        srv.finish()


def test_max_conns():
    w = websockets()
    srv = serving("echo", "ws://127.0.0.1:0/", "tcp://127.0.0.1:0", opts=["-m", "2", "-v"])
    try:
        tport = int(srv.urls[1].rsplit(":", 1)[1])

        async def refused():
            try:
                async with w.connect(srv.urls[0], open_timeout=ct.T(10)) as ws:
                    await ws.send("over")
                    await ws.recv()
                return False
            except (w.InvalidHandshake, w.ConnectionClosed, OSError):
                return True

        async def go():
            tcp = socket.create_connection(("127.0.0.1", tport), timeout=ct.T(10))
            # Connected is not accepted: until the server has taken it, it
            # does not count, and the "third" below could get its slot.
            mine = "connection from tcp://127.0.0.1:%d" % tcp.getsockname()[1]
            ct.wait_for(lambda: mine in srv.stderr(), 10, "the server to accept the TCP client")
            try:
                async with w.connect(srv.urls[0]) as one:
                    ct.check_eq(await exchange(one, "one"), "one", "the first WebSocket")
                    # A TCP client and a WebSocket: -m 2 is reached, across endpoints.
                    ct.check(await refused(), "a third connection was served over -m 2")
                    ct.check_eq(await exchange(one, "still"), "still", "the first one goes on")
            finally:
                tcp.close()
            # Both gone: a new WebSocket is served (the count drops as the
            # server sees the closes, so ask until it has).
            deadline = time.monotonic() + ct.T(10)
            while True:
                try:
                    async with w.connect(srv.urls[0]) as again:
                        ct.check_eq(await exchange(again, "again"), "again", "after the others left")
                    break
                except (w.InvalidHandshake, w.ConnectionClosed, OSError):
                    ct.check(time.monotonic() < deadline, "still refused after the others left")
                    await asyncio.sleep(0.05)
        run(go())
        ct.check("connections already (-m)" in srv.stderr(), srv.stderr())
    finally:
        srv.finish()


def test_idle_timeout():
    w = websockets()
    srv = serving("echo", "ws://127.0.0.1:0/", opts=["-i", "1"])
    try:
        async def go():
            async with w.connect(srv.urls[0]) as busy, w.connect(srv.urls[0]) as idle:
                t0 = time.monotonic()
                # busy talks every 0.2 s for 2.2 s: never idle 1 s (generous).
                for i in range(11):
                    ct.check_eq(await exchange(busy, "m%d" % i), "m%d" % i, "busy client")
                    await asyncio.sleep(0.2)
                ct.check(busy.open, "a busy client was closed by -i 1")
                try:
                    await asyncio.wait_for(idle.recv(), ct.T(10))
                    ct.check(False, "a message on the idle client")
                except w.ConnectionClosed as e:
                    ct.check_eq(e.code, 1001, "the idle client's close code")
                ct.check(time.monotonic() - t0 >= 0.9, "closed before it was idle 1 s")
                # Now the busy one goes quiet too.
                t1 = time.monotonic()
                try:
                    await asyncio.wait_for(busy.recv(), ct.T(10))
                except w.ConnectionClosed as e:
                    ct.check_eq(e.code, 1001, "the quiet client's close code")
                ct.check(time.monotonic() - t1 >= 0.5, "closed too early after the last message")
        run(go())
    finally:
        srv.finish()


def test_idle_timeout_spares_a_slow_message():
    """-i counts bytes, not messages: a message arriving slowly for longer
    than the timeout is not idle."""
    srv = serving("echo", "ws://127.0.0.1:0/", opts=["-i", "1"])
    try:
        s, rest = raw_client(srv.port())
        ct.check_eq(rest, b"", "bytes before the first message")
        n = 600000
        s.sendall(bytes([0x82, 0xFF]) + n.to_bytes(8, "big") + b"\0\0\0\0")  # zero mask key
        for i in range(12):  # 1.8 s or more in all, a piece every 0.15 s
            s.sendall(b"s" * (n // 12))
            time.sleep(0.15)
        want = bytes([0x82, 0x7F]) + n.to_bytes(8, "big") + b"s" * n
        got = ct.recv_exact(s, len(want))
        ct.check(got == want, "the slow message's echo differs")
        s.close()
    finally:
        srv.finish()


def test_sigterm_drain():
    w = websockets()
    srv = serving("echo", "ws://127.0.0.1:0/", "tcp://127.0.0.1:0",
                  opts=["-v", "-t", "2", "--drain-timeout", "20"])
    try:
        async def go():
            clients = [await w.connect(srv.urls[0]) for _ in range(6)]
            for i, c in enumerate(clients):
                ct.check_eq(await exchange(c, "hi %d" % i), "hi %d" % i, "before the drain")
            t0 = time.monotonic()
            os.kill(srv.pid, signal.SIGTERM)
            for c in clients:
                try:
                    await asyncio.wait_for(c.recv(), ct.T(10))
                    ct.check(False, "a message after SIGTERM")
                except w.ConnectionClosed as e:
                    ct.check_eq((e.code, e.reason), (1001, "going away"), "close at the drain")
            # Every closing handshake finished: the server exits long before
            # its 20 s drain timeout.
            rc = srv.wait(15)
            ct.check_eq(rc, 0, "exit status after the drain")
            ct.check(time.monotonic() - t0 < 15, "the drain waited for its timeout")
        run(go())
        err = srv.stderr()
        ct.check_clean(err, "csock serve")
        ct.check_eq(err.count("code 1001, sent 1001"), 6, "-v close lines: %r" % err[-1500:])
    finally:
        srv.stop(signal.SIGKILL)


def test_slow_answer_to_the_drain_close():
    """A peer that answers the close 1001 after the drain's quiet period
    (250 ms): the closing handshake still completes (csock_stream_on_stop)
    instead of the connection being ended under it (logged as 1006)."""
    srv = serving("echo", "ws://127.0.0.1:0/", opts=["-v", "--drain-timeout", "20"])
    try:
        s, rest = raw_client(srv.port())
        os.kill(srv.pid, signal.SIGTERM)
        read_goodbye(s, rest)
        time.sleep(0.8)  # past the drain's 250 ms quiet period, on purpose
        key = b"\x11\x22\x33\x44"
        s.sendall(b"\x88\x82" + key + bytes(b ^ key[i % 4] for i, b in enumerate(b"\x03\xe9")))
        tail = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            tail += chunk
        ct.check_eq(tail, b"", "nothing after the close")
        ct.check_eq(srv.wait(15), 0, "exit status")
        err = srv.stderr()
        ct.check("code 1001, sent 1001" in err and "1006" not in err, "-v close line: %r" % err[-800:])
        s.close()
    finally:
        srv.stop(signal.SIGKILL)


def test_drain_timeout_with_a_silent_peer():
    """A peer that never answers the close 1001: the drain timeout ends it."""
    srv = serving("echo", "ws://127.0.0.1:0/", opts=["--drain-timeout", "1"])
    try:
        s, rest = raw_client(srv.port())
        t0 = time.monotonic()
        os.kill(srv.pid, signal.SIGTERM)
        read_goodbye(s, rest)
        ct.check_eq(srv.wait(15), 0, "exit status")
        ct.check(time.monotonic() - t0 < 10, "the drain took too long")
        s.close()
        ct.check_clean(srv.stderr(), "csock serve")
    finally:
        srv.stop(signal.SIGKILL)


def test_write_timeout():
    """A client that sends and never reads: backpressure stops reading it,
    and --write-timeout closes it."""
    srv = serving("echo", "ws://127.0.0.1:0/", opts=["--write-timeout", "1", "-v"])
    try:
        s, _ = raw_client(srv.port())
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        payload = b"\0" * 65536  # masked with a zero key: the bytes as they are
        frame = bytes([0x82, 0xFF]) + len(payload).to_bytes(8, "big") + b"\0\0\0\0" + payload
        s.settimeout(ct.T(2))
        sent = 0
        try:
            while sent < 256 * (1 << 20):  # bounded: the server stops reading long before
                s.sendall(frame)
                sent += len(frame)
        except (socket.timeout, OSError):
            pass
        ct.check(sent < 256 * (1 << 20), "the server never stopped reading")
        ct.wait_for(lambda: "dropped" in srv.stderr(), 15, "the write timeout's -v line")
        ct.check("timed out" in srv.stderr(), srv.stderr()[-500:])
        s.close()
    finally:
        srv.finish()


def _curl(*args):
    r = subprocess.run(["curl", "-s", "-S", "-i", "--max-time", str(ct.T(20)), *args],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=ct.T(30))
    return r.stdout.decode("latin-1")


def test_plain_http_answers():
    ct.need("curl")
    srv = serving("echo", "ws://127.0.0.1:0/sock", opts=["-v"])
    try:
        base = "http://127.0.0.1:%d" % srv.port()
        out = _curl(base + "/sock")
        ct.check(out.startswith("HTTP/1.1 426"), out[:200])
        ct.check(re.search(r"(?im)^upgrade: websocket\r?$", out), out[:400])
        ct.check(_curl(base + "/sock?x=1").startswith("HTTP/1.1 426"), "a query on the path")
        ct.check(_curl(base + "/other").startswith("HTTP/1.1 404"), "another path")
        ct.check(_curl(base + "/").startswith("HTTP/1.1 404"), "the root")
        ct.check(_curl(base + "/sockx").startswith("HTTP/1.1 404"), "a longer path")
        ct.check(_curl("-X", "POST", "-d", "x", base + "/sock").startswith("HTTP/1.1 405"), "POST")
        # An upgrade to something else, or a bad key: refused, not upgraded.
        bad = _curl("-H", "Upgrade: websocket", "-H", "Connection: Upgrade",
                    "-H", "Sec-WebSocket-Version: 13", "-H", "Sec-WebSocket-Key: short", base + "/sock")
        ct.check(bad.startswith("HTTP/1.1 400"), bad[:200])
        err = srv.stderr()
        ct.check('"GET /sock" 426' in err and '"GET /other" 404' in err, err[-1500:])
        ct.check("refused WebSocket from tcp://127.0.0.1:" in err and '"GET /sock" 400' in err, err[-1500:])
    finally:
        srv.finish()


def test_subprotocol_and_verbose():
    w = websockets()
    srv = serving("upper", "ws://127.0.0.1:0/p", opts=["-v", "--subprotocol", "chat.v2",
                                                        "--subprotocol", "chat"])
    try:
        async def go():
            async with w.connect(srv.urls[0], subprotocols=["chat", "chat.v2"]) as ws:
                ct.check_eq(ws.subprotocol, "chat.v2", "the server's preferred subprotocol")
                ct.check_eq(await exchange(ws, "x"), "X", "upper")
                await ws.close(4000, "bye")
            async with w.connect(srv.urls[0]) as ws:
                ct.check_eq(ws.subprotocol, None, "none offered")
        run(go())
        ct.wait_for(lambda: srv.stderr().count("closed ") >= 2, 10, "two -v close lines")
        err = srv.stderr()
        ct.check("path /p, subprotocol chat.v2" in err and "path /p, subprotocol none" in err, err)
        ct.check(re.search(r"closed tcp://127\.0\.0\.1:\d+: code 4000, sent 4000 \(\d+ bytes in, \d+ out; "
                           r"1 messages in, 1 out\)", err), err)
    finally:
        srv.finish()


NODE_CLIENT = r"""
const WebSocket = require('ws');
const ws = new WebSocket(process.argv[process.argv.length - 1], {maxPayload: 0});
const big = Buffer.alloc(1 << 20, 7);
const steps = [['text', 'h\u00e9llo node'], ['binary', Buffer.from([0, 1, 255])], ['big', big]];
let i = 0;
function next() {
  if (i === steps.length) { ws.close(1000, 'node done'); return; }
  const [name, msg] = steps[i];
  ws.send(msg, {binary: typeof msg !== 'string'});
}
ws.on('open', next);
ws.on('message', (data, isBinary) => {
  const [name, msg] = steps[i];
  const same = typeof msg === 'string' ? (!isBinary && data.toString() === msg)
                                       : (isBinary && Buffer.compare(data, msg) === 0);
  console.log((same ? 'ok ' : 'bad ') + name);
  i++;
  next();
});
ws.on('close', (code, reason) => { console.log('closed ' + code + ' ' + reason); });
ws.on('error', (e) => { console.log('error ' + e.message); process.exitCode = 1; });
"""


def test_node_ws_client():
    node = shutil.which("node") or shutil.which("nodejs")
    if not node:
        ct.need("node")
    env = dict(os.environ, NODE_PATH="/usr/share/nodejs")
    probe = subprocess.run([node, "-e", "require('ws')"], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=ct.T(30))
    if probe.returncode != 0:
        raise ct.Skipped("node's ws module (node-ws) not installed")
    srv = serving("echo", "ws://127.0.0.1:0/node")
    try:
        r = subprocess.run([node, "-e", NODE_CLIENT, srv.urls[0]], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=ct.T(60))
        out = r.stdout.decode()
        # The server answers node's close with its code (no reason).
        ct.check_eq(out, "ok text\nok binary\nok big\nclosed 1000 \n",
                    "node client (stderr %r)" % r.stderr.decode()[-500:])
        ct.check_eq(r.returncode, 0, "node exit status")
    finally:
        srv.finish()


def test_wrong_arguments():
    cases = [
        (["echo", "wss://127.0.0.1:0/"], "wss:// needs --cert"),
        (["echo", "ws://127.0.0.1:0/", "--cert", "x.pem", "--key", "x.key"], "wss://"),
        (["echo", "ws://127.0.0.1:99999/"], "ws://127.0.0.1:99999/"),
        (["echo", "ws://127.0.0.1:0/a?b=1"], "query"),
        (["echo", "ws://[::1/"], "ws://[::1/"),
        (["echo", "tcp://127.0.0.1:0", "--subprotocol", "x"], "--subprotocol"),
        (["echo", "ws://127.0.0.1:0/", "--subprotocol", "a b"], "--subprotocol"),
    ]
    for args, word in cases:
        rc, out, err = ct.run([ct.BIN, "serve", *args], timeout=20)
        err = err.decode() if isinstance(err, bytes) else err
        ct.check_eq(rc, 2, "exit status of serve %s (stderr %r)" % (" ".join(args), err))
        lines = err.strip().splitlines()
        ct.check(len(lines) == 1 and word in lines[0], "one line naming %r: %r" % (word, err))


def test_help_mentions_ws():
    rc, out, err = ct.run([ct.BIN, "serve", "--help"])
    out = out.decode() if isinstance(out, bytes) else out
    ct.check_eq(rc, 0, "serve --help status")
    for word in ("ws://", "wss://", "426", "1009", "1001", "--subprotocol"):
        ct.check(word in out, "serve --help lacks %r" % word)


if __name__ == "__main__":
    ct.main()
