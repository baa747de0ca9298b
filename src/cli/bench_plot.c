/* csock bench --plot: see bench_plot.h. The JSON reader knows only the
 * keys csock bench writes (each unique in the document), so it looks them
 * up rather than building a tree; the SVG is plain elements with inline
 * attributes, no script, no stylesheet, no font or image from elsewhere. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli/bench_plot.h"

/* ---- reading a --json document ------------------------------------------ */

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
    return p;
}

/* The value of "key": (after its colon), or NULL. A quote preceded by a
 * backslash is inside a string, not a key. */
static const char *find_key(const char *json, const char *key)
{
    size_t n = strlen(key);
    for (const char *p = json; (p = strchr(p, '"')); p++) {
        if ((p > json && p[-1] == '\\') || strncmp(p + 1, key, n) || p[n + 1] != '"') continue;
        const char *v = skip_ws(p + n + 2);
        if (*v == ':') return skip_ws(v + 1);
    }
    return NULL;
}

static int get_num(const char *json, const char *key, double *out)
{
    const char *v = find_key(json, key);
    char *end;
    if (!v) return -EPROTO;
    *out = strtod(v, &end);
    return end == v ? -EPROTO : 0;
}

/* A JSON string at p into buf (escapes \" \\ \/ kept as the character,
 * others as '?'), cut to fit. */
static int get_string(const char *p, char *buf, size_t size)
{
    size_t n = 0;
    if (*p++ != '"') return -EPROTO;
    for (; *p && *p != '"'; p++) {
        char ch = *p;
        if (ch == '\\') {
            p++;
            if (!*p) return -EPROTO;
            ch = (*p == '"' || *p == '\\' || *p == '/') ? *p : '?';
            if (*p == 'u') p += strlen(p) >= 5 ? 4 : 0;
        }
        if (n + 1 < size) buf[n++] = ch;
    }
    buf[n] = '\0';
    return *p == '"' ? 0 : -EPROTO;
}

/* Numbers of a flat array "[a, b, ...]" at p; with `triples`, an array of
 * [lo, hi, count] arrays flattened. *out is malloc'ed. */
static int get_array(const char *p, int triples, double **out, size_t *n)
{
    size_t cap = 64, len = 0;
    double *v = malloc(cap * sizeof *v);
    if (!v) return -ENOMEM;
    if (*p++ != '[') goto bad;
    for (;;) {
        p = skip_ws(p);
        if (*p == ']') break;
        if (triples) {
            if (*p != '[') goto bad;
            p++;
        }
        for (int k = 0; k < (triples ? 3 : 1); k++) {
            char *end;
            if (len == cap) {
                double *w = realloc(v, (cap *= 2) * sizeof *v);
                if (!w) {
                    free(v);
                    return -ENOMEM;
                }
                v = w;
            }
            v[len++] = strtod(skip_ws(p), &end);
            if (end == skip_ws(p)) goto bad;
            p = skip_ws(end);
            if (*p == ',' && (k < 2 || !triples)) p++;
        }
        if (triples) {
            if (*p != ']') goto bad;
            p = skip_ws(p + 1);
            if (*p == ',') p++;
        }
    }
    *out = v;
    *n = len;
    return 0;
bad:
    free(v);
    return -EPROTO;
}

int bench_plot_parse(const char *json, bench_plot_run *run)
{
    double total, min, max, p99, tput, dur;
    const char *hist = find_key(json, "histogram");
    const char *b = hist ? find_key(hist, "buckets") : NULL;
    const char *label = find_key(json, "label");
    if (!b || get_num(hist, "total", &total) || get_num(json, "min", &min) || get_num(json, "max", &max) ||
        get_num(json, "p99", &p99) || get_num(json, "throughput", &tput) || get_num(json, "duration_s", &dur))
        return -EPROTO;
    if (label && get_string(label, run->label, sizeof run->label)) return -EPROTO;
    double *flat;
    size_t n;
    int rc = get_array(b, 1, &flat, &n);
    if (rc < 0) return rc;
    run->buckets = malloc((n / 3 + 1) * sizeof *run->buckets);
    if (!run->buckets) {
        free(flat);
        return -ENOMEM;
    }
    run->nbuckets = n / 3;
    for (size_t i = 0; i < run->nbuckets; i++)
        run->buckets[i] = (bench_plot_bucket){(uint64_t)flat[3 * i], (uint64_t)flat[3 * i + 1],
                                              (uint64_t)flat[3 * i + 2]};
    free(flat);
    run->total = (uint64_t)total, run->min = (uint64_t)min, run->max = (uint64_t)max;
    run->p99 = p99, run->throughput = tput, run->duration_s = dur;
    /* Throughput over time: absent from older documents (then not drawn). */
    const char *series = find_key(json, "series");
    run->counts = NULL, run->ncounts = 0, run->interval_s = 0;
    if (series && !get_num(series, "interval_s", &run->interval_s) && run->interval_s > 0) {
        const char *c = find_key(series, "counts");
        if (c && (rc = get_array(c, 0, &run->counts, &run->ncounts)) < 0) {
            bench_plot_run_free(run);
            return rc;
        }
    }
    return 0;
}

void bench_plot_run_free(bench_plot_run *run)
{
    free(run->buckets);
    free(run->counts);
    run->buckets = NULL, run->counts = NULL;
    run->nbuckets = run->ncounts = 0;
}

/* ---- drawing --------------------------------------------------------------- */

/* The few functions of libm a plot needs, here: the CLI does not link it. */
static double ceil_(double x)
{
    double t = (double)(long long)x;
    return t < x ? t + 1 : t;
}

/* log10 of x > 0: x = m * 2^e with m in [1, 2), ln m from the atanh series
 * (z <= 1/3: 12 terms are far more exact than a pixel). */
static double log10_(double x)
{
    int e = 0;
    if (!(x > 0)) return 0;
    while (x >= 2) x /= 2, e++;
    while (x < 1) x *= 2, e--;
    double z = (x - 1) / (x + 1), z2 = z * z, term = z, ln = 0;
    for (int k = 1; k < 26; k += 2, term *= z2) ln += term / k;
    return (2 * ln + e * 0.69314718055994531) / 2.30258509299404568;
}

#define W 900
#define H 660
#define LEFT 90
#define RIGHT (W - 50) /* room for the last tick's label */
#define A_TOP 60   /* the spectrum */
#define A_BOT 350
#define B_TOP 430  /* throughput over time */
#define B_BOT 600

static const char *const colours[BENCH_PLOT_MAX_RUNS] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                                         "#9467bd", "#8c564b", "#e377c2", "#17becf"};

static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default:
            if ((unsigned char)*s >= 0x20) fputc(*s, f);
        }
    }
}

/* A round step (1, 2 or 5 times a power of ten) giving at most ~6 ticks
 * from 0 to at least `max`; *top is the last tick. */
static double nice_step(double max, double *top)
{
    if (!(max > 0)) max = 1;
    double raw = max / 5, mag = 1, step;
    while (mag * 10 <= raw) mag *= 10;
    while (mag > raw) mag /= 10;
    double r = raw / mag;
    step = (r <= 1 ? 1 : r <= 2 ? 2 : r <= 5 ? 5 : 10) * mag;
    *top = ceil_(max / step - 1e-9) * step;
    return step;
}

/* A tick's value, short: 0.5, 250, 12k, 1.5M. */
static void fmt_tick(double v, char *buf, size_t size)
{
    if (v >= 1e6) snprintf(buf, size, "%gM", v / 1e6);
    else if (v >= 1e4) snprintf(buf, size, "%gk", v / 1e3);
    else snprintf(buf, size, "%g", v);
}

static void text(FILE *f, double x, double y, const char *anchor, const char *s)
{
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\">", x, y, anchor);
    xml_text(f, s);
    fputs("</text>\n", f);
}

/* A panel's frame, horizontal grid and y ticks (0..top by step, each shown
 * divided by `div`), and its axis titles. */
static void panel(FILE *f, int top, int bot, double ytop, double step, double div, const char *title,
                  const char *ytitle, const char *xtitle)
{
    char v[32];
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#fff\" stroke=\"#444\"/>\n", LEFT, top,
            RIGHT - LEFT, bot - top);
    for (double t = 0; t <= ytop * (1 + 1e-9); t += step) {
        double y = bot - (bot - top) * t / ytop;
        if (t > 0)
            fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", LEFT, y, RIGHT, y);
        fmt_tick(t / div, v, sizeof v);
        text(f, LEFT - 6, y + 4, "end", v);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"15\" font-weight=\"bold\">", LEFT, top - 12);
    xml_text(f, title);
    fputs("</text>\n", f);
    double my = (top + bot) / 2.0;
    fprintf(f, "<text x=\"24\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 24 %.1f)\">", my, my);
    xml_text(f, ytitle);
    fputs("</text>\n", f);
    text(f, (LEFT + RIGHT) / 2.0, bot + 36, "middle", xtitle);
}

/* The latency unit for values up to max_us: its name and size in us. */
static double unit_for(uint64_t max_us, const char **name)
{
    if (max_us < 2000) return *name = "us", 1;
    if (max_us < 2000000) return *name = "ms", 1e3;
    return *name = "s", 1e6;
}

static void spectrum(FILE *f, const bench_plot_run *runs, size_t n)
{
    uint64_t total = 0, ymax = 0;
    for (size_t i = 0; i < n; i++) {
        if (runs[i].total > total) total = runs[i].total;
        if (runs[i].max > ymax) ymax = runs[i].max;
    }
    /* Decades of 1/(1-p) to show: as far as the largest run has values
     * (99.9 % of 1000 is the last one seen), from 2 to 6. */
    int dec = total > 1 ? (int)ceil_(log10_((double)total) - 1e-9) : 2;
    dec = dec < 2 ? 2 : dec > 6 ? 6 : dec;
    const char *uname;
    double div = unit_for(ymax, &uname), ytop, step = nice_step((double)ymax, &ytop);
    char ytitle[48];
    snprintf(ytitle, sizeof ytitle, "Latency (%s)", uname);
    panel(f, A_TOP, A_BOT, ytop, step, div, "Latency by percentile", ytitle,
          "Percentile (log scale: 90 % is one step, 99 % two, ...)");
    static const char *const names[] = {"0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"};
    for (int d = 0; d <= dec; d++) {
        double x = LEFT + (RIGHT - LEFT) * (double)d / dec;
        if (d > 0 && d < dec)
            fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>\n", x, A_TOP, x, A_BOT);
        text(f, x, A_BOT + 18, "middle", names[d]);
    }
    for (size_t i = 0; i < n; i++) {
        const bench_plot_run *r = &runs[i];
        if (!r->total) continue;
        fprintf(f, "<polyline class=\"spectrum\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
                colours[i]);
        uint64_t cum = 0;
        for (size_t b = 0; b < r->nbuckets; b++) {
            const bench_plot_bucket *k = &r->buckets[b];
            uint64_t v = k->lo + (k->hi - k->lo + 1) / 2;
            v = v < r->min ? r->min : v > r->max ? r->max : v;
            double y = A_BOT - (A_BOT - A_TOP) * (double)v / ytop;
            for (int end = 0; end < 2; end++) {
                double p = (double)(cum + (end ? k->count : 0)) / (double)r->total;
                double lx = p >= 1 ? dec : log10_(1 / (1 - p));
                if (lx > dec) lx = dec;
                fprintf(f, "%.1f,%.1f ", LEFT + (RIGHT - LEFT) * lx / dec, y);
            }
            cum += k->count;
        }
        fputs("\"/>\n", f);
    }
}

static void throughput(FILE *f, const bench_plot_run *runs, size_t n)
{
    double tmax = 0, ymax = 0;
    for (size_t i = 0; i < n; i++) {
        const bench_plot_run *r = &runs[i];
        if (r->duration_s > tmax) tmax = r->duration_s;
        for (size_t k = 0; k < r->ncounts; k++) {
            double len = r->duration_s - (double)k * r->interval_s;
            len = len > r->interval_s ? r->interval_s : len;
            if (len > r->interval_s / 10 && r->counts[k] / len > ymax) ymax = r->counts[k] / len;
        }
    }
    double ytop, step = nice_step(ymax, &ytop), xtop, xstep = nice_step(tmax, &xtop);
    panel(f, B_TOP, B_BOT, ytop, step, 1, "Throughput over time", "Messages / s", "Time (s)");
    char v[32];
    for (double t = 0; t <= xtop * (1 + 1e-9); t += xstep) {
        double x = LEFT + (RIGHT - LEFT) * t / xtop;
        fmt_tick(t, v, sizeof v);
        text(f, x, B_BOT + 18, "middle", v);
    }
    for (size_t i = 0; i < n; i++) {
        const bench_plot_run *r = &runs[i];
        if (!r->ncounts) continue;
        fprintf(f, "<polyline class=\"throughput\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
                colours[i]);
        for (size_t k = 0; k < r->ncounts; k++) {
            double t0 = (double)k * r->interval_s, t1 = t0 + r->interval_s;
            if (t1 > r->duration_s) t1 = r->duration_s;
            if (t1 - t0 <= r->interval_s / 10) break; /* a sliver at the end says nothing */
            double y = B_BOT - (B_BOT - B_TOP) * (r->counts[k] / (t1 - t0)) / ytop;
            fprintf(f, "%.1f,%.1f %.1f,%.1f ", LEFT + (RIGHT - LEFT) * t0 / xtop, y,
                    LEFT + (RIGHT - LEFT) * t1 / xtop, y);
        }
        fputs("\"/>\n", f);
    }
}

/* Top left of the spectrum, where its curves are low: a swatch and the
 * label a run, with its p99 and throughput. */
static void legend(FILE *f, const bench_plot_run *runs, size_t n)
{
    char extra[BENCH_PLOT_MAX_RUNS][64];
    size_t longest = 0;
    for (size_t i = 0; i < n; i++) {
        const bench_plot_run *r = &runs[i];
        const char *uname;
        double div = unit_for(r->p99 < 1 ? 1 : (uint64_t)r->p99, &uname);
        snprintf(extra[i], sizeof extra[i], " (p99 %.3g %s, %.0f msg/s)", r->p99 / div, uname, r->throughput);
        size_t len = strlen(r->label) + strlen(extra[i]);
        if (len > longest) longest = len;
    }
    /* About 7 px a character at 12 px sans-serif: the box fits its text. */
    int x = LEFT + 12, y = A_TOP + 12, w = 52 + 7 * (int)longest;
    if (w > RIGHT - LEFT - 24) w = RIGHT - LEFT - 24;
    fprintf(f, "<rect class=\"legend\" x=\"%d\" y=\"%d\" width=\"%d\" height=\"%zu\" fill=\"#fff\" "
            "fill-opacity=\"0.9\" stroke=\"#999\"/>\n", x, y, w, 10 + 20 * n);
    for (size_t i = 0; i < n; i++) {
        int ly = y + 20 + 20 * (int)i;
        fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"3\"/>\n", x + 8,
                ly - 4, x + 34, ly - 4, colours[i]);
        fprintf(f, "<text class=\"legend\" x=\"%d\" y=\"%d\">", x + 42, ly);
        xml_text(f, runs[i].label);
        fprintf(f, "%s</text>\n", extra[i]);
    }
}

int bench_plot_svg(FILE *f, const bench_plot_run *runs, size_t n)
{
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
            "font-family=\"sans-serif\" font-size=\"12\" fill=\"#222\">\n"
            "<title>csock bench</title>\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"#fafafa\"/>\n", W, H, W, H);
    spectrum(f, runs, n);
    throughput(f, runs, n);
    legend(f, runs, n);
    fputs("</svg>\n", f);
    return ferror(f) ? -EIO : 0;
}
