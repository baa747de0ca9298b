/* --progress: one line on stderr, redrawn a few times a second, with the
 * bytes sent (from standard input) and received, the rate, and the percent
 * and time left when the input's size is known (a regular file). Only when
 * stderr is a terminal; the line is cleared at the end. */
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/netcat.h"

#define PROGRESS_MS 250 /* redraw interval */

/* "1.5 MiB": n bytes in binary units. */
static void human(uint64_t n, char *buf, size_t size)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) v /= 1024, u++;
    if (u == 0)
        snprintf(buf, size, "%llu B", (unsigned long long)n);
    else
        snprintf(buf, size, "%.1f %s", v, units[u]);
}

static void progress_draw(nc_ctx *c)
{
    nc_progress *pr = &c->progress;
    if (!pr->sent && !pr->received) {
        /* Nothing moved yet (a listener waiting for its peer): no line, and
         * the rate's clock starts at the last idle tick, not at the start. */
        pr->t0 = csock_loop_now(c->loop);
        return;
    }
    uint64_t ms = csock_loop_now(c->loop) - pr->t0;
    char out[32], in[32], rate[32], tail[48] = "";
    human(pr->sent, out, sizeof out);
    human(pr->received, in, sizeof in);
    uint64_t per_s = ms ? (pr->sent + pr->received) * 1000 / ms : 0;
    human(per_s, rate, sizeof rate);
    if (pr->total) {
        uint64_t done = pr->sent < pr->total ? pr->sent : pr->total;
        uint64_t pct = done * 100 / pr->total;
        uint64_t left_s = done && pr->sent < pr->total ? (pr->total - done) * ms / done / 1000 : 0;
        snprintf(tail, sizeof tail, "  %3llu%%  ETA %llu:%02llu", (unsigned long long)pct,
                 (unsigned long long)(left_s / 60), (unsigned long long)(left_s % 60));
    }
    fprintf(stderr, "\r> %s  < %s  %s/s%s\033[K", out, in, rate, tail);
    fflush(stderr);
    pr->drawn = 1;
}

static void on_progress_tick(csock_timer *t)
{
    progress_draw(csock_timer_data(t));
}

void progress_start(nc_ctx *c)
{
    nc_progress *pr = &c->progress;
    if (!c->o->progress || !isatty(2)) return;
    struct stat st;
    if (!c->o->recv_only && fstat(0, &st) == 0 && S_ISREG(st.st_mode)) {
        off_t pos = lseek(0, 0, SEEK_CUR); /* what is left of it is what we send */
        pr->total = (uint64_t)st.st_size - (pos > 0 ? (uint64_t)pos : 0);
    }
    pr->t0 = csock_loop_now(c->loop);
    if (csock_timer_new(c->loop, &pr->timer) < 0) return; /* no progress: not worth failing */
    csock_timer_set_data(pr->timer, c);
    csock_timer_unref(pr->timer); /* the line alone keeps nothing running */
    if (csock_timer_start(pr->timer, on_progress_tick, PROGRESS_MS, PROGRESS_MS) < 0) {
        csock_timer_close(pr->timer, NULL);
        pr->timer = NULL;
    }
}

void progress_end(nc_ctx *c)
{
    nc_progress *pr = &c->progress;
    if (!pr->timer) return;
    csock_timer_close(pr->timer, NULL);
    pr->timer = NULL;
    if (pr->drawn) fputs("\r\033[K", stderr); /* the terminal as it was */
    fflush(stderr);
}
