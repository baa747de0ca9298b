"""Shared by the deploy tests (test_proxy_protocol.py, test_systemd.py,
test_deploy_restart.py): a port nobody listens on yet, and a bounded wait
for a condition (no sleeps to synchronise: the condition is polled)."""
import time

from csocktest import T, TestFailure
from tlsutil import free_port  # noqa: F401 (re-exported for the deploy tests)


def wait_for(pred, timeout, what):
    """pred()'s first true value within timeout (scaled), else a failure."""
    deadline = time.monotonic() + T(timeout)
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise TestFailure("timed out waiting for " + what)
