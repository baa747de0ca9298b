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
    line = wait_for(lambda: [ln for ln in p.stderr().splitlines() if ln.startswith("listening ")],
                    10, "the listening line")[0]
    port = int(line.rsplit(":", 1)[1])
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
        line = wait_for(lambda: [ln for ln in p.stderr().splitlines()
                                 if ln.startswith("listening ")], 10, "the listening line")[0]
        port = int(line.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=T(10)) as c:
            c.sendall(b"bye\n")
        deadline = time.monotonic() + T(10)
        while p.p.poll() is None and time.monotonic() < deadline:
            try:
                os.kill(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                break
            time.sleep(0.0002)
        rc = p.stop(signal.SIGKILL, 10)
        err = p.stderr()
        check_eq(rc, 0, "round %d: exit status under SIGTERMs (stderr %r)" % (i, err[-500:]))
        check_clean(err, "round %d" % i)


if __name__ == "__main__":
    main()
