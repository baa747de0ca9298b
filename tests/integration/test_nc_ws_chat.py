#!/usr/bin/env python3
"""csock serve chat on several endpoints at once, one room: tcp://, unix:
and ws:// (and tls:// with wss://). A line from a tcp or unix member is one
text message to a ws member (tagged, without its "\\n"); a ws member's
message is a line to the others (several lines: several tagged lines);
join and leave announcements and tags reach ws members too; /nick NAME
renames a member of any kind; the ws endpoint serves the chat page to a GET
without Upgrade."""
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nckit  # noqa: E402

if __name__ == "__main__":
    nckit.reexec_with_websockets(__file__)

import asyncio  # noqa: E402
import csocktest as ct  # noqa: E402
import tlscerts  # noqa: E402
from nckit import Child, run, websockets  # noqa: E402


class Member:
    """A tcp, tls or unix member: a socket read line by line."""

    def __init__(self, sock):
        self.s, self.buf = sock, b""
        self.s.settimeout(ct.T(10))  # blocking reads in a thread: TLS sockets too

    async def line(self, timeout=10):
        loop = asyncio.get_running_loop()
        while b"\n" not in self.buf:
            d = await loop.run_in_executor(None, self.s.recv, 4096)
            ct.check(d, "closed; have %r" % self.buf)
            self.buf += d
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    async def said(self, timeout=10):
        """The next line that is not part of a join announcement."""
        return await self.until(lambda l: not (l.startswith("<announce> already connected:")
                                               or " is connected as <" in l), timeout)

    async def until(self, pred, timeout=10):
        while True:
            line = await self.line(timeout)
            if pred(line):
                return line

    async def send(self, data):
        await asyncio.get_running_loop().run_in_executor(None, self.s.sendall, data)


async def ws_until(ws, pred, timeout=10):
    while True:
        m = await asyncio.wait_for(ws.recv(), ct.T(timeout))
        if pred(m):
            return m


def endpoints(lines):
    """{"tcp": "tcp://...", "unix": "unix:...", "ws": "ws://..."}."""
    return {a.split(":", 1)[0]: a for a in lines}


async def start_chat(*addrs, opts=()):
    c = await Child.start("serve", "chat", *addrs, *opts)
    eps = [await c.listening("stdout") for _ in addrs]
    return c, endpoints(eps)


def tcp_member(addr):
    host, port = nckit.hostport(addr)
    return Member(socket.create_connection((host, port), timeout=ct.T(10)))


def unix_member(addr):
    s = socket.socket(socket.AF_UNIX)
    s.connect(addr[len("unix:"):])
    return Member(s)


def test_one_room_tcp_unix_ws():
    w = websockets()
    path = os.path.join(ct.tmpdir(), "chat.sock")

    async def go():
        srv, eps = await start_chat("tcp://127.0.0.1:0", "unix:" + path, "ws://127.0.0.1:0/")
        try:
            ct.check(eps["ws"].startswith("ws://127.0.0.1:") and eps["ws"].endswith("/"), eps)
            a = tcp_member(eps["tcp"])
            await a.until(lambda l: "already connected: nobody." in l)
            b = unix_member(eps["unix"])
            await b.until(lambda l: "already connected:" in l)
            async with w.connect(eps["ws"]) as ws:
                first = await ws_until(ws, lambda m: True)
                ct.check(first.startswith("<announce> 127.0.0.1 is connected as <user3>."), first)
                ct.check("\n" not in first, "one line per message: %r" % first)
                listed = await ws_until(ws, lambda m: True)
                ct.check(listed.startswith("<announce> already connected: ") and
                         "as <user1>" in listed and "as <user2>" in listed, listed)
                await a.until(lambda l: "is connected as <user3>." in l)
                await b.until(lambda l: "is connected as <user3>." in l)

                # tcp -> ws and unix; ws -> tcp and unix, one line per line.
                await a.send(b"hello from tcp\n")
                ct.check_eq(await ws_until(ws, lambda m: "from tcp" in m),
                            "<user1> hello from tcp", "tcp line as a ws message")
                ct.check_eq(await b.until(lambda l: "from tcp" in l), "<user1> hello from tcp",
                            "tcp line to unix")
                await ws.send("hi from ws")
                ct.check_eq(await a.said(), "<user3> hi from ws", "ws message to tcp")
                ct.check_eq(await b.said(), "<user3> hi from ws", "ws message to unix")
                await ws.send("two\nlines")
                ct.check_eq([await a.said(), await a.said()], ["<user3> two", "<user3> lines"],
                            "a message of two lines: two tagged lines")
                await b.send(b"unix says\n")
                ct.check_eq(await ws_until(ws, lambda m: "unix says" in m),
                            "<user2> unix says", "unix line as a ws message")
                ct.check_eq(await a.said(), "<user2> unix says", "unix line to tcp")

                # /nick: every kind of member; bad and taken names.
                await a.send(b"/nick alice\n")
                ct.check_eq(await ws_until(ws, lambda m: "known as" in m),
                            "<announce> <user1> is now known as <alice>.", "tcp /nick to ws")
                ct.check_eq(await a.said(), "<announce> <user1> is now known as <alice>.",
                            "the renamed member is told too")
                await a.send(b"x from alice\n")
                ct.check_eq(await ws_until(ws, lambda m: "x from" in m),
                            "<alice> x from alice", "the new tag")
                await ws.send("/nick bob")
                ct.check_eq(await a.until(lambda l: "known as" in l),
                            "<announce> <user3> is now known as <bob>.", "ws /nick to tcp")
                await ws.send("/nick alice")
                ct.check_eq(await ws_until(ws, lambda m: "taken" in m),
                            "<announce> /nick: <alice> is taken.", "a taken name")
                await b.send(b"/nick no good!\n")
                ct.check("/nick NAME: 1-32 characters" in await b.until(lambda l: "/nick" in l),
                         "a bad name is explained")
                await b.send(b"/nick " + b"c" * 33 + b"\n")
                ct.check("1-32" in await b.until(lambda l: "/nick" in l), "a long name")
                await ws.send("after nick")
                ct.check_eq(await a.until(lambda l: "after nick" in l), "<bob> after nick",
                            "ws member's new tag")
                await ws.close()
            ct.check_eq(await a.until(lambda l: "disconnected" in l),
                        "<announce> <bob> is disconnected.", "leave announcement with the name")
            await stop_clean(srv, a, b)
        finally:
            await srv.close()

    run(go())


def test_utf8_text_passes_through():
    """UTF-8 reaches every member as it was sent ("héllo", not
    "h\\303\\251llo"); control bytes (C0, DEL, C1) and bytes that are not
    UTF-8 are still escaped as \\ooo, whichever kind of member sent them."""
    w = websockets()

    async def go():
        srv, eps = await start_chat("tcp://127.0.0.1:0", "ws://127.0.0.1:0/")
        try:
            a = tcp_member(eps["tcp"])
            await a.until(lambda l: "already connected: nobody." in l)
            b = tcp_member(eps["tcp"])
            await b.until(lambda l: "already connected:" in l)
            async with w.connect(eps["ws"]) as ws:  # as the chat page's browser would
                await a.until(lambda l: "is connected as <user3>." in l)
                await ws.send("h\u00e9llo w\u00f6rld \u2713 \U0001f600")
                want = "<user3> h\u00e9llo w\u00f6rld \u2713 \U0001f600"
                ct.check_eq(await a.said(), want, "a browser's UTF-8 to a terminal")
                ct.check_eq(await b.said(), want, "and to the other")
                await a.send("h\u00e9llo\n".encode())
                ct.check_eq(await ws_until(ws, lambda m: "llo" in m), "<user1> h\u00e9llo",
                            "a terminal's UTF-8 to a browser")
                ct.check_eq(await b.said(), "<user1> h\u00e9llo", "and to another terminal")
                await a.send(b"bad \xff ctl \x01\x1b[2J del \x7f c1 \xc2\x9b cut \xe2\x82 end\n")
                esc = "<user1> bad \\377 ctl \\001\\033[2J del \\177 c1 \\302\\233 cut \\342\\202 end"
                ct.check_eq(await ws_until(ws, lambda m: "bad" in m), esc, "escaped for a browser")
                ct.check_eq(await b.said(), esc, "escaped for a terminal")
                await ws.close()
            await stop_clean(srv, a, b)
        finally:
            await srv.close()

    run(go())


async def stop_clean(srv, *members):
    """The members leave, then SIGTERM: serve chat ends with 0 and says nothing."""
    for m in members:
        m.s.close()
    rc, _, err = await stop(srv)
    ct.check_eq((rc, err), (0, ""), "serve chat's end after SIGTERM")


async def stop(c):
    c.p.terminate()
    return await c.finish()


def test_page_and_plain_get():
    """The ws:// endpoint of chat serves the page at its path (text/html,
    no-store); another path is 404; a ws endpoint of listen without --chat
    answers 426 to a plain GET."""
    async def go():
        srv, eps = await start_chat("ws://127.0.0.1:0/room", "tcp://127.0.0.1:0")
        try:
            status, head, body = nckit.http_get(eps["ws"])
            ct.check_eq(status, 200, "GET of the chat page")
            ct.check_eq(nckit.field(head, "Content-Type"), "text/html; charset=utf-8", "type")
            ct.check_eq(nckit.field(head, "Cache-Control"), "no-store", "cache")
            ct.check(b"<html" in body.lower() or b"<!doctype html" in body.lower(), body[:200])
            ct.check_eq(nckit.http_get(eps["ws"], "/")[0], 404, "GET of another path")
            rc, _, err = await stop(srv)
            ct.check_eq(rc, 0, "serve chat status after SIGTERM (stderr %r)" % err)
        finally:
            await srv.close()
        lst = await Child.start("listen", "ws://127.0.0.1:0/")
        try:
            url = await lst.listening()
            status, head, _ = nckit.http_get(url)
            ct.check_eq(status, 426, "listen without --chat: plain GET")
        finally:
            await lst.close()

    run(go())


def test_stop_says_going_away():
    """SIGTERM: ws members get a close 1001 (going away) before the end, and
    serve chat exits 0."""
    w = websockets()

    async def go():
        srv, eps = await start_chat("ws://127.0.0.1:0/")
        try:
            async with w.connect(eps["ws"]) as ws:
                await ws_until(ws, lambda m: "already connected" in m)
                srv.p.terminate()
                try:
                    await asyncio.wait_for(ws.recv(), ct.T(10))
                except w.exceptions.ConnectionClosed:
                    pass
                ct.check_eq(ws.close_code, 1001, "the close code members get")
            rc, _, err = await srv.finish()
            ct.check_eq((rc, err), (0, ""), "serve chat's end")
        finally:
            await srv.close()

    run(go())


def test_tls_and_wss_in_one_room():
    """tls:// and wss:// endpoints share the room and one --cert/--key."""
    import ssl
    w = websockets()
    ct.need("openssl")
    d = ct.tmpdir()
    tlscerts.make(d)
    cert, key, ca = (os.path.join(d, f) for f in ("server.pem", "server.key", "ca.pem"))

    async def go():
        srv, eps = await start_chat("tls://127.0.0.1:0", "wss://127.0.0.1:0/",
                                    opts=("--cert", cert, "--key", key))
        try:
            ctx = ssl.create_default_context(cafile=ca)
            host, port = nckit.hostport(eps["tls"])
            raw = socket.create_connection((host, port), timeout=ct.T(10))
            t = Member(ctx.wrap_socket(raw, server_hostname="localhost"))
            await t.until(lambda l: "nobody" in l)
            url = eps["wss"].replace("127.0.0.1", "localhost")
            async with w.connect(url, ssl=ctx) as ws:
                await t.until(lambda l: "as <user2>" in l)
                await ws.send("secure hello")
                ct.check_eq(await t.said(), "<user2> secure hello", "wss -> tls")
            t.s.close()
        finally:
            await srv.close()

    run(go())


if __name__ == "__main__":
    ct.main()
