#!/usr/bin/env python3
"""bench/bench_kv.py FILE.json: a csock bench --json document as loadgen's
key=value line, for bench/run.sh's table (the run-queue share is not
measured by csock bench: na). Exit status 2 when it counted wrong bytes
(loadgen's "corrupt echo"), 3 on other errors (loadgen's connection
errors), else 0."""
import json
import sys

d = json.load(open(sys.argv[1]))
cpu, lat, n, secs = d["cpu"], d["latency_us"], max(1, d["messages"]), max(1e-9, d["duration_s"])
srv = cpu["server_s"]
print("msgs/s=%.0f p50_us=%s p99_us=%s srv_cpu_us_per_msg=%s srv_cpu_pct=%s srv_runq_pct=na lg_cpu_pct=%.1f "
      "errors=%d" % (d["throughput"], lat["p50"], lat["p99"], "na" if srv is None else "%.3f" % (srv * 1e6 / n),
                     "na" if srv is None else "%.1f" % (srv * 100 / secs), cpu["load_s"] * 100 / secs,
                     sum(d["errors"].values())))
sys.exit(2 if d["errors"]["wrong_bytes"] else 3 if sum(d["errors"].values()) else 0)
