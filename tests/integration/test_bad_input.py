#!/usr/bin/env python3
"""Bad input. On the command line: exactly one line on stderr naming the
problem, status 2 for a usage error, 1 for a runtime error. From peers: a
line over --max-line closes that connection only; garbage bytes and
connect/disconnect churn leave the server serving (and leaking no fds)."""

import os
import random
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from csocktest import (Server, T, check, check_eq, csock, main, nfds,  # noqa: E402
                       recv_all, recv_exact, stream_exchange, tmpdir, wait_for)


def one_line_error(args, status, *names):
    rc, out, err = csock(*args)
    what = "csock " + " ".join(args)
    check_eq(rc, status, "%s: exit status (stderr %r)" % (what, err))
    check_eq(out, b"", "%s: stdout" % what)
    check(err.endswith("\n") and err.count("\n") == 1,
          "%s: want exactly one line on stderr, got %r" % (what, err))
    for n in names:
        check(n in err, "%s: stderr should name %r: %r" % (what, n, err))
    return err


# ---- the command line ----------------------------------------------------

def test_unparsable_address():
    one_line_error(["serve", "upper", "tcp://nope"], 2, "tcp://nope")
    one_line_error(["serve", "upper", "tcp://127.0.0.1:0", "bogus://x:1"], 2, "bogus://x:1")
    one_line_error(["serve", "upper", "tcp://127.0.0.1:99999"], 2, "99999")
    one_line_error(["serve", "upper", "tcp://[::1:0"], 2, "[::1:0")
    one_line_error(["connect", "tcp://nope"], 2, "tcp://nope")


def test_port_in_use_tcp():
    with socket.socket() as hold:
        hold.bind(("127.0.0.1", 0))
        hold.listen(1)
        addr = "tcp://127.0.0.1:%d" % hold.getsockname()[1]
        err = one_line_error(["serve", "upper", addr], 1, addr)
        check("in use" in err.lower(), "names the reason: %r" % err)


def test_port_in_use_udp():
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as hold:
        hold.bind(("::1", 0))
        addr = "udp://[::1]:%d" % hold.getsockname()[1]
        err = one_line_error(["serve", "echo", addr], 1, addr)
        check("in use" in err.lower(), "names the reason: %r" % err)


def test_port_in_use_second_endpoint():
    """The first endpoint binds, the second fails: status 1, one line, and
    no `listening` line promises an endpoint of a server that is gone...
    (a line for the first may have been printed; what matters is the exit)."""
    with socket.socket() as hold:
        hold.bind(("127.0.0.1", 0))
        hold.listen(1)
        addr = "tcp://127.0.0.1:%d" % hold.getsockname()[1]
        rc, out, err = csock("serve", "upper", "tcp://127.0.0.1:0", addr)
        check_eq(rc, 1, "exit status (stderr %r)" % err)
        check_eq(err.count("\n"), 1, "one line on stderr: %r" % err)
        check(addr in err, "names %s: %r" % (addr, err))


def test_unix_path_in_use():
    d = tmpdir()
    path = os.path.join(d, "busy")
    with socket.socket(socket.AF_UNIX) as hold:
        hold.bind(path)
        hold.listen(1)
        one_line_error(["serve", "upper", "unix:" + path], 1, path)


def test_unknown_service():
    one_line_error(["serve", "shout", "tcp://127.0.0.1:0"], 2, "shout")


def test_unknown_command():
    one_line_error(["frobnicate"], 2, "frobnicate")


def test_unknown_option():
    one_line_error(["serve", "--bogus", "upper", "tcp://127.0.0.1:0"], 2, "--bogus")
    one_line_error(["serve", "-Z", "upper", "tcp://127.0.0.1:0"], 2, "-Z")
    one_line_error(["connect", "--bogus", "tcp://127.0.0.1:1"], 2, "--bogus")


def test_unknown_option_after_addresses():
    """`csock serve --help` documents `SERVICE ADDR... [options]`: an
    unknown option in that position should be reported as an option."""
    one_line_error(["serve", "upper", "tcp://127.0.0.1:0", "--bogus"], 2, "--bogus", "option")


def test_missing_arguments():
    one_line_error(["serve"], 2, "SERVICE")
    one_line_error(["serve", "upper"], 2, "ADDR")
    one_line_error(["connect"], 2, "ADDR")
    one_line_error(["serve", "--max-line"], 2, "--max-line")
    one_line_error(["serve", "--max-line", "lots", "upper", "tcp://127.0.0.1:0"], 2, "--max-line")
    one_line_error(["connect", "-w"], 2, "-w")


def test_help_and_version():
    rc, out, err = csock("--version")
    check_eq(rc, 0, "--version status")
    check(out.startswith(b"csock "), "--version output %r" % out)
    for args in (["--help"], ["serve", "--help"], ["connect", "--help"]):
        rc, out, err = csock(*args)
        check_eq(rc, 0, "%s status" % args)
        check(b"usage" in out.lower(), "%s output %r" % (args, out[:100]))


# ---- peer input ----------------------------------------------------------

def test_max_line_closes_only_that_connection():
    with Server("upper", "tcp://127.0.0.1:0", opts=["--max-line", "100"]) as srv:
        e = srv.endpoints[0]
        good = e.socket()
        good.sendall(b"before\n")
        check_eq(recv_exact(good, 7), b"BEFORE\n", "good client before")
        for long_line in (b"a" * 101 + b"\n", b"b" * 5000):   # with and without LF
            with e.socket() as bad:
                bad.sendall(b"short ok\n")
                check_eq(recv_exact(bad, 9), b"SHORT OK\n", "bad client's short line")
                try:
                    bad.sendall(long_line)
                    got = recv_all(bad)       # EOF (or reset) must come, bounded
                except ConnectionResetError:
                    got = b""
                check_eq(got, b"", "reply to an over-long line")
        # A line of exactly the maximum (100 bytes with its LF) is fine.
        ok = b"c" * 99 + b"\n"
        good.sendall(ok)
        check_eq(recv_exact(good, 100), ok.upper(), "line at the limit")
        good.sendall(b"after\n")
        check_eq(recv_exact(good, 6), b"AFTER\n", "good client after")
        good.close()
        check_eq(stream_exchange(e, b"new client\n"), b"NEW CLIENT\n", "new client")


def test_max_line_option_after_addresses():
    """The documented order `serve SERVICE ADDR... [options]` must work
    (csock serve --help: `usage: csock serve SERVICE ADDR... [options]`)."""
    with Server("upper", "tcp://127.0.0.1:0", tail=["--max-line", "10"]) as srv:
        e = srv.endpoints[0]
        check_eq(stream_exchange(e, b"short\n"), b"SHORT\n", "short line")
        try:
            got = stream_exchange(e, b"x" * 50 + b"\n")
        except ConnectionResetError:
            got = b""
        check_eq(got, b"", "line over --max-line 10")


def test_garbage_bytes():
    rng = random.Random(1234)
    d = tmpdir()
    with Server("upper", "tcp://127.0.0.1:0", "udp://127.0.0.1:0",
                "unix:" + os.path.join(d, "s"), "unixgram:" + os.path.join(d, "g"),
                opts=["--max-line", "4096"]) as srv:
        for e in srv.endpoints:
            for i in range(20):
                blob = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 20000)))
                if e.stream:
                    with e.socket() as s:
                        try:
                            s.sendall(blob)
                            s.shutdown(socket.SHUT_WR)
                            recv_all(s)
                        except (ConnectionResetError, BrokenPipeError):
                            pass
                else:
                    with e.socket(timeout=0.05) as s:
                        try:
                            s.send(blob[:8000])
                        except OSError:
                            pass
        for e in srv.endpoints:
            if e.stream:
                check_eq(stream_exchange(e, b"still here\n"), b"STILL HERE\n",
                         "served after garbage on %s" % e)
            else:
                with e.socket() as s:
                    # Replies to the garbage datagrams went to other sockets.
                    s.send(b"still here")
                    check_eq(s.recv(100), b"STILL HERE", "served after garbage on %s" % e)


def test_connect_disconnect_churn():
    """500 connect/disconnect cycles (half of them resets, some mid-line):
    the server keeps serving and its fd count comes back down."""
    d = tmpdir()
    with Server("upper", "tcp://127.0.0.1:0", "unix:" + os.path.join(d, "s")) as srv:
        # Baseline once the loop runs (its signal fds exist only by then).
        check_eq(stream_exchange(srv.endpoints[0], b"warm\n"), b"WARM\n", "warm-up")
        base = nfds(srv.pid)
        linger0 = struct.pack("ii", 1, 0)
        for i in range(500):
            e = srv.endpoints[i % 2]
            s = e.socket()
            if i % 3 == 1:
                s.sendall(b"partial line without end")
            if i % 2 and e.scheme == "tcp":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger0)
            s.close()
        for e in srv.endpoints:
            check_eq(stream_exchange(e, b"alive\n"), b"ALIVE\n", "served after churn on %s" % e)
        wait_for(lambda: nfds(srv.pid) <= base, 10,
                 "server fds to drop back to %d (now %d)" % (base, nfds(srv.pid)))


if __name__ == "__main__":
    main()
