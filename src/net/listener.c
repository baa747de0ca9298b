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

#include "net/net_int.h"

#define ACCEPT_BATCH 64 /* accepts per readiness event: fairness with other I/O */
/* With no fd in reserve, accepting pauses this long after EMFILE: long
 * enough that a loop does not spin on the readiness, short enough that a
 * freed descriptor is used soon. */
#define FD_BACKOFF_MS 100
/* listen(2)'s backlog when the caller gives none: a burst of connections
 * waits in the kernel instead of being refused (capped by somaxconn). */
#define DEFAULT_BACKLOG 4096

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
    if (!l->backoff && csock_timer_new(l->h.loop, &l->backoff) == 0)
        csock_timer_set_data(l->backoff, l);
    if (l->backoff) {
        csock__watcher_set(l->h.loop, &l->w, 0);
        csock_timer_start(l->backoff, resume_after_backoff, FD_BACKOFF_MS, 0);
    }
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
        if (l->scheme != CSOCK_UNIX) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        csock_stream *s = csock__stream_new(loop, fd, l->group);
        if (!s) {
            csock__group_unreserve(l->group);
            close(fd);
            l->cb(l, NULL, -ENOMEM);
            continue;
        }
        l->cb(l, s, 0);
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
    csock__handle_init(loop, &l->h);
    csock__watcher_init(&l->w, fd, on_accept);
    l->cb = cb;
    l->data = data;
    l->max_conns = opts ? opts->max_conns : 0;
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

int csock__listener_fd(const csock_listener *l) { return l->w.fd; }

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

void csock_listener_close(csock_listener *l, void (*cb)(csock_listener *l))
{
    if (l->h.closing) return;
    csock__watcher_set(l->h.loop, &l->w, 0);
    if (l->owned) close(l->w.fd);
    if (l->reserve_fd >= 0) close(l->reserve_fd);
    if (l->backoff) csock_timer_close(l->backoff, NULL);
    if (l->unix_path) unlink(l->unix_path);
    l->close_cb = cb;
    csock__handle_close(&l->h, listener_finish);
}
