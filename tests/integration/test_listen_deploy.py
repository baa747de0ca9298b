#!/usr/bin/env python3
"""csock listen (and serve chat) behind real balancers and under systemd's
protocols.

- HAProxy (send-proxy, v1) in front of `csock listen -k --chat
  --proxy-protocol -v`: the chat's announcements and the -v lines name the
  real client (127.0.0.2), not HAProxy; a connection without a header is
  closed, the room goes on; the same for `csock serve chat` with
  send-proxy-v2;
- systemd-socket-activate hands `csock listen` its socket (systemd:NAME):
  the peer's bytes reach stdout, READY=1 reaches the notify socket; a plain
  inherited fd (fd:N);
- connect refuses --proxy-protocol; --proxy-protocol with udp is refused.
"""
import signal
import socket

from deploykit import CLIENT_IP, HAProxy, free_port, need_haproxy, tcp_cfg, wait_for
from csocktest import BIN, Proc, T, check, check_eq, csock, main, need, recv_exact
from test_systemd import ACTIVATE, Notify, WithFd, activate_argv, sanitizer_env, try_connect


def read_until(s, what, timeout=10, times=1):
    """What s sent until `what` came `times` times (or EOF)."""
    s.settimeout(T(timeout))
    got = b""
    while got.count(what) < times:
        b = s.recv(4096)
        if not b:
            break
        got += b
    return got


def check_chat_behind(argv, option, listening_on_stdout):
    need_haproxy()
    p = Proc(argv)
    try:
        line = p.read_line(15) if listening_on_stdout else None
        if not listening_on_stdout:
            wait_for(lambda: "listening " in p.stderr(), 15, "the listening line")
            line = [ln for ln in p.stderr().splitlines() if ln.startswith("listening ")][0]
        port = int(line.rsplit(":", 1)[1])
        hp = HAProxy(lambda ports: tcp_cfg(ports[0], port, option))
        try:
            # (HAProxy's readiness probe, from 127.0.0.1, may arrive as a
            # user too, at any moment: the test counts CLIENT_IP's arrivals.)
            a = hp.client()
            want = ("%s is connected as <user" % CLIENT_IP).encode()
            got = read_until(a, want)
            check(want in got, "the chat named the real client: %r" % got)
            b = hp.client()
            got += read_until(a, want, 10, 2 - got.count(want))
            check(got.count(want) == 2, "the second arrival: %r" % got)
            bad = socket.create_connection(("127.0.0.1", port), timeout=T(10))
            bad.sendall(b"no header\n")
            bad.settimeout(T(10))
            try:
                while bad.recv(100):
                    pass
            except ConnectionResetError:
                pass
            bad.close()
            b.sendall(b"hello room\n")
            check(b"> hello room" in read_until(a, b"hello room"), "the room goes on")
            wait_for(lambda: "connection from tcp://%s:%d" % (CLIENT_IP, a.getsockname()[1]) in p.stderr(),
                     10, "the -v line with the real client (%r)" % p.stderr()[-600:])
            check("bad PROXY protocol header" in p.stderr() or "dropped" in p.stderr(),
                  "the header-less connection was not logged: %r" % p.stderr()[-600:])
            a.close()
            b.close()
        finally:
            hp.stop()
        rc = p.stop(signal.SIGTERM, 20)
        check_eq(rc, 0, "exit status (stderr %r)" % p.stderr()[-600:])
        check("AddressSanitizer" not in p.stderr(), p.stderr()[-2000:])
    finally:
        p.stop(signal.SIGKILL)


def test_listen_chat_behind_haproxy_send_proxy():
    check_chat_behind([BIN, "listen", "-k", "--chat", "--recv-only", "--proxy-protocol", "-v",
                       "tcp://127.0.0.1:0"], "send-proxy", False)


def test_serve_chat_behind_haproxy_send_proxy_v2():
    check_chat_behind([BIN, "serve", "chat", "--proxy-protocol", "-v", "tcp://127.0.0.1:0"],
                      "send-proxy-v2", True)


def test_systemd_socket_activate_hands_listen_its_socket():
    need(ACTIVATE)
    port = free_port()
    notify = Notify()
    env = dict(sanitizer_env(), NOTIFY_SOCKET=notify.env)
    p = Proc(activate_argv(port, "nc", env, [BIN, "listen", "--recv-only", "systemd:nc"]))
    try:
        s = wait_for(lambda: try_connect(port), 10, "systemd-socket-activate to listen")
        s.sendall(b"through systemd\n")
        s.close()
        out = p.read_until(lambda o: b"through systemd\n" in o, 10)
        check(b"through systemd\n" in out, "stdout %r" % out)
        ready = notify.wait("READY=1")
        check("MAINPID=" in ready, "READY=1 without MAINPID: %r" % ready)
        rc = p.wait(20)
        check_eq(rc, 0, "exit status once the one peer left (stderr %r)" % p.stderr()[-600:])
    finally:
        p.stop(signal.SIGKILL)
        notify.close()


def test_inherited_fd_with_proxy_protocol():
    with WithFd(["listen", "-v", "--proxy-protocol", "FD"]) as w:
        s = socket.create_connection(("127.0.0.1", w.port), timeout=T(10))
        s.sendall(b"PROXY TCP6 2001:db8::7 ::1 4444 80\r\nvia fd\n")
        check_eq(w.p.stdout.readline(), b"via fd\n", "the peer's line on stdout")
        w.p.stdin.write(b"back\n")
        w.p.stdin.flush()
        check_eq(recv_exact(s, 5), b"back\n", "stdin to the peer")
        s.close()
        check_eq(w.p.wait(T(20)), 0, "exit status")
    port, err = w.port, w.err
    check("listening tcp://127.0.0.1:%d" % port in err, "listening line: %r" % err)
    check("connection from tcp://[2001:db8::7]:4444" in err, "the header's client in -v: %r" % err)


def test_bad_arguments():
    for args, what in [(["connect", "--proxy-protocol", "127.0.0.1", "1"], "proxy-protocol"),
                       (["listen", "-u", "--proxy-protocol", "127.0.0.1", "0"], "proxy-protocol"),
                       (["listen", "--proxy-timeout", "x", "0"], "proxy-timeout"),
                       (["listen", "systemd:nc"], "systemd"),
                       (["listen", "--proxy-type", "socks5", "--proxy-protocol", "127.0.0.1", "0"],
                        "proxy-protocol")]:
        rc, out, err = csock(*args)
        err = err.decode() if isinstance(err, bytes) else err
        check_eq(rc, 2, "exit status for %r (stderr %r)" % (args, err))
        check(err.count("\n") == 1 and what in err, "one line naming %r: %r" % (what, err))


if __name__ == "__main__":
    main()
