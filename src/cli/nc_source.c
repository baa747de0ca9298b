/* connect -s ADDR / -p PORT: the source address and port of the connection
 * (ncat's --source and --source-port). csock_connect() binds nothing, so a
 * TCP connection from a chosen source is made here: bind, then connect,
 * then the connected socket becomes a csock stream. UDP needs no help:
 * csock_dgram_new() binds its `local` address. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/netcat.h"

static int nc_has_source(const nc_opts *o)
{
    return o->source || o->source_port;
}

/* Can this host bind `a` (port 0: only the address is tried)? 0 or -errno. */
static int bindable(const csock_addr *a, int type)
{
    csock_addr probe = *a;
    csock_addr_set_port(&probe, 0);
    int fd = socket(a->sa.ss_family, type | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int rc = bind(fd, (const struct sockaddr *)&probe.sa, probe.len) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

/* -s as an address of the family `family` (0: any) with port -p. */
static void source_parse(const nc_opts *o, int family, csock_addr *out)
{
    char text[NC_TARGET_TEXT];
    const char *s = o->source ? o->source : "";
    int v6 = strchr(s, ':') != NULL && s[0] != '[';
    snprintf(text, sizeof text, "%s://%s%s%s:%d", o->udp ? "udp" : "tcp", v6 ? "[" : "", s,
             v6 ? "]" : "", o->source_port);
    int flags = family == AF_INET ? CSOCK_ADDR_IPV4 : family == AF_INET6 ? CSOCK_ADDR_IPV6 : 0;
    int rc = csock_addr_parse(text, flags | CSOCK_ADDR_PASSIVE | CSOCK_ADDR_NUMERIC, out);
    if (rc < 0)
        cli_die(CLI_USAGE, "connect: -s '%s': not an IP address%s", s,
                family ? (family == AF_INET ? " of the target's family (IPv4)"
                                            : " of the target's family (IPv6)")
                       : "");
}

const csock_addr *nc_source(const nc_opts *o, const char *target, csock_addr *addr,
                            csock_addr *src)
{
    if (!nc_has_source(o)) return NULL;
    int fam = addr->sa.ss_family;
    if (fam != AF_INET && fam != AF_INET6)
        cli_die(CLI_USAGE, "connect: -s/-p need an IP address; %s is not one", target);
    if (o->source && !(o->family & (CSOCK_ADDR_IPV4 | CSOCK_ADDR_IPV6))) {
        /* the target in the source's family, if it has one */
        source_parse(o, 0, src);
        if (src->sa.ss_family != fam) {
            int want = (src->sa.ss_family == AF_INET ? CSOCK_ADDR_IPV4 : CSOCK_ADDR_IPV6) |
                       (o->family & CSOCK_ADDR_NUMERIC);
            if (csock_addr_parse(target, want, addr) < 0)
                cli_die(CLI_USAGE, "connect: -s %s and %s: not of the same family", o->source,
                        target);
            fam = addr->sa.ss_family;
        }
    }
    source_parse(o, fam, src);
    int rc = bindable(src, o->udp ? SOCK_DGRAM : SOCK_STREAM);
    if (rc == -EADDRNOTAVAIL)
        cli_die(CLI_USAGE, "connect: -s %s: not an address of this host", o->source);
    if (rc < 0) cli_die(CLI_ERR, "connect: -s %s: %s", o->source ? o->source : "",
                        strerror(-rc));
    return src;
}

/* Wait for a non-blocking connect to end: 0 or -errno. SIGINT and SIGTERM,
 * blocked for the loop's signal watchers, are let through meanwhile. */
static int connect_wait(int fd, uint64_t wait_ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    sigset_t none;
    sigemptyset(&none);
    struct timespec ts = {(time_t)(wait_ms / 1000), (long)(wait_ms % 1000) * 1000000};
    int n;
    do
        n = ppoll(&pfd, 1, wait_ms ? &ts : NULL, &none);
    while (n < 0 && errno == EINTR);
    if (n < 0) return -errno;
    if (n == 0) return -ETIMEDOUT;
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return -errno;
    return -err;
}

static int connect_from(const csock_addr *addr, const csock_addr *src, uint64_t wait_ms)
{
    int fd = socket(addr->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1, rc = 0;
    /* As ncat: the same source port may be used again while the last
     * connection from it sits in TIME_WAIT. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)&src->sa, src->len) < 0)
        rc = -errno;
    else if (connect(fd, (const struct sockaddr *)&addr->sa, addr->len) < 0)
        rc = errno == EINPROGRESS ? connect_wait(fd, wait_ms) : -errno;
    if (rc < 0) {
        close(fd);
        if (rc == -EADDRINUSE) cli_die(CLI_ERR, "connect: -p %d: source port in use", csock_addr_port(src));
        return rc;
    }
    return fd;
}

typedef struct connected {
    csock_stream *s;
    csock_stream_cb cb;
} connected;

/* The connect callback, from the loop as csock_connect() would run it. */
static void report_connected(void *data)
{
    connected *d = data;
    csock_stream_cb cb = d->cb;
    csock_stream *s = d->s;
    free(d);
    cb(s, 0);
}

int nc_connect_from(nc_ctx *c, const csock_addr *addr, const csock_addr *src,
                    csock_stream_cb cb, csock_stream **out)
{
    int fd = connect_from(addr, src, c->o->wait_ms);
    if (fd < 0) return fd;
    csock_stream *s;
    int rc = csock_stream_open(c->loop, fd, &s);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    csock_stream_set_data(s, c);
    if (c->tls) {
        rc = csock_tls_wrap(s, c->tls, addr->host[0] ? addr->host : NULL, cb);
    } else {
        connected *d = malloc(sizeof *d);
        rc = d ? 0 : -ENOMEM;
        if (d) *d = (connected){s, cb};
        if (d && (rc = csock_loop_post(c->loop, report_connected, d)) < 0) free(d);
    }
    if (rc < 0) {
        csock_stream_close(s, NULL);
        return rc;
    }
    *out = s;
    return 0;
}
