/* The multi-core server: N loops on N threads, SO_REUSEPORT listeners,
 * a connection limit across loops, graceful drain. Loops share nothing but
 * an atomic connection count and the posts that start the drain. */
#include <assert.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "net/listen_fd.h"

#define DEFAULT_DRAIN_MS 10000
#define MAX_ENDPOINTS 64

typedef struct endpoint {
    csock_addr addr;       /* as bound: the real port */
    int is_stream;
    csock_accept_cb acb;
    csock_recv_cb rcb;
    void *data;
    csock_listen_opts lo;  /* backlog, v6only, the PROXY protocol */
    int shared_fd;         /* one listening socket for all loops, or -1 */
    char *unix_path;       /* a socket file the server removes at the end */
    int handed;            /* its sockets went to another process: keep the file */
} endpoint;

typedef struct srv_loop {
    csock_server *srv;
    csock_loop *loop;
    unsigned index;
    pthread_t th;
    csock__conn_group *group;
    csock_listener *ls[MAX_ENDPOINTS];
    csock_dgram *ds[MAX_ENDPOINTS];
    csock_timer *drain_timer;
    int rc;
    csock__post stop_posts[2]; /* drain, then close now: a stop never allocates */
} srv_loop;

struct csock_server {
    csock_server_opts opts;
    unsigned n;
    srv_loop *loops;
    endpoint eps[MAX_ENDPOINTS];
    unsigned neps;
    atomic_uint conns;     /* open connections across every loop */
    atomic_int stops;      /* 1: draining, 2+: closing at once */
    csock_signal *sigs[2];
};

static unsigned cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

static void on_signal(csock_signal *sig, int signum);

/* Watched from creation, before any endpoint is announced: a signal sent as
 * soon as `listening` appears must drain, not kill. Blocked here, before the
 * loop threads exist, so they inherit the mask and the signals reach loop
 * 0's signalfd only. */
static int watch_signals(csock_server *srv)
{
    int signums[2] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++) {
        int rc = csock__signal_new_internal(srv->loops[0].loop, &srv->sigs[i]);
        if (rc < 0) return rc;
        csock_signal_set_data(srv->sigs[i], srv);
        rc = csock_signal_start(srv->sigs[i], on_signal, signums[i]);
        if (rc < 0) return rc;
    }
    return 0;
}

int csock_server_new(const csock_server_opts *opts, csock_server **out)
{
    csock_server *srv = calloc(1, sizeof *srv);
    if (!srv) return -ENOMEM;
    if (opts) srv->opts = *opts;
    if (!srv->opts.drain_timeout_ms) srv->opts.drain_timeout_ms = DEFAULT_DRAIN_MS;
    srv->n = srv->opts.threads ? srv->opts.threads : cpu_count();
    if (srv->n > 1024) srv->n = 1024;
    srv->loops = calloc(srv->n, sizeof *srv->loops);
    if (!srv->loops) {
        free(srv);
        return -ENOMEM;
    }
    int rc = 0;
    for (unsigned i = 0; i < srv->n && rc == 0; i++) {
        srv_loop *sl = &srv->loops[i];
        sl->srv = srv;
        sl->index = i;
        rc = csock_loop_new(NULL, &sl->loop);
        if (rc < 0) break;
        sl->group = csock__group_new(&srv->conns); /* the server's own reference */
        if (!sl->group) {
            rc = -ENOMEM;
            break;
        }
    }
    if (rc == 0 && srv->opts.handle_signals) rc = watch_signals(srv);
    if (rc < 0) {
        csock_server_free(srv);
        return rc;
    }
    *out = srv;
    return 0;
}

unsigned csock_server_threads(const csock_server *srv) { return srv->n; }
csock_loop *csock_server_loop(const csock_server *srv, unsigned i) { return i < srv->n ? srv->loops[i].loop : NULL; }
unsigned csock_server_conns(const csock_server *srv) { return atomic_load(&srv->conns); }
void *csock_server_data(const csock_server *srv) { return srv->opts.data; }

int csock_server_addr(const csock_server *srv, unsigned i, csock_addr *out)
{
    if (i >= srv->neps) return -EINVAL;
    *out = srv->eps[i].addr;
    return 0;
}

static int listen_on(csock_server *srv, srv_loop *sl, endpoint *ep, int fd, int owned)
{
    csock_listen_opts lo = ep->lo;
    lo.max_conns = srv->opts.max_conns;
    return csock__listen_fd(sl->loop, fd, owned, ep->addr.scheme == CSOCK_UNIX ? CSOCK_UNIX : CSOCK_TCP,
                            &lo, sl->group, ep->acb, ep->data, &sl->ls[ep - srv->eps]);
}

/* Undo a half-built endpoint, so a failed call leaves nothing behind: the
 * listeners and datagram socket made so far (their fds close now, the
 * handles finish on their loop's next iteration), the shared socket and the
 * socket file it made. */
static void unwind_endpoint(csock_server *srv, endpoint *ep)
{
    size_t idx = (size_t)(ep - srv->eps);
    for (unsigned i = 0; i < srv->n; i++) {
        srv_loop *sl = &srv->loops[i];
        if (sl->ls[idx]) csock_listener_close(sl->ls[idx], NULL);
        if (sl->ds[idx]) csock_dgram_close(sl->ds[idx], NULL);
        sl->ls[idx] = NULL;
        sl->ds[idx] = NULL;
    }
    if (ep->shared_fd >= 0) close(ep->shared_fd);
    ep->shared_fd = -1;
    if (ep->unix_path) unlink(ep->unix_path);
    free(ep->unix_path);
    ep->unix_path = NULL;
}

/* One listening socket shared by every loop: Unix sockets (no SO_REUSEPORT
 * load balancing for them) and kernels without SO_REUSEPORT. */
static int listen_shared(csock_server *srv, endpoint *ep)
{
    /* The name is copied first: once bound, the file is ours to remove,
     * whatever fails next. */
    const struct sockaddr_un *sun = (const struct sockaddr_un *)&ep->addr.sa;
    char *path = NULL;
    if (ep->addr.sa.ss_family == AF_UNIX && sun->sun_path[0] && !(path = strdup(sun->sun_path)))
        return -ENOMEM;
    csock_listen_opts lo = ep->lo;
    lo.reuseport = 0;
    int fd = csock__bind_listen(&ep->addr, &lo);
    if (fd < 0) {
        free(path);
        return fd;
    }
    ep->shared_fd = fd;
    ep->unix_path = path;
    for (unsigned i = 0; i < srv->n; i++) {
        int rc = listen_on(srv, &srv->loops[i], ep, fd, 0);
        if (rc < 0) return rc;
    }
    return 0;
}

static int listen_reuseport(csock_server *srv, endpoint *ep)
{
    csock_listen_opts lo = ep->lo;
    lo.reuseport = 1;
    for (unsigned i = 0; i < srv->n; i++) {
        int fd = csock__bind_listen(&ep->addr, &lo);
        if (fd < 0) return fd;
        int rc = listen_on(srv, &srv->loops[i], ep, fd, 1);
        if (rc < 0) return rc;
        if (i == 0) {
            /* Port 0: the others must join the port the first one got. */
            csock_addr bound;
            rc = csock_listener_addr(srv->loops[0].ls[ep - srv->eps], &bound);
            if (rc < 0) return rc;
            csock_addr_set_port(&ep->addr, csock_addr_port(&bound));
        }
    }
    return 0;
}

/* Is the port free for us? The loops' listeners set SO_REUSEPORT to share
 * it among themselves, which would let them join another process's
 * SO_REUSEPORT listeners as well. A bind without SO_REUSEPORT conflicts with
 * any listener already there, whatever its options: EADDRINUSE. (SO_REUSEADDR,
 * as the listeners have, keeps connections in TIME_WAIT from counting.) */
static int probe_port(const csock_addr *addr)
{
    int fd = csock__socket(addr->sa.ss_family, SOCK_STREAM);
    if (fd < 0) return fd;
    int one = 1, off = 0, rc = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (addr->sa.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    if (bind(fd, (const struct sockaddr *)&addr->sa, addr->len) < 0) rc = -errno;
    close(fd);
    return rc;
}

static int listen_tcp(csock_server *srv, endpoint *ep)
{
    int share = srv->opts.reuseport;
    if (srv->n == 1 && !share) { /* a plain bind refuses a busy port by itself */
        csock_listen_opts lo = ep->lo;
        lo.reuseport = 0;
        int fd = csock__bind_listen(&ep->addr, &lo);
        return fd < 0 ? fd : listen_on(srv, &srv->loops[0], ep, fd, 1);
    }
    /* Port 0 needs no probe: the kernel never picks a port some socket
     * uses, SO_REUSEPORT or not; the other loops join the one it picked. */
    int rc = share || !csock_addr_port(&ep->addr) ? 0 : probe_port(&ep->addr);
    if (rc == 0) rc = listen_reuseport(srv, ep);
    if ((rc == -ENOPROTOOPT || rc == -EINVAL) && !share) { /* no SO_REUSEPORT here */
        unwind_endpoint(srv, ep);
        rc = listen_shared(srv, ep);
    }
    return rc;
}

/* A new endpoint slot; the caller fills in its callbacks. */
static endpoint *new_endpoint(csock_server *srv, const csock_addr *addr, void *data)
{
    if (srv->neps == MAX_ENDPOINTS) return NULL;
    endpoint *ep = &srv->eps[srv->neps];
    memset(ep, 0, sizeof *ep);
    ep->addr = *addr;
    ep->data = data;
    ep->shared_fd = -1;
    return ep;
}

int csock_server_listen(csock_server *srv, const csock_addr *addr, csock_accept_cb cb, void *data)
{
    return csock_server_listen_opts(srv, addr, NULL, cb, data);
}

int csock_server_listen_opts(csock_server *srv, const csock_addr *addr, const csock_listen_opts *opts,
                             csock_accept_cb cb, void *data)
{
    if (!addr || !cb) return -EINVAL;
    if (!csock_addr_is_stream(addr)) return CSOCK_ESCHEME;
    endpoint *ep = new_endpoint(srv, addr, data);
    if (!ep) return -ENOSPC;
    ep->is_stream = 1;
    ep->acb = cb;
    if (opts) ep->lo = *opts;
    int rc = addr->sa.ss_family == AF_UNIX ? listen_shared(srv, ep) : listen_tcp(srv, ep);
    if (rc < 0) {
        unwind_endpoint(srv, ep);
        return rc;
    }
    if (addr->sa.ss_family != AF_UNIX) {
        csock_addr bound;
        if (csock_listener_addr(srv->loops[0].ls[srv->neps], &bound) == 0) {
            bound.scheme = addr->scheme;
            memcpy(bound.host, addr->host, sizeof bound.host);
            ep->addr = bound;
        }
    }
    srv->neps++;
    return 0;
}

int csock_server_listen_fd(csock_server *srv, int fd, const csock_listen_opts *opts, csock_accept_cb cb,
                           void *data)
{
    if (!cb) return -EINVAL;
    csock_scheme scheme;
    int rc = csock__check_listen_fd(fd, &scheme);
    if (rc < 0) return rc;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    csock_addr bound;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return -errno;
    rc = csock__sockaddr_to_addr((struct sockaddr *)&ss, len, scheme, &bound);
    if (rc < 0) return rc;
    endpoint *ep = new_endpoint(srv, &bound, data);
    if (!ep) return -ENOSPC;
    ep->is_stream = 1;
    ep->acb = cb;
    if (opts) ep->lo = *opts;
    /* One socket for every loop, as for Unix sockets: the kernel's queue is
     * the one systemd (or the old process) made. Its file, if any, is not
     * ours to remove. */
    for (unsigned i = 0; i < srv->n && rc == 0; i++) rc = listen_on(srv, &srv->loops[i], ep, fd, 0);
    if (rc < 0) {
        unwind_endpoint(srv, ep); /* shared_fd is still -1: the fd stays open */
        return rc;
    }
    ep->shared_fd = fd;
    srv->neps++;
    return 0;
}

int csock_server_endpoint_fds(csock_server *srv, unsigned i, int *fds, unsigned max)
{
    if (i >= srv->neps) return -EINVAL;
    /* Another process may serve the socket file from now on: ours must
     * not remove it when we stop. */
    srv->eps[i].handed = 1;
    unsigned n = 0;
    for (unsigned k = 0; k < srv->n; k++) {
        csock_listener *l = srv->loops[k].ls[i];
        if (!l) continue;
        int fd = csock_listener_fd(l);
        if (fd < 0) continue; /* stopped by a drain */
        int seen = 0;
        for (unsigned j = 0; j < n && j < max; j++) seen |= fds[j] == fd;
        if (seen) continue; /* a socket all loops share */
        if (n < max) fds[n] = fd;
        n++;
    }
    return (int)n;
}

int csock_server_dgram(csock_server *srv, const csock_addr *addr, csock_recv_cb cb, void *data)
{
    if (!addr || !cb) return -EINVAL;
    endpoint *ep = new_endpoint(srv, addr, data);
    if (!ep) return -ENOSPC;
    ep->rcb = cb;
    csock_dgram *d;
    int rc = csock_dgram_new(srv->loops[0].loop, addr, NULL, &d);
    if (rc < 0) return rc;
    csock_dgram_set_data(d, data);
    srv->loops[0].ds[srv->neps] = d;
    rc = csock_dgram_recv_start(d, cb);
    if (rc < 0) {
        unwind_endpoint(srv, ep);
        return rc;
    }
    csock_addr bound;
    if (csock_dgram_local(d, &bound) == 0) {
        bound.scheme = addr->scheme;
        ep->addr = bound;
    }
    srv->neps++;
    return 0;
}

/* ---- drain ------------------------------------------------------------------ */

static void close_endpoints(srv_loop *sl)
{
    for (unsigned i = 0; i < MAX_ENDPOINTS; i++) {
        if (sl->ls[i]) csock_listener_close(sl->ls[i], NULL);
        if (sl->ds[i]) csock_dgram_close(sl->ds[i], NULL);
        sl->ls[i] = NULL;
        sl->ds[i] = NULL;
    }
}

static void on_drain_timeout(csock_timer *t)
{
    srv_loop *sl = csock_timer_data(t);
    csock__group_close_all(sl->group);
}

/* The drain's first step: no more accepting and no more datagrams. The
 * listeners stay (closed when the loop ends) so that connections still
 * sending their PROXY header are served rather than cut. */
static void stop_endpoints(srv_loop *sl)
{
    for (unsigned i = 0; i < MAX_ENDPOINTS; i++) {
        if (sl->ls[i]) csock__listener_stop(sl->ls[i]);
        if (sl->ds[i]) csock_dgram_close(sl->ds[i], NULL);
        sl->ds[i] = NULL;
    }
}

/* Runs on each loop's own thread (posted). */
static void drain_loop(void *arg)
{
    srv_loop *sl = arg;
    csock_server *srv = sl->srv;
    stop_endpoints(sl);
    if (sl->index == 0)
        for (int i = 0; i < 2; i++)
            if (srv->sigs[i]) csock_signal_unref(srv->sigs[i]); /* do not hold the loop */
    if (srv->opts.loop_drain) srv->opts.loop_drain(srv, sl->loop, sl->index);
    csock__group_drain(sl->group);
    if (!sl->drain_timer && csock__timer_new_internal(sl->loop, &sl->drain_timer) == 0) {
        csock_timer_set_data(sl->drain_timer, sl);
        csock_timer_unref(sl->drain_timer); /* the loop ends as soon as the streams do */
        csock_timer_start(sl->drain_timer, on_drain_timeout, srv->opts.drain_timeout_ms, 0);
    }
}

static void close_loop_now(void *arg)
{
    srv_loop *sl = arg;
    close_endpoints(sl);
    csock__group_close_all(sl->group);
    if (sl->index == 0)
        for (int i = 0; i < 2; i++)
            if (sl->srv->sigs[i]) csock_signal_unref(sl->srv->sigs[i]);
}

/* Each message is posted once (the first stop drains, the second closes),
 * through a node in srv_loop: an allocation that fails here would leave
 * the server deaf to SIGTERM. */
void csock_server_stop(csock_server *srv)
{
    int n = atomic_fetch_add(&srv->stops, 1);
    if (n > 1) return; /* closing at once is asked for already */
    for (unsigned i = 0; i < srv->n; i++) {
        srv_loop *sl = &srv->loops[i];
        csock__post *p = &sl->stop_posts[n];
        p->fn = n == 0 ? drain_loop : close_loop_now;
        p->data = sl;
        csock__loop_post_node(sl->loop, p);
    }
}

static void on_signal(csock_signal *sig, int signum)
{
    csock_server_stop(csock_signal_data(sig));
}

/* ---- run ---------------------------------------------------------------------- */

static void *run_loop(void *arg)
{
    srv_loop *sl = arg;
    csock_server *srv = sl->srv;
    if (srv->opts.loop_start) srv->opts.loop_start(srv, sl->loop, sl->index);
    int rc = csock_loop_run(sl->loop, CSOCK_RUN_DEFAULT);
    sl->rc = rc < 0 ? rc : 0;
    if (srv->opts.loop_stop) srv->opts.loop_stop(srv, sl->loop, sl->index);
    /* Leave the loop with nothing open, so csock_server_free() can free it. */
    close_endpoints(sl);
    if (sl->drain_timer) csock_timer_close(sl->drain_timer, NULL);
    sl->drain_timer = NULL;
    if (sl->index == 0)
        for (int i = 0; i < 2; i++) {
            if (srv->sigs[i]) csock_signal_close(srv->sigs[i], NULL);
            srv->sigs[i] = NULL;
        }
    csock__group_close_all(sl->group);
    /* Finish those closes here, on the loop's own thread: an io_uring loop
     * (SINGLE_ISSUER) cannot be run by the thread that frees the server.
     * The application's handles stay open until csock_server_free(). */
    sl->rc = sl->rc < 0 ? sl->rc : csock__loop_settle(sl->loop);
    return NULL;
}

int csock_server_run(csock_server *srv)
{
    unsigned started = 1;
    int rc = 0;
    for (; started < srv->n; started++) {
        rc = -pthread_create(&srv->loops[started].th, NULL, run_loop, &srv->loops[started]);
        if (rc < 0) {
            csock_server_stop(srv);
            break;
        }
    }
    run_loop(&srv->loops[0]);
    for (unsigned i = 1; i < started; i++) pthread_join(srv->loops[i].th, NULL);
    for (unsigned i = 0; i < srv->n && rc == 0; i++) rc = srv->loops[i].rc;
    return rc;
}

static void close_handle(csock_handle_kind kind, void *h, void *data)
{
    (*(unsigned *)data)++;
    csock_handle_close(kind, h, NULL);
}

/* Close everything still open on the loop and free it. The application's
 * handles first (their owners close the library's handles inside them: a
 * stream its timer), then whatever the library still holds (an HTTP server
 * left open). Running the loop until it has nothing left finishes every
 * close, with io_uring once the kernel has answered the cancels of the
 * requests in flight. That run may also start what was posted to a loop
 * that had already stopped (a drain, which makes a timer): then again. */
static int free_loop(csock_loop *loop)
{
    unsigned closed, left;
    do {
        closed = 0;
        csock__loop_walk(loop, close_handle, &closed, 0);
        csock__loop_walk(loop, close_handle, &closed, 1);
        left = csock_loop_handles(loop); /* the ones no walk can close */
        int rc;
        while ((rc = csock_loop_run(loop, CSOCK_RUN_DEFAULT)) > 0) {} /* > 0: a stray stop */
        if (rc < 0) return rc;
        /* Again while a pass closed something or the run made something
         * (the drain's timer): none closed and none made, no walk can do more. */
    } while (csock_loop_handles(loop) && (closed || csock_loop_handles(loop) > left));
    return csock_loop_free(loop);
}

void csock_server_free(csock_server *srv)
{
    if (!srv) return;
    for (unsigned i = 0; i < srv->n; i++) {
        srv_loop *sl = &srv->loops[i];
        if (!sl->loop) continue;
        close_endpoints(sl);
        sl->drain_timer = NULL; /* closed by the walk */
        if (i == 0) srv->sigs[0] = srv->sigs[1] = NULL;
        if (sl->group) csock__group_close_all(sl->group); /* NULL: csock_server_new failed */
        int rc = free_loop(sl->loop);
        /* Never with a handle left: a loop the walk could not empty is a
         * library bug, and freeing it anyway would free memory in use. */
        assert(rc == 0);
        (void)rc;
        csock__group_release(sl->group);
    }
    for (unsigned i = 0; i < srv->neps; i++) {
        if (srv->eps[i].shared_fd >= 0) close(srv->eps[i].shared_fd);
        if (srv->eps[i].unix_path && !srv->eps[i].handed) unlink(srv->eps[i].unix_path);
        free(srv->eps[i].unix_path);
    }
    free(srv->loops);
    free(srv);
}
