#!/usr/bin/env python3
"""csock serve http against RFC 9110 where it differed from nginx and lighttpd:

- Range (section 14): an invalid range-spec ("5-2") is 416, as nginx and
  lighttpd answer (14.2 lets a server reject an invalid ranges-specifier);
  several ranges are one 206 multipart/byteranges (14.6), overlapping or
  touching ones coalesced (15.3.7.2), parts in the order asked; more than
  32 range-specs are ignored (200, whole file); Range on HEAD is ignored.
- the 301 from "/dir" to "/dir/" keeps the query string;
- If-Match (13.1.1) and If-Unmodified-Since (13.1.4) answer 412 when they
  fail, evaluated in the order of 13.2.2 (If-Match before If-None-Match, an
  If-Unmodified-Since is ignored beside an If-Match or when its date is
  invalid: there nginx answers 412, the RFC says ignore).

Through http.client (which trusts Content-Length, so a wrong length breaks
the next request on the same connection), curl and raw sockets. Prints
"N passed, M failed"; exits non-zero on any failure or sanitizer report."""
import hashlib
import http.client
import os
import re
import shutil
import subprocess
import tempfile

import httpkit

tally = httpkit.Tally()
check = tally.check


def parts_of(resp, body):
    """The parts of a multipart/byteranges body: [(content-range, data)]."""
    m = re.match(r"multipart/byteranges; boundary=(\S+)$", resp.getheader("Content-Type") or "")
    if not m:
        return None
    delim = b"\r\n--" + m.group(1).encode()
    if not body.startswith(delim) or not body.endswith(delim + b"--\r\n"):
        return None
    out = []
    for chunk in body[len(delim):-len(delim + b"--\r\n")].split(delim):
        head, _, data = chunk.partition(b"\r\n\r\n")
        cr = re.search(rb"Content-Range: bytes (\d+)-(\d+)/(\d+)", head)
        out.append(((int(cr.group(1)), int(cr.group(2))) if cr else None, data))
    return out


def get(c, path, headers=None, method="GET"):
    c.request(method, path, headers=headers or {})
    resp = c.getresponse()
    return resp, resp.read()


def ranges(c, path, data):
    """Several ranges, through the cache (small) or sendfile (big)."""
    size = len(data)
    for rng, want in [("bytes=0-1,4-5", [(0, 1), (4, 5)]),
                      ("bytes=10-11,0-1", [(10, 11), (0, 1)]),            # the order asked
                      ("bytes=0-1, 5-6 ,-2", [(0, 1), (5, 6), (size - 2, size - 1)]),
                      ("bytes=0-1,2-3,8-9", [(0, 3), (8, 9)]),             # touching: coalesced
                      ("bytes=8-9,0-5,3-8", [(0, 9)]),                     # overlapping: one range
                      ("bytes=0-0,0-0,0-0", [(0, 0)]),
                      (f"bytes={size * 4}-,0-1", [(0, 1)]),                # unsatisfiable one dropped
                      (",bytes=0-1", None)]:                               # not the bytes unit: ignored
        resp, body = get(c, path, {"Range": rng})
        if want is None:
            check(f"{path} {rng}: 200", resp.status == 200 and body == data, resp.status)
            continue
        if len(want) == 1:
            a, b = want[0]
            check(f"{path} {rng}: one 206", resp.status == 206 and body == data[a:b + 1]
                  and resp.getheader("Content-Range") == f"bytes {a}-{b}/{size}",
                  f"{resp.status} {resp.getheader('Content-Range')} {body[:40]!r}")
            continue
        parts = parts_of(resp, body)
        got = [p[0] for p in parts] if parts else None
        ok = resp.status == 206 and got == want and all(d == data[a:b + 1] for (a, b), d in parts)
        check(f"{path} {rng}: multipart", ok, f"{resp.status} {got} {body[:200]!r}")
        check(f"{path} {rng}: Content-Length", resp.getheader("Content-Length") == str(len(body)))
    if size < 64:
        return
    # 32 specs are served, 33 are ignored
    specs = ",".join(f"{2 * i}-{2 * i}" for i in range(33))
    resp, body = get(c, path, {"Range": "bytes=" + specs.rsplit(",", 1)[0]})
    parts = parts_of(resp, body)
    check(f"{path} 32 ranges", resp.status == 206 and parts and len(parts) == 32
          and all(d == data[2 * i:2 * i + 1] for i, (_, d) in enumerate(parts)), resp.status)
    resp, body = get(c, path, {"Range": "bytes=" + specs})
    check(f"{path} 33 ranges: ignored", resp.status == 200 and body == data, resp.status)


def invalid_ranges(c, size):
    for rng in ["bytes=5-2", "bytes=0-1,5-2", "bytes=x", "bytes=", "bytes=1-2-3", f"bytes={size}-",
                "bytes=-0", f"bytes={size}-{size + 5},{size + 9}-"]:
        resp, body = get(c, "/small.txt", {"Range": rng})
        check(f"{rng}: 416", resp.status == 416 and resp.getheader("Content-Range") == f"bytes */{size}",
              f"{resp.status} {resp.getheader('Content-Range')}")
    resp, body = get(c, "/small.txt", {"Range": "bytes=0-1"}, method="HEAD")
    check("HEAD ignores Range", resp.status == 200 and resp.getheader("Content-Length") == str(size)
          and body == b"", resp.status)
    resp, body = get(c, "/small.txt", {"Range": "bytes=0-1,4-5", "If-Range": '"stale"'})
    check("If-Range mismatch: whole file", resp.status == 200 and len(body) == size)


def redirects(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for target, loc in [("/sub?x=1&y=%20z", "/sub/?x=1&y=%20z"), ("/sub", "/sub/"), ("/sub?", "/sub/"),
                        ("/sub/deeper?q", "/sub/deeper/?q")]:
        resp, _ = get(c, target)
        check(f"301 {target}", resp.status == 301 and resp.getheader("Location") == loc,
              f"{resp.status} {resp.getheader('Location')}")
    r = subprocess.run(["curl", "-s", "-L", "--max-time", "10", f"http://127.0.0.1:{port}/sub?a=b"],
                       capture_output=True, timeout=30)
    check("curl -L follows the 301 with the query", r.stdout == b"<h1>sub</h1>\n", r.stdout[:100])


def preconditions(c, etag, lm):
    old, future = "Sun, 06 Nov 1994 08:49:37 GMT", "Fri, 01 Jan 2100 00:00:00 GMT"
    cases = [
        ({"If-Match": '"nope"'}, 412),
        ({"If-Match": etag}, 200),
        ({"If-Match": '"a", ' + etag}, 200),
        ({"If-Match": "*"}, 200),
        ({"If-Match": "W/" + etag}, 412),                           # strong comparison
        ({"If-Unmodified-Since": old}, 412),
        ({"If-Unmodified-Since": lm}, 200),
        ({"If-Unmodified-Since": future}, 200),
        ({"If-Unmodified-Since": "garbage"}, 200),                  # invalid date: ignored
        ({"If-Unmodified-Since": "Sunday, 06-Nov-94 08:49:37 GMT"}, 412),
        ({"If-Unmodified-Since": "Sun Nov  6 08:49:37 1994"}, 412),
        ({"If-Match": etag, "If-Unmodified-Since": old}, 200),      # ignored beside If-Match
        ({"If-Match": '"nope"', "If-None-Match": etag}, 412),       # If-Match first
        ({"If-Unmodified-Since": old, "If-None-Match": etag}, 412),
        ({"If-Match": etag, "If-None-Match": etag}, 304),
        ({"If-Match": etag, "If-None-Match": '"x"'}, 200),
        ({"If-Unmodified-Since": future, "If-Modified-Since": future}, 304),
        ({"If-Modified-Since": "Sun Nov  6 08:49:37 2099"}, 304),   # asctime date
        ({"If-Match": '"nope"', "Range": "bytes=0-1"}, 412),
    ]
    for headers, st in cases:
        resp, body = get(c, "/small.txt", headers)
        check(f"{headers} -> {st}", resp.status == st, resp.status)
        if st == 412:
            check(f"{headers} 412 body", body == b"412 Precondition Failed\n", body)
    resp, body = get(c, "/small.txt", {"If-Match": '"nope"'}, method="HEAD")
    check("HEAD If-Match -> 412", resp.status == 412 and body == b"", resp.status)


def raw_multipart_keepalive(port, big_data):
    """Two requests in one write: the multipart answer (file pieces sent with
    sendfile between the parts' heads) is exactly as long as it says, so the
    second answer follows intact."""
    req = (b"GET /big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9,500000-500009\r\n\r\n"
           b"GET /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    out, closed = httpkit.exchange(port, req, timeout=10)
    head, _, rest = out.partition(b"\r\n\r\n")
    m = re.search(rb"Content-Length: (\d+)", head)
    n = int(m.group(1)) if m else -1
    second = rest[n:] if n >= 0 else b""
    check("raw multipart then next answer", head.startswith(b"HTTP/1.1 206") and closed
          and second.startswith(b"HTTP/1.1 200") and second.endswith(b"\r\n\r\nhello world!"),
          out[:300])
    check("raw multipart pieces", big_data[0:10] in rest[:n] and big_data[500000:500010] in rest[:n])


def main():
    if not shutil.which("curl"):
        print("skipped: curl not found")
        return
    tmp = tempfile.mkdtemp(prefix="csock-ranges-")
    root = os.path.join(tmp, "www")
    os.makedirs(os.path.join(root, "sub", "deeper"))
    small = b"hello world!"
    with open(os.path.join(root, "small.txt"), "wb") as f:
        f.write(small)
    with open(os.path.join(root, "sub", "index.html"), "w") as f:
        f.write("<h1>sub</h1>\n")
    big_data = hashlib.sha256(b"r").digest() * (1 << 15)  # 1 MiB: sent with sendfile
    with open(os.path.join(root, "big.bin"), "wb") as f:
        f.write(big_data)
    srv = httpkit.Server(root, "--threads", "1", check=check)
    try:
        c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        resp, _ = get(c, "/small.txt")
        etag, lm = resp.getheader("ETag"), resp.getheader("Last-Modified")
        ranges(c, "/small.txt", small)
        ranges(c, "/big.bin", big_data)
        invalid_ranges(c, len(small))
        preconditions(c, etag, lm)
        sock = c.sock
        resp, body = get(c, "/small.txt")
        check("one connection throughout", c.sock is sock and body == small)
        redirects(srv.port)
        raw_multipart_keepalive(srv.port, big_data)
        r = subprocess.run(["curl", "-s", "-r", "0-1,4-5", "--max-time", "10",
                            f"http://127.0.0.1:{srv.port}/small.txt"], capture_output=True, timeout=30)
        check("curl -r multipart", b"Content-Range: bytes 0-1/12\r\n\r\nhe\r\n" in r.stdout
              and b"Content-Range: bytes 4-5/12\r\n\r\no \r\n" in r.stdout, r.stdout[:300])
    finally:
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    tally.finish()


if __name__ == "__main__":
    main()
