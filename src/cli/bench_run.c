/* One thread of csock bench: a loop, its share of the connections and, for
 * the open loop, its share of the rate.
 *
 * A connection keeps a ring of the times its messages in flight were due:
 * the send time in the closed loop, the intended send time in the open loop
 * (the wrk2 method: a stall that holds back the next sends is charged to
 * each of them, not hidden by sending them late). Answers are checked byte
 * by byte against what was sent as they arrive, so a message split over
 * reads or several in one read cost nothing extra. A failed connection is
 * closed, its error counted by kind, and made again: at once after a reset
 * or wrong bytes, after RETRY_NS after a failed connect. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <unistd.h>
#include <time.h>

#include "cli/bench_conn.h"

const char *const bench_err_names[BENCH_ERR_KINDS] = {"refused", "reset", "timeout",
                                                      "wrong_bytes", "non_2xx", "other"};

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int bench_err_kind(int status)
{
    switch (status) {
    case -ECONNREFUSED: case -ENOENT: return BENCH_ERR_REFUSED;
    case -ECONNRESET: case -EPIPE: case CSOCK_EOF: return BENCH_ERR_RESET;
    case -ETIMEDOUT: return BENCH_ERR_TIMEOUT;
    default: return BENCH_ERR_OTHER;
    }
}

void bench_count_err(run *r, int kind)
{
    r->t->st.err[kind]++;
    uint64_t e = 0;
    for (int i = 0; i < BENCH_ERR_KINDS; i++) e += r->t->st.err[i];
    atomic_store_explicit(&r->t->live_errs, e, memory_order_relaxed);
}

static void conn_start(conn *c);

/* The stream is gone: --connect makes the next one at once (unless a
 * failure asked for a pause); the housekeeping does otherwise. */
void bench_conn_down(conn *c)
{
    c->state = C_DOWN;
    if (c->r->o->connect_each && !c->r->stopping && c->retry_at <= bench_now_ns()) conn_start(c);
}

static void on_closed(csock_stream *s)
{
    bench_conn_down(csock_stream_data(s));
}

static void on_dgram_closed(csock_dgram *d)
{
    bench_conn_down(csock_dgram_data(d));
}

/* Count the error (kind < 0: none, the server closed as it said it
 * would), close the stream; the housekeeping makes it again. */
void bench_conn_fail(conn *c, int kind, uint64_t retry_after_ns)
{
    if (c->state != C_UP && c->state != C_CONNECTING) return;
    if (!c->r->stopping && kind >= 0) bench_count_err(c->r, kind);
    c->state = C_CLOSING;
    c->retry_at = bench_now_ns() + retry_after_ns;
    if (c->ws) csock_ws_abort(c->ws); /* CLOSED follows: on_ws */
    else if (c->d) csock_dgram_close(c->d, on_dgram_closed);
    else if (c->io) bench_raw_close(c);
    else csock_stream_close(c->s, on_closed);
    c->s = NULL;
    c->ws = NULL;
    c->d = NULL;
}

static int grow(conn *c)
{
    uint64_t cap = (c->mask + 1) * 2;
    if (cap > MAX_INFLIGHT) return -ENOBUFS;
    uint64_t *st = malloc(cap * sizeof *st);
    if (!st) return -ENOMEM;
    for (uint64_t i = c->done; i < c->sent; i++) st[i & (cap - 1)] = c->stamps[i & c->mask];
    if (c->stamps != c->inline_stamps) free(c->stamps);
    c->stamps = st;
    c->mask = cap - 1;
    return 0;
}

/* Where in the pattern message `k` of `c` starts: differs between
 * messages and connections, so a misplaced answer does not match. */
size_t bench_msg_off(const conn *c, uint64_t k)
{
    if (c->r->o->mode == BENCH_HTTP) return 0; /* the request, whole */
    return (size_t)(((uint64_t)c->id * 977u + k * 7919u) % BENCH_PAT);
}

/* Send `n` messages due at `due` (n > 1: --pipeline's batch of requests,
 * in one write). */
static int conn_send_n(conn *c, uint64_t due, unsigned n)
{
    const bench_opts *o = c->r->o;
    while (c->sent + n - c->done > c->mask + 1) {
        int rc = grow(c);
        if (rc < 0) return rc;
    }
    int rc;
    if (c->io) { /* the bytes are the pattern's: stamped first, then written */
        for (unsigned i = 0; i < n; i++) c->stamps[c->sent++ & c->mask] = due;
        /* Let go by answers being read: written with the others those
         * answers let go, in one write when the read is done (bench_raw.c). */
        return c->r->raw_input == c ? 0 : bench_raw_flush(c);
    }
    if (n > 1) {
        rc = csock_stream_write(c->s, o->send_pat, o->body * n);
    } else if (c->d) {
        rc = csock_dgram_send(c->d, o->send_pat + bench_msg_off(c, c->sent), o->body, NULL);
    } else if (c->ws) {
        rc = csock_ws_send(c->ws, o->mode == BENCH_UPPER ? CSOCK_WS_TEXT : CSOCK_WS_BINARY,
                           o->send_pat + bench_msg_off(c, c->sent), o->body);
    } else {
        struct iovec iov[2] = {
            {o->send_pat + bench_msg_off(c, c->sent), o->body},
            {(void *)"\n", o->size - o->body},
        };
        rc = csock_stream_writev(c->s, iov, o->size > o->body ? 2 : 1);
    }
    if (rc < 0) return rc;
    for (unsigned i = 0; i < n; i++) c->stamps[c->sent++ & c->mask] = due;
    return 0;
}

static int conn_send(conn *c, uint64_t due)
{
    return conn_send_n(c, due, 1);
}

/* Are these `n` bytes the next ones of message c->done's answer? */
static int answer_ok(const conn *c, const char *p, size_t n)
{
    const bench_opts *o = c->r->o;
    size_t pos = c->rpos;
    if (pos < o->body) {
        size_t m = n < o->body - pos ? n : o->body - pos;
        if (memcmp(p, o->want_pat + bench_msg_off(c, c->done) + pos, m)) return 0;
        p += m, n -= m;
    }
    for (; n; n--, p++)
        if (*p != '\n') return 0;
    return 1;
}

/* Inside the measured window? (The end moves when the run is interrupted.) */
static int measured(const bench_thread *t, uint64_t now)
{
    return now >= t->t_measure && now < atomic_load_explicit(&t->t_end, memory_order_relaxed);
}

static void complete(conn *c, uint64_t now, uint64_t bytes)
{
    run *r = c->r;
    bench_thread *t = r->t;
    uint64_t due = c->stamps[c->done & c->mask];
    c->done++;
    c->rpos = 0;
    uint64_t us = now > due ? (now - due) / 1000 : 0;
    if (measured(t, now)) {
        t->st.msgs++;
        t->st.bytes += bytes;
        bench_hist_record(&t->st.hist, us);
        while (now >= r->slot_end && r->slot < r->o->nseries) {
            r->slot++;
            r->slot_end += r->o->series_ns;
        }
        if (r->slot < r->o->nseries) t->st.series[r->slot]++;
    }
    if (r->second) bench_hist_record(r->second, us);
    r->completed++;
    if (!c->answered) {
        c->answered = 1;
        t->st.answered++;
    }
}

/* Closed loop: an answer lets the next message go. Negative when the
 * connection failed (and was closed). */
static int send_next(conn *c, uint64_t now)
{
    if (c->r->o->connect_each) { /* one exchange a connection: close, not an error */
        bench_conn_fail(c, -1, 0);
        return -1;
    }
    const bench_opts *o = c->r->o;
    if (o->rate > 0 || c->r->stopping) return 0;
    /* --pipeline: the next batch when the whole last one is answered. */
    if (o->pipeline > 1 && c->done < c->sent) return 0;
    int rc = conn_send_n(c, now, o->pipeline > 1 ? o->pipeline : 1);
    if (rc < 0) bench_conn_fail(c, bench_err_kind(rc), 0);
    return rc;
}

/* --http: responses, whole or in parts; the bytes of an unfinished head
 * or chunk line stay in the stream until the rest comes. */
static size_t read_http(conn *c, const char *buf, size_t len)
{
    run *r = c->r;
    bench_thread *t = r->t;
    uint64_t now = bench_now_ns();
    size_t used = 0;
    while (used < len) {
        int st;
        ssize_t n = bench_http_parse(&c->http, buf + used, len - used, &st);
        if (n < 0 || (st && c->done == c->sent)) { /* garbage, or an answer to nothing */
            bench_conn_fail(c, BENCH_ERR_OTHER, 0);
            return len;
        }
        used += (size_t)n;
        c->rbytes += (uint64_t)n;
        if (!st) break;
        if (measured(t, now) && st < 600) t->st.status[st]++;
        if (st / 100 != 2 && !r->stopping) bench_count_err(r, BENCH_ERR_STATUS);
        complete(c, now, c->rbytes);
        c->rbytes = 0;
        if (c->http.close) { /* said so: not an error, made again at once */
            bench_conn_fail(c, -1, 0);
            return len;
        }
        if (send_next(c, now) < 0) return len;
    }
    return used;
}

static size_t on_read(csock_stream *s, int status, const char *buf, size_t len)
{
    conn *c = csock_stream_data(s);
    run *r = c->r;
    if (status < 0) {
        bench_conn_fail(c, bench_err_kind(status), 0);
        return 0;
    }
    if (r->o->mode == BENCH_HTTP) return read_http(c, buf, len);
    bench_echo_input(c, buf, len);
    return len;
}

int bench_echo_input(conn *c, const char *buf, size_t len)
{
    const bench_opts *o = c->r->o;
    uint64_t now = bench_now_ns();
    size_t used = 0;
    while (used < len) {
        size_t n = o->size - c->rpos;
        if (n > len - used) n = len - used;
        /* More answered than was sent is as wrong as a changed byte. */
        if (c->done == c->sent || !answer_ok(c, buf + used, n)) {
            bench_conn_fail(c, BENCH_ERR_WRONG, 0);
            return -1;
        }
        used += n;
        c->rpos += n;
        if (c->rpos < o->size) break;
        complete(c, now, o->size);
        if (send_next(c, now) < 0) return -1;
    }
    return 0;
}

static int pacer_arm(run *r, uint64_t now);

static void on_connected(csock_stream *s, int status)
{
    conn *c = csock_stream_data(s);
    run *r = c->r;
    if (status < 0) {
        /* csock closes the stream after this callback. */
        if (!r->stopping) bench_count_err(r, bench_err_kind(status));
        c->s = NULL;
        c->state = C_DOWN;
        c->retry_at = bench_now_ns() + RETRY_NS;
        return;
    }
    csock_stream_on_close(s, on_closed);
    if (r->o->addr.scheme != CSOCK_UNIX) csock_stream_nodelay(s, 1);
    /* Never stop reading for a long write queue: what is queued is at most
     * depth messages, and their answers must be read for the server to
     * take the rest (1 MB messages over unix: stalled for good). */
    csock_stream_set_watermarks(s, 0, 0);
    bench_conn_up(c, csock_stream_read_start(s, on_read));
}

/* WebSocket: OPEN is the connect; a MESSAGE must be the next answer, whole;
 * CLOSED ends a connect that failed, a connection that failed, or one we
 * aborted. */
static void on_ws(csock_ws *ws, const csock_ws_event *ev, void *data)
{
    conn *c = data;
    run *r = c->r;
    const bench_opts *o = r->o;
    if (ev->kind == CSOCK_WS_OPEN) {
        csock_stream_nodelay(csock_ws_stream(ws), 1);
        csock_stream_set_watermarks(csock_ws_stream(ws), 0, 0); /* as in on_connected */
        bench_conn_up(c, 0);
    } else if (ev->kind == CSOCK_WS_MESSAGE) {
        if (c->done == c->sent || ev->len != o->body ||
            memcmp(ev->buf, o->want_pat + bench_msg_off(c, c->done), o->body)) {
            bench_conn_fail(c, BENCH_ERR_WRONG, 0);
            return;
        }
        uint64_t now = bench_now_ns();
        complete(c, now, o->size);
        send_next(c, now);
    } else if (ev->kind == CSOCK_WS_CLOSED) {
        if (c->state == C_CONNECTING || c->state == C_UP) {
            /* Not ours: the connect or the connection failed. */
            if (!r->stopping) bench_count_err(r, ev->status ? bench_err_kind(ev->status) : BENCH_ERR_RESET);
            c->retry_at = bench_now_ns() + (c->state == C_CONNECTING ? RETRY_NS : 0);
        }
        c->ws = NULL;
        bench_conn_down(c);
    }
}

/* Connected (and through TLS or the WebSocket handshake): start the load.
 * rc: how starting to read went. */
void bench_conn_up(conn *c, int rc)
{
    run *r = c->r;
    c->state = C_UP;
    r->t->st.connects++;
    if (r->o->rate > 0) {
        if (rc >= 0 && !r->t0) rc = pacer_arm(r, bench_now_ns()); /* the schedule starts with the first connection */
    } else {
        /* --connect: the connect is part of the exchange's latency. */
        uint64_t now = r->o->connect_each ? c->connect_at : bench_now_ns();
        if (r->o->pipeline > 1) rc = rc < 0 ? rc : conn_send_n(c, now, r->o->pipeline);
        else
            for (unsigned i = 0; i < r->o->depth && rc >= 0; i++) rc = conn_send(c, now);
    }
    if (rc < 0) bench_conn_fail(c, bench_err_kind(rc), 0);
}

/* udp://: a datagram a message. An answer is matched against the
 * messages in flight; those before it are lost (a timeout each, as
 * loopback does not reorder). */
static void udp_lost(conn *c, uint64_t upto)
{
    run *r = c->r;
    unsigned again = 0;
    for (; c->done < upto; c->done++, again++)
        if (!r->stopping) bench_count_err(r, BENCH_ERR_TIMEOUT);
    /* The closed loop sends one for each lost, or it would run dry. */
    for (uint64_t now = bench_now_ns(); again-- && !r->stopping && r->o->rate <= 0 && c->d;)
        send_next(c, now);
}

static void on_dgram(csock_dgram *d, int status, const char *buf, size_t len, const csock_addr *from)
{
    conn *c = csock_dgram_data(d);
    const bench_opts *o = c->r->o;
    (void)from;
    if (status < 0) {
        bench_conn_fail(c, bench_err_kind(status), status == -ECONNREFUSED ? RETRY_NS : 0);
        return;
    }
    uint64_t k = c->done;
    while (k < c->sent && (len != o->body || memcmp(buf, o->want_pat + bench_msg_off(c, k), len))) k++;
    if (k == c->sent) { /* a late answer to a message given up on, or garbage */
        if (!c->r->stopping) bench_count_err(c->r, BENCH_ERR_WRONG);
        return;
    }
    if (k > c->done) udp_lost(c, k);
    uint64_t now = bench_now_ns();
    complete(c, now, o->size);
    send_next(c, now);
}

static void udp_start(conn *c)
{
    run *r = c->r;
    int rc = csock_dgram_new(r->loop, NULL, &r->o->addr, &c->d);
    if (rc < 0) {
        bench_count_err(r, bench_err_kind(rc));
        c->d = NULL;
        c->retry_at = bench_now_ns() + RETRY_NS;
        return;
    }
    csock_dgram_set_data(c->d, c);
    bench_conn_up(c, csock_dgram_recv_start(c->d, on_dgram));
}

static void conn_start(conn *c)
{
    run *r = c->r;
    const bench_opts *o = r->o;
    csock_connect_opts co = {.timeout_ms = o->timeout_ns / 1000000};
    c->sent = c->done = 0;
    c->rpos = 0;
    c->rbytes = 0;
    c->connect_at = bench_now_ns();
    memset(&c->http, 0, sizeof c->http);
    c->http.head = o->method && !strcmp(o->method, "HEAD");
    c->wseq = 0;
    c->wpos = 0;
    if (o->udp) {
        udp_start(c);
        return;
    }
    if (o->raw) {
        bench_raw_connect(c);
        return;
    }
    if (o->ws) {
        csock_ws_opts wo = {.tls = o->tls, .handshake_timeout_ms = o->timeout_ns / 1000000,
                            .max_message = o->size > (1u << 20) ? o->size : 0};
        int rc = csock_ws_connect(r->loop, o->target, &wo, on_ws, c, &c->ws);
        if (rc < 0) {
            bench_count_err(r, bench_err_kind(rc));
            c->ws = NULL;
            c->retry_at = bench_now_ns() + RETRY_NS;
            return;
        }
        c->state = C_CONNECTING;
        return;
    }
    int rc = o->tls ? csock_tls_connect(r->loop, &o->addr, o->tls, &co, on_connected, c, &c->s)
                    : csock_connect(r->loop, &o->addr, &co, on_connected, c, &c->s);
    if (rc < 0) {
        bench_count_err(r, bench_err_kind(rc));
        c->s = NULL;
        c->retry_at = bench_now_ns() + RETRY_NS;
        return;
    }
    c->state = C_CONNECTING;
}

/* Open loop: send every message that is due by now, each stamped with the
 * time it was due, round robin over the connections that are up. */
static void pace(run *r, uint64_t now)
{
    if (!r->t0) return;
    for (;;) {
        uint64_t due = r->t0 + (uint64_t)((double)r->k * r->interval_ns);
        if (due > now) return;
        r->k++;
        conn *c = NULL;
        for (unsigned i = 0; i < r->n && !c; i++) {
            conn *x = &r->conns[r->rr++ % r->n];
            if (x->state == C_UP) c = x;
        }
        if (!c) {
            r->t->st.unsent++;
            continue;
        }
        int rc = conn_send(c, due);
        if (rc < 0) bench_conn_fail(c, bench_err_kind(rc), 0);
    }
}

/* Reconnect what is down and due; fail what waited too long for an answer. */
static void housekeep(run *r, uint64_t now)
{
    for (unsigned i = 0; i < r->n; i++) {
        conn *c = &r->conns[i];
        if (c->state == C_DOWN && c->retry_at <= now) conn_start(c);
        else if (c->state == C_CONNECTING && c->io && c->connect_at + r->o->timeout_ns < now)
            bench_conn_fail(c, BENCH_ERR_TIMEOUT, RETRY_NS); /* streams time their connects themselves */
        else if (c->state == C_UP && c->d)
            while (c->d && c->done < c->sent && c->stamps[c->done & c->mask] + r->o->timeout_ns < now)
                udp_lost(c, c->done + 1); /* a datagram unanswered: lost, not a hang */
        else if (c->state == C_UP && c->done < c->sent &&
                 c->stamps[c->done & c->mask] + r->o->timeout_ns < now)
            bench_conn_fail(c, BENCH_ERR_TIMEOUT, 0);
    }
}

static void live(run *r, uint64_t now)
{
    bench_thread *t = r->t;
    atomic_store_explicit(&t->live_msgs, r->completed, memory_order_relaxed);
    if (now < r->next_live) return;
    r->next_live = now + 1000000000ull;
    atomic_store_explicit(&t->live_p99, bench_hist_percentile(r->second, 99),
                          memory_order_relaxed);
    bench_hist_init(r->second);
}

static void on_pace(csock_io *io, int events)
{
    run *r = csock_io_data(io);
    uint64_t expirations;
    (void)events;
    if (read(r->pace_fd, &expirations, sizeof expirations) < 0 && errno != EAGAIN) return;
    pace(r, bench_now_ns());
}

static int pacer_start(run *r)
{
    r->pace_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (r->pace_fd < 0) return -errno;
    int rc = csock_io_new(r->loop, r->pace_fd, on_pace, r, &r->pacer);
    return rc < 0 ? rc : csock_io_start(r->pacer, CSOCK_READABLE);
}

/* The schedule starts now: the timer fires when messages are due, in
 * phase with them, so none waits for a timer that fires between two. */
static int pacer_arm(run *r, uint64_t now)
{
    uint64_t ns = (uint64_t)r->interval_ns;
    if (ns < MIN_PACE_NS) ns = MIN_PACE_NS;
    r->t0 = now;
    struct timespec iv = {.tv_sec = (time_t)(ns / 1000000000ull), .tv_nsec = (long)(ns % 1000000000ull)};
    struct itimerspec its = {.it_interval = iv, .it_value = {.tv_sec = (time_t)(now / 1000000000ull),
                                                            .tv_nsec = (long)(now % 1000000000ull)}};
    return timerfd_settime(r->pace_fd, TFD_TIMER_ABSTIME, &its, NULL) < 0 ? -errno : 0;
}

static void run_stop(run *r)
{
    r->stopping = 1;
    for (unsigned i = 0; i < r->n; i++) {
        conn *c = &r->conns[i];
        r->t->st.up_at_end += c->state == C_UP;
        if (c->s) csock_stream_close(c->s, NULL);
        if (c->ws) csock_ws_abort(c->ws);
        if (c->d) csock_dgram_close(c->d, NULL);
        if (c->io) bench_raw_close(c);
        c->s = NULL;
        c->ws = NULL;
        c->d = NULL;
    }
    csock_timer_close(r->tick, NULL);
    if (r->pacer) csock_io_close(r->pacer, NULL);
    r->pacer = NULL;
}

static void on_tick(csock_timer *tm)
{
    run *r = csock_timer_data(tm);
    uint64_t now = bench_now_ns();
    if (now >= atomic_load_explicit(&r->t->t_end, memory_order_relaxed)) return run_stop(r);
    if (++r->ticks % HOUSEKEEP_TICKS == 0) housekeep(r, now);
    if (r->second) live(r, now);
}

static int run_setup(run *r)
{
    const bench_opts *o = r->o;
    uint64_t ring = INLINE_STAMPS;
    while (ring < o->depth) ring *= 2;
    r->slot_end = r->t->t_measure + o->series_ns;
    r->conns = calloc(r->n, sizeof *r->conns);
    if (!r->conns) return -ENOMEM;
    for (unsigned i = 0; i < r->n; i++) {
        conn *c = &r->conns[i];
        c->r = r;
        c->id = r->t->first_conn + i;
        c->mask = ring - 1;
        c->stamps = ring == INLINE_STAMPS ? c->inline_stamps : malloc(ring * sizeof *c->stamps);
        if (!c->stamps) return -ENOMEM;
    }
    if (o->live) {
        r->second = malloc(sizeof *r->second);
        if (!r->second) return -ENOMEM;
        bench_hist_init(r->second);
    }
    if (o->rate > 0) r->interval_ns = 1e9 * o->conns / (o->rate * r->n);
    int rc = csock_loop_new(NULL, &r->loop);
    if (rc < 0) return rc;
    if (o->raw && !(r->rbuf = malloc(BENCH_RAW_RBUF))) return -ENOMEM;
    rc = csock_timer_new(r->loop, &r->tick);
    if (rc < 0) return rc;
    csock_timer_set_data(r->tick, r);
    if (o->rate > 0 && (rc = pacer_start(r)) < 0) return rc;
    return csock_timer_start(r->tick, on_tick, TICK_MS, TICK_MS);
}

static void run_free(run *r)
{
    if (r->loop) {
        if (!r->stopping && r->tick) csock_timer_close(r->tick, NULL);
        if (!r->stopping && r->pacer) csock_io_close(r->pacer, NULL);
        while (csock_loop_run(r->loop, CSOCK_RUN_DEFAULT) > 0) {
        }
        csock_loop_free(r->loop);
    }
    for (unsigned i = 0; r->conns && i < r->n; i++)
        if (r->conns[i].stamps != r->conns[i].inline_stamps) free(r->conns[i].stamps);
    free(r->conns);
    free(r->second);
    free(r->rbuf);
    if (r->pace_fd >= 0) close(r->pace_fd);
}

void *bench_thread_main(void *arg)
{
    bench_thread *t = arg;
    run r = {.t = t, .o = t->o, .n = t->nconns, .pace_fd = -1};
    bench_hist_init(&t->st.hist);
    t->rc = run_setup(&r);
    if (t->rc == 0) {
        for (unsigned i = 0; i < r.n; i++) conn_start(&r.conns[i]);
        while (csock_loop_run(r.loop, CSOCK_RUN_DEFAULT) > 0) {
        }
    }
    run_free(&r);
    return NULL;
}
