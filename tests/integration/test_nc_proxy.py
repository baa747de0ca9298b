#!/usr/bin/env python3
"""csock connect --proxy against real proxies on loopback: microsocks
(SOCKS5, with and without username/password), dante (SOCKS5 and SOCKS4),
tinyproxy (HTTP CONNECT, Basic auth, its 407 realm) and, where no Debian
peer speaks the protocol or where the request's bytes must be checked, a
small Python proxy here (SOCKS4a, SOCKS5 reply codes, --proxy-dns). Bytes
go both ways to a Python echo server; TLS runs to a Python ssl echo through
the tunnel."""
import os
import queue
import random
import socket
import ssl
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import csocktest as ct  # noqa: E402
import tlscerts  # noqa: E402
import tlsutil  # noqa: E402

ECHO = None  # the echo server's port (started once)
CERTS = None


# ---- peers written here ------------------------------------------------------

def _serve(sock, handler):
    def loop():
        while True:
            try:
                c, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=handler, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()


def _listen(host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.bind((host, 0))
    s.listen(64)
    return s


def _echo(c):
    with c:
        while True:
            d = c.recv(65536)
            if not d:
                return
            c.sendall(d)


def echo_port():
    global ECHO
    if ECHO is None:
        s = _listen()
        _serve(s, _echo)
        ECHO = s.getsockname()[1]
    return ECHO


def certs():
    global CERTS
    if CERTS is None:
        CERTS = tlscerts.make(ct.tmpdir())
    return CERTS


END = b"\n--END--\n"


def tls_echo_port():
    """A TLS echo that closes (close_notify) after echoing END: the end
    comes from the server, as microsocks and tinyproxy cut the whole tunnel
    at a client's half-close."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(os.path.join(certs(), "server.pem"), os.path.join(certs(), "server.key"))
    s = _listen()

    def handle(c):
        try:
            t = ctx.wrap_socket(c, server_side=True)
            seen = b""
            while not seen.endswith(END):
                d = t.recv(65536)
                if not d:
                    break
                t.sendall(d)
                seen = (seen + d)[-len(END):]
            t.unwrap().close()
        except (OSError, ssl.SSLError):
            c.close()
    _serve(s, handle)
    return s.getsockname()[1]


def _relay(a, b):
    def pump(x, y):
        try:
            while True:
                d = x.recv(65536)
                if not d:
                    y.shutdown(socket.SHUT_WR)
                    return
                y.sendall(d)
        except OSError:
            pass
    t = threading.Thread(target=pump, args=(b, a), daemon=True)
    t.start()
    pump(a, b)
    t.join(ct.T(20))
    a.close()
    b.close()


def _recv_until(c, pred):
    buf = b""
    while not pred(buf):
        d = c.recv(4096)
        if not d:
            raise OSError("closed")
        buf += d
    return buf


class FakeProxy:
    """A SOCKS4/4a, SOCKS5 or HTTP CONNECT proxy that records each request's
    bytes. `answer` None: tunnel to the target; an int: refuse with that
    SOCKS reply code / HTTP status; "silent": say nothing."""

    def __init__(self, kind, answer=None):
        self.kind, self.answer, self.requests = kind, answer, queue.Queue()
        self.sock = _listen()
        self.port = self.sock.getsockname()[1]
        _serve(self.sock, self.handle)

    def handle(self, c):
        try:
            getattr(self, "_" + self.kind)(c)
        except OSError:
            c.close()

    def _tunnel(self, c, host, port):
        self.requests.put((host, port))
        if self.answer is not None:
            return None
        try:
            return socket.create_connection((host, port), timeout=ct.T(10))
        except OSError:
            return None

    def _socks4(self, c):
        req = _recv_until(c, lambda b: len(b) > 8 and b[8:].count(b"\0") >= (
            2 if b[4:7] == b"\0\0\0" and b[7] else 1))
        port = struct.unpack(">H", req[2:4])[0]
        rest = req[8:].split(b"\0")
        host = rest[1].decode() if req[4:7] == b"\0\0\0" else socket.inet_ntoa(req[4:8])
        self.raw = req
        if self.answer == "silent":
            self.requests.put((host, port))
            return time.sleep(ct.T(30))
        t = self._tunnel(c, host, port)
        c.sendall(bytes([0, 90 if t else (self.answer or 91)]) + b"\0" * 6)
        if t:
            _relay(c, t)
        else:
            c.close()

    def _socks5(self, c):
        g = _recv_until(c, lambda b: len(b) >= 2 and len(b) >= 2 + b[1])
        c.sendall(b"\x05\x00")
        req = _recv_until(c, lambda b: len(b) >= 5 and len(b) >= (
            10 if b[3] == 1 else 22 if b[3] == 4 else 7 + b[4]))
        if req[3] == 1:
            host, port = socket.inet_ntoa(req[4:8]), req[8:10]
        elif req[3] == 4:
            host, port = socket.inet_ntop(socket.AF_INET6, req[4:20]), req[20:22]
        else:
            host, port = req[5:5 + req[4]].decode(), req[5 + req[4]:7 + req[4]]
        self.raw = g + req
        t = self._tunnel(c, host, struct.unpack(">H", port)[0])
        c.sendall(bytes([5, 0 if t else (self.answer or 1), 0, 1, 127, 0, 0, 1, 0, 0]))
        if t:
            _relay(c, t)
        else:
            c.close()

    def _http(self, c):
        head = _recv_until(c, lambda b: b"\r\n\r\n" in b)
        self.raw = head
        where = head.split(b" ")[1].decode()
        host, _, port = where.rpartition(":")
        t = self._tunnel(c, host.strip("[]"), int(port))
        if t:
            c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            return _relay(c, t)
        c.sendall(b"HTTP/1.1 %d Nope\r\nProxy-Authenticate: Basic realm=\"fake\"\r\n"
                  b"Content-Length: 0\r\n\r\n" % (self.answer or 502))
        c.close()

    def request(self):
        try:
            return self.requests.get(timeout=ct.T(10))
        except queue.Empty:
            raise ct.TestFailure("the fake proxy got no request")


# ---- real peers ----------------------------------------------------------------

def _up(port, proc, host="127.0.0.1", timeout=10):
    """Wait (bounded) until the peer accepts on its port."""
    deadline = time.monotonic() + ct.T(timeout)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection((host, port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def start_peer(tool, make_argv, tries=5, host="127.0.0.1"):
    """Start a proxy that cannot bind port 0 on a free port (retrying when
    another process took it first); returns its port."""
    ct.need(tool)
    for _ in range(tries):
        port = tlsutil.free_port()
        p = ct.spawn(make_argv(port), stdout=ct.subprocess.DEVNULL, stderr=ct.subprocess.PIPE)
        if _up(port, p, host):
            return port
        ct._kill_group(p)
    raise ct.Skipped("%s did not start" % tool)


def microsocks(user=None, password=None):
    auth = ["-u", user, "-P", password] if user else []
    return start_peer("microsocks", lambda port: ["microsocks", "-i", "127.0.0.1", "-p",
                                                  str(port)] + auth)


def dante():
    if not os.access("/usr/sbin/danted", os.X_OK):
        raise ct.Skipped("/usr/sbin/danted (dante-server) not installed")
    d = ct.tmpdir()

    def argv(port):
        users = ("user.privileged: root\nuser.unprivileged: nobody\n"
                 if os.geteuid() == 0 else "")
        conf = os.path.join(d, "danted.conf")
        with open(conf, "w") as f:
            f.write("logoutput: stderr\ninternal: 127.0.0.1 port = %d\nexternal: 127.0.0.1\n"
                    "socksmethod: none\nclientmethod: none\n%s"
                    "client pass {\n from: 127.0.0.0/8 to: 0.0.0.0/0\n}\n"
                    "socks pass {\n from: 127.0.0.0/8 to: 0.0.0.0/0\n command: connect\n}\n"
                    % (port, users))
        return ["/usr/sbin/danted", "-f", conf, "-N", "1"]
    return start_peer("/usr/sbin/danted", argv)


def tinyproxy(auth=None):
    d = ct.tmpdir()

    def argv(port):
        conf = os.path.join(d, "tinyproxy.conf")
        with open(conf, "w") as f:
            # No ConnectPort line: CONNECT to every port (tinyproxy.conf(5)).
            f.write("Port %d\nListen 127.0.0.1\nTimeout 60\nAllow 127.0.0.1\nMaxClients 50\n%s"
                    % (port, "BasicAuth %s %s\n" % auth if auth else ""))
        return ["tinyproxy", "-d", "-c", conf]
    return start_peer("tinyproxy", argv)


# ---- csock through the tunnel ----------------------------------------------------

def through(args, data, expect=None, timeout=20, server_ends=False):
    """Run csock connect ARGS, write `data`, read back `expect` (default:
    data) with stdin still open (microsocks and tinyproxy end the whole
    tunnel at the client's half-close), then end stdin. Returns
    (status, bytes read back, stderr). server_ends: the peer ends the
    session; stdin stays open until csock has exited (a half-close racing the
    peer's close_notify would cut it off at such proxies)."""
    expect = data if expect is None else expect
    p = ct.spawn([ct.BIN, "connect"] + args)
    got = bytearray()
    writer = threading.Thread(target=lambda: (p.stdin.write(data), p.stdin.flush()),
                              daemon=True)
    writer.start()
    deadline = time.monotonic() + ct.T(timeout)
    os.set_blocking(p.stdout.fileno(), False)
    while len(got) < len(expect) and time.monotonic() < deadline:
        try:
            chunk = os.read(p.stdout.fileno(), 1 << 20)
        except BlockingIOError:
            time.sleep(0.01)
            continue
        if not chunk:
            break
        got += chunk
    writer.join(ct.T(timeout))
    try:
        if not server_ends:
            p.stdin.close()
        p.wait(timeout=ct.T(timeout))
        p.stdin.close()
    except ct.subprocess.TimeoutExpired:
        ct._kill_group(p)
        raise ct.TestFailure("csock %s did not exit; stderr %r" % (args, p.stderr.read()))
    err = p.stderr.read().decode("utf-8", "replace")
    ct.check_clean(err)
    return p.returncode, bytes(got), err


def refused(args, want, status=1):
    """csock connect ARGS fails with `status` and a stderr line holding `want`."""
    rc, _, err = ct.csock("connect", *args, input=b"hello\n")
    ct.check_eq(rc, status, "exit status of %s (stderr %r)" % (args, err))
    ct.check(want in err, "stderr of %s lacks %r: %r" % (args, want, err))
    ct.check_eq(len(err.strip().splitlines()), 1, "stderr lines of %s: %r" % (args, err))


def payload(n=1 << 20):
    return random.Random(n).randbytes(n)


# ---- tests -----------------------------------------------------------------------

def test_microsocks_bytes_both_ways():
    port, echo = microsocks(), echo_port()
    data = payload()
    for target in (["127.0.0.1", str(echo)], ["localhost", str(echo)],
                   ["tcp://localhost:%d" % echo]):
        rc, got, err = through(["--proxy", "127.0.0.1:%d" % port, "--proxy-type", "socks5"]
                               + target, data)
        ct.check(got == data, "%s: %d of %d bytes back intact" % (target, len(got), len(data)))
        ct.check_eq(rc, 0, "exit status (stderr %r)" % err)


def test_microsocks_auth():
    port, echo = microsocks("alice", "s3cret"), echo_port()
    proxy = ["--proxy", "127.0.0.1:%d" % port, "--proxy-type", "socks5"]
    rc, got, err = through(proxy + ["--proxy-auth", "alice:s3cret", "127.0.0.1", str(echo)],
                           b"with auth\n")
    ct.check_eq((rc, got), (0, b"with auth\n"), "the authenticated tunnel (stderr %r)" % err)
    refused(proxy + ["--proxy-auth", "alice:wrong", "127.0.0.1", str(echo)],
            "username/password authentication refused")
    refused(proxy + ["127.0.0.1", str(echo)],
            "no acceptable authentication method (the proxy wants a user name and password")


def test_dante_socks5_and_socks4():
    port, echo = dante(), echo_port()
    closed = ct.closed_tcp_port()
    dead = str(closed.getsockname()[1])
    for kind in ("socks5", "socks4"):
        proxy = ["--proxy", "127.0.0.1:%d" % port, "--proxy-type", kind]
        data = payload(256 * 1024)
        rc, got, err = through(proxy + ["localhost", str(echo)], data)
        ct.check(got == data, "%s: %d of %d bytes back" % (kind, len(got), len(data)))
        ct.check_eq(rc, 0, "%s exit status (stderr %r)" % (kind, err))
    # dante passes the client's half-close on: the answer still comes back.
    rc, out, err = ct.csock("connect", "--proxy", "127.0.0.1:%d" % port, "--proxy-type", "socks5",
                            "127.0.0.1", str(echo), input=b"half-closed\n")
    ct.check_eq((rc, out), (0, b"half-closed\n"), "after the half-close (stderr %r)" % err)
    refused(["--proxy", "127.0.0.1:%d" % port, "--proxy-type", "socks5", "127.0.0.1", dead],
            "connection refused (SOCKS5 reply 5)")
    refused(["--proxy", "127.0.0.1:%d" % port, "--proxy-type", "socks4", "127.0.0.1", dead],
            "request rejected or failed (SOCKS4 reply 91)")
    closed.close()


def test_tinyproxy_connect():
    port, echo = tinyproxy(("alice", "s3cret")), echo_port()
    proxy = ["--proxy", "127.0.0.1:%d" % port]  # the default type: http
    data = payload(256 * 1024)
    rc, got, err = through(proxy + ["--proxy-auth", "alice:s3cret", "localhost", str(echo)], data)
    ct.check(got == data, "%d of %d bytes back" % (len(got), len(data)))
    ct.check_eq(rc, 0, "exit status (stderr %r)" % err)
    refused(proxy + ["localhost", str(echo)],
            'the proxy refused: HTTP/1.0 407 Proxy Authentication Required (realm "Tinyproxy")')
    closed = ct.closed_tcp_port()
    refused(proxy + ["--proxy-auth", "alice:s3cret", "127.0.0.1", str(closed.getsockname()[1])],
            "the proxy refused: HTTP/1.1 500")
    closed.close()


def test_tls_through_the_tunnel():
    tls = tls_echo_port()
    ca = os.path.join(certs(), "ca.pem")
    ms, tp = microsocks(), tinyproxy()
    for proxy in (["--proxy", "127.0.0.1:%d" % ms, "--proxy-type", "socks5"],
                  ["--proxy", "127.0.0.1:%d" % tp, "--proxy-type", "http"]):
        for target in (["--ca", ca, "tls://localhost:%d" % tls],
                       ["--ssl", "--ca", ca, "127.0.0.1", str(tls)]):
            data = payload(100 * 1000) + END
            rc, got, err = through(proxy + target, data, server_ends=True)
            ct.check(got == data, "%s %s: %d of %d bytes back" % (proxy, target, len(got),
                                                                   len(data)))
            ct.check_eq(rc, 0, "exit status (stderr %r)" % err)
        # The certificate is checked against the target, not the proxy.
        refused(proxy + ["--ca", os.path.join(certs(), "otherca.pem"),
                         "tls://localhost:%d" % tls], "certificate verify failed")


def test_socks4a_sends_the_name():
    fake, echo = FakeProxy("socks4"), echo_port()
    rc, got, err = through(["--proxy", "127.0.0.1:%d" % fake.port, "--proxy-type", "socks4a",
                            "--proxy-auth", "bob", "localhost", str(echo)], b"4a\n")
    ct.check_eq((rc, got), (0, b"4a\n"), "through socks4a (stderr %r)" % err)
    ct.check_eq(fake.request(), ("localhost", echo), "the target the proxy was asked for")
    ct.check_eq(fake.raw, b"\x04\x01" + struct.pack(">H", echo) + b"\0\0\0\x01bob\0localhost\0",
                "the SOCKS4a request")
    # SOCKS4 itself sends the address, resolved here (and no password).
    rc, got, err = through(["--proxy", "127.0.0.1:%d" % fake.port, "--proxy-type", "socks4",
                            "--proxy-auth", "bob:pw", "localhost", str(echo)], b"4\n")
    ct.check_eq((rc, got), (0, b"4\n"), "through socks4 (stderr %r)" % err)
    ct.check_eq(fake.raw, b"\x04\x01" + struct.pack(">H", echo) + b"\x7f\0\0\x01bob\0",
                "the SOCKS4 request")
    for code, words in ((92, "cannot reach our identd"), (93, "another user id")):
        f = FakeProxy("socks4", code)
        refused(["--proxy", "127.0.0.1:%d" % f.port, "--proxy-type", "socks4", "127.0.0.1", "9"],
                words)


def test_proxy_dns():
    echo = echo_port()
    cases = [  # (type, --proxy-dns, target host, the host the proxy must be asked for)
        ("socks5", None, "localhost", "localhost"),
        ("socks5", "remote", "localhost", "localhost"),
        ("socks5", "local", "localhost", "127.0.0.1"),
        ("socks5", "both", "localhost", "127.0.0.1"),
        ("socks5", "none", "127.0.0.1", "127.0.0.1"),
        ("http", None, "localhost", "localhost"),
        ("http", "local", "localhost", "127.0.0.1"),
        ("socks4a", "remote", "localhost", "localhost"),
        ("socks4a", "local", "localhost", "127.0.0.1"),
    ]
    for kind, dns, host, want in cases:
        fake = FakeProxy(kind.rstrip("a") if kind == "socks4a" else kind)
        args = ["-4", "--proxy", "127.0.0.1:%d" % fake.port, "--proxy-type", kind]
        args += ["--proxy-dns", dns] if dns else []
        rc, got, err = through(args + [host, str(echo)], b"dns\n")
        ct.check_eq((rc, got), (0, b"dns\n"), "%s %s (stderr %r)" % (kind, dns, err))
        ct.check_eq(fake.request()[0], want, "%s --proxy-dns %s: the proxy was asked for" %
                    (kind, dns))
    # both: a name this host cannot resolve goes to the proxy as it is.
    fake = FakeProxy("socks5", 4)
    refused(["--proxy", "127.0.0.1:%d" % fake.port, "--proxy-type", "socks5", "--proxy-dns",
             "both", "no-such-host.invalid", "80"], "host unreachable (SOCKS5 reply 4)")
    ct.check_eq(fake.request()[0], "no-such-host.invalid", "both: the name went to the proxy")
    ct.check(b"\x03\x14no-such-host.invalid\x00\x50" in fake.raw, "the SOCKS5 domain request")


def test_socks5_reply_codes_in_words():
    words = {1: "general SOCKS server failure", 2: "connection not allowed by ruleset",
             3: "network unreachable", 4: "host unreachable", 5: "connection refused",
             6: "TTL expired", 7: "command not supported", 8: "address type not supported"}
    for code, text in words.items():
        fake = FakeProxy("socks5", code)
        refused(["--proxy", "127.0.0.1:%d" % fake.port, "--proxy-type", "socks5",
                 "127.0.0.1", "9"], "%s (SOCKS5 reply %d)" % (text, code))


def test_http_refusals():
    fake = FakeProxy("http", 403)
    refused(["--proxy", "127.0.0.1:%d" % fake.port, "127.0.0.1", "9"],
            "the proxy refused: HTTP/1.1 403 Nope")
    fake = FakeProxy("http", 407)
    refused(["--proxy", "127.0.0.1:%d" % fake.port, "--proxy-auth", "u:p", "127.0.0.1", "9"],
            'HTTP/1.1 407 Nope (realm "fake")')
    ct.check(b"Proxy-Authorization: Basic dTpw\r\n" in fake.raw, "Basic credentials sent")


def test_timeout_and_unreachable_proxy():
    fake = FakeProxy("socks4", "silent")
    t0 = time.monotonic()
    refused(["-w", "1", "--proxy", "127.0.0.1:%d" % fake.port, "--proxy-type", "socks4",
             "127.0.0.1", "9"], "timed out negotiating the tunnel (-w)")
    ct.check(time.monotonic() - t0 < ct.T(10), "the -w bound held")
    fake.request()
    closed = ct.closed_tcp_port()
    refused(["--proxy", "127.0.0.1:%d" % closed.getsockname()[1], "127.0.0.1", "9"],
            "cannot reach the proxy: Connection refused")
    closed.close()
    # SIGTERM in the middle of the negotiation: a prompt, clean exit.
    p = ct.spawn([ct.BIN, "connect", "--proxy", "127.0.0.1:%d" % fake.port, "--proxy-type",
                  "socks4", "127.0.0.1", "9"])
    fake.request()
    p.send_signal(ct.signal.SIGTERM)
    try:
        rc = p.wait(timeout=ct.T(10))
    except ct.subprocess.TimeoutExpired:
        raise ct.TestFailure("csock did not stop on SIGTERM during the negotiation")
    err = p.stderr.read().decode("utf-8", "replace")
    ct.check_clean(err)
    ct.check_eq(rc, 0, "stopped by SIGTERM (stderr %r)" % err)


def need_ipv6_loopback():
    """Skips the test on a host without an IPv6 loopback address."""
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError as e:
        raise ct.Skipped("no IPv6 loopback (%s)" % e)


def test_ipv6():
    need_ipv6_loopback()
    s = _listen("::1")
    _serve(s, _echo)
    echo6 = s.getsockname()[1]
    fake = FakeProxy("socks5")
    rc, got, err = through(["--proxy", "127.0.0.1:%d" % fake.port, "--proxy-type", "socks5",
                            "::1", str(echo6)], b"six\n")
    ct.check_eq((rc, got), (0, b"six\n"), "an IPv6 target (stderr %r)" % err)
    ct.check_eq(fake.request()[0], "::1", "the IPv6 target")
    ct.check(fake.raw.endswith(b"\x04" + b"\0" * 15 + b"\x01" + struct.pack(">H", echo6)),
             "an IPv6 SOCKS5 request")
    http = FakeProxy("http")
    rc, got, err = through(["--proxy", "127.0.0.1:%d" % http.port, "tcp://[::1]:%d" % echo6],
                           b"six\n")
    ct.check_eq((rc, got), (0, b"six\n"), "http, an IPv6 target (stderr %r)" % err)
    ct.check(http.raw.startswith(b"CONNECT [::1]:%d HTTP/1.1\r\n" % echo6), "CONNECT [::1]")
    # A proxy on IPv6: microsocks on [::1].
    ms = start_peer("microsocks", lambda p: ["microsocks", "-i", "::1", "-p", str(p)], host="::1")
    rc, got, err = through(["--proxy", "[::1]:%d" % ms, "--proxy-type", "socks5", "::1",
                            str(echo6)], b"six six\n")
    ct.check_eq((rc, got), (0, b"six six\n"), "through a proxy on [::1] (stderr %r)" % err)


def test_wrong_arguments():
    for args, want in (
            (["--proxy", "h", "--proxy-type", "bogus", "x", "1"], "--proxy-type 'bogus'"),
            (["--proxy", "h", "--proxy-type", "socks4", "--proxy-dns", "remote", "x", "1"],
             "SOCKS4 cannot pass a name"),
            (["--proxy", "h", "--proxy-dns", "nowhere", "x", "1"], "--proxy-dns 'nowhere'"),
            (["--proxy", "h", "-u", "x", "1"], "--proxy tunnels TCP"),
            (["--proxy", "h", "-U", "/tmp/x"], "--proxy tunnels TCP"),
            (["--proxy", "h", "ws://x:1/"], "neither tcp:// nor tls://"),
            (["--proxy-type", "http", "x", "1"], "go with --proxy"),
            (["--proxy", "h", "--proxy-type", "socks5", "--proxy-auth", "nopass", "x", "1"],
             "expected USER:PASS"),
            (["--proxy", "h", "--proxy-dns", "none", "localhost", "1"], "not an IP address"),
            (["--proxy", "127.0.0.1", "--proxy-type", "socks4", "::1", "1"],
             "SOCKS4 carries IPv4 addresses only"),
            # SOCKS4a's address field is IPv4 (a name goes after the user id)
            (["--proxy", "127.0.0.1", "--proxy-type", "socks4a", "tcp://[2001:db8::1]:80"],
             "SOCKS4a carries IPv4 addresses and names only"),
            # a scan goes direct: never past a proxy silently
            (["--proxy", "127.0.0.1:1", "--proxy-type", "socks5", "-z", "127.0.0.1", "1"],
             "--proxy does not go with -z"),
            (["--proxy-auth", "a:b", "-z", "127.0.0.1", "1"], "go with --proxy"),
            (["--proxy", "127.0.0.1:0", "127.0.0.1", "1"], "port 0")):
        refused(args, want, status=2)
    rc, _, err = ct.csock("listen", "--proxy", "127.0.0.1:1", "0")
    ct.check_eq(rc, 2, "listen --proxy (stderr %r)" % err)


if __name__ == "__main__":
    ct.main()
