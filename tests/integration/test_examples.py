#!/usr/bin/env python3
"""Drive every program in examples/ against a real peer: the upper-case
servers and clients against each other, chat_server against Python
sockets, tls_client against a Python (OpenSSL) TLS server, http_later
against http.client, udp_client against a lossy Python UDP server. Each
server prints `listening ADDR` (port 0) and the test waits for that line.

Every example is also compiled as a user would, with -Wall -Wextra -Werror.

The scenarios take the directory of the binaries, so test_guide.py runs the
same ones on the guide's programs (see SCENARIOS)."""
import glob
import http.client
import os
import signal
import socket
import ssl
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import csocktest as ct  # noqa: E402
import cckit  # noqa: E402

EXAMPLES = os.path.join(cckit.BUILD, "examples")
SOURCES = sorted(glob.glob(os.path.join(ct.REPO, "examples", "*.c")))
LINES = ["hello", "Mixed Case 123", "", "ünïcode stays", "last line without newline"]


def exe(bindir, name):
    """A program from bindir, else the one CMake built."""
    p = os.path.join(bindir, name)
    return p if os.path.exists(p) else os.path.join(EXAMPLES, name)


def upper(lines):
    # toupper() in the C locale: only ASCII letters change; UTF-8 bytes pass.
    return "".join("".join(c.upper() if c.isascii() else c for c in l) + "\n" for l in lines)


def start_server(bindir, name, *args):
    """Start a server example; returns (Proc, Endpoint) once it listens."""
    p = ct.Proc([exe(bindir, name), *args])
    try:
        line = p.read_line(20)
        ct.check(line.startswith("listening "), "%s: first line %r, stderr %r"
                 % (name, line, p.stderr()))
    except BaseException:
        p.kill()
        raise
    return p, ct.Endpoint(line.split(" ", 1)[1])


def finish_server(p, name, sig=signal.SIGTERM, want=0):
    """Signal the server; it must exit `want` (None: any) with a clean stderr."""
    alive = p.alive()
    rc = p.stop(sig, timeout=15)
    err = p.stderr()
    ct.check_clean(err, name)
    ct.check(alive, "%s died early: status %s, stderr %r" % (name, rc, err[-1000:]))
    if want is not None:
        ct.check_eq(rc, want, "%s exit status after %s (stderr %r)" % (name, sig, err[-500:]))
    return err


def run_client(bindir, name, *args, input=b"", timeout=30):
    rc, out, err = ct.run([exe(bindir, name), *args], input=input, timeout=timeout)
    return rc, out.decode("utf-8", "replace"), err


# ---- the seed's four programs -----------------------------------------------

def upper_pair(bindir, server, client, *server_args):
    p, ep = start_server(bindir, server, *server_args)
    try:
        rc, out, err = run_client(bindir, client, ep.text, input="\n".join(LINES).encode())
        ct.check(rc == 0, "%s %s: exit %s, stderr %r" % (client, ep, rc, err))
        ct.check_eq(out, upper(LINES), "%s answers" % client)
        rc, out, err = run_client(bindir, client, ep.text, input=b"again\n")
        ct.check(rc == 0 and out == "AGAIN\n", "second client: %s %r %r" % (rc, out, err))
    finally:
        finish_server(p, server, signal.SIGKILL, want=None)


def run_upper_tcp(bindir):
    upper_pair(bindir, "upper_tcp_server", "upper_tcp_client")
    upper_pair(bindir, "upper_tcp_server", "upper_tcp_client", "unix:%s/u.sock" % ct.tmpdir())
    with ct.closed_tcp_port() as s:
        rc, out, err = run_client(bindir, "upper_tcp_client",
                                  "tcp://127.0.0.1:%d" % s.getsockname()[1], input=b"x\n")
    ct.check(rc != 0 and "refused" in err.lower(), "refused: %s %r %r" % (rc, out, err))


def run_upper_udp(bindir):
    upper_pair(bindir, "upper_udp_server", "upper_udp_client")


# ---- timer_signal -----------------------------------------------------------

def run_timer_signal(bindir):
    rc, out, err = run_client(bindir, "timer_signal", "20", "3")
    ct.check(rc == 0, "timer_signal 20 3: exit %s %r" % (rc, err))
    ct.check_eq(out, "tick 1\ntick 2\ntick 3\n", "three ticks, then the end")
    for sig, name in ((signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM")):
        p = ct.Proc([exe(bindir, "timer_signal"), "20"])
        try:
            p.read_until(lambda o: b"tick 2\n" in o, 20)
            os.kill(p.pid, sig)  # the process, not the group: as a user's kill would
            rc = p.wait(15)
            out = p.read_to_eof(5).decode()
            ct.check_eq(rc, 0, "exit status after %s (stderr %r)" % (name, p.stderr()))
            ct.check("stopped by %s after" % name in out, "no stop line: %r" % out[-200:])
            ct.check_clean(p.stderr(), "timer_signal")
        finally:
            p.kill()


# ---- udp_client -------------------------------------------------------------

class LossyUdp:
    """A UDP server that ignores the first `drop` datagrams, then answers
    each in upper case."""

    def __init__(self, drop):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.drop, self.seen, self.done = drop, 0, False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.done:
            try:
                data, peer = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            self.seen += 1
            if self.seen > self.drop:
                self.sock.sendto(data.upper(), peer)

    @property
    def addr(self):
        return "udp://127.0.0.1:%d" % self.sock.getsockname()[1]

    def close(self):
        self.done = True
        self.thread.join(5)
        self.sock.close()


def run_udp_client(bindir):
    srv = LossyUdp(drop=2)
    try:
        rc, out, err = run_client(bindir, "udp_client", srv.addr, "hello udp", "6", "100")
        ct.check(rc == 0, "udp_client: exit %s %r" % (rc, err))
        ct.check_eq(out, "HELLO UDP\n", "answer after two lost tries")
        ct.check(srv.seen >= 3, "the server saw %d tries, not 3" % srv.seen)
    finally:
        srv.close()
    silent = LossyUdp(drop=1 << 30)  # takes every datagram, answers none
    try:
        t0 = time.monotonic()
        rc, out, err = run_client(bindir, "udp_client", silent.addr, "anyone?", "3", "50")
        ct.check(rc == 1 and "no answer after 3 tries" in err, "silent: %s %r %r" % (rc, out, err))
        ct.wait_for(lambda: silent.seen >= 3, 10, "the silent server to see 3 tries")
        ct.check_eq(silent.seen, 3, "tries the silent server saw")
        ct.check(time.monotonic() - t0 < ct.T(20), "gave up too slowly")
    finally:
        silent.close()
    p, ep = start_server(bindir, "upper_udp_server")
    try:
        rc, out, err = run_client(bindir, "udp_client", ep.text, "against upper_udp_server")
        ct.check(rc == 0 and out == "AGAINST UPPER_UDP_SERVER\n", "%s %r %r" % (rc, out, err))
    finally:
        finish_server(p, "upper_udp_server", signal.SIGKILL, want=None)


# ---- chat_server ------------------------------------------------------------

class Member:
    def __init__(self, ep):
        self.s = ep.socket(20)
        self.buf = b""

    def say(self, text):
        self.s.sendall(text.encode() + b"\n")

    def hear(self):
        while b"\n" not in self.buf:
            chunk = self.s.recv(4096)
            ct.check(chunk, "chat: closed while waiting for a line (have %r)" % self.buf)
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    def eof(self):
        rest = self.buf + ct.recv_all(self.s)
        ct.check_eq(rest, b"", "bytes before EOF")


def run_chat_server(bindir, sig=signal.SIGTERM):
    p, ep = start_server(bindir, "chat_server")
    ok = False
    try:
        a = Member(ep)
        b = Member(ep)
        b.say("b here")  # heard by a: b is a member, and so is a
        ct.check_eq(a.hear(), "2: b here", "a hears b")
        c = Member(ep)
        c.say("c here")
        ct.check_eq(a.hear(), "3: c here", "a hears c")
        ct.check_eq(b.hear(), "3: c here", "b hears c")
        a.say("hi all")
        ct.check_eq(b.hear(), "1: hi all", "b hears a")
        ct.check_eq(c.hear(), "1: hi all", "c hears a")
        c.s.close()  # a member leaves; the others go on
        b.say("still here")
        ct.check_eq(a.hear(), "2: still here", "a hears b after c left")
        os.kill(p.pid, sig)
        for m in (a, b):  # shutdown ends every member's connection
            m.eof()
            m.s.close()  # the server's graceful end waits for our side too
        rc = p.wait(20)
        ct.check_eq(rc, 0, "chat_server exit status (stderr %r)" % p.stderr())
        ct.check_clean(p.stderr(), "chat_server")
        ok = True
    finally:
        if not ok:
            p.kill()


# ---- tls_client -------------------------------------------------------------

class UpperTls:
    """A TLS server (Python's ssl, i.e. OpenSSL) answering lines in upper
    case, on 127.0.0.1 port 0, with the test CA's localhost certificate."""

    def __init__(self, certs):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(certs, "server.pem"), os.path.join(certs, "server.key"))
        self.ctx = ctx
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.lsock.settimeout(0.2)
        self.done = False
        self.errors = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    @property
    def port(self):
        return self.lsock.getsockname()[1]

    def serve(self):
        while not self.done:
            try:
                raw, _ = self.lsock.accept()
            except socket.timeout:
                continue
            threading.Thread(target=self.one, args=(raw,), daemon=True).start()

    def one(self, raw):
        raw.settimeout(ct.T(20))
        try:
            with self.ctx.wrap_socket(raw, server_side=True) as s:
                f = s.makefile("rwb")
                for line in f:
                    f.write(line.rstrip(b"\n").upper() + b"\n")
                    f.flush()
        except (ssl.SSLError, OSError) as e:
            self.errors.append(e)  # the failing-verification case lands here

    def close(self):
        self.done = True
        self.thread.join(5)
        self.lsock.close()


def run_tls_client(bindir):
    ct.need("openssl")  # tlscerts makes the certificates with it
    import tlscerts
    certs = tlscerts.make(ct.tmpdir())
    srv = UpperTls(certs)
    try:
        addr = "tls://127.0.0.1:%d" % srv.port
        text = "\n".join(LINES).encode()
        rc, out, err = run_client(bindir, "tls_client", "--ca",
                                  os.path.join(certs, "ca.pem"), addr, input=text)
        ct.check(rc == 0, "tls_client --ca: exit %s %r" % (rc, err))
        ct.check_eq(out, upper(LINES), "answers over TLS")
        rc, out, err = run_client(bindir, "tls_client", "--ca", os.path.join(certs, "ca.pem"),
                                  "tls://localhost:%d" % srv.port, input=b"by name\n")
        ct.check(rc == 0 and out == "BY NAME\n", "by name: %s %r %r" % (rc, out, err))
        # Not signed by a CA it trusts: refused, in words, nothing sent.
        rc, out, err = run_client(bindir, "tls_client", "--ca",
                                  os.path.join(certs, "otherca.pem"), addr, input=b"secret\n")
        ct.check(rc == 1 and "verify" in err.lower() and out == "",
                 "untrusted server: %s %r %r" % (rc, out, err))
        rc, out, err = run_client(bindir, "tls_client", "-k", addr, input=b"insecure\n")
        ct.check(rc == 0 and out == "INSECURE\n", "-k: %s %r %r" % (rc, out, err))
    finally:
        srv.close()


def run_upper_tls(bindir):
    """upper_tls_server against tls_client, and against openssl s_client."""
    ct.need("openssl")
    import tlscerts
    certs = tlscerts.make(ct.tmpdir())
    p, ep = start_server(bindir, "upper_tls_server", os.path.join(certs, "server.pem"),
                         os.path.join(certs, "server.key"))
    try:
        addr = "tls://127.0.0.1:%d" % ep.port
        rc, out, err = run_client(bindir, "tls_client", "--ca", os.path.join(certs, "ca.pem"),
                                  addr, input="\n".join(LINES).encode())
        ct.check(rc == 0, "tls_client: exit %s %r" % (rc, err))
        ct.check_eq(out, upper(LINES), "upper_tls_server's answers")
        # Plaintext to a TLS server: the handshake fails, the server goes on.
        with ep.socket() as s:
            s.sendall(b"not tls\n")
            ct.recv_all(s)
        c = ct.Proc(["openssl", "s_client", "-quiet", "-verify_return_error", "-CAfile",
                     os.path.join(certs, "ca.pem"), "-connect", "127.0.0.1:%d" % ep.port])
        try:
            c.write(b"from openssl\n")  # s_client waits for stdin: kept open, then killed
            c.read_until(lambda o: b"FROM OPENSSL\n" in o, 20)
        finally:
            c.kill()
    finally:
        err = finish_server(p, "upper_tls_server", signal.SIGKILL, want=None)
    ct.check("handshake" in err, "no handshake error logged for the plaintext client: %r" % err)


# ---- http_later -------------------------------------------------------------

def get(ep, path, timeout=20):
    conn = http.client.HTTPConnection(ep.host, ep.port, timeout=ct.T(timeout))
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def run_http_later(bindir):
    p, ep = start_server(bindir, "http_later")
    ok = False
    try:
        ct.check_eq(get(ep, "/hello"), (200, "hello\n"), "/hello")
        t0 = time.monotonic()
        ct.check_eq(get(ep, "/later?ms=300"), (200, "later 300\n"), "/later?ms=300")
        ct.check(time.monotonic() - t0 >= 0.28, "answered before its timer")
        # While one request waits in its timer, others are served.
        slow, ms = {}, int(ct.T(4000))  # long enough for /hello on a loaded machine
        t = threading.Thread(target=lambda: slow.update(r=get(ep, "/later?ms=%d" % ms)))
        t.start()
        ct.check_eq(get(ep, "/hello"), (200, "hello\n"), "/hello beside a waiting request")
        ct.check(t.is_alive(), "the slow answer came before the quick one")
        t.join(ct.T(30))
        ct.check_eq(slow.get("r"), (200, "later %d\n" % ms), "the slow answer")
        # A client that leaves before its answer: the server must go on. It
        # cannot tell a close from a half-close without reading, and it reads
        # no more while a request waits, so the answer is still written;
        # whether that write reports -EPIPE depends on when the peer's RST
        # comes back (at once on epoll, later by io_uring), so only the
        # server's health is checked here.
        with ep.socket() as s:
            s.sendall(b"GET /later?ms=100 HTTP/1.1\r\nHost: x\r\n\r\n")
        ct.wait_for(lambda: p.stderr().count("answering in 100 ms") >= 1, 20, "the parked request")
        ct.check_eq(get(ep, "/later?ms=200"), (200, "later 200\n"), "/later after a client left")
        ct.check_eq(get(ep, "/hello"), (200, "hello\n"), "/hello after a client left")
        # SIGTERM with an answer owed: it still goes out, then a clean exit;
        # an idle keep-alive client is let go after the grace period.
        idle = ep.socket(30)
        idle.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        cckit.recv_until(idle, b"hello\n", "keep-alive client")
        owed = {}
        t = threading.Thread(target=lambda: owed.update(r=get(ep, "/later?ms=1000")))
        t.start()
        ct.wait_for(lambda: "answering in 1000 ms" in p.stderr(), 20, "the request to be parked")
        os.kill(p.pid, signal.SIGTERM)
        t.join(ct.T(30))
        ct.check_eq(owed.get("r"), (200, "later 1000\n"), "the answer owed at SIGTERM")
        ct.check_eq(p.wait(20), 0, "http_later exit status (stderr %r)" % p.stderr())
        ct.check_eq(ct.recv_all(idle), b"", "the idle client's EOF")
        idle.close()
        ct.check_clean(p.stderr(), "http_later")
        ok = True
    finally:
        if not ok:
            p.kill()


# Which scenarios run each example (test_guide.py uses this too).
SCENARIOS = {
    "upper_tcp_server.c": [run_upper_tcp],
    "upper_tcp_client.c": [run_upper_tcp],
    "upper_udp_server.c": [run_upper_udp],
    "upper_udp_client.c": [run_upper_udp],
    "timer_signal.c": [run_timer_signal],
    "udp_client.c": [run_udp_client],
    "chat_server.c": [run_chat_server],
    "tls_client.c": [run_tls_client, run_upper_tls],
    "upper_tls_server.c": [run_upper_tls],
    "http_later.c": [run_http_later],
}


def test_every_example_has_a_scenario():
    names = sorted(os.path.basename(s) for s in SOURCES)
    ct.check(len(names) >= 10, "examples: %r" % names)
    missing = [n for n in names if n not in SCENARIOS]
    ct.check(not missing, "examples no test runs: %s" % missing)


def test_examples_compile_strictly():
    for src in SOURCES:
        name = os.path.basename(src)[:-2]
        ok, diag = cckit.compile_c(src, os.path.join(ct.tmpdir(), name))
        ct.check(ok, "%s does not compile with -Wall -Wextra -Werror:\n%s" % (src, diag))


def test_upper_tcp():
    run_upper_tcp(EXAMPLES)


def test_upper_udp():
    run_upper_udp(EXAMPLES)


def test_timer_signal():
    run_timer_signal(EXAMPLES)


def test_udp_client():
    run_udp_client(EXAMPLES)


def test_chat_server():
    run_chat_server(EXAMPLES)


def test_chat_server_sigint():
    run_chat_server(EXAMPLES, signal.SIGINT)


def test_tls_client():
    run_tls_client(EXAMPLES)


def test_upper_tls():
    run_upper_tls(EXAMPLES)


def test_http_later():
    run_http_later(EXAMPLES)


def test_examples_on_every_backend():
    """The same scenarios on the poll and io_uring backends (the examples
    take the loop's default, which CSOCK_BACKEND selects): a program
    written once runs the same on each."""
    saved = os.environ.get("CSOCK_BACKEND")
    runs = []
    for r in sum(SCENARIOS.values(), []):
        if r not in runs:
            runs.append(r)
    try:
        for backend in ("poll", "uring"):
            os.environ["CSOCK_BACKEND"] = backend
            for run in runs:
                run(EXAMPLES)
            print("  ran every scenario on %s" % backend, flush=True)
    finally:
        if saved is None:
            os.environ.pop("CSOCK_BACKEND", None)
        else:
            os.environ["CSOCK_BACKEND"] = saved


if __name__ == "__main__":
    ct.main()
