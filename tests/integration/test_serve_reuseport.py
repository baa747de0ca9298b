#!/usr/bin/env python3
"""Sharing a port is an explicit choice. Every loop of `csock serve` has its
own SO_REUSEPORT listener, which used to let a second server (of the same
user) join a port another one already served, silently taking part of its
traffic. Now a port in use is exit 1 with one line saying so, unless both
servers ask to share with --reuse-port (a restart without downtime)."""

import os
import signal
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from csocktest import BIN, Proc, Server, T, check, check_clean, check_eq, main  # noqa: E402


def start_on_busy_port(port, opts):
    """csock serve echo on a port in use: it must exit by itself (bounded),
    without announcing `listening`. Returns (status, stdout, stderr)."""
    p = Proc([BIN, "serve"] + list(opts) + ["echo", "tcp://127.0.0.1:%d" % port])
    try:
        rc = p.wait(15)
        out = p.read_to_eof(5).decode("utf-8", "replace")
    finally:
        p.stop(signal.SIGKILL)
    return rc, out, p.stderr()


def answers(port, n=24):
    """Send a line on n fresh connections; the set of replies."""
    seen = set()
    for _ in range(n):
        with socket.create_connection(("127.0.0.1", port), timeout=T(10)) as s:
            s.sendall(b"hello\n")
            s.shutdown(socket.SHUT_WR)
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = s.recv(64)
                if not chunk:
                    break
                reply += chunk
            seen.add(reply)
    return seen


def test_busy_port_refused():
    """serve upper holds the port (two loops); serve echo there, with one
    loop or several, exits 1 with `address already in use`, and every
    client keeps getting upper's answer."""
    with Server("upper", "tcp://127.0.0.1:0", opts=("-t", "2")) as up:
        port = up.endpoints[0].port
        for opts in ((), ("-t", "1"), ("-t", "2"), ("-t", "4")):
            rc, out, err = start_on_busy_port(port, opts)
            check_clean(err, "csock serve")
            check_eq(rc, 1, "exit status of serve echo %s on a busy port (stderr %r)" % (opts, err))
            check("listening" not in out, "serve echo %s announced %r" % (opts, out))
            lines = err.strip().splitlines()
            check(len(lines) == 1 and "address already in use" in err.lower()
                  and str(port) in err, "one line naming the port and the reason: %r" % err)
        check_eq(answers(port), {b"HELLO\n"}, "replies on the port upper holds")


def test_reuse_port_shares_on_purpose():
    """Both with --reuse-port: the second starts on the first one's port
    (picked with port 0) and the kernel spreads the connections over both;
    once the old one stops, the new one answers everything."""
    old = Server("upper", "tcp://127.0.0.1:0", opts=("--reuse-port", "-t", "2"))
    port = old.endpoints[0].port
    with Server("echo", "tcp://127.0.0.1:%d" % port, opts=("--reuse-port", "-t", "2")) as new:
        check_eq(new.endpoints[0].port, port, "the second server's port")
        # 48 connections over four listeners: each server gets some (the odds
        # of one getting none are about 2**-47).
        check_eq(answers(port, 48), {b"HELLO\n", b"hello\n"}, "replies from both servers")
        old.finish()
        check_eq(answers(port), {b"hello\n"}, "replies once the old server stopped")


def test_reuse_port_refused_by_a_plain_listener():
    """--reuse-port shares only with listeners that allow it: a socket
    listening without SO_REUSEPORT still makes it exit 1."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(4)
    try:
        rc, out, err = start_on_busy_port(holder.getsockname()[1], ("--reuse-port",))
        check_clean(err, "csock serve")
        check_eq(rc, 1, "exit status (stderr %r)" % err)
        check("address already in use" in err.lower(), "the reason: %r" % err)
    finally:
        holder.close()


def test_serve_http_busy_port_and_reuse_port():
    """serve http follows the same rule: a port in use is exit 1, and with
    --reuse-port on both it shares (and answers HTTP there)."""
    import tempfile
    import urllib.request
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "f.txt"), "w") as f:
            f.write("from http\n")
        up = Server("upper", "tcp://127.0.0.1:0", opts=("--reuse-port",))
        try:
            port = up.endpoints[0].port
            p = Proc([BIN, "serve", "http", d, "tcp://127.0.0.1:%d" % port])
            try:
                rc = p.wait(15)
            finally:
                p.stop(signal.SIGKILL)
            err = p.stderr()
            check_eq(rc, 1, "serve http on a busy port (stderr %r)" % err)
            check("address already in use" in err.lower(), "the reason: %r" % err)
            h = Proc([BIN, "serve", "http", d, "tcp://127.0.0.1:%d" % port, "--reuse-port"])
            try:
                line = h.read_line(15)
                check_eq(line, "listening tcp://127.0.0.1:%d" % port, "serve http joined the port")
                up.finish()
                # upper is gone: every connection now reaches serve http
                # (its listener was bound before upper stopped).
                body = urllib.request.urlopen("http://127.0.0.1:%d/f.txt" % port, timeout=T(10)).read()
                check_eq(body, b"from http\n", "served by serve http")
            finally:
                h.stop(signal.SIGTERM)
        finally:
            if up.alive():
                up.stop(signal.SIGKILL)


def test_tls_option_without_tls_address():
    """A certificate for no tls:// address would be ignored: a wrong argument."""
    for argv in (["serve", "echo", "tcp://127.0.0.1:0", "--cert", "c.pem"],
                 ["serve", "http", ".", "tcp://127.0.0.1:0", "--key", "k.pem"]):
        p = Proc([BIN] + argv)
        rc = p.wait(10)
        err = p.stderr()
        check_eq(rc, 2, "%s: status (stderr %r)" % (argv, err))
        check(err.count("\n") == 1 and "needs a tls:// address" in err, err)


def test_help_documents_reuse_port():
    p = Proc([BIN, "serve", "--help"])
    out = p.read_to_eof(10).decode()
    check_eq(p.wait(10), 0, "serve --help status")
    check("--reuse-port" in out, "--reuse-port in serve --help")


if __name__ == "__main__":
    main()
