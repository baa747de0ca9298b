/* csock bench's results: the summary table on stdout and the JSON (the
 * whole histogram, the throughput series), and the exit status they give.
 * bench.c runs the measurement; this file only reports it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli/bench.h"
#include "cli/bench_http.h"
#include "cli/bench_plot.h"

void bench_fmt_us(uint64_t us, char *buf, size_t size)
{
    if (us < 10000) snprintf(buf, size, "%llu us", (unsigned long long)us);
    else if (us < 10000000) snprintf(buf, size, "%.2f ms", (double)us / 1e3);
    else snprintf(buf, size, "%.2f s", (double)us / 1e6);
}

static const double report_ps[] = {50, 90, 99, 99.9, 99.99};
static const char *const report_names[] = {"p50", "p90", "p99", "p99.9", "p99.99"};
#define NREPORT (sizeof report_ps / sizeof report_ps[0])

/* n a second over `secs` (0 when nothing was measured: stopped in the warm-up). */
static double per_sec(double n, double secs)
{
    return secs > 0 ? n / secs : 0.0;
}

const char *bench_mode_name(const bench_opts *o)
{
    return o->mode == BENCH_UPPER ? "upper" : o->mode == BENCH_HTTP ? "http" : "echo";
}

static void print_table(const bench_opts *o, const bench_stats *st)
{
    double secs = (double)st->window_ns / 1e9;
    char v[32];
    printf("csock bench %s: ", o->target);
    if (o->mode == BENCH_HTTP)
        printf("http %s %s%s", o->method ? o->method : "GET", o->http_path,
               o->pipeline > 1 ? " pipelined" : "");
    else printf("%s, %zu-byte %s", bench_mode_name(o), o->size, o->ws ? "WebSocket messages" : o->udp ? "datagrams" : "messages");
    printf(", %u connection%s, %u thread%s, ", o->conns, o->conns == 1 ? "" : "s", o->threads,
           o->threads == 1 ? "" : "s");
    if (o->rate > 0) printf("open loop at %.0f/s", o->rate);
    else if (o->connect_each) printf("closed loop, a connection a message");
    else printf("closed loop, depth %u", o->depth);
    printf(", %.2f s measured\n", secs);
    if (st->window_ns < o->duration_ns) printf("  (interrupted)\n");
    printf("  throughput  %.1f msg/s  (%llu messages, %.2f MB/s %s)\n", per_sec((double)st->msgs, secs),
           (unsigned long long)st->msgs, per_sec((double)st->bytes, secs) / 1e6,
           o->mode == BENCH_HTTP ? "of responses" : "each way");
    if (o->mode == BENCH_HTTP) {
        uint64_t cls[6] = {0};
        printf("  status     ");
        for (int i = 0; i < 600; i++) {
            if (st->status[i]) printf(" %d: %llu", i, (unsigned long long)st->status[i]);
            cls[i / 100] += st->status[i];
        }
        printf("  (");
        for (int i = 1, n = 0; i < 6; i++)
            if (cls[i] || i == 2) printf("%s%dxx %llu", n++ ? ", " : "", i, (unsigned long long)cls[i]);
        printf(")\n");
    }
    printf("  latency    ");
    for (size_t i = 0; i < NREPORT; i++) printf(" %10s", report_names[i]);
    printf(" %10s %10s\n             ", "max", "mean");
    for (size_t i = 0; i < NREPORT; i++) {
        bench_fmt_us(bench_hist_percentile(&st->hist, report_ps[i]), v, sizeof v);
        printf(" %10s", v);
    }
    bench_fmt_us(st->hist.total ? st->hist.max : 0, v, sizeof v);
    printf(" %10s", v);
    bench_fmt_us((uint64_t)(bench_hist_mean(&st->hist) + 0.5), v, sizeof v);
    printf(" %10s\n", v);
    printf("  errors     ");
    for (int i = 0; i < BENCH_ERR_KINDS; i++) printf(" %s %llu", bench_err_names[i], (unsigned long long)st->err[i]);
    if (st->unsent) printf(" (unsent %llu: no connection was up)", (unsigned long long)st->unsent);
    printf("\n");
    if (st->msgs) {
        printf("  cpu         load %.2f us/msg (%.0f %% of a CPU)", st->load_cpu_s * 1e6 / (double)st->msgs,
               per_sec(st->load_cpu_s * 100, secs));
        if (st->server_cpu_s >= 0)
            printf(", server %.2f us/msg (%.0f %%)", st->server_cpu_s * 1e6 / (double)st->msgs,
                   per_sec(st->server_cpu_s * 100, secs));
        printf("\n");
    }
}

/* A JSON string's contents (control characters as '?'). */
static void json_str(FILE *f, const char *s)
{
    for (const char *p = s; *p; p++)
        fprintf(f, (*p == '"' || *p == '\\') ? "\\%c" : ((unsigned char)*p < 0x20 ? "?" : "%c"), *p);
}

/* Throughput over time: the counts of the intervals measured. */
static void write_series(FILE *f, const bench_opts *o, const bench_stats *st)
{
    uint64_t n = (st->window_ns + o->series_ns - 1) / o->series_ns;
    if (n > o->nseries) n = o->nseries;
    fprintf(f, " \"series\": {\"interval_s\": %.3f, \"counts\": [", (double)o->series_ns / 1e9);
    for (uint64_t i = 0; i < n; i++) fprintf(f, "%s%llu", i ? ", " : "", (unsigned long long)st->series[i]);
    fprintf(f, "]},\n");
}

void bench_write_json(FILE *f, const bench_opts *o, const bench_stats *st)
{
    double secs = (double)st->window_ns / 1e9;
    fprintf(f, "{\"target\": \"");
    json_str(f, o->target);
    if (o->label) {
        fprintf(f, "\", \"label\": \"");
        json_str(f, o->label);
    }
    fprintf(f, "\", \"mode\": \"%s\", \"ws\": %s, \"size\": %zu, \"conns\": %u, \"threads\": %u, ",
            bench_mode_name(o), o->ws ? "true" : "false", o->size, o->conns, o->threads);
    if (o->mode == BENCH_HTTP) {
        uint64_t cls[6] = {0};
        fprintf(f, "\"method\": \"%s\", \"pipeline\": %u, \"path\": \"", o->method ? o->method : "GET",
                o->pipeline ? o->pipeline : 1);
        json_str(f, o->http_path);
        fprintf(f, "\", \"status\": {");
        for (int i = 0, n = 0; i < 600; i++) {
            if (st->status[i]) fprintf(f, "%s\"%d\": %llu", n++ ? ", " : "", i, (unsigned long long)st->status[i]);
            cls[i / 100] += st->status[i];
        }
        fprintf(f, "}, \"status_class\": {");
        for (int i = 1; i < 6; i++) fprintf(f, "%s\"%dxx\": %llu", i > 1 ? ", " : "", i, (unsigned long long)cls[i]);
        fprintf(f, "}, ");
    }
    if (o->rate > 0) fprintf(f, "\"loop\": \"open\", \"rate\": %.3f, ", o->rate);
    else fprintf(f, "\"loop\": \"closed\", \"depth\": %u, ", o->depth);
    fprintf(f, "\"connect\": %s, \"engine\": \"%s\", ", o->connect_each ? "true" : "false",
            o->raw ? "sockets" : "streams");
    fprintf(f, "\"duration_s\": %.6f, \"warmup_s\": %.3f,\n", secs, (double)o->warmup_ns / 1e9);
    fprintf(f, " \"messages\": %llu, \"bytes\": %llu, \"throughput\": %.3f, \"connects\": %llu, "
            "\"unsent\": %llu,\n", (unsigned long long)st->msgs, (unsigned long long)st->bytes,
            per_sec((double)st->msgs, secs), (unsigned long long)st->connects, (unsigned long long)st->unsent);
    fprintf(f, " \"conns_answered\": %llu, \"conns_up_at_end\": %llu,\n", (unsigned long long)st->answered,
            (unsigned long long)st->up_at_end);
    fprintf(f, " \"errors\": {");
    for (int i = 0; i < BENCH_ERR_KINDS; i++)
        fprintf(f, "%s\"%s\": %llu", i ? ", " : "", bench_err_names[i], (unsigned long long)st->err[i]);
    fprintf(f, "},\n \"latency_us\": {\"min\": %llu, \"mean\": %.1f, ",
            (unsigned long long)(st->hist.total ? st->hist.min : 0), bench_hist_mean(&st->hist));
    for (size_t i = 0; i < NREPORT; i++)
        fprintf(f, "\"%s\": %llu, ", report_names[i],
                (unsigned long long)bench_hist_percentile(&st->hist, report_ps[i]));
    fprintf(f, "\"max\": %llu},\n", (unsigned long long)(st->hist.total ? st->hist.max : 0));
    write_series(f, o, st);
    /* CPU over the window: csock bench's own, and --server-pid's (null when unknown). */
    double m = st->msgs ? (double)st->msgs : 1;
    fprintf(f, " \"cpu\": {\"load_s\": %.4f, \"load_us_per_msg\": %.4f, ", st->load_cpu_s,
            st->load_cpu_s * 1e6 / m);
    if (st->server_cpu_s >= 0)
        fprintf(f, "\"server_s\": %.4f, \"server_us_per_msg\": %.4f},\n", st->server_cpu_s,
                st->server_cpu_s * 1e6 / m);
    else
        fprintf(f, "\"server_s\": null, \"server_us_per_msg\": null},\n");
    /* Every non-empty bucket: [lowest, highest, count] in us, in order. */
    fprintf(f, " \"histogram\": {\"unit\": \"us\", \"sub_buckets\": %u, \"total\": %llu, \"buckets\": [",
            BENCH_HIST_SUB, (unsigned long long)st->hist.total);
    bench_hist_iter it = {0};
    for (int first = 1; bench_hist_next(&st->hist, &it); first = 0)
        fprintf(f, "%s[%llu, %llu, %llu]", first ? "" : ", ", (unsigned long long)it.lo,
                (unsigned long long)it.hi, (unsigned long long)it.count);
    fprintf(f, "]}}\n");
}

static uint64_t total_errors(const bench_stats *st)
{
    uint64_t e = 0;
    for (int i = 0; i < BENCH_ERR_KINDS; i++) e += st->err[i];
    return e;
}


int bench_report(const bench_opts *o, const bench_stats *st)
{
    if (o->json && !strcmp(o->json, "-")) {
        bench_write_json(stdout, o, st);
    } else {
        print_table(o, st);
        if (o->json) {
            FILE *f = fopen(o->json, "w");
            if (!f) cli_die(CLI_ERR, "--json %s: %s", o->json, strerror(errno));
            bench_write_json(f, o, st);
            if (fclose(f)) cli_die(CLI_ERR, "--json %s: %s", o->json, strerror(errno));
        }
    }
    fflush(stdout);
    return total_errors(st) || !st->msgs ? CLI_ERR : CLI_OK;
}
