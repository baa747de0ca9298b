#!/usr/bin/env python3
"""csock connect / listen: the everyday flags ncat users type (issue 12):
time units, -p/-s source port and address, -o/--output, --hex-dump,
--no-shutdown, the exec environment, dual-stack listening.

Run: python3 tests/integration/test_nc_flags.py   (CSOCK_BIN=build/csock)
"""
import hashlib
import os
import pty
import re
import select
import ssl
import shutil
import socket
import subprocess
import tempfile
import time

from test_netcat_basic import (BIN, SLOW, Proc, Skip, connect, csock, free_port, listen, main,
                               ncat_listen, need, quiet_read, recv_all, recv_until, run, test)


# ---------------------------------------------------------------- time values

@test
def time_units_bad_is_usage_error():
    for bad in ("1x", "2 s", "ms", "-1s", "inf", "1e3", "1.5mm"):
        rc, out, err = run("listen", "-i", bad, "127.0.0.1", 0)
        assert rc == 2 and out == b"", (bad, rc, out, err)
        assert err.count("\n") == 1 and "--idle-timeout" in err and repr(bad)[1:-1] in err, err
    rc, _, err = run("serve", "--drain-timeout", "3d", "127.0.0.1:0")
    assert rc == 2 and "--drain-timeout" in err, (rc, err)


@test
def time_units_ms_applies():
    """-i 400ms: a silent client is dropped (status 1) well within seconds,
    where a unit read as 400 s would wait minutes."""
    p, port = listen("-i", "400ms", "127.0.0.1", 0)
    c = connect(port)
    t0 = time.time()
    assert p.wait(10) == 1, p.stderr()
    assert time.time() - t0 < 8 * SLOW
    assert "idle timeout expired (400 ms, -i)" in p.stderr(), p.stderr()
    assert recv_all(c) == b""
    c.close()


@test
def time_units_accepted():
    for good in ("3000ms", "2s", "1m", "1h", "1.5", "7"):
        p, port = listen("-i", good, "127.0.0.1", 0)
        c = connect(port)
        c.sendall(b"hi\n")
        p.wait_stdout(b"hi\n")
        c.close()
        assert p.wait() == 0, (good, p.stderr())


# ---------------------------------------------------------------- -s / -p

def has_ipv6():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


def from_source(kind, family, host, src):
    """csock connect -s SRC -p PORT to a socket of ours: the peer address
    the server sees. Retries when another process holds the free port."""
    srv = socket.socket(family, kind)
    srv.bind((host, 0))
    port = srv.getsockname()[1]
    if kind == socket.SOCK_STREAM:
        srv.listen(4)
    srv.settimeout(10 * SLOW)
    for _ in range(10):
        sport = free_port(family, kind, host)
        udp = ["-u", "-q", "300ms"] if kind == socket.SOCK_DGRAM else []
        p = csock("connect", *udp, "-s", src, "-p", sport, host, port)
        p.send(b"hello\n")
        p.close_stdin()
        if kind == socket.SOCK_STREAM:
            try:
                c, peer = srv.accept()
            except socket.timeout:
                p.wait()
                assert "in use" in p.stderr(), p.stderr()
                continue
            assert recv_all(c) == b"hello\n"
            c.close()
        else:
            data, peer = srv.recvfrom(100)
            assert data == b"hello\n"
        assert p.wait() == 0, p.stderr()
        srv.close()
        assert peer[0] == src and peer[1] == sport, (peer, src, sport)
        return
    raise AssertionError("no free source port")


@test
def source_port_and_address_tcp():
    from_source(socket.SOCK_STREAM, socket.AF_INET, "127.0.0.1", "127.0.0.2")


@test
def source_port_and_address_udp():
    from_source(socket.SOCK_DGRAM, socket.AF_INET, "127.0.0.1", "127.0.0.3")


@test
def source_ipv6():
    if not has_ipv6():
        raise Skip("no IPv6 loopback")
    from_source(socket.SOCK_STREAM, socket.AF_INET6, "::1", "::1")
    from_source(socket.SOCK_DGRAM, socket.AF_INET6, "::1", "::1")


@test
def source_bad():
    for args, what in ((["-s", "192.0.2.1"], "not an address of this host"),
                       (["-s", "nohost"], "not an IP address"),
                       (["-p", "0"], "--source-port"),
                       (["-p", "70000"], "--source-port"),
                       (["-s", "::1", "-4"], "not an IP address")):
        rc, out, err = run("connect", *args, "127.0.0.1", 9)
        assert rc == 2 and err.count("\n") == 1 and what in err, (args, rc, err)
    rc, _, err = run("listen", "-s", "127.0.0.1", "127.0.0.1", 0)
    assert rc == 2 and "connect option" in err, err
    rc, _, err = run("connect", "-p", "5000", "-U", "/tmp/nope")
    assert rc == 2 and "-s/-p" in err, err


@test
def source_refused_is_status_1():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    srv.close()  # nobody listens there now
    rc, out, err = run("connect", "-s", "127.0.0.1", "127.0.0.1", port)
    assert rc == 1 and "refused" in err, (rc, err)


@test
def listen_p_is_the_port_as_ncat():
    """ncat -l -p PORT [HOST]: on listen -p is the port to listen on."""
    for args in (["-p", 0], ["-p", 0, "127.0.0.1"], ["127.0.0.1", "-p", 0]):
        p, port = listen(*args)
        c = connect(port)
        c.sendall(b"p\n")
        p.wait_stdout(b"p\n")
        c.close()
        assert p.wait() == 0, (args, p.stderr())
    rc, _, err = run("listen", "-p", 0, 5000)
    assert rc == 2 and "give the port once" in err, (rc, err)


@test
def nodns():
    """-n: numeric addresses only (ncat's -n), with -4/-6 in either order."""
    p, port = listen("-k", "-n", "-v", "127.0.0.1", 0)
    for flags in (["-n"], ["-n", "-4"], ["-4", "-n"], ["-nvz"]):
        rc, out, err = run("connect", *flags, "127.0.0.1", port, input=b"n\n")
        assert rc == 0, (flags, rc, err)
    rc, out, err = run("connect", "-n", "localhost", port)
    assert rc != 0 and "host name not found" in err, (rc, err)
    if has_ipv6():
        q, port6 = listen("-k", "-6", "-n", 0)
        assert reaches("::1", port6) and not reaches("127.0.0.1", port6)


@test
def delay_between_reads():
    """-d 500ms: after reading one chunk of stdin, csock reads nothing for
    half a second. The second chunk, written once the first has arrived,
    cannot arrive sooner than 0.5 s after the first was written."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(10 * SLOW)
    p = csock("connect", "-d", "500ms", "127.0.0.1", srv.getsockname()[1])
    c, _ = srv.accept()
    t_first = time.time()
    p.send(b"one\n")
    assert recv_until(c, b"one\n") == b"one\n"
    p.send(b"two\n")
    assert recv_until(c, b"two\n") == b"two\n"
    # (the loop's clock is taken once per iteration: a timer may end a few
    # ms before 0.5 s of wall time, never much before)
    assert time.time() - t_first >= 0.45, time.time() - t_first
    p.close_stdin()
    assert recv_all(c) == b""
    c.close()
    assert p.wait() == 0, p.stderr()
    rc, _, err = run("connect", "-d", "soon", "127.0.0.1", 9)
    assert rc == 2 and "--delay" in err, (rc, err)
    rc, _, err = run("listen", "-d", "1", "-e", "cat", "127.0.0.1", 0)
    assert rc == 2 and "--delay" in err, (rc, err)


# ---------------------------------------------------------------- -o, -x

CHUNKS = [(0, b"srv\x01line one two three four five six\n"),
          (1, b"client says hi\n\x00\xff \x7f\x80\n"),
          (0, b"more\n"),
          (1, bytes(range(40)))]


def capture(tool, d, extra=()):
    """One scripted exchange with a client of ours (ncat or csock) writing
    -o and -x files; each chunk lands before the next is sent."""
    out, dump = os.path.join(d, tool + ".out"), os.path.join(d, tool + ".hex")
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(10 * SLOW)
    argv = ["-o", out, "-x", dump] + list(extra) + ["127.0.0.1", srv.getsockname()[1]]
    p = Proc(["ncat"] + [str(a) for a in argv]) if tool == "ncat" else csock("connect", *argv)
    c, _ = srv.accept()
    got = b""
    for from_client, data in CHUNKS:
        if from_client:
            p.send(data)
            got += data
            assert recv_until(c, got) == data, data
            got = b""
        else:
            c.sendall(data)
            p.wait_stdout(data)
    p.close_stdin()
    c.close()
    assert p.wait() == 0, p.stderr()
    return open(out, "rb").read(), open(dump, "rb").read()


@test
def output_and_hex_dump_as_ncat():
    need("ncat")
    d = tempfile.mkdtemp()
    try:
        want_out, want_hex = capture("ncat", d)
        got_out, got_hex = capture("csock", d)
        assert want_out == b"".join(c for _, c in CHUNKS), want_out
        assert got_out == want_out, (got_out, want_out)
        assert got_hex == want_hex, "\n" + got_hex.decode() + "\n--- ncat:\n" + want_hex.decode()
        # --append-output: a second session is added, not written over
        got_out, got_hex = capture("csock", d, ["--append-output"])
        assert got_out == want_out * 2 and got_hex == want_hex * 2
    finally:
        shutil.rmtree(d)


@test
def output_on_listen_with_exec():
    """-o on listen, where a child (-c) talks to the peer."""
    d = tempfile.mkdtemp()
    try:
        out = os.path.join(d, "out")
        p, port = listen("-o", out, "-c", "read x; echo got $x", "127.0.0.1", 0)
        c = connect(port)
        c.sendall(b"ping\n")
        assert recv_all(c) == b"got ping\n"
        c.close()
        assert p.wait() == 0
        assert open(out, "rb").read() == b"ping\ngot ping\n"
        rc, _, err = run("connect", "-o", os.path.join(d, "no", "such"), "127.0.0.1", 9)
        assert rc == 1 and "--output: cannot open" in err, (rc, err)
        rc, _, err = run("connect", "-x", "a", "--hex-dump-annotated", "b", "127.0.0.1", 9)
        assert rc == 2 and "only one" in err, (rc, err)
    finally:
        shutil.rmtree(d)


# ---------------------------------------------------------------- --no-shutdown

def half_close_seen(tool, *flags):
    """Does the server see EOF once the client's stdin has ended? After
    that, the server's answer must still reach the client's stdout."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(10 * SLOW)
    argv = list(flags) + ["127.0.0.1", srv.getsockname()[1]]
    p = Proc(["ncat"] + [str(a) for a in argv]) if tool == "ncat" else csock("connect", *argv)
    c, _ = srv.accept()
    p.send(b"x\n")
    p.close_stdin()
    assert recv_until(c, b"x\n") == b"x\n"
    c.settimeout(1.0 * SLOW)
    try:
        eof = c.recv(10) == b""
    except socket.timeout:
        eof = False
    c.sendall(b"reply\n")
    p.wait_stdout(b"reply\n")
    c.close()
    assert p.wait() == 0, p.stderr()
    return eof


@test
def no_shutdown_keeps_the_sending_side_open():
    assert half_close_seen("csock") is True
    assert half_close_seen("csock", "--no-shutdown") is False


@test
def no_shutdown_as_ncat():
    need("ncat")
    assert half_close_seen("ncat", "--no-shutdown") is False


# ---------------------------------------------------------------- exec environment

ENV_CMD = "env | grep -E '^(NCAT|CSOCK)_(REMOTE|LOCAL|PROTO)' | sort; sleep 0.1"


def env_of(text):
    return dict(line.split("=", 1) for line in text.decode().splitlines() if "=" in line)


def env_seen_tcp(tool, host, family):
    if tool == "ncat":
        p, port = ncat_listen("-c", ENV_CMD, host=host)
    else:
        p, port = listen("-c", ENV_CMD, host, 0)
    c = socket.create_connection((host, port), timeout=10 * SLOW)
    env = env_of(recv_all(c))
    mine, srv = c.getsockname(), c.getpeername()
    c.close()
    p.wait()
    want = {"REMOTE_ADDR": mine[0], "REMOTE_PORT": str(mine[1]), "LOCAL_ADDR": srv[0],
            "LOCAL_PORT": str(srv[1]), "PROTO": "TCP"}
    for k, v in want.items():
        assert env.get("NCAT_" + k) == v, (tool, k, env)
        if tool == "csock":
            assert env.get("CSOCK_" + k) == v, (tool, k, env)
    return env


@test
def exec_environment_tcp_as_ncat():
    env_seen_tcp("csock", "127.0.0.1", socket.AF_INET)
    if has_ipv6():
        env_seen_tcp("csock", "::1", socket.AF_INET6)
    need("ncat")
    env_seen_tcp("ncat", "127.0.0.1", socket.AF_INET)


@test
def exec_environment_udp_and_connect():
    p, port = listen("-u", "-c", ENV_CMD, "127.0.0.1", 0)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(10 * SLOW)
    u.sendto(b"go\n", ("127.0.0.1", port))
    data = b""
    while b"NCAT_REMOTE_PORT" not in data or b"NCAT_PROTO" not in data:
        data += u.recvfrom(65536)[0]
    env = env_of(data)
    assert env["NCAT_PROTO"] == "UDP" and env["CSOCK_PROTO"] == "UDP", env
    assert env["NCAT_REMOTE_PORT"] == str(u.getsockname()[1]), env
    assert env["NCAT_LOCAL_PORT"] == str(port), env
    u.close()
    p.stop()
    # connect -c: the child sees the connection from our side; an
    # inherited NCAT_PROTO is replaced, not doubled
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(10 * SLOW)
    q = Proc(["env", "NCAT_PROTO=bogus", BIN, "connect", "-c", ENV_CMD, "127.0.0.1",
              str(srv.getsockname()[1])])
    c, peer = srv.accept()
    text = recv_all(c)
    env = env_of(text)
    assert text.count(b"NCAT_PROTO=") == 1 and env["NCAT_PROTO"] == "TCP", text
    assert env["NCAT_LOCAL_PORT"] == str(peer[1]), (env, peer)
    assert env["NCAT_REMOTE_PORT"] == str(srv.getsockname()[1]), env
    c.close()
    srv.close()
    assert q.wait() == 0, q.stderr()


# ---------------------------------------------------------------- dual stack

def reaches(host, port):
    try:
        socket.create_connection((host, port), timeout=5 * SLOW).close()
        return True
    except ConnectionRefusedError:
        return False


@test
def dual_stack_bare_port():
    if not has_ipv6():
        raise Skip("no IPv6 loopback")
    p, port = listen("-k", "-v", "--recv-only", 0)
    assert re.search(r"listening tcp://\[::\]:\d+", p.stderr()), p.stderr()
    for host in ("127.0.0.1", "::1"):
        c = socket.create_connection((host, port), timeout=10 * SLOW)
        c.sendall(("from %s\n" % host).encode())
        p.wait_stdout(("from %s\n" % host).encode())
        c.close()
    # an IPv4 peer is named as IPv4, not ::ffff:127.0.0.1
    p.wait_stderr(r"connection from tcp://127\.0\.0\.1:\d+")
    p.wait_stderr(r"connection from tcp://\[::1\]:\d+")
    assert "::ffff:" not in p.stderr(), p.stderr()


@test
def dual_stack_allow_and_env_see_ipv4():
    if not has_ipv6():
        raise Skip("no IPv6 loopback")
    p, port = listen("-k", "--allow", "127.0.0.1", "-c", ENV_CMD, 0)
    c = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
    env = env_of(recv_all(c))
    c.close()
    assert env["NCAT_REMOTE_ADDR"] == "127.0.0.1" and env["NCAT_LOCAL_ADDR"] == "127.0.0.1", env
    c = socket.create_connection(("::1", port), timeout=10 * SLOW)
    assert recv_all(c) == b""  # denied: closed at once
    c.close()


@test
def ipv4_only_and_ipv6_only():
    if not has_ipv6():
        raise Skip("no IPv6 loopback")
    for flag, mine, other, table in (("-4", "127.0.0.1", "::1", "/proc/net/tcp6"),
                                     ("-6", "::1", "127.0.0.1", "/proc/net/tcp")):
        for _ in range(5):
            p, port = listen("-k", flag, 0)
            if port not in listening_in(table):
                break  # (else another test's listener has that port in the other family)
            p.stop()
        assert reaches(mine, port) and not reaches(other, port), (flag, port)
        p.stop()


def listening_in(table):
    """The TCP ports in the LISTEN state in /proc/net/tcp or tcp6."""
    with open(table) as f:
        return {int(line.split()[1].rsplit(":", 1)[1], 16) for line in list(f)[1:]
                if line.split()[3] == "0A"}


@test
def dual_stack_udp():
    if not has_ipv6():
        raise Skip("no IPv6 loopback")
    p, port = listen("-u", "-k", "--recv-only", 0)
    for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        u = socket.socket(fam, socket.SOCK_DGRAM)
        u.sendto(("udp %s\n" % host).encode(), (host, port))
        p.wait_stdout(("udp %s\n" % host).encode())
        u.close()


# ---------------------------------------------------------------- -C on -e/-c output

CRLF_CMD = "printf 'a\\nb\\r\\nc\\n'; read x; echo \"$x\""


def crlf_exec(tool):
    if tool == "ncat":
        p, port = ncat_listen("-C", "-c", CRLF_CMD)
    else:
        p, port = listen("-C", "-c", CRLF_CMD, "127.0.0.1", 0)
    c = connect(port)
    assert recv_until(c, b"c\r\n").endswith(b"c\r\n")
    c.sendall(b"in\n")
    data = recv_all(c)
    c.close()
    p.wait()
    return b"a\r\nb\r\nc\r\n" + data


@test
def crlf_applies_to_exec_output_as_ncat():
    got = crlf_exec("csock")
    assert got == b"a\r\nb\r\nc\r\nin\r\n", got
    need("ncat")
    assert crlf_exec("ncat") == got


# ---------------------------------------------------------------- --broker with --send-only / --recv-only

ACCEPTED = {"ncat": r"Connection from", "csock": r"connection from"}


def broker_relay(tool, flag, d):
    """What client b receives: client a's line, then stdin's (unless
    --recv-only). -o tells when csock has read a's line (ncat's --send-only
    records nothing received: there the order is only likely)."""
    out = os.path.join(d, tool + flag)
    args = ["--broker", flag, "-o", out]
    p, port = ncat_listen(*args) if tool == "ncat" else listen("-v", *args, "127.0.0.1", 0)
    a, b = connect(port), connect(port)
    p.wait_for("2 accepts", lambda: len(re.findall(ACCEPTED[tool], p.stderr())) >= 2)
    a.sendall(b"from a\n")
    if tool == "csock" or flag == "--recv-only":
        p.wait_for("a's line read", lambda: b"from a\n" in open(out, "rb").read())
    if flag == "--send-only":
        p.send(b"from stdin\n")
        got = recv_until(b, b"from stdin\n")
    else:
        got = quiet_read(b, 0.5)
    a.close()
    b.close()
    p.stop()
    return got


@test
def broker_send_only_and_recv_only_as_ncat():
    d = tempfile.mkdtemp()
    try:
        assert broker_relay("csock", "--send-only", d) == b"from stdin\n"
        assert broker_relay("csock", "--recv-only", d) == b""
        need("ncat")
        assert broker_relay("ncat", "--send-only", d) == b"from stdin\n"
        assert broker_relay("ncat", "--recv-only", d) == b""
    finally:
        shutil.rmtree(d)


# ---------------------------------------------------------------- -z -u

def udp_ports(family, host):
    """An open UDP port (bound by us, silent) and a closed one."""
    u = socket.socket(family, socket.SOCK_DGRAM)
    u.bind((host, 0))
    closed = free_port(family, socket.SOCK_DGRAM, host)
    return u, u.getsockname()[1], closed


@test
def udp_probe():
    hosts = [(socket.AF_INET, "127.0.0.1")] + ([(socket.AF_INET6, "::1")] if has_ipv6() else [])
    for family, host in hosts:
        u, open_port, closed = udp_ports(family, host)
        rc, out, err = run("connect", "-z", "-u", "-v", "-w", "1s", host,
                           "%d,%d" % (open_port, closed))
        assert rc == 0 and out == b"%d\n" % open_port, (rc, out, err)
        assert "port %d closed" % closed in err, err
        u.settimeout(5 * SLOW)
        assert u.recvfrom(10)[0] == b"\0"  # the probe: one zero byte, as ncat's
        rc, out, err = run("connect", "-z", "-u", host, closed)
        assert rc == 1 and out == b"", (rc, out, err)
        u.close()


@test
def udp_probe_as_ncat():
    need("ncat")
    u, open_port, closed = udp_ports(socket.AF_INET, "127.0.0.1")
    for port, want in ((open_port, 0), (closed, 1)):
        r = subprocess.run(["ncat", "-z", "-u", "127.0.0.1", str(port)], capture_output=True,
                           timeout=20 * SLOW)
        assert r.returncode == want, (port, r)
        rc, _, err = run("connect", "-z", "-u", "-w", "1s", "127.0.0.1", port)
        assert rc == want, (port, rc, err)
    u.close()


# ---------------------------------------------------------------- --progress

def read_pty(fd, until, timeout=10):
    """What the terminal shows until `until` (bytes) appears, or EOF."""
    out = b""
    deadline = time.time() + timeout * SLOW
    while until not in out and time.time() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                d = os.read(fd, 4096)
            except OSError:  # EIO: the other side is gone
                break
            if not d:
                break
            out += d
    return out


def progress_run(stderr_tty, size=2_000_000):
    """connect --progress with a file of `size` bytes on stdin to a server
    of ours that reads it all, then closes. Returns (status, stderr)."""
    d = tempfile.mkdtemp()
    src = os.path.join(d, "in")
    with open(src, "wb") as f:
        f.write(os.urandom(size))
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(10 * SLOW)
    master, slave = pty.openpty() if stderr_tty else (None, subprocess.PIPE)
    p = subprocess.Popen([BIN, "connect", "--progress", "127.0.0.1", str(srv.getsockname()[1])],
                         stdin=open(src, "rb"), stdout=subprocess.DEVNULL, stderr=slave)
    try:
        c, _ = srv.accept()
        got = 0
        c.settimeout(10 * SLOW)
        while got < size:
            n = len(c.recv(65536))
            assert n, "EOF after %d bytes" % got
            got += n
        if stderr_tty:
            os.close(slave)
            shown = read_pty(master, b"100%")  # the line reached the end of input
            c.close()
            p.wait(10 * SLOW)
            shown += read_pty(master, b"never", 1)
            return p.returncode, shown
        c.close()
        _, err = p.communicate(timeout=10 * SLOW)
        return p.returncode, err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if master is not None:
            os.close(master)
        srv.close()
        shutil.rmtree(d)


@test
def progress_on_a_terminal():
    rc, shown = progress_run(True)
    assert rc == 0, shown
    assert re.search(rb"\r> 1\.9 MiB  < 0 B  [\d.]+ [KMG]?i?B/s  100%  ETA 0:00", shown), shown
    assert shown.endswith(b"\r\x1b[K"), shown  # cleared at the end


@test
def progress_not_on_a_pipe():
    rc, err = progress_run(False, 100_000)
    assert rc == 0 and err == b"", (rc, err)


@test
def progress_waits_for_the_peer():
    """listen --progress draws nothing while no byte has moved (a listener
    waiting for its peer), then the line once the peer sends."""
    master, slave = pty.openpty()
    p = subprocess.Popen([BIN, "listen", "--progress", "127.0.0.1", "0"], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    try:
        head = read_pty(master, b"\n")
        m = re.search(rb"listening tcp://127\.0\.0\.1:(\d+)", head)
        assert m, head
        idle = read_pty(master, b"never", 1)  # about four ticks with nothing moving
        assert b"> " not in idle, idle
        with socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=10 * SLOW) as c:
            c.sendall(b"x" * 100000)
            shown = read_pty(master, b"< 97.7 KiB")
            assert re.search(rb"\r> 0 B  < 97\.7 KiB  [\d.]+ [KMG]?i?B/s", shown), shown
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
        os.close(master)


# ---------------------------------------------------------------- --ssl without --cert

def tls_client(port):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # a temporary certificate: checked by its fingerprint
    raw = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
    return ctx.wrap_socket(raw)


@test
def ssl_listen_without_cert_makes_a_temporary_one():
    for args in (["--ssl", "127.0.0.1", 0], ["tls://127.0.0.1:0"]):
        p, port = listen(*args)
        m = re.search(r"SHA-256 fingerprint: ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})\n", p.stderr())
        assert m, p.stderr()
        c = tls_client(port)
        der = c.getpeercert(binary_form=True)
        assert hashlib.sha256(der).hexdigest().upper() == m.group(1).replace(":", ""), m.group(1)
        c.sendall(b"over tls\n")
        p.wait_stdout(b"over tls\n")
        c.close()
        p.stop()
    # not over UDP: still refused (no DTLS), and no certificate made for it
    rc, _, err = run("listen", "--ssl", "-u", "127.0.0.1", 0)
    assert rc == 2 and "fingerprint" not in err, (rc, err)


@test
def ssl_listen_without_cert_with_ncat_client():
    need("ncat")
    p, port = listen("--ssl", "127.0.0.1", 0)
    subprocess.run(["ncat", "--ssl", "127.0.0.1", str(port)], input=b"from ncat\n",
                       capture_output=True, timeout=20 * SLOW)
    p.wait_stdout(b"from ncat\n")


@test
def ssl_options_under_ncat_names():
    """--ssl-cert/--ssl-key on listen, --ssl-trustfile on connect: the same
    as --cert/--key/--ca (ncat's spelling); a wrong CA still fails."""
    need("openssl")
    import tlscerts
    d = tlscerts.tempdir()
    p, port = listen("--ssl", "--ssl-cert", os.path.join(d, "server.pem"), "--ssl-key",
                     os.path.join(d, "server.key"), "--ssl-alpn", "x-test", "127.0.0.1", 0)
    rc, out, err = run("connect", "--ssl", "--ssl-trustfile", os.path.join(d, "ca.pem"),
                       "--ssl-alpn", "x-test", "localhost", port, input=b"ncat names\n")
    p.wait_stdout(b"ncat names\n")  # verified and through (the TLS close is another matter)
    assert "certificate" not in err.lower() and "alpn" not in err.lower(), err
    p.stop()
    p, port = listen("--ssl", "--ssl-cert", os.path.join(d, "server.pem"), "--ssl-key",
                     os.path.join(d, "server.key"), "127.0.0.1", 0)
    # ncat's --ssl-verify is accepted (csock verifies anyway): a wrong CA still fails
    # (alone, as ncat: it turns TLS on too)
    rc, out, err = run("connect", "--ssl-verify", "--ssl-trustfile",
                       os.path.join(d, "server.pem"), "localhost", port, input=b"x\n")
    assert rc == 1 and "certificate" in err.lower(), (rc, err)
    p.stop()
    rc, out, err = run("connect", "--ssl", "--ssl-verify", "--insecure", "localhost", port)
    assert rc == 2 and "give only one" in err, (rc, err)
    shutil.rmtree(d)


if __name__ == "__main__":
    main()
