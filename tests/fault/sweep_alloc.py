#!/usr/bin/python3
"""Allocation-failure sweep (SQLite-style): run a program once to count its
allocations, then once per N with the N-th allocation failing
(tests/fault/failalloc.c, in a -DCSOCK_FAULT_INJECT=ON build with ASan).

Swept:
  unit  every test case of every cmocka program, one case per process
        (CSOCK_TEST_ONLY); an assertion failing because an allocation failed
        is fine, a crash, a sanitizer report or a hang is not. Leaks count
        only when the case still passed: a case that failed an assertion
        abandons its objects by design. A failure of the test program's own
        allocation is not swept (not the library's). A case whose RUN_UNTIL
        gave up is a "stall": the library may have swallowed the failure,
        or the test waited for what the refusal removed (triage in
        known.txt).
  cli   csock serve echo|upper|discard|chat|http (start, one client
        exchange, SIGTERM), csock connect, csock listen, csock listen
        --proxy-type socks5|http (the same, the client going through the
        proxy to a Python peer: SOCKS5 CONNECT to a name; HTTP CONNECT, then
        a GET of an absolute URI), csock bench (a
        short run against a Python echo peer, with --json and a --plot
        that overlays an earlier run). Each must exit
        (bounded) without a crash, sanitizer or leak report; status 2 (a
        wrong argument) is a bug under ENOMEM, 1 with a message is fine.

Which N: every N up to --full, then --sample more spread evenly over the
rest with a rotating --offset (printed; pass it back to reproduce).

  sweep_alloc.py [--build build-fault] [--part unit,cli] [--backends epoll]
                 [--full 48] [--sample 12] [--offset R] [-j 2] [--only SUBSTR]
Exit status 1 if a finding is not on tests/fault/known.txt.
"""

import argparse
import concurrent.futures
import contextlib
import os
import random
import re
import signal
import socket
import struct
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultkit  # noqa: E402
from faultkit import REPO  # noqa: E402


def points(count, full, sample, offset):
    ns = list(range(1, min(count, full) + 1))
    rest = count - full
    if rest > 0 and sample > 0:
        stride = -(-rest // sample)
        ns += range(full + 1 + offset % stride, count + 1, stride)
    return ns


def count_allocs(run_one, env):
    """Run once with no failure; returns (allocation count, seconds, outcome)."""
    fd, path = tempfile.mkstemp(prefix="failalloc")
    os.close(fd)
    try:
        t0 = time.monotonic()
        outcome = run_one(dict(env, CSOCK_FAILALLOC_COUNT=path), 60)
        took = time.monotonic() - t0
        with open(path) as f:
            counts = [int(x) for x in f.read().split()]
    finally:
        os.unlink(path)
    return (max(counts) if counts else 0), took, outcome


def repro(env, argv):
    keys = ("CSOCK_BACKEND", "CSOCK_TEST_ONLY", "CSOCK_FAILALLOC")
    return " ".join(["%s=%s" % (k, env[k]) for k in keys if k in env] +
                    [os.path.relpath(a, REPO) if a.startswith(REPO) else a for a in argv])


# ---- unit tests ----------------------------------------------------------

# Cases not swept: a test that waits without a deadline turns every refusal
# on its path into a full-timeout hang that says nothing new.
SKIP_CASES = {
    # its loop runs until the last of 40000 posts arrives: a refused post
    # (-ENOMEM, as documented) hangs it; csock_loop_post's failure is swept
    # through `csock serve` (SIGTERM) instead
    "test_post.posts_from_four_threads",
}


def unit_cases(build, only, skip):
    tdir = os.path.join(build, "tests")
    for prog in sorted(os.listdir(tdir)):
        path = os.path.join(tdir, prog)
        if not prog.startswith("test_") or not os.access(path, os.X_OK) or os.path.isdir(path):
            continue
        if prog in skip:
            continue
        st, out, _ = faultkit.run([path], faultkit.sanitizer_env({"CSOCK_TEST_LIST": "1"}), 30)
        for case in out.decode().split():
            name = "%s.%s" % (prog, case)
            if name in SKIP_CASES:
                continue
            if not only or only in name:
                yield name, [path], {"CSOCK_TEST_ONLY": case}


def unit_run(argv, name):
    def run_one(env, timeout):
        st, out, err = faultkit.run(argv, env, timeout)
        out = out.decode("utf-8", "replace")
        passed = st == 0 or (st == 23 and "[  FAILED  ]" not in out)
        if "Test failed with exception" in out:    # cmocka caught a signal
            err += "\n" + out[out.index("Test failed"):][:80]
            st = -11
        o = faultkit.classify(st, err, name, leaks_count=passed)
        m = STALL.search(out + err)
        if not o.bad and m and o.alloc:
            # RUN_UNTIL gave up: what the test waited for never happened.
            # Either the library swallowed the failure (no error reached a
            # callback) or the test waits for something the refusal rightly
            # removed; known.txt says which.
            o = faultkit.Outcome("stall", o.alloc[0].split(" ", 2)[1],
                                 "waited for " + m.group(1), err, st)
            o.alloc = faultkit.split_trace(err)[0]
        return o
    return run_one


STALL = re.compile(r"timed out waiting for (.*)")


# ---- the CLI -------------------------------------------------------------

LISTEN = rb"^listening (\S+)"


def _port(m):
    return int(m.group(1).rsplit(b":", 1)[1])


def _recv_until(s, until):
    """Read until `until` (bytes) arrived, or `until` bytes (an int);
    False if the peer closed first."""
    got = b""
    while (len(got) < until) if isinstance(until, int) else (until not in got):
        chunk = s.recv(65536)
        if not chunk:
            return False
        got += chunk
    return True


def _client(port, send, want_reply, timeout, greet=()):
    """One exchange; errors are the server's business (it may refuse).
    greet: (bytes, what _recv_until waits for) steps before `send`: a
    proxy's handshake."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            for out, until in greet:
                s.sendall(out)
                if not _recv_until(s, until):
                    return
            s.sendall(send)
            if want_reply:
                s.shutdown(socket.SHUT_WR)
                while s.recv(65536):
                    pass
    except OSError:
        pass


def _chat(port, timeout):
    try:
        a = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        b = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        with a, b:
            a.sendall(b"hello chat\n")
            _recv_until(b, b"hello chat")
    except OSError:
        pass


def serve_scenario(svc, www):
    def exchange(port, timeout):
        if svc == "chat":
            _chat(port, timeout)
        elif svc == "http":
            _client(port, b"GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                    True, timeout)
        else:
            _client(port, b"hello\n", svc != "discard", timeout)
    args = ["serve", "http", www] if svc == "http" else ["serve", svc]
    return args + ["tcp://127.0.0.1:0"], exchange


def cli_run(argv, name, exchange, timeout_unit):
    """Start, wait for `listening` (or the exit), exchange, SIGTERM."""
    def run_one(env, timeout):
        c = faultkit.Child(argv, env)
        m = c.wait_for(LISTEN, timeout_unit)
        if m:
            exchange(_port(m), timeout_unit / 2)
        st, err = c.finish(timeout_unit, signal.SIGTERM if m else None)
        return faultkit.classify(st, err, name, bad_status=(2,))
    return run_one


# Python peers: what csock connects to (handlers run one a connection).

def _echo(conn):
    """Echo to EOF: csock bench's peer, a proxy tunnel's target."""
    while True:
        data = conn.recv(65536)
        if not data:
            return
        conn.sendall(data)


def _reply(conn):
    """Read to EOF, then answer: csock connect's peer."""
    while conn.recv(65536):
        pass
    conn.sendall(b"reply\n")


def _origin(conn):
    """An HTTP origin for the proxy's forwarding: one request, one answer."""
    if _recv_until(conn, b"\r\n\r\n"):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n")


@contextlib.contextmanager
def peer(handler, timeout):
    """A loopback TCP server calling handler(conn) on a thread for each
    connection while the block runs; yields its port."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.5)
    stop = threading.Event()
    threads = []

    def serve(conn):
        with conn:
            try:
                conn.settimeout(timeout)
                handler(conn)
            except OSError:
                pass

    def accept():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            threads.append(threading.Thread(target=serve, args=(conn,), daemon=True))
            threads[-1].start()
    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        try:
            srv.shutdown(socket.SHUT_RDWR)      # wakes the accept
        except OSError:
            pass
        acceptor.join(timeout)
        for t in threads:
            t.join(timeout)
        srv.close()


def connect_run(argv_head, name, timeout_unit):
    """csock connect to a Python peer that reads to EOF and answers."""
    def run_one(env, timeout):
        with peer(_reply, timeout_unit) as port, tempfile.TemporaryFile() as inp:
            inp.write(b"hello\n")
            inp.seek(0)
            st, _, err = faultkit.run(argv_head + ["tcp://127.0.0.1:%d" % port], env,
                                      timeout_unit, stdin=inp)
        return faultkit.classify(st, err, name, bad_status=(2,))
    return run_one


def bench_run(argv_head, name, www, timeout_unit):
    """csock bench ADDR for 0.3 s against a Python echo peer, writing --json
    and a --plot that overlays an earlier run's JSON."""
    earlier = os.path.join(www, "earlier.json")
    with open(earlier, "w") as f:
        f.write('{"target": "tcp://x:1", "label": "earlier", "duration_s": 1.0, "messages": 2, '
                '"throughput": 2.0, "latency_us": {"min": 5, "p99": 9, "max": 9}, '
                '"series": {"interval_s": 0.1, "counts": [1, 1]}, '
                '"histogram": {"total": 2, "buckets": [[5, 5, 1], [9, 9, 1]]}}\n')

    def run_one(env, timeout):
        out = tempfile.mkdtemp(prefix="csockbench")
        with peer(_echo, 5) as port:
            argv = argv_head + ["tcp://127.0.0.1:%d" % port, "--conns", "2", "--duration",
                                "0.3", "--timeout", "2", "--json", os.path.join(out, "r.json"),
                                "--plot", os.path.join(out, "r.svg"), earlier]
            st, _, err = faultkit.run(argv, env, timeout_unit)
        for f in os.listdir(out):
            os.unlink(os.path.join(out, f))
        os.rmdir(out)
        return faultkit.classify(st, err, name, bad_status=(2,))
    return run_one


def listen_exchange(port, timeout):
    _client(port, b"hello\n", False, timeout)


def socks5_exchange(port, timeout):
    """SOCKS5 by hand: the greeting (no auth), CONNECT to a name (resolved
    on the proxy's lookup thread), a line through the tunnel to an echo peer."""
    with peer(_echo, timeout) as target:
        req = b"\x05\x01\x00\x03\x09localhost" + struct.pack(">H", target)
        _client(port, b"hello\n", True, timeout, greet=((b"\x05\x01\x00", 2), (req, 10)))


def http_proxy_exchange(port, timeout):
    """HTTP CONNECT to an echo peer and a line through the tunnel, then a GET
    of an absolute URI forwarded to a Python origin."""
    with peer(_echo, timeout) as target:
        connect = b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (target, target)
        _client(port, b"hello\n", True, timeout, greet=((connect, b"\r\n\r\n"),))
    with peer(_origin, timeout) as origin:
        _client(port, b"GET http://127.0.0.1:%d/x HTTP/1.1\r\nHost: x\r\n\r\n" % origin,
                True, timeout)


def cli_cases(build, only, www, timeout_unit):
    bin_ = os.path.join(build, "csock")
    for svc in ("echo", "upper", "discard", "chat", "http"):
        args, exchange = serve_scenario(svc, www)
        name = "serve_" + svc
        yield name, [bin_] + args, cli_run([bin_] + args, name, exchange, timeout_unit)
    yield "connect", [bin_, "connect", "PEER"], connect_run([bin_, "connect"], "connect", timeout_unit)
    argv = [bin_, "listen", "tcp://127.0.0.1:0"]
    yield "listen", argv, cli_run(argv, "listen", listen_exchange, timeout_unit)
    for ptype, exchange in (("socks5", socks5_exchange), ("http", http_proxy_exchange)):
        argv = [bin_, "listen", "--proxy-type", ptype, "tcp://127.0.0.1:0"]
        name = "listen_proxy_" + ptype
        yield name, argv, cli_run(argv, name, exchange, timeout_unit)
    yield "bench", [bin_, "bench", "PEER"], bench_run([bin_, "bench"], "bench", www, timeout_unit)


# ---- the sweep -----------------------------------------------------------

def sweep(report, jobs, items, full, sample, offset):
    """items: (name, argv, env, run_one, timeout). Counts, then sweeps each."""
    pool = concurrent.futures.ThreadPoolExecutor(jobs)
    for name, argv, env, run_one, timeout_min in items:
        count, took, base = count_allocs(run_one, env)
        report.programs.append(name)
        if base.bad:
            report.add(base, repro(env, argv) + "   (no failure injected)")
            continue
        ns = points(count, full, sample, offset)
        report.points += len(ns)
        timeout = max(timeout_min, 4 * took + 5)
        print("%-60s %5d allocations, %4d runs (%.2fs each)" % (name, count, len(ns), took),
              flush=True)

        def one(n):
            e = dict(env, CSOCK_FAILALLOC=str(n), CSOCK_FAILALLOC_TRACE="1")
            return n, e, run_one(e, timeout)
        for n, e, outcome in pool.map(one, ns):
            report.add(outcome, repro(e, argv))
    pool.shutdown()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(REPO, "build-fault"))
    ap.add_argument("--part", default="unit,cli")
    ap.add_argument("--backends", default="epoll")
    ap.add_argument("--full", type=int, default=48)
    ap.add_argument("--sample", type=int, default=12)
    ap.add_argument("--offset", type=int, default=None)
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--only", default="")
    ap.add_argument("--timeout", type=float, default=10,
                    help="seconds per CLI run, at least (and for each wait inside it)")
    ap.add_argument("--unit-timeout", type=float, default=30,
                    help="seconds per unit-test run, at least: longer than the tests' own "
                         "RUN_UNTIL deadlines, so a test whose awaited event an allocation "
                         "failure removed fails its assertion instead of counting as a hang")
    ap.add_argument("--skip", default="test_http1_parse,test_addr,test_error",
                    help="unit programs not swept (the parser and address code allocate "
                         "nothing: every failure there is in test code; the fuzzers cover them)")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    offset = a.offset if a.offset is not None else random.randrange(1 << 20)
    print("sweep_alloc: build %s, every N up to %d then %d sampled, --offset %d"
          % (build, a.full, a.sample, offset), flush=True)
    report = faultkit.Report("allocation sweep")
    www = tempfile.mkdtemp(prefix="csockwww")
    with open(os.path.join(www, "index.html"), "w") as f:
        f.write("<p>hello</p>\n")
    for backend in a.backends.split(","):
        base = faultkit.sanitizer_env({"CSOCK_BACKEND": backend})
        items = []
        if "unit" in a.part:
            for name, argv, extra in unit_cases(build, a.only, a.skip.split(",")):
                items.append((backend + "." + name, argv, dict(base, **extra),
                              unit_run(argv, name), a.unit_timeout))
        if "cli" in a.part:
            for name, argv, run_one in cli_cases(build, a.only, www, a.timeout):
                if not a.only or a.only in name:
                    items.append((backend + "." + name, argv, base, run_one, a.timeout))
        sweep(report, a.jobs, items, a.full, a.sample, offset)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
