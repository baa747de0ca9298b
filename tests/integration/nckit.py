"""Helpers for the WebSocket tests of csock connect / listen / serve chat
(test_nc_ws*.py): csock as an asyncio child, the `listening` line, Python's
websockets (Debian python3-websockets) and raw HTTP over a socket."""
import asyncio
import importlib.util
import os
import signal
import socket
import sys

SYSTEM_PYTHON = "/usr/bin/python3"


def reexec_with_websockets(path):
    """Debian's python3-websockets is installed for Debian's python3: when
    ctest found another interpreter that lacks it, run there."""
    if (importlib.util.find_spec("websockets") is None
            and os.path.realpath(sys.executable) != os.path.realpath(SYSTEM_PYTHON)
            and os.access(SYSTEM_PYTHON, os.X_OK)):
        os.execv(SYSTEM_PYTHON, [SYSTEM_PYTHON, os.path.abspath(path)] + sys.argv[1:])


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import csocktest as ct  # noqa: E402


def websockets():
    try:
        import websockets as w
    except ImportError:
        raise ct.Skipped("python3-websockets not installed")
    return w


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, ct.T(timeout)))


class Child:
    """csock as an asyncio child process; killed (its group) by close()."""

    def __init__(self, proc, argv):
        self.p, self.argv, self.err = proc, argv, b""

    @classmethod
    async def start(cls, *args):
        argv = [ct.BIN] + list(args)
        p = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True)
        return cls(p, argv)

    async def line(self, stream=None, timeout=10):
        s = stream or self.p.stdout
        got = await asyncio.wait_for(s.readline(), ct.T(timeout))
        ct.check(got.endswith(b"\n"), "%s: no line, got %r" % (" ".join(self.argv), got))
        return got[:-1].decode()

    async def read(self, n, timeout=10):
        return await asyncio.wait_for(self.p.stdout.readexactly(n), ct.T(timeout))

    async def listening(self, stream="stderr", timeout=15):
        """The address of the `listening ADDR` line."""
        s = self.p.stderr if stream == "stderr" else self.p.stdout
        while True:
            line = await self.line(s, timeout)
            if line.startswith("listening "):
                return line[len("listening "):]

    async def send(self, data, close=False):
        self.p.stdin.write(data)
        await self.p.stdin.drain()
        if close:
            self.p.stdin.close()

    async def finish(self, timeout=15):
        """Wait for the exit; returns (status, stdout rest, stderr)."""
        out, err = await asyncio.wait_for(self.p.communicate(), ct.T(timeout))
        self.err += err
        return self.p.returncode, out, self.err.decode("utf-8", "replace")

    async def close(self):
        if self.p.returncode is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await self.p.wait()


def hostport(url):
    """"127.0.0.1", 8080 from ws://127.0.0.1:8080/path."""
    hp = url.split("//", 1)[1].split("/", 1)[0]
    host, port = hp.rsplit(":", 1)
    return host.strip("[]"), int(port)


def http_get(url, path=None, headers=""):
    """A raw GET (no upgrade) to the ws:// URL's host: (status, head, body)."""
    host, port = hostport(url)
    path = path or "/" + url.split("//", 1)[1].split("/", 1)[1]
    with socket.create_connection((host, port), timeout=ct.T(10)) as s:
        s.sendall(("GET %s HTTP/1.1\r\nHost: %s:%d\r\n%sConnection: close\r\n\r\n"
                   % (path, host, port, headers)).encode())
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    head, _, body = data.partition(b"\r\n\r\n")
    head = head.decode("latin-1")
    return int(head.split(" ", 2)[1]), head, body


def field(head, name):
    for line in head.split("\r\n")[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == name.lower():
            return v.strip()
    return None
