"""Shared by the deploy tests (test_proxy_protocol.py, test_systemd.py,
test_deploy_restart.py): a port nobody listens on yet, and a bounded wait
for a condition (no sleeps to synchronise: the condition is polled)."""
import os
import socket
import time

from csocktest import Proc, T, TestFailure, need, tmpdir
from tlsutil import free_port  # noqa: F401 (re-exported for the deploy tests)


HAPROXY = "/usr/sbin/haproxy"
# Clients connect from here, so that their address differs from HAProxy's
# own (127.0.0.1) in what the served side logs.
CLIENT_IP = "127.0.0.2"


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


def need_haproxy():
    if not os.access(HAPROXY, os.X_OK):
        need("haproxy")  # reports the skip


class HAProxy(Proc):
    """haproxy -db (foreground) with the config make_cfg(ports) writes for
    `nports` free ports (ports[0] is the frontend the clients use), in a
    temp dir; ready once that frontend accepts. HAProxy listens with
    SO_REUSEPORT unless told otherwise, which would let it share a port
    another test picked at the same moment: the tests' own configs say
    `noreuseport`, and a port taken meanwhile means a new pick."""

    def __init__(self, make_cfg, nports=1):
        for attempt in range(3):
            ports = free_ports(nports)
            d = tmpdir()
            self.cfg = os.path.join(d, "haproxy.cfg")
            with open(self.cfg, "w") as f:
                f.write(make_cfg(ports))
            super().__init__([HAPROXY, "-db", "-f", self.cfg])
            self.port = ports[0]
            self.ports = ports
            if wait_for(self._up, 15, "haproxy's frontend") == "up":
                return
            self.stop()
        raise TestFailure("haproxy could not bind: %r" % self.stderr()[-1500:])

    def _up(self):
        if not self.alive():
            if "cannot bind" in self.stderr() or "Address already in use" in self.stderr():
                return "retry"
            raise TestFailure("haproxy exited: %r" % self.stderr()[-1500:])
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return "up"
        except OSError:
            return None

    def client(self):
        s = socket.socket()
        s.settimeout(T(10))
        s.bind((CLIENT_IP, 0))
        s.connect(("127.0.0.1", self.port))
        return s


def tcp_cfg(front, back, option):
    """HAProxy in TCP mode: 127.0.0.1:front to one server at back with
    `option` (send-proxy, send-proxy-v2); noreuseport: see HAProxy."""
    return f"""global
    maxconn 256
    noreuseport
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend f
    bind 127.0.0.1:{front}
    default_backend b
backend b
    server s1 127.0.0.1:{back} {option}
"""
