/* http_later [ADDR]: an HTTP API whose answers come later.
 *
 *   GET /hello          200 "hello" at once
 *   GET /later?ms=N     200 "later N", N ms later (default 100), from a timer
 *
 * A handler need not answer before it returns: the request, and every
 * string it hands out, stay valid until the answer is given. This one keeps
 * the request in a timer and answers from the timer's callback, while the
 * loop goes on serving other clients. If the client has hung up meanwhile
 * the answer may return -EPIPE (when the connection is known to be gone:
 * the server does not read while a request waits, so a bare hang-up shows
 * only when writing); the request is released either way.
 *
 * Prints "listening ADDR" (default tcp://127.0.0.1:0). On SIGINT/SIGTERM it
 * stops accepting, lets the answers still owed go out (with Connection:
 * close), gives their clients a moment to read them, then closes the HTTP
 * server and exits 0. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csock/csock.h"

#define STOP_CHECK_MS 20  /* how often a stopping server looks whether it is done */
#define STOP_GRACE_MS 2000 /* then idle keep-alive clients are cut */

typedef struct app {
    csock_loop *loop;
    csock_listener *listener;
    csock_http_server *http;
    csock_signal *sigint, *sigterm;
    csock_timer *stop_timer; /* while stopping: closes the server once done */
    uint64_t stop_deadline;
    unsigned pending; /* requests waiting in a timer */
    int stopping;
} app;

typedef struct later {
    app *app;
    csock_http_req *req;
    unsigned long ms;
} later;

/* csock_http_server_close() closes every connection at once, dropping
 * answers still queued for slow clients, so a stopping server waits: for
 * the requests parked in timers (closing now would turn their answers into
 * -EPIPE), then for their connections, which close after the answer
 * (Connection: close), or STOP_GRACE_MS at most. */
static void check_stopped(csock_timer *t)
{
    app *a = csock_timer_data(t);
    if (a->pending > 0) return;
    if (csock_http_server_conns(a->http) > 0 && csock_loop_now(a->loop) < a->stop_deadline) return;
    csock_http_server_close(a->http);
    a->http = NULL;
    csock_timer_close(t, NULL); /* the last handle: csock_loop_run() returns */
}

static void answer_later(csock_timer *t)
{
    later *l = csock_timer_data(t);
    char body[64];
    int n = snprintf(body, sizeof body, "later %lu\n", l->ms);
    csock_http_add_header(l->req, "Content-Type", "text/plain");
    if (l->app->stopping) csock_http_close_after(l->req); /* invite no next request */
    int rc = csock_http_send(l->req, 200, body, (size_t)n);
    if (rc == -EPIPE) fprintf(stderr, "http_later: the client left before its answer\n");
    l->app->pending--;
    free(l);
    csock_timer_close(t, NULL);
}

/* The value of `name` in the query "a=1&ms=250", or 0. */
static unsigned long query_number(csock_http_str q, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i + nl < q.len; i++) {
        if ((i == 0 || q.ptr[i - 1] == '&') && !strncmp(q.ptr + i, name, nl) &&
            q.ptr[i + nl] == '=') {
            unsigned long v = 0;
            for (size_t j = i + nl + 1; j < q.len && q.ptr[j] >= '0' && q.ptr[j] <= '9'; j++)
                v = v * 10 + (unsigned long)(q.ptr[j] - '0');
            return v;
        }
    }
    return 0;
}

static void on_later(csock_http_req *req, void *data)
{
    app *a = data;
    later *l = malloc(sizeof *l);
    csock_timer *t = NULL;
    if (!l || csock_timer_new(a->loop, &t) < 0) {
        free(l);
        csock_http_send(req, 503, "busy\n", 5); /* every request gets an answer */
        return;
    }
    unsigned long ms = query_number(csock_http_query(req), "ms");
    *l = (later){.app = a, .req = req, .ms = ms ? ms : 100};
    a->pending++;
    /* A log line (stderr) that also tells a test the request is parked. */
    fprintf(stderr, "http_later: answering in %lu ms\n", l->ms);
    csock_timer_set_data(t, l);
    csock_timer_start(t, answer_later, l->ms, 0);
}

static void on_hello(csock_http_req *req, void *data)
{
    (void)data;
    csock_http_add_header(req, "Content-Type", "text/plain");
    csock_http_send(req, 200, "hello\n", 6);
}

static void on_accept(csock_listener *l, csock_stream *s, int status)
{
    app *a = csock_listener_data(l);
    if (status == 0) csock_http_server_accept(a->http, s); /* it closes s on error */
}

static void on_signal(csock_signal *sig, int signum)
{
    app *a = csock_signal_data(sig);
    (void)signum;
    if (a->stopping) return;
    a->stopping = 1;
    csock_listener_close(a->listener, NULL);
    csock_signal_close(a->sigint, NULL);
    csock_signal_close(a->sigterm, NULL);
    a->stop_deadline = csock_loop_now(a->loop) + STOP_GRACE_MS;
    csock_timer_start(a->stop_timer, check_stopped, 0, STOP_CHECK_MS);
}

int main(int argc, char **argv)
{
    const char *text = argc > 1 ? argv[1] : "tcp://127.0.0.1:0";
    app a = {0};
    csock_addr addr;
    int rc = csock_addr_parse(text, 0, &addr);
    if (rc == 0) rc = csock_loop_new(NULL, &a.loop);
    csock_http_route routes[] = {
        {.method = "GET", .prefix = "/hello", .handler = on_hello},
        {.method = "GET", .prefix = "/later", .handler = on_later, .data = &a},
    };
    csock_http_opts opts = {.routes = routes, .nroutes = 2};
    if (rc == 0) rc = csock_http_server_new(a.loop, &opts, &a.http);
    if (rc == 0) rc = csock_signal_new(a.loop, &a.sigint);
    if (rc == 0) rc = csock_signal_new(a.loop, &a.sigterm);
    if (rc == 0) rc = csock_timer_new(a.loop, &a.stop_timer);
    if (rc == 0) rc = csock_listen(a.loop, &addr, NULL, on_accept, &a, &a.listener);
    if (rc == 0) rc = csock_listener_addr(a.listener, &addr);
    if (rc < 0) {
        fprintf(stderr, "http_later: %s: %s\n", text, csock_strerror(rc));
        return 1;
    }
    csock_signal_set_data(a.sigint, &a);
    csock_signal_set_data(a.sigterm, &a);
    csock_timer_set_data(a.stop_timer, &a);
    csock_signal_start(a.sigint, on_signal, SIGINT);
    csock_signal_start(a.sigterm, on_signal, SIGTERM);
    char name[CSOCK_ADDR_STRLEN];
    csock_addr_format(&addr, name, sizeof name);
    printf("listening %s\n", name);
    fflush(stdout);
    rc = csock_loop_run(a.loop, CSOCK_RUN_DEFAULT);
    if (rc < 0) fprintf(stderr, "http_later: %s\n", csock_strerror(rc));
    return csock_loop_free(a.loop) < 0 || rc < 0;
}
