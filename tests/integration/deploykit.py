"""Shared by the deploy tests (test_proxy_protocol.py, test_systemd.py,
test_deploy_restart.py): a port nobody listens on yet, and a bounded wait
for a condition (no sleeps to synchronise: the condition is polled)."""
import socket
import time

from csocktest import T, TestFailure
from tlsutil import free_port  # noqa: F401 (re-exported for the deploy tests)


def free_ports(n):
    """n distinct loopback ports free right now: each probe stays bound
    until all are chosen (two free_port() calls may return the same one)."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_for(pred, timeout, what):
    """pred()'s first true value within timeout (scaled), else a failure."""
    deadline = time.monotonic() + T(timeout)
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise TestFailure("timed out waiting for " + what)
