#!/usr/bin/env python3
"""Drive the four example programs: start each server, read its `listening
ADDR` line, run the matching client with a few lines on stdin, and check the
upper-case answers. Python 3 stdlib only; $CSOCK_BUILD is the build dir."""
import os
import select
import subprocess
import sys
import tempfile

BUILD = os.environ.get("CSOCK_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
EXAMPLES = os.path.join(BUILD, "examples")
TIMEOUT = 30  # seconds for any one step: generous, the machine is shared

LINES = ["hello", "Mixed Case 123", "", "ünïcode stays", "last line without newline"]


def start_server(name, *args):
    """Start a server example and return (process, address) once it listens."""
    proc = subprocess.Popen([os.path.join(EXAMPLES, name), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    ready, _, _ = select.select([proc.stdout], [], [], TIMEOUT)
    if not ready:
        proc.kill()
        raise AssertionError(f"{name}: no `listening` line within {TIMEOUT}s")
    line = proc.stdout.readline().decode().strip()
    if not line.startswith("listening "):
        proc.kill()
        raise AssertionError(f"{name}: unexpected first line {line!r}")
    return proc, line.split(" ", 1)[1]


def run_client(name, addr, text):
    res = subprocess.run([os.path.join(EXAMPLES, name), addr], input=text.encode(),
                         capture_output=True, timeout=TIMEOUT)
    return res.returncode, res.stdout.decode(), res.stderr.decode()


def expected(lines):
    # toupper() in the C locale: only ASCII letters change; UTF-8 bytes pass.
    return "".join("".join(c.upper() if c.isascii() else c for c in l) + "\n" for l in lines)


def check_no_sanitizer_report(name, stderr):
    for marker in ("AddressSanitizer", "UndefinedBehaviorSanitizer", "runtime error:",
                   "LeakSanitizer", "ThreadSanitizer"):
        assert marker not in stderr, f"{name}: sanitizer report:\n{stderr}"


def exchange(server, client, server_args=()):
    proc, addr = start_server(server, *server_args)
    try:
        text = "\n".join(LINES)  # the last line has no newline: it still counts
        rc, out, err = run_client(client, addr, text)
        check_no_sanitizer_report(client, err)
        assert rc == 0, f"{client} {addr}: exit {rc}, stderr:\n{err}"
        assert out == expected(LINES), f"{client} {addr}: got {out!r}"
        # A second client on the same server: it keeps serving.
        rc, out, err = run_client(client, addr, "again\n")
        assert rc == 0 and out == "AGAIN\n", f"second client: {rc} {out!r} {err}"
        assert proc.poll() is None, f"{server} exited early"
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=TIMEOUT)
        check_no_sanitizer_report(server, err.decode())
    print(f"ok: {server} + {client} on {addr}")


def refused():
    # A bound, non-listening socket: connecting to its port is refused.
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        rc, out, err = run_client("upper_tcp_client", f"tcp://127.0.0.1:{port}", "x\n")
    assert rc != 0 and "refused" in err.lower(), f"refused: {rc} {out!r} {err!r}"
    print("ok: upper_tcp_client reports a refused connection")


def main():
    exchange("upper_tcp_server", "upper_tcp_client")
    with tempfile.TemporaryDirectory() as d:
        exchange("upper_tcp_server", "upper_tcp_client", [f"unix:{d}/upper.sock"])
    exchange("upper_udp_server", "upper_udp_client")
    refused()
    return 0


if __name__ == "__main__":
    sys.exit(main())
