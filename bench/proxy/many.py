#!/usr/bin/env python3
"""Many concurrent clients through a SOCKS5 proxy (bench/proxy/run.sh).

Each of --clients connections asks the proxy (SOCKS5, no authentication,
an IPv4 target) for the echo server at --target-port, sends 64 KiB of its
own random bytes and checks the echo. With every tunnel open and idle ("at
rest") the proxy's RSS is read from /proc; then each client sends 16 KiB
more, half-closes and checks the whole echo up to EOF. Prints the count of
byte-exact clients and the proxy's RSS: before, at rest, and per tunnelled
pair ((at rest - before) / clients)."""
import argparse
import asyncio
import random
import resource
import sys


def rss_kib(pid, field="VmRSS"):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


async def client(i, args, opened, rest):
    rnd = random.Random(i)
    first, second = rnd.randbytes(64 << 10), rnd.randbytes(16 << 10)
    r, w = await asyncio.open_connection("127.0.0.1", args.proxy_port)
    try:
        w.write(b"\x05\x01\x00")
        if await r.readexactly(2) != b"\x05\x00":
            return "greeting refused"
        w.write(b"\x05\x01\x00\x01\x7f\x00\x00\x01" + args.target_port.to_bytes(2, "big"))
        reply = await r.readexactly(10)
        if reply[:2] != b"\x05\x00":
            return "request refused: %r" % reply
        w.write(first)
        if await r.readexactly(len(first)) != first:
            return "first echo differs"
        opened.append(i)
        await rest.wait()
        w.write(second)
        w.write_eof()
        got = await r.read()
        while True:
            more = await r.read()
            if not more:
                break
            got += more
        return True if got == second else "second echo: %d of %d bytes" % (len(got), len(second))
    finally:
        w.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--proxy-pid", type=int, required=True)
    ap.add_argument("--proxy-port", type=int, required=True)
    ap.add_argument("--target-port", type=int, required=True)
    ap.add_argument("--clients", type=int, default=1000)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.clients + 64)), hard))
    before = rss_kib(args.proxy_pid)
    opened, rest = [], asyncio.Event()
    tasks = [asyncio.create_task(client(i, args, opened, rest)) for i in range(args.clients)]
    while len(opened) < args.clients and not any(t.done() for t in tasks):
        await asyncio.sleep(0.05)
    await asyncio.sleep(1)  # let the last echoes' buffers go back
    at_rest = rss_kib(args.proxy_pid)
    peak = rss_kib(args.proxy_pid, "VmHWM")
    rest.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    ok = sum(1 for x in results if x is True)
    bad = [x for x in results if x is not True][:3]
    per_pair = (at_rest - before) / max(len(opened), 1)
    print("| %d SOCKS5 clients at once | byte-exact %d/%d | proxy RSS before %d KiB, "
          "%d tunnels at rest %d KiB (peak %d KiB) | %.2f KiB per tunnelled pair |"
          % (args.clients, ok, args.clients, before, len(opened), at_rest, peak, per_pair))
    if bad:
        print("failures (first 3): %r" % bad, file=sys.stderr)
    return 0 if ok == args.clients else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
