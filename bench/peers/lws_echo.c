/* lws_echo [PORT]: a WebSocket echo server on libwebsockets (Debian
 * libwebsockets-dev 4.1), in the library's documented style (its
 * minimal-ws-server examples): one protocol; a received message is
 * reassembled, queued on its session, and written back from
 * LWS_CALLBACK_SERVER_WRITEABLE after lws_callback_on_writable(), with
 * LWS_PRE bytes of headroom so lws frames it without a copy. lws's default
 * event loop (poll), one thread, no extensions (no permessage-deflate).
 * Listens on 127.0.0.1:PORT (0, the default: any free port) and prints
 * "listening tcp://127.0.0.1:PORT". SIGTERM ends it (default action). */
#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct msg {
    struct msg *next;
    size_t len;
    int binary;
    unsigned char buf[]; /* LWS_PRE bytes for lws, then the payload */
};

struct session {
    struct msg *head, *tail; /* echoes waiting for a writeable callback */
    unsigned char *part;     /* a message being reassembled from fragments */
    size_t part_len;
};

static void session_free(struct session *s)
{
    while (s->head) {
        struct msg *m = s->head;
        s->head = m->next;
        free(m);
    }
    s->tail = NULL;
    free(s->part);
    s->part = NULL;
    s->part_len = 0;
}

/* Append in[len] to the message being received; at its final fragment,
 * queue it for the echo. Returns -1 on allocation failure (lws closes). */
static int on_receive(struct lws *wsi, struct session *s, const void *in, size_t len)
{
    unsigned char *p = realloc(s->part, LWS_PRE + s->part_len + len);
    if (!p)
        return -1;
    memcpy(p + LWS_PRE + s->part_len, in, len);
    s->part = p;
    s->part_len += len;
    if (!lws_is_final_fragment(wsi))
        return 0;
    struct msg *m = malloc(sizeof *m + LWS_PRE + s->part_len);
    if (!m)
        return -1;
    m->next = NULL;
    m->len = s->part_len;
    m->binary = lws_frame_is_binary(wsi);
    memcpy(m->buf + LWS_PRE, s->part + LWS_PRE, s->part_len);
    s->part_len = 0;
    if (s->tail)
        s->tail->next = m;
    else
        s->head = m;
    s->tail = m;
    lws_callback_on_writable(wsi);
    return 0;
}

static int on_writeable(struct lws *wsi, struct session *s)
{
    struct msg *m = s->head;
    if (!m)
        return 0;
    int n = lws_write(wsi, m->buf + LWS_PRE, m->len, m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
    if (n < (int)m->len)
        return -1;
    s->head = m->next;
    if (!s->head)
        s->tail = NULL;
    free(m);
    if (s->head)
        lws_callback_on_writable(wsi);
    return 0;
}

static int callback_echo(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                         size_t len)
{
    struct session *s = user;
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED: memset(s, 0, sizeof *s); break;
    case LWS_CALLBACK_RECEIVE: return on_receive(wsi, s, in, len);
    case LWS_CALLBACK_SERVER_WRITEABLE: return on_writeable(wsi, s);
    case LWS_CALLBACK_CLOSED: session_free(s); break;
    default: break;
    }
    return 0;
}

static const struct lws_protocols protocols[] = {
    {"echo", callback_echo, sizeof(struct session), 4096, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

int main(int argc, char **argv)
{
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = argc > 1 ? atoi(argv[1]) : 0;
    info.iface = "127.0.0.1";
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    lws_set_log_level(LLL_ERR | LLL_WARN, NULL);
    struct lws_context *ctx = lws_create_context(&info);
    if (!ctx) {
        fprintf(stderr, "lws_echo: lws_create_context failed\n");
        return 1;
    }
    struct lws_vhost *vh = lws_get_vhost_by_name(ctx, "default");
    int port = vh ? lws_get_vhost_listen_port(vh) : -1;
    if (port <= 0) {
        fprintf(stderr, "lws_echo: no listening port\n");
        return 1;
    }
    printf("listening tcp://127.0.0.1:%d\n", port);
    fflush(stdout);
    while (lws_service(ctx, 0) >= 0) {
    }
    lws_context_destroy(ctx);
    return 0;
}
