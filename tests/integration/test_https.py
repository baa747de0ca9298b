#!/usr/bin/env python3
"""https: `csock serve http DIR tls://...` against curl and Python's ssl +
http.client, with the test suite's own throw-away CA."""
import hashlib
import http.client
import os
import ssl
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tlsutil import Suite  # noqa: E402

S = Suite()
www = tempfile.mkdtemp(prefix="csock-https-")
with open(os.path.join(www, "index.html"), "w") as f:
    f.write("<h1>hello over TLS</h1>\n")
big = os.urandom(3 * 1024 * 1024 + 17)
with open(os.path.join(www, "big.bin"), "wb") as f:
    f.write(big)
mid = os.urandom(100 * 1024)  # a snapshot's size (up to 256 KiB): head and body in one memfd
with open(os.path.join(www, "mid.bin"), "wb") as f:
    f.write(mid)

def serve_https():
    p = S.spawn([os.environ.get("CSOCK_BIN", "build/csock"), "serve", "http", www,
                 "tls://127.0.0.1:0", "--cert", S.cert("server.pem"), "--key", S.cert("server.key")])
    line = p.stdout.readline().decode()
    assert line.startswith("listening tls://"), line
    return p, int(line.rsplit(":", 1)[1])


srv, PORT = serve_https()


def curl_cmd(*args):
    return ["curl", "-sS", "--max-time", "20", "--cacert", S.cert("ca.pem"), *args]


def curl(*args):
    return subprocess.run(curl_cmd(*args), capture_output=True, timeout=30)


def curl_get():
    r = curl("https://localhost:%d/" % PORT)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"<h1>hello over TLS</h1>\n", r.stdout


def curl_keepalive():
    url = "https://localhost:%d/index.html" % PORT
    r = curl("-v", url, url, url)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count(b"Re-using existing connection") + r.stderr.count(b"Reusing existing connection") >= 2, r.stderr[-600:]


def curl_big_file():
    r = curl("https://localhost:%d/big.bin" % PORT)
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(r.stdout).hexdigest() == hashlib.sha256(big).hexdigest(), len(r.stdout)


def curl_big_file_twice_at_once():
    """Two fetches at once of a file the cache holds by descriptor: on one
    loop both answers read it (by offset) from that loop's one shared
    descriptor; either way both arrive byte-exact."""
    url = "https://localhost:%d/big.bin" % PORT
    ps = [subprocess.Popen(curl_cmd(url), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
          for _ in range(2)]
    outs = [p.communicate(timeout=30) for p in ps]
    want = hashlib.sha256(big).hexdigest()
    for p, (out, err) in zip(ps, outs):
        assert p.returncode == 0, err
        assert hashlib.sha256(out).hexdigest() == want, len(out)


def curl_snapshot_four_times():
    """A 100 KB file four times on one connection: the first fills the
    cache, the second makes the snapshot, the others go from it (the head
    in the file, sealed with the body): each whole, each with its head."""
    url = "https://localhost:%d/mid.bin" % PORT
    r = curl("-i", url, url, url, url)
    assert r.returncode == 0, r.stderr
    answers = r.stdout.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert len(answers) == 4, len(answers)
    for a in answers:
        head, _, body = a.partition(b"\r\n\r\n")
        assert b"Content-Length: %d" % len(mid) in head and body == mid, (head, len(body))


def curl_range():
    r = curl("-r", "100-199", "https://localhost:%d/big.bin" % PORT)
    assert r.returncode == 0 and r.stdout == big[100:200], (r.returncode, len(r.stdout))


def curl_refuses_wrong_name():
    # The certificate names localhost and 127.0.0.1, not this name.
    r = curl("--resolve", "wrong.example:%d:127.0.0.1" % PORT, "https://wrong.example:%d/" % PORT)
    assert r.returncode != 0


def python_http_client():
    ctx = ssl.create_default_context(cafile=S.cert("ca.pem"))
    c = http.client.HTTPSConnection("localhost", PORT, context=ctx, timeout=20)
    for _ in range(3):
        c.request("GET", "/index.html")
        resp = c.getresponse()
        assert resp.status == 200 and resp.read() == b"<h1>hello over TLS</h1>\n"
    c.request("HEAD", "/big.bin")
    resp = c.getresponse()
    resp.read()
    assert resp.status == 200 and int(resp.getheader("Content-Length")) == len(big)
    c.close()


def plaintext_on_https_port():
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "http://127.0.0.1:%d/" % PORT],
                       capture_output=True, timeout=20)
    assert r.returncode != 0 and b"hello" not in r.stdout
    curl_get()  # and the server still serves


S.check("curl GET over https", curl_get)
S.check("curl keeps the TLS connection alive", curl_keepalive)
S.check("curl: 3 MiB file byte-exact (sha256)", curl_big_file)
S.check("curl: the cached file twice at once, byte-exact", curl_big_file_twice_at_once)
S.check("curl: a 100 KB file four times (its snapshot), byte-exact", curl_snapshot_four_times)
S.check("curl: byte range over TLS", curl_range)
S.check("curl refuses a certificate for another name", curl_refuses_wrong_name)
S.check("http.client over ssl: keep-alive, HEAD", python_http_client)
S.check("plaintext HTTP on the https port fails, server keeps serving", plaintext_on_https_port)
import shutil  # noqa: E402
shutil.rmtree(www, ignore_errors=True)
sys.exit(S.finish())
