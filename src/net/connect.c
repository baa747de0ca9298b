/* Non-blocking connect with an optional timeout. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/net_int.h"

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
