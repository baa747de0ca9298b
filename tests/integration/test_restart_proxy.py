#!/usr/bin/env python3
"""Zero-downtime restart of csock proxy (SIGUSR2), as serve's
(test_deploy_restart.py): the proxy hands its listening sockets to a new
copy of itself and drains once the new one listens. Clients stay connected
through the proxy to a `csock serve echo` backend while a steady stream of
new ones connects across two restarts: none refused, reset or answered
short; the long ones stay on the old process until they end, and then it
exits 0. Over TCP and over a Unix socket (whose file must outlive the old
process, and be removed by the last one: also after a failed restart), and with a ws:// listener the restart is refused (its socket
cannot be handed over) and the proxy goes on serving."""
import os
import signal
import socket
import ssl

import tlscerts

from csocktest import BIN, Proc, T, check, check_eq, main, recv_exact, tmpdir
from deploykit import wait_for
from test_deploy_restart import failed_restart, pid_gone, restart, restart_twice


def echo_backend():
    b = Proc([BIN, "serve", "echo", "tcp://127.0.0.1:0"])
    line = b.read_line(15)
    check(line.startswith("listening tcp://"), "backend said %r" % line)
    return b, line[len("listening "):]


def run_restart(listen_arg, family, addr_of):
    backend, baddr = echo_backend()
    p = Proc([BIN, "proxy", "--drain-timeout", "60", listen_arg, "--to", baddr])
    try:
        restart_twice(p, family, addr_of, rounds=300, what="relays")
    finally:
        p.stop(signal.SIGKILL)
        backend.stop(signal.SIGKILL)


def test_proxy_restart_tcp_under_load():
    def addr_of(text):
        host, port = text[len("tcp://"):].rsplit(":", 1)
        return (host, int(port))
    run_restart("tcp://127.0.0.1:0", socket.AF_INET, addr_of)


def test_proxy_restart_unix_keeps_the_file():
    path = os.path.join(tmpdir(), "px")
    run_restart("unix:" + path, socket.AF_UNIX, lambda text: text[len("unix:"):])
    check(not os.path.exists(path), "the last proxy left its socket file behind")


def test_proxy_failed_restart_unix_file_removed_at_the_end():
    # As serve's: the fds were asked for, the new process failed; the old
    # one serves on and removes its file when it exits.
    backend, baddr = echo_backend()
    path = os.path.join(tmpdir(), "px")
    try:
        failed_restart(["proxy", "unix:" + path, "--to", baddr])
    finally:
        backend.stop(signal.SIGKILL)
    check(not os.path.exists(path), "the socket file is left after a failed restart")


def test_proxy_restart_keeps_tls():
    # A tls:// listener is handed over as tls+systemd:csock-ep0: the new
    # process terminates TLS on it as the old one did.
    certs = tlscerts.make(tmpdir())
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
    backend, baddr = echo_backend()
    p = Proc([BIN, "proxy", "--cert", os.path.join(certs, "server.pem"), "--key",
              os.path.join(certs, "server.key"), "tls://127.0.0.1:0", "--to", baddr])
    new = None

    def echo(port, msg):
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=T(10)),
                             server_hostname="localhost") as s:
            s.sendall(msg)
            check_eq(recv_exact(s, len(msg)), msg, "echo over TLS")
    try:
        port = int(p.read_line(15).rsplit(":", 1)[1])
        echo(port, b"before\n")
        new = restart(p, p.stderr)
        check_eq(p.wait(30), 0, "old proxy's exit status (stderr %r)" % p.stderr()[-800:])
        echo(port, b"after\n")
        os.kill(new, signal.SIGTERM)
        wait_for(lambda: pid_gone(new), 30, "the new proxy to stop")
    finally:
        if new and not pid_gone(new):
            os.kill(new, signal.SIGKILL)
        p.stop(signal.SIGKILL)
        backend.stop(signal.SIGKILL)


def test_proxy_restart_refused_with_ws_listener():
    backend, baddr = echo_backend()
    p = Proc([BIN, "proxy", "tcp://127.0.0.1:0", "ws://127.0.0.1:0", "--to", baddr])
    try:
        host, port = p.read_line(15)[len("listening tcp://"):].rsplit(":", 1)
        p.read_line(15)
        os.kill(p.pid, signal.SIGUSR2)
        wait_for(lambda: "still serving" in p.stderr(), 20, "the refused restart's line")
        check("cannot be handed over" in p.stderr(), "stderr %r" % p.stderr())
        s = socket.create_connection((host, int(port)), timeout=T(10))
        s.sendall(b"still here\n")
        check_eq(s.recv(100), b"still here\n", "echo through the proxy after a refused restart")
        s.close()
        check(p.alive(), "the proxy stopped")
    finally:
        rc = p.stop(signal.SIGTERM, 20)
        backend.stop(signal.SIGKILL)
    check_eq(rc, 0, "exit status (stderr %r)" % p.stderr()[-500:])


if __name__ == "__main__":
    main()
