#!/usr/bin/env python3
"""Many concurrent TLS clients against `csock serve echo tls://`, each sending
1 MiB and checking every byte of the echo. CSOCK_TLS_CLIENTS (default 1000)
clients are split over CSOCK_TLS_PROCS (default 2) client processes running
asyncio; the run is bounded at 120 s."""
import asyncio
import os
import resource
import ssl
import subprocess
import sys
import time

from tlsutil import Suite

N = int(os.environ.get("CSOCK_TLS_CLIENTS", "1000"))
PROCS = int(os.environ.get("CSOCK_TLS_PROCS", "2"))
SIZE = 1 << 20
CHUNK = 32768
LIMIT_S = 120


def pattern(i):
    """1 MiB different for every client (so crossed streams would show)."""
    seed = (i * 2654435761) & 0xFFFFFFFF
    block = bytes(((seed >> (8 * (k % 4))) + k) & 0xFF for k in range(4096))
    return block * (SIZE // len(block))


async def one(i, port, ctx, errors):
    data = pattern(i)
    for attempt in range(5):
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                 server_hostname="localhost")
            break
        except OSError as e:  # a full accept queue under the burst: try again
            if attempt == 4:
                errors.append("client %d: connect: %s" % (i, e))
                return
            await asyncio.sleep(0.2 * (attempt + 1))

    async def send():
        for off in range(0, SIZE, CHUNK):
            w.write(data[off:off + CHUNK])
            await w.drain()

    sender = asyncio.ensure_future(send())
    got = 0
    while got < SIZE:
        chunk = await r.read(65536)
        if not chunk:
            errors.append("client %d: EOF after %d bytes" % (i, got))
            break
        if chunk != data[got:got + len(chunk)]:
            errors.append("client %d: wrong bytes at offset %d" % (i, got))
            break
        got += len(chunk)
    await sender
    w.close()
    try:
        await w.wait_closed()
    except (OSError, ssl.SSLError):
        pass


async def clients(first, count, port, cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    errors = []
    await asyncio.gather(*(one(i, port, ctx, errors) for i in range(first, first + count)))
    return errors


def child(first, count, port, cafile):
    errors = asyncio.run(clients(first, count, port, cafile))
    for e in errors[:20]:
        print(e, file=sys.stderr)
    sys.exit(1 if errors else 0)


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    S = Suite()
    # A 1000-client burst on 2 cores: the Python clients may take longer than
    # the default 10 s to get through every handshake.
    srv, port = S.serve("-m", str(N + 100), "--handshake-timeout", "100")

    def run_load():
        t0 = time.time()
        per = (N + PROCS - 1) // PROCS
        kids = []
        for k in range(PROCS):
            first, count = k * per, min(per, N - k * per)
            if count > 0:
                kids.append(subprocess.Popen([sys.executable, __file__, "--child", str(first),
                                              str(count), str(port), S.cert("ca.pem")]))
        bad = 0
        for p in kids:
            try:
                bad += p.wait(max(1, LIMIT_S - (time.time() - t0))) != 0
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                bad += 1
        took = time.time() - t0
        print("%d clients x 1 MiB echoed in %.1fs (%.0f MiB/s each way)" % (N, took, N / took))
        assert bad == 0, "%d client processes failed" % bad
        assert took < LIMIT_S
        assert srv.poll() is None, "server died"

    S.check("%d concurrent TLS clients, 1 MiB echo each, byte-exact" % N, run_load)
    S.finish()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    else:
        main()
