/* csock bench --plot: runs (this one and earlier ones from their --json
 * files) drawn into one self-contained SVG: the latency percentile spectrum
 * (percentile on a log scale of 1/(1-p), as HdrHistogram's plots) above,
 * throughput over time below, a colour and a legend entry a run. */
#ifndef CSOCK_CLI_BENCH_PLOT_H
#define CSOCK_CLI_BENCH_PLOT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define BENCH_PLOT_MAX_RUNS 8 /* one colour each */

typedef struct bench_plot_bucket {
    uint64_t lo, hi, count; /* us, inclusive */
} bench_plot_bucket;

/* What a plot needs of a run: read back from its JSON. */
typedef struct bench_plot_run {
    char label[160];
    bench_plot_bucket *buckets;
    size_t nbuckets;
    uint64_t total, min, max; /* messages; latency extremes, us */
    double p99, throughput;   /* for the legend */
    double *counts;           /* messages answered in each interval */
    size_t ncounts;
    double interval_s, duration_s;
} bench_plot_run;

/* Fill *run from the text of a csock bench --json document. Its "label"
 * when it has one (else run->label is left as it was). 0, -EPROTO for a
 * document that is not one, or -ENOMEM. */
int bench_plot_parse(const char *json, bench_plot_run *run);
void bench_plot_run_free(bench_plot_run *run);

/* Draw n runs (1..BENCH_PLOT_MAX_RUNS) as SVG into f. 0, or -EIO when f
 * failed. */
int bench_plot_svg(FILE *f, const bench_plot_run *runs, size_t n);

#endif
