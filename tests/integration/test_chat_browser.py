#!/usr/bin/env python3
"""A browser and a terminal in one chat room: headless Chromium (Debian's
`chromium`) loads the chat page from `csock serve chat tcp://... ws://...`,
takes a name, and talks with a `csock connect tcp://` client in the same
room, both ways, over ws:// and over wss://; then the server goes away
and comes back, and the page reconnects (backing off) and takes its name
again. A screenshot of the page goes to the test's output folder (printed).

Chromium is driven through the DevTools protocol by the small client below
(Python's `websockets`, Debian python3-websockets): no npm, no driver. The
tests skip, saying so, only when chromium cannot start.

Also: the embedded copy of the page (src/cli/chat_page.c) matches its
source src/cli/chat_page.html, and the server serves exactly that page."""
import asyncio
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import debpython  # noqa: E402
if __name__ == "__main__":
    debpython.reexec_for("websockets", __file__)
import csocktest as ct  # noqa: E402
import tlscerts  # noqa: E402

PAGE_HTML = os.path.join(ct.REPO, "src", "cli", "chat_page.html")
EMBED = os.path.join(ct.REPO, "scripts", "embed.py")
NAME = "browser_1"


def out_dir():
    """The test's output folder, in the build tree (ctest's CSOCK_BUILD,
    or beside the csock binary)."""
    base = os.environ.get("CSOCK_BUILD") or os.path.dirname(ct.BIN)
    d = os.path.join(base, "tests", "test_chat_browser.out")
    os.makedirs(d, exist_ok=True)
    return d


async def step(what, aw, seconds):
    """Await aw within a deadline (scaled); a timeout names the step."""
    try:
        return await asyncio.wait_for(aw, ct.T(seconds))
    except asyncio.TimeoutError:
        raise ct.TestFailure("timed out after %.0f s: %s" % (ct.T(seconds), what)) from None


# ---- the chat server and the terminal client ---------------------------------------

_LISTEN_RE = re.compile(r"^listening (\w+)://([0-9.]+):(\d+)(/\S*)?$")


class ChatServer(ct.Proc):
    """csock serve chat with a tcp:// and a ws:// (or wss://) endpoint;
    .tcp_port and .ws_port come from its `listening ADDR` lines (one per
    endpoint)."""

    def __init__(self, ws_port=0, scheme="ws", opts=()):
        super().__init__([ct.BIN, "serve", "chat", "tcp://127.0.0.1:0",
                          "%s://127.0.0.1:%d/" % (scheme, ws_port), *opts])
        self.scheme = scheme
        ports = {}
        try:
            for _ in range(2):
                line = self.read_line(15)
                m = _LISTEN_RE.match(line.strip())
                ct.check(m is not None, "unexpected serve output %r (stderr %r)"
                         % (line, self.stderr()[-500:]))
                ports[m.group(1)] = int(m.group(3))
        except BaseException:
            self.kill()
            raise
        ct.check("tcp" in ports and scheme in ports, "listening lines: %r" % ports)
        self.tcp_port, self.ws_port = ports["tcp"], ports[scheme]

    def finish(self):
        alive = self.alive()
        rc = self.stop(signal.SIGTERM)
        ct.check_clean(self.stderr(), "csock serve chat")
        ct.check(alive, "csock serve chat died during the test: %s, stderr %r"
                 % (rc, self.stderr()[-1000:]))
        ct.check_eq(rc, 0, "csock serve chat status after SIGTERM")


class Terminal(ct.Proc):
    """`csock connect tcp://127.0.0.1:PORT`: a terminal user in the room."""

    def __init__(self, port):
        super().__init__([ct.BIN, "connect", "tcp://127.0.0.1:%d" % port])

    def finish(self):
        self.stop()
        ct.check_clean(self.stderr(), "csock connect")

    def say(self, line):
        self.write(line.encode() + b"\n")

    async def expect(self, text, seconds=15):
        """Wait until the line `text` has arrived (now or before); returns
        all the output so far."""
        want = text.encode() + b"\n"
        got = await asyncio.to_thread(self.read_until, lambda o: want in o, seconds)
        return got.decode("utf-8", "replace")


# ---- chromium and a small DevTools client ------------------------------------------

class Cdp:
    """The DevTools protocol over one WebSocket to the browser, with one
    page attached in flat mode (its commands carry the sessionId)."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0
        self.pending = {}
        self.events = []            # (method, params), in order
        self.event_cond = asyncio.Condition()
        self.session = None
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self):
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                if "id" in msg:
                    fut = self.pending.pop(msg["id"], None)
                    if fut and not fut.done():
                        fut.set_result(msg)
                else:
                    async with self.event_cond:
                        self.events.append((msg.get("method"), msg.get("params", {})))
                        self.event_cond.notify_all()
        finally:
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(ct.TestFailure("DevTools connection closed"))

    async def call(self, method, seconds=20, browser=False, **params):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if self.session and not browser:
            msg["sessionId"] = self.session
        fut = asyncio.get_running_loop().create_future()
        self.pending[msg["id"]] = fut
        await self.ws.send(json.dumps(msg))
        reply = await step("DevTools " + method, fut, seconds)
        if "error" in reply:
            raise ct.TestFailure("DevTools %s: %s" % (method, reply["error"]))
        return reply.get("result", {})

    async def event(self, method, seconds=20):
        """Wait for the first event `method` not yet taken."""
        async def wait():
            async with self.event_cond:
                while True:
                    for i, (m, p) in enumerate(self.events):
                        if m == method:
                            del self.events[i]
                            return p
                    await self.event_cond.wait()
        return await step("DevTools event " + method, wait(), seconds)

    def exceptions(self):
        return [p for m, p in self.events if m == "Runtime.exceptionThrown"]

    def log_errors(self):
        """Errors the browser logged for the page (a CSP violation, a
        failed load)."""
        return [p["entry"].get("text") for m, p in self.events
                if m == "Log.entryAdded" and p["entry"].get("level") == "error"]

    async def open_page(self):
        target = await self.call("Target.createTarget", url="about:blank")
        att = await self.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)
        self.session = att["sessionId"]
        await self.call("Page.enable")
        await self.call("Runtime.enable")
        await self.call("Log.enable")

    async def navigate(self, url):
        nav = await self.call("Page.navigate", url=url)
        ct.check("errorText" not in nav, "navigating to %s: %s" % (url, nav.get("errorText")))
        await self.event("Page.loadEventFired")

    async def js(self, expr, seconds=20):
        """The value of a JavaScript expression in the page (a promise is
        awaited)."""
        r = await self.call("Runtime.evaluate", seconds, expression=expr,
                            awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in r:
            raise ct.TestFailure("page script %r threw: %s" % (expr[:80], r["exceptionDetails"]))
        return r["result"].get("value")

    async def until(self, what, cond, seconds=20):
        """Wait, event-driven, until the JavaScript expression cond is
        truthy: a MutationObserver re-checks it on every change of the
        page. Returns its value; a timeout shows the page's state."""
        expr = """new Promise(resolve => {
            const check = () => {
                const v = (%s);
                if (v) { obs.disconnect(); resolve(v); }
            };
            const obs = new MutationObserver(check);
            obs.observe(document.documentElement, {subtree: true, childList: true,
                                                   characterData: true, attributes: true});
            check();
        })""" % cond
        try:
            return await self.js(expr, seconds)
        except ct.TestFailure as e:
            state = await self.js(PAGE_STATE, 10)
            raise ct.TestFailure("%s: %s\npage: %s" % (what, e, state)) from None

    async def type_text(self, element_id, text, enter=True):
        """Focus an element and type into it as a keyboard would (over
        what it held: that is selected first)."""
        await self.js("(e => { e.focus(); e.select(); })(document.getElementById(%s))"
                      % json.dumps(element_id))
        await self.call("Input.insertText", text=text)
        if enter:
            key = dict(key="Enter", code="Enter", windowsVirtualKeyCode=13, nativeVirtualKeyCode=13)
            await self.call("Input.dispatchKeyEvent", type="keyDown", text="\r", **key)
            await self.call("Input.dispatchKeyEvent", type="keyUp", **key)

    async def click(self, element_id):
        """A mouse click in the middle of an element."""
        box = await self.js("(r => [r.x + r.width / 2, r.y + r.height / 2])"
                            "(document.getElementById(%s).getBoundingClientRect())"
                            % json.dumps(element_id))
        for kind in ("mousePressed", "mouseReleased"):
            await self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1],
                            button="left", clickCount=1)


# The messages list as [class, who, text] triples, for the conditions below.
LINES = ("[...document.querySelectorAll('#messages li')]"
         ".map(li => [li.className, li.dataset.who, li.textContent])")
PAGE_STATE = """JSON.stringify({status: document.getElementById('status').textContent,
    state: document.getElementById('status').dataset.state, lines: %s})""" % LINES


def line_shown(cls, text):
    return "%s.some(l => l[0] === %s && l[2] === %s)" % (LINES, json.dumps(cls), json.dumps(text))


def connected():
    return "document.getElementById('status').dataset.state === 'connected'"


def _chromium_skip(why):
    msg = "chromium cannot start: " + why
    print("skipped: " + msg, flush=True)
    raise ct.Skipped(msg)


class Chromium:
    """Debian's headless chromium with a DevTools port of its own (port 0:
    chromium picks one and writes it into DevToolsActivePort)."""

    def __init__(self):
        exe = next((p for p in ("chromium", "chromium-browser") if shutil.which(p)), None)
        if exe is None:
            _chromium_skip("no chromium on PATH (Debian package chromium)")
        self.profile = ct.tmpdir()
        self.errf = open(os.path.join(self.profile, "stderr.txt"), "w+b")
        argv = [exe, "--headless=new", "--no-sandbox", "--remote-debugging-port=0",
                "--user-data-dir=" + self.profile, "--no-first-run", "--no-default-browser-check",
                "--no-proxy-server", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-extensions", "--disable-sync",
                "--disable-background-networking", "--disable-component-update",
                "--mute-audio", "--window-size=900,640", "about:blank"]
        try:
            self.p = ct.spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=self.errf)
        except OSError as e:
            _chromium_skip("%s: %s" % (exe, e))

    def stderr(self):
        return ct.read_log(self.errf)

    def devtools_url(self):
        """ws://127.0.0.1:PORT/devtools/browser/ID, once chromium is up."""
        path = os.path.join(self.profile, "DevToolsActivePort")

        def ready():
            if self.p.poll() is not None:
                return "exited"
            try:
                with open(path) as f:
                    lines = f.read().split("\n")
            except OSError:
                return None
            return lines if len(lines) >= 2 and lines[0].isdigit() and lines[1] else None
        # No event tells when the file appears: poll it (bounded, backing off).
        got = ct.wait_for(ready, 60, "chromium's DevToolsActivePort; stderr: %s"
                          % self.stderr()[-1500:])
        if got == "exited":
            _chromium_skip("exited with status %s: %s"
                           % (self.p.returncode, self.stderr()[-1500:].strip()))
        return "ws://127.0.0.1:%s%s" % (got[0], got[1])

    def stop(self):
        ct._kill_group(self.p)
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        ct._forget(self.p)
        self.errf.close()


async def open_browser(chrome):
    import websockets
    url = chrome.devtools_url()
    ws = await step("connecting to DevTools at " + url,
                    websockets.connect(url, max_size=None, ping_interval=None), 20)
    cdp = Cdp(ws)
    await cdp.open_page()
    return cdp


async def close_browser(cdp):
    if cdp is None:
        return
    try:
        await asyncio.wait_for(cdp.call("Browser.close", 5, browser=True), 5)
    except Exception:
        pass            # the process is killed next anyway
    cdp.reader.cancel()
    try:
        await asyncio.wait_for(cdp.ws.close(), 5)
    except Exception:
        pass


def with_browser(body, seconds=90):
    """Run body(cdp) against a fresh headless chromium; chromium is killed
    in any case, and a script error in the page fails the test."""
    try:
        import websockets  # noqa: F401
    except ImportError:
        raise ct.Skipped("python3-websockets not installed")
    chrome = Chromium()

    async def go():
        cdp = None
        try:
            cdp = await open_browser(chrome)
            await body(cdp)
            ct.check(not cdp.exceptions(), "the page threw: %s" % cdp.exceptions())
        finally:
            await close_browser(cdp)
    try:
        asyncio.run(step("the browser test", go(), seconds))
    finally:
        chrome.stop()


# ---- tests -------------------------------------------------------------------------

def test_embedded_page_is_current():
    """src/cli/chat_page.c is scripts/embed.py's output for chat_page.html."""
    r = subprocess.run([sys.executable, EMBED, "--check"], capture_output=True, text=True,
                       timeout=ct.T(30))
    ct.check(r.returncode == 0, "embed.py --check: status %d: %s" % (r.returncode, r.stderr))


def test_served_page_is_the_source():
    """GET / on the ws:// endpoint answers the page, byte for byte."""
    with open(PAGE_HTML, "rb") as f:
        want = f.read()
    srv = ChatServer()
    try:
        with socket.create_connection(("127.0.0.1", srv.ws_port), timeout=ct.T(10)) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            resp = ct.recv_all(s)
        head, _, body = resp.partition(b"\r\n\r\n")
        ct.check(head.startswith(b"HTTP/1.1 200"), "status line: %r" % head[:80])
        ct.check(re.search(rb"(?im)^content-type: *text/html", head) is not None,
                 "no text/html content type: %r" % head)
        ct.check_eq(body, want, "the page served at /")
    finally:
        srv.finish()


def test_browser_and_terminal_talk():
    srv = ChatServer()
    term = Terminal(srv.tcp_port)
    try:
        async def body(cdp):
            await term.expect("<announce> already connected: nobody.")
            await cdp.navigate("http://127.0.0.1:%d/" % srv.ws_port)
            ct.check_eq(await cdp.js("document.title"), "csock chat", "page title")
            await cdp.until("the page connects", connected())
            # The page's join, as the terminal and the page itself see it.
            got = await term.expect("<announce> already connected: 127.0.0.1 as <user1>.")
            ct.check("<announce> 127.0.0.1 is connected as <user2>.\n" in got, got)
            await cdp.until("the page shows its own join",
                            line_shown("announce", "<announce> 127.0.0.1 is connected as <user2>."))
            # A name, typed into the name field (Enter): /nick. A refused
            # one first: the field is marked, and the next name is sent.
            await cdp.type_text("name", "announce")
            await cdp.until("the page shows the refusal",
                            line_shown("announce", "<announce> /nick: <announce> is taken."))
            invalid = "document.getElementById('name').getAttribute('aria-invalid')"
            ct.check_eq(await cdp.js(invalid), "true", "the name field after a refusal")
            await cdp.type_text("name", NAME)
            await term.expect("<announce> <user2> is now known as <%s>." % NAME)
            # Browser to terminal: typed, sent with the button; shown locally.
            # (ASCII: the room writes other bytes as \ooo, as ncat's chat does.)
            text = "hello from the browser <b>bold</b> & 'quotes' \\ \"double\""
            await cdp.type_text("input", text, enter=False)
            await cdp.click("send")
            await term.expect("<%s> %s" % (NAME, text))
            await cdp.until("the page shows its own line",
                            line_shown("own", "<%s> %s" % (NAME, text)))
            ct.check_eq(await cdp.js("document.getElementById('input').value"), "", "input cleared")
            # Terminal to browser, markup and all, shown as text.
            evil = "hi from the terminal <img src=x onerror=\"window.pwned=1\"> <i>x</i> &amp;"
            term.say(evil)
            await cdp.until("the page shows the terminal's line",
                            line_shown("msg", "<user1> " + evil))
            made = "document.querySelectorAll('#messages img, #messages i').length"
            ct.check_eq(await cdp.js(made), 0, "elements made from peer text")
            ct.check_eq(await cdp.js("typeof window.pwned"), "undefined", "peer text ran")
            shot = await cdp.call("Page.captureScreenshot", format="png")
            path = os.path.join(out_dir(), "chat_page.png")
            with open(path, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
            print("  screenshot: %s" % path, flush=True)
            ct.check_eq(cdp.log_errors(), [], "errors the browser logged")
            # The terminal leaves: the page hears it.
            term.stop()
            await cdp.until("the page shows the terminal leaving",
                            line_shown("announce", "<announce> <user1> is disconnected."))
        with_browser(body)
        term.finish()
    finally:
        term.stop()
        srv.finish()


def test_page_reconnects_and_renames():
    """The server goes away: the page says so, retries (1 s, 2 s, ...), and
    once a server is back on the same port it rejoins and sends /nick again."""
    srv = ChatServer()
    servers = [srv]
    try:
        async def body(cdp):
            await cdp.navigate("http://127.0.0.1:%d/" % srv.ws_port)
            await cdp.until("the page connects", connected())
            await cdp.type_text("name", NAME)
            await cdp.until("the rename is announced",
                            line_shown("announce",
                                       "<announce> <user1> is now known as <%s>." % NAME))
            srv.finish()
            await cdp.until("the page notices the drop",
                            "document.getElementById('status').dataset.state === 'disconnected'")
            # Its first retry fails too: the next waits twice as long.
            await cdp.until("the page backs off",
                            "document.getElementById('status').textContent"
                            ".includes('retrying in 2 s')", 30)
            t0 = time.monotonic()
            back = ChatServer(ws_port=srv.ws_port)
            servers.append(back)
            term = Terminal(back.tcp_port)
            await cdp.until("the page reconnects", connected(), 30)
            renamed = "<announce> <user[0-9]+> is now known as <%s>\\.$" % NAME
            await cdp.until("the page's name is announced again",
                            "%s.filter(l => /^%s/.test(l[2])).length >= 2" % (LINES, renamed), 30)
            print("  reconnected and renamed %.1f s after the server came back"
                  % (time.monotonic() - t0), flush=True)
            # The terminal is in the room once it has its own join: the
            # page's line reaches it under the page's name.
            await asyncio.to_thread(term.read_until, lambda o: b"already connected:" in o, 15)
            await cdp.type_text("input", "back again")
            await term.expect("<%s> back again" % NAME)
            term.finish()
        with_browser(body)
    finally:
        for s in servers[1:]:
            s.finish()
        if srv.alive():
            srv.kill()


def test_page_over_wss():
    """Served over https (wss:// with --cert/--key), the page connects back
    with wss:// and talks with the terminal."""
    ct.need("openssl")
    d = ct.tmpdir()
    tlscerts.make(d)
    srv = ChatServer(scheme="wss", opts=("--cert", os.path.join(d, "server.pem"),
                                         "--key", os.path.join(d, "server.key")))
    term = Terminal(srv.tcp_port)
    try:
        async def body(cdp):
            # A throw-away CA that chromium does not know: accept its
            # certificate for this browser only.
            await cdp.call("Security.setIgnoreCertificateErrors", ignore=True)
            await term.expect("<announce> already connected: nobody.")
            await cdp.navigate("https://127.0.0.1:%d/" % srv.ws_port)
            await cdp.until("the page connects over wss://", connected())
            await cdp.type_text("name", NAME)
            await term.expect("<announce> <user2> is now known as <%s>." % NAME)
            term.say("over TLS")
            await cdp.until("the page shows the terminal's line",
                            line_shown("msg", "<user1> over TLS"))
        with_browser(body)
        term.finish()
    finally:
        term.stop()
        srv.finish()


if __name__ == "__main__":
    ct.main(globals())
