#!/usr/bin/env python3
"""csock connect / listen: the basics against real peers (nc, socat, Python),
bad input, and the helpers the other test_netcat_*.py files import.

Run: python3 tests/integration/test_netcat_basic.py   (CSOCK_BIN=build/csock)
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

from csocktest import FullListener  # shared with the other drivers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CSOCK_BIN", "build/csock")
if not os.path.isabs(BIN):
    BIN = os.path.join(ROOT, BIN)
SLOW = 1.0 if "asan" not in BIN else 2.0   # sanitizer builds are slower
BAD_STDERR = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "internal error")

# ---------------------------------------------------------------- processes

_procs = []


class Proc:
    """A child process whose stdout and stderr are collected by threads, so
    a test can wait for a line without blocking and pipes never fill."""

    def __init__(self, argv, stdin=subprocess.PIPE, env=None, preexec_fn=None):
        self.argv = argv
        self.p = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env, preexec_fn=preexec_fn)
        self.out = bytearray()
        self.err = bytearray()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._pump, args=(self.p.stdout, self.out), daemon=True),
                        threading.Thread(target=self._pump, args=(self.p.stderr, self.err), daemon=True)]
        for t in self.threads:
            t.start()
        _procs.append(self)

    def _pump(self, f, buf):
        while True:
            d = f.read1(65536) if hasattr(f, "read1") else f.read(65536)
            if not d:
                return
            with self.lock:
                buf.extend(d)

    @property
    def pid(self):
        return self.p.pid

    def stdout(self):
        with self.lock:
            return bytes(self.out)

    def stderr(self):
        with self.lock:
            return self.err.decode(errors="replace")

    def wait_for(self, what, cond, timeout=10):
        deadline = time.time() + timeout * SLOW
        while time.time() < deadline:
            v = cond()
            if v:
                return v
            if self.p.poll() is not None:
                for t in self.threads:  # the pumps end at EOF: then all is in
                    t.join(2)
                v = cond()
                if v:
                    return v
                raise AssertionError("%s: exited %s before %s; stderr: %s"
                                     % (self.argv[:3], self.p.returncode, what, self.stderr()[-500:]))
            time.sleep(0.01)
        raise AssertionError("timed out waiting for %s; stderr: %s" % (what, self.stderr()[-500:]))

    def wait_stderr(self, pattern, timeout=10):
        return self.wait_for("stderr /%s/" % pattern, lambda: re.search(pattern, self.stderr()), timeout)

    def wait_stdout(self, data, timeout=10):
        return self.wait_for("stdout %r" % data[:60], lambda: data in self.stdout(), timeout)

    def send(self, data):
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def close_stdin(self):
        self.p.stdin.close()

    def wait(self, timeout=10):
        try:
            rc = self.p.wait(timeout * SLOW)
        except subprocess.TimeoutExpired:
            raise AssertionError("%s did not exit; stderr: %s" % (self.argv[:4], self.stderr()[-500:]))
        for t in self.threads:
            t.join(2)
        return rc

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        for t in self.threads:
            t.join(2)
        return self.p.returncode

    def check_clean(self):
        err = self.stderr()
        for bad in BAD_STDERR:
            if bad in err:
                raise AssertionError("sanitizer or internal error in stderr:\n" + err[-3000:])


def csock(*args, stdin=subprocess.PIPE, preexec_fn=None):
    return Proc([BIN] + [str(a) for a in args], stdin=stdin, preexec_fn=preexec_fn)


def run(*args, input=b"", timeout=10):
    """Run csock to completion: (status, stdout, stderr)."""
    r = subprocess.run([BIN] + [str(a) for a in args], input=input, capture_output=True,
                       timeout=timeout * SLOW)
    err = r.stderr.decode(errors="replace")
    for bad in BAD_STDERR:
        assert bad not in err, "sanitizer report:\n" + err
    return r.returncode, r.stdout, err


def listen(*args, stdin=subprocess.PIPE, preexec_fn=None):
    """Start `csock listen ARGS` on port 0 and return (proc, port or address).
    preexec_fn runs in the child before exec (to hand down signal state)."""
    p = csock("listen", *args, stdin=stdin, preexec_fn=preexec_fn)
    m = p.wait_stderr(r"listening (\S+)")
    addr = m.group(1)
    mp = re.search(r":(\d+)$", addr)
    return p, (int(mp.group(1)) if mp else addr)


def free_port(family=socket.AF_INET, kind=socket.SOCK_STREAM, host="127.0.0.1"):
    s = socket.socket(family, kind)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def ncat_listen(*args, udp=False, host="127.0.0.1"):
    """Start ncat listening on a free port (ncat cannot report port 0);
    retry when another process took the port in between."""
    need("ncat")
    for _ in range(10):
        port = free_port(kind=socket.SOCK_DGRAM if udp else socket.SOCK_STREAM, host=host)
        p = Proc(["ncat", "-v", "-l", host, str(port)] + (["-u"] if udp else []) + list(args))
        try:
            p.wait_stderr(r"Listening on")
            return p, port
        except AssertionError:
            p.stop()
            if "already in use" not in p.stderr():
                raise
    raise AssertionError("no free port for ncat")


def listening_ports():
    """TCP ports in the LISTEN state on this host (/proc/net/tcp, tcp6)."""
    ports = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                for line in list(f)[1:]:
                    fields = line.split()
                    if fields[3] == "0A":
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return ports


class Skip(Exception):
    """The test cannot run here (a peer tool is missing): reported as skipped."""


def need(tool):
    if not shutil.which(tool):
        raise Skip("%s not installed" % tool)


def nc_listen(*flags, stdin=subprocess.DEVNULL):
    """Start `nc FLAGS -l 127.0.0.1 PORT` on a free port and wait (bounded)
    until the port is in the LISTEN state; returns (proc, port)."""
    need("nc")
    for _ in range(10):
        port = free_port()
        p = Proc(["nc"] + list(flags) + ["-l", "127.0.0.1", str(port)], stdin=stdin)
        try:
            p.wait_for("nc to listen on %d" % port, lambda: port in listening_ports())
            return p, port
        except AssertionError:
            p.stop()  # the port was taken in between: try another
    raise AssertionError("nc never listened")


def connect(port, host="127.0.0.1", timeout=10):
    s = socket.create_connection((host, port), timeout=timeout * SLOW)
    return s


def recv_until(s, want, timeout=10):
    """Read from socket s until `want` (bytes) is in the data, or EOF."""
    s.settimeout(timeout * SLOW)
    data = b""
    while want not in data:
        try:
            d = s.recv(65536)
        except socket.timeout:
            break
        if not d:
            break
        data += d
    return data


def recv_all(s, timeout=10):
    """Read until EOF."""
    s.settimeout(timeout * SLOW)
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            return data
        data += d


def quiet_read(s, wait=0.3):
    """What arrives within `wait` seconds (no EOF expected)."""
    s.settimeout(wait * SLOW)
    data = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    except (socket.timeout, BlockingIOError):
        pass
    return data


def zombies_of(pid):
    """Zombie children of process pid, from /proc."""
    z = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        rest = st.rsplit(")", 1)[1].split()
        if rest[0] == "Z" and int(rest[1]) == pid:
            z.append(int(d))
    return z


def children_of(pid):
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(rest[1]) == pid:
            kids.append(int(d))
    return kids


def tmpdir():
    return tempfile.mkdtemp(prefix="csock-nc-")


# ---------------------------------------------------------------- the runner

_tests = []


def test(fn):
    _tests.append(fn)
    return fn


def main():
    only = sys.argv[1:]
    passed = failed = skipped = 0
    for fn in _tests:
        if fn.__module__ != "__main__":
            continue  # tests of a module that was imported for its helpers
        if only and fn.__name__ not in only:
            continue
        t0 = time.time()
        try:
            fn()
            for p in _procs:
                p.stop()
                p.check_clean()
            passed += 1
            print("ok   %s (%.1fs)" % (fn.__name__, time.time() - t0), flush=True)
        except Skip as e:
            skipped += 1
            print("skip %s: %s" % (fn.__name__, e), flush=True)
        except Exception as e:  # noqa: BLE001 - report every failure the same way
            failed += 1
            print("FAIL %s: %s: %s" % (fn.__name__, type(e).__name__, e), flush=True)
        finally:
            for p in _procs:
                p.stop()
            _procs.clear()
    print("%d passed, %d failed%s" % (passed, failed, ", %d skipped" % skipped if skipped else ""))
    sys.exit(1 if failed else 0)


# ================================================================= the tests

@test
def help_documents_exit_status():
    for cmd in ("connect", "listen"):
        rc, out, _ = run(cmd, "--help")
        assert rc == 0 and b"Exit status" in out, out
    rc, out, _ = run("--help")
    assert b"listen" in out


def expect_usage_error(args, pattern):
    rc, out, err = run(*args, timeout=5)
    assert rc == 2, "%s: status %d, stderr %r" % (args, rc, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, "%s: want one line, got %r" % (args, err)
    assert re.search(pattern, err), "%s: %r does not match %r" % (args, err, pattern)


@test
def bad_input_one_line_and_status_2():
    expect_usage_error(("listen", "--bogus", "0"), r"unknown option '--bogus'")
    expect_usage_error(("connect", "-Q", "127.0.0.1", "1"), r"unknown option '-Q'")
    expect_usage_error(("listen", "--send-only", "--recv-only", "0"), r"cannot be used together")
    expect_usage_error(("listen", "--allow", "10.0.0.0/33", "0"), r"bad CIDR '10.0.0.0/33'")
    expect_usage_error(("listen", "--deny", "fe80::/129", "0"), r"bad CIDR")
    expect_usage_error(("listen", "--allow", "10.0.0.0/x", "0"), r"bad CIDR")
    expect_usage_error(("listen", "--allow", "300.1.2.3/8", "0"), r"not an address")
    expect_usage_error(("connect", "-z", "127.0.0.1", "8100-8000"), r"upside down")
    expect_usage_error(("connect", "-z", "127.0.0.1", "70000"), r"not a number")
    expect_usage_error(("listen", "-e", "/no/such/program", "0"), r"no such program")
    expect_usage_error(("listen", "-e", "no-such-program-csock", "0"), r"no such program")
    expect_usage_error(("connect", "-k", "127.0.0.1", "1"), r"-k/--keep-open is a listen option")
    expect_usage_error(("listen", "-z", "0"), r"-z is a connect option")
    expect_usage_error(("listen", "--broker", "-e", "cat", "0"), r"cannot be combined")
    expect_usage_error(("listen", "-m", "lots", "0"), r"not a number")
    expect_usage_error(("listen",), r"missing address")
    expect_usage_error(("listen", "tcp://127.0.0.1:99999"), r"bad address")
    expect_usage_error(("listen", "-i"), r"needs a value")


@test
def tls_refused_where_it_cannot_run():
    """TLS runs over TCP only: -u --ssl (and any TLS option on a non-tls://
    address) is a wrong argument, and not one byte goes out in plaintext."""
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    port = u.getsockname()[1]
    d = tmpdir()
    plain = r"needs a tls:// address.*would carry plaintext"
    for args in (("connect", "-u", "--ssl", "127.0.0.1", port),
                 ("connect", "--ssl", "-u", "127.0.0.1:%d" % port),
                 ("connect", "--insecure", "udp://127.0.0.1:%d" % port),
                 ("connect", "--ca", "/dev/null", "-u", "127.0.0.1", port)):
        rc, out, err = run(*args, input=b"secret\n", timeout=5)
        assert rc == 2 and len(err.strip().splitlines()) == 1, (args, rc, err)
        assert re.search(plain, err), (args, err)
    u.settimeout(0.2)
    try:
        got = u.recv(100)
        raise AssertionError("plaintext datagram sent: %r" % got)
    except socket.timeout:
        pass
    expect_usage_error(("connect", "-u", "tls://127.0.0.1:%d" % port), r"-u/--udp with tls://.*no DTLS")
    expect_usage_error(("listen", "-u", "--ssl", "127.0.0.1", 0), plain)
    expect_usage_error(("listen", "--ssl", "-u", "0"), plain)
    expect_usage_error(("listen", "--cert", "/dev/null", "-u", "-U", os.path.join(d, "g")), plain)
    expect_usage_error(("listen", "--ssl", "-U", os.path.join(d, "s")), plain)
    expect_usage_error(("connect", "--ssl", "-U", os.path.join(d, "s")), plain)
    expect_usage_error(("listen", "--alpn", "x", "tcp://127.0.0.1:0"), plain)
    expect_usage_error(("serve", "chat", "--ssl", "udp://127.0.0.1:0"), plain)
    assert os.listdir(d) == [], "a socket file was created: %r" % os.listdir(d)
    shutil.rmtree(d)
    rc, out, _ = run("connect", "--help")
    assert b"no DTLS" in out, out


@test
def listen_tls_announces_tls():
    """The listening line of a tls:// listener says tls://, as serve's does:
    a peer has to speak TLS there."""
    need("openssl")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import tlscerts
    d = tlscerts.tempdir()
    p, port = listen("--cert", os.path.join(d, "server.pem"), "--key",
                     os.path.join(d, "server.key"), "tls://127.0.0.1:0")
    assert re.search(r"^listening tls://127\.0\.0\.1:%d$" % port, p.stderr(), re.M), p.stderr()
    q = csock("connect", "--ca", os.path.join(d, "ca.pem"), "tls://localhost:%d" % port)
    q.send(b"over tls\n")
    p.wait_stdout(b"over tls\n")  # (the TLS close is not what this test is about)
    q.stop()
    p.stop()
    shutil.rmtree(d)


@test
def connect_tcp_to_python_half_close():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    p = csock("connect", "127.0.0.1", srv.getsockname()[1])
    c, _ = srv.accept()
    p.send(b"ping\n")
    p.close_stdin()
    assert recv_all(c) == b"ping\n"  # EOF: csock half-closed after stdin
    c.sendall(b"pong\n")
    c.close()
    assert p.wait() == 0
    assert p.stdout() == b"pong\n"


@test
def connect_refused_status_1():
    rc, out, err = run("connect", "127.0.0.1", free_port())
    assert rc == 1 and "refused" in err, err


@test
def connect_wait_timeout():
    # A listener whose backlog is full drops SYNs: the connect hangs.
    with FullListener() as full:
        t0 = time.time()
        rc, out, err = run("connect", "-w", "0.5", "127.0.0.1", full.port)
        took = time.time() - t0
    assert rc == 1 and "timed out" in err, (rc, err)
    assert took < 5 * SLOW, took


@test
def listen_single_with_nc():
    need("nc")
    p, port = listen("127.0.0.1", 0)
    nc = subprocess.run(["nc", "-N", "127.0.0.1", str(port)], input=b"from nc\n", capture_output=True,
                        timeout=10)
    assert p.wait() == 0
    assert p.stdout() == b"from nc\n"
    p.check_clean()


@test
def listen_single_sends_stdin_then_exits():
    p, port = listen("127.0.0.1", 0)
    c = connect(port)
    p.send(b"hello client\n")
    p.close_stdin()
    assert recv_all(c) == b"hello client\n"  # half-closed at stdin EOF
    c.sendall(b"bye\n")
    c.close()
    assert p.wait() == 0
    assert p.stdout() == b"bye\n"


@test
def listen_verbose_prints_address_for_fixed_port():
    port = free_port()
    p = csock("listen", "-v", "127.0.0.1", port)
    p.wait_stderr(r"listening tcp://127\.0\.0\.1:%d" % port)
    c = connect(port)
    p.wait_stderr(r"connection from tcp://127\.0\.0\.1:\d+")
    c.close()
    assert p.wait() == 0
    p.wait_stderr(r"closed")


@test
def listen_fixed_port_quiet_without_v():
    port = free_port()
    p = csock("listen", "127.0.0.1", port)
    for _ in range(100):
        try:
            c = socket.create_connection(("127.0.0.1", port))
            break
        except ConnectionRefusedError:
            time.sleep(0.05)
    c.sendall(b"x")
    c.close()
    assert p.wait() == 0
    assert p.stderr() == "", p.stderr()


@test
def listen_second_peer_refused_without_k():
    p, port = listen("127.0.0.1", 0)
    a = connect(port)
    a.sendall(b"first\n")
    p.wait_stdout(b"first\n")
    try:
        b = socket.create_connection(("127.0.0.1", port), timeout=2)
        b.sendall(b"second\n")
        got = recv_all(b, 2)
        assert got == b"", got
    except (ConnectionRefusedError, ConnectionResetError):
        pass
    a.close()
    assert p.wait() == 0
    assert p.stdout() == b"first\n"


@test
def udp_listen_and_connect_with_socat():
    need("socat")
    p, port = listen("-u", "127.0.0.1", 0)
    s = subprocess.run(["socat", "-t", "1", "-", "UDP:127.0.0.1:%d" % port], input=b"dgram\n",
                       capture_output=True, timeout=10)
    p.wait_stdout(b"dgram\n")
    p.send(b"reply\n")
    p.stop()
    # connect -u to a socat UDP echo
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echo.bind(("127.0.0.1", 0))

    def serve():
        for _ in range(2):
            d, a = echo.recvfrom(100)
            echo.sendto(d.upper(), a)
    threading.Thread(target=serve, daemon=True).start()
    rc, out, err = run("connect", "-u", "-q", "0.5", "127.0.0.1", echo.getsockname()[1],
                       input=b"one\ntwo\n")
    assert rc == 0 and out == b"ONE\nTWO\n", (rc, out, err)


@test
def udp_listen_replies_to_first_peer():
    p, port = listen("-u", "127.0.0.1", 0)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(b"hi\n", ("127.0.0.1", port))
    p.wait_stdout(b"hi\n")
    p.send(b"a\nb\n")
    u.settimeout(5 * SLOW)
    assert u.recv(100) == b"a\n"
    assert u.recv(100) == b"b\n"
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.sendto(b"ignored\n", ("127.0.0.1", port))
    u.sendto(b"again\n", ("127.0.0.1", port))
    p.wait_stdout(b"again\n")
    assert b"ignored" not in p.stdout()


@test
def unix_listen_and_connect():
    d = tmpdir()
    path = os.path.join(d, "s")
    p = csock("listen", "-v", "-U", path)
    p.wait_stderr(r"listening unix:")
    rc, out, err = run("connect", "-U", path, input=b"over unix\n")
    assert p.wait() == 0
    assert p.stdout() == b"over unix\n"
    # socat as the client of a Unix listener
    need("socat")
    p = csock("listen", "-v", "unix:" + path)
    p.wait_stderr(r"listening unix:")
    subprocess.run(["socat", "-", "UNIX-CONNECT:" + path], input=b"socat here\n", timeout=10,
                   capture_output=True)
    assert p.wait() == 0
    assert p.stdout() == b"socat here\n"
    shutil.rmtree(d)


@test
def unixgram_listen_and_connect():
    d = tmpdir()
    path = os.path.join(d, "g")
    p = csock("listen", "-v", "-u", "-U", path)
    p.wait_stderr(r"listening unixgram:")
    rc, out, err = run("connect", "-q", "0.3", "unixgram:" + path, input=b"gram\n")
    assert rc == 0, err
    p.wait_stdout(b"gram\n")
    shutil.rmtree(d)


@test
def ipv6_and_family_flags():
    p, port = listen("-6", "::1", 0)
    rc, out, err = run("connect", "-6", "::1", port, input=b"six\n")
    assert rc == 0, err
    assert p.wait() == 0 and p.stdout() == b"six\n"
    p, port = listen("tcp://[::1]:0")
    rc, out, err = run("connect", "tcp://[::1]:%d" % port, input=b"six again\n")
    assert p.wait() == 0 and p.stdout() == b"six again\n"
    rc, out, err = run("connect", "-4", "::1", 9)
    assert rc != 0


@test
def crlf_from_stdin():
    p, port = listen("-C", "127.0.0.1", 0)
    c = connect(port)
    p.send(b"a\nb\r\nc\n")
    p.close_stdin()
    assert recv_all(c) == b"a\r\nb\r\nc\r\n"
    c.close()
    assert p.wait() == 0
    # connect -C to nc
    nc, port = nc_listen()
    rc, out, err = run("connect", "-C", "127.0.0.1", port, input=b"x\ny\n")
    assert nc.wait() == 0
    assert nc.stdout() == b"x\r\ny\r\n", nc.stdout()


@test
def hex_dump_both_directions():
    d = tmpdir()
    dump = os.path.join(d, "dump")
    p, port = listen("--hex-dump-annotated", dump, "127.0.0.1", 0)
    c = connect(port)
    c.sendall(b"hello\x00\xff")
    p.wait_stdout(b"hello\x00\xff")
    p.send(b"world\n")
    assert recv_until(c, b"world\n") == b"world\n"
    c.close()
    assert p.wait() == 0
    text = open(dump).read()
    assert re.search(r"< 7 bytes from tcp://127\.0\.0\.1:\d+", text), text
    assert "68 65 6c 6c 6f 00 ff" in text and "|hello..|" in text, text
    assert re.search(r"> 6 bytes to tcp://127\.0\.0\.1:\d+", text), text
    assert "77 6f 72 6c 64 0a" in text, text
    # '-' is stderr, on the connect side
    nc, port = nc_listen()
    rc, out, err = run("connect", "--hex-dump-annotated", "-", "127.0.0.1", port, input=b"AB")
    assert "> 2 bytes to" in err and "41 42" in err, err
    # -x: ncat's format (test_nc_flags compares it with ncat's own)
    nc, port = nc_listen()
    rc, out, err = run("connect", "-x", "-", "127.0.0.1", port, input=b"AB")
    assert "0000   41 42 " in err and "bytes to" not in err, err
    shutil.rmtree(d)


@test
def send_only_and_recv_only():
    # --send-only: the peer's data is not printed; exits at end of stdin.
    p, port = listen("--send-only", "127.0.0.1", 0)
    c = connect(port)
    c.sendall(b"not shown\n")
    p.send(b"sent\n")
    p.close_stdin()
    assert recv_all(c) == b"sent\n"
    assert p.wait() == 0
    assert p.stdout() == b""
    # --recv-only: stdin is never read; the peer's data is printed.
    p, port = listen("--recv-only", "127.0.0.1", 0)
    c = connect(port)
    p.send(b"never sent\n")
    c.sendall(b"shown\n")
    c.shutdown(socket.SHUT_WR)
    assert quiet_read(c, 0.5) == b""
    c.close()
    assert p.wait() == 0
    assert p.stdout() == b"shown\n"
    # connect --recv-only with nc as the server
    nc, port = nc_listen("-N", stdin=subprocess.PIPE)
    q = csock("connect", "--recv-only", "127.0.0.1", port)
    nc.send(b"to csock\n")
    nc.close_stdin()
    q.wait_stdout(b"to csock\n")
    assert q.wait() == 0


@test
def idle_timeout():
    p, port = listen("-i", "0.5", "127.0.0.1", 0)
    c = connect(port)
    t0 = time.time()
    assert p.wait() == 1  # ncat too exits 1 when the idle timeout expires
    assert time.time() - t0 < 5 * SLOW
    assert "idle timeout expired (500 ms, -i)" in p.stderr(), p.stderr()  # ncat names it too
    # -k: only the idle connection goes, the listener stays
    p, port = listen("-k", "-i", "0.4", "-v", "127.0.0.1", 0)
    a = connect(port)
    assert recv_all(a, 5) == b""
    b = connect(port)
    b.sendall(b"still here\n")
    p.wait_stdout(b"still here\n")
    assert p.p.poll() is None


@test
def zero_io_scan():
    socks, ports = [], []
    for _ in range(3):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(5)
        socks.append(s)
        ports.append(s.getsockname()[1])
    lo = max(1, ports[0] - 20)
    spec = "%d-%d,%d,%d" % (lo, ports[0] + 20, ports[1], ports[2])
    rc, out, err = run("connect", "-z", "127.0.0.1", spec, timeout=30)
    found = [int(x) for x in out.split()]
    assert rc == 0, (rc, out, err)
    for p in ports:
        assert p in found, (p, found, err)
    assert found == sorted(set(found)), found
    closed = free_port()
    rc, out, err = run("connect", "-z", "-v", "127.0.0.1", closed)
    assert rc == 1 and out == b"" and "closed" in err, (rc, out, err)


@test
def verbose_connect_events():
    p, port = listen("127.0.0.1", 0)
    rc, out, err = run("connect", "-v", "127.0.0.1", port, input=b"v\n")
    assert rc == 0 and re.search(r"connected to tcp://127\.0\.0\.1:%d" % port, err), err
    assert p.wait() == 0


@test
def options_after_the_address():
    p, port = listen("127.0.0.1", 0, "-v", "--recv-only")
    c = connect(port)
    c.sendall(b"z\n")
    c.close()
    assert p.wait() == 0 and p.stdout() == b"z\n"


if __name__ == "__main__":
    main()
