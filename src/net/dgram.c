/* Datagram sockets: UDP and Unix datagrams. */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "net/net_int.h"

#define SENDQ_MAX (1u << 20) /* bytes of datagrams waiting for the socket */
#define RECV_MAX 65536        /* the largest datagram UDP can carry */
/* Datagrams read per readiness event: a flood on one socket leaves the
 * loop time for the others. */
#define RECV_BATCH 32

typedef struct dgram_msg {
    struct dgram_msg *next;
    csock_addr to;
    int has_to;
    size_t len;
    char data[];
} dgram_msg;

struct csock_dgram {
    csock__handle h;
    csock__watcher w;
    csock_recv_cb cb;
    void *data;
    csock_scheme scheme;
    int receiving;
    dgram_msg *q_head, *q_tail;
    size_t q_bytes;
    void (*close_cb)(csock_dgram *d);
};

static void update_events(csock_dgram *d)
{
    unsigned ev = (d->receiving ? CSOCK_READABLE : 0) | (d->q_head ? CSOCK_WRITABLE : 0);
    csock__watcher_set(d->h.loop, &d->w, ev);
}

static void on_readable(csock_dgram *d)
{
    /* One buffer as large as any datagram, for this batch of reads only:
     * an idle socket holds none. */
    char *buf = malloc(RECV_MAX);
    if (!buf) return;
    for (int i = 0; i < RECV_BATCH && d->receiving && !d->h.closing; i++) {
        struct sockaddr_storage ss;
        struct iovec iov = {buf, RECV_MAX};
        struct msghdr m = {.msg_name = &ss, .msg_namelen = sizeof ss, .msg_iov = &iov, .msg_iovlen = 1};
        ssize_t n = recvmsg(d->w.fd, &m, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) break;
            d->cb(d, -errno, NULL, 0, NULL); /* e.g. ECONNREFUSED from an ICMP */
            continue;
        }
        csock_addr from;
        int has_from = m.msg_namelen > sizeof(sa_family_t) &&
                       csock__sockaddr_to_addr((struct sockaddr *)&ss, m.msg_namelen, d->scheme, &from) == 0;
        /* Larger than any UDP datagram: a Unix one (they go up to the
         * socket buffer). The kernel dropped the rest; half a message is
         * not the message, so it is reported, not delivered. */
        if (m.msg_flags & MSG_TRUNC)
            d->cb(d, -EMSGSIZE, NULL, 0, has_from ? &from : NULL);
        else
            d->cb(d, 0, buf, (size_t)n, has_from ? &from : NULL);
    }
    free(buf);
}

static int send_one(csock_dgram *d, const void *buf, size_t len, const csock_addr *to)
{
    ssize_t n = sendto(d->w.fd, buf, len, MSG_NOSIGNAL, to ? (const struct sockaddr *)&to->sa : NULL,
                       to ? to->len : 0);
    return n < 0 ? -errno : 0;
}

static void flush_queue(csock_dgram *d)
{
    while (d->q_head) {
        dgram_msg *m = d->q_head;
        int rc = send_one(d, m->data, m->len, m->has_to ? &m->to : NULL);
        if (rc == -EAGAIN || rc == -ENOBUFS) break;
        /* Sent, or failed for this datagram alone (e.g. ECONNREFUSED from an
         * earlier ICMP): either way it leaves the queue. */
        d->q_head = m->next;
        if (!d->q_head) d->q_tail = NULL;
        d->q_bytes -= m->len;
        free(m);
    }
    update_events(d);
}

static void on_io(csock_loop *loop, csock__watcher *w, unsigned events)
{
    csock_dgram *d = csock__container_of(w, csock_dgram, w);
    if (events & CSOCK_WRITABLE) flush_queue(d);
    if ((events & CSOCK_READABLE) && d->receiving && !d->h.closing) on_readable(d);
}

static int autobind_unix(int fd)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    /* Linux picks a unique abstract name when only the family is given. */
    return bind(fd, (struct sockaddr *)&sun, sizeof(sa_family_t)) < 0 ? -errno : 0;
}

int csock_dgram_new(csock_loop *loop, const csock_addr *local, const csock_addr *peer,
                    csock_dgram **out)
{
    const csock_addr *ref = local ? local : peer;
    if (!ref) return -EINVAL;
    if (csock_addr_is_stream(ref) || (peer && csock_addr_is_stream(peer))) return CSOCK_ESCHEME;
    int family = ref->sa.ss_family;
    int fd = csock__socket(family, SOCK_DGRAM);
    if (fd < 0) return fd;
    int rc = 0;
    if (local) {
        if (family == AF_INET6) {
            int off = 0;
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
        }
        if (family == AF_UNIX) {
            const struct sockaddr_un *sun = (const struct sockaddr_un *)&local->sa;
            if (sun->sun_path[0]) unlink(sun->sun_path); /* stale datagram socket file */
        }
        if (bind(fd, (const struct sockaddr *)&local->sa, local->len) < 0) rc = -errno;
    } else if (family == AF_UNIX) {
        rc = autobind_unix(fd);
    }
    if (!rc && peer && connect(fd, (const struct sockaddr *)&peer->sa, peer->len) < 0) rc = -errno;
    if (rc < 0) {
        close(fd);
        return rc;
    }
    csock_dgram *d = calloc(1, sizeof *d);
    if (!d) {
        close(fd);
        return -ENOMEM;
    }
    csock__handle_init(loop, &d->h);
    csock__watcher_init(&d->w, fd, on_io);
    d->scheme = ref->scheme;
    *out = d;
    return 0;
}

int csock_dgram_recv_start(csock_dgram *d, csock_recv_cb cb)
{
    if (d->h.closing || !cb) return -EINVAL;
    d->cb = cb;
    d->receiving = 1;
    update_events(d);
    return 0;
}

int csock_dgram_recv_stop(csock_dgram *d)
{
    d->receiving = 0;
    update_events(d);
    return 0;
}

int csock_dgram_send(csock_dgram *d, const void *buf, size_t len, const csock_addr *to)
{
    if (d->h.closing) return -EBADF;
    if (!d->q_head) {
        int rc = send_one(d, buf, len, to);
        if (rc != -EAGAIN && rc != -ENOBUFS) return rc;
    }
    if (len > SENDQ_MAX - d->q_bytes) return -ENOBUFS; /* q_bytes <= SENDQ_MAX: no wrap */
    dgram_msg *m = malloc(sizeof *m + len);
    if (!m) return -ENOMEM;
    m->next = NULL;
    m->len = len;
    m->has_to = to != NULL;
    if (to) m->to = *to;
    memcpy(m->data, buf, len);
    if (d->q_tail)
        d->q_tail->next = m;
    else
        d->q_head = m;
    d->q_tail = m;
    d->q_bytes += len;
    update_events(d);
    return 0;
}

int csock_dgram_local(const csock_dgram *d, csock_addr *out)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(d->w.fd, (struct sockaddr *)&ss, &len) < 0) return -errno;
    return csock__sockaddr_to_addr((struct sockaddr *)&ss, len, d->scheme, out);
}

void *csock_dgram_data(const csock_dgram *d) { return d->data; }
void csock_dgram_set_data(csock_dgram *d, void *data) { d->data = data; }
int csock_dgram_fd(const csock_dgram *d) { return d->w.fd; }

static void dgram_finish(csock__handle *h)
{
    csock_dgram *d = csock__container_of(h, csock_dgram, h);
    if (d->close_cb) d->close_cb(d);
    free(d);
}

void csock_dgram_close(csock_dgram *d, void (*cb)(csock_dgram *d))
{
    if (d->h.closing) return;
    csock__watcher_set(d->h.loop, &d->w, 0);
    while (d->q_head) {
        dgram_msg *m = d->q_head;
        d->q_head = m->next;
        free(m);
    }
    d->q_tail = NULL;
    close(d->w.fd);
    d->close_cb = cb;
    csock__handle_close(&d->h, dgram_finish);
}
