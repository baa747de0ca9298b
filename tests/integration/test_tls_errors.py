#!/usr/bin/env python3
"""TLS errors people can act on, as the csock CLI prints them: a certificate
without its key, a key that does not match, a missing file; a tls:// client
meeting a plain server (a greeting, an echo); a plain client meeting a TLS
server. The words come from the library (csock_tls_ctx_new's err buffer and
csock_tls_last_error), not OpenSSL's "PEM lib" or "wrong version number"."""
import os
import shutil
import socket
import subprocess
import sys

if not shutil.which("openssl"):
    print("skipped: the openssl command (for the test certificates) is missing")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tlsutil import CSOCK, Suite, run  # noqa: E402

S = Suite()


def serve_fails(args, want):
    r = run([CSOCK, "serve", "upper", "tls://127.0.0.1:0", *args], timeout=10)
    err = r.stderr.decode()
    assert r.returncode != 0 and want in err, (r.returncode, err, want)
    assert "PEM lib" not in err and len(err.strip().splitlines()) == 1, err


def cert_without_key():
    crt = S.cert("server.pem")
    serve_fails(["--cert", crt], "no private key in %s; pass --key" % crt)


def key_mismatch():
    serve_fails(["--cert", S.cert("server.pem"), "--key", S.cert("client.key")],
                "key %s does not match certificate %s" % (S.cert("client.key"), S.cert("server.pem")))


def missing_cert():
    path = S.cert("missing.pem")
    serve_fails(["--cert", path, "--key", S.cert("server.key")],
                "certificate %s: No such file or directory" % path)


S.check("serve --cert without a key: no private key; pass --key", cert_without_key)
S.check("serve with a key of another certificate", key_mismatch)
S.check("serve with a missing certificate file", missing_cert)


def plain_listener(greeting):
    """csock listen (plain TCP) that sends `greeting` to its peer."""
    p = S.spawn([CSOCK, "listen", "tcp://127.0.0.1:0"], stdin=subprocess.PIPE)
    line = p.stderr.readline().decode()  # listen says it on stderr (stdout is the peer's)
    assert line.startswith("listening "), line
    if greeting:
        p.stdin.write(greeting)
        p.stdin.flush()
    return p, int(line.rsplit(":", 1)[1])


def connect_fails(args, want):
    r = run([CSOCK, "connect", "--insecure", *args], b"", timeout=20)
    err = r.stderr.decode()
    assert r.returncode == 1 and want in err, (r.returncode, err, want)
    for openssl_word in ("wrong version number", "packet length too long", "unexpected message"):
        assert openssl_word not in err, err


def tls_url_to_plain_listen():
    p, port = plain_listener(b"hello there\n")
    connect_fails(["tls://127.0.0.1:%d" % port],
                  'the peer did not speak TLS (it sent "hello there\\n")')


def ssl_to_plain_listen():
    p, port = plain_listener(b"220 smtp ready\r\n")
    connect_fails(["--ssl", "127.0.0.1", str(port)],
                  'the peer did not speak TLS (it sent "220 smtp ready\\r\\n")')


def tls_url_to_plain_echo():
    p, port = S.serve(tls=False, addr="tcp://127.0.0.1:0")
    connect_fails(["tls://127.0.0.1:%d" % port],
                  "the peer did not speak TLS: it sent our ClientHello back")


S.check("connect tls:// to csock listen (plain): peer did not speak TLS", tls_url_to_plain_listen)
S.check("connect --ssl to csock listen (plain): peer did not speak TLS", ssl_to_plain_listen)
S.check("connect tls:// to a plain echo: our ClientHello came back", tls_url_to_plain_echo)


def plain_http_to_tls_serve():
    p, port = S.serve("-v", service="upper")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        while s.recv(4096):  # the server closes: its log line is written by then
            pass
    p.terminate()
    err = p.communicate(timeout=10)[1].decode()
    assert "the client spoke plain HTTP, not TLS" in err, err
    assert "http request" not in err, err


S.check("plain HTTP to serve tls:// -v: the client spoke plain HTTP", plain_http_to_tls_serve)
S.finish()
