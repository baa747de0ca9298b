#!/usr/bin/env python3
"""A protocol battery for csock's WebSocket server, its cases named after
the Autobahn|Testsuite sections they follow (1 framing, 2 pings, 3 reserved
bits, 4 opcodes, 5 fragmentation, 6 UTF-8, 7 closing, 9 limits, 12 and 13
permessage-deflate): raw frames from a plain socket to the C echo server
(test_ws_peer.c), and the frames, close code and TCP close it must answer
with. Each case has a connection of its own. Python's standard library only
(no websockets needed; zlib for the compressed sections)."""
import os
import socket
import struct
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import csocktest as ct  # noqa: E402
from test_ws_interop import start_server, stop_server  # noqa: E402

TEXT, BINARY, CLOSE, PING, PONG, CONT = 1, 2, 8, 9, 10, 0
SERVER = []


def server():
    return SERVER[0][1]


def section(fn, flags=()):
    """A section runs against a server of its own (max_message 8 MiB),
    which must still echo afterwards and exit cleanly."""
    def run():
        SERVER[:] = [start_server("8388608", flags=flags)]
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


def deflate_section(fn):
    """A section against a server with permessage-deflate on."""
    return section(fn, flags=["--deflate"])


CASES = []


class Raw:
    """A client speaking raw frames."""

    def __init__(self, ext=None):
        host, port = server().rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=ct.T(10))
        offer = b"Sec-WebSocket-Extensions: %s\r\n" % ext.encode() if ext else b""
        self.s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" + offer +
                       b"Sec-WebSocket-Version: 13\r\n\r\n")
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            d = self.s.recv(4096)
            ct.check(d, "no handshake answer")
            self.buf += d
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        ct.check(head.startswith(b"HTTP/1.1 101 "), "handshake: %r" % head)
        ct.check(b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head, "accept key: %r" % head)
        self.answer = None  # the server's Sec-WebSocket-Extensions
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-extensions":
                self.answer = value.strip().decode()

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


# ---- 12, 13 permessage-deflate ------------------------------------------------------------


TAIL = b"\x00\x00\xff\xff"


class Deflater:
    """The client's end of permessage-deflate on a Raw connection, with the
    parameters the server answered: our compressor keeps to its window and
    context rule, and its decompressor has only the window the server may
    use (a server breaking its own limit fails zlib: too far back)."""

    def __init__(self, r, client_bits=15, client_nct=False):
        ans = r.answer or ""
        ct.check(ans.startswith("permessage-deflate"), "no permessage-deflate in the answer: %r" % ans)
        params = dict((p.strip().split("=") + [None])[:2] for p in ans.split(";")[1:])
        self.r = r
        self.client_bits = int(params.get("client_max_window_bits") or client_bits)
        self.client_nct = client_nct or "client_no_context_takeover" in params
        self.server_bits = int(params.get("server_max_window_bits") or 15)
        self.server_nct = "server_no_context_takeover" in params
        self.comp = self.decomp = None

    def send(self, op, payload, frag=None):
        if self.comp is None or self.client_nct:
            self.comp = zlib.compressobj(6, zlib.DEFLATED, -self.client_bits)
        data = self.comp.compress(payload) + self.comp.flush(zlib.Z_SYNC_FLUSH)
        ct.check(data.endswith(TAIL), "zlib's sync flush")
        data = data[:-4]
        pieces = [data[i:i + frag] for i in range(0, len(data), frag)] if frag else [data]
        for i, piece in enumerate(pieces or [b""]):
            last = i == len(pieces) - 1
            self.r.send(op if i == 0 else CONT, piece, fin=last, rsv=4 if i == 0 else 0)

    def recv(self, case):
        """The server's next message: (op, payload, compressed)."""
        f = self.r.frame()
        ct.check(f is not None, "%s: EOF" % case)
        fin, rsv, op, data = f
        ct.check(op in (TEXT, BINARY), "%s: opcode %d" % (case, op))
        while not fin:
            fin, r2, o2, more = self.r.frame()
            ct.check(o2 == CONT and r2 == 0, "%s: a continuation with opcode %d rsv %d" % (case, o2, r2))
            data += more
        if not rsv & 4:
            return op, data, False
        if self.decomp is None or self.server_nct:
            self.decomp = zlib.decompressobj(-self.server_bits)
        try:
            out = self.decomp.decompress(data + TAIL)
        except zlib.error as e:
            ct.check(False, "%s: the server's compressed data: %s" % (case, e))
        return op, out, True

    def echo(self, op, payload, case, frag=None):
        self.send(op, payload, frag)
        got_op, got, compressed = self.recv(case)
        ct.check_eq((got_op, len(got)), (op, len(payload)), case)
        ct.check(got == payload, "%s: the echo differs" % case)
        ct.check_eq(compressed, len(payload) >= 64, "%s: compressed (the server's threshold is 64)" % case)


def far_repeats(n, seed):
    """n bytes a window of 512 cannot compress well but 32 KiB can: random
    2000-byte blocks, each said twice."""
    import random
    rnd = random.Random(seed)
    out = bytearray()
    while len(out) < n:
        block = bytes(rnd.getrandbits(8) for _ in range(2000))
        out += block + block
    return bytes(out[:n])


def deflate_echo_case(op, payloads, offer="permessage-deflate; client_max_window_bits", frag=None):
    def run(r, name):
        d = Deflater(r)
        for p in payloads:
            d.echo(op, p, name, frag)
        r.send(CLOSE, struct.pack("!H", 1000))
        r.expect_close(1000, name)
    return (run, offer)


def dcase(name, run_offer):
    run, offer = run_offer
    r = Raw(offer)
    try:
        run(r, name)
    finally:
        r.close()
    CASES[0][0] += 1


@deflate_section
def test_12_compressed_messages():
    sizes = [16, 64, 256, 1024, 4096, 8192, 16384, 32768, 65536, 131072]
    text = b"Hello, permessage-deflate! The quick brown fox. " * 3000
    for i, n in enumerate(sizes):
        # 12.1 text, 12.2 binary (compressible), 12.3 text, 12.4 binary (less so), 12.5 fragmented
        dcase("12.1.%d" % (i + 1), deflate_echo_case(TEXT, [text[k:k + n] for k in range(5)]))
        dcase("12.2.%d" % (i + 1), deflate_echo_case(BINARY, [bytes(range(256)) * (n // 256) + b"\x07" * (n % 256)] * 5))
        dcase("12.3.%d" % (i + 1), deflate_echo_case(TEXT, [far_repeats(n, k).hex()[:n].encode() for k in range(3)]))
        dcase("12.4.%d" % (i + 1), deflate_echo_case(BINARY, [os.urandom(n), far_repeats(n, i)]))
        dcase("12.5.%d" % (i + 1), deflate_echo_case(BINARY, [far_repeats(n, i), text[:n]], frag=max(1, n // 7)))


@deflate_section
def test_13_negotiation():
    """Each offer, the server's answer to it, and messages whose windows and
    context follow the answer."""
    msgs = [b"x" * 64, far_repeats(6000, 1), b"Hello, permessage-deflate! " * 200, far_repeats(6000, 1)]

    def negotiated(offer, want_answer):
        def run(r, name):
            ct.check_eq(r.answer, want_answer, name + ": the answer to %r" % offer)
            d = Deflater(r)
            for m in msgs:
                d.echo(BINARY, m, name)
            r.send(CLOSE, struct.pack("!H", 1000))
            r.expect_close(1000, name)
        return (run, offer)

    pmd = "permessage-deflate"
    dcase("13.1.1", negotiated(pmd, pmd))
    dcase("13.2.1", negotiated(pmd + "; client_no_context_takeover", pmd + "; client_no_context_takeover"))
    for i, n in enumerate(range(9, 16)):
        sb, cb = "; server_max_window_bits=%d" % n, "; client_max_window_bits=%d" % n
        snct, cnct = "; server_no_context_takeover", "; client_no_context_takeover"
        dcase("13.3.%d" % (i + 1), negotiated(pmd + sb, pmd + sb))
        dcase("13.4.%d" % (i + 1), negotiated(pmd + cb, pmd + (cb if n < 15 else "")))
        dcase("13.5.%d" % (i + 1), negotiated(pmd + snct + sb, pmd + snct + sb))
        dcase("13.6.%d" % (i + 1), negotiated(pmd + cnct + cb, pmd + cnct + (cb if n < 15 else "")))
        dcase("13.7.%d" % (i + 1), negotiated(pmd + snct + cnct + sb + cb,
                                              pmd + snct + cnct + sb + (cb if n < 15 else "")))
    # Offers declined (no extension: the connection is uncompressed) or
    # skipped for a later one.
    for i, (offer, want) in enumerate([
            (pmd + "; server_max_window_bits=8", None),  # zlib's compressor cannot keep to 8
            (pmd + "; unknown_param", None),
            (pmd + "; server_max_window_bits=16", None),
            (pmd + "; client_no_context_takeover; client_no_context_takeover", None),
            ("x-unknown-ext", None),
            (pmd + "; server_max_window_bits=8, " + pmd + "; server_max_window_bits=10",
             pmd + "; server_max_window_bits=10"),
            ("x-unknown-ext; a=\"b,c\", " + pmd + "; client_max_window_bits=\"10\"",
             pmd + "; client_max_window_bits=10")]):
        def run(r, name, want=want):
            ct.check_eq(r.answer, want, name + ": the answer")
            if want:
                Deflater(r).echo(TEXT, b"compressed " * 20, name)
            else:
                r.send(TEXT, b"plain " * 20)
                r.expect(TEXT, b"plain " * 20, name)
            r.send(CLOSE, struct.pack("!H", 1000))
            r.expect_close(1000, name)
        dcase("13.8.%d" % (i + 1), (run, offer))


def vm_hwm(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


@deflate_section
def test_12_hostile():
    """A compression bomb first (the server's peak memory is measured
    around it), then frames permessage-deflate forbids."""
    pid = SERVER[0][0].pid
    before = vm_hwm(pid)

    def bomb(r, name):
        # 1 GiB of zeros in ~1 MiB: one message, sent in 64 KiB fragments
        # while the server has not answered. It must stop at max_message
        # (8 MiB of output): close 1009, long before the input ends.
        c = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
        zeros = bytes(1 << 20)
        data = b"".join(c.compress(zeros) for _ in range(1024)) + c.flush(zlib.Z_SYNC_FLUSH)[:-4]
        ct.check(len(data) < (3 << 19), "%s: the bomb is %d bytes" % (name, len(data)))
        import select
        step = 65536
        try:
            for i in range(0, len(data), step):
                if select.select([r.s], [], [], 0)[0]:
                    break
                last = i + step >= len(data)
                r.send(BINARY if i == 0 else CONT, data[i:i + step], fin=last, rsv=4 if i == 0 else 0)
        except (BrokenPipeError, ConnectionResetError):
            pass
        r.expect_close(1009, name)  # (the kernel's buffers may have taken all of it by then)
    dcase("12.9.1", (bomb, "permessage-deflate"))
    grew = vm_hwm(pid) - before
    print("  bomb: the server's peak memory grew by %d KiB (max_message 8 MiB)" % (grew // 1024), flush=True)
    ct.check(grew < (24 << 20), "the bomb cost the server %d bytes" % grew)

    def raw_fails(code, *frames):
        f = fails_with(code, *frames)
        return (f, "permessage-deflate")
    compressed_hi = zlib.compressobj(6, zlib.DEFLATED, -15)
    hi = compressed_hi.compress(b"Hello") + compressed_hi.flush(zlib.Z_SYNC_FLUSH)[:-4]
    dcase("12.8.1", raw_fails(1002, (PING, b"", {"rsv": 4})))  # a compressed control frame
    dcase("12.8.2", raw_fails(1002, (CLOSE, b"", {"rsv": 4})))
    dcase("12.8.3", raw_fails(1002, (TEXT, hi[:2], {"rsv": 4, "fin": False}), (CONT, hi[2:], {"rsv": 4})))
    dcase("12.8.4", raw_fails(1002, (TEXT, hi, {"rsv": 2})))  # RSV2: no extension of ours
    dcase("12.8.5", raw_fails(1007, (BINARY, b"\xff\xff\xff\xff", {"rsv": 4})))  # not deflate data
    bad = zlib.compressobj(6, zlib.DEFLATED, -15)
    dcase("12.8.6", raw_fails(1007, (TEXT, bad.compress(b"ok \xce\xba\xe1\xbd\xb9\xed\xa0\x80") +
                                     bad.flush(zlib.Z_SYNC_FLUSH)[:-4], {"rsv": 4})))  # bad UTF-8 inside
    # RSV1 where nothing was negotiated: a protocol error still.
    case("12.8.7", fails_with(1002, (TEXT, hi, {"rsv": 4})))

    def final_block(r, name):
        # A compressor that ends each message with a final block (BFINAL):
        # still one message, and the next one starts a new stream.
        for word in (b"first " * 30, b"second " * 30):
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
            r.send(TEXT, c.compress(word) + c.flush(zlib.Z_FINISH), rsv=4)
            op, got, _ = Deflater(r).recv(name)
            ct.check_eq((op, got), (TEXT, word), name)
        r.send(CLOSE, struct.pack("!H", 1000))
        r.expect_close(1000, name)
    dcase("12.8.8", (final_block, "permessage-deflate; server_no_context_takeover"))


if __name__ == "__main__":
    ct.main()
