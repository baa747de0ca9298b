/* timer_signal [INTERVAL_MS [COUNT]]: print "tick N" every INTERVAL_MS
 * (default 1000) until COUNT ticks have passed (default 0: no limit) or
 * SIGINT/SIGTERM arrives; then close every handle and exit 0.
 *
 * Why the signals are loop events: a csock_signal callback is an ordinary
 * callback on the loop's thread, so it may call anything (close handles,
 * print) — unlike a signal(2) handler, which may only set a flag. And why
 * everything is closed rather than the loop stopped: csock_loop_run()
 * returns 0 once nothing is left, and only then can csock_loop_free()
 * succeed, so the program ends exactly, with nothing leaked. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "csock/csock.h"

typedef struct app {
    csock_timer *tick;
    csock_signal *sigint, *sigterm;
    unsigned long ticks, count;
} app;

static void stop_all(app *a)
{
    /* Each close is asynchronous and idempotent per handle: NULL the
     * pointers so a second signal cannot close twice. */
    if (a->tick) csock_timer_close(a->tick, NULL);
    if (a->sigint) csock_signal_close(a->sigint, NULL);
    if (a->sigterm) csock_signal_close(a->sigterm, NULL);
    a->tick = NULL;
    a->sigint = a->sigterm = NULL;
}

static void on_tick(csock_timer *t)
{
    app *a = csock_timer_data(t);
    printf("tick %lu\n", ++a->ticks);
    fflush(stdout); /* a pipe is block-buffered: whoever reads us waits otherwise */
    if (a->count && a->ticks >= a->count) stop_all(a);
}

static void on_signal(csock_signal *s, int signum)
{
    app *a = csock_signal_data(s);
    printf("stopped by %s after %lu ticks\n", signum == SIGINT ? "SIGINT" : "SIGTERM", a->ticks);
    stop_all(a);
}

int main(int argc, char **argv)
{
    unsigned long interval = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000;
    app a = {.count = argc > 2 ? strtoul(argv[2], NULL, 10) : 0};
    csock_loop *loop = NULL;
    int rc = csock_loop_new(NULL, &loop);
    if (rc == 0) rc = csock_timer_new(loop, &a.tick);
    if (rc == 0) rc = csock_signal_new(loop, &a.sigint);
    if (rc == 0) rc = csock_signal_new(loop, &a.sigterm);
    if (rc < 0) {
        fprintf(stderr, "timer_signal: %s\n", csock_strerror(rc));
        return 1;
    }
    csock_timer_set_data(a.tick, &a);
    csock_signal_set_data(a.sigint, &a);
    csock_signal_set_data(a.sigterm, &a);
    /* Start cannot fail for memory (new reserved everything); a bad signal
     * number could, but these two are fine. */
    csock_timer_start(a.tick, on_tick, interval, interval);
    csock_signal_start(a.sigint, on_signal, SIGINT);
    csock_signal_start(a.sigterm, on_signal, SIGTERM);
    rc = csock_loop_run(loop, CSOCK_RUN_DEFAULT);
    if (rc < 0) fprintf(stderr, "timer_signal: %s\n", csock_strerror(rc));
    return csock_loop_free(loop) < 0 || rc < 0;
}
