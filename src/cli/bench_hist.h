/* A log-linear latency histogram for csock bench (HdrHistogram-class):
 * microseconds from 0 to an hour, each octave [2^k, 2^(k+1)) cut into 128
 * equal buckets, so a bucket is at most 1/128 of the values it holds wide
 * and the value reported for it (its middle) is within 0.4 % of any of
 * them. Recording is an index computation and an increment: cheap enough
 * for every message. One histogram per thread, merged at the end. */
#ifndef CSOCK_CLI_BENCH_HIST_H
#define CSOCK_CLI_BENCH_HIST_H

#include <stdint.h>

#define BENCH_HIST_SUB_BITS 7                      /* 128 buckets an octave */
#define BENCH_HIST_SUB (1u << BENCH_HIST_SUB_BITS)
#define BENCH_HIST_MAX_US 3600000000ull            /* an hour; longer is clamped */
/* Octaves up to 2^32 us (> an hour) above the exact first 128 values. */
#define BENCH_HIST_BUCKETS ((32 - BENCH_HIST_SUB_BITS + 1) * BENCH_HIST_SUB)

typedef struct bench_hist {
    uint64_t counts[BENCH_HIST_BUCKETS];
    uint64_t total;    /* values recorded */
    uint64_t min, max; /* exact, in us (min is UINT64_MAX while empty) */
    double sum;        /* for the mean; a double never overflows */
} bench_hist;

/* One non-empty bucket, from bench_hist_next(). */
typedef struct bench_hist_iter {
    unsigned index;      /* next bucket to look at; start at 0 */
    uint64_t lo, hi;     /* the bucket's values: lo..hi inclusive, in us */
    uint64_t value;      /* the value reported for it (its middle) */
    uint64_t count;      /* values in it */
    uint64_t cumulative; /* values in it and every bucket below */
} bench_hist_iter;

void bench_hist_init(bench_hist *h);
void bench_hist_record(bench_hist *h, uint64_t us);
/* Add every value of `from` into `into` (the thread histograms at the end). */
void bench_hist_merge(bench_hist *into, const bench_hist *from);
/* The value at percentile p (0..100): the smallest bucket value with at
 * least p % of the values at or below it, kept within [min, max]. 0 when
 * empty. */
uint64_t bench_hist_percentile(const bench_hist *h, double p);
double bench_hist_mean(const bench_hist *h);
/* Step through the non-empty buckets in order: 1 and *it filled, 0 at the
 * end. Zero the iterator before the first call. */
int bench_hist_next(const bench_hist *h, bench_hist_iter *it);
/* The bucket of a value, and the range of a bucket (for tests and output). */
unsigned bench_hist_index(uint64_t us);
void bench_hist_range(unsigned index, uint64_t *lo, uint64_t *hi);

#endif
