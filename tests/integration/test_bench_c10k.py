#!/usr/bin/env python3
"""10,000 concurrent connections from one csock bench process (issue 15):
csock bench --echo --conns 10000 (one thread) against csock serve echo
(two threads). Every connection must be made, stay up to the end and have
at least one echo checked byte by byte, with no error of any kind.

The run is short, and adapts to a slow machine (a sanitizer build, a loaded
CI host): when the window ended before every connection had its first
answer, and nothing went wrong, it runs again with a longer window, within
a fixed budget. A slow run is retried, a wrong one is not."""

import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from csocktest import SANITIZED, Server, Skipped, T, check, check_eq, csock, main  # noqa: E402

CONNS = 10000
# Descriptors each side needs beyond the connections: the loop, the
# listener, the standard ones, a sanitizer's own.
SPARE_FDS = 200
ERR_KINDS = ["refused", "reset", "timeout", "wrong_bytes", "non_2xx", "other"]


def raise_nofile():
    """Soft RLIMIT_NOFILE up to the hard one (the children inherit it);
    skip when even the hard one is too low for 10,000 connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = CONNS + SPARE_FDS
    if hard != resource.RLIM_INFINITY and hard < need:
        raise Skipped("RLIMIT_NOFILE hard limit %d is below the %d descriptors 10,000 connections need "
                      "(raise it with ulimit -Hn)" % (hard, need))
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def test_ten_thousand_connections():
    raise_nofile()
    # Seconds of measured window, tried in turn while a run was merely too
    # short for every connection to get its first answer.
    windows = [2, 6, 15] if not SANITIZED else [4, 12, 30]
    with Server("echo", "tcp://127.0.0.1:0", opts=("--threads", "2")) as srv:
        ep = srv.endpoints[0].text
        t0 = time.monotonic()
        for i, secs in enumerate(windows):
            rc, out, err = csock("bench", ep, "--echo", "--conns", str(CONNS), "--threads", "1",
                                 "--size", "64", "--duration", str(secs), "--timeout", "120",
                                 "--json", "-", timeout=T(secs + 150))
            try:
                doc = json.loads(out)
            except ValueError:
                raise AssertionError("bench printed no JSON (status %d): %r %r" % (rc, out[-500:], err[-500:]))
            what = "run %d (%d s window)" % (i + 1, secs)
            # Anything wrong fails at once: only a short window is retried.
            check_eq(doc["errors"], dict.fromkeys(ERR_KINDS, 0), what + ": errors")
            check(doc["connects"] <= CONNS, "%s: %d connects for %d connections (none may be made twice)"
                  % (what, doc["connects"], CONNS))
            print("# %s: connects %d, answered %d, up at end %d, %d messages, p99 %d us, %.1f s" % (
                what, doc["connects"], doc["conns_answered"], doc["conns_up_at_end"], doc["messages"],
                doc["latency_us"]["p99"], time.monotonic() - t0), flush=True)
            if doc["conns_answered"] == CONNS and doc["conns_up_at_end"] == CONNS:
                break
        check_eq(rc, 0, "bench status (stderr %r)" % err[-500:])
        check_eq(doc["connects"], CONNS, "connections made")
        check_eq(doc["conns_answered"], CONNS, "connections with an echo checked")
        check_eq(doc["conns_up_at_end"], CONNS, "connections up at once at the end")
        check_eq(doc["histogram"]["total"], doc["messages"], "histogram total")


if __name__ == "__main__":
    main()
