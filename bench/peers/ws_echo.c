/* ws_echo [ADDR]: csock's WebSocket echo server for the benchmarks, on the
 * public API only (csock/csock.h), the way a user would write it.
 *
 * An HTTP server whose route at / accepts the upgrade (csock_ws_accept)
 * and sends every message back as it came, text as text, binary as binary.
 * GET /stats answers "conns N heap_in_use BYTES\n": the open WebSocket
 * connections and the allocator's in-use bytes (glibc mallinfo2; -1
 * elsewhere), which is what a memory test wants rather than RSS (pages the
 * allocator keeps or has never touched). GET /stats?trim first gives the
 * allocator's free pages back to the kernel (glibc malloc_trim), so RSS
 * shows what fragmentation kept.
 *
 * Prints "listening ADDR" (default tcp://127.0.0.1:0). One loop thread; the
 * backend comes from $CSOCK_BACKEND (epoll, uring, poll). SIGTERM or SIGINT
 * ends it at once with status 0 (a benchmark peer: the kernel closes the
 * sockets). */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "csock/csock.h"

typedef struct app {
    csock_loop *loop;
    csock_http_server *http;
    csock_ws_opts ws_opts;
    long conns; /* open WebSocket connections */
} app;

static void on_ws(csock_ws *ws, const csock_ws_event *ev, void *data)
{
    app *a = data;
    if (ev->kind == CSOCK_WS_MESSAGE)
        csock_ws_send(ws, ev->type, ev->buf, ev->len); /* an error ends in CLOSED */
    else if (ev->kind == CSOCK_WS_CLOSED)
        a->conns--;
}

static void on_root(csock_http_req *req, void *data)
{
    app *a = data;
    csock_ws *ws;
    if (!csock_ws_is_upgrade(req)) {
        csock_http_add_header(req, "Content-Type", "text/plain");
        csock_http_send(req, 200, "ws_echo: connect with WebSocket\n", 32);
        return;
    }
    if (csock_ws_accept(req, &a->ws_opts, on_ws, a, &ws) == 0) /* else answered with an error */
        a->conns++;
}

static void on_stats(csock_http_req *req, void *data)
{
    app *a = data;
    long long heap = -1;
#ifdef __GLIBC__
    csock_http_str q = csock_http_query(req);
    if (q.len == 4 && memcmp(q.ptr, "trim", 4) == 0)
        malloc_trim(0);
    struct mallinfo2 mi = mallinfo2();
    heap = (long long)mi.uordblks + (long long)mi.hblkhd; /* small blocks + mmapped ones */
#endif
    char body[96];
    int n = snprintf(body, sizeof body, "conns %ld heap_in_use %lld\n", a->conns, heap);
    csock_http_add_header(req, "Content-Type", "text/plain");
    csock_http_send(req, 200, body, (size_t)n);
}

static void on_accept(csock_listener *l, csock_stream *s, int status)
{
    app *a = csock_listener_data(l);
    if (status == 0)
        csock_http_server_accept(a->http, s); /* it closes s on error */
}

static void on_signal(csock_signal *sig, int signum)
{
    (void)sig;
    (void)signum;
    fflush(stdout);
    _exit(0);
}

int main(int argc, char **argv)
{
    const char *text = argc > 1 ? argv[1] : "tcp://127.0.0.1:0";
    app a = {.ws_opts = {.max_message = 16u << 20}};
    csock_addr addr;
    csock_listener *listener = NULL;
    csock_signal *sigint = NULL, *sigterm = NULL;
    int rc = csock_addr_parse(text, 0, &addr);
    if (rc == 0)
        rc = csock_loop_new(NULL, &a.loop);
    csock_http_route routes[] = {
        {.method = "GET", .prefix = "/stats", .handler = on_stats, .data = &a},
        {.method = "GET", .prefix = "/", .handler = on_root, .data = &a},
    };
    csock_http_opts opts = {.routes = routes, .nroutes = 2};
    if (rc == 0)
        rc = csock_http_server_new(a.loop, &opts, &a.http);
    if (rc == 0)
        rc = csock_signal_new(a.loop, &sigint);
    if (rc == 0)
        rc = csock_signal_new(a.loop, &sigterm);
    if (rc == 0)
        rc = csock_listen(a.loop, &addr, NULL, on_accept, &a, &listener);
    if (rc == 0)
        rc = csock_listener_addr(listener, &addr);
    if (rc == 0)
        rc = csock_signal_start(sigint, on_signal, SIGINT);
    if (rc == 0)
        rc = csock_signal_start(sigterm, on_signal, SIGTERM);
    if (rc < 0) {
        fprintf(stderr, "ws_echo: %s: %s\n", text, csock_strerror(rc));
        return 1;
    }
    char name[CSOCK_ADDR_STRLEN];
    csock_addr_format(&addr, name, sizeof name);
    printf("listening %s\n", name);
    fflush(stdout);
    rc = csock_loop_run(a.loop, CSOCK_RUN_DEFAULT);
    if (rc < 0)
        fprintf(stderr, "ws_echo: %s\n", csock_strerror(rc));
    return 1; /* the loop only ends on an error: the listener stays open */
}
