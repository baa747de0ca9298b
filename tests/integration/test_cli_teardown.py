#!/usr/bin/env python3
"""csock connect and listen end exactly: on SIGTERM every handle they made
is closed and the loop is run until the closes finish (no fixed number of
spins, no loop left behind: a sanitized build reports a leaked loop), also
when a connect is still in flight or a TLS handshake has not begun. Each
must exit promptly with status 0 and a clean stderr, also when SIGTERM
keeps coming while it ends on its own."""

import os
import signal
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from csocktest import BIN, FullListener, Proc, T, check, check_clean, check_eq, have, main, wait_for  # noqa: E402


def stop_promptly(p, what):
    t0 = time.monotonic()
    rc = p.stop(signal.SIGTERM, 20)
    took = time.monotonic() - t0
    err = p.stderr()
    check_clean(err, what)
    check_eq(rc, 0, "%s: exit status after SIGTERM (stderr %r)" % (what, err[-500:]))
    check(took < T(5), "%s: took %.1f s to exit after SIGTERM" % (what, took))


def sigterm_until_exit(p):
    """SIGTERM every 0.2 ms until p has exited (bounded); its status."""
    deadline = time.monotonic() + T(10)
    while p.p.poll() is None and time.monotonic() < deadline:
        try:
            os.kill(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            break
        time.sleep(0.0002)
    return p.stop(signal.SIGKILL, 10)


def listening_port(p):
    """The port of the `listening` line (servers print it on stdout, the
    netcat modes on stderr)."""
    def found():
        chunk = p.p.stdout.read(65536)     # non-blocking: None when empty
        if chunk:
            p.out += chunk
        text = p.out.decode("utf-8", "replace") + "\n" + p.stderr()
        return [ln for ln in text.splitlines() if ln.startswith("listening ")]
    return int(wait_for(found, 10, "the listening line")[0].rsplit(":", 1)[1])


def test_connect_in_flight_then_sigterm():
    """A listener whose backlog is full drops SYNs: the connect hangs (no
    -w). SIGTERM then: the connecting stream is closed too."""
    with FullListener() as full:
        before = full.syn_sent()
        p = Proc([BIN, "connect", "127.0.0.1", str(full.port)])
        # Its SYN_SENT socket exists once the signal watchers are in place.
        wait_for(lambda: full.syn_sent() > before, 10, "csock's connect in flight")
        stop_promptly(p, "csock connect")


def test_listen_tls_handshake_pending_then_sigterm():
    """listen -k tls://: a client that connected but never sent its
    ClientHello (handshake timeout 60 s) is closed by teardown."""
    if not have("openssl"):
        print("  skipped: openssl not installed", flush=True)
        return
    import tlscerts
    d = tlscerts.tempdir()
    p = Proc([BIN, "listen", "-k", "--recv-only", "--handshake-timeout", "60",
              "--cert", os.path.join(d, "server.pem"), "--key", os.path.join(d, "server.key"),
              "tls://127.0.0.1:0"])
    port = listening_port(p)
    silent = socket.create_connection(("127.0.0.1", port), timeout=T(10))
    # Accepts are in order: once a later client's line arrives, the silent
    # one has been accepted and sits in its handshake.
    q = Proc([BIN, "connect", "--ca", os.path.join(d, "ca.pem"), "tls://localhost:%d" % port])
    try:
        q.write(b"over tls\n")
        p.read_until(lambda out: b"over tls\n" in out, 10)
        stop_promptly(p, "csock listen")
    finally:
        q.stop()
        silent.close()


def test_listen_ending_under_sigterms():
    """The peer leaves, so csock listen ends by itself, while SIGTERM comes
    every 0.2 ms until it has exited. Every signal either stops it (status
    0, as --help says) or comes once the session is ending and is ignored:
    none may find the default action back and kill it in the teardown
    (the allocation sweep caught that once, on io_uring)."""
    for i in range(25):
        p = Proc([BIN, "listen", "tcp://127.0.0.1:0"])
        with socket.create_connection(("127.0.0.1", listening_port(p)), timeout=T(10)) as c:
            c.sendall(b"bye\n")
        rc = sigterm_until_exit(p)
        err = p.stderr()
        check_eq(rc, 0, "round %d: exit status under SIGTERMs (stderr %r)" % (i, err[-500:]))
        check_clean(err, "round %d" % i)


def test_servers_under_sigterms():
    """serve (echo and http), proxy and listen --proxy-type under a stream
    of SIGTERMs: the first drains, the second closes everything, and the
    rest, coming while the command ends, are ignored: status 0 each time
    (--help: "0 after a signal-driven stop"), never killed by one."""
    d = tempfile.mkdtemp(prefix="csockterm")
    try:
        cmds = [[BIN, "serve", "echo", "tcp://127.0.0.1:0"],
                [BIN, "serve", "http", d, "tcp://127.0.0.1:0"],
                [BIN, "proxy", "tcp://127.0.0.1:0", "--to", "tcp://127.0.0.1:9"],
                [BIN, "listen", "--proxy-type", "socks5", "tcp://127.0.0.1:0"]]
        for argv in cmds:
            for i in range(8):
                p = Proc(argv)
                listening_port(p)
                rc = sigterm_until_exit(p)
                err = p.stderr()
                check_eq(rc, 0, "%s round %d: exit status under SIGTERMs (stderr %r)"
                         % (" ".join(argv[1:3]), i, err[-500:]))
    finally:
        os.rmdir(d)

if __name__ == "__main__":
    main()
