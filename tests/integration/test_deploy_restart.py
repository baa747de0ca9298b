#!/usr/bin/env python3
"""Zero-downtime restart of csock serve (SIGUSR2): the running process hands
its listening sockets to a new copy of itself and drains once the new one
listens. A client load runs across the restart (many short connections,
each one request and its echo, and a few long ones that keep talking) and
must see zero refused, reset or short-answered connections; the long ones
stay on the old process, undisturbed, until they end themselves, and then
the old process exits 0. A second restart, of the new process, and a Unix
socket endpoint (whose file must survive the old process) as well."""
import os
import re
import signal
import socket
import threading
import time

from deploykit import HAProxy, need_haproxy, tcp_cfg, wait_for
from csocktest import recv_all, BIN, Proc, T, TestFailure, check, check_eq, main, tmpdir


def pid_gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[1].startswith("Z")  # a zombie is gone for us
    except FileNotFoundError:
        return True


class Load:
    """Short connections on `workers` threads, `longs` long ones, counting
    what goes wrong. A failure is kept with its reason."""

    def __init__(self, family, addr, workers=6, longs=3):
        self.family, self.addr = family, addr
        self.stop_short = threading.Event()
        self.stop_long = threading.Event()
        self.lock = threading.Lock()
        self.short_ok = 0
        self.long_ok = 0
        self.errors = []
        self.threads = [threading.Thread(target=self.short, args=(i,), daemon=True) for i in range(workers)]
        self.threads += [threading.Thread(target=self.long, args=(i,), daemon=True) for i in range(longs)]
        for t in self.threads:
            t.start()

    def fail(self, what):
        with self.lock:
            self.errors.append(what)

    def connect(self):
        s = socket.socket(self.family, socket.SOCK_STREAM)
        s.settimeout(T(10))
        s.connect(self.addr)
        return s

    def exchange(self, s, msg):
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            chunk = s.recv(len(msg) - len(got))
            if not chunk:
                raise ConnectionError("EOF after %d of %d bytes" % (len(got), len(msg)))
            got += chunk
        if got != msg:
            raise ConnectionError("wrong echo %r" % got)

    def short(self, i):
        n = 0
        while not self.stop_short.is_set():
            msg = b"short %d %d\n" % (i, n)
            try:
                s = self.connect()
            except OSError as e:
                self.fail("connect: %r" % e)
                continue
            try:
                self.exchange(s, msg)
                with self.lock:
                    self.short_ok += 1
            except OSError as e:
                self.fail("short exchange: %r" % e)
            finally:
                s.close()
            n += 1

    def long(self, i):
        try:
            s = self.connect()
        except OSError as e:
            return self.fail("long connect: %r" % e)
        n = 0
        try:
            while not self.stop_long.is_set():
                self.exchange(s, b"long %d %d\n" % (i, n))
                with self.lock:
                    self.long_ok += 1
                n += 1
                time.sleep(0.02)  # never quiet long enough for a drain to end it
        except OSError as e:
            self.fail("long exchange %d after %d: %r" % (i, n, e))
        finally:
            s.close()

    def more(self, n, what):
        """Wait until n more short connections have succeeded."""
        n0 = self.counts()[0]
        wait_for(lambda: self.counts()[0] >= n0 + n, 30, "%d connections %s" % (n, what))

    def counts(self):
        with self.lock:
            return self.short_ok, self.long_ok, list(self.errors)

    def finish(self):
        self.stop_short.set()
        self.stop_long.set()
        for t in self.threads:
            t.join(T(20))


def restart(old, what):
    """SIGUSR2 to `old` (a Proc or a pid); returns the new process's pid
    once the old one says it drains."""
    pid = old.pid if isinstance(old, Proc) else old
    os.kill(pid, signal.SIGUSR2)
    m = wait_for(lambda: re.search(r"new process (\d+) is serving; draining", what()), 20,
                 "the restart's 'draining' line")
    return int(m.group(1))


def restart_twice(p, family, addr_of, rounds=500, what="connections"):
    """Two restarts of the running `p` (serve or proxy, its first line
    `listening ADDR`) under a Load: the long connections keep the old
    process until they end, then it exits 0; the second restart is of the
    new process. Nothing refused or broken. Returns p's stderr."""
    newer = []
    try:
        first = p.read_line(15)
        check(first.startswith("listening "), "first line %r" % first)
        load = Load(family, addr_of(first[len("listening "):]))
        try:
            load.more(rounds, "before the restart")
            new1 = restart(p, p.stderr)
            newer.append(new1)
            load.more(rounds, "after the restart")
            # The long connections are still on the old process, talking.
            check(p.alive(), "the old process left its long connections")
            l0 = load.counts()[1]
            wait_for(lambda: load.counts()[1] > l0 + 10, 10, "the long connections to go on")
            # They end; the old process has nothing left and exits 0.
            load.stop_long.set()
            check_eq(p.wait(30), 0, "old process exit status (stderr %r)" % p.stderr()[-800:])
            load.more(rounds, "on the new process alone")
            # Again, from the new process (its stderr is the old one's file).
            new2 = restart(new1, lambda: p.stderr().split("new process %d is serving" % new1)[-1])
            newer.append(new2)
            wait_for(lambda: pid_gone(new1), 30, "the first new process to drain and exit")
            load.more(rounds, "on the second new process")
        finally:
            load.finish()
        short_ok, long_ok, errors = load.counts()
        check(not errors, "%d failures across the restarts, first: %r" % (len(errors), errors[:5]))
        check(short_ok > 4 * rounds and long_ok > 10, "too little load: %d short, %d long" % (short_ok, long_ok))
        print("     %d short %s, %d long exchanges, 0 refused or broken"
              % (short_ok, what, long_ok), flush=True)
        os.kill(newer[-1], signal.SIGTERM)
        wait_for(lambda: pid_gone(newer[-1]), 30, "the last process to stop on SIGTERM")
        check("AddressSanitizer" not in p.stderr(), p.stderr()[-2000:])
        return p.stderr()
    finally:
        for pid in newer:
            if not pid_gone(pid):
                os.kill(pid, signal.SIGKILL)


def run_restart(addr_arg, family, addr_of):
    p = Proc([BIN, "serve", "-t", "2", "--drain-timeout", "60", "echo", addr_arg])
    try:
        return restart_twice(p, family, addr_of)
    finally:
        p.stop(signal.SIGKILL)


def test_restart_tcp_under_load():
    def addr_of(text):
        host, port = text[len("tcp://"):].rsplit(":", 1)
        return (host, int(port))
    run_restart("tcp://127.0.0.1:0", socket.AF_INET, addr_of)


def test_restart_unix_keeps_the_file():
    path = os.path.join(tmpdir(), "s")
    run_restart("unix:" + path, socket.AF_UNIX, lambda text: text[len("unix:"):])
    check(not os.path.exists(path), "the last process left its socket file behind")


def test_restart_serve_http():
    # The same for serve http (what docs/deploy/csock.service runs): GETs
    # keep succeeding across the restart.
    d = tmpdir()
    with open(os.path.join(d, "index.html"), "w") as f:
        f.write("page\n")
    p = Proc([BIN, "serve", "http", d, "tcp://127.0.0.1:0", "-t", "1"])
    new = None
    stop = threading.Event()
    got = {"ok": 0, "bad": []}

    def client(addr):
        while not stop.is_set():
            try:
                s = socket.create_connection(addr, timeout=T(10))
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = recv_all(s)
                s.close()
                if data.startswith(b"HTTP/1.1 200") and data.endswith(b"page\n"):
                    got["ok"] += 1
                else:
                    got["bad"].append(data[:100])
            except OSError as e:
                got["bad"].append(repr(e))
    try:
        line = p.read_line(15)
        host, port = line[len("listening tcp://"):].rsplit(":", 1)
        ts = [threading.Thread(target=client, args=((host, int(port)),), daemon=True) for _ in range(4)]
        for t in ts:
            t.start()
        wait_for(lambda: got["ok"] > 300, 30, "requests before the restart")
        new = restart(p, p.stderr)
        n0 = got["ok"]
        check_eq(p.wait(30), 0, "old serve http exit status (stderr %r)" % p.stderr()[-500:])
        wait_for(lambda: got["ok"] > n0 + 300, 30, "requests after the restart")
        stop.set()
        for t in ts:
            t.join(T(20))
        check(not got["bad"], "%d failed requests, first %r" % (len(got["bad"]), got["bad"][:3]))
        os.kill(new, signal.SIGTERM)
        wait_for(lambda: pid_gone(new), 30, "the new serve http to stop")
    finally:
        stop.set()
        if new and not pid_gone(new):
            os.kill(new, signal.SIGKILL)
        p.stop(signal.SIGKILL)


def test_restart_behind_haproxy_with_proxy_protocol():
    # The deployment: HAProxy (send-proxy-v2) in front, csock serve
    # --proxy-protocol behind it, a load through HAProxy across a restart.
    # HAProxy would report any connection csock refused or cut as an error
    # to its client: the load sees none.
    need_haproxy()
    p = Proc([BIN, "serve", "-t", "2", "--drain-timeout", "60", "--proxy-protocol", "echo",
              "tcp://127.0.0.1:0"])
    hp = new = None
    try:
        port = int(p.read_line(15).rsplit(":", 1)[1])
        hp = HAProxy(lambda ports: tcp_cfg(ports[0], port, "send-proxy-v2"))
        load = Load(socket.AF_INET, ("127.0.0.1", hp.port), workers=4, longs=2)
        try:
            load.more(300, "before the restart")
            new = restart(p, p.stderr)
            load.more(300, "after the restart")
            load.stop_long.set()
            check_eq(p.wait(30), 0, "old process exit status (stderr %r)" % p.stderr()[-800:])
            load.more(300, "on the new process alone")
        finally:
            load.finish()
        short_ok, long_ok, errors = load.counts()
        check(not errors, "%d failures through HAProxy, first: %r" % (len(errors), errors[:5]))
        print("     through HAProxy: %d short connections, %d long exchanges, 0 refused or broken"
              % (short_ok, long_ok), flush=True)
        os.kill(new, signal.SIGTERM)
        wait_for(lambda: pid_gone(new), 30, "the new process to stop")
    finally:
        if hp:
            hp.stop()
        if new and not pid_gone(new):
            os.kill(new, signal.SIGKILL)
        p.stop(signal.SIGKILL)


def connect_to(text):
    """A client socket to a `listening` line's address (tcp:// or unix:)."""
    if text.startswith("unix:"):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(T(10))
        s.connect(text[len("unix:"):])
        return s
    host, port = text[len("tcp://"):].rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=T(10))


def failed_restart(args):
    """csock ARGS run from a copy of the binary, removed before SIGUSR2: the
    new process cannot start (the fds were asked for all the same), and
    the old one serves on (an echo checks it). Returns its status after
    SIGTERM."""
    d = tmpdir()
    exe = os.path.join(d, "csock")
    os.link(BIN, exe) if os.stat(BIN).st_dev == os.stat(d).st_dev else __import__("shutil").copy(BIN, exe)
    p = Proc([exe] + args)
    try:
        line = p.read_line(15)
        check(line.startswith("listening "), "said %r (stderr %r)" % (line, p.stderr()))
        os.unlink(exe)
        os.kill(p.pid, signal.SIGUSR2)
        wait_for(lambda: "still serving" in p.stderr(), 20, "the failed restart's line")
        with connect_to(line[len("listening "):]) as s:
            s.sendall(b"still here\n")
            check_eq(s.recv(100), b"still here\n", "echo after a failed restart")
        check(p.alive(), "the old process stopped")
    finally:
        rc = p.stop(signal.SIGTERM, 20)
    check_eq(rc, 0, "exit status (stderr %r)" % p.stderr()[-500:])


def test_failed_new_process_keeps_old():
    failed_restart(["serve", "echo", "tcp://127.0.0.1:0"])


def test_failed_restart_unix_file_removed_at_the_end():
    # The restart asked for the fds (the server left the file to the new
    # process), but the new one failed: the old one, still serving, is the
    # last owner and removes the file when it exits.
    path = os.path.join(tmpdir(), "s")
    failed_restart(["serve", "echo", "unix:" + path])
    check(not os.path.exists(path), "the socket file is left after a failed restart")


if __name__ == "__main__":
    main()
