#!/usr/bin/env python3
"""csock listen --proxy-type http|socks5 as a proxy server: curl's --socks5,
--socks5-hostname and --proxy (CONNECT) as its clients, and csock connect
--proxy against it; IPv4, IPv6 and names; --proxy-auth required when given;
--deny applied to clients; many clients at once, byte-exact."""
import functools
import hashlib
import http.server
import os
import random
import signal
import socket
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import csocktest as ct  # noqa: E402
import test_nc_proxy as tp  # noqa: E402  (its echo server and `through`)


def proxy_server(*args, host="127.0.0.1"):
    """csock listen --proxy-type ... on a port of its choosing: (proc, port)."""
    p = ct.spawn([ct.BIN, "listen"] + list(args) + [host, "0"])
    line = p.stderr.readline().decode()
    shown = "[%s]" % host if ":" in host else host
    ct.check(line.startswith("listening tcp://%s:" % shown), "no listening line: %r" % line)
    return p, int(line.rsplit(":", 1)[1])


def web(host="127.0.0.1"):
    """A static HTTP server on host with one file; (port, its bytes)."""
    d = ct.tmpdir()
    body = random.Random(7).randbytes(300 * 1000)
    with open(os.path.join(d, "f.bin"), "wb") as f:
        f.write(body)

    class V6(http.server.ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    h = functools.partial(Quiet, directory=d)
    srv = V6((host, 0), h)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv.server_address[1], body


def curl(*args):
    ct.need("curl")
    r = subprocess.run(["curl", "-sS", "--max-time", str(int(ct.T(20)))] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=ct.T(30))
    return r.returncode, r.stdout, r.stderr.decode()


def stop(p):
    """SIGTERM: exit 0, no sanitizer report. Returns its stderr."""
    p.send_signal(signal.SIGTERM)
    rc = p.wait(timeout=ct.T(10))
    err = p.stderr.read().decode("utf-8", "replace")
    ct.check_clean(err)
    ct.check_eq(rc, 0, "the proxy's exit status (stderr %r)" % err)
    return err


def test_curl_socks5():
    p, port = proxy_server("--proxy-type", "socks5")
    wport, body = web()
    w6, body6 = web("::1")
    for args, url, want in (
            (["--socks5", "127.0.0.1:%d" % port], "http://127.0.0.1:%d/f.bin" % wport, body),
            (["--socks5-hostname", "127.0.0.1:%d" % port], "http://localhost:%d/f.bin" % wport,
             body),
            (["--socks5", "127.0.0.1:%d" % port], "http://[::1]:%d/f.bin" % w6, body6)):
        rc, out, err = curl(*(args + [url]))
        ct.check_eq(rc, 0, "curl %s %s (stderr %r)" % (args, url, err))
        ct.check(out == want, "curl %s %s: %d bytes, want %d" % (args, url, len(out), len(want)))
    stop(p)


def test_curl_http_connect_with_auth():
    p, port = proxy_server("--proxy-type", "http", "--proxy-auth", "alice:s3cret")
    wport, body = web()
    url = "http://127.0.0.1:%d/f.bin" % wport
    rc, out, err = curl("-p", "--proxy", "http://127.0.0.1:%d" % port, "--proxy-user",
                        "alice:s3cret", url)
    ct.check_eq(rc, 0, "curl through CONNECT (stderr %r)" % err)
    ct.check(out == body, "%d bytes, want %d" % (len(out), len(body)))
    rc, out, err = curl("-p", "--proxy", "http://127.0.0.1:%d" % port, "-o", "/dev/null",
                        "-w", "%{http_connect}", url)
    ct.check_eq(out, b"407", "CONNECT without credentials")
    rc, out, err = curl("-p", "--proxy", "http://127.0.0.1:%d" % port, "--proxy-user",
                        "alice:wrong", "-o", "/dev/null", "-w", "%{http_connect}", url)
    ct.check_eq(out, b"407", "CONNECT with wrong credentials")
    # Neither CONNECT nor an absolute URI: refused in one answer.
    with socket.create_connection(("127.0.0.1", port), timeout=ct.T(10)) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        ct.check(ct.recv_all(s).startswith(b"HTTP/1.1 400 "), "an origin-form GET is answered 400")
    stop(p)


def origin(host="127.0.0.1"):
    """An HTTP origin that answers a request with what it saw: the method,
    the path, the header fields and the body's length and sha256 (the body
    read as its framing says, chunked decoded here)."""

    class Srv(http.server.ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    class Echo(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def body(self):
            if "chunked" in self.headers.get("Transfer-Encoding", ""):
                data = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length", "0")))

        def answer(self):
            data = self.body()
            fields = "".join("%s: %s\n" % kv for kv in self.headers.items())
            text = ("%s %s\n%s%d %s\n" % (self.command, self.path, fields, len(data),
                                             hashlib.sha256(data).hexdigest())).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(text)))
            self.send_header("Connection", "keep-alive")
            self.send_header("Keep-Alive", "timeout=5")
            self.send_header("X-Origin", "yes")
            self.end_headers()
            self.wfile.write(text)

        do_GET = do_POST = do_PUT = do_DELETE = answer

    srv = Srv((host, 0), Echo)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv.server_address[1]


def test_http_forwarding_absolute_uri():
    """curl -x: GET, POST with Content-Length, PUT chunked, in origin-form to
    the origin with the hop-by-hop fields dropped and Host set; the answer
    back with Connection: close; --proxy-auth applies; https:// is refused."""
    p, port = proxy_server("--proxy-type", "http", "--proxy-auth", "carol:pw")
    wport, body = web()
    oport = origin()
    px = ["-x", "http://127.0.0.1:%d" % port, "--proxy-user", "carol:pw"]
    rc, out, err = curl(*(px + ["http://127.0.0.1:%d/f.bin" % wport]))
    ct.check_eq(rc, 0, "curl -x GET (stderr %r)" % err)
    ct.check(out == body, "GET: %d bytes, want %d" % (len(out), len(body)))
    rc, out, err = curl("-x", "http://127.0.0.1:%d" % port, "-o", "/dev/null", "-w",
                        "%{http_code}", "http://127.0.0.1:%d/f.bin" % wport)
    ct.check_eq(out, b"407", "forwarding without credentials")
    d = ct.tmpdir()
    data = random.Random(3).randbytes(700 * 1000)
    with open(os.path.join(d, "up.bin"), "wb") as f:
        f.write(data)
    want_tail = ("%d %s\n" % (len(data), hashlib.sha256(data).hexdigest())).encode()
    url = "http://carol@127.0.0.1:%d/up?x=1" % oport
    for extra, method in ((["-H", "Expect:"], "POST"),
                          (["-H", "Transfer-Encoding: chunked", "-H", "Expect:", "-X", "PUT"],
                           "PUT")):
        rc, out, err = curl(*(px + extra + [
            "-i", "--data-binary", "@" + os.path.join(d, "up.bin"),
            "-H", "Connection: X-Drop", "-H", "X-Drop: 1", "-H", "Keep-Alive: 300",
            "-H", "Proxy-Connection: keep-alive", "-H", "TE: trailers", "-H", "X-Keep: 2", url]))
        ct.check_eq(rc, 0, "curl -x %s (stderr %r)" % (method, err))
        head, _, text = out.partition(b"\r\n\r\n")
        head = head.decode("latin-1").lower()
        ct.check(head.startswith("http/1.0 200"), "%s: %r" % (method, head))
        ct.check("connection: close" in head and "keep-alive" not in head
                 and "x-origin: yes" in head, "%s: the answer's head %r" % (method, head))
        seen = text.decode("latin-1")
        first, fields = seen.split("\n", 1)
        ct.check_eq(first, "%s /up?x=1" % method, "the request line the origin saw")
        low = fields.lower()
        for gone in ("x-drop", "keep-alive", "proxy-connection", "proxy-authorization", "te:"):
            ct.check(gone not in low, "%s: %r reached the origin: %r" % (method, gone, fields))
        ct.check("x-keep: 2" in low and "host: 127.0.0.1:%d\n" % oport in low
                 and "connection: close" in low, "%s: fields %r" % (method, fields))
        ct.check(seen.endswith(want_tail.decode()), "%s: the body: %r" % (method, seen[-90:]))
    for raw, want in ((b"GET https://127.0.0.1:1/ HTTP/1.1\r\nHost: x\r\n\r\n", b"CONNECT"),
                      (b"GET http://127.0.0.1:99999/ HTTP/1.1\r\n\r\n", b"400 Bad Request"),
                      # Lines ending in a bare LF: each grows by a CR on the way.
                      (b"GET http://127.0.0.1:%d/x HTTP/1.1\n" % oport + b"a:\n" * 1500
                       + b"Host: x\r\n\r\n", b"HTTP/1.0 4")):
        with socket.create_connection(("127.0.0.1", port), timeout=ct.T(10)) as s:
            s.sendall(raw[:-4] + b"\r\nProxy-Authorization: Basic Y2Fyb2w6cHc=\r\n\r\n")
            got = ct.recv_all(s)
            ct.check(want in got, "%r answered %r" % (raw, got))
    closed = ct.closed_tcp_port()
    rc, out, err = curl(*(px + ["-o", "/dev/null", "-w", "%{http_code}",
                                "http://127.0.0.1:%d/" % closed.getsockname()[1]]))
    ct.check_eq(out, b"502", "a closed origin port")
    closed.close()
    stop(p)
    p, port = proxy_server("--proxy-type", "http", "--deny", "127.0.0.1")
    rc, out, err = curl("-x", "http://127.0.0.1:%d" % port, "http://127.0.0.1:%d/" % oport)
    ct.check(rc != 0 and out == b"", "a denied client got %r (curl %d)" % (out, rc))
    stop(p)


def test_csock_connect_through_csock():
    echo = tp.echo_port()
    for kind in ("socks5", "http"):
        p, port = proxy_server("--proxy-type", kind, "--proxy-auth", "bob:pw")
        proxy = ["--proxy", "127.0.0.1:%d" % port, "--proxy-type", kind, "--proxy-auth", "bob:pw"]
        data = tp.payload(1 << 20)
        for target in (["127.0.0.1", str(echo)], ["localhost", str(echo)]):
            rc, got, err = tp.through(proxy + target, data)
            ct.check(got == data, "%s %s: %d of %d bytes" % (kind, target, len(got), len(data)))
            ct.check_eq(rc, 0, "exit status (stderr %r)" % err)
        # csock's proxy passes the half-close on: the answer comes after it.
        rc, out, err = ct.csock("connect", *(proxy + ["127.0.0.1", str(echo)]),
                                input=b"half-closed\n")
        ct.check_eq((rc, out), (0, b"half-closed\n"), "%s after a half-close (%r)" % (kind, err))
        tp.refused(["--proxy", "127.0.0.1:%d" % port, "--proxy-type", kind, "--proxy-auth",
                    "bob:nope", "127.0.0.1", str(echo)],
                   "username/password authentication refused" if kind == "socks5" else "407")
        closed = ct.closed_tcp_port()
        tp.refused(proxy + ["127.0.0.1", str(closed.getsockname()[1])],
                   "connection refused (SOCKS5 reply 5)" if kind == "socks5" else "502 Bad Gateway")
        tp.refused(proxy + ["no-such-host.invalid", "80"],
                   "host unreachable (SOCKS5 reply 4)" if kind == "socks5" else "502 Bad Gateway")
        closed.close()
        stop(p)


def test_ipv6_server():
    """The proxy on [::1]; IPv6 targets: SOCKS5 ATYP 4 from csock connect and
    curl, CONNECT [::1]:port, forwarding of http://[::1]:port/."""
    tp.need_ipv6_loopback()
    s = tp._listen("::1")
    tp._serve(s, tp._echo)
    echo6 = s.getsockname()[1]
    w6, body6 = web("::1")
    data = tp.payload(1 << 20)
    for kind in ("socks5", "http"):
        p, port = proxy_server("--proxy-type", kind, host="::1")
        proxy = ["--proxy", "[::1]:%d" % port, "--proxy-type", kind]
        for target in (["::1", str(echo6)], ["tcp://[::1]:%d" % echo6]):
            rc, got, err = tp.through(proxy + target, data)
            ct.check(got == data, "%s %s: %d of %d bytes" % (kind, target, len(got), len(data)))
            ct.check_eq(rc, 0, "exit status (stderr %r)" % err)
        url = "http://[::1]:%d/f.bin" % w6
        ways = ([["--socks5", "[::1]:%d" % port]] if kind == "socks5" else
                [["-p", "-x", "http://[::1]:%d" % port], ["-x", "http://[::1]:%d" % port]])
        for args in ways:
            rc, out, err = curl(*(args + [url]))
            ct.check_eq(rc, 0, "curl %s %s (stderr %r)" % (args, url, err))
            ct.check(out == body6, "curl %s: %d bytes, want %d" % (args, len(out), len(body6)))
        stop(p)
    # A SOCKS5 request with ATYP 4, byte by byte: the reply's bound address is IPv6 too.
    p, port = proxy_server("--proxy-type", "socks5", host="::1")
    with socket.create_connection(("::1", port), timeout=ct.T(10)) as c:
        c.sendall(b"\x05\x01\x00")
        ct.check_eq(ct.recv_exact(c, 2), b"\x05\x00", "no authentication")
        c.sendall(b"\x05\x01\x00\x04" + socket.inet_pton(socket.AF_INET6, "::1")
                  + echo6.to_bytes(2, "big"))
        reply = ct.recv_exact(c, 22)
        ct.check(reply[:4] == b"\x05\x00\x00\x04" and reply[4:20] == socket.inet_pton(
            socket.AF_INET6, "::1"), "an IPv6 reply: %r" % reply)
        c.sendall(b"ping6\n")
        ct.check_eq(ct.recv_exact(c, 6), b"ping6\n", "through the ATYP 4 tunnel")
    stop(p)


def test_deny_applies_to_clients():
    echo = tp.echo_port()
    p, port = proxy_server("--proxy-type", "socks5", "--deny", "127.0.0.0/8")
    rc, _, err = ct.csock("connect", "--proxy", "127.0.0.1:%d" % port, "--proxy-type", "socks5",
                          "127.0.0.1", str(echo), input=b"x\n")
    ct.check_eq(rc, 1, "a denied client's exit status (stderr %r)" % err)
    ct.check("closed the connection during the negotiation" in err or "reset" in err,
             "a denied client is cut off: %r" % err)
    stop(p)


def test_many_clients_at_once():
    echo = tp.echo_port()
    p, port = proxy_server("--proxy-type", "socks5")
    n, results = 200, []

    def one(i):
        data = random.Random(i).randbytes(20000 + i)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=ct.T(20)) as s:
                s.sendall(b"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01" + echo.to_bytes(2, "big"))
                head = ct.recv_exact(s, 12)
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
                results.append(head[:2] == b"\x05\x00" and ct.recv_all(s) == data)
        except OSError as e:
            results.append(e)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(ct.T(60))
    ok = sum(1 for r in results if r is True)
    ct.check_eq(ok, n, "clients byte-exact through the proxy (others: %r)"
                % [r for r in results if r is not True][:3])
    stop(p)


def test_wrong_protocol_answered_at_once():
    """A client of another protocol is refused at its first byte, not left
    to the 30 s request timeout; an HTTP head over 8 KiB is refused (431)
    whether it came in one read or many."""
    p, port = proxy_server("--proxy-type", "socks5")
    for hello, what in ((b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00", "a SOCKS4 request"),
                        (b"GET / HTTP/1.1\r\n", "an HTTP request")):
        with socket.create_connection(("127.0.0.1", port), timeout=ct.T(10)) as s:
            s.sendall(hello)
            ct.check_eq(ct.recv_all(s), b"\x05\xff", "%s to the SOCKS5 server" % what)
    with socket.create_connection(("127.0.0.1", port), timeout=ct.T(10)) as s:
        s.sendall(b"\x05\x01\x00")
        ct.check_eq(ct.recv_exact(s, 2), b"\x05\x00", "the greeting")
        s.sendall(b"\x04\x01")  # a request of the wrong version
        ct.check_eq(ct.recv_all(s)[:2], b"\x05\x07", "a request of version 4")
    stop(p)
    p, port = proxy_server("--proxy-type", "http")
    head = b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nX-Pad: " + b"a" * 9000 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=ct.T(10)) as s:
        s.sendall(head)
        ct.check(ct.recv_all(s).startswith(b"HTTP/1.1 431 "), "a 9 KB head in one piece")
    stop(p)


def test_dual_stack_logs_v4_clients_plainly():
    """A bare port listens on [::] for IPv4 too; -v names an IPv4 client
    as 127.0.0.1 (as listen -v does), not as ::ffff:127.0.0.1."""
    # (--allow: the [::] socket takes no one from beyond this host)
    p = ct.spawn([ct.BIN, "listen", "-v", "--proxy-type", "socks5", "--allow", "127.0.0.0/8", "0"])
    line = p.stderr.readline().decode()
    if not line.startswith("listening tcp://[::]:"):  # a host without IPv6
        stop(p)
        return
    port = int(line.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=ct.T(10)) as s:
        s.sendall(b"\x05\x01\x00")
        ct.check_eq(ct.recv_exact(s, 2), b"\x05\x00", "the greeting")
        logged = p.stderr.readline().decode()
    ct.check(logged.startswith("csock: proxy: client tcp://127.0.0.1:"), "the log line: %r" % logged)
    stop(p)


def test_wrong_arguments():
    for args, want in ((["--proxy-type", "socks4", "0"], "http and socks5 only"),
                       (["--proxy-type", "http", "-u", "0"], "a proxy takes no"),
                       (["--proxy-type", "socks5", "-o", "/dev/null", "0"], "a proxy takes no"),
                       (["--proxy-type", "socks5", "--proxy-auth", "x", "0"], "USER:PASS"),
                       (["--proxy-auth", "a:b", "0"], "goes with --proxy-type"),
                       (["--proxy", "127.0.0.1", "0"], "connect options")):
        rc, _, err = ct.csock("listen", *args)
        ct.check_eq(rc, 2, "listen %s (stderr %r)" % (args, err))
        ct.check(want in err, "listen %s: %r lacks %r" % (args, err, want))


if __name__ == "__main__":
    ct.main()
