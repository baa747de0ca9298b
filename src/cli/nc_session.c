/* The relay's session: set-up of the loop, stdin/stdout and signals, the
 * end of the session, and teardown. */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/netcat.h"

#define GROW_FIRST 16         /* grow(): the first capacity; doubled from there */
#define STDOUT_DRAIN_MS 2000  /* stopped by a signal: time for stdout's queue to go */

void nc_finish(nc_ctx *c, int status)
{
    if (c->stopped) return;
    if (status != CLI_OK || c->status == CLI_OK) c->status = status;
    c->stopped = 1;
    csock_loop_stop(c->loop);
}

/* Peers out of the session that still have something to say: a WebSocket
 * closing handshake (bounded by its timeout), or a stream's last bytes
 * (a TLS close_notify, the rest of an upload) still queued, which the
 * end would cut off (csock_stream_end bounds it: a peer that takes none
 * of it for 2 s is cut). Their close callback calls check_done again. */
static int last_words(const nc_ctx *c)
{
    for (const nc_peer *p = c->ending; p; p = p->next)
        if (p->ws || (p->s && csock_stream_write_queue_size(p->s))) return 1;
    return 0;
}

/* Single-peer modes end when the peer is gone (and its child reaped);
 * --send-only ends once stdin is sent. Both wait for stdout to drain. */
void check_done(nc_ctx *c)
{
    if (c->stopped) return;
    int over = (c->quitting && !c->npeers) ||
               (!c->o->keep_open && c->served && !c->npeers && !c->nchildren);
    if (!over || last_words(c)) return; /* their close calls again */
    if (c->out && csock_stream_write_queue_size(c->out)) return; /* on_out_drain calls again */
    /* A failed stdout's queue is empty too (dropped, not written: a file at
     * its size limit, found by the write that came with the peer's last
     * bytes): on_out_drain reports it, status 1, a moment later. */
    if (c->out && csock_stream_error(c->out)) return;
    nc_finish(c, c->status);
}

static void on_stop_signal(csock_signal *s, int signum)
{
    nc_ctx *c = csock_signal_data(s);
    if (c->o->verbose) cli_warn("stopped by signal %d", signum);
    nc_finish(c, CLI_OK);
}

static void watch_signal(nc_ctx *c, int i, int signum, csock_signal_cb cb, int ref)
{
    int rc = csock_signal_new(c->loop, &c->sig[i]);
    if (rc == 0) rc = csock_signal_start(c->sig[i], cb, signum);
    if (rc < 0) cli_die(CLI_ERR, "signal %d: %s", signum, csock_strerror(rc));
    csock_signal_set_data(c->sig[i], c);
    if (!ref) csock_signal_unref(c->sig[i]);
}

/* Children are reaped on SIGCHLD. A parent that ignored SIGCHLD (supervisors,
 * Perl's $SIG{CHLD}='IGNORE') passes SIG_IGN on through exec, and then the
 * kernel reaps our children itself and sends no SIGCHLD at all: we would wait
 * for them forever. The default disposition brings the signal back. (A
 * SIGCHLD blocked in the inherited mask is fine: the signalfd reads it
 * blocked; SA_NOCLDWAIT does not survive exec.) */
static void sigchld_default(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGCHLD, &sa, NULL) < 0)
        cli_die(CLI_ERR, "SIGCHLD: %s", strerror(errno));
}

static void restore_blocking(void)
{
    /* stdin/stdout may be a terminal shared with the shell: give it back as we found it. */
    for (int fd = 0; fd <= 1; fd++) {
        int fl = fcntl(fd, F_GETFL);
        if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    }
}

static csock_stream *open_std(nc_ctx *c, int fd, const char *name)
{
    csock_stream *s;
    int rc = csock_stream_open(c->loop, fd, &s);
    if (rc < 0) cli_die(CLI_ERR, "%s: %s", name, csock_strerror(rc));
    csock_stream_set_data(s, c);
    return s;
}

void nc_ctx_init(nc_ctx *c, const nc_opts *o)
{
    memset(c, 0, sizeof *c);
    c->o = o;
    c->next_id = 1; /* <user0> is stdin, as in ncat */
    cli_raise_nofile();
    int rc = csock_loop_new(NULL, &c->loop);
    if (rc < 0) cli_die_loop("event loop", rc);
    if (o->verbose) cli_say_backend(c->loop);
    cli_hold_stop_signals(); /* to the exit: the teardown is bounded */
    watch_signal(c, 1, SIGINT, on_stop_signal, 0);
    watch_signal(c, 2, SIGTERM, on_stop_signal, 0);
    if (o->exec_argv) {
        sigchld_default();
        watch_signal(c, 0, SIGCHLD, on_sigchld, 1);
        return; /* children talk to the peers: stdin and stdout stay untouched */
    }
    atexit(restore_blocking);
    c->out = open_std(c, 1, "stdout");
    csock_stream_on_drain(c->out, on_out_drain);
    if (!o->recv_only) c->in = open_std(c, 0, "stdin");
    rc = csock_timer_new(c->loop, &c->quiet);
    if (rc < 0) cli_die(CLI_ERR, "timer: %s", csock_strerror(rc));
    csock_timer_set_data(c->quiet, c);
    progress_start(c);
}

void *grow(void *v, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return v;
    size_t n = *cap ? *cap : GROW_FIRST;
    while (n < need) n *= 2;
    v = realloc(v, n * elem);
    if (v) *cap = n;
    return v;
}

int nc_handshake_add(nc_ctx *c, csock_stream *s)
{
    nc_handshake *v = grow(c->handshakes, &c->cap_handshakes, c->nhandshakes + 1, sizeof *v);
    if (!v) return -ENOMEM;
    c->handshakes = v;
    nc_handshake *h = &c->handshakes[c->nhandshakes++];
    h->s = s;
    cli_peer_text(s, h->peer, sizeof h->peer);
    return 0;
}

const char *nc_handshake_done(nc_ctx *c, csock_stream *s, char *buf, size_t size)
{
    snprintf(buf, size, "?");
    for (size_t i = 0; i < c->nhandshakes; i++) {
        if (c->handshakes[i].s != s) continue;
        snprintf(buf, size, "%s", c->handshakes[i].peer);
        c->handshakes[i] = c->handshakes[--c->nhandshakes];
        break;
    }
    return buf;
}

void nc_close_listeners(nc_ctx *c)
{
    for (size_t i = 0; i < c->neps; i++) {
        if (c->eps[i].listener) csock_listener_close(c->eps[i].listener, NULL);
        c->eps[i].listener = NULL;
    }
}

/* What is still queued for stdout (a stop by signal) gets a moment to go. */
static void drain_stdout(nc_ctx *c)
{
    if (!c->out) return;
    uint64_t until = csock_loop_now(c->loop) + STDOUT_DRAIN_MS;
    while (csock_stream_write_queue_size(c->out) && csock_loop_now(c->loop) < until)
        if (csock_loop_run(c->loop, CSOCK_RUN_ONCE) < 0) break;
}

/* Nothing new may join from here: the listener, the handshakes still
 * running, a connect still in flight and stdin close first. */
static void close_entrances(nc_ctx *c)
{
    c->stopped = 1; /* callbacks from here on change nothing */
    if (c->in) csock_stream_close(c->in, NULL);
    nc_close_listeners(c);
    for (size_t i = 0; i < c->neps; i++)
        if (c->eps[i].http) csock_http_server_close(c->eps[i].http);
    if (c->connecting) csock_stream_close(c->connecting, NULL);
    c->connecting = NULL;
    /* A dial still under way: its attempts close now, its callback never
     * runs (it would find the session gone). A lookup already in its
     * thread still ends the loop's last run when it answers. */
    if (c->dialing) csock_dial_cancel(c->dialing);
    c->dialing = NULL;
    while (c->nhandshakes)
        csock_stream_close(c->handshakes[--c->nhandshakes].s, NULL);
}

/* Every peer, the streams of peers already on their way out, and the
 * pipes to children that outlived their peer. */
static void close_peers(nc_ctx *c)
{
    while (c->head) {
        nc_peer *p = c->head;
        peer_unlink(p);
        p->gone = 1; /* for a lost write's close callback (on_lost_stream_closed) */
        child_forget_pipes(p);
        if (p->idle) csock_timer_close(p->idle, NULL);
        if (p->s) {
            ending_add(p);
            csock_stream_close(p->s, on_peer_stream_closed);
        } else if (p->ws) { /* going away: a closing handshake, bounded by its timeout */
            ending_add(p);
            int rc = csock_ws_close(p->ws, CSOCK_WS_GOING_AWAY, NULL, 0);
            if (rc < 0 && rc != -EALREADY) csock_ws_abort(p->ws);
        } else {
            peer_free(p);
        }
    }
    for (nc_peer *p = c->ending; p; p = p->next) /* WebSocket peers: their CLOSED frees them */
        if (!p->ws) csock_stream_close(p->s, on_peer_stream_closed);
    while (c->npipes)
        on_pipe_shut(c->pipes[c->npipes - 1], 0);
}

/* Close every handle the session made, run the loop until the last close
 * has finished (every handle is closing, so the run ends), free the loop. */
static void teardown(nc_ctx *c)
{
    close_entrances(c);
    close_peers(c);
    drain_stdout(c);
    if (c->out) csock_stream_close(c->out, NULL);
    if (c->dg) csock_dgram_close(c->dg, NULL);
    if (c->quiet) csock_timer_close(c->quiet, NULL);
    progress_end(c);
    if (c->delay) csock_timer_close(c->delay, NULL);
    for (int i = 0; i < 3; i++)
        if (c->sig[i]) csock_signal_close(c->sig[i], NULL);
    while (csock_loop_run(c->loop, CSOCK_RUN_DEFAULT) > 0) {
        /* 1: stopped while handles were still closing; run on */
    }
    if (csock_loop_free(c->loop) == 0) c->loop = NULL;
    free(c->children);
    free(c->pipes);
    free(c->handshakes);
    free(c->eps);
}

/* sd: systemd's watchdog and STOPPING=1 around the session, or NULL. */
static int run(nc_ctx *c, cli_sd *sd)
{
    if (sd) cli_sd_loop_start(sd, c->loop, 0);
    int rc = csock_loop_run(c->loop, CSOCK_RUN_DEFAULT);
    if (sd) {
        cli_sd_loop_drain(sd, 0);
        cli_sd_loop_stop(sd, 0);
    }
    if (rc < 0) cli_die(CLI_ERR, "event loop: %s", csock_strerror(rc));
    teardown(c);
    fflush(stdout);
    if (c->o->hexdump) fflush(c->o->hexdump);
    return c->status;
}

int nc_ctx_run(nc_ctx *c) { return run(c, NULL); }

int nc_ctx_run_sd(nc_ctx *c)
{
    cli_sd sd = {0};
    return run(c, &sd);
}
