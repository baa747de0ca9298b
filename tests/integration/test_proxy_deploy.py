#!/usr/bin/env python3
"""csock proxy behind real balancers and under systemd's protocols.

- docs/deploy/haproxy-proxy.cfg run as is (ports substituted): HAProxy
  (send-proxy-v2, TCP checks) in front of `csock proxy --proxy-protocol
  --send-proxy-v2` in front of two `csock serve echo --proxy-protocol -v`:
  the servers log the real client (127.0.0.2, HAProxy's client), through
  both balancers; a connection to the proxy without a header is closed;
- `csock proxy --send-proxy` (v1) and `--send-proxy-v2` in front of
  `csock serve echo --proxy-protocol -v`, splice and --no-splice, a TLS
  client and a Unix backend: the served side logs the proxy's client;
- `--check http:/` with --send-proxy[-v2] against `serve http
  --proxy-protocol`, plain and tls://localhost (the header before TLS, for
  relays and checks): the checks pass, the access log names the client;
- systemd-socket-activate hands csock proxy its socket (systemd:NAME), and
  the notify socket gets READY=1; a plain inherited fd (fd:N);
- bad arguments: one line, exit 2.
"""
import os
import signal
import socket
import ssl

from deploykit import CLIENT_IP, HAProxy, free_port, need_haproxy, wait_for
from csocktest import (BIN, REPO, Proc, Server, T, check, check_eq, csock, main, need, recv_all,
                       recv_exact, tmpdir)
from test_proxy import Proxy
from test_systemd import (ACTIVATE, Notify, WithFd, activate_argv, sanitizer_env, stop_activated,
                          try_connect)
import tlscerts

DOC_CFG = os.path.join(REPO, "docs", "deploy", "haproxy-proxy.cfg")


def echo_server(*addrs):
    return Server("echo", *(addrs or ("tcp://127.0.0.1:0",)), opts=["-v", "--proxy-protocol"])


def roundtrip(s, data):
    s.sendall(data)
    check_eq(recv_exact(s, len(data)), data, "echo through the proxy")


def closed_by_peer(s, timeout=10):
    s.settimeout(T(timeout))
    try:
        while s.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def doc_cfg(ports, proxy_port):
    with open(DOC_CFG) as f:
        text = f.read()
    for old, new in (("127.0.0.1:8080", "127.0.0.1:%d" % ports[0]),
                     ("127.0.0.1:9000", "127.0.0.1:%d" % proxy_port)):
        check(old in text, "docs/deploy/haproxy-proxy.cfg lost %r" % old)
        text = text.replace(old, new)
    # The tests' HAProxy must not share a port another test picked (see
    # deploykit.HAProxy).
    return text.replace("global\n", "global\n    noreuseport\n", 1)


def test_haproxy_in_front_of_the_proxy_doc_config():
    # docs/deploy/haproxy-proxy.cfg, as the comment at its top runs it.
    need_haproxy()
    with echo_server() as s1, echo_server() as s2:
        px = Proxy("--proxy-protocol", "--send-proxy-v2", "tcp://127.0.0.1:0", "--check", "tcp",
                   "--to", "tcp://127.0.0.1:%d" % s1.endpoints[0].port,
                   "--to", "tcp://127.0.0.1:%d" % s2.endpoints[0].port)
        try:
            hp = HAProxy(lambda ports: doc_cfg(ports, px.port()))
            try:
                clients = []
                for i in range(4):  # roundrobin: two to each server
                    c = hp.client()
                    roundtrip(c, b"through two balancers %d\n" % i)
                    clients.append(c)
                for c in clients:
                    want = "connection from tcp://%s:%d" % (CLIENT_IP, c.getsockname()[1])
                    wait_for(lambda: want in s1.stderr() or want in s2.stderr(), 10,
                             "%r in a server's log (%r, %r)" % (want, s1.stderr()[-300:], s2.stderr()[-300:]))
                    wait_for(lambda: "relay tcp://%s:%d" % (CLIENT_IP, c.getsockname()[1]) in px.stderr(),
                             10, "the proxy's -v line")
                check(CLIENT_IP in s1.stderr() and CLIENT_IP in s2.stderr(), "both servers served")
                # A connection to the proxy without a header: closed, logged.
                bad = px.connect()
                bad.sendall(b"no header here\n")
                check(closed_by_peer(bad), "a connection without a PROXY header stays open")
                bad.close()
                wait_for(lambda: "bad PROXY protocol header" in px.stderr(), 10, "the -v line")
                roundtrip(clients[0], b"still served\n")
                for c in clients:
                    c.close()
                check("DOWN" not in hp.stderr(), "HAProxy's checks failed: %r" % hp.stderr()[-500:])
            finally:
                hp.stop()
        finally:
            px.finish()


def check_send_proxy(version, *extra):
    with echo_server() as srv:
        opt = "--send-proxy" if version == 1 else "--send-proxy-v2"
        px = Proxy(opt, *extra, "tcp://127.0.0.1:0", "--to", "tcp://127.0.0.1:%d" % srv.endpoints[0].port)
        try:
            s = socket.socket()
            s.settimeout(T(10))
            s.bind((CLIENT_IP, 0))
            s.connect(("127.0.0.1", px.port()))
            roundtrip(s, b"x" * 100000)
            want = "connection from tcp://%s:%d" % (CLIENT_IP, s.getsockname()[1])
            wait_for(lambda: want in srv.stderr(), 10, "%r in %r" % (want, srv.stderr()[-500:]))
            s.close()
        finally:
            px.finish()


def test_send_proxy_v1_splice():
    check_send_proxy(1)


def test_send_proxy_v2_splice():
    check_send_proxy(2)


def test_send_proxy_v2_stream_relay():
    check_send_proxy(2, "--no-splice")


def test_send_proxy_tls_client_to_unix_backend():
    # TLS terminated here, the header (v2: it carries the TCP client to a
    # Unix backend's server) then the plaintext on a Unix socket.
    path = os.path.join(tmpdir(), "echo.sock")
    certs = tlscerts.make(tmpdir())
    with echo_server("unix:" + path) as srv:
        px = Proxy("--send-proxy-v2", "--cert", os.path.join(certs, "server.pem"),
                   "--key", os.path.join(certs, "server.key"), "tls://127.0.0.1:0", "--to", "unix:" + path)
        try:
            ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
            raw = socket.create_connection(("127.0.0.1", px.port()), timeout=T(10))
            s = ctx.wrap_socket(raw, server_hostname="localhost")
            roundtrip(s, b"over tls\n")
            want = "connection from tcp://127.0.0.1:%d" % s.getsockname()[1]
            wait_for(lambda: want in srv.stderr(), 10, "%r in %r" % (want, srv.stderr()[-500:]))
            s.close()
        finally:
            px.finish()


def check_http_behind(opt, tls):
    # `serve http --proxy-protocol` behind `proxy --send-proxy[-v2] --check
    # http:/`: each check opens with a LOCAL header (v2) / UNKNOWN (v1), so
    # the backend stays up; the access log shows the checks under the
    # proxy's own address and the client under its own. tls: the backend is
    # tls://localhost (a name, verified against the test CA), and the header
    # goes before its TLS, for relays and checks alike.
    d = tmpdir()
    www = os.path.join(d, "www")
    os.mkdir(www)
    with open(os.path.join(www, "index.html"), "w") as f:
        f.write("checked\n")
    log = os.path.join(d, "access.log")
    certs = tlscerts.make(tmpdir()) if tls else None
    cert_opts = ["--cert", os.path.join(certs, "server.pem"), "--key", os.path.join(certs, "server.key")] if tls else []
    srv = Proc([BIN, "serve", "http", www, "%s://127.0.0.1:0" % ("tls" if tls else "tcp"), "--proxy-protocol",
                "--access-log", log] + cert_opts)
    try:
        line = srv.read_line(15)
        port = int(line.rsplit(":", 1)[1])
        backend = "tls://localhost:%d" % port if tls else "tcp://127.0.0.1:%d" % port
        ca = ["--ca", os.path.join(certs, "ca.pem")] if tls else []
        px = Proxy(opt, "--check", "http:/", "--check-interval", "0.1", "--fall", "1", *ca,
                   "tcp://127.0.0.1:0", "--to", backend)
        try:
            def logged(what):
                return os.path.exists(log) and what in open(log).read()
            wait_for(lambda: logged('127.0.0.1 - - '), 10, "a check in the access log")
            for _ in range(2):  # (splice or not, the first and a later client)
                s = socket.socket()
                s.settimeout(T(10))
                s.bind((CLIENT_IP, 0))
                s.connect(("127.0.0.1", px.port()))
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                got = recv_all(s)
                s.close()
                check(b"200 OK" in got and b"checked" in got, "reply %r (proxy: %r)" % (got[:200], px.stderr()[-600:]))
            wait_for(lambda: logged(CLIENT_IP + " - - "), 10, "the client in the access log")
            check("csock: backend %s down" % backend not in px.stderr(),
                  "%s: the checks failed: %r" % (opt, px.stderr()[-600:]))
        finally:
            px.finish()
    finally:
        srv.stop()


def test_send_proxy_http_checks_carry_a_header():
    check_http_behind("--send-proxy", False)
    check_http_behind("--send-proxy-v2", False)


def test_send_proxy_before_a_tls_backend():
    check_http_behind("--send-proxy-v2", True)
    check_http_behind("--send-proxy", True)


def test_systemd_socket_activate_hands_the_proxy_its_socket():
    need(ACTIVATE)
    with echo_server() as srv:
        port = free_port()
        notify = Notify()
        env = dict(sanitizer_env(), NOTIFY_SOCKET=notify.env)
        cmd = [BIN, "proxy", "-v", "--send-proxy", "systemd:front",
               "--to", "tcp://127.0.0.1:%d" % srv.endpoints[0].port]
        p = Proc(activate_argv(port, "front", env, cmd))
        try:
            s = wait_for(lambda: try_connect(port), 10, "systemd-socket-activate to listen")
            roundtrip(s, b"activated\n")
            want = "connection from tcp://127.0.0.1:%d" % s.getsockname()[1]
            wait_for(lambda: want in srv.stderr(), 10, "%r in %r" % (want, srv.stderr()[-500:]))
            s.close()
            notify.wait("READY=1")
            out = p.read_line(10)
            check_eq(out, "listening tcp://127.0.0.1:%d" % port, "listening line")
            stop_activated(p, notify)
        finally:
            p.stop(signal.SIGKILL)
            notify.close()


def test_inherited_fd():
    with echo_server() as srv:
        with WithFd(["proxy", "FD", "--to", "tcp://127.0.0.1:%d" % srv.endpoints[0].port]) as w:
            check_eq(w.p.stdout.readline().decode().strip(), "listening tcp://127.0.0.1:%d" % w.port,
                     "listening line")
            s = socket.create_connection(("127.0.0.1", w.port), timeout=T(10))
            s.sendall(b"PROXY TCP4 192.0.2.9 127.0.0.1 999 80\r\nfd\n")
            check_eq(recv_exact(s, 3), b"fd\n", "echo through fd:N")
            s.close()
            wait_for(lambda: "connection from tcp://192.0.2.9:999" in srv.stderr(), 10,
                     "the header passed through as bytes (no --send-proxy)")
            w.p.send_signal(signal.SIGTERM)
            check_eq(w.p.wait(T(20)), 0, "exit status")


def test_bad_arguments():
    cases = [
        (["--send-proxy-v2", "udp://127.0.0.1:0", "--to", "udp://127.0.0.1:1"], "send-proxy"),
        (["--proxy-protocol", "udp://127.0.0.1:0", "--to", "udp://127.0.0.1:1"], "proxy-protocol"),
        (["--proxy-timeout", "0", "tcp://127.0.0.1:0", "--to", "tcp://127.0.0.1:1"], "proxy-timeout"),
        (["systemd:front", "--to", "tcp://127.0.0.1:1"], "systemd"),
        (["fd:x", "--to", "tcp://127.0.0.1:1"], "fd:"),
    ]
    for args, what in cases:
        rc, out, err = csock("proxy", *args)
        check_eq(rc, 2, "exit status for %r (stderr %r)" % (args, err))
        lines = err.strip().splitlines()
        check(len(lines) == 1 and what in lines[0], "one line naming %r: %r" % (what, err))
    rc, out, err = csock("proxy", "--help")
    out = out.decode() if isinstance(out, bytes) else out
    for opt in ("--send-proxy-v2", "--proxy-protocol", "systemd:NAME"):
        check(opt in out, "--help lacks %s" % opt)


if __name__ == "__main__":
    main()
