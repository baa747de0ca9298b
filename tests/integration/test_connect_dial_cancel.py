#!/usr/bin/env python3
"""A connect session that ends while its dial is still under way cancels
the dial: `csock connect tcp://localhost:PORT` to a listener whose accept
queue is full (the kernel drops the SYNs, so the connect hangs), then
SIGINT. The process exits 0 at once, instead of waiting out the kernel's
connect timeout (minutes), with no error line and, under ASan, no
callback into the freed session."""
import signal
import socket
import time

from csocktest import BIN, FullListener, Proc, T, check, check_eq, main


def test_sigint_mid_dial_exits_at_once():
    with FullListener() as full:
        sigint_mid_dial(full)


def sigint_mid_dial(full):
    port = full.port
    before = full.syn_sent()  # the fillers beyond the backlog wait too
    # -4: localhost's IPv4 address only, so no ::1 attempt fails fast.
    p = Proc([BIN, "connect", "-4", "-v", "tcp://localhost:%d" % port])
    try:
        # The name is resolved on a thread and the connect started: wait
        # for the kernel to hold its SYN (a socket in SYN-SENT to the port).
        deadline = time.monotonic() + T(10)
        while time.monotonic() < deadline and full.syn_sent() <= before:
            time.sleep(0.02)
        check(full.syn_sent() > before, "no connect under way to port %d" % port)
        check(p.alive(), "connect ended before the signal: %r" % p.stderr()[-500:])
        t0 = time.monotonic()
        rc = p.stop(signal.SIGINT, 20)
        took = time.monotonic() - t0
        check_eq(rc, 0, "exit status (stderr %r)" % p.stderr()[-800:])
        check(took < T(5), "SIGINT mid-dial took %.1f s" % took)
        check("connect tcp://localhost" not in p.stderr(), "an error line after SIGINT: %r" % p.stderr())
        check("AddressSanitizer" not in p.stderr(), p.stderr()[-2000:])
    finally:
        p.stop(signal.SIGKILL)


if __name__ == "__main__":
    main()
