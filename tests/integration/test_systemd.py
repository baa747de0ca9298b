#!/usr/bin/env python3
"""csock serve under systemd's protocols, without systemd itself:
socket activation (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES) through
systemd-socket-activate and through a plain inherited fd (fd:N), and
sd_notify's datagrams (READY=1, WATCHDOG=1, STOPPING=1) to a Python Unix
datagram socket standing in for NOTIFY_SOCKET, by path and in the abstract
namespace. docs/deploy/csock.socket and csock.service are parsed and run
(ListenStream=, FileDescriptorName=, ExecStart=) with the port, the binary
and the directory substituted."""
import os
import re
import shlex
import signal
import socket
import subprocess
import tempfile
import time

from deploykit import free_port, wait_for
from csocktest import (recv_all, BIN, REPO, Proc, T, TestFailure, check, check_eq, csock, main, need,
                       tmpdir)

ACTIVATE = "systemd-socket-activate"
UNITS = os.path.join(REPO, "docs", "deploy")


class Notify:
    """A Unix datagram socket to play systemd's NOTIFY_SOCKET."""

    def __init__(self, abstract=False):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = "csock-test-notify-%d-%d" % (os.getpid(), time.monotonic_ns())
            self.s.bind("\0" + name)
            self.env = "@" + name
        else:
            self.env = os.path.join(tmpdir(), "notify")
            self.s.bind(self.env)
        self.msgs = []

    def wait(self, what, timeout=10):
        """Wait for a datagram holding the line `what`; returns it."""
        deadline = time.monotonic() + T(timeout)
        while True:
            for m in self.msgs:
                if what in m.split("\n"):
                    return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise TestFailure("no %r on NOTIFY_SOCKET; got %r" % (what, self.msgs))
            self.s.settimeout(left)
            try:
                self.msgs.append(self.s.recv(4096).decode())
            except socket.timeout:
                pass

    def close(self):
        self.s.close()


def try_connect(port):
    """A connection to 127.0.0.1:port, or None while nothing listens."""
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=T(10))
    except OSError:
        return None


def unit_values(name, key):
    vals = []
    with open(os.path.join(UNITS, name)) as f:
        for line in f:
            line = line.strip()
            if line.startswith(key + "="):
                vals.append(line[len(key) + 1:])
    return vals


def activate_argv(port, fdname, env, command):
    argv = [ACTIVATE, "-l", "127.0.0.1:%d" % port, "--fdname=" + fdname]
    for k, v in env.items():
        argv += ["-E", "%s=%s" % (k, v)]
    return argv + command


def sanitizer_env():
    return {k: os.environ[k] for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "CSOCK_BACKEND") if k in os.environ}


def stop_activated(p, notify):
    """SIGTERM (systemd's stop) to systemd-socket-activate's child:
    STOPPING=1, then a clean exit. The activator passes the signal on to
    its child and exits with it."""
    rc = p.stop(signal.SIGTERM, 20)
    notify.wait("STOPPING=1")
    check(rc == 0 or rc == -signal.SIGTERM, "exit status %r (stderr %r)" % (rc, p.stderr()[-800:]))
    check("ERROR: AddressSanitizer" not in p.stderr(), "sanitizer: %r" % p.stderr()[-2000:])


def test_units_through_socket_activate():
    need(ACTIVATE)
    listen = unit_values("csock.socket", "ListenStream")
    fdname = unit_values("csock.socket", "FileDescriptorName")
    execs = unit_values("csock.service", "ExecStart")
    check_eq(len(listen), 1, "ListenStream= lines")
    check_eq(listen[0], "127.0.0.1:8080", "ListenStream=")
    check_eq(len(execs), 1, "ExecStart= lines")
    cmd = shlex.split(execs[0])
    check_eq(cmd[0], "/usr/local/bin/csock", "ExecStart's binary")
    check("systemd:" + fdname[0] in cmd, "ExecStart does not ask for systemd:%s: %r" % (fdname[0], cmd))
    d = tmpdir()
    www = os.path.join(d, "www")
    os.mkdir(www)
    with open(os.path.join(www, "index.html"), "w") as f:
        f.write("activated\n")
    cmd = [BIN if a == "/usr/local/bin/csock" else www if a == "/srv/www" else a for a in cmd]
    port = free_port()
    notify = Notify()
    env = dict(sanitizer_env(), NOTIFY_SOCKET=notify.env, WATCHDOG_USEC="200000")
    p = Proc(activate_argv(port, fdname[0], env, cmd))
    try:
        # systemd-socket-activate starts csock on the first connection, which
        # waits in the socket's queue meanwhile and is then served.
        s = wait_for(lambda: try_connect(port), 10, "systemd-socket-activate to listen")
        s.sendall(b"PROXY TCP4 192.0.2.55 127.0.0.1 4242 8080\r\n"
                  b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = recv_all(s)
        s.close()
        check(b"200 OK" in data and b"activated" in data, "reply %r" % data[:200])
        ready = notify.wait("READY=1")
        check(re.search(r"MAINPID=\d+", ready), "READY=1 without MAINPID: %r" % ready)
        out = p.read_until(lambda o: b"192.0.2.55 - - " in o, 10).decode()
        check("listening tcp://127.0.0.1:%d" % port in out, "listening line %r" % out)
        # The watchdog: WATCHDOG=1 every 100 ms (half of WATCHDOG_USEC).
        n0 = sum(m == "WATCHDOG=1" for m in notify.msgs)
        deadline = time.monotonic() + T(5)
        while sum(m == "WATCHDOG=1" for m in notify.msgs) < n0 + 3 and time.monotonic() < deadline:
            notify.s.settimeout(0.5)
            try:
                notify.msgs.append(notify.s.recv(4096).decode())
            except socket.timeout:
                pass
        check(sum(m == "WATCHDOG=1" for m in notify.msgs) >= n0 + 3, "watchdog pings: %r" % notify.msgs)
        stop_activated(p, notify)
    finally:
        p.stop(signal.SIGKILL)
        notify.close()


def test_restart_of_an_activated_server():
    # SIGUSR2 to a socket-activated csock: the new process serves systemd's
    # socket (passed on as csock-ep0, no longer named "web") and says READY=1
    # with its own MAINPID; the old one exits once it has drained.
    need(ACTIVATE)
    port = free_port()
    notify = Notify()
    env = dict(sanitizer_env(), NOTIFY_SOCKET=notify.env)
    p = Proc(activate_argv(port, "web", env, [BIN, "serve", "upper", "systemd:web"]))
    new = None
    try:
        def echo(text):
            s = socket.create_connection(("127.0.0.1", port), timeout=T(10))
            s.sendall(text + b"\n")
            got = s.recv(100)
            s.close()
            return got
        s = wait_for(lambda: try_connect(port), 10, "systemd-socket-activate to listen")
        s.close()
        old = int(re.search(r"MAINPID=(\d+)", notify.wait("READY=1")).group(1))
        notify.msgs.clear()
        os.kill(old, signal.SIGUSR2)
        new = int(re.search(r"MAINPID=(\d+)", notify.wait("READY=1")).group(1))
        check(new != old, "READY=1 came from the old process again")
        check_eq(p.wait(20), 0, "the old process's exit status (stderr %r)" % p.stderr()[-800:])
        check_eq(echo(b"after"), b"AFTER\n", "served by the new process")
        os.kill(new, signal.SIGTERM)
        notify.wait("STOPPING=1")
        wait_for(lambda: not os.path.exists("/proc/%d" % new) or
                 open("/proc/%d/stat" % new).read().split(") ")[1].startswith("Z"), 20,
                 "the new process to stop")
    finally:
        if new and os.path.exists("/proc/%d" % new):
            try:
                os.kill(new, signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.stop(signal.SIGKILL)
        notify.close()


def test_systemd_name_not_passed():
    need(ACTIVATE)
    rc, _, err = csock("serve", "echo", "systemd:web")
    check_eq(rc, 2, "exit status without LISTEN_FDS")
    check("systemd" in err and err.count("\n") == 1, "one line: %r" % err)
    check_eq(csock("serve", "echo", "fd:x")[0], 2, "exit status for fd:x")
    check_eq(csock("serve", "echo", "tls+tcp://1.2.3.4:5")[0], 2, "exit status for tls+tcp://")


class WithFd:
    """`csock ARGS...` given a fresh listening loopback TCP socket as an
    inherited descriptor: the argument "FD" becomes fd:N, and the socket
    lives on in csock alone. In the block: .p (stdin and stdout pipes) and
    .port; after it: .err, csock's stderr, checked for sanitizer reports."""

    def __init__(self, args, env=None):
        self.args, self.env = args, env

    def __enter__(self):
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(16)
        self.port = lsock.getsockname()[1]
        fd = lsock.fileno()
        self.errf = tempfile.TemporaryFile()
        argv = [BIN] + ["fd:%d" % fd if a == "FD" else a for a in self.args]
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errf,
                                  pass_fds=[fd], env=self.env, start_new_session=True)
        lsock.close()
        return self

    def __exit__(self, et, ev, tb):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        self.errf.seek(0)
        self.err = self.errf.read().decode()
        self.errf.close()
        if et is None:
            check("AddressSanitizer" not in self.err, self.err[-2000:])
        return False


def test_fd_form_and_abstract_notify():
    notify = Notify(abstract=True)
    try:
        with WithFd(["serve", "-v", "upper", "FD"], env=dict(os.environ, NOTIFY_SOCKET=notify.env)) as w:
            line = w.p.stdout.readline().decode().strip()
            check_eq(line, "listening tcp://127.0.0.1:%d" % w.port, "listening line")
            notify.wait("READY=1")
            s = socket.create_connection(("127.0.0.1", w.port), timeout=T(10))
            s.sendall(b"inherited\n")
            check_eq(s.recv(100), b"INHERITED\n", "upper through fd:N")
            s.close()
            w.p.send_signal(signal.SIGTERM)
            notify.wait("STOPPING=1")
            check_eq(w.p.wait(T(20)), 0, "exit status")
    finally:
        notify.close()
    # Not a listening socket: one line, status 1, nothing served.
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with tempfile.TemporaryFile() as errf:
        rc = subprocess.run([BIN, "serve", "echo", "fd:%d" % u.fileno()], pass_fds=[u.fileno()],
                            stdout=subprocess.PIPE, stderr=errf, timeout=T(10)).returncode
        errf.seek(0)
        err = errf.read().decode()
    u.close()
    check_eq(rc, 1, "exit status for a datagram fd (stderr %r)" % err)
    check(err.count("\n") == 1 and "fd:" in err, "one line: %r" % err)


def test_deploy_md_shows_the_tested_files():
    # docs/deploy.md quotes the files the tests run, whole and unchanged.
    with open(os.path.join(REPO, "docs", "deploy.md")) as f:
        md = f.read()
    for name in ("haproxy.cfg", "haproxy-proxy.cfg", "csock.socket", "csock.service"):
        with open(os.path.join(UNITS, name)) as f:
            text = f.read()
        check("```\n" + text + "```" in md, "docs/deploy.md does not quote docs/deploy/%s as it is" % name)


if __name__ == "__main__":
    main()
