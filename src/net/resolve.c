/* csock_resolve_start(): getaddrinfo() on a thread of its own, the answer posted
 * back to the loop. One detached thread per name: resolutions are rare next
 * to connections (a proxy resolves its backends once per interval), and a
 * thread needs no shared state, so nothing here is global. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "csock/resolve.h"
#include "loop/loop_int.h"

struct csock_resolve {
    csock_loop *loop;
    csock_resolve_cb cb;
    void *data;
    csock__post post; /* the answer's way back: embedded, so it cannot fail */
    int cancelled;    /* loop thread only */
    int flags;
    unsigned max;
    int status;       /* written by the thread before it posts */
    char *text;
    csock_addr addrs[];
};

/* getaddrinfo and the NSS modules it loads need some stack, not 8 MiB. */
#define RESOLVER_STACK (512 * 1024)

/* An answer on its way keeps the loop running (csock_loop_run does not
 * return 0) and alive (csock_loop_free refuses) until it has arrived. */
static void keep_running(csock_loop *loop, int delta)
{
    csock__loop_hold(loop, delta);
    loop->active += (unsigned)delta;
}

static void deliver(void *arg)
{
    csock_resolve *r = arg;
    keep_running(r->loop, -1);
    if (!r->cancelled) {
        int n = r->status;
        r->cb(r, n, n > 0 ? r->addrs : NULL, n > 0 ? (size_t)n : 0);
    }
    free(r->text);
    free(r);
}

static void *resolver_main(void *arg)
{
    csock_resolve *r = arg;
    r->status = csock_addr_resolve(r->text, r->flags, r->addrs, r->max);
    csock__loop_post_node(r->loop, &r->post);
    return NULL;
}

/* Start the thread with every signal blocked: signals are the loop's. */
static int start_thread(csock_resolve *r)
{
    pthread_attr_t attr;
    int rc = pthread_attr_init(&attr);
    if (rc) return -rc;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, RESOLVER_STACK);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t tid;
    rc = pthread_create(&tid, &attr, resolver_main, r);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    return -rc;
}

int csock_resolve_start(csock_loop *loop, const char *text, const csock_resolve_opts *opts,
                  csock_resolve_cb cb, void *data, csock_resolve **out)
{
    if (!loop || !text || !cb) return -EINVAL;
    unsigned max = opts && opts->max && opts->max < CSOCK_RESOLVE_MAX ? opts->max : CSOCK_RESOLVE_MAX;
    csock_resolve *r = calloc(1, sizeof *r + max * sizeof r->addrs[0]);
    if (!r) return -ENOMEM;
    r->text = strdup(text);
    if (!r->text) {
        free(r);
        return -ENOMEM;
    }
    r->loop = loop;
    r->cb = cb;
    r->data = data;
    r->flags = opts ? opts->flags : 0;
    r->max = max;
    r->post.fn = deliver;
    r->post.data = r;
    /* Numbers, Unix paths and malformed text are answered here and now; only
     * a real name (CSOCK_ENONAME without DNS) goes to a thread. */
    r->status = csock_addr_resolve(text, r->flags | CSOCK_ADDR_NUMERIC, r->addrs, max);
    int need_dns = r->status == CSOCK_ENONAME && !(r->flags & CSOCK_ADDR_NUMERIC);
    int rc = need_dns ? start_thread(r) : 0;
    if (rc < 0) {
        free(r->text);
        free(r);
        return rc;
    }
    keep_running(loop, 1); /* until deliver(): the loop must outlive the thread */
    if (!need_dns) csock__loop_post_node(loop, &r->post);
    if (out) *out = r;
    return 0;
}

void csock_resolve_cancel(csock_resolve *r)
{
    if (r) r->cancelled = 1; /* deliver() frees it once the thread has posted */
}

void *csock_resolve_data(const csock_resolve *r) { return r ? r->data : NULL; }
