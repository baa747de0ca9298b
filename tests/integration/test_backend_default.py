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


def version_backend(**env):
    """The backend `csock --version` names, under env (other CSOCK_* unset)."""
    saved = {k: os.environ.get(k) for k in ("CSOCK_BACKEND", "CSOCK_TEST_NO_URING")}
    try:
        for k in saved:
            os.environ.pop(k, None)
        os.environ.update(env)
        rc, out, err = csock("--version")
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None)
            if v is not None:
                os.environ[k] = v
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
    check_eq(version_backend(CSOCK_BACKEND="uring", CSOCK_TEST_NO_URING="1"), "unavailable",
             "uring without io_uring")


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
