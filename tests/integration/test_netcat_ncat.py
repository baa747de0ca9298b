#!/usr/bin/env python3
"""Side by side with ncat: the same script against `ncat -l` and
`csock listen`, and the same bytes must reach every peer (and stdout).
Covers keep-open, broker, chat, exec, sh-exec, crlf, max-conns, allow/deny.
The one normalisation: ncat numbers chat users by file descriptor, csock
by arrival (1, 2, ...); user numbers are renamed in order of appearance.
Prints "N passed, M failed"."""
import re
import socket
import sys
import time

from test_netcat_basic import (Proc, connect, listen, main, ncat_listen, need, quiet_read,
                               recv_all, test)

ACCEPT = {"ncat": r"Connection from \S+:\d+\.", "csock": r"connection from "}
DENIED = {"ncat": r"denied", "csock": r"(denied|refused)"}


def start(tool, *args):
    if tool == "ncat":
        return ncat_listen(*args)
    return listen("-v", *args, "127.0.0.1", 0)


def wait_accepts(tool, p, n):
    p.wait_for("%d accepts" % n, lambda: len(re.findall(ACCEPT[tool], p.stderr())) >= n)


def settle():
    time.sleep(0.15)  # both tools relay asynchronously: let a step land


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


def send_and_see(s, data, wait=0.5):
    """Send, then what came back and whether the peer closed. A close with
    our bytes unread arrives as a reset: the same refusal, so it reads as
    a close too."""
    got = b""
    try:
        s.sendall(data)
        s.settimeout(wait)
        while True:
            d = s.recv(65536)
            if not d:
                return got + b"<closed>"
            got += d
    except socket.timeout:
        return got
    except (ConnectionResetError, BrokenPipeError):
        return got + b"<closed>"


@test
def same_as_ncat_keep_open():
    def scenario(tool):
        p, port = start(tool, "-k")
        a, b = connect(port), connect(port)
        wait_accepts(tool, p, 2)
        p.send(b"to both\n")
        settle()
        a.sendall(b"from a\n")
        settle()
        b.sendall(b"from b\n")
        settle()
        a.close()
        settle()
        p.send(b"to b only\n")
        settle()
        got_b = quiet_read(b)
        p.stop()
        return p.stdout(), got_b
    both(scenario)


@test
def same_as_ncat_broker():
    def scenario(tool):
        p, port = start(tool, "--broker")
        cs = [connect(port) for _ in range(3)]
        wait_accepts(tool, p, 3)
        for i, s in enumerate(cs):
            s.sendall(b"msg from %d\n" % i)
            settle()
        p.send(b"from stdin\n")
        settle()
        got = [quiet_read(s) for s in cs]
        p.stop()
        return got, p.stdout()
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
        a = connect(port)
        wait_accepts(tool, p, 1)
        settle()
        b = connect(port)
        wait_accepts(tool, p, 2)
        settle()
        a.sendall(b"hello\n")
        settle()
        b.sendall(b"bin\x01\x7f\xff\ttab\r\n")
        settle()
        p.send(b"operator\n")
        settle()
        a.close()
        settle()
        got_b = quiet_read(b)
        p.stop()
        return renumber(got_b), p.stdout()
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
                out.append(quiet_read(s, 0.5))
                s.close()
            p.stop()
            return out
        both(scenario)


@test
def same_as_ncat_crlf():
    def scenario(tool):
        p, port = start(tool, "-C")
        s = connect(port)
        wait_accepts(tool, p, 1)
        p.send(b"a\nb\r\nc\n")
        settle()
        s.sendall(b"x\ny\n")
        settle()
        got = quiet_read(s)
        p.stop()
        return got, p.stdout()
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
        a.sendall(b"first\n")
        settle()
        p.send(b"hi\n")
        settle()
        got_a = quiet_read(a)
        p.stop()
        return got_a, got_b, p.stdout()
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
                res.append(send_and_see(s, b"from %s\n" % src.encode()))
            settle()
            p.stop()
            return res, p.stdout()
        both(scenario)


if __name__ == "__main__":
    main()
