/* test_ws_peer: the C side of the WebSocket integration tests (built by
 * test_ws_interop.py and test_ws_battery.py with the public headers).
 *
 *   test_ws_peer [--deflate[=PARAMS]] server [MAX_MESSAGE [CERT KEY]]
 *       An HTTP server on tcp://127.0.0.1:0 (with CERT and KEY: https, so
 *       wss://) (prints "listening ADDR"): GET
 *       with a WebSocket upgrade becomes an echo connection (every message
 *       back as it came; the text "!close CODE REASON" makes the server
 *       close, "!ping" makes it ping, and its pong prints "pong PAYLOAD");
 *       other requests get "page\n". Each accepted connection prints
 *       "accepted compressed=0|1", each ending
 *       "closed code=C sent=S status=NAME reason=R".
 *   test_ws_peer [--deflate[=PARAMS]] client URL [CAFILE]
 *       Connects (wss:// verifying the server with CAFILE), sends text, binary, a fragmented text, 16 MiB of binary,
 *       a ping and a multi-byte text; checks each echo (and the pong), then
 *       closes with 1000 "bye". Prints "ok WHAT" per check and the closed
 *       line; exits 0 when everything came back right and the closing
 *       handshake finished; after OPEN it prints "open compressed=0|1".
 *
 * --deflate turns permessage-deflate on (opts.deflate); PARAMS, comma
 * separated, set its options: snct, cnct (server_/client_no_context_takeover),
 * sbits=N, cbits=N (server_/client_max_window_bits), level=N, min=N
 * (deflate_threshold), mem=N (deflate_memory). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csock/csock.h"
#include "csock/ws.h"

#define BIG (16u << 20)

static int failed;
static csock_loop *loop;

/* --deflate[=PARAMS] into o; 0, or -1 for a parameter it does not know. */
static int deflate_opts(const char *params, csock_ws_opts *o)
{
    o->deflate = 1;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", params);
    for (char *t = buf, *end; *t; t = end) {
        end = t + strcspn(t, ",");
        if (*end) *end++ = 0;
        const char *eq = strchr(t, '=');
        unsigned long v = eq ? strtoul(eq + 1, NULL, 10) : 0;
        if (!strcmp(t, "snct")) o->server_no_context_takeover = 1;
        else if (!strcmp(t, "cnct")) o->client_no_context_takeover = 1;
        else if (!strncmp(t, "sbits=", 6)) o->server_max_window_bits = (unsigned char)v;
        else if (!strncmp(t, "cbits=", 6)) o->client_max_window_bits = (unsigned char)v;
        else if (!strncmp(t, "level=", 6)) o->deflate_level = (int)v;
        else if (!strncmp(t, "min=", 4)) o->deflate_threshold = (uint32_t)v;
        else if (!strncmp(t, "mem=", 4)) o->deflate_memory = v;
        else return -1;
    }
    return 0;
}

static void print_closed(const csock_ws_event *ev)
{
    printf("closed code=%d sent=%d status=%s reason=%.*s\n", ev->code, ev->sent,
           ev->status ? csock_err_name(ev->status) : "0", (int)ev->len, ev->buf);
    fflush(stdout);
}

/* ---- server ---------------------------------------------------------------- */

static void on_server_event(csock_ws *ws, const csock_ws_event *ev, void *data)
{
    (void)data;
    if (ev->kind == CSOCK_WS_CLOSED) return print_closed(ev);
    if (ev->kind == CSOCK_WS_PONG) {
        printf("pong %.*s\n", (int)ev->len, ev->buf);
        fflush(stdout);
    }
    if (ev->kind != CSOCK_WS_MESSAGE) return;
    if (ev->type == CSOCK_WS_TEXT && ev->len > 7 && !memcmp(ev->buf, "!close ", 7)) {
        int code = atoi(ev->buf + 7);
        const char *sp = memchr(ev->buf + 7, ' ', ev->len - 7);
        size_t rl = sp ? ev->len - (size_t)(sp + 1 - ev->buf) : 0;
        csock_ws_close(ws, code, sp ? sp + 1 : NULL, rl);
        return;
    }
    if (ev->type == CSOCK_WS_TEXT && ev->len == 5 && !memcmp(ev->buf, "!ping", 5)) {
        csock_ws_ping(ws, "srv", 3);
        return;
    }
    csock_ws_send(ws, ev->type, ev->buf, ev->len);
}

static csock_ws_opts server_opts;

static void on_request(csock_http_req *r, void *data)
{
    (void)data;
    if (!csock_ws_is_upgrade(r)) {
        csock_http_send(r, 200, "page\n", 5);
        return;
    }
    csock_ws *ws;
    int rc = csock_ws_accept(r, &server_opts, on_server_event, NULL, &ws);
    if (rc < 0) printf("refused %s\n", csock_err_name(rc));
    else printf("accepted compressed=%d\n", csock_ws_compressed(ws));
    fflush(stdout);
}

static csock_tls_ctx *server_tls;
static csock_http_server *http;

static void on_tls_ready(csock_stream *s, int status)
{
    if (status == 0) csock_http_server_accept(http, s);
}

static void on_accept(csock_listener *l, csock_stream *s, int status)
{
    (void)l;
    if (status < 0) return;
    if (server_tls)
        csock_tls_accept(s, server_tls, on_tls_ready);
    else
        csock_http_server_accept(http, s);
}

static int server(int argc, char **argv)
{
    static const char *protos[] = {"chat", "superchat"};
    server_opts.max_message = argc > 2 ? strtoull(argv[2], NULL, 10) : 64u << 20;
    server_opts.subprotocols = protos;
    server_opts.nsubprotocols = 2;
    server_opts.close_timeout_ms = 2000;
    csock_http_opts ho = {.handler = on_request};
    csock_addr a;
    csock_listener *l;
    if (argc > 4) {
        csock_tls_opts to = {.server = 1, .cert_file = argv[3], .key_file = argv[4]};
        if (csock_tls_ctx_new(&to, &server_tls, NULL, 0) < 0) return 1;
    }
    if (csock_http_server_new(loop, &ho, &http) < 0 || csock_addr_parse("tcp://127.0.0.1:0", 0, &a) < 0 ||
        csock_listen(loop, &a, NULL, on_accept, NULL, &l) < 0)
        return 1;
    char text[CSOCK_ADDR_STRLEN];
    csock_listener_addr(l, &a);
    csock_addr_format(&a, text, sizeof text);
    printf("listening %s\n", text);
    fflush(stdout);
    return csock_loop_run(loop, 0) < 0;
}

/* ---- client ------------------------------------------------------------------ */

static const char MB[] = "h\xc3\xa9llo \xe2\x82\xac \xf0\x9d\x84\x9e";
static unsigned step;
static int got_pong;
static char *big;

static void expect(csock_ws *ws, const csock_ws_event *ev, int type, const void *buf, size_t len,
                   const char *what)
{
    if (ev->type != type || ev->len != len || memcmp(ev->buf, buf, len)) {
        printf("bad %s (type %d, %zu bytes)\n", what, ev->type, ev->len);
        failed = 1;
        csock_ws_close(ws, CSOCK_WS_POLICY, NULL, 0);
        return;
    }
    printf("ok %s\n", what);
    fflush(stdout);
}

static void on_client_event(csock_ws *ws, const csock_ws_event *ev, void *data)
{
    static unsigned char bin[256];
    (void)data;
    switch (ev->kind) {
    case CSOCK_WS_OPEN:
        printf("open compressed=%d\n", csock_ws_compressed(ws));
        fflush(stdout);
        for (int i = 0; i < 256; i++) bin[i] = (unsigned char)i;
        big = malloc(BIG);
        for (size_t i = 0; i < BIG; i++) big[i] = (char)(i * 7 + (i >> 12));
        csock_ws_send(ws, CSOCK_WS_TEXT, "hello", 5);
        csock_ws_send(ws, CSOCK_WS_BINARY, bin, sizeof bin);
        csock_ws_send_part(ws, CSOCK_WS_TEXT, "frag", 4, 0);
        csock_ws_ping(ws, "p1", 2); /* between the fragments: allowed */
        csock_ws_send_part(ws, CSOCK_WS_TEXT, "ment", 4, 0);
        csock_ws_send_part(ws, 0, "ed", 2, 1);
        csock_ws_send(ws, CSOCK_WS_BINARY, big, BIG);
        csock_ws_send(ws, CSOCK_WS_TEXT, MB, sizeof MB - 1);
        return;
    case CSOCK_WS_PONG:
        got_pong = ev->len == 2 && !memcmp(ev->buf, "p1", 2);
        return;
    case CSOCK_WS_MESSAGE:
        switch (step++) {
        case 0: expect(ws, ev, CSOCK_WS_TEXT, "hello", 5, "text"); break;
        case 1: expect(ws, ev, CSOCK_WS_BINARY, bin, sizeof bin, "binary"); break;
        case 2: expect(ws, ev, CSOCK_WS_TEXT, "fragmented", 10, "fragmented"); break;
        case 3: expect(ws, ev, CSOCK_WS_BINARY, big, BIG, "16MiB"); break;
        case 4:
            expect(ws, ev, CSOCK_WS_TEXT, MB, sizeof MB - 1, "utf8");
            if (!got_pong) failed = 1;
            printf("%s pong\n", got_pong ? "ok" : "bad");
            csock_ws_close(ws, CSOCK_WS_NORMAL, "bye", 3);
            break;
        default: failed = 1;
        }
        return;
    case CSOCK_WS_CLOSED:
        print_closed(ev);
        if (ev->status != 0 || step != 5 || ev->code != CSOCK_WS_NORMAL) failed = 1;
        return;
    default: return;
    }
}

static csock_ws_opts client_opts;

static int client(const char *url, const char *ca)
{
    csock_ws_opts o = client_opts;
    o.max_message = 64u << 20;
    if (ca) {
        csock_tls_opts to = {.ca_file = ca};
        if (csock_tls_ctx_new(&to, &o.tls, NULL, 0) < 0) return 1;
    }
    csock_ws *ws;
    int rc = csock_ws_connect(loop, url, &o, on_client_event, NULL, &ws);
    if (rc < 0) {
        printf("connect: %s\n", csock_strerror(rc));
        return 1;
    }
    csock_loop_run(loop, 0);
    free(big);
    csock_tls_ctx_free(o.tls);
    return failed;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strncmp(argv[1], "--deflate", 9)) {
        const char *params = argv[1][9] == '=' ? argv[1] + 10 : "";
        if (argv[1][9] && argv[1][9] != '=') return 2;
        if (deflate_opts(params, &server_opts) < 0) return 2;
        client_opts = server_opts;
        argc--;
        argv++;
    }
    if (argc < 2 || csock_loop_new(NULL, &loop) < 0) return 2;
    if (!strcmp(argv[1], "server")) return server(argc, argv);
    if (!strcmp(argv[1], "client") && argc > 2) return client(argv[2], argc > 3 ? argv[3] : NULL);
    return 2;
}
