#!/usr/bin/env python3
"""csock serve http: static files through curl, http.client and raw sockets.

Keep-alive reuse, HEAD, 304, 206/416, 301/403/404/405, listings, MIME types,
a 50 MB file byte-exact, pipelining over a raw socket, 100-continue, the
access log. Prints "N passed, M failed"; exits non-zero on any failure or
on a sanitizer report in the server's stderr."""
import hashlib
import http.client
import os
import re
import select
import shutil
import socket
import subprocess
import tempfile
import time

BIN = os.environ.get("CSOCK_BIN", "build/csock")
import httpkit  # noqa: E402

tally = httpkit.Tally()
check = tally.check


def Server(root, *args, env=None):
    return httpkit.Server(root, *args, env=env, check=check)


def raw(port, data, timeout=5.0, shut=False):
    """Send raw bytes, read until EOF or timeout; return what came back."""
    return httpkit.exchange(port, data, timeout, shut)[0]


def curl(*args):
    r = subprocess.run(["curl", "-s", "--max-time", "30", *args], capture_output=True, timeout=60)
    return r


def main():
    tmp = tempfile.mkdtemp(prefix="csock-http-")
    root = os.path.join(tmp, "www")
    os.makedirs(os.path.join(root, "sub"))
    os.makedirs(os.path.join(root, "noindex"))
    with open(os.path.join(tmp, "secret.txt"), "w") as f:
        f.write("TOP-SECRET-OUTSIDE\n")
    with open(os.path.join(root, "small.txt"), "wb") as f:
        f.write(b"hello world!")
    with open(os.path.join(root, "sub", "index.html"), "w") as f:
        f.write("<h1>sub</h1>\n")
    with open(os.path.join(root, "style.css"), "w") as f:
        f.write("body{}\n")
    with open(os.path.join(root, "noindex", "<b>&x.txt"), "w") as f:
        f.write("x")
    os.symlink("../secret.txt", os.path.join(root, "link"))
    big = os.path.join(root, "big.bin")
    with open(big, "wb") as f:
        blk = hashlib.sha256(b"seed").digest() * 4096  # 128 KiB pattern
        for i in range(400):  # 50 MiB (52428800 bytes)
            f.write(bytes([i & 0xFF]) + blk[1:])
    big_sha = hashlib.sha256(open(big, "rb").read()).hexdigest()
    log = os.path.join(tmp, "access.log")

    srv = Server(root, "--threads", "2", "--access-log", log)
    port = srv.port
    try:
        # keep-alive: curl reuses the connection, http.client sends three on one
        r = curl("-v", f"http://127.0.0.1:{port}/small.txt", f"http://127.0.0.1:{port}/small.txt")
        err = r.stderr.decode(errors="replace")
        check("curl keep-alive reuse", "Re-using existing connection" in err, err[-500:])
        check("curl body", r.stdout == b"hello world!hello world!", repr(r.stdout))
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        socks = set()
        for _ in range(3):
            c.request("GET", "/small.txt")
            resp = c.getresponse()
            body = resp.read()
            socks.add(id(c.sock))
            check("http.client 200", resp.status == 200 and body == b"hello world!", f"{resp.status} {body!r}")
        check("http.client one connection", len(socks) == 1 and c.sock is not None)
        check("Date header", re.match(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT$", resp.getheader("Date") or ""),
              resp.getheader("Date"))
        check("content type txt", resp.getheader("Content-Type", "").startswith("text/plain"))
        etag = resp.getheader("ETag")
        lm = resp.getheader("Last-Modified")
        check("etag present", etag and etag.startswith('"'), etag)

        # HEAD: the length, no body (the next answer on the connection is intact)
        c.request("HEAD", "/small.txt")
        resp = c.getresponse()
        body = resp.read()
        check("HEAD status/length", resp.status == 200 and resp.getheader("Content-Length") == "12" and body == b"",
              f"{resp.status} {resp.getheaders()}")
        c.request("GET", "/style.css")
        resp = c.getresponse()
        check("GET after HEAD", resp.read() == b"body{}\n" and resp.getheader("Content-Type").startswith("text/css"))
        c.request("HEAD", "/big.bin")
        resp = c.getresponse()
        check("HEAD big length", resp.getheader("Content-Length") == str(os.path.getsize(big)) and resp.read() == b"")

        # 304
        c.request("GET", "/small.txt", headers={"If-None-Match": etag})
        resp = c.getresponse()
        check("304 If-None-Match", resp.status == 304 and resp.read() == b"" and resp.getheader("ETag") == etag)
        c.request("GET", "/small.txt", headers={"If-None-Match": '"nope", ' + etag})
        resp = c.getresponse()
        check("304 If-None-Match list", resp.status == 304, resp.status)
        resp.read()
        c.request("GET", "/small.txt", headers={"If-Modified-Since": lm})
        resp = c.getresponse()
        check("304 If-Modified-Since", resp.status == 304, resp.status)
        resp.read()
        c.request("GET", "/small.txt", headers={"If-Modified-Since": "Mon, 01 Jan 1990 00:00:00 GMT"})
        resp = c.getresponse()
        check("200 old If-Modified-Since", resp.status == 200 and resp.read() == b"hello world!")
        c.request("GET", "/small.txt", headers={"If-None-Match": '"other"'})
        resp = c.getresponse()
        check("200 other etag", resp.status == 200 and resp.read() == b"hello world!")

        # ranges
        for rng, st, body, cr in [("bytes=2-4", 206, b"llo", "bytes 2-4/12"),
                                  ("bytes=6-", 206, b"world!", "bytes 6-11/12"),
                                  ("bytes=-3", 206, b"ld!", "bytes 9-11/12"),
                                  ("bytes=0-100", 206, b"hello world!", "bytes 0-11/12"),
                                  ("bytes=12-", 416, b"", "bytes */12"),
                                  ("bytes=-0", 416, b"", "bytes */12"),
                                  ("bytes=5-2", 416, b"", "bytes */12"),  # more in test_http_ranges
                                  ("chars=0-1", 200, b"hello world!", None)]:
            c.request("GET", "/small.txt", headers={"Range": rng})
            resp = c.getresponse()
            got = resp.read()
            check(f"range {rng}", resp.status == st and got == body and resp.getheader("Content-Range") == cr,
                  f"{resp.status} {got!r} {resp.getheader('Content-Range')}")
        c.request("GET", "/small.txt", headers={"Range": "bytes=0-1", "If-Range": '"stale"'})
        resp = c.getresponse()
        check("If-Range mismatch: 200", resp.status == 200 and resp.read() == b"hello world!")
        c.request("GET", "/big.bin", headers={"Range": "bytes=1000000-1000099"})
        resp = c.getresponse()
        with open(big, "rb") as f:
            f.seek(1000000)
            want = f.read(100)
        check("range in big file (sendfile)", resp.status == 206 and resp.read() == want)

        # errors
        for path, st in [("/missing", 404), ("/link", 403), ("/noindex/", 403), ("/sub/nope/x", 404),
                         ("/small.txt/x", 404)]:
            c.request("GET", path)
            resp = c.getresponse()
            body = resp.read()
            check(f"{path} -> {st}", resp.status == st and b"SECRET" not in body, f"{resp.status} {body!r}")
        c.request("GET", "/sub")
        resp = c.getresponse()
        resp.read()
        check("dir redirect 301", resp.status == 301 and resp.getheader("Location") == "/sub/",
              f"{resp.status} {resp.getheader('Location')}")
        c.request("GET", "/sub/")
        resp = c.getresponse()
        check("index.html", resp.status == 200 and resp.read() == b"<h1>sub</h1>\n"
              and resp.getheader("Content-Type").startswith("text/html"))
        c.request("POST", "/small.txt", body=b"abc")
        resp = c.getresponse()
        resp.read()
        check("POST 405", resp.status == 405 and resp.getheader("Allow") == "GET, HEAD", resp.status)
        c.request("GET", "/small.txt")
        resp = c.getresponse()
        check("connection still fine after 405", resp.status == 200 and resp.read() == b"hello world!")
        c.close()

        # 50 MiB byte-exact, through curl and http.client
        r = curl(f"http://127.0.0.1:{port}/big.bin")
        check("50MB curl sha256", hashlib.sha256(r.stdout).hexdigest() == big_sha, len(r.stdout))
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("GET", "/big.bin")
        resp = c.getresponse()
        h = hashlib.sha256()
        while True:
            b = resp.read(1 << 20)
            if not b:
                break
            h.update(b)
        check("50MB http.client sha256", h.hexdigest() == big_sha)
        c.request("GET", "/small.txt")
        check("keep-alive after 50MB", c.getresponse().read() == b"hello world!")
        c.close()

        # pipelining over a raw socket: answers in order
        reqs = b"".join(f"GET {p} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                        for p in ["/small.txt", "/style.css", "/missing", "/sub/", "/small.txt"])
        reqs += b"GET /style.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        out = raw(port, reqs)
        statuses = re.findall(rb"HTTP/1\.1 (\d{3})", out)
        check("pipelined statuses in order", statuses == [b"200", b"200", b"404", b"200", b"200", b"200"], statuses)
        bodies = [m for m in [b"hello world!", b"body{}\n", b"<h1>sub</h1>\n"]]
        order = [out.find(b"hello world!"), out.find(b"body{}\n"), out.find(b"<h1>sub</h1>")]
        check("pipelined bodies in order", order[0] < order[1] < order[2] and -1 not in order, order)
        # byte-at-a-time pipelining still works
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        for b in b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n":
            s.send(bytes([b]))
        got = b""
        while not got.endswith(b"hello world!"):
            got += s.recv(4096)
        check("byte-at-a-time request", got.startswith(b"HTTP/1.1 200"))
        s.close()

        # 100-continue
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        first = s.recv(4096)
        check("100 Continue", first == b"HTTP/1.1 100 Continue\r\n\r\n", first)
        s.sendall(b"abcde")
        rest = s.recv(4096)
        check("final answer after 100", rest.startswith(b"HTTP/1.1 405"), rest[:40])
        s.close()

        # chunked request body, then another request on the connection
        out = raw(port, b"POST /small.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"3\r\nabc\r\n0\r\n\r\nGET /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        check("chunked body then next request", re.findall(rb"HTTP/1\.1 (\d{3})", out) == [b"405", b"200"], out[:200])

        # HTTP/1.0: closed after the answer; 1.0 keep-alive kept
        out = raw(port, b"GET /small.txt HTTP/1.0\r\n\r\n", timeout=5)
        check("HTTP/1.0 closes", out.startswith(b"HTTP/1.1 200") and out.endswith(b"hello world!")
              and b"Connection: close" in out, out[-60:])
        out = raw(port, b"GET /small.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                        b"GET /small.txt HTTP/1.0\r\n\r\n", timeout=5)
        check("HTTP/1.0 keep-alive", out.count(b"hello world!") == 2 and b"Connection: keep-alive" in out)

        # the small-file cache sees a change within about a second
        chg = os.path.join(root, "changing.txt")
        with open(chg, "w") as f:
            f.write("one")
        r1 = curl(f"http://127.0.0.1:{port}/changing.txt").stdout
        with open(chg, "w") as f:
            f.write("two!")
        time.sleep(1.3)
        r2 = curl(f"http://127.0.0.1:{port}/changing.txt").stdout
        check("cache refreshes after a change", r1 == b"one" and r2 == b"two!", (r1, r2))
        os.unlink(chg)
        time.sleep(1.1)
        r3 = curl("-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{port}/changing.txt").stdout
        check("cache forgets a removed file", r3 == b"404", r3)

        # asterisk and absolute forms
        out = raw(port, f"GET http://127.0.0.1:{port}/small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        check("absolute-form target", out.startswith(b"HTTP/1.1 200") and out.endswith(b"hello world!"), out[:40])
    finally:
        srv.stop()

    # listing (escaped names), and HTTP/1.1 Connection: close
    srv = Server(root, "--list", "--threads", "1")
    try:
        r = curl(f"http://127.0.0.1:{srv.port}/noindex/")
        check("listing escapes names", b"&lt;b&gt;&amp;x.txt" in r.stdout and b"<b>&x" not in r.stdout, r.stdout[:400])
        check("listing href encoded", b'href="%3Cb%3E%26x.txt"' in r.stdout, r.stdout[:400])
        r = curl(f"http://127.0.0.1:{srv.port}/")
        check("root listing", b"small.txt" in r.stdout and b"secret" not in r.stdout)
    finally:
        srv.stop()

    with open(log) as f:
        lines = f.read().splitlines()
    clf = re.compile(r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET /small.txt HTTP/1\.1" 200 12$')
    check("access log in common log format", any(clf.match(x) for x in lines), lines[:3])
    check("access log has 404", any('"GET /missing HTTP/1.1" 404' in x for x in lines))

    shutil.rmtree(tmp)
    tally.finish()


if __name__ == "__main__":
    main()
