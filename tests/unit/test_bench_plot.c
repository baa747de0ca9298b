/* csock bench --plot (src/cli/bench_plot.c, compiled in): the --json reader
 * (keys found wherever they are, escapes in the label, documents without a
 * series, broken ones refused), its own log10 and tick steps, and the SVG:
 * a spectrum and a throughput line a run, a legend entry each, the labels
 * escaped. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "cli/bench_plot.c"

static const char doc[] =
    "{\"target\": \"tcp://x:1\", \"label\": \"a \\\"b\\\" <c>\", \"mode\": \"echo\",\n"
    " \"duration_s\": 1.000000, \"messages\": 6, \"throughput\": 6.000,\n"
    " \"latency_us\": {\"min\": 10, \"mean\": 50.0, \"p50\": 20, \"p90\": 300, \"p99\": 300, \"p99.9\": 300,"
    " \"p99.99\": 300, \"max\": 300},\n"
    " \"series\": {\"interval_s\": 0.500, \"counts\": [2, 4]},\n"
    " \"histogram\": {\"unit\": \"us\", \"sub_buckets\": 128, \"total\": 6, \"buckets\": [[10, 10, 3], [20, 20, 2],"
    " [300, 301, 1]]}}\n";

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++) n++;
    return n;
}

static void test_parse(void **state)
{
    (void)state;
    bench_plot_run r = {.label = "unset"};
    assert_int_equal(bench_plot_parse(doc, &r), 0);
    assert_string_equal(r.label, "a \"b\" <c>");
    assert_int_equal(r.nbuckets, 3);
    assert_int_equal(r.buckets[2].lo, 300);
    assert_int_equal(r.buckets[2].hi, 301);
    assert_int_equal(r.buckets[0].count, 3);
    assert_int_equal(r.total, 6);
    assert_int_equal(r.min, 10);
    assert_int_equal(r.max, 300);
    assert_true(r.p99 == 300 && r.throughput == 6 && r.duration_s == 1);
    assert_int_equal(r.ncounts, 2);
    assert_true(r.counts[1] == 4 && r.interval_s == 0.5);
    bench_plot_run_free(&r);
}

static void test_parse_without_series_or_label(void **state)
{
    (void)state;
    const char *old = "{\"throughput\": 1, \"duration_s\": 2, \"latency_us\": {\"min\": 1, \"p99\": 1, \"max\": 1},"
                      " \"histogram\": {\"total\": 1, \"buckets\": [[1,1,1]]}}";
    bench_plot_run r = {.label = "file"};
    assert_int_equal(bench_plot_parse(old, &r), 0);
    assert_string_equal(r.label, "file");
    assert_int_equal(r.ncounts, 0);
    assert_int_equal(r.nbuckets, 1);
    bench_plot_run_free(&r);
}

static void test_parse_refuses(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{}",
        "not json",
        "{\"throughput\": 1, \"duration_s\": 2, \"latency_us\": {\"min\": 1, \"p99\": 1, \"max\": 1},"
        " \"histogram\": {\"total\": 1, \"buckets\": [[1,1]]}}",
        "{\"throughput\": 1, \"duration_s\": 2, \"latency_us\": {\"min\": 1, \"p99\": 1, \"max\": 1},"
        " \"histogram\": {\"total\": 1, \"buckets\": [[1,1,1]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bench_plot_run r = {0};
        int rc = bench_plot_parse(bad[i], &r);
        assert_true(rc == -EPROTO || rc == -ENOMEM);
        bench_plot_run_free(&r);
    }
}

static void test_math(void **state)
{
    (void)state;
    static const double xs[] = {1, 2, 10, 99.5, 1000, 123456, 0.001};
    static const double want[] = {0, 0.30103, 1, 1.99782, 3, 5.09151, -3};
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
        double d = log10_(xs[i]) - want[i];
        assert_true(d < 1e-4 && d > -1e-4);
    }
    double top;
    assert_true(nice_step(7, &top) == 2 && top == 8);
    assert_true(nice_step(95000, &top) == 20000 && top == 100000);
    assert_true(nice_step(0, &top) == 0.2 && top == 1);
    assert_true(ceil_(2.0) == 2 && ceil_(2.1) == 3);
}

static void test_svg(void **state)
{
    (void)state;
    bench_plot_run runs[2] = {{.label = "one"}, {.label = "two"}};
    assert_int_equal(bench_plot_parse(doc, &runs[0]), 0);
    assert_int_equal(bench_plot_parse(doc, &runs[1]), 0);
    snprintf(runs[1].label, sizeof runs[1].label, "second & last");
    free(runs[1].counts); /* a run without a series: no throughput line */
    runs[1].counts = NULL, runs[1].ncounts = 0;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) skip(); /* out of memory under the allocation sweep */
    assert_int_equal(bench_plot_svg(f, runs, 2), 0);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(count(buf, "class=\"spectrum\""), 2);
    assert_int_equal(count(buf, "class=\"throughput\""), 1);
    assert_int_equal(count(buf, "<text class=\"legend\""), 2);
    assert_non_null(strstr(buf, "a &quot;b&quot; &lt;c&gt; (p99 300 us"));
    assert_non_null(strstr(buf, "second &amp; last"));
    assert_non_null(strstr(buf, ">Latency (us)<"));
    assert_non_null(strstr(buf, ">99%<")); /* 6 values: the axis ends at 99 % */
    assert_null(strstr(buf, ">99.9%<"));
    assert_null(strstr(buf, "<script"));
    assert_non_null(strstr(buf, "</svg>"));
    free(buf);
    bench_plot_run_free(&runs[0]);
    bench_plot_run_free(&runs[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_without_series_or_label),
        cmocka_unit_test(test_parse_refuses),
        cmocka_unit_test(test_math),
        cmocka_unit_test(test_svg),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
