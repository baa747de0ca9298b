/* csock_dial_start(): connect to a name with Happy Eyeballs (RFC 8305). The
 * addresses are ordered IPv6 first, the families interleaved; one attempt
 * starts, the next when it fails or after the attempt delay, the earlier
 * ones going on; the first connect wins and the rest are closed (closing a
 * connecting stream cancels it). A tls:// winner then runs its handshake.
 * It lives in the TLS layer because of that last step. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "csock/dial.h"
#include "tls/tls_int.h"

#define DEFAULT_ATTEMPT_DELAY_MS 250

struct csock_dial {
    csock_loop *loop;
    csock_dial_cb cb;
    void *data;
    csock_dial_opts opts;
    csock_resolve *res;   /* resolution in flight */
    csock_timer *timer;   /* the next attempt's start, and the deadline */
    csock_stream *tls;    /* the winner during its TLS handshake */
    uint64_t deadline;    /* loop ms; 0: none */
    int last_err;
    size_t n, next;       /* addresses, and the next one to try */
    unsigned live;        /* attempts connecting */
    csock_stream **att;   /* [cap]: the attempt for each address, NULL when none */
    csock_addr *addrs;    /* [cap], in the order they are tried */
    size_t cap;
};

static void dial_free(csock_dial *d)
{
    if (d->res) csock_resolve_cancel(d->res);
    for (size_t i = 0; i < d->n; i++)
        if (d->att[i]) csock_stream_close(d->att[i], NULL); /* cancels its connect */
    if (d->tls) csock_stream_close(d->tls, NULL);
    csock_timer_close(d->timer, NULL);
    free(d);
}

static void finish(csock_dial *d, int status, csock_stream *s)
{
    d->cb(d, status, s);
    dial_free(d);
}

static int is_tls(const csock_dial *d)
{
    return d->opts.tls_always || (d->n && d->addrs[0].scheme == CSOCK_TLS);
}

/* RFC 8305 section 4: IPv6 first, then alternate the families. Stable within
 * a family (getaddrinfo's RFC 6724 order stays). */
static void interleave(csock_addr *a, size_t n)
{
    csock_addr tmp[CSOCK_RESOLVE_MAX];
    size_t v6[CSOCK_RESOLVE_MAX], other[CSOCK_RESOLVE_MAX], n6 = 0, no = 0;
    for (size_t i = 0; i < n; i++) {
        if (a[i].sa.ss_family == AF_INET6) v6[n6++] = i;
        else other[no++] = i;
    }
    size_t k = 0, i6 = 0, io = 0;
    while (i6 < n6 || io < no) {
        if (i6 < n6) tmp[k++] = a[v6[i6++]];
        if (io < no) tmp[k++] = a[other[io++]];
    }
    memcpy(a, tmp, n * sizeof *a);
}

static void on_timer(csock_timer *t);

static uint64_t attempt_delay(const csock_dial *d)
{
    return d->opts.attempt_delay_ms ? d->opts.attempt_delay_ms : DEFAULT_ATTEMPT_DELAY_MS;
}

/* The timer fires at the next attempt's start or at the deadline, whichever
 * comes first; not at all when neither is left. */
static void arm(csock_dial *d, uint64_t in_ms)
{
    uint64_t now = csock_loop_now(d->loop);
    uint64_t due = d->next < d->n || in_ms == 0 ? now + in_ms : UINT64_MAX;
    if (d->deadline && d->deadline < due) due = d->deadline;
    if (due == UINT64_MAX) {
        csock_timer_stop(d->timer);
        return;
    }
    csock_timer_start(d->timer, on_timer, due > now ? due - now : 0, 0);
}

static void on_connect(csock_stream *s, int status);
static void on_handshake(csock_stream *s, int status);

/* The winner: close the others, then hand it over (after TLS if asked). */
static void won(csock_dial *d, csock_stream *s)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->att[i] && d->att[i] != s) {
            csock_stream_close(d->att[i], NULL);
            d->att[i] = NULL;
        }
    d->live = 0;
    if (!is_tls(d)) {
        csock_stream_set_data(s, NULL);
        finish(d, 0, s);
        return;
    }
    const char *host = d->addrs[0].host[0] ? d->addrs[0].host : NULL;
    int rc = csock_tls_wrap(s, d->opts.tls, host, on_handshake);
    if (rc < 0) {
        csock_stream_close(s, NULL);
        finish(d, rc, NULL);
        return;
    }
    d->tls = s;
}

static void on_handshake(csock_stream *s, int status)
{
    csock_dial *d = csock_stream_data(s);
    d->tls = NULL; /* a failed stream is csock's to close; a good one is the caller's */
    if (status == 0) csock_stream_set_data(s, NULL);
    finish(d, status, status == 0 ? s : NULL);
}

/* Start attempts until one is connecting or none is left. */
static void start_next(csock_dial *d)
{
    while (d->next < d->n) {
        size_t i = d->next++;
        csock_addr a = d->addrs[i];
        if (a.scheme == CSOCK_TLS) a.scheme = CSOCK_TCP;
        csock_connect_opts co = {0};
        if (d->deadline) {
            uint64_t now = csock_loop_now(d->loop);
            co.timeout_ms = d->deadline > now ? d->deadline - now : 1;
        }
        int rc = csock_connect(d->loop, &a, &co, on_connect, d, &d->att[i]);
        if (rc == 0) {
            d->live++;
            return;
        }
        d->att[i] = NULL;
        d->last_err = rc;
    }
}

static void fail(csock_dial *d, int err)
{
    finish(d, err, NULL); /* dial_free closes the attempts still connecting */
}

static void on_connect(csock_stream *s, int status)
{
    csock_dial *d = csock_stream_data(s);
    for (size_t i = 0; i < d->n; i++)
        if (d->att[i] == s) d->att[i] = NULL;
    d->live--;
    if (status == 0) {
        won(d, s);
        return;
    }
    d->last_err = status; /* csock closes s after we return */
    start_next(d);
    if (d->live == 0) {
        fail(d, d->last_err);
        return;
    }
    arm(d, attempt_delay(d));
}

static void on_timer(csock_timer *t)
{
    csock_dial *d = csock_timer_data(t);
    if (d->deadline && csock_loop_now(d->loop) >= d->deadline) {
        fail(d, -ETIMEDOUT);
        return;
    }
    if (d->live == 0 && d->next >= d->n) { /* every attempt failed at once */
        fail(d, d->last_err ? d->last_err : CSOCK_ENONAME);
        return;
    }
    start_next(d);
    if (d->live == 0) {
        fail(d, d->last_err);
        return;
    }
    arm(d, attempt_delay(d));
}

static void begin(csock_dial *d)
{
    interleave(d->addrs, d->n);
    start_next(d);
    arm(d, d->live ? attempt_delay(d) : 0); /* nothing connecting: report from the loop */
}

/* One block: the handle, then its attempts and addresses (`cap` of each). */
static int dial_new(csock_loop *loop, size_t cap, const csock_dial_opts *opts, csock_dial_cb cb,
                    void *data, csock_dial **out)
{
    csock_dial *d = calloc(1, sizeof *d + cap * (sizeof *d->att + sizeof *d->addrs));
    if (!d) return -ENOMEM;
    d->addrs = (csock_addr *)(d + 1); /* csock_addr first: it has the stricter alignment */
    d->att = (csock_stream **)(d->addrs + cap);
    d->cap = cap;
    int rc = csock_timer_new(loop, &d->timer);
    if (rc < 0) {
        free(d);
        return rc;
    }
    csock_timer_set_data(d->timer, d);
    d->loop = loop;
    d->cb = cb;
    d->data = data;
    if (opts) d->opts = *opts;
    if (d->opts.timeout_ms) d->deadline = csock_loop_now(loop) + d->opts.timeout_ms;
    *out = d;
    return 0;
}

static int check_scheme(const csock_addr *a, const csock_dial_opts *opts)
{
    if (!csock_addr_is_stream(a)) return CSOCK_ESCHEME;
    if ((a->scheme == CSOCK_TLS || (opts && opts->tls_always)) && !(opts && opts->tls))
        return -EINVAL;
    return 0;
}

int csock_dial_addrs(csock_loop *loop, const csock_addr *addrs, size_t n,
                     const csock_dial_opts *opts, csock_dial_cb cb, void *data, csock_dial **out)
{
    if (!loop || !addrs || !n || !cb) return -EINVAL;
    int rc = check_scheme(&addrs[0], opts);
    if (rc < 0) return rc;
    csock_dial *d;
    if (n > CSOCK_RESOLVE_MAX) n = CSOCK_RESOLVE_MAX;
    if ((rc = dial_new(loop, n, opts, cb, data, &d)) < 0) return rc;
    d->n = n;
    memcpy(d->addrs, addrs, d->n * sizeof *addrs);
    begin(d);
    if (out) *out = d;
    return 0;
}

static void on_resolved(csock_resolve *r, int status, const csock_addr *addrs, size_t n)
{
    csock_dial *d = csock_resolve_data(r);
    d->res = NULL;
    if (status < 0) {
        fail(d, status);
        return;
    }
    d->n = n;
    memcpy(d->addrs, addrs, n * sizeof *addrs);
    /* The deadline covers resolution: what is left bounds the connects. */
    if (d->deadline && csock_loop_now(d->loop) >= d->deadline) {
        fail(d, -ETIMEDOUT);
        return;
    }
    begin(d);
}

int csock_dial_start(csock_loop *loop, const char *text, const csock_dial_opts *opts, csock_dial_cb cb,
               void *data, csock_dial **out)
{
    if (!loop || !text || !cb) return -EINVAL;
    /* Syntax and scheme are checked now, without DNS: a typo fails the call. */
    csock_addr probe;
    int rc = csock_addr_parse(text, CSOCK_ADDR_NUMERIC, &probe);
    if (rc < 0 && rc != CSOCK_ENONAME) return rc;
    if (rc == CSOCK_ENONAME) probe.scheme = strncasecmp(text, "tls://", 6) ? CSOCK_TCP : CSOCK_TLS;
    if ((rc = check_scheme(&probe, opts)) < 0) return rc;
    csock_dial *d;
    if ((rc = dial_new(loop, CSOCK_RESOLVE_MAX, opts, cb, data, &d)) < 0) return rc;
    csock_resolve_opts ro = {.flags = opts ? opts->flags : 0};
    rc = csock_resolve_start(loop, text, &ro, on_resolved, d, &d->res);
    if (rc < 0) {
        d->res = NULL;
        dial_free(d);
        return rc;
    }
    /* The deadline timer runs during resolution too. */
    if (d->deadline) arm(d, d->opts.timeout_ms);
    if (out) *out = d;
    return 0;
}

void csock_dial_cancel(csock_dial *d)
{
    if (d) dial_free(d);
}

void *csock_dial_data(const csock_dial *d) { return d ? d->data : NULL; }
