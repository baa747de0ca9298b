/* Listening sockets: the accept loop, connection limits, Unix socket files,
 * and the EMFILE defence. */
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "net/listen_fd.h"
#include "net/stream_int.h"

#define ACCEPT_BATCH 64 /* accepts per readiness event: fairness with other I/O */
/* With no fd in reserve, accepting pauses this long after EMFILE: long
 * enough that a loop does not spin on the readiness, short enough that a
 * freed descriptor is used soon. */
#define FD_BACKOFF_MS 100
/* listen(2)'s backlog when the caller gives none: a burst of connections
 * waits in the kernel instead of being refused (capped by somaxconn). */
#define DEFAULT_BACKLOG 4096

/* How long a PROXY protocol header may take to arrive when the caller
 * gives no time: far more than a balancer on the LAN needs, short enough
 * that a client sending nothing does not hold a slot for long. */
#define DEFAULT_PROXY_TIMEOUT_MS 3000

/* A connection whose PROXY header is still being read: not yet a stream,
 * not yet seen by the accept callback. */
typedef struct pp_wait {
    csock__watcher w;
    csock__task task;       /* frees it on a later phase (see pp_free) */
    csock_listener *l;
    csock_timer *timer;
    struct pp_wait *next, *prev;
    size_t have;            /* header bytes taken from the socket into buf */
    size_t skip;            /* v2 bytes past the addresses still to discard */
    ssize_t hlen;           /* the header's length, once known */
    csock_proxy_info info;
    unsigned char buf[CSOCK_PROXY_V2_ADDR_MAX];
} pp_wait;

struct csock_listener {
    csock__handle h;
    csock__watcher w;
    csock_accept_cb cb;
    void *data;
    csock__conn_group *group;
    unsigned max_conns;
    int reserve_fd;        /* kept open so EMFILE can be answered with a close */
    int paused;
    int owned;             /* the fd is ours to close (not shared by loops) */
    csock_timer *backoff;  /* accepting paused after fds ran out for good */
    char *unix_path;       /* socket file to remove on close */
    csock_scheme scheme;
    unsigned proxy_timeout_ms; /* 0: no PROXY protocol */
    pp_wait *waiting;          /* connections whose header is on its way */
    void (*close_cb)(csock_listener *l);
};

static int open_reserve(void) { return open("/dev/null", O_RDONLY | O_CLOEXEC); }

/* Out of descriptors: the kernel keeps reporting the pending connection, so
 * a loop that just retries spins at 100 % CPU. Spend the reserve fd to
 * accept the connection and close it at once (the peer sees a clean close),
 * then take the reserve back. */
static void resume_after_backoff(csock_timer *t)
{
    csock_listener *l = csock_timer_data(t);
    if (l->reserve_fd < 0) l->reserve_fd = open_reserve();
    if (!l->paused && !l->h.closing) csock__watcher_set(l->h.loop, &l->w, CSOCK_READABLE);
}

static void shed_one(csock_listener *l)
{
    if (l->reserve_fd >= 0) {
        close(l->reserve_fd);
        int fd = accept(l->w.fd, NULL, NULL);
        if (fd >= 0) close(fd);
        l->reserve_fd = open_reserve();
        if (l->reserve_fd >= 0) return;
    }
    /* No reserve (another thread took the fd): stop watching for a moment
     * rather than spin on a readiness we cannot act on. */
    if (!l->backoff && csock__timer_new_internal(l->h.loop, &l->backoff) == 0)
        csock_timer_set_data(l->backoff, l);
    if (l->backoff) {
        csock__watcher_set(l->h.loop, &l->w, 0);
        csock_timer_start(l->backoff, resume_after_backoff, FD_BACKOFF_MS, 0);
    }
}

/* ---- PROXY protocol: the header before the accept callback --------------- */

/* A watcher's memory must outlive the dispatch it may be in the middle of
 * (epoll can still hold an event for it in the same batch): freed from a
 * deferred task, as streams are. */
static void pp_free_task(csock__task *t) { free(csock__container_of(t, pp_wait, task)); }

/* Stop waiting: out of the list, watcher and timer gone. The fd is the
 * caller's to close or to hand on. */
static void pp_unlink(pp_wait *p)
{
    csock_listener *l = p->l;
    csock__watcher_set(l->h.loop, &p->w, 0);
    if (p->timer) csock_timer_close(p->timer, NULL);
    if (p->prev) p->prev->next = p->next;
    else l->waiting = p->next;
    if (p->next) p->next->prev = p->prev;
    p->task.fn = pp_free_task;
    csock__defer(l->h.loop, &p->task);
}

/* A bad, missing or late header: the connection closes unseen. A bad
 * (-EPROTO, -EMSGSIZE) or late (-ETIMEDOUT) one is reported as an accept
 * error, for logs; a client that closed before sending anything is not
 * (a balancer's TCP health check does just that). */
static void pp_reject(pp_wait *p, int why)
{
    csock_listener *l = p->l;
    int fd = p->w.fd;
    csock__group_unreserve(l->group);
    pp_unlink(p);
    close(fd);
    if (why < 0 && why != -ECONNRESET) l->cb(l, NULL, why);
}

static void deliver(csock_listener *l, int fd, const csock_addr *peer);

static void pp_done(pp_wait *p)
{
    csock_listener *l = p->l;
    int fd = p->w.fd;
    csock_proxy_info info = p->info;
    pp_unlink(p);
    deliver(l, fd, info.local ? NULL : &info.src);
}

/* Take exactly the header off the socket, never a byte of what follows:
 * peek, parse what has come so far, then read only the bytes that are
 * header. Every byte peeked is either consumed or left for the stream, so
 * a level-triggered watcher never spins on a partial header. */
static int pp_read(pp_wait *p)
{
    int fd = p->w.fd;
    if (p->hlen > 0) { /* v2 TLVs after the addresses: read and drop */
        char scratch[4096];
        size_t want = p->skip < sizeof scratch ? p->skip : sizeof scratch;
        ssize_t n = recv(fd, scratch, want, 0);
        if (n <= 0) return n == 0 ? -ECONNRESET : errno == EAGAIN || errno == EINTR ? 0 : -errno;
        p->skip -= (size_t)n;
        return p->skip == 0;
    }
    ssize_t n = recv(fd, p->buf + p->have, sizeof p->buf - p->have, MSG_PEEK);
    if (n == 0) return -ECONNRESET;
    if (n < 0) return errno == EAGAIN || errno == EINTR ? 0 : -errno;
    size_t seen = p->have + (size_t)n;
    ssize_t h = csock_proxy_parse(p->buf, seen, &p->info);
    if (h < 0) return (int)h;
    /* Incomplete: all of it is header. Complete: up to its end. */
    size_t take = h == 0 ? (size_t)n : ((size_t)h < seen ? (size_t)h : seen) - p->have;
    if (h == 0 && seen == sizeof p->buf) return -EPROTO; /* cannot happen: v1 and v2 fit */
    if (take && recv(fd, p->buf + p->have, take, 0) != (ssize_t)take) return -EIO;
    p->have += take;
    if (h == 0) return 0;
    p->hlen = h;
    p->skip = (size_t)h - p->have;
    return p->skip == 0;
}

static void pp_on_readable(csock_loop *loop, csock__watcher *w, unsigned events)
{
    pp_wait *p = csock__container_of(w, pp_wait, w);
    int rc = pp_read(p);
    if (rc < 0) pp_reject(p, rc);
    else if (rc > 0) pp_done(p);
}

static void pp_on_timeout(csock_timer *t) { pp_reject(csock_timer_data(t), -ETIMEDOUT); }

/* Wait for the header of a new connection (its slot reserved). 0, or an
 * error with the fd closed and the slot given back. */
static int pp_start(csock_listener *l, int fd)
{
    pp_wait *p = calloc(1, sizeof *p);
    int rc = p ? csock__timer_new_internal(l->h.loop, &p->timer) : -ENOMEM;
    if (rc == 0) {
        p->l = l;
        csock__watcher_init(&p->w, fd, pp_on_readable);
        p->next = l->waiting;
        if (p->next) p->next->prev = p;
        l->waiting = p;
        csock_timer_set_data(p->timer, p);
        csock_timer_unref(p->timer); /* a waiting header does not keep a loop alive alone */
        rc = csock_timer_start(p->timer, pp_on_timeout, l->proxy_timeout_ms, 0);
        if (rc == 0) rc = csock__watcher_set(l->h.loop, &p->w, CSOCK_READABLE);
        if (rc == 0) return 0;
        pp_reject(p, 0); /* the caller reports rc */
        return rc;
    }
    free(p);
    csock__group_unreserve(l->group);
    close(fd);
    return rc;
}

/* The listener closes: so do the connections still sending their header. */
static void pp_close_all(csock_listener *l)
{
    while (l->waiting) pp_reject(l->waiting, 0);
}

/* ---- accepting ------------------------------------------------------------------ */

/* Make the stream of an accepted connection (its slot reserved) and hand
 * it to the application, with the peer a PROXY header named if any. */
static void deliver(csock_listener *l, int fd, const csock_addr *peer)
{
    if (l->scheme != CSOCK_UNIX) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    csock_stream *s = csock__stream_new(l->h.loop, fd, l->group);
    if (!s) {
        csock__group_unreserve(l->group);
        close(fd);
        l->cb(l, NULL, -ENOMEM);
        return;
    }
    if (peer && csock__stream_set_peer(s, peer) < 0) {
        csock_stream_close(s, NULL); /* never a connection under the wrong name */
        l->cb(l, NULL, -ENOMEM);
        return;
    }
    l->cb(l, s, 0);
}

static void on_accept(csock_loop *loop, csock__watcher *w, unsigned events)
{
    csock_listener *l = csock__container_of(w, csock_listener, w);
    for (int i = 0; i < ACCEPT_BATCH && !l->h.closing && !l->paused; i++) {
        int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int err = errno;
            if (err == EAGAIN || err == EINTR) return;
            if (err == ECONNABORTED || err == EPROTO) continue;
            if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
                shed_one(l);
                l->cb(l, NULL, -err);
                return;
            }
            l->cb(l, NULL, -err);
            return;
        }
        if (!csock__group_reserve(l->group, l->max_conns)) {
            close(fd); /* refused at once: the server stays responsive */
            continue;
        }
        if (!l->proxy_timeout_ms) {
            deliver(l, fd, NULL);
            continue;
        }
        int rc = pp_start(l, fd);
        if (rc < 0) l->cb(l, NULL, rc);
    }
}

/* A Unix socket file left by a dead server blocks bind with EADDRINUSE.
 * Remove it only if it is a socket and nobody answers on it. */
static int clear_stale_unix(const struct sockaddr_un *sun)
{
    if (sun->sun_path[0] == '\0') return 0; /* abstract: nothing on disk */
    struct stat st;
    if (lstat(sun->sun_path, &st) < 0 || !S_ISSOCK(st.st_mode)) return 0;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int rc = connect(fd, (const struct sockaddr *)sun, sizeof *sun);
    int err = errno;
    close(fd);
    if (rc == 0) return -EADDRINUSE;
    if (err == ECONNREFUSED) unlink(sun->sun_path);
    return 0;
}

int csock__bind_listen(const csock_addr *addr, const csock_listen_opts *o)
{
    int family = addr->sa.ss_family;
    int fd = csock__socket(family, SOCK_STREAM);
    if (fd < 0) return fd;
    int one = 1, rc;
    if (family != AF_UNIX) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (o && o->reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
            goto fail;
        if (family == AF_INET6) {
            int v6only = o ? o->v6only : 0;
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
        }
    } else if ((rc = clear_stale_unix((const struct sockaddr_un *)&addr->sa)) < 0) {
        close(fd);
        return rc;
    }
    if (bind(fd, (const struct sockaddr *)&addr->sa, addr->len) < 0) goto fail;
    if (listen(fd, o && o->backlog > 0 ? o->backlog : DEFAULT_BACKLOG) < 0) goto fail;
    return fd;
fail:
    rc = -errno;
    close(fd);
    return rc;
}

/* On failure the fd is closed when the listener would have owned it. */
int csock__listen_fd(csock_loop *loop, int fd, int owned, csock_scheme scheme,
                     const csock_listen_opts *opts, csock__conn_group *group,
                     csock_accept_cb cb, void *data, csock_listener **out)
{
    csock_listener *l = calloc(1, sizeof *l);
    if (l && group) {
        csock__group_ref(group);
    } else if (l && !(group = csock__group_new(NULL))) {
        free(l);
        l = NULL;
    }
    if (!l) {
        if (owned) close(fd);
        return -ENOMEM;
    }
    l->group = group;
    l->owned = owned;
    l->scheme = scheme;
    csock__handle_init_kind(loop, &l->h, CSOCK_HANDLE_LISTENER);
    csock__watcher_init(&l->w, fd, on_accept);
    l->cb = cb;
    l->data = data;
    l->max_conns = opts ? opts->max_conns : 0;
    if (opts && opts->proxy_protocol)
        l->proxy_timeout_ms = opts->proxy_timeout_ms ? opts->proxy_timeout_ms : DEFAULT_PROXY_TIMEOUT_MS;
    l->reserve_fd = open_reserve();
    int rc = csock__watcher_set(loop, &l->w, CSOCK_READABLE);
    if (rc < 0) {
        csock_listener_close(l, NULL); /* closes fd if owned */
        return rc;
    }
    *out = l;
    return 0;
}

int csock_listen(csock_loop *loop, const csock_addr *addr, const csock_listen_opts *opts,
                 csock_accept_cb cb, void *data, csock_listener **out)
{
    if (!addr || !cb) return -EINVAL;
    /* TLS is per stream (csock_tls_accept in the accept callback, with a
     * context): a tls:// listener that accepted plaintext would let the
     * caller believe its peers are encrypted. Listen on tcp:// instead. */
    if (!csock_addr_is_stream(addr) || addr->scheme == CSOCK_TLS) return CSOCK_ESCHEME;
    csock_scheme scheme = addr->sa.ss_family == AF_UNIX ? CSOCK_UNIX : CSOCK_TCP;
    /* The socket file's name is taken first: once bound, the file must be
     * removed by the listener's close whatever happens next. */
    const struct sockaddr_un *sun = (const struct sockaddr_un *)&addr->sa;
    char *path = NULL;
    if (scheme == CSOCK_UNIX && sun->sun_path[0] && !(path = strdup(sun->sun_path))) return -ENOMEM;
    int fd = csock__bind_listen(addr, opts);
    if (fd < 0) {
        free(path);
        return fd;
    }
    csock_listener *l;
    int rc = csock__listen_fd(loop, fd, 1, scheme, opts, NULL, cb, data, &l);
    if (rc < 0) { /* fd is closed; the file it made is ours to remove */
        if (path) unlink(path);
        free(path);
        return rc;
    }
    l->unix_path = path;
    *out = l;
    return 0;
}

int csock__check_listen_fd(int fd, csock_scheme *scheme)
{
    int type, family, acc;
    socklen_t n = sizeof type;
    if (fd < 0) return -EBADF;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &n) < 0) return -errno; /* -ENOTSOCK */
    if (type != SOCK_STREAM) return -ESOCKTNOSUPPORT;
    n = sizeof family;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &n) < 0) return -errno;
    if (family != AF_INET && family != AF_INET6 && family != AF_UNIX) return -EAFNOSUPPORT;
    n = sizeof acc;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &n) < 0) return -errno;
    if (!acc) return -EINVAL; /* bound or connected, but nobody called listen(2) */
    int rc = csock__set_nonblock(fd, 1);
    if (rc < 0) return rc;
    csock__set_cloexec(fd);
    *scheme = family == AF_UNIX ? CSOCK_UNIX : CSOCK_TCP;
    return 0;
}

int csock_listen_fd(csock_loop *loop, int fd, const csock_listen_opts *opts, csock_accept_cb cb,
                    void *data, csock_listener **out)
{
    if (!loop || !cb || !out) return -EINVAL;
    csock_scheme scheme;
    int rc = csock__check_listen_fd(fd, &scheme);
    if (rc < 0) return rc;
    /* Not owned until it worked: a failure leaves the caller its fd. */
    rc = csock__listen_fd(loop, fd, 0, scheme, opts, NULL, cb, data, out);
    if (rc == 0) (*out)->owned = 1;
    return rc;
}

int csock_listener_fd(csock_listener *l)
{
    if (l->h.closing || l->w.fd < 0) return -EBADF;
    /* Another process may serve the socket file from now on: ours must
     * not remove it when we close (as csock_server_endpoint_fds). */
    free(l->unix_path);
    l->unix_path = NULL;
    return l->w.fd;
}

int csock_listener_addr(const csock_listener *l, csock_addr *out)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(l->w.fd, (struct sockaddr *)&ss, &len) < 0) return -errno;
    return csock__sockaddr_to_addr((struct sockaddr *)&ss, len, l->scheme, out);
}

int csock_listener_pause(csock_listener *l)
{
    l->paused = 1;
    return csock__watcher_set(l->h.loop, &l->w, 0);
}

int csock_listener_resume(csock_listener *l)
{
    if (l->h.closing) return -EBADF;
    l->paused = 0;
    return csock__watcher_set(l->h.loop, &l->w, CSOCK_READABLE);
}

unsigned csock_listener_conns(const csock_listener *l) { return l->group->conns; }
void *csock_listener_data(const csock_listener *l) { return l->data; }
void csock_listener_set_data(csock_listener *l, void *data) { l->data = data; }

static void listener_finish(csock__handle *h)
{
    csock_listener *l = csock__container_of(h, csock_listener, h);
    if (l->close_cb) l->close_cb(l);
    csock__group_release(l->group);
    free(l->unix_path);
    free(l);
}

void csock__listener_stop(csock_listener *l)
{
    if (l->h.closing || l->w.fd < 0) return;
    l->paused = 1; /* the backoff timer must not turn the watcher back on */
    csock__watcher_set(l->h.loop, &l->w, 0);
    if (l->owned) close(l->w.fd);
    l->w.fd = -1;
    if (l->reserve_fd >= 0) close(l->reserve_fd);
    l->reserve_fd = -1;
    if (l->unix_path) unlink(l->unix_path);
    free(l->unix_path);
    l->unix_path = NULL;
}

void csock_listener_close(csock_listener *l, void (*cb)(csock_listener *l))
{
    if (l->h.closing) return;
    csock__watcher_set(l->h.loop, &l->w, 0);
    pp_close_all(l);
    if (l->owned && l->w.fd >= 0) close(l->w.fd);
    if (l->reserve_fd >= 0) close(l->reserve_fd);
    if (l->backoff) csock_timer_close(l->backoff, NULL);
    if (l->unix_path) unlink(l->unix_path);
    l->close_cb = cb;
    csock__handle_close(&l->h, listener_finish);
}
