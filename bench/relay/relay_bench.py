#!/usr/bin/env python3
"""The csock proxy benchmark (issue 14): csock proxy against HAProxy in TCP
mode (with and without splice) and socat, one proxy at a time on CPU
PROXY_CPU, the load (csock bench) and the backend (csock serve echo) on
LOAD_CPU. Run by bench/relay/run.sh under the bench lock.

Scenarios, each ROUNDS times, proxies in rotated order, medians printed:
  tput1    one connection, 64 KiB messages echoed, 4 in flight: MB/s each way
  tput100  100 connections, 16 KiB messages echoed: MB/s each way
  connrate 20 concurrent clients, each: connect, one 64-byte echo, close
Beside each: the proxy's CPU time (user+sys, its children's too: socat
forks) per MB relayed (both ways) or per connection.
Then memory: IDLE_PAIRS idle relayed pairs (each opened and one byte
echoed through it), the proxy's RSS growth per pair.

csock is csock proxy on the default backend (io_uring where the kernel
allows it); csock_epoll is CSOCK_BACKEND=epoll csock proxy; both relay
plain sockets with the splice relay (splice while a direction streams, a
copy while it carries messages). csock_nosplice is csock proxy --no-splice
on epoll (the stream relay, bytes copied through user space as HAProxy
without splice does). csock_b and csock_b_epoll are the same as csock and
csock_epoll with the binary $CSOCK_B (an A/B of two builds in one run).
Environment: CSOCK (the binary), CSOCK_B, ROUNDS (5), DURATION (5), PROXIES,
PROXY_CPU (0), LOAD_CPU (1), IDLE_PAIRS (9000), OUT (a temp dir).
"""
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

CSOCK = os.environ.get("CSOCK", "build/csock")
ROUNDS = int(os.environ.get("ROUNDS", "5"))
DURATION = os.environ.get("DURATION", "5")
PROXIES = os.environ.get("PROXIES", "csock csock_epoll csock_nosplice haproxy haproxy_splice socat").split()
PROXY_CPU = os.environ.get("PROXY_CPU", "0")
LOAD_CPU = os.environ.get("LOAD_CPU", "1")
IDLE_PAIRS = int(os.environ.get("IDLE_PAIRS", "9000"))
OUT = os.environ.get("OUT") or tempfile.mkdtemp(prefix="csock-bench-relay-")
TICK = os.sysconf("SC_CLK_TCK")
ONLY = os.environ.get("SCENARIOS", "").split()  # a subset of the scenarios below

SCENARIOS = {
    "tput1": ["-s", "65536", "-c", "1", "-d", "4"],
    "tput100": ["-s", "16384", "-c", "100", "-d", "1"],
    "connrate": ["--connect", "-s", "64", "-c", "20"],
}
if ONLY:
    SCENARIOS = {k: v for k, v in SCENARIOS.items() if k in ONLY}

# maxconn/maxpipes: what fits RLIMIT_NOFILE's hard limit of this host (20000).
HAPROXY_CONF = """global
    nbthread 1
    maxconn 9500
    maxpipes 200
defaults
    mode tcp
    timeout connect 10s
    timeout client 1h
    timeout server 1h
    maxconn 9500
    {splice}
frontend fe
    bind 127.0.0.1:{port}
    default_backend be
backend be
    server s1 127.0.0.1:{backend}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what):
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit("%s exited: %s" % (what, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("%s did not listen" % what)


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime stime cutime cstime: fields 14-17 (1-based), 12-15 after ")"
    return sum(int(x) for x in fields[11:15]) / TICK


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def start_proxy(kind, backend_port):
    port = free_port()
    pin = ["taskset", "-c", PROXY_CPU]
    if kind in ("csock", "csock_epoll", "csock_nosplice", "csock_b", "csock_b_epoll"):
        env = [] if kind in ("csock", "csock_b") else ["env", "CSOCK_BACKEND=epoll"]
        binary = os.environ["CSOCK_B"] if kind.startswith("csock_b") else CSOCK
        argv = env + pin + [binary, "proxy", "tcp://127.0.0.1:%d" % port,
                            "--to", "tcp://127.0.0.1:%d" % backend_port]
        if kind == "csock_nosplice":
            argv.append("--no-splice")
    elif kind.startswith("haproxy"):
        conf = os.path.join(OUT, "haproxy-%s.cfg" % kind)
        with open(conf, "w") as f:
            f.write(HAPROXY_CONF.format(port=port, backend=backend_port,
                                        splice="option splice-auto" if kind == "haproxy_splice" else ""))
        argv = pin + ["/usr/sbin/haproxy", "-f", conf, "-db"]
    elif kind == "socat":
        argv = pin + ["socat", "TCP-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr,backlog=4096" % port,
                      "TCP:127.0.0.1:%d" % backend_port]
    else:
        sys.exit("unknown proxy " + kind)
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(os.path.join(OUT, kind + ".err"), "a"))
    wait_port(port, p, kind)
    return p, port


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_bench(port, scenario):
    argv = ["taskset", "-c", LOAD_CPU, CSOCK, "bench", "tcp://127.0.0.1:%d" % port,
            "-D", DURATION, "-w", "1", "--json", "-"] + SCENARIOS[scenario]
    r = subprocess.run(argv, capture_output=True, timeout=float(DURATION) + 60)
    return json.loads(r.stdout)


def measure(kind, backend_port, scenario):
    p, port = start_proxy(kind, backend_port)
    try:
        c0 = cpu_seconds(p.pid)
        res = run_bench(port, scenario)
        time.sleep(0.3)  # socat's children exit and are reaped: their CPU lands in cutime
        c1 = cpu_seconds(p.pid)
    finally:
        stop(p)
    errors = sum(res["errors"].values())
    warm = float(res["warmup_s"])
    total = float(res["duration_s"]) + warm
    # CPU covers warm-up + measured time; scale to the measured part.
    cpu = (c1 - c0) * float(res["duration_s"]) / total
    if scenario == "connrate":
        rate = res["throughput"]
        per = cpu / max(res["messages"], 1) * 1e6  # us per connection
        return rate, per, errors
    mb_each_way = res["bytes"] / 1e6 / float(res["duration_s"])
    per = cpu / max(2 * res["bytes"] / 1e6, 1e-9) * 1e6  # us per MB relayed (both ways)
    return mb_each_way, per, errors


def idle_pairs(kind, backend_port):
    """Open IDLE_PAIRS connections through the proxy, echo one byte on each,
    and report the proxy's RSS growth per pair."""
    p, port = start_proxy(kind, backend_port)
    socks = []
    try:
        time.sleep(0.3)
        base = rss_kib(p.pid)
        for i in range(IDLE_PAIRS):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"x")
            socks.append(s)
        for s in socks:
            if s.recv(1) != b"x":
                sys.exit("%s: a pair did not echo" % kind)
        time.sleep(0.5)
        grown = rss_kib(p.pid) - base
    finally:
        for s in socks:
            s.close()
        stop(p)
    return grown * 1024 / IDLE_PAIRS


def main():
    os.makedirs(OUT, exist_ok=True)
    backend = free_port()
    be = subprocess.Popen(["taskset", "-c", LOAD_CPU, CSOCK, "serve", "echo", "-t", "1",
                           "tcp://127.0.0.1:%d" % backend],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(backend, be, "backend")
    results = {}  # (proxy, scenario) -> [(value, cpu_per, errors)]
    tsv = open(os.path.join(OUT, "results.tsv"), "w")
    tsv.write("round\tproxy\tscenario\tvalue\tcpu_per\terrors\n")
    try:
        for rnd in range(ROUNDS):
            order = PROXIES[rnd % len(PROXIES):] + PROXIES[:rnd % len(PROXIES)]
            for scenario in SCENARIOS:
                for kind in order:
                    v, per, err = measure(kind, backend, scenario)
                    results.setdefault((kind, scenario), []).append((v, per, err))
                    tsv.write("%d\t%s\t%s\t%.1f\t%.2f\t%d\n" % (rnd, kind, scenario, v, per, err))
                    tsv.flush()
                    print("# round %d %-15s %-9s %10.1f  cpu %8.2f  errors %d"
                          % (rnd, kind, scenario, v, per, err), file=sys.stderr, flush=True)
        mem = {}
        if IDLE_PAIRS:
            for kind in PROXIES:
                if kind == "socat":
                    continue  # a process per connection: not comparable
                mem[kind] = idle_pairs(kind, backend)
    finally:
        stop(be)
    print("| proxy | 1 conn MB/s each way | CPU us/MB | 100 conns MB/s each way | CPU us/MB "
          "| conn/s | CPU us/conn | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for kind in PROXIES:
        row = [kind]
        errs = 0
        for scenario in ("tput1", "tput100", "connrate"):
            rs = results.get((kind, scenario))
            if not rs:
                row += ["-", "-"]
                continue
            row.append("%.0f" % statistics.median(r[0] for r in rs))
            row.append("%.1f" % statistics.median(r[1] for r in rs))
            errs += sum(r[2] for r in rs)
        row.append(str(errs))
        print("| " + " | ".join(row) + " |")
    if mem:
        print()
        print("| proxy | %d idle pairs: RSS growth per pair |" % IDLE_PAIRS)
        print("|---|---:|")
        for kind, per in mem.items():
            print("| %s | %.0f bytes |" % (kind, per))
    print("\n(raw rows: %s)" % os.path.join(OUT, "results.tsv"))


if __name__ == "__main__":
    main()
