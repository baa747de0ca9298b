/* The HTTP/1.1 server: connections over csock streams, requests parsed in
 * the stream's buffer and copied out whole before their handler runs (the
 * request's lifetime, see http1_read.c), answers written through the
 * stream's write queue (http1_write.c). See csock/http.h. This file holds
 * the server, its connections' lifecycle and the timeout lists.
 *
 * A connection is a small state machine driven by the stream's read
 * callback: it parses every complete request in the buffer and answers each
 * before looking at the next, so pipelined answers queue up while the stream
 * holds writes (inside its read callback) and leave in one syscall. An
 * answer given later (an asynchronous handler, a streamed body) stops
 * reading until it completes; the rest of the buffer waits in the stream.
 * A connection that closes while its handler holds the request lives on,
 * detached, until that answer (finish() in http1_write.c frees it).
 *
 * Timeouts: each connection waiting for a head, a body or the next request
 * sits on one of three FIFO lists of the server. Every entry of one list has
 * the same duration, so the lists are sorted by deadline and a single
 * housekeeping timer per loop pops expired heads: no timer per connection,
 * and a client trickling one byte a second cannot extend its deadline. The
 * stream's write timeout (send_timeout) catches connections that stop
 * taking our answers; an answer that is slow to produce is not cut by it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proto/http1_int.h"
#include "loop/loop_int.h" /* csock__timer_new_internal: the server's own tick is not a user handle */

/* The defaults csock/http.h promises for a 0 in csock_http_opts: a body the
 * size of a form or a JSON document, not an upload; a head within 10 s of
 * its first byte (a slow-loris client is cut early); 30 s for a body and
 * between requests (as browsers keep connections); 60 s of a client taking
 * none of our answer. */
#define DEFAULT_MAX_BODY (1u << 20)
#define DEFAULT_HEADER_TIMEOUT_MS 10000
#define DEFAULT_BODY_TIMEOUT_MS 30000
#define DEFAULT_KEEPALIVE_TIMEOUT_MS 30000
#define DEFAULT_SEND_TIMEOUT_MS 60000
/* The stream's read buffer holds a whole request: head + body, the body
 * counted twice for its chunk framing, plus this for the last chunk and
 * trailers; never more than MAX_READ_CAP, whatever max_body says. */
#define READ_SLACK 4096
#define MAX_READ_CAP (1u << 30)

/* ---- timeout lists --------------------------------------------------------------- */

void csock__http_tl_remove(conn *c)
{
    if (c->tl == TL_NONE || !c->hs) return;
    csock_http_server *hs = c->hs;
    if (c->tprev) c->tprev->tnext = c->tnext;
    else hs->tl[c->tl].head = c->tnext;
    if (c->tnext) c->tnext->tprev = c->tprev;
    else hs->tl[c->tl].tail = c->tprev;
    c->tnext = c->tprev = NULL;
    c->tl = TL_NONE;
}

/* Put c on list `which`; staying on the same list keeps the deadline (so a
 * head's clock starts at its first byte and trickling does not reset it),
 * except for keep-alive, which restarts after every answer. */
void csock__http_tl_set(conn *c, int which)
{
    csock_http_server *hs = c->hs;
    if (!hs || (c->tl == which && which != TL_KEEPALIVE)) return;
    csock__http_tl_remove(c);
    c->tl = (unsigned char)which;
    c->deadline = csock_loop_now(hs->loop) + hs->tl_ms[which];
    c->tprev = hs->tl[which].tail;
    if (c->tprev) c->tprev->tnext = c;
    else hs->tl[which].head = c;
    hs->tl[which].tail = c;
}

static void on_tick(csock_timer *t)
{
    csock_http_server *hs = csock_timer_data(t);
    uint64_t now = csock_loop_now(hs->loop);
    for (int i = 0; i < TL_COUNT; i++) {
        conn *c;
        while ((c = hs->tl[i].head) && c->deadline <= now) {
            csock__http_tl_remove(c);
            if (i == TL_KEEPALIVE) {
                c->closing = 1;
                csock_stream_close(c->s, NULL); /* idle: nothing to say */
            } else {
                csock__http_send_error(c, 408); /* ends the connection */
            }
        }
    }
}

void csock__http_conn_free(conn *c)
{
    free(c->req.extra);
    if (c->req.hdrs != c->req.hdrs_in) free(c->req.hdrs);
    free(c->ob);
    free(c->rq);
    free(c);
}

/* ---- connections and the server --------------------------------------------------- */

static void unlink_conn(csock_http_server *hs, conn *c)
{
    csock__http_tl_remove(c);
    if (c->prev) c->prev->next = c->next;
    else hs->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    hs->nconns--;
}

/* csock_http_upgrade: the server lets go of the connection and its stream
 * (no longer counted, timed or closed by it). */
void csock__http_conn_detach(conn *c)
{
    if (c->hs) unlink_conn(c->hs, c);
    c->hs = NULL;
    c->closing = 1;
}

static void on_conn_closed(csock_stream *s)
{
    conn *c = csock_stream_data(s);
    if (!c) return;
    if (c->hs) unlink_conn(c->hs, c);
    c->hs = NULL;
    c->s = NULL;
    if (c->busy) {
        /* The handler still holds the request (an answer given later): it
         * stays valid, its answer returns -EPIPE, and finish() frees it. */
        c->orphan = 1;
        return;
    }
    csock__http_conn_free(c);
}

int csock_http_server_accept(csock_http_server *hs, csock_stream *s)
{
    conn *c = calloc(1, sizeof *c);
    if (!c) {
        csock_stream_close(s, NULL);
        return -ENOMEM;
    }
    c->hs = hs;
    c->s = s;
    c->tl = TL_NONE;
    c->req.c = c;
    c->req.hdrs = c->req.hdrs_in;
    c->req.hcap = INLINE_HEADERS;
    csock__http_clear_request(&c->req);
    c->next = hs->conns;
    if (hs->conns) hs->conns->prev = c;
    hs->conns = c;
    hs->nconns++;
    csock_stream_set_data(s, c);
    csock_stream_on_close(s, on_conn_closed);
    csock_stream_set_max_read(s, hs->max_read);
    csock_stream_set_write_timeout(s, hs->o.send_timeout_ms);
    csock__http_tl_set(c, TL_HEADER);
    int rc = csock_stream_read_start(s, csock__http_on_read);
    if (rc < 0) {
        c->closing = 1;
        csock_stream_close(s, NULL);
    }
    return rc;
}

static uint64_t or_default(uint64_t v, uint64_t d) { return v ? v : d; }

static uint64_t sat_add(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

int csock_http_server_new(csock_loop *loop, const csock_http_opts *opts, csock_http_server **out)
{
    csock_http_opts none = {0};
    if (!opts) opts = &none;
    csock_http_server *hs = calloc(1, sizeof *hs);
    if (!hs) return -ENOMEM;
    hs->loop = loop;
    hs->o = *opts;
    if (opts->nroutes) {
        hs->routes = malloc(opts->nroutes * sizeof *hs->routes);
        if (!hs->routes) {
            free(hs);
            return -ENOMEM;
        }
        memcpy(hs->routes, opts->routes, opts->nroutes * sizeof *hs->routes);
    }
    hs->o.max_body = or_default(opts->max_body, DEFAULT_MAX_BODY);
    hs->o.send_timeout_ms = or_default(opts->send_timeout_ms, DEFAULT_SEND_TIMEOUT_MS);
    hs->tl_ms[TL_HEADER] = or_default(opts->header_timeout_ms, DEFAULT_HEADER_TIMEOUT_MS);
    hs->tl_ms[TL_BODY] = or_default(opts->body_timeout_ms, DEFAULT_BODY_TIMEOUT_MS);
    hs->tl_ms[TL_KEEPALIVE] = or_default(opts->keepalive_timeout_ms, DEFAULT_KEEPALIVE_TIMEOUT_MS);
    hs->limits.max_request_line = opts->max_request_line;
    hs->limits.max_head = opts->max_head ? opts->max_head : CSOCK_HTTP_MAX_HEAD;
    /* Room for a whole head and a whole body (chunk framing included),
     * saturated: a max_body near UINT64_MAX must not wrap to a small limit. */
    uint64_t body2 = sat_add(hs->o.max_body, hs->o.max_body);
    uint64_t mr = sat_add(sat_add(hs->limits.max_head, body2), READ_SLACK);
    hs->max_read = mr > MAX_READ_CAP ? MAX_READ_CAP : (size_t)mr;
    snprintf(hs->server, sizeof hs->server, "Server: %.*s\r\n", SERVER_NAME_MAX,
             opts->server_name ? opts->server_name : "csock");
    hs->server_len = strlen(hs->server);
    int rc = csock__timer_new_internal(loop, &hs->timer);
    if (rc == 0) {
        csock_timer_set_data(hs->timer, hs);
        csock_timer_unref(hs->timer); /* housekeeping never keeps the loop alive */
        rc = csock_timer_start(hs->timer, on_tick, TICK_MS, TICK_MS);
    }
    if (rc < 0) {
        if (hs->timer) csock_timer_close(hs->timer, NULL);
        free(hs->routes);
        free(hs);
        return rc;
    }
    *out = hs;
    return 0;
}

static void server_freed(csock_timer *t)
{
    csock_http_server *hs = csock_timer_data(t);
    free(hs->routes);
    free(hs);
}

void csock_http_server_close(csock_http_server *hs)
{
    while (hs->conns) {
        conn *c = hs->conns;
        csock__http_tl_remove(c);
        hs->conns = c->next;
        c->hs = NULL; /* its close callback frees it and nothing else */
        c->closing = 1;
        csock_stream_close(c->s, NULL);
    }
    hs->nconns = 0;
    csock_timer_close(hs->timer, server_freed);
}

unsigned csock_http_server_conns(const csock_http_server *hs) { return hs->nconns; }
