#!/usr/bin/env python3
"""A protocol battery for csock's WebSocket server, its cases named after
the Autobahn|Testsuite sections they follow (1 framing, 2 pings, 3 reserved
bits, 4 opcodes, 5 fragmentation, 6 UTF-8, 7 closing, 9 limits): raw frames
from a plain socket to the C echo server (test_ws_peer.c), and the frames,
close code and TCP close it must answer with. Each case has a connection
of its own. Python's standard library only (no websockets needed)."""
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import csocktest as ct  # noqa: E402
from test_ws_interop import start_server, stop_server  # noqa: E402

TEXT, BINARY, CLOSE, PING, PONG, CONT = 1, 2, 8, 9, 10, 0
SERVER = []


def server():
    return SERVER[0][1]


def section(fn):
    """A section runs against a server of its own (max_message 8 MiB),
    which must still echo afterwards and exit cleanly."""
    def run():
        SERVER[:] = [start_server("8388608")]
        count = [0]
        CASES[:] = [count]
        try:
            fn()
            r = Raw()
            r.send(TEXT, b"still here")
            r.expect(TEXT, b"still here", "the server after the section")
            r.close()
        finally:
            stop_server(SERVER[0][0])
        print("  %d cases" % count[0], flush=True)
    run.__name__ = fn.__name__
    return run


CASES = []


class Raw:
    """A client speaking raw frames."""

    def __init__(self):
        host, port = server().rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=ct.T(10))
        self.s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       b"Sec-WebSocket-Version: 13\r\n\r\n")
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            d = self.s.recv(4096)
            ct.check(d, "no handshake answer")
            self.buf += d
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        ct.check(head.startswith(b"HTTP/1.1 101 "), "handshake: %r" % head)
        ct.check(b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head, "accept key: %r" % head)

    def frame_bytes(self, op, payload=b"", fin=True, rsv=0, mask=True, length=None):
        n = len(payload) if length is None else length
        b0 = (0x80 if fin else 0) | (rsv << 4) | op
        m = 0x80 if mask else 0
        if n < 126:
            h = struct.pack("!BB", b0, m | n)
        elif n < 65536:
            h = struct.pack("!BBH", b0, m | 126, n)
        else:
            h = struct.pack("!BBQ", b0, m | 127, n)
        if not mask:
            return h + payload
        key = os.urandom(4)
        body = bytes(c ^ key[i % 4] for i, c in enumerate(payload)) if len(payload) < 4096 else \
            _mask_big(payload, key)
        return h + key + body

    def send(self, op, payload=b"", **kw):
        self.s.sendall(self.frame_bytes(op, payload, **kw))

    def _fill(self, n):
        while len(self.buf) < n:
            d = self.s.recv(1 << 20)
            if not d:
                return False
            self.buf += d
        return True

    def frame(self):
        """The server's next frame (fin, rsv, op, payload), None at EOF."""
        if not self._fill(2):
            return None
        b0, b1 = self.buf[0], self.buf[1]
        ct.check(not b1 & 0x80, "the server masked a frame")
        n, off = b1 & 0x7f, 2
        if n == 126:
            self._fill(4)
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._fill(10)
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
        ct.check(self._fill(off + n), "the server closed inside a frame")
        payload = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        return (b0 >> 7, (b0 >> 4) & 7, b0 & 15, payload)

    def expect(self, op, payload, case):
        f = self.frame()
        ct.check(f is not None, "%s: EOF, wanted opcode %d" % (case, op))
        ct.check_eq((f[2], f[3]) if len(f[3]) < 200 else (f[2], len(f[3])),
                    (op, payload) if len(payload) < 200 else (op, len(payload)), case)

    def expect_close(self, code, case):
        """Frames may come first (echoes of what was valid); then a close
        with `code` (None: one without a code), then the TCP close."""
        while True:
            f = self.frame()
            ct.check(f is not None, "%s: EOF without a close frame" % case)
            if f[2] == CLOSE:
                break
        got = struct.unpack("!H", f[3][:2])[0] if len(f[3]) >= 2 else None
        ct.check_eq(got, code, "%s: close code" % case)
        self.expect_eof(case)

    def expect_eof(self, case):
        self.s.settimeout(ct.T(10))
        while True:
            try:
                d = self.s.recv(65536)
            except ConnectionResetError:
                return
            if not d:
                return
            ct.check(len(d) < (1 << 24), "%s: data instead of the TCP close" % case)

    def close(self):
        self.s.close()


def _mask_big(payload, key):
    k = int.from_bytes(key * 2, "little")
    n8 = len(payload) // 8 * 8
    words = memoryview(payload[:n8]).cast("Q")
    out = bytearray(len(payload))
    ow = memoryview(out).cast("B")
    import array
    a = array.array("Q", words)
    for i in range(len(a)):
        a[i] ^= k
    ow[:n8] = a.tobytes()
    for i in range(n8, len(payload)):
        out[i] = payload[i] ^ key[i % 4]
    return bytes(out)


def case(name, fn):
    r = Raw()
    try:
        fn(r, name)
    finally:
        r.close()
    CASES[0][0] += 1


def echo_case(op, payload, chunk=None):
    def run(r, name):
        data = r.frame_bytes(op, payload)
        if chunk:
            for i in range(0, len(data), chunk):
                r.s.sendall(data[i:i + chunk])
        else:
            r.s.sendall(data)
        r.expect(op, payload, name)
        r.send(CLOSE, struct.pack("!H", 1000))
        r.expect_close(1000, name)
    return run


def fails_with(code, *frames):
    """Send the frames (tuples of Raw.send args, or bytes), expect a close."""
    def run(r, name):
        for f in frames:
            if isinstance(f, bytes):
                r.s.sendall(f)
            else:
                r.send(*f[:2], **(f[2] if len(f) > 2 else {}))
        r.expect_close(code, name)
    return run


# ---- 1 framing --------------------------------------------------------------------


@section
def test_1_framing():
    for i, n in enumerate([0, 125, 126, 127, 128, 65535, 65536]):
        case("1.1.%d" % (i + 1), echo_case(TEXT, b"*" * n))
        case("1.2.%d" % (i + 1), echo_case(BINARY, bytes([0xfe]) * n))
    case("1.1.8", echo_case(TEXT, b"*" * 65536, chunk=997))
    case("1.2.8", echo_case(BINARY, bytes([0xfe]) * 65536, chunk=997))


# ---- 2 pings ------------------------------------------------------------------------


@section
def test_2_pings():
    def ping(payload, chunk=None):
        def run(r, name):
            data = r.frame_bytes(PING, payload)
            for i in range(0, len(data), chunk or len(data)):
                r.s.sendall(data[i:i + (chunk or len(data))])
            r.expect(PONG, payload, name)
        return run
    case("2.1", ping(b""))
    case("2.2", ping(b"Hello, world!"))
    case("2.3", ping(bytes([0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff])))
    case("2.4", ping(b"*" * 125))
    case("2.5", fails_with(1002, (PING, b"*" * 126)))
    case("2.6", ping(b"*" * 125, chunk=1))

    def unsolicited(payload):
        def run(r, name):
            r.send(PONG, payload)
            r.send(TEXT, b"after")
            r.expect(TEXT, b"after", name)
        return run
    case("2.7", unsolicited(b""))
    case("2.8", unsolicited(b"unsolicited pong payload"))

    def many(r, name):
        for i in range(10):
            r.send(PING, b"ping %d" % i)
        for i in range(10):
            r.expect(PONG, b"ping %d" % i, name)
    case("2.10", many)


# ---- 3 reserved bits ----------------------------------------------------------------


@section
def test_3_reserved_bits():
    case("3.1", fails_with(1002, (TEXT, b"Hello", {"rsv": 4})))
    case("3.2", fails_with(1002, (TEXT, b"Hello"), (TEXT, b"Hello", {"rsv": 2}), (PING, b"")))
    case("3.3", fails_with(1002, (TEXT, b"Hello"), (TEXT, b"Hello", {"rsv": 6}), (PING, b"")))
    case("3.4", fails_with(1002, (TEXT, b"Hello"), (TEXT, b"Hello", {"rsv": 1}), (PING, b"")))
    case("3.5", fails_with(1002, (BINARY, b"\xff" * 8, {"rsv": 5})))
    case("3.6", fails_with(1002, (PING, b"Hello", {"rsv": 3})))
    case("3.7", fails_with(1002, (CLOSE, struct.pack("!H", 1000), {"rsv": 7})))


# ---- 4 opcodes ------------------------------------------------------------------------


@section
def test_4_opcodes():
    for i, op in enumerate([3, 4, 5, 6, 7]):
        case("4.1.%d" % (i + 1), fails_with(1002, (TEXT, b"x"), (op, b"reserved" if i % 2 else b""),
                                            (PING, b"")))
    for i, op in enumerate([11, 12, 13, 14, 15]):
        case("4.2.%d" % (i + 1), fails_with(1002, (TEXT, b"x"), (op, b"reserved" if i % 2 else b""),
                                            (PING, b"")))


# ---- 5 fragmentation ------------------------------------------------------------------


@section
def test_5_fragmentation():
    case("5.1", fails_with(1002, (PING, b"frag", {"fin": False}), (CONT, b"ment")))
    case("5.2", fails_with(1002, (PONG, b"frag", {"fin": False}), (CONT, b"ment")))

    def frags(op, parts, pings=False, chunked=False):
        def run(r, name):
            for i, p in enumerate(parts):
                data = r.frame_bytes(op if i == 0 else CONT, p, fin=i == len(parts) - 1)
                if chunked:
                    for j in range(len(data)):
                        r.s.sendall(data[j:j + 1])
                else:
                    r.s.sendall(data)
                if pings and i < len(parts) - 1:
                    r.send(PING, b"between %d" % i)
                    r.expect(PONG, b"between %d" % i, name)
            r.expect(op, b"".join(parts), name)
        return run
    case("5.3", frags(TEXT, [b"frag", b"ment"]))
    case("5.4", frags(BINARY, [b"\x00\x01", b"\x02"]))
    case("5.6", frags(TEXT, [b"frag", b"ment"], pings=True))
    case("5.7", frags(TEXT, [b"fr", b"ag", b"me", b"nt"], pings=True, chunked=True))
    case("5.8", frags(TEXT, [b""] * 3 + [b"x"]))
    case("5.9", fails_with(1002, (CONT, b"nothing to continue"), (TEXT, b"x")))
    case("5.10", fails_with(1002, (CONT, b"nothing", {"fin": False}), (TEXT, b"x")))
    case("5.15", fails_with(1002, (TEXT, b"a", {"fin": False}), (CONT, b"b"),
                            (CONT, b"c", {"fin": False}), (TEXT, b"d")))
    case("5.18", fails_with(1002, (TEXT, b"a", {"fin": False}), (TEXT, b"b")))
    case("5.19", frags(TEXT, [b"%d" % i for i in range(5)], pings=True))


# ---- 6 UTF-8 ------------------------------------------------------------------------------

VALID = [b"", b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", b"Hello-\xc2\xb5@\xc3\x9f\xc3\xb6",
         b"\x00", b"\xc2\x80", b"\xe0\xa0\x80", b"\xf0\x90\x80\x80", b"\x7f", b"\xdf\xbf",
         b"\xef\xbf\xbf", b"\xf4\x8f\xbf\xbf", b"\xed\x9f\xbf", b"\xee\x80\x80", b"\xef\xbf\xbd"]
INVALID = [b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited", b"\x80", b"\xbf",
           b"\x80\xbf\x80", b"\xc0 ", b"\xe0\x80 ", b"\xf8\x88\x80\x80\x80", b"\xfe", b"\xff",
           b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf", b"\xc1\xbf", b"\xe0\x9f\xbf",
           b"\xf0\x8f\xbf\xbf", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xed\xa0\x80\xed\xb0\x80",
           b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xc2", b"\xe1\x80", b"\xf1\x80\x80"]


@section
def test_6_utf8():
    for i, t in enumerate(VALID):
        case("6.2.%d" % (i + 1), echo_case(TEXT, t))
    for i, t in enumerate(INVALID):
        case("6.3.%d" % (i + 1), fails_with(1007, (TEXT, t)))

    def split(t, n):
        def run(r, name):
            parts = [t[j:j + n] for j in range(0, len(t), n)] or [b""]
            for j, p in enumerate(parts):
                r.send(TEXT if j == 0 else CONT, p, fin=j == len(parts) - 1)
            r.expect(TEXT, t, name)
        return run
    kosme = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 \xf0\x9d\x84\x9e"
    case("6.6.1", split(kosme, 1))
    case("6.6.2", split(kosme, 3))

    def fail_fast(r, name):
        # The first fragment holds the bad byte; the rest never comes: the
        # server must not wait for the end of the message to say 1007.
        r.send(TEXT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80", fin=False)
        r.expect_close(1007, name)
    case("6.4.1", fail_fast)

    def fail_fast_in_frame(r, name):
        # The same inside one large frame whose payload is still arriving.
        t = b"a" * 40000 + b"\xed\xa0\x80" + b"a" * 40000
        data = r.frame_bytes(TEXT, t)
        r.s.sendall(data[:40100])
        r.expect_close(1007, name)
    case("6.4.3", fail_fast_in_frame)

    def split_invalid(r, name):
        r.send(TEXT, b"\xce\xba\xe1", fin=False)
        r.send(CONT, b"\xbd\xb9\xed", fin=False)
        r.send(CONT, b"\xa0\x80")  # a surrogate split across fragments
        r.expect_close(1007, name)
    case("6.4.4", split_invalid)


# ---- 7 closing --------------------------------------------------------------------------


@section
def test_7_closing():
    def close_then(r, name):
        r.send(CLOSE, struct.pack("!H", 1000))
        r.send(TEXT, b"after the close")  # must not be echoed
        r.expect_close(1000, name)
    case("7.1.3", close_then)

    def twice(r, name):
        r.send(CLOSE, struct.pack("!H", 1000))
        r.send(CLOSE, struct.pack("!H", 1000))
        r.expect_close(1000, name)
    case("7.1.2", twice)
    case("7.1.5", fails_with(1000, (TEXT, b"frag", {"fin": False}), (CLOSE, struct.pack("!H", 1000))))
    case("7.3.1", fails_with(None, (CLOSE, b"")))
    case("7.3.2", fails_with(1002, (CLOSE, b"\x03")))
    case("7.3.3", fails_with(1000, (CLOSE, struct.pack("!H", 1000))))
    case("7.3.4", fails_with(1000, (CLOSE, struct.pack("!H", 1000) + b"Hello World!")))
    case("7.3.5", fails_with(1000, (CLOSE, struct.pack("!H", 1000) + b"*" * 123)))
    case("7.3.6", fails_with(1002, (CLOSE, struct.pack("!H", 1000) + b"*" * 124)))
    case("7.5.1", fails_with(1007, (CLOSE, struct.pack("!H", 1000) + b"\xce\xba\xe1\xbd\xb9\xed\xa0\x80")))
    for i, code in enumerate([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000,
                              4999]):
        case("7.7.%d" % (i + 1), fails_with(code, (CLOSE, struct.pack("!H", code))))
    for i, code in enumerate([0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]):
        case("7.9.%d" % (i + 1), fails_with(1002, (CLOSE, struct.pack("!H", code))))

    def server_first(r, name):
        r.send(TEXT, b"!close 1001 going")
        f = r.frame()
        ct.check_eq((f[2], f[3]), (CLOSE, struct.pack("!H", 1001) + b"going"), name)
        r.send(CLOSE, struct.pack("!H", 1001))
        r.expect_eof(name)
    case("7.13.1", server_first)


# ---- 9 limits ------------------------------------------------------------------------------


@section
def test_9_limits():
    for i, n in enumerate([65536, 262144, 1 << 20, 4 << 20]):
        case("9.1.%d" % (i + 1), echo_case(TEXT, b"*" * n))
        case("9.2.%d" % (i + 1), echo_case(BINARY, b"\xfe" * n))

    def one_mib_small_writes(r, name):
        data = r.frame_bytes(BINARY, b"\xfe" * (1 << 20))
        t0 = time.monotonic()
        for i in range(0, len(data), 4096):
            r.s.sendall(data[i:i + 4096])
        r.expect(BINARY, b"\xfe" * (1 << 20), name)
        ct.check(time.monotonic() - t0 < ct.T(30), name + ": slow")
    case("9.4.6", one_mib_small_writes)
    case("9.8.1", fails_with(1009, (BINARY, b"", {"length": (8 << 20) + 1})))
    case("9.8.2", fails_with(1009, (TEXT, b"a" * 100, {"fin": False}),
                             (CONT, b"", {"length": 8 << 20})))
    case("9.8.3", fails_with(1009, (BINARY, b"", {"length": 1 << 62})))
    case("9.8.4", fails_with(1002, (BINARY, b"", {"length": 1 << 63})))  # top bit set
    case("9.8.5", fails_with(1009, (BINARY, b"", {"length": (1 << 63) - 1})))


if __name__ == "__main__":
    ct.main()
