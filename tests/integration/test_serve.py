#!/usr/bin/env python3
"""csock serve echo/upper/discard against peers no one here wrote: Python's
socket module, OpenBSD nc, ncat and socat, over TCP and UDP on IPv4 and
IPv6 ([::1]), Unix streams and Unix datagrams. One serve process serves all
six endpoints at once."""

import os
import signal
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from csocktest import (Proc, Server, T, check, check_clean, check_eq, have, main,  # noqa: E402
                       recv_exact, stream_exchange, tmpdir)


def all_addrs():
    d = tmpdir()
    return ["tcp://127.0.0.1:0", "tcp://[::1]:0", "udp://127.0.0.1:0",
            "udp://[::1]:0", "unix:" + os.path.join(d, "s"),
            "unixgram:" + os.path.join(d, "g")]


def serve_all(service, opts=()):
    return Server(service, *all_addrs(), opts=opts)


LINES = b"hello world\nMixed Case 123 !?\n\nlast line\n"
UPPER = LINES.upper()


def test_listening_lines():
    """One line per endpoint, in order, with the real port for port 0."""
    with serve_all("upper") as srv:
        eps = srv.endpoints
        check_eq([e.scheme for e in eps], ["tcp", "tcp", "udp", "udp", "unix", "unixgram"],
                 "endpoint kinds")
        check_eq([e.v6 for e in eps], [False, True, False, True, False, False], "v6 flags")
        for e in eps[:4]:
            check(e.port != 0, "port 0 reported for %s" % e)
        check_eq(eps[0].host, "127.0.0.1", "v4 host")
        check_eq(eps[1].host, "::1", "v6 host")
        # One exchange, so the stop below does not hit the signal set-up
        # race that test_sigterm_right_after_listening covers on its own.
        check_eq(stream_exchange(eps[0], b"x\n"), b"X\n", "exchange")


def test_sigterm_right_after_listening():
    """A supervisor may stop the server as soon as it printed `listening`:
    SIGTERM/SIGINT must then still mean a clean exit with status 0 (the
    handlers must be in place before readiness is announced)."""
    bad = []
    for i in range(40):
        srv = Server("upper", "tcp://127.0.0.1:0")
        sig = signal.SIGTERM if i % 2 else signal.SIGINT
        rc = srv.stop(sig)
        check_clean(srv.stderr(), "csock serve")
        if rc != 0:
            bad.append((sig.name, rc))
    check(not bad, "%d of 40 servers stopped right after `listening` exited non-zero "
          "(killed by the signal): %s" % (len(bad), bad[:5]))


def test_sigterm_with_datagram_endpoints():
    """A UDP endpoint lives on the first loop only, so with nothing but UDP the
    other loops hold no handle: a SIGTERM must still free every loop (a Debug
    build asserted in csock_server_free: the drain's timer was made on the
    second loop after its last walk; ASan saw the leak)."""
    for threads in ("1", "2"):
        srv = Server("echo", "udp://127.0.0.1:0", opts=("--threads", threads))
        with srv.endpoints[0].socket() as s:
            s.send(b"ping")
            check_eq(s.recv(65536), b"ping", "echo over udp")
        rc = srv.stop(signal.SIGTERM)
        check_clean(srv.stderr(), "csock serve")
        check_eq(rc, 0, "exit status after SIGTERM with a udp endpoint, %s thread(s)" % threads)


def test_upper_python_all_endpoints():
    with serve_all("upper") as srv:
        for e in srv.endpoints:
            if e.stream:
                check_eq(stream_exchange(e, LINES), UPPER, "upper over %s" % e)
            else:
                with e.socket() as s:
                    for msg in (b"hello datagram", b"two\nlines\n", b"x" * 1400):
                        s.send(msg)
                        check_eq(s.recv(65536), msg.upper(), "upper datagram over %s" % e)


def test_upper_crlf_and_partial_last_line():
    """CRLF endings come back as CRLF; the reply to each line is sent as soon
    as the line is complete (before the client half-closes)."""
    with Server("upper", "tcp://127.0.0.1:0") as srv:
        e = srv.endpoints[0]
        with e.socket() as s:
            s.sendall(b"crlf line\r\n")
            check_eq(recv_exact(s, 11), b"CRLF LINE\r\n", "CRLF reply")
            s.sendall(b"split ")
            s.sendall(b"across writes\n")
            check_eq(recv_exact(s, 20), b"SPLIT ACROSS WRITES\n", "split line")


def test_echo_binary_all_endpoints():
    data = bytes(range(256)) * 64          # every byte value, 16 KiB
    with serve_all("echo") as srv:
        for e in srv.endpoints:
            if e.stream:
                check_eq(stream_exchange(e, data), data, "echo over %s" % e)
            else:
                with e.socket() as s:
                    for msg in (bytes(range(256)), b"\x00", data[:8000]):
                        s.send(msg)
                        check_eq(s.recv(65536), msg, "echo datagram over %s" % e)


def test_discard_all_endpoints():
    with serve_all("discard") as srv:
        for e in srv.endpoints:
            if e.stream:
                check_eq(stream_exchange(e, os.urandom(1 << 20)), b"",
                         "discard over %s" % e)
        # Datagrams: nothing comes back. Absence can only be shown by waiting;
        # a short bounded wait after a round trip through the same server.
        for e in srv.endpoints:
            if not e.stream:
                with e.socket(timeout=0.3) as s:
                    s.send(b"dropped")
                    try:
                        got = s.recv(100)
                    except socket.timeout:
                        got = None
                    check_eq(got, None, "discard datagram reply over %s" % e)


def _tool_stream(argv, data=LINES, want=UPPER):
    """A stream tool that exits by itself at EOF once the server closes."""
    p = Proc(argv)
    try:
        p.feed(data)
        out = p.read_to_eof(timeout=10)
        rc = p.wait(10)
        check_eq(out, want, " ".join(argv))
        check_eq(rc, 0, "%s exit status (stderr %r)" % (" ".join(argv), p.stderr()))
    finally:
        p.kill()


def _tool_dgram(argv, msg=b"datagram via tool\n"):
    """Datagram tools keep running; write one datagram, wait (bounded) for
    the reply, then stop the tool."""
    p = Proc(argv)
    try:
        p.write(msg)
        out = p.read_until(lambda o: len(o) >= len(msg), timeout=10)
        check_eq(out, msg.upper(), " ".join(argv))
    finally:
        p.kill()


def test_upper_nc():
    check(have("nc"), "nc not installed")
    with serve_all("upper") as srv:
        _tool_stream(["nc", "-N", "127.0.0.1", str(srv.ep("tcp").port)])
        _tool_stream(["nc", "-N", "::1", str(srv.ep("tcp", True).port)])
        _tool_stream(["nc", "-N", "-U", srv.ep("unix").path])
        _tool_dgram(["nc", "-u", "127.0.0.1", str(srv.ep("udp").port)])
        _tool_dgram(["nc", "-u", "::1", str(srv.ep("udp", True).port)])
        # nc -uU binds its own temporary client socket, so replies come back.
        _tool_dgram(["nc", "-uU", srv.ep("unixgram").path])


def test_upper_ncat():
    check(have("ncat"), "ncat not installed")
    with serve_all("upper") as srv:
        _tool_stream(["ncat", "127.0.0.1", str(srv.ep("tcp").port)])
        _tool_stream(["ncat", "-6", "::1", str(srv.ep("tcp", True).port)])
        _tool_stream(["ncat", "-U", srv.ep("unix").path])
        _tool_dgram(["ncat", "-u", "127.0.0.1", str(srv.ep("udp").port)])
        _tool_dgram(["ncat", "-u", "-6", "::1", str(srv.ep("udp", True).port)])
        # (ncat -uU does not bind a client address, so it cannot get replies.)


def test_upper_socat():
    check(have("socat"), "socat not installed")
    d = tmpdir()
    with serve_all("upper") as srv:
        # -t: how long socat waits for the reply after our EOF; generous so a
        # loaded machine does not cut the reply off.
        t = "%d" % T(10)
        _tool_stream(["socat", "-t", t, "-", "TCP4:127.0.0.1:%d" % srv.ep("tcp").port])
        _tool_stream(["socat", "-t", t, "-", "TCP6:[::1]:%d" % srv.ep("tcp", True).port])
        _tool_stream(["socat", "-t", t, "-", "UNIX-CONNECT:" + srv.ep("unix").path])
        _tool_dgram(["socat", "-", "UDP4:127.0.0.1:%d" % srv.ep("udp").port])
        _tool_dgram(["socat", "-", "UDP6:[::1]:%d" % srv.ep("udp", True).port])
        _tool_dgram(["socat", "-", "UNIX-SENDTO:%s,bind=%s" % (srv.ep("unixgram").path,
                                                                 os.path.join(d, "cl"))])


def test_echo_large_socat_and_nc():
    """1 MiB through echo with real tools: nothing lost or reordered."""
    data = os.urandom(1 << 20)
    with Server("echo", "tcp://127.0.0.1:0", "unix:" + os.path.join(tmpdir(), "e")) as srv:
        _tool_stream(["socat", "-t", "%d" % T(10), "-", "TCP4:127.0.0.1:%d" % srv.ep("tcp").port],
                     data, data)
        _tool_stream(["nc", "-N", "-U", srv.ep("unix").path], data, data)


def test_many_clients_one_server_mixed():
    """Clients on every endpoint at once, interleaved, on one serve process."""
    with serve_all("upper") as srv:
        socks = []
        try:
            for e in srv.endpoints:
                for _ in range(3):
                    socks.append((e, e.socket()))
            for rnd in range(5):
                for i, (e, s) in enumerate(socks):
                    msg = b"round %d client %d on %s\n" % (rnd, i, e.scheme.encode())
                    if e.stream:
                        s.sendall(msg)
                    else:
                        s.send(msg)
                for i, (e, s) in enumerate(socks):
                    msg = b"round %d client %d on %s\n" % (rnd, i, e.scheme.encode())
                    got = recv_exact(s, len(msg)) if e.stream else s.recv(65536)
                    check_eq(got, msg.upper(), "mixed reply on %s" % e)
        finally:
            for _, s in socks:
                s.close()


if __name__ == "__main__":
    main()
