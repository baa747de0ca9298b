/* The log-linear histogram of csock bench: see bench_hist.h. */
#include <string.h>

#include "cli/bench_hist.h"

void bench_hist_init(bench_hist *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

unsigned bench_hist_index(uint64_t us)
{
    if (us > BENCH_HIST_MAX_US) us = BENCH_HIST_MAX_US;
    if (us < BENCH_HIST_SUB) return (unsigned)us; /* exact below 128 us */
    /* The octave [2^msb, 2^(msb+1)) is cut into SUB buckets of 2^shift. */
    unsigned msb = 63u - (unsigned)__builtin_clzll(us);
    unsigned shift = msb - BENCH_HIST_SUB_BITS;
    return (shift + 1) * BENCH_HIST_SUB + (unsigned)((us >> shift) - BENCH_HIST_SUB);
}

void bench_hist_range(unsigned index, uint64_t *lo, uint64_t *hi)
{
    if (index < BENCH_HIST_SUB) {
        *lo = *hi = index;
        return;
    }
    unsigned shift = index / BENCH_HIST_SUB - 1;
    uint64_t mant = BENCH_HIST_SUB + index % BENCH_HIST_SUB;
    *lo = mant << shift;
    *hi = *lo + ((uint64_t)1 << shift) - 1;
}

static uint64_t bucket_value(unsigned index)
{
    uint64_t lo, hi;
    bench_hist_range(index, &lo, &hi);
    return lo + (hi - lo + 1) / 2;
}

void bench_hist_record(bench_hist *h, uint64_t us)
{
    h->counts[bench_hist_index(us)]++;
    h->total++;
    if (us < h->min) h->min = us;
    if (us > h->max) h->max = us;
    h->sum += (double)us;
}

void bench_hist_merge(bench_hist *into, const bench_hist *from)
{
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) into->counts[i] += from->counts[i];
    into->total += from->total;
    if (from->min < into->min) into->min = from->min;
    if (from->max > into->max) into->max = from->max;
    into->sum += from->sum;
}

uint64_t bench_hist_percentile(const bench_hist *h, double p)
{
    if (!h->total) return 0;
    if (p >= 100.0) return h->max;
    if (p < 0) p = 0;
    /* The rank of the value asked for, 1-based: at least one value. */
    uint64_t rank = (uint64_t)(p / 100.0 * (double)h->total + 0.5);
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t v = bucket_value(i);
            /* The middle of the extreme buckets may lie outside what was seen. */
            return v < h->min ? h->min : v > h->max ? h->max : v;
        }
    }
    return h->max;
}

double bench_hist_mean(const bench_hist *h)
{
    return h->total ? h->sum / (double)h->total : 0.0;
}

int bench_hist_next(const bench_hist *h, bench_hist_iter *it)
{
    while (it->index < BENCH_HIST_BUCKETS && !h->counts[it->index]) it->index++;
    if (it->index >= BENCH_HIST_BUCKETS) return 0;
    unsigned i = it->index++;
    bench_hist_range(i, &it->lo, &it->hi);
    it->value = bucket_value(i);
    it->count = h->counts[i];
    it->cumulative += it->count;
    return 1;
}
