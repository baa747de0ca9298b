#!/usr/bin/env python3
"""The event loop's backend when none is named, and the fallback of
CSOCK_BACKEND=auto: io_uring where the kernel allows it, else epoll,
silently. CSOCK_TEST_NO_URING=1 (for tests only) makes the io_uring
backend's setup fail as it does where io_uring is forbidden (a container's
seccomp profile, kernel.io_uring_disabled): then "auto" must run epoll,
and the library's unit tests pass on it as they do on epoll."""

import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from csocktest import (BIN, Server, Skipped, check, check_eq, csock, main, recv_exact,  # noqa: E402
                       run)


def run_with(env, *args):
    """csock args with env set (other CSOCK_* unset); (status, stdout, stderr)."""
    saved = {k: os.environ.get(k) for k in ("CSOCK_BACKEND", "CSOCK_TEST_NO_URING")}
    try:
        for k in saved:
            os.environ.pop(k, None)
        os.environ.update(env)
        return csock(*args, timeout=20)
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None)
            if v is not None:
                os.environ[k] = v


def version_backend(**env):
    """The backend `csock --version` names, under env (other CSOCK_* unset)."""
    rc, out, err = run_with(env, "--version")
    check_eq(rc, 0, "csock --version exit status")
    line = out.decode().strip()
    check("(event loop: " in line, "--version names the backend: %r" % line)
    return line.split("(event loop: ", 1)[1].rstrip(")")


def uring_allowed():
    return version_backend(CSOCK_BACKEND="uring") == "uring"


def test_default_is_auto():
    """Unset, the backend is auto's: io_uring where allowed, else epoll."""
    want = "uring" if uring_allowed() else "epoll"
    check_eq(version_backend(), want, "the default backend")
    check_eq(version_backend(CSOCK_TEST_NO_URING="1"), "epoll", "the default without io_uring")


def test_auto_picks_uring_where_allowed():
    want = "uring" if uring_allowed() else "epoll"
    check_eq(version_backend(CSOCK_BACKEND="auto"), want, "auto's backend")


def test_auto_falls_back_to_epoll():
    check_eq(version_backend(CSOCK_BACKEND="auto", CSOCK_TEST_NO_URING="1"), "epoll",
             "auto without io_uring")
    # Named explicitly, io_uring that cannot start is not replaced behind
    # the user's back.
    # --version says why: "unavailable: uring: Operation not permitted".
    got = version_backend(CSOCK_BACKEND="uring", CSOCK_TEST_NO_URING="1")
    check(got.startswith("unavailable: uring: "), "uring without io_uring: %r" % got)


# Each refused before it listens, connects or runs: a port that nothing
# serves (9, discard) is never reached. bench's 60 s run would outlast
# run_with's 20 s bound if it ran before failing.
COMMANDS = (("--version",), ("serve", "echo", "tcp://127.0.0.1:0"),
            ("serve", "http", ".", "tcp://127.0.0.1:0"), ("connect", "127.0.0.1", "9"),
            ("listen", "127.0.0.1", "0"), ("proxy", "tcp://127.0.0.1:0", "--to", "tcp://127.0.0.1:9"),
            ("bench", "tcp://127.0.0.1:9", "-D", "60"))


def test_unknown_backend_is_named():
    """A CSOCK_BACKEND that names no backend: one line that names the
    variable and its value, status 1 (the man page's), for every command
    that makes a loop; help and usage errors are as without it."""
    for args in COMMANDS:
        rc, _, err = run_with({"CSOCK_BACKEND": "bogus"}, *args)
        check_eq(rc, 1, "csock %s with CSOCK_BACKEND=bogus: status" % args[0])
        lines = err.strip().splitlines()
        check(len(lines) == 1 and "CSOCK_BACKEND=bogus" in lines[0] and "auto, uring, epoll or poll" in lines[0],
              "csock %s with CSOCK_BACKEND=bogus: %r" % (args[0], err))
    for args in (("--help",), ("serve", "--help"), ("connect", "--help"), ("bench", "--help")):
        rc, _, err = run_with({"CSOCK_BACKEND": "bogus"}, *args)
        check_eq(rc, 0, "csock %s with CSOCK_BACKEND=bogus" % " ".join(args))
    rc, _, err = run_with({"CSOCK_BACKEND": "bogus"}, "frob")
    check_eq(rc, 2, "an unknown command with CSOCK_BACKEND=bogus: still a usage error")
    # A value with a newline still makes one line.
    rc, _, err = run_with({"CSOCK_BACKEND": "a\nb"}, "--version")
    check(rc == 1 and len(err.strip().splitlines()) == 1 and "CSOCK_BACKEND=a..." in err,
          "CSOCK_BACKEND with a newline: %r" % err)


def test_refused_uring_is_named():
    """CSOCK_BACKEND=uring where io_uring is forbidden: each command that
    makes a loop fails at once with one line that says io_uring was
    asked for (not "Operation not permitted" alone)."""
    for args in COMMANDS[1:]:
        rc, _, err = run_with({"CSOCK_BACKEND": "uring", "CSOCK_TEST_NO_URING": "1"}, *args)
        check_eq(rc, 1, "csock %s with io_uring refused: status" % args[0])
        lines = err.strip().splitlines()
        check(len(lines) == 1 and lines[0].endswith("(CSOCK_BACKEND=uring)"),
              "csock %s with io_uring refused: %r" % (args[0], err))


def test_served_on_the_fallback():
    os.environ["CSOCK_BACKEND"] = "auto"
    os.environ["CSOCK_TEST_NO_URING"] = "1"
    try:
        with Server("echo", "tcp://127.0.0.1:0") as srv:
            ep = srv.endpoints[0]
            with socket.create_connection((ep.host, ep.port), timeout=10) as s:
                s.sendall(b"fallback\n")
                check_eq(recv_exact(s, 9), b"fallback\n", "echo on the fallback")
    finally:
        del os.environ["CSOCK_BACKEND"], os.environ["CSOCK_TEST_NO_URING"]


UNIT = ("test_stream", "test_server", "test_io", "test_timer", "test_post", "test_uring_faults")


def test_unit_tests_pass_on_the_fallback():
    """The default (CSOCK_BACKEND unset) where io_uring is forbidden."""
    build = os.environ.get("CSOCK_BUILD") or os.path.dirname(BIN)
    bins = [os.path.join(build, "tests", t) for t in UNIT]
    if not all(os.access(b, os.X_OK) for b in bins):
        raise Skipped("unit test programs not built under %s/tests" % build)
    saved = os.environ.pop("CSOCK_BACKEND", None)
    os.environ["CSOCK_TEST_NO_URING"] = "1"
    try:
        for b in bins:
            rc, out, err = run([b], timeout=240)
            check_eq(rc, 0, "%s on the fallback (stderr %r)" % (os.path.basename(b), err[-600:]))
    finally:
        del os.environ["CSOCK_TEST_NO_URING"]
        if saved is not None:
            os.environ["CSOCK_BACKEND"] = saved


if __name__ == "__main__":
    main()
