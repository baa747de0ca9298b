#!/usr/bin/env python3
"""csock serve http against hostile clients.

A request smuggling corpus and a path traversal corpus sent as raw bytes:
each must get exactly its error status, never a second response, and never
a byte of the secret file that sits next to DIR (with openat2 and with the
O_NOFOLLOW + realpath fallback). Slow clients (slowloris heads, slow bodies,
idle keep-alive) are cut off at their timeouts, and none of it disturbs a
good client on another connection. Prints "N passed, M failed"."""
import os
import re
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time

BIN = os.environ.get("CSOCK_BIN", "build/csock")
SECRET = b"TOP-SECRET-OUTSIDE"
import httpkit  # noqa: E402

tally = httpkit.Tally()
check = tally.check


def Server(root, *args, env=None):
    return httpkit.Server(root, *args, env=env, check=check)


def raw(port, data, timeout=5.0):
    """Send raw bytes, read until the server closes (or timeout): (bytes, closed)."""
    return httpkit.exchange(port, data, timeout)


H = b"Host: x\r\n"
# (name, request bytes, expected status). Each ends with a second request
# that would be answered (with the secret, for the smuggled ones) if the
# server misread the framing: there must be exactly one response.
TAIL = b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n"
SMUGGLING = [
    ("CL+TE", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + TAIL, 400),
    ("TE+CL", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\n" + TAIL, 400),
    ("chunked twice", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + TAIL, 400),
    ("chunked, chunked", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n" + TAIL, 400),
    ("chunked not final", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + TAIL, 400),
    ("unknown coding", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + TAIL, 501),
    ("two CLs", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 37\r\n\r\n" + TAIL, 400),
    ("CL list differs", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0, 37\r\n\r\n" + TAIL, 400),
    ("CL sign", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +0\r\n\r\n" + TAIL, 400),
    ("CL hex", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x0\r\n\r\n" + TAIL, 400),
    ("TE in HTTP/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + TAIL, 400),
    ("space before colon", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + TAIL, 400),
    ("obs-fold", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n chunked\r\n\r\n0\r\n\r\n" + TAIL, 400),
    ("bare CR in field", b"GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n" + TAIL, 400),
    ("bare CR line end", b"GET / HTTP/1.1\rHost: x\r\n\r\n" + TAIL, 400),
    ("NUL in field", b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n" + TAIL, 400),
    ("no Host", b"GET /small.txt HTTP/1.1\r\n\r\n" + TAIL, 400),
    ("two Hosts", b"GET /small.txt HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" + TAIL, 400),
    ("whitespace line", b"GET /small.txt HTTP/1.1\r\n Host: x\r\n\r\n" + TAIL, 400),
    ("bad chunk size", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n" + TAIL, 400),
    ("chunk size overflow", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nabc\r\n0\r\n\r\n" + TAIL, 413),
    ("chunk without CRLF", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX0\r\n\r\n" + TAIL, 400),
    ("body too large", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n" + TAIL, 413),
    ("chunked too large", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n100000\r\n" + b"a" * 70000, 413),
    ("request line too long", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n" + TAIL, 414),
    ("head too large", b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: " + b"b" * 40000 + b"\r\n\r\n" + TAIL, 431),
    ("too many fields", b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 200 + b"\r\n" + TAIL, 431),
    ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n" + TAIL, 505),
    ("HTTP/1.1 lower case", b"GET / http/1.1\r\nHost: x\r\n\r\n" + TAIL, 400),
    ("space in target", b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n" + TAIL, 400),
    ("LF-less garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 30 + b"\r\n\r\n", 400),
]

TRAVERSAL = [
    ("/../secret.txt", 400), ("/%2e%2e/secret.txt", 400), ("/%2E%2E/secret.txt", 400),
    ("/.%2e/secret.txt", 400), ("/%2e./secret.txt", 400), ("/%2e%2e%2fsecret.txt", 400),
    ("/sub/../../secret.txt", 400), ("/sub/%2e%2e/%2e%2e/secret.txt", 400),
    ("/./././../secret.txt", 400), ("/..%5csecret.txt", 400), ("/..\\secret.txt", 400),
    ("/%5c..%5csecret.txt", 400), ("/%00", 400), ("/small.txt%00.html", 400), ("/%zz", 400),
    ("/%2", 400), ("/%", 400), ("/link", 403), ("/abslink", 403), ("/updir/secret.txt", 403),
    ("/sub/link2", 403), ("//secret.txt", 404), ("/....//secret.txt", 404),
    ("/%252e%252e/secret.txt", 404), ("/sub/..", 200), ("/sub/../small.txt", 200),
    ("http://x/../secret.txt", 400), ("../secret.txt", 400), ("*", 400),
]


def run_corpus(port, label):
    for name, req, status in SMUGGLING:
        out, closed = raw(port, req)
        got = re.findall(rb"HTTP/1\.[01] (\d{3})", out)
        check(f"{label} smuggling {name}: one {status}", got == [str(status).encode()], f"{got} {out[:120]!r}")
        check(f"{label} smuggling {name}: closed", closed)
        check(f"{label} smuggling {name}: no file", b"hello world!" not in out and SECRET not in out)
    for path, status in TRAVERSAL:
        req = b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        out, closed = raw(port, req)
        got = re.findall(rb"HTTP/1\.[01] (\d{3})", out)
        check(f"{label} traversal {path}: {status}", got == [str(status).encode()], f"{got} {out[:160]!r}")
        check(f"{label} traversal {path}: no secret", SECRET not in out)


def slowloris(port, results, key):
    """A head trickled one byte at a time, 0.5 s apart."""
    s = socket.create_connection(("127.0.0.1", port), timeout=15)
    t0 = time.time()
    data = b"GET /small.txt HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    got = b""
    try:
        for b in data:
            s.send(bytes([b]))
            r, _, _ = select.select([s], [], [], 0.5)
            if r:
                chunk = s.recv(4096)
                got += chunk
                if not chunk:
                    break
    except (BrokenPipeError, ConnectionResetError):
        pass
    results[key] = (time.time() - t0, got)
    s.close()


def good_client(port, results, key, n=60):
    """Requests one after another on fresh connections; all must work fast."""
    worst = 0.0
    ok = 0
    for _ in range(n):
        t0 = time.time()
        out, _ = raw(port, b"GET /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=5)
        worst = max(worst, time.time() - t0)
        ok += out.startswith(b"HTTP/1.1 200") and out.endswith(b"hello world!")
        time.sleep(0.03)
    results[key] = (ok, worst)


def garbage_client(port, stop):
    while not stop.is_set():
        for _, req, _ in SMUGGLING[:8]:
            raw(port, req, timeout=2)


def main():
    tmp = tempfile.mkdtemp(prefix="csock-http-safety-")
    root = os.path.join(tmp, "www")
    os.makedirs(os.path.join(root, "sub"))
    secret = os.path.join(tmp, "secret.txt")
    with open(secret, "wb") as f:
        f.write(SECRET + b"\n")
    with open(os.path.join(root, "small.txt"), "wb") as f:
        f.write(b"hello world!")
    with open(os.path.join(root, "index.html"), "w") as f:
        f.write("index\n")
    with open(os.path.join(root, "big.bin"), "wb") as f:
        f.write(os.urandom(1 << 20) * 16)
    os.symlink("../secret.txt", os.path.join(root, "link"))
    os.symlink(secret, os.path.join(root, "abslink"))
    os.symlink("..", os.path.join(root, "updir"))
    os.symlink("../../secret.txt", os.path.join(root, "sub", "link2"))

    srv = Server(root, "--threads", "2", "--max-body", "65536", "--header-timeout", "2",
                 "--body-timeout", "2", "--keepalive-timeout", "1", "--send-timeout", "1")
    try:
        run_corpus(srv.port, "openat2")

        # slow clients, while a good client and a garbage client run
        res = {}
        stop = threading.Event()
        threads = [threading.Thread(target=slowloris, args=(srv.port, res, f"slow{i}")) for i in range(3)]
        threads.append(threading.Thread(target=good_client, args=(srv.port, res, "good")))
        threads.append(threading.Thread(target=garbage_client, args=(srv.port, stop)))
        for t in threads:
            t.start()
        for t in threads[:-1]:
            t.join(30)
        stop.set()
        threads[-1].join(30)
        for i in range(3):
            took, got = res.get(f"slow{i}", (99, b""))
            check(f"slowloris {i} cut off at the header timeout", 1.5 <= took < 4.5, f"{took:.2f}s")
            check(f"slowloris {i} answered 408 or nothing", got == b"" or got.startswith(b"HTTP/1.1 408"), got[:60])
        ok, worst = res.get("good", (0, 99))
        check("good client unaffected", ok == 60 and worst < 1.0, f"ok={ok} worst={worst:.2f}s")

        # a connection that never sends: closed at the header timeout
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        t0 = time.time()
        b = b""
        while True:
            c = s.recv(4096)
            if not c:
                break
            b += c
        took = time.time() - t0
        check("silent connection closed at header timeout",
              1.5 <= took < 4.0 and (b == b"" or b.startswith(b"HTTP/1.1 408")), f"{took:.2f}s {b[:30]!r}")
        s.close()

        # a slow body: closed at the body timeout with 408
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        t0 = time.time()
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        out = b""
        try:
            while True:
                s.send(b"x")
                r, _, _ = select.select([s], [], [], 0.5)
                if r:
                    c = s.recv(4096)
                    out += c
                    if not c:
                        break
                if time.time() - t0 > 8:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        took = time.time() - t0
        check("slow body cut off", 1.5 <= took < 4.5 and (out == b"" or out.startswith(b"HTTP/1.1 408")),
              f"{took:.2f}s {out[:40]!r}")
        s.close()

        # idle keep-alive: closed after the keep-alive timeout
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        s.sendall(b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        out = b""
        while not out.endswith(b"hello world!"):
            out += s.recv(4096)
        t0 = time.time()
        eof = s.recv(4096)
        took = time.time() - t0
        check("keep-alive timeout", eof == b"" and 0.7 <= took < 2.5, f"{took:.2f}s {eof!r}")
        s.close()

        # a client that stops reading a 16 MiB answer: cut at the send timeout
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.settimeout(10)
        s.connect(("127.0.0.1", srv.port))
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        got = len(s.recv(65536))
        time.sleep(3)  # 1 s send timeout + slack for a loaded machine
        end = "eof"
        try:
            while True:
                c = s.recv(1 << 20)
                if not c:
                    break
                got += len(c)
        except ConnectionResetError:
            end = "reset"
        except socket.timeout:
            end = "timeout"
        s.close()
        check("reader that stalls: cut at the send timeout", end != "timeout" and got < 16 << 20,
              f"{end} after {got} bytes")
        out, _ = raw(srv.port, b"GET /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=5)
        check("others served after the cut", out.endswith(b"hello world!"), out[:40])

        # a slow but steady reader: its download outlasts the 1 s keep-alive
        # timeout (which must not run while an answer is still going out)
        # and never pauses for the 1 s send timeout: it gets every byte
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.settimeout(10)
        s.connect(("127.0.0.1", srv.port))
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        t0, body, head = time.time(), b"", b""
        try:
            while b"\r\n\r\n" not in head:
                head += s.recv(4096)
            head, body = head.split(b"\r\n\r\n", 1)
            while len(body) < 16 << 20:
                c = s.recv(1 << 20)
                if not c:
                    break
                body += c
                time.sleep(0.15 * len(c) / (1 << 20))
        except OSError as e:
            head += repr(e).encode()
        s.close()
        with open(os.path.join(root, "big.bin"), "rb") as f:
            whole = body == f.read()
        check("slow steady reader gets all 16 MiB past the keep-alive timeout", whole,
              f"{len(body)} bytes in {time.time() - t0:.2f}s {head[-60:]!r}")

        # a pipelined good request after a smuggled one never runs
        out, _ = raw(srv.port, b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                     + TAIL)
        got = re.findall(rb"HTTP/1\.1 (\d{3})", out)
        check("good, then smuggled: 200 then 400 only", got == [b"200", b"400"], got)
    finally:
        srv.stop()

    # the fallback without openat2 keeps the same confinement
    srv = Server(root, "--threads", "1", "--max-body", "65536", env={"CSOCK_HTTP_NO_OPENAT2": "1"})
    try:
        run_corpus(srv.port, "fallback")
    finally:
        srv.stop()

    shutil.rmtree(tmp)
    tally.finish()


if __name__ == "__main__":
    main()
