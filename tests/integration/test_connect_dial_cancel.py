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

from csocktest import BIN, Proc, T, check, check_eq, main


def full_listener():
    """A listener with backlog 0 whose queue is already full: further SYNs
    are dropped, and a connect to it hangs."""
    l = socket.socket()
    l.bind(("127.0.0.1", 0))
    l.listen(0)
    port = l.getsockname()[1]
    fill = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fill.append(s)
    return l, fill, port


def test_sigint_mid_dial_exits_at_once():
    l, fill, port = full_listener()
    before = syn_sent(port)  # the fillers beyond the backlog wait too
    # -4: localhost's IPv4 address only, so no ::1 attempt fails fast.
    p = Proc([BIN, "connect", "-4", "-v", "tcp://localhost:%d" % port])
    try:
        # The name is resolved on a thread and the connect started: wait
        # for the kernel to hold its SYN (a socket in SYN-SENT to the port).
        deadline = time.monotonic() + T(10)
        while time.monotonic() < deadline and syn_sent(port) <= before:
            time.sleep(0.02)
        check(syn_sent(port) > before, "no connect under way to port %d" % port)
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
        for s in fill:
            s.close()
        l.close()


def syn_sent(port):
    """How many sockets are in SYN-SENT (state 02) towards 127.0.0.1:port
    (/proc/net/tcp)."""
    want = ":%04X" % port
    with open("/proc/net/tcp") as f:
        return sum(1 for line in f.readlines()[1:]
                   if line.split()[2].endswith(want) and line.split()[3] == "02")


if __name__ == "__main__":
    main()
