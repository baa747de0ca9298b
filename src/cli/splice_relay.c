/* Two plain sockets relayed by splice(2) or a copy: see splice_relay.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/splice_relay.h"

#define SPLICE_CHUNK (64 * 1024) /* a pipe's default capacity, and the copy's buffer */
#define SPLICE_SMALL_READS 3     /* small splice reads in a row that end streaming */

/* ---- the pool ---- */

static int pipe_get(splice_pool *pool, splice_half *h)
{
    if (h->pipe[0] >= 0) return 0;
    if (pool->n) {
        pool->n--;
        h->pipe[0] = pool->fd[pool->n][0];
        h->pipe[1] = pool->fd[pool->n][1];
        return 0;
    }
    return pipe2(h->pipe, O_NONBLOCK | O_CLOEXEC) < 0 ? -errno : 0;
}

/* An empty pipe goes back to the pool; one still holding bytes (an error
 * cut the relay short) is closed with them. */
static void pipe_put(splice_pool *pool, splice_half *h)
{
    if (h->pipe[0] < 0) return;
    if (!h->inpipe && pool->n < SPLICE_POOL_MAX) {
        pool->fd[pool->n][0] = h->pipe[0];
        pool->fd[pool->n][1] = h->pipe[1];
        pool->n++;
    } else {
        close(h->pipe[0]);
        close(h->pipe[1]);
    }
    h->pipe[0] = h->pipe[1] = -1;
    h->inpipe = 0;
}

void splice_pool_free(splice_pool *pool)
{
    free(pool->scratch);
    pool->scratch = NULL;
    while (pool->n) {
        pool->n--;
        close(pool->fd[pool->n][0]);
        close(pool->fd[pool->n][1]);
    }
}

/* ---- moving bytes ---- */

/* Bytes to send before the socket's next (a stream's unconsumed input, or
 * what a copy's send left): kept in a buffer of their own. */
static int keep_early(splice_half *h, const char *buf, size_t len)
{
    if (!len) return 0;
    if (len > UINT32_MAX || !(h->early = malloc(len))) return -ENOMEM;
    memcpy(h->early, buf, len);
    h->early_off = 0;
    h->early_len = (uint32_t)len;
    return 0;
}

/* One read of a message-carrying direction, copied: recv into the pool's
 * scratch buffer and send at once; what the sink does not take now waits
 * in h->early. Returns the bytes read (0: EOF), or -errno (-EAGAIN:
 * nothing to read). */
static ssize_t copy_once(splice_relay *sr, splice_half *h, int src, int dst)
{
    splice_pool *pool = sr->pool;
    if (!pool->scratch && !(pool->scratch = malloc(SPLICE_CHUNK))) return -ENOMEM;
    ssize_t n;
    do n = recv(src, pool->scratch, SPLICE_CHUNK, MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n <= 0) return n < 0 ? -errno : 0;
    ssize_t m;
    do m = send(dst, pool->scratch, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (m < 0 && errno == EINTR);
    if (m < 0 && errno != EAGAIN) return -errno;
    if (m < 0) m = 0;
    h->bytes += (uint64_t)m;
    int rc = keep_early(h, pool->scratch + m, (size_t)(n - m));
    return rc < 0 ? rc : n;
}

/* Move what direction d can move now. Returns 0, or the error that ends
 * the relay. */
static int pump(splice_relay *sr, int d)
{
    splice_half *h = &sr->h[d];
    int src = sr->fd[d], dst = sr->fd[!d];
    int drained = 0; /* a short read emptied the socket */
    for (;;) {
        if (h->early) { /* the stream's unconsumed input goes before the socket's */
            ssize_t n = send(dst, h->early + h->early_off, h->early_len - h->early_off,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return errno == EAGAIN ? 0 : -errno;
            h->early_off += (uint32_t)n;
            h->bytes += (uint64_t)n;
            if (h->early_off < h->early_len) continue;
            free(h->early);
            h->early = NULL;
        }
        while (h->inpipe) {
            ssize_t n = splice(h->pipe[0], NULL, dst, NULL, h->inpipe,
                               SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return errno == EAGAIN ? 0 : -errno;
            h->inpipe -= (uint32_t)n;
            h->bytes += (uint64_t)n;
        }
        if (h->eof) {
            if (!h->shut && shutdown(dst, SHUT_WR) < 0 && errno != ENOTCONN) return -errno;
            h->shut = 1;
            pipe_put(sr->pool, h);
            return 0;
        }
        if (drained) { /* level-triggered: more input (or the EOF) is reported again */
            pipe_put(sr->pool, h);
            return 0;
        }
        if (!h->splicing) {
            ssize_t n = copy_once(sr, h, src, dst);
            if (n == -EAGAIN) return 0;
            if (n < 0) return (int)n;
            if (n == 0) h->eof = 1;
            drained = n < SPLICE_CHUNK;
            h->splicing = !drained; /* a full read: the direction streams */
            sr->last_io = csock_loop_now(sr->loop);
            continue;
        }
        int rc = pipe_get(sr->pool, h);
        if (rc < 0) return rc;
        ssize_t n = splice(src, NULL, h->pipe[1], NULL, SPLICE_CHUNK,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
            pipe_put(sr->pool, h); /* idle: the pipe serves another relay meanwhile */
            return 0;
        }
        if (n < 0) return -errno;
        if (n == 0) h->eof = 1;
        drained = n < SPLICE_CHUNK;
        /* Back to copying only after SPLICE_SMALL_READS reads of at most
         * half a chunk in a row: a streaming splice comes up short on its
         * own when the pipe runs out of slots (16 pages, and a segment
         * smaller than a page still takes one). */
        if (n > SPLICE_CHUNK / 2) h->small = 0;
        else if (++h->small >= SPLICE_SMALL_READS) h->splicing = 0, h->small = 0;
        h->inpipe = (uint32_t)n;
        sr->last_io = csock_loop_now(sr->loop);
    }
}

/* Watch what each socket can do for us now: read while its direction's pipe
 * is empty, write while the other direction has bytes for it. */
static int watch(splice_relay *sr)
{
    for (int i = 0; i < 2; i++) {
        int ev = (!sr->h[i].eof && !sr->h[i].inpipe && !sr->h[i].early ? CSOCK_READABLE : 0) |
                 (sr->h[!i].inpipe || sr->h[!i].early ? CSOCK_WRITABLE : 0);
        if (ev == sr->want[i]) continue;
        int rc = csock_io_start(sr->io[i], ev);
        if (rc < 0) return rc;
        sr->want[i] = (unsigned char)ev;
    }
    return 0;
}

void splice_relay_events(splice_relay *sr, int i, int events)
{
    int rc = 0;
    if (events & CSOCK_READABLE) rc = pump(sr, i);
    if (rc == 0 && (events & CSOCK_WRITABLE)) rc = pump(sr, !i);
    if (rc == 0 && sr->h[0].shut && sr->h[1].shut) return sr->on_end(sr, 0);
    if (rc == 0) rc = watch(sr);
    if (rc < 0) sr->on_end(sr, rc);
}

static void on_io(csock_io *io, int events)
{
    splice_relay *sr = csock_io_data(io);
    splice_relay_events(sr, io == sr->io[1], events);
}

/* ---- setting up and ending ---- */

void splice_relay_init(splice_relay *sr, csock_loop *loop, splice_pool *pool, splice_end_cb on_end,
                       void *data)
{
    *sr = (splice_relay){.loop = loop, .pool = pool, .on_end = on_end, .data = data};
    for (int i = 0; i < 2; i++) sr->fd[i] = sr->h[i].pipe[0] = sr->h[i].pipe[1] = -1;
}

int splice_relay_attach(splice_relay *sr, int i, int fd, csock_io *io)
{
    sr->fd[i] = fd;
    if (io) {
        /* It may still watch for its maker (a connect's writability): it
         * waits, stopped, for the first watch(), since an event before then
         * would pump a side still being taken, whose fd is -1 (EBADF). */
        sr->io[i] = io;
        sr->want[i] = 0;
        return csock_io_stop(io);
    }
    int rc = csock_io_new(sr->loop, fd, on_io, sr, &sr->io[i]);
    if (rc < 0) sr->io[i] = NULL;
    return rc;
}

/* ---- taking a stream's socket ---- */

/* A take on its way: the detach's callback may come after the relay has
 * ended (sr NULL then), so it holds no pointer into a freed owner. */
struct splice_take {
    splice_relay *sr;   /* NULL: called off */
    csock_stream *s;
    int i;
};

/* The takes have all come: relay, or end with the first error. */
static void begin(splice_relay *sr)
{
    int rc = sr->err ? sr->err : watch(sr);
    if (rc < 0) sr->on_end(sr, rc);
}

static void on_detached(csock_stream *s, int status, int fd, const char *buf, size_t len, void *data)
{
    struct splice_take *t = data;
    splice_relay *sr = t->sr;
    int i = t->i;
    (void)s;
    free(t);
    if (!sr) { /* the relay ended meanwhile */
        if (fd >= 0) close(fd);
        return;
    }
    sr->take[i] = NULL;
    int rc = status;
    if (rc == 0) rc = splice_relay_attach(sr, i, fd, NULL);
    if (rc == 0) rc = keep_early(&sr->h[i], buf, len);
    if (rc < 0 && !sr->err) sr->err = rc;
    if (sr->started && !sr->take[!i]) begin(sr);
}

int splice_relay_take(splice_relay *sr, int i, csock_stream **s)
{
    csock_stream *st = *s;
    *s = NULL;
    csock_stream_on_close(st, NULL);
    struct splice_take *t = malloc(sizeof *t);
    int rc = t ? csock_stream_detach(st, on_detached, t) : -ENOMEM;
    if (rc < 0) {
        free(t);
        csock_stream_close(st, NULL);
        if (!sr->err) sr->err = rc;
        return rc;
    }
    *t = (struct splice_take){.sr = sr, .s = st, .i = i};
    sr->take[i] = t;
    return 0;
}

int splice_relay_start(splice_relay *sr)
{
    sr->started = 1;
    if (sr->err) return sr->err;
    return sr->take[0] || sr->take[1] ? 0 : watch(sr);
}

void splice_relay_close(splice_relay *sr)
{
    for (int i = 0; i < 2; i++) {
        if (sr->take[i]) { /* its callback comes with -ECANCELED and finds no relay */
            sr->take[i]->sr = NULL;
            csock_stream_close(sr->take[i]->s, NULL);
            sr->take[i] = NULL;
        }
        free(sr->h[i].early);
        sr->h[i].early = NULL;
        if (sr->io[i]) csock_io_close(sr->io[i], NULL);
        if (sr->fd[i] >= 0) close(sr->fd[i]);
        sr->io[i] = NULL;
        sr->fd[i] = -1;
        pipe_put(sr->pool, &sr->h[i]);
    }
}
