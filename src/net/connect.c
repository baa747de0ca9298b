/* Non-blocking connect with an optional timeout: the socket (csock_connect)
 * and the stream's state while it connects (the timeout itself fires in
 * stream_timeout.c). */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/stream_int.h"

/* ---- the stream while it connects ---- */

int csock__stream_connecting(csock_stream *s, csock_stream_cb cb, uint64_t timeout_ms)
{
    if (!csock__stream_ext(s)) return -ENOMEM;
    /* A ring stream learns of its connect by readiness: its watcher is
     * made now, so that no memory is missing once it is connecting (its
     * callback would never come). */
    if ((s->flags & F_RING) && !csock__stream_ring_watcher(s, 1)) return -ENOMEM;
    s->flags |= F_CONNECTING;
    s->x->connect_cb = cb;
    csock__stream_update_events(s);
    if (timeout_ms) return csock__stream_arm_timer(s, T_CONNECT, timeout_ms);
    return 0;
}

/* A connect that failed at once still reports from the loop,
 * unless the application closed the stream first. */
void csock__stream_connect_failed_early(csock_stream *s)
{
    csock_stream_cb cb = s->x->connect_cb;
    s->x->connect_cb = NULL;
    if (cb) cb(s, s->err);
    csock_stream_close(s, NULL);
}

int csock__stream_connect_failed(csock_stream *s, csock_stream_cb cb, int err)
{
    if (!csock__stream_ext(s)) return -ENOMEM;
    s->x->connect_cb = cb;
    s->err = (int16_t)err;
    csock__stream_defer(s, D_CONNECT);
    return 0;
}

/* The socket became writable: the connect finished, one way or the other. */
void csock__stream_connect_done(csock_stream *s)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(s->w.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    s->flags &= ~F_CONNECTING;
    if (s->timer_mode == T_CONNECT) {
        csock_timer_stop(s->x->timer);
        s->timer_mode = T_NONE;
    }
    csock__stream_update_events(s);
    csock_stream_cb cb = s->x->connect_cb;
    s->x->connect_cb = NULL;
    csock__stream_touch(s);
    if (cb) cb(s, -err);
    if (err) {
        csock_stream_close(s, NULL);
        return;
    }
    if (!s->h.closing && s->x) csock__stream_watch(s);
    if (!s->h.closing) csock__stream_flush(s); /* writes and a shutdown made while connecting */
}

int csock_connect(csock_loop *loop, const csock_addr *addr, const csock_connect_opts *opts,
                  csock_stream_cb cb, void *data, csock_stream **out)
{
    if (!addr || !cb) return -EINVAL;
    /* tls:// needs a context to verify the peer with: csock_tls_connect().
     * Connecting in plaintext instead would send the application's bytes
     * in the clear to a peer that expects TLS. */
    if (!csock_addr_is_stream(addr) || addr->scheme == CSOCK_TLS) return CSOCK_ESCHEME;
    int family = addr->sa.ss_family;
    int fd = csock__socket(family, SOCK_STREAM);
    if (fd < 0) return fd;
    if (family != AF_UNIX) {
        int one = 1; /* request/response traffic: never wait to coalesce */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    csock_stream *s = csock__stream_new(loop, fd, NULL);
    if (!s) {
        close(fd);
        return -ENOMEM;
    }
    csock_stream_set_data(s, data);
    int rc = connect(fd, (const struct sockaddr *)&addr->sa, addr->len);
    int err = rc < 0 ? errno : 0;
    if (rc == 0 || err == EINPROGRESS) {
        /* Completion (even an immediate one) is reported by writability. */
        rc = csock__stream_connecting(s, cb, opts ? opts->timeout_ms : 0);
        if (rc < 0) {
            csock_stream_close(s, NULL);
            return rc;
        }
        *out = s;
        return 0;
    }
    /* A connect that fails at once (a Unix path that does not exist) still
     * reports through the callback, from the loop, as the contract says. */
    if (err == EAGAIN) err = ECONNREFUSED; /* a Unix listener's backlog is full */
    rc = csock__stream_connect_failed(s, cb, -err);
    if (rc < 0) {
        csock_stream_close(s, NULL);
        return -err;
    }
    *out = s;
    return 0;
}
