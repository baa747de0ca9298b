#!/usr/bin/env python3
"""csock listen (and serve chat) speak systemd's whole readiness protocol
(sd_notify, to a Python Unix datagram socket as NOTIFY_SOCKET, in a temp
dir): READY=1 once listening, WATCHDOG=1 every half WATCHDOG_USEC while the
session runs, STOPPING=1 when it ends, on SIGTERM or when the one peer
leaves, and no WATCHDOG=1 when WATCHDOG_PID names another process."""
import os
import signal
import socket
import time

from csocktest import BIN, Proc, T, check, check_eq, main
from test_systemd import Notify


def pings(notify, seconds):
    """Collect datagrams for `seconds`; the count of WATCHDOG=1 among all."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        notify.s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            notify.msgs.append(notify.s.recv(4096).decode())
        except socket.timeout:
            pass
    return sum(m == "WATCHDOG=1" for m in notify.msgs)


def started(argv, notify, **env):
    """argv under NOTIFY_SOCKET (and env), once it said READY=1; its port."""
    p = Proc(["env", "NOTIFY_SOCKET=" + notify.env] + ["%s=%s" % kv for kv in env.items()] + argv)
    ready = notify.wait("READY=1", 15)
    check("MAINPID=%d" % p.pid in ready, "READY=1 names the process: %r" % ready)
    # listen -v says it on stderr, serve chat on stdout: both before READY=1.
    if "listening tcp://" not in p.stderr():
        p.read_until(lambda o: b"listening tcp://" in o and o.endswith(b"\n"), 10)
    text = p.stderr() + p.out.decode(errors="replace")
    line = [ln for ln in text.splitlines() if ln.startswith("listening tcp://")][0]
    return p, int(line.rsplit(":", 1)[1])


def test_listen_watchdog_and_stopping_on_sigterm():
    notify = Notify()
    p, port = started([BIN, "listen", "-k", "-v", "--recv-only", "tcp://127.0.0.1:0"], notify,
                      WATCHDOG_USEC="200000")
    try:
        # WATCHDOG=1 every 100 ms (half of WATCHDOG_USEC): several in 1.5 s
        # even on a loaded host, and none of them STOPPING yet.
        check(pings(notify, T(1.5)) >= 3, "watchdog pings: %r" % notify.msgs)
        check("STOPPING=1" not in notify.msgs, "STOPPING=1 before the stop: %r" % notify.msgs)
        s = socket.create_connection(("127.0.0.1", port), timeout=T(10))
        s.sendall(b"during the watch\n")
        p.read_until(lambda o: b"during the watch\n" in o, 10)
        s.close()
        rc = p.stop(signal.SIGTERM, 20)
        notify.wait("STOPPING=1")
        check_eq(rc, 0, "exit status (stderr %r)" % p.stderr()[-600:])
        check("AddressSanitizer" not in p.stderr(), p.stderr()[-2000:])
        n = pings(notify, 0.3)
        check_eq(pings(notify, T(0.5)), n, "watchdog pings after the exit")
    finally:
        p.stop(signal.SIGKILL)
        notify.close()


def test_listen_stopping_when_the_peer_leaves():
    # Without -k the session ends with its one peer: STOPPING=1, exit 0.
    notify = Notify()
    p, port = started([BIN, "listen", "-v", "--recv-only", "tcp://127.0.0.1:0"], notify)
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=T(10))
        s.sendall(b"bye\n")
        s.close()
        check_eq(p.wait(20), 0, "exit status (stderr %r)" % p.stderr()[-600:])
        notify.wait("STOPPING=1")
        check(not any(m == "WATCHDOG=1" for m in notify.msgs), "a watchdog without WATCHDOG_USEC: %r"
              % notify.msgs)
    finally:
        p.stop(signal.SIGKILL)
        notify.close()


def test_serve_chat_watchdog_not_ours():
    # WATCHDOG_PID names another process: the watchdog is not ours, no pings;
    # STOPPING=1 on SIGTERM all the same.
    notify = Notify()
    p, port = started([BIN, "serve", "chat", "tcp://127.0.0.1:0"], notify,
                      WATCHDOG_USEC="200000", WATCHDOG_PID=str(os.getpid()))
    try:
        check_eq(pings(notify, T(0.8)), 0, "watchdog pings meant for another process")
        rc = p.stop(signal.SIGTERM, 20)
        notify.wait("STOPPING=1")
        check_eq(rc, 0, "exit status (stderr %r)" % p.stderr()[-600:])
    finally:
        p.stop(signal.SIGKILL)
        notify.close()


if __name__ == "__main__":
    main()
