#!/usr/bin/env python3
"""csock connect to a name: resolved off the loop (csock_dial_start), the
addresses raced (Happy Eyeballs), TLS put on the winner.

- `localhost` with the server on 127.0.0.1 only, and on [::1] only: both
  connect (the other family is refused and the race moves on), the bytes
  echo back;
- tls://localhost verified against the test CA (the name checked); a
  wrong CA fails with the reason, status 1;
- a name that does not resolve: one line, status 1;
- -s 127.0.0.1 with a name: the source is bound (the old path), the
  server sees it;
- -n with a name: refused (no lookup), status 1.
"""
import os
import socket

from csocktest import BIN, Proc, Server, Skipped, check, check_eq, main, run, tmpdir
import tlscerts


def has_ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


def localhost_names(family):
    try:
        return {ai[4][0] for ai in socket.getaddrinfo("localhost", 1, family, socket.SOCK_STREAM)}
    except socket.gaierror:
        return set()


def echo_through(args, data=b"by name\n"):
    rc, out, err = run([BIN, "connect"] + args, input=data)
    check_eq(rc, 0, "exit status (stderr %r)" % err)
    check_eq(out, data, "echo by name")
    return err


def test_localhost_ipv4_only_server():
    with Server("echo", "tcp://127.0.0.1:0") as srv:
        echo_through(["localhost", str(srv.endpoints[0].port)])
        echo_through(["tcp://localhost:%d" % srv.endpoints[0].port])


def test_localhost_ipv6_only_server():
    if not has_ipv6_loopback() or "::1" not in localhost_names(socket.AF_INET6):
        raise Skipped("localhost has no ::1 here")
    with Server("echo", "tcp://[::1]:0") as srv:
        err = echo_through(["-v", "localhost", str(srv.endpoints[0].port)])
        check("[::1]" in err, "-v names the address it reached: %r" % err)


def test_tls_name_verified():
    certs = tlscerts.make(tmpdir())
    opts = ["--cert", os.path.join(certs, "server.pem"), "--key", os.path.join(certs, "server.key")]
    srv = Proc([BIN, "serve"] + opts + ["echo", "tls://127.0.0.1:0"])
    try:
        line = srv.read_line(15)
        check(line.startswith("listening tls://127.0.0.1:"), "serve said %r" % line)
        port = int(line.rsplit(":", 1)[1])
        echo_through(["--ca", os.path.join(certs, "ca.pem"), "tls://localhost:%d" % port])
        rc, out, err = run([BIN, "connect", "--ca", os.path.join(certs, "otherca.pem"),
                            "tls://localhost:%d" % port], input=b"x\n")
        check_eq(rc, 1, "exit status with the wrong CA")
        check("certificate" in err and err.count("\n") == 1, "one line with the reason: %r" % err)
    finally:
        srv.stop()


def test_unresolvable_name():
    rc, out, err = run([BIN, "connect", "no-such-host.invalid", "80"], input=b"")
    check_eq(rc, 1, "exit status")
    check(err.count("\n") == 1 and "no-such-host.invalid" in err, "one line: %r" % err)


def test_source_with_a_name():
    with Server("echo", "tcp://127.0.0.1:0", opts=["-v"]) as srv:
        echo_through(["-s", "127.0.0.1", "localhost", str(srv.endpoints[0].port)])
        check("connection from tcp://127.0.0.1:" in srv.stderr(), "served: %r" % srv.stderr())


def test_nodns_refuses_a_name():
    rc, out, err = run([BIN, "connect", "-n", "localhost", "80"], input=b"")
    check_eq(rc, 1, "exit status (stderr %r)" % err)
    check(err.count("\n") == 1, "one line: %r" % err)


if __name__ == "__main__":
    main()
