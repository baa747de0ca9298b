/* uv_echo: a libuv echo server in libuv's own idiom: uv_read_start() with an
 * alloc_cb, and per read one heap write request for uv_write() that carries its
 * own copy of the bytes and is freed in the write callback (test/echo-server.c,
 * docs/code/tcp-echo-server/main.c). The alloc_cb hands out one static slab, as
 * libuv's test/benchmark-pump.c does, rather than malloc(suggested_size) per
 * read as the tutorial does: with glibc that 64 KiB malloc/free pair trims and
 * regrows the heap, costing ~1.5 page faults per echo (measured), which would
 * benchmark glibc, not libuv. Nothing else is tuned beyond TCP_NODELAY.
 *
 * usage: uv_echo PORT   (0 = ephemeral); prints "listening tcp://127.0.0.1:PORT"
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

enum { BACKLOG = 1024 }; /* same backlog for every peer */

typedef struct {
    uv_write_t req;
    uv_buf_t buf; /* points at data[] below */
    char data[];  /* the echoed bytes, copied out of the slab */
} write_req_t;

/* One loop thread, and read_cb copies out of the slab before returning, so a
 * single slab serves every connection. */
static char slab[64 * 1024];

static void alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)handle, (void)suggested;
    *buf = uv_buf_init(slab, sizeof slab);
}

static void close_cb(uv_handle_t *handle) { free(handle); }

static void write_cb(uv_write_t *req, int status)
{
    write_req_t *wr = (write_req_t *)req;
    if (status < 0 && status != UV_ECANCELED)
        fprintf(stderr, "uv_echo: write: %s\n", uv_strerror(status));
    free(wr);
}

static void read_cb(uv_stream_t *client, ssize_t nread, const uv_buf_t *buf)
{
    if (nread > 0) {
        write_req_t *wr = malloc(sizeof *wr + (size_t)nread);
        if (!wr) {
            uv_close((uv_handle_t *)client, close_cb);
            return;
        }
        memcpy(wr->data, buf->base, (size_t)nread);
        wr->buf = uv_buf_init(wr->data, (unsigned)nread);
        uv_write(&wr->req, client, &wr->buf, 1, write_cb);
        return;
    }
    if (nread < 0) /* UV_EOF or an error: either way this peer is done */
        uv_close((uv_handle_t *)client, close_cb);
    /* nread == 0 is EAGAIN: nothing to do, the slab is not owned */
}

static void connection_cb(uv_stream_t *server, int status)
{
    if (status < 0) {
        fprintf(stderr, "uv_echo: accept: %s\n", uv_strerror(status));
        return;
    }
    uv_tcp_t *client = malloc(sizeof *client);
    if (!client)
        return;
    uv_tcp_init(server->loop, client);
    if (uv_accept(server, (uv_stream_t *)client) != 0) {
        uv_close((uv_handle_t *)client, close_cb);
        return;
    }
    uv_tcp_nodelay(client, 1);
    uv_read_start((uv_stream_t *)client, alloc_cb, read_cb);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: uv_echo PORT\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN); /* libuv leaves SIGPIPE to the application */
    uv_loop_t *loop = uv_default_loop();
    uv_tcp_t server;
    uv_tcp_init(loop, &server);
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", atoi(argv[1]), &addr);
    int r = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&server, BACKLOG, connection_cb);
    if (r != 0) {
        fprintf(stderr, "uv_echo: listen 127.0.0.1:%s: %s\n", argv[1], uv_strerror(r));
        return 1;
    }
    int len = sizeof addr;
    uv_tcp_getsockname(&server, (struct sockaddr *)&addr, &len);
    printf("listening tcp://127.0.0.1:%d\n", ntohs(addr.sin_port));
    fflush(stdout);
    return uv_run(loop, UV_RUN_DEFAULT);
}
