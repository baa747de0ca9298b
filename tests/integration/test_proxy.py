#!/usr/bin/env python3
"""csock proxy against real peers.

- 1 MB each way through tcp -> tcp (splice) with half-close, byte-exact;
  the same through tcp -> unix: to `csock serve upper`, and through
  tls:// termination to a plain echo;
- nginx (http) behind the proxy, fetched with curl;
- TLS termination checked with curl and `openssl s_client`; TLS
  origination to `openssl s_server` (verified with --ca; refused without);
- a backend name (localhost) resolved on the loop;
- balancing: roundrobin spreads clients, a dead backend is skipped (the
  client retried on the next), source keeps a client on one backend;
- --check tcp marks a backend down and up again; --check http:/path;
- -m, --idle, SIGTERM drain (a relay in flight finishes), -v lines;
- bad arguments: one line, exit 2.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from csocktest import (BIN, Proc, Server, T, check, check_clean, check_eq, closed_tcp_port,
                       have, main, need, recv_all, run, tmpdir, wait_for)
import tlscerts


class Proxy(Proc):
    """csock proxy ARGS..., ready once every listener printed its line."""

    def __init__(self, *args, listeners=1):
        super().__init__([BIN, "proxy", "-v"] + list(args))
        self.addrs = []
        try:
            for _ in range(listeners):
                line = self.read_line(15)
                check(line.startswith("listening "), "proxy said %r (stderr %r)" % (line, self.stderr()))
                self.addrs.append(line[len("listening "):])
        except BaseException:
            self.stop(signal.SIGKILL)
            raise

    def port(self, i=0):
        return int(self.addrs[i].rsplit(":", 1)[1])

    def connect(self, i=0, timeout=10):
        return socket.create_connection(("127.0.0.1", self.port(i)), timeout=T(timeout))

    def finish(self):
        rc = self.stop(signal.SIGTERM, 15)
        err = self.stderr()
        check_clean(err, "csock proxy")
        check_eq(rc, 0, "proxy exit status (stderr %r)" % err[-800:])
        return err


def tcp_url(ep):
    return "tcp://127.0.0.1:%d" % ep.port


def exchange(s, data, timeout=20):
    """Send data while reading, half-close, read to EOF: what came back."""
    got = bytearray()
    s.settimeout(T(timeout))

    def reader():
        while True:
            b = s.recv(1 << 16)
            if not b:
                return
            got.extend(b)
    t = threading.Thread(target=reader)
    t.start()
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    t.join(T(timeout))
    check(not t.is_alive(), "no EOF from the proxy")
    return bytes(got)


MB = os.urandom(1 << 20)


def test_tcp_megabyte_both_ways_with_half_close():
    with Server("echo", "tcp://127.0.0.1:0") as be:
        px = Proxy("tcp://127.0.0.1:0", "--to", tcp_url(be.endpoints[0]))
        with px.connect() as s:
            got = exchange(s, MB)
        check_eq(len(got), len(MB), "bytes back")
        check(got == MB, "1 MB came back changed")
        err = px.finish()
        check("closed tcp://127.0.0.1:" in err and "1048576 bytes up, 1048576 down" in err,
              "-v close line with both counts: %r" % err)


def test_half_close_keeps_the_other_direction():
    """The client shuts its write side first; the backend still answers
    afterwards, and only then closes."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    px = Proxy("tcp://127.0.0.1:0", "--to", "tcp://127.0.0.1:%d" % ls.getsockname()[1])
    c = px.connect()
    ls.settimeout(T(10))
    b, _ = ls.accept()
    c.sendall(b"question")
    c.shutdown(socket.SHUT_WR)
    b.settimeout(T(10))
    check_eq(recv_all(b), b"question", "backend got the bytes and then EOF")
    b.sendall(b"late answer" * 1000)
    b.close()
    c.settimeout(T(10))
    check_eq(recv_all(c), b"late answer" * 1000, "answer after the client's EOF")
    c.close()
    ls.close()
    px.finish()


def test_unix_backend_serve_upper():
    d = tmpdir()
    path = os.path.join(d, "upper.sock")
    with Server("upper", "unix:" + path) as be:
        px = Proxy("tcp://127.0.0.1:0", "unix:" + os.path.join(d, "front.sock"),
                   "--to", "unix:" + path, listeners=2)
        with px.connect() as s:
            check_eq(exchange(s, b"hello\nworld\n"), b"HELLO\nWORLD\n", "upper through tcp -> unix")
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(os.path.join(d, "front.sock"))
            check_eq(exchange(s, b"via unix\n"), b"VIA UNIX\n", "upper through unix -> unix")
        lines = b"".join(b"line %d\n" % i for i in range(20000))
        with px.connect() as s:
            check_eq(exchange(s, lines), lines.upper(), "many lines, byte-exact")
        if have("nc"):
            r = subprocess.run(["nc", "-N", "127.0.0.1", str(px.port())], input=b"with nc\n",
                               capture_output=True, timeout=T(20))
            check_eq(r.stdout, b"WITH NC\n", "nc through the proxy")
        px.finish()


def test_backend_by_name():
    with Server("echo", "tcp://127.0.0.1:0") as be:
        px = Proxy("tcp://127.0.0.1:0", "--to", "tcp://localhost:%d" % be.endpoints[0].port)
        with px.connect() as s:
            check_eq(exchange(s, b"named"), b"named", "echo via a name")
        px.finish()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NGINX_CONF = """worker_processes 1;
master_process off;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log error;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port} default_server;
        root {d}/www;
        location /health {{ return 200 "ok\\n"; }}
    }}
}}
"""


def start_nginx():
    nginx = "/usr/sbin/nginx"
    d = tmpdir()
    os.makedirs(os.path.join(d, "www"))
    with open(os.path.join(d, "www", "big.bin"), "wb") as f:
        f.write(MB)
    with open(os.path.join(d, "www", "index.html"), "w") as f:
        f.write("hello from nginx\n")
    port = free_port()
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(d=d, port=port))
    p = Proc([nginx, "-c", conf, "-p", d, "-e", os.path.join(d, "error.log")])

    def up():
        check(p.alive(), "nginx exited: " + p.stderr())
        return _connects(port)
    wait_for(up, 15, "nginx to listen")
    return p, port, d


def curl(*args):
    r = subprocess.run(["curl", "-sS", "--max-time", str(int(T(20)))] + list(args),
                       capture_output=True, timeout=T(30))
    return r.returncode, r.stdout, r.stderr.decode(errors="replace")


def need_nginx():
    if not os.access("/usr/sbin/nginx", os.X_OK):
        need("nginx")


def test_nginx_behind_the_proxy_with_curl():
    need("curl")
    need_nginx()
    ng, port, d = start_nginx()
    px = Proxy("tcp://127.0.0.1:0", "--to", "tcp://127.0.0.1:%d" % port)
    rc, out, err = curl("http://127.0.0.1:%d/" % px.port())
    check_eq((rc, out), (0, b"hello from nginx\n"), "index through the proxy (%s)" % err)
    rc, out, err = curl("http://127.0.0.1:%d/big.bin" % px.port())
    check(rc == 0 and out == MB, "1 MB file through the proxy (%s)" % err)
    # keep-alive: several requests on one relayed connection
    rc, out, err = curl("http://127.0.0.1:%d/" % px.port(), "http://127.0.0.1:%d/" % px.port())
    check_eq(out, b"hello from nginx\n" * 2, "two requests on one connection")
    px.finish()
    ng.stop()


def test_tls_termination_curl_and_s_client():
    need("openssl", "curl")
    certs = tlscerts.tempdir()
    try:
        with Server("echo", "tcp://127.0.0.1:0") as be:
            px = Proxy("tls://127.0.0.1:0", "--to", tcp_url(be.endpoints[0]),
                       "--cert", os.path.join(certs, "server.pem"),
                       "--key", os.path.join(certs, "server.key"))
            check(px.addrs[0].startswith("tls://"), "tls listening line: %r" % px.addrs)
            sc = Proc(["openssl", "s_client", "-connect", "127.0.0.1:%d" % px.port(),
                       "-CAfile", os.path.join(certs, "ca.pem"), "-verify_return_error",
                       "-quiet", "-servername", "localhost"])
            sc.write(b"through TLS\n")
            sc.read_until(lambda o: b"through TLS\n" in o, 20)
            sc.stop()
            ng, port, d = start_nginx() if os.access("/usr/sbin/nginx", os.X_OK) else (None, 0, None)
            if ng:
                px2 = Proxy("tls://127.0.0.1:0", "--to", "tcp://127.0.0.1:%d" % port,
                            "--cert", os.path.join(certs, "server.pem"),
                            "--key", os.path.join(certs, "server.key"))
                rc, out, err = curl("--cacert", os.path.join(certs, "ca.pem"),
                                    "https://localhost:%d/" % px2.port())
                check_eq((rc, out), (0, b"hello from nginx\n"), "https via the proxy (%s)" % err)
                px2.finish()
                ng.stop()
            # 1 MB through TLS termination (stream relay), both ways
            import ssl
            ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
            with socket.create_connection(("127.0.0.1", px.port()), timeout=T(20)) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                    got = bytearray()
                    s.sendall(MB)
                    while len(got) < len(MB):
                        b = s.recv(1 << 16)
                        if not b:
                            break
                        got += b
                    check(bytes(got) == MB, "1 MB through TLS termination: %d bytes" % len(got))
            px.finish()
    finally:
        shutil.rmtree(certs, ignore_errors=True)


def s_server(certs, port):
    return Proc(["openssl", "s_server", "-accept", "127.0.0.1:%d" % port, "-quiet",
                 "-cert", os.path.join(certs, "server.pem"),
                 "-key", os.path.join(certs, "server.key")])


def test_tls_origination_to_s_server():
    need("openssl")
    certs = tlscerts.tempdir()
    try:
        port = free_port()
        srv = s_server(certs, port)
        wait_for(lambda: _connects(port), 15, "s_server to listen")
        px = Proxy("tcp://127.0.0.1:0", "--to", "tls://localhost:%d" % port,
                   "--ca", os.path.join(certs, "ca.pem"))
        c = px.connect()
        c.sendall(b"to s_server\n")
        got = srv.read_until(lambda o: b"to s_server\n" in o, 20)
        check(b"to s_server\n" in got, "s_server got the plaintext")
        srv.write(b"from s_server\n")
        c.settimeout(T(10))
        buf = b""
        while b"from s_server\n" not in buf:
            b = c.recv(100)
            check(b, "closed before s_server's line came back")
            buf += b
        c.close()
        srv.stop()
        err = px.finish()
        # Without --ca the system CAs do not know our CA: refused.
        port = free_port()
        srv = s_server(certs, port)
        wait_for(lambda: _connects(port), 15, "s_server to listen")
        px = Proxy("tcp://127.0.0.1:0", "--to", "tls://localhost:%d" % port)
        with px.connect() as c:
            c.settimeout(T(20))
            check_eq(recv_all(c), b"", "unverified backend: the client is closed")
        srv.stop()
        err = px.finish()
        check("connect tls://localhost" in err or "TLS" in err, "the failed verify is logged: %r" % err)
    finally:
        shutil.rmtree(certs, ignore_errors=True)


def _connects(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def which_backend(px, i=0):
    with px.connect(i) as s:
        return exchange(s, b"x\n")


def test_roundrobin_spreads_and_skips_a_dead_backend():
    dead_sock = closed_tcp_port()
    dead = dead_sock.getsockname()[1]
    with Server("echo", "tcp://127.0.0.1:0") as a, Server("upper", "tcp://127.0.0.1:0") as b:
        px = Proxy("tcp://127.0.0.1:0", "--to", tcp_url(a.endpoints[0]),
                   "--to", "tcp://127.0.0.1:%d" % dead, "--to", tcp_url(b.endpoints[0]))
        seen = [which_backend(px) for _ in range(9)]
        check(all(x in (b"x\n", b"X\n") for x in seen), "every client served: %r" % seen)
        check(seen.count(b"x\n") >= 3 and seen.count(b"X\n") >= 3, "spread: %r" % seen)
        err = px.finish()
        check("connect tcp://127.0.0.1:%d" % dead in err, "the refused connect is logged")
        check("backend tcp://127.0.0.1:%d down" % dead in err, "the dead backend marked down: %r" % err[-1500:])
    dead_sock.close()


def test_source_balance_keeps_a_client():
    with Server("echo", "tcp://127.0.0.1:0") as a, Server("upper", "tcp://127.0.0.1:0") as b:
        px = Proxy("tcp://127.0.0.1:0", "--balance", "source",
                   "--to", tcp_url(a.endpoints[0]), "--to", tcp_url(b.endpoints[0]))
        seen = {which_backend(px) for _ in range(6)}
        check_eq(len(seen), 1, "one client address, one backend")
        px.finish()


def test_leastconn_prefers_the_idle_backend():
    with Server("echo", "tcp://127.0.0.1:0") as a, Server("upper", "tcp://127.0.0.1:0") as b:
        px = Proxy("tcp://127.0.0.1:0", "--balance", "leastconn",
                   "--to", tcp_url(a.endpoints[0]), "--to", tcp_url(b.endpoints[0]))
        held = px.connect()
        held.sendall(b"h\n")
        held.settimeout(T(10))
        first = held.recv(10)
        # With one relay open on that backend the others go to the other one.
        seen = {which_backend(px) for _ in range(4)}
        check_eq(seen, {b"X\n" if first == b"h\n" else b"x\n"}, "the idle backend only")
        held.close()
        px.finish()


def test_health_check_marks_down_and_up():
    port = free_port()
    with Server("echo", "tcp://127.0.0.1:0") as a:
        px = Proxy("tcp://127.0.0.1:0", "--check", "tcp", "--check-interval", "0.1",
                   "--rise", "2", "--fall", "2",
                   "--to", tcp_url(a.endpoints[0]), "--to", "tcp://127.0.0.1:%d" % port)
        wait_for(lambda: "backend tcp://127.0.0.1:%d down" % port in px.stderr(), 15,
                 "the check to mark the closed port down")
        # While down, every client goes to the live one without a refused connect.
        for _ in range(4):
            check_eq(which_backend(px), b"x\n", "served by the live backend")
        b = Server("upper", "tcp://127.0.0.1:%d" % port)
        wait_for(lambda: "backend tcp://127.0.0.1:%d up" % port in px.stderr(), 15,
                 "the check to see the backend come back")
        seen = {which_backend(px) for _ in range(6)}
        check_eq(seen, {b"x\n", b"X\n"}, "both backends serve again")
        b.finish()
        px.finish()


def test_http_health_check():
    need_nginx()
    ng, port, d = start_nginx()
    with Server("echo", "tcp://127.0.0.1:0") as a:
        # nginx answers 404 for /missing: down; /health: up.
        px = Proxy("tcp://127.0.0.1:0", "--check", "http:/missing", "--check-interval", "0.1",
                   "--fall", "1", "--to", "tcp://127.0.0.1:%d" % port, "--to", tcp_url(a.endpoints[0]))
        wait_for(lambda: "backend tcp://127.0.0.1:%d down: HTTP 404" % port in px.stderr(), 15,
                 "a 404 to mark nginx down")
        px.finish()
        px = Proxy("tcp://127.0.0.1:0", "--check", "http:/health", "--check-interval", "0.1",
                   "--fall", "1", "--to", "tcp://127.0.0.1:%d" % port)
        rc, out, err = curl("http://127.0.0.1:%d/" % px.port())
        check_eq(out, b"hello from nginx\n", "served while healthy")
        check("backend tcp://127.0.0.1:%d down" % port not in px.stderr(),
              "never marked down: %r" % px.stderr())
        px.finish()
    ng.stop()


def test_max_conns_and_idle():
    with Server("echo", "tcp://127.0.0.1:0") as be:
        px = Proxy("tcp://127.0.0.1:0", "-m", "1", "--idle", "0.5", "--to", tcp_url(be.endpoints[0]))
        a = px.connect()
        a.sendall(b"a")
        a.settimeout(T(10))
        check_eq(a.recv(1), b"a", "first relay works")
        b = px.connect()
        b.settimeout(T(10))
        check_eq(recv_all(b), b"", "the second client is closed (-m 1)")
        t0 = time.monotonic()
        check_eq(recv_all(a), b"", "the idle relay is closed")
        check(time.monotonic() - t0 < T(10), "idle close in time")
        err = px.finish()
        check("refused" in err and "Connection timed out" in err or "timed out" in err,
              "refusal and idle timeout logged: %r" % err)


def test_connect_timeout_moves_to_the_next_backend():
    """A backend whose accept queue is full never answers a SYN: after
    --connect-timeout the client is relayed to the next backend."""
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    fillers = []
    for _ in range(4):  # fill the queue; later SYNs are dropped
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(full.getsockname())
        fillers.append(c)
    with Server("upper", "tcp://127.0.0.1:0") as be:
        px = Proxy("tcp://127.0.0.1:0", "--connect-timeout", "0.5",
                   "--to", "tcp://127.0.0.1:%d" % full.getsockname()[1], "--to", tcp_url(be.endpoints[0]))
        t0 = time.monotonic()
        with px.connect(timeout=20) as s:
            check_eq(exchange(s, b"late\n"), b"LATE\n", "served by the second backend")
        check(time.monotonic() - t0 >= 0.4, "the first backend was given its connect timeout")
        err = px.finish()
        check("Connection timed out" in err, "the timeout is logged: %r" % err)
    for c in fillers:
        c.close()
    full.close()


def test_sigterm_drains():
    with Server("echo", "tcp://127.0.0.1:0") as be:
        px = Proxy("tcp://127.0.0.1:0", "--drain-timeout", "20", "--to", tcp_url(be.endpoints[0]))
        c = px.connect()
        c.sendall(b"before")
        c.settimeout(T(10))
        check_eq(c.recv(6), b"before", "relay up")
        os.kill(px.pid, signal.SIGTERM)
        wait_for(lambda: "draining" in px.stderr(), 10, "the drain to begin")
        # New clients are refused; the relay in flight goes on.
        check(not _connects(px.port()), "the listener is closed while draining")
        c.sendall(b"during")
        check_eq(c.recv(6), b"during", "the open relay still works")
        check(px.alive(), "still running with a relay open")
        c.close()
        check_eq(px.wait(15), 0, "exit once the last relay ended")
        check_clean(px.stderr(), "csock proxy")


def test_bad_arguments():
    cases = [
        ([], "missing LISTEN"),
        (["tcp://127.0.0.1:0"], "missing --to"),
        (["tcp://127.0.0.1:0", "--to", "nonsense::"], "bad address"),
        (["tcp://127.0.0.1:0", "--to", "tcp://127.0.0.1:1", "--balance", "random"], "--balance"),
        (["tcp://127.0.0.1:0", "--to", "tcp://127.0.0.1:1", "--check", "icmp"], "--check"),
        (["tls://127.0.0.1:0", "--to", "tcp://127.0.0.1:1"], "needs --cert"),
        (["udp://127.0.0.1:0", "--to", "tcp://127.0.0.1:1"], "udp"),
        (["tcp://127.0.0.1:0", "--to", "tcp://127.0.0.1:1", "--bogus"], "unknown option"),
    ]
    for args, what in cases:
        rc, out, err = run([BIN, "proxy"] + args, timeout=10)
        check_eq(rc, 2, "exit status for %r (%r)" % (args, err))
        lines = err.strip().splitlines()
        check(len(lines) == 1 and what in lines[0], "one line naming %r: %r" % (what, err))


if __name__ == "__main__":
    main()
