#!/usr/bin/env python3
"""bench/compare.py: csock bench against the load generators it replaces,
same server, same cores, same run (issue 15's numbers).

  python3 bench/compare.py [--rounds 5] [--duration 5] [--only http,count,echo,c10k]
                          [--echo-shapes 100x64,1000x128] [--echo-warmup SECS]

  http  csock bench --http --threads 1 vs wrk -t1, same connections, against
        nginx (bench/http/nginx.conf.in: one worker) and csock serve http
        (--threads 1): requests/s of each and how far apart they are; and
        against "paced", a Python server that answers each request 20 ms
        after it came (its rate is set by the delay, not by how the client
        behaves: the two tools' numbers must agree there).
  count each tool's count of responses against nginx's access log (on for
        this part only): how many of the requests the server answered the
        tool reports (the rest are the ones in flight at the end).
  echo  csock bench --echo on the default backend (io_uring where the
        kernel allows it: streams), and with CSOCK_BACKEND=epoll (its
        sockets driven directly, and with --streams through csock streams)
        vs bench/loadgen.c (its epoll engine, and -U io_uring) against
        csock serve echo, for each --echo-shapes CONNSxSIZE: messages/s and
        the load generator's own CPU (user+sys from wait4, the whole
        process) per message.
  c10k  10,000 concurrent connections from one csock bench process against
        csock serve echo: connections made, messages, errors.

Servers run pinned to SERVER_CPU (0), load to LOAD_CPU (1); every round runs
each tool once per server, the order rotated a round; the table gives
medians, the server's CPU per request (/proc/PID/stat around the run), and
paired ratios to wrk / loadgen: the median over rounds of the ratio within
a round (same server instance, back to back), which a noisy shared machine
disturbs far less than a ratio of medians.
Run it under the machine's benchmark lock (flock /work/wt/bench.lock ...).
Needs build/csock, wrk and nginx; bench/peers/build.sh builds loadgen."""

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CSOCK = os.environ.get("CSOCK_BIN", os.path.join(ROOT, "build", "csock"))
LOADGEN = os.path.join(HERE, "peers", "bin", "loadgen")
SERVER_CPU = os.environ.get("SERVER_CPU", "0")
LOAD_CPU = os.environ.get("LOAD_CPU", "1")
TICK = os.sysconf("SC_CLK_TCK")


def default_backend():
    """The backend csock's loops get when CSOCK_BACKEND is unset (csock --version)."""
    try:
        out = subprocess.run([CSOCK, "--version"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return "?"
    m = re.search(r"event loop: (\w+)", out)
    return m.group(1) if m else "?"


DEFAULT_BACKEND = default_backend()


def proc_cpu(pid):
    """utime + stime of pid in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """A server pinned to SERVER_CPU; `wait_line` (csock) or a TCP port to
    poll (nginx) says when it is up."""

    def __init__(self, argv, port=None):
        self.p = subprocess.Popen(["taskset", "-c", SERVER_CPU] + argv, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        if port is None:
            line = self.p.stdout.readline().decode().strip()
            if not line.startswith("listening "):
                raise SystemExit("server %r said %r" % (argv, line))
            self.addr = line.split()[1]
            self.port = int(self.addr.rsplit(":", 1)[1])
        else:
            self.port = port
            self.addr = "tcp://127.0.0.1:%d" % port
            for _ in range(200):
                try:
                    socket.create_connection(("127.0.0.1", port), 0.1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            else:
                raise SystemExit("server %r did not come up" % argv)

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def run_load(argv, timeout):
    """Run argv pinned to LOAD_CPU: (exit status, stdout, its user+sys CPU s)."""
    with tempfile.TemporaryFile() as out:
        p = subprocess.Popen(["taskset", "-c", LOAD_CPU] + argv, stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                p.kill()
            time.sleep(0.02)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return p.returncode, out.read().decode(errors="replace"), ru.ru_utime + ru.ru_stime


def measure(server, argv, parse, timeout):
    """One load run: dict of rate, msgs, load CPU s, server CPU s."""
    c0 = proc_cpu(server.p.pid)
    rc, out, load_cpu = run_load(argv, timeout)
    c1 = proc_cpu(server.p.pid)
    r = parse(out)
    if r is None:
        raise SystemExit("%s: exit %d, output %r" % (argv[0], rc, out[-800:]))
    r.update(rc=rc, load_cpu=load_cpu, server_cpu=c1 - c0)
    return r


def parse_wrk(out):
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m or not rps:
        return None
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    return {"rate": float(rps.group(1)), "msgs": int(m.group(1)),
            "errors": (int(errs.group(1)) if errs else 0) + (1 if sock else 0)}


def parse_bench(out):
    try:
        d = json.loads(out[out.index("{"):])
    except ValueError:
        return None
    return {"rate": d["throughput"], "msgs": d["messages"], "errors": sum(d["errors"].values()),
            "engine": d.get("engine"), "self_cpu": d.get("cpu", {}).get("load_s"),
            "connects": d["connects"], "p99_us": d["latency_us"]["p99"]}


def parse_loadgen(out):
    m = re.search(r"msgs/s=([\d.]+)", out)
    if not m:
        return None
    p99 = re.search(r"p99_us=([\d.]+)", out)
    errs = re.search(r"errors=(\d+)", out)
    # its own CPU over the measured window (getrusage at the window's edges)
    cpu, secs = re.search(r"lg_cpu_pct=([\d.]+)", out), re.search(r"secs=([\d.]+)", out)
    msgs = re.search(r"\bmsgs=(\d+)", out)
    return {"rate": float(m.group(1)), "errors": int(errs.group(1)) if errs else 0,
            "self_cpu": float(cpu.group(1)) / 100 * float(secs.group(1)) if cpu and secs else None,
            "msgs": int(msgs.group(1)) if msgs else None,
            "p99_us": float(p99.group(1)) if p99 else None}


def nginx_conf(tmp, www, port):
    with open(os.path.join(HERE, "http", "nginx.conf.in")) as f:
        text = f.read().replace("@PORT@", str(port)).replace("@ROOT@", www).replace("@TMP@", tmp)
    path = os.path.join(tmp, "nginx.conf")
    with open(path, "w") as f:
        f.write(text)
    return path


def med(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else float("nan")


PACED = r"""
import asyncio, sys
async def handle(r, w):
    try:
        while True:
            head = await r.readuntil(b"\r\n\r\n")
            await asyncio.sleep(0.02)
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nhello world!")
            await w.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        w.close()
async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    print("listening tcp://127.0.0.1:%d" % srv.sockets[0].getsockname()[1], flush=True)
    await srv.serve_forever()
asyncio.run(main())
"""


def http_part(args, tmp, results):
    www = os.path.join(tmp, "www")
    os.makedirs(os.path.join(tmp, "nginx-body"), exist_ok=True)
    os.makedirs(www, exist_ok=True)
    with open(os.path.join(www, "small.txt"), "w") as f:
        f.write("hello world!")
    servers = {
        "nginx": lambda: Server(["nginx", "-c", nginx_conf(tmp, www, port), "-p", tmp], port=port),
        "csock serve http": lambda: Server([CSOCK, "serve", "http", www, "tcp://127.0.0.1:0", "--threads", "1"]),
        "paced (20 ms a response)": lambda: Server([sys.executable, "-c", PACED]),
    }
    d = args.duration
    for rnd in range(args.rounds):
        for name in list(servers)[rnd % 3:] + list(servers)[:rnd % 3]:
            port = free_port()
            srv = servers[name]()
            try:
                tools = [
                    ("wrk -t1", ["wrk", "-t1", "-c%d" % args.http_conns, "-d%ds" % d,
                                 "http://127.0.0.1:%d/small.txt" % srv.port], parse_wrk),
                    ("csock bench --http", [CSOCK, "bench", srv.addr, "--http", "/small.txt", "--threads", "1",
                                            "--conns", str(args.http_conns), "--duration", str(d), "--json", "-"],
                     parse_bench),
                ]
                if rnd % 2:
                    tools.reverse()
                for tool, argv, parse in tools:
                    r = measure(srv, argv, parse, d + 30)
                    r.update(part="http", server=name, tool=tool, round=rnd)
                    results.append(r)
                    print("  http round %d %-17s %-20s %9.0f req/s  load CPU %.2f s  server CPU %.2f s"
                          % (rnd, name, tool, r["rate"], r["load_cpu"], r["server_cpu"]), file=sys.stderr)
            finally:
                srv.stop()


def count_part(args, tmp, results):
    www = os.path.join(tmp, "www")
    os.makedirs(os.path.join(tmp, "nginx-body"), exist_ok=True)
    os.makedirs(www, exist_ok=True)
    with open(os.path.join(www, "small.txt"), "w") as f:
        f.write("hello world!")
    log = os.path.join(tmp, "access.log")
    for rnd in range(max(1, args.rounds // 2)):
        for tool in ("wrk -t1", "csock bench --http"):
            port = free_port()
            conf = nginx_conf(tmp, www, port)
            with open(conf) as f:
                text = f.read().replace("access_log off;", "access_log %s;" % log)
            with open(conf, "w") as f:
                f.write(text)
            if os.path.exists(log):
                os.unlink(log)
            srv = Server(["nginx", "-c", conf, "-p", tmp], port=port)
            try:
                if tool.startswith("wrk"):
                    argv, parse = ["wrk", "-t1", "-c%d" % args.http_conns, "-d%ds" % args.duration,
                                   "http://127.0.0.1:%d/small.txt" % port], parse_wrk
                else:
                    argv, parse = [CSOCK, "bench", srv.addr, "--http", "/small.txt", "--threads", "1", "--conns",
                                   str(args.http_conns), "--duration", str(args.duration), "--json", "-"], parse_bench
                r = measure(srv, argv, parse, args.duration + 30)
            finally:
                srv.stop()
            with open(log) as f:
                served = sum(1 for line in f if " /small.txt " in line)
            r.update(part="count", server="nginx, access log on", tool=tool, round=rnd, served=served)
            results.append(r)
            print("  count round %d %-20s reported %d, nginx logged %d (%.3f %%)"
                  % (rnd, tool, r["msgs"], served, 100.0 * r["msgs"] / served), file=sys.stderr)


def echo_part(args, tmp, results):
    """Each shape (CONNSxSIZE) is a table of its own: the tools against the
    same server instance, back to back, the order rotated a round."""
    d = args.duration
    shapes = [tuple(int(x) for x in shape.split("x")) for shape in args.echo_shapes.split(",")]
    for rnd in range(args.rounds):
        srv = Server([CSOCK, "serve", "echo", "tcp://127.0.0.1:0", "--threads", "1", "--max-conns", "20000"])
        try:
            for conns, size in shapes:
                w = args.echo_warmup
                lg = [LOADGEN, "-H", "127.0.0.1", "-p", str(srv.port), "-c", str(conns), "-s", str(size),
                      "-d", "1", "-t", str(d), "-w", str(w)]
                cb = [CSOCK, "bench", srv.addr, "--conns", str(conns), "--size", str(size), "--depth", "1",
                      "--duration", str(d), "--warmup", str(w), "--json", "-"]
                # csock bench as a user runs it (the default backend: io_uring
                # where the kernel allows it, streams), and on epoll with its
                # two engines (sockets driven directly; --streams).
                epoll = ["env", "CSOCK_BACKEND=epoll"]
                tools = [
                    ("loadgen (epoll)", lg, parse_loadgen),
                    ("loadgen -U (io_uring)", lg[:1] + ["-U"] + lg[1:], parse_loadgen),
                    ("csock bench --echo (default: %s)" % DEFAULT_BACKEND, cb, parse_bench),
                    ("CSOCK_BACKEND=epoll csock bench --echo", epoll + cb, parse_bench),
                    ("CSOCK_BACKEND=epoll csock bench --echo --streams", epoll + cb + ["--streams"], parse_bench),
                ]
                tools = tools[rnd % len(tools):] + tools[:rnd % len(tools)]
                part = "echo %dx%d B" % (conns, size)
                for tool, argv, parse in tools:
                    r = measure(srv, argv, parse, d + w + 30)
                    r["msgs"] = r.get("msgs") or r["rate"] * d
                    if w > 0 and r.get("self_cpu") is not None:
                        # With a warm-up, the measured window alone: each tool's
                        # own CPU there (the connects and warm-up are outside).
                        r["load_cpu_process"], r["load_cpu"] = r["load_cpu"], r["self_cpu"]
                    r.update(part=part, server="csock serve echo", tool=tool, round=rnd)
                    results.append(r)
                    print("  %s round %d %-40s %9.0f msg/s  load CPU %.2f s (%.2f us/msg)  server CPU %.2f s"
                          % (part, rnd, tool, r["rate"], r["load_cpu"], r["load_cpu"] * 1e6 / r["msgs"],
                             r["server_cpu"]), file=sys.stderr)
        finally:
            srv.stop()


def c10k_part(args, tmp, results):
    for rnd in range(max(1, args.rounds // 2)):
        srv = Server([CSOCK, "serve", "echo", "tcp://127.0.0.1:0", "--threads", "1", "--max-conns", "20000"])
        try:
            argv = [CSOCK, "bench", srv.addr, "--conns", "10000", "--duration", str(args.duration),
                    "--warmup", "2", "--timeout", "30", "--json", "-"]
            r = measure(srv, argv, parse_bench, args.duration + 60)
            r.update(part="c10k", server="csock serve echo", tool="csock bench --conns 10000", round=rnd)
            results.append(r)
            print("  c10k round %d: %d connects, %.0f msg/s, p99 %s us, errors %d, exit %d"
                  % (rnd, r["connects"], r["rate"], r["p99_us"], r["errors"], r["rc"]), file=sys.stderr)
        finally:
            srv.stop()


BASELINE = {"http": "wrk -t1", "count": "wrk -t1", "echo": "loadgen (epoll)"}  # by the part's first word


def paired(rows, server, tool, base, key):
    """Median over rounds of tool's key / base's key, both from the same
    round and server instance (the machine's slow phases cancel out)."""
    ratios = []
    for rnd in {r["round"] for r in rows}:
        a = [r for r in rows if r["round"] == rnd and r["server"] == server and r["tool"] == tool]
        b = [r for r in rows if r["round"] == rnd and r["server"] == server and r["tool"] == base]
        if a and b and b[0][key]:
            ratios.append(a[0][key] / b[0][key])
    return statistics.median(ratios) if ratios else float("nan")


def table(results):
    lines = []
    parts = []
    for r in results:
        if r["part"] not in parts:
            parts.append(r["part"])
    for part in parts:
        rows = [r for r in results if r["part"] == part]
        base = BASELINE.get(part.split()[0])
        for r in rows:
            r["load_us"] = r["load_cpu"] * 1e6 / max(1, r["msgs"])
            r["server_us"] = r["server_cpu"] * 1e6 / max(1, r["msgs"])
        lines.append("")
        lines.append("| %s: server | load generator | req/s (median) | load CPU us/req | server CPU us/req | "
                     "req/s vs %s (paired) | load CPU/req vs %s (paired) | errors |" % (part, base or "-", base or "-"))
        lines.append("|---|---|---:|---:|---:|---:|---:|---:|")
        keys = []
        for r in rows:
            if (r["server"], r["tool"]) not in keys:
                keys.append((r["server"], r["tool"]))
        for server, tool in keys:
            rs = [r for r in rows if r["server"] == server and r["tool"] == tool]
            extra = ""
            if part == "c10k":
                extra = " (connects %s)" % ", ".join(str(r["connects"]) for r in rs)
            if part == "count":
                extra = " (reported / logged by nginx: %s)" % ", ".join(
                    "%.2f %%" % (100.0 * r["msgs"] / r["served"]) for r in rs)
            vs = vc = "-"
            if base and tool != base:
                vs = "%.3fx" % paired(rows, server, tool, base, "rate")
                vc = "%.3fx" % paired(rows, server, tool, base, "load_us")
            lines.append("| %s | %s | %.0f | %.2f | %.2f | %s | %s | %d%s |" % (
                server, tool, med(rs, "rate"), med(rs, "load_us"), med(rs, "server_us"), vs, vc,
                sum(r["errors"] for r in rs), extra))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--http-conns", type=int, default=100)
    ap.add_argument("--echo-shapes", default="100x64,1000x128",
                    help="echo: CONNSxSIZE,... (connections x bytes a message), a table each")
    ap.add_argument("--echo-warmup", type=float, default=0,
                    help="echo: seconds of warm-up for every tool (loadgen -w, csock bench --warmup); "
                         "with it, the load CPU is each tool's own over the measured window "
                         "(loadgen connects before its clock starts, csock bench inside it)")
    ap.add_argument("--only", default="http,count,echo,c10k")
    ap.add_argument("--json", help="raw results into this file")
    args = ap.parse_args()
    parts = args.only.split(",")
    need = [CSOCK] + ([LOADGEN] if "echo" in parts else [])
    for path in need:
        if not os.access(path, os.X_OK):
            raise SystemExit("compare: %s missing (build csock; sh bench/peers/build.sh for loadgen)" % path)
    for tool in (["wrk", "nginx"] if "http" in parts or "count" in parts else []) + ["taskset"]:
        if not shutil.which(tool):
            raise SystemExit("compare: %s not installed" % tool)
    results = []
    with tempfile.TemporaryDirectory(prefix="csock-compare.") as tmp:
        os.chmod(tmp, 0o755)
        if "http" in parts:
            http_part(args, tmp, results)
        if "count" in parts:
            count_part(args, tmp, results)
        if "echo" in parts:
            echo_part(args, tmp, results)
        if "c10k" in parts:
            c10k_part(args, tmp, results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    print("host: kernel %s, %s; server on CPU %s, load on CPU %s; %d rounds x %d s, medians"
          % (os.uname().release, open("/sys/devices/system/cpu/vulnerabilities/meltdown").read().strip(),
             SERVER_CPU, LOAD_CPU, args.rounds, args.duration))
    if args.echo_warmup > 0:
        print("echo: %g s warm-up for every tool; load CPU = each tool's own over the measured window "
              "(server CPU: the whole run)" % args.echo_warmup)
    print(table(results))


if __name__ == "__main__":
    main()
