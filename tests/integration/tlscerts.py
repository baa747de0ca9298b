#!/usr/bin/env python3
"""Throw-away certificates for the TLS tests, made with the openssl command at
test time in a temporary directory (no key is ever committed).

    python3 tlscerts.py DIR     # writes the files below into DIR

Files (PEM): ca.pem ca.key; server.pem server.key (localhost, 127.0.0.1, ::1,
signed by ca); expired.pem expired.key (same names, not valid any more);
wronghost.pem wronghost.key (only for other.example); selfsigned.pem
selfsigned.key (localhost, 127.0.0.1, ::1, but signed by itself); client.pem
client.key (a client certificate signed by ca); otherca.pem (a CA that signed
none of these).
"""
import os
import subprocess
import sys
import tempfile

NAMES = "DNS:localhost,IP:127.0.0.1,IP:0:0:0:0:0:0:0:1"


def _run(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _key(name, d):
    _run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-out", name + ".key", cwd=d)


def _ext(d, name, text):
    path = os.path.join(d, name + ".ext")
    with open(path, "w") as f:
        f.write(text)
    return path


def _ca(d, name, cn):
    _key(name, d)
    _run("req", "-x509", "-new", "-key", name + ".key", "-out", name + ".pem",
         "-days", "30", "-subj", "/CN=" + cn,
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def _leaf(d, name, cn, san, usage, days="30", start=None, end=None, ca="ca"):
    _key(name, d)
    _run("req", "-new", "-key", name + ".key", "-out", name + ".csr",
         "-subj", "/CN=" + cn, cwd=d)
    ext = _ext(d, name, "basicConstraints=CA:FALSE\nextendedKeyUsage=%s\n%s"
               % (usage, ("subjectAltName=" + san + "\n") if san else ""))
    if start:
        # `openssl ca` can set explicit dates; `x509 -req` cannot in 3.0.
        _ca_sign(d, name, ext, start, end, ca)
    else:
        _run("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
             "-CAcreateserial", "-out", name + ".pem", "-days", days, "-extfile", ext, cwd=d)


def _ca_sign(d, name, ext, start, end, ca):
    db = os.path.join(d, "ca.db")
    open(db, "a").close()
    conf = _ext(d, "ca-" + name, """[ca]
default_ca = tca
[tca]
database = %s
new_certs_dir = %s
serial = %s
default_md = sha256
policy = anything
copy_extensions = none
[anything]
commonName = supplied
""" % (db, d, os.path.join(d, "ca.serial")))
    serial = os.path.join(d, "ca.serial")
    if not os.path.exists(serial):
        with open(serial, "w") as f:
            f.write("1000\n")
    _run("ca", "-batch", "-config", conf, "-cert", ca + ".pem", "-keyfile", ca + ".key",
         "-in", name + ".csr", "-out", name + ".pem", "-startdate", start, "-enddate", end,
         "-extfile", ext, "-notext", cwd=d)


def make(d):
    """Create every file in directory d; returns d."""
    _ca(d, "ca", "csock test CA")
    _ca(d, "otherca", "csock other CA")
    _leaf(d, "server", "localhost", NAMES, "serverAuth")
    _leaf(d, "expired", "localhost", NAMES, "serverAuth",
          start="20200101000000Z", end="20200201000000Z")
    _leaf(d, "wronghost", "other.example", "DNS:other.example", "serverAuth")
    _leaf(d, "client", "csock test client", None, "clientAuth")
    _key("selfsigned", d)
    _run("req", "-x509", "-new", "-key", "selfsigned.key", "-out", "selfsigned.pem",
         "-days", "30", "-subj", "/CN=localhost", "-addext", "subjectAltName=" + NAMES, cwd=d)
    return d


def tempdir():
    """A fresh temporary directory with every file; the caller removes it."""
    return make(tempfile.mkdtemp(prefix="csock-tls-"))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: tlscerts.py DIR")
    os.makedirs(sys.argv[1], exist_ok=True)
    make(sys.argv[1])
