#!/usr/bin/env python3
"""Side by side with ncat: the same script against `ncat -l` and
`csock listen`, and the same bytes must reach every peer (and stdout).
Covers keep-open, broker, chat, exec, sh-exec, crlf, max-conns, allow/deny.
The one normalisation: ncat numbers chat users by file descriptor, csock
by arrival (1, 2, ...); user numbers are renamed in order of appearance.
Prints "N passed, M failed"."""
import re
import socket
import threading
import time

from test_netcat_basic import (SLOW, connect, listen, main, ncat_listen, need, recv_all,
                               recv_until, test)

ACCEPT = {"ncat": r"Connection from \S+:\d+\.", "csock": r"connection from "}
DENIED = {"ncat": r"denied", "csock": r"(denied|refused)"}


def start(tool, *args):
    if tool == "ncat":
        return ncat_listen(*args)
    return listen("-v", *args, "127.0.0.1", 0)


def wait_accepts(tool, p, n):
    p.wait_for("%d accepts" % n, lambda: len(re.findall(ACCEPT[tool], p.stderr())) >= n)


class Reader:
    """Collects what a client socket receives (in a thread), so each step
    of a script waits for its bytes to land instead of sleeping."""

    def __init__(self, s):
        self.s = s
        self.data = b""
        self.lock = threading.Lock()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        self.s.settimeout(None)
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    return
                with self.lock:
                    self.data += d
        except OSError:
            pass

    def get(self):
        with self.lock:
            return self.data

    def wait(self, pred, what, timeout=10):
        """Until pred(data so far) holds (bounded)."""
        deadline = time.time() + timeout * SLOW
        while not pred(self.get()):
            if time.time() > deadline:
                raise AssertionError("timed out waiting for %s; have %r" % (what, self.get()[-300:]))
            time.sleep(0.01)

    def wait_for(self, data, count=1):
        self.wait(lambda d: d.count(data) >= count, repr(data))

    def close(self):
        """Close the client (the tool reads EOF); the reader thread ends."""
        try:
            self.s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.t.join(5)
        self.s.close()


def both(scenario):
    """Run scenario(tool) for ncat and csock; their results must be equal."""
    need("ncat")
    res = {tool: scenario(tool) for tool in ("ncat", "csock")}
    assert res["ncat"] == res["csock"], "ncat %r\n     csock %r" % (res["ncat"], res["csock"])


def sender_from(port, src):
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    return s


def send_and_see(p, s, data, timeout=10):
    """Send, then wait until the listener `p` printed the data (let in) or
    the peer closed (refused): what came back, and "<closed>" for a
    refusal. A close with our bytes unread arrives as a reset: the same
    refusal, so it reads as a close too."""
    got = b""
    deadline = time.time() + timeout * SLOW
    try:
        s.sendall(data)
        s.settimeout(0.02)
        while data not in p.stdout():
            if time.time() > deadline:
                raise AssertionError("%r neither relayed nor refused" % data)
            try:
                d = s.recv(65536)
            except socket.timeout:
                continue
            if not d:
                return got + b"<closed>"
            got += d
        return got
    except (ConnectionResetError, BrokenPipeError):
        return got + b"<closed>"


@test
def same_as_ncat_keep_open():
    def scenario(tool):
        p, port = start(tool, "-k")
        a, b = connect(port), connect(port)
        wait_accepts(tool, p, 2)
        ra, rb = Reader(a), Reader(b)
        p.send(b"to both\n")
        ra.wait_for(b"to both\n")
        rb.wait_for(b"to both\n")
        a.sendall(b"from a\n")
        p.wait_stdout(b"from a\n")
        b.sendall(b"from b\n")
        p.wait_stdout(b"from b\n")
        ra.close()
        p.send(b"to b only\n")
        rb.wait_for(b"to b only\n")
        p.stop()
        return p.stdout(), rb.get()
    both(scenario)


@test
def same_as_ncat_broker():
    def scenario(tool):
        p, port = start(tool, "--broker")
        cs = [connect(port) for _ in range(3)]
        wait_accepts(tool, p, 3)
        rs = [Reader(s) for s in cs]
        for i, s in enumerate(cs):
            s.sendall(b"msg from %d\n" % i)
            for j, r in enumerate(rs):
                if j != i:
                    r.wait_for(b"msg from %d\n" % i)
        p.send(b"from stdin\n")
        for r in rs:
            r.wait_for(b"from stdin\n")
        p.stop()
        return [r.get() for r in rs], p.stdout()
    both(scenario)


def renumber(data):
    """<user4> -> <userA>, in order of first appearance (stdin stays 0)."""
    names = {b"0": b"0"}

    def sub(m):
        k = m.group(1)
        if k not in names:
            names[k] = bytes([ord("A") + len(names) - 1])
        return b"<user" + names[k] + b">"
    return re.sub(rb"<user(\d+)>", sub, data)


@test
def same_as_ncat_chat():
    def scenario(tool):
        p, port = start(tool, "--chat")
        ra = Reader(connect(port))
        wait_accepts(tool, p, 1)
        ra.wait_for(b"already connected: nobody.\n")
        rb = Reader(connect(port))
        wait_accepts(tool, p, 2)
        rb.wait(lambda d: re.search(rb"already connected: .*\.\n", d), "b's welcome")
        ra.wait_for(b"is connected as", 2)
        ra.s.sendall(b"hello\n")
        rb.wait_for(b"hello\n")
        rb.s.sendall(b"bin\x01\x7f\xff\ttab\r\n")
        ra.wait_for(b"tab\r\n")
        p.send(b"operator\n")
        ra.wait_for(b"operator\n")
        rb.wait_for(b"operator\n")
        ra.close()
        rb.wait_for(b"is disconnected.\n")
        p.stop()
        return renumber(rb.get()), p.stdout()
    both(scenario)


@test
def same_as_ncat_exec_and_sh_exec():
    # ncat -e does not search PATH and drops the reply when the client
    # half-closes (csock keeps both: see test_netcat_exec.py), so the script
    # uses a full path, line-buffered programs and no half-close.
    for flags in (("-e", "/bin/cat"), ("-c", "echo start; sed -u s/x/y/g"),
                  ("-k", "-e", "/usr/bin/sed -u s/^/re:/")):
        def scenario(tool):
            p, port = start(tool, *flags)
            out = []
            for i in range(2 if "-k" in flags else 1):
                s = connect(port)
                s.sendall(b"xx text %d\n" % i)
                out.append(recv_until(s, b" %d\n" % i))  # the reply line has come
                s.close()
            p.stop()
            return out
        both(scenario)


@test
def same_as_ncat_crlf():
    def scenario(tool):
        p, port = start(tool, "-C")
        r = Reader(connect(port))
        wait_accepts(tool, p, 1)
        p.send(b"a\nb\r\nc\n")
        r.wait_for(b"c\r\n")
        r.s.sendall(b"x\ny\n")
        p.wait_stdout(b"y\n")
        p.stop()
        return r.get(), p.stdout()
    both(scenario)


@test
def same_as_ncat_max_conns():
    def scenario(tool):
        p, port = start(tool, "-k", "-m", "1")
        a = connect(port)
        wait_accepts(tool, p, 1)
        b = connect(port)
        got_b = recv_all(b, 5)  # closed at once
        p.wait_stderr(DENIED[tool])
        ra = Reader(a)
        a.sendall(b"first\n")
        p.wait_stdout(b"first\n")
        p.send(b"hi\n")
        ra.wait_for(b"hi\n")
        p.stop()
        return ra.get(), got_b, p.stdout()
    both(scenario)


@test
def same_as_ncat_allow_deny():
    for flags, srcs in ((("--allow", "127.0.0.2"), ("127.0.0.1", "127.0.0.2")),
                        (("--deny", "127.0.0.0/31"), ("127.0.0.1", "127.0.0.3")),
                        (("--allow", "127.0.0.0/24", "--deny", "127.0.0.7"), ("127.0.0.7", "127.0.0.8"))):
        def scenario(tool):
            p, port = start(tool, "-k", *flags)
            res = []
            for src in srcs:
                s = sender_from(port, src)
                res.append(send_and_see(p, s, b"from %s\n" % src.encode()))
            p.stop()
            return res, p.stdout()
        both(scenario)


if __name__ == "__main__":
    main()
