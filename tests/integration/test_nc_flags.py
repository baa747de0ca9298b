#!/usr/bin/env python3
"""csock connect / listen: the everyday flags ncat users type (issue 12):
time units, -p/-s source port and address, -o/--output, --hex-dump,
--no-shutdown, the exec environment, dual-stack listening.

Run: python3 tests/integration/test_nc_flags.py   (CSOCK_BIN=build/csock)
"""
import re
import socket
import time

from test_netcat_basic import (SLOW, connect, csock, listen, main, recv_all, run, test)


# ---------------------------------------------------------------- time values

@test
def time_units_bad_is_usage_error():
    for bad in ("1x", "2 s", "ms", "-1s", "inf", "1e3", "1.5mm"):
        rc, out, err = run("listen", "-i", bad, "127.0.0.1", 0)
        assert rc == 2 and out == b"", (bad, rc, out, err)
        assert err.count("\n") == 1 and "--idle-timeout" in err and repr(bad)[1:-1] in err, err
    rc, _, err = run("serve", "--drain-timeout", "3d", "127.0.0.1:0")
    assert rc == 2 and "--drain-timeout" in err, (rc, err)


@test
def time_units_ms_applies():
    """-i 400ms: a silent client is dropped (status 1) well within seconds,
    where a unit read as 400 s would wait minutes."""
    p, port = listen("-i", "400ms", "127.0.0.1", 0)
    c = connect(port)
    t0 = time.time()
    assert p.wait(10) == 1, p.stderr()
    assert time.time() - t0 < 8 * SLOW
    assert recv_all(c) == b""
    c.close()


@test
def time_units_accepted():
    for good in ("3000ms", "2s", "1m", "1h", "1.5", "7"):
        p, port = listen("-i", good, "127.0.0.1", 0)
        c = connect(port)
        c.sendall(b"hi\n")
        p.wait_stdout(b"hi\n")
        c.close()
        assert p.wait() == 0, (good, p.stderr())


if __name__ == "__main__":
    main()
