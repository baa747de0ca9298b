#!/usr/bin/env python3
"""csock connect against servers no one here wrote: Python socket servers in
threads (port 0, so no port guessing), ncat -l and socat on Unix sockets,
over TCP (IPv4, IPv6), UDP (IPv4, IPv6), Unix streams and Unix datagrams.
Half-close: at EOF on stdin csock shuts its write side and still prints what
the peer sends after that."""

import os
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from csocktest import (BIN, Proc, T, check, check_eq, closed_tcp_port, csock,  # noqa: E402
                       have, main, recv_all, spawn, tmpdir, wait_for)


class ThreadServer:
    """A Python server on port 0 (or a Unix path) in a thread. For streams,
    handler(conn) serves one connection; for datagrams, handler(sock)
    serves the socket. Errors in the thread are kept and re-raised."""

    def __init__(self, family, kind, handler, addr=None, conns=1):
        self.sock = socket.socket(family, kind)
        self.sock.settimeout(T(20))
        if addr is None:
            addr = ("::1" if family == socket.AF_INET6 else "127.0.0.1", 0)
        self.sock.bind(addr)
        if kind == socket.SOCK_STREAM:
            self.sock.listen(16)
        self.addr = self.sock.getsockname()
        self.error = None
        self.handler, self.kind, self.conns = handler, kind, conns
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        try:
            if self.kind == socket.SOCK_STREAM:
                for _ in range(self.conns):
                    c, _ = self.sock.accept()
                    with c:
                        c.settimeout(T(20))
                        self.handler(c)
            else:
                self.handler(self.sock)
        except Exception as e:  # reported by join()
            self.error = e

    def join(self):
        self.t.join(T(30))
        check(not self.t.is_alive(), "python server thread did not finish")
        self.sock.close()
        if self.error:
            raise self.error

    @property
    def port(self):
        return self.addr[1]


def need(tool):
    """A peer tool this test needs; when it is missing the test says
    "skipped" (csocktest's runner then counts it as passed)."""
    if have(tool):
        return True
    print("  skipped: %s not installed" % tool, flush=True)
    return False


def reply_after_eof(c):
    """Read to EOF, then answer: proves csock half-closed (a full close
    would lose the answer) and kept reading."""
    data = recv_all(c)
    c.sendall(b"got %d bytes\n" % len(data) + data.upper())


def _half_close(addr_args, srv, data=b"first line\nsecond line\n"):
    rc, out, err = csock("connect", *addr_args, input=data)
    srv.join()
    check_eq(out, b"got %d bytes\n" % len(data) + data.upper(), "reply after EOF")
    check_eq(rc, 0, "exit status (stderr %r)" % err)
    check_eq(err, "", "stderr")


def test_tcp4_half_close():
    srv = ThreadServer(socket.AF_INET, socket.SOCK_STREAM, reply_after_eof)
    _half_close(["tcp://127.0.0.1:%d" % srv.port], srv)


def test_tcp6_half_close():
    srv = ThreadServer(socket.AF_INET6, socket.SOCK_STREAM, reply_after_eof)
    _half_close(["tcp://[::1]:%d" % srv.port], srv)


def test_host_port_form():
    srv = ThreadServer(socket.AF_INET, socket.SOCK_STREAM, reply_after_eof)
    _half_close(["127.0.0.1", str(srv.port)], srv)
    srv = ThreadServer(socket.AF_INET, socket.SOCK_STREAM, reply_after_eof)
    _half_close(["127.0.0.1:%d" % srv.port], srv)


def test_unix_half_close():
    path = os.path.join(tmpdir(), "s")
    srv = ThreadServer(socket.AF_UNIX, socket.SOCK_STREAM, reply_after_eof, path)
    _half_close(["unix:" + path], srv)
    srv = ThreadServer(socket.AF_UNIX, socket.SOCK_STREAM, reply_after_eof, path + "2")
    _half_close(["-U", path + "2"], srv)


def test_tcp_large_both_ways():
    """4 MiB up, 4 MiB back after EOF: nothing lost, exit 0."""
    data = os.urandom(4 << 20)
    srv = ThreadServer(socket.AF_INET, socket.SOCK_STREAM,
                       lambda c: c.sendall(recv_all(c)[::-1]))
    rc, out, err = csock("connect", "tcp://127.0.0.1:%d" % srv.port, input=data, timeout=60)
    srv.join()
    check(out == data[::-1], "4 MiB reply differs (got %d bytes)" % len(out))
    check_eq(rc, 0, "exit status (stderr %r)" % err)


def test_server_talks_first_and_closes():
    """A server that sends a banner and closes without reading: csock prints
    it and exits 0 even though stdin is still open."""
    srv = ThreadServer(socket.AF_INET, socket.SOCK_STREAM,
                       lambda c: c.sendall(b"banner\n"))
    p = Proc([BIN, "connect", "tcp://127.0.0.1:%d" % srv.port])
    try:
        out = p.read_to_eof(10)
        rc = p.wait(10)
        srv.join()
        check_eq(out, b"banner\n", "banner")
        check_eq(rc, 0, "exit status (stderr %r)" % p.stderr())
    finally:
        p.kill()


def udp_upper(count):
    def handler(s):
        for _ in range(count):
            msg, peer = s.recvfrom(65536)
            s.sendto(msg.upper(), peer)
    return handler


def _udp(family, url):
    lines = [b"alpha\n", b"beta\n", b"gamma\n"]
    srv = ThreadServer(family, socket.SOCK_DGRAM, udp_upper(len(lines)))
    p = Proc([BIN, "connect", url % srv.port])
    try:
        # One line at a time: each line is one datagram and its answer comes
        # back before the next goes out, so order is deterministic.
        want = b""
        for ln in lines:
            p.write(ln)
            want += ln.upper()
            p.read_until(lambda o, w=want: len(o) >= len(w), 10)
        check_eq(p.out, want, "udp replies")
        p.close_stdin()
        rc = p.wait(10)      # exits after --quit-after (default 1 s) of quiet
        check_eq(rc, 0, "exit status (stderr %r)" % p.stderr())
        srv.join()
    finally:
        p.kill()


def test_udp4():
    _udp(socket.AF_INET, "udp://127.0.0.1:%d")


def test_udp6():
    _udp(socket.AF_INET6, "udp://[::1]:%d")


def test_udp_host_port_u_flag():
    srv = ThreadServer(socket.AF_INET, socket.SOCK_DGRAM, udp_upper(1))
    rc, out, err = csock("connect", "-u", "-q", "%g" % T(2), "127.0.0.1", str(srv.port), input=b"dgram\n")
    srv.join()
    check_eq(out, b"DGRAM\n", "reply")
    check_eq(rc, 0, "exit status (stderr %r)" % err)


def test_unixgram():
    """csock must give itself an address the server can answer to."""
    path = os.path.join(tmpdir(), "g")
    srv = ThreadServer(socket.AF_UNIX, socket.SOCK_DGRAM, udp_upper(1), path)
    rc, out, err = csock("connect", "-q", "%g" % T(2), "unixgram:" + path, input=b"over unixgram\n")
    srv.join()
    check_eq(out, b"OVER UNIXGRAM\n", "reply")
    check_eq(rc, 0, "exit status (stderr %r)" % err)


def test_ncat_unix_listener():
    """ncat -l on a Unix path: csock sends, half-closes, ncat exits and
    csock exits 0 with ncat's output printed."""
    if not need("ncat"):
        return
    path = os.path.join(tmpdir(), "n")
    # ncat -v reports "Listening on PATH" on stderr once bound: that is the
    # readiness signal. --recv-only is not used: ncat replies with its stdin.
    p = Proc(["ncat", "-v", "-lU", path])
    try:
        def ready(_):
            return "Listening on" in p.stderr()
        wait_for(lambda: ready(None), 10, "ncat to listen")
        p.write(b"from ncat\n")
        q = Proc([BIN, "connect", "unix:" + path])
        q.write(b"from csock\n")
        q.close_stdin()
        got = p.read_until(lambda o: b"from csock\n" in o, 10)
        # Only now does ncat's input end: an ncat whose stdin ended before
        # the client came may close without reading it.
        p.close_stdin()
        out = q.read_to_eof(10)
        rc = q.wait(10)
        check_eq(got, b"from csock\n", "ncat received")
        check_eq(out, b"from ncat\n", "csock received")
        check_eq(rc, 0, "exit status (stderr %r)" % q.stderr())
    finally:
        p.kill()


def test_socat_unix_listener_reply_after_eof():
    """socat as a Unix server running a shell pipeline that reads to EOF and
    then replies: the half-close path through a real peer."""
    if not need("socat"):
        return
    path = os.path.join(tmpdir(), "so")
    p = Proc(["socat", "-d", "-d", "UNIX-LISTEN:" + path, "SYSTEM:'tr a-z A-Z'"])
    try:
        wait_for(lambda: "listening on" in p.stderr(), 10, "socat to listen")
        data = b"half closed by csock\n" * 1000
        rc, out, err = csock("connect", "unix:" + path, input=data)
        check_eq(out, data.upper(), "tr output through socat")
        check_eq(rc, 0, "exit status (stderr %r)" % err)
    finally:
        p.kill()


def test_refused_tcp():
    with closed_tcp_port() as hold:
        port = hold.getsockname()[1]
        rc, out, err = csock("connect", "tcp://127.0.0.1:%d" % port, input=b"x\n")
    check_eq(rc, 1, "exit status")
    check_eq(out, b"", "stdout")
    check_eq(err.count("\n"), 1, "one line on stderr: %r" % err)
    check("refused" in err.lower() and str(port) in err, "names the problem: %r" % err)


def test_refused_tcp6():
    with closed_tcp_port(socket.AF_INET6) as hold:
        port = hold.getsockname()[1]
        rc, out, err = csock("connect", "tcp://[::1]:%d" % port, input=b"x\n")
    check_eq(rc, 1, "exit status")
    check_eq(err.count("\n"), 1, "one line on stderr: %r" % err)
    check("refused" in err.lower(), "names the problem: %r" % err)


def test_missing_unix_path():
    path = os.path.join(tmpdir(), "nobody-here")
    rc, out, err = csock("connect", "unix:" + path, input=b"x\n")
    check_eq(rc, 1, "exit status")
    check_eq(err.count("\n"), 1, "one line on stderr: %r" % err)
    check(path in err, "names the path: %r" % err)


def test_peer_reset_exit_1():
    """A server that resets the connection: one line on stderr, status 1."""
    import struct

    def rst(c):
        c.recv(100)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    srv = ThreadServer(socket.AF_INET, socket.SOCK_STREAM, rst)
    p = Proc([BIN, "connect", "tcp://127.0.0.1:%d" % srv.port])
    try:
        p.write(b"hello\n")        # stdin stays open: only the reset ends it
        rc = p.wait(10)
        srv.join()
        err = p.stderr()
        check_eq(rc, 1, "exit status (stderr %r)" % err)
        check_eq(err.count("\n"), 1, "one line on stderr: %r" % err)
        check("reset" in err.lower(), "names the problem: %r" % err)
    finally:
        p.kill()


def _under_fsize_limit(extra, rounds, stdout_file=True):
    """csock connect --recv-only EXTRA ("@" is a temporary directory) under
    a 4 KiB file size limit (prlimit), its stdout a file (or /dev/null),
    from a server that sends 20,000 bytes and closes: [(status, stderr,
    stdout's size)] of each round."""
    out = []
    d = tmpdir()
    for i in range(rounds):
        srv = ThreadServer(socket.AF_INET, socket.SOCK_STREAM, lambda c: c.sendall(b"x" * 20000))
        path = os.path.join(d, "out%d" % i) if stdout_file else os.devnull
        with open(path, "ab") as f:
            p = spawn(["prlimit", "--fsize=4096", BIN, "connect", "--recv-only",
                       "tcp://127.0.0.1:%d" % srv.port] + [a.replace("@", d) for a in extra], stdout=f)
            try:
                _, err = p.communicate(timeout=T(20))
            finally:
                p.kill()
                p.wait()
        srv.join()
        out.append((p.returncode, err.decode(errors="replace"), os.path.getsize(path)))
    return out


def test_stdout_at_file_size_limit():
    """Standard output redirected to a file that reaches the file size limit
    (ulimit -f): csock is not killed by SIGXFSZ (it ignores it), says so in
    one line, and exits 1, never 0 with the output cut short; the write that
    fails may come in the same turn as the peer's end (it did on io_uring:
    exit 0, no word, in 9 runs of 15)."""
    if not need("prlimit"):
        return
    for rc, err, size in _under_fsize_limit([], 8):
        check_eq(rc, 1, "exit status at the file size limit (stderr %r)" % err)
        check(err.count("\n") == 1 and "stdout: File too large" in err, "one line: %r" % err)
        check_eq(size, 4096, "stdout's file: up to the limit")


def test_capture_at_file_size_limit():
    """-o and -x files at the file size limit: each said once, the session
    goes on to its end, status 0."""
    if not need("prlimit"):
        return
    for rc, err, size in _under_fsize_limit(["-o", "@/cap", "-x", "@/hex"], 3, stdout_file=False):
        check_eq(rc, 0, "exit status (stderr %r)" % err)
        lines = err.strip().splitlines()
        # (in either order: the dump, 4.5 times the bytes, may fill first)
        check(len(lines) == 2 and sorted(x.split()[1] for x in lines) == ["--hex-dump", "--output"]
              and all("File too large" in x for x in lines), "one line per file: %r" % err)


if __name__ == "__main__":
    main()
