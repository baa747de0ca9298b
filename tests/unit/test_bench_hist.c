/* csock bench's latency histogram (src/cli/bench_hist.c): the CLI is not a
 * library, so its source is compiled into this test directly.
 *
 * The error bound is checked for every value at every magnitude (a sweep
 * with a step that keeps it under a second), percentiles of known
 * distributions against exact answers, and merging against recording
 * everything into one histogram. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "cli/bench_hist.c"

static double absd(double x) { return x < 0 ? -x : x; }

/* Histograms live on the stack (26 KiB each): no allocation that the
 * fault sweep could fail, so nothing to leak when an assertion fails. */
#define NEW_HIST(name) bench_hist name##_store, *name = &name##_store; bench_hist_init(name)

/* |reported - v| / v for the bucket holding v. */
static double rel_error(uint64_t v)
{
    uint64_t lo, hi;
    unsigned i = bench_hist_index(v);
    bench_hist_range(i, &lo, &hi);
    assert_true(lo <= v && v <= hi);
    uint64_t mid = lo + (hi - lo + 1) / 2;
    return v ? absd((double)mid - (double)v) / (double)v : 0.0;
}

static void test_error_bound_every_magnitude(void **state)
{
    (void)state;
    double worst = 0;
    /* Every value up to 2^20, then a prime stride across each octave to
     * the hour, and both edges of every octave. */
    for (uint64_t v = 1; v < (1u << 20); v++) {
        double e = rel_error(v);
        if (e > worst) worst = e;
    }
    for (unsigned k = 20; k < 32; k++) {
        uint64_t lo = (uint64_t)1 << k, hi = ((uint64_t)1 << (k + 1)) - 1;
        if (hi > BENCH_HIST_MAX_US) hi = BENCH_HIST_MAX_US;
        for (uint64_t v = lo; v <= hi; v += 1 + (lo >> 14) * 7 / 5) {
            double e = rel_error(v);
            if (e > worst) worst = e;
        }
        assert_true(rel_error(lo) <= 0.01);
        assert_true(rel_error(hi) <= 0.01);
    }
    assert_true(worst <= 0.01);
    assert_true(worst > 0); /* buckets are wider than 1 us up there */
    /* An hour fits; anything above is clamped into the last bucket. */
    assert_true(bench_hist_index(BENCH_HIST_MAX_US) < BENCH_HIST_BUCKETS);
    assert_int_equal(bench_hist_index(UINT64_MAX), bench_hist_index(BENCH_HIST_MAX_US));
}

static void test_buckets_tile_the_range(void **state)
{
    (void)state;
    /* Consecutive buckets touch: no gap, no overlap, increasing. */
    uint64_t prev_hi = 0;
    unsigned last = bench_hist_index(BENCH_HIST_MAX_US);
    for (unsigned i = 1; i <= last; i++) {
        uint64_t lo, hi;
        bench_hist_range(i, &lo, &hi);
        assert_int_equal(lo, prev_hi + 1);
        assert_true(hi >= lo);
        assert_int_equal(bench_hist_index(lo), i);
        assert_int_equal(bench_hist_index(hi), i);
        prev_hi = hi;
    }
}

static void test_uniform_percentiles(void **state)
{
    (void)state;
    NEW_HIST(h);
    for (uint64_t v = 1; v <= 100000; v++) bench_hist_record(h, v);
    assert_int_equal(h->total, 100000);
    assert_int_equal(h->min, 1);
    assert_int_equal(h->max, 100000);
    assert_true(absd(bench_hist_mean(h) - 50000.5) < 1e-6);
    static const double ps[] = {1, 10, 50, 90, 99, 99.9, 99.99};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
        double want = ps[i] * 1000.0;
        double got = (double)bench_hist_percentile(h, ps[i]);
        assert_true(absd(got - want) / want <= 0.01);
    }
    assert_int_equal(bench_hist_percentile(h, 100), 100000);
    assert_int_equal(bench_hist_percentile(h, 0), 1);
}

static void test_bimodal_stall(void **state)
{
    (void)state;
    /* 98.9 % at 200 us and 1.1 % at 100 ms: the shape of a stall. */
    NEW_HIST(h);
    for (int i = 0; i < 9890; i++) bench_hist_record(h, 200);
    for (int i = 0; i < 110; i++) bench_hist_record(h, 100000);
    assert_true(llabs((long long)bench_hist_percentile(h, 50) - 200) <= 2);
    assert_true(llabs((long long)bench_hist_percentile(h, 98) - 200) <= 2);
    assert_true(llabs((long long)bench_hist_percentile(h, 99) - 100000) <= 1000);
    assert_int_equal(bench_hist_percentile(h, 100), 100000);
}

static void test_single_value_and_empty(void **state)
{
    (void)state;
    NEW_HIST(h);
    assert_int_equal(bench_hist_percentile(h, 50), 0);
    assert_true(bench_hist_mean(h) == 0.0);
    bench_hist_iter it = {0};
    assert_int_equal(bench_hist_next(h, &it), 0);
    /* One value far in a wide bucket: every percentile is exactly it. */
    bench_hist_record(h, 123456789);
    assert_int_equal(bench_hist_percentile(h, 1), 123456789);
    assert_int_equal(bench_hist_percentile(h, 99.99), 123456789);
    bench_hist_record(h, 0); /* under a microsecond */
    assert_int_equal(h->min, 0);
    assert_int_equal(bench_hist_percentile(h, 10), 0);
}

static void test_merge_equals_recording_all(void **state)
{
    (void)state;
    NEW_HIST(all);
    NEW_HIST(merged);
    bench_hist part_store[4], *part[4];
    for (int t = 0; t < 4; t++) bench_hist_init(part[t] = &part_store[t]);
    srand(7);
    for (int i = 0; i < 200000; i++) {
        /* Every octave from 1 us to ~18 min alike: every magnitude. */
        unsigned k = (unsigned)rand() % 30;
        uint64_t v = ((uint64_t)1 << k) + (uint64_t)rand() % ((uint64_t)1 << k);
        bench_hist_record(all, v);
        bench_hist_record(part[i % 4], v);
    }
    for (int t = 0; t < 4; t++) bench_hist_merge(merged, part[t]);
    assert_memory_equal(all->counts, merged->counts, sizeof all->counts);
    assert_int_equal(all->total, merged->total);
    assert_int_equal(all->min, merged->min);
    assert_int_equal(all->max, merged->max);
    assert_true(absd(all->sum - merged->sum) <= 1e-9 * all->sum);
    for (double p = 0; p <= 100; p += 0.5)
        assert_int_equal(bench_hist_percentile(all, p), bench_hist_percentile(merged, p));
    /* Merging an empty histogram changes nothing, min included. */
    NEW_HIST(empty);
    bench_hist_merge(merged, empty);
    assert_int_equal(merged->min, all->min);
}

static void test_iterator(void **state)
{
    (void)state;
    NEW_HIST(h);
    static const uint64_t vals[] = {5, 5, 700, 70000, 7000000};
    for (size_t i = 0; i < 5; i++) bench_hist_record(h, vals[i]);
    bench_hist_iter it = {0};
    uint64_t counts[8], values[8];
    int n = 0;
    while (bench_hist_next(h, &it)) {
        assert_true(n < 8);
        assert_true(it.lo <= it.value && it.value <= it.hi);
        counts[n] = it.count;
        values[n++] = it.value;
    }
    assert_int_equal(n, 4);
    assert_int_equal(it.cumulative, 5);
    assert_int_equal(counts[0], 2);
    assert_int_equal(values[0], 5);
    for (int i = 1; i < 4; i++) {
        assert_true(values[i] > values[i - 1]);
        assert_true(absd((double)values[i] - (double)vals[i + 1]) / (double)vals[i + 1] <= 0.01);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_bound_every_magnitude),
        cmocka_unit_test(test_buckets_tile_the_range),
        cmocka_unit_test(test_uniform_percentiles),
        cmocka_unit_test(test_bimodal_stall),
        cmocka_unit_test(test_single_value_and_empty),
        cmocka_unit_test(test_merge_equals_recording_all),
        cmocka_unit_test(test_iterator),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
