#!/usr/bin/env python3
"""bench/ws/targets.py RESULTS.tsv: issue 13's WebSocket echo targets from a
bench/run.sh TSV (scenario w): csock's WebSocket echo at most 0.95x
libwebsockets' server CPU per message, at most 0.5x node ws's, at most 1.1x
csock's plain TCP echo on the same backend; msgs/s no lower than any.

Two estimates per pair: the ratio of the medians over rounds (as in the
table), and the median of the per-round ratios (the two servers ran minutes
apart at most, so slow phases of a shared machine hit both: steadier)."""
import csv
import statistics
import sys

PAIRS = [("ws_lws", 0.95), ("ws_node", 0.5)]


def main(path):
    runs = {}
    for r in csv.DictReader(open(path), delimiter="\t"):
        if r["scenario"] == "w" and r["cpu_us_msg"] != "NA":
            runs.setdefault(r["server"], {})[r["round"]] = (float(r["cpu_us_msg"]), float(r["msgs_s"]))

    def ratio(a, b, k):
        common = sorted(set(runs.get(a, {})) & set(runs.get(b, {})))
        if not common:
            return None
        med = (statistics.median(runs[a][r][k] for r in common)
               / statistics.median(runs[b][r][k] for r in common))
        paired = statistics.median(runs[a][r][k] / runs[b][r][k] for r in common)
        return med, paired, len(common)

    print("| csock server | against | CPU/msg ratio (of medians, paired) | target | met | msgs/s ratio (of medians, paired) |")
    print("|---|---|--:|--:|---|--:|")
    for ours, floor in (("ws_csock", "csock"), ("ws_csock_uring", "csock_uring")):
        for other, bound in PAIRS + [(floor, 1.1)]:
            c, m = ratio(ours, other, 0), ratio(ours, other, 1)
            if not c:
                continue
            met = "yes" if c[1] <= bound else "no"
            print(f"| {ours} | {other} | {c[0]:.3f}, {c[1]:.3f} | <= {bound} | {met} | "
                  f"{m[0]:.2f}, {m[1]:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1])
