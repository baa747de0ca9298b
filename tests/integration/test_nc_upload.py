#!/usr/bin/env python3
"""csock listen < /dev/null receiving a 1 MiB upload (issue 12's bug: the
receiver half-closes at once, having nothing to send, and `csock connect`
took that EOF for the end of the session, so only what it had read of its
input by then, often 16384 bytes, arrived). Byte-exact: sha256 of what
csock listen wrote to stdout and to -o.

Run: python3 tests/integration/test_nc_upload.py   (CSOCK_BIN=build/csock)
"""
import hashlib
import os
import shutil
import socket
import subprocess
import time

from test_netcat_basic import (BIN, SLOW, connect, csock, listen, main, need, recv_all, test,
                               tmpdir)

SIZE = 1 << 20


def _payload(d):
    data = os.urandom(SIZE)
    path = os.path.join(d, "in.bin")
    with open(path, "wb") as f:
        f.write(data)
    return data, path


def _receiver(d):
    """csock listen < /dev/null, capturing with -o too."""
    cap = os.path.join(d, "cap.bin")
    p, port = listen("-o", cap, "127.0.0.1", 0, stdin=subprocess.DEVNULL)
    return p, port, cap


def _check_received(p, cap, data, who):
    assert p.wait(30 * SLOW) == 0, (who, p.stderr())
    got = p.stdout()
    assert len(got) == len(data), "%s: %d of %d bytes on stdout" % (who, len(got), len(data))
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), who
    with open(cap, "rb") as f:
        assert hashlib.sha256(f.read()).digest() == hashlib.sha256(data).digest(), who + ": -o"
    p.check_clean()


@test
def upload_from_python_socket():
    d = tmpdir()
    data, _ = _payload(d)
    p, port, cap = _receiver(d)
    c = connect(port)
    c.sendall(data)
    c.shutdown(socket.SHUT_WR)
    assert recv_all(c) == b""  # listen had nothing to send
    c.close()
    _check_received(p, cap, data, "python")
    shutil.rmtree(d)


@test
def upload_from_csock_connect_file():
    """The reported case: csock connect reading a file, the receiver's EOF
    arriving before the upload is done."""
    d = tmpdir()
    data, path = _payload(d)
    p, port, cap = _receiver(d)
    with open(path, "rb") as f:
        q = subprocess.run([BIN, "connect", "127.0.0.1", str(port)], stdin=f,
                           capture_output=True, timeout=30 * SLOW)
    assert q.returncode == 0 and q.stdout == b"", (q.returncode, q.stderr)
    _check_received(p, cap, data, "csock connect < file")
    shutil.rmtree(d)


@test
def upload_from_csock_connect_pipe():
    """Stdin a pipe written in pieces, slower than the receiver's EOF."""
    d = tmpdir()
    data, path = _payload(d)
    p, port, cap = _receiver(d)
    q = subprocess.Popen([BIN, "connect", "127.0.0.1", str(port)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for i in range(0, SIZE, 16384):
        q.stdin.write(data[i:i + 16384])
        q.stdin.flush()
    q.stdin.close()
    q.stdin = None  # communicate() would flush it again
    out, err = q.communicate(timeout=30 * SLOW)
    assert q.returncode == 0 and out == b"", (q.returncode, err)
    _check_received(p, cap, data, "csock connect < pipe")
    shutil.rmtree(d)


def _late_reader(args, half_close):
    """csock connect ARGS unix:PATH with 400 KiB on stdin to a receiver that
    reads nothing until csock's input has ended. A Unix socket's kernel
    buffer is a fixed ~208 KiB: csock's own queue then holds the rest (under
    the mark that stops reading stdin), and all of it must go before csock
    exits (the session's end used to cut it)."""
    d = tmpdir()
    data = os.urandom(400 << 10)
    path = os.path.join(d, "s")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)
    q = subprocess.Popen([BIN, "connect"] + args + ["unix:" + path], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    c, _ = srv.accept()
    if half_close:
        c.shutdown(socket.SHUT_WR)
        time.sleep(0.2)  # (not a synchronisation: the peer's EOF first is the case to test)
    q.stdin.write(data)
    q.stdin.close()
    q.stdin = None
    time.sleep(0.3)  # csock has its input's end by now, with bytes queued for us
    got = recv_until_eof_then_close(c)
    srv.close()
    out, err = q.communicate(timeout=30 * SLOW)
    assert q.returncode == 0, (q.returncode, err)
    assert len(got) == len(data), "%s: %d of %d bytes" % (args, len(got), len(data))
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    shutil.rmtree(d)


def recv_until_eof_then_close(c):
    got = recv_all(c, 30 * SLOW)
    c.close()
    return got


@test
def upload_to_a_late_reader():
    """The receiver half-closed first."""
    _late_reader([], True)


@test
def send_only_to_a_late_reader():
    """--send-only quits at the end of input, once all of it is sent."""
    _late_reader(["--send-only"], False)


@test
def upload_from_nc_and_ncat():
    for tool in ("nc", "ncat"):
        need(tool)
    d = tmpdir()
    data, path = _payload(d)
    for argv in (["nc", "-N"], ["ncat"]):
        p, port, cap = _receiver(d)
        with open(path, "rb") as f:
            subprocess.run(argv + ["127.0.0.1", str(port)], stdin=f, stdout=subprocess.DEVNULL,
                           timeout=30 * SLOW, check=True)
        _check_received(p, cap, data, argv[0])
    shutil.rmtree(d)


@test
def banner_server_still_ends_connect():
    """An idle stdin does not keep csock connect on after the peer's EOF: a
    server that talks and hangs up still ends the session."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    q = csock("connect", "127.0.0.1", srv.getsockname()[1])
    c, _ = srv.accept()
    c.sendall(b"banner\n")
    c.close()
    srv.close()
    assert q.wait(10 * SLOW) == 0, q.stderr()
    assert q.stdout() == b"banner\n"


if __name__ == "__main__":
    main()
