#!/usr/bin/env python3
"""csock serve --proxy-protocol behind a real HAProxy (send-proxy and
send-proxy-v2): the served side sees the real client (the -v log, the HTTP
access log), a connection without a header is closed while the others go
on, and HAProxy's health checks see a csock instance go down and come
back. docs/deploy/haproxy.cfg is run as is, with its ports substituted.

The clients connect from 127.0.0.2 (still loopback) so that the client's
address differs from HAProxy's own (127.0.0.1)."""
import os
import re
import signal
import socket
import time

from deploykit import CLIENT_IP, HAProxy, need_haproxy, tcp_cfg, wait_for
from csocktest import (recv_all, BIN, REPO, Proc, Server, T, TestFailure, check, check_eq, main, need,
                       tmpdir)

DOC_CFG = os.path.join(REPO, "docs", "deploy", "haproxy.cfg")


def recv_exactly(s, n):
    got = b""
    while len(got) < n:
        chunk = s.recv(n - len(got))
        if not chunk:
            break
        got += chunk
    return got


def closed_by_peer(s, timeout=10):
    """The server closed this connection (EOF or reset) within timeout."""
    s.settimeout(T(timeout))
    try:
        while True:
            if not s.recv(4096):
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def serve_echo_behind(option):
    need_haproxy()
    srv = Server("echo", "tcp://127.0.0.1:0", opts=["-v", "--proxy-protocol"])
    try:
        hp = HAProxy(lambda ports: tcp_cfg(ports[0], srv.endpoints[0].port, option))
    except BaseException:
        srv.stop(signal.SIGKILL)
        raise
    return srv, hp


def check_real_client(srv, hp):
    # A long connection through HAProxy, opened first...
    long = hp.client()
    long.sendall(b"first\n")
    check_eq(recv_exactly(long, 6), b"first\n", "echo through haproxy")
    cport = long.getsockname()[1]
    want = "connection from tcp://%s:%d" % (CLIENT_IP, cport)
    try:
        wait_for(lambda: want in srv.stderr(), 10, "%r in the -v log" % want)
    except TestFailure as e:  # what the log said instead (once seen in CI, not reproduced)
        raise TestFailure("%s; the log: %r; haproxy: %r" % (e, srv.stderr()[-1500:], hp.stderr()[-800:]))
    # ...a direct one without a header is closed (and logged with -v)...
    bad = socket.create_connection(srv.endpoints[0].sockaddr, timeout=T(10))
    bad.sendall(b"hello without a header\n")
    check(closed_by_peer(bad), "a connection without a PROXY header stays open")
    bad.close()
    wait_for(lambda: "bad PROXY protocol header" in srv.stderr(), 10, "the -v line of the dropped one")
    # ...while the proxied one is still served, and new ones are too.
    long.sendall(b"second\n")
    check_eq(recv_exactly(long, 7), b"second\n", "echo after the bad one")
    other = hp.client()
    other.sendall(b"x\n")
    check_eq(recv_exactly(other, 2), b"x\n", "a new proxied connection")
    other.close()
    long.close()
    check("connection from tcp://127.0.0.1:%d" % srv.endpoints[0].port not in srv.stderr(),
          "the balancer's address leaked into the log")


def test_send_proxy_v1_echo():
    srv, hp = serve_echo_behind("send-proxy")
    try:
        check_real_client(srv, hp)
    finally:
        hp.stop()
    err = srv.finish()
    check(re.search(r"closed tcp://127\.0\.0\.2:\d+ \(", err), "no close line for the client: %r" % err)


def test_send_proxy_v2_echo():
    srv, hp = serve_echo_behind("send-proxy-v2")
    try:
        check_real_client(srv, hp)
    finally:
        hp.stop()
    srv.finish()


def test_slow_header_times_out():
    srv = Server("echo", "tcp://127.0.0.1:0", opts=["-v", "--proxy-protocol", "--proxy-timeout", "0.3"])
    with srv:
        s = socket.create_connection(srv.endpoints[0].sockaddr, timeout=T(10))
        s.sendall(b"PROXY TCP4 ")
        t0 = time.monotonic()
        check(closed_by_peer(s), "a header that never ends is not cut")
        check(time.monotonic() - t0 >= 0.25, "cut before the timeout")
        s.close()
        wait_for(lambda: "no PROXY protocol header in time" in srv.stderr(), 10, "the -v line")


def test_header_in_flight_when_the_drain_starts():
    # SIGTERM while a header is half there: the connection is finished and
    # served (then ends with the drain), not cut with the listener.
    # One loop: its accept queue is first in, first out, so once the probe
    # (connected after s) is answered, s has been accepted too. With a loop
    # per core s could still wait in the other loop's queue, and the
    # listener's close at the drain reset it (1 run in ~30).
    srv = Server("echo", "tcp://127.0.0.1:0", opts=["--proxy-protocol", "-t", "1"])
    s = socket.create_connection(srv.endpoints[0].sockaddr, timeout=T(10))
    s.sendall(b"PROXY TCP4 192.0.2.9 ")
    probe = socket.create_connection(srv.endpoints[0].sockaddr, timeout=T(10))
    probe.sendall(b"PROXY TCP4 192.0.2.10 127.0.0.1 1 2\r\nready\n")
    check_eq(recv_exactly(probe, 6), b"ready\n", "a first client")  # the header reader runs
    probe.close()
    srv.p.send_signal(signal.SIGTERM)
    # Once the drain has begun, new connections are refused...
    wait_for(lambda: refused(srv.endpoints[0].sockaddr), 10, "the drain to stop accepting")
    # ...but the one in the middle of its header is still served.
    s.sendall(b"127.0.0.1 5 6\r\nstill served\n")
    check_eq(recv_exactly(s, 13), b"still served\n", "echo after the drain began")
    s.close()
    rc = srv.p.wait(T(20))
    check_eq(rc, 0, "exit status (stderr %r)" % srv.stderr()[-500:])


def refused(addr):
    try:
        socket.create_connection(addr, timeout=T(2)).close()
        return False
    except (ConnectionRefusedError, ConnectionResetError):
        # A connect racing the listener's shutdown is reset, not refused:
        # either way nobody will accept it.
        return True


def test_bad_options():
    from csocktest import csock
    rc, _, err = csock("serve", "echo", "tcp://127.0.0.1:0", "--proxy-timeout", "0")
    check_eq(rc, 2, "exit status for --proxy-timeout 0")
    check("proxy-timeout" in err and err.count("\n") == 1, "one line naming the option: %r" % err)


def test_tls_and_ws_behind_send_proxy_v2():
    # The header comes first, TLS (passed through by HAProxy) after it; a
    # ws:// endpoint reads it before its HTTP upgrade. Both log the client.
    need_haproxy()
    import ssl
    import tlscerts
    certs = tlscerts.make(tmpdir())
    srv = Proc([BIN, "serve", "-v", "--proxy-protocol", "--cert", os.path.join(certs, "server.pem"),
                "--key", os.path.join(certs, "server.key"), "echo", "tls://127.0.0.1:0",
                "ws://127.0.0.1:0/ws"])
    hp = None
    try:
        tls_line, ws_line = srv.read_line(15), srv.read_line(15)
        tls_port = int(re.match(r"listening tls://127\.0\.0\.1:(\d+)$", tls_line).group(1))
        ws_port = int(re.match(r"listening ws://127\.0\.0\.1:(\d+)/ws$", ws_line).group(1))
        hp = HAProxy(lambda ports: tcp_cfg(ports[0], tls_port, "send-proxy-v2") + f"""frontend w
    bind 127.0.0.1:{ports[1]}
    default_backend bw
backend bw
    server s2 127.0.0.1:{ws_port} send-proxy-v2
""", 2)
        front_ws = hp.ports[1]
        ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
        raw = hp.client()
        cport = raw.getsockname()[1]
        t = ctx.wrap_socket(raw, server_hostname="localhost")
        t.sendall(b"over tls\n")
        check_eq(recv_exactly(t, 9), b"over tls\n", "echo over TLS through haproxy")
        want = "connection from tcp://%s:%d" % (CLIENT_IP, cport)  # logged before the handshake
        wait_for(lambda: want in srv.stderr(), 10, "%r in the -v log" % want)
        t.close()
        w = socket.socket()
        w.settimeout(T(10))
        w.bind((CLIENT_IP, 0))
        w.connect(("127.0.0.1", front_ws))
        w.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = w.recv(4096)
            if not chunk:
                break
            head += chunk
        check(head.startswith(b"HTTP/1.1 101"), "ws upgrade through haproxy: %r" % head[:200])
        want = "connection from tcp://%s:%d" % (CLIENT_IP, w.getsockname()[1])
        wait_for(lambda: want in srv.stderr(), 10, "%r in the -v log" % want)
        w.close()
    finally:
        if hp:
            hp.stop()
        rc = srv.stop(signal.SIGTERM, 20)
    check_eq(rc, 0, "serve exit status (stderr %r)" % srv.stderr()[-800:])


# ---- docs/deploy/haproxy.cfg: two serve http instances, checks -----------------


class HttpInstance:
    def __init__(self, www, port, log):
        self.p = Proc([BIN, "serve", "http", www, "tcp://127.0.0.1:%d" % port, "--proxy-protocol",
                       "--access-log", log, "-t", "1"])
        line = self.p.read_line(15)
        check(line.startswith("listening tcp://127.0.0.1:"), "serve http said %r (%r)"
              % (line, self.p.stderr()))
        self.port = int(line.rsplit(":", 1)[1])


def http_get(hp):
    s = hp.client()
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = recv_all(s)
    s.close()
    return data


def test_doc_config_two_instances_and_checks():
    need_haproxy()
    d = tmpdir()
    www = os.path.join(d, "www")
    os.mkdir(www)
    with open(os.path.join(www, "index.html"), "w") as f:
        f.write("hello from csock\n")
    logs = [os.path.join(d, "a.log"), os.path.join(d, "b.log")]
    insts = [HttpInstance(www, 0, logs[0]), HttpInstance(www, 0, logs[1])]
    with open(DOC_CFG) as f:
        doc = f.read()

    def cfg(ports):
        text = doc
        for old, new in (("127.0.0.1:8080", "127.0.0.1:%d" % ports[0]),
                         ("127.0.0.1:9001", "127.0.0.1:%d" % insts[0].port),
                         ("127.0.0.1:9002", "127.0.0.1:%d" % insts[1].port),
                         ("/run/haproxy/csock-admin.sock", os.path.join(d, "admin.sock"))):
            check(old in text, "docs/deploy/haproxy.cfg lost %r" % old)
            text = text.replace(old, new)
        return text
    hp = HAProxy(cfg)
    try:
        # Both instances answer, and both logs name the real client.
        for _ in range(4):
            check(b"hello from csock" in http_get(hp), "no page through haproxy")

        def logged(path):
            with open(path) as f:
                return any(l.startswith(CLIENT_IP + " ") and '"GET / HTTP/1.1" 200' in l for l in f)
        for path in logs:
            wait_for(lambda: logged(path), 10, "the client in %s" % path)
        # The health checks reach csock through its PROXY header (LOCAL):
        # logged under HAProxy's own address, never refused.
        wait_for(lambda: all("127.0.0.1 - - " in open(p).read() for p in logs), 10,
                 "health checks in the access logs")
        # csock2 goes away: HAProxy's checks see it DOWN; clients still served.
        insts[1].p.stop(signal.SIGTERM)
        wait_for(lambda: "csock2 is DOWN" in hp.stderr(), 20, "HAProxy to mark csock2 DOWN")
        for _ in range(4):
            check(b"hello from csock" in http_get(hp), "no page while csock2 is down")
        # It comes back on the same port: UP again, and serving.
        insts[1] = HttpInstance(www, insts[1].port, logs[1])
        wait_for(lambda: "csock2 is UP" in hp.stderr(), 20, "HAProxy to mark csock2 UP")
        before = open(logs[1]).read().count(CLIENT_IP + " ")
        for _ in range(6):
            http_get(hp)
        wait_for(lambda: open(logs[1]).read().count(CLIENT_IP + " ") > before, 10,
                 "clients on csock2 after its return")
        check("csock1 is DOWN" not in hp.stderr(), "csock1 was marked down: %r" % hp.stderr())
    finally:
        hp.stop()
        for i in insts:
            rc = i.p.stop(signal.SIGTERM)
            check_eq(rc, 0, "serve http exit status (stderr %r)" % i.p.stderr()[-500:])


if __name__ == "__main__":
    main()
